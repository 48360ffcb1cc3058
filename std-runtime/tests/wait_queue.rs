//! The wait queue under the default policy: a plain loop of submissions is
//! never refused (backpressure holds an outside submitter while the queue is
//! at its mark; the pool's own tasks queue beyond it), a bound the user sets
//! still refuses, and the queue is allocated as it fills.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{SAFETY, join, mem, wait_until};
use respool::alloc::{self, TrackingAllocator};
use respool::{Builder, Dim, Pool, Resources, SubmitError, TaskError};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

/// A one-worker pool of 1,000 bytes whose memory is all in use outside
/// it: every task that needs memory waits until the external usage goes.
fn starved(max_waiting: Option<usize>) -> Pool {
    let mut b = Pool::builder()
        .workers(1)
        .capacity(mem(1000))
        .headroom(Resources::NONE);
    if let Some(m) = max_waiting {
        b = b.max_waiting(m);
    }
    let pool = b.build().expect("pool");
    pool.set_external_usage(&mem(1000)).expect("memory tracked");
    pool
}

/// Fills the wait queue up to the backpressure mark; returns the handles.
fn fill_to_the_mark(pool: &Pool, ran: &Arc<AtomicUsize>) -> Vec<respool::JoinHandle<()>> {
    let handles: Vec<_> = (0..Builder::BACKPRESSURE)
        .map(|_| {
            let ran = ran.clone();
            pool.task()
                .memory("1")
                .spawn(move |_| {
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .expect("below the mark: queued")
        })
        .collect();
    assert_eq!(pool.snapshot().waiting, Builder::BACKPRESSURE);
    handles
}

/// Issue 14: a loop of 200,000 classified submissions to a default pool
/// used to fail with `QueueFull` once 4,096 waited (each reserves the
/// fallback until its class is learned). Every one of them must run.
#[test]
fn two_hundred_thousand_classified_submissions_on_the_default_pool_all_run() {
    const N: usize = 200_000;
    let pool = Pool::new().expect("default pool");
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..N {
        let ran = ran.clone();
        let submitted = pool.task().class("loop").execute(move |_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(submitted, Ok(()), "submission {i} was refused");
    }
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!(ran.load(Ordering::Relaxed), N, "{s}");
    assert_eq!((s.completed, s.rejected), (N as u64, 0), "{s}");
    assert!(s.peak_waiting <= Builder::BACKPRESSURE, "{s}");
}

/// The same with small declared requirements (the packed path while they
/// fit, the wait queue when they do not).
#[test]
fn two_hundred_thousand_submissions_with_declared_requirements_all_run() {
    const N: usize = 200_000;
    let pool = Pool::new().expect("default pool");
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..N {
        let ran = ran.clone();
        let submitted = pool.task().memory("1MiB").cpu("100m").execute(move |_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(submitted, Ok(()), "submission {i} was refused");
    }
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!(ran.load(Ordering::Relaxed), N, "{s}");
    assert_eq!(s.rejected, 0, "{s}");
}

/// At the mark, a submitter from outside the pool waits until a waiter
/// leaves the queue, then its task joins it; nothing is refused.
#[test]
fn a_full_queue_holds_an_outside_submitter_until_a_waiter_leaves() {
    let pool = Arc::new(starved(None));
    let ran = Arc::new(AtomicUsize::new(0));
    let mut handles = fill_to_the_mark(&pool, &ran);
    let returned = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (pool, ran, returned) = (pool.clone(), ran.clone(), returned.clone());
        std::thread::spawn(move || {
            let h = pool.task().memory("1").spawn(move |_| {
                ran.fetch_add(1, Ordering::SeqCst);
            });
            returned.store(true, Ordering::SeqCst);
            h
        })
    };
    wait_until("the submitter to be held for room", || {
        pool.snapshot().held_for_room == 1
    });
    // Nothing can leave the queue (all memory is in use outside the pool),
    // so the submitter is still held: this is state, not timing.
    assert!(!returned.load(Ordering::SeqCst));
    assert_eq!(pool.snapshot().waiting, Builder::BACKPRESSURE);
    // One waiter leaves (cancelled): there is room.
    let cancelled = handles.remove(0);
    assert!(cancelled.cancel());
    let last = submitter
        .join()
        .expect("submitter thread")
        .expect("let in once there was room");
    assert!(returned.load(Ordering::SeqCst));
    assert_eq!(join(cancelled), Err(TaskError::Cancelled));
    // The memory comes back: everything runs.
    pool.set_external_usage(&mem(0)).expect("memory tracked");
    for h in handles {
        assert_eq!(join(h), Ok(()));
    }
    assert_eq!(join(last), Ok(()));
    assert_eq!(ran.load(Ordering::SeqCst), Builder::BACKPRESSURE);
    let s = pool.snapshot();
    assert_eq!(
        (s.rejected, s.peak_waiting),
        (0, Builder::BACKPRESSURE),
        "{s}"
    );
}

/// `shutdown_now` ends a wait for room with `ShutDown`, and the job is
/// dropped before the submission returns.
#[test]
fn shutdown_now_ends_a_wait_for_room() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let pool = Arc::new(starved(None));
    let ran = Arc::new(AtomicUsize::new(0));
    let handles = fill_to_the_mark(&pool, &ran);
    let dropped = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (pool, dropped) = (pool.clone(), dropped.clone());
        std::thread::spawn(move || {
            let flag = Flag(dropped.clone());
            let r = pool.task().memory("1").execute(move |_| drop(flag));
            (r, dropped.load(Ordering::SeqCst))
        })
    };
    wait_until("the submitter to be held for room", || {
        pool.snapshot().held_for_room == 1
    });
    let back = pool.shutdown_now();
    let (r, dropped_before_return) = submitter.join().expect("submitter thread");
    assert_eq!(r, Err(SubmitError::ShutDown));
    assert!(dropped_before_return, "the job is dropped before the error");
    assert_eq!(back.len(), Builder::BACKPRESSURE, "the waiters come back");
    drop(back);
    for h in handles {
        assert_eq!(join(h), Err(TaskError::ShutDown));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

/// The pool's own tasks never wait for room (tasks that submit and wait
/// on each other could deadlock): they queue beyond the mark.
#[test]
fn tasks_of_the_pool_queue_beyond_the_mark() {
    const N: usize = Builder::BACKPRESSURE + 1000;
    let pool = Arc::new(starved(None));
    let ran = Arc::new(AtomicUsize::new(0));
    let parent = {
        let (p, ran) = (pool.clone(), ran.clone());
        pool.submit(move || {
            (0..N)
                .map(|_| {
                    let ran = ran.clone();
                    p.task().memory("1").spawn(move |_| {
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("parent accepted")
    };
    let children = join(parent).expect("parent ran").expect("never refused");
    let s = pool.snapshot();
    assert_eq!((s.waiting, s.held_for_room), (N, 0), "{s}");
    pool.set_external_usage(&mem(0)).expect("memory tracked");
    for h in children {
        assert_eq!(join(h), Ok(()));
    }
    assert_eq!(ran.load(Ordering::SeqCst), N);
}

/// A bound the user sets refuses beyond it, as before.
#[test]
fn a_bound_set_by_the_user_refuses_with_queue_full() {
    let pool = starved(Some(3));
    let waiters: Vec<_> = (0..3)
        .map(|i| pool.task().memory("1").spawn(move |_| i).expect("queued"))
        .collect();
    assert!(matches!(
        pool.task().memory("1").spawn(|_| 3),
        Err(SubmitError::QueueFull { .. })
    ));
    let s = pool.snapshot();
    assert_eq!((s.rejected, s.held_for_room), (1, 0), "{s}");
    pool.set_external_usage(&mem(0)).expect("memory tracked");
    for (i, h) in waiters.into_iter().enumerate() {
        assert_eq!(join(h), Ok(i));
    }
}

/// Issue 14: `max_waiting(10_000_000)` made `build()` allocate the whole
/// queue (about 3.9 s). The queue now grows as it fills: building costs the
/// same whatever the bound, and the queue still holds what waits.
#[test]
fn a_large_bound_allocates_nothing_until_tasks_wait() {
    let build = |max| {
        let (pool, heap) = alloc::measure(|| {
            Pool::builder()
                .workers(1)
                .capacity(mem(1000))
                .headroom(Resources::NONE)
                .max_waiting(max)
                .build()
                .expect("pool")
        });
        (pool, heap.peak)
    };
    let (_small, small) = build(64);
    let (large, peak) = build(10_000_000);
    assert!(
        peak <= small + (64 << 10),
        "building with max_waiting(10M) took {peak} bytes, with 64: {small}"
    );
    // It still holds many waiters.
    large
        .set_external_usage(&mem(1000))
        .expect("memory tracked");
    let handles: Vec<_> = (0..20_000)
        .map(|i| large.task().memory("1").spawn(move |_| i).expect("queued"))
        .collect();
    assert_eq!(large.snapshot().waiting, 20_000);
    large.set_external_usage(&mem(0)).expect("memory tracked");
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join_timeout(SAFETY).expect("in time"), Ok(i));
    }
    let s = large.snapshot();
    assert_eq!(s.reserved.get(Dim::Memory), Some(0), "{s}");
}

/// Issue 21: under saturation (two tasks fit, thousands wait, all alike) a
/// release admits the next waiter and the releasing worker runs it itself
/// (no run queue). Every waiter runs, each is admitted exactly once after
/// waiting, and every reservation comes back.
#[test]
fn a_saturated_pool_runs_every_waiter_and_gives_every_reservation_back() {
    // A waiter lost on the way (never run, its reservation never given
    // back) would hang the graceful shutdown: fail instead.
    common::within(saturated_run);
}

fn saturated_run() {
    const N: usize = 20_000;
    let pool = Pool::builder()
        .workers(2)
        .capacity(Resources::new().with_saturating(Dim::Cpu, 2000))
        .headroom(Resources::NONE)
        .max_waiting(N)
        .build()
        .expect("pool");
    let half = Resources::new().with_saturating(Dim::Cpu, 1000);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..N {
        let ran = ran.clone();
        pool.task()
            .requirements(half)
            .execute(move |_| {
                ran.fetch_add(1, Ordering::Relaxed);
            })
            .expect("waits, never refused");
    }
    pool.shutdown();
    let s = pool.snapshot();
    assert_eq!(ran.load(Ordering::Relaxed), N, "{s}");
    assert_eq!(s.reserved.amount(Dim::Cpu), 0, "{s}");
    assert_eq!(s.waiting, 0, "{s}");
    assert!(s.admission.deferred > 0, "the queue was used: {s}");
    assert_eq!(s.admission.admitted_after_wait, s.admission.deferred, "{s}");
    assert_eq!(s.admission.rejected_after_wait, 0, "{s}");
}

/// Waiters alike wait in the FIFO lane; one of a higher priority moves
/// them into the scored queue and goes first; the rest keep their order
/// (issue 21: the lane must not change the order the scored queue gives).
#[test]
fn a_higher_priority_waiter_overtakes_waiters_alike_that_keep_their_order() {
    let pool = Pool::builder()
        .workers(1)
        .capacity(mem(1000))
        .headroom(Resources::NONE)
        .build()
        .expect("pool");
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    // The whole capacity is held until `release` is sent.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let blocker = pool
        .task()
        .memory("1000")
        .spawn(move |_| held.recv_timeout(SAFETY).expect("released"))
        .expect("fits");
    let submit = |id: u32, priority: i32| {
        let order = order.clone();
        pool.task()
            .memory("1000")
            .priority(priority)
            .spawn(move |_| order.lock().expect("order").push(id))
            .expect("waits")
    };
    let mut handles: Vec<_> = (0..5).map(|id| submit(id, 0)).collect();
    handles.push(submit(99, 3));
    handles.extend((5..8).map(|id| submit(id, 0)));
    assert_eq!(pool.snapshot().waiting, 9);
    release.send(()).expect("blocker waits");
    join(blocker).expect("blocker ran");
    for h in handles {
        join(h).expect("ran");
    }
    assert_eq!(
        *order.lock().expect("order"),
        [99, 0, 1, 2, 3, 4, 5, 6, 7],
        "the higher priority first, then arrival order"
    );
}
