//! Builder settings change what the pool does: the placement algorithm, the
//! wait queue's weights, pinning workers to their domain's CPUs, requirement
//! text errors, and the defaults detected from the machine.

mod common;

use std::sync::{Arc, Mutex, RwLock};

use common::*;
use respool::core::packer::{Fit, Score};
use respool::core::queue::Weights;
use respool::units::ParseErrorKind;
use respool::{BuildError, Dim, DomainSpec, Pool, Resources, SubmitError};

/// A gate tasks wait at until the test opens it: the test holds the write
/// lock, tasks take a read lock.
fn gate() -> Arc<RwLock<()>> {
    Arc::new(RwLock::new(()))
}

/// Memory used per placement domain.
fn used_per_domain(pool: &Pool) -> Vec<u64> {
    pool.snapshot()
        .domains
        .iter()
        .map(|(used, _)| used.amount(Dim::Memory))
        .collect()
}

/// Two small tasks on a pool with two domains of 1000 bytes, held open:
/// where did they go?
fn place_two_small_tasks(fit: Fit) -> Vec<u64> {
    let pool = Pool::builder()
        .workers(4)
        .capacity(mem(2000))
        .headroom(Resources::NONE)
        .domains(vec![
            DomainSpec::numa("node0", vec![], 1000),
            DomainSpec::numa("node1", vec![], 1000),
        ])
        .pin_workers(false)
        .placement(fit)
        .build()
        .unwrap();
    let g = gate();
    let w = g.write().unwrap();
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let g = g.clone();
            pool.task()
                .requirements(mem(100))
                .spawn(move |_| drop(g.read()))
                .unwrap()
        })
        .collect();
    // Placement happens at admission (at submit here): the figures are final.
    let used = used_per_domain(&pool);
    drop(w);
    for h in hs {
        join(h).unwrap();
    }
    assert_eq!(used_per_domain(&pool), [0, 0], "placements given back");
    used
}

/// First fit packs the second small task next to the first; worst fit
/// (emptiest domain) spreads it to the other domain; classic best fit packs.
#[test]
fn placement_fit_decides_the_domain() {
    assert_eq!(place_two_small_tasks(Fit::First), [200, 0]);
    assert_eq!(
        place_two_small_tasks(Fit::Worst(Score::MostAllocated)),
        [100, 100]
    );
    assert_eq!(
        place_two_small_tasks(Fit::Best(Score::MostAllocated)),
        [200, 0]
    );
}

/// Two tasks wait for the whole capacity: a low-priority one submitted first
/// and a high-priority one. With the default weights (a priority level is
/// worth a second of waiting) the high-priority one starts first; with
/// weights that count only waiting time, the queue is first come, first
/// served.
fn start_order(weights: Option<Weights>) -> Vec<&'static str> {
    let mut b = Pool::builder()
        .workers(1)
        .capacity(mem(100))
        .headroom(Resources::NONE);
    if let Some(w) = weights {
        b = b.queue_weights(w);
    }
    let pool = b.build().unwrap();
    let g = gate();
    let w = g.write().unwrap();
    let g2 = g.clone();
    let holder = pool
        .task()
        .requirements(mem(100))
        .spawn(move |_| drop(g2.read()))
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut hs = Vec::new();
    for (name, priority) in [("low, first", 0), ("high, second", 1000)] {
        let order = order.clone();
        hs.push(
            pool.task()
                .requirements(mem(100))
                .priority(priority)
                .spawn(move |_| order.lock().unwrap().push(name))
                .unwrap(),
        );
    }
    assert_eq!(pool.snapshot().waiting, 2);
    drop(w);
    join(holder).unwrap();
    for h in hs {
        join(h).unwrap();
    }
    order.lock().unwrap().clone()
}

#[test]
fn queue_weights_change_the_order_of_waiting_tasks() {
    assert_eq!(start_order(None), ["high, second", "low, first"]);
    let fifo = Weights {
        priority: 0,
        aging: 1,
        ..Weights::PRIORITY_ONLY
    };
    assert_eq!(start_order(Some(fifo)), ["low, first", "high, second"]);
    assert_eq!(
        start_order(Some(Weights::PRIORITY_ONLY)),
        ["high, second", "low, first"]
    );
}

