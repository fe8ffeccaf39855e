//! `tandem-cpu`: runs a [`tandem_graphs`] model on the CPU.
//!
//! * `kernels` — matmul/matvec for f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 and q5_1 weights, norms, activations;
//!   each with a scalar reference and SIMD versions picked at run time (AVX2+FMA+F16C on x86_64,
//!   NEON with dotprod on aarch64).
//! * `pool` — the persistent worker pool every kernel splits its rows across.
//! * `forward` — executes the model's op graph ([`tandem_graphs::DecoderGraph`]) over a
//!   [`tandem_hal::KvCache`].
pub mod forward;
pub mod kernels;
pub mod pool;

pub use forward::{CpuModel, Logits, WeightFormat};
pub use pool::ThreadPool;
