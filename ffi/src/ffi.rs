//! The machinery every entry point shares: handle ownership, NULL checks,
//! panic containment and the thread-local error message.
//!
//! The pattern is rustls-ffi's `librustls/src/ffi.rs`:
//!
//! - Each C handle is an opaque Rust struct (`struct respool_pool { _private:
//!   [u8; 0] }`, not `repr(C)`, so cbindgen emits only a forward
//!   declaration) tied by [`Castable`] to the Rust value it stands for and to
//!   how that value is owned. All handles of this crate are
//!   [`OwnershipBox`]: `_new` moves the value into a `Box` and hands out the
//!   raw pointer, `_free` takes it back. No other file casts a handle
//!   pointer: they call [`try_ref`], [`try_mut`], [`to_boxed_ptr`] and
//!   [`free_box`].
//! - Every pointer from C goes through [`non_null`], which turns NULL into
//!   [`Error::null`] naming the argument.
//! - Every entry point runs its body through [`guard`] (or [`guard_value`]):
//!   `catch_unwind` turns a panic into `RESPOOL_PANICKED`, the error (if any)
//!   is stored as the thread's last error message, and the numbered code is
//!   returned. Nothing unwinds into C.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{CStr, c_char};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;

use crate::error::respool_result;

/// How the Rust value behind a handle is owned by C.
pub(crate) trait Ownership {}

/// The handle was made with `Box::into_raw`; C owns it until `_free`.
pub(crate) struct OwnershipBox;
impl Ownership for OwnershipBox {}

/// Ties an opaque C handle type to the Rust value it points to.
pub(crate) trait Castable {
    /// How C owns it.
    type Ownership: Ownership;
    /// The Rust value behind the handle.
    type RustType;
}

/// Moves `value` into a new box and returns it as a handle.
pub(crate) fn to_boxed_ptr<C>(value: C::RustType) -> *mut C
where
    C: Castable<Ownership = OwnershipBox>,
{
    Box::into_raw(Box::new(value)).cast::<C>()
}

/// Frees a boxed handle; NULL is a no-op.
///
/// # Safety
///
/// `ptr` is NULL or was returned by [`to_boxed_ptr`] for the same `C` and
/// not freed since; no other thread uses it during or after this call.
pub(crate) unsafe fn free_box<C>(ptr: *mut C)
where
    C: Castable<Ownership = OwnershipBox>,
{
    if ptr.is_null() {
        return;
    }
    // SAFETY: per the contract, `ptr` came from `Box::into_raw` of a
    // `Box<C::RustType>` (cast in `to_boxed_ptr`) and is freed only here.
    drop(unsafe { Box::from_raw(ptr.cast::<C::RustType>()) });
}

/// The Rust value behind a handle, shared.
///
/// # Safety
///
/// `ptr` is NULL or a live handle of type `C` (from [`to_boxed_ptr`], not
/// freed) that stays live for `'a`.
pub(crate) unsafe fn try_ref<'a, C: Castable>(
    ptr: *const C,
    name: &'static str,
) -> Result<&'a C::RustType, Error> {
    let p = non_null(ptr, name)?;
    // SAFETY: non-null, and per the contract it points to a live
    // `C::RustType` (the handle type is a zero-sized stand-in for it).
    Ok(unsafe { p.cast::<C::RustType>().as_ref() })
}

/// The Rust value behind a handle, exclusively (for handles whose
/// functions are documented as not callable concurrently).
///
/// # Safety
///
/// As [`try_ref`], and no other reference to the value exists for `'a`
/// (the caller does not use the handle from another thread meanwhile).
pub(crate) unsafe fn try_mut<'a, C>(
    ptr: *mut C,
    name: &'static str,
) -> Result<&'a mut C::RustType, Error>
where
    C: Castable<Ownership = OwnershipBox>,
{
    let p = non_null(ptr, name)?;
    // SAFETY: non-null, live per the contract, and unaliased for `'a`.
    Ok(unsafe { p.cast::<C::RustType>().as_mut() })
}

