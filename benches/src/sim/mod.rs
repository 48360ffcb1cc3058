//! A discrete-event placement simulator.
//!
//! It runs synthetic traces ([`trace`]) through the packer of `respool-core`
//! with each fit and score, through its lookahead window and in batches
//! ([`engine`]), and through a count-only FIFO pool (N workers that start
//! tasks in arrival order whenever a worker is free, whatever they need). The
//! baseline gets the packer's memory safety: N is lowered, from a generous
//! maximum, until its run never needs more memory than the machine has, which
//! is how people run count-only pools safely (`-j` chosen so that the build
//! does not swap). The baseline is tuned on the very trace it runs, an
//! advantage no real pool has, and the simulator does not slow down tasks when
//! the baseline oversubscribes the CPU (the packer never does), another one.
//! For reference the report also shows the baseline lowered until it never
//! oversubscribes the CPU either.
//!
//! The learned-CPU traces (issue 15) run the same single-threaded tasks
//! with CPU requests made three ways (a class's mean usage, as respool's
//! soft CPU reserves it; its p95 plus 15%, as respool reserved it before;
//! one core each) through the headline scheduler, against a plain pool of
//! one thread per core; their utilisation counts the CPU the tasks use.
//!
//! [`report`] computes, per trace and scheduler: the utilisation of the
//! bottleneck dimension, the makespan against a lower bound (the largest of
//! total work / capacity in the bottleneck dimension, the longest task, and
//! the latest arrival plus its duration), the 99th percentile of waiting
//! time, and the makespan relative to the baseline. [`run`] does all of it
//! and checks the targets of issue 3 ([`Targets`]).
//!
//! `cargo run --release -p respool-benches --bin simulate` prints the report;
//! `ci/simulate.sh` writes it into BENCHMARKS.md and fails when a target is
//! missed.

pub mod engine;
pub mod report;
pub mod rng;
pub mod trace;

use respool_core::packer::{BatchFit, Fit, Score};

use engine::{Scheduler, run_packer, safe_fifo};
use report::{Bounds, Row, TraceReport};
use trace::Machine;

/// The lookahead width K the simulator uses.
pub const WIDTH: usize = 16;
/// The overtaking bound M the simulator uses.
pub const MAX_SKIPS: u32 = 64;
/// The largest count-only worker count tried.
pub const MAX_WORKERS: usize = 256;

/// The scheduler whose numbers the targets are checked on.
pub const HEADLINE: Scheduler = Scheduler::Window {
    fit: Fit::Best(Score::DotProduct),
    width: WIDTH,
    max_skips: MAX_SKIPS,
};

/// The schedulers compared, with their names in the report.
#[must_use]
pub fn schedulers() -> Vec<(String, Scheduler)> {
    let window = |fit: Fit| Scheduler::Window {
        fit,
        width: WIDTH,
        max_skips: MAX_SKIPS,
    };
    let mut v: Vec<(String, Scheduler)> = [
        Fit::First,
        Fit::Next,
        Fit::Best(Score::DotProduct),
        Fit::Best(Score::L2Residual),
        Fit::Best(Score::MostAllocated),
        Fit::Best(Score::LeastAllocated),
        Fit::Best(Score::BalancedAllocation),
        Fit::Worst(Score::MostAllocated),
    ]
    .into_iter()
    .map(|f| (format!("{f}, window {WIDTH}/{MAX_SKIPS}"), window(f)))
    .collect();
    v.push((
        format!("{}, no window (in order)", Fit::Best(Score::DotProduct)),
        Scheduler::Window {
            fit: Fit::Best(Score::DotProduct),
            width: 1,
            max_skips: 0,
        },
    ));
    for fit in [
        BatchFit::FirstFitDecreasing,
        BatchFit::BestFitDecreasing(Score::DotProduct),
    ] {
        v.push((
            format!("{fit} over the first {WIDTH}, unbounded"),
            Scheduler::Batch { fit, width: WIDTH },
        ));
    }
    v
}

/// The targets of issue 3, for [`HEADLINE`]. CI enforces them on the
/// bimodal trace (where the issue sets them) and reports them for the others.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Targets {
    /// Bottleneck utilisation above this.
    pub min_utilisation: f64,
    /// Makespan over the lower bound at most this.
    pub max_vs_lower_bound: f64,
    /// Makespan over the memory-safe count-only baseline at most this.
    pub max_vs_fifo: f64,
}

/// Utilisation above 85%, within 10% of the lower bound, 20% shorter than FIFO.
pub const TARGETS: Targets = Targets {
    min_utilisation: 0.85,
    max_vs_lower_bound: 1.10,
    max_vs_fifo: 0.80,
};

/// The trace on which CI enforces [`TARGETS`].
pub const ENFORCED_ON: &str = "bimodal";

/// One target checked on one trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Whether the target was met.
    pub met: bool,
    /// Whether CI fails when it is missed (the trace is [`ENFORCED_ON`]).
    pub enforced: bool,
    /// What was measured, against what.
    pub what: String,
}

