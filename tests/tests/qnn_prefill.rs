//! Whole-model prefill on the HTP simulator against the CPU path (`CpuModel::forward`, f32,
//! `Logits::All`) for every fixture architecture, plus the context-binary cache.
//!
//! Tolerance. The graphs hold weights and activations in fp16 (unit roundoff 2⁻¹¹ ≈ 4.9e-4).
//! The fixture README measures that fp16 *weights alone* already give a relative RMS logit error
//! of 0.9–1.4e-3 on these random-weight models (noise is amplified ~5–7× on the way to the
//! logits); fp16 activations through 2 layers (norms, attention, SwiGLU, residuals) add roundings
//! of the same kind (measured: ~2× the weight-only floor). We allow 7× the weight-only floor:
//! relative RMS ≤ 1e-2, and a max abs error ≤ 2 % of the largest |logit| (logits reach ~22–26
//! here, so ~0.5; measured ≤ 0.12). K/V (one layer of roundings less): relative RMS ≤ 1e-2. Top-1 must agree at
//! every position whose CPU top-1/top-2 margin exceeds the measured max abs error (a smaller
//! margin is a tie at this precision); the test reports how many positions that excludes.

// The QNN crate's own test helpers (library lookup, serialisation, error measures); this test
// lives here because it compares against the CPU backend, which `tandem-qnn` must not depend on.
#[path = "../../backends/qnn/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use tandem_cpu::{CpuModel, Logits, ThreadPool, WeightFormat};
use tandem_graphs::model::{load_weights, LoadedModel};
use tandem_hal::KvCache;
use tandem_hal::PreparedFrom;
use tandem_qnn::QnnPrefillBuilder;

const FIXTURES: [&str; 4] = ["llama-gqa", "qwen2-tied", "qwen3-qknorm", "llama3-rope"];
const CHUNK: usize = 8;
const CTX: usize = 64;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn load(name: &str) -> LoadedModel {
    load_weights(&fixture_dir(name).join("hf-f32")).expect("fixture loads")
}

/// Prompt 1 of the fixture (19–20 tokens: spans several chunks of 8 and ends mid-chunk).
fn prompt(name: &str) -> Vec<u32> {
    let text = std::fs::read_to_string(fixture_dir(name).join("reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["prompts"][1]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn cpu(m: &LoadedModel, tokens: &[u32]) -> (Vec<f32>, KvCache) {
    let model = CpuModel::new(
        m.spec.clone(),
        &m.weights,
        WeightFormat::AsStored,
        Arc::new(ThreadPool::new(1)),
    )
    .unwrap();
    let mut cache = KvCache::new(&m.spec, CTX);
    let logits = model.forward(tokens, &mut cache, Logits::All).unwrap();
    (logits, cache)
}

fn argmax_margin(row: &[f32]) -> (usize, f32) {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    (idx[0], row[idx[0]] - row[idx[1]])
}

/// Compares logits `[n, vocab]` and the K/V of both caches; returns (rel RMS, max abs).
fn compare(
    name: &str,
    m: &LoadedModel,
    got: &[f32],
    cache: &KvCache,
    tokens: &[u32],
) -> (f32, f32) {
    let (want, want_cache) = cpu(m, tokens);
    let d = diff(got, &want);
    let v = m.spec.vocab_size;
    let (mut agree, mut ties, mut ties_agree) = (0, 0, 0);
    for (t, (g, w)) in got.chunks(v).zip(want.chunks(v)).enumerate() {
        let (top_w, margin) = argmax_margin(w);
        let (top_g, _) = argmax_margin(g);
        if margin <= d.max_abs {
            ties += 1;
            ties_agree += (top_g == top_w) as usize;
            continue;
        }
        assert_eq!(
            top_g, top_w,
            "{name}: top-1 differs at position {t} (margin {margin})"
        );
        agree += 1;
    }
    // K/V as emitted into the CPU cache vs the CPU path's own.
    let n = tokens.len();
    let (mut kg, mut kw, mut vg, mut vw) = (vec![], vec![], vec![], vec![]);
    for l in 0..m.spec.n_layers {
        for h in 0..m.spec.n_kv_heads {
            kg.extend_from_slice(cache.keys(l, h, n));
            kw.extend_from_slice(want_cache.keys(l, h, n));
            vg.extend_from_slice(cache.values(l, h, n));
            vw.extend_from_slice(want_cache.values(l, h, n));
        }
    }
    let (dk, dv) = (diff(&kg, &kw), diff(&vg, &vw));
    eprintln!(
        "{name}: {n} tokens, logits rel RMS {:.2e}, max abs {:.3e} (max |logit| {:.2}); top-1 \
         agrees at {agree}/{n} + {ties_agree}/{ties} near-ties (margin ≤ max abs err); K rel RMS {:.2e} max {:.2e}, V rel RMS \
         {:.2e} max {:.2e}",
        d.rel_rms, d.max_abs, d.ref_max, dk.rel_rms, dk.max_abs, dv.rel_rms, dv.max_abs
    );
    assert!(d.rel_rms <= 1e-2, "{name}: logits rel RMS {}", d.rel_rms);
    assert!(
        d.max_abs <= 0.02 * d.ref_max,
        "{name}: logits max abs {}",
        d.max_abs
    );
    assert!(
        ties * 4 < n,
        "{name}: too many near-ties ({ties}) for a meaningful top-1 check"
    );
    for (what, dd) in [("K", dk), ("V", dv)] {
        assert!(dd.rel_rms <= 1e-2, "{name}: {what} rel RMS {}", dd.rel_rms);
    }
    assert_eq!(cache.len(), n);
    (d.rel_rms, d.max_abs)
}

#[test]
fn fixture_prefill_matches_cpu() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    for name in FIXTURES {
        let m = load(name);
        let tokens = prompt(name);
        let mut p = QnnPrefillBuilder::new()
            .lib_dir(&dir)
            .chunk_sizes(&[CHUNK])
            .ctx(CTX)
            .no_cache()
            .build(&m.spec, &m.weights)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            p.plan(0, tokens.len()).unwrap().len(),
            tokens.len().div_ceil(CHUNK)
        );
        let (logits, cache) = p.run_prompt(&tokens).unwrap();
        compare(name, &m, &logits, &cache, &tokens);
    }
}