/// The one NULL check: every pointer received from C passes through here.
pub(crate) fn non_null<T>(ptr: *const T, name: &'static str) -> Result<NonNull<T>, Error> {
    NonNull::new(ptr.cast_mut()).ok_or_else(|| Error::null(name))
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
///
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a`.
pub(crate) unsafe fn try_str<'a>(ptr: *const c_char, name: &'static str) -> Result<&'a str, Error> {
    let p = non_null(ptr, name)?;
    // SAFETY: non-null and NUL-terminated per the contract.
    let c = unsafe { CStr::from_ptr(p.as_ptr()) };
    c.to_str().map_err(|e| {
        Error::new(
            respool_result::RESPOOL_INVALID_ARGUMENT,
            format!("argument `{name}` is not valid UTF-8: {e}"),
        )
    })
}

/// A NUL-terminated path argument: any bytes on Unix (paths need not be
/// UTF-8 there), UTF-8 elsewhere.
///
/// # Safety
///
/// As [`try_str`].
pub(crate) unsafe fn try_path<'a>(
    ptr: *const c_char,
    name: &'static str,
) -> Result<&'a std::path::Path, Error> {
    let p = non_null(ptr, name)?;
    // SAFETY: non-null and NUL-terminated per the contract.
    let c = unsafe { CStr::from_ptr(p.as_ptr()) };
    if c.is_empty() {
        return Err(Error::invalid(format!(
            "argument `{name}` is an empty path"
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::path::Path::new(std::ffi::OsStr::from_bytes(
            c.to_bytes(),
        )))
    }
    #[cfg(not(unix))]
    {
        c.to_str()
            .map(std::path::Path::new)
            .map_err(|e| Error::invalid(format!("argument `{name}` is not valid UTF-8: {e}")))
    }
}

/// An output argument: checked for NULL up front, written only at the end
/// of a successful call.
pub(crate) struct Out<'a, T> {
    ptr: NonNull<T>,
    _lifetime: PhantomData<&'a mut T>,
}

impl<T> Out<'_, T> {
    /// Writes the output (without reading or dropping the old content,
    /// which C may have left uninitialised).
    pub(crate) fn write(self, value: T) {
        // SAFETY: `try_out`'s contract: the pointer is valid for a write of
        // `T` and properly aligned.
        unsafe { self.ptr.as_ptr().write(value) };
    }
}

/// A required output argument.
///
/// # Safety
///
/// `ptr` is NULL or valid for writing one `T` (aligned) for `'a`.
pub(crate) unsafe fn try_out<'a, T>(ptr: *mut T, name: &'static str) -> Result<Out<'a, T>, Error> {
    Ok(Out {
        ptr: non_null(ptr, name)?,
        _lifetime: PhantomData,
    })
}

/// An optional output argument (documented as "may be NULL").
///
/// # Safety
///
/// As [`try_out`].
pub(crate) unsafe fn optional_out<'a, T>(ptr: *mut T) -> Option<Out<'a, T>> {
    NonNull::new(ptr).map(|ptr| Out {
        ptr,
        _lifetime: PhantomData,
    })
}

/// A failed call: its code and a message with the details.
#[derive(Debug)]
pub(crate) struct Error {
    pub(crate) code: respool_result,
    pub(crate) message: Cow<'static, str>,
}

impl Error {
    pub(crate) fn new(code: respool_result, message: impl Into<Cow<'static, str>>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(name: &'static str) -> Error {
        Error::new(
            respool_result::RESPOOL_NULL_ARGUMENT,
            format!("argument `{name}` is NULL"),
        )
    }

    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> Error {
        Error::new(respool_result::RESPOOL_INVALID_ARGUMENT, message)
    }
}

thread_local! {
    /// Details of the last failed call on this thread (empty after a
    /// successful one).
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Stores `message` as this thread's last error, prefixed by the function.
pub(crate) fn set_last_error(function: &str, message: &str) {
    LAST_ERROR.with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
            e.push_str(function);
            e.push_str(": ");
            e.push_str(message);
        }
    });
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            if !e.is_empty() {
                e.clear();
            }
        }
    });
}

/// Calls `f` with this thread's last error message.
pub(crate) fn with_last_error<R>(f: impl FnOnce(&str) -> R) -> R {
    LAST_ERROR.with(|e| match e.try_borrow() {
        Ok(e) => f(&e),
        Err(_) => f(""),
    })
}

/// Runs the body of an entry point that returns a code: catches panics,
/// records the message of a failure, clears it on success.
pub(crate) fn guard(
    function: &'static str,
    f: impl FnOnce() -> Result<(), Error>,
) -> respool_result {
    let r = guard_keeping_message(function, f);
    if r == respool_result::RESPOOL_OK {
        clear_last_error();
    }
    r
}

/// As [`guard`], but a success leaves the last error message as it is
/// (for the functions that read it, and for those that store an outcome's
/// details although the call itself succeeded).
pub(crate) fn guard_keeping_message(
    function: &'static str,
    f: impl FnOnce() -> Result<(), Error>,
) -> respool_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => respool_result::RESPOOL_OK,
        Ok(Err(e)) => {
            set_last_error(function, &e.message);
            e.code
        }
        Err(payload) => {
            set_last_error(function, &panic_text(&*payload));
            respool_result::RESPOOL_PANICKED
        }
    }
}

/// Runs the body of an entry point that returns a value (a pointer, a
/// flag): a panic yields `on_panic`.
pub(crate) fn guard_value<T>(function: &'static str, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(function, &panic_text(&*payload));
            on_panic
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload");
    format!("a panic inside respool was caught (please report it): {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_a_panic_into_a_code_and_a_message() {
        let r = guard("respool_test", || panic!("boom"));
        assert_eq!(r, respool_result::RESPOOL_PANICKED);
        with_last_error(|m| assert!(m.starts_with("respool_test: a panic"), "{m}"));
        assert!(with_last_error(|m| m.contains("boom")));
        assert_eq!(guard("respool_test", || Ok(())), respool_result::RESPOOL_OK);
        assert!(with_last_error(str::is_empty));
    }

    #[test]
    fn null_is_reported_with_the_argument_name() {
        let e = non_null(std::ptr::null::<u8>(), "pool").unwrap_err();
        assert_eq!(e.code, respool_result::RESPOOL_NULL_ARGUMENT);
        assert!(e.message.contains("`pool`"));
    }
}
