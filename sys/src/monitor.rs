//! The system monitor: readings, their cache, and the sampling thread.
//!
//! # Pieces
//!
//! - [`SystemMonitor`]: a source of readings, one [`Resource`] at a time
//!   ([`ProcfsMonitor`] on Linux, a `sysinfo`-based one elsewhere, a mock in
//!   tests; [`platform_monitor`] is this platform's).
//! - [`Sampler`]: drives a source. Each resource has a time-to-live (by
//!   default: refreshed on every sample, container limits every 10 s) and its
//!   own exponential backoff after failed reads (interval x 2, x 4, ... capped
//!   at [`MonitorConfig::max_backoff`]); a resource the platform does not have
//!   is marked [`ResourceStatus::Unsupported`] and never read again. The
//!   sampler takes the current time as an argument, so it is tested without
//!   sleeping.
//! - [`Monitor`]: one background thread that runs a sampler at a fixed
//!   interval, publishes each [`Snapshot`] (a plain `Copy` value behind a
//!   mutex held only for the copy) and calls the subscribers.
//!
//! # The default interval: 1 s
//!
//! The pool acts on a sample within one interval, and 1 s is well inside the
//! time memory takes to run away in the cases respool is for (links and
//! builds that grow over seconds; Ray's memory monitor polls every 250 ms and
//! acts at 95%). Shorter intervals buy little: `/proc/stat` counts in ticks of
//! 10 ms, so utilisation over 1 s already has 1% resolution per CPU, and the
//! kernel's PSI averages update every 2 s. One sample reads about ten small
//! files into a reused buffer; `examples/monitor_overhead.rs` measures the
//! cost (a few tens of microseconds per sample, far below the budget of 0.1%
//! of one CPU, which at 1 s allows 1 ms per sample).
//!
//! # Allocation
//!
//! After the first sample, sampling does not allocate on the success path:
//! sources read into a buffer allocated once, readings are `Copy`, and the
//! subscriber list is only changed by [`Monitor::subscribe`]. Errors allocate
//! (they carry the path). `tests/alloc.rs` checks this with a counting
//! global allocator.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use respool_core::{Dim, Ppm, Resources};

use crate::{SysError, SysRoot};

// The raw counters that the readings carry (`CpuReading::times`,
// `PressureReading::cpu`, ...): a `SystemMonitor` of one's own builds them,
// and whoever reads a snapshot reads them (the PSI averages above all). They
// are defined beside their procfs parsers, which stay private.
pub use crate::procfs::{CpuTimes, DiskTotals, NetTotals, Psi, PsiLine};
// The sources: procfs on Linux, sysinfo elsewhere.
#[cfg(not(target_os = "linux"))]
pub use crate::portable::SysinfoMonitor;
pub use crate::procfs_monitor::ProcfsMonitor;

/// What a [`SystemMonitor`] can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Machine CPU utilisation (`/proc/stat`).
    Cpu,
    /// Machine memory (`/proc/meminfo`).
    Memory,
    /// Pressure stall information (`/proc/pressure/*`).
    Pressure,
    /// Disk I/O (`/proc/diskstats`).
    Disk,
    /// Network I/O (`/proc/net/dev`).
    Network,
    /// Usage of this process's cgroup (memory, peak, CPU time, memory pressure).
    Container,
    /// Limits of this process's cgroup, re-read so that a resized container
    /// is noticed.
    ContainerLimits,
}

impl Resource {
    /// Number of resources.
    pub const COUNT: usize = 7;
    /// Every resource, in index order.
    pub const ALL: [Resource; Resource::COUNT] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::Pressure,
        Resource::Disk,
        Resource::Network,
        Resource::Container,
        Resource::ContainerLimits,
    ];

    /// The resource's index in `0..Resource::COUNT`.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A stable lower-case name (`"cpu"`, `"container_limits"`, ...).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Pressure => "pressure",
            Resource::Disk => "disk",
            Resource::Network => "network",
            Resource::Container => "container",
            Resource::ContainerLimits => "container_limits",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Machine CPU utilisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuReading {
    /// When it was read.
    pub at: Instant,
    /// CPUs online.
    pub cpus: u32,
    /// CPU busy since the previous reading, in millicores (at most
    /// `cpus * 1000`); `None` on the first reading.
    pub busy_millicores: Option<u64>,
    /// `busy_millicores` as a share of all CPUs.
    pub utilisation: Option<Ppm>,
    /// The raw counters.
    pub times: CpuTimes,
}

/// Machine memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReading {
    /// When it was read.
    pub at: Instant,
    /// Usable RAM, bytes.
    pub total: u64,
    /// Available for new work without swapping, bytes.
    pub available: u64,
    /// `total - available`, bytes.
    pub used: u64,
}

/// Pressure stall information; `None` for a file the kernel does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PressureReading {
    /// When it was read.
    pub at: Instant,
    /// `/proc/pressure/cpu`.
    pub cpu: Option<Psi>,
    /// `/proc/pressure/memory`.
    pub memory: Option<Psi>,
    /// `/proc/pressure/io`.
    pub io: Option<Psi>,
}