/// Two chunk sizes in one weight-sharing context, prefill in two calls so chunks start at
/// unaligned positions (0, 4 | 5, 13, 17), padded tails, and DETAILED profiling.
#[test]
fn two_chunk_sizes_unaligned_starts_and_profile() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let name = "qwen2-tied";
    let m = load(name);
    let tokens = prompt(name);
    let mut p = QnnPrefillBuilder::new()
        .lib_dir(&dir)
        .chunk_sizes(&[4, 8])
        .ctx(CTX)
        .no_cache()
        .weight_sharing(true)
        .profiling(true)
        .build(&m.spec, &m.weights)
        .unwrap();
    let mut cache = KvCache::new(&m.spec, CTX);
    let first = p.prefill(&tokens[..5], &mut cache).unwrap();
    let rest = p.prefill(&tokens[5..], &mut cache).unwrap();
    let starts: Vec<(usize, usize, usize)> = first
        .iter()
        .chain(&rest)
        .map(|c| (c.start_pos, c.n_tokens, c.chunk_size))
        .collect();
    eprintln!("chunks (start, tokens, graph N): {starts:?}");
    assert_eq!(starts[..2], [(0, 4, 4), (4, 1, 4)]);
    assert_eq!(starts[2], (5, 8, 8));
    let logits: Vec<f32> = first
        .iter()
        .chain(&rest)
        .flat_map(|c| c.logits.clone())
        .collect();
    compare(name, &m, &logits, &cache, &tokens);
    for c in first.iter().chain(&rest) {
        let prof = c.profile.as_ref().expect("profiling on");
        assert!(prof.cycles > 0, "no HTP cycles: {prof:?}");
        assert!(!prof.op_cycles.is_empty());
    }
    let prof = rest[0].profile.as_ref().unwrap();
    let mut top = prof.op_cycles.clone();
    top.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
    eprintln!(
        "AR-8 chunk: {} HTP cycles, accelerator {:?} µs (on x86_64: host emulation); top ops: {:?}",
        prof.cycles,
        prof.exec_us,
        &top[..top.len().min(5)]
    );
    assert!(prof.exec_us.is_some(), "{prof:?}");
    assert_eq!(
        prof.device_exec_us().is_none(),
        cfg!(target_arch = "x86_64"),
        "simulator time must never pass for device time"
    );
}

/// Every slot of `cache` (all `capacity` positions), as bits.
fn slots(cache: &KvCache, layers: usize, heads: usize) -> Vec<u32> {
    let mut full = cache.clone();
    full.truncate(0);
    full.advance(cache.capacity());
    let cap = cache.capacity();
    (0..layers)
        .flat_map(|l| (0..heads).map(move |h| (l, h)))
        .flat_map(|(l, h)| {
            let (k, v) = (full.keys(l, h, cap), full.values(l, h, cap));
            k.iter().chain(v).map(|x| x.to_bits()).collect::<Vec<_>>()
        })
        .collect()
}

