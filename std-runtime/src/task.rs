//! Describing a task: requirements, class, priority, deadline, timeout, retries.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use respool_core::admission::Urgency;
use respool_core::{Dim, Resources};

use crate::engine::Shared;
use crate::error::{SubmitError, TaskError, panic_message};
use crate::handle::{Cancel, JoinHandle, Packet, TaskContext, with_current};
use crate::job::Job;
use crate::pool::Pool;
use crate::units;
use crate::work::{
    ATTEMPT_END, AttemptEnd, CompleteOnDrop, Description, PACKED_CONTEXT, Publish, packet_job,
    with_context,
};

/// How long to wait before a retry.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use respool::Backoff;
/// let ms = Duration::from_millis;
/// assert_eq!(Backoff::Fixed(ms(50)).delay(3), ms(50));
/// // Retry 0 waits one step, retry 2 three steps.
/// assert_eq!(Backoff::Linear(ms(100)).delay(0), ms(100));
/// assert_eq!(Backoff::Linear(ms(100)).delay(2), ms(300));
/// // Doubles from `base`, never above `max`.
/// let exp = Backoff::Exponential { base: ms(10), max: ms(1000) };
/// assert_eq!((exp.delay(0), exp.delay(3), exp.delay(40)), (ms(10), ms(80), ms(1000)));
/// assert_eq!(Backoff::default(), Backoff::Linear(ms(100)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// The same delay before every retry.
    Fixed(Duration),
    /// `(attempt + 1) * step` before retry number `attempt` (0-based), as the
    /// Go workerpool does with a 100 ms step.
    Linear(Duration),
    /// `base * 2^attempt`, capped at `max`.
    Exponential {
        /// Delay before the first retry.
        base: Duration,
        /// Largest delay.
        max: Duration,
    },
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry).
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        match *self {
            Backoff::Fixed(d) => d,
            Backoff::Linear(step) => step.saturating_mul(attempt.saturating_add(1)),
            Backoff::Exponential { base, max } => {
                let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
                base.saturating_mul(factor).min(max)
            }
        }
    }
}

impl Default for Backoff {
    /// `Linear(100 ms)`, the Go workerpool's schedule.
    fn default() -> Self {
        Backoff::Linear(Duration::from_millis(100))
    }
}

/// Builds a task with requirements and scheduling attributes; obtained from
/// [`Pool::task`]. Requirements given as text are parsed when set; the first
/// parse error is returned by `spawn`/`execute`, so calls chain.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let pool = respool::Pool::builder().workers(2).memory("4GiB").build()?;
/// let h = pool
///     .task()
///     .class("thumbnail")
///     .memory("64MiB")
///     .cpu("250m")
///     .priority(5)
///     .timeout(Duration::from_secs(30))
///     .spawn(|ctx| {
///         assert!(!ctx.is_cancelled());
///         "done"
///     })?;
/// assert_eq!(h.join()?, "done");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a task builder does nothing until spawn() or execute()"]
pub struct TaskBuilder<'p> {
    shared: &'p Arc<Shared>,
    request: Resources,
    error: Option<SubmitError>,
    class: Option<Arc<str>>,
    priority: i32,
    urgency: Urgency,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    retries: u32,
    backoff: Backoff,
    size: Option<u64>,
}

