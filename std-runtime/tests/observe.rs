//! The observer seam (issue 16): the exact events of a task that runs at
//! once, one that waits and is admitted, one refused, one cancelled while
//! waiting, one that panics, one retried and one whose reservation grows;
//! and, with many tasks on many threads, exactly one terminal event per
//! submitted task, after all its other events.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::{SAFETY, join, mem, quiet_expected_panics, wait_until};
use respool::alloc::TrackingAllocator;
use respool::observe::{Event, EventKind, Observer, TaskId};
use respool::{Backoff, Dim, Policy, Pool, Resources, SubmitError, TaskError};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

/// One event as recorded: its task, its name, and a detail to check.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    task: Option<TaskId>,
    name: &'static str,
    detail: String,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Observer for Recorder {
    fn on_event(&self, e: &Event<'_>) {
        let detail = match e.kind {
            EventKind::Deferred { shortfall } => {
                format!("{:?}", shortfall.map(|s| (s.dim, s.by)))
            }
            EventKind::Admitted { reservation } => format!("{reservation}"),
            EventKind::Refused { error } => format!("{error:?}"),
            EventKind::Retried { attempt, .. } => format!("attempt {attempt}"),
            EventKind::ReservationGrown { by } => {
                format!("grew {}", by.get(Dim::Memory).is_some_and(|m| m > 0))
            }
            _ => String::new(),
        };
        self.0.lock().unwrap().push(Seen {
            task: e.task,
            name: e.kind.name(),
            detail,
        });
    }
}

impl Recorder {
    /// The events of the one task whose first event satisfies `first`.
    fn task_where(&self, pick: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let all = self.0.lock().unwrap().clone();
        let mut by_task: BTreeMap<TaskId, Vec<Seen>> = BTreeMap::new();
        for s in all {
            if let Some(t) = s.task {
                by_task.entry(t).or_default().push(s);
            }
        }
        let mut found: Vec<Vec<Seen>> = by_task.into_values().filter(|v| pick(v)).collect();
        assert_eq!(found.len(), 1, "one task expected: {found:?}");
        found.pop().unwrap()
    }

    fn names(&self, pick: impl Fn(&[Seen]) -> bool) -> Vec<&'static str> {
        self.task_where(pick).iter().map(|s| s.name).collect()
    }
}

fn observed_pool(rec: &Arc<Recorder>, workers: usize, memory: u64) -> Pool {
    Pool::builder()
        .workers(workers)
        .capacity(mem(memory))
        .headroom(Resources::NONE)
        .admission(Policy::Defer)
        .observer(rec.clone())
        .build()
        .expect("pool")
}

/// A task of `bytes` that holds them until the returned sender sends.
fn holder(pool: &Pool, bytes: u64) -> (mpsc::Sender<()>, respool::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let h = pool
        .task()
        .requirements(mem(bytes))
        .spawn(move |_| {
            let _ = rx.recv_timeout(SAFETY);
        })
        .expect("holder admitted");
    (tx, h)
}

fn with_detail(v: &[Seen], name: &str) -> String {
    v.iter()
        .find(|s| s.name == name)
        .map(|s| s.detail.clone())
        .unwrap_or_default()
}

#[test]
fn a_task_that_runs_at_once() {
    let rec = Arc::new(Recorder::default());
    let pool = observed_pool(&rec, 1, 1000);
    assert_eq!(
        join(pool.task().requirements(mem(100)).spawn(|_| 7).unwrap()),
        Ok(7)
    );
    pool.shutdown();
    let events = rec.task_where(|_| true);
    let names: Vec<_> = events.iter().map(|s| s.name).collect();
    assert_eq!(names, ["submitted", "admitted", "started", "finished"]);
    assert!(
        with_detail(&events, "admitted").contains("memory"),
        "{events:?}"
    );
}

#[test]
fn a_task_that_waits_and_is_admitted() {
    let rec = Arc::new(Recorder::default());
    let pool = observed_pool(&rec, 2, 1000);
    let (release, hold) = holder(&pool, 800);
    let waiter = pool.task().requirements(mem(500)).spawn(|_| "ran").unwrap();
    wait_until("the task to wait", || pool.snapshot().waiting == 1);
    release.send(()).unwrap();
    join(hold).unwrap();
    assert_eq!(join(waiter), Ok("ran"));
    pool.shutdown();
    let events = rec.task_where(|v| v.iter().any(|s| s.name == "deferred"));
    let names: Vec<_> = events.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["submitted", "deferred", "admitted", "started", "finished"]
    );
    // It waited for 300 more bytes of memory than were free.
    assert_eq!(
        with_detail(&events, "deferred"),
        format!("{:?}", Some((Dim::Memory, 300u64)))
    );
}

