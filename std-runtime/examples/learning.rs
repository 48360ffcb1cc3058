//! Learning what tasks need: tasks that declare nothing but a class and a
//! size hint start on the fallback (256 MiB by default), are measured, and
//! soon reserve what the class really uses. A `FileStore` keeps what was
//! learned, so a new pool (the next run of your program) starts warm.
//! `report_oom` teaches a class from an out-of-memory kill.
//!
//! ```text
//! cargo run -p respool --example learning
//! ```
//!
//! Exits with an error if the pool did not learn (the last reservations
//! must be below the fallback and cover what the tasks used) or the store
//! did not carry it over.

use std::sync::mpsc;

use respool::alloc::TrackingAllocator;
use respool::learn::LearningConfig;
use respool::measure::TaskReport;
use respool::store::FileStore;
use respool::units::format_bytes;
use respool::{Dim, Pool};

// Memory is learned from the heap, which the tracking allocator measures.
#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

const MIB: u64 = 1 << 20;

/// The work: a buffer as large as the input (`size` bytes).
fn parse(size: u64) -> usize {
    let buf = vec![1u8; usize::try_from(size).unwrap_or(0)];
    buf.len()
}

/// A pool that sends each task's report on `tx` and keeps profiles in `dir`.
fn pool(dir: &std::path::Path, tx: mpsc::Sender<TaskReport>) -> Result<Pool, respool::BuildError> {
    Pool::builder()
        .workers(2)
        .memory("1GiB")
        .learning(LearningConfig::default())
        .profile_store(FileStore::in_dir(dir))
        .on_task_end(move |r: &TaskReport| drop(tx.send(r.clone())))
        .build()
}

/// Runs one `parse` task of `mib` MiB; returns (reserved, heap peak).
fn run(
    pool: &Pool,
    reports: &mpsc::Receiver<TaskReport>,
    mib: u64,
) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let size = mib * MIB;
    let h = pool
        .task()
        .class("parse")
        .size_hint(size)
        .spawn(move |_| parse(size))?;
    h.join()?;
    let r = reports.recv()?;
    let reserved = r.requested.get(Dim::Memory).unwrap_or(0);
    let peak = r.usage.heap.map_or(0, |h| h.peak);
    Ok((reserved, peak))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("respool-learning-example-{}", std::process::id()));
    // The store creates the directory on its first save if it is missing.
    let fallback = LearningConfig::default()
        .fallback
        .get(Dim::Memory)
        .unwrap_or(0);

    let (tx, reports) = mpsc::channel();
    let first = pool(&dir, tx)?;
    let sizes = [8, 16, 12, 20, 10, 24, 14, 18, 9, 22, 11, 15];
    let mut last = (0, 0);
    for (i, mib) in sizes.into_iter().enumerate() {
        let (reserved, peak) = run(&first, &reports, mib)?;
        println!(
            "run {:2}: size {mib:2} MiB, reserved {:>9}, used {:>9}",
            i + 1,
            format_bytes(reserved),
            format_bytes(peak)
        );
        if i == 0 {
            assert_eq!(reserved, fallback, "the first run has only the fallback");
        }
        last = (reserved, peak);
    }
    assert!(last.0 < fallback, "learned: below the fallback");
    assert!(last.0 >= last.1, "learned: covers what the task used");
    // Save now, to see an error (shutting down saves too, but can only log one).
    assert!(first.save_profiles()?, "the pool has a store");
    first.shutdown();
    let stored = FileStore::in_dir(&dir);
    println!("profiles saved to {}", stored.path().display());

    // A new pool on the same store starts from what was learned.
    let (tx, reports) = mpsc::channel();
    let second = pool(&dir, tx)?;
    let (reserved, peak) = run(&second, &reports, 16)?;
    println!(
        "new pool, first task (16 MiB): reserved {}, used {}",
        format_bytes(reserved),
        format_bytes(peak)
    );
    assert!(
        reserved < fallback && reserved >= peak,
        "warm start from the store"
    );

    // Work done outside the pool's heap (a child process, say) can be
    // learned from an out-of-memory kill: report it, and the class reserves
    // more (here max(300 MiB * 1.2, 300 MiB + 100 MiB)).
    let floor = second.report_oom("transcode", 300 * MIB);
    let h = second.task().class("transcode").spawn(|_| ())?;
    h.join()?;
    let reserved = reports.recv()?.requested.get(Dim::Memory).unwrap_or(0);
    println!(
        "report_oom(\"transcode\", 300MiB): next task reserves {}",
        format_bytes(reserved)
    );
    assert_eq!((floor, reserved), (400 * MIB, 400 * MIB));
    second.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
