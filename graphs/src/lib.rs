//! `tandem-graphs`: what a model *is*, independent of where it runs.
//!
//! [`ModelSpec`] holds the hyper-parameters of a decoder-only transformer and [`ModelWeights`] its
//! tensors, both normalised to one convention (Hugging Face's: PyTorch shapes, q/k rows in the
//! "rotate halves" RoPE order) whatever file they came from. [`DecoderGraph`] ([`ops`]) is the
//! one description of a forward pass that every backend executes or lowers.

pub mod chat;
pub mod gguf;
pub mod hf;
pub mod metadata;
pub mod model;
pub mod ops;
pub mod spec;
pub mod tokenizer;

pub use gguf::GgufFile;
pub use metadata::{GgufValue, Metadata};
pub use model::{load_weights, load_weights_gguf_bytes, LoadedModel, ModelFormat};
pub use ops::{DecoderGraph, LayerWeight, Node, Op, ValueId, WeightRef};
pub use spec::{Arch, LayerWeights, ModelSpec, ModelWeights, RopeScaling, RopeSpec};
