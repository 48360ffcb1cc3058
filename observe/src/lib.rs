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
//! Each part is an [`Observer`]; [`Fanout`] hands every event to several,
//! and [`Observability`] wires the parts together for one pool.

#![warn(missing_docs)]

mod bundle;
pub mod metrics;
mod outcome;
pub mod slow;
mod striped;
pub mod trace;

pub use bundle::Observability;

/// The user guide's observability chapter, its Rust examples compiled and
/// run as doctests (they use every feature: `ci/guide.sh` and
/// `ci/observe.sh` test with `--all-features`).
#[cfg(all(doctest, feature = "dashboard", feature = "otel"))]
#[doc = include_str!("../../docs/guide/src/observability.md")]
struct GuideObservability;

#[cfg(feature = "dashboard")]
pub mod dashboard;

#[cfg(feature = "otel")]
pub mod otel;

use std::sync::{Arc, OnceLock, Weak};

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
///
/// Observers are installed when the pool is built, so they exist before
/// it: make the source first ([`SnapshotSource::new`]), hand clones of it to
/// the observers, and [`attach`](SnapshotSource::attach) the pool once it is
/// built. Clones share the attachment.
///
/// ```
/// use std::sync::Arc;
/// use respool::Pool;
/// use respool_observe::SnapshotSource;
///
/// let source = SnapshotSource::new();
/// assert!(source.take().is_none(), "no pool yet");
/// let pool = Arc::new(Pool::builder().workers(1).build()?);
/// assert!(source.attach(&pool));
/// assert_eq!(source.take().map(|s| s.workers), Some(1));
/// drop(pool);
/// assert!(source.take().is_none(), "the source does not keep the pool alive");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SnapshotSource {
    inner: Arc<Source>,
}

enum Source {
    Pool(OnceLock<Weak<Pool>>),
    Fn(Box<dyn Fn() -> Option<PoolSnapshot> + Send + Sync>),
}

impl Default for SnapshotSource {
    fn default() -> SnapshotSource {
        SnapshotSource::new()
    }
}

impl SnapshotSource {
    /// A source with no pool yet: `None` until [`attach`](Self::attach).
    #[must_use]
    pub fn new() -> SnapshotSource {
        SnapshotSource {
            inner: Arc::new(Source::Pool(OnceLock::new())),
        }
    }

    /// Snapshots of `pool`, while it lives.
    #[must_use]
    pub fn of(pool: &Arc<Pool>) -> SnapshotSource {
        let source = SnapshotSource::new();
        source.attach(pool);
        source
    }

    /// Attaches `pool` (held weakly) to this source and every clone of it.
    /// Returns `false`, changing nothing, when a pool was attached before
    /// or the source reads a function ([`from_fn`](Self::from_fn)).
    pub fn attach(&self, pool: &Arc<Pool>) -> bool {
        match &*self.inner {
            Source::Pool(cell) => cell.set(Arc::downgrade(pool)).is_ok(),
            Source::Fn(_) => false,
        }
    }

    /// Snapshots from a function of yours (a pool you keep elsewhere, or a
    /// fixed snapshot in a test).
    #[must_use]
    pub fn from_fn(f: impl Fn() -> Option<PoolSnapshot> + Send + Sync + 'static) -> SnapshotSource {
        SnapshotSource {
            inner: Arc::new(Source::Fn(Box::new(f))),
        }
    }

    /// No pool, ever: always `None`.
    #[must_use]
    pub fn none() -> SnapshotSource {
        SnapshotSource::from_fn(|| None)
    }

    /// A snapshot now, if the pool is attached and still lives.
    #[must_use]
    pub fn take(&self) -> Option<PoolSnapshot> {
        match &*self.inner {
            Source::Pool(cell) => cell.get()?.upgrade().map(|p| p.snapshot()),
            Source::Fn(f) => f(),
        }
    }
}

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotSource")
    }
}
