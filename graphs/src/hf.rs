//! Hugging Face model directories: `config.json` for the hyper-parameters and safetensors files
//! (one `model.safetensors`, or shards listed in `model.safetensors.index.json`) for the weights.
//! Every file is mapped once and each tensor is a window into its mapping.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tandem_hal::{DType, Error, HostBytes, Result, Tensor};

use crate::model::{
    assemble_weights, file_tensor, validate_spec, LoadedModel, ModelFormat, SpecKeys, TensorSource,
};
use crate::ops::{LayerWeight, WeightRef};
use crate::spec::{Arch, ModelSpec, RopeScaling, RopeSpec};

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

/// Loads `dir/config.json` and the safetensors weights beside it.
pub fn load_hf_dir(dir: &Path) -> Result<LoadedModel> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| Error::io("read", &config_path, e))?;
    let spec = spec_from_config_json(&text, &config_path)?;
    let mut source = SafetensorsDir::open(dir)?;
    if spec.arch == Arch::Phi3 {
        source.fused = Some(Fused {
            q: spec.q_dim(),
            kv: spec.kv_dim(),
            ff: spec.intermediate_size,
        });
    }
    // Llama/Qwen3's `attention_bias` also puts a bias on o_proj, which the block in `spec`
    // does not have: refuse rather than silently drop it.
    if source.contains("model.layers.0.self_attn.o_proj.bias") {
        return Err(Error::config(
            &config_path,
            "attention_bias",
            "the model has an o_proj bias (`model.layers.0.self_attn.o_proj.bias`), which tandem \
             does not implement",
        ));
    }
    let weights = assemble_weights(&spec, &source)?;
    Ok(LoadedModel {
        spec,
        weights,
        format: ModelFormat::HfSafetensors,
        path: dir.to_path_buf(),
        gguf_metadata: None,
        file_size_bytes: source.total_bytes(),
    })
}

/// Parses the text of a `config.json` into a [`ModelSpec`]; `path` is named in errors.
pub fn spec_from_config_json(text: &str, path: &Path) -> Result<ModelSpec> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| Error::corrupt(path, format!("config.json is not valid JSON: {e}")))?;
    let cfg = root
        .as_object()
        .ok_or_else(|| Error::corrupt(path, "config.json is not a JSON object"))?;
    let c = Cfg { map: cfg, path };

    let arch = match cfg.get("architectures") {
        Some(Value::Array(list)) => {
            let first = list
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| c.err("architectures", "expected a non-empty list of strings"))?;
            arch_from_class(first).ok_or_else(|| Error::UnsupportedArch {
                path: path.to_path_buf(),
                arch: first.to_string(),
                supported: Arch::SUPPORTED,
            })?
        }
        Some(Value::Null) | None => {
            // Some exported configs carry only `model_type`.
            let mt = c.str("model_type")?.ok_or_else(|| {
                c.err(
                    "architectures",
                    "missing (and no `model_type` to fall back on)",
                )
            })?;
            arch_from_model_type(mt).ok_or_else(|| Error::UnsupportedArch {
                path: path.to_path_buf(),
                arch: mt.to_string(),
                supported: Arch::SUPPORTED,
            })?
        }
        Some(other) => {
            return Err(c.err(
                "architectures",
                format!("expected a list of strings, found {other}"),
            ))
        }
    };

    let hidden_size = c.req_usize("hidden_size")?;
    let n_heads = c.req_usize("num_attention_heads")?;
    let n_kv_heads = c.usize("num_key_value_heads")?.unwrap_or(n_heads);
    let head_dim = match c.usize("head_dim")? {
        Some(d) => d,
        None => {
            if n_heads == 0 || hidden_size % n_heads != 0 {
                return Err(c.err(
                    "head_dim",
                    format!(
                        "not given, and hidden_size {hidden_size} is not a multiple of \
                         num_attention_heads {n_heads}"
                    ),
                ));
            }
            hidden_size / n_heads
        }
    };
    let mut max_position_embeddings = c.req_usize("max_position_embeddings")?;
    // A sliding window shorter than the context changes attention past the window, which the
    // block in `spec` does not model: cap the usable context so results stay exact.
    let window_on = match arch {
        Arch::Mistral | Arch::Phi3 => true,
        Arch::Qwen2 | Arch::Qwen3 => c.bool("use_sliding_window")?.unwrap_or(false),
        Arch::Llama => false,
    };
    if window_on {
        if let Some(w) = c.usize("sliding_window")? {
            if w > 0 && w < max_position_embeddings {
                tracing::warn!(
                    "{}: sliding_window {w} < max_position_embeddings {max_position_embeddings}; \
                     limiting the context to {w} tokens",
                    path.display()
                );
                max_position_embeddings = w;
            }
        }
    }
    if let Some(true) = c.bool("mlp_bias")? {
        return Err(c.err("mlp_bias", "MLP biases are not implemented"));
    }
    let qkv_bias = match arch {
        Arch::Qwen2 => true,
        Arch::Llama | Arch::Qwen3 => c.bool("attention_bias")?.unwrap_or(false),
        Arch::Mistral | Arch::Phi3 => false,
    };
    let rope = parse_rope(&c, head_dim)?;
    let spec = ModelSpec {
        arch,
        vocab_size: c.req_usize("vocab_size")?,
        hidden_size,
        intermediate_size: c.req_usize("intermediate_size")?,
        n_layers: c.req_usize("num_hidden_layers")?,
        n_heads,
        n_kv_heads,
        head_dim,
        rms_norm_eps: c.f32("rms_norm_eps")?.unwrap_or(1e-6),
        rope,
        max_position_embeddings,
        tie_word_embeddings: c.bool("tie_word_embeddings")?.unwrap_or(false),
        qkv_bias,
        qk_norm: arch == Arch::Qwen3,
        bos_token_id: c.token_ids("bos_token_id")?.first().copied(),
        eos_token_ids: c.token_ids("eos_token_id")?,
    };
    validate_spec(
        &spec,
        path,
        &SpecKeys {
            vocab_size: "vocab_size".into(),
            hidden_size: "hidden_size".into(),
            intermediate_size: "intermediate_size".into(),
            n_layers: "num_hidden_layers".into(),
            n_heads: "num_attention_heads".into(),
            n_kv_heads: "num_key_value_heads".into(),
            head_dim: "head_dim".into(),
            max_position_embeddings: "max_position_embeddings".into(),
            rope_theta: "rope_theta".into(),
            rms_norm_eps: "rms_norm_eps".into(),
        },
    )?;
    Ok(spec)
}

