use super::*;
use crate::resource::Dim;
use std::boxed::Box;
use std::vec::Vec;

fn r(pairs: &[(Dim, u64)]) -> Resources {
    Resources::from_pairs(pairs).unwrap()
}

fn mem(n: u64) -> Resources {
    r(&[(Dim::Memory, n)])
}

fn boxed<T>(n: usize, config: QueueConfig) -> ScoredQueue<T, Box<[Slot<T>]>> {
    ScoredQueue::with_storage((0..n).map(|_| Slot::new()).collect(), config)
}

fn exact(weights: Weights) -> QueueConfig {
    QueueConfig {
        weights,
        probe_limit: usize::MAX,
    }
}

/// Checks the structural invariants and the counters.
fn check<T, S: AsRef<[Slot<T>]> + AsMut<[Slot<T>]>>(q: &ScoredQueue<T, S>) {
    q.check_invariants().unwrap();
    let s = q.stats();
    assert_eq!(
        s.enqueued,
        s.dequeued + s.removed + s.expired + q.len as u64,
        "{s:?}"
    );
}

#[test]
fn invariant_checker_catches_corruption() {
    let mut q: ArrayQueue<u8, 8> = ArrayQueue::new(exact(Weights::default()));
    for i in 0..6 {
        q.push(Task::new(i, Resources::NONE, u64::from(i)).with_deadline(100))
            .unwrap();
    }
    check(&q);
    // (corruption, expected complaint)
    type Corrupt = fn(&mut ArrayQueue<u8, 8>);
    let table: [(Corrupt, &str); 5] = [
        (|q| q.slots[3].all.key += 10_000, "all-tasks key"),
        (|q| q.slots[2].pos_all = 5, "all-tasks position map"),
        (|q| q.len_deadline -= 1, "deadline heap length"),
        (|q| q.stats.removed += 1, "counters"),
        (
            |q| q.earliest_deadline = Some(101),
            "earliest deadline is not a lower bound",
        ),
    ];
    for (corrupt, complaint) in table {
        let mut bad: ArrayQueue<u8, 8> = ArrayQueue::new(exact(Weights::default()));
        for i in 0..6 {
            bad.push(Task::new(i, Resources::NONE, u64::from(i)).with_deadline(100))
                .unwrap();
        }
        corrupt(&mut bad);
        assert_eq!(bad.check_invariants(), Err(complaint));
    }
    // Swapping two heap cells (with their position maps) breaks the order.
    let (a, b) = (q.slots[0].all, q.slots[1].all);
    q.put(Heap::All, 0, b);
    q.put(Heap::All, 1, a);
    assert_eq!(q.check_invariants(), Err("all-tasks heap order"));
}

fn drain<T, S: AsRef<[Slot<T>]> + AsMut<[Slot<T>]>>(
    q: &mut ScoredQueue<T, S>,
    now: u64,
    avail: &Availability,
) -> Vec<T> {
    core::iter::from_fn(|| q.pop(now, avail).map(|p| p.task.item)).collect()
}

#[test]
fn priority_then_fifo() {
    let mut q: ArrayQueue<u32, 8> = ArrayQueue::new(exact(Weights::PRIORITY_ONLY));
    // (item, priority)
    let pushes = [
        (1, 0),
        (2, 0),
        (3, 9),
        (4, -5),
        (5, 9),
        (6, 0),
        (7, i32::MAX),
    ];
    for (item, p) in pushes {
        q.push(Task::new(item, Resources::NONE, 0).with_priority(p))
            .unwrap();
    }
    check(&q);
    assert_eq!(drain(&mut q, 0, &Availability::NONE), [7, 3, 5, 1, 2, 6, 4]);
    check(&q);
}

