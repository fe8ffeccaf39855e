//! Where a request's prompt is prefilled: [`Shared::place`] applies the policy, the NPU's
//! state and (for `auto`) the measured costs and current load.

use std::sync::atomic::Ordering;

use super::{lock, NpuState, Shared};
use crate::policy::{decide_auto, AutoInputs, Device, Placement, PrefillPolicy};

impl Shared {
    /// Where a prompt of `tokens` new tokens after `cached` positions would be prefilled now.
    pub(super) fn place(&self, cached: usize, tokens: usize) -> Placement {
        let policy = self.opts.prefill;
        let cpu = |reason: String, fallback: Option<String>| Placement {
            device: Device::Cpu,
            chunk_plan: Vec::new(),
            reason,
            fallback,
        };
        if policy == PrefillPolicy::Cpu {
            return cpu("policy cpu".into(), None);
        }
        let usable = match &lock(&self.npu).state {
            NpuState::Ready { chunks, .. } => Ok(chunks.clone()),
            NpuState::Unavailable(why) => Err(format!("npu unavailable: {why}")),
            NpuState::Disabled(why) => Err(format!("npu disabled: {why}")),
            NpuState::NotRequested => Err("npu not prepared".into()),
        };
        let chunks = match usable {
            Ok(chunks) => chunks,
            Err(why) => {
                let fallback = (policy == PrefillPolicy::Npu).then(|| why.clone());
                return cpu(format!("policy {policy}: {why}"), fallback);
            }
        };
        let plan =
            tandem_hal::plan_chunks(&chunks, self.ctx, cached, tokens).map_err(|e| e.to_string());
        if policy == PrefillPolicy::Npu {
            return match plan {
                Ok(p) => Placement {
                    device: Device::Npu,
                    chunk_plan: p.clone(),
                    reason: format!("policy npu: chunks {p:?}"),
                    fallback: None,
                },
                Err(why) => cpu(
                    format!("policy npu: no NPU chunk plan ({why})"),
                    Some(format!("no NPU chunk plan: {why}")),
                ),
            };
        }
        let costs = lock(&self.costs);
        let backlog = *lock(&self.npu_backlog_ms);
        decide_auto(&AutoInputs {
            tokens,
            npu_plan: plan,
            npu_backlog_ms: backlog,
            cpu_active: self.cpu_active.load(Ordering::Relaxed),
            cpu_chunk: self.opts.cpu_prefill_chunk,
            costs: &costs,
        })
    }
}
