//! The engine: requests of many [`Session`]s, prefilled on the NPU (QNN HTP) or the CPU and
//! decoded on the CPU, each session's KV cache handed between the two.
//!
//! # Workers
//! - **NPU worker** (one thread, when the policy may use the NPU): prepares the QNN prefill graphs
//!   at start (restoring cached context binaries), then takes requests from its channel one at a
//!   time and runs their prompt chunk by chunk. After each chunk it writes the chunk's K/V into
//!   the session's cache ([`crate::handoff`]); the next chunk reads the cache back as its past
//!   K/V input, so a later turn of a session is prefilled on the NPU on top of the cached
//!   conversation. QNN is driven from this one thread only (concurrent `graphExecute` calls fail
//!   on the simulator).
//! - **CPU worker** (one thread, plus the model's thread pool for the kernels): runs CPU prefill
//!   chunks and decode steps. It holds every request that reached it and gives each, in turn, one
//!   step — a prefill chunk of up to [`EngineOptions::cpu_prefill_chunk`] tokens or one decode
//!   step — so several sessions decode together and a long CPU prefill does not stall them.
//! - A request placed on the NPU goes NPU worker → CPU worker; one placed on the CPU goes straight
//!   to the CPU worker. So the NPU prefills one session while the CPU decodes others.
//!
//! # Sessions and ownership
//! A [`Session`] owns one KV cache (f32, the CPU layout) and the conversation's tokens. While a
//! request runs, the request owns them and moves between workers with them, so no lock guards
//! the cache; when it ends they go back to the session. A session runs one request at a time
//! ([`Session::submit`] on a busy session is an error). A request that is cancelled or fails
//! leaves the session exactly as it was before the request.
//!
//! # Thread safety
//! [`Engine`], [`Session`] and [`CancelToken`] are `Send + Sync`: sessions may be used from any
//! threads, and many at once. [`RequestHandle`] is `Send` (one consumer). Token events are
//! delivered over a channel, so no user code runs on the workers.
//!
//! # Failure
//! If the NPU cannot be prepared, every request prefills on the CPU and says why (`fallback` in
//! its stats when the NPU was asked for). If an NPU chunk fails, the K/V of the chunks that did run
//! are discarded and the request's whole prompt is prefilled on the CPU, so its tokens are exactly
//! those of a CPU prefill of that request on the session as it was when the request started
//! (positions cached by earlier turns are kept as they are, whichever device produced them); its
//! stats name the error and the discarded positions. After [`NPU_FAILURE_LIMIT`] failures in a row
//! the engine stops using the NPU.
//!
//! # Modules
//! One file per part, in the order a request meets them:
//! - `session`: [`Session`], the conversation a request runs on, and the state it lends the
//!   request.
//! - `admission`: what is refused before anything is queued (a context that cannot be served,
//!   a request that cannot run on its session now).
//! - `submit`: turns an admitted request into a job and sends it to a worker.
//! - `placement`: where a request's prompt is prefilled (NPU or CPU), from the policy and the
//!   measured costs.
//! - `npu_worker`: the NPU worker (the only part that drives QNN).
//! - `cpu_worker`: the CPU worker (CPU prefill chunks and decode steps).
//! - `job`: the request in flight — its session state, stats and events — and how it ends.
//! - `handle`: what the caller holds meanwhile — [`RequestHandle`] (streamed [`Token`]s, then
//!   a [`RequestOutput`]), [`CancelToken`] and [`Progress`].
//!
//! The module itself holds the [`Engine`]: its options, the state its parts share, and
//! starting and stopping the workers.

mod admission;
mod cpu_worker;
mod handle;
mod job;
mod npu_worker;
mod placement;
mod session;
mod submit;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crossbeam::channel::{self, Sender};
use tandem_hal::{Error, KvCache, PrepareReport, Result};

use crate::model::{default_context, Model, NpuOptions};
use crate::policy::{CostModel, Placement, PrefillPolicy};

pub use handle::{CancelToken, Progress, RequestHandle, RequestOutput, Token};
pub use session::Session;

use admission::check_context;
use cpu_worker::cpu_worker;
use job::Job;
use npu_worker::npu_worker;
use session::SessionState;

/// Consecutive NPU failures after which the engine stops using the NPU.
pub const NPU_FAILURE_LIMIT: u32 = 3;

/// Environment variable that makes the engine print every placement decision to stderr.
pub const SCHED_DEBUG_ENV: &str = "TANDEM_SCHED_DEBUG";