fn arch_from_class(class: &str) -> Option<Arch> {
    Some(match class {
        "LlamaForCausalLM" => Arch::Llama,
        "MistralForCausalLM" => Arch::Mistral,
        "Qwen2ForCausalLM" => Arch::Qwen2,
        "Qwen3ForCausalLM" => Arch::Qwen3,
        "Phi3ForCausalLM" => Arch::Phi3,
        _ => return None,
    })
}

fn arch_from_model_type(mt: &str) -> Option<Arch> {
    Some(match mt {
        "llama" => Arch::Llama,
        "mistral" => Arch::Mistral,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "phi3" => Arch::Phi3,
        _ => return None,
    })
}

/// RoPE from transformers-5 `rope_parameters` when present, else `rope_theta` + `rope_scaling`.
fn parse_rope(c: &Cfg<'_>, head_dim: usize) -> Result<RopeSpec> {
    if let Some(f) = c.f32("partial_rotary_factor")? {
        if f != 1.0 {
            return Err(c.err(
                "partial_rotary_factor",
                format!("{f}: partial rotary embeddings are not implemented"),
            ));
        }
    }
    let top_theta = c.f32("rope_theta")?;
    let (theta, scaling) = match c.map.get("rope_parameters") {
        Some(Value::Object(params)) => {
            let p = Cfg {
                map: params,
                path: c.path,
            };
            let theta = p
                .f32_at("rope_parameters", "rope_theta")?
                .or(top_theta)
                .unwrap_or(10000.0);
            (theta, parse_scaling(&p, "rope_parameters", true)?)
        }
        Some(Value::Null) | None => {
            let scaling = match c.map.get("rope_scaling") {
                Some(Value::Object(s)) => {
                    let s = Cfg {
                        map: s,
                        path: c.path,
                    };
                    parse_scaling(&s, "rope_scaling", false)?
                }
                Some(Value::Null) | None => None,
                Some(other) => {
                    return Err(c.err(
                        "rope_scaling",
                        format!("expected an object or null, found {other}"),
                    ))
                }
            };
            (top_theta.unwrap_or(10000.0), scaling)
        }
        Some(other) => {
            return Err(c.err(
                "rope_parameters",
                format!("expected an object, found {other}"),
            ))
        }
    };
    Ok(RopeSpec {
        theta,
        rotary_dim: head_dim,
        scaling,
    })
}

