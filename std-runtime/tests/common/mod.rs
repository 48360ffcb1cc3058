//! Helpers shared by the integration tests. Each test binary uses only
//! some of them.
#![allow(dead_code)]

use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

use respool::{Dim, JoinHandle, Policy, Pool, Resources, TaskError};

/// Turns a hang into a failure; never a threshold on speed.
pub const SAFETY: Duration = Duration::from_secs(60);
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Runs `f` on its own thread; fails if it takes longer than `SAFETY`
/// (the thread is then leaked), resumes its panic if it panics.
pub fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(SAFETY) {
        Ok(v) => {
            h.join().unwrap();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the thread sent nothing and did not panic"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung: no result within {SAFETY:?}"),
    }
}

/// Silences the panics a test binary causes on purpose (payloads starting
/// with `prefix`); any other panic is reported as usual. The first call's
/// prefix holds for the whole binary.
pub fn quiet_expected_panics(prefix: &'static str) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if !msg.starts_with(prefix) {
                default(info);
            }
        }));
    });
}

/// Blocks one of the pool's workers (its only one, in a one-worker pool)
/// until the returned sender sends or is dropped (or `SAFETY` runs out).
/// Returns once the blocking task runs.
pub fn block_worker(pool: &Pool) -> mpsc::Sender<()> {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    pool.execute(move || {
        started_tx.send(()).expect("the test waits for the blocker");
        let _ = release_rx.recv_timeout(SAFETY);
    })
    .expect("the blocker is accepted");
    started_rx
        .recv_timeout(SAFETY)
        .expect("the blocker started");
    release_tx
}

/// A requirement of `n` bytes of memory and nothing else.
pub fn mem(n: u64) -> Resources {
    Resources::NONE.with_saturating(Dim::Memory, n)
}

/// `workers` workers, `memory` bytes of capacity, no headroom, deferring.
pub fn pool(workers: usize, memory: u64) -> Pool {
    Pool::builder()
        .workers(workers)
        .capacity(mem(memory))
        .headroom(Resources::NONE)
        .admission(Policy::Defer)
        .build()
        .expect("pool")
}

/// Joins within `SAFETY`, or fails the test.
pub fn join<T: Send>(h: JoinHandle<T>) -> Result<T, TaskError> {
    match h.join_timeout(SAFETY) {
        Ok(r) => r,
        Err(_) => panic!("a task did not finish within the safety timeout"),
    }
}

/// Polls until `f` holds, or fails after `SAFETY`.
pub fn wait_until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < SAFETY, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the thread of this process named `name` is asleep (state `S`
/// in `/proc/self/task/<tid>/stat`), or fails after `SAFETY`: for a thread
/// whose only blocking call is the one under test (a join, a blocked
/// submission), that is the event "it blocks there". Returns at once where
/// `/proc` cannot be read (the test then runs whichever order comes).
pub fn wait_until_asleep(name: &str) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    drop(tasks);
    let state = || -> Option<char> {
        std::fs::read_dir("/proc/self/task")
            .ok()?
            .filter_map(Result::ok)
            .find_map(|e| {
                let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
                if comm.trim_end() != name {
                    return None;
                }
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                stat.rsplit(')').next()?.trim().chars().next()
            })
    };
    wait_until(&format!("thread {name} to block"), || state() == Some('S'));
}

/// After quiescence: nothing waiting or queued, nothing reserved.
pub fn assert_quiet(pool: &Pool) {
    wait_until("the pool to be quiet", || {
        let s = pool.snapshot();
        s.waiting == 0 && s.queued == 0
    });
    let s = pool.snapshot();
    assert!(s.reserved.is_zero(), "reservations left: {s}");
}
