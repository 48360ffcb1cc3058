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
//!      in its [`WaitQueue`]; when the queue already holds `max_waiting`
//!      entries, [`RejectReason::QueueFull`] instead;
//!    - [`Policy::BlockUntilDeadline`]: as `Defer`, with a deadline after which
//!      the waiter is rejected with [`RejectReason::DeadlineExpired`]. The core
//!      cannot block; the std runtime parks the submitting thread until the
//!      waiter is admitted or expires.
//!
//! Whenever resources are released, the caller runs
//! [`Admission::admit_waiting`], which admits waiters in order (critical before
//! normal, then higher priority, then first come first served) and **stops at
//! the first waiter that does not fit**. Head-of-line blocking is deliberate:
//! it is what keeps a large request from being overtaken forever by a stream
//! of small ones (DESIGN.md, invariant 5). The packer's lookahead window
//! (issue 3) relaxes it with a proven bound.
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
//! `rejected`; every waiter that leaves the queue through `admit_waiting`
//! increments `admitted_after_wait` or `rejected_after_wait`. All are atomics
//! readable at any time through [`Admission::stats`].

use core::fmt;
use core::marker::PhantomData;
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

/// A request that must wait: the caller queues it (see [`WaitQueue`]).
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
    /// Waiters later admitted by `admit_waiting`.
    pub admitted_after_wait: u64,
    /// Waiters later refused by `admit_waiting` (deadline, or can no longer fit).
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

    /// The floor a request of `urgency` must leave available.
    fn floor(&self, urgency: Urgency) -> &Resources {
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

    /// Admits waiters from `queue` in order while the head fits, calling
    /// `on_admit` with each one's item and reservation; refuses (through
    /// `on_reject`) waiters whose deadline is at or before `now_ns` and, after
    /// a capacity or headroom change, waiters that can no longer ever fit.
    /// `handle` produces a tracker handle for each reservation. Returns the
    /// number admitted.
    pub fn admit_waiting<H, T, S>(
        &self,
        queue: &mut WaitQueue<T, S>,
        mut handle: impl FnMut() -> H,
        now_ns: u64,
        mut on_admit: impl FnMut(T, Reservation<H>),
        mut on_reject: impl FnMut(T, RejectReason),
    ) -> usize
    where
        H: Deref<Target = Tracker>,
        S: AsRef<[Option<Waiting<T>>]> + AsMut<[Option<Waiting<T>>]>,
    {
        let probe = handle();
        let epoch = probe.settings_epoch();
        let recheck_fit = queue.checked_epoch != Some(epoch);
        if recheck_fit || queue.next_deadline_ns.is_some_and(|d| d <= now_ns) {
            queue.checked_epoch = Some(epoch);
            let tracker: &Tracker = &probe;
            queue.remove_where(
                |w| {
                    if w.deadline_ns.is_some_and(|d| d <= now_ns) {
                        Some(RejectReason::DeadlineExpired)
                    } else if recheck_fit {
                        self.check_ever_fits(tracker, &w.request, w.urgency)
                            .err()
                            .map(RejectReason::NeverFits)
                    } else {
                        None
                    }
                },
                |item, reason| {
                    self.rejected_after_wait.fetch_add(1, Ordering::Relaxed);
                    on_reject(item, reason);
                },
            );
        }
        drop(probe);
        let mut admitted = 0usize;
        while let Some(head) = queue.peek() {
            let floor = self.floor(head.urgency);
            let Ok(reservation) = Reservation::try_new(handle(), &head.request, floor) else {
                break;
            };
            let Some(w) = queue.pop() else { break };
            self.admitted_after_wait.fetch_add(1, Ordering::Relaxed);
            admitted = admitted.saturating_add(1);
            on_admit(w.item, reservation);
        }
        admitted
    }

    /// Counts a refusal decided by the caller (a request that no placement
    /// domain can ever hold), so that the counters add up.
    pub fn record_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a waiter that left a caller-managed wait structure: admitted,
    /// or refused. For callers that order and admit waiters themselves (the
    /// std runtime's scored queue with a lookahead window) instead of
    /// through [`Admission::admit_waiting`], so the counters still add up.
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

/// One request waiting for admission.
#[derive(Debug)]
pub struct Waiting<T> {
    /// The caller's item (a task, a ticket).
    pub item: T,
    /// What it needs.
    pub request: Resources,
    /// Its urgency (critical waiters go first).
    pub urgency: Urgency,
    /// Its priority (higher first, among waiters of the same urgency).
    pub priority: i32,
    /// When it must be refused if still waiting.
    pub deadline_ns: Option<u64>,
    /// Arrival order, for first come first served among equals.
    seq: u64,
}

impl<T> Waiting<T> {
    /// Whether `self` goes before `other`.
    fn before(&self, other: &Waiting<T>) -> bool {
        (self.urgency, self.priority, other.seq) > (other.urgency, other.priority, self.seq)
    }
}

/// A bounded wait queue for deferred requests: critical first, then higher
/// priority, then first come first served. A binary heap over caller-provided
/// storage `S`: a fixed array (`WaitQueue::<T, [Option<Waiting<T>>; N]>::new()`,
/// no allocation) or any slice the caller owns (a boxed slice in the std
/// runtime). A full queue hands the item back instead of panicking.
///
/// # Examples
///
/// ```
/// use respool_core::admission::{ArrayWaitQueue, Urgency};
/// use respool_core::Resources;
/// let mut q: ArrayWaitQueue<&str, 2> = ArrayWaitQueue::new();
/// q.push("a", Resources::NONE, Urgency::Normal, 0, None).unwrap();
/// q.push("b", Resources::NONE, Urgency::Normal, 5, None).unwrap();
/// assert_eq!(q.push("c", Resources::NONE, Urgency::Normal, 0, None), Err("c"));
/// assert_eq!(q.pop().map(|w| w.item), Some("b"));
/// assert_eq!(q.pop().map(|w| w.item), Some("a"));
/// ```
pub struct WaitQueue<T, S> {
    slots: S,
    len: usize,
    next_seq: u64,
    /// Earliest deadline of any waiter (a lower bound; recomputed on scans).
    next_deadline_ns: Option<u64>,
    /// Tracker settings epoch at the last never-fits scan.
    checked_epoch: Option<u64>,
    _item: PhantomData<T>,
}

/// A [`WaitQueue`] stored in an array of `N` slots.
pub type ArrayWaitQueue<T, const N: usize> = WaitQueue<T, [Option<Waiting<T>>; N]>;

impl<T, const N: usize> WaitQueue<T, [Option<Waiting<T>>; N]> {
    /// An empty queue of capacity `N` (`N` must be positive: checked at compile time).
    #[must_use]
    pub fn new() -> Self {
        const { assert!(N > 0, "a wait queue needs at least one slot") };
        WaitQueue::with_storage(core::array::from_fn(|_| None))
    }
}

impl<T, const N: usize> Default for WaitQueue<T, [Option<Waiting<T>>; N]> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, S> fmt::Debug for WaitQueue<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitQueue").field("len", &self.len).finish()
    }
}

