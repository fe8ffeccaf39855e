//! The C ABI: what `include/tandem.h` declares (generated from this module by cbindgen; `cargo
//! xtask capi-header` rewrites it, and `cargo xtask test` fails when the committed header
//! differs). Apps on Android (NDK), iOS and desktops link `libtandem.so` / `libtandem.a`.
//!
//! Every function catches panics (a caught panic is `TANDEM_ERR_INTERNAL`), checks its pointers,
//! strings and `size` fields, and on failure returns a negative `tandem_status` and leaves the
//! message for `tandem_last_error()`. Behind the handles are the facade's [`crate::Engine`] and
//! [`crate::Conversation`], set up through [`crate::app`] — the same code the Java binding uses.
//!
//! This module is an FFI boundary like the `sys-*` crates: its `unsafe` is the dereferencing of
//! the caller's pointers, each with its `// SAFETY:` line.

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

mod engine;
mod params;
mod session;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::app::{AppError, Status};

pub use engine::*;
pub use params::*;
pub use session::*;

/// Version of this C interface. It changes when a function's signature or a struct's layout
/// changes incompatibly; compare it with `tandem_abi_version()` of the library you loaded.
pub const TANDEM_ABI_VERSION: u32 = 1;

/// Result of a call: `TANDEM_OK` (0) or one of the negative `TANDEM_ERR_*` codes; the message of
/// a failure is in `tandem_last_error()`.
pub type tandem_status = i32;

/// Success.
pub const TANDEM_OK: tandem_status = 0;
/// A NULL pointer where one is required, a string that is not UTF-8, a `size` field that is not
/// this library's `sizeof` of the struct, a value out of range, a token id outside the
/// vocabulary, a chat turn on a model without a chat template, a session of a freed engine.
pub const TANDEM_ERR_INVALID_ARGUMENT: tandem_status = -1;
/// The model could not be loaded: missing or unreadable file, corrupt file, unsupported
/// architecture or tensor type. The message names the file and what is wrong.
pub const TANDEM_ERR_MODEL_LOAD: tandem_status = -2;
/// `require_npu` was set and the NPU delegate could not be prepared (the message says why:
/// library not found, wrong version, an op the NPU cannot run, …). Without `require_npu` an
/// unavailable NPU is not an error: prefill runs on the CPU and the stats say why.
pub const TANDEM_ERR_NPU_UNAVAILABLE: tandem_status = -3;
/// The generation was cancelled (`tandem_cancel`); the session is as it was before it.
pub const TANDEM_ERR_CANCELLED: tandem_status = -4;
/// The conversation plus the prompt and `max_tokens` do not fit the context; nothing ran and
/// the session is unchanged.
pub const TANDEM_ERR_CONTEXT_OVERFLOW: tandem_status = -5;
/// The session is running a generation on another thread (one at a time per session).
pub const TANDEM_ERR_BUSY: tandem_status = -6;
/// A bug in tandem (a caught panic, a worker that stopped). Please report the message.
pub const TANDEM_ERR_INTERNAL: tandem_status = -7;
/// The caller's buffer is too small; `*needed` holds the size required.
pub const TANDEM_ERR_BUFFER_TOO_SMALL: tandem_status = -8;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // Interior NULs cannot be in a C string; show them as U+FFFD.
    let clean = CString::new(message.replace('\0', "\u{FFFD}")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = clean);
}

/// Runs one C ABI call: catches panics, maps an error to its status and leaves its message.
fn guard(f: impl FnOnce() -> Result<(), AppError>) -> tandem_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => TANDEM_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status.code()
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (a panic was caught): {what}"));
            TANDEM_ERR_INTERNAL
        }
    }
}

