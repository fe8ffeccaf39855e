//! The HTP *performance infrastructure*: run-time power votes (DCVS v3 voltage corners, sleep
//! latency, RPC latency/polling) made through `deviceGetInfrastructure` (function-table slot 39).
//!
//! Declarations are written by hand from the documented ABI of the SDK's HTP
//! performance-infrastructure API (types `QnnHtpDevice_Infrastructure_t`,
//! `QnnHtpDevice_PerfInfrastructure_t`, `QnnHtpPerfInfrastructure_PowerConfig_t`,
//! `QnnHtpPerfInfrastructure_DcvsV3_t`); every field is a 32-bit value or a function pointer, so
//! the layout follows from the field order. **Unverified against hardware**: on the x86_64
//! simulator the calls are accepted (see [`PerfInfrastructure`]) but there is no DSP whose clocks
//! they could change, so whether a vote has the documented effect cannot be observed here.
//!
//! Measured on the x86_64 `libQnnHtp.so` (2.40 core API, build v2.51.0): `deviceGetInfrastructure`
//! returns a non-null infrastructure with type tag PERF (0) and all four function pointers set;
//! `createPowerConfigId(0, 0)` returns a fresh id per call; `setPowerConfig` accepts every DCVS v3
//! vote and the RPC latency/polling options, rejects an unknown option tag (13002) and an
//! unknown id (13001), and `createPowerConfigId` rejects a device/core missing from the platform
//! info (13001). So the option tag at offset 0 and the function signatures are exercised; whether
//! the DCVS v3 *fields* are read as declared is not observable on the simulator.

use crate::api::{check, slot, Backend, QnnError};
use crate::loader::QnnLibrary;
use crate::types::Qnn_ErrorHandle_t;

/// `QnnHtpDevice_InfrastructureType_t`: the union holds the perf infrastructure.
pub const QNN_HTP_DEVICE_INFRASTRUCTURE_TYPE_PERF: u32 = 0;

/// `QnnHtpPerfInfrastructure_PowerConfigOption_t`.
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIGOPTION_DCVS_V3: u32 = 1;
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIGOPTION_RPC_CONTROL_LATENCY: u32 = 2;
/// Documented as V69 and later, process-wide, at most
/// [`QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIG_MAX_RPC_POLLING_TIME`] µs.
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIGOPTION_RPC_POLLING_TIME: u32 = 3;
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIGOPTION_HMX_TIMEOUT_INTERVAL_US: u32 = 4;
/// Largest RPC polling time the API accepts (µs).
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIG_MAX_RPC_POLLING_TIME: u32 = 9999;

/// `QnnHtpPerfInfrastructure_VoltageCorner_t` (each maps to a Hexagon SDK `HAP_DCVS_VCORNER_*`).
pub const DCVS_VOLTAGE_CORNER_DISABLE: u32 = 0x10;
pub const DCVS_VOLTAGE_VCORNER_MIN_VOLTAGE_CORNER: u32 = 0x20;
pub const DCVS_VOLTAGE_VCORNER_SVS2: u32 = 0x30;
pub const DCVS_VOLTAGE_VCORNER_SVS: u32 = 0x40;
pub const DCVS_VOLTAGE_VCORNER_SVS_PLUS: u32 = 0x50;
pub const DCVS_VOLTAGE_VCORNER_NOM: u32 = 0x60;
pub const DCVS_VOLTAGE_VCORNER_NOM_PLUS: u32 = 0x70;
pub const DCVS_VOLTAGE_VCORNER_TURBO: u32 = 0x80;
pub const DCVS_VOLTAGE_VCORNER_TURBO_PLUS: u32 = 0x90;
pub const DCVS_VOLTAGE_VCORNER_TURBO_L2: u32 = 0x92;
pub const DCVS_VOLTAGE_VCORNER_TURBO_L3: u32 = 0x93;
pub const DCVS_VOLTAGE_VCORNER_MAX_VOLTAGE_CORNER: u32 = 0xA0;

