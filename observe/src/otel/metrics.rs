//! [`OtelMetrics`]: the metric families through an OpenTelemetry [`Meter`]
//! (see the [module documentation](super) for the names).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    AsyncInstrument, Histogram, Meter, ObservableCounter, ObservableGauge, ObservableUpDownCounter,
};
use respool::core::Unit;
use respool::observe::{Event, EventKind, Observer};
use respool::{Dim, PoolSnapshot};

use crate::SnapshotSource;
use crate::outcome::{OUTCOMES, outcome_index};

/// Admission results, in the order [`admission_values`] returns them.
const RESULTS: [&str; 5] = [
    "accepted",
    "deferred",
    "rejected",
    "admitted_after_wait",
    "refused_after_wait",
];

/// The blocking-dimension labels: every [`Dim`] by index, then `queue`.
const BLOCKERS: usize = Dim::COUNT + 1;
const QUEUE: usize = Dim::COUNT;

/// How many recent runs of a class its memory slack is the mean of.
const SLACK_RUNS: usize = 16;

/// Label of the classes past the cap.
pub const OTHER_CLASS: &str = "_other";

/// Default cap on distinct `class` label values.
pub const DEFAULT_MAX_CLASSES: usize = 64;

/// Default number of in-flight tasks whose timings are kept.
pub const DEFAULT_TRACKED_TASKS: usize = 16_384;

/// The most in-flight task slots one may ask for (about 64 MiB).
pub const MAX_TRACKED_TASKS: usize = 1 << 20;

/// How long one snapshot serves the observable instruments of a collection.
const SNAPSHOT_TTL: Duration = Duration::from_millis(100);

/// Histogram bounds for queue, resource-wait and run times, in seconds:
/// 10 us to 5 minutes.
const SECONDS_BOUNDS: [f64; 17] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0, 60.0, 300.0,
];

/// Coarse bounds for the per-class run time (one series per class).
const CLASS_SECONDS_BOUNDS: [f64; 7] = [0.000_1, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0];

/// Reports a counter from the observer's state.
type StateFn = Box<dyn Fn(&State, &dyn AsyncInstrument<u64>) + Send + Sync>;
/// Reports a gauge from a snapshot.
type SnapFn = Box<dyn Fn(&PoolSnapshot, &dyn AsyncInstrument<u64>) + Send + Sync>;

fn admission_values(s: &PoolSnapshot) -> [u64; 5] {
    let a = &s.admission;
    [
        a.accepted,
        a.deferred,
        a.rejected,
        a.admitted_after_wait,
        a.rejected_after_wait,
    ]
}

fn blocker_name(i: usize) -> &'static str {
    Dim::from_index(i).map_or("queue", Dim::name)
}

/// Configures an [`OtelMetrics`].
#[derive(Debug)]
pub struct OtelMetricsBuilder<'m> {
    meter: &'m Meter,
    source: SnapshotSource,
    max_classes: usize,
    tracked_tasks: usize,
}

impl OtelMetricsBuilder<'_> {
    /// The most distinct `class` label values (default
    /// [`DEFAULT_MAX_CLASSES`]); later classes all count under
    /// `class="_other"`. Zero puts every class under `_other`.
    #[must_use]
    pub fn max_classes(mut self, n: usize) -> Self {
        self.max_classes = n;
        self
    }

    /// How many in-flight tasks' timings are kept (default
    /// [`DEFAULT_TRACKED_TASKS`], clamped to `1..=`[`MAX_TRACKED_TASKS`]).
    /// Task ids share the slots modulo this number: a task whose slot was
    /// taken by a task submitted this many ids later (more tasks in flight
    /// than slots) loses its histogram samples, and
    /// [`OtelMetrics::untracked`] counts it. Counters and gauges are exact
    /// whatever this is.
    #[must_use]
    pub fn tracked_tasks(mut self, n: usize) -> Self {
        self.tracked_tasks = n;
        self
    }

    /// Registers the instruments with the meter.
    #[must_use]
    pub fn build(self) -> Arc<OtelMetrics> {
        OtelMetrics::build(self)
    }
}

