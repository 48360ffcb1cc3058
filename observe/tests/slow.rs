//! The slow-task detector on real pools: a cooperative task past its
//! class's learned threshold is reported (and cancelled when asked); a
//! waiter behind a capacity holder is reported stuck with kind "queue"; a
//! fast class is never reported; GNU parallel's median mode; the families
//! in the metrics exposition; the dashboard's JSON; stopping the watchdog.
//! Detections are awaited through a channel fed by the callback, never by
//! sleeping.

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use respool::{Dim, Policy, Pool, Resources};
use respool_observe::metrics::{Metrics, MetricsConfig};
use respool_observe::slow::{SlowConfig, SlowError, SlowKind, SlowReport, SlowTasks, Threshold};
use respool_observe::{Fanout, SnapshotSource};

const SAFETY: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < SAFETY, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A configuration where nothing is ever slow unless a test says so.
fn quiet() -> SlowConfig {
    let mut c = SlowConfig::default();
    c.unclassified = HOUR;
    c.queue_threshold = HOUR;
    c.floor = Duration::ZERO;
    c.check_interval = Duration::from_millis(1);
    c
}

/// The detector's reports, through its callback.
fn reports(slow: &SlowTasks) -> mpsc::Receiver<SlowReport> {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    slow.on_slow(move |r| {
        let _ = tx.lock().unwrap().send(r.clone());
    });
    rx
}

fn pool_with(slow: &Arc<SlowTasks>, workers: usize, memory: u64) -> Arc<Pool> {
    Arc::new(
        Pool::builder()
            .workers(workers)
            .capacity(Resources::NONE.with_saturating(Dim::Memory, memory))
            .headroom(Resources::NONE)
            .admission(Policy::Defer)
            .observer(slow.clone())
            .build()
            .unwrap(),
    )
}

/// Runs `n` instant tasks of `class`, and waits until the detector has
/// learned them (their terminal events may follow the joins).
fn train(pool: &Pool, slow: &SlowTasks, class: &str, n: u64) {
    for _ in 0..n {
        pool.task()
            .class(class)
            .spawn(|_| ())
            .unwrap()
            .join()
            .unwrap();
    }
    wait_until("the runs to be learned", || {
        slow.learned(class).is_some_and(|l| l.runs >= n)
    });
}

/// A cooperative task that runs until it is asked to stop.
fn spinner(pool: &Pool, class: Option<&str>) -> respool::JoinHandle<u64> {
    let mut t = pool.task();
    if let Some(c) = class {
        t = t.class(c);
    }
    t.spawn(|ctx| {
        let mut spins = 0u64;
        while !ctx.is_cancelled() {
            spins += 1;
            std::thread::yield_now();
        }
        spins
    })
    .unwrap()
}

