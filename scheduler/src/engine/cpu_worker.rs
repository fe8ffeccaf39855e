//! The CPU worker: runs CPU prefill chunks and decode steps, giving every request it holds one
//! step in turn, and finishes each request.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::{Receiver, Sender};
use tandem_cpu::Logits;
use tandem_hal::KvCache;
use tandem_hal::{Error, Result};
use tracing::info_span;

use super::job::{complete, Job};
use super::session::SessionState;
use super::{lock, panic_message, CpuMsg, Shared, Startup, Token};
use crate::generate::ms;
use crate::policy::{Device, PrefillPolicy};
use crate::stats::ChunkStats;

pub(super) fn cpu_worker(shared: &Arc<Shared>, rx: &Receiver<CpuMsg>, ready: &Sender<Startup>) {
    if shared.opts.calibrate && shared.opts.prefill == PrefillPolicy::Auto {
        calibrate_cpu(shared);
    }
    let _ = ready.send(Startup::CpuReady);
    let mut active: Vec<Box<Job>> = Vec::new();
    let mut shutdown = false;
    loop {
        // Take new work: block when idle, otherwise just look.
        let first = if active.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            }
        } else {
            None
        };
        for msg in first.into_iter().chain(rx.try_iter()) {
            match msg {
                CpuMsg::Run(job) => active.push(job),
                CpuMsg::Shutdown => shutdown = true,
            }
        }
        if shutdown {
            for job in active.drain(..) {
                job.finish(Err(Error::Cancelled));
            }
            // Anything still queued is dropped, which returns its session state.
            break;
        }
        shared.cpu_active.store(active.len(), Ordering::Relaxed);
        // One step of every request, in turn.
        let mut i = 0;
        while i < active.len() {
            // A panic in one request's step fails that request alone (its session is rolled
            // back by `finish`); the worker goes on serving the others.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                cpu_step(shared, &mut active[i])
            }))
            .unwrap_or_else(|p| {
                Err(Error::InvalidInput(format!(
                    "internal error: the CPU worker panicked in this request: {}",
                    panic_message(p.as_ref())
                )))
            });
            match step {
                Ok(true) => i += 1,
                Ok(false) => {
                    let job = active.swap_remove(i);
                    let out = complete(job.as_ref());
                    job.finish(Ok(out));
                }
                Err(e) => {
                    let job = active.swap_remove(i);
                    job.finish(Err(e));
                }
            }
        }
        shared.cpu_active.store(active.len(), Ordering::Relaxed);
    }
}

fn calibrate_cpu(shared: &Shared) {
    let spec = &shared.model.loaded.spec;
    let n = shared.opts.cpu_prefill_chunk.min(64).min(shared.ctx);
    for &len in &[1usize, n] {
        let tokens = vec![0u32; len];
        let mut best = f64::INFINITY;
        for _ in 0..2 {
            let mut cache = KvCache::new(spec, len);
            let t = Instant::now();
            if shared
                .model
                .cpu
                .forward(&tokens, &mut cache, Logits::Last)
                .is_err()
            {
                return;
            }
            best = best.min(ms(t));
        }
        shared.debug_print(format_args!("calibration: cpu {len} tokens {best:.2} ms"));
        lock(&shared.costs).record_cpu_prefill(len, best);
    }
}

/// One step of `job`; `Ok(false)` when it has finished.
fn cpu_step(shared: &Shared, job: &mut Job) -> Result<bool> {
    if job.cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    if let Some(t) = shared.opts.panic_cpu_on_token {
        let first = job.rollback_tokens;
        if job.state().tokens.get(first) == Some(&t) {
            panic!("injected panic on the CPU worker (panic_cpu_on_token {t})");
        }
    }
    let model = &shared.model;
    // Prefill is done once the cache holds every token: then `logits` are the last position's
    // (each decode step runs its token through the model before the next step).
    if job.pending() > 0 {
        job.start_prefill_clock();
        let session = job.session;
        let k = job.stats.chunks.len();
        let state = job.state();
        let start = state.cache.len();
        let take = shared
            .opts
            .cpu_prefill_chunk
            .min(state.tokens.len() - start);
        let span = info_span!(
            target: "tandem::engine",
            parent: &job.span,
            "prefill_chunk",
            lane = "cpu",
            session,
            chunk = k,
            tokens = take,
            padded_to = take,
        );
        let t0 = Instant::now();
        let logits = {
            let _g = span.enter();
            let state = job.state();
            let SessionState { cache, tokens } = state;
            model
                .cpu
                .forward(&tokens[start..start + take], cache, Logits::Last)?
        };
        let chunk_ms = ms(t0);
        drop(span);
        job.note_prefilled(take);
        lock(&shared.costs).record_cpu_prefill(take, chunk_ms);
        job.stats.chunks.push(ChunkStats {
            device: Device::Cpu,
            start,
            tokens: take,
            padded_to: take,
            ms: chunk_ms,
            execute_ms: None,
            handoff_bytes: 0,
            handoff_ms: 0.0,
            htp_cycles: None,
            htp_ms_est: None,
            qnn_cost_model_ms: None,
        });
        if job.pending() == 0 {
            job.logits = logits;
        }
        return Ok(true);
    }
    if job.t_first_token.is_none() {
        let now = Instant::now();
        let t_prefill = job.t_prefill.unwrap_or(job.t_submit);
        job.stats.prefill_ms = (now - t_prefill).as_secs_f64() * 1e3;
        job.stats.ttft_ms = (now - job.t_submit).as_secs_f64() * 1e3;
        job.t_first_token = Some(now);
    }
    if job.cancel.is_stop_requested() && !job.decode.is_done() {
        job.decode.stop();
        // The last generated token was already run through the model for a step that will not
        // come; drop its K/V so the session ends like any finished turn, with that token left for
        // the next request to run.
        let generated = !job.decode.generated().is_empty();
        let state = job.state();
        if generated && state.cache.len() == state.tokens.len() {
            let n = state.tokens.len() - 1;
            state.cache.truncate(n);
        }
    }
    if job.decode.is_done() {
        return Ok(false);
    }
    let span = info_span!(
        target: "tandem::engine",
        parent: &job.span,
        "decode_step",
        lane = "cpu",
        session = job.session,
        step = job.decode.generated().len(),
    );
    let _g = span.enter();
    let t0 = Instant::now();
    let step = job.decode.step(&mut job.logits)?;
    if let Some(id) = step.token {
        job.state().tokens.push(id);
        job.progress.0.generated.fetch_add(1, Ordering::AcqRel);
    }
    if step.token.is_some() || !step.text.is_empty() {
        job.emit(Token {
            id: step.token,
            text: step.text,
        });
    }
    if step.done {
        let tail = job.decode.finish()?;
        if !tail.is_empty() {
            job.emit(Token {
                id: None,
                text: tail,
            });
        }
        return Ok(false);
    }
    let token = step.token.expect("a step that is not done has a token");
    let state = job.state();
    job.logits = model
        .cpu
        .forward(&[token], &mut state.cache, Logits::Last)?;
    lock(&shared.costs).record_decode_step(ms(t0));
    Ok(true)
}
