//! The scheduler: admission, the scored wait queue, placement. It decides
//! whether a task runs now, waits, or is refused; it names neither the
//! engine's shared state nor its gate, and puts nothing into a run queue
//! (the engine does that with what it decides, see `crate::admit`).
//!
//! A task with requirements is admitted by the core's [`Admission`] against
//! the pool's [`Tracker`] (machine or container capacity, minus headroom and
//! external usage), then placed on a domain by the [`Placer`]. With one CPU
//! domain and no GPU (the common case), and nobody waiting, that is a
//! lock-free reservation and nothing else ([`Scheduler::decide`]). A task
//! that declares requirements and nothing more can take its reservation
//! packed ([`Scheduler::try_packed`]), to travel in its run-queue slot.
//!
//! A task that does not fit waits in a [`ScoredQueue`] (priority, aging and
//! deadline slack, combined with the pool's [`Weights`](respool_core::queue::Weights)),
//! which grows as it fills ([`Scheduler::push_waiter`]). Whenever resources
//! are released, [`Scheduler::dispatch_locked`] admits waiters: it looks at
//! the best `K` of them (the lookahead window) and starts the first that
//! fits both the tracker and a domain; it may pass over the best one (the
//! *head*) only `M` times in a row, after which only the head may start (the
//! bound of [`respool_core::packer::lookahead`]: the head waits at most for
//! `M` overtakings plus the release of what was running then). With
//! `K = 1` this is strict head-of-line admission.
//!
//! Waiters alike that need nothing but their reservation (a task that
//! declared requirements and nothing else, under `Policy::Defer`, with
//! trivial placement: see `Shared::defer_in_lane`) wait in the [`Lane`]
//! instead, a FIFO under a lock of its own, while the wait queue is empty
//! (issue 21). A worker whose task asked the same ends by handing its
//! reservation to the lane's first waiter ([`Scheduler::lane_handover`]):
//! no release, no reservation, no dispatch round, no scheduler lock. Any
//! waiter that goes into the wait queue closes the lane first, moving its
//! waiters (older) in ahead of it ([`Scheduler::close_lane`]); the lane
//! opens again when the wait queue is empty. So the two never both hold
//! waiters, and the order among waiters is the wait queue's.
//!
//! Waiters are refused (their handles resolve with
//! [`TaskError::Rejected`]) when their admission deadline passes
//! ([`Policy::BlockUntilDeadline`](respool_core::admission::Policy)), or when a capacity cut
//! means they can never fit; a waiter whose own deadline passes resolves
//! with [`TaskError::DeadlineMissed`]. A submitter blocked until admission
//! ([`Policy::BlockUntilDeadline`](respool_core::admission::Policy)) has no handle yet: its
//! refusal, whatever the reason, is its submission's error, and its task
//! comes back to it ([`Resolved::Refused`]) to be dropped before it returns
//! (so "the submission failed" always means "the job was dropped and never
//! ran").

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use respool_core::admission::{Admission, Decision as CoreDecision, RejectReason, Urgency};
use respool_core::packer::Lookahead;
use respool_core::queue::{Availability, QueueConfig, Ranked, Task};
use respool_core::{DetachedReservation, PackedReservation, Reservation, Resources, Tracker};

use crate::config::Config;
use crate::error::{BuildError, SubmitError, TaskError};
use crate::place::Placer;
use crate::sync::lock;
use crate::timer::TimerId;
use crate::waitq::{MAX_WAIT_SLOTS, WaitQueue, Waiter};
use crate::work::{Description, Work};

/// Resource accounting, admission, waiting and placement: what decides
/// when a task starts.
pub(crate) struct Scheduler {
    pub(crate) tracker: Tracker,
    pub(crate) admission: Admission,
    /// How many wait: in the wait queue, in the [`Lane`], and lane
    /// waiters counted by their submitters on the way in. Read without a
    /// lock; changed by deltas (a waiter added, waiters removed), never
    /// stored, so that a count taken outside the scheduler's lock is never
    /// overwritten from under it.
    pub(crate) waiting: AtomicUsize,
    pub(crate) state: Mutex<SchedState>,
    /// Waiters alike, without the scheduler's lock (see [`Lane`]). Its
    /// lock is taken after the scheduler's, never before.
    lane: Mutex<Lane>,
    /// Mirror of [`Lane::open`], read without a lock: a hint (the lane's
    /// lock decides). Changed only under both locks.
    lane_open: AtomicBool,
    /// The tracker's settings epoch at the last never-fits scan (mirror of
    /// `SchedState::epoch`; the pool's first settings count as scanned): a capacity or
    /// headroom change since means a dispatch round must run under the
    /// lock, even while only the lane holds waiters.
    scanned: std::sync::atomic::AtomicU64,
    /// Signalled when blocking submitters' tickets resolve.
    pub(crate) resolved: Condvar,
    /// Signalled when the wait queue has room again for submitters held
    /// back by backpressure (see `Config::backpressure`), and at
    /// `shutdown_now`.
    room: Condvar,
    /// Set when a waiting task was cancelled (purge before admitting).
    pub(crate) purge: AtomicBool,
    /// Workers give reservations back at once instead of batching them in
    /// their release logs. Set by a first waiter before its barrier
    /// (`Shared::first_waiter`), cleared by a worker after
    /// `QUIET_RELEASES` releases in a row with nobody waiting; while it
    /// stays set, a first waiter owes no barrier.
    pub(crate) direct: AtomicBool,
    /// Placement never needs deciding: the fast path never locks.
    pub(crate) trivial: bool,
    /// The most any one placement domain holds, per dimension (CPU-domain
    /// dimensions over the CPU domains, GPU ones over the GPU domains);
    /// unset with trivial placement.
    largest_domain: Resources,
    /// Waiting tasks beyond which outside submitters wait for room
    /// (`Config::backpressure`).
    backpressure: Option<usize>,
}

