//! Slow running tasks and stuck waiters, detected while they last.
//!
//! [`SlowTasks`] is an [`Observer`]. It keeps every task in flight in a
//! bounded table, either as a *waiter* (submitted, not started: its queue
//! time counts) or as *running* (started, not ended: its run time counts);
//! the two are never mixed (tokio-console keeps busy, scheduled and idle
//! time apart the same way). A watchdog thread wakes at most every
//! [`SlowConfig::check_interval`] while anything is tracked, and blocks on a
//! condition variable, using no CPU, while nothing is.
//!
//! - A running task is **slow** when its run time passes its threshold,
//!   fixed when it starts: for a class with at least
//!   [`SlowConfig::min_runs`] learned runs, `multiple x` the class's p95
//!   run time ([`Threshold::P95Multiple`]) or its median
//!   ([`Threshold::MedianMultiple`], GNU parallel's `--timeout 200%`), but
//!   never under [`SlowConfig::floor`]; for an unclassified task, or a
//!   class with too few runs, the plain [`SlowConfig::unclassified`]. The
//!   detector learns the run times itself: the last 128 runs that finished
//!   of each class (at most [`SlowConfig::max_classes`] classes; later ones
//!   are treated as unclassified and reported as class `_other`).
//! - A waiter is **stuck** when its queue time passes
//!   [`SlowConfig::queue_threshold`].
//!
//! Each detection, once per task and kind, gives a `tracing` warning (target
//! `respool_observe::slow`), the counter `respool_slow_tasks_total{kind}`
//! and the gauge `respool_slow_tasks_current{kind}` (through
//! [`Metrics::attach_slow`](crate::metrics::Metrics::attach_slow) or
//! [`SlowTasks::collector`]), a call of each [`SlowTasks::on_slow`]
//! callback (on the watchdog thread), and an entry in [`SlowTasks::current`]
//! (while it lasts) and [`SlowTasks::recent`] (the last
//! [`SlowConfig::max_reports`]). With [`SlowConfig::cancel_slow`], a slow
//! running task that has a handle is asked to stop through the
//! [`Canceller`] of its `Started` event (a cooperative task sees
//! [`TaskContext::is_cancelled`](respool::TaskContext::is_cancelled)).
//!
//! # Defaults, and why
//!
//! A pool's tasks block and compute by design, so an absolute "slow poll"
//! (tokio-metrics: 50 us; tokio-console: busy >= 1 s for one poll) is the
//! wrong yardstick: a 2 s image resize is normal and a 2 s config lookup is
//! not. The default is relative: 3x the class's p95 (a run past its own
//! 95th percentile by a factor of three is an outlier, not the tail), after
//! 20 runs (fewer give no p95), never under a floor of 1 s (tokio-console's
//! figure: below it, preemption and page faults on a loaded machine make
//! tiny classes look "slow"). Unclassified tasks: 10 s. Waiters: 30 s in
//! the queue (admission waits for capacity are expected; half a minute is
//! a waiter that will likely never fit or a starved queue). The watchdog
//! checks every 100 ms: detection comes at most that late, 10 wake-ups a
//! second while tasks are in flight, none while idle.
//!
//! # Cost on the task's path
//!
//! One lock of one of 16 mutex-sharded maps at submission, start and end
//! (a per-event mutex: the watchdog must enumerate what is in flight and
//! keep each running task's canceller), a read lock of the class table at
//! submission, and a class's sketch mutex when a classified task finishes.
//! The maps are sized at construction (`max_tracked`) and never grow:
//! tasks past it are not tracked (counted in [`SlowTasks::untracked`]).
//!
//! One detector per pool: task ids and event times are the pool's own.
//! A callback that holds the detector keeps it (and its thread) alive.
//!
//! # Examples
//!
//! ```
//! use std::sync::{Arc, mpsc};
//! use std::time::Duration;
//! use respool::Pool;
//! use respool_observe::slow::{SlowConfig, SlowKind, SlowTasks};
//!
//! let mut config = SlowConfig::default();
//! config.unclassified = Duration::from_millis(1);
//! config.check_interval = Duration::from_millis(1);
//! config.cancel_slow = true;
//! let slow = SlowTasks::new(config)?;
//! let (tx, rx) = mpsc::channel();
//! let tx = std::sync::Mutex::new(tx);
//! slow.on_slow(move |r| drop(tx.lock().unwrap().send(r.clone())));
//! let pool = Pool::builder().workers(1).observer(slow.clone()).build()?;
//! // A cooperative task that runs until it is asked to stop.
//! let task = pool.task().spawn(|ctx| while !ctx.is_cancelled() { std::thread::yield_now() })?;
//! let report = rx.recv()?;
//! assert_eq!(report.kind, SlowKind::Run);
//! assert!(report.cancelled);
//! task.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use respool::Canceller;
use respool::observe::{Event, EventKind, Observer, TaskId};
use serde_json::json;

