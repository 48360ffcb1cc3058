//! Learning what each class of task needs.
//!
//! Tasks that carry a class key ([`TaskBuilder::class`](crate::task::TaskBuilder::class))
//! are measured (see [`crate::measure`]) and their usage is fed to a
//! [`ResourcePredictor`] kept for the class, together with a bounded,
//! time-limited history of the raw samples (the history is what profile
//! stores persist, and what a loaded profile is rebuilt from).
//!
//! When a classified task is submitted, every dimension it did not declare
//! is filled from the class's prediction once that prediction is confident
//! (at least [`LearningConfig::min_executions`] runs and a confidence of at
//! least [`LearningConfig::confidence_threshold`]); until then the
//! [`LearningConfig::fallback`] is used. Declared requirements always win.
//! The prediction reserved is the predictor's *reserve* (a high percentile
//! plus a safety margin, as the Kubernetes VPA recommender does); its
//! *expected* value is compared with what the task then used, and the share
//! of predictions within 10% is the accuracy reported in the snapshot.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use respool_core::predict::{Accuracy, PredictConfig, ResourcePredictor};
use respool_core::{Dim, DimSet, PerDim, Ppm, Resources};

use crate::cost::{ClassCost, UsageTotals};
use crate::store::{ClassRecord, ProfileStore, Profiles, Sample};
use crate::sync::lock;

/// How respool learns task requirements; given to
/// [`Builder::learning`](crate::builder::Builder::learning).
///
/// # Examples
///
/// ```
/// use respool::{Dim, Pool, Resources};
/// use respool::learn::LearningConfig;
/// let learning = LearningConfig {
///     // Trust a class's prediction after 5 runs; until then reserve
///     // half a CPU and 64 MiB for it.
///     min_executions: 5,
///     fallback: Resources::new().with(Dim::Cpu, 500)?.with(Dim::Memory, 64 << 20)?,
///     ..LearningConfig::default()
/// };
/// let pool = Pool::builder().workers(2).memory("1GiB").learning(learning).build()?;
/// for _ in 0..3 {
///     pool.task().class("resize").spawn(|_| ())?.join()?;
/// }
/// pool.shutdown(); // counters are exact after shutdown
/// let class = &pool.snapshot().classes[0];
/// assert_eq!((class.class.as_str(), class.runs), ("resize", 3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearningConfig {
    /// Learn at all (default `true`). Disabled, nothing is learned (neither
    /// measured runs nor [`Pool::report_oom`](crate::pool::Pool::report_oom)
    /// events) and no prediction is used: classified tasks still run, on
    /// their declared requirements and the fallback. Profiles loaded from a
    /// store are kept as they are and saved back.
    pub enabled: bool,
    /// Runs of a class before its predictions are used (default 3): a
    /// dimension is predicted only once at least this many samples of it
    /// are known (and at least [`PredictConfig::min_samples`]; for a loaded
    /// profile, the samples kept in its history count, not its run count).
    pub min_executions: u32,
    /// Confidence a prediction needs to be used (default 50%); it replaces
    /// [`PredictConfig::min_confidence`].
    pub confidence_threshold: Ppm,
    /// Samples kept per class, the newest (default 256; at least one is
    /// kept).
    pub history: usize,
    /// Samples older than this are dropped from the history (default 30
    /// days): when a sample is added, and when stored profiles are
    /// imported, whose predictors are rebuilt from the samples kept only.
    pub max_age: Duration,
    /// What a classified task reserves in dimensions it did not declare and
    /// that have no confident prediction yet (default 1 CPU and 256 MiB, the
    /// per-action estimate Bazel uses).
    pub fallback: Resources,
    /// Predictor tuning (percentile, safety margin, half-life...). Its
    /// `min_confidence` is replaced by `confidence_threshold`, and its
    /// `min_samples` raised to `min_executions`.
    pub predict: PredictConfig,
    /// Cold start: while a class's memory use is not learned, at most this
    /// many of its tasks run at once (default 1; 0 switches it off), so that
    /// the first runs of a class whose tasks outgrow the fallback cannot all
    /// start together. It applies only when memory can be learned (the
    /// tracking allocator is installed, or the tasks report their memory:
    /// `Builder::tasks_report_memory`), under the `Defer` and
    /// `BlockUntilDeadline` policies, for at most `probe_runs` runs.
    pub probe_concurrency: u32,
    /// Runs after which a class is no longer probed even if its memory use
    /// is still not predictable (an erratic class then runs on the fallback,
    /// with its reservation grown when it outgrows it; default 10).
    pub probe_runs: u32,
}

impl Default for LearningConfig {
    fn default() -> Self {
        LearningConfig {
            enabled: true,
            min_executions: 3,
            confidence_threshold: Ppm::from_percent(50),
            history: 256,
            max_age: Duration::from_secs(30 * 24 * 3600),
            fallback: Resources::NONE
                .with_saturating(Dim::Cpu, 1000)
                .with_saturating(Dim::Memory, 256 << 20),
            predict: PredictConfig::DEFAULT,
            probe_concurrency: 1,
            probe_runs: 10,
        }
    }
}

/// What a submitted task reserves from learning.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Estimate {
    /// Reserve per dimension (prediction reserve, or fallback).
    pub(crate) reserve: Resources,
    /// Expected usage per learned dimension (for accuracy).
    pub(crate) expected: Resources,
    /// Whether the class is still being probed: its memory is not learned
    /// yet and it has run fewer than `probe_runs` times.
    pub(crate) probe: bool,
}

type Predictor = ResourcePredictor<32>;

/// The learned state of one class.
pub(crate) struct Profile {
    predictor: Predictor,
    history: VecDeque<Sample>,
    runs: u64,
    /// Accuracy of the expected values used at submission, per dimension.
    accuracy: PerDim<Accuracy>,
    /// Accuracy over the last `RECENT` predictions, all dimensions.
    recent: VecDeque<bool>,
    /// Submissions whose estimate was clamped to what the pool can ever
    /// grant (see `Learner::note_clamped`).
    clamped: u64,
    /// What this process's measured runs used, and what they held.
    used: UsageTotals,
    held: UsageTotals,
}

