//! Fuzzes `respool_core::Tracker` and `respool_core::admission` with arbitrary
//! capacities and arbitrary sequences of reservations (with floors),
//! releases, growth (checked and forced), shrinking, detaching and
//! re-attaching, capacity, headroom and external-usage changes, admission
//! decisions and wait-queue admissions.
//!
//! A ledger of what every live reservation holds is kept here. After every
//! step, in every tracked dimension:
//! - `reserved()` equals the sum of the ledger (the books balance);
//! - a reservation or admission that succeeded left the dimension within its
//!   effective capacity minus the floor it asked for (forced growth is the
//!   only way above it);
//! - a refused operation changed nothing.
//!
//! At the end everything is released and the tracker must be idle.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use respool_core::admission::{
    Admission, AdmissionConfig, ArrayWaitQueue, Decision, Policy, Urgency,
};
use respool_core::{DetachedReservation, Dim, MAX_AMOUNT, Reservation, Resources, Tracker};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Amount {
    Small(u8),
    Medium(u16),
    Any(u64),
    Max,
}

impl Amount {
    fn get(self) -> u64 {
        match self {
            Amount::Small(v) => u64::from(v),
            Amount::Medium(v) => u64::from(v),
            Amount::Any(v) => v % (MAX_AMOUNT + 1),
            Amount::Max => MAX_AMOUNT,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct Vector(Vec<(u8, Amount)>);

impl Vector {
    fn get(&self) -> Resources {
        self.0.iter().take(12).fold(Resources::NONE, |r, (d, a)| {
            let dim = Dim::ALL[usize::from(*d) % Dim::COUNT];
            r.with_saturating(dim, a.get())
        })
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Reserve(Vector, Option<Vector>),
    Release(u8),
    TryGrow(u8, Vector),
    ForceGrow(u8, Vector),
    Shrink(u8, Vector),
    Detach(u8),
    Attach(u8),
    SetCapacity(Vector),
    SetHeadroom(Vector),
    SetExternal(Vector),
    ForceReserve(Vector),
    Decide(Vector, bool, u8),
    AdmitWaiting(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: Vector,
    policy: u8,
    ops: Vec<Op>,
}

fn ledger_sum(live: &[Reservation<&Tracker>], detached: &[DetachedReservation]) -> Resources {
    live.iter()
        .map(|r| *r.held())
        .chain(detached.iter().map(|d| *d.held()))
        .fold(Resources::NONE, |acc, h| acc.saturating_add(&h))
}

fn check_books(t: &Tracker, live: &[Reservation<&Tracker>], detached: &[DetachedReservation]) {
    let sum = ledger_sum(live, detached);
    let reserved = t.reserved();
    for dim in t.tracked() {
        assert_eq!(
            reserved.amount(dim),
            sum.amount(dim),
            "books of {dim} do not balance"
        );
    }
}

fuzz_target!(|input: Input| {
    let capacity = input.capacity.get();
    let tracker = Tracker::new(&capacity);
    let policy = match input.policy % 3 {
        0 => Policy::Reject,
        1 => Policy::Defer,
        _ => Policy::BlockUntilDeadline { max_wait_ns: 1000 },
    };
    let admission = Admission::new(AdmissionConfig {
        policy,
        critical_reserve: Resources::NONE,
        max_waiting: 8,
    });
    let mut live: Vec<Reservation<&Tracker>> = Vec::new();
    let mut detached: Vec<DetachedReservation> = Vec::new();
    let mut queue: ArrayWaitQueue<u32, 8> = ArrayWaitQueue::new();
    let mut now = 0u64;
    for op in input.ops.into_iter().take(256) {
        now = now.saturating_add(100);
        match op {
            Op::Reserve(req, floor) => {
                let floor = floor.map(|f| f.get()).unwrap_or(Resources::NONE);
                let before = tracker.reserved();
                match tracker.try_reserve_above(&req.get(), &floor) {
                    Ok(r) => {
                        for dim in r.held().dims() {
                            let avail = tracker.available_signed(dim).unwrap_or(0);
                            let fl = i64::try_from(floor.amount(dim)).unwrap_or(i64::MAX);
                            assert!(avail >= fl, "{dim}: {avail} left, floor {fl}");
                        }
                        live.push(r);
                    }
                    Err(s) => {
                        assert!(s.by > 0);
                        assert_eq!(
                            tracker.reserved(),
                            before,
                            "a refused reservation changed the books"
                        );
                    }
                }
            }
            Op::Release(i) => {
                if !live.is_empty() {
                    let r = live.swap_remove(usize::from(i) % live.len());
                    r.release();
                }
            }
            Op::TryGrow(i, extra) => {
                if !live.is_empty() {
                    let n = live.len();
                    let r = &mut live[usize::from(i) % n];
                    let before = *r.held();
                    if r.try_grow(&extra.get()).is_err() {
                        assert_eq!(*r.held(), before);
                    }
                }
            }
            Op::ForceGrow(i, usage) => {
                if !live.is_empty() {
                    let n = live.len();
                    let _ = live[usize::from(i) % n].force_grow_to(&usage.get());
                }
            }
            Op::Shrink(i, less) => {
                if !live.is_empty() {
                    let n = live.len();
                    live[usize::from(i) % n].shrink(&less.get());
                }
            }
            Op::Detach(i) => {
                if !live.is_empty() {
                    let r = live.swap_remove(usize::from(i) % live.len());
                    detached.push(r.detach().1);
                }
            }
            Op::Attach(i) => {
                if !detached.is_empty() {
                    let d = detached.swap_remove(usize::from(i) % detached.len());
                    match d.attach(&tracker) {
                        Ok(r) => live.push(r),
                        Err(_) => unreachable!("same tracker"),
                    }
                }
            }
            Op::SetCapacity(v) => {
                let v = v.get();
                let ok = v.dims().iter().all(|d| tracker.tracked().contains(d));
                assert_eq!(tracker.set_capacity(&v).is_ok(), ok);
            }
            Op::SetHeadroom(v) => {
                let _ = tracker.set_headroom(&v.get());
            }
            Op::SetExternal(v) => {
                let _ = tracker.set_external(&v.get());
            }
            Op::ForceReserve(v) => {
                detached.push(tracker.force_reserve(&v.get()));
            }
            Op::Decide(req, critical, item) => {
                let urgency = if critical {
                    Urgency::Critical
                } else {
                    Urgency::Normal
                };
                let req = req.get();
                match admission.decide(&tracker, &req, urgency, queue.len(), now) {
                    Decision::Accepted(r) => live.push(r),
                    Decision::Deferred(d) => {
                        let _ = queue.push(u32::from(item), req, urgency, 0, d.deadline_ns);
                    }
                    Decision::Rejected(_) => {}
                }
            }
            Op::AdmitWaiting(dt) => {
                now = now.saturating_add(u64::from(dt));
                let mut admitted = Vec::new();
                admission.admit_waiting(
                    &mut queue,
                    || &tracker,
                    now,
                    |_, r| admitted.push(r),
                    |_, _| {},
                );
                live.extend(admitted);
            }
        }
        check_books(&tracker, &live, &detached);
        let s = admission.stats();
        assert!(s.admitted_after_wait + s.rejected_after_wait <= s.deferred);
    }
    for d in detached.drain(..) {
        d.release(&tracker).expect("same tracker");
    }
    live.clear();
    assert!(
        tracker.is_idle(),
        "everything released: {:?}",
        tracker.reserved()
    );
});
