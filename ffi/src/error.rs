//! Result codes, their messages, the thread's last error message, and the
//! mapping from respool's Rust errors to codes.
//!
//! Codes are stable: a code's number never changes meaning, and a code
//! that is retired keeps its number reserved (it is listed in the
//! "Retired" note of [`respool_result`] and never reused).

use std::ffi::{CStr, c_char};

use respool::store::StoreError;
use respool::{BuildError, SubmitError, TaskError};

use crate::ffi::{Error, guard_keeping_message, guard_value, optional_out, with_last_error};

/// What a call did. `RESPOOL_OK` is 0; every other value says why the call
/// failed (or, for a job's outcome, why its task did not complete).
/// `respool_result_message` turns a code into a static sentence and
/// `respool_last_error_message` gives the details of the last failure on
/// the calling thread.
///
/// Numbers are part of the ABI: they never change, new codes get new
/// numbers, and retired codes stay reserved (none is retired so far).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum respool_result {
    /// Success (as a job outcome: the task's `run` callback returned).
    RESPOOL_OK = 0,
    /// A pointer argument that must not be NULL was NULL.
    RESPOOL_NULL_ARGUMENT = 1,
    /// An argument is out of range: an unknown dimension or policy, zero
    /// workers, an amount above 2^60, a string that is not UTF-8, a
    /// configuration that cannot work (headroom above capacity, ...).
    RESPOOL_INVALID_ARGUMENT = 2,
    /// An amount given as text ("512MiB", "500m") did not parse.
    RESPOOL_PARSE_ERROR = 3,
    /// The task needs more than the pool's whole capacity in some
    /// dimension: it could never run. It was not submitted.
    RESPOOL_NEVER_FITS = 4,
    /// Admission policy `RESPOOL_POLICY_REJECT` and the task does not fit
    /// now. It was not submitted; retry later.
    RESPOOL_BUSY = 5,
    /// The wait queue for tasks that do not fit now is full. It was not
    /// submitted.
    RESPOOL_QUEUE_FULL = 6,
    /// Admission policy `RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE` and the task
    /// still did not fit when its maximum wait ran out. It was not
    /// submitted.
    RESPOOL_DEADLINE_EXPIRED = 7,
    /// The pool is shut down (call result), or it shut down before the
    /// task started (job outcome).
    RESPOOL_SHUT_DOWN = 8,
    /// Job outcome: the job was cancelled before its task started.
    RESPOOL_CANCELLED = 9,
    /// The job had not finished when the call returned (the wait of
    /// `respool_job_wait_timeout` ran out, or `respool_job_status` polled an
    /// unfinished job). Nothing was written to the outputs.
    RESPOOL_TIMED_OUT = 10,
    /// A Rust panic inside respool was caught at the API boundary (call
    /// result), or while running the task (job outcome). It never crosses
    /// into C. Please report it.
    RESPOOL_PANICKED = 11,
    /// Job outcome: admission refused the task while it waited for
    /// resources (the capacity was lowered below what it needs).
    RESPOOL_REJECTED_WHILE_WAITING = 12,
    /// The profile file could not be read or written.
    RESPOOL_STORE_IO = 13,
    /// The profile file does not parse (it was left untouched).
    RESPOOL_STORE_CORRUPT = 14,
    /// The profile file was written by a newer respool (it was left
    /// untouched).
    RESPOOL_STORE_VERSION = 15,
    /// The operating system refused to start a worker thread.
    RESPOOL_SPAWN_FAILED = 16,
    /// An error respool does not know how to classify (a newer kind of
    /// error than this version of the C API maps). Not produced today.
    RESPOOL_INTERNAL = 17,
    /// Job outcome: the task's deadline had passed when a worker picked it
    /// up, so it was not started.
    RESPOOL_DEADLINE_MISSED = 18,
    /// Job outcome: the task ran past its timeout. It was asked to stop
    /// (see `respool_task_is_cancelled`) and its callback has returned; a
    /// timeout that fires between the worker picking the task up and
    /// calling `run` means `run` is never called.
    RESPOOL_TASK_TIMED_OUT = 19,
}

