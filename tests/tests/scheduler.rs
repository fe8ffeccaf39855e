//! The engine end to end: NPU prefill (QNN HTP simulator) → KV handoff → CPU decode, against the
//! CPU path and the transformers reference, for every fixture architecture; sessions across
//! turns; concurrency; cancellation; fault injection; context overflow.
//!
//! Token comparisons. The NPU computes in fp16: its logits differ from the f32 CPU path by up to
//! ~0.12 (measured in `backends/qnn/tests/prefill.rs`, logit scale ~24). Two greedy sequences are
//! therefore compared step by step while equal; where they first differ, the reference's top-1 /
//! top-2 margin at that step must be below [`NPU_TIE`] (a tie at fp16 precision), and comparison
//! stops there. A wrong cache handoff or position breaks a high-margin step at once.
//!
//! Tests that use the NPU run one at a time (`NPU`): concurrent `graphExecute` calls from several
//! QNN contexts fail on the simulator.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tandem::{
    Engine, EngineOptions, Error, GenerateRequest, LoadOptions, Model, ModelSource, NpuOptions,
    NpuState, PrefillPolicy, SamplingParams, WeightFormat,
};
use tandem_tests::{ids, qnn_lib_dir, reference, MODELS};

/// Largest reference top-1/top-2 margin at which NPU and CPU tokens may legitimately differ
/// (about 4× the largest logit error measured on the fixtures).
const NPU_TIE: f64 = 0.5;
/// The same for two f32 paths (CPU vs transformers): only summation order differs.
const F32_TIE: f64 = 2e-4;
const CHUNK: usize = 8;
const CTX: usize = 96;

static NPU: Mutex<()> = Mutex::new(());

fn npu_lock() -> MutexGuard<'static, ()> {
    NPU.lock().unwrap_or_else(|e| e.into_inner())
}

fn load(name: &str) -> Arc<Model> {
    let path = tandem_tests::fixtures().join(name).join("hf-f32");
    Arc::new(
        Model::load(
            &ModelSource::Path(path),
            &LoadOptions {
                threads: 2,
                cpu_weights: WeightFormat::AsStored,
            },
        )
        .expect("fixture loads"),
    )
}

fn npu_options(lib: &str) -> NpuOptions {
    NpuOptions {
        delegate: Some(tandem::delegates::qnn(tandem::qnn::QnnOptions {
            lib_dir: Some(lib.into()),
            cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qnn-cache")),
            ..Default::default()
        })),
        chunks: vec![CHUNK],
        profiling: true,
        ..NpuOptions::default()
    }
}

fn engine(model: &Arc<Model>, policy: PrefillPolicy, lib: Option<&str>) -> Engine {
    Engine::new(
        model.clone(),
        EngineOptions {
            prefill: policy,
            ctx: CTX,
            npu: lib.map(npu_options).unwrap_or_default(),
            calibrate: false,
            fail_npu_chunk: None,
            ..EngineOptions::default()
        },
    )
    .expect("engine starts")
}

fn greedy(prompt: &[u32], n: usize) -> GenerateRequest {
    GenerateRequest::greedy(prompt.to_vec(), n)
}

/// Top-1/top-2 margin of each generated step of `prompt` + `tokens` on the CPU (f32).
fn cpu_margins(model: &Model, prompt: &[u32], tokens: &[u32]) -> Vec<f64> {
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(tokens);
    let vocab = model.loaded.spec.vocab_size;
    let all = model.logits_all(&seq).unwrap();
    (0..tokens.len())
        .map(|i| {
            let row = &all[(prompt.len() - 1 + i) * vocab..][..vocab];
            let mut v: Vec<f32> = row.to_vec();
            v.sort_by(|a, b| b.total_cmp(a));
            (v[0] - v[1]) as f64
        })
        .collect()
}