#[test]
fn aging_overtakes_after_the_documented_time() {
    // One priority level = 1000 ns of waiting: a task enqueued at 0 with
    // priority 0 is ahead of a priority-2 task enqueued after 2000 ns, behind
    // one enqueued before, and ties (then wins on FIFO) at exactly 2000.
    let w = Weights {
        priority: 1_000,
        aging: 1,
        ..Weights::PRIORITY_ONLY
    };
    // (enqueue time of the high-priority task, does the old one go first?)
    let table = [
        (0, false),
        (1_999, false),
        (2_000, true),
        (2_001, true),
        (9_000, true),
    ];
    for (t_high, old_first) in table {
        let mut q: ArrayQueue<&str, 4> = ArrayQueue::new(exact(w));
        q.push(Task::new("old", Resources::NONE, 0)).unwrap();
        q.push(Task::new("high", Resources::NONE, t_high).with_priority(2))
            .unwrap();
        // The order is the same at every time after both arrived.
        for now in [t_high, t_high + 1, t_high + 1_000_000, u64::MAX] {
            let first = q.peek(now, &Availability::NONE).unwrap().task.item;
            assert_eq!(first == "old", old_first, "t_high={t_high} now={now}");
        }
    }
}

#[test]
fn deadline_urgency_overtakes_priority() {
    // Slack weight 10, horizon 100: a priority-0 task with a deadline catches
    // up 10 points per ns once its slack is under 100 ns.
    let w = Weights {
        priority: 1_000,
        aging: 0,
        slack: 10,
        slack_horizon_ns: 100,
        ..Weights::PRIORITY_ONLY
    };
    let mut q: ArrayQueue<&str, 4> = ArrayQueue::new(exact(w));
    q.push(Task::new("vip", Resources::NONE, 0).with_priority(1))
        .unwrap();
    q.push(
        Task::new("due", Resources::NONE, 0)
            .with_deadline(10_000)
            .with_expected(1_000),
    )
    .unwrap();
    // Latest start 9_000; the deadline term starts at 8_900 and reaches the
    // priority gap of 1000 points 100 ns later, at 9_000 (a tie: "vip" was
    // pushed first), then leads.
    // (now, first, its score)
    let table = [
        (0, "vip", 1_000),
        (8_900, "vip", 1_000),
        (8_999, "vip", 1_000),
        (9_000, "vip", 1_000),
        (9_001, "due", 1_010),
        (20_000, "due", 10 * (100 + 11_000)),
    ];
    for (now, first, score) in table {
        let p = q.peek(now, &Availability::NONE).unwrap();
        assert_eq!(
            (p.task.item, p.score, p.exact),
            (first, score, true),
            "now={now}"
        );
    }
    // Earlier deadline first among deadline tasks (least slack first).
    let mut q: ArrayQueue<u8, 4> = ArrayQueue::new(exact(w));
    for (item, d, e) in [(1, 5_000, 0), (2, 4_000, 0), (3, 5_000, 2_000)] {
        q.push(
            Task::new(item, Resources::NONE, 0)
                .with_deadline(d)
                .with_expected(e),
        )
        .unwrap();
    }
    // Slacks at 4_000: 1000, 0, -1000.
    assert_eq!(drain(&mut q, 4_000, &Availability::NONE), [3, 2, 1]);
}

#[test]
fn fit_prefers_what_fits_now() {
    let w = Weights {
        priority: 1_000_000,
        fits: 2,
        alignment: 1,
        ..Weights::PRIORITY_ONLY
    };
    let mut q: ArrayQueue<&str, 4> = ArrayQueue::new(exact(w));
    q.push(Task::new("big", mem(900), 0).with_priority(1))
        .unwrap();
    q.push(Task::new("small", mem(100), 0)).unwrap();
    q.push(Task::new("half", mem(500), 0)).unwrap();
    let cap = mem(1_000);
    // (free memory, expected first, its score)
    let table = [
        // Everything fits: priority decides (1_000_000 + 2_000_000 + align 0.9*1.0).
        (1_000, "big", 1_000_000 + 2_000_000 + 900_000),
        // Big does not fit: the best-aligned of the rest (half: 0.5 * 0.6).
        (600, "half", 2_000_000 + 300_000),
        // Only small fits.
        (400, "small", 2_000_000 + 40_000),
        // Nothing fits: back to priority.
        (50, "big", 1_000_000),
    ];
    for (free, first, score) in table {
        let avail = Availability::new(mem(free), cap);
        let p = q.peek(0, &avail).unwrap();
        assert_eq!((p.task.item, p.score), (first, score), "free={free}");
    }
}

