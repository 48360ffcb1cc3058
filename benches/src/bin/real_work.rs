//! Real work under a memory budget: respool against fixed pools, side by side.
//!
//! The workload is 32 jobs of three kinds on buffers of 1 to 100 MiB (sizes
//! spread 100x, log-uniform, from a fixed seed): **sort** (random `u64`s,
//! `sort_unstable`), **deflate** (text-like data compressed with `flate2`,
//! then decompressed and checked) and **parse** (CSV lines parsed into
//! records and summed). Each job makes its own input, so what it holds
//! grows with its size (about 1x, 2.4x and 2.6x the buffer). Run at once,
//! they would hold about 1.5 GiB.
//!
//! Every configuration runs as a user's program does: a fresh process that
//! builds its pool, submits the 32 jobs, waits, and shuts the pool down.
//! This binary is both the driver and the child (`--child`); the child
//! reports its makespan (pool built to pool shut down) and its peak RSS
//! (`VmHWM` of `/proc/self/status`: the whole process, its allocator's
//! slack included, not just the heap respool accounts for).
//!
//! Configurations, in rotating order in each round:
//! - `rayon-N`, N = 1 .. 2 x cores: a rayon pool of N threads,
//!   `par_iter().for_each` over the jobs;
//! - `plain-N`: a FIFO pool of N threads (the `threadpool` crate), jobs
//!   submitted in order;
//! - `respool`: `Pool::builder().memory(budget)`, the default workers (the
//!   cores), every job with only `class(kind)` and `size_hint(bytes)`,
//!   profiles in a `FileStore` shared by its runs: round 1 starts cold,
//!   later rounds warm from what earlier processes learned;
//! - `respool-W` (with `--respool-workers W`): the same with W workers;
//! - `respool-free-N` and `rayon-N` side by side, N = the cores: a budget of
//!   1 TiB, so that memory never binds (what learning and admission cost).
//!
//! Every configuration of a round runs the jobs in the same order; each
//! round draws another (round r, shuffle r): one fixed order favours
//! whichever traversal happens to suit it (on shuffle 0 rayon's halving
//! splits beat a FIFO queue by 5%, on shuffle 3 they lose by 9%).
//!
//! The "best safe fixed pool" is the fastest `rayon-N` / `plain-N` (by
//! median makespan) whose peak RSS stayed under the budget in every round.
//! Ratios are medians over rounds of `makespan / makespan of that pool in
//! the same round`, so a change of load between rounds cancels out.
//!
//! ```text
//! cargo run --release -p respool-benches --bin real_work -- [--budget 600MiB] [--rounds 5] [--scale 1]
//!     [--respool-workers W]
//! ```
//!
//! Prints Markdown tables (one row per configuration) and exits 0; it
//! asserts nothing (wall-clock figures are for BENCHMARKS.md, never for a
//! test).
#![allow(missing_docs, clippy::cast_precision_loss)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use respool::Pool;
use respool::alloc::TrackingAllocator;
use respool::store::FileStore;
use respool::units::{format_bytes, parse_bytes};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

const MIB: u64 = 1 << 20;
const JOBS: u64 = 32;

/// What a job does.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Sort,
    Deflate,
    Parse,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sort => "sort",
            Kind::Deflate => "deflate",
            Kind::Parse => "parse",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Job {
    kind: Kind,
    /// Input buffer, bytes.
    bytes: u64,
    seed: u64,
}

