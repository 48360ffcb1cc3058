//! Synthetic traces and the simulated machine.
//!
//! Every trace is a list of tasks (arrival, CPU, memory, duration) drawn with
//! a fixed seed. Arrivals are a Poisson stream whose rate offers
//! [`OFFERED_LOAD`] times what the machine can serve in its bottleneck
//! dimension, so a queue builds up and the makespan is decided by how well
//! the scheduler packs, not by when the last task arrives.

use respool_core::{Dim, Resources};

use super::rng::Rng;

/// Milliseconds of simulated time.
pub type Millis = u64;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const SECOND: Millis = 1_000;

/// Offered load in the bottleneck dimension (1.2: arrivals ask for 20% more
/// than the machine can serve, so the queue never stays empty for long).
pub const OFFERED_LOAD: f64 = 1.2;

/// One task of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    /// When it is submitted.
    pub arrival: Millis,
    /// CPU it asks for (what the scheduler reserves), in millicores.
    pub cpu: u64,
    /// CPU it really uses while it runs, in millicores: `cpu` for a task
    /// that declared what it needs; around it for one whose request was
    /// learned ([`learned_cpu`]). The utilisation counts this.
    pub used_cpu: u64,
    /// Memory it needs while it runs, in bytes.
    pub memory: u64,
    /// How long it runs once started.
    pub duration: Millis,
}

impl Task {
    /// Its request as a resource vector.
    #[must_use]
    pub fn request(&self) -> Resources {
        Resources::NONE
            .with_saturating(Dim::Cpu, self.cpu)
            .with_saturating(Dim::Memory, self.memory)
    }
}

/// A named trace.
#[derive(Clone, Debug)]
pub struct Trace {
    /// Short name for the report.
    pub name: &'static str,
    /// Where its shape comes from.
    pub about: &'static str,
    /// The tasks, in arrival order.
    pub tasks: Vec<Task>,
}

/// The simulated machine: placement domains, each with CPU and memory.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Capacity of each domain.
    pub domains: Vec<Resources>,
}

impl Machine {
    /// A two-socket machine: two NUMA domains of 16 cores and 32 GiB each.
    #[must_use]
    pub fn two_sockets() -> Machine {
        let node = Resources::NONE
            .with_saturating(Dim::Cpu, 16_000)
            .with_saturating(Dim::Memory, 32 * GIB);
        Machine {
            domains: vec![node, node],
        }
    }

    /// The whole machine's capacity in `dim`.
    #[must_use]
    pub fn total(&self, dim: Dim) -> u64 {
        self.domains.iter().map(|d| d.amount(dim)).sum()
    }
}

/// Draws `n` tasks with `shape` (cpu, memory, duration) and gives them
/// Poisson arrivals at [`OFFERED_LOAD`] for `machine`.
fn with_arrivals(
    machine: &Machine,
    rng: &mut Rng,
    n: usize,
    mut shape: impl FnMut(&mut Rng) -> (u64, u64, Millis),
) -> Vec<Task> {
    let mut tasks: Vec<Task> = (0..n)
        .map(|_| {
            let (cpu, memory, duration) = shape(rng);
            Task {
                arrival: 0,
                cpu,
                used_cpu: cpu,
                memory,
                duration,
            }
        })
        .collect();
    // Seconds of the whole machine each task takes in each dimension.
    let per_task = |dim: Dim, amount: fn(&Task) -> u64| {
        tasks
            .iter()
            .map(|t| amount(t) as f64 * t.duration as f64)
            .sum::<f64>()
            / machine.total(dim) as f64
            / n as f64
    };
    let bottleneck = per_task(Dim::Cpu, |t| t.cpu).max(per_task(Dim::Memory, |t| t.memory));
    let mean_gap = bottleneck / OFFERED_LOAD;
    let mut clock = 0.0f64;
    for t in &mut tasks {
        t.arrival = clock as Millis;
        clock += rng.exponential(mean_gap);
    }
    tasks
}

