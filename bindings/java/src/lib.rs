//! The native half of tandem's Java API (`dev.tandem`, sources in `bindings/java/java/`): JNI
//! entry points that open an [`tandem::Engine`] from `Tandem.Options`, run
//! [`tandem::Conversation`] turns for `Session`, and turn every error — and every panic — into a
//! `dev.tandem.TandemException` carrying the [`tandem::app::Status`] code and message.
//!
//! Handles: each Java object holds a `long` that is a `Box` pointer made here. The Java classes
//! pass it only while holding the read side of the object's lock and free it (once) under the
//! write side, so a pointer reaching these functions is always alive (see `handle`).

mod convert;
mod engine;
mod error;
mod handle;
mod session;
