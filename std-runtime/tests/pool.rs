//! Integration tests of the pool: tasks, admission, lifecycle, invariants.
//!
//! Synchronisation in these tests uses channels and barriers, never sleeps
//! that must be "long enough"; the few timeouts are safety nets that turn a
//! hang into a failure, not thresholds on speed.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use respool::{Backoff, Dim, Policy, Pool, Resources, SubmitError, TaskContext, TaskError};

mod common;
use common::{block_worker, wait_until, wait_until_asleep};

const SAFETY: Duration = Duration::from_secs(30);

fn mem(n: u64) -> Resources {
    Resources::new().with(Dim::Memory, n).unwrap()
}

/// A pool with `workers` workers and exactly `memory` bytes of memory.
fn pool(workers: usize, memory: u64, policy: Policy) -> Pool {
    Pool::builder()
        .workers(workers)
        .capacity(mem(memory))
        .headroom(Resources::NONE)
        .admission(policy)
        .build()
        .unwrap()
}

/// Runs until the task is cancelled (or the safety net passes); returns
/// whether it was.
fn until_cancelled(ctx: &TaskContext) -> bool {
    let t0 = Instant::now();
    while !ctx.is_cancelled() && t0.elapsed() < SAFETY {
        std::thread::sleep(Duration::from_millis(1));
    }
    ctx.is_cancelled()
}

