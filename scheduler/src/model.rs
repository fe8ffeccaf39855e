//! A loaded model: weights, tokenizer, chat template and the CPU backend, plus preparing it on a
//! prefill delegate ([`NpuOptions`]). The [`crate::Engine`] shares one `Model` between its
//! workers.
//!
//! Thread safety: `Model` is `Send + Sync`. Its CPU forward pass runs on the model's thread pool,
//! which serializes concurrent callers; the engine calls it from its one CPU worker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tandem_cpu::{CpuModel, Logits, ThreadPool, WeightFormat};
use tandem_graphs::chat::{ChatMessage, ChatTemplate};
use tandem_graphs::model::LoadedModel;
use tandem_graphs::tokenizer::Tokenizer;
use tandem_hal::{Delegate, Error, KvCache, PrefillDelegate, PrepareRequest, Result};

use crate::generate::{GenerateOutput, GenerateRequest};

/// Where a model comes from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// A Hugging Face directory or a `.gguf` file.
    Path(PathBuf),
    /// A GGUF file held in memory for the life of the process (e.g. compiled into the binary),
    /// reported as `name`.
    Static {
        bytes: &'static [u8],
        name: &'static str,
    },
    /// A GGUF file already in memory or mapped (e.g. from a file descriptor an app was handed),
    /// reported as `name`.
    Bytes {
        bytes: tandem_hal::HostBytes,
        name: String,
    },
}

/// Options for [`Model::load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// CPU threads (0 = physical cores).
    pub threads: usize,
    /// How the CPU holds weights (`--cpu-weights`).
    pub cpu_weights: WeightFormat,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            threads: 0,
            cpu_weights: WeightFormat::AsStored,
        }
    }
}

/// The NPU prefill delegate to use and how to prepare it (`--chunks`, `--ctx`; the delegate's own
/// options, such as QNN's `--qnn-lib` or `--soc`, were given when it was constructed — see the
/// facade's `tandem::delegates`).
#[derive(Clone, Default)]
pub struct NpuOptions {
    /// The delegate; `None` means no NPU (requests that need one report it unavailable).
    pub delegate: Option<Arc<dyn Delegate<LoadedModel>>>,
    /// Chunk sizes (empty = the delegate's [`Delegate::default_chunk_sizes`]).
    pub chunks: Vec<usize>,
    /// Context length of the graphs (0 = [`default_context`] with the NPU).
    pub ctx: usize,
    /// Collect a device profile (e.g. HTP cycles) per chunk.
    pub profiling: bool,
}

impl std::fmt::Debug for NpuOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpuOptions")
            .field("delegate", &self.delegate.as_ref().map(|d| d.name()))
            .field("chunks", &self.chunks)
            .field("ctx", &self.ctx)
            .field("profiling", &self.profiling)
            .finish()
    }
}

/// The context length used when none is given: the model's trained context, capped at 1024 when
/// a fixed-shape NPU graph must hold it (its cost grows with the context) and at 4096 otherwise.
pub fn default_context(spec: &tandem_graphs::ModelSpec, with_npu: bool) -> usize {
    let cap = if with_npu { 1024 } else { 4096 };
    spec.max_position_embeddings.min(cap)
}

/// Most CPU threads a model's pool may have (far above any phone or workstation this targets;
/// a bound so an absurd `--threads` is an error, not thousands of spawned threads).
pub const MAX_THREADS: usize = 256;

/// A loaded model with its tokenizer, ready to run on the CPU.
pub struct Model {
    pub loaded: LoadedModel,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub cpu: CpuModel,
    /// Wall time of [`Model::load`].
    pub load_ms: f64,
}

