//! The OpenTelemetry bridge (feature `otel`) against a real pool, with the
//! SDK's in-memory exporters: the counters equal the pool's own counts, the
//! histograms have one sample per started task, one span per task with its
//! outcome and phases, the span cap holds; and the OTLP/HTTP exporter
//! really sends protobuf to `/v1/traces` and `/v1/metrics` (a loopback stub
//! stands in for the collector).
#![cfg(feature = "otel")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use respool::{Dim, JoinHandle, Policy, Pool, Resources, SubmitError, TaskError};
use respool_observe::otel::{OtelMetrics, OtelSpans, OtlpConfig, otlp_pipeline};
use respool_observe::{Fanout, SnapshotSource};

/// Turns a hang into a failure; never a threshold on speed.
const SAFETY: Duration = Duration::from_secs(60);

fn mem(n: u64) -> Resources {
    Resources::NONE.with_saturating(Dim::Memory, n)
}

fn join<T: Send>(h: JoinHandle<T>) -> Result<T, TaskError> {
    h.join_timeout(SAFETY)
        .unwrap_or_else(|_| panic!("a task did not finish within the safety timeout"))
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < SAFETY, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

fn quiet_expected_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|s| s.starts_with("otel test panic"));
            if !expected {
                default(info);
            }
        }));
    });
}

/// What the in-memory exporters saw.
struct Harness {
    meter_provider: SdkMeterProvider,
    metric_exporter: InMemoryMetricExporter,
    tracer_provider: SdkTracerProvider,
    span_exporter: InMemorySpanExporter,
}

impl Harness {
    fn new() -> Harness {
        let metric_exporter = InMemoryMetricExporter::default();
        // Collected only when the test flushes.
        let reader = PeriodicReader::builder(metric_exporter.clone())
            .with_interval(Duration::from_secs(3600))
            .build();
        let span_exporter = InMemorySpanExporter::default();
        Harness {
            meter_provider: SdkMeterProvider::builder().with_reader(reader).build(),
            metric_exporter,
            tracer_provider: SdkTracerProvider::builder()
                .with_simple_exporter(span_exporter.clone())
                .build(),
            span_exporter,
        }
    }

    /// Collects now and returns the metrics, flattened.
    fn metrics(&self) -> Metrics {
        self.meter_provider.force_flush().expect("metrics flush");
        let all = self
            .metric_exporter
            .get_finished_metrics()
            .expect("metrics");
        Metrics::of(all.last().expect("one collection"))
    }

    fn spans(&self) -> Vec<SpanData> {
        self.tracer_provider.force_flush().expect("traces flush");
        self.span_exporter.get_finished_spans().expect("spans")
    }
}

/// One point: an instrument's name and its attributes, sorted.
type Key = (String, Vec<(String, String)>);

/// Values by point (histograms by their sample count), with each metric's unit.
#[derive(Debug, Default)]
struct Metrics {
    values: BTreeMap<Key, f64>,
    counts: BTreeMap<Key, u64>,
    units: BTreeMap<String, String>,
}

fn key(name: &str, attrs: impl Iterator<Item = KeyValue>) -> Key {
    let mut a: Vec<(String, String)> = attrs
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    a.sort();
    (name.to_owned(), a)
}

impl Metrics {
    fn of(rm: &ResourceMetrics) -> Metrics {
        let mut m = Metrics::default();
        for scope in rm.scope_metrics() {
            for metric in scope.metrics() {
                let name = metric.name();
                m.units.insert(name.to_owned(), metric.unit().to_owned());
                macro_rules! points {
                    ($data:expr, $conv:expr) => {
                        match $data {
                            MetricData::Sum(s) => {
                                for p in s.data_points() {
                                    m.values.insert(
                                        key(name, p.attributes().cloned()),
                                        $conv(p.value()),
                                    );
                                }
                            }
                            MetricData::Gauge(g) => {
                                for p in g.data_points() {
                                    m.values.insert(
                                        key(name, p.attributes().cloned()),
                                        $conv(p.value()),
                                    );
                                }
                            }
                            MetricData::Histogram(h) => {
                                for p in h.data_points() {
                                    m.counts
                                        .insert(key(name, p.attributes().cloned()), p.count());
                                }
                            }
                            MetricData::ExponentialHistogram(_) => {}
                        }
                    };
                }
                #[allow(clippy::cast_precision_loss)]
                match metric.data() {
                    AggregatedMetrics::F64(d) => points!(d, |v: f64| v),
                    AggregatedMetrics::U64(d) => points!(d, |v: u64| v as f64),
                    AggregatedMetrics::I64(d) => points!(d, |v: i64| v as f64),
                }
            }
        }
        m
    }

