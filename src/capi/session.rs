//! `tandem_session`: one conversation (its tokens and KV cache) on an engine — generate, fork,
//! cancel, and the statistics of its last generation.

use std::ffi::{c_char, c_void};
use std::ops::ControlFlow;
use std::sync::{Mutex, PoisonError, TryLockError};

use tandem_scheduler::{RequestOutput, StopReason};

use super::params::{read_sized, tandem_generate_default_params, tandem_generate_params};
use super::{guard, out_ptr, req_str, tandem_engine, tandem_status};
use crate::app::{AppError, Status};
use crate::conversation::{Canceller, Conversation, EndTurn, TurnOptions};

/// One conversation: its tokens and KV cache, kept across generations (multi-turn). Opaque;
/// create with `tandem_session_create` or `tandem_session_fork`, free with
/// `tandem_session_free`.
///
/// Thread safety: one generation at a time per session (a second concurrent one returns
/// TANDEM_ERR_BUSY); `tandem_cancel` and `tandem_session_stats` may be called from any thread
/// meanwhile. Different sessions may generate concurrently from different threads.
pub struct tandem_session {
    conversation: Mutex<Conversation>,
    canceller: Canceller,
    last: Mutex<Option<tandem_stats>>,
}

/// Called once per generated token, on the thread that called `tandem_generate*`.
/// `token_id` is the token (-1 for text released at the end of generation, held back until
/// then because it could have begun a stop string). `text` holds `len` bytes of UTF-8 that
/// complete whole characters — a character split across tokens is passed with the token that
/// completes it, so `len` may be 0 — followed by a NUL; it is valid only during the call.
/// Return 0 to go on; any other value ends generation after this token, keeping what was
/// generated so far (stop reason TANDEM_STOP_CALLBACK). The callback must not call
/// `tandem_generate*` on the same session.
pub type tandem_token_callback = Option<
    unsafe extern "C" fn(
        token_id: i32,
        text: *const c_char,
        len: usize,
        user_data: *mut c_void,
    ) -> i32,
>;

/// Where a generation's prompt was prefilled.
pub type tandem_device = i32;
/// On the CPU.
pub const TANDEM_DEVICE_CPU: tandem_device = 0;
/// On the NPU.
pub const TANDEM_DEVICE_NPU: tandem_device = 1;
/// Started on the NPU, which failed; the whole prompt was prefilled again on the CPU.
pub const TANDEM_DEVICE_NPU_THEN_CPU: tandem_device = 2;

/// Why a generation ended.
pub type tandem_stop_reason = i32;
/// The model produced an end-of-sequence token.
pub const TANDEM_STOP_EOS: tandem_stop_reason = 0;
/// A stop string was reached (it is not part of the output).
pub const TANDEM_STOP_STRING: tandem_stop_reason = 1;
/// `max_tokens` were generated.
pub const TANDEM_STOP_MAX_TOKENS: tandem_stop_reason = 2;
/// The token callback returned non-zero.
pub const TANDEM_STOP_CALLBACK: tandem_stop_reason = 3;

/// Bytes of `tandem_stats.fallback_reason`, NUL included.
pub const TANDEM_FALLBACK_REASON_BYTES: usize = 256;

/// The figures of a session's last finished generation (what `tandem run --json` reports).
/// Set `size` to `sizeof(tandem_stats)` before passing it to `tandem_session_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tandem_stats {
    /// `sizeof(tandem_stats)` as the caller was compiled; set it before the call.
    pub size: usize,
    /// Tokens of the generation's prompt.
    pub prompt_tokens: u64,
    /// Tokens run through prefill (the prompt plus the previous turn's last token, which the
    /// next turn runs).
    pub prefill_tokens: u64,
    /// Positions already in the session's KV cache and reused, not recomputed.
    pub cached_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Where the prompt was prefilled (TANDEM_DEVICE_*).
    pub prefill_device: tandem_device,
    /// Why generation ended (TANDEM_STOP_*).
    pub stop_reason: tandem_stop_reason,
    /// Prompt chunks prefilled (NPU graph executions or CPU forward passes).
    pub prefill_chunks: u32,
    /// Start of the call to the first generated token, in milliseconds.
    pub ttft_ms: f64,
    /// Wall time of the prefill and its rate.
    pub prefill_ms: f64,
    pub prefill_tok_s: f64,
    /// Wall time of decoding (after the first token) and its rate.
    pub decode_ms: f64,
    pub decode_tok_s: f64,
    /// K/V copied from the NPU's outputs into the session's cache, and the time it took.
    pub handoff_bytes: u64,
    pub handoff_ms: f64,
    /// Whether the NPU was asked for and prefill fell back to the CPU; `fallback_reason` says
    /// why (NUL-terminated UTF-8, cut at a character boundary; "" when it did not fall back).
    pub fell_back: bool,
    pub fallback_reason: [c_char; TANDEM_FALLBACK_REASON_BYTES],
}

