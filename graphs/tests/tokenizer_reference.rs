//! Tokenizers (tokenizer.json and GGUF metadata paths) against ids recorded from the Python
//! `tokenizers` / `transformers` / `sentencepiece` libraries by tests/data/tokenizer/make.py.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tandem_graphs::tokenizer::{StreamDecoder, Tokenizer};
use tandem_graphs::{GgufValue, Metadata};

const NAMES: [&str; 4] = ["qwen2", "llama3", "gpt2", "spm"];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer")
}

fn reference() -> Json {
    let bytes = std::fs::read(data_dir().join("reference.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

struct Case {
    text: String,
    ids: Vec<u32>,
    ids_no_special: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
    sentencepiece_ids: Option<Vec<u32>>,
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn cases(reference: &Json, name: &str) -> Vec<Case> {
    reference[name]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_owned(),
            ids: ids(&c["ids"]),
            ids_no_special: ids(&c["ids_no_special"]),
            decoded: c["decoded"].as_str().unwrap().to_owned(),
            decoded_skip_special: c["decoded_skip_special"].as_str().unwrap().to_owned(),
            sentencepiece_ids: c.get("sentencepiece_ids").map(ids),
        })
        .collect()
}

// A minimal GGUF metadata reader, so these tests depend only on the tokenizer module.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    fn value(&mut self, ty: u32) -> GgufValue {
        match ty {
            0 => GgufValue::U8(self.take(1)[0]),
            1 => GgufValue::I8(self.take(1)[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.take(2).try_into().unwrap())),
            3 => GgufValue::I16(i16::from_le_bytes(self.take(2).try_into().unwrap())),
            4 => GgufValue::U32(self.u32()),
            5 => GgufValue::I32(self.u32() as i32),
            6 => GgufValue::F32(f32::from_bits(self.u32())),
            7 => GgufValue::Bool(self.take(1)[0] != 0),
            8 => GgufValue::String(self.string()),
            9 => {
                let elem = self.u32();
                let n = self.u64();
                GgufValue::Array((0..n).map(|_| self.value(elem)).collect())
            }
            10 => GgufValue::U64(self.u64()),
            11 => GgufValue::I64(self.u64() as i64),
            12 => GgufValue::F64(f64::from_bits(self.u64())),
            t => panic!("GGUF value type {t}"),
        }
    }
}

fn gguf_metadata(name: &str) -> Metadata {
    let bytes = std::fs::read(data_dir().join(format!("{name}.gguf"))).unwrap();
    let mut r = Reader { b: &bytes, pos: 0 };
    assert_eq!(r.take(4), b"GGUF");
    assert_eq!(r.u32(), 3);
    let _tensors = r.u64();
    let n_kv = r.u64();
    let mut meta = Metadata::new();
    for _ in 0..n_kv {
        let key = r.string();
        let ty = r.u32();
        let v = r.value(ty);
        meta.insert(key, v);
    }
    meta
}

fn from_json(name: &str) -> Tokenizer {
    Tokenizer::from_file(&data_dir().join(name).join("tokenizer.json")).unwrap()
}

fn from_gguf(name: &str) -> Tokenizer {
    Tokenizer::from_gguf_metadata(&gguf_metadata(name)).unwrap()
}

