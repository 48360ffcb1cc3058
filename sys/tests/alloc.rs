//! Sampling allocates nothing after warm-up: a counting global allocator
//! counts the allocations made on the sampling thread.
//!
//! The counter only counts on threads that switched it on (a thread-local
//! flag), so the test harness's own allocations on other threads do not
//! interfere. Linux only: it samples the real procfs.
#![cfg(target_os = "linux")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use respool_sys::SysRoot;
use respool_sys::monitor::{
    Monitor, MonitorConfig, ProcfsMonitor, Resource, ResourceStatus, Sampler,
};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(false));
    after - before
}

/// The resources that work on this machine (others would allocate their
/// error on every retry).
fn working_resources() -> Vec<Resource> {
    let mut s = Sampler::new(
        ProcfsMonitor::new(&SysRoot::host()),
        MonitorConfig::default(),
    )
    .unwrap();
    s.tick(Instant::now());
    let ok: Vec<Resource> = Resource::ALL
        .into_iter()
        .filter(|r| s.snapshot().status(*r) == ResourceStatus::Ok)
        .collect();
    println!("resources read on this machine: {ok:?}");
    assert!(ok.contains(&Resource::Cpu) && ok.contains(&Resource::Memory));
    ok
}

#[test]
fn sampler_ticks_do_not_allocate_after_warm_up() {
    // The sanity check: the counter does count.
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 64]))) >= 1);

    let resources = working_resources();
    let config = MonitorConfig::default().only(&resources);
    let mut s = Sampler::new(ProcfsMonitor::new(&SysRoot::host()), config).unwrap();
    let t0 = Instant::now();
    let sec = Duration::from_secs(1);
    // Warm-up: files are opened, rates get their first reading.
    s.tick(t0);
    s.tick(t0 + sec);
    let n = allocations_in(|| {
        for k in 2..52u32 {
            let tick = s.tick(t0 + sec * k);
            assert!(tick.refreshed(Resource::Cpu));
        }
    });
    assert_eq!(n, 0, "allocations in 50 samples of {resources:?}");
    // Every resource was read successfully in the counted ticks (container
    // limits every 10 s), so all the parsing paths ran.
    assert_eq!(s.snapshot().seq, 52);
    for r in &resources {
        assert_eq!(s.snapshot().status(*r), ResourceStatus::Ok, "{r:?}");
    }
}

#[test]
fn monitor_thread_does_not_allocate_per_sample() {
    let resources = working_resources();
    let config = MonitorConfig::default()
        .only(&resources)
        .with_interval(Duration::from_millis(5))
        .with_ttl(Resource::ContainerLimits, Duration::from_millis(5));
    let monitor = Monitor::with_source(ProcfsMonitor::new(&SysRoot::host()), config).unwrap();
    let (tx, rx) = mpsc::sync_channel::<(u64, u64)>(64);
    let mut seen = 0u64;
    let mut start = 0u64;
    // The callback runs on the sampling thread: it switches counting on there
    // after the warm-up samples and reports the count so far.
    monitor.subscribe(move |_| {
        seen += 1;
        if seen == 3 {
            COUNTING.with(|c| c.set(true));
            start = ALLOCATIONS.load(Ordering::Relaxed);
        }
        if seen > 3 {
            let n = ALLOCATIONS.load(Ordering::Relaxed) - start;
            // try_send: a full channel must not block the sampler (and a
            // sync_channel send does not allocate).
            let _ = tx.try_send((seen, n));
        }
    });
    let mut last = (0, 0);
    while last.0 < 40 {
        last = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    }
    monitor.stop();
    assert_eq!(
        last.1,
        0,
        "allocations on the sampling thread over {} samples",
        last.0 - 3
    );
}