#[test]
fn a_task_that_is_refused() {
    let rec = Arc::new(Recorder::default());
    let pool = observed_pool(&rec, 1, 1000);
    let err = pool
        .task()
        .requirements(mem(2000))
        .spawn(|_| ())
        .unwrap_err();
    assert!(matches!(err, SubmitError::NeverFits(_)));
    pool.shutdown();
    let events = rec.task_where(|_| true);
    let names: Vec<_> = events.iter().map(|s| s.name).collect();
    assert_eq!(names, ["submitted", "refused"]);
    assert!(with_detail(&events, "refused").starts_with("NeverFits"));
}

#[test]
fn a_task_cancelled_while_waiting() {
    let rec = Arc::new(Recorder::default());
    let pool = observed_pool(&rec, 1, 1000);
    let (release, hold) = holder(&pool, 1000);
    let waiter = pool.task().requirements(mem(500)).spawn(|_| ()).unwrap();
    wait_until("the task to wait", || pool.snapshot().waiting == 1);
    assert!(waiter.cancel());
    wait_until("the cancelled task to leave the queue", || {
        pool.snapshot().waiting == 0
    });
    release.send(()).unwrap();
    join(hold).unwrap();
    assert_eq!(join(waiter), Err(TaskError::Cancelled));
    pool.shutdown();
    let names = rec.names(|v| v.iter().any(|s| s.name == "deferred"));
    assert_eq!(names, ["submitted", "deferred", "cancelled"]);
}

#[test]
fn a_task_that_panics() {
    quiet_expected_panics("observed panic");
    let rec = Arc::new(Recorder::default());
    // The reservation covers what unwinding allocates, so nothing grows.
    let pool = observed_pool(&rec, 1, 1 << 30);
    let h = pool
        .task()
        .requirements(mem(64 << 20))
        .spawn(|_| -> u32 { panic!("observed panic") })
        .unwrap();
    assert!(matches!(join(h), Err(TaskError::Panicked(_))));
    pool.shutdown();
    let names = rec.names(|_| true);
    assert_eq!(names, ["submitted", "admitted", "started", "panicked"]);
}

#[test]
fn a_task_that_is_retried() {
    let rec = Arc::new(Recorder::default());
    // The reservation covers the error the first attempt allocates.
    let pool = observed_pool(&rec, 1, 1 << 30);
    let h = pool
        .task()
        .requirements(mem(64 << 20))
        .retries(2, Backoff::Fixed(Duration::from_millis(1)))
        .spawn_retrying(|ctx| {
            if ctx.attempt() == 0 {
                Err(std::io::Error::other("first attempt fails"))
            } else {
                Ok(ctx.attempt())
            }
        })
        .unwrap();
    assert_eq!(join(h), Ok(1));
    pool.shutdown();
    let events = rec.task_where(|_| true);
    let names: Vec<_> = events.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "submitted",
            "admitted",
            "started",
            "retried",
            "admitted",
            "started",
            "finished"
        ]
    );
    assert_eq!(with_detail(&events, "retried"), "attempt 1");
}

#[test]
fn a_task_whose_reservation_grows() {
    let rec = Arc::new(Recorder::default());
    let pool = observed_pool(&rec, 1, 1 << 30);
    // Declares 1 MiB, uses 16: the allocator grows its reservation.
    let h = pool
        .task()
        .memory("1MiB")
        .spawn(|_| std::hint::black_box(vec![1u8; 16 << 20]).len())
        .unwrap();
    assert_eq!(join(h), Ok(16 << 20));
    pool.shutdown();
    let events = rec.task_where(|_| true);
    let names: Vec<_> = events.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "submitted",
            "admitted",
            "started",
            "reservation_grown",
            "finished"
        ]
    );
    assert_eq!(with_detail(&events, "reservation_grown"), "grew true");
}

