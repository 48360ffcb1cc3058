//! One run of a batch: lanes on the pool, the collector on the caller.
//!
//! `run()` plans the run with the strategy, submits one pool task per lane,
//! and collects results on the calling thread while the lanes work. Each
//! lane loops: take a permit (at most `buffer_size` jobs are in flight, from
//! a lane taking one to `run()` collecting its result), ask the dispatcher
//! for its next job, claim it (a per-job flag: a job handed out twice is
//! ignored and counted), run its attempts, send the result. The collector
//! frees a permit per result, so lanes never wait for something that waits
//! for them: any number of jobs completes with any buffer size.
//!
//! Termination does not count messages: each lane task owns a guard holding
//! a sender of the result channel. Whether the lane runs to its end, panics,
//! or is dropped unrun (the pool was shut down with `shutdown_now`), its
//! guard is dropped and reports the lane's end, and once every sender is gone
//! the channel disconnects and the collector stops. Jobs without a result at
//! that point were never started, and are reported as such.
//!
//! Cancellation (`stop()`, or the run's timeout) sets a flag that running
//! processors see through their context, wakes lanes waiting for a permit or
//! a back-off, and keeps lanes from taking new jobs; results collected so far
//! are kept.
//!
//! Borrowing: the processor and the job data may borrow from the caller
//! (`'env`), as the tasks of `Pool::scope` do, and by the same argument:
//! `run()` does not return, nor unwind, before every lane task has run or
//! been dropped (the channel disconnects only then, and `LanesJoined` waits
//! for it on every path), and a lane does not finish a job before the pool
//! task of each of its attempts has run its work or given it back
//! (`Handoff`). Job data need only be `Send`: a lane holds its job's lock
//! while it runs the job (each job is claimed by one lane, and runs of one
//! batch take turns), and lends `&mut Job<T>` (which is `Send`) to the pool
//! task of a resource-aware attempt.

use std::error::Error;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use super::BatchReport;
use super::config::{BatchConfig, BatchError};
use super::control::{CancelReason, Control};
use super::job::{Job, JobContext, JobError, JobResult, JobStatus};
use super::metrics::{BatchMetrics, Measured};
use super::strategy::{Dispatch, JobMeta};
use crate::error::SubmitError;
use crate::error::TaskError;
use crate::error::panic_message;
use crate::job::Job as PoolJob;
use crate::pool::Pool;
use crate::sync::lock;
use crate::task::Backoff;
use respool_core::Resources;

/// A processor's error, shared so that results can be cloned.
pub(super) type SharedError = Arc<dyn Error + Send + Sync>;

/// The type-erased processor; it may borrow for `'env`.
pub(super) type Processor<'env, T, R> =
    Arc<dyn Fn(&JobContext, &Job<T>) -> Result<R, SharedError> + Send + Sync + 'env>;

/// A job of a batch: its data need only be `Send`, so one lane at a time
/// holds it (see the module documentation).
pub(super) type JobCell<T> = Arc<Mutex<Job<T>>>;

/// What every lane of one run shares.
struct RunState<'env, T, R> {
    jobs: Vec<JobCell<T>>,
    processor: Processor<'env, T, R>,
    dispatch: Box<dyn Dispatch>,
    claimed: Vec<AtomicBool>,
    control: Arc<Control>,
    attempt_timeout: Duration,
    max_retries: u32,
    backoff: Backoff,
    histogram: bool,
    /// The batch's requirements and class, for jobs that set none.
    requirements: Resources,
    class: Option<Arc<str>>,
    /// The pool's thread name prefix (workers are `<prefix>-<index>`).
    /// The pool, to ask which of its workers runs a lane.
    pool: std::sync::Arc<crate::engine::Shared>,
    /// The thread running `run()`.
    collector: ThreadId,
    depth: AtomicUsize,
    depth_max: AtomicUsize,
    dispatch_errors: AtomicU64,
}

