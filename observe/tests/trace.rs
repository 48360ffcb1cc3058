//! The trace export, parsed back: real pools with several workers, classes,
//! waits on a small memory budget, refusals and panics; every run one
//! complete event on one worker track, tracks that nest, waits and flows
//! that pair up, counters that move forward in time and never go negative,
//! every track named; and the ring's bound under 1,000,000 tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, mpsc};
use std::time::{Duration, Instant};

use respool::observe::{Event, Observer};
use respool::{Dim, Policy, Pool, Resources, TaskError};
use respool_observe::Fanout;
use respool_observe::trace::{TraceConfig, TraceError, TraceRecorder};
use serde_json::Value;

/// Turns a hang into a failure; never a threshold on speed.
const SAFETY: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;

fn mem(n: u64) -> Resources {
    Resources::NONE.with_saturating(Dim::Memory, n)
}

fn quiet_expected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .unwrap_or_default();
            if !msg.starts_with("expected:") {
                default(info);
            }
        }));
    });
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < SAFETY, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Counts every event, to check the ring's accounting against.
#[derive(Default)]
struct Count(AtomicU64);

impl Observer for Count {
    fn on_event(&self, _: &Event<'_>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts terminal events, to wait for the last one.
#[derive(Default)]
struct Ends(AtomicU64);

impl Observer for Ends {
    fn on_event(&self, e: &Event<'_>) {
        if e.kind.is_terminal() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn export(rec: &TraceRecorder) -> Vec<Value> {
    let mut json = Vec::new();
    rec.write_json(&mut json).expect("written");
    let v: Value = serde_json::from_slice(&json).expect("the export is JSON");
    assert_eq!(v["displayTimeUnit"], "ms");
    v["traceEvents"].as_array().expect("traceEvents").clone()
}

/// Nanoseconds from a microsecond figure written with three decimals.
fn ns(v: &Value) -> i64 {
    let us = v.as_f64().expect("a number");
    (us * 1000.0).round() as i64
}

/// What `check` found, for the tests' own assertions.
#[derive(Debug, Default)]
struct Summary {
    /// Complete events on worker tracks, per task id: (outcome, class name).
    runs: BTreeMap<u64, Vec<(String, String)>>,
    /// Async spans by name.
    waits: BTreeMap<String, usize>,
    flows: usize,
    refused: usize,
    /// Each counter's values in order.
    counters: BTreeMap<String, Vec<f64>>,
    worker_tracks: BTreeSet<u64>,
}

/// Every invariant of a well-formed export; returns what it saw.
fn check(events: &[Value]) -> Summary {
    let mut s = Summary::default();
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut used: BTreeSet<u64> = BTreeSet::new();
    // Slices per thread track: (start, end).
    let mut slices: BTreeMap<u64, Vec<(i64, i64)>> = BTreeMap::new();
    // Open async spans: (cat, id, name) -> begin time.
    let mut open: HashMap<(String, u64, String), i64> = HashMap::new();
    let mut flow_s: HashMap<u64, i64> = HashMap::new();
    let mut flow_f: HashMap<u64, i64> = HashMap::new();
    let mut counter_ts: HashMap<String, i64> = HashMap::new();
    for e in events {
        let ph = e["ph"].as_str().expect("ph");
        let tid = e["tid"].as_u64().expect("tid");
        assert_eq!(e["pid"], 1, "{e}");
        if ph != "M" {
            used.insert(tid);
        }
        match ph {
            "M" => {
                if e["name"] == "thread_name" {
                    let name = e["args"]["name"].as_str().expect("a name").to_owned();
                    assert!(names.insert(tid, name).is_none(), "named twice: {e}");
                }
            }
            "X" => {
                let ts = ns(&e["ts"]);
                let dur = ns(&e["dur"]);
                assert!(dur >= 0, "negative dur: {e}");
                slices.entry(tid).or_default().push((ts, ts + dur));
                if e["cat"] == "task" {
                    s.worker_tracks.insert(tid);
                    let id = e["args"]["task"].as_u64().expect("task id");
                    let outcome = e["args"]["outcome"].as_str().expect("outcome");
                    let name = e["name"].as_str().expect("name");
                    assert!(e["args"]["reservation"].is_object(), "{e}");
                    s.runs
                        .entry(id)
                        .or_default()
                        .push((outcome.to_owned(), name.to_owned()));
                }
            }
            "b" | "e" => {
                assert_eq!(e["cat"], "wait", "{e}");
                let key = (
                    e["cat"].as_str().unwrap().to_owned(),
                    e["id"].as_u64().expect("numeric id"),
                    e["name"].as_str().unwrap().to_owned(),
                );
                let ts = ns(&e["ts"]);
                if ph == "b" {
                    assert!(open.insert(key, ts).is_none(), "b twice: {e}");
                } else {
                    let b = open
                        .remove(&key)
                        .unwrap_or_else(|| panic!("e without b: {e}"));
                    assert!(ts >= b, "e before b: {e}");
                    *s.waits.entry(key.2).or_default() += 1;
                }
            }
            "s" | "f" => {
                let id = e["id"].as_u64().expect("numeric id");
                let ts = ns(&e["ts"]);
                if ph == "s" {
                    assert!(flow_s.insert(id, ts).is_none(), "s twice: {e}");
                } else {
                    assert_eq!(e["bp"], "e", "{e}");
                    assert!(flow_f.insert(id, ts).is_none(), "f twice: {e}");
                }
                // Both ends bind to a slice on their track (the submit
                // slice, the run), written before them: a reader that keeps
                // file order at equal timestamps has it open.
                let inside = slices
                    .get(&tid)
                    .is_some_and(|v| v.iter().any(|&(a, b)| a <= ts && ts <= b));
                assert!(inside, "{ph} outside a slice: {e}");
            }
            "C" => {
                let name = e["name"].as_str().expect("name").to_owned();
                let ts = ns(&e["ts"]);
                let last = counter_ts.entry(name.clone()).or_insert(i64::MIN);
                assert!(ts >= *last, "counter back in time: {e}");
                *last = ts;
                let args = e["args"].as_object().expect("args");
                assert_eq!(args.len(), 1, "{e}");
                let v = args.values().next().unwrap().as_f64().expect("a number");
                assert!(v >= 0.0, "negative counter: {e}");
                s.counters.entry(name).or_default().push(v);
            }
            "i" => {
                if e["name"] == "refused" {
                    s.refused += 1;
                }
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    assert!(open.is_empty(), "b without e: {open:?}");
    assert_eq!(
        flow_s.keys().collect::<BTreeSet<_>>(),
        flow_f.keys().collect::<BTreeSet<_>>(),
        "every flow start has its end and no end lacks a start"
    );
    for (id, s_ts) in &flow_s {
        assert!(flow_f[id] >= *s_ts, "flow {id} ends before it starts");
    }
    s.flows = flow_s.len();
    // Slices on one thread track nest: sorted by start (longest first at one
    // start), each begins after the enclosing ones end or ends within them.
    for (tid, v) in &mut slices {
        v.sort_by_key(|&(a, b)| (a, std::cmp::Reverse(b)));
        let mut stack: Vec<i64> = Vec::new();
        for &(a, b) in v.iter() {
            while stack.last().is_some_and(|&end| end <= a) {
                stack.pop();
            }
            if let Some(&end) = stack.last() {
                assert!(
                    b <= end,
                    "track {tid}: [{a}, {b}] overlaps a slice ending at {end}"
                );
            }
            stack.push(b);
        }
    }
    for tid in &used {
        assert!(names.contains_key(tid), "track {tid} has no name");
    }
    for tid in &s.worker_tracks {
        assert!(names[tid].starts_with("worker "), "{}", names[tid]);
    }
    s
}

#[test]
fn a_mixed_workload_exports_a_valid_trace() {
    quiet_expected_panics();
    let rec = TraceRecorder::new(TraceConfig::new().capacity(1 << 14));
    let capacity = 100 * MIB;
    let pool = Pool::builder()
        .workers(4)
        .capacity(mem(capacity))
        .headroom(Resources::NONE)
        .admission(Policy::Defer)
        .observer(rec.clone())
        .build()
        .expect("pool");

    // A holder of 80 MiB, and a 50 MiB task that must wait for it.
    let (release, held) = mpsc::channel::<()>();
    let holder = pool
        .task()
        .class("holder")
        .requirements(mem(80 * MIB))
        .spawn(move |_| {
            let _ = held.recv_timeout(SAFETY);
        })
        .expect("admitted");
    let waiter = pool
        .task()
        .class("big")
        .requirements(mem(50 * MIB))
        .spawn(|_| 50)
        .expect("deferred, not refused");
    wait_until("the big task to wait", || pool.snapshot().waiting == 1);
    // While the holder runs, a task runs on another worker: two tracks.
    let beside = pool.task().class("tiny").requirements(mem(MIB));
    assert_eq!(beside.spawn(|_| 1).unwrap().join().unwrap(), 1);
    release.send(()).unwrap();

    // Small classed tasks, plain tasks, panics and refusals.
    let mut handles = Vec::new();
    for i in 0..60u64 {
        let b = match i % 3 {
            0 => pool.task().class("small").requirements(mem(10 * MIB)),
            1 => pool.task().class("tiny").requirements(mem(MIB)),
            _ => pool.task(),
        };
        handles.push(b.spawn(move |_| i).expect("accepted"));
    }
    let panics: Vec<_> = (0..3)
        .map(|_| {
            pool.task()
                .class("boom")
                .requirements(mem(MIB))
                .spawn(|_| -> u64 { panic!("expected: a panic in a traced task") })
                .expect("accepted")
        })
        .collect();
    let mut refused = 0;
    for _ in 0..2 {
        let r = pool
            .task()
            .class("huge")
            .requirements(mem(2 * capacity))
            .spawn(|_| ());
        assert!(r.is_err());
        refused += 1;
    }
    holder.join().expect("holder ran");
    assert_eq!(waiter.join().expect("big ran"), 50);
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().expect("ran"), i as u64);
    }
    for h in panics {
        assert!(matches!(h.join(), Err(TaskError::Panicked(_))));
    }
    pool.shutdown();
    assert_eq!(rec.dropped(), 0);

    let s = check(&export(&rec));
    // 1 holder + 1 beside + 1 big + 60 + 3 panics ran, each exactly once.
    assert_eq!(s.runs.len(), 66, "{s:?}");
    for (id, runs) in &s.runs {
        assert_eq!(runs.len(), 1, "task {id}: {runs:?}");
    }
    let outcomes = |o: &str| s.runs.values().filter(|r| r[0].0 == o).count();
    assert_eq!(outcomes("finished"), 63);
    assert_eq!(outcomes("panicked"), 3);
    let named = |n: &str| s.runs.values().filter(|r| r[0].1 == n).count();
    assert_eq!(
        (named("small"), named("tiny"), named("task"), named("big")),
        (20, 21, 20, 1)
    );
    assert_eq!(s.refused, refused);
    assert_eq!(s.flows, 66);
    assert!(s.worker_tracks.len() >= 2, "{:?}", s.worker_tracks);
    assert!(s.worker_tracks.len() <= 4, "{:?}", s.worker_tracks);
    // Every task that ran waited in the queue once; the big one waited for
    // memory.
    assert_eq!(s.waits["queued"], 66 + refused, "{:?}", s.waits);
    assert!(s.waits.get("waiting for memory").copied().unwrap_or(0) >= 1);
    // Reserved memory rose to the holder's 80 MiB at least and is back to
    // zero. (It may briefly read above the budget: the pool releases a
    // reservation, and may admit a waiter into it, just before it reports
    // the end of the task that held it; see the module documentation.)
    let reserved = &s.counters["memory reserved"];
    assert!(reserved.iter().any(|&v| v >= (80 * MIB) as f64));
    assert_eq!(reserved.last(), Some(&0.0));
}

#[test]
fn a_task_whose_start_fell_out_of_the_ring_has_no_run() {
    // A ring of 16 events: a long task's start is pushed out by 100 short
    // tasks, so only its end is left and it gets no complete event.
    let rec = TraceRecorder::new(TraceConfig::new().capacity(16));
    let pool = Pool::builder()
        .workers(2)
        .observer(rec.clone())
        .build()
        .expect("pool");
    let (release, held) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let long = pool
        .task()
        .class("long")
        .spawn(move |_| {
            started_tx.send(()).unwrap();
            let _ = held.recv_timeout(SAFETY);
        })
        .unwrap();
    // Its `Started` is recorded before its closure runs.
    started.recv_timeout(SAFETY).expect("the long task started");
    for i in 0..100u64 {
        pool.task()
            .class("short")
            .spawn(move |_| i)
            .unwrap()
            .join()
            .unwrap();
    }
    release.send(()).unwrap();
    long.join().unwrap();
    pool.shutdown();
    assert_eq!(rec.len(), 16);
    assert_eq!(rec.recorded(), rec.len() as u64 + rec.dropped());
    let s = check(&export(&rec));
    assert!(
        s.runs.values().all(|r| r[0].1 == "short"),
        "the long task's run is not made up: {s:?}"
    );
}

/// Runs `n` plain tasks through a 2-worker pool with a ring of 4,096 events,
/// checking the bound while they run, and the accounting and the export at
/// the end.
fn ring_bound(n: u64) {
    let capacity = 4096;
    let rec = TraceRecorder::new(TraceConfig::new().capacity(capacity));
    let count = Arc::new(Count::default());
    let ends = Arc::new(Ends::default());
    let pool = Pool::builder()
        .workers(2)
        .observer(
            Fanout::new()
                .with(rec.clone())
                .with(count.clone())
                .with(ends.clone()),
        )
        .build()
        .expect("pool");
    let start = Instant::now();
    let sink = Arc::new(AtomicU64::new(0));
    for i in 0..n {
        let sink = sink.clone();
        pool.execute(move || {
            sink.fetch_add(i, Ordering::Relaxed);
        })
        .expect("accepted");
        if i % 1024 == 0 {
            assert!(rec.len() <= capacity);
            // Keep at most a few thousand tasks queued.
            while i.saturating_sub(ends.0.load(Ordering::Relaxed)) > 8192 {
                std::thread::yield_now();
            }
        }
    }
    wait_until("every task to end", || ends.0.load(Ordering::Relaxed) == n);
    pool.shutdown();
    let ran = start.elapsed();
    assert_eq!(sink.load(Ordering::Relaxed), n * (n - 1) / 2);
    let total = count.0.load(Ordering::Relaxed);
    // Submitted, admitted, started, finished.
    assert_eq!(total, 4 * n);
    assert_eq!(rec.len(), capacity);
    assert_eq!(rec.recorded(), total);
    assert_eq!(rec.dropped(), total - capacity as u64);
    let t = Instant::now();
    let events = export(&rec);
    let s = check(&events);
    eprintln!(
        "{n} tasks: ran in {ran:?}, exported and checked {} JSON events ({} runs) in {:?}",
        events.len(),
        s.runs.len(),
        t.elapsed()
    );
    assert!(!s.runs.is_empty());
    assert!(s.runs.len() <= capacity / 2);
}

/// A million tasks take about 2.5 s in a debug build here (2 cores).
#[test]
fn the_ring_stays_bounded_under_1_000_000_tasks() {
    ring_bound(1_000_000);
}

#[test]
fn save_writes_a_file_and_reports_a_bad_path() {
    let rec = TraceRecorder::new(TraceConfig::new());
    let pool = Pool::builder()
        .workers(2)
        .observer(rec.clone())
        .build()
        .unwrap();
    pool.submit(|| 1).unwrap().join().unwrap();
    pool.shutdown();
    let dir = std::env::temp_dir().join(format!("respool-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.json");
    rec.save(&path).expect("saved");
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    check(v["traceEvents"].as_array().unwrap());
    let bad = dir.join("no-such-dir").join("t.json");
    let err = rec.save(&bad).unwrap_err();
    assert!(matches!(err, TraceError::Save { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_on_drop_saves_when_the_pool_goes_and_never_panics() {
    let dir = std::env::temp_dir().join(format!("respool-trace-drop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("at-drop.json");
    {
        let pool = Pool::builder()
            .workers(2)
            .observer(TraceRecorder::new(TraceConfig::new().save_on_drop(&path)))
            .build()
            .unwrap();
        for i in 0..10u64 {
            drop(pool.task().class("c").spawn(move |_| i).unwrap());
        }
        pool.shutdown();
        assert!(!path.exists());
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&path).expect("saved at drop")).unwrap();
    let s = check(v["traceEvents"].as_array().unwrap());
    assert_eq!(s.runs.len(), 10);
    // A path that cannot be written: the drop logs and goes on.
    let bad = dir.join("missing").join("x.json");
    drop(TraceRecorder::new(TraceConfig::new().save_on_drop(&bad)));
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn capacity_changes_are_pool_events_and_counters() {
    let rec = TraceRecorder::new(TraceConfig::new());
    let pool = Pool::builder()
        .workers(1)
        .capacity(mem(64 * MIB))
        .headroom(Resources::NONE)
        .observer(rec.clone())
        .build()
        .unwrap();
    pool.set_capacity(&mem(32 * MIB)).unwrap();
    pool.shutdown();
    let events = export(&rec);
    let s = check(&events);
    assert!(
        events
            .iter()
            .any(|e| e["name"] == "capacity changed" && e["ph"] == "i"),
        "{events:?}"
    );
    assert_eq!(
        s.counters["memory effective capacity"].last(),
        Some(&((32 * MIB) as f64))
    );
}

/// Does nothing: the cost of the observer seam alone.
struct Nothing;

impl Observer for Nothing {
    fn on_event(&self, _: &Event<'_>) {}
}

/// Wall time of `n` tasks of about 10 us each on 2 workers, with no
/// observer, a no-op observer and the recorder, best of 3, printed: a
/// figure to read, not a check (`cargo test --release -p respool-observe
/// --test trace -- --ignored --nocapture overhead`).
#[test]
#[ignore = "a timing to read, not a check; run in release"]
fn overhead_on_10us_tasks() {
    fn spin_10us() {
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(10) {
            std::hint::spin_loop();
        }
    }
    fn run(n: u64, observer: Option<Arc<dyn Observer>>) -> Duration {
        let mut b = Pool::builder().workers(2);
        if let Some(o) = observer {
            b = b.observer(o);
        }
        let pool = b.build().unwrap();
        let t = Instant::now();
        for _ in 0..n {
            pool.execute(spin_10us).unwrap();
        }
        pool.shutdown();
        t.elapsed()
    }
    let n = 200_000;
    let best = |f: &dyn Fn() -> Duration| (0..3).map(|_| f()).min().unwrap();
    let none = best(&|| run(n, None));
    let nothing = best(&|| run(n, Some(Arc::new(Nothing))));
    let traced = best(&|| {
        run(
            n,
            Some(TraceRecorder::new(TraceConfig::new()) as Arc<dyn Observer>),
        )
    });
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    eprintln!(
        "{n} tasks of 10 us on 2 workers: no observer {:.0} ns/task, no-op observer {:.0} ns/task, \
         trace recorder {:.0} ns/task ({:+.1}% over the no-op observer)",
        per(none),
        per(nothing),
        per(traced),
        (per(traced) / per(nothing) - 1.0) * 100.0
    );
}