/// The 32 jobs: sizes `scale * 100^(i/31)` MiB (1 to 100 at scale 1) in a
/// shuffled order, kinds in turn. `order` picks the shuffle (every
/// configuration of a round runs the same one): one fixed order would
/// favour whichever pool's traversal happens to suit it (rayon's halving
/// splits against a FIFO queue), so each round draws its own.
fn jobs(scale: f64, order: u64) -> Vec<Job> {
    let mut v: Vec<Job> = (0..JOBS)
        .map(|i| {
            let mib = 100f64.powf(i as f64 / (JOBS - 1) as f64) * scale;
            Job {
                kind: [Kind::Sort, Kind::Deflate, Kind::Parse][(i % 3) as usize],
                bytes: ((mib * MIB as f64) as u64).max(4096),
                seed: 0x9e37_79b9_7f4a_7c15 ^ i,
            }
        })
        .collect();
    // A seeded shuffle (Fisher-Yates with xorshift), so big and small mix.
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ order.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for i in (1..v.len()).rev() {
        x = xorshift(x);
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

impl Job {
    fn run(self) -> u64 {
        match self.kind {
            Kind::Sort => sort(self.bytes, self.seed),
            Kind::Deflate => deflate(self.bytes, self.seed),
            Kind::Parse => parse(self.bytes, self.seed),
        }
    }
}

fn sort(bytes: u64, seed: u64) -> u64 {
    let n = (bytes / 8) as usize;
    let mut x = seed | 1;
    let mut v: Vec<u64> = (0..n)
        .map(|_| {
            x = xorshift(x);
            x
        })
        .collect();
    v.sort_unstable();
    v[0] ^ v[n / 2] ^ v[n - 1]
}

/// Text-like bytes: words from a small vocabulary, chosen at random.
fn text(bytes: u64, seed: u64) -> Vec<u8> {
    const WORDS: [&[u8]; 16] = [
        b"pool ", b"task ", b"memory ", b"budget ", b"worker ", b"queue ", b"the ", b"a ",
        b"learns ", b"admits ", b"runs ", b"core ", b"bytes ", b"of ", b"and ", b"\n",
    ];
    let mut out = Vec::with_capacity(bytes as usize);
    let mut x = seed | 1;
    while (out.len() as u64) < bytes {
        x = xorshift(x);
        out.extend_from_slice(WORDS[(x % 16) as usize]);
    }
    out.truncate(bytes as usize);
    out
}

fn deflate(bytes: u64, seed: u64) -> u64 {
    use flate2::Compression;
    use flate2::read::DeflateDecoder;
    use flate2::write::DeflateEncoder;
    let input = text(bytes, seed);
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(&input).expect("in memory");
    let packed = enc.finish().expect("in memory");
    let mut out = Vec::with_capacity(input.len());
    DeflateDecoder::new(&packed[..])
        .read_to_end(&mut out)
        .expect("our own stream");
    assert_eq!(out, input, "deflate round trip");
    packed.len() as u64
}

struct Record {
    id: u64,
    value: f64,
    name_len: u32,
}

fn parse(bytes: u64, seed: u64) -> u64 {
    let mut csv = String::with_capacity(bytes as usize);
    let mut x = seed | 1;
    let mut id = 0u64;
    while (csv.len() as u64) < bytes {
        x = xorshift(x);
        id += 1;
        csv.push_str(&format!(
            "{id},item-{},{}.{:02}\n",
            x % 9973,
            x % 10_000,
            x % 100
        ));
    }
    let records: Vec<Record> = csv
        .lines()
        .filter_map(|line| {
            let mut f = line.split(',');
            Some(Record {
                id: f.next()?.parse().ok()?,
                name_len: f.next()?.len() as u32,
                value: f.next()?.parse().ok()?,
            })
        })
        .collect();
    let sum: f64 = records.iter().map(|r| r.value).sum();
    records
        .iter()
        .map(|r| r.id ^ u64::from(r.name_len))
        .fold(0, u64::wrapping_add)
        ^ sum as u64
}

/// Peak resident set of this process, bytes (`VmHWM`).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// One configuration, as the child runs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    Rayon(usize),
    Plain(usize),
    /// Workers (`None`: the default), budget, store directory.
    Respool(Option<usize>, u64, PathBuf),
}

impl Config {
    fn label(&self, budget: u64) -> String {
        match self {
            Config::Rayon(n) => format!("rayon-{n}"),
            Config::Plain(n) => format!("plain-{n}"),
            Config::Respool(w, b, _) => {
                let free = if *b > budget { "-free" } else { "" };
                match w {
                    Some(w) => format!("respool{free}-{w}"),
                    None => format!("respool{free}"),
                }
            }
        }
    }

    fn args(&self) -> Vec<String> {
        match self {
            Config::Rayon(n) => vec!["rayon".into(), n.to_string()],
            Config::Plain(n) => vec!["plain".into(), n.to_string()],
            Config::Respool(w, b, dir) => vec![
                "respool".into(),
                w.map_or("default".into(), |w| w.to_string()),
                b.to_string(),
                dir.display().to_string(),
            ],
        }
    }
}

/// The child: runs the workload once on one configuration and prints
/// `makespan_ns peak_rss_bytes`.
fn child(args: &[String], scale: f64, order: u64) -> Result<(), String> {
    let jobs = jobs(scale, order);
    let t0 = Instant::now();
    match args.first().map(String::as_str) {
        Some("rayon") => {
            use rayon::prelude::*;
            let n = args[1].parse().map_err(|e| format!("{e}"))?;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| e.to_string())?;
            pool.install(|| {
                jobs.par_iter().for_each(|j| {
                    std::hint::black_box(j.run());
                })
            });
        }
        Some("plain") => {
            let n = args[1].parse().map_err(|e| format!("{e}"))?;
            let pool = threadpool::ThreadPool::new(n);
            for j in jobs {
                pool.execute(move || {
                    std::hint::black_box(j.run());
                });
            }
            pool.join();
        }
        Some("respool") => {
            let budget: u64 = args[2].parse().map_err(|e| format!("{e}"))?;
            let mut b = Pool::builder()
                .memory(&budget.to_string())
                // Kept back for the runtime and the allocator's slack.
                .headroom(
                    respool::Resources::NONE.with_saturating(respool::Dim::Memory, budget / 20),
                )
                .profile_store(FileStore::in_dir(&args[3]));
            if let Ok(w) = args[1].parse() {
                b = b.workers(w);
            }
            let pool = b.build().map_err(|e| e.to_string())?;
            let handles = jobs
                .iter()
                .map(|&j| {
                    pool.task()
                        .class(j.kind.name())
                        .size_hint(j.bytes)
                        .spawn(move |_| j.run())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            for h in handles {
                std::hint::black_box(h.join().map_err(|e| e.to_string())?);
            }
            pool.shutdown();
        }
        other => return Err(format!("unknown configuration {other:?}")),
    }
    let makespan = t0.elapsed();
    println!("{} {}", makespan.as_nanos(), peak_rss());
    Ok(())
}

/// Runs `config` in a fresh process; its makespan and peak RSS.
fn spawn(config: &Config, scale: f64, order: u64) -> Result<(Duration, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .arg("--scale")
        .arg(scale.to_string())
        .arg("--order")
        .arg(order.to_string())
        .arg("--child")
        .args(config.args())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{config:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    let ns: u64 = f.next().and_then(|v| v.parse().ok()).ok_or("no makespan")?;
    let rss: u64 = f.next().and_then(|v| v.parse().ok()).ok_or("no peak RSS")?;
    Ok((Duration::from_nanos(ns), rss))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Options {
    budget: u64,
    rounds: usize,
    scale: f64,
    respool_workers: Option<usize>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        budget: 600 * MIB,
        rounds: 5,
        scale: 1.0,
        respool_workers: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--budget" => o.budget = parse_bytes(value()?).map_err(|e| e.to_string())?,
            "--rounds" => o.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--scale" => o.scale = value()?.parse().map_err(|e| format!("--scale: {e}"))?,
            "--respool-workers" => {
                o.respool_workers = Some(value()?.parse().map_err(|e| format!("{e}"))?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.rounds < 2 {
        return Err("--rounds must be at least 2 (round 1 of respool is cold)".into());
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--scale S --child ...`: one run of one configuration.
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let scale = args
            .iter()
            .position(|a| a == "--scale")
            .and_then(|p| args.get(p + 1)?.parse().ok())
            .unwrap_or(1.0);
        let order = args
            .iter()
            .position(|a| a == "--order")
            .and_then(|p| args.get(p + 1)?.parse().ok())
            .unwrap_or(0);
        if let Err(e) = child(&args[i + 1..], scale, order) {
            eprintln!("real_work child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let o = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "{e}\nusage: real_work [--budget 600MiB] [--rounds 5] [--scale 1] [--respool-workers W]"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = drive(&o) {
        eprintln!("real_work: {e}");
        std::process::exit(1);
    }
}

fn drive(o: &Options) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let dir = std::env::temp_dir().join(format!("respool-real-work-{}", std::process::id()));
    let (store, free_store) = (dir.join("budget"), dir.join("free"));
    for d in [&store, &free_store] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let free_budget = 1u64 << 40;
    let mut configs: Vec<Config> = Vec::new();
    for n in 1..=2 * cores {
        configs.push(Config::Rayon(n));
        configs.push(Config::Plain(n));
    }
    configs.push(Config::Respool(None, o.budget, store.clone()));
    if let Some(w) = o.respool_workers {
        let d = dir.join(format!("workers-{w}"));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        configs.push(Config::Respool(Some(w), o.budget, d));
    }
    configs.push(Config::Respool(
        Some(cores),
        free_budget,
        free_store.clone(),
    ));
    let js = jobs(o.scale, 0);
    let total: u64 = js.iter().map(|j| j.bytes).sum();
    println!(
        "real work: {} jobs (sort, deflate, parse) on {} to {} buffers ({} in all), budget {}, \
         {} rounds, {} cores\n",
        js.len(),
        format_bytes(js.iter().map(|j| j.bytes).min().unwrap_or(0)),
        format_bytes(js.iter().map(|j| j.bytes).max().unwrap_or(0)),
        format_bytes(total),
        format_bytes(o.budget),
        o.rounds,
        cores
    );
    // results[config] = per round (makespan s, peak rss bytes)
    let mut results: BTreeMap<Config, Vec<(f64, u64)>> = BTreeMap::new();
    for round in 0..o.rounds {
        let k = configs.len();
        for i in 0..k {
            let c = &configs[(i + round) % k];
            // Round r runs the jobs in order r (the same for every
            // configuration of the round).
            let (t, rss) = spawn(c, o.scale, round as u64)?;
            eprintln!(
                "round {} {:<16} {:>7.2}s  peak {}",
                round + 1,
                c.label(o.budget),
                t.as_secs_f64(),
                format_bytes(rss)
            );
            results
                .entry(c.clone())
                .or_default()
                .push((t.as_secs_f64(), rss));
        }
    }
    report(o, cores, &configs, &results)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn report(
    o: &Options,
    cores: usize,
    configs: &[Config],
    results: &BTreeMap<Config, Vec<(f64, u64)>>,
) -> Result<(), String> {
    let get = |c: &Config| results.get(c).ok_or("missing results");
    let safe = |c: &Config| -> Result<bool, String> {
        Ok(get(c)?.iter().all(|&(_, rss)| rss <= o.budget))
    };
    // The best safe fixed pool: fastest median among the fixed ones safe in every round.
    let mut best: Option<(&Config, f64)> = None;
    for c in configs {
        if matches!(c, Config::Respool(..)) || !safe(c)? {
            continue;
        }
        let m = median(&get(c)?.iter().map(|r| r.0).collect::<Vec<_>>());
        if best.is_none_or(|(_, b)| m < b) {
            best = Some((c, m));
        }
    }
    let rounds_of = |c: &Config, rounds: Range<usize>| -> Result<Vec<(f64, u64)>, String> {
        get(c)?
            .get(rounds)
            .map(<[_]>::to_vec)
            .ok_or_else(|| "rounds out of range".to_owned())
    };
    // Same-round ratio against `base` over `rounds`.
    let ratio =
        |c: &Config, base: &Config, rounds: Range<usize>| -> Result<(f64, f64, f64), String> {
            let r: Vec<f64> = rounds_of(c, rounds.clone())?
                .iter()
                .zip(rounds_of(base, rounds)?)
                .map(|(a, b)| a.0 / b.0)
                .collect();
            let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.iter().copied().fold(0.0, f64::max);
            Ok((median(&r), lo, hi))
        };
    println!(
        "| pool | rounds | makespan median (min-max) | peak RSS median (max) | over budget | vs best safe fixed, same round: median (min-max) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let all = 0..o.rounds;
    let row = |label: String, c: &Config, rounds: Range<usize>| -> Result<(), String> {
        let rs = rounds_of(c, rounds.clone())?;
        let t: Vec<f64> = rs.iter().map(|r| r.0).collect();
        let rss: Vec<f64> = rs.iter().map(|r| r.1 as f64).collect();
        let over = rs.iter().filter(|r| r.1 > o.budget).count();
        let vs = match best {
            Some((b, _)) => {
                let (m, lo, hi) = ratio(c, b, rounds)?;
                format!("{m:.3}x ({lo:.3}-{hi:.3})")
            }
            None => "no safe fixed pool".into(),
        };
        println!(
            "| {label} | {} | {:.2}s ({:.2}-{:.2}) | {} ({}) | {over} of {} | {vs} |",
            rs.len(),
            median(&t),
            t.iter().copied().fold(f64::INFINITY, f64::min),
            t.iter().copied().fold(0.0, f64::max),
            format_bytes(median(&rss) as u64),
            format_bytes(rss.iter().copied().fold(0.0, f64::max) as u64),
            rs.len()
        );
        Ok(())
    };
    for c in configs {
        match c {
            Config::Respool(_, b, _) if *b == o.budget => {
                row(format!("{} (round 1, cold)", c.label(o.budget)), c, 0..1)?;
                row(
                    format!("{} (rounds 2-{}, warm)", c.label(o.budget), o.rounds),
                    c,
                    1..o.rounds,
                )?;
            }
            Config::Respool(..) => {}
            _ => row(c.label(o.budget), c, all.clone())?,
        }
    }
    if let Some((b, _)) = best {
        println!("\nbest safe fixed pool: {}", b.label(o.budget));
    }
    // Memory never binds: respool-free-N against rayon-N, N = the cores.
    let free = configs
        .iter()
        .find(|c| matches!(c, Config::Respool(_, b, _) if *b > o.budget))
        .ok_or("no free-budget run")?;
    let rayon = Config::Rayon(cores);
    let (m, lo, hi) = ratio(free, &rayon, 1..o.rounds)?;
    println!(
        "\nmemory never binds (budget 1 TiB), rounds 2-{}: {} / {} = {m:.3}x ({lo:.3}-{hi:.3}), same round",
        o.rounds,
        free.label(o.budget),
        rayon.label(o.budget)
    );
    Ok(())
}
