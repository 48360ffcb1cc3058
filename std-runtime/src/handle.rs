//! Join handles, cancellation and the task context.
//!
//! A task submitted with [`Pool::submit`](crate::pool::Pool::submit) or a
//! [`TaskBuilder`](crate::task::TaskBuilder) shares a *packet* with its
//! [`JoinHandle`]: a state word, the waiting thread and the result slot. The
//! state word makes every race explicit:
//!
//! - `STARTED`: a worker began running the task (`fetch_or` by the worker);
//! - `CANCEL`: cancellation was requested (by [`JoinHandle::cancel`], a
//!   timeout or a refusal);
//! - `CLAIMED`: somebody owns the right to write the result; exactly one
//!   party sets it (`fetch_or`, or a cancel's compare-and-swap), and only
//!   that party writes;
//! - `DONE`: the result is written (release), so the joiner may read it
//!   (acquire);
//! - `WAITING`: the joiner stored its thread handle and parks until `DONE`.
//!
//! Whoever sets `CANCEL` before `STARTED` is set has stopped the task from
//! ever starting: the worker's `fetch_or(STARTED)` returns a word with
//! `CANCEL` and it skips the task. A cancel sets `CANCEL` together with
//! `CLAIMED` (and `PREVENTED`) in one compare-and-swap, so the handle of a
//! task it stopped always resolves with `Cancelled` (never with the
//! `ShutDown` of the job the worker then drops). A cancel that arrives after
//! the start only raises the flag that the running task can poll through its
//! [`TaskContext`] or [`crate::is_cancelled`].

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::error::TaskError;

const STARTED: u32 = 1;
const CANCEL: u32 = 1 << 1;
const CLAIMED: u32 = 1 << 2;
const DONE: u32 = 1 << 3;
const WAITING: u32 = 1 << 4;
const TAKEN: u32 = 1 << 5;
/// The result is written but not yet published (the worker publishes it
/// after releasing the task's reservation).
const WRITTEN: u32 = 1 << 6;
/// A cancel prevented the start (set with `CANCEL` and `CLAIMED`).
const PREVENTED: u32 = 1 << 7;

/// What a cancellation request found.
enum CancelRequest {
    /// The task had not started and nobody had resolved it: this request
    /// claimed the result (the caller writes `Cancelled`); it never starts.
    Prevented,
    /// An earlier request prevented the start.
    AlreadyPrevented,
    /// It had started, or was resolved otherwise: only the flag is raised.
    TooLate,
}

/// The type-independent part of a packet.
pub(crate) struct Header {
    state: AtomicU32,
    /// Written once by the joiner before it sets `WAITING`; read by the
    /// completer only after it observed `WAITING`.
    waiter: std::sync::Mutex<Option<Thread>>,
}

impl Header {
    fn new() -> Header {
        Header {
            state: AtomicU32::new(0),
            waiter: std::sync::Mutex::new(None),
        }
    }

    /// Whether cancellation was requested.
    pub(crate) fn is_cancel_requested(&self) -> bool {
        self.state.load(Ordering::Acquire) & CANCEL != 0
    }

    /// Marks the task started; `false` if it was cancelled before. Calling
    /// it again (the worker marks the start, then the job does) is `true`.
    pub(crate) fn start(&self) -> bool {
        let prev = self.state.fetch_or(STARTED, Ordering::AcqRel);
        prev & STARTED != 0 || prev & CANCEL == 0
    }