    fn value(&self, name: &str, attrs: &[(&str, &str)]) -> Option<f64> {
        let k = key(
            name,
            attrs
                .iter()
                .map(|(k, v)| KeyValue::new((*k).to_owned(), (*v).to_owned())),
        );
        self.values.get(&k).copied()
    }

    /// A counter's value; absent counts as zero.
    fn count(&self, name: &str, attrs: &[(&str, &str)]) -> u64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let v = self.value(name, attrs).unwrap_or(0.0) as u64;
        v
    }

    fn histogram(&self, name: &str, attrs: &[(&str, &str)]) -> u64 {
        let k = key(
            name,
            attrs
                .iter()
                .map(|(k, v)| KeyValue::new((*k).to_owned(), (*v).to_owned())),
        );
        self.counts.get(&k).copied().unwrap_or(0)
    }
}

fn attr<'a>(span: &'a SpanData, name: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == name)
        .map(|kv| &kv.value)
}

fn task_id(span: &SpanData) -> i64 {
    match attr(span, "task.id") {
        Some(Value::I64(v)) => *v,
        other => panic!("task.id: {other:?}"),
    }
}

/// The names of the children of `parent`, in start order.
fn phases(spans: &[SpanData], parent: &SpanData) -> Vec<String> {
    let mut c: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_context.span_id())
        .collect();
    c.sort_by_key(|s| s.start_time);
    c.iter().map(|s| s.name.to_string()).collect()
}

