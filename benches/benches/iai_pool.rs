//! Instruction counts of the runtime's submission paths (valgrind/callgrind
//! through gungraun): 100 submissions into a one-worker pool whose worker is
//! held by a task that waits on a channel, so only the submitting thread
//! runs while the count is taken (the worker is blocked in the kernel, and
//! no wake-up is sent to a busy worker). Plain `execute`, `submit` with a
//! handle, and a task with a 3-dimension requirement; then the same plain
//! `execute` with an observer that counts events (what the seam costs when
//! it is used). The hard limits (about 30% above the counts recorded in
//! BENCHMARKS.md) fail CI when a change makes a path without an observer
//! grow: the observer seam must cost those paths nothing measurable.
#![allow(missing_docs)] // gungraun's macros generate undocumented items.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use gungraun::{
    Callgrind, EntryPoint, EventKind, LibraryBenchmarkConfig, library_benchmark,
    library_benchmark_group, main,
};
use respool::observe::{Event, Observer};
use respool::{Dim, Pool, Resources};

/// A pool whose only worker is busy until `release` is dropped.
struct Held {
    pool: Pool,
    release: mpsc::Sender<()>,
}

#[derive(Default)]
struct Count(AtomicU64);

impl Observer for Count {
    fn on_event(&self, _: &Event<'_>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn big() -> Resources {
    Resources::NONE
        .with_saturating(Dim::Cpu, 1 << 40)
        .with_saturating(Dim::Memory, 1 << 50)
        .with_saturating(Dim::Iops, 1 << 40)
}

fn request() -> Resources {
    Resources::NONE
        .with_saturating(Dim::Cpu, 10)
        .with_saturating(Dim::Memory, 1 << 20)
        .with_saturating(Dim::Iops, 1)
}

fn held(observed: bool) -> Held {
    let mut builder = Pool::builder()
        .workers(1)
        .capacity(big())
        .headroom(Resources::NONE)
        .monitor(false);
    if observed {
        builder = builder.observer(Count::default());
    }
    let pool = builder.build().expect("pool");
    let (started, on_start) = mpsc::sync_channel(0);
    let (release, released) = mpsc::channel::<()>();
    pool.execute(move || {
        started.send(()).expect("setup waits");
        // Returns once the teardown drops the sender.
        let _ = released.recv();
    })
    .expect("the blocker is accepted");
    on_start.recv().expect("the blocker starts");
    Held { pool, release }
}

fn plain() -> Held {
    held(false)
}

fn observed() -> Held {
    held(true)
}

fn release(h: Held) {
    drop(h.release);
    h.pool.shutdown();
}

fn limit(ir: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, ir)]));
    config
}

/// Counts only inside the worker's function that runs one task (on the
/// worker's thread, not the bench's): from the moment the blocker started
/// (in the setup) to the end of the last queued task.
fn worker_limit(ir: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(
        Callgrind::default()
            .entry_point(EntryPoint::Custom(WORKER_RUN.to_owned()))
            .hard_limits([(EventKind::Ir, ir)]),
    );
    config
}

/// The worker's one function that runs a task (see ARCHITECTURE.md).
const WORKER_RUN: &str = "respool::worker::<impl respool::engine::Shared>::run";

#[library_benchmark]
#[bench::x100(setup = plain, teardown = release, config = limit(EXECUTE_LIMIT))]
fn execute(h: Held) -> Held {
    for i in 0..100u64 {
        h.pool
            .execute(move || {
                black_box(i);
            })
            .expect("accepted");
    }
    h
}

#[library_benchmark]
#[bench::x100(setup = plain, teardown = release, config = limit(SUBMIT_LIMIT))]
fn submit(h: Held) -> Held {
    let mut handles = Vec::with_capacity(100);
    for i in 0..100u64 {
        handles.push(h.pool.submit(move || black_box(i)).expect("accepted"));
    }
    black_box(handles);
    h
}

#[library_benchmark]
#[bench::x100(setup = plain, teardown = release, config = limit(DECLARED_LIMIT))]
fn declared(h: Held) -> Held {
    let req = request();
    for i in 0..100u64 {
        h.pool
            .task()
            .requirements(req)
            .execute(move |_| {
                black_box(i);
            })
            .expect("accepted");
    }
    h
}

// The same requirements given as text, as most programs write them: each
// parsed once per thread (issue 21's parse cache), then compared.
#[library_benchmark]
#[bench::x100(setup = plain, teardown = release, config = limit(DECLARED_STR_LIMIT))]
fn declared_str(h: Held) -> Held {
    for i in 0..100u64 {
        h.pool
            .task()
            .cpu("10m")
            .memory("1MiB")
            .iops("1")
            .execute(move |_| {
                black_box(i);
            })
            .expect("accepted");
    }
    h
}

#[library_benchmark]
#[bench::x100(setup = observed, teardown = release, config = limit(OBSERVED_LIMIT))]
fn execute_observed(h: Held) -> Held {
    for i in 0..100u64 {
        h.pool
            .execute(move || {
                black_box(i);
            })
            .expect("accepted");
    }
    h
}

/// A held pool with 100 plain tasks queued behind the blocker and a last
/// one that reports on `done`.
struct Queued {
    held: Held,
    done: mpsc::Receiver<()>,
}

fn queued(observed: bool) -> Queued {
    let held = held(observed);
    for i in 0..100u64 {
        held.pool
            .execute(move || {
                black_box(i);
            })
            .expect("accepted");
    }
    let (tx, done) = mpsc::channel();
    held.pool
        .execute(move || tx.send(()).expect("the bench waits"))
        .expect("accepted");
    Queued { held, done }
}

fn queued_plain() -> Queued {
    queued(false)
}

fn queued_observed() -> Queued {
    queued(true)
}

fn finish(q: Queued) {
    q.held.pool.shutdown();
}

// The worker's side: the blocker is let go and the worker runs the 101
// queued tasks while this thread waits for the last.
#[library_benchmark]
#[bench::x100(setup = queued_plain, teardown = finish, config = worker_limit(RUN_LIMIT))]
#[bench::x100_observed(setup = queued_observed, teardown = finish, config = worker_limit(RUN_OBSERVED_LIMIT))]
fn run(q: Queued) -> Queued {
    let Queued { held, done } = q;
    drop(held.release);
    done.recv().expect("the last task reports");
    let (release, _) = mpsc::channel();
    Queued {
        held: Held {
            pool: held.pool,
            release,
        },
        done,
    }
}

const RUN_LIMIT: u64 = 13_500;
const RUN_OBSERVED_LIMIT: u64 = 59_500;
const EXECUTE_LIMIT: u64 = 14_000;
const SUBMIT_LIMIT: u64 = 49_000;
const DECLARED_LIMIT: u64 = 63_000;
const DECLARED_STR_LIMIT: u64 = 96_000;
const OBSERVED_LIMIT: u64 = 44_000;

library_benchmark_group!(
    name = pool;
    benchmarks = execute, submit, declared, declared_str, execute_observed, run
);

main!(library_benchmark_groups = pool);