/// Disk I/O over whole disks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskReading {
    /// When it was read.
    pub at: Instant,
    /// The raw counters.
    pub totals: DiskTotals,
    /// Reads plus writes per second since the previous reading.
    pub ops_per_sec: Option<u64>,
    /// Bytes read per second since the previous reading.
    pub read_bytes_per_sec: Option<u64>,
    /// Bytes written per second since the previous reading.
    pub write_bytes_per_sec: Option<u64>,
}

/// Network I/O over every interface but `lo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkReading {
    /// When it was read.
    pub at: Instant,
    /// The raw counters.
    pub totals: NetTotals,
    /// Bytes received per second since the previous reading.
    pub rx_bytes_per_sec: Option<u64>,
    /// Bytes sent per second since the previous reading.
    pub tx_bytes_per_sec: Option<u64>,
    /// Packets received per second since the previous reading.
    pub rx_packets_per_sec: Option<u64>,
    /// Packets sent per second since the previous reading.
    pub tx_packets_per_sec: Option<u64>,
}

/// Usage of this process's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContainerReading {
    /// When it was read.
    pub at: Instant,
    /// Memory charged to the group (`memory.current`,
    /// `memory.usage_in_bytes`), bytes; includes page cache.
    pub memory_current: Option<u64>,
    /// `memory_current` minus inactive file cache (what the kubelet calls the
    /// working set and evicts on), bytes.
    pub memory_working_set: Option<u64>,
    /// The most memory ever charged to the group, bytes.
    pub memory_peak: Option<u64>,
    /// CPU time used by the group since it was created, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// CPU used by the group since the previous reading, millicores.
    pub cpu_busy_millicores: Option<u64>,
    /// The group's memory pressure (cgroup v2 `memory.pressure`).
    pub memory_pressure: Option<Psi>,
}

/// Limits of this process's cgroup (tightest over all ancestors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContainerLimitsReading {
    /// When it was read.
    pub at: Instant,
    /// CPU limit in millicores; `None` when unlimited.
    pub cpu_millicores: Option<u64>,
    /// Memory limit in bytes; `None` when unlimited.
    pub memory_bytes: Option<u64>,
}

/// How reading a resource went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResourceStatus {
    /// Not read yet.
    #[default]
    Pending,
    /// The last read succeeded.
    Ok,
    /// The last `consecutive` reads failed; the reading (if any) is stale and
    /// reads are retried with exponential backoff.
    Failing {
        /// Number of failed reads in a row.
        consecutive: u32,
    },
    /// The platform or system does not have this reading; never retried.
    Unsupported,
    /// Switched off in the [`MonitorConfig`].
    Disabled,
}

/// Everything the monitor knows at one instant. A plain `Copy` value: a
/// reading that failed keeps its last value (see its `at` and
/// [`Snapshot::status`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Number of samples taken so far (0: none yet).
    pub seq: u64,
    /// When the last sample was taken.
    pub taken: Option<Instant>,
    /// Machine CPU.
    pub cpu: Option<CpuReading>,
    /// Machine memory.
    pub memory: Option<MemoryReading>,
    /// Pressure stall information.
    pub pressure: Option<PressureReading>,
    /// Disk I/O.
    pub disk: Option<DiskReading>,
    /// Network I/O.
    pub network: Option<NetworkReading>,
    /// cgroup usage.
    pub container: Option<ContainerReading>,
    /// cgroup limits.
    pub container_limits: Option<ContainerLimitsReading>,
    /// Status per resource, indexed by [`Resource::index`].
    pub status: [ResourceStatus; Resource::COUNT],
}

impl Snapshot {
    /// The status of `resource`.
    #[must_use]
    pub fn status(&self, resource: Resource) -> ResourceStatus {
        self.status
            .get(resource.index())
            .copied()
            .unwrap_or_default()
    }

    /// What is measurably in use now, as a resource vector the pool can
    /// compare with its reservations: CPU in millicores (the cgroup's when
    /// known, else the machine's), memory in bytes (the cgroup's working set,
    /// else its usage, else the machine's `total - available`), IOPS (disk
    /// reads plus writes per second) and network (bytes per second, both
    /// directions). Dimensions without a reading are unset.
    ///
    /// The pool's external usage is this minus what its own reservations
    /// account for.
    #[must_use]
    pub fn measured_usage(&self) -> Resources {
        let mut r = Resources::NONE;
        let cpu = self
            .container
            .and_then(|c| c.cpu_busy_millicores)
            .or_else(|| self.cpu.and_then(|c| c.busy_millicores));
        let memory = self
            .container
            .and_then(|c| c.memory_working_set.or(c.memory_current))
            .or_else(|| self.memory.map(|m| m.used));
        let iops = self.disk.and_then(|d| d.ops_per_sec);
        let net = self
            .network
            .and_then(|n| Some(n.rx_bytes_per_sec?.saturating_add(n.tx_bytes_per_sec?)));
        for (dim, v) in [
            (Dim::Cpu, cpu),
            (Dim::Memory, memory),
            (Dim::Iops, iops),
            (Dim::Network, net),
        ] {
            if let Some(v) = v {
                r = r.with_saturating(dim, v);
            }
        }
        r
    }
}

