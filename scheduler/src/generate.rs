//! The generation loop: prefill the prompt in chunks, then decode one token at a time until EOS,
//! a stop string or the token budget, streaming text that never splits a UTF-8 character and
//! never shows a stop string.

use std::time::Instant;

use serde::Serialize;
use tandem_cpu::{CpuModel, Logits};
use tandem_graphs::tokenizer::{StreamDecoder, Tokenizer};
use tandem_hal::KvCache;
use tandem_hal::{Error, Result};

use crate::sampling::{Sampler, SamplingParams};

/// Largest number of prompt tokens sent through one CPU forward pass (bounds scratch memory).
pub const CPU_PREFILL_CHUNK: usize = 512;

/// One generation request.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops before any of these strings would be emitted.
    pub stop_strings: Vec<String>,
    /// Keep generating through end-of-sequence tokens (they are sampled and shown like any
    /// other), as benchmarks do to time a fixed number of tokens.
    pub ignore_eos: bool,
}

impl GenerateRequest {
    /// Greedy decoding of up to `max_new_tokens` after `prompt`, no stop strings.
    pub fn greedy(prompt: Vec<u32>, max_new_tokens: usize) -> GenerateRequest {
        GenerateRequest {
            prompt,
            max_new_tokens,
            sampling: SamplingParams::greedy(),
            stop_strings: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    /// The caller ended generation early ([`crate::CancelToken::stop`]), keeping its tokens.
    Stopped,
}

/// Timings of one request. Times are wall-clock milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_ms: f64,
    pub prefill_tok_s: f64,
    /// Request start to the first generated token.
    pub ttft_ms: f64,
    pub decode_ms: f64,
    /// Tokens after the first, per second of decode time.
    pub decode_tok_s: f64,
}

/// What a finished request produced.
#[derive(Clone, Debug)]
pub struct GenerateOutput {
    pub generated: Vec<u32>,
    pub text: String,
    pub stop_reason: StopReason,
    pub stats: GenerationStats,
}

/// Runs `req` on the CPU, continuing from whatever `cache` already holds (a multi-turn session),
/// calling `on_text` with each piece of new text as soon as it is complete.
///
/// This is the single-threaded loop without a scheduler; [`crate::Engine`] runs the same decode
/// steps ([`DecodeState`]) on its workers.
pub fn generate(
    model: &CpuModel,
    tokenizer: &Tokenizer,
    cache: &mut KvCache,
    req: &GenerateRequest,
    on_text: &mut dyn FnMut(&str),
) -> Result<GenerateOutput> {
    if req.prompt.is_empty() {
        return Err(Error::InvalidInput(
            "empty prompt: nothing to condition on".into(),
        ));
    }
    cache.check_room(req.prompt.len() + req.max_new_tokens.saturating_sub(1))?;
    let mut state = DecodeState::new(model.spec(), tokenizer, req, req.prompt.clone())?;

    let t0 = Instant::now();
    let mut logits = Vec::new();
    for chunk in req.prompt.chunks(CPU_PREFILL_CHUNK) {
        logits = model.forward(chunk, cache, Logits::Last)?;
    }
    let prefill_ms = ms(t0);

    let mut t_first: Option<Instant> = None;
    while !state.is_done() {
        let step = state.step(&mut logits)?;
        t_first.get_or_insert_with(Instant::now);
        if !step.text.is_empty() {
            on_text(&step.text);
        }
        match step.token {
            Some(token) if !step.done => {
                logits = model.forward(&[token], cache, Logits::Last)?;
            }
            _ => break,
        }
    }
    let tail = state.finish()?;
    if !tail.is_empty() {
        on_text(&tail);
    }
    let (text, stop_reason) = (state.text().to_string(), state.stop_reason());
    let generated = state.into_generated();
    let ttft_ms = t_first.map_or(0.0, |t| (t - t0).as_secs_f64() * 1e3);
    let decode_ms = match t_first {
        Some(t) if !generated.is_empty() => ms(t),
        _ => 0.0,
    };
    let decoded_after_first = generated.len().saturating_sub(1);
    let stats = GenerationStats {
        prompt_tokens: req.prompt.len(),
        generated_tokens: generated.len(),
        prefill_ms,
        prefill_tok_s: per_second(req.prompt.len(), prefill_ms),
        ttft_ms,
        decode_ms,
        decode_tok_s: per_second(decoded_after_first, decode_ms),
    };
    Ok(GenerateOutput {
        generated,
        text,
        stop_reason,
        stats,
    })
}

/// One sampled step of [`DecodeState::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeStep {
    /// The token to append (and run through the model unless `done`); `None` at EOS.
    pub token: Option<u32>,
    /// Text now safe to show (may be empty: held back for UTF-8 or a possible stop string).
    pub text: String,
    /// Generation is over: do not run `token` through the model.
    pub done: bool,
}

/// The per-token part of generation shared by [`generate`] and the engine's CPU worker:
/// sampling, EOS, stop strings, the token budget and streaming text.
#[derive(Debug)]
pub struct DecodeState {
    sampler: Sampler,
    eos: Vec<u32>,
    /// Tokens the repetition penalty looks at (the whole context so far).
    history: Vec<u32>,
    generated: Vec<u32>,
    max_new_tokens: usize,
    stream: StreamDecoder,
    stops: StopMatcher,
    text: String,
    stop_reason: StopReason,
    finished: bool,
    /// Names the model in errors ([`Self::set_model_label`]).
    model_label: String,
}