#[test]
fn execute_submit_and_panics() {
    let pool = pool(2, 1 << 30, Policy::Defer);
    let n = Arc::new(AtomicUsize::new(0));
    for _ in 0..1000 {
        let n = n.clone();
        pool.execute(move || {
            n.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    let h = pool.submit(|| 21 * 2).unwrap();
    assert_eq!(h.join(), Ok(42));
    let p = pool.submit(|| -> u32 { panic!("boom") }).unwrap();
    assert_eq!(p.join(), Err(TaskError::Panicked("boom".into())));
    pool.execute(|| panic!("fire-and-forget panic")).unwrap();
    // The pool goes on after panics.
    assert_eq!(pool.submit(|| 7).unwrap().join(), Ok(7));
    pool.shutdown();
    assert_eq!(n.load(Ordering::Relaxed), 1000);
    let s = pool.snapshot();
    assert_eq!(s.panicked, 2);
    assert_eq!(s.completed, 1000 + 2);
}

#[test]
fn a_request_that_can_never_fit_is_refused_at_submit() {
    let pool = pool(1, 1000, Policy::Defer);
    let err = pool
        .task()
        .require(Dim::Memory, 1500)
        .spawn(|_| ())
        .unwrap_err();
    match err {
        SubmitError::NeverFits(s) => {
            assert_eq!((s.dim, s.requested, s.by), (Dim::Memory, 1500, 500));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("memory needs 1500B"), "{err}");
    // This machine has no GPU: GPU capacity is zero, and a GPU request is
    // refused at once instead of waiting forever.
    match pool.task().gpus(1).spawn(|_| ()) {
        Err(SubmitError::NeverFits(s)) => assert_eq!((s.dim, s.by), (Dim::Gpu, 1)),
        other => panic!("{other:?}"),
    }
    // A user dimension without capacity is untracked: no limit applies.
    assert!(pool.task().require(Dim::User0, 5).spawn(|_| ()).is_ok());
    // Zero capacity is a real limit and refused at once (no deadlock).
    let zero = Pool::builder()
        .workers(1)
        .capacity(mem(0))
        .headroom(Resources::NONE)
        .build()
        .unwrap();
    assert!(matches!(
        zero.task().memory("1").spawn(|_| ()),
        Err(SubmitError::NeverFits(_))
    ));
    assert!(zero.task().memory("0").spawn(|_| 5).unwrap().join() == Ok(5));
    // Bad text is a clear error.
    let e = pool.task().memory("12XB").spawn(|_| ()).unwrap_err();
    assert!(e.to_string().contains("unknown unit"), "{e}");
}

/// Invariant 1: the sum of reservations never exceeds capacity, measured by
/// the tasks themselves while running.
#[test]
fn deferred_tasks_run_when_they_fit_and_never_overcommit() {
    let pool = pool(4, 1000, Policy::Defer);
    let in_use = Arc::new(AtomicI64::new(0));
    let peak = Arc::new(AtomicI64::new(0));
    let mut handles = Vec::new();
    for i in 0..200u64 {
        let size = 100 + (i * 37) % 400;
        let (in_use, peak) = (in_use.clone(), peak.clone());
        handles.push(
            pool.task()
                .require(Dim::Memory, size)
                .spawn(move |_| {
                    let now = in_use.fetch_add(size as i64, Ordering::SeqCst) + size as i64;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::yield_now();
                    in_use.fetch_sub(size as i64, Ordering::SeqCst);
                    i
                })
                .unwrap(),
        );
    }
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join(), Ok(i as u64));
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 1000,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    let s = pool.snapshot();
    assert_eq!(
        s.reserved.amount(Dim::Memory),
        0,
        "every reservation released"
    );
    assert!(s.admission.deferred > 0, "the workload had to wait: {s:?}");
    assert_eq!(
        s.admission.accepted + s.admission.admitted_after_wait,
        200,
        "every task admitted exactly once"
    );
}

#[test]
fn reject_policy_reports_shortfall_and_retry_hint() {
    let pool = pool(2, 1000, Policy::Reject);
    let (tx, hold) = hold_memory(&pool, 800);
    match pool.task().require(Dim::Memory, 300).spawn(|_| ()) {
        Err(SubmitError::Busy { shortfall, .. }) => {
            assert_eq!((shortfall.dim, shortfall.by), (Dim::Memory, 100));
        }
        other => panic!("{other:?}"),
    }
    drop(tx);
    hold.join().unwrap();
    // After one completed task, the retry hint is known.
    let (tx, rx) = mpsc::channel::<()>();
    let hold = pool
        .task()
        .require(Dim::Memory, 800)
        .spawn(move |_| {
            let _ = rx.recv();
        })
        .unwrap();
    let err = loop {
        match pool.task().require(Dim::Memory, 300).spawn(|_| ()) {
            Err(e) => break e,
            Ok(h) => {
                // The big one had not been admitted yet; try again.
                h.join().unwrap();
            }
        }
    };
    assert!(
        matches!(
            err,
            SubmitError::Busy {
                retry_after: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    drop(tx);
    hold.join().unwrap();
}

#[test]
fn block_until_deadline_blocks_then_expires_or_admits() {
    let pool = blocking_pool(Duration::from_millis(50));
    let (tx, hold) = hold_memory(&pool, 1000);
    // Nothing frees within 50 ms: the submitter is refused after blocking.
    assert_eq!(
        pool.task()
            .require(Dim::Memory, 10)
            .spawn(|_| ())
            .map(|_| ()),
        Err(SubmitError::DeadlineExpired)
    );
    drop(tx);
    hold.join().unwrap();
    // Freed while waiting: admitted. The memory is released once the
    // submitter is counted as waiting, and the maximum wait is an hour, so
    // that only the release can end the wait however slowly the threads run
    // (with 50 ms and a release 5 ms later, a loaded machine refused it).
    let pool = Arc::new(blocking_pool(Duration::from_secs(3600)));
    let (tx, hold) = hold_memory(&pool, 1000);
    let (done_tx, done_rx) = mpsc::channel();
    let submitter = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let got = pool
                .task()
                .require(Dim::Memory, 10)
                .spawn(|_| 1)
                .map(|h| h.join());
            done_tx.send(got).unwrap();
        })
    };
    wait_for_waiters(&pool, 1);
    drop(tx);
    let got = done_rx
        .recv_timeout(SAFETY)
        .expect("the blocked submitter was not admitted after the release");
    submitter.join().unwrap();
    hold.join().unwrap();
    assert_eq!(got, Ok(Ok(1)));
}

#[test]
fn wait_queue_full_is_refused() {
    let pool = Pool::builder()
        .workers(1)
        .capacity(mem(100))
        .headroom(Resources::NONE)
        .max_waiting(2)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let hold = pool
        .task()
        .require(Dim::Memory, 100)
        .spawn(move |_| {
            let _ = rx.recv();
        })
        .unwrap();
    let a = pool.task().require(Dim::Memory, 50).spawn(|_| 1).unwrap();
    let b = pool.task().require(Dim::Memory, 50).spawn(|_| 2).unwrap();
    assert!(matches!(
        pool.task().require(Dim::Memory, 50).spawn(|_| 3),
        Err(SubmitError::QueueFull { .. })
    ));
    drop(tx);
    hold.join().unwrap();
    assert_eq!((a.join(), b.join()), (Ok(1), Ok(2)));
}

#[test]
fn cancelled_before_start_never_runs_and_running_sees_token() {
    let pool = pool(1, 1 << 30, Policy::Defer);
    let release = block_worker(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = ran.clone();
    let h = pool
        .submit(move || r2.store(true, Ordering::SeqCst))
        .unwrap();
    assert!(h.cancel(), "not started: the cancel prevents it");
    drop(release);
    assert_eq!(h.join(), Err(TaskError::Cancelled));
    // Let the worker pass the cancelled task.
    pool.submit(|| ()).unwrap().join().unwrap();
    assert!(!ran.load(Ordering::SeqCst), "a cancelled task never starts");

    // A running task sees the flag.
    let (started_tx, started_rx) = mpsc::channel();
    let h = pool
        .task()
        .spawn(move |ctx| {
            started_tx.send(()).unwrap();
            let t0 = Instant::now();
            while !ctx.is_cancelled() && t0.elapsed() < SAFETY {
                std::thread::yield_now();
            }
            respool::is_cancelled()
        })
        .unwrap();
    started_rx.recv_timeout(SAFETY).unwrap();
    assert!(!h.cancel(), "already running");
    assert_eq!(h.join(), Ok(true));
}

#[test]
fn cancelling_a_waiting_task_frees_its_place_at_once() {
    // Strict head-of-line admission (no lookahead) for this test.
    let pool = Pool::builder()
        .workers(2)
        .capacity(mem(1000))
        .headroom(Resources::NONE)
        .lookahead(1, 0)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let hold = pool
        .task()
        .require(Dim::Memory, 600)
        .spawn(move |_| {
            let _ = rx.recv();
        })
        .unwrap();
    let big = pool
        .task()
        .require(Dim::Memory, 900)
        .spawn(|_| "big")
        .unwrap();
    let small = pool
        .task()
        .require(Dim::Memory, 100)
        .spawn(|_| "small")
        .unwrap();
    // `small` fits but waits behind `big` (no overtaking): both are counted
    // as waiting. Only a release, a capacity change or a cancellation admits
    // a waiter, and none comes before `big.cancel()` below...
    let s = pool.snapshot();
    assert_eq!(s.waiting, 2, "big and small wait: {s}");
    assert!(!small.is_finished());
    // ...until `big` is cancelled.
    assert!(big.cancel());
    assert_eq!(small.join(), Ok("small"));
    assert_eq!(big.join(), Err(TaskError::Cancelled));
    drop(tx);
    hold.join().unwrap();
}

#[test]
fn lookahead_lets_small_tasks_pass_a_big_head_a_bounded_number_of_times() {
    // Window of 4, at most 3 overtakings of one head.
    let pool = Pool::builder()
        .workers(4)
        .capacity(mem(1000))
        .headroom(Resources::NONE)
        .lookahead(4, 3)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    // 600 held: the big one (900) waits; small ones (100) fit.
    let hold = pool
        .task()
        .require(Dim::Memory, 600)
        .spawn(move |_| {
            let _ = rx.lock().unwrap().recv();
        })
        .unwrap();
    let big = pool
        .task()
        .require(Dim::Memory, 900)
        .spawn(|_| "big")
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut smalls = Vec::new();
    for i in 0..6 {
        let order = order.clone();
        smalls.push(
            pool.task()
                .require(Dim::Memory, 100)
                .spawn(move |_| order.lock().unwrap().push(i))
                .unwrap(),
        );
    }
    // Three small ones pass the big head, then only the head may go. A
    // handle resolves after its task's release and the admission round that
    // follows it: once three small ones have finished, nothing can change
    // until the holder releases, and the others must still be waiting.
    wait_until("three small tasks to finish", || {
        smalls.iter().filter(|s| s.is_finished()).count() >= 3
    });
    assert_eq!(order.lock().unwrap().len(), 3, "exactly M = 3 overtakings");
    assert_eq!(
        pool.snapshot().waiting,
        4,
        "the head and three small ones wait"
    );
    drop(tx);
    hold.join().unwrap();
    assert_eq!(big.join(), Ok("big"));
    for s in smalls {
        s.join().unwrap();
    }
    assert_eq!(order.lock().unwrap().len(), 6);
}

/// Waiters that need the same start in the order they were submitted, and
/// each release admits the next (issue 21: a dispatch round takes the best
/// waiter alone when it fits, and ends without searching the queue when the
/// least any waiter needs does not fit).
#[test]
fn equal_waiters_start_in_submission_order() {
    let pool = pool(2, 100, Policy::Defer);
    let (release, held) = hold_memory(&pool, 100);
    let order = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let order = order.clone();
            pool.task()
                .memory("60B")
                .spawn(move |_| order.lock().unwrap().push(i))
                .unwrap()
        })
        .collect();
    assert_eq!(pool.snapshot().waiting, 50);
    release.send(()).unwrap();
    held.join().unwrap();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..50).collect::<Vec<_>>());
}

