//! Online linear regression of usage on one size feature: `usage ~ a + b * size`.
//!
//! # Algorithm
//!
//! Ordinary least squares for one regressor, kept as running weighted moments
//! rather than raw sums: the means of size and usage, the variance of size and
//! the covariance of size and usage. The slope is `b = cov(s, y) / var(s)` and
//! the line passes through the means, so a prediction is
//! `y = mean_y + b * (s - mean_s)`. Each sample updates the moments with a
//! weight `alpha = 1 / min(n, window)` (D. Finch, "Incremental calculation of
//! weighted mean and variance", University of Cambridge, 2009, eqs. 122-143;
//! Welford's recurrence generalised to a covariance):
//!
//! ```text
//! ds = s - mean_s          dy = y - mean_y            (old means)
//! mean_s += alpha * ds     mean_y += alpha * dy
//! var_s   = (1 - alpha) * (var_s  + alpha * ds * ds)
//! cov_sy  = (1 - alpha) * (cov_sy + alpha * ds * dy)
//! ```
//!
//! For the first `window` samples `alpha = 1/n` and this is exactly the
//! cumulative least-squares fit (Welford 1962); afterwards the weights decay
//! geometrically by `1 - 1/window` per sample, a forgetting factor as in
//! recursive least squares, so the fit follows a drifting relation. Compared
//! with sums of `s`, `s^2`, `s*y`, the moments never grow with `n` and never
//! subtract large nearly equal numbers, which is what makes 128-bit fixed
//! point sufficient.
//!
//! # Fixed point
//!
//! Sizes are scaled down by a power of two (`size >> shift`) so that every
//! scaled size seen stays below 2^32; when a larger size arrives `shift` grows
//! and the moments are rescaled (`mean_s >> d`, `var_s >> 2d`, `cov >> d`).
//! Means, variance and covariance are Q16 in `i128`: `|ds| < 2^48`,
//! `|dy| < 2^76` (usage is clamped to 2^60), so `ds * dy < 2^124`; after the
//! Q16 shift and the multiplication by `window - 1 < 2^16` the products stay
//! below 2^124. A prediction computes `cov / var` as a quotient plus a
//! remainder term so that extrapolating far beyond the sizes seen saturates
//! instead of overflowing; the result is clamped to `[0, MAX_AMOUNT]`.

use crate::predict::fixed::{Q, amount_from_i128, clamp_amount, div_i128};
use crate::resource::MAX_AMOUNT;

/// Largest forgetting window (samples); larger values are clamped.
pub const MAX_WINDOW: u32 = 1 << 16;

/// Bits a scaled size may use.
const SIZE_BITS: u32 = 32;

/// An online least-squares fit of `usage ~ a + b * size` in fixed point.
///
/// # Examples
///
/// ```
/// use respool_core::predict::SizeRegression;
///
/// let mut r = SizeRegression::new();
/// // usage = 1000 + 3 * size
/// for size in [10u64, 50, 20, 80, 40] {
///     r.push(size, 1000 + 3 * size, 64);
/// }
/// assert_eq!(r.predict(100), Some(1300));
/// assert_eq!(r.predict(0), Some(1000));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SizeRegression {
    /// Samples seen (saturating).
    count: u64,
    /// Sizes are used as `size >> shift`, which stays below 2^32.
    shift: u32,
    /// Weighted mean of scaled sizes, Q16.
    mean_s: i128,
    /// Weighted mean of usage, Q16.
    mean_y: i128,
    /// Weighted population variance of scaled sizes, Q16.
    var_s: i128,
    /// Weighted population covariance of scaled sizes and usage, Q16.
    cov_sy: i128,
}

impl SizeRegression {
    /// No samples.
    #[must_use]
    pub const fn new() -> SizeRegression {
        SizeRegression {
            count: 0,
            shift: 0,
            mean_s: 0,
            mean_y: 0,
            var_s: 0,
            cov_sy: 0,
        }
    }

    /// Samples seen.
    #[must_use]
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// Adds one `(size, usage)` pair; usage is clamped to [`MAX_AMOUNT`]. The
    /// fit forgets with weight `1 - 1/window` per sample once `window`
    /// samples have been seen (`window` is clamped to `2..=MAX_WINDOW`).
    pub fn push(&mut self, size: u64, usage: u64, window: u32) {
        self.fit_size(size);
        let x = i128::from(size.checked_shr(self.shift).unwrap_or(0)) << Q;
        let y = i128::from(clamp_amount(usage)) << Q;
        self.count = self.count.saturating_add(1);
        if self.count == 1 {
            (self.mean_s, self.mean_y, self.var_s, self.cov_sy) = (x, y, 0, 0);
            return;
        }
        let window = u64::from(window.clamp(2, MAX_WINDOW));
        let n = i128::from(self.count.min(window));
        let ds = x.saturating_sub(self.mean_s);
        let dy = y.saturating_sub(self.mean_y);
        self.mean_s = self.mean_s.saturating_add(div_i128(ds, n).unwrap_or(0));
        self.mean_y = self.mean_y.saturating_add(div_i128(dy, n).unwrap_or(0));
        self.var_s = Self::step(self.var_s, ds.saturating_mul(ds) >> Q, n);
        self.cov_sy = Self::step(self.cov_sy, ds.saturating_mul(dy) >> Q, n);
    }

    /// `(1 - 1/n) * (c + p/n) = c - c/n + p * (n - 1) / n^2` for a Q16 product `p`.
    fn step(c: i128, p: i128, n: i128) -> i128 {
        let decayed = c.saturating_sub(div_i128(c, n).unwrap_or(0));
        let add = div_i128(p.saturating_mul(n.saturating_sub(1)), n.saturating_mul(n)).unwrap_or(0);
        decayed.saturating_add(add)
    }

