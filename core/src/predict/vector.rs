//! One predictor per resource dimension: the state the std runtime keeps per
//! task class. See the [parent module](super) for the algorithms.

use crate::predict::histogram::DEFAULT_BUCKETS;
use crate::predict::{PredictConfig, Prediction, SeriesPredictor};
use crate::resource::{Dim, DimSet, PerDim, Ppm, Resources};

/// An estimate of the resources the next task of a class needs.
///
/// In every dimension, exactly one of four things holds:
///
/// - the dimension is in `learned`: the history is confident
///   ([`Prediction::is_confident`]); `expected` holds the prediction and
///   `reserve` the prediction with its margin (see [`Prediction::upper`]);
/// - the dimension is in `covered`: the history is not confident but has
///   enough samples and a margin of at most
///   [`PredictConfig::max_covered_margin`] ([`Prediction::is_covered`]);
///   `expected` holds the prediction and `reserve` the prediction with its
///   margin, as for a learned one;
/// - otherwise, the dimension is set in the fallback: `expected` holds the
///   fallback amount and `reserve` the larger of it and any out-of-memory
///   floor;
/// - otherwise, both are unset ("no requirement"), except that an active
///   out-of-memory floor still sets `reserve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceEstimate {
    /// The expected usage.
    pub expected: Resources,
    /// What to reserve: the prediction with its margin, or the fallback.
    pub reserve: Resources,
    /// The confidence of the history in each dimension (zero without history).
    pub confidence: PerDim<Ppm>,
    /// The dimensions whose amounts come from confident history.
    pub learned: DimSet,
    /// The dimensions whose reserve comes from a history that is not
    /// confident but covers its own misses (disjoint from `learned`).
    pub covered: DimSet,
}

/// One [`SeriesPredictor`] per [`Dim`]: learns a task class's resource usage
/// and estimates it as a [`Resources`] vector.
///
/// `B` is the histogram window of each dimension (default
/// [`DEFAULT_BUCKETS`]). See the [module documentation](super) for the state
/// size.
///
/// # Examples
///
/// ```
/// use respool_core::predict::{PredictConfig, ResourcePredictor};
/// use respool_core::{Dim, Resources};
///
/// let cfg = PredictConfig::default();
/// let mut class: ResourcePredictor = ResourcePredictor::new();
/// let default = Resources::new().with(Dim::Cpu, 1_000)?.with(Dim::Memory, 1 << 30)?;
///
/// // Nothing learned yet: the default, with zero confidence.
/// let est = class.predict(&cfg, None, &default);
/// assert_eq!(est.expected, default);
/// assert!(est.learned.is_empty());
///
/// // Ten runs measured at 250 millicores and 64 MiB.
/// let used = Resources::new().with(Dim::Cpu, 250)?.with(Dim::Memory, 64 << 20)?;
/// for t in 0..10 {
///     class.observe(&cfg, &used, None, t);
/// }
/// let est = class.predict(&cfg, None, &default);
/// assert_eq!(est.expected, used);
/// assert!(est.learned.contains(Dim::Memory) && est.learned.contains(Dim::Cpu));
/// // Every prediction was exact: the reserve is what was used.
/// assert_eq!(est.reserve.get(Dim::Memory), Some(64 << 20));
/// # Ok::<(), respool_core::ResourceError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourcePredictor<const B: usize = DEFAULT_BUCKETS> {
    /// The predictor of each dimension.
    series: PerDim<SeriesPredictor<B>>,
}

impl<const B: usize> Default for ResourcePredictor<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const B: usize> ResourcePredictor<B> {
    /// No history in any dimension.
    #[must_use]
    pub const fn new() -> Self {
        ResourcePredictor {
            series: PerDim([const { SeriesPredictor::new() }; Dim::COUNT]),
        }
    }

    /// Records the measured usage of one task: every dimension set in `usage`
    /// is observed (see [`SeriesPredictor::observe`]); unset ones are left
    /// alone. `size` is the task's size feature, if known.
    pub fn observe(
        &mut self,
        cfg: &PredictConfig,
        usage: &Resources,
        size: Option<u64>,
        at_ns: u64,
    ) {
        for (dim, amount) in usage.iter() {
            self.series[dim].observe(cfg, amount, size, at_ns);
        }
    }