#[test]
fn tasks_are_placed_on_numa_domains_and_gpus() {
    use respool::DomainSpec;
    let pool = Pool::builder()
        .workers(4)
        .capacity(
            Resources::new()
                .with(Dim::Memory, 2000)
                .unwrap()
                .with(Dim::Gpu, 2)
                .unwrap()
                .with(Dim::GpuMemory, 300)
                .unwrap(),
        )
        .headroom(Resources::NONE)
        .domains(vec![
            DomainSpec::numa("node0", vec![], 1000),
            DomainSpec::numa("node1", vec![], 1000),
            DomainSpec::gpu("gpu0", 0, 100),
            DomainSpec::gpu("gpu1", 1, 200),
        ])
        .pin_workers(false)
        .build()
        .unwrap();
    // Never fits a node, although it fits the pool's total.
    match pool.task().require(Dim::Memory, 1500).spawn(|_| ()) {
        Err(SubmitError::NeverFits(s)) => assert_eq!((s.dim, s.by), (Dim::Memory, 500)),
        other => panic!("{other:?}"),
    }
    // GPU tasks learn their device; 150 of GPU memory only fits gpu1.
    let g = pool
        .task()
        .gpus(1)
        .gpu_memory("150")
        .spawn(|ctx| ctx.gpu())
        .unwrap();
    assert_eq!(g.join(), Ok(Some(1)));
    // Two tasks of 700 land on different nodes and run at once.
    let barrier = Arc::new(Barrier::new(2));
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let b = barrier.clone();
            pool.task()
                .require(Dim::Memory, 700)
                .spawn(move |_| {
                    b.wait();
                })
                .unwrap()
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let snap = pool.snapshot();
    assert_eq!(snap.domains.len(), 4);
    assert!(
        snap.domains.iter().all(|(used, _)| used.is_zero()),
        "{:?}",
        snap.domains
    );
    assert!(snap.reserved.is_zero());
}

