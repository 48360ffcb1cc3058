//! Configuring and starting a [`Pool`].

use std::fmt;

use respool_core::admission::{AdmissionConfig, Policy};
use respool_core::{Dim, DimSet, Resources};

use crate::config::Config;
use crate::error::BuildError;
use crate::limits;
use crate::pool::Pool;
use crate::units;

/// Configures a [`Pool`]. Every setting has a default that works on the
/// machine (or container) it runs on.
///
/// | setting | default |
/// |---|---|
/// | [`workers`](Builder::workers) | CPUs allowed to this process and its container (cgroup quota over every ancestor, rounded down, at least 1) |
/// | [`capacity`](Builder::capacity) | CPU and memory of the machine or container ([`sys::MachineCapacity`](crate::sys::MachineCapacity)) |
/// | [`headroom`](Builder::headroom) | for detected memory, 10% but at least 64 MiB; none for capacities you set |
/// | [`monitor`](Builder::monitor) | on when memory capacity is detected or a [`system_monitor`](Builder::system_monitor) is given: memory used outside the pool's reservations lowers the effective capacity within one sampling interval (1 s) |
/// | [`admission`](Builder::admission) | [`Policy::Defer`]; beyond 4096 waiting tasks a submitter from outside the pool waits for room (backpressure), never refused |
/// | [`max_waiting`](Builder::max_waiting) | not set: no refusal for a full wait queue (see above) |
/// | [`queue_capacity`](Builder::queue_capacity) | 4096 admitted tasks before the overflow list |
/// | [`thread_name`](Builder::thread_name) | `"respool"` (workers are `respool-0`, `respool-1`, ...) |
///
/// # Examples
///
/// ```
/// use respool::{Policy, Pool};
/// let pool = Pool::builder()
///     .workers(4)
///     .memory("2GiB")
///     .cpu("4")
///     .admission(Policy::Defer)
///     .thread_name("render")
///     .build()?;
/// assert_eq!(pool.workers(), 4);
/// # Ok::<(), respool::BuildError>(())
/// ```
#[must_use = "a builder does nothing until build()"]
pub struct Builder {
    workers: Option<usize>,
    capacity: Resources,
    headroom: Option<Resources>,
    admission: AdmissionConfig,
    /// The user's bound on waiting tasks (`None`: backpressure instead).
    max_waiting: Option<usize>,
    queue_capacity: usize,
    thread_name: String,
    stack_size: Option<usize>,
    measure_all: bool,
    tasks_report_memory: bool,
    learning: crate::learn::LearningConfig,
    store: Option<std::sync::Arc<dyn crate::store::ProfileStore>>,
    pricing: Option<crate::cost::Pricing>,
    on_task_end: Option<crate::config::TaskEndHook>,
    monitor: Option<bool>,
    monitor_config: crate::sys::MonitorConfig,
    monitor_source: Option<Box<dyn crate::sys::SystemMonitor>>,
    domains: Option<Vec<crate::place::DomainSpec>>,
    fit: respool_core::packer::Fit,
    lookahead: (usize, u32),
    weights: respool_core::queue::Weights,
    pin_workers: Option<bool>,
    /// Dimensions admitted as hard reservations.
    hard: DimSet,
    observer: Option<std::sync::Arc<dyn crate::observe::Observer>>,
    error: Option<BuildError>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .field("headroom", &self.headroom)
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the defaults above.
    pub fn new() -> Builder {
        Builder {
            workers: None,
            capacity: Resources::NONE,
            headroom: None,
            admission: AdmissionConfig::default(),
            max_waiting: None,
            queue_capacity: 4096,
            thread_name: "respool".to_owned(),
            stack_size: None,
            measure_all: false,
            tasks_report_memory: false,
            learning: crate::learn::LearningConfig::default(),
            store: None,
            pricing: None,
            on_task_end: None,
            monitor: None,
            monitor_config: crate::sys::MonitorConfig::default(),
            monitor_source: None,
            domains: None,
            fit: respool_core::packer::Fit::Best(respool_core::packer::Score::DotProduct),
            lookahead: (8, 16),
            weights: respool_core::queue::Weights::default(),
            pin_workers: None,
            hard: DimSet::INCOMPRESSIBLE,
            observer: None,
            error: None,
        }
    }