impl DecodeState {
    /// `history` is the context the first sampled token follows (for the repetition penalty).
    pub fn new(
        spec: &tandem_graphs::ModelSpec,
        tokenizer: &Tokenizer,
        req: &GenerateRequest,
        history: Vec<u32>,
    ) -> Result<DecodeState> {
        let mut eos = Vec::new();
        if !req.ignore_eos {
            eos.extend(&spec.eos_token_ids);
            eos.extend(tokenizer.eos_ids());
        }
        Ok(DecodeState {
            sampler: Sampler::new(req.sampling.clone())?,
            eos,
            history,
            generated: Vec::new(),
            max_new_tokens: req.max_new_tokens,
            stream: StreamDecoder::new(tokenizer, true),
            stops: StopMatcher::new(&req.stop_strings),
            text: String::new(),
            stop_reason: StopReason::MaxTokens,
            finished: req.max_new_tokens == 0,
            model_label: format!("the {} model", spec.arch.name()),
        })
    }

    /// How errors name the model (e.g. its path).
    pub fn set_model_label(&mut self, label: impl Into<String>) {
        self.model_label = label.into();
    }

    /// Whether no further [`Self::step`] is needed.
    pub fn is_done(&self) -> bool {
        self.finished
    }

    /// Samples the next token from `logits` (the last position's) and streams its text.
    pub fn step(&mut self, logits: &mut [f32]) -> Result<DecodeStep> {
        if self.finished {
            return Ok(DecodeStep {
                token: None,
                text: String::new(),
                done: true,
            });
        }
        // A NaN or infinity means the weights or the arithmetic broke; sampling from it would
        // make a token up (or, for some filters, index an empty candidate list).
        if let Some(bad) = logits.iter().find(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "{} produced a non-finite logit ({bad}) at position {}: its weights or \
                 activations are not finite numbers",
                self.model_label,
                self.history.len().saturating_sub(1)
            )));
        }
        let token = self.sampler.sample(logits, &self.history);
        if self.eos.contains(&token) {
            self.stop_reason = StopReason::Eos;
            self.finished = true;
            return Ok(DecodeStep {
                token: None,
                text: String::new(),
                done: true,
            });
        }
        self.generated.push(token);
        self.history.push(token);
        let mut text = String::new();
        if let Some(piece) = self.stream.push(token)? {
            let (ready, hit) = self.stops.feed(&piece);
            text = ready;
            if hit {
                self.stop_reason = StopReason::StopString;
                self.finished = true;
            }
        }
        if self.generated.len() >= self.max_new_tokens {
            self.finished = true;
        }
        self.text.push_str(&text);
        Ok(DecodeStep {
            token: Some(token),
            text,
            done: self.finished,
        })
    }

    /// Ends generation at the caller's request ([`StopReason::Stopped`]); text still held back
    /// is dropped, as it was never shown.
    pub fn stop(&mut self) {
        if !self.finished {
            self.stop_reason = StopReason::Stopped;
            self.finished = true;
        }
    }

    /// Ends generation: returns the text still held back (none after a stop string).
    pub fn finish(&mut self) -> Result<String> {
        self.finished = true;
        if self.stop_reason == StopReason::StopString {
            return Ok(String::new());
        }
        let rest = self.stream.flush()?;
        let (mut ready, hit) = self.stops.feed(&rest);
        if hit {
            self.stop_reason = StopReason::StopString;
        } else {
            ready.push_str(&self.stops.finish());
        }
        self.text.push_str(&ready);
        Ok(ready)
    }

    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// All text shown so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn stop_reason(&self) -> StopReason {
        self.stop_reason
    }

    pub fn into_generated(self) -> Vec<u32> {
        self.generated
    }
}

pub(crate) fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

pub(crate) fn per_second(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 / (ms / 1e3)
    } else {
        0.0
    }
}

/// Holds back streamed text that could still turn into a stop string.
#[derive(Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Adds `piece`; returns the text now safe to show and whether a stop string was reached
    /// (the text before it is returned; the stop string and anything after are dropped).
    pub fn feed(&mut self, piece: &str) -> (String, bool) {
        self.pending.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    /// Releases held-back text at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut out = String::new();
        for p in pieces {
            let (r, hit) = m.feed(p);
            out.push_str(&r);
            if hit {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_string_split_across_pieces_is_never_shown() {
        assert_eq!(
            run(&["</s>"], &["hello <", "/", "s> world"]),
            ("hello ".into(), true)
        );
    }

    #[test]
    fn near_miss_is_released() {
        assert_eq!(run(&["STOP"], &["ST", "OR", "Y"]), ("STORY".into(), false));
        assert_eq!(run(&["STOP"], &["end ST"]), ("end ST".into(), false));
    }

    #[test]
    fn earliest_stop_wins() {
        assert_eq!(run(&["b", "a"], &["xxab"]), ("xx".into(), true));
    }

    #[test]
    fn multibyte_prefixes_are_cut_on_char_boundaries() {
        assert_eq!(run(&["é!"], &["café", "!"]), ("caf".into(), true));
        assert_eq!(run(&["é!"], &["café", "?"]), ("café?".into(), false));
    }
}