/// CPU and memory uniform, durations uniform from 1 to 20 s.
#[must_use]
pub fn uniform(machine: &Machine, seed: u64, n: usize) -> Trace {
    let mut rng = Rng::new(seed);
    let tasks = with_arrivals(machine, &mut rng, n, |r| {
        (
            r.range(2, 16) * 250,
            r.range(256 * MIB, 8 * GIB),
            r.range(SECOND, 20 * SECOND),
        )
    });
    Trace {
        name: "uniform",
        about: "cpu 0.5-4 cores, memory 256 MiB-8 GiB, 1-20 s, all uniform",
        tasks,
    }
}

/// A build: 80% small compile steps and 20% large link steps (ninja #1571).
#[must_use]
pub fn bimodal(machine: &Machine, seed: u64, n: usize) -> Trace {
    let mut rng = Rng::new(seed);
    let tasks = with_arrivals(machine, &mut rng, n, |r| {
        if r.chance(0.8) {
            (
                1_000,
                r.range(100 * MIB, 500 * MIB),
                r.range(SECOND, 5 * SECOND),
            )
        } else {
            (
                1_000,
                r.range(4 * GIB, 10 * GIB),
                r.range(10 * SECOND, 40 * SECOND),
            )
        }
    });
    Trace {
        name: "bimodal",
        about: "ninja #1571: 80% compiles (1 core, 100-500 MiB, 1-5 s), \
                20% links (1 core, 4-10 GiB, 10-40 s)",
        tasks,
    }
}

/// Half CPU-heavy and light on memory, half the other way round.
#[must_use]
pub fn anti_correlated(machine: &Machine, seed: u64, n: usize) -> Trace {
    let mut rng = Rng::new(seed);
    let tasks = with_arrivals(machine, &mut rng, n, |r| {
        let duration = r.range(2 * SECOND, 20 * SECOND);
        if r.chance(0.5) {
            (r.range(16, 32) * 250, r.range(256 * MIB, GIB), duration)
        } else {
            (r.range(1, 4) * 250, r.range(6 * GIB, 12 * GIB), duration)
        }
    });
    Trace {
        name: "anti-correlated",
        about: "50% cpu-heavy (4-8 cores, 0.25-1 GiB), 50% memory-heavy \
                (0.25-1 core, 6-12 GiB), 2-20 s",
        tasks,
    }
}

/// Moderate requests with Pareto durations (shape 1.5, minimum 2 s, capped
/// at 10 minutes).
#[must_use]
pub fn heavy_tailed(machine: &Machine, seed: u64, n: usize) -> Trace {
    let mut rng = Rng::new(seed);
    let tasks = with_arrivals(machine, &mut rng, n, |r| {
        let seconds = r.pareto(1.5, 2.0).min(600.0);
        (
            r.range(2, 8) * 250,
            r.range(512 * MIB, 4 * GIB),
            (seconds * SECOND as f64) as Millis,
        )
    });
    Trace {
        name: "heavy-tailed",
        about: "cpu 0.5-2 cores, memory 0.5-4 GiB, Pareto(1.5, 2 s) durations capped at 600 s",
        tasks,
    }
}

/// How a [`learned_cpu`] trace's requests were made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuRequest {
    /// The class's expected usage, no margin (respool: CPU is soft).
    Soft,
    /// The class's p95 plus 15% (respool before CPU was compressible: the
    /// VPA margin on an already safe percentile).
    HardWithMargin,
    /// One core each, as a user who declares it would (or a plain pool of
    /// one thread per core).
    OneCore,
}

