//! A point-in-time view of a pool, cheap to take (a few hundred atomic loads).

use std::fmt;
use std::sync::atomic::Ordering;

use respool_core::admission::AdmissionStats;
use respool_core::{Dim, Ppm, Resources};

use crate::engine::Shared;
use crate::learn::ClassAccuracy;
use crate::metrics::LatencySummary;
use crate::units::{format_bytes, format_cpu};

/// Counters, utilisation and latencies of a pool. Each figure is read
/// atomically; the set is not one atomic snapshot. Counters are updated by
/// the worker as it finishes a task, so a plain [`Pool::submit`](crate::pool::Pool::submit)
/// handle (and a timed-out task's handle) may resolve a moment before the
/// counters include it; after [`Pool::shutdown`](crate::pool::Pool::shutdown) they
/// are exact.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// Worker threads.
    pub workers: usize,
    /// Tasks accepted for submission (all paths).
    pub submitted: u64,
    /// Tasks that ran to completion without panicking.
    pub completed: u64,
    /// Tasks that panicked (caught; the worker went on).
    pub panicked: u64,
    /// Tasks whose timeout fired.
    pub timed_out: u64,
    /// Admission decisions: accepted, deferred and rejected at submit, and
    /// later admitted or refused after waiting.
    pub admission: AdmissionStats,
    /// Tasks refused at submit (admission, full wait queue).
    pub rejected: u64,
    /// Admitted tasks waiting for a worker.
    pub queued: usize,
    /// Tasks waiting for resources.
    pub waiting: usize,
    /// The most tasks that waited for resources at once.
    pub peak_waiting: usize,
    /// Submissions that waited for room in the wait queue before joining it
    /// (backpressure, see [`Builder::max_waiting`](crate::builder::Builder::max_waiting)).
    pub held_for_room: u64,
    /// Capacity per tracked dimension.
    pub capacity: Resources,
    /// Capacity minus headroom and external usage.
    pub effective_capacity: Resources,
    /// Reserved by admitted tasks, per tracked dimension.
    pub reserved: Resources,
    /// `reserved / capacity` per tracked dimension (`None`: untracked).
    pub utilisation: [Option<Ppm>; Dim::COUNT],
    /// What the task at the head of the wait queue lacks to start, per
    /// tracked dimension it asks for: its request minus what is free (zero
    /// in a dimension where it would fit; empty when nobody waits). A
    /// signal for autoscaling: how much more of what would let work start.
    pub head_shortfall: Resources,
    /// Share of free CPU-domain capacity that the request at the head of the
    /// wait queue cannot use (zero with a single CPU domain or nobody waiting).
    pub fragmentation: Ppm,
    /// Per placement domain (CPU domains, then GPU domains): used and capacity.
    pub domains: Vec<(Resources, Resources)>,
    /// Submit to start, for measured tasks.
    pub wait: LatencySummary,
    /// Time spent in admission and placement, for resource-aware tasks.
    pub schedule: LatencySummary,
    /// Submit to finish, for measured tasks.
    pub latency: LatencySummary,
    /// Prediction accuracy over all classes (`class` is `"*"`).
    pub learning: ClassAccuracy,
    /// Prediction accuracy and expected usage per class, sorted by key.
    pub classes: Vec<ClassAccuracy>,
    /// How the [profile store](crate::Builder::profile_store) is doing, for
    /// a store that says (a shared one: reachable, samples waiting to be
    /// written; see [`StoreStatus`](crate::store::StoreStatus)).
    pub store: Option<crate::store::StoreStatus>,
    /// What the costs in `classes` and `learning` are priced at (the
    /// [`Pricing`](crate::cost::Pricing) label), when the pool has
    /// [`Builder::pricing`](crate::Builder::pricing).
    pub pricing: Option<String>,
}

