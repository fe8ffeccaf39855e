//! Raw FFI for Qualcomm's QNN C API (core interface + System interface), loaded at run time,
//! with a loader that checks the provider's API version and thin safe wrappers on top.
//!
//! Nothing is linked at build time: [`QnnLibrary::open`] finds `libQnnHtp.so` (see [`loader`]
//! for the search order and [`ENV_LIB_DIR`] / [`ENV_SDK_ROOT`]), resolves
//! `QnnInterface_getProviders`, picks the HTP provider and refuses core API versions whose
//! function table differs from the one declared in [`interface`].
//!
//! The declarations in [`types`], [`interface`], [`config`] and [`system`] are written by hand
//! from binary-interface facts measured against the running library (`../shared/QNN_ABI_FACTS.md`
//! and the measurements recorded in each module), never copied from Qualcomm's headers. With the
//! `bindgen` feature and an SDK (`QNN_SDK_ROOT`), `build.rs` also generates bindings from the
//! SDK headers and `tests/bindgen_abi.rs` compares both layouts.
//!
//! `unsafe` lives in this crate only; [`api`] is the safe surface `backends/qnn` builds on.

#![allow(non_camel_case_types)]

pub mod api;
pub mod config;
pub mod interface;
pub mod loader;
pub mod log;
pub mod perf;
pub mod system;
pub mod types;

pub use api::{
    Backend, Context, ContextBinaryInfo, ContextOptions, Device, DeviceOptions, Graph, GraphInfo,
    GraphOptions, Log, OpSpec, Param, Precision, Profile, ProfileEvent, QnnError, SystemContext,
    TensorDesc, TensorSpec, QNN_OP_PACKAGE,
};
pub use loader::{
    check_core_api_version, report_skipped_test, LibrarySearch, LoadError, QnnLibrary,
    QnnSystemLibrary, ENV_LIB_DIR, ENV_SDK_ROOT, ENV_SKIP_LOG, HTP_LIBRARY, SUPPORTED_CORE_API,
    SYSTEM_LIBRARY,
};
pub use perf::{DcvsV3, PerfInfrastructure, PowerConfig, PowerConfigId, VoltageCorners};
pub use types::*;

/// Environment variables the `bindgen` feature's build script reads (documented here so they
/// are named once): the SDK root, optionally per target (`<TARGET>_QNN_SDK_ROOT` with the target
/// triple upper-cased and `-` replaced by `_`, e.g. `AARCH64_LINUX_ANDROID_QNN_SDK_ROOT`), which
/// wins over the plain one.
pub const BINDGEN_ENV_SDK_ROOT: &str = ENV_SDK_ROOT;
/// Suffix of the per-target SDK root variable; see [`BINDGEN_ENV_SDK_ROOT`].
pub const BINDGEN_ENV_TARGET_SDK_ROOT_SUFFIX: &str = "_QNN_SDK_ROOT";

/// Whether `build.rs` generated SDK bindings (feature `bindgen` with an SDK found).
pub const SDK_BINDINGS_PRESENT: bool = cfg!(qnn_sdk_bindings);

/// Bindings generated from the SDK headers (feature `bindgen` with an SDK present).
#[cfg(all(feature = "bindgen", qnn_sdk_bindings))]
#[allow(
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all,
    missing_docs
)]
pub mod sdk_bindings {
    include!(concat!(env!("OUT_DIR"), "/qnn_sdk_bindings.rs"));
}