    /// Requests cancellation. `CANCEL` and `CLAIMED` are set in one step
    /// when the task has not started, so that nobody (a dropped job resolving
    /// its handle with `ShutDown`) writes a result between the two.
    fn request_cancel(&self) -> CancelRequest {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur & PREVENTED != 0 {
                return CancelRequest::AlreadyPrevented;
            }
            if cur & (STARTED | CLAIMED) != 0 {
                self.raise_cancel();
                return CancelRequest::TooLate;
            }
            match self.state.compare_exchange_weak(
                cur,
                cur | CANCEL | CLAIMED | PREVENTED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return CancelRequest::Prevented,
                Err(now) => cur = now,
            }
        }
    }

    /// Raises the cancellation flag (a task that has not started never will).
    fn raise_cancel(&self) {
        self.state.fetch_or(CANCEL, Ordering::AcqRel);
    }

    /// Claims the right to write the result.
    fn claim(&self) -> bool {
        self.state.fetch_or(CLAIMED, Ordering::AcqRel) & CLAIMED == 0
    }

    /// Publishes a result written with `write_unpublished`, once.
    fn publish_written(&self) {
        let prev = self.state.fetch_and(!WRITTEN, Ordering::AcqRel);
        if prev & WRITTEN != 0 {
            self.publish();
        }
    }

    /// Publishes the result and wakes the joiner.
    fn publish(&self) {
        let prev = self.state.fetch_or(DONE, Ordering::AcqRel);
        if prev & WAITING != 0 {
            // The joiner stored its thread before setting `WAITING`; it may
            // since have moved to another thread, which stored itself too.
            if let Some(t) = crate::sync::lock(&self.waiter).as_ref() {
                t.unpark();
            }
        }
    }

    fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) & DONE != 0
    }
}

/// Shared by a task and its handle.
pub(crate) struct Packet<T> {
    header: Header,
    result: UnsafeCell<Option<Result<T, TaskError>>>,
}

// SAFETY: `result` is written only by the party that won `claim` and read
// only by the joiner after observing `DONE` (release/acquire); `T: Send` is
// required to move the value between those threads.
unsafe impl<T: Send> Sync for Packet<T> {}
// SAFETY: as above; the packet owns a `T` that may be sent.
unsafe impl<T: Send> Send for Packet<T> {}

impl<T> Packet<T> {
    pub(crate) fn new() -> Arc<Packet<T>> {
        Arc::new(Packet {
            header: Header::new(),
            result: UnsafeCell::new(None),
        })
    }

    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Completes with `result` if nobody else did; returns whether it did.
    pub(crate) fn complete(&self, result: Result<T, TaskError>) -> bool {
        if !self.header.claim() {
            return false;
        }
        self.write_claimed(result);
        true
    }

    /// Writes and publishes `result`. Only for the party that set `CLAIMED`.
    fn write_claimed(&self, result: Result<T, TaskError>) {
        // SAFETY: the caller set `CLAIMED` (by `claim` or `request_cancel`),
        // which makes it the only writer; the joiner reads only after
        // `publish` sets `DONE`.
        unsafe { *self.result.get() = Some(result) };
        self.header.publish();
    }

    /// Writes `result` if nobody else completed, but leaves publishing it to
    /// a later [`Cancel::publish`] (after the worker released the task's
    /// reservation, so that a joiner finds the resources free).
    pub(crate) fn write_unpublished(&self, result: Result<T, TaskError>) -> bool {
        if !self.header.claim() {
            return false;
        }
        // SAFETY: winning `claim` makes this the only writer; readers wait
        // for `DONE`, which `publish` sets only after this write.
        unsafe { *self.result.get() = Some(result) };
        self.header.state.fetch_or(WRITTEN, Ordering::AcqRel);
        true
    }

    /// Takes the result after `DONE`.
    fn take(&self) -> Option<Result<T, TaskError>> {
        let prev = self.header.state.fetch_or(TAKEN, Ordering::AcqRel);
        if prev & DONE == 0 || prev & TAKEN != 0 {
            return None;
        }
        // SAFETY: `DONE` was observed (acquire), so the writer finished; the
        // `TAKEN` bit makes this the only read.
        unsafe { (*self.result.get()).take() }
    }
}

