//! Config structs passed to backend, device, context and graph creation, and the HTP-specific
//! custom configs they point at.
//!
//! Each generic config is `{ option: u32, union }`; option 0 is always CUSTOM, whose union member
//! is an untyped pointer to a backend-specific struct (here: the HTP ones). The creating call
//! takes a NULL-terminated array of pointers to configs.
//!
//! Verification status against `libQnnHtp.so` 2.40 (see the real-library tests):
//! - **verified** (the library's behaviour or log changes with the value we set):
//!   context custom config weight sharing (a two-graph binary keeps one weight copy);
//!   HTP device SoC model, union @8 (57 accepted and logged as arch 75, 12345 refused);
//!   HTP graph VTCM size = option 3, u32 @8 (4096 MB refused: "vtcmSizeInMB: 4096 … overflow";
//!   8 silences the default-VTCM warnings); NUM_HVX_THREADS = option 6 (silences
//!   "Sanitizing the value for hvx_threads").
//! - *unverified*: the rest. The library accepts precision (option 2) and optimization
//!   (option 1) silently, but also accepts bogus values for them and unknown options, and on the
//!   simulator fp32 and fp16 precision give identical results, so neither value can be confirmed
//!   here.

use std::ffi::c_void;

/// `QnnBackend_Config_t`: tandem passes none; declared for completeness.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnBackend_Config_t {
    pub option: u32,
    pub custom_config: *mut c_void,
}
pub const QNN_BACKEND_CONFIG_OPTION_CUSTOM: u32 = 0;

// ---- device ----

/// `QnnDevice_Config_t`: option CUSTOM (0) points at a [`QnnHtpDevice_CustomConfig_t`];
/// PLATFORM_INFO (1) at a `QnnDevice_PlatformInfo_t` (not declared here).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnDevice_Config_t {
    pub option: u32,
    pub custom_config: *mut c_void,
}
pub const QNN_DEVICE_CONFIG_OPTION_CUSTOM: u32 = 0;
/// *Unverified.*
pub const QNN_DEVICE_CONFIG_OPTION_PLATFORM_INFO: u32 = 1;

/// `QnnHtpDevice_ConfigOption_t`.
pub const QNN_HTP_DEVICE_CONFIG_OPTION_SOC: u32 = 0;
/// *Unverified* (SOC = 0 is verified).
pub const QNN_HTP_DEVICE_CONFIG_OPTION_ARCH: u32 = 1;
/// *Unverified.*
pub const QNN_HTP_DEVICE_CONFIG_OPTION_SIGNEDPD: u32 = 2;

/// `QnnHtpDevice_Arch_t` values: the HTP (Hexagon) generation number.
pub const QNN_HTP_DEVICE_ARCH_NONE: u32 = 0;
pub const QNN_HTP_DEVICE_ARCH_V68: u32 = 68;
pub const QNN_HTP_DEVICE_ARCH_V69: u32 = 69;
pub const QNN_HTP_DEVICE_ARCH_V73: u32 = 73;
pub const QNN_HTP_DEVICE_ARCH_V75: u32 = 75;
pub const QNN_HTP_DEVICE_ARCH_V79: u32 = 79;
pub const QNN_HTP_DEVICE_ARCH_V81: u32 = 81;

/// `{deviceId, arch}` for [`QNN_HTP_DEVICE_CONFIG_OPTION_ARCH`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QnnHtpDevice_MinimumArch_t {
    pub device_id: u32,
    pub arch: u32,
}

/// The union of [`QnnHtpDevice_CustomConfig_t`]. Measured: the library reads it at offset 8
/// (with the union at 4 it reported "unknown custom config socModel 0"), so it is 8-aligned in
/// the 2.40 build (some member is 64-bit or a pointer); `raw` reproduces that.
#[repr(C)]
#[derive(Clone, Copy)]
pub union QnnHtpDevice_CustomConfigValue_t {
    pub raw: u64,
    /// SoC model number for [`QNN_HTP_DEVICE_CONFIG_OPTION_SOC`] (e.g. 43 = SM8550, 57 = SM8650,
    /// 69 = SM8750; the numbering is Qualcomm's, listed in the SDK's HTP backend documentation).
    pub soc_model: u32,
    pub arch: QnnHtpDevice_MinimumArch_t,
    /// `{deviceId u32, useSignedProcessDomain bool}`.
    pub signed_pd: [u32; 2],
}

