//! Rust objects behind a Java `long handle`: boxed here, borrowed for one native call, freed once.
//!
//! The invariant every caller relies on is kept by the Java side (`dev.tandem.NativeHandle`):
//! a handle is passed to a native method only while the object's read lock is held and is
//! non-zero then; `close()` zeroes the field and frees the box under the write lock, which waits
//! for every call in flight. So during a native call the box is alive and nobody frees it, and
//! the box is only ever used through shared references (its mutable state is behind a `Mutex`).

use jni::sys::jlong;
use tandem::app::AppError;

/// Moves `value` to the heap and returns its address as a Java `long`.
pub(crate) fn into_handle<T>(value: T) -> jlong {
    Box::into_raw(Box::new(value)) as usize as jlong
}

/// The object behind `handle`, or an error for the zero handle of a closed object.
///
/// # Safety
/// `handle` is zero or was returned by [`into_handle`] with the same `T` and has not been given
/// to [`free`]; it stays so for `'a`.
pub(crate) unsafe fn borrow<'a, T>(handle: jlong, what: &str) -> Result<&'a T, AppError> {
    if handle == 0 {
        return Err(AppError::invalid(format!("the {what} is closed")));
    }
    // SAFETY: non-zero, so a live `Box<T>` pointer by the caller's contract; it is not freed
    // while the borrow lasts.
    Ok(unsafe { &*(handle as usize as *const T) })
}

/// Drops the object behind `handle` (nothing for zero).
///
/// # Safety
/// As for [`borrow`], and no borrow of it outlives this call: the handle is never used again.
pub(crate) unsafe fn free<T>(handle: jlong) {
    if handle != 0 {
        // SAFETY: a pointer from `Box::into_raw` that is freed only here, once.
        drop(unsafe { Box::from_raw(handle as usize as *mut T) });
    }
}
