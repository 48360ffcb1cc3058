//! The unit of work: what a queue slot holds, what the pool keeps about a
//! resource-aware task, and how a task's result reaches its handle.
//!
//! A [`Work`] in a run queue is a type-erased closure ([`Job`]) plus, for a
//! resource-aware task, either its description ([`Description`]: requirements,
//! reservation, class, timing, handle) or, for a task that declared
//! requirements and nothing else, its reservation packed in the slot
//! ([`Packed`]). A job built by [`packet_job`] completes its handle's packet
//! when it runs ([`Publish`] says who makes the result visible: the job, or
//! the worker after it gave the reservation back), and fails it with
//! `ShutDown` when it is dropped unrun ([`CompleteOnDrop`]). Descriptions are
//! recycled through [`cache`]. This module names no queue, no scheduler and
//! no pool: every engine module above uses it.

pub(crate) mod cache;

use std::cell::Cell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use respool_core::admission::Urgency;
use respool_core::{DetachedReservation, Resources};

use crate::error::{TaskError, panic_message};
use crate::handle::{Cancel, Packet, TaskContext, with_current};
use crate::job::Job;

/// A unit of work in the run queue.
pub(crate) struct Work {
    pub(crate) job: Job,
    pub(crate) desc: Option<Box<Description>>,
    /// A task that declared requirements and nothing else, admitted at
    /// once: its reservation travels packed in the queue slot, with no `Description`
    /// (see `Shared::submit_packed`). Never set together with `desc`.
    pub(crate) packed: Option<Packed>,
}

/// What a task admitted by `Shared::submit_packed` carries.
pub(crate) struct Packed {
    pub(crate) reservation: respool_core::PackedReservation,
    /// When it was submitted (pool clock, at least 1) if it is in the timing
    /// sample, else 0; and [`Packed::HANDLE`] when a handle waits for its
    /// result (a `Publish::Stashed` job). One word, so that the queue slot
    /// stays as small.
    stamp: u64,
}

impl Packed {
    /// The bit of `stamp` that says a handle waits (the pool clock would
    /// need 292 years to reach it).
    const HANDLE: u64 = 1 << 63;

    pub(crate) fn new(
        held: respool_core::PackedReservation,
        submitted_ns: u64,
        handle: bool,
    ) -> Packed {
        Packed {
            reservation: held,
            stamp: (submitted_ns & !Packed::HANDLE) | if handle { Packed::HANDLE } else { 0 },
        }
    }

    /// The bit of `stamp` that says it is an observed plain task whose
    /// stamp holds its id instead of a submission time (ids would need
    /// 2^62 tasks to reach it).
    const OBSERVED: u64 = 1 << 62;

    /// An observed plain task (no requirement, no handle): what it needs
    /// from the worker is its id, carried in the slot instead of a
    /// description, so that observing a plain task costs no allocation.
    /// `held` is an empty reservation (released as any other).
    pub(crate) fn observed(held: respool_core::PackedReservation, id: u64) -> Packed {
        Packed {
            reservation: held,
            stamp: Packed::OBSERVED | (id & !(Packed::HANDLE | Packed::OBSERVED)),
        }
    }

    /// When it was submitted, if it is in the timing sample (else 0).
    pub(crate) fn submitted_ns(&self) -> u64 {
        if self.stamp & Packed::OBSERVED != 0 {
            return 0;
        }
        self.stamp & !Packed::HANDLE
    }

    /// Its id, if it is an observed plain task (see [`Packed::observed`]).
    pub(crate) fn observed_id(&self) -> Option<u64> {
        (self.stamp & Packed::OBSERVED != 0)
            .then_some(self.stamp & !(Packed::HANDLE | Packed::OBSERVED))
    }

    /// Whether a handle waits for its result.
    pub(crate) fn has_handle(&self) -> bool {
        self.stamp & Packed::HANDLE != 0
    }
}

