//! The resource-aware path: admission, the scored wait queue, placement.
//!
//! A task with requirements is admitted by the core's [`Admission`] against
//! the pool's [`Tracker`] (machine or container capacity, minus headroom and
//! external usage), then placed on a domain by the [`Placer`]. With one CPU
//! domain and no GPU (the common case), and nobody waiting, that is a
//! lock-free reservation and nothing else. A task that declares
//! requirements and nothing more (no class, priority, deadline, timeout or
//! handle) goes further ([`Shared::submit_packed`]): its reservation is taken
//! straight into a [`PackedReservation`](respool_core::PackedReservation)
//! that travels in the run-queue slot, so no task description is filled,
//! recycled or read on the worker, and the worker merges it into its batch
//! of releases.
//!
//! A task that does not fit waits in a [`ScoredQueue`] (priority, aging and
//! deadline slack, combined with the pool's [`Weights`]). Whenever resources
//! are released, [`Shared::dispatch`] admits waiters: it looks at the best
//! `K` of them (the lookahead window) and starts the first that fits both the
//! tracker and a domain; it may pass over the best one (the *head*) only
//! `M` times in a row, after which only the head may start (the bound of
//! [`respool_core::packer::lookahead`]: the head waits at most for `M`
//! overtakings plus the release of what was running then). With `K = 1` this
//! is strict head-of-line admission.
//!
//! Waiters are refused (their handles resolve with
//! [`TaskError::Rejected`]) when their admission deadline passes
//! ([`Policy::BlockUntilDeadline`](crate::Policy)), or when a capacity cut
//! means they can never fit; a waiter whose own deadline passes resolves
//! with [`TaskError::DeadlineMissed`]. A submitter blocked until admission
//! ([`Policy::BlockUntilDeadline`](crate::Policy)) has no handle yet: its
//! refusal, whatever the reason, is its submission's error, and its task
//! comes back to it to be dropped before it returns (so "the submission
//! failed" always means "the job was dropped and never ran").

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use respool_core::admission::{Admission, Decision, Policy, RejectReason, Urgency};
use respool_core::packer::Lookahead;
use respool_core::queue::{Availability, QueueConfig, Ranked, ScoredQueue, Slot, Ticket};
use respool_core::{Reservation, Resources, Tracker};

use crate::config::Config;
use crate::engine::{GateGuard, Shared};
use crate::error::{BuildError, SubmitError, TaskError};
use crate::place::Placer;
use crate::sync::lock;
use crate::work::Description;
use crate::work::Work;

/// Resource accounting, admission, waiting and placement.
pub(crate) struct Resourcing {
    pub(crate) tracker: Tracker,
    pub(crate) admission: Admission,
    /// Mirror of the wait queue's length, read without the lock.
    pub(crate) waiting: AtomicUsize,
    pub(crate) sched: Mutex<Sched>,
    /// Signalled when blocking submitters' tickets resolve.
    pub(crate) resolved: Condvar,
    /// Signalled when the wait queue has room again for submitters held
    /// back by backpressure (see `Config::backpressure`), and at
    /// `shutdown_now`.
    room: Condvar,
    /// Set when a waiting task was cancelled (purge before admitting).
    pub(crate) purge: AtomicBool,
    /// Placement never needs deciding: the fast path never locks.
    pub(crate) trivial: bool,
    /// The most any one placement domain holds, per dimension (CPU-domain
    /// dimensions over the CPU domains, GPU ones over the GPU domains);
    /// unset with trivial placement.
    largest_domain: Resources,
}

type WaitStorage = Box<[Slot<Pending>]>;

/// Slots of a new wait queue: it doubles as it fills, up to `max_waiting`.
const INITIAL_WAIT_SLOTS: usize = 64;

/// The most slots a wait queue may have (the core queue's limit).
const MAX_WAIT_SLOTS: usize = u32::MAX as usize;

fn wait_storage(slots: usize) -> WaitStorage {
    (0..slots).map(|_| Slot::new()).collect()
}

pub(crate) struct Sched {
    pub(crate) waitq: ScoredQueue<Pending, WaitStorage>,
    pub(crate) placer: Placer,
    lookahead: Lookahead,
    window: Box<[Ranked]>,
    /// The head the lookahead counter belongs to.
    head: Option<Ticket>,
    /// Tracker settings epoch at the last never-fits scan.
    epoch: Option<u64>,
    next_ticket: u64,
    /// Outcomes of blocking submitters' tasks, by ticket.
    resolved: HashMap<u64, Resolved>,
    /// Submitters waiting for room in the wait queue (backpressure).
    room_waiters: usize,
    /// The most slots the wait queue may grow to (`max_waiting`).
    max_slots: usize,
    /// Cold-start probes running, per class.
    probes: HashMap<std::sync::Arc<str>, u32>,
    /// The most probes of one class at once.
    probe_limit: u32,
}

