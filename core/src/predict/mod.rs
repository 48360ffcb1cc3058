//! Usage predictors: what will the next task of a class use, and how sure are we?
//!
//! The std runtime keeps one [`ResourcePredictor`] per task class. After every
//! run it feeds the measured usage (and, when the caller knows it, a *size*
//! feature such as the input length) into it; before admitting the next task of
//! the class it asks for an estimate. Everything here is `no_std`, fixed-size,
//! allocation-free, float-free and panic-free.
//!
//! # The predictors
//!
//! One [`SeriesPredictor`] learns one `u64` series (bytes, millicores,
//! nanoseconds...) with four predictors side by side:
//!
//! | predictor | module | source |
//! |-----------|--------|--------|
//! | cumulative mean and variance | [`moments`] | Welford, Technometrics 1962 |
//! | exponential smoothing | [`ewma`] | Brown, 1959 |
//! | decaying log-bucketed histogram, a percentile | [`histogram`] | Kubernetes VPA recommender |
//! | online linear regression on size | [`regression`] | least squares with forgetting (Finch 2009) |
//!
//! and an **ensemble** on top ([`SeriesPredictor`], module `ensemble`).
//!
//! # The ensemble: test, then train
//!
//! Every observation is first used to *score* what each predictor would have
//! predicted for it (with the same size feature), and only then learned
//! ("prequential" evaluation, Dawid 1984). The score of a predictor is an
//! exponentially weighted average (weight [`PredictConfig::error_alpha`],
//! default 1/4) of its symmetric relative error `|p - a| / max(p, a)`, a value
//! in `[0, 1]` so that one wild sample cannot dominate for long. The ensemble
//! **picks the predictor with the lowest recent error** (ties go to the mean,
//! then the EWMA, the histogram, the regression). Picking rather than
//! averaging matters after a level shift: an inverse-error average keeps a
//! share of the stale mean for many samples, while the pick follows the
//! EWMA as soon as its recent error is the lower one. The regression is a
//! candidate only when the caller gives a size and the regression has at
//! least two samples with sizes, so it is used exactly when a size is present
//! and its measured error says it helps.
//!
//! Each pick also yields a **reserve**, with a margin that comes from the
//! class's own data: every scored prediction `p` of the ensemble, met by the
//! measured value `a`, adds its miss ratio `a / p` to a second decaying
//! histogram (the *residuals*), and the reserve is the point prediction times
//! that histogram's [`PredictConfig::percentile`] (p95 by default; never
//! below 1), as the VPA recommender takes a percentile of its samples. A
//! class predicted exactly gets at most the 5% of one histogram bucket; a
//! class whose predictions are often 30% short gets about 30%. Unless the
//! regression is picked (the all-sizes histogram cannot inform a size-based
//! estimate), the reserve is also at least the percentile of the values
//! themselves (VPA's figure: it covers the case where the ensemble switched
//! to a predictor whose misses are wider than those recorded).
//! [`PredictConfig::safety_margin`] multiplies on top (default none: VPA's
//! fixed 15% on top of an already safe percentile is what this replaces).
//! So a reserve covers about the configured share of the class's tasks
//! (95%), not all of them: the std runtime grows the reservation of a task
//! that outgrows it, and admission pauses meanwhile.
//!
//! # Confidence
//!
//! With fewer than [`PredictConfig::min_samples`] samples (default 3) a
//! prediction is the caller's fallback with zero confidence. Otherwise
//!
//! ```text
//! confidence = min(n, full_confidence_samples) / full_confidence_samples
//!            * (1 - min(err, zero_confidence_error) / zero_confidence_error)
//! ```
//!
//! where `err` is the larger of two averages of the ensemble's own relative
//! error (the chosen predictor's score before the ensemble has been scored):
//! a fast one (weight [`PredictConfig::error_alpha`]) that drops the
//! confidence as soon as predictions start to miss, and a slow one, the mean
//! over the last [`CONFIDENCE_WINDOW`] = 16 predictions (all of them while
//! fewer), so that a lucky run of a few equal samples in an erratic series
//! does not restore it. With the defaults (10 samples, 20%) a constant series
//! reaches 50%, the default [`PredictConfig::min_confidence`], at 5 samples;
//! ±5% noise (error about 2.5%) gives 80-89% after 10 samples (measured in
//! `core/tests/predict_convergence.rs`); a series whose predictions were off
//! by 10% or more on average over the last 16 stays below 50%, and at 20% it
//! gets zero. So confidence is never claimed with fewer than 5 samples, nor
//! for a bimodal or erratic series that no predictor follows (once both modes
//! have shown up: a run of equal values *is* a constant series until then).
//!
//! # Bounds
//!
//! Let `max` be the largest value observed (usage clamped to
//! [`MAX_AMOUNT`], out-of-memory bumps included) and
//! `bound(size) = max * max(1, size / max_size)` where `max_size` is the largest
//! size observed (just `max` without a size, or with no size history). Then
//! every point prediction is at most `bound(size)` and every reserve at most
//! `ceil(bound(size) * (1 + safety_margin))`, capped at `MAX_AMOUNT`: one
//! wild miss ratio cannot lift a reserve above what was ever observed. The only
//! values above that are the caller's fallback, returned unchanged, and the
//! reserve of a fallback after an out-of-memory event (see below), which is
//! at most `max(fallback, max)`. The regression may extrapolate to larger
//! sizes, but no faster than proportionally to size.
//!
//! # Out of memory
//!
//! [`SeriesPredictor::observe_oom`] records that a task was killed at some
//! usage `x`. As in the VPA recommender (`OOMBumpUpRatio = 1.2`,
//! `OOMMinBumpUp = 100 MiB`), the value `max(x * 1.2, x + 100 MiB)` (both
//! configurable) enters the histogram as a sample, and for one half-life of the
//! caller's clock every reserve is at least that value, fallbacks included.
//!
//! # Fixed-point formats
//!
//! - Ratios a caller sees (errors, confidence, percentile, margin, smoothing
//!   factors) are [`Ppm`]: parts per million in a `u32`.
//! - Means, levels, variances and regression moments are Q16 (`value * 2^16`)
//!   in `u128` or `i128`; amounts are clamped to 2^60, so Q16 values stay
//!   below 2^76 and products of two deviations below 2^124.
//! - Histogram weights are `u32`; a sample at the reference time weighs
//!   2^16, decay exponents are Q16.
//!
//! # State size
//!
//! With the default 64-bucket window a [`SeriesPredictor`] is 704 bytes (128
//! of them the residual histogram's 24 buckets) and a [`ResourcePredictor`]
//! (one per [`Dim`](crate::Dim), ten dimensions) is 7040 bytes per task
//! class. A 32-bucket window (`ResourcePredictor<32>`) brings the class down
//! to 5760 bytes. The configuration is not stored: the caller
//! keeps one [`PredictConfig`] and passes it to every call.
//!
//! # Examples
//!
//! ```
//! use respool_core::predict::{PredictConfig, SeriesPredictor, Source};
//!
//! let cfg = PredictConfig::default();
//! let mut p: SeriesPredictor = SeriesPredictor::new();
//! // No history: the caller's fallback, with zero confidence.
//! let first = p.predict(&cfg, None, 4096);
//! assert_eq!((first.value, first.source), (4096, Source::Fallback));
//! assert!(!first.is_confident(&cfg));
//!
//! let mut x: u64 = 7;
//! for i in 0..20u64 {
//!     x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
//!     let usage = 1_000_000 + (x >> 40) % 50_000; // 1 MB plus up to 5%
//!     p.observe(&cfg, usage, None, i * 1_000_000_000);
//! }
//! let est = p.predict(&cfg, None, 4096);
//! assert!(est.is_confident(&cfg));
//! assert!((1_000_000..1_050_000).contains(&est.value));
//! // The reserve covers the class's own misses: the p95 of actual/predicted.
//! assert!(est.upper > est.value && est.upper <= 1_050_000);
//! ```

