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
//! `available` is kept in the dimension's *units* (see [Units](#units)),
//! as a signed 32-bit field, two dimensions to one `AtomicU64` word:
//! dimension index `i` is field `i % 2` of word `i / 2`, stored with a
//! bias of 2^31 (`stored = available + 2^31`, an unsigned 32-bit number).
//! The five words sit on one cache line of their own.
//!
//! Reserving a request is a compare-and-swap loop per word it touches: read
//! the word, check that each field asked for keeps at least its `floor`
//! after the amount is taken (the floor is zero, or the share held back for
//! critical work, see [`crate::admission`]), and swap in the word minus both
//! amounts at once. A request reserves its words one after another in
//! index order; if a word fails, the words already taken are given back
//! (`fetch_add`) and the request fails as a whole with the [`Shortfall`] of
//! the failing dimension. Releasing is one `fetch_add` per word. A request
//! of CPU, memory and IOPS is two compare-and-swaps and two `fetch_add`s,
//! where one counter per dimension took three of each: the locked
//! instructions, and the cache-line transfers under contention, are what
//! a reservation's time follows (see `BENCHMARKS.md`).
//!
//! Changes of capacity, headroom and external usage are applied to
//! `available` as a single `fetch_add` of their delta, in units, placed in
//! the dimension's field. These setters are rare (a monitor thread,
//! configuration), and they are serialised among themselves by a small
//! spin lock that reservations never touch; without it two concurrent
//! setters could each apply a delta computed against the other's old value
//! and expose, for an instant, a capacity that nobody set.
//!
//! ## Why adding to one field leaves the other alone
//!
//! A `fetch_add` of `x` placed in field `f` (for the high field `x * 2^32`,
//! for the low field `x` sign-extended to 64 bits, both wrapping) changes
//! the word by exactly `x * 2^(32f)` modulo 2^64. As long as the field's
//! stored value stays within `[0, 2^32)` before and after, no carry or
//! borrow crosses into the other field: the low field's sum stays below
//! 2^32 (or, for a negative `x`, at or above zero), so the high half is
//! untouched; a change of the high half never reaches the low one. The
//! bounds below keep every field within `[-2^31, 2^31)` at all times, that
//! is, its stored value within `[0, 2^32)`. A reservation subtracts from
//! both fields at once, but only after checking that each holds at least
//! the amount taken from it, so it borrows from neither.
//!
//! # Why it never over-commits
//!
//! Fix one dimension `d`. Let `R` be the sum of the units currently held in
//! `d` by reservations and `E` the effective capacity in units, as last
//! applied to the field. Every operation that changes `R` or `E` is exactly
//! one atomic read-modify-write of `d`'s word (a successful CAS for a
//! reservation, a `fetch_add` for a release, a rollback or an applied
//! capacity delta), and it changes `d`'s field by exactly its own amount
//! (above), so at every instant `field(d) == E - R`: there is no window in
//! which the field and the abstract state disagree. A reservation of `n`
//! units in `d` succeeds only when its CAS observes
//! `field(d) - n >= floor >= 0`, and the CAS fails if any other operation changed the word (either
//! field) since it was read. So right after every successful reservation
//! `R <= E - floor <= E`. Releases only lower `R`. A capacity cut can make
//! `E < R` (reservations already held cannot be taken back); the field is
//! then negative and every reservation of a positive amount in `d` fails
//! until releases bring `R` back under `E`. The one deliberate exception is
//! [`Reservation::force_grow_to`]: accounting follows reality, so when a
//! task is measured using more than it reserved, its reservation grows
//! without a check and new admissions pause. In amounts, `R` units hold at
//! least what was asked (amounts are rounded up), and `E` units count the
//! effective capacity with its capacity rounded up and its headroom and
//! external usage rounded down: at least the effective capacity and less
//! than three units more. So the amounts reserved exceed the effective
//! capacity by less than three units, if at all (a relative 2^-20 or less
//! of the capacity the tracker was built with; nothing at all where the
//! unit is one, as for CPU, GPUs and IOPS): the price of a request of
//! exactly the effective capacity fitting however the capacity falls on
//! the units.
//!
//! Requests are not atomic *across* words: while a request holds word 0 and
//! tries word 1, a second request may see word 0 as taken and fail although
//! it would fit once the first rolls back. Such failures are conservative
//! (they never over-commit) and transient (a rollback completes in a
//! bounded number of steps), so callers simply retry or defer.
//!
//! The loom models in `core/tests/loom_tracker.rs` check these claims with
//! three threads reserving and releasing while a fourth changes capacity,
//! with requests spanning two words, and with units larger than one while a
//! setter changes the other field of the same word.
//!
//! # Units
//!
//! A field holds 32 bits, an amount up to 2^60: each dimension counts in a
//! unit of `2^shift` of its amounts, fixed when the tracker is built, the
//! least power of two in which the capacity given then counts below 2^22
//! units. CPU in millicores, GPUs and most IOPS capacities count in units
//! of one (capacities below 2^22, about 4 million): exactly as before.
//! Memory counts in units of 512 bytes for 1 GiB, 32 KiB for 64 GiB,
//! 512 KiB for 1 TiB: a relative precision of 2^-21 (five in ten million)
//! of the first capacity or better. What that changes:
//!
//! - a reservation holds its request rounded **up** to whole units
//!   ([`Reservation::held`] says how much; a task asking 1 byte on a 64 GiB
//!   tracker holds 32 KiB); [`Reservation::shrink`] gives back whole units
//!   (rounded down); forced growth takes whole units (rounded up). Every
//!   amount a reservation, a detached or packed token, or a release log
//!   holds is therefore a whole number of units, and giving it back is
//!   exact, however such amounts are merged or summed;
//! - capacity counts in whole units rounded **up**, headroom and external
//!   usage rounded **down**, so that a request of exactly the effective
//!   capacity fits; in exchange, reservations may hold up to three units
//!   (capacity, headroom, external usage: one rounding each) beyond the
//!   effective capacity: 1.5 KiB on a 1 GiB tracker, 96 KiB on 64 GiB,
//!   against the 10% (at least 64 MiB) headroom the runtime keeps;
//! - [`Tracker::available`] and [`Tracker::reserved`] report whole units
//!   (so `reserved` is zero exactly when nothing is held), while
//!   [`Tracker::limit`], [`Tracker::capacity`], [`Tracker::headroom`],
//!   [`Tracker::external`] and [`Tracker::effective_capacity`] report the
//!   amounts as set, so a request above the exact `capacity - headroom` is
//!   still refused as never fitting;
//! - capacity, headroom and external usage are each counted as at most
//!   2^29 units: capacity may grow 128-fold after the tracker is built
//!   before it is clamped ([`Tracker::limit`] reports the clamp too, so a
//!   request above it is refused as never fitting rather than left to wait).
//!
//! # Bounds
//!
//! Capacity, headroom and external usage are each at most 2^29 units, so
//! the effective capacity `E` lies in `[-2^30, 2^29]`. `R` grows only by a
//! reservation that passes the check (then `R <= E <= 2^29`) or by forced
//! growth, which stops at a field of -2^28 (then `R <= E + 2^28 <= 2^29 +
//! 2^28`). So every field lies in `[-2^30 - 2^29 - 2^28, 2^29]`, inside
//! `[-2^31, 2^31)`, whatever setters do afterwards. A request of more than
//! 2^31 units can never be held (the check fails before its amount is
//! placed in a word); amounts as such are at most [`MAX_AMOUNT`] = 2^60
//! (enforced by [`Resources`]).