/// A cancellation request that can be raised on a packet of any type.
pub(crate) trait Cancel: Send + Sync {
    /// Requests cancellation; completes the packet as cancelled if the task
    /// had not started. Returns whether the task will never start.
    fn cancel(&self) -> bool;
    /// Whether cancellation was requested.
    fn is_cancelled(&self) -> bool;
    /// Completes the packet with a refusal (admission, shutdown, timeout).
    fn fail(&self, error: TaskError) -> bool;
    /// Marks the task started (see `Header::start`); `false` if it was
    /// cancelled before.
    fn start(&self) -> bool;
    /// Publishes a result written earlier with `write_unpublished`.
    fn publish(&self);
}

impl<T: Send> Cancel for Packet<T> {
    fn cancel(&self) -> bool {
        match self.header.request_cancel() {
            CancelRequest::Prevented => {
                self.write_claimed(Err(TaskError::Cancelled));
                true
            }
            CancelRequest::AlreadyPrevented => true,
            CancelRequest::TooLate => false,
        }
    }
    fn is_cancelled(&self) -> bool {
        self.header.is_cancel_requested()
    }
    fn fail(&self, error: TaskError) -> bool {
        self.header.raise_cancel();
        self.complete(Err(error))
    }
    fn publish(&self) {
        self.header.publish_written();
    }
    fn start(&self) -> bool {
        self.header.start()
    }
}

/// A handle to a submitted task: wait for its result, poll it, or cancel it.
///
/// Dropping the handle detaches the task: it still runs, and its result is
/// dropped.
///
/// # Examples
///
/// ```
/// let pool = respool::Pool::builder().workers(2).build()?;
/// let h = pool.submit(|| 6 * 7)?;
/// assert_eq!(h.join()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping a JoinHandle detaches the task; call join() to get its result"]
pub struct JoinHandle<T> {
    packet: Arc<Packet<T>>,
    /// Called after a cancel that prevented the start (lets the pool drop the
    /// task from its wait queue at once).
    on_cancel: Option<Arc<dyn Fn() + Send + Sync>>,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.packet.header.is_done())
            .finish()
    }
}

impl<T: Send> JoinHandle<T> {
    pub(crate) fn new(
        packet: Arc<Packet<T>>,
        on_cancel: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> JoinHandle<T> {
        JoinHandle {
            packet,
            on_cancel,
            _not_sync: PhantomData,
        }
    }

    /// Waits for the task and returns its result.
    ///
    /// # Errors
    ///
    /// [`TaskError::Panicked`] if the task panicked, [`TaskError::Cancelled`]
    /// if it was cancelled before it started, [`TaskError::TimedOut`],
    /// [`TaskError::Rejected`] if admission refused it while waiting,
    /// [`TaskError::ShutDown`] if the pool was shut down before it started,
    /// [`TaskError::Failed`] if a retrying task ran out of attempts.
    pub fn join(self) -> Result<T, TaskError> {
        self.wait_until(None).unwrap_or(Err(TaskError::ShutDown))
    }

    /// Waits at most `timeout`; `Err(self)` if the task is still running.
    ///
    /// # Errors
    ///
    /// Hands the handle back when the time ran out.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// let pool = respool::Pool::builder().workers(1).build()?;
    /// let (tx, rx) = mpsc::channel::<u32>();
    /// let h = pool.submit(move || rx.recv().expect("sender alive") * 2)?;
    /// // The task waits for its input, so the time runs out and the handle comes back.
    /// let mut h = h.join_timeout(Duration::from_millis(1)).unwrap_err();
    /// tx.send(21)?;
    /// // Wait in slices (doing other work in between) until the result is there.
    /// let result = loop {
    ///     match h.join_timeout(Duration::from_millis(10)) {
    ///         Ok(result) => break result,
    ///         Err(back) => h = back,
    ///     }
    /// };
    /// assert_eq!(result?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, TaskError>, JoinHandle<T>> {
        let deadline = Instant::now().checked_add(timeout);
        match self.wait_until(Some(deadline.unwrap_or_else(far_future))) {
            Some(r) => Ok(r),
            None => Err(self),
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Option<Result<T, TaskError>> {
        let h = &self.packet.header;
        if !h.is_done() {
            // Spin briefly: short tasks finish before a park/unpark round trip.
            for _ in 0..64 {
                std::hint::spin_loop();
                if h.is_done() {
                    break;
                }
            }
        }
        if !h.is_done() {
            // Register this thread (again: a handle may be waited on from
            // another thread after a timed wait), then announce the waiter.
            *crate::sync::lock(&h.waiter) = Some(thread::current());
            h.state.fetch_or(WAITING, Ordering::AcqRel);
            while !h.is_done() {
                match deadline {
                    None => thread::park(),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            return None;
                        }
                        thread::park_timeout(d - now);
                    }
                }
            }
        }
        self.packet.take()
    }