pub(crate) fn take(s: &Shared) -> PoolSnapshot {
    let (mut classes, mut learning) = s.learner.accuracy();
    if let Some(p) = &s.config.pricing {
        for c in classes.iter_mut().chain(std::iter::once(&mut learning)) {
            c.cost = Some(crate::cost::ClassCost::of(&c.used, &c.held, &p.rates));
        }
    }
    let (fragmentation, mut domains, peak_waiting, head) = s.sched.placement_view(s.now_ns());
    let capacity = s.sched.tracker.capacity();
    let reserved = s.sched.tracker.reserved();
    let effective = s.sched.tracker.effective_capacity();
    // What the head of the wait queue lacks, in the dimensions it asks for
    // and the pool tracks.
    let mut shortfall = Resources::NONE;
    for (dim, want) in head.iter() {
        if let Some(cap) = effective.get(dim) {
            let free = cap.saturating_sub(reserved.amount(dim));
            shortfall = shortfall.with_saturating(dim, want.saturating_sub(free));
        }
    }
    if s.sched.trivial {
        // One CPU domain and nothing to place: the packer is not kept up
        // to date (admission is the tracker's alone), so the one domain's
        // use is what the tracker holds, in the domain's dimensions.
        if let [(used, cap)] = domains.as_mut_slice() {
            let mut u = Resources::NONE;
            for (dim, _) in cap.iter() {
                u = u.with_saturating(dim, reserved.amount(dim));
            }
            *used = u;
        }
    }
    PoolSnapshot {
        workers: s.config.workers,
        submitted: s.metrics.submitted.total(),
        completed: s.metrics.completed(),
        panicked: s.metrics.panicked(),
        timed_out: s.metrics.timed_out.load(Ordering::Relaxed),
        admission: {
            // Packed acceptances are counted once, as submissions.
            let mut a = s.sched.admission.stats();
            a.accepted = a
                .accepted
                .saturating_add(s.metrics.submitted.packed.load(Ordering::Relaxed));
            a
        },
        rejected: s.metrics.rejected_at_submit.load(Ordering::Relaxed),
        queued: s.queued(),
        waiting: s.waiting(),
        peak_waiting,
        held_for_room: s.metrics.held_for_room.load(Ordering::Relaxed),
        effective_capacity: effective,
        head_shortfall: shortfall,
        utilisation: reserved.utilisation(&capacity),
        capacity,
        reserved,
        fragmentation,
        domains,
        wait: s.metrics.wait(),
        schedule: s.metrics.schedule.summary(),
        latency: s.metrics.latency(),
        learning,
        classes,
        store: s.config.store.as_ref().and_then(|st| st.status()),
        pricing: s.config.pricing.as_ref().map(|p| p.label.clone()),
    }
}

impl fmt::Display for PoolSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "workers {}  submitted {}  completed {}  panicked {}  timed out {}  rejected {}",
            self.workers,
            self.submitted,
            self.completed,
            self.panicked,
            self.timed_out,
            self.rejected
        )?;
        writeln!(
            f,
            "admission: accepted {}  deferred {}  admitted after wait {}  refused after wait {}",
            self.admission.accepted,
            self.admission.deferred,
            self.admission.admitted_after_wait,
            self.admission.rejected_after_wait
        )?;
        writeln!(
            f,
            "queued {}  waiting for resources {} (peak {}, submitters held for room {})",
            self.queued, self.waiting, self.peak_waiting, self.held_for_room
        )?;
        for (dim, cap) in self.capacity.iter() {
            let used = self.reserved.amount(dim);
            let fmt_amount = |v: u64| match dim {
                Dim::Memory | Dim::GpuMemory => format_bytes(v),
                Dim::Cpu => format_cpu(v),
                _ => v.to_string(),
            };
            writeln!(
                f,
                "{dim:>10}: reserved {} of {} ({})",
                fmt_amount(used),
                fmt_amount(cap),
                self.utilisation
                    .get(dim.index())
                    .copied()
                    .flatten()
                    .unwrap_or(Ppm::ZERO)
            )?;
        }
        if self.learning.predictions > 0 {
            writeln!(
                f,
                "learning: {} classes, {} predictions, {} within 10% ({})",
                self.classes.len(),
                self.learning.predictions,
                self.learning.within_10pct,
                self.learning.share()
            )?;
        }
        if let (Some(label), Some(cost)) = (&self.pricing, self.learning.cost) {
            writeln!(
                f,
                "cost: {} at {label} prices, {} more held unused (slack)",
                crate::cost::format_usd(cost.usd()),
                crate::cost::format_usd(cost.slack_usd())
            )?;
        }
        if let Some(store) = &self.store {
            writeln!(f, "profile store: {store}")?;
        }
        write!(
            f,
            "latency p50 {:?}  p99 {:?}  wait p50 {:?}  p99 {:?}",
            self.latency.p50, self.latency.p99, self.wait.p50, self.wait.p99
        )
    }
}