/// Many tasks of every kind from four threads (plain, with a handle, with
/// requirements that make some wait, some with a priority, panicking,
/// cancelled, refused, and a
/// shutdown that hands some back): every task that was submitted has
/// exactly one terminal event, its last.
#[test]
fn every_submitted_task_has_exactly_one_terminal_event() {
    quiet_expected_panics("observed panic");
    let rec = Arc::new(Recorder::default());
    let pool = Arc::new(observed_pool(&rec, 2, 1000));
    let refused = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (pool, refused) = (pool.clone(), refused.clone());
            std::thread::spawn(move || {
                for i in 0..400u64 {
                    let r = match (t + i) % 6 {
                        0 => pool.execute(|| ()),
                        1 => pool.submit(move || i).map(drop),
                        2 => pool
                            .task()
                            .requirements(mem(300 + i % 200))
                            // Some go through the priority lane.
                            .priority(i32::try_from(i % 3).unwrap())
                            .spawn(|_| ())
                            .map(drop),
                        3 => pool.task().requirements(mem(50)).execute(move |_| {
                            if i % 50 == 3 {
                                panic!("observed panic");
                            }
                        }),
                        4 => pool.task().requirements(mem(400)).spawn(|_| ()).map(|h| {
                            h.cancel();
                        }),
                        _ => pool.task().requirements(mem(5000)).spawn(|_| ()).map(drop),
                    };
                    if r.is_err() {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Some of what waits is handed back instead of run.
    drop(pool.shutdown_now());
    let all = rec.0.lock().unwrap().clone();
    let mut by_task: BTreeMap<TaskId, Vec<Seen>> = BTreeMap::new();
    for s in all {
        if let Some(t) = s.task {
            by_task.entry(t).or_default().push(s);
        }
    }
    assert_eq!(by_task.len(), 1600, "every submission has an id");
    let ended = |s: &Seen| {
        matches!(
            s.name,
            "refused"
                | "finished"
                | "failed"
                | "panicked"
                | "cancelled"
                | "timed_out"
                | "deadline_missed"
                | "not_run"
        )
    };
    let mut refused_events = 0;
    for (id, events) in &by_task {
        assert_eq!(events[0].name, "submitted", "{id}: {events:?}");
        let terminals = events.iter().filter(|s| ended(s)).count();
        assert_eq!(terminals, 1, "{id}: {events:?}");
        assert!(ended(events.last().unwrap()), "{id}: {events:?}");
        if events.last().unwrap().name == "refused" {
            refused_events += 1;
        }
    }
    assert_eq!(refused_events, refused.load(Ordering::Relaxed));
}

/// Keeps the canceller of every started task, so that a test can stop a
/// running task from the observer's side (what a slow-task detector does).
#[derive(Default)]
struct Stopper {
    cancellers: Mutex<Vec<(TaskId, respool::Canceller)>>,
    started: AtomicUsize,
    without: AtomicUsize,
}

impl Observer for Stopper {
    fn on_event(&self, e: &Event<'_>) {
        if let EventKind::Started { canceller, .. } = e.kind {
            match (canceller, e.task) {
                (Some(c), Some(id)) => {
                    self.cancellers.lock().unwrap().push((id, c.clone()));
                }
                _ => drop(self.without.fetch_add(1, Ordering::Relaxed)),
            }
            self.started.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn a_started_event_carries_a_canceller_that_stops_a_cooperative_task() {
    let stopper = Arc::new(Stopper::default());
    let pool = Pool::builder()
        .workers(1)
        .observer(stopper.clone())
        .build()
        .unwrap();
    // A cooperative task that runs until it is asked to stop.
    let running = pool
        .task()
        .spawn(|ctx| {
            let mut spins = 0u64;
            while !ctx.is_cancelled() {
                spins += 1;
                std::thread::yield_now();
            }
            spins
        })
        .unwrap();
    wait_until("the task to start", || {
        !stopper.cancellers.lock().unwrap().is_empty()
    });
    let (_, c) = stopper.cancellers.lock().unwrap().pop().unwrap();
    // It has started: cancelling only raises the flag, and the task returns.
    assert!(!c.cancel());
    assert!(running.join().is_ok());
    // A task without a handle has nothing to cancel it with.
    let (tx, rx) = mpsc::channel();
    pool.execute(move || tx.send(()).unwrap()).unwrap();
    rx.recv().unwrap();
    pool.shutdown();
    assert_eq!(stopper.started.load(Ordering::Relaxed), 2);
    assert_eq!(stopper.without.load(Ordering::Relaxed), 1);
}

/// The events of each task, by id.
fn by_task(rec: &Recorder) -> BTreeMap<TaskId, Vec<&'static str>> {
    let mut out: BTreeMap<TaskId, Vec<&'static str>> = BTreeMap::new();
    for s in rec.0.lock().unwrap().iter() {
        if let Some(t) = s.task {
            out.entry(t).or_default().push(s.name);
        }
    }
    out
}

#[test]
fn plain_tasks_travel_packed_and_still_end_exactly_once() {
    quiet_expected_panics("plain observed panic");
    let rec = Arc::new(Recorder::default());
    let pool = Arc::new(observed_pool(&rec, 1, 1000));
    pool.execute(|| panic!("plain observed panic")).unwrap();
    pool.execute(|| ()).unwrap();
    let (release, held) = holder(&pool, 10);
    // The only worker runs the holder: what comes next waits in the queue.
    wait_until("the holder to start", || {
        by_task(&rec)
            .iter()
            .any(|(id, v)| id.get() == 3 && v.contains(&"started"))
    });
    pool.execute(|| ()).unwrap();
    pool.execute(|| ()).unwrap();
    let stopper = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.shutdown_now().len())
    };
    // `shutdown_now` hands the two queued plain tasks back before it waits
    // for the holder.
    wait_until("the queued tasks to be handed back", || {
        by_task(&rec)
            .values()
            .filter(|v| v.contains(&"not_run"))
            .count()
            == 2
    });
    drop(release);
    assert_eq!(stopper.join().unwrap(), 2);
    join(held).unwrap();
    let seen = by_task(&rec);
    // Ids in submission order; the third is the holder (a described task).
    let plain: Vec<Vec<&str>> = seen
        .iter()
        .filter(|(id, _)| id.get() != 3)
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(
        plain,
        vec![
            vec!["submitted", "admitted", "started", "panicked"],
            vec!["submitted", "admitted", "started", "finished"],
            vec!["submitted", "admitted", "not_run"],
            vec!["submitted", "admitted", "not_run"],
        ],
        "{seen:?}"
    );
}

/// Sums reservations as the events tell them: `Admitted` adds, a terminal
/// event or `Retried` takes the task's back.
#[derive(Default)]
struct Reserved {
    state: Mutex<(BTreeMap<TaskId, u64>, u64, u64)>,
}

impl Observer for Reserved {
    fn on_event(&self, e: &Event<'_>) {
        let Some(id) = e.task else { return };
        let mut st = self.state.lock().unwrap();
        let (held, sum, max) = &mut *st;
        match e.kind {
            EventKind::Admitted { reservation } => {
                let m = reservation.get(Dim::Memory).unwrap_or(0);
                held.insert(id, m);
                *sum += m;
                *max = (*max).max(*sum);
            }
            ref k if k.is_terminal() || matches!(k, EventKind::Retried { .. }) => {
                *sum -= held.remove(&id).unwrap_or(0);
            }
            _ => {}
        }
    }
}

#[test]
fn an_observer_summing_reservations_never_sees_more_than_the_capacity() {
    let reserved = Arc::new(Reserved::default());
    let pool = Pool::builder()
        .workers(2)
        .capacity(mem(1000))
        .headroom(Resources::NONE)
        .admission(Policy::Defer)
        .observer(reserved.clone())
        .build()
        .unwrap();
    // Two fit at a time; the rest wait and are admitted into the room each
    // release leaves. Handles (released at once) and no handles (batched).
    let mut handles = Vec::new();
    for i in 0..200u64 {
        if i % 2 == 0 {
            handles.push(pool.task().requirements(mem(500)).spawn(|_| ()).unwrap());
        } else {
            pool.task().requirements(mem(500)).execute(|_| ()).unwrap();
        }
    }
    for h in handles {
        join(h).unwrap();
    }
    pool.shutdown();
    let (held, sum, max) = &*reserved.state.lock().unwrap();
    assert!(held.is_empty() && *sum == 0, "every reservation ended");
    assert!(
        *max <= 1000,
        "the events summed {max} bytes reserved against 1000"
    );
    assert_eq!(*max, 1000, "two ran at once at some point");
}