impl respool_result {
    /// Every code, in numeric order (the numbers are contiguous).
    pub(crate) const ALL: [respool_result; 20] = [
        respool_result::RESPOOL_OK,
        respool_result::RESPOOL_NULL_ARGUMENT,
        respool_result::RESPOOL_INVALID_ARGUMENT,
        respool_result::RESPOOL_PARSE_ERROR,
        respool_result::RESPOOL_NEVER_FITS,
        respool_result::RESPOOL_BUSY,
        respool_result::RESPOOL_QUEUE_FULL,
        respool_result::RESPOOL_DEADLINE_EXPIRED,
        respool_result::RESPOOL_SHUT_DOWN,
        respool_result::RESPOOL_CANCELLED,
        respool_result::RESPOOL_TIMED_OUT,
        respool_result::RESPOOL_PANICKED,
        respool_result::RESPOOL_REJECTED_WHILE_WAITING,
        respool_result::RESPOOL_STORE_IO,
        respool_result::RESPOOL_STORE_CORRUPT,
        respool_result::RESPOOL_STORE_VERSION,
        respool_result::RESPOOL_SPAWN_FAILED,
        respool_result::RESPOOL_INTERNAL,
        respool_result::RESPOOL_DEADLINE_MISSED,
        respool_result::RESPOOL_TASK_TIMED_OUT,
    ];

    /// The code with number `n`, if there is one.
    #[must_use]
    pub fn from_u32(n: u32) -> Option<respool_result> {
        usize::try_from(n)
            .ok()
            .and_then(|i| Self::ALL.get(i))
            .copied()
    }

    /// A static sentence for the code.
    #[must_use]
    pub fn message(self) -> &'static CStr {
        use respool_result as R;
        match self {
            R::RESPOOL_OK => c"success",
            R::RESPOOL_NULL_ARGUMENT => c"a required pointer argument is NULL",
            R::RESPOOL_INVALID_ARGUMENT => c"an argument is out of range or inconsistent",
            R::RESPOOL_PARSE_ERROR => c"an amount given as text did not parse",
            R::RESPOOL_NEVER_FITS => {
                c"the task needs more than the pool's whole capacity: it can never run"
            }
            R::RESPOOL_BUSY => c"the task does not fit now and the admission policy rejects it",
            R::RESPOOL_QUEUE_FULL => c"the queue of tasks waiting for resources is full",
            R::RESPOOL_DEADLINE_EXPIRED => {
                c"the task still did not fit when its maximum admission wait ran out"
            }
            R::RESPOOL_SHUT_DOWN => c"the pool is shut down",
            R::RESPOOL_CANCELLED => c"the job was cancelled before its task started",
            R::RESPOOL_TIMED_OUT => c"the job had not finished when the wait ended",
            R::RESPOOL_PANICKED => c"a panic inside respool was caught",
            R::RESPOOL_REJECTED_WHILE_WAITING => {
                c"admission refused the task while it waited for resources"
            }
            R::RESPOOL_STORE_IO => c"the profile file could not be read or written",
            R::RESPOOL_STORE_CORRUPT => c"the profile file is corrupt",
            R::RESPOOL_STORE_VERSION => c"the profile file was written by a newer respool",
            R::RESPOOL_SPAWN_FAILED => c"the operating system refused to start a worker thread",
            R::RESPOOL_INTERNAL => c"an unclassified internal error",
            R::RESPOOL_DEADLINE_MISSED => {
                c"the task's deadline passed before a worker could start it"
            }
            R::RESPOOL_TASK_TIMED_OUT => c"the task ran past its timeout",
        }
    }
}

/// A static, NUL-terminated sentence describing `result` (any value:
/// unknown numbers give "unknown respool result code"). Never NULL; the
/// string lives as long as the program.
///
/// Takes a `uint32_t` rather than `respool_result` so that any number is
/// accepted safely.
///
/// Thread safety: may be called from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn respool_result_message(result: u32) -> *const c_char {
    guard_value(
        "respool_result_message",
        c"unknown respool result code".as_ptr(),
        || {
            respool_result::from_u32(result)
                .map_or(c"unknown respool result code", respool_result::message)
                .as_ptr()
        },
    )
}

/// Copies the details of the last failed call on the calling thread into
/// `buf`, like `snprintf`: at most `len - 1` bytes and a NUL terminator
/// (nothing when `len` is 0). The message is empty after a call that
/// returned `RESPOOL_OK`, except that `respool_job_wait`,
/// `respool_job_wait_timeout` and `respool_job_status` store the details of
/// an outcome other than `RESPOOL_OK`. This function (unless it fails) and
/// `respool_result_message` do not change it. A message quotes at most 256
/// bytes of any text the call was given (an amount that did not parse, a
/// path), followed by "…" and the text's length in bytes.
///
/// `buf` may be NULL only when `len` is 0. `needed_out` may be NULL; if
/// not, it receives the full length of the message (without the NUL): a
/// value `>= len` means the copy was truncated.
///
/// Thread safety: may be called from any thread; each thread has its own
/// message.
///
/// # Safety
///
/// `buf` is NULL (with `len` 0) or valid for writing `len` bytes;
/// `needed_out` is NULL or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_last_error_message(
    buf: *mut c_char,
    len: usize,
    needed_out: *mut usize,
) -> respool_result {
    guard_keeping_message("respool_last_error_message", || {
        let message = with_last_error(str::to_owned);
        // SAFETY: per this function's contract.
        let needed = unsafe { optional_out(needed_out) };
        if len > 0 {
            let buf = crate::ffi::non_null(buf, "buf")?;
            let n = message.len().min(len - 1);
            // SAFETY: `buf` is valid for `len` bytes and `n + 1 <= len`; the
            // source is a distinct Rust string.
            unsafe {
                std::ptr::copy_nonoverlapping(message.as_ptr(), buf.as_ptr().cast::<u8>(), n);
                buf.as_ptr().add(n).write(0);
            }
        }
        if let Some(out) = needed {
            out.write(message.len());
        }
        Ok(())
    })
}

