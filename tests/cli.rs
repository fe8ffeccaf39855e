//! The `tandem` binary end to end (this file belongs to the root package, which owns the binary):
//! `logits --json` and `run --json` on the committed fixtures against the transformers
//! reference, the README's default command, and clear failures.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use tandem_tests::{fixtures, ids, max_abs_diff, qnn_lib_dir, reference, MODELS};

fn tandem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .expect("tandem binary runs")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "tandem failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn csv(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn logits_and_greedy_run_match_the_reference_for_every_architecture() {
    for name in MODELS {
        let dir = fixtures().join(name);
        let r = reference(name);
        let (reference, last, vocab) = (&r.json, &r.last, r.vocab);
        for model in [
            dir.join("hf-f32"),
            dir.join("gguf").join(format!("{name}-f32.gguf")),
        ] {
            let m = model.to_str().unwrap();
            let p = &reference["prompts"][2];
            let prompt = ids(&p["ids"]);
            let out = json_of(&tandem(&[
                "logits",
                "-m",
                m,
                "--tokens",
                &csv(&prompt),
                "--json",
            ]));
            assert_eq!(ids(&out["tokens"]), prompt);
            let d = max_abs_diff(&floats(&out["last_logits"]), &last[2 * vocab..3 * vocab]);
            assert!(d <= 1e-4, "{m}: last logits differ by {d}");
            assert_eq!(out["argmax"].as_array().unwrap().len(), prompt.len());

            // Greedy run from the prompt text: same tokens as transformers until a step whose
            // reference margin is too small to call.
            let text = p["text"].as_str().unwrap();
            let want = ids(&p["greedy"]);
            let margins: Vec<f64> = p["greedy_margins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let n = margins
                .iter()
                .position(|&mg| mg < 2e-4)
                .unwrap_or(want.len());
            let out = json_of(&tandem(&[
                "run",
                "-m",
                m,
                "-p",
                text,
                "-n",
                "24",
                "--temperature",
                "0",
                "--json",
            ]));
            assert_eq!(
                ids(&out["prompt_tokens"]),
                prompt,
                "{m}: prompt tokenization"
            );
            let gen = ids(&out["generated_tokens"]);
            // Compare at least 8 tokens (or all that precede the first near-tie): an empty
            // or truncated generation must not pass.
            assert!(
                n.min(want.len()) >= 8.min(want.len()) && gen.len() >= n.min(want.len()),
                "{m}: only {} generated, {n} comparable",
                gen.len()
            );
            assert_eq!(&gen[..n], &want[..n], "{m}: greedy tokens");
            for key in ["prefill_tok_s", "decode_tok_s", "ttft_ms", "load_ms"] {
                assert!(
                    out["stats"][key].as_f64().is_some(),
                    "{m}: stats.{key} missing"
                );
            }
        }
    }
}

