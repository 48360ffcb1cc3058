//! The two helpers the Go library exported: a work-stealing deque and a
//! priority queue.
//!
//! Both are deliberately thin and lock-based, like the Go originals:
//!
//! - [`WorkStealingDeque`] is a `Mutex<VecDeque<T>>`. The owner pushes and
//!   pops at the back (LIFO: the most recently pushed item is still warm in
//!   its cache), thieves take from the front (FIFO: the oldest item, the one
//!   the owner would reach last). Every operation holds the lock, so an item
//!   is handed out exactly once, whoever takes it (Go defect 4 came from a
//!   lock-free attempt at the same structure). A Chase-Lev deque
//!   (`crossbeam-deque`) would avoid the lock; with one lock per lane and a
//!   handful of lanes the lock is uncontended and never the bottleneck of a
//!   batch.
//! - [`PriorityQueue`] is a binary heap keyed by `(priority, Reverse(seq))`:
//!   higher priorities first and, among equal priorities, first in first out
//!   (the sequence number breaks ties, so the order is total and stable). It
//!   keeps a count per priority, as the Go queue did. It is not synchronised:
//!   wrap it in a `Mutex` to share it (the [`PriorityBased`] strategy does).
//!
//! [`PriorityBased`]: super::PriorityBased

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Mutex;

use crate::sync::lock;

/// A double-ended queue shared between its owner (which pushes and pops at
/// one end) and thieves (which steal from the other end).
pub(crate) struct WorkStealingDeque<T> {
    items: Mutex<VecDeque<T>>,
}

impl<T> WorkStealingDeque<T> {
    /// An empty deque.
    #[must_use]
    pub fn new() -> Self {
        WorkStealingDeque {
            items: Mutex::new(VecDeque::new()),
        }
    }

    /// Pops at the owner's end (the most recently pushed item).
    pub fn pop(&self) -> Option<T> {
        lock(&self.items).pop_back()
    }

    /// Steals from the other end (the oldest item).
    pub fn steal(&self) -> Option<T> {
        lock(&self.items).pop_front()
    }

    /// How many items are in the deque now.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.items).len()
    }

    #[cfg(test)] // used by the tests only
    /// Whether the deque is empty now.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        lock(&self.items).is_empty()
    }
}

impl<T> Default for WorkStealingDeque<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> FromIterator<T> for WorkStealingDeque<T> {
    /// A deque holding the items in push order (the last one is popped first).
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        WorkStealingDeque {
            items: Mutex::new(iter.into_iter().collect()),
        }
    }
}

impl<T> fmt::Debug for WorkStealingDeque<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkStealingDeque")
            .field("len", &self.len())
            .finish()
    }
}

struct Entry<T> {
    key: (i32, Reverse<u64>),
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// A max-priority queue: higher priority first, first in first out among
/// equal priorities, with a count of queued items per priority.
pub(crate) struct PriorityQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
    counts: BTreeMap<i32, usize>,
}

impl<T> PriorityQueue<T> {
    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        PriorityQueue {
            heap: BinaryHeap::new(),
            seq: 0,
            counts: BTreeMap::new(),
        }
    }

    /// Adds `item` with `priority` (higher is served first).
    pub fn push(&mut self, item: T, priority: i32) {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.heap.push(Entry {
            key: (priority, Reverse(seq)),
            item,
        });
        *self.counts.entry(priority).or_insert(0) += 1;
    }

    /// Removes the item with the highest priority (the oldest of those).
    pub fn pop(&mut self) -> Option<T> {
        self.pop_with_priority().map(|(_, item)| item)
    }

    /// As [`pop`](Self::pop), with the item's priority.
    pub fn pop_with_priority(&mut self) -> Option<(i32, T)> {
        let e = self.heap.pop()?;
        let p = e.key.0;
        if let Some(c) = self.counts.get_mut(&p) {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(&p);
            }
        }
        Some((p, e.item))
    }

    #[cfg(test)] // used by the tests only
    /// The highest priority queued, if any.
    #[must_use]
    pub fn peek_priority(&self) -> Option<i32> {
        self.heap.peek().map(|e| e.key.0)
    }

    /// How many items are queued.
    #[must_use]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)] // used by the tests only
    /// Whether nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    #[cfg(test)] // used by the tests only
    /// How many items of `priority` are queued.
    #[must_use]
    pub fn count(&self, priority: i32) -> usize {
        self.counts.get(&priority).copied().unwrap_or(0)
    }

    #[cfg(test)] // used by the tests only
    /// `(priority, count)` for every priority with queued items, highest
    /// priority first.
    pub fn counts(&self) -> impl Iterator<Item = (i32, usize)> + '_ {
        self.counts.iter().rev().map(|(&p, &c)| (p, c))
    }
}

impl<T> Default for PriorityQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for PriorityQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriorityQueue")
            .field("len", &self.len())
            .field("counts", &self.counts)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn deque_owner_is_lifo_thief_is_fifo() {
        let d: WorkStealingDeque<u32> = (0..5).collect();
        assert_eq!(d.pop(), Some(4));
        assert_eq!(d.steal(), Some(0));
        assert_eq!(d.steal(), Some(1));
        assert_eq!(d.pop(), Some(3));
        assert_eq!(d.pop(), Some(2));
        assert!(d.is_empty());
        assert_eq!(d.pop(), None);
        assert_eq!(d.steal(), None);
    }

    #[test]
    fn deque_hands_each_item_out_once_under_contention() {
        let d: Arc<WorkStealingDeque<u32>> = Arc::new((0..10_000).collect());
        let taken: Vec<Vec<u32>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|t| {
                    let d = d.clone();
                    s.spawn(move || {
                        let mut got = Vec::new();
                        loop {
                            let x = if t == 0 { d.pop() } else { d.steal() };
                            match x {
                                Some(x) => got.push(x),
                                None => break got,
                            }
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: Vec<u32> = taken.into_iter().flatten().collect();
        assert_eq!(all.len(), 10_000);
        assert_eq!(all.iter().copied().collect::<HashSet<_>>().len(), 10_000);
    }

    #[test]
    fn priority_queue_orders_by_priority_then_fifo_and_counts() {
        let mut q = PriorityQueue::new();
        let input = [(0, 1), (1, 5), (2, 1), (3, -2), (4, 5), (5, 1)];
        for (item, p) in input {
            q.push(item, p);
        }
        assert_eq!(q.len(), 6);
        assert_eq!(q.count(1), 3);
        assert_eq!(q.count(7), 0);
        assert_eq!(q.counts().collect::<Vec<_>>(), [(5, 2), (1, 3), (-2, 1)]);
        assert_eq!(q.peek_priority(), Some(5));
        let mut out = Vec::new();
        while let Some((p, item)) = q.pop_with_priority() {
            out.push((item, p));
        }
        assert_eq!(out, [(1, 5), (4, 5), (0, 1), (2, 1), (5, 1), (3, -2)]);
        assert!(q.is_empty());
        assert_eq!(q.counts().count(), 0);
    }
}
