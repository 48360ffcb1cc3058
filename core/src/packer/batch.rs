//! Batch placement: first-fit decreasing and best-fit decreasing.
//!
//! Offline bin packing places a whole batch at once and may reorder it:
//! sorting by decreasing size before first-fit (FFD) or best-fit (BFD) keeps
//! small items for the gaps the large ones leave. For one dimension FFD uses
//! at most `11/9 OPT + 6/9` bins (Johnson 1973; Dósa 2007 for the constant).
//!
//! # The size of a vector
//!
//! Vectors have no natural order, so the batch is sorted by a scalar size.
//! [`Packer::size`] is the **sum of normalised shares**: `Σ_d request_d /
//! C_d`, where `C_d` is the largest capacity any domain has in `d` (in ppm;
//! dimensions no domain has a positive capacity in do not count). This is
//! "FFDSum" of Panigrahy et al., "Heuristics for Vector Bin Packing" (2011,
//! §3, after Kou and Markowsky, 1977), which they found among the better
//! FFD weightings on their benchmarks. Normalising by the largest domain
//! keeps the size of a request independent of what is placed, so the order
//! is computed once per batch.
//!
//! Ties in size keep the batch order (the lower index goes first), so the
//! result is deterministic. The sort is a heapsort over the caller's `order`
//! buffer: O(n log n) comparisons, no allocation, every swap bounds-checked.

use core::fmt;

use super::score::share;
use super::{Domain, Fit, Packer, Placement, Score};
use crate::resource::{PerDim, Resources};

/// A batch algorithm for [`Packer::place_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchFit {
    /// Sort by decreasing [`Packer::size`], then first-fit.
    FirstFitDecreasing,
    /// Sort by decreasing [`Packer::size`], then best-fit with the score.
    BestFitDecreasing(Score),
}

impl fmt::Display for BatchFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchFit::FirstFitDecreasing => f.write_str("first-fit-decreasing"),
            BatchFit::BestFitDecreasing(s) => write!(f, "best-fit-decreasing({s})"),
        }
    }
}

/// Why a batch was refused (nothing was placed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// `order` or `out` is shorter than the batch.
    ScratchTooSmall {
        /// The batch length.
        needed: usize,
        /// The length of `order`.
        order: usize,
        /// The length of `out`.
        out: usize,
    },
    /// `out[index]` already holds a placement (it would be lost).
    SlotOccupied {
        /// The occupied slot.
        index: usize,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::ScratchTooSmall { needed, order, out } => write!(
                f,
                "a batch of {needed} needs `order` and `out` of at least {needed} slots \
                 (got {order} and {out})"
            ),
            BatchError::SlotOccupied { index } => write!(
                f,
                "out[{index}] still holds a placement: release or take it before placing a batch"
            ),
        }
    }
}

impl core::error::Error for BatchError {}

/// Swaps `v[a]` and `v[b]` when both are in range.
#[inline]
fn swap(v: &mut [usize], a: usize, b: usize) {
    if a < v.len() && b < v.len() {
        v.swap(a, b);
    }
}

/// Heapsort of `v` into the order `before` defines (a strict total order).
fn heapsort(v: &mut [usize], before: impl Fn(usize, usize) -> bool) {
    // Max-heap on "goes later": the root is the element that goes last.
    let later = |v: &[usize], i: usize, j: usize| match (v.get(i), v.get(j)) {
        (Some(&a), Some(&b)) => before(b, a),
        _ => false,
    };
    let sift_down = |v: &mut [usize], mut root: usize, end: usize| {
        loop {
            let left = root.saturating_mul(2).saturating_add(1);
            if left >= end {
                break;
            }
            let right = left.saturating_add(1);
            let child = if right < end && later(v, right, left) {
                right
            } else {
                left
            };
            if !later(v, child, root) {
                break;
            }
            swap(v, root, child);
            root = child;
        }
    };
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift_down(v, start, n);
    }
    for end in (1..n).rev() {
        swap(v, 0, end);
        sift_down(v, 0, end);
    }
}

