//! The `tandem` binary end to end (this file belongs to the root package, which owns the binary):
//! `logits --json` and `run --json` on the committed fixtures against the transformers
//! reference, the README's default command, and clear failures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

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

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn csv(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn logits_and_greedy_run_match_the_reference_for_every_architecture() {
    for name in ["llama-gqa", "qwen2-tied", "qwen3-qknorm", "llama3-rope"] {
        let dir = fixtures().join(name);
        let reference: Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let last: Vec<f32> = std::fs::read(dir.join("logits_last.bin"))
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let vocab = reference["vocab_size"].as_u64().unwrap() as usize;
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
            let got: Vec<f32> = out["last_logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let want = &last[2 * vocab..3 * vocab];
            let d = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
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
