//! Core QNN value types: versions, scalars, quantization, tensors, op parameters and op configs.
//!
//! Written from the binary-interface facts measured against `libQnnHtp.so` (core API 2.40, see
//! `../shared/QNN_ABI_FACTS.md`); the layout tests at the bottom pin every size and offset.
//! Enumerations are plain `u32` aliases with constants, because the library may hand back values
//! this crate does not know, and a Rust `enum` holding an unknown discriminant is undefined
//! behaviour.

use std::ffi::{c_char, c_void};

/// Every QNN call returns this; 0 is success. The low 16 bits carry the error code
/// (see [`error_code`]); the library's `errorGetMessage` turns it into text.
pub type Qnn_ErrorHandle_t = u64;
/// `Qnn_ErrorHandle_t` value meaning success.
pub const QNN_SUCCESS: Qnn_ErrorHandle_t = 0;

/// The error code part of an error handle (QNN keeps it in the low 16 bits).
pub const fn error_code(handle: Qnn_ErrorHandle_t) -> u16 {
    (handle & 0xFFFF) as u16
}

/// Common error codes (`QNN_COMMON_ERROR_*`), as seen through `errorGetMessage`.
pub const QNN_COMMON_ERROR_GENERAL: u64 = 1000;
pub const QNN_COMMON_ERROR_MEM_ALLOC: u64 = 1002;
/// `QNN_GRAPH_ERROR_GRAPH_NOT_FINALIZED`.
pub const QNN_GRAPH_ERROR_GRAPH_NOT_FINALIZED: u64 = 6023;

/// Opaque handles: the library allocates them, we only pass them back.
pub type Qnn_LogHandle_t = *mut c_void;
pub type Qnn_BackendHandle_t = *mut c_void;
pub type Qnn_DeviceHandle_t = *mut c_void;
pub type Qnn_ContextHandle_t = *mut c_void;
pub type Qnn_GraphHandle_t = *mut c_void;
pub type Qnn_ProfileHandle_t = *mut c_void;
pub type Qnn_SignalHandle_t = *mut c_void;
pub type Qnn_MemHandle_t = *mut c_void;
/// Sizes of serialized context binaries.
pub type Qnn_ContextBinarySize_t = u64;

/// Backend ids (`QnnInterface_t::backend_id`). HTP is the one tandem uses.
pub const QNN_BACKEND_ID_CPU: u32 = 3;
pub const QNN_BACKEND_ID_GPU: u32 = 4;
pub const QNN_BACKEND_ID_DSP: u32 = 5;
pub const QNN_BACKEND_ID_HTP: u32 = 6;

/// `{major, minor, patch}`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Qnn_Version_t {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl std::fmt::Display for Qnn_Version_t {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The core API version a provider implements, then the backend's own API version.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Qnn_ApiVersion_t {
    pub core_api_version: Qnn_Version_t,
    pub backend_api_version: Qnn_Version_t,
}

// ---- data types (`Qnn_DataType_t`): the low byte is the bit width ----
pub type Qnn_DataType_t = u32;
pub const QNN_DATATYPE_INT_8: Qnn_DataType_t = 0x008;
pub const QNN_DATATYPE_INT_16: Qnn_DataType_t = 0x016;
pub const QNN_DATATYPE_INT_32: Qnn_DataType_t = 0x032;
pub const QNN_DATATYPE_INT_64: Qnn_DataType_t = 0x064;
pub const QNN_DATATYPE_UINT_8: Qnn_DataType_t = 0x108;
pub const QNN_DATATYPE_UINT_16: Qnn_DataType_t = 0x116;
pub const QNN_DATATYPE_UINT_32: Qnn_DataType_t = 0x132;
pub const QNN_DATATYPE_UINT_64: Qnn_DataType_t = 0x164;
pub const QNN_DATATYPE_FLOAT_16: Qnn_DataType_t = 0x216;
pub const QNN_DATATYPE_FLOAT_32: Qnn_DataType_t = 0x232;
pub const QNN_DATATYPE_FLOAT_64: Qnn_DataType_t = 0x264;
pub const QNN_DATATYPE_SFIXED_POINT_8: Qnn_DataType_t = 0x308;
pub const QNN_DATATYPE_UFIXED_POINT_4: Qnn_DataType_t = 0x404;
pub const QNN_DATATYPE_UFIXED_POINT_8: Qnn_DataType_t = 0x408;
pub const QNN_DATATYPE_UFIXED_POINT_16: Qnn_DataType_t = 0x416;
pub const QNN_DATATYPE_BOOL_8: Qnn_DataType_t = 0x508;