impl tandem_stats {
    fn from_output(out: &RequestOutput) -> tandem_stats {
        let s = &out.stats;
        let mut reason = [0 as c_char; TANDEM_FALLBACK_REASON_BYTES];
        if let Some(why) = &s.fallback {
            let mut end = why.len().min(TANDEM_FALLBACK_REASON_BYTES - 1);
            while !why.is_char_boundary(end) {
                end -= 1;
            }
            for (dst, &b) in reason.iter_mut().zip(&why.as_bytes()[..end]) {
                *dst = b as c_char;
            }
        }
        tandem_stats {
            size: std::mem::size_of::<tandem_stats>(),
            prompt_tokens: s.prompt_tokens as u64,
            prefill_tokens: s.prefill_tokens as u64,
            cached_tokens: s.cached_tokens as u64,
            generated_tokens: s.generated_tokens as u64,
            prefill_device: match s.prefill_device.as_str() {
                "npu" => TANDEM_DEVICE_NPU,
                "npu+cpu" => TANDEM_DEVICE_NPU_THEN_CPU,
                _ => TANDEM_DEVICE_CPU,
            },
            stop_reason: match out.stop_reason {
                StopReason::Eos => TANDEM_STOP_EOS,
                StopReason::StopString => TANDEM_STOP_STRING,
                StopReason::MaxTokens => TANDEM_STOP_MAX_TOKENS,
                StopReason::Stopped => TANDEM_STOP_CALLBACK,
            },
            prefill_chunks: u32::try_from(s.chunks.len()).unwrap_or(u32::MAX),
            ttft_ms: s.ttft_ms,
            prefill_ms: s.prefill_ms,
            prefill_tok_s: s.prefill_tok_s,
            decode_ms: s.decode_ms,
            decode_tok_s: s.decode_tok_s,
            handoff_bytes: s.handoff_bytes,
            handoff_ms: s.handoff_ms,
            fell_back: s.fallback.is_some(),
            fallback_reason: reason,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic inside a call is caught and leaves the data consistent (a failed turn is rolled
    // back by the conversation), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn new_session(conversation: Conversation, last: Option<tandem_stats>) -> *mut tandem_session {
    Box::into_raw(Box::new(tandem_session {
        canceller: conversation.canceller(),
        conversation: Mutex::new(conversation),
        last: Mutex::new(last),
    }))
}

/// A new, empty session on `engine`. On success `*out` is the session; on failure NULL.
///
/// Thread safety: any thread, concurrently with other calls on the engine.
///
/// # Safety
/// `engine` is NULL or a live engine; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tandem_session_create(
    engine: *mut tandem_engine,
    out: *mut *mut tandem_session,
) -> tandem_status {
    guard(|| {
        // SAFETY: NULL or writable, by contract.
        let out = unsafe { out_ptr(out, "out") }?;
        // SAFETY: NULL or live, by contract.
        let e = unsafe { engine.as_ref() }.ok_or_else(|| AppError::invalid("engine is NULL"))?;
        *out = new_session(Conversation::new(&e.engine), None);
        Ok(())
    })
}

/// A new session that starts with everything `session` holds — its tokens, its KV cache
/// (copied) and its chat messages — so the two continue independently. TANDEM_ERR_BUSY while
/// `session` is generating.
///
/// Thread safety: any thread (the source session must not be generating).
///
/// # Safety
/// `session` is NULL or live; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tandem_session_fork(
    session: *const tandem_session,
    out: *mut *mut tandem_session,
) -> tandem_status {
    guard(|| {
        // SAFETY: NULL or writable, by contract.
        let out = unsafe { out_ptr(out, "out") }?;
        // SAFETY: NULL or live, by contract.
        let s = unsafe { session_ref(session) }?;
        let conversation = try_lock(s)?.fork().map_err(AppError::from_run)?;
        *out = new_session(conversation, *lock(&s.last));
        Ok(())
    })
}

/// # Safety
/// `session` is NULL or live.
unsafe fn session_ref<'a>(session: *const tandem_session) -> Result<&'a tandem_session, AppError> {
    // SAFETY: NULL or live, by the caller's contract.
    unsafe { session.as_ref() }.ok_or_else(|| AppError::invalid("session is NULL"))
}

fn try_lock(s: &tandem_session) -> Result<std::sync::MutexGuard<'_, Conversation>, AppError> {
    match s.conversation.try_lock() {
        Ok(g) => Ok(g),
        Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
        Err(TryLockError::WouldBlock) => Err(AppError::new(
            Status::Busy,
            "the session is generating on another thread; one generation at a time per session",
        )),
    }
}

