//! The ensemble over one series: four predictors, scored on every sample
//! before they learn it, the best one picked. See the
//! [parent module](super) for the algorithm, the confidence formula and the
//! bounds it guarantees.

use crate::predict::fixed::{NO_SCORE, PPM_ONE, clamp_amount, relative_error, smooth_score};
use crate::predict::histogram::DEFAULT_BUCKETS;
use crate::predict::{
    Accuracy, DecayingHistogram, Ewma, Moments, PredictConfig, Prediction, SizeRegression, Source,
};
use crate::resource::{MAX_AMOUNT, Ppm};

/// Number of learned predictors.
const N: usize = Source::PREDICTORS.len();
/// Index of [`Source::Mean`] in [`Source::PREDICTORS`].
const MEAN: usize = 0;
/// Index of [`Source::Ewma`].
const EWMA: usize = 1;
/// Index of [`Source::Histogram`].
const HISTOGRAM: usize = 2;
/// Index of [`Source::Regression`].
const REGRESSION: usize = 3;

/// The window of the residual histogram: 24 buckets span 2^(24/14) = 3.3x,
/// misses from about a third of the prediction to three times it at 5%
/// resolution (the window slides, conservatively, for wilder ones).
pub const RESIDUAL_BUCKETS: usize = 24;

/// The slow error average behind the confidence covers about this many of
/// the ensemble's latest predictions (all of them while fewer were made).
pub const CONFIDENCE_WINDOW: u64 = 16;

/// Predictors of one `u64` series with an optional size feature, and the
/// ensemble that picks among them.
///
/// `B` is the histogram window in buckets (default [`DEFAULT_BUCKETS`]).
/// The configuration is passed to every call rather than stored (see the
/// [module documentation](super)); pass the same one each time.
///
/// # Examples
///
/// ```
/// use respool_core::predict::{PredictConfig, SeriesPredictor, Source};
///
/// let cfg = PredictConfig::default();
/// let mut p: SeriesPredictor = SeriesPredictor::new();
/// // Peak memory proportional to the input size: 64 bytes per input byte.
/// for (i, size) in [10_000u64, 80_000, 30_000, 55_000, 20_000, 95_000, 40_000]
///     .into_iter()
///     .enumerate()
/// {
///     p.observe(&cfg, 64 * size, Some(size), i as u64);
/// }
/// let est = p.predict(&cfg, Some(70_000), 0);
/// assert_eq!(est.source, Source::Regression);
/// assert_eq!(est.value, 64 * 70_000);
/// assert!(est.is_confident(&cfg));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeriesPredictor<const B: usize = DEFAULT_BUCKETS> {
    /// Cumulative mean and variance.
    moments: Moments,
    /// Exponential smoothing.
    ewma: Ewma,
    /// Decaying histogram for percentiles.
    histogram: DecayingHistogram<B>,
    /// Regression on the size feature.
    regression: SizeRegression,
    /// The ensemble's misses: `actual / predicted` of every scored
    /// prediction, in ppm (1,000,000 = spot on), decaying like `histogram`.
    /// Its percentile is the margin a reserve adds to a prediction.
    residuals: DecayingHistogram<RESIDUAL_BUCKETS>,
    /// Recent relative error of each predictor, ppm (`NO_SCORE`: not scored).
    errors: [u32; N],
    /// Recent relative error of the ensemble's own predictions, ppm,
    /// smoothed with `error_alpha` (fast).
    ensemble_error: u32,
    /// The same, averaged over the last `CONFIDENCE_WINDOW` predictions (slow).
    ensemble_error_slow: u32,
    /// Hits within 10% per predictor.
    accuracy: [Accuracy; N],
    /// Hits within 10% of the ensemble's predictions.
    ensemble_accuracy: Accuracy,
    /// Largest value observed (out-of-memory bumps included).
    max_observed: u64,
    /// Largest size observed.
    max_size: u64,
    /// Reserve floor after an out-of-memory kill (0: none).
    oom_floor: u64,
    /// When the floor was set, caller's nanoseconds.
    oom_at_ns: u64,
}

