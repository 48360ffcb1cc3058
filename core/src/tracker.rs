//! A lock-free, multi-dimensional resource tracker.
//!
//! # What it does
//!
//! A [`Tracker`] holds, for each *tracked* dimension (the dimensions set in the
//! capacity it was built with), how much is still available for reservations.
//! [`Tracker::try_reserve`] takes a [`Resources`] request and either reserves
//! every dimension of it or none, returning a [`Reservation`] that gives the
//! amounts back exactly once: when it is dropped or [`Reservation::release`]d.
//! Because `release` consumes the reservation and `Drop` runs at most once,
//! releasing twice cannot be written.
//!
//! Capacity can change while reservations are held ([`Tracker::set_capacity`],
//! for example when a container's memory limit is lowered), and two amounts are
//! held back from reservations: a *headroom* (a safety margin) and an
//! *external* usage (memory used by other processes or by tasks beyond what they
//! reserved, as reported by a monitor). The capacity that reservations are
//! checked against is the **effective capacity**:
//!
//! ```text
//! effective = capacity - headroom - external
//! available = effective - reserved          (may be negative after a cut)
//! ```
//!
//! # The algorithm
//!
//! One `AtomicI64` per dimension holds `available`. Reserving an amount `n` in
//! a dimension is a compare-and-swap loop that moves `available` from `a` to
//! `a - n` only if `a - n >= floor` (the floor is zero, or the share held back
//! for critical work, see [`crate::admission`]). A multi-dimensional request
//! reserves its dimensions one after another in index order; if one fails,
//! the dimensions already taken are given back (`fetch_add`) and the request
//! fails as a whole with the [`Shortfall`] of the failing dimension. Releasing
//! is one `fetch_add` per dimension.
//!
//! Changes of capacity, headroom and external usage are applied to `available`
//! as a single `fetch_add` of their delta. These setters are rare (a monitor
//! thread, configuration), and they are serialised among themselves by a small
//! spin lock that reservations never touch; without it two concurrent setters
//! could each apply a delta computed against the other's old value and expose,
//! for an instant, a capacity that nobody set.
//!
//! # Why it never over-commits
//!
//! Fix one dimension `d`. Let `R` be the sum of the amounts currently held in
//! `d` by reservations and `E` the effective capacity, as last applied to the
//! counter. Every operation that changes `R` or `E` is exactly one atomic
//! read-modify-write of `available[d]` (a successful CAS for a reservation, a
//! `fetch_add` for a release, a rollback or an applied capacity delta), so at
//! every instant `available[d] == E - R`: there is no window in which the
//! counter and the abstract state disagree. A reservation of `n` in `d`
//! succeeds only when its CAS observes `available[d] - n >= floor >= 0`, and the
//! CAS fails if any other operation changed the counter since it was read. So
//! right after every successful reservation `R <= E - floor <= E`. Releases
//! only lower `R`. A capacity cut can make `E < R` (reservations already held
//! cannot be taken back); `available[d]` is then negative and every
//! reservation of a positive amount in `d` fails until releases bring `R` back
//! under `E`. The one deliberate exception is [`Reservation::force_grow_to`]:
//! accounting follows reality, so when a task is measured using more than it
//! reserved, its reservation grows without a check and new admissions pause.
//!
//! Requests are not atomic *across* dimensions: while a request holds dimension
//! 0 and tries dimension 1, a second request may see dimension 0 as taken and
//! fail although it would fit once the first rolls back. Such failures are
//! conservative (they never over-commit) and transient (a rollback completes in
//! a bounded number of steps), so callers simply retry or defer.
//!
//! The loom models in `core/tests/loom_tracker.rs` check these claims with
//! three threads reserving and releasing while a fourth changes capacity.
//!
//! # Bounds
//!
//! Amounts are at most [`MAX_AMOUNT`] = 2^60 (enforced by [`Resources`]).
//! Capacity, headroom and external usage are each at most 2^60, so effective
//! capacity lies in `[-2^61, 2^60]`; reservations that pass the check keep
//! `available >= 0`, and forced growth is clamped so that `available` never
//! goes below `-2^62`. Every intermediate value fits an `i64` without wrapping.

use core::fmt;
use core::ops::Deref;

use crate::primitive::hint;
use crate::primitive::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use crate::resource::{Dim, DimSet, MAX_AMOUNT, Resources, Shortfall};

/// Which setting `apply_setting` changes.
#[derive(Clone, Copy)]
enum Setting {
    Capacity,
    Headroom,
    External,
}

/// The lowest value `available` may reach through forced growth: -2^62.
const AVAILABLE_FLOOR: i64 = -(1 << 62);

/// Converts an amount (at most [`MAX_AMOUNT`] by construction) to `i64`.
#[inline]
fn signed(amount: u64) -> i64 {
    // Amounts come from `Resources`, which caps them at 2^60 < i64::MAX.
    i64::try_from(amount.min(MAX_AMOUNT)).unwrap_or(i64::MAX)
}

/// Why a tracker setting was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackerError {
    /// The dimension was not set in the capacity the tracker was built with,
    /// so it is untracked and has no capacity to change.
    Untracked {
        /// The dimension.
        dim: Dim,
    },
    /// The tracker is not the one this log's (or token's) reservations
    /// were taken on.
    OtherTracker,
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerError::Untracked { dim } => write!(
                f,
                "dimension {dim} is not tracked: give it a capacity when the tracker is built"
            ),
            TrackerError::OtherTracker => f.write_str(
                "these reservations were taken on another tracker: give them back to that one",
            ),
        }
    }
}

impl core::error::Error for TrackerError {}

/// Lock-free accounting of reservations against a multi-dimensional capacity.
///
/// See the [module documentation](self) for the algorithm and its proof.
///
/// # Examples
///
/// ```
/// use respool_core::{Dim, Resources, Tracker};
/// let cap = Resources::new().with(Dim::Memory, 1 << 30)?;
/// let tracker = Tracker::new(&cap);
/// let half = Resources::new().with(Dim::Memory, 512 << 20)?;
/// let a = tracker.try_reserve(&half).unwrap();
/// let b = tracker.try_reserve(&half).unwrap();
/// assert!(tracker.try_reserve(&half).is_err());
/// a.release();
/// drop(b);
/// assert!(tracker.is_idle());
/// # Ok::<(), respool_core::ResourceError>(())
/// ```
pub struct Tracker {
    /// `effective - reserved` per dimension; negative when over-committed.
    available: [AtomicI64; Dim::COUNT],
    /// Configured capacity per dimension (for reporting and never-fits checks).
    capacity: [AtomicU64; Dim::COUNT],
    /// Safety margin held back from reservations, per dimension.
    headroom: [AtomicU64; Dim::COUNT],
    /// Usage not covered by any reservation (reported by a monitor).
    external: [AtomicU64; Dim::COUNT],
    /// Serialises capacity, headroom and external changes (never reservations).
    setter_lock: AtomicBool,
    /// `capacity - headroom` per dimension, kept in step by the setters.
    limit: [AtomicI64; Dim::COUNT],
    /// Bumped by every change of capacity or headroom (not external usage), so
    /// that waiters can re-check whether their request can still ever fit.
    epoch: AtomicU64,
    /// Dimensions with a capacity; fixed at construction.
    tracked: DimSet,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("capacity", &self.capacity())
            .field("effective", &self.effective_capacity())
            .field("reserved", &self.reserved())
            .finish()
    }
}

