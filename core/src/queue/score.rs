//! The scorers of the queue and how they combine.
//!
//! A queued [`Task`] is ranked by one integer score (higher goes first), the
//! sum of four terms, each a non-negative integer weight from [`Weights`]
//! times an integer feature. Everything is `i128` and exact: with weights
//! below 2^32, priorities below 2^31 and times below 2^64, every term is below
//! 2^99 in magnitude, so the sum of the four never comes near `i128::MAX`
//! (2^127). The saturating operations the crate's lints require therefore never
//! saturate, and the formulas below hold exactly, which is what lets the queue
//! fold the time-dependent terms into time-invariant heap keys (see the
//! [parent module](super)).
//!
//! | term | formula | source |
//! |------|---------|--------|
//! | priority | `w_p * priority` | static priority |
//! | aging | `w_a * (now - enqueued)` (negative if `now` is before `enqueued`) | aging in classic OS schedulers |
//! | deadline | `w_s * max(0, H - slack)`, `slack = deadline - now - expected` (0 without deadline) | least-slack-time first |
//! | fit | `w_f * F + w_t * align(request, free, capacity)` if the request fits in `free`, else 0 | Tetris (SIGCOMM 2014) |
//!
//! Time is in nanoseconds of the caller's monotonic clock; the fit features are
//! in parts per million ([`FIT_SCALE`]). With `w_p = 1_000_000_000` and
//! `w_a = 1`, one priority level is worth one second of waiting.
//!
//! - **Aging** raises the score of a waiting task linearly with its waiting
//!   time, so a low-priority task eventually overtakes any higher-priority task
//!   that arrived later: after `w_p * (p_high - p_low) / w_a` nanoseconds of
//!   extra waiting (the classic cure for starvation in priority schedulers,
//!   e.g. Silberschatz, Galvin and Gagne, *Operating System Concepts*, "aging";
//!   the decaying priorities of the 4.3BSD scheduler).
//! - **Deadline slack** is least-slack-time first (least laxity first, Mok,
//!   1983): the slack of a task is how long it can still wait and finish by its
//!   deadline, `deadline - now - expected`; less slack is more urgent. The term
//!   starts at zero when the slack falls to the horizon `H`
//!   ([`Weights::slack_horizon_ns`]) and then grows by `w_s` per nanosecond, past
//!   the point where the deadline can no longer be met. A deadline therefore
//!   never lowers a task's score, and a task without deadline gets no bonus.
//! - **Fit** looks at the resources that are free now: `F` is [`FIT_SCALE`] when
//!   the request fits in the free capacity (a "fits now" bonus), and `align` is
//!   the alignment of Tetris (Grandl et al., "Multi-resource packing for cluster
//!   schedulers", SIGCOMM 2014): the dot product of the request and the free
//!   vector, both normalised by capacity, over the dimensions set in all three,
//!   each factor capped at one:
//!   `align = sum_d min(1, r_d / c_d) * min(1, f_d / c_d)` in parts per million,
//!   at most [`MAX_ALIGNMENT`]. Like Tetris, a task that does not fit scores
//!   zero for fit: it cannot be placed now.

use crate::resource::{Dim, Ppm, Resources};
use crate::tracker::Tracker;

use super::Task;

/// The fixed-point scale of the fit features: `1_000_000` is one (ppm).
pub const FIT_SCALE: i128 = 1_000_000;

/// The largest value of [`alignment`]: [`Dim::COUNT`] times one, in ppm.
// Dim::COUNT is 10: the product is a compile-time constant far below u64::MAX.
#[allow(clippy::arithmetic_side_effects)]
pub const MAX_ALIGNMENT: u64 = Dim::COUNT as u64 * 1_000_000;

/// The resources the fit scorers compare a request against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    /// What is free now (a dimension unset here is untracked: anything fits).
    pub free: Resources,
    /// The capacity the alignment normalises by (Tetris divides by the
    /// machine's capacity); dimensions unset here add nothing to alignment.
    pub capacity: Resources,
}

impl Availability {
    /// Nothing known: every request fits, alignment is zero.
    pub const NONE: Availability = Availability {
        free: Resources::NONE,
        capacity: Resources::NONE,
    };

    /// From explicit free and capacity vectors.
    #[must_use]
    pub const fn new(free: Resources, capacity: Resources) -> Availability {
        Availability { free, capacity }
    }

