//! The HTP performance mode ([`PerfMode`]): name parsing, the DCVS v3 table, and what the x86_64
//! simulator does with the vote (it runs only with `TANDEM_QNN_LIB_DIR`; SKIPPED otherwise, a
//! failure under `CI=true`).
//!
//! Reference for the table: ONNX Runtime's QNN execution provider,
//! `HtpPowerConfigManager::SetHtpPerformancePowerConfig` (provider option
//! `htp_performance_mode`), whose values ExecuTorch's Qualcomm `HtpDevice::SetVotePowerConfig`
//! shares (sleep latencies 40 / 100 / 1000 µs), and the SDK's documented enum values
//! (`QnnHtpPerfInfrastructure_VoltageCorner_t`: SVS2 0x30, SVS 0x40, SVS_PLUS 0x50, NOM 0x60,
//! NOM_PLUS 0x70, TURBO 0x80, MAX 0xA0, DISABLE 0x10; power modes PERFORMANCE 0x10,
//! POWER_SAVER 0x4). On-device effect of any mode is **not** verified here.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sys_qnn::perf::QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIG_MAX_RPC_POLLING_TIME;
use sys_qnn::{PerfInfrastructure, PowerConfig};
use tandem_graphs::model::load_weights;
use tandem_qnn::{DeviceOptions, PerfMode, QnnDevice, QnnPrefillBuilder};

#[test]
fn names_round_trip() {
    for m in PerfMode::ALL {
        assert_eq!(m.name().parse::<PerfMode>().unwrap(), m);
        assert_eq!(m.to_string(), m.name());
    }
    assert_eq!(
        "High-Performance".parse::<PerfMode>().unwrap(),
        PerfMode::HighPerformance
    );
    assert_eq!(
        " sustained_high_performance ".parse::<PerfMode>().unwrap(),
        PerfMode::SustainedHighPerformance
    );
    let err = "turbo".parse::<PerfMode>().unwrap_err().to_string();
    assert!(
        err.contains("\"turbo\"") && err.contains("extreme_power_saver"),
        "{err}"
    );
    assert_eq!(PerfMode::default(), PerfMode::Default);
    let names: std::collections::HashSet<_> = PerfMode::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(names.len(), PerfMode::ALL.len());
}

#[test]
fn dcvs_table_matches_reference() {
    const PERF: u32 = 0x10; // QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_PERFORMANCE_MODE
    const SAVER: u32 = 0x4; // QNN_HTP_PERF_INFRASTRUCTURE_POWERMODE_POWER_SAVER_MODE
                            // (mode, dcvs enabled, power mode, sleep latency µs, bus = core corner for min/target/max)
    let table = [
        (PerfMode::Burst, false, PERF, 40, 0xA0),
        (PerfMode::SustainedHighPerformance, false, PERF, 100, 0x80),
        (PerfMode::HighPerformance, false, PERF, 100, 0x80),
        (PerfMode::Balanced, true, PERF, 1000, 0x70),
        (PerfMode::LowBalanced, true, PERF, 1000, 0x60),
        (PerfMode::HighPowerSaver, true, PERF, 1000, 0x50),
        (PerfMode::PowerSaver, true, PERF, 1000, 0x40),
        (PerfMode::LowPowerSaver, true, PERF, 1000, 0x30),
        (PerfMode::ExtremePowerSaver, true, SAVER, 1000, 0x10),
    ];
    assert!(
        PerfMode::Default.dcvs_v3().is_none(),
        "default votes nothing"
    );
    assert_eq!(table.len() + 1, PerfMode::ALL.len());
    for (mode, dcvs_on, power_mode, sleep, corner) in table {
        let r = mode.dcvs_v3().unwrap().to_raw(42);
        let got = (
            r.context_id,
            (r.set_dcvs_enable, r.dcvs_enable != 0, r.power_mode),
            (r.set_sleep_latency, r.sleep_latency),
            (r.set_sleep_disable, r.sleep_disable),
            (r.set_bus_params, r.bus_voltage_corner_min),
            (r.bus_voltage_corner_target, r.bus_voltage_corner_max),
            (r.set_core_params, r.core_voltage_corner_min),
            (r.core_voltage_corner_target, r.core_voltage_corner_max),
        );
        let want = (
            42,
            (1, dcvs_on, power_mode),
            (1, sleep),
            (1, 0),
            (1, corner),
            (corner, corner),
            (1, corner),
            (corner, corner),
        );
        assert_eq!(got, want, "{mode}");
    }
}

