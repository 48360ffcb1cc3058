//! Chaos: random failures and panics, memory spikes far beyond what tasks
//! declared, panics in the middle of tasks (the only way a worker's task
//! dies), a monitor whose source starts failing, and a capacity cut while the
//! pool is full. After each: no accepted task lost or run twice (a run count
//! per task id), every reservation released (`reserved` is zero once the
//! pool is quiet), and the pool still accepts and runs work.
//!
//! Randomness comes from a fixed-seed generator, so a failure replays. This
//! binary installs the tracking allocator (memory spikes grow reservations).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use respool::alloc::TrackingAllocator;
use respool::measure::TaskReport;
use respool::sys::{MemoryReading, MonitorConfig, Resource, Snapshot, SysError, SystemMonitor};
use respool::{Backoff, Dim, JoinHandle, Policy, Pool, Resources, TaskError};

mod common;
use common::*;

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

/// One run counter per task id.
struct Ledger(Vec<AtomicU32>);

impl Ledger {
    fn new(n: usize) -> Arc<Ledger> {
        Arc::new(Ledger((0..n).map(|_| AtomicU32::new(0)).collect()))
    }
    fn ran(&self, id: usize) {
        self.0[id].fetch_add(1, Ordering::SeqCst);
    }
    fn runs(&self, id: usize) -> u32 {
        self.0[id].load(Ordering::SeqCst)
    }
}

/// The pool still accepts and runs work, including a task that needs all of
/// `memory` (which only fits if every reservation was released).
fn assert_still_works(pool: &Pool, memory: u64) {
    let n = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let n = n.clone();
            pool.task()
                .require(Dim::Memory, 1 + i)
                .spawn(move |_| n.fetch_add(1, Ordering::SeqCst))
                .expect("accepted")
        })
        .collect();
    for h in handles {
        join(h).expect("runs");
    }
    assert_eq!(n.load(Ordering::SeqCst), 20);
    assert_eq!(
        join(
            pool.task()
                .require(Dim::Memory, memory)
                .spawn(|_| 7)
                .expect("fits when empty")
        ),
        Ok(7)
    );
    assert_eq!(join(pool.submit(|| 8).expect("plain task")), Ok(8));
    assert_quiet(pool);
}

/// What a task of the random mix was planned to do.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// `Pool::execute`, maybe panicking.
    Execute { panics: bool },
    /// `Pool::submit`, maybe panicking.
    Submit { panics: bool },
    /// With a memory requirement, maybe panicking.
    Spawn { memory: u64, panics: bool },
    /// Retrying: fails (error or panic) on its first `failures` attempts.
    Retrying { memory: u64, failures: u32 },
}

#[derive(Debug)]
struct Flaky;
impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("chaos: flaky attempt")
    }
}
impl std::error::Error for Flaky {}

const RETRIES: u32 = 2;

