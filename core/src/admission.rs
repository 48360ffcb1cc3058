//! Admission control: whether a request may start now, must wait, or is refused.
//!
//! An [`Admission`] applies a [`Policy`] on top of a [`Tracker`]. It owns no
//! resources itself (capacity, headroom and external usage live in the
//! tracker), only the policy, the share held back for critical work, the
//! counters and a retry-after estimate, so one controller can serve any
//! tracker handle the caller passes.
//!
//! # The decision
//!
//! [`Admission::decide`] takes a request and answers with a [`Decision`]:
//!
//! 1. **Never fits** → [`Decision::Rejected`] with [`RejectReason::NeverFits`],
//!    at once, whatever the policy. A request that needs more of a dimension
//!    than the tracker's capacity minus headroom (minus the critical reserve,
//!    for normal work) can never run, and waiting for it would deadlock (Bazel
//!    once waited forever on a zero-capacity check). Zero capacity is a real
//!    limit: any positive amount never fits.
//! 2. **Fits now** and nobody is waiting → [`Decision::Accepted`] with the
//!    [`Reservation`].
//! 3. Otherwise, by policy:
//!    - [`Policy::Reject`]: [`Decision::Rejected`] with
//!      [`RejectReason::Busy`], the shortfall and a retry-after hint;
//!    - [`Policy::Defer`]: [`Decision::Deferred`]: the caller puts the request
//!      in its wait queue; when the queue already holds `max_waiting`
//!      entries, [`RejectReason::QueueFull`] instead;
//!    - [`Policy::BlockUntilDeadline`]: as `Defer`, with a deadline after which
//!      the waiter is rejected with [`RejectReason::DeadlineExpired`]. The core
//!      cannot block; the std runtime parks the submitting thread until the
//!      waiter is admitted or expires.
//!
//! # Admitting waiters
//!
//! The controller holds no waiters. The caller keeps them in a
//! [`ScoredQueue`](crate::queue::ScoredQueue) (priority, aging, deadline
//! slack; first come first served among equal scores) and, whenever
//! resources are released, admits from it. The std runtime's dispatch
//! (`Shared::dispatch_locked` in `std-runtime/src/sched.rs`) does, in
//! order:
//!
//! 1. [`ScoredQueue::expire`](crate::queue::ScoredQueue::expire): waiters
//!    whose deadline passed are refused
//!    ([`RejectReason::DeadlineExpired`]);
//! 2. when [`Tracker::settings_epoch`] moved (capacity or headroom
//!    changed), [`ScoredQueue::remove_where`](crate::queue::ScoredQueue::remove_where)
//!    with [`Admission::check_ever_fits`] refuses the waiters that can no
//!    longer ever fit ([`RejectReason::NeverFits`]): waiting for them would
//!    deadlock;
//! 3. [`ScoredQueue::top_k`](crate::queue::ScoredQueue::top_k) lists the
//!    best `K` waiters, and the first of them that reserves
//!    ([`Reservation::try_new`] above [`Admission::floor`]) starts. Passing
//!    over the best one (the head) is allowed at most `M` times in a row
//!    ([`Lookahead`](crate::packer::Lookahead), whose documentation proves
//!    the bound); with `K = 1` this is strict head-of-line admission, which
//!    keeps a large request from being overtaken forever by a stream of
//!    small ones (DESIGN.md, invariant 5).
//!
//! Each waiter that leaves is reported with [`Admission::record_after_wait`],
//! so the counters add up. The example below is that loop with `K = 1`.
//!
//! ```
//! use respool_core::admission::{Admission, AdmissionConfig, Decision, Policy, Urgency};
//! use respool_core::queue::{ArrayQueue, Availability, QueueConfig, Task};
//! use respool_core::{Dim, Reservation, Resources, Tracker};
//!
//! let mem = |n| Resources::new().with(Dim::Memory, n);
//! let tracker = Tracker::new(&mem(1000)?);
//! let admission = Admission::new(AdmissionConfig { policy: Policy::Defer, ..Default::default() });
//! let mut waiting: ArrayQueue<&str, 8> = ArrayQueue::default();
//! let running = admission.decide(&tracker, &mem(900)?, Urgency::Normal, waiting.len(), 0);
//! for (name, n) in [("big", 600), ("small", 50)] {
//!     match admission.decide(&tracker, &mem(n)?, Urgency::Normal, waiting.len(), 0) {
//!         Decision::Deferred(_) => waiting.push(Task::new(name, mem(n)?, 0)).map(|_| ()).unwrap(),
//!         other => panic!("{other:?}"),
//!     }
//! }
//! // The head ("big", first come) does not fit: nothing starts, although "small" would.
//! let head = waiting.peek(10, &Availability::of(&tracker)).unwrap();
//! let floor = admission.floor(Urgency::Normal);
//! assert!(Reservation::try_new(&tracker, &head.task.request, floor).is_err());
//! drop(running);
//! // After the release it fits, and starts.
//! let head = waiting.pop(20, &Availability::of(&tracker)).unwrap();
//! let started = Reservation::try_new(&tracker, &head.task.request, floor).unwrap();
//! admission.record_after_wait(true);
//! assert_eq!((head.task.item, admission.stats().admitted_after_wait), ("big", 1));
//! # drop(started);
//! # Ok::<(), respool_core::ResourceError>(())
//! ```
//!
//! # Critical work
//!
//! [`AdmissionConfig::critical_reserve`] is held back from [`Urgency::Normal`]
//! requests: they are admitted only if at least that much stays available.
//! [`Urgency::Critical`] requests may use it.
//!
//! # Counters
//!
//! Every call of `decide` increments exactly one of `accepted`, `deferred`,
//! `rejected`; every waiter that leaves the caller's queue is counted by
//! [`Admission::record_after_wait`] in `admitted_after_wait` or
//! `rejected_after_wait`. All are atomics
//! readable at any time through [`Admission::stats`].

