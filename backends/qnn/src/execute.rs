//! Execution: [`QnnPrefill`] owns one QNN context holding an AR-N graph per chunk size (weights
//! shared), prepares it (restore from the cache or lower + finalize + store), and runs prompt
//! chunks against the KV cache ([`tandem_hal::KvCache`]). It implements the delegate contract's
//! [`PrefillDelegate`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sys_qnn::{
    Context, ContextOptions, DeviceOptions, Graph, GraphOptions, Precision, Profile, ProfileEvent,
    SystemContext, TensorDesc, QNN_PROFILE_LEVEL_DETAILED,
};
use tandem_graphs::{ModelSpec, ModelWeights};
use tandem_hal::delegate::{
    ChunkKv, ChunkOutput, ChunkProfile, ChunkTimings, CostEstimate, PrefillDelegate, PrepareReport,
    PreparedFrom,
};
use tandem_hal::{KvCache, KvLayerMut};

use crate::cache::{self, CacheKey, KeyParts, Lookup};
use crate::conv::{self, KvLayout};
use crate::error::{Error, Result};
use crate::library::QnnDevice;
use crate::lower::{lower_model, ChunkShape, LoweredWeights, Lowerer};
use crate::perf::{PerfMode, PerfVote};
use crate::target;

/// Configures and prepares a [`QnnPrefill`].
#[derive(Clone, Debug)]
pub struct QnnPrefillBuilder {
    chunks: Vec<usize>,
    ctx: usize,
    lib_dir: Option<PathBuf>,
    device: Option<QnnDevice>,
    target: DeviceOptions,
    graph_options: GraphOptions,
    cache_dir: Option<PathBuf>,
    use_cache: bool,
    profiling: bool,
    weight_sharing: Option<bool>,
    perf_mode: PerfMode,
}

impl Default for QnnPrefillBuilder {
    fn default() -> Self {
        QnnPrefillBuilder {
            chunks: vec![32, 128],
            ctx: 1024,
            lib_dir: None,
            device: None,
            target: DeviceOptions::default(),
            graph_options: GraphOptions {
                precision: Some(Precision::Float16),
                ..GraphOptions::default()
            },
            cache_dir: None,
            use_cache: true,
            profiling: false,
            weight_sharing: None,
            perf_mode: PerfMode::Default,
        }
    }
}

