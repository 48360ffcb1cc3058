//! Instruction counts of one placement decision (valgrind/callgrind through
//! gungraun): `Packer::place` over 8 and 64 domains of 6 dimensions, with
//! first-fit in its worst case (only the last domain has room, so every
//! domain is checked in every dimension) and with best-fit on the Tetris
//! dot-product score (every domain has room, so every domain is scored), and
//! one lookahead decision over a window of 8 requests, and one
//! defragmentation plan over 8 half-full domains (up to 4 moves into a
//! `DefragPlan<4>`). The hard limits guard
//! the counts recorded in BENCHMARKS.md: CI fails if a change makes any of
//! them grow past the limit.
#![allow(missing_docs)] // gungraun's macros generate undocumented items.

use std::hint::black_box;

use gungraun::{
    Callgrind, EventKind, LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main,
};
use respool_core::packer::{
    DefragConfig, DefragPlan, Domain, Fit, Lookahead, Packer, Placement, Score,
};
use respool_core::{Dim, Resources};

type Runtime = Packer<Box<[Domain]>>;

const SIX: [Dim; 6] = [
    Dim::Cpu,
    Dim::Memory,
    Dim::Iops,
    Dim::Network,
    Dim::Gpu,
    Dim::GpuMemory,
];

fn all(amount: u64) -> Resources {
    SIX.iter()
        .fold(Resources::NONE, |r, &d| r.with_saturating(d, amount))
}

/// `domains` domains of capacity 2^40 in six dimensions; every domain but
/// the last is full in the last dimension (GPU memory).
fn setup_first(domains: usize) -> (Runtime, Resources) {
    let mut p = Packer::new(
        (0..domains).map(|_| Domain::new(all(1 << 40))).collect(),
        Fit::First,
    );
    let full = Resources::NONE.with_saturating(Dim::GpuMemory, 1 << 40);
    for i in 0..domains.saturating_sub(1) {
        let _held = p.place_on(i, &full);
    }
    (p, all(1))
}

/// `domains` domains of capacity 2^40 in six dimensions, domain `i`
/// preloaded with `(i + 1) * 2^30` in every dimension (all have room, scores
/// differ).
fn setup_best(domains: usize) -> (Runtime, Resources) {
    let mut p = Packer::new(
        (0..domains).map(|_| Domain::new(all(1 << 40))).collect(),
        Fit::Best(Score::DotProduct),
    );
    for i in 0..domains {
        let _held = p.place_on(i, &all((i as u64 + 1) << 30));
    }
    (p, all(1 << 20))
}

fn limit(ir: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, ir)]));
    config
}

#[library_benchmark]
#[bench::domains_8(args = (8), setup = setup_first, config = limit(1_600))]
#[bench::domains_64(args = (64), setup = setup_first, config = limit(11_100))]
fn first_fit((mut packer, req): (Runtime, Resources)) -> (Runtime, Placement) {
    let placement = black_box(&mut packer).place(black_box(&req));
    match placement {
        Ok(p) => (packer, p),
        Err(e) => panic!("{e}"),
    }
}

#[library_benchmark]
#[bench::domains_8(args = (8), setup = setup_best, config = limit(5_500))]
#[bench::domains_64(args = (64), setup = setup_best, config = limit(41_700))]
fn best_fit_dot((mut packer, req): (Runtime, Resources)) -> (Runtime, Placement) {
    let placement = black_box(&mut packer).place(black_box(&req));
    match placement {
        Ok(p) => (packer, p),
        Err(e) => panic!("{e}"),
    }
}

/// Eight domains as in `setup_best`, and a window of eight requests of
/// growing size whose head does not fit (so the window decides).
fn setup_window(domains: usize) -> (Runtime, Vec<Resources>) {
    let (p, _) = setup_best(domains);
    let mut window = vec![all(1 << 40)];
    window.extend((1..8u64).map(|k| all(k << 20)));
    (p, window)
}

#[library_benchmark]
#[bench::domains_8(args = (8), setup = setup_window, config = limit(40_100))]
fn lookahead_dot((mut packer, window): (Runtime, Vec<Resources>)) -> (Runtime, Placement) {
    let mut la = Lookahead::new(8, 4);
    match black_box(&mut packer).place_from(black_box(&window), &mut la) {
        Ok(Some((_, p))) => (packer, p),
        other => panic!("{other:?}"),
    }
}

/// `domains` domains of 8 cores and 8 GiB, each holding one pending
/// placement of 4 cores and 4 GiB; the typical request (6 cores, 6 GiB)
/// fits none of them, so every pair merged frees a domain.
fn setup_defrag(domains: usize) -> (Runtime, Vec<Placement>, Resources) {
    let node = Resources::NONE
        .with_saturating(Dim::Cpu, 8_000)
        .with_saturating(Dim::Memory, 8 << 30);
    let half = Resources::NONE
        .with_saturating(Dim::Cpu, 4_000)
        .with_saturating(Dim::Memory, 4 << 30);
    let mut p = Packer::new(
        (0..domains).map(|_| Domain::new(node)).collect(),
        Fit::First,
    );
    let pending = (0..domains)
        .map(|i| p.place_on(i, &half).expect("an empty domain holds half"))
        .collect();
    let typical = Resources::NONE
        .with_saturating(Dim::Cpu, 6_000)
        .with_saturating(Dim::Memory, 6 << 30);
    (p, pending, typical)
}

#[library_benchmark]
#[bench::domains_8(args = (8), setup = setup_defrag, config = limit(257_100))]
fn plan_defrag(
    (mut packer, pending, typical): (Runtime, Vec<Placement>, Resources),
) -> (Runtime, Vec<Placement>, DefragPlan<4>) {
    let mut plan = DefragPlan::new();
    black_box(&mut packer).plan_defrag(
        black_box(&pending),
        black_box(&typical),
        &DefragConfig::default(),
        &mut plan,
    );
    assert_eq!(plan.moves().len(), 4);
    (packer, pending, plan)
}

library_benchmark_group!(
    name = packer,
    benchmarks = [first_fit, best_fit_dot, lookahead_dot, plan_defrag]
);
main!(library_benchmark_groups = packer);
