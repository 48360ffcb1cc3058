//! Placement of requests onto domains: vector bin packing, online and in batches.
//!
//! A [`Packer`] keeps the books of a few *placement domains* (the bins: NUMA
//! nodes, GPUs, or the whole machine as a single domain). Each [`Domain`] has a
//! capacity [`Resources`] and the amounts placed on it. [`Packer::place`] picks a
//! domain for a request with the packer's [`Fit`] and charges the request to it;
//! the returned [`Placement`] is a token that [`Packer::release`] consumes.
//!
//! # Algorithms and where they come from
//!
//! | what | algorithm | source |
//! |------|-----------|--------|
//! | [`Fit::First`] | first-fit: the lowest-numbered domain with room | Johnson, "Near-optimal bin packing algorithms", MIT 1973 |
//! | [`Fit::Next`] | next-fit, cyclic: the search starts at the domain that took the previous placement | Johnson 1973 (bins that free space cannot be "closed", so the scan wraps around) |
//! | [`Fit::Best`] | best-fit: the domain the [`Score`] likes most | Johnson 1973 for one dimension; scores below for vectors |
//! | [`Fit::Worst`] | worst-fit: the domain the [`Score`] likes least | Johnson 1973 |
//! | [`BatchFit::FirstFitDecreasing`] / [`BatchFit::BestFitDecreasing`] | sort a batch by decreasing size, then first- / best-fit | Johnson 1973; for vectors, sizes as in Panigrahy et al. 2011 ([`Packer::size`]) |
//! | [`Score::DotProduct`] | alignment of demand and free capacity | Grandl et al., "Multi-resource packing for cluster schedulers" (Tetris), SIGCOMM 2014 |
//! | [`Score::L2Residual`] | L2 norm of the normalised free capacity left | Panigrahy et al., "Heuristics for Vector Bin Packing", Microsoft Research 2011 |
//! | [`Score::MostAllocated`], [`Score::LeastAllocated`], [`Score::BalancedAllocation`] | Kubernetes node scores | `pkg/scheduler/framework/plugins/noderesources/` |
//! | [`Lookahead`] | best pick among the first K waiters, with a bound on overtaking the head | this crate; the bound is proven in [`Lookahead`]'s documentation |
//! | [`Packer::fragmentation`], [`Packer::plan_defrag`] | stranded free capacity; greedy moves of not-yet-started placements | this crate, after the "stranded resources" of Tetris §3 and Verma et al., "Large-scale cluster management at Google with Borg", EuroSys 2015 §5 |
//!
//! Scores, sizes and ratios are integers: shares of a capacity are parts per
//! million (as [`Ppm`](crate::Ppm)), products of shares are in ppm² (`u64`, at most
//! 10^13 for ten dimensions), and standard deviations come from an integer
//! square root. No decision depends on floating point.
//!
//! # Tracked dimensions and what a placement charges
//!
//! A domain *tracks* the dimensions set in its capacity; requests in other
//! dimensions are placed there without accounting (as in the
//! [`Tracker`](crate::Tracker)). A placement charges its request's amounts in
//! the tracked dimensions of its domain. The set of tracked dimensions is fixed
//! when the domain is made ([`Packer::set_capacity`] may change amounts, not
//! the set), so what a placement charged can always be recomputed and given
//! back exactly.
//!
//! # Why the books balance and nothing new lands on a full domain
//!
//! Fix a domain `i` and a tracked dimension `d`; write `U` for `used[i][d]`
//! and `C` for its capacity.
//!
//! 1. *Exact books.* `U` changes only when a placement is charged
//!    ([`Packer::place`], [`Packer::place_on`], [`Packer::place_batch`],
//!    [`Packer::place_from`], a defragmentation move into `i`) or given back
//!    ([`Packer::release`], a move out of `i`, a rolled-back move). Each adds or
//!    subtracts exactly the placement's amount in `d`, and the token that
//!    records the amount is created by the charge and consumed (or re-targeted)
//!    by the give-back. `Placement` is neither `Clone` nor `Copy`, so a token
//!    cannot be released twice. Hence `U` equals the sum of the live
//!    placements on `i`, and releasing all of them leaves `U = 0`.
//! 2. *No over-commitment by placing.* A positive amount `r` is charged only
//!    when `U + r <= C`. A zero amount needs nothing and changes nothing.
//!    Releases only lower `U`. So `U <= C` holds after every operation except a
//!    capacity cut ([`Packer::set_capacity`]), which may leave `U > C`; from
//!    then on every request with a positive amount in `d` is refused by `i`
//!    until releases bring `U + r` under the new `C`.
//! 3. *No overflow.* By (2), every charge leaves `U <= C <= MAX_AMOUNT = 2^60`,
//!    and a cut does not raise `U`, so `U <= 2^60` always. Sums of two
//!    amounts fit a `u64`, and every difference used as a signed value fits an
//!    `i64`. Arithmetic is checked or saturating anyway.
//!
//! A release is checked against the books: a token whose domain does not
//! exist, or whose amounts exceed what its domain holds (a token of another
//! packer), is handed back unchanged instead of corrupting them.
//!
//! # Examples
//!
//! ```
//! use respool_core::packer::{ArrayPacker, Domain, Fit, PlaceError, Score};
//! use respool_core::{Dim, Resources};
//!
//! let node = Resources::new().with(Dim::Cpu, 8_000)?.with(Dim::Memory, 16 << 30)?;
//! let mut packer: ArrayPacker<2> =
//!     ArrayPacker::new([Domain::new(node), Domain::new(node)], Fit::Best(Score::DotProduct));
//!
//! let link = Resources::new().with(Dim::Cpu, 1_000)?.with(Dim::Memory, 10 << 30)?;
//! let a = packer.place(&link)?;
//! let b = packer.place(&link)?;
//! assert_ne!(a.domain(), b.domain()); // 20 GiB do not fit one node
//! match packer.place(&link) {
//!     Err(PlaceError::NoRoom { shortfall, .. }) => assert_eq!(shortfall.by, 4 << 30),
//!     other => panic!("{other:?}"),
//! }
//! packer.release(a).unwrap();
//! packer.release(b).unwrap();
//! assert!(packer.is_idle());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::resource::{Dim, DimSet, MAX_AMOUNT, PerDim, Resources, Shortfall};

