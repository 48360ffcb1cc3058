//! What each admission policy does when the pool is full: `Reject` refuses
//! at once (`Busy`), `Defer` queues the task until memory comes back,
//! `BlockUntilDeadline` blocks the submitter up to a deadline, and
//! `max_waiting` bounds the wait queue (`QueueFull`).
//!
//! ```text
//! cargo run -p respool --example admission
//! ```
//!
//! Each pool has 100 MiB; a holder task reserves 80 MiB and keeps it until
//! the example lets it go (a channel), so "full" is certain, not timed.
//! Exits with an error if a policy did not behave as printed.

use std::sync::mpsc;

use respool::{Dim, JoinHandle, Policy, Pool, SubmitError};

/// An error of this example.
type Error = Box<dyn std::error::Error>;

/// A pool of 100 MiB under `policy`, and a task holding 80 MiB of it until
/// the returned sender is dropped.
fn full_pool(policy: Policy) -> Result<(Pool, JoinHandle<()>, mpsc::Sender<()>), Error> {
    let pool = Pool::builder()
        .workers(2)
        .memory("100MiB")
        .admission(policy)
        .build()?;
    let (release, hold) = mpsc::channel::<()>();
    let holder = pool.task().memory("80MiB").spawn(move |_| {
        let _ = hold.recv();
    })?;
    Ok((pool, holder, release))
}

fn main() -> Result<(), Error> {
    // Reject: what does not fit now is refused now, with a retry-after hint.
    let (pool, holder, release) = full_pool(Policy::Reject)?;
    match pool.task().memory("40MiB").spawn(|_| ()) {
        Err(SubmitError::Busy {
            shortfall,
            retry_after,
        }) => {
            assert_eq!(shortfall.dim, Dim::Memory);
            println!(
                "Reject: 40MiB while 80 of 100MiB are held -> Busy ({shortfall}, retry after {retry_after:?})"
            );
        }
        other => return Err(format!("Reject: expected Busy, got {other:?}").into()),
    }
    drop(release);
    holder.join()?;
    pool.shutdown();

    // Defer (the default): the task waits, and runs once the holder is done.
    let (pool, holder, release) = full_pool(Policy::Defer)?;
    let waiter = pool
        .task()
        .memory("40MiB")
        .spawn(|_| "ran after the holder")?;
    assert_eq!(pool.snapshot().waiting, 1);
    println!("Defer: 40MiB accepted, waiting (snapshot: 1 waiting)");
    drop(release);
    holder.join()?;
    println!("Defer: {}", waiter.join()?);
    pool.shutdown();

    // BlockUntilDeadline: the submitter itself waits, here at most 50 ms,
    // then gets DeadlineExpired (the holder is still holding).
    let (pool, holder, release) = full_pool(Policy::BlockUntilDeadline {
        max_wait_ns: 50_000_000,
    })?;
    let blocked = pool.task().memory("40MiB").spawn(|_| ());
    assert!(
        matches!(blocked, Err(SubmitError::DeadlineExpired)),
        "{blocked:?}"
    );
    println!("BlockUntilDeadline(50ms): the submitter waited, then DeadlineExpired");
    drop(release);
    holder.join()?;
    pool.shutdown();

    // max_waiting: at most one waiter; the second is refused with QueueFull.
    let pool = Pool::builder()
        .workers(2)
        .memory("100MiB")
        .max_waiting(1)
        .build()?;
    let (release, hold) = mpsc::channel::<()>();
    let holder = pool.task().memory("80MiB").spawn(move |_| {
        let _ = hold.recv();
    })?;
    let first = pool.task().memory("40MiB").spawn(|_| 1)?;
    let second = pool.task().memory("40MiB").spawn(|_| 2);
    assert!(
        matches!(second, Err(SubmitError::QueueFull { .. })),
        "{second:?}"
    );
    println!("max_waiting(1): first waiter queued, second -> QueueFull");
    drop(release);
    holder.join()?;
    assert_eq!(first.join()?, 1);
    pool.shutdown();

    Ok(())
}
