//! A batch API for people coming from the Go library `go-foundations/workerpool`.
//!
//! A [`Batch`] runs a list of [`Job`]s through a processor on a respool
//! [`Pool`], distributed over `N` lanes (the Go library's "workers") by a
//! [`Strategy`], and returns every job's [`JobResult`] plus [`BatchMetrics`].
//! It starts no threads of its own: each lane is one pool task that asks the
//! strategy for its next job until there is none, and `run()` collects the
//! results on the calling thread while the lanes work.
//!
//! ```
//! use respool::Pool;
//! use respool::batch::{Batch, BatchConfig, Job, StrategyKind};
//!
//! let pool = Pool::builder().workers(2).build()?;
//! let config = BatchConfig { strategy: StrategyKind::WorkStealing, ..BatchConfig::default() };
//! let batch = Batch::with_config(&pool, config)?.with_processor(|_ctx, job: &Job<u64>| {
//!     if job.data == 13 {
//!         return Err(format!("unlucky {}", job.id));
//!     }
//!     Ok(job.data * 2)
//! });
//! batch.add_jobs((0..20).map(|i| Job::new(format!("job-{i}"), i)));
//! let report = batch.run()?; // a processor error is not a run error
//! assert_eq!(report.results.len(), 20);
//! assert_eq!(report.metrics.processed, 19);
//! assert_eq!(report.metrics.failed, 1);
//! let failed = report.results.iter().find(|r| !r.is_ok()).unwrap();
//! assert_eq!(failed.job_id, "job-13");
//! assert_eq!(failed.attempts, 4); // 3 retries, as in Go (100, 200, 300 ms apart)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Migrating from Go
//!
//! | Go `workerpool` | `respool::batch` |
//! |-----------------|------------------|
//! | `New()` | [`Batch::new(&pool)`](Batch::new) |
//! | `NewWithConfig(cfg)` | [`Batch::with_config(&pool, cfg)?`](Batch::with_config) (validated) |
//! | `Config{NumWorkers}` (default 4; `<= 0` becomes 1) | [`BatchConfig::workers`]: `None` (the default) = the pool's worker count; `Some(0)` is an error; read back with [`Batch::workers`] |
//! | `BufferSize` (100) | [`BatchConfig::buffer_size`] (100): jobs in flight, with back-pressure |
//! | `Strategy` (`RoundRobin`...) | [`BatchConfig::strategy`]: [`StrategyKind::RoundRobin`]... or [`StrategyKind::Custom`] |
//! | `Timeout` (5 min), `WorkerTimeout` (30 s) | [`BatchConfig::timeout`], [`BatchConfig::attempt_timeout`] |
//! | `MaxRetries` (3), backoff `(attempt+1) * 100ms` | [`BatchConfig::max_retries`], [`BatchConfig::backoff`] (`Backoff::Linear(100 ms)`) |
//! | `EnableMetrics` (ignored) | [`BatchConfig::enable_metrics`] (switches the duration histogram and queue depth) |
//! | `Job[T]{ID, Data, Priority, Created}` | [`Job<T>`](Job) `{id, data, priority, created}`; [`Job::new`], [`Job::with_priority`] |
//! | `Processor func(ctx, Job[T]) (R, error)` | `Fn(&JobContext, &Job<T>) -> Result<R, E>`, `E` any error (or string); it may borrow from the caller; `T` need only be `Send` |
//! | a processor that always returns `v, nil` | `Fn(&JobContext, &Job<T>) -> R` through [`.with_infallible_processor(p)`](Batch::with_infallible_processor) |
//! | `<-ctx.Done()` / `ctx.Err() != nil` | [`JobContext::wait_cancelled`], [`JobContext::wait_cancelled_for`] / [`JobContext::is_cancelled`]; [`JobContext::sleep`]; [`JobContext::attempt`] |
//! | `.WithProcessor(p)` | [`.with_processor(p)`](Batch::with_processor) |
//! | `.AddJobs(jobs)` / `.AddJob(job)` | [`.add_jobs(jobs)`](Batch::add_jobs) (replaces) / [`.add_job(job)`](Batch::add_job) (appends, thread-safe) |
//! | the job list, `len(jobs)` | [`.jobs()`](Batch::jobs) (a copy), [`.job_count()`](Batch::job_count) |
//! | `.Run() ([]Result[R], error)` | [`.run()`](Batch::run) `-> Result<BatchReport<R>, BatchError>`, results in completion order, then the jobs that never started; [`BatchReport::started`] is Go's list |
//! | `err` after `Stop()` or the timeout | `Ok`, with [`BatchReport::stop_reason`] set: a stop is not an error |
//! | errors `no processor configured`, `no jobs to process` | [`BatchError::NoProcessor`], [`BatchError::NoJobs`] (same words) |
//! | `.Stop()` | [`.stop()`](Batch::stop), or [`.stop_handle()`](Batch::stop_handle) from another thread |
//! | `.GetMetrics()` | [`BatchReport::metrics`], or [`Batch::metrics`] for the last run; during a run, [`Batch::progress`] (or [`StopHandle::progress`]) |
//! | `Result[R]{JobID, Data, Error, Worker, Started, Completed, Duration}` | [`JobResult<R>`](JobResult) `{job_id, data: Option<R>, error: Option<JobError>, worker: Option<usize>, started: Option<Instant>, completed, duration}` plus `attempts`, `index`, `thread`; [`JobResult::processor_error`] is Go's `Error` as returned; [`JobResult::is_unstarted`] |
//! | `Strategy` interface (never called) | the [`Strategy`] trait, through which the five built-ins run too; a plan may choose the number of lanes ([`Plan::with_lanes`]) |
//! | `NewWorkStealingDeque`, `NewPriorityQueue` | not exported (the batch runner's own, since issue 16): `crossbeam-deque` and `std::collections::BinaryHeap` are the crates of the field |
//! | (none: Go admits nothing) | [`Job::with_requirements`], [`Job::with_class`], [`Job::with_size_hint`]; [`BatchConfig::requirements`], [`BatchConfig::class`] for the whole batch |
//!
//! # Resource-aware jobs (opt-in)
//!
//! A job that carries requirements or a class (its own, or the batch's
//! [`BatchConfig::requirements`] / [`BatchConfig::class`]) goes through the
//! pool's admission: each attempt is a pool task with those requirements,
//! class and size hint, so it starts only when the pool can afford it
//! (memory is never over-committed), is measured, and teaches its class, as
//! a task from [`Pool::task`](crate::pool::Pool::task) does. Its lane waits for the
//! attempt without idling its worker (it runs queued pool tasks meanwhile).
//! A refusal is the job's [`JobError::Refused`]: what can never fit is not
//! retried, a busy pool under [`Policy::Reject`](respool_core::admission::Policy::Reject) is
//! retried like a failure. Jobs with neither run on their lanes exactly as
//! without this API.
//!
//! Differences on purpose: a job that never started has `worker`, `started`
//! as `None` and [`JobError::NotStarted`] (Go dropped it; filter with
//! [`BatchReport::started`]); a stop or the run timeout is not an error of
//! `run()` (it is [`BatchReport::stop_reason`]); a job returns a value or an
//! error, never both; [`JobError`]'s display prefixes the processor's
//! message with `job failed: ` ([`JobResult::processor_error`] has it bare);
//! lanes default to the pool's worker count (Go: 4); runs of one batch take
//! turns (Go crashed on a second `Run()`); a job's duration spans all its
//! attempts and back-offs (as in Go); a panicking processor is a failed
//! job, and is retried like an error.
//!
//! # The Go library's defects, and what prevents each here
//!
//! The regression tests are in `std-runtime/tests/batch_defects.rs`, one per
//! defect, named after it.
//!
//! 1. **Hang with more jobs than `BufferSize`.** `run()` collects results
//!    while the lanes work; `buffer_size` only bounds the jobs in flight
//!    (a lane waits for a permit that every collected result returns), so
//!    any number of jobs completes. (`defect1_more_jobs_than_buffer_complete`)
//! 2. **Chunked panics with fewer jobs than workers.** [`Chunked::bounds`]
//!    gives lane `w` the slice starting at `w * (n / N) + min(w, n mod N)`,
//!    empty for `w >= n`. (`defect2_chunked_with_fewer_jobs_than_workers`)
//! 3. **A pool runs once.** A run owns its state (plan, permits, channel);
//!    the batch keeps only its jobs and processor, and the pool is not
//!    consumed. (`defect3_one_batch_runs_many_times`)
//! 4. **Work stealing loses and repeats jobs.** Every pop and steal takes
//!    the deque's lock, and the runner claims each index once (a repeat
//!    would be counted in [`BatchMetrics::dispatch_errors`]).
//!    (`defect4_work_stealing_never_loses_or_repeats`)
//! 5. **Cancellation never reaches a running job, and completed results
//!    are thrown away.** `stop()` and the run timeout raise a flag that
//!    [`JobContext::is_cancelled`] reads; results are kept, and jobs cut
//!    short or never started are reported as [`JobError::Cancelled`] /
//!    [`JobError::NotStarted`]. (`defect5_cancellation_reaches_running_jobs_and_keeps_results`)
//! 6. **Metrics are wrong or missing.** [`BatchMetrics`] derives everything
//!    from the results: the mean of the per-job durations, nearest-rank
//!    percentiles, queue depth, per-lane utilisation.
//!    (`defect6_metrics_mean_what_they_say`)
//! 7. **A panicking processor kills the process.** Each attempt runs under
//!    `catch_unwind`; the panic message becomes [`JobError::Panicked`].
//!    (`defect7_panicking_processor_is_a_failed_job`)
//!
//! # Limits
//!
//! - The pool cannot stop a thread: cancellation and attempt timeouts are
//!   cooperative, and `run()` returns once every running processor has
//!   returned. A processor that never checks its context delays `run()`.
//! - A lane waiting out a back-off holds its pool worker, as a Go worker
//!   goroutine does.
//! - `run()` on one of the pool's own workers runs queued pool tasks while it
//!   waits (possibly a lane of its own run), so it completes even on a
//!   one-worker pool.
//! - [`JobResult::thread`] is the index of the pool worker that ran the job.