use core::fmt;
use core::ops::Deref;

use crate::primitive::sync::atomic::{AtomicU64, Ordering};
use crate::resource::{Resources, Shortfall};
use crate::tracker::{Reservation, Tracker};

/// What happens to a request that does not fit right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Refuse it; the caller may retry after the hinted delay.
    Reject,
    /// Queue it in a bounded wait queue, first come first served among equals.
    Defer,
    /// Queue it, but refuse it if it is still waiting after `max_wait_ns`.
    BlockUntilDeadline {
        /// How long a request may wait, in nanoseconds of the caller's clock.
        max_wait_ns: u64,
    },
}

/// How important a request is to admission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// Ordinary work: may not use the critical reserve.
    #[default]
    Normal,
    /// Critical work: may use the critical reserve and waits ahead of normal work.
    Critical,
}

/// Configuration of an [`Admission`] controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// What to do with requests that do not fit now.
    pub policy: Policy,
    /// The share of capacity that only [`Urgency::Critical`] requests may use.
    pub critical_reserve: Resources,
    /// The largest number of waiters for `Defer` and `BlockUntilDeadline`
    /// (zero makes them behave like `Reject` with reason `QueueFull`).
    pub max_waiting: usize,
}

impl Default for AdmissionConfig {
    /// `Defer`, no critical reserve, at most 4096 waiters.
    fn default() -> Self {
        AdmissionConfig {
            policy: Policy::Defer,
            critical_reserve: Resources::NONE,
            max_waiting: 4096,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The request needs more than the total capacity (minus headroom, and
    /// minus the critical reserve for normal work) in `dim`: it can never run.
    NeverFits(Shortfall),
    /// [`Policy::Reject`] and the request does not fit now.
    Busy {
        /// Where it does not fit.
        shortfall: Shortfall,
        /// Hint: a typical time until resources are released, in nanoseconds.
        retry_after_ns: Option<u64>,
    },
    /// The wait queue is full.
    QueueFull {
        /// Where it did not fit (None when it was refused only to keep order
        /// behind waiters).
        shortfall: Option<Shortfall>,
        /// Hint: a typical time until resources are released, in nanoseconds.
        retry_after_ns: Option<u64>,
    },
    /// [`Policy::BlockUntilDeadline`] and the deadline passed while waiting.
    DeadlineExpired,
}

impl RejectReason {
    /// The shortfall behind the rejection, where there is one.
    #[must_use]
    pub fn shortfall(&self) -> Option<Shortfall> {
        match *self {
            RejectReason::NeverFits(s) | RejectReason::Busy { shortfall: s, .. } => Some(s),
            RejectReason::QueueFull { shortfall, .. } => shortfall,
            RejectReason::DeadlineExpired => None,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::NeverFits(s) => write!(f, "request can never fit: {s}"),
            RejectReason::Busy { shortfall, .. } => write!(f, "not enough free now: {shortfall}"),
            RejectReason::QueueFull {
                shortfall: Some(s), ..
            } => write!(f, "wait queue is full ({s})"),
            RejectReason::QueueFull {
                shortfall: None, ..
            } => f.write_str("wait queue is full"),
            RejectReason::DeadlineExpired => {
                f.write_str("deadline expired while waiting for resources")
            }
        }
    }
}

impl core::error::Error for RejectReason {}

/// A request that must wait: the caller queues it (see the
/// [module documentation](self#admitting-waiters)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deferral {
    /// Where it does not fit now; `None` when it fits but others wait ahead of it.
    pub shortfall: Option<Shortfall>,
    /// Hint: a typical time until resources are released, in nanoseconds.
    pub retry_after_ns: Option<u64>,
    /// When the request must be refused if still waiting ([`Policy::BlockUntilDeadline`]).
    pub deadline_ns: Option<u64>,
}

/// The outcome of [`Admission::decide`].
#[derive(Debug)]
#[must_use]
pub enum Decision<T: Deref<Target = Tracker>> {
    /// Admitted: the resources are held until the reservation is dropped.
    Accepted(Reservation<T>),
    /// Must wait.
    Deferred(Deferral),
    /// Refused.
    Rejected(RejectReason),
}

impl<T: Deref<Target = Tracker>> Decision<T> {
    /// Whether the request was accepted.
    #[must_use]
    pub fn is_accepted(&self) -> bool {
        matches!(self, Decision::Accepted(_))
    }
}

/// A snapshot of the admission counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Requests admitted at once by `decide`.
    pub accepted: u64,
    /// Requests told to wait by `decide`.
    pub deferred: u64,
    /// Requests refused by `decide`.
    pub rejected: u64,
    /// Waiters later admitted (counted by [`Admission::record_after_wait`]).
    pub admitted_after_wait: u64,
    /// Waiters later refused: deadline, or can no longer fit (counted by
    /// [`Admission::record_after_wait`]).
    pub rejected_after_wait: u64,
}

/// An admission controller. See the [module documentation](self).
///
/// # Examples
///
/// ```
/// use respool_core::admission::{Admission, AdmissionConfig, Decision, Policy, RejectReason, Urgency};
/// use respool_core::{Dim, Resources, Tracker};
///
/// let tracker = Tracker::new(&Resources::new().with(Dim::Memory, 1 << 30)?);
/// let admission = Admission::new(AdmissionConfig { policy: Policy::Reject, ..Default::default() });
///
/// let big = Resources::new().with(Dim::Memory, 2 << 30)?;
/// match admission.decide(&tracker, &big, Urgency::Normal, 0, 0) {
///     Decision::Rejected(RejectReason::NeverFits(s)) => assert_eq!(s.by, 1 << 30),
///     other => panic!("{other:?}"),
/// }
/// let small = Resources::new().with(Dim::Memory, 1 << 20)?;
/// assert!(admission.decide(&tracker, &small, Urgency::Normal, 0, 0).is_accepted());
/// assert_eq!(admission.stats().accepted, 1);
/// # Ok::<(), respool_core::ResourceError>(())
/// ```
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    accepted: AtomicU64,
    deferred: AtomicU64,
    rejected: AtomicU64,
    admitted_after_wait: AtomicU64,
    rejected_after_wait: AtomicU64,
    /// Exponentially smoothed hold time of reservations, in nanoseconds (0: unknown).
    hold_ns: AtomicU64,
}

