//! The System interface of `libQnnSystem.so`: reading a serialized context binary's metadata
//! (graphs and their input/output tensors) without creating a context.
//!
//! Layouts measured against `libQnnSystem.so` from the `onnxruntime-qnn` 2.7.0 wheel (see the
//! real-library tests): `QnnSystemInterface_getProviders` returns one provider,
//! `SYSTEM_QTI_AISW`, backend id 0, system API **1.15.0**, its table at offset 32 (the word at 24
//! is padding) with at least 22 non-null slots, of which the first 16 are declared here (we only
//! read the table through the library's pointer). `getMetadata` on a 2.40 HTP context binary
//! returns binary info **version 3**, read correctly through the structs below: graph names,
//! tensor ids, names, shapes and types match what the graphs were built with, for one- and
//! two-graph contexts (the latter checks the 88-byte graph-info stride).

use std::ffi::{c_char, c_void};

use crate::interface::OpaqueFn;
use crate::types::*;

pub type QnnSystemContext_Handle_t = *mut c_void;

/// The first 16 slots of the System interface table (the 1.15 library has more after them).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnSystemInterface_ImplementationV1_t {
    /* 0 */
    pub system_context_create:
        Option<unsafe extern "C" fn(handle: *mut QnnSystemContext_Handle_t) -> Qnn_ErrorHandle_t>,
    /* 1 */
    pub system_context_get_binary_info: Option<
        unsafe extern "C" fn(
            handle: QnnSystemContext_Handle_t,
            binary: *mut c_void,
            binary_size: u64,
            info: *mut *const QnnSystemContext_BinaryInfo_t,
            info_size: *mut Qnn_ContextBinarySize_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 2 */
    pub system_context_get_metadata: Option<
        unsafe extern "C" fn(
            handle: QnnSystemContext_Handle_t,
            binary: *const c_void,
            binary_size: u64,
            info: *mut *const QnnSystemContext_BinaryInfo_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 3 */
    pub system_context_free:
        Option<unsafe extern "C" fn(handle: QnnSystemContext_Handle_t) -> Qnn_ErrorHandle_t>,
    /* 4 */ pub system_tensor_get_memory_footprint: OpaqueFn,
    /* 5 */ pub system_log_create: OpaqueFn,
    /* 6 */ pub system_log_set_log_level: OpaqueFn,
    /* 7 */ pub system_log_free: OpaqueFn,
    /* 8 */ pub system_dlc_create_from_file: OpaqueFn,
    /* 9 */ pub system_dlc_create_from_binary: OpaqueFn,
    /* 10 */ pub system_dlc_compose_graphs: OpaqueFn,
    /* 11 */ pub system_dlc_get_op_mappings: OpaqueFn,
    /* 12 */ pub system_dlc_free: OpaqueFn,
    /* 13 */ pub system_profile_create_serialization_target: OpaqueFn,
    /* 14 */ pub system_profile_serialize_event_data: OpaqueFn,
    /* 15 */ pub system_profile_free_serialization_target: OpaqueFn,
}

/// `QnnSystemInterface_t`: note the single `Qnn_Version_t` (12 bytes), so the table is at 32.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnSystemInterface_t {
    pub backend_id: u32,
    pub provider_name: *const c_char,
    pub system_api_version: Qnn_Version_t,
    pub v1: QnnSystemInterface_ImplementationV1_t,
}

pub type QnnSystemInterface_getProviders_t = unsafe extern "C" fn(
    providers: *mut *const *const QnnSystemInterface_t,
    count: *mut u32,
) -> Qnn_ErrorHandle_t;
pub const QNN_SYSTEM_INTERFACE_GET_PROVIDERS: &[u8] = b"QnnSystemInterface_getProviders\0";

pub const QNN_SYSTEM_CONTEXT_GRAPH_INFO_VERSION_1: u32 = 1;
pub const QNN_SYSTEM_CONTEXT_GRAPH_INFO_VERSION_2: u32 = 2;
pub const QNN_SYSTEM_CONTEXT_GRAPH_INFO_VERSION_3: u32 = 3;
pub const QNN_SYSTEM_CONTEXT_BINARY_INFO_VERSION_1: u32 = 1;
pub const QNN_SYSTEM_CONTEXT_BINARY_INFO_VERSION_2: u32 = 2;
pub const QNN_SYSTEM_CONTEXT_BINARY_INFO_VERSION_3: u32 = 3;

