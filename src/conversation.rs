//! [`Conversation`]: a [`Session`] as an app drives it, one turn at a time — text through the
//! chat template or as-is, token ids, a token callback that may end the turn early, and
//! cancellation from another thread. The C ABI ([`crate::capi`]), the Java binding and
//! `tandem chat` all run their turns through it, so each behaves the same way.
//!
//! Thread safety: a `Conversation` is `Send` and runs one turn at a time (`&mut self`); its
//! [`Canceller`] may be used from any thread while a turn runs.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};

use tandem_graphs::chat::ChatMessage;
use tandem_hal::{Error, Result};
use tandem_scheduler::{
    CancelToken, Engine, GenerateRequest, Model, RequestOutput, SamplingParams, Session,
    StopReason, Token,
};

/// How one turn generates.
#[derive(Clone, Debug)]
pub struct TurnOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends before any of these would be shown.
    pub stop_strings: Vec<String>,
    /// Keep going through end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Text turns: render the text as the user's message with the model's chat template
    /// (`false`: append the text as it is).
    pub chat: bool,
}

impl Default for TurnOptions {
    fn default() -> Self {
        TurnOptions {
            max_tokens: 256,
            sampling: SamplingParams::greedy(),
            stop_strings: Vec::new(),
            ignore_eos: false,
            chat: false,
        }
    }
}

/// How a token callback ends a turn early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndTurn {
    /// Keep what the callback has seen ([`StopReason::Stopped`]).
    Keep,
    /// Undo the turn, as a cancel does ([`Error::Cancelled`]): e.g. the caller failed while
    /// handling a token.
    Discard,
}

/// Cancels the turn a [`Conversation`] is running, from any thread.
#[derive(Clone, Debug, Default)]
pub struct Canceller(Arc<Mutex<TurnState>>);

#[derive(Debug, Default)]
enum TurnState {
    #[default]
    Idle,
    /// A turn has begun (its prompt is being prepared) but is not in the engine yet.
    Starting {
        cancelled: bool,
    },
    Running(CancelToken),
}

impl Canceller {
    /// Cancels the running turn: it ends with [`Error::Cancelled`] and the conversation is left
    /// as it was before the turn. A turn that has begun but not reached the engine yet is
    /// cancelled as soon as it does. Returns whether a turn was running (when none is, nothing
    /// happens: a cancel is never held over for the next turn).
    pub fn cancel(&self) -> bool {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *state {
            TurnState::Idle => false,
            TurnState::Starting { cancelled } => {
                *cancelled = true;
                true
            }
            TurnState::Running(t) => {
                t.cancel();
                true
            }
        }
    }

    fn set(&self, s: TurnState) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }

    /// Moves a starting turn into the engine; `false` if it was cancelled meanwhile.
    fn running(&self, token: CancelToken) -> bool {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let cancelled = matches!(*state, TurnState::Starting { cancelled: true });
        if cancelled {
            token.cancel();
        }
        *state = TurnState::Running(token);
        !cancelled
    }
}

/// Marks a turn as begun for the [`Canceller`], and idle again however it ends.
struct TurnGuard<'a>(&'a Canceller);

impl<'a> TurnGuard<'a> {
    fn begin(c: &'a Canceller) -> TurnGuard<'a> {
        c.set(TurnState::Starting { cancelled: false });
        TurnGuard(c)
    }
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        self.0.set(TurnState::Idle);
    }
}

/// A conversation on one engine session (see the module docs).
pub struct Conversation {
    model: Arc<Model>,
    session: Session,
    /// The chat so far (turns run with [`TurnOptions::chat`]).
    messages: Vec<ChatMessage>,
    canceller: Canceller,
    last: Option<RequestOutput>,
}

impl Conversation {
    /// An empty conversation on a new session of `engine`.
    pub fn new(engine: &Engine) -> Conversation {
        Conversation {
            model: engine.model().clone(),
            session: engine.new_session(),
            messages: Vec::new(),
            canceller: Canceller::default(),
            last: None,
        }
    }