impl Admission {
    /// A controller with `config`.
    #[must_use]
    pub fn new(config: AdmissionConfig) -> Admission {
        Admission {
            config,
            accepted: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            admitted_after_wait: AtomicU64::new(0),
            rejected_after_wait: AtomicU64::new(0),
            hold_ns: AtomicU64::new(0),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// The floor a request of `urgency` must leave available: the critical
    /// reserve for [`Urgency::Normal`], nothing for [`Urgency::Critical`].
    /// A caller admitting waiters itself reserves above it
    /// ([`Reservation::try_new`]), as `decide` does.
    #[must_use]
    pub fn floor(&self, urgency: Urgency) -> &Resources {
        match urgency {
            Urgency::Normal => &self.config.critical_reserve,
            Urgency::Critical => &Resources::NONE,
        }
    }

    /// `Err` with the shortfall when `request` can never fit on `tracker`: it
    /// needs more than capacity minus headroom (minus the critical reserve for
    /// normal work) in some dimension. External usage is transient and does
    /// not count here.
    ///
    /// # Errors
    ///
    /// The first dimension, in index order, that can never fit.
    pub fn check_ever_fits(
        &self,
        tracker: &Tracker,
        request: &Resources,
        urgency: Urgency,
    ) -> Result<(), Shortfall> {
        let floor = self.floor(urgency);
        for dim in request.dims().intersection(tracker.tracked()) {
            let Some(limit) = tracker.limit(dim) else {
                continue;
            };
            let total = limit.saturating_sub(floor.amount(dim));
            if let Some(s) = Shortfall::check(dim, request.amount(dim), total) {
                return Err(s);
            }
        }
        Ok(())
    }

    /// The most a request of `urgency` can ever be granted in each tracked
    /// dimension of `tracker`: capacity minus headroom, minus the critical
    /// reserve for normal work (external usage is transient and does not
    /// count, as in [`Admission::check_ever_fits`]). Untracked dimensions are
    /// unset. A request within it in every dimension passes
    /// `check_ever_fits`.
    ///
    /// A runtime clamps the amounts it estimated itself (learned or
    /// fallback) to it, so that an estimate never makes a task unrunnable:
    /// at worst the task runs alone. Only what a user declared is refused as
    /// never fitting.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::admission::{Admission, AdmissionConfig, Urgency};
    /// use respool_core::{Dim, Resources, Tracker};
    ///
    /// let tracker = Tracker::new(&Resources::new().with(Dim::Memory, 1000)?);
    /// tracker.set_headroom(&Resources::new().with(Dim::Memory, 100)?).unwrap();
    /// let reserve = Resources::new().with(Dim::Memory, 200)?;
    /// let admission = Admission::new(AdmissionConfig { critical_reserve: reserve, ..Default::default() });
    /// assert_eq!(admission.grantable(&tracker, Urgency::Normal).get(Dim::Memory), Some(700));
    /// assert_eq!(admission.grantable(&tracker, Urgency::Critical).get(Dim::Memory), Some(900));
    /// // A learned estimate of 10 TB, clamped: it can run (alone).
    /// let learned = Resources::new().with(Dim::Memory, 10 << 40)?;
    /// let clamped = learned.clamped_to(&admission.grantable(&tracker, Urgency::Normal));
    /// assert!(admission.check_ever_fits(&tracker, &clamped, Urgency::Normal).is_ok());
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    #[must_use]
    pub fn grantable(&self, tracker: &Tracker, urgency: Urgency) -> Resources {
        let floor = self.floor(urgency);
        let mut out = Resources::NONE;
        for dim in tracker.tracked() {
            if let Some(limit) = tracker.limit(dim) {
                out = out.with_saturating(dim, limit.saturating_sub(floor.amount(dim)));
            }
        }
        out
    }

    /// Decides what happens to `request`. `waiting` is the number of requests
    /// already in the caller's wait queue (they keep their place: a new
    /// request is deferred behind them rather than overtaking), `now_ns` the
    /// caller's monotonic clock (used for deadlines only).
    ///
    /// See the [module documentation](self) for the rules.
    pub fn decide<T: Deref<Target = Tracker>>(
        &self,
        tracker: T,
        request: &Resources,
        urgency: Urgency,
        waiting: usize,
        now_ns: u64,
    ) -> Decision<T> {
        self.decide_blocked(tracker, request, urgency, waiting, now_ns, None)
    }

    /// The accepting half of [`Admission::decide`] with nobody waiting, for a
    /// runtime that carries reservations packed: `Some` (counted as
    /// accepted) when `request` fits now above the floor of its `urgency`;
    /// `None` when it does not fit now or holds more than
    /// [`PACKED_DIMS`](crate::tracker::PACKED_DIMS) dimensions, counting
    /// nothing and leaving the tracker as it was: the caller then asks
    /// [`Admission::decide`], which decides (reject, defer) and counts.
    #[inline]
    pub fn accept_packed(
        &self,
        tracker: &Tracker,
        request: &Resources,
        urgency: Urgency,
    ) -> Option<crate::tracker::PackedReservation> {
        let packed = self.reserve_packed(tracker, request, urgency)?;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(packed)
    }

    /// [`Admission::accept_packed`] without counting the acceptance in
    /// [`Admission::stats`]: for a runtime that counts its submissions
    /// anyway and adds the ones it packed to `accepted` itself, saving a
    /// shared atomic add per task.
    #[inline]
    pub fn reserve_packed(
        &self,
        tracker: &Tracker,
        request: &Resources,
        urgency: Urgency,
    ) -> Option<crate::tracker::PackedReservation> {
        tracker.try_reserve_packed(request, self.floor(urgency))
    }

    /// [`Admission::decide`] for a caller with a constraint of its own on top
    /// of the tracker (a placement domain that is full): with `blocked` set,
    /// the request is treated as not fitting now, for that reason, without
    /// touching the tracker. The counters count it like any decision.
    pub fn decide_blocked<T: Deref<Target = Tracker>>(
        &self,
        tracker: T,
        request: &Resources,
        urgency: Urgency,
        waiting: usize,
        now_ns: u64,
        blocked: Option<Shortfall>,
    ) -> Decision<T> {
        let queueing = !matches!(self.config.policy, Policy::Reject);
        let (tracker, shortfall) = if blocked.is_some() {
            (tracker, blocked)
        } else if queueing && waiting > 0 {
            // Keep the order: do not try to overtake the waiters.
            (tracker, None)
        } else {
            // A request that is reserved fits within capacity minus headroom
            // minus the floor, so it can ever fit: the never-fits check below
            // is needed only when the reservation fails, and stays off the
            // hot path.
            match Reservation::try_new_or_return(tracker, request, self.floor(urgency)) {
                Ok(res) => {
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                    return Decision::Accepted(res);
                }
                Err((tracker, s)) => (tracker, Some(s)),
            }
        };
        if let Err(s) = self.check_ever_fits(&tracker, request, urgency) {
            return self.reject(RejectReason::NeverFits(s));
        }
        let retry_after_ns = self.retry_after_ns();
        match (self.config.policy, shortfall) {
            (Policy::Reject, Some(shortfall)) => self.reject(RejectReason::Busy {
                shortfall,
                retry_after_ns,
            }),
            _ if waiting >= self.config.max_waiting => self.reject(RejectReason::QueueFull {
                shortfall,
                retry_after_ns,
            }),
            (policy, shortfall) => {
                self.deferred.fetch_add(1, Ordering::Relaxed);
                let deadline_ns = match policy {
                    Policy::BlockUntilDeadline { max_wait_ns } => {
                        Some(now_ns.saturating_add(max_wait_ns))
                    }
                    _ => None,
                };
                Decision::Deferred(Deferral {
                    shortfall,
                    retry_after_ns,
                    deadline_ns,
                })
            }
        }
    }

    fn reject<T: Deref<Target = Tracker>>(&self, reason: RejectReason) -> Decision<T> {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Decision::Rejected(reason)
    }

    /// Counts a refusal decided by the caller (a request that no placement
    /// domain can ever hold), so that the counters add up.
    pub fn record_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a waiter that left the caller's wait queue: admitted, or
    /// refused (see [Admitting waiters](self#admitting-waiters)), so that
    /// the counters add up.
    pub fn record_after_wait(&self, admitted: bool) {
        if admitted {
            self.admitted_after_wait.fetch_add(1, Ordering::Relaxed);
        } else {
            self.rejected_after_wait.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Feeds how long a reservation was held (typically a task's run time), to
    /// refine the retry-after hint (an exponential moving average, 1/8 weight).
    pub fn record_hold_time(&self, ns: u64) {
        let _ = self
            .hold_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    ns.max(1)
                } else {
                    // old - old/8 + ns/8, all without overflow.
                    old.saturating_sub(old / 8).saturating_add(ns / 8).max(1)
                })
            });
    }

    /// The current retry-after hint: a typical time, in nanoseconds, until a
    /// reservation is released; `None` before any hold time was recorded.
    #[must_use]
    pub fn retry_after_ns(&self) -> Option<u64> {
        match self.hold_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(ns),
        }
    }

