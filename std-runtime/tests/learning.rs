//! Measured tasks, the tracking allocator, accounting that follows reality,
//! learning and profile stores. This test binary installs the tracking
//! allocator as its global allocator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use respool::alloc::{HeapUsage, TrackingAllocator, measure};
use respool::learn::LearningConfig;
use respool::measure::TaskReport;
use respool::store::{FileStore, MemoryStore, ProfileStore, StoreError};
use respool::{BuildError, Dim, Policy, Pool, Resources};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

const SAFETY: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

/// Allocates exactly `n` bytes and touches every page.
fn touch(n: usize) -> Vec<u8> {
    let mut v = Vec::<u8>::with_capacity(n);
    v.resize(n, 1);
    v
}

#[test]
fn allocator_totals_are_exact() {
    assert!(respool::alloc::is_installed());
    let ((), u) = measure(|| {
        let v = Vec::<u8>::with_capacity(1000);
        drop(v);
        let w = Vec::<u64>::with_capacity(10); // 80 bytes
        std::hint::black_box(&w);
    });
    assert_eq!(u.allocated, 1080);
    assert_eq!(u.freed, 1080);
    assert_eq!(u.peak, 1000);
    assert_eq!(u.live, 0);
    assert_eq!(u.allocations, 2);

    // Growth through realloc: 8 -> 16 -> 32 bytes, old blocks credited.
    let (v, u) = measure(|| {
        let mut v = Vec::<u8>::with_capacity(8);
        v.reserve_exact(16);
        v.reserve_exact(32);
        v
    });
    assert_eq!(
        u.allocated,
        8 + 16 + 32,
        "capacities 8, 16, 32: each realloc counted at its new size"
    );
    assert_eq!(u.freed, 8 + 16, "the blocks realloc replaced are credited");
    assert_eq!(u.live, i64::try_from(v.capacity()).unwrap());
    drop(v);
}

#[test]
fn frees_by_another_thread_are_credited_to_the_allocating_task() {
    // Hand-over through a pre-allocated slot and flags: no blocking channel
    // (whose first blocking wait allocates a waker entry) inside `measure`.
    let slot: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
    let freed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let freer = {
        let (slot, freed, stop) = (slot.clone(), freed.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let taken = slot.lock().unwrap().take();
                if let Some(v) = taken {
                    drop(v);
                    freed.store(true, Ordering::SeqCst);
                }
                std::hint::spin_loop();
            }
        })
    };
    let ((), u) = measure(|| {
        let v = touch(4096);
        *slot.lock().unwrap() = Some(v);
        while !freed.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        let w = touch(1024);
        drop(w);
    });
    assert_eq!(u.allocated, 4096 + 1024);
    assert_eq!(u.freed, 4096 + 1024, "the other thread's free is credited");
    assert_eq!(
        u.peak, 4096,
        "the 4 KiB was freed before the 1 KiB was allocated"
    );
    stop.store(true, Ordering::SeqCst);
    freer.join().unwrap();
}

#[test]
fn nested_measurements_see_only_their_own_allocations() {
    let ((inner, outer_kept), outer) = measure(|| {
        let a = touch(100);
        let ((), inner) = measure(|| drop(touch(200)));
        (inner, a)
    });
    assert_eq!(inner.allocated, 200);
    assert_eq!(
        outer.allocated, 100,
        "the inner task's bytes are not charged to the outer"
    );
    assert_eq!(outer.live, 100);
    drop(outer_kept);
}

fn reports() -> (
    Arc<Mutex<Vec<TaskReport>>>,
    impl Fn(&TaskReport) + Send + Sync + 'static,
) {
    let store = Arc::new(Mutex::new(Vec::new()));
    let s2 = store.clone();
    (store, move |r: &TaskReport| {
        s2.lock().unwrap().push(r.clone())
    })
}