/// What the scheduler keeps under its lock.
pub(crate) struct SchedState {
    pub(crate) waitq: WaitQueue<Pending>,
    pub(crate) placer: Placer,
    lookahead: Lookahead,
    window: Box<[Ranked]>,
    /// The head the lookahead counter belongs to.
    head: Option<Waiter>,
    /// Tracker settings epoch at the last never-fits scan.
    epoch: u64,
    next_ticket: u64,
    /// Outcomes of blocking submitters' tasks, by ticket.
    resolved: HashMap<u64, Resolved>,
    /// Submitters waiting for room in the wait queue (backpressure).
    room_waiters: usize,
    /// Cold-start probes running, per class.
    probes: HashMap<std::sync::Arc<str>, u32>,
    /// The most probes of one class at once.
    probe_limit: u32,
    /// Per dimension, at most the smallest amount a waiter requests (a
    /// dimension a waiter leaves unset counts 0); `None` before the first
    /// waiter. Lowered by each new waiter, started afresh only when the wait
    /// queue is empty, so it may be below the true minimum (when the
    /// smallest waiter has left) but never above it. Where the tracker
    /// cannot reserve it, it cannot reserve any waiter: a dispatch round
    /// ends in O(dimensions) instead of searching the queue (issue 21).
    min_request: Option<Resources>,
    /// The latest enqueue time given a waiter: the FIFO lane of the wait
    /// queue needs them in push order, and a [`Lane`] waiter's was read
    /// before it was moved in.
    last_enqueued: u64,
    /// Lane waiters moved in that the wait queue had no slot for (counts
    /// raced at `max_waiting`): refused by the next dispatch round.
    strays: Vec<Task<Pending>>,
}

/// Waiters alike, served without the scheduler's lock: see the [module
/// documentation](self).
pub(crate) struct Lane {
    /// Waiters may join. Only while the wait queue is empty.
    open: bool,
    /// What every waiter here asks (the first one's request).
    key: Resources,
    /// Oldest first.
    queue: VecDeque<Task<Pending>>,
    /// The most that waited here at once (for the snapshot's peak).
    max_depth: usize,
}

impl SchedState {
    /// Whether no waiter can be reserved now: the tracker cannot reserve
    /// [`SchedState::min_request`] (without a floor: a waiter's floor only
    /// asks for more). `false` means "maybe".
    fn none_fits(&self, tracker: &Tracker) -> bool {
        self.min_request
            .is_some_and(|least| !tracker.fits_above(&least, &Resources::NONE))
    }

    /// Notes a new waiter's request in [`SchedState::min_request`].
    fn note_waiter(&mut self, request: &Resources) {
        self.min_request = Some(match self.min_request {
            // Waiters alike (the common case under saturation) leave it
            // as it is, without the per-dimension minimum.
            Some(least) if !self.waitq.is_empty() && least == *request => least,
            Some(least) if !self.waitq.is_empty() => least.min(request),
            _ => *request,
        });
    }

    /// Whether a task may start as far as cold-start probing goes.
    fn probe_allows(&self, desc: Option<&Description>) -> bool {
        match desc {
            Some(e) if e.probe => e
                .class
                .as_ref()
                .is_none_or(|c| self.probes.get(c).copied().unwrap_or(0) < self.probe_limit),
            _ => true,
        }
    }

    fn probe_started(&mut self, desc: Option<&Description>) {
        if let Some(c) = desc.filter(|e| e.probe).and_then(|e| e.class.as_ref()) {
            *self.probes.entry(c.clone()).or_insert(0) += 1;
        }
    }

    fn probe_finished(&mut self, class: &std::sync::Arc<str>) {
        if let Some(n) = self.probes.get_mut(class) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.probes.remove(class);
            }
        }
    }
}

/// A task waiting for resources.
pub(crate) struct Pending {
    pub(crate) work: Work,
    /// Set for a submitter blocked until admission.
    pub(crate) ticket: Option<u64>,
    /// The admission deadline (`BlockUntilDeadline`), pool clock.
    pub(crate) admit_by: Option<u64>,
    pub(crate) urgency: Urgency,
    /// The timer wake-up that refuses it at its deadline; cancelled when it
    /// leaves the wait queue otherwise (admitted, cancelled, never fits).
    pub(crate) wakeup: Option<TimerId>,
}

