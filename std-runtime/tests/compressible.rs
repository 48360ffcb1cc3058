//! Compressible and incompressible dimensions (issue 15): CPU is soft by
//! default (every worker may run a one-core task), hard on request; an
//! estimate respool made itself never makes a task unrunnable, under every
//! policy, while what a user declares beyond the pool is refused at once.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{SAFETY, join, wait_until};
use respool::store::{ClassRecord, Profiles, Sample};
use respool::store::{MemoryStore, ProfileStore};
use respool::{Dim, Policy, Pool, Resources, SubmitError};

const GIB: u64 = 1 << 30;

/// Every admission policy.
fn policies() -> [Policy; 3] {
    [
        Policy::Reject,
        Policy::Defer,
        Policy::BlockUntilDeadline {
            max_wait_ns: SAFETY.as_nanos() as u64,
        },
    ]
}

/// A store holding `class` learned at `usage` (twenty timed runs).
fn learned(class: &str, usage: &[(Dim, u64)]) -> MemoryStore {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    let samples = (0..20)
        .map(|i| Sample {
            at_unix_ms: now_ms - 1000 + i,
            size: None,
            wall_ns: 50_000_000,
            usage: usage
                .iter()
                .map(|(d, v)| (d.name().to_owned(), *v))
                .collect(),
            oom_bytes: None,
        })
        .collect();
    let store = MemoryStore::new();
    store
        .save(&Profiles::new(vec![ClassRecord {
            class: class.to_owned(),
            runs: 20,
            samples,
        }]))
        .expect("saved");
    store
}

/// A class whose profile says 10 TB of memory and 13 cores runs on a pool
/// of 1 GiB and 2 workers, alone: its estimate is
/// clamped to what the pool can ever grant, and the snapshot says so.
/// What a user declares beyond the pool is still refused at once.
#[test]
fn a_class_learned_above_capacity_runs_alone_under_reject_and_defer() {
    for policy in [Policy::Reject, Policy::Defer] {
        let pool = Pool::builder()
            .workers(2)
            .memory("1GiB")
            .headroom(Resources::NONE)
            .admission(policy)
            .build()
            .expect("pool");
        let store = learned("huge", &[(Dim::Memory, 10 << 40), (Dim::Cpu, 13_409)]);
        assert_eq!(pool.import_profiles(&store).expect("imported"), 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let huge = pool
            .task()
            .class("huge")
            .spawn(move |_| rx.recv_timeout(SAFETY).is_ok())
            .unwrap_or_else(|e| panic!("{policy:?}: refused {e}"));
        wait_until("the huge task to hold its reservation", || {
            pool.snapshot().reserved.get(Dim::Memory) == Some(GIB)
        });
        let s = pool.snapshot();
        assert_eq!(s.reserved.get(Dim::Cpu), Some(2000), "{policy:?}: {s}");
        let class = s.classes.iter().find(|c| c.class == "huge").expect("known");
        assert_eq!(class.clamped, 1, "{policy:?}");
        // It runs alone: a task needing memory waits (or is refused as busy).
        let small = pool.task().memory("1MiB").spawn(|_| "small");
        match policy {
            Policy::Reject => assert!(matches!(small, Err(SubmitError::Busy { .. })), "{small:?}"),
            _ => assert_eq!(pool.snapshot().waiting, 1),
        }
        // Declared beyond the pool: refused at once, whatever the policy.
        assert!(
            matches!(
                pool.task().class("huge").memory("2GiB").spawn(|_| ()),
                Err(SubmitError::NeverFits(s)) if s.dim == Dim::Memory
            ),
            "{policy:?}"
        );
        tx.send(()).expect("huge waits");
        assert_eq!(join(huge), Ok(true), "{policy:?}");
        if let Ok(h) = small {
            assert_eq!(join(h), Ok("small"));
        }
        // The refused one's CPU estimate (13 cores) was clamped too.
        assert_eq!(pool.snapshot().classes[0].clamped, 2);
    }
}

/// Under `BlockUntilDeadline` the clamped class runs too, one at a time:
/// the second submitter blocks until the first is done.
#[test]
fn a_class_learned_above_capacity_runs_under_block_until_deadline() {
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .memory("1GiB")
            .headroom(Resources::NONE)
            .admission(Policy::BlockUntilDeadline {
                max_wait_ns: SAFETY.as_nanos() as u64,
            })
            .build()
            .expect("pool"),
    );
    let store = learned("huge", &[(Dim::Memory, 10 << 40)]);
    assert_eq!(pool.import_profiles(&store).expect("imported"), 1);
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                pool.task()
                    .class("huge")
                    .spawn(move |_| i)
                    .expect("admitted once the other is done")
            })
        })
        .collect();
    for (i, t) in handles.into_iter().enumerate() {
        let h = t.join().expect("submitter");
        assert_eq!(join(h), Ok(i));
    }
    let s = pool.snapshot();
    assert_eq!(s.classes[0].clamped, 2, "{s} {:?}", s.classes);
}

