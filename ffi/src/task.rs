//! `respool_task_desc`: what a task declares (requirements, class,
//! priority, deadline, timeout, criticality, size), applied to a
//! [`respool::TaskBuilder`] at each submission.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::{Duration, Instant};

use respool::{Resources, TaskBuilder};

use crate::config::{dim, parse, respool_dim, with_amount};
use crate::error::respool_result;
use crate::ffi::{
    Castable, Error, OwnershipBox, free_box, guard, guard_value, to_boxed_ptr, try_mut, try_out,
    try_str,
};

/// A task description (see `respool_pool_submit`). Submitting copies what it
/// needs, so one description may be reused and freed at any time after.
/// Not thread-safe for writing: do not change it while another thread
/// uses it; concurrent submissions that only read it are fine.
pub struct respool_task_desc {
    _private: [u8; 0],
}

/// The declared attributes.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskDesc {
    class: Option<Arc<str>>,
    request: Resources,
    priority: i32,
    critical: bool,
    deadline_ms: Option<u64>,
    timeout_ms: Option<u64>,
    size: Option<u64>,
}

impl Castable for respool_task_desc {
    type Ownership = OwnershipBox;
    type RustType = TaskDesc;
}

impl TaskDesc {
    /// Applies the description to a task builder; the deadline counts from
    /// now.
    pub(crate) fn apply<'p>(&self, mut b: TaskBuilder<'p>) -> TaskBuilder<'p> {
        b = b.requirements(self.request).priority(self.priority);
        if let Some(class) = &self.class {
            b = b.class(class.clone());
        }
        if self.critical {
            b = b.critical();
        }
        if let Some(at) = self
            .deadline_ms
            .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)))
        {
            b = b.deadline(at);
        }
        if let Some(ms) = self.timeout_ms {
            b = b.timeout(Duration::from_millis(ms));
        }
        if let Some(size) = self.size {
            b = b.size_hint(size);
        }
        b
    }
}

/// Creates an empty description: no requirement, no class, priority 0, no
/// deadline, no timeout.
///
/// Thread safety: may be called from any thread.
///
/// # Safety
///
/// `desc_out` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_new(
    desc_out: *mut *mut respool_task_desc,
) -> respool_result {
    guard("respool_task_desc_new", || {
        // SAFETY: per this function's contract.
        let out = unsafe { try_out(desc_out, "desc_out") }?;
        out.write(to_boxed_ptr::<respool_task_desc>(TaskDesc::default()));
        Ok(())
    })
}

/// Frees a description. NULL is a no-op. Tasks submitted with it are not
/// affected.
///
/// Thread safety: any thread, but no other call on `desc` may be in
/// progress, `respool_pool_submit` with it included (see
/// `respool_task_desc`).
///
/// # Safety
///
/// `desc` is NULL or a live description, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_free(desc: *mut respool_task_desc) {
    guard_value("respool_task_desc_free", (), || {
        // SAFETY: per this function's contract.
        unsafe { free_box(desc) }
    });
}

/// Runs `f` on the description behind `desc`.
///
/// # Safety
///
/// `desc` is NULL or a live description used by no other thread.
unsafe fn with_desc(
    function: &'static str,
    desc: *mut respool_task_desc,
    f: impl FnOnce(&mut TaskDesc) -> Result<(), Error>,
) -> respool_result {
    guard(function, || {
        // SAFETY: per this function's contract.
        let d = unsafe { try_mut(desc, "desc") }?;
        f(d)
    })
}

/// Sets the class key (copied; UTF-8). Tasks of one class are expected to
/// need similar resources: respool measures them and, once confident,
/// reserves what the class needs in the dimensions a task did not declare.
/// An empty string removes the class.
///
/// Thread safety: any thread, but no other call on `desc` may be in
/// progress, `respool_pool_submit` with it included (see
/// `respool_task_desc`).
///
/// # Safety
///
/// `desc` is NULL or a live description used by no other thread; `class_key`
/// is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_set_class(
    desc: *mut respool_task_desc,
    class_key: *const c_char,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_desc("respool_task_desc_set_class", desc, |d| {
            // SAFETY: per this function's contract.
            let class = try_str(class_key, "class_key")?;
            d.class = (!class.is_empty()).then(|| Arc::from(class));
            Ok(())
        })
    }
}

/// Requires `amount` of `dim`, in the dimension's unit (see `respool_dim`).
///
/// Thread safety: any thread, but no other call on `desc` may be in
/// progress, `respool_pool_submit` with it included (see
/// `respool_task_desc`).
///
/// # Safety
///
/// `desc` is NULL or a live description used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_set_requirement(
    desc: *mut respool_task_desc,
    dim: respool_dim,
    amount: u64,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_desc("respool_task_desc_set_requirement", desc, |d| {
            d.request = with_amount(&d.request, self::dim(dim)?, amount)?;
            Ok(())
        })
    }
}

