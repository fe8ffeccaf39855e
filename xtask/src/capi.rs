//! `cargo xtask capi-header [--check]`: generates `include/tandem.h` from `src/capi/` with
//! cbindgen (settings in `cbindgen.toml`), or checks that the committed header is what a fresh
//! generation gives.

use anyhow::{bail, Context, Result};

use crate::cmd;

#[derive(clap::Args)]
pub struct HeaderArgs {
    /// Do not write: fail if the committed header differs from a fresh generation.
    #[arg(long)]
    pub check: bool,
}

/// The header cbindgen generates from the crate as it is now.
pub fn generate() -> Result<String> {
    let root = cmd::root();
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
        .map_err(|e| anyhow::anyhow!("reading cbindgen.toml: {e}"))?;
    let bindings = cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .context("cbindgen could not generate the header")?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).context("cbindgen wrote non-UTF-8")
}

pub fn header(args: &HeaderArgs) -> Result<()> {
    let path = cmd::root().join("include/tandem.h");
    let fresh = generate()?;
    if args.check {
        let committed = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if committed != fresh {
            let line = committed
                .lines()
                .zip(fresh.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()))
                + 1;
            bail!(
                "{} differs from a fresh cbindgen generation (first at line {line}); run `cargo xtask capi-header` and commit it",
                path.display()
            );
        }
        println!("xtask: {} matches a fresh generation", path.display());
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("include/ has a parent"))?;
    std::fs::write(&path, fresh).with_context(|| format!("writing {}", path.display()))?;
    println!("xtask: wrote {}", path.display());
    Ok(())
}

/// The model, prompt and length the C and Java tests generate from.
pub const TEST_MODEL: &str = "assets/default-model.gguf";
pub const TEST_PROMPT: &str = "Once upon a time";
pub const TEST_TOKENS: usize = 24;

/// Link flags of the system libraries the Rust standard library needs when `libtandem.a` is
/// linked into a C program on Linux (what `rustc --print native-static-libs` lists there).
const STATIC_LINK_LIBS: &[&str] = &["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s", "-lutil"];

/// `cargo xtask test`'s capi step: the header is fresh; the C test, linked against the shared
/// and the static library, passes under valgrind with no errors and no leaks; the header
/// compiles as C++17; the README's C example is the file the test builds, and it runs; then the
/// Java binding's test.
pub fn test() -> Result<()> {
    header(&HeaderArgs { check: true })?;
    let root = cmd::root();
    cmd::run(cmd::cargo().args(["build", "-p", "tandem", "--lib", "--bin", "tandem"]))?;
    let lib_dir = root.join("target/debug");
    let out = root.join("target/capi");
    std::fs::create_dir_all(&out)?;
    let expected_ids = expected_greedy(&root, &[])?;
    let expected = csv(&expected_ids);
    println!("xtask: the Rust API's greedy continuation: {expected}");

    let rpath = format!("-Wl,-rpath,{}", lib_dir.display());
    let link_shared = [format!("-L{}", lib_dir.display()), "-ltandem".into(), rpath];
    let mut link_static = vec![lib_dir.join("libtandem.a").display().to_string()];
    link_static.extend(STATIC_LINK_LIBS.iter().map(|s| s.to_string()));
    let shared = compile(
        C,
        "tests/capi/capi_test.c",
        &out.join("capi_test_shared"),
        &link_shared,
    )?;
    let statik = compile(
        C,
        "tests/capi/capi_test.c",
        &out.join("capi_test_static"),
        &link_static,
    )?;
    // The static binary must not need libtandem.so.
    let needed = cmd::output("ldd", &[statik.as_os_str()]).unwrap_or_default();
    if needed.contains("libtandem") {
        bail!(
            "{} links libtandem.so dynamically:\n{needed}",
            statik.display()
        );
    }
    let header_cpp = compile(
        CXX,
        "tests/capi/header_check.cpp",
        &out.join("header_check"),
        &link_shared,
    )?;
    cmd::run(&mut std::process::Command::new(&header_cpp))?;

    let test_args =
        |ids: &str| [TEST_MODEL, TEST_PROMPT, &TEST_TOKENS.to_string(), ids].map(String::from);
    for binary in [&shared, &statik] {
        cmd::run(
            std::process::Command::new("valgrind")
                .current_dir(&root)
                .args([
                    "--error-exitcode=99",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite,indirect,possible",
                    "--show-leak-kinds=definite,indirect,possible",
                    "--suppressions=tests/capi/valgrind.supp",
                ])
                .arg(binary)
                .args(test_args(&expected))
                // The test's "missing NPU" cases must not find the libraries through the
                // search's fallbacks.
                .env_remove(crate::qnn::LIB_DIR_ENV)
                .env_remove("QNN_SDK_ROOT"),
        )?;
    }

    // NPU prefill through the C ABI on the QNN HTP simulator, against the Rust API's NPU run
    // with the same settings (not under valgrind: the simulator would take far too long).
    let qnn = crate::qnn::ensure()?.display().to_string();
    let npu = [
        "--prefill",
        "npu",
        "--qnn-lib",
        &qnn,
        "--chunks",
        "8",
        "--ctx",
        "128",
    ];
    let expected_npu = csv(&expected_greedy(&root, &npu)?);
    cmd::run(
        std::process::Command::new(&shared)
            .current_dir(&root)
            .args(test_args(&expected_npu))
            .args(["--npu", &qnn]),
    )?;

    // The README shows tests/capi/example.c verbatim; build and run it.
    let example_src = std::fs::read_to_string(root.join("tests/capi/example.c"))?;
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    if !readme.contains(example_src.trim_end()) {
        bail!(
            "README.md does not contain tests/capi/example.c verbatim; paste it into the C example"
        );
    }
    let example = compile(
        C,
        "tests/capi/example.c",
        &out.join("example"),
        &link_shared,
    )?;
    cmd::run(
        std::process::Command::new(&example)
            .current_dir(&root)
            .arg(TEST_MODEL),
    )?;

    crate::java::run(
        &root.join(TEST_MODEL),
        TEST_PROMPT,
        TEST_TOKENS,
        &expected_ids,
    )
}

