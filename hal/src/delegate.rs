//! The delegate contract: what a prefill backend (QNN on the Hexagon HTP, Core ML on the Neural
//! Engine, …) implements so the scheduler can run prompt chunks on it without knowing which one
//! it is.
//!
//! # The pieces
//!
//! ```text
//!  registry (facade)          scheduler                         delegate crate
//!  ─────────────────          ─────────                         ──────────────
//!  Box<dyn Delegate<M>> ──▶  probe()    ──────────────────────▶ Availability
//!                            prepare(model, PrepareRequest) ──▶ Box<dyn PrefillDelegate>
//!                            plan(start, n)                     (chunk sizes it offers)
//!                            prefill_chunk(tokens, &KvCache) ─▶ ChunkOutput
//!                            ChunkOutput::write_layer/write_to ─▶ KvCache (the handoff)
//! ```
//!
//! * [`Delegate`] is the factory a delegate crate exports. [`Delegate::probe`] opens the
//!   delegate's native runtime **at run time** (`dlopen`, never linked), so one binary runs where
//!   that runtime is absent: it returns either the working device or, as [`Unavailable`], the
//!   reason — the library paths tried, the version found and the version wanted.
//!   [`Delegate::prepare`] builds (or restores from its cache) everything needed to prefill one
//!   model at one context length, and must refuse, with [`crate::Error::Unsupported`] naming the
//!   op, a model it cannot run: the scheduler then prefills on the CPU and says so.
//! * [`PrefillDelegate`] is the prepared delegate. It prefills one **chunk** of at most its
//!   largest chunk size at the cache's next position, reading the past from a [`KvCache`] and
//!   returning a [`ChunkOutput`]: the logits of the chunk's positions, host timings, an optional
//!   device profile and the chunk's keys and values in the delegate's own layout
//!   ([`ChunkKv`]). It never writes the cache; the caller hands the K/V over
//!   ([`ChunkOutput::write_to`], or layer by layer from several threads through
//!   [`KvCache::layers_mut`]), so a failed chunk leaves the cache as it was.
//! * [`KvCache`] (in [`crate::kv_cache`]) is the one canonical copy of a sequence's K/V, owned by
//!   the scheduler; the CPU decodes from it.
//!
//! The model type `M` is a parameter because this crate sits below the one that describes models
//! (`tandem_graphs`); the registry fixes it to `tandem_graphs::LoadedModel`.
//!
//! # Optional capabilities
//!
//! Everything beyond prefilling a chunk has a default: [`PrefillDelegate::set_profiling`]
//! (returns `false`: not supported), [`PrefillDelegate::plan`] ([`plan_chunks`] over the chunk
//! sizes), [`Delegate::default_chunk_sizes`] ([`DEFAULT_CHUNK_SIZES`]).
//!
//! # Threads
//!
//! A [`Delegate`] is `Send + Sync` (probed from any thread). A [`PrefillDelegate`] need not be
//! `Send`: native runtimes hand out thread-affine handles, so the scheduler prepares it on the
//! thread that uses it (its NPU worker) and keeps it there. A [`ChunkKv`] is `Send + Sync`, so
//! the handoff can write layers from several threads.

use std::path::PathBuf;
use std::time::Duration;

use crate::kv_cache::{KvCache, KvLayerMut};
use crate::{Error, Result};

/// Chunk sizes a delegate prepares when the user names none: a small graph for short prompts and
/// prompt tails, a large one for throughput.
pub const DEFAULT_CHUNK_SIZES: [usize; 2] = [32, 128];

/// A prefill delegate's factory: probes its device and prepares models on it.
pub trait Delegate<M: ?Sized>: Send + Sync {
    /// Short lowercase name used in output and flags (`qnn`, `coreml`).
    fn name(&self) -> &'static str;

    /// Opens the native runtime and reports the device, or why there is none. Never panics and
    /// never aborts the process when the library is missing or of the wrong version.
    fn probe(&self) -> Availability;