#[test]
fn pool_measures_classified_tasks_exactly() {
    let (got, cb) = reports();
    let pool = Pool::builder()
        .workers(2)
        .capacity(Resources::new().with(Dim::Memory, 1 << 30).unwrap())
        .headroom(Resources::NONE)
        .on_task_end(cb)
        .build()
        .unwrap();
    pool.task()
        .class("exact")
        .memory("8MiB")
        .spawn(|_| {
            let v = Vec::<u8>::with_capacity(3 << 20);
            drop(v);
            std::hint::black_box(Vec::<u8>::with_capacity(1 << 20));
        })
        .unwrap()
        .join()
        .unwrap();
    pool.shutdown();
    let r = got.lock().unwrap().pop().unwrap();
    let heap = r.usage.heap.unwrap();
    assert_eq!(heap.allocated, (3 << 20) + (1 << 20));
    assert_eq!(heap.peak, 3 << 20);
    assert_eq!(r.usage.as_resources().get(Dim::Memory), Some(3 << 20));
    assert!(r.usage.cpu.is_some());
    assert_eq!(r.requested.get(Dim::Memory), Some(8 << 20));
    assert!(
        r.grown.is_zero() || r.grown.is_empty(),
        "it stayed under its reservation"
    );
}

#[test]
fn a_task_that_under_declares_pauses_admissions() {
    let (got, cb) = reports();
    let pool = Pool::builder()
        .workers(2)
        .capacity(Resources::new().with(Dim::Memory, 100 * MIB).unwrap())
        .headroom(Resources::NONE)
        .admission(Policy::Defer)
        .on_task_end(cb)
        .build()
        .unwrap();
    let (hog_ready_tx, hog_ready_rx) = mpsc::channel();
    let (hog_go_tx, hog_go_rx) = mpsc::channel::<()>();
    // Declares 10 MiB, really holds 80 MiB.
    let hog = pool
        .task()
        .class("hog")
        .memory("10MiB")
        .spawn(move |_| {
            let v = touch(80 << 20);
            hog_ready_tx.send(()).unwrap();
            hog_go_rx.recv().unwrap();
            drop(v);
        })
        .unwrap();
    hog_ready_rx.recv_timeout(SAFETY).unwrap();
    // Accounting followed reality: about 80 MiB are reserved, not 10.
    let reserved = pool.snapshot().reserved.amount(Dim::Memory);
    assert!(reserved >= 80 * MIB, "reserved {reserved}");
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = ran.clone();
    let next = pool
        .task()
        .memory("30MiB")
        .spawn(move |_| r2.store(true, Ordering::SeqCst))
        .unwrap();
    // 10 declared + 70 grown + 30 > 100: the new task waits, decided at
    // submit. Only a release, a capacity change or a cancellation admits a
    // waiter, and none comes before the hog is let go.
    assert_eq!(
        pool.snapshot().waiting,
        1,
        "admitted although memory was in use"
    );
    assert!(
        !ran.load(Ordering::SeqCst),
        "admitted although memory was in use"
    );
    hog_go_tx.send(()).unwrap();
    hog.join().unwrap();
    next.join().unwrap();
    assert!(ran.load(Ordering::SeqCst));
    pool.shutdown();
    assert!(
        pool.snapshot().reserved.is_zero(),
        "grown amounts released too"
    );
    let hog_report = got
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.class.as_deref() == Some("hog"))
        .cloned()
        .unwrap();
    assert!(hog_report.grown.amount(Dim::Memory) >= 70 * MIB);
}

