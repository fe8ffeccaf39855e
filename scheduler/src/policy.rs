//! Where a request's prefill runs: the policy a user asks for ([`PrefillPolicy`]), the measured
//! costs `auto` decides from ([`CostModel`]), and the decision with its reason ([`Placement`]).
//!
//! Decode always runs on the CPU; only prefill has a placement.
//!
//! # The `auto` cost model
//! - NPU: an AR-N graph costs the same whatever share of its N slots holds real tokens (the rest is
//!   padding), so the model keeps, per chunk size, a moving average of the measured wall time of
//!   one chunk including its handoff into the KV cache. A prompt's estimate is the sum over the
//!   chunk plan [`tandem_hal::PrefillDelegate::plan`] would run, plus the estimated time of the NPU jobs
//!   already queued ahead of it.
//! - CPU: a least-squares line `ms = fixed + per_token · n` through the recent CPU prefill chunks
//!   (a forward pass over few tokens is bound by reading the weights, so `fixed` is large).
//!   While the CPU worker is decoding other sessions, it interleaves one decode step of each
//!   between prefill chunks; that delay is added.
//! - The engine seeds both at start (one warm-up and one timed run of every NPU graph, CPU passes
//!   over 1 and 64 tokens) and updates them after every request, so the decision follows the
//!   machine: on a phone short prompts tend to stay on the CPU and long ones go to the NPU; on
//!   the x86 HTP simulator, which is far slower than a real HTP, `auto` picks the CPU.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The prefill placement a user asks for (`--prefill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefillPolicy {
    /// Always the NPU (falls back to the CPU, saying why, when it cannot).
    Npu,
    /// Always the CPU.
    Cpu,
    /// Per request, whichever the measured costs say finishes prefill first.
    Auto,
}

impl PrefillPolicy {
    /// The default: `auto` where the QNN HTP is real hardware (Arm devices), `cpu` on x86 hosts,
    /// where the HTP backend is Qualcomm's simulator — preparing and timing the graphs there
    /// costs seconds to minutes for real models only for `auto` to pick the CPU.
    pub fn host_default() -> PrefillPolicy {
        if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
            PrefillPolicy::Cpu
        } else {
            PrefillPolicy::Auto
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PrefillPolicy::Npu => "npu",
            PrefillPolicy::Cpu => "cpu",
            PrefillPolicy::Auto => "auto",
        }
    }

    /// Whether the engine needs the NPU prepared for this policy.
    pub fn wants_npu(self) -> bool {
        self != PrefillPolicy::Cpu
    }
}

impl fmt::Display for PrefillPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PrefillPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "npu" => Ok(PrefillPolicy::Npu),
            "cpu" => Ok(PrefillPolicy::Cpu),
            "auto" => Ok(PrefillPolicy::Auto),
            other => Err(format!(
                "unknown prefill policy `{other}` (expected npu, cpu or auto)"
            )),
        }
    }
}

/// A device work runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Npu,
    Cpu,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Npu => "npu",
            Device::Cpu => "cpu",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one request's prefill runs, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Placement {
    pub device: Device,
    /// The NPU chunk sizes to run, in order (empty on the CPU).
    pub chunk_plan: Vec<usize>,
    pub reason: String,
    /// Set when the request asked for the NPU but cannot use it (the request's `fallback`).
    pub fallback: Option<String>,
}

/// Exponential moving average.
#[derive(Clone, Copy, Debug)]
struct Ema {
    value: f64,
    samples: u32,
}

impl Ema {
    /// Weight of a new sample once warmed up.
    const ALPHA: f64 = 0.3;

    fn new(x: f64) -> Ema {
        Ema {
            value: x,
            samples: 1,
        }
    }

    fn add(&mut self, x: f64) {
        self.samples += 1;
        let a = Self::ALPHA.max(1.0 / self.samples as f64);
        self.value += a * (x - self.value);
    }
}

/// Recent CPU prefill samples kept for the line fit.
const CPU_WINDOW: usize = 32;

/// Measured costs `auto` decides from (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct CostModel {
    npu_chunk_ms: HashMap<usize, Ema>,
    cpu_samples: VecDeque<(f64, f64)>,
    decode_step_ms: Option<Ema>,
}

impl CostModel {
    /// Records one NPU chunk of size `chunk` that took `ms` (execute, I/O and handoff).
    pub fn record_npu_chunk(&mut self, chunk: usize, ms: f64) {
        self.npu_chunk_ms
            .entry(chunk)
            .and_modify(|e| e.add(ms))
            .or_insert_with(|| Ema::new(ms));
    }

    /// Records one CPU forward pass over `tokens` prompt tokens that took `ms`.
    pub fn record_cpu_prefill(&mut self, tokens: usize, ms: f64) {
        if self.cpu_samples.len() == CPU_WINDOW {
            self.cpu_samples.pop_front();
        }
        self.cpu_samples.push_back((tokens as f64, ms));
    }

