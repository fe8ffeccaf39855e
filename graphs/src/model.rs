//! Loading a model from disk (a Hugging Face directory or a GGUF file) or from memory (the
//! embedded GGUF) into one [`LoadedModel`]. The format readers live in [`crate::hf`] and
//! [`crate::gguf`]; this module dispatches between them and holds the checks they share.

use std::path::{Path, PathBuf};

use tandem_hal::{Error, HostBytes, Result, Tensor};

use crate::metadata::Metadata;
use crate::ops::{LayerWeight, WeightRef};
use crate::spec::{LayerWeights, ModelSpec, ModelWeights};

/// Where a model's weights came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// A Hugging Face directory: `config.json` + `model.safetensors` (or a sharded index).
    HfSafetensors,
    /// A single GGUF file (or the embedded default model).
    Gguf,
}

impl ModelFormat {
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::HfSafetensors => "safetensors",
            ModelFormat::Gguf => "gguf",
        }
    }
}

/// A model's description and weights, normalised to [`crate::spec`]'s conventions.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub spec: ModelSpec,
    pub weights: ModelWeights,
    pub format: ModelFormat,
    /// The directory (Hugging Face), the `.gguf` file, or the embedded model's name.
    pub path: PathBuf,
    /// All GGUF metadata (tokenizer, chat template, …); `None` for Hugging Face directories.
    pub gguf_metadata: Option<Metadata>,
    /// Total size of the weight files (safetensors shards or the GGUF file).
    pub file_size_bytes: u64,
}

/// Loads a model from a Hugging Face directory (with `config.json`), a `.gguf` file, or a
/// directory holding exactly one `.gguf` file and no `config.json`.
pub fn load_weights(path: &Path) -> Result<LoadedModel> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("open", path, e))?;
    if meta.is_dir() {
        if path.join("config.json").is_file() {
            return crate::hf::load_hf_dir(path);
        }
        let ggufs = gguf_files_in(path)?;
        return match ggufs.as_slice() {
            [one] => crate::gguf::load_gguf_file(one),
            [] => Err(Error::config(
                path,
                "config.json",
                "directory has neither config.json (Hugging Face) nor a .gguf file",
            )),
            many => Err(Error::config(
                path,
                "model file",
                format!(
                    "directory holds {} .gguf files and no config.json; pass one of them: {}",
                    many.len(),
                    many.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        };
    }
    // A file: GGUF is recognised by its magic, whatever the extension.
    let mut magic = [0u8; 4];
    let is_gguf = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        f.read_exact(&mut magic).is_ok() && &magic == b"GGUF"
    };
    if is_gguf {
        return crate::gguf::load_gguf_file(path);
    }
    if path.file_name().is_some_and(|n| n == "config.json") {
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            return crate::hf::load_hf_dir(dir);
        }
    }
    Err(Error::corrupt(
        path,
        format!(
            "not a GGUF file (starts with {magic:02x?}, expected \"GGUF\") and not a Hugging Face \
             model directory"
        ),
    ))
}

/// Loads a GGUF model held in memory (the embedded default model); `name` stands in for the
/// file name in errors and in [`LoadedModel::path`].
pub fn load_weights_gguf_bytes(bytes: HostBytes, name: &str) -> Result<LoadedModel> {
    let file = crate::gguf::GgufFile::from_bytes(bytes, name)?;
    crate::gguf::load_from_gguf(file)
}

fn gguf_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let p = entry.path();
        if p.is_file()
            && p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Shared by both readers.

/// A format's tensors as the assembler sees them.
pub(crate) trait TensorSource {
    /// The file-format name of a weight.
    fn name(&self, w: WeightRef) -> String;
    /// The tensor, `Ok(None)` if absent; errors for corrupt data or unsupported types.
    fn get(&self, name: &str) -> Result<Option<Tensor>>;
    /// The file to name in an error about `name` (its shard, or the model itself).
    fn path_for(&self, name: &str) -> PathBuf;
}

fn required(src: &dyn TensorSource, name: &str, shape: &[usize]) -> Result<Tensor> {
    let t = src.get(name)?.ok_or_else(|| Error::MissingTensor {
        path: src.path_for(name),
        tensor: name.to_string(),
    })?;
    t.expect_shape(&src.path_for(name), shape)?;
    Ok(t)
}

fn optional(
    src: &dyn TensorSource,
    name: &str,
    shape: &[usize],
    wanted: bool,
) -> Result<Option<Tensor>> {
    if wanted {
        required(src, name, shape).map(Some)
    } else {
        Ok(None)
    }
}

