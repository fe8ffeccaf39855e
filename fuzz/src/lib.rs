//! The body of every fuzz target, in one place: `fuzz_targets/*.rs` hand libFuzzer's bytes to these
//! functions, and `graphs/tests/fuzz_corpus_replay.rs` compiles this same file (`#[path]`) to
//! replay the committed corpus on stable with no fuzzer installed.
//!
//! Each function feeds the bytes to a reader of outside data and then uses whatever it returned,
//! the way the runtime would. A target fails by panicking (or by libFuzzer's time and memory
//! limits); errors returned by the readers are the expected outcome for most inputs. Only
//! `tandem_graphs`, `tandem_hal` and `std` are used, so the file builds inside either crate.

use std::path::{Path, PathBuf};

use tandem_graphs::chat::{chat_template_from_gguf, ChatMessage, ChatTemplate};
use tandem_graphs::gguf::{load_from_gguf, GgufFile};
use tandem_graphs::tokenizer::{parse_token_ids, Tokenizer};
use tandem_hal::HostBytes;

/// One fuzz target: it takes the fuzzer's bytes and panics on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("gguf", gguf),
    ("safetensors_config", safetensors_config),
    ("tokenizer_json", tokenizer_json),
    ("gguf_tokenizer", gguf_tokenizer),
    ("chat_template", chat_template),
    ("token_list", token_list),
];

/// Tensors larger than this are not decoded to f32 (the decode allocates 4 bytes per element,
/// up to 8× the file's bytes for Q4_0); their bytes were still bounds-checked by the reader.
const MAX_DECODE_ELEMENTS: usize = 1 << 20;

/// Text longer than this is cut before encoding. BPE on one long word is quadratic and every id
/// is stream-decoded, so longer text only makes the fuzzer slower: 1 KiB already reaches every
/// pre-tokenizer, model and decoder branch. (It was 4 KiB until the 10 M-execution tokenizer
/// runs; see docs/robustness.md.)
const MAX_TEXT_BYTES: usize = 1024;

/// A GGUF image: header, metadata, tensor directory, then the model built from it (spec, weights,
/// llama q/k un-permutation) and every tensor the directory names.
pub fn gguf(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes(HostBytes::from_vec(data.to_vec()), "fuzz.gguf") else {
        return;
    };
    let _ = file.architecture();
    let _ = chat_template_from_gguf(&file.metadata);
    for info in &file.tensors {
        if let Ok(Some(t)) = file.get_tensor(&info.name) {
            if t.numel() <= MAX_DECODE_ELEMENTS {
                assert_eq!(t.to_f32_vec().len(), t.numel());
            }
        }
    }
    if let Ok(model) = load_from_gguf(file) {
        check_loaded(&model);
    }
}

/// The files of a Hugging Face model directory, as records `[kind u8][len u32 le][len bytes]`
/// (a short last record takes what is left). `kind % 5` picks the file from [`HF_FILES`]; a file
/// given twice keeps the last contents. The directory is then loaded as `tandem -m DIR` would.
pub fn safetensors_config(data: &[u8]) {
    let mut files: [Option<&[u8]>; HF_FILES.len()] = [None; HF_FILES.len()];
    let mut rest = data;
    while let [kind, tail @ ..] = rest {
        let (len, tail) = match tail {
            [a, b, c, d, tail @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, tail),
            _ => (tail.len(), &[][..]),
        };
        let len = len.min(tail.len());
        files[*kind as usize % HF_FILES.len()] = Some(&tail[..len]);
        rest = &tail[len..];
    }
    let dir = scratch_dir();
    for (name, contents) in HF_FILES.iter().zip(files) {
        let path = dir.join(name);
        match contents {
            Some(bytes) => std::fs::write(&path, bytes).expect("write fuzz scratch file"),
            None => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("remove {}: {e}", path.display()),
            },
        }
    }
    if let Ok(model) = tandem_graphs::load_weights(&dir) {
        check_loaded(&model);
    }
}

/// The file names [`safetensors_config`] can write.
pub const HF_FILES: [&str; 5] = [
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
];

/// `tokenizer.json` bytes, then optionally a NUL and text to encode: the tokenizer is parsed and
/// the text encoded, decoded and stream-decoded.
pub fn tokenizer_json(data: &[u8]) {
    let (json, text) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(tok) = Tokenizer::from_json_bytes(json) {
        exercise_tokenizer(&tok, text);
    }
}

