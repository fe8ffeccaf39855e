//! What one engine request measured: placement, every prefill chunk, the KV handoff, time to first
//! token and throughput, the fallback if any, and QNN's HTP cycle counts with the prefill time
//! they imply at a stated clock. `tandem run --json` prints this as its `stats` object.

use serde::Serialize;

use crate::policy::{Device, PrefillPolicy};

/// Where HTP cycle counts come from on this host.
pub fn htp_cycles_source() -> &'static str {
    if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        "QNN HTP simulator estimate (x86_64 host, not a device measurement)"
    } else {
        "QNN HTP profile"
    }
}

/// One prefill chunk.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChunkStats {
    pub device: Device,
    /// Position of its first token.
    pub start: usize,
    /// Prompt tokens in it.
    pub tokens: usize,
    /// The NPU graph's chunk size N (tokens + padding); equals `tokens` on the CPU.
    pub padded_to: usize,
    /// Wall time of the chunk: inputs, execute and outputs (NPU) or the forward pass (CPU).
    pub ms: f64,
    /// `graphExecute` alone (NPU).
    pub execute_ms: Option<f64>,
    /// K/V copied from the NPU's outputs into the session's cache (NPU).
    pub handoff_bytes: u64,
    pub handoff_ms: f64,
    /// HTP cycles of the graph execution (NPU with profiling; see [`htp_cycles_source`]).
    pub htp_cycles: Option<u64>,
    /// What `htp_cycles` implies at the engine's HTP clock.
    pub htp_ms_est: Option<f64>,
}

/// Statistics of one request. Times are wall-clock milliseconds unless named `_est`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestStats {
    pub session: u64,
    pub request: u64,
    /// The policy asked for.
    pub policy: PrefillPolicy,
    /// Where prefill ran: `npu`, `cpu`, or `npu+cpu` after a fallback mid-request.
    pub prefill_device: String,
    pub decode_device: Device,
    /// Why prefill was placed where it was.
    pub placement_reason: String,
    /// Tokens of this request's prompt.
    pub prompt_tokens: usize,
    /// Tokens run through prefill (the prompt plus the session's last generated token when the
    /// previous turn left one unprocessed).
    pub prefill_tokens: usize,
    /// Positions already in the session's KV cache before this request (reused, not recomputed).
    pub cached_tokens: usize,
    pub generated_tokens: usize,
    pub chunks: Vec<ChunkStats>,
    /// K/V bytes moved from NPU outputs into the cache (fp16 as the NPU produced them).
    pub handoff_bytes: u64,
    pub handoff_ms: f64,
    /// Submission to the first prefill chunk starting.
    pub queue_ms: f64,
    /// First prefill chunk start to prefill end.
    pub prefill_ms: f64,
    pub prefill_tok_s: f64,
    /// Submission to the first generated token.
    pub ttft_ms: f64,
    /// First generated token to the last.
    pub decode_ms: f64,
    /// Tokens after the first, per second of decode time.
    pub decode_tok_s: f64,
    /// Why the request ran on the CPU although the NPU was asked for, if it did.
    pub fallback: Option<String>,
    /// HTP cycles summed over the NPU chunks (when profiled).
    pub htp_cycles: Option<u64>,
    /// The prefill time `htp_cycles` implies at `htp_clock_mhz`.
    pub htp_prefill_ms_est: Option<f64>,
    pub htp_clock_mhz: f64,
    /// Where the cycle counts come from ([`htp_cycles_source`]); `null` without cycle counts.
    pub htp_cycles_source: Option<&'static str>,
}

impl RequestStats {
    /// Sums the chunk rows into the request totals and labels the prefill device.
    pub(crate) fn summarize_chunks(&mut self) {
        self.handoff_bytes = self.chunks.iter().map(|c| c.handoff_bytes).sum();
        self.handoff_ms = self.chunks.iter().map(|c| c.handoff_ms).sum();
        let cycles: Vec<u64> = self.chunks.iter().filter_map(|c| c.htp_cycles).collect();
        if cycles.is_empty() {
            self.htp_cycles = None;
            self.htp_prefill_ms_est = None;
            self.htp_cycles_source = None;
        } else {
            let total: u64 = cycles.iter().sum();
            self.htp_cycles = Some(total);
            self.htp_prefill_ms_est = Some(total as f64 / (self.htp_clock_mhz * 1e3));
            self.htp_cycles_source = Some(htp_cycles_source());
        }
        let npu = self.chunks.iter().any(|c| c.device == Device::Npu);
        let cpu = self.chunks.iter().any(|c| c.device == Device::Cpu);
        self.prefill_device = match (npu, cpu) {
            (true, true) => "npu+cpu",
            (true, false) => "npu",
            _ => "cpu",
        }
        .to_string();
    }
}
