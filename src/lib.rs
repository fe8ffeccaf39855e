//! tandem: on-device LLM inference with prefill on the NPU and decode on the CPU.
//!
//! This crate is the facade over the workspace:
//! - [`Model::load`] reads a model (a Hugging Face directory, a GGUF file, or the embedded
//!   default model, [`embedded_model`]), its tokenizer and chat template, and prepares the CPU
//!   backend.
//! - [`Engine`] runs requests of many [`Session`]s: prefill on the NPU (QNN HTP) or the CPU as
//!   [`PrefillPolicy`] decides, decode on the CPU, each session's KV cache handed between them.
//!   Tokens stream from a [`RequestHandle`]; [`CancelToken`] stops a request from any thread.
//! - [`Model::generate`] is the plain single-threaded CPU loop, without the engine.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tandem::{Engine, EngineOptions, LoadOptions, Model, PrefillPolicy, GenerateRequest};
//! # fn main() -> tandem::Result<()> {
//! let model = Arc::new(Model::load(&tandem::embedded_model(), &LoadOptions::default())?);
//! let engine = Engine::new(model.clone(), EngineOptions {
//!     prefill: PrefillPolicy::Auto,
//!     npu: tandem::delegates::default_npu(), // the compiled-in NPU delegate (QNN)
//!     ..EngineOptions::default()
//! })?;
//! let chat = engine.new_session();
//! let req = GenerateRequest::greedy(model.encode_prompt("Once upon a time")?, 32);
//! let out = chat.generate(req, |t| print!("{}", t.text))?;
//! println!("\nprefill on {} in {:.1} ms", out.stats.prefill_device, out.stats.prefill_ms);
//! # Ok(()) }
//! ```
//!
//! [`delegates`] is the registry of the prefill delegates compiled in (the QNN HTP today); the
//! scheduler sees them only through the contract in [`hal::delegate`].
//!
//! [`Conversation`] drives a session turn by turn (chat template, early stop from a callback,
//! cancellation from another thread); [`app`] opens an engine from an app's settings and maps
//! errors to status codes. [`capi`] is the C ABI over both (`include/tandem.h`), and the Java
//! binding in `bindings/java` uses them too.
//!
//! The binary `tandem` is a thin CLI over this crate. Not implemented yet: the Core ML delegate.

pub mod app;
pub mod capi;
pub mod conversation;
pub mod delegates;

pub use tandem_cpu as cpu;
pub use tandem_graphs as graphs;
pub use tandem_hal as hal;
pub use tandem_qnn as qnn;
pub use tandem_scheduler as scheduler;

pub use conversation::{Canceller, Conversation, EndTurn, TurnOptions};
pub use tandem_cpu::{CpuModel, Logits, ThreadPool, WeightFormat};
pub use tandem_graphs::chat::{ChatMessage, ChatTemplate};
pub use tandem_graphs::model::{LoadedModel, ModelFormat};
pub use tandem_graphs::tokenizer::Tokenizer;
pub use tandem_hal::{Error, KvCache, Result};
pub use tandem_scheduler::{
    CancelToken, Engine, EngineOptions, GenerateOutput, GenerateRequest, GenerationStats,
    LoadOptions, Model, ModelSource, NpuOptions, NpuState, Placement, PrefillPolicy, RequestHandle,
    RequestOutput, RequestStats, SamplingParams, Session, StopReason, Token,
};

/// The model `tandem run` uses when no `-m` is given (see `assets/README.md`).
pub static DEFAULT_MODEL_GGUF: &[u8] = include_bytes!("../assets/default-model.gguf");
/// Name reported for [`DEFAULT_MODEL_GGUF`].
pub const DEFAULT_MODEL_NAME: &str = "<embedded default model>";

/// The embedded default model as a [`ModelSource`].
pub fn embedded_model() -> ModelSource {
    ModelSource::Static {
        bytes: DEFAULT_MODEL_GGUF,
        name: DEFAULT_MODEL_NAME,
    }
}
