//! Metrics of one run, computed from its results (Go: `GetMetrics()`, minus
//! defect 6).
//!
//! Everything here is derived from what the run really recorded: counts from
//! the results, the mean job duration as the mean of the per-job durations
//! (not the run's wall time divided by the successes, as Go computed it),
//! percentiles by the nearest-rank method over the durations of the jobs
//! that started, lane utilisation as the time a lane spent inside the
//! processor divided by the run's wall time.

use std::time::{Duration, Instant};

use super::control::CancelReason;
use super::job::{JobResult, JobStatus};

/// What one run did. See the [module documentation](super) for the
/// definitions.
#[derive(Clone, Debug)]
pub struct BatchMetrics {
    /// The strategy used (for [`Adaptive`](super::Adaptive): `"adaptive: <choice>"`).
    pub strategy: String,
    /// Lanes the run used.
    pub lanes: usize,
    /// Jobs in the run.
    pub total_jobs: usize,
    /// Jobs that returned a value.
    pub processed: usize,
    /// Jobs that failed on their own (error, panic or attempt timeout on
    /// every attempt).
    pub failed: usize,
    /// Jobs cut short or never started because the run was cancelled (or
    /// could not run them). `processed + failed + cancelled == total_jobs`.
    pub cancelled: usize,
    /// Attempts made, over all jobs.
    pub attempts: u64,
    /// Attempts after the first (`attempts` minus the jobs that started).
    pub retries: u64,
    /// Attempts that ran past the attempt timeout.
    pub timed_out_attempts: u64,
    /// Mean of the per-job durations of the jobs that started (`None` if
    /// none did).
    pub mean_job_duration: Option<Duration>,
    /// Median per-job duration (nearest rank); `None` without
    /// [`enable_metrics`](super::BatchConfig::enable_metrics) or started jobs.
    pub p50_job_duration: Option<Duration>,
    /// 95th percentile of the per-job durations (nearest rank); as `p50`.
    pub p95_job_duration: Option<Duration>,
    /// Longest per-job duration; as `p50`.
    pub max_job_duration: Option<Duration>,
    /// From the start of `run()` to the moment it had every result.
    pub wall_time: Duration,
    /// The most results waiting at once for `run()` to collect them: at most
    /// [`buffer_size`](super::BatchConfig::buffer_size) (unless `run()` is
    /// called on one of the pool's own workers and runs a lane itself, which
    /// then never waits). `None` without `enable_metrics`.
    pub queue_depth_max: Option<usize>,
    /// Per lane: time spent inside the processor (all attempts).
    pub lane_busy: Vec<Duration>,
    /// Per lane: `lane_busy / wall_time`, in `0.0..=1.0`.
    pub lane_utilisation: Vec<f64>,
    /// Indices a strategy handed out twice or out of range (ignored; 0 for
    /// the built-in strategies).
    pub dispatch_errors: u64,
    /// Why the run was cut short, if it was.
    pub stop_reason: Option<CancelReason>,
    /// When `run()` started.
    pub started: Instant,
    /// When `run()` had every result.
    pub ended: Instant,
}

/// A run's progress while it goes on (Go: `GetMetrics()` during `Run()`):
/// see [`Batch::progress`](super::Batch::progress). Counts only grow;
/// `processed + failed + cancelled <= started <= total_jobs`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Jobs in the run.
    pub total_jobs: usize,
    /// Lanes the run uses.
    pub lanes: usize,
    /// Jobs whose first attempt has begun.
    pub started: usize,
    /// Results collected so far that have a value.
    pub processed: usize,
    /// Results collected so far that failed on their own.
    pub failed: usize,
    /// Results collected so far of jobs cut short by a cancellation (jobs
    /// that never start are counted only in the final [`BatchMetrics`]).
    pub cancelled: usize,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Why the run is being cut short, if it is.
    pub stop_reason: Option<CancelReason>,
}

