//! Hugging Face directories (config.json + safetensors) through `load_hf_dir` / `load_weights`.

mod common;

use common::*;
use tandem_graphs::hf::{load_hf_dir, spec_from_config_json};
use tandem_graphs::model::{load_weights, LoadedModel, ModelFormat};
use tandem_graphs::{Arch, LayerWeights, RopeScaling};
use tandem_hal::{DType, Error, Tensor};

fn layer_tensor<'a>(l: &'a LayerWeights, role: &str) -> Option<&'a Tensor> {
    match role {
        "attn_norm" => Some(&l.attn_norm),
        "wq" => Some(&l.wq),
        "wk" => Some(&l.wk),
        "wv" => Some(&l.wv),
        "bq" => l.bq.as_ref(),
        "bk" => l.bk.as_ref(),
        "bv" => l.bv.as_ref(),
        "q_norm" => l.q_norm.as_ref(),
        "k_norm" => l.k_norm.as_ref(),
        "wo" => Some(&l.wo),
        "ffn_norm" => Some(&l.ffn_norm),
        "gate" => Some(&l.w_gate),
        "up" => Some(&l.w_up),
        "down" => Some(&l.w_down),
        _ => None,
    }
}

/// Finds the loaded tensor for a role of [`logical_model`].
pub fn loaded<'a>(m: &'a LoadedModel, role: &str) -> Option<&'a Tensor> {
    match role {
        "token_embd" => Some(&m.weights.token_embd),
        "norm" => Some(&m.weights.norm),
        "lm_head" => m.weights.lm_head.as_ref(),
        _ => {
            let (layer, r) = role[1..].split_once('.').unwrap();
            layer_tensor(&m.weights.layers[layer.parse::<usize>().unwrap()], r)
        }
    }
}

/// Every tensor of `model` came through with its shape, `dtype` and values.
fn check_all(m: &LoadedModel, model: &[(String, Logical)], dtype: DType) {
    for (role, t) in model {
        let got = loaded(m, role).unwrap_or_else(|| panic!("{role} not loaded"));
        assert_eq!(got.shape, t.shape, "{role}");
        assert_eq!(got.dtype, dtype, "{role}");
        assert_eq!(
            got.to_f32_vec(),
            round_trip(dtype, &t.shape, &t.data),
            "{role} values"
        );
        assert!(
            got.data.is_mapped(),
            "{role} should be a view of the mapped file"
        );
    }
    assert_eq!(m.weights.tensors().len(), model.len());
}

#[test]
fn llama_f32_single_file_spec_and_values() {
    let dir = TempDir::new("hf-llama");
    let model = logical_model(
        DIMS,
        Parts {
            lm_head: true,
            ..Default::default()
        },
    );
    write_hf_dir(
        dir.path(),
        &hf_config("LlamaForCausalLM", DIMS, false),
        &model,
        DType::F32,
        1,
    );
    let m = load_hf_dir(dir.path()).unwrap();
    let s = &m.spec;
    assert_eq!(s.arch, Arch::Llama);
    assert_eq!(
        (s.vocab_size, s.hidden_size, s.intermediate_size, s.n_layers),
        (40, 64, 96, 2)
    );
    assert_eq!((s.n_heads, s.n_kv_heads, s.head_dim), (4, 2, 16));
    assert_eq!(s.rms_norm_eps, 1e-5);
    assert_eq!(s.rope.theta, 500000.0);
    assert_eq!(s.rope.rotary_dim, 16);
    assert_eq!(s.rope.scaling, None);
    assert_eq!(s.max_position_embeddings, 256);
    assert!(!s.tie_word_embeddings && !s.qkv_bias && !s.qk_norm);
    assert_eq!(s.bos_token_id, Some(1));
    assert_eq!(s.eos_token_ids, vec![2, 7]);
    assert_eq!(m.format, ModelFormat::HfSafetensors);
    assert!(m.gguf_metadata.is_none());
    assert_eq!(
        m.file_size_bytes,
        std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len()
    );
    check_all(&m, &model, DType::F32);
    assert!(m.weights.lm_head.is_some());
    // The generic entry point picks the same loader.
    let again = load_weights(dir.path()).unwrap();
    assert_eq!(again.spec, m.spec);
    // … also when pointed at config.json itself.
    let again = load_weights(&dir.join("config.json")).unwrap();
    assert_eq!(again.spec, m.spec);
}

