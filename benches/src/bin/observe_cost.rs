//! What observing a pool costs, side by side in one run (issue 17).
//!
//! Each round builds a fresh pool per configuration (in rotating order, so
//! no configuration always goes first), submits `tasks` tasks of about
//! `work` each, waits for all of them, shuts the pool down, and times the
//! whole of it, as a user meets it. The configurations:
//!
//! - `none`: no observer (the baseline every ratio divides by);
//! - `seam`: an observer that counts events (the seam's own cost);
//! - `metrics`: `Observability::new()` (the Prometheus families);
//! - `metrics+slow`: with slow-task detection;
//! - `trace`: a `TraceRecorder` (Chrome trace JSON ring, default size);
//! - `dashboard`: metrics, slow tasks, the live view and the dashboard's
//!   server with its event feed open and read (1 s refresh);
//! - `otel-metrics`: `OtelMetrics` on an SDK meter provider (periodic
//!   reader, in-memory exporter);
//! - `otel-spans`: `OtelSpans`, one span per task, batch-exported to an
//!   in-memory exporter.
//!
//! Two workloads: plain tasks (`Pool::execute`) and classified ones
//! (`task().class(..).execute`, which the pool measures and learns).
//! Reported: the median time per task, and the median over rounds of each
//! configuration's time over `none`'s in the same round (with its range).
//!
//! `cargo run --release -p respool-benches --bin observe_cost -- [tasks] [rounds] [work_us] [workers] [configs]`
//! (defaults: 50000 tasks, 7 rounds, 10 us, 2 workers, every configuration;
//! `configs` is a comma-separated subset). Prints a Markdown table.
#![allow(missing_docs)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use respool::Pool;
use respool::observe::{Event, Observer};
use respool_benches::peers::{Latch, spin_for};
use respool_observe::otel::{DEFAULT_MAX_OPEN, OtelMetrics, OtelSpans};
use respool_observe::slow::SlowConfig;
use respool_observe::trace::{TraceConfig, TraceRecorder};
use respool_observe::{Observability, SnapshotSource};

const CONFIGS: [&str; 8] = [
    "none",
    "seam",
    "metrics",
    "metrics+slow",
    "trace",
    "dashboard",
    "otel-metrics",
    "otel-spans",
];

#[derive(Default)]
struct Count(std::sync::atomic::AtomicU64);

