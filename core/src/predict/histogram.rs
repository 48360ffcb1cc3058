//! A decaying histogram with log-spaced buckets, after the Kubernetes Vertical
//! Pod Autoscaler's recommender.
//!
//! # Where it comes from
//!
//! kubernetes/autoscaler, `vertical-pod-autoscaler/pkg/recommender/util/`:
//! `histogram.go` (exponential buckets, each 5% wider than the previous one;
//! `Percentile` returns the *end* of the bucket in which the cumulative weight
//! reaches the requested share) and `decaying_histogram.go` (exponential decay
//! with a half-life, 24 h in the recommender: instead of shrinking old weights,
//! a new sample's weight is multiplied by `2^((t - t_ref) / half_life)`; when
//! that factor grows too large the reference time is moved forward and every
//! stored weight is divided by the same power of two).
//!
//! # What differs, and why
//!
//! - **Bucket boundaries** are `2^(i/14)`: fourteen buckets per octave, each
//!   2^(1/14) = 1.0508 times as wide as the previous one (VPA: 1.05). An
//!   octave split evenly lets the index be computed from the bit length of the
//!   value and one search in a 13-entry table of mantissa thresholds, with no
//!   logarithm: `index(x) = 14 * floor(log2 x) + #{ j : T_j <= mantissa(x) }`
//!   where `T_j = ceil(2^(63 + j/14))` and `mantissa(x)` is `x` shifted so its
//!   top bit is bit 63. The index is exact (no rounding) and
//!   [`bucket_start`] inverts it exactly: for every `x`,
//!   `bucket_start(index(x)) <= x < bucket_start(index(x) + 1)`. Zero shares
//!   bucket 0 with one. The scale is the same for every unit (bytes,
//!   millicores, nanoseconds), so nobody has to pick a first bucket size.
//! - **A window of `B` buckets** (a const generic) is stored instead of all
//!   [`BUCKET_INDICES`] = 896 of them. The window is placed around the first
//!   sample and slides: a sample above it moves it up, and the buckets that
//!   fall off the bottom are merged into the new lowest bucket (their weight
//!   is kept but counted slightly higher, so percentiles can only move up:
//!   conservative); a sample below it moves it down as far as empty buckets at
//!   the top allow, and otherwise is counted in the lowest bucket (again
//!   conservative). `B = 64` spans 2^(64/14) = 23.7x.
//! - **Weights are integers**: a `u32` per bucket. A sample at time `t` weighs
//!   `2^16 * 2^((t - t_ref) / half_life)`, the exponent in Q16 and the power of
//!   two from a 17-entry table with linear interpolation (relative error below
//!   2.5 * 10^-4). When the exponent reaches 8 (VPA: 100, for `f64` weights) the
//!   reference moves forward by whole half-lives and every weight is shifted
//!   right by as many bits, so a new weight stays below 2^24. When a bucket
//!   would pass `u32::MAX`, the reference moves forward by one half-life and
//!   all weights, the new one included, are halved. Both are uniform scalings,
//!   so relative weights, and with them the percentiles, are unchanged (up to
//!   the integer rounding of tiny, long-decayed weights, which reach zero).
//! - **Clock**: time is a `u64` nanosecond timestamp from the caller (the core
//!   has no clock). A sample stamped before the reference time gets a weight
//!   below 2^16 (it is older), down to a minimum of 1. A half-life of zero
//!   disables decay: every sample weighs 2^16, and a full bucket halves all
//!   weights, which then acts as one step of decay.
//!
//! # Cost
//!
//! An insertion is one bucket index computation (a leading-zero count and a
//! 4-step binary search), one power of two, and one add; sliding the window or
//! renormalising touches all `B` buckets and is rare. A percentile walks at
//! most `B` buckets.

use crate::predict::fixed::{PPM_ONE, Q, pow2_q16, sat_u64};
use crate::resource::Ppm;

