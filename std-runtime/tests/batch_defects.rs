//! The batch API against the seven confirmed defects of the Go library it
//! replaces (one regression test per defect, named after it), plus each
//! strategy's order, a user-defined strategy, retries, attempt timeouts and
//! run errors.
//!
//! Synchronisation uses channels, never sleeps that must be "long enough";
//! the timeouts are safety nets that turn a hang into a failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use respool::batch::{
    Assignment, Batch, BatchConfig, BatchError, CancelReason, Chunked, Dispatch, Job, JobContext,
    JobError, JobMeta, JobResult, JobStatus, Plan, Strategy, StrategyKind,
};
use respool::{Backoff, Pool};

mod common;
use common::{SAFETY, within};

fn pool(workers: usize) -> Pool {
    Pool::builder().workers(workers).build().unwrap()
}

fn config(strategy: StrategyKind) -> BatchConfig {
    BatchConfig {
        strategy,
        backoff: Backoff::Fixed(Duration::ZERO),
        ..BatchConfig::default()
    }
}

fn jobs(n: usize) -> Vec<Job<usize>> {
    (0..n).map(|i| Job::new(format!("job-{i}"), i)).collect()
}

fn builtins() -> [StrategyKind; 5] {
    [
        StrategyKind::RoundRobin,
        StrategyKind::Chunked,
        StrategyKind::WorkStealing,
        StrategyKind::PriorityBased,
        StrategyKind::Adaptive,
    ]
}

/// Every job has exactly one result, and it succeeded with `2 * index`.
fn assert_all_doubled(results: &[JobResult<usize>], n: usize) {
    assert_eq!(results.len(), n);
    let mut seen = vec![false; n];
    for r in results {
        assert!(!seen[r.index], "job {} reported twice", r.index);
        seen[r.index] = true;
        assert_eq!(r.job_id, format!("job-{}", r.index));
        assert_eq!(r.error, None, "job {}", r.index);
        assert_eq!(r.data, Some(2 * r.index));
        assert_eq!(r.attempts, 1);
    }
}

#[test]
fn defect1_more_jobs_than_buffer_complete() {
    within(|| {
        let pool = pool(4);
        for strategy in builtins() {
            for (workers, buffer) in [(None, 100), (None, 1), (Some(8), 1), (Some(3), 7)] {
                let cfg = BatchConfig {
                    workers,
                    buffer_size: buffer,
                    ..config(strategy.clone())
                };
                let batch = Batch::with_config(&pool, cfg)
                    .unwrap()
                    .with_processor(|_, job: &Job<usize>| Ok::<_, String>(job.data * 2));
                // Priorities make Adaptive pick a different strategy per case.
                batch.add_jobs(jobs(200).into_iter().map(|j| {
                    let p = if buffer == 1 { 9 } else { 0 };
                    j.with_priority(p)
                }));
                let report = batch.run().unwrap();
                assert_all_doubled(&report.results, 200);
                assert_eq!(report.metrics.processed, 200);
                let depth = report.metrics.queue_depth_max.unwrap();
                assert!(
                    (1..=buffer).contains(&depth),
                    "{strategy:?}: queue depth {depth} with a buffer of {buffer}"
                );
            }
        }
    });
}

#[test]
fn defect2_chunked_with_fewer_jobs_than_workers() {
    within(|| {
        let pool = pool(4);
        let make = |lanes: usize| {
            Batch::with_config(
                &pool,
                BatchConfig {
                    workers: Some(lanes),
                    ..config(StrategyKind::Chunked)
                },
            )
            .unwrap()
            .with_processor(|ctx: &JobContext, job: &Job<usize>| {
                Ok::<_, String>((job.data * 2, ctx.worker()))
            })
        };
        // Go panicked here: 1 and 3 jobs on 4 workers.
        for n in [1, 3] {
            let batch = make(4);
            batch.add_jobs(jobs(n));
            let report = batch.run().unwrap();
            assert_eq!(report.results.len(), n);
            for r in &report.results {
                // One job per lane: job i on lane i.
                assert_eq!(r.worker, Some(r.index));
                assert_eq!(r.data, Some((2 * r.index, r.index)));
            }
        }
        // Every count from 0 to 20 on 1 to 8 lanes: each job exactly once,
        // on the lane whose slice holds it.
        for lanes in 1..=8 {
            let batch = make(lanes);
            for n in 0..=20 {
                batch.add_jobs(jobs(n));
                if n == 0 {
                    assert!(matches!(batch.run(), Err(BatchError::NoJobs)));
                    continue;
                }
                let report = batch.run().unwrap();
                assert_eq!(report.results.len(), n, "{n} jobs on {lanes} lanes");
                let mut seen = vec![0; n];
                for r in &report.results {
                    seen[r.index] += 1;
                    assert!(r.is_ok());
                    let lane = r.worker.unwrap();
                    assert!(
                        Chunked::bounds(n, lanes, lane).contains(&r.index),
                        "job {} on lane {lane} ({n} jobs, {lanes} lanes)",
                        r.index
                    );
                }
                assert!(seen.iter().all(|&c| c == 1), "{n} jobs on {lanes} lanes");
            }
        }
    });
}