#[test]
fn f16_and_bf16_round_trip() {
    for dtype in [DType::F16, DType::BF16] {
        let dir = TempDir::new("hf-half");
        let model = logical_model(DIMS, Parts::default());
        write_hf_dir(
            dir.path(),
            &hf_config("MistralForCausalLM", DIMS, true),
            &model,
            dtype,
            1,
        );
        let m = load_hf_dir(dir.path()).unwrap();
        assert_eq!(m.spec.arch, Arch::Mistral);
        check_all(&m, &model, dtype);
    }
}

#[test]
fn sharded_index_maps_each_shard_once() {
    let dir = TempDir::new("hf-sharded");
    let model = logical_model(
        DIMS,
        Parts {
            lm_head: true,
            ..Default::default()
        },
    );
    write_hf_dir(
        dir.path(),
        &hf_config("LlamaForCausalLM", DIMS, false),
        &model,
        DType::BF16,
        3,
    );
    let m = load_hf_dir(dir.path()).unwrap();
    check_all(&m, &model, DType::BF16);
    let total: u64 = (1..=3)
        .map(|k| {
            std::fs::metadata(dir.join(&format!("model-{k:05}-of-00003.safetensors")))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(m.file_size_bytes, total);
}

#[test]
fn sharded_index_pointing_at_wrong_shard_names_the_shard() {
    let dir = TempDir::new("hf-badindex");
    let model = logical_model(DIMS, Parts::default());
    write_hf_dir(
        dir.path(),
        &hf_config("LlamaForCausalLM", DIMS, true),
        &model,
        DType::F32,
        2,
    );
    let idx_path = dir.join("model.safetensors.index.json");
    let mut idx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&idx_path).unwrap()).unwrap();
    // Move the embedding's entry to the other shard.
    idx["weight_map"]["model.embed_tokens.weight"] = "model-00002-of-00002.safetensors".into();
    std::fs::write(&idx_path, idx.to_string()).unwrap();
    let e = load_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    assert_names(
        &e,
        &[
            "model-00002-of-00002.safetensors",
            "model.embed_tokens.weight",
        ],
    );

    // A shard listed in the index but absent on disk.
    idx["weight_map"]["model.embed_tokens.weight"] = "model-00009-of-00009.safetensors".into();
    std::fs::write(&idx_path, idx.to_string()).unwrap();
    let e = load_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert_names(&e, &["model-00009-of-00009.safetensors"]);
}

#[test]
fn tied_embeddings_ignore_or_do_without_lm_head() {
    // Tied and no lm_head stored.
    let dir = TempDir::new("hf-tied");
    let model = logical_model(DIMS, Parts::default());
    write_hf_dir(
        dir.path(),
        &hf_config("LlamaForCausalLM", DIMS, true),
        &model,
        DType::F32,
        1,
    );
    let m = load_hf_dir(dir.path()).unwrap();
    assert!(m.spec.tie_word_embeddings);
    assert!(m.weights.lm_head.is_none());
    assert_eq!(m.weights.lm_head().name, "model.embed_tokens.weight");

    // Tied, but the file still carries lm_head.weight: it is ignored.
    let dir = TempDir::new("hf-tied2");
    let model = logical_model(
        DIMS,
        Parts {
            lm_head: true,
            ..Default::default()
        },
    );
    write_hf_dir(
        dir.path(),
        &hf_config("LlamaForCausalLM", DIMS, true),
        &model,
        DType::F32,
        1,
    );
    let m = load_hf_dir(dir.path()).unwrap();
    assert!(m.weights.lm_head.is_none());

    // Untied (the default when the key is absent) and no lm_head: an error naming it.
    let dir = TempDir::new("hf-untied");
    let model = logical_model(DIMS, Parts::default());
    let mut cfg = hf_config("LlamaForCausalLM", DIMS, false);
    cfg.as_object_mut().unwrap().remove("tie_word_embeddings");
    write_hf_dir(dir.path(), &cfg, &model, DType::F32, 1);
    let e = load_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    assert_names(&e, &["model.safetensors", "lm_head.weight"]);
}

#[test]
fn qwen2_has_qkv_biases() {
    let dir = TempDir::new("hf-qwen2");
    let model = logical_model(
        DIMS,
        Parts {
            qkv_bias: true,
            ..Default::default()
        },
    );
    // Qwen2 configs do not say `attention_bias`; the biases are part of the architecture.
    write_hf_dir(
        dir.path(),
        &hf_config("Qwen2ForCausalLM", DIMS, true),
        &model,
        DType::F32,
        1,
    );
    let m = load_hf_dir(dir.path()).unwrap();
    assert_eq!(m.spec.arch, Arch::Qwen2);
    assert!(m.spec.qkv_bias);
    check_all(&m, &model, DType::F32);
    assert_eq!(m.weights.layers[1].bk.as_ref().unwrap().shape, vec![32]);

    // Without the biases on disk, the first one is reported missing.
    let dir = TempDir::new("hf-qwen2-nobias");
    let model = logical_model(DIMS, Parts::default());
    write_hf_dir(
        dir.path(),
        &hf_config("Qwen2ForCausalLM", DIMS, true),
        &model,
        DType::F32,
        1,
    );
    let e = load_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    assert_names(&e, &["model.layers.0.self_attn.q_proj.bias"]);
}

