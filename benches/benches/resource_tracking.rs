//! Guards the cost of resource tracking (roadmap: "< 5% overhead"; DESIGN:
//! tracker reserve+release counted in instructions and guarded in CI), in
//! instructions through valgrind/callgrind (gungraun), so the counts do not
//! depend on machine load. The hard limits (about 30% over the counts
//! measured when they were set, written in `docs/promises.md`) fail the
//! bench when a change makes a path grow past them.
//!
//! ```text
//! cargo bench -p respool-benches --bench resource_tracking
//! ```
//!
//! - `reserve_release`: what every resource-aware task pays at admission and
//!   completion: a 3-dimension `try_reserve` and its release.
//! - `grow_and_release`: the path of a task that outgrows its reservation
//!   (the tracking allocator's hook): `force_reserve` of the overshoot,
//!   `merge` into what it already grew, and the release of both at the end.
//! - `external_usage`: what the monitor does per sample: `set_external` and
//!   the `effective_capacity` it changes.
//! - `alloc_free_*`: one 64-byte allocation and free through the system
//!   allocator, through the tracking allocator outside any task, and inside
//!   a measured task (100 of them in one `respool::alloc::measure` session,
//!   whose start and end are counted once, and that session alone): the
//!   tracking allocator's price.
#![allow(missing_docs)] // gungraun's macros generate undocumented items.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use gungraun::{
    Callgrind, EventKind, LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main,
};
use respool::alloc::{TrackingAllocator, measure};
use respool_core::{Dim, Resources, Tracker};

fn three(amount: u64) -> Resources {
    Resources::NONE
        .with_saturating(Dim::Cpu, amount)
        .with_saturating(Dim::Memory, amount)
        .with_saturating(Dim::Iops, amount)
}

fn setup_tracker() -> (Tracker, Resources) {
    (Tracker::new(&three(1 << 40)), three(1 << 20))
}

fn limit(ir: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, ir)]));
    config
}

#[library_benchmark]
#[bench::dims_3(setup = setup_tracker, config = limit(520))]
fn reserve_release((tracker, req): (Tracker, Resources)) -> Tracker {
    let r = black_box(&tracker).try_reserve(black_box(&req));
    drop(black_box(r));
    tracker
}

/// A tracker where a running task already grew its reservation once.
fn setup_grown() -> (Tracker, respool_core::DetachedReservation, Resources) {
    let tracker = Tracker::new(&three(1 << 40));
    let mem = |n| Resources::NONE.with_saturating(Dim::Memory, n);
    let grown = tracker.force_reserve(&mem(8 << 20));
    (tracker, grown, mem(4 << 20))
}

#[library_benchmark]
#[bench::memory(setup = setup_grown, config = limit(500))]
fn grow_and_release(
    (tracker, mut grown, step): (Tracker, respool_core::DetachedReservation, Resources),
) -> Tracker {
    let more = black_box(&tracker).force_reserve(black_box(&step));
    if let Err(m) = grown.merge(more) {
        let _ = m.release(&tracker);
    }
    let _ = black_box(grown).release(&tracker);
    tracker
}

fn setup_external() -> (Tracker, Resources) {
    (
        Tracker::new(&three(1 << 40)),
        Resources::NONE.with_saturating(Dim::Memory, 3 << 30),
    )
}

#[library_benchmark]
#[bench::memory(setup = setup_external, config = limit(1_240))]
fn external_usage((tracker, external): (Tracker, Resources)) -> (Tracker, Resources) {
    let _ = black_box(&tracker).set_external(black_box(&external));
    let effective = black_box(&tracker).effective_capacity();
    (tracker, effective)
}

const LAYOUT: Layout = match Layout::from_size_align(64, 8) {
    Ok(l) => l,
    Err(_) => panic!("a valid layout"),
};

#[library_benchmark]
#[bench::one(config = limit(200))]
fn alloc_free_system() {
    // SAFETY: a non-zero-size layout; the block is freed with the same layout.
    unsafe {
        let p = System.alloc(black_box(LAYOUT));
        System.dealloc(black_box(p), LAYOUT);
    }
}

static TRACKING: TrackingAllocator = TrackingAllocator::system();

#[library_benchmark]
#[bench::one(config = limit(270))]
fn alloc_free_tracking_outside_task() {
    // SAFETY: as above; the tracking allocator forwards to the system one.
    unsafe {
        let p = TRACKING.alloc(black_box(LAYOUT));
        TRACKING.dealloc(black_box(p), LAYOUT);
    }
}

/// 100 allocations and frees through the tracking allocator. A named
/// function, not a closure: callgrind's toggle on the benchmark's name would
/// also match a closure defined in it (its symbol path contains that name)
/// and stop counting inside it.
#[inline(never)]
fn hundred_tracked() {
    for _ in 0..100 {
        // SAFETY: as above.
        unsafe {
            let p = TRACKING.alloc(black_box(LAYOUT));
            TRACKING.dealloc(black_box(p), LAYOUT);
        }
    }
}

#[library_benchmark]
#[bench::x100(config = limit(29_500))]
fn alloc_free_tracking_in_task_x100() -> u64 {
    let ((), usage) = measure(hundred_tracked);
    usage.allocations
}

// A measured task's session alone: `measure` of nothing (slot taken,
// counters reset, thread state saved and restored, slot given back).
#[library_benchmark]
#[bench::empty(config = limit(250))]
fn session_only() -> u64 {
    let ((), usage) = measure(|| ());
    usage.allocations
}

#[library_benchmark]
#[bench::x100(config = limit(19_000))]
fn alloc_free_system_x100() {
    for _ in 0..100 {
        // SAFETY: as above.
        unsafe {
            let p = System.alloc(black_box(LAYOUT));
            System.dealloc(black_box(p), LAYOUT);
        }
    }
}

library_benchmark_group!(
    name = tracking,
    benchmarks = [
        reserve_release,
        grow_and_release,
        external_usage,
        alloc_free_system,
        alloc_free_tracking_outside_task,
        alloc_free_system_x100,
        session_only,
        alloc_free_tracking_in_task_x100
    ]
);
main!(library_benchmark_groups = tracking);
