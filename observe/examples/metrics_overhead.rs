//! Per-task overhead of the metrics observer on 10 us tasks, side by side in
//! one run: no observer, a no-op observer (the seam's own cost), `Metrics`,
//! and `Metrics` with `SlowTasks`. Rounds alternate to share the machine's
//! drift. A measurement to run by hand, in release mode:
//!
//! ```text
//! cargo run --release -p respool-observe --example metrics_overhead [-- tasks rounds]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use respool::Pool;
use respool::observe::{Event, Observer};
use respool_observe::Fanout;
use respool_observe::metrics::{Metrics, MetricsConfig};
use respool_observe::slow::SlowTasks;

struct Nothing;
impl Observer for Nothing {
    fn on_event(&self, _: &Event<'_>) {}
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn run(observer: Option<Arc<dyn Observer>>, tasks: usize, class: bool) -> Duration {
    let mut b = Pool::builder().workers(2);
    if let Some(o) = observer {
        b = b.observer(o);
    }
    let pool = b.build().expect("pool");
    let start = Instant::now();
    for _ in 0..tasks {
        let mut t = pool.task();
        if class {
            t = t.class("work");
        }
        t.execute(|_| spin(Duration::from_micros(10)))
            .expect("submit");
    }
    pool.shutdown();
    start.elapsed()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let tasks = args.first().copied().unwrap_or(100_000);
    let rounds = args.get(1).copied().unwrap_or(5);
    let mut config = MetricsConfig::default();
    config.system_readings = false;
    let names = ["none", "no-op observer", "metrics", "metrics+slow"];
    let mut best = [Duration::MAX; 4];
    for _ in 0..rounds {
        for (i, b) in best.iter_mut().enumerate() {
            let observer: Option<Arc<dyn Observer>> = match i {
                0 => None,
                1 => Some(Arc::new(Nothing)),
                2 => Some(Metrics::new(config.clone()).expect("config")),
                _ => Some(Arc::new(
                    Fanout::new()
                        .with(Metrics::new(config.clone()).expect("config"))
                        .with(SlowTasks::new(Default::default()).expect("slow")),
                )),
            };
            *b = (*b).min(run(observer, tasks, true));
        }
    }
    for (n, b) in names.iter().zip(best) {
        #[allow(clippy::cast_precision_loss)]
        let per = b.as_nanos() as f64 / tasks as f64;
        let base = best[0].as_nanos() as f64 / tasks as f64;
        println!(
            "{n:>16}: {per:8.0} ns/task ({:+.1}% vs none)",
            (per / base - 1.0) * 100.0
        );
    }
}
