//! An idle pool uses no CPU: parked workers (and an idle timer thread)
//! consume no CPU time at all, where a worker that polled with short sleeps
//! would consume several clock ticks a second.
//!
//! The assertion is on CPU time, read from `/proc/self/task/<tid>/stat`
//! (`utime` and `stime`, in clock ticks), never on wall-clock time. Clock
//! ticks are coarse (10 ms at the usual 100 Hz): four threads that poll
//! every millisecond may stay under one tick in the window, so the test
//! also counts the threads' context switches (`/proc/self/task/<tid>/status`),
//! which a parked thread does not make and a poller makes at every wake-up.
//! Linux only: skipped, with the reason printed, where `/proc` is not
//! available.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use respool::Pool;

/// Turns a hang into a failure; never a threshold on speed.
const SAFETY: Duration = Duration::from_secs(60);
/// Thread name prefix of the pool under test: workers are `idlecpu-0`...,
/// the timer `idlecpu-timer`, the monitor `idlecpu-monitor` (all within
/// the 15 bytes Linux keeps of a thread name).
const PREFIX: &str = "idlecpu";
const WORKERS: usize = 4;
/// How long the idle pool is watched.
const WINDOW: Duration = Duration::from_millis(500);

/// One thread of this process, as `/proc/self/task/<tid>` shows it.
#[derive(Debug)]
struct ThreadStat {
    tid: u32,
    name: String,
    /// Scheduler state (`R` running, `S` sleeping...).
    state: char,
    /// `utime + stime`, in clock ticks.
    ticks: u64,
    /// Voluntary plus involuntary context switches (`None` when the kernel
    /// does not show them).
    switches: Option<u64>,
}

/// Parses `/proc/<pid>/task/<tid>/stat`: fields after the `(comm)` (which
/// may itself hold spaces and parentheses) start at field 3, the state;
/// `utime` and `stime` are fields 14 and 15.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some((state, utime + stime))
}

/// Voluntary plus involuntary context switches, from `/proc/.../status`.
fn parse_switches(status: &str) -> Option<u64> {
    let field = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
}

/// The pool's threads (workers, timer, monitor), by name.
fn pool_threads() -> Vec<ThreadStat> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may exit between the listing and the reads: skip it.
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        let name = comm.trim_end().to_owned();
        if !name.starts_with(&format!("{PREFIX}-")) {
            continue;
        }
        let Some((state, ticks)) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        else {
            continue;
        };
        let switches = std::fs::read_to_string(path.join("status"))
            .ok()
            .as_deref()
            .and_then(parse_switches);
        out.push(ThreadStat {
            tid,
            name,
            state,
            ticks,
            switches,
        });
    }
    out.sort_by_key(|t| t.tid);
    out
}

fn is_worker(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|n| n.strip_prefix('-'))
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

fn timer_name() -> String {
    format!("{PREFIX}-timer")
}

#[test]
fn proc_parsers_read_state_ticks_and_switches() {
    // A name with a space and a parenthesis, as `comm` may hold.
    let line = "4242 (idle cpu) x) S 1 2 3 4 5 6 7 8 9 10 17 25 0 0 20 0 5 0 100 0 0";
    assert_eq!(parse_stat(line), Some(('S', 42)));
    assert_eq!(parse_stat("4242 (short) S 1 2"), None);
    let status = "Name:\tidlecpu-0\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
    assert_eq!(parse_switches(status), Some(15));
    assert_eq!(parse_switches("Name:\tidlecpu-0\n"), None);
}