/// `QnnHtpPerfInfrastructure_PowerMode_t` (each maps to a Hexagon SDK `HAP_DCVS_V2_*` mode).
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_ADJUST_UP_DOWN: u32 = 0x1;
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_ADJUST_ONLY_UP: u32 = 0x2;
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_POWER_SAVER_MODE: u32 = 0x4;
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_POWER_SAVER_AGGRESSIVE_MODE: u32 = 0x8;
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_PERFORMANCE_MODE: u32 = 0x10;
pub const QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_DUTY_CYCLE_MODE: u32 = 0x20;

/// `QnnHtpPerfInfrastructure_DcvsV3_t` (16 × u32 = 64 bytes). The `set_*` fields are "consider
/// the following parameter(s)" flags (non-zero = yes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QnnHtpPerfInfrastructure_DcvsV3_t {
    /// The power config id the vote belongs to.
    pub context_id: u32,
    pub set_dcvs_enable: u32,
    pub dcvs_enable: u32,
    pub power_mode: u32,
    pub set_sleep_latency: u32,
    /// Microseconds (documented range 10–65535).
    pub sleep_latency: u32,
    pub set_sleep_disable: u32,
    pub sleep_disable: u32,
    pub set_bus_params: u32,
    pub bus_voltage_corner_min: u32,
    pub bus_voltage_corner_target: u32,
    pub bus_voltage_corner_max: u32,
    pub set_core_params: u32,
    pub core_voltage_corner_min: u32,
    pub core_voltage_corner_target: u32,
    pub core_voltage_corner_max: u32,
}

/// The union of [`QnnHtpPerfInfrastructure_PowerConfig_t`] (all members 4-byte aligned, so it
/// sits at offset 4). Newer SDKs may add members; the library reads only the one `option` names.
#[repr(C)]
#[derive(Clone, Copy)]
pub union QnnHtpPerfInfrastructure_PowerConfigValue_t {
    pub dcvs_v3: QnnHtpPerfInfrastructure_DcvsV3_t,
    pub rpc_control_latency_us: u32,
    pub rpc_polling_time_us: u32,
    pub hmx_timeout_interval_us: u32,
}

/// `QnnHtpPerfInfrastructure_PowerConfig_t` (68 bytes: option u32 @0, union @4).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QnnHtpPerfInfrastructure_PowerConfig_t {
    pub option: u32,
    pub value: QnnHtpPerfInfrastructure_PowerConfigValue_t,
}

/// `QnnHtpPerfInfrastructure_MemoryConfig_t` (option u32 @0, union {grow size u32} @4).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnHtpPerfInfrastructure_MemoryConfig_t {
    pub option: u32,
    pub mem_grow_size: u32,
}

pub type CreatePowerConfigIdFn = unsafe extern "C" fn(
    device_id: u32,
    core_id: u32,
    power_config_id: *mut u32,
) -> Qnn_ErrorHandle_t;
pub type DestroyPowerConfigIdFn = unsafe extern "C" fn(power_config_id: u32) -> Qnn_ErrorHandle_t;
pub type SetPowerConfigFn = unsafe extern "C" fn(
    power_config_id: u32,
    config: *const *const QnnHtpPerfInfrastructure_PowerConfig_t,
) -> Qnn_ErrorHandle_t;
pub type SetMemoryConfigFn = unsafe extern "C" fn(
    device_id: u32,
    core_id: u32,
    config: *const *const QnnHtpPerfInfrastructure_MemoryConfig_t,
) -> Qnn_ErrorHandle_t;

/// `QnnHtpDevice_PerfInfrastructure_t`: four function pointers.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnHtpDevice_PerfInfrastructure_t {
    pub create_power_config_id: Option<CreatePowerConfigIdFn>,
    pub destroy_power_config_id: Option<DestroyPowerConfigIdFn>,
    pub set_power_config: Option<SetPowerConfigFn>,
    pub set_memory_config: Option<SetMemoryConfigFn>,
}

/// `QnnHtpDevice_Infrastructure_t` (40 bytes: infraType u32 @0, union {perfInfra} @8). What
/// `QnnDevice_Infrastructure_t` (an opaque pointer in the core API) points at on HTP.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QnnHtpDevice_Infrastructure_t {
    pub infra_type: u32,
    pub perf_infra: QnnHtpDevice_PerfInfrastructure_t,
}