/// Buckets per octave: 14 buckets per doubling, each 2^(1/14) = 1.0508 times
/// the previous one.
pub const BUCKETS_PER_OCTAVE: usize = 14;

/// Number of bucket indices covering all of `u64` (64 octaves of 14).
pub const BUCKET_INDICES: usize = 64 * BUCKETS_PER_OCTAVE;

/// The window size used by [`SeriesPredictor`](super::SeriesPredictor) unless
/// told otherwise: 64 buckets (a 23.7x range), 256 bytes of weights.
pub const DEFAULT_BUCKETS: usize = 64;

/// Weight of a sample taken at the reference time (2^16).
const BASE_WEIGHT_EXP: u32 = 16;

/// Largest whole decay exponent before the reference time moves forward.
const MAX_DECAY_EXP: u128 = 8;

/// `ceil(2^(63 + j/14))` for `j = 1..=13`: a mantissa (the value shifted so
/// its top bit is bit 63) at or above entry `j - 1` lies in sub-bucket `j` or
/// higher. Computed with 80-digit decimal arithmetic; checked in the tests.
const MANTISSA_THRESHOLDS: [u64; BUCKETS_PER_OCTAVE - 1] = [
    0x867f_318b_8905_0f53,
    0x8d52_ce20_8af3_eb23,
    0x947f_1ea6_57dd_bb7a,
    0x9c08_a3b1_17c4_3215,
    0xa3f4_1855_35a9_f0b8,
    0xac46_751f_849d_eee5,
    0xb504_f333_f9de_6485,
    0xbe35_0f94_f167_3025,
    0xc7dc_8e95_0bb1_ca75,
    0xd201_7f75_ce29_95d4,
    0xdcaa_4035_4bef_8094,
    0xe7dd_818d_3a0d_24f8,
    0xf3a2_4b25_f13c_5a66,
];

/// The bucket index of `value`, in `0..BUCKET_INDICES`.
///
/// # Examples
///
/// ```
/// use respool_core::predict::histogram::{bucket_index, bucket_start};
///
/// assert_eq!(bucket_index(0), 0);
/// assert_eq!(bucket_index(1), 0);
/// assert_eq!(bucket_index(1024), 140); // 2^10: octave 10, first sub-bucket
/// let i = bucket_index(1000);
/// assert!(bucket_start(i) <= 1000 && 1000 < bucket_start(i + 1));
/// ```
#[must_use]
pub fn bucket_index(value: u64) -> usize {
    if value == 0 {
        return 0;
    }
    let lz = value.leading_zeros(); // < 64 because value != 0
    let octave = 63u32.saturating_sub(lz);
    let mantissa = value.checked_shl(lz).unwrap_or(0);
    let sub = MANTISSA_THRESHOLDS.partition_point(|&t| t <= mantissa);
    usize::try_from(octave)
        .unwrap_or(0)
        .saturating_mul(BUCKETS_PER_OCTAVE)
        .saturating_add(sub)
}

/// The smallest value whose bucket index is at least `index`: 0 for index 0,
/// `u64::MAX` for indices at or beyond [`BUCKET_INDICES`] (no such value).
/// Non-decreasing in `index`; buckets narrower than one unit (below 21) may
/// hold no integer at all and then share their start with the next bucket.
#[must_use]
pub fn bucket_start(index: usize) -> u64 {
    if index == 0 {
        return 0;
    }
    if index >= BUCKET_INDICES {
        return u64::MAX;
    }
    let octave = u32::try_from(index / BUCKETS_PER_OCTAVE).unwrap_or(63);
    let sub = index % BUCKETS_PER_OCTAVE;
    let Some(threshold) = sub
        .checked_sub(1)
        .and_then(|j| MANTISSA_THRESHOLDS.get(j).copied())
    else {
        return 1u64.checked_shl(octave).unwrap_or(u64::MAX);
    };
    // The smallest x with x * 2^(63 - octave) >= threshold.
    let shift = 63u32.saturating_sub(octave);
    let whole = threshold.checked_shr(shift).unwrap_or(0);
    let exact = whole.checked_shl(shift).unwrap_or(0) == threshold;
    whole.saturating_add(u64::from(!exact))
}

