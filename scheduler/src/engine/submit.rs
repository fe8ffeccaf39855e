//! Turns an admitted request into a [`Job`] and sends it to the worker its placement names.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel;
use tandem_hal::{Error, Result};
use tracing::info_span;

use super::handle::ProgressCounters;
use super::job::Job;
use super::{lock, CancelToken, CpuMsg, NpuMsg, Progress, RequestHandle, Session, Shared};
use crate::generate::{DecodeState, GenerateRequest};
use crate::policy::Device;
use crate::stats::RequestStats;

impl Shared {
    /// Submits `req` on `session` (see [`Session::submit`]): admits it, then queues it for the
    /// NPU or the CPU worker.
    pub(super) fn submit(
        self: &Arc<Self>,
        session: &Session,
        req: GenerateRequest,
    ) -> Result<RequestHandle> {
        let mut state = self.admit(session, &req)?;
        let spec = &self.model.loaded.spec;
        let rollback_tokens = state.tokens.len();
        let rollback_cache = state.cache.len();
        state.tokens.extend_from_slice(&req.prompt);
        let decode = match DecodeState::new(spec, &self.model.tokenizer, &req, state.tokens.clone())
        {
            Ok(mut d) => {
                d.set_model_label(format!("model {}", self.model.loaded.path.display()));
                d
            }
            Err(e) => {
                state.tokens.truncate(rollback_tokens);
                *lock(&session.slot) = Some(state);
                return Err(e);
            }
        };
        let cached = state.cache.len();
        let prefill_tokens = state.tokens.len() - cached;
        let placement = self.place(cached, prefill_tokens);
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.debug_print(format_args!(
            "session {} request {id}: {prefill_tokens} tokens after {cached} cached → {} ({})",
            session.id, placement.device, placement.reason
        ));
        let span = info_span!(
            target: "tandem::engine",
            "request",
            lane = "scheduler",
            session = session.id,
            request = id,
            prompt_tokens = prefill_tokens,
            prefill_device = placement.device.name(),
        );
        let queue_span = Some(info_span!(
            target: "tandem::engine",
            parent: &span,
            "queue_wait",
            lane = placement.device.name(),
            session = session.id,
        ));
        let npu_estimate_ms = if placement.device == Device::Npu {
            lock(&self.costs)
                .npu_ms(&placement.chunk_plan)
                .unwrap_or(0.0)
        } else {
            0.0
        };
        let (events_tx, events_rx) = channel::unbounded();
        let cancel = CancelToken::new();
        let progress = Progress(Arc::new(ProgressCounters {
            prefill_total: prefill_tokens,
            ..ProgressCounters::default()
        }));
        let job = Box::new(Job {
            id,
            session: session.id,
            slot: session.slot.clone(),
            state: Some(state),
            rollback_tokens,
            rollback_cache,
            decode,
            logits: Vec::new(),
            npu_estimate_ms,
            cancel: cancel.clone(),
            progress: progress.clone(),
            events: events_tx,
            stats: RequestStats {
                session: session.id,
                request: id,
                policy: self.opts.prefill,
                prefill_device: placement.device.name().into(),
                decode_device: Device::Cpu,
                placement_reason: placement.reason.clone(),
                prompt_tokens: req.prompt.len(),
                prefill_tokens,
                cached_tokens: cached,
                generated_tokens: 0,
                chunks: Vec::new(),
                handoff_bytes: 0,
                handoff_ms: 0.0,
                queue_ms: 0.0,
                prefill_ms: 0.0,
                prefill_tok_s: 0.0,
                ttft_ms: 0.0,
                decode_ms: 0.0,
                decode_tok_s: 0.0,
                fallback: placement.fallback.clone(),
                htp_cycles: None,
                htp_prefill_ms_est: None,
                htp_cycles_source: None,
                qnn_cost_model_ms: None,
                qnn_cost_model_source: None,
            },
            placement,
            t_submit: Instant::now(),
            t_prefill: None,
            t_first_token: None,
            span,
            queue_span,
        });
        // A job that cannot be sent is dropped with the send error; its Drop gives the session
        // its state back.
        let sent = match (&job.placement.device, &self.npu_tx) {
            (Device::Npu, Some(tx)) => {
                *lock(&self.npu_backlog_ms) += job.npu_estimate_ms;
                tx.send(NpuMsg::Prefill(job)).is_ok()
            }
            _ => self.cpu_tx.send(CpuMsg::Run(job)).is_ok(),
        };
        if !sent {
            return Err(Error::InvalidInput("the engine has shut down".into()));
        }
        Ok(RequestHandle {
            events: events_rx,
            cancel,
            progress,
            result: None,
        })
    }
}
