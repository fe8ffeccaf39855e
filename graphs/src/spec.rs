//! The architecture-neutral model description shared by every delegate.
//!
//! Llama, Mistral, Qwen2 and Qwen3 are one block shape with switches:
//!
//! ```text
//! x = embed[token]
//! per layer:
//!   h = rms_norm(x, attn_norm)
//!   q = h·Wqᵀ (+bq)   k = h·Wkᵀ (+bk)   v = h·Wvᵀ (+bv)        (biases: Qwen2)
//!   q, k = per-head rms_norm(q, q_norm), rms_norm(k, k_norm)   (Qwen3)
//!   q, k = rope(q, k, pos)                                     (rotate-halves pairing)
//!   x += softmax(q·kᵀ/√head_dim + causal mask)·v ·Woᵀ           (GQA: n_heads / n_kv_heads)
//!   h = rms_norm(x, ffn_norm)
//!   x += (silu(h·Wgateᵀ) ⊙ h·Wupᵀ)·Wdownᵀ
//! logits = rms_norm(x, norm)·Wlmᵀ                              (Wlm = embed when tied)
//! ```

use tandem_hal::Tensor;

/// The model families tandem implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    /// Phi-3 (`Phi3ForCausalLM`): Llama's block with fused q/k/v and gate/up projections, split
    /// at load.
    Phi3,
}

impl Arch {
    pub const SUPPORTED: &'static str =
        "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM (GGUF: llama, qwen2, qwen3)";

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
        }
    }
}

/// RoPE frequency scaling beyond the plain `theta^(-2i/d)` schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1's piecewise scaling (`rope_type: "llama3"`).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
    /// Positions divided by `factor` (`rope_type: "linear"`).
    Linear { factor: f32 },
    /// Explicit per-frequency divisors (GGUF's `rope_freqs.weight`, `head_dim / 2` values):
    /// `inv_freq[i] = theta^(-2i/d) / factors[i]`.
    FreqFactors(Vec<f32>),
}

/// Rotary position embedding settings. The rotation always pairs element `i` with `i + d/2` of
/// a head (Hugging Face `rotate_half`); loaders un-permute GGUF llama q/k rows to match.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeSpec {
    pub theta: f32,
    /// Number of leading head dimensions rotated (= head_dim for every supported arch).
    pub rotary_dim: usize,
    pub scaling: Option<RopeScaling>,
}

impl RopeSpec {
    /// The `rotary_dim / 2` inverse frequencies, scaling applied (Hugging Face's
    /// `_compute_default_rope_parameters` / `_compute_llama3_parameters`).
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.rotary_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / (self.theta as f64).powf((2 * i) as f64 / d as f64))
            .collect();
        let out: Vec<f64> = match &self.scaling {
            None => base,
            Some(RopeScaling::Linear { factor }) => {
                base.iter().map(|f| f / *factor as f64).collect()
            }
            Some(RopeScaling::FreqFactors(factors)) => base
                .iter()
                .zip(factors)
                .map(|(f, s)| f / *s as f64)
                .collect(),
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let (factor, low, high) = (
                    *factor as f64,
                    *low_freq_factor as f64,
                    *high_freq_factor as f64,
                );
                let old_ctx = *original_max_position_embeddings as f64;
                let low_freq_wavelen = old_ctx / low;
                let high_freq_wavelen = old_ctx / high;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen > low_freq_wavelen {
                            f / factor
                        } else if wavelen < high_freq_wavelen {
                            f
                        } else {
                            let smooth = (old_ctx / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        out.into_iter().map(|f| f as f32).collect()
    }
}

/// Hyper-parameters of a decoder-only transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope: RopeSpec,
    /// Longest context the model was trained for (upper bound for `--ctx`).
    pub max_position_embeddings: usize,
    /// LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Per-head RMSNorm on q and k before RoPE (Qwen3).
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    /// Any of these ends generation.
    pub eos_token_ids: Vec<u32>,
}

impl ModelSpec {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    /// Query heads per KV head.
    pub fn gqa_group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

/// Tensors of one decoder layer, PyTorch shapes (`[out, in]` for projections).
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: Tensor,      // [hidden]
    pub wq: Tensor,             // [q_dim, hidden]
    pub wk: Tensor,             // [kv_dim, hidden]
    pub wv: Tensor,             // [kv_dim, hidden]
    pub bq: Option<Tensor>,     // [q_dim]
    pub bk: Option<Tensor>,     // [kv_dim]
    pub bv: Option<Tensor>,     // [kv_dim]
    pub q_norm: Option<Tensor>, // [head_dim]
    pub k_norm: Option<Tensor>, // [head_dim]
    pub wo: Tensor,             // [hidden, q_dim]
    pub ffn_norm: Tensor,       // [hidden]
    pub w_gate: Tensor,         // [intermediate, hidden]
    pub w_up: Tensor,           // [intermediate, hidden]
    pub w_down: Tensor,         // [hidden, intermediate]
}

/// All tensors of a model.
#[derive(Clone, Debug)]
pub struct ModelWeights {
    pub token_embd: Tensor, // [vocab, hidden]
    pub layers: Vec<LayerWeights>,
    pub norm: Tensor, // [hidden]
    /// `None` when tied to `token_embd`.
    pub lm_head: Option<Tensor>, // [vocab, hidden]
}

impl ModelWeights {
    /// The LM head matrix (the embedding when tied).
    pub fn lm_head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.token_embd)
    }

    /// Every tensor, for `tandem info` and hashing.
    pub fn tensors(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.token_embd];
        for l in &self.layers {
            v.extend([&l.attn_norm, &l.wq, &l.wk, &l.wv]);
            v.extend(
                l.bq.iter()
                    .chain(&l.bk)
                    .chain(&l.bv)
                    .chain(&l.q_norm)
                    .chain(&l.k_norm),
            );
            v.extend([&l.wo, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down]);
        }
        v.push(&self.norm);
        v.extend(self.lm_head.iter());
        v
    }
}

/// The KV cache geometry of a model, so `KvCache::new(&spec, ctx)` works.
impl From<&ModelSpec> for tandem_hal::KvShape {
    fn from(s: &ModelSpec) -> Self {
        tandem_hal::KvShape {
            n_layers: s.n_layers,
            n_kv_heads: s.n_kv_heads,
            head_dim: s.head_dim,
        }
    }
}