    /// Prepares `model` for prefill at `request.ctx` positions in chunks of
    /// `request.chunk_sizes`. Errors with [`Error::Unsupported`] (naming the op or feature) when
    /// the delegate cannot run this model, so the caller can fall back to the CPU.
    fn prepare(&self, model: &M, request: &PrepareRequest) -> Result<Box<dyn PrefillDelegate>>;

    /// The chunk sizes used when the request names none.
    fn default_chunk_sizes(&self) -> Vec<usize> {
        DEFAULT_CHUNK_SIZES.to_vec()
    }
}

/// What to prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrepareRequest {
    /// Context length (positions) the prepared graphs attend over.
    pub ctx: usize,
    /// Chunk sizes to prepare (one graph each on a fixed-shape delegate).
    pub chunk_sizes: Vec<usize>,
    /// Collect a device profile for every chunk ([`ChunkOutput::profile`]).
    pub profiling: bool,
}

/// A delegate prepared for one model and context: prefills chunks against a [`KvCache`].
pub trait PrefillDelegate {
    /// The [`Delegate::name`] it came from.
    fn name(&self) -> &'static str;

    /// Context length it was prepared for.
    fn ctx(&self) -> usize;

    /// Chunk sizes it can run, ascending.
    fn chunk_sizes(&self) -> Vec<usize>;

    /// How it was prepared (compiled or restored, cache file, times, cost estimates).
    fn report(&self) -> &PrepareReport;

    /// Runs `tokens` (1 ..= the largest chunk size) as one chunk at position `past.len()`,
    /// attending over `past`'s valid positions, in the graph of size `chunk` (or the smallest
    /// that holds the tokens when `None`). Does not modify `past`.
    fn prefill_chunk(
        &mut self,
        tokens: &[u32],
        past: &KvCache,
        chunk: Option<usize>,
    ) -> Result<ChunkOutput>;

    /// The chunk sizes that run `n` tokens from position `start` ([`plan_chunks`]).
    fn plan(&self, start: usize, n: usize) -> Result<Vec<usize>> {
        plan_chunks(&self.chunk_sizes(), self.ctx(), start, n)
    }

    /// Turns per-chunk device profiling on or off; returns whether the delegate supports it.
    fn set_profiling(&mut self, _on: bool) -> bool {
        false
    }
}

/// Chunk sizes to run `n` tokens starting at `start`: at each step the largest size that holds
/// only real tokens, else the smallest that holds the rest (the last chunk is padded); every
/// chunk must end inside the context (`pos + N ≤ ctx`), since a fixed-shape chunk graph has
/// `ctx − N` past slots. Pure, so the scheduler can plan (and place) a request without touching
/// the device.
pub fn plan_chunks(sizes: &[usize], ctx: usize, start: usize, n: usize) -> Result<Vec<usize>> {
    let end = start.checked_add(n).filter(|&e| e <= ctx).ok_or_else(|| {
        Error::InvalidInput(format!(
            "context overflow: {} positions needed, context holds {ctx}",
            start.saturating_add(n)
        ))
    })?;
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let (mut pos, mut plan) = (start, Vec::new());
    while pos < end {
        let rest = end - pos;
        let fits: Vec<usize> = sorted
            .iter()
            .copied()
            .filter(|&c| c > 0 && pos + c <= ctx)
            .collect();
        let pick = fits
            .iter()
            .rev()
            .find(|&&c| c <= rest)
            .or_else(|| fits.iter().find(|&&c| c >= rest))
            .copied()
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "no chunk size in {sizes:?} fits {rest} tokens at position {pos} of context \
                     {ctx}"
                ))
            })?;
        plan.push(pick);
        pos += pick.min(rest);
    }
    Ok(plan)
}

/// What [`Delegate::probe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    Available(DeviceDescription),
    Unavailable(Unavailable),
}

