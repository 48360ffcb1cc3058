//! Races between cancellation, admission, start and shutdown.
//!
//! Each test makes two parties act at the same moment (a spinning barrier
//! lines them up, a seeded random spin staggers them by up to some thousands
//! of cycles so that every interleaving comes up), many times over, and
//! checks after each round that exactly one outcome happened and that it was
//! reported the same way everywhere: the task's body, its join handle, the
//! canceller's answer, and the pool's books (nothing waiting, queued or
//! reserved at the end).
//! No timing is asserted; the timeouts are safety nets that turn a hang into
//! a failure.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use common::*;
use respool::{Canceller, JoinHandle, Policy, Pool, SubmitError, TaskError};

/// Spins a seeded random number of `spin_loop` hints (0 to `max - 1`).
fn jitter(rng: &mut fastrand::Rng, max: u32) {
    for _ in 0..rng.u32(0..max) {
        std::hint::spin_loop();
    }
}

/// A barrier whose parties spin (yielding now and then) instead of parking:
/// a parked party wakes tens of microseconds after the last one arrives,
/// which is longer than the races these tests aim at, so with
/// `std::sync::Barrier` the last to arrive nearly always wins. Each clone is
/// one party and counts its own rounds.
#[derive(Clone)]
struct SpinBarrier {
    arrived: Arc<AtomicUsize>,
    parties: usize,
    round: usize,
}

impl SpinBarrier {
    fn new(parties: usize) -> SpinBarrier {
        SpinBarrier {
            arrived: Arc::new(AtomicUsize::new(0)),
            parties,
            round: 0,
        }
    }

