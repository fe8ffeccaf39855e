//! GGUF files written by the test writer in `common`, following llama.cpp's conventions.

mod common;

use common::*;
use tandem_graphs::gguf::GgufFile;
use tandem_graphs::model::{load_weights, load_weights_gguf_bytes, LoadedModel, ModelFormat};
use tandem_graphs::{Arch, GgufValue, RopeScaling};
use tandem_hal::{DType, Error, HostBytes, Tensor};

fn get<'a>(m: &'a LoadedModel, role: &str) -> Option<&'a Tensor> {
    let l = |i: &str| &m.weights.layers[i.parse::<usize>().unwrap()];
    match role {
        "token_embd" => Some(&m.weights.token_embd),
        "norm" => Some(&m.weights.norm),
        "lm_head" => m.weights.lm_head.as_ref(),
        _ => {
            let (i, r) = role[1..].split_once('.').unwrap();
            let l = l(i);
            match r {
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
    }
}

/// Every tensor equals the Hugging Face-order original (after `matrix` quantization for 2-D).
fn check_all(m: &LoadedModel, model: &[(String, Logical)], matrix: DType) {
    for (role, t) in model {
        let got = get(m, role).unwrap_or_else(|| panic!("{role} not loaded"));
        let dtype = if t.shape.len() == 2 {
            matrix
        } else {
            DType::F32
        };
        assert_eq!(got.shape, t.shape, "{role}");
        assert_eq!(got.dtype, dtype, "{role}");
        assert_eq!(
            got.to_f32_vec(),
            round_trip(dtype, &t.shape, &t.data),
            "{role}"
        );
    }
    assert_eq!(m.weights.tensors().len(), model.len());
}

fn write(w: &GgufWriter, tag: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new(tag);
    let p = dir.join("model.gguf");
    w.write(&p);
    (dir, p)
}

#[test]
fn llama_f32_spec_values_and_unpermuted_qk() {
    let model = logical_model(DIMS, Parts::default());
    let w = gguf_model("llama", DIMS, &model, DType::F32);
    let (_d, path) = write(&w, "gguf-llama");
    let m = load_weights(&path).unwrap();
    let s = &m.spec;
    assert_eq!(s.arch, Arch::Llama);
    // No `llama.vocab_size` key: taken from token_embd's rows.
    assert_eq!(
        (s.vocab_size, s.hidden_size, s.intermediate_size, s.n_layers),
        (40, 64, 96, 2)
    );
    assert_eq!((s.n_heads, s.n_kv_heads, s.head_dim), (4, 2, 16));
    assert_eq!(
        (s.rms_norm_eps, s.rope.theta, s.rope.rotary_dim),
        (1e-5, 500000.0, 16)
    );
    assert_eq!(s.rope.scaling, None);
    assert_eq!(s.max_position_embeddings, 256);
    assert!(s.tie_word_embeddings, "no output.weight means tied");
    assert!(!s.qkv_bias && !s.qk_norm);
    assert_eq!(s.bos_token_id, Some(1));
    assert_eq!(s.eos_token_ids, vec![2, 7], "eos then eot");
    assert_eq!(m.format, ModelFormat::Gguf);
    assert_eq!(m.path, path);
    assert_eq!(m.file_size_bytes, std::fs::metadata(&path).unwrap().len());
    let meta = m.gguf_metadata.as_ref().unwrap();
    assert_eq!(meta["general.architecture"].as_str(), Some("llama"));
    assert_eq!(meta["tokenizer.ggml.tokens"].as_array().unwrap().len(), 40);
    // wq/wk come back in Hugging Face order; everything else untouched.
    check_all(&m, &model, DType::F32);
    assert!(m.weights.lm_head.is_none());
    // Non-permuted tensors stay views of the mapping.
    assert!(m.weights.layers[0].wv.data.is_mapped());
    assert!(m.weights.token_embd.data.is_mapped());
}

#[test]
fn permutation_matches_a_hand_worked_head() {
    // One head of size 4, rows [r0, r1, r2, r3] in HF order. llama.cpp stores [r0, r2, r1, r3]
    // (row 2i + j = HF row j·d/2 + i).
    let hf: Vec<f32> = (0..4).flat_map(|r| vec![r as f32; 32]).collect();
    let stored = llama_permute(&hf, 1, 32);
    let rows: Vec<f32> = stored.chunks(32).map(|r| r[0]).collect();
    assert_eq!(rows, vec![0.0, 2.0, 1.0, 3.0]);
    let t = Tensor::from_f32("q", vec![4, 32], &stored).unwrap();
    let back = tandem_graphs::gguf::unpermute_heads(&t, 1, 4, std::path::Path::new("x")).unwrap();
    assert_eq!(back.to_f32_vec(), hf);
}

#[test]
fn llama_unpermute_on_quantized_rows() {
    for matrix in [
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::F16,
        DType::BF16,
    ] {
        let model = logical_model(DIMS, Parts::default());
        let w = gguf_model("llama", DIMS, &model, matrix);
        let (_d, path) = write(&w, "gguf-quant");
        let m = load_weights(&path).unwrap();
        check_all(&m, &model, matrix);
        // Quantized bytes of untouched tensors are exactly what was written.
        let up = &model.iter().find(|(r, _)| r == "L1.up").unwrap().1;
        assert_eq!(
            m.weights.layers[1].w_up.data.as_bytes(),
            encode(matrix, &up.shape, &up.data).as_slice(),
            "{matrix}"
        );
        // wq: rows are whole blocks, moved back to HF order byte for byte.
        let wq = &model.iter().find(|(r, _)| r == "L0.wq").unwrap().1;
        assert_eq!(
            m.weights.layers[0].wq.data.as_bytes(),
            encode(matrix, &wq.shape, &wq.data).as_slice(),
            "{matrix}"
        );
    }
}

#[test]
fn mixed_types_and_untied_output() {
    // Q4_0 file with a Q8_0 output matrix and an F16 matrix: each tensor's own type counts.
    let model = logical_model(
        DIMS,
        Parts {
            lm_head: true,
            ..Default::default()
        },
    );
    let mut w = gguf_model("llama", DIMS, &model, DType::Q4_0);
    w.kv("general.file_type", GgufValue::U32(2));
    let lm = &model.iter().find(|(r, _)| r == "lm_head").unwrap().1;
    w.tensor(
        "output.weight",
        &lm.shape,
        GGML_Q8_0,
        encode(DType::Q8_0, &lm.shape, &lm.data),
    );
    let down = &model.iter().find(|(r, _)| r == "L0.down").unwrap().1;
    w.tensor(
        "blk.0.ffn_down.weight",
        &down.shape,
        GGML_F16,
        encode(DType::F16, &down.shape, &down.data),
    );
    let (_d, path) = write(&w, "gguf-mixed");
    let m = load_weights(&path).unwrap();
    assert!(!m.spec.tie_word_embeddings);
    assert_eq!(m.weights.lm_head.as_ref().unwrap().dtype, DType::Q8_0);
    assert_eq!(m.weights.layers[0].w_down.dtype, DType::F16);
    assert_eq!(m.weights.layers[1].w_down.dtype, DType::Q4_0);
    assert_eq!(
        m.weights.lm_head().to_f32_vec(),
        round_trip(DType::Q8_0, &lm.shape, &lm.data)
    );
}

#[test]
fn llama_biases_are_unpermuted_too() {
    let model = logical_model(
        DIMS,
        Parts {
            qkv_bias: true,
            ..Default::default()
        },
    );
    let w = gguf_model("llama", DIMS, &model, DType::F16);
    let (_d, path) = write(&w, "gguf-llama-bias");
    let m = load_weights(&path).unwrap();
    assert!(m.spec.qkv_bias);
    check_all(&m, &model, DType::F16);
}

#[test]
fn qwen2_is_stored_unpermuted_with_biases() {
    let model = logical_model(
        DIMS,
        Parts {
            qkv_bias: true,
            lm_head: true,
            ..Default::default()
        },
    );
    let w = gguf_model("qwen2", DIMS, &model, DType::F32);
    let (_d, path) = write(&w, "gguf-qwen2");
    let m = load_weights(&path).unwrap();
    assert_eq!(m.spec.arch, Arch::Qwen2);
    assert!(m.spec.qkv_bias && !m.spec.tie_word_embeddings);
    check_all(&m, &model, DType::F32);
    // Nothing needed converting.
    assert!(m.weights.tensors().iter().all(|t| t.data.is_mapped()));

    // Qwen2 without its biases is an error.
    let mut w = w;
    w.remove_tensor("blk.0.attn_q.bias");
    let (_d, path) = write(&w, "gguf-qwen2-nobias");
    let e = load_weights(&path).unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    assert_names(&e, &["model.gguf", "blk.0.attn_q.bias"]);
}

#[test]
fn qwen3_norms_and_key_length() {
    let d = Dims {
        head_dim: 32,
        ..DIMS
    };
    let model = logical_model(
        d,
        Parts {
            qk_norm: true,
            ..Default::default()
        },
    );
    let mut w = gguf_model("qwen3", d, &model, DType::BF16);
    w.kv("qwen3.vocab_size", GgufValue::U32(40));
    let (_d, path) = write(&w, "gguf-qwen3");
    let m = load_weights(&path).unwrap();
    assert_eq!(m.spec.arch, Arch::Qwen3);
    assert!(m.spec.qk_norm);
    assert_eq!((m.spec.head_dim, m.spec.q_dim()), (32, 128));
    check_all(&m, &model, DType::BF16);
}

#[test]
fn rope_freqs_and_linear_scaling() {
    let model = logical_model(DIMS, Parts::default());
    let mut w = gguf_model("llama", DIMS, &model, DType::F32);
    let factors: Vec<f32> = (0..8).map(|i| 1.0 + i as f32).collect();
    w.tensor(
        "rope_freqs.weight",
        &[8],
        GGML_F32,
        encode(DType::F32, &[8], &factors),
    );
    let (_d, path) = write(&w, "gguf-ropefreqs");
    let m = load_weights(&path).unwrap();
    assert_eq!(m.spec.rope.scaling, Some(RopeScaling::FreqFactors(factors)));

    // Wrong length → shape error naming the tensor.
    w.tensor("rope_freqs.weight", &[5], GGML_F32, vec![0; 20]);
    let (_d, path) = write(&w, "gguf-ropefreqs-bad");
    let e = load_weights(&path).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert_names(&e, &["rope_freqs.weight"]);

    let mut w = gguf_model("llama", DIMS, &model, DType::F32);
    w.kv("llama.rope.scaling.type", s("linear"))
        .kv("llama.rope.scaling.factor", GgufValue::F32(4.0));
    let (_d, path) = write(&w, "gguf-linear");
    assert_eq!(
        load_weights(&path).unwrap().spec.rope.scaling,
        Some(RopeScaling::Linear { factor: 4.0 })
    );

    w.kv("llama.rope.scaling.type", s("yarn"));
    let (_d, path) = write(&w, "gguf-yarn");
    let e = load_weights(&path).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert_names(&e, &["llama.rope.scaling.type", "yarn"]);
}

#[test]
fn in_memory_version_2_and_custom_alignment() {
    let model = logical_model(
        DIMS,
        Parts {
            qkv_bias: true,
            ..Default::default()
        },
    );
    let mut w = gguf_model("qwen2", DIMS, &model, DType::Q8_0);
    w.version = 2;
    w.alignment = 64;
    w.kv("general.alignment", GgufValue::U32(64));
    let bytes = w.to_bytes();
    let f = GgufFile::from_bytes(HostBytes::from_vec(bytes.clone()), "embedded.gguf").unwrap();
    assert_eq!((f.version, f.alignment), (2, 64));
    assert_eq!(f.data_offset % 64, 0);
    let m = load_weights_gguf_bytes(HostBytes::from_vec(bytes), "embedded.gguf").unwrap();
    assert_eq!(m.path, std::path::PathBuf::from("embedded.gguf"));
    check_all(&m, &model, DType::Q8_0);
}

#[test]
fn directory_with_one_gguf() {
    let model = logical_model(DIMS, Parts::default());
    let w = gguf_model("llama", DIMS, &model, DType::F32);
    let dir = TempDir::new("gguf-dir");
    w.write(&dir.join("tiny-q8.gguf"));
    let m = load_weights(dir.path()).unwrap();
    assert_eq!(m.path, dir.join("tiny-q8.gguf"));
    w.write(&dir.join("other.gguf"));
    let e = load_weights(dir.path()).unwrap_err();
    assert_names(&e, &["2 .gguf files"]);
}

// ---------------------------------------------------------------------------------------------
// Bad input.

fn open_err(bytes: Vec<u8>) -> Error {
    GgufFile::from_bytes(HostBytes::from_vec(bytes), "bad.gguf").unwrap_err()
}

fn load_err(w: &GgufWriter) -> Error {
    load_weights_gguf_bytes(HostBytes::from_vec(w.to_bytes()), "bad.gguf").unwrap_err()
}

#[test]
fn truncated_at_every_header_byte_and_through_the_data() {
    let model = logical_model(DIMS, Parts::default());
    let w = gguf_model("llama", DIMS, &model, DType::Q8_0);
    let full = w.to_bytes();
    let data_offset = GgufFile::from_bytes(HostBytes::from_vec(full.clone()), "x")
        .unwrap()
        .data_offset;
    let mut cuts: Vec<usize> = (0..data_offset).collect();
    cuts.extend((data_offset..full.len()).step_by(97));
    cuts.push(full.len() - 1);
    for cut in cuts {
        let e = GgufFile::from_bytes(HostBytes::from_vec(full[..cut].to_vec()), "cut.gguf")
            .unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "cut {cut}: {e}");
        assert_names(&e, &["cut.gguf"]);
    }
    // Also through the file system.
    let dir = TempDir::new("gguf-trunc");
    let p = dir.join("trunc.gguf");
    std::fs::write(&p, &full[..full.len() - 10]).unwrap();
    let e = load_weights(&p).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_names(&e, &["trunc.gguf", "output_norm.weight", "truncated"]);
}

