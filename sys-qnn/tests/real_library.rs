//! Against the real `libQnnHtp.so` / `libQnnSystem.so` (the HTP simulator on x86_64 Linux).
//!
//! The libraries come from `TANDEM_QNN_LIB_DIR`, which `cargo xtask test` sets after fetching the
//! `onnxruntime-qnn` wheel (`cargo xtask qnn-libs`). Without it these tests print a skip notice,
//! except under `CI=true`, where a missing library is a failure.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use sys_qnn::config::QnnHtpGraph_CustomConfig_t;
use sys_qnn::*;

fn lib_dir() -> Option<PathBuf> {
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
                "{ENV_LIB_DIR} is not set; run `cargo xtask qnn-libs` and export \
                 {ENV_LIB_DIR}=<printed dir> to run the real-library QNN tests"
            ));
            None
        }
    }
}

type Lines = Arc<Mutex<Vec<(u32, String)>>>;

/// Log lines captured from the library (the sink is process-wide).
fn captured() -> &'static Lines {
    static LINES: OnceLock<Lines> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        sys_qnn::log::set_log_sink(Box::new(move |level, _ts, text| {
            if let Ok(mut l) = sink.lock() {
                l.push((level, text.to_string()));
            }
        }));
        lines
    })
}

struct Env {
    lib: QnnLibrary,
    backend: Backend,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Serializes these tests. Measured: when several test threads each create a backend and
/// execute graphs at once, the simulator's `graphExecute` intermittently fails with 1100
/// (QNN_COMMON_ERROR_GENERAL); one at a time it never does.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn env() -> Option<Env> {
    let dir = lib_dir()?;
    let guard = serial();
    captured();
    let lib = QnnLibrary::open(Some(&dir)).expect("open libQnnHtp");
    let log = Log::new(&lib, QNN_LOG_LEVEL_WARN).expect("logCreate");
    let backend = Backend::new(&lib, Some(&log)).expect("backendCreate");
    Some(Env {
        lib,
        backend,
        _serial: guard,
    })
}

// ---- fp16 helpers (round-to-nearest-even), to avoid a dependency ----
fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xFF) as i32;
    let man = b & 0x7F_FFFF;
    if exp == 0xFF {
        return sign | 0x7C00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1F {
        return sign | 0x7C00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = (man | 0x80_0000) >> (1 - e);
        let round = (m >> 12) & 1 != 0 && (m & 0x1FFF) != 0x1000 || (m >> 12) & 3 == 3;
        return sign | ((m >> 13) as u16 + round as u16);
    }
    let half = sign | ((e as u16) << 10) | (man >> 13) as u16;
    let rem = man & 0x1FFF;
    if rem > 0x1000 || (rem == 0x1000 && half & 1 == 1) {
        half + 1
    } else {
        half
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x3FF) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3FF) << 13)
        }
        0x1F => sign | 0x7F80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

fn bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn from_bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
fn bytes_f16(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| f32_to_f16(*x).to_le_bytes())
        .collect()
}
fn from_bytes_f16(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(2)
        .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
        .collect()
}

fn encode(v: &[f32], dt: Qnn_DataType_t) -> Vec<u8> {
    if dt == QNN_DATATYPE_FLOAT_16 {
        bytes_f16(v)
    } else {
        bytes_f32(v)
    }
}
fn decode(b: &[u8], dt: Qnn_DataType_t) -> Vec<f32> {
    if dt == QNN_DATATYPE_FLOAT_16 {
        from_bytes_f16(b)
    } else {
        from_bytes_f32(b)
    }
}

const M: usize = 4;
const K: usize = 8;
const N: usize = 16;

fn matmul_inputs() -> (Vec<f32>, Vec<f32>) {
    let a: Vec<f32> = (0..M * K)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.37)
        .collect();
    let b: Vec<f32> = (0..K * N)
        .map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.113)
        .collect();
    (a, b)
}