impl fmt::Debug for TaskBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskBuilder")
            .field("request", &self.request)
            .field("class", &self.class)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl<'p> TaskBuilder<'p> {
    #[inline]
    pub(crate) fn new(pool: &'p Pool) -> TaskBuilder<'p> {
        TaskBuilder::on(pool.shared())
    }

    /// A builder for a task of the pool whose shared state is `shared` (for
    /// the pool's own parts that hold no `Pool`, such as a batch run).
    #[inline]
    pub(crate) fn on(shared: &'p Arc<Shared>) -> TaskBuilder<'p> {
        TaskBuilder {
            shared,
            request: Resources::NONE,
            error: None,
            class: None,
            priority: 0,
            urgency: Urgency::Normal,
            deadline: None,
            timeout: None,
            retries: 0,
            backoff: Backoff::default(),
            size: None,
        }
    }

    /// The task's class key: tasks of one class are expected to need similar
    /// resources, and respool learns what they need from earlier runs.
    #[inline]
    pub fn class(mut self, key: impl Into<Arc<str>>) -> Self {
        self.class = Some(key.into());
        self
    }

    /// Requires `amount` of `dim` (in the dimension's unit, see [`Dim`]).
    #[inline]
    pub fn require(mut self, dim: Dim, amount: u64) -> Self {
        self.set(dim, amount);
        self
    }

    /// Requires an amount of `dim` given as text (`"512MiB"`, `"500m"`).
    ///
    /// The text is parsed once per thread while it stays the same for its
    /// dimension (a per-thread cache of the last text of each dimension);
    /// a [`Resources`] built once and given to
    /// [`requirements`](TaskBuilder::requirements) costs less still.
    #[inline]
    pub fn require_str(mut self, dim: Dim, amount: &str) -> Self {
        self.set_str(dim, amount);
        self
    }

    /// [`TaskBuilder::require`] in place: the builder (a few hundred bytes)
    /// is not moved for each requirement.
    #[inline]
    fn set(&mut self, dim: Dim, amount: u64) {
        match self.request.with(dim, amount) {
            Ok(r) => self.request = r,
            Err(e) => {
                self.error.get_or_insert(SubmitError::InvalidAmount(e));
            }
        }
    }

    /// [`TaskBuilder::require_str`] in place.
    #[inline]
    fn set_str(&mut self, dim: Dim, amount: &str) {
        match units::parse_amount_cached(dim, amount) {
            Ok(v) => self.set(dim, v),
            Err(e) => {
                self.error.get_or_insert(SubmitError::InvalidRequirement(e));
            }
        }
    }

    /// Requires every set dimension of `requirements`.
    #[inline]
    pub fn requirements(mut self, requirements: Resources) -> Self {
        self.request = if self.request.is_empty() {
            requirements
        } else {
            requirements.or(&self.request)
        };
        self
    }

    /// CPU, as cores or millicores: `"2"`, `"1.5"`, `"500m"`.
    #[inline]
    pub fn cpu(mut self, amount: &str) -> Self {
        self.set_str(Dim::Cpu, amount);
        self
    }

    /// Memory: `"512MiB"`, `"1.5G"`, `"4096"` (bytes).
    #[inline]
    pub fn memory(mut self, amount: &str) -> Self {
        self.set_str(Dim::Memory, amount);
        self
    }

    /// Storage operations per second: `"2000"`, `"10k"`.
    #[inline]
    pub fn iops(mut self, amount: &str) -> Self {
        self.set_str(Dim::Iops, amount);
        self
    }

    /// Network bandwidth: `"100Mbit/s"`, `"12.5MB/s"`.
    #[inline]
    pub fn network(mut self, amount: &str) -> Self {
        self.set_str(Dim::Network, amount);
        self
    }

    /// Whole GPU devices.
    #[inline]
    pub fn gpus(mut self, devices: u64) -> Self {
        self.set(Dim::Gpu, devices);
        self
    }

    /// GPU memory: `"8GiB"`.
    #[inline]
    pub fn gpu_memory(mut self, amount: &str) -> Self {
        self.set_str(Dim::GpuMemory, amount);
        self
    }

    /// Priority: higher runs first among tasks ready to run (default 0).
    #[inline]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Critical: may use the capacity held back by the pool's critical
    /// reserve, and waits ahead of normal tasks.
    #[inline]
    pub fn critical(mut self) -> Self {
        self.urgency = Urgency::Critical;
        self
    }

    /// A deadline: earlier deadlines run first among tasks of one priority,
    /// and a task whose deadline has passed when a worker picks it up is not
    /// started ([`TaskError::DeadlineMissed`]).
    #[inline]
    pub fn deadline(mut self, at: Instant) -> Self {
        self.deadline = Some(at);
        self
    }

    /// A timeout for the whole task, counted from its start: when it runs
    /// longer, its handle resolves with [`TaskError::TimedOut`] and its
    /// cancellation flag is raised (the closure should poll it and return).
    ///
    /// [`Duration::ZERO`] has run out when the task would start: the task
    /// is not started and its handle resolves with [`TaskError::TimedOut`],
    /// every time (a timeout that fires while a worker picks the task up
    /// also means it is never started). For no timeout, do not set one. (The
    /// C API, whose timeout is a number of milliseconds, takes 0 as "no
    /// timeout".)
    #[inline]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Retries a failed attempt (an `Err` or a panic) up to `retries` more
    /// times, waiting `backoff` between attempts (used by
    /// [`TaskBuilder::spawn_retrying`]).
    #[inline]
    pub fn retries(mut self, retries: u32, backoff: Backoff) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// A size feature (input bytes, items): learned requirements of the class
    /// are predicted from it when usage grows with input size.
    #[inline]
    pub fn size_hint(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// The task's attributes, kept for each of its attempts, with its id
    /// when the pool has an observer.
    fn template(&self) -> Template {
        Template {
            request: self.request,
            class: self.class.clone(),
            priority: self.priority,
            urgency: self.urgency,
            deadline: self.deadline,
            timeout: self.timeout,
            size: self.size,
            observed: self.shared.observed(self.class.as_ref()),
        }
    }

    /// Submits `f` without a handle.
    ///
    /// # Errors
    ///
    /// A [`SubmitError`]: an invalid requirement, a requirement that can
    /// never fit, refusal by the admission policy, or shutdown.
    #[inline]
    pub fn execute<F>(self, f: F) -> Result<(), SubmitError>
    where
        F: FnOnce(&TaskContext) + Send + 'static,
    {
        if let Some(e) = self.error {
            return Err(e);
        }
        let shared = self.shared;
        let timed = crate::metrics::sample();
        if self.travels_packed(shared) {
            let job = move |packed: bool| {
                if packed {
                    Job::new(move || f(&PACKED_CONTEXT))
                } else {
                    Job::new(move || with_context(0, f))
                }
            };
            return shared.submit_packed(job, &self.request, self.urgency, timed, false, || {
                self.template().make_description(shared, None, timed)
            });
        }
        let job = Job::new(move || with_context(0, f));
        let desc = self.template().make_description(shared, None, timed);
        shared.submit_described(job, desc)
    }

    /// Whether the task declares requirements and nothing that needs a
    /// description on the worker: no class (learning, measurement), no
    /// priority or deadline (the priority lane), no timeout, no heap
    /// following (the pool's allocator with a memory requirement). Such a
    /// task, when it fits at once, travels with its reservation packed in
    /// the queue slot (see `Shared::submit_packed`); one with a handle
    /// (`spawn`) too, its worker giving the reservation back before it
    /// publishes the result (`Publish::Stashed`).
    #[inline]
    fn travels_packed(&self, shared: &Shared) -> bool {
        self.class.is_none()
            && self.priority == 0
            && self.deadline.is_none()
            && self.timeout.is_none()
            && !shared.config.measure_all
            && !(crate::alloc::is_installed() && self.request.get(Dim::Memory).is_some())
            && shared.config.observer.is_none()
    }

    /// Submits `f` and returns a handle to its result.
    ///
    /// # Errors
    ///
    /// As [`TaskBuilder::execute`].
    #[inline]
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SubmitError>
    where
        F: FnOnce(&TaskContext) -> T + Send + 'static,
        T: Send + 'static,
    {
        if let Some(e) = self.error {
            return Err(e);
        }
        let packet = Packet::<T>::new();
        let shared = self.shared;
        let timed = crate::metrics::sample();
        if self.travels_packed(shared) {
            // Packed, the task has no description to publish its result
            // through: its job leaves it to the worker (`Publish::Stashed`).
            let p = packet.clone();
            let job = move |packed: bool| {
                let publish = if packed {
                    Publish::Stashed
                } else {
                    Publish::ByWorker
                };
                if packed {
                    packet_job(p, publish, move || f(&PACKED_CONTEXT))
                } else {
                    packet_job(p, publish, move || with_context(0, f))
                }
            };
            shared.submit_packed(job, &self.request, self.urgency, timed, true, || {
                self.template()
                    .make_description(shared, Some(packet.clone()), timed)
            })?;
        } else {
            let job = packet_job(packet.clone(), Publish::ByWorker, move || {
                with_context(0, f)
            });
            let desc = self
                .template()
                .make_description(shared, Some(packet.clone()), timed);
            shared.submit_described(job, desc)?;
        }
        Ok(JoinHandle::new(packet, Some(shared.on_cancel.clone())))
    }

    /// Submits a fallible `f`, retried on `Err` or panic up to the number of
    /// [`retries`](TaskBuilder::retries) with its back-off; the handle gets
    /// the first `Ok`, or [`TaskError::Failed`] with the last error. Each
    /// attempt is admitted anew (no resources are held during a back-off).
    ///
    /// # Errors
    ///
    /// As [`TaskBuilder::execute`], for the first attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use std::time::Duration;
    /// use respool::{Backoff, Pool, TaskError};
    /// let pool = Pool::builder().workers(1).build()?;
    /// // Fails on the first two attempts, succeeds on the third.
    /// let h = pool
    ///     .task()
    ///     .retries(3, Backoff::Fixed(Duration::from_millis(1)))
    ///     .spawn_retrying(|ctx| {
    ///         if ctx.attempt() < 2 {
    ///             Err(io::Error::other("connection reset"))
    ///         } else {
    ///             Ok(ctx.attempt())
    ///         }
    ///     })?;
    /// assert_eq!(h.join()?, 2);
    /// // Out of retries: the handle gets `Failed` with the last error.
    /// let h = pool
    ///     .task()
    ///     .retries(1, Backoff::Fixed(Duration::from_millis(1)))
    ///     .spawn_retrying(|_| "x".parse::<u32>())?;
    /// let Err(TaskError::Failed { attempts, error }) = h.join() else {
    ///     panic!("expected Failed");
    /// };
    /// assert_eq!(attempts, 2);
    /// assert_eq!(error.to_string(), "invalid digit found in string");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_retrying<F, T, E>(self, f: F) -> Result<JoinHandle<T>, SubmitError>
    where
        F: FnMut(&TaskContext) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        if let Some(e) = self.error.clone() {
            return Err(e);
        }
        let packet = Packet::<T>::new();
        let shared = self.shared;
        let attempt = Retrying {
            f,
            packet: CompleteOnDrop(Some(packet.clone())),
            attempt: 0,
            max_retries: self.retries,
            backoff: self.backoff,
            pool: shared.weak_self(),
            template: self.template(),
            _error: std::marker::PhantomData,
        };
        let desc = attempt.template.make_description(
            shared,
            Some(packet.clone()),
            crate::metrics::sample(),
        );
        shared.submit_described(attempt.into_job(), desc)?;
        Ok(JoinHandle::new(packet, Some(shared.on_cancel.clone())))
    }
}

/// The scheduling attributes of a retrying task, reused for each attempt.
#[derive(Clone)]
struct Template {
    request: Resources,
    class: Option<Arc<str>>,
    priority: i32,
    urgency: Urgency,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    size: Option<u64>,
    /// The task's id and observer bookkeeping, shared by its attempts.
    observed: Option<Arc<crate::observe::Observed>>,
}

impl Template {
    /// Fills a (recycled) `Description` box from the template; a classified task's
    /// undeclared dimensions come from learning (or its fallback). `timed`:
    /// the timing sample's clock read, when the task is in the sample
    /// (classified tasks always are: they are measured).
    fn make_description(
        &self,
        shared: &Shared,
        cancel: Option<Arc<dyn Cancel>>,
        timed: Option<Instant>,
    ) -> Box<Description> {
        let mut desc = crate::work::cache::take();
        desc.held = None;
        desc.request = self.request;
        desc.observed.clone_from(&self.observed);
        desc.expected = None;
        desc.probe = false;
        if let Some(class) = &self.class {
            let est = shared.learner.estimate(class, self.size);
            desc.probe = est.probe
                && self.request.get(respool_core::Dim::Memory).is_none()
                && (crate::alloc::is_installed() || shared.config.tasks_report_memory)
                && shared
                    .sched
                    .tracker
                    .tracked()
                    .contains(respool_core::Dim::Memory)
                && !matches!(
                    shared.config.admission.policy,
                    respool_core::admission::Policy::Reject
                );
            // Declared requirements always win. What respool estimated
            // itself (learned, fallback) is clamped to what the pool can
            // ever grant: an estimate never makes a task unrunnable, at
            // worst it runs alone. Only what the user declared is refused
            // as never fitting.
            let undeclared = respool_core::DimSet::from_bits_truncate(!self.request.dims().bits());
            let own = est.reserve.restricted(undeclared);
            let bound = shared.sched.grantable(self.urgency);
            let clamped = own.clamped_to(&bound);
            if clamped != own {
                shared.learner.note_clamped(class, &own, &bound);
            }
            desc.request = self.request.or(&clamped);
            let mut expected = Resources::NONE;
            for (dim, amount) in est.expected.iter() {
                if self.request.get(dim).is_none() {
                    expected = expected.with_saturating(dim, amount);
                }
            }
            if !expected.is_empty() {
                desc.expected = Some(Box::new(expected));
            }
        }
        desc.class.clone_from(&self.class);
        desc.priority = self.priority;
        desc.urgency = self.urgency;
        desc.deadline = self.deadline;
        desc.timeout = self.timeout;
        desc.size = self.size;
        desc.submitted = timed
            .or_else(|| (self.class.is_some() || shared.config.measure_all).then(Instant::now));
        desc.cancel = cancel;
        desc
    }
}

struct Retrying<F, T: Send, E> {
    f: F,
    packet: CompleteOnDrop<T>,
    attempt: u32,
    max_retries: u32,
    backoff: Backoff,
    pool: Weak<Shared>,
    template: Template,
    _error: std::marker::PhantomData<fn() -> E>,
}

impl<F, T, E> Retrying<F, T, E>
where
    F: FnMut(&TaskContext) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    fn into_job(self) -> Job {
        Job::new(move || self.run())
    }

    /// Tells the worker how this attempt ended, when the task is observed
    /// (see `AttemptEnd`).
    fn attempt_ended(&self, end: AttemptEnd) {
        if self.template.observed.is_some() {
            ATTEMPT_END.with(|a| a.set(Some(end)));
        }
    }

    fn run(mut self) {
        let Some(packet) = self.packet.0.clone() else {
            return;
        };
        if self.attempt == 0 && !packet.header().start() {
            return;
        }
        if packet.is_cancelled() {
            packet.complete(Err(TaskError::Cancelled));
            self.packet.0 = None;
            self.attempt_ended(AttemptEnd::Cancelled);
            return;
        }
        let ctx = with_context(self.attempt, |c| TaskContext {
            deadline: self.template.deadline,
            class: self.template.class.clone(),
            attempt: self.attempt,
            gpu: c.gpu,
        });
        let f = &mut self.f;
        let outcome = with_current(Some(&*packet as &dyn Cancel), || {
            catch_unwind(AssertUnwindSafe(|| f(&ctx)))
        });
        let error: Arc<dyn std::error::Error + Send + Sync> = match outcome {
            Ok(Ok(v)) => {
                packet.write_unpublished(Ok(v));
                self.packet.0 = None;
                return;
            }
            Ok(Err(e)) => Arc::new(e),
            Err(p) => Arc::new(PanicError(panic_message(&*p))),
        };
        if self.attempt >= self.max_retries || packet.is_cancelled() {
            packet.write_unpublished(Err(TaskError::Failed {
                attempts: self.attempt + 1,
                error,
            }));
            self.packet.0 = None;
            self.attempt_ended(AttemptEnd::Failed {
                attempts: self.attempt + 1,
            });
            return;
        }
        let delay = self.backoff.delay(self.attempt);
        self.attempt += 1;
        self.attempt_ended(AttemptEnd::Retry {
            attempt: self.attempt,
            delay,
        });
        let Some(shared) = self.pool.upgrade() else {
            return; // Pool gone: dropping `self` resolves the handle.
        };
        let at = Instant::now() + delay;
        let retry = self;
        let scheduled = shared.timer.schedule(
            at,
            Box::new(move || {
                let Some(shared) = retry.pool.upgrade() else {
                    return;
                };
                let desc = retry.template.make_description(
                    &shared,
                    retry.packet.0.clone().map(|p| p as Arc<dyn Cancel>),
                    crate::metrics::sample(),
                );
                let packet = retry.packet.0.clone();
                if let Err(e) = shared.resubmit(retry.into_job(), desc) {
                    if let Some(p) = packet {
                        p.complete(Err(TaskError::Rejected(e)));
                    }
                }
            }),
        );
        // If the timer refused (shutting down), the action was dropped, and
        // with it `retry`: the handle resolves with `ShutDown`.
        let _ = scheduled;
    }
}

/// A panic of a retrying task, as an error.
#[derive(Debug)]
struct PanicError(String);

impl fmt::Display for PanicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.0)
    }
}