    /// The counters, each read atomically (the set is not one atomic snapshot).
    #[must_use]
    pub fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            deferred: self.deferred.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            admitted_after_wait: self.admitted_after_wait.load(Ordering::Relaxed),
            rejected_after_wait: self.rejected_after_wait.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{ArrayQueue, Availability, QueueConfig, Task};
    use crate::resource::Dim;
    use std::vec;
    use std::vec::Vec;

    fn r(pairs: &[(Dim, u64)]) -> Resources {
        Resources::from_pairs(pairs).unwrap()
    }
    fn mem(n: u64) -> Resources {
        r(&[(Dim::Memory, n)])
    }
    fn adm(policy: Policy) -> Admission {
        Admission::new(AdmissionConfig {
            policy,
            critical_reserve: Resources::NONE,
            max_waiting: 2,
        })
    }

    #[test]
    fn never_fits_is_rejected_at_once_under_every_policy() {
        let t = Tracker::new(&r(&[(Dim::Memory, 1000), (Dim::Gpu, 0)]));
        t.set_headroom(&mem(100)).unwrap();
        for policy in [
            Policy::Reject,
            Policy::Defer,
            Policy::BlockUntilDeadline { max_wait_ns: 5 },
        ] {
            let a = adm(policy);
            // (request, dimension, shortfall)
            let table = [
                (mem(901), Dim::Memory, 1),
                (r(&[(Dim::Gpu, 1)]), Dim::Gpu, 1),
            ];
            for (req, dim, by) in table {
                match a.decide(&t, &req, Urgency::Normal, 0, 0) {
                    Decision::Rejected(RejectReason::NeverFits(s)) => {
                        assert_eq!((s.dim, s.by), (dim, by))
                    }
                    other => panic!("{policy:?} {req}: {other:?}"),
                }
            }
            assert_eq!(a.stats().rejected, 2);
            assert!(a.decide(&t, &mem(900), Urgency::Normal, 0, 0).is_accepted());
        }
        assert!(t.is_idle());
    }

