//! `tandem-scheduler`: turns a loaded model into generated tokens.
//!
//! [`model`] loads a model and its tokenizer; `generate` is the single-threaded CPU loop. The
//! [`engine`] runs requests of many [`Session`]s on two kinds of workers — an NPU worker that
//! prefills prompt chunks on a prefill delegate (any [`tandem_hal::PrefillDelegate`]; the QNN
//! HTP today) and a CPU worker that prefills on the CPU and decodes —
//! handing each session's KV cache between them ([`handoff`]), with placement decided per
//! request ([`policy`]).

pub mod engine;
pub mod generate;
pub mod handoff;
pub mod model;
pub mod policy;
pub mod report;
pub mod sampling;
pub mod stats;
pub mod trace;

pub use engine::{
    CancelToken, Engine, EngineOptions, NpuState, Progress, RequestHandle, RequestOutput, Session,
    Token,
};
pub use generate::{generate, GenerateOutput, GenerateRequest, GenerationStats, StopReason};
pub use model::{default_context, LoadOptions, Model, ModelSource, NpuOptions};
pub use policy::{Device, Placement, PrefillPolicy};
pub use sampling::{Sampler, SamplingParams};
pub use stats::{ChunkStats, RequestStats};