impl Sched {
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
    pub(crate) task: Work,
    /// Set for a submitter blocked until admission.
    ticket: Option<u64>,
    /// The admission deadline (`BlockUntilDeadline`), pool clock.
    admit_by: Option<u64>,
    urgency: Urgency,
    /// The timer wake-up that refuses it at its deadline; cancelled when it
    /// leaves the wait queue otherwise (admitted, cancelled, never fits).
    wakeup: Option<crate::timer::TimerId>,
}

impl Resourcing {
    pub(crate) fn new(config: &Config) -> Result<Resourcing, BuildError> {
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
        let slots = wait_storage(max_slots.min(INITIAL_WAIT_SLOTS));
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
        Ok(Resourcing {
            largest_domain,
            trivial: placer.is_trivial(),
            tracker,
            admission: Admission::new(config.admission),
            waiting: AtomicUsize::new(0),
            sched: Mutex::new(Sched {
                waitq: ScoredQueue::with_storage(slots, QueueConfig::with_weights(config.weights)),
                placer,
                lookahead: Lookahead::new(width, max_skips),
                window: vec![Ranked::EMPTY; width.max(1)].into_boxed_slice(),
                head: None,
                epoch: None,
                next_ticket: 0,
                resolved: HashMap::new(),
                room_waiters: 0,
                max_slots,
                probes: HashMap::new(),
                probe_limit: config.learning.probe_concurrency.max(1),
            }),
            resolved: Condvar::new(),
            room: Condvar::new(),
            purge: AtomicBool::new(false),
        })
    }

    fn floor(&self, urgency: Urgency) -> Resources {
        match urgency {
            Urgency::Normal => self.admission.config().critical_reserve,
            Urgency::Critical => Resources::NONE,
        }
    }
}

/// The queue priority of a waiter: critical tasks wait ahead of every normal
/// task of priority below 2^20.
fn queue_priority(desc: &Description) -> i32 {
    match desc.urgency {
        Urgency::Critical => desc.priority.saturating_add(1 << 20),
        Urgency::Normal => desc.priority,
    }
}

impl Shared {
    /// The resource-aware path (see the [module documentation](self)).
    pub(crate) fn submit_described(
        &self,
        job: crate::job::Job,
        desc: Box<Description>,
    ) -> Result<(), SubmitError> {
        self.submit_described_as(job, desc, false)
    }

    /// The next attempt of a retrying task, from the pool's timer. It is
    /// part of a task already accepted, so it is let in while shutting down
    /// gracefully, and it never blocks the timer thread (which drives every
    /// deadline and timeout) under `BlockUntilDeadline`: it waits like a
    /// deferred task, and its handle is refused at the admission deadline.
    pub(crate) fn resubmit(
        &self,
        job: crate::job::Job,
        desc: Box<Description>,
    ) -> Result<(), SubmitError> {
        self.submit_described_as(job, desc, true)
    }

    fn submit_described_as(
        &self,
        job: crate::job::Job,
        desc: Box<Description>,
        internal: bool,
    ) -> Result<(), SubmitError> {
        if !self.gate.enter(|| internal || self.on_own_worker()) {
            return Err(SubmitError::ShutDown);
        }
        let _g = GateGuard(&self.gate);
        self.metrics.submitted.other.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(target: "respool::task", class = ?desc.class, request = %desc.request, "queued");
        let started = crate::metrics::sample();
        self.submit_entered(job, desc, started, !internal)
    }