/// A source of readings.
///
/// Implementations write the reading of `resource` into `snapshot` (and
/// nothing else). They should not allocate on the success path: they are
/// called from the monitor thread once per interval.
pub trait SystemMonitor: Send + 'static {
    /// A short name for explanations (`"procfs"`, `"sysinfo"`).
    fn name(&self) -> &'static str;

    /// Reads `resource` at time `now` into `snapshot`.
    ///
    /// # Errors
    ///
    /// [`SysError::Unsupported`] when the reading does not exist here (it is
    /// then never asked for again); any other error is retried with backoff.
    fn read(
        &mut self,
        resource: Resource,
        now: Instant,
        snapshot: &mut Snapshot,
    ) -> Result<(), SysError>;
}

impl SystemMonitor for Box<dyn SystemMonitor> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn read(
        &mut self,
        resource: Resource,
        now: Instant,
        snapshot: &mut Snapshot,
    ) -> Result<(), SysError> {
        (**self).read(resource, now, snapshot)
    }
}

/// This platform's default monitor source: a [`ProcfsMonitor`] over the host
/// on Linux, a `SysinfoMonitor` elsewhere. [`Monitor::start`] samples it; a
/// pool samples it unless given another source.
#[must_use]
pub fn platform_monitor() -> Box<dyn SystemMonitor> {
    #[cfg(target_os = "linux")]
    {
        Box::new(ProcfsMonitor::new(&SysRoot::host()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Box::new(SysinfoMonitor::new())
    }
}

/// Sampling settings.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use respool_sys::monitor::{MonitorConfig, Resource};
/// let config = MonitorConfig::default()
///     .with_interval(Duration::from_millis(250))
///     .with_ttl(Resource::Disk, Duration::from_secs(5))
///     .without(Resource::Network);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Time between samples (default 1 s; see the module documentation).
    pub interval: Duration,
    /// Per resource: how long a reading stays fresh; `None` means "refresh on
    /// every sample". A reading is refreshed on the first sample at which its
    /// age is at least `ttl - interval / 2`.
    pub ttl: [Option<Duration>; Resource::COUNT],
    /// Per resource: whether it is read at all.
    pub enabled: [bool; Resource::COUNT],
    /// The longest wait between retries of a failing read (default 60 s).
    pub max_backoff: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        let mut ttl = [None; Resource::COUNT];
        if let Some(t) = ttl.get_mut(Resource::ContainerLimits.index()) {
            *t = Some(Duration::from_secs(10));
        }
        MonitorConfig {
            interval: MonitorConfig::DEFAULT_INTERVAL,
            ttl,
            enabled: [true; Resource::COUNT],
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl MonitorConfig {
    /// The default sampling interval: 1 s.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
    /// The shortest interval accepted: 1 ms.
    pub const MIN_INTERVAL: Duration = Duration::from_millis(1);
    /// The longest time-to-live or backoff accepted: one day.
    pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

    /// Sets the sampling interval.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> MonitorConfig {
        self.interval = interval;
        self
    }

    /// Sets how long readings of `resource` stay fresh.
    #[must_use]
    pub fn with_ttl(mut self, resource: Resource, ttl: Duration) -> MonitorConfig {
        if let Some(t) = self.ttl.get_mut(resource.index()) {
            *t = Some(ttl);
        }
        self
    }

    /// Switches `resource` off.
    #[must_use]
    pub fn without(mut self, resource: Resource) -> MonitorConfig {
        if let Some(e) = self.enabled.get_mut(resource.index()) {
            *e = false;
        }
        self
    }

    /// Reads only the resources in `resources`.
    #[must_use]
    pub fn only(mut self, resources: &[Resource]) -> MonitorConfig {
        for r in Resource::ALL {
            if let Some(e) = self.enabled.get_mut(r.index()) {
                *e = resources.contains(&r);
            }
        }
        self
    }

    /// Sets the longest wait between retries of a failing read.
    #[must_use]
    pub fn with_max_backoff(mut self, max_backoff: Duration) -> MonitorConfig {
        self.max_backoff = max_backoff;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`SysError::InvalidConfig`] when the interval is under 1 ms or over one
    /// hour, the maximum backoff is shorter than the interval, or a backoff or
    /// time-to-live is over one day.
    pub fn validate(&self) -> Result<(), SysError> {
        if self.interval < MonitorConfig::MIN_INTERVAL || self.interval > Duration::from_secs(3600)
        {
            return Err(SysError::InvalidConfig {
                setting: "interval",
                why: "must be between 1 ms and 1 hour",
            });
        }
        if self.max_backoff < self.interval || self.max_backoff > MonitorConfig::MAX_WAIT {
            return Err(SysError::InvalidConfig {
                setting: "max_backoff",
                why: "must be at least the interval and at most one day",
            });
        }
        if self
            .ttl
            .iter()
            .flatten()
            .any(|t| *t > MonitorConfig::MAX_WAIT)
        {
            return Err(SysError::InvalidConfig {
                setting: "ttl",
                why: "must be at most one day (switch a reading off with `without`)",
            });
        }
        Ok(())
    }
}

/// Which resources a [`Sampler::tick`] read and which failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    refreshed: u8,
    failed: u8,
    errors_changed: bool,
}

impl Tick {
    /// Whether `resource` was read successfully in this tick.
    #[must_use]
    pub fn refreshed(&self, resource: Resource) -> bool {
        self.refreshed & resource.bit() != 0
    }

    /// Whether reading `resource` failed in this tick.
    #[must_use]
    pub fn failed(&self, resource: Resource) -> bool {
        self.failed & resource.bit() != 0
    }
}

/// Per-resource scheduling state.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The earliest time the resource is read again; `None`: next tick.
    next_due: Option<Instant>,
    failures: u32,
}

