//! Finding and opening `libQnnHtp.so` / `libQnnSystem.so` at run time, and checking that the
//! provider speaks the core API layout this crate declares.
//!
//! Search order (first hit wins): an explicit file or folder; `$TANDEM_QNN_LIB_DIR`;
//! `$QNN_SDK_ROOT/lib/<host-or-target folder>`; on Android the app's native library folder (when
//! the caller knows it), `/vendor/lib64` and `/odm/lib64`; finally the plain file name through the
//! system loader's own path. Every attempt is recorded so a failure can list them all.

use std::ffi::{CStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::interface::{
    QnnInterface_ImplementationV2_40_t, QnnInterface_getProviders_t, QnnInterface_t,
    QNN_INTERFACE_GET_PROVIDERS,
};
use crate::system::{
    QnnSystemInterface_ImplementationV1_t, QnnSystemInterface_getProviders_t, QnnSystemInterface_t,
    QNN_SYSTEM_INTERFACE_GET_PROVIDERS,
};
use crate::types::*;

macro_rules! lib_name {
    ($base:literal) => {
        if cfg!(windows) {
            concat!($base, ".dll")
        } else if cfg!(target_vendor = "apple") {
            concat!("lib", $base, ".dylib")
        } else {
            concat!("lib", $base, ".so")
        }
    };
}

/// Folder holding the QNN libraries (tests and `cargo xtask` set it to the extracted wheel).
pub const ENV_LIB_DIR: &str = "TANDEM_QNN_LIB_DIR";

/// File to which tests that skip for want of the QNN libraries append one line each
/// (`cargo xtask test` sets it and counts them in its summary).
pub const ENV_SKIP_LOG: &str = "TANDEM_SKIP_LOG";

/// For tests that need the QNN libraries: reports that the current test is skipped and why,
/// where it cannot be missed — on stderr past the test harness's output capture, and as a line
/// in the [`ENV_SKIP_LOG`] file when that is set.
pub fn report_skipped_test(reason: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    let line = format!("SKIPPED {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(ENV_SKIP_LOG) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}
/// Root of an installed QNN SDK; libraries are under `lib/<folder>` (see [`sdk_lib_folders`]).
pub const ENV_SDK_ROOT: &str = "QNN_SDK_ROOT";

/// File name of the HTP backend library on this target.
pub const HTP_LIBRARY: &str = lib_name!("QnnHtp");
/// File name of the System library on this target.
pub const SYSTEM_LIBRARY: &str = lib_name!("QnnSystem");

/// Android system folders that hold vendor QNN libraries on Snapdragon devices.
pub const ANDROID_VENDOR_DIRS: &[&str] = &["/vendor/lib64", "/odm/lib64"];

/// Core API versions whose function-table layout this crate declares: major 2, minor ≥ 40
/// (newer minors only append slots).
pub const SUPPORTED_CORE_API: &str = "2.x with x >= 40";
const SUPPORTED_MAJOR: u32 = 2;
const MIN_MINOR: u32 = 40;

/// Why a QNN library could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("QNN library {name} not found; tried:{}", format_tried(.tried))]
    NotFound {
        name: String,
        /// Each path (or bare name for the system loader) with the reason it failed.
        tried: Vec<(PathBuf, String)>,
    },
    #[error("{path}: symbol `{symbol}` missing: {reason}")]
    MissingSymbol {
        path: PathBuf,
        symbol: String,
        reason: String,
    },
    #[error("{path}: {symbol} failed with error {code}")]
    ProviderQuery {
        path: PathBuf,
        symbol: String,
        code: Qnn_ErrorHandle_t,
    },
    #[error("{path}: no provider for backend id {wanted}; found {found:?}")]
    NoProvider {
        path: PathBuf,
        wanted: u32,
        /// `(backend id, provider name)` of every provider the library offered.
        found: Vec<(u32, String)>,
    },
    #[error(
        "{path}: provider reports QNN core API {found}, but sys-qnn declares the table layout of \
         core API {supported}"
    )]
    UnsupportedApiVersion {
        path: PathBuf,
        found: Qnn_Version_t,
        supported: &'static str,
    },
}

fn format_tried(tried: &[(PathBuf, String)]) -> String {
    tried
        .iter()
        .map(|(p, why)| format!("\n  {}: {why}", p.display()))
        .collect()
}

/// The pure version check: `Ok` when the core API `found` has the table layout declared here.
pub fn check_core_api_version(found: Qnn_Version_t) -> Result<(), &'static str> {
    if found.major == SUPPORTED_MAJOR && found.minor >= MIN_MINOR {
        Ok(())
    } else {
        Err(SUPPORTED_CORE_API)
    }
}

