//! Opening the QNN libraries and describing them: a [`QnnDevice`] is an opened HTP backend (with
//! its System library, logger and optional AOT target device). `tandem devices` reports it
//! through the contract's probe ([`crate::QnnDelegate`]).

use std::path::{Path, PathBuf};

use sys_qnn::{Backend, Device, DeviceOptions, Log, QnnLibrary, QnnSystemLibrary};

use crate::error::Result;
use crate::target::{self, ResolvedTarget, TargetSource};

/// Facts about an opened HTP backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub library_path: PathBuf,
    pub provider: String,
    /// Core API version, e.g. `2.40.0`.
    pub core_api: String,
    /// Backend API version, e.g. `5.51.0`.
    pub backend_api: String,
    /// `backendGetBuildId`, e.g. `v2.51.0.260929181845`.
    pub build_id: String,
    /// Target SoC model the graphs are prepared for (after defaults: SM8750 on x86_64 hosts;
    /// `None` on a device without `--soc`, where QNN prepares for the HTP it runs on).
    pub soc_model: Option<u32>,
    /// Target HTP arch (e.g. 75), when one was configured alone.
    pub htp_arch: Option<u32>,
    /// The target in words, e.g. "SM8750 (SoC 69, HTP v79), the default on x86_64 hosts".
    pub target: String,
    /// Whether the target was requested, defaulted on a host, or is the device's own HTP.
    pub target_source: TargetSource,
}

/// An opened QNN HTP backend: library, System library (to read context binaries), logger,
/// backend and, when a target SoC/arch was given, a device configured for it.
#[derive(Clone)]
///
/// Field order is drop order: the device is freed before the backend (reverse creation order;
/// contexts hold both and go first).
pub struct QnnDevice {
    pub(crate) device: Option<Device>,
    pub(crate) backend: Backend,
    pub(crate) sys: QnnSystemLibrary,
    pub(crate) lib: QnnLibrary,
    info: DeviceInfo,
}

impl std::fmt::Debug for QnnDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QnnDevice")
            .field("info", &self.info)
            .finish()
    }
}

impl QnnDevice {
    /// Opens `libQnnHtp` and `libQnnSystem` (the latter from the same folder first) and creates
    /// the backend and a device for the target ([`target::resolve`]: the requested SoC/arch, on
    /// x86_64 hosts SM8750 when none is given, and an error for targets that cannot run fp16).
    pub fn open(lib_dir: Option<&Path>, target: &DeviceOptions) -> Result<QnnDevice> {
        Self::open_with_log_level(lib_dir, target, sys_qnn::QNN_LOG_LEVEL_WARN)
    }

    /// [`Self::open`] with QNN's own log at `level` (`QNN_LOG_LEVEL_*`; lines reach `tracing`
    /// under the target `qnn`, or the sink set with `sys_qnn::log::set_log_sink`).
    pub fn open_with_log_level(
        lib_dir: Option<&Path>,
        target: &DeviceOptions,
        level: sys_qnn::QnnLog_Level_t,
    ) -> Result<QnnDevice> {
        let resolved: ResolvedTarget = target::resolve(target)?;
        let target = &resolved.options;
        let lib = QnnLibrary::open(lib_dir)?;
        let sys = QnnSystemLibrary::open(lib.path().parent())?;
        forward_qnn_log_to_tracing();
        let log = Log::new(&lib, level).ok();
        let backend = Backend::new(&lib, log.as_ref())?;
        let device = if target.soc_model.is_some() || target.arch.is_some() {
            Some(Device::new(&lib, log.as_ref(), target)?)
        } else {
            None
        };
        let v = lib.api_version();
        let info = DeviceInfo {
            library_path: lib.path().to_path_buf(),
            provider: lib.provider_name(),
            core_api: v.core_api_version.to_string(),
            backend_api: v.backend_api_version.to_string(),
            build_id: lib.build_id().unwrap_or_else(|e| format!("unknown ({e})")),
            soc_model: target.soc_model,
            htp_arch: target.arch,
            target: resolved.describe(),
            target_source: resolved.source,
        };
        tracing::debug!(?info, "QNN HTP backend opened");
        Ok(QnnDevice {
            lib,
            sys,
            backend,
            device,
            info,
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn library(&self) -> &QnnLibrary {
        &self.lib
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The System library opened beside the backend (reads context binaries).
    pub fn system_library(&self) -> &QnnSystemLibrary {
        &self.sys
    }

    /// The device configured for the target SoC/arch, if one was given.
    pub fn target_device(&self) -> Option<&Device> {
        self.device.as_ref()
    }
}

/// Routes QNN's own log lines into `tracing` under the target `qnn`, one level down: the HTP
/// library reports routine notes as errors/warnings (e.g. "unexpected GraphHtpSettings option
/// 66" on every graph), while real failures reach the caller as error codes with
/// `errorGetMessage` text. `TANDEM_LOG=qnn=debug` shows everything.
fn forward_qnn_log_to_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        sys_qnn::log::set_log_sink(Box::new(|level, _timestamp, text| match level {
            sys_qnn::QNN_LOG_LEVEL_ERROR => tracing::info!(target: "qnn", "{text}"),
            sys_qnn::QNN_LOG_LEVEL_WARN => tracing::debug!(target: "qnn", "{text}"),
            _ => tracing::trace!(target: "qnn", "{text}"),
        }));
    });
}
