//! `tandem-scheduler`: turns a loaded model into generated tokens.
//!
//! Today every phase runs on the CPU: `generate` prefills the prompt in chunks and decodes with
//! the [`sampling`] chain. NPU prefill, the KV handoff between devices, sessions shared between
//! worker threads and placement policy arrive with the scheduler issue.

pub mod generate;
pub mod report;
pub mod sampling;
pub mod trace;

pub use generate::{generate, GenerateOutput, GenerateRequest, GenerationStats, StopReason};
pub use sampling::{Sampler, SamplingParams};
