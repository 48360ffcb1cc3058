//! Prometheus metrics of a pool, on the official `prometheus-client` crate.
//!
//! [`Metrics`] is an [`Observer`]: install it with
//! [`Builder::observer`](respool::Builder::observer) and it counts every
//! event into relaxed atomics. A scrape ([`Metrics::encode_text`], or the
//! [`Collector`] from [`Metrics::collector`] in a registry of yours) reads
//! those atomics, takes a [`PoolSnapshot`] through a
//! [`SnapshotSource`] for the pool's own figures (admission decisions,
//! queues, capacity against reservations, prediction accuracy), and reads
//! the machine's memory pressure and the container's memory limit where
//! respool's public [`respool::sys`] API can read them.
//!
//! # Families
//!
//! From events (kept here):
//!
//! | family | type | labels |
//! |--------|------|--------|
//! | `respool_tasks_submitted_total` | counter | |
//! | `respool_tasks_total` | counter | `outcome`: finished, failed, panicked, cancelled, timed_out, deadline_missed, refused, not_run |
//! | `respool_tasks_deferred_total` | counter | `dim`: a dimension's name, or `queue` (behind earlier waiters) |
//! | `respool_reservations_grown_total`, `respool_reservation_grown_bytes_total` | counter | |
//! | `respool_retries_total` | counter | |
//! | `respool_queue_wait_seconds` | histogram | submitted (or ready again after a retry's back-off) to started |
//! | `respool_resource_wait_seconds` | histogram | deferred to admitted, tasks that waited only |
//! | `respool_run_seconds` | histogram | started to the attempt's end |
//! | `respool_tasks_waiting` | gauge | `dim` |
//! | `respool_tasks_running` | gauge | |
//! | `respool_class_runs_total` | counter | `class` |
//! | `respool_class_run_seconds` | histogram | `class` |
//! | `respool_class_memory_slack_bytes` | gauge | `class`: mean admitted memory reservation minus measured memory over the class's last 16 measured runs |
//! | `respool_metrics_untracked_tasks_total` | counter | tasks this observer could not time (its task table was full) |
//!
//! From a [`PoolSnapshot`] at scrape time:
//! `respool_admission_decisions_total{result}`, `respool_wait_queue_depth`,
//! `respool_run_queue_depth`, `respool_workers`,
//! `respool_capacity_bytes{dim}`, `respool_effective_capacity_bytes{dim}`,
//! `respool_reserved_bytes{dim}` (memory, GPU memory),
//! `respool_capacity_cores{dim}`, `respool_effective_capacity_cores{dim}`,
//! `respool_reserved_cores{dim}` (CPU, millicores / 1000),
//! `respool_capacity{dim}`, `respool_effective_capacity{dim}`,
//! `respool_reserved{dim}` (IOPS, network, GPUs, user dimensions),
//! `respool_fragmentation_ratio`,
//! `respool_wait_head_shortfall_bytes{dim}`, `respool_wait_head_shortfall_cores{dim}`,
//! `respool_wait_head_shortfall{dim}` (what the task at the head of the
//! wait queue lacks to start, per dimension; absent when nobody waits), and per class
//! `respool_class_prediction_accuracy_ratio{class}` (share within 10% over
//! the class's last 64 predictions), `respool_class_predictions_total{class}`,
//! `respool_class_predictions_within_10pct_total{class}`. Only dimensions
//! the pool tracks. With a shared profile store (`RedisStore`, see
//! [`respool::store::StoreStatus`]): `respool_profile_store_up`,
//! `respool_profile_store_pending_samples`,
//! `respool_profile_store_problem_classes` (gauges) and
//! `respool_profile_store_written_samples_total`,
//! `respool_profile_store_dropped_samples_total`,
//! `respool_profile_store_refused_samples_total`,
//! `respool_profile_store_failures_total`,
//! `respool_profile_store_reads_total` (counters). With
//! [`Builder::pricing`](respool::Builder::pricing), per class:
//! `respool_class_cost_usd_total{class}` (what its runs used, priced) and
//! `respool_class_slack_cost_usd_total{class}` (what they held unused).
//!
//! From the system monitor at scrape time (see
//! [`MetricsConfig::system_readings`]): `respool_memory_pressure_ratio`
//! (PSI `some avg10` of memory, the cgroup's when it has one, else the
//! machine's), `respool_container_memory_limit_bytes` (when the cgroup has
//! a limit), and measured use `respool_measured_bytes{dim}`,
//! `respool_measured_cores{dim}`, `respool_measured{dim}` for the tracked
//! dimensions the monitor measures. A family that cannot be read is left
//! out, never invented.
//!
//! From an attached [`SlowTasks`] detector ([`Metrics::attach_slow`]):
//! `respool_slow_tasks_total{kind}` and `respool_slow_tasks_current{kind}` (not `respool_slow_tasks`: in OpenMetrics that is the counter's family name).
//!
//! # Cost on the task's path
//!
//! Counters and gauges are relaxed atomics in fixed arrays. Timing needs
//! what happened earlier to the same task (when it was submitted, deferred,
//! started; its class; its memory reservation), kept in a fixed table of
//! `max_tracked_tasks` slots of 40 bytes, found by the task id (ids are
//! sequential, so `id % size`, probing 8 slots): a compare-and-swap claims a
//! slot at submission, plain relaxed loads and stores follow (one task's
//! events are ordered by the pool), a store frees it at the terminal event.
//! A task submitted while its 8 slots are all held by live tasks is counted
//! in `respool_metrics_untracked_tasks_total` and left out of the
//! histograms and gauges (its counters are exact).
//!
//! A class's slot is found once per task, at submission, in a
//! `RwLock<HashMap<class, slot>>` under its read lock (one string hash and
//! an uncontended-in-the-common-case atomic on the lock word); the write
//! lock is taken only the first time a class is seen, until the table is
//! full, after which unseen classes go to `class="_other"` without locking
//! for writing. Later events of the task read the class slot from the task
//! table. No allocation on the task's path, except the first event of each
//! of the first `max_classes` classes (its name is copied once).
//!
//! One `Metrics` per pool: task ids and event times are the pool's own.
//!
//! # Text formats
//!
//! [`Metrics::encode_text`] writes OpenMetrics text (what
//! `prometheus-client` writes, [`CONTENT_TYPE`]); Prometheus and promtool
//! read it. [`Metrics::encode`] with [`Format::Prometheus`] writes the
//! classic Prometheus text format 0.0.4 ([`PROMETHEUS_CONTENT_TYPE`]);
//! [`Format::negotiate`] picks one from an HTTP `Accept` header.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use respool::Pool;
//! use respool_observe::SnapshotSource;
//! use respool_observe::metrics::{Metrics, MetricsConfig};
//!
//! let metrics = Metrics::new(MetricsConfig::default())?;
//! let pool = Arc::new(Pool::builder().workers(2).observer(metrics.clone()).build()?);
//! pool.task().class("resize").spawn(|_| 2 + 2)?.join()?;
//! let text = metrics.encode_text(&SnapshotSource::of(&pool))?;
//! assert!(text.contains("respool_tasks_submitted_total 1"));
//! assert!(text.contains("respool_class_runs_total{class=\"resize\"} 1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::outcome::{OUTCOMES, outcome_index};
use crate::striped::{SHARDS, Striped, StripedI64, shard};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use respool::observe::{Event, EventKind, Observer};
use respool::sys::{Resource, Snapshot as SysSnapshot, SystemMonitor};
use respool::{Dim, PoolSnapshot};