/// Compares `got` with `want` as the module docs describe, with `tie` as the largest margin at
/// which they may differ; returns the steps compared.
fn assert_same_until_tie(
    what: &str,
    got: &[u32],
    want: &[u32],
    margins: &[f64],
    tie: f64,
) -> usize {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            assert!(
                margins[i] < tie,
                "{what}: step {i} differs ({g} vs {w}) although the reference margin is {:.3}\n got {got:?}\nwant {want:?}",
                margins[i]
            );
            return i;
        }
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: lengths differ\n got {got:?}\nwant {want:?}"
    );
    got.len()
}

#[test]
fn npu_prefill_gives_cpu_and_reference_tokens_on_every_architecture() {
    let Some(lib) = qnn_lib_dir() else { return };
    let _npu = npu_lock();
    let mut compared = (0, 0);
    for name in MODELS {
        let model = load(name);
        let r = reference(name);
        let npu = engine(&model, PrefillPolicy::Npu, Some(&lib));
        assert!(
            matches!(npu.npu_state(), NpuState::Ready { .. }),
            "{name}: {:?}",
            npu.npu_state()
        );
        let cpu = engine(&model, PrefillPolicy::Cpu, None);
        let prompts = r.json["prompts"].as_array().unwrap();
        let p1 = ids(&prompts[0]["ids"]);
        let p3 = ids(&prompts[2]["ids"]);
        // shorter than a chunk, exactly one chunk, several chunks ending mid-chunk
        let cases: Vec<(Vec<u32>, Option<usize>)> = vec![
            (p1.clone(), Some(0)),
            (p3[..CHUNK].to_vec(), None),
            (ids(&prompts[1]["ids"]), Some(1)),
            (p3.clone(), Some(2)),
        ];
        for (prompt, ref_index) in cases {
            let what = format!("{name} prompt of {} tokens", prompt.len());
            let n = 24;
            let on_npu = npu
                .new_session()
                .generate(greedy(&prompt, n), |_| {})
                .unwrap();
            let on_cpu = cpu
                .new_session()
                .generate(greedy(&prompt, n), |_| {})
                .unwrap();
            let s = &on_npu.stats;
            assert_eq!(s.prefill_device, "npu", "{what}: {s:?}");
            assert_eq!(s.fallback, None, "{what}");
            assert_eq!(s.chunks.len(), prompt.len().div_ceil(CHUNK), "{what}");
            assert!(s.chunks.iter().all(|c| c.padded_to == CHUNK));
            let spec = &model.loaded.spec;
            let kv_bytes = spec.n_layers * 2 * prompt.len() * spec.n_kv_heads * spec.head_dim * 2;
            assert_eq!(
                s.handoff_bytes, kv_bytes as u64,
                "{what}: fp16 K/V of every position"
            );
            assert!(
                s.htp_cycles.unwrap_or(0) > 0,
                "{what}: simulator cycle counts"
            );
            assert_eq!(on_cpu.stats.prefill_device, "cpu");

            let margins = cpu_margins(&model, &prompt, &on_cpu.generated);
            compared.0 += assert_same_until_tie(
                &what,
                &on_npu.generated,
                &on_cpu.generated,
                &margins,
                NPU_TIE,
            );
            compared.1 += n;
            if let Some(k) = ref_index {
                let want = ids(&prompts[k]["greedy"]);
                let ref_margins: Vec<f64> = prompts[k]["greedy_margins"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_f64().unwrap())
                    .collect();
                assert_same_until_tie(
                    &format!("{what} vs transformers"),
                    &on_npu.generated,
                    &want,
                    &ref_margins,
                    NPU_TIE,
                );
                // The CPU engine is the f32 path: equal to transformers up to true ties.
                assert_same_until_tie(
                    &format!("{what} cpu vs transformers"),
                    &on_cpu.generated,
                    &want,
                    &ref_margins,
                    F32_TIE,
                );
            }
        }
    }
    eprintln!(
        "NPU vs CPU: {} of {} greedy steps compared before a tie",
        compared.0, compared.1
    );
    assert!(
        compared.0 * 2 > compared.1,
        "most steps must be comparable: {compared:?}"
    );
}