fn matmul_ref(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0f32; M * N];
    for i in 0..M {
        for j in 0..N {
            c[i * N + j] = (0..K).map(|k| a[i * K + k] * b[k * N + j]).sum();
        }
    }
    c
}

struct MatMulGraph {
    graph: Graph,
    input: TensorDesc,
    output: TensorDesc,
}

/// `out[1,M,N] = in[1,M,K] · w[K,N]`, `w` static.
fn build_matmul(
    context: &Context,
    name: &str,
    dt: Qnn_DataType_t,
    w: &[f32],
    opts: &GraphOptions,
) -> MatMulGraph {
    let graph = context.create_graph(name, opts).expect("graphCreate");
    let in_dims = [1, M as u32, K as u32];
    let w_dims = [K as u32, N as u32];
    let out_dims = [1, M as u32, N as u32];
    let input = graph
        .add_tensor(&TensorSpec::new(
            "x",
            QNN_TENSOR_TYPE_APP_WRITE,
            dt,
            &in_dims,
        ))
        .expect("input tensor");
    let w_bytes = encode(w, dt);
    let weight = graph
        .add_tensor(&TensorSpec::constant("w", dt, &w_dims, &w_bytes))
        .expect("weight tensor");
    let output = graph
        .add_tensor(&TensorSpec::new(
            "y",
            QNN_TENSOR_TYPE_APP_READ,
            dt,
            &out_dims,
        ))
        .expect("output tensor");
    graph
        .add_node(&OpSpec {
            name: "mm",
            package: QNN_OP_PACKAGE,
            type_name: "MatMul",
            params: &[
                Param::Scalar {
                    name: "transpose_in0",
                    value: Qnn_Scalar_t::bool8(false),
                },
                Param::Scalar {
                    name: "transpose_in1",
                    value: Qnn_Scalar_t::bool8(false),
                },
            ],
            inputs: &[&input, &weight],
            outputs: &[&output],
        })
        .expect("graphAddNode");
    graph.finalize(None).expect("graphFinalize");
    MatMulGraph {
        graph,
        input,
        output,
    }
}