/// What is kept of one in-flight task (one slot of the ring).
#[derive(Default)]
struct Slot {
    /// The task id (0: empty; ids start at 1).
    id: u64,
    submitted: Duration,
    /// When it first waited for resources in its current wait.
    deferred: Option<Duration>,
    /// The blocking label it is counted under in `waiting`.
    waiting: Option<usize>,
    /// When its current attempt started (it is counted in `running`).
    started: Option<Duration>,
    /// Whether any attempt started (the queue wait is recorded once).
    ever_started: bool,
    /// Memory reserved (at admission, plus growth).
    reserved_memory: u64,
}

/// One class's own series.
struct ClassEntry {
    attrs: [KeyValue; 1],
    runs: AtomicU64,
    slack: [AtomicI64; SLACK_RUNS],
    slack_n: AtomicU64,
}

impl ClassEntry {
    fn new(label: &str) -> ClassEntry {
        ClassEntry {
            attrs: [KeyValue::new("class", label.to_owned())],
            runs: AtomicU64::new(0),
            slack: std::array::from_fn(|_| AtomicI64::new(0)),
            slack_n: AtomicU64::new(0),
        }
    }

    fn push_slack(&self, slack: i64) {
        let n = self.slack_n.fetch_add(1, Relaxed);
        // The index is below SLACK_RUNS, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let i = (n % SLACK_RUNS as u64) as usize;
        self.slack[i].store(slack, Relaxed);
    }

    /// Mean slack over the recent runs, if any.
    fn mean_slack(&self) -> Option<i64> {
        let n = self.slack_n.load(Relaxed).min(SLACK_RUNS as u64);
        if n == 0 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)]
        let sum: i128 = self.slack[..n as usize]
            .iter()
            .map(|s| i128::from(s.load(Relaxed)))
            .sum();
        #[allow(clippy::cast_possible_truncation)]
        Some((sum / i128::from(n)) as i64)
    }
}

/// Classes by key, up to the cap; the rest share `other`.
struct Classes {
    max: usize,
    by_key: RwLock<HashMap<Box<str>, Arc<ClassEntry>>>,
    other: Arc<ClassEntry>,
}

impl Classes {
    fn get(&self, key: &str) -> Arc<ClassEntry> {
        {
            let map = self.by_key.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(e) = map.get(key) {
                return Arc::clone(e);
            }
            if map.len() >= self.max {
                return Arc::clone(&self.other);
            }
        }
        let mut map = self.by_key.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get(key) {
            return Arc::clone(e);
        }
        if map.len() >= self.max {
            return Arc::clone(&self.other);
        }
        let e = Arc::new(ClassEntry::new(key));
        map.insert(key.into(), Arc::clone(&e));
        e
    }

    /// Every entry with its own label, then `other`.
    fn all(&self) -> Vec<Arc<ClassEntry>> {
        let map = self.by_key.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = map.values().cloned().collect();
        v.push(Arc::clone(&self.other));
        v
    }
}

/// Counters and gauges kept from events, read by the observable instruments.
struct State {
    submitted: AtomicU64,
    outcomes: [AtomicU64; OUTCOMES.len()],
    deferred: [AtomicU64; BLOCKERS],
    waiting: [AtomicI64; BLOCKERS],
    running: AtomicI64,
    grown: AtomicU64,
    grown_bytes: AtomicU64,
    retries: AtomicU64,
    untracked: AtomicU64,
    slots: Box<[Mutex<Slot>]>,
    classes: Classes,
    source: SnapshotSource,
    snapshot: Mutex<Option<(Instant, Option<Arc<PoolSnapshot>>)>>,
    // Pre-built attribute sets.
    outcome_attrs: [[KeyValue; 1]; OUTCOMES.len()],
    blocker_attrs: [[KeyValue; 1]; BLOCKERS],
    result_attrs: [[KeyValue; 1]; RESULTS.len()],
}

