//! The pool: workers, the fast path, the resource-aware path, lifecycle.
//!
//! # The path of a task
//!
//! - **No requirement, no class** (`execute`, `submit`): the task goes
//!   straight into the lock-free run queue; no admission, no measurement. This
//!   is the fast path, meant to cost no more than the fastest plain pool.
//! - **With requirements** (or a class whose requirements are learned): the
//!   core's [`Admission`](respool_core::admission::Admission) decides. Accepted tasks carry their reservation into
//!   the run queue (or the priority lane, when they have a priority or a
//!   deadline); deferred ones wait in the scheduler's scored wait queue
//!   (critical first, then priority with aging, then first come first
//!   served) and are admitted whenever resources are released, the head
//!   first unless a later one in the lookahead window fits and the head may
//!   still be overtaken; refused ones come back as a [`SubmitError`] saying
//!   which dimension and by how much.
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

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use respool_core::Resources;

use crate::config::Config;

/// How long the platform monitor waits before its first sample (or its
/// interval, when shorter). A pool that lives less than this never opens
/// the monitor's files, and neither its `build()` nor its shutdown waits
/// for them (issue 21: building and shutting down a pool in under 0.5 ms);
/// a longer-lived pool sees its first sample this much later, which is
/// less than the default interval (1 s) between any two samples.
const FIRST_SAMPLE_AFTER: Duration = Duration::from_millis(5);
use crate::engine::{Gate, PriorityLane, Shared};
use crate::error::{BuildError, SubmitError};
use crate::handle::{JoinHandle, Packet};
use crate::job::Job;
use crate::metrics::Metrics;
use crate::runq::{RunQueue, Sleepers};
use crate::snapshot::PoolSnapshot;
use crate::sync::lock;
use crate::timer::Timer;
use crate::work::{Publish, Unstarted, packet_job};

static NEXT_POOL_ID: AtomicUsize = AtomicUsize::new(1);

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
            .field("capacity", &self.shared.sched.tracker.capacity())
            .finish()
    }
}