    /// What `tracker` has available now, against its effective capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::queue::Availability;
    /// use respool_core::{Dim, Resources, Tracker};
    /// let t = Tracker::new(&Resources::new().with(Dim::Memory, 1000)?);
    /// let _held = t.try_reserve(&Resources::new().with(Dim::Memory, 300)?).unwrap();
    /// let a = Availability::of(&t);
    /// assert_eq!(a.free.get(Dim::Memory), Some(700));
    /// assert_eq!(a.capacity.get(Dim::Memory), Some(1000));
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    #[must_use]
    pub fn of(tracker: &Tracker) -> Availability {
        Availability {
            free: tracker.available(),
            capacity: tracker.effective_capacity(),
        }
    }
}

/// The weights of the four scorers. Zero switches a scorer off.
///
/// All weights are `u32` (non-negative), which keeps every score exact (see
/// the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Weights {
    /// Points per priority level.
    pub priority: u32,
    /// Points per nanosecond of waiting.
    pub aging: u32,
    /// Points per nanosecond by which the slack is below the horizon.
    pub slack: u32,
    /// The slack, in nanoseconds, at which the deadline term starts to count.
    pub slack_horizon_ns: u64,
    /// Points per ppm of the "fits now" feature (which is 0 or [`FIT_SCALE`]).
    pub fits: u32,
    /// Points per ppm of Tetris alignment (0 to [`MAX_ALIGNMENT`]).
    pub alignment: u32,
}

impl Default for Weights {
    /// One priority level is worth one second of waiting; the deadline term
    /// starts one second before the latest start and grows as fast as aging;
    /// fit is off (turn it on for packing-aware ordering).
    fn default() -> Self {
        Weights {
            priority: 1_000_000_000,
            aging: 1,
            slack: 1,
            slack_horizon_ns: 1_000_000_000,
            fits: 0,
            alignment: 0,
        }
    }
}

impl Weights {
    /// Only priority (one point per level): strict priority, FIFO among equals.
    pub const PRIORITY_ONLY: Weights = Weights {
        priority: 1,
        aging: 0,
        slack: 0,
        slack_horizon_ns: 0,
        fits: 0,
        alignment: 0,
    };

    /// The score of `task` at `now_ns` against `avail`: the sum of
    /// [`priority_term`], [`aging_term`], [`slack_term`] and [`fit_term`].
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::queue::{Availability, Task, Weights};
    /// use respool_core::Resources;
    /// let w = Weights { priority: 100, aging: 2, ..Weights::PRIORITY_ONLY };
    /// let t = Task::new("a", Resources::NONE, 1_000).with_priority(3);
    /// // 100 * 3 + 2 * (1_500 - 1_000)
    /// assert_eq!(w.score(&t, 1_500, &Availability::NONE), 1_300);
    /// ```
    #[must_use]
    pub fn score<T>(&self, task: &Task<T>, now_ns: u64, avail: &Availability) -> i128 {
        priority_term(self.priority, task.priority)
            .saturating_add(aging_term(self.aging, task.enqueued_ns, now_ns))
            .saturating_add(slack_term(
                self.slack,
                self.slack_horizon_ns,
                task.deadline_ns,
                task.expected_ns,
                now_ns,
            ))
            .saturating_add(fit_term(self, &task.request, avail))
    }

    /// The largest value [`fit_term`] can take with these weights against any
    /// availability: `w_f * FIT_SCALE + w_t * MAX_ALIGNMENT`.
    #[must_use]
    pub fn max_fit(&self) -> i128 {
        i128::from(self.fits)
            .saturating_mul(FIT_SCALE)
            .saturating_add(i128::from(self.alignment).saturating_mul(i128::from(MAX_ALIGNMENT)))
    }

    /// The largest value [`fit_term`] can take against `avail`:
    /// `w_f * FIT_SCALE + w_t * m * FIT_SCALE`, where `m` is the number of
    /// dimensions set in both `avail.free` and `avail.capacity` (only those
    /// add to [`alignment`]). At most [`Weights::max_fit`]; this is the `M` of
    /// the queue's search bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::queue::{Availability, Weights};
    /// use respool_core::{Dim, Resources};
    /// let w = Weights { fits: 2, alignment: 3, ..Weights::PRIORITY_ONLY };
    /// let r = Resources::new().with(Dim::Cpu, 1)?.with(Dim::Memory, 1)?;
    /// assert_eq!(w.fit_bound(&Availability::new(r, r)), 2_000_000 + 3 * 2_000_000);
    /// assert_eq!(w.fit_bound(&Availability::NONE), 2_000_000);
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    #[must_use]
    pub fn fit_bound(&self, avail: &Availability) -> i128 {
        let dims = avail.free.dims().intersection(avail.capacity.dims()).len();
        let max_align = i128::try_from(dims).unwrap_or(0).saturating_mul(FIT_SCALE);
        i128::from(self.fits)
            .saturating_mul(FIT_SCALE)
            .saturating_add(i128::from(self.alignment).saturating_mul(max_align))
    }

