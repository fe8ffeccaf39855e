//! Element and block formats. The quantized formats are bit-exact with llama.cpp's GGUF blocks:
//! a block covers 32 consecutive values of one row and starts with an f16 scale (the `_1` types
//! follow it with an f16 minimum, the `5` types with the 32 fifth bits as a little-endian u32).
//!
//! The scalar `quantize_*` / `dequantize_*` functions here are the format's definition (the
//! reference every SIMD kernel is tested against), not the fast path.

use half::{bf16, f16};

/// Values per Q8_0 block.
pub const QK8_0: usize = 32;
/// Values per Q4_0 block.
pub const QK4_0: usize = 32;
/// Values per Q4_1 block.
pub const QK4_1: usize = 32;
/// Values per Q5_0 block.
pub const QK5_0: usize = 32;
/// Values per Q5_1 block.
pub const QK5_1: usize = 32;

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

/// One Q4_1 block: `x[i] = d * (qs[i] & 0xF) + m`, `x[i + 16] = d * (qs[i] >> 4) + m`.
/// 20 bytes, no padding (llama.cpp `block_q4_1`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK4_1 / 2],
}

/// One Q5_0 block: with `h(j) = (u32::from_le_bytes(qh) >> j) & 1`,
/// `x[i] = d * ((qs[i] & 0xF | h(i) << 4) - 16)`, `x[i + 16] = d * ((qs[i] >> 4 | h(i + 16) << 4) - 16)`.
/// 22 bytes, no padding (llama.cpp `block_q5_0`); `qh` is bytes so the block keeps alignment 2,
/// as it has inside a GGUF file.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK5_0 / 2],
}

/// One Q5_1 block: the 5-bit values of [`BlockQ5_0`] without the `- 16`, as `x = d * q + m`.
/// 24 bytes, no padding (llama.cpp `block_q5_1`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK5_1 / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::align_of::<BlockQ8_0>() == 2);
const _: () = assert!(std::mem::align_of::<BlockQ5_0>() == 2);

/// Storage type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    /// 32-bit signed integers (token ids, positions).
    I32,
}

impl DType {
    /// Values per block (1 for plain element types).
    pub const fn block_len(self) -> usize {
        match self {
            DType::Q8_0 => QK8_0,
            DType::Q4_0 => QK4_0,
            DType::Q4_1 => QK4_1,
            DType::Q5_0 => QK5_0,
            DType::Q5_1 => QK5_1,
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
            DType::Q4_1 => std::mem::size_of::<BlockQ4_1>(),
            DType::Q5_0 => std::mem::size_of::<BlockQ5_0>(),
            DType::Q5_1 => std::mem::size_of::<BlockQ5_1>(),
        }
    }

