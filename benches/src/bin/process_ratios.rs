//! Per-process ratios (issue 21): what a user's program pays, each pool in
//! a fresh process that builds the pool, submits `tasks` empty tasks at
//! once, waits for them and shuts the pool down. respool side by side with
//! the minimal crossbeam-channel pool of `respool_benches::peers` (the
//! fastest peer of `pool_ratios`), in rotating order, several rounds.
//!
//! `cargo run --release -p respool-benches --bin process_ratios -- [tasks] [rounds] [pools...]`
//! (defaults: 1 task, 50 rounds, every pool). With 1 task it measures
//! start-up (target 3: build and shut down in under 0.5 ms with nothing
//! configured); with 1,000,000 the bulk submission of declared requirements
//! (target 2: at most 1.25x the channel pool).
//!
//! Pools:
//! - `channel`: the crossbeam-channel pool, one thread per available core;
//! - `respool`: `Pool::new()` (nothing configured: detected) and `execute`;
//! - `respool-3dim`: `Pool::builder().capacity(..)` large enough that nothing
//!   waits, each task `task().requirements(r)` with one `Resources` built
//!   once (the fast form);
//! - `respool-3dim-str`: the same pool, each task
//!   `task().cpu("10m").memory("1MiB").iops("1")` (the amounts parsed on
//!   every submission, through the parse cache);
//! - `respool-3dim-require`: the same pool, each task `require(Dim, u64)`
//!   three times.
//!
//! Each child prints its own build-to-shutdown time; the parent times the
//! child from spawn to exit. Reported: medians, ranges, and the median over
//! rounds of each pool's time over the channel pool's in the same round.
#![allow(missing_docs)]

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use respool::{Dim, Pool, Resources};
use respool_benches::peers::{CrossbeamPool, Latch, big_capacity};

/// Every pool, in the order they are reported.
const POOLS: [&str; 5] = [
    "channel",
    "respool",
    "respool-3dim",
    "respool-3dim-str",
    "respool-3dim-require",
];

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The 3-dimension request of `respool-3dim` (the same as `pool_ratios`').
fn request() -> Resources {
    Resources::new()
        .with_saturating(Dim::Cpu, 10)
        .with_saturating(Dim::Memory, 1 << 20)
        .with_saturating(Dim::Iops, 1)
}

/// A pool on which `request()` never waits; workers detected.
fn roomy() -> Pool {
    Pool::builder()
        .capacity(big_capacity())
        .headroom(Resources::NONE)
        .build()
        .expect("respool pool")
}

/// Builds `pool`, submits `n` empty tasks, waits, shuts down: nanoseconds.
fn run(pool: &str, n: usize) -> u128 {
    let t0 = Instant::now();
    let latch = Latch::new(n);
    match pool {
        "channel" => {
            let p = CrossbeamPool::new(cores());
            for _ in 0..n {
                let l = Arc::clone(&latch);
                p.execute(move || l.done());
            }
            latch.wait();
            drop(p);
        }
        "respool" => {
            let p = Pool::new().expect("respool pool");
            for _ in 0..n {
                let l = Arc::clone(&latch);
                p.execute(move || l.done()).expect("submit");
            }
            latch.wait();
            p.shutdown();
        }
        "respool-3dim" => {
            let p = roomy();
            let r = request();
            for _ in 0..n {
                let l = Arc::clone(&latch);
                p.task()
                    .requirements(r)
                    .execute(move |_| l.done())
                    .expect("submit");
            }
            latch.wait();
            p.shutdown();
        }
        "respool-3dim-str" => {
            let p = roomy();
            for _ in 0..n {
                let l = Arc::clone(&latch);
                p.task()
                    .cpu("10m")
                    .memory("1MiB")
                    .iops("1")
                    .execute(move |_| l.done())
                    .expect("submit");
            }
            latch.wait();
            p.shutdown();
        }
        "respool-3dim-require" => {
            let p = roomy();
            for _ in 0..n {
                let l = Arc::clone(&latch);
                p.task()
                    .require(Dim::Cpu, 10)
                    .require(Dim::Memory, 1 << 20)
                    .require(Dim::Iops, 1)
                    .execute(move |_| l.done())
                    .expect("submit");
            }
            latch.wait();
            p.shutdown();
        }
        other => panic!("unknown pool {other}: one of {POOLS:?}"),
    }
    t0.elapsed().as_nanos()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("once") {
        // The child: one run, its time in nanoseconds on stdout.
        let pool = args.get(1).map_or("respool", String::as_str);
        let n = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
        println!("{}", run(pool, n));
        return;
    }
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let tasks = nums.first().copied().unwrap_or(1).max(1);
    let rounds = nums.get(1).copied().unwrap_or(50).max(1);
    let mut pools: Vec<&str> = args
        .iter()
        .filter(|a| a.parse::<usize>().is_err())
        .map(String::as_str)
        .collect();
    if pools.is_empty() {
        pools = POOLS.to_vec();
    }
    if !pools.contains(&"channel") {
        pools.insert(0, "channel");
    }
    let exe = std::env::current_exe().expect("current exe");
    println!(
        "{tasks} empty tasks per process, {rounds} rounds, {} cores; each pool in a fresh process, rotating order",
        cores()
    );
    let mut wall = vec![Vec::new(); pools.len()];
    let mut inner = vec![Vec::new(); pools.len()];
    for round in 0..rounds {
        for k in 0..pools.len() {
            let i = (k + round) % pools.len();
            let t0 = Instant::now();
            let out = Command::new(&exe)
                .args(["once", pools[i], &tasks.to_string()])
                .output()
                .expect("spawn");
            let dt = t0.elapsed();
            assert!(out.status.success(), "child failed: {out:?}");
            let ns: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("the child's time");
            wall[i].push(dt.as_secs_f64() * 1e6);
            inner[i].push(ns / 1e3);
        }
    }
    println!();
    println!(
        "| measurement | pool | median us | range us | same-round ratio to the channel pool (median) |"
    );
    println!("|---|---|---:|---:|---:|");
    for (label, times) in [
        ("build to shutdown", &inner),
        ("process, spawn to exit", &wall),
    ] {
        let base = &times[0];
        for (i, name) in pools.iter().enumerate() {
            let pairs: Vec<f64> = times[i].iter().zip(base).map(|(x, b)| x / b).collect();
            let (lo, hi) = range(&times[i]);
            println!(
                "| {label} | {name} | {:.0} | {lo:.0}-{hi:.0} | {:.2} |",
                median(&times[i]),
                median(&pairs)
            );
        }
    }
}
