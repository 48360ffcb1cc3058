//! The batch configuration (Go: `Config`) and the errors of a run.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use respool_core::Resources;

use super::strategy::StrategyKind;
use crate::task::Backoff;

/// How a batch runs (Go: `Config`). `Default` gives Go's defaults, except
/// for the number of workers, which defaults to the pool's.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use respool::batch::{BatchConfig, StrategyKind};
///
/// let config = BatchConfig {
///     workers: Some(8),
///     strategy: StrategyKind::WorkStealing,
///     max_retries: 1,
///     ..BatchConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// assert_eq!(config.buffer_size, 100);
/// assert_eq!(config.timeout, Duration::from_secs(300));
/// let bad = BatchConfig { workers: Some(0), ..BatchConfig::default() };
/// assert!(bad.validate().unwrap_err().to_string().contains("workers"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BatchConfig {
    /// Lanes (Go: `NumWorkers`): how many jobs run at once. `None` (the
    /// default) uses the pool's worker count. `Some(0)` is an error (Go
    /// silently made it 1). More lanes than pool workers is allowed: the
    /// extra lanes start as pool workers free up. At most
    /// [`MAX_WORKERS`](crate::limits::MAX_WORKERS) (4096): more is
    /// [`BatchError::TooLarge`].
    pub workers: Option<usize>,
    /// Most jobs in flight at once, counting from when a lane takes a job to
    /// when `run()` has collected its result (default 100). A lane that would
    /// exceed it waits for `run()` to collect a result (back-pressure), and
    /// `run()` collects while lanes work, so any number of jobs completes
    /// (Go hung with more jobs than `BufferSize`: defect 1). Must be at
    /// least 1.
    pub buffer_size: usize,
    /// How jobs are distributed over the lanes (default round robin).
    pub strategy: StrategyKind,
    /// Limit for the whole run (default 5 min). When it passes, running jobs
    /// see [`JobContext::is_cancelled`](super::JobContext::is_cancelled),
    /// no further job starts, and the results collected so far are kept.
    /// `Duration::MAX`: no limit. Must not be zero.
    pub timeout: Duration,
    /// Limit for each attempt of a job (Go: `WorkerTimeout`, default 30 s).
    /// When it passes the attempt's context reports cancelled, and the
    /// attempt counts as failed with [`JobError::TimedOut`](super::JobError::TimedOut)
    /// even if it then returns a value. The pool cannot stop a thread: a
    /// processor that never checks its context runs on. `Duration::MAX`:
    /// no limit. Must not be zero.
    pub attempt_timeout: Duration,
    /// Retries after a failed attempt (an error, a panic or an attempt
    /// timeout): up to `max_retries + 1` attempts (default 3).
    pub max_retries: u32,
    /// Wait before retry `k` (0-based): default `Linear(100 ms)`, i.e.
    /// `(k + 1) * 100 ms`, as in Go. The wait ends early if the run is
    /// cancelled. The lane waits (and holds its pool worker), as a Go worker does.
    pub backoff: Backoff,
    /// Collect the per-job duration histogram (percentiles, maximum) and the
    /// queue depth high-water mark (default `true`). With `false` those
    /// metrics are `None` and nothing is recorded for them; counts, mean
    /// duration, wall time and lane utilisation are always reported (they
    /// cost a few additions per job).
    pub enable_metrics: bool,
    /// What every job needs, unless it declares its own in a dimension (see
    /// [`Job::with_requirements`](super::Job::with_requirements)). Default:
    /// none. With any requirement or a class, jobs go through the pool's
    /// admission and learning; without, they run on their lanes as in Go.
    pub requirements: Resources,
    /// The class of jobs that set none: their attempts are measured and
    /// the class's needs learned (default: none).
    pub class: Option<Arc<str>>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            workers: None,
            buffer_size: 100,
            strategy: StrategyKind::RoundRobin,
            timeout: Duration::from_secs(5 * 60),
            attempt_timeout: Duration::from_secs(30),
            max_retries: 3,
            backoff: Backoff::Linear(Duration::from_millis(100)),
            enable_metrics: true,
            requirements: Resources::NONE,
            class: None,
        }
    }
}