    /// True for block-quantized formats.
    pub const fn is_quantized(self) -> bool {
        matches!(
            self,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1
        )
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
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
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
            "q4_1" => DType::Q4_1,
            "q5_0" => DType::Q5_0,
            "q5_1" => DType::Q5_1,
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

/// Smallest and largest value of a block, as llama.cpp's reference quantizers find them.
fn min_max(chunk: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in chunk {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// The value of largest magnitude, with its sign (the first one on ties).
fn signed_absmax(chunk: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in chunk {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Reference Q4_1 quantization, as llama.cpp's `quantize_row_q4_1_ref`: `m = min`,
/// `d = (max - min) / 15`, `q = min(15, trunc((x - min) / d + 0.5))`. `d` and `m` are rounded to
/// f16 only when stored, so `q` is computed from the unrounded values.
pub fn quantize_row_q4_1(x: &[f32], out: &mut [BlockQ4_1]) {
    assert_eq!(
        x.len(),
        out.len() * QK4_1,
        "quantize_row_q4_1: length mismatch"
    );
    for (chunk, block) in x.chunks_exact(QK4_1).zip(out.iter_mut()) {
        let (min, max) = min_max(chunk);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f16::from_f32(d);
        block.m = f16::from_f32(min);
        let half = QK4_1 / 2;
        for j in 0..half {
            let q0 = (((chunk[j] - min) * id + 0.5) as u8).min(15);
            let q1 = (((chunk[half + j] - min) * id + 0.5) as u8).min(15);
            block.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Reference Q4_1 dequantization.
pub fn dequantize_row_q4_1(blocks: &[BlockQ4_1], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK4_1,
        "dequantize_row_q4_1: length mismatch"
    );
    let half = QK4_1 / 2;
    for (block, chunk) in blocks.iter().zip(out.chunks_exact_mut(QK4_1)) {
        let d = block.d.to_f32();
        let m = block.m.to_f32();
        for j in 0..half {
            chunk[j] = d * f32::from(block.qs[j] & 0x0F) + m;
            chunk[half + j] = d * f32::from(block.qs[j] >> 4) + m;
        }
    }
}

/// Packs 32 five-bit values: low nibbles of elements 0..16 / high nibbles of 16..32 into `qs`,
/// the fifth bit of element `j` into bit `j` of the little-endian `qh`.
fn pack_q5(q: &[u8; 32], qh: &mut [u8; 4], qs: &mut [u8; 16]) {
    let mut h = 0u32;
    for (j, &v) in q.iter().enumerate() {
        h |= u32::from(v >> 4 & 1) << j;
    }
    *qh = h.to_le_bytes();
    for j in 0..16 {
        qs[j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
    }
}

/// The 32 five-bit values of a Q5 block (0..=31), in element order.
fn unpack_q5(qh: &[u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let h = u32::from_le_bytes(*qh);
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 0x0F) | ((h >> j & 1) as u8) << 4;
        q[j + 16] = (qs[j] >> 4) | ((h >> (j + 16) & 1) as u8) << 4;
    }
    q
}

/// Reference Q5_0 quantization, as llama.cpp's `quantize_row_q5_0_ref`: the value of largest
/// magnitude (with its sign) maps to -16, `d = max / -16`, `q = min(31, trunc(x / d + 16.5))`.
pub fn quantize_row_q5_0(x: &[f32], out: &mut [BlockQ5_0]) {
    assert_eq!(
        x.len(),
        out.len() * QK5_0,
        "quantize_row_q5_0: length mismatch"
    );
    for (chunk, block) in x.chunks_exact(QK5_0).zip(out.iter_mut()) {
        let d = signed_absmax(chunk) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f16::from_f32(d);
        let q: [u8; 32] = std::array::from_fn(|j| ((chunk[j] * id + 16.5) as u8).min(31));
        pack_q5(&q, &mut block.qh, &mut block.qs);
    }
}

/// Reference Q5_0 dequantization.
pub fn dequantize_row_q5_0(blocks: &[BlockQ5_0], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK5_0,
        "dequantize_row_q5_0: length mismatch"
    );
    for (block, chunk) in blocks.iter().zip(out.chunks_exact_mut(QK5_0)) {
        let d = block.d.to_f32();
        for (o, &q) in chunk.iter_mut().zip(&unpack_q5(&block.qh, &block.qs)) {
            *o = d * (i32::from(q) - 16) as f32;
        }
    }
}

/// Reference Q5_1 quantization, as llama.cpp's `quantize_row_q5_1_ref`: `m = min`,
/// `d = (max - min) / 31`, `q = min(31, trunc((x - min) / d + 0.5))`.
pub fn quantize_row_q5_1(x: &[f32], out: &mut [BlockQ5_1]) {
    assert_eq!(
        x.len(),
        out.len() * QK5_1,
        "quantize_row_q5_1: length mismatch"
    );
    for (chunk, block) in x.chunks_exact(QK5_1).zip(out.iter_mut()) {
        let (min, max) = min_max(chunk);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f16::from_f32(d);
        block.m = f16::from_f32(min);
        let q: [u8; 32] = std::array::from_fn(|j| (((chunk[j] - min) * id + 0.5) as u8).min(31));
        pack_q5(&q, &mut block.qh, &mut block.qs);
    }
}

/// Reference Q5_1 dequantization.
pub fn dequantize_row_q5_1(blocks: &[BlockQ5_1], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK5_1,
        "dequantize_row_q5_1: length mismatch"
    );
    for (block, chunk) in blocks.iter().zip(out.chunks_exact_mut(QK5_1)) {
        let d = block.d.to_f32();
        let m = block.m.to_f32();
        for (o, &q) in chunk.iter_mut().zip(&unpack_q5(&block.qh, &block.qs)) {
            *o = d * f32::from(q) + m;
        }
    }
}

/// A block struct of this module and its little-endian byte form.
trait Block: Copy + Default {
    fn read(bytes: &[u8]) -> Self;
    fn write(&self, out: &mut [u8]);
}

fn f16_at(b: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([b[at], b[at + 1]])
}

impl Block for BlockQ8_0 {
    fn read(b: &[u8]) -> Self {
        let mut blk = BlockQ8_0 {
            d: f16_at(b, 0),
            qs: [0; QK8_0],
        };
        for (q, &v) in blk.qs.iter_mut().zip(&b[2..34]) {
            *q = v as i8;
        }
        blk
    }
    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        for (o, &q) in out[2..34].iter_mut().zip(&self.qs) {
            *o = q as u8;
        }
    }
}

impl Block for BlockQ4_0 {
    fn read(b: &[u8]) -> Self {
        let mut blk = BlockQ4_0 {
            d: f16_at(b, 0),
            ..Default::default()
        };
        blk.qs.copy_from_slice(&b[2..18]);
        blk
    }
    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..18].copy_from_slice(&self.qs);
    }
}

impl Block for BlockQ4_1 {
    fn read(b: &[u8]) -> Self {
        let mut blk = BlockQ4_1 {
            d: f16_at(b, 0),
            m: f16_at(b, 2),
            ..Default::default()
        };
        blk.qs.copy_from_slice(&b[4..20]);
        blk
    }
    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..20].copy_from_slice(&self.qs);
    }
}

impl Block for BlockQ5_0 {
    fn read(b: &[u8]) -> Self {
        let mut blk = BlockQ5_0 {
            d: f16_at(b, 0),
            ..Default::default()
        };
        blk.qh.copy_from_slice(&b[2..6]);
        blk.qs.copy_from_slice(&b[6..22]);
        blk
    }
    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..6].copy_from_slice(&self.qh);
        out[6..22].copy_from_slice(&self.qs);
    }
}

