//! A lookahead window over the queue with a proven bound on overtaking the head.
//!
//! Admission in order blocks on the head of the queue: when the head does not
//! fit, nothing starts, although requests behind it would. Looking at the
//! first K waiters and starting the one that fits best keeps the machine busy
//! (this is what packs a bimodal build, where a large link step waits for
//! memory while small compile steps could run), but unbounded, it can pass
//! over a large head forever. [`Lookahead`] bounds it.
//!
//! # The rule
//!
//! [`Packer::place_from`] looks at `window[..K]` (`K` = [`Lookahead::width`]),
//! where `window[0]` is the head:
//!
//! 1. if the head can never fit (or there are no domains), that error is
//!    returned at once: the caller must refuse the head, not wait on it;
//! 2. while the skip counter `s` is below `M` ([`Lookahead::max_skips`]), the
//!    packer's [`Fit`] chooses among all `(request, domain)` pairs of the window
//!    that fit now: first-fit and next-fit take the first request (in window
//!    order) that fits somewhere, best-fit and worst-fit the pair with the
//!    highest (lowest) [`Score::key`](super::Score::key), ties to the earlier
//!    request and then the lower domain;
//! 3. once `s >= M`, only the head may be placed;
//! 4. placing the head resets `s` to 0; placing any other request adds 1.
//!
//! # Theorem (bounded overtaking)
//!
//! *Let `h` be a request that is `window[0]` in every call of
//! [`Packer::place_from`] on one [`Lookahead`] from some call `c` on, during
//! which [`Lookahead::head_left`] is not called, and let `s_c` be the skip
//! counter at `c`. Then at most `M - min(s_c, M) <= M` calls place a request
//! other than `h` before `h` is placed. If, moreover, every placement on the
//! packer goes through this window, the capacities are not cut, and `h` fits
//! some domain when it is empty, then `h` is placed by the first call made
//! after the placements that were live when the `M`-th overtaking happened
//! have all been released (or earlier, as soon as it fits).*
//!
//! *Proof.* `s` changes only in `place_from` (rule 4) and in `head_left`,
//! which is not called. While `h` is the head, a call that places another
//! request increases `s` by exactly one, and by rule 3 such a call happens
//! only when `s < M`. So, counting from `s_c`, at most `M - min(s_c, M)` such
//! calls happen. After them `s >= M`, and every call places `h` or nothing.
//! No placement is added meanwhile, so the books only lose placements; by
//! the exact-books invariant (module [`packer`](super)), once every placement
//! alive at that moment is released the domains are empty, and `h`, which
//! fits an empty domain at the present capacities, fits: rule 2 or 3 places
//! it at the next call (rule 1 does not apply, since it fits an empty
//! domain). ∎
//!
//! In time: if every task holds its placement for at most `T`, the head
//! starts at most `T` after its `M`-th overtaking, provided the caller calls
//! `place_from` after every release. Setting `M = 0` or `K = 1` gives plain
//! in-order admission.
//!
//! The counter follows whatever sits at `window[0]`. A caller whose queue
//! reorders (priorities) or drops the head for another reason (cancellation,
//! deadline) calls [`Lookahead::head_left`] so that the new head gets a full
//! budget; not calling it only makes the budget smaller, never larger.
//!
//! The tests below check the bound step by step, and `core/tests/packer_props.rs`
//! checks it on random sequences of requests and releases.

use super::{Domain, Fit, Packer, PlaceError, Placement, extreme};
use crate::resource::Resources;

/// A lookahead window of `width` requests that may pass over the head at most
/// `max_skips` times in a row. See the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookahead {
    /// How many requests at the front of the queue are considered (at least 1).
    width: usize,
    /// How many times the head may be passed over before only it may go.
    max_skips: u32,
    /// How many times the present head has been passed over.
    skips: u32,
}

/// Which request of the window to place, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Choice {
    /// Index in the window (0: the head).
    pub index: usize,
    /// The domain.
    pub domain: usize,
}

impl Lookahead {
    /// A window over the first `width` requests (0 counts as 1) that passes
    /// over the head at most `max_skips` times.
    #[must_use]
    pub const fn new(width: usize, max_skips: u32) -> Lookahead {
        Lookahead {
            width: if width == 0 { 1 } else { width },
            max_skips,
            skips: 0,
        }
    }

    /// How many requests are considered.
    #[must_use]
    pub const fn width(&self) -> usize {
        self.width
    }

    /// The bound `M` on consecutive overtakings of one head.
    #[must_use]
    pub const fn max_skips(&self) -> u32 {
        self.max_skips
    }

    /// How many times the present head has been passed over.
    #[must_use]
    pub const fn skips(&self) -> u32 {
        self.skips
    }

    /// Whether only the head may be placed now.
    #[must_use]
    pub const fn head_only(&self) -> bool {
        self.skips >= self.max_skips || self.width <= 1
    }

    /// Tells the window that the head left the queue without being placed
    /// through it (cancelled, expired, refused, or the queue reordered): the
    /// next head starts with a full budget.
    pub fn head_left(&mut self) {
        self.skips = 0;
    }