/// A working device of a delegate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceDescription {
    pub delegate: &'static str,
    /// The runtime library that was opened.
    pub library: PathBuf,
    /// Its version, as the library reports it.
    pub version: String,
    /// The device or target in words (e.g. "SM8750 (SoC 69, HTP v79), simulated on x86_64").
    pub device: String,
    /// Whether this is the real device or a host simulation of it.
    pub simulated: bool,
    /// Delegate-specific facts, in the order to print them (`("build_id", "v2.51…")`).
    pub details: Vec<(String, String)>,
}

/// Why a delegate cannot run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    pub delegate: &'static str,
    /// One line saying why (the library's own error where there is one).
    pub reason: String,
    /// Every library path tried, with why it failed.
    pub tried: Vec<(PathBuf, String)>,
    /// The runtime version found, when a library was opened but refused.
    pub version_found: Option<String>,
    /// The runtime version this build needs, when that is what failed.
    pub version_wanted: Option<String>,
}

impl Unavailable {
    /// An unavailability with only a reason (no library involved, e.g. the wrong OS).
    pub fn because(delegate: &'static str, reason: impl Into<String>) -> Unavailable {
        Unavailable {
            delegate,
            reason: reason.into(),
            tried: Vec::new(),
            version_found: None,
            version_wanted: None,
        }
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)?;
        if let (Some(found), Some(wanted)) = (&self.version_found, &self.version_wanted) {
            if !self.reason.contains(found.as_str()) {
                write!(f, " (found {found}, need {wanted})")?;
            }
        }
        Ok(())
    }
}

/// Where a prepared delegate's compiled graphs came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreparedFrom {
    /// Lowered and compiled in this process (QNN: `graphFinalize`).
    Finalized,
    /// Restored from a cached compiled binary.
    Restored,
}

/// How a [`PrefillDelegate`] was prepared.
#[derive(Clone, Debug, PartialEq)]
pub struct PrepareReport {
    pub source: PreparedFrom,
    /// The compiled-binary cache file written or read.
    pub cache_path: Option<PathBuf>,
    /// Why an existing cache file was not used (it was rebuilt).
    pub cache_rejected: Option<String>,
    /// Open-to-ready time (lowering + compile, or read + restore), excluding opening the runtime.
    pub prepare_time: Duration,
    /// Size of the compiled binary written or read (0 without a cache).
    pub binary_bytes: usize,
    /// The vendor's cost-model estimate per chunk graph, when it offers one (empty otherwise).
    pub cost_estimates: Vec<CostEstimate>,
    /// Where [`Self::cost_estimates`] come from, for output (e.g. "QNN cost model for SM7675").
    pub cost_model: Option<String>,
    /// Delegate-specific facts, in the order to print them (`("perf_mode", "burst")`).
    pub details: Vec<(String, String)>,
}

/// A vendor's cost-model estimate of one chunk graph's execution on the target device. It is the
/// vendor's model of the device, not a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostEstimate {
    /// The chunk size N of the graph.
    pub chunk: usize,
    pub cycles: u64,
    pub cycles_lower: u64,
    pub cycles_upper: u64,
    /// The vendor's own conversion of the cycles to time at the target's clock.
    pub exec_us: u64,
    pub exec_us_lower: u64,
    pub exec_us_upper: u64,
}

/// Host-side times of one chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkTimings {
    /// Building the inputs: past K/V copied from the cache, mask, RoPE tables.
    pub inputs: Duration,
    /// The device execution call.
    pub execute: Duration,
    /// Reading the logits (and the profile). The K/V stay in the delegate's layout until the
    /// handoff, which the caller times.
    pub outputs: Duration,
}

/// A device profile of one chunk, as the delegate's runtime reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkProfile {
    /// Accelerator cycles of the whole graph.
    pub cycles: u64,
    /// Accelerator execute time in µs, as the runtime reports it.
    pub exec_us: Option<u64>,
    /// `false` when the runtime emulates the device on the host: the figures then measure that
    /// emulation and are never device time ([`Self::device_exec_us`] is `None`).
    pub on_device: bool,
    /// Per-op cycles, named and ordered as the runtime reports them.
    pub op_cycles: Vec<(String, u64)>,
}