/// Everything the simulator found.
#[derive(Clone, Debug)]
pub struct Report {
    /// One report per trace.
    pub traces: Vec<TraceReport>,
    /// Every target on every trace, for [`HEADLINE`].
    pub checks: Vec<Check>,
    /// Reservation at admission against at pick-up (issue 14).
    pub reserve_timing: Vec<ReserveTiming>,
}

/// One trace on a pool of `workers`, with reservations taken at admission
/// (as respool does) and when a worker picks the task up.
#[derive(Clone, Debug, PartialEq)]
pub struct ReserveTiming {
    /// The trace.
    pub trace: &'static str,
    /// Workers of the pool.
    pub workers: usize,
    /// Bottleneck utilisation, reserving at admission.
    pub at_admission: f64,
    /// Bottleneck utilisation, reserving at pick-up.
    pub at_pickup: f64,
    /// Makespan at pick-up over makespan at admission.
    pub makespan_ratio: f64,
}

/// The worker counts [`ReserveTiming`] is measured at (the machine has 32
/// cores).
pub const RESERVE_TIMING_WORKERS: [usize; 4] = [8, 16, 32, 64];

/// Runs every trace of `tasks` tasks (seed `seed`) through every scheduler.
#[must_use]
pub fn run(tasks: usize, seed: u64) -> Report {
    let machine = Machine::two_sockets();
    let traces = [
        trace::uniform(&machine, seed, tasks),
        trace::bimodal(&machine, seed.wrapping_add(1), tasks),
        trace::anti_correlated(&machine, seed.wrapping_add(2), tasks),
        trace::heavy_tailed(&machine, seed.wrapping_add(3), tasks),
    ];
    let schedulers = schedulers();
    let mut reports = Vec::new();
    let mut checks = Vec::new();
    let mut reserve_timing = Vec::new();
    for t in &traces {
        let bounds = Bounds::of(&machine, &t.tasks);
        for workers in RESERVE_TIMING_WORKERS {
            let run = |reserve| {
                let out =
                    engine::run_workers(&machine, &t.tasks, WIDTH, MAX_SKIPS, workers, reserve);
                out.makespan(&t.tasks) as f64
            };
            let (a, p) = (
                run(engine::Reserve::AtAdmission),
                run(engine::Reserve::AtPickup),
            );
            reserve_timing.push(ReserveTiming {
                trace: t.name,
                workers,
                at_admission: bounds.work / a,
                at_pickup: bounds.work / p,
                makespan_ratio: p / a,
            });
        }
    }
    for t in &traces {
        let bounds = Bounds::of(&machine, &t.tasks);
        let (workers, fifo) = safe_fifo(&machine, &t.tasks, MAX_WORKERS, false);
        let (cpu_workers, cpu_fifo) = safe_fifo(&machine, &t.tasks, MAX_WORKERS, true);
        let fifo_makespan = fifo.makespan(&t.tasks);
        let mut rows = Vec::new();
        for (name, s) in &schedulers {
            let out = run_packer(&machine, &t.tasks, *s);
            let row = Row::of(name.clone(), &t.tasks, &out, &bounds, fifo_makespan);
            if *s == HEADLINE {
                checks.extend(check(t.name, &row));
            }
            rows.push(row);
        }
        rows.push(Row::of(
            format!("count-only FIFO, {workers} workers (memory-safe: the baseline)"),
            &t.tasks,
            &fifo,
            &bounds,
            fifo_makespan,
        ));
        rows.push(Row::of(
            format!("count-only FIFO, {cpu_workers} workers (memory- and cpu-safe)"),
            &t.tasks,
            &cpu_fifo,
            &bounds,
            fifo_makespan,
        ));
        reports.push(TraceReport {
            name: t.name,
            about: t.about,
            tasks: t.tasks.len(),
            bounds,
            fifo_workers: workers,
            rows,
        });
    }
    // Requests learned rather than declared (issue 15): the same tasks
    // through the headline scheduler with soft, margined and one-core CPU
    // requests; the utilisation counts the CPU they use.
    for request in [
        trace::CpuRequest::Soft,
        trace::CpuRequest::HardWithMargin,
        trace::CpuRequest::OneCore,
    ] {
        let t = trace::learned_cpu(&machine, seed.wrapping_add(4), tasks, request);
        let bounds = Bounds::of(&machine, &t.tasks);
        // The baseline: a plain pool of one thread per core (the count-only
        // FIFO of the other traces would oversubscribe the CPU, which the
        // simulator does not slow down).
        let workers = usize::try_from(machine.total(respool_core::Dim::Cpu) / 1_000).unwrap_or(1);
        let fifo = engine::run_fifo(&t.tasks, workers);
        let fifo_makespan = fifo.makespan(&t.tasks);
        let out = run_packer(&machine, &t.tasks, HEADLINE);
        let name = schedulers
            .iter()
            .find(|(_, s)| *s == HEADLINE)
            .map_or_else(String::new, |(n, _)| n.clone());
        let row = Row::of(name, &t.tasks, &out, &bounds, fifo_makespan);
        if request == trace::CpuRequest::Soft {
            checks.push(Check {
                met: row.utilisation > LEARNED_CPU_MIN_UTILISATION,
                enforced: true,
                what: format!(
                    "{}: CPU utilisation {:.1}% (target > {:.0}%, issue 15)",
                    t.name,
                    row.utilisation * 100.0,
                    LEARNED_CPU_MIN_UTILISATION * 100.0
                ),
            });
        }
        reports.push(TraceReport {
            name: t.name,
            about: t.about,
            tasks: t.tasks.len(),
            bounds,
            fifo_workers: workers,
            rows: vec![
                row,
                Row::of(
                    format!("count-only FIFO, {workers} workers (one per core: the baseline)"),
                    &t.tasks,
                    &fifo,
                    &bounds,
                    fifo_makespan,
                ),
            ],
        });
    }
    Report {
        traces: reports,
        checks,
        reserve_timing,
    }
}

