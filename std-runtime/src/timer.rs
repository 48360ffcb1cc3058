//! One timer thread per pool, started on first use: task timeouts, retry
//! back-offs and admission deadlines.
//!
//! Entries live in a `BTreeMap` keyed by `(deadline, sequence)`, so the next
//! deadline is the first key and an entry can be cancelled in O(log n) when
//! its task finishes first. The thread sleeps on a condition variable until
//! the earliest deadline or a new, earlier entry, and exits when the timer is
//! dropped or shut down. An idle timer costs nothing: it waits without a
//! timeout when it has no entries.
//!
//! An entry is either *work* (a retry to submit, a timeout to raise) or a
//! *wake-up* (re-run admission at a waiter's deadline). Only work counts in
//! [`Timer::pending`], which a graceful shutdown waits for: a wake-up for a
//! deadline an hour away, whose waiter was admitted long ago, must not keep
//! a pool from shutting down.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::sync::lock;

/// What to do when an entry fires.
pub(crate) type Action = Box<dyn FnOnce() + Send>;

/// Identifies an entry for cancellation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerId(Instant, u64);

/// An entry: its action, and whether it counts as pending work.
struct Entry {
    action: Action,
    work: bool,
}

struct State {
    entries: BTreeMap<TimerId, Entry>,
    next_seq: u64,
    stop: bool,
}

struct Inner {
    state: Mutex<State>,
    cv: Condvar,
    /// Work entries not yet fired or cancelled, plus work actions currently
    /// running (wake-ups are not counted).
    pending: AtomicUsize,
}

pub(crate) struct Timer {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
    name: String,
}

