//! Instruction counts of the predictors (valgrind/callgrind through gungraun):
//! one update (`observe`) and one `predict` of the ensemble over one series,
//! with and without a size feature, and one `add` and one `percentile` of the
//! decaying histogram on its own. Each starts from a predictor warmed with 100
//! samples (the steady state of a task class). The hard limits guard the
//! measured counts with about 30% headroom: CI fails if a change makes any of
//! them grow past the limit.
//!
//! Measured (gungraun 0.20, x86_64, rustc 1.95 release): observe 1692
//! without a size and 3336 with one (the regression update and its 128-bit
//! divisions), predict 921 and 789 (with a size the regression is picked and
//! the histogram walk is skipped), histogram add 232, p95 453.
#![allow(missing_docs)] // gungraun's macros generate undocumented items.

use std::hint::black_box;

use gungraun::{
    Callgrind, EventKind, LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main,
};
use respool_core::Ppm;
use respool_core::predict::{DecayingHistogram, PredictConfig, Prediction, SeriesPredictor};

const SECOND: u64 = 1_000_000_000;

/// A deterministic series around 1 MB (+-5%), sizes 10k..100k when `sized`.
fn sample(i: u64, sized: bool) -> (u64, Option<u64>) {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
    x ^= x >> 29;
    let size = 10_000 + x % 90_000;
    if sized {
        (size * 64 + x % (size * 3), Some(size))
    } else {
        (1_000_000 + x % 100_000, None)
    }
}

fn warmed(sized: bool) -> (SeriesPredictor, PredictConfig) {
    let cfg = PredictConfig::default();
    let mut p = SeriesPredictor::new();
    for i in 0..100 {
        let (v, s) = sample(i, sized);
        p.observe(&cfg, v, s, i * SECOND);
    }
    (p, cfg)
}

fn limit(ir: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, ir)]));
    config
}

#[library_benchmark]
#[bench::no_size(args = (false), setup = warmed, config = limit(2_200))]
#[bench::with_size(args = (true), setup = warmed, config = limit(4_350))]
fn ensemble_observe((mut p, cfg): (SeriesPredictor, PredictConfig)) -> SeriesPredictor {
    let sized = p.max_size() > 0;
    let (v, s) = sample(100, sized);
    black_box(&mut p).observe(black_box(&cfg), black_box(v), black_box(s), 100 * SECOND);
    p
}

#[library_benchmark]
#[bench::no_size(args = (false), setup = warmed, config = limit(1_550))]
#[bench::with_size(args = (true), setup = warmed, config = limit(1_350))]
fn ensemble_predict((p, cfg): (SeriesPredictor, PredictConfig)) -> Prediction {
    let size = (p.max_size() > 0).then_some(55_000);
    black_box(&p).predict(black_box(&cfg), black_box(size), black_box(4096))
}

fn warmed_histogram() -> DecayingHistogram<64> {
    let mut h = DecayingHistogram::new();
    for i in 0..100 {
        h.add(
            sample(i, false).0,
            i * SECOND,
            PredictConfig::DEFAULT.half_life_ns,
        );
    }
    h
}

#[library_benchmark]
#[bench::add(setup = warmed_histogram, config = limit(300))]
fn histogram_add(mut h: DecayingHistogram<64>) -> DecayingHistogram<64> {
    black_box(&mut h).add(
        black_box(1_030_000),
        black_box(100 * SECOND),
        PredictConfig::DEFAULT.half_life_ns,
    );
    h
}

#[library_benchmark]
#[bench::p95(setup = warmed_histogram, config = limit(590))]
fn histogram_percentile(h: DecayingHistogram<64>) -> Option<u64> {
    black_box(&h).percentile(black_box(Ppm::from_percent(95)))
}

library_benchmark_group!(
    name = predict,
    benchmarks = [
        ensemble_observe,
        ensemble_predict,
        histogram_add,
        histogram_percentile
    ]
);
main!(library_benchmark_groups = predict);
