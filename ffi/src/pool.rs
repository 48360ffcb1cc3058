//! `respool_pool`: building, submitting, statistics, profiles, shutdown.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use respool::store::FileStore;
use respool::{Pool, Resources};

use crate::config::{RESPOOL_DIM_COUNT, respool_config, respool_dim};
use crate::error::{build_error, respool_result, store_error, submit_error};
use crate::ffi::{
    Castable, Error, OwnershipBox, free_box, guard, guard_value, non_null, optional_out,
    to_boxed_ptr, try_out, try_path, try_ref,
};
use crate::job::{Completion, Job, UserTask, respool_job};
use crate::task::respool_task_desc;

/// A resource-aware task pool.
///
/// Thread safety: every `respool_pool_*` function except `respool_pool_free`
/// may be called from any thread, also at the same time; `respool_pool_free`
/// must not overlap any other call on the pool.
pub struct respool_pool {
    _private: [u8; 0],
}

impl Castable for respool_pool {
    type Ownership = OwnershipBox;
    type RustType = Pool;
}

// What the header promises about thread safety, checked by the compiler.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<Job>();
};

/// Counters, capacity and latencies of a pool (`respool_pool_stats`).
/// Each figure is read atomically; the set is not one atomic snapshot.
/// Per-dimension arrays are indexed by `respool_dim`. The layout is part of
/// the ABI: it changes only with the library's major version.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct respool_stats {
    /// Worker threads.
    pub workers: usize,
    /// Tasks accepted for submission (all paths).
    pub submitted: u64,
    /// Tasks that ran to completion.
    pub completed: u64,
    /// Tasks in which a Rust panic was caught (a C callback cannot panic;
    /// see `RESPOOL_PANICKED`).
    pub panicked: u64,
    /// Tasks whose timeout fired.
    pub timed_out: u64,
    /// Tasks refused at submit (`RESPOOL_NEVER_FITS`, `RESPOOL_BUSY`,
    /// `RESPOOL_QUEUE_FULL`).
    pub rejected: u64,
    /// Admission: requests admitted at once.
    pub accepted: u64,
    /// Admission: requests told to wait for resources.
    pub deferred: u64,
    /// Admission: waiting requests admitted later.
    pub admitted_after_wait: u64,
    /// Admission: waiting requests refused later.
    pub rejected_after_wait: u64,
    /// Admitted tasks waiting for a worker.
    pub queued: usize,
    /// Tasks waiting for resources.
    pub waiting: usize,
    /// Bit `1 << dim` is set for each tracked dimension (one with a
    /// capacity); the arrays below are 0 for the others.
    pub tracked: u32,
    /// Capacity per dimension.
    pub capacity: [u64; RESPOOL_DIM_COUNT],
    /// Capacity minus headroom and usage from outside the pool.
    pub effective_capacity: [u64; RESPOOL_DIM_COUNT],
    /// Reserved by admitted tasks, per dimension.
    pub reserved: [u64; RESPOOL_DIM_COUNT],
    /// Task classes learned.
    pub learning_classes: usize,
    /// Predictions compared with what tasks then used (all classes and
    /// dimensions).
    pub learning_predictions: u64,
    /// Of those, within 10% of the measured value.
    pub learning_within_10pct: u64,
    /// Measured tasks in the latency figures.
    pub latency_count: u64,
    /// Submit-to-finish latency of measured tasks, median, nanoseconds.
    pub latency_p50_ns: u64,
    /// Submit-to-finish latency, 99th percentile, nanoseconds.
    pub latency_p99_ns: u64,
    /// Submit-to-start wait of measured tasks, median, nanoseconds.
    pub wait_p50_ns: u64,
    /// Submit-to-start wait, 99th percentile, nanoseconds.
    pub wait_p99_ns: u64,
}

fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn per_dim(r: &Resources) -> [u64; RESPOOL_DIM_COUNT] {
    let mut a = [0; RESPOOL_DIM_COUNT];
    for (dim, amount) in r.iter() {
        if let Some(slot) = a.get_mut(dim.index()) {
            *slot = amount;
        }
    }
    a
}

