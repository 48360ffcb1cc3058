//! Side-by-side ratios of respool against the peers of `respool_benches::peers`.
//!
//! For each workload it runs rounds; in each round every peer (in rotating
//! order, so no peer always goes first) submits a batch of tasks and waits
//! for all of them. It reports the median time per task, the ratio to the
//! fastest peer other than respool, the median over rounds of the ratio to
//! that peer *in the same round* (the two batches ran seconds apart, so a
//! change of load on a shared machine between rounds cancels out), the same
//! ratio between the best rounds (interference from other work only ever
//! adds time, so the best round is the least disturbed one), and heap
//! allocations per task (counted by a counting global allocator around each
//! batch).
//!
//! `cargo run --release -p respool-benches --bin pool_ratios -- [tasks] [rounds] [workers]`
//! (defaults: 100000 tasks, 7 rounds, 2 workers). Prints a Markdown table.
//! `RESPOOL_BENCH_CONTROL=1` replaces the 3-dimension pool by a second plain
//! one (an A/A control: the spread of its ratio against the first is noise);
//! `RESPOOL_BENCH_OBSERVER=1` by a plain one with an observer that counts
//! every event (what the observer seam costs).
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use respool_benches::counting::{Counting, allocations};
use respool_benches::peers::{NAMES, Peer};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The best (smallest) round; NaN for a peer that was not run.
fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::min)
}

/// `x / fastest`, where `fastest` is the smallest of the first four (the
/// peers other than respool).
fn ratios(of: &[f64]) -> Vec<f64> {
    let fastest = of[..4].iter().copied().fold(f64::INFINITY, f64::min);
    of.iter().map(|x| x / fastest).collect()
}

/// Per peer: the median over rounds of `time / time of the fastest peer in
/// that round`, where "the fastest peer" is the one `ratios` divides by (the
/// fastest of the first four by median). NaN for a peer that was not run.
fn paired(times: &[Vec<f64>], medians: &[f64]) -> Vec<f64> {
    let Some(fastest) = (0..4).min_by(|&a, &b| medians[a].total_cmp(&medians[b])) else {
        return vec![f64::NAN; times.len()];
    };
    times
        .iter()
        .map(|t| {
            let mut r: Vec<f64> = t.iter().zip(&times[fastest]).map(|(x, f)| x / f).collect();
            median(&mut r)
        })
        .collect()
}

