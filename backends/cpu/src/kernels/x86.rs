//! x86_64 kernels for AVX2 + FMA + F16C. Every function here must only be called after those
//! three features were detected at run time ([`super::Isa::Avx2`]); the `*_vnni` ones also need
//! AVX-VNNI ([`super::Isa::Avx2Vnni`]). All loads are unaligned.
//!
//! Tiles compute `RB` weight rows against `NT` tokens so each loaded (and converted) weight vector
//! feeds `NT` FMAs; the int8 dot uses the `maddubs` trick (|w| as unsigned times x with w's sign),
//! or with VNNI `vpdpbusd` on weights offset to unsigned plus an exact per-lane correction. The
//! types with a minimum (Q4_1, Q5_1) are stored unsigned, so both instructions take them as they
//! are; their `m` term is one scalar multiply-add per block and token.

// Tile loops index several parallel register arrays by the same constant-bounded counter, which
// LLVM unrolls into registers; iterator chains over them would only obscure that.
#![allow(clippy::needless_range_loop)]

use std::arch::asm;
use std::arch::x86_64::*;

use tandem_hal::BlockQ8_0;

use super::scalar::{Q4_0_BYTES, Q4_1_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q8_0_BYTES};

const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

/// Horizontal sum of 8 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// The four little-endian f16 at `p` (any alignment) as f32 lanes: a block's scale, then the two
/// bytes after it (the minimum of a `_1` block). Written as assembly because LLVM narrows any
/// intrinsic form to a 16-bit insert into whichever register it has free, and when that register
/// is an accumulator every block waits for the one before it (a false dependency that made the
/// quantized matvecs up to 1.6× slower).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn f16x4(p: *const u8) -> __m128 {
    let v: __m128;
    // SAFETY: reads the 8 bytes at `p`, which lie inside one block (every block type is at least
    // 18 bytes and the callers pass a block's start); F16C is enabled for this function.
    asm!(
        "vcvtph2ps {v}, qword ptr [{p}]",
        p = in(reg) p,
        v = out(xmm_reg) v,
        options(pure, readonly, nostack, preserves_flags)
    );
    v
}

/// Scale of the block at `p` (little-endian f16, any alignment).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn block_scale(p: *const u8) -> f32 {
    _mm_cvtss_f32(f16x4(p))
}

/// Scale and minimum of a `_1` block at `p` (two little-endian f16, any alignment).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn scale_min(p: *const u8) -> (f32, f32) {
    let v = f16x4(p);
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// Scale of an activation block (read as in [`f16x4`]; its first six values follow it).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn act_scale(xb: &BlockQ8_0) -> f32 {
    block_scale((xb as *const BlockQ8_0).cast())
}

pub(super) const fn elem_bytes(dt: u8) -> usize {
    if dt == F32 {
        4
    } else {
        2
    }
}

/// Eight consecutive weights at `p`, widened to f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load8<const DT: u8>(p: *const u8) -> __m256 {
    match DT {
        F32 => _mm256_loadu_ps(p.cast()),
        F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
        _ => {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
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
/// AVX2, FMA and F16C must be available; each `w[i]` holds at least `x[0].len()` values and every
/// `x[j]` has the same length.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let mut acc = [[_mm256_setzero_ps(); NT]; RB];
    // A single pair has one dependency chain; give it a second so the FMA latency is hidden.
    let mut acc2 = _mm256_setzero_ps();
    let mut k = 0;
    if RB == 1 && NT == 1 {
        while k + 16 <= n {
            let w0 = load8::<DT>(w[0].as_ptr().add(k * eb));
            let w1 = load8::<DT>(w[0].as_ptr().add((k + 8) * eb));
            acc[0][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[0].as_ptr().add(k)), acc[0][0]);
            acc2 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[0].as_ptr().add(k + 8)), acc2);
            k += 16;
        }
    }
    while k + 8 <= n {
        let mut xv = [_mm256_setzero_ps(); NT];
        for j in 0..NT {
            xv[j] = _mm256_loadu_ps(x[j].as_ptr().add(k));
        }
        for i in 0..RB {
            let wv = load8::<DT>(w[i].as_ptr().add(k * eb));
            for j in 0..NT {
                acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
            }
        }
        k += 8;
    }
    if RB == 1 && NT == 1 {
        acc[0][0] = _mm256_add_ps(acc[0][0], acc2);
    }
    let mut out = [[0.0f32; NT]; RB];
    for i in 0..RB {
        for j in 0..NT {
            let mut s = hsum(acc[i][j]);
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
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_f32<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    plain_tile::<F32, RB, NT>(w, x)
}

/// # Safety
/// See [`plain_tile`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_f16<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    plain_tile::<F16, RB, NT>(w, x)
}

