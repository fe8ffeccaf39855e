//! `QnnInterface_t`: the provider record and the core API 2.40 function table, by value.
//!
//! Slot order is the one measured against `libQnnHtp.so` (QNN_ABI_FACTS.md). Slots tandem calls
//! are typed; the rest are `OpaqueFn` placeholders that keep every later offset right. Older SDKs
//! (early 2.x) lack slots 2, 16, 29 and 33, which shifts everything after them, so the loader
//! checks the provider's core API version before anyone touches the table.
//!
//! Size: this library fills 75 function slots (0–74 point into `libQnnHtp.so`'s code; what
//! follows is unrelated heap memory), so the interface is 40 + 75 × 8 = 640 bytes. We only ever
//! read it through the pointer the library returns, never allocate or copy arrays of it.

use std::ffi::{c_char, c_void};

use crate::config::{
    QnnBackend_Config_t, QnnContext_Config_t, QnnDevice_Config_t, QnnGraph_Config_t,
};
use crate::types::*;

/// A slot tandem does not call; typed only so the table keeps its layout.
pub type OpaqueFn = Option<unsafe extern "C" fn()>;

/// Number of function slots in the core API 2.40 table.
pub const QNN_INTERFACE_V2_40_SLOTS: usize = 75;

/// The core API 2.40 function table (`QNN_INTERFACE_VER_TYPE`). Every slot may be null.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnInterface_ImplementationV2_40_t {
    /* 0 */ pub property_has_capability: OpaqueFn,
    /* 1 */
    pub backend_create: Option<
        unsafe extern "C" fn(
            logger: Qnn_LogHandle_t,
            config: *const *const QnnBackend_Config_t,
            backend: *mut Qnn_BackendHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 2 */
    pub backend_set_config: Option<
        unsafe extern "C" fn(
            backend: Qnn_BackendHandle_t,
            config: *const *const QnnBackend_Config_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 3 */
    pub backend_get_api_version:
        Option<unsafe extern "C" fn(version: *mut Qnn_ApiVersion_t) -> Qnn_ErrorHandle_t>,
    /* 4 */
    pub backend_get_build_id:
        Option<unsafe extern "C" fn(id: *mut *const c_char) -> Qnn_ErrorHandle_t>,
    /* 5 */ pub backend_register_op_package: OpaqueFn,
    /* 6 */ pub backend_get_supported_operations: OpaqueFn,
    /* 7 */
    pub backend_validate_op_config: Option<
        unsafe extern "C" fn(backend: Qnn_BackendHandle_t, op: Qnn_OpConfig_t) -> Qnn_ErrorHandle_t,
    >,
    /* 8 */
    pub backend_free:
        Option<unsafe extern "C" fn(backend: Qnn_BackendHandle_t) -> Qnn_ErrorHandle_t>,
    /* 9 */
    pub context_create: Option<
        unsafe extern "C" fn(
            backend: Qnn_BackendHandle_t,
            device: Qnn_DeviceHandle_t,
            config: *const *const QnnContext_Config_t,
            context: *mut Qnn_ContextHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 10 */
    pub context_set_config: Option<
        unsafe extern "C" fn(
            context: Qnn_ContextHandle_t,
            config: *const *const QnnContext_Config_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 11 */
    pub context_get_binary_size: Option<
        unsafe extern "C" fn(
            context: Qnn_ContextHandle_t,
            size: *mut Qnn_ContextBinarySize_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 12 */
    pub context_get_binary: Option<
        unsafe extern "C" fn(
            context: Qnn_ContextHandle_t,
            buffer: *mut c_void,
            buffer_size: Qnn_ContextBinarySize_t,
            written: *mut Qnn_ContextBinarySize_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 13 */
    pub context_create_from_binary: Option<
        unsafe extern "C" fn(
            backend: Qnn_BackendHandle_t,
            device: Qnn_DeviceHandle_t,
            config: *const *const QnnContext_Config_t,
            binary: *const c_void,
            binary_size: Qnn_ContextBinarySize_t,
            context: *mut Qnn_ContextHandle_t,
            profile: Qnn_ProfileHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 14 */
    pub context_free: Option<
        unsafe extern "C" fn(
            context: Qnn_ContextHandle_t,
            profile: Qnn_ProfileHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 15 */
    pub graph_create: Option<
        unsafe extern "C" fn(
            context: Qnn_ContextHandle_t,
            name: *const c_char,
            config: *const *const QnnGraph_Config_t,
            graph: *mut Qnn_GraphHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 16 */ pub graph_create_subgraph: OpaqueFn,
    /* 17 */
    pub graph_set_config: Option<
        unsafe extern "C" fn(
            graph: Qnn_GraphHandle_t,
            config: *const *const QnnGraph_Config_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 18 */
    pub graph_add_node: Option<
        unsafe extern "C" fn(graph: Qnn_GraphHandle_t, op: Qnn_OpConfig_t) -> Qnn_ErrorHandle_t,
    >,
    /* 19 */
    pub graph_finalize: Option<
        unsafe extern "C" fn(
            graph: Qnn_GraphHandle_t,
            profile: Qnn_ProfileHandle_t,
            signal: Qnn_SignalHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 20 */
    pub graph_retrieve: Option<
        unsafe extern "C" fn(
            context: Qnn_ContextHandle_t,
            name: *const c_char,
            graph: *mut Qnn_GraphHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 21 */
    pub graph_execute: Option<
        unsafe extern "C" fn(
            graph: Qnn_GraphHandle_t,
            inputs: *const Qnn_Tensor_t,
            num_inputs: u32,
            outputs: *mut Qnn_Tensor_t,
            num_outputs: u32,
            profile: Qnn_ProfileHandle_t,
            signal: Qnn_SignalHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 22 */ pub graph_execute_async: OpaqueFn,
    /* 23 */
    pub tensor_create_context_tensor: Option<
        unsafe extern "C" fn(
            context: Qnn_ContextHandle_t,
            tensor: *mut Qnn_Tensor_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 24 */
    pub tensor_create_graph_tensor: Option<
        unsafe extern "C" fn(
            graph: Qnn_GraphHandle_t,
            tensor: *mut Qnn_Tensor_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 25 */
    pub log_create: Option<
        unsafe extern "C" fn(
            callback: QnnLog_Callback_t,
            max_level: QnnLog_Level_t,
            logger: *mut Qnn_LogHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 26 */
    pub log_set_log_level: Option<
        unsafe extern "C" fn(
            logger: Qnn_LogHandle_t,
            max_level: QnnLog_Level_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 27 */
    pub log_free: Option<unsafe extern "C" fn(logger: Qnn_LogHandle_t) -> Qnn_ErrorHandle_t>,
    /* 28 */
    pub profile_create: Option<
        unsafe extern "C" fn(
            backend: Qnn_BackendHandle_t,
            level: QnnProfile_Level_t,
            profile: *mut Qnn_ProfileHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 29 */ pub profile_set_config: OpaqueFn,
    /* 30 */
    pub profile_get_events: Option<
        unsafe extern "C" fn(
            profile: Qnn_ProfileHandle_t,
            events: *mut *const QnnProfile_EventId_t,
            num_events: *mut u32,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 31 */
    pub profile_get_sub_events: Option<
        unsafe extern "C" fn(
            event: QnnProfile_EventId_t,
            sub_events: *mut *const QnnProfile_EventId_t,
            num_sub_events: *mut u32,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 32 */
    pub profile_get_event_data: Option<
        unsafe extern "C" fn(
            event: QnnProfile_EventId_t,
            data: *mut QnnProfile_EventData_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 33 */ pub profile_get_extended_event_data: OpaqueFn,
    /* 34 */
    pub profile_free:
        Option<unsafe extern "C" fn(profile: Qnn_ProfileHandle_t) -> Qnn_ErrorHandle_t>,
    /* 35 */ pub mem_register: OpaqueFn,
    /* 36 */ pub mem_de_register: OpaqueFn,
    /* 37 */ pub device_get_platform_info: OpaqueFn,
    /* 38 */ pub device_free_platform_info: OpaqueFn,
    /* 39 */
    pub device_get_infrastructure: Option<crate::perf::DeviceGetInfrastructureFn>,
    /* 40 */
    pub device_create: Option<
        unsafe extern "C" fn(
            logger: Qnn_LogHandle_t,
            config: *const *const QnnDevice_Config_t,
            device: *mut Qnn_DeviceHandle_t,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 41 */ pub device_set_config: OpaqueFn,
    /* 42 */ pub device_get_info: OpaqueFn,
    /* 43 */
    pub device_free: Option<unsafe extern "C" fn(device: Qnn_DeviceHandle_t) -> Qnn_ErrorHandle_t>,
    /* 44 */ pub signal_create: OpaqueFn,
    /* 45 */ pub signal_set_config: OpaqueFn,
    /* 46 */ pub signal_trigger: OpaqueFn,
    /* 47 */ pub signal_free: OpaqueFn,
    /* 48 */
    pub error_get_message: Option<
        unsafe extern "C" fn(
            error: Qnn_ErrorHandle_t,
            message: *mut *const c_char,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 49 */
    pub error_get_verbose_message: Option<
        unsafe extern "C" fn(
            error: Qnn_ErrorHandle_t,
            message: *mut *const c_char,
        ) -> Qnn_ErrorHandle_t,
    >,
    /* 50 */
    pub error_free_verbose_message:
        Option<unsafe extern "C" fn(message: *const c_char) -> Qnn_ErrorHandle_t>,
    /* 51 */ pub graph_prepare_execution_environment: OpaqueFn,
    /* 52 */ pub graph_release_execution_environment: OpaqueFn,
    /* 53 */ pub graph_get_property: OpaqueFn,
    /* 54 */ pub context_validate_binary: OpaqueFn,
    /* 55 */ pub context_create_from_binary_with_signal: OpaqueFn,
    /* 56 */ pub context_create_from_binary_list_async: OpaqueFn,
    /* 57 */ pub tensor_update_graph_tensors: OpaqueFn,
    /* 58 */ pub tensor_update_context_tensors: OpaqueFn,
    /* 59 */ pub context_get_binary_section_size: OpaqueFn,
    /* 60 */ pub context_get_binary_section: OpaqueFn,
    /* 61 */ pub context_apply_binary_section: OpaqueFn,
    /* 62 */ pub backend_get_property: OpaqueFn,
    /* 63 */ pub context_get_property: OpaqueFn,
    /* 64 */ pub context_get_incremental_binary: OpaqueFn,
    /* 65 */ pub context_release_incremental_binary: OpaqueFn,
    /* 66 */ pub context_finalize: OpaqueFn,
    /* 67 */ pub global_config_set: OpaqueFn,
    /* 68 */ pub context_create_from_binary_with_callback: OpaqueFn,
    /// Slots 69–74: present and non-null in the 2.40 library, names not established here.
    pub reserved_69_74: [OpaqueFn; 6],
}

/// `QnnInterface_t`: one provider of a backend library.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnInterface_t {
    pub backend_id: u32,
    /// NUL-terminated, owned by the library; may be null.
    pub provider_name: *const c_char,
    pub api_version: Qnn_ApiVersion_t,
    /// The table for the core API version in `api_version` (see the module docs).
    pub v2_40: QnnInterface_ImplementationV2_40_t,
}

/// `QnnInterface_getProviders(const QnnInterface_t*** providers, uint32_t* count)`.
pub type QnnInterface_getProviders_t = unsafe extern "C" fn(
    providers: *mut *const *const QnnInterface_t,
    count: *mut u32,
) -> Qnn_ErrorHandle_t;

/// The exported symbol name of [`QnnInterface_getProviders_t`], NUL-terminated for libloading.
pub const QNN_INTERFACE_GET_PROVIDERS: &[u8] = b"QnnInterface_getProviders\0";

#[cfg(test)]
mod layout {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn interface_and_table() {
        assert_eq!(offset_of!(QnnInterface_t, provider_name), 8);
        assert_eq!(offset_of!(QnnInterface_t, api_version), 16);
        assert_eq!(offset_of!(QnnInterface_t, v2_40), 40);
        assert_eq!(
            size_of::<QnnInterface_ImplementationV2_40_t>(),
            QNN_INTERFACE_V2_40_SLOTS * 8
        );
        assert_eq!(size_of::<QnnInterface_t>(), 640);
        type T = QnnInterface_ImplementationV2_40_t;
        // Spot-check the slots whose position moved between SDK generations and every slot
        // tandem calls.
        let slots = [
            (offset_of!(T, backend_create), 1),
            (offset_of!(T, backend_set_config), 2),
            (offset_of!(T, backend_get_api_version), 3),
            (offset_of!(T, backend_get_build_id), 4),
            (offset_of!(T, backend_validate_op_config), 7),
            (offset_of!(T, backend_free), 8),
            (offset_of!(T, context_create), 9),
            (offset_of!(T, context_get_binary_size), 11),
            (offset_of!(T, context_get_binary), 12),
            (offset_of!(T, context_create_from_binary), 13),
            (offset_of!(T, context_free), 14),
            (offset_of!(T, graph_create), 15),
            (offset_of!(T, graph_create_subgraph), 16),
            (offset_of!(T, graph_set_config), 17),
            (offset_of!(T, graph_add_node), 18),
            (offset_of!(T, graph_finalize), 19),
            (offset_of!(T, graph_retrieve), 20),
            (offset_of!(T, graph_execute), 21),
            (offset_of!(T, tensor_create_context_tensor), 23),
            (offset_of!(T, tensor_create_graph_tensor), 24),
            (offset_of!(T, log_create), 25),
            (offset_of!(T, log_free), 27),
            (offset_of!(T, profile_create), 28),
            (offset_of!(T, profile_set_config), 29),
            (offset_of!(T, profile_get_events), 30),
            (offset_of!(T, profile_get_sub_events), 31),
            (offset_of!(T, profile_get_event_data), 32),
            (offset_of!(T, profile_get_extended_event_data), 33),
            (offset_of!(T, profile_free), 34),
            (offset_of!(T, mem_register), 35),
            (offset_of!(T, device_get_infrastructure), 39),
            (offset_of!(T, device_create), 40),
            (offset_of!(T, device_free), 43),
            (offset_of!(T, signal_free), 47),
            (offset_of!(T, error_get_message), 48),
            (offset_of!(T, error_free_verbose_message), 50),
            (offset_of!(T, graph_get_property), 53),
            (offset_of!(T, context_get_binary_section_size), 59),
            (offset_of!(T, context_finalize), 66),
            (offset_of!(T, context_create_from_binary_with_callback), 68),
            (offset_of!(T, reserved_69_74), 69),
        ];
        for (offset, slot) in slots {
            assert_eq!(offset, slot * 8, "slot {slot}");
        }
    }
}
