//! The op graph: one decoder forward pass described once, from a [`ModelSpec`], as a small typed
//! graph of the ops a decoder uses. Every backend consumes this one description: the CPU backend
//! executes it with its kernels, the QNN backend lowers it to QNN ops, and the Core ML export will
//! translate it. An architecture is added here (and in the loaders) only; a backend that cannot
//! run an op refuses the model at prepare time, naming the op, and the scheduler falls back.
//!
//! # Shape conventions
//!
//! Every value is token-major rows `[n, width]` for the `n` new tokens of one forward pass
//! (`n` is not part of the graph: the same graph serves prefill chunks and single decode steps).
//! Heads are contiguous inside a row (`[n, heads · head_dim]`, head-major within the row), as in
//! Hugging Face's projections. [`Node::width`] is the row width.
//!
//! # Order and the logits head
//!
//! Nodes are in execution order and only use earlier nodes. Nodes up to [`DecoderGraph::hidden`]
//! run over every new token; the nodes after it (the final norm and the LM head) depend only on it
//! and may run over just the rows whose logits are wanted (the last one when generating).
//!
//! # Weights
//!
//! Ops name weights by [`WeightRef`], resolved against a [`ModelWeights`] by
//! [`ModelWeights::get`]; a tied LM head is [`WeightRef::LmHead`] all the same, and resolves to
//! the embedding table.

use crate::spec::{ModelSpec, ModelWeights, RopeSpec};
use tandem_hal::Tensor;

/// A value: the output of the node with this index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

/// A weight of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightRef {
    /// `[vocab, hidden]`.
    TokenEmbd,
    /// The final norm, `[hidden]`.
    OutputNorm,
    /// `[vocab, hidden]`; the embedding table when the model ties them.
    LmHead,
    /// A weight of decoder layer `layer`.
    Layer { layer: usize, kind: LayerWeight },
}

/// The weights of one decoder layer (shapes in [`crate::spec::LayerWeights`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerWeight {
    AttnNorm,
    Wq,
    Wk,
    Wv,
    Bq,
    Bk,
    Bv,
    QNorm,
    KNorm,
    Wo,
    FfnNorm,
    WGate,
    WUp,
    WDown,
}

impl WeightRef {
    fn layer(layer: usize, kind: LayerWeight) -> WeightRef {
        WeightRef::Layer { layer, kind }
    }
}

impl std::fmt::Display for WeightRef {
    /// The model-wide name backends give the weight (`l3.wq`, `token_embd`, …).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightRef::TokenEmbd => f.write_str("token_embd"),
            WeightRef::OutputNorm => f.write_str("norm"),
            WeightRef::LmHead => f.write_str("lm_head"),
            WeightRef::Layer { layer, kind } => {
                let k = match kind {
                    LayerWeight::AttnNorm => "attn_norm",
                    LayerWeight::Wq => "wq",
                    LayerWeight::Wk => "wk",
                    LayerWeight::Wv => "wv",
                    LayerWeight::Bq => "bq",
                    LayerWeight::Bk => "bk",
                    LayerWeight::Bv => "bv",
                    LayerWeight::QNorm => "q_norm",
                    LayerWeight::KNorm => "k_norm",
                    LayerWeight::Wo => "wo",
                    LayerWeight::FfnNorm => "ffn_norm",
                    LayerWeight::WGate => "w_gate",
                    LayerWeight::WUp => "w_up",
                    LayerWeight::WDown => "w_down",
                };
                write!(f, "l{layer}.{k}")
            }
        }
    }
}

impl ModelWeights {
    /// The tensor `w` names, if the model has it (a tied LM head is the embedding table).
    pub fn get(&self, w: WeightRef) -> Option<&Tensor> {
        match w {
            WeightRef::TokenEmbd => Some(&self.token_embd),
            WeightRef::OutputNorm => Some(&self.norm),
            WeightRef::LmHead => Some(self.lm_head()),
            WeightRef::Layer { layer, kind } => {
                let l = self.layers.get(layer)?;
                match kind {
                    LayerWeight::AttnNorm => Some(&l.attn_norm),
                    LayerWeight::Wq => Some(&l.wq),
                    LayerWeight::Wk => Some(&l.wk),
                    LayerWeight::Wv => Some(&l.wv),
                    LayerWeight::Bq => l.bq.as_ref(),
                    LayerWeight::Bk => l.bk.as_ref(),
                    LayerWeight::Bv => l.bv.as_ref(),
                    LayerWeight::QNorm => l.q_norm.as_ref(),
                    LayerWeight::KNorm => l.k_norm.as_ref(),
                    LayerWeight::Wo => Some(&l.wo),
                    LayerWeight::FfnNorm => Some(&l.ffn_norm),
                    LayerWeight::WGate => Some(&l.w_gate),
                    LayerWeight::WUp => Some(&l.w_up),
                    LayerWeight::WDown => Some(&l.w_down),
                }
            }
        }
    }
}

