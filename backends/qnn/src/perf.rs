//! The HTP run-time performance mode ([`PerfMode`]): a DCVS v3 power vote made through the
//! device's perf infrastructure after the backend is created, withdrawn when the
//! [`crate::QnnPrefill`] is dropped.
//!
//! The mode names and their DCVS v3 settings follow ONNX Runtime's QNN execution provider
//! (`htp_performance_mode` provider option, `HtpPowerConfigManager::SetHtpPerformancePowerConfig`;
//! the ExecuTorch Qualcomm backend's `HtpDevice` uses the same table): every mode votes
//! PERFORMANCE power mode with the same corner for min/target/max on both bus and core, sleep
//! not disabled; burst and the high-performance modes turn DCVS off, the others leave it on;
//! extreme power saver votes POWER_SAVER mode and disables the corner vote.
//!
//! **What can be verified here**: that the x86_64 simulator accepts the infrastructure calls
//! (it does: see `tests/perf.rs`) and that results are unchanged. **What cannot**: the on-device
//! effect (clock/voltage corners, latency, power) — the simulator has no DSP clocks. On a
//! device, check with a profile or a power rail measurement before relying on a mode.

use std::fmt;
use std::str::FromStr;

use sys_qnn::perf::*;
use sys_qnn::{Backend, DcvsV3, PerfInfrastructure, PowerConfig, PowerConfigId, VoltageCorners};

use crate::error::Result;

/// Sleep latencies (µs) of the reference integrations.
pub const SLEEP_MIN_LATENCY_US: u32 = 40;
pub const SLEEP_LOW_LATENCY_US: u32 = 100;
pub const SLEEP_MEDIUM_LATENCY_US: u32 = 1000;

/// The HTP performance mode (ONNX Runtime's `htp_performance_mode` set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PerfMode {
    /// No vote: the platform's default DCVS behaviour.
    #[default]
    Default,
    Burst,
    SustainedHighPerformance,
    HighPerformance,
    Balanced,
    LowBalanced,
    HighPowerSaver,
    PowerSaver,
    LowPowerSaver,
    ExtremePowerSaver,
}

impl PerfMode {
    pub const ALL: [PerfMode; 10] = [
        PerfMode::Default,
        PerfMode::Burst,
        PerfMode::SustainedHighPerformance,
        PerfMode::HighPerformance,
        PerfMode::Balanced,
        PerfMode::LowBalanced,
        PerfMode::HighPowerSaver,
        PerfMode::PowerSaver,
        PerfMode::LowPowerSaver,
        PerfMode::ExtremePowerSaver,
    ];

    /// The CLI / provider-option name (`burst`, `high_performance`, …).
    pub fn name(self) -> &'static str {
        match self {
            PerfMode::Default => "default",
            PerfMode::Burst => "burst",
            PerfMode::SustainedHighPerformance => "sustained_high_performance",
            PerfMode::HighPerformance => "high_performance",
            PerfMode::Balanced => "balanced",
            PerfMode::LowBalanced => "low_balanced",
            PerfMode::HighPowerSaver => "high_power_saver",
            PerfMode::PowerSaver => "power_saver",
            PerfMode::LowPowerSaver => "low_power_saver",
            PerfMode::ExtremePowerSaver => "extreme_power_saver",
        }
    }

    /// The DCVS v3 vote for this mode, or `None` for [`PerfMode::Default`] (nothing is voted).
    pub fn dcvs_v3(self) -> Option<DcvsV3> {
        let (dcvs_on, sleep, corner) = match self {
            PerfMode::Default => return None,
            PerfMode::Burst => (
                false,
                SLEEP_MIN_LATENCY_US,
                DCVS_VOLTAGE_VCORNER_MAX_VOLTAGE_CORNER,
            ),
            PerfMode::SustainedHighPerformance | PerfMode::HighPerformance => {
                (false, SLEEP_LOW_LATENCY_US, DCVS_VOLTAGE_VCORNER_TURBO)
            }
            PerfMode::Balanced => (true, SLEEP_MEDIUM_LATENCY_US, DCVS_VOLTAGE_VCORNER_NOM_PLUS),
            PerfMode::LowBalanced => (true, SLEEP_MEDIUM_LATENCY_US, DCVS_VOLTAGE_VCORNER_NOM),
            PerfMode::HighPowerSaver => {
                (true, SLEEP_MEDIUM_LATENCY_US, DCVS_VOLTAGE_VCORNER_SVS_PLUS)
            }
            PerfMode::PowerSaver => (true, SLEEP_MEDIUM_LATENCY_US, DCVS_VOLTAGE_VCORNER_SVS),
            PerfMode::LowPowerSaver => (true, SLEEP_MEDIUM_LATENCY_US, DCVS_VOLTAGE_VCORNER_SVS2),
            PerfMode::ExtremePowerSaver => {
                (true, SLEEP_MEDIUM_LATENCY_US, DCVS_VOLTAGE_CORNER_DISABLE)
            }
        };
        let power_mode = if self == PerfMode::ExtremePowerSaver {
            QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_POWER_SAVER_MODE
        } else {
            QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_PERFORMANCE_MODE
        };
        Some(DcvsV3 {
            dcvs_enable: Some(dcvs_on),
            power_mode,
            sleep_latency_us: Some(sleep),
            sleep_disable: Some(false),
            bus: Some(VoltageCorners::all(corner)),
            core: Some(VoltageCorners::all(corner)),
        })
    }
}

impl fmt::Display for PerfMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown performance mode name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown HTP performance mode {0:?} (expected one of: {names})", names = PerfMode::ALL.map(PerfMode::name).join(", "))]
pub struct ParsePerfModeError(pub String);

impl FromStr for PerfMode {
    type Err = ParsePerfModeError;
    /// Accepts the names of [`PerfMode::name`], case-insensitively, with `-` for `_`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        PerfMode::ALL
            .into_iter()
            .find(|m| m.name() == norm)
            .ok_or_else(|| ParsePerfModeError(s.to_string()))
    }
}

/// An applied performance vote: the power config id stays alive (and with it the vote) until
/// this is dropped, which destroys the id and so withdraws the vote.
#[derive(Debug)]
pub struct PerfVote {
    mode: PerfMode,
    id: PowerConfigId,
}

impl PerfVote {
    /// Gets the perf infrastructure, creates a power config id on device 0 / core 0 and votes
    /// `mode`'s DCVS v3 settings. `Ok(None)` for [`PerfMode::Default`].
    pub fn apply(backend: &Backend, mode: PerfMode) -> Result<Option<PerfVote>> {
        let Some(dcvs) = mode.dcvs_v3() else {
            return Ok(None);
        };
        let infra = PerfInfrastructure::new(backend)?;
        let id = infra.create_power_config_id(0, 0)?;
        id.set(&[PowerConfig::DcvsV3(dcvs)])?;
        Ok(Some(PerfVote { mode, id }))
    }

    pub fn mode(&self) -> PerfMode {
        self.mode
    }

    pub fn power_config_id(&self) -> u32 {
        self.id.id()
    }
}
