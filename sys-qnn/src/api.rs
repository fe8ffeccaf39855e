//! Safe wrappers over the raw table: log, backend, device, context, graph, tensor, profile and
//! the System context. Each object holds an `Arc` of its parent, so a handle is always freed
//! before the handle it was created from, and the library stays loaded until the last one goes.
//!
//! These are thin: they own the C strings and arrays a call needs for its duration, check the
//! result, and turn errors into [`QnnError`] with the library's message. Lowering models to
//! graphs is the caller's business (`backends/qnn`).

use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::*;
use crate::loader::{cstr_lossy, QnnLibrary, QnnSystemLibrary};
use crate::system::*;
use crate::types::*;

/// A failed QNN call, or a call refused before reaching the library.
#[derive(Debug, thiserror::Error)]
pub enum QnnError {
    #[error("QNN {op} failed: error {code}: {message}")]
    Call {
        /// The API function and what it was applied to (e.g. `graphAddNode(rms_0 RmsNorm)`).
        op: String,
        code: Qnn_ErrorHandle_t,
        message: String,
    },
    #[error("QNN function {0} is not provided by this library")]
    MissingFunction(&'static str),
    #[error("invalid argument for {op}: {reason}")]
    InvalidArgument { op: String, reason: String },
}

pub(crate) fn slot<F>(f: Option<F>, name: &'static str) -> Result<F, QnnError> {
    f.ok_or(QnnError::MissingFunction(name))
}

pub(crate) fn check(
    lib: &QnnLibrary,
    code: Qnn_ErrorHandle_t,
    op: impl Into<String>,
) -> Result<(), QnnError> {
    if code == QNN_SUCCESS {
        Ok(())
    } else {
        Err(QnnError::Call {
            op: op.into(),
            code,
            message: lib.error_message(code),
        })
    }
}

fn cstring(op: &str, s: &str) -> Result<CString, QnnError> {
    CString::new(s).map_err(|_| QnnError::InvalidArgument {
        op: op.to_string(),
        reason: format!("name {s:?} contains a NUL byte"),
    })
}

/// A NULL-terminated array of config pointers, or null when there are none.
fn config_list<T>(configs: &[T]) -> Vec<*const T> {
    let mut v: Vec<*const T> = configs.iter().map(|c| c as *const T).collect();
    v.push(std::ptr::null());
    v
}

fn list_ptr<T>(list: &[*const T]) -> *const *const T {
    if list.len() <= 1 {
        std::ptr::null()
    } else {
        list.as_ptr()
    }
}

// ---------------------------------------------------------------------------------------------
// log

struct LogInner {
    lib: QnnLibrary,
    handle: Qnn_LogHandle_t,
}
// SAFETY: a QNN log handle is an opaque token usable from any thread; freed once in Drop.
unsafe impl Send for LogInner {}
// SAFETY: shared access only passes the token to QNN calls, which are thread-safe for logs.
unsafe impl Sync for LogInner {}

impl Drop for LogInner {
    fn drop(&mut self) {
        if let Some(free) = self.lib.table().log_free {
            // SAFETY: `handle` came from logCreate and every user (backend, device) holds an
            // Arc of this object, so none is left when it is freed.
            unsafe { free(self.handle) };
        }
    }
}

/// A QNN logger whose lines go to the sink of [`crate::log::set_log_sink`].
#[derive(Clone)]
pub struct Log {
    inner: Arc<LogInner>,
}

impl Log {
    /// `logCreate` with tandem's callback, passing lines up to `max_level` (`QNN_LOG_LEVEL_*`).
    pub fn new(lib: &QnnLibrary, max_level: QnnLog_Level_t) -> Result<Self, QnnError> {
        let f = slot(lib.table().log_create, "logCreate")?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: the callback matches `QnnLog_Callback_t`; the out-pointer is valid.
        let code = unsafe { f(Some(crate::log::log_callback), max_level, &mut handle) };
        check(lib, code, "logCreate")?;
        Ok(Self {
            inner: Arc::new(LogInner {
                lib: lib.clone(),
                handle,
            }),
        })
    }

    pub fn set_level(&self, max_level: QnnLog_Level_t) -> Result<(), QnnError> {
        let f = slot(self.inner.lib.table().log_set_log_level, "logSetLogLevel")?;
        // SAFETY: live handle.
        let code = unsafe { f(self.inner.handle, max_level) };
        check(&self.inner.lib, code, "logSetLogLevel")
    }
}

// ---------------------------------------------------------------------------------------------
// backend

struct BackendInner {
    lib: QnnLibrary,
    _log: Option<Log>,
    handle: Qnn_BackendHandle_t,
}
// SAFETY: opaque token, freed once in Drop; QNN backend calls are thread-safe.
unsafe impl Send for BackendInner {}
// SAFETY: as above.
unsafe impl Sync for BackendInner {}

impl Drop for BackendInner {
    fn drop(&mut self) {
        if let Some(free) = self.lib.table().backend_free {
            // SAFETY: every context/profile holds an Arc of this backend, so none is left.
            unsafe { free(self.handle) };
        }
    }
}

/// An initialised backend (`backendCreate`).
#[derive(Clone)]
pub struct Backend {
    inner: Arc<BackendInner>,
}

impl Backend {
    pub fn new(lib: &QnnLibrary, log: Option<&Log>) -> Result<Self, QnnError> {
        let f = slot(lib.table().backend_create, "backendCreate")?;
        let mut handle = std::ptr::null_mut();
        let logger = log.map_or(std::ptr::null_mut(), |l| l.inner.handle);
        // SAFETY: logger is null or live (kept alive by the Arc below); no configs.
        let code = unsafe { f(logger, std::ptr::null(), &mut handle) };
        check(lib, code, "backendCreate")?;
        Ok(Self {
            inner: Arc::new(BackendInner {
                lib: lib.clone(),
                _log: log.cloned(),
                handle,
            }),
        })
    }