/// Bytes per element of a data type (`None` for sub-byte types such as UFIXED_POINT_4).
pub const fn data_type_size(data_type: Qnn_DataType_t) -> Option<usize> {
    match data_type & 0xFF {
        0x08 => Some(1),
        0x16 => Some(2),
        0x32 => Some(4),
        0x64 => Some(8),
        _ => None,
    }
}

// ---- tensor types (`Qnn_TensorType_t`) ----
pub type Qnn_TensorType_t = u32;
pub const QNN_TENSOR_TYPE_APP_WRITE: Qnn_TensorType_t = 0;
pub const QNN_TENSOR_TYPE_APP_READ: Qnn_TensorType_t = 1;
pub const QNN_TENSOR_TYPE_APP_READWRITE: Qnn_TensorType_t = 2;
pub const QNN_TENSOR_TYPE_NATIVE: Qnn_TensorType_t = 3;
pub const QNN_TENSOR_TYPE_STATIC: Qnn_TensorType_t = 4;
pub const QNN_TENSOR_TYPE_NULL: Qnn_TensorType_t = 5;

/// `Qnn_TensorDataFormat_t`; 0 is the only one tandem uses (flat buffer).
pub type Qnn_TensorDataFormat_t = u32;
pub const QNN_TENSOR_DATA_FORMAT_FLAT_BUFFER: Qnn_TensorDataFormat_t = 0;

// ---- tensor versions ----
pub type Qnn_TensorVersion_t = u32;
pub const QNN_TENSOR_VERSION_1: Qnn_TensorVersion_t = 1;
pub const QNN_TENSOR_VERSION_2: Qnn_TensorVersion_t = 2;

// ---- memory types (`Qnn_TensorMemType_t`) ----
pub type Qnn_TensorMemType_t = u32;
pub const QNN_TENSORMEMTYPE_RAW: Qnn_TensorMemType_t = 0;
pub const QNN_TENSORMEMTYPE_MEMHANDLE: Qnn_TensorMemType_t = 1;
/// Tensor v2 only.
pub const QNN_TENSORMEMTYPE_RETRIEVE_RAW: Qnn_TensorMemType_t = 2;

// ---- quantization ----
pub type Qnn_Definition_t = u32;
pub const QNN_DEFINITION_DEFINED: Qnn_Definition_t = 1;
pub const QNN_DEFINITION_UNDEFINED: Qnn_Definition_t = 0x7FFF_FFFF;
pub type Qnn_QuantizationEncoding_t = u32;
pub const QNN_QUANTIZATION_ENCODING_SCALE_OFFSET: Qnn_QuantizationEncoding_t = 0;
pub const QNN_QUANTIZATION_ENCODING_AXIS_SCALE_OFFSET: Qnn_QuantizationEncoding_t = 1;
pub const QNN_QUANTIZATION_ENCODING_BW_SCALE_OFFSET: Qnn_QuantizationEncoding_t = 2;
pub const QNN_QUANTIZATION_ENCODING_BW_AXIS_SCALE_OFFSET: Qnn_QuantizationEncoding_t = 3;
pub const QNN_QUANTIZATION_ENCODING_BLOCK: Qnn_QuantizationEncoding_t = 4;
pub const QNN_QUANTIZATION_ENCODING_BLOCKWISE_EXPANSION: Qnn_QuantizationEncoding_t = 5;
pub const QNN_QUANTIZATION_ENCODING_VECTOR: Qnn_QuantizationEncoding_t = 6;
pub const QNN_QUANTIZATION_ENCODING_UNDEFINED: Qnn_QuantizationEncoding_t = 0x7FFF_FFFF;

// ---- op params ----
pub type Qnn_ParamType_t = u32;
pub const QNN_PARAMTYPE_SCALAR: Qnn_ParamType_t = 0;
pub const QNN_PARAMTYPE_TENSOR: Qnn_ParamType_t = 1;

pub type Qnn_OpConfigVersion_t = u32;
pub const QNN_OPCONFIG_VERSION_1: Qnn_OpConfigVersion_t = 1;