#[test]
fn default_run_streams_text_and_prints_stats() {
    let out = tandem(&["run", "-n", "16", "--threads", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    assert!(stdout.starts_with("Once upon a time"), "{stdout:?}");
    assert!(stdout.len() > "Once upon a time".len() + 10, "{stdout:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for field in ["load", "prefill", "ttft", "decode", "tok/s"] {
        assert!(stderr.contains(field), "stats line lacks {field}: {stderr}");
    }
}

#[test]
fn bad_input_fails_with_a_message_not_a_panic() {
    for (args, needle) in [
        (
            vec!["info", "-m", "/no/such/model.gguf"],
            "/no/such/model.gguf",
        ),
        (
            vec!["run", "--tokens", "1,2", "--cpu-weights", "q5_k"],
            "q5_k",
        ),
        (vec!["run", "--tokens", "1,999999"], "999999"),
        (
            vec!["run", "-p", "hello", "--ctx", "4", "-n", "8"],
            "context",
        ),
        (vec!["run", "-p", "hi", "--top-p", "0"], "top-p"),
    ] {
        let out = tandem(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tandem-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn devices_reports_the_htp_backend_or_why_not() {
    let Some(lib) = qnn_lib_dir() else { return };
    let out = json_of(&tandem(&["devices", "--json", "--qnn-lib", &lib]));
    assert_eq!(out["cpu"]["available"], true);
    assert_eq!(out["qnn"]["available"], true, "{out}");
    assert_eq!(out["qnn"]["provider"], "HTP_QTI_AISW");
    assert!(out["qnn"]["core_api"].as_str().unwrap().starts_with("2."));
    assert!(!out["qnn"]["build_id"].as_str().unwrap().is_empty());

    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["devices", "--json", "--qnn-lib", "/no/qnn/here"])
        .env_remove("TANDEM_QNN_LIB_DIR")
        .env_remove("QNN_SDK_ROOT")
        .output()
        .unwrap();
    let out = json_of(&out);
    assert_eq!(out["qnn"]["available"], false);
    assert!(
        out["qnn"]["reason"]
            .as_str()
            .unwrap()
            .contains("/no/qnn/here"),
        "{out}"
    );
    // The contract's discovery names every library path it tried, and Core ML (not compiled in)
    // is listed with its reason.
    let tried = out["qnn"]["tried"].as_array().expect("tried paths");
    assert!(
        tried[0]["path"]
            .as_str()
            .unwrap()
            .starts_with("/no/qnn/here"),
        "{out}"
    );
    assert!(!tried[0]["error"].as_str().unwrap().is_empty(), "{out}");
    assert_eq!(out["coreml"]["available"], false, "{out}");
}

#[test]
fn npu_logits_agree_with_cpu_and_compile_caches_the_context() {
    let Some(lib) = qnn_lib_dir() else { return };
    let cache = temp_dir("qnn-cache");
    for name in MODELS {
        let model = fixtures().join(name).join("hf-f32");
        let m = model.to_str().unwrap();
        let prompt = csv(&ids(&reference(name).json["prompts"][1]["ids"]));
        let cpu = json_of(&tandem(&["logits", "-m", m, "--tokens", &prompt, "--json"]));
        // AR-8 graphs over a 64-slot context: the 18-19 token prompt spans three chunks and
        // ends mid-chunk (padded, masked).
        let npu_args = [
            "logits",
            "-m",
            m,
            "--tokens",
            &prompt,
            "--json",
            "--device",
            "npu",
            "--chunks",
            "8",
            "--ctx",
            "64",
            "--qnn-lib",
            &lib,
            "--qnn-cache",
            cache.to_str().unwrap(),
        ];
        let npu = json_of(&tandem(&npu_args));
        assert_eq!(npu["argmax"], cpu["argmax"], "{name}: top-1 per position");
        let (a, b) = (floats(&npu["last_logits"]), floats(&cpu["last_logits"]));
        let scale = b.iter().map(|v| v.abs()).fold(0.0, f32::max);
        let d = max_abs_diff(&a, &b);
        // fp16 weights and activations: the QNN crate's tests bound this at 2 % of max |logit|.
        assert!(
            d <= 0.02 * scale,
            "{name}: npu vs cpu last logits differ by {d} (scale {scale})"
        );
    }

    let out_dir = temp_dir("qnn-compile");
    let model = fixtures().join("qwen2-tied").join("hf-f32");
    let args = [
        "compile",
        "-m",
        model.to_str().unwrap(),
        "--chunks",
        "8,16",
        "--ctx",
        "64",
        "--qnn-lib",
        &lib,
        // Shared-weight binaries are for the device; this host's simulator cannot restore them
        // (compile_for_a_soc_then_restore_never_crashes covers that case).
        "--weight-sharing",
        "off",
        "-o",
        out_dir.to_str().unwrap(),
    ];
    let first = tandem(&args);
    let second = tandem(&args);
    for (out, want) in [(&first, "Finalized"), (&second, "Restored")] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(want), "expected {want}: {text}");
    }
    let files: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert_eq!(
        files.len(),
        1,
        "one context binary in {}",
        out_dir.display()
    );
    let _ = std::fs::remove_dir_all(&out_dir);
    let _ = std::fs::remove_dir_all(&cache);
}

/// The two wrong results of the NPU-correctness issue, as a user saw them: Qwen3's per-head q/k
/// norms over chunks longer than 8 (every position from 8 on was wrong), on the default target
/// and on three named SoCs.
#[test]
fn qwen3_npu_logits_agree_with_cpu_on_chunks_past_eight_and_every_target() {
    let Some(lib) = qnn_lib_dir() else { return };
    let cache = temp_dir("qwen3");
    let model = fixtures().join("qwen3-qknorm").join("hf-f32");
    let m = model.to_str().unwrap();
    let tokens = "5,6,7,8,9,10,11,12,13,14,15,16";
    let cpu = json_of(&tandem(&["logits", "-m", m, "--tokens", tokens, "--json"]));
    for chunks in ["16", "32"] {
        for soc in [None, Some("43"), Some("57"), Some("69")] {
            let mut args = vec![
                "logits",
                "-m",
                m,
                "--tokens",
                tokens,
                "--json",
                "--device",
                "npu",
                "--chunks",
                chunks,
                "--qnn-lib",
                &lib,
                "--qnn-cache",
                cache.to_str().unwrap(),
            ];
            if let Some(s) = soc {
                args.extend(["--soc", s]);
            }
            let npu = json_of(&tandem(&args));
            assert_eq!(
                npu["argmax"], cpu["argmax"],
                "AR-{chunks}, soc {soc:?}: top-1 per position"
            );
        }
    }
    // A target that cannot run fp16 graphs is refused by name, not run into wrong numbers.
    let out = tandem(&[
        "logits",
        "-m",
        m,
        "--tokens",
        tokens,
        "--json",
        "--device",
        "npu",
        "--soc",
        "30",
        "--qnn-lib",
        &lib,
        "--qnn-cache",
        cache.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("SM8350") && err.contains("fp16"), "{err}");
    let _ = std::fs::remove_dir_all(&cache);
}

/// `tandem compile --soc N` then runs that restore from its output, twice each, in child
/// processes: a weight-shared binary (the phone default) is reported as not restorable on this
/// host and the graphs are finalized instead; an unshared one is restored. Never a crash.
#[test]
fn compile_for_a_soc_then_restore_never_crashes() {
    let Some(lib) = qnn_lib_dir() else { return };
    let model = fixtures().join("llama-gqa").join("hf-f32");
    let m = model.to_str().unwrap();
    let cpu = json_of(&tandem(&["logits", "-m", m, "--tokens", "5,6,7", "--json"]));
    for sharing in ["on", "off"] {
        let out_dir = temp_dir(&format!("aot-{sharing}"));
        let o = out_dir.to_str().unwrap();
        let compile = tandem(&[
            "compile",
            "-m",
            m,
            "--soc",
            "57",
            "--chunks",
            "8,32",
            "--ctx",
            "64",
            "--weight-sharing",
            sharing,
            "--qnn-lib",
            &lib,
            "-o",
            o,
        ]);
        let text = String::from_utf8_lossy(&compile.stdout);
        assert!(
            compile.status.success(),
            "{}",
            String::from_utf8_lossy(&compile.stderr)
        );
        assert!(text.contains("SM8650 (SoC 57, HTP v75)"), "{text}");
        for _ in 0..2 {
            let out = tandem(&[
                "logits",
                "-m",
                m,
                "--tokens",
                "5,6,7",
                "--json",
                "--device",
                "npu",
                "--soc",
                "57",
                "--chunks",
                "8,32",
                "--ctx",
                "64",
                "--weight-sharing",
                sharing,
                "--qnn-lib",
                &lib,
                "--qnn-cache",
                o,
            ]);
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            let npu = json_of(&out);
            assert_eq!(npu["argmax"], cpu["argmax"], "sharing {sharing}");
            if sharing == "on" && cfg!(target_arch = "x86_64") {
                assert!(err.contains("not restorable on this host"), "{err}");
                assert!(err.contains("Finalized context"), "{err}");
            } else {
                assert!(err.contains("Restored context"), "{err}");
            }
        }
        let _ = std::fs::remove_dir_all(&out_dir);
    }
}

#[test]
fn run_reports_placement_handoff_and_trace_for_each_prefill_policy() {
    let model = fixtures().join("llama-gqa/hf-f32");
    let m = model.to_str().unwrap();
    let r = reference("llama-gqa");
    let prompt = csv(&ids(&r.json["prompts"][1]["ids"])); // 19 tokens
    let lib = qnn_lib_dir();
    let cache = temp_dir("run-qnn-cache");
    let trace = temp_dir("run-trace").join("trace.json");
    let mut policies = vec!["cpu", "auto"];
    if lib.is_some() {
        policies.push("npu");
    }
    for policy in policies {
        let mut args = vec![
            "run",
            "-m",
            m,
            "--tokens",
            &prompt,
            "-n",
            "6",
            "--temperature",
            "0",
            "--json",
            "--prefill",
            policy,
            "--chunk",
            "8",
            "--ctx",
            "64",
        ];
        let cache_arg = cache.to_str().unwrap().to_string();
        let trace_arg = trace.to_str().unwrap().to_string();
        args.extend(["--qnn-cache", &cache_arg, "--trace", &trace_arg]);
        let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(&args)
            .env("TANDEM_SCHED_DEBUG", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let doc = json_of(&out);
        let s = &doc["stats"];
        for key in [
            "prefill_device",
            "chunks",
            "handoff_bytes",
            "handoff_ms",
            "ttft_ms",
            "prefill_tok_s",
            "decode_tok_s",
            "fallback",
            "placement_reason",
            "htp_cycles",
            "htp_prefill_ms_est",
            "qnn_cost_model_ms",
        ] {
            assert!(s.get(key).is_some(), "{policy}: stats.{key} missing: {s}");
        }
        assert!(
            stderr.contains("[tandem sched]") && stderr.contains("→"),
            "{policy}: TANDEM_SCHED_DEBUG prints the decision: {stderr}"
        );
        let device = s["prefill_device"].as_str().unwrap();
        match policy {
            "cpu" => assert_eq!(device, "cpu"),
            "npu" => {
                assert_eq!(device, "npu", "{s}");
                assert_eq!(
                    s["chunks"].as_array().unwrap().len(),
                    3,
                    "19 tokens in AR-8"
                );
                assert!(s["handoff_bytes"].as_u64().unwrap() > 0);
                assert!(s["htp_cycles"].as_u64().unwrap() > 0);
                assert!(s["htp_cycles_source"]
                    .as_str()
                    .unwrap()
                    .contains("simulator"));
                assert_eq!(s["fallback"], Value::Null);
            }
            _ => assert!(s["placement_reason"]
                .as_str()
                .unwrap()
                .starts_with(if lib.is_some() { "auto" } else { "policy auto" })),
        }
        let t: Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
        let names: Vec<&str> = t["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        for span in ["request", "queue_wait", "prefill_chunk", "decode_step"] {
            assert!(names.contains(&span), "{policy}: trace lacks {span}");
        }
    }
}

#[test]
fn chat_keeps_the_session_between_turns() {
    use std::io::Write as _;
    let model = fixtures().join("qwen2-tied/hf-f32");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "chat",
            "-m",
            model.to_str().unwrap(),
            "--prefill",
            "cpu",
            "-n",
            "5",
            "--temperature",
            "0",
            "--stats",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello there\nand again\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let turns: Vec<&str> = stderr.lines().filter(|l| l.contains("cached")).collect();
    assert_eq!(turns.len(), 2, "{stderr}");
    assert!(turns[0].contains("(0 cached)"), "{}", turns[0]);
    assert!(
        !turns[1].contains("(0 cached)"),
        "turn 2 reuses turn 1's cache: {}",
        turns[1]
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

#[test]
fn bench_writes_json_csv_and_svg() {
    let model = fixtures().join("llama3-rope/hf-f32");
    let out_dir = temp_dir("bench");
    let lib = qnn_lib_dir();
    let policies = if lib.is_some() {
        "npu,cpu,auto"
    } else {
        "cpu,auto"
    };
    let out = tandem(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "--prompt-lens",
        "5,20",
        "--policies",
        policies,
        "--chunks",
        "8,16",
        "--repeat",
        "2",
        "--gen",
        "4",
        "--qnn-cache",
        temp_dir("bench-qnn-cache").to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| policy |"), "{table}");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("bench.json")).unwrap()).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    // cpu: 1 engine; npu and auto: one per chunk size; × 2 lengths × 2 repeats
    let engines = if lib.is_some() { 1 + 2 + 2 } else { 1 + 2 };
    assert_eq!(rows.len(), engines * 2 * 2, "{doc}");
    for r in rows {
        assert!(r["ttft_ms"].as_f64().unwrap() > 0.0);
        assert!(r["decode_tok_s"].as_f64().unwrap() > 0.0);
        if r["policy"] == "npu" && lib.is_some() {
            assert_eq!(r["prefill_device"], "npu", "{r}");
            assert!(r["htp_cycles"].as_u64().unwrap() > 0);
        }
    }
    let csv_text = std::fs::read_to_string(out_dir.join("bench.csv")).unwrap();
    assert_eq!(csv_text.lines().count(), rows.len() + 1);
    let svg = std::fs::read_to_string(out_dir.join("bench.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("Time to first token"));
}

/// Every row of the robustness issue's table: a clear error and exit code 1 before any work
/// (no tokens streamed, no panic, no abort), or for chat, an error for that turn alone.
#[test]
fn bad_sizes_values_and_files_are_refused_up_front() {
    let m = fixtures().join("llama-gqa").join("hf-f32");
    let m = m.to_str().unwrap();
    // A GGUF whose last 64 KiB of weights are all-ones bit patterns (NaN).
    let mut bytes = std::fs::read(
        fixtures()
            .join("llama-gqa")
            .join("gguf")
            .join("llama-gqa-f32.gguf"),
    )
    .unwrap();
    let n = bytes.len();
    bytes[n - 65536..].fill(0xff);
    let dir = temp_dir("robust");
    std::fs::create_dir_all(&dir).unwrap();
    let nan = dir.join("nan.gguf");
    std::fs::write(&nan, &bytes).unwrap();
    let nan = nan.to_str().unwrap();
    let max = "18446744073709551615";
    let d = dir.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "-m", nan, "-p", "hello", "-n", "4"],
            "non-finite logit",
        ),
        (
            vec![
                "run",
                "-m",
                nan,
                "-p",
                "hello",
                "-n",
                "4",
                "--temperature",
                "0",
            ],
            "non-finite logit",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--ctx", "1000000000000"],
            "positions",
        ),
        (vec!["run", "-m", m, "-p", "hi", "--ctx", max], "positions"),
        (
            vec!["run", "-m", m, "-p", "hi", "--threads", max],
            "threads requested",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--threads", "100000"],
            "threads requested",
        ),
        (
            vec!["bench", "-m", m, "--prompt-lens", max, "--out", d],
            "does not fit",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "-n", max, "--ctx", "64"],
            "context overflow",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--ctx", "100000"],
            "256 positions",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--temperature=-1"],
            "temperature",
        ),
        (
            vec!["run", "-m", m, "--tokens", "1,2", "--chat"],
            "cannot be used with",
        ),
        (
            vec![
                "run",
                "-m",
                m,
                "-p",
                "hi",
                "--chunk",
                "0",
                "--prefill",
                "cpu",
            ],
            "chunk size 0",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--trace", d],
            "is a folder",
        ),
    ];
    for (args, want) in &cases {
        let out = tandem(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "tandem {args:?}: {err}");
        assert!(
            err.contains(want),
            "tandem {args:?}: expected `{want}` in: {err}"
        );
        assert!(!err.contains("panicked"), "tandem {args:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "tandem {args:?} streamed output before failing"
        );
    }

    // chat: a turn that overflows the context and a line that is not UTF-8 each fail alone.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "chat",
            "-m",
            m,
            "--ctx",
            "48",
            "-n",
            "8",
            "--temperature",
            "0",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let long = "word ".repeat(60);
        stdin
            .write_all(format!("hi\n{long}\n\u{0}\n").as_bytes())
            .unwrap();
        stdin.write_all(b"\xff\xfe not utf-8\nagain\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chat exited: {err}");
    assert!(err.contains("context overflow"), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