/// Runs `runs` tasks of `class` one after the other; task `i` allocates
/// `bytes(i)`; returns the reports.
fn run_series(
    pool: &Pool,
    class: &str,
    runs: usize,
    size: impl Fn(usize) -> u64,
    bytes: impl Fn(u64) -> usize,
) {
    for i in 0..runs {
        let s = size(i);
        let n = bytes(s);
        pool.task()
            .class(class)
            .size_hint(s)
            .spawn(move |_| {
                let v = touch(n);
                std::hint::black_box(v.len())
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

fn learning_pool(store: Option<FileStore>) -> (Pool, Arc<Mutex<Vec<TaskReport>>>) {
    let (got, cb) = reports();
    let mut b = Pool::builder()
        .workers(2)
        .capacity(Resources::new().with(Dim::Memory, 4 << 30).unwrap())
        .headroom(Resources::NONE)
        .learning(LearningConfig {
            fallback: Resources::new().with(Dim::Memory, 64 * MIB).unwrap(),
            ..LearningConfig::default()
        })
        .on_task_end(cb);
    if let Some(s) = store {
        b = b.profile_store(s);
    }
    (b.build().unwrap(), got)
}

#[test]
fn learning_converges_on_size_dependent_usage() {
    let (pool, got) = learning_pool(None);
    // Usage proportional to input size (sizes vary 10x), like decoding an image.
    let sizes = |i: usize| 100 + ((i as u64 * 7919) % 10) * 100;
    run_series(&pool, "decode", 40, sizes, |s| (s as usize) * 16 * 1024);
    let reports = got.lock().unwrap().clone();
    let later: Vec<&TaskReport> = reports.iter().skip(10).collect();
    let hits = later
        .iter()
        .filter(|r| {
            let (Some(e), Some(a)) = (
                r.expected.get(Dim::Memory),
                r.usage.as_resources().get(Dim::Memory),
            ) else {
                return false;
            };
            e.abs_diff(a) * 10 <= a
        })
        .count();
    assert!(
        hits * 10 >= later.len() * 9,
        "{hits} of {} predictions within 10% after 10 runs",
        later.len()
    );
    // The reserve covers the usage (percentile plus margin).
    for r in &later {
        let used = r.usage.as_resources().amount(Dim::Memory);
        assert!(
            r.requested.amount(Dim::Memory) >= used,
            "under-reserved: {r:?}"
        );
    }
    let snap = pool.snapshot();
    let class = snap.classes.iter().find(|c| c.class == "decode").unwrap();
    assert_eq!(class.runs, 40);
    // Memory is what this class's usage depends on; its CPU time moves with
    // the machine's load (and counts in `share()`), so only memory is held
    // to the target here.
    let memory = class.share_in(Dim::Memory).expect("memory was predicted");
    assert!(memory.as_ppm() >= 850_000, "{class:?}");
    let m = class.by_dim.iter().find(|d| d.dim == Dim::Memory).unwrap();
    assert!(
        m.predictions >= 30,
        "memory predicted from run 4 or so: {class:?}"
    );
    let total = snap.learning.by_dim.iter().find(|d| d.dim == Dim::Memory);
    assert_eq!(total, Some(m), "one class: the total is the class");
}

#[test]
fn confidence_stays_low_on_an_erratic_class() {
    let (pool, got) = learning_pool(None);
    // Bimodal: 1 MiB or 24 MiB, no size to explain it.
    run_series(
        &pool,
        "erratic",
        30,
        |i| i as u64,
        |i| if i % 2 == 0 { 1 << 20 } else { 24 << 20 },
    );
    let reports = got.lock().unwrap().clone();
    assert_eq!(reports.len(), 30);
    for (i, r) in reports.iter().enumerate().skip(3) {
        assert_eq!(
            r.expected.get(Dim::Memory),
            None,
            "run {i}: claimed confidence on an erratic class"
        );
        let reserved = r.requested.get(Dim::Memory).unwrap();
        if i < 10 {
            // Fewer than full_confidence_samples runs: the fallback.
            assert_eq!(reserved, 64 * MIB, "run {i}: ran on the fallback");
        } else {
            // Covered: its own data, the larger mode (rounded up to its
            // histogram bucket), not the fallback; never less than the use.
            assert!(
                (24 * MIB..=32 * MIB).contains(&reserved),
                "run {i}: reserved {reserved}"
            );
        }
    }
}

#[test]
fn declared_requirements_win_over_learning() {
    let (pool, got) = learning_pool(None);
    run_series(&pool, "steady", 12, |_| 1, |_| 2 << 20);
    pool.task()
        .class("steady")
        .memory("100MiB")
        .spawn(|_| ())
        .unwrap()
        .join()
        .unwrap();
    let r = got.lock().unwrap().last().cloned().unwrap();
    assert_eq!(r.requested.get(Dim::Memory), Some(100 * MIB));
    assert_eq!(
        r.expected.get(Dim::Memory),
        None,
        "a declared dimension is not a prediction"
    );
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("respool-learning-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn profiles_survive_a_restart_through_the_file_store() {
    let dir = temp_dir("restart");
    {
        let (pool, _) = learning_pool(Some(FileStore::in_dir(&dir)));
        run_series(&pool, "resize", 12, |_| 1, |_| 3 << 20);
        pool.shutdown(); // saves
    }
    let text = std::fs::read_to_string(dir.join("profiles.json")).unwrap();
    assert!(text.contains("\"resize\""));
    let (pool, got) = learning_pool(Some(FileStore::in_dir(&dir)));
    run_series(&pool, "resize", 1, |_| 1, |_| 3 << 20);
    let r = got.lock().unwrap()[0].clone();
    let expected = r
        .expected
        .get(Dim::Memory)
        .expect("warm start: the first run is predicted");
    assert!(expected.abs_diff(3 << 20) * 10 <= 3 << 20);
    drop(pool);
    // Export and import through a memory store.
    let (pool, _) = learning_pool(None);
    let mem = MemoryStore::new();
    {
        let (donor, _) = learning_pool(Some(FileStore::in_dir(&dir)));
        donor.export_profiles(&mem).unwrap();
    }
    assert_eq!(pool.import_profiles(&mem).unwrap(), 1);
    assert_eq!(pool.profiles().classes[0].class, "resize");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_or_newer_profile_file_is_reported_and_left_untouched() {
    let dir = temp_dir("corrupt");
    let path = dir.join("profiles.json");
    for (content, want) in [
        (
            "{ \"format\": \"respool-profiles\", \"version\": 1, \"classes\": [ {",
            "corrupt at line",
        ),
        (
            "{ \"format\": \"respool-profiles\", \"version\": 99, \"classes\": [] }",
            "format version 99",
        ),
    ] {
        std::fs::write(&path, content).unwrap();
        let err = Pool::builder()
            .workers(1)
            .profile_store(FileStore::new(&path))
            .build()
            .unwrap_err();
        assert!(matches!(err, BuildError::Store(_)), "{err:?}");
        assert!(err.to_string().contains(want), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            content,
            "file untouched"
        );
    }
    let store = FileStore::new(&path);
    assert!(matches!(
        store.load(),
        Err(StoreError::UnsupportedVersion { found: 99, .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_class_runs_one_task_at_a_time_until_its_memory_is_learned() {
    // The fallback (1 MiB) is far below what each task really uses (30 MiB):
    // without cold-start probing, all of the first wave would start at once.
    // CPU is plentiful here so that memory alone decides.
    let pool = Pool::builder()
        .workers(4)
        .capacity(
            Resources::new()
                .with(Dim::Memory, 100 * MIB)
                .unwrap()
                .with(Dim::Cpu, 64_000)
                .unwrap(),
        )
        .headroom(Resources::NONE)
        .learning(LearningConfig {
            fallback: Resources::new().with(Dim::Memory, MIB).unwrap(),
            ..LearningConfig::default()
        })
        .build()
        .unwrap();
    let running = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicI64::new(0));
    // Each task holds 30 MiB until `gate` is set (the first wave's never
    // waits: it is open).
    let wave = |n: usize, gate: &Arc<AtomicBool>| -> Vec<respool::JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let (running, peak, gate) = (running.clone(), peak.clone(), gate.clone());
                pool.task()
                    .class("cold")
                    .spawn(move |_| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        let v = touch(30 << 20);
                        std::thread::sleep(Duration::from_millis(5));
                        wait_for(&gate);
                        drop(v);
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .unwrap()
            })
            .collect()
    };
    for h in wave(6, &Arc::new(AtomicBool::new(true))) {
        h.join().unwrap();
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        1,
        "the cold class ran one task at a time"
    );

    // Once learned (30 MiB plus margin each), several run together, within
    // budget. The tasks hold their memory until the gate opens: admission
    // is decided at submit, so once every admitted task runs (the others
    // wait, nothing is queued) the running ones are all that fit.
    peak.store(0, Ordering::SeqCst);
    let gate = Arc::new(AtomicBool::new(false));
    let second = wave(12, &gate);
    let admitted = || {
        let s = pool.snapshot();
        (s.queued == 0).then(|| 12 - s.waiting)
    };
    let t0 = std::time::Instant::now();
    while admitted() != Some(usize::try_from(running.load(Ordering::SeqCst)).unwrap()) {
        assert!(t0.elapsed() < SAFETY, "the admitted tasks never all ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    let together = running.load(Ordering::SeqCst);
    gate.store(true, Ordering::SeqCst);
    for h in second {
        h.join().unwrap();
    }
    assert!(
        (2..=3).contains(&together),
        "learned: {together} at once (100 MiB / ~35 MiB each)"
    );
    let p = peak.load(Ordering::SeqCst);
    assert!(
        (2..=3).contains(&p),
        "learned: at most {p} at once (100 MiB / ~35 MiB each)"
    );
    assert!(pool.snapshot().reserved.is_zero());
}

#[test]
fn reported_usage_and_oom_feed_the_class() {
    let (pool, got) = learning_pool(None);
    for _ in 0..8 {
        pool.task()
            .class("net")
            .spawn(|ctx| ctx.report_usage(Dim::Network, 5_000_000))
            .unwrap()
            .join()
            .unwrap();
    }
    let r = got.lock().unwrap().last().cloned().unwrap();
    assert_eq!(r.usage.as_resources().get(Dim::Network), Some(5_000_000));
    assert_eq!(
        r.expected.get(Dim::Network),
        Some(5_000_000),
        "learned from reports"
    );
    let floor = pool.report_oom("big-link", 6 << 30);
    assert_eq!(floor, ((6u64 << 30) * 12).div_ceil(10), "x 1.2, rounded up");
    let snap = pool.snapshot();
    assert!(snap.classes.iter().any(|c| c.class == "big-link"));
}

/// Waits until `flag` is set (at most [`SAFETY`], against a hang). Sleeps
/// between looks, so that a measured task waiting here uses next to no CPU
/// time; `sleep` does not allocate.
fn wait_for(flag: &AtomicBool) {
    let give_up = std::time::Instant::now() + SAFETY;
    while !flag.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < give_up, "never set");
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// What the task run inline, inside the outer task's scope, does.
#[derive(Clone, Copy, Debug, Default)]
struct Work {
    /// Bytes allocated (one block, touched) and freed.
    bytes: usize,
    /// Rounds of arithmetic: CPU time.
    spin: u64,
    /// Reads of `/proc/self/stat`: I/O.
    reads: u32,
    /// Network usage it reports (a classified task only: plain tasks have
    /// no context to report with).
    report: Option<u64>,
}

impl Work {
    fn run(self) {
        drop(touch(self.bytes));
        let mut x = 0u64;
        for i in 0..self.spin {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        for _ in 0..self.reads {
            std::hint::black_box(std::fs::read("/proc/self/stat").unwrap());
        }
    }
}

/// The task the outer task's scope runs inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inner {
    /// A classified task (class `inner`, 64 MiB), queued behind the outer.
    Classified,
    /// A plain `pool.execute` job queued behind the outer: unrelated to it.
    Execute,
    /// The outer's own scoped task (`Scope::spawn`).
    Scoped,
}

/// What [`nest`] saw.
struct Nested {
    /// The outer task's report.
    outer: TaskReport,
    /// The inner task's report (a classified inner task only).
    inner: Option<TaskReport>,
    /// Memory reserved in the pool once the outer's scope is done, while
    /// the outer task still runs (the inner task has given its reservation
    /// back by then).
    reserved_after_scope: u64,
}

/// The outer task's memory reservation in [`nest`].
const OUTER_RESERVED: u64 = 4 * MIB;

/// Runs an outer task (class `outer`, reserving [`OUTER_RESERVED`]) that
/// holds `outer_bytes` and reports `outer_report` of network, then waits on
/// a scope, on a pool with one worker: the worker runs the `inner` task
/// (doing `work`) itself, nested inside the outer task. Checks that it did.
fn nest(inner: Inner, outer_bytes: usize, outer_report: Option<u64>, work: Work) -> Nested {
    let (got, cb) = reports();
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .capacity(
                Resources::new()
                    .with(Dim::Memory, 1 << 30)
                    .unwrap()
                    .with(Dim::Cpu, 64_000)
                    .unwrap(),
            )
            .headroom(Resources::NONE)
            .on_task_end(cb)
            .build()
            .unwrap(),
    );
    let flag = || Arc::new(AtomicBool::new(false));
    let (started, queued, in_scope, after_scope, checked, inline) =
        (flag(), flag(), flag(), flag(), flag(), flag());
    let outer = {
        let p = pool.clone();
        let (started, queued, in_scope, after_scope, checked, inline) = (
            started.clone(),
            queued.clone(),
            in_scope.clone(),
            after_scope.clone(),
            checked.clone(),
            inline.clone(),
        );
        pool.task()
            .class("outer")
            .memory("4MiB")
            .spawn(move |ctx| {
                let kept = touch(outer_bytes);
                if let Some(n) = outer_report {
                    ctx.report_usage(Dim::Network, n);
                }
                started.store(true, Ordering::SeqCst);
                // A queued inner task is queued behind this one, on the
                // only worker.
                wait_for(&queued);
                in_scope.store(true, Ordering::SeqCst);
                // Waiting for its task, the scope runs queued tasks itself:
                // a queued inner task first, then its own.
                p.scope(|s| {
                    if inner == Inner::Scoped {
                        let (inline, in_scope) = (&inline, &in_scope);
                        s.spawn(move || {
                            inline.store(in_scope.load(Ordering::SeqCst), Ordering::SeqCst);
                            work.run();
                        });
                    } else {
                        s.spawn(|| ());
                    }
                });
                in_scope.store(false, Ordering::SeqCst);
                after_scope.store(true, Ordering::SeqCst);
                wait_for(&checked);
                drop(kept);
            })
            .unwrap()
    };
    wait_for(&started);
    let (i2, s2) = (inline.clone(), in_scope.clone());
    let handle = match inner {
        Inner::Classified => Some(
            pool.task()
                .class("inner")
                .memory("64MiB")
                .spawn(move |ctx| {
                    i2.store(s2.load(Ordering::SeqCst), Ordering::SeqCst);
                    work.run();
                    if let Some(n) = work.report {
                        ctx.report_usage(Dim::Network, n);
                    }
                    // At least a millisecond, so that the same dimensions
                    // are measured in every run (IOPS needs 1 ms).
                    std::thread::sleep(Duration::from_millis(2));
                })
                .unwrap(),
        ),
        Inner::Execute => {
            pool.execute(move || {
                i2.store(s2.load(Ordering::SeqCst), Ordering::SeqCst);
                work.run();
            })
            .unwrap();
            None
        }
        Inner::Scoped => None,
    };
    queued.store(true, Ordering::SeqCst);
    wait_for(&after_scope);
    // Read from this thread: the snapshot's own allocations are no task's.
    let reserved_after_scope = pool.snapshot().reserved.amount(Dim::Memory);
    checked.store(true, Ordering::SeqCst);
    outer.join().unwrap();
    if let Some(h) = handle {
        h.join().unwrap();
    }
    pool.shutdown();
    assert!(
        inline.load(Ordering::SeqCst),
        "the {inner:?} task ran inline, inside the outer task's scope"
    );
    let reports = got.lock().unwrap().clone();
    let report = |class: &str| {
        reports
            .iter()
            .find(|r| r.class.as_deref() == Some(class))
            .cloned()
    };
    Nested {
        outer: report("outer").unwrap(),
        inner: report("inner"),
        reserved_after_scope,
    }
}

/// Runs [`nest`] once per `bytes` allocated by the inner task (the outer
/// holding `outer_bytes`), and checks that the outer task's reservation
/// never grew, that nothing but it was reserved once its scope was done,
/// and that its heap report is the same every time.
fn outer_heap_ignores(inner: Inner, outer_bytes: usize, bytes: &[usize]) -> Vec<Nested> {
    let runs: Vec<Nested> = bytes
        .iter()
        .map(|&b| {
            nest(
                inner,
                outer_bytes,
                None,
                Work {
                    bytes: b,
                    ..Work::default()
                },
            )
        })
        .collect();
    for (r, b) in runs.iter().zip(bytes) {
        assert!(
            r.outer.grown.amount(Dim::Memory) == 0,
            "{inner:?} inner task of {b} bytes grew the outer's reservation: {:?}",
            r.outer.grown
        );
        assert_eq!(
            r.reserved_after_scope, OUTER_RESERVED,
            "{inner:?} inner task of {b} bytes: reserved after the scope"
        );
        assert_eq!(
            r.outer.usage.heap, runs[0].outer.usage.heap,
            "{inner:?} inner task of {b} bytes: the outer's report changed"
        );
    }
    runs
}

#[test]
fn a_task_run_inline_inside_another_is_charged_to_itself() {
    const OUTER: u64 = 3 << 20;
    // 4 MiB more in the inner task changes the outer's report by not one byte.
    let sizes = [5u64 << 20, 9 << 20];
    let runs = outer_heap_ignores(
        Inner::Classified,
        OUTER as usize,
        &sizes.map(|b| b as usize),
    );
    for (r, &inner_bytes) in runs.iter().zip(&sizes) {
        // Exactly the inner task's one block, allocated and freed.
        assert_eq!(
            r.inner.as_ref().and_then(|i| i.usage.heap),
            Some(HeapUsage {
                allocated: inner_bytes,
                freed: inner_bytes,
                peak: inner_bytes,
                live: 0,
                allocations: 1,
            })
        );
        // None of it in the outer task's report: the outer's own block,
        // plus its scope (a few hundred bytes).
        let outer = r.outer.usage.heap.unwrap();
        assert!(
            outer.allocated >= OUTER && outer.allocated - OUTER < 1 << 10,
            "{outer:?}"
        );
        assert!(
            outer.peak >= OUTER && outer.peak - OUTER < 1 << 10,
            "{outer:?}"
        );
    }
}

#[test]
fn a_plain_task_run_inline_is_charged_to_no_task() {
    // 1 MiB, and 8 MiB: more than the outer's 4 MiB reservation, which
    // would grow if the outer were charged.
    let bytes = [0, MIB as usize, 8 * MIB as usize];
    // An unrelated `execute` job picked up by the scope, and the scope's own task.
    for inner in [Inner::Execute, Inner::Scoped] {
        let runs = outer_heap_ignores(inner, MIB as usize, &bytes);
        let heap = runs[0].outer.usage.heap.unwrap();
        assert!(
            heap.allocated >= MIB && heap.allocated - MIB < 1 << 10,
            "{inner:?}: the outer's 1 MiB and its scope: {heap:?}"
        );
    }
}

#[test]
fn the_bookkeeping_after_an_inline_task_is_charged_to_no_task() {
    // The pool's bookkeeping after a classified task (its history sample,
    // its report) is no task's: with a classified inner task, the outer's
    // report is the same as with a plain one that allocates nothing.
    let classified = nest(Inner::Classified, MIB as usize, None, Work::default());
    let plain = nest(Inner::Execute, MIB as usize, None, Work::default());
    assert_eq!(classified.outer.usage.heap, plain.outer.usage.heap);
}

#[test]
fn the_outer_task_keeps_what_it_reported_before_an_inline_task() {
    let both = Work {
        report: Some(3_000),
        ..Work::default()
    };
    let r = nest(Inner::Classified, 0, Some(7_000), both);
    assert_eq!(r.outer.usage.reported.get(Dim::Network), Some(7_000));
    assert_eq!(
        r.inner.unwrap().usage.reported.get(Dim::Network),
        Some(3_000),
        "the inner task's own report, not the outer's"
    );
    let quiet = nest(Inner::Classified, 0, Some(7_000), Work::default());
    assert_eq!(quiet.outer.usage.reported.get(Dim::Network), Some(7_000));
    assert_eq!(
        quiet.inner.unwrap().usage.reported.get(Dim::Network),
        None,
        "the outer's report is not the inner's"
    );
    for inner in [Inner::Execute, Inner::Scoped] {
        let r = nest(inner, 0, Some(7_000), Work::default());
        assert_eq!(
            r.outer.usage.reported.get(Dim::Network),
            Some(7_000),
            "{inner:?}"
        );
    }
}

#[test]
fn an_inline_task_cpu_time_and_io_are_not_the_outer_task_s() {
    // CPU-heavy and I/O-heavy; the outer task itself only waits.
    let heavy = Work {
        spin: 30_000_000,
        reads: 50,
        ..Work::default()
    };
    let r = nest(Inner::Classified, 0, None, heavy);
    let inner = r.inner.unwrap().usage;
    let (outer_cpu, inner_cpu) = (r.outer.usage.cpu, inner.cpu);
    if let (Some(outer_cpu), Some(inner_cpu)) = (outer_cpu, inner_cpu) {
        assert!(
            outer_cpu < inner_cpu / 2,
            "classified: outer {outer_cpu:?}, inner {inner_cpu:?}"
        );
        // The same work in plain tasks, which nothing measures: still
        // not the outer's.
        for kind in [Inner::Execute, Inner::Scoped] {
            let p = nest(kind, 0, None, heavy);
            let outer_cpu = p.outer.usage.cpu.unwrap();
            assert!(
                outer_cpu < inner_cpu / 2,
                "{kind:?}: outer {outer_cpu:?}, the work {inner_cpu:?}"
            );
            if let (Some(o), Some(i)) = (p.outer.usage.io, inner.io) {
                assert!(o.read_calls < i.read_calls / 2, "{kind:?}: {o:?} {i:?}");
            }
        }
    }
    if let (Some(o), Some(i)) = (r.outer.usage.io, inner.io) {
        assert!(i.read_calls >= 50, "{i:?}");
        assert!(o.read_calls < i.read_calls / 2, "classified: {o:?} {i:?}");
        assert!(o.read_bytes < i.read_bytes / 2, "classified: {o:?} {i:?}");
    }
}