#[test]
fn metrics_and_spans_of_a_real_pool() {
    quiet_expected_panics();
    let h = Harness::new();
    let source = SnapshotSource::new();
    let metrics = OtelMetrics::builder(&h.meter_provider.meter("respool"), source.clone())
        .max_classes(2)
        .build();
    let spans = OtelSpans::new(h.tracer_provider.tracer("respool"), 1000);
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .capacity(mem(1000))
            .headroom(Resources::NONE)
            .admission(Policy::Defer)
            .observer(Fanout::new().with(metrics.clone()).with(spans.clone()))
            .build()
            .expect("pool"),
    );
    assert!(source.attach(&pool), "attached once");

    // A holder of 800 bytes, until released.
    let (release, rx) = mpsc::channel::<()>();
    let hold = pool
        .task()
        .class("hold")
        .memory("800B")
        .spawn(move |_| {
            let _ = rx.recv_timeout(SAFETY);
        })
        .expect("holder admitted");
    // It waits for 300 bytes more than are free.
    let waiter = pool
        .task()
        .class("wait")
        .memory("500B")
        .spawn(|_| "ran")
        .expect("waiter accepted");
    wait_until("the waiter to wait", || pool.snapshot().waiting == 1);
    // Never fits: refused.
    let refused = pool.task().memory("2000B").spawn(|_| ());
    assert!(
        matches!(refused, Err(SubmitError::NeverFits(_))),
        "{refused:?}"
    );
    release.send(()).expect("holder listens");
    join(hold).expect("holder ran");
    assert_eq!(join(waiter), Ok("ran"));
    // Past the class cap: both count under `_other`.
    let boom = pool
        .task()
        .class("boom")
        .spawn(|_| -> u32 { panic!("otel test panic") })
        .expect("accepted");
    assert!(matches!(join(boom), Err(TaskError::Panicked(_))));
    join(pool.task().class("late").spawn(|_| ()).expect("accepted")).expect("ran");
    // Plain tasks, no class.
    for _ in 0..5 {
        join(pool.task().spawn(|_| ()).expect("accepted")).expect("ran");
    }
    pool.shutdown();
    let snap = pool.snapshot();
    let m = h.metrics();

    // Counters equal the pool's own counts.
    let outcome = |o: &str| m.count("respool.tasks", &[("outcome", o)]);
    assert_eq!(outcome("finished"), snap.completed, "{m:#?}");
    assert_eq!(outcome("panicked"), snap.panicked);
    assert_eq!(outcome("refused"), snap.rejected);
    assert_eq!(outcome("finished"), 8);
    assert_eq!(outcome("panicked"), 1);
    assert_eq!(outcome("refused"), 1);
    let ended: u64 = [
        "finished",
        "failed",
        "panicked",
        "cancelled",
        "timed_out",
        "deadline_missed",
        "refused",
        "not_run",
    ]
    .iter()
    .map(|o| outcome(o))
    .sum();
    let submitted = m.count("respool.tasks.submitted", &[]);
    assert_eq!(submitted, ended, "one terminal event per submitted task");
    assert_eq!(submitted, snap.submitted, "{snap:?}");
    assert_eq!(
        m.count("respool.tasks.deferred", &[("dim", "memory")]),
        snap.admission.deferred
    );
    assert_eq!(snap.admission.deferred, 1);
    for (result, v) in [
        ("accepted", snap.admission.accepted),
        ("deferred", snap.admission.deferred),
        ("rejected", snap.admission.rejected),
        ("admitted_after_wait", snap.admission.admitted_after_wait),
        ("refused_after_wait", snap.admission.rejected_after_wait),
    ] {
        assert_eq!(
            m.count("respool.admission.decisions", &[("result", result)]),
            v,
            "{result}"
        );
    }
    // Histograms: one sample per started task; one resource wait.
    let started = snap.completed + snap.panicked;
    assert_eq!(m.histogram("respool.queue_wait", &[]), started);
    assert_eq!(m.histogram("respool.run", &[]), started);
    assert_eq!(
        m.histogram("respool.resource_wait", &[]),
        snap.admission.admitted_after_wait
    );
    assert_eq!(m.units["respool.queue_wait"], "s");
    // Gauges back to rest.
    assert_eq!(m.value("respool.tasks.running", &[]), Some(0.0));
    assert_eq!(
        m.value("respool.tasks.waiting", &[("dim", "memory")]),
        Some(0.0)
    );
    assert_eq!(m.value("respool.wait_queue.depth", &[]), Some(0.0));
    assert_eq!(m.value("respool.workers", &[]), Some(2.0));
    assert_eq!(
        m.value("respool.capacity", &[("dim", "memory")]),
        Some(1000.0)
    );
    assert_eq!(m.units["respool.capacity"], "By");
    assert_eq!(m.value("respool.reserved", &[("dim", "memory")]), Some(0.0));
    // Per class: the first two classes by name, the rest under `_other`.
    let runs = |c: &str| m.count("respool.class.runs", &[("class", c)]);
    assert_eq!((runs("hold"), runs("wait"), runs("_other")), (1, 1, 2));
    assert_eq!(m.histogram("respool.class.run", &[("class", "_other")]), 2);
    assert!(
        !m.values.keys().chain(m.counts.keys()).any(|(_, a)| a
            .iter()
            .any(|(k, v)| k == "class" && (v == "boom" || v == "late"))),
        "classes past the cap have no series of their own"
    );
    assert_eq!(metrics.untracked(), 0);

    // One span per task, with its outcome and phases.
    let all = h.spans();
    let tasks: Vec<&SpanData> = all.iter().filter(|s| s.name == "respool.task").collect();
    assert_eq!(tasks.len() as u64, submitted, "one span per task");
    let mut ids: Vec<i64> = tasks.iter().map(|s| task_id(s)).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), tasks.len(), "one span per task id");
    let with_outcome = |o: &str| {
        tasks
            .iter()
            .filter(|s| attr(s, "task.outcome") == Some(&Value::from(o.to_owned())))
            .count() as u64
    };
    assert_eq!(with_outcome("finished"), 8);
    assert_eq!(with_outcome("panicked"), 1);
    assert_eq!(with_outcome("refused"), 1);
    let class = |c: &str| {
        *tasks
            .iter()
            .find(|s| attr(s, "task.class") == Some(&Value::from(c.to_owned())))
            .unwrap_or_else(|| panic!("the {c} task's span"))
    };
    let waited = class("wait");
    assert_eq!(
        phases(&all, waited),
        [
            "respool.task.queued",
            "respool.task.admitted",
            "respool.task.running"
        ]
    );
    let queued = all
        .iter()
        .find(|s| {
            s.parent_span_id == waited.span_context.span_id() && s.name == "respool.task.queued"
        })
        .expect("queued phase");
    let deferred = queued
        .events
        .iter()
        .find(|e| e.name == "deferred")
        .expect("a deferred event");
    assert!(
        deferred
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "dim" && kv.value.as_str() == "memory"),
        "{deferred:?}"
    );
    assert!(
        attr(waited, "task.reservation").is_some_and(|v| v.as_str().contains("memory")),
        "{waited:?}"
    );
    assert_eq!(
        attr(waited, "task.reservation.memory_bytes"),
        Some(&Value::I64(500))
    );
    let boom = class("boom");
    assert!(
        matches!(boom.status, Status::Error { .. }),
        "{:?}",
        boom.status
    );
    assert_eq!(
        phases(&all, boom),
        [
            "respool.task.queued",
            "respool.task.admitted",
            "respool.task.running"
        ]
    );
    let refused = tasks
        .iter()
        .find(|s| attr(s, "task.outcome") == Some(&Value::from("refused".to_owned())))
        .expect("the refused task's span");
    assert_eq!(phases(&all, refused), ["respool.task.queued"]);
    // Each phase lies within its task's span.
    for t in &tasks {
        for p in all
            .iter()
            .filter(|s| s.parent_span_id == t.span_context.span_id())
        {
            assert!(t.start_time <= p.start_time && p.end_time <= t.end_time);
        }
    }
    assert_eq!((spans.open(), spans.skipped()), (0, 0));
}

