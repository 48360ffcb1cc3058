//! `Pool::snapshot()` figures mean what they say: latency summaries after
//! measured tasks, queue lengths while tasks are held back on purpose,
//! refusals, utilisation and per-domain figures while reservations are held,
//! and fragmentation of placement domains. Exact values are asserted where
//! the semantics are exact; tasks are held and released with channels and
//! gates, never with sleeps that must be long enough.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::*;
use respool::core::packer::{Fit, Score};
use respool::{
    Dim, DomainSpec, LatencySummary, Policy, Pool, Ppm, Resources, SubmitError, TaskError,
};

/// A gate tasks wait at until the test opens it: the test holds the write
/// lock, tasks take a read lock.
fn gate() -> Arc<RwLock<()>> {
    Arc::new(RwLock::new(()))
}

fn assert_ordered(what: &str, s: &LatencySummary) {
    assert!(
        s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max,
        "{what}: percentiles out of order: {s:?}"
    );
    assert!(s.mean <= s.max, "{what}: mean above max: {s:?}");
}

fn memory_utilisation(s: &respool::PoolSnapshot) -> Option<Ppm> {
    s.utilisation[Dim::Memory.index()]
}

/// After N classified tasks, the wait and latency summaries count exactly
/// those N (classified tasks are always measured), their percentiles are
/// ordered, latency (submit to finish) is at least the wait (submit to
/// start) at every percentile, and it includes the time the body took.
/// The schedule summary (sampled) has counted some of the decisions.
#[test]
fn latency_summaries_count_measured_tasks_with_ordered_percentiles() {
    const N: usize = 64;
    const BODY: Duration = Duration::from_millis(2);
    let pool = pool(2, GIB);
    let before = pool.snapshot();
    assert_eq!(
        (before.wait.count, before.latency.count),
        (0, 0),
        "nothing measured yet"
    );
    let hs: Vec<_> = (0..N)
        .map(|i| {
            pool.task()
                .class("observed")
                .requirements(mem(MIB))
                .spawn(move |_| {
                    std::thread::sleep(BODY);
                    i
                })
                .unwrap()
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(join(h), Ok(i));
    }
    // Plain tasks are not measured (the fast path): they change nothing.
    for _ in 0..N {
        join(pool.submit(|| ()).unwrap()).unwrap();
    }
    let s = pool.snapshot();
    assert_eq!(
        s.wait.count, N as u64,
        "one wait sample per classified task"
    );
    assert_eq!(
        s.latency.count, N as u64,
        "one latency sample per classified task"
    );
    assert!(
        (1..=N as u64).contains(&s.schedule.count),
        "the sampled schedule summary saw some decisions: {:?}",
        s.schedule
    );
    for (what, summary) in [
        ("wait", &s.wait),
        ("latency", &s.latency),
        ("schedule", &s.schedule),
    ] {
        assert_ordered(what, summary);
    }
    // Each task's latency is at least its wait, so every order statistic is.
    assert!(s.latency.p50 >= s.wait.p50, "{:?} {:?}", s.latency, s.wait);
    assert!(s.latency.p99 >= s.wait.p99, "{:?} {:?}", s.latency, s.wait);
    assert!(s.latency.max >= s.wait.max, "{:?} {:?}", s.latency, s.wait);
    // The body slept for BODY (sleep never returns early): latency covers it.
    assert!(
        s.latency.p50 >= BODY && s.latency.mean >= BODY,
        "{:?}",
        s.latency
    );
    // A plain handle may resolve a moment before the worker counts the task;
    // after shutdown the counters are exact.
    pool.shutdown();
    assert_eq!(pool.snapshot().completed, 2 * N as u64);
}

/// With a single measured task, every percentile of its summaries is that
/// one sample: equal to the mean and the max (a percentile is never above the
/// largest sample, although the histogram buckets are wider than one value).
#[test]
fn one_sample_makes_every_percentile_that_sample() {
    let pool = pool(1, GIB);
    let h = pool
        .task()
        .class("single")
        .requirements(mem(MIB))
        .spawn(|_| std::thread::sleep(Duration::from_micros(300)))
        .unwrap();
    join(h).unwrap();
    let s = pool.snapshot();
    for (what, summary) in [("wait", &s.wait), ("latency", &s.latency)] {
        assert_eq!(summary.count, 1, "{what}: {summary:?}");
        assert_eq!(
            [summary.p50, summary.p90, summary.p99, summary.mean],
            [summary.max; 4],
            "{what}: {summary:?}"
        );
    }
}

/// `queued` counts admitted tasks waiting for a worker, `waiting` counts
/// tasks waiting for resources, exactly, while the only worker is blocked;
/// both go back to zero once it is released.
#[test]
fn queued_and_waiting_count_tasks_held_back() {
    let pool = pool(1, 100);
    let release = block_worker(&pool);
    let s = pool.snapshot();
    assert_eq!((s.queued, s.waiting), (0, 0), "{s}");
    let mut plain = Vec::new();
    for i in 0..3 {
        plain.push(pool.submit(move || i).unwrap());
    }
    assert_eq!(
        (pool.snapshot().queued, pool.snapshot().waiting),
        (3, 0),
        "plain tasks queue for the worker"
    );
    // Fits (and takes all the memory): admitted, so queued.
    let admitted = pool.task().requirements(mem(100)).spawn(|_| "a").unwrap();
    // A priority task goes to the priority lane, which counts as queued too.
    let lane = pool
        .task()
        .requirements(mem(0))
        .priority(5)
        .spawn(|_| "lane")
        .unwrap();
    let s = pool.snapshot();
    assert_eq!((s.queued, s.waiting), (5, 0), "{s}");
    assert_eq!(s.reserved.amount(Dim::Memory), 100);
    // Does not fit: waits for resources, not for a worker.
    let w1 = pool.task().requirements(mem(60)).spawn(|_| "w1").unwrap();
    let w2 = pool.task().requirements(mem(40)).spawn(|_| "w2").unwrap();
    let s = pool.snapshot();
    assert_eq!((s.queued, s.waiting), (5, 2), "{s}");
    assert_eq!(s.admission.deferred, 2);
    drop(release);
    assert_eq!(join(admitted), Ok("a"));
    assert_eq!(join(lane), Ok("lane"));
    assert_eq!((join(w1), join(w2)), (Ok("w1"), Ok("w2")));
    for (i, h) in plain.into_iter().enumerate() {
        assert_eq!(join(h), Ok(i));
    }
    assert_quiet(&pool);
    let s = pool.snapshot();
    assert_eq!(s.admission.admitted_after_wait, 2, "{s}");
}

/// `rejected` counts each task refused at submit: busy under
/// `Policy::Reject`, never fitting, a full wait queue; accepted tasks do not
/// count, and bad requirement text is not a refusal by the pool.
#[test]
fn rejected_counts_tasks_refused_at_submit() {
    let pool = Pool::builder()
        .workers(2)
        .capacity(mem(100))
        .headroom(Resources::NONE)
        .admission(Policy::Reject)
        .build()
        .unwrap();
    let g = gate();
    let w = g.write().unwrap();
    let g2 = g.clone();
    let hold = pool
        .task()
        .requirements(mem(80))
        .spawn(move |_| drop(g2.read()))
        .unwrap();
    assert_eq!(pool.snapshot().rejected, 0);
    match pool.task().requirements(mem(30)).spawn(|_| ()) {
        Err(SubmitError::Busy { shortfall, .. }) => {
            assert_eq!((shortfall.dim, shortfall.by), (Dim::Memory, 10));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.snapshot().rejected, 1);
    assert!(matches!(
        pool.task().requirements(mem(101)).spawn(|_| ()),
        Err(SubmitError::NeverFits(_))
    ));
    assert_eq!(pool.snapshot().rejected, 2);
    // A task that fits is accepted and does not count.
    assert_eq!(
        join(pool.task().requirements(mem(20)).spawn(|_| 1).unwrap()),
        Ok(1)
    );
    assert!(matches!(
        pool.task().memory("12 parsecs").spawn(|_| ()),
        Err(SubmitError::InvalidRequirement(_))
    ));
    let s = pool.snapshot();
    assert_eq!(s.rejected, 2, "{s}");
    assert_eq!(s.admission.rejected, 2, "{s}");
    drop(w);
    join(hold).unwrap();

    // A full wait queue is a refusal at submit too.
    let pool = Pool::builder()
        .workers(1)
        .capacity(mem(100))
        .headroom(Resources::NONE)
        .max_waiting(1)
        .build()
        .unwrap();
    let w = g.write().unwrap();
    let g2 = g.clone();
    let hold = pool
        .task()
        .requirements(mem(100))
        .spawn(move |_| drop(g2.read()))
        .unwrap();
    let waiter = pool.task().requirements(mem(100)).spawn(|_| 2).unwrap();
    assert!(matches!(
        pool.task().requirements(mem(100)).spawn(|_| 3),
        Err(SubmitError::QueueFull { .. })
    ));
    assert_eq!(pool.snapshot().rejected, 1);
    drop(w);
    join(hold).unwrap();
    assert_eq!(join(waiter), Ok(2));
    assert_eq!(pool.snapshot().rejected, 1);
}

/// Memory utilisation is `reserved / capacity` while tasks hold their
/// reservations: two tasks of 25% each held open make exactly 50%; a
/// tracked dimension nobody reserves is at 0%, an untracked one has none.
#[test]
fn utilisation_is_reserved_over_capacity() {
    let pool = pool(3, 1000);
    let s = pool.snapshot();
    assert_eq!(memory_utilisation(&s), Some(Ppm::ZERO));
    let g = gate();
    let w = g.write().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let (g, tx) = (g.clone(), started_tx.clone());
            pool.task()
                .requirements(mem(250))
                .spawn(move |_| {
                    tx.send(()).unwrap();
                    drop(g.read());
                })
                .unwrap()
        })
        .collect();
    for _ in 0..2 {
        started_rx.recv_timeout(SAFETY).unwrap();
    }
    let s = pool.snapshot();
    assert_eq!(s.reserved.amount(Dim::Memory), 500);
    assert_eq!(memory_utilisation(&s), Some(Ppm::from_ppm(500_000)), "{s}");
    assert_eq!(
        memory_utilisation(&s),
        Some(Ppm::ratio(
            s.reserved.amount(Dim::Memory),
            s.capacity.amount(Dim::Memory)
        ))
    );
    assert_eq!(
        s.utilisation[Dim::Cpu.index()],
        Some(Ppm::ZERO),
        "CPU is tracked (detected) and nobody reserved any"
    );
    assert_eq!(s.utilisation[Dim::Iops.index()], None, "IOPS is untracked");
    // A third task of 25%: its reservation is taken when it is admitted
    // (at submit), whether or not a worker has started it yet.
    let g3 = g.clone();
    let third = pool
        .task()
        .requirements(mem(250))
        .spawn(move |_| drop(g3.read()))
        .unwrap();
    assert_eq!(
        memory_utilisation(&pool.snapshot()),
        Some(Ppm::from_ppm(750_000))
    );
    drop(w);
    for h in hs {
        join(h).unwrap();
    }
    join(third).unwrap();
    // A joined task has given its reservation back.
    assert_eq!(memory_utilisation(&pool.snapshot()), Some(Ppm::ZERO));
}

