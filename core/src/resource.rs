//! The resource model: dimensions, units, resource vectors and fixed-point ratios.
//!
//! A [`Resources`] value is a vector over [`Dim::COUNT`] dimensions. Every
//! dimension is either *set* (the task needs exactly this amount, which may be
//! zero) or *unset* ("no requirement": nothing declared, so a predictor or a
//! default may fill it in later). The distinction matters: a task that declares
//! `memory = 0` says it allocates nothing, a task that declares nothing about
//! memory asks respool to estimate it.
//!
//! Used as a **capacity**, an unset dimension is *untracked*: the pool does not
//! limit it, and requests in that dimension are admitted without accounting. A
//! set capacity of zero is a real limit: nothing that needs a positive amount of
//! that dimension can ever be admitted, and such a request is refused at once
//! (see [`crate::admission`]).
//!
//! # Units
//!
//! All amounts are `u64` integers in the unit of their dimension, never
//! floating point:
//!
//! | dimension          | unit                              | example                  |
//! |--------------------|-----------------------------------|--------------------------|
//! | [`Dim::Cpu`]       | millicores (1000 = one core)      | `250` = a quarter core   |
//! | [`Dim::Memory`]    | bytes                             | `536_870_912` = 512 MiB  |
//! | [`Dim::Iops`]      | I/O operations per second         | `2_000`                  |
//! | [`Dim::Network`]   | bytes per second                  | `12_500_000` = 100 Mbit/s|
//! | [`Dim::Gpu`]       | whole GPU devices                 | `1`                      |
//! | [`Dim::GpuMemory`] | bytes of GPU memory               | `8 << 30` = 8 GiB        |
//! | [`Dim::User0`]..[`Dim::User3`] | plain counts (licences, connections) | `1` |
//!
//! Every amount is at most [`MAX_AMOUNT`] (2^60), which leaves room for sums
//! and differences of any two amounts to be computed without overflow.
//!
//! # Fixed point
//!
//! Ratios (utilisation, dominant share, scores) are [`Ppm`] values: parts per
//! million in a `u32`, computed with 128-bit intermediates, so no scheduling
//! decision depends on floating point rounding.

use core::fmt;

/// One value per [`Dim`], indexed by dimension.
///
/// Indexing by a `Dim` cannot go out of bounds: the array has exactly
/// [`Dim::COUNT`] elements and every discriminant is below that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PerDim<T>(pub [T; Dim::COUNT]);

impl<T> core::ops::Index<Dim> for PerDim<T> {
    type Output = T;
    #[inline]
    fn index(&self, dim: Dim) -> &T {
        // `dim as usize < Dim::COUNT` for every variant, so this cannot panic
        // (and the optimiser removes the bounds check: see ci/nostd.sh).
        #[allow(clippy::indexing_slicing)]
        &self.0[dim.index()]
    }
}

impl<T> core::ops::IndexMut<Dim> for PerDim<T> {
    #[inline]
    fn index_mut(&mut self, dim: Dim) -> &mut T {
        // See `Index`: in bounds for every variant.
        #[allow(clippy::indexing_slicing)]
        &mut self.0[dim.index()]
    }
}

impl<T> PerDim<T> {
    /// Builds the array by calling `f` for each dimension, in index order.
    #[must_use]
    pub fn from_fn(mut f: impl FnMut(Dim) -> T) -> PerDim<T> {
        PerDim(Dim::ALL.map(&mut f))
    }
}

/// The largest amount any single dimension may hold: 2^60.
///
/// That is 1 EiB of memory, or about 1.15 * 10^15 cores. Keeping amounts under
/// 2^60 guarantees that the tracker's signed available counters can absorb any
/// sequence of capacity changes without wrapping.
pub const MAX_AMOUNT: u64 = 1 << 60;

/// Number of user-defined dimensions ([`Dim::User0`] to [`Dim::User3`]).
pub const USER_DIMS: usize = 4;

/// One dimension of the resource vector.
///
/// The discriminant is the dimension's index in every array of
/// [`Dim::COUNT`] elements used by the crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Dim {
    /// CPU time, in millicores (1000 millicores = one core busy all the time).
    Cpu = 0,
    /// Main memory, in bytes.
    Memory = 1,
    /// Storage I/O, in operations per second.
    Iops = 2,
    /// Network bandwidth, in bytes per second.
    Network = 3,
    /// Whole GPU devices.
    Gpu = 4,
    /// GPU memory, in bytes.
    GpuMemory = 5,
    /// First user-defined dimension (a plain count).
    User0 = 6,
    /// Second user-defined dimension (a plain count).
    User1 = 7,
    /// Third user-defined dimension (a plain count).
    User2 = 8,
    /// Fourth user-defined dimension (a plain count).
    User3 = 9,
}

/// The unit an amount of a [`Dim`] is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Thousandths of a CPU core.
    Millicores,
    /// Bytes.
    Bytes,
    /// Operations per second.
    OpsPerSecond,
    /// Bytes per second.
    BytesPerSecond,
    /// Whole devices.
    Devices,
    /// A plain count.
    Count,
}

impl Unit {
    /// A short symbol for the unit, as printed after amounts (`"m"`, `"B"`, ...).
    #[must_use]
    pub const fn symbol(self) -> &'static str {
        match self {
            Unit::Millicores => "m",
            Unit::Bytes => "B",
            Unit::OpsPerSecond => "op/s",
            Unit::BytesPerSecond => "B/s",
            Unit::Devices => "dev",
            Unit::Count => "",
        }
    }
}

impl Dim {
    /// Number of dimensions: six standard ones plus [`USER_DIMS`] user-defined.
    pub const COUNT: usize = 10;