    /// Number of worker threads: 1 to [`MAX_WORKERS`](crate::limits::MAX_WORKERS)
    /// (4096); [`build`](Builder::build) refuses 0 with
    /// [`BuildError::ZeroWorkers`] and more with [`BuildError::TooLarge`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Sets the capacity of every dimension set in `capacity`, replacing what
    /// would be detected for it. Dimensions never given a capacity are not
    /// tracked (except CPU and memory, which are detected).
    pub fn capacity(mut self, capacity: Resources) -> Self {
        self.capacity = capacity.or(&self.capacity);
        self
    }

    /// Sets the capacity of one dimension.
    pub fn limit(mut self, dim: Dim, amount: u64) -> Self {
        match self.capacity.with(dim, amount) {
            Ok(c) => self.capacity = c,
            Err(e) => {
                self.error.get_or_insert(BuildError::Invalid(e.to_string()));
            }
        }
        self
    }

    fn limit_str(mut self, dim: Dim, amount: &str) -> Self {
        match units::parse_amount(dim, amount) {
            Ok(v) => self.limit(dim, v),
            Err(e) => {
                self.error.get_or_insert(BuildError::Parse(e));
                self
            }
        }
    }

    /// CPU capacity: `"4"` cores, `"2500m"`.
    pub fn cpu(self, amount: &str) -> Self {
        self.limit_str(Dim::Cpu, amount)
    }

    /// Memory capacity: `"8GiB"`, `"512MiB"`.
    pub fn memory(self, amount: &str) -> Self {
        self.limit_str(Dim::Memory, amount)
    }

    /// Storage IOPS capacity: `"5000"`, `"20k"`.
    pub fn iops(self, amount: &str) -> Self {
        self.limit_str(Dim::Iops, amount)
    }

    /// Network capacity: `"1Gbit/s"`, `"100MB/s"`.
    pub fn network(self, amount: &str) -> Self {
        self.limit_str(Dim::Network, amount)
    }

    /// Capacity of a user-defined dimension (licences, connections).
    pub fn user_capacity(self, index: usize, amount: u64) -> Self {
        match Dim::user(index) {
            Some(dim) => self.limit(dim, amount),
            None => self.invalid(format!(
                "user dimension {index} does not exist: there are {} (0 to {})",
                respool_core::resource::USER_DIMS,
                respool_core::resource::USER_DIMS - 1
            )),
        }
    }

    fn invalid(mut self, message: String) -> Self {
        self.error.get_or_insert(BuildError::Invalid(message));
        self
    }

    /// Capacity held back from every task (a safety margin), per dimension.
    /// It replaces the default headroom in every dimension. A dimension set
    /// to 0 holds nothing back and needs no capacity.
    pub fn headroom(mut self, headroom: Resources) -> Self {
        self.headroom = Some(headroom);
        self
    }

    /// What to do with tasks that do not fit now (default [`Policy::Defer`]).
    ///
    /// With [`Policy::BlockUntilDeadline`], the submitting thread waits
    /// (outside the pool's locks) until its task is admitted, refused at
    /// the maximum wait or at the task's own earlier deadline
    /// ([`SubmitError::DeadlineExpired`](crate::error::SubmitError)), or refused by
    /// [`Pool::shutdown_now`](crate::pool::Pool::shutdown_now)
    /// ([`SubmitError::ShutDown`](crate::error::SubmitError)); a refused job is
    /// dropped before the submission returns. A task running on this pool
    /// that submits does not idle its worker meanwhile: the worker runs
    /// queued tasks (nested, as a [`scope`](crate::pool::Pool::scope) does while
    /// it waits), so admitted tasks waiting for a worker still run and give
    /// back what the blocked submission may need. As with a scope, a queued
    /// task that waits for something the submitting task does only after
    /// its submission returns can then be the one it runs, and wait
    /// forever: tasks that wait on each other should not be submitted this
    /// way. Retries (from the pool's timer) never block: they wait like
    /// deferred tasks.
    pub fn admission(mut self, policy: Policy) -> Self {
        self.admission.policy = policy;
        self
    }