    /// The result if the task has finished, without waiting. Returns `None`
    /// while it runs, and after the result was taken once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = respool::Pool::builder().workers(1).build()?;
    /// let (tx, rx) = mpsc::channel();
    /// let mut h = pool.submit(move || rx.recv().expect("sender alive") + 1)?;
    /// assert_eq!(h.try_join(), None); // still waiting for its input
    /// tx.send(41)?;
    /// pool.shutdown(); // returns once every accepted task has run
    /// assert!(h.is_finished());
    /// assert_eq!(h.try_join(), Some(Ok(42)));
    /// assert_eq!(h.try_join(), None); // the result was taken
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_join(&mut self) -> Option<Result<T, TaskError>> {
        if self.packet.header.is_done() {
            self.packet.take()
        } else {
            None
        }
    }

    /// Whether the task has finished (successfully or not).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.packet.header.is_done()
    }

    /// A handle that can cancel the task from any thread (it is `Send`,
    /// `Sync` and `Clone`), also while another thread waits in `join`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use respool::TaskError;
    /// let pool = respool::Pool::builder().workers(1).build()?;
    /// // Keep the only worker busy until `release` is dropped.
    /// let (tx, started) = mpsc::channel();
    /// let (release, wait) = mpsc::channel::<()>();
    /// let busy = pool.submit(move || {
    ///     tx.send(()).expect("receiver alive");
    ///     let _ = wait.recv();
    /// })?;
    /// started.recv()?;
    /// // Queued behind it, this task cannot start yet.
    /// let queued = pool.submit(|| 42)?;
    /// let canceller = queued.canceller();
    /// // Another thread cancels it while this one waits in `join`.
    /// let other = std::thread::spawn(move || canceller.cancel());
    /// assert_eq!(queued.join(), Err(TaskError::Cancelled));
    /// assert!(other.join().expect("no panic"), "the cancel prevented the start");
    /// drop(release);
    /// busy.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn canceller(&self) -> Canceller
    where
        T: 'static,
    {
        Canceller {
            packet: self.packet.clone(),
            on_cancel: self.on_cancel.clone(),
        }
    }

    /// Requests cancellation. A task that has not started never starts (its
    /// result is [`TaskError::Cancelled`] and this returns `true`); a running
    /// task sees the request through [`TaskContext::is_cancelled`] and this
    /// returns `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use respool::TaskError;
    /// let pool = respool::Pool::builder().workers(1).build()?;
    /// let (tx, started) = mpsc::channel();
    /// // Runs on the only worker until it is asked to stop.
    /// let running = pool.task().spawn(move |ctx| {
    ///     tx.send(()).expect("receiver alive");
    ///     while !ctx.is_cancelled() {
    ///         std::thread::sleep(Duration::from_millis(1));
    ///     }
    ///     "stopped"
    /// })?;
    /// started.recv()?;
    /// // Queued behind it, this task has not started: cancelling stops it for good.
    /// let queued = pool.submit(|| "never runs")?;
    /// assert!(queued.cancel());
    /// assert_eq!(queued.join(), Err(TaskError::Cancelled));
    /// // The running task only sees the request (`false`: it had started),
    /// // and returns when it notices.
    /// assert!(!running.cancel());
    /// assert_eq!(running.join()?, "stopped");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) -> bool {
        let prevented = self.packet.cancel();
        if prevented {
            if let Some(f) = &self.on_cancel {
                f();
            }
        }
        prevented
    }
}