    /// The time-invariant heap key of a task in the all-tasks heap:
    /// `w_p * priority - w_a * enqueued`, so that
    /// `priority_term + aging_term = key_all + w_a * now`.
    pub(crate) fn key_all<T>(&self, task: &Task<T>) -> i128 {
        priority_term(self.priority, task.priority)
            .saturating_sub(i128::from(self.aging).saturating_mul(i128::from(task.enqueued_ns)))
    }

    /// The time-invariant key of a task with a deadline in the deadline heap:
    /// `key_all + w_s * (expected + H - deadline)`, so that, when the deadline
    /// term is active, `priority + aging + deadline = key_deadline + (w_a + w_s) * now`.
    pub(crate) fn key_deadline<T>(&self, task: &Task<T>, deadline_ns: u64) -> i128 {
        let lead = i128::from(task.expected_ns.unwrap_or(0))
            .saturating_add(i128::from(self.slack_horizon_ns))
            .saturating_sub(i128::from(deadline_ns));
        self.key_all(task)
            .saturating_add(i128::from(self.slack).saturating_mul(lead))
    }

    /// `w_a * now`: what the all-tasks heap adds to its keys at `now`.
    pub(crate) fn offset_all(&self, now_ns: u64) -> i128 {
        i128::from(self.aging).saturating_mul(i128::from(now_ns))
    }

    /// `(w_a + w_s) * now`: what the deadline heap adds to its keys at `now`.
    pub(crate) fn offset_deadline(&self, now_ns: u64) -> i128 {
        i128::from(self.aging)
            .saturating_add(i128::from(self.slack))
            .saturating_mul(i128::from(now_ns))
    }
}

/// Priority: `weight * priority`.
#[must_use]
pub fn priority_term(weight: u32, priority: i32) -> i128 {
    i128::from(weight).saturating_mul(i128::from(priority))
}

/// Aging: `weight * (now - enqueued)`, negative when `now` is earlier than
/// `enqueued` (a clock misuse the formula tolerates: it stays linear).
#[must_use]
pub fn aging_term(weight: u32, enqueued_ns: u64, now_ns: u64) -> i128 {
    let waited = i128::from(now_ns).saturating_sub(i128::from(enqueued_ns));
    i128::from(weight).saturating_mul(waited)
}

/// Slack: `deadline - now - expected` in nanoseconds (negative once the
/// deadline can no longer be met), or `None` without a deadline.
#[must_use]
pub fn slack_ns(deadline_ns: Option<u64>, expected_ns: Option<u64>, now_ns: u64) -> Option<i128> {
    let d = deadline_ns?;
    Some(
        i128::from(d)
            .saturating_sub(i128::from(now_ns))
            .saturating_sub(i128::from(expected_ns.unwrap_or(0))),
    )
}

/// Deadline urgency: `weight * max(0, horizon - slack)`, zero without deadline.
#[must_use]
pub fn slack_term(
    weight: u32,
    horizon_ns: u64,
    deadline_ns: Option<u64>,
    expected_ns: Option<u64>,
    now_ns: u64,
) -> i128 {
    match slack_ns(deadline_ns, expected_ns, now_ns) {
        Some(slack) => {
            let below = i128::from(horizon_ns).saturating_sub(slack).max(0);
            i128::from(weight).saturating_mul(below)
        }
        None => 0,
    }
}

/// Whether `request` fits in `free` now (dimensions unset in `free` are
/// untracked and always fit).
#[must_use]
pub fn fits(request: &Resources, free: &Resources) -> bool {
    request.fits_within(free)
}

/// Tetris alignment of `request` with the free capacity, in ppm:
/// `sum_d min(1, r_d / c_d) * min(1, f_d / c_d)` over the dimensions set in
/// the request, in `free` and in `capacity`. Each ratio is rounded down to a
/// ppm, the product too. At most [`MAX_ALIGNMENT`].
///
/// # Examples
///
/// ```
/// use respool_core::queue::{alignment, Availability};
/// use respool_core::{Dim, Resources};
/// let cap = Resources::new().with(Dim::Cpu, 4_000)?.with(Dim::Memory, 1_000)?;
/// let free = Resources::new().with(Dim::Cpu, 2_000)?.with(Dim::Memory, 1_000)?;
/// let req = Resources::new().with(Dim::Cpu, 1_000)?.with(Dim::Memory, 100)?;
/// // cpu: 0.25 * 0.5, memory: 0.1 * 1.0
/// assert_eq!(alignment(&req, &Availability::new(free, cap)), 125_000 + 100_000);
/// # Ok::<(), respool_core::ResourceError>(())
/// ```
#[must_use]
pub fn alignment(request: &Resources, avail: &Availability) -> u64 {
    let one = Ppm::ONE;
    let dims = request
        .dims()
        .intersection(avail.free.dims())
        .intersection(avail.capacity.dims());
    dims.iter().fold(0u64, |sum, d| {
        let cap = avail.capacity.amount(d);
        let r = Ppm::ratio(request.amount(d), cap).min(one);
        let f = Ppm::ratio(avail.free.amount(d), cap).min(one);
        // r, f <= 10^6: the product is below 10^12 and the quotient at most 10^6.
        let term = u64::from(r.as_ppm()).saturating_mul(u64::from(f.as_ppm())) / 1_000_000;
        sum.saturating_add(term)
    })
}