pub mod batch;
pub mod defrag;
pub mod lookahead;
pub mod score;

pub use batch::{BatchError, BatchFit};
pub use defrag::{DefragConfig, DefragError, DefragPlan, Move};
pub use lookahead::{Choice, Lookahead};
pub use score::{
    Score, balanced_allocation, dot_product, l2_residual, l2_residual_squared, least_allocated,
    most_allocated,
};

/// One placement domain (a bin): its capacity and what is placed on it.
///
/// Built empty by [`Domain::new`]; only a [`Packer`] changes what is placed.
#[derive(Debug, PartialEq, Eq)]
pub struct Domain {
    /// The capacity; its set dimensions are the tracked ones.
    capacity: Resources,
    /// Sum of the live placements' amounts, per tracked dimension (zero elsewhere).
    used: PerDim<u64>,
    /// Number of live placements.
    placements: usize,
}

/// Converts an amount to `i64` (amounts are at most [`MAX_AMOUNT`] = 2^60).
#[inline]
fn signed(amount: u64) -> i64 {
    i64::try_from(amount.min(MAX_AMOUNT)).unwrap_or(i64::MAX)
}

impl Domain {
    /// An empty domain with `capacity` (its set dimensions are tracked).
    #[must_use]
    pub const fn new(capacity: Resources) -> Domain {
        Domain {
            capacity,
            used: PerDim([0; Dim::COUNT]),
            placements: 0,
        }
    }

    /// The capacity.
    #[must_use]
    pub const fn capacity(&self) -> &Resources {
        &self.capacity
    }

    /// The tracked dimensions (those set in the capacity).
    #[must_use]
    pub const fn tracked(&self) -> DimSet {
        self.capacity.dims()
    }

    /// What the live placements hold, in every tracked dimension.
    #[must_use]
    pub fn used(&self) -> Resources {
        self.tracked()
            .iter()
            .fold(Resources::NONE, |r, d| r.with_saturating(d, self.used[d]))
    }

    /// What the live placements hold in `dim` (zero when untracked).
    #[must_use]
    pub fn used_in(&self, dim: Dim) -> u64 {
        self.used[dim]
    }

    /// Capacity minus use, floored at zero, in every tracked dimension.
    #[must_use]
    pub fn free(&self) -> Resources {
        self.tracked().iter().fold(Resources::NONE, |r, d| {
            r.with_saturating(d, self.free_in(d))
        })
    }

