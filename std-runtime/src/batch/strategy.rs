//! Distribution strategies: which lane runs which job, in which order.
//!
//! A [`Strategy`] looks at the run's jobs once, when the run starts, and
//! returns a [`Plan`]: a [`Dispatch`] that each lane asks for its next job
//! until it answers `None`, and, if the strategy chooses, the number of
//! lanes ([`Plan::with_lanes`]; otherwise the batch's
//! [`workers`](super::BatchConfig::workers)). The five strategies of the Go library are
//! implemented through this same trait (the Go library declared a
//! `Strategy` interface but never called it):
//!
//! | strategy | dispatch |
//! |----------|----------|
//! | [`RoundRobin`] | job `i` to lane `i mod N`, each lane in job order |
//! | [`Chunked`] | lane `w` gets one contiguous slice; the first `n mod N` lanes get one extra job; lanes past `n` get nothing (never a panic: Go defect 2) |
//! | [`WorkStealing`] | per-lane [`WorkStealingDeque`]s seeded round robin; a lane pops its own deque LIFO, then steals FIFO from the others, starting with the next lane; it stops when a full pass finds every deque empty (no job is pushed after seeding, so an empty deque stays empty); each pop and steal is done under the deque's lock, so a job is handed out exactly once (Go defect 4) |
//! | [`PriorityBased`] | one shared [`PriorityQueue`]: whichever lane is free takes the highest priority left, first come first served among equal priorities |
//! | [`Adaptive`] | decides once per run, as Go: more than half the jobs with priority > 5: priority based; else `n > 10N`: chunked; else `n > 2N`: work stealing; else round robin |
//!
//! Whatever a strategy returns, the runner checks it: an index out of range
//! or handed out twice is ignored and counted in
//! [`BatchMetrics::dispatch_errors`](super::BatchMetrics::dispatch_errors),
//! so a buggy strategy can neither run a job twice nor crash the run, and a
//! job it never hands out is reported as
//! [`NotStarted(NotDispatched)`](super::CancelReason::NotDispatched).

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::job::Job;
use super::queue::{PriorityQueue, WorkStealingDeque};
use crate::sync::lock;

/// What a strategy sees of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobMeta<'a> {
    /// The job's position in the run's job list: what [`Dispatch::next`] returns.
    pub index: usize,
    /// The job's id.
    pub id: &'a str,
    /// The job's priority.
    pub priority: i32,
    /// When the job was made.
    pub created: Instant,
}