    /// Grows `shift` until `size >> shift < 2^32`, rescaling the moments.
    fn fit_size(&mut self, size: u64) {
        let scaled = size.checked_shr(self.shift).unwrap_or(0);
        let bits = u64::BITS.saturating_sub(scaled.leading_zeros());
        let extra = bits.saturating_sub(SIZE_BITS);
        if extra == 0 {
            return;
        }
        self.shift = self.shift.saturating_add(extra);
        self.mean_s = self.mean_s.checked_shr(extra).unwrap_or(0);
        self.var_s = self.var_s.checked_shr(extra.saturating_mul(2)).unwrap_or(0);
        self.cov_sy = self.cov_sy.checked_shr(extra).unwrap_or(0);
    }

    /// The fitted usage at `size`, clamped to `[0, MAX_AMOUNT]`; `None` before
    /// two samples. When every size seen was the same, the slope is unknown and
    /// the prediction is the weighted mean usage.
    #[must_use]
    pub fn predict(&self, size: u64) -> Option<u64> {
        if self.count < 2 {
            return None;
        }
        let x = i128::from(size.checked_shr(self.shift).unwrap_or(0)) << Q;
        let d = x.saturating_sub(self.mean_s);
        let y = if self.var_s > 0 {
            // cov / var * d without overflowing: (q + r / var) * d.
            let q = div_i128(self.cov_sy, self.var_s).unwrap_or(0);
            // |q * var| <= |cov|: the remainder without a second division.
            let r = self.cov_sy.saturating_sub(q.saturating_mul(self.var_s));
            let frac = div_i128(r.saturating_mul(d), self.var_s).unwrap_or(0);
            self.mean_y
                .saturating_add(q.saturating_mul(d))
                .saturating_add(frac)
        } else {
            self.mean_y
        };
        // Round Q16 to nearest (saturating), then clamp to [0, MAX_AMOUNT].
        Some(amount_from_i128(y.saturating_add(1 << (Q - 1)) >> Q).min(MAX_AMOUNT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(pairs: &[(u64, u64)], window: u32) -> SizeRegression {
        let mut r = SizeRegression::new();
        for &(s, y) in pairs {
            r.push(s, y, window);
        }
        r
    }

    /// (samples, window, query size, expected prediction)
    type Case = (&'static [(u64, u64)], u32, u64, Option<u64>);

    #[test]
    fn hand_checked_table() {
        let table: [Case; 9] = [
            (&[], 64, 5, None),
            (&[(10, 100)], 64, 5, None),
            // Two points define the line y = 10 s.
            (&[(10, 100), (20, 200)], 64, 30, Some(300)),
            (&[(10, 100), (20, 200)], 64, 0, Some(0)),
            // y = 1000 + 3 s, exact.
            (&[(10, 1030), (50, 1150), (20, 1060)], 64, 100, Some(1300)),
            // Least squares through (1, 1), (2, 3), (3, 2): slope 1/2,
            // intercept 1, so 1 + 0.5 * 5 = 3.5, rounded to 4.
            (&[(1, 1), (2, 3), (3, 2)], 64, 5, Some(4)),
            // Same size every time: the mean usage (20).
            (&[(7, 10), (7, 30), (7, 20)], 64, 1000, Some(20)),
            // Negative extrapolation is clamped at zero: y = 100 - 10 s.
            (&[(1, 90), (5, 50)], 64, 50, Some(0)),
            // Sizes beyond 2^32 are scaled down: y = s / 2^20 exactly.
            (
                &[(1 << 40, 1 << 20), (1 << 41, 1 << 21)],
                64,
                1 << 42,
                Some(1 << 22),
            ),
        ];
        for (pairs, window, size, want) in table {
            assert_eq!(
                fit(pairs, window).predict(size),
                want,
                "{pairs:?} at {size}"
            );
        }
    }

    #[test]
    fn forgetting_follows_a_new_relation() {
        // 100 samples of y = 10 s, then 200 of y = 20 s: with a window of 16
        // the old relation has weight (15/16)^200 < 3e-6.
        let mut r = SizeRegression::new();
        for i in 0..100u64 {
            r.push(10 + i % 7, 10 * (10 + i % 7), 16);
        }
        assert_eq!(r.predict(100), Some(1000));
        for i in 0..200u64 {
            r.push(10 + i % 7, 20 * (10 + i % 7), 16);
        }
        let p = r.predict(100).unwrap();
        assert!((1990..=2010).contains(&p), "{p}");
        // Without forgetting (window 2^16) the fit is the pooled one.
        let mut pooled = SizeRegression::new();
        for i in 0..100u64 {
            pooled.push(10 + i % 7, 10 * (10 + i % 7), MAX_WINDOW);
        }
        for i in 0..100u64 {
            pooled.push(10 + i % 7, 20 * (10 + i % 7), MAX_WINDOW);
        }
        let p = pooled.predict(100).unwrap();
        assert!((1450..=1550).contains(&p), "{p}");
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut r = SizeRegression::new();
        let series = [
            (u64::MAX, u64::MAX),
            (0, 0),
            (u64::MAX, 0),
            (0, u64::MAX),
            (1, MAX_AMOUNT),
            (u64::MAX, MAX_AMOUNT),
        ];
        for (s, y) in series {
            r.push(s, y, u32::MAX);
            for q in [0, 1, u64::MAX] {
                let p = r.predict(q);
                assert!(p.is_none_or(|p| p <= MAX_AMOUNT));
            }
        }
        assert_eq!(r.count(), 6);
        // A steep slope extrapolated far away saturates, then clamps.
        let steep = fit(&[(0, 0), (1, MAX_AMOUNT)], 64);
        assert_eq!(steep.predict(u64::MAX), Some(MAX_AMOUNT));
    }
}