/// Runs one turn with the caller's callback and records its stats.
///
/// # Safety
/// `session` is NULL or live; `params` as in `tandem_generate`.
unsafe fn generate_with(
    session: *mut tandem_session,
    params: *const tandem_generate_params,
    callback: tandem_token_callback,
    user_data: *mut c_void,
    run: impl FnOnce(
        &mut Conversation,
        &TurnOptions,
        &mut dyn FnMut(&tandem_scheduler::Token) -> ControlFlow<EndTurn>,
    ) -> Result<RequestOutput, AppError>,
) -> tandem_status {
    guard(|| {
        // SAFETY: NULL or live, by contract.
        let s = unsafe { session_ref(session) }?;
        // SAFETY: NULL or a whole params struct, by contract.
        let p = unsafe {
            read_sized(params, "tandem_generate_params", || {
                tandem_generate_default_params()
            })
        }?;
        // SAFETY: its pointers are valid for the call, by contract.
        let opts = unsafe { p.turn() }?;
        let mut conversation = try_lock(s)?;
        let mut text = Vec::new();
        let mut on_token = |t: &tandem_scheduler::Token| {
            let Some(cb) = callback else {
                return ControlFlow::Continue(());
            };
            text.clear();
            text.extend_from_slice(t.text.as_bytes());
            text.push(0);
            let id = t.id.map_or(-1, |i| i32::try_from(i).unwrap_or(i32::MAX));
            // SAFETY: `cb` is the caller's function; `text` holds `len` bytes and a NUL and
            // outlives the call; `user_data` is passed through untouched.
            let r = unsafe { cb(id, text.as_ptr().cast(), t.text.len(), user_data) };
            if r == 0 {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(EndTurn::Keep)
            }
        };
        let out = run(&mut conversation, &opts, &mut on_token)?;
        *lock(&s.last) = Some(tandem_stats::from_output(&out));
        Ok(())
    })
}

