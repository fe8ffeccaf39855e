//! x86_64 kernels for AVX-512 (F, BW, VL, VNNI) on 512-bit registers. Every function here must only
//! be called after those features, and AVX2+FMA+F16C, were detected at run time
//! ([`super::Isa::Avx512`]). All loads are unaligned.
//!
//! Same tiles as [`super::x86`], twice as wide: 16 f32 lanes per FMA for plain weights, and two
//! quantized blocks per register for the int8 dot, which uses `vpdpbusd` with offset weights (see
//! [`super::x86::weight_offset`]) so every i32 lane is exact. AVX-512 BW turns a Q5 block's 32
//! fifth bits straight into a byte mask, and the `_1` types' `m·Σx` term is spread over the lanes
//! of its block. Quantized decode (one token) takes the 256-bit one-block kernel of [`super::x86`]
//! in its AVX-512 encoding instead: the pairing shuffles cost more than they save there.

// Tile loops index several parallel register arrays by the same constant-bounded counter, which
// LLVM unrolls into registers; iterator chains over them would only obscure that.
#![allow(clippy::needless_range_loop)]

use std::arch::asm;
use std::arch::x86_64::*;

use tandem_hal::BlockQ8_0;

use super::scalar::Q8_0_BYTES;
use super::x86::{
    act_scale, block_bytes, block_scale, elem_bytes, fifth_bits, has_min, is_q5, qs_at,
    quant_tile_dpbusd, scale_min, weight_offset, Q4, Q4_1, Q5_0, Q5_1, Q8,
};

const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

/// Sixteen consecutive weights at `p`, widened to f32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn load16<const DT: u8>(p: *const u8) -> __m512 {
    match DT {
        F32 => _mm512_loadu_ps(p.cast()),
        F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())),
        _ => {
            let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h))
        }
    }
}

/// One weight, widened to f32 (loop tails).
#[inline]
fn load1<const DT: u8>(w: &[u8], k: usize) -> f32 {
    match DT {
        F32 => f32::from_le_bytes([w[4 * k], w[4 * k + 1], w[4 * k + 2], w[4 * k + 3]]),
        F16 => half::f16::from_le_bytes([w[2 * k], w[2 * k + 1]]).to_f32(),
        _ => half::bf16::from_le_bytes([w[2 * k], w[2 * k + 1]]).to_f32(),
    }
}

/// `out[i][j] = w[i] · x[j]` for a plain-typed weight row (`DT`) and f32 activations.
///
/// # Safety
/// The features of this module must be available; each `w[i]` holds at least `x[0].len()` values
/// and every `x[j]` has the same length.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn plain_tile<const DT: u8, const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    let n = if NT == 0 { 0 } else { x[0].len() };
    let eb = elem_bytes(DT);
    for i in 0..RB {
        assert!(w[i].len() >= n * eb, "weight row shorter than activations");
    }
    for j in 0..NT {
        assert_eq!(x[j].len(), n, "token rows differ in length");
    }
    let mut acc = [[_mm512_setzero_ps(); NT]; RB];
    // A single pair has one dependency chain; give it a second so the FMA latency is hidden.
    let mut acc2 = _mm512_setzero_ps();
    let mut k = 0;
    if RB == 1 && NT == 1 {
        while k + 32 <= n {
            let w0 = load16::<DT>(w[0].as_ptr().add(k * eb));
            let w1 = load16::<DT>(w[0].as_ptr().add((k + 16) * eb));
            acc[0][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[0].as_ptr().add(k)), acc[0][0]);
            acc2 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[0].as_ptr().add(k + 16)), acc2);
            k += 32;
        }
    }
    while k + 16 <= n {
        let mut xv = [_mm512_setzero_ps(); NT];
        for j in 0..NT {
            xv[j] = _mm512_loadu_ps(x[j].as_ptr().add(k));
        }
        for i in 0..RB {
            let wv = load16::<DT>(w[i].as_ptr().add(k * eb));
            for j in 0..NT {
                acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);
            }
        }
        k += 16;
    }
    if RB == 1 && NT == 1 {
        acc[0][0] = _mm512_add_ps(acc[0][0], acc2);
    }
    let mut out = [[0.0f32; NT]; RB];
    for i in 0..RB {
        for j in 0..NT {
            let mut s = _mm512_reduce_add_ps(acc[i][j]);
            for kk in k..n {
                s += load1::<DT>(w[i], kk) * x[j][kk];
            }
            out[i][j] = s;
        }
    }
    out
}

