//! GGUF files (versions 2 and 3, little-endian): the header, metadata and tensor directory are
//! parsed eagerly and bounds-checked against the file; tensor data stays in the mapping until a
//! tensor is asked for. llama-arch q/k rows are un-permuted at load (see [`unpermute_heads`]).
//!
//! Layout: magic `GGUF`, version u32, tensor count u64, metadata count u64, the metadata
//! (key string, value type u32, value), the tensor infos (name, n_dims u32, dims u64 × n_dims with
//! the innermost first, ggml type u32, offset u64), padding to `general.alignment`, then the data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tandem_hal::{DType, Error, HostBytes, Result, Tensor};

use crate::metadata::{GgufValue, Metadata};
use crate::model::{
    assemble_weights, checked_byte_len, file_tensor, validate_spec, LoadedModel, ModelFormat,
    SpecKeys, TensorSource,
};
use crate::ops::{LayerWeight, WeightRef};
use crate::spec::{Arch, ModelSpec, ModelWeights, RopeScaling, RopeSpec};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal; a corrupt file must not nest them deep enough to overflow the stack.
const MAX_ARRAY_NESTING: u32 = 8;

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// PyTorch order (outermost first): GGUF's dimensions reversed.
    pub shape: Vec<usize>,
    /// The ggml type number as stored.
    pub ggml_type: u32,
    /// The type as tandem knows it; `None` for ggml types tandem does not handle.
    pub dtype: Option<DType>,
    /// Offset of the tensor's bytes from the start of the data section.
    pub offset: u64,
}

/// A parsed GGUF file. Tensors are materialised on request as views of the file's bytes.
#[derive(Clone, Debug)]
pub struct GgufFile {
    /// The file, or the name given to [`GgufFile::from_bytes`].
    pub path: PathBuf,
    pub version: u32,
    pub metadata: Metadata,
    /// The tensor directory, in file order.
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Offset of the data section within the file.
    pub data_offset: usize,
    bytes: HostBytes,
    by_name: HashMap<String, usize>,
}

/// The ggml type numbers tandem reads.
pub fn dtype_from_ggml(ggml_type: u32) -> Option<DType> {
    Some(match ggml_type {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::Q4_0,
        3 => DType::Q4_1,
        6 => DType::Q5_0,
        7 => DType::Q5_1,
        8 => DType::Q8_0,
        30 => DType::BF16,
        _ => return None,
    })
}

/// The name llama.cpp gives a ggml type number, for messages.
pub fn ggml_type_name(ggml_type: u32) -> &'static str {
    match ggml_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}