impl<const B: usize> Default for SeriesPredictor<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const B: usize> SeriesPredictor<B> {
    /// No history.
    #[must_use]
    pub const fn new() -> Self {
        SeriesPredictor {
            moments: Moments::new(),
            ewma: Ewma::new(),
            histogram: DecayingHistogram::new(),
            regression: SizeRegression::new(),
            residuals: DecayingHistogram::new(),
            errors: [NO_SCORE; N],
            ensemble_error: NO_SCORE,
            ensemble_error_slow: NO_SCORE,
            accuracy: [Accuracy::new(); N],
            ensemble_accuracy: Accuracy::new(),
            max_observed: 0,
            max_size: 0,
            oom_floor: 0,
            oom_at_ns: 0,
        }
    }

    /// Records one measured value (clamped to [`MAX_AMOUNT`]), with the size
    /// feature of the task if known, at `at_ns` on the caller's clock.
    ///
    /// First scores what every predictor, and the ensemble, would have
    /// predicted for this sample (updating the error scores and the accuracy
    /// counters), then learns the sample.
    pub fn observe(&mut self, cfg: &PredictConfig, value: u64, size: Option<u64>, at_ns: u64) {
        let cfg = cfg.sanitized();
        let value = clamp_amount(value);
        let candidates = self.candidates(&cfg, size);
        if self.has_history(&cfg) {
            let chosen = self
                .pick(|i| candidates.get(i).is_some_and(Option::is_some))
                .and_then(|(i, _)| candidates.get(i).copied().flatten());
            if let Some(p) = chosen {
                self.residuals
                    .add(miss_ratio(value, p), at_ns, cfg.half_life_ns);
                self.ensemble_accuracy.record(p, value);
                let error = relative_error(p, value);
                self.ensemble_error = smooth_score(self.ensemble_error, error, cfg.error_alpha);
                // Weight 1/n for the first predictions, then 1/CONFIDENCE_WINDOW.
                let n = self.ensemble_accuracy.total().clamp(1, CONFIDENCE_WINDOW);
                let slow_alpha = Ppm::ratio(1, n);
                self.ensemble_error_slow =
                    smooth_score(self.ensemble_error_slow, error, slow_alpha);
            }
        }
        for ((candidate, error), accuracy) in candidates
            .iter()
            .zip(self.errors.iter_mut())
            .zip(self.accuracy.iter_mut())
        {
            if let Some(p) = *candidate {
                accuracy.record(p, value);
                *error = smooth_score(*error, relative_error(p, value), cfg.error_alpha);
            }
        }
        self.moments.push(value);
        self.ewma.push(value, cfg.ewma_alpha);
        self.histogram.add(value, at_ns, cfg.half_life_ns);
        if let Some(size) = size {
            self.regression.push(size, value, cfg.regression_window);
            self.max_size = self.max_size.max(size);
        }
        self.max_observed = self.max_observed.max(value);
        if cfg.half_life_ns > 0 && at_ns.saturating_sub(self.oom_at_ns) >= cfg.half_life_ns {
            self.oom_floor = 0;
        }
    }

    /// Records an out-of-memory kill at `usage`: the bumped value
    /// [`PredictConfig::oom_bump`] enters the histogram and the maximum, and
    /// every reserve is at least that value for one half-life. Returns the
    /// bumped value. The point predictors (mean, EWMA, regression) do not see
    /// it: they model measured usage, which a kill cut short.
    pub fn observe_oom(&mut self, cfg: &PredictConfig, usage: u64, at_ns: u64) -> u64 {
        let cfg = cfg.sanitized();
        let bumped = cfg.oom_bump(usage);
        self.histogram.add(bumped, at_ns, cfg.half_life_ns);
        self.max_observed = self.max_observed.max(bumped);
        self.oom_floor = self.oom_floor.max(bumped);
        self.oom_at_ns = at_ns;
        bumped
    }

