//! Per-op differential tests of the lowering pieces on the real HTP simulator against plain-Rust
//! f32 references computed on the fp16-rounded inputs (so only the graph's own arithmetic is
//! measured).
//!
//! Tolerances, as a fraction of the reference's largest magnitude: fp16 has a unit roundoff of
//! 2⁻¹¹ ≈ 4.9e-4. An op chain of k roundings plus a reduction of K terms (error growing like
//! √K ulps with random signs) stays within a few 1e-3: RmsNorm and RoPE (≤ 4 roundings) 4e-3;
//! linear/SwiGLU/attention (K = 64–128 products, softmax exp, two matmuls) 1e-2.

mod common;

use common::*;
use sys_qnn::{DeviceOptions, QNN_DATATYPE_FLOAT_16};
use tandem_qnn::conv;
use tandem_qnn::lower::LoweredWeights;

fn rms_norm_ref(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    x.chunks(g.len())
        .flat_map(|r| {
            let ms = r.iter().map(|v| v * v).sum::<f32>() / r.len() as f32;
            let s = 1.0 / (ms + eps).sqrt();
            r.iter().zip(g).map(move |(v, w)| v * s * w)
        })
        .collect()
}

fn matmul_t_ref(x: &[f32], w: &[f32], rows: usize, k: usize, out: usize) -> Vec<f32> {
    let mut y = vec![0.0; rows * out];
    for r in 0..rows {
        for o in 0..out {
            y[r * out + o] = (0..k).map(|i| x[r * k + i] * w[o * k + i]).sum();
        }
    }
    y
}

/// The targets every op test runs for: the default (SM8750 on x86_64 hosts) and two named
/// Snapdragon SoCs (SM8650 = 57, SM8550 = 43).
fn targets() -> Vec<DeviceOptions> {
    [None, Some(57), Some(43)]
        .into_iter()
        .map(|soc_model| DeviceOptions {
            soc_model,
            arch: None,
        })
        .collect()
}

