//! Metrics of a simulated run and the Markdown report.

use std::fmt::Write as _;

use respool_core::Dim;

use super::engine::Outcome;
use super::trace::{Machine, Millis, Task};

/// Lower bounds on the makespan of a trace on a machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// The dimension with the most work per unit of capacity.
    pub bottleneck: Dim,
    /// Total work in the bottleneck dimension divided by its capacity (ms):
    /// for CPU, what the tasks use (`used_cpu`), not what they ask for.
    pub work: f64,
    /// The longest task (ms).
    pub longest: Millis,
    /// The latest arrival plus duration of any task (ms): no schedule ends
    /// before the last task that arrives has run.
    pub last_end: Millis,
}

impl Bounds {
    /// The bounds of `tasks` on `machine`.
    #[must_use]
    pub fn of(machine: &Machine, tasks: &[Task]) -> Bounds {
        let work = |dim: Dim, amount: fn(&Task) -> u64| {
            tasks
                .iter()
                .map(|t| amount(t) as f64 * t.duration as f64)
                .sum::<f64>()
                / machine.total(dim) as f64
        };
        let (cpu, memory) = (
            work(Dim::Cpu, |t| t.used_cpu),
            work(Dim::Memory, |t| t.memory),
        );
        let (bottleneck, work) = if cpu >= memory {
            (Dim::Cpu, cpu)
        } else {
            (Dim::Memory, memory)
        };
        Bounds {
            bottleneck,
            work,
            longest: tasks.iter().map(|t| t.duration).max().unwrap_or(0),
            last_end: tasks
                .iter()
                .map(|t| t.arrival + t.duration)
                .max()
                .unwrap_or(0),
        }
    }

    /// The largest of the three bounds (ms).
    #[must_use]
    pub fn lower_bound(&self) -> f64 {
        self.work.max(self.longest as f64).max(self.last_end as f64)
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// What ran.
    pub name: String,
    /// Work in the bottleneck dimension over capacity times makespan.
    pub utilisation: f64,
    /// Makespan in seconds.
    pub makespan_s: f64,
    /// Makespan over the lower bound.
    pub vs_lower_bound: f64,
    /// 99th percentile of waiting time (start minus arrival), in seconds.
    pub p99_wait_s: f64,
    /// Makespan over the count-only FIFO baseline's.
    pub vs_fifo: f64,
}

impl Row {
    /// The row of `outcome` for `tasks`, against `bounds` and the baseline's makespan.
    #[must_use]
    pub fn of(
        name: String,
        tasks: &[Task],
        outcome: &Outcome,
        bounds: &Bounds,
        fifo_makespan: Millis,
    ) -> Row {
        let makespan = outcome.makespan(tasks) as f64;
        let mut waits: Vec<Millis> = outcome
            .start
            .iter()
            .zip(tasks)
            .filter_map(|(s, t)| s.map(|s| s - t.arrival))
            .collect();
        Row {
            name,
            utilisation: bounds.work / makespan,
            makespan_s: makespan / 1_000.0,
            vs_lower_bound: makespan / bounds.lower_bound(),
            p99_wait_s: percentile(&mut waits, 99) as f64 / 1_000.0,
            vs_fifo: makespan / fifo_makespan as f64,
        }
    }
}

/// The `p`th percentile (nearest rank) of `values`; zero when empty.
#[must_use]
pub fn percentile(values: &mut [Millis], p: usize) -> Millis {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank - 1]
}

/// The report of one trace.
#[derive(Clone, Debug)]
pub struct TraceReport {
    /// The trace's name.
    pub name: &'static str,
    /// Where its shape comes from.
    pub about: &'static str,
    /// Number of tasks.
    pub tasks: usize,
    /// Its lower bounds.
    pub bounds: Bounds,
    /// Workers of the (memory-safe) count-only baseline.
    pub fifo_workers: usize,
    /// One row per scheduler; the baselines come last.
    pub rows: Vec<Row>,
}

/// Writes the reports as Markdown.
#[must_use]
pub fn markdown(reports: &[TraceReport], header: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{header}");
    for r in reports {
        let b = &r.bounds;
        let _ = writeln!(
            s,
            "\n### {} ({} tasks)\n\n{}. Lower bound {:.1} s = max(work {:.1} s in {}, \
             longest task {:.1} s, last arrival + duration {:.1} s). Memory-safe count-only FIFO: \
             {} workers.\n",
            r.name,
            r.tasks,
            r.about,
            b.lower_bound() / 1_000.0,
            b.work / 1_000.0,
            b.bottleneck,
            b.longest as f64 / 1_000.0,
            b.last_end as f64 / 1_000.0,
            r.fifo_workers,
        );
        let _ = writeln!(
            s,
            "| scheduler | {} utilisation | makespan (s) | / lower bound | p99 wait (s) | / count-only FIFO |",
            b.bottleneck
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for row in &r.rows {
            let _ = writeln!(
                s,
                "| {} | {:.1}% | {:.1} | {:.3} | {:.1} | {:.3} |",
                row.name,
                row.utilisation * 100.0,
                row.makespan_s,
                row.vs_lower_bound,
                row.p99_wait_s,
                row.vs_fifo
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let mut v: Vec<Millis> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 99), 99);
        assert_eq!(percentile(&mut v, 100), 100);
        assert_eq!(percentile(&mut [7], 99), 7);
        assert_eq!(percentile(&mut [], 99), 0);
        let mut three = [3, 1, 2];
        assert_eq!(percentile(&mut three, 50), 2);
    }

    #[test]
    fn bounds_by_hand() {
        // One domain of cpu 4, memory 10. Work: cpu 1*5 + 1*7 = 12 -> 3;
        // memory 6*5 + 6*7 = 72 -> 7.2. Longest 7, last end 2 + 7 = 9.
        let m = Machine {
            domains: vec![
                respool_core::Resources::NONE
                    .with_saturating(Dim::Cpu, 4)
                    .with_saturating(Dim::Memory, 10),
            ],
        };
        let t = |arrival, duration| Task {
            arrival,
            cpu: 1,
            used_cpu: 1,
            memory: 6,
            duration,
        };
        let b = Bounds::of(&m, &[t(0, 5), t(2, 7)]);
        assert_eq!(b.bottleneck, Dim::Memory);
        assert!((b.work - 7.2).abs() < 1e-9);
        assert_eq!((b.longest, b.last_end), (7, 9));
        assert!((b.lower_bound() - 9.0).abs() < 1e-9);
    }
}