#[test]
fn a_cooperative_task_past_its_class_threshold_is_reported_and_cancelled() {
    let mut c = quiet();
    c.threshold = Threshold::P95Multiple(2.0);
    c.min_runs = 3;
    c.cancel_slow = true;
    let slow = SlowTasks::new(c).unwrap();
    let metrics = Metrics::new({
        let mut m = MetricsConfig::default();
        m.system_readings = false;
        m
    })
    .unwrap();
    metrics.attach_slow(&slow);
    let rx = reports(&slow);
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .observer(Arc::new(
                Fanout::new().with(slow.clone()).with(metrics.clone()),
            ))
            .build()
            .unwrap(),
    );
    train(&pool, &slow, "spin", 3);
    let learned = slow.learned("spin").unwrap();
    let threshold = slow.threshold_for(Some("spin"));
    assert_eq!(threshold.as_nanos(), (learned.p95.as_nanos() * 2).max(1));
    assert!(threshold < HOUR, "learned, not the plain threshold");

    let task = spinner(&pool, Some("spin"));
    let report = rx.recv_timeout(SAFETY).expect("a report");
    assert_eq!(report.kind, SlowKind::Run);
    assert_eq!(report.class.as_deref(), Some("spin"));
    assert!(report.cancelled, "asked to stop");
    assert!(report.worker.is_some());
    assert_eq!(report.threshold, threshold);
    assert!(report.elapsed >= report.threshold);
    // Cancelled, the cooperative task returns.
    assert!(task.join().is_ok());
    wait_until("the task to leave the current list", || {
        slow.current().is_empty()
    });
    assert_eq!(slow.detected(SlowKind::Run), 1);
    assert_eq!(slow.detected(SlowKind::Queue), 0);
    assert_eq!(slow.recent(), vec![report.clone()]);
    // A run stopped by the detector is not learned.
    assert_eq!(slow.learned("spin").unwrap().runs, 3);

    // The dashboard's JSON, exactly its schema.
    let json = slow.json();
    let entries = json["slow"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let e = entries[0].as_object().unwrap();
    let mut keys: Vec<&str> = e.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cancelled",
            "class",
            "elapsed_s",
            "kind",
            "task",
            "threshold_s",
            "worker"
        ]
    );
    assert_eq!(e["task"].as_u64(), Some(report.task.get()));
    assert_eq!(e["class"], "spin");
    assert_eq!(e["kind"], "run");
    assert!(e["elapsed_s"].as_f64().unwrap() >= e["threshold_s"].as_f64().unwrap());
    assert!(e["worker"].is_u64());
    assert_eq!(e["cancelled"], true);

    // The families, through the metrics exposition.
    let text = metrics.encode_text(&SnapshotSource::of(&pool)).unwrap();
    assert!(
        text.contains("respool_slow_tasks_total{kind=\"run\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("respool_slow_tasks_total{kind=\"queue\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("respool_slow_tasks_current{kind=\"run\"} 0\n"),
        "{text}"
    );
    pool.shutdown();
}

#[test]
fn without_cancel_slow_a_slow_task_is_reported_and_keeps_running() {
    let mut c = quiet();
    c.unclassified = Duration::from_millis(1);
    let slow = SlowTasks::new(c).unwrap();
    let rx = reports(&slow);
    let pool = pool_with(&slow, 1, 1 << 30);
    let task = spinner(&pool, None);
    let report = rx.recv_timeout(SAFETY).expect("a report");
    assert_eq!(report.kind, SlowKind::Run);
    assert_eq!(report.class, None);
    assert!(!report.cancelled);
    assert_eq!(report.threshold, Duration::from_millis(1));
    // Still running: current, with its time until now.
    let now = slow.current();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].task, report.task);
    assert!(now[0].elapsed >= report.elapsed);
    let text = collect(&slow);
    assert!(
        text.contains("respool_slow_tasks_current{kind=\"run\"} 1\n"),
        "{text}"
    );
    // Reported once, however long it lasts.
    task.cancel();
    assert!(task.join().is_ok());
    wait_until("the task to end", || slow.current().is_empty());
    assert_eq!(slow.detected(SlowKind::Run), 1);
    assert!(rx.try_recv().is_err());
    assert!(collect(&slow).contains("respool_slow_tasks_current{kind=\"run\"} 0\n"));
    pool.shutdown();
}

