//! [`Job`]: one request in flight, which carries its session's state from worker to worker, and
//! how it ends ([`Job::finish`], with the output [`complete`] builds).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam::channel::Sender;
use tandem_hal::Result;
use tracing::Span;

use super::handle::Event;
use super::session::SessionState;
use super::{lock, CancelToken, Progress, RequestOutput, Token};
use crate::generate::{ms, per_second, DecodeState};
use crate::policy::Placement;
use crate::stats::RequestStats;

/// One request in flight, with its session's state.
pub(super) struct Job {
    pub(super) id: u64,
    pub(super) session: u64,
    pub(super) slot: Arc<Mutex<Option<SessionState>>>,
    pub(super) state: Option<SessionState>,
    /// Session length before this request, restored on cancel or error.
    pub(super) rollback_tokens: usize,
    pub(super) rollback_cache: usize,
    pub(super) decode: DecodeState,
    pub(super) logits: Vec<f32>,
    pub(super) placement: Placement,
    pub(super) npu_estimate_ms: f64,
    pub(super) cancel: CancelToken,
    pub(super) progress: Progress,
    pub(super) events: Sender<Event>,
    pub(super) stats: RequestStats,
    pub(super) t_submit: Instant,
    pub(super) t_prefill: Option<Instant>,
    pub(super) t_first_token: Option<Instant>,
    pub(super) span: Span,
    pub(super) queue_span: Option<Span>,
}

impl Job {
    pub(super) fn state(&mut self) -> &mut SessionState {
        self.state
            .as_mut()
            .expect("a job holds its session state until it ends")
    }

    pub(super) fn pending(&self) -> usize {
        let s = self.state.as_ref().expect("session state present");
        s.tokens.len() - s.cache.len()
    }

    pub(super) fn start_prefill_clock(&mut self) {
        if self.t_prefill.is_none() {
            let now = Instant::now();
            self.stats.queue_ms = (now - self.t_submit).as_secs_f64() * 1e3;
            self.t_prefill = Some(now);
        }
        self.queue_span = None;
    }

    pub(super) fn note_prefilled(&self, n: usize) {
        self.progress.0.prefilled.fetch_add(n, Ordering::AcqRel);
    }

    pub(super) fn emit(&mut self, token: Token) {
        if self.events.send(Event::Token(token)).is_err() {
            // Nobody is listening any more.
            self.cancel.cancel();
        }
    }

    /// Ends the request: gives the session its state back (rolled back on error) and reports.
    pub(super) fn finish(mut self: Box<Self>, result: Result<RequestOutput>) {
        let mut state = self.state.take().expect("session state present");
        if result.is_err() {
            state.tokens.truncate(self.rollback_tokens);
            state.cache.truncate(self.rollback_cache);
        }
        *lock(&self.slot) = Some(state);
        let _ = self.events.send(Event::Done(Box::new(result)));
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // A job dropped without `finish` (a worker stopped): the session stays usable.
        if let Some(mut state) = self.state.take() {
            state.tokens.truncate(self.rollback_tokens);
            state.cache.truncate(self.rollback_cache);
            *lock(&self.slot) = Some(state);
        }
    }
}

pub(super) fn complete(job: &Job) -> RequestOutput {
    let mut stats = job.stats.clone();
    let generated = job.decode.generated().to_vec();
    stats.generated_tokens = generated.len();
    if let Some(t) = job.t_first_token {
        stats.decode_ms = ms(t);
    }
    stats.prefill_tok_s = per_second(stats.prefill_tokens, stats.prefill_ms);
    stats.decode_tok_s = per_second(generated.len().saturating_sub(1), stats.decode_ms);
    stats.summarize_chunks();
    job.span
        .record("prefill_device", stats.prefill_device.as_str());
    RequestOutput {
        generated,
        text: job.decode.text().to_string(),
        stop_reason: job.decode.stop_reason(),
        stats,
    }
}