/// Continues the session's conversation with UTF-8 `prompt` and generates up to
/// `params->max_tokens` tokens, calling `callback` (may be NULL) with each. With
/// `apply_chat_template` the prompt is the user's message and the reply the assistant's; without,
/// the text is appended as it is (with the model's start token on an empty session). The
/// conversation keeps the prompt and the generated tokens for the next call.
///
/// `params` may be NULL for the defaults. Errors: TANDEM_ERR_INVALID_ARGUMENT (NULL session or
/// prompt, bad UTF-8, bad params), TANDEM_ERR_CONTEXT_OVERFLOW, TANDEM_ERR_CANCELLED,
/// TANDEM_ERR_BUSY, TANDEM_ERR_INTERNAL. On any error the session is exactly as before the call.
///
/// Thread safety: one generation per session at a time; blocks the calling thread until the
/// generation ends; `tandem_cancel` from another thread ends it early.
///
/// # Safety
/// `session` is NULL or live; `prompt` is NULL or NUL-terminated; `params` is NULL or a
/// `tandem_generate_params` whose pointers are valid during the call; `callback`, if not NULL,
/// is safe to call with `user_data` from this thread.
#[no_mangle]
pub unsafe extern "C" fn tandem_generate(
    session: *mut tandem_session,
    prompt: *const c_char,
    params: *const tandem_generate_params,
    callback: tandem_token_callback,
    user_data: *mut c_void,
) -> tandem_status {
    let run = |c: &mut Conversation, opts: &TurnOptions, on_token: &mut dyn FnMut(&_) -> _| {
        // SAFETY: NULL or NUL-terminated, by this function's contract.
        let prompt = unsafe { req_str(prompt, "prompt") }?;
        c.say(prompt, opts, on_token).map_err(AppError::from_run)
    };
    // SAFETY: forwarded contract.
    unsafe { generate_with(session, params, callback, user_data, run) }
}

/// Like `tandem_generate`, with the prompt given as `n_tokens` token ids (appended as they are:
/// no start token is added; `apply_chat_template` is ignored). `n_tokens` may be 0 to continue
/// from the last generated token.
///
/// Thread safety: as `tandem_generate`.
///
/// # Safety
/// As `tandem_generate`; `tokens` is NULL (with `n_tokens` 0) or holds `n_tokens` ids.
#[no_mangle]
pub unsafe extern "C" fn tandem_generate_tokens(
    session: *mut tandem_session,
    tokens: *const i32,
    n_tokens: usize,
    params: *const tandem_generate_params,
    callback: tandem_token_callback,
    user_data: *mut c_void,
) -> tandem_status {
    let run = |c: &mut Conversation, opts: &TurnOptions, on_token: &mut dyn FnMut(&_) -> _| {
        let have = c.session().tokens().map_err(AppError::from_run)?.len();
        let room = c.model().loaded.spec.max_position_embeddings;
        if n_tokens > room {
            return Err(AppError::new(
                Status::ContextOverflow,
                format!(
                    "{n_tokens} prompt tokens after {have}: more than the model's {room} positions"
                ),
            ));
        }
        // SAFETY: `n_tokens` readable ids at `tokens` (contract), bounded above.
        let ids = unsafe { super::params::slice(tokens, n_tokens, "tokens", room) }?;
        let ids = ids
            .iter()
            .map(|&t| {
                u32::try_from(t).map_err(|_| AppError::invalid(format!("token id {t} is negative")))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        c.send_tokens(ids, opts, on_token)
            .map_err(AppError::from_run)
    };
    // SAFETY: forwarded contract.
    unsafe { generate_with(session, params, callback, user_data, run) }
}

/// Cancels the generation running on `session` (from any thread): it ends with
/// TANDEM_ERR_CANCELLED before its next prefill chunk or decode step, and the session is left as
/// it was before that generation. Does nothing (and returns TANDEM_OK) when none is running; a
/// cancel is never held over for the next generation.
///
/// Thread safety: any thread, concurrently with `tandem_generate*` on the session.
///
/// # Safety
/// `session` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tandem_cancel(session: *const tandem_session) -> tandem_status {
    guard(|| {
        // SAFETY: NULL or live, by contract.
        let s = unsafe { session_ref(session) }?;
        s.canceller.cancel();
        Ok(())
    })
}

/// Copies the statistics of the session's last finished generation into `*out`, whose `size`
/// the caller sets to `sizeof(tandem_stats)`. TANDEM_ERR_INVALID_ARGUMENT if no generation has
/// finished on it yet (a failed or cancelled one does not count; a fork starts with its
/// source's).
///
/// Thread safety: any thread, also while the session generates (it then returns the previous
/// generation's figures).
///
/// # Safety
/// `session` is NULL or live; `out` is NULL or points to a writable `tandem_stats`.
#[no_mangle]
pub unsafe extern "C" fn tandem_session_stats(
    session: *const tandem_session,
    out: *mut tandem_stats,
) -> tandem_status {
    guard(|| {
        // SAFETY: NULL or live, by contract.
        let s = unsafe { session_ref(session) }?;
        if out.is_null() {
            return Err(AppError::invalid("out is NULL"));
        }
        // SAFETY: `out` points to a tandem_stats, whose first field is its size (contract).
        let size = unsafe { out.cast::<usize>().read_unaligned() };
        let ours = std::mem::size_of::<tandem_stats>();
        if size != ours {
            return Err(AppError::invalid(format!(
                "tandem_stats.size is {size}, but this library's tandem_stats is {ours} bytes: \
                 set it to sizeof(tandem_stats) and build against the header of the library you link"
            )));
        }
        let stats = (*lock(&s.last))
            .ok_or_else(|| AppError::invalid("no generation has finished on this session yet"))?;
        // SAFETY: writable and of our size (checked above).
        unsafe { out.write_unaligned(stats) };
        Ok(())
    })
}

/// Copies the conversation's token ids (prompts and generated tokens, in order) into `tokens`
/// (`cap` ids); `*needed` (if not NULL) is set to their number. If they do not fit, nothing is
/// written and the status is TANDEM_ERR_BUFFER_TOO_SMALL. TANDEM_ERR_BUSY while generating.
///
/// Thread safety: any thread (not while the session generates).
///
/// # Safety
/// `session` is NULL or live; `tokens` is NULL or holds `cap` writable ids; `needed` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn tandem_session_tokens(
    session: *const tandem_session,
    tokens: *mut i32,
    cap: usize,
    needed: *mut usize,
) -> tandem_status {
    guard(|| {
        // SAFETY: NULL or live, by contract.
        let s = unsafe { session_ref(session) }?;
        let ids = try_lock(s)?
            .session()
            .tokens()
            .map_err(AppError::from_run)?;
        // SAFETY: forwarded contract.
        unsafe { copy_ids(&ids, tokens, cap, needed) }
    })
}