use crate::SnapshotSource;
use crate::slow::SlowTasks;

/// The `Content-Type` of [`Metrics::encode_text`]: OpenMetrics text 1.0.0.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of the classic Prometheus text format 0.0.4
/// ([`Format::Prometheus`]).
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The label value that every class past [`MetricsConfig::max_classes`]
/// shares.
pub const OTHER_CLASS: &str = "_other";

/// Slack values kept per class for its mean.
const SLACK_WINDOW: usize = 16;
/// Slots probed for a task in the task table.
const PROBES: u64 = 8;
/// Label values of `dim` for the deferral and waiting families: every
/// dimension, then `queue`.
const DIM_SLOTS: usize = Dim::COUNT + 1;
/// The `queue` slot.
const QUEUE_SLOT: usize = Dim::COUNT;

/// Largest accepted `max_classes`.
pub const MAX_CLASSES_LIMIT: usize = 4096;
/// Largest accepted `max_tracked_tasks`.
pub const MAX_TRACKED_LIMIT: usize = 1 << 22;
/// Most buckets a histogram may have.
pub const MAX_BUCKETS: usize = 64;

/// How [`Metrics`] is set up. Build it with `MetricsConfig::default()` and
/// change fields; [`Metrics::new`] checks it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Classes with series of their own; later ones share
    /// `class="_other"` (default 64, at most [`MAX_CLASSES_LIMIT`]).
    pub max_classes: usize,
    /// Tasks timed at once (rounded up to a power of two; default 8192, 320
    /// KiB; at least 64, at most [`MAX_TRACKED_LIMIT`]). Tasks past it are
    /// counted, not timed.
    pub max_tracked_tasks: usize,
    /// Upper bounds, in seconds, of `respool_queue_wait_seconds` and
    /// `respool_resource_wait_seconds` (default 10 us to 60 s).
    pub wait_buckets: Vec<f64>,
    /// Upper bounds, in seconds, of `respool_run_seconds` (default 10 us to
    /// 60 s).
    pub run_buckets: Vec<f64>,
    /// Upper bounds, in seconds, of the per class
    /// `respool_class_run_seconds` (coarse, default 1 ms to 60 s: one
    /// series per bucket per class).
    pub class_run_buckets: Vec<f64>,
    /// Read memory pressure, the container's memory limit and measured use
    /// from procfs and cgroups at each scrape (default `true`; the families
    /// are left out where nothing can be read). Replace the source with
    /// [`Metrics::set_system_monitor`].
    pub system_readings: bool,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        let fine = vec![
            0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            10.0, 60.0,
        ];
        MetricsConfig {
            max_classes: 64,
            max_tracked_tasks: 8192,
            wait_buckets: fine.clone(),
            run_buckets: fine,
            class_run_buckets: vec![0.001, 0.01, 0.1, 1.0, 10.0, 60.0],
            system_readings: true,
        }
    }
}

impl MetricsConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Config`] naming the field and what is wrong.
    pub fn validate(&self) -> Result<(), MetricsError> {
        if self.max_classes == 0 || self.max_classes > MAX_CLASSES_LIMIT {
            return Err(MetricsError::Config {
                field: "max_classes",
                why: format!("{} is not in 1..={MAX_CLASSES_LIMIT}", self.max_classes),
            });
        }
        if !(64..=MAX_TRACKED_LIMIT).contains(&self.max_tracked_tasks) {
            return Err(MetricsError::Config {
                field: "max_tracked_tasks",
                why: format!(
                    "{} is not in 64..={MAX_TRACKED_LIMIT}",
                    self.max_tracked_tasks
                ),
            });
        }
        for (field, b) in [
            ("wait_buckets", &self.wait_buckets),
            ("run_buckets", &self.run_buckets),
            ("class_run_buckets", &self.class_run_buckets),
        ] {
            check_buckets(b).map_err(|why| MetricsError::Config { field, why })?;
        }
        Ok(())
    }
}

fn check_buckets(b: &[f64]) -> Result<(), String> {
    if b.is_empty() || b.len() > MAX_BUCKETS {
        return Err(format!("{} bounds, not 1..={MAX_BUCKETS}", b.len()));
    }
    if let Some(x) = b.iter().find(|x| !x.is_finite() || **x <= 0.0) {
        return Err(format!(
            "bound {x} is not a positive finite number of seconds"
        ));
    }
    if b.windows(2).any(|w| w[0] >= w[1]) {
        return Err("bounds are not strictly increasing".into());
    }
    Ok(())
}

/// Why [`Metrics`] could not be built or encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsError {
    /// A [`MetricsConfig`] field is out of range.
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// Encoding the exposition failed (a collector of the registry failed).
    Encode,
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::Config { field, why } => {
                write!(f, "metrics configuration: {field}: {why}")
            }
            MetricsError::Encode => f.write_str("encoding the metrics exposition failed"),
        }
    }
}

impl std::error::Error for MetricsError {}

/// An exposition text format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics text 1.0.0 ([`CONTENT_TYPE`]), ends with `# EOF`.
    #[default]
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 ([`PROMETHEUS_CONTENT_TYPE`]).
    Prometheus,
}

