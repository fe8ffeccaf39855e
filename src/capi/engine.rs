//! `tandem_engine`: a loaded model and the workers that run its sessions; and the calls that
//! need no engine (`tandem_devices`).

use std::ffi::c_char;
use std::path::PathBuf;

use tandem_scheduler::{Engine, ModelSource};

use super::params::{read_sized, tandem_engine_default_params, tandem_engine_params};
use super::{copy_out, guard, out_ptr, req_str, tandem_status};
use crate::app::{source_from_fd, AppError};

/// A loaded model, its CPU backend, the NPU delegate when there is one, and the worker threads
/// its sessions run on. Opaque; create with `tandem_engine_create*`, free with
/// `tandem_engine_free`.
///
/// Thread safety: an engine may be shared by any number of threads; its sessions run
/// concurrently (prefill on the NPU for one while the CPU decodes others).
pub struct tandem_engine {
    pub(super) engine: Engine,
}

fn create(
    source: impl FnOnce() -> Result<ModelSource, AppError>,
    p: *const tandem_engine_params,
    out: *mut *mut tandem_engine,
) -> tandem_status {
    guard(|| {
        // SAFETY: `out` is NULL or writable (the caller's contract for every `out`).
        let out = unsafe { out_ptr(out, "out") }?;
        // SAFETY: `p` is NULL or a whole params struct (contract of tandem_engine_create).
        let params =
            unsafe { read_sized(p, "tandem_engine_params", || tandem_engine_default_params()) }?;
        // SAFETY: its pointers are NULL or valid for the call (same contract).
        let config = unsafe { params.config() }?;
        let engine = config.open(&source()?)?;
        *out = Box::into_raw(Box::new(tandem_engine { engine }));
        Ok(())
    })
}

/// Loads a model — a `.gguf` file, or a Hugging Face folder (config.json, *.safetensors,
/// tokenizer.json) — and starts an engine on it. With `prefill` NPU or AUTO the NPU graphs are
/// prepared here (or restored from `cache_dir`), which can take seconds the first time.
///
/// `params` may be NULL for the defaults. On success `*out` is the new engine; on failure it is
/// NULL and the status is TANDEM_ERR_INVALID_ARGUMENT (NULL `model_path` or `out`, bad UTF-8, a
/// bad field), TANDEM_ERR_MODEL_LOAD or TANDEM_ERR_NPU_UNAVAILABLE (`require_npu`).
///
/// Thread safety: any thread; engines are independent.
///
/// # Safety
/// `model_path` is NULL or a NUL-terminated string; `params` is NULL or points to a
/// `tandem_engine_params` whose pointers are NULL or valid during the call; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn tandem_engine_create(
    model_path: *const c_char,
    params: *const tandem_engine_params,
    out: *mut *mut tandem_engine,
) -> tandem_status {
    create(
        // SAFETY: `model_path` is NULL or NUL-terminated (this function's contract).
        || {
            Ok(ModelSource::Path(PathBuf::from(unsafe {
                req_str(model_path, "model_path")
            }?)))
        },
        params,
        out,
    )
}

/// Loads a `.gguf` model from bytes `[offset, offset + length)` of an open file descriptor
/// (`length` 0 = to the end of the file) — what Android hands apps for a file in their APK
/// (`AAsset_openFileDescriptor64`, `AssetFileDescriptor`). The bytes are memory-mapped, not
/// copied. The library opens the file again through `/proc/self/fd`, so the caller keeps `fd`
/// and may close it once this returns. Linux and Android only (elsewhere
/// TANDEM_ERR_INVALID_ARGUMENT). Otherwise as `tandem_engine_create`.
///
/// Thread safety: any thread.
///
/// # Safety
/// As `tandem_engine_create`.
#[no_mangle]
pub unsafe extern "C" fn tandem_engine_create_from_fd(
    fd: std::ffi::c_int,
    offset: u64,
    length: u64,
    params: *const tandem_engine_params,
    out: *mut *mut tandem_engine,
) -> tandem_status {
    create(|| source_from_fd(fd, offset, length), params, out)
}

/// The context length every session of this engine has (positions of prompt and generated
/// tokens together), or 0 if `engine` is NULL.
///
/// Thread safety: any thread.
///
/// # Safety
/// `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn tandem_engine_context_length(engine: *const tandem_engine) -> u32 {
    // SAFETY: NULL or live, by contract.
    match unsafe { engine.as_ref() } {
        Some(e) => u32::try_from(e.engine.ctx()).unwrap_or(u32::MAX),
        None => 0,
    }
}

/// Tokenizes UTF-8 `text` with the model's tokenizer (with its start token when `add_special`)
/// into `tokens`, which holds `cap` ids. `*needed` (if not NULL) is set to the number of ids;
/// if they do not fit, nothing is written and the status is TANDEM_ERR_BUFFER_TOO_SMALL (pass
/// `tokens` NULL and `cap` 0 to ask for the count).
///
/// Thread safety: any thread, concurrently with anything on the engine.
///
/// # Safety
/// `engine` is NULL or live; `text` is NULL or NUL-terminated; `tokens` is NULL or holds `cap`
/// writable ids; `needed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tandem_tokenize(
    engine: *const tandem_engine,
    text: *const c_char,
    add_special: bool,
    tokens: *mut i32,
    cap: usize,
    needed: *mut usize,
) -> tandem_status {
    guard(|| {
        // SAFETY: NULL or live, by contract.
        let e = unsafe { engine.as_ref() }.ok_or_else(|| AppError::invalid("engine is NULL"))?;
        // SAFETY: NULL or NUL-terminated, by contract.
        let text = unsafe { req_str(text, "text") }?;
        let ids = e
            .engine
            .model()
            .tokenizer
            .encode(text, add_special)
            .map_err(AppError::from_run)?;
        // SAFETY: `tokens` holds `cap` ids and `needed` is writable or NULL, by contract.
        unsafe { super::session::copy_ids(&ids, tokens, cap, needed) }
    })
}

/// Stops the engine's workers and frees it with its model. Free its sessions first: a session
/// of a freed engine stays safe to call and to free, but its generations fail with
/// TANDEM_ERR_INVALID_ARGUMENT. NULL is ignored.
///
/// Thread safety: no other call may be using `engine` (sessions excepted, as above).
///
/// # Safety
/// `engine` is NULL or an engine from `tandem_engine_create*` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tandem_engine_free(engine: *mut tandem_engine) {
    if engine.is_null() {
        return;
    }
    let _ = guard(|| {
        // SAFETY: made by Box::into_raw in `create` and not freed yet, by contract.
        drop(unsafe { Box::from_raw(engine) });
        Ok(())
    });
}

/// Writes what `tandem devices --json` prints — the CPU and each NPU delegate, available with
/// its library, version and target or unavailable with the reason and every library path
/// tried — as a NUL-terminated JSON object into `json` (`cap` bytes). `*needed` (if not NULL)
/// is set to the bytes required, NUL included; if they do not fit, nothing is written and the
/// status is TANDEM_ERR_BUFFER_TOO_SMALL (pass NULL and 0 to ask for the size). QNN libraries
/// are looked for as with NULL `qnn_lib_dir`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `json` is NULL or holds `cap` writable bytes; `needed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tandem_devices(
    json: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> tandem_status {
    guard(|| {
        let probed = crate::delegates::probe_all(tandem_qnn::QnnOptions::default());
        let doc = crate::delegates::devices_json(&probed).to_string();
        // SAFETY: forwarded contract.
        unsafe { copy_out(doc.as_bytes(), json, cap, needed) }
    })
}