pub(crate) fn build_error(e: &BuildError) -> Error {
    let code = match e {
        BuildError::Parse(_) => respool_result::RESPOOL_PARSE_ERROR,
        BuildError::Spawn(_) => respool_result::RESPOOL_SPAWN_FAILED,
        BuildError::Store(s) => return store_error(s),
        BuildError::ZeroWorkers
        | BuildError::ZeroQueueCapacity
        | BuildError::HeadroomExceedsCapacity { .. }
        | BuildError::Untracked { .. }
        | BuildError::CriticalReserveTooLarge { .. }
        | BuildError::TooLarge { .. }
        | BuildError::TooSmall { .. }
        | BuildError::Invalid(_) => respool_result::RESPOOL_INVALID_ARGUMENT,
        _ => respool_result::RESPOOL_INTERNAL,
    };
    Error::new(code, e.to_string())
}

pub(crate) fn submit_code(e: &SubmitError) -> respool_result {
    match e {
        SubmitError::NeverFits(_) => respool_result::RESPOOL_NEVER_FITS,
        SubmitError::Busy { .. } => respool_result::RESPOOL_BUSY,
        SubmitError::QueueFull { .. } => respool_result::RESPOOL_QUEUE_FULL,
        SubmitError::DeadlineExpired => respool_result::RESPOOL_DEADLINE_EXPIRED,
        SubmitError::ShutDown => respool_result::RESPOOL_SHUT_DOWN,
        SubmitError::InvalidRequirement(_) => respool_result::RESPOOL_PARSE_ERROR,
        SubmitError::InvalidAmount(_) => respool_result::RESPOOL_INVALID_ARGUMENT,
        _ => respool_result::RESPOOL_INTERNAL,
    }
}

pub(crate) fn submit_error(e: &SubmitError) -> Error {
    Error::new(submit_code(e), e.to_string())
}

pub(crate) fn store_error(e: &StoreError) -> Error {
    let code = match e {
        StoreError::Io { .. } => respool_result::RESPOOL_STORE_IO,
        StoreError::Corrupt { .. } => respool_result::RESPOOL_STORE_CORRUPT,
        StoreError::UnsupportedVersion { .. } => respool_result::RESPOOL_STORE_VERSION,
        _ => respool_result::RESPOOL_INTERNAL,
    };
    Error::new(code, e.to_string())
}

/// The outcome code of a task that produced no value.
pub(crate) fn task_code(e: &TaskError) -> respool_result {
    match e {
        TaskError::Panicked(_) => respool_result::RESPOOL_PANICKED,
        TaskError::Cancelled => respool_result::RESPOOL_CANCELLED,
        TaskError::TimedOut => respool_result::RESPOOL_TASK_TIMED_OUT,
        TaskError::Rejected(_) => respool_result::RESPOOL_REJECTED_WHILE_WAITING,
        TaskError::ShutDown => respool_result::RESPOOL_SHUT_DOWN,
        TaskError::DeadlineMissed => respool_result::RESPOOL_DEADLINE_MISSED,
        _ => respool_result::RESPOOL_INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_contiguous_and_stable() {
        for (i, r) in respool_result::ALL.iter().enumerate() {
            assert_eq!(*r as u32 as usize, i, "{r:?}");
            assert_eq!(respool_result::from_u32(*r as u32), Some(*r));
        }
        assert_eq!(respool_result::from_u32(20), None);
        // Pinned numbers: changing one breaks every compiled C program.
        assert_eq!(respool_result::RESPOOL_NEVER_FITS as u32, 4);
        assert_eq!(respool_result::RESPOOL_TASK_TIMED_OUT as u32, 19);
    }

    #[test]
    fn every_code_has_a_distinct_message() {
        let mut seen = std::collections::HashSet::new();
        for r in respool_result::ALL {
            assert!(seen.insert(r.message()), "{r:?}");
        }
    }
}
