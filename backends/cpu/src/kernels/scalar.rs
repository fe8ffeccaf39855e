//! Scalar reference kernels: the ground truth every SIMD path is tested against, and the path taken
//! when no SIMD extension is available (or `TANDEM_CPU_ISA=scalar`). Plain sequential f32 sums.

use half::{bf16, f16};
use tandem_hal::{BlockQ8_0, QK4_0, QK8_0};

/// Bytes of one block as stored in weight rows (f16 scale, f16 min for the `_1` types, 32 fifth
/// bits for the `5` types, then the packed values).
pub(crate) const Q8_0_BYTES: usize = 2 + QK8_0;
pub(crate) const Q4_0_BYTES: usize = 2 + QK4_0 / 2;
pub(crate) const Q4_1_BYTES: usize = 4 + 16;
pub(crate) const Q5_0_BYTES: usize = 2 + 4 + 16;
pub(crate) const Q5_1_BYTES: usize = 4 + 4 + 16;

/// Scale of a block starting at `b[0..2]` (little-endian f16), read without alignment.
#[inline]
pub(crate) fn block_scale(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// `sum_k w[k] * x[k]` for an f32 weight row stored as little-endian bytes.
pub fn dot_f32_row(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (c, &xv) in w.chunks_exact(4).zip(x) {
        acc += f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * xv;
    }
    acc
}

/// `sum_k w[k] * x[k]` for an f16 weight row.
pub fn dot_f16_row(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (c, &xv) in w.chunks_exact(2).zip(x) {
        acc += f16::from_le_bytes([c[0], c[1]]).to_f32() * xv;
    }
    acc
}

/// `sum_k w[k] * x[k]` for a bf16 weight row.
pub fn dot_bf16_row(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (c, &xv) in w.chunks_exact(2).zip(x) {
        acc += bf16::from_le_bytes([c[0], c[1]]).to_f32() * xv;
    }
    acc
}

/// Q8_0 weight row · Q8_0 activation row: per block an exact i32 dot, times both scales.
pub fn dot_q8_0_row(w: &[u8], x: &[BlockQ8_0]) -> f32 {
    let mut acc = 0.0f32;
    for (wb, xb) in w.chunks_exact(Q8_0_BYTES).zip(x) {
        let mut sumi = 0i32;
        for (&q, &xq) in wb[2..].iter().zip(&xb.qs) {
            sumi += i32::from(q as i8) * i32::from(xq);
        }
        acc += sumi as f32 * (block_scale(wb) * xb.d.to_f32());
    }
    acc
}

/// Q4_0 weight row · Q8_0 activation row (nibble `j` low = element j, high = element j + 16).
pub fn dot_q4_0_row(w: &[u8], x: &[BlockQ8_0]) -> f32 {
    let mut acc = 0.0f32;
    let half = QK4_0 / 2;
    for (wb, xb) in w.chunks_exact(Q4_0_BYTES).zip(x) {
        let mut sumi = 0i32;
        for (j, &byte) in wb[2..].iter().enumerate() {
            let lo = i32::from(byte & 0x0F) - 8;
            let hi = i32::from(byte >> 4) - 8;
            sumi += lo * i32::from(xb.qs[j]) + hi * i32::from(xb.qs[j + half]);
        }
        acc += sumi as f32 * (block_scale(wb) * xb.d.to_f32());
    }
    acc
}

/// `d · Σ q` of every activation block: what a weight block's minimum `m` multiplies, since
/// `Σ (dw·q_i + m)·(dx·a_i) = dw·dx·Σ q_i·a_i + m·(dx·Σ a_i)`.
pub fn act_block_sums(x: &[BlockQ8_0], out: &mut [f32]) {
    for (o, xb) in out.iter_mut().zip(x) {
        let s: i32 = xb.qs.iter().map(|&q| i32::from(q)).sum();
        *o = xb.d.to_f32() * s as f32;
    }
}

/// Q4_1 weight row · Q8_0 activation row; `s` holds [`act_block_sums`] of `x`.
pub fn dot_q4_1_row(w: &[u8], x: &[BlockQ8_0], s: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for ((wb, xb), &xs) in w.chunks_exact(Q4_1_BYTES).zip(x).zip(s) {
        let mut sumi = 0i32;
        for (j, &byte) in wb[4..].iter().enumerate() {
            sumi += i32::from(byte & 0x0F) * i32::from(xb.qs[j])
                + i32::from(byte >> 4) * i32::from(xb.qs[j + 16]);
        }
        acc += sumi as f32 * (block_scale(wb) * xb.d.to_f32()) + block_scale(&wb[2..]) * xs;
    }
    acc
}

/// `i32` dot of the 5-bit values of a Q5 block (`qh` = its fifth bits, `qs` its nibbles) with an
/// activation block, each value minus `bias`.
#[inline]
fn q5_block_dot(qh: &[u8], qs: &[u8], bias: i32, xq: &[i8; QK8_0]) -> i32 {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut sumi = 0i32;
    for (j, &byte) in qs.iter().enumerate() {
        let lo = i32::from(byte & 0x0F) | ((h >> j & 1) as i32) << 4;
        let hi = i32::from(byte >> 4) | ((h >> (j + 16) & 1) as i32) << 4;
        sumi += (lo - bias) * i32::from(xq[j]) + (hi - bias) * i32::from(xq[j + 16]);
    }
    sumi
}

/// Q5_0 weight row · Q8_0 activation row.
pub fn dot_q5_0_row(w: &[u8], x: &[BlockQ8_0]) -> f32 {
    let mut acc = 0.0f32;
    for (wb, xb) in w.chunks_exact(Q5_0_BYTES).zip(x) {
        let sumi = q5_block_dot(&wb[2..6], &wb[6..22], 16, &xb.qs);
        acc += sumi as f32 * (block_scale(wb) * xb.d.to_f32());
    }
    acc
}

/// Q5_1 weight row · Q8_0 activation row; `s` holds [`act_block_sums`] of `x`.
pub fn dot_q5_1_row(w: &[u8], x: &[BlockQ8_0], s: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for ((wb, xb), &xs) in w.chunks_exact(Q5_1_BYTES).zip(x).zip(s) {
        let sumi = q5_block_dot(&wb[4..8], &wb[8..24], 0, &xb.qs);
        acc += sumi as f32 * (block_scale(wb) * xb.d.to_f32()) + block_scale(&wb[2..]) * xs;
    }
    acc
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        acc += x * y;
    }
    acc
}

pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += alpha * xv;
    }
}

pub fn add(y: &mut [f32], x: &[f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += xv;
    }
}

pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = rms_scale(dot(x, x), x.len(), eps);
    for ((o, &xv), &wv) in out.iter_mut().zip(x).zip(weight) {
        *o = xv * scale * wv;
    }
}

/// `1 / sqrt(sum_sq / n + eps)`.
#[inline]
pub(crate) fn rms_scale(sum_sq: f32, n: usize, eps: f32) -> f32 {
    1.0 / (sum_sq / n.max(1) as f32 + eps).sqrt()
}

#[inline]
pub(crate) fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        // All masked (or empty): a uniform distribution is the only finite answer.
        let n = x.len() as f32;
        x.iter_mut().for_each(|v| *v = 1.0 / n);
        return;
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}