impl Block for BlockQ5_1 {
    fn read(b: &[u8]) -> Self {
        let mut blk = BlockQ5_1 {
            d: f16_at(b, 0),
            m: f16_at(b, 2),
            ..Default::default()
        };
        blk.qh.copy_from_slice(&b[4..8]);
        blk.qs.copy_from_slice(&b[8..24]);
        blk
    }
    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..8].copy_from_slice(&self.qh);
        out[8..24].copy_from_slice(&self.qs);
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

/// Reinterprets raw little-endian bytes as Q4_1 blocks (alignment 2 is checked).
pub fn q4_1_blocks(bytes: &[u8]) -> Option<&[BlockQ4_1]> {
    cast_blocks(bytes)
}

/// Reinterprets raw little-endian bytes as Q5_0 blocks (alignment 2 is checked).
pub fn q5_0_blocks(bytes: &[u8]) -> Option<&[BlockQ5_0]> {
    cast_blocks(bytes)
}

/// Reinterprets raw little-endian bytes as Q5_1 blocks (alignment 2 is checked).
pub fn q5_1_blocks(bytes: &[u8]) -> Option<&[BlockQ5_1]> {
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

/// The blocks in `bytes`: borrowed where they lie when aligned, else copied out.
fn blocks_of<T: Block>(bytes: &[u8]) -> std::borrow::Cow<'_, [T]> {
    match cast_blocks(bytes) {
        Some(b) => std::borrow::Cow::Borrowed(b),
        None => std::borrow::Cow::Owned(
            bytes
                .chunks_exact(std::mem::size_of::<T>())
                .map(T::read)
                .collect(),
        ),
    }
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
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => {
            panic!("decode_plain_row called on quantized type {dtype}")
        }
    }
}

/// Decodes one row of any type to f32 (reference path; `out.len()` values).
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        DType::Q8_0 => dequantize_row_q8_0(&blocks_of(bytes), out),
        DType::Q4_0 => dequantize_row_q4_0(&blocks_of(bytes), out),
        DType::Q4_1 => dequantize_row_q4_1(&blocks_of(bytes), out),
        DType::Q5_0 => dequantize_row_q5_0(&blocks_of(bytes), out),
        DType::Q5_1 => dequantize_row_q5_1(&blocks_of(bytes), out),
        _ => decode_plain_row(dtype, bytes, out),
    }
}

