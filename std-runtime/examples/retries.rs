//! Retries with back-off: `spawn_retrying` runs a fallible closure again
//! after each error (or panic), waiting as the `Backoff` says, until it
//! succeeds or the retries run out (`TaskError::Failed`).
//!
//! ```text
//! cargo run -p respool --example retries
//! ```
//!
//! Exits with an error if an outcome differs from what it prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use respool::{Backoff, Pool, TaskError};

/// A flaky call: fails until its third attempt.
#[derive(Debug)]
struct Flaky(u32);

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt {} failed", self.0)
    }
}

impl std::error::Error for Flaky {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The delays the back-offs give before retry 1, 2, 3.
    let exp = Backoff::Exponential {
        base: Duration::from_millis(1),
        max: Duration::from_millis(4),
    };
    let delays: Vec<Duration> = (0..3).map(|a| exp.delay(a)).collect();
    println!("exponential back-off (1ms, capped at 4ms): {delays:?}");
    assert_eq!(delays, [1, 2, 4].map(Duration::from_millis));
    assert_eq!(
        Backoff::Fixed(Duration::from_millis(3)).delay(5),
        Duration::from_millis(3)
    );

    let pool = Pool::builder().workers(2).build()?;

    // Succeeds on its third attempt (attempts count from 0).
    let calls = Arc::new(AtomicU32::new(0));
    let calls_c = Arc::clone(&calls);
    let h = pool.task().retries(3, exp).spawn_retrying(move |ctx| {
        calls_c.fetch_add(1, Ordering::SeqCst);
        if ctx.attempt() < 2 {
            Err(Flaky(ctx.attempt()))
        } else {
            Ok(ctx.attempt())
        }
    })?;
    assert_eq!(h.join()?, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    println!("flaky call: succeeded on attempt 2, after 2 retries");

    // Always fails: one attempt and two retries, then Failed with the last error.
    let h = pool
        .task()
        .retries(2, Backoff::Fixed(Duration::from_millis(1)))
        .spawn_retrying(|ctx| Err::<(), _>(Flaky(ctx.attempt())))?;
    match h.join() {
        Err(TaskError::Failed { attempts, error }) => {
            assert_eq!(attempts, 3);
            assert_eq!(error.to_string(), "attempt 2 failed");
            println!("always failing: Failed after {attempts} attempts ({error})");
        }
        other => return Err(format!("expected Failed, got {other:?}").into()),
    }
    pool.shutdown();
    Ok(())
}