/// The real graph's K/V outputs, handed off in place (`write_to`, `write_layer`), give the same
/// cache bit for bit as the token-major rows (`k_rows`/`v_rows`) through `KvCache::write`, for a
/// padded chunk at 0 and a full one at an unaligned start; padding is never written.
#[test]
fn chunk_output_handoff_matches_rows() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let name = "llama-gqa";
    let m = load(name);
    let tokens = prompt(name);
    let (layers, heads, d) = (m.spec.n_layers, m.spec.n_kv_heads, m.spec.head_dim);
    let mut p = QnnPrefillBuilder::new()
        .lib_dir(&dir)
        .chunk_sizes(&[CHUNK])
        .ctx(CTX)
        .no_cache()
        .build(&m.spec, &m.weights)
        .unwrap();
    let mut got = KvCache::new(&m.spec, CTX);
    let mut want = KvCache::new(&m.spec, CTX);

    let first = p.run_chunk(&tokens[..5], &got, None).unwrap();
    assert_eq!(
        (first.start_pos, first.n_tokens, first.chunk_size),
        (0, 5, CHUNK)
    );
    assert_eq!(first.n_layers(), layers);
    assert_eq!(first.kv_bytes(), layers * 2 * 5 * heads * d * 2);
    assert_eq!(
        first.chunk_size, CHUNK,
        "the K/V layout is the graph's chunk"
    );
    first.write_to(&mut got).unwrap();
    for l in 0..layers {
        assert_eq!(first.k_rows(l).len(), 5 * heads * d);
        want.write(l, 0, &first.k_rows(l), &first.v_rows(l));
    }
    want.advance(5);
    assert_eq!(got.len(), 5);
    assert_eq!(slots(&got, layers, heads), slots(&want, layers, heads));

    let second = p.run_chunk(&tokens[5..5 + CHUNK], &got, None).unwrap();
    assert_eq!(second.start_pos, 5);
    for (l, mut layer) in got.layers_mut().into_iter().enumerate() {
        second.write_layer(l, &mut layer).unwrap();
    }
    got.advance(CHUNK);
    for l in 0..layers {
        want.write(l, 5, &second.k_rows(l), &second.v_rows(l));
    }
    want.advance(CHUNK);
    assert_eq!(slots(&got, layers, heads), slots(&want, layers, heads));
    let mut full = got.clone();
    full.truncate(0);
    full.advance(CTX);
    for l in 0..layers {
        for h in 0..heads {
            let past_end = |s: &[f32]| s[(5 + CHUNK) * d..].iter().all(|&x| x == 0.0);
            assert!(past_end(full.keys(l, h, CTX)) && past_end(full.values(l, h, CTX)));
        }
    }
    // Against the CPU path too (the numerics, not just the copy).
    compare(
        name,
        &m,
        &[first.logits.clone(), second.logits.clone()].concat(),
        &got,
        &tokens[..5 + CHUNK],
    );
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tandem-qnn-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn builder(dir: &Path, cache: &Path) -> QnnPrefillBuilder {
    QnnPrefillBuilder::new()
        .lib_dir(dir)
        .chunk_sizes(&[CHUNK, 16])
        .ctx(CTX)
        .cache_dir(cache)
}