impl ChunkProfile {
    /// The execute time measured on a real device; `None` under host emulation.
    pub fn device_exec_us(&self) -> Option<u64> {
        self.exec_us.filter(|_| self.on_device)
    }
}

/// One chunk's keys and values in the layout the delegate produced them, until they are written
/// into a [`KvCache`]. Positions `0..n_tokens` of the chunk are valid; anything past them is
/// padding and must never be copied.
pub trait ChunkKv: Send + Sync {
    fn n_layers(&self) -> usize;
    fn n_kv_heads(&self) -> usize;
    fn head_dim(&self) -> usize;
    /// Bytes of K and V of `n_tokens` positions over all layers, as held by the delegate (what
    /// the handoff reads).
    fn bytes(&self, n_tokens: usize) -> usize;
    /// Converts layer `layer`'s K/V of chunk positions `0..n_tokens` into `dst` at cache
    /// positions `at..at + n_tokens`. The caller has checked geometry and room.
    fn write_layer(&self, layer: usize, n_tokens: usize, dst: &mut KvLayerMut<'_>, at: usize);
    /// Layer `layer`'s keys as token-major f32 rows `[n_tokens, n_kv_heads * head_dim]`, for
    /// inspection and tests.
    fn key_rows(&self, layer: usize, n_tokens: usize) -> Vec<f32>;
    /// Layer `layer`'s values as token-major f32 rows.
    fn value_rows(&self, layer: usize, n_tokens: usize) -> Vec<f32>;
}

/// The result of one [`PrefillDelegate::prefill_chunk`].
pub struct ChunkOutput {
    /// Position of the first token.
    pub start_pos: usize,
    pub n_tokens: usize,
    /// The graph's chunk size N (≥ `n_tokens`; the rest was padding).
    pub chunk_size: usize,
    /// `[n_tokens, vocab]`.
    pub logits: Vec<f32>,
    pub timings: ChunkTimings,
    /// Present when profiling was on and the delegate supports it.
    pub profile: Option<ChunkProfile>,
    /// The chunk's K/V, still in the delegate's layout.
    pub kv: Box<dyn ChunkKv>,
}

impl std::fmt::Debug for ChunkOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkOutput")
            .field("start_pos", &self.start_pos)
            .field("n_tokens", &self.n_tokens)
            .field("chunk_size", &self.chunk_size)
            .field("logits_len", &self.logits.len())
            .field("n_layers", &self.n_layers())
            .field("timings", &self.timings)
            .field("profile", &self.profile.as_ref().map(|p| p.cycles))
            .finish()
    }
}

impl ChunkOutput {
    pub fn n_layers(&self) -> usize {
        self.kv.n_layers()
    }