/// The C compiler and flags the tests build with (the issue's: warnings are errors).
const C: (&str, &[&str]) = (
    "cc",
    &["-std=c11", "-Wall", "-Wextra", "-Werror", "-Iinclude"],
);
/// The C++ compiler and flags: the header must compile as C++17 too.
const CXX: (&str, &[&str]) = (
    "c++",
    &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-Iinclude"],
);

/// Compiles `src` (relative to the root) into `out`, linked with `link`; returns `out`.
fn compile(
    (compiler, flags): (&str, &[&str]),
    src: &str,
    out: &std::path::Path,
    link: &[String],
) -> Result<std::path::PathBuf> {
    cmd::run(
        std::process::Command::new(compiler)
            .current_dir(cmd::root())
            .args(flags)
            .arg(src)
            .arg("-o")
            .arg(out)
            .args(link),
    )?;
    Ok(out.to_path_buf())
}

fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The greedy continuation of [`TEST_PROMPT`] through the Rust API (`tandem run --json`, which
/// runs the engine), that the C and Java tests must reproduce.
/// `engine_args` replace the default `--prefill cpu`.
fn expected_greedy(root: &std::path::Path, engine_args: &[&str]) -> Result<Vec<u32>> {
    let engine_args = if engine_args.is_empty() {
        &["--prefill", "cpu"][..]
    } else {
        engine_args
    };
    let out = std::process::Command::new(root.join("target/debug/tandem"))
        .current_dir(root)
        .args(["run", "-m", TEST_MODEL, "-p", TEST_PROMPT, "-n"])
        .arg(TEST_TOKENS.to_string())
        .args(["--temperature", "0", "--ignore-eos", "--json"])
        .args(engine_args)
        .output()
        .context("running target/debug/tandem")?;
    if !out.status.success() {
        bail!(
            "tandem run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `"generated_tokens":[1,2,3]` — parsed by hand to keep xtask free of a JSON dependency.
    let key = "\"generated_tokens\":[";
    let start = text
        .find(key)
        .map(|i| i + key.len())
        .context("no generated_tokens in tandem run --json")?;
    let end = start
        + text[start..]
            .find(']')
            .context("unterminated generated_tokens")?;
    let ids = text[start..end]
        .split(',')
        .map(|s| s.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing generated_tokens")?;
    if ids.len() != TEST_TOKENS {
        bail!("tandem run gave {} tokens, wanted {TEST_TOKENS}", ids.len());
    }
    Ok(ids)
}
