//! Property tests of `respool_core::queue` against a brute-force reference.
//!
//! The reference keeps the queued tasks in a plain vector and finds the next
//! task by scoring every one of them with `Weights::score` (the formula, term
//! by term): `O(n)`, obviously right. The queue under test folds time into heap
//! keys and prunes its search with the fit bound. Random sequences of pushes,
//! pops, top-k queries, takes, cancellations and expiries, at random clocks
//! and free vectors, must give exactly the same answers when the search is
//! unbounded, and answers within the documented bound when it is not.
#![allow(missing_docs)]

use std::cmp::Reverse;

use proptest::prelude::*;
use respool_core::queue::{
    Availability, LogHistogram, QueueConfig, Ranked, ScoredQueue, Slot, Task, Ticket, Weights,
};
use respool_core::{Dim, Ppm, Resources};

type Queue = ScoredQueue<u32, Box<[Slot<u32>]>>;

#[derive(Clone, Debug)]
enum Op {
    Push {
        priority: i32,
        enqueued: u64,
        deadline: Option<u64>,
        expected: Option<u64>,
        mem: Option<u64>,
        cpu: Option<u64>,
    },
    Pop {
        now: u64,
        free: (u64, u64),
    },
    TopK {
        now: u64,
        free: (u64, u64),
        k: usize,
    },
    Take {
        pick: usize,
        now: u64,
    },
    Remove {
        pick: usize,
    },
    RemoveWhere {
        modulus: u32,
    },
    Expire {
        now: u64,
    },
    /// Moves the queue onto a storage `by` slots larger (`ScoredQueue::grow`).
    Grow {
        by: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let free = (0u64..1_200, 0u64..4_000);
    prop_oneof![
        4 => (
            -3i32..=3,
            0u64..3_000,
            prop::option::of(0u64..6_000),
            prop::option::of(0u64..800),
            prop::option::of(0u64..1_000),
            prop::option::of(0u64..4_000),
        )
            .prop_map(|(priority, enqueued, deadline, expected, mem, cpu)| Op::Push {
                priority,
                enqueued,
                deadline,
                expected,
                mem,
                cpu,
            }),
        3 => (0u64..8_000, free.clone()).prop_map(|(now, free)| Op::Pop { now, free }),
        1 => (0u64..8_000, free, 0usize..7).prop_map(|(now, free, k)| Op::TopK { now, free, k }),
        1 => (any::<usize>(), 0u64..8_000).prop_map(|(pick, now)| Op::Take { pick, now }),
        2 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        1 => (2u32..6).prop_map(|modulus| Op::RemoveWhere { modulus }),
        1 => (0u64..8_000).prop_map(|now| Op::Expire { now }),
        1 => (0usize..4).prop_map(|by| Op::Grow { by }),
    ]
}

/// Three regimes: weights where the fit bound (at least 10^6 per unit of fit
/// weight) is comparable to the spread of the other terms, so the search
/// prunes some subtrees and not others; small weights, where scores tie
/// often; and fixed extremes.
fn weights() -> impl Strategy<Value = Weights> {
    prop_oneof![
        5 => (0u32..4, 0u32..4, 0u32..4, 0u64..2_000, 0u32..3, 0u32..3).prop_map(
            |(p, a, s, h, f, t)| Weights {
                priority: p * 250_000,
                aging: a * 200,
                slack: s * 300,
                slack_horizon_ns: h,
                fits: f,
                alignment: t,
            }
        ),
        3 => (0u32..4, 0u32..3, 0u32..3, 0u64..2_000, 0u32..3, 0u32..3).prop_map(
            |(p, a, s, h, f, t)| Weights {
                priority: p * 500,
                aging: a,
                slack: s,
                slack_horizon_ns: h,
                fits: f,
                alignment: t,
            }
        ),
        1 => Just(Weights {
            priority: u32::MAX,
            aging: u32::MAX,
            slack: u32::MAX,
            slack_horizon_ns: u64::MAX,
            fits: u32::MAX,
            alignment: u32::MAX,
        }),
        1 => Just(Weights::default()),
        1 => Just(Weights::PRIORITY_ONLY),
    ]
}

fn avail(free: (u64, u64)) -> Availability {
    let capacity = Resources::new()
        .with_saturating(Dim::Memory, 1_000)
        .with_saturating(Dim::Cpu, 4_000);
    let free = Resources::new()
        .with_saturating(Dim::Memory, free.0)
        .with_saturating(Dim::Cpu, free.1);
    Availability::new(free, capacity)
}

/// The reference: a vector of (ticket, task), scored one by one.
struct Model {
    weights: Weights,
    tasks: Vec<(Ticket, Task<u32>)>,
}

impl Model {
    /// Every queued task, best first: (score, ticket), ties by arrival.
    fn ranking(&self, now: u64, avail: &Availability) -> Vec<Ranked> {
        let mut all: Vec<Ranked> = self
            .tasks
            .iter()
            .map(|(ticket, t)| Ranked {
                ticket: *ticket,
                score: self.weights.score(t, now, avail),
            })
            .collect();
        all.sort_by_key(|r| (Reverse(r.score), r.ticket.seq()));
        all
    }

