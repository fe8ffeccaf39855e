//! `dev.tandem.Session`'s native methods. The handle is a `Box<SessionBox>`: the conversation
//! behind a `Mutex` (one call at a time; a second one while a turn runs is `Status::Busy`), its
//! `Canceller` beside it so `cancel()` never waits for that lock, and a `Weak` of the engine.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};

use jni::objects::{JClass, JIntArray, JObject, JObjectArray, JString, JValue};
use jni::sys::{jboolean, jfloat, jint, jintArray, jlong, jobject, JNI_FALSE};
use jni::JNIEnv;
use tandem::app::{AppError, Status};
use tandem::{
    Canceller, Conversation, EndTurn, Engine, RequestOutput, SamplingParams, StopReason, Token,
    TurnOptions,
};

use crate::convert::{count, ids_to_java, opt_string, strings, token_ids};
use crate::error::{call, Failure, JniResult};
use crate::handle;

const WHAT: &str = "Session";
const RESULT_CLASS: &str = "dev/tandem/Result";

/// What a `Session` handle points to.
pub(crate) struct SessionBox {
    /// The engine's owner is the `Tandem` handle; a session does not keep it running.
    engine: Weak<Engine>,
    conversation: Mutex<Conversation>,
    canceller: Canceller,
}

impl SessionBox {
    pub(crate) fn new(engine: &Arc<Engine>, conversation: Conversation) -> SessionBox {
        SessionBox {
            engine: Arc::downgrade(engine),
            canceller: conversation.canceller(),
            conversation: Mutex::new(conversation),
        }
    }

    /// The conversation, if no other call is using it.
    fn conversation(&self) -> Result<MutexGuard<'_, Conversation>, AppError> {
        self.conversation.try_lock().map_err(|e| match e {
            TryLockError::WouldBlock => AppError::new(
                Status::Busy,
                "the session is running a generation on another thread; wait for it or cancel() it",
            ),
            TryLockError::Poisoned(_) => AppError::new(
                Status::Internal,
                "an earlier call on this session panicked; close it and start a new session",
            ),
        })
    }

    /// The engine, kept alive by the caller for as long as it holds the `Arc`.
    fn engine(&self) -> Result<Arc<Engine>, AppError> {
        self.engine
            .upgrade()
            .ok_or_else(|| AppError::invalid("the Tandem this session belongs to is closed"))
    }
}

/// The session behind a handle the Java side passes during a call.
fn session<'a>(handle: jlong) -> JniResult<&'a SessionBox> {
    // SAFETY: the Java side passes a `Session` handle only while holding its read lock, so it is
    // zero or a live `SessionBox` that is not freed before this native call returns; the
    // reference is not kept beyond the call.
    Ok(unsafe { handle::borrow::<SessionBox>(handle, WHAT) }?)
}

#[no_mangle]
pub extern "system" fn Java_dev_tandem_Session_nativeClose<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    call(&mut env, (), |_| {
        // SAFETY: `handle` is zero or a live `SessionBox` handle (see `handle`); the Java side
        // calls this once, under the write lock (so no call is using it), after zeroing its
        // field.
        unsafe { handle::free::<SessionBox>(handle) };
        Ok(())
    })
}