use core::fmt;
use core::ops::Deref;

use crate::primitive::hint;
use crate::primitive::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use crate::resource::{Dim, DimSet, MAX_AMOUNT, Resources, Shortfall};

/// What a refused request fell short of (see `Tracker::refuse`).
#[derive(Clone, Copy)]
enum Against<'a> {
    /// The field held `current` units, and `floor` was to stay.
    Field { current: i64, floor: &'a Resources },
    /// The dimension's exact limit, `capacity - headroom`.
    Limit,
}

/// Which setting `apply_setting` changes.
#[derive(Clone, Copy)]
enum Setting {
    Capacity,
    Headroom,
    External,
}

/// Dimensions whose `available` shares one atomic word (a 32-bit field
/// each). Named for reading; the code is written for two (the `0x5555` and
/// `0b11` masks, `field`, `place`).
const PER_WORD: usize = 2;

/// Atomic words holding `available`: dimension index `i` is field `i % 2` of
/// word `i / 2`.
const WORDS: usize = Dim::COUNT.div_ceil(PER_WORD);

/// Added to a field's signed value so that it is stored as an unsigned
/// 32-bit number: a field holds `available + 2^31`.
const BIAS: i64 = 1 << 31;

/// The most units that capacity, headroom and external usage are each
/// counted as in `available` (larger settings are clamped to it, and a
/// reservation can never exceed it: see [`Tracker::limit`]).
const MAX_UNITS: i64 = 1 << 29;

/// The lowest value a field may reach through forced growth: -2^28 units.
const FORCE_FLOOR: i64 = -(1 << 28);

/// A dimension's unit is the least power of two in which the capacity the
/// tracker is built with counts below 2^22 units: 1 for capacities below
/// 2^22, about 4 million (CPU in millicores, GPUs, most IOPS), 2 KiB for
/// 4 GiB of memory, 32 KiB for 64 GiB. Capacity may then grow 128-fold (to
/// [`MAX_UNITS`]) before it is clamped.
const INITIAL_UNIT_BITS: u32 = 22;

/// The unit shift of a dimension whose initial capacity is `capacity`.
#[inline]
fn unit_shift(capacity: u64) -> u8 {
    let bits = u64::BITS.saturating_sub(capacity.leading_zeros());
    // At most 64 - 22 = 42.
    u8::try_from(bits.saturating_sub(INITIAL_UNIT_BITS)).unwrap_or(0)
}

/// `2^shift - 1` (`shift` is at most 42).
#[inline(always)]
fn unit_mask(shift: u8) -> u64 {
    1u64.checked_shl(u32::from(shift))
        .unwrap_or(0)
        .wrapping_sub(1)
}

/// `amount` rounded up to a whole number of units. Exact for every amount
/// up to [`MAX_AMOUNT`] (2^60, itself a whole number of any unit).
#[inline(always)]
fn round_up(amount: u64, shift: u8) -> u64 {
    round_up_masked(amount.min(MAX_AMOUNT), unit_mask(shift))
}

/// [`round_up`] on the hot path: `amount` (at most [`MAX_AMOUNT`], as every
/// amount of a [`Resources`] vector is) and the unit's mask given.
#[inline(always)]
fn round_up_masked(amount: u64, mask: u64) -> u64 {
    // At most 2^60 + 2^42: no wrap.
    amount.wrapping_add(mask) & !mask
}

/// A whole number of units (`amount`, at most 2^60, as rounded by
/// [`round_up`]) counted in units: at most 2^60, so it fits an `i64`.
#[inline(always)]
fn units(amount: u64, shift: u8) -> i64 {
    // `shift` is at most 42 (see `unit_shift`), so the shift never wraps,
    // and the result is at most 2^60 < i64::MAX.
    #[allow(clippy::cast_possible_wrap)]
    let u = amount.min(MAX_AMOUNT).wrapping_shr(u32::from(shift)) as i64;
    u
}

/// [`units`] on the hot path, for an amount known to be at most
/// [`MAX_AMOUNT`].
#[inline(always)]
fn units_fast(amount: u64, shift: u8) -> i64 {
    // As in `units`.
    #[allow(clippy::cast_possible_wrap)]
    let u = amount.wrapping_shr(u32::from(shift)) as i64;
    u
}

