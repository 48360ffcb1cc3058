//! The pools respool is measured against, behind one interface, plus the
//! workloads (empty, 1 us and 10 us tasks) and a completion latch shared by
//! all of them so that every peer does exactly the same work.
//!
//! Peers (see `../shared/reference/anchors.md`):
//! - `rayon`: `ThreadPool::spawn` (boxes every task);
//! - `threadpool`: the `threadpool` crate (a mutex around one channel
//!   receiver, one box per job);
//! - `crossbeam`: a minimal pool of N threads draining an unbounded
//!   `crossbeam-channel` of boxed closures: the simplest fast pool;
//! - `tokio`: `Runtime::spawn_blocking` (one mutex around the queue);
//! - `respool`: `Pool::execute`, no requirements (the fast path);
//! - `respool-3dim`: `Pool::task().requirements(cpu, memory, iops).execute`,
//!   admitted through the tracker on every task.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use respool::{Dim, Pool, Resources};

/// Counts down to zero, then wakes the waiting thread.
pub struct Latch {
    left: AtomicUsize,
    waiter: Thread,
}

impl Latch {
    /// A latch for `n` tasks, waited on by the current thread.
    #[must_use]
    pub fn new(n: usize) -> Arc<Latch> {
        Arc::new(Latch {
            left: AtomicUsize::new(n),
            waiter: thread::current(),
        })
    }

    /// Called by each task when done.
    #[inline]
    pub fn done(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waiter.unpark();
        }
    }

    /// Blocks until every task called `done`.
    pub fn wait(&self) {
        while self.left.load(Ordering::Acquire) != 0 {
            thread::park();
        }
    }
}

/// Busy work of about `d` (spins on the clock, so it uses the CPU like real
/// work and is the same for every peer).
#[inline]
pub fn spin_for(d: Duration) {
    if d.is_zero() {
        return;
    }
    let t0 = Instant::now();
    while t0.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A minimal pool over an unbounded crossbeam channel.
pub struct CrossbeamPool {
    tx: Option<crossbeam_channel::Sender<Box<dyn FnOnce() + Send>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl CrossbeamPool {
    /// Starts `n` workers.
    #[must_use]
    pub fn new(n: usize) -> CrossbeamPool {
        let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
        let threads = (0..n)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || {
                    for job in rx {
                        job();
                    }
                })
            })
            .collect();
        CrossbeamPool {
            tx: Some(tx),
            threads,
        }
    }

    /// Queues `f`.
    pub fn execute(&self, f: impl FnOnce() + Send + 'static) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Box::new(f));
        }
    }
}

