//! The wait queue: the core's [`ScoredQueue`] behind a FIFO lane.
//!
//! Under saturation most waiters are alike: the same priority, no deadline,
//! and the pool's default weights, which have no fit term. Their scores then
//! differ by aging alone, so the scored queue's order among them is their
//! arrival order, and its heap is paid for nothing: a removal walks its
//! depth (17 levels at 100,000 waiters, most of them cache misses in an
//! array of several megabytes) and finding the best one costs a scored
//! search (about 1,250 instructions, `iai_queue`'s `top1`). Issue 21 asks
//! that the cost of a waiting task not depend on how many wait.
//!
//! So waiters go into a plain FIFO lane while
//!
//! - the weights have no fit term (the order does not depend on what is
//!   free),
//! - the waiter has no deadline (no slack term), and
//! - the scored queue is empty and every waiter in the lane has the
//!   waiter's priority.
//!
//! Under those conditions the lane's order *is* the scored queue's order
//! (highest score first, then first pushed): the scores are
//! `w_p * priority + w_a * (now - enqueued)` with one priority, `w_a >= 0`
//! and `enqueued` read under the scheduler's lock in push order. The first
//! waiter that breaks them (another priority, a deadline) moves the whole
//! lane into the scored queue, in order, and joins it there; the lane is
//! used again once the scored queue has emptied. The move keeps each task's
//! enqueue time, and pushes in arrival order give the same ties, so the
//! order is exactly the one the scored queue alone would have kept; the
//! move is `O(n)` (each task pushed has a lower key than those before it,
//! so its sift-up stops at once), and happens at most once per period in
//! which the scored queue holds anything.
//!
//! Both parts together hold at most `max_slots` waiters.

use std::collections::VecDeque;

use respool_core::queue::{
    Availability, QueueConfig, Ranked, ScoredQueue, Slot, Task, Ticket, TopK,
};

/// Slots of a new scored queue: it doubles as it fills, up to `max_slots`.
const INITIAL_WAIT_SLOTS: usize = 64;

/// The most slots a scored queue may have (the core queue's limit).
pub(crate) const MAX_WAIT_SLOTS: usize = u32::MAX as usize;

fn storage<T>(slots: usize) -> Box<[Slot<T>]> {
    (0..slots).map(|_| Slot::new()).collect()
}

/// Which waiter: for the lookahead's head, and to take the one chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiter {
    /// In the FIFO lane, by its lane sequence number (never reused).
    Lane(u64),
    /// In the scored queue.
    Scored(Ticket),
}

/// Waiting tasks: a FIFO lane and a scored queue (see the
/// [module documentation](self)).
pub(crate) struct WaitQueue<T> {
    scored: ScoredQueue<T, Box<[Slot<T>]>>,
    /// Oldest first, each with its lane sequence number. Non-empty only
    /// while `scored` is empty.
    lane: VecDeque<(u64, Task<T>)>,
    next_lane: u64,
    /// The weights have no fit term: the lane may be used.
    fit_free: bool,
    max_slots: usize,
    max_depth: usize,
}

impl<T> WaitQueue<T> {
    /// An empty queue ordered by `config`, holding at most `max_slots`
    /// waiters (at most [`MAX_WAIT_SLOTS`]).
    pub(crate) fn new(config: QueueConfig, max_slots: usize) -> WaitQueue<T> {
        let max_slots = max_slots.min(MAX_WAIT_SLOTS);
        let w = config.weights;
        WaitQueue {
            scored: ScoredQueue::with_storage(storage(max_slots.min(INITIAL_WAIT_SLOTS)), config),
            lane: VecDeque::new(),
            next_lane: 0,
            fit_free: w.fits == 0 && w.alignment == 0,
            max_slots,
            max_depth: 0,
        }
    }

    /// How many wait.
    pub(crate) fn len(&self) -> usize {
        self.lane.len() + self.scored.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lane.is_empty() && self.scored.is_empty()
    }

