//! What the caller of [`Session::submit`](super::Session::submit) holds: the [`RequestHandle`]
//! that streams [`Token`]s and returns the [`RequestOutput`], and the [`CancelToken`] and
//! [`Progress`] it hands out.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// Cancels a request from any thread.
#[derive(Clone, Debug)]
pub struct CancelToken(pub(super) Arc<AtomicBool>);

impl CancelToken {
    /// Asks the request to stop. It stops before its next prefill chunk or decode step and
    /// finishes with [`Error::Cancelled`], leaving its session as it was before the request.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
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