    /// A task that declared requirements and nothing else (see
    /// `TaskBuilder::travels_packed`). When placement is trivial, nobody waits and
    /// it fits, it is admitted and queued with its reservation packed in the
    /// queue slot: no `Description` is filled, recycled or touched on the worker.
    /// Otherwise (it must wait, is refused, holds more dimensions than a
    /// pack does, or placement must be decided) `make` builds its
    /// description and it takes the general path, with the same decision.
    ///
    /// `job(packed)` builds the job once the path is known (`packed`: it
    /// travels without a description, which matters to a job with a handle:
    /// see `Publish::Stashed`); `handle`: a handle waits for its result;
    /// `started`: the timing sample's clock read when this submission is in
    /// it (it also starts the schedule-time sample).
    pub(crate) fn submit_packed(
        &self,
        job: impl FnOnce(bool) -> crate::job::Job,
        request: &Resources,
        urgency: Urgency,
        started: Option<Instant>,
        handle: bool,
        make: impl FnOnce() -> Box<Description>,
    ) -> Result<(), SubmitError> {
        if !self.gate.enter(|| self.on_own_worker()) {
            return Err(SubmitError::ShutDown);
        }
        let _g = GateGuard(&self.gate);
        tracing::trace!(target: "respool::task", request = %request, "queued");
        let res = &self.res;
        if !res.trivial
            || request
                .dims()
                .intersection(res.tracker.tracked())
                .is_empty()
            || res.waiting.load(Ordering::SeqCst) != 0
        {
            self.metrics.submitted.other.fetch_add(1, Ordering::Relaxed);
            return self.submit_entered(job(false), make(), started, true);
        }
        if let Some(packed) = res.admission.reserve_packed(&res.tracker, request, urgency) {
            // Counted as submitted and accepted in one add (see `Submitted`),
            // before a worker can finish it.
            self.metrics
                .submitted
                .packed
                .fetch_add(1, Ordering::Relaxed);
            // The submission time of the timing sample is the clock read
            // that started the schedule-time sample.
            let submitted_ns = started.map_or(0, |t| {
                self.metrics.schedule.record(t.elapsed());
                self.ns_at(t).max(1)
            });
            tracing::trace!(target: "respool::task", "scheduled");
            // No domain, no priority lane: straight into the run queue
            // (what `enqueue` does with a task without a description).
            self.push_shared(Work {
                job: job(true),
                desc: None,
                packed: Some(crate::work::Packed::new(packed, submitted_ns, handle)),
            });
            return Ok(());
        }
        // It does not fit now, or holds more dimensions than a pack: decide.
        self.metrics.submitted.other.fetch_add(1, Ordering::Relaxed);
        match res
            .admission
            .decide(&res.tracker, request, urgency, 0, self.decision_now())
        {
            Decision::Accepted(r) => {
                self.start_accepted(job(false), make(), r.detach().1, started);
                Ok(())
            }
            Decision::Rejected(reason) => Err(self.refused_at_submit(reason, None)),
            Decision::Deferred(d) => {
                let desc = make();
                let g = lock(&res.sched);
                self.defer_locked(g, job(false), desc, d.deadline_ns, started, true)
            }
        }
    }

    /// `submit_described` once the gate is entered and the submission counted.
    /// `block`: a submitter deferred under `BlockUntilDeadline` waits for
    /// the outcome (else its handle hears of it).
    fn submit_entered(
        &self,
        job: crate::job::Job,
        mut desc: Box<Description>,
        started: Option<Instant>,
        block: bool,
    ) -> Result<(), SubmitError> {
        let request = desc.request;
        let res = &self.res;
        if request
            .dims()
            .intersection(res.tracker.tracked())
            .is_empty()
            && res.trivial
        {
            // Nothing to account or place: no admission needed.
            self.enqueue(Work {
                job,
                desc: Some(desc),
                packed: None,
            });
            return Ok(());
        }
        if res.trivial && !desc.probe && res.waiting.load(Ordering::SeqCst) == 0 {
            match res
                .admission
                .decide(&res.tracker, &request, desc.urgency, 0, self.decision_now())
            {
                Decision::Accepted(r) => {
                    self.start_accepted(job, desc, r.detach().1, started);
                    return Ok(());
                }
                Decision::Rejected(reason) => {
                    return Err(self.refused_at_submit(reason, desc.class.as_ref()));
                }
                Decision::Deferred(d) => {
                    let g = lock(&res.sched);
                    return self.defer_locked(g, job, desc, d.deadline_ns, started, block);
                }
            }
        }
        // Others wait, or a domain must be chosen: decide under the lock.
        let mut g = lock(&res.sched);
        if let Some(s) = g.placer.never_fits(&request) {
            res.admission.record_rejected();
            return Err(self.refused_at_submit(RejectReason::NeverFits(s), desc.class.as_ref()));
        }
        let blocked = g.placer.shortfall(&request).or_else(|| {
            // A cold-start probe of a class that already runs one waits.
            (!g.probe_allows(Some(&desc))).then(|| respool_core::Shortfall {
                dim: respool_core::Dim::Memory,
                requested: request.amount(respool_core::Dim::Memory),
                available: 0,
                by: request.amount(respool_core::Dim::Memory),
            })
        });
        let decision = res.admission.decide_blocked(
            &res.tracker,
            &request,
            desc.urgency,
            g.waitq.len(),
            self.decision_now(),
            blocked,
        );
        match decision {
            Decision::Accepted(r) => match g.placer.place(&request) {
                Ok(placed) => {
                    g.probe_started(Some(&desc));
                    desc.gpu = placed
                        .gpu
                        .as_ref()
                        .and_then(|p| g.placer.device(p.domain()));
                    drop(g);
                    desc.placed = Some(Box::new(placed));
                    self.start_accepted(job, desc, r.detach().1, started);
                    Ok(())
                }
                Err(_) => {
                    // `shortfall` said it fits under this lock; should the
                    // packer still refuse, wait rather than fail.
                    drop(r);
                    self.defer_locked(g, job, desc, None, started, block)
                }
            },
            Decision::Rejected(reason) => Err(self.refused_at_submit(reason, desc.class.as_ref())),
            Decision::Deferred(d) => self.defer_locked(g, job, desc, d.deadline_ns, started, block),
        }
    }

