//! Shared by the real-library tests: where the QNN libraries are, one-at-a-time QNN use, and
//! error metrics.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use sys_qnn::{Context, ContextOptions, DeviceOptions, GraphOptions, QNN_DATATYPE_FLOAT_16};
use tandem_qnn::conv;
use tandem_qnn::lower::{LoweredWeights, Lowerer};
use tandem_qnn::QnnDevice;

pub const ENV_LIB_DIR: &str = sys_qnn::ENV_LIB_DIR;

/// The QNN library folder, or `None` (test prints SKIPPED). Under `CI=true` a missing library
/// fails the test (same convention as sys-qnn's real-library tests).
pub fn lib_dir() -> Option<PathBuf> {
    match std::env::var_os(ENV_LIB_DIR) {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "{ENV_LIB_DIR} is not set under CI=true: the QNN libraries are required \
                     (run `cargo xtask qnn-libs`, or `cargo xtask test` which sets it)"
                );
            }
            sys_qnn::report_skipped_test(&format!(
                "{ENV_LIB_DIR} is not set; the QNN delegate tests need libQnnHtp"
            ));
            None
        }
    }
}

/// Serializes QNN use within a test binary: concurrent graphExecute calls from several
/// threads/backends intermittently fail with error 1100 on the simulator.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rounds through fp16 (what the graph sees of an f32 input).
pub fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

pub struct Diff {
    pub max_abs: f32,
    pub rel_rms: f32,
    pub ref_max: f32,
}

pub fn diff(got: &[f32], want: &[f32]) -> Diff {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let mut max_abs = 0f32;
    let (mut num, mut den, mut ref_max) = (0f64, 0f64, 0f32);
    for (&g, &w) in got.iter().zip(want) {
        assert!(g.is_finite(), "non-finite output {g}");
        max_abs = max_abs.max((g - w).abs());
        num += ((g - w) as f64).powi(2);
        den += (w as f64).powi(2);
        ref_max = ref_max.max(w.abs());
    }
    Diff {
        max_abs,
        rel_rms: (num / den.max(1e-30)).sqrt() as f32,
        ref_max,
    }
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub type Build<'a> = dyn FnOnce(&mut Lowerer<'_>) -> tandem_qnn::Result<()> + 'a;

/// Builds a graph with `build`, runs it on `inputs` (f32, sent as fp16) and returns every graph
/// output as f32, prepared for the library's default target.
pub fn run_graph(
    weights: &LoweredWeights,
    build: Box<Build<'_>>,
    inputs: &[(&str, &[f32])],
) -> tandem_qnn::Result<HashMap<String, Vec<f32>>> {
    run_graph_on(&DeviceOptions::default(), weights, build, inputs)
}

/// [`run_graph`] prepared for `target` (a SoC model).
pub fn run_graph_on(
    target: &DeviceOptions,
    weights: &LoweredWeights,
    build: Box<Build<'_>>,
    inputs: &[(&str, &[f32])],
) -> tandem_qnn::Result<HashMap<String, Vec<f32>>> {
    let dir = lib_dir().expect("checked by caller");
    let dev = QnnDevice::open(Some(&dir), target)?;
    let ctx = Context::new(
        dev.backend(),
        dev.target_device(),
        &ContextOptions::default(),
    )?;
    let graph = ctx.create_graph("op_test", &GraphOptions::default())?;
    let mut lw = Lowerer::new(&graph, weights);
    build(&mut lw)?;
    let (ins, outs) = (lw.inputs.clone(), lw.outputs.clone());
    drop(lw);
    graph.finalize(None)?;
    let bytes: Vec<Vec<u8>> = ins
        .iter()
        .map(|t| {
            let (_, v) = inputs
                .iter()
                .find(|(n, _)| *n == t.name)
                .unwrap_or_else(|| panic!("no data for input {}", t.name));
            assert_eq!(t.data_type, QNN_DATATYPE_FLOAT_16);
            conv::f32_to_f16_bytes(v)
        })
        .collect();
    let in_list: Vec<_> = ins
        .iter()
        .zip(&bytes)
        .map(|(t, b)| (t, b.as_slice()))
        .collect();
    let mut out_bufs: Vec<Vec<u8>> = outs
        .iter()
        .map(|t| vec![0u8; t.byte_size().unwrap()])
        .collect();
    let mut out_list: Vec<_> = outs
        .iter()
        .zip(out_bufs.iter_mut())
        .map(|(t, b)| (t, b.as_mut_slice()))
        .collect();
    graph.execute(&in_list, &mut out_list, None)?;
    Ok(outs
        .iter()
        .zip(out_bufs)
        .map(|(t, b)| (t.name.clone(), conv::f16_bytes_to_f32(&b)))
        .collect())
}

pub fn check(what: &str, got: &[f32], want: &[f32], rel: f32) {
    let d = diff(got, want);
    eprintln!(
        "{what}: max abs err {:.2e} (ref max {:.3}, {:.2e} of it), rel RMS {:.2e}",
        d.max_abs,
        d.ref_max,
        d.max_abs / d.ref_max,
        d.rel_rms
    );
    assert!(
        d.max_abs <= rel * d.ref_max,
        "{what}: max abs err {} > {rel} × {}",
        d.max_abs,
        d.ref_max
    );
}
