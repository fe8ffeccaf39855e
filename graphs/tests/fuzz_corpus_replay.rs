//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every crash the fuzzers found
//! (`fuzz/regressions/<target>/`) through the fuzz targets' own code, on stable and with no
//! fuzzer installed: `fuzz/src/lib.rs` is compiled here as a module. An input fails if its target
//! panics; the test names every such file. See docs/robustness.md.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod targets;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Files of `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.expect("read corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let run = targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .unwrap_or_else(|| panic!("no fuzz target `{target}` in fuzz/src/lib.rs"));
    let corpus = inputs(&fuzz_dir().join("corpus").join(target));
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty or missing: the replay would test nothing"
    );
    let mut failed = Vec::new();
    for file in corpus.iter().chain(&regressions) {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    targets::remove_scratch_dir();
    eprintln!(
        "fuzz replay {target}: {} corpus files, {} regression files, {} failed",
        corpus.len(),
        regressions.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{target}: inputs that panic: {failed:#?}"
    );
}

/// Every target in `fuzz/src/lib.rs` has a replay test below and a corpus directory, and no
/// corpus directory is left without a target.
#[test]
fn every_target_is_replayed() {
    let mut names: Vec<&str> = targets::TARGETS.iter().map(|(name, _)| *name).collect();
    names.sort();
    let mut tested = TESTED.to_vec();
    tested.sort();
    assert_eq!(tested, names, "each fuzz target needs a replay test");
    let corpus = fuzz_dir().join("corpus");
    let mut dirs: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("read {}: {e}", corpus.display()))
        .map(|e| e.expect("read fuzz/corpus").path())
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    dirs.sort();
    assert_eq!(dirs, names, "fuzz/corpus/ holds one directory per target");
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        const TESTED: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*
    };
}

replay_tests!(
    gguf,
    safetensors_config,
    tokenizer_json,
    gguf_tokenizer,
    chat_template,
    token_list,
);