impl<'a> JobMeta<'a> {
    /// The metadata of `jobs`, indexed by position.
    #[must_use]
    pub fn list<T>(jobs: &'a [Job<T>]) -> Vec<JobMeta<'a>> {
        jobs.iter()
            .enumerate()
            .map(|(index, j)| JobMeta::of(index, j))
            .collect()
    }

    pub(super) fn of<T>(index: usize, j: &'a Job<T>) -> JobMeta<'a> {
        JobMeta {
            index,
            id: &j.id,
            priority: j.priority,
            created: j.created,
        }
    }
}

/// Hands jobs to lanes while a run goes on. Lanes call [`next`](Self::next)
/// concurrently, each with its own lane number.
pub trait Dispatch: Send + Sync {
    /// The index of the next job for `lane`, or `None` when `lane` has
    /// nothing more to do (the lane then ends). Across all lanes and calls,
    /// each index in `0..jobs` should be returned exactly once.
    fn next(&self, lane: usize) -> Option<usize>;
}

/// A distribution strategy (Go: the `Strategy` interface, here really called).
///
/// # Examples
///
/// A strategy that gives every job to the last lane, newest first:
///
/// ```
/// use respool::batch::{Assignment, JobMeta, Plan, Strategy};
///
/// struct LastLaneNewestFirst;
///
/// impl Strategy for LastLaneNewestFirst {
///     fn name(&self) -> &str {
///         "last-lane-newest-first"
///     }
///     fn plan(&self, jobs: &[JobMeta<'_>], lanes: usize) -> Plan {
///         let mut queues = vec![Vec::new(); lanes];
///         queues[lanes - 1] = jobs.iter().rev().map(|j| j.index).collect();
///         Plan::new(Assignment::new(queues))
///     }
/// }
/// ```
pub trait Strategy: Send + Sync {
    /// The strategy's name, reported in
    /// [`BatchMetrics::strategy`](super::BatchMetrics::strategy) unless the
    /// plan gives a [label](Plan::with_label).
    fn name(&self) -> &str;

    /// Plans one run of `jobs` over `lanes` lanes (`lanes >= 1`: the
    /// batch's [`workers`](super::BatchConfig::workers); `jobs` indexed
    /// `0..jobs.len()` in order). The plan may choose another number of
    /// lanes with [`Plan::with_lanes`].
    fn plan(&self, jobs: &[JobMeta<'_>], lanes: usize) -> Plan;
}

/// A strategy's decision for one run: how jobs are handed out and, if the
/// strategy chooses, on how many lanes.
pub struct Plan {
    dispatch: Box<dyn Dispatch>,
    label: Option<String>,
    lanes: Option<usize>,
}

impl Plan {
    /// A plan that hands jobs out through `dispatch`, on the lanes the
    /// strategy was given.
    pub fn new(dispatch: impl Dispatch + 'static) -> Plan {
        Plan {
            dispatch: Box::new(dispatch),
            label: None,
            lanes: None,
        }
    }

    /// The same plan, run on `lanes` lanes instead of the number the
    /// strategy was given (Go: a custom strategy returning one job slice
    /// per worker it wants). The dispatcher is then asked for lanes
    /// `0..lanes`. `0` is refused by `run()` with
    /// [`BatchError::InvalidConfig`](super::BatchError::InvalidConfig),
    /// more than [`MAX_WORKERS`](crate::limits::MAX_WORKERS) with
    /// [`BatchError::TooLarge`](super::BatchError::TooLarge).
    ///
    /// # Examples
    ///
    /// One lane per distinct priority, each running its own priority's jobs:
    ///
    /// ```
    /// use respool::batch::{Assignment, Batch, BatchConfig, Job, JobMeta, Plan, Strategy, StrategyKind};
    ///
    /// struct LanePerPriority;
    ///
    /// impl Strategy for LanePerPriority {
    ///     fn name(&self) -> &str {
    ///         "lane-per-priority"
    ///     }
    ///     fn plan(&self, jobs: &[JobMeta<'_>], _lanes: usize) -> Plan {
    ///         let mut priorities: Vec<i32> = jobs.iter().map(|j| j.priority).collect();
    ///         priorities.sort_unstable();
    ///         priorities.dedup();
    ///         let queues: Vec<Vec<usize>> = priorities
    ///             .iter()
    ///             .map(|p| jobs.iter().filter(|j| j.priority == *p).map(|j| j.index).collect())
    ///             .collect();
    ///         let lanes = queues.len();
    ///         Plan::new(Assignment::new(queues)).with_lanes(lanes)
    ///     }
    /// }
    ///
    /// let pool = respool::Pool::builder().workers(2).build()?;
    /// let config = BatchConfig {
    ///     strategy: StrategyKind::custom(LanePerPriority),
    ///     ..BatchConfig::default()
    /// };
    /// let batch = Batch::with_config(&pool, config)?
    ///     .with_infallible_processor(|ctx, job: &Job<i32>| (job.data, ctx.worker()));
    /// batch.add_jobs((0..9).map(|i| Job::new(format!("job-{i}"), i).with_priority(i % 3)));
    /// let report = batch.run()?;
    /// assert_eq!(report.metrics.lanes, 3);
    /// for r in &report.results {
    ///     let (data, lane) = r.data.unwrap();
    ///     assert_eq!(lane, (data % 3) as usize); // priorities 0, 1, 2 on lanes 0, 1, 2
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_lanes(mut self, lanes: usize) -> Plan {
        self.lanes = Some(lanes);
        self
    }

    /// The lanes the plan asks for, if it chose (see [`with_lanes`](Self::with_lanes)).
    #[must_use]
    pub fn lanes(&self) -> Option<usize> {
        self.lanes
    }

    /// The same plan, reported under `label` (e.g. what an adaptive strategy chose).
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Plan {
        self.label = Some(label.into());
        self
    }

    /// The label, if one was given.
    #[must_use]
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The dispatcher.
    #[must_use]
    pub fn dispatch(&self) -> &dyn Dispatch {
        &*self.dispatch
    }

    pub(super) fn into_parts(self) -> (Box<dyn Dispatch>, Option<String>, Option<usize>) {
        (self.dispatch, self.label, self.lanes)
    }
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("label", &self.label)
            .field("lanes", &self.lanes)
            .finish()
    }
}

/// A fixed plan: one queue of job indices per lane, each run in order.
/// The simplest way to write a [`Strategy`].
pub struct Assignment {
    queues: Vec<Vec<usize>>,
    cursors: Vec<AtomicUsize>,
}

impl Assignment {
    /// Lane `l` runs `queues[l]` in order; lanes past `queues.len()` get nothing.
    #[must_use]
    pub fn new(queues: Vec<Vec<usize>>) -> Assignment {
        let cursors = queues.iter().map(|_| AtomicUsize::new(0)).collect();
        Assignment { queues, cursors }
    }

    /// The queues, per lane.
    #[must_use]
    pub fn queues(&self) -> &[Vec<usize>] {
        &self.queues
    }
}

impl Dispatch for Assignment {
    fn next(&self, lane: usize) -> Option<usize> {
        let q = self.queues.get(lane)?;
        let i = self.cursors.get(lane)?.fetch_add(1, Ordering::Relaxed);
        q.get(i).copied()
    }
}

impl fmt::Debug for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assignment")
            .field("queues", &self.queues)
            .finish()
    }
}

/// Job `i` to lane `i mod N` (Go's default).
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundRobin;

impl RoundRobin {
    /// The queues: lane `l` gets `l, l + N, l + 2N, ...`.
    #[must_use]
    pub fn assign(jobs: usize, lanes: usize) -> Assignment {
        let lanes = lanes.max(1);
        let mut queues = vec![Vec::with_capacity(jobs / lanes + 1); lanes];
        for i in 0..jobs {
            queues[i % lanes].push(i);
        }
        Assignment::new(queues)
    }
}

impl Strategy for RoundRobin {
    fn name(&self) -> &str {
        "round-robin"
    }
    fn plan(&self, jobs: &[JobMeta<'_>], lanes: usize) -> Plan {
        Plan::new(RoundRobin::assign(jobs.len(), lanes))
    }
}

/// One contiguous slice per lane; the first `n mod N` lanes get one extra job.
#[derive(Clone, Copy, Debug, Default)]
pub struct Chunked;

impl Chunked {
    /// The slice of lane `lane`: `start..end` with
    /// `start = lane * (n / N) + min(lane, n mod N)`. Empty for lanes past `n`.
    #[must_use]
    pub fn bounds(jobs: usize, lanes: usize, lane: usize) -> std::ops::Range<usize> {
        let lanes = lanes.max(1);
        if lane >= lanes {
            return jobs..jobs;
        }
        let base = jobs / lanes;
        let extra = jobs % lanes;
        let start = lane * base + lane.min(extra);
        let len = base + usize::from(lane < extra);
        start..start + len
    }

