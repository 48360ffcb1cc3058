//! Two ways to stop a pool: `shutdown` runs every accepted task first;
//! `shutdown_now` lets running tasks finish and hands back the tasks that
//! had not started (`Unstarted`), to run here, keep or drop.
//!
//! ```text
//! cargo run -p respool --example shutdown
//! ```
//!
//! Exits with an error if an outcome differs from what it prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use respool::{Dim, Pool, Resources, SubmitError, TaskError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // shutdown: everything accepted runs, then submissions are refused.
    let pool = Pool::builder().workers(2).build()?;
    let done = Arc::new(AtomicU32::new(0));
    for _ in 0..50 {
        let done = Arc::clone(&done);
        pool.execute(move || {
            done.fetch_add(1, Ordering::SeqCst);
        })?;
    }
    pool.shutdown();
    assert_eq!(done.load(Ordering::SeqCst), 50);
    assert_eq!(pool.execute(|| ()), Err(SubmitError::ShutDown));
    println!("shutdown: all 50 accepted tasks ran; a new one is refused (ShutDown)");

    // shutdown_now: all the memory is used outside the pool, so these tasks
    // wait; shutdown_now hands them back instead of running them.
    let pool = Pool::builder().workers(1).memory("1GiB").build()?;
    pool.set_external_usage(&Resources::new().with(Dim::Memory, 1 << 30)?)?;
    let resize = pool
        .task()
        .class("resize")
        .memory("256MiB")
        .spawn(|_| "resized")?;
    let encode = pool
        .task()
        .class("encode")
        .memory("256MiB")
        .spawn(|_| "encoded")?;
    let mut back = pool.shutdown_now();
    let classes: Vec<_> = back
        .iter()
        .map(|u| u.class().unwrap_or("-").to_owned())
        .collect();
    println!("shutdown_now handed back {} tasks: {classes:?}", back.len());
    assert_eq!(back.len(), 2);
    // Run one here, on this thread; dropping the other resolves its handle.
    let i = back
        .iter()
        .position(|u| u.class() == Some("resize"))
        .ok_or("resize was not handed back")?;
    back.swap_remove(i).run();
    drop(back);
    assert_eq!(resize.join()?, "resized");
    assert_eq!(encode.join(), Err(TaskError::ShutDown));
    println!("ran \"resize\" here; \"encode\" was dropped: its handle says ShutDown");
    Ok(())
}
