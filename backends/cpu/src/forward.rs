//! The model's op graph ([`tandem_graphs::DecoderGraph`]) executed with the CPU kernels over a
//! [`KvCache`]. Prefill and decode are the same code: `forward` takes any number of new tokens
//! that follow the cache's valid positions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tandem_graphs::ops::{Activation, Mask};
use tandem_graphs::{DecoderGraph, ModelSpec, ModelWeights, Op, RopeSpec, WeightRef};
use tandem_hal::{DType, Error, KvCache, Result};

use crate::kernels::{self, Matrix};
use crate::pool::ThreadPool;

/// How weights are held on the CPU (`--cpu-weights`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// Keep each matrix in the type it is stored in (mapped, no copy).
    AsStored,
    /// Convert every matrix to this type at load.
    Convert(DType),
}

impl WeightFormat {
    /// Parses `auto | f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1`.
    pub fn parse(s: &str) -> Result<WeightFormat> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(WeightFormat::AsStored);
        }
        match DType::from_name(s) {
            Some(
                d @ (DType::F32
                | DType::F16
                | DType::BF16
                | DType::Q8_0
                | DType::Q4_0
                | DType::Q4_1
                | DType::Q5_0
                | DType::Q5_1),
            ) => Ok(WeightFormat::Convert(d)),
            _ => Err(Error::InvalidInput(format!(
                "weight format `{s}`: expected auto, f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1"
            ))),
        }
    }
}

/// Which positions' logits `forward` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last new token (generation).
    Last,
    /// Every new token, `[n, vocab]` (`tandem logits`, tests).
    All,
}

/// One op of the [`DecoderGraph`] with its weights resolved to the CPU's copies (indices into
/// [`CpuModel::matrices`] / [`CpuModel::vectors`]) and its frequency table.
#[derive(Clone, Debug)]
enum Step {
    Embedding {
        table: usize,
    },
    RmsNorm {
        x: usize,
        w: usize,
        dim: usize,
        eps: f32,
    },
    Linear {
        x: usize,
        w: usize,
        bias: Option<usize>,
    },
    Rope {
        x: usize,
        head_dim: usize,
        table: usize,
    },
    Attention {
        q: usize,
        k: usize,
        v: usize,
        layer: usize,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        scale: f32,
    },
    Add {
        a: usize,
        b: usize,
    },
    Glu {
        gate: usize,
        up: usize,
    },
}

/// A model ready to run on the CPU: the model's [`DecoderGraph`] with its matrices in their
/// compute format and its vectors in f32.
///
/// `forward` executes the graph node by node with the CPU kernels. Each value lives in a buffer
/// from a small per-call pool and goes back to it after its last reader
/// ([`DecoderGraph::last_uses`]); ops that can work in place (RoPE, per-head norms, residual
/// adds, the gated activation, biases) reuse their input's buffer when nothing reads it later, so
/// a forward pass allocates a handful of buffers, as the hand-written pass did.
pub struct CpuModel {
    spec: ModelSpec,
    graph: DecoderGraph,
    steps: Vec<Step>,
    last_use: Vec<usize>,
    /// For every node, the values whose last reader it is (freed after it runs).
    frees: Vec<Vec<usize>>,
    matrices: Vec<Matrix>,
    vectors: Vec<Vec<f32>>,
    /// Inverse frequencies of every distinct RoPE of the graph.
    inv_freqs: Vec<(RopeSpec, Vec<f32>)>,
    pool: Arc<ThreadPool>,
}

