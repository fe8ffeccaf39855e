//! What the language bindings share: opening an [`Engine`] from an app's settings
//! ([`EngineConfig`]) and the status codes errors map to ([`Status`], [`AppError`]). The C ABI
//! ([`crate::capi`]) and the Java binding (`bindings/java`) are thin layers over this and
//! [`crate::Conversation`], so both refuse the same inputs with the same codes and messages.

use std::path::PathBuf;
use std::sync::Arc;

use tandem_cpu::WeightFormat;
use tandem_hal::Error;
use tandem_qnn::QnnOptions;
use tandem_scheduler::model::MAX_THREADS;
use tandem_scheduler::{
    Engine, EngineOptions, LoadOptions, Model, ModelSource, NpuOptions, NpuState, PrefillPolicy,
};

/// Why a call failed, grouped the way an app reacts to it. The numbers are the C ABI's
/// `TANDEM_ERR_*` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A NULL or dangling-looking argument, invalid UTF-8, a wrong `size` field, a value out of
    /// range, a token outside the vocabulary, a model without the chat template asked for.
    InvalidArgument = -1,
    /// The model could not be loaded: missing, unreadable, corrupt, or of an unsupported
    /// architecture or tensor type.
    ModelLoad = -2,
    /// `require_npu` was set and the NPU delegate could not be prepared.
    NpuUnavailable = -3,
    /// The generation was cancelled; the session is as it was before it.
    Cancelled = -4,
    /// The conversation plus the tokens asked for do not fit the context.
    ContextOverflow = -5,
    /// The session is running a generation on another thread.
    Busy = -6,
    /// A bug in tandem (a caught panic, a worker that stopped); the message says what.
    Internal = -7,
    /// The caller's buffer is too small; the size needed was returned.
    BufferTooSmall = -8,
}

impl Status {
    /// All codes, for tables and tests.
    pub const ALL: [Status; 8] = [
        Status::InvalidArgument,
        Status::ModelLoad,
        Status::NpuUnavailable,
        Status::Cancelled,
        Status::ContextOverflow,
        Status::Busy,
        Status::Internal,
        Status::BufferTooSmall,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// The constant's name without its prefix, as `tandem_status_str` and the Java exception
    /// report it.
    pub fn name(self) -> &'static str {
        match self {
            Status::InvalidArgument => "invalid argument",
            Status::ModelLoad => "model load failed",
            Status::NpuUnavailable => "NPU unavailable",
            Status::Cancelled => "cancelled",
            Status::ContextOverflow => "context overflow",
            Status::Busy => "busy",
            Status::Internal => "internal error",
            Status::BufferTooSmall => "buffer too small",
        }
    }
}

/// A failed call: its [`Status`] and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppError {
    pub status: Status,
    pub message: String,
}

impl AppError {
    pub fn new(status: Status, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::new(Status::InvalidArgument, message)
    }

    /// An error while loading a model: everything but a bad argument is a load failure.
    pub fn from_load(e: Error) -> AppError {
        let status = match e {
            Error::InvalidInput(_) => Status::InvalidArgument,
            _ => Status::ModelLoad,
        };
        AppError::new(status, message(e))
    }

    /// An error of a session call (generate, fork, …).
    pub fn from_run(e: Error) -> AppError {
        let status = match e {
            Error::Cancelled => Status::Cancelled,
            Error::ContextOverflow { .. } => Status::ContextOverflow,
            Error::Busy(_) => Status::Busy,
            Error::InvalidInput(_) | Error::Tokenizer(_) => Status::InvalidArgument,
            _ => Status::Internal,
        };
        AppError::new(status, message(e))
    }
}

/// The message of `e` without the prefix its status already says ("invalid input: …").
fn message(e: Error) -> String {
    match e {
        Error::InvalidInput(m) => m,
        Error::ContextOverflow { needed, ctx } => {
            format!("{needed} tokens needed, the context holds {ctx}")
        }
        e => e.to_string(),
    }
}

/// Parses a `cpu_weights` setting: `auto` (as stored), `f32`, `f16`, `bf16`, `q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`.
pub fn parse_cpu_weights(s: &str) -> Result<WeightFormat, AppError> {
    WeightFormat::parse(s).map_err(|_| {
        AppError::invalid(format!(
            "cpu_weights {s:?} is not a weight format: expected auto, f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1"
        ))
    })
}

