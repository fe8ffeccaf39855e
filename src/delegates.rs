//! The registry: the prefill delegates compiled into this build, as the contract's
//! [`Delegate`]s. This is the one place that names a delegate crate; the scheduler only sees
//! `Arc<dyn Delegate<LoadedModel>>`.
//!
//! | delegate | crate | compiled in | runtime opened at run time |
//! |---|---|---|---|
//! | `qnn` | `tandem-qnn` | always | `libQnnHtp.so` + `libQnnSystem.so` (`dlopen`) |
//! | `coreml` | — | not yet (a later issue; needs macOS/iOS) | — |
//!
//! Adding a delegate: see "Add a delegate" in `docs/architecture.md`.

use std::sync::Arc;

use tandem_graphs::LoadedModel;
use tandem_hal::{Availability, Delegate, Unavailable};
use tandem_qnn::{QnnDelegate, QnnOptions};

/// Names of delegates this project knows but this build does not contain, with why.
pub const NOT_COMPILED_IN: &[(&str, &str)] = &[(
    "coreml",
    "not implemented yet (Core ML prefill is a later issue; it needs macOS/iOS)",
)];

/// The QNN HTP delegate with these options.
pub fn qnn(options: QnnOptions) -> Arc<dyn Delegate<LoadedModel>> {
    Arc::new(QnnDelegate::new(options))
}

/// Every delegate compiled in, in preference order (the first available one prefills).
pub fn compiled_in(qnn_options: QnnOptions) -> Vec<Arc<dyn Delegate<LoadedModel>>> {
    vec![qnn(qnn_options)]
}

/// Probes every delegate compiled in, then lists the known ones that are not, so `tandem
/// devices` shows each delegate exactly once.
pub fn probe_all(qnn_options: QnnOptions) -> Vec<(&'static str, Availability)> {
    let mut all: Vec<(&'static str, Availability)> = compiled_in(qnn_options)
        .iter()
        .map(|d| (d.name(), d.probe()))
        .collect();
    for &(name, why) in NOT_COMPILED_IN {
        all.push((
            name,
            Availability::Unavailable(Unavailable::because(name, why)),
        ));
    }
    all
}

/// The engine's NPU options with the first compiled-in delegate (default options: libraries
/// from `TANDEM_QNN_LIB_DIR`, `QNN_SDK_ROOT` or the system path) and per-chunk profiling, as
/// `tandem run` uses them. `EngineOptions::default()` has no delegate, since the scheduler
/// does not know which are compiled in.
pub fn default_npu() -> tandem_scheduler::NpuOptions {
    tandem_scheduler::NpuOptions {
        delegate: compiled_in(QnnOptions::default()).into_iter().next(),
        profiling: true,
        ..tandem_scheduler::NpuOptions::default()
    }
}

/// What `tandem devices --json` prints (and `tandem_devices` returns through the C ABI): the CPU,
/// then each delegate of `probed` (from [`probe_all`]) — available with its library, version and
/// target, or unavailable with the reason, every library path tried, and the versions found and
/// wanted.
pub fn devices_json(probed: &[(&'static str, Availability)]) -> serde_json::Value {
    use serde_json::json;
    let mut doc = serde_json::Map::new();
    doc.insert(
        "cpu".into(),
        json!({
            "available": true,
            "isa": tandem_cpu::kernels::isa_name(),
            "physical_cores": tandem_cpu::pool::physical_cores(),
        }),
    );
    for (name, availability) in probed {
        let entry = match availability {
            Availability::Available(d) => {
                let mut e = json!({
                    "available": true,
                    "library": d.library,
                    "version": d.version,
                    "target": d.device,
                    "simulator": d.simulated,
                });
                for (k, v) in &d.details {
                    // Numbers stay numbers (`soc_model: 69`); `-` means not set.
                    e[k] = match v.parse::<u64>() {
                        Ok(n) => json!(n),
                        Err(_) if v == "-" => serde_json::Value::Null,
                        Err(_) => json!(v),
                    };
                }
                e
            }
            Availability::Unavailable(u) => json!({
                "available": false,
                "reason": u.to_string(),
                "tried": u.tried.iter().map(|(p, why)| json!({"path": p, "error": why})).collect::<Vec<_>>(),
                "version_found": u.version_found,
                "version_wanted": u.version_wanted,
            }),
        };
        doc.insert((*name).to_string(), entry);
    }
    serde_json::Value::Object(doc)
}