impl Format {
    /// The format an HTTP `Accept` header asks for: OpenMetrics when it
    /// names `application/openmetrics-text`, else (no header, `*/*`,
    /// `text/plain`) the Prometheus text format, which every scraper reads.
    #[must_use]
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// Its `Content-Type`.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

/// A histogram in fixed atomic buckets, striped as [`Striped`] is: each
/// shard has its own run of buckets, with a gap of two cache lines before
/// the next shard's.
struct Histogram {
    /// Upper bounds in nanoseconds.
    bounds_ns: Box<[u64]>,
    /// The same in seconds, for the exposition.
    bounds_s: Box<[f64]>,
    /// Per shard, `stride` cells: per bucket (not cumulative), then the
    /// `+Inf` bucket, then padding.
    counts: Box<[AtomicU64]>,
    stride: usize,
    /// Sum of observations, nanoseconds.
    sum_ns: Striped,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Histogram {
        // 16 cells (128 bytes) of padding after each shard's buckets.
        let stride = (bounds.len() + 1 + 16).next_multiple_of(16);
        Histogram {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            bounds_ns: bounds.iter().map(|s| (s * 1e9) as u64).collect(),
            bounds_s: bounds.into(),
            counts: (0..stride * SHARDS).map(|_| AtomicU64::new(0)).collect(),
            stride,
            sum_ns: Striped::new(),
        }
    }

    fn observe(&self, ns: u64) {
        let i = self.bounds_ns.partition_point(|&b| b < ns);
        if let Some(c) = self.counts.get(shard() * self.stride + i) {
            c.fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Bucket `i` summed over the shards.
    fn bucket(&self, i: usize) -> u64 {
        (0..SHARDS)
            .filter_map(|s| self.counts.get(s * self.stride + i))
            .fold(0u64, |a, c| a.wrapping_add(c.load(Relaxed)))
    }

    /// Buckets as `prometheus-client` wants them, and the count (the sum
    /// of the buckets read, so that `_count` equals the `+Inf` bucket).
    fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets = Vec::with_capacity(self.bounds_s.len() + 1);
        let mut count = 0u64;
        for i in 0..=self.bounds_s.len() {
            let v = self.bucket(i);
            count = count.saturating_add(v);
            buckets.push((self.bounds_s.get(i).copied().unwrap_or(f64::INFINITY), v));
        }
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }

    fn encode(&self, m: &mut MetricEncoder<'_>) -> fmt::Result {
        let (sum, count, buckets) = self.read();
        m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// Per class figures from events.
struct ClassStats {
    runs: Striped,
    run: Histogram,
    slack: [AtomicI64; SLACK_WINDOW],
    slack_n: AtomicU64,
}

impl ClassStats {
    fn new(bounds: &[f64]) -> ClassStats {
        ClassStats {
            runs: Striped::new(),
            run: Histogram::new(bounds),
            slack: std::array::from_fn(|_| AtomicI64::new(0)),
            slack_n: AtomicU64::new(0),
        }
    }

    fn push_slack(&self, v: i64) {
        let n = self.slack_n.fetch_add(1, Relaxed);
        #[allow(clippy::cast_possible_truncation)]
        if let Some(s) = self.slack.get((n % SLACK_WINDOW as u64) as usize) {
            s.store(v, Relaxed);
        }
    }

    fn mean_slack(&self) -> Option<f64> {
        let n = self.slack_n.load(Relaxed);
        if n == 0 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)]
        let k = n.min(SLACK_WINDOW as u64) as usize;
        #[allow(clippy::cast_precision_loss)]
        let sum: f64 = self
            .slack
            .iter()
            .take(k)
            .map(|s| s.load(Relaxed) as f64)
            .sum();
        #[allow(clippy::cast_precision_loss)]
        Some(sum / k as f64)
    }
}

/// The bounded class table: `max_classes` named slots, then `_other`.
struct Classes {
    index: RwLock<HashMap<Box<str>, u32>>,
    full: AtomicBool,
    max: usize,
    stats: Box<[ClassStats]>,
}

impl Classes {
    fn new(max: usize, bounds: &[f64]) -> Classes {
        Classes {
            index: RwLock::new(HashMap::with_capacity(max)),
            full: AtomicBool::new(false),
            max,
            stats: (0..=max).map(|_| ClassStats::new(bounds)).collect(),
        }
    }

    fn other(&self) -> u32 {
        u32::try_from(self.max).unwrap_or(u32::MAX)
    }

    /// The slot of `class` (taking one if there is room).
    fn slot(&self, class: &str) -> u32 {
        if let Some(&i) = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(class)
        {
            return i;
        }
        if self.full.load(Relaxed) || class == OTHER_CLASS {
            return self.other();
        }
        let mut w = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&i) = w.get(class) {
            return i;
        }
        if w.len() >= self.max {
            self.full.store(true, Relaxed);
            return self.other();
        }
        let i = u32::try_from(w.len()).unwrap_or(u32::MAX);
        w.insert(class.into(), i);
        if w.len() >= self.max {
            self.full.store(true, Relaxed);
        }
        i
    }