    /// The clock for an admission decision. Only `BlockUntilDeadline` uses it
    /// (the deadline of a deferral), so other policies skip reading it on
    /// every submit.
    fn decision_now(&self) -> u64 {
        if matches!(
            self.res.admission.config().policy,
            Policy::BlockUntilDeadline { .. }
        ) {
            self.now_ns()
        } else {
            0
        }
    }

    /// An admitted task, holding `held`, into a run queue.
    fn start_accepted(
        &self,
        job: crate::job::Job,
        mut desc: Box<Description>,
        held: respool_core::DetachedReservation,
        started: Option<Instant>,
    ) {
        desc.held = Some(held);
        if let Some(t) = started {
            self.metrics.schedule.record(t.elapsed());
        }
        tracing::trace!(target: "respool::task", class = ?desc.class, "scheduled");
        self.enqueue(Work {
            job,
            desc: Some(desc),
            packed: None,
        });
    }

    fn refused_at_submit(
        &self,
        reason: RejectReason,
        class: Option<&std::sync::Arc<str>>,
    ) -> SubmitError {
        self.metrics
            .rejected_at_submit
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "respool::task", class = ?class, %reason, "rejected");
        SubmitError::from_reject(reason)
    }

    /// Puts a task in the wait queue (and, with an admission deadline and
    /// `block`, blocks the submitter until it is admitted or refused).
    fn defer_locked<'a>(
        &'a self,
        mut g: std::sync::MutexGuard<'a, Sched>,
        job: crate::job::Job,
        desc: Box<Description>,
        admit_by: Option<u64>,
        started: Option<Instant>,
        block: bool,
    ) -> Result<(), SubmitError> {
        let res = &self.res;
        if let Some(high) = self.config.backpressure.filter(|_| block) {
            if g.waitq.len() >= high && !self.on_own_worker() {
                g = match self.wait_for_room(g, high, admit_by) {
                    Ok(g) => g,
                    Err(e) => {
                        // Refused while waiting for room: the job is
                        // dropped (outside the lock) before returning.
                        drop((job, desc));
                        return Err(e);
                    }
                };
            }
        }
        let now = self.now_ns();
        let request = desc.request;
        let deadline = desc.deadline.map(|d| self.instant_ns(d));
        let priority = queue_priority(&desc);
        let urgency = desc.urgency;
        let blocking = block && admit_by.is_some();
        let ticket = blocking.then(|| {
            g.next_ticket += 1;
            g.next_ticket
        });
        let class = desc.class.clone();
        let stop_by = match (deadline, admit_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A wake-up at the deadline, so that the waiter is refused then
        // even if nothing else happens. Not work: once this waiter is
        // admitted it has no purpose (it is cancelled), and it must not hold
        // up a graceful shutdown.
        let wakeup = stop_by.and_then(|at| {
            let weak = self.weak_self();
            self.timer.schedule_wakeup(
                self.epoch_instant() + Duration::from_nanos(at),
                Box::new(move || {
                    if let Some(s) = weak.upgrade() {
                        s.dispatch();
                    }
                }),
            )
        });
        let pending = Pending {
            task: Work {
                job,
                desc: Some(desc),
                packed: None,
            },
            ticket,
            admit_by,
            urgency,
            wakeup,
        };
        let mut item =
            respool_core::queue::Task::new(pending, request, now).with_priority(priority);
        if let Some(d) = stop_by {
            item = item.with_deadline(d);
        }
        // The task comes back whole when the queue is full (the core cannot
        // box it).
        #[allow(clippy::result_large_err)]
        let pushed = g.waitq.push(item).or_else(|back| {
            // Full: grow the storage (doubling) while `max_waiting` allows.
            let cap = g.waitq.capacity();
            let bigger = cap
                .saturating_mul(2)
                .max(INITIAL_WAIT_SLOTS)
                .min(g.max_slots);
            if bigger > cap {
                let _ = g.waitq.grow(wait_storage(bigger));
            }
            g.waitq.push(back)
        });
        if let Err(refused) = pushed {
            if let Some(id) = wakeup {
                self.timer.cancel(id);
            }
            self.metrics
                .rejected_at_submit
                .fetch_add(1, Ordering::Relaxed);
            // The job is dropped (running user code, such as a C `destroy`,
            // which may call back into the pool) outside the lock.
            drop(g);
            drop(refused);
            return Err(SubmitError::QueueFull {
                retry_after: res.admission.retry_after_ns().map(Duration::from_nanos),
            });
        }
        tracing::debug!(target: "respool::task", class = ?class, "deferred");
        res.waiting.store(g.waitq.len(), Ordering::SeqCst);
        let first = g.waitq.len() == 1;
        if first {
            // The first waiter since the queue was last empty. The barrier
            // pairs with the fences after a release (`give_back`,
            // `release`): a release that read `waiting == 0` before our
            // store is visible to this dispatch. And with the light barrier
            // after a worker adds to its release log: either the drain below
            // sees the addition, or that worker sees us waiting and gives its
            // log back itself. Releases batched by workers are given back
            // before deciding.
            crate::barrier::heavy();
            self.drain_pending();
        }
        // Otherwise `waiting` has stayed above zero since that first
        // waiter's barrier (it is only stored under this lock, and the queue
        // has not been empty since): every release and every addition to a
        // log since then has seen it and dispatches, or gives its log back,
        // by itself; what the logs held before, that waiter's drain gave
        // back. So a deferral under load (the queue already waiting) costs no
        // `membarrier(2)`, whose interrupts would reach every running worker.
        //
        // For the same reason, a later waiter that does not fit now needs no
        // dispatch round: the others were last looked at by the round that
        // followed the last release, capacity change, cancellation or
        // deadline (each dispatches by itself), and this one cannot be
        // admitted. Under saturation that round (a scored search of the
        // wait queue) is most of what a deferral costs.
        let mut admitted = if first || res.tracker.fits_above(&request, &res.floor(urgency)) {
            self.dispatch_locked(&mut g)
        } else {
            Dispatched::default()
        };
        if let Some(t) = started {
            self.metrics.schedule.record(t.elapsed());
        }
        let Some(ticket) = ticket else {
            drop(g);
            self.push_admitted(admitted);
            return Ok(());
        };
        // Block until admitted or refused, outside the submission gate:
        // `shutdown_now` waits for the gate to empty, and a blocked
        // submitter must not hold it up (it refuses the waiter instead,
        // which wakes us). The caller's entry is given back here and taken
        // again (an internal entry, let in while shutting down) before
        // returning, so the caller's guard stays balanced. What our own
        // dispatches admit meanwhile is pushed inside an entry of its own.
        if !admitted.is_empty() {
            drop(g);
            self.push_admitted(std::mem::take(&mut admitted));
            g = lock(&res.sched);
        }
        self.gate.exit();
        // A task of this pool that submits runs queued tasks while it waits
        // (as a scope does): tasks admitted earlier may be waiting for a
        // worker with their reservations, and the one this submission needs
        // may be theirs. Queued tasks do not signal `resolved`, so between
        // helps it naps, from 1 ms up to the 50 ms of any other submitter
        // while nothing comes to run.
        let helper = self.on_own_worker();
        let mut nap = if helper { 1 } else { 50 };
        let outcome = loop {
            if let Some(outcome) = g.resolved.remove(&ticket) {
                break outcome;
            }
            if helper {
                drop(g);
                let helped = self.help_once();
                g = lock(&res.sched);
                if helped {
                    nap = 1;
                    continue;
                }
            }
            g = res
                .resolved
                .wait_timeout(g, Duration::from_millis(nap))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            nap = (nap * 2).min(50);
            // A timed wake-up re-runs admission (deadlines are also driven by
            // the timer; this is a safety net).
            let d = self.dispatch_locked(&mut g);
            if !d.is_empty() {
                drop(g);
                self.gate.enter(|| true);
                let in_gate = GateGuard(&self.gate);
                self.push_admitted(d);
                drop(in_gate);
                g = lock(&res.sched);
            }
        };
        drop(g);
        self.gate.enter(|| true);
        match outcome {
            Resolved::Admitted => Ok(()),
            Resolved::Refused(error, task) => {
                // The job is dropped (a C task's `destroy` runs) before the
                // error is returned.
                drop(task);
                Err(error)
            }
        }
    }

    /// Backpressure: holds a submitter from outside the pool while `high`
    /// or more tasks wait, until one leaves the queue (`dispatch_locked`
    /// signals `room`). It keeps its entry in the submission gate, so a
    /// graceful shutdown waits for its task too (the workers go on draining
    /// the queue meanwhile); `shutdown_now` ends the wait with `ShutDown`.
    /// Under `BlockUntilDeadline` the admission deadline `admit_by` ends it
    /// with `DeadlineExpired`. On an error the lock is released.
    fn wait_for_room<'a>(
        &'a self,
        mut g: std::sync::MutexGuard<'a, Sched>,
        high: usize,
        admit_by: Option<u64>,
    ) -> Result<std::sync::MutexGuard<'a, Sched>, SubmitError> {
        // The timed wake-up is a safety net only: leaving the queue, and
        // `shutdown_now`, signal `room`.
        let mut nap = Duration::from_millis(50);
        if g.waitq.len() >= high {
            self.metrics.held_for_room.fetch_add(1, Ordering::Relaxed);
        }
        while g.waitq.len() >= high {
            if self.stop_now.load(Ordering::SeqCst) {
                return Err(SubmitError::ShutDown);
            }
            if let Some(by) = admit_by {
                let now = self.now_ns();
                if now >= by {
                    self.res.admission.record_after_wait(false);
                    return Err(SubmitError::DeadlineExpired);
                }
                nap = nap.min(Duration::from_nanos(by - now));
            }
            g.room_waiters += 1;
            g = self
                .res
                .room
                .wait_timeout(g, nap)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            g.room_waiters -= 1;
        }
        Ok(g)
    }

    /// Wakes every submitter waiting for room (for `shutdown_now`, after it
    /// set `stop_now`).
    pub(crate) fn wake_waiters_for_room(&self) {
        // Under the lock: a waiter checks `stop_now` under it before it waits.
        let _g = lock(&self.res.sched);
        self.res.room.notify_all();
    }

    /// The most a task of `urgency` can ever be granted, per tracked
    /// dimension: what admission can grant (capacity less headroom, less
    /// the critical reserve for normal work), and what the largest
    /// placement domain holds.
    pub(crate) fn grantable(&self, urgency: Urgency) -> Resources {
        self.res
            .admission
            .grantable(&self.res.tracker, urgency)
            .clamped_to(&self.res.largest_domain)
    }

    /// Admits waiting tasks that fit now. Returns them (push them after
    /// releasing the lock) and the refused ones (drop them after releasing
    /// the lock: dropping a task runs user code, such as a C destructor,
    /// which may call back into the pool). Refused waiters' handles are
    /// resolved here.
    pub(crate) fn dispatch_locked(&self, g: &mut Sched) -> Dispatched {
        let res = &self.res;
        let now = self.now_ns();
        let mut refused: Vec<(Pending, RefusalKind)> = Vec::new();
        // Deadlines: admission deadlines refuse, task deadlines miss.
        g.waitq.expire(now, |_, t| {
            let kind = if t.item.admit_by.is_some_and(|d| d <= now) {
                RefusalKind::Admission(RejectReason::DeadlineExpired)
            } else {
                RefusalKind::DeadlineMissed
            };
            refused.push((t.item, kind));
        });
        if res.purge.swap(false, Ordering::SeqCst) {
            g.waitq.remove_where(
                |t| {
                    let c = t.item.task.desc.as_ref().and_then(|e| e.cancel.as_ref());
                    c.is_some_and(|c| c.is_cancelled())
                },
                |_, t| refused.push((t.item, RefusalKind::Cancelled)),
            );
        }
        let epoch = res.tracker.settings_epoch();
        if g.epoch != Some(epoch) {
            g.epoch = Some(epoch);
            let placer = &g.placer;
            let mut never: Vec<(Pending, RefusalKind)> = Vec::new();
            g.waitq.remove_where(
                |t| {
                    res.admission
                        .check_ever_fits(&res.tracker, &t.request, t.item.urgency)
                        .is_err()
                        || placer.never_fits(&t.request).is_some()
                },
                |_, t| {
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
            let avail = Availability::of(&res.tracker);
            let Sched {
                waitq,
                placer,
                lookahead,
                window,
                head,
                probes,
                probe_limit,
                ..
            } = g;
            let top = waitq.top_k(now, &avail, window);
            let Some(first) = window.first().filter(|_| top.len > 0) else {
                break;
            };
            if *head != Some(first.ticket) {
                // A new head gets a full budget of overtakings.
                lookahead.head_left();
                *head = Some(first.ticket);
            }
            let mut chosen = None;
            for (i, r) in window.iter().take(top.len).enumerate() {
                if i > 0 && lookahead.head_only() {
                    break;
                }
                let Some(t) = waitq.get(r.ticket) else {
                    continue;
                };
                if !placer.fits(&t.request) {
                    continue;
                }
                // A cold-start probe of a class that already runs its share waits.
                let probing = t.item.task.desc.as_deref().filter(|e| e.probe);
                if probing
                    .and_then(|e| e.class.as_ref())
                    .is_some_and(|c| probes.get(c).copied().unwrap_or(0) >= *probe_limit)
                {
                    continue;
                }
                let floor = res.floor(t.item.urgency);
                if let Ok(reservation) = Reservation::try_new(&res.tracker, &t.request, &floor) {
                    chosen = Some((i, r.ticket, reservation.detach().1));
                    break;
                }
            }
            let Some((i, ticket, held)) = chosen else {
                break;
            };
            let Some(t) = waitq.take(ticket, now) else {
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
                .task
                .desc
                .as_deref()
                .filter(|e| e.probe)
                .and_then(|e| e.class.as_ref())
            {
                *probes.entry(c.clone()).or_insert(0) += 1;
            }
            let mut p = t.item;
            if let Some(desc) = p.task.desc.as_mut() {
                desc.held = Some(held);
                desc.gpu = placed.gpu.as_ref().and_then(|x| placer.device(x.domain()));
                desc.placed = Some(Box::new(placed));
            } else {
                let _ = held.release(&res.tracker);
                placer.release(placed);
            }
            res.admission.record_after_wait(true);
            admitted.push(p);
        }
        res.waiting.store(g.waitq.len(), Ordering::SeqCst);
        // Their deadline wake-ups have no purpose any more (one that fired
        // is gone already: cancelling it is a no-op).
        for id in admitted
            .iter()
            .chain(refused.iter().map(|(p, _)| p))
            .filter_map(|p| p.wakeup)
        {
            self.timer.cancel(id);
        }
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
                g.resolved.insert(t, Resolved::Refused(error, p.task));
                notify = true;
                continue;
            }
            if matches!(kind, RefusalKind::Cancelled) {
                // Cancelled by its handle (already resolved): just dropped.
                dropped.push(p.task);
                continue;
            }
            res.admission.record_after_wait(false);
            let error = match kind {
                RefusalKind::Admission(reason) => {
                    TaskError::Rejected(SubmitError::from_reject(reason))
                }
                _ => TaskError::DeadlineMissed,
            };
            match p.task.desc.as_ref().and_then(|e| e.cancel.as_ref()) {
                Some(c) => {
                    c.fail(error);
                }
                None => {
                    tracing::warn!(target: "respool::task", error = %error,
                        "a task without a handle was refused while waiting");
                }
            }
            // Dropping the task drops its job without running it.
            dropped.push(p.task);
        }
        if notify {
            res.resolved.notify_all();
        }
        if g.room_waiters > 0
            && self
                .config
                .backpressure
                .is_some_and(|high| g.waitq.len() < high)
        {
            res.room.notify_all();
        }
        Dispatched { admitted, dropped }
    }

    /// Outside the lock: starts what was admitted, drops what was refused.
    fn push_admitted(&self, d: Dispatched) {
        for p in d.admitted {
            self.enqueue(p.task);
        }
        drop(d.dropped);
    }

    /// Admits waiting tasks that fit now.
    ///
    /// It runs inside the submission gate (as an internal entry, so also
    /// while shutting down): a task it admits, from whatever thread calls it
    /// (a worker, `set_capacity`, a canceller, the timer, the monitor), is
    /// in a run queue before the gate is left, and `Pool::shutdown_now`
    /// waits for the gate to empty before its last sweep of the queues. So
    /// no admitted task is left in a queue that no worker reads. Refused
    /// tasks are dropped after leaving the gate (dropping one runs user
    /// code, which may call back into the pool).
    pub(crate) fn dispatch(&self) {
        if self.res.waiting.load(Ordering::SeqCst) == 0 && !self.res.purge.load(Ordering::SeqCst) {
            return;
        }
        let dropped = {
            self.gate.enter(|| true);
            let _in_gate = GateGuard(&self.gate);
            self.drain_pending();
            let mut d = {
                let mut g = lock(&self.res.sched);
                self.dispatch_locked(&mut g)
            };
            let dropped = std::mem::take(&mut d.dropped);
            self.push_admitted(d);
            dropped
        };
        if self.gate.is_closed() {
            // A worker idling during a graceful shutdown may have seen this
            // dispatch in the gate and gone to sleep: let it look again.
            self.sleepers.notify_all();
        }
        drop(dropped);
    }

    /// Releases a task's reservation and placement (exactly once: the tokens
    /// are taken out of the task).
    pub(crate) fn release(&self, desc: &mut Description) {
        // Both were taken on this tracker, so releasing cannot fail; if it
        // ever did, leaking capacity is safer than a panic here.
        if let Some(held) = desc.held.take() {
            let _ = held.release(&self.res.tracker);
        }
        if desc.placed.is_some() || desc.probe {
            let mut g = lock(&self.res.sched);
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
    /// once (for the snapshot).
    pub(crate) fn placement_view(&self) -> (respool_core::Ppm, Vec<(Resources, Resources)>, usize) {
        let g = lock(&self.res.sched);
        let now = self.now_ns();
        let typical = g
            .waitq
            .peek(now, &Availability::NONE)
            .map(|p| p.task.request)
            .unwrap_or(Resources::NONE);
        let frag = if typical.is_empty() {
            respool_core::Ppm::ZERO
        } else {
            g.placer.fragmentation(&typical)
        };
        (frag, g.placer.usage(), g.waitq.stats().max_depth)
    }

    /// Removes every waiting task (shutdown now) and returns them, except
    /// blocked submitters' tasks: those submissions have not succeeded, so
    /// their tasks go back to their submitters with `ShutDown` (never to
    /// the caller, who could run a task whose submission failed).
    pub(crate) fn drain_waiting(&self) -> Vec<Work> {
        let res = &self.res;
        let mut g = lock(&res.sched);
        let mut out = Vec::new();
        let mut blocked = Vec::new();
        g.waitq.remove_where(
            |_| true,
            |_, t| match t.item.ticket {
                Some(ticket) => blocked.push((ticket, t.item.task)),
                None => out.push(t.item.task),
            },
        );
        for (ticket, task) in blocked {
            g.resolved
                .insert(ticket, Resolved::Refused(SubmitError::ShutDown, task));
        }
        res.waiting.store(0, Ordering::SeqCst);
        drop(g);
        res.resolved.notify_all();
        out
    }

    /// Nanoseconds of the pool clock at `at`.
    fn instant_ns(&self, at: Instant) -> u64 {
        u64::try_from(
            at.saturating_duration_since(self.epoch_instant())
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }
}

/// The outcome of one dispatch round.
#[derive(Default)]
pub(crate) struct Dispatched {
    admitted: Vec<Pending>,
    dropped: Vec<Work>,
}

impl Dispatched {
    fn is_empty(&self) -> bool {
        self.admitted.is_empty() && self.dropped.is_empty()
    }
}

/// How a blocking submitter's task left the wait queue.
enum Resolved {
    /// Admitted: it is in (or on its way to) a run queue.
    Admitted,
    /// Refused: the task comes back to the submitter, who drops it (so a C
    /// task's `destroy` has run) before returning the error. Dropping it on
    /// the refusing thread instead (the timer, a worker, `shutdown_now`)
    /// would let the submitter return first.
    Refused(SubmitError, Work),
}

/// Why a waiter left the queue without being admitted.
enum RefusalKind {
    Admission(RejectReason),
    DeadlineMissed,
    Cancelled,
}