/// # Safety
/// See [`plain_tile`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_bf16<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    plain_tile::<BF16, RB, NT>(w, x)
}

// Quantized weight types, as const generic parameters.
pub(super) const Q8: u8 = 0;
pub(super) const Q4: u8 = 1;
pub(super) const Q4_1: u8 = 2;
pub(super) const Q5_0: u8 = 3;
pub(super) const Q5_1: u8 = 4;

/// Bytes per block of a `qt` weight row.
pub(super) const fn block_bytes(qt: u8) -> usize {
    match qt {
        Q8 => Q8_0_BYTES,
        Q4 => Q4_0_BYTES,
        Q4_1 => Q4_1_BYTES,
        Q5_0 => Q5_0_BYTES,
        _ => Q5_1_BYTES,
    }
}

/// Where a block's packed values start: after the scale, the minimum and the fifth bits.
pub(super) const fn qs_at(qt: u8) -> usize {
    match qt {
        Q8 | Q4 => 2,
        Q4_1 => 4,
        Q5_0 => 6,
        _ => 8,
    }
}

/// Where a Q5 block's 32 fifth bits (a little-endian u32) start.
pub(super) const fn qh_at(qt: u8) -> usize {
    if qt == Q5_0 {
        2
    } else {
        4
    }
}

pub(super) const fn is_q5(qt: u8) -> bool {
    qt == Q5_0 || qt == Q5_1
}

/// Whether a block carries a minimum `m` (f16 at bytes 2..4). Such weights are stored unsigned
/// (`x = d·q + m`, `q >= 0`), so the unsigned-by-signed byte dots take them as they are.
pub(super) const fn has_min(qt: u8) -> bool {
    qt == Q4_1 || qt == Q5_1
}

/// The fifth bits of the Q5 block at `p`, bit `j` for element `j`.
#[inline]
pub(super) unsafe fn fifth_bits<const QT: u8>(p: *const u8) -> u32 {
    u32::from_le_bytes(std::ptr::read_unaligned(p.add(qh_at(QT)).cast::<[u8; 4]>()))
}

/// `0x10` in byte `j` where bit `j` of `qh` is set, else 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn spread_fifth_bits(qh: u32) -> __m256i {
    // Each 128-bit lane holds qh's four bytes; bytes 0..8 take byte 0, 8..16 byte 1 (in the high
    // lane bytes 2 and 3), then each byte keeps its own bit.
    let v = _mm256_set1_epi32(qh as i32);
    let which = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, which), bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// The 32 weights of the block at `p` as unsigned bytes `w + OFFSET` (see [`weight_offset`]), in
/// element order: Q8_0 bytes with the sign bit flipped, the others' 4- or 5-bit values as stored.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_block_offset<const QT: u8>(p: *const u8) -> __m256i {
    if QT == Q8 {
        return _mm256_xor_si256(
            _mm256_loadu_si256(p.add(2).cast()),
            _mm256_set1_epi8(i8::MIN),
        );
    }
    // Low nibbles are elements 0..16, high nibbles 16..32.
    let b = _mm_loadu_si128(p.add(qs_at(QT)).cast());
    let m = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(b, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), m);
    let v = _mm256_set_m128i(hi, lo);
    if is_q5(QT) {
        _mm256_or_si256(v, spread_fifth_bits(fifth_bits::<QT>(p)))
    } else {
        v
    }
}

/// The offset [`load_block_offset`] adds to every weight of a `QT` block: the weights of the types
/// without a minimum are stored as `w + OFFSET`, those with one are stored unsigned.
pub(super) const fn weight_offset(qt: u8) -> i8 {
    match qt {
        Q8 => i8::MIN, // as an unsigned byte: 128
        Q4 => 8,
        Q5_0 => 16,
        _ => 0,
    }
}

/// The 32 weights of the block at `p` as signed bytes, in element order (the types without a
/// minimum; see [`load_block_offset`] for the others).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_block<const QT: u8>(p: *const u8) -> __m256i {
    if QT == Q8 {
        _mm256_loadu_si256(p.add(2).cast())
    } else {
        _mm256_sub_epi8(
            load_block_offset::<QT>(p),
            _mm256_set1_epi8(weight_offset(QT)),
        )
    }
}

