//! `tandem-hal`: the hardware abstraction layer — the vocabulary every tandem crate shares, and
//! the contract every prefill delegate implements. It depends on nothing of theirs.
//!
//! * [`delegate`] — **the delegate contract**: [`Delegate`] (probe a device, prepare a model),
//!   [`PrefillDelegate`] (run one prompt chunk against a [`KvCache`]), what they report, and
//!   [`plan_chunks`]. Read its module docs first.
//! * [`KvCache`] — the canonical K/V of one sequence, which every delegate reads and writes
//!   ([`kv_cache`]).
//! * [`DType`] — element and block formats of weights and activations, with llama.cpp's
//!   block layouts for the quantized ones ([`dtype`]).
//! * [`HostBytes`] — an immutable byte buffer that is either memory-mapped from a model file,
//!   owned, or static (the embedded default model), so weights are never copied just to be read.
//! * [`Tensor`] — a named, shaped, typed view of host bytes, shapes in PyTorch order
//!   (outermost dimension first; a linear layer's weight is `[out_features, in_features]`).
//! * [`Error`] — the errors a caller can act on, each naming the file, tensor, key or symbol.

pub mod delegate;
pub mod dtype;
pub mod error;
pub mod kv_cache;
pub mod tensor;

pub use delegate::{
    plan_chunks, Availability, ChunkKv, ChunkOutput, ChunkProfile, ChunkTimings, CostEstimate,
    Delegate, DeviceDescription, PrefillDelegate, PrepareReport, PrepareRequest, PreparedFrom,
    Unavailable, DEFAULT_CHUNK_SIZES,
};
pub use dtype::{
    BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, DType, QK4_0, QK4_1, QK5_0, QK5_1, QK8_0,
};
pub use error::{Error, Result};
pub use kv_cache::{KvCache, KvLayerMut, KvShape};
pub use tensor::{HostBytes, Tensor};