impl QnnPrefillBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    /// Chunk sizes N of the AR-N graphs (each < ctx); default 32 and 128.
    pub fn chunk_sizes(mut self, chunks: &[usize]) -> Self {
        let mut c = chunks.to_vec();
        c.sort_unstable();
        c.dedup();
        self.chunks = c;
        self
    }
    /// Context length C the graphs attend over (past slots = C − N); default 1024.
    pub fn ctx(mut self, ctx: usize) -> Self {
        self.ctx = ctx;
        self
    }
    /// Folder (or file) of `libQnnHtp`; otherwise `TANDEM_QNN_LIB_DIR`, `QNN_SDK_ROOT`, system.
    pub fn lib_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.lib_dir = Some(dir.into());
        self
    }
    /// Reuse an opened device (its target options win over [`Self::soc_model`]/[`Self::htp_arch`]).
    pub fn device(mut self, device: QnnDevice) -> Self {
        self.device = Some(device);
        self
    }
    /// Target SoC model for ahead-of-time preparation (e.g. 57 = SM8650).
    pub fn soc_model(mut self, soc: u32) -> Self {
        self.target.soc_model = Some(soc);
        self
    }
    /// Target HTP arch (e.g. 75); unverified on the simulator.
    pub fn htp_arch(mut self, arch: u32) -> Self {
        self.target.arch = Some(arch);
        self
    }
    /// HTP graph precision (default fp16).
    pub fn precision(mut self, p: Precision) -> Self {
        self.graph_options.precision = Some(p);
        self
    }
    /// Finalize optimization level 1–3 (the "performance vs prepare time" knob HTP exposes per
    /// graph; the run-time power/performance mode is [`Self::perf_mode`]).
    pub fn optimization_level(mut self, level: f32) -> Self {
        self.graph_options.optimization_level = Some(level);
        self
    }
    /// All HTP graph options at once (VTCM size, HVX threads, …).
    pub fn graph_options(mut self, opts: GraphOptions) -> Self {
        self.graph_options = opts;
        self
    }
    /// Cache folder for context binaries (default [`cache::default_dir`]).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self.use_cache = true;
        self
    }
    /// Never read or write the cache.
    pub fn no_cache(mut self) -> Self {
        self.use_cache = false;
        self
    }
    /// Force the HTP weight-sharing context option on or off. Default: on when there are several
    /// chunk sizes, except on x86_64 hosts, whose HTP simulator finalizes and runs weight-shared
    /// contexts but cannot restore their binaries (natively prepared: "Shared weights buffer
    /// isn't supported on this platform", error 1000; prepared for a SoC: a crash inside
    /// `contextCreateFromBinary`; both measured with 2.51.0), so there the cache would never
    /// hit. Binaries meant for a phone (`tandem compile --weight-sharing on`) should share.
    /// On such a host a cached weight-shared binary is never handed to the library: it is
    /// reported as not restorable here and the graphs are finalized instead.
    pub fn weight_sharing(mut self, on: bool) -> Self {
        self.weight_sharing = Some(on);
        self
    }
    /// HTP run-time performance mode (default [`PerfMode::Default`]: no vote). Voted through the
    /// perf infrastructure once the backend exists, before any graph is finalized or executed,
    /// and withdrawn when the [`QnnPrefill`] is dropped. A library that refuses the vote does
    /// not fail the build: the error is logged and kept in [`PrepareReport::perf_mode_error`].
    /// The on-device effect is not verified (the x86_64 simulator accepts the vote but has no
    /// clocks to change).
    pub fn perf_mode(mut self, mode: PerfMode) -> Self {
        self.perf_mode = mode;
        self
    }
    /// Capture a DETAILED QNN profile on every execution ([`ChunkOutput::profile`]).
    pub fn profiling(mut self, on: bool) -> Self {
        self.profiling = on;
        self
    }

    /// Opens QNN (unless a device was given), then restores the context from the cache or lowers
    /// and finalizes it (storing the result).
    pub fn build(self, spec: &ModelSpec, weights: &ModelWeights) -> Result<QnnPrefill> {
        let t0 = Instant::now();
        if self.chunks.is_empty() {
            return Err(Error::InvalidInput("no chunk sizes given".into()));
        }
        if let Some(&bad) = self.chunks.iter().find(|&&n| n == 0 || n >= self.ctx) {
            return Err(Error::InvalidInput(format!(
                "chunk size {bad} must be in 1..{} (below the context length)",
                self.ctx
            )));
        }
        crate::lower::check_supported(spec, &tandem_graphs::DecoderGraph::from_spec(spec))?;
        let device = match self.device.clone() {
            Some(d) => d,
            None => QnnDevice::open(self.lib_dir.as_deref(), &self.target)?,
        };
        let (perf_vote, perf_mode_error) = match PerfVote::apply(&device.backend, self.perf_mode) {
            Ok(vote) => {
                if let Some(v) = &vote {
                    tracing::debug!(
                        mode = %v.mode(),
                        power_config_id = v.power_config_id(),
                        "HTP performance mode voted"
                    );
                }
                (vote, None)
            }
            Err(e) => {
                tracing::warn!(
                    mode = %self.perf_mode,
                    "HTP performance mode not applied, continuing without it: {e}"
                );
                (None, Some(e.to_string()))
            }
        };
        let perf = PerfReport {
            perf_mode: self.perf_mode,
            perf_mode_error,
        };
        let shapes: Vec<ChunkShape> = self
            .chunks
            .iter()
            .map(|&chunk| ChunkShape {
                chunk,
                ctx: self.ctx,
            })
            .collect();
        let sharing = self
            .weight_sharing
            .unwrap_or(shapes.len() > 1 && target::can_restore_shared_weights());
        let cache_file = if self.use_cache {
            let dir = self.cache_dir.clone().or_else(cache::default_dir);
            dir.map(|dir| {
                let info = device.info();
                let key = CacheKey::new(&KeyParts {
                    spec,
                    weights_hash: cache::weights_hash(weights),
                    chunks: &self.chunks,
                    ctx: self.ctx,
                    build_id: &info.build_id,
                    core_api: &info.core_api,
                    soc_model: info.soc_model,
                    htp_arch: info.htp_arch,
                    options: format!("{:?} weight_sharing={sharing}", self.graph_options),
                });
                (key.path_in(&dir), key)
            })
        } else {
            None
        };

        let mut rejected = None;
        if let Some((path, key)) = &cache_file {
            match cache::load(path, key) {
                Lookup::Missing => {}
                Lookup::Rejected(why) => {
                    tracing::warn!("QNN context cache rejected, rebuilding: {why}");
                    rejected = Some(why);
                }
                Lookup::Hit(_) if sharing && !target::can_restore_shared_weights() => {
                    let why = format!(
                        "{}: prepared with HTP weight sharing, which the x86_64 HTP simulator \
                         cannot restore (it crashes in contextCreateFromBinary); the binary is \
                         for the device, finalizing the graphs here instead",
                        path.display()
                    );
                    tracing::warn!("QNN context cache not restorable on this host: {why}");
                    rejected = Some(why);
                }
                Lookup::Hit(binary) => match restore(&device, &shapes, &binary) {
                    Ok(graphs) => {
                        let report = prepare_report(
                            PreparedFrom::Restored,
                            Some(path.clone()),
                            None,
                            t0.elapsed(),
                            binary.len(),
                            Vec::new(),
                            &device,
                            sharing,
                            &perf,
                        );
                        tracing::info!(?report, "QNN context restored from cache");
                        return Ok(QnnPrefill::new(
                            spec,
                            device,
                            graphs,
                            report,
                            (sharing, perf),
                            self.profiling,
                            perf_vote,
                        ));
                    }
                    Err(e) => {
                        let why = format!("{}: restore failed: {e}", path.display());
                        tracing::warn!("QNN context cache rejected, rebuilding: {why}");
                        rejected = Some(why);
                    }
                },
            }
        }

        let mut cost_estimates = Vec::new();
        let (context, graphs) = finalize(
            &device,
            spec,
            weights,
            &shapes,
            &self.graph_options,
            sharing,
            &mut cost_estimates,
        )?;
        let mut binary_bytes = 0;
        if let Some((path, key)) = &cache_file {
            let binary = context.binary()?;
            binary_bytes = binary.len();
            if let Err(e) = cache::store(path, key, &binary) {
                tracing::warn!("could not write the QNN context cache: {e}");
            }
        }
        let report = prepare_report(
            PreparedFrom::Finalized,
            cache_file.map(|(p, _)| p),
            rejected,
            t0.elapsed(),
            binary_bytes,
            cost_estimates,
            &device,
            sharing,
            &perf,
        );
        tracing::info!(?report, "QNN context finalized");
        Ok(QnnPrefill::new(
            spec,
            device,
            graphs,
            report,
            (sharing, perf),
            self.profiling,
            perf_vote,
        ))
    }
}