    #[test]
    fn packed_acceptance_respects_the_critical_reserve_and_counts_only_when_asked() {
        let t = Tracker::new(&mem(1000));
        let a = Admission::new(AdmissionConfig {
            policy: Policy::Reject,
            critical_reserve: mem(400),
            max_waiting: 2,
        });
        let p = a.accept_packed(&t, &mem(500), Urgency::Normal).unwrap();
        assert_eq!(a.stats().accepted, 1);
        // 500 left, 400 of it reserved for critical work: 100 for normal.
        assert!(a.reserve_packed(&t, &mem(101), Urgency::Normal).is_none());
        assert!(a.accept_packed(&t, &mem(101), Urgency::Normal).is_none());
        let q = a.reserve_packed(&t, &mem(100), Urgency::Normal).unwrap();
        let c = a.reserve_packed(&t, &mem(400), Urgency::Critical).unwrap();
        // Neither refusals nor the uncounted variant count.
        assert_eq!(
            a.stats(),
            AdmissionStats {
                accepted: 1,
                ..AdmissionStats::default()
            }
        );
        assert_eq!(t.reserved().amount(Dim::Memory), 1000);
        for token in [p, q, c] {
            token.unpack().release(&t).unwrap();
        }
        assert!(t.is_idle());
    }

    #[test]
    fn empty_request_is_always_accepted() {
        let t = Tracker::new(&mem(0));
        let a = adm(Policy::Reject);
        assert!(
            a.decide(&t, &Resources::NONE, Urgency::Normal, 0, 0)
                .is_accepted()
        );
        assert!(a.decide(&t, &mem(0), Urgency::Normal, 0, 0).is_accepted());
    }

