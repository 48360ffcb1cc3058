//! Idle workers are woken for a burst, whatever state they were in.
//!
//! At most half the workers (at least one) poll for work while idle
//! (*search*); the others stand by for a searcher's place, then park, and a
//! submitter does not wake a parked worker while one searches. A worker that finds a task after searching or
//! after being woken wakes another when more is queued. These tests prove
//! that no parallelism is lost that way: in every round, `W` tasks that can
//! only finish together (each waits at a barrier of `W`) are submitted to a
//! pool of `W` workers, so the round ends only if all `W` workers run at
//! once. A lost wake-up hangs the round, and the safety net turns the hang
//! into a failure (it is never a threshold on speed).
//!
//! Rounds start with the workers in each state: searching (the next burst
//! follows the last round at once), parked (the test waits until every
//! worker thread sleeps), and busy admitting waiters (tasks deferred for
//! capacity, admitted by the releases of the round before).

use std::sync::mpsc;
use std::sync::{Arc, Barrier};

use respool::{Dim, Pool, Resources};

mod common;
use common::{SAFETY, wait_until_asleep, within};

/// A pool of `workers` workers named `{prefix}-0`, `{prefix}-1`...,
/// `cpus` CPUs of capacity (none when 0).
fn pool(prefix: &str, workers: usize, cpus: u64) -> Pool {
    let b = Pool::builder().workers(workers).thread_name(prefix);
    let b = if cpus == 0 {
        b
    } else {
        b.capacity(Resources::new().with(Dim::Cpu, cpus * 1000).unwrap())
            .headroom(Resources::NONE)
    };
    b.build().unwrap()
}

/// How a round's tasks are submitted.
#[derive(Clone, Copy)]
enum Submit {
    /// `Pool::execute` (no requirements).
    Plain,
    /// One CPU declared (the packed path; the pool has room for all).
    Declared,
}

/// Submits one round of `w` tasks meeting at a barrier of `w` and waits
/// until all have passed it (or fails after `SAFETY`).
fn round(pool: &Pool, w: usize, how: Submit) {
    let barrier = Arc::new(Barrier::new(w));
    let (tx, rx) = mpsc::channel();
    for _ in 0..w {
        let (b, tx) = (Arc::clone(&barrier), tx.clone());
        let job = move || {
            b.wait();
            let _ = tx.send(());
        };
        match how {
            Submit::Plain => pool.execute(job).unwrap(),
            Submit::Declared => pool.task().cpu("1").execute(move |_| job()).unwrap(),
        }
    }
    for i in 0..w {
        // (A panic here leaves the pool's drop waiting for the tasks at the
        // barrier: each test runs `within` the safety net, which fails it.)
        rx.recv_timeout(SAFETY).unwrap_or_else(|_| {
            panic!("only {i} of {w} tasks met at the barrier: a worker was not woken")
        });
    }
}

/// Waits until every worker thread of the pool named `prefix` sleeps.
fn all_asleep(prefix: &str, w: usize) {
    for i in 0..w {
        wait_until_asleep(&format!("{prefix}-{i}"));
    }
}

/// `n` rounds, plain and declared in turn, on a pool of `w` workers named
/// `prefix` with `cpus` CPUs of capacity; `before` runs before each round.
fn rounds(prefix: &str, w: usize, cpus: u64, n: usize, before: impl Fn()) {
    let p = pool(prefix, w, cpus);
    for r in 0..n {
        before();
        let how = if r % 2 == 0 {
            Submit::Plain
        } else {
            Submit::Declared
        };
        round(&p, w, how);
    }
    p.shutdown();
}

#[test]
fn a_burst_right_after_the_last_one_runs_on_every_worker() {
    within(|| {
        for w in [2, 3, 4, 8] {
            rounds("wkburst", w, 0, 300, || {});
        }
    });
}

#[test]
fn a_burst_on_parked_workers_runs_on_every_worker() {
    within(|| {
        for w in [2, 4] {
            let cpus = u64::try_from(w).unwrap();
            rounds("wkpark", w, cpus, 10, || all_asleep("wkpark", w));
        }
    });
}

/// Room for `w` one-CPU tasks; `2w` submitted per round: the second `w`
/// wait, and the releases of the first `w` admit them (some handed to the
/// releasing worker, the rest through the run queue). They too must all run
/// at once.
#[test]
fn waiters_admitted_by_releases_run_on_every_worker() {
    within(|| {
        for w in [2, 4] {
            let p = pool("wkwait", w, u64::try_from(w).unwrap());
            for _ in 0..100 {
                let first = Arc::new(Barrier::new(w));
                let second = Arc::new(Barrier::new(w));
                let (tx, rx) = mpsc::channel();
                for k in 0..2 * w {
                    let b = Arc::clone(if k < w { &first } else { &second });
                    let tx = tx.clone();
                    p.task()
                        .cpu("1")
                        .execute(move |_| {
                            b.wait();
                            let _ = tx.send(());
                        })
                        .unwrap();
                }
                for i in 0..2 * w {
                    rx.recv_timeout(SAFETY).unwrap_or_else(|_| {
                        panic!("only {i} of {} tasks met at their barrier", 2 * w)
                    });
                }
            }
            let s = p.snapshot();
            assert_eq!(s.waiting, 0);
            assert!(
                s.admission.admitted_after_wait > 0,
                "no task waited: the test tested nothing"
            );
            p.shutdown();
        }
    });
}
