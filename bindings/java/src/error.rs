//! Errors across the boundary: every native method runs its body through [`call`], which catches
//! panics and throws a `dev.tandem.TandemException` for a failed call, unless a Java exception
//! (one the listener threw, an `OutOfMemoryError`, …) is already pending: that one propagates.

use std::panic::{self, AssertUnwindSafe};

use jni::objects::{JThrowable, JValue};
use jni::JNIEnv;
use tandem::app::{AppError, Status};

/// Why a native call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A library error, thrown as a `TandemException` with its status.
    App(AppError),
    /// A JNI call failed; if it left a Java exception pending (the usual case), that one
    /// propagates.
    Jni(jni::errors::Error),
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Failure {
        Failure::App(e)
    }
}

impl From<jni::errors::Error> for Failure {
    fn from(e: jni::errors::Error) -> Failure {
        Failure::Jni(e)
    }
}

pub(crate) type JniResult<T> = Result<T, Failure>;

pub(crate) const EXCEPTION_CLASS: &str = "dev/tandem/TandemException";

/// Runs the body of a native method: its value, or `on_error` with an exception pending.
pub(crate) fn call<'local, T>(
    env: &mut JNIEnv<'local>,
    on_error: T,
    body: impl FnOnce(&mut JNIEnv<'local>) -> JniResult<T>,
) -> T {
    let failure = match panic::catch_unwind(AssertUnwindSafe(|| body(env))) {
        Ok(Ok(value)) => return value,
        Ok(Err(failure)) => failure,
        Err(payload) => Failure::App(AppError::new(
            Status::Internal,
            format!("tandem panicked: {}", panic_text(payload.as_ref())),
        )),
    };
    throw(env, failure);
    on_error
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

/// Leaves `failure` as the pending Java exception.
fn throw(env: &mut JNIEnv<'_>, failure: Failure) {
    // A pending exception says more than anything thrown over it (and JNI allows no other calls
    // while one is pending), so it is kept.
    if env.exception_check().unwrap_or(true) {
        return;
    }
    let err = match failure {
        Failure::App(e) => e,
        Failure::Jni(e) => AppError::new(Status::Internal, format!("JNI call failed: {e}")),
    };
    if throw_tandem(env, &err).is_err() && !env.exception_check().unwrap_or(true) {
        // The exception class could not even be built (a broken classpath); say it somehow.
        let _ = env.throw_new("java/lang/IllegalStateException", err.to_string());
    }
}

fn throw_tandem(env: &mut JNIEnv<'_>, err: &AppError) -> jni::errors::Result<()> {
    let name = env.new_string(err.status.name())?;
    let message = env.new_string(&err.message)?;
    let exception = env.new_object(
        EXCEPTION_CLASS,
        "(ILjava/lang/String;Ljava/lang/String;)V",
        &[
            JValue::Int(err.status.code()),
            JValue::Object(&name),
            JValue::Object(&message),
        ],
    )?;
    env.throw(JThrowable::from(exception))
}

/// `NativeHandle.nativePanicForTest()`: panics inside [`call`], so the Java test can check that
/// a panic reaches Java as a `TandemException` (status internal) and the JVM carries on.
#[no_mangle]
pub extern "system" fn Java_dev_tandem_NativeHandle_nativePanicForTest<'local>(
    mut env: JNIEnv<'local>,
    _class: jni::objects::JClass<'local>,
) {
    call(&mut env, (), |_| -> JniResult<()> {
        panic!("a panic on purpose (NativeHandle.nativePanicForTest)")
    })
}