#[test]
fn fit_decides_among_urgent_deadlines_below_the_root() {
    // Only deadline urgency and fit count. The most urgent task does not fit;
    // a less urgent one that fits wins, and it is not the root of either heap:
    // the search must walk the deadline heap, not only read its root.
    let w = Weights {
        priority: 0,
        aging: 0,
        slack: 1,
        slack_horizon_ns: 0,
        fits: 1,
        alignment: 0,
    };
    let mut q: ArrayQueue<&str, 8> = ArrayQueue::new(exact(w));
    let now = 10_000_000;
    // (item, memory, deadline): slack = deadline - now.
    let tasks = [
        ("late, big", 900, now - 5_000_000),
        ("calm", 10, now + 1_000),
        ("late, fits", 10, now - 4_500_000),
        ("later, big", 900, now - 4_900_000),
        ("fits, less late", 10, now - 4_000_000),
    ];
    for (item, m, d) in tasks {
        q.push(Task::new(item, mem(m), 0).with_deadline(d)).unwrap();
    }
    let avail = Availability::new(mem(100), mem(1_000));
    // (expected order, scores): 4.5e6 + 1e6, 5e6, 4.9e6, 4e6 + 1e6, 1e6.
    let mut order = Vec::new();
    while let Some(p) = q.pop(now, &avail) {
        assert!(p.exact);
        order.push((p.task.item, p.score));
    }
    assert_eq!(
        order,
        [
            ("late, fits", 5_500_000),
            ("late, big", 5_000_000),
            ("fits, less late", 5_000_000),
            ("later, big", 4_900_000),
            ("calm", 1_000_000),
        ]
    );
}

#[test]
fn ties_between_fit_and_priority_stay_fifo() {
    // A fitting priority-0 task scores exactly what a non-fitting priority-1
    // task scores. The earlier one must win although its heap key is lower:
    // the pruning bound has to honour the sequence tie-break.
    let w = Weights {
        priority: 1_000_000,
        fits: 1,
        ..Weights::PRIORITY_ONLY
    };
    for (first_fits, expected) in [(true, "fits"), (false, "big")] {
        let mut q: ArrayQueue<&str, 4> = ArrayQueue::new(exact(w));
        let fits = Task::new("fits", mem(10), 0);
        let big = Task::new("big", mem(500), 0).with_priority(1);
        if first_fits {
            q.push(fits).unwrap();
            q.push(big).unwrap();
        } else {
            q.push(big).unwrap();
            q.push(fits).unwrap();
        }
        let avail = Availability::new(mem(100), mem(1_000));
        let p = q.peek(0, &avail).unwrap();
        assert_eq!((p.task.item, p.score), (expected, 1_000_000));
    }
}

#[test]
fn full_queue_hands_the_task_back_and_tickets_die() {
    let mut q: ArrayQueue<u32, 2> = ArrayQueue::default();
    let a = q.push(Task::new(1, Resources::NONE, 0)).unwrap();
    let b = q.push(Task::new(2, Resources::NONE, 0)).unwrap();
    let back = q
        .push(Task::new(3, mem(7), 5).with_priority(4))
        .unwrap_err();
    assert_eq!((back.item, back.request, back.priority), (3, mem(7), 4));
    assert_eq!(q.stats().rejected_full, 1);
    assert_eq!(q.get(a).map(|t| t.item), Some(1));
    assert_eq!(q.take(a, 10).map(|t| t.item), Some(1));
    // The slot is reused by the next push, but the old ticket stays dead.
    let c = q.push(Task::new(4, Resources::NONE, 0)).unwrap();
    assert_eq!((c.slot, c.seq()), (a.slot, 2));
    assert!(q.get(a).is_none() && q.take(a, 0).is_none() && q.remove(a).is_none());
    assert!(q.get(Ticket::NONE).is_none());
    assert_eq!(q.remove(b).map(|t| t.item), Some(2));
    assert_eq!(q.remove(b).map(|t| t.item), None);
    let s = q.stats();
    assert_eq!(
        (s.depth, s.enqueued, s.dequeued, s.removed, s.max_depth),
        (1, 3, 1, 1, 2)
    );
    assert_eq!((q.wait_times().count(), q.wait_times().max()), (1, 10));
    check(&q);
}

