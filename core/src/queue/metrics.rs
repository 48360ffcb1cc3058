//! Queue metrics: counters and a log-bucketed histogram of waiting times.
//!
//! [`LogHistogram`] is a fixed, allocation-free histogram in the style of
//! HdrHistogram (Gil Tene) with two significant bits: values below 8 have a
//! bucket each, and every power-of-two range `[2^e, 2^(e+1))` above is split
//! into four equal buckets, 252 buckets for the whole `u64` range. A quantile
//! is reported as the upper end of the bucket holding the exact quantile,
//! capped at the largest recorded value, so the estimate `q'` of an exact
//! quantile `q` satisfies `q <= q' <= q + q / 4`: never below, at most 25% above.

use crate::resource::Ppm;

/// Buckets of a [`LogHistogram`]: 4 exact ones (0 to 3), then 4 per power of
/// two from 2^2 to 2^63.
pub const HISTOGRAM_BUCKETS: usize = 252;

/// The bucket holding `v`.
fn bucket_of(v: u64) -> usize {
    if v < 4 {
        // v < 4: the conversion cannot fail.
        return usize::try_from(v).unwrap_or(0);
    }
    // e = floor(log2 v) is in 2..=63; the two bits below the leading one pick
    // the quarter of [2^e, 2^(e+1)).
    let e = 63u32.saturating_sub(v.leading_zeros());
    let quarter = v.checked_shr(e.saturating_sub(2)).unwrap_or(0) & 3;
    let index = u64::from(e.saturating_sub(2))
        .saturating_mul(4)
        .saturating_add(4)
        .saturating_add(quarter);
    usize::try_from(index).unwrap_or(HISTOGRAM_BUCKETS.saturating_sub(1))
}

/// The smallest value in bucket `b` (`b < HISTOGRAM_BUCKETS`).
fn bucket_low(b: usize) -> u64 {
    let b = u64::try_from(b).unwrap_or(u64::MAX);
    if b < 4 {
        return b;
    }
    let e = (b.saturating_sub(4) / 4).saturating_add(2);
    let quarter = b.saturating_sub(4) % 4;
    let shift = u32::try_from(e.saturating_sub(2)).unwrap_or(u32::MAX);
    (4u64.saturating_add(quarter))
        .checked_shl(shift)
        .unwrap_or(u64::MAX)
}

/// The largest value in bucket `b`.
fn bucket_high(b: usize) -> u64 {
    if b.saturating_add(1) >= HISTOGRAM_BUCKETS {
        u64::MAX
    } else {
        bucket_low(b.saturating_add(1)).saturating_sub(1)
    }
}

/// A histogram of `u64` values (nanoseconds of waiting) with exact count, sum
/// and maximum and quantile estimates at most 25% above the exact value. See
/// the [module documentation](self).
///
/// # Examples
///
/// ```
/// use respool_core::queue::LogHistogram;
/// use respool_core::Ppm;
/// let mut h = LogHistogram::new();
/// for v in 1..=100u64 {
///     h.record(v * 1_000);
/// }
/// assert_eq!((h.count(), h.max()), (100, 100_000));
/// let p50 = h.p50().unwrap();
/// assert!((50_000..=62_500).contains(&p50));
/// assert_eq!(h.quantile(Ppm::ONE), Some(100_000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogHistogram {
    buckets: [u64; HISTOGRAM_BUCKETS],
    count: u64,
    sum: u128,
    max: u64,
}