/// Quantizes one row with the reference quantizer of `dtype` into its little-endian block bytes
/// (`out.len() == dtype.row_bytes(x.len())`), the inverse of [`dequantize_row`] up to rounding.
/// Panics for plain types.
pub fn quantize_row(dtype: DType, x: &[f32], out: &mut [u8]) {
    fn blocks<T: Block>(x: &[f32], out: &mut [u8], quantize: fn(&[f32], &mut [T])) {
        let size = std::mem::size_of::<T>();
        assert!(
            x.len().is_multiple_of(32) && out.len() == x.len() / 32 * size,
            "quantize_row: length mismatch"
        );
        let mut b = vec![T::default(); x.len() / 32];
        quantize(x, &mut b);
        for (o, blk) in out.chunks_exact_mut(size).zip(&b) {
            blk.write(o);
        }
    }
    match dtype {
        DType::Q8_0 => blocks(x, out, quantize_row_q8_0),
        DType::Q4_0 => blocks(x, out, quantize_row_q4_0),
        DType::Q4_1 => blocks(x, out, quantize_row_q4_1),
        DType::Q5_0 => blocks(x, out, quantize_row_q5_0),
        DType::Q5_1 => blocks(x, out, quantize_row_q5_1),
        _ => panic!("quantize_row called on plain type {dtype}"),
    }
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
    fn q4_1_matches_hand_computed_block() {
        // min -2, max 5.5 -> d = 7.5 / 15 = 0.5, m = -2, q = (x + 2) / 0.5 rounded.
        let mut x = [-2.0f32; 32];
        x[1] = 5.5;
        x[16] = 0.0;
        x[17] = 0.3; // 4.6 -> 5
        let mut b = [BlockQ4_1::default()];
        quantize_row_q4_1(&x, &mut b);
        assert_eq!((b[0].d.to_f32(), b[0].m.to_f32()), (0.5, -2.0));
        assert_eq!(b[0].qs[0], 4 << 4); // element 0: 0, element 16: 4
        assert_eq!(b[0].qs[1], 15 | 5 << 4);
        assert_eq!(b[0].qs[2], 0);
        let mut y = [0.0f32; 32];
        dequantize_row_q4_1(&b, &mut y);
        assert_eq!(
            (y[0], y[1], y[16], y[17], y[31]),
            (-2.0, 5.5, 0.0, 0.5, -2.0)
        );
    }

    #[test]
    fn q5_0_matches_hand_computed_block() {
        // max-magnitude value is 8 -> d = -0.5, q = x / -0.5 + 16; zeros map to q = 16.
        let mut x = [0.0f32; 32];
        x[0] = 8.0; // q 0
        x[1] = -7.5; // q 31
        x[17] = -3.0; // q 22 = 0b1_0110
        x[20] = 1.0; // q 14
        let mut b = [BlockQ5_0::default()];
        quantize_row_q5_0(&x, &mut b);
        assert_eq!(b[0].d.to_f32(), -0.5);
        // Every fifth bit is set except elements 0 (q 0) and 20 (q 14).
        assert_eq!(u32::from_le_bytes(b[0].qh), !(1 | 1 << 20));
        assert_eq!(b[0].qs[0], 0); // elements 0 and 16: 0 and 16, low nibbles 0
        assert_eq!(b[0].qs[1], 0xF | 0x6 << 4); // 31 and 22
        assert_eq!(b[0].qs[4], 0xE << 4); // 16 and 14
        let mut y = [f32::NAN; 32];
        dequantize_row_q5_0(&b, &mut y);
        assert_eq!(
            (y[0], y[1], y[17], y[20], y[2]),
            (8.0, -7.5, -3.0, 1.0, 0.0)
        );
    }

    #[test]
    fn q5_1_matches_hand_computed_block() {
        // min -1, max 14.5 -> d = 15.5 / 31 = 0.5, m = -1.
        let mut x = [-1.0f32; 32];
        x[1] = 14.5; // q 31
        x[16] = 7.0; // q 16: fifth bit only
        let mut b = [BlockQ5_1::default()];
        quantize_row_q5_1(&x, &mut b);
        assert_eq!((b[0].d.to_f32(), b[0].m.to_f32()), (0.5, -1.0));
        assert_eq!(u32::from_le_bytes(b[0].qh), 1 << 1 | 1 << 16);
        assert_eq!(b[0].qs[0], 0);
        assert_eq!(b[0].qs[1], 0xF);
        let mut y = [f32::NAN; 32];
        dequantize_row_q5_1(&b, &mut y);
        assert_eq!((y[0], y[1], y[16], y[31]), (-1.0, 14.5, 7.0, -1.0));
    }

    #[test]
    fn constant_and_zero_blocks() {
        // All equal: d = 0, every q = 0, the value comes back from m (f16-rounded).
        let x = [3.25f32; 32];
        let mut b1 = [BlockQ4_1::default()];
        quantize_row_q4_1(&x, &mut b1);
        assert_eq!((b1[0].d.to_f32(), b1[0].qs), (0.0, [0; 16]));
        let mut b5 = [BlockQ5_1::default()];
        quantize_row_q5_1(&x, &mut b5);
        assert_eq!(
            (b5[0].d.to_f32(), b5[0].qh, b5[0].qs),
            (0.0, [0; 4], [0; 16])
        );
        let mut y = [0.0f32; 32];
        dequantize_row_q5_1(&b5, &mut y);
        assert_eq!(y, x);
        // Zeros in Q5_0: d = 0 / -16 = -0, every q = 16 (the fifth bit set, nibbles 0).
        let mut b0 = [BlockQ5_0::default()];
        quantize_row_q5_0(&[0.0; 32], &mut b0);
        assert_eq!(b0[0].d.to_bits(), 0x8000);
        assert_eq!((b0[0].qh, b0[0].qs), ([0xFF; 4], [0; 16]));
    }

    /// Byte forms and the unaligned path of `dequantize_row` agree with the block functions.
    #[test]
    fn byte_rows_round_trip_at_any_alignment() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
            .collect();
        for dtype in [
            DType::Q8_0,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
        ] {
            let rb = dtype.row_bytes(x.len()).unwrap();
            let mut buf = vec![0u8; rb + 1];
            quantize_row(dtype, &x, &mut buf[1..]);
            let mut aligned = vec![0u8; rb];
            aligned.copy_from_slice(&buf[1..]);
            let (mut a, mut b) = (vec![0.0; 96], vec![0.0; 96]);
            dequantize_row(dtype, &buf[1..], &mut a);
            dequantize_row(dtype, &aligned, &mut b);
            assert_eq!(a, b, "{dtype}");
            // Within half a step (plus f16 rounding of d and m) of the input, except that the
            // symmetric types clamp a value of the opposite sign to the largest magnitude at
            // one step below it (q = 15 / 31 holds +7d / +15d, not +8d / +16d).
            for (blk, (xs, ys)) in aligned
                .chunks(dtype.block_bytes())
                .zip(x.chunks(32).zip(a.chunks(32)))
            {
                let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32().abs();
                let tol = if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                    d * 0.5 + 0.01
                } else {
                    d + 0.01
                };
                for (p, q) in xs.iter().zip(ys) {
                    assert!((p - q).abs() <= tol, "{dtype}: {p} vs {q}, d={d}");
                }
            }
        }
    }

    #[test]
    fn row_bytes_rejects_partial_blocks() {
        assert_eq!(DType::Q4_1.row_bytes(64), Some(40));
        assert_eq!(DType::Q5_0.row_bytes(64), Some(44));
        assert_eq!(DType::Q5_1.row_bytes(64), Some(48));
        assert_eq!(DType::Q5_0.row_bytes(48), None);
        for d in [DType::Q4_1, DType::Q5_0, DType::Q5_1] {
            assert_eq!(DType::from_name(d.name()), Some(d));
            assert!(d.is_quantized());
        }
        assert_eq!(DType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(DType::Q8_0.row_bytes(33), None);
        assert_eq!(DType::BF16.row_bytes(3), Some(6));
    }
}
