//! The path of a task into the engine: submission through the gate, the
//! scheduler's decision, and what follows from it (enqueue, defer with
//! backpressure, refuse, block a submitter until admission); and the
//! dispatch rounds that admit waiters after releases, capacity changes,
//! cancellations and deadlines.
//!
//! The decisions are the scheduler's (`crate::scheduler`); this module acts
//! on them with the engine's state (`crate::engine`).

use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use respool_core::Resources;
use respool_core::admission::{Policy, RejectReason, Urgency};

use crate::engine::{GateGuard, Shared};
use crate::error::SubmitError;
use crate::job::Job;
use crate::observe::EventKind;
use crate::scheduler::{
    Decision, Dispatched, Pending, Resolved, SchedState, Scheduler, queue_priority,
};
use crate::scheduler::{Ending, Wait};
use crate::sync::lock;
use crate::work::{Description, Work};

/// Failed memory readings in a row after which external usage is cleared.
const STALE_SAMPLES: u32 = 3;

/// Sends the refused tasks' terminal events, then drops them (outside every
/// lock: dropping a task runs user code).
fn drop_refused(dropped: Vec<(Work, Ending)>) {
    for (work, ending) in dropped {
        ending.report(&work);
        drop(work);
    }
}

impl Shared {
    /// The resource-aware path (see the [module documentation](self)).
    pub(crate) fn submit_described(
        &self,
        job: Job,
        desc: Box<Description>,
    ) -> Result<(), SubmitError> {
        self.submit_described_as(job, desc, false)
    }

    /// The next attempt of a retrying task, from the pool's timer. It is
    /// part of a task already accepted, so it is let in while shutting down
    /// gracefully, and it never blocks the timer thread (which drives every
    /// deadline and timeout) under `BlockUntilDeadline`: it waits like a
    /// deferred task, and its handle is refused at the admission deadline.
    pub(crate) fn resubmit(&self, job: Job, desc: Box<Description>) -> Result<(), SubmitError> {
        self.submit_described_as(job, desc, true)
    }

