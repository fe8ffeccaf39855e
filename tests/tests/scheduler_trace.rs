//! The engine's Chrome/Perfetto trace while two sessions run at once: one session's NPU prefill
//! chunks overlap the other's CPU decode steps, and both sessions still produce the tokens they
//! produce alone. Its own test binary, because the trace layer is the process-wide subscriber
//! (the engine's spans are created on its worker threads).

use std::sync::Arc;

use serde_json::Value;
use tandem::scheduler::trace::chrome_trace_layer;
use tandem::{
    Engine, EngineOptions, GenerateRequest, LoadOptions, Model, ModelSource, NpuOptions,
    PrefillPolicy, WeightFormat,
};
use tracing_subscriber::prelude::*;

/// `(ts, end)` of the complete events named `name` on lane `lane`.
fn spans(trace: &Value, name: &str, lane: &str) -> Vec<(f64, f64)> {
    trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"] == name && e["cat"] == lane)
        .map(|e| {
            let ts = e["ts"].as_f64().unwrap();
            (ts, ts + e["dur"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn npu_prefill_of_one_session_overlaps_cpu_decode_of_another() {
    let Some(lib) = tandem_tests::qnn_lib_dir() else {
        return;
    };
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("engine-trace.json");
    let (layer, guard) = chrome_trace_layer(&path);
    tracing_subscriber::registry().with(layer).init();

    let mut model = Model::load(
        &ModelSource::Path(tandem_tests::fixtures().join("llama-gqa/hf-f32")),
        &LoadOptions {
            threads: 1,
            cpu_weights: WeightFormat::AsStored,
        },
    )
    .unwrap();
    // The fixture was trained for 256 positions and the engine refuses longer contexts; this
    // test only needs a long decode to overlap with, so it states a longer trained length.
    model.loaded.spec.max_position_embeddings = 512;
    let model = Arc::new(model);
    let engine = Engine::new(
        model,
        EngineOptions {
            prefill: PrefillPolicy::Npu,
            ctx: 512,
            npu: NpuOptions {
                delegate: Some(tandem::delegates::qnn(tandem::qnn::QnnOptions {
                    lib_dir: Some(lib.into()),
                    cache_dir: Some(
                        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qnn-cache"),
                    ),
                    ..Default::default()
                })),
                chunks: vec![8],
                profiling: true,
                ..NpuOptions::default()
            },
            calibrate: false,
            fail_npu_chunk: None,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    // A decodes 500 tokens (~20 ms here), B's prompt is 12 NPU chunks (~50 ms each on the
    // simulator).
    let long_decode = GenerateRequest {
        ignore_eos: true,
        ..GenerateRequest::greedy(vec![1, 17, 33, 49], 500)
    };
    let long_prompt = GenerateRequest::greedy((0..96).map(|i| 5 + (i * 11) % 400).collect(), 4);
    let alone_a = engine
        .new_session()
        .generate(long_decode.clone(), |_| {})
        .unwrap();
    let alone_b = engine
        .new_session()
        .generate(long_prompt.clone(), |_| {})
        .unwrap();

    // Both at once: A's one-chunk prompt is queued on the NPU first, so A decodes on the CPU
    // while the NPU works through B's 12 chunks.
    let (a, b) = (engine.new_session(), engine.new_session());
    let mut ha = a.submit(long_decode).unwrap();
    let hb = b.submit(long_prompt).unwrap();
    let streamed: Vec<_> = ha.by_ref().filter_map(|t| t.id).collect();
    let out_a = ha.wait().unwrap();
    let out_b = hb.wait().unwrap();
    assert_eq!(streamed, out_a.generated);
    assert_eq!(
        out_a.generated.len(),
        500,
        "ignore_eos generates the full budget"
    );
    assert_eq!(out_a.generated, alone_a.generated);
    assert_eq!(out_b.generated, alone_b.generated);
    assert_eq!(out_b.stats.prefill_device, "npu");

    let trace = guard.snapshot();
    let npu = spans(&trace, "prefill_chunk", "npu");
    let decode = spans(&trace, "decode_step", "cpu");
    assert!(npu.len() >= 24, "both runs of B: {} NPU chunks", npu.len());
    let overlapping = npu
        .iter()
        .filter(|&&(n0, n1)| decode.iter().any(|&(d0, d1)| n0 < d1 && d0 < n1))
        .count();
    assert!(
        overlapping > 0,
        "no NPU prefill chunk overlaps a CPU decode step ({} chunks, {} steps)",
        npu.len(),
        decode.len()
    );
    assert!(tandem::scheduler::trace::lanes_overlap(
        &trace, "npu", "cpu"
    ));
    for name in ["request", "queue_wait", "handoff"] {
        assert!(
            trace["traceEvents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == name),
            "{name} spans are traced"
        );
    }
    let cycles = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "prefill_chunk" && e["cat"] == "npu")
        .all(|e| e["args"]["htp_cycles"].as_u64().unwrap_or(0) > 0);
    assert!(cycles, "every NPU chunk carries its HTP cycle estimate");
    guard.finish().unwrap();
    let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(written["traceEvents"].as_array().unwrap().len() > 100);
    eprintln!(
        "{overlapping} of {} NPU chunks overlap CPU decode steps; trace at {}",
        npu.len(),
        path.display()
    );
}
