//! A `#![no_std]`, `#![no_main]` host binary that links `respool-core` and
//! drives its tracker, admission controller, queue and predictors through
//! scripted scenarios.
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
    Admission, AdmissionConfig, Decision, Policy, RejectReason, Urgency,
};
use respool_core::{Dim, Ppm, Reservation, Resources, Tracker};

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
    check(
        a.is_ok() && b.is_ok(),
        "two half-memory tasks fit",
        &mut failures,
    );
    check(
        matches!(&c, Err(s) if s.dim == Dim::Memory && s.by == gib / 2),
        "a third is refused with the memory shortfall",
        &mut failures,
    );
    drop((a, b, c));
    check(
        tracker.is_idle(),
        "releasing restores everything",
        &mut failures,
    );
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

    // A worker's release log: packed and detached reservations added by its
    // writer, given back once.
    let log = respool_core::ReleaseLog::new();
    if let Some(mut writer) = log.writer() {
        for _ in 0..3 {
            if let Some(p) = admission_free_packed(&tracker, &task)
                && let Err(p) = writer.add_packed(p)
            {
                let _ = p.unpack().release(&tracker);
            }
        }
        if let Ok(r) = tracker.try_reserve(&mem(gib / 8))
            && let Err(d) = writer.add_detached(r.detach().1)
        {
            let _ = d.release(&tracker);
        }
        check(
            log.writer().is_none(),
            "a log has one writer",
            &mut failures,
        );
    }
    check(
        !tracker.is_idle(),
        "a log holds what it was given",
        &mut failures,
    );
    check(
        log.give_back(&tracker) == Ok(true) && log.give_back(&tracker) == Ok(false),
        "a log is given back once",
        &mut failures,
    );
    check(tracker.is_idle(), "the log balances", &mut failures);

    // Admission: never-fits, defer, then the runtime's dispatch over a
    // scored queue: expire, re-check never-fits after a capacity change,
    // admit the head above its floor.
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
    {
        use respool_core::queue::{ArrayQueue, QueueConfig, Task};
        let mut waiting: ArrayQueue<u32, 8> = ArrayQueue::new(QueueConfig::default());
        let defer = |waiting: &mut ArrayQueue<u32, 8>,
                     item: u32,
                     n: u64,
                     now: u64,
                     d: &Decision<&Tracker>| {
            if let Decision::Deferred(d) = d {
                let t = Task::new(item, mem(n), now).with_deadline(d.deadline_ns.unwrap_or(0));
                let _ = waiting.push(t);
            }
        };
        // Waiters, in arrival order: 7 (1/8 GiB, until 1000), 3 (1/16 GiB,
        // until 1500), 100 (1/8 GiB, until 1500).
        defer(&mut waiting, 7, gib / 8, 0, &second);
        let half = opaque(argc, 500);
        for (item, n) in [(3, gib / 16), (100, gib / 8)] {
            let d = admission.decide(&tracker, &mem(n), Urgency::Normal, waiting.len(), half);
            defer(&mut waiting, item, n, half, &d);
        }
        let (mut epoch, mut admitted, mut refused) = (None, 0u32, 0u32);
        let mut step = |now: u64, epoch: &mut Option<u64>, waiting: &mut ArrayQueue<u32, 8>| {
            refused = refused.saturating_add(dispatch(
                &admission,
                &tracker,
                waiting,
                epoch,
                opaque(argc, now),
                &mut admitted,
            ));
        };
        // `first` still holds 1/8 GiB: nobody fits above the reserve.
        step(10, &mut epoch, &mut waiting);
        // 7's admission deadline passes.
        step(1_000, &mut epoch, &mut waiting);
        // A capacity cut to 7/32 GiB: 100 can never fit above the reserve.
        let _ = tracker.set_capacity(&mem(gib / 32 * 7));
        drop(first);
        // 3 is the head, and fits.
        step(1_100, &mut epoch, &mut waiting);
        check(
            admitted == 3 && refused == 2 && waiting.is_empty(),
            "dispatch: a deadline expires, never-fits after a cut, the head is admitted",
            &mut failures,
        );
        let _ = tracker.set_capacity(&mem(gib / 4));
    }
    let s = admission.stats();
    check(
        s.accepted == 1
            && s.deferred == 3
            && s.rejected == 1
            && s.admitted_after_wait == 1
            && s.rejected_after_wait == 2,
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

    // Queue: every public operation, with the fit search on.
    {
        use respool_core::queue::{ArrayQueue, Availability, QueueConfig, Ranked, Task, Weights};
        let weights = Weights {
            priority: 1_000,
            aging: 1,
            slack: 2,
            slack_horizon_ns: opaque(argc, 500),
            fits: 1,
            alignment: 1,
        };
        let mut q: ArrayQueue<u32, 64> = ArrayQueue::new(QueueConfig::with_weights(weights));
        let mut first = None;
        for i in 0..70u32 {
            let base = opaque(argc, u64::from(i));
            let mut t = Task::new(
                i,
                mem(base.saturating_mul(1_000)),
                base.saturating_mul(7) % 300,
            )
            .with_priority(i32::try_from(i % 5).unwrap_or(0));
            if i % 3 == 0 {
                t = t.with_deadline(base.saturating_mul(11)).with_expected(base);
            }
            match q.push(t) {
                Ok(tk) if first.is_none() => first = Some(tk),
                _ => {}
            }
        }
        check(
            q.len() == 64 && q.stats().rejected_full == 6,
            "queue full hands back",
            &mut failures,
        );
        let avail = Availability::new(mem(gib / 2), mem(gib));
        let mut window = [Ranked::EMPTY; 8];
        let top = q.top_k(opaque(argc, 1_000), &avail, &mut window);
        let peeked = q.peek(opaque(argc, 1_000), &avail).map(|p| p.ticket);
        check(
            top.len == 8 && peeked == Some(window[0].ticket),
            "top-k agrees with peek",
            &mut failures,
        );
        let popped = q.pop(opaque(argc, 1_000), &avail);
        check(
            popped.is_some_and(|p| p.ticket == window[0].ticket),
            "pop takes the best",
            &mut failures,
        );
        let taken = q.take(window[1].ticket, opaque(argc, 2_000));
        let removed = first.and_then(|t| q.remove(t));
        check(
            taken.is_some() && q.get(window[1].ticket).is_none(),
            "take by ticket",
            &mut failures,
        );
        let gone = q.remove_where(|t| t.item % 7 == 0, |_, _| {});
        let expired = q.expire(opaque(argc, 200), |_, _| {});
        q.set_config(QueueConfig {
            weights: Weights::PRIORITY_ONLY,
            probe_limit: 4,
        });
        let mut left = 0usize;
        while q
            .pop(opaque(argc, 3_000), &Availability::of(&tracker))
            .is_some()
        {
            left = left.saturating_add(1);
        }
        let s = q.stats();
        check(
            removed.is_some()
                && s.enqueued == s.dequeued + s.removed + s.expired
                && s.removed == 1 + gone as u64
                && s.expired == expired as u64
                && q.iter().count() == 0
                && left > 0,
            "queue counters add up",
            &mut failures,
        );
        check(
            q.wait_times()
                .p99()
                .is_some_and(|p| p >= q.wait_times().p50().unwrap_or(0)),
            "wait-time quantiles",
            &mut failures,
        );
    }

    // Packer: every fit, the scores, lookahead, batch placement, capacity
    // changes and a defragmentation plan applied; the books must balance.
    {
        use respool_core::packer::{
            ArrayPacker, BatchFit, DefragConfig, DefragPlan, Domain, Fit, Lookahead, Placement,
            Score,
        };
        let node = Resources::new()
            .with_saturating(Dim::Cpu, opaque(argc, 8_000))
            .with_saturating(Dim::Memory, gib);
        let mut packer: ArrayPacker<4> = ArrayPacker::new(
            [
                Domain::new(node),
                Domain::new(node),
                Domain::new(node),
                Domain::new(node),
            ],
            Fit::First,
        );
        let mut keys = 0u64;
        for (i, fit) in Fit::ALL.iter().enumerate() {
            packer.set_fit(*fit);
            let req = Resources::new()
                .with_saturating(Dim::Cpu, opaque(argc, 1_000))
                .with_saturating(Dim::Memory, gib / 3);
            let a = packer.place(&req);
            let b = packer.place_on(i % 5, &req);
            let window = [req, mem(gib / 2), mem(gib)];
            let width = usize::try_from(opaque(argc, 3)).unwrap_or(3);
            let mut lookahead = Lookahead::new(width, 2);
            let c = packer.place_from(&window, &mut lookahead);
            let _ = packer.select(&req);
            let _ = packer.fragmentation(&req);
            let _ = packer.size(&req);
            for score in Score::ALL {
                for d in packer.domains() {
                    keys = keys.wrapping_add(score.key(d, &req));
                }
            }
            let mut batch: [Option<Placement>; 3] = [None, None, None];
            let mut order = [0usize; 3];
            let _ = packer.place_batch(
                &window,
                BatchFit::BestFitDecreasing(Score::L2Residual),
                &mut order,
                &mut batch,
            );
            let _ = packer.set_capacity(i % 4, node);
            for p in [a.ok(), b.ok(), c.ok().flatten().map(|(_, p)| p)]
                .into_iter()
                .flatten()
            {
                let _ = packer.release(p);
            }
            for p in batch.into_iter().flatten() {
                let _ = packer.release(p);
            }
        }
        check(
            packer.is_idle(),
            "packer: placed and released balance",
            &mut failures,
        );
        let (Ok(x), Ok(y)) = (
            packer.place_on(0, &mem(gib / 2)),
            packer.place_on(1, &mem(gib / 2)),
        ) else {
            print("FAIL packer setup\n");
            return 1;
        };
        let mut pending = [x, y];
        let mut plan: DefragPlan<4> = DefragPlan::new();
        let cfg = DefragConfig::default();
        packer.plan_defrag(&pending, &mem(gib / 2 + 1), &cfg, &mut plan);
        let moved = packer.apply_defrag(&mut pending, &plan, &cfg);
        check(
            moved == Ok(1),
            "packer: defragmentation moves one task",
            &mut failures,
        );
        for p in pending {
            let _ = packer.release(p);
        }
        check(
            packer.is_idle(),
            "packer: books balance after defragmentation",
            &mut failures,
        );
        core::hint::black_box(keys);
    }

    // A queue over borrowed storage grows onto a larger one; a learned
    // request is clamped to what admission can ever grant.
    {
        use respool_core::queue::{Availability, QueueConfig, ScoredQueue, Slot, Task};
        let mut small: [Slot<u32>; 4] = core::array::from_fn(|_| Slot::new());
        let mut big: [Slot<u32>; 16] = core::array::from_fn(|_| Slot::new());
        let mut q = ScoredQueue::with_storage(&mut small[..], QueueConfig::default());
        for i in 0..4u32 {
            let _ = q.push(Task::new(i, mem(opaque(argc, 10)), u64::from(i)));
        }
        let full = q.push(Task::new(9, mem(1), 9)).is_err();
        let grown = q.grow(&mut big[..]).is_ok() && q.push(Task::new(9, mem(1), 9)).is_ok();
        let first = q
            .pop(opaque(argc, 100), &Availability::NONE)
            .map(|p| p.task.item);
        check(
            full && grown && q.capacity() == 16 && first == Some(0),
            "queue grows onto larger storage",
            &mut failures,
        );
        let tracker = Tracker::new(&mem(opaque(argc, 1000)));
        let admission = Admission::new(AdmissionConfig::default());
        let learned = mem(opaque(argc, u64::MAX));
        let clamped = learned.clamped_to(&admission.grantable(&tracker, Urgency::Normal));
        check(
            admission
                .check_ever_fits(&tracker, &clamped, Urgency::Normal)
                .is_ok(),
            "a clamped estimate can ever fit",
            &mut failures,
        );
    }

    // Predictors: a class learned from a size-dependent series with OOM
    // events, a series of extremes, the histogram and its buckets.
    {
        use respool_core::predict::histogram::{bucket_end, bucket_index};
        use respool_core::predict::{
            DecayingHistogram, PredictConfig, ResourcePredictor, SeriesPredictor, Source,
        };
        let base = opaque(argc, 1_000_000);
        let cfg = PredictConfig {
            safety_margin: Ppm::from_ppm(u32::try_from(opaque(argc, 150_000)).unwrap_or(0)),
            regression_window: u32::try_from(opaque(argc, 64)).unwrap_or(2),
            min_samples: u32::try_from(opaque(argc, 3)).unwrap_or(1),
            ..PredictConfig::default()
        };
        let mut class: ResourcePredictor = ResourcePredictor::new();
        let mut x = opaque(argc, 7);
        for i in 0..200u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let size = 1_000u64.saturating_add(x % 9_000);
            let used = Resources::new()
                .with_saturating(Dim::Cpu, base.saturating_add(x % 50_000))
                .with_saturating(Dim::Memory, size.saturating_mul(opaque(argc, 4096)));
            class.observe(
                &cfg,
                &used,
                Some(size),
                i.saturating_mul(opaque(argc, 1_000_000_000)),
            );
            if i % 50 == 0 {
                let _ = class.observe_oom(&cfg, Dim::Memory, x, i);
            }
        }
        let fallback = Resources::NONE.with_saturating(Dim::Gpu, 1);
        let est = class.predict(&cfg, Some(opaque(argc, 5_000)), &fallback);
        check(
            est.learned.contains(Dim::Cpu),
            "predictor: cpu learned",
            &mut failures,
        );
        let mut s: SeriesPredictor<16> = SeriesPredictor::new();
        for i in 0..100u64 {
            let v = if i % 2 == 0 {
                opaque(argc, 0)
            } else {
                opaque(argc, u64::MAX)
            };
            s.observe(&cfg, v, Some(opaque(argc, u64::MAX)), opaque(argc, i));
        }
        let p = s.predict(&cfg, Some(opaque(argc, u64::MAX)), opaque(argc, 5));
        check(
            p.source != Source::Fallback && !p.is_confident(&cfg),
            "predictor: extremes, no confidence",
            &mut failures,
        );
        check(
            s.accuracy(Source::Regression).total() > 0,
            "predictor: accuracy",
            &mut failures,
        );
        let mut h: DecayingHistogram<896> = DecayingHistogram::new();
        h.add(opaque(argc, u64::MAX), opaque(argc, 0), opaque(argc, 1));
        h.add(opaque(argc, 0), opaque(argc, u64::MAX), opaque(argc, 1));
        check(
            h.percentile(Ppm::MAX).is_some(),
            "histogram percentile",
            &mut failures,
        );
        check(
            bucket_end(bucket_index(opaque(argc, 1000))) >= 1000,
            "histogram buckets",
            &mut failures,
        );
    }

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