/// # Safety
/// See [`plain_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn tile_f32<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    plain_tile::<F32, RB, NT>(w, x)
}

/// # Safety
/// See [`plain_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn tile_f16<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    plain_tile::<F16, RB, NT>(w, x)
}

/// # Safety
/// See [`plain_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn tile_bf16<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    plain_tile::<BF16, RB, NT>(w, x)
}

/// The 32 weights of the block at `p` as unsigned bytes `w + OFFSET` (see
/// [`super::x86::weight_offset`]), in element order.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn load_block<const QT: u8>(p: *const u8) -> __m256i {
    if QT == Q8 {
        return _mm256_xor_si256(
            _mm256_loadu_si256(p.add(2).cast()),
            _mm256_set1_epi8(i8::MIN),
        );
    }
    let b = _mm_loadu_si128(p.add(qs_at(QT)).cast());
    let m = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(b, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), m);
    let v = _mm256_set_m128i(hi, lo);
    if is_q5(QT) {
        let h = _mm256_maskz_mov_epi8(fifth_bits::<QT>(p), _mm256_set1_epi8(0x10));
        _mm256_or_si256(v, h)
    } else {
        v
    }
}

/// Blocks `p` and `p + bb` (consecutive in a row) as one register of offset weights: block 0 in the
/// low 256 bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn load_block_pair<const QT: u8>(p: *const u8) -> __m512i {
    if QT == Q8 {
        let lo = _mm256_loadu_si256(p.add(2).cast());
        let hi = _mm256_loadu_si256(p.add(2 + Q8_0_BYTES).cast());
        let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        _mm512_xor_si512(v, _mm512_set1_epi8(i8::MIN))
    } else {
        // [nibbles of block 0 | nibbles of block 1] → [lo0, lo1, hi0, hi1] → [lo0, hi0, lo1, hi1].
        let (qs, bb) = (qs_at(QT), block_bytes(QT));
        let b = _mm256_loadu2_m128i(p.add(bb + qs).cast(), p.add(qs).cast());
        let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(b), _mm256_srli_epi16::<4>(b));
        let v = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
        let v = _mm512_shuffle_i64x2::<0b11_01_10_00>(v, v);
        if is_q5(QT) {
            // Byte k is element k of block 0, then element k - 32 of block 1.
            let k = u64::from(fifth_bits::<QT>(p)) | u64::from(fifth_bits::<QT>(p.add(bb))) << 32;
            _mm512_or_si512(v, _mm512_maskz_mov_epi8(k, _mm512_set1_epi8(0x10)))
        } else {
            v
        }
    }
}

/// The 64 activations of blocks `b` and `b + 1`, block `b` in the low 256 bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn load_act_pair(x: &[BlockQ8_0], b: usize) -> __m512i {
    let lo = _mm256_loadu_si256(x[b].qs.as_ptr().cast());
    let hi = _mm256_loadu_si256(x[b + 1].qs.as_ptr().cast());
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// The first two f16 at `p` and at `q` (a block's scale, then its minimum or first values) as f32
/// lanes `[p0, p1, q0, q1]`. Assembly for the reason given at [`super::x86`]'s `f16x4`; one
/// conversion for both blocks also spares shuffles, which bound these kernels.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn f16_pairs(p: *const u8, q: *const u8) -> __m128 {
    let v: __m128;
    // SAFETY: reads 4 bytes at `p` and at `q`, each inside a block (blocks are at least 18 bytes
    // and the callers pass block starts); AVX and F16C are enabled for this function.
    asm!(
        "vmovd {v}, dword ptr [{p}]",
        "vpinsrd {v}, {v}, dword ptr [{q}], 1",
        "vcvtph2ps {v}, {v}",
        p = in(reg) p,
        q = in(reg) q,
        v = out(xmm_reg) v,
        options(pure, readonly, nostack, preserves_flags)
    );
    v
}

/// Sixteen lanes: `v[A]` in the low eight (block 0), `v[B]` in the high eight (block 1).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn halves<const A: i32, const B: i32>(v: __m128) -> __m512 {
    let idx = _mm512_set_epi32(B, B, B, B, B, B, B, B, A, A, A, A, A, A, A, A);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v))
}

