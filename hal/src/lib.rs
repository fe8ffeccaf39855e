//! `tandem-hal`: the vocabulary every tandem crate shares and depends on nothing of theirs.
//!
//! * [`DType`] — element and block formats of weights and activations, with llama.cpp's
//!   block layouts for the quantized ones ([`dtype`]).
//! * [`HostBytes`] — an immutable byte buffer that is either memory-mapped from a model file,
//!   owned, or static (the embedded default model), so weights are never copied just to be read.
//! * [`Tensor`] — a named, shaped, typed view of host bytes, shapes in PyTorch order
//!   (outermost dimension first; a linear layer's weight is `[out_features, in_features]`).
//! * [`Error`] — the errors a caller can act on, each naming the file, tensor, key or symbol.
//!
//! The delegate contract (what a backend such as QNN or Core ML implements) is added here by the
//! issue that introduces the first non-CPU delegate; until then the CPU backend is called directly.

pub mod dtype;
pub mod error;
pub mod tensor;

pub use dtype::{BlockQ4_0, BlockQ8_0, DType, QK4_0, QK8_0};
pub use error::{Error, Result};
pub use tensor::{HostBytes, Tensor};