mod accuracy;
mod ensemble;
pub mod ewma;
mod fixed;
pub mod histogram;
pub mod moments;
pub mod regression;
mod vector;

pub use accuracy::Accuracy;
pub use ensemble::{CONFIDENCE_WINDOW, SeriesPredictor};
pub use ewma::Ewma;
pub use histogram::{DEFAULT_BUCKETS, DecayingHistogram};
pub use moments::Moments;
pub use regression::SizeRegression;
pub use vector::{ResourceEstimate, ResourcePredictor};

use crate::resource::{MAX_AMOUNT, Ppm};

/// Configuration of the predictors: percentile, margins, smoothing, decay,
/// confidence and out-of-memory handling.
///
/// Out-of-range values are not errors: [`PredictConfig::sanitized`] clamps
/// them (every call does so), and the documentation of each field says how.
///
/// # Examples
///
/// ```
/// use respool_core::predict::PredictConfig;
/// use respool_core::Ppm;
///
/// let cfg = PredictConfig {
///     percentile: Ppm::from_percent(90), // VPA's target percentile
///     ..PredictConfig::default()
/// };
/// assert_eq!(cfg.safety_margin, Ppm::ZERO);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PredictConfig {
    /// Percentile of the decaying histogram used for reserves (default 95%,
    /// VPA's upper bound; VPA's target is 90%). Capped at 100%.
    pub percentile: Ppm,
    /// An extra margin multiplied onto every reserve (default 0%). The
    /// reserve already covers the class's own misses (the percentile of
    /// `actual / predicted`, see the [module documentation](self)); VPA's
    /// fixed 15% on top of its percentile is `Ppm::from_percent(15)` here.
    pub safety_margin: Ppm,
    /// Half-life of histogram weights and of an out-of-memory floor, in
    /// nanoseconds of the caller's clock (default 24 h, as VPA). Zero: the
    /// histogram does not decay and the floor does not expire.
    pub half_life_ns: u64,
    /// Smoothing factor of the EWMA predictor (default 50%; clamped to at
    /// most 100%, and zero freezes the level at the first sample).
    pub ewma_alpha: Ppm,
    /// Smoothing factor of each predictor's recent-error score (default 25%,
    /// clamped to `1..=100%`).
    pub error_alpha: Ppm,
    /// Forgetting window of the regression, in samples (default 64, clamped
    /// to `2..=65536`): older samples fade by `1 - 1/window` per sample.
    pub regression_window: u32,
    /// Below this many samples a prediction is the caller's fallback with
    /// zero confidence (default 3, at least 1).
    pub min_samples: u32,
    /// Samples for the count factor of the confidence to reach 100%
    /// (default 10, at least 1).
    pub full_confidence_samples: u32,
    /// Recent relative error at which confidence drops to zero (default 20%,
    /// at least 1 ppm).
    pub zero_confidence_error: Ppm,
    /// Confidence from which a prediction is trusted (default 50%):
    /// [`Prediction::is_confident`], [`ResourcePredictor::predict`].
    pub min_confidence: Ppm,
    /// The widest margin with which a history that is not confident still
    /// sets the reserve (default 400%): a dimension whose point predictions
    /// miss too often to be confident (memory that grows in steps, a `Vec`
    /// doubling: the largest step is about twice the mean) but that has
    /// `full_confidence_samples` samples reserves its
    /// [`Prediction::upper`] (the prediction times the percentile of its
    /// own misses, never above the largest value seen) when that is at most
    /// this multiple of the prediction, and the caller's fallback otherwise
    /// (a history whose rare values are many times its usual ones:
    /// [`Prediction::is_covered`]). At least 100%.
    pub max_covered_margin: Ppm,
    /// Ratio applied to the usage at an out-of-memory kill (default 120%).
    pub oom_bump_ratio: Ppm,
    /// Minimal increase after an out-of-memory kill, in the series' unit
    /// (default 100 MiB, for memory in bytes).
    pub oom_min_bump: u64,
}

