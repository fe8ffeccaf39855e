//! Conversions between tandem's f32 host data and the fp16 tensors of the QNN graphs, and between
//! the KV cache's layout ([`tandem_hal::KvCache`]) and the graphs' K/V inputs and outputs.
//!
//! Layouts (per layer; `P` = past slots = ctx − N):
//! - CPU cache: K and V `[n_kv_heads, capacity, head_dim]` f32; rows written token-major
//!   `[n, n_kv_heads * head_dim]`.
//! - graph `past_key_l` `[n_kv, head_dim, P]` (transposed, so q·K needs no transpose),
//!   `past_value_l` `[n_kv, P, head_dim]`; outputs `new_key_l` `[n_kv, head_dim, N]`,
//!   `new_value_l` `[n_kv, N, head_dim]`.
//!
//! The NPU→CPU handoff ([`KvLayout::write_keys`], [`KvLayout::write_values`]) converts the
//! outputs straight into a [`KvLayerMut`]: a value head is `[N, head_dim]` on both sides, so its
//! valid rows convert as one run; a key head is transposed through a small stack tile.

use half::f16;
use half::slice::HalfFloatSliceExt;
use tandem_hal::{KvCache, KvLayerMut};

/// fp16 elements per stack tile of the in-place conversions (2 KiB: stays in L1, and long
/// enough for `half`'s SIMD slice conversion to dominate).
const TILE: usize = 1024;

/// f32 → little-endian fp16 bytes (round to nearest even).
pub fn f32_to_f16_bytes(v: &[f32]) -> Vec<u8> {
    let mut h = vec![f16::ZERO; v.len()];
    h.convert_from_f32_slice(v);
    h.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian fp16 bytes → f32.
pub fn f16_bytes_to_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

/// Little-endian fp16 bytes → f32 into `dst` (`src.len() == 2 * dst.len()`), without a heap
/// buffer. The bytes are read as bytes (a `Vec<u8>` promises no 2-byte alignment to cast on)
/// into a stack tile that `half` converts with SIMD where the CPU has it.
pub fn f16_bytes_into_f32(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), 2 * dst.len(), "fp16 bytes vs f32 elements");
    let mut tile = [f16::ZERO; TILE];
    for (s, d) in src.chunks(2 * TILE).zip(dst.chunks_mut(TILE)) {
        let t = &mut tile[..d.len()];
        for (h, b) in t.iter_mut().zip(s.chunks_exact(2)) {
            *h = f16::from_le_bytes([b[0], b[1]]);
        }
        t.convert_to_f32_slice(d);
    }
}

/// i32 → little-endian bytes.
pub fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// u32 → little-endian bytes (op parameters such as `perm`, `axes`).
pub fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
pub fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// Geometry of the K/V graph I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Past slots (ctx − chunk).
    pub past: usize,
    /// Chunk size.
    pub chunk: usize,
}

impl KvLayout {
    /// `past_key_l` as fp16 bytes `[n_kv, head_dim, P]` from the first `cache.len()` positions of
    /// `layer`; slots past `cache.len()` are zero (the mask hides them).
    pub fn past_key_bytes(&self, cache: &KvCache, layer: usize) -> Vec<u8> {
        let (h, d, p) = (self.n_kv_heads, self.head_dim, self.past);
        let n = cache.len().min(p);
        let mut out = vec![0.0f32; h * d * p];
        for head in 0..h {
            let keys = cache.keys(layer, head, n);
            let dst = &mut out[head * d * p..][..d * p];
            for (t, row) in keys.chunks_exact(d).enumerate() {
                for (i, &x) in row.iter().enumerate() {
                    dst[i * p + t] = x;
                }
            }
        }
        f32_to_f16_bytes(&out)
    }

    /// `past_value_l` as fp16 bytes `[n_kv, P, head_dim]`.
    pub fn past_value_bytes(&self, cache: &KvCache, layer: usize) -> Vec<u8> {
        let (h, d, p) = (self.n_kv_heads, self.head_dim, self.past);
        let n = cache.len().min(p);
        let mut out = vec![0.0f32; h * d * p];
        for head in 0..h {
            let vals = cache.values(layer, head, n);
            out[head * d * p..][..n * d].copy_from_slice(vals);
        }
        f32_to_f16_bytes(&out)
    }

    /// `new_key_l` (fp16 `[n_kv, head_dim, N]`) → token-major f32 rows `[n, n_kv * head_dim]`
    /// for the first `n` (valid) positions.
    pub fn key_rows(&self, bytes: &[u8], n: usize) -> Vec<f32> {
        let (h, d, c) = (self.n_kv_heads, self.head_dim, self.chunk);
        let k = f16_bytes_to_f32(bytes);
        let mut rows = vec![0.0f32; n * h * d];
        for t in 0..n {
            for head in 0..h {
                for i in 0..d {
                    rows[t * h * d + head * d + i] = k[(head * d + i) * c + t];
                }
            }
        }
        rows
    }

