//! The first things a user does with respool: run closures on a pool, get
//! their results back, declare what a task needs with unit strings, and see
//! a request that can never fit refused at once, with the reason.
//!
//! ```text
//! cargo run -p respool --example basics
//! ```
//!
//! Exits with an error (status 1) if any of what it prints did not hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use respool::units::{format_bytes, parse_bytes};
use respool::{Dim, Pool, Resources, SubmitError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A pool of 4 workers with a budget of 1 GiB and 4 cores.
    let pool = Pool::builder().workers(4).memory("1GiB").cpu("4").build()?;

    // `execute`: fire and forget, the cheapest way in (no admission).
    let sum = Arc::new(AtomicU64::new(0));
    for i in 1..=100 {
        let sum = Arc::clone(&sum);
        pool.execute(move || {
            sum.fetch_add(i, Ordering::Relaxed);
        })?;
    }

    // `submit`: a JoinHandle for the closure's result.
    let factorial = pool.submit(|| (1..=10u64).product::<u64>())?;
    assert_eq!(factorial.join()?, 3_628_800);
    println!("submit: 10! = 3628800");

    // `task()`: declared requirements, with units ("256MiB", "500m" = half a core).
    let len = pool
        .task()
        .memory("256MiB")
        .cpu("500m")
        .spawn(|_ctx| vec![0u8; 1 << 20].len())?;
    assert_eq!(len.join()?, 1 << 20);
    println!("task().memory(\"256MiB\").cpu(\"500m\"): ran, returned 1 MiB");

    // The same with a `Resources` built in code.
    let needs = Resources::new()
        .with(Dim::Memory, parse_bytes("128MiB")?)?
        .with(Dim::Cpu, 250)?;
    let h = pool.task().requirements(needs).spawn(|_ctx| "done")?;
    assert_eq!(h.join()?, "done");
    println!("task().requirements({needs}): ran");

    // More than the pool has: refused at submission, with the dimension and
    // the amount it is short by.
    match pool.task().memory("3GiB").spawn(|_ctx| ()) {
        Err(SubmitError::NeverFits(s)) => {
            assert_eq!((s.dim, s.by), (Dim::Memory, 2 << 30));
            println!(
                "3GiB on a 1GiB pool: refused, {} short by {}",
                s.dim,
                format_bytes(s.by)
            );
        }
        other => return Err(format!("expected NeverFits, got {other:?}").into()),
    }
    // A unit that does not parse is an error too, not a panic.
    let bad = pool.task().memory("lots").spawn(|_ctx| ());
    assert!(matches!(bad, Err(SubmitError::InvalidRequirement(_))));
    println!("memory(\"lots\"): {}", bad.unwrap_err());

    // `shutdown` runs everything accepted, then the counters are exact.
    pool.shutdown();
    assert_eq!(sum.load(Ordering::Relaxed), 5050);
    let snap = pool.snapshot();
    println!(
        "after shutdown: sum of 1..=100 = 5050, {} tasks completed",
        snap.completed
    );
    assert_eq!(snap.completed, 103);
    Ok(())
}
