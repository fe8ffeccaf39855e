//! Idempotent installation of what the cross tests need: Debian packages for linking and running
//! aarch64 binaries under qemu (and `unzip` for the QNN wheel), rustup targets, rustup
//! components, and the QNN libraries (`crate::qnn`). Present things are skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::{cmd, qnn};

pub const APT_PACKAGES: &[&str] = &[
    "qemu-user",
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "unzip",
    // The C ABI test: compilers, and valgrind for memory errors and leaks; a JDK for the Java
    // binding test.
    "gcc",
    "g++",
    "valgrind",
    "openjdk-17-jdk-headless",
];
pub const RUST_TARGETS: &[&str] = &[
    "aarch64-unknown-linux-gnu",
    "aarch64-linux-android",
    "aarch64-apple-darwin",
    "aarch64-apple-ios",
];
pub const RUST_COMPONENTS: &[&str] = &["rustfmt", "clippy"];

/// The dynamic loader whose folder's parent is the sysroot qemu needs (`qemu-aarch64 -L`).
const AARCH64_LOADER: &str = "lib/ld-linux-aarch64.so.1";

/// Everything; returns the aarch64 sysroot.
pub fn all() -> Result<PathBuf> {
    apt_packages()?;
    rustup_targets()?;
    rustup_components()?;
    let sysroot = aarch64_sysroot()?;
    println!("ensure: aarch64 sysroot {}", sysroot.display());
    let qnn = qnn::ensure()?;
    println!("ensure: QNN libraries {}", qnn.display());
    let models = crate::models::ensure()?;
    println!("ensure: real model files {}", models.display());
    Ok(sysroot)
}

fn dpkg_installed(package: &str) -> bool {
    cmd::output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_some_and(|status| status.trim() == "install ok installed")
}

pub fn apt_packages() -> Result<()> {
    if cmd::output("dpkg-query", &["--version"]).is_none() {
        bail!("dpkg-query not found: installing {APT_PACKAGES:?} needs a Debian-like system");
    }
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        println!("ensure: apt packages present: {}", APT_PACKAGES.join(" "));
        return Ok(());
    }
    println!("ensure: installing apt packages {}", missing.join(" "));
    cmd::run(cmd::privileged("apt-get").arg("update"))?;
    cmd::run(
        cmd::privileged("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
}

pub fn rustup_targets() -> Result<()> {
    let Some(installed) = cmd::output("rustup", &["target", "list", "--installed"]) else {
        bail!("`rustup target list --installed` failed: is rustup installed?");
    };
    let installed: Vec<&str> = installed.lines().map(str::trim).collect();
    let missing: Vec<&str> = RUST_TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.contains(t))
        .collect();
    if missing.is_empty() {
        println!("ensure: rustup targets present: {}", RUST_TARGETS.join(" "));
        return Ok(());
    }
    cmd::run(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing),
    )
}

pub fn rustup_components() -> Result<()> {
    let Some(installed) = cmd::output("rustup", &["component", "list", "--installed"]) else {
        bail!("`rustup component list --installed` failed: is rustup installed?");
    };
    // Installed components carry a host suffix: `clippy-x86_64-unknown-linux-gnu`.
    let missing: Vec<&str> = RUST_COMPONENTS
        .iter()
        .copied()
        .filter(|c| {
            !installed
                .lines()
                .any(|l| l.trim() == *c || l.trim().starts_with(&format!("{c}-")))
        })
        .collect();
    if missing.is_empty() {
        println!(
            "ensure: rustup components present: {}",
            RUST_COMPONENTS.join(" ")
        );
        return Ok(());
    }
    cmd::run(
        Command::new("rustup")
            .args(["component", "add"])
            .args(&missing),
    )
}

/// The folder holding `lib/ld-linux-aarch64.so.1`, found from the files the cross libc packages
/// installed (normally `/usr/aarch64-linux-gnu`).
pub fn aarch64_sysroot() -> Result<PathBuf> {
    for package in ["libc6-dev-arm64-cross", "libc6-arm64-cross"] {
        let Some(files) = cmd::output("dpkg", &["-L", package]) else {
            continue;
        };
        for line in files.lines().map(str::trim) {
            let path = Path::new(line);
            // Either the loader itself is listed, or a `lib` folder that contains it.
            let candidates = [
                line.strip_suffix(AARCH64_LOADER)
                    .map(|root| PathBuf::from(root.trim_end_matches('/'))),
                path.ends_with("lib")
                    .then(|| path.parent().map(Path::to_path_buf))
                    .flatten(),
            ];
            for root in candidates.into_iter().flatten() {
                if !root.as_os_str().is_empty() && root.join(AARCH64_LOADER).is_file() {
                    return Ok(root);
                }
            }
        }
    }
    bail!(
        "no aarch64 sysroot: no folder listed by `dpkg -L libc6-dev-arm64-cross` contains \
         {AARCH64_LOADER}; run `cargo xtask ensure`"
    )
}
