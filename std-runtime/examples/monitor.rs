//! The pool's monitor: it samples memory in use and lowers the effective
//! capacity by what the pool's tasks did not reserve. Here the readings
//! come from a `SystemMonitor` of our own (as from a node agent); without
//! `system_monitor`, the pool reads procfs and its cgroups on Linux.
//!
//! ```text
//! cargo run -p respool --example monitor
//! ```
//!
//! The example waits for the agent's readings (the monitor thread applies
//! a sample before it takes the next), not for a timer. Exits with
//! an error if the effective capacity is not what the readings imply.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use respool::sys::{MemoryReading, MonitorConfig, Resource, Snapshot, SysError, SystemMonitor};
use respool::units::format_bytes;
use respool::{Dim, Pool};

const MIB: u64 = 1 << 20;

/// Memory figures from a node agent: 300 MiB of 1 GiB in use. Says on
/// `reads` when it was read.
struct Agent {
    reads: mpsc::Sender<()>,
}

impl SystemMonitor for Agent {
    fn name(&self) -> &'static str {
        "agent"
    }

    fn read(&mut self, r: Resource, now: Instant, s: &mut Snapshot) -> Result<(), SysError> {
        match r {
            Resource::Memory => {
                let _ = self.reads.send(());
                let (total, used) = (1024 * MIB, 300 * MIB);
                s.memory = Some(MemoryReading {
                    at: now,
                    total,
                    available: total - used,
                    used,
                });
                Ok(())
            }
            // Never asked for again.
            _ => Err(SysError::Unsupported {
                what: "this reading",
                why: "not from the agent",
            }),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (reads, read) = mpsc::channel();
    let pool = Pool::builder()
        .workers(2)
        .memory("1GiB")
        .system_monitor(Agent { reads })
        .monitor_config(MonitorConfig::default().with_interval(Duration::from_millis(50)))
        .build()?;
    // The monitor thread takes a sample, then hands it to the pool, then
    // sleeps. Readings taken before `build` returned may predate the pool's
    // subscription: forget them. Of the next three, the second sample
    // starts after `build` returned, and the third after the pool applied
    // the second (300 MiB in use, none of it reserved by a task).
    while read.try_recv().is_ok() {}
    for _ in 0..3 {
        read.recv_timeout(Duration::from_secs(10))?;
    }
    let effective = pool
        .snapshot()
        .effective_capacity
        .get(Dim::Memory)
        .unwrap_or(0);
    println!(
        "the agent reports 300MiB in use: effective memory {} of {}",
        format_bytes(effective),
        format_bytes(pool.capacity().get(Dim::Memory).unwrap_or(0))
    );
    assert_eq!(effective, 724 * MIB);
    // So a task of 800 MiB waits (it fits the budget, not what is free).
    let h = pool.task().memory("800MiB").spawn(|_| ())?;
    assert_eq!(pool.snapshot().waiting, 1);
    println!("an 800MiB task waits while the agent reports 300MiB in use");
    h.cancel();
    pool.shutdown();
    Ok(())
}