fn run(
    graph: &Graph,
    input: &TensorDesc,
    output: &TensorDesc,
    x: &[u8],
    profile: Option<&Profile>,
) -> Vec<u8> {
    let mut out = vec![0u8; output.byte_size().unwrap()];
    graph
        .execute(&[(input, x)], &mut [(output, &mut out)], profile)
        .expect("graphExecute");
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn loads_the_htp_provider() {
    let Some(e) = env() else { return };
    assert_eq!(e.lib.provider_name(), "HTP_QTI_AISW");
    assert_eq!(e.lib.backend_id(), QNN_BACKEND_ID_HTP);
    let v = e.lib.api_version();
    assert_eq!(
        (v.core_api_version.major, v.core_api_version.minor),
        (2, 40)
    );
    let build = e.lib.build_id().unwrap();
    assert!(!build.is_empty());
    let msg = e.lib.error_message(QNN_GRAPH_ERROR_GRAPH_NOT_FINALIZED);
    assert!(msg.contains("GRAPH"), "{msg}");
    eprintln!(
        "loaded {} provider {} core {} backend {} build {build}",
        e.lib.path().display(),
        e.lib.provider_name(),
        v.core_api_version,
        v.backend_api_version
    );
    // The table this library fills: every slot we declare is non-null.
    let table = e.lib.table();
    // SAFETY-free check through Debug: count `None`s in the formatted table.
    let text = format!("{table:?}");
    assert!(!text.contains("None"), "a declared slot is null: {text}");
}

#[test]
fn matmul_fp32_fp16_roundtrip_through_context_binary() {
    let Some(e) = env() else { return };
    let sys = QnnSystemLibrary::open(e.lib.path().parent()).expect("open libQnnSystem");
    assert_eq!(sys.provider_name(), "SYSTEM_QTI_AISW");
    let (a, b) = matmul_inputs();
    let want = matmul_ref(&a, &b);
    for (dt, tol) in [(QNN_DATATYPE_FLOAT_32, 2e-2), (QNN_DATATYPE_FLOAT_16, 2e-2)] {
        let ctx = Context::new(&e.backend, None, &ContextOptions::default()).unwrap();
        let g = build_matmul(&ctx, "mm_graph", dt, &b, &GraphOptions::default());
        let x = encode(&a, dt);
        let first = run(&g.graph, &g.input, &g.output, &x, None);
        let got = decode(&first, dt);
        let diff = max_abs_diff(&got, &want);
        assert!(diff < tol, "dtype {dt:#x}: max diff {diff}");

        let binary = ctx.binary().expect("contextGetBinary");
        assert!(!binary.is_empty());
        // List the graphs and tensors of the binary through the System interface.
        let mut sc = SystemContext::new(&sys).unwrap();
        let info = sc.binary_info(&binary).expect("binary info");
        eprintln!(
            "binary info v{} backend {} build {} core {} soc {:?} model {}",
            info.info_version,
            info.backend_id,
            info.build_id,
            info.core_api_version,
            info.soc_version,
            info.soc_model
        );
        assert_eq!(info.backend_id, QNN_BACKEND_ID_HTP);
        assert_eq!(info.graphs.len(), 1);
        let gi = &info.graphs[0];
        assert_eq!(gi.name, "mm_graph");
        assert_eq!(gi.inputs.len(), 1);
        assert_eq!(gi.outputs.len(), 1);
        assert_eq!(gi.inputs[0].name, "x");
        assert_eq!(gi.inputs[0].dims, vec![1, M as u32, K as u32]);
        assert_eq!(gi.inputs[0].data_type, dt);
        assert_eq!(gi.inputs[0].id, g.input.id);
        assert_eq!(gi.outputs[0].name, "y");
        assert_eq!(gi.outputs[0].dims, vec![1, M as u32, N as u32]);
        assert_eq!(gi.outputs[0].id, g.output.id);
        drop(g);
        drop(ctx);

        let restored =
            Context::from_binary(&e.backend, None, &ContextOptions::default(), &binary, None)
                .expect("contextCreateFromBinary");
        let graph = restored.retrieve_graph("mm_graph").expect("graphRetrieve");
        let again = run(&graph, &gi.inputs[0], &gi.outputs[0], &x, None);
        assert_eq!(again, first, "restored graph output differs");
    }
}

#[test]
fn scalar_param_is_read_correctly() {
    // Softmax(beta) = softmax(beta * x): a misread 16-byte Qnn_Scalar_t would change beta.
    let Some(e) = env() else { return };
    let ctx = Context::new(&e.backend, None, &ContextOptions::default()).unwrap();
    let graph = ctx
        .create_graph("softmax", &GraphOptions::default())
        .unwrap();
    let dims = [1u32, 2, 8];
    let dt = QNN_DATATYPE_FLOAT_32;
    let x = graph
        .add_tensor(&TensorSpec::new("x", QNN_TENSOR_TYPE_APP_WRITE, dt, &dims))
        .unwrap();
    let y = graph
        .add_tensor(&TensorSpec::new("y", QNN_TENSOR_TYPE_APP_READ, dt, &dims))
        .unwrap();
    let beta = 2.5f32;
    graph
        .add_node(&OpSpec {
            name: "sm",
            package: QNN_OP_PACKAGE,
            type_name: "Softmax",
            params: &[
                Param::Scalar {
                    name: "axis",
                    value: Qnn_Scalar_t::u32(2),
                },
                Param::Scalar {
                    name: "beta",
                    value: Qnn_Scalar_t::f32(beta),
                },
            ],
            inputs: &[&x],
            outputs: &[&y],
        })
        .unwrap();
    graph.finalize(None).unwrap();
    let input: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) * 0.3).collect();
    let out = decode(&run(&graph, &x, &y, &bytes_f32(&input), None), dt);
    let mut want = Vec::new();
    for row in input.chunks(8) {
        let m = row.iter().cloned().fold(f32::MIN, f32::max);
        let e: Vec<f32> = row.iter().map(|v| ((v - m) * beta).exp()).collect();
        let s: f32 = e.iter().sum();
        want.extend(e.iter().map(|v| v / s));
    }
    let diff = max_abs_diff(&out, &want);
    assert!(
        diff < 5e-3,
        "softmax beta={beta}: max diff {diff}, got {out:?}"
    );
}