#[test]
fn second_turn_prefills_on_the_npu_from_the_cached_conversation() {
    let Some(lib) = qnn_lib_dir() else { return };
    let _npu = npu_lock();
    for name in ["llama-gqa", "qwen3-qknorm"] {
        let model = load(name);
        let r = reference(name);
        let prompts = r.json["prompts"].as_array().unwrap();
        let turn1 = ids(&prompts[0]["ids"]);
        let turn2: Vec<u32> = ids(&prompts[2]["ids"])[1..12].to_vec();
        let npu = engine(&model, PrefillPolicy::Npu, Some(&lib));
        let chat = npu.new_session();
        let a = chat.generate(greedy(&turn1, 6), |_| {}).unwrap();
        let b = chat.generate(greedy(&turn2, 10), |_| {}).unwrap();
        let s = &b.stats;
        // The last token of turn 1 was sampled but not yet run: it leads turn 2's prefill.
        assert_eq!(s.cached_tokens, turn1.len() + 6 - 1, "{name}: {s:?}");
        assert_eq!(s.prefill_tokens, 1 + turn2.len(), "{name}");
        assert_eq!(s.prefill_device, "npu", "{name}");
        assert_eq!(
            s.chunks[0].start, s.cached_tokens,
            "{name}: past K/V fed as input"
        );
        assert!(s
            .chunks
            .iter()
            .all(|c| c.device == tandem::scheduler::Device::Npu));

        let mut whole = turn1.clone();
        whole.extend_from_slice(&a.generated);
        whole.extend_from_slice(&turn2);
        let cpu = engine(&model, PrefillPolicy::Cpu, None);
        let one_pass = cpu
            .new_session()
            .generate(greedy(&whole, 10), |_| {})
            .unwrap();
        let margins = cpu_margins(&model, &whole, &one_pass.generated);
        let n = assert_same_until_tie(
            &format!("{name} turn 2 vs one pass"),
            &b.generated,
            &one_pass.generated,
            &margins,
            NPU_TIE,
        );
        assert!(n >= 3, "{name}: only {n} steps comparable");
        assert_eq!(
            chat.tokens().unwrap().len(),
            whole.len() + b.generated.len()
        );
    }
}

#[test]
fn cpu_sessions_keep_their_cache_across_turns_exactly() {
    // Without the NPU the two-turn session and the one-pass run are the same f32 computation.
    let model = load("qwen2-tied");
    let cpu = engine(&model, PrefillPolicy::Cpu, None);
    let chat = cpu.new_session();
    let a = chat.generate(greedy(&[1, 20, 30, 40], 5), |_| {}).unwrap();
    let b = chat.generate(greedy(&[50, 60, 70], 7), |_| {}).unwrap();
    assert_eq!(b.stats.cached_tokens, 4 + 5 - 1);
    let mut whole = vec![1, 20, 30, 40];
    whole.extend_from_slice(&a.generated);
    whole.extend_from_slice(&[50, 60, 70]);
    let one = cpu
        .new_session()
        .generate(greedy(&whole, 7), |_| {})
        .unwrap();
    assert_eq!(b.generated, one.generated);
    // Rewinding to turn 1's prompt regenerates turn 1.
    chat.rewind(4).unwrap();
    assert_eq!(chat.cached_len().unwrap(), 4);
    let again = chat.generate(greedy(&[], 5), |_| {});
    assert!(
        matches!(again, Err(Error::InvalidInput(_))),
        "nothing pending after a full rewind to cached length: {again:?}"
    );
    chat.rewind(3).unwrap();
    let redo = chat.generate(greedy(&[40], 5), |_| {}).unwrap();
    assert_eq!(redo.generated, a.generated);
}