/// `QnnDevice_getInfrastructure(const QnnDevice_Infrastructure_t* deviceInfra)`: writes a
/// pointer to backend-owned memory (the C parameter is `const`-qualified but is an output).
pub type DeviceGetInfrastructureFn =
    unsafe extern "C" fn(infra: *mut *const QnnHtpDevice_Infrastructure_t) -> Qnn_ErrorHandle_t;

// ---------------------------------------------------------------------------------------------
// safe wrapper

/// `QnnHtpPerfInfrastructure_Error_t` codes (`QNN_MIN_ERROR_PERF_INFRASTRUCTURE` = 13000).
/// Measured: the x86_64 library's `errorGetMessage` has no text for them ("QNN error 13001"),
/// and it returns 13001 for an unknown power config id or device/core, 13002 for an unknown
/// power config option.
pub const QNN_HTP_PERF_INFRASTRUCTURE_ERROR_INVALID_HANDLE_PTR: Qnn_ErrorHandle_t = 13000;
pub const QNN_HTP_PERF_INFRASTRUCTURE_ERROR_INVALID_INPUT: Qnn_ErrorHandle_t = 13001;
pub const QNN_HTP_PERF_INFRASTRUCTURE_ERROR_UNSUPPORTED_CONFIG: Qnn_ErrorHandle_t = 13002;
pub const QNN_HTP_PERF_INFRASTRUCTURE_ERROR_TRANSPORT: Qnn_ErrorHandle_t = 13003;
pub const QNN_HTP_PERF_INFRASTRUCTURE_ERROR_UNSUPPORTED: Qnn_ErrorHandle_t = 13004;
pub const QNN_HTP_PERF_INFRASTRUCTURE_ERROR_MEM_ALLOC: Qnn_ErrorHandle_t = 13005;
pub const QNN_HTP_PERF_INFRASTRUCTURE_ERROR_FAILED: Qnn_ErrorHandle_t = 13006;

/// The documented name of a perf-infrastructure error code.
pub fn perf_error_name(code: Qnn_ErrorHandle_t) -> Option<&'static str> {
    Some(match code {
        QNN_HTP_PERF_INFRASTRUCTURE_ERROR_INVALID_HANDLE_PTR => {
            "QNN_HTP_PERF_INFRASTRUCTURE_ERROR_INVALID_HANDLE_PTR"
        }
        QNN_HTP_PERF_INFRASTRUCTURE_ERROR_INVALID_INPUT => {
            "QNN_HTP_PERF_INFRASTRUCTURE_ERROR_INVALID_INPUT"
        }
        QNN_HTP_PERF_INFRASTRUCTURE_ERROR_UNSUPPORTED_CONFIG => {
            "QNN_HTP_PERF_INFRASTRUCTURE_ERROR_UNSUPPORTED_CONFIG"
        }
        QNN_HTP_PERF_INFRASTRUCTURE_ERROR_TRANSPORT => {
            "QNN_HTP_PERF_INFRASTRUCTURE_ERROR_TRANSPORT"
        }
        QNN_HTP_PERF_INFRASTRUCTURE_ERROR_UNSUPPORTED => {
            "QNN_HTP_PERF_INFRASTRUCTURE_ERROR_UNSUPPORTED"
        }
        QNN_HTP_PERF_INFRASTRUCTURE_ERROR_MEM_ALLOC => {
            "QNN_HTP_PERF_INFRASTRUCTURE_ERROR_MEM_ALLOC"
        }
        QNN_HTP_PERF_INFRASTRUCTURE_ERROR_FAILED => "QNN_HTP_PERF_INFRASTRUCTURE_ERROR_FAILED",
        _ => return None,
    })
}