#[test]
fn cache_restores_and_rebuilds_corrupt_files() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let name = "llama-gqa";
    let m = load(name);
    let tokens = prompt(name);
    let cache_dir = temp_dir("cache");

    let mut first = builder(&dir, &cache_dir)
        .build(&m.spec, &m.weights)
        .unwrap();
    let r1 = first.report().clone();
    assert_eq!(r1.source, PreparedFrom::Finalized);
    assert!(r1.cache_rejected.is_none());
    let path = r1.cache_path.clone().unwrap();
    assert!(path.starts_with(&cache_dir) && path.is_file());
    let (want, _) = first.run_prompt(&tokens).unwrap();
    drop(first);

    let mut second = builder(&dir, &cache_dir)
        .build(&m.spec, &m.weights)
        .unwrap();
    let r2 = second.report().clone();
    assert_eq!(r2.source, PreparedFrom::Restored, "{r2:?}");
    let (got, cache) = second.run_prompt(&tokens).unwrap();
    assert_eq!(got, want, "restored context computes different logits");
    compare(name, &m, &got, &cache, &tokens);
    drop(second);
    eprintln!(
        "{name} (AR-8 + AR-16, ctx {CTX}, {} KiB binary): finalize {:.1} ms, restore {:.1} ms",
        r1.binary_bytes / 1024,
        r1.prepare_time.as_secs_f64() * 1e3,
        r2.prepare_time.as_secs_f64() * 1e3
    );

    // Truncated file: rejected with a reason, rebuilt, rewritten.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let p = builder(&dir, &cache_dir)
        .build(&m.spec, &m.weights)
        .unwrap();
    let r3 = p.report().clone();
    assert_eq!(r3.source, PreparedFrom::Finalized);
    assert!(
        r3.cache_rejected
            .as_deref()
            .is_some_and(|w| w.contains("truncated")),
        "{r3:?}"
    );
    drop(p);
    assert_eq!(
        std::fs::read(&path).unwrap().len(),
        bytes.len(),
        "not rewritten"
    );

    // A well-formed file whose payload QNN refuses: rebuilt too.
    let key = tandem_qnn::cache::stored_key(&path).unwrap();
    tandem_qnn::cache::store(&path, &key, &vec![0x5Au8; 4096]).unwrap();
    let p = builder(&dir, &cache_dir)
        .build(&m.spec, &m.weights)
        .unwrap();
    let r4 = p.report().clone();
    assert_eq!(r4.source, PreparedFrom::Finalized);
    assert!(
        r4.cache_rejected
            .as_deref()
            .is_some_and(|w| w.contains("restore failed")),
        "{r4:?}"
    );
    drop(p);
    let p = builder(&dir, &cache_dir)
        .build(&m.spec, &m.weights)
        .unwrap();
    assert_eq!(p.report().source, PreparedFrom::Restored);
    let _ = std::fs::remove_dir_all(&cache_dir);
}

const CHILD_ENV: &str = "TANDEM_QNN_TEST_CACHE_CHILD";

/// Helper run as a child process by `two_processes_filling_the_cache_leave_a_valid_file`
/// (ignored on its own, so it never counts as a passing test).
#[test]
#[ignore = "child process of two_processes_filling_the_cache_leave_a_valid_file"]
fn cache_child_writer() {
    let cache_dir = std::env::var_os(CHILD_ENV).expect("run only by the cache race test");
    let Some(dir) = lib_dir() else { return };
    let m = load("llama-gqa");
    let p = builder(&dir, Path::new(&cache_dir))
        .build(&m.spec, &m.weights)
        .unwrap();
    eprintln!("child {}: {:?}", std::process::id(), p.report().source);
}

#[test]
fn two_processes_filling_the_cache_leave_a_valid_file() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let cache_dir = temp_dir("race");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "cache_child_writer",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &cache_dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a cache-writing child failed");
    }
    let files: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "exactly one cache file, no temporaries: {files:?}"
    );
    let m = load("llama-gqa");
    let mut p = builder(&dir, &cache_dir)
        .build(&m.spec, &m.weights)
        .unwrap();
    assert_eq!(
        p.report().source,
        PreparedFrom::Restored,
        "{:?}",
        p.report()
    );
    let tokens = prompt("llama-gqa");
    let (logits, cache) = p.run_prompt(&tokens).unwrap();
    compare("llama-gqa (raced cache)", &m, &logits, &cache, &tokens);
    let _ = std::fs::remove_dir_all(&cache_dir);
}

/// Several chunk sizes in one context keep one copy of the weights (the binary of a two-graph
/// weight-sharing context is about one weight set smaller than without sharing).
#[test]
fn chunk_graphs_share_one_weight_copy() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let m = load("llama-gqa");
    let weight_bytes: usize = m.weights.tensors().iter().map(|t| t.numel() * 2).sum();
    let mut sizes = Vec::new();
    for sharing in [false, true] {
        let cache_dir = temp_dir(&format!("share-{sharing}"));
        let p = builder(&dir, &cache_dir)
            .weight_sharing(sharing)
            .build(&m.spec, &m.weights)
            .unwrap();
        assert_eq!(p.weight_sharing(), sharing);
        sizes.push(p.report().binary_bytes);
        let _ = std::fs::remove_dir_all(&cache_dir);
    }
    eprintln!(
        "AR-8 + AR-16 context binary: {} bytes without sharing, {} with (fp16 weights {weight_bytes})",
        sizes[0], sizes[1]
    );
    assert!(sizes[1] + weight_bytes * 3 / 4 < sizes[0], "{sizes:?}");
}

