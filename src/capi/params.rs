//! The parameter structs of the C ABI, their defaults, and their checked conversion into the
//! facade's [`EngineConfig`] and [`TurnOptions`].

use std::ffi::c_char;
use std::path::PathBuf;

use tandem_cpu::WeightFormat;
use tandem_scheduler::{PrefillPolicy, SamplingParams};

use super::opt_str;
use crate::app::{parse_cpu_weights, AppError, EngineConfig, MAX_CHUNK_SIZES};
use crate::conversation::TurnOptions;

/// Where prompts are prefilled (decode always runs on the CPU).
pub type tandem_placement = i32;
/// Per request, from measured costs: the NPU when it is there and faster, else the CPU.
pub const TANDEM_PLACEMENT_AUTO: tandem_placement = 0;
/// On the NPU (QNN HTP); if it cannot be prepared, on the CPU, saying why in the stats (or an
/// error with `require_npu`).
pub const TANDEM_PLACEMENT_NPU: tandem_placement = 1;
/// On the CPU.
pub const TANDEM_PLACEMENT_CPU: tandem_placement = 2;

/// Most stop strings one generation may have.
pub const TANDEM_MAX_STOP_STRINGS: usize = 64;

/// How an engine is created. Get one from `tandem_engine_default_params()`, change the fields
/// you need, and pass it to `tandem_engine_create*`; the library reads it during that call only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tandem_engine_params {
    /// `sizeof(tandem_engine_params)` as the caller was compiled; set by the defaults. A value
    /// other than this library's is `TANDEM_ERR_INVALID_ARGUMENT`.
    pub size: usize,
    /// `TANDEM_PLACEMENT_AUTO`, `_NPU` or `_CPU`. Default: AUTO on Arm, CPU on x86 hosts (where
    /// the HTP is a simulator).
    pub prefill: tandem_placement,
    /// Fail with `TANDEM_ERR_NPU_UNAVAILABLE` instead of falling back to the CPU when the NPU
    /// cannot be prepared. Default false.
    pub require_npu: bool,
    /// CPU threads; 0 (default) = the physical cores. At most 256.
    pub threads: u32,
    /// Context length of every session; 0 (default) = the model's, capped at 1024 with the NPU
    /// and 4096 without.
    pub context_length: u32,
    /// NPU prompt chunk sizes (one prepared graph each), read during the call; NULL with
    /// `n_chunk_sizes` 0 (default) = the delegate's defaults. At most 16, each at least 1.
    pub chunk_sizes: *const u32,
    pub n_chunk_sizes: usize,
    /// Folder holding the QNN libraries (`libQnnHtp.so`, …), or NULL (default) for
    /// `TANDEM_QNN_LIB_DIR`, `QNN_SDK_ROOT` or the system's library path.
    pub qnn_lib_dir: *const c_char,
    /// Folder for prepared NPU context binaries (reused by later runs), or NULL (default) for
    /// `TANDEM_QNN_CACHE_DIR` or `~/.cache/tandem/qnn`.
    pub cache_dir: *const c_char,
    /// How the CPU holds weights: NULL (default) = as stored, or "f32", "f16", "bf16", "q8_0",
    /// "q4_0", "q4_1", "q5_0", "q5_1" (converted at load).
    pub cpu_weights: *const c_char,
}

/// How one generation runs. Get one from `tandem_generate_default_params()`; the library reads
/// it (and the strings it points to) during the call only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tandem_generate_params {
    /// `sizeof(tandem_generate_params)` as the caller was compiled; set by the defaults.
    pub size: usize,
    /// Most tokens to generate. Default 256.
    pub max_tokens: u32,
    /// Sampling temperature; 0 = greedy (argmax). Default 0.8.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off. Default 40.
    pub top_k: u32,
    /// Nucleus sampling mass in (0, 1]; 1 = off. Default 0.95.
    pub top_p: f32,
    /// Drop tokens below min_p × the top token's probability, in [0, 1]; 0 = off. Default 0.05.
    pub min_p: f32,
    /// Penalty for tokens among the last 64, > 0; 1 = off (default).
    pub repeat_penalty: f32,
    /// Seed of the sampler's random numbers.
    pub seed: u64,
    /// `tandem_generate` only: treat the prompt as the user's message, render the conversation
    /// with the model's chat template and reply as the assistant (a model without a template is
    /// `TANDEM_ERR_INVALID_ARGUMENT`). False (default): append the prompt text as it is. Do not
    /// mix the two on one session: a chat turn re-renders the chat from its messages.
    pub apply_chat_template: bool,
    /// Keep generating through end-of-sequence tokens (for benchmarks). Default false.
    pub ignore_eos: bool,
    /// Generation stops before any of these UTF-8 strings would be emitted; NULL with `n_stop` 0
    /// (default) = none. At most 64.
    pub stop: *const *const c_char,
    pub n_stop: usize,
}

/// The defaults of every field (see each field), with `size` set.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn tandem_engine_default_params() -> tandem_engine_params {
    tandem_engine_params {
        size: std::mem::size_of::<tandem_engine_params>(),
        prefill: match PrefillPolicy::host_default() {
            PrefillPolicy::Auto => TANDEM_PLACEMENT_AUTO,
            PrefillPolicy::Npu => TANDEM_PLACEMENT_NPU,
            PrefillPolicy::Cpu => TANDEM_PLACEMENT_CPU,
        },
        require_npu: false,
        threads: 0,
        context_length: 0,
        chunk_sizes: std::ptr::null(),
        n_chunk_sizes: 0,
        qnn_lib_dir: std::ptr::null(),
        cache_dir: std::ptr::null(),
        cpu_weights: std::ptr::null(),
    }
}

