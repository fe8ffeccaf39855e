//! Text ↔ token ids. Wraps the `tokenizers` crate (pure-Rust build) and adds what a runtime needs
//! around it: BOS/EOS handling that agrees with Hugging Face, a tokenizer rebuilt from a GGUF
//! file's `tokenizer.ggml.*` keys, and a streaming decoder that never splits a UTF-8 character.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value as Json;
use tandem_hal::{Error, Result};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, Sequence as NormSequence, NFC};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// Split regex of Qwen2 / Qwen2.5 / Qwen3 (`tokenizer.ggml.pre = "qwen2"`): digits one at a time.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Split regex of Llama 3 (`tokenizer.ggml.pre = "llama-bpe"`): digits in runs of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_NORMAL: i64 = 1;
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// Control tokens that end a turn in common chat formats; a GGUF file only names one EOS id, but
/// generation must also stop on these (llama.cpp treats them the same way).
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "<EOT>",
];

/// A tokenizer plus the special-token facts needed to build prompts and stop generation.
///
/// Cheap to clone (the vocabulary is shared), `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Whether `inner`'s own post-processor already puts BOS first when asked for special tokens.
    post_processor_adds_bos: bool,
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{context}: {e}"))
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::config(path, "", format!("invalid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// `tokenizers::Tokenizer::from_bytes`, minus the inputs on which tokenizers 0.22 panics instead
/// of returning an error (found by the `tokenizer_json` fuzz target, see docs/robustness.md):
/// a JSON syntax error inside the `decoder` object (`expect("Helper")`), a `Precompiled`
/// normalizer whose fields do not parse (`expect("Precompiled")`), a `TemplateProcessing`
/// post-processor whose template names a special token it does not define, or whose `single`
/// template uses sequence B (indexing panics at the first `encode`), and a `Strip` decoder with
/// `stop > 0` (panics on short tokens at `decode`). They are checked here first,
/// at the cost of one more parse.
fn parse_tokenizer_json(bytes: &[u8]) -> std::result::Result<tokenizers::Tokenizer, String> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    check_known_panics(&json)?;
    tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| e.to_string())
}

/// Walks the whole document: normalizers and post-processors can nest inside `Sequence`s.
///
/// Normalizers are picked by their `type`; post-processors are not: tokenizers deserializes them
/// as an untagged enum, which ignores `type`, so any object with the fields of a
/// `TemplateProcessing` (`single`, `pair`, `special_tokens`) becomes one, whatever its `type`
/// says (the fuzzer found `"tyqe": "TemplateProcessing"` panicking at the first `encode`).
fn check_known_panics(v: &Json) -> std::result::Result<(), String> {
    match v {
        Json::Object(o) => {
            if o.get("type").and_then(Json::as_str) == Some("Precompiled") {
                serde_json::from_value::<tokenizers::normalizers::Precompiled>(v.clone())
                    .map_err(|e| format!("Precompiled normalizer: {e}"))?;
            }
            if ["single", "pair", "special_tokens"]
                .iter()
                .all(|k| o.contains_key(*k))
            {
                check_template_processing(o)?;
            }
            // A `Strip` decoder (matched by its fields, like the untagged legacy decoders) with
            // `stop > 0` indexes before the start of any decoded token that is shorter than
            // `stop` and made only of `content` (or empty): tokenizers 0.22 panics
            // (decoders/strip.rs). Real tokenizers strip at the start only (`stop: 0`).
            if ["content", "start", "stop"]
                .iter()
                .all(|k| o.contains_key(*k))
                && o.get("stop").and_then(Json::as_u64).is_some_and(|n| n > 0)
            {
                return Err(
                    "Strip decoder with `stop` > 0 is not supported (tokenizers 0.22 panics on \
                     tokens shorter than `stop`)"
                        .into(),
                );
            }
            o.values().try_for_each(check_known_panics)
        }
        Json::Array(a) => a.iter().try_for_each(check_known_panics),
        _ => Ok(()),
    }
}