    /// The queues: lane `w` gets [`bounds(n, N, w)`](Self::bounds), in order.
    #[must_use]
    pub fn assign(jobs: usize, lanes: usize) -> Assignment {
        let lanes = lanes.max(1);
        Assignment::new(
            (0..lanes)
                .map(|w| Chunked::bounds(jobs, lanes, w).collect())
                .collect(),
        )
    }
}

impl Strategy for Chunked {
    fn name(&self) -> &str {
        "chunked"
    }
    fn plan(&self, jobs: &[JobMeta<'_>], lanes: usize) -> Plan {
        Plan::new(Chunked::assign(jobs.len(), lanes))
    }
}

/// Per-lane deques seeded round robin; pop own LIFO, steal others FIFO.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkStealing;

struct Stealing {
    deques: Vec<WorkStealingDeque<usize>>,
}

impl Dispatch for Stealing {
    fn next(&self, lane: usize) -> Option<usize> {
        let own = self.deques.get(lane)?;
        if let Some(i) = own.pop() {
            return Some(i);
        }
        let n = self.deques.len();
        (1..n).find_map(|k| self.deques[(lane + k) % n].steal())
    }
}

impl Strategy for WorkStealing {
    fn name(&self) -> &str {
        "work-stealing"
    }
    fn plan(&self, jobs: &[JobMeta<'_>], lanes: usize) -> Plan {
        let lanes = lanes.max(1);
        let deques = (0..lanes)
            .map(|l| (l..jobs.len()).step_by(lanes).collect())
            .collect();
        Plan::new(Stealing { deques })
    }
}

/// Highest priority first (first come first served among equals), to
/// whichever lane is free.
#[derive(Clone, Copy, Debug, Default)]
pub struct PriorityBased;

struct ByPriority {
    queue: Mutex<PriorityQueue<usize>>,
}

impl Dispatch for ByPriority {
    fn next(&self, _lane: usize) -> Option<usize> {
        lock(&self.queue).pop()
    }
}

impl Strategy for PriorityBased {
    fn name(&self) -> &str {
        "priority"
    }
    fn plan(&self, jobs: &[JobMeta<'_>], _lanes: usize) -> Plan {
        let mut q = PriorityQueue::new();
        for j in jobs {
            q.push(j.index, j.priority);
        }
        Plan::new(ByPriority {
            queue: Mutex::new(q),
        })
    }
}

/// Picks one of the other four once per run, from the job list (Go's rule).
/// The report names the choice: `"adaptive: chunked"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Adaptive;

impl Adaptive {
    /// The rule: more than half the jobs with priority > 5: priority based;
    /// else more than `10 * lanes` jobs: chunked; else more than `2 * lanes`:
    /// work stealing; else round robin.
    #[must_use]
    pub fn choose(jobs: &[JobMeta<'_>], lanes: usize) -> StrategyKind {
        let n = jobs.len();
        let high = jobs.iter().filter(|j| j.priority > 5).count();
        if high * 2 > n {
            StrategyKind::PriorityBased
        } else if n > lanes.saturating_mul(10) {
            StrategyKind::Chunked
        } else if n > lanes.saturating_mul(2) {
            StrategyKind::WorkStealing
        } else {
            StrategyKind::RoundRobin
        }
    }
}

impl Strategy for Adaptive {
    fn name(&self) -> &str {
        "adaptive"
    }
    fn plan(&self, jobs: &[JobMeta<'_>], lanes: usize) -> Plan {
        let chosen = Adaptive::choose(jobs, lanes);
        let s = chosen.strategy();
        let label = format!("adaptive: {}", s.name());
        s.plan(jobs, lanes).with_label(label)
    }
}

/// Which strategy a batch uses ([`BatchConfig::strategy`](super::BatchConfig::strategy)).
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum StrategyKind {
    /// [`RoundRobin`] (the default, as in Go).
    #[default]
    RoundRobin,
    /// [`Chunked`].
    Chunked,
    /// [`WorkStealing`].
    WorkStealing,
    /// [`PriorityBased`].
    PriorityBased,
    /// [`Adaptive`].
    Adaptive,
    /// A strategy of your own.
    Custom(Arc<dyn Strategy>),
}

impl StrategyKind {
    /// A custom strategy.
    pub fn custom(strategy: impl Strategy + 'static) -> StrategyKind {
        StrategyKind::Custom(Arc::new(strategy))
    }

