//! `respool demo`: the README's main job. It generates a workload of real
//! commands whose memory grows with their input (GNU `sort` of generated
//! number files: a few large ones, then many small ones), runs it once the
//! way a count-only runner does (`xargs -P N`, as many jobs as cores), then
//! twice with `respool run` from a fresh profile store, all under the same
//! memory budget, and prints what each used.
//!
//! Where this process may make a memory cgroup (root, or a delegated cgroup
//! v2 subtree), each run is a container of its own: a cgroup limited to the
//! budget, whose peak and OOM kills the kernel reports, and `respool run`
//! finds its budget there as it would in a container. Elsewhere the budget
//! is given with `--memory` and the runs' memory is the summed resident
//! memory of their processes, sampled every 10 ms.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::args::DemoArgs;
use crate::job::{self, JobOutcome, JobSpec, Measurer};
use crate::schedule::fmt_bytes;

/// Share of the budget one large job needs at its peak, in percent: two
/// together do not fit, one fits beside small ones.
const LARGE_PERCENT: u64 = 60;
/// Share of the budget the largest small job needs, in percent (the
/// smallest: 1%).
const SMALL_PERCENT: u64 = 8;
/// The smallest budget the demo runs under (sort's own start-up needs a
/// few MiB).
const MIN_BUDGET: u64 = 64 << 20;
/// The sort every job runs: one thread, output discarded.
const SORT: &str = "sort --parallel=1 -o /dev/null";

/// Runs the demonstration; returns the exit status (1 when `respool run`
/// went over the budget or a job failed, 255 for a budget it cannot use).
pub fn run(args: DemoArgs) -> i32 {
    let budget = args.memory.unwrap_or_else(default_budget);
    // The workload's files are sized from the budget, and the count-only
    // run is meant to go over it: a budget beyond half of what this
    // machine has would put the machine itself at risk.
    let available = respool::sys::default_capacity()
        .capacity
        .get(respool::Dim::Memory);
    if budget < MIN_BUDGET || available.is_some_and(|a| budget > a / 2) {
        eprintln!(
            "respool demo: --memory {} is outside what the demo can use: from {} to half \
             of this machine's available memory ({})",
            fmt_bytes(budget),
            fmt_bytes(MIN_BUDGET),
            available.map_or_else(|| "unknown".to_owned(), |a| fmt_bytes(a / 2)),
        );
        return crate::schedule::USAGE;
    }
    match run_inner(&args, budget) {
        Ok(status) => status,
        Err(message) => {
            eprintln!("respool demo: {message}");
            1
        }
    }
}