/// A setting (capacity, headroom or external usage) in units: capacity
/// rounded up, the amounts held back from it rounded down, each clamped to
/// [`MAX_UNITS`]. A request of exactly the effective capacity (rounded up
/// itself) therefore fits; the price, at most three units of slack, is said
/// in the module documentation.
#[inline]
fn setting_units(which: Setting, amount: u64, shift: u8) -> i64 {
    let amount = match which {
        Setting::Capacity => round_up(amount, shift),
        Setting::Headroom | Setting::External => amount.min(MAX_AMOUNT) & !unit_mask(shift),
    };
    units(amount, shift).min(MAX_UNITS)
}

/// `capacity - headroom` as [`Tracker::limit`] reports it: exact, except
/// that capacity counts at most [`MAX_UNITS`] units.
#[inline]
fn exact_limit(capacity: u64, headroom: u64, shift: u8) -> i64 {
    let most = signed_amount_of(MAX_UNITS, shift);
    let cap = i64::try_from(capacity.min(MAX_AMOUNT))
        .unwrap_or(i64::MAX)
        .min(most);
    let head = i64::try_from(headroom.min(MAX_AMOUNT)).unwrap_or(i64::MAX);
    // Both are at most 2^60: the difference fits.
    cap.wrapping_sub(head)
}

/// A signed number of units (a field's value, at most 2^31 in size) in the
/// dimension's amounts, clamped to `[-2^62, 2^62]`.
#[inline]
fn signed_amount_of(units: i64, shift: u8) -> i64 {
    let m = 1i64.checked_shl(u32::from(shift)).unwrap_or(i64::MAX);
    units.saturating_mul(m).clamp(-(1 << 62), 1 << 62)
}

/// A field's signed value (`available` in units).
#[inline(always)]
fn field(word: u64, f: usize) -> i64 {
    let raw = if f == 0 {
        word & 0xFFFF_FFFF
    } else {
        word >> 32
    };
    // `raw < 2^32`: the conversion is lossless.
    #[allow(clippy::cast_possible_wrap)]
    let raw = raw as i64;
    raw.wrapping_sub(BIAS)
}

/// `units` placed in field `f` of a word, for adding to or subtracting from
/// it (wrapping: a negative number adds its two's complement, which changes
/// that field alone as long as the field stays within `[-2^31, 2^31)`, which
/// the bounds in the module documentation guarantee).
#[inline(always)]
fn place(units: i64, f: usize) -> u64 {
    #[allow(clippy::cast_sign_loss)]
    let bits = units as u64;
    if f == 0 { bits } else { bits.wrapping_shl(32) }
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
    /// `effective - reserved` per dimension, in the dimension's units, two
    /// dimensions to a word; negative when over-committed.
    words: Words,
    /// Each dimension's unit, `2^shift`; fixed at construction.
    shift: [u8; Dim::COUNT],
    /// Each dimension's `2^shift - 1`.
    mask: [u64; Dim::COUNT],
    /// Configured capacity per dimension (for reporting and never-fits checks).
    capacity: [AtomicU64; Dim::COUNT],
    /// Safety margin held back from reservations, per dimension.
    headroom: [AtomicU64; Dim::COUNT],
    /// Usage not covered by any reservation (reported by a monitor).
    external: [AtomicU64; Dim::COUNT],
    /// Serialises capacity, headroom and external changes (never reservations).
    setter_lock: AtomicBool,
    /// `capacity - headroom` per dimension (capacity at most
    /// [`MAX_UNITS`] units), kept in step by the setters.
    limit: [AtomicI64; Dim::COUNT],
    /// Bumped by every change of capacity or headroom (not external usage), so
    /// that waiters can re-check whether their request can still ever fit.
    epoch: AtomicU64,
    /// Dimensions with a capacity; fixed at construction.
    tracked: DimSet,
}