/// One scaling object (`rope_scaling` or `rope_parameters`); `prefix` names it in errors.
fn parse_scaling(s: &Cfg<'_>, prefix: &str, type_optional: bool) -> Result<Option<RopeScaling>> {
    let key = |k: &str| format!("{prefix}.{k}");
    let (type_key, ty) = match (s.map.get("rope_type"), s.map.get("type")) {
        (Some(Value::String(t)), _) => ("rope_type", t.as_str()),
        (_, Some(Value::String(t))) => ("type", t.as_str()),
        (None | Some(Value::Null), None | Some(Value::Null)) if type_optional => {
            ("rope_type", "default")
        }
        _ => {
            return Err(s.err(
                key("rope_type"),
                "missing or not a string (expected \"default\", \"linear\" or \"llama3\")",
            ))
        }
    };
    let req = |k: &str| -> Result<f32> {
        s.f32_at(prefix, k)?
            .ok_or_else(|| s.err(key(k), format!("required for rope_type \"{ty}\"")))
    };
    let positive = |k: &str| -> Result<f32> {
        let v = req(k)?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(s.err(key(k), format!("{v} is not a positive number")))
        }
    };
    Ok(match ty {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: positive("factor")?,
        }),
        "llama3" => {
            let low = positive("low_freq_factor")?;
            let high = positive("high_freq_factor")?;
            if high <= low {
                return Err(s.err(
                    key("high_freq_factor"),
                    format!("{high} must be greater than low_freq_factor {low}"),
                ));
            }
            let omax = s
                .usize_at(prefix, "original_max_position_embeddings")?
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    s.err(
                        key("original_max_position_embeddings"),
                        "required (a positive integer) for rope_type \"llama3\"",
                    )
                })?;
            Some(RopeScaling::Llama3 {
                factor: positive("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: omax,
            })
        }
        other => {
            return Err(s.err(
                key(type_key),
                format!(
                    "unsupported RoPE scaling \"{other}\" (supported: default, linear, llama3)"
                ),
            ))
        }
    })
}

/// Typed access to one JSON object of the config, errors naming `path` and the key.
struct Cfg<'a> {
    map: &'a Map<String, Value>,
    path: &'a Path,
}

impl Cfg<'_> {
    fn err(&self, key: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::config(self.path, key, detail)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str) -> Result<Option<usize>> {
        self.usize_at("", key)
    }

    fn req_usize(&self, key: &str) -> Result<usize> {
        self.usize(key)?
            .ok_or_else(|| self.err(key, "missing (expected a non-negative integer)"))
    }

    /// `prefix` is only used to name nested keys in errors.
    fn usize_at(&self, prefix: &str, key: &str) -> Result<Option<usize>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = v
            .as_u64()
            .or_else(|| {
                // Some exporters write integral floats (`131072.0`).
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                    .map(|f| f as u64)
            })
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                self.err(
                    dotted(prefix, key),
                    format!("expected a non-negative integer, found {v}"),
                )
            })?;
        Ok(Some(n))
    }

    fn f32(&self, key: &str) -> Result<Option<f32>> {
        self.f32_at("", key)
    }

    fn f32_at(&self, prefix: &str, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|f| Some(f as f32)).ok_or_else(|| {
                self.err(dotted(prefix, key), format!("expected a number, found {v}"))
            }),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected true or false, found {v}"))),
        }
    }

    fn str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a string, found {v}"))),
        }
    }

    /// A token id or a list of them (`eos_token_id` is either); absent/null gives none.
    fn token_ids(&self, key: &str) -> Result<Vec<u32>> {
        let one = |v: &Value| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| self.err(key, format!("expected a token id, found {v}")))
        };
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for v in items {
                    let id = one(v)?;
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
                Ok(out)
            }
            Some(v) => Ok(vec![one(v)?]),
        }
    }
}

