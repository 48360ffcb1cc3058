//! Jobs, their results and errors, and what a processor can ask while it runs.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use respool_core::Resources;

use super::control::{CancelReason, Control};
use crate::error::SubmitError;

/// One unit of work of a batch (Go: `Job[T]`).
#[derive(Clone, Debug)]
pub struct Job<T> {
    /// The job's name, copied into its [`JobResult`].
    pub id: String,
    /// The input handed to the processor.
    pub data: T,
    /// Higher runs first under [`PriorityBased`](super::PriorityBased) (and
    /// decides [`Adaptive`](super::Adaptive)); ignored by the other built-in
    /// strategies.
    pub priority: i32,
    /// When the job was made.
    pub created: Instant,
    /// What each attempt needs (declared), on top of the batch's
    /// [`BatchConfig::requirements`](super::BatchConfig::requirements):
    /// with any requirement or a class, the job goes through the pool's
    /// admission (see [`Job::with_requirements`]).
    pub requirements: Resources,
    /// Its class key: respool measures each attempt and learns what the
    /// class needs (default: the batch's
    /// [`BatchConfig::class`](super::BatchConfig::class)).
    pub class: Option<Arc<str>>,
    /// A size feature (input bytes, items) that the class's learned needs
    /// grow with.
    pub size_hint: Option<u64>,
}

impl<T> Job<T> {
    /// A job of priority 0, created now, with no requirements.
    pub fn new(id: impl Into<String>, data: T) -> Job<T> {
        Job {
            id: id.into(),
            data,
            priority: 0,
            created: Instant::now(),
            requirements: Resources::NONE,
            class: None,
            size_hint: None,
        }
    }

    /// The same job with `priority`.
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Job<T> {
        self.priority = priority;
        self
    }

    /// The same job with declared requirements (they win over the batch's
    /// in each dimension they set).
    ///
    /// A job with requirements or a class (its own or the batch's) is
    /// resource-aware: each attempt is submitted to the pool as a task with
    /// those requirements, class and size hint, so it starts only when the
    /// pool can afford it ([`Pool::task`](crate::pool::Pool::task)), is measured,
    /// and teaches its class; the lane that holds the job waits for it
    /// without idling its worker (the worker runs queued pool tasks
    /// meanwhile). A job without either runs on its lane, exactly as
    /// without this API.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::batch::{Batch, Job};
    /// use respool::{Dim, Pool, Resources};
    /// let pool = Pool::builder().workers(2).memory("1GiB").build()?;
    /// let mem = |mib: u64| Resources::new().with(Dim::Memory, mib << 20);
    /// let batch = Batch::new(&pool)
    ///     .with_processor(|_ctx, job: &Job<usize>| Ok::<_, String>(vec![0u8; job.data].len()));
    /// batch.add_jobs((1..=4).map(|i| {
    ///     Job::new(format!("decode-{i}"), i << 20)
    ///         .with_requirements(mem(600).unwrap()) // one at a time on 1 GiB
    ///         .with_class("decode")
    ///         .with_size_hint(i as u64)
    /// }));
    /// let report = batch.run()?;
    /// assert_eq!(report.metrics.processed, 4);
    /// // Requirements beyond the pool are a job error, not a run error.
    /// batch.add_jobs([Job::new("huge", 1).with_requirements(mem(2048)?)]);
    /// let report = batch.run()?;
    /// assert!(report.results[0].error.as_ref().unwrap().to_string().contains("never"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_requirements(mut self, requirements: Resources) -> Job<T> {
        self.requirements = requirements;
        self
    }

    /// The same job with a class key (see [`Job::with_requirements`]).
    #[must_use]
    pub fn with_class(mut self, class: impl Into<Arc<str>>) -> Job<T> {
        self.class = Some(class.into());
        self
    }

    /// The same job with a size hint (see [`Job::with_requirements`]).
    #[must_use]
    pub fn with_size_hint(mut self, size: u64) -> Job<T> {
        self.size_hint = Some(size);
        self
    }
}

