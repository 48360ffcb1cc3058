//! The scheduler's lane (issue 21): tasks that declared requirements and
//! nothing else, with a handle or without, wait behind others without the
//! scheduler's lock, and a finishing task that asked the same hands its reservation to
//! the first of them. These tests hold the lane to what the wait queue
//! promises: arrival order, a higher priority first, never above capacity
//! (also after a capacity cut), waiters that can never fit refused, nothing
//! lost.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::{SAFETY, join, within};
use respool::{Dim, Pool, Resources};

fn cpu(millis: u64) -> Resources {
    Resources::new().with_saturating(Dim::Cpu, millis)
}

fn pool(workers: usize, capacity: u64) -> Pool {
    Pool::builder()
        .workers(workers)
        .capacity(cpu(capacity))
        .headroom(Resources::NONE)
        .build()
        .expect("pool")
}

/// Holds `request` on one worker until the returned sender sends (or is
/// dropped); returns once it runs.
fn hold(pool: &Pool, request: Resources) -> mpsc::Sender<()> {
    let (release, held) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    pool.task()
        .requirements(request)
        .execute(move |_| {
            let _ = started_tx.send(());
            let _ = held.recv_timeout(SAFETY);
        })
        .expect("fits");
    started.recv_timeout(SAFETY).expect("the holder runs");
    release
}

/// Counts the tasks running at once, and the most at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Concurrency {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waiters alike run in the order they came, each admitted once after
/// waiting, and every reservation comes back. One worker, so the order
/// they run in is the order they were admitted in.
#[test]
fn waiters_alike_run_in_arrival_order() {
    within(|| {
        const N: usize = 500;
        let pool = pool(1, 2000);
        let release = hold(&pool, cpu(1000));
        let order = Arc::new(Mutex::new(Vec::with_capacity(N)));
        let (done_tx, done) = mpsc::channel::<()>();
        for id in 0..N {
            let order = order.clone();
            let done_tx = done_tx.clone();
            pool.task()
                .requirements(cpu(1000))
                .execute(move |_| {
                    order.lock().expect("order").push(id);
                    let _ = done_tx.send(());
                })
                .expect("queued or waiting");
        }
        // The first fits beside the holder; the others wait.
        assert_eq!(pool.snapshot().waiting, N - 1);
        release.send(()).expect("the holder waits");
        for _ in 0..N {
            done.recv_timeout(SAFETY).expect("every task runs");
        }
        pool.shutdown();
        let s = pool.snapshot();
        assert_eq!(
            *order.lock().expect("order"),
            (0..N).collect::<Vec<_>>(),
            "arrival order"
        );
        assert_eq!(s.reserved.amount(Dim::Cpu), 0, "{s}");
        assert_eq!(s.waiting, 0, "{s}");
        assert_eq!(s.admission.deferred, (N - 1) as u64, "{s}");
        assert_eq!(s.admission.admitted_after_wait, (N - 1) as u64, "{s}");
        assert_eq!(s.peak_waiting, N - 1, "the lane's waiters count: {s}");
    });
}

/// Usage outside the pool rises while waiters alike run and wait: a
/// finishing task must not hand its reservation on while the pool is over
/// its effective capacity. Capacity for two, two waiters running, then
/// external usage of one: the first of them to end gives its reservation
/// back (no waiter can start), the second hands its on, and from then on
/// one runs at a time. (A hand-over that ignored the rise would start a
/// waiter as soon as the first ended: two running where one fits.)
#[test]
fn usage_outside_the_pool_holds_back_hand_overs() {
    within(|| {
        const N: usize = 200;
        let pool = pool(2, 2000);
        let first = hold(&pool, cpu(1000));
        let second = hold(&pool, cpu(1000));
        let running = Arc::new(Concurrency::default());
        let (done_tx, done) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        // The first two waiters (admitted first: arrival order) run until
        // told to end.
        let mut ends = Vec::new();
        for i in 0..N {
            let running = running.clone();
            let done_tx = done_tx.clone();
            let started_tx = started_tx.clone();
            let end = (i < 2).then(|| {
                let (tx, rx) = mpsc::channel::<()>();
                ends.push(tx);
                rx
            });
            pool.task()
                .requirements(cpu(1000))
                .execute(move |_| {
                    running.enter();
                    if let Some(end) = end {
                        let _ = started_tx.send(());
                        let _ = end.recv_timeout(SAFETY);
                    } else {
                        std::thread::yield_now();
                    }
                    running.leave();
                    let _ = done_tx.send(());
                })
                .expect("waits");
        }
        assert_eq!(pool.snapshot().waiting, N);
        drop((first, second));
        for _ in 0..2 {
            started
                .recv_timeout(SAFETY)
                .expect("the first two waiters start");
        }
        pool.set_external_usage(&cpu(1000)).expect("CPU is tracked");
        ends[0].send(()).expect("waiter 0 runs");
        // Its reservation either comes back (right) or passes to the next
        // waiter (wrong: the pool is over its capacity).
        common::wait_until("waiter 0's reservation leaves", || {
            let s = pool.snapshot();
            s.reserved.amount(Dim::Cpu) == 1000 || s.admission.admitted_after_wait > 2
        });
        let s = pool.snapshot();
        assert_eq!(s.admission.admitted_after_wait, 2, "over capacity: {s}");
        assert_eq!(running.now.load(Ordering::SeqCst), 1, "{s}");
        ends[1].send(()).expect("waiter 1 runs");
        for _ in 0..N {
            done.recv_timeout(SAFETY).expect("every task runs");
        }
        pool.shutdown();
        let s = pool.snapshot();
        assert_eq!(running.most.load(Ordering::SeqCst), 2, "{s}");
        assert_eq!(s.reserved.amount(Dim::Cpu), 0, "{s}");
        assert_eq!(s.admission.admitted_after_wait, N as u64, "{s}");
    });
}