/// [`check`], naming perf-infrastructure codes the library's `errorGetMessage` does not know.
fn check_perf(
    lib: &QnnLibrary,
    code: Qnn_ErrorHandle_t,
    op: impl Into<String>,
) -> Result<(), QnnError> {
    check(lib, code, op).map_err(|e| match e {
        QnnError::Call { op, code, message } => QnnError::Call {
            op,
            code,
            message: match perf_error_name(code) {
                Some(name) if !message.contains(name) => format!("{name} ({message})"),
                _ => message,
            },
        },
        other => other,
    })
}

/// A voltage-corner triple (`DCVS_VOLTAGE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoltageCorners {
    pub min: u32,
    pub target: u32,
    pub max: u32,
}

impl VoltageCorners {
    /// The same corner for min, target and max (what the known integrations vote).
    pub const fn all(corner: u32) -> Self {
        VoltageCorners {
            min: corner,
            target: corner,
            max: corner,
        }
    }
}

/// A DCVS v3 vote; `None` fields are left unset (their `set_*` flag is 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DcvsV3 {
    /// `Some(on)`: participate in DCVS (clock scaling) or not; with it the power mode.
    pub dcvs_enable: Option<bool>,
    /// `QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_*`, sent with `dcvs_enable`.
    pub power_mode: u32,
    /// Sleep latency in µs.
    pub sleep_latency_us: Option<u32>,
    /// `Some(true)` keeps the HTP out of sleep/low-power modes.
    pub sleep_disable: Option<bool>,
    pub bus: Option<VoltageCorners>,
    pub core: Option<VoltageCorners>,
}

impl DcvsV3 {
    /// The raw struct for power config id `context_id`.
    pub fn to_raw(&self, context_id: u32) -> QnnHtpPerfInfrastructure_DcvsV3_t {
        let b = self.bus.unwrap_or(VoltageCorners::all(0));
        let c = self.core.unwrap_or(VoltageCorners::all(0));
        QnnHtpPerfInfrastructure_DcvsV3_t {
            context_id,
            set_dcvs_enable: self.dcvs_enable.is_some() as u32,
            dcvs_enable: self.dcvs_enable.unwrap_or(false) as u32,
            power_mode: self.power_mode,
            set_sleep_latency: self.sleep_latency_us.is_some() as u32,
            sleep_latency: self.sleep_latency_us.unwrap_or(0),
            set_sleep_disable: self.sleep_disable.is_some() as u32,
            sleep_disable: self.sleep_disable.unwrap_or(false) as u32,
            set_bus_params: self.bus.is_some() as u32,
            bus_voltage_corner_min: b.min,
            bus_voltage_corner_target: b.target,
            bus_voltage_corner_max: b.max,
            set_core_params: self.core.is_some() as u32,
            core_voltage_corner_min: c.min,
            core_voltage_corner_target: c.target,
            core_voltage_corner_max: c.max,
        }
    }
}

/// One power config option for [`PowerConfigId::set`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerConfig {
    DcvsV3(DcvsV3),
    RpcControlLatencyUs(u32),
    /// At most [`QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIG_MAX_RPC_POLLING_TIME`].
    RpcPollingTimeUs(u32),
    HmxTimeoutIntervalUs(u32),
}

impl PowerConfig {
    /// The raw option for power config id `id`.
    pub fn to_raw(&self, id: u32) -> QnnHtpPerfInfrastructure_PowerConfig_t {
        let (option, value) = match *self {
            PowerConfig::DcvsV3(d) => (
                QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIGOPTION_DCVS_V3,
                QnnHtpPerfInfrastructure_PowerConfigValue_t {
                    dcvs_v3: d.to_raw(id),
                },
            ),
            PowerConfig::RpcControlLatencyUs(us) => (
                QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIGOPTION_RPC_CONTROL_LATENCY,
                padded_u32(us),
            ),
            PowerConfig::RpcPollingTimeUs(us) => (
                QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIGOPTION_RPC_POLLING_TIME,
                padded_u32(us),
            ),
            PowerConfig::HmxTimeoutIntervalUs(us) => (
                QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIGOPTION_HMX_TIMEOUT_INTERVAL_US,
                padded_u32(us),
            ),
        };
        QnnHtpPerfInfrastructure_PowerConfig_t { option, value }
    }
}