const RECENT: usize = 64;

impl Profile {
    fn new() -> Profile {
        Profile {
            predictor: Predictor::new(),
            history: VecDeque::new(),
            runs: 0,
            accuracy: PerDim([Accuracy::new(); Dim::COUNT]),
            recent: VecDeque::new(),
            clamped: 0,
            used: UsageTotals::default(),
            held: UsageTotals::default(),
        }
    }
}

/// Accuracy of one class (or of all), as exposed in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassAccuracy {
    /// The class key (`"*"` for all classes together).
    pub class: String,
    /// Runs measured.
    pub runs: u64,
    /// Predictions compared with what was then measured (all dimensions).
    pub predictions: u64,
    /// Of those, within 10% of the measured value.
    pub within_10pct: u64,
    /// `within_10pct / predictions` over the last 64 predictions.
    pub recent: Ppm,
    /// Current expected usage, for the dimensions learned so far.
    pub expected: Resources,
    /// The same counts per dimension, for the dimensions predicted at least
    /// once, in dimension order: memory is often learned exactly while CPU
    /// time moves with the machine's load.
    pub by_dim: Vec<DimAccuracy>,
    /// Submissions of the class whose estimate (learned or fallback) was
    /// more than the pool can ever grant, and was clamped to it: such a
    /// task runs alone rather than never (a warning is logged the first
    /// time). Not zero: the class needs more than this pool has, or its
    /// profile holds values from a larger machine.
    pub clamped: u64,
    /// What the class's runs measured in this process used (CPU,
    /// memory and GPU over time; see [`crate::cost`]).
    pub used: UsageTotals,
    /// What they held: their reservations over their run time.
    pub held: UsageTotals,
    /// `used` and the slack (`held` beyond `used`) priced, when the pool
    /// has [`Builder::pricing`](crate::Builder::pricing).
    pub cost: Option<ClassCost>,
}

/// Accuracy of the predictions in one dimension (see [`ClassAccuracy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DimAccuracy {
    /// The dimension.
    pub dim: Dim,
    /// Predictions compared with what was then measured.
    pub predictions: u64,
    /// Of those, within 10% of the measured value.
    pub within_10pct: u64,
}

impl DimAccuracy {
    /// `within_10pct / predictions`.
    #[must_use]
    pub fn share(&self) -> Ppm {
        Ppm::ratio(self.within_10pct, self.predictions)
    }
}

impl ClassAccuracy {
    /// `within_10pct / predictions` over all predictions.
    #[must_use]
    pub fn share(&self) -> Ppm {
        Ppm::ratio(self.within_10pct, self.predictions)
    }

    /// The share in one dimension; `None` when it was never predicted.
    #[must_use]
    pub fn share_in(&self, dim: Dim) -> Option<Ppm> {
        self.by_dim
            .iter()
            .find(|d| d.dim == dim)
            .map(DimAccuracy::share)
    }
}

/// The part of a measured usage that is learned: rates (CPU, IOPS) only
/// from runs long enough to time (see
/// [`TaskUsage::MIN_RATE_WALL`](crate::measure::TaskUsage::MIN_RATE_WALL)). Applied
/// to live samples and to stored ones alike, so that a profile written
/// before this rule (a 12 us task once recorded 13 cores) cannot teach a
/// class a rate that was never measured.
fn learnable(usage: &Resources, wall: Duration) -> Resources {
    if wall >= crate::measure::TaskUsage::MIN_RATE_WALL {
        return *usage;
    }
    let mut u = *usage;
    u.clear(Dim::Cpu);
    u.clear(Dim::Iops);
    u
}

/// Per-dimension counts of `accuracy`, for the dimensions with predictions.
fn by_dim(accuracy: &PerDim<Accuracy>) -> Vec<DimAccuracy> {
    Dim::ALL
        .iter()
        .filter(|&&d| accuracy[d].total() > 0)
        .map(|&d| DimAccuracy {
            dim: d,
            predictions: accuracy[d].total(),
            within_10pct: accuracy[d].hits(),
        })
        .collect()
}

