//! Element and block formats. The quantized formats are bit-exact with llama.cpp's GGUF blocks:
//! a block covers [`QK8_0`] / [`QK4_0`] consecutive values of one row and starts with an f16 scale.
//!
//! The scalar `quantize_*` / `dequantize_*` functions here are the format's definition (the
//! reference every SIMD kernel is tested against), not the fast path.

use half::{bf16, f16};

/// Values per Q8_0 block.
pub const QK8_0: usize = 32;
/// Values per Q4_0 block.
pub const QK4_0: usize = 32;

/// One Q8_0 block: `x[i] = d * qs[i]`. 34 bytes, no padding (llama.cpp `block_q8_0`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK8_0],
}

/// One Q4_0 block: `x[i] = d * ((qs[i] & 0xF) - 8)`, `x[i + 16] = d * ((qs[i] >> 4) - 8)`.
/// 18 bytes, no padding (llama.cpp `block_q4_0`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK4_0 / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::align_of::<BlockQ8_0>() == 2);

/// Storage type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    /// 32-bit signed integers (token ids, positions).
    I32,
}

impl DType {
    /// Values per block (1 for plain element types).
    pub const fn block_len(self) -> usize {
        match self {
            DType::Q8_0 => QK8_0,
            DType::Q4_0 => QK4_0,
            _ => 1,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => std::mem::size_of::<BlockQ8_0>(),
            DType::Q4_0 => std::mem::size_of::<BlockQ4_0>(),
        }
    }

    /// True for block-quantized formats.
    pub const fn is_quantized(self) -> bool {
        matches!(self, DType::Q8_0 | DType::Q4_0)
    }

    /// Bytes taken by a row of `n` values, or `None` if `n` is not a whole number of blocks or
    /// the byte count does not fit in `usize` (`n` may come from a corrupt file).
    pub const fn row_bytes(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_len()) {
            return None;
        }
        (n / self.block_len()).checked_mul(self.block_bytes())
    }

    /// Lower-case name as used on the command line and in GGUF tooling (`f32`, `q4_0`, …).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::I32 => "i32",
        }
    }

    /// Parses [`DType::name`] (case-insensitive).
    pub fn from_name(s: &str) -> Option<DType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "q8_0" => DType::Q8_0,
            "q4_0" => DType::Q4_0,
            "i32" => DType::I32,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reference Q8_0 quantization of one row (`x.len()` a multiple of 32), as llama.cpp's
/// `quantize_row_q8_0_ref`: `d = max|x| / 127`, `q = round(x / d)` (half away from zero).
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        out.len() * QK8_0,
        "quantize_row_q8_0: length mismatch"
    );
    for (chunk, block) in x.chunks_exact(QK8_0).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f16::from_f32(d);
        for (q, &v) in block.qs.iter_mut().zip(chunk) {
            *q = (v * id).round() as i8;
        }
    }
}

/// Reference Q8_0 dequantization.
pub fn dequantize_row_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK8_0,
        "dequantize_row_q8_0: length mismatch"
    );
    for (block, chunk) in blocks.iter().zip(out.chunks_exact_mut(QK8_0)) {
        let d = block.d.to_f32();
        for (o, &q) in chunk.iter_mut().zip(&block.qs) {
            *o = q as f32 * d;
        }
    }
}