use crate::metrics::{OTHER_CLASS, counter_family, gauge_family};

/// Shards of the task table.
const SHARDS: usize = 16;
/// Runs kept per class for its percentiles.
const WINDOW: usize = 128;

/// Which time passed its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlowKind {
    /// Run time (started, not ended): a slow task.
    Run,
    /// Queue time (submitted, not started): a stuck waiter.
    Queue,
}

impl SlowKind {
    /// `"run"` or `"queue"`, the label value and the JSON value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SlowKind::Run => "run",
            SlowKind::Queue => "queue",
        }
    }

    fn index(self) -> usize {
        match self {
            SlowKind::Run => 0,
            SlowKind::Queue => 1,
        }
    }
}

impl fmt::Display for SlowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One detection.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SlowReport {
    /// The task.
    pub task: TaskId,
    /// Its class (`_other` for a class past the detector's class cap).
    pub class: Option<Arc<str>>,
    /// Run time or queue time.
    pub kind: SlowKind,
    /// How long it had run (or waited) when reported; in
    /// [`SlowTasks::current`], until now.
    pub elapsed: Duration,
    /// The threshold it passed.
    pub threshold: Duration,
    /// The worker running it (a slow running task).
    pub worker: Option<usize>,
    /// Whether the detector asked it to stop ([`SlowConfig::cancel_slow`]
    /// and a task with a handle).
    pub cancelled: bool,
}

impl SlowReport {
    /// The report as the dashboard's JSON object: `{"task", "class",
    /// "kind", "elapsed_s", "threshold_s", "worker", "cancelled"}`.
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        json!({
            "task": self.task.get(),
            "class": self.class.as_deref(),
            "kind": self.kind.as_str(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "threshold_s": self.threshold.as_secs_f64(),
            "worker": self.worker,
            "cancelled": self.cancelled,
        })
    }
}

/// What a class's learned run time is multiplied by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// `x` times the class's p95 run time.
    P95Multiple(f64),
    /// `x` times the class's median run time (GNU parallel's
    /// `--timeout 200%` is `MedianMultiple(2.0)`; see
    /// [`Threshold::percent_of_median`]).
    MedianMultiple(f64),
}

impl Threshold {
    /// GNU parallel's `--timeout P%`: `P` percent of the median.
    #[must_use]
    pub fn percent_of_median(percent: u32) -> Threshold {
        Threshold::MedianMultiple(f64::from(percent) / 100.0)
    }

    fn multiple(self) -> f64 {
        match self {
            Threshold::P95Multiple(x) | Threshold::MedianMultiple(x) => x,
        }
    }
}

/// How [`SlowTasks`] decides (see the [module documentation](self) for the
/// defaults and why).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SlowConfig {
    /// The multiple of a class's learned run time (default
    /// `P95Multiple(3.0)`; positive, at most 1e6).
    pub threshold: Threshold,
    /// The least a learned threshold can be (default 1 s).
    pub floor: Duration,
    /// The run-time threshold of unclassified tasks and of classes with
    /// fewer than `min_runs` runs (default 10 s; not zero).
    pub unclassified: Duration,
    /// Runs a class needs before its learned threshold applies (default 20;
    /// 1 to 128).
    pub min_runs: u32,
    /// Queue time after which a waiter is stuck (default 30 s; not zero).
    pub queue_threshold: Duration,
    /// How often the watchdog checks while tasks are in flight (default
    /// 100 ms; 1 ms to 60 s).
    pub check_interval: Duration,
    /// Ask a slow running task to stop through its canceller (default
    /// `false`).
    pub cancel_slow: bool,
    /// Classes learned (default 64; 1 to 4096).
    pub max_classes: usize,
    /// Tasks tracked at once (default 16384; 16 to 4194304).
    pub max_tracked: usize,
    /// Reports kept in [`SlowTasks::recent`], and listed at most by
    /// [`SlowTasks::current`] (default 64; 1 to 10000).
    pub max_reports: usize,
}