    /// The strategy itself.
    #[must_use]
    pub fn strategy(&self) -> &dyn Strategy {
        match self {
            StrategyKind::RoundRobin => &RoundRobin,
            StrategyKind::Chunked => &Chunked,
            StrategyKind::WorkStealing => &WorkStealing,
            StrategyKind::PriorityBased => &PriorityBased,
            StrategyKind::Adaptive => &Adaptive,
            StrategyKind::Custom(s) => &**s,
        }
    }
}

impl fmt::Debug for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrategyKind::Custom(s) => write!(f, "Custom({:?})", s.name()),
            other => f.write_str(other.strategy().name()),
        }
    }
}

impl PartialEq for StrategyKind {
    /// Built-ins compare by kind; custom strategies by identity.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StrategyKind::Custom(a), StrategyKind::Custom(b)) => Arc::ptr_eq(a, b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metas(priorities: &[i32]) -> Vec<Job<()>> {
        priorities
            .iter()
            .enumerate()
            .map(|(i, &p)| Job::new(format!("j{i}"), ()).with_priority(p))
            .collect()
    }

    /// Drains a plan lane by lane (lane 0 until `None`, then lane 1...).
    fn drain(plan: &Plan, lanes: usize) -> Vec<Vec<usize>> {
        (0..lanes)
            .map(|l| std::iter::from_fn(|| plan.dispatch().next(l)).collect())
            .collect()
    }

    #[test]
    fn round_robin_sends_job_i_to_lane_i_mod_n() {
        let jobs = metas(&[0; 10]);
        let plan = RoundRobin.plan(&JobMeta::list(&jobs), 3);
        assert_eq!(
            drain(&plan, 3),
            [vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]
        );
        assert_eq!(plan.dispatch().next(7), None, "no lane 7");
    }

