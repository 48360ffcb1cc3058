//! Fuzzes `respool_core::Tracker` and `respool_core::admission` with arbitrary
//! capacities and arbitrary sequences of reservations (with floors),
//! releases, growth (checked and forced), shrinking, detaching and
//! re-attaching, capacity, headroom and external-usage changes, admission
//! decisions, and admissions of deferred requests from a `ScoredQueue` the
//! way the std runtime's dispatch does them (expire, never-fits re-check
//! after a settings change, a lookahead window with a bounded number of
//! overtakings of the head, reservations above `Admission::floor`).
//!
//! A ledger of what every live reservation holds is kept here. After every
//! step, in every tracked dimension:
//! - `reserved()` equals the sum of the ledger (the books balance);
//! - a reservation or admission that succeeded left the dimension within its
//!   effective capacity minus the floor it asked for (forced growth is the
//!   only way above it);
//! - a refused operation changed nothing;
//! - every waiter that leaves the queue is counted once
//!   (`admitted_after_wait + rejected_after_wait + waiting == deferred`), and
//!   the head is never passed over more than the lookahead allows.
//!
//! At the end everything is released and the tracker must be idle.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use respool_core::admission::{Admission, AdmissionConfig, Decision, Policy, Urgency};
use respool_core::packer::Lookahead;
use respool_core::queue::{ArrayQueue, Availability, QueueConfig, Ranked, Task, Ticket, Weights};
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
    Decide(Vector, bool, i8),
    AdmitWaiting(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: Vector,
    policy: u8,
    critical_reserve: Option<Vector>,
    /// Lookahead window width (1..=4) and overtakings of the head (0..=3).
    window: u8,
    max_skips: u8,
    ops: Vec<Op>,
}

/// A deferred request: its urgency (for the floor and the never-fits check).
type Waiters = ArrayQueue<Urgency, 8>;

/// The runtime's dispatch (`std-runtime/src/sched.rs`) over a core
/// `ScoredQueue`: expire, re-check never-fits when the tracker's settings
/// changed, then start the first of the best `K` waiters that reserves above
/// its floor, passing over the head at most `max_skips` times in a row.
/// Admitted reservations go to `live`.
struct Dispatch {
    lookahead: Lookahead,
    head: Option<Ticket>,
    /// Overtakings of the present head since it became the head.
    passed: u32,
    epoch: Option<u64>,
    window: [Ranked; 4],
}

impl Dispatch {
    fn run<'t>(
        &mut self,
        admission: &Admission,
        tracker: &'t Tracker,
        queue: &mut Waiters,
        now: u64,
        live: &mut Vec<Reservation<&'t Tracker>>,
    ) {
        queue.expire(now, |_, _| admission.record_after_wait(false));
        let epoch = tracker.settings_epoch();
        if self.epoch != Some(epoch) {
            self.epoch = Some(epoch);
            queue.remove_where(
                |w| {
                    admission
                        .check_ever_fits(tracker, &w.request, w.item)
                        .is_err()
                },
                |_, _| admission.record_after_wait(false),
            );
        }
        loop {
            let avail = Availability::of(tracker);
            let k = self.lookahead.width().min(self.window.len());
            let top = queue.top_k(now, &avail, &mut self.window[..k]);
            if top.len == 0 {
                break;
            }
            let first = self.window[0].ticket;
            if self.head != Some(first) {
                self.lookahead.head_left();
                self.head = Some(first);
                self.passed = 0;
            }
            let mut chosen = None;
            for (i, r) in self.window[..top.len].iter().enumerate() {
                if i > 0 && self.lookahead.head_only() {
                    break;
                }
                let Some(t) = queue.get(r.ticket) else {
                    continue;
                };
                let floor = admission.floor(t.item);
                // A reservation above the floor leaves at least the floor.
                if let Ok(res) = Reservation::try_new(tracker, &t.request, floor) {
                    for dim in res.held().dims() {
                        let avail = tracker.available_signed(dim).unwrap_or(0);
                        let fl = i64::try_from(floor.amount(dim)).unwrap_or(i64::MAX);
                        assert!(avail >= fl, "{dim}: {avail} left, floor {fl}");
                    }
                    chosen = Some((i, r.ticket, res));
                    break;
                }
            }
            let Some((i, ticket, res)) = chosen else {
                break;
            };
            assert!(
                queue.take(ticket, now).is_some(),
                "a listed ticket is valid"
            );
            self.lookahead.record(i == 0);
            if i > 0 {
                self.passed += 1;
                assert!(
                    self.passed <= self.lookahead.max_skips(),
                    "the head was passed over {} times, at most {} allowed",
                    self.passed,
                    self.lookahead.max_skips()
                );
            }
            admission.record_after_wait(true);
            live.push(res);
        }
    }
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
        critical_reserve: input.critical_reserve.map_or(Resources::NONE, |v| v.get()),
        max_waiting: 8,
    });
    let mut live: Vec<Reservation<&Tracker>> = Vec::new();
    let mut detached: Vec<DetachedReservation> = Vec::new();
    let mut queue: Waiters = ArrayQueue::new(QueueConfig::with_weights(Weights {
        fits: 1,
        ..Weights::default()
    }));
    let mut dispatch = Dispatch {
        lookahead: Lookahead::new(
            usize::from(input.window % 4) + 1,
            u32::from(input.max_skips % 4),
        ),
        head: None,
        passed: 0,
        epoch: None,
        window: [Ranked::EMPTY; 4],
    };
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
            Op::Decide(req, critical, priority) => {
                let urgency = if critical {
                    Urgency::Critical
                } else {
                    Urgency::Normal
                };
                let req = req.get();
                match admission.decide(&tracker, &req, urgency, queue.len(), now) {
                    Decision::Accepted(r) => live.push(r),
                    Decision::Deferred(d) => {
                        let mut task = Task::new(urgency, req, now).with_priority(priority.into());
                        if let Some(by) = d.deadline_ns {
                            task = task.with_deadline(by);
                        }
                        // `max_waiting` is the queue's capacity: it has room.
                        assert!(queue.push(task).is_ok(), "deferred into a full queue");
                    }
                    Decision::Rejected(_) => {}
                }
            }
            Op::AdmitWaiting(dt) => {
                now = now.saturating_add(u64::from(dt));
                dispatch.run(&admission, &tracker, &mut queue, now, &mut live);
            }
        }
        check_books(&tracker, &live, &detached);
        let s = admission.stats();
        let waiting = queue.len() as u64;
        assert_eq!(
            s.admitted_after_wait + s.rejected_after_wait + waiting,
            s.deferred,
            "every deferred request is waiting or counted once"
        );
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
