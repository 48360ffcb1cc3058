//! The batch API opts into admission and learning (issue 15): jobs (or a
//! whole batch) that carry requirements or a class go through the pool's
//! admission one attempt at a time, are measured, and teach their class;
//! without them a batch runs as before (the Go-port tests in
//! `batch_defects.rs`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::mem;
use respool::batch::{Batch, BatchConfig, Job, JobError};
use respool::{Dim, Pool, Resources, SubmitError};

/// Memory in use by running jobs (as they declared it), and its maximum.
#[derive(Default)]
struct InUse {
    now: AtomicU64,
    max: AtomicU64,
}

impl InUse {
    fn hold(&self, amount: u64) {
        let now = self.now.fetch_add(amount, Ordering::SeqCst) + amount;
        self.max.fetch_max(now, Ordering::SeqCst);
        // Long enough for other lanes to start theirs if they could.
        std::thread::sleep(Duration::from_millis(2));
        self.now.fetch_sub(amount, Ordering::SeqCst);
    }
}

fn pool(workers: usize, memory: u64) -> Pool {
    Pool::builder()
        .workers(workers)
        .capacity(mem(memory))
        .headroom(Resources::NONE)
        .build()
        .expect("pool")
}

/// Forty jobs of 300 bytes each on 1000 bytes and four workers: never more
/// than three at once, every one processed, and the class learned.
#[test]
fn jobs_with_requirements_never_over_commit_memory() {
    let pool = pool(4, 1000);
    let in_use = Arc::new(InUse::default());
    let seen = in_use.clone();
    let batch = Batch::new(&pool).with_processor(move |_ctx, job: &Job<u64>| {
        seen.hold(job.requirements.amount(Dim::Memory));
        Ok::<_, String>(job.data)
    });
    batch.add_jobs((0..40).map(|i| {
        Job::new(format!("job-{i}"), i)
            .with_requirements(mem(300))
            .with_class("chunk")
            .with_size_hint(i)
    }));
    let report = batch.run().expect("run");
    assert_eq!(report.metrics.processed, 40, "{:?}", report.metrics);
    let max = in_use.max.load(Ordering::SeqCst);
    assert!(max <= 900, "{max} bytes declared at once on 1000");
    pool.shutdown();
    let s = pool.snapshot();
    let class = s
        .classes
        .iter()
        .find(|c| c.class == "chunk")
        .expect("learned");
    assert_eq!(class.runs, 40);
    assert!(s.reserved.is_zero(), "{s}");
}

/// The batch's requirements apply to jobs that set none; a job's own win.
#[test]
fn the_batch_requirements_apply_to_jobs_that_set_none() {
    let pool = pool(4, 1000);
    let in_use = Arc::new(InUse::default());
    let seen = in_use.clone();
    let config = BatchConfig {
        requirements: mem(400),
        ..BatchConfig::default()
    };
    let batch = Batch::with_config(&pool, config)
        .expect("valid")
        .with_processor(move |_ctx, job: &Job<u64>| {
            seen.hold(job.data);
            Ok::<_, String>(())
        });
    // Twenty jobs of the batch's 400, four that declare 900 of their own.
    batch.add_jobs(
        (0..20)
            .map(|i| Job::new(format!("default-{i}"), 400))
            .chain((0..4).map(|i| Job::new(format!("big-{i}"), 900).with_requirements(mem(900)))),
    );
    let report = batch.run().expect("run");
    assert_eq!(report.metrics.processed, 24);
    let max = in_use.max.load(Ordering::SeqCst);
    assert!(max <= 1000, "{max} bytes declared at once on 1000");
}

/// Requirements the pool can never hold are the job's error (not retried),
/// not the run's; the other jobs run.
#[test]
fn a_job_that_can_never_fit_is_refused_once() {
    let pool = pool(2, 1000);
    let batch = Batch::new(&pool).with_processor(|_ctx, job: &Job<u32>| Ok::<_, String>(job.data));
    batch.add_jobs([
        Job::new("fits", 1).with_requirements(mem(500)),
        Job::new("never", 2).with_requirements(mem(2000)),
        Job::new("plain", 3),
    ]);
    let report = batch.run().expect("run");
    let by_id = |id: &str| {
        report
            .results
            .iter()
            .find(|r| r.job_id == id)
            .expect("reported")
    };
    assert_eq!(by_id("fits").data, Some(1));
    assert_eq!(by_id("plain").data, Some(3));
    let never = by_id("never");
    assert_eq!(never.attempts, 1, "never retried");
    assert!(
        matches!(
            &never.error,
            Some(JobError::Refused(SubmitError::NeverFits(s))) if s.dim == Dim::Memory && s.by == 1000
        ),
        "{:?}",
        never.error
    );
    assert!(
        never
            .error
            .as_ref()
            .unwrap()
            .to_string()
            .contains("refused")
    );
}

/// Stopping the batch while jobs wait for resources ends the run: the
/// waiting jobs are cancelled, nothing hangs, nothing stays reserved.
#[test]
fn stopping_a_batch_whose_jobs_wait_for_resources_ends_it() {
    let pool = pool(2, 1000);
    // All the memory is in use elsewhere: every job waits.
    pool.set_external_usage(&mem(1000)).expect("tracked");
    let batch = Batch::new(&pool).with_processor(|_ctx, job: &Job<u32>| Ok::<_, String>(job.data));
    batch.add_jobs((0..6).map(|i| Job::new(format!("job-{i}"), i).with_requirements(mem(100))));
    let stop = batch.stop_handle();
    let stopper = {
        let snapshot_pool = &pool;
        std::thread::scope(|s| {
            let t = s.spawn(move || {
                common::wait_until("the jobs to wait for memory", || {
                    snapshot_pool.snapshot().waiting >= 2
                });
                stop.stop();
            });
            let report = batch.run().expect("run");
            t.join().expect("stopper");
            report
        })
    };
    assert_eq!(stopper.results.len(), 6);
    assert!(
        stopper
            .results
            .iter()
            .all(|r| r.error.as_ref().is_some_and(JobError::is_cancellation)),
        "{:?}",
        stopper.results
    );
    pool.set_external_usage(&mem(0)).expect("tracked");
    common::assert_quiet(&pool);
}