/// Where to look, beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct LibrarySearch {
    /// A library file, or a folder holding it (the API's / CLI's `--qnn-lib DIR`).
    pub explicit: Option<PathBuf>,
    /// Android: the app's native library folder (`ApplicationInfo.nativeLibraryDir`), if known.
    pub native_library_dir: Option<PathBuf>,
    /// Skip `TANDEM_QNN_LIB_DIR` and `QNN_SDK_ROOT` (only explicit folders and the system
    /// loader are tried).
    pub ignore_env: bool,
}

/// SDK `lib/` sub-folders for the target this crate is compiled for. On aarch64 Linux the SDK
/// ships several `aarch64-oe-linux-gcc<version>` folders; those are found by listing `lib/`.
pub fn sdk_lib_folders() -> &'static [&'static str] {
    if cfg!(target_os = "android") {
        &["aarch64-android"]
    } else if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        &["x86_64-linux-clang"]
    } else if cfg!(all(windows, target_arch = "x86_64")) {
        &["x86_64-windows-msvc"]
    } else if cfg!(all(windows, target_arch = "aarch64")) {
        &["aarch64-windows-msvc"]
    } else {
        &[]
    }
}

/// Every candidate path for `name`, in search order. `env` reads an environment variable (a
/// parameter so tests can simulate one); a bare `name` at the end means "the system loader".
pub fn candidate_paths(
    name: &str,
    search: &LibrarySearch,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(explicit) = &search.explicit {
        if explicit.is_dir() || explicit.file_name().is_none_or(|f| f != name) {
            // A folder, or a path that does not name the library: look inside.
            if explicit.is_file() {
                out.push(explicit.clone());
            } else {
                out.push(explicit.join(name));
            }
        } else {
            out.push(explicit.clone());
        }
    }
    if let Some(dir) = env(ENV_LIB_DIR).filter(|d| !d.is_empty()) {
        out.push(PathBuf::from(dir).join(name));
    }
    if let Some(root) = env(ENV_SDK_ROOT).filter(|d| !d.is_empty()) {
        let lib = PathBuf::from(root).join("lib");
        for folder in sdk_lib_folders() {
            out.push(lib.join(folder).join(name));
        }
        if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
            let mut oe: Vec<PathBuf> = std::fs::read_dir(&lib)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with("aarch64-oe-linux-gcc"))
                })
                .collect();
            oe.sort();
            oe.reverse(); // newest gcc first
            out.extend(oe.into_iter().map(|d| d.join(name)));
        }
    }
    if cfg!(target_os = "android") {
        if let Some(dir) = &search.native_library_dir {
            out.push(dir.join(name));
        }
        out.extend(ANDROID_VENDOR_DIRS.iter().map(|d| Path::new(d).join(name)));
    }
    out.push(PathBuf::from(name));
    out
}

fn real_env(key: &str) -> Option<OsString> {
    std::env::var_os(key)
}

/// Opens the first candidate that loads; records why each earlier one did not.
fn open_first(
    name: &str,
    search: &LibrarySearch,
) -> Result<(libloading::Library, PathBuf), LoadError> {
    let mut tried = Vec::new();
    let no_env = |_: &str| None;
    let env: &dyn Fn(&str) -> Option<OsString> = if search.ignore_env {
        &no_env
    } else {
        &real_env
    };
    for path in candidate_paths(name, search, env) {
        let bare = path.components().count() == 1;
        if !bare && !path.exists() {
            tried.push((path, "no such file".to_string()));
            continue;
        }
        // SAFETY: loading a QNN library runs its initialisers; these are Qualcomm's backend
        // libraries, which are designed to be dlopen'ed by applications and have no
        // initialisation-order requirements on the host process.
        match stdout_to_stderr(|| unsafe { libloading::Library::new(&path) }) {
            Ok(lib) => return Ok((lib, path)),
            Err(err) => {
                let why = if bare {
                    format!("system loader: {err}")
                } else {
                    err.to_string()
                };
                tried.push((path, why));
            }
        }
    }
    Err(LoadError::NotFound {
        name: name.to_string(),
        tried,
    })
}

pub(crate) struct LibInner {
    interface: *const QnnInterface_t,
    path: PathBuf,
    /// Dropped last (field order): every function pointer above points into it.
    _lib: libloading::Library,
}