/// Cancels a task from any thread; see [`JoinHandle::canceller`].
#[derive(Clone)]
pub struct Canceller {
    packet: Arc<dyn Cancel>,
    on_cancel: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl fmt::Debug for Canceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canceller")
            .field("cancelled", &self.packet.is_cancelled())
            .finish()
    }
}

impl Canceller {
    /// A canceller of the task behind `packet`, without the handle's
    /// cancel hook (for the observer's `Started` event: a started task is
    /// never prevented, so the hook would never run).
    pub(crate) fn of(packet: Arc<dyn Cancel>) -> Canceller {
        Canceller {
            packet,
            on_cancel: None,
        }
    }

    /// As [`JoinHandle::cancel`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use respool::TaskError;
    /// let pool = respool::Pool::builder().workers(1).build()?;
    /// // Keep the only worker busy until `release` is dropped.
    /// let (tx, started) = mpsc::channel();
    /// let (release, wait) = mpsc::channel::<()>();
    /// let busy = pool.submit(move || {
    ///     tx.send(()).expect("receiver alive");
    ///     let _ = wait.recv();
    /// })?;
    /// started.recv()?;
    /// let queued = pool.submit(|| ())?;
    /// let a = queued.canceller();
    /// let b = a.clone();
    /// assert!(!b.is_cancelled());
    /// assert!(a.cancel()); // it had not started: it never will
    /// assert!(b.is_cancelled()); // clones share the request
    /// assert!(b.cancel()); // still `true`: the start stays prevented
    /// assert_eq!(queued.join(), Err(TaskError::Cancelled));
    /// drop(release);
    /// busy.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) -> bool {
        let prevented = self.packet.cancel();
        if prevented {
            if let Some(f) = &self.on_cancel {
                f();
            }
        }
        prevented
    }

    /// Whether cancellation was requested.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.packet.is_cancelled()
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(60 * 60 * 24 * 365)
}

thread_local! {
    /// The cancellation state of the task running on this thread, if any.
    static CURRENT: Cell<Option<*const dyn Cancel>> = const { Cell::new(None) };
}