// ---- log levels (`QnnLog_Level_t`) ----
pub type QnnLog_Level_t = u32;
pub const QNN_LOG_LEVEL_ERROR: QnnLog_Level_t = 1;
pub const QNN_LOG_LEVEL_WARN: QnnLog_Level_t = 2;
pub const QNN_LOG_LEVEL_INFO: QnnLog_Level_t = 3;
pub const QNN_LOG_LEVEL_VERBOSE: QnnLog_Level_t = 4;
pub const QNN_LOG_LEVEL_DEBUG: QnnLog_Level_t = 5;

/// `QnnLog_Callback_t`: `void (*)(const char* fmt, QnnLog_Level_t, uint64_t timestamp, va_list)`.
///
/// The C type is `va_list`, declared here as a pointer. That is ABI-exact on every target QNN
/// ships for: on x86_64 System V `va_list` is an array type that decays to a pointer in a
/// parameter list; on AAPCS64 (Linux, Android) it is a 32-byte struct, which is passed by
/// reference, i.e. as a pointer to a caller-owned copy; on Apple arm64 and Windows it is a plain
/// `char*`. See `crate::log` for how the message is formatted without nightly `c_variadic`.
pub type QnnLog_Callback_t = Option<
    unsafe extern "C" fn(
        fmt: *const c_char,
        level: QnnLog_Level_t,
        timestamp: u64,
        args: *mut c_void,
    ),
>;

/// `Qnn_Scalar_t`: a data-type tag, then a union whose 64-bit members put it at offset 8.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Qnn_Scalar_t {
    pub data_type: Qnn_DataType_t,
    pub value: Qnn_ScalarValue_t,
}

/// The union inside [`Qnn_Scalar_t`].
#[repr(C)]
#[derive(Clone, Copy)]
pub union Qnn_ScalarValue_t {
    pub f32: f32,
    pub f64: f64,
    pub u64: u64,
    pub u32: u32,
    pub u16: u16,
    pub u8: u8,
    pub i64: i64,
    pub i32: i32,
    pub i16: i16,
    pub i8: i8,
    /// `QNN_DATATYPE_BOOL_8`: 0 or 1.
    pub bool8: u8,
}

impl Qnn_Scalar_t {
    /// A zeroed scalar of the given type; the constructors below fill the value.
    const fn zeroed(data_type: Qnn_DataType_t) -> Self {
        Self {
            data_type,
            value: Qnn_ScalarValue_t { u64: 0 },
        }
    }
    pub const fn f32(v: f32) -> Self {
        let mut s = Self::zeroed(QNN_DATATYPE_FLOAT_32);
        s.value.f32 = v;
        s
    }
    pub const fn u32(v: u32) -> Self {
        let mut s = Self::zeroed(QNN_DATATYPE_UINT_32);
        s.value.u32 = v;
        s
    }
    pub const fn i32(v: i32) -> Self {
        let mut s = Self::zeroed(QNN_DATATYPE_INT_32);
        s.value.i32 = v;
        s
    }
    pub const fn bool8(v: bool) -> Self {
        let mut s = Self::zeroed(QNN_DATATYPE_BOOL_8);
        s.value.bool8 = v as u8;
        s
    }
}

impl std::fmt::Debug for Qnn_Scalar_t {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: every union member is plain old data and the union was initialised through
        // one of the constructors (or by the library), so reading the 8 bytes as u64 is defined.
        let raw = unsafe { self.value.u64 };
        write!(
            f,
            "Qnn_Scalar_t {{ data_type: {:#x}, raw: {raw:#x} }}",
            self.data_type
        )
    }
}

/// `Qnn_ScaleOffset_t`: `real = scale * (quantized + offset)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Qnn_ScaleOffset_t {
    pub scale: f32,
    pub offset: i32,
}

/// `Qnn_AxisScaleOffset_t`: per-channel scale/offset along `axis`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Qnn_AxisScaleOffset_t {
    pub axis: i32,
    pub num_scale_offsets: u32,
    pub scale_offset: *mut Qnn_ScaleOffset_t,
}

/// `Qnn_BwScaleOffset_t`: scale/offset with an explicit bit width (e.g. 4-bit weights).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Qnn_BwScaleOffset_t {
    pub bitwidth: u32,
    pub scale: f32,
    pub offset: i32,
}