// SAFETY: `interface` points at a table of function pointers and constants inside the loaded
// library, never written after `getProviders` returns; the library stays loaded while `LibInner`
// lives. QNN's API functions are callable from any thread.
unsafe impl Send for LibInner {}
// SAFETY: as above; shared access only reads the table.
unsafe impl Sync for LibInner {}

/// An opened HTP backend library with its checked provider. Cheap to clone.
#[derive(Clone)]
pub struct QnnLibrary {
    pub(crate) inner: Arc<LibInner>,
}

impl std::fmt::Debug for QnnLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QnnLibrary")
            .field("path", &self.inner.path)
            .field("provider", &self.provider_name())
            .field("api_version", &self.api_version())
            .finish()
    }
}

impl QnnLibrary {
    /// Searches for the HTP library (see the module docs); `explicit` is a file or folder.
    pub fn open(explicit: Option<&Path>) -> Result<Self, LoadError> {
        Self::open_with(&LibrarySearch {
            explicit: explicit.map(Path::to_path_buf),
            ..LibrarySearch::default()
        })
    }

    pub fn open_with(search: &LibrarySearch) -> Result<Self, LoadError> {
        let (lib, path) = open_first(HTP_LIBRARY, search)?;
        Self::from_library(lib, path, QNN_BACKEND_ID_HTP)
    }

    fn from_library(
        lib: libloading::Library,
        path: PathBuf,
        backend_id: u32,
    ) -> Result<Self, LoadError> {
        let symbol = "QnnInterface_getProviders";
        // SAFETY: the symbol's C signature is `Qnn_ErrorHandle_t (const QnnInterface_t***,
        // uint32_t*)`, which `QnnInterface_getProviders_t` declares.
        let get: libloading::Symbol<QnnInterface_getProviders_t> = unsafe {
            lib.get(QNN_INTERFACE_GET_PROVIDERS)
        }
        .map_err(|e| LoadError::MissingSymbol {
            path: path.clone(),
            symbol: symbol.to_string(),
            reason: e.to_string(),
        })?;
        let mut list: *const *const QnnInterface_t = std::ptr::null();
        let mut count = 0u32;
        // SAFETY: both out-pointers are valid for writes; the library fills them with an array
        // it owns for as long as it stays loaded.
        let code = unsafe { get(&mut list, &mut count) };
        if code != QNN_SUCCESS || list.is_null() {
            return Err(LoadError::ProviderQuery {
                path,
                symbol: symbol.to_string(),
                code,
            });
        }
        let mut found = Vec::new();
        let mut chosen = None;
        for i in 0..count as usize {
            // SAFETY: `list` has `count` entries (the call's contract); each is null or points
            // at a provider record whose first 40 bytes (id, name, version) are the same in every
            // QNN 2.x release, so reading them is valid before the version check.
            let (id, name, version, ptr) = unsafe {
                let p = *list.add(i);
                if p.is_null() {
                    continue;
                }
                (
                    (*p).backend_id,
                    cstr_lossy((*p).provider_name),
                    (*p).api_version.core_api_version,
                    p,
                )
            };
            found.push((id, name));
            if id == backend_id && chosen.is_none() {
                chosen = Some((ptr, version));
            }
        }
        let Some((interface, version)) = chosen else {
            return Err(LoadError::NoProvider {
                path,
                wanted: backend_id,
                found,
            });
        };
        check_core_api_version(version).map_err(|supported| LoadError::UnsupportedApiVersion {
            path: path.clone(),
            found: version,
            supported,
        })?;
        Ok(Self {
            inner: Arc::new(LibInner {
                interface,
                path,
                _lib: lib,
            }),
        })
    }