fn check_template_processing(o: &serde_json::Map<String, Json>) -> std::result::Result<(), String> {
    let specials = o.get("special_tokens").and_then(Json::as_object);
    for which in ["single", "pair"] {
        let Some(pieces) = o.get(which).and_then(Json::as_array) else {
            continue;
        };
        for piece in pieces {
            if which == "single"
                && piece.pointer("/Sequence/id").and_then(Json::as_str) == Some("B")
            {
                return Err("TemplateProcessing: the `single` template uses sequence B".into());
            }
            let Some(id) = piece.pointer("/SpecialToken/id").and_then(Json::as_str) else {
                continue;
            };
            let Some(token) = specials.and_then(|s| s.get(id)) else {
                return Err(format!(
                    "TemplateProcessing: `{which}` uses special token `{id}`, which \
                     `special_tokens` does not define"
                ));
            };
            let len = |key: &str| token.get(key).and_then(Json::as_array).map(Vec::len);
            if len("ids") != len("tokens") {
                return Err(format!(
                    "TemplateProcessing: special token `{id}` has {:?} ids for {:?} tokens",
                    len("ids"),
                    len("tokens")
                ));
            }
        }
    }
    Ok(())
}

/// `bos_token` / `eos_token` in tokenizer_config.json: a string, `{"content": …}` or null.
fn special_token_text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`. A `tokenizer_config.json` (BOS/EOS names,
    /// `add_bos_token`) and a `generation_config.json` (extra EOS ids) next to it are used when
    /// present.
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        let inner = parse_tokenizer_json(&bytes)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let config = read_json(&dir.join("tokenizer_config.json"))?;
        let generation = read_json(&dir.join("generation_config.json"))?;
        Self::from_hf(inner, config.as_ref(), generation.as_ref())
    }

    /// Parses `tokenizer.json` contents; BOS comes from the post-processor, no EOS is known.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Tokenizer> {
        let inner = parse_tokenizer_json(bytes).map_err(|e| tok_err("tokenizer.json", e))?;
        Self::from_hf(inner, None, None)
    }

    fn from_hf(
        inner: tokenizers::Tokenizer,
        config: Option<&Json>,
        generation: Option<&Json>,
    ) -> Result<Tokenizer> {
        let lookup = |name: Option<String>| name.and_then(|n| inner.token_to_id(&n));
        let mut bos_id = lookup(special_token_text(config.and_then(|c| c.get("bos_token"))));
        let mut eos_ids: Vec<u32> =
            lookup(special_token_text(config.and_then(|c| c.get("eos_token"))))
                .into_iter()
                .collect();
        match generation.and_then(|g| g.get("eos_token_id")) {
            Some(Json::Number(n)) => eos_ids.extend(n.as_u64().and_then(|v| u32::try_from(v).ok())),
            Some(Json::Array(a)) => eos_ids.extend(
                a.iter()
                    .filter_map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok())),
            ),
            _ => {}
        }
        dedup_in_order(&mut eos_ids);

        // What does the post-processor put in front of a plain word?
        let with = inner
            .encode("a", true)
            .map_err(|e| tok_err("probing post-processor", e))?;
        let without = inner
            .encode("a", false)
            .map_err(|e| tok_err("probing post-processor", e))?;
        let (with, without) = (with.get_ids(), without.get_ids());
        let added_front = with.len() > without.len() && with.first() != without.first();
        let post_processor_adds_bos = match (added_front, bos_id) {
            (true, Some(b)) => with.first() == Some(&b),
            (true, None) => {
                bos_id = with.first().copied();
                true
            }
            (false, _) => false,
        };
        let add_bos = config
            .and_then(|c| c.get("add_bos_token"))
            .and_then(Json::as_bool)
            .unwrap_or(post_processor_adds_bos)
            && bos_id.is_some();
        let vocab_size = vocab_size_of(&inner);
        Ok(Tokenizer {
            inner: Arc::new(inner),
            bos_id,
            eos_ids,
            add_bos,
            add_eos: false,
            post_processor_adds_bos,
            vocab_size,
        })
    }

    /// Rebuilds the tokenizer from GGUF metadata (`tokenizer.ggml.*`), as llama.cpp's converter
    /// stores it: `gpt2` (byte-level BPE: Qwen2/3, Llama 3, GPT-2) or `llama` (SentencePiece BPE:
    /// Llama 1/2, Mistral v0.1).
    pub fn from_gguf_metadata(meta: &crate::Metadata) -> Result<Tokenizer> {
        let model = get_str(meta, "tokenizer.ggml.model")?;
        let tokens = get_strings(meta, "tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(gguf_err("tokenizer.ggml.tokens", "empty token list"));
        }
        let types = match meta.get("tokenizer.ggml.token_type") {
            None => vec![TOKEN_NORMAL; tokens.len()],
            Some(v) => {
                let a = v
                    .as_array()
                    .ok_or_else(|| gguf_err("tokenizer.ggml.token_type", "not an array"))?;
                a.iter()
                    .map(|t| {
                        t.as_i64().ok_or_else(|| {
                            gguf_err("tokenizer.ggml.token_type", "non-integer entry")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        if types.len() != tokens.len() {
            return Err(gguf_err(
                "tokenizer.ggml.token_type",
                format!("{} entries for {} tokens", types.len(), tokens.len()),
            ));
        }
        let mut vocab: HashMap<String, u32> = HashMap::with_capacity(tokens.len());
        for (id, t) in tokens.iter().enumerate() {
            // Duplicated pieces (padding entries in some files): the first id wins, as in llama.cpp.
            vocab.entry(t.clone()).or_insert(id as u32);
        }

        let (mut inner, default_add_bos) = match model {
            "gpt2" => (byte_level_from_gguf(meta, vocab)?, false),
            "llama" => (sentencepiece_from_gguf(meta, &tokens, &types, vocab)?, true),
            other => {
                return Err(Error::Tokenizer(format!(
                    "GGUF tokenizer model `{other}` is not supported (supported: gpt2, llama)"
                )))
            }
        };

        // Control and user-defined pieces are matched as a whole before the model runs.
        let added = |wanted: i64, special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(_, &t)| t == wanted)
                .map(|(s, _)| AddedToken::from(s.clone(), special).normalized(false))
                .collect()
        };
        inner.add_special_tokens(&added(TOKEN_CONTROL, true));
        inner.add_tokens(&added(TOKEN_USER_DEFINED, false));

        let token_id = |key: &str| -> Result<Option<u32>> {
            match meta.get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64().and_then(|v| u32::try_from(v).ok()) {
                    Some(id) if (id as usize) < tokens.len() => Ok(Some(id)),
                    _ => Err(gguf_err(key, format!("not a token id: {v:?}"))),
                },
            }
        };
        let bos_id = match token_id("tokenizer.ggml.bos_token_id")? {
            Some(id) => Some(id),
            None if model == "llama" => Some(1).filter(|&id| (id as usize) < tokens.len()),
            None => None,
        };
        let mut eos_ids = Vec::new();
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            eos_ids.extend(token_id(key)?);
        }
        eos_ids.extend(
            tokens
                .iter()
                .zip(&types)
                .enumerate()
                .filter(|(_, (s, &t))| {
                    t == TOKEN_CONTROL && END_OF_GENERATION.contains(&s.as_str())
                })
                .map(|(id, _)| id as u32),
        );
        dedup_in_order(&mut eos_ids);
        let flag = |key: &str, default: bool| -> Result<bool> {
            match meta.get(key) {
                None => Ok(default),
                Some(v) => v.as_bool().ok_or_else(|| {
                    gguf_err(key, format!("expected a bool, found {}", v.type_name()))
                }),
            }
        };
        let add_bos = flag("tokenizer.ggml.add_bos_token", default_add_bos)? && bos_id.is_some();
        let add_eos = flag("tokenizer.ggml.add_eos_token", false)? && !eos_ids.is_empty();
        let vocab_size = vocab_size_of(&inner).max(tokens.len());
        Ok(Tokenizer {
            inner: Arc::new(inner),
            bos_id,
            eos_ids,
            add_bos,
            add_eos,
            post_processor_adds_bos: false,
            vocab_size,
        })
    }

    /// Token ids of `text`. With `add_special`, BOS is prepended when [`Tokenizer::add_bos`] says
    /// so (and whatever else the tokenizer's post-processor adds); special-token text inside
    /// `text` (e.g. `<|im_start|>`) is always matched as that token, as in Hugging Face.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special)
            .map_err(|e| tok_err("encode", e))?;
        let mut ids = enc.get_ids().to_vec();
        if add_special {
            if let Some(bos) = self.bos_id {
                if self.add_bos && !self.post_processor_adds_bos {
                    ids.insert(0, bos);
                } else if !self.add_bos && self.post_processor_adds_bos && ids.first() == Some(&bos)
                {
                    ids.remove(0);
                }
            }
            if self.add_eos {
                ids.extend(self.eos_ids.first());
            }
        }
        Ok(ids)
    }

    /// Text of `ids`; `skip_special` drops control tokens (BOS, EOS, chat markers).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::Tokenizer(format!(
                "decode: token id {bad} is outside the vocabulary ({} tokens)",
                self.vocab_size
            )));
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| tok_err("decode", e))
    }

    /// A decoder for ids arriving one at a time (generation).
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder {
        StreamDecoder::new(self, skip_special)
    }

    /// BOS id, if the tokenizer has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Ids that end generation (EOS first, then end-of-turn tokens), without duplicates.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `encode(text, true)` puts BOS in front of a raw prompt.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Number of ids (one past the largest id, added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The vocabulary piece of `id` as stored (byte-level pieces use `Ġ`-style characters,
    /// SentencePiece ones `▁`), or `None` outside the vocabulary.
    pub fn token_to_str(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Id of a vocabulary piece or added token (`"<|im_end|>"`), if present.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Parses a prompt given as token ids, `"1,2,3"` (the CLI's `--tokens`): decimal ids (an optional
/// `+` as clap allowed) separated by commas, spaces around an id allowed. An empty list, an empty
/// item or an id that is not a `u32` is an error naming the item; whether the ids exist in a
/// model's vocabulary is checked where the prompt is run.
pub fn parse_token_ids(text: &str) -> Result<Vec<u32>> {
    if text.trim().is_empty() {
        return Err(Error::InvalidInput(
            "token list is empty (expected ids like 1,2,3)".into(),
        ));
    }
    text.split(',')
        .enumerate()
        .map(|(i, item)| {
            let item = item.trim();
            item.parse::<u32>().map_err(|_| {
                Error::InvalidInput(format!(
                    "token list item {} `{item}` is not a token id (a decimal number up to {})",
                    i + 1,
                    u32::MAX
                ))
            })
        })
        .collect()
}

fn dedup_in_order(ids: &mut Vec<u32>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
}

fn vocab_size_of(t: &tokenizers::Tokenizer) -> usize {
    let model_max = t.get_vocab(false).values().copied().max();
    let added_max = t.get_added_tokens_decoder().keys().copied().max();
    model_max.max(added_max).map_or(0, |m| m as usize + 1)
}

fn gguf_err(key: &str, detail: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("GGUF metadata `{key}`: {detail}"))
}

fn get_str<'m>(meta: &'m crate::Metadata, key: &str) -> Result<&'m str> {
    let v = meta.get(key).ok_or_else(|| gguf_err(key, "missing"))?;
    v.as_str()
        .ok_or_else(|| gguf_err(key, format!("expected a string, found {}", v.type_name())))
}

fn get_strings(meta: &crate::Metadata, key: &str) -> Result<Vec<String>> {
    let v = meta.get(key).ok_or_else(|| gguf_err(key, "missing"))?;
    let a = v
        .as_array()
        .ok_or_else(|| gguf_err(key, format!("expected an array, found {}", v.type_name())))?;
    a.iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| gguf_err(key, format!("non-string entry ({})", s.type_name())))
        })
        .collect()
}

/// Byte-level BPE: vocabulary and merges are stored verbatim; the split regex is implied by
/// `tokenizer.ggml.pre`.
fn byte_level_from_gguf(
    meta: &crate::Metadata,
    vocab: HashMap<String, u32>,
) -> Result<tokenizers::Tokenizer> {
    let merges = get_strings(meta, "tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| match m.split_once(' ') {
            Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
            None => Err(gguf_err(
                "tokenizer.ggml.merges",
                format!("entry {i} `{m}` has no space"),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    let pre = match meta.get("tokenizer.ggml.pre") {
        None => "default",
        Some(_) => get_str(meta, "tokenizer.ggml.pre")?,
    };
    // Llama 3's tokenizer.json sets `ignore_merges`: a pre-token that is itself a vocabulary
    // entry is taken whole, even where the merges would split it differently.
    let ignore_merges = matches!(pre, "llama-bpe" | "llama3");
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| tok_err("building byte-level BPE from GGUF", e))?;
    let split = |regex: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| tok_err("compiling split regex", e))?;
        Ok(PreSequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ])
        .into())
    };
    let (pre_tokenizer, nfc) = match pre {
        // GPT-2's own regex is built into the ByteLevel pre-tokenizer.
        "default" | "gpt-2" | "gpt2" => (ByteLevel::new(false, true, true).into(), false),
        // Qwen2's tokenizer.json normalizes to NFC before splitting.
        "qwen2" => (split(QWEN2_SPLIT)?, true),
        "llama-bpe" | "llama3" => (split(LLAMA3_SPLIT)?, false),
        // SmolLM (and StarCoder, Refact): every digit on its own, then GPT-2's regex — as the
        // models' tokenizer.json (`Digits(individual_digits)` then `ByteLevel`) and llama.cpp
        // (`\p{N}`, then the GPT-2 pattern) both split.
        "smollm" | "starcoder" | "refact" => (
            PreSequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])
            .into(),
            false,
        ),
        other => {
            return Err(gguf_err(
                "tokenizer.ggml.pre",
                format!(
                    "pre-tokenizer `{other}` is not supported (supported: default, gpt-2, qwen2, llama-bpe, smollm, starcoder, refact)"
                ),
            ))
        }
    };
    let mut t = tokenizers::Tokenizer::new(bpe);
    if nfc {
        t.with_normalizer(Some(NFC));
    }
    t.with_pre_tokenizer(Some::<PreTokenizerWrapper>(pre_tokenizer));
    t.with_decoder(Some(ByteLevel::default()));
    Ok(t)
}

/// SentencePiece BPE: GGUF keeps pieces and scores but no merges. SentencePiece merges, among
/// adjacent symbol pairs, the one whose concatenation is the highest-scoring piece, so every
/// split of a piece into two known pieces is a merge ranked by that piece's score.
fn sentencepiece_from_gguf(
    meta: &crate::Metadata,
    tokens: &[String],
    types: &[i64],
    vocab: HashMap<String, u32>,
) -> Result<tokenizers::Tokenizer> {
    let scores: Vec<f32> = match meta.get("tokenizer.ggml.scores") {
        None => {
            return Err(gguf_err(
                "tokenizer.ggml.scores",
                "missing (needed for a `llama` tokenizer)",
            ))
        }
        Some(v) => v
            .as_array()
            .ok_or_else(|| gguf_err("tokenizer.ggml.scores", "not an array"))?
            .iter()
            .map(|s| {
                s.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| gguf_err("tokenizer.ggml.scores", "non-numeric entry"))
            })
            .collect::<Result<_>>()?,
    };
    if scores.len() != tokens.len() {
        return Err(gguf_err(
            "tokenizer.ggml.scores",
            format!("{} entries for {} tokens", scores.len(), tokens.len()),
        ));
    }
    let merges = sentencepiece_merges(tokens, &scores, types, &vocab);

    let unk_id = match meta.get("tokenizer.ggml.unknown_token_id") {
        Some(v) => v.as_u64().map(|v| v as usize),
        None => types.iter().position(|&t| t == TOKEN_UNKNOWN),
    };
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk_id.and_then(|i| tokens.get(i)) {
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder
        .build()
        .map_err(|e| tok_err("building SentencePiece BPE from GGUF", e))?;

    let add_space_prefix = match meta.get("tokenizer.ggml.add_space_prefix") {
        None => true,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| gguf_err("tokenizer.ggml.add_space_prefix", "not a bool"))?,
    };
    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(|e| tok_err("building SentencePiece normalizer", e))
    };
    let mut norms: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        norms.push(Prepend::new("▁".to_owned()).into());
    }
    norms.push(replace(" ", "▁")?.into());
    let mut decoders: Vec<DecoderWrapper> = vec![
        replace("▁", " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    let mut t = tokenizers::Tokenizer::new(bpe);
    t.with_normalizer(Some(NormSequence::new(norms)));
    t.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(t)
}

/// Pieces longer than this get no merges. Real SentencePiece pieces are a few dozen bytes at most
/// (`max_sentencepiece_length` is 16 characters by default), and trying every split of a piece
/// costs time quadratic in its length: one corrupt 1 MB piece would take minutes.
const MAX_MERGED_PIECE_BYTES: usize = 1024;

fn sentencepiece_merges(
    tokens: &[String],
    scores: &[f32],
    types: &[i64],
    vocab: &HashMap<String, u32>,
) -> Vec<(String, String)> {
    // (score, merged id, left length in bytes, left, right)
    let mut ranked: Vec<(f32, u32, usize, &str, &str)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if types[id] != TOKEN_NORMAL
            || piece.len() > MAX_MERGED_PIECE_BYTES
            || vocab.get(piece) != Some(&(id as u32))
        {
            continue;
        }
        for (split, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(split);
            if vocab.contains_key(a) && vocab.contains_key(b) {
                ranked.push((scores[id], id as u32, split, a, b));
            }
        }
    }
    // Highest score first; ties by id, then by the shorter left piece (Hugging Face's order).
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    ranked
        .into_iter()
        .map(|(_, _, _, a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

/// Incremental detokenization: [`StreamDecoder::push`] returns only text that is final, holding
/// back ids while they end in an incomplete UTF-8 character (byte-level pieces and byte-fallback
/// tokens can split one). The concatenation of every `push` result and [`StreamDecoder::flush`]
/// equals `decode(all ids)`.
///
/// It decodes a short window of ids (the last emitted chunk as context plus the new ids) and
/// emits the difference, so the work per token stays constant and context-dependent rules
/// (SentencePiece's leading-space strip) apply exactly as in a full decode.
#[derive(Clone, Debug)]
pub struct StreamDecoder {
    tokenizer: Tokenizer,
    skip_special: bool,
    /// Window of ids: `ids[..read]` is already emitted, the rest is pending.
    ids: Vec<u32>,
    read: usize,
    /// `decode(ids[..read])`: the context that new text is diffed against.
    context: String,
}

impl StreamDecoder {
    pub fn new(tokenizer: &Tokenizer, skip_special: bool) -> StreamDecoder {
        StreamDecoder {
            tokenizer: tokenizer.clone(),
            skip_special,
            ids: Vec::new(),
            read: 0,
            context: String::new(),
        }
    }

    /// Adds one id; returns the text it completes, or `None` while it is held back.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        if text.len() <= self.context.len() || text.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let new = self.diff(&text)?;
        // The ids just emitted become the context of the next window.
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        self.context = self.tokenizer.decode(&self.ids, self.skip_special)?;
        Ok(Some(new))
    }

    /// Returns everything still held back (an incomplete character comes out as U+FFFD, as in
    /// `decode`). Further pushes continue the same stream.
    pub fn flush(&mut self) -> Result<String> {
        if self.read == self.ids.len() {
            return Ok(String::new());
        }
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        let new = if text.len() > self.context.len() {
            self.diff(&text)?
        } else {
            String::new()
        };
        self.read = self.ids.len();
        self.context = text;
        Ok(new)
    }

    fn diff(&self, text: &str) -> Result<String> {
        match text.strip_prefix(self.context.as_str()) {
            Some(rest) => Ok(rest.to_owned()),
            None => Err(Error::Tokenizer(format!(
                "stream decode: text {text:?} does not extend the previous text {:?}",
                self.context
            ))),
        }
    }
}