#[test]
fn defect3_one_batch_runs_many_times() {
    within(|| {
        let pool = pool(2);
        let batch = Batch::with_config(&pool, config(StrategyKind::RoundRobin))
            .unwrap()
            .with_processor(|_, job: &Job<usize>| Ok::<_, String>(job.data * 2));
        let other = Batch::with_config(&pool, config(StrategyKind::WorkStealing))
            .unwrap()
            .with_processor(|_, job: &Job<usize>| Ok::<_, String>(job.data * 2));
        for k in 1..=50 {
            batch.add_jobs(jobs(k));
            assert_all_doubled(&batch.run().unwrap().results, k);
            other.add_jobs(jobs(51 - k));
            assert_all_doubled(&other.run().unwrap().results, 51 - k);
        }
        assert_eq!(batch.metrics().unwrap().total_jobs, 50);
        // The jobs stay added: running again runs them again.
        assert_all_doubled(&batch.run().unwrap().results, 50);
        // Two runs at once on one pool, from two threads.
        std::thread::scope(|s| {
            let a = s.spawn(|| batch.run().unwrap());
            let b = s.spawn(|| other.run().unwrap());
            assert_all_doubled(&a.join().unwrap().results, 50);
            assert_all_doubled(&b.join().unwrap().results, 1);
        });
    });
}

/// 10,000 runs of 30 jobs over 4 lanes (about 5 s in a debug build on 2 cores).
#[test]
fn defect4_work_stealing_never_loses_or_repeats() {
    let runs = 10_000;
    within(move || {
        let pool = pool(4);
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(4),
                ..config(StrategyKind::WorkStealing)
            },
        )
        .unwrap()
        .with_processor(move |_, job: &Job<usize>| {
            c.fetch_add(1, Ordering::Relaxed);
            Ok::<_, String>(job.data * 2)
        });
        batch.add_jobs(jobs(30));
        let mut stolen = 0usize;
        for run in 0..runs {
            let report = batch.run().unwrap();
            assert_all_doubled(&report.results, 30);
            assert_eq!(report.metrics.dispatch_errors, 0, "run {run}");
            assert_eq!(calls.load(Ordering::Relaxed), 30 * (run + 1), "run {run}");
            stolen += report
                .results
                .iter()
                .filter(|r| r.worker != Some(r.index % 4))
                .count();
        }
        eprintln!("work stealing: {runs} runs, {stolen} jobs ran on a lane that stole them");
    });
}

