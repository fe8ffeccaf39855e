//! Chrome trace layer: lanes, sub-lanes, nesting, fields and the written file.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use tandem_scheduler::trace::{chrome_trace_layer, lanes_overlap, TraceGuard};
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

fn setup() -> (Dispatch, TraceGuard) {
    let (layer, guard) = chrome_trace_layer(std::env::temp_dir().join("tandem-trace-unused.json"));
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        guard,
    )
}

fn pause() {
    thread::sleep(Duration::from_millis(3));
}

fn events(trace: &Value) -> &Vec<Value> {
    trace["traceEvents"].as_array().expect("traceEvents array")
}

fn spans<'a>(trace: &'a Value, name: &str) -> Vec<&'a Value> {
    events(trace)
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"] == name)
        .collect()
}

fn span<'a>(trace: &'a Value, name: &str) -> &'a Value {
    let found = spans(trace, name);
    assert_eq!(found.len(), 1, "expected one span named {name}: {trace:#}");
    found[0]
}

fn thread_name(trace: &Value, tid: u64) -> Option<String> {
    events(trace)
        .iter()
        .find(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["tid"] == tid)
        .and_then(|e| e["args"]["name"].as_str())
        .map(str::to_owned)
}

/// Every thread id's complete events must form properly nested intervals.
fn assert_properly_nested(trace: &Value) {
    let mut by_tid: std::collections::BTreeMap<u64, Vec<(f64, f64)>> = Default::default();
    for e in events(trace).iter().filter(|e| e["ph"] == "X") {
        let ts = e["ts"].as_f64().unwrap();
        let dur = e["dur"].as_f64().unwrap();
        by_tid
            .entry(e["tid"].as_u64().unwrap())
            .or_default()
            .push((ts, ts + dur));
    }
    const EPS: f64 = 1e-6;
    for (tid, mut spans) in by_tid {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut stack: Vec<f64> = Vec::new();
        for (start, end) in spans {
            while stack.last().is_some_and(|&e| e <= start + EPS) {
                stack.pop();
            }
            if let Some(&top) = stack.last() {
                assert!(
                    end <= top + EPS,
                    "tid {tid}: [{start}, {end}] crosses a span ending at {top}"
                );
            }
            stack.push(end);
        }
    }
}

#[test]
fn overlapping_npu_and_cpu_threads_get_two_lanes() {
    let (dispatch, guard) = setup();
    let both_open = Arc::new(Barrier::new(2));
    let both_done = Arc::new(Barrier::new(2));
    thread::scope(|s| {
        for lane in ["npu", "cpu"] {
            let (dispatch, both_open, both_done) = (&dispatch, &both_open, &both_done);
            s.spawn(move || {
                tracing::dispatcher::with_default(dispatch, || {
                    let name_span = if lane == "npu" {
                        tracing::info_span!(
                            "prefill_chunk",
                            lane = "npu",
                            session = 1u64,
                            chunk = 0u64
                        )
                    } else {
                        tracing::info_span!(
                            "decode_step",
                            lane = "cpu",
                            session = 0u64,
                            step = 3u64
                        )
                    };
                    let _entered = name_span.enter();
                    both_open.wait();
                    pause();
                    both_done.wait();
                });
            });
        }
    });
    let trace = guard.snapshot();
    let npu = span(&trace, "prefill_chunk");
    let cpu = span(&trace, "decode_step");
    assert_eq!(
        (npu["tid"].as_u64(), npu["cat"].as_str()),
        (Some(1), Some("npu"))
    );
    assert_eq!(
        (cpu["tid"].as_u64(), cpu["cat"].as_str()),
        (Some(2), Some("cpu"))
    );
    assert_eq!(thread_name(&trace, 1).as_deref(), Some("npu"));
    assert_eq!(thread_name(&trace, 2).as_deref(), Some("cpu"));
    assert!(lanes_overlap(&trace, "npu", "cpu"));
    assert!(lanes_overlap(&trace, "cpu", "npu"));
    assert!(!lanes_overlap(&trace, "npu", "npu"));
    assert_eq!(npu["pid"], 1);
    assert_eq!(npu["args"]["session"], 1);
    assert_properly_nested(&trace);
}

#[test]
fn sequential_lanes_do_not_overlap() {
    let (dispatch, guard) = setup();
    thread::scope(|s| {
        s.spawn(|| {
            tracing::dispatcher::with_default(&dispatch, || {
                let _s = tracing::info_span!("prefill_chunk", lane = "npu").entered();
                pause();
            })
        })
        .join()
        .unwrap();
        pause();
        s.spawn(|| {
            tracing::dispatcher::with_default(&dispatch, || {
                let _s = tracing::info_span!("decode_step", lane = "cpu").entered();
                pause();
            })
        });
    });
    let trace = guard.snapshot();
    assert_eq!(spans(&trace, "prefill_chunk").len(), 1);
    assert_eq!(spans(&trace, "decode_step").len(), 1);
    assert!(!lanes_overlap(&trace, "npu", "cpu"));
    assert!(!lanes_overlap(&trace, "npu", "gpu"));
}

