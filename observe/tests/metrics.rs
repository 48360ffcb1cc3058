//! The metrics observer on real pools: counters checked against the pool's
//! own snapshot after shutdown while a scraper reads the exposition during
//! the run; waits on capacity, refusals, panics and cancels; the class cap
//! and its overflow label; the measured slack of a class; a full task
//! table; and a parse of both text formats (every family has HELP and
//! TYPE, counters end in `_total`, no duplicate series).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use respool::alloc::TrackingAllocator;
use respool::{Dim, Policy, Pool, Resources, TaskError};
use respool_observe::SnapshotSource;
use respool_observe::metrics::{
    CONTENT_TYPE, Format, Metrics, MetricsConfig, MetricsError, PROMETHEUS_CONTENT_TYPE,
};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

const SAFETY: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < SAFETY, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|s| s.starts_with("expected"));
            if !expected {
                default(info);
            }
        }));
    });
}

fn config() -> MetricsConfig {
    let mut c = MetricsConfig::default();
    // The host's procfs figures are not what these tests check.
    c.system_readings = false;
    c
}

fn pool(metrics: &Arc<Metrics>, workers: usize, memory: u64) -> Arc<Pool> {
    Arc::new(
        Pool::builder()
            .workers(workers)
            .capacity(Resources::NONE.with_saturating(Dim::Memory, memory))
            .headroom(Resources::NONE)
            .admission(Policy::Defer)
            .observer(metrics.clone())
            .build()
            .expect("pool"),
    )
}

/// A parsed exposition: families (name -> type, help), and samples
/// (name, sorted labels) -> value.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    samples: BTreeMap<(String, String), f64>,
    eof: bool,
}

impl Exposition {
    /// Parses `text`, failing on a duplicate series, a sample outside
    /// any family, or a malformed line.
    fn parse(text: &str, format: Format) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            assert!(!e.eof, "a line after # EOF: {line}");
            if line == "# EOF" {
                e.eof = true;
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(e.helps.insert(name.clone()), "HELP twice for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let name = it.next().unwrap().to_string();
                let ty = it.next().unwrap().to_string();
                assert!(
                    e.helps.contains(&name),
                    "TYPE before HELP, or no HELP: {name}"
                );
                assert!(
                    e.types.insert(name.clone(), ty).is_none(),
                    "TYPE twice: {name}"
                );
            } else {
                assert!(!line.starts_with('#'), "unknown comment: {line}");
                let (series, value) = line.rsplit_once(' ').expect("name value");
                let (name, labels) = match series.split_once('{') {
                    Some((n, l)) => (
                        n.to_string(),
                        normal_labels(l.strip_suffix('}').expect("closing brace")),
                    ),
                    None => (series.to_string(), String::new()),
                };
                let family = e.family_of(&name, format);
                let ty = &e.types[&family];
                if ty == "counter" {
                    assert!(name.ends_with("_total"), "counter sample {name}");
                }
                let v: f64 = value.parse().expect("a number");
                assert!(
                    e.samples
                        .insert((name.clone(), labels.clone()), v)
                        .is_none(),
                    "duplicate series {name}{{{labels}}}"
                );
            }
        }
        if format == Format::OpenMetrics {
            assert!(e.eof, "OpenMetrics ends with # EOF");
        } else {
            assert!(!e.eof, "no # EOF in the Prometheus format");
        }
        // Every family has samples; counters' names end `_total` (in the
        // Prometheus format the family name itself).
        for (name, ty) in &e.types {
            assert!(
                e.samples
                    .keys()
                    .any(|(s, _)| e.family_of(s, format) == *name),
                "family {name} has no samples"
            );
            assert!(name.starts_with("respool_"), "{name}");
            if ty == "counter" && format == Format::Prometheus {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        e
    }

    /// The family a sample belongs to.
    fn family_of(&self, sample: &str, format: Format) -> String {
        let mut candidates = vec![sample.to_string()];
        for suffix in ["_total", "_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                candidates.push(base.to_string());
            }
        }
        for c in candidates {
            if let Some(ty) = self.types.get(&c) {
                let ok = match ty.as_str() {
                    "counter" if format == Format::OpenMetrics => sample == format!("{c}_total"),
                    "histogram" => sample != c,
                    _ => sample == c,
                };
                if ok {
                    return c;
                }
            }
        }
        panic!("sample {sample} belongs to no family");
    }

