//! Compares the hand-written layouts with bindings bindgen generated from the QNN SDK headers
//! (feature `bindgen` plus `QNN_SDK_ROOT` or `<TARGET>_QNN_SDK_ROOT`; see build.rs). With the
//! feature on but no SDK found, this fails rather than passing silently.
//!
//! Field names on the bindgen side are the SDK's (camelCase; `type` becomes `type_`). This
//! file's comparisons only compile when bindings exist, which is not the case on the project's
//! machines (no SDK), so they were written but never compiled here.
#![cfg(feature = "bindgen")]

#[test]
fn sdk_bindings_were_generated() {
    let present = std::hint::black_box(sys_qnn::SDK_BINDINGS_PRESENT);
    assert!(
        present,
        "feature `bindgen` is on but no SDK bindings were generated: set {} (or \
         <TARGET>{}) to an SDK root with include/QNN/QnnInterface.h",
        sys_qnn::BINDGEN_ENV_SDK_ROOT,
        sys_qnn::BINDGEN_ENV_TARGET_SDK_ROOT_SUFFIX
    );
    assert_eq!(cfg!(qnn_sdk_bindings), sys_qnn::SDK_BINDINGS_PRESENT);
}

#[cfg(qnn_sdk_bindings)]
mod compare {
    use std::mem::{offset_of, size_of};
    use sys_qnn::sdk_bindings as sdk;
    use sys_qnn::system as ours_sys;
    use sys_qnn::types as ours;

    #[test]
    fn sizes_match() {
        assert_eq!(
            size_of::<ours::Qnn_Scalar_t>(),
            size_of::<sdk::Qnn_Scalar_t>()
        );
        assert_eq!(
            size_of::<ours::Qnn_QuantizeParams_t>(),
            size_of::<sdk::Qnn_QuantizeParams_t>()
        );
        assert_eq!(
            size_of::<ours::Qnn_ClientBuffer_t>(),
            size_of::<sdk::Qnn_ClientBuffer_t>()
        );
        assert_eq!(
            size_of::<ours::Qnn_TensorV1_t>(),
            size_of::<sdk::Qnn_TensorV1_t>()
        );
        assert_eq!(
            size_of::<ours::Qnn_TensorV2_t>(),
            size_of::<sdk::Qnn_TensorV2_t>()
        );
        assert_eq!(
            size_of::<ours::Qnn_Tensor_t>(),
            size_of::<sdk::Qnn_Tensor_t>()
        );
        assert_eq!(
            size_of::<ours::Qnn_Param_t>(),
            size_of::<sdk::Qnn_Param_t>()
        );
        assert_eq!(
            size_of::<ours::Qnn_OpConfigV1_t>(),
            size_of::<sdk::Qnn_OpConfigV1_t>()
        );
        assert_eq!(
            size_of::<ours::Qnn_OpConfig_t>(),
            size_of::<sdk::Qnn_OpConfig_t>()
        );
        assert_eq!(
            size_of::<ours::QnnProfile_EventData_t>(),
            size_of::<sdk::QnnProfile_EventData_t>()
        );
        assert_eq!(
            size_of::<sys_qnn::interface::QnnInterface_t>(),
            size_of::<sdk::QnnInterface_t>(),
            "function table length differs from the SDK's"
        );
        assert_eq!(
            size_of::<ours_sys::QnnSystemContext_GraphInfo_t>(),
            size_of::<sdk::QnnSystemContext_GraphInfo_t>()
        );
    }

    #[test]
    fn offsets_match() {
        macro_rules! same {
            ($ours:ty, $of:ident, $sdk:ty, $sf:ident) => {
                assert_eq!(
                    offset_of!($ours, $of),
                    offset_of!($sdk, $sf),
                    concat!(stringify!($ours), ".", stringify!($of))
                );
            };
        }
        same!(ours::Qnn_TensorV1_t, name, sdk::Qnn_TensorV1_t, name);
        same!(ours::Qnn_TensorV1_t, type_, sdk::Qnn_TensorV1_t, type_);
        same!(
            ours::Qnn_TensorV1_t,
            data_type,
            sdk::Qnn_TensorV1_t,
            dataType
        );
        same!(
            ours::Qnn_TensorV1_t,
            quantize_params,
            sdk::Qnn_TensorV1_t,
            quantizeParams
        );
        same!(ours::Qnn_TensorV1_t, rank, sdk::Qnn_TensorV1_t, rank);
        same!(
            ours::Qnn_TensorV1_t,
            dimensions,
            sdk::Qnn_TensorV1_t,
            dimensions
        );
        same!(ours::Qnn_TensorV1_t, mem_type, sdk::Qnn_TensorV1_t, memType);
        same!(
            ours::Qnn_TensorV2_t,
            is_dynamic_dimensions,
            sdk::Qnn_TensorV2_t,
            isDynamicDimensions
        );
        same!(
            ours::Qnn_TensorV2_t,
            sparse_params,
            sdk::Qnn_TensorV2_t,
            sparseParams
        );
        same!(
            ours::Qnn_TensorV2_t,
            is_produced,
            sdk::Qnn_TensorV2_t,
            isProduced
        );
        same!(
            ours::Qnn_OpConfigV1_t,
            params,
            sdk::Qnn_OpConfigV1_t,
            params
        );
        same!(
            ours::Qnn_OpConfigV1_t,
            input_tensors,
            sdk::Qnn_OpConfigV1_t,
            inputTensors
        );
        same!(
            ours::Qnn_OpConfigV1_t,
            output_tensors,
            sdk::Qnn_OpConfigV1_t,
            outputTensors
        );
        same!(
            ours::QnnProfile_EventData_t,
            value,
            sdk::QnnProfile_EventData_t,
            value
        );
        same!(
            ours::QnnProfile_EventData_t,
            identifier,
            sdk::QnnProfile_EventData_t,
            identifier
        );
        same!(
            sys_qnn::interface::QnnInterface_t,
            api_version,
            sdk::QnnInterface_t,
            apiVersion
        );
    }
}