impl GgufFile {
    /// Maps and parses `path`.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let bytes = HostBytes::map_file(path)?;
        Self::parse(bytes, path.to_path_buf())
    }

    /// Parses a GGUF image held in memory; `name` stands in for the path in errors.
    pub fn from_bytes(bytes: HostBytes, name: &str) -> Result<GgufFile> {
        Self::parse(bytes, PathBuf::from(name))
    }

    fn parse(bytes: HostBytes, path: PathBuf) -> Result<GgufFile> {
        let buf = bytes.as_bytes();
        let mut r = Reader {
            buf,
            pos: 0,
            path: &path,
        };
        if buf.len() < 4 || buf[..4] != GGUF_MAGIC {
            let head = &buf[..buf.len().min(4)];
            return Err(Error::corrupt(
                &path,
                format!("not a GGUF file: starts with {head:02x?}, expected \"GGUF\""),
            ));
        }
        r.pos = 4;
        let version = r.u32(&|| "version".into())?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(Error::corrupt(
                    &path,
                    "GGUF version 1 is not supported (versions 2 and 3 are)",
                ))
            }
            v if matches!(v.swap_bytes(), 2 | 3) => {
                return Err(Error::corrupt(
                    &path,
                    format!(
                        "big-endian GGUF (version {}) is not supported",
                        v.swap_bytes()
                    ),
                ))
            }
            v => {
                return Err(Error::corrupt(
                    &path,
                    format!("unknown GGUF version {v} (supported: 2, 3)"),
                ))
            }
        }
        let tensor_count = r.u64(&|| "tensor count".into())?;
        let kv_count = r.u64(&|| "metadata count".into())?;
        // Smallest possible entries: a metadata pair is an empty key (8) + type (4) + a u8 (1);
        // a tensor info is an empty name (8) + n_dims (4) + type (4) + offset (8).
        let left = r.remaining() as u64;
        if kv_count > left / 13 || tensor_count > left / 24 {
            return Err(Error::corrupt(
                &path,
                format!(
                    "header claims {kv_count} metadata entries and {tensor_count} tensors, \
                     which cannot fit in a {}-byte file",
                    buf.len()
                ),
            ));
        }

        let mut metadata = Metadata::new();
        for i in 0..kv_count {
            let key = r.string(&|| format!("key of metadata entry #{i}"))?;
            let ty = r.u32(&|| format!("type of metadata `{key}`"))?;
            let value = r.value(ty, 0, &|| format!("metadata `{key}`"))?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(Error::corrupt(
                    &path,
                    format!("metadata key `{key}` appears twice"),
                ));
            }
        }

        let mut tensors = Vec::new();
        let mut by_name = HashMap::new();
        for i in 0..tensor_count {
            let name = r.string(&|| format!("name of tensor #{i}"))?;
            let what = || format!("info of tensor `{name}`");
            let n_dims = r.u32(&what)?;
            if n_dims > MAX_DIMS {
                return Err(Error::corrupt(
                    &path,
                    format!(
                        "tensor `{name}` has {n_dims} dimensions (ggml allows at most {MAX_DIMS})"
                    ),
                ));
            }
            let mut shape = Vec::new();
            for _ in 0..n_dims {
                let d = r.u64(&what)?;
                let d = usize::try_from(d).map_err(|_| {
                    Error::corrupt(
                        &path,
                        format!("tensor `{name}`: dimension {d} is too large"),
                    )
                })?;
                shape.push(d);
            }
            shape.reverse();
            let ggml_type = r.u32(&what)?;
            let offset = r.u64(&what)?;
            if by_name.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::corrupt(
                    &path,
                    format!("tensor `{name}` appears twice in the tensor directory"),
                ));
            }
            tensors.push(GgufTensorInfo {
                name,
                shape,
                ggml_type,
                dtype: dtype_from_ggml(ggml_type),
                offset,
            });
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= 1 << 20)
                .ok_or_else(|| {
                    Error::config(
                        &path,
                        "general.alignment",
                        format!("{v:?} is not a power of two"),
                    )
                })?,
        };
        // `alignment` ≤ 2^20, so rounding up cannot overflow for any in-memory offset.
        let align = alignment as usize;
        let data_offset = r.pos.div_ceil(align) * align;
        let data_len = buf.len().saturating_sub(data_offset) as u64;

        for t in &tensors {
            if t.offset % alignment != 0 {
                return Err(Error::corrupt(
                    &path,
                    format!(
                        "tensor `{}`: data offset {} is not a multiple of the alignment {alignment}",
                        t.name, t.offset
                    ),
                ));
            }
            let size = match t.dtype {
                Some(dt) => checked_byte_len(dt, &t.shape).ok_or_else(|| {
                    Error::corrupt(
                        &path,
                        format!(
                            "tensor `{}`: shape {:?} is not a whole number of {dt} blocks per row \
                             or its size overflows",
                            t.name, t.shape
                        ),
                    )
                })? as u64,
                // Size unknown for types tandem does not read; only the start is checked.
                None => 0,
            };
            let end = t.offset.checked_add(size);
            if end.is_none_or(|e| e > data_len) {
                return Err(Error::corrupt(
                    &path,
                    format!(
                        "tensor `{}` ({}, shape {:?}) needs bytes [{}, {}) of the data section, \
                         which holds {data_len} bytes (file truncated?)",
                        t.name,
                        ggml_type_name(t.ggml_type),
                        t.shape,
                        t.offset,
                        t.offset.saturating_add(size)
                    ),
                ));
            }
        }

        Ok(GgufFile {
            path,
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            bytes,
            by_name,
        })
    }

    /// Total size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The tensor `name`, as a view of the file's bytes.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        self.get_tensor(name)?.ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        })
    }

    /// Like [`GgufFile::tensor`], `Ok(None)` when absent.
    pub fn get_tensor(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(info) = self.tensor_info(name) else {
            return Ok(None);
        };
        let dtype = info.dtype.ok_or_else(|| Error::UnsupportedDType {
            path: self.path.clone(),
            tensor: name.to_string(),
            dtype: format!(
                "ggml type {} ({}); supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1",
                info.ggml_type,
                ggml_type_name(info.ggml_type)
            ),
        })?;
        let corrupt = || Error::corrupt(&self.path, format!("tensor `{name}`: data out of range"));
        let size = checked_byte_len(dtype, &info.shape).ok_or_else(corrupt)?;
        let start = usize::try_from(info.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_offset))
            .ok_or_else(corrupt)?;
        let data = self.bytes.slice(start, size).ok_or_else(corrupt)?;
        file_tensor(&self.path, name, dtype, info.shape.clone(), data).map(Some)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        let key = "general.architecture";
        match self.metadata.get(key) {
            Some(GgufValue::String(s)) => Ok(s),
            Some(v) => Err(Error::config(
                &self.path,
                key,
                format!("expected a string, found {}", v.type_name()),
            )),
            None => Err(Error::config(&self.path, key, "missing")),
        }
    }

    /// The model's hyper-parameters from `{arch}.*` and `tokenizer.ggml.*` metadata.
    pub fn model_spec(&self) -> Result<ModelSpec> {
        let arch_name = self.architecture()?;
        let arch = match arch_name {
            // Mistral files are written as "llama": the block is the same.
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            other => {
                return Err(Error::UnsupportedArch {
                    path: self.path.clone(),
                    arch: other.to_string(),
                    supported: Arch::SUPPORTED,
                })
            }
        };
        let key = |s: &str| format!("{arch_name}.{s}");
        let m = Meta {
            map: &self.metadata,
            path: &self.path,
        };
        let hidden_size = m.req_usize(&key("embedding_length"))?;
        let n_heads = m.req_usize(&key("attention.head_count"))?;
        let n_kv_heads = m.usize(&key("attention.head_count_kv"))?.unwrap_or(n_heads);
        let head_dim = match m.usize(&key("attention.key_length"))? {
            Some(d) => d,
            None => {
                if n_heads == 0 || hidden_size % n_heads != 0 {
                    return Err(Error::config(
                        &self.path,
                        key("attention.key_length"),
                        format!(
                            "not given, and embedding_length {hidden_size} is not a multiple of \
                             head_count {n_heads}"
                        ),
                    ));
                }
                hidden_size / n_heads
            }
        };
        if let Some(vd) = m.usize(&key("attention.value_length"))? {
            if vd != head_dim {
                return Err(Error::config(
                    &self.path,
                    key("attention.value_length"),
                    format!(
                        "{vd} differs from the key length {head_dim}, which is not implemented"
                    ),
                ));
            }
        }
        if let Some(rd) = m.usize(&key("rope.dimension_count"))? {
            if rd != head_dim {
                return Err(Error::config(
                    &self.path,
                    key("rope.dimension_count"),
                    format!("{rd} differs from the head size {head_dim}: partial rotary embeddings are not implemented"),
                ));
            }
        }
        let vocab_size =
            match m.usize(&key("vocab_size"))? {
                Some(v) => v,
                None => match (
                    self.tensor_info("token_embd.weight"),
                    self.metadata.get("tokenizer.ggml.tokens"),
                ) {
                    (Some(t), _) if t.shape.len() == 2 => t.shape[0],
                    (_, Some(GgufValue::Array(tokens))) => tokens.len(),
                    _ => return Err(Error::config(
                        &self.path,
                        key("vocab_size"),
                        "missing, and neither token_embd.weight nor tokenizer.ggml.tokens gives it",
                    )),
                },
            };
        let theta = m.f32(&key("rope.freq_base"))?.unwrap_or(10000.0);
        let scaling = self.rope_scaling(&m, arch_name, head_dim)?;
        let mut eos_token_ids = Vec::new();
        for k in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            if let Some(id) = m.token_id(k)? {
                if !eos_token_ids.contains(&id) {
                    eos_token_ids.push(id);
                }
            }
        }
        let spec = ModelSpec {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size: m.req_usize(&key("feed_forward_length"))?,
            n_layers: m.req_usize(&key("block_count"))?,
            n_heads,
            n_kv_heads,
            head_dim,
            rms_norm_eps: m
                .f32(&key("attention.layer_norm_rms_epsilon"))?
                .ok_or_else(|| {
                    Error::config(
                        &self.path,
                        key("attention.layer_norm_rms_epsilon"),
                        "missing",
                    )
                })?,
            rope: RopeSpec {
                theta,
                rotary_dim: head_dim,
                scaling,
            },
            max_position_embeddings: m.req_usize(&key("context_length"))?,
            tie_word_embeddings: !self.has_tensor("output.weight"),
            qkv_bias: arch == Arch::Qwen2 || self.has_tensor("blk.0.attn_q.bias"),
            qk_norm: arch == Arch::Qwen3,
            bos_token_id: m.token_id("tokenizer.ggml.bos_token_id")?,
            eos_token_ids,
        };
        validate_spec(
            &spec,
            &self.path,
            &SpecKeys {
                vocab_size: key("vocab_size"),
                hidden_size: key("embedding_length"),
                intermediate_size: key("feed_forward_length"),
                n_layers: key("block_count"),
                n_heads: key("attention.head_count"),
                n_kv_heads: key("attention.head_count_kv"),
                head_dim: key("attention.key_length"),
                max_position_embeddings: key("context_length"),
                rope_theta: key("rope.freq_base"),
                rms_norm_eps: key("attention.layer_norm_rms_epsilon"),
            },
        )?;
        Ok(spec)
    }

    /// `rope_freqs.weight` (llama3-style factors baked by the converter) or linear scaling keys.
    fn rope_scaling(
        &self,
        m: &Meta<'_>,
        arch_name: &str,
        head_dim: usize,
    ) -> Result<Option<RopeScaling>> {
        if let Some(t) = self.get_tensor("rope_freqs.weight")? {
            if t.dtype.is_quantized() {
                return Err(Error::UnsupportedDType {
                    path: self.path.clone(),
                    tensor: t.name.clone(),
                    dtype: format!("{} (expected f32)", t.dtype),
                });
            }
            t.expect_shape(&self.path, &[head_dim / 2])?;
            let factors = t.to_f32_vec();
            if let Some(bad) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
                return Err(Error::corrupt(
                    &self.path,
                    format!("tensor `rope_freqs.weight` holds {bad}; factors must be positive"),
                ));
            }
            return Ok(Some(RopeScaling::FreqFactors(factors)));
        }
        let type_key = format!("{arch_name}.rope.scaling.type");
        let factor_key = format!("{arch_name}.rope.scaling.factor");
        let legacy_key = format!("{arch_name}.rope.scale_linear");
        let positive = |key: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(Error::config(
                    &self.path,
                    key,
                    format!("{v} is not a positive number"),
                ))
            }
        };
        match m.str(&type_key)? {
            None | Some("none") => {}
            Some("linear") => {
                let factor = m.f32(&factor_key)?.ok_or_else(|| {
                    Error::config(&self.path, &factor_key, "required for linear RoPE scaling")
                })?;
                return Ok(Some(RopeScaling::Linear {
                    factor: positive(&factor_key, factor)?,
                }));
            }
            Some(other) => {
                return Err(Error::config(
                    &self.path,
                    &type_key,
                    format!("unsupported RoPE scaling \"{other}\" (supported: none, linear)"),
                ))
            }
        }
        match m.f32(&legacy_key)? {
            Some(f) if f != 1.0 => Ok(Some(RopeScaling::Linear {
                factor: positive(&legacy_key, f)?,
            })),
            _ => Ok(None),
        }
    }

    /// Every weight the spec calls for, llama q/k rows un-permuted to Hugging Face order.
    pub fn model_weights(&self, spec: &ModelSpec) -> Result<ModelWeights> {
        let mut w = assemble_weights(spec, self)?;
        if self.architecture()? == "llama" {
            for l in &mut w.layers {
                l.wq = unpermute_heads(&l.wq, spec.n_heads, spec.head_dim, &self.path)?;
                l.wk = unpermute_heads(&l.wk, spec.n_kv_heads, spec.head_dim, &self.path)?;
                if let Some(b) = &l.bq {
                    l.bq = Some(unpermute_heads(b, spec.n_heads, spec.head_dim, &self.path)?);
                }
                if let Some(b) = &l.bk {
                    l.bk = Some(unpermute_heads(
                        b,
                        spec.n_kv_heads,
                        spec.head_dim,
                        &self.path,
                    )?);
                }
            }
        }
        Ok(w)
    }
}

