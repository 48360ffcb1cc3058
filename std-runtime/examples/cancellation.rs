//! Stopping tasks: cancelling one that has not started (it never runs),
//! asking a running one to stop (it polls `TaskContext::is_cancelled`), and
//! timeouts (the handle resolves with `TimedOut`; the closure is not killed).
//!
//! ```text
//! cargo run -p respool --example cancellation
//! ```
//!
//! Exits with an error if an outcome differs from what it prints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use respool::{Pool, TaskError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(1).build()?;

    // One worker, busy until the task sees its cancel request.
    let (started_tx, started) = mpsc::channel();
    let running = pool.task().spawn(move |ctx| {
        started_tx.send(()).unwrap();
        while !ctx.is_cancelled() {
            std::thread::yield_now();
        }
        "stopped when asked"
    })?;
    started.recv()?;

    // Queued behind it: cancelling a task that has not started stops it for
    // good. A Canceller can do it from any thread.
    let ran = Arc::new(AtomicBool::new(false));
    let ran_c = Arc::clone(&ran);
    let queued = pool.submit(move || ran_c.store(true, Ordering::SeqCst))?;
    let canceller = queued.canceller();
    let from_elsewhere = std::thread::spawn(move || canceller.cancel());
    assert!(from_elsewhere.join().unwrap(), "it had not started");
    assert_eq!(queued.join(), Err(TaskError::Cancelled));
    println!("queued task cancelled before it started: Cancelled");

    // The running task only gets the request (`cancel` says `false`: it had
    // started) and returns when it notices.
    assert!(!running.cancel());
    println!("running task: {}", running.join()?);

    // A timeout: the handle resolves with TimedOut when it fires. The
    // closure is not stopped (a thread cannot be killed); here it waits for
    // a message the example sends once the timeout was seen.
    let (finish, wait) = mpsc::channel::<()>();
    let slow = pool
        .task()
        .timeout(Duration::from_millis(20))
        .spawn(move |_| {
            let _ = wait.recv();
        })?;
    assert_eq!(slow.join(), Err(TaskError::TimedOut));
    println!("20ms timeout: TimedOut (the closure went on until told to stop)");
    drop(finish);

    pool.shutdown();
    assert!(!ran.load(Ordering::SeqCst), "the cancelled task never ran");
    assert_eq!(pool.snapshot().timed_out, 1);
    Ok(())
}