    pub fn library(&self) -> &QnnLibrary {
        &self.inner.lib
    }
}

// ---------------------------------------------------------------------------------------------
// device

/// HTP device options for ahead-of-time preparation (a target SoC / HTP arch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceOptions {
    /// Qualcomm's SoC model number (e.g. 57 = SM8650; verified: the library then prepares for
    /// HTP arch 75).
    pub soc_model: Option<u32>,
    /// `QNN_HTP_DEVICE_ARCH_*` (unverified).
    pub arch: Option<u32>,
}

struct DeviceInner {
    lib: QnnLibrary,
    _log: Option<Log>,
    handle: Qnn_DeviceHandle_t,
}
// SAFETY: opaque token, freed once in Drop.
unsafe impl Send for DeviceInner {}
// SAFETY: as above.
unsafe impl Sync for DeviceInner {}

impl Drop for DeviceInner {
    fn drop(&mut self) {
        if let Some(free) = self.lib.table().device_free {
            // SAFETY: contexts created on this device hold an Arc of it.
            unsafe { free(self.handle) };
        }
    }
}

#[derive(Clone)]
pub struct Device {
    inner: Arc<DeviceInner>,
}

impl Device {
    pub fn new(
        lib: &QnnLibrary,
        log: Option<&Log>,
        opts: &DeviceOptions,
    ) -> Result<Self, QnnError> {
        let f = slot(lib.table().device_create, "deviceCreate")?;
        let mut custom = Vec::new();
        if let Some(soc) = opts.soc_model {
            custom.push(QnnHtpDevice_CustomConfig_t {
                option: QNN_HTP_DEVICE_CONFIG_OPTION_SOC,
                value: QnnHtpDevice_CustomConfigValue_t { soc_model: soc },
            });
        }
        if let Some(arch) = opts.arch {
            custom.push(QnnHtpDevice_CustomConfig_t {
                option: QNN_HTP_DEVICE_CONFIG_OPTION_ARCH,
                value: QnnHtpDevice_CustomConfigValue_t {
                    arch: QnnHtpDevice_MinimumArch_t { device_id: 0, arch },
                },
            });
        }
        let configs: Vec<QnnDevice_Config_t> = custom
            .iter_mut()
            .map(|c| QnnDevice_Config_t {
                option: QNN_DEVICE_CONFIG_OPTION_CUSTOM,
                custom_config: c as *mut _ as *mut c_void,
            })
            .collect();
        let list = config_list(&configs);
        let logger = log.map_or(std::ptr::null_mut(), |l| l.inner.handle);
        let mut handle = std::ptr::null_mut();
        // SAFETY: `list` is null or a NULL-terminated array of configs pointing into `custom`,
        // all alive until the call returns.
        let code = unsafe { f(logger, list_ptr(&list), &mut handle) };
        check(lib, code, format!("deviceCreate({opts:?})"))?;
        Ok(Self {
            inner: Arc::new(DeviceInner {
                lib: lib.clone(),
                _log: log.cloned(),
                handle,
            }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// profile

struct ProfileInner {
    backend: Backend,
    handle: Qnn_ProfileHandle_t,
}
// SAFETY: opaque token, freed once in Drop.
unsafe impl Send for ProfileInner {}
// SAFETY: as above.
unsafe impl Sync for ProfileInner {}

impl Drop for ProfileInner {
    fn drop(&mut self) {
        if let Some(free) = self.backend.inner.lib.table().profile_free {
            // SAFETY: the handle is not bound to a running call (calls borrow the Profile).
            unsafe { free(self.handle) };
        }
    }
}

/// A profile object to pass to finalize / execute / create-from-binary.
#[derive(Clone)]
pub struct Profile {
    inner: Arc<ProfileInner>,
}

/// One profile event and its sub-events, copied out of the library.
#[derive(Clone, Debug)]
pub struct ProfileEvent {
    /// `QNN_PROFILE_EVENTTYPE_*` or a backend-defined type.
    pub kind: QnnProfile_EventType_t,
    /// `QNN_PROFILE_EVENTUNIT_*`.
    pub unit: QnnProfile_EventUnit_t,
    pub value: u64,
    pub identifier: String,
    pub sub_events: Vec<ProfileEvent>,
}

impl Profile {
    /// `profileCreate` at `QNN_PROFILE_LEVEL_BASIC` or `_DETAILED`.
    pub fn new(backend: &Backend, level: QnnProfile_Level_t) -> Result<Self, QnnError> {
        let lib = &backend.inner.lib;
        let f = slot(lib.table().profile_create, "profileCreate")?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: live backend handle; valid out-pointer.
        let code = unsafe { f(backend.inner.handle, level, &mut handle) };
        check(lib, code, "profileCreate")?;
        Ok(Self {
            inner: Arc::new(ProfileInner {
                backend: backend.clone(),
                handle,
            }),
        })
    }

    fn handle(&self) -> Qnn_ProfileHandle_t {
        self.inner.handle
    }

    /// Every event collected so far, with sub-events (recursively).
    pub fn events(&self) -> Result<Vec<ProfileEvent>, QnnError> {
        let lib = &self.inner.backend.inner.lib;
        let get = slot(lib.table().profile_get_events, "profileGetEvents")?;
        let mut ids: *const QnnProfile_EventId_t = std::ptr::null();
        let mut n = 0u32;
        // SAFETY: live profile handle; valid out-pointers.
        let code = unsafe { get(self.handle(), &mut ids, &mut n) };
        check(lib, code, "profileGetEvents")?;
        // SAFETY: the library returned `n` ids at `ids`, owned by the profile we borrow.
        let ids = unsafe { id_slice(ids, n) };
        ids.iter().map(|&id| self.event(id, 0)).collect()
    }

    fn event(&self, id: QnnProfile_EventId_t, depth: u32) -> Result<ProfileEvent, QnnError> {
        let lib = &self.inner.backend.inner.lib;
        let data_fn = slot(lib.table().profile_get_event_data, "profileGetEventData")?;
        let mut data = QnnProfile_EventData_t {
            type_: 0,
            unit: 0,
            value: 0,
            identifier: std::ptr::null(),
        };
        // SAFETY: `id` came from this profile; `data` is a valid out-struct.
        let code = unsafe { data_fn(id, &mut data) };
        check(lib, code, "profileGetEventData")?;
        let mut sub_events = Vec::new();
        if depth < 8 {
            if let Some(sub) = lib.table().profile_get_sub_events {
                let mut ids: *const QnnProfile_EventId_t = std::ptr::null();
                let mut n = 0u32;
                // SAFETY: as above.
                let code = unsafe { sub(id, &mut ids, &mut n) };
                if code == QNN_SUCCESS {
                    // SAFETY: `n` ids owned by the profile.
                    for &s in unsafe { id_slice(ids, n) } {
                        sub_events.push(self.event(s, depth + 1)?);
                    }
                }
            }
        }
        Ok(ProfileEvent {
            kind: data.type_,
            unit: data.unit,
            value: data.value,
            identifier: cstr_lossy(data.identifier),
            sub_events,
        })
    }
}

/// # Safety
/// `ids` is null or points at `n` readable ids that outlive the returned slice's use.
unsafe fn id_slice<'a>(ids: *const QnnProfile_EventId_t, n: u32) -> &'a [QnnProfile_EventId_t] {
    if ids.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: per the function contract.
        unsafe { std::slice::from_raw_parts(ids, n as usize) }
    }
}

// ---------------------------------------------------------------------------------------------
// context

/// Context creation options.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// HTP weight sharing: graphs in the context that declare a STATIC tensor with the same
    /// name and contents keep one copy (verified: the serialized binary holds one copy).
    pub weight_sharing: bool,
}

/// Field order is drop order: after `Drop` frees the context, the device goes before the
/// backend (QNN objects are freed in reverse creation order: context, device, backend).
struct ContextInner {
    _device: Option<Device>,
    backend: Backend,
    handle: Qnn_ContextHandle_t,
}
// SAFETY: opaque token, freed once in Drop.
unsafe impl Send for ContextInner {}
// SAFETY: as above.
unsafe impl Sync for ContextInner {}

impl Drop for ContextInner {
    fn drop(&mut self) {
        if let Some(free) = self.backend.inner.lib.table().context_free {
            // SAFETY: graphs hold an Arc of this context, so none is left.
            unsafe { free(self.handle, std::ptr::null_mut()) };
        }
    }
}

/// A QNN context: owns graphs, serializes to a context binary.
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

fn with_context_configs<R>(
    opts: &ContextOptions,
    call: impl FnOnce(*const *const QnnContext_Config_t) -> R,
) -> R {
    let mut custom = Vec::new();
    if opts.weight_sharing {
        custom.push(QnnHtpContext_CustomConfig_t::weight_sharing(true));
    }
    let configs: Vec<QnnContext_Config_t> = custom
        .iter_mut()
        .map(|c| QnnContext_Config_t {
            option: QNN_CONTEXT_CONFIG_OPTION_CUSTOM,
            custom_config: c as *mut _ as *mut c_void,
        })
        .collect();
    let list = config_list(&configs);
    call(list_ptr(&list))
}

impl Context {
    pub fn new(
        backend: &Backend,
        device: Option<&Device>,
        opts: &ContextOptions,
    ) -> Result<Self, QnnError> {
        let lib = &backend.inner.lib;
        let f = slot(lib.table().context_create, "contextCreate")?;
        let mut handle = std::ptr::null_mut();
        let dev = device.map_or(std::ptr::null_mut(), |d| d.inner.handle);
        let code = with_context_configs(opts, |configs| {
            // SAFETY: live backend and device handles; `configs` is null or a NULL-terminated
            // array alive for the call.
            unsafe { f(backend.inner.handle, dev, configs, &mut handle) }
        });
        check(lib, code, format!("contextCreate({opts:?})"))?;
        Ok(Self {
            inner: Arc::new(ContextInner {
                _device: device.cloned(),
                backend: backend.clone(),
                handle,
            }),
        })
    }

    /// `contextCreateFromBinary`: restores a serialized context (its graphs are then fetched
    /// with [`Context::retrieve_graph`]).
    pub fn from_binary(
        backend: &Backend,
        device: Option<&Device>,
        opts: &ContextOptions,
        binary: &[u8],
        profile: Option<&Profile>,
    ) -> Result<Self, QnnError> {
        let lib = &backend.inner.lib;
        let f = slot(
            lib.table().context_create_from_binary,
            "contextCreateFromBinary",
        )?;
        let mut handle = std::ptr::null_mut();
        let dev = device.map_or(std::ptr::null_mut(), |d| d.inner.handle);
        let prof = profile.map_or(std::ptr::null_mut(), Profile::handle);
        let code = with_context_configs(opts, |configs| {
            // SAFETY: live handles; `binary` is readable for its length during the call (QNN
            // copies what it keeps).
            unsafe {
                f(
                    backend.inner.handle,
                    dev,
                    configs,
                    binary.as_ptr().cast(),
                    binary.len() as u64,
                    &mut handle,
                    prof,
                )
            }
        });
        check(
            lib,
            code,
            format!("contextCreateFromBinary({} bytes)", binary.len()),
        )?;
        Ok(Self {
            inner: Arc::new(ContextInner {
                _device: device.cloned(),
                backend: backend.clone(),
                handle,
            }),
        })
    }

    fn lib(&self) -> &QnnLibrary {
        &self.inner.backend.inner.lib
    }

    /// `contextGetBinarySize` + `contextGetBinary`: the serialized context (after finalize).
    pub fn binary(&self) -> Result<Vec<u8>, QnnError> {
        let lib = self.lib();
        let size_fn = slot(lib.table().context_get_binary_size, "contextGetBinarySize")?;
        let get = slot(lib.table().context_get_binary, "contextGetBinary")?;
        let mut size = 0u64;
        // SAFETY: live context; valid out-pointer.
        let code = unsafe { size_fn(self.inner.handle, &mut size) };
        check(lib, code, "contextGetBinarySize")?;
        let mut buf = vec![0u8; size as usize];
        let mut written = 0u64;
        // SAFETY: `buf` is writable for `size` bytes.
        let code = unsafe {
            get(
                self.inner.handle,
                buf.as_mut_ptr().cast(),
                size,
                &mut written,
            )
        };
        check(lib, code, "contextGetBinary")?;
        buf.truncate(written as usize);
        Ok(buf)
    }

    /// `graphCreate` with HTP options.
    pub fn create_graph(&self, name: &str, opts: &GraphOptions) -> Result<Graph, QnnError> {
        self.create_graph_raw(name, &opts.custom_configs())
    }

    /// `graphCreate` with explicit HTP graph custom configs (for options [`GraphOptions`] does
    /// not name).
    pub fn create_graph_raw(
        &self,
        name: &str,
        custom: &[QnnHtpGraph_CustomConfig_t],
    ) -> Result<Graph, QnnError> {
        let lib = self.lib();
        let f = slot(lib.table().graph_create, "graphCreate")?;
        let cname = cstring("graphCreate", name)?;
        let mut custom = custom.to_vec();
        let configs: Vec<QnnGraph_Config_t> = custom
            .iter_mut()
            .map(|c| QnnGraph_Config_t {
                option: QNN_GRAPH_CONFIG_OPTION_CUSTOM,
                custom_config: c as *mut _ as *mut c_void,
            })
            .collect();
        let list = config_list(&configs);
        let mut handle = std::ptr::null_mut();
        // SAFETY: live context; NUL-terminated name; configs alive for the call.
        let code = unsafe {
            f(
                self.inner.handle,
                cname.as_ptr(),
                list_ptr(&list),
                &mut handle,
            )
        };
        check(lib, code, format!("graphCreate({name})"))?;
        Ok(Graph {
            context: self.clone(),
            handle,
            name: name.to_string(),
            retained: Mutex::new(Vec::new()),
        })
    }

    /// `graphRetrieve`: a graph of a context restored from a binary.
    pub fn retrieve_graph(&self, name: &str) -> Result<Graph, QnnError> {
        let lib = self.lib();
        let f = slot(lib.table().graph_retrieve, "graphRetrieve")?;
        let cname = cstring("graphRetrieve", name)?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: live context; NUL-terminated name; valid out-pointer.
        let code = unsafe { f(self.inner.handle, cname.as_ptr(), &mut handle) };
        check(lib, code, format!("graphRetrieve({name})"))?;
        Ok(Graph {
            context: self.clone(),
            handle,
            name: name.to_string(),
            retained: Mutex::new(Vec::new()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// graph

/// `Qnn_Precision_t` for HTP graph precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Float32,
    /// Run float ops in fp16 ("relaxed precision"). Accepted by the library; the effect is not
    /// observable on the simulator (fp32 graphs already round like fp16 there).
    Float16,
}

/// HTP graph options, turned into `QnnHtpGraph_CustomConfig_t`s.
#[derive(Clone, Debug, Default)]
pub struct GraphOptions {
    pub precision: Option<Precision>,
    /// VTCM budget in MB (0 = as much as the device has).
    pub vtcm_size_mb: Option<u32>,
    /// Finalize optimization level 1–3.
    pub optimization_level: Option<f32>,
    pub num_hvx_threads: Option<u64>,
}

impl GraphOptions {
    fn custom_configs(&self) -> Vec<QnnHtpGraph_CustomConfig_t> {
        let mut v = Vec::new();
        if let Some(p) = self.precision {
            v.push(QnnHtpGraph_CustomConfig_t::precision(match p {
                Precision::Float32 => QNN_PRECISION_FLOAT32,
                Precision::Float16 => QNN_PRECISION_FLOAT16,
            }));
        }
        if let Some(mb) = self.vtcm_size_mb {
            v.push(QnnHtpGraph_CustomConfig_t::vtcm_size_in_mb(mb));
        }
        if let Some(level) = self.optimization_level {
            v.push(QnnHtpGraph_CustomConfig_t::optimization_level(level));
        }
        if let Some(n) = self.num_hvx_threads {
            v.push(QnnHtpGraph_CustomConfig_t::num_hvx_threads(n));
        }
        v
    }
}

/// Description of a tensor to create in a graph.
#[derive(Clone, Copy, Debug)]
pub struct TensorSpec<'a> {
    pub name: &'a str,
    /// `QNN_TENSOR_TYPE_*`.
    pub tensor_type: Qnn_TensorType_t,
    /// `QNN_DATATYPE_*`.
    pub data_type: Qnn_DataType_t,
    pub dims: &'a [u32],
    pub quantize: Qnn_QuantizeParams_t,
    /// Contents of a STATIC tensor (copied by the library during the call).
    pub data: Option<&'a [u8]>,
}

impl<'a> TensorSpec<'a> {
    /// An unquantized tensor.
    pub fn new(
        name: &'a str,
        tensor_type: Qnn_TensorType_t,
        data_type: Qnn_DataType_t,
        dims: &'a [u32],
    ) -> Self {
        Self {
            name,
            tensor_type,
            data_type,
            dims,
            quantize: Qnn_QuantizeParams_t::UNDEFINED,
            data: None,
        }
    }
    /// A STATIC tensor holding `data`.
    pub fn constant(
        name: &'a str,
        data_type: Qnn_DataType_t,
        dims: &'a [u32],
        data: &'a [u8],
    ) -> Self {
        Self {
            data: Some(data),
            ..Self::new(name, QNN_TENSOR_TYPE_STATIC, data_type, dims)
        }
    }
}

/// A tensor as the library knows it: the id it assigned plus the description. Used to wire
/// ops and to pass buffers to execute; also what the System interface reports for a binary.
#[derive(Clone, Debug)]
pub struct TensorDesc {
    pub id: u32,
    pub name: String,
    pub tensor_type: Qnn_TensorType_t,
    pub data_type: Qnn_DataType_t,
    pub dims: Vec<u32>,
    pub quantize: Qnn_QuantizeParams_t,
    c_name: CString,
}

impl TensorDesc {
    pub fn new(
        id: u32,
        name: &str,
        tensor_type: Qnn_TensorType_t,
        data_type: Qnn_DataType_t,
        dims: Vec<u32>,
        quantize: Qnn_QuantizeParams_t,
    ) -> Result<Self, QnnError> {
        Ok(Self {
            id,
            c_name: cstring("tensor", name)?,
            name: name.to_string(),
            tensor_type,
            data_type,
            dims,
            quantize,
        })
    }

    pub fn element_count(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }

    /// Bytes of a dense buffer for this tensor (None for sub-byte types).
    pub fn byte_size(&self) -> Option<usize> {
        data_type_size(self.data_type).map(|s| s * self.element_count())
    }

    /// The C struct for this tensor, pointing into `self` (name) and `dims` (a copy the caller
    /// keeps alive) and `buf` as client buffer.
    fn raw(&self, dims: &mut [u32], buf: Qnn_ClientBuffer_t) -> Qnn_Tensor_t {
        Qnn_Tensor_t::v1(Qnn_TensorV1_t {
            id: self.id,
            name: self.c_name.as_ptr(),
            type_: self.tensor_type,
            data_format: QNN_TENSOR_DATA_FORMAT_FLAT_BUFFER,
            data_type: self.data_type,
            quantize_params: self.quantize,
            rank: dims.len() as u32,
            dimensions: dims.as_mut_ptr(),
            mem_type: QNN_TENSORMEMTYPE_RAW,
            memory: Qnn_TensorMemory_t { client_buf: buf },
        })
    }

    /// Copies a tensor the library described (System binary info).
    ///
    /// # Safety
    /// `t` was filled by the library: name null or NUL-terminated, `dimensions` readable for
    /// `rank` entries.
    unsafe fn from_raw(t: &Qnn_Tensor_t) -> Result<Self, QnnError> {
        let c = t.common();
        let dims = if c.dimensions.is_null() {
            Vec::new()
        } else {
            // SAFETY: per the contract.
            unsafe { std::slice::from_raw_parts(c.dimensions, c.rank as usize) }.to_vec()
        };
        Self::new(
            c.id,
            &cstr_lossy(c.name),
            c.type_,
            c.data_type,
            dims,
            c.quantize_params,
        )
    }
}

/// An op parameter.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    Scalar {
        name: &'a str,
        value: Qnn_Scalar_t,
    },
    /// A tensor parameter (e.g. `perm`, `axes`): a STATIC tensor created in the graph with
    /// [`Graph::add_tensor`], and its contents again.
    Tensor {
        name: &'a str,
        tensor: &'a TensorDesc,
        data: &'a [u8],
    },
}

/// One node: `type_name` from `package` (e.g. `MatMul` from `qti.aisw`).
#[derive(Clone, Copy, Debug)]
pub struct OpSpec<'a> {
    pub name: &'a str,
    pub package: &'a str,
    pub type_name: &'a str,
    pub params: &'a [Param<'a>],
    pub inputs: &'a [&'a TensorDesc],
    pub outputs: &'a [&'a TensorDesc],
}