/// CPU utilisation the headline scheduler must reach on the learned-CPU
/// trace with soft requests (issue 15).
pub const LEARNED_CPU_MIN_UTILISATION: f64 = 0.90;

/// The target checks for the headline scheduler's row on trace `trace`.
fn check(trace: &str, row: &Row) -> Vec<Check> {
    let enforced = trace == ENFORCED_ON;
    vec![
        Check {
            met: row.utilisation > TARGETS.min_utilisation,
            enforced,
            what: format!(
                "{trace}: bottleneck utilisation {:.1}% (target > {:.0}%)",
                row.utilisation * 100.0,
                TARGETS.min_utilisation * 100.0
            ),
        },
        Check {
            met: row.vs_lower_bound <= TARGETS.max_vs_lower_bound,
            enforced,
            what: format!(
                "{trace}: makespan {:.3} of the lower bound (target <= {:.2})",
                row.vs_lower_bound, TARGETS.max_vs_lower_bound
            ),
        },
        Check {
            met: row.vs_fifo <= TARGETS.max_vs_fifo,
            enforced,
            what: format!(
                "{trace}: makespan {:.3} of count-only FIFO (target <= {:.2})",
                row.vs_fifo, TARGETS.max_vs_fifo
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(utilisation: f64, vs_lower_bound: f64, vs_fifo: f64) -> Row {
        Row {
            name: String::new(),
            utilisation,
            makespan_s: 1.0,
            vs_lower_bound,
            p99_wait_s: 0.0,
            vs_fifo,
        }
    }

    #[test]
    fn targets_are_enforced_on_the_bimodal_trace_only() {
        // (trace, row, expected (met, enforced) per target)
        let table = [
            ("bimodal", row(0.90, 1.05, 0.50), [(true, true); 3]),
            (
                "bimodal",
                row(0.85, 1.11, 0.81),
                [(false, true), (false, true), (false, true)],
            ),
            (
                "uniform",
                row(0.50, 2.0, 0.9),
                [(false, false), (false, false), (false, false)],
            ),
            ("uniform", row(0.99, 1.0, 0.1), [(true, false); 3]),
        ];
        for (trace, r, want) in table {
            let got: Vec<(bool, bool)> = check(trace, &r)
                .iter()
                .map(|c| (c.met, c.enforced))
                .collect();
            assert_eq!(got, want, "{trace} {r:?}");
        }
    }

    #[test]
    fn small_run_is_safe_and_beats_the_baseline_on_bimodal() {
        // A short run of every trace: the engine asserts the packer never
        // over-commits; every task is started; the headline beats FIFO.
        let r = run(400, 7);
        assert_eq!(r.traces.len(), 7);
        for t in &r.traces {
            let rows = if t.name.starts_with("learned-cpu") {
                2 // the headline and one plain pool
            } else {
                schedulers().len() + 2
            };
            assert_eq!(t.rows.len(), rows, "{}", t.name);
            for row in &t.rows {
                assert!(row.vs_lower_bound >= 1.0 - 1e-9, "{}: {row:?}", t.name);
                assert!(row.utilisation <= 1.0 + 1e-9, "{}: {row:?}", t.name);
            }
        }
        let bimodal = r.traces.iter().find(|t| t.name == "bimodal").unwrap();
        let headline = &bimodal.rows[2];
        assert!(headline.name.starts_with("best-fit(dot), window"));
        assert!(headline.vs_fifo < 1.0, "{headline:?}");
        // Learned CPU: soft requests use more of the CPU than requests with
        // a margin on top of a percentile (issue 15).
        let util = |name: &str| {
            r.traces
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.rows[0].utilisation)
                .unwrap()
        };
        assert!(util("learned-cpu, soft") > util("learned-cpu, p95 + 15%"));
    }
}
