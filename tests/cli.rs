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
            assert_eq!(
                &gen[..n.min(gen.len())],
                &want[..n.min(gen.len())],
                "{m}: greedy tokens"
            );
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