/// `out[i][j] = w[i] · x[j]` for quantized weight rows (`QT`) and Q8_0 activations, two blocks per
/// step. Each i32 lane starts at `-OFFSET * (sum of its four x)` so that `vpdpbusd` over the offset
/// (unsigned) weights ends exactly at `sum w * x`; nothing saturates (|lane| < 4·255·128). For the
/// types with a minimum (stored unsigned, no correction) `s[j]` holds each activation block's
/// `d·Σq`, and `m·s` enters the accumulators as an extra product, an eighth in each of the block's
/// eight lanes. One token goes to [`quant_tile_dpbusd`].
///
/// # Safety
/// The features of this module must be available; each `w[i]` holds at least `x[0].len()` blocks,
/// every `x[j]` has the same number of blocks, and so does every `s[j]` when `QT` has a minimum.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn quant_tile<const QT: u8, const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    if NT == 1 {
        // Decode: one block per step on 256 bits measured faster (fewer shuffles per block).
        return quant_tile_dpbusd::<QT, true, RB, NT>(w, x, s);
    }
    let nb = if NT == 0 { 0 } else { x[0].len() };
    let bb = block_bytes(QT);
    for i in 0..RB {
        assert!(w[i].len() >= nb * bb, "weight row shorter than activations");
    }
    for j in 0..NT {
        assert_eq!(x[j].len(), nb, "token rows differ in length");
        assert!(!has_min(QT) || s[j].len() == nb, "activation sums missing");
    }
    let offset = _mm512_set1_epi8(weight_offset(QT));
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); NT]; RB];
    let mut off = [[0.0f32; NT]; RB];
    let mut b = 0;
    while b + 2 <= nb {
        let mut wu = [zero; RB];
        let mut dw = [_mm512_setzero_ps(); RB];
        let mut mw = [_mm512_setzero_ps(); RB];
        for i in 0..RB {
            let p = w[i].as_ptr().add(b * bb);
            wu[i] = load_block_pair::<QT>(p);
            let v = f16_pairs(p, p.add(bb));
            dw[i] = halves::<0, 2>(v);
            if has_min(QT) {
                mw[i] = halves::<1, 3>(v);
            }
        }
        for j in 0..NT {
            let xq = load_act_pair(x[j], b);
            let dx = halves::<0, 2>(f16_pairs(
                (&x[j][b] as *const BlockQ8_0).cast(),
                (&x[j][b + 1] as *const BlockQ8_0).cast(),
            ));
            let start = if has_min(QT) {
                zero
            } else {
                _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, offset, xq))
            };
            // `m·s` spread over the eight lanes of its block: an eighth in each (exact).
            let s8 = if has_min(QT) {
                let pair = _mm_castpd_ps(_mm_load_sd(s[j][b..b + 2].as_ptr().cast()));
                _mm512_mul_ps(halves::<0, 1>(pair), _mm512_set1_ps(0.125))
            } else {
                _mm512_setzero_ps()
            };
            for i in 0..RB {
                let d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start, wu[i], xq));
                acc[i][j] = _mm512_fmadd_ps(d, _mm512_mul_ps(dw[i], dx), acc[i][j]);
                if has_min(QT) {
                    acc[i][j] = _mm512_fmadd_ps(mw[i], s8, acc[i][j]);
                }
            }
        }
        b += 2;
    }
    let mut out = [[0.0f32; NT]; RB];
    for i in 0..RB {
        for j in 0..NT {
            out[i][j] = _mm512_reduce_add_ps(acc[i][j]);
        }
    }
    if b < nb {
        // An odd last block: the same on 256 bits.
        let offset = _mm256_set1_epi8(weight_offset(QT));
        let zero = _mm256_setzero_si256();
        for j in 0..NT {
            let xb = &x[j][b];
            let xq = _mm256_loadu_si256(xb.qs.as_ptr().cast());
            let dx = act_scale(xb);
            let start = if has_min(QT) {
                zero
            } else {
                _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, offset, xq))
            };
            for i in 0..RB {
                let p = w[i].as_ptr().add(b * bb);
                let d = _mm256_dpbusd_epi32(start, load_block::<QT>(p), xq);
                let d = hsum_i32(d) as f32;
                if has_min(QT) {
                    let (dw, mw) = scale_min(p);
                    out[i][j] += d * (dw * dx);
                    off[i][j] += mw * s[j][b];
                } else {
                    out[i][j] += d * (block_scale(p) * dx);
                }
            }
        }
    }
    for i in 0..RB {
        for j in 0..NT {
            out[i][j] += off[i][j];
        }
    }
    out
}

/// Exact horizontal sum of eight i32 lanes (each |lane| < 2^17, so no overflow).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn tile_q8_0<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q8, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn tile_q4_0<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q4, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn tile_q4_1<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q4_1, RB, NT>(w, x, s)
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn tile_q5_0<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q5_0, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn tile_q5_1<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q5_1, RB, NT>(w, x, s)
}