/// Cancels the running generation, if any; never blocks. Returns whether one was running.
#[no_mangle]
pub extern "system" fn Java_dev_tandem_Session_nativeCancel<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jboolean {
    call(&mut env, JNI_FALSE, |_| {
        Ok(jboolean::from(session(handle)?.canceller.cancel()))
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_tandem_Session_nativeFork<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jlong {
    call(&mut env, 0, |_| {
        let s = session(handle)?;
        let engine = s.engine()?;
        let fork = s.conversation()?.fork().map_err(AppError::from_run)?;
        Ok(handle::into_handle(SessionBox::new(&engine, fork)))
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_tandem_Session_nativeTokens<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jintArray {
    call(&mut env, std::ptr::null_mut(), |env| {
        let tokens = session(handle)?
            .conversation()?
            .session()
            .tokens()
            .map_err(AppError::from_run)?;
        Ok(ids_to_java(env, &tokens)?.into_raw())
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_tandem_Session_nativeReset<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    call(&mut env, (), |_| {
        session(handle)?
            .conversation()?
            .reset()
            .map_err(AppError::from_run)?;
        Ok(())
    })
}

/// Runs one turn: `prompt` text, or (`prompt` null) the token ids `ids`; the other arguments
/// are `GenerateOptions`' fields. Returns a `dev.tandem.Result`.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // one per GenerateOptions field: Java passes them flat
pub extern "system" fn Java_dev_tandem_Session_nativeGenerate<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    prompt: JString<'local>,
    ids: JIntArray<'local>,
    max_tokens: jint,
    temperature: jfloat,
    top_k: jint,
    top_p: jfloat,
    min_p: jfloat,
    seed: jlong,
    apply_chat_template: jboolean,
    ignore_eos: jboolean,
    stop: JObjectArray<'local>,
    listener: JObject<'local>,
) -> jobject {
    call(&mut env, std::ptr::null_mut(), |env| {
        let sampling = SamplingParams {
            temperature,
            top_k: count(top_k, "topK")?,
            top_p,
            min_p,
            // The bits as they are: any long is a seed.
            seed: seed as u64,
            ..SamplingParams::default()
        };
        sampling
            .validate()
            .map_err(|e| AppError::invalid(e.to_string()))?;
        let opts = TurnOptions {
            max_tokens: count(max_tokens, "maxTokens")?,
            sampling,
            stop_strings: strings(env, &stop, "stop")?,
            ignore_eos: ignore_eos != JNI_FALSE,
            chat: apply_chat_template != JNI_FALSE,
        };
        let text = opt_string(env, &prompt)?;
        let ids = match text {
            Some(_) => Vec::new(),
            None if ids.is_null() => return Err(AppError::invalid("the prompt is null").into()),
            None => token_ids(env, &ids)?,
        };
        let s = session(handle)?;
        // Held for the turn: closing the Tandem meanwhile does not stop the engine under it.
        let _engine = s.engine()?;
        let mut conversation = s.conversation()?;
        let listener = (!listener.is_null()).then_some(&listener);
        // Set when the listener threw (or a JNI call failed): the turn is stopped and this is
        // reported instead of its output.
        let mut listener_failure: Option<Failure> = None;
        let on_token = |t: &Token| -> ControlFlow<EndTurn> {
            let Some(listener) = listener else {
                return ControlFlow::Continue(());
            };
            match notify(env, listener, t) {
                Ok(true) => ControlFlow::Continue(()),
                Ok(false) => ControlFlow::Break(EndTurn::Keep),
                Err(f) => {
                    // The turn is undone: the listener never saw it through.
                    listener_failure = Some(f);
                    ControlFlow::Break(EndTurn::Discard)
                }
            }
        };
        let out = match text {
            Some(text) => conversation.say(&text, &opts, on_token),
            None => conversation.send_tokens(ids, &opts, on_token),
        };
        drop(conversation);
        if let Some(f) = listener_failure {
            return Err(f);
        }
        let out = out.map_err(AppError::from_run)?;
        Ok(result_object(env, &out)?.into_raw())
    })
}

/// Calls `listener.onToken(id, text)`; whether generation goes on.
fn notify(env: &mut JNIEnv<'_>, listener: &JObject<'_>, t: &Token) -> JniResult<bool> {
    let id = match t.id {
        None => -1,
        Some(id) => jint::try_from(id).map_err(|_| {
            AppError::new(
                Status::Internal,
                format!("token id {id} does not fit a Java int"),
            )
        })?,
    };
    let text = env.new_string(&t.text)?;
    let returned = env.call_method(
        listener,
        "onToken",
        "(ILjava/lang/String;)Z",
        &[JValue::Int(id), JValue::Object(&text)],
    );
    // One local reference per token would fill the local reference table on a long turn.
    env.delete_local_ref(text)?;
    Ok(returned?.z()?)
}

fn stop_reason_name(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Eos => "eos",
        StopReason::StopString => "stop_string",
        StopReason::MaxTokens => "max_tokens",
        StopReason::Stopped => "stopped",
    }
}

/// `new Result(tokens, text, stopReason, statsJson)`.
fn result_object<'local>(
    env: &mut JNIEnv<'local>,
    out: &RequestOutput,
) -> JniResult<JObject<'local>> {
    let stats = serde_json::to_string(&out.stats)
        .map_err(|e| AppError::new(Status::Internal, format!("serializing the statistics: {e}")))?;
    let tokens = ids_to_java(env, &out.generated)?;
    let text = env.new_string(&out.text)?;
    let reason = env.new_string(stop_reason_name(out.stop_reason))?;
    let stats = env.new_string(stats)?;
    Ok(env.new_object(
        RESULT_CLASS,
        "([ILjava/lang/String;Ljava/lang/String;Ljava/lang/String;)V",
        &[
            JValue::Object(&tokens),
            JValue::Object(&text),
            JValue::Object(&reason),
            JValue::Object(&stats),
        ],
    )?)
}
