//! The stress binary of `ci/oom-stress.sh` (roadmap promise: zero OOM kills).
//!
//! ```text
//! oom_stress <control|declared|learned> [--tasks 48] [--workers 8] [--min-mib 40]
//!            [--max-mib 120] [--hold-ms 150] [--seed 1] [--store DIR]
//!            [--fallback-mib 256] [--fallback-cpu-m 1000] [--expect-limit BYTES]
//! ```
//!
//! Every task really allocates and touches between `min-mib` and `max-mib`
//! MiB (sizes from a fixed-seed PRNG), holds it for `hold-ms` (as a task
//! waiting on I/O with its buffer filled would), and frees it. Three task
//! classes use memory proportional to their size hint with different slopes
//! (an image decoder: 4 bytes per pixel; a parser: 2 bytes per input byte
//! plus 8 MiB; a linker: 1 MiB per object).
//!
//! - `control`: a count-only pool: `workers` threads, tasks without
//!   requirements (`Pool::execute`, the fast path). Run in a cgroup whose
//!   limit is below `workers` times the average task, it must be OOM-killed.
//! - `declared`: the pool's default (container-aware) capacity; each task
//!   declares its memory (no class, so nothing else is reserved).
//! - `learned`: the default capacity; tasks declare nothing but a class and a
//!   size hint; requirements come from the profiles in `--store` (a
//!   [`FileStore`]), the fallback (`--fallback-mib`, `--fallback-cpu-m`
//!   millicores; default 256 MiB and 1 core, Bazel's estimate) before a
//!   class is confidently learned. Profiles are saved after every completed
//!   task, so a run that is killed still leaves what it learned.
//!
//! With `--expect-limit`, the memory capacity respool detects (and the pool's
//! capacity) must equal it, else the binary exits with status 3 before
//! running anything. The last line is `RESULT key=value ...`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use respool::alloc::TrackingAllocator;
use respool::learn::LearningConfig;
use respool::measure::TaskReport;
use respool::store::FileStore;
use respool::sys::MachineCapacity;
use respool::{Dim, Pool, Resources};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

const MIB: u64 = 1 << 20;

struct Args {
    mode: String,
    tasks: usize,
    workers: usize,
    min_mib: u64,
    max_mib: u64,
    hold: Duration,
    seed: u64,
    store: Option<String>,
    fallback_mib: u64,
    fallback_cpu_m: u64,
    expect_limit: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: oom_stress <control|declared|learned> [options]")?;
    if !matches!(mode.as_str(), "control" | "declared" | "learned") {
        return Err(format!("unknown mode {mode:?}"));
    }
    let mut a = Args {
        mode,
        tasks: 48,
        workers: 8,
        min_mib: 40,
        max_mib: 120,
        hold: Duration::from_millis(150),
        seed: 1,
        store: None,
        fallback_mib: 256,
        fallback_cpu_m: 1000,
        expect_limit: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--tasks" => a.tasks = usize::try_from(num()?).map_err(|e| e.to_string())?,
            "--workers" => a.workers = usize::try_from(num()?).map_err(|e| e.to_string())?,
            "--min-mib" => a.min_mib = num()?,
            "--max-mib" => a.max_mib = num()?,
            "--hold-ms" => a.hold = Duration::from_millis(num()?),
            "--seed" => a.seed = num()?,
            "--store" => a.store = Some(value.clone()),
            "--fallback-mib" => a.fallback_mib = num()?,
            "--fallback-cpu-m" => a.fallback_cpu_m = num()?,
            "--expect-limit" => a.expect_limit = Some(num()?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.min_mib == 0 || a.min_mib > a.max_mib {
        return Err("need 0 < --min-mib <= --max-mib".into());
    }
    Ok(a)
}

/// One task of the workload.
#[derive(Clone, Copy)]
struct Job {
    class: &'static str,
    size: u64,
    bytes: u64,
}

/// The workload: `tasks` jobs over three classes whose memory grows with
/// their size hint, each between `min` and `max` MiB.
fn workload(a: &Args) -> Vec<Job> {
    let mut rng = fastrand::Rng::with_seed(a.seed);
    (0..a.tasks)
        .map(|i| {
            let mib = rng.u64(a.min_mib..=a.max_mib);
            match i % 3 {
                // Pixels, 4 bytes each.
                0 => Job {
                    class: "decode",
                    size: mib * MIB / 4,
                    bytes: mib * MIB,
                },
                // Input bytes: 2 per input byte plus an 8 MiB table.
                1 => {
                    let input = (mib.max(9) - 8) * MIB / 2;
                    Job {
                        class: "parse",
                        size: input,
                        bytes: 2 * input + 8 * MIB,
                    }
                }
                // Objects, 1 MiB each.
                _ => Job {
                    class: "link",
                    size: mib,
                    bytes: mib * MIB,
                },
            }
        })
        .collect()
}

/// Allocates `bytes`, writes every byte, holds it, frees it.
fn run_job(bytes: u64, hold: Duration) -> u64 {
    let n = usize::try_from(bytes).unwrap_or(usize::MAX);
    let mut v: Vec<u8> = Vec::with_capacity(n);
    v.resize(n, 0xa5);
    std::thread::sleep(hold);
    // Read one byte per page so the buffer stays live until here.
    v.iter().step_by(4096).map(|&b| u64::from(b)).sum()
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oom_stress: {e}");
            std::process::exit(2);
        }
    };
    let jobs = workload(&a);
    let detected = MachineCapacity::detect_host();
    let detected_memory = detected.memory.as_ref().map(|f| f.value);
    println!(
        "detected memory: {} ({})",
        detected_memory.map_or("none".to_owned(), |v| format!(
            "{v} bytes = {} MiB",
            v / MIB
        )),
        detected
            .memory
            .as_ref()
            .map_or(String::new(), |f| format!("{}: {}", f.source, f.detail))
    );

