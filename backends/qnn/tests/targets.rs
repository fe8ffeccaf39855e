//! The target table ([`tandem_qnn::target`]) against the running HTP library, and the
//! ahead-of-time flow an integrator uses: `compile` for a SoC, then restore that binary.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use sys_qnn::*;
use tandem_qnn::lower::{LoweredWeights, Lowerer};
use tandem_qnn::KNOWN_SOCS;

/// What the library says about one SoC while preparing a small fp16 graph for it.
#[derive(Debug, Default)]
struct Observed {
    arch: Option<u32>,
    name: Option<String>,
    fp16: Option<bool>,
    cost_model: bool,
}

fn observe(dir: &Path, soc: u32, lines: &Arc<Mutex<Vec<String>>>) -> Observed {
    lines.lock().unwrap().clear();
    let lib = QnnLibrary::open(Some(dir)).expect("libQnnHtp");
    let log = Log::new(&lib, QNN_LOG_LEVEL_VERBOSE).expect("logCreate");
    let backend = Backend::new(&lib, Some(&log)).expect("backendCreate");
    let target = DeviceOptions {
        soc_model: Some(soc),
        arch: None,
    };
    let device = Device::new(&lib, Some(&log), &target).expect("deviceCreate");
    let ctx = Context::new(&backend, Some(&device), &ContextOptions::default()).expect("context");
    let graph = ctx
        .create_graph("probe", &GraphOptions::default())
        .expect("graph");
    let w = vec![0.25f32; 64 * 64];
    let weights = LoweredWeights::from_f32(&[("w", vec![64, 64], &w)]);
    let mut cost_model = false;
    let built = {
        let mut lw = Lowerer::new(&graph, &weights);
        lw.mark_output("y");
        lw.input("x", &[32, 64], QNN_DATATYPE_FLOAT_16)
            .and_then(|x| lw.linear(&x, "w", None, "y"))
            .map(drop)
    };
    if built.is_ok() {
        let profile = Profile::new(&backend, QNN_PROFILE_LEVEL_DETAILED).expect("profile");
        if graph.finalize(Some(&profile)).is_ok() {
            fn any(evs: &[ProfileEvent], key: &str) -> bool {
                evs.iter()
                    .any(|e| e.identifier.contains(key) || any(&e.sub_events, key))
            }
            cost_model = any(
                &profile.events().expect("events"),
                "Simulated (Accelerator exec time us)",
            );
        }
    }
    let text = lines.lock().unwrap().join("\n");
    let after = |key: &str| {
        text.find(key).map(|i| {
            text[i + key.len()..]
                .split(|c: char| c.is_whitespace() || c == ',')
                .next()
                .unwrap_or("")
                .to_string()
        })
    };
    Observed {
        arch: after("will overwrite it to ").and_then(|a| a.parse().ok()),
        name: after("unsupported on soc "),
        fp16: if text.contains("doesn't support FP16") {
            Some(false)
        } else if text.contains("SocModel supports FP16") {
            Some(true)
        } else {
            None
        },
        cost_model,
    }
}

/// Every row of the table is what this library reports: arch, part name, fp16 support and
/// whether finalize carries the cost-model estimate. Fails when a new wheel changes its mind.
#[test]
fn soc_table_matches_the_library() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    sys_qnn::log::set_log_sink(Box::new(move |_level, _ts, text| {
        sink.lock().unwrap().push(text.to_string());
    }));
    for row in KNOWN_SOCS {
        let seen = observe(&dir, row.soc_model, &lines);
        eprintln!("SoC {}: table {row:?}, library {seen:?}", row.soc_model);
        // The library only logs the arch when it differs from its default (68).
        assert_eq!(
            seen.arch.unwrap_or(68),
            row.htp_arch,
            "SoC {}",
            row.soc_model
        );
        assert_eq!(seen.name.as_deref(), row.name, "SoC {}", row.soc_model);
        assert_eq!(seen.fp16, Some(row.fp16), "SoC {}", row.soc_model);
        assert_eq!(seen.cost_model, row.cost_model, "SoC {}", row.soc_model);
    }
    sys_qnn::log::clear_log_sink();
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/{name}/hf-f32"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tandem-targets-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `tandem compile --soc N` then a run that restores the binary: restored and correct, never a
/// crash. A weight-shared binary (the phone default) is refused on this host before the library
/// sees it, and the run finalizes instead. (`tests/cli.rs` runs the same through the binary.)
#[test]
fn compile_for_a_soc_then_restore() {
    let Some(dir) = lib_dir() else { return };
    let _g = serial();
    let model = tandem_graphs::model::load_weights(&fixture("llama-gqa")).unwrap();
    let cache = temp_dir("aot");
    for soc in [57u32, 69] {
        for sharing in [false, true] {
            let build = || {
                tandem_qnn::QnnPrefillBuilder::new()
                    .lib_dir(&dir)
                    .chunk_sizes(&[8, 32])
                    .ctx(64)
                    .soc_model(soc)
                    .weight_sharing(sharing)
                    .cache_dir(&cache)
                    .build(&model.spec, &model.weights)
            };
            let mut first = build().unwrap();
            assert_eq!(first.report().source, tandem_hal::PreparedFrom::Finalized);
            let (want, _) = first.run_prompt(&[5, 6, 7, 8, 9, 10, 11, 12, 13]).unwrap();
            drop(first);
            let mut second = build().unwrap();
            let r = second.report().clone();
            if sharing && cfg!(target_arch = "x86_64") {
                assert_eq!(r.source, tandem_hal::PreparedFrom::Finalized, "{r:?}");
                let why = r.cache_rejected.unwrap_or_default();
                assert!(why.contains("weight sharing"), "{why}");
            } else {
                assert_eq!(r.source, tandem_hal::PreparedFrom::Restored, "{r:?}");
            }
            let (got, _) = second.run_prompt(&[5, 6, 7, 8, 9, 10, 11, 12, 13]).unwrap();
            assert_eq!(
                got, want,
                "SoC {soc} sharing {sharing}: restored graphs differ"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&cache);
}
