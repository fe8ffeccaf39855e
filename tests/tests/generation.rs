//! End-to-end behaviour of the facade: the embedded model, streaming, stop conditions, context
//! limits, thread counts, weight conversion and bad input.

use std::path::PathBuf;

use tandem::{
    Error, GenerateRequest, KvCache, LoadOptions, Model, ModelSource, SamplingParams, StopReason,
    WeightFormat,
};

fn fixture(rel: &str) -> PathBuf {
    tandem_tests::fixtures().join(rel)
}

fn load(source: ModelSource, threads: usize, w: WeightFormat) -> Model {
    Model::load(
        &source,
        &LoadOptions {
            threads,
            cpu_weights: w,
        },
    )
    .expect("model loads")
}

fn greedy(prompt: Vec<u32>, n: usize) -> GenerateRequest {
    GenerateRequest {
        prompt,
        max_new_tokens: n,
        sampling: SamplingParams::greedy(),
        stop_strings: vec![],
        ignore_eos: false,
    }
}

#[test]
fn embedded_model_generates_and_streams_exactly_its_text() {
    let m = load(tandem::embedded_model(), 2, WeightFormat::AsStored);
    let prompt = m.encode_prompt("This License").unwrap();
    assert_eq!(
        prompt.first().copied(),
        m.tokenizer.bos_id(),
        "BOS is prepended"
    );
    let mut cache = m.new_cache(0);
    let mut streamed = String::new();
    let out = m
        .generate(&mut cache, &greedy(prompt.clone(), 40), &mut |s| {
            streamed.push_str(s)
        })
        .unwrap();
    assert_eq!(out.generated.len(), 40);
    assert_eq!(streamed, out.text);
    assert_eq!(out.text, m.tokenizer.decode(&out.generated, true).unwrap());
    assert_eq!(
        cache.len(),
        prompt.len() + 39,
        "the last sampled token is not yet in the cache"
    );
    // The model was trained on licence texts: greedy output is English words, not byte noise.
    let words = out
        .text
        .split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        .count();
    assert!(
        words >= 10,
        "expected licence-like English, got {:?}",
        out.text
    );
}

#[test]
fn one_and_two_threads_agree() {
    let a = load(tandem::embedded_model(), 1, WeightFormat::AsStored);
    let b = load(tandem::embedded_model(), 2, WeightFormat::AsStored);
    let prompt = a.encode_prompt("You may copy").unwrap();
    let la = a.logits_all(&prompt).unwrap();
    let lb = b.logits_all(&prompt).unwrap();
    let d = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d < 1e-4, "thread count changed logits by {d}");
    let ga = a
        .generate(
            &mut a.new_cache(0),
            &greedy(prompt.clone(), 24),
            &mut |_| {},
        )
        .unwrap();
    let gb = b
        .generate(&mut b.new_cache(0), &greedy(prompt, 24), &mut |_| {})
        .unwrap();
    assert_eq!(ga.generated, gb.generated);
}

#[test]
fn continuing_a_cache_equals_one_pass_over_the_whole_text() {
    // Turn 2 prefills only its new tokens on top of turn 1's cache; the logits must equal a
    // single pass over the concatenation.
    let m = load(tandem::embedded_model(), 2, WeightFormat::AsStored);
    let first = m.encode_prompt("The licensor grants").unwrap();
    let out = m
        .generate(&mut m.new_cache(64), &greedy(first.clone(), 8), &mut |_| {})
        .unwrap();
    let mut cache = m.new_cache(64);
    m.cpu
        .forward(&first, &mut cache, tandem::Logits::Last)
        .unwrap();
    let mut whole = first.clone();
    whole.extend(&out.generated);
    let tail = &whole[first.len()..];
    let step = m
        .cpu
        .forward(tail, &mut cache, tandem::Logits::All)
        .unwrap();
    let all = m.logits_all(&whole).unwrap();
    let want = &all[first.len() * m.loaded.spec.vocab_size..];
    let d = step
        .iter()
        .zip(want)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d < 1e-4, "incremental vs one-pass logits differ by {d}");
}

