//! Raw FFI for Qualcomm's QNN C API.
//!
//! Not implemented yet: the declarations, loader and ABI tests arrive with the QNN delegate issue.
//! Nothing in tandem calls into QNN today; prefill and decode both run on the CPU.