/// Collects every weight the spec calls for, checking each shape against it.
pub(crate) fn assemble_weights(spec: &ModelSpec, src: &dyn TensorSource) -> Result<ModelWeights> {
    let (h, q, kv, ff, v) = (
        spec.hidden_size,
        spec.q_dim(),
        spec.kv_dim(),
        spec.intermediate_size,
        spec.vocab_size,
    );
    let token_embd = required(src, &src.name(WeightRef::TokenEmbd), &[v, h])?;
    let mut layers = Vec::new();
    for i in 0..spec.n_layers {
        let n = |kind| src.name(WeightRef::Layer { layer: i, kind });
        layers.push(LayerWeights {
            attn_norm: required(src, &n(LayerWeight::AttnNorm), &[h])?,
            wq: required(src, &n(LayerWeight::Wq), &[q, h])?,
            wk: required(src, &n(LayerWeight::Wk), &[kv, h])?,
            wv: required(src, &n(LayerWeight::Wv), &[kv, h])?,
            bq: optional(src, &n(LayerWeight::Bq), &[q], spec.qkv_bias)?,
            bk: optional(src, &n(LayerWeight::Bk), &[kv], spec.qkv_bias)?,
            bv: optional(src, &n(LayerWeight::Bv), &[kv], spec.qkv_bias)?,
            q_norm: optional(src, &n(LayerWeight::QNorm), &[spec.head_dim], spec.qk_norm)?,
            k_norm: optional(src, &n(LayerWeight::KNorm), &[spec.head_dim], spec.qk_norm)?,
            wo: required(src, &n(LayerWeight::Wo), &[h, q])?,
            ffn_norm: required(src, &n(LayerWeight::FfnNorm), &[h])?,
            w_gate: required(src, &n(LayerWeight::WGate), &[ff, h])?,
            w_up: required(src, &n(LayerWeight::WUp), &[ff, h])?,
            w_down: required(src, &n(LayerWeight::WDown), &[h, ff])?,
        });
    }
    let norm = required(src, &src.name(WeightRef::OutputNorm), &[h])?;
    let lm_head = optional(
        src,
        &src.name(WeightRef::LmHead),
        &[v, h],
        !spec.tie_word_embeddings,
    )?;
    Ok(ModelWeights {
        token_embd,
        layers,
        norm,
        lm_head,
    })
}

/// Rejects hyper-parameters that are zero, inconsistent or so large that the products other
/// crates compute (`q_dim`, `vocab × hidden`, …) would overflow.
pub(crate) fn validate_spec(spec: &ModelSpec, path: &Path, keys: &SpecKeys) -> Result<()> {
    let positive = [
        (&keys.vocab_size, spec.vocab_size),
        (&keys.hidden_size, spec.hidden_size),
        (&keys.intermediate_size, spec.intermediate_size),
        (&keys.n_layers, spec.n_layers),
        (&keys.n_heads, spec.n_heads),
        (&keys.n_kv_heads, spec.n_kv_heads),
        (&keys.head_dim, spec.head_dim),
        (&keys.max_position_embeddings, spec.max_position_embeddings),
    ];
    for (key, v) in positive {
        if v == 0 {
            return Err(Error::config(path, key, "must be greater than 0"));
        }
    }
    if !spec.n_heads.is_multiple_of(spec.n_kv_heads) {
        return Err(Error::config(
            path,
            &keys.n_kv_heads,
            format!(
                "{} query heads are not a multiple of {} KV heads",
                spec.n_heads, spec.n_kv_heads
            ),
        ));
    }
    if !spec.head_dim.is_multiple_of(2) {
        return Err(Error::config(
            path,
            &keys.head_dim,
            format!("head dimension {} is odd; RoPE needs pairs", spec.head_dim),
        ));
    }
    let too_big = |key: &str, what: &str| {
        Error::config(
            path,
            key,
            format!("{what} overflows; the value is not plausible"),
        )
    };
    let q_dim = spec
        .n_heads
        .checked_mul(spec.head_dim)
        .ok_or_else(|| too_big(&keys.n_heads, "heads × head_dim"))?;
    for (key, rows) in [
        (&keys.vocab_size, spec.vocab_size),
        (&keys.intermediate_size, spec.intermediate_size),
        (&keys.n_heads, q_dim),
    ] {
        rows.checked_mul(spec.hidden_size)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| too_big(key, "matrix size"))?;
    }
    if !(spec.rope.theta.is_finite() && spec.rope.theta > 0.0) {
        return Err(Error::config(
            path,
            &keys.rope_theta,
            format!("RoPE base {} must be a positive number", spec.rope.theta),
        ));
    }
    if !(spec.rms_norm_eps.is_finite() && spec.rms_norm_eps >= 0.0) {
        return Err(Error::config(
            path,
            &keys.rms_norm_eps,
            format!("{} is not a valid epsilon", spec.rms_norm_eps),
        ));
    }
    Ok(())
}

/// The per-format key names [`validate_spec`] cites.
pub(crate) struct SpecKeys {
    pub vocab_size: String,
    pub hidden_size: String,
    pub intermediate_size: String,
    pub n_layers: String,
    pub n_heads: String,
    pub n_kv_heads: String,
    pub head_dim: String,
    pub max_position_embeddings: String,
    pub rope_theta: String,
    pub rms_norm_eps: String,
}

/// [`Tensor::new`] for data read from a file: a size mismatch is file corruption, named as such.
pub(crate) fn file_tensor(
    path: &Path,
    name: &str,
    dtype: tandem_hal::DType,
    shape: Vec<usize>,
    data: HostBytes,
) -> Result<Tensor> {
    if checked_byte_len(dtype, &shape).is_none() {
        return Err(Error::corrupt(
            path,
            format!(
                "tensor `{name}`: shape {shape:?} is not a whole number of {dtype} blocks per row \
                 or its size overflows"
            ),
        ));
    }
    Tensor::new(name, dtype, shape, data).map_err(|e| match e {
        Error::InvalidInput(detail) => Error::corrupt(path, detail),
        other => other,
    })
}

/// Byte size of `shape` in `dtype` with every product checked (`None` on overflow or when the
/// last dimension is not a whole number of blocks). The element count must fit in `usize` too:
/// a zero dimension makes the byte size 0 however large the others are, and code downstream
/// multiplies all of them (`Tensor::numel`).
pub(crate) fn checked_byte_len(dtype: tandem_hal::DType, shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    let row = shape.last().copied().unwrap_or(1);
    let rows = shape
        .iter()
        .rev()
        .skip(1)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    dtype.row_bytes(row)?.checked_mul(rows)
}
