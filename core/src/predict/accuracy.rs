//! Accuracy counters: how many predictions landed within 10% of what was then
//! measured.
//!
//! The measure is the one Resource Central (Cortez et al., SOSP 2017) reports
//! as "bucket accuracy" in spirit: a prediction is a *hit* when
//! `|predicted - actual| <= actual / 10`, evaluated in integers as
//! `|p - a| * 10 <= a` with a 128-bit product, so it is exact for every pair of
//! `u64` values. An actual of zero is hit only by a prediction of zero.

use crate::predict::fixed::within_tenth;
use crate::resource::Ppm;

/// Counts of predictions and of hits (predictions within 10% of the actual).
///
/// [`SeriesPredictor`](super::SeriesPredictor) keeps one per predictor and one
/// for the ensemble and records into them itself (each prediction is made
/// before the sample it is scored on is learned). Callers can keep their own,
/// for example to score what they actually reserved.
///
/// # Examples
///
/// ```
/// use respool_core::predict::Accuracy;
/// use respool_core::Ppm;
///
/// let mut acc = Accuracy::new();
/// assert!(acc.record(105, 100)); // 5% off: a hit
/// assert!(!acc.record(150, 100)); // 50% off: a miss
/// assert_eq!((acc.hits(), acc.total()), (1, 2));
/// assert_eq!(acc.ratio(), Ppm::from_percent(50));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Accuracy {
    /// Predictions within 10% of the actual.
    hits: u64,
    /// All recorded predictions.
    total: u64,
}

impl Accuracy {
    /// No predictions recorded.
    #[must_use]
    pub const fn new() -> Accuracy {
        Accuracy { hits: 0, total: 0 }
    }

    /// Records one `(prediction, actual)` pair; returns whether it was a hit.
    /// Counters saturate at `u64::MAX`.
    pub fn record(&mut self, predicted: u64, actual: u64) -> bool {
        let hit = within_tenth(predicted, actual);
        self.total = self.total.saturating_add(1);
        if hit {
            self.hits = self.hits.saturating_add(1);
        }
        hit
    }

    /// Predictions within 10% of the actual.
    #[must_use]
    pub const fn hits(&self) -> u64 {
        self.hits
    }

    /// All recorded predictions.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.total
    }

    /// `hits / total` (zero when nothing was recorded).
    #[must_use]
    pub const fn ratio(&self) -> Ppm {
        Ppm::ratio(self.hits, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_table() {
        // (predicted, actual, hit)
        let table = [
            (100, 100, true),
            (110, 100, true),
            (111, 100, false),
            (90, 100, true),
            (89, 100, false),
            (0, 0, true),
            (1, 0, false),
            (0, 1, false),
            (u64::MAX, u64::MAX, true),
            (0, u64::MAX, false),
        ];
        let mut acc = Accuracy::new();
        let mut hits = 0;
        for (i, (p, a, hit)) in table.into_iter().enumerate() {
            assert_eq!(acc.record(p, a), hit, "{p} vs {a}");
            hits += u64::from(hit);
            assert_eq!((acc.hits(), acc.total()), (hits, i as u64 + 1));
        }
        assert_eq!(acc.ratio(), Ppm::from_ppm(500_000), "5 hits of 10");
        assert_eq!(Accuracy::new().ratio(), Ppm::ZERO);
    }

    #[test]
    fn counters_saturate() {
        let mut acc = Accuracy {
            hits: u64::MAX,
            total: u64::MAX,
        };
        assert!(acc.record(1, 1));
        assert_eq!((acc.hits(), acc.total()), (u64::MAX, u64::MAX));
        assert_eq!(acc.ratio(), Ppm::ONE);
    }
}