/// `Qnn_BwAxisScaleOffset_t`: the union's largest member (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Qnn_BwAxisScaleOffset_t {
    pub bitwidth: u32,
    pub axis: i32,
    pub num_elements: u32,
    pub scales: *mut f32,
    pub offsets: *mut i32,
}

/// The union inside [`Qnn_QuantizeParams_t`]. Block and vector encodings are pointer-based and
/// share the 32 bytes; tandem does not build them, so they are only reachable through `raw`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union Qnn_QuantizeEncoding_t {
    pub scale_offset: Qnn_ScaleOffset_t,
    pub axis_scale_offset: Qnn_AxisScaleOffset_t,
    pub bw_scale_offset: Qnn_BwScaleOffset_t,
    pub bw_axis_scale_offset: Qnn_BwAxisScaleOffset_t,
    pub raw: [u64; 4],
}

/// `Qnn_QuantizeParams_t` (40 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Qnn_QuantizeParams_t {
    pub encoding_definition: Qnn_Definition_t,
    pub quantization_encoding: Qnn_QuantizationEncoding_t,
    pub encoding: Qnn_QuantizeEncoding_t,
}

impl Qnn_QuantizeParams_t {
    /// Not quantized (floating-point and integer tensors).
    pub const UNDEFINED: Self = Self {
        encoding_definition: QNN_DEFINITION_UNDEFINED,
        quantization_encoding: QNN_QUANTIZATION_ENCODING_UNDEFINED,
        encoding: Qnn_QuantizeEncoding_t { raw: [0; 4] },
    };
    /// Per-tensor scale/offset.
    pub const fn scale_offset(scale: f32, offset: i32) -> Self {
        let mut q = Self::UNDEFINED;
        q.encoding_definition = QNN_DEFINITION_DEFINED;
        q.quantization_encoding = QNN_QUANTIZATION_ENCODING_SCALE_OFFSET;
        q.encoding.scale_offset = Qnn_ScaleOffset_t { scale, offset };
        q
    }
}

impl std::fmt::Debug for Qnn_QuantizeParams_t {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qnn_QuantizeParams_t")
            .field("encoding_definition", &self.encoding_definition)
            .field("quantization_encoding", &self.quantization_encoding)
            .finish_non_exhaustive()
    }
}

/// `Qnn_ClientBuffer_t`: caller-owned memory of `data_size` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Qnn_ClientBuffer_t {
    pub data: *mut c_void,
    pub data_size: u32,
}

impl Qnn_ClientBuffer_t {
    pub const EMPTY: Self = Self {
        data: std::ptr::null_mut(),
        data_size: 0,
    };
}

/// Where a tensor's data lives: a client buffer (`QNN_TENSORMEMTYPE_RAW`) or a registered
/// memory handle (`QNN_TENSORMEMTYPE_MEMHANDLE`).
#[repr(C)]
#[derive(Clone, Copy)]
pub union Qnn_TensorMemory_t {
    pub client_buf: Qnn_ClientBuffer_t,
    pub mem_handle: Qnn_MemHandle_t,
}

/// `Qnn_TensorV1_t` (112 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Qnn_TensorV1_t {
    /// Assigned by the library when the tensor is created; pass it back on every later use.
    pub id: u32,
    pub name: *const c_char,
    pub type_: Qnn_TensorType_t,
    pub data_format: Qnn_TensorDataFormat_t,
    pub data_type: Qnn_DataType_t,
    pub quantize_params: Qnn_QuantizeParams_t,
    pub rank: u32,
    pub dimensions: *mut u32,
    pub mem_type: Qnn_TensorMemType_t,
    pub memory: Qnn_TensorMemory_t,
}

/// `Qnn_SparseParams_t`: a type tag and the hybrid-COO numbers (12 bytes, 4-aligned).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Qnn_SparseParams_t {
    pub type_: u32,
    pub num_specified_elements: u32,
    pub num_sparse_dimensions: u32,
}