    /// Records one decode step (one-token forward pass plus sampling).
    pub fn record_decode_step(&mut self, ms: f64) {
        match &mut self.decode_step_ms {
            Some(e) => e.add(ms),
            None => self.decode_step_ms = Some(Ema::new(ms)),
        }
    }

    /// Estimated wall time of one NPU chunk of size `chunk`, if measured.
    pub fn npu_chunk_ms(&self, chunk: usize) -> Option<f64> {
        self.npu_chunk_ms.get(&chunk).map(|e| e.value)
    }

    /// Estimated NPU prefill time of a chunk plan, if every size in it was measured.
    pub fn npu_ms(&self, plan: &[usize]) -> Option<f64> {
        plan.iter().map(|&c| self.npu_chunk_ms(c)).sum()
    }

    /// Estimated decode step time, if measured.
    pub fn decode_step_ms(&self) -> Option<f64> {
        self.decode_step_ms.map(|e| e.value)
    }

    /// `(fixed_ms, per_token_ms)` of the CPU prefill line, if there are samples.
    pub fn cpu_line(&self) -> Option<(f64, f64)> {
        let n = self.cpu_samples.len() as f64;
        if n == 0.0 {
            return None;
        }
        let (sx, sy) = self
            .cpu_samples
            .iter()
            .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (sxx, sxy) = self.cpu_samples.iter().fold((0.0, 0.0), |(a, b), &(x, y)| {
            (a + (x - mx) * (x - mx), b + (x - mx) * (y - my))
        });
        if sxx <= f64::EPSILON {
            // Every sample has the same size: proportional cost.
            return Some((0.0, my / mx.max(1.0)));
        }
        let slope = (sxy / sxx).max(0.0);
        Some(((my - slope * mx).max(0.0), slope))
    }

    /// Estimated CPU prefill time of `tokens` tokens in chunks of `chunk`, if measured.
    pub fn cpu_ms(&self, tokens: usize, chunk: usize) -> Option<f64> {
        let (fixed, per_token) = self.cpu_line()?;
        let chunks = tokens.div_ceil(chunk.max(1)).max(1);
        Some(chunks as f64 * fixed + per_token * tokens as f64)
    }
}

/// What `auto` weighs for one request.
#[derive(Clone, Debug)]
pub struct AutoInputs<'a> {
    pub tokens: usize,
    /// The NPU chunk plan, or why the NPU cannot take the request.
    pub npu_plan: Result<Vec<usize>, String>,
    /// Estimated time of NPU work queued ahead.
    pub npu_backlog_ms: f64,
    /// Requests the CPU worker is decoding or prefilling right now.
    pub cpu_active: usize,
    pub cpu_chunk: usize,
    pub costs: &'a CostModel,
}

