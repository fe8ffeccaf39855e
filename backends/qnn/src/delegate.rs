//! The QNN delegate as the contract's [`Delegate`]: the factory the registry hands to the
//! scheduler. It holds the QNN-only options (library folder, cache folder, target SoC, power
//! mode, weight sharing); the generic ones (context, chunk sizes, profiling) come with each
//! [`PrepareRequest`].

use std::path::PathBuf;

use tandem_graphs::LoadedModel;
use tandem_hal::delegate::{
    Availability, Delegate, DeviceDescription, PrefillDelegate, PrepareRequest, Unavailable,
};
use tandem_hal::Result;

use crate::execute::QnnPrefillBuilder;
use crate::library::QnnDevice;
use crate::perf::PerfMode;
use crate::{DeviceOptions, Error};

/// [`Delegate::name`] of this delegate.
pub const NAME: &str = "qnn";

/// The QNN-specific options of the delegate (`--qnn-lib`, `--qnn-cache`, `--soc`, `--htp-arch`,
/// `--perf-mode`, `--weight-sharing`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QnnOptions {
    /// Folder holding `libQnnHtp.so` (else `TANDEM_QNN_LIB_DIR`, `QNN_SDK_ROOT`, system path).
    pub lib_dir: Option<PathBuf>,
    /// Context-binary cache folder (else `TANDEM_QNN_CACHE_DIR` or `~/.cache/tandem/qnn`).
    pub cache_dir: Option<PathBuf>,
    /// Prepare for this SoC model ahead of time (e.g. 57 = SM8650).
    pub soc_model: Option<u32>,
    /// Prepare for this HTP architecture ahead of time (e.g. 75 = v75).
    pub htp_arch: Option<u32>,
    /// HTP performance mode (power vote) while the graphs are loaded.
    pub perf_mode: Option<PerfMode>,
    /// HTP weight sharing between the chunk graphs (`None`: the builder's default).
    pub weight_sharing: Option<bool>,
}

/// The QNN HTP prefill delegate.
#[derive(Clone, Debug, Default)]
pub struct QnnDelegate {
    pub options: QnnOptions,
}

impl QnnDelegate {
    pub fn new(options: QnnOptions) -> QnnDelegate {
        QnnDelegate { options }
    }

    /// The builder these options configure, for `request`.
    pub fn builder(&self, request: &PrepareRequest) -> QnnPrefillBuilder {
        let o = &self.options;
        let mut b = QnnPrefillBuilder::new()
            .chunk_sizes(&request.chunk_sizes)
            .ctx(request.ctx)
            .profiling(request.profiling);
        if let Some(d) = &o.lib_dir {
            b = b.lib_dir(d);
        }
        if let Some(d) = &o.cache_dir {
            b = b.cache_dir(d);
        }
        if let Some(s) = o.soc_model {
            b = b.soc_model(s);
        }
        if let Some(a) = o.htp_arch {
            b = b.htp_arch(a);
        }
        if let Some(m) = o.perf_mode {
            b = b.perf_mode(m);
        }
        if let Some(w) = o.weight_sharing {
            b = b.weight_sharing(w);
        }
        b
    }

    fn target(&self) -> DeviceOptions {
        DeviceOptions {
            soc_model: self.options.soc_model,
            arch: self.options.htp_arch,
        }
    }
}

impl Delegate<LoadedModel> for QnnDelegate {
    fn name(&self) -> &'static str {
        NAME
    }

    fn probe(&self) -> Availability {
        match QnnDevice::open(self.options.lib_dir.as_deref(), &self.target()) {
            Ok(d) => Availability::Available(describe(&d)),
            Err(e) => Availability::Unavailable(unavailable(e)),
        }
    }

    fn prepare(
        &self,
        model: &LoadedModel,
        request: &PrepareRequest,
    ) -> Result<Box<dyn PrefillDelegate>> {
        let prefill = self.builder(request).build(&model.spec, &model.weights)?;
        Ok(Box::new(prefill))
    }
}

/// The contract's description of an opened HTP backend.
pub fn describe(device: &QnnDevice) -> DeviceDescription {
    let i = device.info();
    let opt = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    DeviceDescription {
        delegate: NAME,
        library: i.library_path.clone(),
        version: format!("core API {}, backend API {}", i.core_api, i.backend_api),
        device: i.target.clone(),
        simulated: crate::target::is_simulator(),
        details: vec![
            ("provider".into(), i.provider.clone()),
            ("core_api".into(), i.core_api.clone()),
            ("backend_api".into(), i.backend_api.clone()),
            ("build_id".into(), i.build_id.clone()),
            ("soc_model".into(), opt(i.soc_model)),
            ("htp_arch".into(), opt(i.htp_arch)),
        ],
    }
}

/// Why the HTP backend could not be opened, with the paths tried and the versions involved.
pub fn unavailable(e: Error) -> Unavailable {
    let mut u = Unavailable::because(NAME, e.to_string());
    if let Error::Load(load) = &e {
        match load {
            sys_qnn::LoadError::NotFound { tried, .. } => u.tried = tried.clone(),
            sys_qnn::LoadError::UnsupportedApiVersion {
                path,
                found,
                supported,
            } => {
                u.tried = vec![(path.clone(), "opened".into())];
                u.version_found = Some(found.to_string());
                u.version_wanted = Some((*supported).to_string());
            }
            sys_qnn::LoadError::MissingSymbol { path, reason, .. } => {
                u.tried = vec![(path.clone(), reason.clone())];
            }
            sys_qnn::LoadError::ProviderQuery { path, .. }
            | sys_qnn::LoadError::NoProvider { path, .. } => {
                u.tried = vec![(path.clone(), "opened".into())];
            }
        }
    }
    u
}