/// Eight i32 partial sums of `w · x` over one block, as f32. `aw = |w|`. `maddubs` multiplies
/// unsigned by signed bytes, so the sign of `w` is moved onto `x`; pair sums stay below
/// 2·128·127 < 2^15 because activations are in [-127, 127].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_dot(w: __m256i, aw: __m256i, x: __m256i) -> __m256 {
    let sx = _mm256_sign_epi8(x, w);
    let p16 = _mm256_maddubs_epi16(aw, sx);
    let p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    _mm256_cvtepi32_ps(p32)
}

/// [`block_dot`] for weights that are already unsigned (at most 31, so pair sums stay below
/// 2·31·127 < 2^15).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_dot_unsigned(w: __m256i, x: __m256i) -> __m256 {
    let p16 = _mm256_maddubs_epi16(w, x);
    let p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    _mm256_cvtepi32_ps(p32)
}

/// `out[i][j] = w[i] · x[j]` for quantized weight rows (`QT`) and Q8_0 activations; for the types
/// with a minimum, `s[j]` holds each activation block's `d·Σq` and `m·s` is summed apart, in f32.
///
/// # Safety
/// AVX2, FMA and F16C must be available; each `w[i]` holds at least `x[0].len()` blocks, every
/// `x[j]` has the same number of blocks, and so does every `s[j]` when `QT` has a minimum.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quant_tile<const QT: u8, const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    let nb = if NT == 0 { 0 } else { x[0].len() };
    let bb = block_bytes(QT);
    for i in 0..RB {
        assert!(w[i].len() >= nb * bb, "weight row shorter than activations");
    }
    for j in 0..NT {
        assert_eq!(x[j].len(), nb, "token rows differ in length");
        assert!(!has_min(QT) || s[j].len() == nb, "activation sums missing");
    }
    let mut acc = [[_mm256_setzero_ps(); NT]; RB];
    let mut off = [[0.0f32; NT]; RB];
    for b in 0..nb {
        let mut wq = [_mm256_setzero_si256(); RB];
        let mut aw = [_mm256_setzero_si256(); RB];
        let mut dw = [0.0f32; RB];
        let mut mw = [0.0f32; RB];
        for i in 0..RB {
            let p = w[i].as_ptr().add(b * bb);
            if has_min(QT) {
                wq[i] = load_block_offset::<QT>(p);
                (dw[i], mw[i]) = scale_min(p);
            } else {
                wq[i] = load_block::<QT>(p);
                aw[i] = _mm256_sign_epi8(wq[i], wq[i]);
                dw[i] = block_scale(p);
            }
        }
        for j in 0..NT {
            let xb = &x[j][b];
            let xq = _mm256_loadu_si256(xb.qs.as_ptr().cast());
            let dx = act_scale(xb);
            for i in 0..RB {
                let d = if has_min(QT) {
                    off[i][j] += mw[i] * s[j][b];
                    block_dot_unsigned(wq[i], xq)
                } else {
                    block_dot(wq[i], aw[i], xq)
                };
                acc[i][j] = _mm256_fmadd_ps(d, _mm256_set1_ps(dw[i] * dx), acc[i][j]);
            }
        }
    }
    let mut out = [[0.0f32; NT]; RB];
    for i in 0..RB {
        for j in 0..NT {
            out[i][j] = hsum(acc[i][j]) + off[i][j];
        }
    }
    out
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_q8_0<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q8, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_q4_0<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q4, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_q4_1<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q4_1, RB, NT>(w, x, s)
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_q5_0<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q5_0, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_q5_1<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q5_1, RB, NT>(w, x, s)
}

/// `vpdpbusd` on 256 bits: the AVX-VNNI (VEX) encoding, or with `EVEX` the AVX-512 one.
#[inline(always)]
unsafe fn dpbusd<const EVEX: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    if EVEX {
        _mm256_dpbusd_epi32(acc, a, b)
    } else {
        _mm256_dpbusd_avx_epi32(acc, a, b)
    }
}