/// What the pool keeps about a resource-aware task besides its closure.
pub(crate) struct Description {
    /// The reservation, while admitted and not finished.
    pub(crate) held: Option<DetachedReservation>,
    /// What it needs (declared, else predicted, else the default).
    pub(crate) request: Resources,
    pub(crate) class: Option<Arc<str>>,
    pub(crate) priority: i32,
    pub(crate) urgency: Urgency,
    pub(crate) deadline: Option<Instant>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) size: Option<u64>,
    /// When it was submitted, for tasks whose timing is measured (classified
    /// tasks, `measure_all`, and a sample of the others); `None` otherwise,
    /// which spares the worker every clock read.
    pub(crate) submitted: Option<Instant>,
    /// The handle's packet, for cancellation checks and refusals.
    pub(crate) cancel: Option<Arc<dyn Cancel>>,
    /// Expected usage in the dimensions that came from learning (compared
    /// with what the task then used, for the accuracy figures); boxed, as
    /// only classified tasks have it (it keeps `Description` small for the others).
    pub(crate) expected: Option<Box<Resources>>,
    /// Where it was placed (CPU and GPU domains), when placement mattered
    /// (more than one CPU domain, or GPUs).
    pub(crate) placed: Option<Box<crate::place::Placed>>,
    /// The GPU device it was given, if it was placed on a GPU domain.
    pub(crate) gpu: Option<u32>,
    /// A cold-start probe of its class (see `LearningConfig::probe_concurrency`).
    pub(crate) probe: bool,
    /// Its id and its observer's bookkeeping, when the pool has an observer.
    pub(crate) observed: Option<Arc<crate::observe::Observed>>,
}

impl Description {
    /// An `Description` with no requirement and default attributes.
    pub(crate) fn empty() -> Description {
        Description {
            held: None,
            request: Resources::NONE,
            class: None,
            priority: 0,
            urgency: Urgency::Normal,
            deadline: None,
            timeout: None,
            size: None,
            submitted: None,
            cancel: None,
            expected: None,
            placed: None,
            gpu: None,
            probe: false,
            observed: None,
        }
    }

    /// Clears the fields that hold references, for reuse.
    pub(crate) fn reset(&mut self) {
        // A reservation must have been released before; never keep one.
        debug_assert!(self.held.is_none());
        self.class = None;
        self.cancel = None;
        self.expected = None;
        self.gpu = None;
        self.probe = false;
        // The task has ended (or was dropped unrun: dropping the last
        // reference sends `NotRun`).
        self.observed = None;
        debug_assert!(self.placed.is_none());
    }
}

thread_local! {
    /// The `Description` of the resource-aware task running on this thread.
    static CURRENT_EXT: std::cell::Cell<*const Description> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// Makes `desc` the current task's description while `f` runs (`None`: no
/// description, as for a plain task run inside another one).
pub(crate) fn with_description<R>(desc: Option<&Description>, f: impl FnOnce() -> R) -> R {
    struct Restore(*const Description);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT_EXT.with(|c| c.set(self.0));
        }
    }
    let ptr = desc.map_or(std::ptr::null(), std::ptr::from_ref);
    let _restore = Restore(CURRENT_EXT.with(|c| c.replace(ptr)));
    f()
}

/// The context of a task that travelled without a description (packed in
/// its queue slot, see `Shared::submit_packed`): no class, deadline or GPU,
/// first attempt. What `with_context` would build for it, built once.
pub(crate) static PACKED_CONTEXT: TaskContext = TaskContext {
    deadline: None,
    class: None,
    attempt: 0,
    gpu: None,
};

/// Calls `f` with the context of the running task (built from the `Description` set
/// by `with_description`; a default context when run outside a worker).
pub(crate) fn with_context<R>(attempt: u32, f: impl FnOnce(&TaskContext) -> R) -> R {
    let ptr = CURRENT_EXT.with(std::cell::Cell::get);
    // SAFETY: a non-null pointer was set by `with_description` from a reference that
    // outlives the call in which it is set, and is restored on return.
    let desc = unsafe { ptr.as_ref() };
    let ctx = TaskContext {
        deadline: desc.and_then(|e| e.deadline),
        class: desc.and_then(|e| e.class.clone()),
        attempt,
        gpu: desc.and_then(|e| e.gpu),
    };
    f(&ctx)
}

/// How an attempt that a job just ran ended, when its job has more to say
/// than "it returned": an attempt of a retrying task that failed. Set by
/// the job (only when its task is observed), taken by the worker that ran
/// it, to send the right event.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AttemptEnd {
    /// Attempt `attempt` follows after `delay`.
    Retry { attempt: u32, delay: Duration },
    /// The last attempt failed.
    Failed { attempts: u32 },
    /// Cancelled between attempts.
    Cancelled,
}

thread_local! {
    /// The `AttemptEnd` of the job that just ran on this thread.
    pub(crate) static ATTEMPT_END: Cell<Option<AttemptEnd>> = const { Cell::new(None) };
}

/// Runs a job inside `catch_unwind`: the one place where the pool runs a
/// job. Returns whether it returned (`false`: it panicked; the panic hook
/// reported it and the caller counts it).
#[inline]
pub(crate) fn run_guarded(job: Job) -> bool {
    catch_unwind(AssertUnwindSafe(|| job.run())).is_ok()
}