#[test]
fn work_stealing_really_steals() {
    // Two lanes: lane 0 pops its newest job (index 8) first and holds it
    // until lane 1 has run one of lane 0's jobs, which it can only get by
    // stealing (oldest first: index 0). Lane 1 holds its own first job
    // (index 7) until lane 0 has started: else, when the pool starts lane
    // 0's task late (a worker slow to wake, as under ASan in CI), lane 1
    // runs its own jobs and steals all of lane 0's, index 8 included.
    within(|| {
        let pool = pool(2);
        let (stole_tx, stole_rx) = mpsc::channel::<usize>();
        let stole_rx = Mutex::new(stole_rx);
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let started_rx = Mutex::new(started_rx);
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(2),
                ..config(StrategyKind::WorkStealing)
            },
        )
        .unwrap()
        .with_processor(move |ctx: &JobContext, job: &Job<usize>| {
            if job.data == 8 {
                let _ = started_tx.send(());
                let got = stole_rx.lock().unwrap().recv_timeout(SAFETY);
                return got.map_err(|e| format!("lane 1 never stole: {e}"));
            }
            if job.data == 7 {
                let started = started_rx.lock().unwrap().recv_timeout(SAFETY);
                started.map_err(|e| format!("lane 0 never started: {e}"))?;
            }
            if ctx.worker() == 1 && job.data % 2 == 0 {
                let _ = stole_tx.send(job.data);
            }
            Ok(job.data)
        });
        batch.add_jobs(jobs(9));
        let mut report = batch.run().unwrap();
        report.sort_by_index();
        assert_eq!(
            report.results[8].data,
            Some(0),
            "the first steal takes the oldest"
        );
        assert_eq!(report.results[8].worker, Some(0));
        assert_eq!(report.results[0].worker, Some(1));
        assert!(report.results.iter().all(JobResult::is_ok));
    });
}

#[test]
fn defect5_cancellation_reaches_running_jobs_and_keeps_results() {
    within(|| {
        let pool = pool(2);
        // Round robin on 2 lanes: lane 0 runs 0, 2, 4..., lane 1 runs 1, 3, 5...
        // Jobs 0 and 1 finish at once; jobs 2 and 3 wait for cancellation.
        let (started_tx, started_rx) = mpsc::channel::<usize>();
        let started_tx = Mutex::new(started_tx);
        // What the running jobs saw: (slept the whole time, cancelled, timed out).
        let seen: Arc<Mutex<Vec<(bool, bool, bool)>>> = Arc::default();
        let seen2 = seen.clone();
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(2),
                ..config(StrategyKind::RoundRobin)
            },
        )
        .unwrap()
        .with_processor(move |ctx: &JobContext, job: &Job<usize>| {
            if job.data < 2 {
                return Ok(job.data * 10);
            }
            started_tx.lock().unwrap().send(job.data).unwrap();
            // Cut short by the cancellation (the 30 s attempt timeout
            // would show as timed out instead).
            let slept = ctx.sleep(Duration::from_secs(120));
            seen2
                .lock()
                .unwrap()
                .push((slept, ctx.is_cancelled(), ctx.is_timed_out()));
            Err("saw the cancellation".to_string())
        });
        batch.add_jobs(jobs(10));
        let stop = batch.stop_handle();
        assert!(!stop.stop(), "nothing to stop before the run");
        let mut report = std::thread::scope(|s| {
            let run = s.spawn(|| batch.run().unwrap());
            let mut running = vec![
                started_rx.recv_timeout(SAFETY).unwrap(),
                started_rx.recv_timeout(SAFETY).unwrap(),
            ];
            running.sort_unstable();
            assert_eq!(running, [2, 3]);
            assert!(stop.stop(), "a run was in progress");
            run.join().unwrap()
        });
        assert_eq!(*seen.lock().unwrap(), [(false, true, false); 2]);
        report.sort_by_index();
        let r = &report.results;
        // Completed results are kept.
        assert_eq!(r[0].data, Some(0));
        assert_eq!(r[1].data, Some(10));
        // Running jobs saw the cancellation, and are not retried.
        for j in &r[2..4] {
            assert_eq!(j.error, Some(JobError::Cancelled(CancelReason::Stopped)));
            assert_eq!(j.attempts, 1);
            assert_eq!(j.worker, Some(j.index % 2));
            assert_eq!(j.status(), JobStatus::Cancelled);
        }
        // The others never started, and are reported, not dropped.
        for j in &r[4..] {
            assert_eq!(j.error, Some(JobError::NotStarted(CancelReason::Stopped)));
            assert_eq!((j.attempts, j.worker, j.started), (0, None, None));
        }
        let m = &report.metrics;
        assert_eq!(
            (m.total_jobs, m.processed, m.failed, m.cancelled),
            (10, 2, 0, 8)
        );
        assert_eq!(m.stop_reason, Some(CancelReason::Stopped));
        assert!(!batch.stop(), "the run is over");
    });
}