impl Progress {
    /// Results collected so far: `processed + failed + cancelled`.
    #[must_use]
    pub fn finished(&self) -> usize {
        self.processed + self.failed + self.cancelled
    }

    /// Jobs started whose result is not collected yet (running, waiting to
    /// be retried, or waiting to be collected).
    #[must_use]
    pub fn running(&self) -> usize {
        self.started.saturating_sub(self.finished())
    }
}

/// What the runner measured besides the results.
pub(super) struct Measured {
    pub(super) strategy: String,
    pub(super) lane_busy: Vec<Duration>,
    pub(super) timed_out_attempts: u64,
    pub(super) dispatch_errors: u64,
    pub(super) queue_depth_max: Option<usize>,
    pub(super) stop_reason: Option<CancelReason>,
    pub(super) started: Instant,
    pub(super) ended: Instant,
    pub(super) histogram: bool,
}

/// The nearest-rank `pct` percentile of sorted, non-empty `xs`.
fn nearest_rank(xs: &[Duration], pct: usize) -> Option<Duration> {
    let n = xs.len();
    let rank = (pct * n).div_ceil(100).max(1);
    xs.get(rank - 1).copied()
}

impl BatchMetrics {
    pub(super) fn compute<R>(results: &[JobResult<R>], m: Measured) -> BatchMetrics {
        let mut processed = 0;
        let mut failed = 0;
        let mut cancelled = 0;
        let mut attempts = 0u64;
        let mut started = 0u64;
        let mut sum_ns = 0u128;
        let mut durations = Vec::new();
        if m.histogram {
            durations.reserve(results.len());
        }
        for r in results {
            match r.status() {
                JobStatus::Succeeded => processed += 1,
                JobStatus::Failed => failed += 1,
                JobStatus::Cancelled => cancelled += 1,
            }
            attempts += u64::from(r.attempts);
            if r.started.is_some() {
                started += 1;
                sum_ns += r.duration.as_nanos();
                if m.histogram {
                    durations.push(r.duration);
                }
            }
        }
        let mean_job_duration = (started > 0).then(|| {
            let ns = sum_ns / u128::from(started);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        });
        durations.sort_unstable();
        let wall_time = m.ended.saturating_duration_since(m.started);
        let lane_utilisation = m
            .lane_busy
            .iter()
            .map(|b| {
                if wall_time.is_zero() {
                    0.0
                } else {
                    (b.as_secs_f64() / wall_time.as_secs_f64()).min(1.0)
                }
            })
            .collect();
        BatchMetrics {
            strategy: m.strategy,
            lanes: m.lane_busy.len(),
            total_jobs: results.len(),
            processed,
            failed,
            cancelled,
            attempts,
            retries: attempts.saturating_sub(started),
            timed_out_attempts: m.timed_out_attempts,
            mean_job_duration,
            p50_job_duration: nearest_rank(&durations, 50),
            p95_job_duration: nearest_rank(&durations, 95),
            max_job_duration: durations.last().copied(),
            wall_time,
            queue_depth_max: m.queue_depth_max,
            lane_busy: m.lane_busy,
            lane_utilisation,
            dispatch_errors: m.dispatch_errors,
            stop_reason: m.stop_reason,
            started: m.started,
            ended: m.ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&x| Duration::from_millis(x))
                .collect::<Vec<_>>()
        };
        let xs = ms(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(nearest_rank(&xs, 50), Some(Duration::from_millis(5)));
        assert_eq!(nearest_rank(&xs, 95), Some(Duration::from_millis(10)));
        let one = ms(&[7]);
        assert_eq!(nearest_rank(&one, 50), Some(Duration::from_millis(7)));
        assert_eq!(nearest_rank(&one, 95), Some(Duration::from_millis(7)));
        assert_eq!(nearest_rank(&[], 50), None);
        let twenty: Vec<_> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(nearest_rank(&twenty, 95), Some(Duration::from_millis(19)));
    }
}