    /// Names and slots, in slot order, then `_other`.
    fn labelled(&self) -> Vec<(String, usize)> {
        let r = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<(String, usize)> = r
            .iter()
            .map(|(k, &i)| (k.to_string(), i as usize))
            .collect();
        v.sort_by_key(|(_, i)| *i);
        v.push((OTHER_CLASS.to_string(), self.max));
        v
    }
}

/// What is known of one task in flight. Written only by the task's own
/// events, which the pool orders; relaxed. A cache line of its own: the
/// submitting thread writes the next task's slot while a worker writes
/// this one's.
#[repr(align(64))]
struct Slot {
    /// The task id, 0 when free.
    tag: AtomicU64,
    /// Submitted (or ready after a retry's back-off) while queued; started
    /// while running; nanoseconds on the pool clock.
    at: AtomicU64,
    /// When it was last deferred.
    deferred_at: AtomicU64,
    /// Memory of its admitted reservation.
    reserved_mem: AtomicU64,
    /// [`State`] packed.
    state: AtomicU64,
}

/// Phases of a tracked task.
const QUEUED: u64 = 0;
const WAITING: u64 = 1;
const RUNNING: u64 = 2;

/// A slot's state: phase (bits 0..2), blocking dimension slot (bits 2..8),
/// whether `reserved_mem` is set (bit 8), class slot + 1 (bits 32..; 0 for
/// none).
#[derive(Clone, Copy)]
struct State(u64);

impl State {
    fn new(class: Option<u32>) -> State {
        State(class.map_or(0, |c| u64::from(c) + 1) << 32)
    }
    fn phase(self) -> u64 {
        self.0 & 3
    }
    fn with_phase(self, p: u64) -> State {
        State((self.0 & !3) | p)
    }
    #[allow(clippy::cast_possible_truncation)]
    fn dim(self) -> usize {
        ((self.0 >> 2) & 0x3f) as usize
    }
    fn with_dim(self, d: usize) -> State {
        State((self.0 & !(0x3f << 2)) | ((d as u64 & 0x3f) << 2))
    }
    fn has_mem(self) -> bool {
        self.0 & (1 << 8) != 0
    }
    fn with_mem(self, yes: bool) -> State {
        if yes {
            State(self.0 | (1 << 8))
        } else {
            State(self.0 & !(1 << 8))
        }
    }
    #[allow(clippy::cast_possible_truncation)]
    fn class(self) -> Option<usize> {
        match self.0 >> 32 {
            0 => None,
            c => Some((c - 1) as usize),
        }
    }
}

/// The task table (see the module documentation).
struct Tasks {
    slots: Box<[Slot]>,
    mask: u64,
}

impl Tasks {
    fn new(size: usize) -> Tasks {
        let size = size.next_power_of_two();
        Tasks {
            slots: (0..size)
                .map(|_| Slot {
                    tag: AtomicU64::new(0),
                    at: AtomicU64::new(0),
                    deferred_at: AtomicU64::new(0),
                    reserved_mem: AtomicU64::new(0),
                    state: AtomicU64::new(0),
                })
                .collect(),
            mask: size as u64 - 1,
        }
    }

    #[allow(clippy::cast_possible_truncation)]
    fn at(&self, i: u64) -> Option<&Slot> {
        self.slots.get((i & self.mask) as usize)
    }

    fn claim(&self, id: u64) -> Option<&Slot> {
        (0..PROBES).find_map(|p| {
            let s = self.at(id.wrapping_add(p))?;
            (s.tag.load(Relaxed) == 0
                && s.tag
                    .compare_exchange(0, id, std::sync::atomic::Ordering::Acquire, Relaxed)
                    .is_ok())
            .then_some(s)
        })
    }

    fn find(&self, id: u64) -> Option<&Slot> {
        (0..PROBES).find_map(|p| {
            let s = self.at(id.wrapping_add(p))?;
            (s.tag.load(Relaxed) == id).then_some(s)
        })
    }
}

fn dim_label(slot: usize) -> &'static str {
    Dim::from_index(slot).map_or("queue", Dim::name)
}

fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The system monitor read at scrape time, and its last readings (rates
/// need the previous one).
struct SystemReadings {
    monitor: Box<dyn SystemMonitor>,
    snapshot: SysSnapshot,
}

/// A Prometheus metrics observer (see the [module documentation](self)).
pub struct Metrics {
    submitted: Striped,
    outcomes: [Striped; OUTCOMES.len()],
    deferred: [Striped; DIM_SLOTS],
    waiting: [StripedI64; DIM_SLOTS],
    running: StripedI64,
    grown: Striped,
    grown_bytes: Striped,
    retries: Striped,
    untracked: Striped,
    queue_wait: Histogram,
    resource_wait: Histogram,
    run: Histogram,
    classes: Classes,
    tasks: Tasks,
    system: Mutex<Option<SystemReadings>>,
    slow: RwLock<Option<Weak<SlowTasks>>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("submitted", &self.submitted.load(Relaxed))
            .field("running", &self.running.load(Relaxed))
            .field("max_classes", &self.classes.max)
            .field("tracked_slots", &self.tasks.slots.len())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A metrics observer set up by `config`.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Config`] when `config` is out of range
    /// ([`MetricsConfig::validate`]).
    pub fn new(config: MetricsConfig) -> Result<Arc<Metrics>, MetricsError> {
        config.validate()?;
        let system = if config.system_readings {
            Some(SystemReadings {
                monitor: host_monitor(),
                snapshot: SysSnapshot::default(),
            })
        } else {
            None
        };
        Ok(Arc::new(Metrics {
            submitted: Striped::new(),
            outcomes: std::array::from_fn(|_| Striped::new()),
            deferred: std::array::from_fn(|_| Striped::new()),
            waiting: std::array::from_fn(|_| StripedI64::new()),
            running: StripedI64::new(),
            grown: Striped::new(),
            grown_bytes: Striped::new(),
            retries: Striped::new(),
            untracked: Striped::new(),
            queue_wait: Histogram::new(&config.wait_buckets),
            resource_wait: Histogram::new(&config.wait_buckets),
            run: Histogram::new(&config.run_buckets),
            classes: Classes::new(config.max_classes, &config.class_run_buckets),
            tasks: Tasks::new(config.max_tracked_tasks),
            system: Mutex::new(system),
            slow: RwLock::new(None),
        }))
    }

    /// With the default [`MetricsConfig`] (which is valid).
    #[must_use]
    pub fn with_defaults() -> Arc<Metrics> {
        match Metrics::new(MetricsConfig::default()) {
            Ok(m) => m,
            // The defaults are checked by a test; this arm is unreachable.
            Err(e) => unreachable!("the default metrics configuration is valid: {e}"),
        }
    }

    /// Reads the system figures (memory pressure, container limit,
    /// measured use) from `monitor` at each scrape instead of the host's
    /// procfs; `None` reads none.
    pub fn set_system_monitor(&self, monitor: Option<Box<dyn SystemMonitor>>) {
        *self.system.lock().unwrap_or_else(PoisonError::into_inner) =
            monitor.map(|monitor| SystemReadings {
                monitor,
                snapshot: SysSnapshot::default(),
            });
    }

    /// Includes `slow`'s families (`respool_slow_tasks_total`,
    /// `respool_slow_tasks_current`) in this exposition, while `slow` lives. Do not
    /// also register `slow`'s own collector in the same registry.
    pub fn attach_slow(&self, slow: &Arc<SlowTasks>) {
        *self.slow.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::downgrade(slow));
    }

    /// The whole exposition in OpenMetrics text ([`CONTENT_TYPE`]), ending
    /// with `# EOF`: the event families, the snapshot families when
    /// `snapshot` gives one, the system readings and an attached slow-task
    /// detector's families.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Encode`] if encoding fails (it does not with this
    /// crate's collectors).
    pub fn encode_text(
        self: &Arc<Self>,
        snapshot: &SnapshotSource,
    ) -> Result<String, MetricsError> {
        self.encode(snapshot, Format::OpenMetrics)
    }

    /// The whole exposition in `format`.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Encode`] if encoding fails.
    pub fn encode(
        self: &Arc<Self>,
        snapshot: &SnapshotSource,
        format: Format,
    ) -> Result<String, MetricsError> {
        let mut registry = Registry::default();
        self.register(&mut registry, snapshot.clone());
        let mut out = String::with_capacity(16 * 1024);
        match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
        }
        .map_err(|_| MetricsError::Encode)?;
        Ok(out)
    }

    /// A [`Collector`] that reads these metrics (and `snapshot`) at each
    /// scrape, for a registry of yours.
    #[must_use]
    pub fn collector(self: &Arc<Self>, snapshot: SnapshotSource) -> MetricsCollector {
        MetricsCollector {
            metrics: Arc::clone(self),
            snapshot,
        }
    }

    /// Registers [`Metrics::collector`] into `registry`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry, snapshot: SnapshotSource) {
        registry.register_collector(Box::new(self.collector(snapshot)));
    }

    /// Tasks submitted so far (what `respool_tasks_submitted_total` says).
    #[must_use]
    pub fn submitted(&self) -> u64 {
        self.submitted.load(Relaxed)
    }

    /// Tasks ended with `outcome` (a label value of `respool_tasks_total`;
    /// `None` for an unknown one).
    #[must_use]
    pub fn outcome(&self, outcome: &str) -> Option<u64> {
        let i = OUTCOMES.iter().position(|o| *o == outcome)?;
        self.outcomes.get(i).map(|c| c.load(Relaxed))
    }

    /// Tasks running now (`respool_tasks_running`).
    #[must_use]
    pub fn running(&self) -> i64 {
        self.running.load(Relaxed)
    }

    /// Waiters now, over every blocking dimension (`respool_tasks_waiting`).
    #[must_use]
    pub fn waiting(&self) -> i64 {
        self.waiting.iter().map(|w| w.load(Relaxed)).sum()
    }

    fn on_terminal(&self, slot: Option<&Slot>, ns: u64) {
        let Some(s) = slot else { return };
        let st = State(s.state.load(Relaxed));
        self.end_phase(s, st, ns);
        s.tag.store(0, std::sync::atomic::Ordering::Release);
    }

    /// Leaves the phase `st` (an attempt's end or the task's).
    fn end_phase(&self, s: &Slot, st: State, ns: u64) {
        match st.phase() {
            WAITING => {
                if let Some(w) = self.waiting.get(st.dim()) {
                    w.fetch_sub(1, Relaxed);
                }
            }
            RUNNING => {
                self.running.fetch_sub(1, Relaxed);
                let took = ns.saturating_sub(s.at.load(Relaxed));
                self.run.observe(took);
                if let Some(c) = st.class().and_then(|c| self.classes.stats.get(c)) {
                    c.runs.fetch_add(1, Relaxed);
                    c.run.observe(took);
                }
            }
            _ => {}
        }
    }
}