    /// Bounds the wait queue: at most `max` tasks wait for resources, and a
    /// task that would have to wait beyond that is refused with
    /// [`SubmitError::QueueFull`](crate::error::SubmitError::QueueFull) and a
    /// retry-after hint (`0`: no task ever waits, as with
    /// [`Policy::Reject`], but refused as `QueueFull`).
    ///
    /// Not set (the default), a full wait queue refuses nothing: once
    /// [`Builder::BACKPRESSURE`] tasks wait, a submitter from outside the
    /// pool waits for one of them to leave the queue before its own task
    /// joins it (backpressure: a loop that submits faster than tasks can
    /// start slows down to their pace, as with a bounded channel), and
    /// submissions that must not block (from the pool's own tasks, which
    /// could otherwise wait on each other; retries from its timer) join the
    /// queue beyond that mark. Under [`Policy::BlockUntilDeadline`] the wait
    /// for room counts towards the deadline. [`Pool::shutdown_now`](crate::pool::Pool::shutdown_now)
    /// ends the wait with [`SubmitError::ShutDown`](crate::error::SubmitError::ShutDown).
    ///
    /// Either way the wait queue is allocated as it fills (doubling), not
    /// up front: a large bound costs nothing until tasks wait. At most
    /// [`MAX_WAITING`](crate::limits::MAX_WAITING) (2^32 - 1), else
    /// [`build`](Builder::build) fails with [`BuildError::TooLarge`].
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::{Dim, Pool, Resources, SubmitError};
    /// let pool = Pool::builder().workers(1).memory("1GiB").max_waiting(1).build()?;
    /// // All the memory is used outside the pool: tasks that need some wait.
    /// pool.set_external_usage(&Resources::new().with(Dim::Memory, 1 << 30)?)?;
    /// let waits = pool.task().memory("1MiB").spawn(|_| ())?;
    /// let err = pool.task().memory("1MiB").spawn(|_| ()).unwrap_err();
    /// assert!(matches!(err, SubmitError::QueueFull { .. }));
    /// // The memory comes back: the waiting task runs.
    /// pool.set_external_usage(&Resources::new().with(Dim::Memory, 0)?)?;
    /// waits.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_waiting(mut self, max: usize) -> Self {
        self.max_waiting = Some(max);
        self
    }

    /// How many tasks may wait for resources before a submitter from
    /// outside the pool waits for room, when
    /// [`max_waiting`](Builder::max_waiting) is not set.
    pub const BACKPRESSURE: usize = 4096;

    /// Capacity that only [critical](crate::task::TaskBuilder::critical) tasks may
    /// use. A dimension set to 0 reserves nothing and needs no capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::{Dim, Pool, Resources, SubmitError};
    /// // 1 GiB, of which 256 MiB are kept for critical tasks.
    /// let pool = Pool::builder()
    ///     .workers(1)
    ///     .memory("1GiB")
    ///     .critical_reserve(Resources::new().with(Dim::Memory, 256 << 20)?)
    ///     .build()?;
    /// // A normal task sees 768 MiB: 900 MiB can never fit.
    /// let err = pool.task().memory("900MiB").spawn(|_| ()).unwrap_err();
    /// assert!(matches!(err, SubmitError::NeverFits(s) if s.by == 132 << 20));
    /// // A critical task may use the reserve as well.
    /// let h = pool.task().memory("900MiB").critical().spawn(|_| "done")?;
    /// assert_eq!(h.join()?, "done");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn critical_reserve(mut self, reserve: Resources) -> Self {
        self.admission.critical_reserve = reserve;
        self
    }

    /// Slots of the lock-free run queue; beyond it, admitted tasks go to an
    /// overflow list (default 4096). A slot takes about 100 bytes (a small
    /// closure is stored in it, and a task with requirements only carries
    /// its reservation there), so the default queue takes about 400 KiB.
    /// 1 to [`MAX_QUEUE_CAPACITY`](crate::limits::MAX_QUEUE_CAPACITY) (2^20);
    /// [`build`](Builder::build) refuses 0 with
    /// [`BuildError::ZeroQueueCapacity`] and more with [`BuildError::TooLarge`].
    pub fn queue_capacity(mut self, slots: usize) -> Self {
        self.queue_capacity = slots;
        self
    }

    /// Prefix of worker thread names.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Stack size of worker threads, in bytes (default: the Rust default,
    /// 2 MiB): [`MIN_STACK_SIZE`](crate::limits::MIN_STACK_SIZE) (64 KiB) to
    /// [`MAX_STACK_SIZE`](crate::limits::MAX_STACK_SIZE) (1 GiB), else
    /// [`build`](Builder::build) fails with [`BuildError::TooSmall`] (0
    /// included) or [`BuildError::TooLarge`].
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Measure (wait and run time) every task, not only resource-aware ones.
    /// Costs two clock reads per task.
    pub fn measure_all(mut self, on: bool) -> Self {
        self.measure_all = on;
        self
    }

    /// The pool's classified tasks report their memory themselves, with
    /// [`TaskContext::report_usage`](crate::TaskContext::report_usage) (the
    /// memory of child processes, for example, which no allocator sees).
    /// Memory can then be learned without the
    /// [tracking allocator](crate::alloc), so the cold-start probe applies
    /// as it does with that allocator: a class whose memory is not learned
    /// yet runs at most
    /// [`probe_concurrency`](crate::learn::LearningConfig::probe_concurrency)
    /// tasks at once for its first
    /// [`probe_runs`](crate::learn::LearningConfig::probe_runs) runs, so that
    /// tasks that outgrow the fallback cannot all start together. Off by
    /// default. `respool run` turns it on.
    ///
    /// ```
    /// use respool::{Dim, Pool};
    /// let pool = Pool::builder().memory("1GiB").tasks_report_memory(true).build()?;
    /// pool.task()
    ///     .class("convert")
    ///     .spawn(|ctx| ctx.report_usage(Dim::Memory, 300 << 20))?
    ///     .join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tasks_report_memory(mut self, on: bool) -> Self {
        self.tasks_report_memory = on;
        self
    }

    /// How classified tasks are learned (see [`LearningConfig`](crate::learn::LearningConfig)).
    pub fn learning(mut self, config: crate::learn::LearningConfig) -> Self {
        self.learning = config;
        self
    }

    /// Where learned profiles are loaded from at build time and saved to by
    /// [`Pool::save_profiles`](crate::pool::Pool::save_profiles) and at graceful
    /// shutdown.
    pub fn profile_store(mut self, store: impl crate::store::ProfileStore + 'static) -> Self {
        self.store = Some(std::sync::Arc::new(store));
        self
    }

    /// Prices what each class's measured runs used and held (see
    /// [`crate::cost`]): the snapshot then shows each class's cost and the
    /// cost of its slack ([`ClassAccuracy::cost`](crate::learn::ClassAccuracy::cost)).
    ///
    /// ```
    /// use respool::Pool;
    /// use respool::cost::PriceTable;
    /// let pricing = PriceTable::builtin().pricing("m7i.large")?;
    /// let pool = Pool::builder().workers(1).memory("1GiB").pricing(pricing).build()?;
    /// pool.task()
    ///     .class("resize")
    ///     .memory("64MiB")
    ///     .spawn(|ctx| ctx.report_usage(respool::Dim::Memory, 16 << 20))?
    ///     .join()?;
    /// pool.shutdown(); // counters are exact after shutdown
    /// let snap = pool.snapshot();
    /// let class = &snap.classes[0];
    /// // 64 MiB held, 16 MiB used, for as long as the task ran.
    /// assert_eq!(class.held.memory_byte_ns, 4 * class.used.memory_byte_ns);
    /// let cost = class.cost.expect("priced"); // in nano-USD: a task this short costs ~$0
    /// assert!(cost.slack_nano_usd >= cost.nano_usd);
    /// assert!(snap.to_string().contains("at m7i.large"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pricing(mut self, pricing: crate::cost::Pricing) -> Self {
        self.pricing = Some(pricing);
        self
    }

    /// Called on the worker after every measured task (classified tasks, or
    /// all with [`measure_all`](Builder::measure_all)) with what it was given
    /// and what it used. Keep it short: it runs on the worker.
    pub fn on_task_end(
        mut self,
        f: impl Fn(&crate::measure::TaskReport) + Send + Sync + 'static,
    ) -> Self {
        self.on_task_end = Some(std::sync::Arc::new(f));
        self
    }

    /// Samples the machine (or container) in the background and lowers the
    /// effective memory capacity by what is in use but not reserved by any
    /// task (other processes, tasks that under-declared), and follows a
    /// container memory limit that changes. Default: on when the memory
    /// capacity is detected, off when you set it (an explicit capacity is a
    /// budget of its own, unrelated to what the machine uses), and on with
    /// [`system_monitor`](Builder::system_monitor).
    ///
    /// The platform's monitor starts on its own thread and takes its first
    /// sample 5 ms after `build()` (or after its interval, when shorter):
    /// `build()` waits for neither, and a pool that lives less than that
    /// never reads the monitor's files. A source given with
    /// [`system_monitor`](Builder::system_monitor) samples at once.
    pub fn monitor(mut self, on: bool) -> Self {
        self.monitor = Some(on);
        self
    }

    /// Sampling interval and per-resource settings of the monitor. Checked
    /// by [`build`](Builder::build) when the monitor is on.
    pub fn monitor_config(mut self, config: crate::sys::MonitorConfig) -> Self {
        self.monitor_config = config;
        self
    }

    /// Runs the pool's monitor on `source` instead of this platform's
    /// (procfs and the process's cgroups on Linux, `sysinfo` elsewhere): for
    /// readings that come from elsewhere (a node agent, a script in a test).
    /// Switches the monitor on, whatever the capacity; sampling follows
    /// [`monitor_config`](Builder::monitor_config).
    ///
    /// After each sample the pool takes the memory in use (the
    /// [`Container`](crate::sys::Resource::Container) reading when the source
    /// gives one, else [`Memory`](crate::sys::Resource::Memory); see
    /// [`Snapshot::measured_usage`](crate::sys::Snapshot::measured_usage)),
    /// and what its tasks have not reserved becomes external usage, which
    /// lowers the effective capacity. When that reading fails three times in
    /// a row, the external usage is dropped, so a dead source cannot hold
    /// tasks back forever. When the memory capacity was detected (not set
    /// with [`memory`](Builder::memory) or [`capacity`](Builder::capacity)),
    /// a changed container memory limit
    /// ([`ContainerLimits`](crate::sys::Resource::ContainerLimits)) becomes
    /// the memory capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use respool::sys::{MemoryReading, MonitorConfig, Resource, Snapshot, SysError, SystemMonitor};
    /// use respool::{Dim, Pool};
    ///
    /// /// Memory figures from a node agent (here: 256 MiB of 1 GiB in use).
    /// struct Agent;
    ///
    /// impl SystemMonitor for Agent {
    ///     fn name(&self) -> &'static str {
    ///         "agent"
    ///     }
    ///     fn read(&mut self, r: Resource, now: Instant, s: &mut Snapshot) -> Result<(), SysError> {
    ///         match r {
    ///             Resource::Memory => {
    ///                 let (total, used) = (1 << 30, 256 << 20);
    ///                 s.memory = Some(MemoryReading { at: now, total, available: total - used, used });
    ///                 Ok(())
    ///             }
    ///             // Never asked for again.
    ///             _ => Err(SysError::Unsupported { what: "this reading", why: "not from the agent" }),
    ///         }
    ///     }
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .memory("1GiB")
    ///     .system_monitor(Agent)
    ///     .monitor_config(MonitorConfig::default().with_interval(Duration::from_millis(100)))
    ///     .build()?;
    /// // From the first sample on, tasks share the 768 MiB left.
    /// assert_eq!(pool.capacity().get(Dim::Memory), Some(1 << 30));
    /// # Ok::<(), respool::BuildError>(())
    /// ```
    pub fn system_monitor(mut self, source: impl crate::sys::SystemMonitor) -> Self {
        self.monitor_source = Some(Box::new(source));
        self
    }

    /// Placement domains: CPU domains (NUMA nodes, each with its own workers
    /// and run queue) and GPU domains. Default: the NUMA nodes hwloc finds
    /// (feature `hwloc`; otherwise one domain for the whole machine) and the
    /// GPUs NVML finds (feature `nvml`). At least one CPU domain is needed.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::{Dim, DomainSpec, Pool, Resources, SubmitError};
    /// // Two NUMA nodes of 512 MiB and one GPU (device 0, 16 GiB), given by
    /// // hand: nothing is detected, so this runs on any machine.
    /// let pool = Pool::builder()
    ///     .workers(2)
    ///     .memory("1GiB")
    ///     .capacity(Resources::new().with(Dim::Gpu, 1)?.with(Dim::GpuMemory, 16 << 30)?)
    ///     .domains(vec![
    ///         DomainSpec::numa("node0", vec![], 512 << 20),
    ///         DomainSpec::numa("node1", vec![], 512 << 20),
    ///         DomainSpec::gpu("gpu0", 0, 16 << 30),
    ///     ])
    ///     .build()?;
    /// // A GPU task learns its device from its context.
    /// let h = pool.task().gpus(1).gpu_memory("8GiB").spawn(|ctx| ctx.gpu())?;
    /// assert_eq!(h.join()?, Some(0));
    /// // 768 MiB fits the pool's 1 GiB, but no single node: refused at once.
    /// let err = pool.task().memory("768MiB").spawn(|_| ()).unwrap_err();
    /// assert!(matches!(
    ///     err,
    ///     SubmitError::NeverFits(s) if (s.dim, s.by) == (Dim::Memory, 256 << 20)
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn domains(mut self, domains: Vec<crate::place::DomainSpec>) -> Self {
        self.domains = Some(domains);
        self
    }

    /// How a task is placed on a domain (default best fit by dot-product
    /// alignment of demand and free capacity, as Tetris does). See
    /// [`respool_core::packer::Fit`].
    pub fn placement(mut self, fit: respool_core::packer::Fit) -> Self {
        self.fit = fit;
        self
    }

    /// The lookahead of the wait queue: when the best waiting task does not
    /// fit, start the first of the next `width - 1` that does, but pass over
    /// the best one at most `max_skips` times in a row (default 8 and 16;
    /// `width = 1` is strict head-of-line admission; 0 counts as 1). The
    /// width is at most [`MAX_LOOKAHEAD`](crate::limits::MAX_LOOKAHEAD)
    /// (1024), else [`build`](Builder::build) fails with
    /// [`BuildError::TooLarge`].
    pub fn lookahead(mut self, width: usize, max_skips: u32) -> Self {
        self.lookahead = (width.max(1), max_skips);
        self
    }

    /// How waiting tasks are ordered: weights of priority, waiting time,
    /// deadline slack and resource fit (see [`respool_core::queue::Weights`];
    /// default: one priority level is worth one second of waiting).
    pub fn queue_weights(mut self, weights: respool_core::queue::Weights) -> Self {
        self.weights = weights;
        self
    }

    /// Pin each worker to the CPUs of its domain (default: on when there is
    /// more than one CPU domain).
    pub fn pin_workers(mut self, on: bool) -> Self {
        self.pin_workers = Some(on);
        self
    }

    /// Sends every task's lifecycle events, and the pool's capacity
    /// changes, to `observer` (see [`crate::observe`]): submitted, deferred
    /// (with the dimension that blocks and by how much), admitted, refused,
    /// started, finished, panicked, cancelled, timed out, retried,
    /// reservation grown, profile updated, capacity changed. Without one
    /// (the default) no event is built. With one, every task takes the
    /// described path, so that it has an id.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use respool::observe::{Event, Observer};
    /// use respool::Pool;
    ///
    /// /// Keeps the name of every event.
    /// #[derive(Default)]
    /// struct Log(Mutex<Vec<&'static str>>);
    /// impl Observer for Log {
    ///     fn on_event(&self, e: &Event<'_>) {
    ///         self.0.lock().unwrap().push(e.kind.name());
    ///     }
    /// }
    ///
    /// let log = Arc::new(Log::default());
    /// let pool = Pool::builder().workers(1).memory("1GiB").observer(log.clone()).build()?;
    /// pool.task().memory("1MiB").spawn(|_| ())?.join()?;
    /// pool.shutdown();
    /// assert_eq!(*log.0.lock().unwrap(), ["submitted", "admitted", "started", "finished"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observer(mut self, observer: impl crate::observe::Observer) -> Self {
        self.observer = Some(std::sync::Arc::new(observer));
        self
    }

    /// Admits `dim` as a hard reservation, like memory.
    ///
    /// By default only the incompressible dimensions are hard (memory, GPU
    /// memory, GPUs, user counts: running short of them fails tasks). The
    /// compressible ones (CPU, IOPS, network: running short only slows
    /// tasks down, see [`Dim::is_compressible`]) are soft:
    ///
    /// - a learned amount is the class's expected usage, with no margin
    ///   (memory gets the margin of its own misses);
    /// - a measured CPU figure is at most one core per task (a task runs on
    ///   one worker thread), and runs shorter than
    ///   [`TaskUsage::MIN_RATE_WALL`](crate::measure::TaskUsage::MIN_RATE_WALL) are
    ///   not timed;
    /// - the CPU capacity tasks are admitted against is at least the
    ///   workers' cores (one core per worker): the worker count already
    ///   bounds how many tasks compute at once, so tasks that each use a
    ///   core start as on a plain pool of that many threads, and declared
    ///   or learned CPU still steers placement and ordering. A pool of 4
    ///   workers on 2 cores admits 4000 millicores.
    ///
    /// Made hard, a compressible dimension is admitted against exactly the
    /// capacity set or detected, and learned amounts get the margin of the
    /// class's misses, as memory does. Incompressible dimensions are always
    /// hard.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool::{Dim, Pool};
    /// // Soft (default): 4 workers on 2 cores admit 4 cores of CPU.
    /// let soft = Pool::builder().workers(4).cpu("2").build()?;
    /// assert_eq!(soft.capacity().get(Dim::Cpu), Some(4000));
    /// // Hard: exactly the 2 cores, so two 1-core tasks run at once.
    /// let hard = Pool::builder().workers(4).cpu("2").hard(Dim::Cpu).build()?;
    /// assert_eq!(hard.capacity().get(Dim::Cpu), Some(2000));
    /// # Ok::<(), respool::BuildError>(())
    /// ```
    pub fn hard(mut self, dim: Dim) -> Self {
        self.hard = self.hard.with(dim);
        self
    }

    /// Validates the configuration and starts the workers.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] that says which setting to change; a size outside
    /// its bounds in [`limits`](crate::limits) gives [`BuildError::TooLarge`]
    /// or [`BuildError::TooSmall`], naming the setting, the value and the
    /// limit.
    pub fn build(self) -> Result<Pool, BuildError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.workers == Some(0) {
            return Err(BuildError::ZeroWorkers);
        }
        if self.queue_capacity == 0 {
            return Err(BuildError::ZeroQueueCapacity);
        }
        // Every size that is allocated up front is bounded (crate::limits).
        if let Some(w) = self.workers {
            limits::check_workers(w)?;
        }
        limits::check(
            "queue_capacity",
            self.queue_capacity,
            1,
            limits::MAX_QUEUE_CAPACITY,
        )?;
        if let Some(m) = self.max_waiting {
            limits::check_max_waiting(m)?;
        }
        if let Some(s) = self.stack_size {
            limits::check_stack_size(s)?;
        }
        limits::check("lookahead", self.lookahead.0, 1, limits::MAX_LOOKAHEAD)?;
        // Detection reads a dozen files (about 0.2 ms in a fresh process):
        // skipped when the worker count, CPU and memory are all given, since
        // nothing it finds would be used.
        let machine = (self.workers.is_none()
            || self.capacity.get(Dim::Cpu).is_none()
            || self.capacity.get(Dim::Memory).is_none())
        .then(crate::sys::MachineCapacity::detect_host);
        let detected = match &machine {
            Some(m) => m.default_capacity(&crate::sys::Headroom::DEFAULT),
            None => crate::sys::DefaultCapacity {
                limit: Resources::NONE,
                headroom: Resources::NONE,
                capacity: Resources::NONE,
                workers: 1,
            },
        };
        let workers = self
            .workers
            .unwrap_or(detected.workers.min(limits::MAX_WORKERS))
            .max(1);
        let capacity = self.capacity.or(&detected.limit);
        let headroom = match self.headroom {
            // A zero headroom holds nothing back: it needs no capacity (so
            // setting a dimension's headroom to 0 undoes an earlier one).
            Some(h) => without_zeros(h),
            None => {
                // Headroom only for what was detected, not for what the user set.
                let mut h = Resources::NONE;
                for (dim, amount) in detected.headroom.iter() {
                    if self.capacity.get(dim).is_none() {
                        h = h.with_saturating(dim, amount);
                    }
                }
                h
            }
        };
        // Soft CPU: admitted against at least one core per worker.
        let mut capacity = capacity;
        if !self.hard.contains(Dim::Cpu) {
            if let Some(cpu) = capacity.get(Dim::Cpu) {
                let workers_cores = u64::try_from(workers)
                    .unwrap_or(u64::MAX)
                    .saturating_mul(1000);
                capacity = capacity.with_saturating(Dim::Cpu, cpu.max(workers_cores));
            }
        }
        let memory_detected =
            self.capacity.get(Dim::Memory).is_none() && capacity.get(Dim::Memory).is_some();
        let (domains, gpu_capacity) = match self.domains {
            Some(d) => (d, Resources::NONE),
            None => detect_domains(&capacity),
        };
        // GPUs found (or zero, when none: a GPU request is then refused at once).
        let capacity = capacity.or(&gpu_capacity);
        let cpu_domains = domains.iter().filter(|d| d.kind.has_cpus()).count();
        if cpu_domains == 0 {
            return Err(BuildError::Invalid(
                "domains(...) has no CPU domain: give at least one DomainSpec::numa".into(),
            ));
        }
        let pin_workers = self.pin_workers.unwrap_or(cpu_domains > 1);
        if self.monitor_source.is_some() && self.monitor == Some(false) {
            return Err(BuildError::Invalid(
                "system_monitor(...) gives the monitor a source but monitor(false) switches it \
                 off: remove one of the two"
                    .into(),
            ));
        }
        let monitor = self
            .monitor
            .unwrap_or(memory_detected || self.monitor_source.is_some())
            .then_some(self.monitor_config);
        if let Some(config) = &monitor {
            config
                .validate()
                .map_err(|e| BuildError::Invalid(format!("monitor_config(...): {e}")))?;
        }
        for (dim, amount) in headroom.iter() {
            match capacity.get(dim) {
                None => {
                    return Err(BuildError::Untracked {
                        setting: "headroom",
                        dim,
                    });
                }
                Some(cap) if amount > cap => {
                    return Err(BuildError::HeadroomExceedsCapacity {
                        dim,
                        headroom: amount,
                        capacity: cap,
                    });
                }
                Some(_) => {}
            }
        }
        let after_headroom = capacity.saturating_sub(&headroom);
        // As for the headroom: a zero reserve needs no capacity.
        let mut admission = self.admission;
        admission.critical_reserve = without_zeros(admission.critical_reserve);
        for (dim, amount) in admission.critical_reserve.iter() {
            match after_headroom.get(dim) {
                None => {
                    return Err(BuildError::Untracked {
                        setting: "critical reserve",
                        dim,
                    });
                }
                Some(cap) if amount >= cap && amount > 0 => {
                    return Err(BuildError::CriticalReserveTooLarge { dim });
                }
                Some(_) => {}
            }
        }
        let mut admission = self.admission;
        // Without a bound of the user's, the core never refuses a full queue
        // (`waiting >= usize::MAX` never holds): the runtime applies
        // backpressure instead.
        admission.max_waiting = self.max_waiting.unwrap_or(usize::MAX);
        Pool::start(Config {
            workers,
            capacity,
            headroom,
            admission,
            backpressure: match self.max_waiting {
                Some(_) => None,
                None => Some(Builder::BACKPRESSURE),
            },
            queue_capacity: self.queue_capacity,
            thread_name: self.thread_name,
            stack_size: self.stack_size,
            measure_all: self.measure_all,
            tasks_report_memory: self.tasks_report_memory,
            learning: self.learning,
            store: self.store,
            pricing: self.pricing,
            on_task_end: self.on_task_end,
            monitor,
            monitor_source: self
                .monitor_source
                .map(|s| std::sync::Arc::new(std::sync::Mutex::new(Some(s)))),
            follow_container_limit: memory_detected,
            // The monitor reuses the cgroup layout detection found.
            cgroup: machine.map(|m| m.cgroup),
            domains,
            fit: self.fit,
            lookahead: self.lookahead,
            weights: self.weights,
            pin_workers,
            hard: self.hard,
            observer: self.observer,
        })
    }
}

