//! [`Session`]: a conversation's tokens and KV cache, kept across its requests, and the
//! [`SessionState`] a running request takes from it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tandem_hal::KvCache;
use tandem_hal::{Error, Result};

use super::{lock, RequestHandle, RequestOutput, Shared, Token};
use crate::generate::GenerateRequest;

/// A conversation: its tokens and KV cache, kept across requests.
#[derive(Clone)]
pub struct Session {
    pub(super) id: u64,
    pub(super) engine: Arc<Shared>,
    pub(super) slot: Arc<Mutex<Option<SessionState>>>,
}

#[derive(Debug)]
pub(super) struct SessionState {
    pub(super) cache: KvCache,
    /// Every token of the conversation; `cache` holds K/V of the first `cache.len()` of them
    /// (the last generated token of a turn is run through the model by the next request).
    pub(super) tokens: Vec<u32>,
}

impl Session {
    pub fn id(&self) -> u64 {
        self.id
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut SessionState) -> T) -> Result<T> {
        let mut slot = lock(&self.slot);
        let state = slot.as_mut().ok_or_else(|| self.busy())?;
        Ok(f(state))
    }

    pub(super) fn busy(&self) -> Error {
        Error::Busy(format!(
            "session {} is running a request; wait for it or cancel it first",
            self.id
        ))
    }

    /// The conversation's tokens so far.
    pub fn tokens(&self) -> Result<Vec<u32>> {
        self.with_state(|s| s.tokens.clone())
    }

    /// Positions held in the KV cache.
    pub fn cached_len(&self) -> Result<usize> {
        self.with_state(|s| s.cache.len())
    }

    /// Keeps only the first `n` tokens (and their cached K/V): to edit or regenerate a turn.
    pub fn rewind(&self, n: usize) -> Result<()> {
        self.with_state(|s| {
            s.tokens.truncate(n);
            s.cache.truncate(n);
        })
    }

    /// Keeps the first `n` tokens like [`Self::rewind`], but K/V of at most `cached` of them;
    /// the next request runs the rest again. With `cached = n - 1` the session ends as a
    /// finished turn does: its last token is run by the next request (which may then have an
    /// empty prompt).
    pub fn rewind_with_cache(&self, n: usize, cached: usize) -> Result<()> {
        self.with_state(|s| {
            s.tokens.truncate(n);
            s.cache.truncate(cached.min(n));
        })
    }

    /// A new session of the same engine holding a copy of this conversation (its tokens and
    /// KV cache), to continue it two ways. Fails while this session runs a request.
    pub fn fork(&self) -> Result<Session> {
        if self.engine.shutting_down.load(Ordering::Acquire) {
            return Err(Error::InvalidInput("the engine has shut down".into()));
        }
        let state = self.with_state(|s| SessionState {
            cache: s.cache.clone(),
            tokens: s.tokens.clone(),
        })?;
        Ok(Session {
            id: self.engine.next_session.fetch_add(1, Ordering::Relaxed),
            engine: self.engine.clone(),
            slot: Arc::new(Mutex::new(Some(state))),
        })
    }

    /// Forgets the whole conversation.
    pub fn reset(&self) -> Result<()> {
        self.rewind(0)
    }

    /// Submits `req`: its prompt is appended to the conversation, then up to
    /// `req.max_new_tokens` tokens are generated. Returns at once; fails if the session is busy,
    /// the prompt is empty with nothing pending, a token is outside the vocabulary, or the
    /// conversation would not fit the context ([`Error::ContextOverflow`]).
    pub fn submit(&self, req: GenerateRequest) -> Result<RequestHandle> {
        self.engine.submit(self, req)
    }

    /// Runs `req` to completion, calling `on_token` with each streamed token on this thread.
    pub fn generate(
        &self,
        req: GenerateRequest,
        mut on_token: impl FnMut(&Token),
    ) -> Result<RequestOutput> {
        let mut handle = self.submit(req)?;
        for t in handle.by_ref() {
            on_token(&t);
        }
        handle.wait()
    }
}