    /// Bytes of one `new_key_l` or `new_value_l` output (`n_kv · head_dim · N` fp16).
    pub fn new_kv_bytes(&self) -> usize {
        self.n_kv_heads * self.head_dim * self.chunk * 2
    }

    /// Converts the first `n` positions of `new_key_l` (fp16 `[n_kv, head_dim, N]`) into `dst`'s
    /// keys at positions `start..start + n`. Panics if `bytes` is not [`Self::new_kv_bytes`] long
    /// or `dst` has another geometry or too little room (callers validate first).
    pub fn write_keys(&self, bytes: &[u8], n: usize, dst: &mut KvLayerMut<'_>, start: usize) {
        let (h, d, c) = (self.n_kv_heads, self.head_dim, self.chunk);
        self.check_dst(bytes, n, dst);
        // A tile is `[tn, dn]` of the cache's `[n, head_dim]`: whole rows (dn == d) when a row
        // fits, else part of one row (tn == 1), so it is always one contiguous run of `dst`.
        let dn = d.min(TILE);
        let tt = (TILE / d).max(1);
        let mut tile = [f16::ZERO; TILE];
        for head in 0..h {
            let src = &bytes[head * d * c * 2..][..d * c * 2];
            let keys = dst.keys_mut(head, start, n);
            for t0 in (0..n).step_by(tt) {
                let tn = tt.min(n - t0);
                for i0 in (0..d).step_by(dn) {
                    let dn = dn.min(d - i0);
                    let t = &mut tile[..tn * dn];
                    for i in 0..dn {
                        let row = &src[((i0 + i) * c + t0) * 2..][..tn * 2];
                        for (j, b) in row.chunks_exact(2).enumerate() {
                            t[j * dn + i] = f16::from_le_bytes([b[0], b[1]]);
                        }
                    }
                    t.convert_to_f32_slice(&mut keys[t0 * d + i0..][..tn * dn]);
                }
            }
        }
    }

    /// Converts the first `n` positions of `new_value_l` (fp16 `[n_kv, N, head_dim]`) into
    /// `dst`'s values at positions `start..start + n`; same preconditions as
    /// [`Self::write_keys`].
    pub fn write_values(&self, bytes: &[u8], n: usize, dst: &mut KvLayerMut<'_>, start: usize) {
        let (h, d, c) = (self.n_kv_heads, self.head_dim, self.chunk);
        self.check_dst(bytes, n, dst);
        for head in 0..h {
            let src = &bytes[head * c * d * 2..][..n * d * 2];
            f16_bytes_into_f32(src, dst.values_mut(head, start, n));
        }
    }

    fn check_dst(&self, bytes: &[u8], n: usize, dst: &KvLayerMut<'_>) {
        assert_eq!(bytes.len(), self.new_kv_bytes(), "K/V output size");
        assert!(
            n <= self.chunk,
            "{n} positions of a chunk of {}",
            self.chunk
        );
        assert_eq!(
            (dst.n_kv_heads(), dst.head_dim()),
            (self.n_kv_heads, self.head_dim),
            "KV cache geometry (heads, head_dim)"
        );
    }

    /// `new_value_l` (fp16 `[n_kv, N, head_dim]`) → token-major f32 rows `[n, n_kv * head_dim]`.
    pub fn value_rows(&self, bytes: &[u8], n: usize) -> Vec<f32> {
        let (h, d, c) = (self.n_kv_heads, self.head_dim, self.chunk);
        let v = f16_bytes_to_f32(bytes);
        let mut rows = vec![0.0f32; n * h * d];
        for t in 0..n {
            for head in 0..h {
                rows[t * h * d + head * d..][..d].copy_from_slice(&v[(head * c + t) * d..][..d]);
            }
        }
        rows
    }
}

/// `n` pseudo-random finite fp16 values (|x| < 2, no NaN or Inf) as little-endian bytes, from
/// `seed` (xorshift): synthetic graph outputs for tests and benches of the K/V conversions.
pub fn random_f16_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // The exponent's top bit clear: |x| < 2.
            ((x >> 16) as u16 & 0xbfff).to_le_bytes()
        })
        .collect()
}

/// Large negative additive mask value: representable in fp16 and, after the softmax scale,
/// far below any real score, so `exp` underflows to exactly 0.
pub const MASK_NEG: f32 = -20000.0;

/// The additive attention mask `[group * N, ctx]` for a chunk of `n_valid` tokens after
/// `past_len` cached positions: columns `0..P` are past slots (open when `< past_len`), columns
/// `P..P+N` the chunk itself (causal). Rows are `g * N + t` (GQA group-major, matching the
/// query layout `[n_kv, group * N, head_dim]`). Padding rows see their own causal prefix, so no
/// row is fully masked (no NaN), and no valid row sees a padding column.
pub fn attention_mask(group: usize, chunk: usize, ctx: usize, past_len: usize) -> Vec<f32> {
    let past = ctx - chunk;
    let mut one = vec![MASK_NEG; chunk * ctx];
    for t in 0..chunk {
        let row = &mut one[t * ctx..][..ctx];
        row[..past_len.min(past)].fill(0.0);
        row[past..past + t + 1].fill(0.0);
    }
    let mut out = Vec::with_capacity(group * one.len());
    for _ in 0..group {
        out.extend_from_slice(&one);
    }
    out
}