mod config;
mod control;
mod job;
mod metrics;
mod queue;
mod run;
mod strategy;

use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

pub use config::{BatchConfig, BatchError};
pub use control::CancelReason;
pub use job::{Job, JobContext, JobError, JobResult, JobStatus};
pub use metrics::{BatchMetrics, Progress};
pub use strategy::{
    Adaptive, Assignment, Chunked, Dispatch, JobMeta, Plan, PriorityBased, RoundRobin, Strategy,
    StrategyKind, WorkStealing,
};

use crate::pool::Pool;
use crate::sync::lock;
use control::Control;
use run::{JobCell, Processor, RunInput, SharedError};

/// Runs jobs through a processor on a [`Pool`] (Go: `WorkerPool`).
///
/// Every method takes `&self` except [`with_processor`](Self::with_processor)
/// and [`with_infallible_processor`](Self::with_infallible_processor), so a
/// batch can be shared between threads: one runs it, another adds jobs for
/// the next run, reads its [`progress`](Self::progress) or stops it.
///
/// `'p` is how long the batch may use the pool and what the processor
/// borrows: the processor and the job data may borrow from the caller (a
/// local table, a slice), as the tasks of [`Pool::scope`] may, since
/// [`run`](Self::run) returns only once every lane has ended. Job data
/// need only be `Send`: each job is handed to one lane at a time.
pub struct Batch<'p, T, R> {
    pool: &'p Pool,
    config: BatchConfig,
    processor: Option<Processor<'p, T, R>>,
    jobs: Mutex<Vec<JobCell<T>>>,
    runs: Arc<Mutex<Vec<Arc<Control>>>>,
    last: Mutex<Option<BatchMetrics>>,
    /// Held by the run in progress: runs of one batch take turns.
    turn: Mutex<()>,
}

