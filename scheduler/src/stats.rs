//! What one engine request measured: placement, every prefill chunk, the KV handoff, time to first
//! token and throughput, the fallback if any, QNN's HTP profile figures (device time only when
//! measured on a device), and Qualcomm's cost-model estimate where the library offers one.
//! `tandem run --json` prints this as its `stats` object.

use serde::Serialize;

use crate::policy::{Device, PrefillPolicy};

/// Where HTP cycle counts come from on this host.
pub fn htp_cycles_source() -> &'static str {
    if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        "QNN x86_64 HTP simulator: counts host emulation work (about 150 per µs of host time), \
         not device cycles"
    } else {
        "QNN HTP profile on the device"
    }
}

/// What `qnn_cost_model_ms` is.
pub const QNN_COST_MODEL_SOURCE: &str =
    "Qualcomm's cost-model estimate from the graph's finalize profile (a model of the target \
     SoC, not a measurement)";

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
    /// The HTP's execute time as the library measured it on a device; `null` on x86_64 hosts,
    /// where the simulator's figures are host emulation time.
    pub htp_ms_est: Option<f64>,
    /// Qualcomm's cost-model estimate for this chunk's graph on the target SoC
    /// ([`QNN_COST_MODEL_SOURCE`]), when the library computes one for it.
    pub qnn_cost_model_ms: Option<f64>,
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
    /// HTP execute time over the NPU chunks as measured on a device; `null` on x86_64 hosts
    /// (simulator time is host time, never reported as device time).
    pub htp_prefill_ms_est: Option<f64>,
    /// Where the cycle counts come from ([`htp_cycles_source`]); `null` without cycle counts.
    pub htp_cycles_source: Option<&'static str>,
    /// Qualcomm's cost-model estimate summed over the NPU chunks, when the library computes one
    /// for the target ([`QNN_COST_MODEL_SOURCE`]).
    pub qnn_cost_model_ms: Option<f64>,
    pub qnn_cost_model_source: Option<&'static str>,
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
            self.htp_cycles = Some(cycles.iter().sum());
            self.htp_cycles_source = Some(htp_cycles_source());
        }
        let npu_chunks: Vec<&ChunkStats> = self
            .chunks
            .iter()
            .filter(|c| c.device == Device::Npu)
            .collect();
        let all = |f: fn(&ChunkStats) -> Option<f64>| -> Option<f64> {
            if npu_chunks.is_empty() {
                return None;
            }
            npu_chunks.iter().map(|c| f(c)).sum()
        };
        self.htp_prefill_ms_est = all(|c| c.htp_ms_est);
        self.qnn_cost_model_ms = all(|c| c.qnn_cost_model_ms);
        self.qnn_cost_model_source = self.qnn_cost_model_ms.map(|_| QNN_COST_MODEL_SOURCE);
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