impl Tracker {
    /// A tracker for the dimensions set in `capacity`, with nothing reserved and
    /// no headroom. Dimensions unset in `capacity` are untracked: requests in
    /// them always succeed and are not accounted.
    #[must_use]
    pub fn new(capacity: &Resources) -> Tracker {
        // Unset dimensions have amount zero in the raw array.
        let (amounts, tracked) = capacity.to_raw();
        Tracker {
            available: core::array::from_fn(|i| {
                AtomicI64::new(signed(amounts.get(i).copied().unwrap_or(0)))
            }),
            capacity: core::array::from_fn(|i| {
                AtomicU64::new(amounts.get(i).copied().unwrap_or(0))
            }),
            limit: core::array::from_fn(|i| {
                AtomicI64::new(signed(amounts.get(i).copied().unwrap_or(0)))
            }),
            headroom: core::array::from_fn(|_| AtomicU64::new(0)),
            external: core::array::from_fn(|_| AtomicU64::new(0)),
            setter_lock: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            tracked,
        }
    }

    /// The dimensions this tracker accounts.
    #[must_use]
    #[inline]
    pub fn tracked(&self) -> DimSet {
        self.tracked
    }

    #[inline]
    fn slot(&self, dim: Dim) -> Option<&AtomicI64> {
        self.available.get(dim.index())
    }

    /// Whether [`Tracker::try_reserve_above`] would reserve `request` above
    /// `floor` now, without reserving anything (another thread may change
    /// the answer at once): a cheap necessary condition for admitting a
    /// request, for a caller that would otherwise search a queue for it.
    #[must_use]
    pub fn fits_above(&self, request: &Resources, floor: &Resources) -> bool {
        let amounts = request.raw_amounts();
        let floors = floor.raw_amounts();
        let mut todo = request.dims().intersection(self.tracked).bits();
        while todo != 0 {
            let i = todo.trailing_zeros() as usize;
            todo &= todo.wrapping_sub(1);
            let (Some(&need), Some(slot)) = (amounts.get(i), self.available.get(i)) else {
                continue;
            };
            let fl = signed(floors.get(i).copied().unwrap_or(0));
            if need != 0 && slot.load(Ordering::Acquire) < threshold(need, fl) {
                return false;
            }
        }
        true
    }

    /// Reserves `request` (its tracked dimensions) or nothing.
    ///
    /// # Errors
    ///
    /// The [`Shortfall`] of the first dimension that does not fit; nothing is
    /// held after an error.
    #[inline]
    pub fn try_reserve(&self, request: &Resources) -> Result<Reservation<&Tracker>, Shortfall> {
        Reservation::try_new(self, request, &Resources::NONE)
    }

    /// Reserves `request` only if at least `floor` stays available afterwards in
    /// every dimension (used to keep a share of capacity for critical work).
    ///
    /// # Errors
    ///
    /// As [`Tracker::try_reserve`]; the shortfall's `available` is what is
    /// available above the floor.
    #[inline]
    pub fn try_reserve_above(
        &self,
        request: &Resources,
        floor: &Resources,
    ) -> Result<Reservation<&Tracker>, Shortfall> {
        Reservation::try_new(self, request, floor)
    }

    /// Reserves the tracked, non-zero dimensions of `request`; on failure rolls
    /// back and returns the shortfall. Returns the amounts actually held.
    ///
    /// This is the hot path (see `benches/benches/iai_tracker.rs`): it walks
    /// the bits of the dimension mask directly and builds the result once.
    #[inline]
    fn reserve_raw(&self, request: &Resources, floor: &Resources) -> Result<Resources, Shortfall> {
        let amounts = request.raw_amounts();
        let floors = floor.raw_amounts();
        let mut todo = request.dims().intersection(self.tracked).bits();
        let mut taken = 0u16;
        while todo != 0 {
            let i = todo.trailing_zeros() as usize;
            todo &= todo.wrapping_sub(1);
            let (Some(&need), Some(slot)) = (amounts.get(i), self.available.get(i)) else {
                continue;
            };
            if need == 0 {
                continue;
            }
            let fl = signed(floors.get(i).copied().unwrap_or(0));
            if let Err(current) = take_above(slot, need, fl) {
                self.release_mask(amounts, taken);
                return Err(self.shortfall_at(i, need, current.saturating_sub(fl)));
            }
            taken |= 1 << i;
        }
        Ok(request.restricted(DimSet::from_bits_truncate(taken)))
    }

    /// [`Tracker::try_reserve_above`] straight into a [`PackedReservation`],
    /// for a runtime that carries reservations packed: `None`, with the
    /// tracker as it was, when the request does not fit now (above `floor`)
    /// or holds more than [`PACKED_DIMS`] tracked, non-zero dimensions. The
    /// caller then asks [`Tracker::try_reserve_above`] (or admission) why.
    #[inline]
    pub fn try_reserve_packed(
        &self,
        request: &Resources,
        floor: &Resources,
    ) -> Option<PackedReservation> {
        let amounts = request.raw_amounts();
        let floors = floor.raw_amounts();
        let origin = core::num::NonZeroUsize::new(tracker_id(self))?;
        let mut todo = request.dims().intersection(self.tracked).bits();
        let mut taken = 0u16;
        let mut packed = [0u64; PACKED_DIMS];
        let mut n = 0usize;
        while todo != 0 {
            let i = todo.trailing_zeros() as usize;
            todo &= todo.wrapping_sub(1);
            let (Some(&need), Some(slot)) = (amounts.get(i), self.available.get(i)) else {
                continue;
            };
            if need == 0 {
                continue;
            }
            let Some(out) = packed.get_mut(n) else {
                // More dimensions than a pack holds.
                self.release_mask(amounts, taken);
                return None;
            };
            if take_above(slot, need, signed(floors.get(i).copied().unwrap_or(0))).is_err() {
                self.release_mask(amounts, taken);
                return None;
            }
            *out = need;
            n = n.saturating_add(1);
            taken |= 1 << i;
        }
        Some(PackedReservation {
            amounts: packed,
            dims: taken,
            origin,
        })
    }

    /// The shortfall of dimension index `i` (cold: only on refusal).
    #[cold]
    fn shortfall_at(&self, i: usize, need: u64, above_floor: i64) -> Shortfall {
        let dim = Dim::from_index(i).unwrap_or(Dim::Cpu);
        // `current < need + floor` guarantees a shortfall exists.
        Shortfall::check_signed(dim, need, above_floor).unwrap_or(Shortfall {
            dim,
            requested: need,
            available: 0,
            by: need,
        })
    }