/// `Qnn_TensorV2_t` (136 bytes): v1's fields at the same offsets, then three more.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Qnn_TensorV2_t {
    pub id: u32,
    pub name: *const c_char,
    pub type_: Qnn_TensorType_t,
    pub data_format: Qnn_TensorDataFormat_t,
    pub data_type: Qnn_DataType_t,
    pub quantize_params: Qnn_QuantizeParams_t,
    pub rank: u32,
    pub dimensions: *mut u32,
    pub mem_type: Qnn_TensorMemType_t,
    pub memory: Qnn_TensorMemory_t,
    /// Null: no dynamic dimensions.
    pub is_dynamic_dimensions: *mut u8,
    pub sparse_params: Qnn_SparseParams_t,
    pub is_produced: u8,
}

/// The version union inside [`Qnn_Tensor_t`]; its v2 member fixes the 144-byte stride.
#[repr(C)]
#[derive(Clone, Copy)]
pub union Qnn_TensorVersions_t {
    pub v1: Qnn_TensorV1_t,
    pub v2: Qnn_TensorV2_t,
}

/// `Qnn_Tensor_t` (144 bytes). Arrays of tensors (graph inputs/outputs, op inputs) use this
/// stride even when only `v1` is filled.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Qnn_Tensor_t {
    pub version: Qnn_TensorVersion_t,
    pub v: Qnn_TensorVersions_t,
}

impl Qnn_Tensor_t {
    /// A v1 tensor; the tail of the v2 member is zeroed so both readings are defined.
    pub fn v1(v1: Qnn_TensorV1_t) -> Self {
        let mut v2 = Qnn_TensorV2_t {
            id: 0,
            name: std::ptr::null(),
            type_: 0,
            data_format: 0,
            data_type: 0,
            quantize_params: Qnn_QuantizeParams_t::UNDEFINED,
            rank: 0,
            dimensions: std::ptr::null_mut(),
            mem_type: 0,
            memory: Qnn_TensorMemory_t {
                client_buf: Qnn_ClientBuffer_t::EMPTY,
            },
            is_dynamic_dimensions: std::ptr::null_mut(),
            sparse_params: Qnn_SparseParams_t::default(),
            is_produced: 0,
        };
        v2.id = v1.id;
        v2.name = v1.name;
        v2.type_ = v1.type_;
        v2.data_format = v1.data_format;
        v2.data_type = v1.data_type;
        v2.quantize_params = v1.quantize_params;
        v2.rank = v1.rank;
        v2.dimensions = v1.dimensions;
        v2.mem_type = v1.mem_type;
        v2.memory = v1.memory;
        Self {
            version: QNN_TENSOR_VERSION_1,
            v: Qnn_TensorVersions_t { v2 },
        }
    }

    /// The fields v1 and v2 share (v2 starts with v1's layout).
    pub fn common(&self) -> &Qnn_TensorV1_t {
        // SAFETY: `Qnn_TensorV2_t` begins with exactly `Qnn_TensorV1_t`'s fields at the same
        // offsets (layout tests below), so the v1 view is valid for either version.
        unsafe { &self.v.v1 }
    }

    /// Mutable view of the shared fields.
    pub fn common_mut(&mut self) -> &mut Qnn_TensorV1_t {
        // SAFETY: as in `common`.
        unsafe { &mut self.v.v1 }
    }
}

/// The union inside [`Qnn_Param_t`].
#[repr(C)]
#[derive(Clone, Copy)]
pub union Qnn_ParamValue_t {
    pub scalar_param: Qnn_Scalar_t,
    pub tensor_param: Qnn_Tensor_t,
}

/// `Qnn_Param_t` (160 bytes): a named scalar or tensor parameter of an op.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Qnn_Param_t {
    pub param_type: Qnn_ParamType_t,
    pub name: *const c_char,
    pub value: Qnn_ParamValue_t,
}

/// `Qnn_OpConfigV1_t` (72 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Qnn_OpConfigV1_t {
    pub name: *const c_char,
    pub package_name: *const c_char,
    pub type_name: *const c_char,
    pub num_of_params: u32,
    pub params: *mut Qnn_Param_t,
    pub num_of_inputs: u32,
    pub input_tensors: *mut Qnn_Tensor_t,
    pub num_of_outputs: u32,
    pub output_tensors: *mut Qnn_Tensor_t,
}

/// `Qnn_OpConfig_t` (80 bytes). `graphAddNode` and `backendValidateOpConfig` take it by value.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Qnn_OpConfig_t {
    pub version: Qnn_OpConfigVersion_t,
    pub v1: Qnn_OpConfigV1_t,
}

