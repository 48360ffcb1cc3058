//! Test-only entry points (feature `test-panic`, never in a release
//! artifact or the public header) that provoke panics inside respool, so
//! that the C tests can check that a panic never crosses into C.

use std::ffi::c_void;
use std::sync::Arc;

use crate::error::{respool_result, submit_error};
use crate::ffi::{guard, guard_value, optional_out, to_boxed_ptr, try_ref};
use crate::job::{Completion, Job, UserTask, respool_job};
use crate::pool::respool_pool;

/// Panics inside an entry point: returns `RESPOOL_PANICKED` with the panic
/// message as the last error.
#[unsafe(no_mangle)]
pub extern "C" fn respool_test_panic() -> respool_result {
    guard("respool_test_panic", || {
        panic!("respool_test_panic was called")
    })
}

/// Panics inside an entry point that returns a value: returns `true` (the
/// value the guard gives on a panic).
#[unsafe(no_mangle)]
pub extern "C" fn respool_test_panic_value() -> bool {
    guard_value("respool_test_panic_value", true, || {
        panic!("respool_test_panic_value was called")
    })
}

/// Submits a task whose Rust closure panics on the worker before it calls
/// `run(user)`: `run` is never called, `destroy(user)` is called once
/// (while unwinding), the job's outcome is `RESPOOL_PANICKED`, and the
/// worker goes on.
///
/// # Safety
///
/// As `respool_pool_submit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_test_submit_panicking(
    pool: *mut respool_pool,
    run: Option<unsafe extern "C" fn(user: *mut c_void)>,
    user: *mut c_void,
    destroy: Option<unsafe extern "C" fn(user: *mut c_void)>,
    job_out: *mut *mut respool_job,
) -> respool_result {
    let done = Arc::new(Completion::default());
    let task = UserTask::new(run, user, destroy, Some(done.clone()));
    guard("respool_test_submit_panicking", move || {
        // SAFETY: per this function's contract.
        let (pool, out) = unsafe { (try_ref(pool, "pool")?, optional_out(job_out)) };
        let handle = pool
            .task()
            .spawn(move |_ctx| {
                // Owned by this frame: dropped (`destroy` called) while the
                // panic unwinds it.
                let _task = task;
                panic!("respool_test_submit_panicking: a panic inside a task");
            })
            .map_err(|e| submit_error(&e))?;
        if let Some(out) = out {
            out.write(to_boxed_ptr::<respool_job>(Job::new(done, handle)));
        }
        Ok(())
    })
}
