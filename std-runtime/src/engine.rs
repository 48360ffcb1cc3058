//! The engine's shared state: the run queues, the priority lane, the
//! submission gate, the idle-worker registry, the release logs, and the one
//! place that puts an admitted task where a worker finds it (`enqueue`).
//!
//! Submissions go through the gate (`Gate`): it counts submissions in flight
//! and closes the pool to new ones at shutdown. An admitted task reaches a
//! queue through `Shared::enqueue` (its domain's run queue, the priority
//! lane, or the shared run queue), or, when it has neither a domain nor a
//! priority (a plain task, a packed one), straight through
//! `Shared::push_shared`; workers take work with `Shared::next_task`. What
//! is admitted, and when, is the scheduler's decision (`crate::scheduler`);
//! running it is the worker's (`crate::worker`). This module names neither
//! the worker nor the pool facade.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use respool_core::Resources;

use crate::config::Config;
use crate::job::Job;
use crate::metrics::Metrics;
use crate::runq::{RunQueue, Sleepers};
use crate::sync::lock;
use crate::timer::Timer;
use crate::work::{Packed, Unstarted, Work};

thread_local! {
    /// `(pool id, worker index)` of the pool worker running on this thread.
    pub(crate) static WORKER: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Counts submissions in flight and closes the pool to new ones.
// Aligned to 128 bytes (the pair of lines x86 prefetches together): its
// counter is written twice by every submission, and a line shared with
// the fields the workers read for every task they take (`stop_now`,
// `lane_len`, the idle count) was moved between the submitting core and
// the workers' on each of those writes (issue 21: the gate's `fetch_add`
// was 40% of a bulk submitter's samples under `perf record`).
#[repr(align(128))]
pub(crate) struct Gate(AtomicUsize);

impl Default for Gate {
    fn default() -> Self {
        Gate(AtomicUsize::new(0))
    }
}

const CLOSED: usize = 1;

impl Gate {
    /// Enters unless closed (`internal` submissions, from the pool's own
    /// workers and timer, are let in while shutting down gracefully).
    /// `internal` is asked only when the gate is closed.
    #[inline]
    pub(crate) fn enter(&self, internal: impl FnOnce() -> bool) -> bool {
        let prev = self.0.fetch_add(2, Ordering::SeqCst);
        if prev & CLOSED != 0 && !internal() {
            self.0.fetch_sub(2, Ordering::SeqCst);
            return false;
        }
        true
    }
    #[inline]
    pub(crate) fn exit(&self) {
        self.0.fetch_sub(2, Ordering::SeqCst);
    }
    pub(crate) fn close(&self) {
        self.0.fetch_or(CLOSED, Ordering::SeqCst);
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.0.load(Ordering::SeqCst) & CLOSED != 0
    }
    pub(crate) fn in_flight(&self) -> usize {
        self.0.load(Ordering::SeqCst) >> 1
    }
}

pub(crate) struct GateGuard<'a>(pub(crate) &'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.0.exit();
    }
}

/// Tasks that have a priority or deadline, admitted and waiting for a
/// worker: the highest priority, then the earliest deadline, then the
/// oldest first.
pub(crate) struct PriorityLane {
    heap: std::collections::BinaryHeap<LaneEntry>,
    seq: u64,
}

struct LaneEntry {
    key: (
        i32,
        std::cmp::Reverse<Option<Instant>>,
        std::cmp::Reverse<u64>,
    ),
    task: Work,
}