/// Single-threaded tasks of 12 classes whose CPU is learned, noisy around
/// one core: each class uses 0.8 to 1 core on average, each task up to 15%
/// either side of its class (never above one core); memory 64-512 MiB, so
/// CPU is the bottleneck; 1-20 s. The scheduler sees what `request` makes
/// of each class (its 30 samples' mean, or their p95 plus 15%, or one
/// core); the utilisation counts what the tasks use. The simulator has no
/// worker count: packing by learned CPU runs more tasks than cores when
/// they use less than a core each, as a pool with more workers than cores
/// does.
#[must_use]
pub fn learned_cpu(machine: &Machine, seed: u64, n: usize, request: CpuRequest) -> Trace {
    const CLASSES: usize = 12;
    let mut rng = Rng::new(seed);
    let means: Vec<u64> = (0..CLASSES).map(|_| rng.range(800, 1_000)).collect();
    let use_of = |rng: &mut Rng, mean: u64| {
        let spread = mean * 15 / 100;
        rng.range(mean.saturating_sub(spread), mean + spread)
            .min(1_000)
    };
    // What each class learned from 30 earlier runs.
    let learned: Vec<u64> = means
        .iter()
        .map(|&m| {
            let mut samples: Vec<u64> = (0..30).map(|_| use_of(&mut rng, m)).collect();
            samples.sort_unstable();
            match request {
                CpuRequest::Soft => samples.iter().sum::<u64>() / 30,
                CpuRequest::HardWithMargin => samples[28] * 115 / 100,
                CpuRequest::OneCore => 1_000,
            }
        })
        .collect();
    let mut class_of = Vec::with_capacity(n);
    let mut tasks = with_arrivals(machine, &mut rng, n, |r| {
        let class = r.range(0, CLASSES as u64 - 1) as usize;
        class_of.push(class);
        (
            use_of(r, means[class]),
            r.range(64 * MIB, 512 * MIB),
            r.range(SECOND, 20 * SECOND),
        )
    });
    for (t, &class) in tasks.iter_mut().zip(&class_of) {
        t.cpu = learned[class];
    }
    Trace {
        name: match request {
            CpuRequest::Soft => "learned-cpu, soft",
            CpuRequest::HardWithMargin => "learned-cpu, p95 + 15%",
            CpuRequest::OneCore => "learned-cpu, one core each",
        },
        about: "single-threaded tasks of 12 classes using 0.8-1 core (each within 15% \
                of its class, at most one core), 64-512 MiB, 1-20 s; requests learned \
                from 30 runs; the packer has no worker limit, the baseline one thread per core",
        tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_deterministic_and_fit_a_domain() {
        let m = Machine::two_sockets();
        for make in [uniform, bimodal, anti_correlated, heavy_tailed] {
            let a = make(&m, 42, 500);
            let b = make(&m, 42, 500);
            assert_eq!(a.tasks, b.tasks);
            assert!(a.tasks.windows(2).all(|w| w[0].arrival <= w[1].arrival));
            for t in &a.tasks {
                assert!(t.request().fits_within(&m.domains[0]), "{}: {t:?}", a.name);
                assert!(t.duration > 0);
            }
        }
        for request in [
            CpuRequest::Soft,
            CpuRequest::HardWithMargin,
            CpuRequest::OneCore,
        ] {
            let a = learned_cpu(&m, 42, 500, request);
            assert_eq!(a.tasks, learned_cpu(&m, 42, 500, request).tasks);
            for t in &a.tasks {
                assert!(t.used_cpu <= 1_000, "single-threaded: {t:?}");
                assert!(t.request().fits_within(&m.domains[0]), "{t:?}");
            }
        }
        // The same tasks whatever the request: only `cpu` differs.
        let soft = learned_cpu(&m, 7, 300, CpuRequest::Soft).tasks;
        let hard = learned_cpu(&m, 7, 300, CpuRequest::HardWithMargin).tasks;
        assert!(soft.iter().zip(&hard).all(|(a, b)| {
            (a.arrival, a.used_cpu, a.memory, a.duration)
                == (b.arrival, b.used_cpu, b.memory, b.duration)
                && a.cpu < b.cpu
        }));
        let b = bimodal(&m, 1, 2_000);
        let large = b.tasks.iter().filter(|t| t.memory >= 4 * GIB).count();
        assert!((300..500).contains(&large), "about 20% links: {large}");
    }
}