#[test]
fn engine_cpu_path_equals_the_plain_generation_loop() {
    // Sampled (not greedy) generation: the engine's decode steps are the plain loop's.
    let model =
        Arc::new(Model::load(&tandem::embedded_model(), &LoadOptions::default()).expect("loads"));
    let prompt = model.encode_prompt("Permission is hereby granted").unwrap();
    let req = GenerateRequest {
        prompt: prompt.clone(),
        max_new_tokens: 40,
        sampling: SamplingParams {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 7,
        },
        stop_strings: vec![],
        ignore_eos: false,
    };
    let mut cache = model.new_cache(256);
    let plain = model.generate(&mut cache, &req, &mut |_| {}).unwrap();
    let cpu = Engine::new(
        model.clone(),
        EngineOptions {
            prefill: PrefillPolicy::Cpu,
            ctx: 256,
            cpu_prefill_chunk: 3,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let mut streamed = String::new();
    let out = cpu
        .new_session()
        .generate(req, |t| streamed.push_str(&t.text))
        .unwrap();
    assert_eq!(out.generated, plain.generated);
    assert_eq!(out.text, plain.text);
    assert_eq!(streamed, out.text);
    assert_eq!(out.stats.chunks.len(), prompt.len().div_ceil(3));
}

#[test]
fn concurrent_sessions_equal_sequential_runs() {
    let model = load("llama-gqa");
    let lib = qnn_lib_dir();
    let _npu = lib.as_ref().map(|_| npu_lock());
    let policy = if lib.is_some() {
        PrefillPolicy::Npu
    } else {
        PrefillPolicy::Cpu
    };
    let e = engine(&model, policy, lib.as_deref());
    let prompts: Vec<Vec<u32>> = (0..4u32)
        .map(|s| {
            (0..(5 + 6 * s))
                .map(|i| 3 + (i * 7 + s * 13) % 200)
                .collect()
        })
        .collect();
    let sequential: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            e.new_session()
                .generate(greedy(p, 30), |_| {})
                .unwrap()
                .generated
        })
        .collect();
    let sessions: Vec<_> = prompts.iter().map(|_| e.new_session()).collect();
    let handles: Vec<_> = sessions
        .iter()
        .zip(&prompts)
        .map(|(s, p)| s.submit(greedy(p, 30)).unwrap())
        .collect();
    let together: Vec<Vec<u32>> = handles
        .into_iter()
        .map(|h| h.wait().unwrap().generated)
        .collect();
    assert_eq!(together, sequential);
    // A busy session refuses a second request.
    let s = e.new_session();
    let h = s.submit(greedy(&prompts[3], 30)).unwrap();
    assert!(matches!(
        s.submit(greedy(&[1, 2], 1)),
        Err(Error::Busy(m)) if m.contains("running a request")
    ));
    h.wait().unwrap();
}

