//! Scoped tasks that may borrow from the caller's stack.
//!
//! [`Pool::scope`](crate::pool::Pool::scope) counts the tasks spawned in the scope
//! and does not return before the count is back to zero, even when the scope
//! body panics, so no task can outlive the borrows it captured (the same
//! argument as `std::thread::scope` and `rayon::scope`). A panic in a scoped
//! task is caught, the other tasks still run, and the first panic is resumed
//! on the caller once all are done.
//!
//! While it waits, a scope opened on one of the pool's own workers runs
//! queued tasks itself, so nested scopes cannot starve the pool of workers.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::Duration;

use respool_core::Resources;

use crate::error::SubmitError;
use crate::job::Job;
use crate::pool::Pool;
use crate::sync::lock;

struct State {
    pending: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    owner: Thread,
}

struct Done(Arc<State>);

impl Drop for Done {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.owner.unpark();
        }
    }
}

/// A scope for tasks that borrow from the caller; see [`Pool::scope`].
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use respool::{Dim, Resources};
/// let pool = respool::Pool::builder().workers(2).memory("1GiB").build()?;
/// let words = vec!["alpha", "beta", "gamma"];
/// let letters = AtomicUsize::new(0);
/// let need = Resources::new().with(Dim::Memory, 64 << 20)?;
/// pool.scope(|s| {
///     for w in &words {
///         let letters = &letters; // borrowed, like `words`: no Arc needed
///         s.spawn(move || { letters.fetch_add(w.len(), Ordering::Relaxed); });
///     }
///     // A task with requirements: it starts once 64 MiB are free.
///     s.spawn_with(need, || { letters.fetch_add(100, Ordering::Relaxed); })
/// })?;
/// // Every task spawned in the scope has finished when `scope` returns.
/// assert_eq!(letters.into_inner(), 5 + 4 + 5 + 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Scope<'scope, 'env: 'scope> {
    pool: &'scope Pool,
    state: Arc<State>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.state.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl<'scope> Scope<'scope, '_> {
    fn wrap<F: FnOnce() + Send + 'scope>(&self, f: F) -> Job {
        self.state.pending.fetch_add(1, Ordering::AcqRel);
        // Decrements `pending` when the closure has run, or when it is
        // dropped without running (a refused task).
        let done = Done(self.state.clone());
        let run = move || {
            let done = done;
            if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
                lock(&done.0.panic).get_or_insert(p);
            }
        };
        // SAFETY: `run` borrows data living for 'scope. `scope::run` does not
        // return (so 'scope does not end) before `pending` is back to zero,
        // which happens only when `run` has executed or has been dropped
        // (the `Done` guard it owns is dropped in both cases).
        unsafe { Job::new_unchecked(run) }
    }

    /// Runs `f` on the pool; `f` may borrow anything that outlives the scope.
    /// If the pool is shutting down, `f` runs on the calling thread instead.
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'scope,
    {
        let job = self.wrap(f);
        if let Err(job) = self.pool.shared().push_plain(job) {
            job.run();
        }
    }

    /// Runs `f` on the pool once `requirements` are admitted; refused (or
    /// never fitting) requirements are returned as an error and `f` is not run.
    ///
    /// # Errors
    ///
    /// The [`SubmitError`] of the admission decision.
    pub fn spawn_with<F>(&self, requirements: Resources, f: F) -> Result<(), SubmitError>
    where
        F: FnOnce() + Send + 'scope,
    {
        let job = self.wrap(f);
        let shared = self.pool.shared();
        let mut desc = crate::work::cache::take();
        desc.request = requirements;
        desc.submitted = None;
        desc.observed = shared.observed(None);
        // Refused: the job is dropped unrun, which its `Done` guard counts.
        shared.submit_described(job, desc)
    }
}

pub(crate) fn run<'env, F, R>(pool: &Pool, f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let scope = Scope {
        pool,
        state: Arc::new(State {
            pending: AtomicUsize::new(0),
            panic: Mutex::new(None),
            owner: thread::current(),
        }),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    let shared = pool.shared();
    while scope.state.pending.load(Ordering::Acquire) > 0 {
        if !shared.help_once() {
            thread::park_timeout(Duration::from_millis(1));
        }
    }
    if let Some(p) = lock(&scope.state.panic).take() {
        resume_unwind(p);
    }
    match result {
        Ok(r) => r,
        Err(p) => resume_unwind(p),
    }
}

// `Pool::scope` lives with scopes (which the pool facade does not name).
impl crate::pool::Pool {
    /// Runs `f` with a scope in which tasks may borrow from the caller's
    /// stack; returns when every task spawned in the scope has finished.
    ///
    /// Called on one of this pool's workers, it runs queued tasks while it
    /// waits (nested on this thread), so that nested scopes cannot starve
    /// the pool of workers. Any queued task may be the one it runs: a
    /// queued task that waits for something the caller does only after the
    /// scope returns would wait forever.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = respool::Pool::builder().workers(2).build()?;
    /// let mut parts = vec![0u64; 4];
    /// pool.scope(|s| {
    ///     for (i, p) in parts.iter_mut().enumerate() {
    ///         s.spawn(move || *p = (i as u64 + 1) * 10);
    ///     }
    /// });
    /// assert_eq!(parts, [10, 20, 30, 40]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scope<'env, F, R>(&self, f: F) -> R
    where
        F: for<'scope> FnOnce(&'scope crate::scope::Scope<'scope, 'env>) -> R,
    {
        crate::scope::run(self, f)
    }
}