/// Drives a [`SystemMonitor`]: time-to-live, backoff, status. Used by
/// [`Monitor`]'s thread, and directly where the caller has its own loop.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use respool_sys::SysError;
/// use respool_sys::monitor::{MonitorConfig, Resource, Sampler, Snapshot, SystemMonitor};
///
/// struct Fixed;
/// impl SystemMonitor for Fixed {
///     fn name(&self) -> &'static str { "fixed" }
///     fn read(&mut self, r: Resource, _: Instant, _: &mut Snapshot) -> Result<(), SysError> {
///         match r {
///             Resource::Cpu => Ok(()),
///             _ => Err(SysError::Unsupported { what: "this", why: "a doc example" }),
///         }
///     }
/// }
///
/// let mut sampler = Sampler::new(Fixed, MonitorConfig::default())?;
/// let tick = sampler.tick(Instant::now());
/// assert!(tick.refreshed(Resource::Cpu));
/// assert_eq!(sampler.snapshot().seq, 1);
/// # Ok::<(), SysError>(())
/// ```
pub struct Sampler<M> {
    source: M,
    config: MonitorConfig,
    slots: [Slot; Resource::COUNT],
    errors: [Option<SysError>; Resource::COUNT],
    snapshot: Snapshot,
    last_tick: Option<Instant>,
}

impl<M: SystemMonitor> Sampler<M> {
    /// A sampler over `source`.
    ///
    /// # Errors
    ///
    /// [`SysError::InvalidConfig`] when `config` does not
    /// [validate](MonitorConfig::validate).
    pub fn new(source: M, config: MonitorConfig) -> Result<Sampler<M>, SysError> {
        config.validate()?;
        let snapshot = initial_snapshot(&config);
        Ok(Sampler {
            source,
            config,
            slots: [Slot::default(); Resource::COUNT],
            errors: Default::default(),
            snapshot,
            last_tick: None,
        })
    }

    /// Takes one sample at time `now`: reads every enabled resource whose
    /// reading is due, and updates the snapshot.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let mut tick = Tick::default();
        let slack = self.config.interval / 2;
        for r in Resource::ALL {
            let i = r.index();
            let (Some(slot), Some(status), Some(error)) = (
                self.slots.get_mut(i),
                self.snapshot.status.get(i).copied(),
                self.errors.get_mut(i),
            ) else {
                continue;
            };
            if matches!(
                status,
                ResourceStatus::Disabled | ResourceStatus::Unsupported
            ) {
                continue;
            }
            if slot.next_due.is_some_and(|due| now + slack < due) {
                continue;
            }
            let result = self.source.read(r, now, &mut self.snapshot);
            let new_status = match result {
                Ok(()) => {
                    tick.refreshed |= r.bit();
                    slot.failures = 0;
                    slot.next_due = self.config.ttl.get(i).copied().flatten().map(|t| now + t);
                    if error.take().is_some() {
                        tick.errors_changed = true;
                    }
                    ResourceStatus::Ok
                }
                Err(e) => {
                    tick.failed |= r.bit();
                    tick.errors_changed = true;
                    let status = if e.is_unsupported() {
                        ResourceStatus::Unsupported
                    } else {
                        slot.failures = slot.failures.saturating_add(1);
                        let factor = 1u32 << slot.failures.min(20);
                        let wait = self
                            .config
                            .interval
                            .saturating_mul(factor)
                            .min(self.config.max_backoff);
                        slot.next_due = Some(now + wait);
                        ResourceStatus::Failing {
                            consecutive: slot.failures,
                        }
                    };
                    *error = Some(e);
                    status
                }
            };
            if let Some(s) = self.snapshot.status.get_mut(i) {
                *s = new_status;
            }
        }
        self.snapshot.seq = self.snapshot.seq.saturating_add(1);
        self.snapshot.taken = Some(now);
        self.last_tick = Some(now);
        tick
    }

    /// The latest snapshot.
    #[must_use]
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The error of the last failed read of `resource`, while it is failing
    /// or unsupported.
    #[must_use]
    pub fn last_error(&self, resource: Resource) -> Option<&SysError> {
        self.errors.get(resource.index()).and_then(Option::as_ref)
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The source.
    #[must_use]
    pub fn source(&self) -> &M {
        &self.source
    }

    /// When the next tick should run: one interval after the last tick, or
    /// later when every active resource waits longer (time-to-live or
    /// backoff); `None` when no resource is active any more.
    #[must_use]
    pub fn next_wake(&self) -> Option<Instant> {
        let base = self.last_tick? + self.config.interval;
        let slack = self.config.interval / 2;
        let mut earliest: Option<Instant> = None;
        for r in Resource::ALL {
            let i = r.index();
            let status = self.snapshot.status.get(i).copied().unwrap_or_default();
            if matches!(
                status,
                ResourceStatus::Disabled | ResourceStatus::Unsupported
            ) {
                continue;
            }
            let due = match self.slots.get(i).and_then(|s| s.next_due) {
                None => base,
                Some(d) => d.checked_sub(slack).unwrap_or(d).max(base),
            };
            earliest = Some(earliest.map_or(due, |e| e.min(due)));
        }
        earliest
    }
}