/// Fit: `w_f * FIT_SCALE + w_t * alignment` when `request` fits in
/// `avail.free`, zero otherwise. Between 0 and [`Weights::max_fit`].
#[must_use]
pub fn fit_term(weights: &Weights, request: &Resources, avail: &Availability) -> i128 {
    if (weights.fits == 0 && weights.alignment == 0) || !fits(request, &avail.free) {
        return 0;
    }
    let align = if weights.alignment == 0 {
        0
    } else {
        alignment(request, avail)
    };
    i128::from(weights.fits)
        .saturating_mul(FIT_SCALE)
        .saturating_add(i128::from(weights.alignment).saturating_mul(i128::from(align)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Dim;

    fn r(pairs: &[(Dim, u64)]) -> Resources {
        Resources::from_pairs(pairs).unwrap()
    }

    #[test]
    fn priority_table() {
        // (weight, priority, expected)
        let table = [
            (0, 5, 0),
            (1, -3, -3),
            (1_000_000_000, 2, 2_000_000_000),
            (u32::MAX, i32::MIN, -(4_294_967_295i128 * 2_147_483_648)),
            (u32::MAX, i32::MAX, 4_294_967_295i128 * 2_147_483_647),
        ];
        for (w, p, want) in table {
            assert_eq!(priority_term(w, p), want, "w={w} p={p}");
        }
    }

    #[test]
    fn aging_table() {
        // (weight, enqueued, now, expected)
        let table = [
            (1, 100, 100, 0),
            (1, 100, 350, 250),
            (3, 0, 1_000, 3_000),
            (0, 0, u64::MAX, 0),
            (2, 500, 100, -800),
            (
                u32::MAX,
                0,
                u64::MAX,
                4_294_967_295i128 * 18_446_744_073_709_551_615,
            ),
        ];
        for (w, e, n, want) in table {
            assert_eq!(aging_term(w, e, n), want, "w={w} e={e} n={n}");
        }
    }

    #[test]
    fn slack_table() {
        // (deadline, expected, now, slack, term with weight 2 and horizon 100)
        type Row = (Option<u64>, Option<u64>, u64, Option<i128>, i128);
        let table: [Row; 7] = [
            (None, Some(5), 0, None, 0),
            // Lots of slack: no urgency.
            (Some(1_000), None, 0, Some(1_000), 0),
            // Exactly at the horizon: still zero.
            (Some(1_000), Some(100), 800, Some(100), 0),
            // 30 ns inside the horizon.
            (Some(1_000), Some(100), 830, Some(70), 60),
            // Latest start passed by 50: slack -50, 150 below the horizon.
            (Some(1_000), Some(100), 950, Some(-50), 300),
            // Deadline long gone.
            (Some(0), None, 1_000, Some(-1_000), 2_200),
            (Some(u64::MAX), Some(u64::MAX), 0, Some(0), 200),
        ];
        for (d, e, n, slack, term) in table {
            assert_eq!(slack_ns(d, e, n), slack, "{d:?} {e:?} {n}");
            assert_eq!(slack_term(2, 100, d, e, n), term, "{d:?} {e:?} {n}");
        }
    }

    #[test]
    fn fit_table() {
        let cap = r(&[(Dim::Cpu, 4_000), (Dim::Memory, 1_000)]);
        let free = r(&[(Dim::Cpu, 2_000), (Dim::Memory, 500)]);
        let avail = Availability::new(free, cap);
        let w = Weights {
            fits: 3,
            alignment: 2,
            ..Weights::PRIORITY_ONLY
        };
        // (request, fits, alignment, fit term)
        let table = [
            (Resources::NONE, true, 0, 3_000_000),
            // cpu 0.25 * 0.5 = 0.125
            (r(&[(Dim::Cpu, 1_000)]), true, 125_000, 3_000_000 + 250_000),
            // cpu 0.5 * 0.5 + memory 0.5 * 0.5 = 0.5: the whole free space.
            (
                r(&[(Dim::Cpu, 2_000), (Dim::Memory, 500)]),
                true,
                500_000,
                3_000_000 + 1_000_000,
            ),
            // Does not fit (memory 501 > 500): no fit score at all.
            (r(&[(Dim::Memory, 501)]), false, 250_500, 0),
            // Untracked dimension: fits, adds no alignment.
            (r(&[(Dim::Gpu, 7)]), true, 0, 3_000_000),
        ];
        for (req, f, a, term) in table {
            assert_eq!(fits(&req, &avail.free), f, "{req}");
            assert_eq!(alignment(&req, &avail), a, "{req}");
            assert_eq!(fit_term(&w, &req, &avail), term, "{req}");
            assert!(term <= w.fit_bound(&avail) && w.fit_bound(&avail) <= w.max_fit());
        }
        assert_eq!(w.max_fit(), 3 * 1_000_000 + 2 * 10_000_000);
        // Two dimensions tracked by both: alignment adds at most two.
        assert_eq!(w.fit_bound(&avail), 3 * 1_000_000 + 2 * 2_000_000);
        // Ratios are capped at one: a request larger than capacity (but fitting
        // an untracked free) and free above capacity.
        let odd = Availability::new(r(&[(Dim::Cpu, 9_000)]), r(&[(Dim::Cpu, 1_000)]));
        assert_eq!(alignment(&r(&[(Dim::Cpu, 5_000)]), &odd), 1_000_000);
        // A zero capacity: any positive request is "infinitely" large, capped.
        let zero = Availability::new(r(&[(Dim::Gpu, 0)]), r(&[(Dim::Gpu, 0)]));
        assert_eq!(alignment(&r(&[(Dim::Gpu, 0)]), &zero), 0);
        assert!(!fits(&r(&[(Dim::Gpu, 1)]), &zero.free));
        // Weights off: no work, zero.
        assert_eq!(
            fit_term(&Weights::PRIORITY_ONLY, &Resources::NONE, &avail),
            0
        );
    }

    #[test]
    fn score_is_the_sum_and_keys_fold_time() {
        let w = Weights {
            priority: 1_000,
            aging: 3,
            slack: 5,
            slack_horizon_ns: 200,
            fits: 1,
            alignment: 0,
        };
        let t = Task::new((), r(&[(Dim::Cpu, 1)]), 10_000)
            .with_priority(-2)
            .with_deadline(20_000)
            .with_expected(1_000);
        let avail = Availability::new(r(&[(Dim::Cpu, 5)]), Resources::NONE);
        // (now, expected score): priority -2000, aging 3*(now-10000),
        // slack 5*max(0, 200 - (19000 - now)), fit 1_000_000.
        let table = [
            (10_000, -2_000 + 1_000_000),
            (18_800, -2_000 + 26_400 + 1_000_000),
            (18_900, -2_000 + 26_700 + 500 + 1_000_000),
            (25_000, -2_000 + 45_000 + 5 * 6_200 + 1_000_000),
        ];
        for (now, want) in table {
            assert_eq!(w.score(&t, now, &avail), want, "now={now}");
            // The two folded forms: max of the two lines plus fit.
            let line_all = w.key_all(&t) + w.offset_all(now);
            let line_dl = w.key_deadline(&t, 20_000) + w.offset_deadline(now);
            assert_eq!(
                line_all.max(line_dl) + fit_term(&w, &t.request, &avail),
                want
            );
        }
    }

    #[test]
    fn extreme_inputs_stay_exact() {
        let w = Weights {
            priority: u32::MAX,
            aging: u32::MAX,
            slack: u32::MAX,
            slack_horizon_ns: u64::MAX,
            fits: u32::MAX,
            alignment: u32::MAX,
        };
        let t = Task::new((), Resources::NONE, 0)
            .with_priority(i32::MAX)
            .with_deadline(0)
            .with_expected(u64::MAX);
        let s = w.score(&t, u64::MAX, &Availability::NONE);
        // No term saturated: the folded form agrees.
        let folded = (w.key_deadline(&t, 0) + w.offset_deadline(u64::MAX))
            .max(w.key_all(&t) + w.offset_all(u64::MAX))
            + w.max_fit()
            - (w.max_fit() - fit_term(&w, &t.request, &Availability::NONE));
        assert_eq!(s, folded);
        assert!(s > 0 && s < i128::MAX / 4);
    }
}