/// The contract's report, with the QNN facts (`target`, `weight_sharing`, `perf_mode`) as
/// details in the order `tandem` prints them.
#[allow(clippy::too_many_arguments)]
fn prepare_report(
    source: PreparedFrom,
    cache_path: Option<PathBuf>,
    cache_rejected: Option<String>,
    prepare_time: Duration,
    binary_bytes: usize,
    cost_estimates: Vec<CostEstimate>,
    device: &QnnDevice,
    weight_sharing: bool,
    perf: &PerfReport,
) -> PrepareReport {
    let info = device.info();
    let cost_model =
        (!cost_estimates.is_empty()).then(|| format!("QNN cost model for {}", info.target));
    let mut details = vec![
        ("target".to_string(), info.target.clone()),
        ("weight_sharing".to_string(), weight_sharing.to_string()),
        ("perf_mode".to_string(), perf.perf_mode.to_string()),
    ];
    if let Some(e) = &perf.perf_mode_error {
        details.push(("perf_mode_error".to_string(), e.clone()));
    }
    PrepareReport {
        source,
        cache_path,
        cache_rejected,
        prepare_time,
        binary_bytes,
        cost_estimates,
        cost_model,
        details,
    }
}

#[derive(Clone, Debug)]
struct PerfReport {
    perf_mode: PerfMode,
    perf_mode_error: Option<String>,
}

/// One chunk graph and its I/O tensors by name.
struct ChunkGraph {
    shape: ChunkShape,
    graph: Graph,
    inputs: HashMap<String, TensorDesc>,
    outputs: HashMap<String, TensorDesc>,
}

fn finalize(
    device: &QnnDevice,
    spec: &ModelSpec,
    weights: &ModelWeights,
    shapes: &[ChunkShape],
    opts: &GraphOptions,
    weight_sharing: bool,
    estimates: &mut Vec<CostEstimate>,
) -> Result<(Context, Vec<ChunkGraph>)> {
    let lowered = LoweredWeights::new(spec, weights)?;
    let ops = tandem_graphs::DecoderGraph::from_spec(spec);
    let context = Context::new(
        &device.backend,
        device.device.as_ref(),
        &ContextOptions { weight_sharing },
    )?;
    let mut graphs = Vec::new();
    for &shape in shapes {
        let t = Instant::now();
        let graph = context.create_graph(&shape.graph_name(), opts)?;
        let mut lw = Lowerer::new(&graph, &lowered);
        lower_model(&mut lw, spec, &ops, shape)?;
        let (inputs, outputs) = (lw.inputs.clone(), lw.outputs.clone());
        drop(lw);
        let lowered_at = t.elapsed();
        let profile = Profile::new(&device.backend, QNN_PROFILE_LEVEL_DETAILED)?;
        graph.finalize(Some(&profile))?;
        if let Some(est) = cost_estimate(shape.chunk, &profile.events()?) {
            tracing::debug!(?est, "QNN cost-model estimate");
            estimates.push(est);
        }
        tracing::debug!(
            graph = graph.name(),
            lower_ms = lowered_at.as_millis() as u64,
            finalize_ms = (t.elapsed() - lowered_at).as_millis() as u64,
            "QNN chunk graph finalized"
        );
        graphs.push(ChunkGraph {
            shape,
            graph,
            inputs: by_name(inputs),
            outputs: by_name(outputs),
        });
    }
    Ok((context, graphs))
}