/// The activation of a gated linear unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(x)` (SwiGLU).
    Silu,
}

/// Which past positions a query attends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Every position up to and including its own.
    Causal,
}

/// One op of a decoder.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The `table` rows of the input token ids: `[n, hidden]`.
    Embedding { table: WeightRef },
    /// RMSNorm of every `dim`-wide group of a row (`dim` = the row width for a hidden-state norm,
    /// `head_dim` for Qwen3's per-head q/k norm), scaled by `weight` `[dim]`.
    RmsNorm {
        x: ValueId,
        weight: WeightRef,
        dim: usize,
        eps: f32,
    },
    /// `x · weightᵀ (+ bias)`, `weight` `[out, in]` as stored.
    Linear {
        x: ValueId,
        weight: WeightRef,
        bias: Option<WeightRef>,
    },
    /// Rotary position embedding of every `head_dim`-wide head of `x` at the tokens' positions,
    /// pairing element i with i + rotary_dim/2 (Hugging Face `rotate_half`).
    Rope {
        x: ValueId,
        head_dim: usize,
        rope: RopeSpec,
    },
    /// Appends `k` and `v` (`[n, n_kv_heads · head_dim]`) to the KV cache's layer `layer` at the
    /// tokens' positions, then `softmax(scale · q·Kᵀ + mask)·V` for every query head (GQA: query
    /// head h reads KV head h / (n_heads / n_kv_heads)). Output `[n, n_heads · head_dim]`.
    Attention {
        q: ValueId,
        k: ValueId,
        v: ValueId,
        layer: usize,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        scale: f32,
        mask: Mask,
    },
    /// `a + b`, same width.
    Add { a: ValueId, b: ValueId },
    /// `act(gate) ⊙ up`, same width.
    Glu {
        gate: ValueId,
        up: ValueId,
        act: Activation,
    },
}

impl Op {
    /// The values this op reads.
    pub fn inputs(&self) -> Vec<ValueId> {
        match self {
            Op::Embedding { .. } => Vec::new(),
            Op::RmsNorm { x, .. } | Op::Linear { x, .. } | Op::Rope { x, .. } => vec![*x],
            Op::Attention { q, k, v, .. } => vec![*q, *k, *v],
            Op::Add { a, b } => vec![*a, *b],
            Op::Glu { gate, up, .. } => vec![*gate, *up],
        }
    }

    /// The weights this op reads.
    pub fn weights(&self) -> Vec<WeightRef> {
        match self {
            Op::Embedding { table } => vec![*table],
            Op::RmsNorm { weight, .. } => vec![*weight],
            Op::Linear { weight, bias, .. } => std::iter::once(*weight).chain(*bias).collect(),
            _ => Vec::new(),
        }
    }

    /// Short op name for messages (`Attention`, `RmsNorm`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Embedding { .. } => "Embedding",
            Op::RmsNorm { .. } => "RmsNorm",
            Op::Linear { .. } => "Linear",
            Op::Rope { .. } => "Rope",
            Op::Attention { .. } => "Attention",
            Op::Add { .. } => "Add",
            Op::Glu { .. } => "Glu",
        }
    }
}

/// A node: an op, its output's row width and a model-wide name (`l3.q`, `l3.attn`, …) backends
/// use for the tensors they make.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub width: usize,
}

/// One forward pass of a decoder-only transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderGraph {
    pub nodes: Vec<Node>,
    /// The last hidden state (the residual stream after the last layer).
    pub hidden: ValueId,
    /// `[n, vocab]` logits.
    pub logits: ValueId,
    /// KV cache layers the attention nodes use (`0..n_cache_layers`).
    pub n_cache_layers: usize,
}