/// How an [`Engine`] runs requests.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Where prefill runs (`--prefill`; default [`PrefillPolicy::host_default`]). Decode always
    /// runs on the CPU.
    pub prefill: PrefillPolicy,
    /// Context length of every session and of the NPU graphs (0 = [`default_context`]: the
    /// model's, capped at 1024 when the NPU may be used and at 4096 otherwise).
    pub ctx: usize,
    /// The NPU prefill delegate and its chunk sizes and `profiling` (device cycle counts per
    /// chunk). `npu.ctx` is ignored: `ctx` applies. The default has no delegate (the scheduler
    /// does not know which are compiled in; `tandem::delegates::default_npu` does).
    pub npu: NpuOptions,
    /// Largest number of prompt tokens in one CPU prefill step.
    pub cpu_prefill_chunk: usize,
    /// Threads that copy one NPU chunk's K/V into the cache (0 = 1). One thread converts a
    /// Qwen2-0.5B-sized AR-128 chunk (1.5 MiB fp16) in ~0.4 ms; a second thread costs more to
    /// start than it saves on the 2-core machines measured (`cargo bench -p tandem-tests --bench handoff`).
    pub handoff_threads: usize,
    /// Time every NPU graph and the CPU at start so `auto` decides from measurements at once.
    pub calibrate: bool,
    /// Fault injection for tests: fail the NPU chunk with this index of every request
    /// (also `TANDEM_FAULT_NPU_CHUNK`, documented in the README).
    pub fail_npu_chunk: Option<usize>,
    /// Fault injection for tests: panic on the NPU worker at this chunk index (no variable).
    pub panic_npu_chunk: Option<usize>,
    /// Fault injection for tests: panic on the CPU worker when a request whose prompt starts
    /// with this token id takes a step (no variable), so one request of several can be hit.
    pub panic_cpu_on_token: Option<u32>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            prefill: PrefillPolicy::host_default(),
            ctx: 0,
            npu: NpuOptions {
                profiling: true,
                ..NpuOptions::default()
            },
            cpu_prefill_chunk: 128,
            handoff_threads: 0,
            calibrate: true,
            fail_npu_chunk: std::env::var("TANDEM_FAULT_NPU_CHUNK")
                .ok()
                .and_then(|v| v.parse().ok()),
            panic_npu_chunk: None,
            panic_cpu_on_token: None,
        }
    }
}

/// The NPU as the engine sees it.
#[derive(Clone, Debug)]
pub enum NpuState {
    /// The policy is `cpu`: the NPU was not prepared.
    NotRequested,
    /// Prepared: graphs of these chunk sizes over the engine's context.
    Ready {
        chunks: Vec<usize>,
        report: PrepareReport,
    },
    /// Could not be prepared (library missing, wrong version, lowering failed, …).
    Unavailable(String),
    /// Stopped after [`NPU_FAILURE_LIMIT`] consecutive failures; the last error.
    Disabled(String),
}

/// Runs requests on the NPU and CPU workers (see the module docs).
pub struct Engine {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    model: Arc<Model>,
    opts: EngineOptions,
    ctx: usize,
    handoff_threads: usize,
    debug: bool,
    cpu_tx: Sender<CpuMsg>,
    npu_tx: Option<Sender<NpuMsg>>,
    npu: Mutex<NpuHealth>,
    costs: Mutex<CostModel>,
    /// Estimated ms of NPU work queued or running.
    npu_backlog_ms: Mutex<f64>,
    cpu_active: AtomicUsize,
    shutting_down: AtomicBool,
    next_session: AtomicU64,
    next_request: AtomicU64,
}

struct NpuHealth {
    state: NpuState,
    consecutive_failures: u32,
}

enum NpuMsg {
    Prefill(Box<Job>),
    Shutdown,
}

enum CpuMsg {
    Run(Box<Job>),
    Shutdown,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent, so a panic elsewhere cannot poison it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Startup {
    Npu(std::result::Result<(Vec<usize>, PrepareReport), String>),
    CpuReady,
}

impl Engine {
    /// Starts the workers. When the policy may use the NPU, prepares the model on the NPU
    /// delegate first (and times its chunk graphs if `calibrate`); if that fails, the engine runs
    /// on the CPU and says why.
    pub fn new(model: Arc<Model>, opts: EngineOptions) -> Result<Engine> {
        if opts.cpu_prefill_chunk == 0 {
            return Err(Error::InvalidInput(
                "cpu_prefill_chunk must be at least 1".into(),
            ));
        }
        let spec = &model.loaded.spec;
        let ctx = if opts.ctx == 0 {
            default_context(spec, opts.prefill.wants_npu())
        } else {
            opts.ctx
        };
        check_context(&model, ctx)?;
        if opts.npu.chunks.contains(&0) {
            return Err(Error::InvalidInput(
                "chunk size 0: chunks must be at least 1".into(),
            ));
        }
        let handoff_threads = opts.handoff_threads.max(1);
        let (cpu_tx, cpu_rx) = channel::unbounded();
        let (npu_tx, npu_rx) = if opts.prefill.wants_npu() {
            let (t, r) = channel::unbounded();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            model,
            ctx,
            handoff_threads,
            debug: std::env::var(SCHED_DEBUG_ENV).is_ok_and(|v| !v.is_empty() && v != "0"),
            cpu_tx,
            npu_tx,
            npu: Mutex::new(NpuHealth {
                state: NpuState::NotRequested,
                consecutive_failures: 0,
            }),
            costs: Mutex::new(CostModel::default()),
            npu_backlog_ms: Mutex::new(0.0),
            cpu_active: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            next_session: AtomicU64::new(1),
            next_request: AtomicU64::new(1),
            opts,
        });