#[test]
fn the_span_cap_holds() {
    let h = Harness::new();
    let spans = OtelSpans::new(h.tracer_provider.tracer("respool"), 2);
    let pool = Pool::builder()
        .workers(1)
        .observer(spans.clone())
        .build()
        .expect("pool");
    // The one worker is held; the others queue behind it.
    let (started_tx, started_rx) = mpsc::channel();
    let (release, rx) = mpsc::channel::<()>();
    let blocker = pool
        .task()
        .spawn(move |_| {
            started_tx.send(()).expect("the test listens");
            let _ = rx.recv_timeout(SAFETY);
        })
        .expect("accepted");
    started_rx.recv_timeout(SAFETY).expect("the blocker runs");
    let queued: Vec<_> = (0..5)
        .map(|_| pool.task().spawn(|_| ()).expect("accepted"))
        .collect();
    // The blocker and the first queued task are traced; the cap stops the rest.
    assert_eq!(spans.open(), 2);
    assert_eq!(spans.skipped(), 4);
    release.send(()).expect("the blocker listens");
    join(blocker).expect("ran");
    for q in queued {
        join(q).expect("ran");
    }
    pool.shutdown();
    // Every traced task's span closed; later tasks are traced again.
    assert_eq!(spans.open(), 0);
    let more = Pool::builder()
        .workers(1)
        .observer(spans.clone())
        .build()
        .expect("pool");
    join(more.task().spawn(|_| ()).expect("accepted")).expect("ran");
    more.shutdown();
    assert_eq!((spans.traced(), spans.skipped(), spans.open()), (3, 4, 0));
    let tasks = h
        .spans()
        .into_iter()
        .filter(|s| s.name == "respool.task")
        .count();
    assert_eq!(tasks, 3);
}

#[test]
fn histogram_samples_of_tasks_past_the_slots_are_dropped_not_mixed() {
    let h = Harness::new();
    let source = SnapshotSource::new();
    let metrics = OtelMetrics::builder(&h.meter_provider.meter("respool"), source.clone())
        .tracked_tasks(2)
        .build();
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .observer(metrics.clone())
            .build()
            .expect("pool"),
    );
    assert!(source.attach(&pool), "attached once");
    let (started_tx, started_rx) = mpsc::channel();
    let (release, rx) = mpsc::channel::<()>();
    let blocker = pool
        .task()
        .spawn(move |_| {
            started_tx.send(()).expect("the test listens");
            let _ = rx.recv_timeout(SAFETY);
        })
        .expect("accepted");
    started_rx.recv_timeout(SAFETY).expect("the blocker runs");
    // Five more in flight than two slots hold.
    let queued: Vec<_> = (0..5)
        .map(|_| pool.task().spawn(|_| ()).expect("accepted"))
        .collect();
    release.send(()).expect("the blocker listens");
    join(blocker).expect("ran");
    for q in queued {
        join(q).expect("ran");
    }
    pool.shutdown();
    let m = h.metrics();
    // Counters stay exact; histograms lose the evicted tasks' samples.
    assert_eq!(m.count("respool.tasks", &[("outcome", "finished")]), 6);
    assert_eq!(metrics.untracked(), 4);
    assert_eq!(m.histogram("respool.run", &[]), 2);
    assert_eq!(m.value("respool.tasks.running", &[]), Some(0.0));
}