#[test]
fn llama_attention_bias_loads_qkv_biases() {
    let dir = TempDir::new("hf-llama-bias");
    let model = logical_model(
        DIMS,
        Parts {
            qkv_bias: true,
            ..Default::default()
        },
    );
    let mut cfg = hf_config("LlamaForCausalLM", DIMS, true);
    cfg["attention_bias"] = true.into();
    write_hf_dir(dir.path(), &cfg, &model, DType::F32, 1);
    let m = load_hf_dir(dir.path()).unwrap();
    assert!(m.spec.qkv_bias);
    check_all(&m, &model, DType::F32);
}

#[test]
fn qwen3_has_qk_norms_and_explicit_head_dim() {
    // head_dim 32 with 4 heads: q_dim 128 ≠ hidden 64.
    let d = Dims {
        head_dim: 32,
        ..DIMS
    };
    let dir = TempDir::new("hf-qwen3");
    let model = logical_model(
        d,
        Parts {
            qk_norm: true,
            lm_head: true,
            ..Default::default()
        },
    );
    write_hf_dir(
        dir.path(),
        &hf_config("Qwen3ForCausalLM", d, false),
        &model,
        DType::BF16,
        1,
    );
    let m = load_hf_dir(dir.path()).unwrap();
    assert_eq!(m.spec.arch, Arch::Qwen3);
    assert!(m.spec.qk_norm && !m.spec.qkv_bias);
    assert_eq!(
        (m.spec.head_dim, m.spec.q_dim(), m.spec.kv_dim()),
        (32, 128, 64)
    );
    check_all(&m, &model, DType::BF16);
    assert_eq!(m.weights.layers[0].q_norm.as_ref().unwrap().shape, vec![32]);
    assert_eq!(m.weights.layers[0].wo.shape, vec![64, 128]);
}

fn spec_of(cfg: serde_json::Value) -> tandem_hal::Result<tandem_graphs::ModelSpec> {
    spec_from_config_json(&cfg.to_string(), std::path::Path::new("/m/config.json"))
}

#[test]
fn defaults_for_optional_keys() {
    let mut cfg = hf_config("LlamaForCausalLM", DIMS, false);
    let o = cfg.as_object_mut().unwrap();
    for k in [
        "num_key_value_heads",
        "rope_theta",
        "bos_token_id",
        "tie_word_embeddings",
    ] {
        o.remove(k);
    }
    o.insert("head_dim".into(), serde_json::Value::Null);
    o.insert("eos_token_id".into(), 5.into());
    let s = spec_of(cfg).unwrap();
    assert_eq!((s.n_kv_heads, s.head_dim), (4, 16));
    assert_eq!(s.rope.theta, 10000.0);
    assert_eq!(s.bos_token_id, None);
    assert_eq!(s.eos_token_ids, vec![5]);
    assert!(!s.tie_word_embeddings);
}

fn llama3_expected() -> RopeScaling {
    RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    }
}