/// RmsNorm over every shape the models use — rows × hidden and per-head `[N, heads, d]` — with
/// N on both sides of 8 (the HTP kernel's row tile), as a lone op and as two consumers of one
/// tensor (which the graph optimizer lays out together), on each target.
#[test]
fn rms_norm_sweep_rows_heads_and_targets() {
    let Some(_) = lib_dir() else { return };
    let _g = serial();
    let mut cases = 0;
    for target in targets() {
        for n in [1u32, 8, 9, 16, 128] {
            for (h, d) in [(1u32, 64u32), (4, 32), (8, 128), (1, 896)] {
                let len = (n * h * d) as usize;
                let x = f16_round(&rand_vec(len, 1).iter().map(|v| v * 3.0).collect::<Vec<_>>());
                let gamma = f16_round(
                    &rand_vec(d as usize, 2)
                        .iter()
                        .map(|v| 1.0 + 0.2 * v)
                        .collect::<Vec<_>>(),
                );
                let w = LoweredWeights::from_f32(&[("g", vec![d], &gamma)]);
                let out = run_graph_on(
                    &target,
                    &w,
                    Box::new(|lw| {
                        lw.mark_output("heads");
                        lw.mark_output("rows");
                        let x = lw.input("x", &[n, h, d], QNN_DATATYPE_FLOAT_16)?;
                        let g = lw.weight("g")?;
                        lw.rms_norm(&x, &g, 1e-6, "heads")?;
                        let x2 = lw.reshape(&x, &[n * h, d], "x_rows")?;
                        lw.rms_norm(&x2, &g, 1e-6, "rows")?;
                        Ok(())
                    }),
                    &[("x", &x)],
                )
                .unwrap();
                let want = rms_norm_ref(&x, &gamma, 1e-6);
                let what = format!("rms_norm {:?} [{n},{h},{d}]", target.soc_model);
                check(&format!("{what} per head"), &out["heads"], &want, 4e-3);
                check(&format!("{what} rows"), &out["rows"], &want, 4e-3);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 3 * 5 * 4);
}

#[test]
fn linear_with_bias_uses_weights_as_stored() {
    let Some(_) = lib_dir() else { return };
    let _g = serial();
    let x = f16_round(&rand_vec(5 * 64, 4));
    let wt = f16_round(
        &rand_vec(48 * 64, 5)
            .iter()
            .map(|v| v * 0.2)
            .collect::<Vec<_>>(),
    );
    let b = f16_round(&rand_vec(48, 6));
    let w = LoweredWeights::from_f32(&[("w", vec![48, 64], &wt), ("b", vec![48], &b)]);
    let out = run_graph(
        &w,
        Box::new(|lw| {
            lw.mark_output("y");
            let x = lw.input("x", &[5, 64], QNN_DATATYPE_FLOAT_16)?;
            lw.linear(&x, "w", Some("b"), "y")?;
            Ok(())
        }),
        &[("x", &x)],
    )
    .unwrap();
    let mut want = matmul_t_ref(&x, &wt, 5, 64, 48);
    for r in want.chunks_mut(48) {
        r.iter_mut().zip(&b).for_each(|(y, b)| *y += b);
    }
    check("linear [5,64]x[48,64]^T + b", &out["y"], &want, 1e-2);
}

#[test]
fn rope_block_matches_rotate_half() {
    let Some(_) = lib_dir() else { return };
    let _g = serial();
    let (heads, n, d, start) = (3usize, 5usize, 16usize, 7usize);
    let inv_freq: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32))
        .collect();
    let (cos, sin) = conv::rope_tables(&inv_freq, d, start, n);
    let (cos, sin) = (f16_round(&cos), f16_round(&sin));
    let x = f16_round(
        &rand_vec(heads * n * d, 7)
            .iter()
            .map(|v| v * 2.0)
            .collect::<Vec<_>>(),
    );
    let rot = conv::rotate_half_matrix(d);
    let w = LoweredWeights::from_f32(&[("rope.rotate_half", vec![d as u32, d as u32], &rot)]);
    let out = run_graph(
        &w,
        Box::new(|lw| {
            lw.mark_output("y");
            let x = lw.input(
                "x",
                &[heads as u32, n as u32, d as u32],
                QNN_DATATYPE_FLOAT_16,
            )?;
            let c = lw.input("cos", &[n as u32, d as u32], QNN_DATATYPE_FLOAT_16)?;
            let s = lw.input("sin", &[n as u32, d as u32], QNN_DATATYPE_FLOAT_16)?;
            lw.rope(&x, &c, &s, "y")?;
            Ok(())
        }),
        &[("x", &x), ("cos", &cos), ("sin", &sin)],
    )
    .unwrap();
    // Reference: the CPU path's pairing (i, i + d/2).
    let mut want = x.clone();
    for h in 0..heads {
        for t in 0..n {
            let row = &mut want[(h * n + t) * d..][..d];
            let src = x[(h * n + t) * d..][..d].to_vec();
            for i in 0..d / 2 {
                let (c, s) = (cos[t * d + i], sin[t * d + i]);
                row[i] = src[i] * c - src[i + d / 2] * s;
                row[i + d / 2] = src[i + d / 2] * c + src[i] * s;
            }
        }
    }
    check("rope [3,5,16]", &out["y"], &want, 4e-3);
}