impl TensorSource for GgufFile {
    fn name(&self, w: WeightRef) -> String {
        match w {
            WeightRef::TokenEmbd => "token_embd.weight".into(),
            WeightRef::OutputNorm => "output_norm.weight".into(),
            WeightRef::LmHead => "output.weight".into(),
            WeightRef::Layer { layer, kind } => {
                let s = match kind {
                    LayerWeight::AttnNorm => "attn_norm.weight",
                    LayerWeight::Wq => "attn_q.weight",
                    LayerWeight::Wk => "attn_k.weight",
                    LayerWeight::Wv => "attn_v.weight",
                    LayerWeight::Bq => "attn_q.bias",
                    LayerWeight::Bk => "attn_k.bias",
                    LayerWeight::Bv => "attn_v.bias",
                    LayerWeight::QNorm => "attn_q_norm.weight",
                    LayerWeight::KNorm => "attn_k_norm.weight",
                    LayerWeight::Wo => "attn_output.weight",
                    LayerWeight::FfnNorm => "ffn_norm.weight",
                    LayerWeight::WGate => "ffn_gate.weight",
                    LayerWeight::WUp => "ffn_up.weight",
                    LayerWeight::WDown => "ffn_down.weight",
                };
                format!("blk.{layer}.{s}")
            }
        }
    }