/// Guards "every accepted task runs exactly once" under random failures.
#[test]
fn random_failures_and_panics_lose_nothing_and_run_nothing_twice() {
    quiet_expected_panics("chaos");
    let mut rng = fastrand::Rng::with_seed(0xC4A0_5001);
    let pool = pool(3, 1000);
    let n = 400;
    let ledger = Ledger::new(n);
    let mut plans = Vec::with_capacity(n);
    let mut handles: Vec<(usize, JoinHandle<u64>)> = Vec::new();
    let mut expected_panics = 0u64;
    for id in 0..n {
        let panics = rng.u64(..100) < 20;
        let plan = match rng.u64(..4) {
            0 => Plan::Execute { panics },
            1 => Plan::Submit { panics },
            2 => Plan::Spawn {
                memory: rng.u64(1..=600),
                panics,
            },
            _ => Plan::Retrying {
                memory: rng.u64(1..=600),
                failures: u32::try_from(rng.u64(..4)).unwrap_or(0),
            },
        };
        plans.push(plan);
        let l = ledger.clone();
        match plan {
            Plan::Execute { panics } => {
                expected_panics += u64::from(panics);
                pool.execute(move || {
                    l.ran(id);
                    assert!(!panics, "chaos: execute {id}");
                })
                .expect("accepted");
            }
            Plan::Submit { panics } => {
                expected_panics += u64::from(panics);
                let h = pool
                    .submit(move || {
                        l.ran(id);
                        assert!(!panics, "chaos: submit {id}");
                        id as u64
                    })
                    .expect("accepted");
                handles.push((id, h));
            }
            Plan::Spawn { memory, panics } => {
                expected_panics += u64::from(panics);
                let h = pool
                    .task()
                    .require(Dim::Memory, memory)
                    .spawn(move |_| {
                        l.ran(id);
                        assert!(!panics, "chaos: spawn {id}");
                        id as u64
                    })
                    .expect("accepted");
                handles.push((id, h));
            }
            Plan::Retrying { memory, failures } => {
                let h = pool
                    .task()
                    .require(Dim::Memory, memory)
                    .retries(RETRIES, Backoff::Fixed(Duration::from_millis(1)))
                    .spawn_retrying(move |ctx| {
                        l.ran(id);
                        if ctx.attempt() < failures {
                            if ctx.attempt() % 2 == 0 {
                                return Err(Flaky);
                            }
                            panic!("chaos: retrying {id} attempt {}", ctx.attempt());
                        }
                        Ok(id as u64)
                    })
                    .expect("accepted");
                handles.push((id, h));
            }
        }
    }
    for (id, h) in handles {
        let r = join(h);
        match plans[id] {
            Plan::Submit { panics } | Plan::Spawn { panics, .. } => {
                assert_eq!(ledger.runs(id), 1, "task {id} ({:?})", plans[id]);
                if panics {
                    assert!(matches!(r, Err(TaskError::Panicked(_))), "{id}: {r:?}");
                } else {
                    assert_eq!(r, Ok(id as u64));
                }
            }
            Plan::Retrying { failures, .. } => {
                let attempts = failures.min(RETRIES) + 1;
                assert_eq!(ledger.runs(id), attempts, "task {id} ({:?})", plans[id]);
                if failures <= RETRIES {
                    assert_eq!(r, Ok(id as u64));
                } else {
                    assert!(
                        matches!(r, Err(TaskError::Failed { attempts: a, .. }) if a == attempts),
                        "{id}: {r:?}"
                    );
                }
            }
            Plan::Execute { .. } => unreachable!("no handle"),
        }
    }
    // Fire-and-forget tasks: each ran exactly once.
    wait_until("every execute task to run", || {
        plans
            .iter()
            .enumerate()
            .all(|(id, p)| !matches!(p, Plan::Execute { .. }) || ledger.runs(id) >= 1)
    });
    assert_quiet(&pool);
    for (id, p) in plans.iter().enumerate() {
        if matches!(p, Plan::Execute { .. }) {
            assert_eq!(ledger.runs(id), 1, "execute task {id}");
        }
    }
    let s = pool.snapshot();
    assert_eq!(s.panicked, expected_panics, "{s}");
    assert_eq!(s.workers, 3);
    assert_still_works(&pool, 1000);
}

/// Guards "accounting follows reality": a task that allocates far beyond its
/// declaration grows its reservation while it runs, and all of it is
/// released when it ends, also when it panics holding the memory.
#[test]
fn memory_spikes_far_beyond_declarations_are_charged_and_released() {
    quiet_expected_panics("chaos");
    let mut rng = fastrand::Rng::with_seed(0x5B1C_E002);
    let reports: Arc<Mutex<Vec<TaskReport>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let pool = Arc::new(
        Pool::builder()
            .workers(4)
            .capacity(mem(256 * MIB))
            .headroom(Resources::NONE)
            .measure_all(true)
            .on_task_end(move |r: &TaskReport| sink.lock().expect("reports").push(r.clone()))
            .build()
            .expect("pool"),
    );
    let n = 40;
    let ledger = Ledger::new(n);
    let short = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    let mut panics = 0;
    for id in 0..n {
        // Declares 1 MiB, uses 8-48 MiB.
        let spike = rng.u64(8..=48) * MIB;
        let panicky = rng.u64(..100) < 25;
        panics += usize::from(panicky);
        let (l, p, short) = (ledger.clone(), pool.clone(), short.clone());
        let h = pool
            .task()
            .require(Dim::Memory, MIB)
            .spawn(move |_| {
                l.ran(id);
                let v = vec![0x5au8; usize::try_from(spike).expect("usize")];
                // While it holds the spike, the pool's books include it.
                if p.snapshot().reserved.amount(Dim::Memory) < spike {
                    short.fetch_add(1, Ordering::SeqCst);
                }
                assert!(
                    !panicky,
                    "chaos: spike {id} panics holding {} MiB",
                    spike / MIB
                );
                v.iter().step_by(4096).map(|&b| u64::from(b)).sum::<u64>()
            })
            .expect("accepted");
        handles.push((id, spike, panicky, h));
    }
    for (id, spike, panicky, h) in handles {
        let r = join(h);
        assert_eq!(ledger.runs(id), 1, "task {id}");
        if panicky {
            assert!(matches!(r, Err(TaskError::Panicked(_))), "{r:?}");
        } else {
            assert_eq!(r, Ok(0x5a * spike.div_ceil(4096)));
        }
    }
    assert_eq!(
        short.load(Ordering::SeqCst),
        0,
        "a task held more memory than the pool had reserved in total"
    );
    assert_quiet(&pool);
    let reports = reports.lock().expect("reports").clone();
    assert_eq!(reports.len(), n);
    assert_eq!(reports.iter().filter(|r| r.panicked).count(), panics);
    for r in &reports {
        let peak = r.usage.heap.expect("tracking allocator").peak;
        let held = r.requested.amount(Dim::Memory) + r.grown.amount(Dim::Memory);
        assert!(
            held >= peak,
            "reservation {held} below the peak {peak}: {r:?}"
        );
    }
    assert_still_works(&pool, 256 * MIB);
}

