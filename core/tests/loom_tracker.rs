//! loom models of the lock-free tracker and the admission counters.
//!
//! Run with `ci/loom.sh` (`RUSTFLAGS="--cfg respool_loom"`, bounded
//! preemptions). Every model explores all interleavings of the real
//! `respool_core` code, whose atomics resolve to loom's under this cfg.
//!
//! A *shadow* counter records what reservations hold: each thread adds its
//! amount right after a successful reservation and subtracts it right before
//! releasing, so the shadow never exceeds the true sum, and any assertion
//! that the shadow stays within capacity is sound.
#![cfg(respool_loom)]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst, fence};
use loom::thread;
use respool_core::admission::{Admission, AdmissionConfig, Decision, Policy, Urgency};
use respool_core::{Dim, ReleaseLog, Resources, Tracker};

fn res(cpu: u64, mem: u64) -> Resources {
    Resources::new()
        .with(Dim::Cpu, cpu)
        .and_then(|r| r.with(Dim::Memory, mem))
        .unwrap()
}

/// Reserves `req`, checks the shadow of CPU and memory against `limit`,
/// releases.
fn reserve_checked(
    t: &Tracker,
    shadow: &[AtomicU64; 2],
    req: Resources,
    limit: (u64, u64),
) -> bool {
    reserve_checked_in(t, shadow, [Dim::Cpu, Dim::Memory], req, limit)
}

/// Reserves `req`, checks the shadow of the two dimensions `dims` against
/// `limit`, releases.
fn reserve_checked_in(
    t: &Tracker,
    shadow: &[AtomicU64; 2],
    dims: [Dim; 2],
    req: Resources,
    limit: (u64, u64),
) -> bool {
    match t.try_reserve(&req) {
        Ok(r) => {
            let [a, b] = dims.map(|d| req.amount(d));
            let first = shadow[0].fetch_add(a, SeqCst) + a;
            let second = shadow[1].fetch_add(b, SeqCst) + b;
            assert!(
                first <= limit.0,
                "{:?} over-committed: {first} > {}",
                dims[0],
                limit.0
            );
            assert!(
                second <= limit.1,
                "{:?} over-committed: {second} > {}",
                dims[1],
                limit.1
            );
            shadow[0].fetch_sub(a, SeqCst);
            shadow[1].fetch_sub(b, SeqCst);
            r.release();
            true
        }
        Err(s) => {
            assert!(s.by > 0, "a shortfall is never zero");
            false
        }
    }
}

/// Three threads with requests of the two dimensions `dims` (capacity 2 of
/// each) that cannot all fit at once: the sums never exceed capacity,
/// rollbacks leave nothing behind, and after every release the tracker is
/// back to its full capacity.
fn three_requests_race(dims: [Dim; 2]) {
    let req = move |a: u64, b: u64| {
        Resources::new()
            .with(dims[0], a)
            .and_then(|r| r.with(dims[1], b))
            .unwrap()
    };
    loom::model(move || {
        let t = Arc::new(Tracker::new(&req(2, 2)));
        let shadow = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let handles: Vec<_> = [req(1, 2), req(2, 1), req(1, 1)]
            .into_iter()
            .map(|r| {
                let (t, shadow) = (t.clone(), shadow.clone());
                thread::spawn(move || reserve_checked_in(&t, &shadow, dims, r, (2, 2)))
            })
            .collect();
        let successes = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert!(successes >= 1, "someone always gets through");
        assert!(t.is_idle());
        assert_eq!(t.available(), req(2, 2));
    });
}

/// CPU and memory share one atomic word.
#[test]
fn three_threads_never_overcommit() {
    three_requests_race([Dim::Cpu, Dim::Memory]);
}