    /// Capacity minus use in `dim`, floored at zero (zero when untracked).
    #[must_use]
    pub fn free_in(&self, dim: Dim) -> u64 {
        self.capacity.amount(dim).saturating_sub(self.used[dim])
    }

    /// Number of live placements.
    #[must_use]
    pub const fn placements(&self) -> usize {
        self.placements
    }

    /// Whether nothing is placed here.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.placements == 0
    }

    /// Whether some tracked dimension holds more than its capacity (possible
    /// only after a capacity cut).
    #[must_use]
    pub fn is_over_capacity(&self) -> bool {
        self.tracked()
            .iter()
            .any(|d| self.used[d] > self.capacity.amount(d))
    }

    /// Whether `request` fits now: every positive amount in a tracked
    /// dimension fits in what is free there.
    #[must_use]
    #[inline]
    pub fn fits(&self, request: &Resources) -> bool {
        request
            .dims()
            .intersection(self.capacity.dims())
            .iter()
            .all(|d| {
                let r = request.amount(d);
                r == 0 || self.used[d].saturating_add(r) <= self.capacity.amount(d)
            })
    }

    /// Where `request` does not fit now: the first tracked dimension (in index
    /// order) with a positive amount that is larger than what is free. An
    /// over-committed dimension reports `available: 0` and counts the excess
    /// in `by`. `None` exactly when [`Domain::fits`] is true.
    #[must_use]
    pub fn shortfall(&self, request: &Resources) -> Option<Shortfall> {
        request
            .dims()
            .intersection(self.capacity.dims())
            .iter()
            .find_map(|d| {
                let r = request.amount(d);
                if r == 0 {
                    return None;
                }
                let available =
                    signed(self.capacity.amount(d)).saturating_sub(signed(self.used[d]));
                Shortfall::check_signed(d, r, available)
            })
    }

    /// Where `request` would not fit even with nothing placed here.
    #[must_use]
    pub fn shortfall_when_empty(&self, request: &Resources) -> Option<Shortfall> {
        request.first_shortfall(&self.capacity)
    }

    /// Charges `request` (its tracked part). The caller checked that it fits.
    fn charge(&mut self, request: &Resources) {
        for d in request.dims().intersection(self.capacity.dims()) {
            self.used[d] = self.used[d].saturating_add(request.amount(d));
        }
        self.placements = self.placements.saturating_add(1);
    }

    /// Gives back what `request` charged; `false`, with nothing changed, when
    /// the books hold less than that (the request was not charged here).
    fn uncharge(&mut self, request: &Resources) -> bool {
        let tracked = request.dims().intersection(self.capacity.dims());
        if self.placements == 0 || tracked.iter().any(|d| self.used[d] < request.amount(d)) {
            return false;
        }
        for d in tracked {
            self.used[d] = self.used[d].saturating_sub(request.amount(d));
        }
        self.placements = self.placements.saturating_sub(1);
        true
    }

    /// This domain's share of `by` in `dim`, for ranking shortfalls (a
    /// shortfall against a zero capacity ranks last).
    fn shortfall_share(&self, s: &Shortfall) -> u64 {
        match self.capacity.amount(s.dim) {
            0 => u64::MAX,
            cap => score::share(s.by, cap),
        }
    }
}

/// How [`Packer::place`] picks a domain among those with room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fit {
    /// The lowest-numbered domain with room.
    First,
    /// The first domain with room, searching cyclically from the domain that
    /// took the previous placement.
    Next,
    /// The domain with the highest [`Score::key`] (ties: the lowest index).
    /// `Best(Score::MostAllocated)` is classic best-fit (fullest after placing).
    Best(Score),
    /// The domain with the lowest [`Score::key`] (ties: the lowest index).
    /// `Worst(Score::MostAllocated)` is classic worst-fit (emptiest after placing).
    Worst(Score),
}

impl Fit {
    /// Every fit with every score, in a stable order (for tests and the simulator).
    pub const ALL: [Fit; 12] = [
        Fit::First,
        Fit::Next,
        Fit::Best(Score::DotProduct),
        Fit::Best(Score::L2Residual),
        Fit::Best(Score::MostAllocated),
        Fit::Best(Score::LeastAllocated),
        Fit::Best(Score::BalancedAllocation),
        Fit::Worst(Score::DotProduct),
        Fit::Worst(Score::L2Residual),
        Fit::Worst(Score::MostAllocated),
        Fit::Worst(Score::LeastAllocated),
        Fit::Worst(Score::BalancedAllocation),
    ];
}