    /// The most that waited at once.
    pub(crate) fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Whether the weights have no fit term: then no waiter's score
    /// depends on what is free.
    pub(crate) fn fit_free(&self) -> bool {
        self.fit_free
    }

    /// Whether the waiters are in the FIFO lane (else in the scored queue).
    pub(crate) fn in_lane(&self) -> bool {
        !self.lane.is_empty()
    }

    /// Adds a waiter; hands it back when `max_slots` wait already.
    // The task comes back whole when the queue is full (as the core's does).
    #[allow(clippy::result_large_err)]
    pub(crate) fn push(&mut self, task: Task<T>) -> Result<(), Task<T>> {
        if self.len() >= self.max_slots {
            return Err(task);
        }
        let lane_fits = self.fit_free
            && task.deadline_ns.is_none()
            && self.scored.is_empty()
            && self
                .lane
                .front()
                .is_none_or(|(_, f)| f.priority == task.priority);
        if lane_fits {
            self.lane.push_back((self.next_lane, task));
            self.next_lane = self.next_lane.wrapping_add(1);
        } else {
            // The lane (older than this waiter) goes first, in order.
            let need = self.len() + 1;
            if !self.reserve(need) {
                return Err(task);
            }
            while let Some((_, t)) = self.lane.pop_front() {
                if let Err(t) = self.scored.push(t) {
                    // Cannot happen (room was made above); keep it rather
                    // than lose it.
                    self.lane.push_front((self.next_lane, t));
                    self.next_lane = self.next_lane.wrapping_add(1);
                    return Err(task);
                }
            }
            self.scored.push(task)?;
        }
        self.max_depth = self.max_depth.max(self.len());
        Ok(())
    }

    /// Grows the scored queue's storage (doubling) until it holds `need`
    /// waiters; `false` when `max_slots` does not allow it.
    fn reserve(&mut self, need: usize) -> bool {
        let mut cap = self.scored.capacity();
        if need <= cap {
            return true;
        }
        if need > self.max_slots {
            return false;
        }
        while cap < need {
            cap = cap
                .saturating_mul(2)
                .max(INITIAL_WAIT_SLOTS)
                .min(self.max_slots);
        }
        self.scored.grow(storage(cap)).is_ok()
    }

    /// The best waiter by the queue's order alone (no fit term), if any:
    /// the lane's front, or the scored queue's best at `now`.
    pub(crate) fn head(&self, now: u64) -> Option<&Task<T>> {
        match self.lane.front() {
            Some((_, t)) => Some(t),
            None => self.scored.peek(now, &Availability::NONE).map(|p| p.task),
        }
    }

    /// The first `k` waiters of the lane, oldest first, with their ids.
    pub(crate) fn lane_window(&self, k: usize) -> impl Iterator<Item = (Waiter, &Task<T>)> {
        self.lane.iter().take(k).map(|(s, t)| (Waiter::Lane(*s), t))
    }

    /// The scored queue's best `out.len()` (see [`ScoredQueue::top_k`]).
    pub(crate) fn top_k(&self, now: u64, avail: &Availability, out: &mut [Ranked]) -> TopK {
        self.scored.top_k(now, avail, out)
    }

    /// A waiter of the scored queue.
    pub(crate) fn get(&self, ticket: Ticket) -> Option<&Task<T>> {
        self.scored.get(ticket)
    }

    /// Removes `who` to run it (`now`: for the scored queue's wait times).
    /// A lane waiter is looked for among the lane's first entries, where
    /// the lookahead window found it.
    pub(crate) fn take(&mut self, who: Waiter, now: u64) -> Option<Task<T>> {
        match who {
            Waiter::Scored(ticket) => self.scored.take(ticket, now),
            Waiter::Lane(seq) => {
                // The front, as nearly always: the cheapest removal.
                if self.lane.front().is_some_and(|(s, _)| *s == seq) {
                    return self.lane.pop_front().map(|(_, t)| t);
                }
                let i = self.lane.iter().position(|(s, _)| *s == seq)?;
                self.lane.remove(i).map(|(_, t)| t)
            }
        }
    }