fn by_name(v: Vec<TensorDesc>) -> HashMap<String, TensorDesc> {
    v.into_iter().map(|t| (t.name.clone(), t)).collect()
}

fn restore(device: &QnnDevice, shapes: &[ChunkShape], binary: &[u8]) -> Result<Vec<ChunkGraph>> {
    let mut sc = SystemContext::new(&device.sys)?;
    let info = sc.binary_info(binary)?;
    let context = Context::from_binary(
        &device.backend,
        device.device.as_ref(),
        &ContextOptions::default(),
        binary,
        None,
    )?;
    shapes
        .iter()
        .map(|&shape| {
            let name = shape.graph_name();
            let gi = info
                .graphs
                .iter()
                .find(|g| g.name == name)
                .ok_or_else(|| Error::Binary {
                    path: PathBuf::from("<cache>"),
                    detail: format!(
                        "no graph {name}; it has {:?}",
                        info.graphs.iter().map(|g| &g.name).collect::<Vec<_>>()
                    ),
                })?;
            Ok(ChunkGraph {
                shape,
                graph: context.retrieve_graph(&name)?,
                inputs: by_name(gi.inputs.clone()),
                outputs: by_name(gi.outputs.clone()),
            })
        })
        .collect()
}

fn find_event<'a>(evs: &'a [ProfileEvent], key: &str) -> Option<&'a ProfileEvent> {
    evs.iter().find_map(|e| {
        if e.identifier == key {
            Some(e)
        } else {
            find_event(&e.sub_events, key)
        }
    })
}

/// What a DETAILED QNN profile of one execution reports, as the contract's [`ChunkProfile`]:
/// "Accelerator (execute) time (cycles)" for the whole graph, its per-op sub-events
/// (`node:OpId_k`, as the library names them) and "Accelerator (execute) time" in µs.
///
/// On a device these are the HTP's own counters. On an x86_64 host the library emulates the HTP
/// and these figures measure that emulation: cycles ÷ the accelerator time is a constant
/// ~150–160 in every run, the same graph varies ±30% between runs and the count grows with host
/// load. They are never device time there (`on_device` is false, so
/// [`ChunkProfile::device_exec_us`] is `None`).
pub fn chunk_profile(events: &[ProfileEvent]) -> ChunkProfile {
    let (cycles, op_cycles) = match find_event(events, "Accelerator (execute) time (cycles)") {
        Some(e) => (
            e.value,
            e.sub_events
                .iter()
                .map(|s| {
                    let name = s.identifier.trim_end_matches(" (cycles)").to_string();
                    (name, s.value)
                })
                .collect(),
        ),
        None => (0, Vec::new()),
    };
    ChunkProfile {
        cycles,
        exec_us: find_event(events, "Accelerator (execute) time").map(|e| e.value),
        on_device: !crate::target::is_simulator(),
        op_cycles,
    }
}

/// Qualcomm's cost-model estimate of one graph's execution on the target, read from the
/// finalize profile ("Performance Estimates": "Simulated (Accelerator exec cycles)" with lower
/// and upper estimates). The library computes it only for some SoCs
/// ([`crate::SocInfo::cost_model`]); for SM8550/SM8650/SM8750 it logs "Performance Estimates
/// unsupported on soc …". It is the vendor's model of the device, not a measurement.
pub fn cost_estimate(chunk: usize, events: &[ProfileEvent]) -> Option<CostEstimate> {
    let v = |k: &str| find_event(events, k).map(|e| e.value);
    Some(CostEstimate {
        chunk,
        cycles: v("Simulated (Accelerator exec cycles)")?,
        cycles_lower: v("Simulated (Accelerator exec cycles (lower estimate))")?,
        cycles_upper: v("Simulated (Accelerator exec cycles (upper estimate))")?,
        exec_us: v("Simulated (Accelerator exec time us)")?,
        exec_us_lower: v("Simulated (Accelerator exec time us (lower estimate))")?,
        exec_us_upper: v("Simulated (Accelerator exec time us (upper estimate))")?,
    })
}

/// One chunk's K/V as the graph returned them (fp16, padding included), until the handoff
/// converts them into a [`KvCache`] ([`ChunkOutput::write_layer`], [`ChunkOutput::write_to`]).
#[derive(Clone, Debug)]
pub struct QnnChunkKv {
    layout: KvLayout,
    /// Per layer, `new_key_l`: fp16 little-endian `[n_kv, head_dim, N]` post-RoPE keys.
    raw_k: Vec<Vec<u8>>,
    /// Per layer, `new_value_l`: fp16 little-endian `[n_kv, N, head_dim]`.
    raw_v: Vec<Vec<u8>>,
}

