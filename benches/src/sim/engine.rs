//! The discrete-event engine: the packer (through its lookahead window or in
//! batches) and the count-only FIFO baseline, on the same trace.
//!
//! Events are task arrivals and task ends. At every event time the engine
//! first releases the tasks that end, then admits arrivals, then starts
//! whatever the scheduler allows, all at that instant. Start and end times
//! are exact integers (milliseconds).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use respool_core::packer::{BatchFit, Domain, Fit, Lookahead, Packer, PlaceError, Placement};
use respool_core::{Dim, Resources};

use super::trace::{Machine, Millis, Task};

/// How the packer picks what to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// [`Packer::place_from`] over the first `width` waiters, passing over the
    /// head at most `max_skips` times.
    Window {
        /// How the packer picks domains (and requests in the window).
        fit: Fit,
        /// The lookahead width K.
        width: usize,
        /// The overtaking bound M.
        max_skips: u32,
    },
    /// [`Packer::place_batch`] over the first `width` waiters at every event
    /// (no bound on overtaking).
    Batch {
        /// FFD or BFD.
        fit: BatchFit,
        /// How many waiters form the batch.
        width: usize,
    },
}

/// What happened to every task of a trace.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Start time per task (`None`: never started, it could never fit).
    pub start: Vec<Option<Millis>>,
    /// Peak use of the whole machine: (millicores, bytes).
    pub peak: (u64, u64),
    /// Most tasks running at once.
    pub peak_running: usize,
}

impl Outcome {
    /// When the last task ended.
    #[must_use]
    pub fn makespan(&self, tasks: &[Task]) -> Millis {
        self.start
            .iter()
            .zip(tasks)
            .filter_map(|(s, t)| s.map(|s| s + t.duration))
            .max()
            .unwrap_or(0)
    }
}

/// Running tasks and the machine-wide use they add up to.
#[derive(Default)]
struct Running {
    ends: BinaryHeap<Reverse<(Millis, usize)>>,
    cpu: u64,
    memory: u64,
}

impl Running {
    fn start(&mut self, out: &mut Outcome, t: Millis, i: usize, task: &Task) {
        out.start[i] = Some(t);
        self.ends.push(Reverse((t + task.duration, i)));
        self.cpu += task.cpu;
        self.memory += task.memory;
        out.peak.0 = out.peak.0.max(self.cpu);
        out.peak.1 = out.peak.1.max(self.memory);
        out.peak_running = out.peak_running.max(self.ends.len());
    }

    /// Pops every task that ends at or before `t`, calling `done` for each.
    fn finish(&mut self, t: Millis, tasks: &[Task], mut done: impl FnMut(usize)) {
        while let Some(&Reverse((end, i))) = self.ends.peek() {
            if end > t {
                break;
            }
            self.ends.pop();
            self.cpu -= tasks[i].cpu;
            self.memory -= tasks[i].memory;
            done(i);
        }
    }

    fn next_end(&self) -> Option<Millis> {
        self.ends.peek().map(|Reverse((end, _))| *end)
    }
}

