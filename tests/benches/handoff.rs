//! The NPU→CPU KV handoff of one prefill chunk: `handoff` on 1, 2 and 4 threads against the
//! previous path (token-major f32 rows per layer, then `KvCache::write`), for a Qwen2-0.5B-shaped
//! cache (24 layers, 2 KV heads, head_dim 64, a full AR-128 chunk, capacity 1024) and a
//! test-fixture-sized one (4 layers, 2 KV heads, head_dim 16, 5 valid tokens of an AR-8 chunk).
//! Throughput is the fp16 K/V bytes read from the graph outputs ([`ChunkOutput::kv_bytes`]).
//!
//! `cargo bench -p tandem-tests --bench handoff -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tandem_hal::{ChunkOutput, KvCache};
use tandem_qnn::KvLayout;
use tandem_scheduler::handoff::handoff;

struct Shape {
    name: &'static str,
    layers: usize,
    layout: KvLayout,
    n_tokens: usize,
    capacity: usize,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "qwen2-0.5b",
        layers: 24,
        layout: KvLayout {
            n_kv_heads: 2,
            head_dim: 64,
            past: 1024 - 128,
            chunk: 128,
        },
        n_tokens: 128,
        capacity: 1024,
    },
    Shape {
        name: "fixture",
        layers: 4,
        layout: KvLayout {
            n_kv_heads: 2,
            head_dim: 16,
            past: 64 - 8,
            chunk: 8,
        },
        n_tokens: 5,
        capacity: 64,
    },
];

fn chunk(s: &Shape) -> ChunkOutput {
    let elems = s.layout.new_kv_bytes() / 2;
    let raw = |seed: u64| -> Vec<Vec<u8>> {
        (0..s.layers as u64)
            .map(|l| tandem_qnn::conv::random_f16_bytes(elems, seed + l))
            .collect()
    };
    tandem_qnn::chunk_output_from_parts(0, s.n_tokens, s.layout, Vec::new(), raw(1), raw(1000))
        .expect("consistent parts")
}

fn bench(c: &mut Criterion) {
    for s in &SHAPES {
        let out = chunk(s);
        let mut cache =
            KvCache::with_shape(s.layers, s.layout.n_kv_heads, s.layout.head_dim, s.capacity);
        let mut g = c.benchmark_group(format!("handoff/{}", s.name));
        g.throughput(Throughput::Bytes(out.kv_bytes() as u64));
        for threads in [1, 2, 4] {
            g.bench_with_input(BenchmarkId::new("handoff", threads), &threads, |b, &t| {
                b.iter(|| {
                    cache.truncate(0);
                    handoff(&out, &mut cache, t).expect("fits")
                })
            });
        }
        g.bench_function("rows_then_write", |b| {
            b.iter(|| {
                cache.truncate(0);
                for l in 0..out.n_layers() {
                    cache.write(l, 0, &out.k_rows(l), &out.v_rows(l));
                }
                cache.advance(out.n_tokens);
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