/// Every recorded string, both loading paths: ids with and without special tokens, and decoding.
fn check_against_reference(load: fn(&str) -> Tokenizer, path: &str) {
    let reference = reference();
    let mut failures = Vec::new();
    for name in NAMES {
        let tok = load(name);
        assert_eq!(
            tok.vocab_size() as u64,
            reference[name]["vocab_size"].as_u64().unwrap(),
            "{path} {name}: vocab size"
        );
        for c in cases(&reference, name) {
            let got = tok.encode(&c.text, true).unwrap();
            if got != c.ids {
                failures.push(format!(
                    "{path} {name} {:?}: encode {got:?} != HF {:?}",
                    c.text, c.ids
                ));
            }
            let got = tok.encode(&c.text, false).unwrap();
            if got != c.ids_no_special {
                failures.push(format!(
                    "{path} {name} {:?}: encode(no special) {got:?} != HF {:?}",
                    c.text, c.ids_no_special
                ));
            }
            if let Some(sp) = &c.sentencepiece_ids {
                assert_eq!(&got, sp, "{path} {name} {:?}: vs sentencepiece", c.text);
            }
            let dec = tok.decode(&c.ids, false).unwrap();
            if dec != c.decoded {
                failures.push(format!(
                    "{path} {name} {:?}: decode {dec:?} != HF {:?}",
                    c.text, c.decoded
                ));
            }
            let dec = tok.decode(&c.ids, true).unwrap();
            if dec != c.decoded_skip_special {
                failures.push(format!(
                    "{path} {name} {:?}: decode(skip) {dec:?} != HF {:?}",
                    c.text, c.decoded_skip_special
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn tokenizer_json_matches_hf() {
    check_against_reference(from_json, "tokenizer.json");
}

#[test]
fn gguf_metadata_matches_hf() {
    check_against_reference(from_gguf, "gguf");
}

#[test]
fn reference_covers_the_hard_cases() {
    // Guards the fixture itself: byte fallback and multi-token characters must be exercised.
    let reference = reference();
    let spm = from_json("spm");
    let emoji = cases(&reference, "spm")
        .into_iter()
        .find(|c| c.text.starts_with("emoji"))
        .unwrap();
    assert!(emoji
        .ids
        .iter()
        .any(|&id| spm.token_to_str(id).unwrap().starts_with("<0x")));
    let qwen = from_json("qwen2");
    let pieces: Vec<String> = qwen
        .encode("😀", false)
        .unwrap()
        .iter()
        .map(|&id| qwen.token_to_str(id).unwrap())
        .collect();
    assert!(
        pieces.len() > 1,
        "emoji should span several byte-level tokens: {pieces:?}"
    );
}

#[test]
fn special_tokens() {
    for (tok, path) in [
        (from_json as fn(&str) -> Tokenizer, "json"),
        (from_gguf, "gguf"),
    ] {
        let q = tok("qwen2");
        assert_eq!(q.bos_id(), None, "{path}");
        assert!(!q.add_bos(), "{path}");
        let im_end = q.token_to_id("<|im_end|>").unwrap();
        assert!(q.eos_ids().contains(&im_end), "{path}: {:?}", q.eos_ids());

        let l = tok("llama3");
        let bot = l.token_to_id("<|begin_of_text|>").unwrap();
        assert_eq!(l.bos_id(), Some(bot), "{path}");
        assert!(l.add_bos(), "{path}");
        assert_eq!(
            l.eos_ids()[0],
            l.token_to_id("<|eot_id|>").unwrap(),
            "{path}"
        );
        assert_eq!(l.token_to_str(bot).as_deref(), Some("<|begin_of_text|>"));
        assert_eq!(l.encode("hi", true).unwrap()[0], bot);
        assert_ne!(l.encode("hi", false).unwrap()[0], bot);

        let s = tok("spm");
        assert_eq!(s.bos_id(), Some(1), "{path}");
        assert!(s.add_bos(), "{path}");
        assert_eq!(s.eos_ids(), &[2], "{path}");
        assert_eq!(s.token_to_str(1).as_deref(), Some("<s>"));

        let g = tok("gpt2");
        assert!(!g.add_bos(), "{path}");
        assert_eq!(g.token_to_str(g.vocab_size() as u32), None);
    }
}

#[test]
fn add_bos_token_in_config_overrides_post_processor() {
    let dir = std::env::temp_dir().join(format!("tandem-tok-{}-addbos", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        data_dir().join("spm/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": false}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": [2, 0]}"#,
    )
    .unwrap();
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    assert!(!tok.add_bos());
    assert_eq!(tok.eos_ids(), &[2, 0]);
    let plain = tok.encode("Hello world", false).unwrap();
    assert_eq!(tok.encode("Hello world", true).unwrap(), plain);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Streams `ids` one at a time; returns the pushed chunks (None for held-back ids) and the flush.
fn stream(tok: &Tokenizer, ids: &[u32], skip: bool) -> (Vec<Option<String>>, String) {
    let mut s: StreamDecoder = tok.stream_decoder(skip);
    let pushed = ids.iter().map(|&id| s.push(id).unwrap()).collect();
    (pushed, s.flush().unwrap())
}

#[test]
fn stream_decoder_equals_full_decode() {
    let reference = reference();
    let mut held_back = 0;
    for name in NAMES {
        for tok in [from_json(name), from_gguf(name)] {
            let all_cases = cases(&reference, name);
            let mut everything: Vec<u32> = Vec::new();
            for c in &all_cases {
                everything.extend(&c.ids);
            }
            let mut sequences: Vec<Vec<u32>> = all_cases.into_iter().map(|c| c.ids).collect();
            sequences.push(everything);
            for ids in &sequences {
                for skip in [false, true] {
                    let full = tok.decode(ids, skip).unwrap();
                    let (pushed, rest) = stream(&tok, ids, skip);
                    held_back += pushed.iter().filter(|p| p.is_none()).count();
                    let mut joined: String = pushed.iter().flatten().map(String::as_str).collect();
                    // A push never emits half a character: none of them contains U+FFFD when
                    // the full text does not.
                    if !full.contains('\u{FFFD}') {
                        assert!(!joined.contains('\u{FFFD}'), "{name}: {pushed:?}");
                    }
                    joined.push_str(&rest);
                    assert_eq!(joined, full, "{name} skip={skip} ids={ids:?}");
                }
            }
        }
    }
    assert!(
        held_back > 0,
        "no id was ever held back: the test does not exercise partial characters"
    );
}

#[test]
fn stream_decoder_holds_partial_characters() {
    for name in ["qwen2", "spm"] {
        let tok = from_json(name);
        // 🦀 is not in either training corpus: byte pieces / byte-fallback tokens.
        let ids = tok.encode("a🦀b", false).unwrap();
        let (pushed, rest) = stream(&tok, &ids, false);
        assert!(pushed.iter().any(Option::is_none), "{name}: {pushed:?}");
        let chunks: Vec<&str> = pushed.iter().flatten().map(String::as_str).collect();
        assert!(chunks.iter().any(|c| c.contains('🦀')), "{chunks:?}");
        assert_eq!(chunks.concat() + &rest, "a🦀b");
    }
    // Flushing an incomplete character gives what decode gives (U+FFFD), and the stream goes on.
    let tok = from_json("qwen2");
    let ids = tok.encode("😀", false).unwrap();
    let mut s = tok.stream_decoder(false);
    assert_eq!(s.push(ids[0]).unwrap(), None);
    assert_eq!(s.flush().unwrap(), tok.decode(&ids[..1], false).unwrap());
    assert_eq!(s.flush().unwrap(), "");
    assert!(s
        .push(tok.encode("x", false).unwrap()[0])
        .unwrap()
        .is_some());
}

#[test]
fn errors_on_bad_input() {
    assert!(Tokenizer::from_json_bytes(b"not json").is_err());
    assert!(Tokenizer::from_json_bytes(br#"{"model": {"type": "Nope"}}"#).is_err());
    let missing = Tokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/tokenizer.json"),
        "{missing}"
    );

    let tok = from_json("qwen2");
    let err = tok.decode(&[tok.vocab_size() as u32], false).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    let mut s = tok.stream_decoder(false);
    assert!(s.push(u32::MAX).is_err());

    let base = gguf_metadata("qwen2");
    let expect_err = |meta: &Metadata, needle: &str| {
        let err = Tokenizer::from_gguf_metadata(meta).unwrap_err().to_string();
        assert!(err.contains(needle), "`{err}` should mention `{needle}`");
    };
    let mut m = base.clone();
    m.insert(
        "tokenizer.ggml.model".into(),
        GgufValue::String("bert".into()),
    );
    expect_err(&m, "bert");
    let mut m = base.clone();
    m.insert(
        "tokenizer.ggml.pre".into(),
        GgufValue::String("mystery-pre".into()),
    );
    expect_err(&m, "mystery-pre");
    let mut m = base.clone();
    m.remove("tokenizer.ggml.tokens");
    expect_err(&m, "tokenizer.ggml.tokens");
    let mut m = base.clone();
    m.insert("tokenizer.ggml.tokens".into(), GgufValue::U32(3));
    expect_err(&m, "tokenizer.ggml.tokens");
    let mut m = base.clone();
    m.insert(
        "tokenizer.ggml.merges".into(),
        GgufValue::Array(vec![GgufValue::String("zz_not_a_token q".into())]),
    );
    assert!(Tokenizer::from_gguf_metadata(&m).is_err());
    let mut m = base.clone();
    m.insert(
        "tokenizer.ggml.token_type".into(),
        GgufValue::Array(vec![GgufValue::I32(1)]),
    );
    expect_err(&m, "token_type");
    let mut m = base.clone();
    m.insert(
        "tokenizer.ggml.eos_token_id".into(),
        GgufValue::U32(1_000_000),
    );
    expect_err(&m, "eos_token_id");
    let mut m = base;
    m.insert(
        "tokenizer.ggml.add_bos_token".into(),
        GgufValue::String("yes".into()),
    );
    expect_err(&m, "add_bos_token");

    let mut m = gguf_metadata("spm");
    m.remove("tokenizer.ggml.scores");
    expect_err(&m, "tokenizer.ggml.scores");
}

/// tokenizers 0.22 panics, instead of returning an error, on a syntax error inside `decoder`, on a
/// `Precompiled` normalizer with bad fields, and at the first `encode` after a `TemplateProcessing`
/// that names an undefined special token or uses sequence B in `single` (found by the
/// `tokenizer_json` fuzz target; fuzz/regressions/tokenizer_json/). All must be errors.
#[test]
fn malformed_tokenizer_json_is_an_error_not_a_panic() {
    for (json, needle) in [
        (&br#"{"decoder": {"type": "ByteLevel" "oops"}}"#[..], "JSON"),
        (
            br#"{"normalizer": {"type": "Precompiled", "precompiled_charsmap": 5}}"#,
            "Precompiled",
        ),
        (
            br#"{"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}], "pair": [], "special_tokens": {}}, "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}"#,
            "<s>",
        ),
        (
            br#"{"post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "B", "type_id": 0}}], "pair": [], "special_tokens": {}}, "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}"#,
            "sequence B",
        ),
    ] {
        let err = std::panic::catch_unwind(|| Tokenizer::from_json_bytes(json))
            .unwrap_or_else(|_| panic!("panicked on {}", String::from_utf8_lossy(json)))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
}

/// Building a SentencePiece tokenizer from GGUF tries every split of every piece; a corrupt file
/// with one 1 MB piece made that take minutes (found while reviewing what the `gguf_tokenizer`
/// fuzz target cannot reach: its inputs are at most 32 KiB). The piece must load at once and
/// leave the rest of the vocabulary working.
#[test]
fn huge_sentencepiece_piece_loads_quickly() {
    let mut m = gguf_metadata("spm");
    let Some(GgufValue::Array(tokens)) = m.get_mut("tokenizer.ggml.tokens") else {
        panic!("spm.gguf has no token list");
    };
    let last = tokens.len() - 1;
    tokens[last] = GgufValue::String("a".repeat(1 << 20));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Tokenizer::from_gguf_metadata(&m).map(|t| t.encode("Hello world", true)));
    });
    let ids = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("building the tokenizer took more than 20 s")
        .unwrap()
        .unwrap();
    assert_eq!(ids, from_gguf("spm").encode("Hello world", true).unwrap());
}

/// llama.cpp ships vocabulary-only GGUF files of real models with Hugging Face reference ids
/// (`models/ggml-vocab-<name>.gguf` + `.inp` / `.out`; the `llama-cpp-python` source package
/// carries them). Run with `TANDEM_LLAMA_VOCAB_DIR=<llama.cpp>/models cargo test -- --ignored`.
#[test]
#[ignore = "needs TANDEM_LLAMA_VOCAB_DIR (llama.cpp's models/ folder)"]
fn llama_cpp_vocab_files() {
    let dir =
        PathBuf::from(std::env::var("TANDEM_LLAMA_VOCAB_DIR").expect("TANDEM_LLAMA_VOCAB_DIR"));
    let mut failures = Vec::new();
    for name in ["llama-spm", "llama-bpe", "qwen2", "gpt-2"] {
        let gguf = dir.join(format!("ggml-vocab-{name}.gguf"));
        let bytes = std::fs::read(&gguf).unwrap();
        let mut r = Reader { b: &bytes, pos: 0 };
        assert_eq!(r.take(4), b"GGUF");
        let _version = r.u32();
        let _tensors = r.u64();
        let mut meta = Metadata::new();
        for _ in 0..r.u64() {
            let key = r.string();
            let ty = r.u32();
            let v = r.value(ty);
            meta.insert(key, v);
        }
        let tok = Tokenizer::from_gguf_metadata(&meta).unwrap();
        let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
        let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
        let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
        let expected: Vec<&str> = out.lines().collect();
        let mut checked = 0;
        for (text, want) in texts.iter().zip(&expected) {
            let want: Vec<u32> = want
                .split_whitespace()
                .map(|t| t.parse().unwrap())
                .collect();
            let got = tok.encode(text, false).unwrap();
            checked += 1;
            if got != want {
                failures.push(format!("{name} {text:?}: {got:?} != {want:?}"));
            }
            let mut s = tok.stream_decoder(false);
            let mut streamed: String = got.iter().filter_map(|&id| s.push(id).unwrap()).collect();
            streamed.push_str(&s.flush().unwrap());
            assert_eq!(
                streamed,
                tok.decode(&got, false).unwrap(),
                "{name} {text:?}"
            );
        }
        eprintln!("{name}: {checked} strings");
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
