//! The KV cache every delegate reads and writes: per layer, K and V as
//! `[n_kv_heads, capacity, head_dim]` f32, so one head's past keys are contiguous for the CPU's
//! attention loop. `len` positions are valid.
//!
//! It is the canonical copy of a sequence's keys and values. The CPU decodes from it; a prefill
//! delegate reads the past positions from it and its chunk outputs are written into it
//! ([`crate::delegate::ChunkOutput::write_to`], or per layer through the disjoint views of
//! [`KvCache::layers_mut`]); positions become valid only through [`KvCache::advance`].

use crate::{Error, Result};

/// The geometry of a model's KV cache: what [`KvCache::new`] needs to know about the model.
/// `tandem_graphs` converts a `ModelSpec` into one (`KvCache::new(&spec, ctx)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShape {
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl KvShape {
    /// Bytes one position takes over all layers (K and V, f32).
    pub fn bytes_per_position(&self) -> Option<usize> {
        2usize
            .checked_mul(self.n_layers)?
            .checked_mul(self.n_kv_heads)?
            .checked_mul(self.head_dim)?
            .checked_mul(4)
    }
}

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
    /// An empty cache holding up to `capacity` positions of a model of this `shape` (a
    /// [`KvShape`], or anything that converts into one such as `&tandem_graphs::ModelSpec`).
    pub fn new(shape: impl Into<KvShape>, capacity: usize) -> KvCache {
        let s = shape.into();
        KvCache::with_shape(s.n_layers, s.n_kv_heads, s.head_dim, capacity)
    }

    /// The geometry of this cache.
    pub fn shape(&self) -> KvShape {
        KvShape {
            n_layers: self.n_layers(),
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
        }
    }

    /// An empty cache of the given geometry, for code that has no [`ModelSpec`] at hand (tools,
    /// tests, benches).
    pub fn with_shape(
        n_layers: usize,
        n_kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> KvCache {
        let per_layer = n_kv_heads * capacity * head_dim;
        KvCache {
            n_kv_heads,
            head_dim,
            capacity,
            len: 0,
            k: (0..n_layers).map(|_| vec![0.0; per_layer]).collect(),
            v: (0..n_layers).map(|_| vec![0.0; per_layer]).collect(),
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

    pub fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
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
        self.layer_mut(layer).write_rows(start, k_rows, v_rows);
    }

    /// A mutable view of one layer's K and V (all `capacity` positions).
    pub fn layer_mut(&mut self, layer: usize) -> KvLayerMut<'_> {
        KvLayerMut {
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            capacity: self.capacity,
            k: &mut self.k[layer],
            v: &mut self.v[layer],
        }
    }

    /// Disjoint mutable views of every layer, in layer order, so layers can be written from
    /// different threads. Writing through them does not change [`Self::len`]; call
    /// [`Self::advance`] once every layer holds the new positions.
    pub fn layers_mut(&mut self) -> Vec<KvLayerMut<'_>> {
        let (n_kv_heads, head_dim, capacity) = (self.n_kv_heads, self.head_dim, self.capacity);
        self.k
            .iter_mut()
            .zip(self.v.iter_mut())
            .map(|(k, v)| KvLayerMut {
                n_kv_heads,
                head_dim,
                capacity,
                k,
                v,
            })
            .collect()
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

/// One layer of a [`KvCache`], writable: K and V `[n_kv_heads, capacity, head_dim]` f32.
///
/// Obtained from [`KvCache::layers_mut`] or [`KvCache::layer_mut`]. Accessors panic on a head or
/// position out of range, like slice indexing.
#[derive(Debug)]
pub struct KvLayerMut<'a> {
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    k: &'a mut [f32],
    v: &'a mut [f32],
}