impl Observer for Count {
    fn on_event(&self, _: &Event<'_>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a configuration keeps alive besides the pool (dropped after it).
#[derive(Default)]
struct Keep {
    obs: Option<Observability>,
    dashboard: Option<respool_observe::dashboard::Dashboard>,
    reader: Option<std::thread::JoinHandle<()>>,
    meters: Option<SdkMeterProvider>,
    tracers: Option<SdkTracerProvider>,
}

fn build(config: &str, workers: usize) -> (Arc<Pool>, Keep) {
    let mut keep = Keep::default();
    let b = Pool::builder().workers(workers);
    let source = SnapshotSource::new();
    let b = match config {
        "none" => b,
        "seam" => b.observer(Count::default()),
        "metrics" | "metrics+slow" | "dashboard" => {
            let mut obs = Observability::new();
            if config != "metrics" {
                obs = obs
                    .with_slow(SlowConfig::default())
                    .expect("slow-task detector");
            }
            if config == "dashboard" {
                obs = obs.with_live();
            }
            let b = b.observer(obs.observer());
            keep.obs = Some(obs);
            b
        }
        "trace" => b.observer(TraceRecorder::new(TraceConfig::new())),
        "otel-metrics" => {
            let reader = PeriodicReader::builder(InMemoryMetricExporter::default())
                .with_interval(Duration::from_secs(1))
                .build();
            let provider = SdkMeterProvider::builder().with_reader(reader).build();
            let m = OtelMetrics::new(&provider.meter("respool"), source.clone());
            keep.meters = Some(provider);
            b.observer(m)
        }
        "otel-spans" => {
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(InMemorySpanExporter::default())
                .build();
            let s = OtelSpans::new(provider.tracer("respool"), DEFAULT_MAX_OPEN);
            keep.tracers = Some(provider);
            b.observer(s)
        }
        other => unreachable!("{other}"),
    };
    let pool = Arc::new(b.build().expect("pool"));
    source.attach(&pool);
    if let Some(obs) = &keep.obs {
        obs.attach(&pool);
        if config == "dashboard" {
            let d = obs
                .dashboard()
                .print_url(false)
                .refresh(Duration::from_secs(1))
                .start()
                .expect("dashboard");
            // The page's event feed, open and read for the whole run.
            let mut s = TcpStream::connect(d.local_addr()).expect("connect");
            write!(
                s,
                "GET /events?token={} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
                d.token(),
                d.local_addr().port()
            )
            .expect("request");
            keep.reader = Some(std::thread::spawn(move || {
                let mut sink = [0u8; 16 * 1024];
                while s.read(&mut sink).is_ok_and(|n| n > 0) {}
            }));
            keep.dashboard = Some(d);
        }
    }
    (pool, keep)
}

/// One run: build, submit, wait, shut down; seconds.
fn run(config: &str, classified: bool, tasks: usize, work: Duration, workers: usize) -> f64 {
    let t0 = Instant::now();
    let (pool, keep) = build(config, workers);
    let latch = Latch::new(tasks);
    for _ in 0..tasks {
        let l = latch.clone();
        let job = move || {
            spin_for(work);
            l.done();
        };
        if classified {
            pool.task()
                .class("spin")
                .execute(move |_| job())
                .expect("accepted");
        } else {
            pool.execute(job).expect("accepted");
        }
    }
    latch.wait();
    pool.shutdown();
    let elapsed = t0.elapsed().as_secs_f64();
    drop(pool);
    if let Some(d) = keep.dashboard {
        d.shutdown();
    }
    if let Some(r) = keep.reader {
        let _ = r.join();
    }
    if let Some(m) = keep.meters {
        let _ = m.shutdown();
    }
    if let Some(t) = keep.tracers {
        let _ = t.shutdown();
    }
    drop(keep.obs);
    elapsed
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let arg = |i: usize, d: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let tasks = usize::try_from(arg(1, 50_000)).unwrap_or(50_000).max(1);
    let rounds = usize::try_from(arg(2, 7)).unwrap_or(7).max(1);
    let work = Duration::from_micros(arg(3, 10));
    let workers = usize::try_from(arg(4, 2)).unwrap_or(2).max(1);
    // Optional: a comma-separated subset of the configurations (`none`
    // always runs: the ratios divide by it).
    let only: Option<Vec<String>> = std::env::args()
        .nth(5)
        .map(|s| s.split(',').map(str::to_owned).collect());
    let configs: Vec<&str> = CONFIGS
        .iter()
        .copied()
        .filter(|c| *c == "none" || only.as_ref().is_none_or(|o| o.iter().any(|x| x == c)))
        .collect();
    println!(
        "observe_cost: {tasks} tasks of {work:?}, {workers} workers, {rounds} rounds \
         (fresh pool per run, rotating order)\n"
    );
    println!(
        "| workload | configuration | median us/task | same-round ratio to none, median (range) |"
    );
    println!("|---|---|---:|---|");
    for classified in [false, true] {
        let label = if classified { "classified" } else { "plain" };
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        // A warm-up run of each, not counted.
        for c in &configs {
            run(c, classified, tasks / 10, work, workers);
        }
        for r in 0..rounds {
            for k in 0..configs.len() {
                let i = (k + r) % configs.len();
                times[i].push(run(configs[i], classified, tasks, work, workers));
            }
        }
        for (i, c) in configs.iter().enumerate() {
            let mut ratios: Vec<f64> = times[i]
                .iter()
                .zip(&times[0])
                .map(|(t, base)| t / base)
                .collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let per = median(&mut times[i].clone()) * 1e6 / tasks as f64;
            println!(
                "| {label} | {c} | {per:.2} | {:.3} ({lo:.3}-{hi:.3}) |",
                median(&mut ratios)
            );
        }
    }
}