    /// Records an out-of-memory kill in `dim` (normally [`Dim::Memory`] or
    /// [`Dim::GpuMemory`]) at `usage`; returns the bumped value (see
    /// [`SeriesPredictor::observe_oom`]).
    pub fn observe_oom(&mut self, cfg: &PredictConfig, dim: Dim, usage: u64, at_ns: u64) -> u64 {
        self.series[dim].observe_oom(cfg, usage, at_ns)
    }

    /// The estimate for a task with the given size feature; `fallback` fills
    /// the dimensions without confident history (see [`ResourceEstimate`]).
    #[must_use]
    pub fn predict(
        &self,
        cfg: &PredictConfig,
        size: Option<u64>,
        fallback: &Resources,
    ) -> ResourceEstimate {
        let mut est = ResourceEstimate {
            expected: Resources::NONE,
            reserve: Resources::NONE,
            confidence: PerDim([Ppm::ZERO; Dim::COUNT]),
            learned: DimSet::EMPTY,
            covered: DimSet::EMPTY,
        };
        for dim in Dim::ALL {
            let series = &self.series[dim];
            let fb = fallback.get(dim);
            let p = series.predict(cfg, size, fb.unwrap_or(0));
            est.confidence[dim] = p.confidence;
            if p.is_confident(cfg) {
                est.learned = est.learned.with(dim);
                est.expected = est.expected.with_saturating(dim, p.value);
                est.reserve = est.reserve.with_saturating(dim, p.upper);
            } else if p.is_covered(cfg, series.samples()) {
                est.covered = est.covered.with(dim);
                est.expected = est.expected.with_saturating(dim, p.value);
                est.reserve = est.reserve.with_saturating(dim, p.upper);
            } else if let Some(amount) = fb {
                est.expected = est.expected.with_saturating(dim, amount);
                est.reserve = est
                    .reserve
                    .with_saturating(dim, amount.max(series.oom_floor()));
            } else if series.oom_floor() > 0 {
                est.reserve = est.reserve.with_saturating(dim, series.oom_floor());
            }
        }
        est
    }

    /// The predictor of one dimension.
    #[must_use]
    pub fn series(&self, dim: Dim) -> &SeriesPredictor<B> {
        &self.series[dim]
    }