/// One request the stub received.
#[derive(Debug)]
struct Request {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// Accepts connections on a loopback port and answers each request `200`,
/// sending what it saw.
fn stub_collector() -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(SAFETY));
            let Ok(reader) = conn.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(reader).take(1 << 24);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let (mut content_type, mut len) = (String::new(), 0usize);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap_or_default();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-type" => value.trim().clone_into(&mut content_type),
                    "content-length" => len = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            let mut body = vec![0; len.min(1 << 24)];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            if tx
                .send(Request {
                    path,
                    content_type,
                    body,
                })
                .is_err()
            {
                return;
            }
        }
    });
    (endpoint, rx)
}

#[test]
fn otlp_http_really_sends_protobuf() {
    let (endpoint, requests) = stub_collector();
    let otlp = otlp_pipeline(&OtlpConfig::new().endpoint(&endpoint)).expect("pipeline");
    let metrics = OtelMetrics::new(&otlp.meter(), SnapshotSource::none());
    let spans = OtelSpans::new(otlp.tracer(), 100);
    let pool = Pool::builder()
        .workers(1)
        .observer(Fanout::new().with(metrics).with(spans))
        .build()
        .expect("pool");
    join(pool.task().spawn(|_| ()).expect("accepted")).expect("ran");
    pool.shutdown();
    otlp.force_flush().expect("both exports answered 200");
    let mut seen = BTreeMap::new();
    let start = Instant::now();
    while seen.len() < 2 {
        let left = SAFETY.saturating_sub(start.elapsed());
        let r = requests
            .recv_timeout(left)
            .expect("a request within the safety timeout");
        assert_eq!(r.content_type, "application/x-protobuf", "{r:?}");
        seen.insert(r.path.clone(), r);
    }
    let traces = &seen["/v1/traces"];
    let metrics = &seen["/v1/metrics"];
    // Protobuf carries strings as they are: the names are in the bodies.
    let has = |body: &[u8], s: &str| body.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has(&traces.body, "respool.task.running"), "{traces:?}");
    assert!(has(&metrics.body, "respool.tasks.submitted"), "{metrics:?}");
    otlp.shutdown().expect("shutdown");
}

#[test]
fn an_unreachable_collector_is_an_error_not_a_panic() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let otlp = otlp_pipeline(
        &OtlpConfig::new()
            .endpoint(format!("http://127.0.0.1:{port}"))
            .timeout(Duration::from_secs(5)),
    )
    .expect("pipeline");
    let metrics = OtelMetrics::new(&otlp.meter(), SnapshotSource::none());
    let pool = Pool::builder()
        .workers(1)
        .observer(metrics)
        .build()
        .expect("pool");
    join(pool.task().spawn(|_| ()).expect("accepted")).expect("ran");
    pool.shutdown();
    let err = otlp.force_flush().expect_err("nothing listens");
    assert!(err.to_string().contains("flush failed"), "{err}");
    let _ = otlp.shutdown();
}

#[global_allocator]
static ALLOC: respool::alloc::TrackingAllocator = respool::alloc::TrackingAllocator::system();