/// One decoder layer shaped like a 0.5B model (Qwen2-0.5B: hidden 896, 14/2 heads, head_dim 64,
/// FFN 4864, q/k/v biases, tied head) with random weights and a reduced vocabulary (4096, to keep
/// the test's memory small); AR-32 + AR-128 over ctx 512. Reports finalize vs restore time and
/// checks numerics against the CPU (≈ 10 s on 2 cores, most of it simulated execution).
#[test]
fn qwen_05b_shaped_layer_finalize_vs_restore() {
    use tandem_graphs::{Arch, LayerWeights, ModelSpec, ModelWeights, RopeSpec};
    use tandem_hal::Tensor;
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let (h, f, nh, nkv, d, vocab) = (896usize, 4864usize, 14usize, 2usize, 64usize, 4096usize);
    let spec = ModelSpec {
        arch: Arch::Qwen2,
        vocab_size: vocab,
        hidden_size: h,
        intermediate_size: f,
        n_layers: 1,
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: d,
        rms_norm_eps: 1e-6,
        rope: RopeSpec {
            theta: 1e6,
            rotary_dim: d,
            scaling: None,
        },
        max_position_embeddings: 32768,
        tie_word_embeddings: true,
        qkv_bias: true,
        qk_norm: false,
        bos_token_id: None,
        eos_token_ids: vec![],
    };
    let mut seed = 100;
    let mut t = |name: &str, shape: Vec<usize>, scale: f32, offset: f32| {
        seed += 1;
        let n = shape.iter().product();
        let v: Vec<f32> = rand_vec(n, seed)
            .iter()
            .map(|x| offset + scale * x)
            .collect();
        Tensor::from_f32(name, shape, &v).unwrap()
    };
    // Uniform [-s, s] has std s/√3; s = √3/√fan_in keeps activations O(1) through the layer.
    let s = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
    let (q, kv) = (nh * d, nkv * d);
    let layer = LayerWeights {
        attn_norm: t("attn_norm", vec![h], 0.2, 1.0),
        wq: t("wq", vec![q, h], s(h), 0.0),
        wk: t("wk", vec![kv, h], s(h), 0.0),
        wv: t("wv", vec![kv, h], s(h), 0.0),
        bq: Some(t("bq", vec![q], 0.5, 0.0)),
        bk: Some(t("bk", vec![kv], 0.5, 0.0)),
        bv: Some(t("bv", vec![kv], 0.5, 0.0)),
        q_norm: None,
        k_norm: None,
        wo: t("wo", vec![h, q], s(q), 0.0),
        ffn_norm: t("ffn_norm", vec![h], 0.2, 1.0),
        w_gate: t("w_gate", vec![f, h], s(h), 0.0),
        w_up: t("w_up", vec![f, h], s(h), 0.0),
        w_down: t("w_down", vec![h, f], s(f), 0.0),
    };
    let weights = ModelWeights {
        token_embd: t("embd", vec![vocab, h], 1.0, 0.0),
        layers: vec![layer],
        norm: t("norm", vec![h], 0.2, 1.0),
        lm_head: None,
    };
    let tokens: Vec<u32> = (0..150u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 20) % vocab as u32)
        .collect();
    let cache_dir = temp_dir("q05b");
    let b = || {
        QnnPrefillBuilder::new()
            .lib_dir(&dir)
            .chunk_sizes(&[32, 128])
            .ctx(512)
            .cache_dir(&cache_dir)
    };
    let mut first = b().build(&spec, &weights).unwrap();
    let r1 = first.report().clone();
    let t0 = std::time::Instant::now();
    let (logits, cache) = first.run_prompt(&tokens).unwrap();
    let run = t0.elapsed();
    drop(first);
    let second = b().build(&spec, &weights).unwrap();
    let r2 = second.report().clone();
    assert_eq!(r2.source, PreparedFrom::Restored);
    eprintln!(
        "0.5B-shaped layer, AR-32 + AR-128, ctx 512: binary {:.1} MiB; finalize {:.2} s, restore \
         {:.3} s; 150-token prompt (128 + 22→32) executes in {:.2} s on the simulator",
        r1.binary_bytes as f64 / (1 << 20) as f64,
        r1.prepare_time.as_secs_f64(),
        r2.prepare_time.as_secs_f64(),
        run.as_secs_f64()
    );
    let (want, _) = {
        let model = CpuModel::new(
            spec.clone(),
            &weights,
            WeightFormat::AsStored,
            Arc::new(ThreadPool::new(2)),
        )
        .unwrap();
        let mut c = KvCache::new(&spec, 512);
        (model.forward(&tokens, &mut c, Logits::All).unwrap(), c)
    };
    let dd = diff(&logits, &want);
    eprintln!(
        "  logits rel RMS {:.2e}, max abs {:.3e} (max |logit| {:.2})",
        dd.rel_rms, dd.max_abs, dd.ref_max
    );
    assert!(dd.rel_rms < 1e-2, "{}", dd.rel_rms);
    assert_eq!(cache.len(), tokens.len());
    let _ = std::fs::remove_dir_all(&cache_dir);
}