impl KvLayerMut<'_> {
    pub fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Writes token-major rows `k_rows`/`v_rows` (`[n, n_kv_heads * head_dim]`) at positions
    /// `start..start + n`.
    pub fn write_rows(&mut self, start: usize, k_rows: &[f32], v_rows: &[f32]) {
        let (heads, d) = (self.n_kv_heads, self.head_dim);
        let kv_dim = heads * d;
        let n = k_rows.len() / kv_dim;
        debug_assert!(start + n <= self.capacity);
        debug_assert_eq!(k_rows.len(), v_rows.len());
        for (t, (k_row, v_row)) in k_rows
            .chunks_exact(kv_dim)
            .zip(v_rows.chunks_exact(kv_dim))
            .enumerate()
        {
            for h in 0..heads {
                self.key_mut(h, start + t)
                    .copy_from_slice(&k_row[h * d..][..d]);
                self.value_mut(h, start + t)
                    .copy_from_slice(&v_row[h * d..][..d]);
            }
        }
    }

    /// The key slot of `head` at `pos`, `[head_dim]`.
    pub fn key_mut(&mut self, head: usize, pos: usize) -> &mut [f32] {
        self.keys_mut(head, pos, 1)
    }

    /// The value slot of `head` at `pos`, `[head_dim]`.
    pub fn value_mut(&mut self, head: usize, pos: usize) -> &mut [f32] {
        self.values_mut(head, pos, 1)
    }

    /// Keys of `head` at positions `start..start + n`, `[n, head_dim]` (contiguous).
    pub fn keys_mut(&mut self, head: usize, start: usize, n: usize) -> &mut [f32] {
        let at = self.span(head, start, n);
        &mut self.k[at]
    }

    /// Values of `head` at positions `start..start + n`, `[n, head_dim]` (contiguous).
    pub fn values_mut(&mut self, head: usize, start: usize, n: usize) -> &mut [f32] {
        let at = self.span(head, start, n);
        &mut self.v[at]
    }

    fn span(&self, head: usize, start: usize, n: usize) -> std::ops::Range<usize> {
        assert!(
            head < self.n_kv_heads && start + n <= self.capacity,
            "KV slot (head {head}, positions {start}..{}) outside {} heads × {} positions",
            start + n,
            self.n_kv_heads,
            self.capacity
        );
        let at = (head * self.capacity + start) * self.head_dim;
        at..at + n * self.head_dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, kv_dim: usize, seed: f32) -> Vec<f32> {
        (0..n * kv_dim).map(|i| seed + i as f32).collect()
    }

    #[test]
    fn layer_views_write_where_keys_and_values_read() {
        let (heads, d, cap) = (3, 4, 10);
        let mut cache = KvCache::with_shape(2, heads, d, cap);
        let (k, v) = (rows(5, heads * d, 0.5), rows(5, heads * d, 1000.5));
        {
            let mut layers = cache.layers_mut();
            assert_eq!(layers.len(), 2);
            let l1 = &mut layers[1];
            assert_eq!(
                (l1.n_kv_heads(), l1.head_dim(), l1.capacity()),
                (heads, d, cap)
            );
            l1.write_rows(2, &k, &v);
            l1.key_mut(2, 9).fill(-1.0);
            l1.value_mut(0, 0).fill(-2.0);
        }
        assert_eq!(cache.len(), 0, "views do not advance the cache");
        cache.advance(cap);
        for h in 0..heads {
            for t in 0..5 {
                let want_k = &k[t * heads * d + h * d..][..d];
                let want_v = &v[t * heads * d + h * d..][..d];
                assert_eq!(&cache.keys(1, h, cap)[(2 + t) * d..][..d], want_k);
                assert_eq!(&cache.values(1, h, cap)[(2 + t) * d..][..d], want_v);
            }
        }
        assert_eq!(&cache.keys(1, 2, cap)[9 * d..], &[-1.0; 4]);
        assert_eq!(cache.values(1, 0, 1), &[-2.0; 4]);
        assert!(
            cache.keys(0, 0, cap).iter().all(|&x| x == 0.0),
            "layer 0 untouched"
        );
    }

    #[test]
    fn write_delegates_to_the_layer_view() {
        let mut a = KvCache::with_shape(2, 2, 3, 6);
        let mut b = a.clone();
        let (k, v) = (rows(4, 6, 1.0), rows(4, 6, 50.0));
        a.write(1, 1, &k, &v);
        b.layer_mut(1).write_rows(1, &k, &v);
        a.advance(6);
        b.advance(6);
        for h in 0..2 {
            assert_eq!(a.keys(1, h, 6), b.keys(1, h, 6));
            assert_eq!(a.values(1, h, 6), b.values(1, h, 6));
        }
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn slot_past_capacity_panics() {
        let mut cache = KvCache::with_shape(1, 2, 4, 8);
        cache.layers_mut()[0].keys_mut(1, 6, 3);
    }
}
