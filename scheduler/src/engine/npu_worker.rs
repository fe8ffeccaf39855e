//! The NPU worker: prepares the model on the NPU prefill delegate (any
//! [`tandem_hal::PrefillDelegate`]; prepared on this thread, which keeps it), then runs each
//! request placed on the NPU chunk by chunk, handing its K/V to the session's cache, and passes
//! it on to the CPU worker (or back to the CPU for a full recompute when a chunk fails).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::{Receiver, Sender};
use tandem_hal::{Error, KvCache, PrefillDelegate};
use tracing::field::Empty;
use tracing::info_span;

use super::job::Job;
use super::{lock, panic_message, CpuMsg, NpuMsg, NpuState, Shared, Startup, NPU_FAILURE_LIMIT};
use crate::generate::ms;
use crate::handoff::handoff;
use crate::policy::{Device, PrefillPolicy};
use crate::stats::ChunkStats;

pub(super) fn npu_worker(shared: &Arc<Shared>, rx: &Receiver<NpuMsg>, ready: &Sender<Startup>) {
    let mut opts = shared.opts.npu.clone();
    opts.ctx = shared.ctx;
    let mut prefill = match shared.model.npu_prefill(&opts) {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Startup::Npu(Err(e.to_string())));
            // Placement never sends work to an unavailable NPU, so the worker can stop.
            return;
        }
    };
    if shared.opts.calibrate && shared.opts.prefill == PrefillPolicy::Auto {
        calibrate_npu(shared, prefill.as_mut());
    }
    let _ = ready.send(Startup::Npu(Ok((
        prefill.chunk_sizes(),
        prefill.report().clone(),
    ))));
    for msg in rx {
        match msg {
            NpuMsg::Prefill(job) => npu_prefill(shared, prefill.as_mut(), job),
            NpuMsg::Shutdown => break,
        }
    }
}

/// Times every chunk graph (run and handoff, from an empty cache) after a warm-up run.
fn calibrate_npu(shared: &Shared, prefill: &mut dyn PrefillDelegate) {
    let mut cache = KvCache::new(&shared.model.loaded.spec, shared.ctx);
    let profiling = shared.opts.npu.profiling;
    prefill.set_profiling(false);
    for chunk in prefill.chunk_sizes() {
        let tokens = vec![0u32; chunk];
        let mut timed = Ok(0.0);
        for _ in 0..2 {
            cache.truncate(0);
            let t = Instant::now();
            timed = prefill
                .prefill_chunk(&tokens, &cache, Some(chunk))
                .and_then(|out| handoff(&out, &mut cache, shared.handoff_threads))
                .map(|_| ms(t));
            if timed.is_err() {
                break;
            }
        }
        match timed {
            Ok(ms) => {
                shared.debug_print(format_args!("calibration: npu AR-{chunk} {ms:.2} ms"));
                lock(&shared.costs).record_npu_chunk(chunk, ms);
            }
            Err(e) => tracing::info!("NPU calibration of AR-{chunk} failed: {e}"),
        }
    }
    prefill.set_profiling(profiling);
}

fn npu_prefill(shared: &Shared, prefill: &mut dyn PrefillDelegate, mut job: Box<Job>) {
    let estimate = job.npu_estimate_ms;
    // A panic while driving the delegate fails this request's NPU part only: the request is
    // recomputed on the CPU like any NPU failure, and the NPU is disabled for the engine's
    // lifetime (the delegate's state after a panic is unknown), so later requests prefill on the
    // CPU.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        npu_chunks(shared, prefill, &mut job)
    }))
    .unwrap_or_else(|p| {
        let why = format!("NPU worker panicked: {}", panic_message(p.as_ref()));
        tracing::error!("{why}; the NPU is disabled, prefill moves to the CPU");
        lock(&shared.npu).state = NpuState::Disabled(why.clone());
        NpuOutcome::Failed(why)
    });
    {
        let mut backlog = lock(&shared.npu_backlog_ms);
        *backlog = (*backlog - estimate).max(0.0);
    }
    match result {
        NpuOutcome::Done => {
            shared.record_npu_result(Ok(()));
            shared.to_cpu(job);
        }
        NpuOutcome::Cancelled => job.finish(Err(Error::Cancelled)),
        NpuOutcome::Failed(why) => {
            shared.record_npu_result(Err(&why));
            tracing::warn!(
                "session {} request {}: {why}; finishing on the CPU",
                job.session,
                job.id
            );
            // Recompute this request's whole prompt on the CPU rather than continue on the
            // NPU's fp16 K/V: the request then gives exactly the tokens of a CPU prefill on the
            // session as it was when the request started.
            let from = job.rollback_cache;
            let done = job.state().cache.len() - from;
            job.state().cache.truncate(from);
            job.progress.0.prefilled.store(0, Ordering::Release);
            shared.debug_print(format_args!(
                "session {} request {}: {why}; recomputing the prompt on the CPU from position \
                 {from} ({done} NPU-prefilled positions discarded)",
                job.session, job.id
            ));
            job.stats.fallback = Some(format!(
                "{why}; prompt recomputed on the CPU from position {from} ({done} NPU positions \
                 discarded)"
            ));
            shared.to_cpu(job);
        }
    }
}

