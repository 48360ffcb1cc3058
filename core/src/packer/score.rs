//! Multi-dimensional placement scores, in integer fixed point.
//!
//! Every score looks at one domain and one request and normalises each
//! dimension by the domain's own capacity, so that CPU millicores and memory
//! bytes can be compared: the *share* of an amount `x` of capacity `c` is
//! `x * 10^6 / c`, rounded down (parts per million; `u128` intermediates
//! where `x * 10^6` would not fit a `u64`). The scored dimensions are the
//! domain's tracked dimensions with a positive capacity (a zero capacity has
//! no meaningful share, as in Kubernetes, which skips zero allocatable).
//!
//! | score | value | preferred | source |
//! |-------|-------|-----------|--------|
//! | [`dot_product`] | `Σ share(request) · share(free before placing)`, ppm² | high | Tetris (Grandl et al., SIGCOMM 2014, §3.2 "alignment") |
//! | [`l2_residual_squared`] | `Σ share(free after placing)²`, ppm² | low | Panigrahy et al., "Heuristics for Vector Bin Packing" (2011), the L2 norm-based greedy |
//! | [`most_allocated`] | mean of `min(1, (used + request) / capacity)` | high | Kubernetes `noderesources/most_allocated.go` |
//! | [`least_allocated`] | mean of `max(0, capacity - used - request) / capacity` | high | Kubernetes `noderesources/least_allocated.go` |
//! | [`balanced_allocation`] | `1 - std` of the fractions `min(1, (used + request) / capacity)` | high | Kubernetes `noderesources/balanced_allocation.go` |
//!
//! [`Score::key`] turns each into one `u64` where **higher is preferred** by
//! that score's authors: the L2 key is `10^13 - Σ share²` (ten dimensions at
//! most 10^12 each, so the key never underflows for a request that fits).
//! [`Fit::Best`](super::Fit::Best) takes the highest key,
//! [`Fit::Worst`](super::Fit::Worst) the lowest.
//!
//! # Fixed point
//!
//! The Kubernetes scores are [`Ppm`] (Kubernetes uses 0..=100; here 0..=10^6).
//! The mean is the sum divided by the number of scored dimensions, rounded
//! down (Kubernetes weights every resource 1 by default). For
//! BalancedAllocation, with `n` fractions `f` in ppm, the population variance
//! is computed exactly as `(n Σf² - (Σf)²) / n²` in `u128` (the numerator is
//! never negative, by Cauchy–Schwarz), the standard deviation is its integer
//! square root (rounded down), and the score is `10^6 - std`. For two
//! dimensions this is `10^6 - |f1 - f2| / 2`, the special case Kubernetes
//! writes out.

use core::fmt;

use super::Domain;
use crate::resource::{Dim, Ppm, Resources};

/// One million: shares are parts per million of a capacity.
pub(crate) const PPM: u64 = 1_000_000;

/// The L2 key's ceiling: `Dim::COUNT` dimensions of at most `(10^6)^2` each.
const L2_CEILING: u64 = 10_000_000_000_000;

/// `num * 10^6 / den`, rounded down; zero when `den == 0`, saturating.
#[inline]
pub(crate) fn share(num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    match num.checked_mul(PPM) {
        Some(p) => p.checked_div(den).unwrap_or(0),
        None => {
            let q = u128::from(num)
                .saturating_mul(u128::from(PPM))
                .checked_div(u128::from(den))
                .unwrap_or(0);
            u64::try_from(q).unwrap_or(u64::MAX)
        }
    }
}

/// The dimensions a score looks at in `domain`: tracked, with positive capacity.
#[inline]
fn scored(domain: &Domain) -> impl Iterator<Item = (Dim, u64)> + '_ {
    domain.capacity.iter().filter(|&(_, capacity)| capacity > 0)
}

/// `Ppm` from a value known to be at most 10^6 (saturating otherwise).
fn ppm(v: u64) -> Ppm {
    Ppm::from_ppm(u32::try_from(v).unwrap_or(u32::MAX))
}

