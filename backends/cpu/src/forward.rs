//! The transformer block of [`tandem_graphs::spec`] executed with the CPU kernels over a
//! [`KvCache`]. Prefill and decode are the same code: `forward` takes any number of new tokens
//! that follow the cache's valid positions.

use std::sync::{Arc, Mutex};

use tandem_graphs::{LayerWeights, ModelSpec, ModelWeights};
use tandem_hal::{DType, Error, KvCache, Result, Tensor};

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
    /// Parses `auto | f32 | f16 | bf16 | q8_0 | q4_0`.
    pub fn parse(s: &str) -> Result<WeightFormat> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(WeightFormat::AsStored);
        }
        match DType::from_name(s) {
            Some(d @ (DType::F32 | DType::F16 | DType::BF16 | DType::Q8_0 | DType::Q4_0)) => {
                Ok(WeightFormat::Convert(d))
            }
            _ => Err(Error::InvalidInput(format!(
                "--cpu-weights `{s}`: expected auto, f32, f16, bf16, q8_0 or q4_0"
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

struct CpuLayer {
    attn_norm: Vec<f32>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    wo: Matrix,
    ffn_norm: Vec<f32>,
    w_gate: Matrix,
    w_up: Matrix,
    w_down: Matrix,
}

/// A model ready to run on the CPU: matrices in their compute format, vectors in f32.
pub struct CpuModel {
    spec: ModelSpec,
    embd: Matrix,
    layers: Vec<CpuLayer>,
    norm: Vec<f32>,
    lm_head: Matrix,
    inv_freq: Vec<f32>,
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
        let mat = |t: &Tensor| -> Result<Matrix> {
            let m = Matrix::from_tensor(t)?;
            match format {
                WeightFormat::Convert(to) if to != m.dtype => m.convert(to, &pool),
                _ => Ok(m),
            }
        };
        let vec = |t: &Tensor| t.to_f32_vec();
        let layers = weights
            .layers
            .iter()
            .map(|l: &LayerWeights| {
                Ok(CpuLayer {
                    attn_norm: vec(&l.attn_norm),
                    wq: mat(&l.wq)?,
                    wk: mat(&l.wk)?,
                    wv: mat(&l.wv)?,
                    bq: l.bq.as_ref().map(vec),
                    bk: l.bk.as_ref().map(vec),
                    bv: l.bv.as_ref().map(vec),
                    q_norm: l.q_norm.as_ref().map(vec),
                    k_norm: l.k_norm.as_ref().map(vec),
                    wo: mat(&l.wo)?,
                    ffn_norm: vec(&l.ffn_norm),
                    w_gate: mat(&l.w_gate)?,
                    w_up: mat(&l.w_up)?,
                    w_down: mat(&l.w_down)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // The embedding is only ever read one row at a time, so it stays as stored; a tied LM head
        // shares its bytes unless a conversion was asked for.
        let embd = Matrix::from_tensor(&weights.token_embd)?;
        let lm_head = mat(weights.lm_head())?;
        let inv_freq = spec.rope.inv_freq();
        Ok(CpuModel {
            embd,
            layers,
            norm: vec(&weights.norm),
            lm_head,
            inv_freq,
            pool,
            spec,
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn pool(&self) -> &Arc<ThreadPool> {
        &self.pool
    }

    /// Bytes of weights as held for compute.
    pub fn weight_bytes(&self) -> usize {
        let mut n = self.embd.size_bytes() + self.lm_head.size_bytes();
        for l in &self.layers {
            for m in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
                n += m.size_bytes();
            }
        }
        n
    }

    /// Type of the layer matrices (after any conversion), for stats.
    pub fn weight_dtype(&self) -> DType {
        self.layers
            .first()
            .map_or(self.lm_head.dtype, |l| l.wq.dtype)
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
        let start = cache.len();
        let (hidden, q_dim, kv_dim, inter) =
            (s.hidden_size, s.q_dim(), s.kv_dim(), s.intermediate_size);

        let mut x = vec![0.0f32; n * hidden];
        for (row, &t) in x.chunks_exact_mut(hidden).zip(tokens) {
            self.embd.row_to_f32(t as usize, row);
        }
        let mut h = vec![0.0f32; n * hidden];
        let mut q = vec![0.0f32; n * q_dim];
        let mut k = vec![0.0f32; n * kv_dim];
        let mut v = vec![0.0f32; n * kv_dim];
        let mut attn = vec![0.0f32; n * q_dim];
        let mut o = vec![0.0f32; n * hidden];
        let mut gate = vec![0.0f32; n * inter];
        let mut up = vec![0.0f32; n * inter];

        let (cos, sin) = self.rope_table(start, n);
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm_rows(&x, &layer.attn_norm, s.rms_norm_eps, &mut h);
            kernels::matmul(&self.pool, &layer.wq, &h, n, &mut q);
            kernels::matmul(&self.pool, &layer.wk, &h, n, &mut k);
            kernels::matmul(&self.pool, &layer.wv, &h, n, &mut v);
            for (buf, bias) in [
                (&mut q, &layer.bq),
                (&mut k, &layer.bk),
                (&mut v, &layer.bv),
            ] {
                if let Some(b) = bias {
                    for row in buf.chunks_exact_mut(b.len()) {
                        kernels::add(row, b);
                    }
                }
            }
            if let Some(w) = &layer.q_norm {
                head_rms_norm(&mut q, w, s.rms_norm_eps);
            }
            if let Some(w) = &layer.k_norm {
                head_rms_norm(&mut k, w, s.rms_norm_eps);
            }
            self.rope(&mut q, (&cos, &sin), s.n_heads);
            self.rope(&mut k, (&cos, &sin), s.n_kv_heads);
            cache.write(li, start, &k, &v);
            self.attention(&q, cache, li, start, &mut attn);
            kernels::matmul(&self.pool, &layer.wo, &attn, n, &mut o);
            kernels::add(&mut x, &o);

            rms_norm_rows(&x, &layer.ffn_norm, s.rms_norm_eps, &mut h);
            kernels::matmul(&self.pool, &layer.w_gate, &h, n, &mut gate);
            kernels::matmul(&self.pool, &layer.w_up, &h, n, &mut up);
            kernels::silu_mul(&mut gate, &up);
            kernels::matmul(&self.pool, &layer.w_down, &gate, n, &mut o);
            kernels::add(&mut x, &o);
        }
        cache.advance(n);

        let rows: &[f32] = match which {
            Logits::Last => &x[(n - 1) * hidden..],
            Logits::All => &x,
        };
        let m = rows.len() / hidden;
        let mut normed = vec![0.0f32; rows.len()];
        rms_norm_rows(rows, &self.norm, s.rms_norm_eps, &mut normed);
        let mut logits = vec![0.0f32; m * s.vocab_size];
        kernels::matmul(&self.pool, &self.lm_head, &normed, m, &mut logits);
        Ok(logits)
    }

    /// cos/sin of every rotary frequency at positions `start..start + n`, `[n, rotary_dim / 2]`
    /// each; computed once per forward pass and shared by q, k and every layer.
    fn rope_table(&self, start: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for t in 0..n {
            // Angles in f32 like the reference (positions · inv_freq computed in float32).
            let pos = (start + t) as f32;
            for &f in &self.inv_freq {
                let a = pos * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        (cos, sin)
    }

    /// Rotates each head of `buf` (`[n, heads * head_dim]`) with the [`Self::rope_table`] rows,
    /// pairing element i with i + rotary_dim/2 (Hugging Face `rotate_half`).
    fn rope(&self, buf: &mut [f32], (cos, sin): (&[f32], &[f32]), heads: usize) {
        let d = self.spec.head_dim;
        let half = self.inv_freq.len();
        for (t, row) in buf.chunks_exact_mut(heads * d).enumerate() {
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

    /// Causal GQA attention of the `n` new queries (positions `start..start + n`) over the cache,
    /// split across the pool by (token, head).
    fn attention(&self, q: &[f32], cache: &KvCache, layer: usize, start: usize, out: &mut [f32]) {
        let s = &self.spec;
        let d = s.head_dim;
        let group = s.gqa_group();
        let scale = 1.0 / (d as f32).sqrt();
        par_chunks_mut(&self.pool, out, d, |idx, o| {
            let (t, head) = (idx / s.n_heads, idx % s.n_heads);
            let kv_head = head / group;
            let seen = start + t + 1;
            let qh = &q[(t * s.n_heads + head) * d..][..d];
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
