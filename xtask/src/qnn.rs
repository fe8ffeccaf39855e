//! `cargo xtask qnn-libs`: the real Qualcomm QNN libraries for tests, from the pinned PyPI wheel
//! `onnxruntime-qnn` (manylinux x86_64), downloaded once into `.cache/qnn/` and verified by
//! sha256. We extract `onnxruntime_qnn/libQnn*.so` with its sibling `onnxruntime_qnn.libs/`
//! (the libc++ they find through their `$ORIGIN` rpath), keeping the two folders side by side.
//! Tests find the libraries through `TANDEM_QNN_LIB_DIR` (set by the host `test` step).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cmd, fetch};

const WHEEL: &str = "onnxruntime_qnn-2.7.0-cp311-cp311-manylinux_2_35_x86_64.whl";
/// sha256 of [`WHEEL`] as served by PyPI (also in the index's `#sha256=` fragment).
const WHEEL_SHA256: &str = "c56c01562b8534fe8980cfea4601408d950c065f8251fb862ce82101c52c9849";
/// The folder inside the wheel holding the QNN libraries, and its libc++ sibling.
const LIB_FOLDER: &str = "onnxruntime_qnn";
const LIBS_SIBLING: &str = "onnxruntime_qnn.libs";
/// Files that must be present after extraction.
const REQUIRED: &[&str] = &["libQnnHtp.so", "libQnnSystem.so"];
/// Name of the environment variable tests read (`sys_qnn::ENV_LIB_DIR`).
pub const LIB_DIR_ENV: &str = "TANDEM_QNN_LIB_DIR";

fn cache() -> PathBuf {
    cmd::root().join(".cache").join("qnn")
}

/// The extraction root: `<cache>/onnxruntime-qnn-2.7.0/{onnxruntime_qnn, onnxruntime_qnn.libs}`.
fn extract_root() -> PathBuf {
    cache().join("onnxruntime-qnn-2.7.0")
}

/// Where `libQnnHtp.so` ends up (the value of `TANDEM_QNN_LIB_DIR`).
pub fn lib_dir() -> PathBuf {
    extract_root().join(LIB_FOLDER)
}

/// A marker recording which wheel the extracted files came from; extraction is skipped when it
/// names the pinned sha256 and the required files are there.
fn marker() -> PathBuf {
    extract_root().join(".extracted-from")
}

fn extracted_ok() -> bool {
    std::fs::read_to_string(marker()).is_ok_and(|m| m.trim() == WHEEL_SHA256)
        && REQUIRED.iter().all(|f| lib_dir().join(f).is_file())
        && extract_root().join(LIBS_SIBLING).is_dir()
}

/// Fetches and extracts once; returns the folder holding `libQnnHtp.so`.
pub fn ensure() -> Result<PathBuf> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        bail!("the onnxruntime-qnn wheel's libraries run on x86_64 Linux only");
    }
    if extracted_ok() {
        println!("qnn-libs: present in {}", lib_dir().display());
        return Ok(lib_dir());
    }
    let cache = cache();
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let wheel = cache.join(WHEEL);
    fetch::pypi_file("onnxruntime-qnn", WHEEL, WHEEL_SHA256, &wheel)?;
    extract(&wheel)?;
    for f in REQUIRED {
        let path = lib_dir().join(f);
        if !path.is_file() {
            bail!(
                "{} unpacked, but {} is missing",
                wheel.display(),
                path.display()
            );
        }
    }
    std::fs::write(marker(), WHEEL_SHA256)
        .with_context(|| format!("writing {}", marker().display()))?;
    println!("qnn-libs: extracted to {}", lib_dir().display());
    Ok(lib_dir())
}

/// `cargo xtask qnn-libs`: ensure, then print where they are and how to use them.
pub fn run() -> Result<()> {
    let dir = ensure()?;
    let mut libs: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    libs.sort();
    println!("qnn-libs: {} ({})", dir.display(), libs.join(" "));
    println!("  export {LIB_DIR_ENV}={}", dir.display());
    Ok(())
}

/// Extracts the library folder and its libc++ sibling with `unzip` (installed by `ensure` when
/// missing) into a fresh extraction root.
fn extract(wheel: &Path) -> Result<()> {
    let root = extract_root();
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    if cmd::output("unzip", &["-v"]).is_none() {
        bail!("`unzip` not found: run `cargo xtask ensure` (it installs it)");
    }
    cmd::run(
        Command::new("unzip")
            .args(["-q", "-o"])
            .arg(wheel)
            .arg(format!("{LIB_FOLDER}/libQnn*.so"))
            .arg(format!("{LIBS_SIBLING}/*"))
            .arg("-d")
            .arg(&root),
    )
}