#[test]
fn remove_by_ticket_keeps_both_heaps_valid() {
    let w = Weights {
        priority: 7,
        aging: 3,
        slack: 2,
        slack_horizon_ns: 50,
        ..Weights::PRIORITY_ONLY
    };
    let mut q = boxed::<usize>(64, exact(w));
    let mut tickets = Vec::new();
    for i in 0..64usize {
        let mut t = Task::new(i, Resources::NONE, (i as u64 * 37) % 101)
            .with_priority(i32::try_from(i * 13 % 7).unwrap() - 3);
        if i % 3 != 0 {
            t = t.with_deadline((i as u64 * 53) % 400);
        }
        tickets.push(q.push(t).unwrap());
    }
    check(&q);
    // Remove in a scrambled order, checking the structure after each.
    for k in 0..64usize {
        let i = (k * 29) % 64;
        assert_eq!(q.remove(tickets[i]).map(|t| t.item), Some(i));
        check(&q);
    }
    assert!(q.is_empty());
}

#[test]
fn remove_where_and_expire() {
    let mut q: ArrayQueue<u32, 8> = ArrayQueue::new(exact(Weights::default()));
    for i in 0..8u32 {
        let mut t = Task::new(i, Resources::NONE, 0).with_priority(i32::try_from(i).unwrap());
        if i % 2 == 0 {
            t = t.with_deadline(100 * u64::from(i));
        }
        q.push(t).unwrap();
    }
    // Nothing has expired at 0 except the task due at 0.
    let mut gone = Vec::new();
    assert_eq!(q.expire(0, |_, t| gone.push(t.item)), 1);
    assert_eq!(gone, [0]);
    // At 199: none more; at 400 the ones due at 200 and 400.
    assert_eq!(q.expire(199, |_, t| gone.push(t.item)), 0);
    assert_eq!(q.expire(400, |_, t| gone.push(t.item)), 2);
    gone.sort_unstable();
    assert_eq!(gone, [0, 2, 4]);
    check(&q);
    let mut cancelled = Vec::new();
    let n = q.remove_where(
        |t| t.item % 3 == 0,
        |tk, t| cancelled.push((tk.seq(), t.item)),
    );
    assert_eq!(n, 2);
    cancelled.sort_unstable();
    assert_eq!(cancelled, [(3, 3), (6, 6)]);
    check(&q);
    let s = q.stats();
    assert_eq!((s.expired, s.removed, s.depth), (3, 2, 3));
    assert_eq!(drain(&mut q, 500, &Availability::NONE), [7, 5, 1]);
    // An empty sweep changes nothing.
    assert_eq!(q.remove_where(|_| true, |_, _| {}), 0);
    assert_eq!(q.expire(u64::MAX, |_, _| {}), 0);
}

#[test]
fn top_k_matches_brute_force() {
    let w = Weights {
        priority: 1_000,
        aging: 1,
        slack: 3,
        slack_horizon_ns: 500,
        fits: 1,
        alignment: 1,
    };
    let mut q: ArrayQueue<usize, 32> = ArrayQueue::new(exact(w));
    for i in 0..32usize {
        let mut t = Task::new(i, mem((i as u64 * 131) % 1_000), (i as u64 * 71) % 2_000)
            .with_priority(i32::try_from(i * 7 % 5).unwrap());
        if i % 4 == 1 {
            t = t.with_deadline((i as u64 * 97) % 3_000).with_expected(200);
        }
        q.push(t).unwrap();
    }
    let avail = Availability::new(mem(600), mem(1_000));
    for now in [0, 1_000, 2_500, 10_000] {
        let mut all: Vec<Ranked> = q
            .iter()
            .map(|(ticket, t)| Ranked {
                ticket,
                score: w.score(t, now, &avail),
            })
            .collect();
        all.sort_by(|a, b| {
            b.score
                .cmp(&a.score)
                .then(a.ticket.seq().cmp(&b.ticket.seq()))
        });
        for k in [1, 3, 8, 32, 40] {
            let mut out = std::vec![Ranked::EMPTY; k];
            let got = q.top_k(now, &avail, &mut out);
            assert!(got.exact);
            assert_eq!(got.len, k.min(32));
            assert_eq!(&out[..got.len], &all[..got.len], "now={now} k={k}");
        }
    }
    assert_eq!(q.top_k(0, &avail, &mut []).len, 0);
}

