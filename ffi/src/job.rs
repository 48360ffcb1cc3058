//! C tasks and `respool_job`.
//!
//! A C task is a [`UserTask`]: the `run` and `destroy` callbacks and the
//! `user` pointer. It lives inside the Rust closure given to the pool, so
//! the pool's own guarantees carry over: a closure is either called once or
//! dropped without being called, on every path (refused at submit,
//! cancelled, refused while waiting, deadline missed, dropped at shutdown).
//! `UserTask`'s `Drop` calls `destroy` — so `destroy` runs exactly once,
//! after `run` when `run` is called — and then signals the job's
//! [`Completion`].
//!
//! A job is *finished* when that signal was given and the pool resolved
//! the task's `JoinHandle`. So when `respool_job_wait` returns, `run` has
//! returned or will never be called, and `destroy` has returned: the C
//! caller may release whatever the task used. (A Rust `JoinHandle` alone
//! resolves earlier for a cancelled task, whose closure is dropped only
//! when a worker reaches it.)

use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use respool::JoinHandle;

use crate::error::{respool_result, task_code};
use crate::ffi::{
    Castable, Error, OwnershipBox, clear_last_error, free_box, guard, guard_keeping_message,
    guard_value, optional_out, set_last_error, try_out, try_ref,
};

/// `void (*)(void *user)`: a task's `run` or `destroy` callback.
pub(crate) type Callback = unsafe extern "C" fn(user: *mut c_void);

/// Set once a task's closure is gone (after `destroy` returned).
#[derive(Default)]
pub(crate) struct Completion {
    done: Mutex<bool>,
    cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Completion {
    fn set(&self) {
        *lock(&self.done) = true;
        self.cv.notify_all();
    }

    fn is_set(&self) -> bool {
        *lock(&self.done)
    }

    /// Waits until set, or at most `timeout`; whether it is set.
    fn wait(&self, timeout: Option<Duration>) -> bool {
        let g = lock(&self.done);
        match timeout {
            None => *self
                .cv
                .wait_while(g, |done| !*done)
                .unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                *self
                    .cv
                    .wait_timeout_while(g, t, |done| !*done)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }
}

/// A C task: `run(user)` at most once, then `destroy(user)` exactly once.
pub(crate) struct UserTask {
    /// NULL is refused by `respool_pool_submit` (after which the task is
    /// dropped: `destroy` still runs).
    run: Option<Callback>,
    user: *mut c_void,
    destroy: Option<Callback>,
    done: Option<Arc<Completion>>,
}

// SAFETY: `user` is handed to another thread on purpose: the C API
// documents that `run` and `destroy` are called on a worker (or whichever
// thread drops the task), and that `user` must allow that. The callbacks
// are plain function pointers.
unsafe impl Send for UserTask {}

impl UserTask {
    pub(crate) fn new(
        run: Option<Callback>,
        user: *mut c_void,
        destroy: Option<Callback>,
        done: Option<Arc<Completion>>,
    ) -> UserTask {
        UserTask {
            run,
            user,
            destroy,
            done,
        }
    }

    /// Calls `run`, then (on drop) `destroy`.
    pub(crate) fn run(self) {
        if let Some(run) = self.run {
            // SAFETY: the C caller gave `run` and `user` for exactly this
            // call, which happens at most once (`self` is consumed).
            unsafe { run(self.user) };
        }
    }
}

impl Drop for UserTask {
    fn drop(&mut self) {
        if let Some(destroy) = self.destroy {
            // SAFETY: `drop` runs once, so `destroy` is called once, after
            // `run` if `run` was called (`run` consumes `self`).
            unsafe { destroy(self.user) };
        }
        if let Some(done) = &self.done {
            done.set();
        }
    }
}

/// A submitted task's handle: wait for it, poll it, cancel it.
///
/// Thread safety: `respool_job_wait`, `respool_job_wait_timeout`,
/// `respool_job_status` and `respool_job_cancel` may be called from any
/// thread, also at the same time on one job; `respool_job_free` must not
/// overlap any other call on the job.
pub struct respool_job {
    _private: [u8; 0],
}

/// The Rust side of a job.
pub(crate) struct Job {
    completion: Arc<Completion>,
    slot: Mutex<Slot>,
}

struct Slot {
    /// The pool's handle, until its result is taken.
    handle: Option<JoinHandle<()>>,
    /// The outcome, once known, with the details of a failure.
    outcome: Option<(respool_result, Option<String>)>,
}

impl Castable for respool_job {
    type Ownership = OwnershipBox;
    type RustType = Job;
}

impl Job {
    pub(crate) fn new(completion: Arc<Completion>, handle: JoinHandle<()>) -> Job {
        Job {
            completion,
            slot: Mutex::new(Slot {
                handle: Some(handle),
                outcome: None,
            }),
        }
    }

    /// The outcome, if finished. `block` waits for the pool to resolve the
    /// handle (short: the closure is already gone).
    fn outcome(&self, block: bool) -> Option<(respool_result, Option<String>)> {
        let mut slot = lock(&self.slot);
        if slot.outcome.is_none() {
            let result = match slot.handle.take() {
                Some(h) if block => h.join(),
                Some(mut h) => match h.try_join() {
                    Some(r) => r,
                    None => {
                        slot.handle = Some(h);
                        return None;
                    }
                },
                // Taken by an earlier call that then stored an outcome.
                None => return None,
            };
            slot.outcome = Some(match result {
                Ok(()) => (respool_result::RESPOOL_OK, None),
                Err(e) => (task_code(&e), Some(e.to_string())),
            });
        }
        slot.outcome.clone()
    }

    /// Waits at most `timeout` (forever with `None`).
    fn wait(&self, timeout: Option<Duration>) -> Option<(respool_result, Option<String>)> {
        if self.completion.wait(timeout) {
            self.outcome(true)
        } else {
            None
        }
    }

    /// Polls.
    fn status(&self) -> Option<(respool_result, Option<String>)> {
        if self.completion.is_set() {
            self.outcome(false)
        } else {
            None
        }
    }

    fn cancel(&self) -> bool {
        lock(&self.slot)
            .handle
            .as_ref()
            .is_some_and(JoinHandle::cancel)
    }
}

/// Writes an outcome and stores its details as the last error message.
fn report(
    function: &str,
    out: crate::ffi::Out<'_, respool_result>,
    outcome: (respool_result, Option<String>),
) {
    match &outcome.1 {
        Some(details) => set_last_error(function, details),
        None => clear_last_error(),
    }
    out.write(outcome.0);
}

fn not_finished() -> Error {
    Error::new(
        respool_result::RESPOOL_TIMED_OUT,
        "the job has not finished yet",
    )
}

/// Waits until the job has finished and writes its outcome: `RESPOOL_OK`
/// (`run` returned), `RESPOOL_CANCELLED`, `RESPOOL_SHUT_DOWN`,
/// `RESPOOL_REJECTED_WHILE_WAITING`, `RESPOOL_DEADLINE_MISSED`,
/// `RESPOOL_TASK_TIMED_OUT` or `RESPOOL_PANICKED`. When it returns, `run`
/// has returned or will never be called, and `destroy` has returned. May be
/// called again (same outcome).
///
/// Thread safety: any thread; see `respool_job`. Do not wait for a job from
/// inside a task of a pool whose workers may all be busy waiting.
///
/// # Safety
///
/// `job` is NULL or a live job; `outcome_out` is NULL or valid for writing
/// a `respool_result`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_job_wait(
    job: *mut respool_job,
    outcome_out: *mut respool_result,
) -> respool_result {
    guard_keeping_message("respool_job_wait", || {
        // SAFETY: per this function's contract.
        let (job, out) = unsafe { (try_ref(job, "job")?, try_out(outcome_out, "outcome_out")?) };
        let outcome = job.wait(None).ok_or_else(not_finished)?;
        report("respool_job_wait", out, outcome);
        Ok(())
    })
}

/// As `respool_job_wait`, but waits at most `timeout_ms` milliseconds:
/// `RESPOOL_TIMED_OUT` (nothing written) if the job had not finished by
/// then.
///
/// Thread safety: any thread; see `respool_job`.
///
/// # Safety
///
/// As `respool_job_wait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_job_wait_timeout(
    job: *mut respool_job,
    timeout_ms: u64,
    outcome_out: *mut respool_result,
) -> respool_result {
    guard_keeping_message("respool_job_wait_timeout", || {
        // SAFETY: per this function's contract.
        let (job, out) = unsafe { (try_ref(job, "job")?, try_out(outcome_out, "outcome_out")?) };
        let outcome = job
            .wait(Some(Duration::from_millis(timeout_ms)))
            .ok_or_else(not_finished)?;
        report("respool_job_wait_timeout", out, outcome);
        Ok(())
    })
}