    /// Removes every waiter whose deadline is at or before `now`, handing
    /// each to `expired` (the lane holds none with a deadline).
    pub(crate) fn expire(&mut self, now: u64, mut expired: impl FnMut(Task<T>)) {
        self.scored.expire(now, |_, t| expired(t));
    }

    /// Removes every waiter for which `predicate` is true, handing each to
    /// `removed`. `O(n)`.
    pub(crate) fn remove_where(
        &mut self,
        mut predicate: impl FnMut(&Task<T>) -> bool,
        mut removed: impl FnMut(Task<T>),
    ) {
        if self.lane.iter().any(|(_, t)| predicate(t)) {
            let mut kept = VecDeque::with_capacity(self.lane.len());
            for (s, t) in std::mem::take(&mut self.lane) {
                if predicate(&t) {
                    removed(t);
                } else {
                    kept.push_back((s, t));
                }
            }
            self.lane = kept;
        }
        self.scored.remove_where(predicate, |_, t| removed(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use respool_core::queue::Weights;
    use respool_core::{Dim, Resources};

    fn cpu(n: u64) -> Resources {
        Resources::new().with_saturating(Dim::Cpu, n)
    }

    /// Pops every waiter in the order a dispatch round with an unlimited
    /// supply would take them (always the head).
    fn drain(q: &mut WaitQueue<u32>, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        loop {
            let who = if q.in_lane() {
                q.lane_window(1).next().map(|(w, _)| w)
            } else {
                let mut best = [Ranked::EMPTY];
                let top = q.top_k(now, &Availability::NONE, &mut best);
                (top.len > 0).then_some(Waiter::Scored(best[0].ticket))
            };
            let Some(who) = who else { break };
            out.push(q.take(who, now).unwrap().item);
        }
        out
    }

    /// The order of a scored queue alone, for the same pushes.
    fn reference(tasks: &[Task<u32>], now: u64, weights: Weights) -> Vec<u32> {
        let mut q =
            ScoredQueue::with_storage(storage(tasks.len()), QueueConfig::with_weights(weights));
        for t in tasks {
            q.push(t.clone()).unwrap();
        }
        let mut out = Vec::new();
        while let Some(p) = q.pop(now, &Availability::NONE) {
            out.push(p.task.item);
        }
        out
    }

    #[test]
    fn alike_waiters_stay_in_the_lane_in_arrival_order() {
        let mut q = WaitQueue::new(QueueConfig::default(), 1000);
        for i in 0..100 {
            q.push(Task::new(i, cpu(1), u64::from(i))).unwrap();
        }
        assert!(q.in_lane());
        assert_eq!((q.len(), q.max_depth()), (100, 100));
        assert_eq!(q.head(0).map(|t| t.item), Some(0));
        assert_eq!(drain(&mut q, 1000), (0..100).collect::<Vec<_>>());
        assert!(q.is_empty());
    }

    #[test]
    fn a_different_waiter_moves_the_lane_and_keeps_the_scored_order() {
        // Every mix of priorities and deadlines, pushed in clock order,
        // drains in exactly the scored queue's order.
        let weights = Weights::default();
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let mut t = Task::new(i, cpu(1), u64::from(i) * 1_000_000);
            if i % 17 == 5 {
                t = t.with_priority(1);
            }
            if i % 23 == 7 {
                t = t.with_deadline(u64::from(i) * 1_000_000 + 50_000_000);
            }
            tasks.push(t);
        }
        let mut q = WaitQueue::new(QueueConfig::with_weights(weights), 1000);
        let mut used_lane = false;
        for t in &tasks {
            q.push(t.clone()).unwrap();
            used_lane |= q.in_lane();
        }
        assert!(used_lane, "the first waiters were alike");
        assert!(!q.in_lane(), "moved into the scored queue");
        let now = 300_000_000;
        assert_eq!(drain(&mut q, now), reference(&tasks, now, weights));
    }

    #[test]
    fn the_lane_is_used_again_once_the_scored_queue_empties() {
        let mut q = WaitQueue::new(QueueConfig::default(), 1000);
        q.push(Task::new(1, cpu(1), 0).with_priority(2)).unwrap();
        q.push(Task::new(2, cpu(1), 1)).unwrap();
        assert!(!q.in_lane());
        assert_eq!(drain(&mut q, 10), [1, 2]);
        q.push(Task::new(3, cpu(1), 20)).unwrap();
        assert!(q.in_lane());
    }

    #[test]
    fn a_fit_term_keeps_every_waiter_scored() {
        let weights = Weights {
            fits: 1,
            ..Weights::default()
        };
        let mut q = WaitQueue::new(QueueConfig::with_weights(weights), 1000);
        q.push(Task::new(1, cpu(1), 0)).unwrap();
        assert!(!q.in_lane());
    }

    #[test]
    fn both_parts_together_hold_at_most_max_slots() {
        let mut q = WaitQueue::new(QueueConfig::default(), 3);
        for i in 0..3 {
            q.push(Task::new(i, cpu(1), 0)).unwrap();
        }
        assert_eq!(q.push(Task::new(9, cpu(1), 0)).map_err(|t| t.item), Err(9));
        // A waiter that would move the lane is refused as well, and the
        // lane is kept whole.
        let urgent = Task::new(8, cpu(1), 0).with_priority(5);
        assert_eq!(q.push(urgent).map_err(|t| t.item), Err(8));
        assert_eq!(drain(&mut q, 0), [0, 1, 2]);
        // Room again: the move grows the scored storage as it needs.
        let mut q = WaitQueue::new(QueueConfig::default(), 200);
        for i in 0..150 {
            q.push(Task::new(i, cpu(1), u64::from(i))).unwrap();
        }
        q.push(Task::new(999, cpu(1), 150).with_priority(1))
            .unwrap();
        assert_eq!(q.len(), 151);
        let order = drain(&mut q, 200);
        assert_eq!(order.first(), Some(&999));
        assert_eq!(&order[1..], (0..150).collect::<Vec<_>>());
    }

    #[test]
    fn removal_by_predicate_reaches_both_parts() {
        let mut q = WaitQueue::new(QueueConfig::default(), 100);
        for i in 0..10 {
            q.push(Task::new(i, cpu(1), u64::from(i))).unwrap();
        }
        let mut gone = Vec::new();
        q.remove_where(|t| t.item % 3 == 0, |t| gone.push(t.item));
        assert_eq!(gone, [0, 3, 6, 9]);
        q.push(Task::new(10, cpu(1), 10).with_priority(1)).unwrap();
        q.remove_where(|t| t.item == 4 || t.item == 10, |t| gone.push(t.item));
        assert_eq!(drain(&mut q, 20), [1, 2, 5, 7, 8]);
        // In no particular order (the scored queue's sweep has none).
        gone.sort_unstable();
        assert_eq!(gone, [0, 3, 4, 6, 9, 10]);
    }

    #[test]
    fn a_lane_waiter_is_taken_from_inside_the_window() {
        let mut q = WaitQueue::new(QueueConfig::default(), 100);
        for i in 0..5 {
            q.push(Task::new(i, cpu(1), u64::from(i))).unwrap();
        }
        let third = q.lane_window(4).nth(2).map(|(w, _)| w).unwrap();
        assert_eq!(q.take(third, 0).map(|t| t.item), Some(2));
        assert_eq!(q.take(third, 0).map(|t| t.item), None, "never valid again");
        assert_eq!(drain(&mut q, 0), [0, 1, 3, 4]);
    }
}
