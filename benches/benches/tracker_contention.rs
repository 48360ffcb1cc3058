//! Two threads reserving and releasing a 3-dimension request on one shared
//! capacity, side by side with a `Mutex`-protected baseline doing the same
//! accounting. Report the ratio, not the absolute times (the machine is shared).
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use respool_core::{Dim, Resources, Tracker};

const THREADS: usize = 2;

fn capacity() -> Resources {
    Resources::new()
        .with_saturating(Dim::Cpu, 1 << 40)
        .with_saturating(Dim::Memory, 1 << 40)
        .with_saturating(Dim::Iops, 1 << 40)
}

fn request() -> Resources {
    Resources::new()
        .with_saturating(Dim::Cpu, 250)
        .with_saturating(Dim::Memory, 1 << 20)
        .with_saturating(Dim::Iops, 10)
}

/// Runs `op` `iters` times on each of `THREADS` threads, started together;
/// returns the wall time of the slowest.
fn contended(iters: u64, op: impl Fn() + Send + Sync + 'static) -> Duration {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (op, barrier) = (op.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("bench thread panicked");
    }
    start.elapsed()
}

/// The baseline: the same check-and-add across three counters under a mutex.
struct MutexTracker {
    used: Mutex<[u64; 3]>,
    cap: [u64; 3],
}

impl MutexTracker {
    fn reserve_release(&self, req: [u64; 3]) {
        {
            let mut used = self.used.lock().expect("poisoned");
            if used
                .iter()
                .zip(req)
                .zip(self.cap)
                .all(|((u, r), c)| u + r <= c)
            {
                for (u, r) in used.iter_mut().zip(req) {
                    *u += r;
                }
            } else {
                return;
            }
        }
        let mut used = self.used.lock().expect("poisoned");
        for (u, r) in used.iter_mut().zip(req) {
            *u -= r;
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tracker_contention_2_threads");
    g.bench_function("respool_tracker", |b| {
        b.iter_custom(|iters| {
            let t = Arc::new(Tracker::new(&capacity()));
            let req = request();
            contended(iters, move || {
                let r = t.try_reserve(black_box(&req));
                drop(black_box(r));
            })
        });
    });
    g.bench_function("mutex_baseline", |b| {
        b.iter_custom(|iters| {
            let t = Arc::new(MutexTracker {
                used: Mutex::new([0; 3]),
                cap: [1 << 40; 3],
            });
            contended(iters, move || {
                t.reserve_release(black_box([250, 1 << 20, 10]))
            })
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