impl Scheduler {
    pub(crate) fn new(config: &Config) -> Result<Scheduler, BuildError> {
        let tracker = Tracker::new(&config.capacity);
        tracker
            .set_headroom(&config.headroom)
            .map_err(|e| match e {
                respool_core::TrackerError::Untracked { dim } => BuildError::Untracked {
                    setting: "headroom",
                    dim,
                },
                _ => BuildError::Invalid(e.to_string()),
            })?;
        let max_slots = config.admission.max_waiting.min(MAX_WAIT_SLOTS);
        let epoch = tracker.settings_epoch();
        let placer = Placer::new(&config.domains, config.fit);
        let (width, max_skips) = config.lookahead;
        let largest_domain = if placer.is_trivial() {
            Resources::NONE
        } else {
            config
                .domains
                .iter()
                .fold(Resources::NONE, |acc, d| acc.max(&d.capacity))
        };
        Ok(Scheduler {
            largest_domain,
            trivial: placer.is_trivial(),
            tracker,
            admission: Admission::new(config.admission),
            waiting: AtomicUsize::new(0),
            state: Mutex::new(SchedState {
                waitq: WaitQueue::new(QueueConfig::with_weights(config.weights), max_slots),
                placer,
                lookahead: Lookahead::new(width, max_skips),
                window: vec![Ranked::EMPTY; width.max(1)].into_boxed_slice(),
                head: None,
                // Every waiter is checked against the settings it came
                // under; a scan is needed only after they change.
                epoch,
                next_ticket: 0,
                resolved: HashMap::new(),
                room_waiters: 0,
                probes: HashMap::new(),
                probe_limit: config.learning.probe_concurrency.max(1),
                min_request: None,
                last_enqueued: 0,
                strays: Vec::new(),
            }),
            lane: Mutex::new(Lane {
                open: true,
                key: Resources::NONE,
                queue: VecDeque::new(),
                max_depth: 0,
            }),
            lane_open: AtomicBool::new(true),
            scanned: std::sync::atomic::AtomicU64::new(epoch),
            resolved: Condvar::new(),
            room: Condvar::new(),
            purge: AtomicBool::new(false),
            direct: AtomicBool::new(false),
            backpressure: config.backpressure,
        })
    }

    pub(crate) fn floor(&self, urgency: Urgency) -> Resources {
        match urgency {
            Urgency::Normal => self.admission.config().critical_reserve,
            Urgency::Critical => Resources::NONE,
        }
    }

    /// How many wait (read without a lock; see the field).
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Whether a dispatch round under the lock has nothing to do beyond
    /// what [`Scheduler::lane_admit`] did: the lane was open (so the wait
    /// queue empty), no cancellation asks for a purge, and no capacity or
    /// headroom change waits for its never-fits scan.
    pub(crate) fn lane_only(&self) -> bool {
        !self.purge.load(Ordering::SeqCst)
            && self.scanned.load(Ordering::SeqCst) == self.tracker.settings_epoch()
    }

    /// Whether the [`Lane`] takes waiters (a hint: see
    /// [`Scheduler::push_lane`]).
    #[inline]
    pub(crate) fn lane_open(&self) -> bool {
        self.lane_open.load(Ordering::SeqCst)
    }

    /// Puts a waiter, counted in `waiting` already, into the [`Lane`]
    /// when it is open and empty or its waiters ask what this one asks;
    /// hands it back otherwise (the caller then puts it into the wait
    /// queue with [`Scheduler::push_counted`]).
    #[allow(clippy::result_large_err)]
    pub(crate) fn push_lane(&self, mut item: Task<Pending>) -> Result<(), Task<Pending>> {
        let mut lane = lock(&self.lane);
        if !lane.open {
            return Err(item);
        }
        match lane.queue.back() {
            None => lane.key = item.request,
            Some(last) if lane.key == item.request => {
                item.enqueued_ns = item.enqueued_ns.max(last.enqueued_ns);
            }
            Some(_) => return Err(item),
        }
        lane.queue.push_back(item);
        lane.max_depth = lane.max_depth.max(lane.queue.len());
        Ok(())
    }

    /// The [`Lane`]'s first waiter, if it asks `request` and a reservation
    /// holding `held` may pass to it (see [`Tracker::fits_handover`]): the
    /// caller gives it that reservation and uncounts it.
    pub(crate) fn lane_handover(&self, held: &Resources, request: &Resources) -> Option<Pending> {
        if !self.lane_open() {
            return None;
        }
        let mut lane = lock(&self.lane);
        let first = lane.queue.front()?;
        if first.request != *request
            || !self
                .tracker
                .fits_handover(held, request, &self.floor(first.item.urgency))
        {
            return None;
        }
        lane.queue.pop_front().map(|t| t.item)
    }

    /// Admits the [`Lane`]'s first waiter if the tracker reserves it (the
    /// caller uncounts it and starts it). `Err(())`: the lane is closed
    /// (its waiters, if any, are in the wait queue: dispatch there).
    #[allow(clippy::result_unit_err)]
    pub(crate) fn lane_admit(&self) -> Result<Option<Pending>, ()> {
        let mut lane = lock(&self.lane);
        if !lane.open {
            return Err(());
        }
        let Some(first) = lane.queue.front() else {
            return Ok(None);
        };
        let floor = self.floor(first.item.urgency);
        let Ok(reservation) = Reservation::try_new(&self.tracker, &first.request, &floor) else {
            return Ok(None);
        };
        let held = reservation.detach().1;
        Ok(lane.queue.pop_front().map(|t| {
            let mut p = t.item;
            match p.work.desc.as_mut() {
                Some(desc) => desc.held = Some(held),
                None => {
                    let _ = held.release(&self.tracker);
                }
            }
            p
        }))
    }

    /// Closes the [`Lane`] (under the scheduler's lock), moving its
    /// waiters into the wait queue in their order. `true` when it moved
    /// any (the caller then runs a dispatch round: they may fit now).
    fn close_lane(&self, g: &mut SchedState) -> bool {
        // Changed only under the scheduler's lock, which the caller holds.
        if !self.lane_open.load(Ordering::SeqCst) {
            return false;
        }
        let mut lane = lock(&self.lane);
        lane.open = false;
        self.lane_open.store(false, Ordering::SeqCst);
        let moved = !lane.queue.is_empty();
        while let Some(mut t) = lane.queue.pop_front() {
            t.enqueued_ns = t.enqueued_ns.max(g.last_enqueued);
            g.last_enqueued = t.enqueued_ns;
            g.note_waiter(&t.request);
            if let Err(t) = g.waitq.push(t) {
                g.strays.push(t);
            }
        }
        moved
    }

