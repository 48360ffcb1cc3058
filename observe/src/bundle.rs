//! [`Observability`]: the parts of this crate wired together for one pool.

use std::sync::Arc;

use respool::Pool;
use respool::observe::{Event, Observer};

use crate::metrics::{Format, Metrics, MetricsConfig, MetricsError};
use crate::slow::{SlowConfig, SlowError, SlowTasks};
use crate::trace::{TraceConfig, TraceRecorder};
use crate::{Fanout, SnapshotSource};

/// Metrics, and optionally slow-task detection, a trace recorder and the
/// dashboard's live view, for one pool: one observer to install, one pool
/// to attach, one place to read each part from.
///
/// ```
/// use std::sync::Arc;
/// use respool::Pool;
/// use respool_observe::Observability;
/// use respool_observe::slow::SlowConfig;
///
/// let obs = Observability::new().with_slow(SlowConfig::default())?;
/// let pool = Arc::new(Pool::builder().workers(2).observer(obs.observer()).build()?);
/// obs.attach(&pool);
/// for i in 0..100u64 {
///     pool.task().class("square").execute(move |_| drop(std::hint::black_box(i * i)))?;
/// }
/// pool.shutdown();
/// let text = obs.metrics_text()?; // the Prometheus exposition, for `/metrics`
/// assert!(text.contains("respool_tasks_total{outcome=\"finished\"} 100"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Observability {
    source: SnapshotSource,
    metrics: Arc<Metrics>,
    slow: Option<Arc<SlowTasks>>,
    trace: Option<Arc<TraceRecorder>>,
    #[cfg(feature = "dashboard")]
    live: Option<Arc<crate::dashboard::Live>>,
    others: Vec<Arc<dyn Observer>>,
}

impl Default for Observability {
    fn default() -> Observability {
        Observability::new()
    }
}

impl Observability {
    /// Metrics with the default [`MetricsConfig`], nothing else yet.
    #[must_use]
    pub fn new() -> Observability {
        Observability::with_metrics(Metrics::with_defaults())
    }

    /// Metrics configured as `config` says.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Config`] for a setting out of its bounds.
    pub fn with_metrics_config(config: MetricsConfig) -> Result<Observability, MetricsError> {
        Ok(Observability::with_metrics(Metrics::new(config)?))
    }

    fn with_metrics(metrics: Arc<Metrics>) -> Observability {
        Observability {
            source: SnapshotSource::new(),
            metrics,
            slow: None,
            trace: None,
            #[cfg(feature = "dashboard")]
            live: None,
            others: Vec::new(),
        }
    }

    /// Adds slow-task detection (its families join the metrics).
    ///
    /// # Errors
    ///
    /// As [`SlowTasks::new`]: a setting out of bounds, or its watchdog
    /// thread could not start.
    pub fn with_slow(mut self, config: SlowConfig) -> Result<Observability, SlowError> {
        let slow = SlowTasks::new(config)?;
        self.metrics.attach_slow(&slow);
        self.slow = Some(slow);
        Ok(self)
    }

    /// Adds a trace recorder (Chrome trace-event JSON for Perfetto).
    #[must_use]
    pub fn with_trace(mut self, config: TraceConfig) -> Observability {
        self.trace = Some(TraceRecorder::new(config));
        self
    }

    /// Adds the dashboard's live view (running tasks, waiters, refusals);
    /// [`dashboard`](Self::dashboard) adds it by itself when missing.
    #[cfg(feature = "dashboard")]
    #[must_use]
    pub fn with_live(mut self) -> Observability {
        if self.live.is_none() {
            self.live = Some(Arc::new(crate::dashboard::Live::new()));
        }
        self
    }

    /// Adds an observer of yours; it gets every event after this crate's.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Observability {
        self.others.push(observer);
        self
    }

    /// The one observer to install with
    /// [`Builder::observer`](respool::Builder::observer): every part.
    #[must_use]
    pub fn observer(&self) -> Fanout {
        let mut all = Fanout::new().with(self.metrics.clone());
        if let Some(s) = &self.slow {
            all = all.with(s.clone());
        }
        if let Some(t) = &self.trace {
            all = all.with(t.clone());
        }
        #[cfg(feature = "dashboard")]
        if let Some(l) = &self.live {
            all = all.with(l.clone());
        }
        for o in &self.others {
            all = all.with(o.clone());
        }
        all
    }

    /// Attaches the pool built with [`observer`](Self::observer), held
    /// weakly, for the figures read from its snapshots. `false` if one was
    /// attached before (nothing changes).
    pub fn attach(&self, pool: &Arc<Pool>) -> bool {
        self.source.attach(pool)
    }

    /// Where the pool's snapshots are read.
    #[must_use]
    pub fn source(&self) -> &SnapshotSource {
        &self.source
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The whole exposition in Prometheus's text format (version 0.0.4,
    /// what `promtool` and every Prometheus server read), for a `/metrics`
    /// endpoint of yours; [`Metrics::encode`] gives OpenMetrics too.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Encode`] if encoding fails.
    pub fn metrics_text(&self) -> Result<String, MetricsError> {
        self.metrics.encode(&self.source, Format::Prometheus)
    }

    /// The slow-task detector, if added.
    #[must_use]
    pub fn slow(&self) -> Option<&Arc<SlowTasks>> {
        self.slow.as_ref()
    }

    /// The trace recorder, if added.
    #[must_use]
    pub fn trace(&self) -> Option<&Arc<TraceRecorder>> {
        self.trace.as_ref()
    }

    /// The live view, if added.
    #[cfg(feature = "dashboard")]
    #[must_use]
    pub fn live(&self) -> Option<&Arc<crate::dashboard::Live>> {
        self.live.as_ref()
    }

    /// A dashboard builder wired to these parts: the pool's snapshots, the
    /// live view (added by [`with_live`](Self::with_live); without it the
    /// page shows no running tasks or waiters), `/metrics` in Prometheus's
    /// text format, and the slow tasks as the page's "Slow tasks" panel.
    /// Set the address, token or refresh on it, then
    /// [`start`](crate::dashboard::Builder::start) it.
    #[cfg(feature = "dashboard")]
    pub fn dashboard(&self) -> crate::dashboard::Builder {
        let mut b = crate::dashboard::Dashboard::builder().snapshot(self.source.clone());
        if let Some(l) = &self.live {
            b = b.live(l.clone());
        }
        let (metrics, source) = (self.metrics.clone(), self.source.clone());
        b = b.metrics_with_type(
            Arc::new(move || {
                metrics
                    .encode(&source, Format::Prometheus)
                    .unwrap_or_default()
            }),
            Format::Prometheus.content_type(),
        );
        if let Some(s) = &self.slow {
            let s = s.clone();
            b = b.panel("slow", Arc::new(move || s.json()));
        }
        b
    }
}

impl Observer for Observability {
    /// Hands the event to every part (as [`observer`](Self::observer) does,
    /// for a caller that keeps the `Observability` itself in an `Arc`).
    fn on_event(&self, event: &Event<'_>) {
        self.metrics.on_event(event);
        if let Some(s) = &self.slow {
            s.on_event(event);
        }
        if let Some(t) = &self.trace {
            t.on_event(event);
        }
        #[cfg(feature = "dashboard")]
        if let Some(l) = &self.live {
            l.on_event(event);
        }
        for o in &self.others {
            o.on_event(event);
        }
    }
}

impl std::fmt::Debug for Observability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observability")
            .field("slow", &self.slow.is_some())
            .field("trace", &self.trace.is_some())
            .field("others", &self.others.len())
            .finish_non_exhaustive()
    }
}