/// The default op package of QNN's built-in ops.
pub const QNN_OP_PACKAGE: &str = "qti.aisw";

/// A graph in a context. Executing is `&self`, but a graph is not `Sync`: QNN does not allow
/// concurrent executions of one graph.
pub struct Graph {
    context: Context,
    handle: Qnn_GraphHandle_t,
    name: String,
    /// Copies of tensor-parameter data (`perm`, `axes`, …) and of small STATIC tensors, kept
    /// until finalize. QNN's documentation has client buffers valid until then; this library
    /// was measured to copy them during the call, so this only removes the dependency on that.
    retained: Mutex<Vec<Box<[u8]>>>,
}

/// STATIC tensor data up to this size is copied into the graph until finalize (tensor
/// parameters, norms, biases); larger data (weight matrices) is the caller's to keep alive.
const RETAIN_STATIC_MAX: usize = 1 << 20;

// SAFETY: the handle may move between threads; it is freed with its context.
unsafe impl Send for Graph {}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").field("name", &self.name).finish()
    }
}

fn buffer_len(op: &str, t: &TensorDesc, len: usize) -> Result<u32, QnnError> {
    if let Some(want) = t.byte_size() {
        if want != len {
            return Err(QnnError::InvalidArgument {
                op: op.to_string(),
                reason: format!(
                    "tensor {} {:?} needs {want} bytes, buffer has {len}",
                    t.name, t.dims
                ),
            });
        }
    }
    u32::try_from(len).map_err(|_| QnnError::InvalidArgument {
        op: op.to_string(),
        reason: format!("buffer for {} exceeds 4 GiB", t.name),
    })
}