    /// Opens the [`Lane`] again once the wait queue is empty (under the
    /// scheduler's lock).
    fn open_lane_if_idle(&self, g: &SchedState) {
        if g.waitq.is_empty() && g.strays.is_empty() && !self.lane_open.load(Ordering::SeqCst) {
            let mut lane = lock(&self.lane);
            lane.open = true;
            self.lane_open.store(true, Ordering::SeqCst);
        }
    }

    /// Whether `request` needs the tracker at all (it sets a tracked
    /// dimension).
    pub(crate) fn tracks(&self, request: &Resources) -> bool {
        !request
            .dims()
            .intersection(self.tracker.tracked())
            .is_empty()
    }

    /// A reservation packed for the run-queue slot, for a task that
    /// declared `request` and nothing else: `Some` when placement is
    /// trivial, nobody waits and it fits now; `None` otherwise (the caller
    /// then takes the general path, [`Scheduler::decide`], which decides
    /// the same way and counts).
    #[inline(always)]
    pub(crate) fn try_packed(
        &self,
        request: &Resources,
        urgency: Urgency,
    ) -> Option<PackedReservation> {
        if !self.trivial || !self.tracks(request) || self.waiting.load(Ordering::SeqCst) != 0 {
            return None;
        }
        self.admission
            .reserve_packed(&self.tracker, request, urgency)
    }

