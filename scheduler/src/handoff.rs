//! The NPU→CPU KV handoff: after each delegate prefill chunk, the chunk's keys and values move
//! from the delegate's output buffers into the session's [`KvCache`], which decode then reads.
//!
//! Layout conversion is the delegate's ([`tandem_hal::ChunkKv::write_layer`]): it converts only
//! the `n_tokens` valid positions straight into the cache, with no intermediate rows. (QNN's
//! graphs return fp16 `new_key_l` `[n_kv, head_dim, N]` and `new_value_l` `[n_kv, N, head_dim]`;
//! see `tandem_qnn::conv`.)
//!
//! Threading. Layers are independent, so [`handoff`] splits them into contiguous groups over up
//! to `threads` threads of a [`std::thread::scope`] (the caller's thread takes the first group;
//! `threads == 1` runs inline), each writing through its own [`KvCache::layers_mut`] view. The
//! cache advances once, after every layer is written.
//!
//! The caller owns the trace span of the step (the engine's `handoff` span), so this module opens
//! none.

use std::time::Instant;

use tandem_hal::{ChunkOutput, Error, KvCache, KvLayerMut, Result};

/// What one chunk's handoff moved and how long it took.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct HandoffStats {
    /// Bytes of K and V read out of the delegate's outputs ([`ChunkOutput::kv_bytes`]).
    pub bytes: u64,
    pub layers: usize,
    /// Threads that wrote layers (including the caller's).
    pub threads: usize,
    /// Wall time of the conversion and the cache update, validation included.
    pub ms: f64,
}