impl Default for SlowConfig {
    fn default() -> SlowConfig {
        SlowConfig {
            threshold: Threshold::P95Multiple(3.0),
            floor: Duration::from_secs(1),
            unclassified: Duration::from_secs(10),
            min_runs: 20,
            queue_threshold: Duration::from_secs(30),
            check_interval: Duration::from_millis(100),
            cancel_slow: false,
            max_classes: 64,
            max_tracked: 16384,
            max_reports: 64,
        }
    }
}

impl SlowConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`SlowError::Config`] naming the field and what is wrong.
    pub fn validate(&self) -> Result<(), SlowError> {
        let bad = |field: &'static str, why: String| Err(SlowError::Config { field, why });
        let x = self.threshold.multiple();
        if !(x.is_finite() && x > 0.0 && x <= 1e6) {
            return bad("threshold", format!("multiple {x} is not in (0, 1e6]"));
        }
        if self.unclassified.is_zero() {
            return bad("unclassified", "is zero".into());
        }
        if self.queue_threshold.is_zero() {
            return bad("queue_threshold", "is zero".into());
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.check_interval) {
            return bad(
                "check_interval",
                format!("{:?} is not in 1 ms..=60 s", self.check_interval),
            );
        }
        if !(1..=WINDOW as u32).contains(&self.min_runs) {
            return bad(
                "min_runs",
                format!("{} is not in 1..={WINDOW}", self.min_runs),
            );
        }
        for (field, v, lo, hi) in [
            ("max_classes", self.max_classes, 1, 4096),
            ("max_tracked", self.max_tracked, 16, 1 << 22),
            ("max_reports", self.max_reports, 1, 10_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return bad(field, format!("{v} is not in {lo}..={hi}"));
            }
        }
        Ok(())
    }
}

/// Why a [`SlowTasks`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum SlowError {
    /// A [`SlowConfig`] field is out of range.
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The watchdog thread could not be started.
    Thread(std::io::Error),
}

impl fmt::Display for SlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlowError::Config { field, why } => {
                write!(f, "slow-task detector configuration: {field}: {why}")
            }
            SlowError::Thread(e) => write!(f, "starting the slow-task watchdog thread: {e}"),
        }
    }
}

impl std::error::Error for SlowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SlowError::Thread(e) => Some(e),
            SlowError::Config { .. } => None,
        }
    }
}

/// A class's learned run times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassRuns {
    /// Runs learned (finished, not stopped by the detector).
    pub runs: u64,
    /// Median run time over the last 128.
    pub median: Duration,
    /// 95th percentile run time over the last 128.
    pub p95: Duration,
}

/// The last runs of a class.
struct Sketch {
    ring: [u64; WINDOW],
    n: u64,
    p50: u64,
    p95: u64,
}

impl Sketch {
    fn push(&mut self, ns: u64) {
        #[allow(clippy::cast_possible_truncation)]
        if let Some(r) = self.ring.get_mut((self.n % WINDOW as u64) as usize) {
            *r = ns;
        }
        self.n += 1;
        // Every run while few, then every 8th (a sort of 128 values).
        if self.n <= 32 || self.n % 8 == 0 {
            #[allow(clippy::cast_possible_truncation)]
            let k = self.n.min(WINDOW as u64) as usize;
            let mut v = self.ring;
            let v = &mut v[..k];
            v.sort_unstable();
            let at = |q: f64| {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                let i = ((q * k as f64).ceil() as usize).clamp(1, k) - 1;
                v.get(i).copied().unwrap_or(0)
            };
            self.p50 = at(0.5);
            self.p95 = at(0.95);
        }
    }
}

/// A class slot: its name, sketch, and current run threshold (0: none
/// learned yet).
struct ClassSlot {
    name: OnceLock<Arc<str>>,
    sketch: Mutex<Sketch>,
    threshold_ns: AtomicU64,
}

/// One task in flight.
struct Tracked {
    task: TaskId,
    kind: SlowKind,
    since_ns: u64,
    threshold_ns: u64,
    /// Class slot (`None`: unclassified or past the cap).
    class: Option<usize>,
    class_name: Option<Arc<str>>,
    worker: Option<usize>,
    canceller: Option<Canceller>,
    reported: bool,
    cancelled: bool,
}