    /// Gives back `amounts` in the dimensions of `mask` (bits by index).
    #[inline]
    fn release_mask(&self, amounts: &[u64; Dim::COUNT], mut mask: u16) {
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask.wrapping_sub(1);
            if let (Some(&amount), Some(slot)) = (amounts.get(i), self.available.get(i)) {
                slot.fetch_add(signed(amount), Ordering::AcqRel);
            }
        }
    }

    /// Gives back every set dimension of `held` (amounts it previously took).
    #[inline]
    fn release_raw(&self, held: &Resources) {
        self.release_mask(held.raw_amounts(), held.dims().bits());
    }

    /// Takes `amount` in `dim` without any check, clamping so that `available`
    /// stays above -2^62. Returns the amount actually taken.
    fn force_take(&self, dim: Dim, amount: u64) -> u64 {
        let Some(slot) = self.slot(dim) else { return 0 };
        let want = signed(amount);
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let room = current.saturating_sub(AVAILABLE_FLOOR).max(0);
            let take = want.min(room);
            match slot.compare_exchange_weak(
                current,
                current.saturating_sub(take),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                // `take` is in [0, 2^60]: the conversion is lossless.
                Ok(_) => return u64::try_from(take).unwrap_or(0),
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes `amounts` (tracked dimensions) **without** checking capacity and
    /// returns them as a [`DetachedReservation`] to release later. This is
    /// for usage that already happened (a running task measured above its
    /// reservation: accounting follows reality); a dimension it
    /// over-commits admits nothing new until enough is released. Each
    /// dimension is clamped so that `available` stays above -2^62.
    pub fn force_reserve(&self, amounts: &Resources) -> DetachedReservation {
        let mut held = Resources::NONE;
        for (dim, amount) in amounts.iter() {
            if self.tracked.contains(dim) && amount > 0 {
                held = held.with_saturating(dim, self.force_take(dim, amount));
            }
        }
        DetachedReservation {
            held,
            origin: tracker_id(self),
        }
    }

    /// Runs `f` with the setter lock held.
    fn with_setter_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        while self
            .setter_lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            hint::spin_loop();
        }
        let r = f();
        self.setter_lock.store(false, Ordering::Release);
        r
    }

    /// Replaces one setting (capacity, headroom or external usage) of every
    /// dimension set in `values`, applying the change to `available` (and to
    /// `limit` for capacity and headroom) as one delta each.
    fn apply_setting(&self, which: Setting, values: &Resources) -> Result<(), TrackerError> {
        let (setting, adds, limits) = match which {
            Setting::Capacity => (&self.capacity, true, true),
            Setting::Headroom => (&self.headroom, false, true),
            Setting::External => (&self.external, false, false),
        };
        if let Some(dim) = values.dims().iter().find(|d| !self.tracked.contains(*d)) {
            return Err(TrackerError::Untracked { dim });
        }
        self.with_setter_lock(|| {
            for (dim, new) in values.iter() {
                let (Some(cell), Some(slot)) = (setting.get(dim.index()), self.slot(dim)) else {
                    continue;
                };
                let old = cell.swap(new, Ordering::AcqRel);
                // Both are at most 2^60: the difference fits.
                let delta = signed(new).wrapping_sub(signed(old));
                let delta = if adds { delta } else { delta.wrapping_neg() };
                slot.fetch_add(delta, Ordering::AcqRel);
                if limits {
                    if let Some(l) = self.limit.get(dim.index()) {
                        l.fetch_add(delta, Ordering::AcqRel);
                    }
                }
            }
        });
        Ok(())
    }

    /// `capacity - headroom` of `dim` (zero when the headroom is larger),
    /// or `None` for an untracked dimension. One atomic load: this is what
    /// admission compares a request against to decide that it can never fit.
    #[must_use]
    #[inline]
    pub fn limit(&self, dim: Dim) -> Option<u64> {
        if !self.tracked.contains(dim) {
            return None;
        }
        let l = self.limit.get(dim.index())?.load(Ordering::Acquire);
        Some(l.max(0).unsigned_abs())
    }

    /// Changes the capacity of every dimension set in `capacity` (others keep
    /// theirs). Reservations already held stay valid; if the new capacity is
    /// below what is reserved, no new reservation succeeds in that dimension
    /// until enough is released.
    ///
    /// # Errors
    ///
    /// [`TrackerError::Untracked`] when `capacity` sets a dimension this tracker
    /// does not track; nothing is changed then.
    pub fn set_capacity(&self, capacity: &Resources) -> Result<(), TrackerError> {
        self.apply_setting(Setting::Capacity, capacity)?;
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// A counter bumped by every capacity or headroom change: when it moved, a
    /// request that could fit before may no longer ever fit (and vice versa).
    #[must_use]
    pub fn settings_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Sets the headroom (safety margin) of every dimension set in `headroom`.
    ///
    /// # Errors
    ///
    /// As [`Tracker::set_capacity`].
    pub fn set_headroom(&self, headroom: &Resources) -> Result<(), TrackerError> {
        self.apply_setting(Setting::Headroom, headroom)?;
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Sets the usage not covered by any reservation (other processes, tasks
    /// using more than they reserved) in every dimension set in `external`.
    /// This is absolute, not a delta: report the current figure each time.
    ///
    /// # Errors
    ///
    /// As [`Tracker::set_capacity`].
    pub fn set_external(&self, external: &Resources) -> Result<(), TrackerError> {
        self.apply_setting(Setting::External, external)
    }

    fn read(&self, cells: &[AtomicU64; Dim::COUNT]) -> Resources {
        let mut out = Resources::NONE;
        for dim in self.tracked {
            if let Some(c) = cells.get(dim.index()) {
                out = out.with_saturating(dim, c.load(Ordering::Acquire));
            }
        }
        out
    }

    /// The configured capacity of each tracked dimension.
    #[must_use]
    pub fn capacity(&self) -> Resources {
        self.read(&self.capacity)
    }

    /// The headroom of each tracked dimension.
    #[must_use]
    pub fn headroom(&self) -> Resources {
        self.read(&self.headroom)
    }

    /// The external usage of each tracked dimension.
    #[must_use]
    pub fn external(&self) -> Resources {
        self.read(&self.external)
    }

    /// `capacity - headroom - external`, floored at zero, per tracked dimension.
    #[must_use]
    pub fn effective_capacity(&self) -> Resources {
        self.capacity()
            .saturating_sub(&self.headroom())
            .saturating_sub(&self.external())
    }

    /// `available` of one dimension, signed (negative when over-committed),
    /// or `None` for an untracked dimension.
    #[must_use]
    pub fn available_signed(&self, dim: Dim) -> Option<i64> {
        if self.tracked.contains(dim) {
            self.slot(dim).map(|s| s.load(Ordering::Acquire))
        } else {
            None
        }
    }

    /// What can still be reserved in each tracked dimension (zero when
    /// over-committed).
    #[must_use]
    pub fn available(&self) -> Resources {
        let mut out = Resources::NONE;
        for dim in self.tracked {
            let a = self.available_signed(dim).unwrap_or(0).max(0);
            out = out.with_saturating(dim, a.unsigned_abs());
        }
        out
    }

    /// What reservations hold in each tracked dimension.
    ///
    /// The figure is derived (`capacity - headroom - external - available`)
    /// from separate loads, so while a setter runs concurrently it may be off
    /// by that setter's change; it is exact whenever no setter is running.
    #[must_use]
    pub fn reserved(&self) -> Resources {
        let mut out = Resources::NONE;
        for dim in self.tracked {
            let i = dim.index();
            let load = |c: &[AtomicU64; Dim::COUNT]| {
                signed(c.get(i).map_or(0, |c| c.load(Ordering::Acquire)))
            };
            let effective = load(&self.capacity)
                .wrapping_sub(load(&self.headroom))
                .wrapping_sub(load(&self.external));
            let available = self.available_signed(dim).unwrap_or(0);
            let reserved = effective.saturating_sub(available).max(0);
            out = out.with_saturating(dim, reserved.unsigned_abs());
        }
        out
    }

    /// Whether nothing is reserved in any dimension.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.reserved().is_zero()
    }
}

/// Resources held on a [`Tracker`]; given back exactly once, when dropped or
/// [`released`](Reservation::release).
///
/// `T` is how the reservation reaches its tracker: `&Tracker` for scoped use,
/// or any owning pointer that dereferences to a `Tracker` (an `Arc` in the std
/// runtime), so a reservation can travel with a task to another thread.
///
/// A reservation cannot be cloned, and `release` consumes it, so a double
/// release does not compile:
///
/// ```compile_fail
/// use respool_core::{Dim, Resources, Tracker};
/// let t = Tracker::new(&Resources::new().with(Dim::Cpu, 1000).unwrap());
/// let r = t.try_reserve(&Resources::new().with(Dim::Cpu, 10).unwrap()).unwrap();
/// r.release();
/// r.release(); // error[E0382]: use of moved value
/// ```
#[must_use = "a reservation is released as soon as it is dropped"]
pub struct Reservation<T: Deref<Target = Tracker>> {
    /// The tracker the amounts are held on.
    tracker: T,
    /// What is held: tracked, non-zero dimensions only.
    held: Resources,
}

impl<T: Deref<Target = Tracker>> fmt::Debug for Reservation<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("held", &self.held)
            .finish()
    }
}