impl fmt::Display for Fit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fit::First => f.write_str("first-fit"),
            Fit::Next => f.write_str("next-fit"),
            Fit::Best(s) => write!(f, "best-fit({s})"),
            Fit::Worst(s) => write!(f, "worst-fit({s})"),
        }
    }
}

/// Proof that a request was placed: its domain and the request it charged.
///
/// Give it back with [`Packer::release`], which consumes it. It is neither
/// `Clone` nor `Copy`, so the same placement cannot be released twice.
/// Dropping it without releasing leaves its amounts charged for good.
#[must_use = "a placement holds capacity until it is given to Packer::release"]
#[derive(Debug, PartialEq, Eq)]
pub struct Placement {
    /// Index of the domain it is charged to.
    domain: usize,
    /// The request as given (only the domain's tracked dimensions are charged).
    request: Resources,
}

impl Placement {
    /// Index of the domain the request was placed on.
    #[must_use]
    pub const fn domain(&self) -> usize {
        self.domain
    }

    /// The request as it was given to the packer.
    #[must_use]
    pub const fn request(&self) -> &Resources {
        &self.request
    }
}

/// Why a request could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlaceError {
    /// The packer has no domains.
    NoDomains,
    /// The domain index does not exist ([`Packer::place_on`]).
    NoSuchDomain {
        /// The index that was given.
        domain: usize,
        /// How many domains there are.
        domains: usize,
    },
    /// The request fits no domain even when it is empty: it can never be
    /// placed with the present capacities. Reported against the domain where
    /// the shortfall is the smallest share of that dimension's capacity.
    NeverFits {
        /// The closest domain.
        domain: usize,
        /// Where and by how much it does not fit there when empty.
        shortfall: Shortfall,
    },
    /// The request fits some domain when empty, but none now. Reported
    /// against the domain (among those it could fit) where the shortfall is
    /// the smallest share of that dimension's capacity.
    NoRoom {
        /// The closest domain.
        domain: usize,
        /// Where and by how much it does not fit there now.
        shortfall: Shortfall,
    },
}

impl PlaceError {
    /// The shortfall behind the error, where there is one.
    #[must_use]
    pub const fn shortfall(&self) -> Option<Shortfall> {
        match *self {
            PlaceError::NeverFits { shortfall, .. } | PlaceError::NoRoom { shortfall, .. } => {
                Some(shortfall)
            }
            PlaceError::NoDomains | PlaceError::NoSuchDomain { .. } => None,
        }
    }
}

impl fmt::Display for PlaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaceError::NoDomains => {
                f.write_str("the packer has no placement domains: give it at least one")
            }
            PlaceError::NoSuchDomain { domain, domains } => write!(
                f,
                "domain {domain} does not exist (there are {domains} domains)"
            ),
            PlaceError::NeverFits { domain, shortfall } => write!(
                f,
                "request fits no domain even when empty (closest: domain {domain}, where \
                 {shortfall}): lower the request or raise that domain's capacity"
            ),
            PlaceError::NoRoom { domain, shortfall } => write!(
                f,
                "no domain has room now (closest: domain {domain}, where {shortfall}): \
                 wait for a release"
            ),
        }
    }
}

impl core::error::Error for PlaceError {}

/// Why a capacity change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapacityError {
    /// The domain index does not exist.
    NoSuchDomain {
        /// The index that was given.
        domain: usize,
        /// How many domains there are.
        domains: usize,
    },
    /// The new capacity tracks other dimensions than the domain does.
    TrackedDimsChanged {
        /// The domain.
        domain: usize,
        /// The dimensions it tracks.
        tracked: DimSet,
        /// The dimensions set in the new capacity.
        given: DimSet,
    },
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapacityError::NoSuchDomain { domain, domains } => write!(
                f,
                "domain {domain} does not exist (there are {domains} domains)"
            ),
            CapacityError::TrackedDimsChanged {
                domain,
                tracked,
                given,
            } => write!(
                f,
                "domain {domain} tracks {tracked:?} but the new capacity sets {given:?}: \
                 a capacity change may change amounts, not which dimensions are tracked"
            ),
        }
    }
}