    fn remove(&mut self, ticket: Ticket) -> Option<Task<u32>> {
        let i = self.tasks.iter().position(|(t, _)| *t == ticket)?;
        Some(self.tasks.remove(i).1)
    }
}

fn boxed(cap: usize, config: QueueConfig) -> Queue {
    ScoredQueue::with_storage((0..cap).map(|_| Slot::new()).collect(), config)
}

/// Runs `ops` on a queue with an unbounded search and on the model; every
/// answer must be identical.
fn run_exact(cap: usize, weights: Weights, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut cap = cap;
    let mut q = boxed(
        cap,
        QueueConfig {
            weights,
            probe_limit: usize::MAX,
        },
    );
    let mut m = Model {
        weights,
        tasks: Vec::new(),
    };
    let (mut dequeued, mut removed, mut expired, mut waits) = (0u64, 0u64, 0u64, Vec::new());
    for (n, op) in ops.iter().enumerate() {
        let item = u32::try_from(n).unwrap();
        match *op {
            Op::Push {
                priority,
                enqueued,
                deadline,
                expected,
                mem,
                cpu,
            } => {
                let mut request = Resources::NONE;
                if let Some(v) = mem {
                    request = request.with_saturating(Dim::Memory, v);
                }
                if let Some(v) = cpu {
                    request = request.with_saturating(Dim::Cpu, v);
                }
                let task = Task {
                    item,
                    request,
                    priority,
                    enqueued_ns: enqueued,
                    deadline_ns: deadline,
                    expected_ns: expected,
                };
                match q.push(task.clone()) {
                    Ok(ticket) => {
                        prop_assert!(m.tasks.len() < cap);
                        prop_assert_eq!(q.get(ticket), Some(&task));
                        m.tasks.push((ticket, task));
                    }
                    Err(back) => {
                        prop_assert_eq!(m.tasks.len(), cap);
                        prop_assert_eq!(back, task);
                    }
                }
            }
            Op::Pop { now, free } => {
                let a = avail(free);
                let want = m.ranking(now, &a).first().copied();
                let peeked = q.peek(now, &a).map(|p| (p.ticket, p.score, p.exact));
                let got = q.pop(now, &a);
                match (want, got) {
                    (None, None) => prop_assert!(peeked.is_none()),
                    (Some(w), Some(p)) => {
                        prop_assert_eq!((p.ticket, p.score, p.exact), (w.ticket, w.score, true));
                        prop_assert_eq!(peeked, Some((w.ticket, w.score, true)));
                        let t = m.remove(w.ticket).unwrap();
                        prop_assert_eq!(&p.task, &t);
                        dequeued += 1;
                        waits.push(now.saturating_sub(t.enqueued_ns));
                    }
                    (w, p) => prop_assert!(false, "model {:?}, queue {:?}", w, p.map(|p| p.ticket)),
                }
            }
            Op::TopK { now, free, k } => {
                let a = avail(free);
                let want = m.ranking(now, &a);
                let mut out = vec![Ranked::EMPTY; k];
                let got = q.top_k(now, &a, &mut out);
                prop_assert!(got.exact);
                prop_assert_eq!(got.len, k.min(want.len()));
                prop_assert_eq!(&out[..got.len], &want[..got.len]);
                prop_assert!(out[got.len..].iter().all(|r| *r == Ranked::EMPTY));
            }
            Op::Take { pick, now } => {
                if m.tasks.is_empty() {
                    prop_assert!(q.take(Ticket::NONE, now).is_none());
                    continue;
                }
                let ticket = m.tasks[pick % m.tasks.len()].0;
                let t = m.remove(ticket).unwrap();
                prop_assert_eq!(q.take(ticket, now), Some(t.clone()));
                // A second take with the same ticket finds nothing.
                prop_assert!(q.take(ticket, now).is_none());
                dequeued += 1;
                waits.push(now.saturating_sub(t.enqueued_ns));
            }
            Op::Remove { pick } => {
                if m.tasks.is_empty() {
                    continue;
                }
                let ticket = m.tasks[pick % m.tasks.len()].0;
                let t = m.remove(ticket).unwrap();
                prop_assert_eq!(q.remove(ticket), Some(t));
                prop_assert!(q.get(ticket).is_none());
                removed += 1;
            }
            Op::RemoveWhere { modulus } => {
                let mut got = Vec::new();
                let n = q.remove_where(|t| t.item % modulus == 0, |tk, t| got.push((tk, t)));
                let mut want: Vec<(Ticket, Task<u32>)> = Vec::new();
                m.tasks.retain(|(tk, t)| {
                    let hit = t.item % modulus == 0;
                    if hit {
                        want.push((*tk, t.clone()));
                    }
                    !hit
                });
                got.sort_by_key(|(tk, _)| tk.seq());
                prop_assert_eq!(n, want.len());
                prop_assert_eq!(got, want);
                removed += n as u64;
            }
            Op::Expire { now } => {
                let mut got = Vec::new();
                let n = q.expire(now, |tk, t| got.push((tk, t)));
                let mut want: Vec<(Ticket, Task<u32>)> = Vec::new();
                m.tasks.retain(|(tk, t)| {
                    let hit = t.deadline_ns.is_some_and(|d| d <= now);
                    if hit {
                        want.push((*tk, t.clone()));
                    }
                    !hit
                });
                got.sort_by_key(|(tk, _)| tk.seq());
                prop_assert_eq!(n, want.len());
                prop_assert_eq!(got, want);
                expired += n as u64;
            }
            Op::Grow { by } => {
                // Smaller storage is refused and the queue left as it was.
                if cap > 0 {
                    let back = q.grow((0..cap - 1).map(|_| Slot::new()).collect());
                    prop_assert_eq!(back.map(|s| s.len()).err().map(|s| s.len()), Some(cap - 1));
                }
                let old = q.grow((0..cap + by).map(|_| Slot::new()).collect());
                prop_assert_eq!(old.map(|s| s.len()).ok(), Some(cap));
                cap += by;
                prop_assert_eq!(q.capacity(), cap);
                // Every ticket still names its task.
                for (ticket, task) in &m.tasks {
                    prop_assert_eq!(q.get(*ticket), Some(task));
                }
            }
        }
        // Depth and counters after every operation.
        let s = q.stats();
        prop_assert_eq!(s.depth, m.tasks.len());
        prop_assert_eq!(q.len(), m.tasks.len());
        prop_assert_eq!(
            (s.dequeued, s.removed, s.expired),
            (dequeued, removed, expired)
        );
        prop_assert_eq!(
            s.enqueued,
            dequeued + removed + expired + m.tasks.len() as u64
        );
        let mut listed: Vec<Ticket> = q.iter().map(|(t, _)| t).collect();
        listed.sort_by_key(|t| t.seq());
        let mut modelled: Vec<Ticket> = m.tasks.iter().map(|(t, _)| *t).collect();
        modelled.sort_by_key(|t| t.seq());
        prop_assert_eq!(listed, modelled);
    }
    // Drain what is left: the whole order must match the reference.
    let (now, a) = (4_000, avail((500, 2_000)));
    let order: Vec<Ticket> = m.ranking(now, &a).iter().map(|r| r.ticket).collect();
    for want in order {
        let p = q.pop(now, &a).unwrap();
        prop_assert_eq!(p.ticket, want);
        waits.push(now.saturating_sub(p.task.enqueued_ns));
    }
    prop_assert!(q.is_empty());
    let h = q.wait_times();
    prop_assert_eq!(h.count(), waits.len() as u64);
    prop_assert_eq!(h.sum(), waits.iter().map(|&w| u128::from(w)).sum::<u128>());
    prop_assert_eq!(h.max(), waits.iter().copied().max().unwrap_or(0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// With an unbounded search the queue is exactly the reference.
    #[test]
    fn matches_brute_force(
        cap in prop_oneof![1usize..8, 8usize..80],
        weights in weights(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run_exact(cap, weights, &ops)?;
    }

    /// With a bounded search, every answer flagged exact is the reference's,
    /// and every answer is within `fit_bound` of the true maximum.
    #[test]
    fn bounded_search_keeps_its_guarantee(
        limit in 0usize..6,
        weights in weights(),
        tasks in prop::collection::vec((-3i32..=3, 0u64..3_000, prop::option::of(0u64..6_000), 0u64..1_000), 1..80),
        queries in prop::collection::vec((0u64..8_000, (0u64..1_200, 0u64..4_000)), 1..20),
    ) {
        let mut q = boxed(80, QueueConfig { weights, probe_limit: limit });
        let mut m = Model { weights, tasks: Vec::new() };
        for (i, &(priority, enqueued, deadline, mem)) in tasks.iter().enumerate() {
            let mut t = Task::new(u32::try_from(i).unwrap(), Resources::NONE.with_saturating(Dim::Memory, mem), enqueued)
                .with_priority(priority);
            t.deadline_ns = deadline;
            let ticket = q.push(t.clone()).unwrap();
            m.tasks.push((ticket, t));
        }
        for &(now, free) in &queries {
            let a = avail(free);
            let best = m.ranking(now, &a)[0];
            let p = q.peek(now, &a).unwrap();
            prop_assert_eq!(p.score, weights.score(p.task, now, &a));
            prop_assert!(p.score <= best.score);
            prop_assert!(p.score >= best.score - weights.fit_bound(&a));
            if p.exact {
                prop_assert_eq!((p.ticket, p.score), (best.ticket, best.score));
            }
            if weights.fit_bound(&a) == 0 {
                // Without fit the two roots decide: always exact.
                prop_assert!(p.exact);
            }
        }
    }

    /// Quantile estimates are never below the exact quantile and at most 25%
    /// above it; count, sum and max are exact.
    #[test]
    fn histogram_quantiles(
        values in prop::collection::vec(prop_oneof![0u64..100, 0u64..1_000_000, any::<u64>()], 1..300),
        q in 0u32..=1_000_000,
    ) {
        let mut h = LogHistogram::new();
        for &v in &values {
            h.record(v);
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let rank = ((sorted.len() as u64 * u64::from(q)).div_ceil(1_000_000)).max(1);
        let exact = sorted[usize::try_from(rank).unwrap() - 1];
        let est = h.quantile(Ppm::from_ppm(q)).unwrap();
        prop_assert!(exact <= est && est - exact <= exact / 4, "{} vs {}", exact, est);
        prop_assert_eq!(h.count(), values.len() as u64);
        prop_assert_eq!(h.max(), *sorted.last().unwrap());
        prop_assert_eq!(h.sum(), values.iter().map(|&v| u128::from(v)).sum::<u128>());
    }
}