    fn wait(&mut self) {
        self.round += 1;
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let target = self.parties * self.round;
        let t0 = Instant::now();
        let mut spins = 0u32;
        while self.arrived.load(Ordering::SeqCst) < target {
            spins = spins.wrapping_add(1);
            if spins % 256 == 0 {
                thread::yield_now();
                assert!(t0.elapsed() < SAFETY, "a party never reached the barrier");
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// A gate a task spins at (a parked thread would wake too late to race
/// with anything); see [`spin_gate`].
struct Gate(Arc<AtomicBool>);

impl Gate {
    fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Spins until opened (or the safety timeout, which the test then
    /// reports as a hang elsewhere).
    fn wait(&self) {
        let t0 = Instant::now();
        while !self.0.load(Ordering::SeqCst) && t0.elapsed() < SAFETY {
            std::hint::spin_loop();
        }
    }
}

/// The two ends of one gate.
fn spin_gate() -> (Gate, Gate) {
    let flag = Arc::new(AtomicBool::new(false));
    (Gate(flag.clone()), Gate(flag))
}

/// A pool's whole capacity (100 bytes) held by a running task that spins at
/// a gate, and a second task of the same size waiting for it, which
/// returns the value it was given.
struct HolderAndWaiter {
    /// Opens the gate: the holder finishes.
    release: Gate,
    /// Set once the holder runs.
    started: Arc<AtomicBool>,
    holder: JoinHandle<()>,
    waiter: JoinHandle<usize>,
    /// How many times the waiter's body ran.
    ran: Arc<AtomicUsize>,
}

/// Submits a task needing the whole capacity (100 bytes) that counts its
/// runs and returns `value`; returns its handle and the count.
fn counted_task(
    pool: &Pool,
    value: usize,
) -> Result<(JoinHandle<usize>, Arc<AtomicUsize>), SubmitError> {
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let h = pool.task().requirements(mem(100)).spawn(move |_| {
        r2.fetch_add(1, Ordering::SeqCst);
        value
    })?;
    Ok((h, ran))
}

fn holder_and_waiter(pool: &Pool, value: usize) -> HolderAndWaiter {
    let (release, held) = spin_gate();
    let started = Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    let holder = pool
        .task()
        .requirements(mem(100))
        .spawn(move |_| {
            s2.store(true, Ordering::SeqCst);
            held.wait();
        })
        .unwrap();
    let (waiter, ran) = counted_task(pool, value).unwrap();
    HolderAndWaiter {
        release,
        started,
        holder,
        waiter,
        ran,
    }
}

/// After `shutdown_now` handed back `handed_back` tasks: the waiter's handle
/// resolves while the pool is alive, either run (`true`) or handed back and
/// resolved with `ShutDown` (`false`), and the two accounts agree.
fn waiter_ran_or_was_handed_back(
    round: u64,
    waiter: JoinHandle<usize>,
    ran: &AtomicUsize,
    handed_back: usize,
) -> bool {
    match waiter.join_timeout(SAFETY) {
        Ok(Ok(_)) => {
            assert_eq!(ran.load(Ordering::SeqCst), 1);
            assert_eq!(handed_back, 0, "round {round}");
            true
        }
        Ok(Err(TaskError::ShutDown)) => {
            assert_eq!(ran.load(Ordering::SeqCst), 0);
            assert_eq!(handed_back, 1, "round {round}: the waiter was handed back");
            false
        }
        Ok(Err(e)) => panic!("round {round}: {e:?}"),
        Err(_) => panic!("round {round}: the waiter's handle never resolved"),
    }
}

/// What a round of "cancel at the moment of the start" saw.
struct Round {
    /// Times the body ran.
    ran: usize,
    /// The join's result.
    result: Result<usize, TaskError>,
    /// What `cancel` returned (whether it prevented the start).
    prevented: bool,
}

/// Checks one round: the body ran at most once, it ran exactly when the join
/// says it completed, and the canceller prevented the start exactly when the
/// join says `Cancelled`.
fn check(round: usize, r: &Round) {
    assert!(r.ran <= 1, "round {round}: the body ran {} times", r.ran);
    match &r.result {
        Ok(v) => {
            assert_eq!(r.ran, 1, "round {round}: completed without running");
            assert_eq!(*v, round, "round {round}: another round's value");
            assert!(
                !r.prevented,
                "round {round}: cancel said it prevented a task that ran"
            );
        }
        Err(TaskError::Cancelled) => {
            assert_eq!(r.ran, 0, "round {round}: cancelled but the body ran");
            assert!(
                r.prevented,
                "round {round}: cancelled although cancel said it came too late"
            );
        }
        Err(e) => panic!("round {round}: unexpected outcome {e:?}"),
    }
}

/// A canceller thread: for each `Canceller` received, meets the sender at
/// the barrier, waits a random few cycles, cancels, and reports the answer.
fn spawn_canceller(
    seed: u64,
    mut barrier: SpinBarrier,
) -> (
    mpsc::Sender<Canceller>,
    mpsc::Receiver<bool>,
    thread::JoinHandle<()>,
) {
    let (c_tx, c_rx) = mpsc::channel::<Canceller>();
    let (r_tx, r_rx) = mpsc::channel::<bool>();
    let t = thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        for c in c_rx {
            barrier.wait();
            jitter(&mut rng, 2_000);
            if r_tx.send(c.cancel()).is_err() {
                return;
            }
        }
    });
    (c_tx, r_rx, t)
}

/// A task with a memory requirement is cancelled from another thread at
/// about the moment a worker starts it, 2,000 times over four threads: the
/// body runs at most once, the handle says `Cancelled` exactly when the body
/// did not run (and exactly when `cancel` returned `true`), and the pool ends
/// quiet with nothing reserved.
#[test]
fn cancel_racing_with_start_runs_the_body_at_most_once() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 500;
    let pool = Arc::new(pool(2, GIB));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let (cancelled, completed) = (cancelled.clone(), completed.clone());
            thread::spawn(move || {
                let mut barrier = SpinBarrier::new(2);
                let (c_tx, r_rx, canceller) = spawn_canceller(1000 + t as u64, barrier.clone());
                let mut rng = fastrand::Rng::with_seed(t as u64);
                for i in 0..ROUNDS {
                    let round = t * ROUNDS + i;
                    let ran = Arc::new(AtomicUsize::new(0));
                    let r2 = ran.clone();
                    let h = pool
                        .task()
                        .requirements(mem(4 * 1024))
                        .spawn(move |_| {
                            r2.fetch_add(1, Ordering::SeqCst);
                            round
                        })
                        .expect("submit");
                    c_tx.send(h.canceller()).unwrap();
                    barrier.wait();
                    jitter(&mut rng, 2_000);
                    let result = join(h);
                    let prevented = r_rx.recv_timeout(SAFETY).expect("canceller answered");
                    let r = Round {
                        ran: ran.load(Ordering::SeqCst),
                        result,
                        prevented,
                    };
                    check(round, &r);
                    if r.result.is_ok() {
                        completed.fetch_add(1, Ordering::SeqCst);
                    } else {
                        cancelled.fetch_add(1, Ordering::SeqCst);
                    }
                }
                drop(c_tx);
                canceller.join().unwrap();
            })
        })
        .collect();
    for s in submitters {
        s.join().unwrap();
    }
    let (done, gone) = (
        completed.load(Ordering::SeqCst),
        cancelled.load(Ordering::SeqCst),
    );
    assert_eq!(done + gone, THREADS * ROUNDS);
    println!("{done} ran, {gone} were cancelled before they started");
    // Cancelled tasks may still sit in the run queue holding their
    // reservation until a worker skips them: the books settle, they do not
    // leak.
    wait_until("every reservation to be given back", || {
        pool.snapshot().reserved.is_zero()
    });
    assert_quiet(&pool);
    pool.shutdown();
    let s = pool.snapshot();
    assert!(s.reserved.is_zero(), "{s}");
    assert_eq!(s.submitted, (THREADS * ROUNDS) as u64);
    assert_eq!(
        s.completed, done as u64,
        "completed counts the bodies that ran"
    );
    assert_eq!(s.panicked, 0);
    assert_eq!(
        s.admission.accepted + s.admission.admitted_after_wait,
        (THREADS * ROUNDS) as u64,
        "a gibibyte holds every task: all admitted at once"
    );
}