enum Msg<R> {
    Done(JobResult<R>),
    LaneEnd {
        lane: usize,
        ran: bool,
        busy: Duration,
        timed_out: u64,
    },
}

/// Owned by a lane's pool task: reports the lane's end however the task
/// ends (returns, panics, or is dropped unrun), after letting go of the
/// run's state, so that nothing a lane holds outlives `run()`.
struct LaneGuard<'env, T, R: Send> {
    state: Option<Arc<RunState<'env, T, R>>>,
    tx: Sender<Msg<R>>,
    lane: usize,
    ran: bool,
    busy: Duration,
    timed_out: u64,
}

impl<T, R: Send> Drop for LaneGuard<'_, T, R> {
    fn drop(&mut self) {
        // The state first: once the message is sent, `run()` may return.
        drop(self.state.take());
        let _ = self.tx.send(Msg::LaneEnd {
            lane: self.lane,
            ran: self.ran,
            busy: self.busy,
            timed_out: self.timed_out,
        });
    }
}

fn lane_main<T, R>(st: &RunState<'_, T, R>, g: &mut LaneGuard<'_, T, R>)
where
    T: Send,
    R: Send,
{
    let lane = g.lane;
    let thread = st.pool.current_worker();
    let inline = thread::current().id() == st.collector;
    let limit = u64::try_from(st.jobs.len()).unwrap_or(u64::MAX);
    loop {
        if !st.control.acquire(inline) {
            break;
        }
        let index = match catch_unwind(AssertUnwindSafe(|| st.dispatch.next(lane))) {
            Ok(Some(i)) => i,
            Ok(None) => {
                st.control.release();
                break;
            }
            Err(_) => {
                st.dispatch_errors.fetch_add(1, Ordering::Relaxed);
                st.control.release();
                break;
            }
        };
        let fresh = st
            .claimed
            .get(index)
            .is_some_and(|c| !c.swap(true, Ordering::AcqRel));
        if !fresh {
            let errors = st.dispatch_errors.fetch_add(1, Ordering::Relaxed) + 1;
            st.control.release();
            if errors > limit {
                // A strategy that keeps repeating itself: stop asking it.
                break;
            }
            continue;
        }
        if st.control.is_cancelled() {
            // Claimed but not started: `run()` reports it as not started.
            st.control.release();
            break;
        }
        st.control.jobs_started.fetch_add(1, Ordering::AcqRel);
        let result = {
            // Uncontended: this lane claimed the job, and runs of one batch
            // take turns.
            let mut job = lock(&st.jobs[index]);
            run_job(st, lane, thread, index, &mut job, g)
        };
        if st.histogram {
            let d = st.depth.fetch_add(1, Ordering::Relaxed) + 1;
            st.depth_max.fetch_max(d, Ordering::Relaxed);
        }
        if g.tx.send(Msg::Done(result)).is_err() {
            break;
        }
    }
}