    /// Every dimension, in index order.
    pub const ALL: [Dim; Dim::COUNT] = [
        Dim::Cpu,
        Dim::Memory,
        Dim::Iops,
        Dim::Network,
        Dim::Gpu,
        Dim::GpuMemory,
        Dim::User0,
        Dim::User1,
        Dim::User2,
        Dim::User3,
    ];

    /// The dimension's index, in `0..Dim::COUNT`.
    #[must_use]
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The dimension with index `index`, or `None` when `index >= Dim::COUNT`.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::Dim;
    /// assert_eq!(Dim::from_index(1), Some(Dim::Memory));
    /// assert_eq!(Dim::from_index(10), None);
    /// ```
    #[must_use]
    pub const fn from_index(index: usize) -> Option<Dim> {
        Some(match index {
            0 => Dim::Cpu,
            1 => Dim::Memory,
            2 => Dim::Iops,
            3 => Dim::Network,
            4 => Dim::Gpu,
            5 => Dim::GpuMemory,
            6 => Dim::User0,
            7 => Dim::User1,
            8 => Dim::User2,
            9 => Dim::User3,
            _ => return None,
        })
    }

    /// The `n`th user-defined dimension, or `None` when `n >= USER_DIMS`.
    #[must_use]
    pub const fn user(n: usize) -> Option<Dim> {
        if n < USER_DIMS {
            Dim::from_index(Dim::User0.index().saturating_add(n))
        } else {
            None
        }
    }

    /// The dimension's stable lower-case name (`"cpu"`, `"memory"`, `"iops"`,
    /// `"network"`, `"gpu"`, `"gpu_memory"`, `"user0"`..`"user3"`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Dim::Cpu => "cpu",
            Dim::Memory => "memory",
            Dim::Iops => "iops",
            Dim::Network => "network",
            Dim::Gpu => "gpu",
            Dim::GpuMemory => "gpu_memory",
            Dim::User0 => "user0",
            Dim::User1 => "user1",
            Dim::User2 => "user2",
            Dim::User3 => "user3",
        }
    }

    /// Parses a name produced by [`Dim::name`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The unit amounts of this dimension are counted in.
    #[must_use]
    pub const fn unit(self) -> Unit {
        match self {
            Dim::Cpu => Unit::Millicores,
            Dim::Memory | Dim::GpuMemory => Unit::Bytes,
            Dim::Iops => Unit::OpsPerSecond,
            Dim::Network => Unit::BytesPerSecond,
            Dim::Gpu => Unit::Devices,
            Dim::User0 | Dim::User1 | Dim::User2 | Dim::User3 => Unit::Count,
        }
    }

    /// Whether running short of this dimension only slows tasks down (CPU,
    /// IOPS, network: rates, which the kernel shares out) rather than
    /// failing or killing them (memory, GPU memory, devices, counts).
    /// Kubernetes makes the same distinction between compressible and
    /// incompressible resources.
    ///
    /// The std runtime admits a compressible dimension softly by default: a
    /// learned amount gets no safety margin and is bounded by physics and by
    /// the pool, and CPU is bounded by the workers' cores (a worker count
    /// already bounds how many tasks compute at once). The tracker itself
    /// treats every tracked dimension alike: the runtime sets the bound of a
    /// soft dimension as its capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::{Dim, DimSet};
    /// assert!(Dim::Cpu.is_compressible());
    /// assert!(!Dim::Memory.is_compressible());
    /// assert_eq!(DimSet::COMPRESSIBLE.len(), 3);
    /// ```
    #[must_use]
    pub const fn is_compressible(self) -> bool {
        matches!(self, Dim::Cpu | Dim::Iops | Dim::Network)
    }

    /// This dimension's bit in a [`DimSet`].
    #[inline]
    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of dimensions, stored as a bit mask.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DimSet(u16);

impl DimSet {
    /// The empty set.
    pub const EMPTY: DimSet = DimSet(0);
    /// Every dimension.
    pub const ALL: DimSet = DimSet((1 << Dim::COUNT) - 1);
    /// The compressible dimensions (see [`Dim::is_compressible`]): CPU,
    /// IOPS and network.
    pub const COMPRESSIBLE: DimSet = DimSet::EMPTY
        .with(Dim::Cpu)
        .with(Dim::Iops)
        .with(Dim::Network);
    /// The incompressible dimensions: memory, GPU memory, GPUs and the
    /// user-defined counts.
    pub const INCOMPRESSIBLE: DimSet = DimSet(DimSet::ALL.0 & !DimSet::COMPRESSIBLE.0);

    /// The set holding `dim` alone.
    #[must_use]
    pub const fn single(dim: Dim) -> DimSet {
        DimSet(dim.bit())
    }

    /// The raw mask: bit `i` is set when `Dim::from_index(i)` is a member.
    #[must_use]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Builds a set from a raw mask; bits at or above [`Dim::COUNT`] are dropped.
    #[must_use]
    pub const fn from_bits_truncate(bits: u16) -> DimSet {
        DimSet(bits & DimSet::ALL.0)
    }

    /// Whether `dim` is in the set.
    #[must_use]
    #[inline]
    pub const fn contains(self, dim: Dim) -> bool {
        self.0 & dim.bit() != 0
    }

    /// The set with `dim` added.
    #[must_use]
    pub const fn with(self, dim: Dim) -> DimSet {
        DimSet(self.0 | dim.bit())
    }

    /// The set with `dim` removed.
    #[must_use]
    pub const fn without(self, dim: Dim) -> DimSet {
        DimSet(self.0 & !dim.bit())
    }

    /// Members of either set.
    #[must_use]
    pub const fn union(self, other: DimSet) -> DimSet {
        DimSet(self.0 | other.0)
    }

