//! What the caller of [`Session::submit`](super::Session::submit) holds: the [`RequestHandle`]
//! that streams [`Token`]s and returns the [`RequestOutput`], and the [`CancelToken`] and
//! [`Progress`] it hands out.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam::channel::Receiver;
use tandem_hal::{Error, Result};

use crate::generate::StopReason;
use crate::stats::RequestStats;

/// A piece of streamed output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The generated token, or `None` for text released at the end of generation.
    pub id: Option<u32>,
    /// Text this token completes (may be empty while a character or stop string is pending).
    pub text: String,
}

/// What a finished request produced.
#[derive(Clone, Debug)]
pub struct RequestOutput {
    pub generated: Vec<u32>,
    pub text: String,
    pub stop_reason: StopReason,
    pub stats: RequestStats,
}

pub(super) enum Event {
    Token(Token),
    Done(Box<Result<RequestOutput>>),
}

/// Cancels or stops a request from any thread. (`Default` is a token of no request yet.)
#[derive(Clone, Debug, Default)]
pub struct CancelToken(pub(super) Arc<AtomicU8>);

const RUNNING: u8 = 0;
const STOP: u8 = 1;
const CANCEL: u8 = 2;

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken(Arc::new(AtomicU8::new(RUNNING)))
    }

    /// Asks the request to stop. It stops before its next prefill chunk or decode step and
    /// finishes with [`Error::Cancelled`], leaving its session as it was before the request.
    pub fn cancel(&self) {
        self.0.fetch_max(CANCEL, Ordering::AcqRel);
    }

    /// Asks the request to end early but keep what it did: it finishes its prefill, then ends
    /// before its next decode step with [`StopReason::Stopped`](crate::StopReason::Stopped);
    /// the tokens generated so far stay in its session, as after any other stop. (A later
    /// [`Self::cancel`] still cancels.)
    pub fn stop(&self) {
        self.0.fetch_max(STOP, Ordering::AcqRel);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire) == CANCEL
    }

    /// Whether [`Self::stop`] (and not [`Self::cancel`]) was asked for.
    pub fn is_stop_requested(&self) -> bool {
        self.0.load(Ordering::Acquire) == STOP
    }
}

/// How far a request has got; readable from any thread while it runs.
#[derive(Clone, Debug)]
pub struct Progress(pub(super) Arc<ProgressCounters>);

#[derive(Debug, Default)]
pub(super) struct ProgressCounters {
    pub(super) prefill_total: usize,
    pub(super) prefilled: AtomicUsize,
    pub(super) generated: AtomicUsize,
}

impl Progress {
    /// Tokens this request prefills (its prompt, plus the session's pending last token).
    pub fn prefill_total(&self) -> usize {
        self.0.prefill_total
    }

    /// Of those, how many are in the KV cache now.
    pub fn prefilled(&self) -> usize {
        self.0.prefilled.load(Ordering::Acquire)
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.0.generated.load(Ordering::Acquire)
    }
}

/// A submitted request: iterate it for streamed [`Token`]s, then [`RequestHandle::wait`] for the
/// output. Dropping an unfinished handle cancels the request.
pub struct RequestHandle {
    pub(super) events: Receiver<Event>,
    pub(super) cancel: CancelToken,
    pub(super) progress: Progress,
    pub(super) result: Option<Result<RequestOutput>>,
}

impl RequestHandle {
    /// Prefill and generation progress (a handle that outlives this one).
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Ends the request before its next decode step, keeping what it generated (see
    /// [`CancelToken::stop`]).
    pub fn stop(&self) {
        self.cancel.stop();
    }

    /// A token that cancels this request from another thread.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Blocks until the request finishes, dropping any tokens not yet read.
    pub fn wait(mut self) -> Result<RequestOutput> {
        while self.next().is_some() {}
        self.result
            .take()
            .unwrap_or_else(|| Err(Error::InvalidInput("request result already taken".into())))
    }
}

impl std::fmt::Debug for RequestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHandle")
            .field("progress", &self.progress)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("finished", &self.result.is_some())
            .finish()
    }
}

impl Iterator for RequestHandle {
    type Item = Token;

    /// The next streamed token; `None` once the request has finished (see [`Self::wait`]).
    fn next(&mut self) -> Option<Token> {
        if self.result.is_some() {
            return None;
        }
        match self.events.recv() {
            Ok(Event::Token(t)) => Some(t),
            Ok(Event::Done(r)) => {
                self.result = Some(*r);
                None
            }
            Err(_) => {
                self.result = Some(Err(Error::InvalidInput(
                    "the engine stopped before the request finished".into(),
                )));
                None
            }
        }
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        if self.result.is_none() {
            self.cancel.cancel();
        }
    }
}