/// With room for one task at a time, a task waits for resources; the task
/// holding them finishes at the moment the waiter is cancelled, 1,000 times.
/// The waiter runs at most once, exactly when its handle says so, and the
/// capacity is never lost: the next round's holder (which needs all of it)
/// is always admitted, and the pool ends with nothing reserved.
#[test]
fn cancel_racing_with_admission_of_a_waiting_task() {
    const ROUNDS: usize = 1_000;
    let pool = pool(1, 100);
    let mut barrier = SpinBarrier::new(2);
    let (c_tx, r_rx, canceller) = spawn_canceller(7, barrier.clone());
    let mut rng = fastrand::Rng::with_seed(11);
    let mut ran_rounds = 0;
    for round in 0..ROUNDS {
        // A waiter cancelled after its admission holds the capacity until the
        // worker skips it: let that settle (a leak times out here).
        wait_until("the last round's reservations to be given back", || {
            pool.snapshot().reserved.is_zero()
        });
        let HolderAndWaiter {
            release,
            holder,
            waiter,
            ran,
            ..
        } = holder_and_waiter(&pool, round);
        let s = pool.snapshot();
        assert_eq!(s.waiting, 1, "round {round}: the waiter waits: {s}");
        c_tx.send(waiter.canceller()).unwrap();
        barrier.wait();
        jitter(&mut rng, 2_000);
        release.open();
        let result = join(waiter);
        let prevented = r_rx.recv_timeout(SAFETY).expect("canceller answered");
        join(holder).expect("holder completes");
        let r = Round {
            ran: ran.load(Ordering::SeqCst),
            result,
            prevented,
        };
        check(round, &r);
        if r.result.is_ok() {
            ran_rounds += 1;
        }
    }
    drop(c_tx);
    canceller.join().unwrap();
    println!("the waiter ran in {ran_rounds} of {ROUNDS} rounds, was cancelled in the others");
    wait_until("every reservation to be given back", || {
        pool.snapshot().reserved.is_zero()
    });
    assert_quiet(&pool);
    pool.shutdown();
    let s = pool.snapshot();
    assert!(s.reserved.is_zero(), "{s}");
    assert_eq!(
        s.completed,
        (ROUNDS + ran_rounds) as u64,
        "holders + waiters that ran"
    );
    assert_eq!(s.admission.deferred, ROUNDS as u64, "every waiter waited");
}