    /// A second conversation that starts with everything this one holds (its KV cache is
    /// copied), so the two can be continued independently.
    pub fn fork(&self) -> Result<Conversation> {
        Ok(Conversation {
            model: self.model.clone(),
            session: self.session.fork()?,
            messages: self.messages.clone(),
            canceller: Canceller::default(),
            last: self.last.clone(),
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The chat messages so far (chat turns only).
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Sets the system message chat turns are rendered with (only before the first turn).
    pub fn set_system(&mut self, text: &str) -> Result<()> {
        if !self.messages.is_empty() || !self.session.tokens()?.is_empty() {
            return Err(Error::InvalidInput(
                "the system message can only be set before the first turn".into(),
            ));
        }
        self.messages.push(ChatMessage {
            role: "system".into(),
            content: text.into(),
        });
        Ok(())
    }

    /// Cancels this conversation's running turn from another thread.
    pub fn canceller(&self) -> Canceller {
        self.canceller.clone()
    }

    /// What the last turn that finished produced (its tokens, text, stop reason and stats).
    pub fn last_output(&self) -> Option<&RequestOutput> {
        self.last.as_ref()
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) -> Result<()> {
        self.session.reset()?;
        self.messages.clear();
        self.last = None;
        Ok(())
    }

    /// Runs a text turn. With `opts.chat`, `text` is the user's message: the whole chat is
    /// rendered with the model's template and only what the session does not already hold is
    /// prefilled; the reply becomes the assistant's message. Without, `text` is appended as it
    /// is (with the tokenizer's start token when the conversation is empty).
    ///
    /// `on_token` sees every streamed piece in order ([`Token::id`] `None` for text released at
    /// the end); returning `Break` ends the turn there: [`EndTurn::Keep`] keeps what it had seen
    /// ([`StopReason::Stopped`]), [`EndTurn::Discard`] undoes the turn ([`Error::Cancelled`]).
    pub fn say(
        &mut self,
        text: &str,
        opts: &TurnOptions,
        on_token: impl FnMut(&Token) -> ControlFlow<EndTurn>,
    ) -> Result<RequestOutput> {
        let canceller = self.canceller.clone();
        let _turn = TurnGuard::begin(&canceller);
        let kept_messages = self.messages.len();
        let prompt = if opts.chat {
            let Some(_) = &self.model.chat_template else {
                return Err(Error::InvalidInput(format!(
                    "{} has no chat template; run the turn without the chat template",
                    self.model.loaded.path.display()
                )));
            };
            self.messages.push(ChatMessage {
                role: "user".into(),
                content: text.into(),
            });
            let rendered = self.model.encode_chat(&self.messages).and_then(|full| {
                // The template may render earlier turns differently now, so compare instead of
                // appending.
                let have = self.session.tokens()?;
                let common = have.iter().zip(&full).take_while(|(x, y)| x == y).count();
                self.session.rewind(common)?;
                Ok(full[common..].to_vec())
            });
            match rendered {
                Ok(p) => p,
                Err(e) => {
                    self.messages.truncate(kept_messages);
                    return Err(e);
                }
            }
        } else {
            let first = self.session.tokens()?.is_empty();
            self.model.tokenizer.encode(text, first)?
        };
        match self.run(prompt, opts, on_token) {
            Ok(out) => {
                if opts.chat {
                    self.messages.push(ChatMessage {
                        role: "assistant".into(),
                        content: out.text.clone(),
                    });
                }
                Ok(out)
            }
            Err(e) => {
                self.messages.truncate(kept_messages);
                Err(e)
            }
        }
    }

    /// Runs a turn whose prompt is token ids (appended as they are); `on_token` as in
    /// [`Self::say`].
    pub fn send_tokens(
        &mut self,
        prompt: Vec<u32>,
        opts: &TurnOptions,
        on_token: impl FnMut(&Token) -> ControlFlow<EndTurn>,
    ) -> Result<RequestOutput> {
        let canceller = self.canceller.clone();
        let _turn = TurnGuard::begin(&canceller);
        self.run(prompt, opts, on_token)
    }

    /// Runs the turn in the engine (the caller holds a [`TurnGuard`]).
    fn run(
        &mut self,
        prompt: Vec<u32>,
        opts: &TurnOptions,
        mut on_token: impl FnMut(&Token) -> ControlFlow<EndTurn>,
    ) -> Result<RequestOutput> {
        let req = GenerateRequest {
            prompt,
            max_new_tokens: opts.max_tokens,
            sampling: opts.sampling.clone(),
            stop_strings: opts.stop_strings.clone(),
            ignore_eos: opts.ignore_eos,
        };
        let tokens_before = self.session.tokens()?.len();
        let cached_before = self.session.cached_len()?;
        let mut handle = self.session.submit(req)?;
        let token = handle.cancel_token();
        self.canceller.running(token.clone());
        // Tokens and text the caller saw before it ended the turn; the engine may have run a
        // step or two further by the time it sees the request.
        let mut seen_tokens = 0usize;
        let mut seen_text = String::new();
        let mut ended = None;
        for t in handle.by_ref() {
            if ended.is_some() {
                continue;
            }
            seen_tokens += usize::from(t.id.is_some());
            seen_text.push_str(&t.text);
            if let ControlFlow::Break(how) = on_token(&t) {
                ended = Some(how);
                match how {
                    EndTurn::Keep => token.stop(),
                    EndTurn::Discard => token.cancel(),
                }
            }
        }
        let result = handle.wait();
        match ended {
            None => {}
            Some(EndTurn::Discard) => {
                // The request may have finished before it saw the cancel: undo it here.
                if result.is_ok() {
                    self.session
                        .rewind_with_cache(tokens_before, cached_before)?;
                }
                return Err(Error::Cancelled);
            }
            Some(EndTurn::Keep) => {
                let mut out = result?;
                // Drop what the engine generated past what the caller saw; the last token kept
                // stays to be run by the next turn, as after any finished turn.
                let extra = out.generated.len().saturating_sub(seen_tokens);
                if extra > 0 {
                    let keep = self.session.tokens()?.len() - extra;
                    self.session
                        .rewind_with_cache(keep, keep.saturating_sub(1))?;
                }
                out.generated.truncate(seen_tokens);
                out.text = seen_text;
                out.stats.generated_tokens = out.generated.len();
                out.stop_reason = StopReason::Stopped;
                self.last = Some(out.clone());
                return Ok(out);
            }
        }
        let out = result?;
        self.last = Some(out.clone());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_before_the_turn_reaches_the_engine_is_not_lost() {
        let c = Canceller::default();
        assert!(!c.cancel(), "idle");
        {
            let _turn = TurnGuard::begin(&c);
            assert!(c.cancel(), "a starting turn counts as running");
            let token = tandem_scheduler::CancelToken::default();
            assert!(!c.running(token.clone()));
            assert!(token.is_cancelled());
        }
        assert!(!c.cancel(), "idle again once the turn ended");
        let _turn = TurnGuard::begin(&c);
        let token = tandem_scheduler::CancelToken::default();
        assert!(c.running(token.clone()));
        assert!(!token.is_cancelled());
        assert!(c.cancel());
        assert!(token.is_cancelled());
    }
}