/// The detector's own collector, in a registry of its own.
fn collect(slow: &Arc<SlowTasks>) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(slow.collector()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[test]
fn a_waiter_behind_a_capacity_holder_is_reported_stuck() {
    let mut c = quiet();
    c.queue_threshold = Duration::from_millis(1);
    let slow = SlowTasks::new(c).unwrap();
    let rx = reports(&slow);
    let pool = pool_with(&slow, 2, 1000);
    let (release, held) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let holder = pool
        .task()
        .class("holder")
        .requirements(Resources::NONE.with_saturating(Dim::Memory, 800))
        .spawn(move |_| {
            started_tx.send(()).unwrap();
            let _ = held.recv_timeout(SAFETY);
        })
        .unwrap();
    started.recv_timeout(SAFETY).unwrap();
    let waiter = pool
        .task()
        .class("waiter")
        .requirements(Resources::NONE.with_saturating(Dim::Memory, 500))
        .spawn(|_| "ran")
        .unwrap();
    // The holder may itself have waited a moment; look for the waiter.
    let report = loop {
        let r = rx.recv_timeout(SAFETY).expect("a report");
        if r.class.as_deref() == Some("waiter") {
            break r;
        }
        assert_eq!(r.kind, SlowKind::Queue, "nothing runs slow here: {r:?}");
    };
    assert_eq!(report.kind, SlowKind::Queue);
    assert_eq!(report.worker, None);
    assert!(!report.cancelled);
    assert_eq!(report.threshold, Duration::from_millis(1));
    assert!(
        slow.current()
            .iter()
            .any(|r| r.task == report.task && r.kind == SlowKind::Queue)
    );
    assert!(collect(&slow).contains("respool_slow_tasks_current{kind=\"queue\"} "));
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(waiter.join(), Ok("ran"));
    wait_until("the waiter to leave the current list", || {
        slow.current().iter().all(|r| r.task != report.task)
    });
    // Its run was never mixed in: no run report at all.
    assert_eq!(slow.detected(SlowKind::Run), 0);
    assert!(slow.detected(SlowKind::Queue) >= 1);
    pool.shutdown();
}

#[test]
fn a_fast_class_is_never_reported() {
    let mut c = quiet();
    c.floor = Duration::from_secs(30);
    c.unclassified = Duration::from_secs(30);
    c.min_runs = 5;
    let slow = SlowTasks::new(c).unwrap();
    let rx = reports(&slow);
    let pool = pool_with(&slow, 2, 1 << 30);
    train(&pool, &slow, "fast", 50);
    // 3x its p95 is far under the floor: the floor is its threshold.
    let learned = slow.learned("fast").unwrap();
    assert!(learned.p95 * 3 < Duration::from_secs(30), "{learned:?}");
    assert_eq!(slow.threshold_for(Some("fast")), Duration::from_secs(30));
    // A task of the class that is running now is tracked under that
    // threshold, and not reported; nor was any of the 50 runs.
    let (release, held) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let hog = pool
        .task()
        .class("fast")
        .requirements(Resources::NONE.with_saturating(Dim::Memory, 1 << 30))
        .spawn(move |_| {
            started_tx.send(()).unwrap();
            let _ = held.recv_timeout(SAFETY);
        })
        .unwrap();
    started.recv_timeout(SAFETY).unwrap();
    assert!(slow.current().is_empty(), "{:?}", slow.current());
    drop(release);
    hog.join().unwrap();
    assert!(rx.try_recv().is_err());
    assert_eq!(slow.detected(SlowKind::Run), 0);
    assert!(slow.recent().is_empty());
    pool.shutdown();
}

#[test]
fn median_mode_is_gnu_parallels_percent() {
    assert_eq!(
        Threshold::percent_of_median(200),
        Threshold::MedianMultiple(2.0)
    );
    let mut c = quiet();
    c.threshold = Threshold::percent_of_median(200);
    c.min_runs = 3;
    let slow = SlowTasks::new(c).unwrap();
    let pool = pool_with(&slow, 1, 1 << 30);
    // Before enough runs: the plain threshold.
    assert_eq!(slow.threshold_for(Some("m")), HOUR);
    train(&pool, &slow, "m", 3);
    let l = slow.learned("m").unwrap();
    assert!(l.median <= l.p95);
    assert_eq!(
        slow.threshold_for(Some("m")).as_nanos(),
        (l.median.as_nanos() * 2).max(1)
    );
    // An unknown class and none: the plain threshold.
    assert_eq!(slow.threshold_for(Some("never seen")), HOUR);
    assert_eq!(slow.threshold_for(None), HOUR);
    pool.shutdown();
}

#[test]
fn stopping_ends_the_watchdog_busy_or_idle() {
    // Idle: nothing tracked, the watchdog blocks without a timeout.
    let idle = SlowTasks::new(quiet()).unwrap();
    idle.stop();
    assert!(idle.is_stopped());
    // Busy: a task tracked, the watchdog in its timed wait.
    let busy = SlowTasks::new(quiet()).unwrap();
    let pool = pool_with(&busy, 1, 1 << 30);
    let (started_tx, started) = mpsc::channel::<()>();
    let task = pool
        .task()
        .spawn(move |ctx| {
            started_tx.send(()).unwrap();
            while !ctx.is_cancelled() {
                std::thread::yield_now();
            }
        })
        .unwrap();
    started.recv_timeout(SAFETY).unwrap();
    busy.stop();
    busy.stop();
    task.cancel();
    task.join().unwrap();
    pool.shutdown();
    // A detector dropped with the pool stops its thread (its drop joins).
    drop(busy);
}

#[test]
fn bad_configurations_are_typed_errors() {
    assert!(SlowConfig::default().validate().is_ok());
    type Breaks = fn(&mut SlowConfig);
    let cases: [(&str, Breaks); 7] = [
        ("threshold", |c| c.threshold = Threshold::P95Multiple(0.0)),
        ("threshold", |c| {
            c.threshold = Threshold::MedianMultiple(f64::NAN)
        }),
        ("unclassified", |c| c.unclassified = Duration::ZERO),
        ("queue_threshold", |c| c.queue_threshold = Duration::ZERO),
        ("check_interval", |c| c.check_interval = Duration::ZERO),
        ("min_runs", |c| c.min_runs = 0),
        ("max_tracked", |c| c.max_tracked = usize::MAX),
    ];
    for (field, breaks) in cases {
        let mut c = SlowConfig::default();
        breaks(&mut c);
        match SlowTasks::new(c) {
            Err(SlowError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}
