//! aarch64 NEON kernels. NEON is part of the aarch64 baseline; the `*_dot` variants additionally
//! need the ARMv8.2 `dotprod` extension ([`super::Isa::NeonDotprod`]) and fall back to
//! widening multiplies (`smull` + `sadalp`) otherwise. All loads are byte loads (any alignment).
//!
//! `fcvtl` (f16→f32) and `sdot` are emitted with inline assembly: their intrinsics are newer than
//! the workspace's minimum Rust version.

// Tile loops index several parallel register arrays by the same constant-bounded counter, which
// LLVM unrolls into registers; iterator chains over them would only obscure that.
#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;
use std::arch::asm;

use tandem_hal::BlockQ8_0;

use super::scalar::{Q4_0_BYTES, Q4_1_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q8_0_BYTES};

const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

const fn elem_bytes(dt: u8) -> usize {
    if dt == F32 {
        4
    } else {
        2
    }
}

/// f16 bits to f32 (scalar; block scales).
#[inline]
fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Eight consecutive weights at `p` widened to f32, as (elements 0..4, elements 4..8).
#[inline]
unsafe fn load8<const DT: u8>(p: *const u8) -> (float32x4_t, float32x4_t) {
    match DT {
        F32 => (
            vreinterpretq_f32_u8(vld1q_u8(p)),
            vreinterpretq_f32_u8(vld1q_u8(p.add(16))),
        ),
        F16 => {
            let h = vld1q_u8(p);
            let (lo, hi): (float32x4_t, float32x4_t);
            // SAFETY: `fcvtl`/`fcvtl2` are base ARMv8 SIMD instructions operating on registers
            // only (no memory, no flags).
            asm!(
                "fcvtl {lo:v}.4s, {h:v}.4h",
                "fcvtl2 {hi:v}.4s, {h:v}.8h",
                h = in(vreg) h,
                lo = out(vreg) lo,
                hi = out(vreg) hi,
                options(pure, nomem, nostack, preserves_flags)
            );
            (lo, hi)
        }
        _ => {
            let h = vreinterpretq_u16_u8(vld1q_u8(p));
            (
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
            )
        }
    }
}

#[inline]
fn load1<const DT: u8>(w: &[u8], k: usize) -> f32 {
    match DT {
        F32 => f32::from_le_bytes([w[4 * k], w[4 * k + 1], w[4 * k + 2], w[4 * k + 3]]),
        F16 => half::f16::from_le_bytes([w[2 * k], w[2 * k + 1]]).to_f32(),
        _ => half::bf16::from_le_bytes([w[2 * k], w[2 * k + 1]]).to_f32(),
    }
}

#[inline]
unsafe fn load_f32x4(p: *const f32) -> float32x4_t {
    vreinterpretq_f32_u8(vld1q_u8(p.cast()))
}

/// `out[i][j] = w[i] · x[j]` for plain-typed weight rows and f32 activations.
///
/// # Safety
/// Each `w[i]` holds at least `x[0].len()` values and every `x[j]` has the same length
/// (asserted).
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
    let z = vdupq_n_f32(0.0);
    let mut lo = [[z; NT]; RB];
    let mut hi = [[z; NT]; RB];
    let mut k = 0;
    while k + 8 <= n {
        let mut xl = [z; NT];
        let mut xh = [z; NT];
        for j in 0..NT {
            xl[j] = load_f32x4(x[j].as_ptr().add(k));
            xh[j] = load_f32x4(x[j].as_ptr().add(k + 4));
        }
        for i in 0..RB {
            let (wl, wh) = load8::<DT>(w[i].as_ptr().add(k * eb));
            for j in 0..NT {
                lo[i][j] = vfmaq_f32(lo[i][j], wl, xl[j]);
                hi[i][j] = vfmaq_f32(hi[i][j], wh, xh[j]);
            }
        }
        k += 8;
    }
    let mut out = [[0.0f32; NT]; RB];
    for i in 0..RB {
        for j in 0..NT {
            let mut s = vaddvq_f32(vaddq_f32(lo[i][j], hi[i][j]));
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
pub(super) unsafe fn tile_f32<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    plain_tile::<F32, RB, NT>(w, x)
}

/// # Safety
/// See [`plain_tile`].
pub(super) unsafe fn tile_f16<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    plain_tile::<F16, RB, NT>(w, x)
}

/// # Safety
/// See [`plain_tile`].
pub(super) unsafe fn tile_bf16<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    plain_tile::<BF16, RB, NT>(w, x)
}

// Quantized weight types, as const generic parameters.
const Q8: u8 = 0;
const Q4: u8 = 1;
const Q4_1: u8 = 2;
const Q5_0: u8 = 3;
const Q5_1: u8 = 4;

