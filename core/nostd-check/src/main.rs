//! A `#![no_std]`, `#![no_main]` host binary that links `respool-core` and
//! drives its tracker and admission controller through a scripted scenario.
//!
//! It proves two things at link time (see `ci/nostd.sh`):
//! - **no std, no alloc**: nothing here or in the core links `std`; the binary
//!   gets only `libc` (for `write` and the C runtime's `main` entry);
//! - **no reachable panic**: the panic handler calls a symbol that does not
//!   exist. After fat LTO every panic path the optimiser cannot prove dead
//!   keeps a reference to it, and the link fails.
//!
//! At run time it prints one line per scenario and exits non-zero if any
//! expectation fails.
#![no_std]
#![no_main]

use core::ffi::{c_char, c_int};

use respool_core::admission::{
    Admission, AdmissionConfig, ArrayWaitQueue, Decision, Policy, RejectReason, Urgency,
};
use respool_core::{Dim, Ppm, Resources, Tracker};

#[link(name = "c")]
unsafe extern "C" {
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
}

unsafe extern "C" {
    /// Deliberately undefined: if the optimiser leaves any call to the panic
    /// handler, the link fails with this name in the error.
    fn respool_core_has_a_reachable_panic_path() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: never actually called: the symbol does not exist, so a binary
    // that still references it does not link (that is the check).
    unsafe { respool_core_has_a_reachable_panic_path() }
}

fn print(s: &str) {
    // SAFETY: `s` is a valid buffer of `s.len()` bytes for the whole call;
    // fd 1 is stdout. A short or failed write only loses output.
    let _ = unsafe { write(1, s.as_ptr(), s.len()) };
}

fn check(ok: bool, what: &str, failures: &mut u32) {
    print(if ok { "ok   " } else { "FAIL " });
    print(what);
    print("\n");
    if !ok {
        *failures = failures.saturating_add(1);
    }
}

fn mem(n: u64) -> Resources {
    Resources::new().with_saturating(Dim::Memory, n)
}

/// Reads an amount from argc so the optimiser cannot constant-fold the
/// scenario away (and with it the panic paths it is meant to expose).
fn opaque(argc: c_int, base: u64) -> u64 {
    base.saturating_add(u64::from(argc.unsigned_abs()).saturating_sub(1))
}

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, _argv: *const *const c_char) -> c_int {
    let mut failures = 0u32;
    let gib = opaque(argc, 1 << 30);

    // Tracker: reserve, refuse, release, capacity cut.
    let cap = Resources::new()
        .with_saturating(Dim::Cpu, opaque(argc, 4_000))
        .with_saturating(Dim::Memory, gib);
    let tracker = Tracker::new(&cap);
    let task = Resources::new()
        .with_saturating(Dim::Cpu, 1_000)
        .with_saturating(Dim::Memory, gib / 2);
    let a = tracker.try_reserve(&task);
    let b = tracker.try_reserve(&task);
    let c = tracker.try_reserve(&task);
    check(a.is_ok() && b.is_ok(), "two half-memory tasks fit", &mut failures);
    check(
        matches!(&c, Err(s) if s.dim == Dim::Memory && s.by == gib / 2),
        "a third is refused with the memory shortfall",
        &mut failures,
    );
    drop((a, b, c));
    check(tracker.is_idle(), "releasing restores everything", &mut failures);
    let held = tracker.try_reserve(&task);
    let _ = tracker.set_capacity(&mem(gib / 4));
    check(
        tracker.try_reserve(&mem(1)).is_err(),
        "after a cut below usage nothing new is admitted",
        &mut failures,
    );
    drop(held);
    check(
        tracker.available().amount(Dim::Memory) == gib / 4,
        "after the release the new capacity is free",
        &mut failures,
    );
    let mut grown = tracker.try_reserve(&mem(1)).ok();
    if let Some(r) = grown.as_mut() {
        let _ = r.force_grow_to(&mem(gib));
        r.shrink(&mem(gib / 2));
    }
    drop(grown);
    check(tracker.is_idle(), "grow and shrink balance", &mut failures);

    // Admission: never-fits, defer, head-of-line admission from the queue.
    let admission = Admission::new(AdmissionConfig {
        policy: Policy::BlockUntilDeadline { max_wait_ns: 1_000 },
        critical_reserve: mem(gib / 8),
        max_waiting: 8,
    });
    check(
        matches!(
            admission.decide(&tracker, &mem(gib), Urgency::Normal, 0, 0),
            Decision::Rejected(RejectReason::NeverFits(_))
        ),
        "a request above capacity is refused at once",
        &mut failures,
    );
    let first = admission.decide(&tracker, &mem(gib / 8), Urgency::Normal, 0, 0);
    let second = admission.decide(&tracker, &mem(gib / 8), Urgency::Normal, 0, 0);
    check(
        first.is_accepted() && matches!(second, Decision::Deferred(_)),
        "the critical reserve defers the second normal request",
        &mut failures,
    );
    let mut queue: ArrayWaitQueue<u32, 8> = ArrayWaitQueue::new();
    let _ = queue.push(7, mem(gib / 8), Urgency::Normal, 0, Some(1_000));
    drop(first);
    let mut admitted = 0u32;
    let n = admission.admit_waiting(
        &mut queue,
        || &tracker,
        10,
        |item, r| {
            admitted = admitted.saturating_add(item);
            drop(r);
        },
        |_, _| {},
    );
    check(n == 1 && admitted == 7, "the waiter is admitted on release", &mut failures);
    let s = admission.stats();
    check(
        s.accepted == 1 && s.deferred == 1 && s.rejected == 1 && s.admitted_after_wait == 1,
        "admission counters add up",
        &mut failures,
    );

    // Fixed point.
    let u = mem(gib / 4).utilisation(&tracker.capacity());
    check(
        u.get(Dim::Memory.index()).copied().flatten() == Some(Ppm::ONE),
        "utilisation in ppm",
        &mut failures,
    );

    #[cfg(feature = "panic-canary")]
    {
        let table = [1u8, 2, 3, 4];
        // Deliberately unchecked: the index depends on argc.
        failures = failures.saturating_add(u32::from(table[argc.unsigned_abs() as usize]));
    }

    if failures == 0 {
        print("nostd-check: all scenarios passed\n");
        0
    } else {
        print("nostd-check: FAILED\n");
        1
    }
}
