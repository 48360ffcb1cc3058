//! The tracking allocator: installed as the global allocator, it lets the
//! pool measure each task's heap, and grow the memory reservation of a task
//! that uses more than it declared (so that accounting follows reality and
//! admission holds back others meanwhile).
//!
//! ```text
//! cargo run -p respool --example tracking_allocator
//! ```
//!
//! Exits with an error if the measurement or the growth is not what it prints.

use std::sync::mpsc;

use respool::alloc::{self, TrackingAllocator};
use respool::measure::TaskReport;
use respool::units::format_bytes;
use respool::{Dim, Pool};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

const MIB: u64 = 1 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    assert!(alloc::is_installed());
    let (tx, reports) = mpsc::channel::<TaskReport>();
    let pool = Pool::builder()
        .workers(1)
        .memory("1GiB")
        // Measure every task, not only classified ones.
        .measure_all(true)
        .on_task_end(move |r: &TaskReport| drop(tx.send(r.clone())))
        .build()?;

    // Declares 4 MiB, touches 32 MiB.
    let h = pool.task().memory("4MiB").spawn(|_| {
        let v = vec![1u8; 32 << 20];
        v.iter().map(|&b| u64::from(b)).sum::<u64>()
    })?;
    assert_eq!(h.join()?, 32 * MIB);
    let r = reports.recv()?;
    let peak = r.usage.heap.map_or(0, |h| h.peak);
    let grown = r.grown.get(Dim::Memory).unwrap_or(0);
    println!(
        "declared {}, heap peak {}, reservation grown by {}",
        format_bytes(r.requested.get(Dim::Memory).unwrap_or(0)),
        format_bytes(peak),
        format_bytes(grown)
    );
    assert!(peak >= 32 * MIB, "the heap peak counts the 32 MiB vector");
    assert!(
        grown >= 28 * MIB,
        "the reservation grew to cover what was used"
    );

    // The reservation went back with the task.
    pool.shutdown();
    assert_eq!(pool.snapshot().reserved.get(Dim::Memory), Some(0));
    println!("after the task: 0 B reserved");
    Ok(())
}