/// RoPE tables `[N, head_dim]` for positions `start..start + N`: `cos`, `sin` of
/// `pos · inv_freq[i mod d/2]` (both halves of a head share a frequency, as in `rotate_half`).
/// Angles in f32, as the CPU path and the Hugging Face reference compute them.
pub fn rope_tables(
    inv_freq: &[f32],
    head_dim: usize,
    start: usize,
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    let half = inv_freq.len();
    let mut cos = vec![1.0f32; n * head_dim];
    let mut sin = vec![0.0f32; n * head_dim];
    for t in 0..n {
        let pos = (start + t) as f32;
        for (i, &f) in inv_freq.iter().enumerate() {
            let a = pos * f;
            let (s, c) = a.sin_cos();
            for j in [i, i + half] {
                cos[t * head_dim + j] = c;
                sin[t * head_dim + j] = s;
            }
        }
    }
    (cos, sin)
}

/// The signed permutation `R` `[d, d]` with `x·R = rotate_half(x) = [-x₂, x₁]`.
pub fn rotate_half_matrix(d: usize) -> Vec<f32> {
    let h = d / 2;
    let mut r = vec![0.0f32; d * d];
    for i in 0..h {
        // output column i takes -x[i + h]; output column i + h takes x[i]
        r[(i + h) * d + i] = -1.0;
        r[i * d + i + h] = 1.0;
    }
    r
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn rotate_half_matrix_matches_definition() {
        let d = 8;
        let x: Vec<f32> = (0..d).map(|i| i as f32 + 1.0).collect();
        let r = rotate_half_matrix(d);
        let y: Vec<f32> = (0..d)
            .map(|j| (0..d).map(|i| x[i] * r[i * d + j]).sum())
            .collect();
        assert_eq!(y, vec![-5.0, -6.0, -7.0, -8.0, 1.0, 2.0, 3.0, 4.0]);
    }

    pub(crate) fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The in-place conversion and the row conversion + `KvCache::write` give the same cache,
    /// for a padded chunk at a non-zero start, a head_dim wider than one tile, and lengths that
    /// are not multiples of the tile.
    #[test]
    fn write_keys_values_match_rows_via_cache_write() {
        for (heads, d, chunk, n, start) in [
            (2, 64, 16, 11, 5),
            (3, 8, 300, 299, 1),
            (1, TILE + 40, 4, 3, 2),
        ] {
            let layout = KvLayout {
                n_kv_heads: heads,
                head_dim: d,
                past: 0,
                chunk,
            };
            let cap = start + chunk + 3;
            let k = random_f16_bytes(heads * d * chunk, 1 + d as u64);
            let v = random_f16_bytes(heads * d * chunk, 2 + d as u64);
            let mut want = KvCache::with_shape(2, heads, d, cap);
            want.write(1, start, &layout.key_rows(&k, n), &layout.value_rows(&v, n));
            let mut got = KvCache::with_shape(2, heads, d, cap);
            {
                let mut layer = got.layer_mut(1);
                layout.write_keys(&k, n, &mut layer, start);
                layout.write_values(&v, n, &mut layer, start);
            }
            want.advance(cap);
            got.advance(cap);
            for head in 0..heads {
                assert_eq!(bits(got.keys(1, head, cap)), bits(want.keys(1, head, cap)));
                assert_eq!(
                    bits(got.values(1, head, cap)),
                    bits(want.values(1, head, cap))
                );
                let pad = &got.keys(1, head, cap)[(start + n) * d..];
                assert!(pad.iter().all(|&x| x == 0.0), "padding written");
            }
        }
    }

    #[test]
    fn f16_bytes_into_f32_matches_f16_bytes_to_f32() {
        let b = random_f16_bytes(2 * TILE + 7, 9);
        let mut got = vec![0.0; b.len() / 2];
        f16_bytes_into_f32(&b, &mut got);
        assert_eq!(bits(&got), bits(&f16_bytes_to_f32(&b)));
    }

    #[test]
    fn mask_hides_unused_past_and_future() {
        let m = attention_mask(2, 4, 10, 3);
        // row t=1 of group 1: past 0..3 open, 3..6 closed, chunk cols 6,7 open, 8,9 closed
        let row = &m[(4 + 1) * 10..][..10];
        let open: Vec<bool> = row.iter().map(|&x| x == 0.0).collect();
        assert_eq!(
            open,
            [true, true, true, false, false, false, true, true, false, false]
        );
    }
}