    #[test]
    fn policies_when_busy() {
        let t = Tracker::new(&mem(1000));
        let hold = t.try_reserve(&mem(800)).unwrap();
        let a = adm(Policy::Reject);
        a.record_hold_time(8_000);
        match a.decide(&t, &mem(300), Urgency::Normal, 0, 0) {
            Decision::Rejected(RejectReason::Busy {
                shortfall,
                retry_after_ns,
            }) => {
                assert_eq!((shortfall.dim, shortfall.by), (Dim::Memory, 100));
                assert_eq!(retry_after_ns, Some(8_000));
            }
            other => panic!("{other:?}"),
        }
        let d = adm(Policy::Defer);
        match d.decide(&t, &mem(300), Urgency::Normal, 0, 7) {
            Decision::Deferred(x) => assert_eq!(
                (x.shortfall.map(|s| s.by), x.deadline_ns),
                (Some(100), None)
            ),
            other => panic!("{other:?}"),
        }
        // A request that fits is still deferred behind waiters...
        assert!(matches!(
            d.decide(&t, &mem(10), Urgency::Normal, 1, 0),
            Decision::Deferred(Deferral {
                shortfall: None,
                ..
            })
        ));
        // ...and refused when the queue is full.
        assert!(matches!(
            d.decide(&t, &mem(10), Urgency::Normal, 2, 0),
            Decision::Rejected(RejectReason::QueueFull {
                shortfall: None,
                ..
            })
        ));
        let b = adm(Policy::BlockUntilDeadline { max_wait_ns: 50 });
        match b.decide(&t, &mem(300), Urgency::Normal, 0, 7) {
            Decision::Deferred(x) => assert_eq!(x.deadline_ns, Some(57)),
            other => panic!("{other:?}"),
        }
        let s = d.stats();
        assert_eq!((s.accepted, s.deferred, s.rejected), (0, 2, 1));
        drop(hold);
    }