    /// Members of both sets.
    #[must_use]
    pub const fn intersection(self, other: DimSet) -> DimSet {
        DimSet(self.0 & other.0)
    }

    /// Whether the set is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of members.
    #[must_use]
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The members, in index order.
    #[must_use]
    pub const fn iter(self) -> DimSetIter {
        DimSetIter(self.0)
    }
}

impl fmt::Debug for DimSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl IntoIterator for DimSet {
    type Item = Dim;
    type IntoIter = DimSetIter;
    fn into_iter(self) -> DimSetIter {
        self.iter()
    }
}

/// Iterator over the members of a [`DimSet`], in index order.
#[derive(Clone, Debug)]
pub struct DimSetIter(u16);

impl Iterator for DimSetIter {
    type Item = Dim;

    #[inline]
    fn next(&mut self) -> Option<Dim> {
        if self.0 == 0 {
            return None;
        }
        let index = self.0.trailing_zeros() as usize;
        // Clear the lowest set bit. `self.0 != 0`, so the subtraction cannot wrap.
        self.0 &= self.0.wrapping_sub(1);
        Dim::from_index(index)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.count_ones() as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for DimSetIter {}

/// Why a resource vector could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceError {
    /// An amount is larger than [`MAX_AMOUNT`].
    TooLarge {
        /// The offending dimension.
        dim: Dim,
        /// The amount that was given.
        amount: u64,
    },
    /// A dimension index was outside `0..Dim::COUNT`.
    NoSuchDimension {
        /// The index that was given.
        index: usize,
    },
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ResourceError::TooLarge { dim, amount } => write!(
                f,
                "{dim} amount {amount}{} is larger than the maximum {MAX_AMOUNT}",
                dim.unit().symbol()
            ),
            ResourceError::NoSuchDimension { index } => write!(
                f,
                "dimension index {index} does not exist (there are {} dimensions)",
                Dim::COUNT
            ),
        }
    }
}

impl core::error::Error for ResourceError {}

/// A vector of resource amounts, one per [`Dim`], each either set or unset.
///
/// See the [module documentation](self) for units and for what "unset" means in
/// a request and in a capacity.
///
/// # Examples
///
/// ```
/// use respool_core::{Dim, Resources};
///
/// let req = Resources::new()
///     .with(Dim::Cpu, 500)?              // half a core
///     .with(Dim::Memory, 256 << 20)?;    // 256 MiB
/// assert_eq!(req.get(Dim::Memory), Some(256 << 20));
/// assert_eq!(req.get(Dim::Gpu), None);   // no requirement, not zero
///
/// let capacity = Resources::new().with(Dim::Cpu, 2_000)?.with(Dim::Memory, 1 << 30)?;
/// assert!(req.fits_within(&capacity));
/// # Ok::<(), respool_core::ResourceError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resources {
    /// Amount per dimension; zero where unset.
    amounts: PerDim<u64>,
    /// Which dimensions are set.
    set: DimSet,
}

impl Default for Resources {
    fn default() -> Self {
        Resources::NONE
    }
}

impl Resources {
    /// No requirement in any dimension (as a capacity: nothing is tracked).
    pub const NONE: Resources = Resources {
        amounts: PerDim([0; Dim::COUNT]),
        set: DimSet::EMPTY,
    };

    /// Same as [`Resources::NONE`].
    #[must_use]
    pub const fn new() -> Resources {
        Resources::NONE
    }

    /// Returns `self` with `dim` set to `amount`.
    ///
    /// # Errors
    ///
    /// [`ResourceError::TooLarge`] when `amount > MAX_AMOUNT`.
    pub fn with(mut self, dim: Dim, amount: u64) -> Result<Resources, ResourceError> {
        if amount > MAX_AMOUNT {
            return Err(ResourceError::TooLarge { dim, amount });
        }
        self.amounts[dim] = amount;
        self.set = self.set.with(dim);
        Ok(self)
    }

    /// Sets `dim` to `amount` in place.
    ///
    /// # Errors
    ///
    /// [`ResourceError::TooLarge`] when `amount > MAX_AMOUNT`; `self` is then unchanged.
    pub fn set(&mut self, dim: Dim, amount: u64) -> Result<(), ResourceError> {
        *self = self.with(dim, amount)?;
        Ok(())
    }

    /// Sets `dim` to `min(amount, MAX_AMOUNT)`; never fails.
    #[must_use]
    pub fn with_saturating(mut self, dim: Dim, amount: u64) -> Resources {
        self.amounts[dim] = amount.min(MAX_AMOUNT);
        self.set = self.set.with(dim);
        self
    }

    /// Builds a vector from `(dimension, amount)` pairs; later pairs win.
    ///
    /// # Errors
    ///
    /// The first [`ResourceError::TooLarge`] met.
    pub fn from_pairs(pairs: &[(Dim, u64)]) -> Result<Resources, ResourceError> {
        let mut r = Resources::NONE;
        for &(dim, amount) in pairs {
            r.set(dim, amount)?;
        }
        Ok(r)
    }

    /// Builds a vector from one raw array and a set mask, as stored by
    /// [`Resources::to_raw`]. Amounts of dimensions outside `set` are ignored.
    ///
    /// # Errors
    ///
    /// [`ResourceError::TooLarge`] for the first set amount above [`MAX_AMOUNT`].
    pub fn from_raw(amounts: [u64; Dim::COUNT], set: DimSet) -> Result<Resources, ResourceError> {
        let amounts = PerDim(amounts);
        let mut r = Resources::NONE;
        for dim in set {
            r.set(dim, amounts[dim])?;
        }
        Ok(r)
    }

    /// The raw amounts (zero where unset) and the set mask.
    #[must_use]
    pub const fn to_raw(&self) -> ([u64; Dim::COUNT], DimSet) {
        (self.amounts.0, self.set)
    }