/// Why a job produced no value. A processor's error is never a run error:
/// it lands here, in [`JobResult::error`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum JobError {
    /// The processor returned an error on the last attempt.
    Failed(Arc<dyn Error + Send + Sync>),
    /// The processor panicked on the last attempt (the panic message).
    Panicked(String),
    /// The last attempt ran past [`BatchConfig::attempt_timeout`](super::BatchConfig::attempt_timeout)
    /// (its value, if it returned one, was discarded).
    TimedOut(Duration),
    /// The job had started when the run was cancelled, and its attempt did
    /// not return a value (or it was waiting to be retried). The attempt's
    /// own error, typically "I saw the cancellation", is not kept; a panic
    /// is still reported as [`Panicked`](JobError::Panicked).
    Cancelled(CancelReason),
    /// The job never started.
    NotStarted(CancelReason),
    /// The pool refused the job's last attempt (a resource-aware job, see
    /// [`Job::with_requirements`]): it can never fit
    /// ([`SubmitError::NeverFits`], not retried), or the policy refused it
    /// (busy, full queue, deadline: retried like a failure).
    Refused(SubmitError),
}

impl JobError {
    /// Whether the job ended because of a cancellation (not a failure of its own).
    #[must_use]
    pub fn is_cancellation(&self) -> bool {
        matches!(self, JobError::Cancelled(_) | JobError::NotStarted(_))
    }
}

impl PartialEq for JobError {
    /// Errors compare by variant and content; processor errors by message.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (JobError::Failed(a), JobError::Failed(b)) => a.to_string() == b.to_string(),
            (JobError::Panicked(a), JobError::Panicked(b)) => a == b,
            (JobError::TimedOut(a), JobError::TimedOut(b)) => a == b,
            (JobError::Cancelled(a), JobError::Cancelled(b))
            | (JobError::NotStarted(a), JobError::NotStarted(b)) => a == b,
            (JobError::Refused(a), JobError::Refused(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Failed(e) => write!(f, "job failed: {e}"),
            JobError::Panicked(m) => write!(f, "job panicked: {m}"),
            JobError::TimedOut(d) => write!(f, "job attempt ran past its timeout of {d:?}"),
            JobError::Cancelled(r) => write!(f, "job cancelled while running: {r}"),
            JobError::NotStarted(r) => write!(f, "job never started: {r}"),
            JobError::Refused(e) => write!(f, "job refused by the pool: {e}"),
        }
    }
}

impl Error for JobError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            JobError::Failed(e) => Some(&**e),
            _ => None,
        }
    }
}

/// What happened to a job, derived from a [`JobResult`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// It returned a value.
    Succeeded,
    /// It failed on its own (error, panic or attempt timeout) on every attempt.
    Failed,
    /// It was cut short or never run because of a cancellation.
    Cancelled,
}

/// The outcome of one job (Go: `Result[R]`).
#[derive(Debug)]
pub struct JobResult<R> {
    /// The job's [`id`](Job::id).
    pub job_id: String,
    /// The job's position in the list the run started with.
    pub index: usize,
    /// The value of the successful attempt.
    pub data: Option<R>,
    /// Why there is no value.
    pub error: Option<JobError>,
    /// The lane (the batch's logical worker, `0..lanes`, Go's `Worker`) that
    /// ran the final attempt; `None` if the job never started.
    pub worker: Option<usize>,
    /// The index of the pool worker thread that ran the final attempt
    /// (`None` if the job never started, or ran on a thread that is not one
    /// of the pool's workers).
    pub thread: Option<usize>,
    /// Attempts made (0 if the job never started).
    pub attempts: u32,
    /// When the first attempt started (`None` if the job never started).
    pub started: Option<Instant>,
    /// When the last attempt ended (for a job that never started: when the
    /// run gave up on it).
    pub completed: Instant,
    /// `completed - started`: every attempt and the back-offs between them;
    /// zero for a job that never started.
    pub duration: Duration,
}

impl<R> JobResult<R> {
    /// Succeeded, failed, or cancelled.
    #[must_use]
    pub fn status(&self) -> JobStatus {
        match &self.error {
            None => JobStatus::Succeeded,
            Some(e) if e.is_cancellation() => JobStatus::Cancelled,
            Some(_) => JobStatus::Failed,
        }
    }

    /// Whether the job returned a value.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// Whether the job never started (its error is
    /// [`JobError::NotStarted`]). Go dropped such jobs from `Run()`'s
    /// results; respool lists them last, marked: filter them out with
    /// [`BatchReport::started`](super::BatchReport::started).
    #[must_use]
    pub fn is_unstarted(&self) -> bool {
        matches!(self.error, Some(JobError::NotStarted(_)))
    }

