//! [`OtelSpans`]: one `tracing` span per task, exported through
//! `tracing-opentelemetry` (see the [module documentation](super)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use respool::Dim;
use respool::observe::{Event, EventKind, Observer};
use tracing::field::Empty;
use tracing::{Dispatch, Level, Span};
use tracing_subscriber::layer::SubscriberExt;

/// Default cap on the spans open at once.
pub const DEFAULT_MAX_OPEN: usize = 10_000;

/// Shards of the open-span map (by task id), so that workers ending
/// different tasks rarely meet on one lock.
const SHARDS: usize = 16;

/// The spans of one traced task: its own, and its current phase's.
struct TaskSpans {
    task: Span,
    phase: Option<Span>,
}

/// One span per task, with a child span per phase (see the [module
/// documentation](super#spans)): an [`Observer`] to install on the pool.
///
/// Open spans are kept in a map keyed by task id, bounded by `max_open`:
/// a task submitted while that many are open is not traced, and
/// [`OtelSpans::skipped`] counts it.
pub struct OtelSpans {
    dispatch: Dispatch,
    max_open: usize,
    open: AtomicUsize,
    skipped: AtomicU64,
    traced: AtomicU64,
    shards: [Mutex<HashMap<u64, Arc<Mutex<TaskSpans>>>>; SHARDS],
}

impl std::fmt::Debug for OtelSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelSpans")
            .field("max_open", &self.max_open)
            .field("open", &self.open())
            .field("skipped", &self.skipped())
            .finish_non_exhaustive()
    }
}

fn outcome(kind: &EventKind<'_>) -> Option<(&'static str, bool)> {
    // (label, whether it is an error for the span's status)
    Some(match kind {
        EventKind::Finished { .. } => ("finished", false),
        EventKind::Failed { .. } => ("failed", true),
        EventKind::Panicked => ("panicked", true),
        EventKind::Cancelled => ("cancelled", false),
        EventKind::TimedOut => ("timed_out", true),
        EventKind::DeadlineMissed => ("deadline_missed", true),
        EventKind::Refused { .. } => ("refused", true),
        EventKind::NotRun => ("not_run", false),
        _ => return None,
    })
}

impl OtelSpans {
    /// Spans exported by `tracer` (from an
    /// [`SdkTracerProvider`](opentelemetry_sdk::trace::SdkTracerProvider)),
    /// through a `tracing` subscriber of its own (a registry with the
    /// `tracing-opentelemetry` layer): the application's own subscriber,
    /// if any, does not see them. At most `max_open` spans open at once
    /// (at least 1; [`DEFAULT_MAX_OPEN`] is a reasonable choice).
    #[must_use]
    pub fn new(tracer: opentelemetry_sdk::trace::Tracer, max_open: usize) -> Arc<OtelSpans> {
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            .with_tracked_inactivity(false);
        let subscriber = tracing_subscriber::registry().with(layer);
        OtelSpans::with_dispatch(Dispatch::new(subscriber), max_open)
    }

    /// Spans sent to `dispatch`, a `tracing` subscriber of yours (with a
    /// `tracing-opentelemetry` layer, to reach OpenTelemetry). At most
    /// `max_open` spans open at once (at least 1).
    #[must_use]
    pub fn with_dispatch(dispatch: Dispatch, max_open: usize) -> Arc<OtelSpans> {
        Arc::new(OtelSpans {
            dispatch,
            max_open: max_open.max(1),
            open: AtomicUsize::new(0),
            skipped: AtomicU64::new(0),
            traced: AtomicU64::new(0),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        })
    }

