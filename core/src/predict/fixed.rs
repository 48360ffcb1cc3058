//! Fixed-point helpers shared by the predictors.
//!
//! Formats used in this module tree:
//!
//! - **Q16**: an integer `v` stands for `v / 2^16`. Amounts are at most
//!   [`MAX_AMOUNT`] = 2^60, so an amount in Q16 is below 2^76 and is kept in
//!   a `u128` or `i128`.
//! - **Ppm**: [`Ppm`], parts per million in a `u32`, for every ratio that a
//!   caller sees (errors, confidence, percentiles, margins, smoothing factors).
//!
//! Every function here is total: no input makes it panic, overflow or wrap.

use crate::resource::{MAX_AMOUNT, Ppm};

/// Number of fractional bits of the Q16 format.
pub(crate) const Q: u32 = 16;

/// One million, the denominator of [`Ppm`], as `u128`.
pub(crate) const PPM_ONE: u128 = 1_000_000;

/// "No score yet" marker for error scores kept as raw ppm values.
pub(crate) const NO_SCORE: u32 = u32::MAX;

/// `2^(k/16)` in Q16, rounded to nearest, for `k = 0..=16` (computed with
/// 80-digit decimal arithmetic; checked against `f64` in the tests).
const POW2_Q16: [u32; 17] = [
    65_536, 68_438, 71_468, 74_632, 77_936, 81_386, 84_990, 88_752, 92_682, 96_785, 101_070,
    105_545, 110_218, 115_098, 120_194, 125_515, 131_072,
];

/// `min(amount, MAX_AMOUNT)`.
#[inline]
pub(crate) const fn clamp_amount(amount: u64) -> u64 {
    if amount > MAX_AMOUNT {
        MAX_AMOUNT
    } else {
        amount
    }
}

/// A `u128` narrowed to `u64`, saturating.
#[inline]
pub(crate) fn sat_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// An `i128` narrowed to an amount: negative values are zero, values above
/// [`MAX_AMOUNT`] are [`MAX_AMOUNT`].
#[inline]
pub(crate) fn amount_from_i128(v: i128) -> u64 {
    if v <= 0 {
        0
    } else {
        clamp_amount(u64::try_from(v).unwrap_or(u64::MAX))
    }
}

/// `a / b` rounded toward zero (as `i128::checked_div`), `None` when `b == 0`.
///
/// Computed on the magnitudes with unsigned division: the precompiled
/// signed 128-bit division (`__divti3`) lives in a `compiler_builtins` object
/// that references `rust_eh_personality`, so calling it makes a `no_std`,
/// `panic = "abort"` binary fail to link. `i128::MIN / -1` saturates.
pub(crate) fn div_i128(a: i128, b: i128) -> Option<i128> {
    let q = a.unsigned_abs().checked_div(b.unsigned_abs())?;
    let q = i128::try_from(q).unwrap_or(i128::MAX);
    Some(if (a < 0) == (b < 0) {
        q
    } else {
        q.saturating_neg()
    })
}

/// A Q16 `u128` rounded to the nearest integer, saturating.
#[inline]
pub(crate) fn round_q16(v: u128) -> u64 {
    sat_u64(v.saturating_add(1 << (Q - 1)) >> Q)
}

/// `2^(x / 2^16)` for a Q16 exponent `x`, rounded down and at least 1.
///
/// The fractional part is interpolated linearly between the 17 entries of
/// `POW2_Q16` (relative error below 2.5 * 10^-4: linear interpolation of
/// `2^x` over steps of 1/16 overshoots by at most `(ln 2 / 16)^2 / 8`); the integer part is capped at
/// 40, so the result is below 2^41, far above any weight the histogram asks for.
pub(crate) fn pow2_q16(x: u32) -> u64 {
    let int = (x >> Q).min(40);
    let frac = x & 0xffff;
    let k = usize::try_from(frac >> 12).unwrap_or(0);
    let r = frac & 0xfff;
    let lo = POW2_Q16.get(k).copied().unwrap_or(65_536);
    let hi = POW2_Q16
        .get(k.saturating_add(1))
        .copied()
        .unwrap_or(131_072);
    // hi - lo < 2^13 and r < 2^12: the product fits a u32.
    let step = hi.saturating_sub(lo).saturating_mul(r) >> 12;
    let mantissa = u64::from(lo.saturating_add(step)); // Q16, in [2^16, 2^17)
    // mantissa * 2^int / 2^16, with int <= 40: at most 2^41, no bit is lost.
    let v = if int >= Q {
        mantissa
            .checked_shl(int.saturating_sub(Q))
            .unwrap_or(u64::MAX)
    } else {
        mantissa.checked_shr(Q.saturating_sub(int)).unwrap_or(0)
    };
    v.max(1)
}

/// The symmetric relative error `|p - a| / max(p, a)` in ppm (0 when both
/// are zero). It lies in `[0, 1]`, so one wild sample cannot dominate a
/// smoothed score for long.
#[inline]
pub(crate) fn relative_error(predicted: u64, actual: u64) -> u32 {
    Ppm::ratio(predicted.abs_diff(actual), predicted.max(actual)).as_ppm()
}

/// Whether `predicted` is within 10% of `actual`: `|p - a| * 10 <= a`.
#[inline]
pub(crate) fn within_tenth(predicted: u64, actual: u64) -> bool {
    u128::from(predicted.abs_diff(actual)).saturating_mul(10) <= u128::from(actual)
}

