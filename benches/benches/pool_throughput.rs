//! Criterion view of the same comparison as `src/bin/pool_ratios.rs`: each
//! peer submits a batch of 10,000 tasks (empty, 1 us, 10 us) and waits for
//! all of them; and a single-task round trip. The ratios written to
//! BENCHMARKS.md come from `pool_ratios`, which interleaves the peers round
//! by round; this bench gives criterion's per-peer statistics.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use respool_benches::peers::{NAMES, Peer};

const TASKS: usize = 10_000;

fn bench(c: &mut Criterion) {
    let peers = Peer::all(2);
    for (label, work) in [
        ("empty", Duration::ZERO),
        ("1us", Duration::from_micros(1)),
        ("10us", Duration::from_micros(10)),
    ] {
        let mut g = c.benchmark_group(format!("submit_to_finish_{label}"));
        g.throughput(Throughput::Elements(TASKS as u64));
        g.sample_size(10);
        for (peer, name) in peers.iter().zip(NAMES) {
            g.bench_function(name, |b| b.iter(|| peer.batch(TASKS, work)));
        }
        g.finish();
    }
    let mut g = c.benchmark_group("round_trip");
    for (peer, name) in peers.iter().zip(NAMES) {
        g.bench_function(name, |b| b.iter(|| peer.round_trip()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
