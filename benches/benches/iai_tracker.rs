//! Instruction counts of the lock-free tracker (valgrind/callgrind through
//! gungraun): one `try_reserve` plus its release, uncontended, for requests
//! of 1, 3 and 6 dimensions, one admission decision, and the packed path
//! the runtime takes for a task with requirements only (`reserve_packed`,
//! then `LogWriter::add_packed` into a worker's release log). The hard limits
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
use respool_core::{Dim, LogWriter, ReleaseLog, Resources, Tracker};

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
#[bench::dims_1(args = (1), setup = setup, config = limit(520))]
#[bench::dims_3(args = (3), setup = setup, config = limit(655))]
#[bench::dims_6(args = (6), setup = setup, config = limit(800))]
fn reserve_release((tracker, req): (Tracker, Resources)) -> Tracker {
    let r = black_box(&tracker).try_reserve(black_box(&req));
    drop(black_box(r));
    tracker
}

// The same operation without the harness's copies: the tracker and the
// request live on the heap (the setup hands over two pointers, not a
// 400-byte tracker), and the reservation is observed through a reference
// instead of being moved through `black_box`. What is left is
// `try_reserve` (walking the request's dimensions, a load and a
// compare-and-swap per dimension, building the held vector) and the release
// (a `fetch_add` per dimension).
fn setup_boxed(dims: usize) -> (Box<Tracker>, Box<Resources>) {
    let (tracker, req) = setup(dims);
    (Box::new(tracker), Box::new(req))
}

#[library_benchmark]
#[bench::dims_1(args = (1), setup = setup_boxed, config = limit(285))]
#[bench::dims_3(args = (3), setup = setup_boxed, config = limit(425))]
#[bench::dims_6(args = (6), setup = setup_boxed, config = limit(575))]
fn reserve_release_boxed(
    (tracker, req): (Box<Tracker>, Box<Resources>),
) -> (Box<Tracker>, Box<Resources>) {
    let r = black_box(&*tracker).try_reserve(black_box(&*req));
    black_box(&r);
    drop(r);
    (tracker, req)
}

// 100 reservations and releases in a loop: the count divided by 100 is the
// cost of one without the harness's call and copies around it.
#[library_benchmark]
#[bench::dims_6(args = (6), setup = setup_boxed, config = limit(55_500))]
fn reserve_release_x100(
    (tracker, req): (Box<Tracker>, Box<Resources>),
) -> (Box<Tracker>, Box<Resources>) {
    for _ in 0..100 {
        let r = black_box(&*tracker).try_reserve(black_box(&*req));
        black_box(&r);
        drop(r);
    }
    (tracker, req)
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
#[bench::dims_3(args = (3), setup = setup_admission, config = limit(745))]
fn admit_release((tracker, admission, req): (Tracker, Admission, Resources)) -> Tracker {
    let d = black_box(&admission).decide(&tracker, black_box(&req), Urgency::Normal, 0, 0);
    drop(black_box(d));
    tracker
}

// The runtime's path for a task that declares requirements and nothing
// else: admitted straight into a packed token (`reserve_packed`; the
// runtime counts it with the submission), which the worker that ran it
// adds to its release log (`LogWriter::add_packed`: plain stores, no locked
// instruction); the log goes back to the tracker once per 32 tasks, so that
// give-back is not counted here. The writer is claimed in the setup, as a
// worker claims it once when it starts (the log is leaked for that: a few
// hundred bytes per benchmark run).
fn setup_packed(dims: usize) -> (Tracker, Admission, Resources, LogWriter<'static>) {
    let (tracker, admission, req) = setup_admission(dims);
    let log: &'static ReleaseLog = Box::leak(Box::new(ReleaseLog::new()));
    let writer = log.writer().expect("a fresh log has no writer");
    (tracker, admission, req, writer)
}

#[library_benchmark]
#[bench::dims_3(args = (3), setup = setup_packed, config = limit(675))]
fn admit_packed_log(
    (tracker, admission, req, mut writer): (Tracker, Admission, Resources, LogWriter<'static>),
) -> (Tracker, LogWriter<'static>) {
    let p = black_box(&admission).reserve_packed(&tracker, black_box(&req), Urgency::Normal);
    if let Some(p) = black_box(p) {
        if let Err(p) = writer.add_packed(p) {
            let _ = p.unpack().release(&tracker);
        }
    }
    (tracker, writer)
}

library_benchmark_group!(
    name = tracker,
    benchmarks = [
        reserve_release,
        reserve_release_boxed,
        reserve_release_x100,
        admit_release,
        admit_packed_log
    ]
);
main!(library_benchmark_groups = tracker);