/// The largest value whose bucket index is at most `index` (the "end of the
/// bucket" that VPA's `Percentile` returns).
#[must_use]
pub fn bucket_end(index: usize) -> u64 {
    match index.checked_add(1) {
        Some(next) if next < BUCKET_INDICES => bucket_start(next).saturating_sub(1),
        _ => u64::MAX,
    }
}

/// A decaying histogram of a `u64` series over a sliding window of `B`
/// log-spaced buckets.
///
/// See the [module documentation](self) for the algorithm and its source.
///
/// # Examples
///
/// ```
/// use respool_core::predict::DecayingHistogram;
/// use respool_core::Ppm;
///
/// const DAY: u64 = 86_400_000_000_000;
/// let mut h = DecayingHistogram::<64>::new();
/// for i in 0..100u64 {
///     h.add(1000 + i, i, DAY); // 1000..=1099, all at about the same time
/// }
/// // The p95 is the end of the bucket holding the 95th percentile.
/// let p95 = h.percentile(Ppm::from_percent(95)).unwrap();
/// assert!((1094..=1160).contains(&p95));
/// // A day later the old samples weigh half as much as new ones: 100 new
/// // samples of 5000 now hold 2/3 of the weight, so the median moves up.
/// for i in 0..100 {
///     h.add(5000, DAY + i, DAY);
/// }
/// assert!(h.percentile(Ppm::from_percent(50)).unwrap() >= 5000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecayingHistogram<const B: usize> {
    /// Weight per bucket of the window; `weights[k]` is bucket `lo + k`.
    weights: [u32; B],
    /// Sum of `weights`.
    total: u64,
    /// Reference time of the weights, in the caller's nanoseconds.
    reference_ns: u64,
    /// Bucket index of `weights[0]`, at most `BUCKET_INDICES - B`.
    lo: u16,
}

impl<const B: usize> Default for DecayingHistogram<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const B: usize> DecayingHistogram<B> {
    /// Compile-time check of the window size.
    const VALID: () = assert!(
        B > 0 && B <= BUCKET_INDICES,
        "the window needs 1 to 896 buckets"
    );

    /// An empty histogram.
    #[must_use]
    pub const fn new() -> Self {
        let () = Self::VALID;
        DecayingHistogram {
            weights: [0; B],
            total: 0,
            reference_ns: 0,
            lo: 0,
        }
    }

    /// Whether no weight is left (never filled, or everything decayed away).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The sum of all weights (a sample at the reference time weighs 2^16).
    #[must_use]
    pub const fn total_weight(&self) -> u64 {
        self.total
    }

    /// The reference time of the weights, in the caller's nanoseconds.
    #[must_use]
    pub const fn reference_ns(&self) -> u64 {
        self.reference_ns
    }

    /// The smallest and largest value the window resolves: values below are
    /// counted in its lowest bucket, values above slide it up.
    #[must_use]
    pub fn window(&self) -> (u64, u64) {
        let lo = usize::from(self.lo);
        (
            bucket_start(lo),
            bucket_end(lo.saturating_add(B).saturating_sub(1)),
        )
    }

    /// The weight of the bucket holding `value` (zero when outside the window).
    #[must_use]
    pub fn weight_at(&self, value: u64) -> u32 {
        bucket_index(value)
            .checked_sub(usize::from(self.lo))
            .and_then(|k| self.weights.get(k).copied())
            .unwrap_or(0)
    }