impl Drop for CrossbeamPool {
    fn drop(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One of the pools under test.
pub enum Peer {
    /// `rayon::ThreadPool::spawn`.
    Rayon(rayon::ThreadPool),
    /// The `threadpool` crate.
    ThreadPool(threadpool::ThreadPool),
    /// A crossbeam-channel pool.
    Crossbeam(CrossbeamPool),
    /// `tokio` `spawn_blocking`.
    Tokio(tokio::runtime::Runtime),
    /// respool, no requirements.
    Respool(Pool),
    /// respool, a 3-dimension requirement on every task.
    Respool3(Pool, Resources),
}

/// Names of every peer, in the order [`Peer::all`] builds them.
pub const NAMES: [&str; 6] = [
    "crossbeam-channel pool",
    "rayon spawn",
    "threadpool",
    "tokio spawn_blocking",
    "respool execute",
    "respool 3-dim requirement",
];

impl Peer {
    /// Builds every peer with `workers` threads.
    ///
    /// # Panics
    ///
    /// If a pool cannot be built (a benchmark setup error).
    #[must_use]
    pub fn all(workers: usize) -> Vec<Peer> {
        let capacity = big_capacity();
        let request = Resources::new()
            .with_saturating(Dim::Cpu, 10)
            .with_saturating(Dim::Memory, 1 << 20)
            .with_saturating(Dim::Iops, 1);
        let respool = || respool_pool(workers, capacity);
        vec![
            Peer::Crossbeam(CrossbeamPool::new(workers)),
            Peer::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(workers)
                    .build()
                    .expect("rayon pool"),
            ),
            Peer::ThreadPool(threadpool::ThreadPool::new(workers)),
            Peer::Tokio(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .max_blocking_threads(workers)
                    .build()
                    .expect("tokio runtime"),
            ),
            Peer::Respool(respool()),
            Peer::Respool3(respool(), request),
        ]
    }

    /// [`Peer::all`] with its last pool replaced by a second respool pool
    /// without requirements: an A/A control. Two identical pools compared
    /// in one run show how far apart noise alone puts them.
    ///
    /// # Panics
    ///
    /// If a pool cannot be built (a benchmark setup error).
    #[must_use]
    pub fn all_control(workers: usize) -> Vec<Peer> {
        let mut peers = Peer::all(workers);
        peers.pop();
        peers.push(Peer::Respool(respool_pool(workers, big_capacity())));
        peers
    }

    /// [`Peer::all`] with its last pool replaced by a respool pool without
    /// requirements but with an observer that counts every event (what
    /// the observer seam costs a task: compare with `respool execute`).
    ///
    /// # Panics
    ///
    /// If a pool cannot be built (a benchmark setup error).
    #[must_use]
    pub fn all_observed(workers: usize) -> Vec<Peer> {
        let mut peers = Peer::all(workers);
        peers.pop();
        let pool = Pool::builder()
            .workers(workers)
            .capacity(big_capacity())
            .headroom(Resources::NONE)
            .observer(EventCount::default())
            .build()
            .expect("respool pool");
        peers.push(Peer::Respool(pool));
        peers
    }

    /// Runs `f` on the pool, without waiting.
    #[inline]
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        match self {
            Peer::Rayon(p) => p.spawn(f),
            Peer::ThreadPool(p) => p.execute(f),
            Peer::Crossbeam(p) => p.execute(f),
            Peer::Tokio(rt) => drop(rt.spawn_blocking(f)),
            Peer::Respool(p) => p.execute(f).expect("respool accepts"),
            Peer::Respool3(p, r) => p
                .task()
                .requirements(*r)
                .execute(move |_| f())
                .expect("respool admits"),
        }
    }

    /// Submits `tasks` tasks of `work` each and waits until all finished.
    pub fn batch(&self, tasks: usize, work: Duration) {
        let latch = Latch::new(tasks);
        for _ in 0..tasks {
            let l = latch.clone();
            self.spawn(move || {
                spin_for(work);
                l.done();
            });
        }
        latch.wait();
    }

    /// Runs one task that returns a value and waits for the value.
    pub fn round_trip(&self) -> u64 {
        let f = || std::hint::black_box(42u64);
        match self {
            Peer::Rayon(p) => p.install(f),
            Peer::ThreadPool(p) => {
                let (tx, rx) = std::sync::mpsc::channel();
                p.execute(move || {
                    let _ = tx.send(f());
                });
                rx.recv().unwrap_or(0)
            }
            Peer::Crossbeam(p) => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                p.execute(move || {
                    let _ = tx.send(f());
                });
                rx.recv().unwrap_or(0)
            }
            Peer::Tokio(rt) => rt.block_on(rt.spawn_blocking(f)).unwrap_or(0),
            Peer::Respool(p) => p.submit(f).ok().and_then(|h| h.join().ok()).unwrap_or(0),
            Peer::Respool3(p, r) => p
                .task()
                .requirements(*r)
                .spawn(move |_| f())
                .ok()
                .and_then(|h| h.join().ok())
                .unwrap_or(0),
        }
    }
}

/// 2^50 of CPU, memory and IOPS: nothing the benchmarks submit runs out.
#[must_use]
pub fn big_capacity() -> Resources {
    let big = 1u64 << 50;
    Resources::new()
        .with_saturating(Dim::Cpu, big)
        .with_saturating(Dim::Memory, big)
        .with_saturating(Dim::Iops, big)
}

/// An observer that counts events: the least an observer can do.
#[derive(Default)]
struct EventCount(std::sync::atomic::AtomicU64);

impl respool::observe::Observer for EventCount {
    fn on_event(&self, _: &respool::observe::Event<'_>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A respool pool with `workers` workers and `capacity`, no headroom.
fn respool_pool(workers: usize, capacity: Resources) -> Pool {
    Pool::builder()
        .workers(workers)
        .capacity(capacity)
        .headroom(Resources::NONE)
        .build()
        .expect("respool pool")
}
