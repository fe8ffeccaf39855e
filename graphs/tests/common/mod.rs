//! Test-only model writers: tiny Hugging Face directories (config.json + safetensors) and GGUF
//! files, built from deterministic values so each test can predict what the loader must return.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use half::{bf16, f16};
use tandem_graphs::GgufValue;
use tandem_hal::dtype::{quantize_row_q4_0, quantize_row_q8_0};
use tandem_hal::{BlockQ4_0, BlockQ8_0, DType};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tandem-graphs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sizes of the synthetic models. Row lengths (hidden, intermediate, q_dim) are multiples of 32
/// so every matrix can also be stored as Q8_0 / Q4_0.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub vocab: usize,
    pub hidden: usize,
    pub inter: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

pub const DIMS: Dims = Dims {
    vocab: 40,
    hidden: 64,
    inter: 96,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    head_dim: 16,
};

impl Dims {
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// Values exactly representable in f16, differing between rows and between tensors (each
/// tensor gets its own `seed`; the period 1021 is prime, so no two rows repeat).
pub fn values(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 + seed * 101) % 1021) as f32 / 64.0 - 8.0)
        .collect()
}

/// One logical tensor of a synthetic model, Hugging Face order, as f32.
#[derive(Clone, Debug)]
pub struct Logical {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Which optional parts a synthetic model has.
#[derive(Clone, Copy, Debug, Default)]
pub struct Parts {
    pub qkv_bias: bool,
    pub qk_norm: bool,
    pub lm_head: bool,
}

/// Role names shared by both writers; mapped to file names by [`hf_name`] / [`gguf_name`].
pub const LAYER_ROLES: [&str; 14] = [
    "attn_norm",
    "wq",
    "wk",
    "wv",
    "bq",
    "bk",
    "bv",
    "q_norm",
    "k_norm",
    "wo",
    "ffn_norm",
    "gate",
    "up",
    "down",
];

/// The model's tensors keyed by role (`token_embd`, `norm`, `lm_head`, `L{i}.wq`, …).
pub fn logical_model(d: Dims, parts: Parts) -> Vec<(String, Logical)> {
    let mut seed = 0;
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>| {
        seed += 1;
        let n = shape.iter().product();
        out.push((
            name,
            Logical {
                shape,
                data: values(seed, n),
            },
        ));
    };
    add("token_embd".into(), vec![d.vocab, d.hidden]);
    for i in 0..d.layers {
        for role in LAYER_ROLES {
            let shape = match role {
                "attn_norm" | "ffn_norm" => vec![d.hidden],
                "wq" => vec![d.q_dim(), d.hidden],
                "wk" | "wv" => vec![d.kv_dim(), d.hidden],
                "bq" if parts.qkv_bias => vec![d.q_dim()],
                "bk" | "bv" if parts.qkv_bias => vec![d.kv_dim()],
                "q_norm" | "k_norm" if parts.qk_norm => vec![d.head_dim],
                "wo" => vec![d.hidden, d.q_dim()],
                "gate" | "up" => vec![d.inter, d.hidden],
                "down" => vec![d.hidden, d.inter],
                _ => continue,
            };
            add(format!("L{i}.{role}"), shape);
        }
    }
    add("norm".into(), vec![d.hidden]);
    if parts.lm_head {
        add("lm_head".into(), vec![d.vocab, d.hidden]);
    }
    out
}

pub fn hf_name(role: &str) -> String {
    match role {
        "token_embd" => "model.embed_tokens.weight".into(),
        "norm" => "model.norm.weight".into(),
        "lm_head" => "lm_head.weight".into(),
        _ => {
            let (layer, r) = role[1..].split_once('.').expect("layer role");
            let s = match r {
                "attn_norm" => "input_layernorm.weight",
                "wq" => "self_attn.q_proj.weight",
                "wk" => "self_attn.k_proj.weight",
                "wv" => "self_attn.v_proj.weight",
                "bq" => "self_attn.q_proj.bias",
                "bk" => "self_attn.k_proj.bias",
                "bv" => "self_attn.v_proj.bias",
                "q_norm" => "self_attn.q_norm.weight",
                "k_norm" => "self_attn.k_norm.weight",
                "wo" => "self_attn.o_proj.weight",
                "ffn_norm" => "post_attention_layernorm.weight",
                "gate" => "mlp.gate_proj.weight",
                "up" => "mlp.up_proj.weight",
                "down" => "mlp.down_proj.weight",
                other => panic!("role {other}"),
            };
            format!("model.layers.{layer}.{s}")
        }
    }
}

pub fn gguf_name(role: &str) -> String {
    match role {
        "token_embd" => "token_embd.weight".into(),
        "norm" => "output_norm.weight".into(),
        "lm_head" => "output.weight".into(),
        _ => {
            let (layer, r) = role[1..].split_once('.').expect("layer role");
            let s = match r {
                "attn_norm" => "attn_norm.weight",
                "wq" => "attn_q.weight",
                "wk" => "attn_k.weight",
                "wv" => "attn_v.weight",
                "bq" => "attn_q.bias",
                "bk" => "attn_k.bias",
                "bv" => "attn_v.bias",
                "q_norm" => "attn_q_norm.weight",
                "k_norm" => "attn_k_norm.weight",
                "wo" => "attn_output.weight",
                "ffn_norm" => "ffn_norm.weight",
                "gate" => "ffn_gate.weight",
                "up" => "ffn_up.weight",
                "down" => "ffn_down.weight",
                other => panic!("role {other}"),
            };
            format!("blk.{layer}.{s}")
        }
    }
}

/// Encodes f32 values as little-endian `dtype` (plain or block-quantized; rows = last dim).
pub fn encode(dtype: DType, shape: &[usize], data: &[f32]) -> Vec<u8> {
    match dtype {
        DType::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => data
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        DType::BF16 => data
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
        DType::Q8_0 => {
            let row = *shape.last().unwrap();
            let mut out = Vec::new();
            for r in data.chunks(row) {
                let mut blocks = vec![BlockQ8_0::default(); row / 32];
                quantize_row_q8_0(r, &mut blocks);
                for b in blocks {
                    out.extend(b.d.to_le_bytes());
                    out.extend(b.qs.iter().map(|&q| q as u8));
                }
            }
            out
        }
        DType::Q4_0 => {
            let row = *shape.last().unwrap();
            let mut out = Vec::new();
            for r in data.chunks(row) {
                let mut blocks = vec![BlockQ4_0::default(); row / 32];
                quantize_row_q4_0(r, &mut blocks);
                for b in blocks {
                    out.extend(b.d.to_le_bytes());
                    out.extend(b.qs);
                }
            }
            out
        }
        DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => {
            let row = *shape.last().unwrap();
            let rb = dtype.row_bytes(row).unwrap();
            let mut out = vec![0u8; data.len() / row * rb];
            for (r, o) in data.chunks(row).zip(out.chunks_exact_mut(rb)) {
                tandem_hal::dtype::quantize_row(dtype, r, o);
            }
            out
        }
        DType::I32 => panic!("no i32 weights"),
    }
}

/// What decoding `encode(dtype, …)` gives back.
pub fn round_trip(dtype: DType, shape: &[usize], data: &[f32]) -> Vec<f32> {
    let bytes = encode(dtype, shape, data);
    let t = tandem_hal::Tensor::new(
        "rt",
        dtype,
        shape.to_vec(),
        tandem_hal::HostBytes::from_vec(bytes),
    )
    .unwrap();
    t.to_f32_vec()
}

// ---------------------------------------------------------------------------------------------
// Hugging Face directories.

pub fn st_dtype(d: DType) -> safetensors::Dtype {
    match d {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        other => panic!("{other} not in safetensors"),
    }
}

/// Serializes `(name, dtype, shape, bytes)` entries with the `safetensors` crate.
pub fn safetensors_bytes(entries: &[(String, safetensors::Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = entries
        .iter()
        .map(|(n, dt, shape, bytes)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dt, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// Base `config.json` for a synthetic model.
pub fn hf_config(arch: &str, d: Dims, tie: bool) -> serde_json::Value {
    serde_json::json!({
        "architectures": [arch],
        "vocab_size": d.vocab,
        "hidden_size": d.hidden,
        "intermediate_size": d.inter,
        "num_hidden_layers": d.layers,
        "num_attention_heads": d.heads,
        "num_key_value_heads": d.kv_heads,
        "head_dim": d.head_dim,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 256,
        "rope_theta": 500000.0,
        "tie_word_embeddings": tie,
        "bos_token_id": 1,
        "eos_token_id": [2, 7],
    })
}

/// Writes a Hugging Face directory: `config`, and the tensors in `dtype`, in `shards` files
/// (1 = `model.safetensors`, more = an index + `model-0000i-of-0000n.safetensors`).
pub fn write_hf_dir(
    dir: &Path,
    config: &serde_json::Value,
    model: &[(String, Logical)],
    dtype: DType,
    shards: usize,
) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
    let entries: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = model
        .iter()
        .map(|(role, t)| {
            (
                hf_name(role),
                st_dtype(dtype),
                t.shape.clone(),
                encode(dtype, &t.shape, &t.data),
            )
        })
        .collect();
    if shards == 1 {
        std::fs::write(dir.join("model.safetensors"), safetensors_bytes(&entries)).unwrap();
        return;
    }
    let mut weight_map = serde_json::Map::new();
    let per = entries.len().div_ceil(shards);
    for (k, chunk) in entries.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", k + 1, shards);
        for e in chunk {
            weight_map.insert(e.0.clone(), serde_json::Value::String(file.clone()));
        }
        std::fs::write(dir.join(&file), safetensors_bytes(chunk)).unwrap();
    }
    let index = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string(&index).unwrap(),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// GGUF.

pub const GGML_F32: u32 = 0;
pub const GGML_F16: u32 = 1;
pub const GGML_Q4_0: u32 = 2;
pub const GGML_Q8_0: u32 = 8;
pub const GGML_BF16: u32 = 30;

pub fn ggml_type(d: DType) -> u32 {
    match d {
        DType::F32 => GGML_F32,
        DType::F16 => GGML_F16,
        DType::Q4_0 => GGML_Q4_0,
        DType::Q4_1 => 3,
        DType::Q5_0 => 6,
        DType::Q5_1 => 7,
        DType::Q8_0 => GGML_Q8_0,
        DType::BF16 => GGML_BF16,
        DType::I32 => 26,
    }
}

/// A minimal GGUF writer (little-endian, v3 by default).
#[derive(Clone)]
pub struct GgufWriter {
    pub version: u32,
    pub alignment: usize,
    pub kv: Vec<(String, GgufValue)>,
    /// name, PyTorch-order shape, ggml type, data bytes.
    pub tensors: Vec<(String, Vec<usize>, u32, Vec<u8>)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter {
            version: 3,
            alignment: 32,
            kv: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

fn value_type(v: &GgufValue) -> u32 {
    match v {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend(x.to_le_bytes()),
        GgufValue::U16(x) => out.extend(x.to_le_bytes()),
        GgufValue::I16(x) => out.extend(x.to_le_bytes()),
        GgufValue::U32(x) => out.extend(x.to_le_bytes()),
        GgufValue::I32(x) => out.extend(x.to_le_bytes()),
        GgufValue::F32(x) => out.extend(x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(*x as u8),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::Array(items) => {
            let ty = items.first().map_or(8, value_type);
            out.extend(ty.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
        GgufValue::U64(x) => out.extend(x.to_le_bytes()),
        GgufValue::I64(x) => out.extend(x.to_le_bytes()),
        GgufValue::F64(x) => out.extend(x.to_le_bytes()),
    }
}

impl GgufWriter {
    pub fn kv(&mut self, k: &str, v: GgufValue) -> &mut Self {
        self.kv.retain(|(n, _)| n != k);
        self.kv.push((k.to_string(), v));
        self
    }
    pub fn remove_kv(&mut self, k: &str) -> &mut Self {
        self.kv.retain(|(n, _)| n != k);
        self
    }
    pub fn tensor(&mut self, name: &str, shape: &[usize], ty: u32, bytes: Vec<u8>) -> &mut Self {
        self.tensors.retain(|t| t.0 != name);
        self.tensors
            .push((name.to_string(), shape.to_vec(), ty, bytes));
        self
    }
    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|t| t.0 != name);
        self
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut out, k);
            out.extend(value_type(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0usize;
        let mut offsets = Vec::new();
        for (name, shape, ty, bytes) in &self.tensors {
            put_str(&mut out, name);
            out.extend((shape.len() as u32).to_le_bytes());
            for d in shape.iter().rev() {
                out.extend((*d as u64).to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offsets.push(offset);
            offset = (offset + bytes.len()).div_ceil(self.alignment) * self.alignment;
        }
        let pad = out.len().div_ceil(self.alignment) * self.alignment;
        out.resize(pad, 0);
        let base = out.len();
        for ((_, _, _, bytes), off) in self.tensors.iter().zip(offsets) {
            out.resize(base + off, 0);
            out.extend(bytes);
        }
        out
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_bytes()).unwrap();
    }
}

/// llama.cpp's converter's q/k permutation, written as the reshape it performs:
/// `w.reshape(n_head, 2, d/2, in).swapaxes(1, 2).reshape(w.shape)`, i.e. output row
/// `(h, i, j)` takes input row `(h, j, i)`. `row` is the number of f32 values per row.
pub fn llama_permute(data: &[f32], n_head: usize, row: usize) -> Vec<f32> {
    let rows = data.len() / row;
    let d = rows / n_head;
    let half = d / 2;
    let mut out = Vec::with_capacity(data.len());
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = h * d + j * half + i;
                out.extend_from_slice(&data[src * row..(src + 1) * row]);
            }
        }
    }
    out
}

pub fn s(v: &str) -> GgufValue {
    GgufValue::String(v.to_string())
}

/// A GGUF writer holding a synthetic model in llama.cpp's conventions: `matrix` for 2-D
/// tensors, F32 for 1-D ones, llama q/k rows (and biases) permuted.
pub fn gguf_model(arch: &str, d: Dims, model: &[(String, Logical)], matrix: DType) -> GgufWriter {
    let mut w = GgufWriter::default();
    w.kv("general.architecture", s(arch))
        .kv("general.alignment", GgufValue::U32(32))
        .kv(&format!("{arch}.context_length"), GgufValue::U32(256))
        .kv(
            &format!("{arch}.embedding_length"),
            GgufValue::U32(d.hidden as u32),
        )
        .kv(
            &format!("{arch}.block_count"),
            GgufValue::U32(d.layers as u32),
        )
        .kv(
            &format!("{arch}.feed_forward_length"),
            GgufValue::U32(d.inter as u32),
        )
        .kv(
            &format!("{arch}.attention.head_count"),
            GgufValue::U32(d.heads as u32),
        )
        .kv(
            &format!("{arch}.attention.head_count_kv"),
            GgufValue::U32(d.kv_heads as u32),
        )
        .kv(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            GgufValue::F32(1e-5),
        )
        .kv(&format!("{arch}.rope.freq_base"), GgufValue::F32(500000.0))
        .kv("tokenizer.ggml.bos_token_id", GgufValue::U32(1))
        .kv("tokenizer.ggml.eos_token_id", GgufValue::U32(2))
        .kv("tokenizer.ggml.eot_token_id", GgufValue::U32(7))
        .kv(
            "tokenizer.ggml.tokens",
            GgufValue::Array((0..d.vocab).map(|i| s(&format!("t{i}"))).collect()),
        );
    if d.head_dim * d.heads != d.hidden {
        w.kv(
            &format!("{arch}.attention.key_length"),
            GgufValue::U32(d.head_dim as u32),
        );
    }
    for (role, t) in model {
        let mut data = t.data.clone();
        if arch == "llama" {
            let heads = if role.ends_with(".wq") || role.ends_with(".bq") {
                Some(d.heads)
            } else if role.ends_with(".wk") || role.ends_with(".bk") {
                Some(d.kv_heads)
            } else {
                None
            };
            if let Some(n) = heads {
                let row = if t.shape.len() == 2 { t.shape[1] } else { 1 };
                data = llama_permute(&data, n, row);
            }
        }
        let dtype = if t.shape.len() == 2 {
            matrix
        } else {
            DType::F32
        };
        w.tensor(
            &gguf_name(role),
            &t.shape,
            ggml_type(dtype),
            encode(dtype, &t.shape, &data),
        );
    }
    w
}

pub fn by_role(model: &[(String, Logical)]) -> HashMap<String, Logical> {
    model.iter().cloned().collect()
}

/// Asserts the error's message names every one of `parts` (file, tensor, key, …).
pub fn assert_names(err: &tandem_hal::Error, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "error `{msg}` does not mention `{p}`");
    }
}