#[test]
fn lanes_are_inherited_and_spans_nest() {
    let (dispatch, guard) = setup();
    tracing::dispatcher::with_default(&dispatch, || {
        let _request =
            tracing::info_span!("request", session = 7u64, prompt_tokens = 40u64).entered();
        {
            let _wait = tracing::info_span!("queue_wait", session = 7u64).entered();
            pause();
        }
        let _prefill = tracing::info_span!("prefill_chunk", lane = "npu", chunk = 0u64).entered();
        let _inner = tracing::info_span!("htp_execute").entered();
        pause();
        let _other = tracing::info_span!("loader", lane = "disk").entered();
        pause();
    });
    let trace = guard.snapshot();
    let request = span(&trace, "request");
    assert_eq!(request["cat"], "scheduler");
    assert_eq!(request["tid"], 3);
    assert_eq!(span(&trace, "queue_wait")["cat"], "scheduler");
    let prefill = span(&trace, "prefill_chunk");
    let inner = span(&trace, "htp_execute");
    assert_eq!(
        (inner["cat"].as_str(), inner["tid"].as_u64()),
        (Some("npu"), Some(1))
    );
    let other = span(&trace, "loader");
    assert_eq!(
        (other["cat"].as_str(), other["tid"].as_u64()),
        (Some("disk"), Some(4))
    );
    assert_eq!(thread_name(&trace, 4).as_deref(), Some("disk"));

    // The child lies inside its parent in time.
    let (p0, p1) = (
        prefill["ts"].as_f64().unwrap(),
        prefill["ts"].as_f64().unwrap() + prefill["dur"].as_f64().unwrap(),
    );
    let (c0, c1) = (
        inner["ts"].as_f64().unwrap(),
        inner["ts"].as_f64().unwrap() + inner["dur"].as_f64().unwrap(),
    );
    assert!(
        p0 <= c0 && c1 <= p1 + 1e-6,
        "child [{c0}, {c1}] outside parent [{p0}, {p1}]"
    );
    assert!(
        inner["dur"].as_f64().unwrap() >= 2000.0,
        "dur is in microseconds"
    );
    assert_properly_nested(&trace);
}

#[test]
fn fields_recorded_later_appear_in_args() {
    let (dispatch, guard) = setup();
    tracing::dispatcher::with_default(&dispatch, || {
        let chunk = tracing::info_span!(
            "prefill_chunk",
            lane = "npu",
            session = 2u64,
            chunk = 1u64,
            tokens = 20u64,
            padded_to = 32u64,
            htp_cycles = tracing::field::Empty,
        );
        chunk.in_scope(pause);
        chunk.record("htp_cycles", 123_456_789u64);
        let late = tracing::info_span!(
            "handoff",
            lane = tracing::field::Empty,
            bytes = 4096u64,
            layers = 2u64
        );
        late.record("lane", "cpu");
        late.record("bytes", 8192u64);
        let _ = tracing::info_span!("decode_step", lane = "cpu", ratio = 0.5f64, ok = true, note = ?("x", 1), step = -1i64);
    });
    let trace = guard.snapshot();
    let chunk = span(&trace, "prefill_chunk");
    let args = &chunk["args"];
    assert_eq!(args["htp_cycles"], 123_456_789u64);
    assert_eq!(args["tokens"], 20);
    assert_eq!(args["padded_to"], 32);
    assert_eq!(args["session"], 2);
    assert_eq!(args["chunk"], 1);
    assert_eq!(args["lane"], "npu");
    let handoff = span(&trace, "handoff");
    assert_eq!(handoff["cat"], "cpu");
    assert_eq!(handoff["tid"], 2);
    assert_eq!(handoff["args"]["bytes"], 8192);
    assert_eq!(handoff["args"]["layers"], 2);
    let step = &span(&trace, "decode_step")["args"];
    assert_eq!(step["ratio"], 0.5);
    assert_eq!(step["ok"], true);
    assert_eq!(step["note"], "(\"x\", 1)");
    assert_eq!(step["step"], -1);
}