#[test]
fn probe_limit_bounds_work_and_error() {
    // Fit dominates: every task is a candidate, so a small budget cannot finish.
    let w = Weights {
        priority: 1,
        fits: 0,
        alignment: 10,
        ..Weights::PRIORITY_ONLY
    };
    for limit in [0, 1, 5, 1_000] {
        let mut q = boxed::<u64>(
            200,
            QueueConfig {
                weights: w,
                probe_limit: limit,
            },
        );
        for i in 0..200u64 {
            q.push(Task::new(i, mem(i * 5), 0).with_priority((i % 10) as i32))
                .unwrap();
        }
        let avail = Availability::new(mem(1_000), mem(1_000));
        let true_max = q.iter().map(|(_, t)| w.score(t, 0, &avail)).max().unwrap();
        let p = q.peek(0, &avail).unwrap();
        assert_eq!(p.exact, limit >= 1_000, "limit {limit}");
        assert!(p.score <= true_max);
        assert!(p.score >= true_max - w.fit_bound(&avail), "limit {limit}");
        if p.exact {
            assert_eq!(p.score, true_max);
        }
    }
}

#[test]
fn without_fit_a_peek_evaluates_only_the_roots() {
    // Many equal keys: the tie-break by sequence must prune at once.
    let mut q = boxed::<u32>(
        1_000,
        QueueConfig {
            weights: Weights::PRIORITY_ONLY,
            probe_limit: 0,
        },
    );
    for i in 0..1_000 {
        q.push(Task::new(i, Resources::NONE, 0).with_deadline(5))
            .unwrap();
    }
    let p = q.peek(0, &Availability::NONE).unwrap();
    // probe_limit 0 and still exact: nothing beyond the roots was needed.
    assert_eq!((p.task.item, p.exact), (0, true));
    let mut out = [Ranked::EMPTY; 3];
    // Top 3 needs more than the roots: inexact with no budget, exact with one.
    assert!(!q.top_k(0, &Availability::NONE, &mut out).exact);
}

#[test]
fn set_config_rebuilds_the_order() {
    let mut q: ArrayQueue<&str, 4> = ArrayQueue::new(exact(Weights::PRIORITY_ONLY));
    q.push(Task::new("old", Resources::NONE, 0)).unwrap();
    q.push(Task::new("new", Resources::NONE, 1_000).with_priority(1))
        .unwrap();
    assert_eq!(q.peek(2_000, &Availability::NONE).unwrap().task.item, "new");
    q.set_config(exact(Weights {
        priority: 1,
        aging: 1,
        ..Weights::PRIORITY_ONLY
    }));
    check(&q);
    assert_eq!(q.peek(2_000, &Availability::NONE).unwrap().task.item, "old");
}

/// 10,000 interleaved pushes and pops (with cancellations and expiry) at a
/// depth of up to 1,000: the structure, the counters and the histogram stay
/// consistent, every task leaves exactly once, and each pop is the maximum.
#[test]
fn under_load() {
    let w = Weights {
        priority: 1_000,
        aging: 1,
        slack: 2,
        slack_horizon_ns: 5_000,
        fits: 10,
        alignment: 1,
    };
    let mut q = boxed::<u64>(1_000, exact(w));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut now = 0u64;
    let mut live = std::collections::BTreeMap::new();
    let mut out_count = 0u64;
    let mut waits = Vec::new();
    for step in 0..10_000u64 {
        now += next() % 100;
        let avail = Availability::new(mem(next() % 1_000), mem(1_000));
        let r = next() % 10;
        if r < 5 {
            let mut t =
                Task::new(step, mem(next() % 1_000), now).with_priority((next() % 7) as i32);
            if next() % 4 == 0 {
                t = t
                    .with_deadline(now + next() % 20_000)
                    .with_expected(next() % 1_000);
            }
            match q.push(t) {
                Ok(ticket) => {
                    live.insert(step, ticket);
                }
                Err(t) => assert_eq!((t.item, q.len()), (step, 1_000)),
            }
        } else if r < 9 {
            let best = q.iter().map(|(_, t)| w.score(t, now, &avail)).max();
            if let Some(p) = q.pop(now, &avail) {
                assert_eq!(Some(p.score), best);
                assert!(p.exact);
                assert_eq!(live.remove(&p.task.item), Some(p.ticket));
                waits.push(now - p.task.enqueued_ns);
                out_count += 1;
            } else {
                assert!(best.is_none());
            }
        } else if next() % 2 == 0 {
            if let Some((&item, &ticket)) = live.iter().nth((next() % 8) as usize) {
                assert_eq!(q.remove(ticket).map(|t| t.item), Some(item));
                live.remove(&item);
                out_count += 1;
            }
        } else {
            let n = q.expire(now, |tk, t| {
                assert_eq!(live.remove(&t.item), Some(tk));
                assert!(t.deadline_ns.unwrap() <= now);
            });
            out_count += n as u64;
        }
        assert_eq!(q.len(), live.len());
        if step % 500 == 0 {
            check(&q);
        }
    }
    check(&q);
    let s = q.stats();
    assert_eq!(s.enqueued, out_count + q.len() as u64);
    assert_eq!(s.dequeued, waits.len() as u64);
    assert!(s.max_depth <= 1_000 && s.max_depth >= 100, "{s:?}");
    let h = q.wait_times();
    assert_eq!(h.count(), waits.len() as u64);
    assert_eq!(h.sum(), waits.iter().map(|&w| u128::from(w)).sum::<u128>());
    assert_eq!(h.max(), waits.iter().copied().max().unwrap());
    waits.sort_unstable();
    let exact_p99 = waits[(waits.len() * 99).div_ceil(100) - 1];
    let p99 = h.p99().unwrap();
    assert!(exact_p99 <= p99 && p99 <= exact_p99 + exact_p99 / 4);
}