/// `QnnHtpDevice_CustomConfig_t` (16 bytes: option, union @8).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QnnHtpDevice_CustomConfig_t {
    pub option: u32,
    pub value: QnnHtpDevice_CustomConfigValue_t,
}

// ---- context ----

/// `QnnContext_Config_t`: option CUSTOM (0) points at a [`QnnHtpContext_CustomConfig_t`].
/// The union's other members (priority, OEM string, …) are not used by tandem; the union is
/// pointer-sized.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnContext_Config_t {
    pub option: u32,
    pub custom_config: *mut c_void,
}
pub const QNN_CONTEXT_CONFIG_OPTION_CUSTOM: u32 = 0;

/// HTP context custom option: share weights between the graphs of one context (verified: a
/// context with two graphs over the same named static tensor serializes one copy).
pub const QNN_HTP_CONTEXT_CONFIG_OPTION_WEIGHT_SHARING_ENABLED: u32 = 1;

/// `QnnHtpContext_CustomConfig_t`: option u32 @0, union @8 (pointer-aligned; the weight-sharing
/// member is a `bool`). Sized generously (24 bytes); the library reads only option and the
/// member the option names, and we never build arrays of it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnHtpContext_CustomConfig_t {
    pub option: u32,
    pub value: [u64; 2],
}

impl QnnHtpContext_CustomConfig_t {
    /// The weight-sharing option with `enabled` in the union's first byte.
    pub const fn weight_sharing(enabled: bool) -> Self {
        Self {
            option: QNN_HTP_CONTEXT_CONFIG_OPTION_WEIGHT_SHARING_ENABLED,
            value: [enabled as u64, 0],
        }
    }
}

// ---- graph ----

/// `QnnGraph_Config_t`: option CUSTOM (0) points at a [`QnnHtpGraph_CustomConfig_t`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnGraph_Config_t {
    pub option: u32,
    pub custom_config: *mut c_void,
}
pub const QNN_GRAPH_CONFIG_OPTION_CUSTOM: u32 = 0;
/// *Unverified.*
pub const QNN_GRAPH_CONFIG_OPTION_PRIORITY: u32 = 3;

/// `QnnHtpGraph_ConfigOption_t`. *Unverified* (accepted silently).
pub const QNN_HTP_GRAPH_CONFIG_OPTION_OPTIMIZATION: u32 = 1;
/// *Unverified* (accepted silently; no observable effect on the simulator).
pub const QNN_HTP_GRAPH_CONFIG_OPTION_PRECISION: u32 = 2;
/// VTCM budget in MB (0 = maximum). Verified.
pub const QNN_HTP_GRAPH_CONFIG_OPTION_VTCM_SIZE_IN_MB: u32 = 3;
/// Verified.
pub const QNN_HTP_GRAPH_CONFIG_OPTION_NUM_HVX_THREADS: u32 = 6;
/// *Unverified.*
pub const QNN_HTP_GRAPH_CONFIG_OPTION_FINALIZE_CONFIG: u32 = 7;
/// *Unverified.*
pub const QNN_HTP_GRAPH_CONFIG_OPTION_NUM_CORES: u32 = 8;

/// `QnnHtpGraph_OptimizationType_t`: FINALIZE_OPTIMIZATION_FLAG takes 1 (fast prepare), 2, or
/// 3 (slowest prepare, best graph; honours the device SoC config). *Accepted; effect unverified.*
pub const QNN_HTP_GRAPH_OPTIMIZATION_TYPE_FINALIZE_OPTIMIZATION_FLAG: u32 = 3;

/// `Qnn_Precision_t` (*unverified*).
pub const QNN_PRECISION_FLOAT32: u32 = 0;
pub const QNN_PRECISION_FLOAT16: u32 = 1;

