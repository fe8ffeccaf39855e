//! QNN's log callback, forwarded to a process-wide Rust sink.
//!
//! The C callback is `void (const char* fmt, QnnLog_Level_t, uint64_t timestamp, va_list)` and
//! carries no user pointer, so the sink is global. The message is formatted by handing the
//! `va_list` (received as a pointer, see [`crate::types::QnnLog_Callback_t`]) to the C library's
//! `vsnprintf` exactly once, which is sound on every Unix target: the pointer we receive is what
//! `vsnprintf` itself expects for its `va_list` parameter on x86_64 System V, AAPCS64 (by-reference
//! struct) and Apple arm64 (`char*`). On other targets (Windows, whose `vsnprintf` is an inline
//! CRT wrapper) the raw format string is forwarded unformatted.

use std::ffi::{c_char, c_void, CStr};
use std::sync::RwLock;

use crate::types::*;

/// Receives every QNN log line: level (`QNN_LOG_LEVEL_*`), the library's timestamp, the text.
pub type LogSink = Box<dyn Fn(QnnLog_Level_t, u64, &str) + Send + Sync>;

static SINK: RwLock<Option<LogSink>> = RwLock::new(None);

/// Replaces the process-wide sink (e.g. with one that forwards to `tracing`). Without one,
/// errors and warnings go to stderr prefixed `qnn:`.
pub fn set_log_sink(sink: LogSink) {
    if let Ok(mut slot) = SINK.write() {
        *slot = Some(sink);
    }
}

/// Removes the sink installed with [`set_log_sink`].
pub fn clear_log_sink() {
    if let Ok(mut slot) = SINK.write() {
        *slot = None;
    }
}

pub fn level_name(level: QnnLog_Level_t) -> &'static str {
    match level {
        QNN_LOG_LEVEL_ERROR => "error",
        QNN_LOG_LEVEL_WARN => "warn",
        QNN_LOG_LEVEL_INFO => "info",
        QNN_LOG_LEVEL_VERBOSE => "verbose",
        QNN_LOG_LEVEL_DEBUG => "debug",
        _ => "unknown",
    }
}

#[cfg(unix)]
extern "C" {
    fn vsnprintf(buf: *mut c_char, size: usize, fmt: *const c_char, args: *mut c_void) -> i32;
}

/// Formats `fmt` with `args`; consumes `args`.
///
/// # Safety
/// `fmt` is null or a NUL-terminated printf format, and `args` is the `va_list` (as passed to a
/// `QnnLog_Callback_t`) holding the arguments it names, not yet consumed.
unsafe fn format_message(fmt: *const c_char, args: *mut c_void) -> String {
    if fmt.is_null() {
        return String::new();
    }
    #[cfg(unix)]
    {
        let mut buf = [0 as c_char; 2048];
        // SAFETY: `buf` is writable for its length; `fmt`/`args` are valid per this function's
        // contract and used once (a `va_list` may be traversed only once).
        let n = unsafe { vsnprintf(buf.as_mut_ptr(), buf.len(), fmt, args) };
        if n >= 0 {
            // SAFETY: vsnprintf always NUL-terminates within `buf.len()`.
            let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
            let mut text = text.trim_end().to_string();
            if n as usize >= buf.len() {
                text.push_str(" …");
            }
            return text;
        }
    }
    let _ = args;
    // SAFETY: non-null and NUL-terminated per the contract.
    unsafe { CStr::from_ptr(fmt) }
        .to_string_lossy()
        .trim_end()
        .to_string()
}

/// The `QnnLog_Callback_t` tandem registers with `logCreate`.
///
/// # Safety
/// Called by QNN with a valid format string and its matching `va_list`.
pub unsafe extern "C" fn log_callback(
    fmt: *const c_char,
    level: QnnLog_Level_t,
    timestamp: u64,
    args: *mut c_void,
) {
    // SAFETY: the library passes a format string and the va_list of its arguments.
    let text = unsafe { format_message(fmt, args) };
    let _ = std::panic::catch_unwind(|| {
        let sink = SINK.read();
        match sink.as_deref() {
            Ok(Some(sink)) => sink(level, timestamp, &text),
            _ => {
                if level <= QNN_LOG_LEVEL_WARN {
                    eprintln!("qnn: {}: {text}", level_name(level));
                }
            }
        }
    });
}