fn dotted(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

// ---------------------------------------------------------------------------------------------
// Safetensors files.

/// One mapped safetensors file and its header.
struct Shard {
    path: PathBuf,
    bytes: HostBytes,
    /// Offset of the data section (after the 8-byte length and the JSON header).
    data_start: usize,
    tensors: HashMap<String, safetensors::tensor::TensorInfo>,
}

impl Shard {
    fn open(path: &Path) -> Result<Shard> {
        let bytes = HostBytes::map_file(path)?;
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(bytes.as_bytes())
            .map_err(|e| {
                Error::corrupt(
                    path,
                    format!(
                        "invalid safetensors file ({} bytes): {e}",
                        bytes.as_bytes().len()
                    ),
                )
            })?;
        let data_start = header_len
            .checked_add(8)
            .ok_or_else(|| Error::corrupt(path, "safetensors header length overflows"))?;
        let tensors = meta
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Shard {
            path: path.to_path_buf(),
            bytes,
            data_start,
            tensors,
        })
    }

    fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(info) = self.tensors.get(name) else {
            return Ok(None);
        };
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            other => {
                return Err(Error::UnsupportedDType {
                    path: self.path.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?} (supported: F32, F16, BF16)"),
                })
            }
        };
        let (begin, end) = info.data_offsets;
        let data = end
            .checked_sub(begin)
            .and_then(|len| Some((self.data_start.checked_add(begin)?, len)))
            .and_then(|(start, len)| self.bytes.slice(start, len))
            .ok_or_else(|| {
                Error::corrupt(
                    &self.path,
                    format!("tensor `{name}`: data offsets [{begin}, {end}) are out of range"),
                )
            })?;
        file_tensor(&self.path, name, dtype, info.shape.clone(), data).map(Some)
    }
}

/// All safetensors files of a Hugging Face directory.
struct SafetensorsDir {
    shards: Vec<Shard>,
    /// Tensor name → index into `shards`.
    location: HashMap<String, usize>,
    /// The file named when a tensor is missing: the index, or `model.safetensors`.
    listing: PathBuf,
    /// Phi-3's fused projections, when the model has them.
    fused: Option<Fused>,
}

/// Row counts of fused projections: `qkv_proj` is `[q; k; v]` (q + 2·kv rows) and
/// `gate_up_proj` is `[gate; up]` (2·ff rows), as transformers' Phi-3 splits them. Each part is
/// named `<fused tensor>[q]`, `[k]`, `[v]`, `[gate]`, `[up]` and read as a zero-copy row range.
#[derive(Clone, Copy, Debug)]
struct Fused {
    q: usize,
    kv: usize,
    ff: usize,
}

impl Fused {
    /// `(first row, rows, total rows of the fused tensor)` of `part`.
    fn rows(&self, part: &str) -> Option<(usize, usize, usize)> {
        let (q, kv, ff) = (self.q, self.kv, self.ff);
        Some(match part {
            "q" => (0, q, q + 2 * kv),
            "k" => (q, kv, q + 2 * kv),
            "v" => (q + kv, kv, q + 2 * kv),
            "gate" => (0, ff, 2 * ff),
            "up" => (ff, ff, 2 * ff),
            _ => return None,
        })
    }
}

/// `base[part]` → (`base`, `part`).
fn split_part(name: &str) -> Option<(&str, &str)> {
    let (base, rest) = name.split_once('[')?;
    Some((base, rest.strip_suffix(']')?))
}

impl SafetensorsDir {
    fn open(dir: &Path) -> Result<SafetensorsDir> {
        let index_path = dir.join(INDEX_FILE);
        let single_path = dir.join(SINGLE_FILE);
        if index_path.is_file() {
            Self::open_sharded(dir, &index_path)
        } else if single_path.is_file() {
            let shard = Shard::open(&single_path)?;
            let location = shard.tensors.keys().map(|k| (k.clone(), 0)).collect();
            Ok(SafetensorsDir {
                fused: None,
                shards: vec![shard],
                location,
                listing: single_path,
            })
        } else {
            Err(Error::io(
                "find weights (model.safetensors or model.safetensors.index.json) in",
                dir,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ))
        }
    }

    fn open_sharded(dir: &Path, index_path: &Path) -> Result<SafetensorsDir> {
        let text =
            std::fs::read_to_string(index_path).map_err(|e| Error::io("read", index_path, e))?;
        let index: Value = serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(index_path, format!("not valid JSON: {e}")))?;
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::config(index_path, "weight_map", "missing or not an object"))?;
        let mut shards: Vec<Shard> = Vec::new();
        let mut by_file: HashMap<&str, usize> = HashMap::new();
        let mut location = HashMap::new();
        // Sorted so shards open in a stable order (and errors are reproducible).
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (tensor, file) in entries {
            let file = file.as_str().ok_or_else(|| {
                Error::config(
                    index_path,
                    format!("weight_map.{tensor}"),
                    "expected a file name",
                )
            })?;
            let plain = Path::new(file)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !plain {
                return Err(Error::config(
                    index_path,
                    format!("weight_map.{tensor}"),
                    format!("`{file}` is not a file name inside the model directory"),
                ));
            }
            let idx = match by_file.get(file) {
                Some(&i) => i,
                None => {
                    shards.push(Shard::open(&dir.join(file))?);
                    by_file.insert(file, shards.len() - 1);
                    shards.len() - 1
                }
            };
            location.insert(tensor.clone(), idx);
        }
        Ok(SafetensorsDir {
            fused: None,
            shards,
            location,
            listing: index_path.to_path_buf(),
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }

    fn total_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes.len() as u64).sum()
    }
}