impl core::error::Error for CapacityError {}

/// Books of placements over a set of domains. See the [module documentation](self).
///
/// The domains live in `S`: an array (see [`ArrayPacker`]) or any storage the
/// caller sizes at run time (a boxed slice, say). Every method takes
/// `&self` or `&mut self`: the std runtime keeps the packer under a mutex.
#[derive(Debug)]
pub struct Packer<S> {
    /// The domains, in index order.
    domains: S,
    /// How `place` picks a domain.
    fit: Fit,
    /// The domain that took the previous placement (where next-fit starts).
    cursor: usize,
}

/// A [`Packer`] over an array of `D` domains.
pub type ArrayPacker<const D: usize> = Packer<[Domain; D]>;

impl<S> Packer<S>
where
    S: AsRef<[Domain]> + AsMut<[Domain]>,
{
    /// A packer over `domains`, picking domains with `fit`. Anything the
    /// domains held is cleared: every domain starts empty.
    pub fn new(mut domains: S, fit: Fit) -> Self {
        for d in domains.as_mut() {
            d.used = PerDim([0; Dim::COUNT]);
            d.placements = 0;
        }
        Packer {
            domains,
            fit,
            cursor: 0,
        }
    }

    /// The domains, in index order.
    #[must_use]
    pub fn domains(&self) -> &[Domain] {
        self.domains.as_ref()
    }

    /// Domain `index`, if it exists.
    #[must_use]
    pub fn domain(&self, index: usize) -> Option<&Domain> {
        self.domains.as_ref().get(index)
    }

    /// Number of domains.
    #[must_use]
    pub fn len(&self) -> usize {
        self.domains.as_ref().len()
    }

    /// Whether there are no domains.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.domains.as_ref().is_empty()
    }

    /// Whether no placement is live on any domain.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.domains.as_ref().iter().all(Domain::is_empty)
    }

    /// The fit `place` uses.
    #[must_use]
    pub const fn fit(&self) -> Fit {
        self.fit
    }

    /// Changes the fit `place` uses.
    pub fn set_fit(&mut self, fit: Fit) {
        self.fit = fit;
    }

    /// Changes the capacity of domain `index`. A cut below what is placed is
    /// allowed: live placements stay, and nothing new with a positive amount
    /// in the over-committed dimension is placed there until it fits again.
    ///
    /// # Errors
    ///
    /// [`CapacityError::NoSuchDomain`], or
    /// [`CapacityError::TrackedDimsChanged`] when `capacity` sets other
    /// dimensions than the domain tracks. Nothing changes on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::packer::{ArrayPacker, Domain, Fit};
    /// use respool_core::{Dim, Resources};
    /// let mem = |n| Resources::new().with(Dim::Memory, n);
    /// let mut p: ArrayPacker<1> = ArrayPacker::new([Domain::new(mem(100)?)], Fit::First);
    /// let x = p.place(&mem(80)?)?;
    /// p.set_capacity(0, mem(50)?)?; // cut below what is placed
    /// assert!(p.domains()[0].is_over_capacity());
    /// assert!(p.place(&mem(1)?).is_err());
    /// p.release(x).unwrap();
    /// assert!(p.place(&mem(50)?).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_capacity(&mut self, index: usize, capacity: Resources) -> Result<(), CapacityError> {
        let domains = self.domains.as_mut().len();
        let Some(d) = self.domains.as_mut().get_mut(index) else {
            return Err(CapacityError::NoSuchDomain {
                domain: index,
                domains,
            });
        };
        if capacity.dims() != d.tracked() {
            return Err(CapacityError::TrackedDimsChanged {
                domain: index,
                tracked: d.tracked(),
                given: capacity.dims(),
            });
        }
        d.capacity = capacity;
        Ok(())
    }

    /// The domain `place` would pick for `request`, without placing it.
    ///
    /// # Errors
    ///
    /// As [`Packer::place`].
    pub fn select(&self, request: &Resources) -> Result<usize, PlaceError> {
        match self.select_with(request, self.fit) {
            Some(i) => Ok(i),
            None => Err(self.explain(request)),
        }
    }

    /// Folds every domain's capacity into one value per dimension with `f`
    /// (starting from zero; dimensions no domain tracks stay zero).
    fn fold_capacity(&self, f: impl Fn(u64, u64) -> u64) -> PerDim<u64> {
        let mut acc = PerDim([0u64; Dim::COUNT]);
        for d in self.domains() {
            for (dim, c) in d.capacity().iter() {
                acc[dim] = f(acc[dim], c);
            }
        }
        acc
    }

    /// Places `request` on the domain the packer's [`Fit`] picks.
    ///
    /// # Errors
    ///
    /// [`PlaceError::NoDomains`]; [`PlaceError::NeverFits`] when no domain
    /// could hold it even empty; [`PlaceError::NoRoom`] when none can now.
    /// Nothing changes on error.
    pub fn place(&mut self, request: &Resources) -> Result<Placement, PlaceError> {
        let index = self.select(request)?;
        self.commit(index, request)
    }

    /// Places `request` on domain `index` (a task pinned to a GPU, say).
    ///
    /// # Errors
    ///
    /// [`PlaceError::NoSuchDomain`]; [`PlaceError::NeverFits`] when it does
    /// not fit that domain even empty; [`PlaceError::NoRoom`] when it does
    /// not fit there now. Nothing changes on error.
    pub fn place_on(&mut self, index: usize, request: &Resources) -> Result<Placement, PlaceError> {
        let domains = self.len();
        let Some(d) = self.domains.as_ref().get(index) else {
            return Err(PlaceError::NoSuchDomain {
                domain: index,
                domains,
            });
        };
        if let Some(shortfall) = d.shortfall_when_empty(request) {
            return Err(PlaceError::NeverFits {
                domain: index,
                shortfall,
            });
        }
        if let Some(shortfall) = d.shortfall(request) {
            return Err(PlaceError::NoRoom {
                domain: index,
                shortfall,
            });
        }
        self.commit(index, request)
    }

    /// Gives back what `placement` charged.
    ///
    /// # Errors
    ///
    /// Hands `placement` back, with the books unchanged, when its domain does
    /// not exist or holds less than it charged: it was made by another packer.
    pub fn release(&mut self, placement: Placement) -> Result<(), Placement> {
        let domain = self.domains.as_mut().get_mut(placement.domain);
        if domain.is_some_and(|d| d.uncharge(&placement.request)) {
            Ok(())
        } else {
            Err(placement)
        }
    }

    /// Charges `request` to domain `index`, which the caller found to have room.
    fn commit(&mut self, index: usize, request: &Resources) -> Result<Placement, PlaceError> {
        let domains = self.len();
        let Some(d) = self.domains.as_mut().get_mut(index) else {
            return Err(PlaceError::NoSuchDomain {
                domain: index,
                domains,
            });
        };
        d.charge(request);
        self.cursor = index;
        Ok(Placement {
            domain: index,
            request: *request,
        })
    }

    /// The domain `fit` picks for `request`, if any has room.
    fn select_with(&self, request: &Resources, fit: Fit) -> Option<usize> {
        let domains = self.domains.as_ref();
        match fit {
            Fit::First => domains.iter().position(|d| d.fits(request)),
            Fit::Next => {
                let start = if self.cursor < domains.len() {
                    self.cursor
                } else {
                    0
                };
                let after = domains.iter().enumerate().skip(start);
                let before = domains.iter().enumerate().take(start);
                after
                    .chain(before)
                    .find(|(_, d)| d.fits(request))
                    .map(|(i, _)| i)
            }
            Fit::Best(score) => extreme(domains, request, score, true).map(|(i, _)| i),
            Fit::Worst(score) => extreme(domains, request, score, false).map(|(i, _)| i),
        }
    }

    /// The error for a request that no domain has room for now.
    fn explain(&self, request: &Resources) -> PlaceError {
        let mut now: Option<(u64, usize, Shortfall)> = None;
        let mut never: Option<(u64, usize, Shortfall)> = None;
        let closer = |best: &Option<(u64, usize, Shortfall)>, share: u64| {
            best.is_none_or(|(b, _, _)| share < b)
        };
        for (i, d) in self.domains.as_ref().iter().enumerate() {
            if let Some(s) = d.shortfall_when_empty(request) {
                let share = d.shortfall_share(&s);
                if closer(&never, share) {
                    never = Some((share, i, s));
                }
            } else if let Some(s) = d.shortfall(request) {
                let share = d.shortfall_share(&s);
                if closer(&now, share) {
                    now = Some((share, i, s));
                }
            }
        }
        match (now, never) {
            (Some((_, domain, shortfall)), _) => PlaceError::NoRoom { domain, shortfall },
            (None, Some((_, domain, shortfall))) => PlaceError::NeverFits { domain, shortfall },
            // Unreachable from `select`: `fits` and `shortfall` agree on every
            // domain, so a request no domain fits has a shortfall somewhere.
            // With no domains at all, this is the honest answer.
            (None, None) => PlaceError::NoDomains,
        }
    }
}