/// A union holding `v` in its first 4 bytes and zeros elsewhere (no uninitialized bytes).
fn padded_u32(v: u32) -> QnnHtpPerfInfrastructure_PowerConfigValue_t {
    QnnHtpPerfInfrastructure_PowerConfigValue_t {
        dcvs_v3: QnnHtpPerfInfrastructure_DcvsV3_t {
            context_id: v,
            ..Default::default()
        },
    }
}

/// The HTP perf infrastructure of a backend: a copy of its function pointers, holding the
/// backend (and so the library) alive.
#[derive(Clone)]
pub struct PerfInfrastructure {
    backend: Backend,
    table: QnnHtpDevice_PerfInfrastructure_t,
}

impl std::fmt::Debug for PerfInfrastructure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfInfrastructure").finish_non_exhaustive()
    }
}

impl PerfInfrastructure {
    /// `deviceGetInfrastructure` on the backend's library. The infrastructure is per library
    /// (the call takes no handle); the backend is held so power configs are created and
    /// destroyed while it exists, as the API documents ("requires HTP backend initialized").
    pub fn new(backend: &Backend) -> Result<Self, QnnError> {
        let lib = backend.library();
        let raw = slot(
            lib.table().device_get_infrastructure,
            "deviceGetInfrastructure",
        )?;
        let mut infra: *const QnnHtpDevice_Infrastructure_t = std::ptr::null();
        // SAFETY: slot 39 has this signature (one output pointer); `infra` is a valid place for
        // the library to write a pointer to its own (backend-lifetime) memory.
        let code = unsafe { raw(&mut infra) };
        check(lib, code, "deviceGetInfrastructure")?;
        if infra.is_null() {
            return Err(invalid("returned a null infrastructure"));
        }
        // SAFETY: non-null, written by the library, pointing at a QnnHtpDevice_Infrastructure_t
        // it owns; read once by value (tag + four pointers).
        let infra = unsafe { *infra };
        if infra.infra_type != QNN_HTP_DEVICE_INFRASTRUCTURE_TYPE_PERF {
            return Err(invalid(&format!(
                "infrastructure type {} is not PERF ({QNN_HTP_DEVICE_INFRASTRUCTURE_TYPE_PERF})",
                infra.infra_type
            )));
        }
        Ok(PerfInfrastructure {
            backend: backend.clone(),
            table: infra.perf_infra,
        })
    }

    pub fn library(&self) -> &QnnLibrary {
        self.backend.library()
    }

    /// The raw function pointers (for callers needing `setMemoryConfig`).
    pub fn raw(&self) -> &QnnHtpDevice_PerfInfrastructure_t {
        &self.table
    }

    /// `createPowerConfigId(device_id, core_id)`; destroyed when the returned id is dropped.
    pub fn create_power_config_id(
        &self,
        device_id: u32,
        core_id: u32,
    ) -> Result<PowerConfigId, QnnError> {
        let f = slot(self.table.create_power_config_id, "createPowerConfigId")?;
        let mut id = 0u32;
        // SAFETY: documented signature; `id` is a valid output location.
        let code = unsafe { f(device_id, core_id, &mut id) };
        check_perf(
            self.library(),
            code,
            format!("createPowerConfigId(device {device_id}, core {core_id})"),
        )?;
        Ok(PowerConfigId {
            infra: self.clone(),
            id,
            live: true,
        })
    }
}

fn invalid(reason: &str) -> QnnError {
    QnnError::InvalidArgument {
        op: "deviceGetInfrastructure".into(),
        reason: reason.into(),
    }
}

/// A power config id (a "power client"): votes made through it last until it is dropped
/// (`destroyPowerConfigId`, which withdraws them).
#[derive(Debug)]
pub struct PowerConfigId {
    infra: PerfInfrastructure,
    id: u32,
    live: bool,
}