fn find<'a>(
    events: &'a [ProfileEvent],
    pred: &dyn Fn(&ProfileEvent) -> bool,
) -> Option<&'a ProfileEvent> {
    for ev in events {
        if pred(ev) {
            return Some(ev);
        }
        if let Some(found) = find(&ev.sub_events, pred) {
            return Some(found);
        }
    }
    None
}

#[test]
fn detailed_profile_reports_cycles_per_op() {
    let Some(e) = env() else { return };
    let ctx = Context::new(&e.backend, None, &ContextOptions::default()).unwrap();
    let (a, b) = matmul_inputs();
    let dt = QNN_DATATYPE_FLOAT_16;
    let g = build_matmul(&ctx, "mm_prof", dt, &b, &GraphOptions::default());
    let profile = Profile::new(&e.backend, QNN_PROFILE_LEVEL_DETAILED).unwrap();
    run(
        &g.graph,
        &g.input,
        &g.output,
        &encode(&a, dt),
        Some(&profile),
    );
    let events = profile.events().unwrap();
    let dump = format!("{events:#?}");
    let cycles = find(&events, &|ev| {
        ev.identifier
            .contains("Accelerator (execute) time (cycles)")
    })
    .unwrap_or_else(|| panic!("no accelerator cycles event in {dump}"));
    assert!(cycles.value > 0, "{cycles:?}");
    assert!(
        !cycles.sub_events.is_empty(),
        "no per-op sub-events: {cycles:?}"
    );
    assert!(
        cycles
            .sub_events
            .iter()
            .any(|s| s.identifier.contains("mm")),
        "no sub-event names the op `mm`: {cycles:#?}"
    );
    eprintln!("cycles event: {cycles:#?}");
}

#[test]
fn htp_device_and_graph_options_are_read() {
    let Some(e) = env() else { return };
    // The HTP device custom config: SoC 57 (SM8650) is accepted only when the union is read at
    // offset 8 (measured: at 4, 12 or 16 the library sees no SoC and fails with 14001), and an
    // unknown model is refused.
    let bad = Device::new(
        &e.lib,
        None,
        &DeviceOptions {
            soc_model: Some(12345),
            arch: None,
        },
    );
    assert!(bad.is_err(), "unknown SoC model accepted");
    // VTCM size is read as a u32 at offset 8 of the HTP graph custom config (option 3).
    {
        let ctx = Context::new(&e.backend, None, &ContextOptions::default()).unwrap();
        captured().lock().unwrap().clear();
        let r = ctx.create_graph_raw(
            "vtcm_probe",
            &[QnnHtpGraph_CustomConfig_t::vtcm_size_in_mb(4096)],
        );
        let lines = captured().lock().unwrap().clone();
        assert!(r.is_err(), "4096 MB of VTCM accepted");
        assert!(
            lines.iter().any(|(_, l)| l.contains("vtcmSizeInMB: 4096")),
            "{lines:?}"
        );
    }
    let device = Device::new(
        &e.lib,
        None,
        &DeviceOptions {
            soc_model: Some(57),
            arch: None,
        },
    )
    .expect("deviceCreate with SoC model");
    let (a, b) = matmul_inputs();
    let want = matmul_ref(&a, &b);
    let dt = QNN_DATATYPE_FLOAT_32;
    let x = encode(&a, dt);
    let mut diffs = Vec::new();
    for precision in [Precision::Float32, Precision::Float16] {
        let ctx = Context::new(&e.backend, Some(&device), &ContextOptions::default()).unwrap();
        let opts = GraphOptions {
            precision: Some(precision),
            vtcm_size_mb: Some(8),
            optimization_level: Some(3.0),
            num_hvx_threads: None,
        };
        let g = build_matmul(&ctx, "mm_opts", dt, &b, &opts);
        let got = decode(&run(&g.graph, &g.input, &g.output, &x, None), dt);
        diffs.push(max_abs_diff(&got, &want));
    }
    eprintln!(
        "max diff vs f32 reference: fp32 precision {}, fp16 precision {}",
        diffs[0], diffs[1]
    );
    assert!(diffs[1] < 5e-2, "{diffs:?}");
}