/// Runs every attempt of job `index` (`job`, held by this lane) on this lane.
fn run_job<T, R>(
    st: &RunState<'_, T, R>,
    lane: usize,
    thread: Option<usize>,
    index: usize,
    job: &mut Job<T>,
    g: &mut LaneGuard<'_, T, R>,
) -> JobResult<R>
where
    T: Send,
    R: Send,
{
    let id = job.id.clone();
    let first = Instant::now();
    let mut thread = thread;
    let finish = |data: Option<R>,
                  error: Option<JobError>,
                  attempts: u32,
                  end: Instant,
                  thread: Option<usize>| JobResult {
        job_id: id.clone(),
        index,
        data,
        error,
        worker: Some(lane),
        thread,
        attempts,
        started: Some(first),
        completed: end,
        duration: end.saturating_duration_since(first),
    };
    let cancelled = |st: &RunState<'_, T, R>| {
        JobError::Cancelled(st.control.reason().unwrap_or(CancelReason::Stopped))
    };
    // A job with requirements or a class (its own or the batch's) goes
    // through the pool's admission and learning, one task per attempt.
    let requirements = job.requirements.or(&st.requirements);
    let class = job.class.clone().or_else(|| st.class.clone());
    let aware = !requirements.is_empty() || class.is_some();
    let mut attempt = 0u32;
    loop {
        let ran = if aware {
            attempt_as_task(st, job, lane, attempt, requirements, class.clone())
        } else {
            // The first attempt starts when the job does (a lane's busy
            // time is then exactly its jobs' durations).
            let start = if attempt == 0 { first } else { Instant::now() };
            let ctx = JobContext {
                control: st.control.clone(),
                attempt,
                worker: lane,
                deadline: start.checked_add(st.attempt_timeout),
            };
            let out = catch_unwind(AssertUnwindSafe(|| (st.processor)(&ctx, &*job)))
                .map_err(|payload| panic_message(&*payload));
            Attempt::Ran { out, start, thread }
        };
        let attempts = attempt + 1;
        let mut end = Instant::now();
        let error = match ran {
            Attempt::Ran {
                out,
                start,
                thread: ran_on,
            } => {
                thread = ran_on;
                end = Instant::now();
                g.busy += end.saturating_duration_since(start);
                let timed_out = start
                    .checked_add(st.attempt_timeout)
                    .is_some_and(|d| end >= d);
                if timed_out {
                    g.timed_out += 1;
                }
                match out {
                    Err(message) => JobError::Panicked(message),
                    Ok(_) if timed_out => JobError::TimedOut(st.attempt_timeout),
                    Ok(Ok(v)) => return finish(Some(v), None, attempts, end, thread),
                    Ok(Err(e)) => JobError::Failed(e),
                }
            }
            // What can never fit, or a pool that is gone, does not change
            // with a retry.
            Attempt::Refused(
                e @ (SubmitError::NeverFits(_)
                | SubmitError::ShutDown
                | SubmitError::InvalidRequirement(_)
                | SubmitError::InvalidAmount(_)),
            ) => {
                return finish(
                    None,
                    Some(JobError::Refused(e)),
                    attempts,
                    Instant::now(),
                    thread,
                );
            }
            Attempt::Refused(e) => JobError::Refused(e),
            Attempt::NotRun => {
                return finish(None, Some(cancelled(st)), attempt, Instant::now(), thread);
            }
        };
        if st.control.is_cancelled() {
            // No retry. A panic is still reported as one: it is a bug, not
            // the processor's answer to the cancellation.
            let error = match error {
                JobError::Panicked(_) => error,
                _ => cancelled(st),
            };
            return finish(None, Some(error), attempts, end, thread);
        }
        if attempt >= st.max_retries {
            return finish(None, Some(error), attempts, end, thread);
        }
        let until = Instant::now().checked_add(st.backoff.delay(attempt));
        if !st.control.sleep_until(until) {
            return finish(None, Some(cancelled(st)), attempts, Instant::now(), thread);
        }
        attempt += 1;
    }
}

/// How one attempt of a job went.
enum Attempt<R> {
    /// It ran from `start` on worker `thread`: its value or error, or its
    /// panic's message.
    Ran {
        out: Result<Result<R, SharedError>, String>,
        start: Instant,
        thread: Option<usize>,
    },
    /// The pool refused it.
    Refused(SubmitError),
    /// It never started: the run was cancelled (or the pool shut down)
    /// while it waited for resources.
    NotRun,
}

/// What an attempt's work gives back: its outcome, its start, its worker.
type Ran<R> = (
    Result<Result<R, SharedError>, String>,
    Instant,
    Option<usize>,
);

/// Where an attempt's work is, between the lane and the pool task that
/// runs it.
enum Stage<W, O> {
    /// Not taken yet.
    Pending(W),
    /// The pool task took it and runs it.
    Running,
    /// It ran: its output.
    Done(O),
    /// Emptied: the lane took the work back (it never ran) or the output.
    Taken,
}