pub(crate) struct Learner {
    pub(crate) config: LearningConfig,
    /// Dimensions admitted softly (see `Builder::hard`): their learned
    /// amounts are reserved as expected, with no margin.
    soft: DimSet,
    classes: RwLock<HashMap<Arc<str>, Arc<Mutex<Profile>>>>,
    /// A store that takes each sample as it is learned (a shared store
    /// merges them into what other processes learned; see
    /// [`ProfileStore::record`]).
    sink: Option<Arc<dyn ProfileStore>>,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Learner {
    #[cfg(test)]
    pub(crate) fn new(config: LearningConfig) -> Learner {
        Learner::with_soft(config, DimSet::COMPRESSIBLE)
    }

    /// A learner that reserves the learned amounts of `soft` dimensions
    /// without a margin.
    pub(crate) fn with_soft(config: LearningConfig, soft: DimSet) -> Learner {
        Learner {
            config,
            soft,
            classes: RwLock::new(HashMap::new()),
            sink: None,
        }
    }

    /// Hands every sample learned from now on to `store` as well
    /// ([`ProfileStore::record`]).
    pub(crate) fn with_sink(mut self, store: Option<Arc<dyn ProfileStore>>) -> Learner {
        self.sink = store;
        self
    }

    fn class(&self, key: &Arc<str>) -> Arc<Mutex<Profile>> {
        if let Some(p) = self
            .classes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
        {
            return p.clone();
        }
        self.classes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Profile::new())))
            .clone()
    }

    fn predict_config(&self) -> PredictConfig {
        let mut cfg = self.config.predict;
        cfg.min_confidence = self.config.confidence_threshold;
        cfg.min_samples = cfg.min_samples.max(self.config.min_executions);
        cfg
    }

    /// What a task of `class` should reserve (declared dims are the caller's).
    pub(crate) fn estimate(&self, class: &Arc<str>, size: Option<u64>) -> Estimate {
        let fallback = self.config.fallback;
        if !self.config.enabled {
            return Estimate {
                reserve: fallback,
                expected: Resources::NONE,
                probe: false,
            };
        }
        let profile = self.class(class);
        let p = lock(&profile);
        let est = p.predictor.predict(&self.predict_config(), size, &fallback);
        let mut expected = Resources::NONE;
        let mut reserve = est.reserve;
        for dim in est.learned {
            expected = expected.with_saturating(dim, est.expected.amount(dim));
        }
        // Learned, or not confident but sized from the class's own data
        // (covered: the core's reserve is its prediction times its misses).
        for dim in est.learned.union(est.covered) {
            if self.soft.contains(dim) {
                // Soft: the expected usage, no margin (too little of it only
                // slows the task down).
                reserve = reserve.with_saturating(dim, est.expected.amount(dim));
            }
        }
        let probe = self.config.probe_concurrency > 0
            && !est.learned.union(est.covered).contains(Dim::Memory)
            && p.runs < u64::from(self.config.probe_runs);
        Estimate {
            reserve,
            expected,
            probe,
        }
    }

    /// Counts a submission of `class` whose estimate `wanted` was clamped to
    /// `bound`, what the pool can ever grant; warns the first time.
    pub(crate) fn note_clamped(&self, class: &Arc<str>, wanted: &Resources, bound: &Resources) {
        let profile = self.class(class);
        let mut p = lock(&profile);
        p.clamped += 1;
        if p.clamped == 1 {
            tracing::warn!(target: "respool::learn", class = %class, wanted = %wanted,
                can_ever_grant = %bound,
                "the class's estimate is more than this pool can ever grant: \
                 clamped, its tasks run alone");
        }
    }

    /// Records what a task of `class` used; `expected` holds the expected
    /// values it was admitted on (learned dimensions only).
    pub(crate) fn observe(
        &self,
        class: &Arc<str>,
        size: Option<u64>,
        usage: &Resources,
        wall: Duration,
        expected: &Resources,
    ) {
        self.observe_at(class, size, usage, wall, expected, unix_ns());
    }

    /// [`Learner::observe`] at time `at` (nanoseconds since the Unix epoch).
    fn observe_at(
        &self,
        class: &Arc<str>,
        size: Option<u64>,
        usage: &Resources,
        wall: Duration,
        expected: &Resources,
        at: u64,
    ) {
        if !self.config.enabled {
            return;
        }
        let usage = &learnable(usage, wall);
        let profile = self.class(class);
        let mut p = lock(&profile);
        for (dim, predicted) in expected.iter() {
            if let Some(actual) = usage.get(dim) {
                let hit = p.accuracy[dim].record(predicted, actual);
                p.recent.push_back(hit);
                if p.recent.len() > RECENT {
                    p.recent.pop_front();
                }
            }
        }
        let cfg = self.predict_config();
        p.predictor.observe(&cfg, usage, size, at);
        p.runs += 1;
        let sample = Sample::new(at, size, wall, usage, None);
        if let Some(sink) = &self.sink {
            // A copy for the store, handed over after the class's lock is
            // released (the store only queues it: no I/O here).
            let copy = sample.clone();
            self.push_sample(&mut p, sample, at);
            drop(p);
            sink.record(class, &copy);
            return;
        }
        self.push_sample(&mut p, sample, at);
    }

    /// Adds a run of `class` that used `usage` and held `reserved` for
    /// `wall` to its totals (whatever became of the task: a panicked task
    /// cost as much). Only when learning is enabled.
    pub(crate) fn account(
        &self,
        class: &Arc<str>,
        usage: &Resources,
        reserved: &Resources,
        wall: Duration,
    ) {
        if !self.config.enabled {
            return;
        }
        let wall = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
        let profile = self.class(class);
        let mut p = lock(&profile);
        let amounts = |r: &Resources| {
            (
                r.amount(Dim::Cpu),
                r.amount(Dim::Memory),
                r.amount(Dim::Gpu),
            )
        };
        let (c, m, g) = amounts(usage);
        p.used.add(c, m, g, wall);
        let (c, m, g) = amounts(reserved);
        p.held.add(c, m, g, wall);
    }

    /// Records an out-of-memory event of a task of `class` at `usage` bytes;
    /// returns the bumped value (recorded only when learning is enabled).
    pub(crate) fn observe_oom(&self, class: &Arc<str>, usage: u64) -> u64 {
        self.observe_oom_at(class, usage, unix_ns())
    }

    fn observe_oom_at(&self, class: &Arc<str>, usage: u64, at: u64) -> u64 {
        if !self.config.enabled {
            return self.predict_config().sanitized().oom_bump(usage);
        }
        let profile = self.class(class);
        let mut p = lock(&profile);
        let bumped = p
            .predictor
            .observe_oom(&self.predict_config(), Dim::Memory, usage, at);
        let sample = Sample::new(at, None, Duration::ZERO, &Resources::NONE, Some(usage));
        let copy = self.sink.as_ref().map(|_| sample.clone());
        self.push_sample(&mut p, sample, at);
        drop(p);
        if let (Some(sink), Some(copy)) = (&self.sink, copy) {
            sink.record(class, &copy);
        }
        bumped
    }

    fn max_age_ns(&self) -> u64 {
        u64::try_from(self.config.max_age.as_nanos()).unwrap_or(u64::MAX)
    }

    fn history_cap(&self) -> usize {
        self.config.history.max(1)
    }

    fn push_sample(&self, p: &mut Profile, sample: Sample, now: u64) {
        p.history.push_back(sample);
        let max_age = self.max_age_ns();
        while p.history.len() > self.history_cap()
            || p.history
                .front()
                .is_some_and(|s| now.saturating_sub(s.at_unix_ns()) > max_age)
        {
            p.history.pop_front();
        }
    }

    /// Accuracy per class, sorted by class key, and all classes together.
    pub(crate) fn accuracy(&self) -> (Vec<ClassAccuracy>, ClassAccuracy) {
        let classes = self
            .classes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cfg = self.predict_config();
        let mut out: Vec<ClassAccuracy> = classes
            .iter()
            .map(|(k, p)| {
                let p = lock(p);
                let (predictions, hits) = Dim::ALL.iter().fold((0, 0), |(t, h), &d| {
                    (t + p.accuracy[d].total(), h + p.accuracy[d].hits())
                });
                let recent_hits = p.recent.iter().filter(|h| **h).count() as u64;
                let est = p.predictor.predict(&cfg, None, &Resources::NONE);
                let mut expected = Resources::NONE;
                for d in est.learned {
                    expected = expected.with_saturating(d, est.expected.amount(d));
                }
                ClassAccuracy {
                    class: k.to_string(),
                    runs: p.runs,
                    predictions,
                    within_10pct: hits,
                    recent: Ppm::ratio(recent_hits, p.recent.len() as u64),
                    expected,
                    by_dim: by_dim(&p.accuracy),
                    clamped: p.clamped,
                    used: p.used,
                    held: p.held,
                    cost: None,
                }
            })
            .collect();
        out.sort_by(|a, b| a.class.cmp(&b.class));
        let total = ClassAccuracy {
            class: "*".into(),
            runs: out.iter().map(|c| c.runs).sum(),
            predictions: out.iter().map(|c| c.predictions).sum(),
            within_10pct: out.iter().map(|c| c.within_10pct).sum(),
            recent: {
                let (h, n) = classes.values().fold((0u64, 0u64), |(h, n), p| {
                    let p = lock(p);
                    (
                        h + p.recent.iter().filter(|x| **x).count() as u64,
                        n + p.recent.len() as u64,
                    )
                });
                Ppm::ratio(h, n)
            },
            expected: Resources::NONE,
            by_dim: Dim::ALL
                .iter()
                .filter_map(|&dim| {
                    let (predictions, within_10pct) =
                        out.iter().fold((0, 0), |(n, h), c| {
                            match c.by_dim.iter().find(|d| d.dim == dim) {
                                Some(d) => (n + d.predictions, h + d.within_10pct),
                                None => (n, h),
                            }
                        });
                    (predictions > 0).then_some(DimAccuracy {
                        dim,
                        predictions,
                        within_10pct,
                    })
                })
                .collect(),
            clamped: out.iter().map(|c| c.clamped).sum(),
            used: out
                .iter()
                .fold(UsageTotals::default(), |t, c| t.plus(&c.used)),
            held: out
                .iter()
                .fold(UsageTotals::default(), |t, c| t.plus(&c.held)),
            cost: None,
        };
        (out, total)
    }

    /// The history of every class, for a profile store.
    pub(crate) fn export(&self) -> Profiles {
        let classes = self
            .classes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut records: Vec<ClassRecord> = classes
            .iter()
            .map(|(k, p)| {
                let p = lock(p);
                ClassRecord {
                    class: k.to_string(),
                    runs: p.runs,
                    samples: p.history.iter().cloned().collect(),
                }
            })
            .collect();
        records.sort_by(|a, b| a.class.cmp(&b.class));
        Profiles::new(records)
    }

    /// Replays stored histories into the predictors (replacing what the
    /// classes had). Only the samples the configuration keeps are replayed
    /// and kept: those at most `max_age` old, the newest `history` of them,
    /// in time order. Returns the number of classes loaded.
    pub(crate) fn import(&self, profiles: &Profiles) -> usize {
        self.import_at(profiles, unix_ns())
    }

    /// [`Learner::import`] for a shared store's refresh: the predictors and
    /// histories of the classes in `profiles` are rebuilt from the shared
    /// samples, but what this process measured about its own predictions
    /// (accuracy, clamped submissions) is kept. Returns the number of
    /// classes refreshed.
    pub(crate) fn refresh(&self, profiles: &Profiles) -> usize {
        self.load_at(profiles, unix_ns(), true)
    }

    /// [`Learner::import`] at time `now` (nanoseconds since the Unix epoch).
    fn import_at(&self, profiles: &Profiles, now: u64) -> usize {
        self.load_at(profiles, now, false)
    }

    fn load_at(&self, profiles: &Profiles, now: u64, keep_stats: bool) -> usize {
        let cfg = self.predict_config();
        // The predictors are rebuilt before any lock is taken: submissions
        // (which read the class table) never wait for a replay.
        let built: Vec<(Arc<str>, Profile)> = profiles
            .classes
            .iter()
            .map(|record| {
                (
                    Arc::from(record.class.as_str()),
                    self.rebuild(&cfg, record, now),
                )
            })
            .collect();
        if keep_stats {
            for (key, mut p) in built {
                // Replaced in place: a task admitted on the old profile
                // records its accuracy into the same entry.
                let entry = self.class(&key);
                let mut old = lock(&entry);
                p.accuracy = old.accuracy;
                p.recent = std::mem::take(&mut old.recent);
                p.clamped = old.clamped;
                p.used = old.used;
                p.held = old.held;
                self.keep_local(&cfg, &mut p, &old, now);
                *old = p;
            }
        } else {
            let mut classes = self
                .classes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (key, p) in built {
                classes.insert(key, Arc::new(Mutex::new(p)));
            }
        }
        profiles.classes.len()
    }

    /// Adds to `fresh` (a class rebuilt from a shared store's copy) the
    /// samples of `local` (the class as this process has it now) that the
    /// copy lacks and that are not older than its oldest: samples learned
    /// here and not yet merged into the store, including those learned
    /// while the copy was being read and rebuilt. Without this a refresh
    /// would drop them from this process until the next one. They are
    /// replayed after the shared ones (out of time order until the next
    /// refresh brings them back in place).
    fn keep_local(&self, cfg: &PredictConfig, fresh: &mut Profile, local: &Profile, now: u64) {
        let key = |s: &Sample| (s.at_unix_ms, s.wall_ns, s.oom_bytes);
        let shared: std::collections::HashSet<(u64, u64, Option<u64>)> =
            fresh.history.iter().map(key).collect();
        let oldest = fresh.history.iter().map(|s| s.at_unix_ms).min();
        let missing: Vec<Sample> = local
            .history
            .iter()
            .filter(|s| oldest.is_none_or(|o| s.at_unix_ms >= o))
            .filter(|s| !shared.contains(&key(s)) || !fresh.history.contains(s))
            .cloned()
            .collect();
        for s in missing {
            match s.oom_bytes() {
                Some(bytes) => {
                    fresh
                        .predictor
                        .observe_oom(cfg, Dim::Memory, bytes, s.at_unix_ns());
                }
                None => {
                    fresh.predictor.observe(
                        cfg,
                        &learnable(&s.usage(), Duration::from_nanos(s.wall_ns)),
                        s.size,
                        s.at_unix_ns(),
                    );
                    fresh.runs += 1;
                }
            }
            self.push_sample(fresh, s, now);
        }
    }

    /// A class's profile rebuilt from its stored history.
    fn rebuild(&self, cfg: &PredictConfig, record: &ClassRecord, now: u64) -> Profile {
        let mut p = Profile::new();
        p.runs = record.runs;
        for s in self.kept(&record.samples, now) {
            match s.oom_bytes() {
                Some(bytes) => {
                    p.predictor
                        .observe_oom(cfg, Dim::Memory, bytes, s.at_unix_ns());
                }
                None => p.predictor.observe(
                    cfg,
                    &learnable(&s.usage(), Duration::from_nanos(s.wall_ns)),
                    s.size,
                    s.at_unix_ns(),
                ),
            }
            // Kept as learned, so that saving it back drops what was
            // never measured.
            let mut kept = s.clone();
            if Duration::from_nanos(s.wall_ns) < crate::measure::TaskUsage::MIN_RATE_WALL
                && s.oom_bytes().is_none()
            {
                kept.usage.remove(Dim::Cpu.name());
                kept.usage.remove(Dim::Iops.name());
            }
            p.history.push_back(kept);
        }
        p
    }

    /// The samples of a stored history that the configuration keeps at
    /// `now`: at most `max_age` old, the newest `history` of them, oldest
    /// first (a history stored out of order is sorted; samples recorded at
    /// the same time keep their stored order).
    fn kept<'a>(&self, samples: &'a [Sample], now: u64) -> Vec<&'a Sample> {
        let max_age = self.max_age_ns();
        let mut kept: Vec<&Sample> = samples
            .iter()
            .filter(|s| now.saturating_sub(s.at_unix_ns()) <= max_age)
            .collect();
        kept.sort_by_key(|s| s.at_unix_ms);
        let excess = kept.len().saturating_sub(self.history_cap());
        kept.drain(..excess);
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use respool_core::predict::Source;

    const MIB: u64 = 1 << 20;
    const MS: u64 = 1_000_000;
    const MINUTE: u64 = 60_000 * MS;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    /// A fixed "now" (whole milliseconds, as samples are stored).
    const NOW: u64 = 1_700_000_000_000 * MS;

    fn mem(bytes: u64) -> Resources {
        Resources::NONE.with_saturating(Dim::Memory, bytes)
    }

    fn key(class: &str) -> Arc<str> {
        Arc::from(class)
    }

    fn observe(l: &Learner, class: &str, bytes: u64, at: u64) {
        l.observe_at(
            &key(class),
            None,
            &mem(bytes),
            Duration::from_millis(1),
            &Resources::NONE,
            at,
        );
    }

    fn sample(bytes: u64, at: u64) -> Sample {
        Sample::new(at, None, Duration::from_millis(1), &mem(bytes), None)
    }

    fn record(class: &str, runs: u64, samples: Vec<Sample>) -> Profiles {
        Profiles::new(vec![ClassRecord {
            class: class.into(),
            runs,
            samples,
        }])
    }

    /// The memory amounts of the class's history, oldest first.
    fn history(l: &Learner, class: &str) -> Vec<u64> {
        l.export()
            .classes
            .iter()
            .find(|c| c.class == class)
            .map(|c| {
                c.samples
                    .iter()
                    .map(|s| s.usage().amount(Dim::Memory))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn predictor(l: &Learner, class: &str) -> Predictor {
        lock(&l.class(&key(class))).predictor
    }

    /// A predictor fed exactly `samples`, in order, as the learner would.
    fn reference(l: &Learner, samples: &[Sample]) -> Predictor {
        let mut p = Predictor::new();
        for s in samples {
            p.observe(&l.predict_config(), &s.usage(), s.size, s.at_unix_ns());
        }
        p
    }

    /// Compares predictors without printing their (large) state.
    fn assert_same_predictor(got: &Predictor, want: &Predictor, what: &str) {
        let n = |p: &Predictor| p.series(Dim::Memory).samples();
        assert!(
            got == want,
            "{what}: predictor differs ({} memory samples replayed, {} expected)",
            n(got),
            n(want)
        );
    }

    fn fallback() -> Resources {
        LearningConfig::default().fallback
    }

    /// A store that keeps what it is handed, sample by sample.
    #[derive(Debug, Default)]
    struct Recording(Mutex<Vec<(String, Sample)>>);

    impl ProfileStore for Recording {
        fn load(&self) -> Result<Option<Profiles>, crate::store::StoreError> {
            Ok(None)
        }
        fn save(&self, _: &Profiles) -> Result<(), crate::store::StoreError> {
            Ok(())
        }
        fn record(&self, class: &str, sample: &Sample) {
            lock(&self.0).push((class.to_owned(), sample.clone()));
        }
    }

    #[test]
    fn every_learned_sample_reaches_the_sink_and_a_refresh_keeps_the_accuracy() {
        let sink = Arc::new(Recording::default());
        let l = Learner::new(LearningConfig::default()).with_sink(Some(sink.clone()));
        for i in 0..5 {
            l.observe_at(
                &key("c"),
                None,
                &mem(8 * MIB),
                Duration::from_millis(1),
                &mem(8 * MIB),
                NOW + i * MS,
            );
        }
        l.observe_oom_at(&key("c"), 9 * MIB, NOW + 10 * MS);
        let got = lock(&sink.0).clone();
        assert_eq!(got.len(), 6, "every run and the OOM event");
        assert_eq!(
            got.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
            l.export().classes[0].samples,
            "the same samples the history keeps"
        );
        let before = l.accuracy().0[0].clone();
        assert_eq!(before.predictions, 5);
        // A refresh from a shared store (ours, merged, and 15 runs from
        // elsewhere) rebuilds the predictor but keeps this process's
        // accuracy record.
        let mut shared = l.export().classes[0].samples.clone();
        shared.extend((0..15).map(|i| sample(16 * MIB, NOW + (20 + i) * MS)));
        assert_eq!(
            l.load_at(&record("c", 20, shared.clone()), NOW + DAY, true),
            1
        );
        let after = l.accuracy().0[0].clone();
        assert_eq!(
            (after.runs, after.predictions, after.within_10pct),
            (20, 5, before.within_10pct)
        );
        assert_eq!(l.export().classes[0].samples, shared, "the shared history");
        // An import, by contrast, starts the class afresh.
        l.import_at(&record("c", 20, shared), NOW + DAY);
        assert_eq!(l.accuracy().0[0].predictions, 0);
    }

    #[test]
    fn a_refresh_keeps_what_was_learned_here_and_not_yet_shared() {
        let l = Learner::new(LearningConfig::default());
        for i in 0..5 {
            observe(&l, "c", (10 + i) * MIB, NOW + i * MS);
        }
        let local = l.export().classes[0].samples.clone();
        // The shared copy has the first three of ours (merged), two from
        // elsewhere, and 10 runs in all.
        let mut shared: Vec<Sample> = local[..3].to_vec();
        shared.push(sample(50 * MIB, NOW + MS / 2));
        shared.push(sample(60 * MIB, NOW + 3 * MS / 2));
        shared.sort_by_key(|s| s.at_unix_ms);
        l.load_at(&record("c", 10, shared.clone()), NOW + 10 * MS, true);
        let got = l.export().classes[0].clone();
        assert_eq!(got.runs, 12, "10 shared + 2 of ours not yet shared");
        assert_eq!(got.samples.len(), 7);
        for s in local.iter().chain(shared.iter()) {
            assert!(got.samples.contains(s), "{s:?} kept");
        }
        // A second refresh that has them all adds nothing.
        let mut all = shared;
        all.extend(local[3..].iter().cloned());
        all.sort_by_key(|s| s.at_unix_ms);
        l.load_at(&record("c", 12, all.clone()), NOW + 20 * MS, true);
        let got = l.export().classes[0].clone();
        assert_eq!((got.runs, got.samples.len()), (12, 7));
        assert_same_predictor(
            &predictor(&l, "c"),
            &reference(&l, &all),
            "in time order again",
        );
    }

    #[test]
    fn import_drops_stale_samples_before_they_reach_the_predictor() {
        let l = Learner::new(LearningConfig {
            max_age: Duration::from_secs(30 * 24 * 3600),
            ..LearningConfig::default()
        });
        // Ten runs at 1 GiB, 40 days ago: past max_age, they must not count.
        let stale: Vec<Sample> = (0..10)
            .map(|i| sample(1 << 30, NOW - 40 * DAY + i * MS))
            .collect();
        assert_eq!(l.import_at(&record("c", 10, stale.clone()), NOW), 1);
        assert_eq!(history(&l, "c"), Vec::<u64>::new(), "stale samples dropped");
        let est = l.estimate(&key("c"), None);
        assert_eq!(
            est.expected,
            Resources::NONE,
            "no prediction from stale samples"
        );
        assert_eq!(est.reserve, fallback(), "the fallback applies");
        assert_same_predictor(&predictor(&l, "c"), &Predictor::new(), "never replayed");

        // The same stale runs followed by three recent ones at 1 MiB: the
        // predictor is the one the three recent samples alone give.
        let fresh: Vec<Sample> = (1..=3).map(|i| sample(MIB, NOW - i * HOUR)).rev().collect();
        let mut all = stale;
        all.extend(fresh.iter().cloned());
        l.import_at(&record("c", 13, all), NOW);
        assert_eq!(history(&l, "c"), [MIB; 3]);
        assert_same_predictor(
            &predictor(&l, "c"),
            &reference(&l, &fresh),
            "only the recent samples were replayed",
        );
        assert_eq!(predictor(&l, "c").series(Dim::Memory).max_observed(), MIB);
        assert_eq!(l.export().classes[0].runs, 13, "the run count is kept");
    }

    #[test]
    fn a_sample_exactly_max_age_old_is_kept_on_import() {
        let l = Learner::new(LearningConfig {
            max_age: Duration::from_secs(3600),
            ..LearningConfig::default()
        });
        let samples = vec![
            sample(1, NOW - HOUR - MS),
            sample(2, NOW - HOUR),
            sample(3, NOW),
        ];
        l.import_at(&record("c", 3, samples.clone()), NOW);
        assert_eq!(history(&l, "c"), [2, 3], "older than max_age: dropped");
        assert_same_predictor(
            &predictor(&l, "c"),
            &reference(&l, &samples[1..]),
            "only the kept samples were replayed",
        );
    }

    #[test]
    fn import_keeps_the_newest_samples_up_to_the_history_cap() {
        let l = Learner::new(LearningConfig {
            history: 4,
            ..LearningConfig::default()
        });
        let samples: Vec<Sample> = (1..=10)
            .map(|i| sample(i * MIB, NOW - (11 - i) * HOUR))
            .collect();
        l.import_at(&record("c", 10, samples.clone()), NOW);
        assert_eq!(history(&l, "c"), [7 * MIB, 8 * MIB, 9 * MIB, 10 * MIB]);
        let newest = reference(&l, &samples[6..]);
        assert_same_predictor(
            &predictor(&l, "c"),
            &newest,
            "only the kept samples were replayed",
        );
        assert_eq!(predictor(&l, "c").series(Dim::Memory).samples(), 4);

        // Stored newest first (not as respool writes them): the same samples
        // are kept, and replayed oldest first.
        let mut reversed = samples;
        reversed.reverse();
        l.import_at(&record("c", 10, reversed), NOW);
        assert_eq!(history(&l, "c"), [7 * MIB, 8 * MIB, 9 * MIB, 10 * MIB]);
        assert_same_predictor(&predictor(&l, "c"), &newest, "sorted, newest kept");
    }

    #[test]
    fn a_profile_loaded_with_nothing_dropped_predicts_as_the_live_one() {
        let cfg = LearningConfig::default();
        let live = Learner::new(cfg);
        for i in 0..12 {
            observe(&live, "c", (10 + i % 3) * MIB, NOW - (12 - i) * MINUTE);
        }
        let loaded = Learner::new(cfg);
        loaded.import_at(&live.export(), NOW);
        assert_same_predictor(
            &predictor(&loaded, "c"),
            &predictor(&live, "c"),
            "loaded as live",
        );
        assert_eq!(loaded.export().classes, live.export().classes);
        let (a, b) = (
            live.estimate(&key("c"), None),
            loaded.estimate(&key("c"), None),
        );
        assert_eq!((a.reserve, a.expected), (b.reserve, b.expected));
        assert!(a.expected.get(Dim::Memory).is_some(), "learned: {a:?}");
    }

    /// Issue 15: a stored profile held `cpu: 13409` for a 12 us task. Rates
    /// of runs too short to time are not learned, live or from a store.
    #[test]
    fn rates_of_runs_too_short_to_time_are_not_learned() {
        let cpu = |milli: u64| Resources::NONE.with_saturating(Dim::Cpu, milli);
        let short = Duration::from_micros(12);
        let timed = Duration::from_millis(5);
        let stored: Vec<Sample> = (0..10)
            .map(|i| Sample::new(NOW - (10 - i) * MINUTE, None, short, &cpu(13_409), None))
            .collect();
        let l = Learner::new(LearningConfig::default());
        l.import_at(&record("small", 10, stored), NOW);
        let est = l.estimate(&key("small"), None);
        assert_eq!(est.expected.get(Dim::Cpu), None, "{est:?}");
        assert_eq!(est.reserve, fallback(), "the fallback, not 13 cores");
        // Live: a short run adds no CPU sample either; timed runs do.
        for i in 0..10 {
            l.observe_at(
                &key("small"),
                None,
                &cpu(13_409),
                short,
                &Resources::NONE,
                NOW + i,
            );
        }
        assert_eq!(l.estimate(&key("small"), None).expected.get(Dim::Cpu), None);
        let saved = l.export();
        assert!(
            saved.classes[0]
                .samples
                .iter()
                .all(|s| s.usage().get(Dim::Cpu).is_none()),
            "what is saved holds no untimed rate"
        );
        for i in 0..10 {
            l.observe_at(
                &key("small"),
                None,
                &cpu(800),
                timed,
                &Resources::NONE,
                NOW + 100 + i,
            );
        }
        let est = l.estimate(&key("small"), None);
        assert_eq!(est.expected.get(Dim::Cpu), Some(800));
        // CPU is soft: the reserve is the expected usage, no margin.
        assert_eq!(est.reserve.get(Dim::Cpu), Some(800));
    }

    #[test]
    fn the_history_never_exceeds_its_cap_and_keeps_the_newest() {
        let l = Learner::new(LearningConfig {
            history: 3,
            ..LearningConfig::default()
        });
        for i in 1..=10 {
            observe(&l, "c", i * MIB, NOW + i * MS);
            let h = history(&l, "c");
            assert!(h.len() <= 3, "{} samples kept", h.len());
            assert_eq!(h.last(), Some(&(i * MIB)), "the newest is kept");
        }
        assert_eq!(history(&l, "c"), [8 * MIB, 9 * MIB, 10 * MIB]);
        assert_eq!(l.export().classes[0].runs, 10, "runs count every run");
        // Out-of-memory events are samples too, under the same cap.
        l.observe_oom_at(&key("c"), 5 * MIB, NOW + 11 * MS);
        let h = l.export().classes[0].samples.clone();
        assert_eq!(h.len(), 3);
        assert_eq!(h[2].oom_bytes, Some(5 * MIB));

        // A cap of zero keeps one sample (the newest).
        let one = Learner::new(LearningConfig {
            history: 0,
            ..LearningConfig::default()
        });
        for i in 1..=3 {
            observe(&one, "c", i * MIB, NOW + i * MS);
        }
        assert_eq!(history(&one, "c"), [3 * MIB]);
    }

    #[test]
    fn samples_older_than_max_age_leave_the_history() {
        let l = Learner::new(LearningConfig {
            max_age: Duration::from_secs(3600),
            ..LearningConfig::default()
        });
        observe(&l, "c", MIB, NOW);
        observe(&l, "c", 2 * MIB, NOW + 30 * MINUTE);
        observe(&l, "c", 3 * MIB, NOW + HOUR);
        assert_eq!(
            history(&l, "c"),
            [MIB, 2 * MIB, 3 * MIB],
            "exactly max_age: kept"
        );
        observe(&l, "c", 4 * MIB, NOW + HOUR + MS);
        assert_eq!(history(&l, "c"), [2 * MIB, 3 * MIB, 4 * MIB]);
        observe(&l, "c", 5 * MIB, NOW + 3 * HOUR);
        assert_eq!(history(&l, "c"), [5 * MIB]);
        assert_eq!(l.export().classes[0].runs, 5);
    }

    #[test]
    fn disabled_learns_nothing_and_uses_the_fallback() {
        let off = Learner::new(LearningConfig {
            enabled: false,
            ..LearningConfig::default()
        });
        let on = Learner::new(LearningConfig::default());
        for i in 0..20 {
            observe(&off, "c", 4 * MIB, NOW + i * MS);
            observe(&on, "c", 4 * MIB, NOW + i * MS);
        }
        assert_eq!(
            on.estimate(&key("c"), None).expected.get(Dim::Memory),
            Some(4 * MIB),
            "the same runs are learned when enabled"
        );
        let est = off.estimate(&key("c"), None);
        assert_eq!(est.reserve, fallback());
        assert_eq!(est.expected, Resources::NONE);
        assert!(!est.probe);
        assert!(off.export().classes.is_empty(), "nothing learned");
        assert!(off.accuracy().0.is_empty());
        // An out-of-memory report is not recorded either; the bump is still
        // returned, the same as when enabled.
        let bumped = off.observe_oom_at(&key("c"), 300 * MIB, NOW + DAY);
        assert_eq!(bumped, on.observe_oom_at(&key("c"), 300 * MIB, NOW + DAY));
        assert_eq!(bumped, PredictConfig::DEFAULT.oom_bump(300 * MIB));
        assert!(off.export().classes.is_empty());
        assert_eq!(off.estimate(&key("c"), None).reserve, fallback());

        // Stored profiles are kept (and saved back), but not used.
        let stored = on.export();
        off.import_at(&stored, NOW + DAY);
        assert_eq!(off.export().classes, stored.classes, "nothing lost");
        let est = off.estimate(&key("c"), None);
        assert_eq!((est.reserve, est.expected), (fallback(), Resources::NONE));
    }

    #[test]
    fn no_prediction_before_min_executions_runs() {
        let l = Learner::new(LearningConfig {
            min_executions: 6,
            confidence_threshold: Ppm::ZERO,
            ..LearningConfig::default()
        });
        for run in 1..=8u64 {
            observe(&l, "c", 7 * MIB, NOW + run * MS);
            let est = l.estimate(&key("c"), None);
            if run < 6 {
                assert_eq!(est.expected, Resources::NONE, "run {run}");
                assert_eq!(est.reserve, fallback(), "run {run}");
            } else {
                assert_eq!(est.expected.get(Dim::Memory), Some(7 * MIB), "run {run}");
                assert!(est.reserve.amount(Dim::Memory) >= 7 * MIB, "run {run}");
            }
        }
        // Below the predictor's own minimum (3), that minimum still holds.
        let low = Learner::new(LearningConfig {
            min_executions: 1,
            confidence_threshold: Ppm::ZERO,
            ..LearningConfig::default()
        });
        for run in 1..=3u64 {
            observe(&low, "c", 7 * MIB, NOW + run * MS);
            let learned = low.estimate(&key("c"), None).expected.get(Dim::Memory);
            assert_eq!(learned, (run >= 3).then_some(7 * MIB), "run {run}");
        }
        // A loaded profile counts the samples it keeps.
        let loaded = Learner::new(LearningConfig {
            min_executions: 6,
            confidence_threshold: Ppm::ZERO,
            ..LearningConfig::default()
        });
        let five: Vec<Sample> = (1..=5)
            .map(|i| sample(7 * MIB, NOW - i * MINUTE))
            .rev()
            .collect();
        loaded.import_at(&record("c", 100, five), NOW);
        assert_eq!(loaded.estimate(&key("c"), None).expected, Resources::NONE);
        observe(&loaded, "c", 7 * MIB, NOW);
        assert_eq!(
            loaded.estimate(&key("c"), None).expected.get(Dim::Memory),
            Some(7 * MIB)
        );
    }

    #[test]
    fn a_prediction_below_the_confidence_threshold_is_not_used() {
        let threshold = Ppm::from_percent(70);
        let l = Learner::new(LearningConfig {
            min_executions: 1,
            confidence_threshold: threshold,
            ..LearningConfig::default()
        });
        let cfg = l.predict_config();
        let (mut below, mut used) = (0, 0);
        for run in 1..=12u64 {
            observe(&l, "c", 7 * MIB, NOW + run * MS);
            let raw = predictor(&l, "c").predict_dim(&cfg, Dim::Memory, None, 0);
            let est = l.estimate(&key("c"), None);
            if raw.source != Source::Fallback && raw.confidence < threshold {
                below += 1;
                assert_eq!(est.expected, Resources::NONE, "run {run}: {raw:?}");
                assert_eq!(est.reserve, fallback(), "run {run}: {raw:?}");
            }
            if raw.confidence >= threshold {
                used += 1;
                assert_eq!(est.expected.get(Dim::Memory), Some(7 * MIB), "run {run}");
            }
        }
        assert!(
            below > 0 && used > 0,
            "both cases seen: {below} below, {used} used"
        );
        // A constant series gains 10% per run: 60% after 6 runs (not used),
        // exactly 70% after 7 (used: the threshold is inclusive).
        let at = |runs: u64| {
            let l = Learner::new(LearningConfig {
                min_executions: 1,
                confidence_threshold: threshold,
                ..LearningConfig::default()
            });
            for run in 1..=runs {
                observe(&l, "c", 7 * MIB, NOW + run * MS);
            }
            let c = predictor(&l, "c")
                .predict_dim(&cfg, Dim::Memory, None, 0)
                .confidence;
            (c, l.estimate(&key("c"), None).expected.get(Dim::Memory))
        };
        assert_eq!(at(6), (Ppm::from_percent(60), None));
        assert_eq!(at(7), (Ppm::from_percent(70), Some(7 * MIB)));

        // A threshold above 100% is never reached.
        let never = Learner::new(LearningConfig {
            min_executions: 1,
            confidence_threshold: Ppm::from_percent(101),
            ..LearningConfig::default()
        });
        for run in 1..=30u64 {
            observe(&never, "c", 7 * MIB, NOW + run * MS);
        }
        assert_eq!(
            predictor(&never, "c")
                .predict_dim(&cfg, Dim::Memory, None, 0)
                .confidence,
            Ppm::ONE
        );
        assert_eq!(never.estimate(&key("c"), None).expected, Resources::NONE);
    }
}
