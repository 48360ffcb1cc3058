//! A typical Go `workerpool` program, ported to `respool::batch`.
//!
//! The Go original:
//!
//! ```go
//! cfg := workerpool.DefaultConfig()
//! cfg.NumWorkers = 4
//! cfg.Strategy = workerpool.PriorityBased
//! cfg.MaxRetries = 2
//! wp := workerpool.NewWithConfig[Order, Receipt](cfg).
//!     WithProcessor(func(ctx context.Context, job workerpool.Job[Order]) (Receipt, error) {
//!         ...
//!     })
//! wp.AddJobs(jobs)
//! results, err := wp.Run()
//! for _, r := range results { fmt.Println(r.JobID, r.Data, r.Error, r.Worker, r.Duration) }
//! m := wp.GetMetrics()
//! ```
//!
//! Run with `cargo run -p respool --example go_migration`.

use std::time::Duration;

use respool::Backoff;
use respool::Pool;
use respool::batch::{Batch, BatchConfig, Job, JobContext, StrategyKind};

/// The job's input.
struct Order {
    items: u32,
    unit_cents: u64,
}

/// The processor's output.
#[derive(Debug)]
struct Receipt {
    total_cents: u64,
}

/// The processor: a plain function works as well as a closure.
fn price(ctx: &JobContext, job: &Job<Order>) -> Result<Receipt, String> {
    if job.data.items == 0 {
        return Err(format!("{}: empty order", job.id));
    }
    // Some "work" that honours cancellation (Go: select on ctx.Done()).
    if !ctx.sleep(Duration::from_millis(u64::from(job.data.items))) {
        return Err(format!("{}: cancelled", job.id));
    }
    Ok(Receipt {
        total_cents: u64::from(job.data.items) * job.data.unit_cents,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(4).build()?;

    let config = BatchConfig {
        workers: Some(4),
        strategy: StrategyKind::PriorityBased,
        max_retries: 2,
        backoff: Backoff::Linear(Duration::from_millis(10)),
        ..BatchConfig::default()
    };
    let batch = Batch::with_config(&pool, config)?.with_processor(price);

    let jobs = (0..12u32).map(|i| {
        Job::new(
            format!("order-{i}"),
            Order {
                items: if i == 7 { 0 } else { i % 5 + 1 },
                unit_cents: 250,
            },
        )
        .with_priority(if i % 4 == 0 { 10 } else { 1 })
    });
    batch.add_jobs(jobs);

    let report = batch.run()?;
    for r in &report.results {
        match (&r.data, &r.error) {
            (Some(receipt), _) => println!(
                "{:<9} {:>6} cents  worker {:?}  attempts {}  {:?}",
                r.job_id, receipt.total_cents, r.worker, r.attempts, r.duration
            ),
            (None, Some(e)) => println!(
                "{:<9} failed: {e}  worker {:?}  attempts {}",
                r.job_id, r.worker, r.attempts
            ),
            (None, None) => unreachable!("a result has a value or an error"),
        }
    }

    let m = &report.metrics;
    println!();
    println!("strategy      {}", m.strategy);
    println!(
        "jobs          {} total, {} processed, {} failed, {} cancelled",
        m.total_jobs, m.processed, m.failed, m.cancelled
    );
    println!("attempts      {} ({} retries)", m.attempts, m.retries);
    println!("wall time     {:?}", m.wall_time);
    println!(
        "job duration  mean {:?}  p50 {:?}  p95 {:?}  max {:?}",
        m.mean_job_duration, m.p50_job_duration, m.p95_job_duration, m.max_job_duration
    );
    println!("queue depth   max {:?}", m.queue_depth_max);
    let utilisation: Vec<String> = m
        .lane_utilisation
        .iter()
        .map(|u| format!("{:.0}%", u * 100.0))
        .collect();
    println!("utilisation   {}", utilisation.join(" "));
    Ok(())
}