impl<T: Deref<Target = Tracker>> Reservation<T> {
    /// Reserves `request` on the tracker behind `tracker`, keeping at least
    /// `floor` available in every dimension.
    ///
    /// # Errors
    ///
    /// The first dimension's [`Shortfall`]; nothing is held then.
    #[inline]
    pub fn try_new(tracker: T, request: &Resources, floor: &Resources) -> Result<Self, Shortfall> {
        Self::try_new_or_return(tracker, request, floor).map_err(|(_, s)| s)
    }

    /// [`Reservation::try_new`] that hands the tracker handle back on failure
    /// (admission goes on to ask why the request did not fit).
    #[inline]
    pub(crate) fn try_new_or_return(
        tracker: T,
        request: &Resources,
        floor: &Resources,
    ) -> Result<Self, (T, Shortfall)> {
        match tracker.reserve_raw(request, floor) {
            Ok(held) => Ok(Reservation { tracker, held }),
            Err(s) => Err((tracker, s)),
        }
    }

    /// The amounts held (tracked, non-zero dimensions of the request).
    #[must_use]
    #[inline]
    pub fn held(&self) -> &Resources {
        &self.held
    }

    /// The tracker handle.
    #[must_use]
    pub fn tracker(&self) -> &T {
        &self.tracker
    }

    /// Gives the amounts back now. Equivalent to dropping the reservation.
    #[inline]
    pub fn release(self) {
        drop(self);
    }

    /// Reserves `extra` on top of what is held, all or nothing.
    ///
    /// # Errors
    ///
    /// The [`Shortfall`] of the first dimension that does not fit; the
    /// reservation is unchanged then.
    pub fn try_grow(&mut self, extra: &Resources) -> Result<(), Shortfall> {
        let more = self.tracker.reserve_raw(extra, &Resources::NONE)?;
        self.held = self.held.saturating_add(&more);
        Ok(())
    }

    /// Grows the reservation to at least `usage` in every tracked dimension
    /// set in `usage`, **without** checking capacity: the task already uses
    /// this much, so accounting follows reality. If the dimension becomes
    /// over-committed, new reservations in it fail until enough is released.
    /// Returns the amount added.
    pub fn force_grow_to(&mut self, usage: &Resources) -> Resources {
        let mut added = Resources::NONE;
        for dim in usage.dims().intersection(self.tracker.tracked) {
            let have = self.held.amount(dim);
            let want = usage.amount(dim);
            if want > have {
                let got = self.tracker.force_take(dim, want.saturating_sub(have));
                self.held = self.held.with_saturating(dim, have.saturating_add(got));
                added = added.with_saturating(dim, got);
            }
        }
        added
    }

    /// Gives back `less` (capped at what is held) and keeps the rest.
    pub fn shrink(&mut self, less: &Resources) {
        let give = less.min(&self.held);
        let mut back = Resources::NONE;
        for (dim, amount) in give.iter() {
            if self.held.dims().contains(dim) && amount > 0 {
                back = back.with_saturating(dim, amount);
                let left = self.held.amount(dim).saturating_sub(amount);
                self.held = self.held.with_saturating(dim, left);
            }
        }
        self.tracker.release_raw(&back);
    }
}

impl<T: Deref<Target = Tracker>> Reservation<T> {
    /// Separates the held amounts from the tracker handle, without releasing.
    ///
    /// The [`DetachedReservation`] is a plain value (no pointer, no lifetime)
    /// that a runtime can store next to a task and later
    /// [`release`](DetachedReservation::release) on the same tracker. Like a
    /// `Reservation`, it cannot be cloned and releasing consumes it.
    pub fn detach(self) -> (T, DetachedReservation) {
        let this = core::mem::ManuallyDrop::new(self);
        let held = this.held;
        let origin = tracker_id(&this.tracker);
        // SAFETY: `this` is never used again and its destructor does not run
        // (ManuallyDrop), so reading the handle out moves it exactly once.
        let tracker = unsafe { core::ptr::read(&this.tracker) };
        (tracker, DetachedReservation { held, origin })
    }
}

/// Takes `need` from one dimension's available amount if at least `floor`
/// stays available afterwards (a compare-and-swap loop); otherwise leaves it
/// and returns what was available.
#[inline(always)]
fn take_above(slot: &AtomicI64, need: u64, floor: i64) -> Result<(), i64> {
    let threshold = threshold(need, floor);
    let mut current = slot.load(Ordering::Relaxed);
    loop {
        if current < threshold {
            return Err(current);
        }
        // `current >= need` here, so the subtraction cannot wrap.
        match slot.compare_exchange_weak(
            current,
            current.wrapping_sub(signed(need)),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Ok(()),
            Err(actual) => current = actual,
        }
    }
}

/// The least `available` from which `need` can be taken above `floor`.
#[inline]
fn threshold(need: u64, floor: i64) -> i64 {
    // `need` and `floor` are at most 2^60 each: the sum fits.
    signed(need).saturating_add(floor)
}

/// The address of the tracker behind a handle, used only as an identity.
fn tracker_id(tracker: &Tracker) -> usize {
    core::ptr::from_ref(tracker).addr()
}

/// Held amounts detached from their tracker handle (see [`Reservation::detach`]).
///
/// Dropping it without [`release`](Self::release) or [`attach`](Self::attach)
/// leaks the amounts: the tracker keeps them reserved. It remembers which
/// tracker it came from and refuses to be released on or attached to another.
#[must_use = "dropping a detached reservation leaks its amounts: release or attach it"]
#[derive(Debug, PartialEq, Eq)]
pub struct DetachedReservation {
    /// What is held.
    held: Resources,
    /// Identity (address) of the tracker it was taken from.
    origin: usize,
}

impl DetachedReservation {
    /// The amounts held.
    #[must_use]
    pub fn held(&self) -> &Resources {
        &self.held
    }