    /// The prediction for a task with the given size feature.
    ///
    /// With fewer than [`PredictConfig::min_samples`] samples: `fallback` as
    /// the value, `max(fallback, out-of-memory floor)` as the reserve, zero
    /// confidence and [`Source::Fallback`]. Otherwise the predictor with the
    /// lowest recent error (the regression only when `size` is given), its
    /// reserve and its confidence; see the [module documentation](super).
    #[must_use]
    pub fn predict(&self, cfg: &PredictConfig, size: Option<u64>, fallback: u64) -> Prediction {
        let cfg = cfg.sanitized();
        let fallback_prediction = Prediction {
            value: fallback,
            upper: fallback.max(self.oom_floor),
            confidence: Ppm::ZERO,
            source: Source::Fallback,
        };
        if !self.has_history(&cfg) {
            return fallback_prediction;
        }
        // Only the chosen predictor (and the histogram, for the reserve) is
        // evaluated; `available` agrees with `candidate(..).is_some()`, so the
        // pick is the one `observe` scores.
        let Some((index, score)) = self.pick(|i| self.available(i, size)) else {
            return fallback_prediction;
        };
        let (Some(value), Some(&source)) = (
            self.candidate(index, &cfg, size),
            Source::PREDICTORS.get(index),
        ) else {
            return fallback_prediction;
        };
        // The class's own misses: the prediction times the percentile of
        // `actual / predicted` (never below 1; the prediction alone before
        // any was scored).
        let missed = self
            .residuals
            .percentile(cfg.percentile)
            .map_or(value, |miss| {
                Ppm::from_ppm(u32::try_from(miss).unwrap_or(u32::MAX))
                    .max(Ppm::ONE)
                    .apply_ceil(value)
            });
        let spread = match source {
            // The histogram mixes all sizes: no use for a size-based estimate.
            Source::Regression => missed,
            // At least the percentile of the values themselves (VPA's
            // figure): the ensemble may have switched to a predictor whose
            // misses are wider than those recorded.
            _ => self
                .candidate(HISTOGRAM, &cfg, size)
                .map_or(missed, |p| p.max(missed)),
        };
        let margin = Ppm::ONE.saturating_add(cfg.safety_margin);
        let cap = margin.apply_ceil(self.bound(size));
        let upper = margin
            .apply_ceil(spread)
            .min(cap)
            .max(value)
            .max(self.oom_floor)
            .min(MAX_AMOUNT);
        Prediction {
            value,
            upper,
            confidence: self.confidence(&cfg, score),
            source,
        }
    }

    /// Whether there are enough samples to predict.
    fn has_history(&self, cfg: &PredictConfig) -> bool {
        self.moments.count() >= u64::from(cfg.min_samples)
    }

    /// What predictor `index` (in [`Source::PREDICTORS`] order) predicts for
    /// `size`, capped at `bound(size)`; `None` where it cannot predict.
    fn candidate(&self, index: usize, cfg: &PredictConfig, size: Option<u64>) -> Option<u64> {
        let max = self.max_observed;
        match index {
            MEAN => self.moments.mean().map(|v| v.min(max)),
            EWMA => self.ewma.value().map(|v| v.min(max)),
            HISTOGRAM => self
                .histogram
                .percentile(cfg.percentile)
                .filter(|_| self.moments.count() > 0)
                .map(|v| v.min(max)),
            REGRESSION => size
                .and_then(|s| self.regression.predict(s))
                .map(|v| v.min(self.bound(size))),
            _ => None,
        }
    }

    /// Whether `candidate(index, _, size)` is `Some`, without computing it.
    fn available(&self, index: usize, size: Option<u64>) -> bool {
        match index {
            MEAN => self.moments.count() > 0,
            EWMA => self.ewma.value().is_some(),
            HISTOGRAM => !self.histogram.is_empty() && self.moments.count() > 0,
            REGRESSION => size.is_some() && self.regression.count() >= 2,
            _ => false,
        }
    }

    /// Every predictor's prediction for `size` (see `candidate`).
    fn candidates(&self, cfg: &PredictConfig, size: Option<u64>) -> [Option<u64>; N] {
        core::array::from_fn(|i| self.candidate(i, cfg, size))
    }

    /// The available predictor with the lowest score (ties to the earlier
    /// one): its index and score.
    fn pick(&self, available: impl Fn(usize) -> bool) -> Option<(usize, u32)> {
        let mut best: Option<(usize, u32)> = None;
        for (i, &score) in self.errors.iter().enumerate() {
            if available(i) && best.is_none_or(|(_, s)| score < s) {
                best = Some((i, score));
            }
        }
        best
    }

