//! A loaded model: weights, tokenizer, chat template and the CPU backend, plus the factory for
//! its QNN HTP prefill delegate. The [`crate::Engine`] shares one `Model` between its workers.
//!
//! Thread safety: `Model` is `Send + Sync`. Its CPU forward pass runs on the model's thread pool,
//! which serializes concurrent callers; the engine calls it from its one CPU worker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tandem_cpu::{CpuModel, KvCache, Logits, ThreadPool, WeightFormat};
use tandem_graphs::chat::{ChatMessage, ChatTemplate};
use tandem_graphs::model::LoadedModel;
use tandem_graphs::tokenizer::Tokenizer;
use tandem_hal::{Error, Result};

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

/// Options for the QNN prefill delegate (`--chunks`, `--ctx`, `--qnn-lib`, `--qnn-cache`, `--soc`).
#[derive(Clone, Debug, Default)]
pub struct NpuOptions {
    /// AR-N chunk sizes (empty = 32 and 128).
    pub chunks: Vec<usize>,
    /// Context length of the graphs (0 = the model's, capped at 1024).
    pub ctx: usize,
    /// Folder holding `libQnnHtp.so` (else `TANDEM_QNN_LIB_DIR`, `QNN_SDK_ROOT`, system path).
    pub lib_dir: Option<PathBuf>,
    /// Context-binary cache folder (else `TANDEM_QNN_CACHE_DIR` or `~/.cache/tandem/qnn`).
    pub cache_dir: Option<PathBuf>,
    /// Prepare for this SoC model ahead of time (e.g. 57 = SM8650).
    pub soc_model: Option<u32>,
    /// Prepare for this HTP architecture ahead of time (e.g. 75 = v75).
    pub htp_arch: Option<u32>,
    /// Collect QNN's per-chunk HTP cycle estimates.
    pub profiling: bool,
    /// HTP performance mode (power vote) while the graphs are loaded.
    pub perf_mode: Option<tandem_qnn::PerfMode>,
    /// HTP weight sharing between the chunk graphs (`None`: the builder's default).
    pub weight_sharing: Option<bool>,
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

    /// A fresh KV cache of `ctx` positions (0 = the model's trained context, capped at 4096).
    pub fn new_cache(&self, ctx: usize) -> KvCache {
        let ctx = if ctx == 0 {
            self.loaded.spec.max_position_embeddings.min(4096)
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
    /// Prepares the QNN HTP prefill graphs for this model: restores them from the context-binary
    /// cache when a matching file exists, otherwise lowers, finalizes and caches them.
    pub fn npu_prefill(&self, opts: &NpuOptions) -> Result<tandem_qnn::QnnPrefill> {
        let chunks = if opts.chunks.is_empty() {
            vec![32, 128]
        } else {
            opts.chunks.clone()
        };
        let ctx = if opts.ctx == 0 {
            self.loaded.spec.max_position_embeddings.min(1024)
        } else {
            opts.ctx
        };
        let mut b = tandem_qnn::QnnPrefillBuilder::new()
            .chunk_sizes(&chunks)
            .ctx(ctx)
            .profiling(opts.profiling);
        if let Some(d) = &opts.lib_dir {
            b = b.lib_dir(d);
        }
        if let Some(d) = &opts.cache_dir {
            b = b.cache_dir(d);
        }
        if let Some(s) = opts.soc_model {
            b = b.soc_model(s);
        }
        if let Some(a) = opts.htp_arch {
            b = b.htp_arch(a);
        }
        if let Some(m) = opts.perf_mode {
            b = b.perf_mode(m);
        }
        if let Some(w) = opts.weight_sharing {
            b = b.weight_sharing(w);
        }
        Ok(b.build(&self.loaded.spec, &self.loaded.weights)?)
    }
}

fn model_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}