/// Forgets the conversation (tokens, KV cache, chat messages). TANDEM_ERR_BUSY while generating.
///
/// Thread safety: any thread (not while the session generates).
///
/// # Safety
/// `session` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tandem_session_reset(session: *mut tandem_session) -> tandem_status {
    guard(|| {
        // SAFETY: NULL or live, by contract.
        let s = unsafe { session_ref(session) }?;
        try_lock(s)?.reset().map_err(AppError::from_run)?;
        *lock(&s.last) = None;
        Ok(())
    })
}

/// Frees a session and its KV cache. NULL is ignored.
///
/// Thread safety: no other call may be using `session`.
///
/// # Safety
/// `session` is NULL or a session from `tandem_session_create`/`_fork` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tandem_session_free(session: *mut tandem_session) {
    if session.is_null() {
        return;
    }
    let _ = guard(|| {
        // SAFETY: made by Box::into_raw in `new_session` and not freed yet, by contract.
        drop(unsafe { Box::from_raw(session) });
        Ok(())
    });
}

/// Copies ids into the caller's buffer, or says how many it needs.
///
/// # Safety
/// `buf` is NULL or holds `cap` writable ids; `needed` is NULL or writable.
pub(super) unsafe fn copy_ids(
    ids: &[u32],
    buf: *mut i32,
    cap: usize,
    needed: *mut usize,
) -> Result<(), AppError> {
    if !needed.is_null() {
        // SAFETY: writable, by contract.
        unsafe { *needed = ids.len() };
    }
    if ids.len() > cap || (buf.is_null() && !ids.is_empty()) {
        return Err(AppError::new(
            Status::BufferTooSmall,
            format!("the buffer holds {cap} ids; {} are needed", ids.len()),
        ));
    }
    for (i, &id) in ids.iter().enumerate() {
        // SAFETY: `i < ids.len() ≤ cap`, within the caller's buffer.
        unsafe { *buf.add(i) = id as i32 };
    }
    Ok(())
}