    /// Confidence from the sample count and the recent error: the larger of
    /// the ensemble's fast and slow error averages (the chosen predictor's
    /// score before the ensemble was ever scored).
    fn confidence(&self, cfg: &PredictConfig, chosen_score: u32) -> Ppm {
        let error = if self.ensemble_error == NO_SCORE {
            chosen_score
        } else {
            self.ensemble_error.max(self.ensemble_error_slow)
        };
        let error = if error == NO_SCORE { u32::MAX } else { error };
        let full = u64::from(cfg.full_confidence_samples);
        let count = Ppm::ratio(self.moments.count().min(full), full);
        let zero = cfg.zero_confidence_error.as_ppm();
        let quality = Ppm::ratio(
            u64::from(zero.saturating_sub(error.min(zero))),
            u64::from(zero),
        );
        let c = u128::from(count.as_ppm()).saturating_mul(u128::from(quality.as_ppm())) / PPM_ONE;
        Ppm::from_ppm(u32::try_from(c).unwrap_or(u32::MAX).min(Ppm::ONE.as_ppm()))
    }

    /// `max_observed * max(1, size / max_size)`, capped at [`MAX_AMOUNT`]: no
    /// point prediction exceeds it.
    #[must_use]
    pub fn bound(&self, size: Option<u64>) -> u64 {
        match size {
            Some(s) if self.max_size > 0 && s > self.max_size => {
                let scaled = u128::from(self.max_observed)
                    .saturating_mul(u128::from(s))
                    .checked_div(u128::from(self.max_size))
                    .unwrap_or(0);
                u64::try_from(scaled).unwrap_or(u64::MAX).min(MAX_AMOUNT)
            }
            _ => self.max_observed,
        }
    }

    /// Samples observed (out-of-memory kills not included).
    #[must_use]
    pub const fn samples(&self) -> u64 {
        self.moments.count()
    }

    /// Largest value observed, out-of-memory bumps included.
    #[must_use]
    pub const fn max_observed(&self) -> u64 {
        self.max_observed
    }

    /// Largest size feature observed (zero if none).
    #[must_use]
    pub const fn max_size(&self) -> u64 {
        self.max_size
    }

    /// The active out-of-memory floor of reserves (zero if none).
    #[must_use]
    pub const fn oom_floor(&self) -> u64 {
        self.oom_floor
    }

    /// Accuracy counter of one predictor ([`Source::Fallback`]: the ensemble's).
    #[must_use]
    pub fn accuracy(&self, source: Source) -> Accuracy {
        source
            .predictor_index()
            .and_then(|i| self.accuracy.get(i).copied())
            .unwrap_or(self.ensemble_accuracy)
    }

    /// Accuracy counter of the ensemble's own predictions (counted once
    /// [`PredictConfig::min_samples`] samples were seen).
    #[must_use]
    pub const fn ensemble_accuracy(&self) -> Accuracy {
        self.ensemble_accuracy
    }

    /// Recent relative error of one predictor ([`Source::Fallback`]: the
    /// ensemble's, the larger of its fast and slow averages, as used for the
    /// confidence); `None` before it was scored.
    #[must_use]
    pub fn recent_error(&self, source: Source) -> Option<Ppm> {
        let raw = source
            .predictor_index()
            .and_then(|i| self.errors.get(i).copied())
            .unwrap_or(self.ensemble_error.max(self.ensemble_error_slow));
        (raw != NO_SCORE).then_some(Ppm::from_ppm(raw))
    }

    /// The mean and variance.
    #[must_use]
    pub const fn moments(&self) -> &Moments {
        &self.moments
    }

    /// The exponential smoothing.
    #[must_use]
    pub const fn ewma(&self) -> &Ewma {
        &self.ewma
    }

    /// The decaying histogram.
    #[must_use]
    pub const fn histogram(&self) -> &DecayingHistogram<B> {
        &self.histogram
    }

    /// The size regression.
    #[must_use]
    pub const fn regression(&self) -> &SizeRegression {
        &self.regression
    }

    /// The ensemble's misses, `actual / predicted` in ppm (see
    /// [`SeriesPredictor::predict`]).
    #[must_use]
    pub const fn residuals(&self) -> &DecayingHistogram<RESIDUAL_BUCKETS> {
        &self.residuals
    }
}