/// Drops a count when the task it travels in is dropped unrun.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waiters alike that a capacity cut leaves unable to ever fit are refused
/// (dropped without running: these have no handle), not left waiting: the
/// graceful shutdown below would otherwise wait for them forever.
#[test]
fn waiters_that_can_never_fit_after_a_cut_are_refused() {
    within(|| {
        const N: usize = 50;
        let pool = pool(2, 2000);
        let a = hold(&pool, cpu(1000));
        let b = hold(&pool, cpu(1000));
        let ran = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        for _ in 0..N {
            let ran = ran.clone();
            let guard = Dropped(dropped.clone());
            pool.task()
                .requirements(cpu(1000))
                .execute(move |_| {
                    let _keep = &guard;
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .expect("waits");
        }
        assert_eq!(pool.snapshot().waiting, N);
        pool.set_capacity(&cpu(500)).expect("CPU is tracked");
        drop((a, b));
        pool.shutdown();
        let s = pool.snapshot();
        assert_eq!(ran.load(Ordering::SeqCst), 0, "{s}");
        assert_eq!(dropped.load(Ordering::SeqCst), N, "{s}");
        assert_eq!(s.waiting, 0, "{s}");
        assert_eq!(s.admission.rejected_after_wait, N as u64, "{s}");
        assert_eq!(s.reserved.amount(Dim::Cpu), 0, "{s}");
    });
}

/// A waiter that is not alike (a higher priority, a handle) goes into the
/// wait queue and takes the lane's waiters in ahead of it, in their order;
/// its priority then puts it first. A waiter alike that asks something
/// else waits behind them all.
#[test]
fn a_waiter_not_alike_takes_the_lane_in_and_the_order_holds() {
    within(|| {
        let pool = pool(1, 1000);
        let release = hold(&pool, cpu(1000));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done) = mpsc::channel::<()>();
        let alike = |id: u32, millis: u64| {
            let order = order.clone();
            let done_tx = done_tx.clone();
            pool.task()
                .requirements(cpu(millis))
                .execute(move |_| {
                    order.lock().expect("order").push(id);
                    let _ = done_tx.send(());
                })
                .expect("waits");
        };
        for id in 0..5 {
            alike(id, 1000);
        }
        // Asks something else: behind the five, in the wait queue.
        alike(5, 600);
        let urgent = {
            let order = order.clone();
            pool.task()
                .requirements(cpu(1000))
                .priority(3)
                .spawn(move |_| order.lock().expect("order").push(99))
                .expect("waits")
        };
        for id in 6..9 {
            alike(id, 1000);
        }
        assert_eq!(pool.snapshot().waiting, 10);
        release.send(()).expect("the holder waits");
        join(urgent).expect("ran");
        for _ in 0..9 {
            done.recv_timeout(SAFETY).expect("every task runs");
        }
        pool.shutdown();
        assert_eq!(
            *order.lock().expect("order"),
            [99, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            "the higher priority first, then arrival order"
        );
        let s = pool.snapshot();
        assert_eq!(s.reserved.amount(Dim::Cpu), 0, "{s}");
        assert_eq!(s.waiting, 0, "{s}");
    });
}

/// A waiter in the lane with a handle, cancelled: it leaves the queue at
/// once (not when its turn comes), its handle says so, its job never runs,
/// and the others keep their order.
#[test]
fn a_cancelled_waiter_leaves_the_lane_at_once() {
    within(|| {
        let pool = pool(1, 1000);
        let release = hold(&pool, cpu(1000));
        let order = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..3)
            .map(|id| {
                let order = order.clone();
                pool.task()
                    .requirements(cpu(1000))
                    .spawn(move |_| order.lock().expect("order").push(id))
                    .expect("waits")
            })
            .collect();
        assert_eq!(pool.snapshot().waiting, 3);
        assert!(handles[1].cancel(), "not started: cancelled");
        common::wait_until("the cancelled waiter leaves the queue", || {
            pool.snapshot().waiting == 2
        });
        release.send(()).expect("the holder waits");
        let results: Vec<_> = handles.into_iter().map(join).collect();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(
            matches!(results[1], Err(respool::TaskError::Cancelled)),
            "{results:?}"
        );
        pool.shutdown();
        assert_eq!(*order.lock().expect("order"), [0, 2]);
        let s = pool.snapshot();
        assert_eq!(s.reserved.amount(Dim::Cpu), 0, "{s}");
        assert_eq!(s.waiting, 0, "{s}");
    });
}