/// One step of an exponentially weighted average of ppm scores:
/// `old + (new - old) * alpha`, where `old == NO_SCORE` means "first value".
pub(crate) fn smooth_score(old: u32, new: u32, alpha: Ppm) -> u32 {
    if old == NO_SCORE {
        return new.min(NO_SCORE.saturating_sub(1));
    }
    let moved = approach_q16(u128::from(old), u128::from(new), alpha);
    u32::try_from(moved)
        .unwrap_or(u32::MAX)
        .min(NO_SCORE.saturating_sub(1))
}

/// Moves a Q16 level toward a Q16 target by `alpha` (ppm):
/// `level + (target - level) * alpha`, never leaving `[min, max]` of the two.
pub(crate) fn approach_q16(level: u128, target: u128, alpha: Ppm) -> u128 {
    let a = u128::from(alpha.as_ppm()).min(PPM_ONE);
    if target >= level {
        level.saturating_add(mul_ppm(target.saturating_sub(level), a))
    } else {
        level.saturating_sub(mul_ppm(level.saturating_sub(target), a))
    }
}

/// `v * a / 10^6` rounded down, for `a <= 10^6`, exact for every `v` (the
/// quotient and the remainder by 10^6 are scaled separately).
fn mul_ppm(v: u128, a: u128) -> u128 {
    let (q, r) = (v / PPM_ONE, v % PPM_ONE);
    q.saturating_mul(a)
        .saturating_add(r.saturating_mul(a) / PPM_ONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_arithmetic, clippy::cast_precision_loss)]
    fn pow2_table_matches_f64() {
        for (k, &v) in POW2_Q16.iter().enumerate() {
            let exact = 2f64.powf(k as f64 / 16.0) * 65536.0;
            assert!((v as f64 - exact).abs() <= 0.5, "k={k}: {v} vs {exact}");
        }
        // Interpolated values stay within (ln 2 / 16)^2 / 8 = 2.35e-4 of 2^x.
        for x in (0u32..(3 << 16)).step_by(977) {
            let got = pow2_q16(x.saturating_add(16 << 16)) as f64 / 65536.0;
            let exact = 2f64.powf(x as f64 / 65536.0);
            assert!(
                (got / exact - 1.0).abs() < 2.5e-4,
                "x={x}: {got} vs {exact}"
            );
            // Below only by the rounding of the table and of the result (2^-16).
            assert!(got >= exact * (1.0 - 3e-5), "x={x}: undershoot");
        }
    }

    #[test]
    fn pow2_table() {
        // (Q16 exponent, expected 2^(x/65536) rounded down)
        let table = [
            (0, 1),
            (1 << 16, 2),
            (16 << 16, 65_536),
            ((16 << 16) + (1 << 15), 92_682), // 2^16.5 = 92681.9, table entry 8
            (24 << 16, 1 << 24),
            (40 << 16, 1 << 24 << 16),
            (u32::MAX, 131_070 << 24), // int capped at 40, mantissa 1.99997
        ];
        for (x, want) in table {
            assert_eq!(pow2_q16(x), want, "x={x:#x}");
        }
    }

    #[test]
    fn relative_error_and_tenth_table() {
        // (predicted, actual, symmetric error ppm, within 10%)
        let table = [
            (0, 0, 0, true),
            (100, 100, 0, true),
            (110, 100, 90_909, true),
            (111, 100, 99_099, false),
            (90, 100, 100_000, true),
            (89, 100, 110_000, false),
            (0, 5, 1_000_000, false),
            (5, 0, 1_000_000, false),
            (550, 100, 818_181, false),
            (u64::MAX, 0, 1_000_000, false),
            (u64::MAX, u64::MAX, 0, true),
        ];
        for (p, a, err, hit) in table {
            assert_eq!(relative_error(p, a), err, "{p} vs {a}");
            assert_eq!(within_tenth(p, a), hit, "{p} vs {a}");
        }
    }

    #[test]
    fn signed_division_table() {
        // (a, b): must agree with the built-in operators wherever they are defined.
        let table = [
            (7, 2),
            (-7, 2),
            (7, -2),
            (-7, -2),
            (0, 5),
            (i128::MAX, 3),
            (i128::MIN, 3),
            (i128::MIN, i128::MIN),
            (i128::MIN + 1, -1),
        ];
        for (a, b) in table {
            assert_eq!(div_i128(a, b), a.checked_div(b), "{a} / {b}");
        }
        assert_eq!(div_i128(5, 0), None);
        assert_eq!(div_i128(i128::MIN, -1), Some(i128::MAX), "saturates");
    }

    #[test]
    fn smoothing_table() {
        let quarter = Ppm::from_ppm(250_000);
        // (old, new, expected)
        let table = [
            (NO_SCORE, 400_000, 400_000),
            (NO_SCORE, NO_SCORE, NO_SCORE - 1),
            (400_000, 0, 300_000),
            (0, 400_000, 100_000),
            (1_000_000, 1_000_000, 1_000_000),
        ];
        for (old, new, want) in table {
            assert_eq!(smooth_score(old, new, quarter), want, "{old} {new}");
        }
        assert_eq!(
            approach_q16(0, 1000 << 16, Ppm::from_ppm(500_000)),
            500 << 16
        );
        assert_eq!(approach_q16(1000 << 16, 0, Ppm::ONE), 0);
        assert_eq!(
            approach_q16(u128::MAX, 0, Ppm::MAX),
            0,
            "alpha capped at one"
        );
        assert_eq!(round_q16((5 << 16) + (1 << 15)), 6);
        assert_eq!(round_q16(u128::MAX), u64::MAX);
        assert_eq!(amount_from_i128(-5), 0);
        assert_eq!(amount_from_i128(i128::MAX), MAX_AMOUNT);
    }
}