    /// The decision for a task of description `desc` (what it needs, its
    /// urgency, whether it is a cold-start probe), at `now` on the pool
    /// clock (used for a `BlockUntilDeadline` deferral's deadline only).
    /// A task admitted on a placement domain has its placement (and GPU)
    /// written into `desc`.
    pub(crate) fn decide(&self, desc: &mut Description, now: u64) -> Decision<'_> {
        let request = desc.request;
        if !self.tracks(&request) && self.trivial {
            // Nothing to account or place: no admission needed.
            return Decision::Run(None);
        }
        if self.trivial && !desc.probe && self.waiting.load(Ordering::SeqCst) == 0 {
            return match self
                .admission
                .decide(&self.tracker, &request, desc.urgency, 0, now)
            {
                CoreDecision::Accepted(r) => Decision::Run(Some(r.detach().1)),
                CoreDecision::Rejected(reason) => Decision::Refuse(reason),
                CoreDecision::Deferred(d) => Decision::Wait {
                    state: lock(&self.state),
                    wait: Wait::of(&d),
                },
            };
        }
        // Others wait, or a domain must be chosen: decide under the lock.
        let mut g = lock(&self.state);
        if let Some(s) = g.placer.never_fits(&request) {
            self.admission.record_rejected();
            return Decision::Refuse(RejectReason::NeverFits(s));
        }
        let blocked = g.placer.shortfall(&request).or_else(|| {
            // A cold-start probe of a class that already runs one waits.
            (!g.probe_allows(Some(desc))).then(|| respool_core::Shortfall {
                dim: respool_core::Dim::Memory,
                requested: request.amount(respool_core::Dim::Memory),
                available: 0,
                by: request.amount(respool_core::Dim::Memory),
            })
        });
        let decision = self.admission.decide_blocked(
            &self.tracker,
            &request,
            desc.urgency,
            // The lane's waiters too (the wait queue is empty while it
            // holds any).
            self.waiting.load(Ordering::SeqCst),
            now,
            blocked,
        );
        match decision {
            CoreDecision::Accepted(r) => match g.placer.place(&request) {
                Ok(placed) => {
                    g.probe_started(Some(desc));
                    desc.gpu = placed
                        .gpu
                        .as_ref()
                        .and_then(|p| g.placer.device(p.domain()));
                    drop(g);
                    desc.placed = placed.boxed();
                    Decision::Run(Some(r.detach().1))
                }
                Err(_) => {
                    // `shortfall` said it fits under this lock; should the
                    // packer still refuse, wait rather than fail.
                    drop(r);
                    Decision::Wait {
                        state: g,
                        wait: Wait::default(),
                    }
                }
            },
            CoreDecision::Rejected(reason) => Decision::Refuse(reason),
            CoreDecision::Deferred(d) => Decision::Wait {
                state: g,
                wait: Wait::of(&d),
            },
        }
    }

    /// The decision for a task that declared `request` and nothing else and
    /// did not get a packed reservation (it does not fit now, or holds more
    /// dimensions than a pack): placement is trivial here.
    pub(crate) fn decide_request(
        &self,
        request: &Resources,
        urgency: Urgency,
        now: u64,
    ) -> Decision<'_> {
        match self
            .admission
            .decide(&self.tracker, request, urgency, 0, now)
        {
            CoreDecision::Accepted(r) => Decision::Run(Some(r.detach().1)),
            CoreDecision::Rejected(reason) => Decision::Refuse(reason),
            CoreDecision::Deferred(d) => Decision::Wait {
                state: lock(&self.state),
                wait: Wait::of(&d),
            },
        }
    }

    /// Whether a waiter of `request` and `urgency` fits now (without
    /// reserving): only then can a new waiter change what a dispatch round
    /// admits.
    pub(crate) fn fits_now(&self, request: &Resources, urgency: Urgency) -> bool {
        self.tracker.fits_above(request, &self.floor(urgency))
    }

    /// Puts `item` in the wait queue (which grows as it fills while
    /// `max_waiting` allows), after the [`Lane`]'s waiters (closing it);
    /// hands it back when the queue is full. Counts it in `waiting`.
    // The task comes back whole when the queue is full (the core cannot
    // box it).
    #[allow(clippy::result_large_err)]
    pub(crate) fn push_waiter(
        &self,
        g: &mut SchedState,
        item: respool_core::queue::Task<Pending>,
    ) -> Result<Pushed, respool_core::queue::Task<Pending>> {
        let moved = self.push_counted(g, item)?;
        Ok(Pushed {
            first: self.waiting.fetch_add(1, Ordering::SeqCst) == 0,
            moved,
        })
    }

    /// [`Scheduler::push_waiter`] for a waiter counted in `waiting`
    /// already; `Ok(true)` when the lane's waiters were moved in ahead.
    #[allow(clippy::result_large_err)]
    pub(crate) fn push_counted(
        &self,
        g: &mut SchedState,
        mut item: respool_core::queue::Task<Pending>,
    ) -> Result<bool, respool_core::queue::Task<Pending>> {
        let moved = self.close_lane(g);
        let at = item.enqueued_ns.max(g.last_enqueued);
        item.enqueued_ns = at;
        g.note_waiter(&item.request);
        g.waitq.push(item)?;
        g.last_enqueued = at;
        Ok(moved)
    }

    /// Backpressure: holds a submitter from outside the pool while `high`
    /// or more tasks wait, until one leaves the queue
    /// ([`Scheduler::dispatch_locked`] signals it). `stop` ends the wait with
    /// `ShutDown` (`shutdown_now` sets it, then calls
    /// [`Scheduler::wake_waiters_for_room`]); under `BlockUntilDeadline` the
    /// admission deadline `admit_by` (pool clock, read by `now`) ends it with
    /// `DeadlineExpired`. `held` counts the submitters that waited (before
    /// they wait). On an error the lock is released.
    pub(crate) fn wait_for_room<'a>(
        &'a self,
        mut g: MutexGuard<'a, SchedState>,
        high: usize,
        admit_by: Option<u64>,
        stop: &AtomicBool,
        held: &std::sync::atomic::AtomicU64,
        now: impl Fn() -> u64,
    ) -> Result<MutexGuard<'a, SchedState>, SubmitError> {
        // The timed wake-up is a safety net only: leaving the queue, and
        // `shutdown_now`, signal `room`.
        let mut nap = Duration::from_millis(50);
        // The lane's waiters count (the lane does not signal `room`: a
        // submitter held while only the lane is full wakes on the nap).
        let full = || self.waiting.load(Ordering::SeqCst) >= high;
        if full() {
            held.fetch_add(1, Ordering::Relaxed);
        }
        while full() {
            if stop.load(Ordering::SeqCst) {
                return Err(SubmitError::ShutDown);
            }
            if let Some(by) = admit_by {
                let now = now();
                if now >= by {
                    self.admission.record_after_wait(false);
                    return Err(SubmitError::DeadlineExpired);
                }
                nap = nap.min(Duration::from_nanos(by - now));
            }
            g.room_waiters += 1;
            g = self
                .room
                .wait_timeout(g, nap)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            g.room_waiters -= 1;
        }
        Ok(g)
    }

    /// Wakes every submitter waiting for room (for `shutdown_now`, after it
    /// set the flag they check).
    pub(crate) fn wake_waiters_for_room(&self) {
        // Under the lock: a waiter checks the flag under it before it waits.
        let _g = lock(&self.state);
        self.room.notify_all();
    }

    /// A new ticket for a submitter that will block until its task is
    /// admitted or refused.
    pub(crate) fn new_ticket(g: &mut SchedState) -> u64 {
        g.next_ticket += 1;
        g.next_ticket
    }

    /// The outcome of a blocked submitter's ticket, once there is one.
    pub(crate) fn take_resolved(g: &mut SchedState, ticket: u64) -> Option<Resolved> {
        g.resolved.remove(&ticket)
    }

    /// Waits (at most `nap`) for a blocked submitter's outcome to be
    /// resolved.
    pub(crate) fn wait_resolved<'a>(
        &'a self,
        g: MutexGuard<'a, SchedState>,
        nap: Duration,
    ) -> MutexGuard<'a, SchedState> {
        self.resolved
            .wait_timeout(g, nap)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }

    /// The most a task of `urgency` can ever be granted, per tracked
    /// dimension: what admission can grant (capacity less headroom, less
    /// the critical reserve for normal work), and what the largest
    /// placement domain holds.
    pub(crate) fn grantable(&self, urgency: Urgency) -> Resources {
        self.admission
            .grantable(&self.tracker, urgency)
            .clamped_to(&self.largest_domain)
    }

    /// Admits waiting tasks that fit now, at `now` on the pool clock.
    /// Returns them (enqueue them after releasing the lock), the refused
    /// ones (drop them after releasing the lock: dropping a task runs user
    /// code, such as a C destructor, which may call back into the pool) and
    /// the deadline wake-ups of both, which have no purpose any more (cancel
    /// them). Refused waiters' handles are resolved here.
    pub(crate) fn dispatch_locked(&self, g: &mut SchedState, now: u64) -> Dispatched {
        let res = self;
        let mut refused: Vec<(Pending, RefusalKind)> = Vec::new();
        let epoch = res.tracker.settings_epoch();
        let purging = res.purge.swap(false, Ordering::SeqCst);
        if g.epoch != epoch || purging {
            // The never-fits scan and the purge below must see the lane's
            // waiters too.
            res.close_lane(g);
        }
        // What this round removes is uncounted at its end; the lane's
        // waiters (if it is open) are not this round's.
        let counted = g.waitq.len() + g.strays.len();
        for t in g.strays.drain(..) {
            refused.push((
                t.item,
                RefusalKind::Admission(RejectReason::QueueFull {
                    shortfall: None,
                    retry_after_ns: res.admission.retry_after_ns(),
                }),
            ));
        }
        // Deadlines: admission deadlines refuse, task deadlines miss.
        g.waitq.expire(now, |t| {
            let kind = if t.item.admit_by.is_some_and(|d| d <= now) {
                RefusalKind::Admission(RejectReason::DeadlineExpired)
            } else {
                RefusalKind::DeadlineMissed
            };
            refused.push((t.item, kind));
        });
        if purging {
            g.waitq.remove_where(
                |t| {
                    let c = t.item.work.desc.as_ref().and_then(|e| e.cancel.as_ref());
                    c.is_some_and(|c| c.is_cancelled())
                },
                |t| refused.push((t.item, RefusalKind::Cancelled)),
            );
        }
        if g.epoch != epoch {
            g.epoch = epoch;
            res.scanned.store(epoch, Ordering::SeqCst);
            let placer = &g.placer;
            let mut never: Vec<(Pending, RefusalKind)> = Vec::new();
            g.waitq.remove_where(
                |t| {
                    res.admission
                        .check_ever_fits(&res.tracker, &t.request, t.item.urgency)
                        .is_err()
                        || placer.never_fits(&t.request).is_some()
                },
                |t| {
                    let s = res
                        .admission
                        .check_ever_fits(&res.tracker, &t.request, t.item.urgency)
                        .err()
                        .or_else(|| placer.never_fits(&t.request));
                    let kind = match s {
                        Some(s) => RefusalKind::Admission(RejectReason::NeverFits(s)),
                        None => RefusalKind::Cancelled,
                    };
                    never.push((t.item, kind));
                },
            );
            refused.extend(never);
        }
        let mut admitted = Vec::new();
        loop {
            if g.waitq.is_empty() || g.none_fits(&res.tracker) {
                break;
            }
            let SchedState {
                waitq,
                placer,
                lookahead,
                window,
                head,
                probes,
                probe_limit,
                ..
            } = g;
            // The first candidate that can start, the head first; past the
            // head only while the lookahead allows it. A candidate starts
            // when it fits a domain, is not a cold-start probe of a class
            // that already runs its share, and the tracker reserves it.
            type Candidates<'q> = dyn Iterator<Item = (Waiter, Option<&'q Task<Pending>>)> + 'q;
            let pick = |candidates: &mut Candidates<'_>, lookahead: &Lookahead| {
                for (i, (who, t)) in candidates.enumerate() {
                    if i > 0 && lookahead.head_only() {
                        break;
                    }
                    let Some(t) = t else {
                        continue;
                    };
                    if !placer.fits(&t.request) {
                        continue;
                    }
                    let probing = t.item.work.desc.as_deref().filter(|e| e.probe);
                    if probing
                        .and_then(|e| e.class.as_ref())
                        .is_some_and(|c| probes.get(c).copied().unwrap_or(0) >= *probe_limit)
                    {
                        continue;
                    }
                    let floor = res.floor(t.item.urgency);
                    if let Ok(reservation) = Reservation::try_new(&res.tracker, &t.request, &floor)
                    {
                        return Some((i, who, reservation.detach().1));
                    }
                }
                None
            };
            let mut new_head = |first: Waiter| {
                if *head != Some(first) {
                    // A new head gets a full budget of overtakings.
                    lookahead.head_left();
                    *head = Some(first);
                }
            };
            let chosen = if waitq.in_lane() {
                // Waiters alike, in the FIFO lane (see `crate::waitq`): the
                // lane's front is the head, and the lookahead window is the
                // lane's first entries, in order. No search, and taking one
                // does not depend on how many wait.
                let Some((first, _)) = waitq.lane_window(1).next() else {
                    break;
                };
                new_head(first);
                let mut lane = waitq.lane_window(window.len()).map(|(w, t)| (w, Some(t)));
                pick(&mut lane, lookahead)
            } else {
                // The best waiter alone first, where scores do not depend on
                // what is free (no fit term: the default weights): a search
                // for one entry, which ends at the heaps' roots and is exact,
                // so it finds the head the full search would put first. When
                // the head can start, the lookahead window is not needed;
                // only when it cannot does the window search the queue.
                let fit_free = waitq.fit_free();
                // Without a fit term no score reads what is free.
                let avail = if fit_free {
                    Availability::new(Resources::NONE, Resources::NONE)
                } else {
                    Availability::of(&res.tracker)
                };
                let narrow = if fit_free { 1 } else { window.len() };
                let top = waitq.top_k(now, &avail, window.get_mut(..narrow).unwrap_or_default());
                let Some(first) = window.first().filter(|_| top.len > 0).copied() else {
                    break;
                };
                new_head(Waiter::Scored(first.ticket));
                let mut chosen = pick(&mut ranked(waitq, window, top.len), lookahead);
                if chosen.is_none() && narrow < window.len() {
                    // Exact in both searches (no fit term): the same head first.
                    let top = waitq.top_k(now, &avail, window);
                    chosen = pick(&mut ranked(waitq, window, top.len), lookahead);
                }
                chosen
            };
            let Some((i, who, held)) = chosen else {
                break;
            };
            let Some(t) = waitq.take(who, now) else {
                let _ = held.release(&res.tracker);
                break;
            };
            let placed = match placer.place(&t.request) {
                Ok(p) => p,
                Err(_) => {
                    // Checked under this lock just above: cannot happen; put
                    // the resources back and stop rather than loop.
                    let _ = held.release(&res.tracker);
                    refused.push((t.item, RefusalKind::Cancelled));
                    break;
                }
            };
            lookahead.record(i == 0);
            if let Some(c) = t
                .item
                .work
                .desc
                .as_deref()
                .filter(|e| e.probe)
                .and_then(|e| e.class.as_ref())
            {
                *probes.entry(c.clone()).or_insert(0) += 1;
            }
            let mut p = t.item;
            if let Some(desc) = p.work.desc.as_mut() {
                desc.held = Some(held);
                desc.gpu = placed.gpu.as_ref().and_then(|x| placer.device(x.domain()));
                desc.placed = placed.boxed();
            } else {
                let _ = held.release(&res.tracker);
                placer.release(placed);
            }
            res.admission.record_after_wait(true);
            admitted.push(p);
        }
        res.waiting
            .fetch_sub(counted - g.waitq.len(), Ordering::SeqCst);
        res.open_lane_if_idle(g);
        // Their deadline wake-ups have no purpose any more (one that fired
        // is gone already: cancelling it is a no-op).
        let wakeups = admitted
            .iter()
            .chain(refused.iter().map(|(p, _)| p))
            .filter_map(|p| p.wakeup)
            .collect();
        let mut notify = false;
        for p in &admitted {
            if let Some(t) = p.ticket {
                g.resolved.insert(t, Resolved::Admitted);
                notify = true;
            }
        }
        let mut dropped = Vec::with_capacity(refused.len());
        for (p, kind) in refused {
            if let Some(t) = p.ticket {
                // A blocked submitter has no handle yet: whatever the
                // reason, the refusal is its error, and the task goes back
                // to it. (The task's own deadline passing before the
                // admission deadline is an expired wait as well.)
                let error = match kind {
                    RefusalKind::Admission(reason) => SubmitError::from_reject(reason),
                    RefusalKind::DeadlineMissed | RefusalKind::Cancelled => {
                        SubmitError::DeadlineExpired
                    }
                };
                res.admission.record_after_wait(false);
                g.resolved.insert(t, Resolved::Refused(error, p.work));
                notify = true;
                continue;
            }
            if matches!(kind, RefusalKind::Cancelled) {
                // Cancelled by its handle (already resolved): just dropped.
                dropped.push((p.work, Ending::Cancelled));
                continue;
            }
            res.admission.record_after_wait(false);
            let (error, ending) = match kind {
                RefusalKind::Admission(reason) => {
                    let e = SubmitError::from_reject(reason);
                    (TaskError::Rejected(e.clone()), Ending::Refused(e))
                }
                _ => (TaskError::DeadlineMissed, Ending::DeadlineMissed),
            };
            match p.work.desc.as_ref().and_then(|e| e.cancel.as_ref()) {
                Some(c) => {
                    c.fail(error);
                }
                None => {
                    tracing::warn!(target: "respool::task", error = %error,
                        "a task without a handle was refused while waiting");
                }
            }
            // Dropping the task drops its job without running it.
            dropped.push((p.work, ending));
        }
        if notify {
            res.resolved.notify_all();
        }
        if g.room_waiters > 0
            && self
                .backpressure
                .is_some_and(|high| res.waiting.load(Ordering::SeqCst) < high)
        {
            res.room.notify_all();
        }
        Dispatched {
            admitted,
            dropped,
            wakeups,
        }
    }

    /// Releases a task's reservation and placement (exactly once: the tokens
    /// are taken out of the task).
    pub(crate) fn release(&self, desc: &mut Description) {
        // Both were taken on this tracker, so releasing cannot fail; if it
        // ever did, leaking capacity is safer than a panic here.
        if let Some(held) = desc.held.take() {
            let _ = held.release(&self.tracker);
        }
        if desc.placed.is_some() || desc.probe {
            let mut g = lock(&self.state);
            if let Some(placed) = desc.placed.take() {
                g.placer.release(*placed);
            }
            if desc.probe {
                desc.probe = false;
                if let Some(c) = &desc.class {
                    g.probe_finished(c);
                }
            }
        }
    }

    /// Fragmentation of the CPU domains for the request at the head of the
    /// wait queue, what each domain holds, and the most tasks that waited at
    /// once (for the snapshot), at `now` on the pool clock.
    /// Fragmentation, per-domain use, the peak wait-queue depth, and the
    /// request of the task at the head of the wait queue (none: empty).
    pub(crate) fn placement_view(
        &self,
        now: u64,
    ) -> (
        respool_core::Ppm,
        Vec<(Resources, Resources)>,
        usize,
        Resources,
    ) {
        let g = lock(&self.state);
        let (lane_head, lane_peak) = {
            let lane = lock(&self.lane);
            (lane.queue.front().map(|t| t.request), lane.max_depth)
        };
        let typical = g
            .waitq
            .head(now)
            .map(|t| t.request)
            .or(lane_head)
            .unwrap_or(Resources::NONE);
        let frag = if typical.is_empty() {
            respool_core::Ppm::ZERO
        } else {
            g.placer.fragmentation(&typical)
        };
        (
            frag,
            g.placer.usage(),
            g.waitq.max_depth().max(lane_peak),
            typical,
        )
    }

    /// Removes every waiting task (shutdown now) and returns them, except
    /// blocked submitters' tasks: those submissions have not succeeded, so
    /// their tasks go back to their submitters with `ShutDown` (never to
    /// the caller, who could run a task whose submission failed).
    pub(crate) fn drain_waiting(&self) -> Vec<Work> {
        let res = self;
        let mut g = lock(&res.state);
        res.close_lane(&mut g);
        let counted = g.waitq.len() + g.strays.len();
        let mut out = Vec::new();
        let mut blocked = Vec::new();
        for t in std::mem::take(&mut g.strays) {
            match t.item.ticket {
                Some(ticket) => blocked.push((ticket, t.item.work)),
                None => out.push(t.item.work),
            }
        }
        g.waitq.remove_where(
            |_| true,
            |t| match t.item.ticket {
                Some(ticket) => blocked.push((ticket, t.item.work)),
                None => out.push(t.item.work),
            },
        );
        for (ticket, task) in blocked {
            g.resolved
                .insert(ticket, Resolved::Refused(SubmitError::ShutDown, task));
        }
        res.waiting.fetch_sub(counted, Ordering::SeqCst);
        res.open_lane_if_idle(&g);
        drop(g);
        res.resolved.notify_all();
        out
    }
}