#[test]
fn run_timeout_cancels_running_jobs_and_keeps_results() {
    within(|| {
        let pool = pool(2);
        // Job 0 must complete, and job 1 start, before the run times out:
        // microseconds of work against a second (what the run's result
        // depends on is when the timeout fires, so it cannot be an event).
        let timeout = Duration::from_secs(1);
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(1),
                timeout,
                ..config(StrategyKind::RoundRobin)
            },
        )
        .unwrap()
        .with_processor(|ctx: &JobContext, job: &Job<usize>| {
            if job.data == 0 {
                return Ok(7);
            }
            // Only the run timeout ends this (the attempt timeout is 30 s).
            while !ctx.is_cancelled() {
                ctx.sleep(Duration::from_secs(120));
            }
            Err(if ctx.is_timed_out() {
                "attempt timed out"
            } else {
                "cancelled"
            })
        });
        batch.add_jobs(jobs(3));
        let mut report = batch.run().unwrap();
        report.sort_by_index();
        let r = &report.results;
        let reason = CancelReason::RunTimedOut(timeout);
        assert_eq!(r[0].data, Some(7), "completed before the timeout: kept");
        assert_eq!(r[1].error, Some(JobError::Cancelled(reason)));
        assert_eq!(r[2].error, Some(JobError::NotStarted(reason)));
        assert_eq!(report.metrics.stop_reason, Some(reason));
        assert!(report.metrics.wall_time >= timeout);
    });
}

#[test]
fn defect6_metrics_mean_what_they_say() {
    within(|| {
        let pool = pool(4);
        let processor = |_: &JobContext, job: &Job<usize>| {
            // Unequal, known-order work: a few spins of the clock.
            let until = Instant::now() + Duration::from_micros(200 * (job.data % 5) as u64);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            if job.data % 10 == 7 {
                return Err(format!("job {} fails", job.data));
            }
            Ok(job.data)
        };
        let cfg = BatchConfig {
            workers: Some(4),
            buffer_size: 4,
            max_retries: 0,
            ..config(StrategyKind::RoundRobin)
        };
        let batch = Batch::with_config(&pool, cfg.clone())
            .unwrap()
            .with_processor(processor);
        batch.add_jobs(jobs(40));
        let report = batch.run().unwrap();
        let (r, m) = (&report.results, &report.metrics);

        // Counts.
        assert_eq!(
            (m.total_jobs, m.processed, m.failed, m.cancelled),
            (40, 36, 4, 0)
        );
        assert_eq!((m.attempts, m.retries, m.timed_out_attempts), (40, 0, 0));
        assert_eq!(
            r.iter().filter(|x| x.status() == JobStatus::Failed).count(),
            4
        );
        assert_eq!(m.strategy, "round-robin");
        assert_eq!(m.lanes, 4);

        // The mean of the per-job durations, by hand (not wall time / successes).
        let mut durations: Vec<Duration> = r.iter().map(|x| x.duration).collect();
        let sum: u128 = durations.iter().map(Duration::as_nanos).sum();
        let mean = Duration::from_nanos((sum / 40) as u64);
        assert_eq!(m.mean_job_duration, Some(mean));
        // Each duration is its result's completed - started.
        for x in r {
            assert_eq!(x.duration, x.completed - x.started.unwrap());
        }
        // Nearest-rank percentiles, by hand.
        durations.sort();
        assert_eq!(m.p50_job_duration, Some(durations[19])); // ceil(0.50 * 40) = 20th
        assert_eq!(m.p95_job_duration, Some(durations[37])); // ceil(0.95 * 40) = 38th
        assert_eq!(m.max_job_duration, Some(durations[39]));

        // Lane busy time is the sum of its jobs' durations (one attempt each),
        // and utilisation is busy / wall.
        assert_eq!(m.wall_time, m.ended - m.started);
        for lane in 0..4 {
            let busy: Duration = r
                .iter()
                .filter(|x| x.worker == Some(lane))
                .map(|x| x.duration)
                .sum();
            assert_eq!(m.lane_busy[lane], busy, "lane {lane}");
            let u = busy.as_secs_f64() / m.wall_time.as_secs_f64();
            assert!((m.lane_utilisation[lane] - u).abs() < 1e-9);
            assert!((0.0..=1.0).contains(&m.lane_utilisation[lane]));
        }
        // Every job ran between the run's start and end.
        for x in r {
            assert!(x.started.unwrap() >= m.started && x.completed <= m.ended);
        }
        let depth = m.queue_depth_max.unwrap();
        assert!((1..=4).contains(&depth), "queue depth {depth}, buffer 4");
        assert_eq!(batch.metrics().unwrap().total_jobs, 40);

        // Without metrics the histogram and queue depth are not collected;
        // counts and the mean still are.
        let lean = Batch::with_config(
            &pool,
            BatchConfig {
                enable_metrics: false,
                ..cfg
            },
        )
        .unwrap()
        .with_processor(processor);
        lean.add_jobs(jobs(40));
        let report = lean.run().unwrap();
        let m = &report.metrics;
        assert_eq!((m.processed, m.failed), (36, 4));
        assert_eq!(
            (
                m.p50_job_duration,
                m.p95_job_duration,
                m.max_job_duration,
                m.queue_depth_max
            ),
            (None, None, None, None)
        );
        let sum: u128 = report.results.iter().map(|x| x.duration.as_nanos()).sum();
        assert_eq!(
            m.mean_job_duration,
            Some(Duration::from_nanos((sum / 40) as u64))
        );
    });
}