/// Polls without waiting: the outcome if the job has finished, else
/// `RESPOOL_TIMED_OUT` (nothing written).
///
/// Thread safety: any thread; see `respool_job`.
///
/// # Safety
///
/// As `respool_job_wait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_job_status(
    job: *const respool_job,
    outcome_out: *mut respool_result,
) -> respool_result {
    guard_keeping_message("respool_job_status", || {
        // SAFETY: per this function's contract.
        let (job, out) = unsafe { (try_ref(job, "job")?, try_out(outcome_out, "outcome_out")?) };
        let outcome = job.status().ok_or_else(not_finished)?;
        report("respool_job_status", out, outcome);
        Ok(())
    })
}

/// Requests cancellation. A task that has not started never starts: its
/// outcome becomes `RESPOOL_CANCELLED`, its `destroy` is called (at once
/// for a task waiting for resources, else when a worker reaches it or at
/// shutdown) and `*prevented_out` is true. A running task is asked to stop
/// (`respool_task_is_cancelled` returns true inside it) and
/// `*prevented_out` is false, as for a finished one. `prevented_out` may be
/// NULL.
///
/// Thread safety: any thread; see `respool_job`.
///
/// # Safety
///
/// `job` is NULL or a live job; `prevented_out` is NULL or valid for
/// writing a `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_job_cancel(
    job: *mut respool_job,
    prevented_out: *mut bool,
) -> respool_result {
    guard("respool_job_cancel", || {
        // SAFETY: per this function's contract.
        let (job, out) = unsafe { (try_ref(job, "job")?, optional_out(prevented_out)) };
        let prevented = job.cancel();
        if let Some(out) = out {
            out.write(prevented);
        }
        Ok(())
    })
}

/// Frees a job handle. NULL is a no-op. Freeing a job that has not
/// finished detaches it: the task still runs (or is dropped) as it would
/// have, and `destroy` is still called exactly once.
///
/// Thread safety: any thread, but no other call on `job` may be in
/// progress (see `respool_job`).
///
/// # Safety
///
/// `job` is NULL or a live job, not used afterwards, and no other call on
/// it is in progress.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_job_free(job: *mut respool_job) {
    guard_value("respool_job_free", (), || {
        // SAFETY: per this function's contract.
        unsafe { free_box(job) }
    });
}