/// A pool with two placement domains of 1000 bytes each and `memory` bytes
/// of pool capacity, worst fit (spreads: the emptiest domain first).
fn two_domains(memory: u64) -> Pool {
    Pool::builder()
        .workers(4)
        .capacity(mem(memory))
        .headroom(Resources::NONE)
        .domains(vec![
            DomainSpec::numa("left", vec![], 1000),
            DomainSpec::numa("right", vec![], 1000),
        ])
        .pin_workers(false)
        .placement(Fit::Worst(Score::MostAllocated))
        .build()
        .unwrap()
}

fn domain_memory(s: &respool::PoolSnapshot) -> Vec<(u64, u64)> {
    s.domains
        .iter()
        .map(|(used, cap)| (used.amount(Dim::Memory), cap.amount(Dim::Memory)))
        .collect()
}

/// Fragmentation is the share of the domains' free capacity that the task
/// at the head of the wait queue cannot use, and zero when nobody waits; the
/// per-domain figures show what each domain holds.
#[test]
fn fragmentation_is_reported_for_domains() {
    // 1. All the free memory is stranded: 400 free on each domain, 800 free
    //    in the pool, and the waiting task needs 700.
    let pool = two_domains(2000);
    let g = gate();
    let w = g.write().unwrap();
    let hold = |pool: &Pool, n: u64| {
        let g = g.clone();
        pool.task()
            .requirements(mem(n))
            .spawn(move |_| drop(g.read()))
            .unwrap()
    };
    let a = hold(&pool, 600);
    let b = hold(&pool, 600);
    let s = pool.snapshot();
    assert_eq!(domain_memory(&s), [(600, 1000), (600, 1000)]);
    assert_eq!(s.fragmentation, Ppm::ZERO, "nobody waits");
    let waiter = pool.task().requirements(mem(700)).spawn(|_| "w").unwrap();
    let s = pool.snapshot();
    assert_eq!(s.waiting, 1, "800 free in the pool, but no domain has 700");
    assert_eq!(s.fragmentation, Ppm::ONE, "{s}");
    assert!(waiter.cancel());
    assert_eq!(join(waiter), Err(TaskError::Cancelled));
    wait_until("the cancelled waiter to leave the queue", || {
        pool.snapshot().waiting == 0
    });
    assert_eq!(pool.snapshot().fragmentation, Ppm::ZERO);
    drop(w);
    join(a).unwrap();
    join(b).unwrap();
    assert_eq!(domain_memory(&pool.snapshot()), [(0, 1000), (0, 1000)]);

    // 2. Part of it: the pool (1500) is the limit. 700 on the left and 300
    //    on the right leave 500 free in the pool, 300 on the left (too small
    //    for a 600 task) and 700 on the right (large enough):
    //    300 / (300 + 700) of the free memory is stranded.
    let pool = two_domains(1500);
    let w = g.write().unwrap();
    let a = hold(&pool, 700);
    let b = hold(&pool, 300);
    assert_eq!(
        domain_memory(&pool.snapshot()),
        [(700, 1000), (300, 1000)],
        "worst fit put the second task on the emptier domain"
    );
    let waiter = pool.task().requirements(mem(600)).spawn(|_| "w").unwrap();
    let s = pool.snapshot();
    assert_eq!(s.waiting, 1, "{s}");
    assert_eq!(s.fragmentation, Ppm::from_ppm(300_000), "{s}");
    drop(w);
    join(a).unwrap();
    join(b).unwrap();
    assert_eq!(join(waiter), Ok("w"));
    let s = pool.snapshot();
    assert_eq!(s.fragmentation, Ppm::ZERO);
    assert_eq!(domain_memory(&s), [(0, 1000), (0, 1000)]);
    assert_quiet(&pool);
}
