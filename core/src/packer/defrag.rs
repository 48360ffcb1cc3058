//! Fragmentation score and defragmentation by moving not-yet-started placements.
//!
//! # Fragmentation
//!
//! Free capacity is *stranded* when it sits in a domain where the typical
//! queued request does not fit: half a node's memory free next to no free
//! CPU, or two half-free GPUs for a task that needs a whole one. Tetris
//! (Grandl et al., SIGCOMM 2014, §3) calls this fragmentation and packs to
//! avoid it; Borg (Verma et al., EuroSys 2015, §5.2) measures it as the
//! share of resources no task of a given shape can use. [`Packer::fragmentation`]
//! is that share:
//!
//! ```text
//! free(i)       = Σ_d (capacity[i][d] - used[i][d]) / total_capacity[d]   over the dimensions
//!                 where the typical request is positive and domain i tracks d
//! fragmentation = Σ_{i: typical does not fit i now} free(i)  /  Σ_i free(i)
//! ```
//!
//! in ppm. Free amounts are normalised by the total capacity of their
//! dimension over all domains, so memory bytes and CPU millicores add up.
//! Zero free capacity is not fragmentation (0), and neither is a typical
//! request with nothing positive in it.
//!
//! # Defragmentation plans
//!
//! A placement that has been made but whose task has not started yet can
//! still move to another domain at the price of some bookkeeping (and, for a
//! real system, of memory the task may have pre-allocated there). Given those
//! placements, [`Packer::plan_defrag`] builds a plan greedily, in the manner
//! of the first-improvement local search used for vector bin packing
//! (Panigrahy et al. 2011, §4):
//!
//! 1. plan nothing unless the fragmentation is at least
//!    [`DefragConfig::trigger`];
//! 2. for every pending placement not yet in the plan and every other domain
//!    where it fits now, measure the fragmentation after the move: its
//!    *benefit* is the drop in fragmentation, its *cost* is
//!    [`DefragConfig::cost_weight`] times the placement's dominant share of
//!    its source domain (moving a big task costs more);
//! 3. take the move with the largest `benefit - cost` if that is positive
//!    (ties: lower placement index, then lower domain), apply it to the
//!    books, and repeat until no move helps or the plan is full.
//!
//! Each accepted move strictly lowers the fragmentation, so planning ends.
//! The books are restored before `plan_defrag` returns.
//!
//! [`Packer::apply_defrag`] applies a plan only when its net gain
//! (`Σ benefit - Σ cost`) reaches [`DefragConfig::min_net_gain`]. It
//! re-checks every move (the placement is still at the move's source, the
//! target still has room) and, if one fails, undoes the moves already made in
//! reverse order, so the books and the placements are exactly as before. The
//! undo cannot fail: each step restores a state the books were in a moment
//! earlier, in the same call.

use core::fmt;

use super::score::share;
use super::{Domain, Packer, Placement};
use crate::resource::{DimSet, PerDim, Ppm, Resources, Shortfall};

/// Thresholds of defragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragConfig {
    /// Plan only when [`Packer::fragmentation`] is at least this.
    pub trigger: Ppm,
    /// The cost of a move per unit of the moved placement's dominant share of
    /// its source domain ([`Ppm::ONE`]: moving half a domain costs 50%).
    pub cost_weight: Ppm,
    /// Apply a plan only when its benefit minus its cost is at least this.
    pub min_net_gain: Ppm,
}

impl Default for DefragConfig {
    /// Plan above 25% fragmentation, cost 10% of the dominant share, apply
    /// for a net gain of 10% or more.
    fn default() -> Self {
        DefragConfig {
            trigger: Ppm::from_percent(25),
            cost_weight: Ppm::from_percent(10),
            min_net_gain: Ppm::from_percent(10),
        }
    }
}

/// One move of a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Move {
    /// Index of the placement in the `pending` slice.
    pub placement: usize,
    /// The domain it leaves.
    pub from: usize,
    /// The domain it goes to.
    pub to: usize,
    /// Its cost (see [`DefragConfig::cost_weight`]).
    pub cost: Ppm,
    /// The drop in fragmentation it brings, after the moves before it.
    pub benefit: Ppm,
}