const fn block_bytes(qt: u8) -> usize {
    match qt {
        Q8 => Q8_0_BYTES,
        Q4 => Q4_0_BYTES,
        Q4_1 => Q4_1_BYTES,
        Q5_0 => Q5_0_BYTES,
        _ => Q5_1_BYTES,
    }
}

/// Where a block's packed values start: after the scale, the minimum and the fifth bits.
const fn qs_at(qt: u8) -> usize {
    match qt {
        Q8 | Q4 => 2,
        Q4_1 => 4,
        Q5_0 => 6,
        _ => 8,
    }
}

/// Whether a block carries a minimum `m` (f16 at bytes 2..4).
const fn has_min(qt: u8) -> bool {
    qt == Q4_1 || qt == Q5_1
}

/// `0x10` in byte `j` of (elements 0..16, 16..32) where fifth bit `j` of the Q5 block whose four
/// `qh` bytes are at `p` is set.
#[inline]
unsafe fn fifth_bits(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    // Bytes 0..8 of a half take one qh byte, 8..16 the next; each byte then tests its own bit.
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let ten = vdupq_n_u8(0x10);
    let lo = vcombine_u8(vdup_n_u8(*p), vdup_n_u8(*p.add(1)));
    let hi = vcombine_u8(vdup_n_u8(*p.add(2)), vdup_n_u8(*p.add(3)));
    (
        vandq_u8(vtstq_u8(lo, bit), ten),
        vandq_u8(vtstq_u8(hi, bit), ten),
    )
}

/// The 32 weights of the block at `p` as signed bytes (elements 0..16, 16..32): Q8_0 as stored,
/// Q4_0 / Q5_0 minus their offset 8 / 16, Q4_1 / Q5_1 as stored (0..=15 / 0..=31).
#[inline]
unsafe fn load_block<const QT: u8>(p: *const u8) -> (int8x16_t, int8x16_t) {
    if QT == Q8 {
        return (
            vreinterpretq_s8_u8(vld1q_u8(p.add(2))),
            vreinterpretq_s8_u8(vld1q_u8(p.add(18))),
        );
    }
    // Low nibbles are elements 0..16, high nibbles 16..32.
    let b = vld1q_u8(p.add(qs_at(QT)));
    let (mut lo, mut hi) = (vandq_u8(b, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(b));
    if QT == Q5_0 || QT == Q5_1 {
        let qh_at = if QT == Q5_0 { 2 } else { 4 };
        let (h0, h1) = fifth_bits(p.add(qh_at));
        lo = vorrq_u8(lo, h0);
        hi = vorrq_u8(hi, h1);
    }
    let (lo, hi) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
    let bias = match QT {
        Q4 => 8,
        Q5_0 => 16,
        _ => return (lo, hi),
    };
    let bias = vdupq_n_s8(bias);
    (vsubq_s8(lo, bias), vsubq_s8(hi, bias))
}

#[inline]
unsafe fn load_act(xb: &BlockQ8_0) -> (int8x16_t, int8x16_t) {
    let p = xb.qs.as_ptr().cast::<u8>();
    (
        vreinterpretq_s8_u8(vld1q_u8(p)),
        vreinterpretq_s8_u8(vld1q_u8(p.add(16))),
    )
}

/// Four i32 partial sums of a 32-element block dot, with `sdot`.
#[target_feature(enable = "dotprod")]
#[inline]
unsafe fn block_dot_sdot(w: (int8x16_t, int8x16_t), x: (int8x16_t, int8x16_t)) -> int32x4_t {
    let mut acc = vdupq_n_s32(0);
    // SAFETY: `sdot` is available (this function requires `dotprod`, detected at run time before
    // `Isa::NeonDotprod` is selected); it reads and writes registers only.
    asm!(
        "sdot {acc:v}.4s, {w0:v}.16b, {x0:v}.16b",
        "sdot {acc:v}.4s, {w1:v}.16b, {x1:v}.16b",
        acc = inout(vreg) acc,
        w0 = in(vreg) w.0,
        x0 = in(vreg) x.0,
        w1 = in(vreg) w.1,
        x1 = in(vreg) x.1,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// Four i32 partial sums of a 32-element block dot, with widening multiplies (|products| ≤
/// 128·127, so each i16 product is exact; `sadalp` adds pairs into i32).
#[inline]
unsafe fn block_dot_widen(w: (int8x16_t, int8x16_t), x: (int8x16_t, int8x16_t)) -> int32x4_t {
    let mut acc = vdupq_n_s32(0);
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w.0), vget_low_s8(x.0)));
    acc = vpadalq_s16(acc, vmull_high_s8(w.0, x.0));
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w.1), vget_low_s8(x.1)));
    vpadalq_s16(acc, vmull_high_s8(w.1, x.1))
}