/// Reference Q4_0 quantization, as llama.cpp's `quantize_row_q4_0_ref`: the value of largest
/// magnitude (with its sign) maps to -8, `d = max / -8`, `q = min(15, trunc(x / d + 8.5))`.
pub fn quantize_row_q4_0(x: &[f32], out: &mut [BlockQ4_0]) {
    assert_eq!(
        x.len(),
        out.len() * QK4_0,
        "quantize_row_q4_0: length mismatch"
    );
    for (chunk, block) in x.chunks_exact(QK4_0).zip(out.iter_mut()) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in chunk {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f16::from_f32(d);
        let half = QK4_0 / 2;
        for j in 0..half {
            let x0 = chunk[j] * id;
            let x1 = chunk[half + j] * id;
            let q0 = ((x0 + 8.5) as i8).min(15) as u8;
            let q1 = ((x1 + 8.5) as i8).min(15) as u8;
            block.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Reference Q4_0 dequantization.
pub fn dequantize_row_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK4_0,
        "dequantize_row_q4_0: length mismatch"
    );
    let half = QK4_0 / 2;
    for (block, chunk) in blocks.iter().zip(out.chunks_exact_mut(QK4_0)) {
        let d = block.d.to_f32();
        for j in 0..half {
            chunk[j] = ((block.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            chunk[half + j] = ((block.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Reinterprets raw little-endian bytes as Q8_0 blocks (alignment 2 is checked).
pub fn q8_0_blocks(bytes: &[u8]) -> Option<&[BlockQ8_0]> {
    cast_blocks(bytes)
}

/// Reinterprets raw little-endian bytes as Q4_0 blocks (alignment 2 is checked).
pub fn q4_0_blocks(bytes: &[u8]) -> Option<&[BlockQ4_0]> {
    cast_blocks(bytes)
}

fn cast_blocks<T: Copy>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: T is one of the `repr(C)` block structs above, made only of f16/i8/u8 fields, so every
    // bit pattern is a valid value; length and alignment were checked just above.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Decodes `n` values of a plain (non-quantized) little-endian row into f32.
pub fn decode_plain_row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::I32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32;
            }
        }
        DType::Q8_0 | DType::Q4_0 => panic!("decode_plain_row called on quantized type {dtype}"),
    }
}

/// Decodes one row of any type to f32 (reference path; `out.len()` values).
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        DType::Q8_0 => {
            let owned;
            let blocks = match q8_0_blocks(bytes) {
                Some(b) => b,
                None => {
                    owned = copy_blocks_q8_0(bytes);
                    &owned
                }
            };
            dequantize_row_q8_0(blocks, out)
        }
        DType::Q4_0 => {
            let owned;
            let blocks = match q4_0_blocks(bytes) {
                Some(b) => b,
                None => {
                    owned = copy_blocks_q4_0(bytes);
                    &owned
                }
            };
            dequantize_row_q4_0(blocks, out)
        }
        _ => decode_plain_row(dtype, bytes, out),
    }
}

fn copy_blocks_q8_0(bytes: &[u8]) -> Vec<BlockQ8_0> {
    bytes
        .chunks_exact(34)
        .map(|c| {
            let mut b = BlockQ8_0 {
                d: f16::from_le_bytes([c[0], c[1]]),
                qs: [0; QK8_0],
            };
            for (q, &v) in b.qs.iter_mut().zip(&c[2..]) {
                *q = v as i8;
            }
            b
        })
        .collect()
}

fn copy_blocks_q4_0(bytes: &[u8]) -> Vec<BlockQ4_0> {
    bytes
        .chunks_exact(18)
        .map(|c| {
            let mut b = BlockQ4_0 {
                d: f16::from_le_bytes([c[0], c[1]]),
                qs: [0; QK4_0 / 2],
            };
            b.qs.copy_from_slice(&c[2..]);
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_round_trip_error_is_bounded_by_half_step() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
            .collect();
        let mut b = vec![BlockQ8_0::default(); 2];
        quantize_row_q8_0(&x, &mut b);
        let mut y = vec![0.0; 64];
        dequantize_row_q8_0(&b, &mut y);
        for (blk, (xs, ys)) in b.iter().zip(x.chunks(32).zip(y.chunks(32))) {
            let d = blk.d.to_f32();
            for (a, b) in xs.iter().zip(ys) {
                assert!(
                    (a - b).abs() <= d * 0.5 + 1e-3 * d.max(1e-6),
                    "{a} vs {b}, d={d}"
                );
            }
        }
    }

    #[test]
    fn q4_0_matches_hand_computed_block() {
        // max-magnitude value is -4.0 -> d = 0.5, so values map to q = x/0.5 + 8.
        let mut x = [0.0f32; 32];
        x[0] = -4.0;
        x[1] = 3.5;
        x[16] = 1.0;
        let mut b = [BlockQ4_0::default()];
        quantize_row_q4_0(&x, &mut b);
        assert_eq!(b[0].d.to_f32(), 0.5);
        assert_eq!(b[0].qs[0] & 0xF, 0); // -4 / 0.5 + 8 = 0
        assert_eq!(b[0].qs[1] & 0xF, 15); // 3.5/0.5+8 = 15
        assert_eq!(b[0].qs[0] >> 4, 10); // 1/0.5+8 = 10
        let mut y = [0.0f32; 32];
        dequantize_row_q4_0(&b, &mut y);
        assert_eq!(y[0], -4.0);
        assert_eq!(y[1], 3.5);
        assert_eq!(y[16], 1.0);
        assert_eq!(y[2], 0.0);
    }

    #[test]
    fn row_bytes_rejects_partial_blocks() {
        assert_eq!(DType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(DType::Q8_0.row_bytes(33), None);
        assert_eq!(DType::BF16.row_bytes(3), Some(6));
    }
}