/// A capacity cut races with two reservers. Before the cut returns, sums stay
/// within the old capacity; a reservation attempted after the cut returned
/// never takes the sum above the new one; afterwards everything is released.
#[test]
fn capacity_shrink_races_with_reservations() {
    loom::model(|| {
        let t = Arc::new(Tracker::new(&res(4, 4)));
        let shadow = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let shrunk = Arc::new(AtomicBool::new(false));
        let reservers: Vec<_> = [res(2, 2), res(2, 3)]
            .into_iter()
            .map(|req| {
                let (t, shadow, shrunk) = (t.clone(), shadow.clone(), shrunk.clone());
                thread::spawn(move || {
                    let after_cut = shrunk.load(SeqCst);
                    let limit = if after_cut { (2, 2) } else { (4, 4) };
                    reserve_checked(&t, &shadow, req, limit);
                })
            })
            .collect();
        let cutter = {
            let (t, shrunk) = (t.clone(), shrunk.clone());
            thread::spawn(move || {
                t.set_capacity(&res(2, 2)).unwrap();
                shrunk.store(true, SeqCst);
            })
        };
        for h in reservers {
            h.join().unwrap();
        }
        cutter.join().unwrap();
        assert!(t.is_idle());
        assert_eq!(t.available(), res(2, 2));
        assert_eq!(t.capacity(), res(2, 2));
    });
}

/// Two capacity setters race with a reserver. Without the setter lock, one
/// setter's delta could be applied on top of the other's and expose, for an
/// instant, a capacity nobody set (10 + (10 - 0) = 20 here). The reservation
/// must never exceed the largest capacity ever set.
#[test]
fn concurrent_setters_never_expose_phantom_capacity() {
    loom::model(|| {
        let t = Arc::new(Tracker::new(
            &Resources::new().with(Dim::Memory, 10).unwrap(),
        ));
        let setters: Vec<_> = [0u64, 10]
            .into_iter()
            .map(|cap| {
                let t = t.clone();
                thread::spawn(move || {
                    t.set_capacity(&Resources::new().with(Dim::Memory, cap).unwrap())
                        .unwrap();
                })
            })
            .collect();
        let reserver = {
            let t = t.clone();
            thread::spawn(move || {
                // 11 fits only if the tracker ever shows more than 10.
                let r = t.try_reserve(&Resources::new().with(Dim::Memory, 11).unwrap());
                assert!(r.is_err(), "reserved 11 against capacities of 10 and 0");
            })
        };
        for h in setters {
            h.join().unwrap();
        }
        reserver.join().unwrap();
        let cap = t.capacity().amount(Dim::Memory);
        assert!(cap == 0 || cap == 10);
        assert_eq!(t.available().amount(Dim::Memory), cap, "books balance");
    });
}

/// Three threads go through admission (policy Reject) on a capacity that fits
/// one request at a time: the counters add up to the number of decisions, at
/// least one is accepted, and nothing stays reserved.
#[test]
fn admission_counters_add_up() {
    loom::model(|| {
        let t = Arc::new(Tracker::new(
            &Resources::new().with(Dim::Memory, 1).unwrap(),
        ));
        let a = Arc::new(Admission::new(AdmissionConfig {
            policy: Policy::Reject,
            ..AdmissionConfig::default()
        }));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (t, a) = (t.clone(), a.clone());
                thread::spawn(move || {
                    let req = Resources::new().with(Dim::Memory, 1).unwrap();
                    match a.decide(&*t, &req, Urgency::Normal, 0, 0) {
                        Decision::Accepted(r) => {
                            r.release();
                            1
                        }
                        Decision::Rejected(_) => 0,
                        Decision::Deferred(_) => panic!("policy Reject never defers"),
                    }
                })
            })
            .collect();
        let accepted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let s = a.stats();
        assert_eq!(s.accepted, accepted);
        assert_eq!(s.accepted + s.rejected + s.deferred, 3);
        assert!(s.accepted >= 1);
        assert!(t.is_idle());
    });
}

