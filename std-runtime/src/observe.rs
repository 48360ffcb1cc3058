//! One seam for observers: every lifecycle event of every task, and the
//! pool's capacity changes, delivered to code of yours.
//!
//! Install an [`Observer`] with
//! [`Builder::observer`](crate::builder::Builder::observer); the pool calls
//! [`Observer::on_event`] for each [`Event`]. Metrics, traces and dashboards
//! are built on it outside the `respool` crate (as `tokio-metrics` and
//! `console-subscriber` are built on tokio's hooks): an event carries a
//! monotonic timestamp, the task's id and class, and what applies to it
//! (requirements, reservation, usage).
//!
//! # The events of one task
//!
//! Every submitted task gets a [`TaskId`], one [`EventKind::Submitted`],
//! and exactly one terminal event ([`EventKind::is_terminal`]), whatever
//! happens to it: it runs, panics, is refused, cancelled, times out, misses
//! its deadline, or is handed back by `shutdown_now`. In between:
//!
//! ```text
//! Submitted -> Admitted -> Started -> Finished            (runs at once)
//! Submitted -> Deferred -> Admitted -> Started -> Finished (waits first)
//! Submitted -> Refused                                    (never fits, busy, full)
//! Submitted -> Deferred -> Cancelled                      (cancelled while waiting)
//! Submitted -> Admitted -> Started -> Panicked
//! Submitted -> Admitted -> Started -> Retried -> Admitted -> Started -> Finished
//! Submitted -> Admitted -> Started -> ReservationGrown -> Finished
//! ```
//!
//! A measured task (one with a class) also has a
//! [`ProfileUpdated`](EventKind::ProfileUpdated) event before its terminal
//! one. Events of one task come in this order; events of different tasks
//! interleave as the tasks do.
//!
//! # Where and when `on_event` runs
//!
//! On the thread where the event happens: the submitting thread, a worker,
//! the pool's timer. Never under one of the pool's locks, so an observer may
//! call the pool (take a [`snapshot`](crate::pool::Pool::snapshot), say);
//! but it runs on the task's path, so keep it short (count, copy into a
//! channel or a ring buffer). A panic in it is caught and ignored.
//!
//! # Cost
//!
//! Without an observer, nothing: no event is built, no clock is read, no
//! id is taken (a branch on a configuration field where an event would be;
//! the instruction counts of `ci/iai.sh` guard it). With one, every task
//! takes the described path (so that it has an id), which costs what a task
//! with requirements costs, plus a clock read and a call per event;
//! `BENCHMARKS.md` has the measurement.
//!
//! # Examples
//!
//! ```
//! use std::sync::Mutex;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use respool::observe::{Event, EventKind, Observer};
//! use respool::Pool;
//!
//! /// Counts tasks by how they ended.
//! #[derive(Default)]
//! struct Outcomes {
//!     finished: AtomicU64,
//!     other: AtomicU64,
//! }
//!
//! impl Observer for Outcomes {
//!     fn on_event(&self, event: &Event<'_>) {
//!         match event.kind {
//!             EventKind::Finished { .. } => drop(self.finished.fetch_add(1, Ordering::Relaxed)),
//!             ref k if k.is_terminal() => drop(self.other.fetch_add(1, Ordering::Relaxed)),
//!             _ => {}
//!         }
//!     }
//! }
//!
//! let outcomes = std::sync::Arc::new(Outcomes::default());
//! let pool = Pool::builder().workers(2).observer(outcomes.clone()).build()?;
//! for i in 0..10 {
//!     pool.execute(move || assert!(i < 10))?;
//! }
//! pool.shutdown();
//! assert_eq!(outcomes.finished.load(Ordering::Relaxed), 10);
//! assert_eq!(outcomes.other.load(Ordering::Relaxed), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use respool_core::{Resources, Shortfall};

use crate::error::SubmitError;
use crate::measure::TaskUsage;