/// Hands one attempt's work (which may borrow from the lane) to a pool
/// task, and its output back. The pool task holds the handoff only through
/// a lifetime-erased `Arc<dyn RunOnce>`; the lane does not return before
/// the stage is `Taken` by itself (see `attempt_as_task`).
struct Handoff<W, O> {
    stage: Mutex<Stage<W, O>>,
    done: Condvar,
}

/// The pool task's view of a [`Handoff`]: run the work if it is still there.
trait RunOnce: Send + Sync {
    fn run(&self);
}

impl<W, O> RunOnce for Handoff<W, O>
where
    W: FnOnce() -> O + Send,
    O: Send,
{
    fn run(&self) {
        let work = {
            let mut g = lock(&self.stage);
            match std::mem::replace(&mut *g, Stage::Running) {
                Stage::Pending(w) => w,
                other => {
                    *g = other;
                    return;
                }
            }
        };
        // If `work` unwinds (it catches the processor's panics, so only a
        // bug could), the stage must still leave `Running`.
        struct Unwinding<'a, W, O>(&'a Handoff<W, O>);
        impl<W, O> Drop for Unwinding<'_, W, O> {
            fn drop(&mut self) {
                let mut g = lock(&self.0.stage);
                if matches!(*g, Stage::Running) {
                    *g = Stage::Taken;
                }
                self.0.done.notify_all();
            }
        }
        let signal = Unwinding(self);
        let out = work();
        *lock(&self.stage) = Stage::Done(out);
        drop(signal);
    }
}

