//! Lowering: the model's op graph ([`tandem_graphs::DecoderGraph`]) as QNN ops (package
//! `qti.aisw`), one fixed-shape AR-N chunk graph per chunk size over a fixed context length.
//!
//! Graph interface (N = chunk, C = ctx, P = C − N, d = head_dim, g = GQA group):
//!
//! | input | shape | | output | shape |
//! |---|---|---|---|---|
//! | `input_ids` i32 | `[N]` | | `logits` | `[N, vocab]` |
//! | `cos`, `sin` | `[N, d]` | | `new_key_l` | `[n_kv, d, N]` |
//! | `attention_mask` | `[g·N, C]` | | `new_value_l` | `[n_kv, N, d]` |
//! | `past_key_l` | `[n_kv, d, P]` | | | |
//! | `past_value_l` | `[n_kv, P, d]` | | | |
//!
//! Choices, and why:
//! - Projections use the weights as stored (`[out, in]`) with MatMul `transpose_in1`, so a tied
//!   LM head is the embedding tensor itself (one copy) and nothing is transposed on the host.
//! - `rotate_half` is a MatMul with a constant signed permutation matrix `[d, d]`: only ops
//!   verified on the simulator, and exact in fp16 (each output is ±one input, the rest zeros).
//!   Its cost (2·d² flops per row per head) is small next to the projections.
//! - Queries are laid out `[n_kv, g·N, d]` (row `j·N + t` = head `kv·g + j`, token t), so one
//!   batched MatMul per layer serves all heads of a KV group without tiling K/V; the host's mask
//!   has the same `g·N` rows.
//! - The 1/√d attention scale is the Softmax `beta` (softmax(β·(s + m)) = softmax(β·s + β·m), and
//!   the mask is 0 or −20000, so scaling it changes nothing).
//! - New K/V are graph outputs *and* feed the Concat with the past, so the chunk attends to
//!   itself without a round trip through the host.
//!
//! All static tensors carry model-wide names (`l3.wq`, `token_embd`, `rope.rotate_half`, …), the
//! same in every chunk graph, so a weight-sharing context keeps one copy.

use std::collections::{HashMap, HashSet};

use sys_qnn::*;
use tandem_graphs::ops::{Activation, Mask};
use tandem_graphs::{DecoderGraph, ModelSpec, ModelWeights, Node, Op, ValueId, WeightRef};

use crate::conv;
use crate::error::{Error, LowerError, Result};

/// The one activation/weight type of this first version.
pub const DT: Qnn_DataType_t = QNN_DATATYPE_FLOAT_16;

/// Bumped whenever the lowering changes the graphs it produces (part of the cache key).
pub const LOWERING_VERSION: u32 = 3;

/// Model weights converted once to fp16 bytes under their graph names, reused by every chunk
/// graph (and dropped after finalize).
pub struct LoweredWeights {
    tensors: HashMap<String, (Vec<u32>, Vec<u8>)>,
}

impl LoweredWeights {
    /// Converts every weight the model's op graph reads (any dtype the host can decode) to fp16,
    /// under its model-wide name ([`WeightRef`]'s `Display`; a tied LM head is the embedding
    /// table's one copy), after checking every shape against the graph.
    pub fn new(spec: &ModelSpec, weights: &ModelWeights) -> Result<LoweredWeights> {
        let graph = DecoderGraph::from_spec(spec);
        graph.check_weights(weights).map_err(Error::Unsupported)?;
        let mut tensors = HashMap::new();
        for w in graph.nodes.iter().flat_map(|n| n.op.weights()) {
            if w == WeightRef::LmHead && weights.lm_head.is_none() {
                continue;
            }
            let t = weights
                .get(w)
                .ok_or_else(|| Error::Unsupported(format!("the model has no weight `{w}`")))?;
            tensors.entry(w.to_string()).or_insert_with(|| {
                let dims = t.shape.iter().map(|&d| d as u32).collect();
                (dims, conv::f32_to_f16_bytes(&t.to_f32_vec()))
            });
        }
        let d = spec.head_dim;
        let rot = conv::rotate_half_matrix(d);
        tensors.insert(
            "rope.rotate_half".into(),
            (vec![d as u32, d as u32], conv::f32_to_f16_bytes(&rot)),
        );
        Ok(LoweredWeights { tensors })
    }