    /// Adds `other`'s amounts to `self` (both must come from one tracker).
    ///
    /// # Errors
    ///
    /// Hands `other` back, untouched, if it was taken on another tracker.
    pub fn merge(&mut self, other: DetachedReservation) -> Result<(), DetachedReservation> {
        if other.origin != self.origin {
            return Err(other);
        }
        self.held = self.held.saturating_add(&other.held);
        Ok(())
    }

    /// Gives the amounts back to `tracker`.
    ///
    /// # Errors
    ///
    /// Hands `self` back, untouched, if `tracker` is not the tracker it was
    /// reserved on.
    pub fn release(self, tracker: &Tracker) -> Result<(), DetachedReservation> {
        if tracker_id(tracker) != self.origin {
            return Err(self);
        }
        tracker.release_raw(&self.held);
        Ok(())
    }

    /// Turns it back into a [`Reservation`] that releases on drop.
    ///
    /// # Errors
    ///
    /// Hands `self` back if `tracker` does not point to the original tracker.
    pub fn attach<T: Deref<Target = Tracker>>(
        self,
        tracker: T,
    ) -> Result<Reservation<T>, DetachedReservation> {
        if tracker_id(&tracker) != self.origin {
            return Err(self);
        }
        Ok(Reservation {
            tracker,
            held: self.held,
        })
    }
}

/// Dimensions a [`PackedReservation`] can hold.
pub const PACKED_DIMS: usize = 3;

/// A [`DetachedReservation`] of at most [`PACKED_DIMS`] dimensions, packed
/// into 40 bytes instead of a whole [`Resources`] vector (about 100).
///
/// A runtime carries one with every admitted task that it has not started
/// yet, so its size is the size of a run-queue slot: a task that declares
/// CPU, memory and IOPS fits, and travels without a heap allocation. It is
/// the same token in another layout: it cannot be copied or cloned, and
/// [`unpack`](Self::unpack) gives the detached reservation back, which
/// releases exactly once. Dropping it leaks its amounts, as dropping the
/// detached reservation does.
#[must_use = "dropping a packed reservation leaks its amounts: unpack and release it"]
#[derive(Debug, PartialEq, Eq)]
pub struct PackedReservation {
    /// The held amounts, in the order of the set bits of `dims`.
    amounts: [u64; PACKED_DIMS],
    /// Bits of the held dimensions (at most `PACKED_DIMS` of them).
    dims: u16,
    /// Identity (address) of the tracker it was taken from; an address is
    /// never zero, which lets `Option<PackedReservation>` be as small.
    origin: core::num::NonZeroUsize,
}

impl DetachedReservation {
    /// Packs a reservation of at most [`PACKED_DIMS`] dimensions.
    ///
    /// # Errors
    ///
    /// Hands `self` back, untouched, when it holds more dimensions.
    pub fn pack(self) -> Result<PackedReservation, DetachedReservation> {
        let (raw, set) = self.held.to_raw();
        let bits = set.bits();
        let Some(origin) = core::num::NonZeroUsize::new(self.origin) else {
            return Err(self);
        };
        if bits.count_ones() as usize > PACKED_DIMS {
            return Err(self);
        }
        let mut amounts = [0u64; PACKED_DIMS];
        let mut m = bits;
        for slot in &mut amounts {
            if m == 0 {
                break;
            }
            let i = m.trailing_zeros() as usize;
            m &= m.wrapping_sub(1);
            *slot = raw.get(i).copied().unwrap_or(0);
        }
        Ok(PackedReservation {
            amounts,
            dims: bits,
            origin,
        })
    }
}

impl PackedReservation {
    /// The detached reservation it was packed from.
    pub fn unpack(self) -> DetachedReservation {
        let mut raw = [0u64; Dim::COUNT];
        for (i, amount) in self.entries() {
            if let Some(slot) = raw.get_mut(i) {
                *slot = amount;
            }
        }
        DetachedReservation {
            // Taken apart from a valid vector by `pack`: every amount is
            // within bounds and zero outside the mask.
            held: Resources::from_raw_trusted(raw, DimSet::from_bits_truncate(self.dims)),
            origin: self.origin.get(),
        }
    }

    /// The dimensions held.
    #[must_use]
    pub fn dims(&self) -> DimSet {
        DimSet::from_bits_truncate(self.dims)
    }

    /// `(dimension index, amount)` of each dimension held, in index order:
    /// the amounts are stored in the order of the set bits of `dims`.
    #[inline]
    fn entries(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let mut m = self.dims;
        self.amounts.iter().map_while(move |&amount| {
            if m == 0 {
                return None;
            }
            let i = m.trailing_zeros() as usize;
            m &= m.wrapping_sub(1);
            Some((i, amount))
        })
    }
}

impl DetachedReservation {
    /// Adds a packed reservation's amounts to `self` (both must come from
    /// one tracker): [`merge`](Self::merge) without unpacking first.
    ///
    /// # Errors
    ///
    /// Hands `other` back, untouched, if it was taken on another tracker.
    #[inline]
    pub fn merge_packed(&mut self, other: PackedReservation) -> Result<(), PackedReservation> {
        if other.origin.get() != self.origin {
            return Err(other);
        }
        for (i, amount) in other.entries() {
            // Both are amounts reserved on one tracker, which never holds
            // more than its capacity (at most `MAX_AMOUNT`): the clamp in
            // `add_at_index` never bites.
            self.held.add_at_index(i, amount);
        }
        Ok(())
    }
}

/// Reservations of finished tasks, gathered by one thread (the writer)
/// without a locked instruction and given back to their tracker by any
/// thread.
///
/// A pool worker finishes tasks one after another; giving each reservation
/// back at once costs an atomic read-modify-write per dimension on the
/// tracker, whose counters the submitting threads use too. A log lets the
/// worker batch them instead, while anyone who needs the capacity (a request
/// that would otherwise wait) can still take the batch back at any moment:
/// nothing is held hostage by a worker busy with a long task.
///
/// # How
///
/// Per dimension, the log keeps two wrapping counters: `added`, the total
/// the writer has put in (only the writer stores it: a load and a store, no
/// locked instruction), and `given`, the total given back to the tracker.
/// [`ReleaseLog::give_back`] moves `given` up to the `added` it reads with a
/// compare-and-swap and releases the difference, so every unit added is
/// released exactly once however many threads give back at the same time.
/// A giver sees the writer's additions as far as the memory order lets it:
/// one that must see all of them (a submitter about to wait) publishes that
/// it waits and then issues a fence that pairs with the writer's (for
/// instance a process-wide barrier against a compiler fence); the writer,
/// after each addition, fences and checks for waiters and gives back
/// itself if there are any. Either the giver sees the addition or the
/// writer sees the waiter (Dekker's pattern), which the loom model
/// `release_log_writer_or_waiter_gives_back` checks.
///
/// At most one [`LogWriter`] exists at a time ([`ReleaseLog::writer`]), so
/// the single-writer rule is enforced by the types, not by convention.
pub struct ReleaseLog {
    /// Wrapping total added, per dimension index. Stored by the writer only.
    added: [AtomicU64; Dim::COUNT],
    /// Wrapping total given back, per dimension index (compare-and-swap).
    given: [AtomicU64; Dim::COUNT],
    /// Dimensions ever added (bits by index), so that a give-back skips the
    /// rest. Stored (released) after `origin`.
    touched: AtomicU64,
    /// Identity of the tracker whose reservations it holds (set by the
    /// first addition, then fixed; 0 before).
    origin: AtomicUsize,
    /// Whether a [`LogWriter`] exists.
    writing: AtomicBool,
}

