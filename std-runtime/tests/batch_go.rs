//! The batch API as a Go `workerpool` user writes it: each test is named
//! after the Go idiom it replaces (issue 20, point 1), and checks that the
//! straightforward Rust port compiles and behaves as documented.
//!
//! Synchronisation uses channels and counters, never sleeps; the timeouts
//! are safety nets that turn a hang into a failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use respool::batch::{
    Assignment, Batch, BatchConfig, BatchError, CancelReason, Job, JobContext, JobError, JobMeta,
    Plan, Progress, Strategy, StrategyKind,
};
use respool::{Backoff, Dim, Pool, Resources};

mod common;
use common::{SAFETY, within};

fn pool(workers: usize) -> Pool {
    Pool::builder().workers(workers).build().unwrap()
}

/// Waits until `cond` holds of the batch's progress (a counter the
/// collector raises), failing after `SAFETY`.
fn wait_progress(
    read: impl Fn() -> Option<Progress>,
    cond: impl Fn(&Progress) -> bool,
) -> Progress {
    let end = Instant::now() + SAFETY;
    loop {
        if let Some(p) = read() {
            if cond(&p) {
                return p;
            }
        }
        assert!(Instant::now() < end, "progress never reached the condition");
        std::thread::yield_now();
    }
}

/// Go: the processor is a closure over a map of the enclosing function
/// (`prices := map[string]int{...}; wp.WithProcessor(func(...) { prices[job.Data] })`).
/// In Rust the processor borrows the local table: no `Arc`, no `'static`.
/// Borrowed job data (`Job<&str>`) work too, on lanes and through the
/// pool's admission (jobs with a class).
#[test]
fn closure_over_a_local_map() {
    let pool = Pool::builder().workers(2).memory("1GiB").build().unwrap();
    let prices: HashMap<&str, u64> = [("apple", 3), ("pear", 5), ("plum", 7)].into();
    let names = [
        String::from("apple"),
        String::from("pear"),
        String::from("plum"),
    ];
    let lookups = AtomicUsize::new(0);
    let batch = Batch::new(&pool).with_processor(|_ctx, job: &Job<&str>| {
        lookups.fetch_add(1, Ordering::Relaxed);
        prices
            .get(job.data)
            .copied()
            .ok_or_else(|| format!("no price for {}", job.data))
    });
    batch.add_jobs(names.iter().map(|n| Job::new(n.clone(), n.as_str())));
    batch.add_job(Job::new("kiwi", "kiwi"));
    let mut report = batch.run().unwrap();
    report.sort_by_index();
    assert_eq!(report.values().copied().collect::<Vec<_>>(), [3, 5, 7]);
    assert_eq!(
        report.results[3].processor_error().unwrap().to_string(),
        "no price for kiwi"
    );
    // Through the pool's admission: each attempt is a pool task.
    let mem = Resources::new().with(Dim::Memory, 1 << 20).unwrap();
    batch.add_jobs(names.iter().map(|n| {
        Job::new(n.clone(), n.as_str())
            .with_requirements(mem)
            .with_class("price")
    }));
    let report = batch.run().unwrap();
    assert_eq!(report.metrics.processed, 3);
    drop(batch);
    // Three fruits, "kiwi" on 4 attempts (3 retries, as in Go), three fruits.
    assert_eq!(lookups.into_inner(), 3 + 4 + 3);
}

/// Go: `Job[chan int]`, each job reading its own channel. A per-job
/// `mpsc::Receiver` is `Send` but not `Sync`: job data need only be `Send`.
#[test]
fn job_carries_its_own_channel() {
    within(|| {
        let pool = pool(2);
        let batch =
            Batch::new(&pool).with_infallible_processor(|_ctx, job: &Job<mpsc::Receiver<u64>>| {
                job.data.iter().sum::<u64>()
            });
        let mut jobs = Vec::new();
        for i in 0..8u64 {
            let (tx, rx) = mpsc::channel();
            for k in 0..=i {
                tx.send(k).unwrap();
            }
            jobs.push(Job::new(format!("sum-{i}"), rx)); // tx dropped: the sum ends
        }
        batch.add_jobs(jobs);
        let mut report = batch.run().unwrap();
        report.sort_by_index();
        let sums: Vec<u64> = report.values().copied().collect();
        assert_eq!(sums, (0..8u64).map(|i| i * (i + 1) / 2).collect::<Vec<_>>());

        // The same through the pool's admission (the attempt runs in a pool
        // task that borrows the receiver from its lane).
        let resource_aware = Batch::with_config(
            &pool,
            BatchConfig {
                class: Some("drain".into()),
                ..BatchConfig::default()
            },
        )
        .unwrap()
        .with_infallible_processor(|_ctx, job: &Job<mpsc::Receiver<u64>>| job.data.recv().ok());
        let (tx, rx) = mpsc::channel();
        tx.send(42).unwrap();
        resource_aware.add_job(Job::new("one", rx));
        let report = resource_aware.run().unwrap();
        assert_eq!(report.results[0].data, Some(Some(42)));
    });
}

