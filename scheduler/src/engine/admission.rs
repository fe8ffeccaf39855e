//! What is refused before anything is queued: a context the engine cannot serve
//! ([`check_context`], when it starts) and a request that cannot run on its session now
//! ([`Shared::admit`], when it is submitted).

use std::sync::atomic::Ordering;

use tandem_hal::{Error, Result};

use super::session::SessionState;
use super::{lock, Session, Shared};
use crate::generate::GenerateRequest;
use crate::model::Model;

/// Refuses a context the model was not trained for, or whose KV cache would not fit in this
/// machine's memory, before anything is allocated (the error says how much it would take).
pub(super) fn check_context(model: &Model, ctx: usize) -> Result<()> {
    let spec = &model.loaded.spec;
    if ctx == 0 {
        return Err(Error::InvalidInput(
            "context length must be at least 1".into(),
        ));
    }
    if ctx > spec.max_position_embeddings {
        return Err(Error::InvalidInput(format!(
            "context {ctx} exceeds the {} positions {} was trained for",
            spec.max_position_embeddings,
            model.loaded.path.display()
        )));
    }
    // f32 K and V per layer, per KV head, per position (one session).
    let bytes = [2, spec.n_layers, spec.n_kv_heads, spec.head_dim, ctx, 4]
        .iter()
        .try_fold(1usize, |acc, &x| acc.checked_mul(x));
    let total = physical_memory_bytes();
    match (bytes, total) {
        (None, _) => Err(Error::InvalidInput(format!(
            "context {ctx}: its KV cache size overflows"
        ))),
        (Some(b), Some(t)) if b > t => Err(Error::InvalidInput(format!(
            "context {ctx} needs a {:.1} GiB KV cache per session, more than this machine's \
             {:.1} GiB of memory",
            b as f64 / (1u64 << 30) as f64,
            t as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

/// `MemTotal` of /proc/meminfo, where there is one.
fn physical_memory_bytes() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Shared {
    /// Checks `req` before it is queued and, when it may run, takes `session`'s state for it
    /// (the session is busy until the request ends). Refuses it if the engine has shut down, a
    /// token is outside the vocabulary, the session is busy, there is nothing to condition on,
    /// or the conversation would not fit the context.
    pub(super) fn admit(&self, session: &Session, req: &GenerateRequest) -> Result<SessionState> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Error::InvalidInput("the engine has shut down".into()));
        }
        let spec = &self.model.loaded.spec;
        if let Some(&bad) = req.prompt.iter().find(|&&t| t as usize >= spec.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary (size {})",
                spec.vocab_size
            )));
        }
        let mut slot = lock(&session.slot);
        let state = slot.as_mut().ok_or_else(|| session.busy())?;
        let pending = state.tokens.len() - state.cache.len() + req.prompt.len();
        if pending == 0 {
            return Err(Error::InvalidInput(
                "empty prompt: nothing to condition on".into(),
            ));
        }
        // The last generated token is never run through the model. Saturating: a
        // request for usize::MAX tokens must be refused, not wrap around.
        let needed = state
            .tokens
            .len()
            .saturating_add(req.prompt.len())
            .saturating_add(req.max_new_tokens.saturating_sub(1));
        if needed > self.ctx {
            return Err(Error::ContextOverflow {
                needed,
                ctx: self.ctx,
            });
        }
        Ok(slot.take().expect("checked above"))
    }
}