/// Soft CPU: four workers on a pool of two cores run four one-core tasks
/// at once (the barrier needs all four), under every policy. Hard CPU: two.
#[test]
fn soft_cpu_lets_every_worker_run_a_one_core_task() {
    for policy in policies() {
        let pool = Pool::builder()
            .workers(4)
            .cpu("2")
            .admission(policy)
            .build()
            .expect("pool");
        assert_eq!(pool.capacity().get(Dim::Cpu), Some(4000));
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = barrier.clone();
                pool.task()
                    .cpu("1")
                    .spawn(move |_| {
                        b.wait();
                    })
                    .unwrap_or_else(|e| panic!("{policy:?}: {e}"))
            })
            .collect();
        for h in handles {
            assert_eq!(join(h), Ok(()), "{policy:?}");
        }
    }
}

#[test]
fn hard_cpu_admits_exactly_the_capacity() {
    let pool = Pool::builder()
        .workers(4)
        .cpu("2")
        .hard(Dim::Cpu)
        .admission(Policy::Defer)
        .build()
        .expect("pool");
    assert_eq!(pool.capacity().get(Dim::Cpu), Some(2000));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let rx = rx.clone();
            pool.task()
                .cpu("1")
                .spawn(move |_| {
                    let _ = rx.lock().expect("rx").recv_timeout(SAFETY);
                })
                .expect("accepted or deferred")
        })
        .collect();
    let s = pool.snapshot();
    assert_eq!(
        (s.waiting, s.reserved.get(Dim::Cpu)),
        (2, Some(2000)),
        "{s}"
    );
    let reject = Pool::builder()
        .workers(4)
        .cpu("2")
        .hard(Dim::Cpu)
        .admission(Policy::Reject)
        .build()
        .expect("pool");
    let (rtx, rrx) = std::sync::mpsc::channel::<()>();
    let rrx = Arc::new(std::sync::Mutex::new(rrx));
    let held: Vec<_> = (0..2)
        .map(|_| {
            let rrx = rrx.clone();
            reject
                .task()
                .cpu("1")
                .spawn(move |_| {
                    let _ = rrx.lock().expect("rx").recv_timeout(SAFETY);
                })
                .expect("fits")
        })
        .collect();
    assert!(matches!(
        reject.task().cpu("1").spawn(|_| ()),
        Err(SubmitError::Busy { shortfall, .. }) if shortfall.dim == Dim::Cpu
    ));
    drop((tx, rtx));
    for h in handles.into_iter().chain(held) {
        assert_eq!(join(h), Ok(()));
    }
}

/// Without the tracking allocator nothing measures the heap: a classified
/// task reports no memory figure, and its class learns none (a session
/// used to report zero bytes, teaching the class that it needs no memory
/// and making the BlockUntilDeadline test above flaky).
#[test]
fn without_the_tracking_allocator_no_memory_is_learned() {
    let (tx, rx) = std::sync::mpsc::channel();
    let pool = Pool::builder()
        .workers(1)
        .memory("1GiB")
        .on_task_end(move |r| {
            let _ = tx.send(r.usage.heap);
        })
        .build()
        .expect("pool");
    for _ in 0..10 {
        join(
            pool.task()
                .class("plain")
                .spawn(|_| vec![0u8; 1 << 20].len())
                .expect("runs"),
        )
        .expect("ran");
        assert_eq!(rx.recv_timeout(SAFETY).expect("report"), None);
    }
    pool.shutdown();
    let class = &pool.snapshot().classes[0];
    assert_eq!(class.expected.get(Dim::Memory), None, "{class:?}");
}