    fn get(&self, name: &str) -> Result<Option<Tensor>> {
        self.get_tensor(name)
    }

    fn path_for(&self, _name: &str) -> PathBuf {
        self.path.clone()
    }
}

/// Maps and loads a `.gguf` model file.
pub fn load_gguf_file(path: &Path) -> Result<LoadedModel> {
    load_from_gguf(GgufFile::open(path)?)
}

/// Builds the spec and weights of an already parsed GGUF file.
pub fn load_from_gguf(file: GgufFile) -> Result<LoadedModel> {
    let spec = file.model_spec()?;
    let weights = file.model_weights(&spec)?;
    let file_size_bytes = file.file_size();
    Ok(LoadedModel {
        spec,
        weights,
        format: ModelFormat::Gguf,
        path: file.path,
        gguf_metadata: Some(file.metadata),
        file_size_bytes,
    })
}

/// Undoes llama.cpp's q/k row permutation. Its converter reorders each head's rows so that RoPE
/// rotates adjacent pairs: GGUF row `2i + j` (i < d/2, j ∈ {0, 1}) holds Hugging Face row
/// `j·d/2 + i`. Rows are moved whole, so any dtype works (a 1-D bias moves element by element).
pub fn unpermute_heads(t: &Tensor, n_heads: usize, head_dim: usize, path: &Path) -> Result<Tensor> {
    let (rows, unit) = match t.shape.as_slice() {
        [n] => {
            if t.dtype.is_quantized() {
                return Err(Error::UnsupportedDType {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    dtype: format!("{} (a 1-D q/k bias must be a float type)", t.dtype),
                });
            }
            (*n, t.dtype.block_bytes())
        }
        [n, _] => (*n, t.row_bytes()),
        _ => (0, 0),
    };
    let expected = n_heads.checked_mul(head_dim);
    if expected != Some(rows)
        || !head_dim.is_multiple_of(2)
        || rows.checked_mul(unit) != Some(t.data.len())
    {
        return Err(Error::corrupt(
            path,
            format!(
                "tensor `{}` (shape {:?}) cannot be split into {n_heads} heads of {head_dim} rows",
                t.name, t.shape
            ),
        ));
    }
    let src = t.data.as_bytes();
    let mut out = vec![0u8; src.len()];
    let half = head_dim / 2;
    for h in 0..n_heads {
        let base = h * head_dim;
        for i in 0..half {
            for j in 0..2 {
                let from = (base + 2 * i + j) * unit;
                let to = (base + j * half + i) * unit;
                out[to..to + unit].copy_from_slice(&src[from..from + unit]);
            }
        }
    }
    Tensor::new(
        t.name.clone(),
        t.dtype,
        t.shape.clone(),
        HostBytes::from_vec(out),
    )
}