impl fmt::Debug for ReleaseLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleaseLog")
            .field("touched", &self.touched.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for ReleaseLog {
    fn default() -> Self {
        ReleaseLog::new()
    }
}

impl ReleaseLog {
    /// An empty log. The first reservation added to it decides its
    /// tracker: it takes only reservations of that tracker afterwards.
    #[must_use]
    pub fn new() -> ReleaseLog {
        ReleaseLog {
            added: core::array::from_fn(|_| AtomicU64::new(0)),
            given: core::array::from_fn(|_| AtomicU64::new(0)),
            touched: AtomicU64::new(0),
            origin: AtomicUsize::new(0),
            writing: AtomicBool::new(false),
        }
    }

    /// The log's writer, unless one exists already (it is given back when
    /// dropped).
    pub fn writer(&self) -> Option<LogWriter<'_>> {
        (!self.writing.swap(true, Ordering::Acquire)).then_some(LogWriter { log: self })
    }

    /// Gives back to `tracker` what the writer added and nobody gave back
    /// yet, as far as this thread sees. Returns whether it gave anything
    /// back.
    ///
    /// # Errors
    ///
    /// [`TrackerError::OtherTracker`] if `tracker` is not the log's tracker
    /// (nothing is given back).
    pub fn give_back(&self, tracker: &Tracker) -> Result<bool, TrackerError> {
        let mut todo = self.touched.load(Ordering::Acquire);
        if todo == 0 {
            return Ok(false);
        }
        // Stored before `touched`, which was read with acquire.
        if tracker_id(tracker) != self.origin.load(Ordering::Relaxed) {
            return Err(TrackerError::OtherTracker);
        }
        let mut gave = false;
        while todo != 0 {
            let i = todo.trailing_zeros() as usize;
            todo &= todo.wrapping_sub(1);
            let (Some(added), Some(given), Some(slot)) = (
                self.added.get(i),
                self.given.get(i),
                tracker.available.get(i),
            ) else {
                continue;
            };
            let target = added.load(Ordering::Acquire);
            let mut from = given.load(Ordering::Acquire);
            loop {
                let delta = target.wrapping_sub(from);
                // Another giver got further (it read a later total): nothing
                // of ours is left. Totals never drift 2^63 apart.
                if delta == 0 || delta > u64::MAX / 2 {
                    break;
                }
                match given.compare_exchange_weak(from, target, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        slot.fetch_add(signed(delta), Ordering::AcqRel);
                        gave = true;
                        break;
                    }
                    Err(now) => {
                        from = now;
                        hint::spin_loop();
                    }
                }
            }
        }
        Ok(gave)
    }

    /// Whether everything added was given back, as far as this thread sees.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.added
            .iter()
            .zip(&self.given)
            .all(|(a, g)| a.load(Ordering::Acquire) == g.load(Ordering::Acquire))
    }
}

/// The one thread allowed to add to a [`ReleaseLog`] (see there).
#[derive(Debug)]
pub struct LogWriter<'a> {
    log: &'a ReleaseLog,
}

impl LogWriter<'_> {
    /// Adds a packed reservation's amounts (they stay reserved on the
    /// tracker until given back).
    ///
    /// # Errors
    ///
    /// Hands `token` back, untouched, if it was taken on another tracker.
    #[inline]
    pub fn add_packed(&mut self, token: PackedReservation) -> Result<(), PackedReservation> {
        if !self.bind(token.origin.get()) {
            return Err(token);
        }
        for (i, amount) in token.entries() {
            self.add_at(i, amount);
        }
        self.touch(token.dims);
        Ok(())
    }

    /// Adds a detached reservation's amounts.
    ///
    /// # Errors
    ///
    /// Hands `token` back, untouched, if it was taken on another tracker.
    pub fn add_detached(&mut self, token: DetachedReservation) -> Result<(), DetachedReservation> {
        if !self.bind(token.origin) {
            return Err(token);
        }
        let (raw, set) = token.held.to_raw();
        let mut m = set.bits();
        let dims = m;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m.wrapping_sub(1);
            self.add_at(i, raw.get(i).copied().unwrap_or(0));
        }
        self.touch(dims);
        Ok(())
    }

    /// Whether the log holds reservations of tracker `origin` (binding it
    /// to that tracker if it is new).
    #[inline]
    fn bind(&self, origin: usize) -> bool {
        match self.log.origin.load(Ordering::Relaxed) {
            0 => {
                // Only the writer stores it, before `touched`.
                self.log.origin.store(origin, Ordering::Relaxed);
                true
            }
            bound => bound == origin,
        }
    }

    /// The writer's addition: a load and a store (it is the only writer).
    #[inline]
    fn add_at(&self, i: usize, amount: u64) {
        if let Some(added) = self.log.added.get(i) {
            added.store(
                added.load(Ordering::Relaxed).wrapping_add(amount),
                Ordering::Release,
            );
        }
    }

    /// Marks dimensions as used (a store only the first time).
    #[inline]
    fn touch(&self, dims: u16) {
        let dims = u64::from(dims);
        let seen = self.log.touched.load(Ordering::Relaxed);
        if seen & dims != dims {
            // Only the writer grows the set.
            self.log.touched.store(seen | dims, Ordering::Release);
        }
    }
}

impl Drop for LogWriter<'_> {
    fn drop(&mut self) {
        self.log.writing.store(false, Ordering::Release);
    }
}