/// Where the workload lives: a temporary directory (removed at the end) or
/// the user's `--dir` (kept).
enum Work {
    Temporary(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl Work {
    fn path(&self) -> &Path {
        match self {
            Work::Temporary(t) => t.path(),
            Work::Kept(p) => p,
        }
    }
}

/// What one run of the workload did.
struct RunResult {
    label: String,
    outcome: Result<JobOutcome, String>,
    /// Summed resident memory of the run's processes, sampled.
    sampled_peak: u64,
}

fn run_inner(args: &DemoArgs, budget: u64) -> Result<i32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let cpus = respool::sys::default_capacity().workers.max(2);
    let jobs = args.jobs.unwrap_or(cpus);
    let work = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot make {}: {e}", d.display()))?;
            // A fresh store: the first run starts from nothing.
            let _ = std::fs::remove_file(d.join("profiles.json"));
            Work::Kept(d.clone())
        }
        None => Work::Temporary(
            tempfile::Builder::new()
                .prefix("respool-demo-")
                .tempdir()
                .map_err(|e| format!("cannot make a working directory: {e}"))?,
        ),
    };
    let dir = work.path();

    println!(
        "respool demo: {jobs} jobs at once, a memory budget of {}",
        fmt_bytes(budget)
    );
    let measurer = if args.no_cgroup {
        Measurer::rusage_only()
    } else {
        Measurer::detect()
    };
    let container = measurer.cgroup_dir().is_some();
    if container {
        println!(
            "  each run in a memory cgroup limited to the budget ({}); \
             memory and OOM kills as the kernel counts them",
            measurer.describe()
        );
    } else {
        println!(
            "  no memory cgroup can be made here ({}): the budget is given to respool \
             with --memory, and each run's memory is its processes' summed resident \
             memory, sampled every 10 ms (root shows the kernel's own figures)",
            measurer.describe()
        );
    }

    // How much memory sort needs per input byte on this machine.
    let probe = dir.join("probe.txt");
    let probe_size = 4 << 20;
    write_numbers(&probe, probe_size, 1)
        .map_err(|e| format!("cannot write {}: {e}", probe.display()))?;
    let probe_peak = run_plain(&format!("{SORT} {}", quote(&probe)))?
        .peak_memory
        .unwrap_or(0);
    let per_byte = (probe_peak as f64 / probe_size as f64).max(1.0);
    // Large jobs at LARGE_PERCENT% of the budget first (two together do
    // not fit), then small ones from 1% to SMALL_PERCENT%, in a shuffled
    // order: a real directory's sizes vary, which is what lets respool
    // learn how memory grows with size.
    let (smalls, larges) = (12 * jobs, 2.max(jobs / 2));
    let input_for =
        |percent_x10: u64| (budget as f64 * percent_x10 as f64 / 1000.0 / per_byte) as u64;
    let small_sizes: Vec<u64> = (0..smalls as u64)
        .map(|i| (i * 7 + 3) % smalls as u64)
        .map(|k| input_for(10 + k * (SMALL_PERCENT * 10 - 10) / (smalls as u64 - 1).max(1)))
        .collect();
    let large_size = input_for(LARGE_PERCENT * 10);
    println!(
        "  workload: `{SORT} FILE` on {larges} large files of {}, then {smalls} small ones of \
         {} to {} (sort needs {per_byte:.1} bytes per input byte here: {} at the large ones' \
         peak, {} to {} at the small ones')",
        fmt_bytes(large_size),
        fmt_bytes(input_for(10)),
        fmt_bytes(input_for(SMALL_PERCENT * 10)),
        fmt_bytes(budget * LARGE_PERCENT / 100),
        fmt_bytes(budget / 100),
        fmt_bytes(budget * SMALL_PERCENT / 100),
    );
    let mut files = Vec::new();
    for i in 0..larges {
        let f = dir.join(format!("large-{}.txt", i + 1));
        write_numbers(&f, large_size, 900 + i as u64)
            .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
        files.push(f);
    }
    for (i, &size) in small_sizes.iter().enumerate() {
        let f = dir.join(format!("small-{:02}.txt", i + 1));
        write_numbers(&f, size, 100 + i as u64)
            .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
        files.push(f);
    }
    let list = dir.join("files.txt");
    std::fs::write(
        &list,
        files
            .iter()
            .map(|f| format!("{}\n", f.display()))
            .collect::<String>(),
    )
    .map_err(|e| format!("cannot write {}: {e}", list.display()))?;
    let args_q: Vec<String> = files.iter().map(|f| quote(f)).collect();
    let store = dir.join("profiles.json");

    let mut results = Vec::new();
    println!();
    println!("1. a count-only runner: xargs -P {jobs} (as many jobs as cores)");
    let xargs = format!("xargs -P {jobs} -n 1 -a {} {SORT}", quote(&list));
    let r = run_measured(
        &format!("xargs -P {jobs}"),
        &xargs,
        budget,
        container,
        &measurer,
    );
    report(&r, budget, container, None);
    results.push(r);

    let respool = |n: usize| {
        let mut cmd = format!(
            "{} run -j {jobs} --store {} --results {}",
            quote(&exe),
            quote(&store),
            quote(&dir.join(format!("run-{n}.jsonl")))
        );
        if !container {
            // What respool would find in a container limited to the budget:
            // the budget less its default headroom (10%, at least 64 MiB, at
            // most half), which leaves room for respool itself.
            let headroom = (budget / 10).max(64 << 20).min(budget / 2);
            let _ = write!(cmd, " --memory {}", budget - headroom);
            if args.no_cgroup {
                cmd.push_str(" --no-cgroup");
            }
        }
        let _ = write!(cmd, " {SORT} ::: {}", args_q.join(" "));
        cmd
    };
    for (n, what) in [
        (1, "first run, nothing learned yet"),
        (2, "second run, from what the first learned"),
    ] {
        println!();
        println!("{}. respool run -j {jobs} ({what})", n + 1);
        let r = run_measured(
            &format!("respool run, {what}"),
            &respool(n),
            budget,
            container,
            &measurer,
        );
        let lines = std::fs::read_to_string(dir.join(format!("run-{n}.jsonl"))).unwrap_or_default();
        report(&r, budget, container, Some(&lines));
        results.push(r);
    }

    // The verdict.
    println!();
    let mut status = 0;
    let over = |r: &RunResult| -> bool {
        match &r.outcome {
            Ok(o) if container => o.oom_killed || o.peak_memory.is_some_and(|p| p > budget),
            Ok(_) => r.sampled_peak > budget,
            Err(_) => false,
        }
    };
    let base = &results[0];
    match &base.outcome {
        Ok(o) if over(base) => println!(
            "xargs -P {jobs}: went over the budget{}",
            if o.oom_killed {
                " and was OOM-killed"
            } else {
                ""
            }
        ),
        Ok(_) => println!(
            "xargs -P {jobs}: stayed under the budget this time (it did not run two large \
             sorts at once)"
        ),
        Err(e) => println!("xargs -P {jobs}: could not be run: {e}"),
    }
    for r in &results[1..] {
        match &r.outcome {
            Ok(o) if !over(r) && o.exit_code == Some(0) => {
                println!(
                    "{}: under the budget, every job done, {:.2} s",
                    r.label,
                    o.runtime.as_secs_f64()
                );
            }
            Ok(o) => {
                status = 1;
                println!(
                    "{}: FAILED: exit {:?}, {}",
                    r.label,
                    o.exit_code,
                    if over(r) {
                        "over the budget"
                    } else {
                        "under the budget"
                    }
                );
            }
            Err(e) => {
                status = 1;
                println!("{}: could not be run: {e}", r.label);
            }
        }
    }
    Ok(status)
}