#[test]
fn many_concurrent_submitters_every_task_runs_exactly_once() {
    const SUBMITTERS: usize = 4;
    const PER: usize = 2_000;
    let pool = Arc::new(pool(3, 10_000, Policy::Defer));
    let counts: Arc<Vec<AtomicU64>> =
        Arc::new((0..SUBMITTERS * PER).map(|_| AtomicU64::new(0)).collect());
    let in_use = Arc::new(AtomicI64::new(0));
    let barrier = Arc::new(Barrier::new(SUBMITTERS));
    let threads: Vec<_> = (0..SUBMITTERS)
        .map(|s| {
            let (pool, counts, in_use, barrier) = (
                pool.clone(),
                counts.clone(),
                in_use.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let mut handles = Vec::new();
                for i in 0..PER {
                    let slot = s * PER + i;
                    let counts = counts.clone();
                    let in_use = in_use.clone();
                    let size = 1 + (slot as u64 * 7919) % 3000;
                    match i % 3 {
                        0 => pool
                            .execute(move || {
                                counts[slot].fetch_add(1, Ordering::SeqCst);
                            })
                            .unwrap(),
                        1 => handles.push(
                            pool.submit(move || {
                                counts[slot].fetch_add(1, Ordering::SeqCst);
                            })
                            .unwrap(),
                        ),
                        _ => handles.push(
                            pool.task()
                                .require(Dim::Memory, size)
                                .spawn(move |_| {
                                    let now = in_use.fetch_add(size as i64, Ordering::SeqCst)
                                        + size as i64;
                                    assert!(now <= 10_000, "over-committed: {now}");
                                    counts[slot].fetch_add(1, Ordering::SeqCst);
                                    in_use.fetch_sub(size as i64, Ordering::SeqCst);
                                })
                                .unwrap(),
                        ),
                    }
                }
                for h in handles {
                    h.join().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    pool.shutdown();
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(
            c.load(Ordering::SeqCst),
            1,
            "task {i} ran {} times",
            c.load(Ordering::SeqCst)
        );
    }
    assert!(pool.snapshot().reserved.is_zero());
}

#[test]
fn graceful_shutdown_drains_a_full_queue_including_waiting_tasks() {
    let pool = pool(2, 1000, Policy::Defer);
    let n = Arc::new(AtomicUsize::new(0));
    let release = block_worker(&pool);
    let mut handles = Vec::new();
    for i in 0..500 {
        let n = n.clone();
        if i % 2 == 0 {
            pool.execute(move || {
                n.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        } else {
            handles.push(
                pool.task()
                    .require(Dim::Memory, 600)
                    .spawn(move |_| {
                        n.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap(),
            );
        }
    }
    let probes = Arc::new(AtomicUsize::new(0));
    let mut accepted_probes = 0;
    let closer = {
        let pool = Arc::new(pool);
        let p2 = pool.clone();
        let t = std::thread::spawn(move || p2.shutdown());
        // Shutting down: new work from outside is refused. Submit until the
        // closer has begun (a probe accepted before that is a task like the
        // others, and must run too); the first refusal must say `ShutDown`.
        let t0 = Instant::now();
        loop {
            let p = probes.clone();
            match pool.execute(move || {
                p.fetch_add(1, Ordering::SeqCst);
            }) {
                Ok(()) => accepted_probes += 1,
                Err(e) => {
                    assert_eq!(e, SubmitError::ShutDown);
                    break;
                }
            }
            assert!(t0.elapsed() < SAFETY, "never refused while shutting down");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(release);
        t.join().unwrap();
        pool
    };
    assert_eq!(n.load(Ordering::SeqCst), 500, "every accepted task ran");
    assert_eq!(probes.load(Ordering::SeqCst), accepted_probes);
    for h in handles {
        assert_eq!(h.join(), Ok(()));
    }
    drop(closer);
}

#[test]
fn shutdown_now_hands_back_unstarted_tasks() {
    let pool = pool(1, 1000, Policy::Defer);
    let release = block_worker(&pool);
    let ran = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..10 {
        let ran = ran.clone();
        handles.push(
            pool.submit(move || ran.fetch_add(1, Ordering::SeqCst))
                .unwrap(),
        );
    }
    let waiting = pool
        .task()
        .require(Dim::Memory, 1000)
        .class("big")
        .spawn(|_| 1)
        .unwrap();
    let s = pool.snapshot();
    assert_eq!(s.queued + s.waiting, 11, "none has started: {s}");
    let pool = Arc::new(pool);
    let closer = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || pool.shutdown_now())
    };
    // `shutdown_now` lets the running blocker finish. Release it only once
    // the unstarted tasks were taken out (the run queue and the wait queue
    // are empty: with the only worker blocked, nothing else empties them),
    // which happens after the workers were told to take no more.
    wait_until("shutdown_now to take the unstarted tasks", || {
        let s = pool.snapshot();
        (s.queued, s.waiting) == (0, 0)
    });
    drop(release);
    let mut back = closer.join().unwrap();
    assert_eq!(back.len(), 11, "10 queued + 1 waiting");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(back.iter().any(|u| u.class() == Some("big")));
    // Run one by hand, drop the rest: every handle resolves.
    back.remove(0).run();
    drop(back);
    let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == Err(TaskError::ShutDown))
            .count(),
        9
    );
    assert_eq!(waiting.join(), Err(TaskError::ShutDown));
    assert!(pool.snapshot().reserved.is_zero());
    assert_eq!(pool.execute(|| ()), Err(SubmitError::ShutDown));
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn no_threads_leak_and_idle_workers_sleep() {
    // Serialise with other tests that start threads: compare against a
    // baseline taken while this test's pool is the only one it creates.
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap();
    for _ in 0..3 {
        let pool = Pool::builder()
            .workers(4)
            .thread_name("leakcheck")
            .build()
            .unwrap();
        pool.task()
            .timeout(Duration::from_secs(5))
            .spawn(|_| ())
            .unwrap()
            .join()
            .unwrap();
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("comm")).ok())
                .filter(|n| n.starts_with("leakcheck"))
                .collect()
        };
        // Threads name themselves when they start, and leave /proc a moment
        // after they are joined: poll (the bound is a safety net).
        let settle = |want: usize| {
            let t0 = Instant::now();
            while names().len() != want {
                assert!(
                    t0.elapsed() < SAFETY,
                    "want {want} threads, have {:?}",
                    names()
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        settle(6); // 4 workers, the timer and the monitor (capacity was detected)
        // Idle workers park: every worker thread reaches state S (sleeping).
        let t0 = Instant::now();
        loop {
            let states: Vec<char> = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|e| {
                    let p = e.unwrap().path();
                    let comm = std::fs::read_to_string(p.join("comm")).ok()?;
                    if !comm.starts_with("leakcheck") {
                        return None;
                    }
                    let stat = std::fs::read_to_string(p.join("stat")).ok()?;
                    stat.rsplit(')').next()?.trim().chars().next()
                })
                .collect();
            if states.iter().all(|&c| c == 'S') {
                break;
            }
            assert!(
                t0.elapsed() < SAFETY,
                "workers never went to sleep: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(pool);
        settle(0);
    }
    let _ = thread_count();
}

#[test]
fn scope_borrows_and_waits_for_every_task() {
    let pool = pool(3, 1 << 30, Policy::Defer);
    let mut data = vec![0u64; 64];
    let total = AtomicU64::new(0);
    pool.scope(|s| {
        for (i, d) in data.iter_mut().enumerate() {
            let total = &total;
            s.spawn(move || {
                *d = i as u64 * 2;
                total.fetch_add(i as u64, Ordering::Relaxed);
            });
        }
        s.spawn_with(mem(1 << 20), || {
            total.fetch_add(1000, Ordering::Relaxed);
        })
        .unwrap();
        assert!(s.spawn_with(mem(1 << 40), || unreachable!()).is_err());
    });
    assert_eq!(data[63], 126);
    assert_eq!(total.load(Ordering::Relaxed), (0..64).sum::<u64>() + 1000);
    // A panic in a scoped task surfaces after all tasks ran.
    let done = AtomicUsize::new(0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.scope(|s| {
            s.spawn(|| panic!("scoped panic"));
            for _ in 0..10 {
                s.spawn(|| {
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        })
    }));
    assert!(r.is_err());
    assert_eq!(done.load(Ordering::SeqCst), 10);
    // Nested scopes on the pool's own workers do not deadlock.
    let nested = AtomicUsize::new(0);
    pool.scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                pool.scope(|inner| {
                    for _ in 0..6 {
                        inner.spawn(|| {
                            nested.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                });
            });
        }
    });
    assert_eq!(nested.load(Ordering::SeqCst), 36);
}

#[test]
fn priority_and_deadline_order_ready_tasks() {
    let pool = pool(1, 1 << 30, Policy::Defer);
    let release = block_worker(&pool);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut hs = Vec::new();
    let far = Instant::now() + Duration::from_secs(3600);
    for (name, prio, deadline) in [
        ("low", 1, None),
        ("high", 9, None),
        ("mid-late", 5, Some(far + Duration::from_secs(10))),
        ("mid-early", 5, Some(far)),
        ("high2", 9, None),
    ] {
        let order = order.clone();
        let mut b = pool.task().priority(prio);
        if let Some(d) = deadline {
            b = b.deadline(d);
        }
        hs.push(b.spawn(move |_| order.lock().unwrap().push(name)).unwrap());
    }
    drop(release);
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        ["high", "high2", "mid-early", "mid-late", "low"]
    );
}

#[test]
fn timeouts_deadlines_and_retries() {
    let pool = pool(2, 1 << 30, Policy::Defer);
    // Timeout: the handle resolves, the task sees its flag.
    let saw = Arc::new(AtomicBool::new(false));
    let s2 = saw.clone();
    let h = pool
        .task()
        .timeout(Duration::from_millis(20))
        .spawn(move |ctx| s2.store(until_cancelled(ctx), Ordering::SeqCst))
        .unwrap();
    assert_eq!(h.join(), Err(TaskError::TimedOut));
    // A deadline already past is missed, not run.
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = ran.clone();
    let h = pool
        .task()
        .deadline(Instant::now())
        .spawn(move |_| r2.store(true, Ordering::SeqCst))
        .unwrap();
    assert_eq!(h.join(), Err(TaskError::DeadlineMissed));
    assert!(!ran.load(Ordering::SeqCst));
    // Retries: two failures, then success.
    let attempts = Arc::new(AtomicU64::new(0));
    let a2 = attempts.clone();
    let h = pool
        .task()
        .retries(3, Backoff::Fixed(Duration::from_millis(1)))
        .spawn_retrying(move |ctx| {
            a2.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt() < 2 {
                Err(std::io::Error::other("flaky"))
            } else {
                Ok(ctx.attempt())
            }
        })
        .unwrap();
    assert_eq!(h.join(), Ok(2));
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    // Retries exhausted (panics count as failures too).
    let h = pool
        .task()
        .retries(2, Backoff::Linear(Duration::from_millis(1)))
        .spawn_retrying(|ctx| -> Result<(), std::io::Error> {
            if ctx.attempt() == 1 {
                panic!("second attempt panics");
            }
            Err(std::io::Error::other("always"))
        })
        .unwrap();
    match h.join() {
        Err(TaskError::Failed { attempts, error }) => {
            assert_eq!(attempts, 3);
            assert_eq!(error.to_string(), "always");
        }
        other => panic!("{other:?}"),
    }
    assert!(saw.load(Ordering::SeqCst) || pool.snapshot().timed_out == 1);
}

#[test]
fn capacity_cut_refuses_waiters_that_can_no_longer_fit() {
    let pool = pool(2, 1000, Policy::Defer);
    let (tx, rx) = mpsc::channel::<()>();
    let hold = pool
        .task()
        .require(Dim::Memory, 1000)
        .spawn(move |_| {
            let _ = rx.recv();
        })
        .unwrap();
    let waiter = pool.task().require(Dim::Memory, 800).spawn(|_| ()).unwrap();
    let small = pool
        .task()
        .require(Dim::Memory, 100)
        .spawn(|_| "ok")
        .unwrap();
    pool.set_capacity(&mem(500)).unwrap();
    match waiter.join() {
        Err(TaskError::Rejected(SubmitError::NeverFits(s))) => assert_eq!(s.by, 300),
        other => panic!("{other:?}"),
    }
    drop(tx);
    hold.join().unwrap();
    assert_eq!(small.join(), Ok("ok"));
    // External usage lowers effective capacity.
    pool.set_external_usage(&mem(450)).unwrap();
    assert_eq!(pool.snapshot().effective_capacity.amount(Dim::Memory), 50);
    pool.set_external_usage(&mem(0)).unwrap();
}

#[test]
fn critical_reserve_is_only_for_critical_tasks() {
    let pool = Pool::builder()
        .workers(2)
        .capacity(mem(1000))
        .headroom(Resources::NONE)
        .critical_reserve(mem(300))
        .admission(Policy::Reject)
        .build()
        .unwrap();
    assert!(matches!(
        pool.task().require(Dim::Memory, 701).spawn(|_| ()),
        Err(SubmitError::NeverFits(_))
    ));
    assert_eq!(
        pool.task()
            .require(Dim::Memory, 1000)
            .critical()
            .spawn(|_| 1)
            .unwrap()
            .join(),
        Ok(1)
    );
}

#[test]
fn builder_refuses_bad_configurations_with_clear_errors() {
    let cases: Vec<(respool::Builder, &str)> = vec![
        (Pool::builder().workers(0), "at least one worker"),
        (Pool::builder().queue_capacity(0), "at least one slot"),
        (Pool::builder().memory("lots"), "invalid memory amount"),
        (
            Pool::builder().capacity(mem(10)).headroom(mem(20)),
            "headroom (20) is larger than the memory capacity (10)",
        ),
        (
            Pool::builder().headroom(Resources::new().with(Dim::User0, 1).unwrap()),
            "has no capacity",
        ),
        (
            Pool::builder()
                .capacity(mem(10))
                .headroom(Resources::NONE)
                .critical_reserve(mem(10)),
            "leaves nothing",
        ),
        (
            Pool::builder().user_capacity(9, 1),
            "user dimension 9 does not exist",
        ),
    ];
    for (b, want) in cases {
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
}

#[test]
fn dropping_the_pool_inside_its_own_task_does_not_deadlock() {
    let pool = Arc::new(pool(2, 1 << 30, Policy::Defer));
    let (tx, rx) = mpsc::channel();
    let p2 = pool.clone();
    pool.execute(move || {
        // The last handle is dropped on a worker.
        drop(p2);
        tx.send(()).unwrap();
    })
    .unwrap();
    drop(pool);
    rx.recv_timeout(SAFETY).unwrap();
}

#[test]
fn batched_releases_never_hold_back_a_waiting_task() {
    // Tasks without a handle give their reservations back in batches; a
    // task that then needs everything must still be admitted.
    let pool = pool(3, 100, Policy::Defer);
    let done = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    for _ in 0..20 {
        let done = done.clone();
        pool.task()
            .require(Dim::Memory, 50)
            .execute(move |_| {
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
    }
    // Keep two workers busy so they do not idle (idling gives batches back).
    for _ in 0..2 {
        let rx = release_rx.clone();
        pool.execute(move || {
            let _ = rx.lock().unwrap().recv();
        })
        .unwrap();
    }
    let t0 = Instant::now();
    while done.load(Ordering::SeqCst) < 20 {
        assert!(t0.elapsed() < SAFETY);
        std::thread::yield_now();
    }
    let big = pool
        .task()
        .require(Dim::Memory, 100)
        .spawn(|_| "all of it")
        .unwrap();
    assert_eq!(big.join(), Ok("all of it"));
    drop(release_tx);
    pool.shutdown();
    assert!(pool.snapshot().reserved.is_zero(), "every batch given back");
}

#[test]
fn a_canceller_works_from_another_thread_while_the_handle_is_joined() {
    let pool = pool(1, 1 << 30, Policy::Defer);
    let release = block_worker(&pool);
    let h = pool.submit(|| 1).unwrap();
    let c = h.canceller();
    let t = std::thread::spawn(move || c.cancel());
    assert!(t.join().unwrap(), "not started: the cancel prevented it");
    assert_eq!(h.join(), Err(TaskError::Cancelled));
    drop(release);
    // A timed wait on one thread, then a join on another, completes.
    let release = block_worker(&pool);
    let h = pool.submit(|| 2).unwrap();
    let h = h.join_timeout(Duration::from_millis(5)).unwrap_err();
    let joiner = std::thread::Builder::new()
        .name("late-joiner".into())
        .spawn(move || h.join())
        .unwrap();
    // The task completes while the joiner is blocked in `join`.
    wait_until_asleep("late-joiner");
    drop(release);
    assert_eq!(joiner.join().unwrap(), Ok(2));
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Pool>();
    send_sync::<respool::PoolSnapshot>();
    send_sync::<SubmitError>();
    send_sync::<TaskError>();
    send_sync::<respool::BuildError>();
    send::<respool::JoinHandle<String>>();
    send::<respool::Unstarted>();
    send_sync::<respool::Canceller>();
    send_sync::<respool::Resources>();
    // Profile stores are shared with the pool's workers (`ProfileStore`
    // requires `Send + Sync`; the concrete types must be usable as such).
    send_sync::<respool::store::FileStore>();
    send_sync::<respool::store::MemoryStore>();
    send_sync::<respool::store::Profiles>();
    send_sync::<respool::store::StoreError>();
    // A scope is shared by reference with the tasks spawned in it.
    send_sync::<respool::Scope<'static, 'static>>();
    // A batch is shared between threads (one runs it, others add jobs or
    // stop it); its results, metrics and errors cross back to the caller.
    send_sync::<respool::batch::Batch<'static, u64, String>>();
    send_sync::<respool::batch::StopHandle>();
    send_sync::<respool::batch::BatchConfig>();
    send_sync::<respool::batch::BatchError>();
    send_sync::<respool::batch::BatchMetrics>();
    send_sync::<respool::batch::BatchReport<String>>();
    send_sync::<respool::batch::Job<u64>>();
    send_sync::<respool::batch::JobResult<String>>();
    send_sync::<respool::batch::JobError>();
    send_sync::<respool::batch::JobContext>();
}

/// A plain task that a scope runs inline inside a cancelled task does not see
/// that task's cancellation (plain tasks are never cancelled), and the
/// surrounding task sees its own again afterwards.
#[test]
fn a_task_run_inline_does_not_see_the_surrounding_task_s_cancellation() {
    use std::sync::atomic::{AtomicU8, Ordering};
    let pool = std::sync::Arc::new(
        Pool::builder()
            .workers(1)
            .capacity(mem(1 << 30))
            .headroom(Resources::NONE)
            .build()
            .expect("pool"),
    );
    // Bits: 1 = outer saw its cancellation before, 2 = the inline task saw
    // one, 4 = outer saw it after, 8 = the inline task ran on the outer's
    // worker thread.
    let seen = std::sync::Arc::new(AtomicU8::new(0));
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let outer = {
        let (p, seen) = (pool.clone(), seen.clone());
        pool.task()
            .requirements(mem(1 << 20))
            .spawn(move |_| {
                started_tx.send(()).expect("main waits");
                go_rx.recv().expect("main signals");
                let me = std::thread::current().id();
                if respool::is_cancelled() {
                    seen.fetch_or(1, Ordering::SeqCst);
                }
                p.scope(|s| {
                    s.spawn(|| {
                        if respool::is_cancelled() {
                            seen.fetch_or(2, Ordering::SeqCst);
                        }
                        if std::thread::current().id() == me {
                            seen.fetch_or(8, Ordering::SeqCst);
                        }
                    });
                });
                if respool::is_cancelled() {
                    seen.fetch_or(4, Ordering::SeqCst);
                }
            })
            .expect("admitted")
    };
    started_rx
        .recv_timeout(SAFETY)
        .expect("the outer task started");
    // Too late to prevent the start (returns false): it raises the flag.
    assert!(!outer.cancel(), "the outer task had started");
    go_tx.send(()).expect("outer waits");
    let _ = outer.join_timeout(SAFETY).expect("the outer task finished");
    let bits = seen.load(Ordering::SeqCst);
    assert_eq!(bits & 8, 8, "one worker: the scope ran its task inline");
    assert_eq!(
        bits & 7,
        1 | 4,
        "outer sees its cancellation before and after; the inline plain task does not"
    );
}

/// Records when the job it sits in is dropped; the drop is slow, so a
/// submitter that returned before another thread finished dropping its job
/// sees `dropped == false`.
struct SlowDropGuard {
    dropped: Arc<AtomicBool>,
}

impl Drop for SlowDropGuard {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(30));
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// Two workers, 1000 bytes of memory, `BlockUntilDeadline` with `max_wait`.
fn blocking_pool(max_wait: Duration) -> Pool {
    pool(
        2,
        1000,
        Policy::BlockUntilDeadline {
            max_wait_ns: u64::try_from(max_wait.as_nanos()).unwrap(),
        },
    )
}

/// Waits until at least `n` tasks wait for resources.
fn wait_for_waiters(pool: &Pool, n: usize) {
    let t0 = Instant::now();
    while pool.snapshot().waiting < n {
        assert!(t0.elapsed() < SAFETY, "fewer than {n} tasks ever waited");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs a task that holds `amount` bytes of memory until the returned
/// sender is dropped or sent to; returns once it runs.
fn hold_memory(pool: &Pool, amount: u64) -> (mpsc::Sender<()>, respool::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let hold = pool
        .task()
        .require(Dim::Memory, amount)
        .spawn(move |_| {
            started_tx.send(()).unwrap();
            let _ = rx.recv();
        })
        .unwrap();
    started_rx.recv_timeout(SAFETY).unwrap();
    (tx, hold)
}

/// A [`blocking_pool`] whose memory is all held by a running task; the
/// sender releases the holder.
fn blocking_pool_held(max_wait: Duration) -> (Pool, mpsc::Sender<()>, respool::JoinHandle<()>) {
    let pool = blocking_pool(max_wait);
    let (tx, hold) = hold_memory(&pool, 1000);
    (pool, tx, hold)
}

/// Submits, on a thread of its own (so that a hang fails the test rather
/// than hanging it), a task that needs 10 bytes of memory (with `deadline`,
/// if any); runs `meanwhile` on this thread; and returns the submission's
/// outcome once it comes, after checking that a refused job was dropped
/// before `execute` returned and never ran.
fn blocked_submission(
    pool: &Arc<Pool>,
    deadline: Option<Instant>,
    meanwhile: impl FnOnce(),
) -> Result<(), SubmitError> {
    let dropped = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicBool::new(false));
    let guard = SlowDropGuard {
        dropped: Arc::clone(&dropped),
    };
    let (done_tx, done_rx) = mpsc::channel();
    let submitter = {
        let pool = Arc::clone(pool);
        let ran = Arc::clone(&ran);
        std::thread::spawn(move || {
            let mut b = pool.task().require(Dim::Memory, 10);
            if let Some(d) = deadline {
                b = b.deadline(d);
            }
            let got = b.execute(move |_| {
                let _g = &guard;
                ran.store(true, Ordering::SeqCst);
            });
            done_tx.send(got).unwrap();
        })
    };
    meanwhile();
    let got = done_rx
        .recv_timeout(SAFETY)
        .expect("the blocked submitter was never told the outcome");
    submitter.join().unwrap();
    if got.is_err() {
        assert!(
            dropped.load(Ordering::SeqCst),
            "returned before the job was dropped"
        );
        assert!(!ran.load(Ordering::SeqCst));
    }
    got
}

/// A task on the pool's only worker submits under `BlockUntilDeadline` a
/// task that does not fit because of one it submitted just before, which
/// was admitted but has no worker to run on. Blocked, the worker runs that
/// queued task itself: its memory comes back and the blocked submission is
/// admitted, long before the hour of maximum wait.
#[test]
fn a_worker_blocked_in_a_submission_runs_queued_tasks_meanwhile() {
    let pool = Arc::new(pool(
        1,
        1000,
        Policy::BlockUntilDeadline {
            max_wait_ns: 3_600_000_000_000,
        },
    ));
    let ran = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    {
        let (p, ran) = (Arc::clone(&pool), Arc::clone(&ran));
        pool.task()
            .require(Dim::Memory, 400)
            .execute(move |_| {
                let count = |ran: &Arc<AtomicUsize>| {
                    let ran = Arc::clone(ran);
                    move |_: &TaskContext| {
                        ran.fetch_add(1, Ordering::SeqCst);
                    }
                };
                // Fits (800 of 1000 reserved), and waits for this worker.
                let first = p.task().require(Dim::Memory, 400).execute(count(&ran));
                // 1200 of 1000: blocks until `first` has run.
                let second = p.task().require(Dim::Memory, 400).execute(count(&ran));
                let _ = tx.send((first, second, ran.load(Ordering::SeqCst)));
            })
            .unwrap();
    }
    let Ok((first, second, ran_before)) = rx.recv_timeout(SAFETY) else {
        // Unblock the worker (it is refused) before failing.
        let _ = pool.shutdown_now();
        panic!("the blocked submission was never admitted");
    };
    assert_eq!(first, Ok(()));
    assert_eq!(second, Ok(()));
    assert_eq!(ran_before, 1, "the queued task ran while the worker waited");
    wait_until("both inner tasks to run", || {
        ran.load(Ordering::SeqCst) == 2
    });
    wait_until("every reservation back", || {
        pool.snapshot().reserved.is_zero()
    });
}

#[test]
fn a_blocked_submitter_refused_by_the_timer_returns_after_its_job_is_dropped() {
    // The admission deadline is driven by the pool's timer thread, which
    // refuses the waiter; the job must be dropped (a C task's `destroy`
    // called) before `execute` returns its error, not later on the timer.
    let (pool, tx, hold) = blocking_pool_held(Duration::from_millis(10));
    let pool = Arc::new(pool);
    for _ in 0..3 {
        let got = blocked_submission(&pool, None, || ());
        assert_eq!(got, Err(SubmitError::DeadlineExpired));
    }
    drop(tx);
    hold.join().unwrap();
}

#[test]
fn a_blocked_submitter_whose_task_deadline_passes_first_is_refused() {
    // The task's own deadline (20 ms) comes before the admission deadline
    // (an hour): the waiter is dropped at its task deadline, and the blocked
    // submitter must hear of it rather than wait for a resolution that never
    // comes.
    let (pool, tx, hold) = blocking_pool_held(Duration::from_secs(3600));
    let pool = Arc::new(pool);
    let deadline = Instant::now() + Duration::from_millis(20);
    let got = blocked_submission(&pool, Some(deadline), || ());
    assert_eq!(got, Err(SubmitError::DeadlineExpired));
    drop(tx);
    hold.join().unwrap();
}

#[test]
fn shutdown_now_refuses_a_blocked_submitter_without_handing_its_task_back() {
    // A blocked submitter has not been told its task was accepted: the
    // task is refused to it (`ShutDown`, dropped before it returns, never
    // run), not handed to the `shutdown_now` caller, who could run a task
    // whose submission failed. The memory is all used outside the pool, so
    // nothing runs that `shutdown_now` would wait for.
    let pool = Arc::new(blocking_pool(Duration::from_secs(3600)));
    pool.set_external_usage(&mem(1000)).unwrap();
    let got = blocked_submission(&pool, None, || {
        wait_for_waiters(&pool, 1);
        let back = pool.shutdown_now();
        assert!(back.is_empty(), "{} tasks handed back", back.len());
    });
    assert_eq!(got, Err(SubmitError::ShutDown));
}

#[test]
fn a_retry_waiting_for_resources_never_blocks_the_timer() {
    // Under `BlockUntilDeadline`, the next attempt of a retrying task is
    // submitted by the pool's timer thread. It used to block that thread for
    // the whole maximum wait, and with it every other timer (here: another
    // task's timeout). It now waits like a deferred task.
    let pool = blocking_pool(Duration::from_secs(3600));
    let (started_tx, started_rx) = mpsc::channel();
    let (fail_tx, fail_rx) = mpsc::channel::<()>();
    let retrying = pool
        .task()
        .require(Dim::Memory, 500)
        .retries(1, Backoff::Fixed(Duration::from_millis(1)))
        .spawn_retrying(move |ctx| {
            if ctx.attempt() == 0 {
                started_tx.send(()).unwrap();
                let _ = fail_rx.recv();
                Err(std::io::Error::other("the first attempt fails"))
            } else {
                Ok(ctx.attempt())
            }
        })
        .unwrap();
    started_rx.recv_timeout(SAFETY).unwrap();
    // All the memory is now used outside the pool: the retry must wait.
    pool.set_external_usage(&mem(1000)).unwrap();
    drop(fail_tx);
    wait_for_waiters(&pool, 1);
    // Another task's timeout (a timer entry) still fires.
    let (saw_tx, saw_rx) = mpsc::channel();
    let timed = pool
        .task()
        .timeout(Duration::from_millis(20))
        .spawn(move |ctx| saw_tx.send(until_cancelled(ctx)).unwrap())
        .unwrap();
    assert!(
        saw_rx.recv_timeout(SAFETY * 2).unwrap(),
        "the timeout never fired: the timer thread was blocked"
    );
    assert_eq!(timed.join(), Err(TaskError::TimedOut));
    // Memory back: the waiting retry is admitted and succeeds.
    pool.set_external_usage(&mem(0)).unwrap();
    assert_eq!(retrying.join(), Ok(1));
}

#[test]
fn graceful_shutdown_runs_a_retry_that_was_waiting_for_its_backoff() {
    // A retrying task is accepted once; its later attempts are part of it
    // (the pool's documentation: shutdown runs every accepted task, also one
    // waiting for a retry). The retry used to be refused with `ShutDown`.
    // The first attempt fails only once shutdown has begun, so the retry
    // waits out its backoff and is resubmitted while the pool shuts down
    // (it used to fail at once: whether shutdown began before the 30 ms
    // backoff ended depended on how fast this thread ran).
    let pool = Arc::new(Pool::builder().workers(1).build().unwrap());
    let (started_tx, started_rx) = mpsc::channel();
    let (fail_tx, fail_rx) = mpsc::channel::<()>();
    let h = pool
        .task()
        .retries(1, Backoff::Fixed(Duration::from_millis(30)))
        .spawn_retrying(move |ctx| {
            if ctx.attempt() == 0 {
                started_tx.send(()).unwrap();
                let _ = fail_rx.recv_timeout(SAFETY);
                Err(std::io::Error::other("the first attempt fails"))
            } else {
                Ok(ctx.attempt())
            }
        })
        .unwrap();
    started_rx.recv_timeout(SAFETY).unwrap();
    let closer = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || pool.shutdown())
    };
    // Shutdown has begun once work from outside is refused (probes accepted
    // before that run like any task).
    wait_until("shutdown to begin", || pool.execute(|| ()).is_err());
    assert_eq!(pool.execute(|| ()), Err(SubmitError::ShutDown));
    drop(fail_tx);
    closer.join().unwrap();
    assert_eq!(h.join(), Ok(1));
}

#[test]
fn graceful_shutdown_is_not_held_up_by_the_deadlines_of_admitted_waiters() {
    // A waiter with a deadline (its own, or an admission deadline) arms a
    // timer wake-up. Once the waiter is admitted and has run, that wake-up
    // has no purpose; it used to count as pending work, so `shutdown` (and
    // drop) waited for it: here, an hour.
    let (pool, tx, hold) = blocking_pool_held(Duration::from_secs(3600));
    let pool = Arc::new(pool);
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut b = pool.task().require(Dim::Memory, 10);
                if i == 1 {
                    b = b.deadline(Instant::now() + Duration::from_secs(3600));
                }
                b.spawn(|_| ()).map(|h| h.join())
            })
        })
        .collect();
    wait_for_waiters(&pool, 2);
    drop(tx);
    hold.join().unwrap();
    for w in waiters {
        assert_eq!(w.join().unwrap(), Ok(Ok(())));
    }
    let (done_tx, done_rx) = mpsc::channel();
    let closer = std::thread::spawn(move || {
        pool.shutdown();
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(SAFETY)
        .expect("shutdown waited for the deadline of a waiter that had already run");
    closer.join().unwrap();
}

#[test]
fn a_single_domain_reports_what_the_tracker_holds() {
    let pool = Pool::builder()
        .workers(1)
        .capacity(Resources::NONE.with_saturating(Dim::Memory, 1000))
        .headroom(Resources::NONE)
        .build()
        .unwrap();
    let (started, on_start) = mpsc::channel();
    let (release, gate) = mpsc::channel::<()>();
    let held = pool
        .task()
        .memory("600B")
        .spawn(move |_| {
            started.send(()).unwrap();
            let _ = gate.recv();
        })
        .unwrap();
    on_start.recv().unwrap();
    let snap = pool.snapshot();
    assert_eq!(snap.domains.len(), 1, "{:?}", snap.domains);
    let (used, cap) = snap.domains[0];
    assert_eq!(used.get(Dim::Memory), Some(600), "{used} of {cap}");
    assert_eq!(used.get(Dim::Memory), snap.reserved.get(Dim::Memory));
    drop(release);
    held.join().unwrap();
    pool.shutdown();
    assert_eq!(pool.snapshot().domains[0].0.get(Dim::Memory), Some(0));
}

#[test]
fn a_new_class_whose_tasks_report_memory_runs_one_at_a_time_until_learned() {
    // No tracking allocator in this test binary: the tasks say what they
    // used (as `respool run` does for child processes). The fallback (1 MiB)
    // is far below what each reports (30 MiB), and 4 workers and plenty of
    // CPU would start the whole wave at once without the cold-start probe.
    const MIB: u64 = 1 << 20;
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
        .learning(respool::learn::LearningConfig {
            fallback: Resources::new().with(Dim::Memory, MIB).unwrap(),
            ..respool::learn::LearningConfig::default()
        })
        .tasks_report_memory(true)
        .build()
        .unwrap();
    let running = Arc::new(AtomicI64::new(0));
    let peak = Arc::new(AtomicI64::new(0));
    let gate = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (running, peak, gate) = (running.clone(), peak.clone(), gate.clone());
            pool.task()
                .class("child-process")
                .spawn(move |ctx: &TaskContext| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    wait_until("the gate", || gate.load(Ordering::SeqCst));
                    ctx.report_usage(Dim::Memory, 30 * MIB);
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .unwrap()
        })
        .collect();
    // Either a second task started beside the first (the probe failed), or
    // the other five wait for the first to finish.
    wait_until("a second task to start, or five to wait", || {
        running.load(Ordering::SeqCst) > 1 || pool.snapshot().waiting == 5
    });
    gate.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        1,
        "the class ran one task at a time while its memory was not learned"
    );
}
