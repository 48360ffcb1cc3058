//! The pool: workers, the fast path, the resource-aware path, lifecycle.
//!
//! # The path of a task
//!
//! - **No requirement, no class** (`execute`, `submit`): the task goes
//!   straight into the lock-free run queue; no admission, no measurement. This
//!   is the fast path, meant to cost no more than the fastest plain pool.
//! - **With requirements** (or a class whose requirements are learned): the
//!   core's [`Admission`] decides. Accepted tasks carry their reservation into
//!   the run queue (or the priority lane, when they have a priority or a
//!   deadline); deferred ones wait in the admission wait queue (critical
//!   first, then priority, then first come first served) and are admitted,
//!   head of line first, whenever resources are released; refused ones come
//!   back as a [`SubmitError`] saying which dimension and by how much.
//! - A worker runs the task inside `catch_unwind`, releases the reservation
//!   exactly once (whatever happened), records what the task used, and admits
//!   waiting tasks that now fit.
//!
//! # Lifecycle
//!
//! [`Pool::shutdown`] stops accepting tasks from outside the pool, runs every
//! accepted task (queued, waiting for resources, or waiting for a retry) and
//! joins every thread the pool started. [`Pool::shutdown_now`] stops accepting,
//! lets running tasks finish, and hands back every task that had not started
//! as [`Unstarted`]. Dropping a `Pool` is [`Pool::shutdown`]: it blocks until
//! accepted work is done. (Dropped from inside one of its own tasks, a pool
//! cannot join the thread it runs on: it then stops accepting work and lets
//! its workers exit on their own once the accepted work is done.)
//!
//! Idle workers spin for a few microseconds, then park: an idle pool uses no
//! CPU.

use std::cell::Cell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use respool_core::admission::AdmissionConfig;
use respool_core::{Resources, Tracker};

use crate::error::{BuildError, SubmitError, TaskError, panic_message};
use crate::handle::{Cancel, JoinHandle, Packet, with_current};
use crate::job::Job;
use crate::metrics::Metrics;
use crate::runq::{RunQueue, Sleepers, lock};
use crate::snapshot::PoolSnapshot;
use crate::task::{Ext, TaskBuilder};
use crate::timer::Timer;

/// Failed memory readings in a row after which external usage is cleared.
const STALE_SAMPLES: u32 = 3;

/// Spins of an idle worker before it parks (each a `spin_loop` hint).
const IDLE_SPINS: u32 = 256;

static NEXT_POOL_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// `(pool id, worker index)` of the pool worker running on this thread.
    static WORKER: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// A unit of work in the run queue.
pub(crate) struct Task {
    pub(crate) job: Job,
    pub(crate) ext: Option<Box<Ext>>,
    /// A task that declared requirements and nothing else, admitted at
    /// once: its reservation travels packed in the queue slot, with no `Ext`
    /// (see `Shared::submit_lite`). Never set together with `ext`.
    pub(crate) held: Option<Lite>,
}

/// What a task admitted by `Shared::submit_lite` carries.
pub(crate) struct Lite {
    pub(crate) held: respool_core::PackedReservation,
    /// When it was submitted (pool clock, at least 1) if it is in the timing
    /// sample, else 0; and [`Lite::HANDLE`] when a handle waits for its
    /// result (a `Publish::Stashed` job). One word, so that the queue slot
    /// stays as small.
    stamp: u64,
}

impl Lite {
    /// The bit of `stamp` that says a handle waits (the pool clock would
    /// need 292 years to reach it).
    const HANDLE: u64 = 1 << 63;

    pub(crate) fn new(
        held: respool_core::PackedReservation,
        submitted_ns: u64,
        handle: bool,
    ) -> Lite {
        Lite {
            held,
            stamp: (submitted_ns & !Lite::HANDLE) | if handle { Lite::HANDLE } else { 0 },
        }
    }

    /// When it was submitted, if it is in the timing sample (else 0).
    fn submitted_ns(&self) -> u64 {
        self.stamp & !Lite::HANDLE
    }

    /// Whether a handle waits for its result.
    fn has_handle(&self) -> bool {
        self.stamp & Lite::HANDLE != 0
    }
}

/// Counts submissions in flight and closes the pool to new ones.
pub(crate) struct Gate(AtomicUsize);

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
    fn close(&self) {
        self.0.fetch_or(CLOSED, Ordering::SeqCst);
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.0.load(Ordering::SeqCst) & CLOSED != 0
    }
    fn in_flight(&self) -> usize {
        self.0.load(Ordering::SeqCst) >> 1
    }
}

pub(crate) struct GateGuard<'a>(pub(crate) &'a Gate);
impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.0.exit();
    }
}

/// Tasks that have a priority or deadline, admitted and waiting for a worker.
struct Lane {
    heap: std::collections::BinaryHeap<LaneEntry>,
    seq: u64,
}

struct LaneEntry {
    key: (
        i32,
        std::cmp::Reverse<Option<Instant>>,
        std::cmp::Reverse<u64>,
    ),
    task: Task,
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

/// A worker's batch of finished tasks' reservations: the writer of its
/// release log (`Shared::logs`), and how many tasks it added since the log
/// was last given back. Lives on the worker thread's stack.
pub(crate) struct WorkerBatch<'a> {
    writer: respool_core::LogWriter<'a>,
    log: &'a respool_core::ReleaseLog,
    count: u32,
}