impl QnnChunkKv {
    /// Geometry of the K/V outputs.
    pub fn layout(&self) -> KvLayout {
        self.layout
    }
}

impl ChunkKv for QnnChunkKv {
    fn n_layers(&self) -> usize {
        self.raw_k.len()
    }

    fn n_kv_heads(&self) -> usize {
        self.layout.n_kv_heads
    }

    fn head_dim(&self) -> usize {
        self.layout.head_dim
    }

    /// fp16 bytes of the valid positions' K and V: what the handoff reads out of the graph's
    /// output buffers (it writes twice as many f32 bytes into the cache).
    fn bytes(&self, n_tokens: usize) -> usize {
        self.n_layers() * 2 * n_tokens * self.layout.n_kv_heads * self.layout.head_dim * 2
    }

    /// Straight from the fp16 outputs into the cache (no intermediate rows; see [`crate::conv`]).
    fn write_layer(&self, layer: usize, n_tokens: usize, dst: &mut KvLayerMut<'_>, at: usize) {
        self.layout
            .write_keys(&self.raw_k[layer], n_tokens, dst, at);
        self.layout
            .write_values(&self.raw_v[layer], n_tokens, dst, at);
    }

    fn key_rows(&self, layer: usize, n_tokens: usize) -> Vec<f32> {
        self.layout.key_rows(&self.raw_k[layer], n_tokens)
    }

    fn value_rows(&self, layer: usize, n_tokens: usize) -> Vec<f32> {
        self.layout.value_rows(&self.raw_v[layer], n_tokens)
    }
}

/// A chunk output from its parts, for tools and tests that produce one without a QNN graph
/// (a recorded run, a bench, random data). `raw_k[l]`/`raw_v[l]` are layer `l`'s `new_key_l`
/// and `new_value_l` in the graph layout (see [`crate::conv`]), fp16 little-endian, each
/// [`KvLayout::new_kv_bytes`] long; positions `n_tokens..layout.chunk` are padding and
/// never copied. `logits` is `[n_tokens, vocab]` (may be empty). Timings are zero.
pub fn chunk_output_from_parts(
    start_pos: usize,
    n_tokens: usize,
    layout: KvLayout,
    logits: Vec<f32>,
    raw_k: Vec<Vec<u8>>,
    raw_v: Vec<Vec<u8>>,
) -> Result<ChunkOutput> {
    check_parts(n_tokens, &layout, &logits, &raw_k, &raw_v).map_err(Error::InvalidInput)?;
    Ok(ChunkOutput {
        start_pos,
        n_tokens,
        chunk_size: layout.chunk,
        logits,
        timings: ChunkTimings::default(),
        profile: None,
        kv: Box::new(QnnChunkKv {
            layout,
            raw_k,
            raw_v,
        }),
    })
}

/// Validates [`ChunkOutput`] parts; the message names what is off.
fn check_parts(
    n_tokens: usize,
    layout: &KvLayout,
    logits: &[f32],
    raw_k: &[Vec<u8>],
    raw_v: &[Vec<u8>],
) -> std::result::Result<(), String> {
    if n_tokens == 0 || n_tokens > layout.chunk {
        return Err(format!(
            "{n_tokens} tokens in a chunk of {} (need 1..={})",
            layout.chunk, layout.chunk
        ));
    }
    if !logits.len().is_multiple_of(n_tokens) {
        return Err(format!(
            "{} logits are not [{n_tokens}, vocab]",
            logits.len()
        ));
    }
    if raw_k.len() != raw_v.len() {
        return Err(format!(
            "{} key outputs but {} value outputs",
            raw_k.len(),
            raw_v.len()
        ));
    }
    let want = layout.new_kv_bytes();
    for (what, bufs) in [("new_key", raw_k), ("new_value", raw_v)] {
        if let Some((l, b)) = bufs.iter().enumerate().find(|(_, b)| b.len() != want) {
            return Err(format!(
                "{what}_{l} has {} bytes, expected {want} (fp16 {} heads × head_dim {} × chunk {})",
                b.len(),
                layout.n_kv_heads,
                layout.head_dim,
                layout.chunk
            ));
        }
    }
    Ok(())
}

/// Prefill on the QNN HTP: one context with an AR-N graph per chunk size.
pub struct QnnPrefill {
    /// The HTP performance vote, withdrawn on drop (it holds the backend, so the backend
    /// outlives it whatever the field order).
    perf_vote: Option<PerfVote>,
    spec: ModelSpec,
    inv_freq: Vec<f32>,
    device: QnnDevice,
    graphs: Vec<ChunkGraph>,
    report: PrepareReport,
    weight_sharing: bool,
    perf: PerfReport,
    profiling: bool,
}

impl std::fmt::Debug for QnnPrefill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QnnPrefill")
            .field("chunks", &self.chunk_sizes())
            .field("ctx", &self.ctx())
            .field("report", &self.report)
            .finish()
    }
}