impl<S> Packer<S>
where
    S: AsRef<[Domain]> + AsMut<[Domain]>,
{
    /// The largest capacity of any domain, per dimension.
    fn max_capacity(&self) -> PerDim<u64> {
        self.fold_capacity(u64::max)
    }

    /// The scalar size FFD and BFD sort by: the sum over dimensions of the
    /// request's share (ppm) of the largest capacity any domain has there.
    /// See the [module documentation](self).
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::packer::{ArrayPacker, Domain, Fit};
    /// use respool_core::{Dim, Resources};
    /// let cap = |c, m| Resources::new().with(Dim::Cpu, c)?.with(Dim::Memory, m);
    /// let p: ArrayPacker<2> =
    ///     ArrayPacker::new([Domain::new(cap(4_000, 8 << 30)?), Domain::new(cap(8_000, 4 << 30)?)], Fit::First);
    /// // 2 of 8 cores (25%) plus 4 of 8 GiB (50%).
    /// assert_eq!(p.size(&cap(2_000, 4 << 30)?), 750_000);
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    #[must_use]
    pub fn size(&self, request: &Resources) -> u64 {
        size_with(&self.max_capacity(), request)
    }

    /// Places a batch: sorts `requests` by decreasing [`Packer::size`] (ties:
    /// lower index first) into `order[..n]`, then places each in that order
    /// with first-fit or best-fit. `out[i]` receives the placement of
    /// `requests[i]`, or stays `None` when it did not fit (place it alone with
    /// [`Packer::place`] to learn why). Returns how many were placed.
    ///
    /// # Errors
    ///
    /// [`BatchError::ScratchTooSmall`] when `order` or `out` has fewer than
    /// `requests.len()` slots; [`BatchError::SlotOccupied`] when one of the
    /// first `requests.len()` slots of `out` is not `None`. Nothing is placed
    /// on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::packer::{ArrayPacker, BatchFit, Domain, Fit};
    /// use respool_core::{Dim, Resources};
    /// let cpu = |n| Resources::new().with(Dim::Cpu, n);
    /// let mut p: ArrayPacker<2> = ArrayPacker::new([Domain::new(cpu(10)?), Domain::new(cpu(10)?)], Fit::First);
    /// // Online first-fit would strand the 8: 2+5 | 5 | 8 does not fit.
    /// let batch = [cpu(2)?, cpu(5)?, cpu(5)?, cpu(8)?];
    /// let (mut order, mut out) = ([0; 4], [None, None, None, None]);
    /// assert_eq!(p.place_batch(&batch, BatchFit::FirstFitDecreasing, &mut order, &mut out)?, 4);
    /// assert_eq!(order, [3, 1, 2, 0]);
    /// let domains: Vec<usize> = out.iter().flatten().map(|x| x.domain()).collect();
    /// assert_eq!(domains, [0, 1, 1, 0]);
    /// for x in out.into_iter().flatten() { p.release(x).unwrap(); }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn place_batch(
        &mut self,
        requests: &[Resources],
        fit: BatchFit,
        order: &mut [usize],
        out: &mut [Option<Placement>],
    ) -> Result<usize, BatchError> {
        let n = requests.len();
        let (Some(order), Some(slots)) = (order.get_mut(..n), out.get_mut(..n)) else {
            return Err(BatchError::ScratchTooSmall {
                needed: n,
                order: order.len(),
                out: out.len(),
            });
        };
        if let Some(index) = slots.iter().position(Option::is_some) {
            return Err(BatchError::SlotOccupied { index });
        }
        let max = self.max_capacity();
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i;
        }
        let size = |i: usize| requests.get(i).map_or(0, |r| size_with(&max, r));
        heapsort(order, |a, b| {
            let (sa, sb) = (size(a), size(b));
            sa > sb || (sa == sb && a < b)
        });
        let fit = match fit {
            BatchFit::FirstFitDecreasing => Fit::First,
            BatchFit::BestFitDecreasing(score) => Fit::Best(score),
        };
        let mut placed = 0usize;
        for &i in order.iter() {
            let (Some(request), Some(slot)) = (requests.get(i), slots.get_mut(i)) else {
                continue;
            };
            let placement = self
                .select_with(request, fit)
                .and_then(|domain| self.commit(domain, request).ok());
            if placement.is_some() {
                *slot = placement;
                placed = placed.saturating_add(1);
            }
        }
        Ok(placed)
    }
}

