//! respool's main demonstration: a mixed workload under a memory budget.
//!
//! ```text
//! cargo run --release -p respool --example demo -- [--budget 600MiB] [--workers 8]
//!                                                  [--runs 4] [--dir PATH] [--fresh]
//! ```
//!
//! The workload mixes memory-heavy tasks whose memory grows with their input
//! size (`decode`), CPU-heavy tasks (`compress`) and many small ones
//! (`small`). It runs first on a count-only pool (start whatever is queued,
//! as thread pools do), then several times on respool, which is told only
//! the memory budget: no task declares what it needs. The first respool run
//! works from a conservative fallback; each run measures every task, learns
//! per class, and saves the profiles to a file, so the next run (and the
//! next invocation) starts from what was learned. Peaks are measured by the
//! tracking allocator installed below.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use respool::alloc::{self, TrackingAllocator};
use respool::learn::LearningConfig;
use respool::measure::TaskReport;
use respool::store::FileStore;
use respool::units::{format_bytes, parse_bytes};
use respool::{Dim, Pool, Resources};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

const MIB: u64 = 1 << 20;

/// The demo's settings (its command line).
pub struct Options {
    /// The memory budget, bytes.
    pub budget: u64,
    /// Workers of every pool.
    pub workers: usize,
    /// Respool runs after the count-only one.
    pub runs: usize,
    /// Where the learned profiles are kept.
    pub dir: std::path::PathBuf,
    /// Forget what was learned before.
    pub fresh: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            budget: 600 * MIB,
            workers: 8,
            runs: 4,
            dir: std::env::temp_dir().join("respool-demo"),
            fresh: false,
        }
    }
}

fn options() -> Result<Options, String> {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--budget" => o.budget = parse_bytes(&value()?).map_err(|e| e.to_string())?,
            "--workers" => o.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?,
            "--runs" => o.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--dir" => o.dir = value()?.into(),
            "--fresh" => o.fresh = true,
            "-h" | "--help" => {
                return Err(
                    "usage: demo [--budget 600MiB] [--workers 8] [--runs 4] [--dir PATH] [--fresh]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if o.workers == 0 || o.runs == 0 {
        return Err("--workers and --runs must be at least 1".into());
    }
    Ok(o)
}

/// One task of the workload.
#[derive(Clone, Copy)]
enum Job {
    /// Decodes an input of `size` MiB into a buffer of `size` MiB and works on it.
    Decode { size: u64 },
    /// CPU-bound work on a 1 MiB buffer.
    Compress,
    /// A small allocation and a little work.
    Small,
}

impl Job {
    fn class(self) -> &'static str {
        match self {
            Job::Decode { .. } => "decode",
            Job::Compress => "compress",
            Job::Small => "small",
        }
    }

    fn size(self) -> Option<u64> {
        match self {
            Job::Decode { size } => Some(size),
            _ => None,
        }
    }

    fn run(self) -> u64 {
        match self {
            Job::Decode { size } => {
                let buf = vec![1u8; usize::try_from(size * MIB).unwrap_or(usize::MAX)];
                let mut sum = 0u64;
                for chunk in buf.chunks(4096) {
                    sum = sum.wrapping_add(u64::from(chunk[0]));
                }
                // Holding the buffer while working on it is what makes
                // parallel decodes add up.
                spin(Duration::from_millis(15));
                sum
            }
            Job::Compress => {
                let buf = vec![7u8; 1 << 20];
                let mut h = 0xcbf2_9ce4_8422_2325u64;
                for _ in 0..12 {
                    for &b in &buf {
                        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                    }
                }
                h
            }
            Job::Small => {
                let v = vec![3u8; 64 << 10];
                v.iter().map(|&b| u64::from(b)).sum()
            }
        }
    }
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The same workload every run: sizes from a fixed seed.
fn workload() -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i % 12 == 0 {
            jobs.push(Job::Decode { size: 60 + x % 121 });
        } else if i % 12 == 6 {
            jobs.push(Job::Compress);
        } else {
            jobs.push(Job::Small);
        }
    }
    jobs
}