impl PowerConfigId {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `setPowerConfig(id, [configs…, NULL])`; DCVS v3 votes get this id as their context id.
    pub fn set(&self, configs: &[PowerConfig]) -> Result<(), QnnError> {
        let f = slot(self.infra.table.set_power_config, "setPowerConfig")?;
        let raw: Vec<QnnHtpPerfInfrastructure_PowerConfig_t> =
            configs.iter().map(|c| c.to_raw(self.id)).collect();
        let mut list: Vec<*const QnnHtpPerfInfrastructure_PowerConfig_t> =
            raw.iter().map(|c| c as *const _).collect();
        list.push(std::ptr::null());
        // SAFETY: `list` is a NULL-terminated array of pointers into `raw`, both alive until
        // the call returns; the id came from createPowerConfigId and is not yet destroyed.
        let code = unsafe { f(self.id, list.as_ptr()) };
        check_perf(
            self.infra.library(),
            code,
            format!("setPowerConfig(id {}, {configs:?})", self.id),
        )
    }
}

impl PowerConfigId {
    /// `destroyPowerConfigId`, reporting its result (dropping does the same and ignores it).
    pub fn destroy(mut self) -> Result<(), QnnError> {
        self.destroy_once()
    }

    fn destroy_once(&mut self) -> Result<(), QnnError> {
        if !std::mem::replace(&mut self.live, false) {
            return Ok(());
        }
        let f = slot(
            self.infra.table.destroy_power_config_id,
            "destroyPowerConfigId",
        )?;
        // SAFETY: the id came from createPowerConfigId on this infrastructure, whose backend
        // is still held, and `live` makes this the only destroy.
        let code = unsafe { f(self.id) };
        check_perf(
            self.infra.library(),
            code,
            format!("destroyPowerConfigId(id {})", self.id),
        )
    }
}

impl Drop for PowerConfigId {
    fn drop(&mut self) {
        let _ = self.destroy_once();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn layouts() {
        assert_eq!(size_of::<QnnHtpPerfInfrastructure_DcvsV3_t>(), 64);
        type D = QnnHtpPerfInfrastructure_DcvsV3_t;
        assert_eq!(offset_of!(D, power_mode), 12);
        assert_eq!(offset_of!(D, sleep_latency), 20);
        assert_eq!(offset_of!(D, bus_voltage_corner_min), 36);
        assert_eq!(offset_of!(D, core_voltage_corner_max), 60);
        assert_eq!(size_of::<QnnHtpPerfInfrastructure_PowerConfig_t>(), 68);
        assert_eq!(align_of::<QnnHtpPerfInfrastructure_PowerConfig_t>(), 4);
        assert_eq!(offset_of!(QnnHtpPerfInfrastructure_PowerConfig_t, value), 4);
        assert_eq!(size_of::<QnnHtpPerfInfrastructure_MemoryConfig_t>(), 8);
        assert_eq!(size_of::<QnnHtpDevice_PerfInfrastructure_t>(), 32);
        assert_eq!(size_of::<QnnHtpDevice_Infrastructure_t>(), 40);
        assert_eq!(offset_of!(QnnHtpDevice_Infrastructure_t, perf_infra), 8);
    }

    #[test]
    fn dcvs_raw_flags_follow_options() {
        let d = DcvsV3 {
            dcvs_enable: Some(false),
            power_mode: QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_PERFORMANCE_MODE,
            sleep_latency_us: Some(40),
            sleep_disable: None,
            bus: Some(VoltageCorners::all(DCVS_VOLTAGE_VCORNER_TURBO)),
            core: None,
        };
        let r = d.to_raw(7);
        assert_eq!((r.context_id, r.set_dcvs_enable, r.dcvs_enable), (7, 1, 0));
        assert_eq!((r.set_sleep_latency, r.sleep_latency), (1, 40));
        assert_eq!((r.set_sleep_disable, r.set_bus_params), (0, 1));
        assert_eq!(r.bus_voltage_corner_target, 0x80);
        assert_eq!(r.set_core_params, 0);
        let rpc = PowerConfig::RpcPollingTimeUs(9999).to_raw(3);
        assert_eq!(rpc.option, 3);
        // SAFETY: `padded_u32` initializes the whole union through its largest member.
        assert_eq!(unsafe { rpc.value.rpc_polling_time_us }, 9999);
    }
}
