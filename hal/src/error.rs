//! Errors shared by every crate. Each variant names what failed and the input it failed on, so a
//! message can be acted on without a debugger.

use std::path::PathBuf;

/// Shared result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or mapping a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model file is malformed (truncated, bad header, offsets out of range, …).
    #[error("{path}: corrupt model file: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// A required tensor is absent from the model files.
    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },
    /// A tensor has a different shape than the model's config implies.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        tensor: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    /// A tensor is stored in a type this operation does not handle.
    #[error("{path}: tensor `{tensor}` has unsupported type {dtype}")]
    UnsupportedDType {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// A config key or metadata entry is missing or has the wrong type.
    #[error("{path}: config key `{key}`: {detail}")]
    Config {
        path: PathBuf,
        key: String,
        detail: String,
    },
    /// The model's architecture is not one tandem implements.
    #[error("{path}: unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArch {
        path: PathBuf,
        arch: String,
        supported: &'static str,
    },
    /// Tokenizer or chat template problems.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Caller passed something out of range (token id, prompt length, option value, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The prompt plus requested tokens do not fit the context.
    #[error("context overflow: {needed} tokens needed, context holds {ctx}")]
    ContextOverflow { needed: usize, ctx: usize },
    /// A prefill delegate cannot run this model (an op, shape or feature it lacks); said at
    /// prepare time so the caller can fall back to the CPU.
    #[error("{delegate} delegate cannot run this model: {what}")]
    Unsupported {
        delegate: &'static str,
        what: String,
    },
    /// A prefill delegate's runtime failed (library, compile, execute, cache file).
    #[error("{delegate} delegate: {message}")]
    Delegate {
        delegate: &'static str,
        message: String,
    },
    /// The session (or other single-user resource) is in use by a running request.
    #[error("{0}")]
    Busy(String),
    /// Generation was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(
        path: impl Into<PathBuf>,
        key: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Error::Config {
            path: path.into(),
            key: key.into(),
            detail: detail.into(),
        }
    }
}
