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
        if !self.sched.trivial || !self.sched.tracks(request) || self.sched.waiting() != 0 {
            // The general path decides (placement, or nothing to account,
            // or others wait: keep their order).
            self.metrics.submitted.other.fetch_add(1, Ordering::Relaxed);
            return self.submit_entered(job(false), make(), started, true);
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
            if g.waitq.len() >= high && !self.on_own_worker() {
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
        let pushed = res.push_waiter(&mut g, item);
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
        tracing::debug!(target: "respool::task", class = ?class, "deferred");
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
        let mut admitted = if first || res.fits_now(&request, urgency) {
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
            let slot = next.as_deref_mut().filter(|n| {
                n.is_none()
                    && p.work.desc.as_ref().is_none_or(|e| e.placed.is_none())
                    && self.queue_is_idle()
            });
            match slot {
                Some(n) => *n = Some(p.work),
                None => self.enqueue(p.work),
            }
        }
        drop_refused(d.dropped);
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
    pub(crate) fn dispatch_into(&self, next: Option<&mut Option<Work>>) {
        if self.sched.waiting.load(Ordering::SeqCst) == 0
            && !self.sched.purge.load(Ordering::SeqCst)
        {
            return;
        }
        let dropped = {
            self.gate.enter(|| true);
            let _in_gate = GateGuard(&self.gate);
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