/// `{type u32, floatValue f32}` for [`QNN_HTP_GRAPH_CONFIG_OPTION_OPTIMIZATION`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QnnHtpGraph_OptimizationOption_t {
    pub type_: u32,
    pub float_value: f32,
}

/// The union of [`QnnHtpGraph_CustomConfig_t`]: 8-aligned (it has 64-bit and pointer members),
/// 48 bytes in recent SDKs (the parallel-execution member is the largest).
#[repr(C)]
#[derive(Clone, Copy)]
pub union QnnHtpGraph_CustomConfigValue_t {
    pub optimization: QnnHtpGraph_OptimizationOption_t,
    /// `Qnn_Precision_t`.
    pub precision: u32,
    pub vtcm_size_in_mb: u32,
    pub num_hvx_threads: u64,
    pub num_cores: u32,
    pub raw: [u64; 6],
}

/// `QnnHtpGraph_CustomConfig_t`: option u32 @0, union @8.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QnnHtpGraph_CustomConfig_t {
    pub option: u32,
    pub value: QnnHtpGraph_CustomConfigValue_t,
}

impl QnnHtpGraph_CustomConfig_t {
    const fn with(option: u32) -> Self {
        Self {
            option,
            value: QnnHtpGraph_CustomConfigValue_t { raw: [0; 6] },
        }
    }
    pub const fn precision(precision: u32) -> Self {
        let mut c = Self::with(QNN_HTP_GRAPH_CONFIG_OPTION_PRECISION);
        c.value.precision = precision;
        c
    }
    pub const fn vtcm_size_in_mb(mb: u32) -> Self {
        let mut c = Self::with(QNN_HTP_GRAPH_CONFIG_OPTION_VTCM_SIZE_IN_MB);
        c.value.vtcm_size_in_mb = mb;
        c
    }
    pub const fn optimization_level(level: f32) -> Self {
        let mut c = Self::with(QNN_HTP_GRAPH_CONFIG_OPTION_OPTIMIZATION);
        c.value.optimization = QnnHtpGraph_OptimizationOption_t {
            type_: QNN_HTP_GRAPH_OPTIMIZATION_TYPE_FINALIZE_OPTIMIZATION_FLAG,
            float_value: level,
        };
        c
    }
    pub const fn num_hvx_threads(n: u64) -> Self {
        let mut c = Self::with(QNN_HTP_GRAPH_CONFIG_OPTION_NUM_HVX_THREADS);
        c.value.num_hvx_threads = n;
        c
    }
    /// A raw option (for probing options this crate does not name).
    pub const fn raw(option: u32, value: [u64; 6]) -> Self {
        Self {
            option,
            value: QnnHtpGraph_CustomConfigValue_t { raw: value },
        }
    }
}

#[cfg(test)]
mod layout {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn configs() {
        for (size, off) in [
            (
                size_of::<QnnBackend_Config_t>(),
                offset_of!(QnnBackend_Config_t, custom_config),
            ),
            (
                size_of::<QnnDevice_Config_t>(),
                offset_of!(QnnDevice_Config_t, custom_config),
            ),
            (
                size_of::<QnnContext_Config_t>(),
                offset_of!(QnnContext_Config_t, custom_config),
            ),
            (
                size_of::<QnnGraph_Config_t>(),
                offset_of!(QnnGraph_Config_t, custom_config),
            ),
        ] {
            assert_eq!((size, off), (16, 8));
        }
        assert_eq!(size_of::<QnnHtpDevice_CustomConfig_t>(), 16);
        assert_eq!(offset_of!(QnnHtpDevice_CustomConfig_t, value), 8);
        assert_eq!(offset_of!(QnnHtpContext_CustomConfig_t, value), 8);
        assert_eq!(offset_of!(QnnHtpGraph_CustomConfig_t, value), 8);
        assert_eq!(size_of::<QnnHtpGraph_CustomConfig_t>(), 56);
        let c = QnnHtpGraph_CustomConfig_t::precision(QNN_PRECISION_FLOAT16);
        // SAFETY: written as `precision` by the constructor.
        assert_eq!(unsafe { c.value.precision }, QNN_PRECISION_FLOAT16);
    }
}
