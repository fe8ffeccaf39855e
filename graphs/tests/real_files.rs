//! Cross-checks against files written by the real tools (transformers' `save_pretrained` and
//! llama.cpp's `convert_hf_to_gguf.py`). Runs only when `TANDEM_GRAPHS_REAL_DIR` points at a
//! folder holding `{llama,qwen2,qwen3}/` Hugging Face directories and `{name}-{f16,q8_0}.gguf`
//! conversions of them (the lead's fixture pipeline makes such a folder); otherwise it is a no-op.

use std::path::PathBuf;

use tandem_graphs::model::{load_weights, LoadedModel};
use tandem_hal::DType;

fn real_dir() -> Option<PathBuf> {
    let d = PathBuf::from(std::env::var_os("TANDEM_GRAPHS_REAL_DIR")?);
    d.is_dir().then_some(d)
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
    let Some(dir) = real_dir() else {
        eprintln!("TANDEM_GRAPHS_REAL_DIR not set; skipping");
        return;
    };
    for name in ["llama", "qwen2", "qwen3"] {
        let hf_dir = dir.join(name);
        if !hf_dir.is_dir() {
            continue;
        }
        let hf = load_weights(&hf_dir).unwrap();
        for ty in ["f16", "q8_0"] {
            let p = dir.join(format!("{name}-{ty}.gguf"));
            if p.is_file() {
                let gg = load_weights(&p).unwrap();
                compare(&hf, &gg, &format!("{name}-{ty}"));
            }
        }
    }
}
