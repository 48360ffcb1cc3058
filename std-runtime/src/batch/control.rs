//! A batch run's control: its cancellation (`stop()`, the run timeout) and
//! the permits that bound the jobs in flight, shared by the lanes, the
//! collector and every job's context; and why a job was cut short.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Why a job was cut short or never run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// [`Batch::stop`](super::Batch::stop) (or a [`StopHandle`](super::StopHandle)).
    Stopped,
    /// The whole run went past [`BatchConfig::timeout`](super::BatchConfig::timeout).
    RunTimedOut(Duration),
    /// The pool was shut down before the lane holding the job could run.
    PoolShutDown,
    /// The strategy never handed the job to a lane (a bug in a custom
    /// [`Strategy`](super::Strategy)).
    NotDispatched,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Stopped => f.write_str("the batch was stopped"),
            CancelReason::RunTimedOut(d) => write!(f, "the batch ran past its timeout of {d:?}"),
            CancelReason::PoolShutDown => f.write_str("the pool was shut down"),
            CancelReason::NotDispatched => {
                f.write_str("the strategy never handed the job to a worker")
            }
        }
    }
}

/// Cancellation, the run deadline and the in-flight permits of one run.
pub(crate) struct Control {
    cancelled: AtomicBool,
    pub(super) deadline: Option<Instant>,
    timeout: Duration,
    buffer: usize,
    state: Mutex<CtlState>,
    /// Lanes waiting for a permit.
    permit_cv: Condvar,
    /// Lanes and processors waiting out a back-off or a `sleep`.
    stop_cv: Condvar,
    /// When the run started, its shape and its counts so far, for
    /// [`Batch::progress`](super::Batch::progress).
    started: Instant,
    pub(super) total: AtomicUsize,
    pub(super) lanes: AtomicUsize,
    /// Jobs whose first attempt began (lanes count them).
    pub(super) jobs_started: AtomicUsize,
    /// Results collected, by status (the collector counts them).
    pub(super) succeeded: AtomicUsize,
    pub(super) failed: AtomicUsize,
    pub(super) cut_short: AtomicUsize,
}

struct CtlState {
    reason: Option<CancelReason>,
    in_flight: usize,
    waiting: usize,
}

impl Control {
    pub(super) fn new(timeout: Duration, buffer: usize, started: Instant) -> Control {
        Control {
            cancelled: AtomicBool::new(false),
            deadline: started.checked_add(timeout),
            timeout,
            buffer,
            state: Mutex::new(CtlState {
                reason: None,
                in_flight: 0,
                waiting: 0,
            }),
            permit_cv: Condvar::new(),
            stop_cv: Condvar::new(),
            started,
            total: AtomicUsize::new(0),
            lanes: AtomicUsize::new(0),
            jobs_started: AtomicUsize::new(0),
            succeeded: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            cut_short: AtomicUsize::new(0),
        }
    }

    /// The run's progress now.
    pub(super) fn progress(&self) -> super::Progress {
        let get = |a: &AtomicUsize| a.load(Ordering::Acquire);
        // Raises the run timeout if it passed, so that the reason is current.
        let _ = self.is_cancelled();
        // Results first: a job is counted started before its result is
        // counted, so reading in this order keeps `finished <= started`.
        let (processed, failed, cancelled) = (
            get(&self.succeeded),
            get(&self.failed),
            get(&self.cut_short),
        );
        super::Progress {
            total_jobs: get(&self.total),
            lanes: get(&self.lanes),
            started: get(&self.jobs_started),
            processed,
            failed,
            cancelled,
            elapsed: self.started.elapsed(),
            stop_reason: self.reason(),
        }
    }

    /// Whether the run is cancelled; raises the run timeout if it passed.
    pub(super) fn is_cancelled(&self) -> bool {
        if self.cancelled.load(Ordering::Acquire) {
            return true;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.cancel(CancelReason::RunTimedOut(self.timeout));
            return true;
        }
        false
    }

    /// Cancels the run; the first reason wins. Returns whether this call
    /// was the first.
    pub(super) fn cancel(&self, reason: CancelReason) -> bool {
        let mut g = lock(&self.state);
        self.cancel_locked(&mut g, reason)
    }

