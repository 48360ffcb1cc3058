//! See what a [respool] pool does, built only on its public
//! [observer seam](respool::observe): nothing here is inside the pool, and
//! a pool without these observers pays nothing for them.
//!
//! - [`metrics`]: a Prometheus registry (on the official
//!   `prometheus-client` crate) of task outcomes, admission decisions, the
//!   wait queue, capacity against reservations and measured use, and per
//!   class prediction accuracy and slack; as text for `/metrics`.
//! - [`slow`]: slow running tasks (run time past a multiple of their class's
//!   learned p95) and stuck waiters (queue time past a threshold), never
//!   mixing the two.
//! - [`trace`]: a bounded ring of events saved as Chrome trace-event JSON,
//!   which opens in <https://ui.perfetto.dev> and `chrome://tracing`.
//! - `dashboard` (feature `dashboard`): a live page, secure by default.
//! - `otel` (feature `otel`): the same metrics and one span per task
//!   through OpenTelemetry.
//!
//! Each part is an [`Observer`]; [`Fanout`] hands every event to several.

#![warn(missing_docs)]

pub mod metrics;
pub mod slow;
pub mod trace;

#[cfg(feature = "dashboard")]
pub mod dashboard;

#[cfg(feature = "otel")]
pub mod otel;

use std::sync::{Arc, Weak};

use respool::observe::{Event, Observer};
use respool::{Pool, PoolSnapshot};

/// Hands every event to each of several observers, in order.
#[derive(Clone, Default)]
pub struct Fanout {
    observers: Vec<Arc<dyn Observer>>,
}

impl Fanout {
    /// No observers yet.
    #[must_use]
    pub fn new() -> Fanout {
        Fanout::default()
    }

    /// Adds one.
    #[must_use]
    pub fn with(mut self, observer: Arc<dyn Observer>) -> Fanout {
        self.observers.push(observer);
        self
    }

    /// How many it hands events to.
    #[must_use]
    pub fn len(&self) -> usize {
        self.observers.len()
    }

    /// Whether it has none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.observers.is_empty()
    }
}

impl Observer for Fanout {
    fn on_event(&self, event: &Event<'_>) {
        for o in &self.observers {
            o.on_event(event);
        }
    }
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("observers", &self.observers.len())
            .finish()
    }
}

/// Where scrapes and the dashboard read the pool's own figures: a
/// [`PoolSnapshot`] taken on demand. Holds the pool weakly, so a
/// metrics endpoint never keeps a pool alive; once it is gone, `None`.
#[derive(Clone)]
pub struct SnapshotSource {
    take: Arc<dyn Fn() -> Option<PoolSnapshot> + Send + Sync>,
}

impl SnapshotSource {
    /// Snapshots of `pool`, while it lives.
    #[must_use]
    pub fn of(pool: &Arc<Pool>) -> SnapshotSource {
        let weak: Weak<Pool> = Arc::downgrade(pool);
        SnapshotSource {
            take: Arc::new(move || weak.upgrade().map(|p| p.snapshot())),
        }
    }

    /// Snapshots from a function of yours (a pool you keep elsewhere, or a
    /// fixed snapshot in a test).
    #[must_use]
    pub fn from_fn(f: impl Fn() -> Option<PoolSnapshot> + Send + Sync + 'static) -> SnapshotSource {
        SnapshotSource { take: Arc::new(f) }
    }

    /// No pool: always `None`.
    #[must_use]
    pub fn none() -> SnapshotSource {
        SnapshotSource::from_fn(|| None)
    }

    /// A snapshot now, if the pool still lives.
    #[must_use]
    pub fn take(&self) -> Option<PoolSnapshot> {
        (self.take)()
    }
}

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotSource")
    }
}