// ---- profiling (`QnnProfile.h`) ----
pub type QnnProfile_Level_t = u32;
pub const QNN_PROFILE_LEVEL_BASIC: QnnProfile_Level_t = 1;
pub const QNN_PROFILE_LEVEL_DETAILED: QnnProfile_Level_t = 2;
/// Event ids are opaque 64-bit values owned by the profile object.
pub type QnnProfile_EventId_t = u64;
pub type QnnProfile_EventType_t = u32;
pub const QNN_PROFILE_EVENTTYPE_INIT: QnnProfile_EventType_t = 100;
pub const QNN_PROFILE_EVENTTYPE_FINALIZE: QnnProfile_EventType_t = 300;
pub const QNN_PROFILE_EVENTTYPE_EXECUTE: QnnProfile_EventType_t = 400;
pub const QNN_PROFILE_EVENTTYPE_NODE: QnnProfile_EventType_t = 404;
pub const QNN_PROFILE_EVENTTYPE_EXECUTE_QUEUE_WAIT: QnnProfile_EventType_t = 405;
pub const QNN_PROFILE_EVENTTYPE_EXECUTE_PREPROCESS: QnnProfile_EventType_t = 406;
pub const QNN_PROFILE_EVENTTYPE_EXECUTE_DEVICE: QnnProfile_EventType_t = 407;
pub const QNN_PROFILE_EVENTTYPE_EXECUTE_POSTPROCESS: QnnProfile_EventType_t = 408;
pub const QNN_PROFILE_EVENTTYPE_DEINIT: QnnProfile_EventType_t = 500;
/// Backend-defined event types start here (HTP's cycle counts are among them).
pub const QNN_PROFILE_EVENTTYPE_BACKEND: QnnProfile_EventType_t = 1000;
pub type QnnProfile_EventUnit_t = u32;
pub const QNN_PROFILE_EVENTUNIT_MICROSEC: QnnProfile_EventUnit_t = 1;
pub const QNN_PROFILE_EVENTUNIT_BYTES: QnnProfile_EventUnit_t = 2;
pub const QNN_PROFILE_EVENTUNIT_CYCLES: QnnProfile_EventUnit_t = 3;
pub const QNN_PROFILE_EVENTUNIT_COUNT: QnnProfile_EventUnit_t = 4;
pub const QNN_PROFILE_EVENTUNIT_BACKEND: QnnProfile_EventUnit_t = 1000;

/// `QnnProfile_EventData_t` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnProfile_EventData_t {
    pub type_: QnnProfile_EventType_t,
    pub unit: QnnProfile_EventUnit_t,
    pub value: u64,
    pub identifier: *const c_char,
}

#[cfg(test)]
mod layout {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn scalar_and_quantization() {
        assert_eq!(size_of::<Qnn_Scalar_t>(), 16);
        assert_eq!(offset_of!(Qnn_Scalar_t, value), 8);
        assert_eq!(size_of::<Qnn_ScaleOffset_t>(), 8);
        assert_eq!(offset_of!(Qnn_ScaleOffset_t, offset), 4);
        assert_eq!(size_of::<Qnn_QuantizeEncoding_t>(), 32);
        assert_eq!(size_of::<Qnn_QuantizeParams_t>(), 40);
        assert_eq!(offset_of!(Qnn_QuantizeParams_t, quantization_encoding), 4);
        assert_eq!(offset_of!(Qnn_QuantizeParams_t, encoding), 8);
        assert_eq!(size_of::<Qnn_ClientBuffer_t>(), 16);
        assert_eq!(offset_of!(Qnn_ClientBuffer_t, data_size), 8);
        assert_eq!(size_of::<Qnn_ApiVersion_t>(), 24);
    }