impl Timer {
    pub(crate) fn new(name: String) -> Timer {
        Timer {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    entries: BTreeMap::new(),
                    next_seq: 0,
                    stop: false,
                }),
                cv: Condvar::new(),
                pending: AtomicUsize::new(0),
            }),
            thread: Mutex::new(None),
            name,
        }
    }

    /// Runs `action` on the timer thread at `at`; it counts as pending work
    /// until it has run or is cancelled.
    pub(crate) fn schedule(&self, at: Instant, action: Action) -> Option<TimerId> {
        self.insert(at, action, true)
    }

    /// Runs `action` on the timer thread at `at`, as a wake-up: not counted
    /// in [`Timer::pending`].
    pub(crate) fn schedule_wakeup(&self, at: Instant, action: Action) -> Option<TimerId> {
        self.insert(at, action, false)
    }

    fn insert(&self, at: Instant, action: Action, work: bool) -> Option<TimerId> {
        if lock(&self.inner.state).stop {
            return None;
        }
        self.ensure_thread()?;
        let mut st = lock(&self.inner.state);
        if st.stop {
            return None;
        }
        let id = TimerId(at, st.next_seq);
        st.next_seq += 1;
        let earliest = st.entries.keys().next().is_none_or(|first| id < *first);
        st.entries.insert(id, Entry { action, work });
        if work {
            self.inner.pending.fetch_add(1, Ordering::SeqCst);
        }
        drop(st);
        if earliest {
            self.inner.cv.notify_one();
        }
        Some(id)
    }

    /// Cancels an entry; returns whether it was still pending.
    pub(crate) fn cancel(&self, id: TimerId) -> bool {
        let removed = lock(&self.inner.state).entries.remove(&id);
        if removed.as_ref().is_some_and(|e| e.work) {
            self.inner.pending.fetch_sub(1, Ordering::SeqCst);
        }
        removed.is_some()
    }

    /// Entries not yet fired, work and wake-ups.
    #[cfg(test)]
    pub(crate) fn scheduled(&self) -> usize {
        lock(&self.inner.state).entries.len()
    }

    /// Work entries not yet fired, plus work actions running right now.
    pub(crate) fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::SeqCst)
    }

    /// Removes every entry without running it; returns them.
    pub(crate) fn drain(&self) -> Vec<Action> {
        let mut st = lock(&self.inner.state);
        let entries = std::mem::take(&mut st.entries);
        let work = entries.values().filter(|e| e.work).count();
        self.inner.pending.fetch_sub(work, Ordering::SeqCst);
        entries.into_values().map(|e| e.action).collect()
    }

    fn ensure_thread(&self) -> Option<()> {
        let mut t = lock(&self.thread);
        if t.is_none() {
            let inner = self.inner.clone();
            let handle = std::thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || run(&inner))
                .ok()?;
            *t = Some(handle);
        }
        Some(())
    }

    /// Stops the thread (after running nothing more) and joins it.
    pub(crate) fn shutdown(&self) {
        lock(&self.inner.state).stop = true;
        self.inner.cv.notify_all();
        let handle = lock(&self.thread).take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(inner: &Inner) {
    let mut st = lock(&inner.state);
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        let next = st.entries.keys().next().copied();
        match next {
            Some(id) if id.0 <= now => {
                if let Some(Entry { action, work }) = st.entries.remove(&id) {
                    drop(st);
                    // `pending` still counts a work entry while it runs, so
                    // a pool waiting for quiescence sees it as outstanding.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(action));
                    if work {
                        inner.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                    st = lock(&inner.state);
                }
            }
            Some(id) => {
                st = inner
                    .cv
                    .wait_timeout(st, id.0 - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            None => {
                st = inner
                    .cv
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_order_and_cancels() {
        let t = Timer::new("t".into());
        let (tx, rx) = mpsc::channel();
        // An entry due now holds the timer thread until every other entry is
        // scheduled (and one cancelled), so that all of them are in the map
        // before the first fires however slowly this thread runs (under
        // valgrind a few calls can take milliseconds). It used to rely on a
        // 500 ms margin, and skipped the test when scheduling took longer.
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        t.schedule(
            Instant::now(),
            Box::new(move || {
                started_tx.send(()).unwrap();
                let _ = go_rx.recv_timeout(Duration::from_secs(60));
            }),
        );
        started_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let now = Instant::now();
        for (i, ms) in [(1, 30u64), (2, 10), (3, 20)] {
            let tx = tx.clone();
            t.schedule(
                now + Duration::from_millis(ms),
                Box::new(move || tx.send(i).unwrap()),
            );
        }
        let tx2 = tx.clone();
        let id = t
            .schedule(
                now + Duration::from_millis(15),
                Box::new(move || tx2.send(99).unwrap()),
            )
            .unwrap();
        assert!(t.cancel(id));
        assert!(!t.cancel(id));
        assert_eq!(t.scheduled(), 3);
        drop(go_tx);
        let got: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(60)).unwrap())
            .collect();
        assert_eq!(got, [2, 3, 1]);
        // `pending` drops to zero once the last action has run (the blocker
        // and the three); the cancelled one never ran.
        let deadline = Instant::now() + Duration::from_secs(60);
        while t.pending() != 0 {
            assert!(Instant::now() < deadline, "pending never dropped to zero");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(rx.try_recv().is_err(), "the cancelled one never fires");
    }

    #[test]
    fn wakeups_fire_but_are_not_pending_work() {
        let t = Timer::new("t".into());
        let (tx, rx) = mpsc::channel();
        let far = t
            .schedule_wakeup(Instant::now() + Duration::from_secs(3600), Box::new(|| {}))
            .unwrap();
        t.schedule_wakeup(Instant::now(), Box::new(move || tx.send(1).unwrap()));
        assert_eq!(t.pending(), 0, "wake-ups are not work");
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
        let work = t
            .schedule(Instant::now() + Duration::from_secs(3600), Box::new(|| {}))
            .unwrap();
        assert_eq!(t.pending(), 1);
        assert!(t.cancel(far));
        assert_eq!(t.pending(), 1, "cancelling a wake-up leaves the work count");
        assert!(t.cancel(work));
        assert_eq!(t.pending(), 0);
        t.schedule_wakeup(Instant::now() + Duration::from_secs(3600), Box::new(|| {}));
        t.schedule(Instant::now() + Duration::from_secs(3600), Box::new(|| {}));
        assert_eq!(t.drain().len(), 2);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn shutdown_joins_and_refuses_new_entries() {
        let t = Timer::new("t".into());
        t.schedule(Instant::now() + Duration::from_secs(3600), Box::new(|| {}));
        assert_eq!(t.drain().len(), 1);
        t.shutdown();
        assert!(t.schedule(Instant::now(), Box::new(|| {})).is_none());
    }
}
