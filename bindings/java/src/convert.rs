//! Java values to Rust and back, refusing what cannot mean anything (a negative count, a null
//! where a value is needed) with `Status::InvalidArgument`.

use jni::objects::{JIntArray, JObjectArray, JString};
use jni::sys::jint;
use jni::JNIEnv;
use tandem::app::{AppError, Status};

use crate::error::JniResult;

/// A string argument that may be null.
pub(crate) fn opt_string(env: &mut JNIEnv<'_>, s: &JString<'_>) -> JniResult<Option<String>> {
    if s.is_null() {
        return Ok(None);
    }
    Ok(Some(env.get_string(s)?.into()))
}

/// A string argument that must not be null.
pub(crate) fn string(env: &mut JNIEnv<'_>, s: &JString<'_>, what: &str) -> JniResult<String> {
    opt_string(env, s)?.ok_or_else(|| AppError::invalid(format!("{what} is null")).into())
}

/// A count or size: zero or more.
pub(crate) fn count(value: jint, what: &str) -> Result<usize, AppError> {
    usize::try_from(value)
        .map_err(|_| AppError::invalid(format!("{what} is {value}; it cannot be negative")))
}

/// The elements of an `int[]` (`None` for null).
pub(crate) fn opt_ints(env: &mut JNIEnv<'_>, a: &JIntArray<'_>) -> JniResult<Option<Vec<jint>>> {
    if a.is_null() {
        return Ok(None);
    }
    let len = count(env.get_array_length(a)?, "the array length")?;
    let mut out = vec![0; len];
    env.get_int_array_region(a, 0, &mut out)?;
    Ok(Some(out))
}

/// Token ids from an `int[]` that must not be null.
pub(crate) fn token_ids(env: &mut JNIEnv<'_>, a: &JIntArray<'_>) -> JniResult<Vec<u32>> {
    let ids = opt_ints(env, a)?.ok_or_else(|| AppError::invalid("the token ids are null"))?;
    let ids = ids
        .into_iter()
        .map(|id| {
            u32::try_from(id).map_err(|_| AppError::invalid(format!("token id {id} is negative")))
        })
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Token ids as a new `int[]`.
pub(crate) fn ids_to_java<'local>(
    env: &mut JNIEnv<'local>,
    ids: &[u32],
) -> JniResult<JIntArray<'local>> {
    let ints = ids
        .iter()
        .map(|&id| {
            jint::try_from(id).map_err(|_| {
                AppError::new(
                    Status::Internal,
                    format!("token id {id} does not fit a Java int"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let len = jint::try_from(ints.len())
        .map_err(|_| AppError::new(Status::Internal, "too many tokens for a Java array"))?;
    let array = env.new_int_array(len)?;
    env.set_int_array_region(&array, 0, &ints)?;
    Ok(array)
}

/// The strings of a `String[]` (empty for null; a null element is refused).
pub(crate) fn strings(
    env: &mut JNIEnv<'_>,
    a: &JObjectArray<'_>,
    what: &str,
) -> JniResult<Vec<String>> {
    if a.is_null() {
        return Ok(Vec::new());
    }
    let len = env.get_array_length(a)?;
    let mut out = Vec::with_capacity(count(len, "the array length")?);
    for i in 0..len {
        let element = JString::from(env.get_object_array_element(a, i)?);
        let s = string(env, &element, &format!("{what}[{i}]"))?;
        env.delete_local_ref(element)?;
        out.push(s);
    }
    Ok(out)
}
