//! The delegate's errors. Each names what failed: the QNN call with the library's message, the
//! graph node and its tensors, the cache file, or the library path and version.

use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The QNN libraries could not be opened or report an unsupported API version.
    #[error(transparent)]
    Load(#[from] sys_qnn::LoadError),
    /// A QNN call outside graph building failed (context, finalize, execute, …).
    #[error(transparent)]
    Qnn(#[from] sys_qnn::QnnError),
    /// Adding a node or tensor to a graph failed (boxed: keeps `Result`s small).
    #[error(transparent)]
    Lower(Box<LowerError>),
    /// The model cannot be lowered as configured (shape, dtype, chunk/context choice).
    #[error("cannot lower model: {0}")]
    Unsupported(String),
    /// A restored context lacks a graph or tensor this build expects.
    #[error("context binary {path}: {detail}")]
    Binary { path: PathBuf, detail: String },
    /// Cache folder I/O.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Caller passed something out of range (token ids, chunk size, context overflow).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A shared-contract error (chunk planning, the KV cache).
    #[error(transparent)]
    Hal(#[from] tandem_hal::Error),
}

impl From<Error> for tandem_hal::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io { op, path, source } => tandem_hal::Error::Io { op, path, source },
            Error::InvalidInput(s) => tandem_hal::Error::InvalidInput(s),
            Error::Hal(e) => e,
            Error::Unsupported(what) => tandem_hal::Error::Unsupported {
                delegate: "QNN",
                what,
            },
            other => tandem_hal::Error::Delegate {
                delegate: "QNN",
                message: other.to_string(),
            },
        }
    }
}

/// A graph-building failure, naming the graph, the node (or tensor) and its tensors.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("lowering node `{node}` ({op_type}) in graph {graph}: inputs [{inputs}] → outputs [{outputs}]: {source}")]
    Node {
        graph: String,
        node: String,
        op_type: String,
        inputs: String,
        outputs: String,
        #[source]
        source: sys_qnn::QnnError,
    },
    #[error("creating tensor `{tensor}` {dims:?} in graph {graph}: {source}")]
    Tensor {
        graph: String,
        tensor: String,
        dims: Vec<u32>,
        #[source]
        source: sys_qnn::QnnError,
    },
}

impl From<LowerError> for Error {
    fn from(e: LowerError) -> Self {
        Error::Lower(Box::new(e))
    }
}
