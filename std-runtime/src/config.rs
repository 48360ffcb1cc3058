//! A pool's configuration, as `Builder::build` validated it: what every
//! engine module reads and none changes.

use std::fmt;
use std::sync::{Arc, Mutex};

use respool_core::Resources;
use respool_core::admission::AdmissionConfig;

/// The `on_task_end` callback.
pub(crate) type TaskEndHook = Arc<dyn Fn(&crate::measure::TaskReport) + Send + Sync>;

/// A monitor source given to the builder. Behind a shared `Mutex<Option<_>>`
/// so that [`Config`] stays `Clone`; the pool takes it once, when it starts
/// its monitor.
pub(crate) type MonitorSource = Arc<Mutex<Option<Box<dyn crate::sys::SystemMonitor>>>>;

/// Configuration, validated by [`Builder::build`](crate::builder::Builder::build).
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
    /// Tasks report their memory (`Builder::tasks_report_memory`).
    pub(crate) tasks_report_memory: bool,
    pub(crate) learning: crate::learn::LearningConfig,
    pub(crate) store: Option<Arc<dyn crate::store::ProfileStore>>,
    /// Prices for the per-class costs of the snapshot.
    pub(crate) pricing: Option<crate::cost::Pricing>,
    pub(crate) on_task_end: Option<TaskEndHook>,
    /// Start a monitor with this configuration.
    pub(crate) monitor: Option<crate::sys::MonitorConfig>,
    /// The monitor's source from [`Builder::system_monitor`](crate::builder::Builder::system_monitor)
    /// (taken when the monitor starts); `None`: this platform's default.
    pub(crate) monitor_source: Option<MonitorSource>,
    /// Memory capacity follows the container's limit when it changes.
    pub(crate) follow_container_limit: bool,
    /// The process's cgroups as detection found them (`None` when nothing
    /// was detected): the monitor starts from it instead of reading them again.
    pub(crate) cgroup: Option<respool_sys::cgroup::CgroupLayout>,
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
    /// Receives every task's events (see `crate::observe`).
    pub(crate) observer: Option<Arc<dyn crate::observe::Observer>>,
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