/// Builds the `Qnn_OpConfig_t` for `op` (owning every C string and array it points at) and
/// passes it to `call`.
fn with_op_config<R>(
    op: &OpSpec<'_>,
    what: &str,
    call: impl FnOnce(Qnn_OpConfig_t) -> R,
) -> Result<R, QnnError> {
    let what = what.to_string();
    let name = cstring(&what, op.name)?;
    let package = cstring(&what, op.package)?;
    let type_name = cstring(&what, op.type_name)?;
    let param_names: Vec<CString> = op
        .params
        .iter()
        .map(|p| match p {
            Param::Scalar { name, .. } | Param::Tensor { name, .. } => cstring(&what, name),
        })
        .collect::<Result<_, _>>()?;
    // Dimension copies: QNN takes `uint32_t*` (non-const), so give it owned storage.
    let mut param_dims: Vec<Vec<u32>> = op
        .params
        .iter()
        .map(|p| match p {
            Param::Tensor { tensor, .. } => tensor.dims.clone(),
            Param::Scalar { .. } => Vec::new(),
        })
        .collect();
    let mut params = Vec::with_capacity(op.params.len());
    for ((p, pname), dims) in op.params.iter().zip(&param_names).zip(&mut param_dims) {
        params.push(match p {
            Param::Scalar { value, .. } => Qnn_Param_t {
                param_type: QNN_PARAMTYPE_SCALAR,
                name: pname.as_ptr(),
                value: Qnn_ParamValue_t {
                    scalar_param: *value,
                },
            },
            Param::Tensor { tensor, data, .. } => Qnn_Param_t {
                param_type: QNN_PARAMTYPE_TENSOR,
                name: pname.as_ptr(),
                value: Qnn_ParamValue_t {
                    tensor_param: tensor.raw(
                        dims,
                        Qnn_ClientBuffer_t {
                            data: data.as_ptr() as *mut c_void,
                            data_size: buffer_len(&what, tensor, data.len())?,
                        },
                    ),
                },
            },
        });
    }
    let mut in_dims: Vec<Vec<u32>> = op.inputs.iter().map(|t| t.dims.clone()).collect();
    let mut inputs: Vec<Qnn_Tensor_t> = op
        .inputs
        .iter()
        .zip(&mut in_dims)
        .map(|(t, d)| t.raw(d, Qnn_ClientBuffer_t::EMPTY))
        .collect();
    let mut out_dims: Vec<Vec<u32>> = op.outputs.iter().map(|t| t.dims.clone()).collect();
    let mut outputs: Vec<Qnn_Tensor_t> = op
        .outputs
        .iter()
        .zip(&mut out_dims)
        .map(|(t, d)| t.raw(d, Qnn_ClientBuffer_t::EMPTY))
        .collect();
    let config = Qnn_OpConfig_t {
        version: QNN_OPCONFIG_VERSION_1,
        v1: Qnn_OpConfigV1_t {
            name: name.as_ptr(),
            package_name: package.as_ptr(),
            type_name: type_name.as_ptr(),
            num_of_params: params.len() as u32,
            params: params.as_mut_ptr(),
            num_of_inputs: inputs.len() as u32,
            input_tensors: inputs.as_mut_ptr(),
            num_of_outputs: outputs.len() as u32,
            output_tensors: outputs.as_mut_ptr(),
        },
    };
    Ok(call(config))
}

