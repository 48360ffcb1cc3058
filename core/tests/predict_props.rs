//! Property tests of `respool_core::predict`: no panic and no overflow on any
//! series (zero, `u64::MAX`, `MAX_AMOUNT`, alternating extremes, huge sizes,
//! clocks that jump or go backwards), and predictions bounded by what was
//! observed, as documented in the module: a point prediction is at most
//! `bound(size) = max * max(1, size / max_size)` and a reserve at most
//! `ceil(bound * (1 + margin))`, capped at `MAX_AMOUNT`. The bound is
//! recomputed here from the inputs, independently of the predictor.
#![allow(missing_docs)]

use proptest::prelude::*;
use respool_core::predict::histogram::{BUCKET_INDICES, bucket_end, bucket_index, bucket_start};
use respool_core::predict::{
    Accuracy, DecayingHistogram, Ewma, Moments, PredictConfig, ResourcePredictor, SeriesPredictor,
    SizeRegression, Source,
};
use respool_core::{Dim, MAX_AMOUNT, Ppm, Resources};

/// Amounts with the edge cases weighted up.
fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(MAX_AMOUNT),
        Just(MAX_AMOUNT + 1),
        Just(u64::MAX),
        0..2_000u64,
        (0..64u32).prop_map(|b| 1u64 << b),
        any::<u64>(),
    ]
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(u64::MAX), 0..1_000_000u64, any::<u64>()]
}

fn ppm() -> impl Strategy<Value = Ppm> {
    prop_oneof![
        Just(Ppm::ZERO),
        Just(Ppm::ONE),
        Just(Ppm::MAX),
        (0..=2_000_000u32).prop_map(Ppm::from_ppm),
        any::<u32>().prop_map(Ppm::from_ppm),
    ]
}