impl DecoderGraph {
    /// The graph of `spec`'s architecture.
    pub fn from_spec(spec: &ModelSpec) -> DecoderGraph {
        let mut b = Builder { nodes: Vec::new() };
        let (h, q_dim, kv_dim, inter, d) = (
            spec.hidden_size,
            spec.q_dim(),
            spec.kv_dim(),
            spec.intermediate_size,
            spec.head_dim,
        );
        let eps = spec.rms_norm_eps;
        let w = WeightRef::layer;
        let mut x = b.push(
            "embed",
            h,
            Op::Embedding {
                table: WeightRef::TokenEmbd,
            },
        );
        for l in 0..spec.n_layers {
            let p = |s: &str| format!("l{l}.{s}");
            let hn = b.push(
                &p("attn_normed"),
                h,
                Op::RmsNorm {
                    x,
                    weight: w(l, LayerWeight::AttnNorm),
                    dim: h,
                    eps,
                },
            );
            let bias = |kind| spec.qkv_bias.then(|| w(l, kind));
            let linear = |b: &mut Builder, name: &str, width, weight, bias| {
                b.push(
                    &p(name),
                    width,
                    Op::Linear {
                        x: hn,
                        weight: w(l, weight),
                        bias,
                    },
                )
            };
            let mut q = linear(&mut b, "q", q_dim, LayerWeight::Wq, bias(LayerWeight::Bq));
            let mut k = linear(&mut b, "k", kv_dim, LayerWeight::Wk, bias(LayerWeight::Bk));
            let v = linear(&mut b, "v", kv_dim, LayerWeight::Wv, bias(LayerWeight::Bv));
            if spec.qk_norm {
                for (val, width, kind, name) in [
                    (&mut q, q_dim, LayerWeight::QNorm, "q_normed"),
                    (&mut k, kv_dim, LayerWeight::KNorm, "k_normed"),
                ] {
                    *val = b.push(
                        &p(name),
                        width,
                        Op::RmsNorm {
                            x: *val,
                            weight: w(l, kind),
                            dim: d,
                            eps,
                        },
                    );
                }
            }
            let rope = |b: &mut Builder, x, width, name: &str| {
                b.push(
                    &p(name),
                    width,
                    Op::Rope {
                        x,
                        head_dim: d,
                        rope: spec.rope.clone(),
                    },
                )
            };
            let q = rope(&mut b, q, q_dim, "q_rope");
            let k = rope(&mut b, k, kv_dim, "k_rope");
            let a = b.push(
                &p("attn"),
                q_dim,
                Op::Attention {
                    q,
                    k,
                    v,
                    layer: l,
                    n_heads: spec.n_heads,
                    n_kv_heads: spec.n_kv_heads,
                    head_dim: d,
                    scale: 1.0 / (d as f32).sqrt(),
                    mask: Mask::Causal,
                },
            );
            let o = b.push(
                &p("attn_out"),
                h,
                Op::Linear {
                    x: a,
                    weight: w(l, LayerWeight::Wo),
                    bias: None,
                },
            );
            x = b.push(&p("resid_attn"), h, Op::Add { a: x, b: o });
            let hn = b.push(
                &p("ffn_normed"),
                h,
                Op::RmsNorm {
                    x,
                    weight: w(l, LayerWeight::FfnNorm),
                    dim: h,
                    eps,
                },
            );
            let proj = |b: &mut Builder, name: &str, weight| {
                b.push(
                    &p(name),
                    inter,
                    Op::Linear {
                        x: hn,
                        weight: w(l, weight),
                        bias: None,
                    },
                )
            };
            let gate = proj(&mut b, "ffn.gate", LayerWeight::WGate);
            let up = proj(&mut b, "ffn.up", LayerWeight::WUp);
            let m = b.push(
                &p("ffn.mul"),
                inter,
                Op::Glu {
                    gate,
                    up,
                    act: Activation::Silu,
                },
            );
            let f = b.push(
                &p("ffn"),
                h,
                Op::Linear {
                    x: m,
                    weight: w(l, LayerWeight::WDown),
                    bias: None,
                },
            );
            x = b.push(&p("resid_ffn"), h, Op::Add { a: x, b: f });
        }
        let hidden = x;
        let xn = b.push(
            "final_norm",
            h,
            Op::RmsNorm {
                x,
                weight: WeightRef::OutputNorm,
                dim: h,
                eps,
            },
        );
        let logits = b.push(
            "logits",
            spec.vocab_size,
            Op::Linear {
                x: xn,
                weight: WeightRef::LmHead,
                bias: None,
            },
        );
        DecoderGraph {
            nodes: b.nodes,
            hidden,
            logits,
            n_cache_layers: spec.n_layers,
        }
    }

    pub fn node(&self, v: ValueId) -> &Node {
        &self.nodes[v.0]
    }

    /// For every value, the index of the last node that reads it (the graph's outputs count as
    /// read at the end), so an executor can free or reuse its buffer after that node.
    pub fn last_uses(&self) -> Vec<usize> {
        let mut last: Vec<usize> = (0..self.nodes.len()).collect();
        for (i, n) in self.nodes.iter().enumerate() {
            for v in n.op.inputs() {
                last[v.0] = last[v.0].max(i);
            }
        }
        for v in [self.hidden, self.logits] {
            last[v.0] = usize::MAX;
        }
        last
    }