/// `Σ_d share(request_d, max_d)` over dimensions with a positive `max_d`.
fn size_with(max: &PerDim<u64>, request: &Resources) -> u64 {
    request
        .iter()
        .filter(|&(d, _)| max[d] > 0)
        .fold(0u64, |sum, (d, amount)| {
            sum.saturating_add(share(amount, max[d]))
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cm, packer, r};
    use super::*;
    use crate::resource::Dim;
    use std::vec::Vec;

    fn cpu(n: u64) -> Resources {
        r(&[(Dim::Cpu, n)])
    }

    /// Runs a batch and returns the domain of each request (None: unplaced).
    fn run(caps: &[Resources], batch: &[Resources], fit: BatchFit) -> Vec<Option<usize>> {
        let mut p = packer(caps, Fit::First);
        let mut order = std::vec![0; batch.len()];
        let mut out: Vec<Option<Placement>> = batch.iter().map(|_| None).collect();
        let placed = p.place_batch(batch, fit, &mut order, &mut out).unwrap();
        let domains: Vec<Option<usize>> = out
            .iter()
            .map(|x| x.as_ref().map(Placement::domain))
            .collect();
        assert_eq!(placed, domains.iter().flatten().count());
        for x in out.into_iter().flatten() {
            p.release(x).unwrap();
        }
        assert!(p.is_idle());
        domains
    }

    #[test]
    fn decreasing_fits_by_hand() {
        let best = BatchFit::BestFitDecreasing(Score::MostAllocated);
        // (capacities, batch, algorithm, expected domain per request)
        type Row<'a> = (
            &'a [Resources],
            [Resources; 3],
            BatchFit,
            [Option<usize>; 3],
        );
        let table: [Row<'_>; 3] = [
            // FFD: 6 -> 0, 5 -> 1 (0 has 4 left), 5 -> none (0: 4, 1: 1 left).
            (
                &[cpu(10), cpu(6)],
                [cpu(5), cpu(6), cpu(5)],
                BatchFit::FirstFitDecreasing,
                [Some(1), Some(0), None],
            ),
            // BFD: 6 -> 1 (full after), then both 5 -> 0.
            (
                &[cpu(10), cpu(6)],
                [cpu(5), cpu(6), cpu(5)],
                best,
                [Some(0), Some(1), Some(0)],
            ),
            // Vectors: sizes are cpu/10 + memory/10: (8,0)=0.8, (3,3)=0.6, (0,9)=0.9.
            // Order: (0,9) -> 0, (8,0) -> 0, (3,3) -> 1 (0 has cpu 2 left).
            (
                &[cm(10, 10), cm(10, 10)],
                [cm(8, 0), cm(3, 3), cm(0, 9)],
                BatchFit::FirstFitDecreasing,
                [Some(0), Some(1), Some(0)],
            ),
        ];
        for (caps, batch, fit, want) in table {
            assert_eq!(run(caps, &batch, fit), want, "{fit} {batch:?}");
        }
    }

    #[test]
    fn ties_keep_batch_order_and_sort_is_a_permutation() {
        let mut p = packer(&[cpu(100)], Fit::First);
        let batch = [cpu(3), cpu(7), cpu(3), cpu(1), cpu(7), cpu(0), cpu(9)];
        let mut order = [99usize; 7];
        let mut out: [Option<Placement>; 7] = Default::default();
        assert_eq!(
            p.place_batch(&batch, BatchFit::FirstFitDecreasing, &mut order, &mut out),
            Ok(7)
        );
        assert_eq!(order, [6, 1, 4, 0, 2, 3, 5]);
        for x in out.into_iter().flatten() {
            p.release(x).unwrap();
        }
        // Heapsort of longer reversed and shuffled inputs.
        for n in [0usize, 1, 2, 3, 16, 33] {
            let mut v: Vec<usize> = (0..n).rev().collect();
            heapsort(&mut v, |a, b| a < b);
            assert_eq!(v, (0..n).collect::<Vec<_>>());
            let mut w: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % n.max(1)).collect();
            w.dedup();
            let mut sorted = w.clone();
            sorted.sort_unstable();
            heapsort(&mut w, |a, b| a < b);
            assert_eq!(w, sorted);
        }
    }

    #[test]
    fn bad_scratch_places_nothing() {
        let mut p = packer(&[cpu(100)], Fit::First);
        let batch = [cpu(1), cpu(2)];
        let mut out: [Option<Placement>; 2] = Default::default();
        assert_eq!(
            p.place_batch(&batch, BatchFit::FirstFitDecreasing, &mut [0; 1], &mut out),
            Err(BatchError::ScratchTooSmall {
                needed: 2,
                order: 1,
                out: 2
            })
        );
        out[1] = Some(p.place(&cpu(5)).unwrap());
        assert_eq!(
            p.place_batch(&batch, BatchFit::FirstFitDecreasing, &mut [0; 2], &mut out),
            Err(BatchError::SlotOccupied { index: 1 })
        );
        assert_eq!(p.domains()[0].used_in(Dim::Cpu), 5);
        p.release(out[1].take().unwrap()).unwrap();
        assert!(p.is_idle());
    }

    #[test]
    fn size_ignores_dimensions_nobody_has() {
        let p = packer(&[cm(1000, 0), r(&[(Dim::Cpu, 500)])], Fit::First);
        // cpu 500 of max 1000 = 0.5; memory max is 0: not counted; iops untracked.
        assert_eq!(
            p.size(&r(&[(Dim::Cpu, 500), (Dim::Memory, 7), (Dim::Iops, 9)])),
            500_000
        );
    }
}