impl PredictConfig {
    /// The defaults listed on each field.
    pub const DEFAULT: PredictConfig = PredictConfig {
        percentile: Ppm::from_percent(95),
        safety_margin: Ppm::ZERO,
        half_life_ns: 24 * 3600 * 1_000_000_000,
        ewma_alpha: Ppm::from_percent(50),
        error_alpha: Ppm::from_percent(25),
        regression_window: 64,
        min_samples: 3,
        full_confidence_samples: 10,
        zero_confidence_error: Ppm::from_percent(20),
        min_confidence: Ppm::from_percent(50),
        max_covered_margin: Ppm::from_percent(400),
        oom_bump_ratio: Ppm::from_percent(120),
        oom_min_bump: 100 << 20,
    };

    /// `self` with every field brought into its documented range.
    #[must_use]
    pub fn sanitized(self) -> PredictConfig {
        let at_most_one = |p: Ppm| p.min(Ppm::ONE);
        PredictConfig {
            percentile: at_most_one(self.percentile),
            ewma_alpha: at_most_one(self.ewma_alpha),
            error_alpha: at_most_one(self.error_alpha).max(Ppm::from_ppm(1)),
            regression_window: self.regression_window.clamp(2, regression::MAX_WINDOW),
            min_samples: self.min_samples.max(1),
            full_confidence_samples: self.full_confidence_samples.max(1),
            zero_confidence_error: self.zero_confidence_error.max(Ppm::from_ppm(1)),
            max_covered_margin: self.max_covered_margin.max(Ppm::ONE),
            ..self
        }
    }