fn host_monitor() -> Box<dyn SystemMonitor> {
    Box::new(respool::sys::ProcfsMonitor::new(
        &respool::sys::SysRoot::host(),
    ))
}

impl Observer for Metrics {
    fn on_event(&self, e: &Event<'_>) {
        let now = ns(e.at);
        let id = e.task.map(respool::observe::TaskId::get);
        match e.kind {
            EventKind::Submitted { .. } => {
                self.submitted.fetch_add(1, Relaxed);
                let Some(id) = id else { return };
                let Some(s) = self.tasks.claim(id) else {
                    self.untracked.fetch_add(1, Relaxed);
                    return;
                };
                let class = e.class.map(|c| self.classes.slot(c));
                s.at.store(now, Relaxed);
                s.state
                    .store(State::new(class).with_phase(QUEUED).0, Relaxed);
            }
            EventKind::Deferred { shortfall } => {
                let d = shortfall.map_or(QUEUE_SLOT, |s| s.dim.index());
                if let Some(c) = self.deferred.get(d) {
                    c.fetch_add(1, Relaxed);
                }
                let Some(s) = id.and_then(|id| self.tasks.find(id)) else {
                    return;
                };
                let st = State(s.state.load(Relaxed));
                if st.phase() == WAITING {
                    if let Some(w) = self.waiting.get(st.dim()) {
                        w.fetch_sub(1, Relaxed);
                    }
                } else {
                    s.deferred_at.store(now, Relaxed);
                }
                if let Some(w) = self.waiting.get(d) {
                    w.fetch_add(1, Relaxed);
                }
                s.state.store(st.with_phase(WAITING).with_dim(d).0, Relaxed);
            }
            EventKind::Admitted { reservation } => {
                let Some(s) = id.and_then(|id| self.tasks.find(id)) else {
                    return;
                };
                let st = State(s.state.load(Relaxed));
                if st.phase() == WAITING {
                    if let Some(w) = self.waiting.get(st.dim()) {
                        w.fetch_sub(1, Relaxed);
                    }
                    self.resource_wait
                        .observe(now.saturating_sub(s.deferred_at.load(Relaxed)));
                }
                let mem = reservation.get(Dim::Memory);
                s.reserved_mem.store(mem.unwrap_or(0), Relaxed);
                s.state
                    .store(st.with_phase(QUEUED).with_mem(mem.is_some()).0, Relaxed);
            }
            EventKind::Started { .. } => {
                // An untracked task is left out of the gauge: its end could
                // not be told from another's.
                let Some(s) = id.and_then(|id| self.tasks.find(id)) else {
                    return;
                };
                self.running.fetch_add(1, Relaxed);
                let st = State(s.state.load(Relaxed));
                if st.phase() == WAITING {
                    // Not expected (admission comes first); keep the gauge right.
                    if let Some(w) = self.waiting.get(st.dim()) {
                        w.fetch_sub(1, Relaxed);
                    }
                }
                self.queue_wait
                    .observe(now.saturating_sub(s.at.load(Relaxed)));
                s.at.store(now, Relaxed);
                s.state.store(st.with_phase(RUNNING).0, Relaxed);
            }
            EventKind::ReservationGrown { by } => {
                self.grown.fetch_add(1, Relaxed);
                self.grown_bytes
                    .fetch_add(by.get(Dim::Memory).unwrap_or(0), Relaxed);
            }
            EventKind::ProfileUpdated { measured, .. } => {
                let Some(s) = id.and_then(|id| self.tasks.find(id)) else {
                    return;
                };
                let st = State(s.state.load(Relaxed));
                if let (true, Some(c), Some(used)) =
                    (st.has_mem(), st.class(), measured.get(Dim::Memory))
                {
                    let reserved = i128::from(s.reserved_mem.load(Relaxed));
                    let slack = i64::try_from(reserved - i128::from(used)).unwrap_or(i64::MIN);
                    if let Some(c) = self.classes.stats.get(c) {
                        c.push_slack(slack);
                    }
                }
            }
            EventKind::Retried { delay, .. } => {
                self.retries.fetch_add(1, Relaxed);
                let Some(s) = id.and_then(|id| self.tasks.find(id)) else {
                    return;
                };
                let st = State(s.state.load(Relaxed));
                self.end_phase(s, st, now);
                s.at.store(now.saturating_add(ns(delay)), Relaxed);
                s.state.store(st.with_phase(QUEUED).0, Relaxed);
            }
            ref k if k.is_terminal() => {
                if let Some(c) = outcome_index(k).and_then(|i| self.outcomes.get(i)) {
                    c.fetch_add(1, Relaxed);
                }
                self.on_terminal(id.and_then(|id| self.tasks.find(id)), now);
            }
            _ => {}
        }
    }
}

