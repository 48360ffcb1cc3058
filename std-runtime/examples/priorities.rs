//! Who goes first when tasks wait: priorities, critical tasks (urgency and
//! the critical reserve) and deadlines.
//!
//! ```text
//! cargo run -p respool --example priorities
//! ```
//!
//! A pool of 100 MiB, 20 MiB of which only critical tasks may use. A holder
//! reserves 60 MiB until the example lets it go; meanwhile tasks of 60 MiB
//! queue up with different priorities, one critical, one with a deadline
//! that passes while it waits. When the holder is done they run one at a time
//! (two never fit together), in score order: the critical one first, then
//! by priority. Exits with an error if the order or an outcome differs.

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use respool::{Dim, Pool, Resources, TaskError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder()
        .workers(2)
        .memory("100MiB")
        .critical_reserve(Resources::new().with(Dim::Memory, 20 << 20)?)
        .build()?;
    let (release, hold) = mpsc::channel::<()>();
    let holder = pool.task().memory("60MiB").spawn(move |_| {
        let _ = hold.recv();
    })?;

    // Normal tasks see 80 MiB: 90 MiB can never fit for them, but a critical
    // task may use the reserve too.
    assert!(pool.task().memory("90MiB").spawn(|_| ()).is_err());
    println!("90MiB, normal: refused (20 of the 100MiB are kept for critical tasks)");

    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for (name, priority) in [("low", 0), ("high", 10), ("middle", 5)] {
        let order = Arc::clone(&order);
        handles.push(
            pool.task()
                .memory("60MiB")
                .priority(priority)
                .spawn(move |_| {
                    order.lock().unwrap().push(name);
                })?,
        );
    }
    let order_c = Arc::clone(&order);
    handles.push(pool.task().memory("60MiB").critical().spawn(move |_| {
        order_c.lock().unwrap().push("critical");
    })?);

    // A deadline that passes while the task waits: it never starts, and its
    // handle says why (the pool's timer refuses it at the deadline).
    let late = pool
        .task()
        .memory("60MiB")
        .priority(100)
        .deadline(Instant::now() + Duration::from_millis(20))
        .spawn(|_| ())?;
    assert_eq!(late.join(), Err(TaskError::DeadlineMissed));
    println!("deadline in 20ms, still waiting then: DeadlineMissed");

    drop(release);
    holder.join()?;
    for h in handles {
        h.join()?;
    }
    let order = order.lock().unwrap().clone();
    println!("started in this order: {order:?}");
    assert_eq!(order, ["critical", "high", "middle", "low"]);
    pool.shutdown();
    Ok(())
}