/// [`quant_tile`] with AVX-VNNI: `vpdpbusd` multiplies unsigned by signed bytes and adds groups of
/// four straight into i32 lanes (no i16 intermediate, so nothing can saturate). The weights enter
/// as `w + OFFSET >= 0` (see [`load_block_offset`]); each lane starts from `-OFFSET * (sum of its
/// four x)`, computed once per token and block, so every lane ends exactly at `sum w * x`. The
/// types with a minimum are stored unsigned and need no correction.
///
/// `EVEX` picks the AVX-512 VNNI+VL encoding of the same 256-bit instruction, for
/// [`super::Isa::Avx512`]'s decode, where it beats the 512-bit two-block kernel.
///
/// # Safety
/// AVX2, FMA and F16C must be available, and AVX-VNNI (or with `EVEX`, AVX-512 VNNI and VL);
/// lengths as for [`quant_tile`]. Only called from functions that enable those features.
#[inline(always)]
pub(super) unsafe fn quant_tile_dpbusd<
    const QT: u8,
    const EVEX: bool,
    const RB: usize,
    const NT: usize,
>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    let nb = if NT == 0 { 0 } else { x[0].len() };
    let bb = block_bytes(QT);
    for i in 0..RB {
        assert!(w[i].len() >= nb * bb, "weight row shorter than activations");
    }
    for j in 0..NT {
        assert_eq!(x[j].len(), nb, "token rows differ in length");
        assert!(!has_min(QT) || s[j].len() == nb, "activation sums missing");
    }
    let offset = _mm256_set1_epi8(weight_offset(QT));
    let zero = _mm256_setzero_si256();
    let mut acc = [[_mm256_setzero_ps(); NT]; RB];
    let mut off = [[0.0f32; NT]; RB];
    for b in 0..nb {
        let mut wu = [zero; RB];
        let mut dw = [0.0f32; RB];
        let mut mw = [0.0f32; RB];
        for i in 0..RB {
            let p = w[i].as_ptr().add(b * bb);
            wu[i] = load_block_offset::<QT>(p);
            if has_min(QT) {
                (dw[i], mw[i]) = scale_min(p);
            } else {
                dw[i] = block_scale(p);
            }
        }
        for j in 0..NT {
            let xb = &x[j][b];
            let xq = _mm256_loadu_si256(xb.qs.as_ptr().cast());
            let dx = act_scale(xb);
            let start = if has_min(QT) {
                zero
            } else {
                _mm256_sub_epi32(zero, dpbusd::<EVEX>(zero, offset, xq))
            };
            for i in 0..RB {
                if has_min(QT) {
                    off[i][j] += mw[i] * s[j][b];
                }
                let d = _mm256_cvtepi32_ps(dpbusd::<EVEX>(start, wu[i], xq));
                acc[i][j] = _mm256_fmadd_ps(d, _mm256_set1_ps(dw[i] * dx), acc[i][j]);
            }
        }
    }
    let mut out = [[0.0f32; NT]; RB];
    for i in 0..RB {
        for j in 0..NT {
            out[i][j] = hsum(acc[i][j]) + off[i][j];
        }
    }
    out
}

/// # Safety
/// See [`quant_tile_dpbusd`].
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) unsafe fn tile_q8_0_vnni<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile_dpbusd::<Q8, false, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile_dpbusd`].
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) unsafe fn tile_q4_0_vnni<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile_dpbusd::<Q4, false, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile_dpbusd`].
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) unsafe fn tile_q4_1_vnni<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile_dpbusd::<Q4_1, false, RB, NT>(w, x, s)
}

/// # Safety
/// See [`quant_tile_dpbusd`].
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) unsafe fn tile_q5_0_vnni<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile_dpbusd::<Q5_0, false, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile_dpbusd`].
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) unsafe fn tile_q5_1_vnni<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile_dpbusd::<Q5_1, false, RB, NT>(w, x, s)
}

/// `sum a[i] * b[i]` with four independent accumulators.
///
/// # Safety
/// AVX2 and FMA must be available; `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut k = 0;
    while k + 32 <= n {
        for (u, acc) in acc.iter_mut().enumerate() {
            let o = k + 8 * u;
            *acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o)), *acc);
        }
        k += 32;
    }
    while k + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(k)),
            _mm256_loadu_ps(pb.add(k)),
            acc[0],
        );
        k += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum(s);
    for kk in k..n {
        s += a[kk] * b[kk];
    }
    s
}

/// `y += alpha * x`.
///
/// # Safety
/// AVX2 and FMA must be available; `x.len() == y.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let a = _mm256_set1_ps(alpha);
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    let mut k = 0;
    while k + 8 <= n {
        let v = _mm256_fmadd_ps(a, _mm256_loadu_ps(px.add(k)), _mm256_loadu_ps(py.add(k)));
        _mm256_storeu_ps(py.add(k), v);
        k += 8;
    }
    for kk in k..n {
        y[kk] += alpha * x[kk];
    }
}
