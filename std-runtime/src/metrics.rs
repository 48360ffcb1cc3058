//! Counters and latency histograms, cheap enough to update on every task.
//!
//! Counters that every task touches are kept per worker (each on its own
//! cache line) and summed when a snapshot is taken, so busy workers never
//! contend on a shared counter. Latencies go to a lock-free log-linear
//! histogram (powers of two split into 8 linear sub-buckets, as in
//! HdrHistogram with 3 bits of precision): a relative error under 12.5%,
//! 4 KiB of atomics, one `fetch_add` per sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

const SUB_BITS: u32 = 3;
const SUBS: usize = 1 << SUB_BITS;
const BUCKETS: usize = 64 * SUBS;

/// A lock-free histogram of durations in nanoseconds.
pub(crate) struct Histogram {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

fn index(ns: u64) -> usize {
    if ns < SUBS as u64 {
        return ns as usize;
    }
    let log = 63 - ns.leading_zeros(); // >= SUB_BITS
    let sub = (ns >> (log - SUB_BITS)) as usize & (SUBS - 1);
    ((log - SUB_BITS + 1) as usize) * SUBS + sub
}

/// The largest value that falls in bucket `i` (an upper bound for percentiles).
fn upper_bound(i: usize) -> u64 {
    if i < SUBS {
        return i as u64;
    }
    let log = (i / SUBS) as u32 + SUB_BITS - 1;
    let sub = (i % SUBS) as u64;
    let base = 1u64 << log;
    let width = 1u64 << (log - SUB_BITS);
    (base - 1).saturating_add((sub + 1).saturating_mul(width))
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if let Some(c) = self.counts.get(index(ns)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        Histogram::merged(std::iter::once(self))
    }

    /// The summary of several histograms taken together.
    pub(crate) fn merged<'a>(hs: impl Iterator<Item = &'a Histogram> + Clone) -> LatencySummary {
        let total: u64 = hs.clone().map(|h| h.total.load(Ordering::Relaxed)).sum();
        let sum_ns: u64 = hs
            .clone()
            .map(|h| h.sum_ns.load(Ordering::Relaxed))
            .fold(0, u64::saturating_add);
        let max_ns = hs
            .clone()
            .map(|h| h.max_ns.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let mut counts = vec![0u64; BUCKETS];
        for h in hs {
            for (c, a) in counts.iter_mut().zip(h.counts.iter()) {
                *c += a.load(Ordering::Relaxed);
            }
        }
        let n: u64 = counts.iter().sum();
        let pct = |p: u64| -> Duration {
            if n == 0 {
                return Duration::ZERO;
            }
            // Rank of the p-th percentile, 1-based, rounded up.
            let rank = (n * p).div_ceil(100).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    // The bucket's bound, but never above the largest sample
                    // (which is still an upper bound of the percentile).
                    return Duration::from_nanos(upper_bound(i).min(max_ns));
                }
            }
            Duration::from_nanos(max_ns)
        };
        LatencySummary {
            count: total,
            mean: Duration::from_nanos(sum_ns.checked_div(total).unwrap_or(0)),
            p50: pct(50),
            p90: pct(90),
            p99: pct(99),
            max: Duration::from_nanos(max_ns),
        }
    }
}

/// Count, mean and percentiles of a latency. Percentiles are upper bounds of
/// their histogram bucket (within 12.5% of the true value), capped at `max`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

/// Per-worker counters and histograms (no cross-worker contention). The
/// counters are written only by their worker's thread (with a load and a
/// store, see `pool::bump`) and read by anyone.
pub(crate) struct WorkerCounters {
    pub(crate) completed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    /// Submit to start, for measured tasks run by this worker.
    pub(crate) wait: Histogram,
    /// Submit to finish, for measured tasks run by this worker.
    pub(crate) latency: Histogram,
    /// Measured tasks run, used to sample the hold-time average.
    pub(crate) measured: AtomicU64,
}

impl WorkerCounters {
    fn new() -> WorkerCounters {
        WorkerCounters {
            completed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            wait: Histogram::new(),
            latency: Histogram::new(),
            measured: AtomicU64::new(0),
        }
    }
}

/// Submissions, counted with one atomic add per task whatever its path.
#[derive(Default)]
pub(crate) struct Submitted {
    /// Tasks submitted, except those below.
    pub(crate) other: AtomicU64,
    /// Tasks admitted at once with their reservation packed
    /// (`Shared::submit_lite`): submitted and accepted, counted once here
    /// rather than once as a submission and again in admission's counters.
    pub(crate) packed: AtomicU64,
}

impl Submitted {
    /// Every task submitted.
    pub(crate) fn total(&self) -> u64 {
        self.other
            .load(Ordering::Relaxed)
            .saturating_add(self.packed.load(Ordering::Relaxed))
    }
}

pub(crate) struct Metrics {
    pub(crate) workers: Box<[CachePadded<WorkerCounters>]>,
    /// Counted by submitters (per submitting call, not per worker).
    pub(crate) submitted: CachePadded<Submitted>,
    pub(crate) timed_out: AtomicU64,
    pub(crate) rejected_at_submit: AtomicU64,
    /// Time spent deciding admission and placement (resource-aware tasks;
    /// sampled, see `SCHEDULE_SAMPLE`).
    pub(crate) schedule: Histogram,
}

/// One resource-aware submission in this many has its decision timed (two
/// clock reads): an unbiased sample at a sixteenth of the cost.
pub(crate) const SCHEDULE_SAMPLE: u32 = 16;

impl Metrics {
    pub(crate) fn new(workers: usize) -> Metrics {
        Metrics {
            workers: (0..workers)
                .map(|_| CachePadded::new(WorkerCounters::new()))
                .collect(),
            submitted: CachePadded::new(Submitted::default()),
            timed_out: AtomicU64::new(0),
            rejected_at_submit: AtomicU64::new(0),
            schedule: Histogram::new(),
        }
    }

    pub(crate) fn worker(&self, id: usize) -> Option<&WorkerCounters> {
        self.workers.get(id).map(|c| &**c)
    }

    pub(crate) fn completed(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.completed.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn panicked(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.panicked.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn wait(&self) -> LatencySummary {
        Histogram::merged(self.workers.iter().map(|w| &w.wait))
    }

    pub(crate) fn latency(&self) -> LatencySummary {
        Histogram::merged(self.workers.iter().map(|w| &w.latency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for ns in (0..5000u64).chain([1 << 20, (1 << 40) + 12345, u64::MAX]) {
            let i = index(ns);
            assert!(i < BUCKETS);
            assert!(
                upper_bound(i) >= ns,
                "{ns} in bucket {i} bounded by {}",
                upper_bound(i)
            );
            if ns < 5000 {
                assert!(i >= last);
                last = i;
            }
            if ns >= 8 {
                // Relative error of the bound under 12.5%.
                assert!(upper_bound(i) - ns <= ns / 8 + 1, "{ns}");
            }
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::new();
        for i in 1..=1000u64 {
            h.record(Duration::from_micros(i));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max, Duration::from_micros(1000));
        assert_eq!(s.mean, Duration::from_nanos(500_500));
        let within = |got: Duration, want_us: u64| {
            let want = want_us * 1000;
            let g = got.as_nanos() as u64;
            assert!(
                g >= want && g <= want + want / 8,
                "got {got:?}, want about {want_us}us"
            );
        };
        within(s.p50, 500);
        within(s.p90, 900);
        within(s.p99, 990);
        assert_eq!(Histogram::new().summary(), LatencySummary::default());
    }
}