/// The std runtime's dispatch (`std-runtime/src/sched.rs`) with a window of
/// one: expire, re-check never-fits when the tracker's settings changed,
/// then start the head while it reserves above its floor (the reservation
/// is released at once here). Adds the admitted items to `admitted`;
/// returns how many waiters were refused.
fn dispatch(
    admission: &Admission,
    tracker: &Tracker,
    waiting: &mut respool_core::queue::ArrayQueue<u32, 8>,
    epoch: &mut Option<u64>,
    now: u64,
    admitted: &mut u32,
) -> u32 {
    use respool_core::queue::Availability;
    let mut refused = 0u32;
    waiting.expire(now, |_, _| {
        admission.record_after_wait(false);
        refused = refused.saturating_add(1);
    });
    if *epoch != Some(tracker.settings_epoch()) {
        *epoch = Some(tracker.settings_epoch());
        waiting.remove_where(
            |t| {
                admission
                    .check_ever_fits(tracker, &t.request, Urgency::Normal)
                    .is_err()
            },
            |_, _| {
                admission.record_after_wait(false);
                refused = refused.saturating_add(1);
            },
        );
    }
    loop {
        let avail = Availability::of(tracker);
        let Some(head) = waiting.peek(now, &avail) else {
            break;
        };
        let floor = admission.floor(Urgency::Normal);
        let Ok(r) = Reservation::try_new(tracker, &head.task.request, floor) else {
            break;
        };
        let ticket = head.ticket;
        let Some(t) = waiting.take(ticket, now) else {
            break;
        };
        admission.record_after_wait(true);
        *admitted = admitted.saturating_add(t.item);
        drop(r);
    }
    refused
}

/// A packed reservation of `req` with no floor (what a runtime's fast path
/// takes for a task that fits).
fn admission_free_packed(
    tracker: &Tracker,
    req: &Resources,
) -> Option<respool_core::PackedReservation> {
    tracker.try_reserve_packed(req, &Resources::NONE)
}