/// What one run measured.
pub struct RunResult {
    /// The table's first column.
    pub label: String,
    /// Peak heap over the run, bytes.
    pub peak: i64,
    /// Submission of the first task to the end of the last.
    pub makespan: Duration,
    /// Tasks admitted on a memory prediction.
    pub predicted: usize,
    /// Of those, predicted within 10% of what they used.
    pub within: usize,
    /// Memory reserved over memory used, by the decodes.
    pub reserved_over_used: Option<f64>,
}

fn count_only(o: &Options, jobs: &[Job]) -> Result<RunResult, String> {
    let pool = Pool::builder()
        .workers(o.workers)
        .capacity(Resources::NONE)
        .headroom(Resources::NONE)
        .build()
        .map_err(|e| format!("cannot build the count-only pool: {e}"))?;
    let base = alloc::global().live;
    alloc::reset_global_peak();
    let t0 = Instant::now();
    let handles = jobs
        .iter()
        .map(|&j| pool.submit(move || j.run()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("count-only pool: a submission failed: {e}"))?;
    for h in handles {
        h.join()
            .map_err(|e| format!("count-only pool: a task failed: {e}"))?;
    }
    Ok(RunResult {
        label: format!("count-only pool, {} workers", o.workers),
        peak: alloc::global().peak - base,
        makespan: t0.elapsed(),
        predicted: 0,
        within: 0,
        reserved_over_used: None,
    })
}

fn respool_run(o: &Options, jobs: &[Job], n: usize) -> Result<RunResult, String> {
    let reports = Arc::new(Mutex::new(Vec::<TaskReport>::new()));
    let r2 = reports.clone();
    let pool = Pool::builder()
        .workers(o.workers)
        .limit(Dim::Memory, o.budget)
        // Keep 5% of the budget for the runtime and allocator slack.
        .headroom(Resources::NONE.with_saturating(Dim::Memory, o.budget / 20))
        .learning(LearningConfig {
            // Before a class is learned: 256 MiB and a core, as Bazel assumes.
            fallback: Resources::NONE
                .with_saturating(Dim::Cpu, 1000)
                .with_saturating(Dim::Memory, 256 * MIB),
            ..LearningConfig::default()
        })
        .profile_store(FileStore::in_dir(&o.dir))
        .on_task_end(move |r| {
            r2.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(r.clone());
        })
        .build()
        .map_err(|e| match e {
            respool::BuildError::Store(e) => format!(
                "cannot use the learned profiles in {}: {e}\n\
                 (run with --fresh to forget them, or --dir to keep them elsewhere)",
                o.dir.display()
            ),
            e => format!("cannot build the pool: {e}"),
        })?;
    let base = alloc::global().live;
    alloc::reset_global_peak();
    let t0 = Instant::now();
    let handles = jobs
        .iter()
        .map(|&j| {
            let mut t = pool.task().class(j.class());
            if let Some(s) = j.size() {
                t = t.size_hint(s);
            }
            t.spawn(move |_| j.run())
                .map_err(|e| format!("respool run {n}: a {} task was refused: {e}", j.class()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for h in handles {
        h.join()
            .map_err(|e| format!("respool run {n}: a task failed: {e}"))?;
    }
    let makespan = t0.elapsed();
    let peak = alloc::global().peak - base;
    pool.save_profiles().map_err(|e| {
        format!(
            "respool run {n}: cannot save the profiles in {}: {e}",
            o.dir.display()
        )
    })?;
    let reports = reports
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut predicted = 0;
    let mut within = 0;
    let (mut reserved, mut used) = (0u128, 0u128);
    for r in reports.iter() {
        let actual = r.usage.as_resources();
        if let (Some(e), Some(a)) = (r.expected.get(Dim::Memory), actual.get(Dim::Memory)) {
            predicted += 1;
            if e.abs_diff(a) * 10 <= a {
                within += 1;
            }
        }
        if r.class.as_deref() == Some("decode") {
            reserved += u128::from(r.requested.amount(Dim::Memory));
            used += u128::from(actual.amount(Dim::Memory));
        }
    }
    Ok(RunResult {
        label: format!("respool run {n}, {} workers", o.workers),
        peak,
        makespan,
        predicted,
        within,
        reserved_over_used: (used > 0).then(|| reserved as f64 / used as f64),
    })
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match run(&o) {
        // Respool went over the budget in some run.
        Ok(over) if over > 0 => std::process::exit(1),
        Ok(_) => {}
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs the demonstration and prints its table; returns how many respool
/// runs went over the budget.
///
/// # Errors
///
/// What it could not do (build a pool, read or save the profiles, a
/// submission refused), said in a sentence.
pub fn run(o: &Options) -> Result<usize, String> {
    alloc::track_global(true);
    if o.fresh {
        let _ = std::fs::remove_file(FileStore::in_dir(&o.dir).path());
    }
    std::fs::create_dir_all(&o.dir)
        .map_err(|e| format!("cannot create {}: {e}", o.dir.display()))?;
    let warm = FileStore::in_dir(&o.dir).path().exists();
    let machine = respool::sys::MachineCapacity::detect_host();
    let jobs = workload();
    let decodes = jobs
        .iter()
        .filter(|j| matches!(j, Job::Decode { .. }))
        .count();
    let max_decode = jobs.iter().filter_map(|j| j.size()).max().unwrap_or(0);
    println!(
        "respool demo: a mixed workload under a {} memory budget\n",
        format_bytes(o.budget)
    );
    println!(
        "machine   {}",
        machine.explain().lines().next().unwrap_or("")
    );
    println!(
        "workload  {} tasks per run: {decodes} decodes of 60-180 MiB (memory grows with input size), \
         {} CPU-bound compressions, {} small tasks",
        jobs.len(),
        jobs.iter().filter(|j| matches!(j, Job::Compress)).count(),
        jobs.iter().filter(|j| matches!(j, Job::Small)).count(),
    );
    println!(
        "          a count-only pool of {} workers may hold {} decodes at once: up to {}",
        o.workers,
        o.workers.min(decodes),
        format_bytes(o.workers.min(decodes) as u64 * max_decode * MIB)
    );
    println!(
        "profiles  {} ({})\n",
        FileStore::in_dir(&o.dir).path().display(),
        if warm {
            "warm start: learned by an earlier invocation"
        } else {
            "cold start: nothing learned yet"
        }
    );

    let mut results = vec![count_only(o, &jobs)?];
    for n in 1..=o.runs {
        results.push(respool_run(o, &jobs, n)?);
    }

    println!(
        "{:<32} {:>10} {:>8} {:>9} {:>18} {:>14}",
        "run", "peak heap", "budget", "makespan", "memory predicted", "decode reserve"
    );
    println!(
        "{:<32} {:>10} {:>8} {:>9} {:>18} {:>14}",
        "", "", "", "", "(within 10%)", "/ used"
    );
    for r in &results {
        let over = r.peak > i64::try_from(o.budget).unwrap_or(i64::MAX);
        println!(
            "{:<32} {:>10} {:>8} {:>8.2}s {:>18} {:>14}",
            r.label,
            format_bytes(r.peak.max(0).unsigned_abs()),
            if over { "OVER" } else { "under" },
            r.makespan.as_secs_f64(),
            if r.predicted == 0 {
                "fallback".to_string()
            } else {
                format!(
                    "{}/{} ({:.0}%)",
                    r.within,
                    r.predicted,
                    100.0 * r.within as f64 / r.predicted as f64
                )
            },
            r.reserved_over_used
                .map_or("-".into(), |x| format!("{x:.2}x")),
        );
    }
    let respool_over = results
        .iter()
        .skip(1)
        .filter(|r| r.peak > i64::try_from(o.budget).unwrap_or(i64::MAX))
        .count();
    println!();
    if results[0].peak > i64::try_from(o.budget).unwrap_or(i64::MAX) {
        println!(
            "The count-only pool went over the budget ({} > {}); respool stayed under it in {} of {} runs.",
            format_bytes(results[0].peak.max(0).unsigned_abs()),
            format_bytes(o.budget),
            o.runs - respool_over,
            o.runs
        );
    } else {
        println!(
            "The count-only pool stayed under the budget this time (try fewer --workers or a smaller --budget); \
             respool stayed under it in {} of {} runs.",
            o.runs - respool_over,
            o.runs
        );
    }
    println!(
        "Learned profiles are in {}: run the demo again and the first respool run starts warm.",
        FileStore::in_dir(&o.dir).path().display()
    );
    Ok(respool_over)
}
