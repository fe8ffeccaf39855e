//! `cargo xtask test`: every check, in order, each timed; a step that cannot run is a failure.
//! Ends with a table and the line `xtask: N passed, N failed`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::ValueEnum;

use crate::{cmd, ensure, models, qnn};

#[derive(clap::Args)]
pub struct Args {
    /// Do not install missing apt packages, rustup targets or components.
    #[arg(long)]
    skip_ensure: bool,
    /// Run only these steps (repeatable or comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Step>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Step {
    /// Install apt packages, rustup targets and components (idempotent).
    Ensure,
    /// `cargo fmt --all -- --check`
    Fmt,
    /// `cargo clippy --workspace --all-targets -- -D warnings`
    Clippy,
    /// `cargo test --workspace` on the host, with TANDEM_QNN_LIB_DIR set to the QNN libraries
    /// and TANDEM_REAL_MODELS_DIR to the real model files (both fetched if missing, checksums
    /// verified; a failure to fetch fails the step).
    Test,
    /// tandem-cpu and tandem-hal tests, and sys-qnn's ABI layout unit tests, for
    /// aarch64-unknown-linux-gnu, run under qemu.
    TestAarch64,
    /// The C ABI: include/tandem.h is fresh; the C test against libtandem.so and libtandem.a
    /// under valgrind; the header as C++17; the README's C example; the Java binding's test.
    Capi,
    /// `cargo check --workspace --target aarch64-linux-android`
    CheckAndroid,
    /// `cargo check --workspace --target aarch64-apple-ios`
    CheckIos,
}

const ALL_STEPS: &[Step] = &[
    Step::Ensure,
    Step::Fmt,
    Step::Clippy,
    Step::Test,
    Step::TestAarch64,
    Step::Capi,
    Step::CheckAndroid,
    Step::CheckIos,
];

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Ensure => "ensure",
            Step::Fmt => "fmt",
            Step::Clippy => "clippy",
            Step::Test => "test",
            Step::TestAarch64 => "test-aarch64",
            Step::Capi => "capi",
            Step::CheckAndroid => "check-android",
            Step::CheckIos => "check-ios",
        }
    }

    fn run(self) -> Result<()> {
        match self {
            Step::Ensure => ensure::all().map(drop),
            Step::Fmt => cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"])),
            Step::Clippy => cmd::run(cmd::cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])),
            Step::Test => {
                let qnn_dir = qnn::ensure()?;
                let models_dir = models::ensure()?;
                let skip_log = skip_log_path();
                let _ = std::fs::remove_file(&skip_log);
                let result = cmd::run(
                    cmd::cargo()
                        .args(["test", "--workspace"])
                        .env(qnn::LIB_DIR_ENV, qnn_dir)
                        .env(models::DIR_ENV, models_dir)
                        .env(SKIP_LOG_ENV, &skip_log),
                );
                report_skips(&skip_log);
                result
            }
            Step::TestAarch64 => {
                let sysroot = ensure::aarch64_sysroot()?;
                let aarch64 = |args: &[&str]| {
                    let mut c = cmd::cargo();
                    c.args(args)
                        .args(["--target", "aarch64-unknown-linux-gnu"])
                        .env(
                            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                            "aarch64-linux-gnu-gcc",
                        )
                        .env(
                            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
                            format!("qemu-aarch64 -L {}", sysroot.display()),
                        );
                    c
                };
                cmd::run(&mut aarch64(&[
                    "test",
                    "-p",
                    "tandem-cpu",
                    "-p",
                    "tandem-hal",
                ]))?;
                // The FFI struct sizes and offsets on the ABI phones use (the real-library tests
                // need the x86_64 HTP library and stay on the host).
                cmd::run(&mut aarch64(&["test", "-p", "sys-qnn", "--lib"]))
            }
            Step::Capi => crate::capi::test(),
            Step::CheckAndroid => check_target("aarch64-linux-android"),
            Step::CheckIos => check_target("aarch64-apple-ios"),
        }
    }
}

/// Tests that need the QNN libraries append a line here when they skip (`sys_qnn::ENV_SKIP_LOG`).
const SKIP_LOG_ENV: &str = "TANDEM_SKIP_LOG";

fn skip_log_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/xtask-skipped-tests.log")
}

/// Prints every skipped test, so a skip is never mistaken for a pass.
fn report_skips(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    println!("xtask: {} tests skipped", lines.len());
    for l in lines {
        println!("  {l}");
    }
}

fn check_target(target: &str) -> Result<()> {
    cmd::run(cmd::cargo().args(["check", "--workspace", "--target", target]))
}

struct Outcome {
    step: Step,
    ok: bool,
    time: Duration,
    error: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        print_versions();
    }
    let steps: Vec<Step> = ALL_STEPS
        .iter()
        .copied()
        .filter(|s| args.only.is_empty() || args.only.contains(s))
        .filter(|s| !(args.skip_ensure && *s == Step::Ensure))
        .collect();

    let mut outcomes = Vec::new();
    for step in steps {
        println!("\n==== xtask step: {} ====", step.name());
        let start = Instant::now();
        let result = step.run();
        let time = start.elapsed();
        if let Err(err) = &result {
            eprintln!("xtask: step {} FAILED: {err:#}", step.name());
        }
        outcomes.push(Outcome {
            step,
            ok: result.is_ok(),
            time,
            error: result.err().map(|e| format!("{e:#}")),
        });
    }

    println!("\n{:<15} {:<7} {:>9}", "step", "result", "time");
    for o in &outcomes {
        let result = if o.ok { "ok" } else { "FAILED" };
        println!(
            "{:<15} {:<7} {:>8.1}s",
            o.step.name(),
            result,
            o.time.as_secs_f64()
        );
    }
    for o in outcomes.iter().filter(|o| !o.ok) {
        if let Some(error) = &o.error {
            println!("  {}: {error}", o.step.name());
        }
    }
    let passed = outcomes.iter().filter(|o| o.ok).count();
    let failed = outcomes.len() - passed;
    println!("xtask: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn print_versions() {
    println!("==== versions ====");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (label, program, args) in [
        ("rustc", "rustc", &["-V"][..]),
        ("cargo", cargo.as_str(), &["-V"][..]),
        ("rustup", "rustup", &["-V"][..]),
        ("qemu-aarch64", "qemu-aarch64", &["--version"][..]),
        ("aarch64 gcc", "aarch64-linux-gnu-gcc", &["--version"][..]),
        ("kernel", "uname", &["-srm"][..]),
    ] {
        println!("{label:<14} {}", cmd::first_line(program, args));
    }
    let mut host = Command::new("rustc");
    host.arg("-vV");
    if let Ok(out) = host.output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(h) = line.strip_prefix("host: ") {
                println!("{:<14} {h}", "host");
            }
        }
    }
}