/// `actual / predicted` in ppm, capped at [`MAX_AMOUNT`]; a prediction of
/// zero counts as one.
fn miss_ratio(actual: u64, predicted: u64) -> u64 {
    let ratio = u128::from(actual)
        .saturating_mul(PPM_ONE)
        .checked_div(u128::from(predicted.max(1)))
        .unwrap_or(u128::MAX);
    u64::try_from(ratio).unwrap_or(u64::MAX).min(MAX_AMOUNT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn run(series: &[(u64, Option<u64>)]) -> SeriesPredictor {
        let cfg = PredictConfig::DEFAULT;
        let mut p = SeriesPredictor::new();
        for (i, &(v, s)) in series.iter().enumerate() {
            p.observe(&cfg, v, s, i as u64);
        }
        p
    }

    #[test]
    fn fallback_until_min_samples() {
        let cfg = PredictConfig::DEFAULT;
        let mut p: SeriesPredictor = SeriesPredictor::new();
        for n in 0..3u64 {
            let pr = p.predict(&cfg, None, 777);
            assert_eq!(
                pr,
                Prediction {
                    value: 777,
                    upper: 777,
                    confidence: Ppm::ZERO,
                    source: Source::Fallback
                },
                "after {n} samples"
            );
            p.observe(&cfg, 1000, None, n);
        }
        let pr = p.predict(&cfg, None, 777);
        assert_eq!(pr.source, Source::Mean);
        assert_eq!(pr.value, 1000);
        // 3 of 10 samples, zero error: 30%, below the 50% threshold.
        assert_eq!(pr.confidence, Ppm::from_percent(30));
        assert!(!pr.is_confident(&cfg));
        // Reserve: the p95 of the values is the end of 1000's bucket (1022),
        // capped at the maximum 1000 (no prediction scored yet, no margin).
        assert_eq!(pr.upper, 1000);
    }

    #[test]
    fn confidence_table() {
        // (constant samples, confidence ppm): count factor only.
        let table = [
            (3, 300_000),
            (4, 400_000),
            (5, 500_000),
            (10, 1_000_000),
            (50, 1_000_000),
        ];
        for (n, want) in table {
            let series = std::vec![(500, None); n];
            let p = run(&series);
            assert_eq!(
                p.predict(&PredictConfig::DEFAULT, None, 0).confidence,
                Ppm::from_ppm(want),
                "{n} samples"
            );
        }
        // Recent error 10% with a 20% zero point halves the confidence.
        let mut p = run(&std::vec![(500, None); 10]);
        p.ensemble_error = 100_000;
        p.ensemble_error_slow = 20_000;
        assert_eq!(
            p.predict(&PredictConfig::DEFAULT, None, 0).confidence,
            Ppm::from_percent(50)
        );
        p.ensemble_error = 250_000;
        assert_eq!(
            p.predict(&PredictConfig::DEFAULT, None, 0).confidence,
            Ppm::ZERO
        );
        // The slow average counts too: the larger error wins.
        p.ensemble_error = 0;
        p.ensemble_error_slow = 150_000;
        assert_eq!(
            p.predict(&PredictConfig::DEFAULT, None, 0).confidence,
            Ppm::from_percent(25)
        );
        p.ensemble_error_slow = 250_000;
        assert_eq!(
            p.predict(&PredictConfig::DEFAULT, None, 0).confidence,
            Ppm::ZERO
        );
    }

    #[test]
    fn scores_and_pick_hand_checked() {
        // Samples 100, 200, 300. Before sample 2 every predictor says 100
        // (error |100 - 200| / 200 = 50%). Before sample 3: mean 150 (50%),
        // EWMA 150 (50%), histogram p95 = 200 capped (33.3%). Scores after
        // sample 3 with alpha 1/4: mean and EWMA 50%, histogram
        // 0.75 * 50% + 0.25 * 33.33% = 45.83%.
        let p = run(&[(100, None), (200, None), (300, None)]);
        let err = |s| p.recent_error(s).map(Ppm::as_ppm);
        assert_eq!(err(Source::Mean), Some(500_000));
        assert_eq!(err(Source::Ewma), Some(500_000));
        assert_eq!(err(Source::Histogram), Some(458_334)); // 500000 - 166667 / 4, rounded down
        assert_eq!(err(Source::Regression), None);
        assert_eq!(err(Source::Fallback), None, "ensemble not scored yet");
        let pr = p.predict(&PredictConfig::DEFAULT, None, 0);
        // The histogram wins: p95 of {100, 200, 300} is 300's bucket end,
        // capped at the maximum 300.
        assert_eq!((pr.source, pr.value), (Source::Histogram, 300));
        assert_eq!(pr.confidence, Ppm::ZERO, "45.8% recent error");
        // Accuracy: nothing within 10% so far.
        assert_eq!(p.accuracy(Source::Mean).total(), 2);
        assert_eq!(p.accuracy(Source::Mean).hits(), 0);
        assert_eq!(p.ensemble_accuracy().total(), 0);
    }

    #[test]
    fn regression_is_used_only_with_a_size() {
        let series: std::vec::Vec<(u64, Option<u64>)> = [1u64, 5, 2, 8, 3, 9, 4, 7]
            .iter()
            .map(|&s| (1000 * s, Some(s)))
            .collect();
        let p = run(&series);
        let cfg = PredictConfig::DEFAULT;
        let with = p.predict(&cfg, Some(6), 0);
        assert_eq!((with.source, with.value), (Source::Regression, 6000));
        assert!(with.is_confident(&cfg));
        // Every scored prediction of the regression was exact: the p95 of
        // the misses is the end of 1.0's bucket, 1.048576.
        assert_eq!(with.upper, 6292, "regression times its own misses");
        let without = p.predict(&cfg, None, 0);
        assert_ne!(without.source, Source::Regression);
        // Extrapolation is allowed, proportionally: bound(18) = 9000 * 2.
        assert_eq!(p.bound(Some(18)), 18_000);
        assert_eq!(p.predict(&cfg, Some(18), 0).value, 18_000);
        assert_eq!(
            p.accuracy(Source::Regression).total(),
            6,
            "scored from sample 3"
        );
        assert_eq!(p.accuracy(Source::Regression).hits(), 6);
    }

    #[test]
    fn oom_raises_the_reserve_for_one_half_life() {
        let cfg = PredictConfig::DEFAULT;
        let day = cfg.half_life_ns;
        let mut p: SeriesPredictor = SeriesPredictor::new();
        for i in 0..10 {
            p.observe(&cfg, 300 * MIB, None, i);
        }
        // A constant series: the reserve is its value (the miss margin is
        // capped at the largest value observed).
        assert_eq!(p.predict(&cfg, None, 0).upper, 300 * MIB);
        assert_eq!(p.observe_oom(&cfg, 300 * MIB, 100), 400 * MIB);
        let pr = p.predict(&cfg, None, 0);
        assert_eq!(pr.value, 300 * MIB, "point predictors do not see the bump");
        // The bumped value is the floor of every reserve now.
        assert_eq!(pr.upper, 400 * MIB);
        assert_eq!(p.max_observed(), 400 * MIB);
        assert_eq!(p.oom_floor(), 400 * MIB);
        // The floor also lifts a fallback.
        let mut fresh: SeriesPredictor = SeriesPredictor::new();
        fresh.observe_oom(&cfg, 10, 0);
        assert_eq!(fresh.predict(&cfg, None, 5).upper, 100 * MIB + 10);
        // A half-life later the floor is gone.
        p.observe(&cfg, 300 * MIB, None, 100 + day);
        assert_eq!(p.oom_floor(), 0);
    }

    #[test]
    fn availability_agrees_with_candidates() {
        let cfg = PredictConfig::DEFAULT;
        let mut p: SeriesPredictor = SeriesPredictor::new();
        let check = |p: &SeriesPredictor| {
            for size in [None, Some(0), Some(5), Some(u64::MAX)] {
                for i in 0..N + 1 {
                    assert_eq!(
                        p.available(i, size),
                        p.candidate(i, &cfg, size).is_some(),
                        "predictor {i}, size {size:?}, {} samples",
                        p.samples()
                    );
                }
            }
        };
        check(&p);
        p.observe_oom(&cfg, 10, 0); // histogram weight without samples
        check(&p);
        for (i, (v, s)) in [(1, None), (2, Some(3)), (3, None), (4, Some(9))]
            .into_iter()
            .enumerate()
        {
            p.observe(&cfg, v, s, i as u64);
            check(&p);
        }
        // Everything decays away: the histogram is empty again.
        p.observe(&cfg, 7, None, u64::MAX);
        check(&p);
        assert_eq!(
            [MEAN, EWMA, HISTOGRAM, REGRESSION].map(|i| Source::PREDICTORS[i]),
            Source::PREDICTORS
        );
    }

    #[test]
    fn state_size() {
        assert_eq!(core::mem::size_of::<SeriesPredictor>(), 704);
        assert_eq!(core::mem::size_of::<SeriesPredictor<32>>(), 576);
    }
}