/// A GGUF image whose `tokenizer.ggml.*` metadata rebuilds a tokenizer; the bytes after the
/// header (the data section, empty in a tokenizer-only file) are the text it encodes.
pub fn gguf_tokenizer(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes(HostBytes::from_vec(data.to_vec()), "fuzz.gguf") else {
        return;
    };
    if let Ok(tok) = Tokenizer::from_gguf_metadata(&file.metadata) {
        exercise_tokenizer(&tok, data.get(file.data_offset..).unwrap_or_default());
    }
}

/// NUL-separated fields: the template source, the BOS text, the EOS text, then role, content,
/// role, content, … of the conversation. Compiled, then rendered with and without the
/// generation prompt.
pub fn chat_template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\0');
    let source = fields.next().unwrap_or_default();
    let special = |f: Option<&str>| f.filter(|s| !s.is_empty()).map(str::to_owned);
    let (bos, eos) = (special(fields.next()), special(fields.next()));
    let rest: Vec<&str> = fields.collect();
    let messages: Vec<ChatMessage> = rest
        .chunks(2)
        .map(|m| ChatMessage::new(m[0], m.get(1).copied().unwrap_or_default()))
        .collect();
    if let Ok(template) = ChatTemplate::new(source, bos, eos) {
        let _ = template.render(&messages, true);
        let _ = template.render(&messages, false);
    }
}

/// The `--tokens 1,2,3` argument. A list that parses must print back to the same ids.
pub fn token_list(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(ids) = parse_token_ids(&text) {
        assert_eq!(ids.len(), text.matches(',').count() + 1, "{text:?}");
        let printed = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        assert_eq!(parse_token_ids(&printed).ok(), Some(ids), "{text:?}");
    }
}

/// What the runtime does with a freshly built tokenizer: encode the prompt, decode generated ids
/// in one go and as a stream. `bytes` supplies both the text and (two bytes each) raw ids, which
/// may lie outside the vocabulary.
fn exercise_tokenizer(tok: &Tokenizer, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(MAX_TEXT_BYTES)];
    let text = String::from_utf8_lossy(bytes);
    let _ = tok.encode(&text, false);
    let mut ids = tok.encode(&text, true).unwrap_or_default();
    ids.extend(
        bytes
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]))),
    );
    for skip_special in [false, true] {
        let whole = tok.decode(&ids, skip_special);
        let mut stream = tok.stream_decoder(skip_special);
        let mut streamed = String::new();
        let mut stream_ok = true;
        for &id in &ids {
            match stream.push(id) {
                Ok(piece) => streamed.push_str(&piece.unwrap_or_default()),
                Err(_) => {
                    stream_ok = false;
                    break;
                }
            }
        }
        if stream_ok {
            if let Ok(rest) = stream.flush() {
                streamed.push_str(&rest);
                // The stream decoder promises the same text as one decode of all ids.
                if let Ok(whole) = whole {
                    assert_eq!(streamed, whole, "ids {ids:?}, skip_special {skip_special}");
                }
            }
        }
    }
    for &id in ids.iter().take(64) {
        let _ = tok.token_to_str(id);
    }
    let _ = (tok.bos_id(), tok.eos_ids(), tok.add_bos(), tok.vocab_size());
}

/// A model that loaded must be internally consistent: every weight holds exactly its shape.
fn check_loaded(model: &tandem_graphs::LoadedModel) {
    let w = &model.weights;
    let layers = w.layers.iter().flat_map(|l| {
        [&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm]
            .into_iter()
            .chain([&l.w_gate, &l.w_up, &l.w_down])
            .chain(
                [&l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm]
                    .into_iter()
                    .flatten(),
            )
    });
    let all = [&w.token_embd, &w.norm]
        .into_iter()
        .chain(w.lm_head.as_ref())
        .chain(layers);
    for t in all {
        let bytes = t.dtype.row_bytes(t.row_len()).map(|r| r * t.n_rows());
        assert_eq!(bytes, Some(t.data.len()), "tensor {}", t.name);
    }
    assert_eq!(model.weights.layers.len(), model.spec.n_layers);
}

/// A directory of this thread's own under the temp dir, reused by every call on the thread.
fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static DIR: PathBuf = {
            let dir = std::env::temp_dir().join(format!(
                "tandem-fuzz-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("create fuzz scratch dir");
            dir
        };
    }
    DIR.with(|d| d.clone())
}

/// Removes this thread's scratch directory (the replay test calls it when done).
pub fn remove_scratch_dir() {
    let dir = scratch_dir();
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