/// Builds a pool from `config` and starts its workers. The configuration
/// is copied: it may be freed or changed afterwards.
///
/// Errors: `RESPOOL_INVALID_ARGUMENT` (a headroom or critical reserve that
/// does not fit the capacity), `RESPOOL_SPAWN_FAILED`, `RESPOOL_STORE_*`
/// (the profile file cannot be loaded). Sizes were checked when they were
/// set (see "Limits" above): a configuration is never reported as
/// `RESPOOL_PANICKED`.
///
/// Thread safety: may be called from any thread.
///
/// # Safety
///
/// `config` is NULL or a live configuration that no other thread changes
/// meanwhile; `pool_out` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_pool_new(
    config: *const respool_config,
    pool_out: *mut *mut respool_pool,
) -> respool_result {
    guard("respool_pool_new", || {
        // SAFETY: per this function's contract.
        let (config, out) = unsafe { (try_ref(config, "config")?, try_out(pool_out, "pool_out")?) };
        let pool = config.builder().build().map_err(|e| build_error(&e))?;
        out.write(to_boxed_ptr::<respool_pool>(pool));
        Ok(())
    })
}

/// Shuts the pool down gracefully (as `respool_pool_shutdown`: every
/// accepted task runs; blocks until they have and every thread the pool
/// started has exited) and frees it. NULL is a no-op. Jobs stay valid and
/// must still be freed. Called from inside one of the pool's own tasks, it
/// cannot wait for itself: it stops accepting work and lets the workers
/// finish the accepted tasks and exit on their own.
///
/// Thread safety: any thread, but no other call on `pool` may be in
/// progress (see `respool_pool`).
///
/// # Safety
///
/// `pool` is NULL or a live pool, not used afterwards, and no other call on
/// it is in progress.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_pool_free(pool: *mut respool_pool) {
    guard_value("respool_pool_free", (), || {
        // SAFETY: per this function's contract.
        unsafe { free_box(pool) }
    });
}

/// Submits a task: `run(user)` is called once on a worker when the task is
/// admitted (it fits the pool's free capacity) and a worker is free.
///
/// `desc` may be NULL: no requirements, no class (the fast path, with no
/// admission and no measurement). The description is copied.
///
/// `destroy` may be NULL. If not, `destroy(user)` is called exactly once
/// for every call of this function, whatever happens: after `run` returned,
/// or — when `run` is never called — when the task is refused here (also
/// for a NULL argument), cancelled, refused while waiting, past its
/// deadline, or dropped by `respool_pool_shutdown_now`. It may run on any
/// thread, possibly while respool holds internal locks: it must not call
/// respool functions. `run` may (it runs on a worker, holding nothing).
/// Neither may unwind (throw a C++ exception) or `longjmp` out.
///
/// `job_out` may be NULL (the task is detached: nobody waits for it).
/// Otherwise it receives a job handle on success, to wait for, poll, cancel
/// and free.
///
/// Errors (nothing ran, `destroy` was called): `RESPOOL_NEVER_FITS`,
/// `RESPOOL_BUSY`, `RESPOOL_QUEUE_FULL`, `RESPOOL_DEADLINE_EXPIRED` (after
/// blocking, with `RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE`; also when the
/// task's own deadline passes first), `RESPOOL_SHUT_DOWN` (also when
/// `respool_pool_shutdown_now` ends a blocked wait), `RESPOOL_NULL_ARGUMENT`.
/// After blocking, `destroy` runs on this thread before the return.
///
/// Thread safety: any thread; see `respool_pool`. `desc` may be shared by
/// concurrent submissions.
///
/// # Safety
///
/// `pool` is NULL or a live pool; `desc` is NULL or a live description
/// that no thread changes meanwhile; `run` and `destroy` are NULL or
/// functions of this signature that accept `user`; `job_out` is NULL or
/// valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_pool_submit(
    pool: *mut respool_pool,
    desc: *const respool_task_desc,
    run: Option<unsafe extern "C" fn(user: *mut c_void)>,
    user: *mut c_void,
    destroy: Option<unsafe extern "C" fn(user: *mut c_void)>,
    job_out: *mut *mut respool_job,
) -> respool_result {
    let done = (!job_out.is_null()).then(|| Arc::new(Completion::default()));
    // Owned from here on: every path below either runs it or drops it, and
    // dropping it calls `destroy`.
    let task = UserTask::new(run, user, destroy, done.clone());
    guard("respool_pool_submit", move || {
        // SAFETY: per this function's contract.
        let pool = unsafe { try_ref(pool, "pool") }?;
        non_null(run.map_or(std::ptr::null(), |f| f as *const ()), "run")?;
        let desc = if desc.is_null() {
            None
        } else {
            // SAFETY: per this function's contract (non-NULL here).
            Some(unsafe { try_ref(desc, "desc") }?)
        };
        // SAFETY: per this function's contract.
        let out = unsafe { optional_out(job_out) };
        let handle = match desc {
            None if done.is_none() => {
                pool.execute(move || task.run())
                    .map_err(|e| submit_error(&e))?;
                return Ok(());
            }
            None => pool.submit(move || task.run()),
            Some(d) => d.apply(pool.task()).spawn(move |_ctx| task.run()),
        }
        .map_err(|e| submit_error(&e))?;
        if let (Some(out), Some(done)) = (out, done) {
            out.write(to_boxed_ptr::<respool_job>(Job::new(done, handle)));
        }
        Ok(())
    })
}