    /// The value of `name` with exactly `labels` (`k="v"` pairs, sorted).
    fn get(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|((n, l), _)| n == name && *l == labels)
            .map(|(_, v)| *v)
    }

    fn value(&self, name: &str, labels: &str) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{{{labels}}}"))
    }

    /// Label values of `label` in `name`'s series.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        let key = format!("{label}=\"");
        self.samples
            .keys()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, l)| {
                let at = l.find(&key)? + key.len();
                let rest = &l[at..];
                Some(rest[..rest.find('"').unwrap_or(rest.len())].to_string())
            })
            .collect()
    }
}

/// `k="v",...` sorted by key, `le` values as numbers (the two formats
/// write `1.0` and `1`, `0.00001` and `1e-05`). Label values here have no
/// quotes or commas.
fn normal_labels(l: &str) -> String {
    let mut pairs: Vec<(String, String)> = l
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            let v = v.trim_matches('"');
            let v = match (k, v.parse::<f64>()) {
                ("le", Ok(x)) if x.is_finite() => format!("{x}"),
                _ => v.to_string(),
            };
            (k.to_string(), v)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",")
}

fn scrape(metrics: &Arc<Metrics>, source: &SnapshotSource, format: Format) -> Exposition {
    let text = metrics.encode(source, format).expect("encodes");
    Exposition::parse(&text, format)
}