impl Graph {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    fn lib(&self) -> &QnnLibrary {
        self.context.lib()
    }

    /// `tensorCreateGraphTensor`; returns the description with the id the library assigned.
    pub fn add_tensor(&self, spec: &TensorSpec<'_>) -> Result<TensorDesc, QnnError> {
        let lib = self.lib();
        let f = slot(
            lib.table().tensor_create_graph_tensor,
            "tensorCreateGraphTensor",
        )?;
        let op = format!("tensorCreateGraphTensor({} in {})", spec.name, self.name);
        let mut desc = TensorDesc::new(
            0,
            spec.name,
            spec.tensor_type,
            spec.data_type,
            spec.dims.to_vec(),
            spec.quantize,
        )?;
        let copy: Option<Box<[u8]>> = spec
            .data
            .filter(|d| d.len() <= RETAIN_STATIC_MAX)
            .map(Box::from);
        let data = copy.as_deref().or(spec.data);
        let buf = match data {
            Some(data) => Qnn_ClientBuffer_t {
                data: data.as_ptr() as *mut c_void,
                data_size: buffer_len(&op, &desc, data.len())?,
            },
            None => Qnn_ClientBuffer_t::EMPTY,
        };
        let mut dims = desc.dims.clone();
        let mut raw = desc.raw(&mut dims, buf);
        // SAFETY: live graph; `raw` points at `desc.c_name`, `dims` and the data (`copy`, moved
        // into `retained` below without moving its heap block, or the caller's `spec.data`), all
        // alive for the call; QNN only writes `id` back.
        let code = unsafe { f(self.handle, &mut raw) };
        check(lib, code, op)?;
        if let Some(c) = copy {
            self.retain(c);
        }
        desc.id = raw.common().id;
        Ok(desc)
    }