#[test]
fn capacity_comes_from_storage() {
    let q = boxed::<()>(3, QueueConfig::default());
    assert_eq!((q.capacity(), q.len(), q.is_empty()), (3, 0, true));
    let mut empty = boxed::<()>(0, QueueConfig::default());
    assert!(empty.push(Task::new((), Resources::NONE, 0)).is_err());
    assert!(empty.pop(0, &Availability::NONE).is_none());
    assert!(empty.peek(0, &Availability::NONE).is_none());
    let dbg = std::format!("{empty:?}");
    assert!(dbg.contains("rejected_full: 1"), "{dbg}");
}

#[test]
fn growing_keeps_every_task_its_ticket_and_the_heaps_their_order() {
    let config = exact(Weights {
        priority: 1_000,
        aging: 1,
        ..Weights::PRIORITY_ONLY
    });
    // Two queues fed the same tasks: one grows from a single slot, doubling
    // each time it is full; the other had room from the start.
    let mut grown = boxed::<u32>(1, config);
    let mut roomy = boxed::<u32>(64, config);
    let mut tickets = Vec::new();
    for i in 0..40u32 {
        let mut task = Task::new(i, mem(u64::from(i % 7) * 100), u64::from(i * 3))
            .with_priority(i32::try_from(i % 5).unwrap());
        if i % 3 == 0 {
            task = task.with_deadline(u64::from(500 + i * 11));
        }
        let ticket = match grown.push(task.clone()) {
            Ok(t) => t,
            Err(back) => {
                let cap = grown.capacity();
                let old = grown.grow((0..cap * 2).map(|_| Slot::new()).collect());
                assert_eq!(old.map(|s| s.len()).ok(), Some(cap));
                check(&grown);
                grown.push(back).unwrap()
            }
        };
        roomy.push(task).unwrap();
        tickets.push(ticket);
        // Every earlier ticket still names its task.
        for (j, t) in tickets.iter().enumerate() {
            assert_eq!(
                grown.get(*t).map(|t| t.item),
                Some(u32::try_from(j).unwrap())
            );
        }
    }
    assert_eq!(grown.capacity(), 64);
    check(&grown);
    // A smaller storage is handed back and changes nothing.
    assert_eq!(
        grown
            .grow((0..63).map(|_| Slot::new()).collect())
            .unwrap_err()
            .len(),
        63
    );
    check(&grown);
    // Both queues pop in the same order, deadlines expire alike.
    assert_eq!(grown.expire(600, |_, _| ()), roomy.expire(600, |_, _| ()));
    let free = Availability::new(mem(300), mem(1_000));
    while let Some(a) = roomy.pop(900, &free) {
        let b = grown.pop(900, &free).unwrap();
        assert_eq!((a.task.item, a.score), (b.task.item, b.score));
    }
    assert!(grown.is_empty());
    check(&grown);
}