/// Who publishes a task's result (makes it visible to its joiner).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Publish {
    /// The job, as soon as it is written (no reservation to give back first).
    Now,
    /// The worker, through the task's description (`Description::cancel`), after it
    /// released the reservation.
    ByWorker,
    /// The worker, after it released the reservation carried in the queue
    /// slot: the job leaves its packet in this thread's [`STASH`], and
    /// whoever runs such a job takes it with [`publish_stashed`].
    Stashed,
}

thread_local! {
    /// The packet of the `Publish::Stashed` job that just ran on this
    /// thread, written but not yet published.
    pub(crate) static STASH: Cell<Option<Arc<dyn Cancel>>> = const { Cell::new(None) };
}

/// Publishes the result the job that just ran on this thread left in the
/// stash, if any: called by whoever runs a job, after giving back what it
/// held, so that a joiner never sees a result before the resources.
pub(crate) fn publish_stashed() {
    if let Some(packet) = STASH.with(Cell::take) {
        packet.publish();
    }
}

/// Wraps `f` so that it runs only if not cancelled before the start, and
/// completes `packet` with its result (or its panic, which is then resumed so
/// that the worker counts it). Dropped without running, the job completes the
/// packet with [`TaskError::ShutDown`]. Unless `publish` is [`Publish::Now`],
/// the result is written but published by the worker after it released the
/// reservation.
pub(crate) fn packet_job<F, T>(packet: Arc<Packet<T>>, publish: Publish, f: F) -> Job
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let guard = CompleteOnDrop(Some(packet));
    Job::new(move || {
        let mut guard = guard;
        let Some(packet) = guard.0.take() else { return };
        if !packet.header().start() {
            return;
        }
        let r = with_current(Some(&*packet as &dyn Cancel), || {
            catch_unwind(AssertUnwindSafe(f))
        });
        let (result, panic) = match r {
            Ok(v) => (Ok(v), None),
            Err(p) => (Err(TaskError::Panicked(panic_message(&*p))), Some(p)),
        };
        match publish {
            Publish::Now => {
                packet.complete(result);
            }
            Publish::ByWorker => {
                packet.write_unpublished(result);
            }
            Publish::Stashed => {
                packet.write_unpublished(result);
                // A job runs to its end before the next one starts on this
                // thread, and its runner empties the stash right after: it is
                // empty here (a leftover would be published rather than lost).
                if let Some(left) = STASH.with(|s| s.replace(Some(packet))) {
                    debug_assert!(false, "a stashed result was not published");
                    left.publish();
                }
            }
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
    })
}

/// Completes a packet with `ShutDown` if its job is dropped without running.
pub(crate) struct CompleteOnDrop<T: Send>(pub(crate) Option<Arc<Packet<T>>>);

impl<T: Send> Drop for CompleteOnDrop<T> {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.fail(TaskError::ShutDown);
        }
    }
}

/// A task handed back by [`Pool::shutdown_now`](crate::pool::Pool::shutdown_now): it never started.
pub struct Unstarted {
    pub(crate) task: Option<Work>,
    pub(crate) class: Option<Arc<str>>,
}

impl fmt::Debug for Unstarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unstarted")
            .field("class", &self.class)
            .finish()
    }
}

impl Unstarted {
    /// The task's class key, if it had one.
    #[must_use]
    pub fn class(&self) -> Option<&str> {
        self.class.as_deref()
    }

    /// Runs the task on the calling thread (its reservation was already
    /// released: the pool is gone). A panic is caught and reported through
    /// the task's handle, as on a worker.
    pub fn run(mut self) {
        if let Some(t) = self.task.take() {
            let _ = run_guarded(t.job);
            if let Some(c) = t.desc.as_ref().and_then(|e| e.cancel.as_ref()) {
                c.publish();
            }
            // A task with a handle that travelled without a description.
            publish_stashed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run-queue slot holds a task: a small closure inline, and the packed
    /// reservation of a task with requirements only. Growing it costs every
    /// task (and `Builder::queue_capacity`'s documentation states its size).
    #[test]
    fn a_task_fits_a_run_queue_slot_of_96_bytes() {
        assert_eq!(std::mem::size_of::<Packed>(), 48);
        assert!(
            std::mem::size_of::<Work>() <= 96,
            "Work grew to {} bytes",
            std::mem::size_of::<Work>()
        );
    }

    /// The task description travels between threads with every
    /// resource-aware task: keep it within a few cache lines (328 bytes
    /// since it carries the observer's pointer; 320 before).
    #[test]
    fn a_description_stays_small() {
        let size = std::mem::size_of::<Description>();
        assert!(size <= 328, "Description is {size} bytes");
    }
}