impl State {
    /// One snapshot serves every instrument of a collection (they are read
    /// one after another within [`SNAPSHOT_TTL`]).
    fn snapshot(&self) -> Option<Arc<PoolSnapshot>> {
        let mut cached = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, s)) = cached.as_ref() {
            if at.elapsed() < SNAPSHOT_TTL {
                return s.clone();
            }
        }
        let s = self.source.take().map(Arc::new);
        *cached = Some((Instant::now(), s.clone()));
        s
    }

    fn slot(&self, id: u64) -> &Mutex<Slot> {
        // The modulus is at most MAX_TRACKED_TASKS, so the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        &self.slots[(id % self.slots.len() as u64) as usize]
    }

    fn leave_waiting(&self, slot: &mut Slot) {
        if let Some(w) = slot.waiting.take() {
            self.waiting[w].fetch_sub(1, Relaxed);
        }
        slot.deferred = None;
    }

    fn leave_running(&self, slot: &mut Slot) -> Option<Duration> {
        let started = slot.started.take();
        if started.is_some() {
            self.running.fetch_sub(1, Relaxed);
        }
        started
    }
}

/// The metric families of a pool through an OpenTelemetry [`Meter`]: an
/// [`Observer`] to install on the pool (see the [module
/// documentation](super)).
///
/// Counters and gauges are kept in relaxed atomics and read by observable
/// instruments at collection time; the histograms are the SDK's, recorded
/// from events with pre-built attribute sets (no allocation per event).
/// Per-task timings live in a fixed ring of slots, each behind its own
/// (uncontended) lock, taken once per event of a task.
pub struct OtelMetrics {
    state: Arc<State>,
    queue_wait: Histogram<f64>,
    resource_wait: Histogram<f64>,
    run: Histogram<f64>,
    class_run: Histogram<f64>,
    // Kept so that the callbacks live as long as this observer.
    _counters: Vec<ObservableCounter<u64>>,
    _gauges_u64: Vec<ObservableGauge<u64>>,
    _gauges_i64: Vec<ObservableGauge<i64>>,
    _gauges_f64: Vec<ObservableGauge<f64>>,
    _updown: Vec<ObservableUpDownCounter<i64>>,
}

impl std::fmt::Debug for OtelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelMetrics")
            .field("tracked_tasks", &self.state.slots.len())
            .field("max_classes", &self.state.classes.max)
            .finish_non_exhaustive()
    }
}

impl OtelMetrics {
    /// Registers the families with `meter`, reading pool-wide figures from
    /// `source` at collection time; defaults for the class cap and the
    /// tracked tasks (see [`OtelMetrics::builder`]).
    #[must_use]
    pub fn new(meter: &Meter, source: SnapshotSource) -> Arc<OtelMetrics> {
        OtelMetrics::builder(meter, source).build()
    }

