//! The pool's metrics and one span per task through OpenTelemetry.
//!
//! ```text
//! cargo run -p respool-observe --features otel --example otel                         # to stdout
//! cargo run -p respool-observe --features otel --example otel -- http://localhost:4318 # OTLP/HTTP
//! ```
//!
//! Runs a mixed workload (tasks of two classes that declare memory, some of
//! which wait for capacity, one refused, one that panics), then exports:
//! to stdout with the SDK's stdout exporters, or over OTLP/HTTP (protobuf)
//! to the collector at the endpoint given.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use respool::{Dim, Policy, Pool, Resources};
use respool_observe::otel::{
    DEFAULT_MAX_OPEN, OtelMetrics, OtelSpans, OtlpConfig, OtlpPipeline, otlp_pipeline,
};
use respool_observe::{Fanout, SnapshotSource};

fn stdout_pipeline() -> OtlpPipeline {
    OtlpPipeline {
        meter_provider: SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(opentelemetry_stdout::MetricExporter::default()).build(),
            )
            .build(),
        tracer_provider: SdkTracerProvider::builder()
            .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
            .build(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipeline = match std::env::args().nth(1) {
        Some(endpoint) => {
            eprintln!("exporting over OTLP/HTTP to {endpoint}");
            otlp_pipeline(&OtlpConfig::new().endpoint(endpoint))?
        }
        None => stdout_pipeline(),
    };

    // The observers exist before the pool; the pool is attached once built.
    let source = SnapshotSource::new();
    let metrics = OtelMetrics::new(&pipeline.meter_provider.meter("respool"), source.clone());
    let spans = OtelSpans::new(pipeline.tracer_provider.tracer("respool"), DEFAULT_MAX_OPEN);
    let pool = Arc::new(
        Pool::builder()
            .workers(4)
            .capacity(Resources::NONE.with_saturating(Dim::Memory, 64 << 20))
            .headroom(Resources::NONE)
            .admission(Policy::Defer)
            .observer(Fanout::new().with(metrics).with(spans))
            .build()?,
    );
    source.attach(&pool);

    let mut handles = Vec::new();
    for i in 0..40u64 {
        let (class, memory) = if i % 3 == 0 {
            ("resize", "24MiB")
        } else {
            ("thumb", "4MiB")
        };
        handles.push(pool.task().class(class).memory(memory).spawn(move |_| {
            std::thread::sleep(Duration::from_millis(2 + i % 5));
            i
        })?);
    }
    if let Err(e) = pool.task().memory("1GiB").spawn(|_| ()) {
        eprintln!("refused, as expected: {e}");
    }
    let boom = pool
        .task()
        .class("boom")
        .spawn(|_| -> u32 { panic!("an example panic") })?;
    for h in handles {
        let _ = h.join();
    }
    let _ = boom.join();
    pool.shutdown();
    println!("{}", pool.snapshot());

    // Exports what is left, then stops the exporters' threads.
    if let Err(e) = pipeline.shutdown() {
        eprintln!("export failed: {e}");
        std::process::exit(1);
    }
    Ok(())
}