    /// The file that was loaded (or the bare name, when the system loader found it).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn interface(&self) -> &QnnInterface_t {
        // SAFETY: non-null, checked at load, and valid while `inner` keeps the library loaded.
        unsafe { &*self.inner.interface }
    }

    /// The core API 2.40 function table (version checked at load).
    pub fn table(&self) -> &QnnInterface_ImplementationV2_40_t {
        &self.interface().v2_40
    }

    pub fn backend_id(&self) -> u32 {
        self.interface().backend_id
    }

    pub fn provider_name(&self) -> String {
        cstr_lossy(self.interface().provider_name)
    }

    /// Core and backend API versions as the provider record reports them.
    pub fn api_version(&self) -> Qnn_ApiVersion_t {
        self.interface().api_version
    }

    /// `backendGetBuildId`, e.g. `v2.51.0.260929181845`.
    pub fn build_id(&self) -> Result<String, crate::QnnError> {
        let f = crate::api::slot(self.table().backend_get_build_id, "backendGetBuildId")?;
        let mut id: *const std::ffi::c_char = std::ptr::null();
        // SAFETY: the out-pointer is valid; the library returns a static string.
        let code = unsafe { f(&mut id) };
        crate::api::check(self, code, "backendGetBuildId")?;
        Ok(cstr_lossy(id))
    }

    /// `errorGetMessage`: the library's text for an error handle (never fails; falls back to
    /// the number).
    pub fn error_message(&self, code: Qnn_ErrorHandle_t) -> String {
        let Some(f) = self.table().error_get_message else {
            return format!("QNN error {code}");
        };
        let mut msg: *const std::ffi::c_char = std::ptr::null();
        // SAFETY: the out-pointer is valid; the library returns a static string or null.
        let rc = unsafe { f(code, &mut msg) };
        if rc != QNN_SUCCESS || msg.is_null() {
            return format!("QNN error {code}");
        }
        cstr_lossy(msg)
    }
}

pub(crate) struct SysInner {
    interface: *const QnnSystemInterface_t,
    path: PathBuf,
    _lib: libloading::Library,
}

// SAFETY: as for `LibInner`: a read-only table inside a library kept loaded by `_lib`.
unsafe impl Send for SysInner {}
// SAFETY: as above.
unsafe impl Sync for SysInner {}

/// The opened `libQnnSystem` and its provider.
#[derive(Clone)]
pub struct QnnSystemLibrary {
    pub(crate) inner: Arc<SysInner>,
}

impl std::fmt::Debug for QnnSystemLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QnnSystemLibrary")
            .field("path", &self.inner.path)
            .field("api_version", &self.api_version())
            .finish()
    }
}

impl QnnSystemLibrary {
    /// Same search as [`QnnLibrary::open`], for the System library.
    pub fn open(explicit: Option<&Path>) -> Result<Self, LoadError> {
        Self::open_with(&LibrarySearch {
            explicit: explicit.map(Path::to_path_buf),
            ..LibrarySearch::default()
        })
    }

