//! Instruction counts of the tracking allocator against the system
//! allocator it wraps: one allocation and its free, of 64 bytes and of
//! 4 KiB, outside any task and inside a measured task (charged to an
//! account). The difference is the tracking cost per allocation recorded in
//! BENCHMARKS.md; the hard limits guard it.
#![allow(missing_docs)] // gungraun's macros generate undocumented items.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use gungraun::{
    Callgrind, EventKind, LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main,
};
use respool::alloc::{TrackingAllocator, measure};

static TRACKING: TrackingAllocator = TrackingAllocator::system();

fn limit(ir: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, ir)]));
    config
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// [`layout`], after one allocation through the tracking allocator: it
/// then counts as installed (as it does once a program that installs it
/// has allocated), so `measure` opens an account.
fn tracking_layout(size: usize) -> Layout {
    let layout = layout(size);
    round_trip(&TRACKING, layout);
    layout
}

fn round_trip<A: GlobalAlloc>(a: &A, layout: Layout) {
    // SAFETY: a non-zero-size layout; the block is freed with the same layout.
    unsafe {
        let p = a.alloc(black_box(layout));
        black_box(p);
        a.dealloc(p, layout);
    }
}

/// Allocations per benchmark run, so that per-allocation costs dominate the
/// fixed cost of opening and closing a measured task.
const N: usize = 16;

#[library_benchmark]
#[bench::small(args = (64), setup = layout, config = limit(3_250))]
#[bench::page(args = (4096), setup = layout, config = limit(6_800))]
fn system(layout: Layout) {
    for _ in 0..N {
        round_trip(&System, layout);
    }
}

#[library_benchmark]
#[bench::small(args = (64), setup = layout, config = limit(4_950))]
#[bench::page(args = (4096), setup = layout, config = limit(8_500))]
fn tracking_outside_task(layout: Layout) {
    for _ in 0..N {
        round_trip(&TRACKING, layout);
    }
}

#[library_benchmark]
#[bench::small(args = (64), setup = tracking_layout, config = limit(5_700))]
#[bench::page(args = (4096), setup = tracking_layout, config = limit(9_300))]
fn tracking_in_task(layout: Layout) {
    charged_round_trips(layout);
}

/// Outside the benchmark function on purpose: callgrind toggles collection
/// on entering any function whose name matches the benchmark's, closures
/// included, so a closure defined in the benchmark would switch it off.
#[inline(never)]
fn charged_round_trips(layout: Layout) {
    // `measure` opens and closes an account once for the N allocations.
    let ((), usage) = measure(|| {
        for _ in 0..N {
            round_trip(&TRACKING, layout);
        }
    });
    // Proves they were charged to the task.
    assert_eq!(usage.allocations, N as u64);
}

library_benchmark_group!(
    name = alloc,
    benchmarks = [system, tracking_outside_task, tracking_in_task]
);
main!(library_benchmark_groups = alloc);