    /// The processor's own error, as it returned it (Go: `Result.Error`),
    /// without the `job failed: ` prefix that [`JobError`]'s display adds;
    /// `None` if the job succeeded or ended otherwise (panic, timeout,
    /// cancellation, refusal).
    #[must_use]
    pub fn processor_error(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        match &self.error {
            Some(JobError::Failed(e)) => Some(&**e),
            _ => None,
        }
    }
}

/// What a running processor can ask about its job (Go: the `ctx` argument).
///
/// Cancellation is cooperative: the pool cannot stop a running thread, so a
/// long processor should poll [`is_cancelled`](Self::is_cancelled), or wait
/// with [`sleep`](Self::sleep), and return early.
pub struct JobContext {
    pub(super) control: Arc<Control>,
    pub(super) attempt: u32,
    pub(super) worker: usize,
    pub(super) deadline: Option<Instant>,
}

impl JobContext {
    /// Whether this attempt should stop: the batch was stopped, the run went
    /// past its timeout, or this attempt went past its own timeout (Go:
    /// `ctx.Err() != nil`).
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.control.is_cancelled() || self.is_timed_out()
    }

    /// Whether this attempt went past its own timeout.
    #[must_use]
    pub fn is_timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Which attempt this is: 0 for the first run, 1 for the first retry...
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The lane running this attempt (`0..lanes`).
    #[must_use]
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// When this attempt times out (`None` if the timeout is too large to
    /// represent, e.g. `Duration::MAX`).
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Waits for `duration`, or less if the attempt is cancelled or times out
    /// first (Go: `select { case <-time.After(d): case <-ctx.Done(): }`).
    /// Returns `true` if it waited the whole time, `false` if it was cut short.
    pub fn sleep(&self, duration: Duration) -> bool {
        let now = Instant::now();
        let target = now.checked_add(duration);
        let (until, cut) = match (target, self.deadline) {
            (Some(t), Some(d)) if d < t => (Some(d), true),
            (None, Some(d)) => (Some(d), true),
            (t, _) => (t, false),
        };
        self.control.sleep_until(until) && !cut
    }

    /// Blocks until this attempt is cancelled: the batch is stopped, the
    /// run passes its timeout, or this attempt passes its own (Go:
    /// `<-ctx.Done()`). With neither timeout set (`Duration::MAX`), only a
    /// stop ends the wait.
    ///
    /// What the processor returns next decides the job's result: an error
    /// makes it [`JobError::Cancelled`] (or [`JobError::TimedOut`] for the
    /// attempt's own timeout); a value returned after a stop still counts
    /// as the job's value.
    ///
    /// # Examples
    ///
    /// A processor that waits for its input or the cancellation, whichever
    /// comes first (Go: `select { case v := <-in: ... case <-ctx.Done(): }`):
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use respool::batch::{Batch, Job, JobError};
    ///
    /// let pool = respool::Pool::builder().workers(1).build()?;
    /// let (started_tx, started) = mpsc::channel();
    /// let batch = Batch::new(&pool).with_processor(move |ctx, _job: &Job<()>| {
    ///     started_tx.send(()).unwrap();
    ///     ctx.wait_cancelled();
    ///     Err::<(), _>("context canceled") // Go: return ctx.Err()
    /// });
    /// batch.add_job(Job::new("waits", ()));
    /// let stop = batch.stop_handle();
    /// std::thread::scope(|s| {
    ///     s.spawn(move || {
    ///         started.recv().unwrap();
    ///         stop.stop();
    ///     });
    ///     let report = batch.run().unwrap();
    ///     assert!(matches!(report.results[0].error, Some(JobError::Cancelled(_))));
    /// });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_cancelled(&self) {
        // Until the attempt's deadline (or forever): either way the attempt
        // is cancelled when this returns.
        while !self.is_cancelled() {
            let _ = self.control.sleep_until(self.deadline);
        }
    }

    /// Blocks until this attempt is cancelled or `timeout` passes,
    /// whichever comes first; `true` if it was cancelled (Go: `select {
    /// case <-ctx.Done(): case <-time.After(d): }`). The opposite answer
    /// of [`sleep`](Self::sleep).
    pub fn wait_cancelled_for(&self, timeout: Duration) -> bool {
        let _ = self.sleep(timeout);
        self.is_cancelled()
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("attempt", &self.attempt)
            .field("worker", &self.worker)
            .field("deadline", &self.deadline)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