impl CpuModel {
    /// Prepares `weights` for the CPU, converting matrices when `format` asks for it.
    pub fn new(
        spec: ModelSpec,
        weights: &ModelWeights,
        format: WeightFormat,
        pool: Arc<ThreadPool>,
    ) -> Result<CpuModel> {
        let graph = DecoderGraph::from_spec(&spec);
        graph.check_weights(weights).map_err(Error::InvalidInput)?;
        let tensor = |w: WeightRef| {
            weights
                .get(w)
                .ok_or_else(|| Error::InvalidInput(format!("the model has no weight `{w}`")))
        };
        let mut matrices: Vec<Matrix> = Vec::new();
        let mut vectors: Vec<Vec<f32>> = Vec::new();
        let mut inv_freqs: Vec<(RopeSpec, Vec<f32>)> = Vec::new();
        // (weight, used as an embedding table) -> index
        let mut mat_index: HashMap<(WeightRef, bool), usize> = HashMap::new();
        let mut vec_index: HashMap<WeightRef, usize> = HashMap::new();
        let mut matrix = |w: WeightRef, embedding: bool| -> Result<usize> {
            if let Some(&i) = mat_index.get(&(w, embedding)) {
                return Ok(i);
            }
            let m = Matrix::from_tensor(tensor(w)?)?;
            // The embedding is only ever read one row at a time, so it stays as stored; a tied LM
            // head shares its bytes unless a conversion was asked for.
            let m = match format {
                WeightFormat::Convert(to) if to != m.dtype && !embedding => m.convert(to, &pool)?,
                _ => m,
            };
            matrices.push(m);
            mat_index.insert((w, embedding), matrices.len() - 1);
            Ok(matrices.len() - 1)
        };
        let mut vector = |w: WeightRef| -> Result<usize> {
            if let Some(&i) = vec_index.get(&w) {
                return Ok(i);
            }
            vectors.push(tensor(w)?.to_f32_vec());
            vec_index.insert(w, vectors.len() - 1);
            Ok(vectors.len() - 1)
        };
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let step = match &node.op {
                Op::Embedding { table } => Step::Embedding {
                    table: matrix(*table, true)?,
                },
                Op::RmsNorm {
                    x,
                    weight,
                    dim,
                    eps,
                } => Step::RmsNorm {
                    x: x.0,
                    w: vector(*weight)?,
                    dim: *dim,
                    eps: *eps,
                },
                Op::Linear { x, weight, bias } => Step::Linear {
                    x: x.0,
                    w: matrix(*weight, false)?,
                    bias: bias.map(&mut vector).transpose()?,
                },
                Op::Rope { x, head_dim, rope } => {
                    if rope.rotary_dim > *head_dim || rope.rotary_dim % 2 != 0 {
                        return Err(Error::InvalidInput(format!(
                            "node `{}`: rotary_dim {} of head_dim {head_dim}",
                            node.name, rope.rotary_dim
                        )));
                    }
                    let table = match inv_freqs.iter().position(|(r, _)| r == rope) {
                        Some(i) => i,
                        None => {
                            inv_freqs.push((rope.clone(), rope.inv_freq()));
                            inv_freqs.len() - 1
                        }
                    };
                    Step::Rope {
                        x: x.0,
                        head_dim: *head_dim,
                        table,
                    }
                }
                Op::Attention {
                    q,
                    k,
                    v,
                    layer,
                    n_heads,
                    n_kv_heads,
                    head_dim,
                    scale,
                    mask: Mask::Causal,
                } => Step::Attention {
                    q: q.0,
                    k: k.0,
                    v: v.0,
                    layer: *layer,
                    n_heads: *n_heads,
                    n_kv_heads: *n_kv_heads,
                    head_dim: *head_dim,
                    scale: *scale,
                },
                Op::Add { a, b } => Step::Add { a: a.0, b: b.0 },
                Op::Glu {
                    gate,
                    up,
                    act: Activation::Silu,
                } => Step::Glu {
                    gate: gate.0,
                    up: up.0,
                },
            };
            steps.push(step);
        }
        let last_use = graph.last_uses();
        let frees = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut dying: Vec<usize> = node
                    .op
                    .inputs()
                    .into_iter()
                    .map(|v| v.0)
                    .filter(|&v| last_use[v] == i)
                    .collect();
                dying.dedup();
                dying
            })
            .collect();
        Ok(CpuModel {
            spec,
            graph,
            steps,
            last_use,
            frees,
            matrices,
            vectors,
            inv_freqs,
            pool,
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The op graph this model executes.
    pub fn graph(&self) -> &DecoderGraph {
        &self.graph
    }

    pub fn pool(&self) -> &Arc<ThreadPool> {
        &self.pool
    }

    /// Bytes of weights as held for compute.
    pub fn weight_bytes(&self) -> usize {
        self.matrices.iter().map(Matrix::size_bytes).sum()
    }

    /// Type of the layer matrices (after any conversion), for stats: that of the first
    /// projection (the LM head's in a model without layers).
    pub fn weight_dtype(&self) -> DType {
        self.steps
            .iter()
            .find_map(|s| match s {
                Step::Linear { w, .. } => Some(self.matrices[*w].dtype),
                _ => None,
            })
            .unwrap_or(DType::F32)
    }

    /// Runs `tokens` (positions `cache.len()..`) through the model, appends their K/V to `cache`
    /// and returns logits (`[vocab]` or `[n, vocab]`, see [`Logits`]).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, which: Logits) -> Result<Vec<f32>> {
        let s = &self.spec;
        let n = tokens.len();
        if n == 0 {
            return Err(Error::InvalidInput("forward called with no tokens".into()));
        }
        cache.check_room(n)?;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= s.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary (size {})",
                s.vocab_size
            )));
        }
        if cache.n_layers() < self.graph.n_cache_layers {
            return Err(Error::InvalidInput(format!(
                "KV cache has {} layers, the model {}",
                cache.n_layers(),
                self.graph.n_cache_layers
            )));
        }
        let start = cache.len();
        let tables: Vec<(Vec<f32>, Vec<f32>)> = self
            .inv_freqs
            .iter()
            .map(|(_, inv)| rope_table(inv, start, n))
            .collect();
        let mut vals: Vec<Option<Vec<f32>>> = vec![None; self.steps.len()];
        let mut free: Vec<Vec<f32>> = Vec::new();
        let hidden = self.graph.hidden.0;
        let mut rows = n;
        for (i, step) in self.steps.iter().enumerate() {
            let width = self.graph.nodes[i].width;
            let out = match step {
                Step::Embedding { table } => {
                    let table = &self.matrices[*table];
                    let mut out = take(&mut free, rows * width);
                    for (row, &t) in out.chunks_exact_mut(width).zip(tokens) {
                        table.row_to_f32(t as usize, row);
                    }
                    out
                }
                Step::RmsNorm { x, w, dim, eps } => {
                    let w = &self.vectors[*w];
                    if *dim == width {
                        let mut out = take(&mut free, rows * width);
                        rms_norm_rows(value(&vals, *x), w, *eps, &mut out);
                        out
                    } else {
                        let mut out = self.in_place(&mut vals, &mut free, *x, i);
                        head_rms_norm(&mut out, w, *eps);
                        out
                    }
                }
                Step::Linear { x, w, bias } => {
                    let mut out = take(&mut free, rows * width);
                    let m = &self.matrices[*w];
                    kernels::matmul(&self.pool, m, value(&vals, *x), rows, &mut out);
                    if let Some(b) = bias {
                        let b = &self.vectors[*b];
                        for row in out.chunks_exact_mut(b.len()) {
                            kernels::add(row, b);
                        }
                    }
                    out
                }
                Step::Rope { x, head_dim, table } => {
                    let mut out = self.in_place(&mut vals, &mut free, *x, i);
                    let (cos, sin) = &tables[*table];
                    let half = self.inv_freqs[*table].1.len();
                    rope(&mut out, (cos, sin), *head_dim, half);
                    out
                }
                Step::Attention {
                    q,
                    k,
                    v,
                    layer,
                    n_heads,
                    n_kv_heads,
                    head_dim,
                    scale,
                } => {
                    cache.write(*layer, start, value(&vals, *k), value(&vals, *v));
                    let mut out = take(&mut free, rows * width);
                    let shape = AttentionShape {
                        n_heads: *n_heads,
                        group: n_heads / n_kv_heads,
                        head_dim: *head_dim,
                        scale: *scale,
                    };
                    self.attention(value(&vals, *q), cache, *layer, start, shape, &mut out);
                    out
                }
                Step::Add { a, b } => {
                    let mut out = self.in_place(&mut vals, &mut free, *a, i);
                    kernels::add(&mut out, value(&vals, *b));
                    out
                }
                Step::Glu { gate, up } => {
                    let mut out = self.in_place(&mut vals, &mut free, *gate, i);
                    kernels::silu_mul(&mut out, value(&vals, *up));
                    out
                }
            };
            vals[i] = Some(out);
            for &v in &self.frees[i] {
                if let Some(buf) = vals[v].take() {
                    free.push(buf);
                }
            }
            if i == hidden {
                // Past the last hidden state only the rows whose logits are wanted go on.
                if which == Logits::Last && n > 1 {
                    if let Some(x) = vals[i].as_mut() {
                        x.drain(..(n - 1) * width);
                    }
                    rows = 1;
                }
            }
        }
        cache.advance(n);
        let logits = self.graph.logits.0;
        vals[logits]
            .take()
            .ok_or_else(|| Error::InvalidInput("the graph computed no logits".into()))
    }

    /// The buffer of `x` for node `at` to overwrite: `x`'s own when nothing reads `x` after `at`,
    /// else a copy.
    fn in_place(
        &self,
        vals: &mut [Option<Vec<f32>>],
        free: &mut Vec<Vec<f32>>,
        x: usize,
        at: usize,
    ) -> Vec<f32> {
        if self.last_use[x] == at {
            if let Some(buf) = vals[x].take() {
                return buf;
            }
        }
        let src = value(vals, x);
        let mut out = take(free, src.len());
        out.copy_from_slice(src);
        out
    }

    /// Causal GQA attention of the `n` new queries (positions `start..start + n`) over the cache,
    /// split across the pool by (token, head).
    fn attention(
        &self,
        q: &[f32],
        cache: &KvCache,
        layer: usize,
        start: usize,
        shape: AttentionShape,
        out: &mut [f32],
    ) {
        let AttentionShape {
            n_heads,
            group,
            head_dim: d,
            scale,
        } = shape;
        par_chunks_mut(&self.pool, out, d, |idx, o| {
            let (t, head) = (idx / n_heads, idx % n_heads);
            let kv_head = head / group;
            let seen = start + t + 1;
            let qh = &q[(t * n_heads + head) * d..][..d];
            let keys = cache.keys(layer, kv_head, seen);
            let values = cache.values(layer, kv_head, seen);
            let mut scores: Vec<f32> = keys
                .chunks_exact(d)
                .map(|kr| kernels::dot(qh, kr) * scale)
                .collect();
            kernels::softmax(&mut scores);
            o.fill(0.0);
            for (p, vr) in scores.iter().zip(values.chunks_exact(d)) {
                kernels::axpy(*p, vr, o);
            }
        });
    }
}