    #[test]
    fn tensors() {
        assert_eq!(size_of::<Qnn_TensorV1_t>(), 112);
        assert_eq!(offset_of!(Qnn_TensorV1_t, id), 0);
        assert_eq!(offset_of!(Qnn_TensorV1_t, name), 8);
        assert_eq!(offset_of!(Qnn_TensorV1_t, type_), 16);
        assert_eq!(offset_of!(Qnn_TensorV1_t, data_format), 20);
        assert_eq!(offset_of!(Qnn_TensorV1_t, data_type), 24);
        assert_eq!(offset_of!(Qnn_TensorV1_t, quantize_params), 32);
        assert_eq!(offset_of!(Qnn_TensorV1_t, rank), 72);
        assert_eq!(offset_of!(Qnn_TensorV1_t, dimensions), 80);
        assert_eq!(offset_of!(Qnn_TensorV1_t, mem_type), 88);
        assert_eq!(offset_of!(Qnn_TensorV1_t, memory), 96);

        assert_eq!(size_of::<Qnn_TensorV2_t>(), 136);
        assert_eq!(offset_of!(Qnn_TensorV2_t, id), 0);
        assert_eq!(offset_of!(Qnn_TensorV2_t, name), 8);
        assert_eq!(offset_of!(Qnn_TensorV2_t, type_), 16);
        assert_eq!(offset_of!(Qnn_TensorV2_t, data_format), 20);
        assert_eq!(offset_of!(Qnn_TensorV2_t, data_type), 24);
        assert_eq!(offset_of!(Qnn_TensorV2_t, quantize_params), 32);
        assert_eq!(offset_of!(Qnn_TensorV2_t, rank), 72);
        assert_eq!(offset_of!(Qnn_TensorV2_t, dimensions), 80);
        assert_eq!(offset_of!(Qnn_TensorV2_t, mem_type), 88);
        assert_eq!(offset_of!(Qnn_TensorV2_t, memory), 96);
        assert_eq!(offset_of!(Qnn_TensorV2_t, is_dynamic_dimensions), 112);
        assert_eq!(offset_of!(Qnn_TensorV2_t, sparse_params), 120);
        assert_eq!(size_of::<Qnn_SparseParams_t>(), 12);
        assert_eq!(offset_of!(Qnn_TensorV2_t, is_produced), 132);

        assert_eq!(size_of::<Qnn_Tensor_t>(), 144);
        assert_eq!(align_of::<Qnn_Tensor_t>(), 8);
        assert_eq!(offset_of!(Qnn_Tensor_t, v), 8);
    }

    #[test]
    fn params_and_op_config() {
        assert_eq!(size_of::<Qnn_Param_t>(), 160);
        assert_eq!(offset_of!(Qnn_Param_t, name), 8);
        assert_eq!(offset_of!(Qnn_Param_t, value), 16);
        assert_eq!(size_of::<Qnn_OpConfigV1_t>(), 72);
        assert_eq!(offset_of!(Qnn_OpConfigV1_t, package_name), 8);
        assert_eq!(offset_of!(Qnn_OpConfigV1_t, type_name), 16);
        assert_eq!(offset_of!(Qnn_OpConfigV1_t, num_of_params), 24);
        assert_eq!(offset_of!(Qnn_OpConfigV1_t, params), 32);
        assert_eq!(offset_of!(Qnn_OpConfigV1_t, num_of_inputs), 40);
        assert_eq!(offset_of!(Qnn_OpConfigV1_t, input_tensors), 48);
        assert_eq!(offset_of!(Qnn_OpConfigV1_t, num_of_outputs), 56);
        assert_eq!(offset_of!(Qnn_OpConfigV1_t, output_tensors), 64);
        assert_eq!(size_of::<Qnn_OpConfig_t>(), 80);
        assert_eq!(offset_of!(Qnn_OpConfig_t, v1), 8);
    }

    #[test]
    fn profile_event_data() {
        assert_eq!(size_of::<QnnProfile_EventData_t>(), 24);
        assert_eq!(offset_of!(QnnProfile_EventData_t, unit), 4);
        assert_eq!(offset_of!(QnnProfile_EventData_t, value), 8);
        assert_eq!(offset_of!(QnnProfile_EventData_t, identifier), 16);
    }

    #[test]
    fn scalar_constructors_fill_the_union() {
        let s = Qnn_Scalar_t::f32(1.5);
        assert_eq!(s.data_type, QNN_DATATYPE_FLOAT_32);
        // SAFETY: written as f32 by the constructor.
        assert_eq!(unsafe { s.value.f32 }, 1.5);
        assert_eq!(data_type_size(QNN_DATATYPE_FLOAT_16), Some(2));
        assert_eq!(data_type_size(QNN_DATATYPE_UFIXED_POINT_4), None);
        assert_eq!(error_code(0x0001_0000_0000_177B), 6011);
    }
}
