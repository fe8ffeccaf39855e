//! `cargo xtask …`: the project's test orchestration and generators of committed data.
//!
//! `test` is the one command CI runs (`.ci/run`); `ensure` installs the cross toolchain it needs;
//! `fixtures` and `default-model` regenerate `tests/fixtures/` and `assets/` with Python.

mod capi;
mod cmd;
mod ensure;
mod fetch;
mod java;
mod models;
mod python;
mod qnn;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tandem's developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every check CI runs: ensure, fmt, clippy, host tests, aarch64 tests under qemu,
    /// Android/iOS type-checks. Prints a summary and exits non-zero if any step failed.
    Test(test::Args),
    /// Install (idempotently) the apt packages, rustup targets and components the tests need,
    /// and fetch the QNN libraries (`qnn-libs`).
    Ensure,
    /// Download the pinned onnxruntime-qnn wheel once and extract the QNN HTP/System libraries
    /// into .cache/qnn/; prints the folder to export as TANDEM_QNN_LIB_DIR.
    QnnLibs,
    /// Generate include/tandem.h from src/capi/ with cbindgen (--check: fail if it differs).
    CapiHeader(capi::HeaderArgs),
    /// Regenerate tests/fixtures/ (tiny HF models, references, GGUF files) with Python.
    Fixtures(python::FixturesArgs),
    /// Regenerate tests/fixtures/real/ (llama.cpp's tokens, greedy continuations and logits on
    /// the real model files; builds llama.cpp from the pinned source package).
    RealFixtures,
    /// Regenerate assets/default-model.gguf (trained with torch; takes several minutes).
    DefaultModel(python::DefaultModelArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test(args) => test::run(&args),
        Task::Ensure => ensure::all().map(|sysroot| {
            println!(
                "xtask: tools present; aarch64 sysroot {}",
                sysroot.display()
            );
        }),
        Task::QnnLibs => qnn::run(),
        Task::CapiHeader(args) => capi::header(&args),
        Task::Fixtures(args) => python::fixtures(&args),
        Task::DefaultModel(args) => python::default_model(&args),
        Task::RealFixtures => python::real_fixtures(),
    };
    if let Err(err) = result {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}