/// What a submitter thread got from the pool.
enum Submitted {
    /// A handle, and the value its body returns.
    Handle(JoinHandle<usize>, usize),
    /// The pool refused with `ShutDown`; the submitter stopped there.
    ShutDown,
}

/// Four threads submit (plain tasks and tasks with a memory requirement, some
/// of which must wait) while the main thread shuts the pool down, gracefully
/// or at once. Every submission either is refused with `ShutDown` or returns
/// a handle that resolves; every body that ran ran once, and a handle says
/// `Ok` exactly for those; nothing hangs, nothing stays reserved.
fn shutdown_racing_with_submissions(now: bool, seed: u64) {
    const THREADS: usize = 4;
    const MAX_PER_THREAD: usize = 400;
    let pool = Arc::new(pool(2, 1000));
    let ran: Arc<Vec<AtomicUsize>> = Arc::new(
        (0..THREADS * MAX_PER_THREAD)
            .map(|_| AtomicUsize::new(0))
            .collect(),
    );
    let submitted = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, ran, submitted, start) =
                (pool.clone(), ran.clone(), submitted.clone(), start.clone());
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed + t as u64);
                let mut out = Vec::new();
                start.wait();
                for i in 0..MAX_PER_THREAD {
                    let id = t * MAX_PER_THREAD + i;
                    let ran = ran.clone();
                    let body = move || {
                        ran[id].fetch_add(1, Ordering::SeqCst);
                        id
                    };
                    let r = if rng.bool() {
                        pool.submit(body)
                    } else {
                        pool.task()
                            .requirements(mem(rng.u64(100..=400)))
                            .spawn(move |_| body())
                    };
                    match r {
                        Ok(h) => {
                            submitted.fetch_add(1, Ordering::SeqCst);
                            out.push(Submitted::Handle(h, id));
                        }
                        Err(SubmitError::ShutDown) => {
                            out.push(Submitted::ShutDown);
                            break;
                        }
                        Err(e) => panic!("submission {id}: {e:?}"),
                    }
                    jitter(&mut rng, 500);
                }
                out
            })
        })
        .collect();
    start.wait();
    // Shut down while the submitters are at it.
    wait_until("some submissions", || {
        submitted.load(Ordering::SeqCst) >= 50
    });
    let unstarted = if now {
        pool.shutdown_now()
    } else {
        pool.shutdown();
        Vec::new()
    };
    let handed_back = unstarted.len();
    // Dropping the tasks handed back resolves their handles with `ShutDown`.
    drop(unstarted);
    let mut ok = 0;
    let mut refused_after_close = 0;
    let mut shut_down_handles = 0;
    for s in submitters {
        for sub in s.join().unwrap() {
            match sub {
                Submitted::Handle(h, id) => match join(h) {
                    Ok(v) => {
                        assert_eq!(v, id);
                        assert_eq!(ran[id].load(Ordering::SeqCst), 1, "task {id} ran once");
                        ok += 1;
                    }
                    Err(TaskError::ShutDown) => {
                        assert!(now, "a graceful shutdown runs every accepted task ({id})");
                        assert_eq!(ran[id].load(Ordering::SeqCst), 0, "task {id} never ran");
                        shut_down_handles += 1;
                    }
                    Err(e) => panic!("task {id}: {e:?}"),
                },
                Submitted::ShutDown => refused_after_close += 1,
            }
        }
    }
    let bodies: usize = ran.iter().map(|r| r.load(Ordering::SeqCst)).sum();
    assert_eq!(bodies, ok, "a body ran exactly for each Ok handle");
    assert_eq!(
        shut_down_handles, handed_back,
        "every unstarted task was handed back, and only those"
    );
    println!(
        "{} accepted ({ok} ran, {shut_down_handles} handed back), {refused_after_close} \
         submitters refused with ShutDown",
        submitted.load(Ordering::SeqCst)
    );
    let s = pool.snapshot();
    assert!(s.reserved.is_zero(), "reservations left: {s}");
    assert_eq!((s.waiting, s.queued), (0, 0), "{s}");
    assert_eq!(s.completed, ok as u64);
    assert!(matches!(pool.submit(|| 0), Err(SubmitError::ShutDown)));
    assert!(matches!(
        pool.task().requirements(mem(1)).spawn(|_| 0),
        Err(SubmitError::ShutDown)
    ));
}