    /// A vector from amounts already validated (each at most [`MAX_AMOUNT`],
    /// zero outside `set`), as taken apart by [`Resources::to_raw`].
    #[must_use]
    #[inline]
    pub(crate) const fn from_raw_trusted(amounts: [u64; Dim::COUNT], set: DimSet) -> Resources {
        Resources {
            amounts: PerDim(amounts),
            set,
        }
    }

    /// Adds `amount` to dimension index `i` in place (setting it), clamped
    /// to [`MAX_AMOUNT`]; an index outside `0..Dim::COUNT` changes nothing.
    #[inline]
    pub(crate) fn add_at_index(&mut self, i: usize, amount: u64) {
        if let Some(slot) = self.amounts.0.get_mut(i) {
            *slot = slot.saturating_add(amount).min(MAX_AMOUNT);
            self.set = self.set.union(DimSet::from_bits_truncate(1 << i));
        }
    }

    /// The raw amounts (zero where unset), by reference.
    #[must_use]
    #[inline]
    pub(crate) const fn raw_amounts(&self) -> &[u64; Dim::COUNT] {
        &self.amounts.0
    }

    /// `self` with only the dimensions of `dims` kept (others unset).
    #[must_use]
    #[inline]
    pub fn restricted(&self, dims: DimSet) -> Resources {
        let mut out = *self;
        let drop = self.set.bits() & !dims.bits();
        let mut m = drop;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m.wrapping_sub(1);
            if let Some(a) = out.amounts.0.get_mut(i) {
                *a = 0;
            }
        }
        out.set = self.set.intersection(dims);
        out
    }

    /// Removes the requirement in `dim` (it becomes "no requirement").
    pub fn clear(&mut self, dim: Dim) {
        self.amounts[dim] = 0;
        self.set = self.set.without(dim);
    }

    /// The amount in `dim`, or `None` when `dim` is unset.
    #[must_use]
    #[inline]
    pub fn get(&self, dim: Dim) -> Option<u64> {
        if self.set.contains(dim) {
            Some(self.amounts[dim])
        } else {
            None
        }
    }

    /// The amount in `dim`, zero when unset.
    #[must_use]
    #[inline]
    pub fn amount(&self, dim: Dim) -> u64 {
        self.amounts[dim]
    }

    /// The set dimensions.
    #[must_use]
    #[inline]
    pub const fn dims(&self) -> DimSet {
        self.set
    }

    /// Whether no dimension is set ("no requirement at all").
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Whether every set dimension is zero (true for an empty vector too).
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.set.iter().all(|d| self.amount(d) == 0)
    }

    /// Iterates over `(dimension, amount)` for the set dimensions.
    pub fn iter(&self) -> impl Iterator<Item = (Dim, u64)> + '_ {
        self.set.iter().map(move |d| (d, self.amount(d)))
    }

    /// Applies `f` to the amounts of both vectors in every dimension set in
    /// either; the result is set in the union. `None` from `f` fails the whole
    /// operation, and so does a result above [`MAX_AMOUNT`].
    ///
    /// Runs over every lane, set or not, without branching on the set (the
    /// optimiser turns it into a few vector instructions): an unset amount is
    /// zero by the type's invariant, and every `f` given here maps `(0, 0)` to
    /// `Some(0)`, so lanes outside the union stay zero.
    #[inline]
    fn zip_union(
        &self,
        other: &Resources,
        f: impl Fn(u64, u64) -> Option<u64>,
    ) -> Option<Resources> {
        let mut amounts = [0u64; Dim::COUNT];
        let mut ok = true;
        for ((out, &a), &b) in amounts
            .iter_mut()
            .zip(&self.amounts.0)
            .zip(&other.amounts.0)
        {
            match f(a, b) {
                Some(v) if v <= MAX_AMOUNT => *out = v,
                _ => ok = false,
            }
        }
        ok.then_some(Resources {
            amounts: PerDim(amounts),
            set: self.set.union(other.set),
        })
    }

    /// Sum in every dimension set in either vector, or `None` when a sum
    /// exceeds [`MAX_AMOUNT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::{Dim, Resources, MAX_AMOUNT};
    /// let a = Resources::new().with(Dim::Cpu, 100)?;
    /// let b = Resources::new().with(Dim::Memory, 1024)?;
    /// let sum = a.checked_add(&b).unwrap();
    /// assert_eq!((sum.get(Dim::Cpu), sum.get(Dim::Memory)), (Some(100), Some(1024)));
    /// let big = Resources::new().with(Dim::Cpu, MAX_AMOUNT)?;
    /// assert!(big.checked_add(&a).is_none());
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    #[must_use]
    pub fn checked_add(&self, other: &Resources) -> Option<Resources> {
        self.zip_union(other, u64::checked_add)
    }

    /// Sum in every dimension set in either vector, capped at [`MAX_AMOUNT`].
    #[must_use]
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        self.zip_union(other, |a, b| Some(a.saturating_add(b).min(MAX_AMOUNT)))
            .unwrap_or(Resources::NONE)
    }

    /// Difference in every dimension set in either vector, or `None` when some
    /// dimension of `other` is larger than the same dimension of `self`.
    #[must_use]
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        self.zip_union(other, u64::checked_sub)
    }

    /// Difference in every dimension set in either vector, floored at zero.
    #[must_use]
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        self.zip_union(other, |a, b| Some(a.saturating_sub(b)))
            .unwrap_or(Resources::NONE)
    }

    /// Per-dimension maximum over the union of set dimensions.
    #[must_use]
    pub fn max(&self, other: &Resources) -> Resources {
        self.zip_union(other, |a, b| Some(a.max(b)))
            .unwrap_or(Resources::NONE)
    }

    /// Per-dimension minimum over the union of set dimensions (an unset
    /// dimension counts as zero).
    #[must_use]
    pub fn min(&self, other: &Resources) -> Resources {
        self.zip_union(other, |a, b| Some(a.min(b)))
            .unwrap_or(Resources::NONE)
    }

    /// `self` with each dimension that is set in both capped at `bound`'s
    /// amount; dimensions that `bound` leaves unset (no limit) are kept as
    /// they are, and no dimension is added.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::{Dim, Resources};
    /// let want = Resources::new().with(Dim::Memory, 900)?.with(Dim::Cpu, 500)?;
    /// let bound = Resources::new().with(Dim::Memory, 600)?.with(Dim::Gpu, 0)?;
    /// let got = want.clamped_to(&bound);
    /// assert_eq!((got.get(Dim::Memory), got.get(Dim::Cpu)), (Some(600), Some(500)));
    /// assert_eq!(got.get(Dim::Gpu), None);
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    #[must_use]
    pub fn clamped_to(&self, bound: &Resources) -> Resources {
        let mut out = *self;
        for (i, (a, &b)) in out.amounts.0.iter_mut().zip(&bound.amounts.0).enumerate() {
            if bound.set.bits() >> i & 1 == 1 {
                *a = (*a).min(b);
            }
        }
        out
    }

    /// `self` with every dimension set in `fallback` but unset in `self` filled
    /// from `fallback`. Set dimensions of `self` always win.
    #[must_use]
    pub fn or(&self, fallback: &Resources) -> Resources {
        // Lane-wise, like `zip_union`: a lane unset in `self` takes the
        // fallback's amount, which is zero where the fallback is unset too.
        let mut amounts = self.amounts.0;
        let mine = self.set.bits();
        for (i, (out, &f)) in amounts.iter_mut().zip(&fallback.amounts.0).enumerate() {
            if mine >> i & 1 == 0 {
                *out = f;
            }
        }
        Resources {
            amounts: PerDim(amounts),
            set: self.set.union(fallback.set),
        }
    }

    /// Every set amount multiplied by `ratio` (rounded up, capped at
    /// [`MAX_AMOUNT`]). Used for safety margins: `ratio = Ppm(1_150_000)` adds 15%.
    #[must_use]
    pub fn scale(&self, ratio: Ppm) -> Resources {
        let mut out = *self;
        for dim in self.set {
            out.amounts[dim] = ratio.apply_ceil(self.amount(dim)).min(MAX_AMOUNT);
        }
        out
    }

    /// Whether `self` fits in `capacity`: every dimension set in both has
    /// `self <= capacity`. Dimensions unset in `capacity` are untracked and
    /// always fit; dimensions unset in `self` need nothing.
    #[must_use]
    pub fn fits_within(&self, capacity: &Resources) -> bool {
        self.first_shortfall(capacity).is_none()
    }

    /// The first dimension (in index order) where `self` needs more than
    /// `capacity` has, with the amounts involved. `None` when `self` fits.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::{Dim, Resources};
    /// let req = Resources::new().with(Dim::Memory, 3 << 30)?;
    /// let cap = Resources::new().with(Dim::Memory, 2 << 30)?;
    /// let s = req.first_shortfall(&cap).unwrap();
    /// assert_eq!((s.dim, s.by), (Dim::Memory, 1 << 30));
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    #[must_use]
    pub fn first_shortfall(&self, capacity: &Resources) -> Option<Shortfall> {
        self.set
            .intersection(capacity.set)
            .iter()
            .find_map(|dim| Shortfall::check(dim, self.amount(dim), capacity.amount(dim)))
    }

    /// How far `self` exceeds `capacity` in each dimension set in both
    /// (zero where it fits). The result is set exactly where both are set.
    #[must_use]
    pub fn excess_over(&self, capacity: &Resources) -> Resources {
        let mut out = Resources::NONE;
        for dim in self.set.intersection(capacity.set) {
            out = out.with_saturating(dim, self.amount(dim).saturating_sub(capacity.amount(dim)));
        }
        out
    }

    /// The share of `capacity` that `self` takes in `dim`, or `None` when `dim`
    /// is untracked in `capacity` or unset in `self`. Against a zero capacity a
    /// zero amount is 0 ppm and a positive amount is [`Ppm::MAX`].
    #[must_use]
    pub fn share_of(&self, capacity: &Resources, dim: Dim) -> Option<Ppm> {
        let amount = self.get(dim)?;
        let cap = capacity.get(dim)?;
        Some(Ppm::ratio(amount, cap))
    }

    /// Utilisation of `capacity` by `self` (typically: reserved amounts) in
    /// every dimension tracked by `capacity`; `None` in untracked dimensions.
    #[must_use]
    pub fn utilisation(&self, capacity: &Resources) -> [Option<Ppm>; Dim::COUNT] {
        let mut out = [None; Dim::COUNT];
        for (slot, dim) in out.iter_mut().zip(Dim::ALL) {
            if capacity.set.contains(dim) {
                *slot = Some(Ppm::ratio(self.amount(dim), capacity.amount(dim)));
            }
        }
        out
    }

    /// The dominant share (DRF, Ghodsi et al., NSDI 2011): the largest share of
    /// `capacity` that `self` takes in any dimension set in both, with that
    /// dimension. Ties go to the lower index. `None` when no dimension is
    /// shared.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::{Dim, Ppm, Resources};
    /// let cap = Resources::new().with(Dim::Cpu, 4_000)?.with(Dim::Memory, 8 << 30)?;
    /// let req = Resources::new().with(Dim::Cpu, 1_000)?.with(Dim::Memory, 4 << 30)?;
    /// assert_eq!(req.dominant_share(&cap), Some((Dim::Memory, Ppm::from_ppm(500_000))));
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    #[must_use]
    pub fn dominant_share(&self, capacity: &Resources) -> Option<(Dim, Ppm)> {
        let mut best: Option<(Dim, Ppm)> = None;
        for dim in self.set.intersection(capacity.set) {
            let share = Ppm::ratio(self.amount(dim), capacity.amount(dim));
            if best.is_none_or(|(_, b)| share > b) {
                best = Some((dim, share));
            }
        }
        best
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resources")?;
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Resources {
    /// `{cpu: 500m, memory: 1048576B}`; `{}` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (dim, amount)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{dim}: {amount}{}", dim.unit().symbol())?;
        }
        f.write_str("}")
    }
}