/// `available` of every dimension, two to a word, on a cache line of its
/// own (the rest of the tracker changes rarely).
#[repr(align(64))]
struct Words([AtomicU64; WORDS]);

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
        let shift: [u8; Dim::COUNT] =
            core::array::from_fn(|i| unit_shift(amounts.get(i).copied().unwrap_or(0)));
        let initial = |i: usize| {
            let s = shift.get(i).copied().unwrap_or(0);
            setting_units(Setting::Capacity, amounts.get(i).copied().unwrap_or(0), s)
        };
        Tracker {
            words: Words(core::array::from_fn(|w| {
                let first = w.saturating_mul(PER_WORD);
                let lo = place(initial(first).wrapping_add(BIAS), 0);
                let hi = place(initial(first.saturating_add(1)).wrapping_add(BIAS), 1);
                AtomicU64::new(lo | hi)
            })),
            capacity: core::array::from_fn(|i| {
                AtomicU64::new(amounts.get(i).copied().unwrap_or(0))
            }),
            limit: core::array::from_fn(|i| {
                AtomicI64::new(exact_limit(
                    amounts.get(i).copied().unwrap_or(0),
                    0,
                    shift.get(i).copied().unwrap_or(0),
                ))
            }),
            mask: core::array::from_fn(|i| unit_mask(shift.get(i).copied().unwrap_or(0))),
            shift,
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

    /// The word holding dimension index `i`'s `available`.
    #[inline(always)]
    fn word(&self, i: usize) -> Option<&AtomicU64> {
        self.words.0.get(i / PER_WORD)
    }

    /// Dimension index `i`'s unit shift.
    #[inline(always)]
    fn shift_of(&self, i: usize) -> u8 {
        self.shift.get(i).copied().unwrap_or(0)
    }

    /// `available` of dimension index `i`, in its units.
    #[inline]
    fn field_units(&self, i: usize) -> i64 {
        self.word(i)
            .map_or(0, |w| field(w.load(Ordering::Acquire), i % PER_WORD))
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
            let need = amounts.get(i).copied().unwrap_or(0);
            if need == 0 {
                continue;
            }
            let s = self.shift_of(i);
            let fl = units(round_up(floors.get(i).copied().unwrap_or(0), s), s);
            let threshold = units(round_up(need, s), s).saturating_add(fl);
            if self.field_units(i) < threshold {
                return false;
            }
        }
        true
    }

    /// Whether `held` (what a reservation holds now, [`Reservation::held`])
    /// may pass straight to a waiter that asks `request` above `floor`, as
    /// its release followed at once by [`Tracker::try_reserve_above`] of
    /// `request` would: `held` is exactly what that reservation would hold
    /// (the same dimensions, the same whole units), and in every one of
    /// them at least `floor` is still available (nothing over-committed by a
    /// capacity cut, a headroom raise or external usage since it was
    /// reserved) and `request` is within the exact limit (`capacity -
    /// headroom`). Nothing changes either way; a runtime uses it to hand a
    /// finished task's reservation to a waiter alike without touching the
    /// tracker's words.
    #[must_use]
    pub fn fits_handover(&self, held: &Resources, request: &Resources, floor: &Resources) -> bool {
        let asked = request.raw_amounts();
        let holds = held.raw_amounts();
        let floors = floor.raw_amounts();
        let mut todo = request
            .dims()
            .union(held.dims())
            .intersection(self.tracked)
            .bits();
        while todo != 0 {
            let i = todo.trailing_zeros() as usize;
            todo &= todo.wrapping_sub(1);
            let need = asked.get(i).copied().unwrap_or(0);
            let has = holds.get(i).copied().unwrap_or(0);
            let s = self.shift_of(i);
            let units_needed = units(round_up(need, s), s);
            if units_needed != units(round_up(has, s), s) {
                return false;
            }
            if need == 0 {
                continue;
            }
            let limit = self
                .limit
                .get(i)
                .map_or(0, |l| l.load(Ordering::Relaxed).max(0).unsigned_abs());
            if need > limit {
                return false;
            }
            let fl = units(round_up(floors.get(i).copied().unwrap_or(0), s), s);
            if self.field_units(i) < fl {
                return false;
            }
        }
        true
    }

    /// Reserves `request` (its tracked dimensions) or nothing.
    ///
    /// The amounts held are the request's, each rounded up to a whole
    /// number of its dimension's unit (see the [module
    /// documentation](self#units)): exactly the request for dimensions
    /// whose capacity was at most about 4 million when the tracker was
    /// built.
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

    /// Reserves the tracked, non-zero dimensions of `request` above `floor`,
    /// word by word (one compare-and-swap per word of two dimensions), or
    /// nothing. On success, `held(i, amount)` has been called for each
    /// dimension index `i` held (its amount rounded up to its unit), in
    /// index order, and the held dimensions' bits are returned. On failure
    /// everything taken is given back and the shortfall of the failing
    /// dimension is returned (`held` may have been called for some).
    ///
    /// This is the hot path (see `benches/benches/iai_tracker.rs`): per word
    /// it loads two amounts, rounds them up to their units without a branch,
    /// and tries one compare-and-swap. `FLOOR` is false when `floor` is
    /// known to be empty, which leaves its arithmetic out.
    #[inline(always)]
    fn reserve_into<const FLOOR: bool>(
        &self,
        request: &Resources,
        floor: &Resources,
        mut held: impl FnMut(usize, u64),
    ) -> Result<u16, Shortfall> {
        let amounts = request.raw_amounts();
        let todo = request.dims().intersection(self.tracked).bits();
        // Bit 2w set: word w holds an asked dimension.
        let mut words = (todo | (todo >> 1)) & 0x5555;
        let mut bits = 0u16;
        while words != 0 {
            let first_bit = words.trailing_zeros();
            words &= words.wrapping_sub(1);
            let first = first_bit as usize;
            let Some((r0, r1, u0, u1, a0, a1)) = self.word_need(amounts, todo, first_bit) else {
                continue;
            };
            // The exact limit (`capacity - headroom`): units round capacity
            // up, so without this a request just above it could fit.
            if let Some(f) = self.over_limit(first, a0, a1) {
                return Err(self.refuse(request, todo, first_bit, f, Against::Limit));
            }
            let (f0, f1) = if FLOOR {
                (
                    self.floor_units(floor, first),
                    self.floor_units(floor, first.wrapping_add(1)),
                )
            } else {
                (0, 0)
            };
            // A field asked nothing of is never short (it may be negative).
            let t0 = if u0 == 0 {
                i64::MIN
            } else {
                u0.saturating_add(f0)
            };
            let t1 = if u1 == 0 {
                i64::MIN
            } else {
                u1.saturating_add(f1)
            };
            // Used only once each field is known to hold its amount (at most
            // 2^29 then), so larger amounts placed wrongly are never added.
            let delta = place(u0, 0) | place(u1, 1);
            let Some(word) = self.words.0.get(first / PER_WORD) else {
                continue;
            };
            if delta == 0 {
                continue;
            }
            if let Err((f, current)) = take_word(word, delta, [t0, t1]) {
                let against = Against::Field { current, floor };
                return Err(self.refuse(request, todo, first_bit, f, against));
            }
            if u0 != 0 {
                held(first, r0);
            }
            if u1 != 0 {
                held(first.wrapping_add(1), r1);
            }
            let got = u16::from(u0 != 0) | (u16::from(u1 != 0) << 1);
            // `first_bit < Dim::COUNT < 16`: the shift never wraps.
            bits |= got.wrapping_shl(first_bit);
        }
        Ok(bits)
    }

    /// What the word whose first dimension is bit `first_bit` is asked for:
    /// the two amounts rounded up to their units (zero where not asked:
    /// `todo` lacks the bit) and the same in units.
    #[inline(always)]
    fn word_need(
        &self,
        amounts: &[u64; Dim::COUNT],
        todo: u16,
        first_bit: u32,
    ) -> Option<(u64, u64, i64, i64, u64, u64)> {
        let first = first_bit as usize;
        let range = first..first.wrapping_add(PER_WORD);
        let (Some(&[a0, a1]), Some(&[s0, s1]), Some(&[m0, m1])) = (
            amounts.get(range.clone()),
            self.shift.get(range.clone()),
            self.mask.get(range),
        ) else {
            return None;
        };
        // `first_bit < Dim::COUNT < 16`: the shift never wraps.
        let asked = todo.wrapping_shr(first_bit);
        // Zero where the dimension is not asked (untracked).
        let a0 = a0 & 0u64.wrapping_sub(u64::from(asked & 1));
        let a1 = a1 & 0u64.wrapping_sub(u64::from((asked >> 1) & 1));
        let (r0, r1) = (round_up_masked(a0, m0), round_up_masked(a1, m1));
        Some((r0, r1, units_fast(r0, s0), units_fast(r1, s1), a0, a1))
    }

    /// Which field of the word whose first dimension is index `first` asks
    /// for more than its exact limit (`capacity - headroom`), if one does;
    /// `a0` and `a1` are the amounts asked (zero where not asked).
    #[inline(always)]
    fn over_limit(&self, first: usize, a0: u64, a1: u64) -> Option<usize> {
        let Some([l0, l1]) = self.limit.get(first..first.wrapping_add(PER_WORD)) else {
            return None;
        };
        let most = |l: &AtomicI64| l.load(Ordering::Relaxed).max(0).unsigned_abs();
        if a0 > most(l0) {
            Some(0)
        } else if a1 > most(l1) {
            Some(1)
        } else {
            None
        }
    }

    /// `floor`'s amount in dimension index `i`, in units, rounded up.
    #[inline]
    fn floor_units(&self, floor: &Resources, i: usize) -> i64 {
        let s = self.shift_of(i);
        units(
            round_up(floor.raw_amounts().get(i).copied().unwrap_or(0), s),
            s,
        )
    }

    /// Gives back the words of `request` (asked dimensions `todo`) whose
    /// first dimension's bit is below `below_bit`, recomputed exactly as
    /// [`Tracker::reserve_into`] took them (cold: a rollback).
    #[cold]
    #[inline(never)]
    fn undo(&self, request: &Resources, todo: u16, below_bit: u32) {
        let amounts = request.raw_amounts();
        let below = 1u32.checked_shl(below_bit).map_or(u16::MAX, |b| {
            u16::try_from(b.wrapping_sub(1)).unwrap_or(u16::MAX)
        });
        let mut words = (todo | (todo >> 1)) & 0x5555 & below;
        while words != 0 {
            let first_bit = words.trailing_zeros();
            words &= words.wrapping_sub(1);
            if let (Some((_, _, u0, u1, _, _)), Some(word)) = (
                self.word_need(amounts, todo, first_bit),
                self.words.0.get(first_bit as usize / PER_WORD),
            ) {
                let delta = place(u0, 0) | place(u1, 1);
                if delta != 0 {
                    word.fetch_add(delta, Ordering::AcqRel);
                }
            }
        }
    }

    /// A refusal (cold): gives back the words taken before the one whose
    /// first dimension is `failed_bit`, and returns the shortfall of its
    /// field `f`: against what the field held above the floor, or against
    /// the dimension's exact limit.
    #[cold]
    #[inline(never)]
    fn refuse(
        &self,
        request: &Resources,
        todo: u16,
        failed_bit: u32,
        f: usize,
        against: Against<'_>,
    ) -> Shortfall {
        self.undo(request, todo, failed_bit);
        let i = (failed_bit as usize).wrapping_add(f);
        let need = request.raw_amounts().get(i).copied().unwrap_or(0);
        let available = match against {
            Against::Field { current, floor } => {
                let fl = self.floor_units(floor, i);
                signed_amount_of(current.saturating_sub(fl), self.shift_of(i))
            }
            Against::Limit => self.limit.get(i).map_or(0, |l| l.load(Ordering::Acquire)),
        };
        self.shortfall_at(i, need, available)
    }

    /// Reserves the tracked, non-zero dimensions of `request`; on failure rolls
    /// back and returns the shortfall. Returns the amounts actually held.
    #[inline]
    fn reserve_raw(&self, request: &Resources, floor: &Resources) -> Result<Resources, Shortfall> {
        let mut held = [0u64; Dim::COUNT];
        let put = |i: usize, amount: u64| {
            if let Some(h) = held.get_mut(i) {
                *h = amount;
            }
        };
        let bits = if floor.dims().is_empty() {
            self.reserve_into::<false>(request, floor, put)?
        } else {
            self.reserve_into::<true>(request, floor, put)?
        };
        // Every amount is a request's rounded up (at most MAX_AMOUNT, which
        // is a whole number of units), and zero outside `bits`.
        Ok(Resources::from_raw_trusted(
            held,
            DimSet::from_bits_truncate(bits),
        ))
    }

    /// [`Tracker::try_reserve_above`] straight into a [`PackedReservation`],
    /// for a runtime that carries reservations packed: `None`, with the
    /// tracker as it was, when the request does not fit now (above `floor`)
    /// or holds more than [`PACKED_DIMS`] tracked, non-zero dimensions. The
    /// caller then asks [`Tracker::try_reserve_above`] (or admission) why.
    #[inline(never)]
    pub fn try_reserve_packed(
        &self,
        request: &Resources,
        floor: &Resources,
    ) -> Option<PackedReservation> {
        let origin = core::num::NonZeroUsize::new(tracker_id(self))?;
        let mut packed = [0u64; PACKED_DIMS];
        let mut n = 0usize;
        let put = |_: usize, amount: u64| {
            // Beyond PACKED_DIMS only counted: handed back below.
            if let Some(p) = packed.get_mut(n) {
                *p = amount;
            }
            n = n.wrapping_add(1);
        };
        let bits = if floor.dims().is_empty() {
            self.reserve_into::<false>(request, floor, put).ok()?
        } else {
            self.reserve_into::<true>(request, floor, put).ok()?
        };
        if n > PACKED_DIMS {
            // More dimensions than a pack holds (rare): give them back.
            self.undo(
                request,
                request.dims().intersection(self.tracked).bits(),
                16,
            );
            return None;
        }
        Some(PackedReservation {
            amounts: packed,
            dims: bits,
            origin,
        })
    }

    /// The shortfall of dimension index `i` (cold: only on refusal).
    #[cold]
    fn shortfall_at(&self, i: usize, need: u64, above_floor: i64) -> Shortfall {
        let dim = Dim::from_index(i).unwrap_or(Dim::Cpu);
        // The field held less than `need` rounded up: a shortfall exists.
        Shortfall::check_signed(dim, need, above_floor).unwrap_or(Shortfall {
            dim,
            requested: need,
            available: 0,
            by: need,
        })
    }

    /// Gives back `amounts` in the dimensions of `mask` (bits by index):
    /// amounts this tracker handed out, so whole numbers of units, and zero
    /// outside `mask` (as in a [`Resources`] vector).
    #[inline]
    fn release_mask(&self, amounts: &[u64; Dim::COUNT], mask: u16) {
        let mut words = (mask | (mask >> 1)) & 0x5555;
        while words != 0 {
            let first = words.trailing_zeros() as usize;
            words &= words.wrapping_sub(1);
            let (Some(&[a0, a1]), Some(&[s0, s1]), Some(word)) = (
                amounts.get(first..first.wrapping_add(PER_WORD)),
                self.shift.get(first..first.wrapping_add(PER_WORD)),
                self.words.0.get(first / PER_WORD),
            ) else {
                continue;
            };
            word.fetch_add(
                place(units_fast(a0, s0), 0) | place(units_fast(a1, s1), 1),
                Ordering::AcqRel,
            );
        }
    }

    /// Gives back every set dimension of `held` (amounts it previously took).
    #[inline]
    fn release_raw(&self, held: &Resources) {
        self.release_mask(held.raw_amounts(), held.dims().bits());
    }

    /// Gives back `amount` (a whole number of units this tracker handed
    /// out) in dimension index `i`.
    #[inline]
    fn release_at(&self, i: usize, amount: u64) {
        if let Some(word) = self.word(i) {
            word.fetch_add(
                place(units(amount, self.shift_of(i)), i % PER_WORD),
                Ordering::AcqRel,
            );
        }
    }

    /// Takes at least `amount` in `dim` without any check, clamping so that
    /// `available` stays above -2^28 units. Returns the amount actually
    /// taken (a whole number of units).
    fn force_take(&self, dim: Dim, amount: u64) -> u64 {
        let i = dim.index();
        let Some(word) = self.word(i) else { return 0 };
        let f = i % PER_WORD;
        let s = self.shift_of(i);
        let want = units(round_up(amount, s), s);
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let room = field(current, f).saturating_sub(FORCE_FLOOR).max(0);
            // At most 2^29 + 2^29 - FORCE_FLOOR < 2^31.
            let take = want.min(room);
            match word.compare_exchange_weak(
                current,
                current.wrapping_sub(place(take, f)),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                // `take` is in [0, 2^31): the conversion is lossless.
                Ok(_) => {
                    return u64::try_from(signed_amount_of(take, s)).unwrap_or(0);
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes `amounts` (tracked dimensions) **without** checking capacity and
    /// returns them as a [`DetachedReservation`] to release later. This is
    /// for usage that already happened (a running task measured above its
    /// reservation: accounting follows reality); a dimension it
    /// over-commits admits nothing new until enough is released. Each
    /// amount is rounded up to its unit, and each dimension is clamped so
    /// that `available` stays above -2^28 units.
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
    /// `limit` for capacity and headroom) as one delta each, in units.
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
                let i = dim.index();
                let (Some(cell), Some(word)) = (setting.get(i), self.word(i)) else {
                    continue;
                };
                let s = self.shift_of(i);
                let old = cell.swap(new, Ordering::AcqRel);
                // Both are at most 2^29 units: the difference fits.
                let delta = setting_units(which, new, s).wrapping_sub(setting_units(which, old, s));
                let delta = if adds { delta } else { delta.wrapping_neg() };
                word.fetch_add(place(delta, i % PER_WORD), Ordering::AcqRel);
                if limits {
                    if let Some(l) = self.limit.get(i) {
                        // Serialised by the setter lock: recomputed whole.
                        let load = |c: &[AtomicU64; Dim::COUNT]| {
                            c.get(i).map_or(0, |c| c.load(Ordering::Acquire))
                        };
                        let limit = exact_limit(load(&self.capacity), load(&self.headroom), s);
                        l.store(limit, Ordering::Release);
                    }
                }
            }
        });
        Ok(())
    }

    /// `capacity - headroom` of `dim` (zero when the headroom is larger),
    /// or `None` for an untracked dimension: the most a request may ever
    /// ask in `dim` (a request of at most this much fits when nothing else
    /// is held, whatever the units; capacity counts at most 2^29 units, see
    /// the [module documentation](self#units)). One atomic load: this is
    /// what admission compares a request against to decide that it can
    /// never fit.
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
    /// or `None` for an untracked dimension: a whole number of the
    /// dimension's units (see the [module documentation](self#units)).
    #[must_use]
    pub fn available_signed(&self, dim: Dim) -> Option<i64> {
        if self.tracked.contains(dim) {
            let i = dim.index();
            Some(signed_amount_of(self.field_units(i), self.shift_of(i)))
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
    /// The figure is derived (`capacity - headroom - external - available`,
    /// in units) from separate loads, so while a setter runs concurrently it
    /// may be off by that setter's change; it is exact whenever no setter is
    /// running.
    #[must_use]
    pub fn reserved(&self) -> Resources {
        let mut out = Resources::NONE;
        for dim in self.tracked {
            let i = dim.index();
            let s = self.shift_of(i);
            let load = |c: &[AtomicU64; Dim::COUNT], which| {
                setting_units(which, c.get(i).map_or(0, |c| c.load(Ordering::Acquire)), s)
            };
            let effective = load(&self.capacity, Setting::Capacity)
                .wrapping_sub(load(&self.headroom, Setting::Headroom))
                .wrapping_sub(load(&self.external, Setting::External));
            let reserved = effective.saturating_sub(self.field_units(i)).max(0);
            out = out.with_saturating(dim, signed_amount_of(reserved, s).unsigned_abs());
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

    /// Gives back `less` (capped at what is held, and rounded down to a
    /// whole number of the dimension's unit) and keeps the rest.
    pub fn shrink(&mut self, less: &Resources) {
        let give = less.min(&self.held);
        let mut back = Resources::NONE;
        for (dim, amount) in give.iter() {
            let amount = amount & !unit_mask(self.tracker.shift_of(dim.index()));
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

/// Takes the packed units `delta` from `word` if every field stays at or
/// above its threshold afterwards (a compare-and-swap loop); otherwise leaves
/// it and returns the first field that is short and its value.
#[inline(always)]
fn take_word(word: &AtomicU64, delta: u64, threshold: [i64; PER_WORD]) -> Result<(), (usize, i64)> {
    let [t0, t1] = threshold;
    let mut current = word.load(Ordering::Relaxed);
    loop {
        let lo = field(current, 0);
        if lo < t0 {
            return Err((0, lo));
        }
        let hi = field(current, 1);
        if hi < t1 {
            return Err((1, hi));
        }
        // Each field holds at least what is taken from it (its threshold is
        // the amount plus a floor of zero or more): no borrow crosses from
        // one field into the other.
        match word.compare_exchange_weak(
            current,
            current.wrapping_sub(delta),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Ok(()),
            Err(actual) => current = actual,
        }
    }
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
            let (Some(added), Some(given)) = (self.added.get(i), self.given.get(i)) else {
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
                        // A sum of amounts the tracker handed out: a whole
                        // number of units.
                        tracker.release_at(i, delta);
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
    fn fits_handover_says_what_a_release_and_a_reservation_would_do() {
        let t = Tracker::new(&cap());
        let ask = r(&[(Dim::Cpu, 1000), (Dim::Memory, 300)]);
        let a = t.try_reserve(&ask).unwrap();
        let b = t.try_reserve(&ask).unwrap();
        // 2000 CPU and 400 memory left.
        assert!(t.fits_handover(a.held(), &ask, &Resources::NONE));
        // Another request, or another shape of the same, is not handed over.
        for other in [
            r(&[(Dim::Cpu, 999), (Dim::Memory, 300)]),
            r(&[(Dim::Cpu, 1000)]),
            r(&[(Dim::Cpu, 1000), (Dim::Memory, 300), (Dim::Iops, 1)]),
        ] {
            let tracked_same = other.dims().intersection(t.tracked()) == ask.dims();
            let amounts_same =
                other.get(Dim::Cpu) == Some(1000) && other.get(Dim::Memory) == Some(300);
            assert_eq!(
                t.fits_handover(a.held(), &other, &Resources::NONE),
                tracked_same && amounts_same,
                "{other:?}"
            );
        }
        // The floor must stay available, as for `try_reserve_above` after a
        // release: 400 memory is left.
        assert!(t.fits_handover(a.held(), &ask, &r(&[(Dim::Memory, 400)])));
        assert!(!t.fits_handover(a.held(), &ask, &r(&[(Dim::Memory, 401)])));
        // A capacity cut that over-commits memory stops hand-overs; what a
        // release then a reservation would do agrees.
        t.set_capacity(&r(&[(Dim::Memory, 500)])).unwrap();
        assert!(!t.fits_handover(a.held(), &ask, &Resources::NONE));
        drop(b);
        // 500 - 300 held: 200 left, so a hand-over is fine again.
        assert!(t.fits_handover(a.held(), &ask, &Resources::NONE));
        // A cut below the request itself (its exact limit): never.
        t.set_capacity(&r(&[(Dim::Memory, 299)])).unwrap();
        assert!(!t.fits_handover(a.held(), &ask, &Resources::NONE));
        drop(a);
        assert!(t.try_reserve(&ask).is_err());
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
        // Each amount rounded up to the unit of a 2^40 capacity, 2^19.
        assert_eq!(back.held().dims(), req.dims());
        assert!(back.held().iter().all(|(_, a)| a == 1 << 19));
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
        assert_eq!(t.available_signed(Dim::Memory), Some(FORCE_FLOOR));
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

    /// Memory in bytes on a 2^40-byte capacity: a unit of 2^19 bytes.
    fn big_memory() -> Tracker {
        Tracker::new(&r(&[(Dim::Cpu, 4000), (Dim::Memory, 1 << 40)]))
    }

    #[test]
    fn amounts_are_rounded_up_to_whole_units_and_released_exactly() {
        let t = big_memory();
        let unit = 1u64 << 19;
        // CPU (4000 millicores) keeps a unit of 1: exact.
        let a = t
            .try_reserve(&r(&[(Dim::Cpu, 7), (Dim::Memory, 1)]))
            .unwrap();
        assert_eq!(a.held(), &r(&[(Dim::Cpu, 7), (Dim::Memory, unit)]));
        assert_eq!(t.reserved(), r(&[(Dim::Cpu, 7), (Dim::Memory, unit)]));
        let b = t.try_reserve(&r(&[(Dim::Memory, unit + 1)])).unwrap();
        assert_eq!(b.held().amount(Dim::Memory), 2 * unit);
        // Merged, shrunk by a part of a unit (rounded down: nothing), by a
        // unit and a half (one unit), then released: nothing is left.
        let (_, mut da) = a.detach();
        let (_, db) = b.detach();
        da.merge(db).unwrap();
        let mut c = da.attach(&t).unwrap();
        c.shrink(&r(&[(Dim::Memory, unit / 2)]));
        assert_eq!(c.held().amount(Dim::Memory), 3 * unit);
        c.shrink(&r(&[(Dim::Memory, unit + unit / 2)]));
        assert_eq!(c.held().amount(Dim::Memory), 2 * unit);
        assert_eq!(t.reserved().amount(Dim::Memory), 2 * unit);
        c.release();
        assert!(t.is_idle());
        assert_eq!(t.available(), t.capacity());
    }

    #[test]
    fn a_request_of_the_whole_limit_fits_and_the_slack_is_under_three_units() {
        let t = big_memory();
        let unit = 1u64 << 19;
        // A capacity that is not a whole number of units counts rounded up,
        // a headroom rounded down; the limit stays exact.
        t.set_capacity(&r(&[(Dim::Memory, (1 << 40) + 1)])).unwrap();
        t.set_headroom(&r(&[(Dim::Memory, 2)])).unwrap();
        let limit = t.limit(Dim::Memory).unwrap();
        assert_eq!(limit, (1 << 40) - 1);
        // One byte more never fits, although its units would.
        let e = t.try_reserve(&r(&[(Dim::Memory, limit + 1)])).unwrap_err();
        assert_eq!((e.dim, e.available, e.by), (Dim::Memory, limit, 1));
        assert!(t.is_idle());
        // The whole limit fits.
        let all = t.try_reserve(&r(&[(Dim::Memory, limit)])).unwrap();
        assert_eq!(all.held().amount(Dim::Memory), 1 << 40);
        // The slack: the capacity's last, partial unit counts whole, so one
        // more unit fits past the exact limit, and then nothing (at most
        // three units in all: capacity, headroom and external usage are
        // each rounded once).
        let extra = t.try_reserve(&r(&[(Dim::Memory, 1)])).unwrap();
        assert!(t.try_reserve(&r(&[(Dim::Memory, 1)])).is_err());
        let held = all.held().amount(Dim::Memory) + extra.held().amount(Dim::Memory);
        assert!(
            held > limit && held - limit < 3 * unit,
            "held {held}, limit {limit}"
        );
        drop((all, extra));
        t.set_headroom(&r(&[(Dim::Memory, 0)])).unwrap();
        assert!(t.is_idle());
    }

    #[test]
    fn capacity_grown_past_128_fold_is_clamped_and_the_limit_says_so() {
        // 1 GiB (31 bits): a unit of 2^9 bytes; 2^29 units = 256 GiB at most.
        let t = Tracker::new(&r(&[(Dim::Memory, 1 << 30)]));
        t.set_capacity(&r(&[(Dim::Memory, 1 << 40)])).unwrap();
        assert_eq!(t.capacity().amount(Dim::Memory), 1 << 40);
        assert_eq!(t.limit(Dim::Memory), Some(1 << 38));
        let most = t.try_reserve(&r(&[(Dim::Memory, 1 << 38)])).unwrap();
        assert!(t.try_reserve(&r(&[(Dim::Memory, 1)])).is_err());
        drop(most);
        t.set_capacity(&r(&[(Dim::Memory, 1 << 30)])).unwrap();
        assert!(t.is_idle());
        assert_eq!(t.available(), t.capacity());
    }

    #[test]
    fn the_two_fields_of_a_word_are_independent() {
        // CPU and memory share a word: one over-committed (negative) does
        // not disturb the other, in either direction.
        let t = Tracker::new(&r(&[(Dim::Cpu, 100), (Dim::Memory, 100)]));
        let cpu = t.try_reserve(&r(&[(Dim::Cpu, 80)])).unwrap();
        t.set_capacity(&r(&[(Dim::Cpu, 10)])).unwrap();
        assert_eq!(t.available_signed(Dim::Cpu), Some(-70));
        let mem = t.try_reserve(&r(&[(Dim::Memory, 100)])).unwrap();
        assert_eq!(t.available_signed(Dim::Memory), Some(0));
        assert_eq!(
            t.try_reserve(&r(&[(Dim::Cpu, 1), (Dim::Memory, 0)]))
                .unwrap_err()
                .dim,
            Dim::Cpu
        );
        let e = t
            .try_reserve(&r(&[(Dim::Cpu, 0), (Dim::Memory, 1)]))
            .unwrap_err();
        assert_eq!((e.dim, e.available, e.by), (Dim::Memory, 0, 1));
        drop(mem);
        t.set_external(&r(&[(Dim::Memory, 100)])).unwrap();
        assert_eq!(t.available_signed(Dim::Memory), Some(0));
        assert_eq!(t.available_signed(Dim::Cpu), Some(-70));
        drop(cpu);
        t.set_capacity(&r(&[(Dim::Cpu, 100)])).unwrap();
        t.set_external(&r(&[(Dim::Memory, 0)])).unwrap();
        assert!(t.is_idle());
        assert_eq!(t.available(), r(&[(Dim::Cpu, 100), (Dim::Memory, 100)]));
    }

    #[test]
    fn forced_growth_and_release_logs_count_whole_units() {
        let t = big_memory();
        let unit = 1u64 << 19;
        let forced = t.force_reserve(&r(&[(Dim::Memory, 3)]));
        assert_eq!(forced.held().amount(Dim::Memory), unit);
        let log = ReleaseLog::new();
        let mut w = log.writer().unwrap();
        w.add_detached(forced).unwrap();
        for _ in 0..3 {
            let p = t
                .try_reserve_packed(&r(&[(Dim::Memory, 5), (Dim::Cpu, 1)]), &Resources::NONE)
                .unwrap();
            w.add_packed(p).unwrap();
        }
        assert_eq!(t.reserved(), r(&[(Dim::Cpu, 3), (Dim::Memory, 4 * unit)]));
        assert_eq!(log.give_back(&t), Ok(true));
        assert!(t.is_idle());
        assert_eq!(t.available(), t.capacity());
    }
}
