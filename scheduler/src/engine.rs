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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam::channel::{self, Receiver, Sender};
use tandem_cpu::Logits;
use tandem_hal::{Error, KvCache, PrefillDelegate, PrepareReport, Result};
use tracing::field::Empty;
use tracing::{info_span, Span};

use crate::generate::{ms, per_second, DecodeState, GenerateRequest, StopReason};
use crate::handoff::handoff;
use crate::model::{default_context, Model, NpuOptions};
use crate::policy::{decide_auto, AutoInputs, CostModel, Device, Placement, PrefillPolicy};
use crate::stats::{ChunkStats, RequestStats};

/// Refuses a context the model was not trained for, or whose KV cache would not fit in this
/// machine's memory, before anything is allocated (the error says how much it would take).
fn check_context(model: &Model, ctx: usize) -> Result<()> {
    let spec = &model.loaded.spec;
    if ctx == 0 {
        return Err(Error::InvalidInput(
            "context length must be at least 1".into(),
        ));
    }
    if ctx > spec.max_position_embeddings {
        return Err(Error::InvalidInput(format!(
            "context {ctx} exceeds the {} positions {} was trained for",
            spec.max_position_embeddings,
            model.loaded.path.display()
        )));
    }
    // f32 K and V per layer, per KV head, per position (one session).
    let bytes = [2, spec.n_layers, spec.n_kv_heads, spec.head_dim, ctx, 4]
        .iter()
        .try_fold(1usize, |acc, &x| acc.checked_mul(x));
    let total = physical_memory_bytes();
    match (bytes, total) {
        (None, _) => Err(Error::InvalidInput(format!(
            "context {ctx}: its KV cache size overflows"
        ))),
        (Some(b), Some(t)) if b > t => Err(Error::InvalidInput(format!(
            "context {ctx} needs a {:.1} GiB KV cache per session, more than this machine's \
             {:.1} GiB of memory",
            b as f64 / (1u64 << 30) as f64,
            t as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

/// `MemTotal` of /proc/meminfo, where there is one.
fn physical_memory_bytes() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

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
    /// start than it saves on the 2-core machines measured (`cargo bench --bench handoff`).
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

enum Event {
    Token(Token),
    Done(Box<Result<RequestOutput>>),
}

/// Cancels a request from any thread.
#[derive(Clone, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

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
pub struct Progress(Arc<ProgressCounters>);

#[derive(Debug, Default)]
struct ProgressCounters {
    prefill_total: usize,
    prefilled: AtomicUsize,
    generated: AtomicUsize,
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
    events: Receiver<Event>,
    cancel: CancelToken,
    progress: Progress,
    result: Option<Result<RequestOutput>>,
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

/// A conversation: its tokens and KV cache, kept across requests.
#[derive(Clone)]
pub struct Session {
    id: u64,
    engine: Arc<Shared>,
    slot: Arc<Mutex<Option<SessionState>>>,
}

#[derive(Debug)]
struct SessionState {
    cache: KvCache,
    /// Every token of the conversation; `cache` holds K/V of the first `cache.len()` of them
    /// (the last generated token of a turn is run through the model by the next request).
    tokens: Vec<u32>,
}

impl Session {
    pub fn id(&self) -> u64 {
        self.id
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut SessionState) -> T) -> Result<T> {
        let mut slot = lock(&self.slot);
        let state = slot.as_mut().ok_or_else(|| self.busy())?;
        Ok(f(state))
    }

    fn busy(&self) -> Error {
        Error::InvalidInput(format!(
            "session {} is running a request; wait for it or cancel it first",
            self.id
        ))
    }

    /// The conversation's tokens so far.
    pub fn tokens(&self) -> Result<Vec<u32>> {
        self.with_state(|s| s.tokens.clone())
    }

    /// Positions held in the KV cache.
    pub fn cached_len(&self) -> Result<usize> {
        self.with_state(|s| s.cache.len())
    }

    /// Keeps only the first `n` tokens (and their cached K/V): to edit or regenerate a turn.
    pub fn rewind(&self, n: usize) -> Result<()> {
        self.with_state(|s| {
            s.tokens.truncate(n);
            s.cache.truncate(n);
        })
    }

    /// Forgets the whole conversation.
    pub fn reset(&self) -> Result<()> {
        self.rewind(0)
    }

    /// Submits `req`: its prompt is appended to the conversation, then up to
    /// `req.max_new_tokens` tokens are generated. Returns at once; fails if the session is busy,
    /// the prompt is empty with nothing pending, a token is outside the vocabulary, or the
    /// conversation would not fit the context ([`Error::ContextOverflow`]).
    pub fn submit(&self, req: GenerateRequest) -> Result<RequestHandle> {
        self.engine.submit(self, req)
    }

    /// Runs `req` to completion, calling `on_token` with each streamed token on this thread.
    pub fn generate(
        &self,
        req: GenerateRequest,
        mut on_token: impl FnMut(&Token),
    ) -> Result<RequestOutput> {
        let mut handle = self.submit(req)?;
        for t in handle.by_ref() {
            on_token(&t);
        }
        handle.wait()
    }
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

/// One request in flight, with its session's state.
struct Job {
    id: u64,
    session: u64,
    slot: Arc<Mutex<Option<SessionState>>>,
    state: Option<SessionState>,
    /// Session length before this request, restored on cancel or error.
    rollback_tokens: usize,
    rollback_cache: usize,
    decode: DecodeState,
    logits: Vec<f32>,
    placement: Placement,
    npu_estimate_ms: f64,
    cancel: CancelToken,
    progress: Progress,
    events: Sender<Event>,
    stats: RequestStats,
    t_submit: Instant,
    t_prefill: Option<Instant>,
    t_first_token: Option<Instant>,
    span: Span,
    queue_span: Option<Span>,
}

impl Job {
    fn state(&mut self) -> &mut SessionState {
        self.state
            .as_mut()
            .expect("a job holds its session state until it ends")
    }

    fn pending(&self) -> usize {
        let s = self.state.as_ref().expect("session state present");
        s.tokens.len() - s.cache.len()
    }

    fn start_prefill_clock(&mut self) {
        if self.t_prefill.is_none() {
            let now = Instant::now();
            self.stats.queue_ms = (now - self.t_submit).as_secs_f64() * 1e3;
            self.t_prefill = Some(now);
        }
        self.queue_span = None;
    }

    fn note_prefilled(&self, n: usize) {
        self.progress.0.prefilled.fetch_add(n, Ordering::AcqRel);
    }

    fn emit(&mut self, token: Token) {
        if self.events.send(Event::Token(token)).is_err() {
            // Nobody is listening any more.
            self.cancel.cancel();
        }
    }

    /// Ends the request: gives the session its state back (rolled back on error) and reports.
    fn finish(mut self: Box<Self>, result: Result<RequestOutput>) {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent, so a panic elsewhere cannot poison it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Startup {
    Npu(std::result::Result<(Vec<usize>, PrepareReport), String>),
    CpuReady,
}

impl Engine {
    /// Starts the workers. When the policy may use the NPU, prepares the QNN graphs first (and
    /// times them if `calibrate`); if that fails, the engine runs on the CPU and says why.
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

    fn place(&self, cached: usize, tokens: usize) -> Placement {
        let policy = self.opts.prefill;
        let cpu = |reason: String, fallback: Option<String>| Placement {
            device: Device::Cpu,
            chunk_plan: Vec::new(),
            reason,
            fallback,
        };
        if policy == PrefillPolicy::Cpu {
            return cpu("policy cpu".into(), None);
        }
        let usable = match &lock(&self.npu).state {
            NpuState::Ready { chunks, .. } => Ok(chunks.clone()),
            NpuState::Unavailable(why) => Err(format!("npu unavailable: {why}")),
            NpuState::Disabled(why) => Err(format!("npu disabled: {why}")),
            NpuState::NotRequested => Err("npu not prepared".into()),
        };
        let chunks = match usable {
            Ok(chunks) => chunks,
            Err(why) => {
                let fallback = (policy == PrefillPolicy::Npu).then(|| why.clone());
                return cpu(format!("policy {policy}: {why}"), fallback);
            }
        };
        let plan =
            tandem_hal::plan_chunks(&chunks, self.ctx, cached, tokens).map_err(|e| e.to_string());
        if policy == PrefillPolicy::Npu {
            return match plan {
                Ok(p) => Placement {
                    device: Device::Npu,
                    chunk_plan: p.clone(),
                    reason: format!("policy npu: chunks {p:?}"),
                    fallback: None,
                },
                Err(why) => cpu(
                    format!("policy npu: no NPU chunk plan ({why})"),
                    Some(format!("no NPU chunk plan: {why}")),
                ),
            };
        }
        let costs = lock(&self.costs);
        let backlog = *lock(&self.npu_backlog_ms);
        decide_auto(&AutoInputs {
            tokens,
            npu_plan: plan,
            npu_backlog_ms: backlog,
            cpu_active: self.cpu_active.load(Ordering::Relaxed),
            cpu_chunk: self.opts.cpu_prefill_chunk,
            costs: &costs,
        })
    }

    fn submit(self: &Arc<Self>, session: &Session, req: GenerateRequest) -> Result<RequestHandle> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Error::InvalidInput("the engine has shut down".into()));
        }
        let spec = &self.model.loaded.spec;
        if let Some(&bad) = req.prompt.iter().find(|&&t| t as usize >= spec.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary (size {})",
                spec.vocab_size
            )));
        }
        let mut state = {
            let mut slot = lock(&session.slot);
            let state = slot.as_mut().ok_or_else(|| session.busy())?;
            let pending = state.tokens.len() - state.cache.len() + req.prompt.len();
            if pending == 0 {
                return Err(Error::InvalidInput(
                    "empty prompt: nothing to condition on".into(),
                ));
            }
            // The last generated token is never run through the model. Saturating: a
            // request for usize::MAX tokens must be refused, not wrap around.
            let needed = state
                .tokens
                .len()
                .saturating_add(req.prompt.len())
                .saturating_add(req.max_new_tokens.saturating_sub(1));
            if needed > self.ctx {
                return Err(Error::ContextOverflow {
                    needed,
                    ctx: self.ctx,
                });
            }
            slot.take().expect("checked above")
        };
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
        let cancel = CancelToken(Arc::new(AtomicBool::new(false)));
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

    fn record_npu_result(&self, result: std::result::Result<(), &str>) {
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

    fn to_cpu(&self, mut job: Box<Job>) {
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

// ---------------------------------------------------------------------------------------------
// NPU worker

fn npu_worker(shared: &Arc<Shared>, rx: &Receiver<NpuMsg>, ready: &Sender<Startup>) {
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

/// The text of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn npu_prefill(shared: &Shared, prefill: &mut dyn PrefillDelegate, mut job: Box<Job>) {
    let estimate = job.npu_estimate_ms;
    // A panic while driving QNN fails this request's NPU part only: the request is recomputed
    // on the CPU like any NPU failure, and the NPU is disabled for the engine's lifetime (the
    // delegate's state after a panic is unknown), so later requests prefill on the CPU.
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

// ---------------------------------------------------------------------------------------------
// CPU worker

fn cpu_worker(shared: &Arc<Shared>, rx: &Receiver<CpuMsg>, ready: &Sender<Startup>) {
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

fn complete(job: &Job) -> RequestOutput {
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
