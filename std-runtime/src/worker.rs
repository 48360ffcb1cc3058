//! The worker: its loop, running one task (inside `catch_unwind`, measured
//! when it has a class), giving its reservation back (batched through the
//! worker's release log, or at once when someone waits for it), and feeding
//! what it measured to learning.
//!
//! A worker takes work from the engine (`Shared::next_task`), gives
//! reservations back to the scheduler, and then calls `Shared::dispatch`
//! (admit.rs), which admits the waiters that now fit. `help_once` runs one queued task on a worker that waits for
//! something else (a scope, a batch run, a blocked submission).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::thread;
use std::time::{Duration, Instant};

use respool_core::{Resources, Tracker};

use crate::engine::{Shared, WORKER};
use crate::error::TaskError;
use crate::handle::with_current;
use crate::job::Job;
use crate::observe::EventKind;
use crate::work::{Description, Packed, STASH, Work, run_guarded, with_description};

/// A worker's batch of finished tasks' reservations: the writer of its
/// release log (`Shared::logs`), and how many tasks it added since the log
/// was last given back. Lives on the worker thread's stack.
pub(crate) struct WorkerBatch<'a> {
    writer: respool_core::LogWriter<'a>,
    log: &'a respool_core::ReleaseLog,
    count: u32,
    /// Releases in a row given back at once with nobody waiting (see
    /// `Scheduler::direct`).
    quiet: u32,
    /// A waiter this worker admitted into the room its releases made, to
    /// run next: handed over directly instead of through a run queue (see
    /// `Shared::dispatch_into`). The worker loop runs it before looking at
    /// any queue, and puts it into the shared queue if it must stop first.
    pub(crate) next: Option<Work>,
}

impl<'a> WorkerBatch<'a> {
    pub(crate) fn new(log: &'a respool_core::ReleaseLog) -> Option<WorkerBatch<'a>> {
        Some(WorkerBatch {
            writer: log.writer()?,
            log,
            count: 0,
            quiet: 0,
            next: None,
        })
    }
}

/// Tasks a worker may finish before it gives their reservations back (it
/// gives them back at once when someone waits, and before it idles).
const RELEASE_BATCH: u32 = 32;

/// Releases in a row with nobody waiting after which a worker goes back
/// from giving reservations back at once to batching them
/// (`Scheduler::direct`): long enough that a queue which empties and
/// refills between a few tasks keeps the direct mode, short enough that
/// tiny tasks submitted in bulk soon batch again.
const QUIET_RELEASES: u32 = 256;

/// What the allocator hook needs to grow a running task's reservation, and
/// what it took: memory in use beyond the reservation, held here (on the
/// worker's stack) until the task ends.
pub(crate) struct GrowCtx<'a> {
    tracker: &'a Tracker,
    /// Memory the task reserved at admission.
    reserved: u64,
    /// Memory taken since, as one token.
    grown: std::cell::Cell<Option<respool_core::DetachedReservation>>,
}