/// Guards "a panic is the only way a worker's task dies, and the worker
/// survives it": after many tasks panic mid-run while holding reservations,
/// every worker still runs tasks (all of them at once, proven by a
/// rendezvous that needs every worker), and nothing is left reserved.
#[test]
fn workers_survive_tasks_that_panic_mid_run() {
    quiet_expected_panics("chaos");
    const WORKERS: usize = 3;
    let mut rng = fastrand::Rng::with_seed(0xDEAD_0003);
    let pool = Pool::builder()
        .workers(WORKERS)
        .capacity(mem(100))
        .headroom(Resources::NONE)
        .thread_name("chaos-w")
        .build()
        .expect("pool");
    let n = 90;
    let ledger = Ledger::new(n);
    let mut handles = Vec::new();
    let mut panics = 0u64;
    for id in 0..n {
        let dies = rng.u64(..100) < 50;
        panics += u64::from(dies);
        let size = rng.u64(1..=40);
        let l = ledger.clone();
        let h = pool
            .task()
            .require(Dim::Memory, size)
            .spawn(move |_| {
                l.ran(id);
                let half_done: Vec<u64> = (0..1000).collect();
                assert!(!dies, "chaos: task {id} dies half way");
                half_done.len()
            })
            .expect("accepted");
        handles.push((id, dies, h));
    }
    for (id, dies, h) in handles {
        let r = join(h);
        assert_eq!(ledger.runs(id), 1, "task {id}");
        assert_eq!(r.is_err(), dies, "{id}: {r:?}");
    }
    assert_quiet(&pool);
    let s = pool.snapshot();
    assert_eq!(s.panicked, panics, "{s}");
    assert_eq!(s.workers, WORKERS);

    // Rendezvous: WORKERS tasks that each wait for all the others. It
    // completes only if WORKERS distinct workers run at once. Nothing in a
    // task allocates before all have arrived: with the tracking allocator,
    // a running task that allocates grows its 1-byte reservation by 1 MiB,
    // past the 100 bytes of capacity, and a rendezvous task submitted after
    // that would wait for memory that the others hold until it comes.
    let arrived = Arc::new(AtomicUsize::new(0));
    let names = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (arrived, names) = (arrived.clone(), names.clone());
            pool.task()
                .require(Dim::Memory, 1)
                .spawn(move |_| {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let start = Instant::now();
                    while arrived.load(Ordering::SeqCst) < WORKERS {
                        assert!(start.elapsed() < SAFETY, "not every worker is alive");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    names
                        .lock()
                        .expect("names")
                        .push(std::thread::current().name().map(str::to_owned));
                })
                .expect("accepted")
        })
        .collect();
    for h in handles {
        join(h).expect("every worker took part");
    }
    let mut names = names.lock().expect("names").clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), WORKERS, "distinct workers: {names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.as_deref().is_some_and(|n| n.starts_with("chaos-w-"))),
        "{names:?}"
    );
    assert_still_works(&pool, 100);
}

/// Failed memory readings in a row after which the pool drops the external
/// usage (`STALE_SAMPLES` in `src/pool.rs`).
const STALE_SAMPLES: u32 = 3;

/// What the scripted monitor source does; shared by the test and the source.
#[derive(Default)]
struct Script {
    state: Mutex<ScriptState>,
    changed: Condvar,
}