#[test]
fn counters_match_the_pools_own_counts_while_a_scraper_reads() {
    quiet_panics();
    let metrics = Metrics::new(config()).unwrap();
    let pool = pool(&metrics, 2, 8 * MIB);
    let source = SnapshotSource::of(&pool);

    // A scraper that reads the exposition while tasks run: each scrape
    // parses, and the counters never go down.
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let (metrics, source, stop, scrapes) = (
            metrics.clone(),
            source.clone(),
            stop.clone(),
            scrapes.clone(),
        );
        std::thread::spawn(move || {
            let mut last = 0.0;
            while !stop.load(Ordering::Relaxed) || scrapes.load(Ordering::Relaxed) < 3 {
                let e = scrape(&metrics, &source, Format::OpenMetrics);
                let finished = e.value("respool_tasks_total", "outcome=\"finished\"");
                assert!(finished >= last, "a counter went down");
                last = finished;
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // A holder of 6 MiB, a waiter for 4 MiB behind it, and one cancelled
    // while it waits.
    let (release, held) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let holder = pool
        .task()
        .class("holder")
        .memory("6MiB")
        .spawn(move |_| {
            started_tx.send(()).unwrap();
            let _ = held.recv_timeout(SAFETY);
        })
        .unwrap();
    started.recv_timeout(SAFETY).unwrap();
    let waiter = pool
        .task()
        .class("waiter")
        .memory("4MiB")
        .spawn(|_| 1)
        .unwrap();
    let doomed = pool.task().memory("4MiB").spawn(|_| 2).unwrap();
    wait_until("two waiters", || pool.snapshot().waiting == 2);
    // The first waits on memory, the second behind it (dim "queue").
    let e = scrape(&metrics, &source, Format::OpenMetrics);
    assert_eq!(e.value("respool_tasks_waiting", "dim=\"memory\""), 1.0);
    assert_eq!(e.value("respool_tasks_waiting", "dim=\"queue\""), 1.0);
    assert_eq!(e.value("respool_wait_queue_depth", ""), 2.0);
    assert_eq!(e.value("respool_tasks_running", ""), 1.0);
    assert!(doomed.cancel(), "cancelled before it started");
    // Refused: more memory than the pool has.
    assert!(pool.task().memory("1GiB").spawn(|_| ()).is_err());
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(waiter.join(), Ok(1));
    assert_eq!(doomed.join(), Err(TaskError::Cancelled));

    // Work of one class, measured, and a panic.
    let work: Vec<_> = (0..40)
        .map(|i| {
            pool.task()
                .class("work")
                .memory("1MiB")
                .spawn(move |_| vec![i as u8; 64 * 1024].len())
                .unwrap()
        })
        .collect();
    for h in work {
        assert_eq!(h.join(), Ok(64 * 1024));
    }
    let panicky = pool
        .task()
        .spawn(|_| -> u32 { panic!("expected: a panicking task") })
        .unwrap();
    assert!(matches!(panicky.join(), Err(TaskError::Panicked(_))));

    stop.store(true, Ordering::Relaxed);
    scraper.join().expect("the scraper saw no counter go down");
    pool.shutdown();

    let snap = pool.snapshot();
    let e = scrape(&metrics, &source, Format::OpenMetrics);
    let outcome = |o: &str| e.value("respool_tasks_total", &format!("outcome=\"{o}\""));
    let refused = snap.rejected + snap.admission.rejected_after_wait;
    assert_eq!(
        e.value("respool_tasks_submitted_total", "") as u64,
        snap.submitted,
        "{snap:?}"
    );
    assert_eq!(outcome("finished") as u64, snap.completed);
    assert_eq!(outcome("panicked") as u64, snap.panicked);
    assert_eq!(outcome("refused") as u64, refused);
    assert_eq!(outcome("refused"), 1.0);
    assert_eq!(outcome("cancelled"), 1.0);
    assert_eq!(outcome("finished"), 42.0);
    assert_eq!(outcome("panicked"), 1.0);
    assert_eq!(outcome("timed_out") as u64, snap.timed_out);
    // Every submitted task ended once.
    let ended: f64 = [
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
    assert_eq!(ended, e.value("respool_tasks_submitted_total", ""));
    // The admission families are the snapshot's.
    assert_eq!(
        e.value("respool_admission_decisions_total", "result=\"deferred\"") as u64,
        snap.admission.deferred
    );
    assert_eq!(
        e.value(
            "respool_admission_decisions_total",
            "result=\"admitted_after_wait\""
        ) as u64,
        snap.admission.admitted_after_wait
    );
    // The first waiter on memory, the second behind it.
    assert!(e.value("respool_tasks_deferred_total", "dim=\"memory\"") >= 1.0);
    assert!(e.value("respool_tasks_deferred_total", "dim=\"queue\"") >= 1.0);
    let deferrals: f64 = [
        "cpu",
        "memory",
        "iops",
        "network",
        "gpu",
        "gpu_memory",
        "queue",
    ]
    .iter()
    .map(|d| e.value("respool_tasks_deferred_total", &format!("dim=\"{d}\"")))
    .sum();
    assert_eq!(deferrals as u64, snap.admission.deferred);
    // Every started task waited in the queue once and ran once (no
    // retries here): 1 holder + 1 waiter + 40 work + 1 panic.
    assert_eq!(e.value("respool_queue_wait_seconds_count", ""), 43.0);
    assert_eq!(e.value("respool_run_seconds_count", ""), 43.0);
    assert_eq!(
        e.value("respool_run_seconds_bucket", "le=\"+Inf\""),
        e.value("respool_run_seconds_count", "")
    );
    // The waiter and the cancelled one waited on capacity; only the waiter
    // was admitted after it.
    assert!(e.value("respool_resource_wait_seconds_count", "") >= 1.0);
    assert_eq!(e.value("respool_tasks_running", ""), 0.0);
    for d in ["memory", "queue", "cpu"] {
        assert_eq!(
            e.value("respool_tasks_waiting", &format!("dim=\"{d}\"")),
            0.0
        );
    }
    // Per class.
    assert_eq!(e.value("respool_class_runs_total", "class=\"work\""), 40.0);
    assert_eq!(
        e.value("respool_class_run_seconds_count", "class=\"work\""),
        40.0
    );
    assert_eq!(e.value("respool_class_runs_total", "class=\"holder\""), 1.0);
    // Slack: 1 MiB reserved against a measured heap peak of about 64 KiB.
    let slack = e.value("respool_class_memory_slack_bytes", "class=\"work\"");
    assert!(slack > 0.0 && slack < MIB as f64, "slack {slack}");
    // Capacity against reservations, from the snapshot.
    assert_eq!(
        e.value("respool_capacity_bytes", "dim=\"memory\""),
        (8 * MIB) as f64
    );
    assert_eq!(e.value("respool_reserved_bytes", "dim=\"memory\""), 0.0);
    assert_eq!(e.value("respool_workers", ""), 2.0);
    assert!(scrapes.load(Ordering::Relaxed) >= 3);
    // The direct readers agree.
    assert_eq!(metrics.outcome("finished"), Some(42));
    assert_eq!(metrics.outcome("no such outcome"), None);
    assert_eq!(metrics.running(), 0);
    assert_eq!(metrics.waiting(), 0);
}

#[test]
fn classes_past_the_cap_share_the_overflow_label() {
    let mut c = config();
    c.max_classes = 2;
    let metrics = Metrics::new(c).unwrap();
    let pool = pool(&metrics, 2, 64 * MIB);
    let source = SnapshotSource::of(&pool);
    // Submitted in this order, from this thread: a and b take the two
    // slots; c and d go under _other.
    let mut handles = Vec::new();
    for class in ["a", "b", "c", "d"] {
        for _ in 0..3 {
            handles.push(
                pool.task()
                    .class(class)
                    .memory("1MiB")
                    .spawn(|_| ())
                    .unwrap(),
            );
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    pool.shutdown();
    for format in [Format::OpenMetrics, Format::Prometheus] {
        let e = scrape(&metrics, &source, format);
        let classes = e.label_values("respool_class_runs_total", "class");
        assert_eq!(
            classes,
            ["_other", "a", "b"].map(String::from).into_iter().collect(),
        );
        assert_eq!(e.value("respool_class_runs_total", "class=\"_other\""), 6.0);
        assert_eq!(e.value("respool_class_runs_total", "class=\"a\""), 3.0);
        // The snapshot's per class families obey the same cap.
        for family in [
            "respool_class_predictions_total",
            "respool_class_prediction_accuracy_ratio",
            "respool_class_memory_slack_bytes",
        ] {
            let v = e.label_values(family, "class");
            assert!(v.is_subset(&classes), "{family}: {v:?}");
            assert!(!v.is_empty(), "{family}");
        }
    }
}

#[test]
fn a_full_task_table_leaves_counters_exact_and_gauges_balanced() {
    let mut c = config();
    c.max_tracked_tasks = 64;
    let metrics = Metrics::new(c).unwrap();
    let pool = pool(&metrics, 1, 64 * MIB);
    let source = SnapshotSource::of(&pool);
    // One worker blocked, 200 tasks queued behind it: more in flight than
    // the table's 64 slots.
    let (release, held) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let blocker = pool
        .task()
        .spawn(move |_| {
            started_tx.send(()).unwrap();
            let _ = held.recv_timeout(SAFETY);
        })
        .unwrap();
    started.recv_timeout(SAFETY).unwrap();
    let handles: Vec<_> = (0..200)
        .map(|_| pool.task().spawn(|_| ()).unwrap())
        .collect();
    let e = scrape(&metrics, &source, Format::Prometheus);
    let untracked = e.value("respool_metrics_untracked_tasks_total", "");
    assert!(untracked >= 200.0 - 63.0, "untracked {untracked}");
    release.send(()).unwrap();
    blocker.join().unwrap();
    for h in handles {
        h.join().unwrap();
    }
    pool.shutdown();
    let e = scrape(&metrics, &source, Format::Prometheus);
    assert_eq!(
        e.value("respool_tasks_total", "outcome=\"finished\""),
        201.0
    );
    assert_eq!(e.value("respool_tasks_running", ""), 0.0);
    // Timed: the tracked ones only.
    assert_eq!(
        e.value("respool_run_seconds_count", ""),
        201.0 - e.value("respool_metrics_untracked_tasks_total", "")
    );
}

#[test]
fn both_text_formats_parse_and_promtool_would_see_help_and_type() {
    drop(Metrics::with_defaults());
    let metrics = Metrics::new(config()).unwrap();
    let pool = pool(&metrics, 2, 64 * MIB);
    pool.task()
        .class("x")
        .memory("1MiB")
        .spawn(|_| ())
        .unwrap()
        .join()
        .unwrap();
    let source = SnapshotSource::of(&pool);
    let om = metrics.encode_text(&source).unwrap();
    let e = Exposition::parse(&om, Format::OpenMetrics);
    // Counters: the family, and its sample with `_total`.
    assert_eq!(e.types["respool_tasks_submitted"], "counter");
    assert_eq!(e.value("respool_tasks_submitted_total", ""), 1.0);
    assert_eq!(e.types["respool_queue_wait_seconds"], "histogram");
    let prom = metrics.encode(&source, Format::Prometheus).unwrap();
    let p = Exposition::parse(&prom, Format::Prometheus);
    assert_eq!(p.types["respool_tasks_submitted_total"], "counter");
    // The same series in both.
    let names = |e: &Exposition| e.samples.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(names(&e), names(&p));
    // No pool: the event families only.
    let alone = Exposition::parse(
        &metrics.encode_text(&SnapshotSource::none()).unwrap(),
        Format::OpenMetrics,
    );
    assert!(alone.types.contains_key("respool_tasks"));
    assert!(!alone.types.contains_key("respool_workers"));
    // Content types and negotiation.
    assert!(CONTENT_TYPE.starts_with("application/openmetrics-text"));
    assert!(PROMETHEUS_CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    assert_eq!(
        Format::negotiate(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )),
        Format::OpenMetrics
    );
    assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
    assert_eq!(Format::negotiate(None), Format::Prometheus);
    assert_eq!(Format::OpenMetrics.content_type(), CONTENT_TYPE);
}

#[test]
fn a_registry_of_ones_own_takes_the_collector() {
    let metrics = Metrics::new(config()).unwrap();
    let pool = pool(&metrics, 1, 64 * MIB);
    pool.task().spawn(|_| ()).unwrap().join().unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let mine = prometheus_client::metrics::counter::Counter::<u64>::default();
    mine.inc();
    registry.register("my_app_requests", "Requests of my app.", mine);
    metrics.register(&mut registry, SnapshotSource::of(&pool));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("my_app_requests_total 1"), "{text}");
    assert!(text.contains("respool_tasks_submitted_total 1"), "{text}");
    assert!(text.contains("respool_workers 1"), "{text}");
}

#[test]
fn system_readings_come_from_a_monitor_and_are_left_out_when_unread() {
    use respool::sys::{ContainerLimitsReading, Resource, Snapshot, SysError, SystemMonitor};
    struct Limit;
    impl SystemMonitor for Limit {
        fn name(&self) -> &'static str {
            "test"
        }
        fn read(&mut self, r: Resource, at: Instant, s: &mut Snapshot) -> Result<(), SysError> {
            if r != Resource::ContainerLimits {
                return Err(SysError::Unsupported {
                    what: "this reading",
                    why: "a test",
                });
            }
            s.container_limits = Some(ContainerLimitsReading {
                at,
                cpu_millicores: None,
                memory_bytes: Some(512 * MIB),
            });
            Ok(())
        }
    }
    let metrics = Metrics::new(config()).unwrap();
    let source = SnapshotSource::none();
    let e = scrape(&metrics, &source, Format::OpenMetrics);
    assert!(!e.types.contains_key("respool_container_memory_limit_bytes"));
    metrics.set_system_monitor(Some(Box::new(Limit)));
    let e = scrape(&metrics, &source, Format::OpenMetrics);
    assert_eq!(
        e.value("respool_container_memory_limit_bytes", ""),
        (512 * MIB) as f64
    );
    // No pressure reading: no pressure family, rather than a made-up zero.
    assert!(!e.types.contains_key("respool_memory_pressure_ratio"));
}

#[test]
fn bad_configurations_are_typed_errors() {
    assert!(MetricsConfig::default().validate().is_ok());
    type Breaks = fn(&mut MetricsConfig);
    let cases: [(&str, Breaks); 5] = [
        ("max_classes", |c| c.max_classes = 0),
        ("max_tracked_tasks", |c| c.max_tracked_tasks = 1),
        ("wait_buckets", |c| c.wait_buckets = vec![1.0, 0.5]),
        ("run_buckets", |c| c.run_buckets = vec![f64::NAN]),
        ("class_run_buckets", |c| c.class_run_buckets = Vec::new()),
    ];
    for (field, breaks) in cases {
        let mut c = MetricsConfig::default();
        breaks(&mut c);
        match Metrics::new(c) {
            Err(MetricsError::Config { field: f, why }) => {
                assert_eq!(f, field);
                assert!(!why.is_empty());
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let e = MetricsError::Config {
        field: "max_classes",
        why: "0 is not in 1..=4096".into(),
    };
    assert!(e.to_string().contains("max_classes"));
}

/// A profile store that reports a state, as a shared store (Redis) does.
#[derive(Debug)]
struct Reporting(respool::store::StoreStatus);

impl respool::store::ProfileStore for Reporting {
    fn load(&self) -> Result<Option<respool::store::Profiles>, respool::store::StoreError> {
        Ok(None)
    }
    fn save(&self, _: &respool::store::Profiles) -> Result<(), respool::store::StoreError> {
        Ok(())
    }
    fn status(&self) -> Option<respool::store::StoreStatus> {
        Some(self.0.clone())
    }
}

#[test]
fn a_shared_profile_stores_state_is_exported() {
    let mut st = respool::store::StoreStatus::default();
    st.store = "redis redis://127.0.0.1:6379/ namespace respool".into();
    st.reachable = false;
    st.pending = 17;
    st.written = 40;
    st.failures = 3;
    st.problems = vec![("old".into(), "corrupt".into())];
    let metrics = Metrics::new(config()).unwrap();
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .memory("64MiB")
            .profile_store(Reporting(st))
            .observer(metrics.clone())
            .build()
            .unwrap(),
    );
    let text = metrics.encode_text(&SnapshotSource::of(&pool)).unwrap();
    for line in [
        "respool_profile_store_up 0",
        "respool_profile_store_pending_samples 17",
        "respool_profile_store_problem_classes 1",
        "respool_profile_store_written_samples_total 40",
        "respool_profile_store_failures_total 3",
        "respool_profile_store_dropped_samples_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    // Without a store that reports, the families are left out.
    let plain = pool_without_store(&metrics);
    let text = metrics.encode_text(&SnapshotSource::of(&plain)).unwrap();
    assert!(!text.contains("respool_profile_store"), "{text}");
}

fn pool_without_store(metrics: &Arc<Metrics>) -> Arc<Pool> {
    Arc::new(
        Pool::builder()
            .workers(1)
            .memory("64MiB")
            .observer(metrics.clone())
            .build()
            .unwrap(),
    )
}

#[test]
fn class_costs_are_exported_when_the_pool_prices_them() {
    let metrics = Metrics::new(config()).unwrap();
    let pricing = respool::cost::Pricing {
        label: "test".into(),
        rates: respool::cost::Rates {
            usd_per_vcpu_hour: 3600.0,
            usd_per_gib_hour: 3600.0,
            usd_per_gpu_hour: 0.0,
        },
    };
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .memory("64MiB")
            .pricing(pricing)
            .observer(metrics.clone())
            .build()
            .unwrap(),
    );
    pool.task()
        .class("priced")
        .memory("8MiB")
        .spawn(|ctx| ctx.report_usage(Dim::Memory, MIB))
        .unwrap()
        .join()
        .unwrap();
    pool.shutdown();
    let cost = pool.snapshot().classes[0].cost.expect("priced");
    let text = metrics.encode_text(&SnapshotSource::of(&pool)).unwrap();
    let value = |family: &str| -> f64 {
        let prefix = format!("{family}{{class=\"priced\"}} ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"));
        line[prefix.len()..].parse().unwrap()
    };
    assert!((value("respool_class_cost_usd_total") - cost.usd()).abs() < 1e-9);
    assert!((value("respool_class_slack_cost_usd_total") - cost.slack_usd()).abs() < 1e-9);
    assert!(cost.slack_usd() > 0.0, "8 MiB held, 1 MiB used");
}

#[test]
fn the_head_waiters_shortfall_is_exported_per_dimension() {
    let metrics = Metrics::new(config()).unwrap();
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .memory("1GiB")
            .headroom(Resources::NONE)
            .observer(metrics.clone())
            .build()
            .unwrap(),
    );
    let (release, held) = mpsc::channel::<()>();
    let big = pool
        .task()
        .memory("800MiB")
        .spawn(move |_| held.recv().unwrap())
        .unwrap();
    wait_until("the first task to hold its 800 MiB", || {
        pool.snapshot().reserved.get(Dim::Memory) == Some(800 * MIB)
    });
    let next = pool.task().memory("600MiB").spawn(|_| ()).unwrap();
    wait_until("the second task to wait", || pool.snapshot().waiting == 1);
    // 600 MiB wanted, 1024 - 800 = 224 MiB free: 376 MiB short.
    let snap = pool.snapshot();
    assert_eq!(snap.head_shortfall.get(Dim::Memory), Some(376 * MIB));
    let text = metrics.encode_text(&SnapshotSource::of(&pool)).unwrap();
    let line = format!(
        "respool_wait_head_shortfall_bytes{{dim=\"memory\"}} {}",
        376 * MIB
    );
    assert!(
        text.lines().any(|l| l == line || l == format!("{line}.0")),
        "{line} missing:\n{text}"
    );
    release.send(()).unwrap();
    big.join().unwrap();
    next.join().unwrap();
    // Nobody waits: the family is left out.
    let text = metrics.encode_text(&SnapshotSource::of(&pool)).unwrap();
    assert!(!text.contains("respool_wait_head_shortfall"), "{text}");
}
