//! The run queue of admitted tasks, and the registry of idle workers.
//!
//! # Run queue
//!
//! A bounded lock-free array queue (`crossbeam_queue::ArrayQueue`, Vyukov's
//! bounded MPMC design) sized at build time, so that pushing and popping a
//! task allocates nothing. When it is full, tasks go to an unbounded
//! lock-free overflow queue (`crossbeam_queue::SegQueue`, which allocates one
//! block per 31 tasks, only while overloaded) instead of blocking the
//! submitter: a worker submitting into its own full pool must not deadlock,
//! and a task is never dropped. While the overflow holds anything, every new
//! task goes there too, so the array only ever holds tasks older than the
//! overflow's, and workers drain the array first: order stays first in,
//! first out (for each submitting thread).
//!
//! # Idle workers
//!
//! A worker that finds no task *searches*: it polls the queues for a while
//! (backing off), then registers itself as idle and parks. At most half the
//! workers (at least one) search at a time. The others stand by for as long
//! as a search lasts, watching only the count of searchers (a line written
//! when a worker starts or stops searching, never per task), and take a
//! searcher's place when one leaves; then they park. A submitter that
//! pushed a task wakes one registered worker, unless a worker is searching:
//! that one will find the task. Searchers are limited because a searcher
//! polls the lines a submitter writes: with every idle worker polling, tiny
//! tasks submitted in bulk made the submitter wait for its own cache lines
//! (1,000,000 empty tasks with declared requirements took 1.4 times as long
//! on two workers as on one). Standing by instead of parking keeps a
//! second worker at hand without a futex wake when a submitter is only
//! slightly slower than the workers (parking at once cost 6% on 5 us tasks
//! submitted as others finish). The idea is tokio's and Go's schedulers'
//! ("spinning" threads).
//!
//! Parallelism is not lost: a searcher that finds a task, or a worker that
//! finds one after it went on towards parking (its re-check before parking,
//! or after waking), wakes another worker if more work is queued (a task
//! pushed while a worker searched got no wake of its own, and a wake-up
//! may pick a worker that was about to find work anyway), so a burst wakes
//! workers one after another until they are all busy or the queue is empty.
//!
//! Both sides follow the store-then-load pattern of Dekker's algorithm with
//! sequentially consistent operations: a worker leaving its search
//! decrements `searching`, increments `idle` and then re-checks the queue;
//! the submitter pushes and then reads `idle` and `searching`. At least one
//! of them sees the other, so a task is never left in the queue while every
//! worker sleeps. The registry's mutex is only taken on idle transitions,
//! never per task while workers are busy.

use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;

use crossbeam_queue::{ArrayQueue, SegQueue};

use crate::sync::lock;

pub(crate) struct RunQueue<T> {
    fast: ArrayQueue<T>,
    overflow: SegQueue<T>,
    /// Tasks pushed to the overflow and not yet popped from it.
    overflow_len: AtomicUsize,
}

impl<T> RunQueue<T> {
    pub(crate) fn new(capacity: usize) -> RunQueue<T> {
        RunQueue {
            fast: ArrayQueue::new(capacity.max(1)),
            overflow: SegQueue::new(),
            overflow_len: AtomicUsize::new(0),
        }
    }

    #[inline]
    pub(crate) fn push(&self, item: T) {
        let item = if self.overflow_len.load(Ordering::Acquire) == 0 {
            match self.fast.push(item) {
                Ok(()) => return,
                Err(item) => item,
            }
        } else {
            item
        };
        self.overflow_len.fetch_add(1, Ordering::AcqRel);
        self.overflow.push(item);
    }

    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        if let Some(t) = self.fast.pop() {
            return Some(t);
        }
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let t = self.overflow.pop()?;
        self.overflow_len.fetch_sub(1, Ordering::AcqRel);
        Some(t)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fast.is_empty() && self.overflow_len.load(Ordering::Acquire) == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.fast.len() + self.overflow_len.load(Ordering::Acquire)
    }
}

/// Registry of parked workers.
pub(crate) struct Sleepers {
    /// Workers registered as idle (parked or about to park).
    idle: AtomicUsize,
    /// Workers polling the queues before they park; on a line of its own,
    /// away from `idle`, which a submitter reads for every task.
    searching: crossbeam_utils::CachePadded<AtomicUsize>,
    /// The most workers that search at once: half the workers, at least one
    /// (set with the threads).
    max_searching: AtomicUsize,
    ids: Mutex<Vec<usize>>,
    threads: OnceLock<Vec<Thread>>,
}

impl Sleepers {
    pub(crate) fn new() -> Sleepers {
        Sleepers {
            idle: AtomicUsize::new(0),
            searching: crossbeam_utils::CachePadded::new(AtomicUsize::new(0)),
            max_searching: AtomicUsize::new(1),
            ids: Mutex::new(Vec::new()),
            threads: OnceLock::new(),
        }
    }

    /// Records the worker threads (once, after they are spawned).
    pub(crate) fn set_threads(&self, threads: Vec<Thread>) {
        self.max_searching
            .store((threads.len() / 2).max(1), Ordering::Relaxed);
        let _ = self.threads.set(threads);
    }