    /// Applies rule 4 for a caller that chose with constraints of its own
    /// (for example a global tracker on top of the domains) while following
    /// rules 2 and 3 (considering only `window[..width]`, and only the head
    /// once [`head_only`](Self::head_only)): placing the head resets the
    /// counter, placing another request adds one. The theorem holds for such
    /// a caller too, since its proof uses only rules 3 and 4.
    pub fn record(&mut self, placed_head: bool) {
        self.skips = if placed_head {
            0
        } else {
            self.skips.saturating_add(1)
        };
    }
}

impl<S> Packer<S>
where
    S: AsRef<[Domain]> + AsMut<[Domain]>,
{
    /// The request of `window` (and its domain) that [`Packer::place_from`]
    /// would place now, without placing it. `Ok(None)` when the window is
    /// empty.
    ///
    /// # Errors
    ///
    /// [`PlaceError::NeverFits`] or [`PlaceError::NoDomains`] when the head
    /// can never be placed (refuse it); [`PlaceError::NoRoom`] for the head
    /// when nothing the rules allow fits now (wait for a release).
    pub fn choose(
        &self,
        window: &[Resources],
        lookahead: &Lookahead,
    ) -> Result<Option<Choice>, PlaceError> {
        let Some(head) = window.first() else {
            return Ok(None);
        };
        let head_domain = self.select_with(head, self.fit);
        let head_error = match head_domain {
            Some(_) => None,
            None => match self.explain(head) {
                e @ PlaceError::NoRoom { .. } => Some(e),
                e => return Err(e),
            },
        };
        let considered = window.iter().take(lookahead.width);
        let choice = match (head_domain, self.fit) {
            (_, _) if lookahead.head_only() => {
                head_domain.map(|domain| Choice { index: 0, domain })
            }
            (Some(domain), Fit::First | Fit::Next) => Some(Choice { index: 0, domain }),
            (None, Fit::First | Fit::Next) => {
                considered.enumerate().skip(1).find_map(|(index, r)| {
                    self.select_with(r, self.fit)
                        .map(|domain| Choice { index, domain })
                })
            }
            (_, Fit::Best(score) | Fit::Worst(score)) => {
                let highest = matches!(self.fit, Fit::Best(_));
                let mut best: Option<(Choice, u64)> = None;
                for (index, r) in considered.enumerate() {
                    let Some((domain, key)) = extreme(self.domains(), r, score, highest) else {
                        continue;
                    };
                    let better = match best {
                        None => true,
                        Some((_, b)) if highest => key > b,
                        Some((_, b)) => key < b,
                    };
                    if better {
                        best = Some((Choice { index, domain }, key));
                    }
                }
                best.map(|(c, _)| c)
            }
        };
        match (choice, head_error) {
            (Some(c), _) => Ok(Some(c)),
            (None, Some(e)) => Err(e),
            // The head fits (no error), so some choice exists: rule 3 returns
            // it, and rule 2 considers it. Kept total rather than unreachable.
            (None, None) => Ok(head_domain.map(|domain| Choice { index: 0, domain })),
        }
    }

    /// Places the request of `window` that the rules of the
    /// [module documentation](self) pick and returns its index in the window
    /// with the placement; the caller removes that request from its queue.
    /// `Ok(None)` when the window is empty.
    ///
    /// # Errors
    ///
    /// As [`Packer::choose`]; nothing is placed and the counter is unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::packer::{ArrayPacker, Domain, Fit, Lookahead, PlaceError};
    /// use respool_core::{Dim, Resources};
    /// let mem = |n| Resources::new().with(Dim::Memory, n);
    /// let mut p: ArrayPacker<1> = ArrayPacker::new([Domain::new(mem(10)?)], Fit::First);
    /// let running = p.place(&mem(6)?)?;
    /// // The head (8) waits for memory; the small ones behind it may pass,
    /// // but at most twice.
    /// let mut queue = vec![mem(8)?, mem(1)?, mem(1)?, mem(1)?];
    /// let mut window = Lookahead::new(4, 2);
    /// let mut started = Vec::new();
    /// while let Ok(Some((i, placement))) = p.place_from(&queue, &mut window) {
    ///     queue.remove(i);
    ///     started.push(placement);
    /// }
    /// assert_eq!((started.len(), window.skips()), (2, 2));
    /// assert!(matches!(p.place_from(&queue, &mut window), Err(PlaceError::NoRoom { .. })));
    /// p.release(running).unwrap();
    /// let (i, head) = p.place_from(&queue, &mut window)?.unwrap();
    /// assert_eq!((i, window.skips()), (0, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn place_from(
        &mut self,
        window: &[Resources],
        lookahead: &mut Lookahead,
    ) -> Result<Option<(usize, Placement)>, PlaceError> {
        let Some(Choice { index, domain }) = self.choose(window, lookahead)? else {
            return Ok(None);
        };
        let Some(request) = window.get(index) else {
            return Ok(None);
        };
        let placement = self.commit(domain, request)?;
        lookahead.skips = if index == 0 {
            0
        } else {
            lookahead.skips.saturating_add(1)
        };
        Ok(Some((index, placement)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Score;
    use super::super::tests::{cm, packer};
    use super::*;
    use std::vec::Vec;

    #[test]
    fn record_applies_rule_four() {
        let mut l = Lookahead::new(4, 2);
        l.record(false);
        assert_eq!((l.skips(), l.head_only()), (1, false));
        l.record(false);
        assert!(l.head_only(), "two overtakings: only the head may go");
        l.record(true);
        assert_eq!((l.skips(), l.head_only()), (0, false));
        assert!(
            Lookahead::new(1, 5).head_only(),
            "a window of one is in-order admission"
        );
    }

    #[test]
    fn head_is_passed_over_at_most_max_skips_times() {
        // (fit, width, max_skips): the head needs memory 8 with 4 free;
        // five small requests behind it each fit.
        let table = [
            (Fit::First, 6, 0),
            (Fit::First, 6, 3),
            (Fit::Next, 3, 5),
            (Fit::Best(Score::DotProduct), 6, 2),
            (Fit::Worst(Score::L2Residual), 6, 4),
            (Fit::First, 1, 7),
        ];
        for (fit, width, max_skips) in table {
            let mut p = packer(&[cm(100, 10)], fit);
            let running = p.place(&cm(0, 6)).unwrap();
            let mut queue: Vec<Resources> = std::vec![cm(1, 8)];
            queue.extend((0..5).map(|_| cm(1, 0)));
            let mut la = Lookahead::new(width, max_skips);
            let mut started = Vec::new();
            loop {
                match p.place_from(&queue, &mut la) {
                    Ok(Some((i, x))) => {
                        assert_ne!(i, 0, "the head cannot fit yet");
                        queue.remove(i);
                        started.push(x);
                    }
                    Err(PlaceError::NoRoom { shortfall, .. }) => {
                        assert_eq!(shortfall.by, 4, "the error is the head's");
                        break;
                    }
                    other => panic!("{other:?}"),
                }
            }
            let allowed = if width <= 1 { 0 } else { max_skips.min(5) };
            assert_eq!(started.len(), allowed as usize, "{fit} {width} {max_skips}");
            p.release(running).unwrap();
            let (i, head) = p.place_from(&queue, &mut la).unwrap().unwrap();
            assert_eq!((i, la.skips()), (0, 0));
            p.release(head).unwrap();
            for x in started {
                p.release(x).unwrap();
            }
            assert!(p.is_idle());
        }
    }

    #[test]
    fn best_fit_picks_the_best_pair_in_the_window() {
        // Two domains: (cpu 10, mem 10) with 5/5 used, and empty.
        // Window: small (1,1), large (5,5). MostAllocated prefers the large
        // one on domain 0 (100% after); LeastAllocated the small one on 1.
        // (fit, expected (index, domain))
        let table = [
            (Fit::Best(Score::MostAllocated), (1, 0)),
            (Fit::Best(Score::LeastAllocated), (0, 1)),
            (Fit::Best(Score::L2Residual), (1, 0)),
            (Fit::Best(Score::DotProduct), (1, 1)), // large demand x all free
            (Fit::First, (0, 0)),
        ];
        for (fit, (index, domain)) in table {
            let mut p = packer(&[cm(10, 10), cm(10, 10)], Fit::First);
            let held = p.place_on(0, &cm(5, 5)).unwrap();
            p.set_fit(fit);
            let window = [cm(1, 1), cm(5, 5)];
            let la = Lookahead::new(2, 1);
            assert_eq!(
                p.choose(&window, &la),
                Ok(Some(Choice { index, domain })),
                "{fit}"
            );
            p.release(held).unwrap();
        }
    }

    #[test]
    fn a_head_that_never_fits_is_reported_at_once() {
        let mut p = packer(&[cm(10, 10)], Fit::First);
        let mut la = Lookahead::new(4, 4);
        let window = [cm(1, 11), cm(1, 1)];
        assert!(matches!(
            p.place_from(&window, &mut la),
            Err(PlaceError::NeverFits { .. })
        ));
        assert_eq!(la.skips(), 0);
        assert_eq!(p.place_from(&[], &mut la), Ok(None));
        let mut none = packer(&[], Fit::First);
        assert_eq!(
            none.place_from(&[cm(1, 1)], &mut la),
            Err(PlaceError::NoDomains)
        );
        // head_left resets the budget.
        let held = p.place(&cm(0, 10)).unwrap();
        let mut la = Lookahead::new(2, 1);
        let (i, x) = p
            .place_from(&[cm(0, 1), cm(1, 0)], &mut la)
            .unwrap()
            .unwrap();
        assert_eq!((i, la.skips(), la.head_only()), (1, 1, true));
        la.head_left();
        assert_eq!((la.skips(), la.head_only()), (0, false));
        assert_eq!(Lookahead::new(0, 3).width(), 1);
        p.release(x).unwrap();
        p.release(held).unwrap();
    }
}
