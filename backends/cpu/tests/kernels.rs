//! Kernel tests: every SIMD path against the scalar reference, quantized against f32, hand-computed
//! values, dtype conversions and weights at odd byte offsets.

use half::{bf16, f16};
use tandem_cpu::kernels::{
    self, isa_name, matmul, matmul_ref, matmul_with_isa, scalar, Isa, Matrix, ISA_ENV,
};
use tandem_cpu::pool::ThreadPool;
use tandem_hal::dtype::{quantize_row, quantize_row_q4_0, quantize_row_q8_0};
use tandem_hal::{BlockQ4_0, BlockQ8_0, DType, HostBytes, Tensor};

const ALL: [DType; 8] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
];

const QUANT: [DType; 5] = [
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
];

/// Deterministic values in [-1, 1) with a per-row scale so blocks have different magnitudes.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            let scale = 1.0 + ((i / 32) % 5) as f32;
            (2.0 * u - 1.0) * scale
        })
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A matrix of `dtype` whose bytes start at byte `offset` of their buffer (1 = odd address).
fn matrix(dtype: DType, rows: usize, cols: usize, seed: u64, offset: usize) -> Matrix {
    let pool = ThreadPool::new(1);
    let f = Matrix::new(
        "w",
        DType::F32,
        rows,
        cols,
        HostBytes::from_vec(f32_bytes(&values(rows * cols, seed))),
    )
    .unwrap();
    let m = f.convert(dtype, &pool).unwrap();
    at_offset(&m, offset)
}

fn at_offset(m: &Matrix, offset: usize) -> Matrix {
    let mut buf = vec![0xA5u8; offset];
    buf.extend_from_slice(m.data.as_bytes());
    let data = HostBytes::from_vec(buf)
        .slice(offset, m.size_bytes())
        .unwrap();
    assert_eq!(data.as_bytes().as_ptr() as usize % 2, offset % 2);
    Matrix::new("w", m.dtype, m.rows, m.cols, data).unwrap()
}

/// `sum_k |w_k x_k|` per output, the scale floating-point error is measured against.
fn abs_dot(w: &Matrix, x: &[f32], n_tokens: usize) -> Vec<f32> {
    let mut row = vec![0.0; w.cols];
    let mut out = vec![0.0; n_tokens * w.rows];
    for r in 0..w.rows {
        w.row_to_f32(r, &mut row);
        for t in 0..n_tokens {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            out[t * w.rows + r] = row.iter().zip(xt).map(|(a, b)| (a * b).abs()).sum();
        }
    }
    out
}