/// When the simulation moves next: the first end of a running task or the
/// arrival of the next task, whichever comes first (`None`: nothing left).
fn next_event(running: &Running, next: Option<&Task>) -> Option<Millis> {
    match (running.next_end(), next.map(|x| x.arrival)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs the event loop: `schedule(t, queue, running, out)` starts tasks.
fn event_loop(
    tasks: &[Task],
    out: &mut Outcome,
    mut release: impl FnMut(usize),
    mut schedule: impl FnMut(Millis, &mut VecDeque<usize>, &mut Running, &mut Outcome),
) {
    let mut queue = VecDeque::new();
    let mut running = Running::default();
    let mut next = 0usize;
    let mut t: Millis = 0;
    loop {
        running.finish(t, tasks, &mut release);
        while next < tasks.len() && tasks[next].arrival <= t {
            queue.push_back(next);
            next += 1;
        }
        schedule(t, &mut queue, &mut running, out);
        let Some(at) = next_event(&running, tasks.get(next)) else {
            break;
        };
        t = at;
    }
    assert!(
        queue.is_empty(),
        "{} tasks left waiting with nothing running",
        queue.len()
    );
}

/// Runs `tasks` on `machine` with the packer.
///
/// # Panics
///
/// If the packer's books ever put a domain over capacity (they must not), or
/// if tasks are left waiting with nothing running.
#[must_use]
pub fn run_packer(machine: &Machine, tasks: &[Task], scheduler: Scheduler) -> Outcome {
    let fit = match scheduler {
        Scheduler::Window { fit, .. } => fit,
        Scheduler::Batch { .. } => Fit::First,
    };
    let domains: Vec<Domain> = machine.domains.iter().map(|&c| Domain::new(c)).collect();
    let packer = std::cell::RefCell::new(Packer::new(domains, fit));
    let held: std::cell::RefCell<Vec<Option<Placement>>> =
        std::cell::RefCell::new(tasks.iter().map(|_| None).collect());
    let mut out = Outcome {
        start: vec![None; tasks.len()],
        ..Outcome::default()
    };
    let mut lookahead = match scheduler {
        Scheduler::Window {
            width, max_skips, ..
        } => Lookahead::new(width, max_skips),
        Scheduler::Batch { .. } => Lookahead::new(1, 0),
    };
    let mut window: Vec<Resources> = Vec::new();
    let release = |i: usize| {
        let placement = held.borrow_mut()[i]
            .take()
            .expect("a running task holds a placement");
        packer
            .borrow_mut()
            .release(placement)
            .expect("the placement belongs to this packer");
    };
    let schedule =
        |t: Millis, queue: &mut VecDeque<usize>, running: &mut Running, out: &mut Outcome| {
            let mut packer = packer.borrow_mut();
            match scheduler {
                Scheduler::Window { width, .. } => loop {
                    window.clear();
                    window.extend(queue.iter().take(width).map(|&i| tasks[i].request()));
                    match packer.place_from(&window, &mut lookahead) {
                        Ok(Some((k, placement))) => {
                            let i = queue.remove(k).expect("index from the window");
                            held.borrow_mut()[i] = Some(placement);
                            running.start(out, t, i, &tasks[i]);
                        }
                        Ok(None) | Err(PlaceError::NoRoom { .. }) => break,
                        Err(_) => {
                            // Can never fit: refuse it (the traces have none).
                            queue.pop_front();
                            lookahead.head_left();
                        }
                    }
                },
                Scheduler::Batch { fit, width } => {
                    window.clear();
                    window.extend(queue.iter().take(width).map(|&i| tasks[i].request()));
                    let mut order = vec![0; window.len()];
                    let mut placed: Vec<Option<Placement>> = window.iter().map(|_| None).collect();
                    packer
                        .place_batch(&window, fit, &mut order, &mut placed)
                        .expect("scratch sized to the batch");
                    let mut started = vec![false; window.len()];
                    for (k, p) in placed.into_iter().enumerate() {
                        if let Some(p) = p {
                            let i = queue[k];
                            held.borrow_mut()[i] = Some(p);
                            running.start(out, t, i, &tasks[i]);
                            started[k] = true;
                        }
                    }
                    let mut k = 0;
                    queue.retain(|_| {
                        let keep = !started.get(k).copied().unwrap_or(false);
                        k += 1;
                        keep
                    });
                }
            }
            for d in packer.domains() {
                assert!(!d.is_over_capacity(), "the packer over-committed a domain");
            }
        };
    event_loop(tasks, &mut out, release, schedule);
    out
}

/// When a task's reservation is taken, on a pool with a fixed number of
/// workers (see [`run_workers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    /// When it is admitted (at submission, or when a release lets it in),
    /// as respool does: an admitted task may then wait for a worker while
    /// it holds its reservation.
    AtAdmission,
    /// When a worker is free to run it: admission picks among the waiting
    /// tasks only while a worker is idle, so nothing holds capacity without
    /// running.
    AtPickup,
}

/// Runs `tasks` on `machine` with the headline window scheduler (best fit by
/// dot product, window `width`, bound `max_skips`) and `workers` workers,
/// taking reservations as `reserve` says. The outcome's start times are
/// when tasks start running (not when they were admitted).
///
/// # Panics
///
/// If the packer's books ever put a domain over capacity, or tasks are left
/// waiting with nothing running.
#[must_use]
pub fn run_workers(
    machine: &Machine,
    tasks: &[Task],
    width: usize,
    max_skips: u32,
    workers: usize,
    reserve: Reserve,
) -> Outcome {
    let domains: Vec<Domain> = machine.domains.iter().map(|&c| Domain::new(c)).collect();
    let mut packer = Packer::new(domains, Fit::Best(respool_core::packer::Score::DotProduct));
    let mut lookahead = Lookahead::new(width, max_skips);
    let mut held: Vec<Option<Placement>> = tasks.iter().map(|_| None).collect();
    let mut out = Outcome {
        start: vec![None; tasks.len()],
        ..Outcome::default()
    };
    let (mut waiting, mut admitted) = (VecDeque::new(), VecDeque::new());
    let mut running = Running::default();
    let mut window: Vec<Resources> = Vec::new();
    let (mut next, mut t) = (0usize, 0 as Millis);
    loop {
        running.finish(t, tasks, |i| {
            let p = held[i].take().expect("a running task holds a placement");
            packer
                .release(p)
                .expect("the placement belongs to this packer");
        });
        while next < tasks.len() && tasks[next].arrival <= t {
            waiting.push_back(next);
            next += 1;
        }
        loop {
            let idle = workers.saturating_sub(running.ends.len() + admitted.len());
            if reserve == Reserve::AtPickup && idle == 0 {
                break;
            }
            window.clear();
            window.extend(waiting.iter().take(width).map(|&i| tasks[i].request()));
            match packer.place_from(&window, &mut lookahead) {
                Ok(Some((k, placement))) => {
                    let i = waiting.remove(k).expect("index from the window");
                    held[i] = Some(placement);
                    admitted.push_back(i);
                }
                Ok(None) | Err(PlaceError::NoRoom { .. }) => break,
                Err(_) => {
                    waiting.pop_front();
                    lookahead.head_left();
                }
            }
        }
        while running.ends.len() < workers {
            let Some(i) = admitted.pop_front() else { break };
            running.start(&mut out, t, i, &tasks[i]);
        }
        for d in packer.domains() {
            assert!(!d.is_over_capacity(), "the packer over-committed a domain");
        }
        let Some(at) = next_event(&running, tasks.get(next)) else {
            break;
        };
        t = at;
    }
    assert!(
        waiting.is_empty() && admitted.is_empty(),
        "tasks left waiting with nothing running"
    );
    out
}

/// Runs `tasks` on a count-only pool of `workers`: tasks start in arrival
/// order whenever a worker is free, whatever they need.
#[must_use]
pub fn run_fifo(tasks: &[Task], workers: usize) -> Outcome {
    let mut out = Outcome {
        start: vec![None; tasks.len()],
        ..Outcome::default()
    };
    let schedule =
        |t: Millis, queue: &mut VecDeque<usize>, running: &mut Running, out: &mut Outcome| {
            while running.ends.len() < workers {
                let Some(i) = queue.pop_front() else { break };
                running.start(out, t, i, &tasks[i]);
            }
        };
    event_loop(tasks, &mut out, |_| {}, schedule);
    out
}

/// The count-only baseline at the packer's memory safety: the largest worker
/// count, searching down from `max_workers`, whose run never needs more
/// memory than the machine has (and, with `cpu_too`, never more CPU either).
/// Returns the count and its run.
#[must_use]
pub fn safe_fifo(
    machine: &Machine,
    tasks: &[Task],
    max_workers: usize,
    cpu_too: bool,
) -> (usize, Outcome) {
    let cpu = machine.total(Dim::Cpu);
    let memory = machine.total(Dim::Memory);
    for workers in (1..=max_workers).rev() {
        let out = run_fifo(tasks, workers);
        if out.peak.1 <= memory && (!cpu_too || out.peak.0 <= cpu) {
            return (workers, out);
        }
    }
    (1, run_fifo(tasks, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(arrival: Millis, cpu: u64, memory: u64, duration: Millis) -> Task {
        Task {
            arrival,
            cpu,
            used_cpu: cpu,
            memory,
            duration,
        }
    }

    fn one_domain() -> Machine {
        Machine {
            domains: vec![
                Resources::NONE
                    .with_saturating(Dim::Cpu, 4)
                    .with_saturating(Dim::Memory, 10),
            ],
        }
    }

    /// With workers to spare the moment of the reservation changes nothing;
    /// with one worker nothing ever runs two at once, in either mode.
    #[test]
    fn reservation_timing_matters_only_when_workers_are_short() {
        let m = Machine::two_sockets();
        let t = super::super::trace::bimodal(&m, 3, 300);
        let run = |w, r| run_workers(&m, &t.tasks, 16, 64, w, r);
        assert_eq!(
            run(10_000, Reserve::AtAdmission).start,
            run(10_000, Reserve::AtPickup).start
        );
        for r in [Reserve::AtAdmission, Reserve::AtPickup] {
            let one = run(1, r);
            assert_eq!(one.peak_running, 1, "{r:?}");
            assert!(one.start.iter().all(Option::is_some), "{r:?}");
        }
    }

    #[test]
    fn fifo_by_hand() {
        // Two workers: 0 and 1 start at 0; 2 starts when 0 ends at 5; 3 at 7.
        let tasks = [
            task(0, 1, 6, 5),
            task(0, 1, 6, 7),
            task(1, 1, 1, 4),
            task(2, 1, 1, 1),
        ];
        let out = run_fifo(&tasks, 2);
        assert_eq!(out.start, [Some(0), Some(0), Some(5), Some(7)]);
        assert_eq!(out.makespan(&tasks), 9);
        assert_eq!(out.peak, (2, 12));
        // On a machine of memory 10 two workers are unsafe (12 > 10): one worker.
        for cpu_too in [false, true] {
            let (workers, safe) = safe_fifo(&one_domain(), &tasks, 4, cpu_too);
            assert_eq!(workers, 1);
            assert_eq!(safe.makespan(&tasks), 17);
        }
        // Memory 100, cpu 4: memory allows 4 workers, each task needs 3 cores.
        let wide = Machine {
            domains: vec![
                Resources::NONE
                    .with_saturating(Dim::Cpu, 4)
                    .with_saturating(Dim::Memory, 100),
            ],
        };
        let heavy = [task(0, 3, 1, 5), task(0, 3, 1, 5), task(0, 3, 1, 5)];
        assert_eq!(safe_fifo(&wide, &heavy, 4, false).0, 4);
        assert_eq!(safe_fifo(&wide, &heavy, 4, true).0, 1);
    }

    #[test]
    fn window_packs_past_a_blocked_head() {
        // Memory 10: a 6 runs; the head needs 6 (waits), two 2s may pass.
        let tasks = [
            task(0, 1, 6, 10),
            task(1, 1, 6, 10),
            task(1, 1, 2, 3),
            task(1, 1, 2, 3),
        ];
        let m = one_domain();
        let blocking = Scheduler::Window {
            fit: Fit::First,
            width: 1,
            max_skips: 0,
        };
        let out = run_packer(&m, &tasks, blocking);
        assert_eq!(out.start, [Some(0), Some(10), Some(10), Some(10)]);
        let window = Scheduler::Window {
            fit: Fit::First,
            width: 4,
            max_skips: 8,
        };
        let out = run_packer(&m, &tasks, window);
        assert_eq!(out.start, [Some(0), Some(10), Some(1), Some(1)]);
        assert_eq!(out.makespan(&tasks), 20);
        let ffd = Scheduler::Batch {
            fit: BatchFit::FirstFitDecreasing,
            width: 4,
        };
        let out = run_packer(&m, &tasks, ffd);
        assert_eq!(out.start, [Some(0), Some(10), Some(1), Some(1)]);
    }
}