/// The first `len` entries of a lookahead window found in the scored queue,
/// as candidates for a dispatch round.
fn ranked<'q>(
    waitq: &'q WaitQueue<Pending>,
    window: &'q [Ranked],
    len: usize,
) -> impl Iterator<Item = (Waiter, Option<&'q Task<Pending>>)> + 'q {
    window
        .get(..len)
        .unwrap_or_default()
        .iter()
        .map(|r| (Waiter::Scored(r.ticket), waitq.get(r.ticket)))
}

/// The queue priority of a waiter: critical tasks wait ahead of every normal
/// task of priority below 2^20.
pub(crate) fn queue_priority(desc: &Description) -> i32 {
    match desc.urgency {
        Urgency::Critical => desc.priority.saturating_add(1 << 20),
        Urgency::Normal => desc.priority,
    }
}

/// How a deferred task waits.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wait {
    /// When it is refused under `BlockUntilDeadline` (pool clock).
    pub(crate) admit_by: Option<u64>,
    /// Where it does not fit (`None`: it waits behind earlier waiters).
    pub(crate) shortfall: Option<respool_core::Shortfall>,
}

impl Wait {
    fn of(d: &respool_core::admission::Deferral) -> Wait {
        Wait {
            admit_by: d.deadline_ns,
            shortfall: d.shortfall,
        }
    }
}