#[test]
fn sampling_is_reproducible_by_seed() {
    let m = load(tandem::embedded_model(), 2, WeightFormat::AsStored);
    let prompt = m.encode_prompt("Permission is").unwrap();
    let run = |seed| {
        let req = GenerateRequest {
            sampling: SamplingParams {
                temperature: 1.0,
                seed,
                ..SamplingParams::default()
            },
            ..greedy(prompt.clone(), 32)
        };
        m.generate(&mut m.new_cache(0), &req, &mut |_| {})
            .unwrap()
            .generated
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn stop_string_ends_generation_and_is_not_shown() {
    let m = load(tandem::embedded_model(), 2, WeightFormat::AsStored);
    let prompt = m.encode_prompt("This License").unwrap();
    let full = m
        .generate(
            &mut m.new_cache(0),
            &greedy(prompt.clone(), 40),
            &mut |_| {},
        )
        .unwrap();
    // Stop at the second word of the greedy text.
    let word = full
        .text
        .split_whitespace()
        .nth(1)
        .expect("at least two words")
        .to_string();
    let req = GenerateRequest {
        stop_strings: vec![word.clone()],
        ignore_eos: false,
        ..greedy(prompt, 40)
    };
    let mut streamed = String::new();
    let out = m
        .generate(&mut m.new_cache(0), &req, &mut |s| streamed.push_str(s))
        .unwrap();
    assert_eq!(out.stop_reason, StopReason::StopString);
    let cut = full.text.find(&word).unwrap();
    assert_eq!(out.text, full.text[..cut]);
    assert_eq!(streamed, out.text);
}

/// Whatever ends a long greedy run, an EOS token is never part of the output, and EOS is the
/// only way to end early when no stop strings are given.
#[test]
fn eos_is_never_emitted_and_only_eos_ends_early() {
    let m = load(tandem::embedded_model(), 2, WeightFormat::AsStored);
    let prompt = m.encode_prompt("END OF TERMS AND CONDITIONS").unwrap();
    let out = m
        .generate(&mut m.new_cache(0), &greedy(prompt, 200), &mut |_| {})
        .unwrap();
    let eos = &m.loaded.spec.eos_token_ids;
    assert!(out.generated.iter().all(|t| !eos.contains(t)));
    match out.stop_reason {
        StopReason::Eos => assert!(out.generated.len() < 200),
        StopReason::MaxTokens => assert_eq!(out.generated.len(), 200),
        StopReason::StopString => panic!("no stop strings were given"),
        StopReason::Stopped => panic!("nothing asked the generation to stop"),
    }
}

#[test]
fn prompt_past_the_context_is_a_clear_error() {
    let m = load(tandem::embedded_model(), 1, WeightFormat::AsStored);
    let prompt = m
        .encode_prompt("This License applies to any program")
        .unwrap();
    let mut cache = m.new_cache(prompt.len() + 4);
    let err = m
        .generate(&mut cache, &greedy(prompt.clone(), 10), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, Error::ContextOverflow { .. }), "{err}");
    assert!(err.to_string().contains("context"), "{err}");
    assert_eq!(
        cache.len(),
        0,
        "a rejected request leaves the cache untouched"
    );
    // The same cache still serves a request that fits.
    let ok = m
        .generate(&mut cache, &greedy(prompt, 5), &mut |_| {})
        .unwrap();
    assert_eq!(ok.generated.len(), 5);
}

#[test]
fn out_of_vocabulary_token_is_rejected() {
    let m = load(tandem::embedded_model(), 1, WeightFormat::AsStored);
    let mut cache = KvCache::new(&m.loaded.spec, 8);
    let err = m
        .cpu
        .forward(&[1, 999_999], &mut cache, tandem::Logits::Last)
        .unwrap_err();
    assert!(err.to_string().contains("999999"), "{err}");
}

#[test]
fn missing_and_corrupt_models_name_the_file() {
    let opts = LoadOptions::default();
    let missing = PathBuf::from("/nonexistent/model.gguf");
    let err = Model::load(&ModelSource::Path(missing), &opts)
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");

    let dir = std::env::temp_dir().join(format!("tandem-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(fixture("qwen2-tied/gguf/qwen2-tied-f16.gguf")).unwrap();
    let bad = dir.join("truncated.gguf");
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let err = Model::load(&ModelSource::Path(bad.clone()), &opts)
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("truncated.gguf"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn converting_weights_at_load_keeps_outputs_close() {
    let path = fixture("llama-gqa/hf-f32");
    let base = load(ModelSource::Path(path.clone()), 2, WeightFormat::AsStored);
    let prompt = base.encode_prompt("The river town woke").unwrap();
    let want = base.logits_all(&prompt).unwrap();
    // Relative RMS error bounds; these fixtures amplify weight error ~6x (measured with f16).
    for (fmt, bound) in [
        (tandem::hal::DType::F16, 5e-3),
        (tandem::hal::DType::BF16, 4e-2),
        (tandem::hal::DType::Q8_0, 6e-2),
    ] {
        let m = load(
            ModelSource::Path(path.clone()),
            2,
            WeightFormat::Convert(fmt),
        );
        assert_eq!(m.cpu.weight_dtype(), fmt);
        let got = m.logits_all(&prompt).unwrap();
        let err = tandem_tests::rel_rmse(&got, &want);
        assert!(err < bound, "{fmt}: relative error {err} >= {bound}");
        assert!(err > 0.0, "{fmt}: conversion had no effect at all");
    }
}