    #[test]
    fn critical_reserve_is_kept_for_critical_work() {
        let t = Tracker::new(&mem(1000));
        let a = Admission::new(AdmissionConfig {
            policy: Policy::Reject,
            critical_reserve: mem(200),
            max_waiting: 0,
        });
        assert!(matches!(
            a.decide(&t, &mem(801), Urgency::Normal, 0, 0),
            Decision::Rejected(RejectReason::NeverFits(_))
        ));
        let n = a.decide(&t, &mem(800), Urgency::Normal, 0, 0);
        assert!(n.is_accepted());
        assert!(matches!(
            a.decide(&t, &mem(1), Urgency::Normal, 0, 0),
            Decision::Rejected(RejectReason::Busy { .. })
        ));
        let c = a.decide(&t, &mem(200), Urgency::Critical, 0, 0);
        assert!(c.is_accepted());
        drop((n, c));
        assert!(t.is_idle());
    }

    /// What a caller admitting from its own `ScoredQueue` does on a release
    /// (the std runtime's dispatch with a window of one): expire, re-check
    /// never-fits after a settings change, then admit while the head fits.
    /// Returns the items admitted and refused, in order.
    fn dispatch(
        a: &Admission,
        t: &Tracker,
        q: &mut ArrayQueue<(&'static str, Urgency), 8>,
        epoch: &mut Option<u64>,
        now: u64,
    ) -> (Vec<&'static str>, Vec<(&'static str, RejectReason)>) {
        let mut refused = Vec::new();
        q.expire(now, |_, w| {
            a.record_after_wait(false);
            refused.push((w.item.0, RejectReason::DeadlineExpired));
        });
        if *epoch != Some(t.settings_epoch()) {
            *epoch = Some(t.settings_epoch());
            q.remove_where(
                |w| a.check_ever_fits(t, &w.request, w.item.1).is_err(),
                |_, w| {
                    a.record_after_wait(false);
                    let s = a.check_ever_fits(t, &w.request, w.item.1).err();
                    refused.push((w.item.0, RejectReason::NeverFits(s.unwrap())));
                },
            );
        }
        let mut admitted = Vec::new();
        while let Some(head) = q.peek(now, &Availability::of(t)) {
            let floor = a.floor(head.task.item.1);
            let Ok(r) = Reservation::try_new(t, &head.task.request, floor) else {
                break;
            };
            let w = q.pop(now, &Availability::of(t)).unwrap();
            r.detach().1.release(t).unwrap();
            a.record_after_wait(true);
            admitted.push(w.task.item.0);
        }
        (admitted, refused)
    }