/// A defragmentation plan of at most `N` moves, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefragPlan<const N: usize> {
    /// The moves, in order (a `heapless::Vec`: a full plan hands the move
    /// back, it never panics).
    moves: heapless::Vec<Move, N>,
    /// Fragmentation before the plan.
    before: Ppm,
    /// Fragmentation after the plan (as planned).
    after: Ppm,
}

impl<const N: usize> Default for DefragPlan<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> DefragPlan<N> {
    /// An empty plan (`N` must be positive: checked at compile time).
    #[must_use]
    pub const fn new() -> Self {
        const { assert!(N > 0, "a defragmentation plan needs room for one move") };
        DefragPlan {
            moves: heapless::Vec::new(),
            before: Ppm::ZERO,
            after: Ppm::ZERO,
        }
    }

    /// The moves, in the order they are applied.
    #[must_use]
    pub fn moves(&self) -> &[Move] {
        self.moves.as_slice()
    }

    /// Whether the plan has no moves.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    /// Fragmentation when the plan was made.
    #[must_use]
    pub const fn fragmentation_before(&self) -> Ppm {
        self.before
    }

    /// Fragmentation once every move is applied.
    #[must_use]
    pub const fn fragmentation_after(&self) -> Ppm {
        self.after
    }

    /// Sum of the moves' costs.
    #[must_use]
    pub fn cost(&self) -> Ppm {
        self.moves()
            .iter()
            .fold(Ppm::ZERO, |s, m| s.saturating_add(m.cost))
    }

    /// Benefit minus cost, floored at zero.
    #[must_use]
    pub fn net_gain(&self) -> Ppm {
        let benefit = self
            .moves()
            .iter()
            .fold(Ppm::ZERO, |s, m| s.saturating_add(m.benefit));
        benefit.saturating_sub(self.cost())
    }

    fn clear(&mut self) {
        self.moves.clear();
    }

    fn push(&mut self, m: Move) -> bool {
        self.moves.push(m).is_ok()
    }
}

/// Why a plan was not applied. In every case nothing changed: moves already
/// made were rolled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DefragError {
    /// The plan is empty or its net gain is under [`DefragConfig::min_net_gain`].
    BelowThreshold {
        /// The plan's net gain.
        net_gain: Ppm,
        /// The threshold.
        min_net_gain: Ppm,
    },
    /// A move's placement is missing from `pending`, is not on the move's
    /// source domain any more, or was not made by this packer.
    Stale {
        /// Index of the move in the plan.
        move_index: usize,
    },
    /// A move's target has no room any more.
    NoRoom {
        /// Index of the move in the plan.
        move_index: usize,
        /// The target domain.
        domain: usize,
        /// Where and by how much the placement does not fit there.
        shortfall: Shortfall,
    },
}

impl fmt::Display for DefragError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefragError::BelowThreshold {
                net_gain,
                min_net_gain,
            } => write!(
                f,
                "defragmentation plan gains {net_gain}, less than the {min_net_gain} required: \
                 not applied"
            ),
            DefragError::Stale { move_index } => write!(
                f,
                "move {move_index} of the plan no longer matches its placement: plan again \
                 (nothing was moved)"
            ),
            DefragError::NoRoom {
                move_index,
                domain,
                shortfall,
            } => write!(
                f,
                "move {move_index} of the plan no longer fits domain {domain} ({shortfall}): \
                 plan again (nothing was moved)"
            ),
        }
    }
}

impl core::error::Error for DefragError {}

/// The dimensions where `typical` is positive.
fn positive_dims(typical: &Resources) -> DimSet {
    typical
        .iter()
        .filter(|&(_, a)| a > 0)
        .fold(DimSet::EMPTY, |s, (d, _)| s.with(d))
}

/// The fragmentation of `domains` for `typical`, with `totals` the total
/// capacity per dimension. See the [module documentation](self).
fn fragmentation_with(domains: &[Domain], typical: &Resources, totals: &PerDim<u64>) -> Ppm {
    let dims = positive_dims(typical);
    let mut stranded = 0u64;
    let mut free = 0u64;
    for d in domains {
        let size = dims.intersection(d.tracked()).iter().fold(0u64, |s, dim| {
            s.saturating_add(share(d.free_in(dim), totals[dim]))
        });
        free = free.saturating_add(size);
        if !d.fits(typical) {
            stranded = stranded.saturating_add(size);
        }
    }
    Ppm::ratio(stranded, free)
}