/// The caller's string as UTF-8 (`what` names it in errors); `None` for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for the call.
unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, AppError> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map(Some).map_err(|e| {
        AppError::invalid(format!(
            "{what} is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// Like [`opt_str`], but NULL is an error.
///
/// # Safety
/// As [`opt_str`].
unsafe fn req_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, AppError> {
    // SAFETY: forwarded contract.
    unsafe { opt_str(p, what) }?.ok_or_else(|| AppError::invalid(format!("{what} is NULL")))
}

/// Checks an output pointer and clears what it points to.
///
/// # Safety
/// `out` is NULL or points to writable storage for one pointer.
unsafe fn out_ptr<'a, T>(out: *mut *mut T, what: &str) -> Result<&'a mut *mut T, AppError> {
    if out.is_null() {
        return Err(AppError::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and writable by the caller's contract.
    let slot = unsafe { &mut *out };
    *slot = std::ptr::null_mut();
    Ok(slot)
}

/// Copies `bytes` and a NUL into the caller's buffer, or says how much it needs.
///
/// # Safety
/// `buf` is NULL or points to `cap` writable bytes; `needed` is NULL or writable.
unsafe fn copy_out(
    bytes: &[u8],
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> Result<(), AppError> {
    let need = bytes.len() + 1;
    if !needed.is_null() {
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { *needed = need };
    }
    if buf.is_null() || cap < need {
        return Err(AppError::new(
            Status::BufferTooSmall,
            format!("the buffer holds {cap} bytes; {need} are needed"),
        ));
    }
    // SAFETY: `buf` has room for `need` bytes (checked above); the regions cannot overlap, as
    // `bytes` is ours.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    Ok(())
}

static VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the package version contains a NUL"),
    };

/// The library's version, e.g. "0.1.0". Static storage: never free it.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn tandem_version() -> *const c_char {
    VERSION.as_ptr()
}

/// `TANDEM_ABI_VERSION` of the library as built, to compare with the header's at run time.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn tandem_abi_version() -> u32 {
    TANDEM_ABI_VERSION
}

/// The message of the last call on this thread that failed ("" if none has). The string
/// belongs to the library and stays valid until the next failing call on this thread.
///
/// Thread safety: per thread (thread-local storage); any thread.
#[no_mangle]
pub extern "C" fn tandem_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A short name for a status ("ok", "invalid argument", …; "unknown status" for a code this
/// library does not define). Static storage: never free it.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn tandem_status_str(status: tandem_status) -> *const c_char {
    let s: &'static CStr = match status {
        TANDEM_OK => c"ok",
        TANDEM_ERR_INVALID_ARGUMENT => c"invalid argument",
        TANDEM_ERR_MODEL_LOAD => c"model load failed",
        TANDEM_ERR_NPU_UNAVAILABLE => c"NPU unavailable",
        TANDEM_ERR_CANCELLED => c"cancelled",
        TANDEM_ERR_CONTEXT_OVERFLOW => c"context overflow",
        TANDEM_ERR_BUSY => c"busy",
        TANDEM_ERR_INTERNAL => c"internal error",
        TANDEM_ERR_BUFFER_TOO_SMALL => c"buffer too small",
        _ => c"unknown status",
    };
    s.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_the_shared_table() {
        for s in Status::ALL {
            // SAFETY: tandem_status_str returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(tandem_status_str(s.code())) };
            assert_eq!(name.to_str().unwrap(), s.name());
        }
        let codes = [
            TANDEM_ERR_INVALID_ARGUMENT,
            TANDEM_ERR_MODEL_LOAD,
            TANDEM_ERR_NPU_UNAVAILABLE,
            TANDEM_ERR_CANCELLED,
            TANDEM_ERR_CONTEXT_OVERFLOW,
            TANDEM_ERR_BUSY,
            TANDEM_ERR_INTERNAL,
            TANDEM_ERR_BUFFER_TOO_SMALL,
        ];
        assert_eq!(codes, Status::ALL.map(Status::code));
    }

    #[test]
    fn a_caught_panic_is_an_internal_error_with_its_message() {
        let st = guard(|| panic!("boom"));
        assert_eq!(st, TANDEM_ERR_INTERNAL);
        // SAFETY: tandem_last_error returns this thread's NUL-terminated message.
        let msg = unsafe { CStr::from_ptr(tandem_last_error()) };
        assert!(msg.to_str().unwrap().contains("boom"), "{msg:?}");
    }
}
