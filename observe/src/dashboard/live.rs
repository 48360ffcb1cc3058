//! The [`Live`] observer: what runs, what waits and why, what was refused.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxHashMap;

use crate::outcome::{OUTCOMES, outcome_index};
use crate::striped::Striped;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use respool::observe::{Event, EventKind, Observer};
use respool::{Dim, Resources, Shortfall};
use serde_json::{Map, Value, json};

use super::state::resources;

/// Refusals kept (the most recent).
pub const REFUSALS_KEPT: usize = 50;
/// Bytes of a class name kept (longer names are cut at a character
/// boundary).
const CLASS_BYTES: usize = 48;
/// Characters of a refusal's reason kept.
const REASON_CHARS: usize = 240;

/// A class name in a fixed buffer: no allocation on the event path.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Name {
    len: u8,
    buf: [u8; CLASS_BYTES],
}

impl Name {
    fn new(s: &str) -> Name {
        let mut end = s.len().min(CLASS_BYTES);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut buf = [0u8; CLASS_BYTES];
        buf[..end].copy_from_slice(&s.as_bytes()[..end]);
        Name {
            len: u8::try_from(end).unwrap_or(0),
            buf,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

fn class_json(c: Option<Name>) -> Value {
    c.map_or(Value::Null, |n| Value::String(n.as_str().to_owned()))
}

struct Running {
    class: Option<Name>,
    worker: usize,
    started: Duration,
    reservation: Resources,
}

struct Waiter {
    class: Option<Name>,
    since: Duration,
    shortfall: Option<Shortfall>,
}

struct Refusal {
    task: u64,
    class: Option<Name>,
    at: Duration,
    reason: String,
}

/// Per class: reserved against measured, per dimension.
#[derive(Default)]
struct Slack {
    n: [u64; Dim::COUNT],
    reserved: [u128; Dim::COUNT],
    used: [u128; Dim::COUNT],
}

#[derive(Default)]
struct Inner {
    /// Admitted, not yet started: what each holds.
    admitted: FxHashMap<u64, Resources>,
    running: FxHashMap<u64, Running>,
    /// In submission order.
    waiting: BTreeMap<u64, Waiter>,
    /// Deferrals not listed because the list was full.
    unlisted: u64,
    /// Running tasks not listed because the table was full.
    running_unlisted: u64,
    refusals: VecDeque<Refusal>,
    slack: HashMap<Name, Slack>,
}

/// An [`Observer`] for the dashboard: running tasks per worker (id, class,
/// start, reservation), the wait queue with what each waiter lacks (from
/// [`Deferred`](EventKind::Deferred)'s shortfall), the last
/// [`REFUSALS_KEPT`] refusals with their reasons, outcome counts, and per
/// class the mean slack (reserved minus measured, for measured tasks).
///
/// # Cost
///
/// Counting is relaxed atomics. The tables sit behind one `Mutex`, taken
/// two or three times per task (start, end, and admission when the task
/// holds a reservation or waiters are listed); the tables have fixed
/// capacities (at most `max_waiters` waiters listed, `max_running` tasks
/// running or admitted, 64 classes), so the lock is held for a map insert
/// or remove, and nothing is allocated per event except the text of a
/// refusal. That lock is the price of a live table; a pool of very short
/// tasks on many workers pays for it in contention.
pub struct Live {
    inner: Mutex<Inner>,
    /// The pool clock's origin, learned from the first event.
    epoch: OnceLock<Instant>,
    submitted: Striped,
    deferred: Striped,
    outcomes: [Striped; OUTCOMES.len()],
    /// Waiters listed now (lets admission skip the lock when none is).
    listed: AtomicUsize,
    max_waiters: usize,
    max_running: usize,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("max_waiters", &self.max_waiters)
            .field("max_running", &self.max_running)
            .finish_non_exhaustive()
    }
}

impl Default for Live {
    fn default() -> Live {
        Live::with_limits(32, 1024)
    }
}

/// Classes with a slack figure (later ones are not tracked).
const MAX_CLASSES: usize = 64;

impl Live {
    /// At most 32 waiters listed, 1024 running tasks tracked.
    #[must_use]
    pub fn new() -> Live {
        Live::default()
    }

    /// At most `max_waiters` waiters listed (the earliest; the others are
    /// counted) and `max_running` running or admitted tasks tracked (each at
    /// least 1).
    #[must_use]
    pub fn with_limits(max_waiters: usize, max_running: usize) -> Live {
        Live {
            inner: Mutex::new(Inner::default()),
            epoch: OnceLock::new(),
            submitted: Striped::new(),
            deferred: Striped::new(),
            outcomes: std::array::from_fn(|_| Striped::new()),
            listed: AtomicUsize::new(0),
            max_waiters: max_waiters.max(1),
            max_running: max_running.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool's clock now (since it was built), as far as events told.
    fn now(&self) -> Duration {
        self.epoch.get().map_or(Duration::ZERO, Instant::elapsed)
    }

    /// Everything, as JSON: `running` (sorted by worker), `running_unlisted`,
    /// `waiting` (in submission order, with `lacks`: the dimension, the
    /// amount requested and available, and by how much it falls short),
    /// `waiting_unlisted` (deferrals not listed because the list was full),
    /// `refusals` (newest first), `outcomes` (counts by how tasks ended, and
    /// `submitted`, `deferred`), `slack` (per class and dimension, mean
    /// reserved minus measured).
    #[must_use]
    pub fn json(&self) -> Value {
        let now = self.now();
        let secs = |d: Duration| d.as_secs_f64();
        let inner = self.lock();
        let mut running: Vec<(usize, u64, Value)> = inner
            .running
            .iter()
            .map(|(&task, r)| {
                (
                    r.worker,
                    task,
                    json!({
                        "task": task,
                        "class": class_json(r.class),
                        "worker": r.worker,
                        "started_s": secs(r.started),
                        "running_s": secs(now.saturating_sub(r.started)),
                        "reservation": resources(&r.reservation),
                    }),
                )
            })
            .collect();
        running.sort_by_key(|&(w, t, _)| (w, t));
        let waiting: Vec<Value> = inner
            .waiting
            .iter()
            .map(|(&task, w)| {
                json!({
                    "task": task,
                    "class": class_json(w.class),
                    "since_s": secs(w.since),
                    "waited_s": secs(now.saturating_sub(w.since)),
                    "lacks": w.shortfall.map(|s| json!({
                        "dim": s.dim.name(),
                        "requested": s.requested,
                        "available": s.available,
                        "by": s.by,
                    })),
                })
            })
            .collect();
        let refusals: Vec<Value> = inner
            .refusals
            .iter()
            .rev()
            .map(|r| {
                json!({
                    "task": r.task,
                    "class": class_json(r.class),
                    "at_s": secs(r.at),
                    "reason": r.reason,
                })
            })
            .collect();
        let mut slack = Map::new();
        for (name, s) in &inner.slack {
            let mut dims = Map::new();
            for dim in Dim::ALL {
                let i = dim.index();
                if s.n[i] > 0 {
                    #[allow(clippy::cast_precision_loss)]
                    let mean = (s.reserved[i] as f64 - s.used[i] as f64) / s.n[i] as f64;
                    dims.insert(dim.name().to_owned(), json!(mean));
                }
            }
            slack.insert(name.as_str().to_owned(), Value::Object(dims));
        }
        let running_unlisted = inner.running_unlisted;
        let waiting_unlisted = inner.unlisted;
        drop(inner);
        let mut outcomes = Map::new();
        outcomes.insert(
            "submitted".into(),
            json!(self.submitted.load(Ordering::Relaxed)),
        );
        outcomes.insert(
            "deferred".into(),
            json!(self.deferred.load(Ordering::Relaxed)),
        );
        for (name, n) in OUTCOMES.iter().zip(&self.outcomes) {
            outcomes.insert((*name).into(), json!(n.load(Ordering::Relaxed)));
        }
        json!({
            "now_s": secs(now),
            "running": running.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>(),
            "running_unlisted": running_unlisted,
            "waiting": waiting,
            "waiting_unlisted": waiting_unlisted,
            "refusals": refusals,
            "outcomes": outcomes,
            "slack": slack,
        })
    }
}

impl Observer for Live {
    fn on_event(&self, e: &Event<'_>) {
        self.epoch.get_or_init(|| {
            Instant::now()
                .checked_sub(e.at)
                .unwrap_or_else(Instant::now)
        });
        let Some(task) = e.task.map(|t| t.get()) else {
            return;
        };
        let class = e.class.map(Name::new);
        match e.kind {
            EventKind::Submitted { .. } => {
                self.submitted.fetch_add(1, Ordering::Relaxed);
            }
            EventKind::Deferred { shortfall } => {
                self.deferred.fetch_add(1, Ordering::Relaxed);
                let mut inner = self.lock();
                if inner.waiting.len() < self.max_waiters || inner.waiting.contains_key(&task) {
                    inner.waiting.insert(
                        task,
                        Waiter {
                            class,
                            since: e.at,
                            shortfall,
                        },
                    );
                    self.listed.store(inner.waiting.len(), Ordering::Relaxed);
                } else {
                    inner.unlisted += 1;
                }
            }
            EventKind::Admitted { reservation } => {
                if reservation.is_empty() && self.listed.load(Ordering::Relaxed) == 0 {
                    return;
                }
                let mut inner = self.lock();
                if inner.waiting.remove(&task).is_some() {
                    self.listed.store(inner.waiting.len(), Ordering::Relaxed);
                }
                if !reservation.is_empty() && inner.admitted.len() < self.max_running {
                    inner.admitted.insert(task, *reservation);
                }
            }
            EventKind::Started { worker, .. } => {
                let mut inner = self.lock();
                let reservation = inner.admitted.remove(&task).unwrap_or(Resources::NONE);
                if inner.running.len() < self.max_running {
                    inner.running.insert(
                        task,
                        Running {
                            class,
                            worker,
                            started: e.at,
                            reservation,
                        },
                    );
                } else {
                    inner.running_unlisted += 1;
                }
            }
            EventKind::Retried { .. } => {
                self.lock().running.remove(&task);
            }
            ref k if k.is_terminal() => {
                if let Some(i) = outcome_index(k) {
                    if let Some(c) = self.outcomes.get(i) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let reason = match k {
                    EventKind::Refused { error } => {
                        let mut s = error.to_string();
                        if let Some((cut, _)) = s.char_indices().nth(REASON_CHARS) {
                            s.truncate(cut);
                        }
                        Some(s)
                    }
                    _ => None,
                };
                let mut inner = self.lock();
                if inner.waiting.remove(&task).is_some() {
                    self.listed.store(inner.waiting.len(), Ordering::Relaxed);
                }
                inner.admitted.remove(&task);
                let ran = inner.running.remove(&task);
                if let (EventKind::Finished { usage: Some(u) }, Some(ran), Some(name)) =
                    (k, ran, class)
                {
                    let used = u.as_resources();
                    if inner.slack.len() < MAX_CLASSES || inner.slack.contains_key(&name) {
                        let s = inner.slack.entry(name).or_default();
                        for (dim, reserved) in ran.reservation.iter() {
                            if let Some(used) = used.get(dim) {
                                let i = dim.index();
                                s.n[i] += 1;
                                s.reserved[i] += u128::from(reserved);
                                s.used[i] += u128::from(used);
                            }
                        }
                    }
                }
                if let Some(reason) = reason {
                    if inner.refusals.len() == REFUSALS_KEPT {
                        inner.refusals.pop_front();
                    }
                    inner.refusals.push_back(Refusal {
                        task,
                        class,
                        at: e.at,
                        reason,
                    });
                }
            }
            _ => {}
        }
    }
}