/// A placement score. See the [module documentation](self) for the formulas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Score {
    /// Tetris alignment: [`dot_product`] of demand and free capacity.
    DotProduct,
    /// Panigrahy et al.'s L2 norm of the residual free capacity
    /// ([`l2_residual_squared`]); smaller residuals are preferred.
    L2Residual,
    /// Kubernetes MostAllocated ([`most_allocated`]): packs.
    MostAllocated,
    /// Kubernetes LeastAllocated ([`least_allocated`]): spreads.
    LeastAllocated,
    /// Kubernetes BalancedAllocation ([`balanced_allocation`]).
    BalancedAllocation,
}

impl Score {
    /// Every score.
    pub const ALL: [Score; 5] = [
        Score::DotProduct,
        Score::L2Residual,
        Score::MostAllocated,
        Score::LeastAllocated,
        Score::BalancedAllocation,
    ];

    /// A short stable name (`"dot"`, `"l2"`, `"most"`, `"least"`, `"balanced"`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Score::DotProduct => "dot",
            Score::L2Residual => "l2",
            Score::MostAllocated => "most",
            Score::LeastAllocated => "least",
            Score::BalancedAllocation => "balanced",
        }
    }

    /// The score of placing `request` on `domain` as one number, higher
    /// preferred: the score itself, except for [`Score::L2Residual`], whose
    /// key is `10^13 - l2_residual_squared`. Meaningful where the request
    /// fits; defined (saturating) everywhere.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::packer::{Domain, Score};
    /// use respool_core::{Dim, Resources};
    /// let d = Domain::new(Resources::new().with(Dim::Cpu, 1000)?.with(Dim::Memory, 1000)?);
    /// let req = Resources::new().with(Dim::Cpu, 500)?;
    /// // cpu 50% used after placing, memory 0%: mean 25%, std 25%.
    /// assert_eq!(Score::MostAllocated.key(&d, &req), 250_000);
    /// assert_eq!(Score::BalancedAllocation.key(&d, &req), 750_000);
    /// // Demand share 0.5 times free share 1.0, in ppm².
    /// assert_eq!(Score::DotProduct.key(&d, &req), 500_000 * 1_000_000);
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn key(self, domain: &Domain, request: &Resources) -> u64 {
        match self {
            Score::DotProduct => dot_product(domain, request),
            Score::L2Residual => L2_CEILING.saturating_sub(l2_residual_squared(domain, request)),
            Score::MostAllocated => u64::from(most_allocated(domain, request).as_ppm()),
            Score::LeastAllocated => u64::from(least_allocated(domain, request).as_ppm()),
            Score::BalancedAllocation => u64::from(balanced_allocation(domain, request).as_ppm()),
        }
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Tetris alignment: `Σ_d share(request_d) · share(free_d)` over the scored
/// dimensions, where `free = capacity - used` before placing; in ppm².
#[must_use]
pub fn dot_product(domain: &Domain, request: &Resources) -> u64 {
    let mut sum = 0u64;
    for (d, cap) in scored(domain) {
        let r = request.amount(d);
        if r == 0 {
            continue;
        }
        let free = cap.saturating_sub(domain.used[d]);
        sum = sum.saturating_add(share(r, cap).saturating_mul(share(free, cap)));
    }
    sum
}

/// The squared L2 norm of the free capacity left after placing,
/// `Σ_d share(capacity_d - used_d - request_d)²` (floored at zero per
/// dimension), in ppm².
#[must_use]
pub fn l2_residual_squared(domain: &Domain, request: &Resources) -> u64 {
    let mut sum = 0u64;
    residuals(domain, request, |s| {
        sum = sum.saturating_add(s.saturating_mul(s))
    });
    sum
}

/// The share of capacity left free after placing in each scored dimension
/// (floored at zero); calls `f(share_ppm)` for each and returns how many
/// there were.
#[inline]
fn residuals(domain: &Domain, request: &Resources, mut f: impl FnMut(u64)) -> u64 {
    let mut n = 0u64;
    for (d, cap) in scored(domain) {
        let left = cap
            .saturating_sub(domain.used[d])
            .saturating_sub(request.amount(d));
        f(share(left, cap));
        n = n.saturating_add(1);
    }
    n
}

/// The L2 norm of the free capacity left after placing: the integer square
/// root of [`l2_residual_squared`] (at most `sqrt(10)` times one).
#[must_use]
pub fn l2_residual(domain: &Domain, request: &Resources) -> Ppm {
    ppm(l2_residual_squared(domain, request).isqrt())
}

/// The utilisation fraction after placing in each scored dimension, capped at
/// one; calls `f(fraction_ppm)` for each and returns how many there were.
#[inline]
fn fractions(domain: &Domain, request: &Resources, mut f: impl FnMut(u64)) -> u64 {
    let mut n = 0u64;
    for (d, cap) in scored(domain) {
        let requested = domain.used[d].saturating_add(request.amount(d)).min(cap);
        f(share(requested, cap));
        n = n.saturating_add(1);
    }
    n
}

/// Kubernetes MostAllocated: the mean over the scored dimensions of
/// `min(1, (used + request) / capacity)`. Zero when nothing is scored.
#[must_use]
pub fn most_allocated(domain: &Domain, request: &Resources) -> Ppm {
    let mut sum = 0u64;
    let n = fractions(domain, request, |f| sum = sum.saturating_add(f));
    ppm(sum.checked_div(n).unwrap_or(0))
}

/// Kubernetes LeastAllocated: the mean over the scored dimensions of
/// `max(0, capacity - used - request) / capacity`. Zero when nothing is scored.
#[must_use]
pub fn least_allocated(domain: &Domain, request: &Resources) -> Ppm {
    let mut sum = 0u64;
    let n = residuals(domain, request, |s| sum = sum.saturating_add(s));
    ppm(sum.checked_div(n).unwrap_or(0))
}

/// Kubernetes BalancedAllocation: one minus the population standard
/// deviation of the utilisation fractions after placing (each capped at one).
/// One when fewer than two dimensions are scored.
#[must_use]
pub fn balanced_allocation(domain: &Domain, request: &Resources) -> Ppm {
    let mut sum = 0u128;
    let mut sum_sq = 0u128;
    let n = fractions(domain, request, |f| {
        let f = u128::from(f);
        sum = sum.saturating_add(f);
        sum_sq = sum_sq.saturating_add(f.saturating_mul(f));
    });
    let n = u128::from(n);
    // n Σf² - (Σf)² >= 0; divided by n² it is the population variance in ppm².
    let numerator = n
        .saturating_mul(sum_sq)
        .saturating_sub(sum.saturating_mul(sum));
    let variance = numerator.checked_div(n.saturating_mul(n)).unwrap_or(0);
    let std = u64::try_from(variance.isqrt()).unwrap_or(u64::MAX);
    ppm(PPM.saturating_sub(std))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cm, r};
    use super::*;

    /// A domain with `cap` and `used` charged.
    fn dom(cap: Resources, used: Resources) -> Domain {
        let mut d = Domain::new(cap);
        d.charge(&used);
        d
    }

    #[test]
    fn share_table() {
        // (num, den, ppm)
        let table = [
            (0, 0, 0),
            (5, 0, 0),
            (1, 2, 500_000),
            (1, 3, 333_333),
            (7, 7, 1_000_000),
            (1 << 60, 1 << 60, 1_000_000), // u128 path
            (1 << 60, 1 << 61, 500_000),
            (u64::MAX, 1, u64::MAX),
        ];
        for (n, d, want) in table {
            assert_eq!(share(n, d), want, "{n}/{d}");
        }
    }

    #[test]
    fn scores_by_hand() {
        // Capacity cpu 1000, memory 4000; used cpu 200, memory 1000;
        // request cpu 300, memory 2000.
        // After placing: cpu 500/1000 = 0.5, memory 3000/4000 = 0.75.
        // Free before: cpu 0.8, memory 0.75. Demand: cpu 0.3, memory 0.5.
        let d = dom(cm(1000, 4000), cm(200, 1000));
        let req = cm(300, 2000);
        // dot: 0.3*0.8 + 0.5*0.75 = 0.24 + 0.375 = 0.615 (ppm²: 6.15e11)
        assert_eq!(dot_product(&d, &req), 300_000 * 800_000 + 500_000 * 750_000);
        // residual after: cpu 0.5, memory 0.25: 0.25 + 0.0625 = 0.3125
        assert_eq!(
            l2_residual_squared(&d, &req),
            500_000 * 500_000 + 250_000 * 250_000
        );
        // sqrt(0.3125) = 0.5590169...
        assert_eq!(l2_residual(&d, &req), Ppm::from_ppm(559_016));
        // most: (0.5 + 0.75) / 2; least: (0.5 + 0.25) / 2
        assert_eq!(most_allocated(&d, &req), Ppm::from_ppm(625_000));
        assert_eq!(least_allocated(&d, &req), Ppm::from_ppm(375_000));
        // balanced: 1 - |0.5 - 0.75| / 2 = 0.875
        assert_eq!(balanced_allocation(&d, &req), Ppm::from_ppm(875_000));
    }

    #[test]
    fn balanced_allocation_table() {
        // Three dimensions: fractions after placing, expected 1 - std.
        // (used cpu, used memory, used iops) of capacity 100 each, empty request.
        let table = [
            ((0, 0, 0), 1_000_000),
            ((50, 50, 50), 1_000_000),
            // 0, 0.5, 1: mean 0.5, variance (0.25 + 0 + 0.25)/3 = 1/6,
            // std = 0.40824829... -> 408_248
            ((0, 50, 100), 1_000_000 - 408_248),
            // 1, 0, 0: mean 1/3, variance 2/9, std = 0.47140452...
            ((100, 0, 0), 1_000_000 - 471_404),
        ];
        let cap = r(&[(Dim::Cpu, 100), (Dim::Memory, 100), (Dim::Iops, 100)]);
        for ((c, m, i), want) in table {
            let d = dom(cap, r(&[(Dim::Cpu, c), (Dim::Memory, m), (Dim::Iops, i)]));
            assert_eq!(
                balanced_allocation(&d, &Resources::NONE).as_ppm(),
                want,
                "{c} {m} {i}"
            );
        }
        // One dimension: std 0.
        let one = dom(r(&[(Dim::Cpu, 10)]), r(&[(Dim::Cpu, 3)]));
        assert_eq!(balanced_allocation(&one, &Resources::NONE), Ppm::ONE);
    }

    #[test]
    fn zero_and_untracked_capacity_are_not_scored() {
        // Gpu capacity 0 is tracked but not scored; iops is untracked.
        let d = dom(r(&[(Dim::Cpu, 100), (Dim::Gpu, 0)]), r(&[(Dim::Cpu, 50)]));
        let req = r(&[(Dim::Cpu, 25), (Dim::Iops, 1_000)]);
        assert_eq!(most_allocated(&d, &req), Ppm::from_ppm(750_000));
        assert_eq!(least_allocated(&d, &req), Ppm::from_ppm(250_000));
        assert_eq!(balanced_allocation(&d, &req), Ppm::ONE);
        assert_eq!(dot_product(&d, &req), 250_000 * 500_000);
        let empty = Domain::new(Resources::NONE);
        for s in Score::ALL {
            // Nothing scored: defined, no panic.
            let _ = s.key(&empty, &req);
        }
        assert_eq!(most_allocated(&empty, &req), Ppm::ZERO);
    }

    #[test]
    fn over_committed_domain_saturates() {
        // After a cut: used 150 of 100. Fractions cap at one, residual floors at 0.
        let mut d = dom(r(&[(Dim::Cpu, 200)]), r(&[(Dim::Cpu, 150)]));
        d.capacity = r(&[(Dim::Cpu, 100)]);
        let req = r(&[(Dim::Cpu, 0)]);
        assert_eq!(most_allocated(&d, &req), Ppm::ONE);
        assert_eq!(least_allocated(&d, &req), Ppm::ZERO);
        assert_eq!(l2_residual_squared(&d, &req), 0);
        assert_eq!(Score::L2Residual.key(&d, &req), L2_CEILING);
        assert_eq!(dot_product(&d, &r(&[(Dim::Cpu, 10)])), 0);
    }
}