/// Sets the current task for the duration of a closure (restores the
/// previous one afterwards, so nested inline tasks work).
pub(crate) fn with_current<R>(cancel: Option<&dyn Cancel>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<*const dyn Cancel>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let ptr = cancel.map(|c| {
        // SAFETY: only the lifetime is erased. The pointer is read by
        // `is_cancelled` solely while `f` runs, and `Restore` puts the previous
        // value back before `with_current` returns, so it never outlives `c`.
        unsafe { std::mem::transmute::<*const (dyn Cancel + '_), *const dyn Cancel>(c) }
    });
    let _restore = Restore(CURRENT.with(|c| c.replace(ptr)));
    f()
}

/// Whether cancellation was requested for the task running on this thread.
/// `false` outside tasks and for tasks submitted with `execute`.
#[must_use]
pub fn is_cancelled() -> bool {
    CURRENT.with(|c| match c.get() {
        // SAFETY: set by `with_current` to a packet that stays alive (the job
        // holds an `Arc` to it) while the task runs on this thread.
        Some(p) => unsafe { (*p).is_cancelled() },
        None => false,
    })
}

/// What a running task can ask about itself.
#[derive(Debug)]
pub struct TaskContext {
    pub(crate) deadline: Option<Instant>,
    pub(crate) class: Option<Arc<str>>,
    pub(crate) attempt: u32,
    pub(crate) gpu: Option<u32>,
}

impl TaskContext {
    /// Whether cancellation (or a timeout) was requested. Long-running tasks
    /// should poll this and return early.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        is_cancelled()
    }

    /// The task's deadline, if it has one.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The task's class key, if it has one.
    #[must_use]
    pub fn class(&self) -> Option<&str> {
        self.class.as_deref()
    }

    /// The GPU device this task was placed on (its index as NVML and
    /// `CUDA_VISIBLE_DEVICES` count), when the pool has GPU domains and the
    /// task asked for a GPU.
    #[must_use]
    pub fn gpu(&self) -> Option<u32> {
        self.gpu
    }

    /// Which attempt this is (0 for the first run, 1 for the first retry...).
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Reports usage of a dimension nothing measures (network, GPU,
    /// user-defined); the largest value reported during the run is recorded
    /// for the task's class and learned like measured usage.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use respool::{Dim, Pool};
    /// use respool::measure::TaskReport;
    /// let (tx, rx) = mpsc::channel();
    /// let pool = Pool::builder()
    ///     .workers(1)
    ///     .memory("1GiB")
    ///     .on_task_end(move |r: &TaskReport| drop(tx.send(r.usage.reported)))
    ///     .build()?;
    /// let h = pool.task().class("upload").spawn(|ctx| {
    ///     // Bandwidth the task measured itself, in bytes per second.
    ///     ctx.report_usage(Dim::Network, 8_000_000);
    ///     ctx.report_usage(Dim::Network, 12_500_000);
    ///     ctx.report_usage(Dim::Network, 10_000_000);
    /// })?;
    /// h.join()?;
    /// // The largest value reported during the run is the task's usage...
    /// assert_eq!(rx.recv()?.get(Dim::Network), Some(12_500_000));
    /// pool.shutdown(); // every run is recorded after shutdown
    /// // ...and what its class learns from.
    /// let class = &pool.profiles().classes[0];
    /// assert_eq!(class.class, "upload");
    /// assert_eq!(class.samples[0].usage().get(Dim::Network), Some(12_500_000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn report_usage(&self, dim: respool_core::Dim, amount: u64) {
        crate::measure::report_usage(dim, amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_then_join() {
        let p = Packet::<u32>::new();
        let h = JoinHandle::new(p.clone(), None);
        assert!(p.header().start());
        assert!(p.complete(Ok(5)));
        assert!(!p.complete(Ok(6)), "only one completion");
        assert_eq!(h.join(), Ok(5));
    }

    #[test]
    fn cancel_before_start_prevents_the_run() {
        let p = Packet::<u32>::new();
        let h = JoinHandle::new(p.clone(), None);
        assert!(h.cancel());
        assert!(!p.header().start(), "a cancelled task never starts");
        assert_eq!(h.join(), Err(TaskError::Cancelled));
    }

    #[test]
    fn cancel_after_start_only_raises_the_flag() {
        let p = Packet::<u32>::new();
        let h = JoinHandle::new(p.clone(), None);
        assert!(p.header().start());
        assert!(!h.cancel());
        assert!(p.header().is_cancel_requested());
        with_current(Some(&*p as &dyn Cancel), || assert!(is_cancelled()));
        assert!(!is_cancelled(), "restored after the task");
        p.complete(Ok(1));
        assert_eq!(h.join(), Ok(1));
    }

    #[test]
    fn join_waits_across_threads_and_try_join_polls() {
        for _ in 0..200 {
            let p = Packet::<String>::new();
            let mut h = JoinHandle::new(p.clone(), None);
            assert_eq!(h.try_join(), None);
            let t = std::thread::spawn(move || {
                p.header().start();
                p.complete(Ok("done".to_string()));
            });
            assert_eq!(h.join().as_deref(), Ok("done"));
            t.join().unwrap();
        }
    }

    #[test]
    fn join_timeout_hands_the_handle_back() {
        let p = Packet::<u8>::new();
        let h = JoinHandle::new(p.clone(), None);
        let h = h.join_timeout(Duration::from_millis(1)).unwrap_err();
        p.complete(Ok(3));
        assert_eq!(h.join_timeout(Duration::from_secs(5)).ok(), Some(Ok(3)));
    }
}
