//! Scoped tasks: `Pool::scope` runs closures that borrow from the caller's
//! stack (no `Arc`, no `'static`), and returns when all of them are done.
//! `Scope::spawn_with` does the same for a task with requirements.
//!
//! ```text
//! cargo run -p respool --example scope
//! ```
//!
//! Exits with an error if a result differs from what it prints.

use respool::{Dim, Pool, Resources};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(4).memory("512MiB").build()?;

    // Borrowed input, borrowed output: each task sums one chunk into its own slot.
    let numbers: Vec<u64> = (1..=1_000).collect();
    let mut sums = vec![0u64; 4];
    pool.scope(|s| {
        for (chunk, sum) in numbers.chunks(250).zip(sums.iter_mut()) {
            s.spawn(move || *sum = chunk.iter().sum());
        }
    });
    println!("four scoped tasks summed borrowed chunks: {sums:?}");
    assert_eq!(sums.iter().sum::<u64>(), 500_500);

    // With requirements: admitted like any other task; an impossible one is
    // refused and its closure never runs.
    let mut squares = vec![0u64; 8];
    let refused = pool.scope(|s| -> Result<_, Box<dyn std::error::Error>> {
        for (i, slot) in squares.iter_mut().enumerate() {
            let needs = Resources::new().with(Dim::Memory, 64 << 20)?;
            s.spawn_with(needs, move || *slot = (i as u64) * (i as u64))?;
        }
        let too_big = Resources::new().with(Dim::Memory, 1 << 30)?;
        Ok(s.spawn_with(too_big, || unreachable!("refused")).is_err())
    })?;
    println!("eight 64MiB scoped tasks: {squares:?}; a 1GiB one: refused = {refused}");
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49]);
    assert!(refused);
    pool.shutdown();
    Ok(())
}