/// What [`Scheduler::push_waiter`] did besides queueing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pushed {
    /// The first waiter since nobody waited: the caller owes the barrier
    /// that brings the workers' release logs back (see `Shared::defer`).
    pub(crate) first: bool,
    /// The [`Lane`]'s waiters were moved into the wait queue ahead of it:
    /// they may fit now, so the caller runs a dispatch round.
    pub(crate) moved: bool,
}

/// What the scheduler decided for a submission.
pub(crate) enum Decision<'a> {
    /// It runs: admitted, with its reservation (`None`: it needs nothing
    /// the pool tracks).
    Run(Option<DetachedReservation>),
    /// It waits: the caller defers it under this lock (so that no dispatch
    /// round runs between the decision and the deferral), refused at
    /// `admit_by` (pool clock) under `BlockUntilDeadline`.
    Wait {
        state: MutexGuard<'a, SchedState>,
        wait: Wait,
    },
    /// It is refused at once.
    Refuse(RejectReason),
}

/// The outcome of one dispatch round.
#[derive(Default)]
pub(crate) struct Dispatched {
    pub(crate) admitted: Vec<Pending>,
    /// The refused, with how they ended.
    pub(crate) dropped: Vec<(Work, Ending)>,
    /// Deadline wake-ups of the waiters that left: to cancel.
    pub(crate) wakeups: Vec<TimerId>,
}