/// Writes `out`'s K/V into `cache` at `out.start_pos` (== `cache.len()`, else error), layers
/// split across up to `threads` threads ([`std::thread::scope`]; 1 = inline on the caller; 0 is
/// taken as 1), then advances the cache by `out.n_tokens`.
///
/// Errors, all raised before anything is written (the cache is then unchanged):
/// [`Error::InvalidInput`] if the chunk does not start at `cache.len()` or its layers, heads or
/// head_dim differ from the cache's; [`Error::ContextOverflow`] if the cache has no room for
/// `out.n_tokens` more positions.
pub fn handoff(out: &ChunkOutput, cache: &mut KvCache, threads: usize) -> Result<HandoffStats> {
    let t0 = Instant::now();
    if out.start_pos != cache.len() {
        return Err(Error::InvalidInput(format!(
            "KV handoff: chunk starts at position {} but the CPU cache holds {}",
            out.start_pos,
            cache.len()
        )));
    }
    cache.check_room(out.n_tokens)?;
    out.check_cache(cache)?;

    let layers = out.n_layers();
    // Balanced contiguous groups: sizes differ by at most one layer.
    let groups = threads.clamp(1, layers.max(1));
    let mut views = cache.layers_mut();
    if groups == 1 {
        write_layers(out, 0, &mut views)?;
    } else {
        // (first layer, views) per group; the first `layers % groups` groups take one extra.
        let (base, extra) = (layers / groups, layers % groups);
        let (mut rest, mut at) = (views.as_mut_slice(), 0);
        let mut parts = Vec::with_capacity(groups);
        for g in 0..groups {
            let size = base + usize::from(g < extra);
            let (group, tail) = std::mem::take(&mut rest).split_at_mut(size);
            parts.push((at, group));
            (rest, at) = (tail, at + size);
        }
        std::thread::scope(|s| -> Result<()> {
            let mut parts = parts.into_iter();
            let mine = parts.next();
            let spawned: Vec<_> = parts
                .map(|(at, group)| s.spawn(move || write_layers(out, at, group)))
                .collect();
            let mine = mine.map_or(Ok(()), |(at, group)| write_layers(out, at, group));
            for h in spawned {
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            }
            mine
        })?;
    }
    drop(views);
    cache.advance(out.n_tokens);
    Ok(HandoffStats {
        bytes: out.kv_bytes() as u64,
        layers,
        threads: groups,
        ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

/// Writes layers `first..first + group.len()` of `out` into their views.
fn write_layers(out: &ChunkOutput, first: usize, group: &mut [KvLayerMut<'_>]) -> Result<()> {
    for (i, layer) in group.iter_mut().enumerate() {
        out.write_layer(first + i, layer)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use tandem_hal::{ChunkKv, ChunkTimings};

    const LAYERS: usize = 5;
    const CHUNK: usize = 8;

    /// The geometry of the chunks below.
    struct Layout {
        n_kv_heads: usize,
        head_dim: usize,
    }
    const LAYOUT: Layout = Layout {
        n_kv_heads: 2,
        head_dim: 16,
    };

    /// A delegate's chunk K/V as token-major fp16 rows `[CHUNK, n_kv_heads * head_dim]` per
    /// layer, padding included (the handoff is layout-agnostic; QNN's own layout is tested in
    /// `tandem-qnn`).
    struct RowsKv {
        k: Vec<Vec<f16>>,
        v: Vec<Vec<f16>>,
    }

    impl ChunkKv for RowsKv {
        fn n_layers(&self) -> usize {
            self.k.len()
        }
        fn n_kv_heads(&self) -> usize {
            LAYOUT.n_kv_heads
        }
        fn head_dim(&self) -> usize {
            LAYOUT.head_dim
        }
        fn bytes(&self, n: usize) -> usize {
            self.n_layers() * 2 * n * LAYOUT.n_kv_heads * LAYOUT.head_dim * 2
        }
        fn write_layer(&self, layer: usize, n: usize, dst: &mut KvLayerMut<'_>, at: usize) {
            dst.write_rows(at, &self.key_rows(layer, n), &self.value_rows(layer, n));
        }
        fn key_rows(&self, layer: usize, n: usize) -> Vec<f32> {
            let w = LAYOUT.n_kv_heads * LAYOUT.head_dim;
            self.k[layer][..n * w].iter().map(|x| x.to_f32()).collect()
        }
        fn value_rows(&self, layer: usize, n: usize) -> Vec<f32> {
            let w = LAYOUT.n_kv_heads * LAYOUT.head_dim;
            self.v[layer][..n * w].iter().map(|x| x.to_f32()).collect()
        }
    }

    /// 5 valid tokens of a chunk of 8 at `start`.
    fn chunk(start: usize) -> ChunkOutput {
        let elems = CHUNK * LAYOUT.n_kv_heads * LAYOUT.head_dim;
        let raw = |seed: usize| -> Vec<Vec<f16>> {
            (0..LAYERS)
                .map(|l| {
                    (0..elems)
                        .map(|i| f16::from_f32(((i * 7 + seed + l * 13) % 97) as f32 * 0.125 - 6.0))
                        .collect()
                })
                .collect()
        };
        ChunkOutput {
            start_pos: start,
            n_tokens: 5,
            chunk_size: CHUNK,
            logits: Vec::new(),
            timings: ChunkTimings::default(),
            profile: None,
            kv: Box::new(RowsKv {
                k: raw(1),
                v: raw(100),
            }),
        }
    }

    /// A cache of capacity `cap` holding `len` positions of recognizable data.
    fn cache(cap: usize, len: usize) -> KvCache {
        let mut c = KvCache::with_shape(LAYERS, LAYOUT.n_kv_heads, LAYOUT.head_dim, cap);
        let kv_dim = LAYOUT.n_kv_heads * LAYOUT.head_dim;
        let rows: Vec<f32> = (0..len * kv_dim).map(|i| i as f32 * 0.25 - 3.0).collect();
        for l in 0..LAYERS {
            c.write(l, 0, &rows, &rows);
        }
        c.advance(len);
        c
    }

    /// Every slot of every layer (all `capacity` positions), as bits.
    fn snapshot(c: &KvCache) -> Vec<u32> {
        let mut full = c.clone();
        full.truncate(0);
        full.advance(c.capacity());
        let mut out = Vec::new();
        for l in 0..LAYERS {
            for h in 0..LAYOUT.n_kv_heads {
                let (k, v) = (
                    full.keys(l, h, c.capacity()),
                    full.values(l, h, c.capacity()),
                );
                out.extend(k.iter().chain(v).map(|x| x.to_bits()));
            }
        }
        out
    }

    #[test]
    fn matches_write_to_for_any_thread_count() {
        let out = chunk(3);
        let mut want = cache(20, 3);
        out.write_to(&mut want).unwrap();
        for threads in [1, 2, 3, 8] {
            let mut got = cache(20, 3);
            let stats = handoff(&out, &mut got, threads).unwrap();
            assert_eq!(got.len(), 8, "threads {threads}");
            assert_eq!(snapshot(&got), snapshot(&want), "threads {threads}");
            assert_eq!(stats.bytes, (LAYERS * 2 * 5 * 2 * 16 * 2) as u64);
            assert_eq!(stats.layers, LAYERS);
            assert_eq!(stats.threads, threads.min(LAYERS));
        }
        // Padding positions 8..11 of the graph output were not copied.
        let mut padded = want.clone();
        padded.truncate(0);
        padded.advance(20);
        for l in 0..LAYERS {
            let d = LAYOUT.head_dim;
            assert!(padded.keys(l, 1, 20)[8 * d..].iter().all(|&x| x == 0.0));
            assert!(padded.values(l, 0, 20)[8 * d..].iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn wrong_start_is_an_error_and_leaves_the_cache() {
        let out = chunk(3);
        let mut c = cache(20, 4);
        let before = snapshot(&c);
        let e = handoff(&out, &mut c, 2).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidInput(m) if m.contains("starts at position 3")),
            "{e}"
        );
        assert_eq!((c.len(), snapshot(&c)), (4, before));
    }

    #[test]
    fn overflow_is_an_error_and_leaves_the_cache() {
        let out = chunk(3);
        let mut c = cache(7, 3);
        let before = snapshot(&c);
        let e = handoff(&out, &mut c, 3).unwrap_err();
        assert!(
            matches!(e, Error::ContextOverflow { needed: 8, ctx: 7 }),
            "{e}"
        );
        assert_eq!((c.len(), snapshot(&c)), (3, before));
    }

    #[test]
    fn other_geometry_is_an_error() {
        let out = chunk(0);
        let mut c = KvCache::with_shape(LAYERS, 1, LAYOUT.head_dim, 20);
        let e = handoff(&out, &mut c, 1).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidInput(m) if m.contains("heads")),
            "{e}"
        );
        assert_eq!(c.len(), 0);
    }
}