/// Identifies a subscription, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

/// Counters about the monitor itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// Samples taken.
    pub samples: u64,
    /// CPU time used by the sampling thread so far (Linux only:
    /// `CLOCK_THREAD_CPUTIME_ID`), including the subscribers' callbacks.
    pub sampler_cpu: Option<Duration>,
    /// The sampling thread's kernel thread id (Linux only), for
    /// `/proc/self/task/<tid>/stat`.
    pub sampler_tid: Option<i32>,
    /// Subscribers removed because their callback panicked.
    pub callback_panics: u64,
}

type Callback = Box<dyn FnMut(&Snapshot) + Send>;

struct Subscribers {
    next_id: u64,
    list: Vec<(u64, Callback)>,
}

struct Shared {
    latest: Mutex<Snapshot>,
    new_sample: Condvar,
    errors: Mutex<Vec<(Resource, SysError)>>,
    subscribers: Mutex<Subscribers>,
    stop: AtomicBool,
    samples: AtomicU64,
    cpu_ns: AtomicU64,
    tid: AtomicI32,
    callback_panics: AtomicU64,
}

/// Locks a mutex, ignoring poisoning: a panicking subscriber is caught and
/// removed, and no guarded state is left half-updated across a panic point.
/// (respool has the same two-line helper for its own locks; the crates share
/// no private code, and it is not worth a public item.)
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A background thread sampling a [`SystemMonitor`] at a fixed interval.
///
/// Dropping the monitor (or [`Monitor::stop`]) stops the thread and joins it;
/// the thread sleeps with `park_timeout` and is woken at once, so stopping
/// takes no longer than one sample.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use respool_sys::monitor::{Monitor, MonitorConfig};
///
/// let monitor = Monitor::start(MonitorConfig::default().with_interval(Duration::from_millis(20)))?;
/// let id = monitor.subscribe(|snapshot| {
///     // Runs on the sampling thread after each sample: keep it short.
///     let _usage = snapshot.measured_usage();
/// });
/// let snapshot = monitor.wait_for_sample(0, Duration::from_secs(5)).expect("a sample");
/// assert!(snapshot.seq >= 1);
/// assert!(monitor.unsubscribe(id));
/// monitor.stop();
/// # Ok::<(), respool_sys::SysError>(())
/// ```
pub struct Monitor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    interval: Duration,
    source_name: &'static str,
}

impl Monitor {
    /// Starts a monitor over this platform's default source: procfs and the
    /// process's cgroups on Linux, `sysinfo` elsewhere.
    ///
    /// # Errors
    ///
    /// [`SysError::InvalidConfig`] for a bad `config`, [`SysError::Spawn`]
    /// when the thread cannot be started.
    pub fn start(config: MonitorConfig) -> Result<Monitor, SysError> {
        Monitor::start_named(config, "respool-monitor".to_owned())
    }

    /// Starts a monitor over `source`.
    ///
    /// # Errors
    ///
    /// As [`Monitor::start`].
    pub fn with_source<M: SystemMonitor>(
        source: M,
        config: MonitorConfig,
    ) -> Result<Monitor, SysError> {
        Monitor::with_source_named(source, config, "respool-monitor".to_owned())
    }

    /// [`Monitor::start`] with a name for the sampling thread (a pool names
    /// it after its workers: `<thread_name>-monitor`).
    ///
    /// # Errors
    ///
    /// As [`Monitor::start`].
    pub fn start_named(config: MonitorConfig, thread_name: String) -> Result<Monitor, SysError> {
        Monitor::spawn_source(platform_monitor, config, thread_name, Duration::ZERO)
    }

    /// [`Monitor::start_named`] for a pool's `build()`: returns once the
    /// thread is started, and the thread waits `first_sample_after` (or
    /// until stopped) before it opens its source and takes the first
    /// sample, so that a pool that lives less than that never reads a file
    /// and its `build()` and shutdown do not wait for the reads. A `layout`
    /// already discovered (by [`MachineCapacity`](crate::container::MachineCapacity))
    /// is used instead of reading and parsing the cgroup files again.
    ///
    /// # Errors
    ///
    /// As [`Monitor::start`].
    pub fn start_deferred(
        config: MonitorConfig,
        thread_name: String,
        layout: Option<crate::cgroup::CgroupLayout>,
        first_sample_after: Duration,
    ) -> Result<Monitor, SysError> {
        #[cfg(target_os = "linux")]
        let make = move || -> Box<dyn SystemMonitor> {
            match layout {
                Some(l) => Box::new(crate::procfs_monitor::ProcfsMonitor::with_layout(
                    &SysRoot::host(),
                    &l,
                )),
                None => platform_monitor(),
            }
        };
        #[cfg(not(target_os = "linux"))]
        let make = move || {
            let _ = layout;
            platform_monitor()
        };
        Monitor::spawn_source(make, config, thread_name, first_sample_after)
    }