    /// Tasks not traced because `max_open` spans were open.
    #[must_use]
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Relaxed)
    }

    /// Tasks traced so far.
    #[must_use]
    pub fn traced(&self) -> u64 {
        self.traced.load(Relaxed)
    }

    /// Task spans open now (never above `max_open`).
    #[must_use]
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Arc<Mutex<TaskSpans>>>> {
        // The modulus is SHARDS, so the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        &self.shards[(id % SHARDS as u64) as usize]
    }

    fn get(&self, id: u64) -> Option<Arc<Mutex<TaskSpans>>> {
        self.shard(id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    fn submitted(&self, id: u64, class: Option<&str>) {
        // Take a place first; give it back when over the cap.
        if self.open.fetch_add(1, Relaxed) >= self.max_open {
            self.open.fetch_sub(1, Relaxed);
            self.skipped.fetch_add(1, Relaxed);
            return;
        }
        let spans = tracing::dispatcher::with_default(&self.dispatch, || {
            let task = tracing::span!(
                target: "respool",
                Level::INFO,
                "respool.task",
                task.id = int(id),
                task.class = Empty,
                task.outcome = Empty,
                task.reservation = Empty,
                task.reservation.memory_bytes = Empty,
                task.worker = Empty,
                otel.status_code = Empty,
            );
            if let Some(c) = class {
                task.record("task.class", c);
            }
            let phase = queued(&task);
            TaskSpans {
                task,
                phase: Some(phase),
            }
        });
        self.traced.fetch_add(1, Relaxed);
        self.shard(id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(Mutex::new(spans)));
    }

    fn ended(&self, id: u64, label: &'static str, error: bool) {
        let Some(entry) = self
            .shard(id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
        else {
            return;
        };
        let mut spans = entry.lock().unwrap_or_else(PoisonError::into_inner);
        tracing::dispatcher::with_default(&self.dispatch, || {
            // The phase closes first, then the task's span.
            drop(spans.phase.take());
            spans.task.record("task.outcome", label);
            if error {
                spans.task.record("otel.status_code", "ERROR");
            }
            let task = std::mem::replace(&mut spans.task, Span::none());
            drop(task);
        });
        drop(spans);
        self.open.fetch_sub(1, Relaxed);
    }
}

/// An integer field as OpenTelemetry has them (`tracing-opentelemetry`
/// records a `u64` as its text).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn queued(task: &Span) -> Span {
    tracing::span!(target: "respool", parent: task, Level::INFO, "respool.task.queued")
}

impl Observer for OtelSpans {
    fn on_event(&self, e: &Event<'_>) {
        let Some(task) = e.task else { return };
        let id = task.get();
        if let EventKind::Submitted { .. } = e.kind {
            self.submitted(id, e.class);
            return;
        }
        if let Some((label, error)) = outcome(&e.kind) {
            self.ended(id, label, error);
            return;
        }
        let Some(entry) = self.get(id) else { return };
        let mut spans = entry.lock().unwrap_or_else(PoisonError::into_inner);
        let spans = &mut *spans;
        tracing::dispatcher::with_default(&self.dispatch, || match e.kind {
            EventKind::Deferred { shortfall } => {
                let dim = shortfall.map_or("queue", |s| s.dim.name());
                let by = int(shortfall.map_or(0, |s| s.by));
                if let Some(p) = &spans.phase {
                    tracing::event!(target: "respool", parent: p, Level::INFO, dim, by, "deferred");
                }
            }
            EventKind::Admitted { reservation } => {
                drop(spans.phase.take());
                if !reservation.is_empty() {
                    spans
                        .task
                        .record("task.reservation", tracing::field::display(reservation));
                    if let Some(m) = reservation.get(Dim::Memory) {
                        spans.task.record("task.reservation.memory_bytes", int(m));
                    }
                }
                spans.phase = Some(tracing::span!(
                    target: "respool",
                    parent: &spans.task,
                    Level::INFO,
                    "respool.task.admitted"
                ));
            }
            EventKind::Started { worker, .. } => {
                drop(spans.phase.take());
                let worker = int(u64::try_from(worker).unwrap_or(u64::MAX));
                spans.task.record("task.worker", worker);
                spans.phase = Some(tracing::span!(
                    target: "respool",
                    parent: &spans.task,
                    Level::INFO,
                    "respool.task.running",
                    worker
                ));
            }
            EventKind::Retried { attempt, delay } => {
                drop(spans.phase.take());
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                let attempt = i64::from(attempt);
                tracing::event!(
                    target: "respool",
                    parent: &spans.task,
                    Level::INFO,
                    attempt,
                    delay_ms,
                    "retried"
                );
                spans.phase = Some(queued(&spans.task));
            }
            EventKind::ReservationGrown { by } => {
                let bytes = int(by.amount(Dim::Memory));
                tracing::event!(
                    target: "respool",
                    parent: &spans.task,
                    Level::INFO,
                    bytes,
                    "reservation_grown"
                );
            }
            _ => {}
        });
    }
}