/// The table: one row per peer.
fn rows(names: &[&str], label: &str, times: &mut [Vec<f64>], extra: impl Fn(usize) -> String) {
    let bests = ratios(&times.iter().map(|t| best(t)).collect::<Vec<_>>());
    let medians: Vec<f64> = times.iter().map(|t| median(&mut t.clone())).collect();
    let pairs = paired(times, &medians);
    let vs = ratios(&medians);
    for (i, name) in names.iter().enumerate() {
        println!(
            "| {label} | {name} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
            medians[i],
            vs[i],
            pairs[i],
            bests[i],
            extra(i)
        );
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let tasks = args.first().copied().unwrap_or(100_000);
    let rounds = args.get(1).copied().unwrap_or(7).max(1);
    let workers = args.get(2).copied().unwrap_or(2).max(1);
    // RESPOOL_BENCH_CONTROL=1: an A/A control, the last pool is a second
    // `respool execute`: how far apart noise alone puts two identical pools.
    let control = std::env::var_os("RESPOOL_BENCH_CONTROL").is_some();
    let observed = std::env::var_os("RESPOOL_BENCH_OBSERVER").is_some();
    let peers = if control {
        Peer::all_control(workers)
    } else if observed {
        Peer::all_observed(workers)
    } else {
        Peer::all(workers)
    };
    // RESPOOL_BENCH_ONLY=<index into NAMES>: profile one peer alone.
    let only: Option<usize> = std::env::var("RESPOOL_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    println!(
        "{} tasks per batch, {rounds} rounds, {workers} workers, {} cores",
        tasks,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut names = NAMES.to_vec();
    if control {
        println!("A/A control: the last row is a second `respool execute` pool.");
        if let Some(last) = names.last_mut() {
            *last = "respool execute (A/A control)";
        }
    } else if observed {
        println!("The last row is `respool execute` with an observer counting every event.");
        if let Some(last) = names.last_mut() {
            *last = "respool execute + observer";
        }
    }
    println!();
    println!(
        "| workload | pool | median ns/task | vs fastest peer | same-round ratio (median) | best rounds vs fastest | allocations/task |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    // RESPOOL_BENCH_EMPTY_ONLY=1: only tasks without work (for profiling).
    let empty_only = std::env::var_os("RESPOOL_BENCH_EMPTY_ONLY").is_some();
    let workloads = [
        ("empty", Duration::ZERO, tasks),
        ("1 us", Duration::from_micros(1), tasks),
        ("10 us", Duration::from_micros(10), tasks / 10),
    ];
    // RESPOOL_BENCH_WORKLOAD=<label>: only that workload ("empty", "1 us",
    // "10 us", "waves of 1000", "saturated", "round trip"; for profiling).
    let workload = std::env::var("RESPOOL_BENCH_WORKLOAD").ok();
    let wanted = |label: &str| workload.as_deref().is_none_or(|w| w == label);
    for (label, work, n) in workloads
        .into_iter()
        .take(if empty_only { 1 } else { 3 })
        .filter(|(label, ..)| wanted(label))
    {
        // Warm-up: one batch each, so lazily created state is not counted.
        for (i, p) in peers.iter().enumerate() {
            if only.is_none_or(|o| o == i) {
                p.batch(n.min(10_000), work);
            }
        }
        let mut times = vec![Vec::new(); peers.len()];
        let mut allocs = vec![0u64; peers.len()];
        for round in 0..rounds {
            for k in 0..peers.len() {
                let i = (k + round) % peers.len();
                if only.is_some_and(|o| o != i) {
                    times[i].push(f64::NAN);
                    continue;
                }
                let a0 = allocations();
                let t0 = Instant::now();
                peers[i].batch(n, work);
                let dt = t0.elapsed();
                allocs[i] += allocations() - a0;
                times[i].push(dt.as_nanos() as f64 / n as f64);
            }
        }
        rows(&names, label, &mut times, |i| {
            format!("{:.2}", allocs[i] as f64 / (n * rounds) as f64)
        });
    }
    // Steady state: waves of 1,000 empty tasks, each wave awaited before the
    // next, so the number of tasks in flight stays bounded. This is where a
    // pool can run without any heap allocation per task.
    if wanted("waves of 1000") && !empty_only {
        let waves = (tasks / 1000).max(1);
        let mut times = vec![Vec::new(); peers.len()];
        let mut allocs = vec![0u64; peers.len()];
        for (i, p) in peers.iter().enumerate() {
            if only.is_none_or(|o| o == i) {
                p.batch(1000, Duration::ZERO);
            }
        }
        for round in 0..rounds {
            for k in 0..peers.len() {
                let i = (k + round) % peers.len();
                if only.is_some_and(|o| o != i) {
                    times[i].push(f64::NAN);
                    continue;
                }
                let a0 = allocations();
                let t0 = Instant::now();
                for _ in 0..waves {
                    peers[i].batch(1000, Duration::ZERO);
                }
                let dt = t0.elapsed();
                allocs[i] += allocations() - a0;
                times[i].push(dt.as_nanos() as f64 / (waves * 1000) as f64);
            }
        }
        rows(&names, "waves of 1000", &mut times, |i| {
            format!("{:.3}", allocs[i] as f64 / (waves * 1000 * rounds) as f64)
        });
    }
    let saturated_ran = wanted("saturated") && !empty_only;
    if saturated_ran {
        saturated(tasks, rounds, workers);
    }
    if !wanted("round trip") || empty_only {
        return;
    }
    if saturated_ran {
        // The saturated table came between: the round trip's rows need
        // their header again.
        println!();
        println!(
            "| workload | pool | median ns/task | vs fastest peer | same-round ratio (median) | best rounds vs fastest | allocations/task |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|");
    }
    // Round trip: one task submitted and its value awaited, repeatedly.
    let trips = (tasks / 10).max(100);
    let mut times = vec![Vec::new(); peers.len()];
    for round in 0..rounds {
        for k in 0..peers.len() {
            let i = (k + round) % peers.len();
            if only.is_some_and(|o| o != i) {
                times[i].push(f64::NAN);
                continue;
            }
            let t0 = Instant::now();
            for _ in 0..trips {
                std::hint::black_box(peers[i].round_trip());
            }
            times[i].push(t0.elapsed().as_nanos() as f64 / trips as f64);
        }
    }
    rows(&names, "round trip", &mut times, |_| String::new());
}

/// Saturated: every task needs half of the pool's CPU capacity, so two run
/// at a time and the others wait for capacity (`Policy::Defer`, the
/// default): each submission takes the deferral path (the wait queue, a
/// process-wide barrier, the workers' release logs given back) and each
/// finished task admits a waiter. respool only (the peers have no
/// admission), against the same tasks on a respool pool without
/// requirements and the same number of workers, in the same rounds.
///
/// Workloads (issue 21: the cost per task must not depend on how many
/// wait): tasks of 10 us all submitted at once (the first measurement),
/// then 5 us and 50 us tasks with the wait queue kept about 10 deep (the
/// submitter keeps at most `workers + 10` tasks outstanding) and 100,000
/// deep (100,000 tasks submitted at once).
/// `RESPOOL_BENCH_SAT_DEEP=<n>` replaces 100,000 (for a quick run).
/// `RESPOOL_BENCH_SAT_POOL=plain` or `waiting` times that pool alone (both
/// are still built and warmed up once): for a profile or a CPU count of
/// one pool's process (`perf stat`); the ratio columns then read `-`.
fn saturated(tasks: usize, rounds: usize, workers: usize) {
    use respool::{Dim, Pool, Resources};
    let deep: usize = std::env::var("RESPOOL_BENCH_SAT_DEEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let per_task = 1000;
    let build = |cpu: u64, n: usize| {
        Pool::builder()
            .workers(workers)
            .capacity(Resources::new().with_saturating(Dim::Cpu, cpu))
            .headroom(Resources::NONE)
            .max_waiting(n.max(16))
            .build()
            .expect("respool pool")
    };
    let deferred = |p: &Peer| match p {
        Peer::Respool3(pool, _) => pool.snapshot().admission.deferred,
        _ => 0,
    };
    println!();
    println!(
        "Saturated: tasks needing half the CPU capacity each (two run, the others wait), \
         against the same tasks without requirements, {rounds} rounds:"
    );
    println!();
    println!(
        "| workload | tasks per round | deferred at submit | plain median ns/task | waiting median ns/task | same-round ratio (median) | range |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let deep_label = |us: u32| {
        if deep == 100_000 {
            format!("{us} us, 100,000 deep")
        } else {
            format!("{us} us, {deep} deep")
        }
    };
    let workloads: [(String, Duration, Option<usize>, usize); 5] = [
        (
            "10 us, all at once".to_owned(),
            Duration::from_micros(10),
            None,
            (tasks / 10).max(100),
        ),
        (
            "5 us, 10 deep".to_owned(),
            Duration::from_micros(5),
            Some(10),
            (tasks / 5).max(100),
        ),
        (deep_label(5), Duration::from_micros(5), None, deep),
        (
            "50 us, 10 deep".to_owned(),
            Duration::from_micros(50),
            Some(10),
            (tasks / 50).max(100),
        ),
        (deep_label(50), Duration::from_micros(50), None, deep),
    ];
    let only = std::env::var("RESPOOL_BENCH_SAT_ONLY").ok();
    let alone = std::env::var("RESPOOL_BENCH_SAT_POOL").ok();
    let skip = |gate: bool| match alone.as_deref() {
        Some("plain") => gate,
        Some("waiting") => !gate,
        _ => false,
    };
    for (label, work, depth, n) in workloads {
        if only.as_deref().is_some_and(|o| !label.starts_with(o)) {
            continue;
        }
        let plain = Peer::Respool(build(1 << 40, n));
        let gated = Peer::Respool3(
            build(2 * per_task, n),
            Resources::new().with_saturating(Dim::Cpu, per_task),
        );
        let run = |p: &Peer| match depth {
            None => p.batch(n, work),
            Some(d) => windowed(p, n, work, d + workers),
        };
        run(&plain);
        run(&gated);
        let before = deferred(&gated);
        let (mut t_plain, mut t_gated) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for k in 0..2 {
                let gate = (k + round) % 2 == 1;
                if skip(gate) {
                    continue;
                }
                let t0 = Instant::now();
                run(if gate { &gated } else { &plain });
                let ns = t0.elapsed().as_nanos() as f64 / n as f64;
                if gate {
                    t_gated.push(ns)
                } else {
                    t_plain.push(ns)
                }
            }
        }
        let deferred = deferred(&gated) - before;
        let ns = |t: &mut Vec<f64>| {
            if t.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.0}", median(t))
            }
        };
        let mut pairs: Vec<f64> = t_gated.iter().zip(&t_plain).map(|(g, p)| g / p).collect();
        let ratios = if pairs.is_empty() {
            "- | -".to_owned()
        } else {
            let lo = pairs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = pairs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{:.3} | {lo:.3}-{hi:.3}", median(&mut pairs))
        };
        let timed = if t_gated.is_empty() { 0 } else { n * rounds };
        println!(
            "| saturated, {label} | {n} | {:.0}% | {} | {} | {ratios} |",
            100.0 * deferred as f64 / timed.max(1) as f64,
            ns(&mut t_plain),
            ns(&mut t_gated),
        );
    }
}

/// Submits `n` tasks of `work` keeping at most `outstanding` of them
/// submitted and not finished (a wait queue of about `outstanding -
/// workers`), and waits for all of them.
fn windowed(p: &Peer, n: usize, work: Duration, outstanding: usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let done = Arc::new(AtomicUsize::new(0));
    let me = std::thread::current();
    for i in 0..n {
        while i.saturating_sub(done.load(Ordering::Acquire)) >= outstanding {
            std::thread::park();
        }
        let done = Arc::clone(&done);
        let me = me.clone();
        p.spawn(move || {
            respool_benches::peers::spin_for(work);
            done.fetch_add(1, Ordering::AcqRel);
            me.unpark();
        });
    }
    while done.load(Ordering::Acquire) < n {
        std::thread::park();
    }
}