#[test]
fn idle_pool_uses_no_cpu() {
    if let Err(e) = std::fs::read_dir("/proc/self/task") {
        println!("skipped: /proc/self/task is not available on this system ({e})");
        return;
    }
    let pool = Pool::builder()
        .workers(WORKERS)
        .monitor(false)
        .thread_name(PREFIX)
        .build()
        .expect("pool");

    // Wake every worker: four tasks that can only finish together, so each
    // runs on a worker of its own.
    let barrier = std::sync::Arc::new(Barrier::new(WORKERS));
    let handles: Vec<_> = (0..WORKERS)
        .map(|_| {
            let b = barrier.clone();
            pool.submit(move || {
                b.wait();
            })
            .expect("submit")
        })
        .collect();
    for h in handles {
        h.join().expect("task");
    }
    // A task with a timeout starts the timer thread (it is started on
    // first use); its entry is cancelled when the task finishes.
    pool.task()
        .timeout(Duration::from_secs(60))
        .spawn(|_| ())
        .expect("spawn")
        .join()
        .expect("timed task");

    // Wait until the pool is quiet (nothing queued, waiting or running: the
    // counters include every task) and every thread of it is asleep. The
    // bound is a safety net, not a threshold.
    let t0 = Instant::now();
    let submitted = WORKERS as u64 + 1;
    loop {
        let snap = pool.snapshot();
        let threads = pool_threads();
        let quiet = snap.queued == 0
            && snap.waiting == 0
            && snap.submitted == submitted
            && snap.completed + snap.panicked == submitted;
        let workers = threads.iter().filter(|t| is_worker(&t.name)).count();
        if quiet && workers == WORKERS && threads.iter().all(|t| t.state == 'S') {
            break;
        }
        assert!(
            t0.elapsed() < SAFETY,
            "the pool never went quiet: {snap:?}\n{threads:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pool.snapshot().panicked, 0);

    let before = pool_threads();
    assert!(
        !before.iter().any(|t| t.name == format!("{PREFIX}-monitor")),
        "monitor(false) but a monitor thread runs: {before:?}"
    );
    let has_timer = before.iter().any(|t| t.name == timer_name());
    if !has_timer {
        println!("note: the pool has no timer thread; only the workers are checked");
    }
    // A window watched, not an event waited for: the pool is quiet and
    // every thread of it asleep, so nothing may happen in it, however
    // loaded the machine (a busy machine does not wake a parked thread).
    std::thread::sleep(WINDOW);
    let after = pool_threads();

    // Per thread (matched by tid, so a thread that was replaced is caught).
    let mut total = 0;
    let mut switched = Some(0);
    let mut lines = Vec::new();
    for b in &before {
        let a = after
            .iter()
            .find(|a| a.tid == b.tid)
            .unwrap_or_else(|| panic!("{} ({}) exited while the pool was idle", b.name, b.tid));
        let used = a.ticks.saturating_sub(b.ticks);
        total += used;
        let woke = a.switches.zip(b.switches).map(|(a, b)| a.saturating_sub(b));
        switched = switched.zip(woke).map(|(t, w)| t + w);
        lines.push(format!(
            "{:<14} tid {:>7}: {:>3} -> {:>3} ticks (+{used}), context switches +{}, state {}",
            b.name,
            b.tid,
            b.ticks,
            a.ticks,
            woke.map_or_else(|| "?".to_owned(), |w| w.to_string()),
            a.state
        ));
    }
    let report = lines.join("\n");
    println!("CPU time of the idle pool's threads over {WINDOW:?}:\n{report}");
    println!("total: {total} clock ticks, {switched:?} context switches");
    let new: Vec<_> = after
        .iter()
        .filter(|a| !before.iter().any(|b| b.tid == a.tid))
        .collect();
    assert!(new.is_empty(), "threads started while idle: {new:?}");
    assert_eq!(
        before.iter().filter(|t| is_worker(&t.name)).count(),
        WORKERS
    );
    assert!(
        total <= 1,
        "an idle pool used {total} clock ticks of CPU in {WINDOW:?} (at most 1 allowed):\n{report}"
    );
    // A parked thread does not run at all; two switches of slack for a
    // stray wake-up, where a thread polling every millisecond makes ~500.
    if let Some(switched) = switched {
        assert!(
            switched <= 2,
            "the idle pool's threads woke {switched} times in {WINDOW:?}:\n{report}"
        );
    } else {
        println!("note: no context switch counts in /proc; only CPU ticks are checked");
    }

    // The pool still works after its idle period.
    assert_eq!(pool.submit(|| 7).expect("submit").join().expect("join"), 7);
}