impl<S> Packer<S>
where
    S: AsRef<[Domain]> + AsMut<[Domain]>,
{
    /// The total capacity of every domain, per dimension (saturating).
    fn total_capacity(&self) -> PerDim<u64> {
        self.fold_capacity(u64::saturating_add)
    }

    /// The share of free capacity that sits in domains where `typical` does
    /// not fit now. See the [module documentation](self).
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::packer::{ArrayPacker, Domain, Fit};
    /// use respool_core::{Dim, Ppm, Resources};
    /// let cpu = |n| Resources::new().with(Dim::Cpu, n);
    /// let mut p: ArrayPacker<2> = ArrayPacker::new([Domain::new(cpu(10)?), Domain::new(cpu(10)?)], Fit::First);
    /// let a = p.place_on(0, &cpu(5)?)?;
    /// let b = p.place_on(1, &cpu(5)?)?;
    /// // 10 cores free in total, but a 6-core task fits nowhere.
    /// assert_eq!(p.fragmentation(&cpu(6)?), Ppm::ONE);
    /// assert_eq!(p.fragmentation(&cpu(5)?), Ppm::ZERO);
    /// # p.release(a).unwrap(); p.release(b).unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn fragmentation(&self, typical: &Resources) -> Ppm {
        fragmentation_with(self.domains(), typical, &self.total_capacity())
    }

    /// Moves the books of `request` from domain `from` to domain `to`. With
    /// `check`, refuses (returns `false`, nothing changed) when `to` has no
    /// room; always refuses when `from == to`, either index is out of range,
    /// or `from` does not hold `request`.
    fn shift(&mut self, request: &Resources, from: usize, to: usize, check: bool) -> bool {
        let domains = self.domains.as_mut();
        if from == to {
            return false;
        }
        match domains.get(to) {
            Some(t) if !check || t.fits(request) => {}
            _ => return false,
        }
        if !domains.get_mut(from).is_some_and(|f| f.uncharge(request)) {
            return false;
        }
        if let Some(t) = domains.get_mut(to) {
            t.charge(request);
        }
        true
    }

    /// The cost of moving `placement` out of its domain.
    fn move_cost(&self, placement: &Placement, config: &DefragConfig) -> Ppm {
        let dominant = self
            .domain(placement.domain)
            .and_then(|d| placement.request.dominant_share(d.capacity()))
            .map_or(0, |(_, s)| u64::from(s.as_ppm()));
        Ppm::from_ppm(u32::try_from(config.cost_weight.apply(dominant)).unwrap_or(u32::MAX))
    }

    /// Plans moves of the `pending` placements (made, not started) that lower
    /// the fragmentation for `typical`, into `plan` (cleared first). Leaves
    /// the books as they were. See the [module documentation](self) for the
    /// greedy rule; it evaluates O(N · pending · domains²) fragmentations of
    /// one domain each, so it is meant for occasional maintenance, not for
    /// every placement.
    pub fn plan_defrag<const N: usize>(
        &mut self,
        pending: &[Placement],
        typical: &Resources,
        config: &DefragConfig,
        plan: &mut DefragPlan<N>,
    ) {
        plan.clear();
        let totals = self.total_capacity();
        let mut current = fragmentation_with(self.domains(), typical, &totals);
        plan.before = current;
        plan.after = current;
        if current < config.trigger {
            return;
        }
        let domains = self.len();
        loop {
            let mut best: Option<(u64, Move)> = None;
            for (j, p) in pending.iter().enumerate() {
                if plan.moves().iter().any(|m| m.placement == j) {
                    continue;
                }
                let cost = self.move_cost(p, config);
                for to in 0..domains {
                    if !self.shift(&p.request, p.domain, to, true) {
                        continue;
                    }
                    let after = fragmentation_with(self.domains(), typical, &totals);
                    self.shift(&p.request, to, p.domain, false);
                    let benefit = current.saturating_sub(after);
                    if benefit <= cost {
                        continue;
                    }
                    let net = u64::from(benefit.as_ppm().saturating_sub(cost.as_ppm()));
                    if best.is_none_or(|(b, _)| net > b) {
                        let m = Move {
                            placement: j,
                            from: p.domain,
                            to,
                            cost,
                            benefit,
                        };
                        best = Some((net, m));
                    }
                }
            }
            let Some((_, m)) = best else {
                break;
            };
            let Some(p) = pending.get(m.placement) else {
                break;
            };
            if !plan.push(m) || !self.shift(&p.request, m.from, m.to, true) {
                break;
            }
            current = current.saturating_sub(m.benefit);
            if plan.moves.is_full() {
                break;
            }
        }
        plan.after = current;
        // Restore the books, newest move first.
        for m in plan.moves().iter().rev() {
            if let Some(p) = pending.get(m.placement) {
                self.shift(&p.request, m.to, m.from, false);
            }
        }
    }

    /// Applies `plan` to the books and to the `pending` placements (the same
    /// slice, in the same order, as given to [`Packer::plan_defrag`]).
    /// Returns the number of moves made.
    ///
    /// # Errors
    ///
    /// [`DefragError::BelowThreshold`] when the plan is empty or its net gain
    /// is under `config.min_net_gain`; [`DefragError::Stale`] or
    /// [`DefragError::NoRoom`] when a move no longer applies. In every case
    /// nothing is moved: the moves already made are rolled back.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::packer::{ArrayPacker, DefragConfig, DefragPlan, Domain, Fit};
    /// use respool_core::{Dim, Ppm, Resources};
    /// let cpu = |n| Resources::new().with(Dim::Cpu, n);
    /// let mut p: ArrayPacker<2> = ArrayPacker::new([Domain::new(cpu(10)?), Domain::new(cpu(10)?)], Fit::First);
    /// let mut pending = [p.place_on(0, &cpu(5)?)?, p.place_on(1, &cpu(4)?)?];
    /// let typical = cpu(7)?;
    /// assert_eq!(p.fragmentation(&typical), Ppm::ONE);
    /// let mut plan: DefragPlan<4> = DefragPlan::new();
    /// let config = DefragConfig::default();
    /// p.plan_defrag(&pending, &typical, &config, &mut plan);
    /// assert_eq!(plan.moves().len(), 1); // move the 4 next to the 5
    /// assert_eq!(p.apply_defrag(&mut pending, &plan, &config), Ok(1));
    /// assert_eq!(pending[1].domain(), 0);
    /// assert!(p.fragmentation(&typical) < Ppm::from_percent(10));
    /// # for x in pending { p.release(x).unwrap(); }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_defrag<const N: usize>(
        &mut self,
        pending: &mut [Placement],
        plan: &DefragPlan<N>,
        config: &DefragConfig,
    ) -> Result<usize, DefragError> {
        let net_gain = plan.net_gain();
        if plan.is_empty() || net_gain < config.min_net_gain {
            return Err(DefragError::BelowThreshold {
                net_gain,
                min_net_gain: config.min_net_gain,
            });
        }
        for (k, m) in plan.moves().iter().enumerate() {
            if let Err(e) = self.apply_move(pending, k, m) {
                if let Some(done) = plan.moves().get(..k) {
                    for d in done.iter().rev() {
                        if let Some(p) = pending.get_mut(d.placement) {
                            if self.shift(&p.request, d.to, d.from, false) {
                                p.domain = d.from;
                            }
                        }
                    }
                }
                return Err(e);
            }
        }
        Ok(plan.moves.len())
    }

    /// Applies move `m` (number `k` of its plan) to the books and its placement.
    fn apply_move(
        &mut self,
        pending: &mut [Placement],
        k: usize,
        m: &Move,
    ) -> Result<(), DefragError> {
        let stale = DefragError::Stale { move_index: k };
        let p = pending.get_mut(m.placement).ok_or(stale)?;
        if p.domain != m.from || m.from == m.to {
            return Err(stale);
        }
        let target = self.domain(m.to).ok_or(stale)?;
        if let Some(shortfall) = target.shortfall(&p.request) {
            return Err(DefragError::NoRoom {
                move_index: k,
                domain: m.to,
                shortfall,
            });
        }
        if !self.shift(&p.request, m.from, m.to, true) {
            return Err(stale);
        }
        p.domain = m.to;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Fit;
    use super::super::tests::{cm, packer, r};
    use super::*;
    use crate::resource::Dim;
    use std::vec::Vec;

    fn cpu(n: u64) -> Resources {
        r(&[(Dim::Cpu, n)])
    }

    #[test]
    fn fragmentation_table() {
        // Two domains of (cpu 10, memory 10); (used in 0, used in 1, typical, ppm)
        let table = [
            // Free (5,5) and (5,5); typical (6,1) fits neither.
            (cm(5, 5), cm(5, 5), cm(6, 1), 1_000_000),
            // Typical (5,5) fits both.
            (cm(5, 5), cm(5, 5), cm(5, 5), 0),
            // Free (0,8) and (6,6): (1,1) fits only domain 1. Free sizes over
            // cpu+memory, each of total 20: 8/20 = 0.4 and 12/20 = 0.6.
            (cm(10, 2), cm(4, 4), cm(1, 1), 400_000),
            // Only memory counts for a memory-only typical request: both fit.
            (cm(10, 2), cm(4, 4), cm(0, 1), 0),
            // Nothing free at all: not fragmented.
            (cm(10, 10), cm(10, 10), cm(1, 1), 0),
            // Empty typical request.
            (cm(5, 5), cm(5, 5), Resources::NONE, 0),
        ];
        for (u0, u1, typical, want) in table {
            let mut p = packer(&[cm(10, 10), cm(10, 10)], Fit::First);
            let a = p.place_on(0, &u0).unwrap();
            let b = p.place_on(1, &u1).unwrap();
            assert_eq!(
                p.fragmentation(&typical),
                Ppm::from_ppm(want),
                "{u0} {u1} {typical}"
            );
            p.release(a).unwrap();
            p.release(b).unwrap();
        }
    }

    /// Domain 0 holds 3 and 2, domain 1 holds 4 (cpu of 10 each).
    fn three() -> (Packer<Vec<Domain>>, Vec<Placement>) {
        let mut p = packer(&[cpu(10), cpu(10)], Fit::First);
        let pending = std::vec![
            p.place_on(0, &cpu(3)).unwrap(),
            p.place_on(0, &cpu(2)).unwrap(),
            p.place_on(1, &cpu(4)).unwrap(),
        ];
        (p, pending)
    }

    #[test]
    fn plan_takes_the_best_move_by_hand() {
        let (mut p, mut pending) = three();
        let typical = cpu(7);
        // Free 5 and 6: 7 fits neither (100%). Candidate moves:
        //   3: 0 -> 1 leaves free 8 | 3: stranded 3/11 -> benefit 72.7%, cost 3%
        //   2: 0 -> 1 leaves free 7 | 4: stranded 4/11 -> benefit 63.6%, cost 2%
        //   4: 1 -> 0 leaves free 1 | 10: stranded 1/11 -> benefit 90.9%, cost 4%
        // (free shares of the 20 in total: 1/20 = 50_000 of 550_000 = 90_909 ppm)
        let config = DefragConfig::default();
        let mut plan: DefragPlan<4> = DefragPlan::new();
        p.plan_defrag(&pending, &typical, &config, &mut plan);
        assert_eq!(
            plan.moves(),
            &[Move {
                placement: 2,
                from: 1,
                to: 0,
                cost: Ppm::from_ppm(40_000),
                benefit: Ppm::from_ppm(1_000_000 - 90_909),
            }]
        );
        assert_eq!(plan.fragmentation_before(), Ppm::ONE);
        assert_eq!(plan.fragmentation_after(), Ppm::from_ppm(90_909));
        assert_eq!(plan.net_gain(), Ppm::from_ppm(1_000_000 - 90_909 - 40_000));
        // Planning left the books alone.
        assert_eq!(p.domains()[0].used_in(Dim::Cpu), 5);
        assert_eq!(p.domains()[1].used_in(Dim::Cpu), 4);
        assert_eq!(p.apply_defrag(&mut pending, &plan, &config), Ok(1));
        assert_eq!(pending[2].domain(), 0);
        assert_eq!(p.domains()[0].used_in(Dim::Cpu), 9);
        assert_eq!(p.domains()[1].placements(), 0);
        assert_eq!(p.fragmentation(&typical), Ppm::from_ppm(90_909));
        // A stale plan (the placement moved) is refused without change.
        assert_eq!(
            p.apply_defrag(&mut pending, &plan, &config),
            Err(DefragError::Stale { move_index: 0 })
        );
        for x in pending {
            p.release(x).unwrap();
        }
        assert!(p.is_idle());
    }

    #[test]
    fn thresholds_gate_planning_and_applying() {
        let (mut p, mut pending) = three();
        let mut plan: DefragPlan<4> = DefragPlan::new();
        // (config, typical, planned moves, applied?)
        let strict = DefragConfig {
            min_net_gain: Ppm::ONE,
            ..DefragConfig::default()
        };
        let costly = DefragConfig {
            cost_weight: Ppm::from_percent(500),
            ..DefragConfig::default()
        };
        let table = [
            (DefragConfig::default(), cpu(5), 0, false), // 5 fits domain 0: 0% < trigger
            (strict, cpu(7), 1, false),                  // gain 86.9% < 100%
            (costly, cpu(7), 0, false),                  // every move costs more than it gains
            (DefragConfig::default(), cpu(7), 1, true),
        ];
        for (config, typical, moves, applied) in table {
            p.plan_defrag(&pending, &typical, &config, &mut plan);
            assert_eq!(plan.moves().len(), moves, "{config:?} {typical}");
            let got = p.apply_defrag(&mut pending, &plan, &config);
            assert_eq!(got.is_ok(), applied, "{got:?}");
            if !applied {
                assert!(matches!(got, Err(DefragError::BelowThreshold { .. })));
                assert_eq!(p.domains()[0].used_in(Dim::Cpu), 5);
            }
        }
        for x in pending {
            p.release(x).unwrap();
        }
        assert!(p.is_idle());
    }

    #[test]
    fn a_reused_plan_equals_a_fresh_one() {
        // Equality looks at the moves made, not at what an earlier plan
        // left in the storage.
        let (mut p, pending) = three();
        let config = DefragConfig::default();
        let mut reused: DefragPlan<4> = DefragPlan::new();
        p.plan_defrag(&pending, &cpu(7), &config, &mut reused);
        assert_eq!(reused.moves().len(), 1);
        let mut fresh: DefragPlan<4> = DefragPlan::new();
        for plan in [&mut reused, &mut fresh] {
            p.plan_defrag(&pending, &cpu(5), &config, plan);
        }
        assert!(reused.is_empty());
        assert_eq!(reused, fresh);
        for x in pending {
            p.release(x).unwrap();
        }
    }

    #[test]
    fn a_failing_move_rolls_the_plan_back() {
        // Domain 0 holds 3 and 2, domain 1 holds 3 and 2; typical 6 fits
        // neither. The plan moves both of domain 0 to domain 1 (ties go to
        // the lower placement index).
        let mut p = packer(&[cpu(10), cpu(10)], Fit::First);
        let mut pending: Vec<Placement> = [(0, 3), (0, 2), (1, 3), (1, 2)]
            .iter()
            .map(|&(d, n)| p.place_on(d, &cpu(n)).unwrap())
            .collect();
        let config = DefragConfig::default();
        let mut plan: DefragPlan<8> = DefragPlan::new();
        p.plan_defrag(&pending, &cpu(6), &config, &mut plan);
        let moves: Vec<(usize, usize, usize)> = plan
            .moves()
            .iter()
            .map(|m| (m.placement, m.from, m.to))
            .collect();
        assert_eq!(moves, [(0, 0, 1), (1, 0, 1)]);
        assert_eq!(plan.fragmentation_after(), Ppm::ZERO);
        // Cut domain 1 so the second move no longer fits.
        p.set_capacity(1, cpu(8)).unwrap();
        assert_eq!(
            p.apply_defrag(&mut pending, &plan, &config),
            Err(DefragError::NoRoom {
                move_index: 1,
                domain: 1,
                shortfall: Shortfall {
                    dim: Dim::Cpu,
                    requested: 2,
                    available: 0,
                    by: 2
                }
            })
        );
        let domains: Vec<usize> = pending.iter().map(Placement::domain).collect();
        assert_eq!(domains, [0, 0, 1, 1]);
        assert_eq!(p.domains()[0].used_in(Dim::Cpu), 5);
        assert_eq!(p.domains()[1].used_in(Dim::Cpu), 5);
        // A plan naming a placement that is not there is stale.
        let mut short: Vec<Placement> = pending.drain(..1).collect();
        assert_eq!(
            p.apply_defrag(&mut short, &plan, &config),
            Err(DefragError::Stale { move_index: 1 })
        );
        assert_eq!(short[0].domain(), 0);
        assert_eq!(p.domains()[0].used_in(Dim::Cpu), 5);
        for x in short.into_iter().chain(pending) {
            p.release(x).unwrap();
        }
        assert!(p.is_idle());
    }
}