impl Tracked {
    fn report(&self, now_ns: u64) -> SlowReport {
        SlowReport {
            task: self.task,
            class: self.class_name.clone(),
            kind: self.kind,
            elapsed: Duration::from_nanos(now_ns.saturating_sub(self.since_ns)),
            threshold: Duration::from_nanos(self.threshold_ns),
            worker: self.worker,
            cancelled: self.cancelled,
        }
    }
}

type Callback = Arc<dyn Fn(&SlowReport) + Send + Sync>;

struct Inner {
    cfg: SlowConfig,
    epoch: OnceLock<Instant>,
    shards: Box<[Mutex<FxHashMap<u64, Tracked>>]>,
    shard_cap: usize,
    /// Set by the watchdog before it looks whether anything is tracked and
    /// blocks; an insert that sees it wakes the watchdog (see `watch`).
    idle: AtomicBool,
    untracked: AtomicU64,
    class_index: RwLock<HashMap<Arc<str>, usize>>,
    class_full: AtomicBool,
    classes: Box<[ClassSlot]>,
    other: Arc<str>,
    totals: [AtomicU64; 2],
    now_slow: [AtomicI64; 2],
    recent: Mutex<VecDeque<SlowReport>>,
    callbacks: RwLock<Vec<Callback>>,
    stop: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
}

/// The slow-task and stuck-waiter detector (see the
/// [module documentation](self)).
pub struct SlowTasks {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for SlowTasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlowTasks")
            .field("config", &self.inner.cfg)
            .field("tracked", &self.inner.tracked())
            .finish_non_exhaustive()
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Inner {
    #[allow(clippy::cast_possible_truncation)]
    fn shard(&self, id: u64) -> Option<&Mutex<FxHashMap<u64, Tracked>>> {
        self.shards.get((id % SHARDS as u64) as usize)
    }

    /// Now on the pool's clock (estimated from the first event).
    fn now_ns(&self) -> u64 {
        self.epoch.get().map_or(0, |e| ns(e.elapsed()))
    }

    /// The slot of `class`, taking one if there is room.
    fn class_slot(&self, class: &str) -> Option<usize> {
        if let Some(&i) = self
            .class_index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(class)
        {
            return Some(i);
        }
        if self.class_full.load(Relaxed) {
            return None;
        }
        let mut w = self
            .class_index
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(&i) = w.get(class) {
            return Some(i);
        }
        let i = w.len();
        let slot = self.classes.get(i)?;
        let name: Arc<str> = class.into();
        let _ = slot.name.set(Arc::clone(&name));
        w.insert(name, i);
        if w.len() >= self.classes.len() {
            self.class_full.store(true, Relaxed);
        }
        Some(i)
    }

    /// The run threshold of a task of class slot `class`.
    fn run_threshold(&self, class: Option<usize>) -> u64 {
        class
            .and_then(|c| self.classes.get(c))
            .map(|c| c.threshold_ns.load(Relaxed))
            .filter(|t| *t > 0)
            .unwrap_or_else(|| ns(self.cfg.unclassified))
    }

    fn learn(&self, class: usize, run_ns: u64) {
        let Some(c) = self.classes.get(class) else {
            return;
        };
        let mut s = c.sketch.lock().unwrap_or_else(PoisonError::into_inner);
        s.push(run_ns);
        if s.n >= u64::from(self.cfg.min_runs) {
            let base = match self.cfg.threshold {
                Threshold::P95Multiple(_) => s.p95,
                Threshold::MedianMultiple(_) => s.p50,
            };
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let t = (base as f64 * self.cfg.threshold.multiple()).min(u64::MAX as f64) as u64;
            c.threshold_ns
                .store(t.max(ns(self.cfg.floor)).max(1), Relaxed);
        }
    }

    /// Tracks `t` under `id` (unless the table is full).
    fn insert(&self, id: u64, t: Tracked) {
        let Some(shard) = self.shard(id) else { return };
        {
            let mut m = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if m.len() >= self.shard_cap && !m.contains_key(&id) {
                drop(m);
                self.untracked.fetch_add(1, Relaxed);
                return;
            }
            if m.insert(id, t).is_some() {
                return;
            }
        }
        // Dekker with the watchdog (`watch`): the insert above, a full
        // fence, then its flag; the watchdog sets its flag, then looks at
        // the maps. One of the two sees the other, so the watchdog never
        // blocks with a task tracked. No shared counter is written per
        // task (workers bouncing one cost more than the rest of the event).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if self.idle.load(std::sync::atomic::Ordering::SeqCst) {
            // Under its mutex, so that the wake-up is not lost between its
            // check and its wait.
            let _g = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake.notify_all();
        }
    }