/// The fitting domain with the highest (or lowest) score key, and the key.
/// Ties go to the lowest index.
fn extreme(
    domains: &[Domain],
    request: &Resources,
    score: Score,
    highest: bool,
) -> Option<(usize, u64)> {
    let mut best: Option<(usize, u64)> = None;
    for (i, d) in domains.iter().enumerate() {
        if !d.fits(request) {
            continue;
        }
        let key = score.key(d, request);
        let better = match best {
            None => true,
            Some((_, b)) if highest => key > b,
            Some((_, b)) => key < b,
        };
        if better {
            best = Some((i, key));
        }
    }
    best
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    pub(crate) fn r(pairs: &[(Dim, u64)]) -> Resources {
        Resources::from_pairs(pairs).unwrap()
    }
    pub(crate) fn cm(cpu: u64, mem: u64) -> Resources {
        r(&[(Dim::Cpu, cpu), (Dim::Memory, mem)])
    }
    pub(crate) fn packer(caps: &[Resources], fit: Fit) -> Packer<Vec<Domain>> {
        Packer::new(caps.iter().map(|&c| Domain::new(c)).collect(), fit)
    }

    #[test]
    fn online_fits_pick_the_expected_domain() {
        // Domains: cpu 100 each, memory 100; preloaded to cpu 80, 20, 50, 90
        // and memory 10. Request: cpu 25, memory 10 (fits domains 1 and 2).
        // After placing: domain 1 (45%, 20%), domain 2 (75%, 20%).
        // (fit, expected domain)
        let table = [
            (Fit::First, 1),
            (Fit::Best(Score::MostAllocated), 2), // fullest after placing
            (Fit::Worst(Score::MostAllocated), 1), // emptiest after placing
            (Fit::Best(Score::LeastAllocated), 1),
            (Fit::Worst(Score::LeastAllocated), 2),
            (Fit::Best(Score::L2Residual), 2), // smallest residual
            (Fit::Worst(Score::L2Residual), 1),
            (Fit::Best(Score::DotProduct), 1), // most free where it needs
            (Fit::Worst(Score::DotProduct), 2),
        ];
        for (fit, want) in table {
            let mut p = packer(&[cm(100, 100); 4], Fit::First);
            let held: Vec<Placement> = [80, 20, 50, 90]
                .iter()
                .enumerate()
                .map(|(i, &c)| p.place_on(i, &cm(c, 10)).unwrap())
                .collect();
            p.set_fit(fit);
            let got = p.place(&cm(25, 10)).unwrap();
            assert_eq!(got.domain(), want, "{fit}");
            p.release(got).unwrap();
            for h in held {
                p.release(h).unwrap();
            }
            assert!(p.is_idle());
        }
    }

    #[test]
    fn next_fit_continues_from_the_last_domain() {
        let mut p = packer(&[cm(100, 100); 3], Fit::Next);
        // (request cpu, expected domain)
        // The 10 stays on domain 2 although domain 0 (first-fit's pick) has 10
        // free; the 40 wraps around to domain 1.
        let table = [(60, 0), (30, 0), (60, 1), (60, 2), (10, 2), (40, 1)];
        let mut held = Vec::new();
        for (cpu, want) in table {
            let x = p.place(&cm(cpu, 0)).unwrap();
            assert_eq!(x.domain(), want, "cpu {cpu}");
            held.push(x);
        }
        // Domain 1 is now full; the search starts there and moves on to 2.
        let x = p.place(&cm(30, 0)).unwrap();
        assert_eq!(x.domain(), 2);
        held.push(x);
        for h in held {
            p.release(h).unwrap();
        }
        assert!(p.is_idle());
    }

    #[test]
    fn errors_say_where_and_by_how_much() {
        let caps = [cm(100, 1000), cm(200, 500)];
        let mut p = packer(&caps, Fit::First);
        // Never fits: memory 1500 is 500 over domain 0 (50%) and 1000 over
        // domain 1 (200%): domain 0 is closest.
        assert_eq!(
            p.place(&cm(10, 1500)),
            Err(PlaceError::NeverFits {
                domain: 0,
                shortfall: Shortfall {
                    dim: Dim::Memory,
                    requested: 1500,
                    available: 1000,
                    by: 500
                }
            })
        );
        // Cpu 150 fits only domain 1 (empty); fill it and ask again.
        let a = p.place(&cm(150, 0)).unwrap();
        assert_eq!(a.domain(), 1);
        match p.place(&cm(150, 0)) {
            Err(PlaceError::NoRoom { domain, shortfall }) => {
                assert_eq!((domain, shortfall.dim, shortfall.by), (1, Dim::Cpu, 100));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.place_on(5, &cm(1, 1)),
            Err(PlaceError::NoSuchDomain {
                domain: 5,
                domains: 2
            })
        );
        let mut none = packer(&[], Fit::First);
        assert_eq!(none.place(&cm(1, 1)), Err(PlaceError::NoDomains));
        let msg = std::format!("{}", p.place(&cm(10, 1500)).unwrap_err());
        assert!(msg.contains("memory needs 1500B"), "{msg}");
        p.release(a).unwrap();
    }

    #[test]
    fn untracked_dims_and_zero_amounts_need_nothing() {
        let mut p = packer(&[r(&[(Dim::Memory, 10), (Dim::Gpu, 0)])], Fit::First);
        // Iops is untracked; gpu 0 of 0 fits; gpu 1 of 0 never fits.
        let a = p
            .place(&r(&[(Dim::Iops, MAX_AMOUNT), (Dim::Gpu, 0)]))
            .unwrap();
        assert_eq!(p.domains()[0].used(), r(&[(Dim::Memory, 0), (Dim::Gpu, 0)]));
        assert!(matches!(
            p.place(&r(&[(Dim::Gpu, 1)])),
            Err(PlaceError::NeverFits { .. })
        ));
        p.release(a).unwrap();
        assert!(p.is_idle());
    }

    #[test]
    fn capacity_cut_blocks_new_work_until_it_fits() {
        let mut p = packer(&[cm(100, 100), cm(100, 100)], Fit::First);
        let a = p.place(&cm(80, 10)).unwrap();
        assert_eq!(a.domain(), 0);
        p.set_capacity(0, cm(50, 100)).unwrap();
        assert!(p.domains()[0].is_over_capacity());
        // A positive cpu amount goes elsewhere; zero cpu may still land on 0.
        assert_eq!(p.place(&cm(1, 1)).unwrap().domain(), 1);
        let z = p.place(&cm(0, 1)).unwrap();
        assert_eq!(z.domain(), 0);
        match p.place_on(0, &cm(10, 0)) {
            Err(PlaceError::NoRoom { shortfall, .. }) => {
                assert_eq!((shortfall.available, shortfall.by), (0, 40));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.set_capacity(0, r(&[(Dim::Cpu, 1)])),
            Err(CapacityError::TrackedDimsChanged {
                domain: 0,
                tracked: cm(0, 0).dims(),
                given: DimSet::single(Dim::Cpu)
            })
        );
        assert!(matches!(
            p.set_capacity(9, cm(1, 1)),
            Err(CapacityError::NoSuchDomain { domain: 9, .. })
        ));
        p.release(a).unwrap();
        assert_eq!(p.place_on(0, &cm(50, 0)).unwrap().domain(), 0);
    }

    #[test]
    fn release_refuses_foreign_placements() {
        let mut p = packer(&[cm(100, 100)], Fit::First);
        let mut q = packer(&[cm(100, 100), cm(100, 100)], Fit::First);
        let big = q.place(&cm(90, 0)).unwrap();
        let other = q.place(&cm(20, 0)).unwrap();
        assert_eq!(other.domain(), 1);
        let small = p.place(&cm(10, 0)).unwrap();
        // Domain 1 does not exist in p; 90 > 10 held in p's domain 0.
        let other = p.release(other).unwrap_err();
        let big = p.release(big).unwrap_err();
        assert_eq!(p.domains()[0].used_in(Dim::Cpu), 10);
        p.release(small).unwrap();
        q.release(big).unwrap();
        q.release(other).unwrap();
        assert!(p.is_idle() && q.is_idle());
    }
}