    let grown_tasks = Arc::new(AtomicU64::new(0));
    let heap_peak = Arc::new(AtomicU64::new(0));
    let mut builder = Pool::builder().workers(a.workers);
    if a.mode != "control" {
        // Declared tasks have no class: measure them anyway for the report.
        builder = builder.measure_all(a.mode == "declared");
        let (g, h) = (grown_tasks.clone(), heap_peak.clone());
        builder = builder.on_task_end(move |r: &TaskReport| {
            if r.grown.amount(Dim::Memory) > 0 {
                g.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(heap) = r.usage.heap {
                h.fetch_max(heap.peak, Ordering::Relaxed);
            }
        });
    }
    if a.mode == "learned" {
        builder = builder.learning(LearningConfig {
            fallback: Resources::NONE
                .with_saturating(Dim::Cpu, a.fallback_cpu_m)
                .with_saturating(Dim::Memory, a.fallback_mib * MIB),
            ..LearningConfig::default()
        });
        if let Some(dir) = &a.store {
            builder = builder.profile_store(FileStore::in_dir(dir));
        }
    }
    let pool = match builder.build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("oom_stress: cannot build the pool: {e}");
            std::process::exit(2);
        }
    };
    let snap = pool.snapshot();
    let capacity = snap.capacity.get(Dim::Memory);
    println!(
        "pool: {} workers, memory capacity {:?} MiB, effective {:?} MiB, cpu capacity {:?} millicores",
        pool.workers(),
        capacity.map(|c| c / MIB),
        snap.effective_capacity.get(Dim::Memory).map(|c| c / MIB),
        snap.capacity.get(Dim::Cpu),
    );
    if let Some(expect) = a.expect_limit {
        if detected_memory != Some(expect) || capacity != Some(expect) {
            eprintln!(
                "oom_stress: detected memory {detected_memory:?} / pool capacity {capacity:?} \
                 differ from the cgroup limit {expect}"
            );
            std::process::exit(3);
        }
        println!("detected memory capacity equals the cgroup limit ({expect} bytes)");
    }

    // Highest reservation seen, sampled every 5 ms.
    let stop = AtomicBool::new(false);
    let max_reserved = AtomicU64::new(0);

    let start = Instant::now();
    let total = jobs.len();
    let mut completed = 0usize;
    let hold = a.hold;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let r = pool.snapshot().reserved.amount(Dim::Memory);
                max_reserved.fetch_max(r, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        match a.mode.as_str() {
            "control" => {
                let (tx, rx) = std::sync::mpsc::channel();
                for j in &jobs {
                    let (tx, bytes) = (tx.clone(), j.bytes);
                    pool.execute(move || {
                        let _ = tx.send(run_job(bytes, hold));
                    })
                    .expect("the pool accepts");
                }
                drop(tx);
                completed = rx.iter().count();
            }
            mode => {
                let mut handles = Vec::with_capacity(total);
                for j in &jobs {
                    // Declared: memory only, no class (a class would add the
                    // learning fallback's CPU to the undeclared dimensions).
                    let t = if mode == "declared" {
                        pool.task()
                            .require(Dim::Memory, j.bytes.div_ceil(MIB) * MIB + MIB)
                    } else {
                        pool.task().class(j.class).size_hint(j.size)
                    };
                    let bytes = j.bytes;
                    match t.spawn(move |_| run_job(bytes, hold)) {
                        Ok(h) => handles.push(h),
                        Err(e) => eprintln!("refused: {e}"),
                    }
                }
                for h in handles {
                    if h.join().is_ok() {
                        completed += 1;
                    }
                    if mode == "learned" {
                        if let Err(e) = pool.save_profiles() {
                            eprintln!("profiles not saved: {e}");
                        }
                    }
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let makespan = start.elapsed();
    let snap = pool.snapshot();
    pool.shutdown();
    let learning = &snap.learning;
    println!("{snap}");
    println!(
        "RESULT mode={} completed={completed} tasks={total} makespan_ms={} max_reserved_mib={} \
         grown_tasks={} max_task_heap_mib={} predictions={} within_10pct={}",
        a.mode,
        makespan.as_millis(),
        max_reserved.load(Ordering::Relaxed) / MIB,
        grown_tasks.load(Ordering::Relaxed),
        heap_peak.load(Ordering::Relaxed) / MIB,
        learning.predictions,
        learning.within_10pct,
    );
    if completed != total {
        std::process::exit(1);
    }
}