impl<T, S> WaitQueue<T, S>
where
    S: AsRef<[Option<Waiting<T>>]> + AsMut<[Option<Waiting<T>>]>,
{
    /// A queue over `slots`; its capacity is `slots.len()`. Slots that are
    /// not `None` are cleared.
    pub fn with_storage(mut slots: S) -> Self {
        for s in slots.as_mut() {
            *s = None;
        }
        WaitQueue {
            slots,
            len: 0,
            next_seq: 0,
            next_deadline_ns: None,
            checked_epoch: None,
            _item: PhantomData,
        }
    }

    /// Number of waiters.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most waiters the queue can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.slots.as_ref().len()
    }

    fn at(&self, i: usize) -> Option<&Waiting<T>> {
        self.slots.as_ref().get(i).and_then(Option::as_ref)
    }

    /// Whether slot `a` goes before slot `b` (false when either is empty).
    fn higher(&self, a: usize, b: usize) -> bool {
        match (self.at(a), self.at(b)) {
            (Some(x), Some(y)) => x.before(y),
            _ => false,
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        let slots = self.slots.as_mut();
        if a < slots.len() && b < slots.len() {
            slots.swap(a, b);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = i.saturating_sub(1) / 2;
            if !self.higher(i, parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let left = i.saturating_mul(2).saturating_add(1);
            let right = left.saturating_add(1);
            let mut best = i;
            if left < self.len && self.higher(left, best) {
                best = left;
            }
            if right < self.len && self.higher(right, best) {
                best = right;
            }
            if best == i {
                break;
            }
            self.swap(i, best);
            i = best;
        }
    }

    /// Adds a waiter.
    ///
    /// # Errors
    ///
    /// Hands `item` back when the queue is full.
    pub fn push(
        &mut self,
        item: T,
        request: Resources,
        urgency: Urgency,
        priority: i32,
        deadline_ns: Option<u64>,
    ) -> Result<(), T> {
        let i = self.len;
        let seq = self.next_seq;
        let Some(slot) = self.slots.as_mut().get_mut(i) else {
            return Err(item);
        };
        *slot = Some(Waiting {
            item,
            request,
            urgency,
            priority,
            deadline_ns,
            seq,
        });
        self.next_seq = seq.wrapping_add(1);
        self.len = i.saturating_add(1);
        if let Some(d) = deadline_ns {
            self.next_deadline_ns = Some(self.next_deadline_ns.map_or(d, |n| n.min(d)));
        }
        self.sift_up(i);
        Ok(())
    }

    /// The waiter that goes next.
    #[must_use]
    pub fn peek(&self) -> Option<&Waiting<T>> {
        self.at(0)
    }

    /// Removes and returns the waiter that goes next.
    pub fn pop(&mut self) -> Option<Waiting<T>> {
        self.remove_at(0)
    }

    fn remove_at(&mut self, i: usize) -> Option<Waiting<T>> {
        if i >= self.len {
            return None;
        }
        let last = self.len.saturating_sub(1);
        self.swap(i, last);
        let out = self.slots.as_mut().get_mut(last).and_then(Option::take);
        self.len = last;
        if i < self.len {
            self.sift_down(i);
            self.sift_up(i);
        }
        out
    }

    /// Removes every waiter for which `verdict` returns a reason, handing each
    /// to `removed`, then restores the heap order and recomputes the earliest
    /// deadline. O(n).
    pub fn remove_where(
        &mut self,
        mut verdict: impl FnMut(&Waiting<T>) -> Option<RejectReason>,
        mut removed: impl FnMut(T, RejectReason),
    ) {
        let len = self.len;
        let slots = self.slots.as_mut();
        let mut keep = 0usize;
        for i in 0..len {
            let reason = slots.get(i).and_then(Option::as_ref).and_then(&mut verdict);
            match reason {
                Some(reason) => {
                    if let Some(w) = slots.get_mut(i).and_then(Option::take) {
                        removed(w.item, reason);
                    }
                }
                None => {
                    // `keep <= i < len`; the explicit bounds let the
                    // optimiser drop the panic path of `swap`.
                    if keep != i && keep < slots.len() && i < slots.len() {
                        slots.swap(keep, i);
                    }
                    keep = keep.saturating_add(1);
                }
            }
        }
        self.len = keep;
        // Floyd's heap construction over the survivors.
        for i in (0..keep / 2).rev() {
            self.sift_down(i);
        }
        self.next_deadline_ns = None;
        for j in 0..self.len {
            if let Some(d) = self.at(j).and_then(|w| w.deadline_ns) {
                self.next_deadline_ns = Some(self.next_deadline_ns.map_or(d, |n| n.min(d)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Dim;
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

    #[test]
    fn wait_queue_orders_by_urgency_priority_then_fifo() {
        let mut q: ArrayWaitQueue<u32, 8> = ArrayWaitQueue::new();
        let pushes = [
            (1, Urgency::Normal, 0),
            (2, Urgency::Normal, 0),
            (3, Urgency::Normal, 9),
            (4, Urgency::Critical, -5),
            (5, Urgency::Normal, 9),
            (6, Urgency::Normal, 0),
        ];
        for (item, u, p) in pushes {
            q.push(item, Resources::NONE, u, p, None).unwrap();
        }
        let order: Vec<u32> = core::iter::from_fn(|| q.pop().map(|w| w.item)).collect();
        assert_eq!(order, [4, 3, 5, 1, 2, 6]);
    }

    #[test]
    fn admit_waiting_is_head_of_line_and_expires_deadlines() {
        let t = Tracker::new(&mem(1000));
        let a = adm(Policy::BlockUntilDeadline { max_wait_ns: 100 });
        let hold = t.try_reserve(&mem(900)).unwrap();
        let mut q: ArrayWaitQueue<&str, 8> = ArrayWaitQueue::new();
        q.push("big", mem(600), Urgency::Normal, 0, Some(100))
            .unwrap();
        q.push("small", mem(50), Urgency::Normal, 0, Some(1000))
            .unwrap();
        let mut admitted = Vec::new();
        let mut rejected = Vec::new();
        // The small one fits but must not overtake the big one.
        let n = a.admit_waiting(
            &mut q,
            || &t,
            10,
            |i, r| admitted.push((i, r)),
            |i, why| rejected.push((i, why)),
        );
        assert_eq!((n, admitted.len(), rejected.len()), (0, 0, 0));
        // At t=100 the big one expires; the small one is admitted.
        let n = a.admit_waiting(
            &mut q,
            || &t,
            100,
            |i, r| admitted.push((i, r)),
            |i, why| rejected.push((i, why)),
        );
        assert_eq!(n, 1);
        assert_eq!(admitted[0].0, "small");
        assert_eq!(rejected, [("big", RejectReason::DeadlineExpired)]);
        drop(admitted);
        drop(hold);
        let s = a.stats();
        assert_eq!((s.admitted_after_wait, s.rejected_after_wait), (1, 1));
        assert!(t.is_idle());
    }

    #[test]
    fn capacity_cut_rejects_waiters_that_can_never_fit() {
        let t = Tracker::new(&mem(1000));
        let a = adm(Policy::Defer);
        let hold = t.try_reserve(&mem(1000)).unwrap();
        let mut q: ArrayWaitQueue<u8, 4> = ArrayWaitQueue::new();
        q.push(1, mem(800), Urgency::Normal, 0, None).unwrap();
        q.push(2, mem(100), Urgency::Normal, 0, None).unwrap();
        let mut rejected = Vec::new();
        a.admit_waiting(
            &mut q,
            || &t,
            0,
            |_, _| {},
            |i, why| rejected.push((i, why)),
        );
        assert!(rejected.is_empty());
        t.set_capacity(&mem(500)).unwrap();
        drop(hold);
        let mut admitted = Vec::new();
        a.admit_waiting(
            &mut q,
            || &t,
            0,
            |i, r| admitted.push((i, r)),
            |i, why| rejected.push((i, why)),
        );
        assert_eq!(rejected.len(), 1);
        assert!(matches!(rejected[0], (1, RejectReason::NeverFits(s)) if s.by == 300));
        assert_eq!(admitted.len(), 1);
        assert_eq!(admitted[0].0, 2);
    }

    #[test]
    fn heap_backed_storage_works() {
        let storage: std::boxed::Box<[Option<Waiting<u32>>]> = (0..3).map(|_| None).collect();
        let mut q = WaitQueue::with_storage(storage);
        for i in 0..3 {
            q.push(i, Resources::NONE, Urgency::Normal, 0, None)
                .unwrap();
        }
        assert_eq!(q.push(9, Resources::NONE, Urgency::Normal, 0, None), Err(9));
        assert_eq!(q.capacity(), 3);
        let mut removed = Vec::new();
        q.remove_where(
            |w| (w.item == 1).then_some(RejectReason::DeadlineExpired),
            |i, _| removed.push(i),
        );
        assert_eq!(removed, [1]);
        assert_eq!(q.pop().map(|w| w.item), Some(0));
        assert_eq!(q.pop().map(|w| w.item), Some(2));
        assert!(q.pop().is_none());
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