impl<T, R> fmt::Debug for Batch<'_, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("config", &self.config)
            .field("processor", &self.processor.is_some())
            .field("jobs", &lock(&self.jobs).len())
            .finish_non_exhaustive()
    }
}

impl<'p, T, R> Batch<'p, T, R>
where
    T: Send,
    R: Send,
{
    /// A batch on `pool` with [`BatchConfig::default`] (Go: `New()`).
    #[must_use]
    pub fn new(pool: &'p Pool) -> Self {
        Batch {
            pool,
            config: BatchConfig::default(),
            processor: None,
            jobs: Mutex::new(Vec::new()),
            runs: Arc::new(Mutex::new(Vec::new())),
            last: Mutex::new(None),
            turn: Mutex::new(()),
        }
    }

    /// A batch on `pool` with `config` (Go: `NewWithConfig(cfg)`).
    ///
    /// # Errors
    ///
    /// [`BatchError::InvalidConfig`] or [`BatchError::TooLarge`] from
    /// [`BatchConfig::validate`].
    pub fn with_config(pool: &'p Pool, config: BatchConfig) -> Result<Self, BatchError> {
        config.validate()?;
        let mut b = Batch::new(pool);
        b.config = config;
        Ok(b)
    }

    /// Sets the processor (Go: `WithProcessor`). Its error (any
    /// `std::error::Error + Send + Sync`, or a string) lands in the job's
    /// [`JobResult::error`], never in `run()`'s result. It may borrow from
    /// the caller for `'p` (see [`Batch`]).
    ///
    /// A closure that only ever returns `Ok(..)` leaves the error type
    /// unknown (error E0283): use
    /// [`with_infallible_processor`](Self::with_infallible_processor), which
    /// takes the value itself.
    #[must_use]
    pub fn with_processor<F, E>(mut self, processor: F) -> Self
    where
        F: Fn(&JobContext, &Job<T>) -> Result<R, E> + Send + Sync + 'p,
        E: Into<Box<dyn Error + Send + Sync>>,
    {
        self.processor = Some(Arc::new(move |ctx: &JobContext, job: &Job<T>| {
            processor(ctx, job).map_err(|e| SharedError::from(e.into()))
        }));
        self
    }

    /// Sets a processor that never fails: it returns the job's value itself
    /// (Go: a processor that always returns `nil` as its error). A panic is
    /// still a failed job, and retried.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::batch::{Batch, Job};
    /// let pool = respool::Pool::builder().workers(2).build()?;
    /// let batch = Batch::new(&pool).with_infallible_processor(|_ctx, job: &Job<u64>| job.data * 2);
    /// batch.add_jobs((0..4).map(|i| Job::new(format!("job-{i}"), i)));
    /// let mut report = batch.run()?;
    /// report.sort_by_index();
    /// assert_eq!(report.values().copied().collect::<Vec<_>>(), [0, 2, 4, 6]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_infallible_processor<F>(self, processor: F) -> Self
    where
        F: Fn(&JobContext, &Job<T>) -> R + Send + Sync + 'p,
    {
        self.with_processor(move |ctx: &JobContext, job: &Job<T>| {
            Ok::<R, Infallible>(processor(ctx, job))
        })
    }

    /// Replaces the job list (Go: `AddJobs`).
    pub fn add_jobs(&self, jobs: impl IntoIterator<Item = Job<T>>) -> &Self {
        let jobs: Vec<JobCell<T>> = jobs.into_iter().map(|j| Arc::new(Mutex::new(j))).collect();
        *lock(&self.jobs) = jobs;
        self
    }

    /// Appends a job (Go: `AddJob`); safe from any thread. A job added while
    /// a run is in progress is part of the next run.
    pub fn add_job(&self, job: Job<T>) -> &Self {
        lock(&self.jobs).push(Arc::new(Mutex::new(job)));
        self
    }

    /// A copy of the job list, in order (Go: the pool's `jobs`). A job that
    /// a run is processing right now is copied once its lane lets go of it
    /// (job data need only be `Send`, so one thread at a time holds a job):
    /// called from the batch's own processor, it would wait for itself.
    #[must_use]
    pub fn jobs(&self) -> Vec<Job<T>>
    where
        T: Clone,
    {
        let cells = lock(&self.jobs).clone();
        cells.iter().map(|c| lock(c).clone()).collect()
    }

    /// Removes every job.
    pub fn clear_jobs(&self) {
        lock(&self.jobs).clear();
    }

    /// How many jobs the next run will process.
    #[must_use]
    pub fn job_count(&self) -> usize {
        lock(&self.jobs).len()
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// The lanes a run uses (Go: `NumWorkers`, default 4 there):
    /// [`BatchConfig::workers`], or the pool's worker count when that is
    /// `None` (the default). A custom strategy may choose otherwise for a
    /// run ([`Plan::with_lanes`]); the run's [`BatchMetrics::lanes`] says
    /// what it used.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.config
            .workers
            .unwrap_or_else(|| self.pool.workers())
            .max(1)
    }

    /// Whether a processor is set (`run()` fails with
    /// [`BatchError::NoProcessor`] without one).
    #[must_use]
    pub fn has_processor(&self) -> bool {
        self.processor.is_some()
    }

    /// The pool the batch runs on.
    #[must_use]
    pub fn pool(&self) -> &'p Pool {
        self.pool
    }

    /// Runs every job added so far (they stay added: `run()` again runs
    /// them again) and returns all results in completion order, followed by
    /// the jobs that never started, plus the run's metrics (Go: `Run()`).
    ///
    /// Blocks until every lane has ended. Runs of one batch take turns: a
    /// `run()` called while another run of the same batch is in progress
    /// waits for it to end (on one of the pool's workers, running queued
    /// pool tasks meanwhile), then runs every job. Runs of different
    /// batches overlap freely on one pool.
    ///
    /// A stop or the run timeout is not an error (Go's `Run()` returned
    /// `ctx.Err()`): `run()` returns `Ok` with the results so far, the
    /// reason in [`BatchReport::stop_reason`], and the jobs cut short or
    /// never started marked as such ([`JobResult::is_unstarted`],
    /// [`BatchReport::started`]).
    ///
    /// # Errors
    ///
    /// [`BatchError::NoProcessor`], [`BatchError::NoJobs`],
    /// [`BatchError::PoolShutDown`], [`BatchError::StrategyPanicked`].
    /// A job's failure is not an error of the run.
    pub fn run(&self) -> Result<BatchReport<R>, BatchError> {
        let processor = self.processor.clone().ok_or(BatchError::NoProcessor)?;
        let _turn = self.take_turn();
        let jobs = lock(&self.jobs).clone();
        if jobs.is_empty() {
            return Err(BatchError::NoJobs);
        }
        let report = run::run(RunInput {
            pool: self.pool,
            config: &self.config,
            processor,
            jobs,
            runs: &self.runs,
        })?;
        *lock(&self.last) = Some(report.metrics.clone());
        Ok(report)
    }

    /// Stops the runs in progress (Go: `Stop()`): running processors see
    /// [`JobContext::is_cancelled`], no job starts any more, and `run()`
    /// returns the results collected so far once the running processors
    /// have returned. Returns whether a run was in progress. A later run is
    /// not affected.
    pub fn stop(&self) -> bool {
        stop_all(&self.runs)
    }

    /// A handle that stops this batch's runs from any thread.
    #[must_use]
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            runs: self.runs.clone(),
        }
    }

    /// The metrics of the last run that completed (Go: `GetMetrics()`
    /// after `Run()`); for the run in progress, see
    /// [`progress`](Self::progress).
    #[must_use]
    pub fn metrics(&self) -> Option<BatchMetrics> {
        lock(&self.last).clone()
    }

    /// The progress of the run in progress, readable from any thread while
    /// it goes on (Go: `GetMetrics()` during `Run()`); `None` when no run
    /// is in progress. From a thread that does not borrow the batch, use
    /// [`StopHandle::progress`].
    #[must_use]
    pub fn progress(&self) -> Option<Progress> {
        current_progress(&self.runs)
    }

    /// Waits for this batch's turn to run (see [`run`](Self::run)).
    fn take_turn(&self) -> MutexGuard<'_, ()> {
        let shared = self.pool.shared();
        if shared.current_worker().is_none() {
            return lock(&self.turn);
        }
        // On a worker: the run in progress may need this worker for its
        // lanes, so run queued tasks while waiting.
        loop {
            match self.turn.try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    if !shared.help_once() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
    }
}

