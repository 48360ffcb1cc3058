//! A mixed workload traced into `target/respool-trace.json`, to open in
//! <https://ui.perfetto.dev> ("Open trace file") or `chrome://tracing`
//! ("Load").
//!
//! Four workers under a 256 MiB budget: sorts of 16 to 96 MiB (declared,
//! so the large ones wait for memory), small parse tasks, plain tasks, a
//! task that panics and one that can never fit (refused). With respool's
//! tracking allocator installed, every classed task's heap is measured, so
//! the trace shows reserved against used memory.
//!
//! ```text
//! cargo run --release -p respool-observe --example trace
//! ```

use std::path::Path;

use respool::alloc::TrackingAllocator;
use respool::{Dim, Pool, Resources};
use respool_observe::trace::{TraceConfig, TraceRecorder};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

const MIB: u64 = 1 << 20;

fn sort_job(mib: u64, seed: u64) -> u64 {
    let n = usize::try_from(mib * MIB / 8).unwrap_or(0);
    let mut x = seed | 1;
    let mut v: Vec<u64> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    v.sort_unstable();
    v[n / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = Path::new("target").join("respool-trace.json");
    std::fs::create_dir_all("target")?;
    let recorder = TraceRecorder::new(
        TraceConfig::new()
            .capacity(1 << 15)
            .global_heap(true)
            .process_name("respool example: mixed workload"),
    );
    let pool = Pool::builder()
        .workers(4)
        .capacity(Resources::NONE.with_saturating(Dim::Memory, 256 * MIB))
        .headroom(Resources::NONE)
        .observer(recorder.clone())
        .build()?;

    let mut sorts = Vec::new();
    for i in 0..24u64 {
        let mib = 16 + (i * 37 % 6) * 16; // 16..96 MiB
        // A sort's Vec<u64> of `mib` is the bulk of its peak.
        let h = pool
            .task()
            .class("sort")
            .memory(&format!("{}MiB", mib + 8))
            .spawn(move |_| sort_job(mib, i))?;
        sorts.push(h);
        for j in 0..4u64 {
            let parse = pool
                .task()
                .class("parse")
                .memory("4MiB")
                .spawn(move |_| (0..50_000u64).map(|k| k ^ j).sum::<u64>())?;
            drop(parse);
        }
        pool.execute(move || {
            std::hint::black_box((0..10_000u64).product::<u64>());
        })?;
    }
    let boom = pool
        .task()
        .class("boom")
        .spawn(|_| -> u64 { panic!("a task that panics, on purpose") })?;
    let refused = pool.task().class("huge").memory("1GiB").spawn(|_| ());
    println!(
        "refused at once: {}",
        refused.err().map_or_else(String::new, |e| e.to_string())
    );
    for h in sorts {
        h.join()?;
    }
    println!("panicked, as planned: {}", boom.join().is_err());
    pool.shutdown();

    recorder.save(&path)?;
    println!(
        "{} events kept, {} dropped ({} recorded, ring of {})",
        recorder.len(),
        recorder.dropped(),
        recorder.recorded(),
        recorder.capacity()
    );
    println!("trace written to {}", path.display());
    println!(
        "open it at https://ui.perfetto.dev (\"Open trace file\") or in chrome://tracing (\"Load\")"
    );
    Ok(())
}