#[test]
fn graceful_shutdown_racing_with_submissions_runs_every_accepted_task() {
    for seed in 0..10 {
        shutdown_racing_with_submissions(false, seed * 100);
    }
}

#[test]
fn shutdown_now_racing_with_submissions_runs_or_hands_back_every_task() {
    for seed in 0..10 {
        shutdown_racing_with_submissions(true, seed * 100);
    }
}

/// Two threads cancel one waiting task (through two `Canceller`s) at the
/// moment the task holding the capacity finishes and the waiter is admitted:
/// the handle resolves once, the body runs at most once, both cancels give
/// the same answer (a cancel after the one that prevented the start says the
/// task never starts too, whether or not a worker has passed over it yet),
/// and the task is `Cancelled` exactly when they say they prevented it.
#[test]
fn concurrent_cancels_of_one_task_agree() {
    const ROUNDS: usize = 500;
    let pool = pool(1, 100);
    let mut ran_rounds = 0;
    for round in 0..ROUNDS {
        wait_until("the last round's reservations to be given back", || {
            pool.snapshot().reserved.is_zero()
        });
        let HolderAndWaiter {
            release,
            holder,
            waiter,
            ran,
            ..
        } = holder_and_waiter(&pool, round);
        let mut barrier = SpinBarrier::new(3);
        let cancellers: Vec<_> = (0..2)
            .map(|k| {
                let c = waiter.canceller();
                let mut b = barrier.clone();
                thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed((round * 2 + k) as u64);
                    b.wait();
                    jitter(&mut rng, 20_000);
                    c.cancel()
                })
            })
            .collect();
        barrier.wait();
        release.open();
        let answers: Vec<bool> = cancellers.into_iter().map(|c| c.join().unwrap()).collect();
        let result = join(waiter);
        join(holder).unwrap();
        assert_eq!(
            answers[0], answers[1],
            "round {round}: the cancels disagree ({result:?})"
        );
        check(
            round,
            &Round {
                ran: ran.load(Ordering::SeqCst),
                result,
                prevented: answers[0],
            },
        );
        ran_rounds += ran.load(Ordering::SeqCst);
    }
    println!("the waiter ran in {ran_rounds} of {ROUNDS} rounds");
    wait_until("every reservation to be given back", || {
        pool.snapshot().reserved.is_zero()
    });
    assert_quiet(&pool);
}

/// `Policy::Reject` under the same race: a task admitted at submit and
/// cancelled at its start gives its reservation back, so a task needing the
/// whole capacity is never refused as busy afterwards.
#[test]
fn cancelled_tasks_never_hold_capacity_under_reject() {
    let pool = Pool::builder()
        .workers(2)
        .capacity(mem(100))
        .headroom(respool::Resources::NONE)
        .admission(Policy::Reject)
        .build()
        .unwrap();
    let mut barrier = SpinBarrier::new(2);
    let (c_tx, r_rx, canceller) = spawn_canceller(3, barrier.clone());
    let mut rng = fastrand::Rng::with_seed(5);
    for round in 0..1_000 {
        let (h, ran) = counted_task(&pool, round)
            .unwrap_or_else(|e| panic!("round {round}: the whole capacity was not free: {e:?}"));
        c_tx.send(h.canceller()).unwrap();
        barrier.wait();
        jitter(&mut rng, 2_000);
        let result = join(h);
        let prevented = r_rx.recv_timeout(SAFETY).unwrap();
        check(
            round,
            &Round {
                ran: ran.load(Ordering::SeqCst),
                result,
                prevented,
            },
        );
        // A cancelled task still queued holds its reservation until a worker
        // skips it: wait for that (a leak would time out here).
        wait_until("the reservation to be given back", || {
            pool.snapshot().reserved.is_zero()
        });
    }
    drop(c_tx);
    canceller.join().unwrap();
    assert_eq!(pool.snapshot().rejected, 0);
}

