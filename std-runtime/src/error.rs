//! Error types: building a pool, submitting a task, and a task's outcome.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use respool_core::admission::RejectReason;
use respool_core::{Dim, Shortfall};

use crate::units::ParseError;

/// Why a pool could not be built. Each message says what to change.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// `workers(0)`.
    ZeroWorkers,
    /// `queue_capacity(0)`.
    ZeroQueueCapacity,
    /// A size (workers, queue capacity, waiting tasks, stack size, lookahead
    /// width) above its limit in [`limits`](crate::limits).
    TooLarge {
        /// Which setting (`"workers"`, `"queue_capacity"`, `"max_waiting"`,
        /// `"stack_size"`, `"lookahead"`).
        setting: &'static str,
        /// The value given.
        value: usize,
        /// The largest value accepted.
        max: usize,
    },
    /// A size below its minimum in [`limits`](crate::limits) (a stack size
    /// below [`MIN_STACK_SIZE`](crate::limits::MIN_STACK_SIZE)).
    TooSmall {
        /// Which setting.
        setting: &'static str,
        /// The value given.
        value: usize,
        /// The smallest value accepted.
        min: usize,
    },
    /// A headroom larger than the capacity it is taken from.
    HeadroomExceedsCapacity {
        /// The dimension.
        dim: Dim,
        /// The headroom asked for.
        headroom: u64,
        /// The capacity.
        capacity: u64,
    },
    /// A headroom, critical reserve or default requirement names a dimension
    /// the capacity does not track.
    Untracked {
        /// Which setting.
        setting: &'static str,
        /// The dimension.
        dim: Dim,
    },
    /// The critical reserve is larger than the capacity left after headroom.
    CriticalReserveTooLarge {
        /// The dimension.
        dim: Dim,
    },
    /// A human-readable amount given to the builder did not parse.
    Parse(ParseError),
    /// The operating system refused to start a worker thread.
    Spawn(std::io::Error),
    /// The profile store could not be read (a corrupt or newer file is
    /// reported here, and left untouched).
    Store(crate::store::StoreError),
    /// Something else about the configuration is invalid.
    Invalid(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroWorkers => f.write_str("workers(0): a pool needs at least one worker"),
            BuildError::ZeroQueueCapacity => {
                f.write_str("queue_capacity(0): the run queue needs at least one slot")
            }
            BuildError::TooLarge {
                setting,
                value,
                max,
            } => write!(f, "{setting} {value} is above the limit of {max}: lower it"),
            BuildError::TooSmall {
                setting,
                value,
                min,
            } => write!(
                f,
                "{setting} {value} is below the minimum of {min}: raise it"
            ),
            BuildError::HeadroomExceedsCapacity {
                dim,
                headroom,
                capacity,
            } => write!(
                f,
                "the {dim} headroom ({headroom}) is larger than the {dim} capacity ({capacity}): \
                 lower the headroom or raise the capacity"
            ),
            BuildError::Untracked { setting, dim } => write!(
                f,
                "the {setting} sets {dim}, which has no capacity: give the pool a {dim} capacity \
                 or remove it from the {setting}"
            ),
            BuildError::CriticalReserveTooLarge { dim } => write!(
                f,
                "the critical reserve of {dim} leaves nothing for normal tasks: lower it"
            ),
            BuildError::Parse(e) => write!(f, "{e}"),
            BuildError::Spawn(e) => write!(f, "could not start a worker thread: {e}"),
            BuildError::Store(e) => write!(f, "{e}"),
            BuildError::Invalid(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Parse(e) => Some(e),
            BuildError::Spawn(e) => Some(e),
            BuildError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a task was not accepted. Nothing was run, and a task's closure was
/// dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitError {
    /// The task needs more than the pool's whole capacity (minus headroom and,
    /// for normal tasks, the critical reserve) in some dimension: it could
    /// never run.
    NeverFits(Shortfall),
    /// The admission policy is `Reject` and the task does not fit now.
    Busy {
        /// Where it does not fit.
        shortfall: Shortfall,
        /// A typical time until resources free up.
        retry_after: Option<Duration>,
    },
    /// The wait queue for tasks that do not fit is full.
    QueueFull {
        /// A typical time until resources free up.
        retry_after: Option<Duration>,
    },
    /// The admission policy is `BlockUntilDeadline` and the task was still
    /// waiting for resources when the deadline passed.
    DeadlineExpired,
    /// The pool is shutting down or shut down.
    ShutDown,
    /// A requirement given as text did not parse.
    InvalidRequirement(ParseError),
    /// A requirement is invalid (too large a number).
    InvalidAmount(respool_core::ResourceError),
}

impl SubmitError {
    pub(crate) fn from_reject(reason: RejectReason) -> SubmitError {
        let ns = |n: Option<u64>| n.map(Duration::from_nanos);
        match reason {
            RejectReason::NeverFits(s) => SubmitError::NeverFits(s),
            RejectReason::Busy {
                shortfall,
                retry_after_ns,
            } => SubmitError::Busy {
                shortfall,
                retry_after: ns(retry_after_ns),
            },
            RejectReason::QueueFull { retry_after_ns, .. } => SubmitError::QueueFull {
                retry_after: ns(retry_after_ns),
            },
            _ => SubmitError::DeadlineExpired,
        }
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::NeverFits(s) => write!(
                f,
                "task can never run on this pool: {} needs {}{u} but the pool has {}{u} in all \
                 (short by {}{u})",
                s.dim,
                s.requested,
                s.available,
                s.by,
                u = s.dim.unit().symbol()
            ),
            SubmitError::Busy {
                shortfall,
                retry_after,
            } => {
                write!(f, "task refused, not enough free now: {shortfall}")?;
                if let Some(d) = retry_after {
                    write!(f, "; retry in about {d:?}")?;
                }
                Ok(())
            }
            SubmitError::QueueFull { retry_after } => {
                f.write_str("task refused: the wait queue is full")?;
                if let Some(d) = retry_after {
                    write!(f, "; retry in about {d:?}")?;
                }
                Ok(())
            }
            SubmitError::DeadlineExpired => {
                f.write_str("task refused: still waiting for resources at its admission deadline")
            }
            SubmitError::ShutDown => f.write_str("task refused: the pool is shut down"),
            SubmitError::InvalidRequirement(e) => write!(f, "{e}"),
            SubmitError::InvalidAmount(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Why a task produced no value.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the message is the panic payload when it was a string.
    Panicked(String),
    /// The task was cancelled before it started.
    Cancelled,
    /// The task ran past its timeout (it was asked to stop through its
    /// cancellation flag; its eventual result is discarded).
    TimedOut,
    /// Admission refused the task while it waited (its deadline passed, or a
    /// capacity cut made it impossible to ever fit).
    Rejected(SubmitError),
    /// The pool shut down before the task started.
    ShutDown,
    /// The task's deadline had passed when a worker picked it up, so it was
    /// not started.
    DeadlineMissed,
    /// A retrying task failed on every attempt; the last error.
    Failed {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        error: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl PartialEq for TaskError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TaskError::Panicked(a), TaskError::Panicked(b)) => a == b,
            (TaskError::Cancelled, TaskError::Cancelled)
            | (TaskError::TimedOut, TaskError::TimedOut)
            | (TaskError::ShutDown, TaskError::ShutDown)
            | (TaskError::DeadlineMissed, TaskError::DeadlineMissed) => true,
            (TaskError::Rejected(a), TaskError::Rejected(b)) => a == b,
            (
                TaskError::Failed {
                    attempts: a,
                    error: e,
                },
                TaskError::Failed {
                    attempts: b,
                    error: f,
                },
            ) => a == b && e.to_string() == f.to_string(),
            _ => false,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(m) => write!(f, "task panicked: {m}"),
            TaskError::Cancelled => f.write_str("task was cancelled before it started"),
            TaskError::TimedOut => f.write_str("task ran past its timeout"),
            TaskError::Rejected(e) => write!(f, "task was refused while waiting: {e}"),
            TaskError::ShutDown => f.write_str("the pool shut down before the task started"),
            TaskError::DeadlineMissed => {
                f.write_str("the task's deadline passed before a worker could start it")
            }
            TaskError::Failed { attempts, error } => {
                write!(f, "task failed after {attempts} attempts: {error}")
            }
        }
    }
}

impl std::error::Error for TaskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TaskError::Failed { error, .. } => Some(&**error),
            TaskError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

/// Turns a panic payload into a message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}