impl<T: Deref<Target = Tracker>> Drop for Reservation<T> {
    #[inline]
    fn drop(&mut self) {
        self.tracker.release_raw(&self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(pairs: &[(Dim, u64)]) -> Resources {
        Resources::from_pairs(pairs).unwrap()
    }

    fn cap() -> Resources {
        r(&[(Dim::Cpu, 4000), (Dim::Memory, 1000), (Dim::Gpu, 0)])
    }

    #[test]
    fn fits_above_says_what_try_reserve_above_would_do() {
        let t = Tracker::new(&cap());
        let floor = r(&[(Dim::Memory, 100)]);
        let held = t.try_reserve(&r(&[(Dim::Memory, 500)])).unwrap();
        // 500 of 1000 memory left, 100 of it held back by the floor.
        for (req, fits) in [
            (r(&[(Dim::Memory, 400)]), true),
            (r(&[(Dim::Memory, 401)]), false),
            (r(&[(Dim::Cpu, 4000), (Dim::Memory, 400)]), true),
            (r(&[(Dim::Cpu, 4001)]), false),
            // Untracked dimensions and zero amounts always fit.
            (r(&[(Dim::Iops, 1 << 40), (Dim::Memory, 0)]), true),
            (Resources::NONE, true),
        ] {
            assert_eq!(t.fits_above(&req, &floor), fits, "{req:?}");
            let got = t.try_reserve_above(&req, &floor);
            assert_eq!(got.is_ok(), fits, "{req:?}");
        }
        drop(held);
        assert!(t.fits_above(&r(&[(Dim::Memory, 900)]), &floor));
        assert!(!t.fits_above(&r(&[(Dim::Memory, 901)]), &floor));
    }

    #[test]
    fn packed_reservation_round_trips_and_releases_once() {
        let t = Tracker::new(&r(&[
            (Dim::Cpu, 4000),
            (Dim::Memory, 1000),
            (Dim::Iops, 50),
        ]));
        let req = r(&[(Dim::Cpu, 1500), (Dim::Memory, 600), (Dim::Iops, 7)]);
        let (_, detached) = t.try_reserve(&req).unwrap().detach();
        let packed = detached.pack().expect("three dimensions pack");
        assert_eq!(packed.dims(), req.dims());
        assert_eq!(core::mem::size_of::<PackedReservation>(), 40);
        assert_eq!(
            core::mem::size_of::<Option<PackedReservation>>(),
            40,
            "the tracker's address is the niche"
        );
        let back = packed.unpack();
        assert_eq!(back.held(), &req);
        assert_eq!(t.reserved().amount(Dim::Memory), 600);
        back.release(&t).unwrap();
        assert_eq!(t.reserved().amount(Dim::Cpu), 0);
        assert_eq!(t.reserved().amount(Dim::Iops), 0);
        // A packed token still refuses another tracker.
        let other = Tracker::new(&cap());
        let (_, d) = t.try_reserve(&r(&[(Dim::Memory, 1)])).unwrap().detach();
        let d = d.pack().unwrap().unpack();
        let d = d.release(&other).unwrap_err();
        d.release(&t).unwrap();
    }

    #[test]
    fn release_log_gives_back_exactly_once_and_has_one_writer() {
        let t = Tracker::new(&r(&[
            (Dim::Cpu, 4000),
            (Dim::Memory, 1000),
            (Dim::Iops, 50),
            (Dim::Network, 10),
        ]));
        let floor = Resources::NONE;
        let log = ReleaseLog::new();
        assert_eq!(log.give_back(&t), Ok(false), "empty");
        let mut w = log.writer().expect("the first writer");
        assert!(log.writer().is_none(), "one writer at a time");
        let req = r(&[(Dim::Cpu, 1000), (Dim::Memory, 300), (Dim::Iops, 5)]);
        for _ in 0..3 {
            w.add_packed(t.try_reserve_packed(&req, &floor).unwrap())
                .unwrap();
        }
        let wide = r(&[(Dim::Cpu, 10), (Dim::Network, 4)]);
        let (_, d) = t.try_reserve(&wide).unwrap().detach();
        w.add_detached(d).unwrap();
        // Added, not given back: still reserved.
        assert_eq!(t.reserved().amount(Dim::Memory), 900);
        assert!(!log.is_empty());
        // Not on another tracker, and not another tracker's tokens.
        let other = Tracker::new(&r(&[
            (Dim::Cpu, 4000),
            (Dim::Memory, 1000),
            (Dim::Iops, 50),
        ]));
        assert_eq!(log.give_back(&other), Err(TrackerError::OtherTracker));
        // The first addition bound the log to `t`.
        let foreign = other.try_reserve_packed(&req, &floor).unwrap();
        let foreign = w.add_packed(foreign).unwrap_err();
        foreign.unpack().release(&other).unwrap();
        assert_eq!(log.give_back(&t), Ok(true));
        assert!(log.is_empty());
        assert!(t.is_idle(), "{:?}", t.reserved());
        // Nothing twice.
        assert_eq!(log.give_back(&t), Ok(false));
        assert_eq!(t.available(), t.effective_capacity());
        // The writer's slot frees when it is dropped; the log goes on.
        drop(w);
        let mut w = log.writer().expect("a writer again");
        w.add_packed(t.try_reserve_packed(&req, &floor).unwrap())
            .unwrap();
        assert_eq!(log.give_back(&t), Ok(true));
        assert!(t.is_idle());
    }

    #[test]
    fn more_dimensions_than_a_pack_holds_are_handed_back() {
        let dims = [Dim::Cpu, Dim::Memory, Dim::Iops, Dim::Network];
        let big: Resources = dims
            .iter()
            .fold(Resources::NONE, |acc, &d| acc.with_saturating(d, 1 << 40));
        let t = Tracker::new(&big);
        let req = dims
            .iter()
            .fold(Resources::NONE, |acc, &d| acc.with_saturating(d, 3));
        let (_, detached) = t.try_reserve(&req).unwrap().detach();
        let back = detached.pack().expect_err("four dimensions do not pack");
        assert_eq!(back.held(), &req);
        back.release(&t).unwrap();
        assert!(
            t.reserved()
                .dims()
                .iter()
                .all(|d| t.reserved().amount(d) == 0)
        );
    }

    #[test]
    fn reserve_and_release_restore_everything() {
        let t = Tracker::new(&cap());
        let a = t
            .try_reserve(&r(&[(Dim::Cpu, 1000), (Dim::Memory, 600)]))
            .unwrap();
        assert_eq!(
            t.reserved(),
            r(&[(Dim::Cpu, 1000), (Dim::Memory, 600), (Dim::Gpu, 0)])
        );
        assert_eq!(
            t.available(),
            r(&[(Dim::Cpu, 3000), (Dim::Memory, 400), (Dim::Gpu, 0)])
        );
        let err = t
            .try_reserve(&r(&[(Dim::Cpu, 100), (Dim::Memory, 500)]))
            .unwrap_err();
        assert_eq!(
            (err.dim, err.requested, err.available, err.by),
            (Dim::Memory, 500, 400, 100)
        );
        assert_eq!(
            t.reserved().amount(Dim::Cpu),
            1000,
            "the CPU taken before memory failed was rolled back"
        );
        a.release();
        assert!(t.is_idle());
        assert_eq!(t.available(), cap());
    }

    #[test]
    fn empty_zero_and_untracked_requests() {
        let t = Tracker::new(&cap());
        // Table: (request, succeeds?)
        let table = [
            (Resources::NONE, true),
            (r(&[(Dim::Memory, 0)]), true),
            (r(&[(Dim::Gpu, 0)]), true),
            (r(&[(Dim::Gpu, 1)]), false),
            (r(&[(Dim::Iops, MAX_AMOUNT)]), true),
            (r(&[(Dim::Memory, 1000)]), true),
            (r(&[(Dim::Memory, 1001)]), false),
        ];
        for (req, ok) in table {
            let res = t.try_reserve(&req);
            assert_eq!(res.is_ok(), ok, "{req}");
            if let Ok(res) = res {
                assert!(
                    !res.held().dims().contains(Dim::Iops),
                    "untracked dims are not held"
                );
            }
            assert!(t.is_idle());
        }
    }

    #[test]
    fn zero_capacity_refuses_positive_requests() {
        let t = Tracker::new(&r(&[(Dim::Memory, 0)]));
        let e = t.try_reserve(&r(&[(Dim::Memory, 1)])).unwrap_err();
        assert_eq!((e.dim, e.by), (Dim::Memory, 1));
        assert!(t.try_reserve(&r(&[(Dim::Memory, 0)])).is_ok());
    }

    #[test]
    fn capacity_cut_blocks_until_usage_is_under_it() {
        let t = Tracker::new(&r(&[(Dim::Memory, 1000)]));
        let a = t.try_reserve(&r(&[(Dim::Memory, 400)])).unwrap();
        let b = t.try_reserve(&r(&[(Dim::Memory, 400)])).unwrap();
        t.set_capacity(&r(&[(Dim::Memory, 500)])).unwrap();
        assert_eq!(t.available_signed(Dim::Memory), Some(-300));
        let e = t.try_reserve(&r(&[(Dim::Memory, 1)])).unwrap_err();
        assert_eq!((e.available, e.by), (0, 301));
        drop(a);
        assert_eq!(t.available_signed(Dim::Memory), Some(100));
        assert!(t.try_reserve(&r(&[(Dim::Memory, 101)])).is_err());
        let c = t.try_reserve(&r(&[(Dim::Memory, 100)])).unwrap();
        drop((b, c));
        assert_eq!(t.available_signed(Dim::Memory), Some(500));
        assert_eq!(
            t.set_capacity(&r(&[(Dim::Cpu, 1)])),
            Err(TrackerError::Untracked { dim: Dim::Cpu })
        );
    }

    #[test]
    fn headroom_external_and_floor() {
        let t = Tracker::new(&r(&[(Dim::Memory, 1000)]));
        t.set_headroom(&r(&[(Dim::Memory, 100)])).unwrap();
        t.set_external(&r(&[(Dim::Memory, 200)])).unwrap();
        assert_eq!(t.effective_capacity(), r(&[(Dim::Memory, 700)]));
        assert!(t.try_reserve(&r(&[(Dim::Memory, 701)])).is_err());
        let floor = r(&[(Dim::Memory, 300)]);
        assert!(
            t.try_reserve_above(&r(&[(Dim::Memory, 401)]), &floor)
                .is_err()
        );
        let a = t
            .try_reserve_above(&r(&[(Dim::Memory, 400)]), &floor)
            .unwrap();
        // Critical work (no floor) may use the rest.
        let b = t.try_reserve(&r(&[(Dim::Memory, 300)])).unwrap();
        t.set_external(&r(&[(Dim::Memory, 0)])).unwrap();
        assert_eq!(t.available(), r(&[(Dim::Memory, 200)]));
        drop((a, b));
        assert_eq!(t.available(), r(&[(Dim::Memory, 900)]));
        assert!(t.is_idle());
    }

    #[test]
    fn grow_force_grow_and_shrink() {
        let t = Tracker::new(&r(&[(Dim::Memory, 1000), (Dim::Cpu, 10)]));
        let mut a = t.try_reserve(&r(&[(Dim::Memory, 300)])).unwrap();
        a.try_grow(&r(&[(Dim::Memory, 200), (Dim::Cpu, 5)]))
            .unwrap();
        assert_eq!(a.held(), &r(&[(Dim::Memory, 500), (Dim::Cpu, 5)]));
        assert!(a.try_grow(&r(&[(Dim::Memory, 501)])).is_err());
        assert_eq!(a.held().amount(Dim::Memory), 500);
        let added = a.force_grow_to(&r(&[(Dim::Memory, 1500), (Dim::Cpu, 1)]));
        assert_eq!(added, r(&[(Dim::Memory, 1000)]));
        assert_eq!(t.available_signed(Dim::Memory), Some(-500));
        assert!(
            t.try_reserve(&r(&[(Dim::Memory, 1)])).is_err(),
            "admissions pause"
        );
        a.shrink(&r(&[(Dim::Memory, 1400), (Dim::Gpu, 3)]));
        assert_eq!(a.held().amount(Dim::Memory), 100);
        a.shrink(&r(&[(Dim::Memory, u64::MAX >> 4)]));
        assert_eq!(a.held().amount(Dim::Memory), 0);
        drop(a);
        assert!(t.is_idle());
    }

    #[test]
    fn force_grow_is_clamped() {
        let t = Tracker::new(&r(&[(Dim::Memory, 0)]));
        let mut rs: std::vec::Vec<_> = (0..8)
            .map(|_| t.try_reserve(&r(&[(Dim::Memory, 0)])).unwrap())
            .collect();
        for x in &mut rs {
            x.force_grow_to(&r(&[(Dim::Memory, MAX_AMOUNT)]));
        }
        assert_eq!(t.available_signed(Dim::Memory), Some(AVAILABLE_FLOOR));
        drop(rs);
        assert_eq!(t.available_signed(Dim::Memory), Some(0));
    }

    #[test]
    fn detached_reservations_release_exactly_once_on_their_tracker() {
        let t = Tracker::new(&cap());
        let other = Tracker::new(&cap());
        let r1 = t.try_reserve(&r(&[(Dim::Cpu, 1000)])).unwrap();
        let (_, d) = r1.detach();
        assert_eq!(
            t.reserved().amount(Dim::Cpu),
            1000,
            "detaching does not release"
        );
        let d = d.release(&other).unwrap_err();
        assert_eq!(other.reserved().amount(Dim::Cpu), 0);
        let d = d.attach(&other).unwrap_err();
        let again = d.attach(&t).unwrap();
        assert_eq!(again.held().amount(Dim::Cpu), 1000);
        let (_, d) = again.detach();
        d.release(&t).unwrap();
        assert!(t.is_idle());
    }

    #[test]
    fn force_reserve_and_merge() {
        let t = Tracker::new(&r(&[(Dim::Memory, 100)]));
        let a = t.try_reserve(&r(&[(Dim::Memory, 80)])).unwrap();
        let (_, mut d) = a.detach();
        let extra = t.force_reserve(&r(&[(Dim::Memory, 50), (Dim::Iops, 7)]));
        assert_eq!(
            extra.held(),
            &r(&[(Dim::Memory, 50)]),
            "untracked dims are not taken"
        );
        assert_eq!(t.available_signed(Dim::Memory), Some(-30));
        d.merge(extra).unwrap();
        let other = Tracker::new(&r(&[(Dim::Memory, 100)]));
        let foreign = other.force_reserve(&r(&[(Dim::Memory, 1)]));
        let foreign = d.merge(foreign).unwrap_err();
        foreign.release(&other).unwrap();
        assert_eq!(d.held().amount(Dim::Memory), 130);
        d.release(&t).unwrap();
        assert!(t.is_idle() && other.is_idle());
    }

    #[test]
    fn owned_handles_work() {
        let t = std::sync::Arc::new(Tracker::new(&cap()));
        let res =
            Reservation::try_new(t.clone(), &r(&[(Dim::Cpu, 4000)]), &Resources::NONE).unwrap();
        let h = std::thread::spawn(move || drop(res));
        h.join().unwrap();
        assert!(t.is_idle());
    }

    #[test]
    fn concurrent_reservations_never_overcommit() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicI64 as StdI64, Ordering as O};
        let t = Arc::new(Tracker::new(&r(&[(Dim::Cpu, 7), (Dim::Memory, 1000)])));
        let shadow = Arc::new(StdI64::new(0));
        let handles: std::vec::Vec<_> = (0..4)
            .map(|k| {
                let (t, shadow) = (t.clone(), shadow.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let req = r(&[
                            (Dim::Cpu, 1 + (i + k) % 3),
                            (Dim::Memory, 100 + (i * 37) % 300),
                        ]);
                        if let Ok(res) = t.try_reserve(&req) {
                            let m = i64::try_from(res.held().amount(Dim::Memory)).unwrap();
                            let now = shadow.fetch_add(m, O::SeqCst) + m;
                            assert!(now <= 1000, "over-committed: {now}");
                            shadow.fetch_sub(m, O::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(t.is_idle());
    }
}