fn double(_ctx: &JobContext, job: &Job<u64>) -> u64 {
    job.data * 2
}

/// Go: a processor that never fails returns `v, nil`. In Rust a closure
/// returning the plain value compiles, with no `Ok::<_, E>` annotation.
#[test]
fn processor_returns_nil_error() {
    within(|| {
        let pool = pool(2);
        let closure = Batch::new(&pool).with_infallible_processor(|_, job: &Job<u64>| job.data + 1);
        let function = Batch::new(&pool).with_infallible_processor(double);
        for b in [&closure, &function] {
            b.add_jobs((0..5).map(|i| Job::new(format!("job-{i}"), i)));
        }
        let mut a = closure.run().unwrap();
        let mut b = function.run().unwrap();
        a.sort_by_index();
        b.sort_by_index();
        assert_eq!(a.values().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(b.values().copied().collect::<Vec<_>>(), [0, 2, 4, 6, 8]);
        assert_eq!(a.metrics.failed + b.metrics.failed, 0);
        // A panic is still a failed job.
        let panics = Batch::with_config(
            &pool,
            BatchConfig {
                max_retries: 0,
                ..BatchConfig::default()
            },
        )
        .unwrap()
        .with_infallible_processor(|_, _job: &Job<u64>| -> u64 { panic!("boom") });
        panics.add_job(Job::new("p", 0));
        let r = panics.run().unwrap();
        assert_eq!(r.results[0].error, Some(JobError::Panicked("boom".into())));
    });
}

/// A Go custom strategy that returns one job slice per worker it wants:
/// here two lanes, whatever `NumWorkers` says, even jobs on lane 0 and odd
/// jobs on lane 1.
struct EvenOdd;

impl Strategy for EvenOdd {
    fn name(&self) -> &str {
        "even-odd"
    }
    fn plan(&self, jobs: &[JobMeta<'_>], _lanes: usize) -> Plan {
        let (even, odd): (Vec<usize>, Vec<usize>) =
            jobs.iter().map(|j| j.index).partition(|i| i % 2 == 0);
        Plan::new(Assignment::new(vec![even, odd])).with_lanes(2)
    }
}

/// Asks for no lane at all: a configuration error of the run.
struct NoLanes;

impl Strategy for NoLanes {
    fn name(&self) -> &str {
        "none"
    }
    fn plan(&self, jobs: &[JobMeta<'_>], lanes: usize) -> Plan {
        Plan::new(Assignment::new(vec![
            jobs.iter().map(|j| j.index).collect();
            lanes
        ]))
        .with_lanes(0)
    }
}

/// Go: `type Strategy interface` implemented by the user, choosing the
/// number of workers (its `[][]Job` result has one slice per worker).
#[test]
fn custom_strategy_returns_one_slice_per_worker() {
    within(|| {
        let pool = pool(4);
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(5),
                strategy: StrategyKind::custom(EvenOdd),
                ..BatchConfig::default()
            },
        )
        .unwrap()
        .with_infallible_processor(|ctx, job: &Job<usize>| (job.data, ctx.worker()));
        assert_eq!(batch.workers(), 5, "the configured lanes");
        batch.add_jobs((0..10).map(|i| Job::new(format!("job-{i}"), i)));
        let report = batch.run().unwrap();
        assert_eq!(report.metrics.lanes, 2, "the strategy's lanes");
        assert_eq!(report.metrics.lane_busy.len(), 2);
        assert_eq!(report.metrics.strategy, "even-odd");
        for r in &report.results {
            let (data, lane) = r.data.unwrap();
            assert_eq!(lane, data % 2, "job {data}");
            assert_eq!(r.worker, Some(data % 2));
        }

        let zero = Batch::with_config(
            &pool,
            BatchConfig {
                strategy: StrategyKind::custom(NoLanes),
                ..BatchConfig::default()
            },
        )
        .unwrap()
        .with_infallible_processor(|_, job: &Job<usize>| job.data);
        zero.add_job(Job::new("x", 1));
        assert!(matches!(
            zero.run(),
            Err(BatchError::InvalidConfig { field, .. }) if field.contains("lanes")
        ));
    });
}

/// Go: `go func() { for { m := wp.GetMetrics(); ... } }()` while `Run()`
/// goes on. `progress()` is readable from another thread during the run;
/// `metrics()` stays the last finished run's.
#[test]
fn get_metrics_while_running() {
    within(|| {
        let pool = pool(2);
        let (started_tx, started) = mpsc::channel();
        let (gate_tx, gate) = mpsc::channel::<()>();
        let gate = std::sync::Mutex::new(gate);
        let config = BatchConfig {
            workers: Some(1), // one lane: jobs run in order
            ..BatchConfig::default()
        };
        let batch = Batch::with_config(&pool, config).unwrap().with_processor(
            move |_, job: &Job<usize>| {
                if job.data == 2 {
                    started_tx.send(()).unwrap();
                    let _ = gate.lock().unwrap().recv();
                }
                if job.data == 1 {
                    return Err("odd one out");
                }
                Ok(job.data)
            },
        );
        batch.add_jobs((0..4).map(|i| Job::new(format!("job-{i}"), i)));
        assert_eq!(batch.progress(), None, "no run in progress");
        let handle = batch.stop_handle();
        std::thread::scope(|s| {
            let run = s.spawn(|| batch.run().unwrap());
            started.recv().unwrap();
            // Jobs 0 and 1 are collected, job 2 runs, job 3 waits.
            let p = wait_progress(|| batch.progress(), |p| p.finished() == 2);
            assert_eq!(
                (
                    p.total_jobs,
                    p.lanes,
                    p.started,
                    p.processed,
                    p.failed,
                    p.cancelled
                ),
                (4, 1, 3, 1, 1, 0)
            );
            assert_eq!(p.running(), 1);
            assert_eq!(p.stop_reason, None);
            assert_eq!(
                batch.metrics().map(|m| m.total_jobs),
                None,
                "not finished yet"
            );
            // From a thread that does not borrow the batch.
            let from_handle = std::thread::spawn(move || handle.progress())
                .join()
                .unwrap()
                .unwrap();
            assert_eq!(from_handle.total_jobs, 4);
            gate_tx.send(()).unwrap();
            let report = run.join().unwrap();
            assert_eq!(report.metrics.processed, 3);
        });
        assert_eq!(batch.progress(), None, "the run is over");
        assert_eq!(batch.metrics().unwrap().processed, 3);
    });
}

/// Go: `len(wp.jobs)`, `cfg.NumWorkers` (default 4 in Go; the pool's
/// worker count here) and the job list, read back.
#[test]
fn read_back_jobs_and_num_workers() {
    let pool = pool(3);
    let batch: Batch<'_, u32, u32> = Batch::new(&pool);
    assert!(!batch.has_processor());
    assert_eq!(batch.workers(), 3, "default: the pool's worker count");
    assert_eq!(batch.config().workers, None);
    batch.add_jobs([Job::new("a", 1).with_priority(2), Job::new("b", 2)]);
    batch.add_job(Job::new("c", 3));
    let jobs = batch.jobs();
    assert_eq!(batch.job_count(), 3);
    let seen: Vec<(&str, u32, i32)> = jobs
        .iter()
        .map(|j| (j.id.as_str(), j.data, j.priority))
        .collect();
    assert_eq!(seen, [("a", 1, 2), ("b", 2, 0), ("c", 3, 0)]);
    assert!(std::ptr::eq(batch.pool(), &pool));
    let four = Batch::<u32, u32>::with_config(
        &pool,
        BatchConfig {
            workers: Some(4), // Go's DefaultConfig().NumWorkers
            ..BatchConfig::default()
        },
    )
    .unwrap();
    assert_eq!(four.workers(), 4);
    let batch = batch.with_infallible_processor(|_, j| j.data);
    assert!(batch.has_processor());
}

/// Go: `results, err := wp.Run(); if err != nil { ... }` after `wp.Stop()`.
/// A stop is not an error here: `run()` is `Ok`, the reason is in
/// `stop_reason()`, and the jobs that never started are marked and easy to
/// filter (`started()` is what Go's `results` held).
#[test]
fn err_after_stop_is_the_stop_reason() {
    within(|| {
        let pool = pool(2);
        let (started_tx, started) = mpsc::channel();
        let config = BatchConfig {
            workers: Some(1),
            backoff: Backoff::Fixed(Duration::ZERO),
            ..BatchConfig::default()
        };
        let batch = Batch::with_config(&pool, config).unwrap().with_processor(
            move |ctx, job: &Job<usize>| {
                if job.data == 1 {
                    started_tx.send(()).unwrap();
                    ctx.wait_cancelled(); // Go: <-ctx.Done(); return 0, ctx.Err()
                    return Err("context canceled");
                }
                Ok(job.data)
            },
        );
        batch.add_jobs((0..5).map(|i| Job::new(format!("job-{i}"), i)));
        let stop = batch.stop_handle();
        let report = std::thread::scope(|s| {
            s.spawn(move || {
                started.recv().unwrap();
                assert!(stop.stop());
            });
            batch.run()
        });
        let report = report.expect("a stop is not an error of run()");
        assert_eq!(report.stop_reason(), Some(CancelReason::Stopped));
        assert_eq!(report.results.len(), 5, "every job has a result");
        let started: Vec<&str> = report.started().map(|r| r.job_id.as_str()).collect();
        assert_eq!(started, ["job-0", "job-1"], "Go's results");
        assert_eq!(
            report.results[1].error,
            Some(JobError::Cancelled(CancelReason::Stopped))
        );
        let unstarted: Vec<usize> = report.unstarted().map(|r| r.index).collect();
        assert_eq!(unstarted, [2, 3, 4]);
        for r in report.unstarted() {
            assert!(r.is_unstarted());
            assert_eq!(r.worker, None);
            assert_eq!(r.error, Some(JobError::NotStarted(CancelReason::Stopped)));
        }
        assert!(!report.results[0].is_unstarted());
        assert!(
            !report.results[1].is_unstarted(),
            "cut short, but it started"
        );
    });
}

/// Go: `select { case <-ctx.Done(): return ctx.Err() case <-time.After(d): }`
/// inside the processor, with the per-attempt `WorkerTimeout`.
#[test]
fn select_on_ctx_done_or_time_after() {
    within(|| {
        let pool = pool(1);
        let config = BatchConfig {
            attempt_timeout: Duration::from_millis(20),
            max_retries: 0,
            ..BatchConfig::default()
        };
        let batch =
            Batch::with_config(&pool, config)
                .unwrap()
                .with_processor(|ctx, _job: &Job<()>| {
                    // Not cancelled yet: a zero wait says so at once.
                    assert!(!ctx.wait_cancelled_for(Duration::ZERO));
                    // The attempt's timeout ends this wait long before a minute.
                    if ctx.wait_cancelled_for(Duration::from_secs(60)) {
                        return Err("context deadline exceeded");
                    }
                    Ok(())
                });
        batch.add_job(Job::new("slow", ()));
        let report = batch.run().unwrap();
        assert_eq!(
            report.results[0].error,
            Some(JobError::TimedOut(Duration::from_millis(20)))
        );
        assert_eq!(
            report.stop_reason(),
            None,
            "an attempt timeout is not a stop"
        );
    });
}

/// Go: two goroutines call `wp.Run()` on one pool (Go crashed: defect 3).
/// Runs of one batch take turns; each runs every job.
#[test]
fn two_goroutines_run_one_batch() {
    within(|| {
        let pool = pool(2);
        let batch = Batch::new(&pool).with_infallible_processor(|_, job: &Job<usize>| job.data * 2);
        batch.add_jobs((0..50).map(|i| Job::new(format!("job-{i}"), i)));
        std::thread::scope(|s| {
            let a = s.spawn(|| batch.run().unwrap());
            let b = s.spawn(|| batch.run().unwrap());
            for r in [a.join().unwrap(), b.join().unwrap()] {
                assert_eq!(r.metrics.processed, 50);
                let mut v: Vec<usize> = r.values().copied().collect();
                v.sort_unstable();
                assert_eq!(v, (0..50).map(|i| i * 2).collect::<Vec<_>>());
            }
        });
    });
}