impl Model {
    /// Loads weights, tokenizer and chat template, and prepares the CPU backend.
    pub fn load(source: &ModelSource, opts: &LoadOptions) -> Result<Model> {
        let t0 = Instant::now();
        let loaded = match source {
            ModelSource::Path(p) => tandem_graphs::model::load_weights(p)?,
            ModelSource::Static { bytes, name } => tandem_graphs::model::load_weights_gguf_bytes(
                tandem_hal::HostBytes::from_static(bytes),
                name,
            )?,
            ModelSource::Bytes { bytes, name } => {
                tandem_graphs::model::load_weights_gguf_bytes(bytes.clone(), name)?
            }
        };
        let (tokenizer, template_src) = match &loaded.gguf_metadata {
            Some(meta) => {
                let tok = Tokenizer::from_gguf_metadata(meta)?;
                (tok, tandem_graphs::chat::chat_template_from_gguf(meta))
            }
            None => {
                let dir = model_dir(&loaded.path);
                let tok = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
                let tpl = tandem_graphs::chat::find_chat_template(&dir)?;
                (tok, tpl)
            }
        };
        let chat_template = template_src
            .map(|src| {
                ChatTemplate::new(
                    &src,
                    tokenizer.bos_id().and_then(|id| tokenizer.token_to_str(id)),
                    tokenizer
                        .eos_ids()
                        .first()
                        .and_then(|&id| tokenizer.token_to_str(id)),
                )
            })
            .transpose()?;
        let threads = if opts.threads == 0 {
            tandem_cpu::pool::physical_cores()
        } else {
            opts.threads
        };
        if threads > MAX_THREADS {
            return Err(Error::InvalidInput(format!(
                "{threads} CPU threads requested; at most {MAX_THREADS} are supported (this \
                 machine has {} physical cores)",
                tandem_cpu::pool::physical_cores()
            )));
        }
        let pool = Arc::new(ThreadPool::new(threads));
        let cpu = CpuModel::new(loaded.spec.clone(), &loaded.weights, opts.cpu_weights, pool)?;
        Ok(Model {
            loaded,
            tokenizer,
            chat_template,
            cpu,
            load_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Tokenizes a raw prompt, adding BOS when the tokenizer asks for it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text, true)
    }

    /// Renders `messages` with the model's chat template (generation prompt appended) and
    /// tokenizes the result without adding special tokens a second time.
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let tpl = self.chat_template.as_ref().ok_or_else(|| {
            Error::Tokenizer(format!(
                "{}: the model has no chat template (tokenizer_config.json `chat_template`, \
                 chat_template.jinja or GGUF `tokenizer.chat_template`)",
                self.loaded.path.display()
            ))
        })?;
        let text = tpl.render(messages, true)?;
        self.tokenizer.encode(&text, false)
    }

    /// A fresh KV cache of `ctx` positions (0 = [`default_context`] without the NPU).
    pub fn new_cache(&self, ctx: usize) -> KvCache {
        let ctx = if ctx == 0 {
            default_context(&self.loaded.spec, false)
        } else {
            ctx
        };
        KvCache::new(&self.loaded.spec, ctx)
    }

    /// Generates from `req`, streaming text to `on_text`.
    pub fn generate(
        &self,
        cache: &mut KvCache,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerateOutput> {
        crate::generate::generate(&self.cpu, &self.tokenizer, cache, req, on_text)
    }

    /// One forward pass over `tokens` from an empty cache; logits of every position `[n, vocab]`.
    pub fn logits_all(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut cache = KvCache::new(&self.loaded.spec, tokens.len());
        self.cpu.forward(tokens, &mut cache, Logits::All)
    }
}

impl Model {
    /// What [`Self::npu_prefill`] asks the delegate to prepare: `opts`' chunk sizes and context,
    /// defaulted to the delegate's chunk sizes and [`default_context`] with the NPU.
    pub fn prepare_request(&self, opts: &NpuOptions) -> Result<PrepareRequest> {
        let delegate = opts.delegate.as_ref().ok_or_else(no_delegate)?;
        let chunk_sizes = if opts.chunks.is_empty() {
            delegate.default_chunk_sizes()
        } else {
            opts.chunks.clone()
        };
        let ctx = if opts.ctx == 0 {
            default_context(&self.loaded.spec, true)
        } else {
            opts.ctx
        };
        Ok(PrepareRequest {
            ctx,
            chunk_sizes,
            profiling: opts.profiling,
        })
    }

    /// Prepares this model on the NPU delegate of `opts` (for QNN: restores the graphs from the
    /// context-binary cache when a matching file exists, otherwise lowers, finalizes and caches
    /// them).
    pub fn npu_prefill(&self, opts: &NpuOptions) -> Result<Box<dyn PrefillDelegate>> {
        let delegate = opts.delegate.as_ref().ok_or_else(no_delegate)?;
        delegate.prepare(&self.loaded, &self.prepare_request(opts)?)
    }
}

fn no_delegate() -> Error {
    Error::InvalidInput("no NPU delegate is configured".into())
}

fn model_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}