    /// The raw prediction of one dimension (see [`SeriesPredictor::predict`]).
    #[must_use]
    pub fn predict_dim(
        &self,
        cfg: &PredictConfig,
        dim: Dim,
        size: Option<u64>,
        fallback: u64,
    ) -> Prediction {
        self.series[dim].predict(cfg, size, fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::Source;

    fn r(pairs: &[(Dim, u64)]) -> Resources {
        Resources::from_pairs(pairs).unwrap()
    }

    #[test]
    fn per_dimension_choice_table() {
        let cfg = PredictConfig::DEFAULT;
        let mut p: ResourcePredictor = ResourcePredictor::new();
        // Cpu: steady (learned). Memory: bimodal (not confident, but its
        // reserve, the larger mode, is within twice the prediction:
        // covered). Iops: two samples only. Gpu: never observed.
        for i in 0..20u64 {
            let mem = if i % 2 == 0 { 100 } else { 1000 };
            let mut usage = r(&[(Dim::Cpu, 500), (Dim::Memory, mem)]);
            if i < 2 {
                usage.set(Dim::Iops, 40).unwrap();
            }
            p.observe(&cfg, &usage, None, i);
        }
        let fallback = r(&[(Dim::Memory, 4096), (Dim::Iops, 10), (Dim::Gpu, 1)]);
        let est = p.predict(&cfg, None, &fallback);
        assert_eq!(est.learned, DimSet::single(Dim::Cpu));
        assert_eq!(est.covered, DimSet::single(Dim::Memory));
        let memory = p.predict_dim(&cfg, Dim::Memory, None, 4096);
        assert!((100..=1000).contains(&memory.value), "{memory:?}");
        // (dim, expected, reserve, confidence > 0)
        let table = [
            (Dim::Cpu, Some(500), Some(500), true),
            (Dim::Memory, Some(memory.value), Some(1000), false),
            (Dim::Iops, Some(10), Some(10), false),
            (Dim::Gpu, Some(1), Some(1), false),
            (Dim::Network, None, None, false),
        ];
        for (dim, expected, reserve, confident) in table {
            assert_eq!(est.expected.get(dim), expected, "{dim}");
            assert_eq!(est.reserve.get(dim), reserve, "{dim}");
            assert_eq!(est.confidence[dim] > Ppm::ZERO, confident, "{dim}");
        }
        assert_eq!(est.confidence[Dim::Memory], Ppm::ZERO);
        assert_eq!(p.series(Dim::Iops).samples(), 2);
        assert_eq!(
            p.predict_dim(&cfg, Dim::Iops, None, 9).source,
            Source::Fallback
        );
    }

    #[test]
    fn a_history_not_confident_reserves_from_its_data_within_the_covered_margin() {
        let mut cfg = PredictConfig::DEFAULT;
        // One sample in ten is 100 times the others: the reserve that
        // covers it is far above the prediction (near the small ones): the
        // fallback applies.
        let mut rare: ResourcePredictor = ResourcePredictor::new();
        // Memory that doubles in steps (1, 2, 4, 8 MiB over and over): no
        // prediction is within 20%, the reserve (the top step) is within
        // four times it.
        let mut steps: ResourcePredictor = ResourcePredictor::new();
        for i in 0..45u64 {
            // The last five are small: the prediction is near 1 MiB.
            let m = if i % 10 == 9 { 100 << 20 } else { 1 << 20 };
            rare.observe(&cfg, &r(&[(Dim::Memory, m)]), None, i);
        }
        for i in 0..41u64 {
            // Ends on the smallest step: the prediction is below the top.
            steps.observe(&cfg, &r(&[(Dim::Memory, (1 << 20) << (i % 4))]), None, i);
        }
        let fallback = r(&[(Dim::Memory, 256 << 20)]);
        let est = rare.predict(&cfg, None, &fallback);
        assert_eq!((est.learned, est.covered), (DimSet::EMPTY, DimSet::EMPTY));
        assert_eq!(est.reserve, fallback);
        let est = steps.predict(&cfg, None, &fallback);
        assert_eq!(
            (est.learned, est.covered),
            (DimSet::EMPTY, DimSet::single(Dim::Memory))
        );
        let reserve = est.reserve.get(Dim::Memory).unwrap();
        assert!(
            reserve <= 8 << 20,
            "never above the largest step: {reserve}"
        );
        let value = est.expected.get(Dim::Memory).unwrap();
        assert!(
            reserve <= 4 * value && reserve >= value,
            "{value} {reserve}"
        );
        // A narrower limit sends the same history to the fallback; fewer
        // samples than full_confidence_samples too.
        cfg.max_covered_margin = Ppm::from_percent(110);
        assert_eq!(steps.predict(&cfg, None, &fallback).reserve, fallback);
        let mut young: ResourcePredictor = ResourcePredictor::new();
        for i in 0..9u64 {
            young.observe(
                &PredictConfig::DEFAULT,
                &r(&[(Dim::Memory, (1 << 20) << (i % 4))]),
                None,
                i,
            );
        }
        let est = young.predict(&PredictConfig::DEFAULT, None, &fallback);
        assert_eq!((est.covered, est.reserve), (DimSet::EMPTY, fallback));
    }

    #[test]
    fn oom_floor_sets_reserve_even_without_fallback() {
        let cfg = PredictConfig::DEFAULT;
        let mut p: ResourcePredictor = ResourcePredictor::new();
        let bumped = p.observe_oom(&cfg, Dim::Memory, 1 << 30, 0);
        assert_eq!(bumped, cfg.oom_bump(1 << 30));
        let est = p.predict(&cfg, None, &Resources::NONE);
        assert_eq!(est.expected, Resources::NONE);
        assert_eq!(est.reserve, r(&[(Dim::Memory, bumped)]));
        let est = p.predict(&cfg, None, &r(&[(Dim::Memory, 2 << 30)]));
        assert_eq!(
            est.reserve.get(Dim::Memory),
            Some(2 << 30),
            "fallback larger"
        );
    }

    #[test]
    fn state_size() {
        assert_eq!(
            core::mem::size_of::<ResourcePredictor>(),
            Dim::COUNT * core::mem::size_of::<SeriesPredictor>()
        );
    }
}