impl PriorityLane {
    pub(crate) fn new() -> PriorityLane {
        PriorityLane {
            heap: std::collections::BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl PartialEq for LaneEntry {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}

impl Eq for LaneEntry {}

impl PartialOrd for LaneEntry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for LaneEntry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key.cmp(&o.key)
    }
}

pub(crate) struct Shared {
    pub(crate) id: usize,
    pub(crate) config: Config,
    pub(crate) queue: RunQueue<Work>,
    /// Run queues of the CPU domains (used when placement is not trivial).
    pub(crate) domain_queues: Box<[RunQueue<Work>]>,
    /// The CPU domain of each worker.
    pub(crate) worker_domain: Box<[usize]>,
    pub(crate) lane: Mutex<PriorityLane>,
    pub(crate) lane_len: AtomicUsize,
    pub(crate) sleepers: Sleepers,
    pub(crate) gate: Gate,
    /// Workers not parked.
    pub(crate) active: AtomicUsize,
    /// Workers must exit.
    pub(crate) exit: AtomicBool,
    /// `shutdown_now`: workers stop taking tasks (and submitters waiting for
    /// room in the wait queue give up).
    pub(crate) stop_now: AtomicBool,
    /// Admission, the wait queue and placement.
    pub(crate) sched: crate::scheduler::Scheduler,
    /// Runs one queued task on this thread when it is a worker of this
    /// pool (`crate::worker::help_once`), for a submitter of the pool's own
    /// that waits: the engine calls it without depending on the worker.
    pub(crate) help: fn(&Shared) -> bool,
    pub(crate) timer: Timer,
    pub(crate) metrics: Metrics,
    pub(crate) learner: crate::learn::Learner,
    pub(crate) epoch: Instant,
    /// Handed to join handles of resource-aware tasks: purges cancelled
    /// waiters from the wait queue at once.
    pub(crate) on_cancel: Arc<dyn Fn() + Send + Sync>,
    /// Set when the pool was shut down from one of its own tasks: the last
    /// worker to go idle with nothing left ends all workers.
    pub(crate) exit_when_done: AtomicBool,
    /// The thread waiting in `Pool::shutdown` for the pool to drain: a
    /// worker that goes idle once the gate is closed unparks it, so that it
    /// does not sleep longer than the pool takes to drain.
    pub(crate) shutdown_waiter: Mutex<Option<std::thread::Thread>>,
    pub(crate) self_weak: Weak<Shared>,
    /// Per worker, the reservations of its finished tasks not given back
    /// yet (see `WorkerBatch`, `Shared::give_back`).
    pub(crate) logs: Box<[crossbeam_utils::CachePadded<respool_core::ReleaseLog>]>,
    /// Profiles were saved at shutdown (only the first shutdown saves).
    pub(crate) saved: AtomicBool,
    /// The last task id handed out (only with an observer).
    pub(crate) task_ids: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub(crate) fn on_own_worker(&self) -> bool {
        WORKER.with(|w| w.get().0 == self.id)
    }