    /// Starts the sampling thread, which waits `delay` (or until stopped),
    /// makes its source with `make` and then samples: the caller does not
    /// wait for the source's files to be opened nor for the first sample.
    fn spawn_source<M: SystemMonitor, F: FnOnce() -> M + Send + 'static>(
        make: F,
        config: MonitorConfig,
        thread_name: String,
        delay: Duration,
    ) -> Result<Monitor, SysError> {
        config.validate()?;
        let shared = Arc::new(Shared::new(initial_snapshot(&config)));
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                // `stop` unparks this thread; a spurious wake-up waits again.
                let start = Instant::now();
                while !thread_shared.stop.load(Ordering::Acquire) {
                    match delay.checked_sub(start.elapsed()) {
                        Some(left) if !left.is_zero() => thread::park_timeout(left),
                        _ => break,
                    }
                }
                // Stopped before it sampled: nothing to read.
                if thread_shared.stop.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(sampler) = Sampler::new(make(), config) {
                    run(sampler, &thread_shared);
                }
            })
            .map_err(|e| SysError::Spawn { kind: e.kind() })?;
        Ok(Monitor {
            shared,
            thread: Some(thread),
            interval: config.interval,
            source_name: PLATFORM_SOURCE,
        })
    }

    /// [`Monitor::with_source`] with a name for the sampling thread.
    ///
    /// # Errors
    ///
    /// As [`Monitor::start`].
    pub fn with_source_named<M: SystemMonitor>(
        source: M,
        config: MonitorConfig,
        thread_name: String,
    ) -> Result<Monitor, SysError> {
        let source_name = source.name();
        let sampler = Sampler::new(source, config)?;
        let shared = Arc::new(Shared::new(*sampler.snapshot()));
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(thread_name)
            .spawn(move || run(sampler, &thread_shared))
            .map_err(|e| SysError::Spawn { kind: e.kind() })?;
        Ok(Monitor {
            shared,
            thread: Some(thread),
            interval: config.interval,
            source_name,
        })
    }

    /// The latest snapshot (a copy; the sampler holds the lock only to copy
    /// a new one in).
    #[must_use]
    pub fn latest(&self) -> Snapshot {
        *lock(&self.shared.latest)
    }

    /// Waits until a snapshot with `seq > after_seq` exists and returns it;
    /// `None` after `timeout` or when the monitor has stopped.
    #[must_use]
    pub fn wait_for_sample(&self, after_seq: u64, timeout: Duration) -> Option<Snapshot> {
        // A timeout too large for an `Instant` waits without a deadline.
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = lock(&self.shared.latest);
        loop {
            if guard.seq > after_seq {
                return Some(*guard);
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return None;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return None,
                },
                None => Duration::from_secs(3600),
            };
            guard = self
                .shared
                .new_sample
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Calls `callback` with each new snapshot, on the sampling thread, right
    /// after the sample. This is how the pool follows measured usage within
    /// one interval.
    ///
    /// The callback must be short and must not call [`Monitor::subscribe`]
    /// or [`Monitor::unsubscribe`] on the same monitor (that would deadlock).
    /// A callback that panics is removed (see
    /// [`MonitorStats::callback_panics`]).
    pub fn subscribe(&self, callback: impl FnMut(&Snapshot) + Send + 'static) -> SubscriptionId {
        let mut subs = lock(&self.shared.subscribers);
        let id = subs.next_id;
        subs.next_id = subs.next_id.wrapping_add(1);
        subs.list.push((id, Box::new(callback)));
        SubscriptionId(id)
    }

    /// Cancels a subscription; `false` when it was not (or no longer) there.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut subs = lock(&self.shared.subscribers);
        let before = subs.list.len();
        subs.list.retain(|(i, _)| *i != id.0);
        subs.list.len() != before
    }

    /// The last error of every resource that is failing or unsupported.
    #[must_use]
    pub fn errors(&self) -> Vec<(Resource, SysError)> {
        lock(&self.shared.errors).clone()
    }

    /// Counters about the monitor itself.
    #[must_use]
    pub fn stats(&self) -> MonitorStats {
        let cpu = self.shared.cpu_ns.load(Ordering::Relaxed);
        let tid = self.shared.tid.load(Ordering::Relaxed);
        MonitorStats {
            samples: self.shared.samples.load(Ordering::Relaxed),
            sampler_cpu: (cpu != u64::MAX).then(|| Duration::from_nanos(cpu)),
            sampler_tid: (tid != 0).then_some(tid),
            callback_panics: self.shared.callback_panics.load(Ordering::Relaxed),
        }
    }

    /// The sampling interval.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The name of the source (`"procfs"`, `"sysinfo"`).
    #[must_use]
    pub fn source_name(&self) -> &'static str {
        self.source_name
    }

    /// Stops the thread and waits for it to finish.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // A panic on the sampling thread has already been reported by the
            // panic hook; there is nothing more to do with it here.
            let _ = t.join();
        }
        self.shared.new_sample.notify_all();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("source", &self.source_name)
            .field("interval", &self.interval)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The state of a monitor whose latest snapshot is `latest`.
    fn new(latest: Snapshot) -> Shared {
        Shared {
            latest: Mutex::new(latest),
            new_sample: Condvar::new(),
            errors: Mutex::new(Vec::new()),
            subscribers: Mutex::new(Subscribers {
                next_id: 0,
                list: Vec::new(),
            }),
            stop: AtomicBool::new(false),
            samples: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(u64::MAX),
            tid: AtomicI32::new(0),
            callback_panics: AtomicU64::new(0),
        }
    }
}