impl<W, O> Handoff<W, O> {
    /// Empties the handoff once its pool task is finished or will never
    /// run the work: the output if the work ran; `None` if it never ran
    /// (the work is dropped here) or unwound. Waits while it runs.
    fn reclaim(&self) -> Option<O> {
        let mut g = lock(&self.stage);
        loop {
            match std::mem::replace(&mut *g, Stage::Taken) {
                Stage::Done(o) => return Some(o),
                Stage::Pending(work) => {
                    drop(g);
                    drop(work);
                    return None;
                }
                Stage::Taken => return None,
                Stage::Running => {
                    *g = Stage::Running;
                    g = self
                        .done
                        .wait(g)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
    }
}

impl<R> Attempt<R> {
    /// The attempt whose work gave `ran` (`None`: it never ran) and whose
    /// pool task ended with `task`.
    fn of(ran: Option<Ran<R>>, task: Result<(), TaskError>) -> Attempt<R> {
        match (ran, task) {
            (Some((out, start, thread)), _) => Attempt::Ran { out, start, thread },
            (None, Err(TaskError::Rejected(e))) => Attempt::Refused(e),
            // A panic of the pool's own around the work, reported as the job's.
            (None, Err(TaskError::Panicked(message))) => Attempt::Ran {
                out: Err(message),
                start: Instant::now(),
                thread: None,
            },
            // Cancelled while waiting for resources, or the pool shut down.
            (None, _) => Attempt::NotRun,
        }
    }
}

/// Runs attempt `attempt` of `job` as a pool task with the job's
/// `requirements`, `class` and size hint, so that it starts only when the
/// pool can afford it and is measured. The lane waits for it without
/// idling its worker: it runs queued pool tasks meanwhile (the attempt
/// itself, often). Its attempt timeout counts from its own start.
fn attempt_as_task<T, R>(
    st: &RunState<'_, T, R>,
    job: &mut Job<T>,
    lane: usize,
    attempt: u32,
    requirements: Resources,
    class: Option<Arc<str>>,
) -> Attempt<R>
where
    T: Send,
    R: Send,
{
    let (processor, control) = (st.processor.clone(), st.control.clone());
    let (timeout, shared) = (st.attempt_timeout, st.pool.clone());
    let mut task = crate::task::TaskBuilder::on(&st.pool).requirements(requirements);
    if let Some(c) = class {
        task = task.class(c);
    }
    if let Some(s) = job.size_hint {
        task = task.size_hint(s);
    }
    // `&mut Job<T>` is `Send` when `T` is: the pool task has the job to
    // itself while it runs the work, and the lane does not touch it.
    let work = move || -> Ran<R> {
        let job: &Job<T> = job;
        let start = Instant::now();
        let ctx = JobContext {
            control,
            attempt,
            worker: lane,
            deadline: start.checked_add(timeout),
        };
        let out = catch_unwind(AssertUnwindSafe(|| processor(&ctx, job)))
            .map_err(|payload| panic_message(&*payload));
        (out, start, shared.current_worker())
    };
    let handoff = Arc::new(Handoff {
        stage: Mutex::new(Stage::Pending(work)),
        done: Condvar::new(),
    });
    let erased: Arc<dyn RunOnce + '_> = handoff.clone();
    // SAFETY: only the lifetime bound changes (same fat pointer). The work
    // borrows the job and may borrow the processor's environment; the pool
    // task may keep this `Arc` after the work's borrows end (a task
    // cancelled while queued is dropped when a worker reaches it). That is
    // sound because this function does not return before `reclaim` has
    // set the stage to `Taken` (below, on every path: the spawn refused,
    // the task finished, the task cancelled): the work has then run to its
    // end or been dropped here, and the output taken, so what the task
    // still holds is an empty stage, a condvar and the allocation, none of
    // which reads a borrow when dropped.
    let erased: Arc<dyn RunOnce + 'static> = unsafe { std::mem::transmute(erased) };
    let spawned = task.spawn(move |_| erased.run());
    let mut handle = match spawned {
        Ok(h) => h,
        Err(e) => {
            let _ = handoff.reclaim();
            return Attempt::Refused(e);
        }
    };
    let mut nap = Duration::from_millis(1);
    let task = loop {
        if let Some(r) = handle.try_join() {
            break r;
        }
        if st.control.is_cancelled() {
            // Not started yet: it never will. Started: its processor sees
            // the cancellation through its context.
            handle.cancel();
        }
        if st.pool.help_once() {
            nap = Duration::from_millis(1);
            continue;
        }
        handle = match handle.join_timeout(nap) {
            Ok(r) => break r,
            Err(h) => h,
        };
        nap = (nap * 2).min(Duration::from_millis(50));
    };
    Attempt::of(handoff.reclaim(), task)
}

/// Deregisters a run's control from its batch, however `run()` ends.
struct Registered<'a> {
    runs: &'a Mutex<Vec<Arc<Control>>>,
    control: Arc<Control>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(self.runs).retain(|c| !Arc::ptr_eq(c, &self.control));
    }
}

/// Waits, however `run()` ends (it returns or unwinds), until every lane
/// task has run or been dropped: the result channel is then disconnected.
/// On one of the pool's workers it runs queued tasks meanwhile.
struct LanesJoined<'a, R> {
    rx: Receiver<Msg<R>>,
    pool: &'a Pool,
}

impl<R> Drop for LanesJoined<'_, R> {
    fn drop(&mut self) {
        let on_worker = self.pool.shared().current_worker().is_some();
        loop {
            let msg = if on_worker {
                let m = self.rx.try_recv();
                if matches!(m, Err(mpsc::TryRecvError::Empty)) && !self.pool.shared().help_once() {
                    self.rx
                        .recv_timeout(Duration::from_millis(1))
                        .map_err(|e| match e {
                            RecvTimeoutError::Timeout => mpsc::TryRecvError::Empty,
                            RecvTimeoutError::Disconnected => mpsc::TryRecvError::Disconnected,
                        })
                } else {
                    m
                }
            } else {
                self.rx.recv().map_err(|_| mpsc::TryRecvError::Disconnected)
            };
            if matches!(msg, Err(mpsc::TryRecvError::Disconnected)) {
                return;
            }
        }
    }
}