    /// The index of the worker of this pool running on the calling thread.
    pub(crate) fn current_worker(&self) -> Option<usize> {
        let (pool, worker) = WORKER.with(Cell::get);
        (pool == self.id).then_some(worker)
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// `at` on the pool clock.
    pub(crate) fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant the pool clock counts from.
    pub(crate) fn epoch_instant(&self) -> Instant {
        self.epoch
    }

    /// Takes every task that has not started (timer actions are dropped,
    /// which resolves their handles with `ShutDown`), for `shutdown_now`.
    pub(crate) fn take_unstarted(&self, out: &mut Vec<Unstarted>) {
        for action in self.timer.drain() {
            // Retry and deadline actions: dropping them drops their tasks,
            // which resolves the handles with `ShutDown`.
            drop(action);
        }
        while let Some(t) = self.queue.pop() {
            out.push(self.unstarted(t));
        }
        for q in self.domain_queues.iter() {
            while let Some(t) = q.pop() {
                out.push(self.unstarted(t));
            }
        }
        // Taken under the lane's lock, handed back after it: handing back
        // releases reservations (the scheduler's lock) and tells the
        // observer, neither of which may happen under the lane's lock.
        let lane = {
            let mut lane = lock(&self.lane);
            self.lane_len.store(0, Ordering::SeqCst);
            std::mem::take(&mut lane.heap)
        };
        // In the order the lane would have run them.
        for e in lane.into_sorted_vec().into_iter().rev() {
            out.push(self.unstarted(e.task));
        }
        for t in self.sched.drain_waiting() {
            out.push(self.unstarted(t));
        }
    }

    pub(crate) fn unstarted(&self, mut t: Work) -> Unstarted {
        let class = t.desc.as_ref().and_then(|e| e.class.clone());
        if let Some(desc) = t.desc.as_mut() {
            self.sched.release(desc);
            if let Some(o) = &desc.observed {
                o.end(crate::observe::EventKind::NotRun);
            }
        }
        if let Some(packed) = t.packed.take() {
            if let (Some(id), Some(o)) = (packed.observed_id(), &self.config.observer) {
                crate::observe::task_event(
                    o,
                    self.epoch.elapsed(),
                    id,
                    crate::observe::EventKind::NotRun,
                );
            }
            let _ = packed.reservation.unpack().release(&self.sched.tracker);
        }
        Unstarted {
            task: Some(t),
            class,
        }
    }

    /// Fast path: straight into the run queue. Hands the job back if the
    /// pool is shutting down.
    #[inline]
    pub(crate) fn push_plain(&self, job: Job) -> Result<(), Job> {
        if !self.gate.enter(|| self.on_own_worker()) {
            return Err(job);
        }
        let _g = GateGuard(&self.gate);
        self.metrics.submitted.other.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(target: "respool::task", "queued");
        let (desc, packed) = if self.config.observer.is_some() {
            self.observed_plain()
        } else {
            (None, None)
        };
        self.push_shared(Work { job, desc, packed });
        Ok(())
    }

    /// What an observed plain task (no requirement) carries, its
    /// submission and admission sent: its id in the slot (an empty packed
    /// reservation beside it), or a description where every task is
    /// measured (`measure_all`).
    #[cold]
    fn observed_plain(&self) -> (Option<Box<crate::work::Description>>, Option<Packed>) {
        if !self.config.measure_all {
            if let (Some(observer), Some(empty)) = (
                self.config.observer.as_ref(),
                self.sched
                    .tracker
                    .try_reserve_packed(&Resources::NONE, &Resources::NONE),
            ) {
                let id = self.task_ids.fetch_add(1, Ordering::Relaxed) + 1;
                // Submitted and admitted at once: one clock read for both.
                let at = self.epoch.elapsed();
                crate::observe::task_event(
                    observer,
                    at,
                    id,
                    crate::observe::EventKind::Submitted {
                        requirements: &Resources::NONE,
                    },
                );
                crate::observe::task_event(
                    observer,
                    at,
                    id,
                    crate::observe::EventKind::Admitted {
                        reservation: &Resources::NONE,
                    },
                );
                return (None, Some(Packed::observed(empty, id)));
            }
        }
        (Some(self.observed_described()), None)
    }

    /// The description of an observed plain task that is measured.
    fn observed_described(&self) -> Box<crate::work::Description> {
        let mut desc = crate::work::cache::take();
        desc.request = Resources::NONE;
        desc.submitted = None;
        desc.observed = self.observed(None);
        if let Some(o) = &desc.observed {
            o.emit(crate::observe::EventKind::Submitted {
                requirements: &Resources::NONE,
            });
            o.emit(crate::observe::EventKind::Admitted {
                reservation: &Resources::NONE,
            });
        }
        desc
    }

    /// A new task's id and observer bookkeeping; `None` without an
    /// observer (nothing is counted then).
    #[inline]
    pub(crate) fn observed(
        &self,
        class: Option<&Arc<str>>,
    ) -> Option<Arc<crate::observe::Observed>> {
        let observer = self.config.observer.as_ref()?;
        let id = self.task_ids.fetch_add(1, Ordering::Relaxed) + 1;
        Some(Arc::new(crate::observe::Observed::new(
            id,
            class.cloned(),
            observer.clone(),
            self.epoch,
        )))
    }

    /// Sends an event of the pool itself to the observer, if there is one.
    pub(crate) fn pool_event(&self, kind: crate::observe::EventKind<'_>) {
        if let Some(o) = &self.config.observer {
            crate::observe::pool_event(o, self.epoch, kind);
        }
    }

    /// Sends `CapacityChanged` with the tracker's capacities now.
    pub(crate) fn capacity_changed(&self) {
        if self.config.observer.is_some() {
            let capacity = self.sched.tracker.capacity();
            let effective = self.sched.tracker.effective_capacity();
            self.pool_event(crate::observe::EventKind::CapacityChanged {
                capacity: &capacity,
                effective: &effective,
            });
        }
    }

    pub(crate) fn weak_self(&self) -> Weak<Shared> {
        self.self_weak.clone()
    }

    /// Puts a task into the shared run queue and wakes a worker.
    #[inline]
    pub(crate) fn push_shared(&self, task: Work) {
        self.queue.push(task);
        self.sleepers.notify_one();
    }

    /// Puts an admitted task where a worker will find it: the run queue of
    /// its CPU domain when it was placed on one, else the shared queues.
    pub(crate) fn enqueue(&self, task: Work) {
        let domain = task
            .desc
            .as_ref()
            .and_then(|e| e.placed.as_deref())
            .and_then(crate::place::Placed::cpu_domain);
        if let Some(q) = domain.and_then(|d| self.domain_queues.get(d)) {
            q.push(task);
            let wd = &self.worker_domain;
            self.sleepers
                .notify_matching(|w| wd.get(w).copied() == domain);
            return;
        }
        let lane_key = task.desc.as_ref().and_then(|e| {
            (e.priority != 0 || e.deadline.is_some()).then_some((e.priority, e.deadline))
        });
        match lane_key {
            None => return self.push_shared(task),
            Some((priority, deadline)) => {
                let mut lane = lock(&self.lane);
                lane.seq += 1;
                let seq = lane.seq;
                lane.heap.push(LaneEntry {
                    key: (
                        priority,
                        std::cmp::Reverse(deadline),
                        std::cmp::Reverse(seq),
                    ),
                    task,
                });
                self.lane_len.store(lane.heap.len(), Ordering::SeqCst);
            }
        }
        self.sleepers.notify_one();
    }

    /// The next task for worker `worker`: its domain's queue first (tasks
    /// placed there), then the priority lane, then the shared queue.
    #[inline]
    pub(crate) fn next_task(&self, worker: usize) -> Option<Work> {
        if !self.domain_queues.is_empty() {
            let d = self.worker_domain.get(worker).copied().unwrap_or(0);
            if let Some(t) = self.domain_queues.get(d).and_then(RunQueue::pop) {
                return Some(t);
            }
        }
        if self.lane_len.load(Ordering::Acquire) > 0 {
            let mut lane = lock(&self.lane);
            if let Some(e) = lane.heap.pop() {
                self.lane_len.store(lane.heap.len(), Ordering::Release);
                return Some(e.task);
            }
        }
        self.queue.pop()
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
            + self.lane_len.load(Ordering::Relaxed)
            + self.domain_queues.iter().map(RunQueue::len).sum::<usize>()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.sched.waiting.load(Ordering::Relaxed)
    }

    pub(crate) fn has_work(&self) -> bool {
        !self.queue_is_idle() || self.domain_queues.iter().any(|q| !q.is_empty())
    }

    /// Called by a worker that found a task after searching or waking: a
    /// task pushed while it searched got no wake-up of its own (see
    /// `crate::runq`), so if more work is queued, another worker is woken.
    #[inline]
    pub(crate) fn wake_another(&self) {
        if !self.queue_is_idle() {
            self.sleepers.notify_one();
        }
    }

    /// Nothing waits in the shared run queue or the priority lane: a task
    /// admitted now overtakes none by not going through them.
    pub(crate) fn queue_is_idle(&self) -> bool {
        // `SeqCst`: `has_work_for` pairs this load with the sleepers'
        // registration (Dekker).
        self.queue.is_empty() && self.lane_len.load(Ordering::SeqCst) == 0
    }

    /// Whether worker `worker` has something to run.
    pub(crate) fn has_work_for(&self, worker: usize) -> bool {
        !self.queue_is_idle() || self.domain_has_work(worker)
    }

    /// A task waits in the run queue of worker `worker`'s CPU domain (never
    /// with trivial placement, which has no domain queues).
    #[inline]
    pub(crate) fn domain_has_work(&self, worker: usize) -> bool {
        if self.domain_queues.is_empty() {
            return false;
        }
        let d = self.worker_domain.get(worker).copied().unwrap_or(0);
        self.domain_queues.get(d).is_some_and(|q| !q.is_empty())
    }

    /// Nothing accepted is left anywhere (used by graceful shutdown).
    /// Wakes the thread waiting in `Pool::shutdown`, if any (it checks
    /// [`Shared::quiescent`] again).
    pub(crate) fn wake_shutdown_waiter(&self) {
        if let Some(t) = lock(&self.shutdown_waiter).as_ref() {
            t.unpark();
        }
    }

    pub(crate) fn quiescent(&self) -> bool {
        self.gate.is_closed()
            && self.gate.in_flight() == 0
            && !self.has_work()
            && self.sched.waiting.load(Ordering::SeqCst) == 0
            && self.timer.pending() == 0
            && self.active.load(Ordering::SeqCst) == 0
    }

    /// Gives back what every worker's log holds (before admitting waiters).
    pub(crate) fn drain_pending(&self) {
        for log in self.logs.iter() {
            let _ = log.give_back(&self.sched.tracker);
        }
    }
}
