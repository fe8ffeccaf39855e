//! matmul on Qwen2-0.5B's MLP down-projection shape ([896, 4864]): decode matvec (reported as GB/s
//! of weights streamed) and a 64-token prefill (reported as multiply-adds per second), for every
//! weight dtype, 1 and 2 threads, on the selected ISA and on the scalar path; plus the fixed cost
//! of one pool `run`.
//!
//! `cargo bench -p tandem-cpu --bench matmul -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tandem_cpu::kernels::{matmul_with_isa, Isa, Matrix};
use tandem_cpu::pool::ThreadPool;
use tandem_hal::{DType, HostBytes};

const ROWS: usize = 896;
const COLS: usize = 4864;
const PREFILL: usize = 64;
const DTYPES: [DType; 5] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
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

fn isas() -> Vec<Isa> {
    let all = Isa::available();
    let best = *all.last().unwrap();
    if best == Isa::Scalar {
        vec![best]
    } else {
        vec![best, Isa::Scalar]
    }
}

fn bench(c: &mut Criterion) {
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let x = values(PREFILL * COLS, 3);
    let mut y = vec![0.0f32; PREFILL * ROWS];
    for dtype in DTYPES {
        let w = weights(dtype, &pools[1]);

        let mut g = c.benchmark_group(format!("matvec/{dtype}"));
        g.throughput(Throughput::Bytes(w.size_bytes() as u64));
        for isa in isas() {
            for pool in &pools {
                let id = BenchmarkId::new(isa.name(), format!("{}t", pool.n_threads()));
                g.bench_function(id, |b| {
                    b.iter(|| matmul_with_isa(isa, pool, &w, &x[..COLS], 1, &mut y[..ROWS]))
                });
            }
        }
        g.finish();

        let mut g = c.benchmark_group(format!("prefill{PREFILL}/{dtype}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements((PREFILL * ROWS * COLS) as u64));
        for isa in isas() {
            for pool in &pools {
                // The scalar prefill is only a baseline; one thread count is enough.
                if isa == Isa::Scalar && pool.n_threads() > 1 {
                    continue;
                }
                let id = BenchmarkId::new(isa.name(), format!("{}t", pool.n_threads()));
                g.bench_function(id, |b| {
                    b.iter(|| matmul_with_isa(isa, pool, &w, &x, PREFILL, &mut y))
                });
            }
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