/// Waits until `f` holds (the engine runs on other threads), polling without sleeping so the
/// caller reacts within microseconds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn cancelling_mid_prefill_and_mid_decode_leaves_the_session_usable() {
    let model = load("qwen2-tied");
    let lib = qnn_lib_dir();
    let _npu = lib.as_ref().map(|_| npu_lock());
    let mut policies = vec![PrefillPolicy::Cpu];
    if lib.is_some() {
        policies.push(PrefillPolicy::Npu);
    }
    for policy in policies {
        let e = Engine::new(
            model.clone(),
            EngineOptions {
                prefill: policy,
                ctx: 256,
                npu: lib.as_deref().map(npu_options).unwrap_or_default(),
                cpu_prefill_chunk: 1,
                calibrate: false,
                fail_npu_chunk: None,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        let chat = e.new_session();
        let first = chat.generate(greedy(&[1, 5, 9], 4), |_| {}).unwrap();
        let before = chat.tokens().unwrap();
        let long: Vec<u32> = (0..200).map(|i| 10 + i % 150).collect();

        // Mid-prefill: cancel as soon as the first positions are in the cache. A CPU step is
        // tens of microseconds here, so a cancel may land only after the prefill; such attempts
        // are undone and retried until one lands mid-prefill (at most 20).
        let mut stopped_at = None;
        for _ in 0..20 {
            let h = chat.submit(greedy(&long, 40)).unwrap();
            let progress = h.progress();
            assert_eq!(progress.prefill_total(), long.len() + 1);
            eventually("prefill progress", || progress.prefilled() >= 8);
            h.cancel();
            match h.wait() {
                Err(Error::Cancelled) => {
                    assert_eq!(chat.tokens().unwrap(), before, "{policy}: rolled back");
                }
                Ok(_) => chat.rewind(before.len()).unwrap(),
                Err(e) => panic!("{policy}: {e}"),
            }
            if progress.prefilled() < long.len() {
                assert_eq!(progress.generated(), 0, "{policy}");
                stopped_at = Some(progress.prefilled());
                break;
            }
        }
        assert!(
            stopped_at.is_some(),
            "{policy}: 20 cancels never stopped a 200-token prefill early"
        );

        // Mid-decode: cancel from another thread after a few tokens.
        let mut h = chat.submit(greedy(&[7, 8], 200)).unwrap();
        let token = h.cancel_token();
        let mut got = 0;
        for _ in h.by_ref() {
            got += 1;
            if got == 5 {
                std::thread::spawn({
                    let token = token.clone();
                    move || token.cancel()
                })
                .join()
                .unwrap();
            }
        }
        assert!(matches!(h.wait(), Err(Error::Cancelled)), "{policy}");
        assert!(got < 200, "{policy}: decode stopped early ({got})");
        assert_eq!(chat.tokens().unwrap(), before, "{policy}: rolled back");

        // The session goes on as if neither request had happened.
        let next = chat.generate(greedy(&[7, 8], 6), |_| {}).unwrap();
        let mut whole = vec![1, 5, 9];
        whole.extend_from_slice(&first.generated);
        whole.extend_from_slice(&[7, 8]);
        let fresh = e.new_session().generate(greedy(&whole, 6), |_| {}).unwrap();
        let margins = cpu_margins(&model, &whole, &fresh.generated);
        assert_same_until_tie(
            &format!("{policy}: after cancellations"),
            &next.generated,
            &fresh.generated,
            &margins,
            NPU_TIE,
        );
    }
}

/// An NPU chunk failing at every chunk index of a 3-chunk prompt: the request recomputes its
/// prompt on the CPU and gives exactly the CPU run's tokens (not merely the same up to a
/// near-tie), and the session's next turn works.
#[test]
fn an_npu_fault_finishes_the_request_on_the_cpu() {
    let Some(lib) = qnn_lib_dir() else { return };
    let _npu = npu_lock();
    for name in ["llama-gqa", "llama3-rope"] {
        let model = load(name);
        let r = reference(name);
        let prompt = ids(&r.json["prompts"][1]["ids"]); // 19 tokens: chunks 8 + 8 + 3
        let cpu = engine(&model, PrefillPolicy::Cpu, None);
        let cpu_session = cpu.new_session();
        let want = cpu_session.generate(greedy(&prompt, 16), |_| {}).unwrap();
        let want2 = cpu_session.generate(greedy(&[7, 8, 9], 8), |_| {}).unwrap();
        assert_eq!(want.generated.len(), 16);
        for k in 0..3 {
            let faulty = Engine::new(
                model.clone(),
                EngineOptions {
                    prefill: PrefillPolicy::Npu,
                    ctx: CTX,
                    npu: npu_options(&lib),
                    calibrate: false,
                    fail_npu_chunk: Some(k),
                    ..EngineOptions::default()
                },
            )
            .unwrap();
            let session = faulty.new_session();
            let out = session.generate(greedy(&prompt, 16), |_| {}).unwrap();
            let s = &out.stats;
            let what = format!("{name}, fault at NPU chunk {k}");
            assert_eq!(
                s.prefill_device,
                if k == 0 { "cpu" } else { "npu+cpu" },
                "{what}: {s:?}"
            );
            let why = s.fallback.as_deref().unwrap_or_default();
            assert!(
                why.contains(&format!("NPU chunk {k}")) && why.contains("injected"),
                "{what}: {why}"
            );
            assert!(
                why.contains("recomputed on the CPU from position 0"),
                "{why}"
            );
            let npu_chunks = s
                .chunks
                .iter()
                .take_while(|c| c.device == tandem::scheduler::Device::Npu)
                .count();
            assert_eq!(
                npu_chunks, k,
                "{what}: chunks before the fault ran on the NPU"
            );
            let cpu_chunks = &s.chunks[npu_chunks..];
            assert!(cpu_chunks
                .iter()
                .all(|c| c.device == tandem::scheduler::Device::Cpu));
            assert_eq!(
                cpu_chunks[0].start, 0,
                "{what}: the CPU recomputes the prompt"
            );
            assert_eq!(
                cpu_chunks.iter().map(|c| c.tokens).sum::<usize>(),
                prompt.len()
            );
            assert_eq!(
                out.generated, want.generated,
                "{what}: tokens differ from the CPU"
            );
            // The session is intact: its next turn equals the CPU session's next turn up to a
            // near-tie (that turn may prefill on the NPU again).
            let next = session.generate(greedy(&[7, 8, 9], 8), |_| {}).unwrap();
            assert_eq!(next.generated.len(), 8, "{what}: next turn");
            assert_eq!(
                next.stats.cached_tokens,
                prompt.len() + 16 - 1,
                "{what}: next turn reuses the cache"
            );
            let conversation: Vec<u32> = prompt
                .iter()
                .chain(&out.generated)
                .chain(&[7, 8, 9])
                .copied()
                .collect();
            let margins = cpu_margins(&model, &conversation, &want2.generated);
            assert_same_until_tie(&what, &next.generated, &want2.generated, &margins, NPU_TIE);
        }
    }
}

#[test]
fn npu_that_cannot_be_prepared_falls_back_and_says_why() {
    let model = load("llama-gqa");
    // AR-128 graphs do not fit a 96-position context: preparation fails before any QNN call.
    let e = Engine::new(
        model.clone(),
        EngineOptions {
            prefill: PrefillPolicy::Npu,
            ctx: CTX,
            npu: NpuOptions {
                chunks: vec![128],
                ..tandem::delegates::default_npu()
            },
            ..EngineOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(e.npu_state(), NpuState::Unavailable(_)));
    let out = e
        .new_session()
        .generate(greedy(&[1, 2, 3], 4), |_| {})
        .unwrap();
    assert_eq!(out.stats.prefill_device, "cpu");
    let why = out.stats.fallback.unwrap_or_default();
    assert!(why.starts_with("npu unavailable"), "{why}");
    assert_eq!(out.generated.len(), 4);
}

#[test]
fn context_overflow_is_a_clear_error_and_loses_nothing() {
    let model = load("llama-gqa");
    let e = engine(&model, PrefillPolicy::Cpu, None);
    let chat = e.new_session();
    let prompt: Vec<u32> = (1..=80).collect();
    // 80 + 20 − 1 = 99 positions > 96
    let err = chat.generate(greedy(&prompt, 20), |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContextOverflow {
                needed: 99,
                ctx: 96
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("96"), "{err}");
    // Exactly full is fine, and the next turn that would overflow is refused up front.
    let out = chat.generate(greedy(&prompt, 17), |_| {}).unwrap();
    assert_eq!(out.generated.len(), 17);
    let err = chat.generate(greedy(&[5], 1), |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContextOverflow {
                needed: 98,
                ctx: 96
            }
        ),
        "{err}"
    );
    assert_eq!(
        chat.tokens().unwrap().len(),
        97,
        "the refused turn left nothing behind"
    );
    // Bad token ids are refused before anything runs.
    let err = chat.submit(greedy(&[1_000_000], 1)).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
}

#[test]
fn auto_placement_explains_every_decision() {
    let model = load("qwen3-qknorm");
    let lib = qnn_lib_dir();
    let _npu = lib.as_ref().map(|_| npu_lock());
    let e = Engine::new(
        model.clone(),
        EngineOptions {
            prefill: PrefillPolicy::Auto,
            ctx: CTX,
            npu: lib.as_deref().map(npu_options).unwrap_or_default(),
            calibrate: true,
            fail_npu_chunk: None,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let costs = e.costs();
    if lib.is_some() {
        assert!(costs.npu_chunk_ms(CHUNK).is_some(), "calibrated NPU chunk");
    }
    assert!(costs.cpu_line().is_some(), "calibrated CPU prefill");
    for n in [3, 40] {
        let p = e.placement(0, n);
        assert!(
            p.reason.starts_with("auto") || p.reason.contains("unavailable"),
            "{p:?}"
        );
        let out = e
            .new_session()
            .generate(greedy(&(1..=n as u32).collect::<Vec<_>>(), 3), |_| {})
            .unwrap();
        assert!(!out.stats.placement_reason.is_empty());
        assert_eq!(out.stats.fallback, None, "auto never reports a fallback");
    }
}

/// A panic on the CPU worker fails the request it hit and nothing else: that session is
/// returned unchanged and its next request works, and another session is served throughout.
#[test]
fn a_cpu_worker_panic_fails_that_request_alone() {
    let model = load("llama-gqa");
    let e = Engine::new(
        model.clone(),
        EngineOptions {
            prefill: PrefillPolicy::Cpu,
            ctx: CTX,
            calibrate: false,
            panic_cpu_on_token: Some(77),
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let reference = engine(&model, PrefillPolicy::Cpu, None);
    let a = e.new_session();
    let b = e.new_session();
    let first = a.generate(greedy(&[5, 6, 7], 4), |_| {}).unwrap();
    let before = a.tokens().unwrap();
    // B keeps decoding while A's bad request panics on the same worker.
    let hb = b.submit(greedy(&[9, 10, 11], 40)).unwrap();
    let err = a
        .generate(greedy(&[77, 8, 9], 4), |_| {})
        .expect_err("the injected panic fails the request");
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(a.tokens().unwrap(), before, "session A is unchanged");
    let outb = hb.wait().unwrap();
    assert_eq!(outb.generated.len(), 40, "session B was served throughout");
    let next = a.generate(greedy(&[8, 9], 4), |_| {}).unwrap();
    let r = reference.new_session();
    let want1 = r.generate(greedy(&[5, 6, 7], 4), |_| {}).unwrap();
    let want2 = r.generate(greedy(&[8, 9], 4), |_| {}).unwrap();
    assert_eq!(first.generated, want1.generated);
    assert_eq!(
        next.generated, want2.generated,
        "the next turn equals an unhurt session's"
    );
}

/// A panic on the NPU worker: the request finishes on the CPU with the CPU's tokens, the NPU is
/// disabled with the reason, and later requests prefill on the CPU saying why.
#[test]
fn an_npu_worker_panic_moves_prefill_to_the_cpu() {
    let Some(lib) = qnn_lib_dir() else { return };
    let _npu = npu_lock();
    let model = load("llama-gqa");
    let prompt: Vec<u32> = (5..24).collect();
    let e = Engine::new(
        model.clone(),
        EngineOptions {
            prefill: PrefillPolicy::Npu,
            ctx: CTX,
            npu: npu_options(&lib),
            calibrate: false,
            panic_npu_chunk: Some(1),
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let want = engine(&model, PrefillPolicy::Cpu, None)
        .new_session()
        .generate(greedy(&prompt, 8), |_| {})
        .unwrap();
    let s = e.new_session();
    let out = s.generate(greedy(&prompt, 8), |_| {}).unwrap();
    let why = out.stats.fallback.clone().unwrap_or_default();
    assert!(why.contains("NPU worker panicked"), "{why}");
    assert_eq!(out.generated, want.generated);
    match e.npu_state() {
        NpuState::Disabled(r) => assert!(r.contains("panicked"), "{r}"),
        other => panic!("NPU should be disabled, is {other:?}"),
    }
    let later = e
        .new_session()
        .generate(greedy(&prompt, 8), |_| {})
        .unwrap();
    assert_eq!(later.stats.prefill_device, "cpu");
    let why = later.stats.fallback.unwrap_or_default();
    assert!(
        why.contains("npu disabled") && why.contains("panicked"),
        "{why}"
    );
    assert_eq!(later.generated, want.generated);
}

/// A context larger than the model's positions, or whose KV cache would not fit in memory, is
/// refused before anything is allocated, and the error says how much it would take.
#[test]
fn absurd_contexts_are_refused_before_allocating() {
    let model = load("llama-gqa");
    let opts = |ctx| EngineOptions {
        prefill: PrefillPolicy::Cpu,
        ctx,
        calibrate: false,
        ..EngineOptions::default()
    };
    let e = Engine::new(model.clone(), opts(100_000))
        .err()
        .expect("ctx past the model");
    assert!(e.to_string().contains("256 positions"), "{e}");
    let mut big = load("llama-gqa");
    Arc::get_mut(&mut big)
        .expect("a fresh model")
        .loaded
        .spec
        .max_position_embeddings = usize::MAX;
    for ctx in [1_000_000_000_000usize, usize::MAX] {
        let e = Engine::new(big.clone(), opts(ctx))
            .err()
            .expect("too large");
        let msg = e.to_string();
        assert!(msg.contains("GiB") || msg.contains("overflows"), "{msg}");
    }
}

/// A model the HTP lowering cannot express (here partial RoPE, which the CPU runs) is refused when
/// the delegate prepares it, with an error naming the op graph's node, and the engine prefills on
/// the CPU and says why.
#[test]
fn npu_refuses_an_op_it_cannot_lower_at_prepare_and_the_cpu_takes_over() {
    let Some(lib) = qnn_lib_dir() else { return };
    let _g = npu_lock();
    let fixture = load("llama-gqa");
    let (loaded, tokenizer, cpu) = {
        let path = tandem_tests::fixtures().join("llama-gqa").join("hf-f32");
        let m = Model::load(&ModelSource::Path(path), &LoadOptions::default()).unwrap();
        (m.loaded, m.tokenizer, m.cpu)
    };
    let mut loaded = loaded;
    loaded.spec.rope.rotary_dim = loaded.spec.head_dim / 2;
    let model = Arc::new(Model {
        loaded,
        tokenizer,
        chat_template: None,
        cpu,
        load_ms: 0.0,
    });
    let e = engine(&model, PrefillPolicy::Npu, Some(&lib));
    let NpuState::Unavailable(why) = e.npu_state() else {
        panic!(
            "the NPU prepared a model it cannot lower: {:?}",
            e.npu_state()
        );
    };
    assert!(why.contains("cannot run this model"), "{why}");
    assert!(
        why.contains("l0.q_rope") && why.contains("partial RoPE"),
        "{why}"
    );
    let out = e
        .new_session()
        .generate(greedy(&[1, 2, 3], 4), |_| {})
        .unwrap();
    assert_eq!(out.stats.prefill_device, "cpu");
    assert!(out
        .stats
        .fallback
        .unwrap_or_default()
        .contains("partial RoPE"));
    // The CPU ran the model as loaded (full RoPE): the same tokens as the fixture's own engine.
    let want = engine(&fixture, PrefillPolicy::Cpu, None)
        .new_session()
        .generate(greedy(&[1, 2, 3], 4), |_| {})
        .unwrap();
    assert_eq!(out.generated, want.generated);
}