fn current_progress(runs: &Mutex<Vec<Arc<Control>>>) -> Option<Progress> {
    let run = lock(runs).last().cloned();
    run.map(|c| c.progress())
}

fn stop_all(runs: &Mutex<Vec<Arc<Control>>>) -> bool {
    let runs = lock(runs).clone();
    for c in &runs {
        c.cancel(CancelReason::Stopped);
    }
    !runs.is_empty()
}

/// Stops a batch's run in progress, or reads its progress, from any
/// thread (it is `Send`, `Sync`, `Clone` and `'static`); see
/// [`Batch::stop`] and [`Batch::progress`].
#[derive(Clone)]
pub struct StopHandle {
    runs: Arc<Mutex<Vec<Arc<Control>>>>,
}

impl StopHandle {
    /// As [`Batch::stop`].
    pub fn stop(&self) -> bool {
        stop_all(&self.runs)
    }

    /// As [`Batch::progress`].
    #[must_use]
    pub fn progress(&self) -> Option<Progress> {
        current_progress(&self.runs)
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("runs_in_progress", &lock(&self.runs).len())
            .finish()
    }
}

/// What a run returns: every job's result and the run's metrics.
#[derive(Debug)]
pub struct BatchReport<R> {
    /// One result per job: in completion order, then the jobs that never
    /// started, in job order.
    pub results: Vec<JobResult<R>>,
    /// The run's metrics.
    pub metrics: BatchMetrics,
}