#[test]
fn overlap_without_nesting_moves_to_a_sub_lane() {
    let (dispatch, guard) = setup();
    tracing::dispatcher::with_default(&dispatch, || {
        // a: [0, 4], b: [1, 5] cross each other; c is b's child but also fits inside a.
        let a = tracing::info_span!("decode_step", lane = "cpu", session = 0u64);
        pause();
        let b = tracing::info_span!("decode_step", lane = "cpu", session = 1u64);
        pause();
        let c = tracing::info_span!(parent: &b, "attention");
        pause();
        drop(c);
        pause();
        drop(a);
        pause();
        drop(b);
    });
    let trace = guard.snapshot();
    let steps = spans(&trace, "decode_step");
    assert_eq!(steps.len(), 2);
    let tid_of = |session: u64| {
        steps
            .iter()
            .find(|e| e["args"]["session"] == session)
            .unwrap()["tid"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(tid_of(0), 2);
    let sub = tid_of(1);
    assert_ne!(sub, 2);
    assert_eq!(thread_name(&trace, sub).as_deref(), Some("cpu#2"));
    let attention = span(&trace, "attention");
    assert_eq!(
        attention["tid"].as_u64(),
        Some(sub),
        "child stays with its parent's sub-lane"
    );
    assert_eq!(
        attention["cat"], "cpu",
        "sub-lanes keep the lane as category"
    );
    assert!(lanes_overlap(&trace, "cpu", "cpu"));
    assert_properly_nested(&trace);
}

#[test]
fn many_concurrent_sessions_stay_properly_nested() {
    let (dispatch, guard) = setup();
    let start = Barrier::new(4);
    thread::scope(|s| {
        for session in 0..4u64 {
            let (dispatch, start) = (&dispatch, &start);
            s.spawn(move || {
                tracing::dispatcher::with_default(dispatch, || {
                    start.wait();
                    let _r = tracing::info_span!("request", session).entered();
                    for step in 0..5u64 {
                        let _d = tracing::info_span!("decode_step", lane = "cpu", session, step)
                            .entered();
                        thread::sleep(Duration::from_micros(300 * (session + 1)));
                    }
                });
            });
        }
    });
    let trace = guard.snapshot();
    assert_eq!(spans(&trace, "decode_step").len(), 20);
    assert_properly_nested(&trace);
}

#[test]
fn lane_events_become_instants() {
    let (dispatch, guard) = setup();
    tracing::dispatcher::with_default(&dispatch, || {
        let _s = tracing::info_span!("prefill_chunk", lane = "npu").entered();
        tracing::info!(lane = "npu", chunk = 3u64, "npu fault injected");
        tracing::info!(session = 1u64, "no lane: not in the trace");
    });
    let trace = guard.snapshot();
    let instants: Vec<&Value> = events(&trace).iter().filter(|e| e["ph"] == "i").collect();
    assert_eq!(instants.len(), 1, "{trace:#}");
    let i = instants[0];
    assert_eq!(i["name"], "npu fault injected");
    assert_eq!(i["tid"], 1);
    assert_eq!(i["cat"], "npu");
    assert_eq!(i["args"]["chunk"], 3);
    assert!(i["ts"].as_f64().is_some());
}

#[test]
fn open_spans_are_cut_and_marked() {
    let (dispatch, guard) = setup();
    let open = tracing::dispatcher::with_default(&dispatch, || {
        tracing::info_span!("request", session = 1u64)
    });
    pause();
    let trace = guard.snapshot();
    let request = span(&trace, "request");
    assert_eq!(request["args"]["unfinished"], true);
    assert!(request["dur"].as_f64().unwrap() > 0.0);
    drop(open);
    let trace = guard.snapshot();
    assert!(span(&trace, "request")["args"].get("unfinished").is_none());
}

#[test]
fn file_is_valid_json_that_round_trips() {
    let dir = std::env::temp_dir().join(format!("tandem-trace-test-{}", std::process::id()));
    let path = dir.join("nested/trace.json");
    let (layer, guard) = chrome_trace_layer(&path);
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        let _r = tracing::info_span!(
            "request",
            session = 1u64,
            prompt_tokens = 12u64,
            text = "quote \" and \\ and \n"
        )
        .entered();
        let _p = tracing::info_span!("prefill_chunk", lane = "npu", chunk = 0u64).entered();
    });
    assert_eq!(guard.path(), path);
    guard.finish().expect("write trace");

    let text = std::fs::read_to_string(&path).expect("trace file exists");
    let trace: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(trace["displayTimeUnit"], "ms");
    let again: Value = serde_json::from_str(&serde_json::to_string(&trace).unwrap()).unwrap();
    assert_eq!(trace, again);
    assert_eq!(
        span(&trace, "request")["args"]["text"],
        "quote \" and \\ and \n"
    );
    for e in events(&trace) {
        assert!(
            e["ph"].is_string() && e["pid"] == 1 && e["tid"].is_u64(),
            "bad event {e}"
        );
        if e["ph"] == "X" {
            assert!(e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() >= 0.0);
        }
    }

    // After finishing, the layer records nothing more and the file stays as written.
    tracing::dispatcher::with_default(&dispatch, || {
        let _late = tracing::info_span!("decode_step", lane = "cpu").entered();
    });
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    // Dropping the guard writes the file too.
    let path2 = dir.join("dropped.json");
    {
        let (layer, _guard) = chrome_trace_layer(&path2);
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            let _s = tracing::info_span!("decode_step", lane = "cpu").entered();
        });
    }
    let dropped: Value = serde_json::from_str(&std::fs::read_to_string(&path2).unwrap()).unwrap();
    assert_eq!(span(&dropped, "decode_step")["tid"], 2);
    let _ = std::fs::remove_dir_all(&dir);
}
