//! Learning what each class of task needs.
//!
//! Tasks that carry a class key ([`TaskBuilder::class`](crate::TaskBuilder::class))
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
use respool_core::{Dim, PerDim, Ppm, Resources};

use crate::runq::lock;
use crate::store::{ClassRecord, Profiles, Sample};

/// How respool learns task requirements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearningConfig {
    /// Learn at all (default `true`). Disabled, classified tasks still run,
    /// on their declared requirements and the fallback.
    pub enabled: bool,
    /// Runs of a class before its predictions are used (default 3).
    pub min_executions: u32,
    /// Confidence a prediction needs to be used (default 50%).
    pub confidence_threshold: Ppm,
    /// Samples kept per class (default 256).
    pub history: usize,
    /// Samples older than this are dropped from the history (default 30 days).
    pub max_age: Duration,
    /// What a classified task reserves in dimensions it did not declare and
    /// that have no confident prediction yet (default 1 CPU and 256 MiB, the
    /// per-action estimate Bazel uses).
    pub fallback: Resources,
    /// Predictor tuning (percentile, safety margin, half-life...).
    pub predict: PredictConfig,
    /// Cold start: while a class's memory use is not learned, at most this
    /// many of its tasks run at once (default 1; 0 switches it off), so that
    /// the first runs of a class whose tasks outgrow the fallback cannot all
    /// start together. It applies only when the tracking allocator is
    /// installed (so memory can be learned), under the `Defer` and
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
}

impl ClassAccuracy {
    /// `within_10pct / predictions` over all predictions.
    #[must_use]
    pub fn share(&self) -> Ppm {
        Ppm::ratio(self.within_10pct, self.predictions)
    }
}

pub(crate) struct Learner {
    pub(crate) config: LearningConfig,
    classes: RwLock<HashMap<Arc<str>, Arc<Mutex<Profile>>>>,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Learner {
    pub(crate) fn new(config: LearningConfig) -> Learner {
        Learner {
            config,
            classes: RwLock::new(HashMap::new()),
        }
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
        for dim in est.learned {
            expected = expected.with_saturating(dim, est.expected.amount(dim));
        }
        let probe = self.config.probe_concurrency > 0
            && !est.learned.contains(Dim::Memory)
            && p.runs < u64::from(self.config.probe_runs);
        Estimate {
            reserve: est.reserve,
            expected,
            probe,
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
        if !self.config.enabled {
            return;
        }
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
        let at = unix_ns();
        let cfg = self.predict_config();
        p.predictor.observe(&cfg, usage, size, at);
        p.runs += 1;
        let sample = Sample::new(at, size, wall, usage, None);
        self.push_sample(&mut p, sample, at);
    }

    /// Records an out-of-memory event of a task of `class` at `usage` bytes.
    pub(crate) fn observe_oom(&self, class: &Arc<str>, usage: u64) -> u64 {
        let profile = self.class(class);
        let mut p = lock(&profile);
        let at = unix_ns();
        let bumped = p
            .predictor
            .observe_oom(&self.predict_config(), Dim::Memory, usage, at);
        let sample = Sample::new(at, None, Duration::ZERO, &Resources::NONE, Some(usage));
        self.push_sample(&mut p, sample, at);
        bumped
    }

    fn push_sample(&self, p: &mut Profile, sample: Sample, now: u64) {
        p.history.push_back(sample);
        let max_age = u64::try_from(self.config.max_age.as_nanos()).unwrap_or(u64::MAX);
        while p.history.len() > self.config.history.max(1)
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
    /// classes had). Returns the number of classes loaded.
    pub(crate) fn import(&self, profiles: &Profiles) -> usize {
        let cfg = self.predict_config();
        let now = unix_ns();
        let mut classes = self
            .classes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for record in &profiles.classes {
            let mut p = Profile::new();
            p.runs = record.runs;
            for s in &record.samples {
                match s.oom_bytes() {
                    Some(bytes) => {
                        p.predictor
                            .observe_oom(&cfg, Dim::Memory, bytes, s.at_unix_ns());
                    }
                    None => p
                        .predictor
                        .observe(&cfg, &s.usage(), s.size, s.at_unix_ns()),
                }
                self.push_sample(&mut p, s.clone(), now);
            }
            classes.insert(Arc::from(record.class.as_str()), Arc::new(Mutex::new(p)));
        }
        profiles.classes.len()
    }
}