    #[test]
    fn chunked_bounds_table() {
        // (jobs, lanes, expected slices)
        let table: &[(usize, usize, &[std::ops::Range<usize>])] = &[
            (10, 3, &[0..4, 4..7, 7..10]),
            (1, 4, &[0..1, 1..1, 1..1, 1..1]),
            (3, 4, &[0..1, 1..2, 2..3, 3..3]),
            (8, 4, &[0..2, 2..4, 4..6, 6..8]),
            (0, 2, &[0..0, 0..0]),
        ];
        for &(n, lanes, want) in table {
            let got: Vec<_> = (0..lanes).map(|w| Chunked::bounds(n, lanes, w)).collect();
            assert_eq!(got, want, "{n} jobs on {lanes} lanes");
        }
    }

    #[test]
    fn work_stealing_pops_own_lifo_then_steals_fifo() {
        let jobs = metas(&[0; 7]);
        let plan = WorkStealing.plan(&JobMeta::list(&jobs), 2);
        // Seeded: lane 0 = [0, 2, 4, 6], lane 1 = [1, 3, 5].
        // Lane 0 pops 6, 4, 2, 0, then steals 1, 3, 5 from lane 1's front.
        assert_eq!(drain(&plan, 2), [vec![6, 4, 2, 0, 1, 3, 5], vec![]]);
    }

    #[test]
    fn work_stealing_dispatch_hands_out_each_job_once_under_contention() {
        // The dispatcher alone, without the runner's duplicate guard.
        let jobs = metas(&[0; 30]);
        let list = JobMeta::list(&jobs);
        for _ in 0..2_000 {
            let plan = WorkStealing.plan(&list, 4);
            let got: Vec<Vec<usize>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|l| {
                        let plan = &plan;
                        s.spawn(move || {
                            std::iter::from_fn(|| plan.dispatch().next(l)).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut all: Vec<usize> = got.into_iter().flatten().collect();
            all.sort_unstable();
            assert_eq!(all, (0..30).collect::<Vec<_>>());
        }
    }

    #[test]
    fn priority_dispatch_is_highest_first_fifo_among_equals() {
        let jobs = metas(&[1, 5, 1, 9, 5, 1]);
        let plan = PriorityBased.plan(&JobMeta::list(&jobs), 3);
        // Any lane takes the next one: alternate lanes.
        let order: Vec<usize> = (0..).map_while(|k| plan.dispatch().next(k % 3)).collect();
        assert_eq!(order, [3, 1, 4, 0, 2, 5]);
    }

    #[test]
    fn adaptive_choice_table() {
        let lanes = 4;
        // (priorities, expected)
        let high = |n: usize, hi: usize| -> Vec<i32> {
            (0..n).map(|i| if i < hi { 6 } else { 5 }).collect()
        };
        let table: Vec<(Vec<i32>, StrategyKind)> = vec![
            (high(10, 6), StrategyKind::PriorityBased), // 6 of 10 > 5
            (high(10, 5), StrategyKind::WorkStealing),  // exactly half: not more; 10 > 8
            (high(41, 0), StrategyKind::Chunked),       // 41 > 40
            (high(40, 0), StrategyKind::WorkStealing),  // 40 is not > 40, but > 8
            (high(9, 0), StrategyKind::WorkStealing),   // 9 > 8
            (high(8, 0), StrategyKind::RoundRobin),     // 8 is not > 8
            (high(1, 0), StrategyKind::RoundRobin),
            (high(100, 51), StrategyKind::PriorityBased),
        ];
        for (prios, want) in table {
            let jobs = metas(&prios);
            let list = JobMeta::list(&jobs);
            assert_eq!(Adaptive::choose(&list, lanes), want, "{prios:?}");
            let plan = Adaptive.plan(&list, lanes);
            assert_eq!(
                plan.label(),
                Some(format!("adaptive: {}", want.strategy().name()).as_str())
            );
        }
    }

    #[test]
    fn assignment_ignores_unknown_lanes() {
        let a = Assignment::new(vec![vec![1, 0]]);
        assert_eq!(a.next(1), None);
        assert_eq!(a.next(0), Some(1));
        assert_eq!(a.next(0), Some(0));
        assert_eq!(a.next(0), None);
        assert_eq!(a.next(0), None);
    }
}