/// Reads a [`Metrics`] (and a pool's snapshot) at each scrape; register it
/// into a [`Registry`] of yours (see [`Metrics::register`]).
#[derive(Debug)]
pub struct MetricsCollector {
    metrics: Arc<Metrics>,
    snapshot: SnapshotSource,
}

impl Collector for MetricsCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let m = &self.metrics;
        m.encode_events(&mut enc)?;
        let snap = self.snapshot.take();
        if let Some(s) = &snap {
            m.encode_snapshot(&mut enc, s)?;
        }
        m.encode_system(&mut enc, snap.as_ref())?;
        let slow = m
            .slow
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(Weak::upgrade);
        if let Some(slow) = slow {
            slow.encode_families(&mut enc)?;
        }
        Ok(())
    }
}

/// Writes one counter family; `series` of (label value, value).
pub(crate) fn counter_family<'a, V: prometheus_client::encoding::EncodeCounterValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (&'a str, V)>,
) -> fmt::Result {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (v, n) in series {
        let labels = [(label, v)];
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, V, u64>(&n, None)?;
    }
    Ok(())
}

/// Writes one gauge family; `series` of (label value, value).
pub(crate) fn gauge_family<'a, V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (&'a str, V)>,
) -> fmt::Result {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (v, n) in series {
        let labels = [(label, v)];
        m.encode_family(&labels)?.encode_gauge(&n)?;
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: V,
) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn histogram(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &Histogram,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    h.encode(&mut m)
}

#[allow(clippy::cast_precision_loss)]
fn ratio(ppm: u32) -> f64 {
    f64::from(ppm) / 1e6
}

/// How a dimension's amounts are exposed: a family suffix and a scale.
fn unit_of(dim: Dim) -> (&'static str, f64) {
    match dim {
        Dim::Memory | Dim::GpuMemory => ("_bytes", 1.0),
        Dim::Cpu => ("_cores", 1e-3),
        _ => ("", 1.0),
    }
}

/// Writes `base{_bytes,_cores,}` families of `amounts` (dims, value).
fn per_unit_families(
    enc: &mut DescriptorEncoder<'_>,
    base: &str,
    help: &str,
    amounts: &[(Dim, u64)],
) -> fmt::Result {
    for (suffix, unit_help) in [
        ("_bytes", "bytes (memory, GPU memory)"),
        ("_cores", "CPU cores (millicores / 1000)"),
        (
            "",
            "the dimension's own unit (IOPS: operations/s, network: bytes/s, GPUs: devices, user dimensions: counts)",
        ),
    ] {
        let series: Vec<(&str, f64)> = amounts
            .iter()
            .filter(|(d, _)| unit_of(*d).0 == suffix)
            .map(|(d, v)| {
                #[allow(clippy::cast_precision_loss)]
                let v = *v as f64 * unit_of(*d).1;
                (d.name(), v)
            })
            .collect();
        let mut name = String::with_capacity(base.len() + suffix.len());
        let _ = write!(name, "{base}{suffix}");
        gauge_family(
            enc,
            &name,
            &format!("{help}, in {unit_help}."),
            "dim",
            series,
        )?;
    }
    Ok(())
}

impl Metrics {
    fn encode_events(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        counter(
            enc,
            "respool_tasks_submitted",
            "Tasks submitted to the pool.",
            self.submitted.load(Relaxed),
        )?;
        counter_family(
            enc,
            "respool_tasks",
            "Tasks ended, by outcome.",
            "outcome",
            OUTCOMES
                .iter()
                .zip(&self.outcomes)
                .map(|(o, c)| (*o, c.load(Relaxed))),
        )?;
        counter_family(
            enc,
            "respool_tasks_deferred",
            "Deferrals of tasks that did not fit, by the dimension that blocked them (queue: behind earlier waiters).",
            "dim",
            self.deferred
                .iter()
                .enumerate()
                .map(|(i, c)| (dim_label(i), c.load(Relaxed)))
                .filter(|(d, n)| *n > 0 || is_core_dim(d)),
        )?;
        counter(
            enc,
            "respool_reservations_grown",
            "Reservations grown while their task ran (it used more memory than it reserved).",
            self.grown.load(Relaxed),
        )?;
        counter(
            enc,
            "respool_reservation_grown_bytes",
            "Bytes by which reservations grew while their tasks ran.",
            self.grown_bytes.load(Relaxed),
        )?;
        counter(
            enc,
            "respool_retries",
            "Retries of failed attempts.",
            self.retries.load(Relaxed),
        )?;
        counter(
            enc,
            "respool_metrics_untracked_tasks",
            "Tasks left out of the histograms and gauges because the metrics observer's task table was full.",
            self.untracked.load(Relaxed),
        )?;
        histogram(
            enc,
            "respool_queue_wait_seconds",
            "Queue time: from submission (or readiness after a retry's back-off) to start, per attempt.",
            &self.queue_wait,
        )?;
        histogram(
            enc,
            "respool_resource_wait_seconds",
            "Time waiting for capacity, from deferral to admission, of tasks that waited.",
            &self.resource_wait,
        )?;
        histogram(
            enc,
            "respool_run_seconds",
            "Run time: from start to the attempt's end.",
            &self.run,
        )?;
        gauge_family(
            enc,
            "respool_tasks_waiting",
            "Tasks waiting for capacity now, by the dimension that blocks them (queue: behind earlier waiters).",
            "dim",
            self.waiting
                .iter()
                .enumerate()
                .map(|(i, w)| (dim_label(i), w.load(Relaxed)))
                .filter(|(d, n)| *n != 0 || is_core_dim(d)),
        )?;
        gauge(
            enc,
            "respool_tasks_running",
            "Tasks running now.",
            self.running.load(Relaxed),
        )?;
        self.encode_classes(enc)
    }

    fn encode_classes(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let labelled = self.classes.labelled();
        let stats = |i: usize| self.classes.stats.get(i);
        // `_other` only once something went there.
        let shown: Vec<(&str, &ClassStats)> = labelled
            .iter()
            .filter_map(|(n, i)| Some((n.as_str(), stats(*i)?)))
            .filter(|(n, s)| {
                *n != OTHER_CLASS || s.runs.load(Relaxed) > 0 || s.slack_n.load(Relaxed) > 0
            })
            .collect();
        counter_family(
            enc,
            "respool_class_runs",
            "Runs of tasks of each class (at most max_classes classes; later ones under _other).",
            "class",
            shown.iter().map(|(n, s)| (*n, s.runs.load(Relaxed))),
        )?;
        if !shown.is_empty() {
            let mut m = enc.encode_descriptor(
                "respool_class_run_seconds",
                "Run time of tasks of each class.",
                None,
                MetricType::Histogram,
            )?;
            for (n, s) in &shown {
                let labels = [("class", *n)];
                s.run.encode(&mut m.encode_family(&labels)?)?;
            }
        }
        gauge_family(
            enc,
            "respool_class_memory_slack_bytes",
            "Mean admitted memory reservation minus measured memory over each class's last 16 measured runs (negative: under-reserved).",
            "class",
            shown
                .iter()
                .filter_map(|(n, s)| Some((*n, s.mean_slack()?))),
        )
    }

    fn encode_snapshot(&self, enc: &mut DescriptorEncoder<'_>, s: &PoolSnapshot) -> fmt::Result {
        let a = &s.admission;
        counter_family(
            enc,
            "respool_admission_decisions",
            "Admission decisions, by result.",
            "result",
            [
                ("accepted", a.accepted),
                ("deferred", a.deferred),
                ("rejected", a.rejected),
                ("admitted_after_wait", a.admitted_after_wait),
                ("refused_after_wait", a.rejected_after_wait),
            ],
        )?;
        gauge(
            enc,
            "respool_wait_queue_depth",
            "Tasks waiting for resources now.",
            s.waiting,
        )?;
        gauge(
            enc,
            "respool_run_queue_depth",
            "Admitted tasks waiting for a worker now.",
            s.queued,
        )?;
        gauge(enc, "respool_workers", "Worker threads.", s.workers)?;
        let cap: Vec<(Dim, u64)> = s.capacity.iter().collect();
        let eff: Vec<(Dim, u64)> = s
            .capacity
            .iter()
            .map(|(d, _)| (d, s.effective_capacity.amount(d)))
            .collect();
        let res: Vec<(Dim, u64)> = s
            .capacity
            .iter()
            .map(|(d, _)| (d, s.reserved.amount(d)))
            .collect();
        per_unit_families(
            enc,
            "respool_capacity",
            "Capacity per tracked dimension",
            &cap,
        )?;
        per_unit_families(
            enc,
            "respool_effective_capacity",
            "Capacity minus headroom and external usage per tracked dimension",
            &eff,
        )?;
        per_unit_families(
            enc,
            "respool_reserved",
            "Reserved by admitted tasks per tracked dimension",
            &res,
        )?;
        let short: Vec<(Dim, u64)> = s.head_shortfall.iter().collect();
        per_unit_families(
            enc,
            "respool_wait_head_shortfall",
            "What the task at the head of the wait queue lacks to start (its request minus what is free), per dimension it asks for",
            &short,
        )?;
        gauge(
            enc,
            "respool_fragmentation_ratio",
            "Share of free CPU-domain capacity that the request at the head of the wait queue cannot use.",
            ratio(s.fragmentation.as_ppm()),
        )?;
        if let Some(st) = &s.store {
            self.encode_store(enc, st)?;
        }
        // Per class, with the same cap as the event families.
        let mut by_slot: Vec<(u32, u64, u64, Option<u32>)> = Vec::new();
        for c in &s.classes {
            // A class first seen here (imported profiles) takes a slot too.
            let slot = self.classes.slot(&c.class);
            match by_slot.iter_mut().find(|(i, ..)| *i == slot) {
                Some(e) => {
                    e.1 = e.1.saturating_add(c.predictions);
                    e.2 = e.2.saturating_add(c.within_10pct);
                    e.3 = None;
                }
                None => {
                    by_slot.push((slot, c.predictions, c.within_10pct, Some(c.recent.as_ppm())))
                }
            }
        }
        let labelled = self.classes.labelled();
        let name_of = |slot: u32| {
            labelled
                .iter()
                .find(|(_, i)| *i == slot as usize)
                .map_or(OTHER_CLASS, |(n, _)| n.as_str())
        };
        gauge_family(
            enc,
            "respool_class_prediction_accuracy_ratio",
            "Share of each class's recent predictions (the last 64) within 10% of what was measured (_other: over all predictions of its classes).",
            "class",
            by_slot.iter().map(|(slot, p, w, recent)| {
                let r = match recent {
                    Some(r) => ratio(*r),
                    #[allow(clippy::cast_precision_loss)]
                    None if *p > 0 => *w as f64 / *p as f64,
                    None => 0.0,
                };
                (name_of(*slot), r)
            }),
        )?;
        counter_family(
            enc,
            "respool_class_predictions",
            "Predictions of each class's usage compared with what was measured.",
            "class",
            by_slot.iter().map(|(slot, p, ..)| (name_of(*slot), *p)),
        )?;
        counter_family(
            enc,
            "respool_class_predictions_within_10pct",
            "Predictions of each class's usage within 10% of what was measured.",
            "class",
            by_slot.iter().map(|(slot, _, w, _)| (name_of(*slot), *w)),
        )?;
        // Costs, when the pool prices its classes (Builder::pricing).
        let mut costs: Vec<(u32, u64, u64)> = Vec::new();
        for c in &s.classes {
            let Some(cost) = c.cost else { continue };
            let slot = self.classes.slot(&c.class);
            match costs.iter_mut().find(|(i, ..)| *i == slot) {
                Some(e) => {
                    e.1 = e.1.saturating_add(cost.nano_usd);
                    e.2 = e.2.saturating_add(cost.slack_nano_usd);
                }
                None => costs.push((slot, cost.nano_usd, cost.slack_nano_usd)),
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let usd = |nano: u64| nano as f64 / 1e9;
        counter_family(
            enc,
            "respool_class_cost_usd",
            "What each class's measured runs used (CPU, memory and GPU over time), priced at the pool's pricing, in USD.",
            "class",
            costs.iter().map(|(slot, n, _)| (name_of(*slot), usd(*n))),
        )?;
        counter_family(
            enc,
            "respool_class_slack_cost_usd",
            "What each class's runs held (reserved) and did not use, priced at the pool's pricing, in USD.",
            "class",
            costs.iter().map(|(slot, _, n)| (name_of(*slot), usd(*n))),
        )
    }

    /// A shared profile store's state (a `RedisStore`), from the snapshot.
    #[allow(clippy::unused_self)]
    fn encode_store(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        st: &respool::store::StoreStatus,
    ) -> fmt::Result {
        gauge(
            enc,
            "respool_profile_store_up",
            "1 when the shared profile store answered the last attempt to reach it, else 0 (learning then goes on locally).",
            i64::from(st.reachable),
        )?;
        gauge(
            enc,
            "respool_profile_store_pending_samples",
            "Samples learned here and not yet merged into the shared profile store (retried with backoff).",
            i64::try_from(st.pending).unwrap_or(i64::MAX),
        )?;
        gauge(
            enc,
            "respool_profile_store_problem_classes",
            "Classes whose stored profile is corrupt or of a newer schema (left untouched, learned locally).",
            i64::try_from(st.problems.len()).unwrap_or(i64::MAX),
        )?;
        counter(
            enc,
            "respool_profile_store_written_samples",
            "Samples merged into the shared profile store.",
            st.written,
        )?;
        counter(
            enc,
            "respool_profile_store_dropped_samples",
            "Samples dropped because too many were pending while the store was unreachable.",
            st.dropped,
        )?;
        counter(
            enc,
            "respool_profile_store_refused_samples",
            "Samples not written because their class's stored profile is corrupt or newer.",
            st.rejected,
        )?;
        counter(
            enc,
            "respool_profile_store_failures",
            "Attempts to reach the shared profile store that failed.",
            st.failures,
        )?;
        counter(
            enc,
            "respool_profile_store_reads",
            "Successful reads of the shared profiles.",
            st.refreshes,
        )
    }

    fn encode_system(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        pool: Option<&PoolSnapshot>,
    ) -> fmt::Result {
        let snap = {
            let mut g = self.system.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(sys) = g.as_mut() else {
                return Ok(());
            };
            let now = Instant::now();
            for r in [
                Resource::Pressure,
                Resource::Container,
                Resource::ContainerLimits,
                Resource::Cpu,
                Resource::Memory,
                Resource::Disk,
                Resource::Network,
            ] {
                // A reading that fails is left out.
                let _ = sys.monitor.read(r, now, &mut sys.snapshot);
            }
            sys.snapshot
        };
        let pressure = snap
            .container
            .and_then(|c| c.memory_pressure)
            .or_else(|| snap.pressure.and_then(|p| p.memory));
        if let Some(p) = pressure {
            gauge(
                enc,
                "respool_memory_pressure_ratio",
                "Share of the last 10 s in which some task stalled on memory (PSI some avg10; the cgroup's, else the machine's).",
                ratio(p.some.avg10.as_ppm()),
            )?;
        }
        if let Some(limit) = snap.container_limits.and_then(|l| l.memory_bytes) {
            gauge(
                enc,
                "respool_container_memory_limit_bytes",
                "The container's (cgroup's) memory limit.",
                limit,
            )?;
        }
        if let Some(pool) = pool {
            let measured = snap.measured_usage();
            let used: Vec<(Dim, u64)> = pool
                .capacity
                .iter()
                .filter_map(|(d, _)| Some((d, measured.get(d)?)))
                .collect();
            per_unit_families(
                enc,
                "respool_measured",
                "Measured use per tracked dimension (the cgroup's, else the machine's)",
                &used,
            )?;
        }
        Ok(())
    }
}

/// Dimensions shown in the `dim` families even at zero: the first six and
/// `queue` (user dimensions only once used).
fn is_core_dim(d: &str) -> bool {
    !d.starts_with("user")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_a_bound_is_in_that_bucket() {
        let h = Histogram::new(&[0.001, 0.01]);
        for v in [1, 1_000_000, 1_000_001, 10_000_000, 10_000_001] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.read();
        assert_eq!(count, 5);
        assert_eq!(buckets, vec![(0.001, 2), (0.01, 2), (f64::INFINITY, 1)]);
        assert!((sum - 0.022_000_003).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn a_state_keeps_its_fields_apart() {
        let s = State::new(Some(4095))
            .with_phase(WAITING)
            .with_dim(QUEUE_SLOT)
            .with_mem(true);
        assert_eq!(s.phase(), WAITING);
        assert_eq!(s.dim(), QUEUE_SLOT);
        assert!(s.has_mem());
        assert_eq!(s.class(), Some(4095));
        let s = s.with_phase(RUNNING).with_mem(false);
        assert_eq!(
            (s.phase(), s.dim(), s.has_mem(), s.class()),
            (RUNNING, QUEUE_SLOT, false, Some(4095))
        );
        assert_eq!(State::new(None).class(), None);
    }

    #[test]
    fn the_task_table_probes_and_frees() {
        let t = Tasks::new(64);
        // Ids 1 and 65 share a home slot: the second probes the next.
        assert!(t.claim(1).is_some());
        assert!(t.claim(65).is_some());
        assert!(t.find(65).is_some());
        assert!(t.find(129).is_none());
        // Eight live tasks on one home slot fill its probes.
        for k in 2..8 {
            assert!(t.claim(1 + 64 * k).is_some());
        }
        assert!(t.claim(1 + 64 * 9).is_none());
        t.find(1).unwrap().tag.store(0, Relaxed);
        assert!(t.claim(1 + 64 * 9).is_some());
    }
}