/// The name of [`platform_monitor`]'s source.
const PLATFORM_SOURCE: &str = if cfg!(target_os = "linux") {
    "procfs"
} else {
    "sysinfo"
};

/// The snapshot before the first sample: the resources `config` disables
/// marked so, the others not read yet.
fn initial_snapshot(config: &MonitorConfig) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for r in Resource::ALL {
        if !config.enabled.get(r.index()).copied().unwrap_or(false) {
            if let Some(s) = snapshot.status.get_mut(r.index()) {
                *s = ResourceStatus::Disabled;
            }
        }
    }
    snapshot
}

/// The sampling thread.
fn run<M: SystemMonitor>(mut sampler: Sampler<M>, shared: &Shared) {
    if let Some(tid) = crate::current_tid() {
        shared.tid.store(tid, Ordering::Relaxed);
    }
    while !shared.stop.load(Ordering::Acquire) {
        let tick = sampler.tick(Instant::now());
        let snapshot = *sampler.snapshot();
        *lock(&shared.latest) = snapshot;
        if tick.errors_changed {
            let errors = Resource::ALL
                .iter()
                .filter_map(|&r| sampler.last_error(r).map(|e| (r, e.clone())))
                .collect();
            *lock(&shared.errors) = errors;
        }
        shared.samples.fetch_add(1, Ordering::Relaxed);
        shared.new_sample.notify_all();
        {
            let mut subs = lock(&shared.subscribers);
            subs.list.retain_mut(|(_, callback)| {
                let ok = catch_unwind(AssertUnwindSafe(|| callback(&snapshot))).is_ok();
                if !ok {
                    shared.callback_panics.fetch_add(1, Ordering::Relaxed);
                }
                ok
            });
        }
        if let Some(cpu) = crate::thread_cpu_time() {
            let ns = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX - 1);
            shared.cpu_ns.store(ns, Ordering::Relaxed);
        }
        let wake = sampler.next_wake();
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            match wake {
                Some(w) if w > now => thread::park_timeout(w - now),
                Some(_) => break,
                None => thread::park(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mock source: CPU always works, memory fails `fail_memory` times then
    /// works, pressure is unsupported; counts reads.
    struct Mock {
        reads: Arc<Mutex<Vec<(Resource, Instant)>>>,
        fail_memory: u32,
    }

    impl SystemMonitor for Mock {
        fn name(&self) -> &'static str {
            "mock"
        }
        fn read(&mut self, r: Resource, now: Instant, s: &mut Snapshot) -> Result<(), SysError> {
            lock(&self.reads).push((r, now));
            match r {
                Resource::Cpu => {
                    s.cpu = Some(CpuReading {
                        at: now,
                        cpus: 4,
                        busy_millicores: Some(1500),
                        utilisation: Some(Ppm::from_ppm(375_000)),
                        times: CpuTimes::default(),
                    });
                    Ok(())
                }
                Resource::Memory if self.fail_memory > 0 => {
                    self.fail_memory -= 1;
                    Err(SysError::parse(
                        std::path::Path::new("/mock/meminfo"),
                        1,
                        "a number",
                    ))
                }
                Resource::Memory => {
                    s.memory = Some(MemoryReading {
                        at: now,
                        total: 1000,
                        available: 400,
                        used: 600,
                    });
                    Ok(())
                }
                Resource::ContainerLimits => Ok(()),
                _ => Err(SysError::Unsupported {
                    what: "this reading",
                    why: "the mock does not have it",
                }),
            }
        }
    }

    type Reads = Arc<Mutex<Vec<(Resource, Instant)>>>;

    fn mock(fail_memory: u32) -> (Mock, Reads) {
        let reads = Arc::new(Mutex::new(Vec::new()));
        (
            Mock {
                reads: Arc::clone(&reads),
                fail_memory,
            },
            reads,
        )
    }

    fn count(reads: &Mutex<Vec<(Resource, Instant)>>, r: Resource) -> usize {
        lock(reads).iter().filter(|(x, _)| *x == r).count()
    }

    #[test]
    fn ttl_backoff_and_unsupported() {
        let (m, reads) = mock(3);
        let sec = Duration::from_secs(1);
        let config = MonitorConfig::default().with_ttl(Resource::Cpu, sec * 3);
        let mut s = Sampler::new(m, config).unwrap();
        let t0 = Instant::now();
        // 40 ticks, one per second.
        let mut memory_reads_at = Vec::new();
        for k in 0..40u32 {
            let tick = s.tick(t0 + sec * k);
            if tick.refreshed(Resource::Memory) || tick.failed(Resource::Memory) {
                memory_reads_at.push(k);
            }
        }
        // CPU every 3 s; container limits every 10 s (default TTL).
        assert_eq!(count(&reads, Resource::Cpu), 14, "ticks 0, 3, ..., 39");
        assert_eq!(
            count(&reads, Resource::ContainerLimits),
            4,
            "ticks 0, 10, 20, 30"
        );
        // Unsupported resources are asked once.
        assert_eq!(count(&reads, Resource::Pressure), 1);
        assert_eq!(
            s.snapshot().status(Resource::Pressure),
            ResourceStatus::Unsupported
        );
        assert!(s.last_error(Resource::Pressure).unwrap().is_unsupported());
        // Memory fails 3 times: retried after 2 s, 4 s, 8 s, then every tick.
        assert_eq!(&memory_reads_at[..5], &[0, 2, 6, 14, 15]);
        assert_eq!(s.snapshot().status(Resource::Memory), ResourceStatus::Ok);
        assert!(s.last_error(Resource::Memory).is_none());
        assert_eq!(s.snapshot().seq, 40);
        let usage = s.snapshot().measured_usage();
        assert_eq!(usage.get(Dim::Cpu), Some(1500));
        assert_eq!(usage.get(Dim::Memory), Some(600));
        assert_eq!(usage.get(Dim::Iops), None);
    }

    #[test]
    fn backoff_is_capped() {
        let (m, _) = mock(u32::MAX);
        let config = MonitorConfig::default()
            .only(&[Resource::Memory])
            .with_max_backoff(Duration::from_secs(5));
        let mut s = Sampler::new(m, config).unwrap();
        let t0 = Instant::now();
        let mut at = Vec::new();
        for k in 0..40u32 {
            if s.tick(t0 + Duration::from_secs(u64::from(k)))
                .failed(Resource::Memory)
            {
                at.push(k);
            }
        }
        assert_eq!(&at[..6], &[0, 2, 6, 11, 16, 21]);
        assert_eq!(
            s.snapshot().status(Resource::Memory),
            ResourceStatus::Failing {
                consecutive: u32::try_from(at.len()).unwrap()
            }
        );
        assert_eq!(s.snapshot().status(Resource::Cpu), ResourceStatus::Disabled);
        // The next wake follows the backoff, not the interval.
        let last = t0 + Duration::from_secs(39);
        assert!(s.next_wake().unwrap() > last + Duration::from_secs(1));
    }

    #[test]
    fn config_validation() {
        let c = MonitorConfig::default().with_interval(Duration::ZERO);
        assert_eq!(
            c.validate(),
            Err(SysError::InvalidConfig {
                setting: "interval",
                why: "must be between 1 ms and 1 hour"
            })
        );
        let c = MonitorConfig::default().with_max_backoff(Duration::MAX);
        assert!(c.validate().is_err(), "would overflow `Instant + backoff`");
        let c = MonitorConfig::default().with_ttl(Resource::Disk, Duration::MAX);
        assert!(matches!(
            c.validate(),
            Err(SysError::InvalidConfig { setting: "ttl", .. })
        ));
        let c = MonitorConfig::default().with_max_backoff(Duration::from_millis(10));
        assert!(c.validate().is_err());
        assert!(Sampler::new(mock(0).0, c).is_err());
        assert_eq!(MonitorConfig::default().interval, Duration::from_secs(1));
    }

    #[test]
    fn monitor_thread_publishes_calls_back_and_stops() {
        let (m, _) = mock(0);
        let config = MonitorConfig::default().with_interval(Duration::from_millis(5));
        let monitor = Monitor::with_source(m, config).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let id = monitor.subscribe(move |s| {
            let _ = tx.send(s.seq);
        });
        let bad = monitor.subscribe(|_| panic!("a subscriber that panics"));
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let second = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            second > first,
            "sequence numbers grow: {first} then {second}"
        );
        let s = monitor.wait_for_sample(second, Duration::MAX).unwrap();
        assert!(s.seq > second);
        assert_eq!(s.cpu.unwrap().busy_millicores, Some(1500));
        assert!(
            !monitor.unsubscribe(bad),
            "the panicking subscriber was removed"
        );
        assert_eq!(monitor.stats().callback_panics, 1);
        assert!(monitor.unsubscribe(id));
        assert!(!monitor.unsubscribe(id));
        let errors = monitor.errors();
        assert!(
            errors
                .iter()
                .any(|(r, e)| *r == Resource::Pressure && e.is_unsupported())
        );
        assert!(monitor.stats().samples >= 3);
        monitor.stop();
    }

    #[test]
    fn drop_stops_a_slow_monitor_promptly() {
        // An interval of one hour: the thread is parked; dropping wakes it.
        let (m, _) = mock(0);
        let config = MonitorConfig::default()
            .with_interval(Duration::from_secs(3600))
            .with_max_backoff(Duration::from_secs(3600));
        let monitor = Monitor::with_source(m, config).unwrap();
        assert!(
            monitor
                .wait_for_sample(0, Duration::from_secs(10))
                .is_some()
        );
        drop(monitor); // would hang the test for an hour if the thread were not woken
    }
}
