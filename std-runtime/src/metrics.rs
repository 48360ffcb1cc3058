//! Counters and latency histograms, cheap enough to update on every task.
//!
//! Counters that every task touches are kept per worker (each on its own
//! cache line) and summed when a snapshot is taken, so busy workers never
//! contend on a shared counter. Latencies go to a lock-free log-linear
//! histogram (powers of two split into 8 linear sub-buckets, as in
//! HdrHistogram with 3 bits of precision): a relative error under 12.5%,
//! 4 KiB of atomics, one `fetch_add` per sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// (`Shared::submit_packed`): submitted and accepted, counted once here
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
    /// Submissions that waited for room in the wait queue (backpressure).
    pub(crate) held_for_room: AtomicU64,
    /// Time spent deciding admission and placement (resource-aware tasks;
    /// sampled, see [`sample`]).
    pub(crate) schedule: Histogram,
}

/// One timed task in this many has its hold time fed to admission's
/// retry-after estimate (a shared atomic that busy workers would otherwise
/// contend on).
pub(crate) const HOLD_SAMPLE: u64 = 16;

/// The timing sample aims at one timed submission per this many nanoseconds
/// per submitting thread (see [`sample`]).
const SAMPLE_GAP_NS: u64 = 250_000;

/// At most this many submissions between two timed ones of a thread.
const SAMPLE_MAX_INTERVAL: u32 = 256;

/// The interval after a sample that came `gap_ns` after the one before it,
/// `interval` submissions later: scaled so that the next gap is about
/// [`SAMPLE_GAP_NS`], between 1 and [`SAMPLE_MAX_INTERVAL`].
fn next_interval(interval: u32, gap_ns: u64) -> u32 {
    let scaled = u64::from(interval).saturating_mul(SAMPLE_GAP_NS) / gap_ns.max(1);
    u32::try_from(scaled.clamp(1, u64::from(SAMPLE_MAX_INTERVAL))).unwrap_or(1)
}

/// Per submitting thread: submissions left until the next timed one, the
/// current interval, and when the last timed one was.
struct Sampler {
    left: std::cell::Cell<u32>,
    interval: std::cell::Cell<u32>,
    last: std::cell::Cell<Option<Instant>>,
}

thread_local! {
    static SAMPLER: Sampler = const {
        Sampler {
            left: std::cell::Cell::new(0),
            interval: std::cell::Cell::new(1),
            last: std::cell::Cell::new(None),
        }
    };
}

/// Whether this submission is timed, and if so the clock read that starts
/// its timing (submission time, schedule time): the timing sample behind
/// wait, schedule and latency statistics of tasks without a class.
///
/// A timed task costs about 0.2-0.3 us more than another: two clock reads
/// on the submitter and two on the worker (about 30 ns each on the
/// development VM), and three histogram updates. At one task in 16 that
/// was 1-3% of a 1 us task.
/// So a thread times one submission in `interval`, and adapts `interval`
/// at each timed one to the rate it submits at: about one sample every
/// 250 us, at most about 0.15% of a core, and every task when tasks are
/// rarer than that; at high rates one in 256 (about 1 ns a task). Which submissions are timed
/// depends only on when they come, never on what they are. It leans a
/// little toward quiet moments: the sample after a pause shrinks the
/// interval, so the submission after it is timed too (one extra sample per
/// pause, from a task that likely waits less than those of a burst). After
/// a burst, a thread that slows down times its next task at most 256
/// submissions later.
#[inline]
pub(crate) fn sample() -> Option<Instant> {
    SAMPLER.with(|s| {
        let left = s.left.get();
        if left > 1 {
            s.left.set(left - 1);
            return None;
        }
        s.take()
    })
}

impl Sampler {
    /// A timed submission: reads the clock and sets the next interval.
    #[cold]
    #[inline(never)]
    fn take(&self) -> Option<Instant> {
        let now = Instant::now();
        let interval = self.last.get().map_or(1, |last| {
            let gap =
                u64::try_from(now.saturating_duration_since(last).as_nanos()).unwrap_or(u64::MAX);
            next_interval(self.interval.get(), gap)
        });
        self.interval.set(interval);
        self.left.set(interval);
        self.last.set(Some(now));
        Some(now)
    }
}

impl Metrics {
    pub(crate) fn new(workers: usize) -> Metrics {
        Metrics {
            workers: (0..workers)
                .map(|_| CachePadded::new(WorkerCounters::new()))
                .collect(),
            submitted: CachePadded::new(Submitted::default()),
            timed_out: AtomicU64::new(0),
            rejected_at_submit: AtomicU64::new(0),
            held_for_room: AtomicU64::new(0),
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
    fn the_sample_interval_follows_the_submission_rate() {
        // Submissions 2 us apart: the next sample ~125 submissions later.
        assert_eq!(next_interval(1, 2_000), 125);
        // A burst grows the interval up to its cap, never beyond.
        assert_eq!(next_interval(125, 10_000), SAMPLE_MAX_INTERVAL);
        assert_eq!(next_interval(SAMPLE_MAX_INTERVAL, 1), SAMPLE_MAX_INTERVAL);
        // At the target rate it stays; slower, it shrinks down to every task.
        assert_eq!(next_interval(64, SAMPLE_GAP_NS), 64);
        assert_eq!(next_interval(64, 4 * SAMPLE_GAP_NS), 16);
        assert_eq!(next_interval(64, 1_000 * SAMPLE_GAP_NS), 1);
        assert_eq!(next_interval(1, u64::MAX), 1);
        assert_eq!(next_interval(u32::MAX, 0), SAMPLE_MAX_INTERVAL);
    }

    #[test]
    fn a_fresh_thread_times_its_first_submission_and_rare_ones_all() {
        std::thread::spawn(|| {
            // Rarer than one per SAMPLE_GAP_NS: every one is timed.
            for _ in 0..3 {
                assert!(sample().is_some());
                std::thread::sleep(Duration::from_nanos(2 * SAMPLE_GAP_NS));
            }
            // A burst: a sample, not every submission, and at least one in
            // every SAMPLE_MAX_INTERVAL.
            let n = 4 * SAMPLE_MAX_INTERVAL;
            let timed = (0..n).filter(|_| sample().is_some()).count();
            assert!(timed >= 4, "{timed} timed");
            assert!(timed < n as usize / 2, "{timed} timed of {n}");
        })
        .join()
        .expect("sampler thread");
    }

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