/// Where a request does not fit: the dimension, what was asked, what was there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shortfall {
    /// The first dimension (in index order) that does not fit.
    pub dim: Dim,
    /// The amount requested in `dim`.
    pub requested: u64,
    /// The amount available in `dim` at the time of the check (zero when the
    /// dimension was over-committed, for example after a capacity cut).
    pub available: u64,
    /// How much more would have to be free for the request to fit
    /// (`requested - available`, plus any over-commitment).
    pub by: u64,
}

impl Shortfall {
    /// `Some` when `requested > available`.
    #[must_use]
    pub const fn check(dim: Dim, requested: u64, available: u64) -> Option<Shortfall> {
        if requested > available {
            Some(Shortfall {
                dim,
                requested,
                available,
                by: requested.saturating_sub(available),
            })
        } else {
            None
        }
    }

    /// Shortfall against a signed available amount (negative when a capacity
    /// cut left the dimension over-committed).
    #[must_use]
    pub(crate) const fn check_signed(
        dim: Dim,
        requested: u64,
        available: i64,
    ) -> Option<Shortfall> {
        if available < 0 {
            Some(Shortfall {
                dim,
                requested,
                available: 0,
                by: requested.saturating_add(available.unsigned_abs()),
            })
        } else {
            // `available >= 0`, so the cast is lossless.
            #[allow(clippy::cast_sign_loss)]
            Shortfall::check(dim, requested, available as u64)
        }
    }
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = self.dim.unit().symbol();
        write!(
            f,
            "{} needs {}{u} but {}{u} is available (short by {}{u})",
            self.dim, self.requested, self.available, self.by
        )
    }
}