    /// The same, configured.
    #[must_use]
    pub fn builder(meter: &Meter, source: SnapshotSource) -> OtelMetricsBuilder<'_> {
        OtelMetricsBuilder {
            meter,
            source,
            max_classes: DEFAULT_MAX_CLASSES,
            tracked_tasks: DEFAULT_TRACKED_TASKS,
        }
    }

    /// Tasks whose histogram samples were lost because their slot was
    /// taken (see [`OtelMetricsBuilder::tracked_tasks`]).
    #[must_use]
    pub fn untracked(&self) -> u64 {
        self.state.untracked.load(Relaxed)
    }

    #[allow(clippy::too_many_lines)] // one registration per family
    fn build(b: OtelMetricsBuilder<'_>) -> Arc<OtelMetrics> {
        let slots = b.tracked_tasks.clamp(1, MAX_TRACKED_TASKS);
        let state = Arc::new(State {
            submitted: AtomicU64::new(0),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            deferred: std::array::from_fn(|_| AtomicU64::new(0)),
            waiting: std::array::from_fn(|_| AtomicI64::new(0)),
            running: AtomicI64::new(0),
            grown: AtomicU64::new(0),
            grown_bytes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
            slots: (0..slots).map(|_| Mutex::new(Slot::default())).collect(),
            classes: Classes {
                max: b.max_classes,
                by_key: RwLock::new(HashMap::new()),
                other: Arc::new(ClassEntry::new(OTHER_CLASS)),
            },
            source: b.source,
            snapshot: Mutex::new(None),
            outcome_attrs: std::array::from_fn(|i| [KeyValue::new("outcome", OUTCOMES[i])]),
            blocker_attrs: std::array::from_fn(|i| [KeyValue::new("dim", blocker_name(i))]),
            result_attrs: std::array::from_fn(|i| [KeyValue::new("result", RESULTS[i])]),
        });
        let m = b.meter;
        let histogram = |name: &'static str, help: &'static str, bounds: &[f64]| {
            m.f64_histogram(name)
                .with_description(help)
                .with_unit("s")
                .with_boundaries(bounds.to_vec())
                .build()
        };
        let queue_wait = histogram(
            "respool.queue_wait",
            "Time from submission to start (queue time), per started task.",
            &SECONDS_BOUNDS,
        );
        let resource_wait = histogram(
            "respool.resource_wait",
            "Time from deferral to admission (waiting for capacity), only tasks that waited.",
            &SECONDS_BOUNDS,
        );
        let run = histogram(
            "respool.run",
            "Time from start to the terminal event (run time), per started task.",
            &SECONDS_BOUNDS,
        );
        let class_run = histogram(
            "respool.class.run",
            "Run time of the tasks of a class.",
            &CLASS_SECONDS_BOUNDS,
        );

        let mut counters = Vec::new();
        let mut counter =
            |name: &'static str, help: &'static str, unit: &'static str, f: StateFn| {
                let s = Arc::clone(&state);
                counters.push(
                    m.u64_observable_counter(name)
                        .with_description(help)
                        .with_unit(unit)
                        .with_callback(move |o| f(&s, o))
                        .build(),
                );
            };
        counter(
            "respool.tasks.submitted",
            "Tasks submitted.",
            "{task}",
            Box::new(|s, o| o.observe(s.submitted.load(Relaxed), &[])),
        );
        counter(
            "respool.tasks",
            "Tasks ended, by outcome.",
            "{task}",
            Box::new(|s, o| {
                for (v, a) in s.outcomes.iter().zip(&s.outcome_attrs) {
                    o.observe(v.load(Relaxed), a);
                }
            }),
        );
        counter(
            "respool.tasks.deferred",
            "Deferrals, by the dimension that blocked (queue: behind earlier waiters).",
            "{task}",
            Box::new(|s, o| {
                for (v, a) in s.deferred.iter().zip(&s.blocker_attrs) {
                    let v = v.load(Relaxed);
                    if v > 0 {
                        o.observe(v, a);
                    }
                }
            }),
        );
        counter(
            "respool.reservations.grown",
            "Reservations grown while their task ran.",
            "{reservation}",
            Box::new(|s, o| o.observe(s.grown.load(Relaxed), &[])),
        );
        counter(
            "respool.reservation.grown",
            "Memory added to reservations while their tasks ran.",
            "By",
            Box::new(|s, o| o.observe(s.grown_bytes.load(Relaxed), &[])),
        );
        counter(
            "respool.retries",
            "Retries of retrying tasks.",
            "{retry}",
            Box::new(|s, o| o.observe(s.retries.load(Relaxed), &[])),
        );
        counter(
            "respool.class.runs",
            "Runs of the tasks of a class (tasks that started and ended).",
            "{run}",
            Box::new(|s, o| {
                for c in s.classes.all() {
                    let v = c.runs.load(Relaxed);
                    if v > 0 {
                        o.observe(v, &c.attrs);
                    }
                }
            }),
        );
        counter(
            "respool.admission.decisions",
            "Admission decisions, by result.",
            "{decision}",
            Box::new(|s, o| {
                if let Some(snap) = s.snapshot() {
                    for (v, a) in admission_values(&snap).iter().zip(&s.result_attrs) {
                        o.observe(*v, a);
                    }
                }
            }),
        );
        counter(
            "respool.class.predictions",
            "Predictions of a class's use compared with what was measured.",
            "{prediction}",
            Box::new(|s, o| class_accuracy(s, o, |p, _| p)),
        );
        counter(
            "respool.class.predictions_within_10pct",
            "Predictions of a class's use within 10% of what was measured.",
            "{prediction}",
            Box::new(|s, o| class_accuracy(s, o, |_, w| w)),
        );

        let mut updown = Vec::new();
        {
            let s = Arc::clone(&state);
            updown.push(
                m.i64_observable_up_down_counter("respool.tasks.waiting")
                    .with_description(
                        "Tasks waiting for resources now, by the dimension that blocks them.",
                    )
                    .with_unit("{task}")
                    .with_callback(move |o| {
                        for (v, a) in s.waiting.iter().zip(&s.blocker_attrs) {
                            o.observe(v.load(Relaxed).max(0), a);
                        }
                    })
                    .build(),
            );
            let s = Arc::clone(&state);
            updown.push(
                m.i64_observable_up_down_counter("respool.tasks.running")
                    .with_description("Tasks running now.")
                    .with_unit("{task}")
                    .with_callback(move |o| o.observe(s.running.load(Relaxed).max(0), &[]))
                    .build(),
            );
        }

        let mut gauges_u64 = Vec::new();
        let mut gauge = |name: &'static str, help: &'static str, unit: &'static str, f: SnapFn| {
            let s = Arc::clone(&state);
            gauges_u64.push(
                m.u64_observable_gauge(name)
                    .with_description(help)
                    .with_unit(unit)
                    .with_callback(move |o| {
                        if let Some(snap) = s.snapshot() {
                            f(&snap, o);
                        }
                    })
                    .build(),
            );
        };
        gauge(
            "respool.wait_queue.depth",
            "Tasks waiting for resources.",
            "{task}",
            Box::new(|s, o| o.observe(s.waiting as u64, &[])),
        );
        gauge(
            "respool.run_queue.depth",
            "Admitted tasks waiting for a worker.",
            "{task}",
            Box::new(|s, o| o.observe(s.queued as u64, &[])),
        );
        gauge(
            "respool.workers",
            "Worker threads.",
            "{worker}",
            Box::new(|s, o| o.observe(s.workers as u64, &[])),
        );
        let dim_attrs: Arc<[[KeyValue; 1]; Dim::COUNT]> = Arc::new(std::array::from_fn(|i| {
            [KeyValue::new("dim", blocker_name(i))]
        }));
        type Pick = fn(&PoolSnapshot) -> &respool::Resources;
        let per_dim: [(&'static str, &'static str, Pick); 3] = [
            ("capacity", "Capacity", |s| &s.capacity),
            (
                "effective_capacity",
                "Capacity minus headroom and external usage",
                |s| &s.effective_capacity,
            ),
            ("reserved", "Reserved by admitted tasks", |s| &s.reserved),
        ];
        let mut gauges_f64 = Vec::new();
        for (stem, what, pick) in per_dim {
            let (bytes_name, units_name, cores_name) = match stem {
                "capacity" => (
                    "respool.capacity",
                    "respool.capacity_units",
                    "respool.capacity_cores",
                ),
                "effective_capacity" => (
                    "respool.effective_capacity",
                    "respool.effective_capacity_units",
                    "respool.effective_capacity_cores",
                ),
                _ => (
                    "respool.reserved",
                    "respool.reserved_units",
                    "respool.reserved_cores",
                ),
            };
            let help_bytes = format!("{what}, in bytes (memory and GPU memory), by dimension.");
            let help_units = format!(
                "{what}, unitless dimensions (IOPS, network bytes/s, GPUs, user), by dimension."
            );
            let help_cores = format!("{what}, in CPU cores.");
            for (name, help, bytes) in [
                (bytes_name, help_bytes, true),
                (units_name, help_units, false),
            ] {
                let s = Arc::clone(&state);
                let attrs = Arc::clone(&dim_attrs);
                gauges_u64.push(
                    m.u64_observable_gauge(name)
                        .with_description(help)
                        .with_unit(if bytes { "By" } else { "{unit}" })
                        .with_callback(move |o| {
                            let Some(snap) = s.snapshot() else { return };
                            for (dim, v) in pick(&snap).iter() {
                                let is_bytes = dim.unit() == Unit::Bytes;
                                if dim != Dim::Cpu && is_bytes == bytes {
                                    o.observe(v, &attrs[dim.index()]);
                                }
                            }
                        })
                        .build(),
                );
            }
            let s = Arc::clone(&state);
            let attrs = Arc::clone(&dim_attrs);
            gauges_f64.push(
                m.f64_observable_gauge(cores_name)
                    .with_description(help_cores)
                    .with_unit("{core}")
                    .with_callback(move |o| {
                        let Some(snap) = s.snapshot() else { return };
                        if let Some(v) = pick(&snap).get(Dim::Cpu) {
                            #[allow(clippy::cast_precision_loss)]
                            o.observe(v as f64 / 1000.0, &attrs[Dim::Cpu.index()]);
                        }
                    })
                    .build(),
            );
        }
        {
            let s = Arc::clone(&state);
            gauges_f64.push(
                m.f64_observable_gauge("respool.fragmentation")
                    .with_description(
                        "Share of free CPU-domain capacity the head of the wait queue cannot use.",
                    )
                    .with_unit("1")
                    .with_callback(move |o| {
                        if let Some(snap) = s.snapshot() {
                            o.observe(f64::from(snap.fragmentation.as_ppm()) / 1e6, &[]);
                        }
                    })
                    .build(),
            );
            let s = Arc::clone(&state);
            gauges_f64.push(
                m.f64_observable_gauge("respool.class.prediction_accuracy")
                    .with_description(
                        "Share of a class's predictions within 10% of what was measured.",
                    )
                    .with_unit("1")
                    .with_callback(move |o| {
                        let Some(snap) = s.snapshot() else { return };
                        for (entry, predictions, within) in class_totals(&s, &snap) {
                            if predictions > 0 {
                                #[allow(clippy::cast_precision_loss)]
                                o.observe(within as f64 / predictions as f64, &entry.attrs);
                            }
                        }
                    })
                    .build(),
            );
        }
        let mut gauges_i64 = Vec::new();
        {
            let s = Arc::clone(&state);
            gauges_i64.push(
                m.i64_observable_gauge("respool.class.memory_slack")
                    .with_description(
                        "Mean reserved minus measured memory over a class's recent runs (may be negative).",
                    )
                    .with_unit("By")
                    .with_callback(move |o| {
                        for c in s.classes.all() {
                            if let Some(v) = c.mean_slack() {
                                o.observe(v, &c.attrs);
                            }
                        }
                    })
                    .build(),
            );
        }

        Arc::new(OtelMetrics {
            state,
            queue_wait,
            resource_wait,
            run,
            class_run,
            _counters: counters,
            _gauges_u64: gauges_u64,
            _gauges_i64: gauges_i64,
            _gauges_f64: gauges_f64,
            _updown: updown,
        })
    }
}