/// Requires an amount of `dim` given as text (`"512MiB"`, `"1.5G"`,
/// `"500m"`, `"2"`, `"100Mbit/s"`); `RESPOOL_PARSE_ERROR` if it does not
/// parse (the description is then unchanged).
///
/// Thread safety: any thread, but no other call on `desc` may be in
/// progress, `respool_pool_submit` with it included (see
/// `respool_task_desc`).
///
/// # Safety
///
/// `desc` is NULL or a live description used by no other thread; `amount`
/// is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_set_requirement_str(
    desc: *mut respool_task_desc,
    dim: respool_dim,
    amount: *const c_char,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_desc("respool_task_desc_set_requirement_str", desc, |d| {
            let dim = self::dim(dim)?;
            // SAFETY: per this function's contract.
            let text = try_str(amount, "amount")?;
            d.request = with_amount(&d.request, dim, parse(dim, text)?)?;
            Ok(())
        })
    }
}

/// Sets the priority: higher runs first among admitted tasks (default 0).
///
/// Thread safety: any thread, but no other call on `desc` may be in
/// progress, `respool_pool_submit` with it included (see
/// `respool_task_desc`).
///
/// # Safety
///
/// `desc` is NULL or a live description used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_set_priority(
    desc: *mut respool_task_desc,
    priority: i32,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_desc("respool_task_desc_set_priority", desc, |d| {
            d.priority = priority;
            Ok(())
        })
    }
}

/// Sets a deadline `ms` milliseconds after each `respool_pool_submit` that
/// uses this description (relative, so a reused description gives each
/// task its own deadline). Earlier deadlines run first among tasks of one
/// priority; a task whose deadline has passed when a worker picks it up is
/// not started (outcome `RESPOOL_DEADLINE_MISSED`).
///
/// Thread safety: any thread, but no other call on `desc` may be in
/// progress, `respool_pool_submit` with it included (see
/// `respool_task_desc`).
///
/// # Safety
///
/// `desc` is NULL or a live description used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_set_deadline_ms(
    desc: *mut respool_task_desc,
    ms: u64,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_desc("respool_task_desc_set_deadline_ms", desc, |d| {
            d.deadline_ms = Some(ms);
            Ok(())
        })
    }
}

/// Sets a timeout counted from the task's start: when it runs longer, it
/// is asked to stop (`respool_task_is_cancelled` returns true inside its
/// callback) and its outcome is `RESPOOL_TASK_TIMED_OUT`. 0 means no
/// timeout (the default), and removes one set earlier on this description.
///
/// Thread safety: any thread, but no other call on `desc` may be in
/// progress, `respool_pool_submit` with it included (see
/// `respool_task_desc`).
///
/// # Safety
///
/// `desc` is NULL or a live description used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_set_timeout_ms(
    desc: *mut respool_task_desc,
    ms: u64,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_desc("respool_task_desc_set_timeout_ms", desc, |d| {
            d.timeout_ms = (ms > 0).then_some(ms);
            Ok(())
        })
    }
}

/// Marks the task critical (or not): it may use the pool's critical
/// reserve and waits ahead of normal tasks.
///
/// Thread safety: any thread, but no other call on `desc` may be in
/// progress, `respool_pool_submit` with it included (see
/// `respool_task_desc`).
///
/// # Safety
///
/// `desc` is NULL or a live description used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_set_critical(
    desc: *mut respool_task_desc,
    critical: bool,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_desc("respool_task_desc_set_critical", desc, |d| {
            d.critical = critical;
            Ok(())
        })
    }
}

/// Sets a size feature (input bytes, items): a class's learned
/// requirements are predicted from it when usage grows with input size.
///
/// Thread safety: any thread, but no other call on `desc` may be in
/// progress, `respool_pool_submit` with it included (see
/// `respool_task_desc`).
///
/// # Safety
///
/// `desc` is NULL or a live description used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_task_desc_set_size_hint(
    desc: *mut respool_task_desc,
    size: u64,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_desc("respool_task_desc_set_size_hint", desc, |d| {
            d.size = Some(size);
            Ok(())
        })
    }
}

/// Inside a task's `run` callback: whether the task was asked to stop (its
/// job was cancelled after it started, or it ran past its timeout).
/// Long-running callbacks should poll it and return early. False outside a
/// task, and for tasks submitted with neither a description nor a job
/// (the fast path keeps no cancellation state).
///
/// Thread safety: may be called from any thread (it reads the calling
/// thread's current task).
#[unsafe(no_mangle)]
pub extern "C" fn respool_task_is_cancelled() -> bool {
    guard_value("respool_task_is_cancelled", false, respool::is_cancelled)
}
