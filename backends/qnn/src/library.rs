//! Opening the QNN libraries and describing them: a [`QnnDevice`] is an opened HTP backend (with
//! its System library, logger and optional AOT target device); [`probe`] reports availability for
//! `tandem devices` without failing.

use std::path::{Path, PathBuf};

use sys_qnn::{Backend, Device, DeviceOptions, Log, QnnLibrary, QnnSystemLibrary};

use crate::error::Result;

/// What `tandem devices` prints for the QNN delegate.
#[derive(Clone, Debug)]
pub enum Availability {
    Available(DeviceInfo),
    /// The reason, naming every path tried or the version found.
    Unavailable(String),
}

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
    /// Target SoC model for ahead-of-time preparation, when one was configured.
    pub soc_model: Option<u32>,
    /// Target HTP arch (e.g. 75), when one was configured.
    pub htp_arch: Option<u32>,
}

/// Opens the HTP library (search order: `lib_dir`, `TANDEM_QNN_LIB_DIR`, `QNN_SDK_ROOT`, system
/// loader) and reports what it found, or why it could not.
pub fn probe(lib_dir: Option<&Path>) -> Availability {
    match QnnDevice::open(lib_dir, &DeviceOptions::default()) {
        Ok(d) => Availability::Available(d.info().clone()),
        Err(e) => Availability::Unavailable(e.to_string()),
    }
}

/// An opened QNN HTP backend: library, System library (to read context binaries), logger,
/// backend and, when a target SoC/arch was given, a device configured for it.
#[derive(Clone)]
pub struct QnnDevice {
    pub(crate) lib: QnnLibrary,
    pub(crate) sys: QnnSystemLibrary,
    pub(crate) backend: Backend,
    pub(crate) device: Option<Device>,
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
    /// the backend; with `target.soc_model`/`target.arch` also a device for that target.
    pub fn open(lib_dir: Option<&Path>, target: &DeviceOptions) -> Result<QnnDevice> {
        let lib = QnnLibrary::open(lib_dir)?;
        let sys = QnnSystemLibrary::open(lib.path().parent())?;
        forward_qnn_log_to_tracing();
        let log = Log::new(&lib, sys_qnn::QNN_LOG_LEVEL_WARN).ok();
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