impl std::error::Error for PanicError {}

// `Pool::task` lives with the task builder (which the pool facade does not
// name).
impl crate::pool::Pool {
    /// A builder for a task with requirements, class, priority, deadline,
    /// timeout or retries.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = respool::Pool::builder().workers(2).memory("1GiB").build()?;
    /// let h = pool.task().memory("256MiB").cpu("500m").spawn(|_ctx| vec![0u8; 1 << 20].len())?;
    /// assert_eq!(h.join()?, 1 << 20);
    /// // Asking for more than the pool has is refused at once, with the reason.
    /// let err = pool.task().memory("2GiB").spawn(|_ctx| ()).unwrap_err();
    /// assert!(err.to_string().contains("memory"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn task(&self) -> TaskBuilder<'_> {
        TaskBuilder::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedules() {
        let ms = Duration::from_millis;
        assert_eq!(Backoff::Fixed(ms(5)).delay(7), ms(5));
        assert_eq!(Backoff::Linear(ms(100)).delay(0), ms(100));
        assert_eq!(Backoff::Linear(ms(100)).delay(2), ms(300));
        let e = Backoff::Exponential {
            base: ms(10),
            max: ms(100),
        };
        assert_eq!(
            (e.delay(0), e.delay(2), e.delay(9), e.delay(40)),
            (ms(10), ms(40), ms(100), ms(100))
        );
    }
}