/// The `auto` decision for one request (the NPU is available when this is called).
pub fn decide_auto(inp: &AutoInputs<'_>) -> Placement {
    let cpu = |reason: String| Placement {
        device: Device::Cpu,
        chunk_plan: Vec::new(),
        reason,
        fallback: None,
    };
    let plan = match &inp.npu_plan {
        Ok(p) => p.clone(),
        Err(why) => return cpu(format!("auto: the NPU cannot take it ({why})")),
    };
    let npu_est = inp.costs.npu_ms(&plan);
    let cpu_est = inp.costs.cpu_ms(inp.tokens, inp.cpu_chunk);
    let (npu_ms, cpu_ms) = match (npu_est, cpu_est) {
        (Some(n), Some(c)) => (n, c),
        (None, _) => {
            return Placement {
                device: Device::Npu,
                reason: format!("auto: chunk plan {plan:?} not measured on the NPU yet; measuring"),
                chunk_plan: plan,
                fallback: None,
            }
        }
        (Some(_), None) => return cpu("auto: CPU prefill not measured yet; measuring".into()),
    };
    let npu_total = npu_ms + inp.npu_backlog_ms;
    // Between two prefill chunks the CPU worker runs one decode step of every other request.
    let chunks = inp.tokens.div_ceil(inp.cpu_chunk.max(1)).max(1);
    let interleave =
        chunks as f64 * inp.cpu_active as f64 * inp.costs.decode_step_ms().unwrap_or(0.0);
    let cpu_total = cpu_ms + interleave;
    let detail = format!(
        "{} tokens: NPU {:.1} ms (AR-{:?}{}) vs CPU {:.1} ms ({} chunk(s){})",
        inp.tokens,
        npu_total,
        plan,
        if inp.npu_backlog_ms > 0.0 {
            format!(", {:.1} ms queued ahead", inp.npu_backlog_ms)
        } else {
            String::new()
        },
        cpu_total,
        chunks,
        if interleave > 0.0 {
            format!(
                ", {:.1} ms interleaved with {} decoding",
                interleave, inp.cpu_active
            )
        } else {
            String::new()
        }
    );
    if npu_total < cpu_total {
        Placement {
            device: Device::Npu,
            chunk_plan: plan,
            reason: format!("auto: {detail} → npu"),
            fallback: None,
        }
    } else {
        cpu(format!("auto: {detail} → cpu"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(npu: &[(usize, f64)], cpu: &[(usize, f64)]) -> CostModel {
        let mut c = CostModel::default();
        for &(n, ms) in npu {
            c.record_npu_chunk(n, ms);
        }
        for &(n, ms) in cpu {
            c.record_cpu_prefill(n, ms);
        }
        c
    }

    fn inputs(tokens: usize, plan: Vec<usize>, c: &CostModel) -> AutoInputs<'_> {
        AutoInputs {
            tokens,
            npu_plan: Ok(plan),
            npu_backlog_ms: 0.0,
            cpu_active: 0,
            cpu_chunk: 128,
            costs: c,
        }
    }

    #[test]
    fn policy_parses_and_rejects() {
        assert_eq!("NPU".parse::<PrefillPolicy>(), Ok(PrefillPolicy::Npu));
        assert_eq!("auto".parse::<PrefillPolicy>(), Ok(PrefillPolicy::Auto));
        assert!("gpu".parse::<PrefillPolicy>().unwrap_err().contains("gpu"));
    }

    #[test]
    fn cpu_line_fits_fixed_and_per_token_cost() {
        // ms = 10 + 0.5 n
        let c = costs(&[], &[(1, 10.5), (64, 42.0), (128, 74.0)]);
        let (fixed, per) = c.cpu_line().unwrap();
        assert!((fixed - 10.0).abs() < 1e-9 && (per - 0.5).abs() < 1e-9);
        // Two chunks of 128 pay the fixed cost twice.
        assert!((c.cpu_ms(256, 128).unwrap() - (20.0 + 128.0)).abs() < 1e-9);
    }

    #[test]
    fn short_prompt_stays_on_cpu_long_prompt_goes_to_npu() {
        // NPU: an AR-32 chunk costs 20 ms however many of its slots are real.
        // CPU: 5 ms + 1 ms per token.
        let c = costs(&[(32, 20.0)], &[(1, 6.0), (64, 69.0)]);
        let short = decide_auto(&inputs(4, vec![32], &c));
        assert_eq!(short.device, Device::Cpu, "{}", short.reason);
        let long = decide_auto(&inputs(96, vec![32, 32, 32], &c));
        assert_eq!(long.device, Device::Npu, "{}", long.reason);
        assert!(long.reason.contains("→ npu"), "{}", long.reason);
    }

    #[test]
    fn backlog_and_busy_cpu_shift_the_decision() {
        let c = {
            let mut c = costs(&[(32, 20.0)], &[(1, 6.0), (64, 69.0)]);
            c.record_decode_step(10.0);
            c
        };
        // 30 tokens: NPU 20 ms vs CPU 35 ms → npu; with 40 ms queued on the NPU → cpu.
        assert_eq!(decide_auto(&inputs(30, vec![32], &c)).device, Device::Npu);
        let mut busy_npu = inputs(30, vec![32], &c);
        busy_npu.npu_backlog_ms = 40.0;
        assert_eq!(decide_auto(&busy_npu).device, Device::Cpu);
        // 12 tokens: CPU 17 ms → cpu; with two sessions decoding (20 ms) → npu.
        assert_eq!(decide_auto(&inputs(12, vec![32], &c)).device, Device::Cpu);
        let mut busy_cpu = inputs(12, vec![32], &c);
        busy_cpu.cpu_active = 2;
        assert_eq!(decide_auto(&busy_cpu).device, Device::Npu);
    }

    #[test]
    fn unplannable_or_unmeasured_prompts() {
        let c = costs(&[(32, 20.0)], &[(8, 10.0)]);
        let mut no_plan = inputs(40, vec![], &c);
        no_plan.npu_plan = Err("no chunk fits at position 1000".into());
        let p = decide_auto(&no_plan);
        assert_eq!(p.device, Device::Cpu);
        assert!(p.reason.contains("position 1000"));
        // AR-128 never ran: measure it.
        assert_eq!(
            decide_auto(&inputs(200, vec![128, 128], &c)).device,
            Device::Npu
        );
    }

    #[test]
    fn ema_follows_new_measurements() {
        let mut c = CostModel::default();
        c.record_npu_chunk(32, 100.0);
        for _ in 0..20 {
            c.record_npu_chunk(32, 10.0);
        }
        assert!((c.npu_chunk_ms(32).unwrap() - 10.0).abs() < 0.1);
    }
}