impl BatchConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`BatchError::InvalidConfig`] naming the field and what to change;
    /// [`BatchError::TooLarge`] for more lanes than
    /// [`MAX_WORKERS`](crate::limits::MAX_WORKERS).
    pub fn validate(&self) -> Result<(), BatchError> {
        let invalid = |field, reason| Err(BatchError::InvalidConfig { field, reason });
        if self.workers == Some(0) {
            return invalid(
                "workers",
                "a batch needs at least one worker: use Some(n) with n >= 1, or None for the pool's worker count",
            );
        }
        if let Some(workers) = self.workers {
            if workers > crate::limits::MAX_WORKERS {
                return Err(BatchError::TooLarge {
                    field: "workers",
                    value: workers,
                    max: crate::limits::MAX_WORKERS,
                });
            }
        }
        if self.buffer_size == 0 {
            return invalid(
                "buffer_size",
                "must be at least 1 (it bounds the jobs in flight)",
            );
        }
        if self.timeout.is_zero() {
            return invalid(
                "timeout",
                "a zero run timeout would cancel every job: use Duration::MAX for no limit",
            );
        }
        if self.attempt_timeout.is_zero() {
            return invalid(
                "attempt_timeout",
                "a zero attempt timeout would fail every attempt: use Duration::MAX for no limit",
            );
        }
        Ok(())
    }
}

/// Why a run could not take place (Go: the error of `Run()`). A job's own
/// failure is never a run error: it is in its [`JobResult`](super::JobResult).
#[derive(Debug)]
#[non_exhaustive]
pub enum BatchError {
    /// `run()` before [`with_processor`](super::Batch::with_processor).
    NoProcessor,
    /// `run()` with no jobs added.
    NoJobs,
    /// A configuration field is invalid.
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong and what to change.
        reason: &'static str,
    },
    /// A configuration field is above its limit (see
    /// [`limits`](crate::limits)).
    TooLarge {
        /// The field.
        field: &'static str,
        /// The value given.
        value: usize,
        /// The largest value accepted.
        max: usize,
    },
    /// The pool is shut down: no lane could be started.
    PoolShutDown,
    /// The strategy's `plan` panicked (the panic message).
    StrategyPanicked(String),
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::NoProcessor => {
                f.write_str("no processor configured: call with_processor() before run()")
            }
            BatchError::NoJobs => {
                f.write_str("no jobs to process: call add_jobs() or add_job() before run()")
            }
            BatchError::InvalidConfig { field, reason } => {
                write!(f, "invalid batch config: {field}: {reason}")
            }
            BatchError::TooLarge { field, value, max } => write!(
                f,
                "invalid batch config: {field}: {value} is above the limit of {max}: lower it"
            ),
            BatchError::PoolShutDown => {
                f.write_str("the pool is shut down: run the batch on a live pool")
            }
            BatchError::StrategyPanicked(m) => {
                write!(f, "the strategy panicked while planning: {m}")
            }
        }
    }
}

impl std::error::Error for BatchError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_gos() {
        let c = BatchConfig::default();
        assert_eq!(c.workers, None);
        assert_eq!(c.buffer_size, 100);
        assert_eq!(c.strategy, StrategyKind::RoundRobin);
        assert_eq!(c.timeout, Duration::from_secs(300));
        assert_eq!(c.attempt_timeout, Duration::from_secs(30));
        assert_eq!(c.max_retries, 3);
        assert_eq!(c.backoff.delay(0), Duration::from_millis(100));
        assert_eq!(c.backoff.delay(2), Duration::from_millis(300));
        assert!(c.enable_metrics);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn invalid_fields_are_named() {
        let d = BatchConfig::default;
        let cases = [
            (
                BatchConfig {
                    workers: Some(0),
                    ..d()
                },
                "workers",
            ),
            (
                BatchConfig {
                    buffer_size: 0,
                    ..d()
                },
                "buffer_size",
            ),
            (
                BatchConfig {
                    timeout: Duration::ZERO,
                    ..d()
                },
                "timeout",
            ),
            (
                BatchConfig {
                    attempt_timeout: Duration::ZERO,
                    ..d()
                },
                "attempt_timeout",
            ),
        ];
        for (c, field) in cases {
            match c.validate() {
                Err(BatchError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let ok = BatchConfig {
            workers: Some(1),
            timeout: Duration::MAX,
            attempt_timeout: Duration::MAX,
            ..d()
        };
        assert!(ok.validate().is_ok());
    }
}