/// Prints one run's figures (and, for respool, what its results say).
fn report(r: &RunResult, budget: u64, container: bool, results: Option<&str>) {
    let o = match &r.outcome {
        Ok(o) => o,
        Err(e) => {
            println!("   could not run: {e}");
            return;
        }
    };
    let peak = if container {
        o.peak_memory.map_or_else(
            || "not measured".to_owned(),
            |p| format!("{} (the kernel's peak)", fmt_bytes(p)),
        )
    } else {
        format!("{} (sampled)", fmt_bytes(r.sampled_peak))
    };
    println!(
        "   {:.2} s, exit {}, peak memory {peak} of {}{}",
        o.runtime.as_secs_f64(),
        o.exit_code.map_or_else(
            || format!("signal {}", o.signal.unwrap_or(0)),
            |c| c.to_string()
        ),
        fmt_bytes(budget),
        if o.oom_killed { ", OOM-killed" } else { "" }
    );
    let mut err = Vec::new();
    let _ = o.stderr.write_to(&mut err);
    let err = String::from_utf8_lossy(&err);
    for line in err.lines().filter(|l| !l.trim().is_empty()).take(6) {
        println!("   | {line}");
    }
    if let Some(lines) = results {
        let fallback = respool::learn::LearningConfig::default()
            .fallback
            .get(respool::Dim::Memory)
            .unwrap_or(0);
        let (mut done, mut oom, mut on_fallback) = (0, 0, 0);
        let mut ratios: Vec<f64> = Vec::new();
        for v in lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            done += 1;
            oom += v["oom_kills"].as_u64().unwrap_or(0);
            match (
                v["reserved_memory_bytes"].as_u64(),
                v["peak_memory_bytes"].as_u64(),
            ) {
                (Some(r), _) if r == fallback => on_fallback += 1,
                (Some(r), Some(m)) if m > 0 => ratios.push(r as f64 / m as f64),
                _ => on_fallback += 1,
            }
        }
        ratios.sort_by(f64::total_cmp);
        let mut line = format!(
            "   {done} jobs, {oom} OOM kills inside respool's per-job limits; \
             {on_fallback} reserved the {} fallback (nothing learned yet)",
            fmt_bytes(fallback)
        );
        if let (Some(lo), Some(hi)) = (ratios.first(), ratios.last()) {
            let _ = write!(
                line,
                ", {} reserved what sort's earlier runs measured for their size \
                 ({lo:.2}x to {hi:.2}x the peak they then reached)",
                ratios.len()
            );
        }
        println!("{line}");
    }
}

