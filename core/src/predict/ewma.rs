//! Exponential smoothing (an exponentially weighted moving average) in Q16.
//!
//! # Algorithm
//!
//! Simple exponential smoothing (R. G. Brown, *Statistical Forecasting for
//! Inventory Control*, 1959): the level starts at the first sample and each
//! later sample `x` moves it by a fixed fraction `alpha` of the gap,
//!
//! ```text
//! level = level + alpha * (x - level)
//! ```
//!
//! so a sample `k` steps old has weight `alpha * (1 - alpha)^k`. After a step
//! change of the series the remaining error shrinks by `(1 - alpha)` per
//! sample: with the default `alpha = 1/2` a level shift is followed to within
//! 1/16 of its size after four samples. On a stationary series with standard
//! deviation `s` the level's own standard deviation is
//! `s * sqrt(alpha / (2 - alpha))` (0.58 `s` for `alpha = 1/2`).
//!
//! # Fixed point
//!
//! The level is Q16 in a `u128` (amounts are clamped to 2^60, so the level is
//! below 2^76); `alpha` is a [`Ppm`] in `[0, 1]` (larger values count as
//! one). `(x - level) * alpha` is at most `2^76 * 10^6 < 2^96`, computed on
//! the magnitude so no signed arithmetic is needed; the level never leaves the
//! interval between its old value and `x`.

use crate::predict::fixed::{Q, approach_q16, clamp_amount, round_q16};
use crate::resource::{MAX_AMOUNT, Ppm};

/// An exponentially weighted moving average of a `u64` series.
///
/// # Examples
///
/// ```
/// use respool_core::predict::Ewma;
/// use respool_core::Ppm;
///
/// let half = Ppm::from_percent(50);
/// let mut e = Ewma::new();
/// assert_eq!(e.value(), None);
/// e.push(100, half); // the first sample sets the level
/// e.push(200, half); // half way: 150
/// e.push(200, half); // 175
/// assert_eq!(e.value(), Some(175));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ewma {
    /// The smoothed level, Q16.
    level_q16: u128,
    /// Whether a sample has been seen.
    started: bool,
}

impl Ewma {
    /// No samples.
    #[must_use]
    pub const fn new() -> Ewma {
        Ewma {
            level_q16: 0,
            started: false,
        }
    }

    /// Adds one sample (clamped to [`MAX_AMOUNT`]) with smoothing factor
    /// `alpha` (values above [`Ppm::ONE`] count as one).
    pub fn push(&mut self, value: u64, alpha: Ppm) {
        let x = u128::from(clamp_amount(value)) << Q;
        if self.started {
            self.level_q16 = approach_q16(self.level_q16, x, alpha);
        } else {
            self.level_q16 = x;
            self.started = true;
        }
    }

    /// The level rounded to the nearest integer; `None` before the first sample.
    #[must_use]
    pub fn value(&self) -> Option<u64> {
        self.started
            .then(|| round_q16(self.level_q16).min(MAX_AMOUNT))
    }

    /// The level in Q16 (`level * 2^16`).
    #[must_use]
    pub const fn level_q16(&self) -> u128 {
        self.level_q16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_table() {
        // (alpha ppm, series, level after the series)
        let table: [(u32, &[u64], u64); 7] = [
            (500_000, &[100], 100),
            (500_000, &[100, 200], 150),
            (500_000, &[100, 200, 200, 200], 188), // 187.5 rounds up
            (250_000, &[1000, 0], 750),
            (250_000, &[1000, 0, 0], 563), // 562.5
            (1_000_000, &[5, 9, 3], 3),    // alpha 1: last value
            (0, &[5, 9, 3], 5),            // alpha 0: first value forever
        ];
        for (alpha, series, want) in table {
            let mut e = Ewma::new();
            for &x in series {
                e.push(x, Ppm::from_ppm(alpha));
            }
            assert_eq!(e.value(), Some(want), "alpha {alpha}, {series:?}");
        }
    }

    #[test]
    fn q16_level_and_extremes() {
        let mut e = Ewma::new();
        e.push(1, Ppm::from_percent(50));
        e.push(2, Ppm::from_percent(50));
        assert_eq!(e.level_q16(), 3 << 15);
        let mut big = Ewma::new();
        for i in 0..64 {
            big.push(if i % 2 == 0 { u64::MAX } else { 0 }, Ppm::MAX);
        }
        assert_eq!(big.value(), Some(0), "alpha above one acts as one");
        big.push(u64::MAX, Ppm::ONE);
        assert_eq!(big.value(), Some(MAX_AMOUNT), "clamped to MAX_AMOUNT");
    }
}
