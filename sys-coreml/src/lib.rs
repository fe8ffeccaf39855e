//! Raw FFI to the Objective-C runtime and Core ML.
//!
//! Not implemented yet: Core ML prefill is a later issue, and cannot run on Linux at all (it can
//! only be type-checked for Apple targets here).