    pub fn open_with(search: &LibrarySearch) -> Result<Self, LoadError> {
        let (lib, path) = open_first(SYSTEM_LIBRARY, search)?;
        let symbol = "QnnSystemInterface_getProviders";
        // SAFETY: C signature `Qnn_ErrorHandle_t (const QnnSystemInterface_t***, uint32_t*)`.
        let get: libloading::Symbol<QnnSystemInterface_getProviders_t> = unsafe {
            lib.get(QNN_SYSTEM_INTERFACE_GET_PROVIDERS)
        }
        .map_err(|e| LoadError::MissingSymbol {
            path: path.clone(),
            symbol: symbol.to_string(),
            reason: e.to_string(),
        })?;
        let mut list: *const *const QnnSystemInterface_t = std::ptr::null();
        let mut count = 0u32;
        // SAFETY: valid out-pointers; the library owns the returned array.
        let code = unsafe { get(&mut list, &mut count) };
        if code != QNN_SUCCESS || list.is_null() || count == 0 {
            return Err(LoadError::ProviderQuery {
                path,
                symbol: symbol.to_string(),
                code,
            });
        }
        // SAFETY: `count >= 1`, so the first entry exists.
        let interface = unsafe { *list };
        if interface.is_null() {
            return Err(LoadError::NoProvider {
                path,
                wanted: 0,
                found: Vec::new(),
            });
        }
        // SAFETY: non-null provider record; the version sits before the table and is stable.
        let version = unsafe { (*interface).system_api_version };
        if version.major != 1 {
            return Err(LoadError::UnsupportedApiVersion {
                path,
                found: version,
                supported: "1.x",
            });
        }
        Ok(Self {
            inner: Arc::new(SysInner {
                interface,
                path,
                _lib: lib,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn interface(&self) -> &QnnSystemInterface_t {
        // SAFETY: non-null (checked at load), valid while the library is loaded.
        unsafe { &*self.inner.interface }
    }

    pub fn table(&self) -> &QnnSystemInterface_ImplementationV1_t {
        &self.interface().v1
    }

    pub fn provider_name(&self) -> String {
        cstr_lossy(self.interface().provider_name)
    }

    pub fn api_version(&self) -> Qnn_Version_t {
        self.interface().system_api_version
    }
}

/// A C string the library owns, copied; "" for null.
pub(crate) fn cstr_lossy(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null pointers handed out by QNN point at NUL-terminated strings that live at
    // least as long as the object they came from, which the caller still holds.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Runs `f` with file descriptor 1 pointed at stderr, then flushes C stdio before restoring it.
///
/// The HTP library's initialisers `printf` a banner (`# LIBNATIVE: No alternate configuration
/// …`) into C's stdout buffer, which would otherwise land in the middle of `--json` output when
/// the process exits. Rust's own `stdout()` is not touched, but anything another thread writes
/// to fd 1 during `f` also goes to stderr; loading happens once, at start-up.
#[cfg(unix)]
fn stdout_to_stderr<T>(f: impl FnOnce() -> T) -> T {
    use std::sync::Mutex;
    static FD1: Mutex<()> = Mutex::new(());
    extern "C" {
        fn dup(fd: i32) -> i32;
        fn dup2(old: i32, new: i32) -> i32;
        fn close(fd: i32) -> i32;
        fn fflush(stream: *mut std::ffi::c_void) -> i32;
    }
    let _guard = FD1.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: plain POSIX descriptor calls on fds 1 and 2 and a descriptor we own; fflush(NULL)
    // flushes every C stream and is always valid. On any failure we run `f` unredirected.
    unsafe {
        fflush(std::ptr::null_mut());
        let saved = dup(1);
        if saved < 0 || dup2(2, 1) < 0 {
            if saved >= 0 {
                close(saved);
            }
            return f();
        }
        let out = f();
        fflush(std::ptr::null_mut());
        dup2(saved, 1);
        close(saved);
        out
    }
}

#[cfg(not(unix))]
fn stdout_to_stderr<T>(f: impl FnOnce() -> T) -> T {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_check_is_pure_and_names_both() {
        let v = |major, minor, patch| Qnn_Version_t {
            major,
            minor,
            patch,
        };
        assert!(check_core_api_version(v(2, 40, 0)).is_ok());
        assert!(check_core_api_version(v(2, 41, 3)).is_ok());
        assert_eq!(check_core_api_version(v(2, 14, 0)), Err(SUPPORTED_CORE_API));
        assert_eq!(check_core_api_version(v(3, 0, 0)), Err(SUPPORTED_CORE_API));
        let err = LoadError::UnsupportedApiVersion {
            path: "libQnnHtp.so".into(),
            found: v(2, 14, 0),
            supported: SUPPORTED_CORE_API,
        };
        let text = err.to_string();
        assert!(
            text.contains("2.14.0") && text.contains(SUPPORTED_CORE_API),
            "{text}"
        );
    }

    #[test]
    fn candidates_follow_the_documented_order() {
        let env = |key: &str| match key {
            ENV_LIB_DIR => Some(OsString::from("/env/dir")),
            ENV_SDK_ROOT => Some(OsString::from("/sdk")),
            _ => None,
        };
        let search = LibrarySearch {
            explicit: Some(PathBuf::from("/explicit")),
            native_library_dir: Some(PathBuf::from("/data/app/lib")),
            ignore_env: false,
        };
        let paths = candidate_paths(HTP_LIBRARY, &search, &env);
        assert_eq!(paths[0], Path::new("/explicit").join(HTP_LIBRARY));
        assert_eq!(paths[1], Path::new("/env/dir").join(HTP_LIBRARY));
        if let Some(folder) = sdk_lib_folders().first() {
            assert_eq!(
                paths[2],
                Path::new("/sdk/lib").join(folder).join(HTP_LIBRARY)
            );
        }
        assert_eq!(paths.last().unwrap(), Path::new(HTP_LIBRARY));
        // An explicit file path is used as is.
        let search = LibrarySearch {
            explicit: Some(PathBuf::from("/x").join(HTP_LIBRARY)),
            ..Default::default()
        };
        let none = |_: &str| None;
        let paths = candidate_paths(HTP_LIBRARY, &search, &none);
        assert_eq!(
            paths,
            vec![Path::new("/x").join(HTP_LIBRARY), HTP_LIBRARY.into()]
        );
    }

    #[test]
    fn not_found_lists_every_path() {
        let err = LoadError::NotFound {
            name: HTP_LIBRARY.into(),
            tried: vec![
                ("/a/libQnnHtp.so".into(), "no such file".into()),
                ("libQnnHtp.so".into(), "system loader: cannot open".into()),
            ],
        };
        let text = err.to_string();
        assert!(text.contains("/a/libQnnHtp.so: no such file"), "{text}");
        assert!(text.contains("system loader"), "{text}");
    }
}