/// Graph info v1 (40 bytes). v2 and v3 start with the same fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnSystemContext_GraphInfoV1_t {
    pub graph_name: *const c_char,
    pub num_graph_inputs: u32,
    pub graph_inputs: *mut Qnn_Tensor_t,
    pub num_graph_outputs: u32,
    pub graph_outputs: *mut Qnn_Tensor_t,
}

/// Graph info v3 (80 bytes): v1's fields, updateable tensors, a backend blob, op index range.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnSystemContext_GraphInfoV3_t {
    pub graph_name: *const c_char,
    pub num_graph_inputs: u32,
    pub graph_inputs: *mut Qnn_Tensor_t,
    pub num_graph_outputs: u32,
    pub graph_outputs: *mut Qnn_Tensor_t,
    pub num_updateable_tensors: u32,
    pub updateable_tensors: *mut Qnn_Tensor_t,
    pub graph_blob_info_size: u32,
    pub graph_blob_info: *mut c_void,
    pub start_op_index: u32,
    pub end_op_index: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union QnnSystemContext_GraphInfoVersions_t {
    pub v1: QnnSystemContext_GraphInfoV1_t,
    pub v3: QnnSystemContext_GraphInfoV3_t,
}

/// `QnnSystemContext_GraphInfo_t` (88 bytes: version, union @8). Arrays of it use this stride;
/// measured with a two-graph context (the second graph's name is read at +88).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QnnSystemContext_GraphInfo_t {
    pub version: u32,
    pub v: QnnSystemContext_GraphInfoVersions_t,
}

/// Binary info v1 (128 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnSystemContext_BinaryInfoV1_t {
    pub backend_id: u32,
    pub build_id: *const c_char,
    pub core_api_version: Qnn_Version_t,
    pub backend_api_version: Qnn_Version_t,
    pub soc_version: *const c_char,
    pub hw_info_blob_version: Qnn_Version_t,
    pub context_blob_version: Qnn_Version_t,
    pub hw_info_blob_size: u32,
    pub hw_info_blob: *mut c_void,
    pub context_blob_size: u64,
    pub num_context_tensors: u32,
    pub context_tensors: *mut Qnn_Tensor_t,
    pub num_graphs: u32,
    pub graphs: *mut QnnSystemContext_GraphInfo_t,
}

/// Binary info v2 (136 bytes): v1 plus a platform-info pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnSystemContext_BinaryInfoV2_t {
    pub v1: QnnSystemContext_BinaryInfoV1_t,
    pub platform_info: *mut c_void,
}

/// Binary info v3 (136 bytes): drops the hardware-info blob fields of v1/v2, adds metadata and
/// the SoC model. This is what the 2.40 library returns for HTP context binaries.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnSystemContext_BinaryInfoV3_t {
    pub backend_id: u32,
    pub build_id: *const c_char,
    pub core_api_version: Qnn_Version_t,
    pub backend_api_version: Qnn_Version_t,
    pub soc_version: *const c_char,
    pub context_blob_version: Qnn_Version_t,
    pub context_blob_size: u64,
    pub num_context_tensors: u32,
    pub context_tensors: *mut Qnn_Tensor_t,
    pub num_graphs: u32,
    pub graphs: *mut QnnSystemContext_GraphInfo_t,
    pub platform_info: *mut c_void,
    pub context_metadata_size: u32,
    pub context_metadata: *mut c_void,
    pub soc_model: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union QnnSystemContext_BinaryInfoVersions_t {
    pub v1: QnnSystemContext_BinaryInfoV1_t,
    pub v2: QnnSystemContext_BinaryInfoV2_t,
    pub v3: QnnSystemContext_BinaryInfoV3_t,
}