/// Parses a `prefill` setting: `auto`, `npu` or `cpu`.
pub fn parse_prefill(s: &str) -> Result<PrefillPolicy, AppError> {
    s.parse()
        .map_err(|_: String| AppError::invalid(format!("prefill {s:?}: expected auto, npu or cpu")))
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl std::error::Error for AppError {}

/// Most chunk sizes an app may ask for (each is one prepared NPU graph).
pub const MAX_CHUNK_SIZES: usize = 16;

/// An app's engine settings, with the defaults of `tandem run`.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where prefill runs; decode is always on the CPU.
    pub prefill: PrefillPolicy,
    /// Fail instead of falling back to the CPU when the NPU cannot be prepared.
    pub require_npu: bool,
    /// CPU threads (0 = physical cores).
    pub threads: usize,
    /// Context length (0 = the model's, capped as `tandem run` caps it).
    pub context_length: usize,
    /// NPU chunk sizes (empty = the delegate's defaults).
    pub chunk_sizes: Vec<usize>,
    /// Folder holding the QNN libraries (else `TANDEM_QNN_LIB_DIR`, `QNN_SDK_ROOT`, system path).
    pub qnn_lib_dir: Option<PathBuf>,
    /// Folder for prepared NPU context binaries (else `TANDEM_QNN_CACHE_DIR` or
    /// `~/.cache/tandem/qnn`).
    pub cache_dir: Option<PathBuf>,
    /// How the CPU holds weights (`--cpu-weights`).
    pub cpu_weights: WeightFormat,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            prefill: PrefillPolicy::host_default(),
            require_npu: false,
            threads: 0,
            context_length: 0,
            chunk_sizes: Vec::new(),
            qnn_lib_dir: None,
            cache_dir: None,
            cpu_weights: WeightFormat::AsStored,
        }
    }
}

impl EngineConfig {
    /// Refuses settings that cannot mean anything, before any work is done.
    pub fn validate(&self) -> Result<(), AppError> {
        if self.threads > MAX_THREADS {
            return Err(AppError::invalid(format!(
                "threads {} is more than {MAX_THREADS}",
                self.threads
            )));
        }
        if self.chunk_sizes.len() > MAX_CHUNK_SIZES {
            return Err(AppError::invalid(format!(
                "{} chunk sizes given; at most {MAX_CHUNK_SIZES}",
                self.chunk_sizes.len()
            )));
        }
        if self.chunk_sizes.contains(&0) {
            return Err(AppError::invalid("chunk size 0: chunks must be at least 1"));
        }
        if self.require_npu && self.prefill == PrefillPolicy::Cpu {
            return Err(AppError::invalid(
                "require_npu with prefill on the CPU: the NPU would never be used",
            ));
        }
        Ok(())
    }

    /// Loads the model and starts an engine on it.
    pub fn open(&self, source: &ModelSource) -> Result<Engine, AppError> {
        self.validate()?;
        let load = LoadOptions {
            threads: self.threads,
            cpu_weights: self.cpu_weights,
        };
        let model = Model::load(source, &load).map_err(AppError::from_load)?;
        let opts = EngineOptions {
            prefill: self.prefill,
            ctx: self.context_length,
            npu: NpuOptions {
                delegate: Some(crate::delegates::qnn(QnnOptions {
                    lib_dir: self.qnn_lib_dir.clone(),
                    cache_dir: self.cache_dir.clone(),
                    ..QnnOptions::default()
                })),
                chunks: self.chunk_sizes.clone(),
                ctx: 0,
                profiling: true,
            },
            ..EngineOptions::default()
        };
        let engine = Engine::new(Arc::new(model), opts).map_err(|e| match e {
            Error::ContextOverflow { .. } | Error::InvalidInput(_) => AppError::invalid(message(e)),
            e => AppError::new(Status::Internal, message(e)),
        })?;
        if self.require_npu {
            match engine.npu_state() {
                NpuState::Ready { .. } => {}
                NpuState::Unavailable(why) | NpuState::Disabled(why) => {
                    return Err(AppError::new(Status::NpuUnavailable, why));
                }
                NpuState::NotRequested => {
                    return Err(AppError::new(
                        Status::NpuUnavailable,
                        "the prefill policy does not use the NPU",
                    ));
                }
            }
        }
        Ok(engine)
    }
}

/// A GGUF model inside an open file: bytes `[offset, offset + length)` of descriptor `fd`
/// (`length` 0 = to the end), as Android hands apps their assets (`AssetFileDescriptor`'s
/// descriptor, start offset and length). The file is opened again through `/proc/self/fd`, so
/// the caller keeps its descriptor and may close it once this returns; the bytes are mapped, not
/// copied. Linux and Android only.
pub fn source_from_fd(fd: i32, offset: u64, length: u64) -> Result<ModelSource, AppError> {
    if fd < 0 {
        return Err(AppError::invalid(format!(
            "file descriptor {fd} is not valid"
        )));
    }
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return Err(AppError::invalid(
            "opening a model from a file descriptor needs /proc/self/fd (Linux, Android); pass a path",
        ));
    }
    let proc_path = PathBuf::from(format!("/proc/self/fd/{fd}"));
    let name = PathBuf::from(format!("fd {fd} (offset {offset})"));
    let file = std::fs::File::open(&proc_path).map_err(|e| {
        AppError::new(
            Status::ModelLoad,
            format!("file descriptor {fd}: cannot open it again through /proc/self/fd: {e}"),
        )
    })?;
    let len = (length != 0).then_some(length);
    let bytes = tandem_hal::HostBytes::map_open_file(&file, offset, len, &name)
        .map_err(AppError::from_load)?;
    Ok(ModelSource::Bytes {
        bytes,
        name: name.display().to_string(),
    })
}