impl<'a> GrowCtx<'a> {
    pub(crate) fn new(tracker: &'a Tracker, desc: &Description) -> GrowCtx<'a> {
        GrowCtx {
            tracker,
            reserved: desc
                .held
                .as_ref()
                .map_or(0, |h| h.held().amount(respool_core::Dim::Memory)),
            grown: std::cell::Cell::new(None),
        }
    }

    /// Gives back what was grown (exactly once: the token is taken) and says
    /// how much it was.
    pub(crate) fn release(&self) -> Option<Resources> {
        let g = self.grown.take()?;
        let amount = *g.held();
        let _ = g.release(self.tracker);
        Some(amount)
    }
}

/// The allocator hook: the running task's live heap passed what it holds in
/// memory, so it takes more (without a capacity check: the memory is
/// already in use), in steps of at least 1 MiB or an eighth of the live
/// amount, and returns the new threshold. Allocation-free and lock-free: it
/// runs inside `alloc`.
fn grow_reservation(data: *const (), live: i64) -> i64 {
    // SAFETY: `data` points to the `GrowCtx` on the stack of the worker
    // running the task, which installs this hook only for the duration of the
    // task's run on this thread and removes it (the allocator session ends)
    // before the frame returns.
    let ctx = unsafe { &*data.cast::<GrowCtx<'_>>() };
    let dim = respool_core::Dim::Memory;
    let grown_token = ctx.grown.take();
    let grown = grown_token.as_ref().map_or(0, |g| g.held().amount(dim));
    let live = u64::try_from(live).unwrap_or(0);
    let over = live.saturating_sub(ctx.reserved.saturating_add(grown));
    let step = over.max(1 << 20).max(live / 8);
    let more = ctx
        .tracker
        .force_reserve(&Resources::NONE.with_saturating(dim, step));
    let taken = more.held().amount(dim);
    let merged = match grown_token {
        Some(mut g) => {
            // Same tracker: the merge cannot fail; if it did, give back.
            if let Err(m) = g.merge(more) {
                let _ = m.release(ctx.tracker);
            }
            g
        }
        None => more,
    };
    ctx.grown.set(Some(merged));
    if taken == 0 {
        return i64::MAX; // Nothing more to take: stop asking.
    }
    i64::try_from(ctx.reserved.saturating_add(grown).saturating_add(taken)).unwrap_or(i64::MAX)
}

/// Counts a finished task in its worker's counters.
fn count(c: &crate::metrics::WorkerCounters, ok: bool, elapsed: Option<Duration>) {
    if ok {
        bump(&c.completed, 1);
    } else {
        bump(&c.panicked, 1);
    }
    if let Some(e) = elapsed {
        bump(&c.busy_ns, u64::try_from(e.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// Adds `by` to a counter that only one thread writes (a worker's own
/// counters: `run` is called only on the worker thread whose index it gets).
/// A load and a store instead of a locked read-modify-write, which is about
/// 20 cycles less per task; readers (snapshots) see a value that is at most
/// this one addition behind.
#[inline]
fn bump(counter: &std::sync::atomic::AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// Runs one queued task on this thread if it is a worker of `shared`'s
/// pool: the engine's seam for a submitter of the pool's own that waits
/// (`Shared::help`).
pub(crate) fn help(shared: &Shared) -> bool {
    shared.help_once()
}

pub(crate) fn worker_loop(shared: &Arc<Shared>, id: usize) {
    WORKER.with(|w| w.set((shared.id, id)));
    // This thread is the only writer of its release log.
    let mut batch = shared.logs.get(id).and_then(|log| WorkerBatch::new(log));
    // Set once this worker found nothing and went on towards parking (after
    // its search or stand-by, and after waking): tasks pushed meanwhile may
    // have skipped waking anyone (a submitter wakes no one while a worker
    // searches), and a wake-up goes to one worker, possibly this one while
    // it was about to park; so the first task it then takes wakes another
    // worker if more wait (see `crate::runq`). Without it, a burst that a
    // searcher's last poll just missed was found again only by workers'
    // re-checks before parking, each took one task, and the rest waited
    // for parked workers nobody woke (stress runs of `tests/wakeups.rs`
    // hung that way, about once in 30 to 60 runs under load).
    let mut cascade = false;
    loop {
        if shared.stop_now.load(Ordering::Relaxed) {
            break;
        }
        let task = batch
            .as_mut()
            .and_then(|b| b.next.take())
            .or_else(|| shared.next_task(id));
        if let Some(t) = task {
            if std::mem::take(&mut cascade) {
                shared.wake_another();
            }
            shared.run(t, id, batch.as_mut());
            continue;
        }
        cascade = false;
        if shared.exit.load(Ordering::SeqCst) {
            break;
        }
        // Search (if not too many do, else stand by for a searcher's place
        // without polling the shared queues: a task placed on this worker's
        // domain ends the wait), then park (see `crate::runq`).
        let mut searching = shared.sleepers.start_search();
        let standby = crossbeam_utils::Backoff::new();
        while !searching && !standby.is_completed() && !shared.domain_has_work(id) {
            standby.snooze();
            searching = shared.sleepers.start_search();
        }
        if searching {
            let mut found = None;
            let backoff = crossbeam_utils::Backoff::new();
            while !backoff.is_completed() {
                backoff.snooze();
                if let Some(t) = shared.next_task(id) {
                    found = Some(t);
                    break;
                }
            }
            shared.sleepers.end_search();
            if let Some(t) = found {
                shared.wake_another();
                shared.run(t, id, batch.as_mut());
                continue;
            }
        }
        // From here on, a task found (by the re-check before parking, or
        // after waking) was maybe pushed without a wake-up of its own, or a
        // wake-up meant for a parked worker picked this one, about to park:
        // the task it takes wakes another worker if more wait.
        cascade = true;
        if shared.exit.load(Ordering::SeqCst) {
            break;
        }
        // Give back batched releases before idling (a waiter they admit
        // runs here next).
        if let Some(b) = batch.as_mut() {
            shared.flush_batch(b);
            if b.next.is_some() {
                continue;
            }
        }
        // Go idle: register, re-check, park.
        shared.sleepers.register(id);
        if shared.has_work_for(id) || shared.exit.load(Ordering::SeqCst) {
            shared.sleepers.unregister(id);
            continue;
        }
        shared.active.fetch_sub(1, Ordering::SeqCst);
        if shared.gate.is_closed() {
            shared.wake_shutdown_waiter();
        }
        if shared.exit_when_done.load(Ordering::SeqCst) && shared.quiescent() {
            shared.exit.store(true, Ordering::SeqCst);
            shared.sleepers.notify_all();
        }
        if !shared.exit.load(Ordering::SeqCst) {
            thread::park();
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        shared.sleepers.unregister(id);
    }
    // Nothing stays batched behind a worker that exits, and a waiter handed
    // to it goes where a sweep of `shutdown_now` (or another worker) finds
    // it: `shutdown_now` joins the workers before its last sweep.
    if let Some(b) = batch.as_mut() {
        shared.flush_batch(b);
        if let Some(t) = b.next.take() {
            shared.enqueue(t);
        }
    }
    shared.active.fetch_sub(1, Ordering::SeqCst);
}

impl Shared {
    /// On one of this pool's workers, runs one queued task; `false` if not on
    /// a worker or nothing is queued. Used by scopes, and by submissions
    /// blocked under `BlockUntilDeadline`, while they wait.
    pub(crate) fn help_once(&self) -> bool {
        let (pool, worker) = WORKER.with(Cell::get);
        if pool != self.id {
            return false;
        }
        match self.next_task(worker) {
            Some(t) => {
                // The task runs nested inside the one this worker is running
                // (a scope or batch waiting in it), which is not its owner:
                // it gets accounts of its own. Its allocations (a plain
                // task's, the pool's bookkeeping around a measured one) are
                // charged to no task and cannot grow the surrounding task's
                // reservation; what the surrounding task reported is kept;
                // its CPU time and I/O are subtracted from the surrounding
                // task's. It does not see the surrounding task's description
                // or cancellation either (a task with its own sets them when
                // it runs). All of it is put back unchanged afterwards.
                let _heap = crate::alloc::suspend();
                let _usage = crate::measure::Inline::enter();
                with_description(None, || {
                    // Its releases go back at once: the worker's batch
                    // belongs to the frame that runs the surrounding task.
                    crate::handle::with_current(None, || self.run(t, worker, None));
                });
                true
            }
            None => false,
        }
    }

    /// Runs one task on worker `id`.
    pub(crate) fn run(&self, task: Work, id: usize, batch: Option<&mut WorkerBatch<'_>>) {
        let Work { job, desc, packed } = task;
        let counters = self.metrics.worker(id);
        if let Some(packed) = packed {
            self.run_packed(job, packed, id, counters, batch);
            return;
        }
        match desc {
            None if !self.config.measure_all => {
                tracing::trace!(target: "respool::task", worker = id, "started");
                let ok = run_guarded(job);
                self.ended(counters, ok, None, None);
            }
            desc => self.run_described(job, desc, id, counters, batch),
        }
    }

    /// Runs a task admitted by `submit_packed`: declared requirements only, so
    /// no description, no measurement, and a clock read only for the timing
    /// sample; the reservation goes back batched.
    pub(crate) fn run_packed(
        &self,
        job: Job,
        packed: Packed,
        id: usize,
        counters: Option<&crate::metrics::WorkerCounters>,
        batch: Option<&mut WorkerBatch<'_>>,
    ) {
        let submitted_ns = packed.submitted_ns();
        let start = (submitted_ns != 0).then(|| self.now_ns());
        if let (Some(c), Some(start)) = (counters, start) {
            c.wait
                .record(Duration::from_nanos(start.saturating_sub(submitted_ns)));
        }
        tracing::trace!(target: "respool::task", worker = id, "started");
        let observed = packed.observed_id().zip(self.config.observer.as_ref());
        if let Some((task, o)) = observed {
            crate::observe::task_event(
                o,
                self.epoch.elapsed(),
                task,
                EventKind::Started {
                    worker: id,
                    domain: None,
                    canceller: None,
                },
            );
        }
        let ok = run_guarded(job);
        if let Some((task, o)) = observed {
            let end = if ok {
                EventKind::Finished { usage: None }
            } else {
                EventKind::Panicked
            };
            crate::observe::task_event(o, self.epoch.elapsed(), task, end);
        }
        // A job with a handle leaves its packet in the stash when its body
        // ran (returned or panicked), and nothing when it was cancelled
        // before it could start: then there is nothing to count.
        let packet = if packed.has_handle() {
            let packet = STASH.with(Cell::take);
            if packet.is_none() {
                self.give_back_packed(packed.reservation, None);
                return;
            }
            packet
        } else {
            None
        };
        let timing = start.map(|start| {
            let end = self.now_ns();
            (
                Duration::from_nanos(end.saturating_sub(start)),
                Duration::from_nanos(end.saturating_sub(submitted_ns)),
            )
        });
        if let (Some(c), Some((_, latency))) = (counters, timing) {
            c.latency.record(latency);
        }
        self.ended(counters, ok, timing.map(|t| t.0), None);
        if let Some((elapsed, _)) = timing {
            self.record_hold(elapsed, counters);
        }
        match packet {
            Some(packet) => {
                // A joiner waits: give the reservation back at once (not
                // batched), then let it see the result.
                self.give_back_packed(packed.reservation, None);
                packet.publish();
            }
            None => self.give_back_packed(packed.reservation, batch),
        }
    }

    pub(crate) fn run_described(
        &self,
        job: Job,
        desc: Option<Box<Description>>,
        worker: usize,
        counters: Option<&crate::metrics::WorkerCounters>,
        mut batch: Option<&mut WorkerBatch<'_>>,
    ) {
        let Some(mut desc) = desc else {
            // `measure_all` for a plain task: time it, nothing else.
            let start = Instant::now();
            let ok = run_guarded(job);
            let elapsed = start.elapsed();
            if let Some(c) = counters {
                c.latency.record(elapsed);
            }
            self.ended(counters, ok, Some(elapsed), None);
            return;
        };
        // Read the clock only when something needs it.
        let needs_clock =
            desc.submitted.is_some() || desc.deadline.is_some() || desc.timeout.is_some();
        let start = needs_clock.then(Instant::now);
        if let (Some(c), Some(submitted), Some(start)) = (counters, desc.submitted, start) {
            c.wait.record(start.saturating_duration_since(submitted));
        }
        if let (Some(deadline), Some(start)) = (desc.deadline, start) {
            if deadline <= start {
                // Too late to start: resolve the handle and skip the run.
                if let Some(c) = desc.cancel.as_ref() {
                    c.fail(TaskError::DeadlineMissed);
                }
                if let Some(o) = &desc.observed {
                    o.end(EventKind::DeadlineMissed);
                }
                tracing::debug!(target: "respool::task", class = ?desc.class, "deadline missed");
                drop(job);
                self.finish_described(&mut desc, None, counters, batch.as_deref_mut());
                crate::work::cache::recycle(desc);
                return;
            }
        }
        if desc.timeout == Some(Duration::ZERO) {
            // A zero timeout has run out when the task would start: it is
            // not started (arming the timer would race it against the task).
            if desc
                .cancel
                .as_ref()
                .is_none_or(|c| c.fail(TaskError::TimedOut))
            {
                self.metrics.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(o) = &desc.observed {
                o.end(EventKind::TimedOut);
            }
            tracing::debug!(target: "respool::task", class = ?desc.class, "zero timeout: not started");
            drop(job);
            self.finish_described(&mut desc, None, counters, batch.as_deref_mut());
            crate::work::cache::recycle(desc);
            return;
        }
        // Mark the start here, before the timeout is armed: a timeout counts
        // from a start that really happened. A task cancelled before this
        // point was already resolved by its canceller.
        if let Some(c) = desc.cancel.as_ref() {
            if !c.start() {
                if let Some(o) = &desc.observed {
                    o.end(EventKind::Cancelled);
                }
                drop(job);
                self.finish_described(&mut desc, None, counters, batch.as_deref_mut());
                crate::work::cache::recycle(desc);
                return;
            }
        }
        let timer_id = match (desc.timeout, start) {
            (Some(timeout), Some(start)) => desc.cancel.clone().and_then(|c| {
                let weak = self.weak_self();
                let observed = desc.observed.clone();
                self.timer.schedule(
                    start + timeout,
                    Box::new(move || {
                        if c.fail(TaskError::TimedOut) {
                            if let Some(s) = weak.upgrade() {
                                s.metrics.timed_out.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some(o) = &observed {
                                o.end(EventKind::TimedOut);
                            }
                        }
                    }),
                )
            }),
            _ => None,
        };
        let measure = desc.class.is_some() || self.config.measure_all;
        let _span =
            tracing::trace_span!(target: "respool::task", "task", class = ?desc.class).entered();
        tracing::trace!(target: "respool::task", request = %desc.request, "started");
        if let Some(o) = &desc.observed {
            let canceller = desc.cancel.clone().map(crate::handle::Canceller::of);
            o.emit(EventKind::Started {
                worker,
                domain: desc
                    .placed
                    .as_deref()
                    .and_then(crate::place::Placed::cpu_domain),
                canceller: canceller.as_ref(),
            });
        }
        let (ok, report, grown) = if measure {
            let (ok, usage, grown) = self.run_probed(job, &desc, start);
            (ok, Some(usage), grown)
        } else {
            // Not measured; if it reserved memory, its heap is followed so
            // that outgrowing the reservation grows it (accounting follows
            // reality).
            let follow = crate::alloc::is_installed() && self.holds_memory(&desc);
            let (ok, _, grown) = self.run_job(job, &desc, follow);
            (ok, None, grown)
        };
        if let Some(id) = timer_id {
            self.timer.cancel(id);
        }
        let end = (desc.submitted.is_some() || report.is_some()).then(Instant::now);
        let elapsed = start.zip(end).map(|(s, e)| e.saturating_duration_since(s));
        if let (Some(c), Some(submitted), Some(end)) = (counters, desc.submitted, end) {
            c.latency.record(end.saturating_duration_since(submitted));
        }
        self.ended(counters, ok, elapsed, desc.class.as_ref());
        let grown = grown.unwrap_or(Resources::NONE);
        if let Some(o) = desc.observed.as_ref().filter(|_| !grown.is_zero()) {
            o.emit(EventKind::ReservationGrown { by: &grown });
        }
        if let Some(o) = &desc.observed {
            // Before the reservation goes back, so that an observer summing
            // reservations from the events never counts a waiter admitted
            // into the room this task leaves while it still counts this
            // task; and before the result is published: a joiner sees the
            // task ended. The profile update comes first (what the task
            // used is known; the learner takes it after the release).
            if let (Some(usage), Some(_), true) = (&report, &desc.class, ok) {
                let expected = desc.expected.as_deref().copied().unwrap_or(Resources::NONE);
                o.emit(EventKind::ProfileUpdated {
                    expected: &expected,
                    measured: &usage.as_resources(),
                });
            }
            match (ok, crate::work::ATTEMPT_END.with(std::cell::Cell::take)) {
                (false, _) => {
                    o.end(EventKind::Panicked);
                }
                (true, Some(crate::work::AttemptEnd::Retry { attempt, delay })) => {
                    o.emit(EventKind::Retried { attempt, delay });
                }
                (true, Some(crate::work::AttemptEnd::Failed { attempts })) => {
                    o.end(EventKind::Failed { attempts });
                }
                (true, Some(crate::work::AttemptEnd::Cancelled)) => {
                    o.end(EventKind::Cancelled);
                }
                (true, None) => {
                    o.end(EventKind::Finished {
                        usage: report.as_ref(),
                    });
                }
            }
        }
        self.finish_described(&mut desc, elapsed, counters, batch);
        if let Some(usage) = &report {
            self.learn(&desc, usage, grown, !ok);
        }
        // Resources are back: now the joiner may see the result.
        if let Some(c) = desc.cancel.as_ref() {
            c.publish();
        }
        crate::work::cache::recycle(desc);
    }

    /// Runs a measured task: CPU time, I/O, heap (with the reservation grown
    /// from inside the allocator when the task outgrows it).
    pub(crate) fn run_probed(
        &self,
        job: Job,
        desc: &Description,
        start: Option<Instant>,
    ) -> (bool, crate::measure::TaskUsage, Option<Resources>) {
        let start = start.unwrap_or_else(Instant::now);
        let probe = crate::measure::Probe::start(desc.class.is_some());
        let (ok, heap, grown) = self.run_job(job, desc, true);
        let wait = desc
            .submitted
            .map_or(Duration::ZERO, |s| start.saturating_duration_since(s));
        (ok, probe.finish(start.elapsed(), wait, heap), grown)
    }

    /// Runs a described task's job, its description and handle current on
    /// this thread, with its heap followed when `follow` (a session whose
    /// hook grows the memory reservation when the task outgrows it; none
    /// without the tracking allocator): whether it returned, its heap
    /// usage, and what its reservation grew by.
    pub(crate) fn run_job(
        &self,
        job: Job,
        desc: &Description,
        follow: bool,
    ) -> (bool, Option<crate::alloc::HeapUsage>, Option<Resources>) {
        let session = if follow { crate::alloc::begin() } else { None };
        let grow = GrowCtx::new(&self.sched.tracker, desc);
        if let Some(s) = &session {
            self.install_growth(s, desc, &grow);
        }
        let ok = with_description(Some(desc), || {
            with_current(desc.cancel.as_deref(), || run_guarded(job))
        });
        let heap = session.map(crate::alloc::Session::end);
        (ok, heap, grow.release())
    }

    /// A task ran on this worker: counts it (`elapsed`, when timed) and
    /// says so on the `respool::task` target. Inlined: on the plain path
    /// the compiler then drops what does not apply (no counters, no class).
    #[inline(always)]
    fn ended(
        &self,
        counters: Option<&crate::metrics::WorkerCounters>,
        ok: bool,
        elapsed: Option<Duration>,
        class: Option<&Arc<str>>,
    ) {
        if let Some(c) = counters {
            count(c, ok, elapsed);
        }
        if ok {
            tracing::trace!(target: "respool::task", class = ?class, "completed");
        } else {
            tracing::debug!(target: "respool::task", class = ?class, "failed (panicked)");
        }
    }

    /// Whether the task holds a memory reservation on a pool that tracks memory.
    pub(crate) fn holds_memory(&self, desc: &Description) -> bool {
        self.sched
            .tracker
            .tracked()
            .contains(respool_core::Dim::Memory)
            && desc
                .held
                .as_ref()
                .is_some_and(|h| h.held().get(respool_core::Dim::Memory).is_some())
    }

    /// Makes the allocator grow the task's memory reservation when its live
    /// heap passes it (`grow` must outlive the session's hook).
    pub(crate) fn install_growth(
        &self,
        session: &crate::alloc::Session,
        desc: &Description,
        grow: &GrowCtx<'_>,
    ) {
        if !self
            .sched
            .tracker
            .tracked()
            .contains(respool_core::Dim::Memory)
        {
            return;
        }
        let reserved = desc
            .held
            .as_ref()
            .map_or(0, |h| h.held().amount(respool_core::Dim::Memory));
        session.set_hook(
            i64::try_from(reserved).unwrap_or(i64::MAX),
            crate::alloc::Hook {
                grow: grow_reservation,
                data: std::ptr::from_ref(grow).cast(),
            },
        );
    }

    /// Feeds a measured task to learning and to the `on_task_end` callback.
    pub(crate) fn learn(
        &self,
        desc: &Description,
        usage: &crate::measure::TaskUsage,
        grown: Resources,
        panicked: bool,
    ) {
        let measured = usage.as_resources();
        if let Some(class) = &desc.class {
            self.learner.account(
                class,
                &measured,
                &desc.request.saturating_add(&grown),
                usage.wall,
            );
            if !panicked {
                let expected = desc.expected.as_deref().copied().unwrap_or(Resources::NONE);
                // Its observer was told before the release (`run_described`).
                self.learner
                    .observe(class, desc.size, &measured, usage.wall, &expected);
            }
        }
        if let Some(cb) = &self.config.on_task_end {
            let report = crate::measure::TaskReport {
                class: desc.class.clone(),
                size: desc.size,
                requested: desc.request,
                expected: desc.expected.as_deref().copied().unwrap_or(Resources::NONE),
                usage: *usage,
                grown,
                panicked,
            };
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&report)));
        }
    }

    /// Releases the reservation, feeds the hold time to admission (sampled),
    /// admits waiting tasks.
    pub(crate) fn finish_described(
        &self,
        desc: &mut Description,
        elapsed: Option<Duration>,
        counters: Option<&crate::metrics::WorkerCounters>,
        mut batch: Option<&mut WorkerBatch<'_>>,
    ) {
        if desc.held.is_none() {
            return;
        }
        if let Some(elapsed) = elapsed {
            self.record_hold(elapsed, counters);
        }
        // Someone waits: a waiter alike in the lane takes this reservation
        // as it is (see `crate::scheduler`), with no release, reservation or
        // dispatch round, and this worker runs it next.
        if desc.placed.is_none() && !desc.probe && self.sched.waiting.load(Ordering::SeqCst) != 0 {
            let next = desc
                .held
                .as_ref()
                .and_then(|h| self.sched.lane_handover(h.held(), &desc.request));
            if let Some(mut p) = next {
                self.sched.waiting.fetch_sub(1, Ordering::SeqCst);
                self.sched.admission.record_after_wait(true);
                // Lane waiters have descriptions (`defer_in_lane`); were one
                // without, this reservation would go back as usual below.
                if let Some(d) = p.work.desc.as_mut() {
                    d.held = desc.held.take();
                }
                let handed = desc.held.is_none();
                self.start_admitted(p.work, batch.as_deref_mut().map(|b| &mut b.next));
                if handed {
                    return;
                }
            }
        }
        // A task nobody waits on (no handle), not placed on a domain, not a
        // probe: batch its release with the worker's next ones. The tracker's
        // counters are then touched once per batch instead of once per task,
        // which keeps its cache line with the submitters. A batch is given
        // back at once when anyone waits for resources, and before the worker
        // idles; a waiting submitter also drains every batch before deciding.
        let batchable = desc.cancel.is_none() && desc.placed.is_none() && !desc.probe;
        if batchable {
            if let Some(held) = desc.held.take() {
                self.give_back(held, batch);
            }
            return;
        }
        self.sched.release(desc);
        // Pairs with the fence in `defer` (Dekker on `waiting` / tracker).
        fence(Ordering::SeqCst);
        self.dispatch();
    }

    /// Feeds a sample of measured hold times to admission (its retry-after
    /// hints).
    pub(crate) fn record_hold(
        &self,
        elapsed: Duration,
        counters: Option<&crate::metrics::WorkerCounters>,
    ) {
        let n = counters.map_or(0, |c| {
            let n = c.measured.load(Ordering::Relaxed);
            bump(&c.measured, 1);
            n
        });
        if n % crate::metrics::HOLD_SAMPLE == 0 {
            self.sched
                .admission
                .record_hold_time(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// Gives back the reservation of a finished task nobody waits on: with
    /// the worker's `batch`, into its release log (see `finish_described`), else
    /// at once; then admits waiters if any.
    pub(crate) fn give_back(
        &self,
        held: respool_core::DetachedReservation,
        batch: Option<&mut WorkerBatch<'_>>,
    ) {
        let held = match batch {
            Some(b) if self.sched.direct.load(Ordering::Relaxed) => {
                return self.release_direct(held, b);
            }
            Some(b) => match b.writer.add_detached(held) {
                Ok(()) => return self.added(b),
                Err(held) => held,
            },
            None => held,
        };
        self.release_now(held);
    }

    /// A release while workers give back at once (`Scheduler::direct`):
    /// to the tracker, then the dispatch (its first admitted task into the
    /// worker's slot); after `QUIET_RELEASES` in a row with nobody waiting,
    /// the worker ends the direct mode.
    fn release_direct(&self, held: respool_core::DetachedReservation, b: &mut WorkerBatch<'_>) {
        let _ = held.release(&self.sched.tracker);
        // Pairs with the fence in `defer` (Dekker on `waiting` / tracker).
        fence(Ordering::SeqCst);
        if self.sched.waiting.load(Ordering::SeqCst) == 0 {
            b.quiet += 1;
            if b.quiet >= QUIET_RELEASES {
                b.quiet = 0;
                self.sched.direct.store(false, Ordering::SeqCst);
            }
        } else {
            b.quiet = 0;
        }
        self.dispatch_into(Some(&mut b.next));
    }

    /// `give_back` for a packed reservation (a lite task's: the hot path).
    #[inline]
    pub(crate) fn give_back_packed(
        &self,
        held: respool_core::PackedReservation,
        batch: Option<&mut WorkerBatch<'_>>,
    ) {
        let held = match batch {
            Some(b) if self.sched.direct.load(Ordering::Relaxed) => {
                return self.release_direct(held.unpack(), b);
            }
            Some(b) => match b.writer.add_packed(held) {
                Ok(()) => return self.added(b),
                Err(held) => held,
            },
            None => held,
        };
        self.release_now(held.unpack());
    }

    /// After an addition to a worker's log: gives the log back every
    /// `RELEASE_BATCH` tasks, and at once when someone waits.
    #[inline]
    pub(crate) fn added(&self, b: &mut WorkerBatch<'_>) {
        b.count += 1;
        // The store into the log before the load of `waiting`: pairs with
        // the heavy barrier in `defer` (Dekker; see `barrier`). Either the
        // waiter's give-back sees this addition, or this load sees the
        // waiter.
        crate::barrier::light();
        // `direct` before `waiting`, both `SeqCst`: see `first_waiter`.
        if b.count >= RELEASE_BATCH
            || self.sched.direct.load(Ordering::SeqCst)
            || self.sched.waiting.load(Ordering::SeqCst) > 0
        {
            self.flush_batch(b);
        }
    }

    /// Gives a reservation back to the tracker at once, then admits
    /// waiters if any.
    pub(crate) fn release_now(&self, held: respool_core::DetachedReservation) {
        let _ = held.release(&self.sched.tracker);
        // Pairs with the fence in `defer` (Dekker on `waiting` / tracker).
        fence(Ordering::SeqCst);
        self.dispatch();
    }

    /// Gives back what a worker's log holds (every `RELEASE_BATCH` tasks,
    /// when someone waits, before it idles), then admits waiters if any.
    pub(crate) fn flush_batch(&self, b: &mut WorkerBatch<'_>) {
        b.count = 0;
        if b.log.give_back(&self.sched.tracker) == Ok(true) {
            // Pairs with the fence in `defer` (Dekker on `waiting` / tracker).
            fence(Ordering::SeqCst);
            self.dispatch_into(Some(&mut b.next));
        }
    }
}