impl Default for LogHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LogHistogram {
    /// An empty histogram.
    #[must_use]
    pub const fn new() -> LogHistogram {
        LogHistogram {
            buckets: [0; HISTOGRAM_BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }

    /// Adds one value.
    pub fn record(&mut self, v: u64) {
        if let Some(b) = self.buckets.get_mut(bucket_of(v)) {
            *b = b.saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.saturating_add(u128::from(v));
        self.max = self.max.max(v);
    }

    /// Number of values recorded.
    #[must_use]
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values recorded (exact: a `u128` cannot overflow on fewer
    /// than 2^64 values).
    #[must_use]
    pub const fn sum(&self) -> u128 {
        self.sum
    }

    /// The largest value recorded (0 when empty).
    #[must_use]
    pub const fn max(&self) -> u64 {
        self.max
    }

    /// The mean, rounded down, or `None` when empty.
    #[must_use]
    pub fn mean(&self) -> Option<u64> {
        let m = self.sum.checked_div(u128::from(self.count))?;
        Some(u64::try_from(m).unwrap_or(u64::MAX))
    }

    /// The `q` quantile (`Ppm::ONE` is the maximum), or `None` when empty:
    /// the upper end of the bucket that holds the `ceil(q * count)`-th smallest
    /// value, capped at the maximum. Never below the exact quantile, at most
    /// 25% above it. `q` above one counts as one.
    #[must_use]
    pub fn quantile(&self, q: Ppm) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = u128::from(q.min(Ppm::ONE).as_ppm());
        // ceil(count * q / 10^6), at least 1: the rank of the quantile.
        let scaled = u128::from(self.count).saturating_mul(q);
        let rank = scaled
            .saturating_add(999_999)
            .checked_div(1_000_000)
            .unwrap_or(0)
            .max(1);
        let mut seen = 0u128;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(u128::from(n));
            if seen >= rank {
                return Some(bucket_high(b).min(self.max));
            }
        }
        Some(self.max)
    }

    /// The median estimate.
    #[must_use]
    pub fn p50(&self) -> Option<u64> {
        self.quantile(Ppm::from_ppm(500_000))
    }

    /// The 99th percentile estimate.
    #[must_use]
    pub fn p99(&self) -> Option<u64> {
        self.quantile(Ppm::from_ppm(990_000))
    }
}

/// Counters of a [`ScoredQueue`](super::ScoredQueue). Every task that ever
/// entered is counted once as it leaves, so at any time
/// `enqueued == dequeued + removed + expired + depth`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Tasks in the queue now.
    pub depth: usize,
    /// The largest depth ever reached.
    pub max_depth: usize,
    /// Tasks accepted by `push`.
    pub enqueued: u64,
    /// Tasks handed out for running (`pop`, `take`); their waiting times are
    /// in the histogram.
    pub dequeued: u64,
    /// Tasks cancelled (`remove`, `remove_where`).
    pub removed: u64,
    /// Tasks dropped by `expire` because their deadline passed.
    pub expired: u64,
    /// Pushes refused because the queue was full.
    pub rejected_full: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_table() {
        // (value, bucket, bucket low, bucket high)
        let table = [
            (0, 0, 0, 0),
            (3, 3, 3, 3),
            (4, 4, 4, 4),
            (7, 7, 7, 7),
            (8, 8, 8, 9),
            (9, 8, 8, 9),
            (10, 9, 10, 11),
            (15, 11, 14, 15),
            (16, 12, 16, 19),
            (1_000, 35, 896, 1_023),
            (1 << 63, 248, 1 << 63, (5 << 61) - 1),
            (u64::MAX, 251, 7 << 61, u64::MAX),
        ];
        for (v, b, lo, hi) in table {
            assert_eq!(bucket_of(v), b, "value {v}");
            assert_eq!((bucket_low(b), bucket_high(b)), (lo, hi), "bucket {b}");
        }
        // Buckets tile the range without gaps.
        for b in 1..HISTOGRAM_BUCKETS {
            assert_eq!(bucket_low(b), bucket_high(b - 1) + 1, "bucket {b}");
            assert_eq!(bucket_of(bucket_low(b)), b);
            assert_eq!(bucket_of(bucket_high(b)), b);
        }
    }

    #[test]
    fn quantiles_are_upper_estimates_within_a_quarter() {
        let mut h = LogHistogram::new();
        assert_eq!((h.p50(), h.mean()), (None, None));
        let mut values: std::vec::Vec<u64> = (0..1_000u64).map(|i| i * i * 37 + i).collect();
        for &v in &values {
            h.record(v);
        }
        values.sort_unstable();
        for q in [1, 10_000, 500_000, 900_000, 990_000, 999_999, 1_000_000] {
            let rank = ((values.len() as u64 * q).div_ceil(1_000_000)).max(1);
            let exact = values[rank as usize - 1];
            let est = h.quantile(Ppm::from_ppm(q as u32)).unwrap();
            assert!(
                exact <= est && est <= exact + exact / 4,
                "q={q}: {exact} vs {est}"
            );
        }
        assert_eq!(h.count(), 1_000);
        assert_eq!(h.sum(), values.iter().map(|&v| u128::from(v)).sum::<u128>());
        assert_eq!(h.max(), *values.last().unwrap());
        assert_eq!(h.quantile(Ppm::MAX), Some(h.max()));
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut h = LogHistogram::new();
        h.record(u64::MAX);
        h.record(u64::MAX);
        h.record(0);
        assert_eq!(h.sum(), 2 * u128::from(u64::MAX));
        assert_eq!(h.p99(), Some(u64::MAX));
        assert_eq!(h.quantile(Ppm::ZERO), Some(0));
        assert_eq!(h.mean(), Some(((2 * u128::from(u64::MAX)) / 3) as u64));
    }
}
