//! Cross-checks against files written by the real tools: the committed fixtures
//! (`tests/fixtures`, made by `cargo xtask fixtures`) hold transformers' `save_pretrained` output
//! and llama.cpp's `convert_hf_to_gguf.py` conversions of the same weights; both must load to the
//! same spec and tensors (llama q/k rows un-permuted, llama3 scaling vs `rope_freqs`).

use std::path::PathBuf;

use tandem_graphs::model::{load_weights, LoadedModel};
use tandem_hal::DType;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn close(a: &[f32], b: &[f32], tol: f32) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("lengths {} vs {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (x - y).abs() > tol * (1.0 + y.abs()) {
            return Err(format!("[{i}] {x} vs {y}"));
        }
    }
    Ok(())
}

fn compare(hf: &LoadedModel, gg: &LoadedModel, label: &str) {
    let (a, b) = (&hf.spec, &gg.spec);
    assert_eq!(a.arch, b.arch, "{label}");
    assert_eq!(
        (a.vocab_size, a.hidden_size, a.intermediate_size, a.n_layers),
        (b.vocab_size, b.hidden_size, b.intermediate_size, b.n_layers),
        "{label}"
    );
    assert_eq!(
        (
            a.n_heads,
            a.n_kv_heads,
            a.head_dim,
            a.max_position_embeddings
        ),
        (
            b.n_heads,
            b.n_kv_heads,
            b.head_dim,
            b.max_position_embeddings
        ),
        "{label}"
    );
    assert_eq!(
        (a.tie_word_embeddings, a.qkv_bias, a.qk_norm),
        (b.tie_word_embeddings, b.qkv_bias, b.qk_norm),
        "{label}"
    );
    assert!((a.rms_norm_eps - b.rms_norm_eps).abs() < 1e-9, "{label}");
    assert_eq!(a.rope.theta, b.rope.theta, "{label}");
    // llama3 scaling (HF) and `rope_freqs.weight` (GGUF) must give the same frequencies.
    close(&b.rope.inv_freq(), &a.rope.inv_freq(), 1e-5)
        .unwrap_or_else(|e| panic!("{label} inv_freq {e}"));

    let (ta, tb) = (hf.weights.tensors(), gg.weights.tensors());
    assert_eq!(ta.len(), tb.len(), "{label}");
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x.shape, y.shape, "{label} {} vs {}", x.name, y.name);
        let tol = match y.dtype {
            DType::Q8_0 => 2e-2,
            _ => 1e-3,
        };
        close(&y.to_f32_vec(), &x.to_f32_vec(), tol)
            .unwrap_or_else(|e| panic!("{label}: {} vs {}: {e}", x.name, y.name));
    }
}

#[test]
fn converter_written_files_match_their_hf_source() {
    for name in ["llama-gqa", "qwen2-tied", "qwen3-qknorm", "llama3-rope"] {
        let dir = fixtures().join(name);
        let hf = load_weights(&dir.join("hf-f32")).unwrap();
        for ty in ["f32", "f16", "q8_0"] {
            let p = dir.join("gguf").join(format!("{name}-{ty}.gguf"));
            let gg = load_weights(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            compare(&hf, &gg, &format!("{name}-{ty}"));
        }
    }
}