#[test]
fn weight_sharing_keeps_one_copy() {
    let Some(e) = env() else { return };
    let sys = QnnSystemLibrary::open(e.lib.path().parent()).unwrap();
    let (_, b) = matmul_inputs();
    // A larger weight so the copy dominates the binary: 256×256 fp16 = 128 KiB.
    let w: Vec<f32> = (0..256 * 256)
        .map(|i| ((i % 97) as f32 - 48.0) * 0.01)
        .collect();
    let _ = b;
    let mut sizes = Vec::new();
    for sharing in [false, true] {
        let opts = ContextOptions {
            weight_sharing: sharing,
        };
        let ctx = Context::new(&e.backend, None, &opts).unwrap();
        for (gname, rows) in [("ar4", 4u32), ("ar16", 16u32)] {
            let g = ctx.create_graph(gname, &GraphOptions::default()).unwrap();
            let dt = QNN_DATATYPE_FLOAT_16;
            let in_dims = [1, rows, 256];
            let out_dims = [1, rows, 256];
            let wd = [256u32, 256];
            let wb = bytes_f16(&w);
            let x = g
                .add_tensor(&TensorSpec::new(
                    "x",
                    QNN_TENSOR_TYPE_APP_WRITE,
                    dt,
                    &in_dims,
                ))
                .unwrap();
            let wt = g
                .add_tensor(&TensorSpec::constant("shared_w", dt, &wd, &wb))
                .unwrap();
            let y = g
                .add_tensor(&TensorSpec::new(
                    "y",
                    QNN_TENSOR_TYPE_APP_READ,
                    dt,
                    &out_dims,
                ))
                .unwrap();
            g.add_node(&OpSpec {
                name: "mm",
                package: QNN_OP_PACKAGE,
                type_name: "MatMul",
                params: &[],
                inputs: &[&x, &wt],
                outputs: &[&y],
            })
            .unwrap();
            g.finalize(None).unwrap();
        }
        let binary = ctx.binary().unwrap();
        let info = SystemContext::new(&sys)
            .unwrap()
            .binary_info(&binary)
            .unwrap();
        let names: Vec<&str> = info.graphs.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names.contains(&"ar4") && names.contains(&"ar16"),
            "{names:?}"
        );
        for g in &info.graphs {
            let rows = if g.name == "ar4" { 4 } else { 16 };
            assert_eq!(g.inputs[0].dims, vec![1, rows, 256], "{}", g.name);
        }
        sizes.push(binary.len());
    }
    eprintln!(
        "two graphs over one 128 KiB weight: {} bytes without sharing, {} with",
        sizes[0], sizes[1]
    );
    assert!(
        sizes[1] + 100 * 1024 < sizes[0],
        "weight sharing did not drop a copy: {sizes:?}"
    );
}

#[test]
fn wrong_version_is_refused_by_the_check() {
    let found = Qnn_Version_t {
        major: 2,
        minor: 14,
        patch: 0,
    };
    assert_eq!(check_core_api_version(found), Err(SUPPORTED_CORE_API));
}
