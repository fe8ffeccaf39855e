//! `tandem-qnn`: the QNN delegate. Prompt prefill runs on Qualcomm's HTP (NPU) through
//! [`sys_qnn`] as fixed-shape **AR-N chunk graphs** over a fixed context length, with the KV
//! cache as explicit graph I/O; decode stays on the CPU, which owns the canonical cache.
//!
//! It implements the delegate contract of [`tandem_hal::delegate`]: [`QnnDelegate`] is the
//! [`tandem_hal::Delegate`] (probe, prepare) and [`QnnPrefill`] the
//! [`tandem_hal::PrefillDelegate`]. It depends on `tandem-hal` and `tandem-graphs` only, never
//! on another backend.
//!
//! Modules: [`delegate`] is the contract's factory, [`library`] opens and describes the QNN
//! libraries, [`target`] knows the SoCs, [`lower`] turns a [`tandem_graphs::ModelSpec`] +
//! weights into QNN ops, [`execute`] owns the context and runs chunks, [`cache`] stores
//! finalized context binaries, [`conv`] converts f32 ↔ fp16 and the KV layouts, [`perf`] votes
//! the HTP power mode.
//!
//! # API summary (for the CLI and scheduler)
//!
//! ```no_run
//! # fn main() -> Result<(), tandem_qnn::Error> {
//! # let m = tandem_graphs::model::load_weights("m".as_ref()).unwrap();
//! use tandem_hal::{Availability, Delegate};
//! // `tandem devices`: the contract's probe (library paths tried, versions on failure)
//! match tandem_qnn::QnnDelegate::default().probe() {
//!     Availability::Available(device) => println!("{device:?}"),
//!     Availability::Unavailable(why) => println!("qnn: unavailable: {why}"),
//! }
//! // `tandem compile` / engine start: restores from the cache or finalizes and stores
//! let mut prefill = tandem_qnn::QnnPrefillBuilder::new()
//!     .chunk_sizes(&[32, 128])
//!     .ctx(1024)
//!     .soc_model(57) // optional AOT target
//!     .perf_mode("burst".parse().unwrap()) // run-time HTP power vote (best effort)
//!     .cache_dir("/tmp/qnn-cache")
//!     .build(&m.spec, &m.weights)?;
//! println!("{:?}", prefill.report()); // Finalized | Restored, times, cache path
//! // `tandem logits --device npu`: all-position logits + the filled CPU KV cache
//! let (logits, cache) = prefill.run_prompt(&[1, 2, 3])?;
//! // scheduler: chunk by chunk against its own cache
//! let mut cache = tandem_hal::KvCache::new(&m.spec, prefill.ctx());
//! for chunk in prefill.prefill(&[1, 2, 3], &mut cache)? {
//!     let _ = (chunk.timings, chunk.profile); // host times; HTP cycles when profiling
//! }
//! # Ok(()) }
//! ```
//!
//! Errors are [`Error`] (convertible to [`tandem_hal::Error`]); messages name the QNN call, the
//! graph node and its tensors, the library path and versions, or the cache file.
//!
//! Not yet: quantized (int8/int4) weights, a last-position-only logits graph, shared rpcmem
//! buffers for the KV handoff. The HTP performance mode ([`PerfMode`]) is voted but its
//! on-device effect is unverified (the simulator has no clocks).

pub mod cache;
pub mod conv;
pub mod delegate;
mod error;
pub mod execute;
pub mod library;
pub mod lower;
pub mod perf;
pub mod target;

pub use conv::KvLayout;
pub use delegate::{QnnDelegate, QnnOptions};
pub use error::{Error, LowerError, Result};
pub use execute::{chunk_output_from_parts, QnnChunkKv, QnnPrefill, QnnPrefillBuilder};
pub use library::{DeviceInfo, QnnDevice};
pub use perf::{ParsePerfModeError, PerfMode, PerfVote};
pub use sys_qnn::{DeviceOptions, GraphOptions, Precision};
pub use target::{ResolvedTarget, SocInfo, TargetSource, HOST_DEFAULT_SOC, KNOWN_SOCS};