/// A fixed-point ratio in parts per million (`Ppm::ONE` = 1_000_000 = 100%).
///
/// Ratios above one are representable (a dimension over-committed after a
/// capacity cut is more than 100% used); computations saturate at
/// [`Ppm::MAX`] instead of overflowing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ppm(u32);

impl Ppm {
    /// 0%.
    pub const ZERO: Ppm = Ppm(0);
    /// 100%.
    pub const ONE: Ppm = Ppm(1_000_000);
    /// The largest representable ratio (about 4295 times one).
    pub const MAX: Ppm = Ppm(u32::MAX);

    /// A ratio from its parts-per-million value.
    #[must_use]
    pub const fn from_ppm(ppm: u32) -> Ppm {
        Ppm(ppm)
    }

    /// A ratio from a whole percentage (`from_percent(15)` is 15%), saturating.
    #[must_use]
    pub const fn from_percent(percent: u32) -> Ppm {
        Ppm(percent.saturating_mul(10_000))
    }

    /// The parts-per-million value.
    #[must_use]
    pub const fn as_ppm(self) -> u32 {
        self.0
    }

    /// `num / den`, rounded down, saturating at [`Ppm::MAX`]. `0 / 0` is zero
    /// and `x / 0` for `x > 0` is [`Ppm::MAX`].
    #[must_use]
    pub const fn ratio(num: u64, den: u64) -> Ppm {
        if den == 0 {
            return if num == 0 { Ppm::ZERO } else { Ppm::MAX };
        }
        // num < 2^64 and 10^6 < 2^20: the product fits in u128.
        let scaled = match (num as u128)
            .saturating_mul(Ppm::ONE.0 as u128)
            .checked_div(den as u128)
        {
            Some(v) => v,
            None => return Ppm::MAX,
        };
        if scaled > u32::MAX as u128 {
            Ppm::MAX
        } else {
            #[allow(clippy::cast_possible_truncation)]
            Ppm(scaled as u32)
        }
    }

    /// `amount * self`, rounded down, saturating at `u64::MAX`.
    #[must_use]
    pub const fn apply(self, amount: u64) -> u64 {
        let v = match (amount as u128)
            .saturating_mul(self.0 as u128)
            .checked_div(Ppm::ONE.0 as u128)
        {
            Some(v) => v,
            None => 0,
        };
        if v > u64::MAX as u128 {
            u64::MAX
        } else {
            #[allow(clippy::cast_possible_truncation)]
            {
                v as u64
            }
        }
    }

    /// `amount * self`, rounded up, saturating at `u64::MAX`.
    #[must_use]
    pub const fn apply_ceil(self, amount: u64) -> u64 {
        let p = (amount as u128).saturating_mul(self.0 as u128);
        let one = Ppm::ONE.0 as u128;
        // p / one < 2^64 * 2^32 / 10^6, far from u128::MAX: adding one cannot wrap.
        let (q, rem) = match (p.checked_div(one), p.checked_rem(one)) {
            (Some(q), Some(r)) => (q, r),
            _ => (0, 0),
        };
        let v = q.saturating_add(if rem == 0 { 0 } else { 1 });
        if v > u64::MAX as u128 {
            u64::MAX
        } else {
            #[allow(clippy::cast_possible_truncation)]
            {
                v as u64
            }
        }
    }

    /// `1 - self`, floored at zero.
    #[must_use]
    pub const fn complement(self) -> Ppm {
        Ppm(Ppm::ONE.0.saturating_sub(self.0))
    }