    /// An explicit set of named fp16 tensors (op tests).
    pub fn from_f32(named: &[(&str, Vec<u32>, &[f32])]) -> LoweredWeights {
        LoweredWeights {
            tensors: named
                .iter()
                .map(|(n, dims, v)| (n.to_string(), (dims.clone(), conv::f32_to_f16_bytes(v))))
                .collect(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// An op parameter as the lowering writes it.
#[derive(Clone, Debug)]
pub enum P {
    U32(&'static str, u32),
    I32(&'static str, i32),
    F32(&'static str, f32),
    Bool(&'static str, bool),
    /// A 1-D u32 tensor parameter (`perm`, `axes`).
    U32s(&'static str, Vec<u32>),
}

/// Builds ops into one graph, naming tensors and turning failures into errors that name the
/// node and its tensors. Tensors whose names were registered with [`Lowerer::mark_output`] are
/// created as graph outputs (APP_READ), everything else computed is NATIVE.
pub struct Lowerer<'a> {
    graph: &'a Graph,
    weights: &'a LoweredWeights,
    outputs_wanted: HashSet<String>,
    statics: HashMap<String, TensorDesc>,
    /// Graph inputs in creation order.
    pub inputs: Vec<TensorDesc>,
    /// Graph outputs in creation order.
    pub outputs: Vec<TensorDesc>,
}

impl<'a> Lowerer<'a> {
    pub fn new(graph: &'a Graph, weights: &'a LoweredWeights) -> Lowerer<'a> {
        Lowerer {
            graph,
            weights,
            outputs_wanted: HashSet::new(),
            statics: HashMap::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// The tensor that will be produced under `name` becomes a graph output.
    pub fn mark_output(&mut self, name: &str) {
        self.outputs_wanted.insert(name.to_string());
    }

    fn add_tensor(&self, spec: &TensorSpec<'_>) -> Result<TensorDesc> {
        self.graph.add_tensor(spec).map_err(|source| {
            Error::from(LowerError::Tensor {
                graph: self.graph.name().to_string(),
                tensor: spec.name.to_string(),
                dims: spec.dims.to_vec(),
                source,
            })
        })
    }

    /// A graph input the host writes.
    pub fn input(&mut self, name: &str, dims: &[u32], dt: Qnn_DataType_t) -> Result<TensorDesc> {
        let t = self.add_tensor(&TensorSpec::new(name, QNN_TENSOR_TYPE_APP_WRITE, dt, dims))?;
        self.inputs.push(t.clone());
        Ok(t)
    }

    /// A named weight from [`LoweredWeights`] as a STATIC tensor (created once per graph).
    pub fn weight(&mut self, name: &str) -> Result<TensorDesc> {
        if let Some(t) = self.statics.get(name) {
            return Ok(t.clone());
        }
        let (dims, bytes) = self
            .weights
            .tensors
            .get(name)
            .ok_or_else(|| Error::Unsupported(format!("no weight named `{name}`")))?;
        let t = self.add_tensor(&TensorSpec::constant(name, DT, dims, bytes))?;
        self.statics.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// A computed tensor: NATIVE, or APP_READ when marked as an output.
    pub fn tensor(&mut self, name: &str, dims: &[u32]) -> Result<TensorDesc> {
        let is_out = self.outputs_wanted.contains(name);
        let kind = if is_out {
            QNN_TENSOR_TYPE_APP_READ
        } else {
            QNN_TENSOR_TYPE_NATIVE
        };
        let t = self.add_tensor(&TensorSpec::new(name, kind, DT, dims))?;
        if is_out {
            self.outputs.push(t.clone());
        }
        Ok(t)
    }

    /// `graphAddNode` with `params`; errors name the node, type and tensors.
    pub fn node(
        &mut self,
        name: &str,
        type_name: &str,
        params: &[P],
        inputs: &[&TensorDesc],
        outputs: &[&TensorDesc],
    ) -> Result<()> {
        let tensor_params: Vec<(TensorDesc, Vec<u8>)> = params
            .iter()
            .filter_map(|p| match p {
                P::U32s(pname, v) => Some((pname, v)),
                _ => None,
            })
            .map(|(pname, v)| {
                let bytes = conv::u32_bytes(v);
                let dims = [v.len() as u32];
                let t = self.add_tensor(&TensorSpec::constant(
                    &format!("{name}.{pname}"),
                    QNN_DATATYPE_UINT_32,
                    &dims,
                    &bytes,
                ))?;
                Ok((t, bytes))
            })
            .collect::<Result<_>>()?;
        let mut tp = tensor_params.iter();
        let qparams: Vec<Param<'_>> = params
            .iter()
            .map(|p| match p {
                P::U32(n, v) => Param::Scalar {
                    name: n,
                    value: Qnn_Scalar_t::u32(*v),
                },
                P::I32(n, v) => Param::Scalar {
                    name: n,
                    value: Qnn_Scalar_t::i32(*v),
                },
                P::F32(n, v) => Param::Scalar {
                    name: n,
                    value: Qnn_Scalar_t::f32(*v),
                },
                P::Bool(n, v) => Param::Scalar {
                    name: n,
                    value: Qnn_Scalar_t::bool8(*v),
                },
                P::U32s(n, _) => {
                    let (t, bytes) = tp.next().expect("one tensor per U32s param");
                    Param::Tensor {
                        name: n,
                        tensor: t,
                        data: bytes,
                    }
                }
            })
            .collect();
        let spec = OpSpec {
            name,
            package: QNN_OP_PACKAGE,
            type_name,
            params: &qparams,
            inputs,
            outputs,
        };
        // HTP's graphAddNode accepts ops it cannot run and fails later at finalize without
        // naming them, so validate first.
        let added = self
            .graph
            .validate_node(&spec)
            .and_then(|()| self.graph.add_node(&spec));
        added.map_err(|source| {
            let list = |ts: &[&TensorDesc]| {
                ts.iter()
                    .map(|t| format!("{} {:?}", t.name, t.dims))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Error::from(LowerError::Node {
                graph: self.graph.name().to_string(),
                node: name.to_string(),
                op_type: type_name.to_string(),
                inputs: list(inputs),
                outputs: list(outputs),
                source,
            })
        })
    }

    // ---- single ops (output named `out`) ----

    fn unary(&mut self, op: &str, x: &TensorDesc, out: &str, params: &[P]) -> Result<TensorDesc> {
        let y = self.tensor(out, &x.dims.clone())?;
        self.node(out, op, params, &[x], &[&y])?;
        Ok(y)
    }

    /// Element-wise binary op with numpy broadcasting (trailing dimensions aligned).
    fn binary(
        &mut self,
        op: &str,
        a: &TensorDesc,
        b: &TensorDesc,
        out: &str,
    ) -> Result<TensorDesc> {
        let (long, short) = if a.dims.len() >= b.dims.len() {
            (&a.dims, &b.dims)
        } else {
            (&b.dims, &a.dims)
        };
        let off = long.len() - short.len();
        let dims: Vec<u32> = long
            .iter()
            .enumerate()
            .map(|(i, &l)| if i < off { l } else { l.max(short[i - off]) })
            .collect();
        let y = self.tensor(out, &dims)?;
        self.node(out, op, &[], &[a, b], &[&y])?;
        Ok(y)
    }

    pub fn add(&mut self, a: &TensorDesc, b: &TensorDesc, out: &str) -> Result<TensorDesc> {
        self.binary("ElementWiseAdd", a, b, out)
    }

    pub fn mul(&mut self, a: &TensorDesc, b: &TensorDesc, out: &str) -> Result<TensorDesc> {
        self.binary("ElementWiseMultiply", a, b, out)
    }

    pub fn sigmoid(&mut self, x: &TensorDesc, out: &str) -> Result<TensorDesc> {
        self.unary("Sigmoid", x, out, &[])
    }

    pub fn softmax(&mut self, x: &TensorDesc, beta: f32, out: &str) -> Result<TensorDesc> {
        let axis = x.dims.len() as u32 - 1;
        self.unary(
            "Softmax",
            x,
            out,
            &[P::U32("axis", axis), P::F32("beta", beta)],
        )
    }

    /// RMSNorm over the last axis with `gamma` `[last]`.
    ///
    /// Always run over a `[1, 1, rows, last]` view: the HTP's fp16 `RmsNorm` (measured with
    /// QNN 2.40 / backend 2.51 on every target tried) returns wrong rows past the eighth along
    /// the third-from-last axis when that axis is longer than 8 — e.g. a per-head q/k norm
    /// over `[N, heads, d]` with N > 8 — and graph rewriting can carry that layout over to a
    /// rank-2 norm of the same tensor. The flat view is correct on every shape of the op
    /// sweep (`tests/ops.rs`), and the reshapes cost nothing on the HTP.
    pub fn rms_norm(
        &mut self,
        x: &TensorDesc,
        gamma: &TensorDesc,
        eps: f32,
        out: &str,
    ) -> Result<TensorDesc> {
        let last = *x.dims.last().expect("rank >= 1");
        let rows = x.dims.iter().product::<u32>() / last.max(1);
        let flat = self.reshape(x, &[1, 1, rows, last], &format!("{out}.flat"))?;
        let y = self.tensor(&format!("{out}.normed"), &flat.dims.clone())?;
        self.node(
            &format!("{out}.normed"),
            "RmsNorm",
            &[P::F32("epsilon", eps), P::U32s("axes", vec![3])],
            &[&flat, gamma],
            &[&y],
        )?;
        self.reshape(&y, &x.dims.clone(), out)
    }

    pub fn reshape(&mut self, x: &TensorDesc, dims: &[u32], out: &str) -> Result<TensorDesc> {
        debug_assert_eq!(x.dims.iter().product::<u32>(), dims.iter().product::<u32>());
        let y = self.tensor(out, dims)?;
        self.node(out, "Reshape", &[], &[x], &[&y])?;
        Ok(y)
    }

    pub fn transpose(&mut self, x: &TensorDesc, perm: &[u32], out: &str) -> Result<TensorDesc> {
        let dims: Vec<u32> = perm.iter().map(|&p| x.dims[p as usize]).collect();
        let y = self.tensor(out, &dims)?;
        self.node(
            out,
            "Transpose",
            &[P::U32s("perm", perm.to_vec())],
            &[x],
            &[&y],
        )?;
        Ok(y)
    }

    pub fn concat(&mut self, parts: &[&TensorDesc], axis: usize, out: &str) -> Result<TensorDesc> {
        let mut dims = parts[0].dims.clone();
        dims[axis] = parts.iter().map(|t| t.dims[axis]).sum();
        let y = self.tensor(out, &dims)?;
        self.node(out, "Concat", &[P::U32("axis", axis as u32)], parts, &[&y])?;
        Ok(y)
    }

    /// `a · b` (`b` transposed when `transpose_b`), batched over leading dimensions.
    pub fn matmul(
        &mut self,
        a: &TensorDesc,
        b: &TensorDesc,
        transpose_b: bool,
        out: &str,
    ) -> Result<TensorDesc> {
        let mut dims = a.dims.clone();
        let nb = b.dims.len();
        let cols = if transpose_b {
            b.dims[nb - 2]
        } else {
            b.dims[nb - 1]
        };
        *dims.last_mut().expect("rank >= 1") = cols;
        let y = self.tensor(out, &dims)?;
        self.node(
            out,
            "MatMul",
            &[
                P::Bool("transpose_in0", false),
                P::Bool("transpose_in1", transpose_b),
            ],
            &[a, b],
            &[&y],
        )?;
        Ok(y)
    }

    /// Embedding lookup: `table[ids]`.
    pub fn gather(
        &mut self,
        table: &TensorDesc,
        ids: &TensorDesc,
        out: &str,
    ) -> Result<TensorDesc> {
        let mut dims = ids.dims.clone();
        dims.extend_from_slice(&table.dims[1..]);
        let y = self.tensor(out, &dims)?;
        self.node(out, "Gather", &[P::I32("axis", 0)], &[table, ids], &[&y])?;
        Ok(y)
    }

    // ---- blocks ----

    /// `x · Wᵀ (+ b)` with `W` `[out, in]` as stored.
    pub fn linear(
        &mut self,
        x: &TensorDesc,
        w: &str,
        bias: Option<&str>,
        out: &str,
    ) -> Result<TensorDesc> {
        let wt = self.weight(w)?;
        match bias {
            None => self.matmul(x, &wt, true, out),
            Some(b) => {
                let y = self.matmul(x, &wt, true, &format!("{out}.nobias"))?;
                let bt = self.weight(b)?;
                self.add(&y, &bt, out)
            }
        }
    }

    /// RoPE on `x` `[heads, N, d]`: `x·cos + rotate_half(x)·sin` with `cos`/`sin` `[N, d]`.
    pub fn rope(
        &mut self,
        x: &TensorDesc,
        cos: &TensorDesc,
        sin: &TensorDesc,
        out: &str,
    ) -> Result<TensorDesc> {
        let rot = self.weight("rope.rotate_half")?;
        let xc = self.mul(x, cos, &format!("{out}.xcos"))?;
        let xr = self.matmul(x, &rot, false, &format!("{out}.rot"))?;
        let xs = self.mul(&xr, sin, &format!("{out}.rotsin"))?;
        self.add(&xc, &xs, out)
    }

    /// softmax(scale · (q·K + mask))·V for `q` `[n_kv, g·N, d]`, `k_t` `[n_kv, d, C]`, `v`
    /// `[n_kv, C, d]`, `mask` `[g·N, C]`; result `[n_kv, g·N, d]`.
    pub fn attention(
        &mut self,
        q: &TensorDesc,
        k_t: &TensorDesc,
        v: &TensorDesc,
        mask: &TensorDesc,
        scale: f32,
        out: &str,
    ) -> Result<TensorDesc> {
        let s = self.matmul(q, k_t, false, &format!("{out}.scores"))?;
        let sm = self.add(&s, mask, &format!("{out}.masked"))?;
        let p = self.softmax(&sm, scale, &format!("{out}.probs"))?;
        self.matmul(&p, v, false, out)
    }

    /// `silu(gate) ⊙ up`, silu(x) = x·sigmoid(x).
    pub fn swiglu_gate(
        &mut self,
        gate: &TensorDesc,
        up: &TensorDesc,
        out: &str,
    ) -> Result<TensorDesc> {
        let sg = self.sigmoid(gate, &format!("{out}.sigmoid"))?;
        let silu = self.mul(gate, &sg, &format!("{out}.silu"))?;
        self.mul(&silu, up, out)
    }

    /// `(silu(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ`, silu(x) = x·sigmoid(x).
    pub fn swiglu(
        &mut self,
        h: &TensorDesc,
        w_gate: &str,
        w_up: &str,
        w_down: &str,
        out: &str,
    ) -> Result<TensorDesc> {
        let g = self.linear(h, w_gate, None, &format!("{out}.gate"))?;
        let u = self.linear(h, w_up, None, &format!("{out}.up"))?;
        let m = self.swiglu_gate(&g, &u, &format!("{out}.mul"))?;
        self.linear(&m, w_down, None, out)
    }
}

/// Shapes of one chunk graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkShape {
    pub chunk: usize,
    pub ctx: usize,
}

impl ChunkShape {
    pub fn past(&self) -> usize {
        self.ctx - self.chunk
    }

    /// The graph's name in the context (`ar{N}_c{C}`).
    pub fn graph_name(&self) -> String {
        format!("ar{}_c{}", self.chunk, self.ctx)
    }
}

/// How a value of the op graph is held in the QNN graph. The op graph is token-major rows; the
/// HTP graph keeps q/k heads-major between RoPE and attention, so each value remembers which
/// layout it was last materialized in and is reshaped or transposed only where a consumer needs
/// another.
#[derive(Clone)]
enum Held {
    /// `[N, width]`.
    Rows(TensorDesc),
    /// `[N, heads, head_dim]` (a reshape of the rows).
    Heads(TensorDesc),
    /// `[heads, N, head_dim]`.
    HeadMajor(TensorDesc),
}

/// Lowers the model's op graph ([`DecoderGraph`]) as the chunk graph `shape` into `lw`'s graph
/// (not finalized). Ops or parameters the HTP lowering does not support are refused with
/// [`Error::Unsupported`] naming the node, before anything is finalized.
pub fn lower_model(
    lw: &mut Lowerer<'_>,
    spec: &ModelSpec,
    graph: &DecoderGraph,
    shape: ChunkShape,
) -> Result<()> {
    check_supported(spec, graph)?;
    let (n, c, p) = (shape.chunk as u32, shape.ctx as u32, shape.past() as u32);
    if p == 0 {
        return Err(Error::Unsupported(format!(
            "chunk {n} must be smaller than the context {c} (the graph needs past slots)"
        )));
    }
    let (d, nkv) = (spec.head_dim as u32, spec.n_kv_heads as u32);
    let g = spec.gqa_group() as u32;
    for l in 0..graph.n_cache_layers {
        lw.mark_output(&format!("new_key_{l}"));
        lw.mark_output(&format!("new_value_{l}"));
    }
    lw.mark_output("logits");

    let ids = lw.input("input_ids", &[n], QNN_DATATYPE_INT_32)?;
    let cos = lw.input("cos", &[n, d], DT)?;
    let sin = lw.input("sin", &[n, d], DT)?;
    let mask = lw.input("attention_mask", &[g * n, c], DT)?;
    let mut past = Vec::with_capacity(graph.n_cache_layers);
    for l in 0..graph.n_cache_layers {
        let k = lw.input(&format!("past_key_{l}"), &[nkv, d, p], DT)?;
        let v = lw.input(&format!("past_value_{l}"), &[nkv, p, d], DT)?;
        past.push((k, v));
    }

    let unsupported = |node: &Node, why: String| {
        Error::Unsupported(format!("node `{}` ({}): {why}", node.name, node.op.kind()))
    };
    let mut held: Vec<Option<Held>> = vec![None; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let name = node.name.as_str();
        let get = |v: ValueId| -> Result<Held> {
            held[v.0]
                .clone()
                .ok_or_else(|| Error::Unsupported(format!("node `{name}` reads an unset value")))
        };
        let out = match &node.op {
            Op::Embedding { table } => {
                let embd = lw.weight(&weight_name(lw, *table))?;
                Held::Rows(lw.gather(&embd, &ids, name)?)
            }
            Op::RmsNorm {
                x,
                weight,
                dim,
                eps,
            } => {
                let gamma = lw.weight(&weight_name(lw, *weight))?;
                if *dim == node.width {
                    let x = rows(lw, get(*x)?, graph.node(*x))?;
                    Held::Rows(lw.rms_norm(&x, &gamma, *eps, name)?)
                } else {
                    let x = heads(lw, get(*x)?, graph.node(*x), *dim as u32)?;
                    Held::Heads(lw.rms_norm(&x, &gamma, *eps, name)?)
                }
            }
            Op::Linear { x, weight, bias } => {
                let x = rows(lw, get(*x)?, graph.node(*x))?;
                let bias = bias.map(|b| weight_name(lw, b));
                Held::Rows(lw.linear(&x, &weight_name(lw, *weight), bias.as_deref(), name)?)
            }
            Op::Rope { x, .. } => {
                let x = head_major(lw, get(*x)?, graph.node(*x), d)?;
                Held::HeadMajor(lw.rope(&x, &cos, &sin, name)?)
            }
            Op::Attention {
                q,
                k,
                v,
                layer,
                n_heads,
                scale,
                mask: Mask::Causal,
                ..
            } => {
                let (past_k, past_v) = past.get(*layer).ok_or_else(|| {
                    unsupported(node, format!("KV cache layer {layer} is not a graph input"))
                })?;
                let nh = *n_heads as u32;
                let qh = head_major(lw, get(*q)?, graph.node(*q), d)?;
                let qg = lw.reshape(&qh, &[nkv, g * n, d], &format!("{name}.q_group"))?;
                let kh = head_major(lw, get(*k)?, graph.node(*k), d)?;
                let new_k = lw.transpose(&kh, &[0, 2, 1], &format!("new_key_{layer}"))?;
                let vh = heads(lw, get(*v)?, graph.node(*v), d)?;
                let new_v = lw.transpose(&vh, &[1, 0, 2], &format!("new_value_{layer}"))?;
                let k_all = lw.concat(&[past_k, &new_k], 2, &format!("{name}.k_all"))?;
                let v_all = lw.concat(&[past_v, &new_v], 1, &format!("{name}.v_all"))?;
                let a = lw.attention(&qg, &k_all, &v_all, &mask, *scale, name)?;
                let a = lw.reshape(&a, &[nh, n, d], &format!("{name}_hnd"))?;
                let a = lw.transpose(&a, &[1, 0, 2], &format!("{name}_nhd"))?;
                Held::Rows(lw.reshape(&a, &[n, nh * d], &format!("{name}_rows"))?)
            }
            Op::Add { a, b } => {
                let a = rows(lw, get(*a)?, graph.node(*a))?;
                let b = rows(lw, get(*b)?, graph.node(*b))?;
                Held::Rows(lw.add(&a, &b, name)?)
            }
            Op::Glu {
                gate,
                up,
                act: Activation::Silu,
            } => {
                let gt = rows(lw, get(*gate)?, graph.node(*gate))?;
                let u = rows(lw, get(*up)?, graph.node(*up))?;
                Held::Rows(lw.swiglu_gate(&gt, &u, name)?)
            }
        };
        held[i] = Some(out);
    }
    match held[graph.logits.0].take() {
        Some(Held::Rows(_)) => Ok(()),
        _ => Err(Error::Unsupported("the graph's logits are not rows".into())),
    }
}

/// Refuses, naming the node, what the HTP chunk graph cannot hold: a RoPE other than the
/// model's (the graph has one cos/sin input), partial RoPE, attention heads other than the
/// model's (the K/V inputs are sized from it). Checked before a cached context binary is used,
/// so a cache cannot hide it.
pub fn check_supported(spec: &ModelSpec, graph: &DecoderGraph) -> Result<()> {
    let unsupported = |node: &Node, why: String| {
        Error::Unsupported(format!("node `{}` ({}): {why}", node.name, node.op.kind()))
    };
    for node in &graph.nodes {
        match &node.op {
            Op::Rope { head_dim, rope, .. } => {
                if *rope != spec.rope || *head_dim != spec.head_dim {
                    return Err(unsupported(
                        node,
                        "a RoPE other than the model's (the graph has one cos/sin input)".into(),
                    ));
                }
                if rope.rotary_dim != *head_dim {
                    return Err(unsupported(
                        node,
                        format!(
                            "partial RoPE (rotary_dim {} of head_dim {head_dim})",
                            rope.rotary_dim
                        ),
                    ));
                }
            }
            Op::Attention {
                n_heads,
                n_kv_heads,
                head_dim,
                ..
            } if (*n_heads, *n_kv_heads, *head_dim)
                != (spec.n_heads, spec.n_kv_heads, spec.head_dim) =>
            {
                return Err(unsupported(
                    node,
                    "heads other than the model's (the K/V inputs are sized from it)".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The graph name of a weight: its model-wide name, a tied LM head being the embedding table.
fn weight_name(lw: &Lowerer<'_>, w: WeightRef) -> String {
    match w {
        WeightRef::LmHead if !lw.weights.contains("lm_head") => "token_embd".into(),
        _ => w.to_string(),
    }
}

/// `value` as `[N, width]` rows.
fn rows(lw: &mut Lowerer<'_>, value: Held, node: &Node) -> Result<TensorDesc> {
    match value {
        Held::Rows(t) => Ok(t),
        Held::Heads(t) => {
            let n = t.dims[0];
            lw.reshape(&t, &[n, node.width as u32], &format!("{}.rows", node.name))
        }
        Held::HeadMajor(t) => {
            let n = t.dims[1];
            let t = lw.transpose(&t, &[1, 0, 2], &format!("{}.nhd", node.name))?;
            lw.reshape(&t, &[n, node.width as u32], &format!("{}.rows", node.name))
        }
    }
}

/// `value` as `[N, heads, d]`.
fn heads(lw: &mut Lowerer<'_>, value: Held, node: &Node, d: u32) -> Result<TensorDesc> {
    match value {
        Held::Heads(t) => Ok(t),
        Held::Rows(t) => {
            let n = t.dims[0];
            lw.reshape(
                &t,
                &[n, node.width as u32 / d, d],
                &format!("{}_heads", node.name),
            )
        }
        Held::HeadMajor(t) => lw.transpose(&t, &[1, 0, 2], &format!("{}.nhd", node.name)),
    }
}

/// `value` as `[heads, N, d]`.
fn head_major(lw: &mut Lowerer<'_>, value: Held, node: &Node, d: u32) -> Result<TensorDesc> {
    match value {
        Held::HeadMajor(t) => Ok(t),
        other => {
            let t = heads(lw, other, node, d)?;
            lw.transpose(&t, &[1, 0, 2], &format!("{}_hnd", node.name))
        }
    }
}
