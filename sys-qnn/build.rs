//! Without the `bindgen` feature this does nothing. With it, bindings are generated from the QNN
//! SDK headers into `$OUT_DIR/qnn_sdk_bindings.rs` and `cfg(qnn_sdk_bindings)` is set, which
//! turns on `sys_qnn::sdk_bindings` and the layout comparison in `tests/bindgen_abi.rs`.
//!
//! SDK root: `<TARGET>_QNN_SDK_ROOT` (target triple upper-cased, `-` → `_`), else `QNN_SDK_ROOT`.
//! When the feature is on but no SDK is found, the build *continues* with a `cargo:warning`
//! naming both variables (so `cargo check --features bindgen` works anywhere) and the
//! comparison test fails loudly instead of passing silently.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(qnn_sdk_bindings)");
    #[cfg(feature = "bindgen")]
    sdk::generate();
}

#[cfg(feature = "bindgen")]
mod sdk {
    use std::path::PathBuf;

    const ENV_SDK_ROOT: &str = "QNN_SDK_ROOT";

    pub fn generate() {
        let target = std::env::var("TARGET").unwrap_or_default();
        let target_var = format!("{}_{ENV_SDK_ROOT}", target.to_uppercase().replace('-', "_"));
        println!("cargo::rerun-if-env-changed={target_var}");
        println!("cargo::rerun-if-env-changed={ENV_SDK_ROOT}");
        let root = std::env::var_os(&target_var)
            .or_else(|| std::env::var_os(ENV_SDK_ROOT))
            .map(PathBuf::from);
        let Some(root) = root else {
            println!(
                "cargo::warning=sys-qnn: feature `bindgen` is on but neither {target_var} nor \
                 {ENV_SDK_ROOT} is set; no SDK bindings generated (the bindgen ABI test will fail)"
            );
            return;
        };
        let include = root.join("include").join("QNN");
        let header = include.join("QnnInterface.h");
        if !header.is_file() {
            println!(
                "cargo::warning=sys-qnn: {} not found; no SDK bindings generated",
                header.display()
            );
            return;
        }
        let mut wrapper = String::new();
        for h in [
            "QnnInterface.h",
            "System/QnnSystemInterface.h",
            "HTP/QnnHtpGraph.h",
            "HTP/QnnHtpDevice.h",
            "HTP/QnnHtpContext.h",
        ] {
            if include.join(h).is_file() {
                wrapper.push_str(&format!("#include \"{h}\"\n"));
            }
        }
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let result = bindgen::Builder::default()
            .header_contents("qnn_wrapper.h", &wrapper)
            .clang_arg(format!("-I{}", include.display()))
            .allowlist_type("Qnn.*")
            .allowlist_var("QNN_.*")
            .layout_tests(false)
            .generate();
        match result {
            Ok(bindings) => {
                if let Err(e) = bindings.write_to_file(out.join("qnn_sdk_bindings.rs")) {
                    println!("cargo::warning=sys-qnn: writing bindings failed: {e}");
                    return;
                }
                println!("cargo::rustc-cfg=qnn_sdk_bindings");
            }
            Err(e) => println!(
                "cargo::warning=sys-qnn: bindgen failed on {}: {e}",
                include.display()
            ),
        }
    }
}