#[derive(Default)]
struct ScriptState {
    /// Memory in use, reported while the source works.
    used: u64,
    /// Every read fails from now on.
    failing: bool,
    /// Failed reads so far.
    failed: u32,
    /// Failed reads let through: the next one waits for the test, holding
    /// the sampling thread, so the test sees the pool between two readings.
    allowed: u32,
    /// A read waits for the test.
    parked: bool,
}

impl Script {
    fn state(&self) -> std::sync::MutexGuard<'_, ScriptState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts failing (or lets more failed reads through).
    fn fail(&self, allowed: u32) {
        let mut s = self.state();
        s.failing = true;
        s.allowed = allowed;
        self.changed.notify_all();
    }

    /// Waits until exactly `failed` reads have failed and the next one waits:
    /// the pool has handled the sample of the last failed read.
    fn wait_parked_after(&self, failed: u32) {
        let start = Instant::now();
        let mut s = self.state();
        while !(s.parked && s.failed == failed) {
            assert!(
                start.elapsed() < SAFETY,
                "timed out waiting for failed read {failed}"
            );
            s = self
                .changed
                .wait_timeout(s, Duration::from_millis(10))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

/// Lets every read through when dropped (also when the test fails), so that
/// the pool can stop its monitor.
struct LetGo(Arc<Script>);

impl Drop for LetGo {
    fn drop(&mut self) {
        self.0.fail(u32::MAX);
    }
}

/// The pool's monitor source in this test: memory only, from the script.
struct Scripted(Arc<Script>);

impl SystemMonitor for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn read(
        &mut self,
        resource: Resource,
        now: Instant,
        snapshot: &mut Snapshot,
    ) -> Result<(), SysError> {
        if resource != Resource::Memory {
            return Err(SysError::Unsupported {
                what: "anything but memory",
                why: "a test source",
            });
        }
        let script = &*self.0;
        let mut s = script.state();
        if !s.failing {
            snapshot.memory = Some(MemoryReading {
                at: now,
                total: 1000,
                available: 1000 - s.used,
                used: s.used,
            });
            return Ok(());
        }
        let start = Instant::now();
        while s.failed >= s.allowed && start.elapsed() < SAFETY {
            s.parked = true;
            script.changed.notify_all();
            s = script
                .changed
                .wait_timeout(s, Duration::from_millis(10))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        s.parked = false;
        s.failed += 1;
        script.changed.notify_all();
        Err(SysError::Os {
            op: "chaos: read meminfo",
            code: 5,
        })
    }
}

/// Guards the pool's own monitor path (`Builder::system_monitor`, the pool's
/// `on_sample`) against a source that starts failing: memory used outside
/// the pool defers every task; when the source fails, the last good reading
/// still holds the tasks back for `STALE_SAMPLES - 1` failed readings, and
/// the `STALE_SAMPLES`-th drops the external usage, so the deferred tasks
/// run: each exactly once, and nothing stays reserved.
#[test]
fn a_monitor_that_starts_failing_does_not_lose_work() {
    quiet_expected_panics("chaos");
    let mut rng = fastrand::Rng::with_seed(0x0B5E_0004);
    let script = Arc::new(Script::default());
    // All 1000 in use outside the pool.
    script.state().used = 1000;
    let pool = Pool::builder()
        .workers(3)
        .capacity(mem(1000))
        .headroom(Resources::NONE)
        .admission(Policy::Defer)
        .system_monitor(Scripted(script.clone()))
        .monitor_config(
            MonitorConfig::default()
                .only(&[Resource::Memory])
                .with_interval(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(20)),
        )
        .build()
        .expect("pool");
    let _let_go = LetGo(script.clone());
    // Capacity 1000, no headroom: what is not effective is external.
    let external = || 1000 - pool.snapshot().effective_capacity.amount(Dim::Memory);
    wait_until("the first sample", || external() == 1000);

    // Nothing fits now: every task waits.
    let n = 200;
    let ledger = Ledger::new(n);
    let mut handles = Vec::new();
    for id in 0..n {
        let size = rng.u64(1..=500);
        let panics = rng.u64(..100) < 15;
        let l = ledger.clone();
        let h = pool
            .task()
            .require(Dim::Memory, size)
            .spawn(move |_| {
                l.ran(id);
                assert!(!panics, "chaos: task {id} under a failing monitor");
                size
            })
            .expect("accepted");
        handles.push((id, size, panics, h));
    }
    let nothing_ran = || (0..n).all(|id| ledger.runs(id) == 0);
    let s = pool.snapshot();
    assert_eq!(s.waiting, n, "{s}");
    assert!(nothing_ran());

    // The source fails: the stale reading still counts for a few samples.
    script.fail(STALE_SAMPLES - 1);
    script.wait_parked_after(STALE_SAMPLES - 1);
    assert_eq!(external(), 1000, "dropped before {STALE_SAMPLES} failures");
    let s = pool.snapshot();
    assert_eq!(s.waiting, n, "{s}");
    assert!(nothing_ran());

    // One more failed reading: the external usage is dropped.
    script.fail(STALE_SAMPLES);
    script.wait_parked_after(STALE_SAMPLES);
    assert_eq!(external(), 0, "not dropped after {STALE_SAMPLES} failures");

    // The source keeps failing (with backoff); the deferred tasks run.
    script.fail(u32::MAX);
    for (id, size, panics, h) in handles {
        let r = join(h);
        assert_eq!(ledger.runs(id), 1, "task {id}");
        if panics {
            assert!(matches!(r, Err(TaskError::Panicked(_))), "{r:?}");
        } else {
            assert_eq!(r, Ok(size));
        }
    }
    assert_quiet(&pool);
    let failed = script.state().failed;
    wait_until("another failed reading", || script.state().failed > failed);
    assert_eq!(external(), 0, "a failing source does not bring it back");
    assert_still_works(&pool, 1000);
}

/// Guards the capacity cut: with the pool full, capacity drops below what
/// is reserved; running tasks keep their reservations, waiting tasks that
/// can no longer ever fit are refused (and never run), the others run once.
#[test]
fn a_capacity_cut_while_full_refuses_only_what_can_never_fit() {
    quiet_expected_panics("chaos");
    let mut rng = fastrand::Rng::with_seed(0xC07_0005);
    let pool = pool(4, 1000);
    // Four running tasks hold 200 each, until released.
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let started = Arc::new(AtomicUsize::new(0));
    let blockers: Vec<_> = (0..4)
        .map(|_| {
            let (rx, started) = (release_rx.clone(), started.clone());
            pool.task()
                .require(Dim::Memory, 200)
                .spawn(move |_| {
                    started.fetch_add(1, Ordering::SeqCst);
                    let _ = rx.lock().expect("rx").recv_timeout(SAFETY);
                })
                .expect("accepted")
        })
        .collect();
    wait_until("the blockers to run", || {
        started.load(Ordering::SeqCst) == 4
    });
    // Thirty more, 100-600 each: they wait (all workers are busy or the
    // memory is short).
    let n = 30;
    let ledger = Ledger::new(n);
    let mut handles = Vec::new();
    for id in 0..n {
        let size = rng.u64(100..=600);
        let l = ledger.clone();
        let h = pool
            .task()
            .require(Dim::Memory, size)
            .spawn(move |_| {
                l.ran(id);
                size
            })
            .expect("accepted");
        handles.push((id, size, h));
    }
    // The cut: 1000 -> 450, below the 800 held by the running tasks.
    pool.set_capacity(&mem(450)).expect("memory is tracked");
    let s = pool.snapshot();
    assert!(s.reserved.amount(Dim::Memory) >= 800, "{s}");
    for _ in 0..4 {
        release_tx.send(()).expect("blockers wait");
    }
    for h in blockers {
        join(h).expect("blocker");
    }
    let mut refused = 0;
    for (id, size, h) in handles {
        let r = join(h);
        match r {
            Ok(v) => {
                assert_eq!(v, size);
                assert_eq!(ledger.runs(id), 1, "task {id}");
            }
            Err(TaskError::Rejected(_)) => {
                assert!(size > 450, "task {id} of {size} fits 450 but was refused");
                assert_eq!(ledger.runs(id), 0, "refused task {id} ran");
                refused += 1;
            }
            Err(e) => panic!("task {id}: {e:?}"),
        }
    }
    assert!(
        refused > 0,
        "the seed should make some tasks too big for the cut"
    );
    assert_quiet(&pool);
    // Too big for the new capacity: refused at submit, with the reason.
    assert!(pool.task().require(Dim::Memory, 451).spawn(|_| ()).is_err());
    assert_still_works(&pool, 450);
    pool.set_capacity(&mem(1000)).expect("memory is tracked");
    assert_still_works(&pool, 1000);
}
