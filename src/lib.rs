//! tandem: on-device LLM inference with prefill on the NPU and decode on the CPU.
pub use tandem_graphs as graphs;
pub use tandem_hal as hal;