/// The magnitude of the terms a matmul's f32 sums add up, per output: [`abs_dot`], except that
/// the `_1` types (`w = d·q + m`) sum `d·q·x` and `m·x` as separate terms, which can cancel, so
/// their scale is `sum_k (|w_k - m| + |m|)·|x_k|` with `m` the minimum of `k`'s block.
fn term_scale(w: &Matrix, x: &[f32], n_tokens: usize) -> Vec<f32> {
    if !matches!(w.dtype, DType::Q4_1 | DType::Q5_1) {
        return abs_dot(w, x, n_tokens);
    }
    let mut row = vec![0.0; w.cols];
    let mut out = vec![0.0; n_tokens * w.rows];
    for r in 0..w.rows {
        w.row_to_f32(r, &mut row);
        let mins: Vec<f32> = w
            .row(r)
            .chunks(w.dtype.block_bytes())
            .map(|b| f16::from_le_bytes([b[2], b[3]]).to_f32())
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

#[test]
fn dispatch_picks_the_best_isa() {
    let available = Isa::available();
    assert_eq!(available[0], Isa::Scalar);
    if std::env::var(ISA_ENV).is_err() {
        assert_eq!(Some(&Isa::selected()), available.last());
        // On aarch64 (qemu included) the NEON paths must be the ones these tests exercise.
        #[cfg(target_arch = "aarch64")]
        assert!(isa_name().contains("neon"), "selected {}", isa_name());
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert!(isa_name().starts_with("avx"), "selected {}", isa_name());
        }
        // Per dtype the default may step down to a lower ISA, never to the scalar path.
        for dtype in ALL {
            let isa = Isa::selected_for(dtype);
            assert!(available.contains(&isa), "{dtype}: {isa:?}");
            assert!(
                available.len() == 1 || isa != Isa::Scalar,
                "{dtype}: scalar"
            );
        }
    } else {
        for dtype in ALL {
            assert_eq!(Isa::selected_for(dtype), Isa::selected(), "forced, {dtype}");
        }
    }
    let per_dtype: Vec<String> = ALL
        .iter()
        .map(|&d| format!("{d}: {}", Isa::selected_for(d).name()))
        .collect();
    println!(
        "available: {available:?}, selected: {} ({})",
        isa_name(),
        per_dtype.join(", ")
    );
}

/// Every ISA (scalar through the pool included) against `matmul_ref`, for every weight dtype.
///
/// Tolerances. f32/f16/bf16: both sides sum the same exact products (f16/bf16 widen exactly) in a
/// different order; the rounding error of an n-term f32 sum behaves like a random walk of about
/// sqrt(n)·2^-24·Σ|w·x| (≈ 4e-6·Σ at n = 4096), so 3e-5·Σ|w·x| leaves a wide margin while a single
/// dropped or doubled term at n = 4096 (≈ Σ/n = 2.4e-4·Σ) fails it. Q8_0/Q4_0: every block dot is
/// an exact i32 on both sides; only the f32 accumulation of at most 8·n/32 scaled partial sums
/// differs, so the bound is tighter: 1e-5·Σ|w·x|. Q4_1/Q5_1 add a second per-block term, `m·Σx`,
/// summed apart, and the two may cancel: the same 1e-5 applies to the magnitude of the terms
/// summed ([`term_scale`]), here 2.7-5.6× Σ|w·x|.
#[test]
fn every_isa_matches_the_scalar_reference() {
    let pools: Vec<ThreadPool> = [1, 2, 3].into_iter().map(ThreadPool::new).collect();
    let shapes = [(5, 32), (13, 64), (7, 96), (37, 4096)];
    let mut checked = 0;
    // The largest error seen per dtype, as a fraction of its tolerance.
    let mut worst = std::collections::BTreeMap::<String, f32>::new();
    for isa in Isa::available() {
        for dtype in ALL {
            for (si, &(rows, cols)) in shapes.iter().enumerate() {
                let w = matrix(dtype, rows, cols, 7 + si as u64, si % 2);
                for n_tokens in [1usize, 3, 7, 16] {
                    let x = values(n_tokens * cols, 100 + n_tokens as u64);
                    let mut want = vec![0.0; n_tokens * rows];
                    matmul_ref(&w, &x, n_tokens, &mut want);
                    let scale = term_scale(&w, &x, n_tokens);
                    let rel = if dtype.is_quantized() { 1e-5 } else { 3e-5 };
                    for pool in &pools {
                        let mut got = vec![f32::NAN; n_tokens * rows];
                        matmul_with_isa(isa, pool, &w, &x, n_tokens, &mut got);
                        for i in 0..got.len() {
                            let tol = rel * scale[i] + 1e-30;
                            let seen = worst.entry(dtype.name().to_string()).or_default();
                            *seen = seen.max((got[i] - want[i]).abs() / tol);
                            assert!(
                                (got[i] - want[i]).abs() <= tol,
                                "{} {dtype} [{rows}x{cols}] n_tokens={n_tokens} threads={} out {i}: \
                                 {} vs reference {} (tol {tol})",
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
    println!("{checked} matmuls checked; largest error / tolerance: {worst:?}");
}

/// Every block dot is an exact i32 on every ISA, including the extremes the int8 tricks must
/// survive (weights of -128 and ±127, all-nibble-0 and all-nibble-15 Q4_0 blocks, all-0 and
/// all-31 five-bit values, every fifth bit set or clear, activations at ±127). With unit scales,
/// integer minimums and integer activations (one ±127 per block, so the Q8_0 scale is exactly 1)
/// every product, block dot, `m·Σx` term and partial sum is an integer below 2^24, so the f32
/// accumulation is exact in any order and all ISAs must agree bit for bit.
#[test]
fn quantized_block_dots_are_exact() {
    let pool = ThreadPool::new(2);
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut checked = 0;
    // 16 blocks (pairs only) and 15 (an odd last block); 9 rows and 5/9 tokens leave tile tails.
    for cols in [512usize, 480] {
        let nb = cols / 32;
        let rows = 9;
        for dtype in QUANT {
            let mut bytes = Vec::new();
            for r in 0..rows {
                for b in 0..nb {
                    let case = (r + b) % 4;
                    bytes.extend_from_slice(&f16::ONE.to_le_bytes());
                    if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                        // Minimums from -16 to +12, so weights reach -16..=43.
                        let m = ((r * 7 + b * 3) % 8) as f32 * 4.0 - 16.0;
                        bytes.extend_from_slice(&f16::from_f32(m).to_le_bytes());
                    }
                    // Case 0: every value at its lowest, case 1: at its highest (Q8_0: -128 and
                    // random), otherwise random bytes; the Q5 fifth bits follow the same cases.
                    let fill = |next: &mut dyn FnMut() -> u64| match case {
                        0 if dtype == DType::Q8_0 => 0x80,
                        0 => 0x00,
                        1 if dtype != DType::Q8_0 => 0xFF,
                        _ => next() as u8,
                    };
                    if matches!(dtype, DType::Q5_0 | DType::Q5_1) {
                        for _ in 0..4 {
                            bytes.push(fill(&mut next));
                        }
                    }
                    let n = if dtype == DType::Q8_0 { 32 } else { 16 };
                    for _ in 0..n {
                        bytes.push(fill(&mut next));
                    }
                }
            }
            assert_eq!(bytes.len(), rows * dtype.row_bytes(cols).unwrap());
            let w = Matrix::new("w", dtype, rows, cols, HostBytes::from_vec(bytes)).unwrap();
            for n_tokens in [1usize, 5, 9] {
                let x: Vec<f32> = (0..n_tokens * cols)
                    .map(|i| match (i / 32 + i % 7) % 5 {
                        0 => 127.0,
                        1 => -127.0,
                        _ if i % 32 == 0 => 127.0,
                        _ => f32::from((next() % 255) as u8) - 127.0,
                    })
                    .collect();
                let mut want = vec![0.0; n_tokens * rows];
                matmul_ref(&w, &x, n_tokens, &mut want);
                // The activations quantize to themselves, so the reference is the exact integer
                // dot with the dequantized weights.
                let mut row = vec![0.0f32; cols];
                for r in 0..rows {
                    w.row_to_f32(r, &mut row);
                    for t in 0..n_tokens {
                        let xt = &x[t * cols..(t + 1) * cols];
                        let exact: f64 = row.iter().zip(xt).map(|(a, b)| f64::from(a * b)).sum();
                        assert_eq!(f64::from(want[t * rows + r]), exact, "{dtype} r={r} t={t}");
                    }
                }
                for isa in Isa::available() {
                    for offset in [0usize, 1] {
                        let wo = at_offset(&w, offset);
                        let mut got = vec![f32::NAN; n_tokens * rows];
                        matmul_with_isa(isa, &pool, &wo, &x, n_tokens, &mut got);
                        assert_eq!(
                            got,
                            want,
                            "{} {dtype} [{rows}x{cols}] n_tokens={n_tokens} offset={offset}",
                            isa.name()
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("{checked} exact matmuls checked");
}

/// Quantized matmul against an f32 matmul on the dequantized weights. The only difference is the
/// Q8_0 quantization of x: per block, `|x - x̂| <= d·(0.5 + 127·2^-11) + rounding < 0.57·d` with
/// `d = max|x_block| / 127` (the 127·2^-11 term is the f16 rounding of the scale), so
/// `|y_q - y_f| <= sum_k |w_k|·0.57·d_block(k)` plus 1e-5·Σ|w·x| for f32 summation order.
#[test]
fn quantized_matmul_error_is_bounded_by_activation_quantization() {
    let pool = ThreadPool::new(2);
    let (rows, cols, n_tokens) = (24, 512, 5);
    for dtype in QUANT {
        let wq = matrix(dtype, rows, cols, 3, 0);
        let wf = wq.convert(DType::F32, &pool).unwrap();
        let x = values(n_tokens * cols, 11);
        let mut yq = vec![0.0; n_tokens * rows];
        let mut yf = vec![0.0; n_tokens * rows];
        matmul(&pool, &wq, &x, n_tokens, &mut yq);
        matmul_ref(&wf, &x, n_tokens, &mut yf);
        let scale = abs_dot(&wf, &x, n_tokens);
        let terms = term_scale(&wq, &x, n_tokens);
        let mut row = vec![0.0; cols];
        for r in 0..rows {
            wf.row_to_f32(r, &mut row);
            for t in 0..n_tokens {
                let xt = &x[t * cols..(t + 1) * cols];
                let bound: f32 = row
                    .chunks(32)
                    .zip(xt.chunks(32))
                    .map(|(wb, xb)| {
                        let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
                        wb.iter().map(|w| w.abs()).sum::<f32>() * 0.57 * d
                    })
                    .sum::<f32>()
                    + 1e-5 * terms[t * rows + r];
                let (a, b) = (yq[t * rows + r], yf[t * rows + r]);
                assert!(
                    (a - b).abs() <= bound,
                    "{dtype} r={r} t={t}: {a} vs {b}, bound {bound}"
                );
                // The bound is not vacuous: it is a small fraction of the output's scale.
                assert!(bound < 0.05 * scale[t * rows + r]);
            }
        }
    }
}

#[test]
fn matmul_ref_known_values() {
    // W = [[1, 2], [3, 4], [5, 6]], x = [[1, 1], [0.5, -1]] -> y = [[3, 7, 11], [-1.5, -2.5, -3.5]].
    let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let x = [1.0f32, 1.0, 0.5, -1.0];
    let want = [3.0f32, 7.0, 11.0, -1.5, -2.5, -3.5];
    let f = Matrix::new("w", DType::F32, 3, 2, HostBytes::from_vec(f32_bytes(&w))).unwrap();
    let pool = ThreadPool::new(2);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let m = f.convert(dtype, &pool).unwrap();
        let mut y = [0.0f32; 6];
        matmul_ref(&m, &x, 2, &mut y);
        assert_eq!(y, want, "{dtype}");
        matmul(&pool, &m, &x, 2, &mut y);
        assert_eq!(y, want, "{dtype} (dispatched)");
    }

    // Integer-valued rows whose largest magnitude makes the block scale exactly 1, so the
    // quantized values equal the inputs. x = 1 everywhere except x[31] = 127 (scale 1 as well).
    let mut x = vec![1.0f32; 32];
    x[31] = 127.0;
    // Q8_0 row: w[0] = 127, w[k] = k - 15 (k = 1..=31): 127 + (-14 + ... + 15 = 15) + 16·127 = 2174.
    let mut w8 = vec![127.0f32];
    w8.extend((1..32).map(|k| k as f32 - 15.0));
    // Q4_0 row: w[k] = k % 16 - 8 (first |max| is -8, so d = 1): (-8) + (-15) + 7·127 = 866.
    let w4: Vec<f32> = (0..32).map(|k| (k % 16) as f32 - 8.0).collect();
    // Q4_1 row: w[k] = k % 16 - 3 (min -3, max 12: d = 1, m = -3): 2·(120 - 48) + 126·12 = 1656.
    let w41: Vec<f32> = (0..32).map(|k| (k % 16) as f32 - 3.0).collect();
    // Q5_0 row: w[k] = k - 16 (first |max| is -16, so d = 1): (496 - 512) + 126·15 = 1874.
    let w50: Vec<f32> = (0..32).map(|k| k as f32 - 16.0).collect();
    // Q5_1 row: w[k] = k - 7 (min -7, max 24: d = 1, m = -7): (496 - 224) + 126·24 = 3296.
    let w51: Vec<f32> = (0..32).map(|k| k as f32 - 7.0).collect();
    for (dtype, wv, want) in [
        (DType::Q8_0, w8, 2174.0f32),
        (DType::Q4_0, w4, 866.0),
        (DType::Q4_1, w41, 1656.0),
        (DType::Q5_0, w50, 1874.0),
        (DType::Q5_1, w51, 3296.0),
    ] {
        let f = Matrix::new("w", DType::F32, 1, 32, HostBytes::from_vec(f32_bytes(&wv))).unwrap();
        let m = f.convert(dtype, &pool).unwrap();
        let mut y = [0.0f32];
        matmul_ref(&m, &x, 1, &mut y);
        assert_eq!(y[0], want, "{dtype}");
        matmul(&pool, &m, &x, 1, &mut y);
        assert_eq!(y[0], want, "{dtype} (dispatched)");
    }
}

#[test]
fn unaligned_weights_give_identical_results() {
    let pool = ThreadPool::new(2);
    for dtype in ALL {
        let w = matrix(dtype, 19, 160, 5, 0);
        let x = values(3 * 160, 9);
        for offset in [1usize, 3] {
            let wu = at_offset(&w, offset);
            for isa in Isa::available() {
                let mut a = vec![0.0; 3 * 19];
                let mut b = vec![0.0; 3 * 19];
                matmul_with_isa(isa, &pool, &w, &x, 3, &mut a);
                matmul_with_isa(isa, &pool, &wu, &x, 3, &mut b);
                assert_eq!(a, b, "{} {dtype} offset {offset}", isa.name());
            }
            let mut r = vec![0.0; 160];
            let mut ru = vec![0.0; 160];
            w.row_to_f32(7, &mut r);
            wu.row_to_f32(7, &mut ru);
            assert_eq!(r, ru);
        }
    }
}

#[test]
fn rms_norm_known_values() {
    // mean(x²) = 30/4 = 7.5, 1/sqrt(7.5) = 0.36514837.
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let w = [1.0f32, 1.0, 2.0, 0.5];
    let mut out = [0.0f32; 4];
    kernels::rms_norm(&x, &w, 0.0, &mut out);
    let want = [0.365_148_37f32, 0.730_296_7, 2.190_890_2, 0.730_296_7];
    for (a, b) in out.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{out:?}");
    }
    // eps matters: x = [3, 4], eps = 0.5 -> 1/sqrt(12.5 + 0.5) = 0.2773501.
    kernels::rms_norm(&[3.0, 4.0], &[1.0, 1.0], 0.5, &mut out[..2]);
    assert!((out[0] - 0.832_050_3).abs() < 1e-6 && (out[1] - 1.109_400_4).abs() < 1e-6);
}

#[test]
fn softmax_known_values() {
    let mut x = [1.0f32, 2.0, 3.0];
    kernels::softmax(&mut x);
    let want = [0.090_030_57f32, 0.244_728_47, 0.665_240_94];
    for (a, b) in x.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{x:?}");
    }
    // Large inputs do not overflow (max-subtracted).
    let mut x = [1000.0f32, 1000.0, 999.0];
    kernels::softmax(&mut x);
    assert!(
        (x[0] - 0.422_318_6).abs() < 1e-6 && (x[2] - 0.155_362_8).abs() < 1e-6,
        "{x:?}"
    );
    // Masked entries get exactly zero.
    let mut x = [0.5f32, f32::NEG_INFINITY];
    kernels::softmax(&mut x);
    assert_eq!(x, [1.0, 0.0]);
}

#[test]
fn silu_mul_known_values() {
    // silu(1) = 1/(1+e^-1) = 0.7310586, silu(-1) = -0.26894143, silu(2) = 1.7615942.
    let mut g = [0.0f32, 1.0, -1.0, 2.0];
    kernels::silu_mul(&mut g, &[5.0, 2.0, 3.0, 0.5]);
    let want = [0.0f32, 1.462_117_2, -0.806_824_3, 0.880_797_1];
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{g:?}");
    }
}

/// dot/axpy/add against the scalar versions; dot within the same summation-order bound as matmul.
#[test]
fn vector_helpers_match_scalar() {
    for n in [0usize, 1, 7, 8, 33, 100, 1000, 4099] {
        let a = values(n, 1);
        let b = values(n, 2);
        let want = scalar::dot(&a, &b);
        let scale: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
        assert!(
            (kernels::dot(&a, &b) - want).abs() <= 3e-5 * scale + 1e-30,
            "dot n={n}"
        );
        let mut y = b.clone();
        let mut y_ref = b.clone();
        kernels::axpy(0.75, &a, &mut y);
        scalar::axpy(0.75, &a, &mut y_ref);
        for (p, q) in y.iter().zip(&y_ref) {
            // One FMA vs multiply-then-add: at most one rounding apart.
            assert!(
                (p - q).abs() <= 2.0 * f32::EPSILON * q.abs().max(1.0),
                "axpy n={n}"
            );
        }
        let mut y = b.clone();
        kernels::add(&mut y, &a);
        for i in 0..n {
            assert_eq!(y[i], a[i] + b[i]);
        }
    }
}

#[test]
fn convert_round_trips() {
    let pool = ThreadPool::new(3);
    // f16-representable values survive f32 -> f16 -> f32 exactly, bf16-representable ones bf16.
    let vals: Vec<f32> = (-256..256)
        .map(|k| k as f32 / 64.0)
        .chain([65504.0, -65504.0, 6.103_515_6e-5, 5.960_464_5e-8, 0.0])
        .collect();
    let cols = vals.len();
    let f = Matrix::new(
        "v",
        DType::F32,
        1,
        cols,
        HostBytes::from_vec(f32_bytes(&vals)),
    )
    .unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let back = f
            .convert(dtype, &pool)
            .unwrap()
            .convert(DType::F32, &pool)
            .unwrap();
        let mut out = vec![0.0; cols];
        back.row_to_f32(0, &mut out);
        for (a, b) in out.iter().zip(&vals) {
            let representable = match dtype {
                DType::F16 => f16::from_f32(*b).to_f32() == *b,
                _ => bf16::from_f32(*b).to_f32() == *b,
            };
            if representable {
                assert_eq!(a, b, "{dtype}");
            }
        }
        assert_eq!(back.size_bytes(), cols * 4);
    }

    // q8_0 / q4_0 bytes equal the hal reference blocks, row by row.
    let (rows, cols) = (7, 96);
    let v = values(rows * cols, 21);
    let f = Matrix::new(
        "v",
        DType::F32,
        rows,
        cols,
        HostBytes::from_vec(f32_bytes(&v)),
    )
    .unwrap();
    let q8 = f.convert(DType::Q8_0, &pool).unwrap();
    let q4 = f.convert(DType::Q4_0, &pool).unwrap();
    let mut want8 = Vec::new();
    let mut want4 = Vec::new();
    for row in v.chunks(cols) {
        let mut b8 = vec![BlockQ8_0::default(); cols / 32];
        quantize_row_q8_0(row, &mut b8);
        for b in &b8 {
            want8.extend_from_slice(&b.d.to_le_bytes());
            want8.extend(b.qs.iter().map(|&q| q as u8));
        }
        let mut b4 = vec![BlockQ4_0::default(); cols / 32];
        quantize_row_q4_0(row, &mut b4);
        for b in &b4 {
            want4.extend_from_slice(&b.d.to_le_bytes());
            want4.extend_from_slice(&b.qs);
        }
    }
    assert_eq!(q8.data.as_bytes(), &want8[..]);
    assert_eq!(q4.data.as_bytes(), &want4[..]);
    assert_eq!(q8.size_bytes(), rows * cols / 32 * 34);
    assert_eq!(q4.size_bytes(), rows * cols / 32 * 18);
    for (dtype, block_bytes) in [(DType::Q4_1, 20), (DType::Q5_0, 22), (DType::Q5_1, 24)] {
        let q = f.convert(dtype, &pool).unwrap();
        let mut want = vec![0u8; rows * cols / 32 * block_bytes];
        for (row, out) in v.chunks(cols).zip(want.chunks_mut(cols / 32 * block_bytes)) {
            quantize_row(dtype, row, out);
        }
        assert_eq!(q.data.as_bytes(), &want[..], "{dtype}");
    }

    // A quantized source is dequantized first: q8_0 -> f16 equals f16 of the dequantized values,
    // and re-quantizing the dequantized q8_0 reproduces the same blocks.
    let h = q8.convert(DType::F16, &pool).unwrap();
    let mut deq = vec![0.0; cols];
    let mut hrow = vec![0.0; cols];
    for r in 0..rows {
        q8.row_to_f32(r, &mut deq);
        h.row_to_f32(r, &mut hrow);
        for (a, b) in hrow.iter().zip(&deq) {
            assert_eq!(*a, f16::from_f32(*b).to_f32());
        }
    }
    let again = q8
        .convert(DType::F32, &pool)
        .unwrap()
        .convert(DType::Q8_0, &pool)
        .unwrap();
    assert_eq!(again.data.as_bytes(), q8.data.as_bytes());
    assert!(f.convert(DType::I32, &pool).is_err());
}

#[test]
fn from_tensor_checks_type_and_size() {
    let t = Tensor::from_f32("blk.0.w", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let m = Matrix::from_tensor(&t).unwrap();
    assert_eq!((m.rows, m.cols, m.dtype), (2, 3, DType::F32));
    let v = Tensor::from_f32("norm", vec![3], &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(Matrix::from_tensor(&v).unwrap().rows, 1);

    let ids = Tensor {
        name: "ids".into(),
        dtype: DType::I32,
        shape: vec![2],
        data: HostBytes::from_vec(vec![0; 8]),
    };
    let e = Matrix::from_tensor(&ids).unwrap_err().to_string();
    assert!(e.contains("ids") && e.contains("i32"), "{e}");

    let short = Tensor {
        name: "short".into(),
        dtype: DType::F16,
        shape: vec![2, 4],
        data: HostBytes::from_vec(vec![0; 15]),
    };
    assert!(Matrix::from_tensor(&short)
        .unwrap_err()
        .to_string()
        .contains("short"));
    let partial = Tensor {
        name: "partial".into(),
        dtype: DType::Q8_0,
        shape: vec![1, 33],
        data: HostBytes::from_vec(vec![0; 34]),
    };
    assert!(Matrix::from_tensor(&partial)
        .unwrap_err()
        .to_string()
        .contains("partial"));
    let cube = Tensor::from_f32("cube", vec![1, 1, 2], &[1.0, 2.0]).unwrap();
    assert!(Matrix::from_tensor(&cube).is_err());
}

/// `TANDEM_CPU_ISA=scalar` forces the scalar path: re-run this test binary with it set (through
/// cargo's target runner, e.g. qemu, when the tests themselves run under one).
#[test]
fn isa_env_forces_scalar() {
    let exe = std::env::current_exe().unwrap();
    let runner_var = format!(
        "CARGO_TARGET_{}_RUNNER",
        target_triple().to_ascii_uppercase().replace('-', "_")
    );
    let mut cmd = match std::env::var(&runner_var) {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut c = std::process::Command::new(parts.next().unwrap());
            c.args(parts).arg(exe);
            c
        }
        _ => std::process::Command::new(exe),
    };
    let out = cmd
        .args(["--exact", "report_isa_child", "--ignored", "--nocapture"])
        .env(ISA_ENV, "scalar")
        .output()
        .expect("re-running the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ISA=scalar"),
        "child said: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn target_triple() -> &'static str {
    if cfg!(all(target_arch = "aarch64", target_os = "linux")) {
        "aarch64-unknown-linux-gnu"
    } else if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        "x86_64-unknown-linux-gnu"
    } else {
        "unknown"
    }
}

#[test]
#[ignore = "run by isa_env_forces_scalar"]
fn report_isa_child() {
    println!("ISA={}", isa_name());
}