impl QnnPrefill {
    fn new(
        spec: &ModelSpec,
        device: QnnDevice,
        graphs: Vec<ChunkGraph>,
        report: PrepareReport,
        (weight_sharing, perf): (bool, PerfReport),
        profiling: bool,
        perf_vote: Option<PerfVote>,
    ) -> QnnPrefill {
        QnnPrefill {
            perf_vote,
            inv_freq: spec.rope.inv_freq(),
            spec: spec.clone(),
            device,
            graphs,
            report,
            weight_sharing,
            perf,
            profiling,
        }
    }

    /// Whether the chunk graphs share one copy of the weights.
    pub fn weight_sharing(&self) -> bool {
        self.weight_sharing
    }

    /// The requested HTP performance mode ([`QnnPrefillBuilder::perf_mode`]).
    pub fn perf_mode(&self) -> PerfMode {
        self.perf.perf_mode
    }

    /// Why the mode could not be voted; `None` when it was voted or nothing was requested.
    pub fn perf_mode_error(&self) -> Option<&str> {
        self.perf.perf_mode_error.as_deref()
    }

    /// The performance mode in force: `Ok(mode)` when voted (or `Default`), else why it could
    /// not be voted (the QNN call and its error text). Voted does not mean effective: the
    /// on-device effect is not verified.
    pub fn perf_mode_applied(&self) -> std::result::Result<PerfMode, &str> {
        match &self.perf.perf_mode_error {
            None => Ok(self.perf.perf_mode),
            Some(e) => Err(e),
        }
    }

    pub fn chunk_sizes(&self) -> Vec<usize> {
        self.graphs.iter().map(|g| g.shape.chunk).collect()
    }

    pub fn ctx(&self) -> usize {
        self.graphs.first().map_or(0, |g| g.shape.ctx)
    }

    pub fn report(&self) -> &PrepareReport {
        &self.report
    }

    /// The performance vote in force, if a mode other than `Default` was voted successfully.
    pub fn perf_vote(&self) -> Option<&PerfVote> {
        self.perf_vote.as_ref()
    }

    pub fn device(&self) -> &QnnDevice {
        &self.device
    }

    pub fn set_profiling(&mut self, on: bool) {
        self.profiling = on;
    }

    /// Chunk sizes to run `n` tokens starting at `start` with this context's graphs
    /// ([`crate::plan_chunks`]).
    pub fn plan(&self, start: usize, n: usize) -> Result<Vec<usize>> {
        Ok(tandem_hal::plan_chunks(
            &self.chunk_sizes(),
            self.ctx(),
            start,
            n,
        )?)
    }