/// `r` without the dimensions set to zero.
fn without_zeros(mut r: Resources) -> Resources {
    let zeros: Vec<Dim> = r.iter().filter(|&(_, a)| a == 0).map(|(d, _)| d).collect();
    for dim in zeros {
        r.clear(dim);
    }
    r
}

/// The placement domains of this machine: NUMA nodes (hwloc) or the machine,
/// and GPUs (NVML); with the GPU capacity to add to the pool's.
fn detect_domains(capacity: &Resources) -> (Vec<crate::place::DomainSpec>, Resources) {
    use crate::sys::{DomainKind as Kind, GpuInventory, Topology};
    let gpus = GpuInventory::detect();
    let topology = Topology::detect().with_gpus(&gpus);
    if let Some(reason) = &topology.reason {
        tracing::debug!(target: "respool::sys", %reason, "topology");
    }
    let mut out = Vec::new();
    let numa: Vec<_> = topology.domains_of(Kind::Numa).collect();
    if numa.len() > 1 {
        for d in numa {
            let memory = d.memory_bytes.unwrap_or(0);
            out.push(crate::place::DomainSpec::numa(
                d.name.clone(),
                d.cpus.clone(),
                memory,
            ));
        }
    } else {
        let cpus = crate::sys::current_thread_cpus().unwrap_or_default();
        out.push(crate::place::DomainSpec::machine(
            cpus,
            capacity.get(Dim::Memory).unwrap_or(0),
        ));
    }
    for (i, g) in topology.domains_of(Kind::Gpu).enumerate() {
        let device = g
            .os_index
            .and_then(|x| u32::try_from(x).ok())
            .unwrap_or(u32::try_from(i).unwrap_or(0));
        out.push(crate::place::DomainSpec::gpu(
            g.name.clone(),
            device,
            g.memory_bytes.unwrap_or(0),
        ));
    }
    (out, gpus.capacity())
}

// The pool's constructors live with the builder, so that the pool facade
// (`crate::pool`) does not depend on the module that builds it.
impl crate::pool::Pool {
    /// A builder with defaults detected from the machine.
    pub fn builder() -> crate::builder::Builder {
        crate::builder::Builder::new()
    }

    /// A pool with every default: one worker per available core (container
    /// aware), capacity from the machine or container minus a headroom.
    ///
    /// # Errors
    ///
    /// [`BuildError::Spawn`] if the worker threads cannot be started.
    pub fn new() -> Result<Pool, BuildError> {
        crate::builder::Builder::new().build()
    }
}