/// One `shutdown_now` race, `ROUNDS` times: a running task holds the whole
/// capacity of a one-worker pool and a second task waits for it. From one
/// barrier, a closer thread calls `shutdown_now` after a [`jitter`] of up
/// to `closer_jitter(round)` spins, `racer` (if any) runs on a third thread
/// after up to 2,000, and this thread releases the holder after up to
/// `release_jitter` (which admits the waiter). Every round: nothing stays
/// reserved, no task is stranded in a queue no worker reads, the holder
/// finishes, and the waiter is run or handed back, its handle resolved
/// while the pool is alive.
fn race_shutdown_now(
    seed: u64,
    closer_jitter: impl Fn(u64) -> u32,
    racer: Option<fn(&Pool)>,
    release_jitter: u32,
) {
    const ROUNDS: u64 = 1_000;
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut ran_total, mut handed_back_total) = (0, 0);
    for round in 0..ROUNDS {
        let pool = Arc::new(pool(1, 100));
        let HolderAndWaiter {
            release,
            started,
            holder,
            waiter,
            ran,
        } = holder_and_waiter(&pool, 0);
        // The holder runs (so `shutdown_now` lets it finish) and the waiter waits.
        wait_until("the holder to start", || started.load(Ordering::SeqCst));
        assert_eq!(pool.snapshot().waiting, 1);
        let mut barrier = SpinBarrier::new(if racer.is_some() { 3 } else { 2 });
        let closer = {
            let mut b = barrier.clone();
            let p = pool.clone();
            let mut closer_rng = fastrand::Rng::with_seed(round);
            let max = closer_jitter(round);
            thread::spawn(move || {
                b.wait();
                jitter(&mut closer_rng, max);
                p.shutdown_now().len()
            })
        };
        let racer = racer.map(|f| {
            let mut b = barrier.clone();
            let p = pool.clone();
            let mut racer_rng = fastrand::Rng::with_seed(round ^ 0x5A5A);
            thread::spawn(move || {
                b.wait();
                jitter(&mut racer_rng, 2_000);
                f(&p);
            })
        });
        barrier.wait();
        jitter(&mut rng, release_jitter);
        release.open();
        let handed_back = closer.join().unwrap();
        if let Some(r) = racer {
            r.join().unwrap();
        }
        let s = pool.snapshot();
        assert_eq!(
            s.queued, 0,
            "round {round}: a task was stranded in a queue: {s}"
        );
        assert!(
            s.reserved.is_zero(),
            "round {round}: reservations left: {s}"
        );
        assert_eq!(
            join(holder),
            Ok(()),
            "round {round}: a running task finishes"
        );
        // The waiter's handle resolves while the pool is still alive.
        if waiter_ran_or_was_handed_back(round, waiter, &ran, handed_back) {
            ran_total += 1;
        } else {
            handed_back_total += 1;
        }
        drop(pool);
    }
    println!("the waiter ran in {ran_total} rounds and was handed back in {handed_back_total}");
}

/// `shutdown_now` while the running task that holds the whole capacity
/// finishes, which admits the waiting task at about the moment the pool
/// empties its queues (see [`race_shutdown_now`]).
#[test]
fn shutdown_now_racing_with_a_release_strands_no_admitted_task() {
    // Even rounds: `shutdown_now` at once, the release a little later,
    // which aims at the moment it empties the queues. Odd rounds: either
    // may come first, so the waiter sometimes runs.
    race_shutdown_now(
        17,
        |round| if round % 2 == 0 { 1 } else { 20_000 },
        None,
        5_000,
    );
}

/// `shutdown_now` while another thread raises the capacity, which admits the
/// waiting task from that thread (not a worker) at about the moment the pool
/// empties its queues (see [`race_shutdown_now`]).
#[test]
fn shutdown_now_racing_with_a_capacity_change_strands_no_admitted_task() {
    // The holder may finish only after a while, so that `shutdown_now` is
    // usually still waiting for it when the capacity rises.
    race_shutdown_now(
        23,
        |_| 2_000,
        Some(|p: &Pool| p.set_capacity(&mem(200)).unwrap()),
        20_000,
    );
}
