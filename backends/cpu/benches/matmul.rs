//! matmul on Qwen2-0.5B's MLP down-projection shape ([896, 4864]): decode matvec (reported as GB/s
//! of weights streamed) and a 64-token prefill (reported as multiply-adds per second), for every
//! weight dtype: every available ISA (scalar included) on 1 thread, and the ISA chosen by default
//! for that dtype on 2 threads; plus the fixed cost of one pool `run`.
//!
//! `cargo bench -p tandem-cpu --bench matmul -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tandem_cpu::kernels::{matmul_with_isa, Isa, Matrix};
use tandem_cpu::pool::ThreadPool;
use tandem_hal::{DType, HostBytes};

const ROWS: usize = 896;
const COLS: usize = 4864;
const PREFILL: usize = 64;
const DTYPES: [DType; 8] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
];

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn weights(dtype: DType, pool: &ThreadPool) -> Matrix {
    let bytes = values(ROWS * COLS, 7)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let f = Matrix::new("w", DType::F32, ROWS, COLS, HostBytes::from_vec(bytes)).unwrap();
    f.convert(dtype, pool).unwrap()
}

/// `(isa, threads)` pairs to measure for `dtype`: every available ISA on one thread (side by side,
/// so SIMD variants can be compared in one run), plus the default choice on two threads.
fn runs(dtype: DType, prefill: bool) -> Vec<(Isa, usize)> {
    let mut v: Vec<(Isa, usize)> = Isa::available().into_iter().map(|i| (i, 1)).collect();
    let default = Isa::selected_for(dtype);
    if default != Isa::Scalar || !prefill {
        v.push((default, 2));
    }
    v
}

fn bench(c: &mut Criterion) {
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let x = values(PREFILL * COLS, 3);
    let mut y = vec![0.0f32; PREFILL * ROWS];
    for dtype in DTYPES {
        let w = weights(dtype, &pools[1]);

        let mut g = c.benchmark_group(format!("matvec/{dtype}"));
        g.throughput(Throughput::Bytes(w.size_bytes() as u64));
        for (isa, nth) in runs(dtype, false) {
            let pool = &pools[nth - 1];
            let id = BenchmarkId::new(isa.name(), format!("{nth}t"));
            g.bench_function(id, |b| {
                b.iter(|| matmul_with_isa(isa, pool, &w, &x[..COLS], 1, &mut y[..ROWS]))
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("prefill{PREFILL}/{dtype}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements((PREFILL * ROWS * COLS) as u64));
        for (isa, nth) in runs(dtype, true) {
            let pool = &pools[nth - 1];
            let id = BenchmarkId::new(isa.name(), format!("{nth}t"));
            g.bench_function(id, |b| {
                b.iter(|| matmul_with_isa(isa, pool, &w, &x, PREFILL, &mut y))
            });
        }
        g.finish();
    }
}

/// Fixed cost of one `ThreadPool::run` (decode pays it ~10 times per layer per token).
fn pool_overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_run_empty");
    for n in [1usize, 2] {
        let pool = ThreadPool::new(n);
        g.bench_function(format!("{n}t"), |b| {
            b.iter(|| {
                pool.run(|ith, nth| {
                    std::hint::black_box((ith, nth));
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pool_overhead, bench);
criterion_main!(benches);