/// `QnnSystemContext_BinaryInfo_t`: version, union @8.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QnnSystemContext_BinaryInfo_t {
    pub version: u32,
    pub v: QnnSystemContext_BinaryInfoVersions_t,
}

#[cfg(test)]
mod layout {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn system_interface() {
        assert_eq!(offset_of!(QnnSystemInterface_t, provider_name), 8);
        assert_eq!(offset_of!(QnnSystemInterface_t, system_api_version), 16);
        assert_eq!(offset_of!(QnnSystemInterface_t, v1), 32);
        assert_eq!(size_of::<QnnSystemInterface_ImplementationV1_t>(), 16 * 8);
        assert_eq!(size_of::<QnnSystemInterface_t>(), 160);
    }

    #[test]
    fn graph_info() {
        type G1 = QnnSystemContext_GraphInfoV1_t;
        assert_eq!(size_of::<G1>(), 40);
        assert_eq!(offset_of!(G1, num_graph_inputs), 8);
        assert_eq!(offset_of!(G1, graph_inputs), 16);
        assert_eq!(offset_of!(G1, num_graph_outputs), 24);
        assert_eq!(offset_of!(G1, graph_outputs), 32);
        type G3 = QnnSystemContext_GraphInfoV3_t;
        assert_eq!(size_of::<G3>(), 80);
        assert_eq!(offset_of!(G3, num_updateable_tensors), 40);
        assert_eq!(offset_of!(G3, updateable_tensors), 48);
        assert_eq!(offset_of!(G3, graph_blob_info_size), 56);
        assert_eq!(offset_of!(G3, graph_blob_info), 64);
        assert_eq!(offset_of!(G3, start_op_index), 72);
        assert_eq!(offset_of!(G3, end_op_index), 76);
        assert_eq!(size_of::<QnnSystemContext_GraphInfo_t>(), 88);
        assert_eq!(offset_of!(QnnSystemContext_GraphInfo_t, v), 8);
    }

    #[test]
    fn binary_info() {
        type B1 = QnnSystemContext_BinaryInfoV1_t;
        assert_eq!(offset_of!(B1, build_id), 8);
        assert_eq!(offset_of!(B1, core_api_version), 16);
        assert_eq!(offset_of!(B1, backend_api_version), 28);
        assert_eq!(offset_of!(B1, soc_version), 40);
        assert_eq!(offset_of!(B1, hw_info_blob_version), 48);
        assert_eq!(offset_of!(B1, context_blob_version), 60);
        assert_eq!(offset_of!(B1, hw_info_blob_size), 72);
        assert_eq!(offset_of!(B1, hw_info_blob), 80);
        assert_eq!(offset_of!(B1, context_blob_size), 88);
        assert_eq!(offset_of!(B1, num_context_tensors), 96);
        assert_eq!(offset_of!(B1, context_tensors), 104);
        assert_eq!(offset_of!(B1, num_graphs), 112);
        assert_eq!(offset_of!(B1, graphs), 120);
        assert_eq!(size_of::<B1>(), 128);
        assert_eq!(size_of::<QnnSystemContext_BinaryInfoV2_t>(), 136);
        type B3 = QnnSystemContext_BinaryInfoV3_t;
        assert_eq!(offset_of!(B3, soc_version), 40);
        assert_eq!(offset_of!(B3, context_blob_version), 48);
        assert_eq!(offset_of!(B3, context_blob_size), 64);
        assert_eq!(offset_of!(B3, num_context_tensors), 72);
        assert_eq!(offset_of!(B3, context_tensors), 80);
        assert_eq!(offset_of!(B3, num_graphs), 88);
        assert_eq!(offset_of!(B3, graphs), 96);
        assert_eq!(offset_of!(B3, platform_info), 104);
        assert_eq!(offset_of!(B3, context_metadata_size), 112);
        assert_eq!(offset_of!(B3, context_metadata), 120);
        assert_eq!(offset_of!(B3, soc_model), 128);
        assert_eq!(size_of::<B3>(), 136);
        assert_eq!(offset_of!(QnnSystemContext_BinaryInfo_t, v), 8);
        assert_eq!(size_of::<QnnSystemContext_BinaryInfo_t>(), 144);
    }
}