/// `out[i][j] = w[i] · x[j]` for quantized weight rows (`QT`) and Q8_0 activations; `SDOT` picks
/// the dot-product instruction. For the types with a minimum `s[j]` holds each activation block's
/// `d·Σq`, and `m·s` is summed apart, in f32.
///
/// # Safety
/// Each `w[i]` holds at least `x[0].len()` blocks, every `x[j]` has the same number of blocks, and
/// so does every `s[j]` when `QT` has a minimum (asserted); with `SDOT`, the CPU must support
/// `dotprod`.
#[inline(always)]
unsafe fn quant_tile<const QT: u8, const SDOT: bool, const RB: usize, const NT: usize>(
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
    let z8 = vdupq_n_s8(0);
    let mut acc = [[vdupq_n_f32(0.0); NT]; RB];
    let mut off = [[0.0f32; NT]; RB];
    for b in 0..nb {
        let mut wq = [(z8, z8); RB];
        let mut dw = [0.0f32; RB];
        let mut mw = [0.0f32; RB];
        for i in 0..RB {
            let p = w[i].as_ptr().add(b * bb);
            wq[i] = load_block::<QT>(p);
            dw[i] = f16_to_f32(u16::from_le_bytes([*p, *p.add(1)]));
            if has_min(QT) {
                mw[i] = f16_to_f32(u16::from_le_bytes([*p.add(2), *p.add(3)]));
            }
        }
        for j in 0..NT {
            let xb = &x[j][b];
            let xq = load_act(xb);
            let dx = xb.d.to_f32();
            for i in 0..RB {
                let d = if SDOT {
                    block_dot_sdot(wq[i], xq)
                } else {
                    block_dot_widen(wq[i], xq)
                };
                acc[i][j] = vfmaq_n_f32(acc[i][j], vcvtq_f32_s32(d), dw[i] * dx);
                if has_min(QT) {
                    off[i][j] += mw[i] * s[j][b];
                }
            }
        }
    }
    let mut out = [[0.0f32; NT]; RB];
    for i in 0..RB {
        for j in 0..NT {
            out[i][j] = vaddvq_f32(acc[i][j]) + off[i][j];
        }
    }
    out
}

/// # Safety
/// See [`quant_tile`].
pub(super) unsafe fn tile_q8_0<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q8, false, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`].
pub(super) unsafe fn tile_q4_0<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q4, false, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`].
pub(super) unsafe fn tile_q4_1<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q4_1, false, RB, NT>(w, x, s)
}

/// # Safety
/// See [`quant_tile`].
pub(super) unsafe fn tile_q5_0<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q5_0, false, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`].
pub(super) unsafe fn tile_q5_1<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q5_1, false, RB, NT>(w, x, s)
}

/// # Safety
/// See [`quant_tile`]; the CPU must support `dotprod`.
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn tile_q8_0_dot<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q8, true, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`]; the CPU must support `dotprod`.
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn tile_q4_0_dot<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q4, true, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`]; the CPU must support `dotprod`.
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn tile_q4_1_dot<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q4_1, true, RB, NT>(w, x, s)
}

/// # Safety
/// See [`quant_tile`]; the CPU must support `dotprod`.
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn tile_q5_0_dot<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q5_0, true, RB, NT>(w, x, [&[]; NT])
}

/// # Safety
/// See [`quant_tile`]; the CPU must support `dotprod`.
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn tile_q5_1_dot<const RB: usize, const NT: usize>(
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    quant_tile::<Q5_1, true, RB, NT>(w, x, s)
}

/// `sum a[i] * b[i]` with four independent accumulators.
///
/// # Safety
/// `a.len() == b.len()` (the shorter length is used).
pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut k = 0;
    while k + 16 <= n {
        for (u, acc) in acc.iter_mut().enumerate() {
            let o = k + 4 * u;
            *acc = vfmaq_f32(*acc, vld1q_f32(pa.add(o)), vld1q_f32(pb.add(o)));
        }
        k += 16;
    }
    while k + 4 <= n {
        acc[0] = vfmaq_f32(acc[0], vld1q_f32(pa.add(k)), vld1q_f32(pb.add(k)));
        k += 4;
    }
    let mut s = vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[1]),
        vaddq_f32(acc[2], acc[3]),
    ));
    for kk in k..n {
        s += a[kk] * b[kk];
    }
    s
}

/// `y += alpha * x`.
///
/// # Safety
/// `x.len() == y.len()` (the shorter length is used).
pub(super) unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    let mut k = 0;
    while k + 4 <= n {
        vst1q_f32(
            py.add(k),
            vfmaq_n_f32(vld1q_f32(py.add(k)), vld1q_f32(px.add(k)), alpha),
        );
        k += 4;
    }
    for kk in k..n {
        y[kk] += alpha * x[kk];
    }
}