    fn retain(&self, data: Box<[u8]>) {
        self.retained
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(data);
    }

    /// `graphAddNode`. Tensor-parameter data is copied into the graph and kept until
    /// [`Graph::finalize`].
    pub fn add_node(&self, op: &OpSpec<'_>) -> Result<(), QnnError> {
        let lib = self.lib();
        let f = slot(lib.table().graph_add_node, "graphAddNode")?;
        let what = format!(
            "graphAddNode({} {} in {})",
            op.name, op.type_name, self.name
        );
        let copies: Vec<Option<Box<[u8]>>> = op
            .params
            .iter()
            .map(|p| match p {
                Param::Tensor { data, .. } => Some(Box::from(*data)),
                Param::Scalar { .. } => None,
            })
            .collect();
        let params: Vec<Param<'_>> = op
            .params
            .iter()
            .zip(&copies)
            .map(|(p, c)| match (p, c) {
                (Param::Tensor { name, tensor, .. }, Some(c)) => Param::Tensor {
                    name,
                    tensor,
                    data: c,
                },
                (p, _) => *p,
            })
            .collect();
        let op = OpSpec {
            params: &params,
            ..*op
        };
        // SAFETY: live graph; every pointer in `config` points into locals of
        // `with_op_config` or into `copies`, alive for the call.
        let code = with_op_config(&op, &what, |config| unsafe { f(self.handle, config) })?;
        check(lib, code, what)?;
        for c in copies.into_iter().flatten() {
            self.retain(c);
        }
        Ok(())
    }