    /// Saturating sum.
    #[must_use]
    pub const fn saturating_add(self, other: Ppm) -> Ppm {
        Ppm(self.0.saturating_add(other.0))
    }

    /// Saturating difference.
    #[must_use]
    pub const fn saturating_sub(self, other: Ppm) -> Ppm {
        Ppm(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Ppm {
    /// As a percentage with two decimals: `87.25%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hundredths = self.0 / 100;
        write!(f, "{}.{:02}%", hundredths / 100, hundredths % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(pairs: &[(Dim, u64)]) -> Resources {
        Resources::from_pairs(pairs).unwrap()
    }

    #[test]
    fn dim_indices_round_trip() {
        for (i, d) in Dim::ALL.into_iter().enumerate() {
            assert_eq!(d.index(), i);
            assert_eq!(Dim::from_index(i), Some(d));
            assert_eq!(Dim::from_name(d.name()), Some(d));
        }
        assert_eq!(Dim::from_index(Dim::COUNT), None);
        assert_eq!(Dim::user(0), Some(Dim::User0));
        assert_eq!(Dim::user(3), Some(Dim::User3));
        assert_eq!(Dim::user(4), None);
        assert_eq!(Dim::from_name("disk"), None);
    }

    #[test]
    fn compressible_and_incompressible_split_every_dimension() {
        for d in Dim::ALL {
            assert_eq!(DimSet::COMPRESSIBLE.contains(d), d.is_compressible(), "{d}");
            assert_eq!(
                DimSet::INCOMPRESSIBLE.contains(d),
                !d.is_compressible(),
                "{d}"
            );
        }
        assert_eq!(
            DimSet::COMPRESSIBLE.union(DimSet::INCOMPRESSIBLE),
            DimSet::ALL
        );
        assert!(
            DimSet::COMPRESSIBLE
                .intersection(DimSet::INCOMPRESSIBLE)
                .is_empty()
        );
    }

    #[test]
    fn dimset_iterates_in_order() {
        let s = DimSet::EMPTY.with(Dim::User3).with(Dim::Cpu).with(Dim::Gpu);
        let v: [Option<Dim>; 4] = {
            let mut it = s.iter();
            [it.next(), it.next(), it.next(), it.next()]
        };
        assert_eq!(v, [Some(Dim::Cpu), Some(Dim::Gpu), Some(Dim::User3), None]);
        assert_eq!(s.len(), 3);
        assert_eq!(DimSet::ALL.len(), Dim::COUNT);
        assert_eq!(DimSet::from_bits_truncate(u16::MAX), DimSet::ALL);
        assert!(s.without(Dim::Cpu).contains(Dim::Gpu));
        assert!(!s.without(Dim::Cpu).contains(Dim::Cpu));
    }

    #[test]
    fn unset_is_distinct_from_zero() {
        let zero = r(&[(Dim::Memory, 0)]);
        assert_eq!(zero.get(Dim::Memory), Some(0));
        assert_eq!(Resources::NONE.get(Dim::Memory), None);
        assert_ne!(zero, Resources::NONE);
        assert!(zero.is_zero() && !zero.is_empty());
        assert!(Resources::NONE.is_zero() && Resources::NONE.is_empty());
        let mut c = zero;
        c.clear(Dim::Memory);
        assert_eq!(c, Resources::NONE);
    }

    #[test]
    fn construction_validates_amounts() {
        // Table: (amount, accepted?)
        let table = [
            (0, true),
            (1, true),
            (MAX_AMOUNT, true),
            (MAX_AMOUNT + 1, false),
            (u64::MAX, false),
        ];
        for (amount, ok) in table {
            let res = Resources::new().with(Dim::Iops, amount);
            assert_eq!(res.is_ok(), ok, "amount {amount}");
            if !ok {
                assert_eq!(
                    res,
                    Err(ResourceError::TooLarge {
                        dim: Dim::Iops,
                        amount
                    })
                );
            }
        }
        let mut x = r(&[(Dim::Cpu, 5)]);
        assert!(x.set(Dim::Cpu, u64::MAX).is_err());
        assert_eq!(
            x.get(Dim::Cpu),
            Some(5),
            "failed set leaves value unchanged"
        );
        assert_eq!(
            Resources::NONE
                .with_saturating(Dim::Cpu, u64::MAX)
                .get(Dim::Cpu),
            Some(MAX_AMOUNT)
        );
    }

    #[test]
    fn arithmetic_table() {
        let a = r(&[(Dim::Cpu, 100), (Dim::Memory, 50)]);
        let b = r(&[(Dim::Memory, 70), (Dim::Gpu, 1)]);
        let sum = a.checked_add(&b).unwrap();
        assert_eq!(
            sum,
            r(&[(Dim::Cpu, 100), (Dim::Memory, 120), (Dim::Gpu, 1)])
        );
        assert_eq!(a.checked_sub(&b), None, "memory 50 - 70 underflows");
        assert_eq!(
            a.saturating_sub(&b),
            r(&[(Dim::Cpu, 100), (Dim::Memory, 0), (Dim::Gpu, 0)])
        );
        assert_eq!(
            sum.checked_sub(&b).unwrap(),
            r(&[(Dim::Cpu, 100), (Dim::Memory, 50), (Dim::Gpu, 0)])
        );
        let max = r(&[(Dim::Cpu, MAX_AMOUNT)]);
        assert_eq!(max.checked_add(&r(&[(Dim::Cpu, 1)])), None);
        assert_eq!(max.saturating_add(&max).get(Dim::Cpu), Some(MAX_AMOUNT));
        assert_eq!(
            a.max(&b),
            r(&[(Dim::Cpu, 100), (Dim::Memory, 70), (Dim::Gpu, 1)])
        );
        assert_eq!(
            a.min(&b),
            r(&[(Dim::Cpu, 0), (Dim::Memory, 50), (Dim::Gpu, 0)])
        );
        assert_eq!(
            a.or(&b),
            r(&[(Dim::Cpu, 100), (Dim::Memory, 50), (Dim::Gpu, 1)])
        );
    }

    #[test]
    fn fits_and_shortfall_table() {
        let cap = r(&[(Dim::Cpu, 1000), (Dim::Memory, 1 << 30), (Dim::Gpu, 0)]);
        // (request, expected first shortfall: (dim, by))
        let table: [(Resources, Option<(Dim, u64)>); 7] = [
            (Resources::NONE, None),
            (r(&[(Dim::Cpu, 1000)]), None),
            (r(&[(Dim::Cpu, 1001)]), Some((Dim::Cpu, 1))),
            (
                r(&[(Dim::Memory, 3 << 30), (Dim::Cpu, 2000)]),
                Some((Dim::Cpu, 1000)),
            ),
            (r(&[(Dim::Gpu, 0)]), None),
            (r(&[(Dim::Gpu, 1)]), Some((Dim::Gpu, 1))),
            // IOPS is untracked by this capacity: always fits.
            (r(&[(Dim::Iops, MAX_AMOUNT)]), None),
        ];
        for (req, want) in table {
            let got = req.first_shortfall(&cap).map(|s| (s.dim, s.by));
            assert_eq!(got, want, "request {req}");
            assert_eq!(req.fits_within(&cap), want.is_none());
        }
        let ex = r(&[(Dim::Cpu, 1500), (Dim::Memory, 1)]).excess_over(&cap);
        assert_eq!(ex, r(&[(Dim::Cpu, 500), (Dim::Memory, 0)]));
    }

    #[test]
    fn signed_shortfall_counts_overcommitment() {
        let s = Shortfall::check_signed(Dim::Memory, 10, -5).unwrap();
        assert_eq!((s.available, s.by), (0, 15));
        assert_eq!(Shortfall::check_signed(Dim::Memory, 10, 10), None);
        assert_eq!(Shortfall::check_signed(Dim::Memory, 10, 4).unwrap().by, 6);
        assert_eq!(
            Shortfall::check_signed(Dim::Memory, u64::MAX, i64::MIN)
                .unwrap()
                .by,
            u64::MAX
        );
    }

    #[test]
    fn ppm_table() {
        let table = [
            (0, 0, 0),
            (5, 0, u32::MAX),
            (1, 2, 500_000),
            (1, 3, 333_333),
            (2, 2, 1_000_000),
            (3, 2, 1_500_000),
            (u64::MAX, 1, u32::MAX),
            (u64::MAX, u64::MAX, 1_000_000),
        ];
        for (n, d, want) in table {
            assert_eq!(Ppm::ratio(n, d).as_ppm(), want, "{n}/{d}");
        }
        assert_eq!(Ppm::from_percent(15).apply(1000), 150);
        assert_eq!(Ppm::from_ppm(1).apply_ceil(1), 1);
        assert_eq!(Ppm::from_ppm(1).apply(1), 0);
        assert_eq!(Ppm::MAX.apply(u64::MAX), u64::MAX);
        assert_eq!(Ppm::from_ppm(250_000).complement(), Ppm::from_ppm(750_000));
        assert_eq!(Ppm::from_ppm(2_000_000).complement(), Ppm::ZERO);
        assert_eq!(std::format!("{}", Ppm::from_ppm(872_512)), "87.25%");
    }

    #[test]
    fn utilisation_and_dominant_share() {
        let cap = r(&[(Dim::Cpu, 4000), (Dim::Memory, 1000), (Dim::Gpu, 0)]);
        let used = r(&[(Dim::Cpu, 1000), (Dim::Memory, 1000)]);
        let u = used.utilisation(&cap);
        assert_eq!(u[Dim::Cpu.index()], Some(Ppm::from_ppm(250_000)));
        assert_eq!(u[Dim::Memory.index()], Some(Ppm::ONE));
        assert_eq!(u[Dim::Gpu.index()], Some(Ppm::ZERO), "0 used of 0 is empty");
        assert_eq!(u[Dim::Iops.index()], None, "untracked");
        assert_eq!(used.dominant_share(&cap), Some((Dim::Memory, Ppm::ONE)));
        assert_eq!(Resources::NONE.dominant_share(&cap), None);
        // Ties go to the lower index.
        let tie = r(&[(Dim::Cpu, 2000), (Dim::Memory, 500)]);
        assert_eq!(
            tie.dominant_share(&cap),
            Some((Dim::Cpu, Ppm::from_ppm(500_000)))
        );
        assert_eq!(
            r(&[(Dim::Gpu, 1)]).share_of(&cap, Dim::Gpu),
            Some(Ppm::MAX),
            "a positive amount of a zero capacity is infinitely full"
        );
    }

    #[test]
    fn display_is_readable() {
        let x = r(&[(Dim::Cpu, 500), (Dim::Memory, 1024)]);
        assert_eq!(std::format!("{x}"), "{cpu: 500m, memory: 1024B}");
        assert_eq!(std::format!("{}", Resources::NONE), "{}");
        let e = ResourceError::TooLarge {
            dim: Dim::Memory,
            amount: u64::MAX,
        };
        assert!(std::format!("{e}").starts_with("memory amount 18446744073709551615B is larger"));
        let s = Shortfall::check(Dim::Cpu, 1500, 1000).unwrap();
        assert_eq!(
            std::format!("{s}"),
            "cpu needs 1500m but 1000m is available (short by 500m)"
        );
    }
}