    /// Checks that every weight the graph names exists in `weights` with the shape its op needs,
    /// so a backend can refuse a mismatched model before building anything.
    pub fn check_weights(&self, weights: &ModelWeights) -> Result<(), String> {
        for n in &self.nodes {
            for w in n.op.weights() {
                let t = weights.get(w).ok_or_else(|| {
                    format!("node `{}` ({}) needs weight `{w}`", n.name, n.op.kind())
                })?;
                let in_width = |x: &ValueId| self.node(*x).width;
                let want: Vec<usize> = match &n.op {
                    Op::Embedding { .. } => vec![t.shape.first().copied().unwrap_or(0), n.width],
                    Op::RmsNorm { dim, .. } => vec![*dim],
                    Op::Linear { bias, .. } if Some(w) == *bias => vec![n.width],
                    Op::Linear { x, .. } => vec![n.width, in_width(x)],
                    _ => continue,
                };
                if t.shape != want {
                    return Err(format!(
                        "weight `{w}` ({}) of node `{}` has shape {:?}, expected {want:?}",
                        t.name, n.name, t.shape
                    ));
                }
            }
        }
        Ok(())
    }
}

struct Builder {
    nodes: Vec<Node>,
}

impl Builder {
    fn push(&mut self, name: &str, width: usize, op: Op) -> ValueId {
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            width,
        });
        ValueId(self.nodes.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Arch;

    fn spec(arch: Arch, qkv_bias: bool, qk_norm: bool) -> ModelSpec {
        ModelSpec {
            arch,
            vocab_size: 50,
            hidden_size: 32,
            intermediate_size: 48,
            n_layers: 3,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-6,
            rope: RopeSpec {
                theta: 10000.0,
                rotary_dim: 8,
                scaling: None,
            },
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            qkv_bias,
            qk_norm,
            bos_token_id: None,
            eos_token_ids: vec![],
        }
    }

    fn count(g: &DecoderGraph, f: impl Fn(&Op) -> bool) -> usize {
        g.nodes.iter().filter(|n| f(&n.op)).count()
    }

    #[test]
    fn each_architecture_is_the_decoder_it_names() {
        for (arch, bias, qk) in [
            (Arch::Llama, false, false),
            (Arch::Mistral, false, false),
            (Arch::Qwen2, true, false),
            (Arch::Qwen3, false, true),
        ] {
            let s = spec(arch, bias, qk);
            let g = DecoderGraph::from_spec(&s);
            let what = format!("{arch:?}");
            assert_eq!(
                count(&g, |o| matches!(o, Op::Attention { .. })),
                3,
                "{what}"
            );
            assert_eq!(count(&g, |o| matches!(o, Op::Rope { .. })), 6, "{what}");
            assert_eq!(count(&g, |o| matches!(o, Op::Glu { .. })), 3, "{what}");
            let biased = count(&g, |o| matches!(o, Op::Linear { bias: Some(_), .. }));
            assert_eq!(biased, if bias { 9 } else { 0 }, "{what}");
            let head_norms = count(&g, |o| matches!(o, Op::RmsNorm { dim: 8, .. }));
            assert_eq!(head_norms, if qk { 6 } else { 0 }, "{what}");
            // 7 projections per layer + the LM head.
            assert_eq!(count(&g, |o| matches!(o, Op::Linear { .. })), 22, "{what}");
            assert_eq!(g.node(g.logits).width, 50);
            assert_eq!(g.n_cache_layers, 3);
            // Topological, and the head depends only on the hidden state.
            for (i, n) in g.nodes.iter().enumerate() {
                assert!(n.op.inputs().iter().all(|v| v.0 < i), "{what}: {}", n.name);
                if i > g.hidden.0 {
                    assert!(
                        n.op.inputs().iter().all(|v| v.0 >= g.hidden.0),
                        "{}",
                        n.name
                    );
                }
            }
            // Widths agree along every edge that needs them to.
            for n in &g.nodes {
                match &n.op {
                    Op::Add { a, b } => {
                        assert_eq!(g.node(*a).width, n.width);
                        assert_eq!(g.node(*b).width, n.width);
                    }
                    Op::Rope { x, .. } | Op::RmsNorm { x, dim: 8, .. } => {
                        assert_eq!(g.node(*x).width, n.width)
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn last_uses_free_values_after_their_last_reader() {
        let g = DecoderGraph::from_spec(&spec(Arch::Llama, false, false));
        let last = g.last_uses();
        assert_eq!(last[g.logits.0], usize::MAX);
        assert_eq!(last[g.hidden.0], usize::MAX);
        // The first layer's normed input feeds q, k, v: last read by v (node 4).
        assert_eq!(g.nodes[1].name, "l0.attn_normed");
        assert_eq!(last[1], 4);
        assert_eq!(g.nodes[4].name, "l0.v");
    }

    #[test]
    fn weight_names_are_the_model_wide_ones() {
        let s = WeightRef::Layer {
            layer: 3,
            kind: LayerWeight::WGate,
        };
        assert_eq!(s.to_string(), "l3.w_gate");
        assert_eq!(WeightRef::LmHead.to_string(), "lm_head");
    }
}