/// The packed fast path (`try_reserve_packed`, as a runtime admits a task
/// that travels in its queue slot) races with a plain reservation and a
/// packed one on three threads; the packed ones are given back merged into
/// one detached batch, as a runtime's worker does. Sums never exceed
/// capacity, a refused packed attempt leaves nothing behind, and once all is
/// given back the tracker is full again.
#[test]
fn packed_reservations_never_overcommit() {
    loom::model(|| {
        let t = Arc::new(Tracker::new(&res(2, 2)));
        let shadow = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let packed: Vec<_> = [res(1, 2), res(1, 1)]
            .into_iter()
            .map(|req| {
                let (t, shadow) = (t.clone(), shadow.clone());
                thread::spawn(move || {
                    let p = t.try_reserve_packed(&req, &Resources::NONE)?;
                    let cpu =
                        shadow[0].fetch_add(req.amount(Dim::Cpu), SeqCst) + req.amount(Dim::Cpu);
                    let mem = shadow[1].fetch_add(req.amount(Dim::Memory), SeqCst)
                        + req.amount(Dim::Memory);
                    assert!(cpu <= 2 && mem <= 2, "over-committed: {cpu}, {mem}");
                    shadow[0].fetch_sub(req.amount(Dim::Cpu), SeqCst);
                    shadow[1].fetch_sub(req.amount(Dim::Memory), SeqCst);
                    Some(p)
                })
            })
            .collect();
        let plain = {
            let (t, shadow) = (t.clone(), shadow.clone());
            thread::spawn(move || reserve_checked(&t, &shadow, res(2, 1), (2, 2)))
        };
        let held: Vec<_> = packed
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        plain.join().unwrap();
        let mut batch: Option<respool_core::DetachedReservation> = None;
        for p in held {
            match batch.as_mut() {
                Some(b) => b.merge_packed(p).unwrap(),
                None => batch = Some(p.unpack()),
            }
        }
        if let Some(b) = batch {
            b.release(&t).unwrap();
        }
        assert!(t.is_idle());
        assert_eq!(t.available(), res(2, 2));
    });
}

/// The writer's side in the release-log models: takes the log's writer and
/// adds two packed reservations of one CPU and one unit of memory.
fn add_two(t: &Tracker, log: &ReleaseLog) {
    let mut w = log.writer().unwrap();
    for _ in 0..2 {
        let p = t.try_reserve_packed(&res(1, 1), &Resources::NONE).unwrap();
        w.add_packed(p).unwrap();
    }
}

/// A thread that gives `log` back and checks that the tracker never shows
/// more than its capacity of 2 in `dim` (which a double give-back would).
fn spawn_giver(t: &Arc<Tracker>, log: &Arc<ReleaseLog>, dim: Dim) -> thread::JoinHandle<()> {
    let (t, log) = (t.clone(), log.clone());
    thread::spawn(move || give_back_checked(&t, &log, dim))
}

/// Gives `log` back and checks that `dim` shows at most its capacity of 2.
fn give_back_checked(t: &Tracker, log: &ReleaseLog, dim: Dim) {
    log.give_back(t).unwrap();
    assert!(t.available_signed(dim).unwrap() <= 2, "given back twice");
}

/// Two threads give back a worker's release log (`ReleaseLog`) at the same
/// time: each unit added is given back once, never twice (a giver that read
/// an older total must not release what another already did).
#[test]
fn release_log_concurrent_givers_release_once() {
    loom::model(|| {
        let t = Arc::new(Tracker::new(&res(2, 2)));
        let log = Arc::new(ReleaseLog::new());
        add_two(&t, &log);
        let giver = spawn_giver(&t, &log, Dim::Cpu);
        give_back_checked(&t, &log, Dim::Memory);
        giver.join().unwrap();
        assert!(log.is_empty());
        assert_eq!(t.available_signed(Dim::Cpu), Some(2));
        assert_eq!(t.available_signed(Dim::Memory), Some(2));
    });
}