    /// Tasks tracked now (the sum over the maps).
    fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    fn remove(&self, id: u64) -> Option<Tracked> {
        let t = self
            .shard(id)?
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)?;
        if t.reported {
            if let Some(g) = self.now_slow.get(t.kind.index()) {
                g.fetch_sub(1, Relaxed);
            }
        }
        Some(t)
    }

    fn class_name(&self, slot: Option<usize>, had_class: bool) -> Option<Arc<str>> {
        match slot.and_then(|c| self.classes.get(c)?.name.get()) {
            Some(n) => Some(Arc::clone(n)),
            None if had_class => Some(Arc::clone(&self.other)),
            None => None,
        }
    }

    /// One check: reports what passed its threshold since the last.
    fn check(&self) {
        let now = self.now_ns();
        let mut found: Vec<(SlowReport, Option<Canceller>)> = Vec::new();
        for shard in &self.shards {
            let mut m = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for t in m.values_mut() {
                if t.reported || now.saturating_sub(t.since_ns) < t.threshold_ns {
                    continue;
                }
                t.reported = true;
                let canceller = if t.kind == SlowKind::Run && self.cfg.cancel_slow {
                    t.canceller.take()
                } else {
                    None
                };
                t.cancelled = canceller.is_some();
                if let Some(g) = self.now_slow.get(t.kind.index()) {
                    g.fetch_add(1, Relaxed);
                }
                found.push((t.report(now), canceller));
            }
        }
        for (report, canceller) in found {
            if let Some(c) = canceller {
                // It has started: this only raises the flag it reads.
                let _ = c.cancel();
            }
            if let Some(c) = self.totals.get(report.kind.index()) {
                c.fetch_add(1, Relaxed);
            }
            tracing::warn!(
                target: "respool_observe::slow",
                task = report.task.get(),
                class = report.class.as_deref(),
                kind = report.kind.as_str(),
                elapsed_s = report.elapsed.as_secs_f64(),
                threshold_s = report.threshold.as_secs_f64(),
                worker = report.worker,
                cancelled = report.cancelled,
                "{}",
                match report.kind {
                    SlowKind::Run => "slow task: its run time passed its threshold",
                    SlowKind::Queue => "stuck waiter: its queue time passed its threshold",
                }
            );
            {
                let mut r = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
                if r.len() >= self.cfg.max_reports {
                    r.pop_front();
                }
                r.push_back(report.clone());
            }
            let callbacks: Vec<Callback> = self
                .callbacks
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for cb in callbacks {
                // A panicking callback must not end the watchdog.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&report)));
            }
        }
    }

    /// The watchdog: checks every `check_interval` while anything is
    /// tracked, blocks while nothing is, ends when told to stop.
    fn watch(&self) {
        loop {
            {
                let mut g = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if self.stop.load(Relaxed) {
                        return;
                    }
                    // Flag first, then look (see `insert`).
                    self.idle.store(true, std::sync::atomic::Ordering::SeqCst);
                    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                    if self.tracked() > 0 {
                        self.idle.store(false, Relaxed);
                        break;
                    }
                    g = self.wake.wait(g).unwrap_or_else(PoisonError::into_inner);
                }
                // Sleep one interval (a wake-up for a new task does not
                // shorten it; only stopping does).
                let until = Instant::now() + self.cfg.check_interval;
                loop {
                    if self.stop.load(Relaxed) {
                        return;
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    g = self
                        .wake
                        .wait_timeout(g, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
            self.check();
        }
    }
}

impl SlowTasks {
    /// A detector set up by `config`, with its watchdog thread started.
    ///
    /// # Errors
    ///
    /// [`SlowError::Config`] when `config` is out of range
    /// ([`SlowConfig::validate`]); [`SlowError::Thread`] when the thread
    /// cannot be started.
    pub fn new(config: SlowConfig) -> Result<Arc<SlowTasks>, SlowError> {
        config.validate()?;
        let shard_cap = config.max_tracked.div_ceil(SHARDS);
        let inner = Arc::new(Inner {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(FxHashMap::with_capacity_and_hasher(
                        shard_cap,
                        rustc_hash::FxBuildHasher,
                    ))
                })
                .collect(),
            shard_cap,
            idle: AtomicBool::new(false),
            untracked: AtomicU64::new(0),
            class_index: RwLock::new(HashMap::with_capacity(config.max_classes)),
            class_full: AtomicBool::new(false),
            classes: (0..config.max_classes)
                .map(|_| ClassSlot {
                    name: OnceLock::new(),
                    sketch: Mutex::new(Sketch {
                        ring: [0; WINDOW],
                        n: 0,
                        p50: 0,
                        p95: 0,
                    }),
                    threshold_ns: AtomicU64::new(0),
                })
                .collect(),
            other: OTHER_CLASS.into(),
            totals: [AtomicU64::new(0), AtomicU64::new(0)],
            now_slow: [AtomicI64::new(0), AtomicI64::new(0)],
            recent: Mutex::new(VecDeque::with_capacity(config.max_reports)),
            callbacks: RwLock::new(Vec::new()),
            stop: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            epoch: OnceLock::new(),
            cfg: config,
        });
        let watched = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("respool-slow".into())
            .spawn(move || watched.watch())
            .map_err(SlowError::Thread)?;
        Ok(Arc::new(SlowTasks {
            inner,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SlowConfig {
        &self.inner.cfg
    }

    /// Calls `f` with each report, on the watchdog thread (keep it short;
    /// a panic in it is caught).
    pub fn on_slow(&self, f: impl Fn(&SlowReport) + Send + Sync + 'static) {
        self.inner
            .callbacks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(f));
    }

    /// The tasks slow (or stuck) now, with their time until now; at most
    /// [`SlowConfig::max_reports`], longest first.
    #[must_use]
    pub fn current(&self) -> Vec<SlowReport> {
        let now = self.inner.now_ns();
        let mut v = Vec::new();
        for shard in &self.inner.shards {
            let m = shard.lock().unwrap_or_else(PoisonError::into_inner);
            v.extend(m.values().filter(|t| t.reported).map(|t| t.report(now)));
        }
        v.sort_by_key(|r| std::cmp::Reverse(r.elapsed));
        v.truncate(self.inner.cfg.max_reports);
        v
    }

    /// The last [`SlowConfig::max_reports`] reports, oldest first, as they
    /// were when made.
    #[must_use]
    pub fn recent(&self) -> Vec<SlowReport> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// For the dashboard: `{"slow":[...]}`, the [current](Self::current)
    /// ones (time until now) and then the [recent](Self::recent) ones that
    /// are no longer current, newest first, each as [`SlowReport::json`].
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        let current = self.current();
        let mut all: Vec<serde_json::Value> = current.iter().map(SlowReport::json).collect();
        for r in self.recent().iter().rev() {
            if !current.iter().any(|c| c.task == r.task && c.kind == r.kind) {
                all.push(r.json());
            }
        }
        json!({ "slow": all })
    }

    /// Detections so far of `kind` (`respool_slow_tasks_total`).
    #[must_use]
    pub fn detected(&self, kind: SlowKind) -> u64 {
        self.inner
            .totals
            .get(kind.index())
            .map_or(0, |c| c.load(Relaxed))
    }

    /// Tasks left untracked because the table was full.
    #[must_use]
    pub fn untracked(&self) -> u64 {
        self.inner.untracked.load(Relaxed)
    }

    /// The run-time threshold a task of `class` starting now gets.
    #[must_use]
    pub fn threshold_for(&self, class: Option<&str>) -> Duration {
        let slot = class.and_then(|c| {
            self.inner
                .class_index
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(c)
                .copied()
        });
        Duration::from_nanos(self.inner.run_threshold(slot))
    }

    /// What the detector learned of `class`'s run times (`None`: nothing
    /// yet, or a class past the cap).
    #[must_use]
    pub fn learned(&self, class: &str) -> Option<ClassRuns> {
        let slot = *self
            .inner
            .class_index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(class)?;
        let s = self
            .inner
            .classes
            .get(slot)?
            .sketch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (s.n > 0).then(|| ClassRuns {
            runs: s.n,
            median: Duration::from_nanos(s.p50),
            p95: Duration::from_nanos(s.p95),
        })
    }

    /// A [`Collector`] of this detector's families, for a registry of
    /// yours (or attach it to [`Metrics`](crate::metrics::Metrics) with
    /// [`Metrics::attach_slow`](crate::metrics::Metrics::attach_slow); not
    /// both in one registry).
    #[must_use]
    pub fn collector(self: &Arc<Self>) -> SlowCollector {
        SlowCollector {
            slow: Arc::clone(self),
        }
    }

    /// Writes `respool_slow_tasks_total{kind}` and
    /// `respool_slow_tasks_current{kind}`.
    pub(crate) fn encode_families(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let kinds = [SlowKind::Run, SlowKind::Queue];
        counter_family(
            enc,
            "respool_slow_tasks",
            "Slow running tasks (kind=run) and stuck waiters (kind=queue) detected.",
            "kind",
            kinds.map(|k| (k.as_str(), self.detected(k))),
        )?;
        gauge_family(
            enc,
            "respool_slow_tasks_current",
            "Tasks slow (kind=run) or stuck waiting (kind=queue) now.",
            "kind",
            kinds.map(|k| {
                let v = self
                    .inner
                    .now_slow
                    .get(k.index())
                    .map_or(0, |g| g.load(Relaxed));
                (k.as_str(), v.max(0))
            }),
        )
    }

    /// Stops the watchdog thread (detection ends; events are still
    /// tracked). Also done when the detector is dropped.
    pub fn stop(&self) {
        self.inner.stop.store(true, Relaxed);
        {
            let _g = self
                .inner
                .sleep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.inner.wake.notify_all();
        }
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            // A callback that stops the detector runs on the watchdog: it
            // ends by itself once the callback returns.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Whether the watchdog was stopped.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.inner.stop.load(Relaxed)
    }
}

impl Drop for SlowTasks {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Observer for SlowTasks {
    fn on_event(&self, e: &Event<'_>) {
        let inner = &*self.inner;
        let Some(task) = e.task else { return };
        let id = task.get();
        let now = ns(e.at);
        match e.kind {
            EventKind::Submitted { .. } => {
                let _ = inner.epoch.get_or_init(|| {
                    let i = Instant::now();
                    i.checked_sub(e.at).unwrap_or(i)
                });
                let class = e.class.and_then(|c| inner.class_slot(c));
                inner.insert(
                    id,
                    Tracked {
                        task,
                        kind: SlowKind::Queue,
                        since_ns: now,
                        threshold_ns: ns(inner.cfg.queue_threshold),
                        class,
                        class_name: inner.class_name(class, e.class.is_some()),
                        worker: None,
                        canceller: None,
                        reported: false,
                        cancelled: false,
                    },
                );
            }
            EventKind::Started {
                worker, canceller, ..
            } => {
                let (class, class_name) = match inner.remove(id) {
                    Some(t) => (t.class, t.class_name),
                    None => {
                        let c = e.class.and_then(|c| inner.class_slot(c));
                        (c, inner.class_name(c, e.class.is_some()))
                    }
                };
                inner.insert(
                    id,
                    Tracked {
                        task,
                        kind: SlowKind::Run,
                        since_ns: now,
                        threshold_ns: inner.run_threshold(class),
                        class,
                        class_name,
                        worker: Some(worker),
                        canceller: if inner.cfg.cancel_slow {
                            canceller.cloned()
                        } else {
                            None
                        },
                        reported: false,
                        cancelled: false,
                    },
                );
            }
            EventKind::Retried { delay, .. } => {
                if let Some(t) = inner.remove(id) {
                    inner.insert(
                        id,
                        Tracked {
                            kind: SlowKind::Queue,
                            since_ns: now.saturating_add(ns(delay)),
                            threshold_ns: ns(inner.cfg.queue_threshold),
                            worker: None,
                            canceller: None,
                            reported: false,
                            cancelled: false,
                            ..t
                        },
                    );
                }
            }
            ref k if k.is_terminal() => {
                if let Some(t) = inner.remove(id) {
                    if let (EventKind::Finished { .. }, SlowKind::Run, false, Some(c)) =
                        (k, t.kind, t.cancelled, t.class)
                    {
                        inner.learn(c, now.saturating_sub(t.since_ns));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Reads a [`SlowTasks`] at each scrape (see [`SlowTasks::collector`]).
#[derive(Debug)]
pub struct SlowCollector {
    slow: Arc<SlowTasks>,
}

impl Collector for SlowCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        self.slow.encode_families(&mut enc)
    }
}