fn config() -> impl Strategy<Value = PredictConfig> {
    prop_oneof![
        Just(PredictConfig::default()),
        (
            (ppm(), ppm(), time(), ppm(), ppm(), any::<u32>()),
            (0..20u32, 0..20u32, ppm(), ppm(), ppm(), amount()),
            ppm(),
        )
            .prop_map(
                |((pc, sm, hl, ea, era, rw), (ms, fc, zc, mc, obr, omb), cm)| {
                    PredictConfig {
                        percentile: pc,
                        safety_margin: sm,
                        half_life_ns: hl,
                        ewma_alpha: ea,
                        error_alpha: era,
                        regression_window: rw,
                        min_samples: ms,
                        full_confidence_samples: fc,
                        zero_confidence_error: zc,
                        min_confidence: mc,
                        max_covered_margin: cm,
                        oom_bump_ratio: obr,
                        oom_min_bump: omb,
                    }
                }
            ),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Observe {
        value: u64,
        size: Option<u64>,
        at: u64,
    },
    Oom {
        usage: u64,
        at: u64,
    },
    Predict {
        size: Option<u64>,
        fallback: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (amount(), proptest::option::of(amount()), time())
            .prop_map(|(value, size, at)| Op::Observe { value, size, at }),
        1 => (amount(), time()).prop_map(|(usage, at)| Op::Oom { usage, at }),
        3 => (proptest::option::of(amount()), amount())
            .prop_map(|(size, fallback)| Op::Predict { size, fallback }),
    ]
}

/// What the test tracks on its own to recompute the bounds.
#[derive(Default)]
struct Model {
    samples: u64,
    max: u64,
    max_size: u64,
}

impl Model {
    fn bound(&self, size: Option<u64>) -> u64 {
        match size {
            Some(s) if self.max_size > 0 && s > self.max_size => {
                let scaled = u128::from(self.max) * u128::from(s) / u128::from(self.max_size);
                scaled.min(u128::from(MAX_AMOUNT)) as u64
            }
            _ => self.max,
        }
    }
}

fn check_series(cfg: PredictConfig, ops: &[Op]) {
    let mut p: SeriesPredictor = SeriesPredictor::new();
    let mut small: SeriesPredictor<1> = SeriesPredictor::new();
    let mut m = Model::default();
    let sane = cfg.sanitized();
    let margin = Ppm::ONE.saturating_add(sane.safety_margin);
    for op in ops {
        match *op {
            Op::Observe { value, size, at } => {
                p.observe(&cfg, value, size, at);
                small.observe(&cfg, value, size, at);
                m.samples += 1;
                m.max = m.max.max(value.min(MAX_AMOUNT));
                if let Some(s) = size {
                    m.max_size = m.max_size.max(s);
                }
            }
            Op::Oom { usage, at } => {
                let bumped = p.observe_oom(&cfg, usage, at);
                small.observe_oom(&cfg, usage, at);
                let u = usage.min(MAX_AMOUNT);
                let want = (sane.oom_bump_ratio.apply_ceil(u))
                    .max(u.saturating_add(sane.oom_min_bump))
                    .min(MAX_AMOUNT);
                assert_eq!(bumped, want);
                assert!(p.oom_floor() >= bumped);
                m.max = m.max.max(bumped);
            }
            Op::Predict { size, fallback } => {
                for (pr, floor) in [
                    (p.predict(&cfg, size, fallback), p.oom_floor()),
                    (small.predict(&cfg, size, fallback), small.oom_floor()),
                ] {
                    assert!(pr.confidence <= Ppm::ONE, "{pr:?}");
                    assert!(floor <= m.max);
                    if pr.source == Source::Fallback {
                        assert!(m.samples < u64::from(sane.min_samples));
                        assert_eq!(pr.value, fallback);
                        assert_eq!(pr.upper, fallback.max(floor));
                        assert_eq!(pr.confidence, Ppm::ZERO);
                    } else {
                        assert!(m.samples >= u64::from(sane.min_samples));
                        let bound = m.bound(size);
                        let cap = margin.apply_ceil(bound).min(MAX_AMOUNT);
                        assert!(pr.value <= bound, "{pr:?} above bound {bound}");
                        if size.is_none() || pr.source != Source::Regression {
                            assert!(pr.value <= m.max, "{pr:?} above max {}", m.max);
                        }
                        assert!(pr.upper <= cap, "{pr:?} above cap {cap}");
                        assert!(pr.upper >= pr.value, "{pr:?}");
                        assert!(pr.upper >= floor, "{pr:?} below floor {floor}");
                    }
                }
                assert_eq!(p.bound(size), m.bound(size));
            }
        }
        assert_eq!(p.samples(), m.samples);
        assert_eq!(p.max_observed(), m.max);
        assert_eq!(p.max_size(), m.max_size);
        for s in [
            Source::Fallback,
            Source::Mean,
            Source::Ewma,
            Source::Histogram,
            Source::Regression,
        ] {
            let a = p.accuracy(s);
            assert!(a.hits() <= a.total() && a.total() <= m.samples);
            assert!(a.ratio() <= Ppm::ONE);
            assert!(p.recent_error(s).is_none_or(|e| e <= Ppm::ONE));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn series_never_panics_and_stays_bounded(
        cfg in config(),
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        check_series(cfg, &ops);
    }

    #[test]
    fn alternating_extremes(
        cfg in config(),
        n in 1..200usize,
        lo in prop_oneof![Just(0u64), Just(1)],
        hi in prop_oneof![Just(MAX_AMOUNT), Just(u64::MAX)],
        sizes in prop_oneof![Just(None), Just(Some(u64::MAX)), Just(Some(0))],
    ) {
        let mut ops = Vec::new();
        for i in 0..n {
            let value = if i % 2 == 0 { lo } else { hi };
            let size = sizes.map(|s| if i % 3 == 0 { s } else { s / 2 + 1 });
            ops.push(Op::Observe { value, size, at: (i as u64).wrapping_mul(u64::MAX / 7) });
            ops.push(Op::Predict { size: Some(u64::MAX), fallback: u64::MAX });
            ops.push(Op::Predict { size: None, fallback: 0 });
            if i % 17 == 0 {
                ops.push(Op::Oom { usage: hi, at: i as u64 });
            }
        }
        check_series(cfg, &ops);
    }

    #[test]
    fn resource_vector_is_bounded(
        cfg in config(),
        runs in proptest::collection::vec(
            (proptest::collection::vec((0..Dim::COUNT, amount()), 0..4),
             proptest::option::of(amount()), time()),
            0..40,
        ),
        fallback in proptest::collection::vec((0..Dim::COUNT, amount()), 0..4),
    ) {
        let mut class: ResourcePredictor = ResourcePredictor::new();
        let build = |pairs: &[(usize, u64)]| {
            pairs.iter().fold(Resources::NONE, |r, &(d, a)| {
                r.with_saturating(Dim::from_index(d).unwrap(), a)
            })
        };
        let fb = build(&fallback);
        for (pairs, size, at) in &runs {
            class.observe(&cfg, &build(pairs), *size, *at);
            let est = class.predict(&cfg, *size, &fb);
            for dim in Dim::ALL {
                let learned = est.learned.contains(dim);
                let covered = est.covered.contains(dim);
                prop_assert!(!(learned && covered), "the two are disjoint");
                if learned {
                    prop_assert!(est.confidence[dim] >= cfg.min_confidence);
                    prop_assert!(est.expected.get(dim) <= est.reserve.get(dim));
                } else if covered {
                    // From the data: enough samples, a reserve of at least
                    // the prediction and at most the covered margin times it.
                    let s = cfg.sanitized();
                    prop_assert!(class.series(dim).samples() >= u64::from(s.full_confidence_samples));
                    let (e, r) = (est.expected.get(dim).unwrap(), est.reserve.get(dim).unwrap());
                    prop_assert!(e > 0 && e <= r);
                    prop_assert!(
                        u128::from(r) * 1_000_000
                            <= u128::from(e) * u128::from(s.max_covered_margin.as_ppm())
                    );
                } else if let Some(f) = fb.get(dim) {
                    prop_assert_eq!(est.expected.get(dim), Some(f));
                } else {
                    prop_assert_eq!(est.expected.get(dim), None);
                }
                prop_assert!(est.confidence[dim] <= Ppm::ONE);
            }
        }
    }

    #[test]
    fn bucket_functions_invert(v in amount()) {
        let i = bucket_index(v);
        prop_assert!(i < BUCKET_INDICES);
        prop_assert!(bucket_start(i) <= v && v <= bucket_end(i));
        if i + 1 < BUCKET_INDICES {
            prop_assert!(v < bucket_start(i + 1));
        }
    }

    #[test]
    fn histogram_percentiles_are_monotone_and_cover_samples(
        samples in proptest::collection::vec((amount(), time()), 1..100),
        half_life in time(),
        mut ps in proptest::collection::vec(0..=1_000_000u32, 2..6),
    ) {
        let mut h = DecayingHistogram::<64>::new();
        for &(v, t) in &samples {
            h.add(v, t, half_life);
        }
        ps.sort_unstable();
        let mut last = 0;
        for &p in &ps {
            let q = h.percentile(Ppm::from_ppm(p));
            // Everything can decay away, but only with a positive half-life.
            if half_life == 0 {
                prop_assert!(q.is_some());
            }
            if let Some(q) = q {
                prop_assert!(q >= last, "p{p}: {q} < {last}");
                last = q;
            }
        }
        // Without decay, the 100th percentile covers the largest sample
        // (the window can only merge low values upwards).
        let mut flat = DecayingHistogram::<64>::new();
        for &(v, _) in &samples {
            flat.add(v, 0, 0);
        }
        let max = samples.iter().map(|&(v, _)| v).max().unwrap();
        prop_assert!(flat.percentile(Ppm::ONE).unwrap() >= max);
    }

    #[test]
    fn moments_match_exact_arithmetic(xs in proptest::collection::vec(0..1_000_000u64, 1..200)) {
        let mut m = Moments::new();
        for &x in &xs {
            m.push(x);
        }
        let n = xs.len() as u128;
        let sum: u128 = xs.iter().map(|&x| u128::from(x)).sum();
        let sum2: u128 = xs.iter().map(|&x| u128::from(x) * u128::from(x)).sum();
        // mean = sum / n, variance = (n * sum2 - sum^2) / n^2.
        let mean = (2 * sum + n) / (2 * n); // rounded to nearest
        prop_assert!(m.mean().unwrap().abs_diff(mean as u64) <= 1);
        let var = (n * sum2 - sum * sum) / (n * n);
        let got = u128::from(m.variance().unwrap());
        // Truncation in each step loses at most a few units per sample.
        prop_assert!(got.abs_diff(var) <= 2 + var / 100_000, "{got} vs {var}");
    }

    #[test]
    fn ewma_stays_between_extremes(
        xs in proptest::collection::vec(amount(), 1..100),
        alpha in ppm(),
    ) {
        let mut e = Ewma::new();
        for &x in &xs {
            e.push(x, alpha);
        }
        let lo = xs.iter().map(|&x| x.min(MAX_AMOUNT)).min().unwrap();
        let hi = xs.iter().map(|&x| x.min(MAX_AMOUNT)).max().unwrap();
        let v = e.value().unwrap();
        prop_assert!(lo <= v && v <= hi, "{v} outside {lo}..={hi}");
    }

    #[test]
    fn regression_recovers_exact_lines(
        a in 0..1_000_000u64,
        b in 0..10_000u64,
        sizes in proptest::collection::vec(1..1_000_000u64, 2..50),
        query in 0..2_000_000u64,
    ) {
        prop_assume!(sizes.iter().any(|&s| s != sizes[0]));
        let mut r = SizeRegression::new();
        for &s in &sizes {
            r.push(s, a + b * s, 64);
        }
        let exact = a + b * query;
        let got = r.predict(query).unwrap();
        // Q16 truncation: within 0.01% plus one unit.
        prop_assert!(got.abs_diff(exact) <= 1 + exact / 10_000, "{got} vs {exact}");
    }

    #[test]
    fn regression_never_overflows(
        pairs in proptest::collection::vec((amount(), amount()), 0..60),
        window in any::<u32>(),
        query in amount(),
    ) {
        let mut r = SizeRegression::new();
        for &(s, y) in &pairs {
            r.push(s, y, window);
            prop_assert!(r.predict(query).is_none_or(|p| p <= MAX_AMOUNT));
        }
    }

    #[test]
    fn accuracy_matches_definition(pairs in proptest::collection::vec((amount(), amount()), 0..50)) {
        let mut acc = Accuracy::new();
        let mut hits = 0u64;
        for &(p, a) in &pairs {
            let hit = u128::from(p.abs_diff(a)) * 10 <= u128::from(a);
            prop_assert_eq!(acc.record(p, a), hit);
            hits += u64::from(hit);
        }
        prop_assert_eq!((acc.hits(), acc.total()), (hits, pairs.len() as u64));
    }
}
