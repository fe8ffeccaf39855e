//! Generators that run Python (dev-time only): `fixtures` and `default-model`.
//!
//! Both check that the Python packages they need import before doing anything. The GGUF stage
//! of `fixtures` needs llama.cpp's converter, which we take from the `llama-cpp-python` source
//! distribution on PyPI (pinned by version and sha256) and unpack under the ignored `.cache/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cmd, fetch};

const LLAMA_CPP_PYTHON: &str = "llama_cpp_python-0.3.36";
const LLAMA_CPP_PYTHON_SHA256: &str =
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
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
    fetch::pypi_file(
        "llama-cpp-python",
        &format!("{LLAMA_CPP_PYTHON}.tar.gz"),
        LLAMA_CPP_PYTHON_SHA256,
        &tarball,
    )?;
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

/// `cargo xtask real-fixtures`: builds llama.cpp from the pinned source package (CMake, Release,
/// native), compiles `scripts/llama_ref.c` against it, fetches the real model files, and writes
/// llama.cpp's references for them into `tests/fixtures/real/` (committed, so CI needs none of
/// this). Needs cmake, a C/C++ compiler, and Python with jinja2 and gguf.
pub fn real_fixtures() -> Result<()> {
    check_modules(&["jinja2", "gguf", "numpy"])?;
    if cmd::output("cmake", &["--version"]).is_none() {
        bail!("cmake not found (apt-get install cmake)");
    }
    let tree = llama_cpp_tree()?;
    let build = cmd::root().join(".cache").join("llama.cpp-build");
    cmd::run(
        Command::new("cmake")
            .arg("-S")
            .arg(&tree)
            .arg("-B")
            .arg(&build)
            .args([
                "-DCMAKE_BUILD_TYPE=Release",
                "-DGGML_NATIVE=ON",
                "-DBUILD_SHARED_LIBS=OFF",
                "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=OFF",
                "-DLLAMA_BUILD_SERVER=OFF",
                "-DLLAMA_CURL=OFF",
            ]),
    )?;
    cmd::run(
        Command::new("cmake")
            .arg("--build")
            .arg(&build)
            .args(["--target", "llama", "-j2"]),
    )?;
    let libs = [
        "src/libllama.a",
        "ggml/src/libggml.a",
        "ggml/src/libggml-cpu.a",
        "ggml/src/libggml-base.a",
    ];
    let binary = build.join("llama_ref");
    let mut cc = Command::new("cc");
    cc.args(["-O2", "-std=c11"])
        .arg(format!("-I{}", tree.join("include").display()))
        .arg(format!("-I{}", tree.join("ggml/include").display()))
        .arg(cmd::root().join("scripts/llama_ref.c"))
        .arg("-o")
        .arg(&binary);
    for lib in libs {
        cc.arg(build.join(lib));
    }
    cc.args(["-lstdc++", "-lgomp", "-lpthread", "-lm"]);
    cmd::run(&mut cc)?;
    let models = crate::models::ensure()?;
    let version = LLAMA_CPP_PYTHON;
    cmd::run(
        Command::new(python())
            .current_dir(cmd::root())
            .arg("scripts/make_real_model_fixtures.py")
            .arg("--llama-ref")
            .arg(&binary)
            .arg("--models")
            .arg(&models)
            .args(["--out", "tests/fixtures/real"])
            .args(["--llama-cpp-version", &format!("vendored in {version}")]),
    )
}