#[test]
fn bad_magic_and_versions() {
    let model = logical_model(DIMS, Parts::default());
    let full = gguf_model("llama", DIMS, &model, DType::F32).to_bytes();

    let mut b = full.clone();
    b[..4].copy_from_slice(b"GGML");
    let e = open_err(b);
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_names(&e, &["bad.gguf", "not a GGUF file"]);

    for (v, needle) in [
        (1u32, "version 1"),
        (7, "version 7"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        let mut b = full.clone();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let e = open_err(b);
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert_names(&e, &["bad.gguf", needle]);
    }

    // A file that is not GGUF at all, through load_weights.
    let dir = TempDir::new("gguf-notgguf");
    let p = dir.join("weights.bin");
    std::fs::write(&p, b"\x00\x01\x02\x03 hello").unwrap();
    let e = load_weights(&p).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_names(&e, &["weights.bin", "not a GGUF file"]);
}

fn header(tensors: u64, kvs: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(tensors.to_le_bytes());
    b.extend(kvs.to_le_bytes());
    b
}

#[test]
fn absurd_counts_and_lengths_do_not_allocate() {
    for (t, k) in [(u64::MAX, 0), (0, u64::MAX), (1 << 40, 1 << 40)] {
        let e = open_err(header(t, k));
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert_names(&e, &["bad.gguf", "cannot fit"]);
    }
    // A key whose length is u64::MAX.
    let mut b = header(0, 1);
    b.extend(u64::MAX.to_le_bytes());
    b.extend([0u8; 64]);
    let e = open_err(b);
    assert_names(&e, &["bad.gguf", "string length"]);

    // An array claiming 2^60 u32 items.
    let mut b = header(0, 1);
    b.extend(3u64.to_le_bytes());
    b.extend(b"arr");
    b.extend(9u32.to_le_bytes());
    b.extend(4u32.to_le_bytes());
    b.extend((1u64 << 60).to_le_bytes());
    b.extend([0u8; 64]);
    let e = open_err(b);
    assert_names(&e, &["bad.gguf", "metadata `arr`", "cannot fit"]);

    // Arrays nested far deeper than any real file.
    let mut b = header(0, 1);
    b.extend(1u64.to_le_bytes());
    b.extend(b"n");
    b.extend(9u32.to_le_bytes());
    for _ in 0..1000 {
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    b.extend([0u8; 64]);
    let e = open_err(b);
    assert_names(&e, &["bad.gguf", "nested"]);

    // Unknown value type.
    let mut b = header(0, 1);
    b.extend(1u64.to_le_bytes());
    b.extend(b"k");
    b.extend(77u32.to_le_bytes());
    b.extend([0u8; 64]);
    let e = open_err(b);
    assert_names(&e, &["bad.gguf", "metadata `k`", "unknown value type 77"]);
}

#[test]
fn bad_tensor_directory_entries() {
    let model = logical_model(DIMS, Parts::default());
    let base = gguf_model("llama", DIMS, &model, DType::F32);

    // Five dimensions.
    let mut w = base.clone();
    w.tensor("extra", &[1, 1, 1, 1, 2], GGML_F32, vec![0; 8]);
    assert_names(
        &open_err(w.to_bytes()),
        &["bad.gguf", "extra", "5 dimensions"],
    );

    // Q8_0 rows that are not whole blocks.
    let mut w = base.clone();
    w.tensor("odd", &[2, 40], GGML_Q8_0, vec![0; 2 * 34 + 16]);
    let e = open_err(w.to_bytes());
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_names(&e, &["bad.gguf", "odd", "q8_0"]);

    // Dimensions whose product overflows.
    let mut w = base.clone();
    w.tensor("huge", &[1 << 40, 1 << 40, 0], GGML_F32, vec![]);
    let e = open_err(w.to_bytes());
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_names(&e, &["huge"]);

    // Offsets out of range / misaligned: patch the last tensor info's offset in place.
    let bytes = base.to_bytes();
    let f = GgufFile::from_bytes(HostBytes::from_vec(bytes.clone()), "x").unwrap();
    let last = f.tensors.last().unwrap().clone();
    let off_pos = bytes
        .windows(last.name.len())
        .rposition(|w| w == last.name.as_bytes())
        .unwrap()
        + last.name.len()
        + 4
        + 8 * last.shape.len()
        + 4;
    for (off, needle) in [
        (1u64 << 40, "needs bytes"),
        (last.offset + 4, "not a multiple"),
    ] {
        let mut b = bytes.clone();
        b[off_pos..off_pos + 8].copy_from_slice(&off.to_le_bytes());
        let e = open_err(b);
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert_names(&e, &["bad.gguf", &last.name, needle]);
    }

    // Duplicate tensor names.
    let mut w = base.clone();
    let dup = w.tensors[0].clone();
    w.tensors.push(dup);
    assert_names(&open_err(w.to_bytes()), &["token_embd.weight", "twice"]);
}

/// Found by the `gguf` fuzz target (fuzz/regressions/gguf/): a row of 2^62 f32 values is 2^64
/// bytes, which overflowed in `DType::row_bytes` (a panic with overflow checks, a wrapped size of
/// 0 bytes without them); and a zero-sized tensor whose other dimensions multiply past `usize`
/// was accepted, to overflow later in `Tensor::numel`.
#[test]
fn tensor_sizes_that_overflow_usize_are_errors() {
    let model = logical_model(DIMS, Parts::default());
    let base = gguf_model("llama", DIMS, &model, DType::F32);
    for (name, shape, ty) in [
        ("row_f32", vec![1usize << 62], GGML_F32),
        ("row_f16", vec![3, 1 << 63], GGML_F16),
        ("rows_of_zero", vec![1 << 40, 1 << 40, 0, 32], GGML_F32),
        ("zero_then_huge", vec![0, 1 << 40, 1 << 40, 32], GGML_F32),
    ] {
        let mut w = base.clone();
        w.tensor(name, &shape, ty, vec![]);
        match GgufFile::from_bytes(HostBytes::from_vec(w.to_bytes()), "bad.gguf") {
            Err(e) => {
                assert!(matches!(e, Error::Corrupt { .. }), "{name}: {e}");
                assert_names(&e, &["bad.gguf", name]);
            }
            // A zero in front keeps every partial product 0: the tensor is legal and empty.
            Ok(f) => {
                assert_eq!(name, "zero_then_huge");
                assert_eq!(f.tensor(name).unwrap().numel(), 0);
            }
        }
    }
}

#[test]
fn unsupported_ggml_type_names_tensor_and_type() {
    let model = logical_model(DIMS, Parts::default());
    let mut w = gguf_model("llama", DIMS, &model, DType::F32);
    // Q4_K (12) for a used matrix: the directory still parses, loading names the tensor.
    w.tensor("blk.1.ffn_gate.weight", &[96, 64], 12, vec![0; 4096]);
    let f = GgufFile::from_bytes(HostBytes::from_vec(w.to_bytes()), "bad.gguf").unwrap();
    assert_eq!(f.tensor_info("blk.1.ffn_gate.weight").unwrap().dtype, None);
    let e = load_err(&w);
    assert!(matches!(e, Error::UnsupportedDType { .. }), "{e}");
    assert_names(&e, &["bad.gguf", "blk.1.ffn_gate.weight", "12", "Q4_K"]);

    // An unsupported type on a tensor the model does not use is harmless.
    let mut w = gguf_model("llama", DIMS, &model, DType::F32);
    w.tensor("unused.extra", &[256], 14, vec![0; 210]);
    load_weights_gguf_bytes(HostBytes::from_vec(w.to_bytes()), "ok.gguf").unwrap();
}

#[test]
fn metadata_errors() {
    let model = logical_model(DIMS, Parts::default());
    let base = gguf_model("llama", DIMS, &model, DType::F32);

    let mut w = base.clone();
    w.kv("general.architecture", s("gemma2"));
    let e = load_err(&w);
    assert!(matches!(e, Error::UnsupportedArch { .. }), "{e}");
    assert_names(&e, &["bad.gguf", "gemma2"]);

    let mut w = base.clone();
    w.remove_kv("general.architecture");
    let e = load_err(&w);
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert_names(&e, &["bad.gguf", "general.architecture"]);

    let mut w = base.clone();
    w.remove_kv("llama.block_count");
    let e = load_err(&w);
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert_names(&e, &["bad.gguf", "llama.block_count"]);

    let mut w = base.clone();
    w.kv("llama.embedding_length", s("sixty-four"));
    let e = load_err(&w);
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert_names(&e, &["llama.embedding_length"]);

    let mut w = base.clone();
    w.kv("llama.attention.head_count_kv", GgufValue::U32(3));
    assert_names(&load_err(&w), &["llama.attention.head_count_kv"]);

    let mut w = base.clone();
    w.kv("general.alignment", GgufValue::U32(48));
    assert_names(&load_err(&w), &["general.alignment"]);

    let mut w = base.clone();
    w.kv("general.architecture", s("llama"))
        .kv("llama.block_count", GgufValue::U64(u64::MAX));
    assert!(load_err(&w).to_string().contains("bad.gguf"));
}

#[test]
fn missing_and_misshapen_tensors() {
    let model = logical_model(DIMS, Parts::default());
    let mut w = gguf_model("llama", DIMS, &model, DType::F32);
    w.remove_tensor("blk.1.ffn_up.weight");
    let e = load_err(&w);
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    assert_names(&e, &["bad.gguf", "blk.1.ffn_up.weight"]);

    let mut w = gguf_model("llama", DIMS, &model, DType::F32);
    w.tensor(
        "blk.0.attn_k.weight",
        &[64, 32],
        GGML_F32,
        vec![0; 64 * 32 * 4],
    );
    let e = load_err(&w);
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert_names(
        &e,
        &["bad.gguf", "blk.0.attn_k.weight", "[64, 32]", "[32, 64]"],
    );
}

/// A file written by llama.cpp's `gguf` Python package (tests/data/gguf/make_tiny_llama.py):
/// the reader agrees with the reference writer, including its q/k permutation and quant blocks.
#[test]
fn file_from_the_python_gguf_writer() {
    static BYTES: &[u8] = include_bytes!("data/gguf/tiny_llama_gguf_py.gguf");
    let d = Dims {
        vocab: 32,
        hidden: 32,
        inter: 64,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        head_dim: 16,
    };
    let model = logical_model(
        d,
        Parts {
            lm_head: true,
            ..Default::default()
        },
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gguf/tiny_llama_gguf_py.gguf");
    let from_file = load_weights(&path).unwrap();
    let m = load_weights_gguf_bytes(HostBytes::from_static(BYTES), "tiny.gguf").unwrap();
    assert_eq!(from_file.spec, m.spec);
    let s = &m.spec;
    assert_eq!(
        (s.arch, s.vocab_size, s.hidden_size, s.intermediate_size),
        (Arch::Llama, 32, 32, 64)
    );
    assert_eq!(
        (s.n_layers, s.n_heads, s.n_kv_heads, s.head_dim),
        (1, 2, 1, 16)
    );
    assert_eq!((s.max_position_embeddings, s.rope.theta), (128, 500000.0));
    assert_eq!(
        (s.bos_token_id, s.eos_token_ids.as_slice()),
        (Some(1), &[2u32][..])
    );
    assert!(!s.tie_word_embeddings);
    assert_eq!(
        s.rope.scaling,
        Some(RopeScaling::FreqFactors(
            (1..=8).map(|v| v as f32).collect()
        ))
    );
    for (role, t) in &model {
        let got = get(&m, role).unwrap();
        assert_eq!(got.shape, t.shape, "{role}");
        let (dtype, tol) = match role.as_str() {
            "L0.wk" => (DType::Q8_0, 8.0 / 127.0 * 0.5 + 1e-3),
            "lm_head" => (DType::Q4_0, 1.0 + 1e-3),
            _ if t.shape.len() == 1 => (DType::F32, 0.0),
            _ => (DType::F16, 0.0),
        };
        assert_eq!(got.dtype, dtype, "{role}");
        for (i, (a, b)) in got.to_f32_vec().iter().zip(&t.data).enumerate() {
            assert!((a - b).abs() <= tol, "{role}[{i}]: {a} vs {b}");
        }
    }
}