    /// Adds a sample of `value` taken at `at_ns` (caller's clock, nanoseconds),
    /// with weights halving every `half_life_ns` (zero: no decay).
    pub fn add(&mut self, value: u64, at_ns: u64, half_life_ns: u64) {
        let index = bucket_index(value);
        if self.total == 0 {
            // Empty (new, or decayed away): centre the window on this sample.
            let max_lo = BUCKET_INDICES.saturating_sub(B);
            let lo = index.saturating_sub(B / 2).min(max_lo);
            self.lo = u16::try_from(lo).unwrap_or(0);
            self.reference_ns = at_ns;
            self.weights = [0; B];
        }
        let mut weight = self.sample_weight(at_ns, half_life_ns);
        let slot = self.slot_for(index, half_life_ns);
        let current = self.weights.get(slot).copied().unwrap_or(0);
        if current.checked_add(weight).is_none() {
            // One half-life forward: every weight, this one included, halves.
            self.renormalize(1, half_life_ns);
            weight = (weight >> 1).max(1);
        }
        if let Some(w) = self.weights.get_mut(slot) {
            *w = w.saturating_add(weight);
            self.total = self.total.saturating_add(u64::from(weight));
        }
    }

    /// The `p`-th percentile (`p` capped at 100%): the end of the first bucket
    /// at which the cumulative weight reaches `p` of the total, as VPA does.
    /// `None` when the histogram is empty.
    #[must_use]
    pub fn percentile(&self, p: Ppm) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let share = u128::from(p.as_ppm()).min(PPM_ONE);
        let scaled = u128::from(self.total).saturating_mul(share);
        // ceil(total * p), at least 1 so that p = 0 finds the lowest sample.
        let threshold = scaled.div_ceil(PPM_ONE).max(1);
        let mut cumulative: u128 = 0;
        let lo = usize::from(self.lo);
        let mut last = lo;
        for (k, &w) in self.weights.iter().enumerate() {
            if w == 0 {
                continue;
            }
            last = lo.saturating_add(k);
            cumulative = cumulative.saturating_add(u128::from(w));
            if cumulative >= threshold {
                break;
            }
        }
        Some(bucket_end(last))
    }

    /// The weight of a sample taken at `at_ns`, moving the reference time
    /// forward first when the decay exponent would reach `MAX_DECAY_EXP`.
    /// The result is in `[1, 2^24)`.
    fn sample_weight(&mut self, at_ns: u64, half_life_ns: u64) -> u32 {
        let base = 1u32 << BASE_WEIGHT_EXP;
        if half_life_ns == 0 {
            return base;
        }
        let hl = u128::from(half_life_ns);
        let exponent = if at_ns >= self.reference_ns {
            // (t - t_ref) / half_life in Q16: at most 2^80, no overflow.
            let mut e = (u128::from(at_ns.saturating_sub(self.reference_ns)) << Q)
                .checked_div(hl)
                .unwrap_or(0);
            let whole = e >> Q;
            if whole >= MAX_DECAY_EXP {
                self.renormalize(whole, half_life_ns);
                e = e.saturating_sub(whole << Q);
            }
            // e < 2^16 * MAX_DECAY_EXP: fits a u32 with the base exponent added.
            u32::try_from(e)
                .unwrap_or(0)
                .saturating_add(BASE_WEIGHT_EXP << Q)
        } else {
            let e = (u128::from(self.reference_ns.saturating_sub(at_ns)) << Q)
                .checked_div(hl)
                .unwrap_or(0);
            let base_exp = u128::from(BASE_WEIGHT_EXP << Q);
            u32::try_from(base_exp.saturating_sub(e)).unwrap_or(0)
        };
        u32::try_from(pow2_q16(exponent)).unwrap_or(u32::MAX)
    }

    /// Moves the reference time forward by `halvings` half-lives and divides
    /// every weight by `2^halvings` (a uniform scaling: percentiles keep).
    fn renormalize(&mut self, halvings: u128, half_life_ns: u64) {
        let step = sat_u64(halvings.saturating_mul(u128::from(half_life_ns)));
        self.reference_ns = self.reference_ns.saturating_add(step);
        let shift = u32::try_from(halvings).unwrap_or(u32::MAX);
        let mut total: u64 = 0;
        for w in &mut self.weights {
            *w = w.checked_shr(shift).unwrap_or(0);
            total = total.saturating_add(u64::from(*w));
        }
        self.total = total;
    }

    /// The window position for bucket `index`, sliding the window if needed.
    fn slot_for(&mut self, index: usize, half_life_ns: u64) -> usize {
        let lo = usize::from(self.lo);
        if let Some(slot) = index.checked_sub(lo).filter(|&s| s < B) {
            return slot;
        }
        if index < lo {
            // Slide down as far as empty top buckets allow.
            let empty_top = self.weights.iter().rev().take_while(|&&w| w == 0).count();
            let down = lo.saturating_sub(index).min(empty_top);
            if down > 0 {
                for k in (0..B).rev() {
                    let moved = k
                        .checked_sub(down)
                        .and_then(|from| self.weights.get(from).copied())
                        .unwrap_or(0);
                    if let Some(w) = self.weights.get_mut(k) {
                        *w = moved;
                    }
                }
                self.lo = u16::try_from(lo.saturating_sub(down)).unwrap_or(0);
            }
            return index.saturating_sub(usize::from(self.lo));
        }
        // Slide up so that `index` is the top bucket; merge what falls off
        // the bottom into the new lowest bucket.
        let up = index.saturating_add(1).saturating_sub(lo.saturating_add(B));
        let merged: u64 = self
            .weights
            .iter()
            .take(up.saturating_add(1))
            .map(|&w| u64::from(w))
            .sum();
        let mut merged = merged;
        // The merged bucket may not fit a u32: halve everything until it does
        // (at most log2(B) + 1 times).
        for _ in 0..64 {
            if merged <= u64::from(u32::MAX) {
                break;
            }
            self.renormalize(1, half_life_ns);
            merged >>= 1;
        }
        for k in 0..B {
            let moved = if k == 0 {
                u32::try_from(merged).unwrap_or(u32::MAX)
            } else {
                k.checked_add(up)
                    .and_then(|from| self.weights.get(from).copied())
                    .unwrap_or(0)
            };
            if let Some(w) = self.weights.get_mut(k) {
                *w = moved;
            }
        }
        self.total = self.weights.iter().map(|&w| u64::from(w)).sum();
        self.lo = u16::try_from(lo.saturating_add(up)).unwrap_or(0);
        B.saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const HOUR: u64 = 3_600_000_000_000;

    #[test]
    #[allow(clippy::float_arithmetic, clippy::cast_precision_loss)]
    fn thresholds_are_powers_of_two_fourteenths() {
        for (j, &t) in MANTISSA_THRESHOLDS.iter().enumerate() {
            let exact = 2f64.powf((j + 1) as f64 / 14.0);
            let got = t as f64 / 2f64.powi(63);
            assert!((got / exact - 1.0).abs() < 1e-15, "j={j}");
        }
        assert!(MANTISSA_THRESHOLDS.windows(2).all(|w| w[0] < w[1]));
        assert!(MANTISSA_THRESHOLDS[0] > 1 << 63);
    }

    #[test]
    fn index_table() {
        // (value, index): hand-checked against 14 * log2(value).
        let table = [
            (0, 0),
            (1, 0),
            (2, 14),
            (3, 22), // 14 * 1.585 = 22.19
            (4, 28),
            (100, 93),   // 14 * 6.644 = 93.01
            (1000, 139), // 14 * 9.966 = 139.52
            (1024, 140),
            (1_000_000, 279), // 14 * 19.93 = 279.04
            (1 << 60, 840),
            (u64::MAX, 895),
        ];
        for (v, want) in table {
            assert_eq!(bucket_index(v), want, "value {v}");
        }
    }

    #[test]
    fn start_inverts_index_exactly() {
        let mut probes: Vec<u64> = (0..5000).collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            probes.push(x >> (x % 64));
        }
        for i in 1..BUCKET_INDICES {
            let s = bucket_start(i);
            probes.extend([s.saturating_sub(1), s, s.saturating_add(1)]);
        }
        probes.push(u64::MAX);
        for v in probes {
            let i = bucket_index(v);
            assert!(i < BUCKET_INDICES);
            assert!(bucket_start(i) <= v, "start({i}) > {v}");
            assert!(v <= bucket_end(i), "{v} > end({i})");
            if i + 1 < BUCKET_INDICES {
                assert!(v < bucket_start(i + 1), "{v} >= start({})", i + 1);
            }
        }
        for i in 0..BUCKET_INDICES {
            assert!(bucket_start(i) <= bucket_start(i + 1), "monotone at {i}");
        }
        // (index, start): growth of 5.08% per bucket once buckets are wider than one.
        let table = [
            (0, 0),
            (1, 2),
            (14, 2),
            (139, 975), // 2^(139/14) = 974.2
            (140, 1024),
            (141, 1076), // 1024 * 1.0508 = 1076.0
            (BUCKET_INDICES, u64::MAX),
        ];
        for (i, want) in table {
            assert_eq!(bucket_start(i), want, "index {i}");
        }
        assert_eq!(bucket_end(BUCKET_INDICES - 1), u64::MAX);
        assert_eq!(bucket_end(usize::MAX), u64::MAX);
    }

    #[test]
    fn percentiles_without_decay() {
        let mut h = DecayingHistogram::<64>::new();
        assert_eq!(h.percentile(Ppm::from_percent(50)), None);
        // 10 samples of 100, 10 of 200: 50% is in 100's bucket, 51% in 200's.
        for _ in 0..10 {
            h.add(100, 0, 0);
            h.add(200, 0, 0);
        }
        assert_eq!(h.total_weight(), 20 << 16);
        let b100 = bucket_end(bucket_index(100));
        let b200 = bucket_end(bucket_index(200));
        // (percentile ppm, expected)
        let table = [
            (0, b100),
            (500_000, b100),
            (510_000, b200),
            (950_000, b200),
            (1_000_000, b200),
            (u32::MAX, b200),
        ];
        for (p, want) in table {
            assert_eq!(h.percentile(Ppm::from_ppm(p)), Some(want), "p={p}");
        }
        // ceil(2^(94/14)) - 1 = 105 and ceil(2^(109/14)) - 1 = 210.
        assert_eq!((b100, b200), (105, 210));
    }

    #[test]
    fn decay_halves_weight_per_half_life() {
        let mut h = DecayingHistogram::<64>::new();
        h.add(1000, 0, HOUR);
        assert_eq!(h.weight_at(1000), 1 << 16);
        h.add(2000, HOUR, HOUR); // one half-life later: twice the weight
        assert_eq!(h.weight_at(2000), 1 << 17);
        h.add(3000, HOUR / 2 * 5, HOUR); // 2.5 half-lives: 2^18.5 = 370727.6
        assert_eq!(h.weight_at(3000), 370_728); // table entry 8 is 92682, times 4
        // A sample stamped before the reference counts less (older).
        h.add(4000, 0, HOUR);
        assert_eq!(h.weight_at(4000), 1 << 16);
        let mut old = DecayingHistogram::<64>::new();
        old.add(1000, 10 * HOUR, HOUR);
        old.add(1000, 9 * HOUR, HOUR);
        assert_eq!(old.total_weight(), (1 << 16) + (1 << 15));
    }

    #[test]
    fn renormalization_keeps_relative_weights() {
        let mut h = DecayingHistogram::<64>::new();
        h.add(1000, 0, HOUR);
        // Ten half-lives later: exponent 10 >= 8, the reference moves forward
        // by 10 half-lives and the old weight 2^16 becomes 2^6.
        h.add(2000, 10 * HOUR, HOUR);
        assert_eq!(h.reference_ns(), 10 * HOUR);
        assert_eq!((h.weight_at(1000), h.weight_at(2000)), (1 << 6, 1 << 16));
        // 40 half-lives: the old weights shift out entirely.
        h.add(3000, 50 * HOUR, HOUR);
        assert_eq!(h.weight_at(1000), 0);
        assert_eq!(h.total_weight(), 1 << 16);
        assert_eq!(
            h.percentile(Ppm::ZERO),
            Some(bucket_end(bucket_index(3000)))
        );
    }

    #[test]
    fn full_bucket_halves_everything() {
        let mut h = DecayingHistogram::<64>::new();
        h.add(500, 0, HOUR);
        // 2^16 samples of weight 2^16 fill a u32 bucket: it must halve, not wrap.
        for _ in 0..(1 << 16) {
            h.add(1000, 0, HOUR);
        }
        assert_eq!(h.reference_ns(), HOUR, "moved by one half-life");
        assert_eq!(h.weight_at(500), 1 << 15);
        // (2^32 - 2^16) / 2 + 2^16 / 2
        assert_eq!(h.weight_at(1000), 1 << 31);
        assert_eq!(h.total_weight(), (1 << 31) + (1 << 15));
    }

    #[test]
    fn window_slides_up_and_down() {
        let mut h = DecayingHistogram::<16>::new();
        h.add(1000, 0, 0); // index 139: window 131..147
        assert_eq!(h.window(), (bucket_start(131), bucket_end(146)));
        // Far above: window slides up to end at index(10^6) = 279.
        h.add(1_000_000, 0, 0);
        assert_eq!(h.window().1, bucket_end(279));
        // 1000 was merged into the lowest bucket: the median is its end.
        assert_eq!(h.percentile(Ppm::from_percent(50)), Some(bucket_end(264)));
        assert_eq!(h.total_weight(), 2 << 16);
        // Below the window with a full top bucket: counted in the lowest bucket.
        h.add(10, 0, 0);
        assert_eq!(h.window().1, bucket_end(279));
        assert_eq!(h.weight_at(bucket_start(264)), 2 << 16);
        // An emptied histogram recentres on the next sample.
        let mut e = DecayingHistogram::<16>::new();
        e.add(1_000_000, 0, 0);
        let (lo, hi) = e.window();
        assert!(lo <= 1_000_000 && 1_000_000 <= hi);
        // Slide down into empty top buckets.
        let mut d = DecayingHistogram::<16>::new();
        d.add(1000, 0, 0); // window 131..=146, 1000 at slot 8
        d.add(700, 0, 0); // index 132: inside
        d.add(300, 0, 0); // index 115: needs 16 down, 7 top buckets empty
        assert_eq!(usize::from(d.lo), 124);
        assert_eq!(d.weight_at(1000), 1 << 16);
        assert_eq!(
            d.weight_at(bucket_start(124)),
            1 << 16,
            "300 counted at the bottom"
        );
    }

    #[test]
    fn extreme_inputs() {
        let mut h = DecayingHistogram::<64>::new();
        for (i, v) in [0, u64::MAX, 0, 1 << 60, 1, u64::MAX]
            .into_iter()
            .enumerate()
        {
            h.add(v, (i as u64).wrapping_mul(u64::MAX / 3), 1);
        }
        assert!(h.percentile(Ppm::ONE).is_some());
        let mut t = DecayingHistogram::<1>::new();
        t.add(5, u64::MAX, u64::MAX);
        t.add(u64::MAX, 0, 1);
        assert_eq!(t.percentile(Ppm::ZERO), Some(u64::MAX));
        let mut all = DecayingHistogram::<BUCKET_INDICES>::new();
        all.add(0, 0, 0);
        all.add(u64::MAX, 0, 0);
        assert_eq!(all.window(), (0, u64::MAX));
        assert_eq!(all.percentile(Ppm::from_percent(50)), Some(1));
    }
}