#[derive(Clone, Copy)]
struct AttentionShape {
    n_heads: usize,
    group: usize,
    head_dim: usize,
    scale: f32,
}

/// A buffer of `len` floats from the pool (contents unspecified: every op overwrites its whole
/// output).
fn take(free: &mut Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut buf = free.pop().unwrap_or_default();
    buf.resize(len, 0.0);
    buf
}

/// The computed value `x` (the graph is topological, so it exists).
fn value(vals: &[Option<Vec<f32>>], x: usize) -> &[f32] {
    vals[x].as_deref().unwrap_or(&[])
}

/// cos/sin of every rotary frequency at positions `start..start + n`, `[n, rotary_dim / 2]`
/// each; computed once per forward pass per RoPE and shared by q, k and every layer.
fn rope_table(inv_freq: &[f32], start: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for t in 0..n {
        // Angles in f32 like the reference (positions · inv_freq computed in float32).
        let pos = (start + t) as f32;
        for &f in inv_freq {
            let a = pos * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (cos, sin)
}

/// Rotates each `d`-wide head of `buf` (`[n, heads * d]`) with the [`rope_table`] rows, pairing
/// element i with i + half (Hugging Face `rotate_half`; `half` = rotary_dim / 2).
fn rope(buf: &mut [f32], (cos, sin): (&[f32], &[f32]), d: usize, half: usize) {
    let n = cos.len() / half.max(1);
    let row_len = buf.len() / n.max(1);
    for (t, row) in buf.chunks_exact_mut(row_len).enumerate() {
        let (cos, sin) = (&cos[t * half..][..half], &sin[t * half..][..half]);
        for head in row.chunks_exact_mut(d) {
            for i in 0..half {
                let (x0, x1) = (head[i], head[i + half]);
                head[i] = x0 * cos[i] - x1 * sin[i];
                head[i + half] = x1 * cos[i] + x0 * sin[i];
            }
        }
    }
}

/// Row-wise RMSNorm of `[rows, w.len()]`.
fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        kernels::rms_norm(xr, w, eps, or);
    }
}

