//! An observer that follows every task: JSON lines of every event on
//! stderr (with `--events`), and at the end, per class, how many tasks
//! waited for memory, how long they waited and how long they ran.
//!
//! Sixteen sorts of 8 to 64 MiB each, declared, under a 160 MiB budget on
//! four workers: the large ones wait until enough memory is free.
//!
//! ```text
//! cargo run --release -p respool --example observer [-- --events]
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use respool::observe::{Event, EventKind, Observer, TaskId};
use respool::{Pool, Resources};

/// What the observer keeps of one task.
#[derive(Default)]
struct Seen {
    class: String,
    submitted: Duration,
    started: Option<Duration>,
    ended: Option<Duration>,
    deferred: bool,
    how: &'static str,
}

struct Timeline {
    tasks: Mutex<BTreeMap<TaskId, Seen>>,
    /// Every event as a JSON line, when asked for.
    events: Option<Mutex<std::io::Stderr>>,
}

impl Observer for Timeline {
    fn on_event(&self, e: &Event<'_>) {
        if let Some(out) = &self.events {
            // One short write per event; an observer runs on the task's path.
            let task = e.task.map_or(0, TaskId::get);
            let line = format!(
                "{{\"at_us\":{},\"task\":{task},\"class\":{:?},\"event\":\"{}\"}}\n",
                e.at.as_micros(),
                e.class.unwrap_or(""),
                e.kind.name()
            );
            let _ = out.lock().unwrap().write_all(line.as_bytes());
        }
        let Some(id) = e.task else { return };
        let mut tasks = self.tasks.lock().unwrap();
        let seen = tasks.entry(id).or_default();
        match e.kind {
            EventKind::Submitted { .. } => {
                seen.submitted = e.at;
                seen.class = e.class.unwrap_or("-").to_owned();
            }
            EventKind::Deferred { .. } => seen.deferred = true,
            EventKind::Started { .. } => seen.started = Some(e.at),
            k if k.is_terminal() => {
                seen.ended = Some(e.at);
                seen.how = k.name();
            }
            _ => {}
        }
    }
}

fn sort_job(mib: usize, seed: u64) -> u64 {
    let n = mib << 20 >> 3;
    let mut x = seed | 1;
    let mut v: Vec<u64> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    v.sort_unstable();
    v[n / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events = std::env::args().any(|a| a == "--events");
    let timeline = Arc::new(Timeline {
        tasks: Mutex::new(BTreeMap::new()),
        events: events.then(|| Mutex::new(std::io::stderr())),
    });
    let pool = Pool::builder()
        .workers(4)
        .memory("160MiB")
        .headroom(Resources::NONE)
        .observer(timeline.clone())
        .build()?;
    let mut handles = Vec::new();
    for i in 0..16u64 {
        let mib = [8usize, 16, 32, 64][(i % 4) as usize];
        let class = format!("sort-{mib}MiB");
        handles.push(
            pool.task()
                .class(class)
                // The vector, and sort_unstable needs no more.
                .memory(&format!("{mib}MiB"))
                .spawn(move |_| sort_job(mib, i))?,
        );
    }
    for h in handles {
        h.join()?;
    }
    pool.shutdown();

    let tasks = timeline.tasks.lock().unwrap();
    let mut by_class: BTreeMap<&str, (usize, usize, Duration, Duration, Vec<&str>)> =
        BTreeMap::new();
    for seen in tasks.values() {
        let row = by_class.entry(&seen.class).or_default();
        row.0 += 1;
        row.1 += usize::from(seen.deferred);
        if let (Some(s), Some(e)) = (seen.started, seen.ended) {
            row.2 += s.saturating_sub(seen.submitted);
            row.3 += e.saturating_sub(s);
        }
        if !row.4.contains(&seen.how) {
            row.4.push(seen.how);
        }
    }
    println!(
        "{:<12} {:>5} {:>8} {:>14} {:>12}  ended",
        "class", "tasks", "waited", "mean wait ms", "mean run ms"
    );
    for (class, (n, waited, wait, run, how)) in &by_class {
        let per = |d: &Duration| d.as_secs_f64() * 1000.0 / *n as f64;
        println!(
            "{class:<12} {n:>5} {waited:>8} {:>14.1} {:>12.1}  {}",
            per(wait),
            per(run),
            how.join(",")
        );
    }
    Ok(())
}