    /// A worker that found nothing asks to search (poll the queues for a
    /// while before parking): `false` if as many workers as allowed search
    /// already (it stands by, asking again, or parks). A `true` must be
    /// followed by [`end_search`](Self::end_search).
    pub(crate) fn start_search(&self) -> bool {
        let max = self.max_searching.load(Ordering::Relaxed);
        let mut n = self.searching.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return false;
            }
            match self.searching.compare_exchange_weak(
                n,
                n + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
    }

    /// Ends a search. Before parking, the worker must re-check for work
    /// after this (it is sequentially consistent: Dekker with
    /// [`notify_one`](Self::notify_one), which skipped its wake-up while it
    /// saw this worker search).
    pub(crate) fn end_search(&self) {
        self.searching.fetch_sub(1, Ordering::SeqCst);
    }

    /// Registers worker `id` as about to park. The caller must re-check for
    /// work afterwards and call `unregister` if it finds some.
    pub(crate) fn register(&self, id: usize) {
        let mut ids = lock(&self.ids);
        if !ids.contains(&id) {
            ids.push(id);
            self.idle.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Removes worker `id` from the idle set if it is still there.
    pub(crate) fn unregister(&self, id: usize) {
        let mut ids = lock(&self.ids);
        if let Some(pos) = ids.iter().position(|&i| i == id) {
            ids.swap_remove(pos);
            self.idle.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Called by a submitter after pushing: wakes one idle worker, if any
    /// and none is searching (a searcher will find the task).
    #[inline]
    pub(crate) fn notify_one(&self) {
        // Pairs with the SeqCst decrement in `end_search` and increment in
        // `register`, each followed by a re-check of the queues (Dekker).
        fence(Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) == 0 || self.searching.load(Ordering::SeqCst) != 0 {
            return;
        }
        self.wake_one();
    }

    #[cold]
    fn wake_one(&self) {
        let id = {
            let mut ids = lock(&self.ids);
            let id = ids.pop();
            if id.is_some() {
                self.idle.fetch_sub(1, Ordering::SeqCst);
            }
            id
        };
        if let (Some(id), Some(threads)) = (id, self.threads.get()) {
            if let Some(t) = threads.get(id) {
                t.unpark();
            }
        }
    }

    /// Wakes one idle worker for which `wanted` holds (a worker of a given
    /// domain), if any.
    pub(crate) fn notify_matching(&self, wanted: impl Fn(usize) -> bool) {
        fence(Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) == 0 {
            return;
        }
        let id = {
            let mut ids = lock(&self.ids);
            let pos = ids.iter().position(|&i| wanted(i));
            pos.map(|p| {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                ids.swap_remove(p)
            })
        };
        if let (Some(id), Some(threads)) = (id, self.threads.get()) {
            if let Some(t) = threads.get(id) {
                t.unpark();
            }
        }
    }

    /// Wakes every worker (shutdown, capacity changes).
    pub(crate) fn notify_all(&self) {
        {
            let mut ids = lock(&self.ids);
            self.idle.fetch_sub(ids.len(), Ordering::SeqCst);
            ids.clear();
        }
        if let Some(threads) = self.threads.get() {
            for t in threads {
                t.unpark();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_keeps_fifo_order() {
        let q = RunQueue::new(4);
        for i in 0..100 {
            q.push(i);
        }
        assert_eq!(q.len(), 100);
        let out: Vec<i32> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(out, (0..100).collect::<Vec<_>>());
        assert!(q.is_empty());
    }

    #[test]
    fn interleaved_push_pop_with_overflow_stays_fifo() {
        let q = RunQueue::new(3);
        let mut next_in = 0;
        let mut next_out = 0;
        for round in 0..200 {
            for _ in 0..(round % 7) {
                q.push(next_in);
                next_in += 1;
            }
            for _ in 0..(round % 5) {
                if let Some(v) = q.pop() {
                    assert_eq!(v, next_out);
                    next_out += 1;
                }
            }
        }
        while let Some(v) = q.pop() {
            assert_eq!(v, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
    }

    #[test]
    fn concurrent_producers_consumers_lose_nothing() {
        use std::sync::Arc;
        let q = Arc::new(RunQueue::new(8));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        q.push(p * 1_000_000 + i);
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut empty_spins = 0;
                    while empty_spins < 1_000_000 {
                        match q.pop() {
                            Some(v) => {
                                got.push(v);
                                empty_spins = 0;
                            }
                            None => {
                                empty_spins += 1;
                                std::hint::spin_loop();
                            }
                        }
                        if got.len() == 40_000 {
                            break;
                        }
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        while let Some(v) = q.pop() {
            all.push(v);
        }
        all.sort_unstable();
        let mut want: Vec<u64> = (0..2)
            .flat_map(|p| (0..20_000).map(move |i| p * 1_000_000 + i))
            .collect();
        want.sort_unstable();
        assert_eq!(all, want, "every task popped exactly once");
    }
}