impl TensorSource for SafetensorsDir {
    fn name(&self, w: WeightRef) -> String {
        if let (Some(_), WeightRef::Layer { layer, kind }) = (self.fused, w) {
            let part = match kind {
                LayerWeight::Wq => Some("self_attn.qkv_proj.weight[q]"),
                LayerWeight::Wk => Some("self_attn.qkv_proj.weight[k]"),
                LayerWeight::Wv => Some("self_attn.qkv_proj.weight[v]"),
                LayerWeight::WGate => Some("mlp.gate_up_proj.weight[gate]"),
                LayerWeight::WUp => Some("mlp.gate_up_proj.weight[up]"),
                _ => None,
            };
            if let Some(p) = part {
                return format!("model.layers.{layer}.{p}");
            }
        }
        match w {
            WeightRef::TokenEmbd => "model.embed_tokens.weight".into(),
            WeightRef::OutputNorm => "model.norm.weight".into(),
            WeightRef::LmHead => "lm_head.weight".into(),
            WeightRef::Layer { layer, kind } => {
                let s = match kind {
                    LayerWeight::AttnNorm => "input_layernorm.weight",
                    LayerWeight::Wq => "self_attn.q_proj.weight",
                    LayerWeight::Wk => "self_attn.k_proj.weight",
                    LayerWeight::Wv => "self_attn.v_proj.weight",
                    LayerWeight::Bq => "self_attn.q_proj.bias",
                    LayerWeight::Bk => "self_attn.k_proj.bias",
                    LayerWeight::Bv => "self_attn.v_proj.bias",
                    LayerWeight::QNorm => "self_attn.q_norm.weight",
                    LayerWeight::KNorm => "self_attn.k_norm.weight",
                    LayerWeight::Wo => "self_attn.o_proj.weight",
                    LayerWeight::FfnNorm => "post_attention_layernorm.weight",
                    LayerWeight::WGate => "mlp.gate_proj.weight",
                    LayerWeight::WUp => "mlp.up_proj.weight",
                    LayerWeight::WDown => "mlp.down_proj.weight",
                };
                format!("model.layers.{layer}.{s}")
            }
        }
    }

    fn get(&self, name: &str) -> Result<Option<Tensor>> {
        if let (Some(fused), Some((base, part))) = (self.fused, split_part(name)) {
            let Some((first, rows, total)) = fused.rows(part) else {
                return Ok(None);
            };
            let Some(t) = self.get(base)? else {
                return Ok(None);
            };
            let cols = t.shape.get(1).copied().unwrap_or(0);
            if t.shape.len() != 2 || t.shape[0] != total {
                return Err(Error::Shape {
                    path: self.path_for(base),
                    tensor: base.to_string(),
                    found: t.shape.clone(),
                    expected: vec![total, cols],
                });
            }
            let row_bytes = t.row_bytes();
            let data = t
                .data
                .slice(first * row_bytes, rows * row_bytes)
                .ok_or_else(|| Error::corrupt(self.path_for(base), format!("`{base}` is short")))?;
            return Tensor::new(name, t.dtype, vec![rows, cols], data).map(Some);
        }
        let Some(&idx) = self.location.get(name) else {
            return Ok(None);
        };
        let shard = &self.shards[idx];
        match shard.tensor(name)? {
            Some(t) => Ok(Some(t)),
            // The index promised this shard holds it.
            None => Err(Error::MissingTensor {
                path: shard.path.clone(),
                tensor: name.to_string(),
            }),
        }
    }

    fn path_for(&self, name: &str) -> PathBuf {
        let name = split_part(name).map_or(name, |(base, _)| base);
        match self.location.get(name) {
            Some(&idx) => self.shards[idx].path.clone(),
            None => self.listing.clone(),
        }
    }
}