#[test]
fn rope_scaling_and_rope_parameters_both_parse() {
    let llama3 = serde_json::json!({
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192
    });
    // transformers 4: top-level rope_theta + rope_scaling.
    let mut cfg = hf_config("LlamaForCausalLM", DIMS, false);
    cfg["rope_scaling"] = llama3.clone();
    let s = spec_of(cfg.clone()).unwrap();
    assert_eq!(s.rope.theta, 500000.0);
    assert_eq!(s.rope.scaling, Some(llama3_expected()));

    // transformers 5: everything in rope_parameters (theta included), preferred over the rest.
    let mut params = llama3.clone();
    params["rope_theta"] = 123456.0.into();
    params["factor"] = 16.0.into();
    cfg["rope_parameters"] = params;
    let s = spec_of(cfg.clone()).unwrap();
    assert_eq!(s.rope.theta, 123456.0);
    match s.rope.scaling {
        Some(RopeScaling::Llama3 { factor, .. }) => assert_eq!(factor, 16.0),
        other => panic!("{other:?}"),
    }

    // rope_parameters of type default: no scaling even if a stale rope_scaling is present.
    cfg["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1e6});
    let s = spec_of(cfg.clone()).unwrap();
    assert_eq!((s.rope.theta, s.rope.scaling), (1e6, None));

    // Old-style `type` key, linear.
    let mut cfg = hf_config("LlamaForCausalLM", DIMS, false);
    cfg["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0});
    assert_eq!(
        spec_of(cfg).unwrap().rope.scaling,
        Some(RopeScaling::Linear { factor: 2.0 })
    );
}

#[test]
fn rope_errors_name_the_key() {
    let mut cfg = hf_config("LlamaForCausalLM", DIMS, false);
    cfg["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    let e = spec_of(cfg.clone()).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert_names(&e, &["/m/config.json", "rope_scaling.rope_type", "yarn"]);

    cfg["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    let e = spec_of(cfg.clone()).unwrap_err();
    assert_names(&e, &["rope_scaling.factor"]);

    cfg.as_object_mut().unwrap().remove("rope_scaling");
    cfg["rope_parameters"] = serde_json::json!({"rope_type": "dynamic", "factor": 2.0});
    let e = spec_of(cfg).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert_names(&e, &["rope_parameters.rope_type", "dynamic"]);
}

#[test]
fn config_errors() {
    let e = spec_of(hf_config("GPT2LMHeadModel", DIMS, false)).unwrap_err();
    assert!(matches!(e, Error::UnsupportedArch { .. }), "{e}");
    assert_names(&e, &["/m/config.json", "GPT2LMHeadModel"]);

    let mut cfg = hf_config("LlamaForCausalLM", DIMS, false);
    cfg.as_object_mut().unwrap().remove("hidden_size");
    let e = spec_of(cfg).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert_names(&e, &["/m/config.json", "hidden_size"]);

    let mut cfg = hf_config("LlamaForCausalLM", DIMS, false);
    cfg["num_key_value_heads"] = 3.into();
    let e = spec_of(cfg).unwrap_err();
    assert_names(&e, &["num_key_value_heads"]);

    let mut cfg = hf_config("LlamaForCausalLM", DIMS, false);
    cfg["vocab_size"] = "many".into();
    let e = spec_of(cfg).unwrap_err();
    assert_names(&e, &["vocab_size"]);

    let mut cfg = hf_config("LlamaForCausalLM", DIMS, false);
    cfg["hidden_size"] = serde_json::json!(u64::MAX / 2);
    assert!(matches!(spec_of(cfg).unwrap_err(), Error::Config { .. }));

    let e =
        spec_from_config_json("{ not json", std::path::Path::new("/m/config.json")).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_names(&e, &["/m/config.json"]);
}

#[test]
fn unknown_architecture_in_a_directory() {
    let dir = TempDir::new("hf-arch");
    let model = logical_model(DIMS, Parts::default());
    write_hf_dir(
        dir.path(),
        &hf_config("PhiForCausalLM", DIMS, true),
        &model,
        DType::F32,
        1,
    );
    let e = load_weights(dir.path()).unwrap_err();
    assert!(matches!(e, Error::UnsupportedArch { .. }), "{e}");
    assert_names(&e, &["config.json", "PhiForCausalLM"]);
}

#[test]
fn missing_and_misshapen_tensors() {
    let dir = TempDir::new("hf-missing");
    let mut model = logical_model(DIMS, Parts::default());
    model.retain(|(r, _)| r != "L1.up");
    write_hf_dir(
        dir.path(),
        &hf_config("LlamaForCausalLM", DIMS, true),
        &model,
        DType::F32,
        1,
    );
    let e = load_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    assert_names(
        &e,
        &["model.safetensors", "model.layers.1.mlp.up_proj.weight"],
    );

    let dir = TempDir::new("hf-shape");
    let mut model = logical_model(DIMS, Parts::default());
    for (r, t) in &mut model {
        if r == "L0.wk" {
            // Transposed: [hidden, kv_dim] instead of [kv_dim, hidden].
            t.shape = vec![DIMS.hidden, DIMS.kv_dim()];
        }
    }
    write_hf_dir(
        dir.path(),
        &hf_config("LlamaForCausalLM", DIMS, true),
        &model,
        DType::F32,
        1,
    );
    let e = load_hf_dir(dir.path()).unwrap_err();
    match &e {
        Error::Shape {
            tensor,
            found,
            expected,
            ..
        } => {
            assert_eq!(tensor, "model.layers.0.self_attn.k_proj.weight");
            assert_eq!(
                (found.as_slice(), expected.as_slice()),
                (&[64, 32][..], &[32, 64][..])
            );
        }
        other => panic!("{other}"),
    }
    assert_names(&e, &["model.safetensors"]);
}

#[test]
fn unsupported_safetensors_dtype_names_the_tensor() {
    let dir = TempDir::new("hf-dtype");
    let model = logical_model(DIMS, Parts::default());
    write_hf_dir(
        dir.path(),
        &hf_config("LlamaForCausalLM", DIMS, true),
        &model,
        DType::F32,
        1,
    );
    // Rewrite with the final norm as F64.
    let mut entries: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = model
        .iter()
        .map(|(r, t)| {
            (
                hf_name(r),
                safetensors::Dtype::F32,
                t.shape.clone(),
                encode(DType::F32, &t.shape, &t.data),
            )
        })
        .collect();
    for e in &mut entries {
        if e.0 == "model.norm.weight" {
            e.1 = safetensors::Dtype::F64;
            e.3 = vec![0u8; DIMS.hidden * 8];
        }
    }
    std::fs::write(dir.join("model.safetensors"), safetensors_bytes(&entries)).unwrap();
    let e = load_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(e, Error::UnsupportedDType { .. }), "{e}");
    assert_names(&e, &["model.safetensors", "model.norm.weight", "F64"]);
}

#[test]
fn truncated_or_garbage_safetensors_is_corrupt() {
    let dir = TempDir::new("hf-trunc");
    let model = logical_model(DIMS, Parts::default());
    write_hf_dir(
        dir.path(),
        &hf_config("LlamaForCausalLM", DIMS, true),
        &model,
        DType::F16,
        1,
    );
    let path = dir.join("model.safetensors");
    let full = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(full[..8].try_into().unwrap()) as usize;
    for cut in [
        0,
        3,
        8,
        20,
        8 + header_len,
        8 + header_len + 1,
        full.len() / 2,
        full.len() - 1,
    ] {
        std::fs::write(&path, &full[..cut]).unwrap();
        let e = load_hf_dir(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "cut {cut}: {e}");
        assert_names(&e, &["model.safetensors"]);
    }
    // Header length pointing far past the end.
    let mut bad = full.clone();
    bad[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        load_hf_dir(dir.path()).unwrap_err(),
        Error::Corrupt { .. }
    ));
}

#[test]
fn directory_without_weights_or_config() {
    let dir = TempDir::new("hf-empty");
    std::fs::write(
        dir.join("config.json"),
        hf_config("LlamaForCausalLM", DIMS, true).to_string(),
    )
    .unwrap();
    let e = load_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert_names(&e, &["model.safetensors"]);

    let empty = TempDir::new("hf-nothing");
    let e = load_weights(empty.path()).unwrap_err();
    assert_names(&e, &[&empty.path().display().to_string(), "config.json"]);
}

#[test]
fn o_proj_bias_is_refused_not_dropped() {
    let dir = TempDir::new("hf-obias");
    let model = logical_model(
        DIMS,
        Parts {
            qkv_bias: true,
            ..Default::default()
        },
    );
    let mut cfg = hf_config("LlamaForCausalLM", DIMS, true);
    cfg["attention_bias"] = true.into();
    write_hf_dir(dir.path(), &cfg, &model, DType::F32, 1);
    let mut entries: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = model
        .iter()
        .map(|(r, t)| {
            (
                hf_name(r),
                safetensors::Dtype::F32,
                t.shape.clone(),
                encode(DType::F32, &t.shape, &t.data),
            )
        })
        .collect();
    entries.push((
        "model.layers.0.self_attn.o_proj.bias".into(),
        safetensors::Dtype::F32,
        vec![DIMS.hidden],
        vec![0u8; DIMS.hidden * 4],
    ));
    std::fs::write(dir.join("model.safetensors"), safetensors_bytes(&entries)).unwrap();
    let e = load_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert_names(&e, &["attention_bias", "o_proj.bias"]);
}

#[test]
fn sliding_window_caps_the_context() {
    let mut cfg = hf_config("MistralForCausalLM", DIMS, false);
    cfg["sliding_window"] = 128.into();
    assert_eq!(spec_of(cfg.clone()).unwrap().max_position_embeddings, 128);
    cfg["sliding_window"] = serde_json::Value::Null;
    assert_eq!(spec_of(cfg).unwrap().max_position_embeddings, 256);
    // Qwen2 only when use_sliding_window is on.
    let mut cfg = hf_config("Qwen2ForCausalLM", DIMS, false);
    cfg["sliding_window"] = 128.into();
    cfg["use_sliding_window"] = false.into();
    assert_eq!(spec_of(cfg.clone()).unwrap().max_position_embeddings, 256);
    cfg["use_sliding_window"] = true.into();
    assert_eq!(spec_of(cfg).unwrap().max_position_embeddings, 128);
}
