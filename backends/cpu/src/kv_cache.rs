//! The CPU-side KV cache: per layer, K and V as `[n_kv_heads, capacity, head_dim]` f32, so one
//! head's past keys are contiguous for the attention loop. `len` positions are valid.

use tandem_graphs::ModelSpec;
use tandem_hal::{Error, Result};

/// K/V of every layer for positions `0..len` of one sequence.
#[derive(Clone, Debug)]
pub struct KvCache {
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    /// An empty cache holding up to `capacity` positions.
    pub fn new(spec: &ModelSpec, capacity: usize) -> KvCache {
        let per_layer = spec.n_kv_heads * capacity * spec.head_dim;
        KvCache {
            n_kv_heads: spec.n_kv_heads,
            head_dim: spec.head_dim,
            capacity,
            len: 0,
            k: (0..spec.n_layers).map(|_| vec![0.0; per_layer]).collect(),
            v: (0..spec.n_layers).map(|_| vec![0.0; per_layer]).collect(),
        }
    }

    /// Valid positions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn n_layers(&self) -> usize {
        self.k.len()
    }

    /// Forgets positions `n..` (e.g. to rewind a session); `n` must not exceed `len`.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Fails with [`Error::ContextOverflow`] if `extra` more positions do not fit.
    pub fn check_room(&self, extra: usize) -> Result<()> {
        let needed = self.len + extra;
        if needed > self.capacity {
            return Err(Error::ContextOverflow {
                needed,
                ctx: self.capacity,
            });
        }
        Ok(())
    }

    /// Bytes held by K and V of all layers (the full capacity).
    pub fn size_bytes(&self) -> usize {
        2 * self.k.len() * self.n_kv_heads * self.capacity * self.head_dim * 4
    }

    /// Writes token-major rows `k_rows`/`v_rows` (`[n, n_kv_heads * head_dim]`) of `layer` at
    /// positions `start..start + n`.
    pub fn write(&mut self, layer: usize, start: usize, k_rows: &[f32], v_rows: &[f32]) {
        let kv_dim = self.n_kv_heads * self.head_dim;
        let n = k_rows.len() / kv_dim;
        debug_assert!(start + n <= self.capacity);
        for (src, dst) in [(k_rows, &mut self.k[layer]), (v_rows, &mut self.v[layer])] {
            for t in 0..n {
                for h in 0..self.n_kv_heads {
                    let from = &src[t * kv_dim + h * self.head_dim..][..self.head_dim];
                    let at = (h * self.capacity + start + t) * self.head_dim;
                    dst[at..at + self.head_dim].copy_from_slice(from);
                }
            }
        }
    }

    /// Marks `n` more positions valid (after every layer was written).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.len <= self.capacity);
    }

    /// Keys of `head` in `layer` for positions `0..n`, `[n, head_dim]`.
    pub fn keys(&self, layer: usize, head: usize, n: usize) -> &[f32] {
        let at = head * self.capacity * self.head_dim;
        &self.k[layer][at..at + n * self.head_dim]
    }

    /// Values of `head` in `layer` for positions `0..n`, `[n, head_dim]`.
    pub fn values(&self, layer: usize, head: usize, n: usize) -> &[f32] {
        let at = head * self.capacity * self.head_dim;
        &self.v[layer][at..at + n * self.head_dim]
    }
}