/// Everything `run()` needs from its batch.
pub(super) struct RunInput<'a, 'env, T, R> {
    pub(super) pool: &'a Pool,
    pub(super) config: &'a BatchConfig,
    pub(super) processor: Processor<'env, T, R>,
    pub(super) jobs: Vec<JobCell<T>>,
    pub(super) runs: &'a Mutex<Vec<Arc<Control>>>,
}

/// One run: plan, start the lanes, collect, report.
pub(super) fn run<T, R>(input: RunInput<'_, '_, T, R>) -> Result<BatchReport<R>, BatchError>
where
    T: Send,
    R: Send,
{
    let RunInput {
        pool,
        config,
        processor,
        jobs,
        runs,
    } = input;
    let n = jobs.len();
    let lanes = config.workers.unwrap_or_else(|| pool.workers()).max(1);
    let strategy = config.strategy.strategy();
    let plan = {
        // Free: runs of one batch take turns, and no lane of this run has started.
        let held: Vec<_> = jobs.iter().map(|j| lock(j)).collect();
        let metas: Vec<JobMeta<'_>> = held
            .iter()
            .enumerate()
            .map(|(i, j)| JobMeta::of(i, &**j))
            .collect();
        catch_unwind(AssertUnwindSafe(|| strategy.plan(&metas, lanes)))
            .map_err(|p| BatchError::StrategyPanicked(panic_message(&*p)))?
    };
    let (dispatch, label, chosen) = plan.into_parts();
    let strategy_name = label.unwrap_or_else(|| strategy.name().to_owned());
    let lanes = match chosen {
        None => lanes,
        Some(0) => {
            return Err(BatchError::InvalidConfig {
                field: "lanes (from the strategy's plan)",
                reason: "the strategy asked for 0 lanes: Plan::with_lanes needs at least 1",
            });
        }
        Some(l) if l > crate::limits::MAX_WORKERS => {
            return Err(BatchError::TooLarge {
                field: "lanes (from the strategy's plan)",
                value: l,
                max: crate::limits::MAX_WORKERS,
            });
        }
        Some(l) => l,
    };

    let started = Instant::now();
    let control = Arc::new(Control::new(config.timeout, config.buffer_size, started));
    control.total.store(n, Ordering::Release);
    control.lanes.store(lanes, Ordering::Release);
    lock(runs).push(control.clone());
    let _registered = Registered {
        runs,
        control: control.clone(),
    };
    let pool_shared = pool.shared().clone();
    let state = Arc::new(RunState {
        claimed: (0..n).map(|_| AtomicBool::new(false)).collect(),
        jobs,
        processor,
        dispatch,
        control: control.clone(),
        attempt_timeout: config.attempt_timeout,
        max_retries: config.max_retries,
        backoff: config.backoff,
        histogram: config.enable_metrics,
        requirements: config.requirements,
        class: config.class.clone(),
        pool: pool_shared,
        collector: thread::current().id(),
        depth: AtomicUsize::new(0),
        depth_max: AtomicUsize::new(0),
        dispatch_errors: AtomicU64::new(0),
    });

    let (tx, rx) = mpsc::channel::<Msg<R>>();
    let joined = LanesJoined { rx, pool };
    let rx = &joined.rx;
    let mut submitted = 0;
    for lane in 0..lanes {
        let guard = LaneGuard {
            state: Some(state.clone()),
            tx: tx.clone(),
            lane,
            ran: false,
            busy: Duration::ZERO,
            timed_out: 0,
        };
        let lane_task = move || {
            let mut guard = guard;
            guard.ran = true;
            if let Some(st) = guard.state.clone() {
                lane_main(&st, &mut guard);
            }
        };
        // SAFETY: the lane task may borrow for 'env (the processor, the job
        // data). `run()` does not return or unwind past `joined` before the
        // channel disconnects, i.e. before every `LaneGuard`, each owned by
        // one lane task, is dropped: when its task has run, or is dropped
        // unrun (here if the pool refuses it, or by `shutdown_now`). The
        // guard lets go of the run's state before it sends its last
        // message, and the lane's local clone of the state is dropped
        // before the guard (declared after it), on return and on unwind.
        let job = unsafe { PoolJob::new_unchecked(lane_task) };
        if pool.shared().push_plain(job).is_err() {
            break;
        }
        submitted += 1;
    }
    drop(tx);
    if submitted == 0 {
        return Err(BatchError::PoolShutDown);
    }

    // Collect while the lanes work.
    let on_worker = state.pool.current_worker().is_some();
    let mut poll = Duration::from_millis(1);
    let mut results: Vec<JobResult<R>> = Vec::with_capacity(n);
    let mut done = vec![false; n];
    let mut lane_busy = vec![Duration::ZERO; lanes];
    let mut timed_out_attempts = 0;
    let mut lane_not_run = submitted < lanes;
    loop {
        let until_deadline = if control.is_cancelled() {
            None
        } else {
            control
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        let msg = match (on_worker, until_deadline) {
            // On one of the pool's workers: poll, and run queued pool tasks
            // (possibly our own lanes) in between, so that a pool with no
            // other free worker still makes progress.
            (true, d) => rx.recv_timeout(d.map_or(poll, |d| d.min(poll))),
            (false, Some(d)) => rx.recv_timeout(d),
            (false, None) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Done(r)) => {
                // Before the permit goes back, so that the depth never
                // counts more results than there are permits.
                if state.histogram {
                    state.depth.fetch_sub(1, Ordering::Relaxed);
                }
                let count = match r.status() {
                    JobStatus::Succeeded => &control.succeeded,
                    JobStatus::Failed => &control.failed,
                    JobStatus::Cancelled => &control.cut_short,
                };
                count.fetch_add(1, Ordering::AcqRel);
                control.release();
                if let Some(d) = done.get_mut(r.index) {
                    *d = true;
                }
                results.push(r);
                poll = Duration::from_millis(1);
            }
            Ok(Msg::LaneEnd {
                lane,
                ran,
                busy,
                timed_out,
            }) => {
                if let Some(b) = lane_busy.get_mut(lane) {
                    *b = busy;
                }
                timed_out_attempts += timed_out;
                lane_not_run |= !ran;
            }
            Err(RecvTimeoutError::Timeout) => {
                // Raises the run timeout if it passed.
                let _ = control.is_cancelled();
                if on_worker {
                    if pool.shared().help_once() {
                        poll = Duration::from_millis(1);
                    } else {
                        poll = (poll * 2).min(Duration::from_millis(50));
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let ended = Instant::now();

    // Jobs without a result never started: say why.
    let stop_reason = control.reason();
    let reason = stop_reason.unwrap_or(if lane_not_run {
        CancelReason::PoolShutDown
    } else {
        CancelReason::NotDispatched
    });
    for (index, _) in done.iter().enumerate().filter(|(_, d)| !**d) {
        results.push(JobResult {
            job_id: lock(&state.jobs[index]).id.clone(),
            index,
            data: None,
            error: Some(JobError::NotStarted(reason)),
            worker: None,
            thread: None,
            attempts: 0,
            started: None,
            completed: ended,
            duration: Duration::ZERO,
        });
    }
    let metrics = BatchMetrics::compute(
        &results,
        Measured {
            strategy: strategy_name,
            lane_busy,
            timed_out_attempts,
            dispatch_errors: state.dispatch_errors.load(Ordering::Relaxed),
            queue_depth_max: state
                .histogram
                .then(|| state.depth_max.load(Ordering::Relaxed)),
            stop_reason,
            started,
            ended,
            histogram: state.histogram,
        },
    );
    Ok(BatchReport { results, metrics })
}