impl<'a> WorkerBatch<'a> {
    fn new(log: &'a respool_core::ReleaseLog) -> Option<WorkerBatch<'a>> {
        Some(WorkerBatch {
            writer: log.writer()?,
            log,
            count: 0,
        })
    }
}

/// Tasks a worker may finish before it gives their reservations back (it
/// gives them back at once when someone waits, and before it idles).
const RELEASE_BATCH: u32 = 32;

/// The `on_task_end` callback.
pub(crate) type TaskEndHook = Arc<dyn Fn(&crate::TaskReport) + Send + Sync>;

/// A monitor source given to the builder. Behind a shared `Mutex<Option<_>>`
/// so that [`Config`] stays `Clone`; the pool takes it once, when it starts
/// its monitor.
pub(crate) type MonitorSource = Arc<Mutex<Option<Box<dyn crate::sys::SystemMonitor>>>>;

/// Configuration, validated by [`Builder::build`](crate::Builder::build).
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) capacity: Resources,
    pub(crate) headroom: Resources,
    pub(crate) admission: AdmissionConfig,
    /// Waiting tasks beyond which a submitter from outside the pool waits
    /// for room (`None`: the user bounded the queue with `max_waiting`, so a
    /// full queue refuses instead).
    pub(crate) backpressure: Option<usize>,
    pub(crate) queue_capacity: usize,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) measure_all: bool,
    pub(crate) learning: crate::learn::LearningConfig,
    pub(crate) store: Option<Arc<dyn crate::store::ProfileStore>>,
    pub(crate) on_task_end: Option<TaskEndHook>,
    /// Start a monitor with this configuration.
    pub(crate) monitor: Option<crate::sys::MonitorConfig>,
    /// The monitor's source from [`Builder::system_monitor`](crate::Builder::system_monitor)
    /// (taken when the monitor starts); `None`: this platform's default.
    pub(crate) monitor_source: Option<MonitorSource>,
    /// Memory capacity follows the container's limit when it changes.
    pub(crate) follow_container_limit: bool,
    /// Placement domains (at least one CPU domain).
    pub(crate) domains: Vec<crate::place::DomainSpec>,
    /// Placement algorithm.
    pub(crate) fit: respool_core::packer::Fit,
    /// Lookahead window width and overtaking bound of the wait queue.
    pub(crate) lookahead: (usize, u32),
    /// Scorer weights of the wait queue.
    pub(crate) weights: respool_core::queue::Weights,
    /// Pin workers to the CPUs of their domain.
    pub(crate) pin_workers: bool,
    /// Dimensions admitted as hard reservations (see `Builder::hard`); the
    /// others are soft.
    pub(crate) hard: respool_core::DimSet,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .field("headroom", &self.headroom)
            .field("admission", &self.admission)
            .field("learning", &self.learning)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    id: usize,
    pub(crate) config: Config,
    queue: RunQueue<Task>,
    /// Run queues of the CPU domains (used when placement is not trivial).
    domain_queues: Box<[RunQueue<Task>]>,
    /// The CPU domain of each worker.
    worker_domain: Box<[usize]>,
    lane: Mutex<Lane>,
    lane_len: AtomicUsize,
    pub(crate) sleepers: Sleepers,
    pub(crate) gate: Gate,
    /// Workers not parked.
    active: AtomicUsize,
    /// Workers must exit.
    exit: AtomicBool,
    /// `shutdown_now`: workers stop taking tasks (and submitters waiting for
    /// room in the wait queue give up).
    pub(crate) stop_now: AtomicBool,
    pub(crate) res: crate::sched::Resourcing,
    pub(crate) timer: Timer,
    pub(crate) metrics: Metrics,
    pub(crate) learner: crate::learn::Learner,
    epoch: Instant,
    /// Handed to join handles of resource-aware tasks: purges cancelled
    /// waiters from the wait queue at once.
    pub(crate) on_cancel: Arc<dyn Fn() + Send + Sync>,
    /// Set when the pool was shut down from one of its own tasks: the last
    /// worker to go idle with nothing left ends all workers.
    exit_when_done: AtomicBool,
    self_weak: Weak<Shared>,
    /// Releases finished tasks have not yet given back to the tracker, per
    /// worker (see `finish_ext`).
    /// Per worker, the reservations of its finished tasks not given back
    /// yet (see `WorkerBatch`, `Shared::give_back`).
    logs: Box<[crossbeam_utils::CachePadded<respool_core::ReleaseLog>]>,
    /// Profiles were saved at shutdown (only the first shutdown saves).
    saved: AtomicBool,
}

/// A resource-aware task pool. See the [crate documentation](crate).
pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    /// Background sampler feeding external usage (stopped at shutdown).
    monitor: Mutex<Option<crate::sys::Monitor>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.shared.config.workers)
            .field("capacity", &self.shared.res.tracker.capacity())
            .finish()
    }
}

impl Pool {
    /// A builder with defaults detected from the machine.
    pub fn builder() -> crate::Builder {
        crate::Builder::new()
    }

    /// A pool with every default: one worker per available core (container
    /// aware), capacity from the machine or container minus a headroom.
    ///
    /// # Errors
    ///
    /// [`BuildError::Spawn`] if the worker threads cannot be started.
    pub fn new() -> Result<Pool, BuildError> {
        crate::Builder::new().build()
    }