/// The CPUs the calling thread may run on, read with `sched_getaffinity`.
#[cfg(target_os = "linux")]
fn thread_affinity() -> Vec<usize> {
    // SAFETY: all zeroes is a valid, empty `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is writable and its size is
    // the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    let max = usize::try_from(libc::CPU_SETSIZE).unwrap();
    // SAFETY: every `c < CPU_SETSIZE` is inside `set`.
    (0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// With two CPU domains and `pin_workers(true)`, a task placed on a domain
/// runs on a worker whose CPU affinity is exactly that domain's CPUs.
#[cfg(target_os = "linux")]
#[test]
fn pinned_workers_run_on_their_domains_cpus() {
    let allowed = thread_affinity();
    let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
    if allowed.len() < 2 || parallelism < 2 {
        println!(
            "skipped: this process may use {allowed:?} ({parallelism} CPUs available); \
             pinning to two domains needs two CPUs"
        );
        return;
    }
    let (left, right) = (allowed[0], allowed[1]);
    let pool = Pool::builder()
        .workers(2)
        .capacity(mem(2000))
        .headroom(Resources::NONE)
        .domains(vec![
            DomainSpec::numa("left", vec![left], 1000),
            DomainSpec::numa("right", vec![right], 1000),
        ])
        .pin_workers(true)
        .placement(Fit::First)
        .build()
        .unwrap();
    // The first task takes all of the first domain, so the second can only
    // go to the other one. Both wait at the gate until the placement was
    // checked: a task that finished first would have left its domain.
    let g = gate();
    let w = g.write().unwrap();
    let (g1, g2) = (g.clone(), g.clone());
    let first = pool
        .task()
        .requirements(mem(1000))
        .spawn(move |_| {
            drop(g1.read());
            thread_affinity()
        })
        .unwrap();
    let second = pool
        .task()
        .requirements(mem(1000))
        .spawn(move |_| {
            drop(g2.read());
            thread_affinity()
        })
        .unwrap();
    assert_eq!(used_per_domain(&pool), [1000, 1000]);
    drop(w);
    assert_eq!(join(second), Ok(vec![right]));
    assert_eq!(join(first), Ok(vec![left]));
    // Without pinning, the same placement leaves the workers' affinity alone.
    let unpinned = Pool::builder()
        .workers(2)
        .capacity(mem(2000))
        .headroom(Resources::NONE)
        .domains(vec![
            DomainSpec::numa("left", vec![left], 1000),
            DomainSpec::numa("right", vec![right], 1000),
        ])
        .pin_workers(false)
        .build()
        .unwrap();
    let h = unpinned
        .task()
        .requirements(mem(1000))
        .spawn(|_| thread_affinity())
        .unwrap();
    assert_eq!(join(h), Ok(allowed));
}

/// Requirement text that does not parse refuses the task at submit with
/// `InvalidRequirement`, which names the text, the dimension and what is
/// wrong; nothing runs and nothing is counted as submitted. The first bad
/// requirement of a chain is the one reported.
#[test]
fn bad_requirement_text_is_refused_with_the_text() {
    let pool = pool(1, GIB);
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r2 = ran.clone();
    let err = pool
        .task()
        .memory("12 parsecs")
        .spawn(move |_| r2.store(true, std::sync::atomic::Ordering::SeqCst))
        .unwrap_err();
    match &err {
        SubmitError::InvalidRequirement(e) => {
            assert_eq!(e.input, "12 parsecs");
            assert_eq!(e.what, "memory");
            assert_eq!(e.kind, ParseErrorKind::UnknownUnit("parsecs".into()));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("\"12 parsecs\""), "{msg}");
    assert!(msg.contains("parsecs"), "{msg}");
    // The first error of a chain wins; later valid settings do not clear it.
    match pool
        .task()
        .cpu("1.0005")
        .memory("lots")
        .cpu("1")
        .execute(|_| ())
    {
        Err(SubmitError::InvalidRequirement(e)) => {
            assert_eq!((e.what, e.input.as_str()), ("CPU", "1.0005"));
            assert_eq!(e.kind, ParseErrorKind::TooPrecise);
        }
        other => panic!("{other:?}"),
    }
    match pool.task().memory("").spawn(|_| ()) {
        Err(SubmitError::InvalidRequirement(e)) => assert_eq!(e.kind, ParseErrorKind::Empty),
        other => panic!("{other:?}"),
    }
    match pool.task().require_str(Dim::Network, "fast").spawn(|_| ()) {
        Err(SubmitError::InvalidRequirement(e)) => {
            assert_eq!((e.what, e.input.as_str()), ("network", "fast"));
        }
        other => panic!("{other:?}"),
    }
    let s = pool.snapshot();
    assert_eq!(s.submitted, 0, "nothing reached the pool: {s}");
    assert_eq!(s.rejected, 0, "not a refusal by admission: {s}");
    // The closure was dropped, never run.
    join(pool.submit(|| ()).unwrap()).unwrap();
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
}

/// A default-built pool sizes itself from `respool::sys`: as many workers as
/// detected, the detected CPU and memory as capacity, and the default
/// headroom (10% of memory, at least 64 MiB) held back from memory. The
/// largest task that can ever fit is exactly the detected memory minus the
/// headroom.
#[test]
fn default_pool_sizes_itself_from_the_detected_machine() {
    let detected = respool::sys::default_capacity();
    let pool = Pool::builder().build().unwrap();
    assert_eq!(pool.workers(), detected.workers);
    let s = pool.snapshot();
    assert_eq!(s.workers, detected.workers);
    assert_eq!(
        s.capacity.get(Dim::Cpu),
        detected.limit.get(Dim::Cpu),
        "{s}"
    );
    assert_eq!(
        s.effective_capacity.get(Dim::Cpu),
        detected.capacity.get(Dim::Cpu),
        "no CPU headroom by default"
    );
    assert_eq!(detected.headroom.amount(Dim::Cpu), 0);
    let Some(limit) = detected.limit.get(Dim::Memory) else {
        println!("memory not detected on this machine: only CPU and workers checked");
        return;
    };
    let headroom = detected.headroom.amount(Dim::Memory);
    let usable = detected.capacity.amount(Dim::Memory);
    assert_eq!(usable, limit - headroom);
    assert_eq!(
        headroom,
        (limit / 10).max(64 * MIB).min(limit / 2),
        "10% but at least 64 MiB (and at most half): limit {limit}"
    );
    assert_eq!(pool.capacity().get(Dim::Memory), Some(limit));
    // The monitor (on by default for detected memory) may lower the effective
    // capacity by what other processes use, never raise it.
    assert!(
        s.effective_capacity.amount(Dim::Memory) <= usable,
        "{s}: more than {usable}"
    );
    match pool.task().require(Dim::Memory, usable + 1).spawn(|_| ()) {
        Err(SubmitError::NeverFits(short)) => {
            assert_eq!(
                (short.dim, short.requested, short.by),
                (Dim::Memory, usable + 1, 1)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.snapshot().rejected, 1);
    // Without the monitor (the one setting changed), nothing else lowers it:
    // the effective memory capacity is exactly the detected one minus the
    // headroom.
    let quiet = Pool::builder().monitor(false).build().unwrap();
    let s = quiet.snapshot();
    assert_eq!(s.capacity.get(Dim::Memory), Some(limit));
    assert_eq!(s.effective_capacity.get(Dim::Memory), Some(usable), "{s}");
    assert_eq!(quiet.workers(), detected.workers);
    // `Pool::new()` is the same as `Pool::builder().build()`.
    let new = Pool::new().unwrap();
    assert_eq!(new.workers(), detected.workers);
    assert_eq!(new.capacity(), pool.capacity());
}

/// Issue 14, defect 2: every size the pool allocates by is bounded, and a
/// value above its bound is refused by `build()` with `TooLarge`, naming the
/// setting, the value and the limit; nothing is allocated or started. (It
/// used to abort the process: `workers(1 << 40)` asked for a 26 TB vector.)
#[test]
fn sizes_above_their_limits_are_refused_with_the_limit() {
    use respool::limits::{
        MAX_LOOKAHEAD, MAX_QUEUE_CAPACITY, MAX_STACK_SIZE, MAX_WAITING, MAX_WORKERS,
    };
    type Set = fn(respool::Builder, usize) -> respool::Builder;
    let settings: [(&str, usize, Set); 5] = [
        ("workers", MAX_WORKERS, |b, v| b.workers(v)),
        ("queue_capacity", MAX_QUEUE_CAPACITY, |b, v| {
            b.queue_capacity(v)
        }),
        ("max_waiting", MAX_WAITING, |b, v| b.max_waiting(v)),
        ("stack_size", MAX_STACK_SIZE, |b, v| b.stack_size(v)),
        ("lookahead", MAX_LOOKAHEAD, |b, v| b.lookahead(v, 16)),
    ];
    for (name, max, set) in settings {
        let mut values = vec![max.saturating_add(1), usize::MAX];
        if max < 1 << 40 {
            values.push(1 << 40);
        }
        for value in values {
            if value <= max {
                continue; // max_waiting on a 32-bit target: nothing above it
            }
            let b = set(Pool::builder().memory("1GiB"), value);
            match b.build() {
                Err(e @ BuildError::TooLarge { .. }) => {
                    let BuildError::TooLarge {
                        setting,
                        value: v,
                        max: m,
                    } = &e
                    else {
                        unreachable!()
                    };
                    assert_eq!((*setting, *v, *m), (name, value, max));
                    let msg = e.to_string();
                    assert!(
                        msg.contains(name) && msg.contains(&format!("limit of {max}")),
                        "{msg}"
                    );
                }
                other => panic!("{name} = {value}: {other:?}"),
            }
        }
    }
}

/// The smallest stack is `MIN_STACK_SIZE`; 0 and anything below are refused
/// with `TooSmall` (0 used to start threads with the platform's minimum).
/// At the minimum, a worker runs tasks, measures them and catches their
/// panics (with the default panic hook, which may print a backtrace); the
/// largest stack and the widest lookahead and queue build and run.
#[test]
fn sizes_at_their_limits_work() {
    use respool::limits::{MAX_LOOKAHEAD, MAX_QUEUE_CAPACITY, MAX_STACK_SIZE, MIN_STACK_SIZE};
    for small in [0, 1, MIN_STACK_SIZE - 1] {
        match Pool::builder().stack_size(small).build() {
            Err(e @ BuildError::TooSmall { .. }) => {
                assert!(
                    matches!(e, BuildError::TooSmall { setting: "stack_size", value, min }
                        if value == small && min == MIN_STACK_SIZE)
                );
                assert!(
                    e.to_string()
                        .contains(&format!("minimum of {MIN_STACK_SIZE}")),
                    "{e}"
                );
            }
            other => panic!("stack_size({small}): {other:?}"),
        }
    }
    let pool = Pool::builder()
        .workers(1)
        .memory("1GiB")
        .stack_size(MIN_STACK_SIZE)
        .build()
        .unwrap();
    let h = pool
        .task()
        .class("small stack")
        .memory("1MiB")
        .spawn(|_| -> u32 { panic!("a panic on the smallest stack") })
        .unwrap();
    assert_eq!(
        join(h),
        Err(respool::TaskError::Panicked(
            "a panic on the smallest stack".into()
        ))
    );
    let h = pool.task().class("small stack").spawn(|_| 7).unwrap();
    assert_eq!(join(h), Ok(7));
    drop(pool);
    let pool = Pool::builder()
        .workers(2)
        .memory("1GiB")
        .stack_size(MAX_STACK_SIZE)
        .queue_capacity(MAX_QUEUE_CAPACITY)
        .lookahead(MAX_LOOKAHEAD, 16)
        .build()
        .unwrap();
    let hs: Vec<_> = (0..4)
        .map(|i| pool.task().memory("1MiB").spawn(move |_| i).unwrap())
        .collect();
    let got: Vec<_> = hs.into_iter().map(|h| join(h).unwrap()).collect();
    assert_eq!(got, [0, 1, 2, 3]);
}

/// Issue 14, defect 6: an error message quotes at most `limits::MAX_ECHO`
/// bytes of the text it was given, then an ellipsis and the text's length
/// (a 1 MiB bad amount used to give a message of over a megabyte). The
/// error itself keeps the whole input.
#[test]
fn a_long_bad_text_is_cut_in_the_message() {
    let long = format!("{}parsecs", "9".repeat(1 << 20));
    let bound = 512;
    let e = respool::units::parse_bytes(&long).unwrap_err();
    assert_eq!(e.input, long);
    let msg = e.to_string();
    assert!(msg.len() < bound, "{} bytes", msg.len());
    assert!(
        msg.contains(&format!("… ({} bytes in all)", long.len())),
        "{msg}"
    );
    let msg = Pool::builder()
        .memory(&long)
        .build()
        .unwrap_err()
        .to_string();
    assert!(msg.len() < bound, "{} bytes", msg.len());
    let pool = pool(1, GIB);
    let msg = pool
        .task()
        .cpu(&long)
        .spawn(|_| ())
        .unwrap_err()
        .to_string();
    assert!(msg.len() < bound, "{} bytes", msg.len());
    // A profile file at a path too long for the system: the I/O error
    // quotes the start of the path.
    let path = std::env::temp_dir().join("x".repeat(1 << 20));
    let e = Pool::builder()
        .workers(1)
        .memory("1GiB")
        .profile_store(respool::store::FileStore::new(path))
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::Store(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.len() < bound, "{} bytes", msg.len());
    // Short text is quoted whole, as before.
    let msg = respool::units::parse_cpu("lots").unwrap_err().to_string();
    assert!(msg.contains("\"lots\""), "{msg}");
}

/// Issue 14, defect 6: a headroom (or critical reserve) of 0 holds nothing
/// back, so it needs no capacity: setting a dimension's headroom back to 0
/// undoes it (the C API sets one dimension at a time, and a headroom of 1
/// then 0 on an untracked dimension still failed the build). A non-zero
/// headroom on an untracked dimension is still refused.
#[test]
fn a_zero_headroom_or_reserve_needs_no_capacity() {
    let zero = Resources::new()
        .with(Dim::User3, 0)
        .unwrap()
        .with(Dim::Memory, 0)
        .unwrap();
    let pool = Pool::builder()
        .workers(1)
        .memory("1GiB")
        .headroom(zero)
        .critical_reserve(Resources::new().with(Dim::User2, 0).unwrap())
        .build()
        .unwrap();
    // Nothing is held back: a task may take the whole gigabyte.
    join(pool.task().memory("1GiB").spawn(|_| ()).unwrap()).unwrap();
    let one = Resources::new().with(Dim::User3, 1).unwrap();
    match Pool::builder()
        .workers(1)
        .memory("1GiB")
        .headroom(one)
        .build()
    {
        Err(BuildError::Untracked {
            setting: "headroom",
            dim: Dim::User3,
        }) => {}
        other => panic!("{other:?}"),
    }
}

/// Issue 14, defect 6: a timeout of zero has run out when the task would
/// start: the task never runs and its handle resolves with `TimedOut`,
/// every time (it used to race the timer thread against the task, so the
/// outcome changed from run to run). Repeated to show it does not vary.
#[test]
fn a_zero_timeout_times_out_before_the_start_every_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    let pool = pool(2, GIB);
    let ran = Arc::new(AtomicUsize::new(0));
    let rounds = 300;
    for _ in 0..rounds {
        let r = ran.clone();
        let h = pool
            .task()
            .memory("1MiB")
            .timeout(Duration::ZERO)
            .spawn(move |_| r.fetch_add(1, Ordering::SeqCst))
            .unwrap();
        assert_eq!(join(h), Err(respool::TaskError::TimedOut));
    }
    // Without a handle too: not run, counted as timed out.
    let r = ran.clone();
    pool.task()
        .memory("1MiB")
        .timeout(Duration::ZERO)
        .execute(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    pool.shutdown();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(pool.snapshot().timed_out, rounds + 1);
}