    /// `backendValidateOpConfig`: asks the backend whether it supports `op` as configured
    /// (type, parameters, tensor shapes and types), before it is added. HTP accepts unknown op
    /// types in `graphAddNode` and only fails at finalize, without naming the op; this call
    /// names it.
    pub fn validate_node(&self, op: &OpSpec<'_>) -> Result<(), QnnError> {
        let lib = self.lib();
        let f = slot(
            lib.table().backend_validate_op_config,
            "backendValidateOpConfig",
        )?;
        let what = format!(
            "backendValidateOpConfig({} {} in {})",
            op.name, op.type_name, self.name
        );
        let backend = self.context.inner.backend.inner.handle;
        // SAFETY: live backend (the graph's context holds it); `config` points into locals of
        // `with_op_config`, alive for the call.
        let code = with_op_config(op, &what, |config| unsafe { f(backend, config) })?;
        check(lib, code, what)
    }

    /// `graphFinalize`.
    pub fn finalize(&self, profile: Option<&Profile>) -> Result<(), QnnError> {
        let lib = self.lib();
        let f = slot(lib.table().graph_finalize, "graphFinalize")?;
        let prof = profile.map_or(std::ptr::null_mut(), Profile::handle);
        // SAFETY: live graph and profile; no signal; every buffer added is alive (`retained`,
        // or the caller's large STATIC data).
        let code = unsafe { f(self.handle, prof, std::ptr::null_mut()) };
        check(lib, code, format!("graphFinalize({})", self.name))?;
        self.retained
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }

    /// `graphExecute`: inputs and outputs as (tensor, bytes); buffer sizes must match.
    pub fn execute(
        &self,
        inputs: &[(&TensorDesc, &[u8])],
        outputs: &mut [(&TensorDesc, &mut [u8])],
        profile: Option<&Profile>,
    ) -> Result<(), QnnError> {
        let lib = self.lib();
        let f = slot(lib.table().graph_execute, "graphExecute")?;
        let what = format!("graphExecute({})", self.name);
        let mut in_dims: Vec<Vec<u32>> = inputs.iter().map(|(t, _)| t.dims.clone()).collect();
        let mut raw_in = Vec::with_capacity(inputs.len());
        for ((t, data), dims) in inputs.iter().zip(&mut in_dims) {
            let buf = Qnn_ClientBuffer_t {
                data: data.as_ptr() as *mut c_void,
                data_size: buffer_len(&what, t, data.len())?,
            };
            raw_in.push(t.raw(dims, buf));
        }
        let mut out_dims: Vec<Vec<u32>> = outputs.iter().map(|(t, _)| t.dims.clone()).collect();
        let mut raw_out = Vec::with_capacity(outputs.len());
        for ((t, data), dims) in outputs.iter_mut().zip(&mut out_dims) {
            let buf = Qnn_ClientBuffer_t {
                data: data.as_mut_ptr().cast(),
                data_size: buffer_len(&what, t, data.len())?,
            };
            raw_out.push(t.raw(dims, buf));
        }
        let prof = profile.map_or(std::ptr::null_mut(), Profile::handle);
        // SAFETY: live graph; input buffers are only read, output buffers are exclusively
        // borrowed and sized to the tensors; all arrays outlive the synchronous call.
        let code = unsafe {
            f(
                self.handle,
                raw_in.as_ptr(),
                raw_in.len() as u32,
                raw_out.as_mut_ptr(),
                raw_out.len() as u32,
                prof,
                std::ptr::null_mut(),
            )
        };
        check(lib, code, what)
    }
}

// ---------------------------------------------------------------------------------------------
// System context: reading a context binary's metadata

/// A graph as a context binary describes it.
#[derive(Clone, Debug)]
pub struct GraphInfo {
    pub name: String,
    pub inputs: Vec<TensorDesc>,
    pub outputs: Vec<TensorDesc>,
}

/// What a context binary contains.
#[derive(Clone, Debug)]
pub struct ContextBinaryInfo {
    /// `QNN_SYSTEM_CONTEXT_BINARY_INFO_VERSION_*` the library returned.
    pub info_version: u32,
    pub backend_id: u32,
    pub build_id: String,
    pub core_api_version: Qnn_Version_t,
    pub backend_api_version: Qnn_Version_t,
    pub soc_version: String,
    /// Only in binary info v3 (0 otherwise).
    pub soc_model: u32,
    pub graphs: Vec<GraphInfo>,
}

struct SystemContextInner {
    sys: QnnSystemLibrary,
    handle: QnnSystemContext_Handle_t,
}
// SAFETY: opaque token, freed once in Drop.
unsafe impl Send for SystemContextInner {}