    fn submit_described_as(
        &self,
        job: Job,
        desc: Box<Description>,
        internal: bool,
    ) -> Result<(), SubmitError> {
        // An attempt of a retrying task (internal) was submitted once.
        if let Some(o) = desc.observed.as_ref().filter(|_| !internal) {
            o.emit(EventKind::Submitted {
                requirements: &desc.request,
            });
        }
        if !self.gate.enter(|| internal || self.on_own_worker()) {
            let error = SubmitError::ShutDown;
            if let Some(o) = &desc.observed {
                o.end(EventKind::Refused { error: &error });
            }
            return Err(error);
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
        job: impl FnOnce(bool) -> Job,
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
        if let Some(packed) = self.sched.try_packed(request, urgency) {
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
        if !self.sched.trivial || !self.sched.tracks(request) {
            // The general path decides (placement, or nothing to account).
            self.metrics.submitted.other.fetch_add(1, Ordering::Relaxed);
            return self.submit_entered(job(false), make(), started, true);
        }
        let lane = urgency == Urgency::Normal
            && self.sched.lane_open()
            && matches!(self.sched.admission.config().policy, Policy::Defer);
        if self.sched.waiting() != 0 {
            // Others wait: keep their order.
            self.metrics.submitted.other.fetch_add(1, Ordering::Relaxed);
            if lane {
                return self.defer_in_lane(job(false), make(), started);
            }
            return self.submit_entered(job(false), make(), started, true);
        }
        if lane && !self.sched.fits_now(request, urgency) {
            // The first to wait (a request of more dimensions than a pack
            // that fits takes `decide_request` below).
            self.metrics.submitted.other.fetch_add(1, Ordering::Relaxed);
            return self.defer_in_lane(job(false), make(), started);
        }
        // It does not fit now, or holds more dimensions than a pack: decide.
        self.metrics.submitted.other.fetch_add(1, Ordering::Relaxed);
        match self
            .sched
            .decide_request(request, urgency, self.decision_now())
        {
            Decision::Run(held) => {
                self.admit(job(false), make(), held, started);
                Ok(())
            }
            Decision::Refuse(reason) => Err(self.refused_at_submit(reason, None)),
            Decision::Wait { state, wait } => {
                self.defer(state, job(false), make(), wait, started, true)
            }
        }
    }

    /// `submit_described` once the gate is entered and the submission
    /// counted. `block`: a submitter deferred under `BlockUntilDeadline`
    /// waits for the outcome (else its handle hears of it).
    fn submit_entered(
        &self,
        job: Job,
        mut desc: Box<Description>,
        started: Option<Instant>,
        block: bool,
    ) -> Result<(), SubmitError> {
        match self.sched.decide(&mut desc, self.decision_now()) {
            Decision::Run(held) => {
                self.admit(job, desc, held, started);
                Ok(())
            }
            Decision::Refuse(reason) => {
                let error = self.refused_at_submit(reason, desc.class.as_ref());
                if let Some(o) = &desc.observed {
                    o.end(EventKind::Refused { error: &error });
                }
                Err(error)
            }
            Decision::Wait { state, wait } => self.defer(state, job, desc, wait, started, block),
        }
    }

    /// Defers a task that declared requirements and nothing else (see
    /// `submit_packed`: normal urgency; with a handle or without) behind
    /// others waiting,
    /// under `Policy::Defer` with trivial placement: into the scheduler's
    /// lane (see `crate::scheduler`), without the scheduler's lock, where a
    /// finishing task that asked the same hands it its reservation (issue
    /// 21: under saturation a deferral and the dispatch round after each
    /// release cost about sixteen locked operations on lines the other
    /// core wrote; see BENCHMARKS, "a fifth look").
    ///
    /// The waiter is counted in `waiting` before it is pushed. Nothing is
    /// lost, by the pairing a deferral under the lock relies on:
    ///
    /// - A release gives its reservation back, then a `SeqCst` fence, then
    ///   reads `waiting` and, if anyone waits, admits from the lane under
    ///   its lock. Here the count and the push (under the lane's lock) come
    ///   before a `SeqCst` fence and the check whether this waiter fits
    ///   now. Either that release's admission finds the waiter in the lane,
    ///   or this check sees its capacity and admits from the lane itself.
    /// - The first waiter since nobody waited (the count was zero) owes the
    ///   barrier that brings the workers' release logs back (see `defer`):
    ///   it runs it, gives the logs back and dispatches, whatever happens
    ///   to it. A later waiter saw the count above zero, which it has been
    ///   since that first waiter's increment: a count falls only by the
    ///   waiters that leave, or by an undone increment, made above zero or
    ///   by a first waiter that is refused or fits after all, whose barrier
    ///   and drain came before, and whose dispatch after, so a waiter that
    ///   counted on its increment is served. Every worker gives its log
    ///   back itself meanwhile.
    fn defer_in_lane(
        &self,
        job: Job,
        desc: Box<Description>,
        started: Option<Instant>,
    ) -> Result<(), SubmitError> {
        let res = &self.sched;
        let request = desc.request;
        let urgency = desc.urgency;
        let prev = res.waiting.fetch_add(1, Ordering::SeqCst);
        let first = prev == 0;
        if !first
            && !self.on_own_worker()
            && self.config.backpressure.is_some_and(|high| prev >= high)
        {
            // Full: wait for room on the general path. The count was above
            // zero before this increment, so undoing it keeps the rule
            // above.
            res.waiting.fetch_sub(1, Ordering::SeqCst);
            return self.submit_entered(job, desc, started, true);
        }
        if first {
            self.first_waiter();
        }
        // With others waiting (`prev`), `Policy::Defer` reserves nothing:
        // the decision checks that the task can ever fit and, under
        // `max_waiting`, that there is room for one more, and counts it. The
        // first waiter's decision may reserve (it fits after all): it runs.
        let decided = res
            .admission
            .decide(&res.tracker, &request, urgency, prev, 0);
        let outcome = match decided {
            respool_core::admission::Decision::Deferred(_) => {
                let pending = Pending {
                    work: Work {
                        job,
                        desc: Some(desc),
                        packed: None,
                    },
                    ticket: None,
                    admit_by: None,
                    urgency,
                    wakeup: None,
                };
                let item = respool_core::queue::Task::new(pending, request, self.now_ns())
                    .with_priority(0);
                if let Err(item) = res.push_lane(item) {
                    // The lane closed meanwhile (someone waits in the wait
                    // queue), or its waiters ask something else: the wait
                    // queue, behind them.
                    let mut g = lock(&res.state);
                    if let Err(refused) = res.push_counted(&mut g, item) {
                        drop(g);
                        res.waiting.fetch_sub(1, Ordering::SeqCst);
                        self.metrics
                            .rejected_at_submit
                            .fetch_add(1, Ordering::Relaxed);
                        drop(refused);
                        // Run below (its duties as first), then refused.
                        return self.after_lane(
                            first,
                            &request,
                            urgency,
                            started,
                            Err(SubmitError::QueueFull {
                                retry_after: res
                                    .admission
                                    .retry_after_ns()
                                    .map(Duration::from_nanos),
                            }),
                            true,
                        );
                    }
                    // Moved or not, a round runs below (it may fit now).
                    drop(g);
                    return self.after_lane(first, &request, urgency, started, Ok(()), true);
                }
                tracing::debug!(target: "respool::task", "deferred");
                Ok(())
            }
            respool_core::admission::Decision::Rejected(reason) => {
                res.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(self.refused_at_submit(reason, None))
            }
            respool_core::admission::Decision::Accepted(r) => {
                // Only the first (nobody else waited): it fits now. Its count
                // is undone; it has run the barrier and the drain, and
                // dispatches below, so a waiter that counted on its
                // increment is not left behind.
                res.waiting.fetch_sub(1, Ordering::SeqCst);
                self.admit(job, desc, Some(r.detach().1), None);
                Ok(())
            }
        };
        self.after_lane(first, &request, urgency, started, outcome, false)
    }

    /// The end of [`Shared::defer_in_lane`]: the timing sample, then the
    /// fence that pairs with a release's, and a dispatch when this waiter
    /// fits now, when it was the first (its duty), or when `round` (it
    /// went into the wait queue instead).
    fn after_lane(
        &self,
        first: bool,
        request: &Resources,
        urgency: Urgency,
        started: Option<Instant>,
        outcome: Result<(), SubmitError>,
        round: bool,
    ) -> Result<(), SubmitError> {
        if let Some(t) = started {
            self.metrics.schedule.record(t.elapsed());
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        if first || round || (outcome.is_ok() && self.sched.fits_now(request, urgency)) {
            self.dispatch();
        }
        outcome
    }

    /// The first waiter's duty, after counting itself in `waiting`: the
    /// workers' release logs must not hold capacity it waits for. Unless
    /// workers already give their reservations back at once
    /// (`Scheduler::direct`), it says they must from now on, then runs the
    /// heavy barrier and gives every log back (see `defer`).
    ///
    /// Skipping both while `direct` is set is safe, and saves the
    /// `membarrier(2)` a queue that keeps emptying and refilling paid for
    /// every refill (issue 21: one per 8 waiting tasks at 5 us, 10 deep).
    /// A worker adds to its log only after reading `direct` unset; after
    /// adding, it reads `direct`, then `waiting` (`SeqCst` both: see
    /// `Shared::added`) and gives the log back if either is set. Say this
    /// waiter read `direct` set, written by store `T`:
    ///
    /// - If the worker's read after adding saw an unset written before `T`,
    ///   it ran before the barrier that `T`'s writer ran after `T`, so that
    ///   writer's drain sees the addition (and dispatches after it).
    /// - If it saw an unset written after `T` (a worker cleared `direct`
    ///   after this waiter read it), this waiter's increment of `waiting`
    ///   comes before that clear in the single order of `SeqCst`
    ///   operations, and the worker's read of `waiting` after it: the
    ///   worker sees someone waiting and gives its log back itself.
    pub(crate) fn first_waiter(&self) {
        if self.sched.direct.load(Ordering::SeqCst) {
            return;
        }
        self.sched.direct.store(true, Ordering::SeqCst);
        crate::barrier::heavy();
        self.drain_pending();
    }

    /// The clock for an admission decision. Only `BlockUntilDeadline` uses it
    /// (the deadline of a deferral), so other policies skip reading it on
    /// every submit.
    fn decision_now(&self) -> u64 {
        if matches!(
            self.sched.admission.config().policy,
            Policy::BlockUntilDeadline { .. }
        ) {
            self.now_ns()
        } else {
            0
        }
    }

    /// An admitted task, holding `held` (if anything), into a run queue.
    fn admit(
        &self,
        job: Job,
        mut desc: Box<Description>,
        held: Option<respool_core::DetachedReservation>,
        started: Option<Instant>,
    ) {
        desc.held = held;
        if let Some(o) = &desc.observed {
            let reservation = desc.held.as_ref().map_or(Resources::NONE, |h| *h.held());
            o.emit(EventKind::Admitted {
                reservation: &reservation,
            });
        }
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
    fn defer<'a>(
        &'a self,
        mut g: MutexGuard<'a, SchedState>,
        job: crate::job::Job,
        desc: Box<Description>,
        wait: Wait,
        started: Option<Instant>,
        block: bool,
    ) -> Result<(), SubmitError> {
        let Wait {
            admit_by,
            shortfall,
        } = wait;
        let res = &self.sched;
        if let Some(o) = desc.observed.clone() {
            // The observer is called outside the lock; the state is looked
            // at again below (room, fits now), so nothing decided under it
            // goes stale.
            drop(g);
            o.emit(EventKind::Deferred { shortfall });
            g = lock(&res.state);
        }
        if let Some(high) = self.config.backpressure.filter(|_| block) {
            if res.waiting() >= high && !self.on_own_worker() {
                let waited = res.wait_for_room(
                    g,
                    high,
                    admit_by,
                    &self.stop_now,
                    &self.metrics.held_for_room,
                    || self.now_ns(),
                );
                g = match waited {
                    Ok(g) => g,
                    Err(e) => {
                        // Refused while waiting for room: the job is
                        // dropped (outside the lock) before returning.
                        if let Some(o) = &desc.observed {
                            o.end(EventKind::Refused { error: &e });
                        }
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
        let ticket = blocking.then(|| Scheduler::new_ticket(&mut g));
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
            work: Work {
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
        let pushed = match res.push_waiter(&mut g, item) {
            Ok(pushed) => pushed,
            Err(refused) => {
                if let Some(id) = wakeup {
                    self.timer.cancel(id);
                }
                self.metrics
                    .rejected_at_submit
                    .fetch_add(1, Ordering::Relaxed);
                // The job is dropped (running user code, such as a C `destroy`,
                // which may call back into the pool) outside the lock.
                drop(g);
                let error = SubmitError::QueueFull {
                    retry_after: res.admission.retry_after_ns().map(Duration::from_nanos),
                };
                if let Some(o) = refused
                    .item
                    .work
                    .desc
                    .as_ref()
                    .and_then(|d| d.observed.as_ref())
                {
                    o.end(EventKind::Refused { error: &error });
                }
                drop(refused);
                return Err(error);
            }
        };
        tracing::debug!(target: "respool::task", class = ?class, "deferred");
        let first = pushed.first;
        if first {
            // The first waiter since the queue was last empty. The barrier
            // pairs with the fences after a release (`give_back`,
            // `release`): a release that read `waiting == 0` before our
            // store is visible to this dispatch. And with the light barrier
            // after a worker adds to its release log: either the drain below
            // sees the addition, or that worker sees us waiting and gives its
            // log back itself. Releases batched by workers are given back
            // before deciding. (Skipped while workers give back at once:
            // see `first_waiter`.)
            self.first_waiter();
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
        // Waiters moved in from the lane ahead of this one may fit now.
        let mut admitted = if first || pushed.moved || res.fits_now(&request, urgency) {
            res.dispatch_locked(&mut g, self.now_ns())
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
            g = lock(&res.state);
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
            if let Some(outcome) = Scheduler::take_resolved(&mut g, ticket) {
                break outcome;
            }
            if helper {
                drop(g);
                let helped = (self.help)(self);
                g = lock(&res.state);
                if helped {
                    nap = 1;
                    continue;
                }
            }
            g = res.wait_resolved(g, Duration::from_millis(nap));
            nap = (nap * 2).min(50);
            // A timed wake-up re-runs admission (deadlines are also driven by
            // the timer; this is a safety net).
            let d = res.dispatch_locked(&mut g, self.now_ns());
            if !d.is_empty() {
                drop(g);
                self.gate.enter(|| true);
                let in_gate = GateGuard(&self.gate);
                self.push_admitted(d);
                drop(in_gate);
                g = lock(&res.state);
            }
        };
        drop(g);
        self.gate.enter(|| true);
        match outcome {
            Resolved::Admitted => Ok(()),
            Resolved::Refused(error, task) => {
                // The job is dropped (a C task's `destroy` runs) before the
                // error is returned.
                if let Some(o) = task.desc.as_ref().and_then(|d| d.observed.as_ref()) {
                    o.end(EventKind::Refused { error: &error });
                }
                drop(task);
                Err(error)
            }
        }
    }

    /// Outside the lock: cancels the wake-ups that have no purpose any
    /// more, starts what was admitted, drops what was refused.
    fn push_admitted(&self, d: Dispatched) {
        self.push_admitted_into(d, None);
    }

    /// `push_admitted`, handing the first task admitted to `next` (a
    /// worker's slot, when called on one) when the slot is empty, nothing
    /// was placed for the task (no CPU domain, no GPU) and nothing waits
    /// in the shared run queue or the priority lane (so it overtakes no
    /// task admitted before it): the releasing worker then runs it itself,
    /// without the run queue's push and pop or a wake-up (issue 21: under
    /// saturation every release admits one waiter, and the queue round trip
    /// was a share of what a waiting task cost).
    fn push_admitted_into(&self, d: Dispatched, mut next: Option<&mut Option<Work>>) {
        for id in d.wakeups {
            self.timer.cancel(id);
        }
        for p in d.admitted {
            if let Some(desc) = p.work.desc.as_ref() {
                if let Some(o) = &desc.observed {
                    let reservation = desc.held.as_ref().map_or(Resources::NONE, |h| *h.held());
                    o.emit(EventKind::Admitted {
                        reservation: &reservation,
                    });
                }
            }
            self.start_admitted(p.work, next.as_deref_mut());
        }
        drop_refused(d.dropped);
    }

    /// An admitted task into `next` (a worker's slot) when it is empty,
    /// nothing was placed for the task and nothing waits in the shared run
    /// queue or the priority lane (see `push_admitted_into`); else into a
    /// run queue.
    pub(crate) fn start_admitted(&self, work: Work, next: Option<&mut Option<Work>>) {
        let slot = next.filter(|n| {
            n.is_none()
                && work.desc.as_ref().is_none_or(|e| e.placed.is_none())
                && self.queue_is_idle()
        });
        match slot {
            Some(n) => *n = Some(work),
            None => self.enqueue(work),
        }
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
        self.dispatch_into(None);
    }

    /// `dispatch`, on a worker that runs the first task it admits itself
    /// when `next` is empty (see `push_admitted_into`); `next` is the
    /// worker's own slot (`WorkerBatch::next`), which its loop empties
    /// before it looks at any queue.
    pub(crate) fn dispatch_into(&self, mut next: Option<&mut Option<Work>>) {
        if self.sched.waiting.load(Ordering::SeqCst) == 0
            && !self.sched.purge.load(Ordering::SeqCst)
        {
            return;
        }
        self.gate.enter(|| true);
        let in_gate = GateGuard(&self.gate);
        // The lane first: while it is open the wait queue is empty, so
        // nothing more to do unless a cancellation asks for a purge or a
        // capacity change for a never-fits scan (`lane_only`).
        let open = loop {
            match self.sched.lane_admit() {
                Ok(Some(p)) => {
                    self.sched.waiting.fetch_sub(1, Ordering::SeqCst);
                    self.sched.admission.record_after_wait(true);
                    self.start_admitted(p.work, next.as_deref_mut());
                }
                Ok(None) => break true,
                Err(()) => break false,
            }
        };
        if open && self.sched.lane_only() {
            drop(in_gate);
            if self.gate.is_closed() {
                self.sleepers.notify_all();
            }
            return;
        }
        let dropped = {
            let _in_gate = in_gate;
            self.drain_pending();
            let mut d = {
                let mut g = lock(&self.sched.state);
                self.sched.dispatch_locked(&mut g, self.now_ns())
            };
            let dropped = std::mem::take(&mut d.dropped);
            self.push_admitted_into(d, next);
            dropped
        };
        if self.gate.is_closed() {
            // A worker idling during a graceful shutdown may have seen this
            // dispatch in the gate and gone to sleep: let it look again.
            self.sleepers.notify_all();
        }
        drop_refused(dropped);
    }

    /// One monitor sample: memory in use but not reserved becomes external
    /// usage (lowering the effective capacity), and a changed container
    /// memory limit becomes the new capacity.
    pub(crate) fn on_sample(&self, snap: &crate::sys::Snapshot) {
        use respool_core::Dim;
        let tracker = &self.sched.tracker;
        if !tracker.tracked().contains(Dim::Memory) {
            return;
        }
        if self.config.follow_container_limit {
            if let Some(limit) = snap.container_limits.and_then(|l| l.memory_bytes) {
                if tracker.capacity().get(Dim::Memory) != Some(limit) {
                    let _ =
                        tracker.set_capacity(&Resources::NONE.with_saturating(Dim::Memory, limit));
                    tracing::info!(target: "respool::sys", limit, "container memory limit changed");
                    self.capacity_changed();
                }
            }
        }
        use crate::sys::{Resource, ResourceStatus};
        let source = if snap.container.is_some() {
            Resource::Container
        } else {
            Resource::Memory
        };
        match snap.status(source) {
            ResourceStatus::Ok => {
                if let Some(used) = snap.measured_usage().get(Dim::Memory) {
                    let reserved = tracker.reserved().amount(Dim::Memory);
                    let external = used.saturating_sub(reserved);
                    let _ = tracker
                        .set_external(&Resources::NONE.with_saturating(Dim::Memory, external));
                }
            }
            // A stale reading keeps lowering capacity for a few intervals
            // (safe), then is dropped so that it cannot hold tasks back forever.
            ResourceStatus::Failing { consecutive }
                if consecutive >= STALE_SAMPLES && tracker.external().amount(Dim::Memory) != 0 =>
            {
                tracing::warn!(target: "respool::sys", ?source, consecutive,
                    "memory readings keep failing: external usage is no longer followed");
                let _ = tracker.set_external(&Resources::NONE.with_saturating(Dim::Memory, 0));
            }
            _ => {}
        }
        self.dispatch();
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
