//! Token sampling: repetition penalty → top-k → top-p → min-p → temperature → draw, the order
//! llama.cpp's default chain uses. Temperature ≤ 0 is greedy (argmax, lowest id on ties).

use tandem_hal::{Error, Result};

/// Sampling settings (the defaults are llama.cpp's, except that greedy is chosen by
/// `temperature = 0`).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// ≤ 0 means greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set whose probability mass reaches p; 1 disables.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the top token's probability; 0 disables.
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recently seen tokens; 1 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x7A4D_E300,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Rejects settings that cannot mean anything.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!(
                "temperature {} must be finite and >= 0 (0 = greedy)",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) || self.top_p == 0.0 {
            return bad(format!("top-p {} must be in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min-p {} must be in [0, 1]", self.min_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return bad(format!(
                "repeat penalty {} must be > 0",
                self.repeat_penalty
            ));
        }
        Ok(())
    }
}

/// Index of the largest value (lowest index among equals; NaN never wins).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] || x[best].is_nan() {
            best = i;
        }
    }
    best
}

/// A seeded sampler. The same seed, settings and logits give the same tokens.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Sampler> {
        params.validate()?;
        let rng = SplitMix64(params.seed);
        Ok(Sampler { params, rng })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` (modified in place by the penalty), given the tokens
    /// seen so far (prompt and generated).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repeat_penalty != 1.0 {
            let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
            let mut seen = recent.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature <= 0.0 {
            return argmax(logits) as u32;
        }

        // Candidates sorted by logit, descending (ties: lower id first, for determinism).
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan())
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cand.is_empty() {
            // Every logit is NaN: nothing to sample from (the engine refuses such logits
            // before they get here).
            return argmax(logits) as u32;
        }
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.truncate(p.top_k);
        }
        let probs = softmax(&cand, 1.0);
        if p.top_p < 1.0 {
            let mut mass = 0.0;
            let mut keep = cand.len();
            for (i, pr) in probs.iter().enumerate() {
                mass += pr;
                if mass >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
        }
        if p.min_p > 0.0 {
            let probs = softmax(&cand, 1.0);
            let floor = probs[0] * p.min_p;
            let keep = probs.iter().take_while(|&&pr| pr >= floor).count().max(1);
            cand.truncate(keep);
        }
        let probs = softmax(&cand, p.temperature);
        let r = self.rng.next_f64() as f32;
        let mut acc = 0.0;
        for (c, pr) in cand.iter().zip(&probs) {
            acc += pr;
            if r < acc {
                return c.0;
            }
        }
        cand.last().map_or(0, |c| c.0)
    }
}

/// Probabilities of sorted candidates at `temperature`.
fn softmax(cand: &[(u32, f32)], temperature: f32) -> Vec<f32> {
    let max = cand.first().map_or(0.0, |c| c.1);
    let mut out: Vec<f32> = cand
        .iter()
        .map(|c| ((c.1 - max) / temperature).exp())
        .collect();
    let sum: f32 = out.iter().sum();
    for v in &mut out {
        *v /= sum;
    }
    out
}

/// SplitMix64: tiny, fast, and good enough to draw one token at a time.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 42,
        }
    }

    #[test]
    fn greedy_takes_argmax_lowest_id_on_ties() {
        let mut s = Sampler::new(params(0.0)).unwrap();
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            ..params(5.0)
        })
        .unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [0.0, 1.0, 0.5, 0.9], &[]), 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p = softmax([ln 1, ln 3]) = [0.25, 0.75]
        let mut s = Sampler::new(params(1.0)).unwrap();
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| s.sample(&mut [0.0, 3f32.ln()], &[]) == 1)
            .count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.015, "frac {frac}");
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // probs ≈ [0.665, 0.245, 0.090]: top-p 0.8 keeps two tokens, so token 2 never appears.
        let mut s = Sampler::new(SamplingParams {
            top_p: 0.8,
            ..params(1.0)
        })
        .unwrap();
        let mut seen = [0usize; 3];
        for _ in 0..5000 {
            seen[s.sample(&mut [2.0, 1.0, 0.0], &[]) as usize] += 1;
        }
        assert_eq!(seen[2], 0);
        assert!(seen[1] > 0);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // p(top) ≈ 0.88, p(1) ≈ 0.12 < 0.2 * 0.88: only token 0 survives.
        let mut s = Sampler::new(SamplingParams {
            min_p: 0.2,
            ..params(1.0)
        })
        .unwrap();
        for _ in 0..1000 {
            assert_eq!(s.sample(&mut [2.0, 0.0], &[]), 0);
        }
    }

    #[test]
    fn repetition_penalty_changes_greedy_choice() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            ..params(0.0)
        })
        .unwrap();
        // token 0 (logit 2.0) was seen: 2.0 / 2 = 1.0 < 1.5
        assert_eq!(s.sample(&mut [2.0, 1.5], &[0]), 1);
        // negative logits are pushed further down: -1 * 2 = -2 < -1.5
        assert_eq!(s.sample(&mut [-1.0, -1.5], &[0]), 1);
    }

    #[test]
    fn same_seed_same_tokens() {
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed,
                ..params(1.0)
            })
            .unwrap();
            (0..32)
                .map(|_| s.sample(&mut [0.0, 0.1, 0.2, 0.3], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn invalid_settings_are_rejected() {
        assert!(Sampler::new(SamplingParams {
            top_p: 0.0,
            ..params(1.0)
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            min_p: 1.5,
            ..params(1.0)
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            temperature: f32::NAN,
            ..params(1.0)
        })
        .is_err());
    }
}