#[test]
fn defect7_panicking_processor_is_a_failed_job() {
    within(|| {
        let pool = pool(2);
        for retries in [0, 2] {
            let batch = Batch::with_config(
                &pool,
                BatchConfig {
                    max_retries: retries,
                    ..config(StrategyKind::WorkStealing)
                },
            )
            .unwrap()
            .with_processor(|_, job: &Job<usize>| {
                if job.data == 3 {
                    panic!("boom {}", job.data);
                }
                Ok::<_, String>(job.data * 2)
            });
            batch.add_jobs(jobs(10));
            let mut report = batch.run().unwrap();
            report.sort_by_index();
            let failed = &report.results[3];
            assert_eq!(failed.error, Some(JobError::Panicked("boom 3".into())));
            assert_eq!(
                failed.attempts,
                retries + 1,
                "a panic is retried like an error"
            );
            assert!(
                failed
                    .error
                    .as_ref()
                    .unwrap()
                    .to_string()
                    .contains("panicked: boom 3")
            );
            assert_eq!(report.metrics.failed, 1);
            assert_eq!(report.metrics.processed, 9);
            for r in report.results.iter().filter(|r| r.index != 3) {
                assert_eq!(r.data, Some(r.index * 2));
            }
        }
        // The pool is fine afterwards.
        assert_eq!(pool.submit(|| 5).unwrap().join(), Ok(5));
    });
}

#[test]
fn round_robin_runs_job_i_on_lane_i_mod_n_in_order() {
    within(|| {
        let pool = pool(3);
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(3),
                ..config(StrategyKind::RoundRobin)
            },
        )
        .unwrap()
        .with_processor(|_, job: &Job<usize>| Ok::<_, String>(job.data));
        batch.add_jobs(jobs(20));
        let mut report = batch.run().unwrap();
        report.sort_by_index();
        for r in &report.results {
            assert_eq!(r.worker, Some(r.index % 3));
        }
        // Within a lane, jobs run in job order.
        for lane in 0..3 {
            let starts: Vec<Instant> = report
                .results
                .iter()
                .filter(|r| r.worker == Some(lane))
                .map(|r| r.started.unwrap())
                .collect();
            assert!(starts.windows(2).all(|w| w[0] <= w[1]), "lane {lane}");
        }
    });
}

#[test]
fn priority_based_runs_highest_first_fifo_among_equals() {
    within(|| {
        let pool = pool(2);
        // One lane, so that completion order is dispatch order.
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(1),
                ..config(StrategyKind::PriorityBased)
            },
        )
        .unwrap()
        .with_processor(|_, job: &Job<usize>| Ok::<_, String>(job.data));
        let prios = [1, 5, 1, 9, 5, -3, 9, 1];
        batch.add_jobs(
            prios
                .iter()
                .enumerate()
                .map(|(i, &p)| Job::new(format!("job-{i}"), i).with_priority(p)),
        );
        let report = batch.run().unwrap();
        let order: Vec<usize> = report.results.iter().map(|r| r.index).collect();
        assert_eq!(order, [3, 6, 1, 4, 0, 2, 7, 5]);
        assert_eq!(report.metrics.strategy, "priority");
    });
}

