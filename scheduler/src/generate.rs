//! The generation loop: prefill the prompt in chunks, then decode one token at a time until EOS,
//! a stop string or the token budget, streaming text that never splits a UTF-8 character and
//! never shows a stop string.

use std::time::Instant;

use serde::Serialize;
use tandem_cpu::{CpuModel, KvCache, Logits};
use tandem_graphs::tokenizer::{StreamDecoder, Tokenizer};
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
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
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
    let mut sampler = Sampler::new(req.sampling.clone())?;
    let mut eos: Vec<u32> = model.spec().eos_token_ids.clone();
    eos.extend(tokenizer.eos_ids());

    let t0 = Instant::now();
    let mut logits = Vec::new();
    for chunk in req.prompt.chunks(CPU_PREFILL_CHUNK) {
        logits = model.forward(chunk, cache, Logits::Last)?;
    }
    let prefill_ms = ms(t0);

    let mut history = req.prompt.clone();
    let mut generated = Vec::new();
    let mut stream = StreamDecoder::new(tokenizer, true);
    let mut stops = StopMatcher::new(&req.stop_strings);
    let mut text = String::new();
    let mut ttft_ms = 0.0;
    let mut t_first = t0;
    let mut stop_reason = StopReason::MaxTokens;
    let mut emit = |piece: &str, text: &mut String| {
        if !piece.is_empty() {
            on_text(piece);
            text.push_str(piece);
        }
    };

    while generated.len() < req.max_new_tokens {
        let token = sampler.sample(&mut logits, &history);
        if generated.is_empty() {
            ttft_ms = ms(t0);
            t_first = Instant::now();
        }
        if eos.contains(&token) {
            stop_reason = StopReason::Eos;
            break;
        }
        generated.push(token);
        history.push(token);
        if let Some(piece) = stream.push(token)? {
            let (ready, hit) = stops.feed(&piece);
            emit(&ready, &mut text);
            if hit {
                stop_reason = StopReason::StopString;
                break;
            }
        }
        if generated.len() == req.max_new_tokens {
            break;
        }
        logits = model.forward(&[token], cache, Logits::Last)?;
    }
    if stop_reason != StopReason::StopString {
        let rest = stream.flush()?;
        let (ready, hit) = stops.feed(&rest);
        emit(&ready, &mut text);
        if hit {
            stop_reason = StopReason::StopString;
        } else {
            emit(&stops.finish(), &mut text);
        }
    }
    let decode_ms = if generated.is_empty() {
        0.0
    } else {
        ms(t_first)
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

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn per_second(n: usize, ms: f64) -> f64 {
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