/// What the simulator's perf infrastructure does, call by call (asserting what was observed).
#[test]
fn simulator_perf_infrastructure() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let dev = QnnDevice::open(Some(&dir), &DeviceOptions::default()).unwrap();
    let infra = PerfInfrastructure::new(dev.backend()).expect("deviceGetInfrastructure");
    let raw = infra.raw();
    eprintln!("perf infrastructure: {raw:?}");
    let id = infra.create_power_config_id(0, 0);
    eprintln!(
        "createPowerConfigId(0, 0): {:?}",
        id.as_ref().map(|i| i.id())
    );
    let id = id.expect("createPowerConfigId");
    for mode in PerfMode::ALL {
        if let Some(d) = mode.dcvs_v3() {
            let r = id.set(&[PowerConfig::DcvsV3(d)]);
            eprintln!("setPowerConfig({mode}): {r:?}");
            r.unwrap_or_else(|e| panic!("{mode}: {e}"));
        }
    }
    let rpc = id.set(&[
        PowerConfig::RpcControlLatencyUs(100),
        PowerConfig::RpcPollingTimeUs(
            QNN_HTP_PERF_INFRASTRUCTURE_POWER_CONFIG_MAX_RPC_POLLING_TIME,
        ),
    ]);
    eprintln!("setPowerConfig(rpc latency 100, polling 9999): {rpc:?}");
    rpc.unwrap();
    let second = infra.create_power_config_id(0, 0).unwrap();
    assert_ne!(second.id(), id.id(), "a fresh power config id per call");
    // Observed: a device/core absent from the simulator's platform info is refused.
    let bad = infra.create_power_config_id(7, 3).unwrap_err().to_string();
    eprintln!("createPowerConfigId(7, 3): {bad}");
    assert!(
        bad.contains("error 13001") && bad.contains("INVALID_INPUT"),
        "{bad}"
    );
    let destroyed = id.destroy();
    eprintln!("destroyPowerConfigId: {destroyed:?}");
    destroyed.unwrap();
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// `.perf_mode(Burst)` is voted on the simulator (the report says so) and prefill gives
/// bit-identical logits to a run without it: the vote changes clocks, never results.
#[test]
fn burst_prefill_runs_and_matches_default() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let m = load_weights(&fixture_dir("qwen2-tied").join("hf-f32")).unwrap();
    let tokens: Vec<u32> = (1..20).collect();
    let run = |mode: Option<PerfMode>| {
        let mut b = QnnPrefillBuilder::new()
            .lib_dir(&dir)
            .chunk_sizes(&[8])
            .ctx(64)
            .no_cache();
        if let Some(mode) = mode {
            b = b.perf_mode(mode);
        }
        let mut p = b.build(&m.spec, &m.weights).unwrap();
        let report = (
            p.report().clone(),
            p.perf_mode(),
            p.perf_mode_error().map(str::to_owned),
            p.perf_mode_applied().map_err(str::to_owned),
        );
        let vote = p.perf_vote().map(|v| (v.mode(), v.power_config_id()));
        let (logits, _) = p.run_prompt(&tokens).unwrap();
        (report, vote, logits)
    };
    let (base_report, base_vote, base) = run(None);
    assert_eq!(base_report.1, PerfMode::Default);
    assert_eq!(base_report.3, Ok(PerfMode::Default));
    assert!(base_vote.is_none());

    let (report, vote, burst) = run(Some(PerfMode::Burst));
    eprintln!("burst report: {report:?}, vote {vote:?}");
    assert_eq!(report.1, PerfMode::Burst);
    assert_eq!(report.2, None);
    assert_eq!(report.3, Ok(PerfMode::Burst));
    assert_eq!(vote.map(|v| v.0), Some(PerfMode::Burst));
    assert_eq!(burst.len(), base.len());
    assert!(
        burst
            .iter()
            .zip(&base)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "logits differ with the burst vote"
    );
}
