//! Runs a small mixed workload on a real pool with the metrics observer and
//! the slow-task detector, and prints the exposition: OpenMetrics text by
//! default, the Prometheus text format 0.0.4 with `--prometheus`. Used by
//! `ci/observe-promtool.sh` (`promtool check metrics`).
//!
//! ```text
//! cargo run -p respool-observe --example metrics_text [-- --prometheus] > metrics.txt
//! ```

use std::sync::{Arc, mpsc};
use std::time::Duration;

use respool::{Dim, Policy, Pool, Resources};
use respool_observe::metrics::{Format, Metrics, MetricsConfig};
use respool_observe::slow::{SlowConfig, SlowTasks};
use respool_observe::{Fanout, SnapshotSource};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let format = if std::env::args().any(|a| a == "--prometheus") {
        Format::Prometheus
    } else {
        Format::OpenMetrics
    };
    let mut config = MetricsConfig::default();
    config.max_classes = 3;
    let metrics = Metrics::new(config)?;
    let mut slow_config = SlowConfig::default();
    slow_config.queue_threshold = Duration::from_millis(1);
    slow_config.check_interval = Duration::from_millis(1);
    let slow = SlowTasks::new(slow_config)?;
    metrics.attach_slow(&slow);
    let observer = Fanout::new().with(metrics.clone()).with(slow.clone());
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .capacity(Resources::NONE.with_saturating(Dim::Memory, 64 << 20))
            .headroom(Resources::NONE)
            .admission(Policy::Defer)
            .observer(Arc::new(observer))
            .build()?,
    );
    // A holder of most of the memory, and a waiter behind it.
    let (release, held) = mpsc::channel::<()>();
    let holder = pool
        .task()
        .class("holder")
        .memory("48MiB")
        .spawn(move |_| {
            let _ = held.recv_timeout(Duration::from_secs(60));
        })?;
    let waiter = pool.task().class("waiter").memory("32MiB").spawn(|_| ())?;
    while pool.snapshot().waiting == 0 {
        std::thread::yield_now();
    }
    // Five classes past a cap of three: two go under `_other`.
    let mut handles = Vec::new();
    for i in 0..50u32 {
        let class = format!("class{}", i % 5);
        handles.push(pool.task().class(class).memory("1MiB").spawn(move |_| {
            let v: Vec<u8> = vec![1; 4096];
            v.len() + i as usize
        })?);
    }
    // Refused: more than the pool has.
    let _ = pool.task().memory("1GiB").spawn(|_| ());
    // A panic (its message silenced).
    std::panic::set_hook(Box::new(|_| {}));
    let panics = pool.task().spawn(|_| {
        if true {
            panic!("metrics_text: an expected panic");
        }
    })?;
    let _ = panics.join();
    let _ = release.send(());
    let _ = holder.join();
    let _ = waiter.join();
    for h in handles {
        let _ = h.join();
    }
    let source = SnapshotSource::of(&pool);
    print!("{}", metrics.encode(&source, format)?);
    pool.shutdown();
    Ok(())
}
