//! The CPU path against Hugging Face `transformers` reference outputs (tests/fixtures, made by
//! `cargo xtask fixtures`): logits of every prompt position, last-position logits, greedy tokens
//! and tokenization, for every fixture architecture and every file format we load.

use std::path::Path;

use tandem::{GenerateRequest, LoadOptions, Model, ModelSource, SamplingParams, WeightFormat};
use tandem_tests::{fixtures, ids, max_abs_diff, read_f32, reference, rel_rmse, Reference, MODELS};

fn load(path: &Path, threads: usize) -> Model {
    let opts = LoadOptions {
        threads,
        cpu_weights: WeightFormat::AsStored,
    };
    Model::load(&ModelSource::Path(path.to_path_buf()), &opts)
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// Checks every comparison for one model file against the reference.
/// `tol` bounds the max absolute logit error; greedy tokens must agree until the first step whose
/// reference top-1/top-2 margin is below `2 * tol` (there, a legal rounding difference may flip it).
fn check_exact(model_name: &str, path: &Path, tol: f32) {
    let r = reference(model_name);
    let m = load(path, 2);
    let prompts = r.json["prompts"].as_array().unwrap();

    // Tokenization matches the HF tokenizer.
    for p in prompts {
        let want = ids(&p["ids"]);
        let got = m.encode_prompt(p["text"].as_str().unwrap()).unwrap();
        assert_eq!(got, want, "{}: tokens of {:?}", path.display(), p["text"]);
    }

    // Every position of prompt 1.
    let p1 = ids(&prompts[1]["ids"]);
    let got = m.logits_all(&p1).unwrap();
    let d = max_abs_diff(&got, &r.all);
    assert!(
        d <= tol,
        "{}: all-position logits differ by {d} > {tol}",
        path.display()
    );

    // Last position of each prompt, and greedy continuation with the KV cache.
    for (i, p) in prompts.iter().enumerate() {
        let prompt = ids(&p["ids"]);
        let got = m.logits_all(&prompt).unwrap();
        let last = &got[got.len() - r.vocab..];
        let d = max_abs_diff(last, &r.last[i * r.vocab..(i + 1) * r.vocab]);
        assert!(
            d <= tol,
            "{}: prompt {i} last logits differ by {d} > {tol}",
            path.display()
        );

        let want = ids(&p["greedy"]);
        let margins: Vec<f64> = p["greedy_margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let req = GenerateRequest {
            prompt: prompt.clone(),
            max_new_tokens: want.len(),
            sampling: SamplingParams::greedy(),
            stop_strings: vec![],
            ignore_eos: false,
        };
        let mut cache = m.new_cache(prompt.len() + want.len());
        let out = m.generate(&mut cache, &req, &mut |_| {}).unwrap();
        let comparable = margins
            .iter()
            .position(|&mg| mg < 2.0 * tol as f64)
            .unwrap_or(want.len());
        let n = comparable.min(out.generated.len());
        assert_eq!(
            &out.generated[..n],
            &want[..n],
            "{}: prompt {i} greedy tokens (comparable steps: {comparable})",
            path.display()
        );
        assert!(
            out.generated.len() >= comparable,
            "{}: prompt {i} stopped after {} tokens, reference made {comparable} comparable ones",
            path.display(),
            out.generated.len()
        );
    }
}

#[test]
fn hf_f32_matches_transformers_within_1e_4() {
    for name in MODELS {
        check_exact(name, &fixtures().join(name).join("hf-f32"), 1e-4);
    }
}

#[test]
fn gguf_f32_matches_transformers_within_1e_4() {
    for name in MODELS {
        check_exact(
            name,
            &fixtures()
                .join(name)
                .join("gguf")
                .join(format!("{name}-f32.gguf")),
            1e-4,
        );
    }
}

/// Quantized or half-precision weights against the f32 reference: bounded relative error and
/// mostly the same argmax.
fn check_bounded(model_name: &str, path: &Path, max_rel_rmse: f32, min_argmax_agree: f32) {
    let r = reference(model_name);
    let m = load(path, 2);
    let p1 = ids(&r.json["prompts"][1]["ids"]);
    let got = m.logits_all(&p1).unwrap();
    let e = rel_rmse(&got, &r.all);
    assert!(
        e <= max_rel_rmse,
        "{}: relative RMS logit error {e} > {max_rel_rmse}",
        path.display()
    );
    let rows = p1.len();
    let agree = (0..rows)
        .filter(|&t| {
            let a = &got[t * r.vocab..(t + 1) * r.vocab];
            let b = &r.all[t * r.vocab..(t + 1) * r.vocab];
            tandem::scheduler::sampling::argmax(a) == tandem::scheduler::sampling::argmax(b)
        })
        .count() as f32
        / rows as f32;
    assert!(
        agree >= min_argmax_agree,
        "{}: argmax agreement {agree} < {min_argmax_agree}",
        path.display()
    );
    eprintln!(
        "{}: rel rmse {e:.5}, argmax agreement {agree:.3}",
        path.display()
    );
}

#[test]
fn half_precision_files_have_bounded_error() {
    for name in MODELS {
        let dir = fixtures().join(name);
        check_bounded(name, &dir.join("hf-f16"), 2e-3, 0.9);
        check_bounded(
            name,
            &dir.join("gguf").join(format!("{name}-f16.gguf")),
            2e-3,
            0.9,
        );
        if dir.join("hf-bf16").exists() {
            check_bounded(name, &dir.join("hf-bf16"), 1.5e-2, 0.85);
        }
    }
}

/// Logits of prompt 1 from `path` against `want`: (max abs diff, relative RMS error, argmax agreement).
fn compare_prompt1(
    r: &Reference,
    path: &Path,
    weights: WeightFormat,
    want: &[f32],
) -> (f32, f32, f32) {
    let m = Model::load(
        &ModelSource::Path(path.to_path_buf()),
        &LoadOptions {
            threads: 2,
            cpu_weights: weights,
        },
    )
    .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    let p1 = ids(&r.json["prompts"][1]["ids"]);
    let got = m.logits_all(&p1).unwrap();
    let rows = p1.len();
    let agree = (0..rows)
        .filter(|&t| {
            let a = &got[t * r.vocab..(t + 1) * r.vocab];
            let b = &want[t * r.vocab..(t + 1) * r.vocab];
            tandem::scheduler::sampling::argmax(a) == tandem::scheduler::sampling::argmax(b)
        })
        .count() as f32
        / rows as f32;
    (max_abs_diff(&got, want), rel_rmse(&got, want), agree)
}

/// The GGUF block decoding is exact: with the weights dequantized to f32 at load, f16 / q8_0 /
/// q4_0 files reproduce transformers run on the same dequantized weights (the fixture script's
/// `logits_prompt1_all_<type>.bin`) within the f32 tolerance. F16 needs no conversion at all.
#[test]
fn gguf_block_decoding_matches_transformers_on_dequantized_weights() {
    for name in MODELS {
        let r = reference(name);
        let dir = fixtures().join(name);
        for (ty, weights) in [
            ("f16", WeightFormat::AsStored),
            ("q8_0", WeightFormat::Convert(tandem::hal::DType::F32)),
            ("q4_0", WeightFormat::Convert(tandem::hal::DType::F32)),
        ] {
            let want = read_f32(&dir.join(format!("logits_prompt1_all_{ty}.bin")));
            let path = dir.join("gguf").join(format!("{name}-{ty}.gguf"));
            let (d, _, _) = compare_prompt1(&r, &path, weights, &want);
            assert!(
                d <= 1e-4,
                "{}: logits differ by {d} from dequantized-weight reference",
                path.display()
            );
        }
    }
}

/// Native quantized compute (q8_0-quantized activations, integer block dots, as llama.cpp) adds
/// bounded error on top of the weights' own quantization. These random fixtures amplify
/// perturbations ~6x (an f16 rounding of the weights alone moves logits by ~0.2 % RMS), so the
/// bounds are relative to that; a wrong block layout or scale gives errors of order 100 %.
#[test]
fn quantized_gguf_compute_has_bounded_error() {
    for name in MODELS {
        let r = reference(name);
        let dir = fixtures().join(name);
        for (ty, max_rel, min_agree) in [("q8_0", 0.05, 0.85), ("q4_0", 0.05, 0.85)] {
            let want = read_f32(&dir.join(format!("logits_prompt1_all_{ty}.bin")));
            let path = dir.join("gguf").join(format!("{name}-{ty}.gguf"));
            let (_, e, agree) = compare_prompt1(&r, &path, WeightFormat::AsStored, &want);
            eprintln!(
                "{}: rel rmse {e:.5}, argmax agreement {agree:.3}",
                path.display()
            );
            assert!(
                e <= max_rel,
                "{}: relative RMS error {e} > {max_rel}",
                path.display()
            );
            assert!(
                agree >= min_agree,
                "{}: argmax agreement {agree} < {min_agree}",
                path.display()
            );
        }
    }
}

/// Rewrites a Llama fixture directory as the Phi-3 checkpoint of the same weights: q/k/v rows
/// concatenated into `self_attn.qkv_proj`, gate and up into `mlp.gate_up_proj` (transformers'
/// `Phi3Attention` and `Phi3MLP` split them in that order), `Phi3ForCausalLM` in the config.
/// Phi-3's block is Llama's with those projections fused, so the model must give the Llama
/// fixture's transformers reference outputs.
fn phi3_from_llama(src: &Path, dst: &Path) {
    use safetensors::tensor::TensorView;
    use safetensors::SafeTensors;
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["architectures"] = serde_json::json!(["Phi3ForCausalLM"]);
    cfg["model_type"] = serde_json::json!("phi3");
    for k in ["attention_bias", "mlp_bias", "pretraining_tp", "head_dim"] {
        cfg.as_object_mut().unwrap().remove(k);
    }
    std::fs::write(dst.join("config.json"), cfg.to_string()).unwrap();

    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let fuse = |names: &[String]| -> (safetensors::Dtype, Vec<usize>, Vec<u8>) {
        let views: Vec<_> = names.iter().map(|n| st.tensor(n).unwrap()).collect();
        let rows: usize = views.iter().map(|v| v.shape()[0]).sum();
        let data = views.iter().flat_map(|v| v.data().to_vec()).collect();
        (views[0].dtype(), vec![rows, views[0].shape()[1]], data)
    };
    for (name, view) in st.tensors() {
        let fused_away = ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"]
            .iter()
            .any(|p| name.ends_with(&format!("{p}.weight")));
        if !fused_away {
            out.push((
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            ));
        }
    }
    let layers = cfg["num_hidden_layers"].as_u64().unwrap();
    for l in 0..layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let parts = |xs: &[&str]| xs.iter().map(|s| p(s)).collect::<Vec<_>>();
        let (dt, shape, data) = fuse(&parts(&[
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
        ]));
        out.push((p("self_attn.qkv_proj.weight"), dt, shape, data));
        let (dt, shape, data) = fuse(&parts(&["mlp.gate_proj.weight", "mlp.up_proj.weight"]));
        out.push((p("mlp.gate_up_proj.weight"), dt, shape, data));
    }
    let views: Vec<(String, TensorView<'_>)> = out
        .iter()
        .map(|(n, dt, shape, data)| {
            (
                n.clone(),
                TensorView::new(*dt, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dst.join("model.safetensors")).unwrap();
}

#[test]
fn phi3_fused_projections_match_transformers() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (sub, tol) in [("hf-f32", 1e-4), ("hf-f16", 2e-2)] {
        let src = fixtures().join("llama-gqa").join(sub);
        let dst = tmp.join(format!("phi3-from-llama-gqa-{sub}"));
        phi3_from_llama(&src, &dst);
        let phi3 = load(&dst, 2);
        assert_eq!(phi3.loaded.spec.arch, tandem::graphs::Arch::Phi3);
        if sub == "hf-f32" {
            check_exact("llama-gqa", &dst, tol);
        }
        // Bit for bit the Llama model: the split rows are the original tensors' bytes.
        let llama = load(&src, 2);
        let p = ids(&reference("llama-gqa").json["prompts"][1]["ids"]);
        let (a, b) = (phi3.logits_all(&p).unwrap(), llama.logits_all(&p).unwrap());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{sub}"
        );
        assert_eq!(
            phi3.loaded.weights.layers[1].w_up.dtype,
            llama.loaded.weights.layers[1].w_up.dtype
        );
    }

    // A fused tensor of the wrong height names itself.
    let dst = tmp.join("phi3-bad-qkv");
    phi3_from_llama(&fixtures().join("llama-gqa").join("hf-f32"), &dst);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("config.json")).unwrap()).unwrap();
    cfg["num_key_value_heads"] = serde_json::json!(4);
    std::fs::write(dst.join("config.json"), cfg.to_string()).unwrap();
    let e = Model::load(&ModelSource::Path(dst.clone()), &LoadOptions::default())
        .err()
        .expect("a qkv_proj sized for 2 KV heads must not load as 4");
    let msg = e.to_string();
    assert!(
        msg.contains("model.layers.0.self_attn.qkv_proj.weight"),
        "{msg}"
    );
}