#[test]
fn the_snapshot_families_with_the_class_cap() {
    let pool = Pool::builder()
        .workers(3)
        .capacity(
            Resources::from_pairs(&[(Dim::Cpu, 1500), (Dim::Memory, 4096), (Dim::Iops, 100)])
                .expect("resources"),
        )
        .headroom(Resources::NONE)
        .build()
        .expect("pool");
    let mut snap = pool.snapshot();
    pool.shutdown();
    snap.capacity =
        Resources::from_pairs(&[(Dim::Cpu, 1500), (Dim::Memory, 4096), (Dim::Iops, 100)])
            .expect("resources");
    snap.reserved = Resources::from_pairs(&[(Dim::Cpu, 500), (Dim::Memory, 1024), (Dim::Iops, 7)])
        .expect("resources");
    snap.fragmentation = respool::Ppm::from_ppm(250_000);
    snap.waiting = 4;
    snap.queued = 2;
    let class = |name: &str, predictions: u64, within: u64| {
        let mut c = snap.learning.clone();
        c.class = name.to_owned();
        c.predictions = predictions;
        c.within_10pct = within;
        c
    };
    snap.classes = vec![class("a", 10, 9), class("b", 4, 1), class("c", 6, 3)];
    let fixed = snap.clone();
    let h = Harness::new();
    let _metrics = OtelMetrics::builder(
        &h.meter_provider.meter("respool"),
        SnapshotSource::from_fn(move || Some(fixed.clone())),
    )
    .max_classes(1)
    .build();
    let m = h.metrics();
    let v = |name: &str, attrs: &[(&str, &str)]| m.value(name, attrs);
    assert_eq!(v("respool.workers", &[]), Some(3.0));
    assert_eq!(v("respool.wait_queue.depth", &[]), Some(4.0));
    assert_eq!(v("respool.run_queue.depth", &[]), Some(2.0));
    assert_eq!(v("respool.capacity_cores", &[("dim", "cpu")]), Some(1.5));
    assert_eq!(v("respool.reserved_cores", &[("dim", "cpu")]), Some(0.5));
    assert_eq!(v("respool.capacity", &[("dim", "memory")]), Some(4096.0));
    assert_eq!(v("respool.reserved", &[("dim", "memory")]), Some(1024.0));
    assert_eq!(
        v("respool.effective_capacity", &[("dim", "memory")]),
        Some(4096.0)
    );
    assert_eq!(v("respool.capacity_units", &[("dim", "iops")]), Some(100.0));
    assert_eq!(v("respool.reserved_units", &[("dim", "iops")]), Some(7.0));
    // Only tracked dimensions, each in the family of its unit.
    assert_eq!(v("respool.capacity", &[("dim", "iops")]), None);
    assert_eq!(v("respool.capacity_units", &[("dim", "memory")]), None);
    assert_eq!(v("respool.capacity_units", &[("dim", "network")]), None);
    assert_eq!(v("respool.fragmentation", &[]), Some(0.25));
    assert_eq!(m.units["respool.fragmentation"], "1");
    // Class `a` has its own series; `b` and `c` are summed under `_other`.
    assert_eq!(
        v("respool.class.prediction_accuracy", &[("class", "a")]),
        Some(0.9)
    );
    assert_eq!(
        v("respool.class.prediction_accuracy", &[("class", "_other")]),
        Some(0.4)
    );
    assert_eq!(
        m.count("respool.class.predictions", &[("class", "_other")]),
        10
    );
    assert_eq!(
        m.count(
            "respool.class.predictions_within_10pct",
            &[("class", "_other")]
        ),
        4
    );
    assert_eq!(v("respool.class.predictions", &[("class", "b")]), None);
}

#[test]
fn memory_slack_of_a_class() {
    let h = Harness::new();
    let metrics = OtelMetrics::new(&h.meter_provider.meter("respool"), SnapshotSource::none());
    let pool = Pool::builder()
        .workers(1)
        .capacity(mem(1 << 30))
        .headroom(Resources::NONE)
        .observer(metrics)
        .build()
        .expect("pool");
    // Declares 4 MiB, uses far less.
    for _ in 0..3 {
        let task = pool.task().class("slack").memory("4MiB");
        join(
            task.spawn(|_| std::hint::black_box(vec![1u8; 1024]).len())
                .expect("accepted"),
        )
        .expect("ran");
    }
    pool.shutdown();
    let m = h.metrics();
    let slack = m
        .value("respool.class.memory_slack", &[("class", "slack")])
        .expect("a slack for the class");
    assert!(slack > 0.0 && slack <= f64::from(4u32 << 20), "{slack}");
    assert_eq!(m.units["respool.class.memory_slack"], "By");
}
