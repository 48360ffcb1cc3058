//! Fuzzes `respool_core::queue::ScoredQueue` with arbitrary operations,
//! weights, clocks (which may jump or go backwards), requests and free
//! vectors, all over their full ranges.
//!
//! Two queues of the same capacity run in lockstep: one with an unbounded
//! search, one with the input's probe limit. A reference model kept here
//! (a vector scored by brute force with `Weights::score`) must agree with the
//! exact queue on every answer: pushes and refusals, the popped ticket and
//! score, the top-k window, takes, cancellations and expiries. The bounded
//! queue must return a score within `Weights::fit_bound` of the maximum, and
//! the maximum itself whenever it says `exact`. After every step both queues
//! pass their structural check (heap order, position maps, keys, counters;
//! available under `cfg(fuzzing)`), and the counters and wait histogram
//! match the model's.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use respool_core::queue::{
    Availability, QueueConfig, Ranked, ScoredQueue, Slot, Task, Ticket, Weights,
};
use respool_core::{Dim, Resources};

#[derive(Arbitrary, Debug, Clone, Copy)]
struct RawWeights {
    priority: u32,
    aging: u32,
    slack: u32,
    slack_horizon_ns: u64,
    fits: u32,
    alignment: u32,
}

impl RawWeights {
    fn get(self) -> Weights {
        Weights {
            priority: self.priority,
            aging: self.aging,
            slack: self.slack,
            slack_horizon_ns: self.slack_horizon_ns,
            fits: self.fits,
            alignment: self.alignment,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct RawAvail {
    free_mem: Option<u64>,
    free_cpu: Option<u64>,
    cap_mem: Option<u64>,
    cap_cpu: Option<u64>,
}

fn resources(mem: Option<u64>, cpu: Option<u64>) -> Resources {
    let mut r = Resources::NONE;
    if let Some(v) = mem {
        r = r.with_saturating(Dim::Memory, v);
    }
    if let Some(v) = cpu {
        r = r.with_saturating(Dim::Cpu, v);
    }
    r
}

impl RawAvail {
    fn get(self) -> Availability {
        Availability::new(
            resources(self.free_mem, self.free_cpu),
            resources(self.cap_mem, self.cap_cpu),
        )
    }
}

#[derive(Arbitrary, Debug)]
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
        avail: RawAvail,
    },
    TopK {
        now: u64,
        avail: RawAvail,
        k: u8,
    },
    Take {
        pick: u16,
        now: u64,
    },
    Remove {
        pick: u16,
    },
    RemoveWhere {
        modulus: u8,
    },
    Expire {
        now: u64,
    },
    SetWeights {
        weights: RawWeights,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    probe_limit: u8,
    weights: Option<RawWeights>,
    ops: Vec<Op>,
}

type Queue = ScoredQueue<u32, Box<[Slot<u32>]>>;

fn queue(capacity: usize, weights: Weights, probe_limit: usize) -> Queue {
    ScoredQueue::with_storage(
        (0..capacity).map(|_| Slot::new()).collect(),
        QueueConfig {
            weights,
            probe_limit,
        },
    )
}

/// The queued tasks, best first, by brute force.
fn ranking(
    weights: &Weights,
    tasks: &[(Ticket, Task<u32>)],
    now: u64,
    a: &Availability,
) -> Vec<Ranked> {
    let mut all: Vec<Ranked> = tasks
        .iter()
        .map(|(ticket, t)| Ranked {
            ticket: *ticket,
            score: weights.score(t, now, a),
        })
        .collect();
    all.sort_by_key(|r| (std::cmp::Reverse(r.score), r.ticket.seq()));
    all
}

fn take_model(tasks: &mut Vec<(Ticket, Task<u32>)>, ticket: Ticket) -> Task<u32> {
    let i = tasks
        .iter()
        .position(|(t, _)| *t == ticket)
        .expect("ticket in the model");
    tasks.remove(i).1
}

/// The bounded queue's answer is the truth's when flagged exact, and within
/// the fit bound of it always.
fn check_bounded(
    bounded: &Queue,
    weights: &Weights,
    now: u64,
    a: &Availability,
    best: Option<Ranked>,
) {
    let p = bounded.peek(now, a);
    match (p, best) {
        (None, None) => {}
        (Some(p), Some(best)) => {
            assert_eq!(p.score, weights.score(p.task, now, a));
            assert!(p.score <= best.score);
            assert!(p.score >= best.score - weights.fit_bound(a));
            if p.exact {
                assert_eq!((p.ticket, p.score), (best.ticket, best.score));
            }
        }
        (p, b) => panic!("bounded {:?} vs model {:?}", p.map(|p| p.ticket), b),
    }
}

fuzz_target!(|input: Input| {
    let capacity = usize::from(input.capacity % 48) + 1;
    let probe_limit = usize::from(input.probe_limit % 16);
    let mut weights = input.weights.map_or_else(Weights::default, RawWeights::get);
    let mut exact = queue(capacity, weights, usize::MAX);
    let mut bounded = queue(capacity, weights, probe_limit);
    let mut model: Vec<(Ticket, Task<u32>)> = Vec::new();
    let (mut dequeued, mut removed, mut expired) = (0u64, 0u64, 0u64);
    let (mut wait_sum, mut wait_max) = (0u128, 0u64);

    for (n, op) in input.ops.iter().take(256).enumerate() {
        let item = u32::try_from(n).unwrap_or(u32::MAX);
        match *op {
            Op::Push {
                priority,
                enqueued,
                deadline,
                expected,
                mem,
                cpu,
            } => {
                let task = Task {
                    item,
                    request: resources(mem, cpu),
                    priority,
                    enqueued_ns: enqueued,
                    deadline_ns: deadline,
                    expected_ns: expected,
                };
                let a = exact.push(task.clone());
                let b = bounded.push(task.clone());
                match (a, b) {
                    (Ok(ta), Ok(tb)) => {
                        assert!(model.len() < capacity);
                        assert_eq!(ta, tb, "same history, same slots and tickets");
                        assert_eq!(exact.get(ta), Some(&task));
                        model.push((ta, task));
                    }
                    (Err(x), Err(y)) => {
                        assert_eq!(model.len(), capacity);
                        assert_eq!((&x, &y), (&task, &task));
                    }
                    _ => panic!("the two queues disagree on fullness"),
                }
            }
            Op::Pop { now, avail } => {
                let a = avail.get();
                let best = ranking(&weights, &model, now, &a).first().copied();
                check_bounded(&bounded, &weights, now, &a, best);
                match (exact.pop(now, &a), best) {
                    (None, None) => {}
                    (Some(p), Some(best)) => {
                        assert_eq!(
                            (p.ticket, p.score, p.exact),
                            (best.ticket, best.score, true)
                        );
                        let t = take_model(&mut model, best.ticket);
                        assert_eq!(p.task, t);
                        assert_eq!(bounded.take(best.ticket, now), Some(t.clone()));
                        dequeued += 1;
                        let w = now.saturating_sub(t.enqueued_ns);
                        wait_sum += u128::from(w);
                        wait_max = wait_max.max(w);
                    }
                    (p, b) => panic!("queue {:?} vs model {:?}", p.map(|p| p.ticket), b),
                }
            }
            Op::TopK { now, avail, k } => {
                let a = avail.get();
                let want = ranking(&weights, &model, now, &a);
                let k = usize::from(k % 9);
                let mut out = vec![Ranked::EMPTY; k];
                let got = exact.top_k(now, &a, &mut out);
                assert!(got.exact);
                assert_eq!(got.len, k.min(want.len()));
                assert_eq!(&out[..got.len], &want[..got.len]);
                let mut out = vec![Ranked::EMPTY; k];
                let got = bounded.top_k(now, &a, &mut out);
                if got.exact {
                    assert_eq!(&out[..got.len], &want[..got.len]);
                }
                // Listed once each, best first.
                for pair in out[..got.len].windows(2) {
                    assert!(
                        (pair[0].score, std::cmp::Reverse(pair[0].ticket.seq()))
                            > (pair[1].score, std::cmp::Reverse(pair[1].ticket.seq()))
                    );
                }
            }
            Op::Take { pick, now } => {
                if model.is_empty() {
                    assert!(exact.take(Ticket::NONE, now).is_none());
                    continue;
                }
                let ticket = model[usize::from(pick) % model.len()].0;
                let t = take_model(&mut model, ticket);
                assert_eq!(exact.take(ticket, now), Some(t.clone()));
                assert_eq!(bounded.take(ticket, now), Some(t.clone()));
                assert!(exact.take(ticket, now).is_none(), "a ticket works once");
                dequeued += 1;
                let w = now.saturating_sub(t.enqueued_ns);
                wait_sum += u128::from(w);
                wait_max = wait_max.max(w);
            }
            Op::Remove { pick } => {
                if model.is_empty() {
                    continue;
                }
                let ticket = model[usize::from(pick) % model.len()].0;
                let t = take_model(&mut model, ticket);
                assert_eq!(exact.remove(ticket), Some(t.clone()));
                assert_eq!(bounded.remove(ticket), Some(t));
                assert!(exact.get(ticket).is_none());
                removed += 1;
            }
            Op::RemoveWhere { modulus } => {
                let m = u32::from(modulus % 5) + 1;
                let mut got = Vec::new();
                let n = exact.remove_where(|t| t.item % m == 0, |tk, t| got.push((tk, t)));
                let n2 = bounded.remove_where(|t| t.item % m == 0, |_, _| {});
                let mut want = Vec::new();
                model.retain(|(tk, t)| {
                    let hit = t.item % m == 0;
                    if hit {
                        want.push((*tk, t.clone()));
                    }
                    !hit
                });
                got.sort_by_key(|(tk, _)| tk.seq());
                assert_eq!((n, n2), (want.len(), want.len()));
                assert_eq!(got, want);
                removed += n as u64;
            }
            Op::Expire { now } => {
                let mut got = Vec::new();
                let n = exact.expire(now, |tk, t| got.push((tk, t)));
                let n2 = bounded.expire(now, |_, _| {});
                let mut want = Vec::new();
                model.retain(|(tk, t)| {
                    let hit = t.deadline_ns.is_some_and(|d| d <= now);
                    if hit {
                        want.push((*tk, t.clone()));
                    }
                    !hit
                });
                got.sort_by_key(|(tk, _)| tk.seq());
                assert_eq!((n, n2), (want.len(), want.len()));
                assert_eq!(got, want);
                expired += n as u64;
            }
            Op::SetWeights { weights: w } => {
                weights = w.get();
                exact.set_config(QueueConfig {
                    weights,
                    probe_limit: usize::MAX,
                });
                bounded.set_config(QueueConfig {
                    weights,
                    probe_limit,
                });
            }
        }
        for q in [&exact, &bounded] {
            q.check_invariants().expect("structural invariant");
            let s = q.stats();
            assert_eq!(s.depth, model.len());
            assert_eq!(
                (s.dequeued, s.removed, s.expired),
                (dequeued, removed, expired)
            );
            let h = q.wait_times();
            assert_eq!(
                (h.count(), h.sum(), h.max()),
                (dequeued, wait_sum, wait_max)
            );
            if let (Some(p50), Some(p99)) = (h.p50(), h.p99()) {
                assert!(p50 <= p99 && p99 <= wait_max);
            }
        }
    }
});