/// The writer adds two packed reservations while two other threads give
/// the log back: nothing is given back twice, and once all are done and the
/// log given back a last time, the tracker is full again (nothing lost).
#[test]
fn release_log_writer_and_givers_lose_nothing() {
    loom::model(|| {
        let t = Arc::new(Tracker::new(&res(2, 2)));
        let log = Arc::new(ReleaseLog::new());
        let writer = {
            let (t, log) = (t.clone(), log.clone());
            thread::spawn(move || add_two(&t, &log))
        };
        let giver = spawn_giver(&t, &log, Dim::Cpu);
        give_back_checked(&t, &log, Dim::Memory);
        writer.join().unwrap();
        giver.join().unwrap();
        log.give_back(&t).unwrap();
        assert!(log.is_empty());
        assert!(t.is_idle());
        assert_eq!(t.available_signed(Dim::Cpu), Some(2));
    });
}

/// The handshake that lets a log's writer add without a locked instruction
/// yet never hold capacity a waiter needs: the writer adds, fences and looks
/// for a waiter; a waiter announces itself, fences and gives the log back.
/// Either the waiter's give-back sees the addition or the writer sees the
/// waiter and gives back itself: in every interleaving the reservation is
/// back when both are done, without anyone else's help. (The runtime pairs
/// a compiler fence on the writer with a process-wide barrier on the waiter,
/// which orders like these two fences; where that barrier is missing it
/// uses these fences.)
#[test]
fn release_log_writer_or_waiter_gives_back() {
    loom::model(|| {
        let t = Arc::new(Tracker::new(&res(1, 1)));
        let log = Arc::new(ReleaseLog::new());
        let waiting = Arc::new(AtomicBool::new(false));
        let writer = {
            let (t, log, waiting) = (t.clone(), log.clone(), waiting.clone());
            thread::spawn(move || {
                let mut w = log.writer().unwrap();
                let p = t.try_reserve_packed(&res(1, 1), &Resources::NONE).unwrap();
                w.add_packed(p).unwrap();
                fence(SeqCst);
                if waiting.load(Relaxed) {
                    log.give_back(&t).unwrap();
                }
            })
        };
        waiting.store(true, Relaxed);
        fence(SeqCst);
        log.give_back(&t).unwrap();
        writer.join().unwrap();
        assert!(t.is_idle(), "the reservation stayed in the log");
    });
}

/// Two dimensions in two different words (CPU shares a word with memory,
/// IOPS with network): a request of both takes one word, then the other,
/// and gives the first back if the second is short. Three such requests
/// race: the shadow sums never exceed capacity in either dimension, and
/// every rollback leaves nothing behind.
#[test]
fn requests_across_two_words_never_overcommit() {
    three_requests_race([Dim::Cpu, Dim::Iops]);
}

/// Amounts counted in units larger than one (a memory capacity of 2^24
/// bytes has a unit of 4 bytes): two threads reserve amounts that are not
/// whole units while a third changes the headroom of the *other* field of
/// the same word (CPU). Reservations hold whole units, never more than the
/// capacity in units; the CPU field is left exactly as the setter left it;
/// after the releases memory is back to its full capacity.
#[test]
fn units_and_a_neighbouring_setter_keep_the_books() {
    loom::model(|| {
        let mem = 1u64 << 24; // 25 bits: a unit of 2^3 = 8 bytes.
        let unit = 8u64;
        let t = Arc::new(Tracker::new(&res(4, mem)));
        let reservers: Vec<_> = [mem / 2 + 1, mem / 2 - 1]
            .into_iter()
            .map(|amount| {
                let t = t.clone();
                thread::spawn(move || {
                    let r = Resources::new().with(Dim::Memory, amount).unwrap();
                    if let Ok(held) = t.try_reserve(&r) {
                        let h = held.held().amount(Dim::Memory);
                        assert_eq!(h % unit, 0, "a whole number of units");
                        assert!(h >= amount && h < amount + unit);
                        assert!(t.reserved().amount(Dim::Memory) <= mem);
                    }
                })
            })
            .collect();
        let setter = {
            let t = t.clone();
            thread::spawn(move || {
                t.set_headroom(&res(3, 0)).unwrap();
            })
        };
        for h in reservers {
            h.join().unwrap();
        }
        setter.join().unwrap();
        assert!(t.is_idle());
        assert_eq!(t.available(), res(1, mem));
        assert_eq!(t.available_signed(Dim::Cpu), Some(1));
    });
}