    /// The value recorded after an out-of-memory kill at `usage`:
    /// `max(usage * oom_bump_ratio, usage + oom_min_bump)`, rounded up and
    /// capped at [`MAX_AMOUNT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::predict::PredictConfig;
    ///
    /// let cfg = PredictConfig::default();
    /// assert_eq!(cfg.oom_bump(100 << 20), 200 << 20); // +100 MiB wins
    /// assert_eq!(cfg.oom_bump(1 << 30), 1288490189); // x1.2 wins
    /// ```
    #[must_use]
    pub fn oom_bump(&self, usage: u64) -> u64 {
        let usage = usage.min(MAX_AMOUNT);
        self.oom_bump_ratio
            .apply_ceil(usage)
            .max(usage.saturating_add(self.oom_min_bump))
            .min(MAX_AMOUNT)
    }
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig::DEFAULT
    }
}

/// Which predictor produced a [`Prediction`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Too little history: the caller's fallback.
    Fallback,
    /// The cumulative mean ([`Moments`]).
    Mean,
    /// Exponential smoothing ([`Ewma`]).
    Ewma,
    /// The configured percentile of the decaying histogram.
    Histogram,
    /// The linear regression on the size feature.
    Regression,
}

impl Source {
    /// The four learned predictors, in tie-breaking order.
    pub const PREDICTORS: [Source; 4] = [
        Source::Mean,
        Source::Ewma,
        Source::Histogram,
        Source::Regression,
    ];

    /// Position in [`Source::PREDICTORS`]; `None` for the fallback.
    #[must_use]
    pub const fn predictor_index(self) -> Option<usize> {
        match self {
            Source::Fallback => None,
            Source::Mean => Some(0),
            Source::Ewma => Some(1),
            Source::Histogram => Some(2),
            Source::Regression => Some(3),
        }
    }
}

/// A prediction of one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prediction {
    /// The expected value (the chosen predictor's point prediction).
    pub value: u64,
    /// What to reserve: `value` times the percentile of the class's miss
    /// ratios (and, unless the regression is picked, at least the
    /// percentile of the values), times `1 + safety_margin`, at most the
    /// largest value observed (scaled up with size) times that margin, and
    /// at least any active out-of-memory floor (see the
    /// [module documentation](self)).
    pub upper: u64,
    /// How far to trust `value`, from sample count and recent error (see the
    /// [module documentation](self)); zero for a fallback.
    pub confidence: Ppm,
    /// The predictor that produced `value`.
    pub source: Source,
}