impl Dispatched {
    pub(crate) fn is_empty(&self) -> bool {
        self.admitted.is_empty() && self.dropped.is_empty()
    }
}

/// How a blocking submitter's task left the wait queue.
pub(crate) enum Resolved {
    /// Admitted: it is in (or on its way to) a run queue.
    Admitted,
    /// Refused: the task comes back to the submitter, who drops it (so a C
    /// task's `destroy` has run) before returning the error. Dropping it on
    /// the refusing thread instead (the timer, a worker, `shutdown_now`)
    /// would let the submitter return first.
    Refused(SubmitError, Work),
}

/// How a refused waiter ended (for its observer, if any).
pub(crate) enum Ending {
    /// Cancelled by its handle.
    Cancelled,
    /// Its own deadline passed.
    DeadlineMissed,
    /// Refused after waiting.
    Refused(SubmitError),
}

impl Ending {
    /// Sends the task's terminal event, if it is observed.
    pub(crate) fn report(&self, work: &Work) {
        use crate::observe::EventKind;
        if let Some(o) = work.desc.as_ref().and_then(|d| d.observed.as_ref()) {
            o.end(match self {
                Ending::Cancelled => EventKind::Cancelled,
                Ending::DeadlineMissed => EventKind::DeadlineMissed,
                Ending::Refused(error) => EventKind::Refused { error },
            });
        }
    }
}

/// Why a waiter left the queue without being admitted.
enum RefusalKind {
    Admission(RejectReason),
    DeadlineMissed,
    Cancelled,
}