/// Receives the pool's events (see the [module documentation](self)).
pub trait Observer: Send + Sync + 'static {
    /// Called once per event, on the thread where it happens, outside the
    /// pool's locks.
    fn on_event(&self, event: &Event<'_>);
}

impl<O: Observer + ?Sized> Observer for Arc<O> {
    fn on_event(&self, event: &Event<'_>) {
        (**self).on_event(event);
    }
}

/// A task's id, unique within its pool: the order of submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The id as a number (1 for a pool's first task).
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// One event.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Event<'a> {
    /// When it happened, on the pool's monotonic clock (since the pool was
    /// built).
    pub at: Duration,
    /// The task (`None` for an event of the pool itself).
    pub task: Option<TaskId>,
    /// The task's class key, if it has one.
    pub class: Option<&'a str>,
    /// What happened.
    pub kind: EventKind<'a>,
}

/// What happened. Terminal kinds end a task ([`EventKind::is_terminal`]).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum EventKind<'a> {
    /// The task was submitted, with what it needs (declared, learned or
    /// fallback; empty for a plain task).
    Submitted {
        /// Its requirements.
        requirements: &'a Resources,
    },
    /// It does not fit now and waits; `shortfall` says in which dimension
    /// and by how much (`None`: it waits behind earlier waiters).
    Deferred {
        /// Where it does not fit.
        shortfall: Option<Shortfall>,
    },
    /// It was admitted: it holds `reservation` and goes to a worker.
    Admitted {
        /// What it holds (empty when it needs nothing tracked).
        reservation: &'a Resources,
    },
    /// Terminal: the pool refused it (never fits, busy, full queue, an
    /// admission deadline, shut down).
    Refused {
        /// Why.
        error: &'a SubmitError,
    },
    /// A worker started it.
    Started {
        /// The worker's index.
        worker: usize,
        /// The CPU placement domain it was placed on, when placement
        /// mattered.
        domain: Option<usize>,
        /// Asks the task to stop (a task with a handle: `spawn`, `submit`;
        /// `None` for one without). It has started, so
        /// [`Canceller::cancel`](crate::Canceller::cancel) only raises the
        /// flag that a cooperative task reads through
        /// [`TaskContext::is_cancelled`](crate::TaskContext::is_cancelled);
        /// a slow-task detector keeps it to stop a task that runs too long.
        canceller: Option<&'a crate::handle::Canceller>,
    },
    /// Its reservation grew while it ran, because it used more memory than
    /// it reserved (with the tracking allocator).
    ReservationGrown {
        /// By how much.
        by: &'a Resources,
    },
    /// What it used was learned for its class.
    ProfileUpdated {
        /// What was expected of it (the dimensions that came from
        /// learning; empty while the class is on the fallback).
        expected: &'a Resources,
        /// What it used.
        measured: &'a Resources,
    },
    /// An attempt of a retrying task failed; attempt `attempt` (1 for the
    /// first retry) follows after `delay`.
    Retried {
        /// The attempt that follows.
        attempt: u32,
        /// The back-off before it.
        delay: Duration,
    },
    /// Terminal: it ran to completion.
    Finished {
        /// What it used, when it was measured (a class, or
        /// [`measure_all`](crate::builder::Builder::measure_all)).
        usage: Option<&'a TaskUsage>,
    },
    /// Terminal: a retrying task failed on its last attempt.
    Failed {
        /// Attempts made.
        attempts: u32,
    },
    /// Terminal: it panicked (the worker went on).
    Panicked,
    /// Terminal: it was cancelled before it started.
    Cancelled,
    /// Terminal: its timeout fired (its closure may still be running).
    TimedOut,
    /// Terminal: its deadline passed before it could start.
    DeadlineMissed,
    /// Terminal: it never started; `shutdown_now` handed it back, or the
    /// pool dropped it at shutdown.
    NotRun,
    /// The pool's capacity or effective capacity changed
    /// ([`set_capacity`](crate::pool::Pool::set_capacity),
    /// [`set_external_usage`](crate::pool::Pool::set_external_usage), a
    /// container memory limit that changed).
    CapacityChanged {
        /// The capacity per tracked dimension.
        capacity: &'a Resources,
        /// Capacity minus headroom and external usage.
        effective: &'a Resources,
    },
}