impl Drop for SystemContextInner {
    fn drop(&mut self) {
        if let Some(free) = self.sys.table().system_context_free {
            // SAFETY: handle from systemContextCreate; metadata copied out before any drop.
            unsafe { free(self.handle) };
        }
    }
}

/// A System context (`QnnSystemContext_create`), used to read context binaries.
pub struct SystemContext {
    inner: SystemContextInner,
}

fn sys_check(code: Qnn_ErrorHandle_t, op: &str) -> Result<(), QnnError> {
    if code == QNN_SUCCESS {
        Ok(())
    } else {
        Err(QnnError::Call {
            op: op.to_string(),
            code,
            message: format!("System API error code {}", error_code(code)),
        })
    }
}

impl SystemContext {
    pub fn new(sys: &QnnSystemLibrary) -> Result<Self, QnnError> {
        let f = slot(sys.table().system_context_create, "systemContextCreate")?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        let code = unsafe { f(&mut handle) };
        sys_check(code, "systemContextCreate")?;
        Ok(Self {
            inner: SystemContextInner {
                sys: sys.clone(),
                handle,
            },
        })
    }

    /// Lists the graphs of a serialized context and their input/output tensors (with the ids
    /// the restored context uses).
    pub fn binary_info(&mut self, binary: &[u8]) -> Result<ContextBinaryInfo, QnnError> {
        let table = *self.inner.sys.table();
        let mut info: *const QnnSystemContext_BinaryInfo_t = std::ptr::null();
        if let Some(get) = table.system_context_get_metadata {
            // SAFETY: live handle; `binary` readable; out-pointer valid. The result is owned
            // by the System context (`&mut self` keeps it from being reused meanwhile).
            let code = unsafe {
                get(
                    self.inner.handle,
                    binary.as_ptr().cast(),
                    binary.len() as u64,
                    &mut info,
                )
            };
            sys_check(code, "systemContextGetMetadata")?;
        } else {
            let get = slot(
                table.system_context_get_binary_info,
                "systemContextGetBinaryInfo",
            )?;
            let mut copy = binary.to_vec();
            let mut size = 0u64;
            // SAFETY: as above; the (deprecated) call wants a mutable buffer, hence the copy.
            let code = unsafe {
                get(
                    self.inner.handle,
                    copy.as_mut_ptr().cast(),
                    copy.len() as u64,
                    &mut info,
                    &mut size,
                )
            };
            sys_check(code, "systemContextGetBinaryInfo")?;
        }
        if info.is_null() {
            return Err(QnnError::InvalidArgument {
                op: "systemContextGetMetadata".into(),
                reason: "library returned no binary info".into(),
            });
        }
        // SAFETY: non-null info owned by the System context, read according to its version.
        unsafe { read_binary_info(&*info) }
    }
}

/// # Safety
/// `info` was produced by the System library and is still owned by a live System context.
unsafe fn read_binary_info(
    info: &QnnSystemContext_BinaryInfo_t,
) -> Result<ContextBinaryInfo, QnnError> {
    // SAFETY (whole body): each union member is read only for the version that selects it;
    // pointers inside are the library's and valid while the System context lives.
    unsafe {
        let (backend_id, build_id, core, backend, soc, soc_model, n, graphs) = match info.version {
            QNN_SYSTEM_CONTEXT_BINARY_INFO_VERSION_1 | QNN_SYSTEM_CONTEXT_BINARY_INFO_VERSION_2 => {
                let v = &info.v.v1;
                (
                    v.backend_id,
                    v.build_id,
                    v.core_api_version,
                    v.backend_api_version,
                    v.soc_version,
                    0,
                    v.num_graphs,
                    v.graphs,
                )
            }
            QNN_SYSTEM_CONTEXT_BINARY_INFO_VERSION_3 => {
                let v = &info.v.v3;
                (
                    v.backend_id,
                    v.build_id,
                    v.core_api_version,
                    v.backend_api_version,
                    v.soc_version,
                    v.soc_model,
                    v.num_graphs,
                    v.graphs,
                )
            }
            other => {
                return Err(QnnError::InvalidArgument {
                    op: "systemContextGetMetadata".into(),
                    reason: format!("unknown binary info version {other}"),
                })
            }
        };
        let mut out = Vec::new();
        for i in 0..n as usize {
            let g = &*graphs.add(i);
            if !matches!(
                g.version,
                QNN_SYSTEM_CONTEXT_GRAPH_INFO_VERSION_1
                    | QNN_SYSTEM_CONTEXT_GRAPH_INFO_VERSION_2
                    | QNN_SYSTEM_CONTEXT_GRAPH_INFO_VERSION_3
            ) {
                return Err(QnnError::InvalidArgument {
                    op: "systemContextGetMetadata".into(),
                    reason: format!("unknown graph info version {}", g.version),
                });
            }
            // v1, v2 and v3 share the leading fields read here.
            let v = &g.v.v1;
            let tensors = |p: *mut Qnn_Tensor_t, n: u32| -> Result<Vec<TensorDesc>, QnnError> {
                (0..n as usize)
                    .map(|j| TensorDesc::from_raw(&*p.add(j)))
                    .collect()
            };
            out.push(GraphInfo {
                name: cstr_lossy(v.graph_name),
                inputs: tensors(v.graph_inputs, v.num_graph_inputs)?,
                outputs: tensors(v.graph_outputs, v.num_graph_outputs)?,
            });
        }
        Ok(ContextBinaryInfo {
            info_version: info.version,
            backend_id,
            build_id: cstr_lossy(build_id),
            core_api_version: core,
            backend_api_version: backend,
            soc_version: cstr_lossy(soc),
            soc_model,
            graphs: out,
        })
    }
}