/// Stops accepting tasks (later submissions fail with `RESPOOL_SHUT_DOWN`),
/// runs every accepted task (queued or waiting for resources), and waits
/// until they have run and every thread the pool started has exited. Saves
/// learned profiles to the configured profile file, if any. Idempotent.
/// The pool must still be freed.
///
/// Thread safety: any thread; see `respool_pool`.
///
/// # Safety
///
/// `pool` is NULL or a live pool.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_pool_shutdown(pool: *mut respool_pool) -> respool_result {
    guard("respool_pool_shutdown", || {
        // SAFETY: per this function's contract.
        unsafe { try_ref(pool, "pool") }?.shutdown();
        Ok(())
    })
}

/// Stops accepting tasks, lets running tasks finish, waits for the
/// workers to exit, and drops every task that had not started: their
/// `destroy` is called (on this thread) and their jobs' outcome is
/// `RESPOOL_SHUT_DOWN`. `unstarted_out` (may be NULL) receives how many
/// were dropped. A submitter blocked until admission
/// (`RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE`) is woken instead: its
/// `respool_pool_submit` returns `RESPOOL_SHUT_DOWN` (its task is not
/// counted here). The pool must still be freed.
///
/// Thread safety: any thread; see `respool_pool`.
///
/// # Safety
///
/// `pool` is NULL or a live pool; `unstarted_out` is NULL or valid for
/// writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_pool_shutdown_now(
    pool: *mut respool_pool,
    unstarted_out: *mut usize,
) -> respool_result {
    guard("respool_pool_shutdown_now", || {
        // SAFETY: per this function's contract.
        let (pool, out) = unsafe { (try_ref(pool, "pool")?, optional_out(unstarted_out)) };
        let unstarted = pool.shutdown_now();
        let n = unstarted.len();
        drop(unstarted);
        if let Some(out) = out {
            out.write(n);
        }
        Ok(())
    })
}