/// The defaults of every field (see each field), with `size` set.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn tandem_generate_default_params() -> tandem_generate_params {
    let s = SamplingParams::default();
    tandem_generate_params {
        size: std::mem::size_of::<tandem_generate_params>(),
        max_tokens: TurnOptions::default().max_tokens as u32,
        temperature: s.temperature,
        top_k: s.top_k as u32,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        seed: s.seed,
        apply_chat_template: false,
        ignore_eos: false,
        stop: std::ptr::null(),
        n_stop: 0,
    }
}

/// Reads a parameter struct whose first field is its `size`: NULL gives `default`; a size other
/// than ours is refused before the rest is read.
///
/// # Safety
/// `p` is NULL or points to a readable `usize`, followed by the rest of a `T` when that `usize`
/// equals `size_of::<T>()`.
pub(super) unsafe fn read_sized<T: Copy>(
    p: *const T,
    name: &str,
    default: impl FnOnce() -> T,
) -> Result<T, AppError> {
    if p.is_null() {
        return Ok(default());
    }
    // SAFETY: every params struct starts with its `size: usize` (repr(C)), readable by contract.
    let size = unsafe { p.cast::<usize>().read_unaligned() };
    let ours = std::mem::size_of::<T>();
    if size != ours {
        return Err(AppError::invalid(format!(
            "{name}.size is {size}, but this library's {name} is {ours} bytes: initialise it with \
             the library's default-params function and build against the header of the library \
             you link"
        )));
    }
    // SAFETY: the caller's struct is a whole `T` (its size says so).
    Ok(unsafe { p.read_unaligned() })
}

/// A caller's array as a slice (NULL with length 0 is empty).
///
/// # Safety
/// `p` is NULL or points to `n` readable `T`s that stay valid for the call.
pub(super) unsafe fn slice<'a, T>(
    p: *const T,
    n: usize,
    what: &str,
    max: usize,
) -> Result<&'a [T], AppError> {
    if n > max {
        return Err(AppError::invalid(format!(
            "{what}: {n} given, at most {max}"
        )));
    }
    match (p.is_null(), n) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(AppError::invalid(format!(
            "{what} is NULL but its count is {n}"
        ))),
        // SAFETY: `n` readable elements at `p` by contract; `n ≤ max` keeps the size sane.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(p, n) }),
    }
}

impl tandem_engine_params {
    /// The checked [`EngineConfig`] these parameters describe.
    ///
    /// # Safety
    /// The pointers in `self` follow the field docs (NULL or valid for the call).
    pub(super) unsafe fn config(self) -> Result<EngineConfig, AppError> {
        let prefill = match self.prefill {
            TANDEM_PLACEMENT_AUTO => PrefillPolicy::Auto,
            TANDEM_PLACEMENT_NPU => PrefillPolicy::Npu,
            TANDEM_PLACEMENT_CPU => PrefillPolicy::Cpu,
            other => {
                return Err(AppError::invalid(format!(
                    "prefill {other} is not a tandem_placement (0 auto, 1 npu, 2 cpu)"
                )))
            }
        };
        // SAFETY: forwarded contract of each field.
        let chunks = unsafe {
            slice(
                self.chunk_sizes,
                self.n_chunk_sizes,
                "chunk_sizes",
                MAX_CHUNK_SIZES,
            )
        }?;
        // SAFETY: as above.
        let qnn_lib_dir = unsafe { opt_str(self.qnn_lib_dir, "qnn_lib_dir") }?;
        // SAFETY: as above.
        let cache_dir = unsafe { opt_str(self.cache_dir, "cache_dir") }?;
        // SAFETY: as above.
        let cpu_weights = match unsafe { opt_str(self.cpu_weights, "cpu_weights") }? {
            None => WeightFormat::AsStored,
            Some(w) => parse_cpu_weights(w)?,
        };
        let config = EngineConfig {
            prefill,
            require_npu: self.require_npu,
            threads: self.threads as usize,
            context_length: self.context_length as usize,
            chunk_sizes: chunks.iter().map(|&c| c as usize).collect(),
            qnn_lib_dir: qnn_lib_dir.map(PathBuf::from),
            cache_dir: cache_dir.map(PathBuf::from),
            cpu_weights,
        };
        config.validate()?;
        Ok(config)
    }
}

impl tandem_generate_params {
    /// The checked [`TurnOptions`] these parameters describe (`chat` from
    /// `apply_chat_template`).
    ///
    /// # Safety
    /// `stop` follows its field doc (NULL, or `n_stop` strings valid for the call).
    pub(super) unsafe fn turn(self) -> Result<TurnOptions, AppError> {
        // SAFETY: forwarded contract.
        let stops = unsafe { slice(self.stop, self.n_stop, "stop", TANDEM_MAX_STOP_STRINGS) }?;
        let mut stop_strings = Vec::with_capacity(stops.len());
        for (i, &s) in stops.iter().enumerate() {
            let what = format!("stop[{i}]");
            // SAFETY: each entry is a NUL-terminated string by contract.
            match unsafe { opt_str(s, &what) }? {
                Some(s) => stop_strings.push(s.to_string()),
                None => return Err(AppError::invalid(format!("{what} is NULL"))),
            }
        }
        let sampling = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            ..SamplingParams::default()
        };
        sampling
            .validate()
            .map_err(|e| AppError::invalid(e.to_string()))?;
        Ok(TurnOptions {
            max_tokens: self.max_tokens as usize,
            sampling,
            stop_strings,
            ignore_eos: self.ignore_eos,
            chat: self.apply_chat_template,
        })
    }
}