impl EventKind<'_> {
    /// Whether this event ends its task (exactly one per task).
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::Refused { .. }
                | EventKind::Finished { .. }
                | EventKind::Failed { .. }
                | EventKind::Panicked
                | EventKind::Cancelled
                | EventKind::TimedOut
                | EventKind::DeadlineMissed
                | EventKind::NotRun
        )
    }

    /// A short name (`"submitted"`, `"finished"`, ...), for logs and labels.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Submitted { .. } => "submitted",
            EventKind::Deferred { .. } => "deferred",
            EventKind::Admitted { .. } => "admitted",
            EventKind::Refused { .. } => "refused",
            EventKind::Started { .. } => "started",
            EventKind::ReservationGrown { .. } => "reservation_grown",
            EventKind::ProfileUpdated { .. } => "profile_updated",
            EventKind::Retried { .. } => "retried",
            EventKind::Finished { .. } => "finished",
            EventKind::Failed { .. } => "failed",
            EventKind::Panicked => "panicked",
            EventKind::Cancelled => "cancelled",
            EventKind::TimedOut => "timed_out",
            EventKind::DeadlineMissed => "deadline_missed",
            EventKind::NotRun => "not_run",
            EventKind::CapacityChanged { .. } => "capacity_changed",
        }
    }
}

/// What the pool keeps to report one observed task: its id and class, the
/// observer, and whether its terminal event was sent. Shared (an `Arc`) by
/// everything that may end the task (its description, its timeout, its
/// retries): the first to end it sends the terminal event, the others send
/// nothing, and if nothing did by the time the last of them lets go (the
/// task was dropped unrun), the drop sends [`EventKind::NotRun`].
pub(crate) struct Observed {
    id: TaskId,
    class: Option<Arc<str>>,
    observer: Arc<dyn Observer>,
    /// The pool clock's origin.
    epoch: std::time::Instant,
    ended: std::sync::atomic::AtomicBool,
}

impl Observed {
    pub(crate) fn new(
        id: u64,
        class: Option<Arc<str>>,
        observer: Arc<dyn Observer>,
        epoch: std::time::Instant,
    ) -> Observed {
        Observed {
            id: TaskId(id),
            class,
            observer,
            epoch,
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sends a non-terminal event of this task.
    pub(crate) fn emit(&self, kind: EventKind<'_>) {
        let event = Event {
            at: self.epoch.elapsed(),
            task: Some(self.id),
            class: self.class.as_deref(),
            kind,
        };
        let observer = &self.observer;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            observer.on_event(&event);
        }));
    }

    /// Sends the terminal event, unless one was sent already; returns
    /// whether this call sent it.
    pub(crate) fn end(&self, kind: EventKind<'_>) -> bool {
        debug_assert!(kind.is_terminal(), "{kind:?} is not terminal");
        if self.ended.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return false;
        }
        self.emit(kind);
        true
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.end(EventKind::NotRun);
    }
}

/// Sends an event of the pool itself (no task) to `observer`.
pub(crate) fn pool_event(
    observer: &Arc<dyn Observer>,
    epoch: std::time::Instant,
    kind: EventKind<'_>,
) {
    let event = Event {
        at: epoch.elapsed(),
        task: None,
        class: None,
        kind,
    };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| observer.on_event(&event)));
}

/// Sends an event of the observed plain task `id` (one that travels packed,
/// without an [`Observed`] record: no class, no timeout, no retry, so its
/// ends are the worker's run and `unstarted`, each of which sends its
/// terminal event once).
pub(crate) fn task_event(observer: &Arc<dyn Observer>, at: Duration, id: u64, kind: EventKind<'_>) {
    let event = Event {
        at,
        task: Some(TaskId(id)),
        class: None,
        kind,
    };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| observer.on_event(&event)));
}