/// Per class entry (capped, `_other` summed): predictions and those within
/// 10%, from the snapshot.
fn class_totals(s: &State, snap: &PoolSnapshot) -> Vec<(Arc<ClassEntry>, u64, u64)> {
    let mut out: Vec<(Arc<ClassEntry>, u64, u64)> = Vec::new();
    for c in &snap.classes {
        let entry = s.classes.get(&c.class);
        if let Some(e) = out.iter_mut().find(|e| Arc::ptr_eq(&e.0, &entry)) {
            e.1 = e.1.saturating_add(c.predictions);
            e.2 = e.2.saturating_add(c.within_10pct);
        } else {
            out.push((entry, c.predictions, c.within_10pct));
        }
    }
    out
}

fn class_accuracy(s: &State, o: &dyn AsyncInstrument<u64>, pick: fn(u64, u64) -> u64) {
    let Some(snap) = s.snapshot() else { return };
    for (entry, predictions, within) in class_totals(s, &snap) {
        o.observe(pick(predictions, within), &entry.attrs);
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Observer for OtelMetrics {
    fn on_event(&self, e: &Event<'_>) {
        let s = &*self.state;
        let Some(task) = e.task else { return };
        let id = task.get();
        match e.kind {
            EventKind::Submitted { .. } => {
                s.submitted.fetch_add(1, Relaxed);
                let mut slot = s.slot(id).lock().unwrap_or_else(PoisonError::into_inner);
                if slot.id != 0 {
                    // A task still in flight held it: it goes untracked,
                    // and leaves the gauges it was counted in.
                    s.untracked.fetch_add(1, Relaxed);
                    s.leave_waiting(&mut slot);
                    s.leave_running(&mut slot);
                }
                *slot = Slot {
                    id,
                    submitted: e.at,
                    ..Slot::default()
                };
            }
            EventKind::Deferred { shortfall } => {
                let b = shortfall.map_or(QUEUE, |sf| sf.dim.index());
                s.deferred[b].fetch_add(1, Relaxed);
                let mut slot = s.slot(id).lock().unwrap_or_else(PoisonError::into_inner);
                if slot.id == id {
                    if let Some(old) = slot.waiting.replace(b) {
                        s.waiting[old].fetch_sub(1, Relaxed);
                    }
                    s.waiting[b].fetch_add(1, Relaxed);
                    slot.deferred.get_or_insert(e.at);
                }
            }
            EventKind::Admitted { reservation } => {
                let mut slot = s.slot(id).lock().unwrap_or_else(PoisonError::into_inner);
                if slot.id == id {
                    if let Some(d) = slot.deferred {
                        self.resource_wait
                            .record(seconds(e.at.saturating_sub(d)), &[]);
                    }
                    s.leave_waiting(&mut slot);
                    slot.reserved_memory = reservation.amount(Dim::Memory);
                }
            }
            EventKind::Started { .. } => {
                let mut slot = s.slot(id).lock().unwrap_or_else(PoisonError::into_inner);
                if slot.id == id {
                    if !slot.ever_started {
                        slot.ever_started = true;
                        self.queue_wait
                            .record(seconds(e.at.saturating_sub(slot.submitted)), &[]);
                    }
                    if slot.started.replace(e.at).is_none() {
                        s.running.fetch_add(1, Relaxed);
                    }
                }
            }
            EventKind::ReservationGrown { by } => {
                s.grown.fetch_add(1, Relaxed);
                let bytes = by.amount(Dim::Memory);
                s.grown_bytes.fetch_add(bytes, Relaxed);
                let mut slot = s.slot(id).lock().unwrap_or_else(PoisonError::into_inner);
                if slot.id == id {
                    slot.reserved_memory = slot.reserved_memory.saturating_add(bytes);
                }
            }
            EventKind::ProfileUpdated { measured, .. } => {
                if let (Some(class), Some(used)) = (e.class, measured.get(Dim::Memory)) {
                    let slot = s.slot(id).lock().unwrap_or_else(PoisonError::into_inner);
                    if slot.id == id {
                        let reserved = i128::from(slot.reserved_memory);
                        drop(slot);
                        let slack = (reserved - i128::from(used))
                            .clamp(i128::from(i64::MIN), i128::from(i64::MAX));
                        #[allow(clippy::cast_possible_truncation)]
                        s.classes.get(class).push_slack(slack as i64);
                    }
                }
            }
            EventKind::Retried { .. } => {
                s.retries.fetch_add(1, Relaxed);
                let mut slot = s.slot(id).lock().unwrap_or_else(PoisonError::into_inner);
                if slot.id == id {
                    s.leave_running(&mut slot);
                }
            }
            ref k => {
                let Some(o) = outcome_index(k) else { return };
                s.outcomes[o].fetch_add(1, Relaxed);
                let mut slot = s.slot(id).lock().unwrap_or_else(PoisonError::into_inner);
                if slot.id != id {
                    return;
                }
                s.leave_waiting(&mut slot);
                let started = s.leave_running(&mut slot);
                slot.id = 0;
                drop(slot);
                if let Some(at) = started {
                    let run = seconds(e.at.saturating_sub(at));
                    self.run.record(run, &[]);
                    if let Some(class) = e.class {
                        let c = s.classes.get(class);
                        c.runs.fetch_add(1, Relaxed);
                        self.class_run.record(run, &c.attrs);
                    }
                }
            }
        }
    }
}