    /// Runs `tokens` (at most the largest chunk) as one chunk after the `past.len()` cached
    /// positions, in the graph of size `chunk` (or the smallest that fits). Does not modify the
    /// cache; see [`ChunkOutput::write_to`].
    pub fn run_chunk(
        &mut self,
        tokens: &[u32],
        past: &KvCache,
        chunk: Option<usize>,
    ) -> Result<ChunkOutput> {
        let s = &self.spec;
        let n = tokens.len();
        if n == 0 {
            return Err(Error::InvalidInput("empty chunk".into()));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= s.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary (size {})",
                s.vocab_size
            )));
        }
        let g = self
            .graphs
            .iter()
            .find(|g| match chunk {
                Some(c) => g.shape.chunk == c,
                None => g.shape.chunk >= n,
            })
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "no chunk graph for {n} tokens (requested {chunk:?}, have {:?})",
                    self.graphs
                        .iter()
                        .map(|g| g.shape.chunk)
                        .collect::<Vec<_>>()
                ))
            })?;
        let shape = g.shape;
        let start = past.len();
        if n > shape.chunk || start > shape.past() {
            return Err(Error::InvalidInput(format!(
                "{n} tokens after {start} cached positions do not fit graph {} (chunk {}, {} past slots)",
                shape.graph_name(),
                shape.chunk,
                shape.past()
            )));
        }
        if past.n_layers() != s.n_layers {
            return Err(Error::InvalidInput(format!(
                "KV cache has {} layers, model {}",
                past.n_layers(),
                s.n_layers
            )));
        }

        let t0 = Instant::now();
        let layout = KvLayout {
            n_kv_heads: s.n_kv_heads,
            head_dim: s.head_dim,
            past: shape.past(),
            chunk: shape.chunk,
        };
        let mut ids = vec![0i32; shape.chunk];
        for (d, &t) in ids.iter_mut().zip(tokens) {
            *d = t as i32;
        }
        let (cos, sin) = conv::rope_tables(&self.inv_freq, s.head_dim, start, shape.chunk);
        let mask = conv::attention_mask(s.gqa_group(), shape.chunk, shape.ctx, start);
        let mut data: Vec<(String, Vec<u8>)> = vec![
            ("input_ids".into(), conv::i32_bytes(&ids)),
            ("cos".into(), conv::f32_to_f16_bytes(&cos)),
            ("sin".into(), conv::f32_to_f16_bytes(&sin)),
            ("attention_mask".into(), conv::f32_to_f16_bytes(&mask)),
        ];
        for l in 0..s.n_layers {
            data.push((format!("past_key_{l}"), layout.past_key_bytes(past, l)));
            data.push((format!("past_value_{l}"), layout.past_value_bytes(past, l)));
        }
        let inputs = data
            .iter()
            .map(|(name, bytes)| Ok((io(&g.inputs, name, &shape)?, bytes.as_slice())))
            .collect::<Result<Vec<_>>>()?;
        let mut out_names: Vec<String> = vec!["logits".into()];
        for l in 0..s.n_layers {
            out_names.push(format!("new_key_{l}"));
            out_names.push(format!("new_value_{l}"));
        }
        let mut out_bufs: Vec<Vec<u8>> = out_names
            .iter()
            .map(|name| {
                let t = io(&g.outputs, name, &shape)?;
                Ok(vec![0u8; t.byte_size().unwrap_or(0)])
            })
            .collect::<Result<_>>()?;
        let t1 = Instant::now();

        let profile = if self.profiling {
            Some(Profile::new(
                &self.device.backend,
                QNN_PROFILE_LEVEL_DETAILED,
            )?)
        } else {
            None
        };
        {
            let mut outputs = out_names
                .iter()
                .zip(out_bufs.iter_mut())
                .map(|(name, buf)| Ok((io(&g.outputs, name, &shape)?, buf.as_mut_slice())))
                .collect::<Result<Vec<_>>>()?;
            g.graph.execute(&inputs, &mut outputs, profile.as_ref())?;
        }
        let t2 = Instant::now();

        let mut bufs = out_bufs.into_iter();
        let logits_f16 = bufs.next().unwrap_or_default();
        let logits = conv::f16_bytes_to_f32(&logits_f16[..n * s.vocab_size * 2]);
        // K/V stay as the graph wrote them; the handoff converts them into the cache.
        let (mut raw_k, mut raw_v) = (Vec::new(), Vec::new());
        for _ in 0..s.n_layers {
            raw_k.push(bufs.next().unwrap_or_default());
            raw_v.push(bufs.next().unwrap_or_default());
        }
        check_parts(n, &layout, &logits, &raw_k, &raw_v).map_err(|detail| Error::Binary {
            path: PathBuf::from(shape.graph_name()),
            detail,
        })?;
        let profile = match profile {
            Some(p) => Some(chunk_profile(&p.events()?)),
            None => None,
        };
        let t3 = Instant::now();
        Ok(ChunkOutput {
            start_pos: start,
            n_tokens: n,
            chunk_size: shape.chunk,
            logits,
            timings: ChunkTimings {
                inputs: t1 - t0,
                execute: t2 - t1,
                outputs: t3 - t2,
            },
            profile,
            kv: Box::new(QnnChunkKv {
                layout,
                raw_k,
                raw_v,
            }),
        })
    }

    /// Prefills `tokens` after the cache's valid positions, chunk by chunk (see [`Self::plan`]),
    /// appending each chunk's K/V to `cache`. Returns every chunk's output.
    pub fn prefill(&mut self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<ChunkOutput>> {
        let plan = self.plan(cache.len(), tokens.len())?;
        let mut outs = Vec::with_capacity(plan.len());
        let mut at = 0;
        for chunk in plan {
            let take = chunk.min(tokens.len() - at);
            let out = self.run_chunk(&tokens[at..at + take], cache, Some(chunk))?;
            out.write_to(cache)?;
            at += take;
            outs.push(out);
        }
        Ok(outs)
    }

    /// The whole prompt from an empty cache: logits of every position `[n, vocab]` and the
    /// filled cache (capacity = ctx), as `tandem logits --device npu` needs.
    pub fn run_prompt(&mut self, tokens: &[u32]) -> Result<(Vec<f32>, KvCache)> {
        let mut cache = KvCache::new(&self.spec, self.ctx());
        let outs = self.prefill(tokens, &mut cache)?;
        let logits = outs.into_iter().flat_map(|o| o.logits).collect();
        Ok((logits, cache))
    }
}

/// The contract, for the scheduler: the same calls as the inherent methods.
impl PrefillDelegate for QnnPrefill {
    fn name(&self) -> &'static str {
        crate::delegate::NAME
    }

    fn ctx(&self) -> usize {
        QnnPrefill::ctx(self)
    }

    fn chunk_sizes(&self) -> Vec<usize> {
        QnnPrefill::chunk_sizes(self)
    }

    fn report(&self) -> &PrepareReport {
        QnnPrefill::report(self)
    }

    fn prefill_chunk(
        &mut self,
        tokens: &[u32],
        past: &KvCache,
        chunk: Option<usize>,
    ) -> tandem_hal::Result<ChunkOutput> {
        Ok(self.run_chunk(tokens, past, chunk)?)
    }

    fn plan(&self, start: usize, n: usize) -> tandem_hal::Result<Vec<usize>> {
        Ok(QnnPrefill::plan(self, start, n)?)
    }

    fn set_profiling(&mut self, on: bool) -> bool {
        QnnPrefill::set_profiling(self, on);
        true
    }
}