    fn cancel_locked(&self, g: &mut CtlState, reason: CancelReason) -> bool {
        let first = g.reason.is_none();
        if first {
            g.reason = Some(reason);
        }
        self.cancelled.store(true, Ordering::Release);
        // Waiters check the flag under the lock, which the caller holds, so
        // none can miss this wake-up.
        self.permit_cv.notify_all();
        self.stop_cv.notify_all();
        first
    }

    pub(super) fn reason(&self) -> Option<CancelReason> {
        lock(&self.state).reason
    }

    /// Under the lock: whether the run is cancelled, raising the timeout.
    fn cancelled_locked(&self, g: &mut CtlState, now: Instant) -> bool {
        if self.cancelled.load(Ordering::Acquire) {
            return true;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.cancel_locked(g, CancelReason::RunTimedOut(self.timeout));
            return true;
        }
        false
    }

    /// Takes an in-flight permit, waiting while `buffer` jobs are in flight
    /// (not when `inline`: the lane then runs on the collector's own thread,
    /// which cannot collect while it waits). `false` if the run is cancelled.
    pub(super) fn acquire(&self, inline: bool) -> bool {
        let mut g = lock(&self.state);
        loop {
            let now = Instant::now();
            if self.cancelled_locked(&mut g, now) {
                return false;
            }
            if inline || g.in_flight < self.buffer {
                g.in_flight += 1;
                return true;
            }
            g.waiting += 1;
            g = match self.deadline {
                Some(d) => {
                    self.permit_cv
                        .wait_timeout(g, d.saturating_duration_since(now))
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .permit_cv
                    .wait(g)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
            g.waiting -= 1;
        }
    }

    /// Returns a permit.
    pub(super) fn release(&self) {
        let mut g = lock(&self.state);
        g.in_flight = g.in_flight.saturating_sub(1);
        if g.waiting > 0 {
            self.permit_cv.notify_one();
        }
    }

    /// Waits until `until` (forever if `None`) unless the run is cancelled
    /// first. Returns `true` if it reached `until` without a cancellation.
    pub(super) fn sleep_until(&self, until: Option<Instant>) -> bool {
        let mut g = lock(&self.state);
        loop {
            let now = Instant::now();
            if self.cancelled_locked(&mut g, now) {
                return false;
            }
            if until.is_some_and(|u| now >= u) {
                return true;
            }
            let wake = match (until, self.deadline) {
                (Some(u), Some(d)) => Some(u.min(d)),
                (u, d) => u.or(d),
            };
            g = match wake {
                Some(w) => {
                    self.stop_cv
                        .wait_timeout(g, w.saturating_duration_since(now))
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .stop_cv
                    .wait(g)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, mpsc};
    use std::thread;

    #[test]
    fn cancel_keeps_the_first_reason_and_wakes_sleepers() {
        let c = Arc::new(Control::new(Duration::MAX, 1, Instant::now()));
        assert!(!c.is_cancelled());
        let (tx, rx) = mpsc::channel();
        let c2 = c.clone();
        let t = thread::spawn(move || {
            tx.send(()).unwrap();
            c2.sleep_until(None)
        });
        rx.recv().unwrap();
        assert!(c.cancel(CancelReason::Stopped));
        assert!(!c.cancel(CancelReason::PoolShutDown));
        assert!(!t.join().unwrap(), "a sleeper is cut short");
        assert_eq!(c.reason(), Some(CancelReason::Stopped));
        assert!(c.is_cancelled());
    }

    #[test]
    fn permits_bound_the_jobs_in_flight() {
        let c = Control::new(Duration::MAX, 2, Instant::now());
        assert!(c.acquire(false));
        assert!(c.acquire(false));
        assert!(c.acquire(true), "inline lanes never wait");
        assert_eq!(lock(&c.state).in_flight, 3);
        c.release();
        c.release();
        assert!(c.acquire(false));
        c.cancel(CancelReason::Stopped);
        assert!(!c.acquire(false), "no permit after cancellation");
    }

    #[test]
    fn a_passed_deadline_cancels_with_the_timeout_reason() {
        let start = Instant::now();
        let c = Control::new(Duration::from_millis(1), 1, start);
        assert!(!c.sleep_until(None), "the run deadline ends the wait");
        assert!(Instant::now() >= start + Duration::from_millis(1));
        assert_eq!(
            c.reason(),
            Some(CancelReason::RunTimedOut(Duration::from_millis(1)))
        );
    }
}
