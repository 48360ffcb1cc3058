//! Instruction counts of the lock-free tracker (valgrind/callgrind through
//! gungraun): one `try_reserve` plus its release, uncontended, for requests
//! of 1, 3 and 6 dimensions, and one admission decision. The hard limits
//! (about 30% above the counts recorded in BENCHMARKS.md) fail CI when a
//! change makes any of them grow past the limit.
//!
//! The result is passed through `black_box`, which forces the 96-byte
//! reservation value through memory: about 140 of the counted instructions
//! are those copies (`memcpy`), the same in every variant.
#![allow(missing_docs)] // gungraun's macros generate undocumented items.

use std::hint::black_box;

use gungraun::{
    Callgrind, EventKind, LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main,
};
use respool_core::admission::{Admission, AdmissionConfig, Policy, Urgency};
use respool_core::{Dim, Resources, Tracker};

const SIX: [Dim; 6] = [
    Dim::Cpu,
    Dim::Memory,
    Dim::Iops,
    Dim::Network,
    Dim::Gpu,
    Dim::GpuMemory,
];

fn request(dims: usize) -> Resources {
    SIX.iter()
        .take(dims)
        .fold(Resources::NONE, |r, &d| r.with_saturating(d, 1))
}

fn setup(dims: usize) -> (Tracker, Resources) {
    let capacity = SIX
        .iter()
        .fold(Resources::NONE, |r, &d| r.with_saturating(d, 1 << 40));
    (Tracker::new(&capacity), request(dims))
}

fn limit(ir: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, ir)]));
    config
}

#[library_benchmark]
#[bench::dims_1(args = (1), setup = setup, config = limit(400))]
#[bench::dims_3(args = (3), setup = setup, config = limit(500))]
#[bench::dims_6(args = (6), setup = setup, config = limit(650))]
fn reserve_release((tracker, req): (Tracker, Resources)) -> Tracker {
    let r = black_box(&tracker).try_reserve(black_box(&req));
    drop(black_box(r));
    tracker
}

fn setup_admission(dims: usize) -> (Tracker, Admission, Resources) {
    let (tracker, req) = setup(dims);
    let admission = Admission::new(AdmissionConfig {
        policy: Policy::Defer,
        ..AdmissionConfig::default()
    });
    (tracker, admission, req)
}

#[library_benchmark]
#[bench::dims_3(args = (3), setup = setup_admission, config = limit(610))]
fn admit_release((tracker, admission, req): (Tracker, Admission, Resources)) -> Tracker {
    let d = black_box(&admission).decide(&tracker, black_box(&req), Urgency::Normal, 0, 0);
    drop(black_box(d));
    tracker
}

library_benchmark_group!(
    name = tracker,
    benchmarks = [reserve_release, admit_release]
);
main!(library_benchmark_groups = tracker);
