//! Fuzzes `respool_core::predict` with arbitrary series: values (including
//! zero, `u64::MAX` and `MAX_AMOUNT`), size features, timestamps that jump or
//! go backwards, out-of-memory events and arbitrary configurations.
//!
//! After every step it checks the documented bounds against a model kept
//! here: a fallback is returned unchanged with zero confidence; otherwise the
//! point prediction is at most `bound(size) = max * max(1, size / max_size)`,
//! the reserve lies between the point prediction (and any out-of-memory
//! floor) and `ceil(bound * (1 + margin))` capped at `MAX_AMOUNT`, confidence
//! is at most 100%, and hit counters never exceed their totals. The same
//! series also drives a one-bucket window, the per-dimension wrapper and the
//! histogram's percentile monotonicity.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use respool_core::predict::{
    DecayingHistogram, PredictConfig, ResourcePredictor, SeriesPredictor, Source,
};
use respool_core::{Dim, MAX_AMOUNT, Ppm, Resources};

#[derive(Arbitrary, Debug)]
struct Config {
    percentile: u32,
    safety_margin: u32,
    half_life_ns: u64,
    ewma_alpha: u32,
    error_alpha: u32,
    regression_window: u32,
    min_samples: u8,
    full_confidence_samples: u8,
    zero_confidence_error: u32,
    min_confidence: u32,
    max_covered_margin: u32,
    oom_bump_ratio: u32,
    oom_min_bump: u64,
}

#[derive(Arbitrary, Debug)]
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
    Percentiles {
        low: u32,
        high: u32,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: Option<Config>,
    dim: u8,
    ops: Vec<Op>,
}

fn config(c: &Option<Config>) -> PredictConfig {
    match c {
        None => PredictConfig::default(),
        Some(c) => PredictConfig {
            percentile: Ppm::from_ppm(c.percentile),
            safety_margin: Ppm::from_ppm(c.safety_margin),
            half_life_ns: c.half_life_ns,
            ewma_alpha: Ppm::from_ppm(c.ewma_alpha),
            error_alpha: Ppm::from_ppm(c.error_alpha),
            regression_window: c.regression_window,
            min_samples: u32::from(c.min_samples),
            full_confidence_samples: u32::from(c.full_confidence_samples),
            zero_confidence_error: Ppm::from_ppm(c.zero_confidence_error),
            min_confidence: Ppm::from_ppm(c.min_confidence),
            max_covered_margin: Ppm::from_ppm(c.max_covered_margin),
            oom_bump_ratio: Ppm::from_ppm(c.oom_bump_ratio),
            oom_min_bump: c.oom_min_bump,
        },
    }
}

fuzz_target!(|input: Input| {
    let cfg = config(&input.config);
    let sane = cfg.sanitized();
    let margin = Ppm::ONE.saturating_add(sane.safety_margin);
    let dim = Dim::from_index(usize::from(input.dim) % Dim::COUNT).unwrap();

    let mut p: SeriesPredictor = SeriesPredictor::new();
    let mut tiny: SeriesPredictor<1> = SeriesPredictor::new();
    let mut class: ResourcePredictor<8> = ResourcePredictor::new();
    let mut hist = DecayingHistogram::<16>::new();
    let (mut samples, mut max, mut max_size) = (0u64, 0u64, 0u64);

    for op in input.ops.iter().take(512) {
        match *op {
            Op::Observe { value, size, at } => {
                p.observe(&cfg, value, size, at);
                tiny.observe(&cfg, value, size, at);
                let used = Resources::NONE.with_saturating(dim, value);
                class.observe(&cfg, &used, size, at);
                hist.add(value, at, cfg.half_life_ns);
                samples += 1;
                max = max.max(value.min(MAX_AMOUNT));
                if let Some(s) = size {
                    max_size = max_size.max(s);
                }
            }
            Op::Oom { usage, at } => {
                let bumped = p.observe_oom(&cfg, usage, at);
                assert_eq!(tiny.observe_oom(&cfg, usage, at), bumped);
                assert_eq!(class.observe_oom(&cfg, dim, usage, at), bumped);
                let u = usage.min(MAX_AMOUNT);
                assert!(bumped >= u && bumped <= MAX_AMOUNT);
                max = max.max(bumped);
            }
            Op::Predict { size, fallback } => {
                let bound = match size {
                    Some(s) if max_size > 0 && s > max_size => {
                        let scaled = u128::from(max) * u128::from(s) / u128::from(max_size);
                        scaled.min(u128::from(MAX_AMOUNT)) as u64
                    }
                    _ => max,
                };
                assert_eq!(p.bound(size), bound);
                let cap = margin.apply_ceil(bound).min(MAX_AMOUNT);
                for (pr, floor) in [
                    (p.predict(&cfg, size, fallback), p.oom_floor()),
                    (tiny.predict(&cfg, size, fallback), tiny.oom_floor()),
                ] {
                    assert!(pr.confidence <= Ppm::ONE);
                    assert!(floor <= max);
                    if pr.source == Source::Fallback {
                        assert!(samples < u64::from(sane.min_samples));
                        assert_eq!(pr.value, fallback);
                        assert_eq!(pr.upper, fallback.max(floor));
                        assert_eq!(pr.confidence, Ppm::ZERO);
                    } else {
                        assert!(samples >= u64::from(sane.min_samples));
                        assert!(pr.value <= bound, "{pr:?} above {bound}");
                        assert!(pr.upper >= pr.value && pr.upper >= floor, "{pr:?}");
                        assert!(pr.upper <= cap, "{pr:?} above {cap}");
                    }
                }
                let fb = Resources::NONE.with_saturating(Dim::Cpu, fallback);
                let est = class.predict(&cfg, size, &fb);
                for d in Dim::ALL {
                    assert!(est.confidence[d] <= Ppm::ONE);
                    assert!(!(est.learned.contains(d) && est.covered.contains(d)));
                    if est.learned.contains(d) {
                        assert!(est.expected.get(d) <= est.reserve.get(d));
                    } else if est.covered.contains(d) {
                        // From the data, within the covered margin.
                        let (e, r) = (est.expected.get(d).unwrap(), est.reserve.get(d).unwrap());
                        assert!(e > 0 && e <= r, "{e} {r}");
                        assert!(
                            u128::from(r) * 1_000_000
                                <= u128::from(e) * u128::from(sane.max_covered_margin.as_ppm())
                        );
                    } else if d == Dim::Cpu {
                        assert_eq!(est.expected.get(d), Some(fallback.min(MAX_AMOUNT)));
                    } else {
                        assert_eq!(est.expected.get(d), None);
                    }
                }
            }
            Op::Percentiles { low, high } => {
                let (a, b) = (low.min(high), low.max(high));
                let (qa, qb) = (
                    hist.percentile(Ppm::from_ppm(a)),
                    hist.percentile(Ppm::from_ppm(b)),
                );
                assert_eq!(qa.is_some(), qb.is_some());
                if let (Some(qa), Some(qb)) = (qa, qb) {
                    assert!(qa <= qb, "p{a} = {qa} > p{b} = {qb}");
                }
            }
        }
        assert_eq!(p.samples(), samples);
        assert_eq!(p.max_observed(), max);
        let acc = p.ensemble_accuracy();
        assert!(acc.hits() <= acc.total() && acc.total() <= samples);
        for s in Source::PREDICTORS {
            let a = p.accuracy(s);
            assert!(a.hits() <= a.total() && a.total() <= samples);
        }
    }
});
