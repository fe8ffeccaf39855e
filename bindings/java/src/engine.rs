//! `dev.tandem.Tandem`'s native methods: opening an engine, its sessions, and the static
//! queries. The handle is a `Box<Arc<Engine>>`; each session holds a `Weak` of the same `Arc`.

use std::path::PathBuf;
use std::sync::Arc;

use jni::objects::{JClass, JIntArray, JString};
use jni::sys::{jboolean, jint, jlong, jstring, JNI_FALSE};
use jni::JNIEnv;
use tandem::app::{
    parse_cpu_weights, parse_prefill, source_from_fd, AppError, EngineConfig, Status,
};
use tandem::{Conversation, Engine, ModelSource, PrefillPolicy, WeightFormat};

use crate::convert::{count, opt_ints, opt_string};
use crate::error::{call, JniResult};
use crate::handle;
use crate::session::SessionBox;

/// What a `Tandem` handle points to.
pub(crate) type EngineBox = Arc<Engine>;

const WHAT: &str = "Tandem";

/// Opens an engine on the file at `path`, or (`path` null) on bytes `[offset, offset + length)`
/// of descriptor `fd`; the other arguments are `Tandem.Options`' fields. Returns the handle.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // one per Options field: Java passes them flat
pub extern "system" fn Java_dev_tandem_Tandem_nativeOpen<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    path: JString<'local>,
    fd: jint,
    offset: jlong,
    length: jlong,
    prefill: JString<'local>,
    require_npu: jboolean,
    threads: jint,
    context_length: jint,
    chunk_sizes: JIntArray<'local>,
    qnn_lib_dir: JString<'local>,
    cache_dir: JString<'local>,
    cpu_weights: JString<'local>,
) -> jlong {
    call(&mut env, 0, |env| {
        let prefill = match opt_string(env, &prefill)? {
            None => PrefillPolicy::host_default(),
            Some(p) => parse_prefill(&p)?,
        };
        let chunk_sizes = opt_ints(env, &chunk_sizes)?
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| count(c, &format!("chunkSizes[{i}]")))
            .collect::<Result<_, _>>()?;
        let cpu_weights = match opt_string(env, &cpu_weights)? {
            None => WeightFormat::AsStored,
            Some(w) => parse_cpu_weights(&w)?,
        };
        let config = EngineConfig {
            prefill,
            require_npu: require_npu != JNI_FALSE,
            threads: count(threads, "threads")?,
            context_length: count(context_length, "contextLength")?,
            chunk_sizes,
            qnn_lib_dir: opt_string(env, &qnn_lib_dir)?.map(PathBuf::from),
            cache_dir: opt_string(env, &cache_dir)?.map(PathBuf::from),
            cpu_weights,
        };
        let source = match opt_string(env, &path)? {
            Some(path) => ModelSource::Path(PathBuf::from(path)),
            None => {
                let offset = u64::try_from(offset).map_err(|_| {
                    AppError::invalid(format!("offset {offset} cannot be negative"))
                })?;
                let length = u64::try_from(length).map_err(|_| {
                    AppError::invalid(format!("length {length} cannot be negative"))
                })?;
                source_from_fd(fd, offset, length)?
            }
        };
        let engine: EngineBox = Arc::new(config.open(&source)?);
        Ok(handle::into_handle(engine))
    })
}

/// Frees the engine (its workers stop once no generation is running on it).
#[no_mangle]
pub extern "system" fn Java_dev_tandem_Tandem_nativeClose<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    call(&mut env, (), |_| {
        // SAFETY: `handle` is zero or a live `EngineBox` handle (see `handle`); the Java side
        // calls this once, under the write lock, after zeroing its field.
        unsafe { handle::free::<EngineBox>(handle) };
        Ok(())
    })
}

/// The engine behind a handle the Java side passes during a call.
fn engine<'a>(handle: jlong) -> JniResult<&'a EngineBox> {
    // SAFETY: the Java side passes a `Tandem` handle only while holding its read lock, so it is
    // zero or a live `EngineBox` that is not freed before this native call returns; the
    // reference is not kept beyond the call.
    Ok(unsafe { handle::borrow::<EngineBox>(handle, WHAT) }?)
}

#[no_mangle]
pub extern "system" fn Java_dev_tandem_Tandem_nativeContextLength<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jint {
    call(&mut env, 0, |_| {
        let ctx = engine(handle)?.ctx();
        Ok(jint::try_from(ctx).map_err(|_| {
            AppError::new(
                Status::Internal,
                format!("context {ctx} does not fit a Java int"),
            )
        })?)
    })
}

/// A new, empty session of the engine; returns its handle.
#[no_mangle]
pub extern "system" fn Java_dev_tandem_Tandem_nativeNewSession<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jlong {
    call(&mut env, 0, |_| {
        let engine = engine(handle)?;
        let session = SessionBox::new(engine, Conversation::new(engine));
        Ok(handle::into_handle(session))
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_tandem_Tandem_nativeVersion<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jstring {
    call(&mut env, std::ptr::null_mut(), |env| {
        Ok(env.new_string(env!("CARGO_PKG_VERSION"))?.into_raw())
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_tandem_Tandem_nativeDevicesJson<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jstring {
    call(&mut env, std::ptr::null_mut(), |env| {
        let probed = tandem::delegates::probe_all(tandem::qnn::QnnOptions::default());
        let doc = tandem::delegates::devices_json(&probed).to_string();
        Ok(env.new_string(doc)?.into_raw())
    })
}
