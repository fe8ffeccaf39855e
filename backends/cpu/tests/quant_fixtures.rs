//! Q4_1 / Q5_0 / Q5_1 against blocks made by the `gguf` Python package
//! (`tests/fixtures/quants/`, written by `scripts/make_quant_fixtures.py`): code tandem did not
//! write decides what the bytes mean and what the reference quantizer must produce.

use half::f16;
use tandem_cpu::kernels::{matmul_ref, matmul_with_isa, Isa, Matrix};
use tandem_cpu::pool::ThreadPool;
use tandem_hal::dtype::{dequantize_row, quantize_row, quantize_row_q8_0};
use tandem_hal::{BlockQ8_0, DType, HostBytes};

const ROWS: usize = 8;
const COLS: usize = 256;
const TYPES: [DType; 3] = [DType::Q4_1, DType::Q5_0, DType::Q5_1];

/// A fixture file. The path is fixed at compile time, so it holds wherever the test binary runs
/// (qemu included).
fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/quants/");
    std::fs::read(format!("{path}{name}"))
        .unwrap_or_else(|e| panic!("{path}{name}: {e} (run scripts/make_quant_fixtures.py)"))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn input() -> Vec<f32> {
    let x = f32s(&fixture("input.f32"));
    assert_eq!(x.len(), ROWS * COLS);
    x
}

/// gguf's bytes for `dtype`, checked to be `ROWS` rows of `COLS` values.
fn gguf_bytes(dtype: DType) -> Vec<u8> {
    let b = fixture(&format!("{}.bin", dtype.name()));
    assert_eq!(b.len(), ROWS * dtype.row_bytes(COLS).unwrap(), "{dtype}");
    b
}

/// The same bytes, starting at byte `offset` of their buffer.
fn matrix(dtype: DType, bytes: &[u8], offset: usize) -> Matrix {
    let mut buf = vec![0x5Au8; offset];
    buf.extend_from_slice(bytes);
    let data = HostBytes::from_vec(buf).slice(offset, bytes.len()).unwrap();
    Matrix::new("w", dtype, ROWS, COLS, data).unwrap()
}

/// (1) Our dequantization of gguf's bytes is gguf's dequantization, bit for bit (signs of zero
/// included), through the hal reference and `Matrix::row_to_f32`, at even and odd addresses.
#[test]
fn dequantize_matches_gguf_bit_for_bit() {
    for dtype in TYPES {
        let bytes = gguf_bytes(dtype);
        let want = f32s(&fixture(&format!("{}.dequant.f32", dtype.name())));
        let rb = dtype.row_bytes(COLS).unwrap();
        let mut got = vec![0.0f32; COLS];
        for offset in [0usize, 1] {
            let m = matrix(dtype, &bytes, offset);
            for r in 0..ROWS {
                let want = &want[r * COLS..(r + 1) * COLS];
                dequantize_row(dtype, &bytes[r * rb..(r + 1) * rb], &mut got);
                for (k, (a, b)) in got.iter().zip(want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{dtype} row {r} col {k}: {a} vs {b}"
                    );
                }
                m.row_to_f32(r, &mut got);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{dtype} row {r} offset {offset} (Matrix)"
                );
            }
        }
    }
}

/// (2) Our reference quantizer, and `Matrix::convert` (the `--cpu-weights` path), produce gguf's
/// bytes exactly.
#[test]
fn quantize_matches_gguf_bytes() {
    let x = input();
    let pool = ThreadPool::new(2);
    let f = Matrix::new(
        "x",
        DType::F32,
        ROWS,
        COLS,
        HostBytes::from_vec(x.iter().flat_map(|v| v.to_le_bytes()).collect()),
    )
    .unwrap();
    for dtype in TYPES {
        let want = gguf_bytes(dtype);
        let rb = dtype.row_bytes(COLS).unwrap();
        let bb = dtype.block_bytes();
        let mut got = vec![0u8; rb];
        for r in 0..ROWS {
            quantize_row(dtype, &x[r * COLS..(r + 1) * COLS], &mut got);
            let want = &want[r * rb..(r + 1) * rb];
            for (b, (g, w)) in got.chunks(bb).zip(want.chunks(bb)).enumerate() {
                assert_eq!(g, w, "{dtype} row {r} block {b}");
            }
        }
        let converted = f.convert(dtype, &pool).unwrap();
        assert_eq!(converted.data.as_bytes(), &want[..], "{dtype} (convert)");
    }
}