impl Pool {
    pub(crate) fn start(mut config: Config) -> Result<Pool, BuildError> {
        let worker_domain = {
            let cpu_domains: Vec<&crate::place::DomainSpec> = config
                .domains
                .iter()
                .filter(|d| d.kind.has_cpus())
                .collect();
            assign_workers(config.workers, &cpu_domains)
        };
        if !config.hard.contains(respool_core::Dim::Cpu) {
            // Soft CPU, per domain as for the pool: at least its workers' cores.
            for (i, d) in config
                .domains
                .iter_mut()
                .filter(|d| d.kind.has_cpus())
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
        let sched = crate::scheduler::Scheduler::new(&config)?;
        // Before any worker starts: workers read the barrier mode.
        crate::barrier::init();
        let cpu_domains: Vec<&crate::place::DomainSpec> = config
            .domains
            .iter()
            .filter(|d| d.kind.has_cpus())
            .collect();
        let domain_queues = if sched.trivial {
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
            lane: Mutex::new(PriorityLane::new()),
            lane_len: AtomicUsize::new(0),
            sleepers: Sleepers::new(),
            gate: Gate::default(),
            active: AtomicUsize::new(workers),
            exit: AtomicBool::new(false),
            stop_now: AtomicBool::new(false),
            sched,
            help: crate::worker::help,
            timer: Timer::new(format!("{}-timer", config.thread_name)),
            learner: crate::learn::Learner::with_soft(
                config.learning,
                respool_core::DimSet::ALL.intersection(respool_core::DimSet::from_bits_truncate(
                    !config.hard.bits(),
                )),
            )
            .with_sink(config.store.clone()),
            metrics: Metrics::new(workers),
            epoch: Instant::now(),
            on_cancel: {
                let weak = weak.clone();
                Arc::new(move || {
                    if let Some(s) = weak.upgrade() {
                        s.sched.purge.store(true, Ordering::SeqCst);
                        s.dispatch();
                    }
                })
            },
            exit_when_done: AtomicBool::new(false),
            shutdown_waiter: Mutex::new(None),
            self_weak: weak.clone(),
            logs: (0..workers)
                .map(|_| crossbeam_utils::CachePadded::new(respool_core::ReleaseLog::new()))
                .collect(),
            saved: AtomicBool::new(false),
            task_ids: std::sync::atomic::AtomicU64::new(0),
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
            // A shared store replaces the profiles when it reads them again
            // (on its own thread; a pool gone by then is left alone).
            let weak = Arc::downgrade(&shared);
            store.watch(Box::new(move |profiles| {
                if let Some(s) = weak.upgrade() {
                    let n = s.learner.refresh(profiles);
                    tracing::trace!(target: "respool::learn", classes = n, "shared profiles refreshed");
                }
            }));
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
                crate::worker::worker_loop(&s, i);
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
            // The builder's source if one was given, else this platform's,
            // opened on the monitor's thread: `build()` does not wait for
            // its files nor for the first sample.
            let source = shared
                .config
                .monitor_source
                .as_ref()
                .and_then(|s| lock(s).take());
            let name = format!("{}-monitor", shared.config.thread_name);
            let started = match source {
                Some(source) => crate::sys::Monitor::with_source_named(source, cfg, name),
                None => crate::sys::Monitor::start_deferred(
                    cfg,
                    name,
                    shared.config.cgroup.clone(),
                    FIRST_SAMPLE_AFTER.min(cfg.interval),
                ),
            };
            match started {
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

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
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
        self.shared.sched.tracker.capacity()
    }

    /// Changes the capacity at run time (for example when a container limit
    /// changes). Tasks already admitted keep their reservations; if the new
    /// capacity is below what is reserved, no new task is admitted in that
    /// dimension until enough finish. Waiting tasks that can no longer ever
    /// fit are refused with [`TaskError::Rejected`](crate::error::TaskError::Rejected).
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
        self.shared.sched.tracker.set_capacity(capacity)?;
        self.shared.capacity_changed();
        self.shared.dispatch();
        Ok(())
    }

    /// Reports usage that no reservation accounts for (other processes, tasks
    /// that use more than they declared), as an absolute figure per
    /// dimension; it lowers the effective capacity until the next report.
    ///
    /// Only the dimensions `usage` sets change: to clear a dimension's
    /// external usage, report zero in it
    /// (`Resources::NONE.with(Dim::Memory, 0)?`); `Resources::NONE` changes
    /// nothing.
    ///
    /// # Errors
    ///
    /// As [`Pool::set_capacity`].
    pub fn set_external_usage(&self, usage: &Resources) -> Result<(), respool_core::TrackerError> {
        self.shared.sched.tracker.set_external(usage)?;
        self.shared.capacity_changed();
        self.shared.dispatch();
        Ok(())
    }

    /// Saves the learned profiles to the store given to
    /// [`Builder::profile_store`](crate::builder::Builder::profile_store); `Ok(false)`
    /// when there is none.
    ///
    /// # Errors
    ///
    /// The store's [`StoreError`](crate::store::StoreError); its previous content
    /// is then intact.
    pub fn save_profiles(&self) -> Result<bool, crate::store::StoreError> {
        match &self.shared.config.store {
            Some(store) => store.save(&self.shared.learner.export()).map(|()| true),
            None => Ok(false),
        }
    }

    /// Writes the learned profiles to `store`.
    ///
    /// # Errors
    ///
    /// The store's [`StoreError`](crate::store::StoreError).
    pub fn export_profiles(
        &self,
        store: &dyn crate::store::ProfileStore,
    ) -> Result<(), crate::store::StoreError> {
        store.save(&self.shared.learner.export())
    }

    /// Replaces the profiles of the classes found in `store` with the stored
    /// ones (other classes are kept). Returns how many classes were loaded.
    ///
    /// # Errors
    ///
    /// The store's [`StoreError`](crate::store::StoreError): a corrupt or newer
    /// document is reported and nothing is changed.
    pub fn import_profiles(
        &self,
        store: &dyn crate::store::ProfileStore,
    ) -> Result<usize, crate::store::StoreError> {
        Ok(store.load()?.map_or(0, |p| self.shared.learner.import(&p)))
    }

    /// The learned profiles, as a store would save them.
    #[must_use]
    pub fn profiles(&self) -> crate::store::Profiles {
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
    /// use respool::{Dim, Pool};
    /// use respool::measure::TaskReport;
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
    /// With a [profile store](crate::builder::Builder::profile_store), the
    /// first shutdown saves the learned profiles; a failed save is logged
    /// (a `tracing` warning on `respool::learn`), since shutting down cannot
    /// fail: call [`Pool::save_profiles`] before it to get the error.
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
        // Each worker that goes idle from here on unparks this thread (a
        // sleep of 10 us takes 60 us or more with Linux's timer slack); the
        // timeout covers what drains without a worker going idle (the
        // timer, a concurrent `shutdown`, which takes the waiter's place).
        *lock(&s.shutdown_waiter) = Some(thread::current());
        let mut backoff = Duration::from_micros(10);
        loop {
            s.dispatch();
            if s.quiescent() {
                break;
            }
            if s.on_own_worker() {
                // Cannot wait for ourselves: let the workers finish on their own.
                s.exit_when_done.store(true, Ordering::SeqCst);
                *lock(&s.shutdown_waiter) = None;
                return;
            }
            thread::park_timeout(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(1));
        }
        *lock(&s.shutdown_waiter) = None;
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
    /// [`TaskError::ShutDown`](crate::error::TaskError::ShutDown) unless the caller runs them ([`Unstarted::run`]).
    ///
    /// A submitter blocked until admission
    /// ([`Policy::BlockUntilDeadline`](respool_core::admission::Policy)) has not been told its
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
        s.sched.wake_waiters_for_room();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter's deadline wake-up is cancelled when it is admitted: a
    /// thousand deferred tasks with a distant deadline leave no timer
    /// entries behind once they ran (they used to stay until the deadline).
    #[test]
    fn admitted_waiters_leave_no_deadline_wakeups_behind() {
        use respool_core::Dim;
        let pool = crate::pool::Pool::builder()
            .workers(1)
            .capacity(Resources::NONE.with_saturating(Dim::Memory, 100))
            .headroom(Resources::NONE)
            .admission(respool_core::admission::Policy::Defer)
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
}
