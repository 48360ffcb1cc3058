//! The pool's metrics and one span per task through OpenTelemetry (feature
//! `otel`).
//!
//! - [`OtelMetrics`]: the metric families of the Prometheus registry
//!   ([`crate::metrics`]) through an OpenTelemetry
//!   [`Meter`](opentelemetry::metrics::Meter): same quantities, same units,
//!   same labels, same class cap.
//! - [`OtelSpans`]: one `tracing` span per task, with a child span per
//!   phase, exported through `tracing-opentelemetry`.
//! - [`otlp_pipeline`]: both exported over OTLP/HTTP (protobuf) to a
//!   collector, by default at `http://localhost:4318`.
//!
//! Both are [`Observer`](respool::observe::Observer)s: put them on the pool
//! (with [`Fanout`](crate::Fanout) for more than one).
//!
//! ```no_run
//! use std::sync::Arc;
//! use respool::Pool;
//! use respool_observe::{Fanout, SnapshotSource};
//! use respool_observe::otel::{otlp_pipeline, OtelMetrics, OtelSpans, OtlpConfig, DEFAULT_MAX_OPEN};
//!
//! let otlp = otlp_pipeline(&OtlpConfig::new().endpoint("http://localhost:4318"))?;
//! // The observers exist before the pool; the pool is attached once built.
//! let source = SnapshotSource::new();
//! let metrics = OtelMetrics::new(&otlp.meter(), source.clone());
//! let spans = OtelSpans::new(otlp.tracer(), DEFAULT_MAX_OPEN);
//! let pool = Arc::new(
//!     Pool::builder()
//!         .observer(Fanout::new().with(metrics).with(spans))
//!         .build()?,
//! );
//! source.attach(&pool);
//! pool.execute(|| ())?;
//! pool.shutdown();
//! otlp.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Metric names
//!
//! Instruments follow OpenTelemetry's conventions (dotted names, UCUM units,
//! no unit or `_total` in the name), chosen so that the standard
//! OpenTelemetry-to-Prometheus translation (the collector's Prometheus
//! exporters, Prometheus's own OTLP receiver, `opentelemetry-prometheus`:
//! dots to underscores, the unit's suffix added — `s` as `_seconds`, `By` as
//! `_bytes`, `1` as `_ratio` on gauges, units in braces dropped — and
//! `_total` on monotonic sums) gives exactly the Prometheus family names of
//! [`crate::metrics`]. Label keys and values are the same.
//!
//! | OpenTelemetry instrument | kind | unit | attributes | Prometheus family |
//! |---|---|---|---|---|
//! | `respool.tasks.submitted` | counter | `{task}` | | `respool_tasks_submitted_total` |
//! | `respool.tasks` | counter | `{task}` | `outcome` | `respool_tasks_total` |
//! | `respool.tasks.deferred` | counter | `{task}` | `dim` | `respool_tasks_deferred_total` |
//! | `respool.reservations.grown` | counter | `{reservation}` | | `respool_reservations_grown_total` |
//! | `respool.reservation.grown` | counter | `By` | | `respool_reservation_grown_bytes_total` |
//! | `respool.retries` | counter | `{retry}` | | `respool_retries_total` |
//! | `respool.queue_wait` | histogram | `s` | | `respool_queue_wait_seconds` |
//! | `respool.resource_wait` | histogram | `s` | | `respool_resource_wait_seconds` |
//! | `respool.run` | histogram | `s` | | `respool_run_seconds` |
//! | `respool.tasks.waiting` | up-down counter | `{task}` | `dim` | `respool_tasks_waiting` |
//! | `respool.tasks.running` | up-down counter | `{task}` | | `respool_tasks_running` |
//! | `respool.class.runs` | counter | `{run}` | `class` | `respool_class_runs_total` |
//! | `respool.class.run` | histogram | `s` | `class` | `respool_class_run_seconds` |
//! | `respool.class.memory_slack` | gauge | `By` | `class` | `respool_class_memory_slack_bytes` |
//! | `respool.class.prediction_accuracy` | gauge | `1` | `class` | `respool_class_prediction_accuracy_ratio` |
//! | `respool.class.predictions` | counter | `{prediction}` | `class` | `respool_class_predictions_total` |
//! | `respool.class.predictions_within_10pct` | counter | `{prediction}` | `class` | `respool_class_predictions_within_10pct_total` |
//! | `respool.admission.decisions` | counter | `{decision}` | `result` | `respool_admission_decisions_total` |
//! | `respool.wait_queue.depth` | gauge | `{task}` | | `respool_wait_queue_depth` |
//! | `respool.run_queue.depth` | gauge | `{task}` | | `respool_run_queue_depth` |
//! | `respool.workers` | gauge | `{worker}` | | `respool_workers` |
//! | `respool.capacity` | gauge | `By` | `dim` (memory, gpu_memory) | `respool_capacity_bytes` |
//! | `respool.effective_capacity` | gauge | `By` | `dim` | `respool_effective_capacity_bytes` |
//! | `respool.reserved` | gauge | `By` | `dim` | `respool_reserved_bytes` |
//! | `respool.capacity_cores` | gauge | `{core}` | `dim="cpu"` | `respool_capacity_cores` |
//! | `respool.effective_capacity_cores` | gauge | `{core}` | `dim="cpu"` | `respool_effective_capacity_cores` |
//! | `respool.reserved_cores` | gauge | `{core}` | `dim="cpu"` | `respool_reserved_cores` |
//! | `respool.capacity_units` | gauge | `{unit}` | `dim` (iops, network, gpu, user0..3) | `respool_capacity` (*) |
//! | `respool.effective_capacity_units` | gauge | `{unit}` | `dim` | `respool_effective_capacity` (*) |
//! | `respool.reserved_units` | gauge | `{unit}` | `dim` | `respool_reserved` (*) |
//! | `respool.fragmentation` | gauge | `1` | | `respool_fragmentation_ratio` |
//!
//! (*) The one exception: an OpenTelemetry instrument has one unit, so the
//! unitless per-dimension families cannot share the name `respool.capacity`
//! with the byte ones; they carry `_units`, and translate to
//! `respool_capacity_units` (and so on) rather than `respool_capacity`.
//!
//! Meanings, as in [`crate::metrics`]: `dim` of a deferral is the dimension
//! that blocked, `queue` when it waited behind earlier waiters; queue wait
//! is submission to (first) start, resource wait is first deferral to
//! admission (only tasks that waited), run time is (last) start to the
//! terminal event: they are never mixed. `outcome` is one of `finished`,
//! `failed`, `panicked`, `cancelled`, `timed_out`, `deadline_missed`,
//! `refused`, `not_run`; `result` one of `accepted`, `deferred`,
//! `rejected`, `admitted_after_wait`, `refused_after_wait`. At most
//! `max_classes` (default 64) distinct `class` values; later classes all
//! count under `class="_other"`; unclassified tasks have no per-class
//! series. A class's memory slack is the mean, over its last 16 measured
//! runs, of the memory reserved (at admission plus growth) minus the memory
//! measured. The per-dimension families show only the dimensions the pool
//! tracks.
//!
//! Not here: the monitor's readings (`respool_memory_pressure_ratio`,
//! `respool_container_memory_limit_bytes`), which the pool's snapshot does
//! not carry, and the slow-task families, which the slow-task detector
//! registers.
//!
//! ## How it is recorded
//!
//! Counters and gauges kept from events are relaxed atomics in the
//! observer, reported by observable instruments when the reader collects
//! (an observable counter reports the running total, as a cumulative
//! counter does); the figures read from the pool come from one
//! [`PoolSnapshot`](respool::PoolSnapshot), taken through the
//! [`SnapshotSource`](crate::SnapshotSource) at collection time and shared
//! by the instruments of that collection. The histograms are the SDK's,
//! recorded on the event with pre-built attribute sets (empty ones for the
//! pool-wide histograms, the SDK's fast path; the class's own pre-built
//! set for the per-class one): no allocation per event. The timings of a
//! task in flight (submitted, deferred, started) are kept in a fixed ring
//! of slots indexed by task id, each slot behind its own lock: the events
//! of one task take it once each, and two tasks meet on one only when more
//! tasks than slots are in flight (see
//! [`OtelMetricsBuilder::tracked_tasks`]).
//!
//! # Spans
//!
//! [`OtelSpans`] opens a `tracing` span named `respool.task` when a task is
//! submitted, with the fields `task.id`, `task.class`, `task.reservation`
//! (and `task.reservation.memory_bytes`), `task.worker` and `task.outcome`
//! (recorded as they become known; OpenTelemetry attributes of the same
//! names), and `otel.status_code = "ERROR"` when it failed, panicked, timed
//! out, missed its deadline or was refused. Its phases are child spans, one
//! after another: `respool.task.queued` (submitted to admitted, including
//! any wait for resources, with a `deferred` event naming the blocking
//! dimension), `respool.task.admitted` (admitted to started: in the run
//! queue) and `respool.task.running` (started to the terminal event, with
//! the worker); a retried task gets a `retried` event and a new `queued`
//! phase, a grown reservation a `reservation_grown` event. The span closes
//! on the task's terminal event, on whatever thread that happens.
//!
//! Timestamps: `tracing-opentelemetry` stamps a span's start when it is
//! created and its end when it closes, from the system clock. The pool
//! delivers each event synchronously on the thread where it happens, so
//! these are the event's own time to within the observer's call (the
//! event's `at`, on the pool's monotonic clock, is not used).
//!
//! Open spans are kept in a map keyed by task id and bounded by `max_open`:
//! a task submitted while that many are open is not traced at all (none of
//! its spans exist), and [`OtelSpans::skipped`] counts it. A span costs
//! what `tracing` and the OpenTelemetry SDK cost (allocations, a lock in
//! the registry and one in the map), far more than the metrics: sample, or
//! keep it for debugging, on pools of very short tasks.
//!
//! # OTLP
//!
//! [`otlp_pipeline`] sends protobuf over HTTP (`opentelemetry-otlp`'s
//! `http-proto`) with reqwest's blocking client, from the SDK's own
//! threads (the periodic reader and the batch span processor), so no async
//! runtime is needed. It is built without TLS: the endpoint must be
//! `http://` (a collector on the same host or network), and an `https://`
//! one is refused with [`OtlpError::InvalidEndpoint`]. Build it outside of
//! any tokio runtime. It has been tested against a loopback stub that
//! checks the requests' paths and content type, not against a real
//! collector.

mod metrics;
mod otlp;
mod spans;

pub use metrics::{
    DEFAULT_MAX_CLASSES, DEFAULT_TRACKED_TASKS, MAX_TRACKED_TASKS, OTHER_CLASS, OtelMetrics,
    OtelMetricsBuilder,
};
pub use otlp::{DEFAULT_ENDPOINT, OtlpConfig, OtlpError, OtlpPipeline, otlp_pipeline};
pub use spans::{DEFAULT_MAX_OPEN, OtelSpans};