fn io<'a>(
    map: &'a HashMap<String, TensorDesc>,
    name: &str,
    shape: &ChunkShape,
) -> Result<&'a TensorDesc> {
    map.get(name).ok_or_else(|| Error::Binary {
        path: PathBuf::from(shape.graph_name()),
        detail: format!("graph has no I/O tensor `{name}`"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::random_f16_bytes;
    use crate::conv::tests::bits;

    const LAYOUT: KvLayout = KvLayout {
        n_kv_heads: 2,
        head_dim: 8,
        past: 20,
        chunk: 6,
    };

    /// A chunk of 4 valid tokens (of 6) at position `start`, 3 layers.
    fn chunk(start: usize) -> ChunkOutput {
        let bytes = LAYOUT.new_kv_bytes() / 2;
        let raw = |s: u64| (0..3).map(|l| random_f16_bytes(bytes, s + l)).collect();
        chunk_output_from_parts(start, 4, LAYOUT, vec![0.5; 4 * 10], raw(10), raw(20)).unwrap()
    }

    #[test]
    fn write_layer_matches_rows_via_cache_write() {
        let out = chunk(3);
        assert_eq!((out.n_layers(), out.chunk_size), (3, 6));
        assert_eq!(out.kv_bytes(), 3 * 2 * 4 * 2 * 8 * 2);
        let mut want = KvCache::with_shape(3, 2, 8, 12);
        want.advance(3);
        let mut got = want.clone();
        for l in 0..3 {
            want.write(l, 3, &out.k_rows(l), &out.v_rows(l));
        }
        for (l, mut layer) in got.layers_mut().into_iter().enumerate() {
            out.write_layer(l, &mut layer).unwrap();
        }
        for c in [&mut want, &mut got] {
            c.advance(9);
        }
        for l in 0..3 {
            for h in 0..2 {
                assert_eq!(bits(got.keys(l, h, 12)), bits(want.keys(l, h, 12)));
                assert_eq!(bits(got.values(l, h, 12)), bits(want.values(l, h, 12)));
            }
        }
    }

    #[test]
    fn write_to_validates_before_writing() {
        let out = chunk(2);
        let mut cache = KvCache::with_shape(3, 2, 8, 12);
        cache.advance(1);
        let before = cache.clone();
        let e = out.write_to(&mut cache).unwrap_err().to_string();
        assert!(e.contains("starts at 2"), "{e}");
        let mut small = KvCache::with_shape(3, 2, 8, 5);
        small.advance(2);
        let e = out.write_to(&mut small).unwrap_err().to_string();
        assert!(e.contains("context overflow"), "{e}");
        let mut other = KvCache::with_shape(2, 2, 8, 12);
        other.advance(2);
        let e = out.write_to(&mut other).unwrap_err().to_string();
        assert!(e.contains("3 layers"), "{e}");
        assert_eq!(cache.len(), 1);
        for h in 0..2 {
            assert_eq!(bits(cache.keys(2, h, 12)), bits(before.keys(2, h, 12)));
        }
        cache.truncate(0);
        cache.advance(2);
        out.write_to(&mut cache).unwrap();
        assert_eq!(cache.len(), 6);
        let e = out.write_layer(3, &mut cache.layer_mut(0)).unwrap_err();
        assert!(e.to_string().contains("layer 3"), "{e}");
    }

    #[test]
    fn from_parts_checks_sizes() {
        let ok = vec![vec![0u8; LAYOUT.new_kv_bytes()]; 2];
        let short = vec![vec![0u8; 10]; 2];
        let parts = |n, logits: usize, k: &Vec<Vec<u8>>, v: &Vec<Vec<u8>>| {
            chunk_output_from_parts(0, n, LAYOUT, vec![0.0; logits], k.clone(), v.clone())
        };
        assert!(parts(6, 12, &ok, &ok).is_ok());
        assert!(parts(3, 0, &ok, &ok).is_ok());
        for (e, want) in [
            (parts(0, 0, &ok, &ok), "0 tokens"),
            (parts(7, 0, &ok, &ok), "7 tokens"),
            (parts(4, 6, &ok, &ok), "6 logits"),
            (parts(4, 0, &ok, &ok[..1].to_vec()), "2 key outputs but 1"),
            (parts(4, 0, &ok, &short), "new_value_0 has 10 bytes"),
        ] {
            let e = e.unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