#[test]
fn attention_block_gqa_with_mask() {
    let Some(_) = lib_dir() else { return };
    let _g = serial();
    let (nkv, g, n, c, d, past_len) = (2usize, 2usize, 4usize, 12usize, 16usize, 5usize);
    let p = c - n;
    let q = f16_round(
        &rand_vec(nkv * g * n * d, 8)
            .iter()
            .map(|v| v * 2.0)
            .collect::<Vec<_>>(),
    );
    let pk = f16_round(
        &rand_vec(nkv * d * p, 9)
            .iter()
            .map(|v| v * 2.0)
            .collect::<Vec<_>>(),
    );
    let nk = f16_round(
        &rand_vec(nkv * d * n, 10)
            .iter()
            .map(|v| v * 2.0)
            .collect::<Vec<_>>(),
    );
    let pv = f16_round(&rand_vec(nkv * p * d, 11));
    let nv = f16_round(&rand_vec(nkv * n * d, 12));
    let mask = conv::attention_mask(g, n, c, past_len);
    let scale = 1.0 / (d as f32).sqrt();
    let w = LoweredWeights::from_f32(&[]);
    let (nkv32, g32, n32, c32, d32, p32) =
        (nkv as u32, g as u32, n as u32, c as u32, d as u32, p as u32);
    let out = run_graph(
        &w,
        Box::new(move |lw| {
            lw.mark_output("y");
            let dt = QNN_DATATYPE_FLOAT_16;
            let q = lw.input("q", &[nkv32, g32 * n32, d32], dt)?;
            let pk = lw.input("pk", &[nkv32, d32, p32], dt)?;
            let nk = lw.input("nk", &[nkv32, d32, n32], dt)?;
            let pv = lw.input("pv", &[nkv32, p32, d32], dt)?;
            let nv = lw.input("nv", &[nkv32, n32, d32], dt)?;
            let m = lw.input("mask", &[g32 * n32, c32], dt)?;
            let k = lw.concat(&[&pk, &nk], 2, "k_all")?;
            let v = lw.concat(&[&pv, &nv], 1, "v_all")?;
            lw.attention(&q, &k, &v, &m, scale, "y")?;
            Ok(())
        }),
        &[
            ("q", &q),
            ("pk", &pk),
            ("nk", &nk),
            ("pv", &pv),
            ("nv", &nv),
            ("mask", &mask),
        ],
    )
    .unwrap();
    // Reference: explicit per-(kv head, row) softmax over the open columns only.
    let key = |h: usize, col: usize, i: usize| {
        if col < p {
            pk[(h * d + i) * p + col]
        } else {
            nk[(h * d + i) * n + col - p]
        }
    };
    let val = |h: usize, col: usize, i: usize| {
        if col < p {
            pv[(h * p + col) * d + i]
        } else {
            nv[(h * n + col - p) * d + i]
        }
    };
    let mut want = vec![0.0f32; nkv * g * n * d];
    for h in 0..nkv {
        for r in 0..g * n {
            let t = r % n;
            let open: Vec<usize> = (0..past_len).chain(p..p + t + 1).collect();
            let qr = &q[(h * g * n + r) * d..][..d];
            let s: Vec<f32> = open
                .iter()
                .map(|&col| (0..d).map(|i| qr[i] * key(h, col, i)).sum::<f32>() * scale)
                .collect();
            let m = s.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f32 = e.iter().sum();
            for (&col, &ei) in open.iter().zip(&e) {
                for i in 0..d {
                    want[(h * g * n + r) * d + i] += ei / z * val(h, col, i);
                }
            }
        }
    }
    check(
        "attention GQA g=2, past 5/8, chunk 4",
        &out["y"],
        &want,
        1e-2,
    );
}

#[test]
fn swiglu_block() {
    let Some(_) = lib_dir() else { return };
    let _g = serial();
    let (n, h, f) = (5usize, 64usize, 128usize);
    let x = f16_round(&rand_vec(n * h, 13));
    let scale = |v: Vec<f32>, s: f32| f16_round(&v.iter().map(|x| x * s).collect::<Vec<_>>());
    let wg = scale(rand_vec(f * h, 14), 0.3);
    let wu = scale(rand_vec(f * h, 15), 0.3);
    let wd = scale(rand_vec(h * f, 16), 0.2);
    let w = LoweredWeights::from_f32(&[
        ("wg", vec![f as u32, h as u32], &wg),
        ("wu", vec![f as u32, h as u32], &wu),
        ("wd", vec![h as u32, f as u32], &wd),
    ]);
    let out = run_graph(
        &w,
        Box::new(|lw| {
            lw.mark_output("y");
            let x = lw.input("x", &[n as u32, h as u32], QNN_DATATYPE_FLOAT_16)?;
            lw.swiglu(&x, "wg", "wu", "wd", "y")?;
            Ok(())
        }),
        &[("x", &x)],
    )
    .unwrap();
    let g = matmul_t_ref(&x, &wg, n, h, f);
    let u = matmul_t_ref(&x, &wu, n, h, f);
    let m: Vec<f32> = g
        .iter()
        .zip(&u)
        .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
        .collect();
    check(
        "swiglu 64→128→64",
        &out["y"],
        &matmul_t_ref(&m, &wd, n, f, h),
        1e-2,
    );
}

#[test]
fn graph_build_failure_names_node_and_tensors() {
    let Some(_) = lib_dir() else { return };
    let _g = serial();
    let w = LoweredWeights::from_f32(&[]);
    let err = run_graph(
        &w,
        Box::new(|lw| {
            lw.mark_output("y");
            let x = lw.input("x_in", &[4, 8], QNN_DATATYPE_FLOAT_16)?;
            let y = lw.tensor("y", &[4, 8])?;
            lw.node("bogus_node", "NoSuchOpType", &[], &[&x], &[&y])
        }),
        &[],
    )
    .expect_err("an unknown op type must fail");
    let msg = err.to_string();
    eprintln!("{msg}");
    for needle in ["bogus_node", "NoSuchOpType", "x_in", "y [4, 8]", "op_test"] {
        assert!(msg.contains(needle), "`{needle}` missing from: {msg}");
    }
}