    pub(crate) fn start(mut config: Config) -> Result<Pool, BuildError> {
        let worker_domain = {
            let cpu_domains: Vec<&crate::place::DomainSpec> = config
                .domains
                .iter()
                .filter(|d| d.kind == crate::place::DomainKind::Cpu)
                .collect();
            assign_workers(config.workers, &cpu_domains)
        };
        if !config.hard.contains(respool_core::Dim::Cpu) {
            // Soft CPU, per domain as for the pool: at least its workers' cores.
            for (i, d) in config
                .domains
                .iter_mut()
                .filter(|d| d.kind == crate::place::DomainKind::Cpu)
                .enumerate()
            {
                let workers = worker_domain.iter().filter(|&&w| w == i).count();
                let cores = u64::try_from(workers)
                    .unwrap_or(u64::MAX)
                    .saturating_mul(1000);
                let cpu = d.capacity.amount(respool_core::Dim::Cpu).max(cores);
                d.capacity = d.capacity.with_saturating(respool_core::Dim::Cpu, cpu);
            }
        }
        let res = crate::sched::Resourcing::new(&config)?;
        // Before any worker starts: workers read the barrier mode.
        crate::barrier::init();
        let cpu_domains: Vec<&crate::place::DomainSpec> = config
            .domains
            .iter()
            .filter(|d| d.kind == crate::place::DomainKind::Cpu)
            .collect();
        let domain_queues = if res.trivial {
            Vec::new()
        } else {
            cpu_domains
                .iter()
                .map(|_| RunQueue::new(config.queue_capacity))
                .collect()
        };
        let pins: Vec<Vec<usize>> = if config.pin_workers {
            worker_domain
                .iter()
                .map(|&d| {
                    cpu_domains
                        .get(d)
                        .map(|c| c.cpus.clone())
                        .unwrap_or_default()
                })
                .collect()
        } else {
            Vec::new()
        };
        let workers = config.workers;
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| Shared {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            queue: RunQueue::new(config.queue_capacity),
            domain_queues: domain_queues.into_boxed_slice(),
            worker_domain: worker_domain.into_boxed_slice(),
            lane: Mutex::new(Lane {
                heap: std::collections::BinaryHeap::new(),
                seq: 0,
            }),
            lane_len: AtomicUsize::new(0),
            sleepers: Sleepers::new(),
            gate: Gate(AtomicUsize::new(0)),
            active: AtomicUsize::new(workers),
            exit: AtomicBool::new(false),
            stop_now: AtomicBool::new(false),
            res,
            timer: Timer::new(format!("{}-timer", config.thread_name)),
            learner: crate::learn::Learner::with_soft(
                config.learning,
                respool_core::DimSet::ALL.intersection(respool_core::DimSet::from_bits_truncate(
                    !config.hard.bits(),
                )),
            ),
            metrics: Metrics::new(workers),
            epoch: Instant::now(),
            on_cancel: {
                let weak = weak.clone();
                Arc::new(move || {
                    if let Some(s) = weak.upgrade() {
                        s.res.purge.store(true, Ordering::SeqCst);
                        s.dispatch();
                    }
                })
            },
            exit_when_done: AtomicBool::new(false),
            self_weak: weak.clone(),
            logs: (0..workers)
                .map(|_| crossbeam_utils::CachePadded::new(respool_core::ReleaseLog::new()))
                .collect(),
            saved: AtomicBool::new(false),
            config,
        });
        if let Some(store) = &shared.config.store {
            match store.load() {
                Ok(Some(profiles)) => {
                    let n = shared.learner.import(&profiles);
                    tracing::debug!(target: "respool::learn", classes = n, "profiles loaded");
                }
                Ok(None) => {}
                Err(e) => return Err(BuildError::Store(e)),
            }
        }
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let s = shared.clone();
            let mut b = thread::Builder::new().name(format!("{}-{i}", s.config.thread_name));
            if let Some(size) = s.config.stack_size {
                b = b.stack_size(size);
            }
            let pin = pins.get(i).cloned().unwrap_or_default();
            match b.spawn(move || {
                if !pin.is_empty() {
                    if let Err(e) = crate::sys::pin_current_thread(&pin) {
                        tracing::warn!(target: "respool::sys", worker = i, error = %e, "worker not pinned");
                    }
                }
                worker_loop(&s, i);
            }) {
                Ok(h) => threads.push(h),
                Err(e) => {
                    // Stop the workers already started before reporting.
                    shared.exit.store(true, Ordering::SeqCst);
                    shared
                        .sleepers
                        .set_threads(threads.iter().map(|h| h.thread().clone()).collect());
                    shared.sleepers.notify_all();
                    for h in threads {
                        let _ = h.join();
                    }
                    return Err(BuildError::Spawn(e));
                }
            }
        }
        shared
            .sleepers
            .set_threads(threads.iter().map(|h| h.thread().clone()).collect());
        let monitor = shared.config.monitor.and_then(|cfg| {
            // The builder's source if one was given, else this platform's.
            let source = shared
                .config
                .monitor_source
                .as_ref()
                .and_then(|s| lock(s).take())
                .unwrap_or_else(crate::sys::platform_monitor);
            let name = format!("{}-monitor", shared.config.thread_name);
            match crate::sys::Monitor::with_source_named(source, cfg, name) {
                Ok(m) => {
                    let weak = Arc::downgrade(&shared);
                    m.subscribe(move |snap| {
                        if let Some(s) = weak.upgrade() {
                            s.on_sample(snap);
                        }
                    });
                    Some(m)
                }
                Err(e) => {
                    tracing::warn!(target: "respool::sys", error = %e,
                        "no monitor: external memory usage is not followed");
                    None
                }
            }
        });
        Ok(Pool {
            shared,
            threads: Mutex::new(threads),
            monitor: Mutex::new(monitor),
        })
    }

    /// Runs `f` on a worker, fire and forget. A panic in `f` is caught,
    /// counted in the snapshot's `panicked`, and reported by the panic hook;
    /// the worker goes on.
    ///
    /// This is the fast path: no admission, no measurement, no allocation
    /// for closures of up to four words.
    ///
    /// # Errors
    ///
    /// [`SubmitError::ShutDown`] if the pool is shutting down.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let pool = respool::Pool::builder().workers(2).build()?;
    /// let n = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..100 {
    ///     let n = n.clone();
    ///     pool.execute(move || { n.fetch_add(1, Ordering::Relaxed); })?;
    /// }
    /// pool.shutdown();
    /// assert_eq!(n.load(Ordering::Relaxed), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn execute<F>(&self, f: F) -> Result<(), SubmitError>
    where
        F: FnOnce() + Send + 'static,
    {
        self.shared
            .push_plain(Job::new(f))
            .map_err(|_| SubmitError::ShutDown)
    }

    /// Runs `f` on a worker and returns a handle to its result.
    ///
    /// # Errors
    ///
    /// [`SubmitError::ShutDown`] if the pool is shutting down.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::TaskError;
    /// let pool = respool::Pool::builder().workers(2).build()?;
    /// let handles: Vec<_> = (1..=4u64)
    ///     .map(|i| pool.submit(move || i * i))
    ///     .collect::<Result<_, _>>()?;
    /// let squares = handles.into_iter().map(|h| h.join()).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// // A panic is caught and comes back through the handle; the worker goes on.
    /// let h = pool.submit(|| -> u64 { panic!("no input") })?;
    /// assert_eq!(h.join(), Err(TaskError::Panicked("no input".into())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit<F, T>(&self, f: F) -> Result<JoinHandle<T>, SubmitError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let packet = Packet::new();
        let job = packet_job(packet.clone(), Publish::Now, f);
        self.shared
            .push_plain(job)
            .map_err(|_| SubmitError::ShutDown)?;
        Ok(JoinHandle::new(packet, None))
    }

    /// A builder for a task with requirements, class, priority, deadline,
    /// timeout or retries.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = respool::Pool::builder().workers(2).memory("1GiB").build()?;
    /// let h = pool.task().memory("256MiB").cpu("500m").spawn(|_ctx| vec![0u8; 1 << 20].len())?;
    /// assert_eq!(h.join()?, 1 << 20);
    /// // Asking for more than the pool has is refused at once, with the reason.
    /// let err = pool.task().memory("2GiB").spawn(|_ctx| ()).unwrap_err();
    /// assert!(err.to_string().contains("memory"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn task(&self) -> TaskBuilder<'_> {
        TaskBuilder::new(self)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs `f` with a scope in which tasks may borrow from the caller's
    /// stack; returns when every task spawned in the scope has finished.
    ///
    /// Called on one of this pool's workers, it runs queued tasks while it
    /// waits (nested on this thread), so that nested scopes cannot starve
    /// the pool of workers. Any queued task may be the one it runs: a
    /// queued task that waits for something the caller does only after the
    /// scope returns would wait forever.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = respool::Pool::builder().workers(2).build()?;
    /// let mut parts = vec![0u64; 4];
    /// pool.scope(|s| {
    ///     for (i, p) in parts.iter_mut().enumerate() {
    ///         s.spawn(move || *p = (i as u64 + 1) * 10);
    ///     }
    /// });
    /// assert_eq!(parts, [10, 20, 30, 40]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scope<'env, F, R>(&self, f: F) -> R
    where
        F: for<'scope> FnOnce(&'scope crate::Scope<'scope, 'env>) -> R,
    {
        crate::scope::run(self, f)
    }

    /// A cheap snapshot of counters, utilisation and latencies.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::Dim;
    /// let pool = respool::Pool::builder().workers(2).memory("1GiB").build()?;
    /// pool.task().memory("100MiB").spawn(|_| ())?.join()?;
    /// pool.shutdown(); // from here on the counters are exact
    /// let snap = pool.snapshot();
    /// assert_eq!(snap.workers, 2);
    /// assert_eq!((snap.submitted, snap.completed, snap.panicked), (1, 1, 0));
    /// assert_eq!((snap.queued, snap.waiting), (0, 0));
    /// assert_eq!(snap.capacity.get(Dim::Memory), Some(1 << 30));
    /// assert!(snap.reserved.is_zero()); // the task gave its 100 MiB back
    /// println!("{snap}"); // a readable summary
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> PoolSnapshot {
        crate::snapshot::take(&self.shared)
    }

    /// The number of worker threads.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.shared.config.workers
    }

    /// The capacity the pool accounts against (per tracked dimension).
    #[must_use]
    pub fn capacity(&self) -> Resources {
        self.shared.res.tracker.capacity()
    }

    /// Changes the capacity at run time (for example when a container limit
    /// changes). Tasks already admitted keep their reservations; if the new
    /// capacity is below what is reserved, no new task is admitted in that
    /// dimension until enough finish. Waiting tasks that can no longer ever
    /// fit are refused with [`TaskError::Rejected`].
    ///
    /// # Errors
    ///
    /// [`respool_core::TrackerError::Untracked`] for a dimension the pool was
    /// built without.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::core::TrackerError;
    /// use respool::{Dim, Pool, Resources, SubmitError, TaskError};
    /// let pool = Pool::builder().workers(1).memory("1GiB").build()?;
    /// // All the memory is used outside the pool: this task waits.
    /// pool.set_external_usage(&Resources::new().with(Dim::Memory, 1 << 30)?)?;
    /// let waiting = pool.task().memory("768MiB").spawn(|_| ())?;
    /// // The container shrinks to 512 MiB: the waiting task can never fit now.
    /// pool.set_capacity(&Resources::new().with(Dim::Memory, 512 << 20)?)?;
    /// assert_eq!(pool.capacity().get(Dim::Memory), Some(512 << 20));
    /// assert!(matches!(
    ///     waiting.join(),
    ///     Err(TaskError::Rejected(SubmitError::NeverFits(s))) if s.by == 256 << 20
    /// ));
    /// // IOPS were never given a capacity, so there is none to change.
    /// let iops = Resources::new().with(Dim::Iops, 1000)?;
    /// assert_eq!(pool.set_capacity(&iops), Err(TrackerError::Untracked { dim: Dim::Iops }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_capacity(&self, capacity: &Resources) -> Result<(), respool_core::TrackerError> {
        self.shared.res.tracker.set_capacity(capacity)?;
        self.shared.dispatch();
        Ok(())
    }

    /// Reports usage that no reservation accounts for (other processes, tasks
    /// that use more than they declared), as an absolute figure per
    /// dimension; it lowers the effective capacity until the next report.
    ///
    /// # Errors
    ///
    /// As [`Pool::set_capacity`].
    pub fn set_external_usage(&self, usage: &Resources) -> Result<(), respool_core::TrackerError> {
        self.shared.res.tracker.set_external(usage)?;
        self.shared.dispatch();
        Ok(())
    }

    /// Saves the learned profiles to the store given to
    /// [`Builder::profile_store`](crate::Builder::profile_store); `Ok(false)`
    /// when there is none.
    ///
    /// # Errors
    ///
    /// The store's [`StoreError`](crate::StoreError); its previous content
    /// is then intact.
    pub fn save_profiles(&self) -> Result<bool, crate::StoreError> {
        match &self.shared.config.store {
            Some(store) => store.save(&self.shared.learner.export()).map(|()| true),
            None => Ok(false),
        }
    }

    /// Writes the learned profiles to `store`.
    ///
    /// # Errors
    ///
    /// The store's [`StoreError`](crate::StoreError).
    pub fn export_profiles(
        &self,
        store: &dyn crate::ProfileStore,
    ) -> Result<(), crate::StoreError> {
        store.save(&self.shared.learner.export())
    }

    /// Replaces the profiles of the classes found in `store` with the stored
    /// ones (other classes are kept). Returns how many classes were loaded.
    ///
    /// # Errors
    ///
    /// The store's [`StoreError`](crate::StoreError): a corrupt or newer
    /// document is reported and nothing is changed.
    pub fn import_profiles(
        &self,
        store: &dyn crate::ProfileStore,
    ) -> Result<usize, crate::StoreError> {
        Ok(store.load()?.map_or(0, |p| self.shared.learner.import(&p)))
    }

    /// The learned profiles, as a store would save them.
    #[must_use]
    pub fn profiles(&self) -> crate::Profiles {
        self.shared.learner.export()
    }

    /// Records that a task of `class` ran out of memory at `usage_bytes`
    /// (for example a child process killed by the kernel): later tasks of the
    /// class reserve at least `max(usage * 1.2, usage + 100 MiB)` for a while,
    /// as the Kubernetes VPA recommender does. Returns that amount.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use respool::{Dim, Pool, TaskReport};
    /// let (tx, rx) = mpsc::channel();
    /// let pool = Pool::builder()
    ///     .workers(1)
    ///     .memory("1GiB")
    ///     .on_task_end(move |r: &TaskReport| drop(tx.send(r.requested)))
    ///     .build()?;
    /// // A `transcode` child process was killed at 300 MiB: +100 MiB beats x1.2.
    /// assert_eq!(pool.report_oom("transcode", 300 << 20), 400 << 20);
    /// // The next task of the class reserves that much (not the 256 MiB
    /// // fallback of a class without history).
    /// pool.task().class("transcode").spawn(|_| ())?.join()?;
    /// assert_eq!(rx.recv()?.get(Dim::Memory), Some(400 << 20));
    /// // From 500 MiB on, x1.2 is the larger bump.
    /// assert_eq!(pool.report_oom("render", 1000 << 20), 1200 << 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn report_oom(&self, class: &str, usage_bytes: u64) -> u64 {
        self.shared
            .learner
            .observe_oom(&Arc::from(class), usage_bytes)
    }

    /// Stops accepting tasks, runs every accepted task, and joins all threads
    /// the pool started. Tasks running on the pool's own workers may still
    /// submit (their work is part of what was accepted). Idempotent.
    ///
    /// Dropping the pool shuts it down the same way.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use respool::SubmitError;
    /// let pool = respool::Pool::builder().workers(2).build()?;
    /// let (tx, rx) = mpsc::channel();
    /// for i in 0..10 {
    ///     let tx = tx.clone();
    ///     pool.execute(move || tx.send(i).expect("receiver alive"))?;
    /// }
    /// drop(tx);
    /// pool.shutdown(); // every accepted task has run when it returns
    /// assert_eq!(rx.try_iter().sum::<i32>(), 45);
    /// assert_eq!(pool.execute(|| ()), Err(SubmitError::ShutDown));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&self) {
        let s = &self.shared;
        s.gate.close();
        if s.stop_now.load(Ordering::SeqCst) {
            // After `shutdown_now` the workers take no more tasks: waiting
            // for the queues to empty would never end. What is left never
            // started; dropping it resolves its handles with `ShutDown`.
            drop(self.shutdown_now());
            return;
        }
        let mut backoff = Duration::from_micros(10);
        loop {
            s.dispatch();
            if s.quiescent() {
                break;
            }
            if s.on_own_worker() {
                // Cannot wait for ourselves: let the workers finish on their own.
                s.exit_when_done.store(true, Ordering::SeqCst);
                return;
            }
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(1));
        }
        let first = !s.saved.swap(true, Ordering::SeqCst);
        self.join_all();
        if first {
            if let Err(e) = self.save_profiles() {
                tracing::warn!(target: "respool::learn", error = %e, "profiles not saved at shutdown");
            }
        }
    }

    /// Stops accepting tasks, lets running tasks finish, and hands back every
    /// task that had not started. Their join handles resolve with
    /// [`TaskError::ShutDown`] unless the caller runs them ([`Unstarted::run`]).
    ///
    /// A submitter blocked until admission
    /// ([`Policy::BlockUntilDeadline`](crate::Policy)) has not been told its
    /// task was accepted: it is woken with [`SubmitError::ShutDown`] and its
    /// task is dropped there, never handed back here (so a failed submission
    /// never runs).
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::{Dim, Pool, Resources, TaskError};
    /// let pool = Pool::builder().workers(1).memory("1GiB").build()?;
    /// // All the memory is used outside the pool: tasks that need some wait.
    /// pool.set_external_usage(&Resources::new().with(Dim::Memory, 1 << 30)?)?;
    /// let resize = pool.task().class("resize").memory("256MiB").spawn(|_| 1)?;
    /// let encode = pool.task().class("encode").memory("256MiB").spawn(|_| 2)?;
    /// let mut back = pool.shutdown_now();
    /// assert_eq!(back.len(), 2);
    /// // Run one here; dropping the other resolves its handle with `ShutDown`.
    /// let i = back.iter().position(|u| u.class() == Some("resize")).expect("handed back");
    /// back.swap_remove(i).run();
    /// drop(back);
    /// assert_eq!(resize.join()?, 1);
    /// assert_eq!(encode.join(), Err(TaskError::ShutDown));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown_now(&self) -> Vec<Unstarted> {
        let s = &self.shared;
        s.gate.close();
        s.stop_now.store(true, Ordering::SeqCst);
        // Submitters waiting for room in the wait queue hold the gate: they
        // see `stop_now` and leave with `ShutDown`.
        s.wake_waiters_for_room();
        let mut backoff = Duration::from_micros(10);
        while s.gate.in_flight() > 0 {
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(1));
        }
        let mut out = Vec::new();
        s.take_unstarted(&mut out);
        if !s.on_own_worker() {
            self.join_all();
            // A worker finishing its last task may have admitted a waiting
            // task (or a task may have submitted one) after the sweep above,
            // and so may a dispatch on another thread (`set_capacity`, a
            // canceller, the monitor): it admits inside the gate, so wait
            // for the gate to empty. With every worker joined and the wait
            // queue swept, nothing can add more: sweep again.
            let mut backoff = Duration::from_micros(10);
            while s.gate.in_flight() > 0 {
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(1));
            }
            s.take_unstarted(&mut out);
        } else {
            s.exit_when_done.store(true, Ordering::SeqCst);
        }
        if !s.saved.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.save_profiles() {
                tracing::warn!(target: "respool::learn", error = %e, "profiles not saved at shutdown");
            }
        }
        out
    }

    fn join_all(&self) {
        if let Some(m) = lock(&self.monitor).take() {
            m.stop();
        }
        let s = &self.shared;
        s.exit.store(true, Ordering::SeqCst);
        s.sleepers.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for h in threads {
            let _ = h.join();
        }
        s.timer.shutdown();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A task handed back by [`Pool::shutdown_now`]: it never started.
pub struct Unstarted {
    task: Option<Task>,
    class: Option<Arc<str>>,
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
            let _ = catch_unwind(AssertUnwindSafe(|| t.job.run()));
            if let Some(c) = t.ext.as_ref().and_then(|e| e.cancel.as_ref()) {
                c.publish();
            }
            // A task with a handle that travelled without a description.
            publish_stashed();
        }
    }
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
                crate::task::with_ext(None, || {
                    // Its releases go back at once: the worker's batch
                    // belongs to the frame that runs the surrounding task.
                    crate::handle::with_current(None, || self.run(t, worker, None));
                });
                true
            }
            None => false,
        }
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
    fn take_unstarted(&self, out: &mut Vec<Unstarted>) {
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
        {
            let mut lane = lock(&self.lane);
            while let Some(e) = lane.heap.pop() {
                out.push(self.unstarted(e.task));
            }
            self.lane_len.store(0, Ordering::SeqCst);
        }
        for t in self.drain_waiting() {
            out.push(self.unstarted(t));
        }
    }

    fn unstarted(&self, mut t: Task) -> Unstarted {
        let class = t.ext.as_ref().and_then(|e| e.class.clone());
        if let Some(ext) = t.ext.as_mut() {
            self.release(ext);
        }
        if let Some(lite) = t.held.take() {
            let _ = lite.held.unpack().release(&self.res.tracker);
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
        self.push_shared(Task {
            job,
            ext: None,
            held: None,
        });
        Ok(())
    }

    pub(crate) fn weak_self(&self) -> Weak<Shared> {
        self.self_weak.clone()
    }

    /// Puts a task into the shared run queue and wakes a worker.
    #[inline]
    pub(crate) fn push_shared(&self, task: Task) {
        self.queue.push(task);
        self.sleepers.notify_one();
    }

    /// Puts an admitted task where a worker will find it: the run queue of
    /// its CPU domain when it was placed on one, else the shared queues.
    pub(crate) fn enqueue(&self, task: Task) {
        let domain = task
            .ext
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
        let lane_key = task.ext.as_ref().and_then(|e| {
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
    fn next_task(&self, worker: usize) -> Option<Task> {
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
        self.res.waiting.load(Ordering::Relaxed)
    }

    fn has_work(&self) -> bool {
        !self.queue.is_empty()
            || self.lane_len.load(Ordering::SeqCst) > 0
            || self.domain_queues.iter().any(|q| !q.is_empty())
    }

    /// Whether worker `worker` has something to run.
    fn has_work_for(&self, worker: usize) -> bool {
        let d = self.worker_domain.get(worker).copied().unwrap_or(0);
        !self.queue.is_empty()
            || self.lane_len.load(Ordering::SeqCst) > 0
            || self.domain_queues.get(d).is_some_and(|q| !q.is_empty())
    }

    /// Nothing accepted is left anywhere (used by graceful shutdown).
    fn quiescent(&self) -> bool {
        self.gate.is_closed()
            && self.gate.in_flight() == 0
            && !self.has_work()
            && self.res.waiting.load(Ordering::SeqCst) == 0
            && self.timer.pending() == 0
            && self.active.load(Ordering::SeqCst) == 0
    }

    /// Runs one task on worker `id`.
    fn run(&self, task: Task, id: usize, batch: Option<&mut WorkerBatch<'_>>) {
        let Task { job, ext, held } = task;
        let counters = self.metrics.worker(id);
        if let Some(lite) = held {
            self.run_lite(job, lite, id, counters, batch);
            return;
        }
        match ext {
            None if !self.config.measure_all => {
                tracing::trace!(target: "respool::task", worker = id, "started");
                let ok = catch_unwind(AssertUnwindSafe(|| job.run())).is_ok();
                if let Some(c) = counters {
                    count(c, ok, None);
                }
                if ok {
                    tracing::trace!(target: "respool::task", worker = id, "completed");
                } else {
                    tracing::debug!(target: "respool::task", worker = id, "failed (panicked)");
                }
            }
            ext => self.run_measured(job, ext, counters, batch),
        }
    }

    /// Runs a task admitted by `submit_lite`: declared requirements only, so
    /// no description, no measurement, and a clock read only for the timing
    /// sample; the reservation goes back batched.
    fn run_lite(
        &self,
        job: Job,
        lite: Lite,
        id: usize,
        counters: Option<&crate::metrics::WorkerCounters>,
        batch: Option<&mut WorkerBatch<'_>>,
    ) {
        let submitted_ns = lite.submitted_ns();
        let start = (submitted_ns != 0).then(|| self.now_ns());
        if let (Some(c), Some(start)) = (counters, start) {
            c.wait
                .record(Duration::from_nanos(start.saturating_sub(submitted_ns)));
        }
        tracing::trace!(target: "respool::task", worker = id, "started");
        let ok = catch_unwind(AssertUnwindSafe(|| job.run())).is_ok();
        // A job with a handle leaves its packet in the stash when its body
        // ran (returned or panicked), and nothing when it was cancelled
        // before it could start: then there is nothing to count.
        let packet = if lite.has_handle() {
            let packet = STASH.with(Cell::take);
            if packet.is_none() {
                self.give_back_packed(lite.held, None);
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
        if let Some(c) = counters {
            count(c, ok, timing.map(|t| t.0));
            if let Some((_, latency)) = timing {
                c.latency.record(latency);
            }
        }
        if ok {
            tracing::trace!(target: "respool::task", worker = id, "completed");
        } else {
            tracing::debug!(target: "respool::task", worker = id, "failed (panicked)");
        }
        if let Some((elapsed, _)) = timing {
            self.record_hold(elapsed, counters);
        }
        match packet {
            Some(packet) => {
                // A joiner waits: give the reservation back at once (not
                // batched), then let it see the result.
                self.give_back_packed(lite.held, None);
                packet.publish();
            }
            None => self.give_back_packed(lite.held, batch),
        }
    }

    fn run_measured(
        &self,
        job: Job,
        ext: Option<Box<Ext>>,
        counters: Option<&crate::metrics::WorkerCounters>,
        mut batch: Option<&mut WorkerBatch<'_>>,
    ) {
        let Some(mut ext) = ext else {
            // `measure_all` for a plain task: time it, nothing else.
            let start = Instant::now();
            let ok = catch_unwind(AssertUnwindSafe(|| job.run())).is_ok();
            if let Some(c) = counters {
                let elapsed = start.elapsed();
                c.latency.record(elapsed);
                count(c, ok, Some(elapsed));
            }
            return;
        };
        // Read the clock only when something needs it.
        let needs_clock =
            ext.submitted.is_some() || ext.deadline.is_some() || ext.timeout.is_some();
        let start = needs_clock.then(Instant::now);
        if let (Some(c), Some(submitted), Some(start)) = (counters, ext.submitted, start) {
            c.wait.record(start.saturating_duration_since(submitted));
        }
        if let (Some(deadline), Some(start)) = (ext.deadline, start) {
            if deadline <= start {
                // Too late to start: resolve the handle and skip the run.
                if let Some(c) = ext.cancel.as_ref() {
                    c.fail(TaskError::DeadlineMissed);
                }
                tracing::debug!(target: "respool::task", class = ?ext.class, "deadline missed");
                drop(job);
                self.finish_ext(&mut ext, None, counters, batch.as_deref_mut());
                self.recycle(ext);
                return;
            }
        }
        if ext.timeout == Some(Duration::ZERO) {
            // A zero timeout has run out when the task would start: it is
            // not started (arming the timer would race it against the task).
            if ext
                .cancel
                .as_ref()
                .is_none_or(|c| c.fail(TaskError::TimedOut))
            {
                self.metrics.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(target: "respool::task", class = ?ext.class, "zero timeout: not started");
            drop(job);
            self.finish_ext(&mut ext, None, counters, batch.as_deref_mut());
            self.recycle(ext);
            return;
        }
        // Mark the start here, before the timeout is armed: a timeout counts
        // from a start that really happened. A task cancelled before this
        // point was already resolved by its canceller.
        if let Some(c) = ext.cancel.as_ref() {
            if !c.start() {
                drop(job);
                self.finish_ext(&mut ext, None, counters, batch.as_deref_mut());
                self.recycle(ext);
                return;
            }
        }
        let timer_id = match (ext.timeout, start) {
            (Some(timeout), Some(start)) => ext.cancel.clone().and_then(|c| {
                let weak = self.weak_self();
                self.timer.schedule(
                    start + timeout,
                    Box::new(move || {
                        if c.fail(TaskError::TimedOut) {
                            if let Some(s) = weak.upgrade() {
                                s.metrics.timed_out.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }),
                )
            }),
            _ => None,
        };
        let measure = ext.class.is_some() || self.config.measure_all;
        let _span =
            tracing::trace_span!(target: "respool::task", "task", class = ?ext.class).entered();
        tracing::trace!(target: "respool::task", request = %ext.request, "started");
        let (ok, report, grown) = if measure {
            let (ok, usage, grown) = self.run_probed(job, &ext, start);
            (ok, Some(usage), grown)
        } else if crate::alloc::is_installed() && self.holds_memory(&ext) {
            // Not measured, but it reserved memory: follow its heap so that
            // outgrowing the reservation grows it (accounting follows reality).
            let session = crate::alloc::begin();
            let grow = GrowCtx::new(&self.res.tracker, &ext);
            if let Some(s) = &session {
                self.install_growth(s, &ext, &grow);
            }
            let ok = crate::task::with_ext(Some(&ext), || {
                with_current(ext.cancel.as_deref(), || {
                    catch_unwind(AssertUnwindSafe(|| job.run())).is_ok()
                })
            });
            drop(session);
            (ok, None, grow.release())
        } else {
            let ok = crate::task::with_ext(Some(&ext), || {
                with_current(ext.cancel.as_deref(), || {
                    catch_unwind(AssertUnwindSafe(|| job.run())).is_ok()
                })
            });
            (ok, None, None)
        };
        if let Some(id) = timer_id {
            self.timer.cancel(id);
        }
        let end = (ext.submitted.is_some() || report.is_some()).then(Instant::now);
        let elapsed = start.zip(end).map(|(s, e)| e.saturating_duration_since(s));
        if let Some(c) = counters {
            count(c, ok, elapsed);
            if let (Some(submitted), Some(end)) = (ext.submitted, end) {
                c.latency.record(end.saturating_duration_since(submitted));
            }
        }
        if ok {
            tracing::trace!(target: "respool::task", class = ?ext.class, "completed");
        } else {
            tracing::debug!(target: "respool::task", class = ?ext.class, "failed (panicked)");
        }
        let grown = grown.unwrap_or(Resources::NONE);
        self.finish_ext(&mut ext, elapsed, counters, batch);
        if let Some(usage) = report {
            self.learn(&ext, usage, grown, !ok);
        }
        // Resources are back: now the joiner may see the result.
        if let Some(c) = ext.cancel.as_ref() {
            c.publish();
        }
        self.recycle(ext);
    }

    /// Runs a measured task: CPU time, I/O, heap (with the reservation grown
    /// from inside the allocator when the task outgrows it).
    fn run_probed(
        &self,
        job: Job,
        ext: &Ext,
        start: Option<Instant>,
    ) -> (bool, crate::measure::TaskUsage, Option<Resources>) {
        let start = start.unwrap_or_else(Instant::now);
        let probe = crate::measure::Probe::start(ext.class.is_some());
        let session = crate::alloc::begin();
        let grow = GrowCtx::new(&self.res.tracker, ext);
        if let Some(s) = &session {
            self.install_growth(s, ext, &grow);
        }
        let ok = crate::task::with_ext(Some(ext), || {
            with_current(ext.cancel.as_deref(), || {
                catch_unwind(AssertUnwindSafe(|| job.run())).is_ok()
            })
        });
        let heap = session.map(crate::alloc::Session::end);
        let wait = ext
            .submitted
            .map_or(Duration::ZERO, |s| start.saturating_duration_since(s));
        (
            ok,
            probe.finish(start.elapsed(), wait, heap),
            grow.release(),
        )
    }

    /// Whether the task holds a memory reservation on a pool that tracks memory.
    fn holds_memory(&self, ext: &Ext) -> bool {
        self.res
            .tracker
            .tracked()
            .contains(respool_core::Dim::Memory)
            && ext
                .held
                .as_ref()
                .is_some_and(|h| h.held().get(respool_core::Dim::Memory).is_some())
    }

    /// Makes the allocator grow the task's memory reservation when its live
    /// heap passes it (`grow` must outlive the session's hook).
    fn install_growth(&self, session: &crate::alloc::Session, ext: &Ext, grow: &GrowCtx<'_>) {
        if !self
            .res
            .tracker
            .tracked()
            .contains(respool_core::Dim::Memory)
        {
            return;
        }
        let reserved = ext
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
    fn learn(&self, ext: &Ext, usage: crate::measure::TaskUsage, grown: Resources, panicked: bool) {
        let measured = usage.as_resources();
        if let Some(class) = &ext.class {
            if !panicked {
                let expected = ext.expected.as_deref().copied().unwrap_or(Resources::NONE);
                self.learner
                    .observe(class, ext.size, &measured, usage.wall, &expected);
            }
        }
        if let Some(cb) = &self.config.on_task_end {
            let report = crate::TaskReport {
                class: ext.class.clone(),
                size: ext.size,
                requested: ext.request,
                expected: ext.expected.as_deref().copied().unwrap_or(Resources::NONE),
                usage,
                grown,
                panicked,
            };
            let _ = catch_unwind(AssertUnwindSafe(|| cb(&report)));
        }
    }

    /// Releases the reservation, feeds the hold time to admission (sampled),
    /// admits waiting tasks.
    fn finish_ext(
        &self,
        ext: &mut Ext,
        elapsed: Option<Duration>,
        counters: Option<&crate::metrics::WorkerCounters>,
        batch: Option<&mut WorkerBatch<'_>>,
    ) {
        if ext.held.is_none() {
            return;
        }
        if let Some(elapsed) = elapsed {
            self.record_hold(elapsed, counters);
        }
        // A task nobody waits on (no handle), not placed on a domain, not a
        // probe: batch its release with the worker's next ones. The tracker's
        // counters are then touched once per batch instead of once per task,
        // which keeps its cache line with the submitters. A batch is given
        // back at once when anyone waits for resources, and before the worker
        // idles; a waiting submitter also drains every batch before deciding.
        let batchable = ext.cancel.is_none() && ext.placed.is_none() && !ext.probe;
        if batchable {
            if let Some(held) = ext.held.take() {
                self.give_back(held, batch);
            }
            return;
        }
        self.release(ext);
        // Pairs with the fence in `defer` (Dekker on `waiting` / tracker).
        fence(Ordering::SeqCst);
        self.dispatch();
    }

    /// Feeds a sample of measured hold times to admission (its retry-after
    /// hints).
    fn record_hold(&self, elapsed: Duration, counters: Option<&crate::metrics::WorkerCounters>) {
        let n = counters.map_or(0, |c| {
            let n = c.measured.load(Ordering::Relaxed);
            bump(&c.measured, 1);
            n
        });
        if n % crate::metrics::HOLD_SAMPLE == 0 {
            self.res
                .admission
                .record_hold_time(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// Gives back the reservation of a finished task nobody waits on: with
    /// the worker's `batch`, into its release log (see `finish_ext`), else
    /// at once; then admits waiters if any.
    fn give_back(
        &self,
        held: respool_core::DetachedReservation,
        batch: Option<&mut WorkerBatch<'_>>,
    ) {
        let held = match batch {
            Some(b) => match b.writer.add_detached(held) {
                Ok(()) => return self.added(b),
                Err(held) => held,
            },
            None => held,
        };
        self.release_now(held);
    }

    /// `give_back` for a packed reservation (a lite task's: the hot path).
    #[inline]
    fn give_back_packed(
        &self,
        held: respool_core::PackedReservation,
        batch: Option<&mut WorkerBatch<'_>>,
    ) {
        let held = match batch {
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
    fn added(&self, b: &mut WorkerBatch<'_>) {
        b.count += 1;
        // The store into the log before the load of `waiting`: pairs with
        // the heavy barrier in `defer` (Dekker; see `barrier`). Either the
        // waiter's give-back sees this addition, or this load sees the
        // waiter.
        crate::barrier::light();
        if b.count >= RELEASE_BATCH || self.res.waiting.load(Ordering::SeqCst) > 0 {
            self.flush_batch(b);
        }
    }

    /// Gives a reservation back to the tracker at once, then admits
    /// waiters if any.
    fn release_now(&self, held: respool_core::DetachedReservation) {
        let _ = held.release(&self.res.tracker);
        // Pairs with the fence in `defer` (Dekker on `waiting` / tracker).
        fence(Ordering::SeqCst);
        self.dispatch();
    }

    /// Gives back what a worker's log holds (every `RELEASE_BATCH` tasks,
    /// when someone waits, before it idles), then admits waiters if any.
    fn flush_batch(&self, b: &mut WorkerBatch<'_>) {
        b.count = 0;
        if b.log.give_back(&self.res.tracker) == Ok(true) {
            // Pairs with the fence in `defer` (Dekker on `waiting` / tracker).
            fence(Ordering::SeqCst);
            self.dispatch();
        }
    }

    /// Gives back what every worker's log holds (before admitting waiters).
    pub(crate) fn drain_pending(&self) {
        for log in self.logs.iter() {
            let _ = log.give_back(&self.res.tracker);
        }
    }

    /// One monitor sample: memory in use but not reserved becomes external
    /// usage (lowering the effective capacity), and a changed container
    /// memory limit becomes the new capacity.
    fn on_sample(&self, snap: &crate::sys::Snapshot) {
        use respool_core::Dim;
        let tracker = &self.res.tracker;
        if !tracker.tracked().contains(Dim::Memory) {
            return;
        }
        if self.config.follow_container_limit {
            if let Some(limit) = snap.container_limits.and_then(|l| l.memory_bytes) {
                if tracker.capacity().get(Dim::Memory) != Some(limit) {
                    let _ =
                        tracker.set_capacity(&Resources::NONE.with_saturating(Dim::Memory, limit));
                    tracing::info!(target: "respool::sys", limit, "container memory limit changed");
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

    /// A fresh (or recycled) `Ext` box.
    #[allow(clippy::unused_self)]
    pub(crate) fn new_ext(&self) -> Box<Ext> {
        crate::extcache::take()
    }

    /// Returns an `Ext` box for reuse (its contents are reset).
    #[allow(clippy::unused_self)]
    fn recycle(&self, mut ext: Box<Ext>) {
        ext.reset();
        crate::extcache::give(ext);
    }
}

/// Who publishes a task's result (makes it visible to its joiner).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Publish {
    /// The job, as soon as it is written (no reservation to give back first).
    Now,
    /// The worker, through the task's description (`Ext::cancel`), after it
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
    static STASH: Cell<Option<Arc<dyn Cancel>>> = const { Cell::new(None) };
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

/// What the allocator hook needs to grow a running task's reservation, and
/// what it took: memory in use beyond the reservation, held here (on the
/// worker's stack) until the task ends.
struct GrowCtx<'a> {
    tracker: &'a Tracker,
    /// Memory the task reserved at admission.
    reserved: u64,
    /// Memory taken since, as one token.
    grown: std::cell::Cell<Option<respool_core::DetachedReservation>>,
}

impl<'a> GrowCtx<'a> {
    fn new(tracker: &'a Tracker, ext: &Ext) -> GrowCtx<'a> {
        GrowCtx {
            tracker,
            reserved: ext
                .held
                .as_ref()
                .map_or(0, |h| h.held().amount(respool_core::Dim::Memory)),
            grown: std::cell::Cell::new(None),
        }
    }

    /// Gives back what was grown (exactly once: the token is taken) and says
    /// how much it was.
    fn release(&self) -> Option<Resources> {
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

/// Completes a packet with `ShutDown` if its job is dropped without running.
pub(crate) struct CompleteOnDrop<T: Send>(pub(crate) Option<Arc<Packet<T>>>);

impl<T: Send> Drop for CompleteOnDrop<T> {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.fail(TaskError::ShutDown);
        }
    }
}

/// Splits `workers` among the CPU domains in proportion to their CPUs
/// (each domain gets at least one while workers last); returns the domain of
/// each worker.
fn assign_workers(workers: usize, domains: &[&crate::place::DomainSpec]) -> Vec<usize> {
    if domains.len() <= 1 {
        return vec![0; workers];
    }
    let weights: Vec<usize> = domains.iter().map(|d| d.cpus.len().max(1)).collect();
    let total: usize = weights.iter().sum();
    let mut counts: Vec<usize> = weights
        .iter()
        .map(|w| (workers * w / total).max(usize::from(workers >= domains.len())))
        .collect();
    // Fix rounding so the counts add up to `workers`.
    while counts.iter().sum::<usize>() > workers {
        if let Some(c) = counts.iter_mut().filter(|c| **c > 1).max_by_key(|c| **c) {
            *c -= 1;
        } else {
            break;
        }
    }
    let mut i = 0;
    while counts.iter().sum::<usize>() < workers {
        if let Some(c) = counts.get_mut(i % domains.len()) {
            *c += 1;
        }
        i += 1;
    }
    counts
        .iter()
        .enumerate()
        .flat_map(|(d, &n)| std::iter::repeat_n(d, n))
        .collect()
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

fn worker_loop(shared: &Arc<Shared>, id: usize) {
    WORKER.with(|w| w.set((shared.id, id)));
    // This thread is the only writer of its release log.
    let mut batch = shared.logs.get(id).and_then(|log| WorkerBatch::new(log));
    loop {
        if shared.stop_now.load(Ordering::Relaxed) {
            break;
        }
        if let Some(t) = shared.next_task(id) {
            shared.run(t, id, batch.as_mut());
            continue;
        }
        if shared.exit.load(Ordering::SeqCst) {
            break;
        }
        let mut found = None;
        for i in 0..IDLE_SPINS {
            if i % 64 == 63 {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            if let Some(t) = shared.next_task(id) {
                found = Some(t);
                break;
            }
        }
        if let Some(t) = found {
            shared.run(t, id, batch.as_mut());
            continue;
        }
        if shared.exit.load(Ordering::SeqCst) {
            break;
        }
        // Give back batched releases before idling.
        if let Some(b) = batch.as_mut() {
            shared.flush_batch(b);
        }
        // Go idle: register, re-check, park.
        shared.sleepers.register(id);
        if shared.has_work_for(id) || shared.exit.load(Ordering::SeqCst) {
            shared.sleepers.unregister(id);
            continue;
        }
        shared.active.fetch_sub(1, Ordering::SeqCst);
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
    // Nothing stays batched behind a worker that exits.
    if let Some(b) = batch.as_mut() {
        shared.flush_batch(b);
    }
    shared.active.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run-queue slot holds a task: a small closure inline, and the packed
    /// reservation of a task with requirements only. Growing it costs every
    /// task (and `Builder::queue_capacity`'s documentation states its size).
    /// A waiter's deadline wake-up is cancelled when it is admitted: a
    /// thousand deferred tasks with a distant deadline leave no timer
    /// entries behind once they ran (they used to stay until the deadline).
    #[test]
    fn admitted_waiters_leave_no_deadline_wakeups_behind() {
        use respool_core::Dim;
        let pool = crate::Pool::builder()
            .workers(1)
            .capacity(Resources::NONE.with_saturating(Dim::Memory, 100))
            .headroom(Resources::NONE)
            .admission(crate::Policy::Defer)
            .build()
            .expect("pool");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let holder = pool
            .task()
            .memory("100")
            .spawn(move |_| {
                let _ = rx.recv();
            })
            .expect("holder");
        let far = Instant::now() + Duration::from_secs(3600);
        let waiters: Vec<_> = (0..1000)
            .map(|i| {
                pool.task()
                    .memory("10")
                    .deadline(far)
                    .spawn(move |_| i)
                    .expect("deferred")
            })
            .collect();
        assert_eq!(pool.snapshot().waiting, 1000);
        assert_eq!(pool.shared.timer.scheduled(), 1000, "one wake-up each");
        drop(tx);
        holder.join().expect("holder ran");
        for (i, h) in waiters.into_iter().enumerate() {
            assert_eq!(h.join(), Ok(i));
        }
        assert_eq!(pool.shared.timer.scheduled(), 0, "wake-ups left behind");
    }

    #[test]
    fn a_task_fits_a_run_queue_slot_of_96_bytes() {
        assert_eq!(std::mem::size_of::<Lite>(), 48);
        assert!(
            std::mem::size_of::<Task>() <= 96,
            "Task grew to {} bytes",
            std::mem::size_of::<Task>()
        );
    }
}