enum NpuOutcome {
    Done,
    Cancelled,
    Failed(String),
}

fn npu_chunks(shared: &Shared, prefill: &mut dyn PrefillDelegate, job: &mut Job) -> NpuOutcome {
    job.start_prefill_clock();
    let plan = job.placement.chunk_plan.clone();
    for (k, &chunk) in plan.iter().enumerate() {
        if job.cancel.is_cancelled() || shared.shutting_down.load(Ordering::Acquire) {
            return NpuOutcome::Cancelled;
        }
        let session = job.session;
        let state = job.state();
        let start = state.cache.len();
        let take = chunk.min(state.tokens.len() - start);
        let span = info_span!(
            target: "tandem::engine",
            parent: &job.span,
            "prefill_chunk",
            lane = "npu",
            session,
            chunk = k,
            tokens = take,
            padded_to = chunk,
            htp_cycles = Empty,
        );
        let t0 = Instant::now();
        let out = {
            let _g = span.enter();
            if shared.opts.panic_npu_chunk == Some(k) {
                panic!("injected panic on NPU chunk {k} (panic_npu_chunk)");
            }
            if shared.opts.fail_npu_chunk == Some(k) {
                Err(Error::InvalidInput(format!(
                    "injected fault on NPU chunk {k} (fail_npu_chunk)"
                )))
            } else {
                let state = job.state();
                prefill.prefill_chunk(
                    &state.tokens[start..start + take],
                    &state.cache,
                    Some(chunk),
                )
            }
        };
        let out = match out {
            Ok(o) => o,
            Err(e) => return NpuOutcome::Failed(format!("NPU chunk {k} failed: {e}")),
        };
        let chunk_ms = ms(t0);
        let cycles = out.profile.as_ref().map(|p| p.cycles).filter(|&c| c > 0);
        if let Some(c) = cycles {
            span.record("htp_cycles", c);
        }
        drop(span);
        let hspan = info_span!(
            target: "tandem::engine",
            parent: &job.span,
            "handoff",
            lane = "cpu",
            session,
            bytes = out.kv_bytes() as u64,
            layers = out.n_layers(),
        );
        let h = {
            let _g = hspan.enter();
            handoff(&out, &mut job.state().cache, shared.handoff_threads)
        };
        drop(hspan);
        let h = match h {
            Ok(h) => h,
            Err(e) => return NpuOutcome::Failed(format!("handoff of NPU chunk {k} failed: {e}")),
        };
        job.note_prefilled(take);
        lock(&shared.costs).record_npu_chunk(chunk, chunk_ms + h.ms);
        let device_us = out.profile.as_ref().and_then(|p| p.device_exec_us());
        let estimate = prefill
            .report()
            .cost_estimates
            .iter()
            .find(|e| e.chunk == chunk)
            .map(|e| e.exec_us as f64 / 1e3);
        job.stats.chunks.push(ChunkStats {
            device: Device::Npu,
            start,
            tokens: take,
            padded_to: chunk,
            ms: chunk_ms,
            execute_ms: Some(out.timings.execute.as_secs_f64() * 1e3),
            handoff_bytes: h.bytes,
            handoff_ms: h.ms,
            htp_cycles: cycles,
            htp_ms_est: device_us.map(|us| us as f64 / 1e3),
            qnn_cost_model_ms: estimate,
        });
        if job.pending() == 0 {
            let vocab = shared.model.loaded.spec.vocab_size;
            job.logits = out.logits[(take - 1) * vocab..take * vocab].to_vec();
        }
    }
    NpuOutcome::Done
}

impl Shared {
    pub(super) fn record_npu_result(&self, result: std::result::Result<(), &str>) {
        let mut npu = lock(&self.npu);
        match result {
            Ok(()) => npu.consecutive_failures = 0,
            Err(why) => {
                npu.consecutive_failures += 1;
                if npu.consecutive_failures >= NPU_FAILURE_LIMIT {
                    tracing::warn!(
                        "NPU failed {NPU_FAILURE_LIMIT} times in a row; prefill stays on the CPU: {why}"
                    );
                    npu.state = NpuState::Disabled(format!(
                        "{NPU_FAILURE_LIMIT} consecutive failures, the last: {why}"
                    ));
                }
            }
        }
    }

    pub(super) fn to_cpu(&self, mut job: Box<Job>) {
        job.queue_span = Some(info_span!(
            target: "tandem::engine",
            parent: &job.span,
            "queue_wait",
            lane = "cpu",
            session = job.session,
        ));
        if let Err(e) = self.cpu_tx.send(CpuMsg::Run(job)) {
            if let CpuMsg::Run(job) = e.0 {
                job.finish(Err(Error::InvalidInput("the engine has shut down".into())));
            }
        }
    }
}