        let (ready_tx, ready_rx) = channel::unbounded();
        let mut workers = Vec::new();
        {
            let shared = shared.clone();
            let ready = ready_tx.clone();
            workers.push(spawn("tandem-cpu", move || {
                cpu_worker(&shared, &cpu_rx, &ready)
            })?);
        }
        if let Some(rx) = npu_rx {
            let shared = shared.clone();
            let ready = ready_tx.clone();
            workers.push(spawn("tandem-npu", move || {
                npu_worker(&shared, &rx, &ready)
            })?);
        }
        drop(ready_tx);
        let engine = Engine { shared, workers };
        let expected = engine.workers.len();
        for _ in 0..expected {
            match ready_rx.recv() {
                Ok(Startup::CpuReady) => {}
                Ok(Startup::Npu(Ok((chunks, report)))) => {
                    lock(&engine.shared.npu).state = NpuState::Ready { chunks, report };
                }
                Ok(Startup::Npu(Err(why))) => {
                    if engine.shared.opts.prefill == PrefillPolicy::Npu {
                        tracing::warn!("NPU unavailable, prefill runs on the CPU: {why}");
                    } else {
                        tracing::info!("NPU unavailable, auto placement uses the CPU: {why}");
                    }
                    engine
                        .shared
                        .debug_print(format_args!("npu unavailable: {why}"));
                    lock(&engine.shared.npu).state = NpuState::Unavailable(why);
                }
                Err(_) => {
                    return Err(Error::InvalidInput(
                        "an engine worker stopped during start-up".into(),
                    ))
                }
            }
        }
        Ok(engine)
    }

    /// Loads a model (weights, tokenizer, CPU backend with `load.threads` threads) and starts an
    /// engine on it.
    pub fn load(
        source: &crate::model::ModelSource,
        load: &crate::model::LoadOptions,
        opts: EngineOptions,
    ) -> Result<Engine> {
        Engine::new(Arc::new(Model::load(source, load)?), opts)
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.shared.model
    }

    /// Context length of every session.
    pub fn ctx(&self) -> usize {
        self.shared.ctx
    }

    pub fn options(&self) -> &EngineOptions {
        &self.shared.opts
    }

    pub fn npu_state(&self) -> NpuState {
        lock(&self.shared.npu).state.clone()
    }

    /// A snapshot of the measured costs `auto` decides from.
    pub fn costs(&self) -> CostModel {
        lock(&self.shared.costs).clone()
    }

    /// A new, empty session.
    pub fn new_session(&self) -> Session {
        Session {
            id: self.shared.next_session.fetch_add(1, Ordering::Relaxed),
            engine: self.shared.clone(),
            slot: Arc::new(Mutex::new(Some(SessionState {
                cache: KvCache::new(&self.shared.model.loaded.spec, self.shared.ctx),
                tokens: Vec::new(),
            }))),
        }
    }

    /// Where a prompt of `tokens` new tokens after `cached` positions would be prefilled now.
    pub fn placement(&self, cached: usize, tokens: usize) -> Placement {
        self.shared.place(cached, tokens)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        // NPU first: it may still hand jobs to the CPU worker.
        if let Some(tx) = &self.shared.npu_tx {
            let _ = tx.send(NpuMsg::Shutdown);
        }
        let _ = self.shared.cpu_tx.send(CpuMsg::Shutdown);
        for w in self.workers.drain(..).rev() {
            let _ = w.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::Io {
            op: "spawning worker thread",
            path: name.into(),
            source: e,
        })
}

impl Shared {
    fn debug_print(&self, msg: std::fmt::Arguments<'_>) {
        if self.debug {
            eprintln!("[tandem sched] {msg}");
        }
    }
}

/// The text of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_thread_safe_as_documented() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Engine>();
        send_sync::<Session>();
        send_sync::<CancelToken>();
        send_sync::<Progress>();
        send::<RequestHandle>();
    }
}