/// Writes a snapshot of the pool's counters, capacity and latencies.
///
/// Thread safety: any thread; see `respool_pool`.
///
/// # Safety
///
/// `pool` is NULL or a live pool; `stats_out` is NULL or valid for writing
/// a `respool_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_pool_stats(
    pool: *const respool_pool,
    stats_out: *mut respool_stats,
) -> respool_result {
    guard("respool_pool_stats", || {
        // SAFETY: per this function's contract.
        let (pool, out) = unsafe { (try_ref(pool, "pool")?, try_out(stats_out, "stats_out")?) };
        let s = pool.snapshot();
        out.write(respool_stats {
            workers: s.workers,
            submitted: s.submitted,
            completed: s.completed,
            panicked: s.panicked,
            timed_out: s.timed_out,
            rejected: s.rejected,
            accepted: s.admission.accepted,
            deferred: s.admission.deferred,
            admitted_after_wait: s.admission.admitted_after_wait,
            rejected_after_wait: s.admission.rejected_after_wait,
            queued: s.queued,
            waiting: s.waiting,
            tracked: u32::from(s.capacity.dims().bits()),
            capacity: per_dim(&s.capacity),
            effective_capacity: per_dim(&s.effective_capacity),
            reserved: per_dim(&s.reserved),
            learning_classes: s.classes.len(),
            learning_predictions: s.learning.predictions,
            learning_within_10pct: s.learning.within_10pct,
            latency_count: s.latency.count,
            latency_p50_ns: ns(s.latency.p50),
            latency_p99_ns: ns(s.latency.p99),
            wait_p50_ns: ns(s.wait.p50),
            wait_p99_ns: ns(s.wait.p99),
        });
        Ok(())
    })
}

/// Changes the capacity of one tracked dimension at run time (for example
/// when a container limit changes). Admitted tasks keep their
/// reservations; waiting tasks that can no longer ever fit are refused
/// (outcome `RESPOOL_REJECTED_WHILE_WAITING`). `RESPOOL_INVALID_ARGUMENT`
/// for a dimension the pool was built without.
///
/// Thread safety: any thread; see `respool_pool`.
///
/// # Safety
///
/// `pool` is NULL or a live pool.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_pool_set_capacity(
    pool: *mut respool_pool,
    dim: respool_dim,
    amount: u64,
) -> respool_result {
    guard("respool_pool_set_capacity", || {
        // SAFETY: per this function's contract.
        let pool = unsafe { try_ref(pool, "pool") }?;
        let capacity =
            crate::config::with_amount(&Resources::NONE, crate::config::dim(dim)?, amount)?;
        pool.set_capacity(&capacity)
            .map_err(|e| Error::invalid(e.to_string()))
    })
}

/// Writes the learned profiles (per class: runs and recent measured
/// samples) to the JSON file at `path`, atomically (a temporary file in the
/// same directory, then a rename). `RESPOOL_STORE_IO` if it cannot be
/// written; the previous file is then intact.
///
/// Thread safety: any thread; see `respool_pool`.
///
/// # Safety
///
/// `pool` is NULL or a live pool; `path` is NULL or a NUL-terminated
/// string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_pool_export_profiles(
    pool: *const respool_pool,
    path: *const c_char,
) -> respool_result {
    guard("respool_pool_export_profiles", || {
        // SAFETY: per this function's contract.
        let (pool, path) = unsafe { (try_ref(pool, "pool")?, try_path(path, "path")?) };
        pool.export_profiles(&FileStore::new(path))
            .map_err(|e| store_error(&e))
    })
}

/// Loads profiles from the JSON file at `path`, replacing those of the
/// classes it contains (other classes are kept). `classes_out` (may be
/// NULL) receives how many classes were loaded; a missing file loads 0.
/// `RESPOOL_STORE_IO`, `RESPOOL_STORE_CORRUPT` or `RESPOOL_STORE_VERSION`
/// (nothing changed) if it cannot be read.
///
/// Thread safety: any thread; see `respool_pool`.
///
/// # Safety
///
/// `pool` is NULL or a live pool; `path` is NULL or a NUL-terminated
/// string; `classes_out` is NULL or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_pool_import_profiles(
    pool: *mut respool_pool,
    path: *const c_char,
    classes_out: *mut usize,
) -> respool_result {
    guard("respool_pool_import_profiles", || {
        // SAFETY: per this function's contract.
        let (pool, path, out) = unsafe {
            (
                try_ref(pool, "pool")?,
                try_path(path, "path")?,
                optional_out(classes_out),
            )
        };
        let n = pool
            .import_profiles(&FileStore::new(path))
            .map_err(|e| store_error(&e))?;
        if let Some(out) = out {
            out.write(n);
        }
        Ok(())
    })
}