    #[test]
    fn waiters_in_a_scored_queue_are_admitted_head_of_line() {
        let t = Tracker::new(&mem(1000));
        let a = Admission::new(AdmissionConfig {
            policy: Policy::BlockUntilDeadline { max_wait_ns: 100 },
            critical_reserve: mem(100),
            max_waiting: 8,
        });
        let hold = t.try_reserve(&mem(700)).unwrap();
        let mut q: ArrayQueue<(&str, Urgency), 8> = ArrayQueue::new(QueueConfig::with_weights(
            crate::queue::Weights::PRIORITY_ONLY,
        ));
        let mut epoch = None;
        // (name, amount, urgency, priority, time): deferred in this order.
        let table = [
            ("big", 600, Urgency::Normal, 0, 0),
            ("small", 50, Urgency::Normal, 0, 5),
            ("huge", 850, Urgency::Normal, 0, 5),
            ("urgent", 140, Urgency::Critical, 1, 5),
        ];
        for (name, n, u, p, now) in table {
            let d = match a.decide(&t, &mem(n), u, q.len(), now) {
                Decision::Deferred(d) => d,
                other => panic!("{name}: {other:?}"),
            };
            let task = Task::new((name, u), mem(n), now).with_priority(p);
            let task = match d.deadline_ns {
                Some(by) => task.with_deadline(by),
                None => task,
            };
            q.push(task).unwrap();
        }
        // "urgent" may use the critical reserve and goes first; "big" is the
        // head then, and "small" does not overtake it.
        assert_eq!(
            dispatch(&a, &t, &mut q, &mut epoch, 10),
            (vec!["urgent"], vec![])
        );
        // A capacity cut: "huge" can never fit above the reserve any more.
        t.set_capacity(&mem(900)).unwrap();
        let (admitted, refused) = dispatch(&a, &t, &mut q, &mut epoch, 20);
        assert!(admitted.is_empty());
        assert!(matches!(refused[..], [("huge", RejectReason::NeverFits(s))] if s.by == 50));
        // At the deadline "big" expires while the memory is still held;
        // "small" then fits and starts.
        assert_eq!(
            dispatch(&a, &t, &mut q, &mut epoch, 100),
            (vec!["small"], vec![("big", RejectReason::DeadlineExpired)])
        );
        drop(hold);
        let s = a.stats();
        assert_eq!(
            (s.deferred, s.admitted_after_wait, s.rejected_after_wait),
            (4, 2, 2)
        );
        assert!(q.is_empty() && t.is_idle());
    }

    #[test]
    fn blocked_requests_are_deferred_or_busy_without_reserving() {
        let t = Tracker::new(&mem(1000));
        let s = Shortfall::check(Dim::Memory, 10, 5).unwrap();
        let d = adm(Policy::Defer);
        assert!(matches!(
            d.decide_blocked(&t, &mem(10), Urgency::Normal, 0, 0, Some(s)),
            Decision::Deferred(Deferral { shortfall: Some(x), .. }) if x == s
        ));
        let r = adm(Policy::Reject);
        assert!(matches!(
            r.decide_blocked(&t, &mem(10), Urgency::Normal, 0, 0, Some(s)),
            Decision::Rejected(RejectReason::Busy { shortfall, .. }) if shortfall == s
        ));
        assert!(t.is_idle(), "nothing was reserved");
        r.record_rejected();
        assert_eq!(r.stats().rejected, 2);
        assert_eq!(d.stats().deferred, 1);
    }

    #[test]
    fn hold_time_average() {
        let a = adm(Policy::Reject);
        assert_eq!(a.retry_after_ns(), None);
        a.record_hold_time(800);
        a.record_hold_time(1600);
        assert_eq!(a.retry_after_ns(), Some(800 - 100 + 200));
        a.record_hold_time(u64::MAX);
        assert!(a.retry_after_ns().is_some());
    }
}