/// Runs `command` under rusage only (the calibration).
fn run_plain(command: &str) -> Result<JobOutcome, String> {
    let spec = JobSpec {
        command: OsString::from(command),
        timeout: None,
        memory_limit: None,
        stdin_null: true,
    };
    job::run_job(&spec, &Measurer::rusage_only()).map_err(|e| e.to_string())
}

/// Runs one whole run: in its own cgroup limited to the budget where there
/// is one, while a thread samples its processes' summed resident memory.
fn run_measured(
    label: &str,
    command: &str,
    budget: u64,
    container: bool,
    measurer: &Measurer,
) -> RunResult {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        std::thread::spawn(move || {
            let me = std::process::id();
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(descendants_rss(me), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let spec = JobSpec {
        command: OsString::from(command),
        timeout: None,
        memory_limit: container.then_some(budget),
        stdin_null: true,
    };
    let outcome = job::run_job(&spec, measurer).map_err(|e| e.to_string());
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    RunResult {
        label: label.to_owned(),
        outcome,
        sampled_peak: peak.load(Ordering::Relaxed),
    }
}

/// Summed resident memory of every descendant of `root` (from `/proc`).
fn descendants_rss(root: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    // SAFETY: sysconf takes a constant and returns a number.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let mut parent = HashMap::new();
    let mut rss = HashMap::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state ppid ... rss (field 24).
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(ppid), Some(pages)) = (
            fields.get(1).and_then(|s| s.parse::<u32>().ok()),
            fields.get(21).and_then(|s| s.parse::<u64>().ok()),
        ) {
            parent.insert(pid, ppid);
            rss.insert(pid, pages * page);
        }
    }
    let mut total = 0;
    for (&pid, &bytes) in &rss {
        let mut p = pid;
        for _ in 0..64 {
            match parent.get(&p) {
                Some(&pp) if pp == root => {
                    total += bytes;
                    break;
                }
                Some(&pp) if pp > 1 => p = pp,
                _ => break,
            }
        }
    }
    total
}

/// Writes about `bytes` of random numbers, one per line.
fn write_numbers(path: &Path, bytes: u64, seed: u64) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut written = 0u64;
    while written < bytes {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let n = x.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1_000_000_000_000;
        let line = format!("{n}\n");
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()
}

/// Single-quotes a path for `sh`.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The default budget: 512 MiB, or half the memory available if less.
#[must_use]
pub fn default_budget() -> u64 {
    let available = respool::sys::default_capacity()
        .capacity
        .get(respool::Dim::Memory);
    available.map_or(512 << 20, |a| (512u64 << 20).min(a / 2))
}