impl<R> BatchReport<R> {
    /// Sorts the results by job index (the order of the job list).
    pub fn sort_by_index(&mut self) {
        self.results.sort_by_key(|r| r.index);
    }

    /// The values of the jobs that succeeded, in result order.
    pub fn values(&self) -> impl Iterator<Item = &R> {
        self.results.iter().filter_map(|r| r.data.as_ref())
    }

    /// The results of the jobs that started, in completion order: what
    /// Go's `Run()` returned (it dropped the others), so `started().count()`
    /// is Go's `len(results)`. Each succeeded, failed, or was cut short.
    pub fn started(&self) -> impl Iterator<Item = &JobResult<R>> {
        self.results.iter().filter(|r| !r.is_unstarted())
    }

    /// The results of the jobs that never started (after a stop, the run
    /// timeout, or a strategy that did not hand them out), in job order.
    pub fn unstarted(&self) -> impl Iterator<Item = &JobResult<R>> {
        self.results.iter().filter(|r| r.is_unstarted())
    }

    /// Why the run was cut short (`None`: it ran every job). A stop is not
    /// an error of `run()`: check this where Go checked `err != nil` after
    /// `Stop()`.
    #[must_use]
    pub fn stop_reason(&self) -> Option<CancelReason> {
        self.metrics.stop_reason
    }
}