#[test]
fn adaptive_reports_its_choice() {
    within(|| {
        let pool = pool(2);
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(2),
                ..config(StrategyKind::Adaptive)
            },
        )
        .unwrap()
        .with_processor(|_, job: &Job<usize>| Ok::<_, String>(job.data * 2));
        // (jobs, how many with priority 9, expected choice) on 2 lanes.
        let table = [
            (4, 3, "adaptive: priority"),
            (21, 0, "adaptive: chunked"),
            (20, 0, "adaptive: work-stealing"),
            (5, 0, "adaptive: work-stealing"),
            (4, 2, "adaptive: round-robin"),
        ];
        for (n, high, want) in table {
            batch.add_jobs(
                jobs(n)
                    .into_iter()
                    .map(|j| if j.data < high { j.with_priority(9) } else { j }),
            );
            let report = batch.run().unwrap();
            assert_eq!(report.metrics.strategy, want, "{n} jobs, {high} high");
            assert_all_doubled(&report.results, n);
        }
    });
}

/// Every job on the last lane, newest first; counts its plans.
struct LastLaneNewestFirst {
    plans: Arc<AtomicUsize>,
}

impl Strategy for LastLaneNewestFirst {
    fn name(&self) -> &str {
        "last-lane-newest-first"
    }
    fn plan(&self, jobs: &[JobMeta<'_>], lanes: usize) -> Plan {
        self.plans.fetch_add(1, Ordering::SeqCst);
        let mut queues = vec![Vec::new(); lanes];
        queues[lanes - 1] = jobs.iter().rev().map(|j| j.index).collect();
        Plan::new(Assignment::new(queues))
    }
}

#[test]
fn user_defined_strategy_is_used() {
    within(|| {
        let pool = pool(2);
        let plans = Arc::new(AtomicUsize::new(0));
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(3),
                ..config(StrategyKind::custom(LastLaneNewestFirst {
                    plans: plans.clone(),
                }))
            },
        )
        .unwrap()
        .with_processor(|ctx: &JobContext, job: &Job<usize>| {
            Ok::<_, String>((job.data, ctx.worker()))
        });
        batch.add_jobs(jobs(12));
        for run in 1..=3 {
            let report = batch.run().unwrap();
            assert_eq!(plans.load(Ordering::SeqCst), run, "one plan per run");
            let order: Vec<usize> = report.results.iter().map(|r| r.index).collect();
            assert_eq!(order, (0..12).rev().collect::<Vec<_>>());
            assert!(
                report
                    .results
                    .iter()
                    .all(|r| r.worker == Some(2) && r.data == Some((r.index, 2)))
            );
            assert_eq!(report.metrics.strategy, "last-lane-newest-first");
            assert_eq!(report.metrics.lane_busy[0], Duration::ZERO);
        }
    });
}

/// A broken strategy: hands out job 0 over and over, never the others.
struct Stuck;

struct StuckDispatch;

impl Dispatch for StuckDispatch {
    fn next(&self, _lane: usize) -> Option<usize> {
        Some(0)
    }
}

impl Strategy for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    fn plan(&self, _jobs: &[JobMeta<'_>], _lanes: usize) -> Plan {
        Plan::new(StuckDispatch)
    }
}

#[test]
fn a_broken_strategy_cannot_repeat_or_drop_jobs_silently() {
    within(|| {
        let pool = pool(2);
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let batch = Batch::with_config(&pool, config(StrategyKind::custom(Stuck)))
            .unwrap()
            .with_processor(move |_, job: &Job<usize>| {
                c.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(job.data)
            });
        batch.add_jobs(jobs(5));
        let mut report = batch.run().unwrap();
        report.sort_by_index();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "job 0 ran once");
        assert!(report.results[0].is_ok());
        for r in &report.results[1..] {
            assert_eq!(
                r.error,
                Some(JobError::NotStarted(CancelReason::NotDispatched))
            );
        }
        assert!(report.metrics.dispatch_errors > 0);
    });
}

