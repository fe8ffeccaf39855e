//! The Java binding's end-to-end test: builds `libtandem_jni`, compiles `bindings/java/java/`
//! and the test program with `javac`, and runs `dev.tandem.TandemTest` on a model against the
//! token ids the Rust API generated for the same prompt.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cmd;

/// Runs `TandemTest <model> <prompt> <n> <expected>`; fails if any step exits non-zero.
pub fn run(model: &Path, prompt: &str, n: usize, expected: &[u32]) -> Result<()> {
    let root = cmd::root();
    cmd::run(cmd::cargo().args(["build", "-p", "tandem-jni"]))?;

    let classes = root.join("target/java/classes");
    // Start clean so a class deleted from the sources cannot linger and hide a failure.
    if classes.exists() {
        std::fs::remove_dir_all(&classes)
            .with_context(|| format!("removing {}", classes.display()))?;
    }
    let mut sources = java_files(&root.join("bindings/java/java/dev/tandem"))?;
    sources.push(root.join("bindings/java/test/dev/tandem/TandemTest.java"));
    sources.push(root.join("bindings/java/test/dev/tandem/Example.java"));
    cmd::run(
        Command::new("javac")
            .current_dir(&root)
            .args(["-Xlint:all", "-Werror", "-d"])
            .arg(&classes)
            .args(&sources),
    )?;

    let expected = expected
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut test = java(&root, &classes, "dev.tandem.TandemTest");
    test.arg(model).arg(prompt).arg(n.to_string()).arg(expected);
    run_checking_jni(&mut test)?;

    // The README shows Example.java verbatim; run it too.
    let example = std::fs::read_to_string(root.join("bindings/java/test/dev/tandem/Example.java"))?;
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    if !readme.contains(example.trim_end()) {
        bail!("README.md does not contain bindings/java/test/dev/tandem/Example.java verbatim");
    }
    run_checking_jni(java(&root, &classes, "dev.tandem.Example").arg(model))
}

/// `java` running `main_class` against the JNI library in `target/debug`.
fn java(root: &Path, classes: &Path, main_class: &str) -> Command {
    let mut java = Command::new("java");
    java.current_dir(root)
        .arg(format!(
            "-Djava.library.path={}",
            root.join("target/debug").display()
        ))
        // The JVM checks every JNI call the binding makes and warns of misuse (a leaked local
        // reference, a call with an exception pending), which fails the run.
        .arg("-Xcheck:jni")
        .arg("-cp")
        .arg(classes)
        .arg(main_class);
    java
}

/// Like [`cmd::run`], and also fails if the JVM reported JNI misuse (HotSpot prints those
/// warnings on stdout). The output is printed once the program ends.
fn run_checking_jni(java: &mut Command) -> Result<()> {
    let text = cmd::describe(java);
    println!("$ {text}");
    let out = java
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{text}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    if !out.status.success() {
        bail!("`{text}` failed ({})", out.status);
    }
    if let Some(line) = stdout
        .lines()
        .chain(stderr.lines())
        .find(|l| l.contains("WARNING in native method") || l.contains("WARNING: JNI"))
    {
        bail!("`{text}`: the JVM reported JNI misuse: {line}");
    }
    Ok(())
}

/// The `.java` files of `dir`, sorted (so the command line is the same on every run).
fn java_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "java") {
            files.push(path);
        }
    }
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .java files in {}", dir.display());
    Ok(files)
}