/// In-place RMSNorm of every head (`w.len()` = head_dim) — Qwen3's q/k norm.
fn head_rms_norm(buf: &mut [f32], w: &[f32], eps: f32) {
    let mut tmp = vec![0.0f32; w.len()];
    for head in buf.chunks_exact_mut(w.len()) {
        kernels::rms_norm(head, w, eps, &mut tmp);
        head.copy_from_slice(&tmp);
    }
}

/// Calls `f(i, chunk_i)` for every `chunk_len`-sized chunk of `data`, the chunks dealt out to the
/// pool's threads in contiguous runs. Each thread locks only its own run, so the mutexes are
/// uncontended; they are what lets disjoint `&mut` chunks cross into the shared closure safely.
pub fn par_chunks_mut<F>(pool: &ThreadPool, data: &mut [f32], chunk_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let n_chunks = data.len() / chunk_len;
    let nth = pool.n_threads().min(n_chunks).max(1);
    let per = n_chunks.div_ceil(nth);
    let runs: Vec<Mutex<(usize, &mut [f32])>> = data
        .chunks_mut(per * chunk_len)
        .enumerate()
        .map(|(i, run)| Mutex::new((i * per, run)))
        .collect();
    pool.run(|ith, _| {
        let Some(run) = runs.get(ith) else { return };
        let mut guard = run.lock().unwrap_or_else(|e| e.into_inner());
        let (first, ref mut slice) = *guard;
        for (j, chunk) in slice.chunks_exact_mut(chunk_len).enumerate() {
            f(first + j, chunk);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_format_names() {
        assert_eq!(WeightFormat::parse("AUTO").unwrap(), WeightFormat::AsStored);
        for d in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::Q8_0,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
        ] {
            assert_eq!(
                WeightFormat::parse(d.name()).unwrap(),
                WeightFormat::Convert(d)
            );
        }
        let e = WeightFormat::parse("i32").unwrap_err().to_string();
        assert!(e.contains("q5_1"), "{e}");
        assert!(WeightFormat::parse("q4_k").is_err());
    }
}
