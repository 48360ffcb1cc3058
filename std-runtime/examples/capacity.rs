//! Changing what the pool may use while it runs: `set_capacity` (a new
//! budget) and `set_external_usage` (memory used outside the pool's tasks),
//! seen through `snapshot()`.
//!
//! ```text
//! cargo run -p respool --example capacity
//! ```
//!
//! Exits with an error if an outcome differs from what it prints.

use respool::units::format_bytes;
use respool::{Dim, Pool, PoolSnapshot, Resources, SubmitError};

fn mem(r: &Resources) -> String {
    r.get(Dim::Memory).map_or("-".into(), format_bytes)
}

fn show(when: &str, s: &PoolSnapshot) {
    println!(
        "{when}: capacity {}, effective {}, reserved {}, waiting {}",
        mem(&s.capacity),
        mem(&s.effective_capacity),
        mem(&s.reserved),
        s.waiting
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(2).memory("1GiB").build()?;
    show("start", &pool.snapshot());

    // 768 MiB used outside the pool (another process, say): what is left
    // for tasks is 256 MiB, so a 512 MiB task waits.
    pool.set_external_usage(&Resources::new().with(Dim::Memory, 768 << 20)?)?;
    let task = pool.task().memory("512MiB").spawn(|_| "ran")?;
    let s = pool.snapshot();
    show("external usage 768MiB", &s);
    assert_eq!(s.effective_capacity.get(Dim::Memory), Some(256 << 20));
    assert_eq!(s.waiting, 1);

    // The outside use goes away: the waiting task is admitted and runs.
    // (Only the dimensions set are changed: report 0, not `Resources::NONE`.)
    pool.set_external_usage(&Resources::new().with(Dim::Memory, 0)?)?;
    assert_eq!(task.join()?, "ran");
    show("external usage gone", &pool.snapshot());

    // A smaller budget: what can never fit in it is now refused at once.
    pool.set_capacity(&Resources::new().with(Dim::Memory, 512 << 20)?)?;
    let refused = pool.task().memory("768MiB").spawn(|_| ());
    assert!(
        matches!(refused, Err(SubmitError::NeverFits(_))),
        "{refused:?}"
    );
    let s = pool.snapshot();
    show("capacity 512MiB", &s);
    assert_eq!(s.capacity.get(Dim::Memory), Some(512 << 20));
    println!(
        "a 768MiB task on the 512MiB budget: {}",
        refused.unwrap_err()
    );
    pool.shutdown();
    Ok(())
}