/// The magnitude of the terms the f32 sums add, per output (see `term_scale` in kernels.rs):
/// `sum_k (|w_k - m| + |m|)·|x_k|` for the types with a minimum `m`, else `sum_k |w_k·x_k|`.
fn term_scale(w: &Matrix, x: &[f32], n_tokens: usize) -> Vec<f32> {
    let with_min = matches!(w.dtype, DType::Q4_1 | DType::Q5_1);
    let mut row = vec![0.0; w.cols];
    let mut out = vec![0.0; n_tokens * w.rows];
    for r in 0..w.rows {
        w.row_to_f32(r, &mut row);
        let mins: Vec<f32> = w
            .row(r)
            .chunks(w.dtype.block_bytes())
            .map(|b| {
                if with_min {
                    f16::from_le_bytes([b[2], b[3]]).to_f32()
                } else {
                    0.0
                }
            })
            .collect();
        for t in 0..n_tokens {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            out[t * w.rows + r] = row
                .iter()
                .zip(xt)
                .enumerate()
                .map(|(k, (a, b))| ((a - mins[k / 32]).abs() + mins[k / 32].abs()) * b.abs())
                .sum();
        }
    }
    out
}

/// Activations in [-2, 2) with one token of all-equal values.
fn activations(n_tokens: usize) -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..n_tokens * COLS)
        .map(|i| {
            if i / COLS == 1 {
                return 0.5;
            }
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 22) as f32 - 2.0
        })
        .collect()
}

/// (3) On gguf's bytes, the scalar reference is gguf's dequantized weights times the Q8_0
/// activations (in f64), and every ISA's matvec and matmul, on 1-3 threads and at an odd address,
/// agrees with the scalar reference within the tolerance of `every_isa_matches_the_scalar_reference`
/// in kernels.rs (1e-5 of the magnitude of the terms summed).
#[test]
fn every_isa_agrees_on_gguf_bytes() {
    let pools: Vec<ThreadPool> = [1, 2, 3].into_iter().map(ThreadPool::new).collect();
    let mut checked = 0;
    for dtype in TYPES {
        let bytes = gguf_bytes(dtype);
        let deq = f32s(&fixture(&format!("{}.dequant.f32", dtype.name())));
        let w = matrix(dtype, &bytes, 0);
        for n_tokens in [1usize, 2, 5, 16] {
            let x = activations(n_tokens);
            let mut want = vec![0.0f32; n_tokens * ROWS];
            matmul_ref(&w, &x, n_tokens, &mut want);
            let scale = term_scale(&w, &x, n_tokens);
            // The reference against gguf's meaning of the bytes: its dequantized weights times
            // the activations as the kernels see them (Q8_0-quantized, then dequantized).
            for t in 0..n_tokens {
                let mut q = vec![BlockQ8_0::default(); COLS / 32];
                quantize_row_q8_0(&x[t * COLS..(t + 1) * COLS], &mut q);
                let xq: Vec<f64> = q
                    .iter()
                    .flat_map(|b| b.qs.map(|v| f64::from(v) * f64::from(b.d.to_f32())))
                    .collect();
                for r in 0..ROWS {
                    let exact: f64 = deq[r * COLS..(r + 1) * COLS]
                        .iter()
                        .zip(&xq)
                        .map(|(a, b)| f64::from(*a) * b)
                        .sum();
                    let i = t * ROWS + r;
                    let tol = 1e-5 * f64::from(scale[i]) + 1e-30;
                    assert!(
                        (f64::from(want[i]) - exact).abs() <= tol,
                        "{dtype} row {r} token {t}: reference {} vs gguf {exact} (tol {tol})",
                        want[i]
                    );
                }
            }
            for isa in Isa::available() {
                for offset in [0usize, 1] {
                    let wo = matrix(dtype, &bytes, offset);
                    for pool in &pools {
                        let mut got = vec![f32::NAN; n_tokens * ROWS];
                        matmul_with_isa(isa, pool, &wo, &x, n_tokens, &mut got);
                        for i in 0..got.len() {
                            let tol = 1e-5 * scale[i] + 1e-30;
                            assert!(
                                (got[i] - want[i]).abs() <= tol,
                                "{} {dtype} n_tokens={n_tokens} threads={} offset={offset} out \
                                 {i}: {} vs reference {} (tol {tol})",
                                isa.name(),
                                pool.n_threads(),
                                got[i],
                                want[i]
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("{checked} matmuls on gguf bytes checked");
}