#[test]
fn retries_with_backoff_are_counted() {
    within(|| {
        let pool = pool(2);
        let step = Duration::from_millis(5);
        let starts: Arc<Mutex<HashMap<usize, Vec<Instant>>>> = Arc::default();
        let s = starts.clone();
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                max_retries: 3,
                backoff: Backoff::Linear(step),
                ..config(StrategyKind::RoundRobin)
            },
        )
        .unwrap()
        .with_processor(move |ctx: &JobContext, job: &Job<usize>| {
            s.lock()
                .unwrap()
                .entry(job.data)
                .or_default()
                .push(Instant::now());
            // Job 5 always fails; the others succeed on their third attempt.
            if job.data == 5 || ctx.attempt() < 2 {
                return Err(format!("attempt {} of job {}", ctx.attempt(), job.data));
            }
            Ok(job.data)
        });
        batch.add_jobs(jobs(8));
        let mut report = batch.run().unwrap();
        report.sort_by_index();
        for r in &report.results {
            if r.index == 5 {
                assert_eq!(r.attempts, 4, "max_retries + 1");
                assert_eq!(
                    r.error.as_ref().unwrap().to_string(),
                    "job failed: attempt 3 of job 5"
                );
            } else {
                assert_eq!((r.attempts, r.data), (3, Some(r.index)));
            }
        }
        let m = &report.metrics;
        assert_eq!((m.attempts, m.retries), (7 * 3 + 4, 7 * 2 + 3));
        assert_eq!((m.processed, m.failed), (7, 1));
        // Linear back-off: retry k waits at least (k + 1) * step.
        for (job, times) in starts.lock().unwrap().iter() {
            for (k, w) in times.windows(2).enumerate() {
                let gap = w[1] - w[0];
                let min = step * (k as u32 + 1);
                assert!(gap >= min, "job {job}, retry {k}: {gap:?} < {min:?}");
            }
        }
    });
}

#[test]
fn attempt_timeout_fails_the_attempt_and_retries() {
    within(|| {
        let pool = pool(2);
        // Job 0's retry must finish within the limit: it returns at once, so
        // the limit is generous (it was 200 ms), and the overrunning attempts
        // take the limit each.
        let limit = Duration::from_secs(1);
        // What the overrunning attempts saw: (slept the whole time, timed out, cancelled).
        let seen: Arc<Mutex<Vec<(bool, bool, bool)>>> = Arc::default();
        let s = seen.clone();
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                attempt_timeout: limit,
                max_retries: 1,
                ..config(StrategyKind::RoundRobin)
            },
        )
        .unwrap()
        .with_processor(move |ctx: &JobContext, job: &Job<usize>| {
            // Job 0: the first attempt overruns, the retry is instant.
            // Job 1: every attempt overruns.
            if job.data == 1 || ctx.attempt() == 0 {
                let slept = ctx.sleep(Duration::from_secs(120));
                s.lock()
                    .unwrap()
                    .push((slept, ctx.is_timed_out(), ctx.is_cancelled()));
                return Ok::<_, String>("late"); // discarded: the attempt timed out
            }
            Ok("on time")
        });
        batch.add_jobs(jobs(2));
        let mut report = batch.run().unwrap();
        report.sort_by_index();
        let r = &report.results;
        assert_eq!((r[0].data, r[0].attempts), (Some("on time"), 2));
        assert_eq!(r[1].error, Some(JobError::TimedOut(limit)));
        assert_eq!(r[1].attempts, 2);
        assert_eq!(report.metrics.timed_out_attempts, 3);
        assert_eq!(*seen.lock().unwrap(), [(false, true, true); 3]);
        assert_eq!(
            report.metrics.stop_reason, None,
            "the run itself was not cancelled"
        );
    });
}