/// A cursor over the header; every read is bounds-checked and names what it was reading.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

type What<'w> = &'w dyn Fn() -> String;

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: What<'_>) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::corrupt(
                self.path,
                format!(
                    "truncated: {} needs {n} bytes at offset {}, but the file ends at {}",
                    what(),
                    self.pos,
                    self.buf.len()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self, what: What<'_>) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: What<'_>) -> Result<u32> {
        self.fixed(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: What<'_>) -> Result<u64> {
        self.fixed(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: What<'_>) -> Result<String> {
        let len = self.u64(what)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= self.remaining())
            .ok_or_else(|| {
                Error::corrupt(
                    self.path,
                    format!(
                        "{}: string length {len} at offset {} exceeds the {} bytes left in the file",
                        what(),
                        self.pos - 8,
                        self.remaining()
                    ),
                )
            })?;
        let bytes = self.take(len, what)?;
        // GGUF strings are UTF-8; a stray invalid byte in one vocabulary entry should not make
        // the whole model unloadable.
        Ok(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        })
    }

    fn value(&mut self, ty: u32, depth: u32, what: What<'_>) -> Result<GgufValue> {
        Ok(match ty {
            0 => GgufValue::U8(u8::from_le_bytes(self.fixed(what)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.fixed(what)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.fixed(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.fixed(what)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.fixed(what)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.fixed(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.fixed(what)?)),
            7 => GgufValue::Bool(self.fixed::<1>(what)?[0] != 0),
            8 => GgufValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_NESTING {
                    return Err(Error::corrupt(
                        self.path,
                        format!(
                            "{}: arrays nested more than {MAX_ARRAY_NESTING} deep",
                            what()
                        ),
                    ));
                }
                let item_ty = self.u32(what)?;
                let count = self.u64(what)?;
                let min = min_value_size(item_ty).ok_or_else(|| {
                    Error::corrupt(
                        self.path,
                        format!("{}: unknown array item type {item_ty}", what()),
                    )
                })?;
                let fits = count
                    .checked_mul(min)
                    .is_some_and(|n| n <= self.remaining() as u64);
                if !fits {
                    return Err(Error::corrupt(
                        self.path,
                        format!(
                            "{}: array of {count} items cannot fit in the {} bytes left in the file",
                            what(),
                            self.remaining()
                        ),
                    ));
                }
                // `fits` bounds `count` by the file size.
                let mut items = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let item_what = || format!("{} item {i}", what());
                    items.push(self.value(item_ty, depth + 1, &item_what)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.fixed(what)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.fixed(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.fixed(what)?)),
            other => {
                return Err(Error::corrupt(
                    self.path,
                    format!("{}: unknown value type {other}", what()),
                ))
            }
        })
    }
}

/// Fewest bytes a value of GGUF type `ty` can take (`None` for unknown types).
fn min_value_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

/// Typed metadata access, errors naming the file and key.
struct Meta<'a> {
    map: &'a Metadata,
    path: &'a Path,
}

impl Meta<'_> {
    fn wrong(&self, key: &str, wanted: &str, v: &GgufValue) -> Error {
        let found = match v {
            GgufValue::Array(_) => "an array (per-layer values are not supported)".to_string(),
            other => format!("{other:?}"),
        };
        Error::config(self.path, key, format!("expected {wanted}, found {found}"))
    }

    fn usize(&self, key: &str) -> Result<Option<usize>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a non-negative integer", v)),
        }
    }

    fn req_usize(&self, key: &str) -> Result<usize> {
        self.usize(key)?
            .ok_or_else(|| Error::config(self.path, key, "missing"))
    }

    fn f32(&self, key: &str) -> Result<Option<f32>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|f| Some(f as f32))
                .ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }

    fn str(&self, key: &str) -> Result<Option<&str>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a string", v)),
        }
    }

    fn token_id(&self, key: &str) -> Result<Option<u32>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a token id", v)),
        }
    }
}