    /// Bytes of the valid positions' K and V over all layers, as the delegate holds them.
    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes(self.n_tokens)
    }

    /// Layer `layer`'s keys as token-major f32 rows `[n_tokens, n_kv_heads * head_dim]` (as
    /// [`KvCache::write`] takes them). Panics if `layer >= n_layers()`.
    pub fn k_rows(&self, layer: usize) -> Vec<f32> {
        self.kv.key_rows(layer, self.n_tokens)
    }

    /// Layer `layer`'s values as token-major f32 rows.
    pub fn v_rows(&self, layer: usize) -> Vec<f32> {
        self.kv.value_rows(layer, self.n_tokens)
    }

    /// Checks that this chunk's K/V can be appended to `cache`: it starts at `cache.len()`, the
    /// cache has the same layers, heads and head_dim, and room for `n_tokens` more positions.
    pub fn check_cache(&self, cache: &KvCache) -> Result<()> {
        if cache.len() != self.start_pos {
            return Err(Error::InvalidInput(format!(
                "chunk starts at {} but the cache holds {} positions",
                self.start_pos,
                cache.len()
            )));
        }
        let ours = (self.n_layers(), self.kv.n_kv_heads(), self.kv.head_dim());
        let theirs = (cache.n_layers(), cache.n_kv_heads(), cache.head_dim());
        if ours != theirs {
            return Err(Error::InvalidInput(format!(
                "chunk K/V has {} layers × {} heads × head_dim {}, the cache {} × {} × {}",
                ours.0, ours.1, ours.2, theirs.0, theirs.1, theirs.2
            )));
        }
        cache
            .check_room(self.n_tokens)
            .map_err(|e| Error::InvalidInput(e.to_string()))
    }

    /// Converts layer `layer`'s K/V for the `n_tokens` valid positions straight into `dst` at
    /// positions `start_pos..start_pos + n_tokens`. Does not advance any cache.
    pub fn write_layer(&self, layer: usize, dst: &mut KvLayerMut<'_>) -> Result<()> {
        if layer >= self.n_layers() {
            return Err(Error::InvalidInput(format!(
                "layer {layer} of a chunk output with {} layers",
                self.n_layers()
            )));
        }
        let (h, d) = (self.kv.n_kv_heads(), self.kv.head_dim());
        if (dst.n_kv_heads(), dst.head_dim()) != (h, d) {
            return Err(Error::InvalidInput(format!(
                "layer {layer}: chunk K/V has {h} heads × head_dim {d}, the cache {} × {}",
                dst.n_kv_heads(),
                dst.head_dim()
            )));
        }
        let end = self.start_pos + self.n_tokens;
        if end > dst.capacity() {
            return Err(Error::InvalidInput(format!(
                "layer {layer}: positions {}..{end} do not fit a cache of {}",
                self.start_pos,
                dst.capacity()
            )));
        }
        self.kv
            .write_layer(layer, self.n_tokens, dst, self.start_pos);
        Ok(())
    }

    /// Appends this chunk's K/V to `cache` (at `start_pos`, which must equal `cache.len()`),
    /// layer after layer on the calling thread, then advances it. The cache is unchanged on
    /// error. `tandem_scheduler::handoff` does the same across threads.
    pub fn write_to(&self, cache: &mut KvCache) -> Result<()> {
        self.check_cache(cache)?;
        for (l, mut layer) in cache.layers_mut().into_iter().enumerate() {
            self.write_layer(l, &mut layer)?;
        }
        cache.advance(self.n_tokens);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_full_chunks_then_smallest_padded() {
        assert_eq!(
            plan_chunks(&[32, 128], 1024, 0, 300).unwrap(),
            [128, 128, 32, 32]
        );
        assert_eq!(plan_chunks(&[128, 32], 1024, 0, 20).unwrap(), [32]);
        assert_eq!(plan_chunks(&[32, 128], 1024, 0, 128).unwrap(), [128]);
        assert_eq!(plan_chunks(&[8], 64, 5, 9).unwrap(), [8, 8]);
    }

    #[test]
    fn chunks_must_end_inside_the_context() {
        // At 1000 of 1024 neither AR-32 nor AR-128 ends inside the context.
        assert!(plan_chunks(&[32, 128], 1024, 1000, 10).is_err());
        assert_eq!(plan_chunks(&[32, 128], 1024, 990, 10).unwrap(), [32]);
        // A tail shorter than the remaining room uses the small graph near the end.
        assert_eq!(plan_chunks(&[8, 32], 64, 40, 20).unwrap(), [8, 8, 8]);
        let e = plan_chunks(&[8], 64, 60, 3).unwrap_err().to_string();
        assert!(e.contains("position 60"), "{e}");
        let e = plan_chunks(&[8], 64, 60, 10).unwrap_err().to_string();
        assert!(e.contains("context overflow"), "{e}");
    }

    #[test]
    fn absurd_sizes_are_errors_not_overflows_or_endless_loops() {
        let e = plan_chunks(&[32], 64, usize::MAX, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("context overflow"), "{e}");
        assert!(
            plan_chunks(&[0], 64, 0, 2).is_err(),
            "a zero chunk never fits"
        );
        assert!(plan_chunks(&[], 64, 0, 2).is_err(), "no chunk sizes");
    }
}