#[test]
fn run_errors_match_the_go_library() {
    let pool = pool(1);
    let no_processor: Batch<'_, usize, usize> = Batch::new(&pool);
    no_processor.add_jobs(jobs(1));
    let e = no_processor.run().unwrap_err();
    assert!(matches!(e, BatchError::NoProcessor));
    assert!(e.to_string().starts_with("no processor configured"));

    let no_jobs = Batch::new(&pool).with_processor(|_, j: &Job<usize>| Ok::<_, String>(j.data));
    let e = no_jobs.run().unwrap_err();
    assert!(matches!(e, BatchError::NoJobs));
    assert!(e.to_string().starts_with("no jobs to process"));

    let bad = Batch::<usize, usize>::with_config(
        &pool,
        BatchConfig {
            workers: Some(0),
            ..BatchConfig::default()
        },
    );
    assert!(matches!(
        bad,
        Err(BatchError::InvalidConfig {
            field: "workers",
            ..
        })
    ));

    no_jobs.add_job(Job::new("x", 1));
    pool.shutdown();
    assert!(matches!(no_jobs.run(), Err(BatchError::PoolShutDown)));
}

#[test]
fn add_job_is_thread_safe() {
    within(|| {
        let pool = pool(2);
        let batch =
            Batch::new(&pool).with_processor(|_, j: &Job<usize>| Ok::<_, String>(j.data * 2));
        std::thread::scope(|s| {
            for t in 0..4 {
                let batch = &batch;
                s.spawn(move || {
                    for i in 0..25 {
                        batch.add_job(Job::new(format!("job-{}", t * 25 + i), t * 25 + i));
                    }
                });
            }
        });
        assert_eq!(batch.job_count(), 100);
        let mut report = batch.run().unwrap();
        report.sort_by_index();
        let mut values: Vec<usize> = report.values().copied().collect();
        values.sort_unstable();
        assert_eq!(values, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    });
}

#[test]
fn run_inside_a_task_of_a_one_worker_pool_completes() {
    // The lanes can only run on the worker that runs `run()` itself.
    let pool = Arc::new(pool(1));
    let p = pool.clone();
    let h = pool
        .submit(move || {
            let batch = Batch::with_config(
                &p,
                BatchConfig {
                    workers: Some(2),
                    buffer_size: 1,
                    ..config(StrategyKind::WorkStealing)
                },
            )
            .unwrap()
            .with_processor(|_, j: &Job<usize>| Ok::<_, String>(j.data * 2));
            batch.add_jobs(jobs(10));
            batch.run().map(|r| r.results.len())
        })
        .unwrap();
    match h.join_timeout(SAFETY) {
        Ok(r) => assert_eq!(r.unwrap().unwrap(), 10),
        Err(_) => panic!("hung: run() on the pool's only worker"),
    }
}

/// Issue 14, defect 2: more lanes than `limits::MAX_WORKERS` is a
/// configuration error, refused by `validate()` (and so by `with_config`)
/// with `TooLarge`, naming the field, the value and the limit. Before, `1 <<
/// 40` lanes passed and `run()` aborted the process allocating per-lane
/// state, and `usize::MAX` came back as `StrategyPanicked("capacity
/// overflow")`. At the limit, a run completes.
#[test]
fn lanes_above_the_limit_are_a_config_error() {
    use respool::limits::MAX_WORKERS;
    let pool = pool(2);
    for workers in [MAX_WORKERS + 1, 1 << 40, usize::MAX] {
        let c = BatchConfig {
            workers: Some(workers),
            ..config(StrategyKind::RoundRobin)
        };
        for e in [
            c.validate().unwrap_err(),
            Batch::<usize, usize>::with_config(&pool, c.clone())
                .err()
                .unwrap(),
        ] {
            match &e {
                BatchError::TooLarge { field, value, max } => {
                    assert_eq!((*field, *value, *max), ("workers", workers, MAX_WORKERS));
                }
                other => panic!("{workers}: {other:?}"),
            }
            let msg = e.to_string();
            assert!(
                msg.contains("workers") && msg.contains(&format!("limit of {MAX_WORKERS}")),
                "{msg}"
            );
        }
    }
    within(move || {
        let batch = Batch::with_config(
            &pool,
            BatchConfig {
                workers: Some(MAX_WORKERS),
                ..config(StrategyKind::Chunked)
            },
        )
        .unwrap()
        .with_processor(|_, j: &Job<usize>| Ok::<_, String>(j.data + 1));
        batch.add_jobs(jobs(10));
        let mut values: Vec<usize> = batch
            .run()
            .unwrap()
            .results
            .into_iter()
            .map(|r| r.data.unwrap())
            .collect();
        values.sort_unstable();
        assert_eq!(values, (1..=10).collect::<Vec<_>>());
    });
}