impl Prediction {
    /// Whether the prediction comes from history and its confidence reaches
    /// `cfg.min_confidence`.
    #[must_use]
    pub fn is_confident(&self, cfg: &PredictConfig) -> bool {
        self.source != Source::Fallback && self.confidence >= cfg.min_confidence
    }

    /// Whether the reserve may come from this history although it is not
    /// confident: it has `samples` of at least
    /// [`PredictConfig::full_confidence_samples`] and its [`upper`](Self::upper)
    /// is at most [`PredictConfig::max_covered_margin`] times its value.
    /// The upper bound is then the class's own data (its misses' percentile,
    /// capped by the largest value seen), a better reserve than a fixed
    /// fallback in both directions.
    #[must_use]
    pub fn is_covered(&self, cfg: &PredictConfig, samples: u64) -> bool {
        let cfg = cfg.sanitized();
        self.source != Source::Fallback
            && samples >= u64::from(cfg.full_confidence_samples)
            && self.value > 0
            // Both products fit: a u64 times at most 2^32 in a u128.
            && u128::from(self.upper).saturating_mul(fixed::PPM_ONE)
                <= u128::from(self.value)
                    .saturating_mul(u128::from(cfg.max_covered_margin.as_ppm()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_table() {
        let wild = PredictConfig {
            percentile: Ppm::MAX,
            safety_margin: Ppm::MAX,
            half_life_ns: 0,
            ewma_alpha: Ppm::MAX,
            error_alpha: Ppm::ZERO,
            regression_window: u32::MAX,
            min_samples: 0,
            full_confidence_samples: 0,
            zero_confidence_error: Ppm::ZERO,
            min_confidence: Ppm::MAX,
            max_covered_margin: Ppm::ZERO,
            oom_bump_ratio: Ppm::MAX,
            oom_min_bump: u64::MAX,
        };
        let s = wild.sanitized();
        assert_eq!(s.percentile, Ppm::ONE);
        assert_eq!(s.safety_margin, Ppm::MAX, "any margin is valid");
        assert_eq!(s.ewma_alpha, Ppm::ONE);
        assert_eq!(s.error_alpha, Ppm::from_ppm(1));
        assert_eq!(s.regression_window, regression::MAX_WINDOW);
        assert_eq!((s.min_samples, s.full_confidence_samples), (1, 1));
        assert_eq!(s.zero_confidence_error, Ppm::from_ppm(1));
        assert_eq!(s.max_covered_margin, Ppm::ONE);
        assert_eq!(PredictConfig::DEFAULT.sanitized(), PredictConfig::DEFAULT);
        assert_eq!(
            PredictConfig {
                regression_window: 0,
                ..PredictConfig::DEFAULT
            }
            .sanitized()
            .regression_window,
            2
        );
    }

    #[test]
    fn oom_bump_table() {
        let cfg = PredictConfig::DEFAULT;
        const MIB: u64 = 1 << 20;
        // (usage at the kill, bumped value): the switch is at 500 MiB.
        let table = [
            (0, 100 * MIB),
            (100 * MIB, 200 * MIB),
            (500 * MIB, 600 * MIB),
            (1000 * MIB, 1200 * MIB),
            (u64::MAX, MAX_AMOUNT),
        ];
        for (usage, want) in table {
            assert_eq!(cfg.oom_bump(usage), want, "{usage}");
        }
        let ratio_only = PredictConfig {
            oom_min_bump: 0,
            ..cfg
        };
        assert_eq!(ratio_only.oom_bump(1001), 1202, "1201.2 rounded up");
    }

    #[test]
    fn source_indices() {
        for (i, s) in Source::PREDICTORS.into_iter().enumerate() {
            assert_eq!(s.predictor_index(), Some(i));
        }
        assert_eq!(Source::Fallback.predictor_index(), None);
    }
}
