//! Generators that run Python (dev-time only): `fixtures` and `default-model`.
//!
//! Both check that the Python packages they need import before doing anything. The GGUF stage
//! of `fixtures` needs llama.cpp's converter, which we take from the `llama-cpp-python` source
//! distribution on PyPI (pinned by version and sha256) and unpack under the ignored `.cache/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;

const LLAMA_CPP_PYTHON: &str = "llama_cpp_python-0.3.36";
const LLAMA_CPP_PYTHON_SHA256: &str =
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
/// PEP 503 index page listing the source distribution's download link (PyPI's own file host).
const PYPI_INDEX: &str = "https://pypi.org/simple/llama-cpp-python/";
/// Use an existing llama.cpp checkout (with convert_hf_to_gguf.py and gguf-py) instead.
const LLAMA_CPP_DIR_ENV: &str = "TANDEM_LLAMA_CPP_DIR";
/// The Python interpreter to use (default `python3`).
const PYTHON_ENV: &str = "PYTHON";

const FIXTURE_MODULES: &[&str] = &[
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "numpy",
    "gguf",
    "sentencepiece",
];

#[derive(clap::Args)]
pub struct FixturesArgs {
    /// Which part to regenerate.
    #[arg(long, default_value = "all", value_parser = ["hf", "gguf", "all"])]
    stage: String,
    /// Only this fixture model (repeatable).
    #[arg(long)]
    model: Vec<String>,
}

#[derive(clap::Args)]
pub struct DefaultModelArgs {
    /// Training steps (the committed model's count is the default).
    #[arg(long)]
    steps: Option<u32>,
}

fn python() -> String {
    std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into())
}

fn check_modules(modules: &[&str]) -> Result<()> {
    let py = python();
    let probe = format!(
        "import importlib.util as u\nmissing=[m for m in {modules:?} if u.find_spec(m) is None]\nprint(' '.join(missing))"
    );
    let out = Command::new(&py)
        .args(["-c", &probe])
        .output()
        .with_context(|| {
            format!("could not run `{py}` (set {PYTHON_ENV} to pick an interpreter)")
        })?;
    if !out.status.success() {
        bail!(
            "`{py}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let missing = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !missing.is_empty() {
        bail!(
            "Python packages missing for `{py}`: {missing}\n  install them with: {py} -m pip install {missing}\n  \
             (torch: the CPU wheel is enough, e.g. --index-url https://download.pytorch.org/whl/cpu)"
        );
    }
    Ok(())
}

pub fn fixtures(args: &FixturesArgs) -> Result<()> {
    check_modules(FIXTURE_MODULES)?;
    let root = cmd::root();
    let mut run = Command::new(python());
    run.current_dir(&root)
        .arg("scripts/make_fixtures.py")
        .args(["--out", "tests/fixtures", "--stage", &args.stage]);
    for model in &args.model {
        run.args(["--model", model]);
    }
    if args.stage != "hf" {
        run.arg("--llama-cpp").arg(llama_cpp_tree()?);
    }
    cmd::run(&mut run)
}

pub fn default_model(args: &DefaultModelArgs) -> Result<()> {
    check_modules(&["torch", "tokenizers", "numpy", "gguf"])?;
    let mut run = Command::new(python());
    run.current_dir(cmd::root())
        .arg("scripts/train_default_model.py")
        .args(["--out", "assets/default-model.gguf"]);
    if let Some(steps) = args.steps {
        run.args(["--steps", &steps.to_string()]);
    }
    cmd::run(&mut run)
}

/// A llama.cpp source tree holding `convert_hf_to_gguf.py`, downloading it once if needed.
fn llama_cpp_tree() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var(LLAMA_CPP_DIR_ENV) {
        let dir = PathBuf::from(dir);
        if !dir.join("convert_hf_to_gguf.py").is_file() {
            bail!(
                "{LLAMA_CPP_DIR_ENV}={} has no convert_hf_to_gguf.py",
                dir.display()
            );
        }
        return Ok(dir);
    }
    let cache = cmd::root().join(".cache");
    let tree = cache.join(LLAMA_CPP_PYTHON).join("vendor/llama.cpp");
    if tree.join("convert_hf_to_gguf.py").is_file() {
        return Ok(tree);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let tarball = cache.join(format!("{LLAMA_CPP_PYTHON}.tar.gz"));
    if !tarball.is_file() || sha256(&tarball)? != LLAMA_CPP_PYTHON_SHA256 {
        download_sdist(&tarball)?;
    }
    let got = sha256(&tarball)?;
    if got != LLAMA_CPP_PYTHON_SHA256 {
        bail!(
            "{}: sha256 {got}, expected {LLAMA_CPP_PYTHON_SHA256}",
            tarball.display()
        );
    }
    cmd::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&cache),
    )?;
    if !tree.join("convert_hf_to_gguf.py").is_file() {
        bail!(
            "{} unpacked, but {} has no convert_hf_to_gguf.py",
            tarball.display(),
            tree.display()
        );
    }
    Ok(tree)
}

/// pip cannot fetch this sdist without building its metadata (which needs CMake), so read the
/// link from PyPI's simple index and fetch the file itself; the sha256 pin guards the result.
fn download_sdist(dest: &Path) -> Result<()> {
    let index = cmd::output("curl", &["-fsSL", PYPI_INDEX])
        .with_context(|| format!("could not read {PYPI_INDEX} with curl"))?;
    let file = format!("{LLAMA_CPP_PYTHON}.tar.gz");
    let url = index
        .split('"')
        .find(|s| s.starts_with("https://") && s.contains(&format!("/{file}")))
        .map(|s| s.split('#').next().unwrap_or(s).to_string())
        .with_context(|| format!("{PYPI_INDEX} lists no {file}"))?;
    cmd::run(Command::new("curl").args(["-fL", "-o"]).arg(dest).arg(&url))
}

fn sha256(path: &Path) -> Result<String> {
    let out = cmd::output("sha256sum", &[path.as_os_str()])
        .with_context(|| format!("sha256sum {} failed", path.display()))?;
    Ok(out.split_whitespace().next().unwrap_or("").to_string())
}
