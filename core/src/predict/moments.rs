//! Running mean and variance: Welford's algorithm in Q16 fixed point.
//!
//! # Algorithm
//!
//! B. P. Welford, "Note on a method for calculating corrected sums of squares
//! and products", Technometrics 4(3), 1962 (as presented in Knuth, TAOCP
//! vol. 2, 4.2.2). For the `n`th sample `x`, with `d = x - mean_{n-1}`:
//!
//! ```text
//! mean_n = mean_{n-1} + d / n
//! var_n  = var_{n-1} + (d * (x - mean_n) - var_{n-1}) / n     (population variance)
//! ```
//!
//! Unlike the textbook sum-of-squares formula this never subtracts two large
//! nearly equal numbers, and it needs no sums that grow with `n`. `d` and
//! `x - mean_n` always have the same sign, so their product is a plain `u128`
//! product of magnitudes.
//!
//! # Fixed point
//!
//! The mean and the variance are kept in Q16 (`value * 2^16`) in `u128`.
//! Amounts are clamped to [`MAX_AMOUNT`] = 2^60, so the mean is below 2^76.
//! The product `d * (x - mean_n)` is exact while it fits a `u128` (standard
//! deviations up to about 2^56) and saturates beyond: the variance then
//! saturates too, it never wraps. Each division truncates, so the mean may lag
//! the exact mean by at most `n * 2^-16` units after `n` samples (far below
//! one unit for any realistic `n`).
//!
//! The mean is cumulative (every sample has weight `1/n`): it is the most
//! precise predictor of a stationary series and the slowest to follow a
//! change, which is why the ensemble also keeps an
//! [`Ewma`](super::Ewma).

use crate::predict::fixed::{Q, clamp_amount, round_q16, sat_u64};
use crate::resource::MAX_AMOUNT;

/// Welford running mean and population variance of a `u64` series.
///
/// # Examples
///
/// ```
/// use respool_core::predict::Moments;
///
/// let mut m = Moments::new();
/// for x in [2, 4, 4, 4, 5, 5, 7, 9] {
///     m.push(x);
/// }
/// assert_eq!(m.mean(), Some(5));
/// assert_eq!(m.variance(), Some(4));
/// assert_eq!(m.std_dev(), Some(2));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Moments {
    /// Samples seen (saturating).
    count: u64,
    /// Mean, Q16.
    mean_q16: u128,
    /// Population variance, Q16 (saturating).
    var_q16: u128,
}

impl Moments {
    /// No samples.
    #[must_use]
    pub const fn new() -> Moments {
        Moments {
            count: 0,
            mean_q16: 0,
            var_q16: 0,
        }
    }

    /// Adds one sample (clamped to [`MAX_AMOUNT`]).
    pub fn push(&mut self, value: u64) {
        let x = u128::from(clamp_amount(value)) << Q;
        self.count = self.count.saturating_add(1);
        if self.count == 1 {
            self.mean_q16 = x;
            self.var_q16 = 0;
            return;
        }
        let n = u128::from(self.count);
        // d and d2 have the same sign: the new mean lies between the old mean and x.
        let (d, d2) = if x >= self.mean_q16 {
            let d = x.saturating_sub(self.mean_q16);
            self.mean_q16 = self.mean_q16.saturating_add(d.checked_div(n).unwrap_or(0));
            (d, x.saturating_sub(self.mean_q16))
        } else {
            let d = self.mean_q16.saturating_sub(x);
            self.mean_q16 = self.mean_q16.saturating_sub(d.checked_div(n).unwrap_or(0));
            (d, self.mean_q16.saturating_sub(x))
        };
        // Q16 * Q16 = Q32; back to Q16. Saturates for standard deviations
        // beyond about 2^56 (see the module documentation).
        let prod = d.checked_mul(d2).map_or(u128::MAX, |p| p >> Q);
        self.var_q16 = if prod >= self.var_q16 {
            self.var_q16.saturating_add(
                prod.saturating_sub(self.var_q16)
                    .checked_div(n)
                    .unwrap_or(0),
            )
        } else {
            self.var_q16.saturating_sub(
                self.var_q16
                    .saturating_sub(prod)
                    .checked_div(n)
                    .unwrap_or(0),
            )
        };
    }

    /// Samples seen.
    #[must_use]
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The mean, rounded to the nearest integer; `None` before the first sample.
    #[must_use]
    pub fn mean(&self) -> Option<u64> {
        (self.count > 0).then(|| round_q16(self.mean_q16).min(MAX_AMOUNT))
    }

    /// The mean in Q16 (`mean * 2^16`).
    #[must_use]
    pub const fn mean_q16(&self) -> u128 {
        self.mean_q16
    }

    /// The population variance (units squared), rounded to the nearest
    /// integer and saturating at `u64::MAX`; `None` before the first sample.
    #[must_use]
    pub fn variance(&self) -> Option<u64> {
        (self.count > 0).then(|| round_q16(self.var_q16))
    }

    /// The population standard deviation, rounded to the nearest integer;
    /// `None` before the first sample.
    #[must_use]
    pub fn std_dev(&self) -> Option<u64> {
        (self.count > 0).then(|| match self.var_q16.checked_mul(1 << Q) {
            // sqrt(var_q16 * 2^16) is the standard deviation in Q16.
            Some(var_q32) => round_q16(var_q32.isqrt()),
            // Huge variances: sqrt(var_q16) / 2^8, rounded down.
            None => sat_u64(self.var_q16.isqrt() >> 8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_table() {
        // (series, mean, population variance, std dev)
        let table: [(&[u64], u64, u64, u64); 6] = [
            (&[7], 7, 0, 0),
            (&[1, 2], 2, 0, 1), // mean 1.5 and sd 0.5 round up, var 0.25 rounds down
            (&[1, 3], 2, 1, 1), // var 1
            (&[10, 20, 30], 20, 67, 8), // var 66.67, sd 8.16
            (&[2, 4, 4, 4, 5, 5, 7, 9], 5, 4, 2),
            (&[1000, 1100, 900, 1000], 1000, 5000, 71), // var 5000, sd 70.7
        ];
        for (series, mean, var, sd) in table {
            let mut m = Moments::new();
            for &x in series {
                m.push(x);
            }
            assert_eq!(m.count(), series.len() as u64);
            assert_eq!(m.mean(), Some(mean), "{series:?}");
            assert_eq!(m.variance(), Some(var), "{series:?}");
            assert_eq!(m.std_dev(), Some(sd), "{series:?}");
        }
        assert_eq!(Moments::new().mean(), None);
        assert_eq!(Moments::new().variance(), None);
    }

    #[test]
    fn exact_q16_mean() {
        let mut m = Moments::new();
        m.push(1);
        m.push(2);
        assert_eq!(m.mean_q16(), 3 << 15, "1.5 in Q16");
    }

    #[test]
    fn extremes_saturate_without_wrapping() {
        let mut m = Moments::new();
        for i in 0..100 {
            m.push(if i % 2 == 0 { 0 } else { u64::MAX });
        }
        // u64::MAX is clamped to 2^60; the mean is 2^59.
        assert_eq!(m.mean(), Some(1 << 59));
        // The true variance 2^118 does not fit the Q16 product: saturated, not wrapped.
        assert!(m.variance().unwrap() >= 1 << 63);
        let mut c = Moments::new();
        for _ in 0..1000 {
            c.push(MAX_AMOUNT);
        }
        assert_eq!((c.mean(), c.variance()), (Some(MAX_AMOUNT), Some(0)));
    }
}
