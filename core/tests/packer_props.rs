//! Property tests of `respool_core::packer` against a ledger of live placements.
//!
//! Random sequences of place (online, on a given domain, through a lookahead
//! window, in batches), release, capacity change, fit change and
//! defragmentation run on packers of one to five domains with random tracked
//! dimensions. After every step:
//!
//! - every domain's books equal the sum of the live placements on it (in its
//!   tracked dimensions), and its placement count equals theirs;
//! - no step other than a capacity change leaves a tracked dimension over its
//!   capacity unless it already was and did not grow;
//! - a refused release or defragmentation changes nothing.
//!
//! At the end everything is released and every domain must be empty. A
//! second property drives a queue through the lookahead window and checks the
//! bound on overtaking the head, and a third checks the errors of a refused
//! placement against a brute-force look at every domain.
#![allow(missing_docs)]

use proptest::prelude::*;
use respool_core::packer::{
    BatchFit, DefragConfig, DefragPlan, Domain, Fit, Lookahead, Packer, PlaceError, Placement,
};
use respool_core::{Dim, DimSet, MAX_AMOUNT, Ppm, Resources};

type P = Packer<Box<[Domain]>>;

const DIMS: [Dim; 3] = [Dim::Cpu, Dim::Memory, Dim::Gpu];

/// An amount: unset, small, or huge (to reach the saturation paths).
fn amount() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        2 => Just(None),
        8 => (0u64..=12).prop_map(Some),
        1 => Just(Some(MAX_AMOUNT)),
    ]
}

fn req() -> impl Strategy<Value = Resources> {
    [amount(), amount(), amount()].prop_map(build)
}

fn build(amounts: [Option<u64>; 3]) -> Resources {
    DIMS.iter()
        .zip(amounts)
        .fold(Resources::NONE, |r, (&d, a)| match a {
            Some(a) => r.with_saturating(d, a),
            None => r,
        })
}

/// A capacity: tracked dimensions from a mask, amounts 0..=24.
fn cap() -> impl Strategy<Value = Resources> {
    (0u8..8, [0u64..=24, 0u64..=24, 0u64..=24])
        .prop_map(|(mask, a)| build([0, 1, 2].map(|i| (mask & (1 << i) != 0).then(|| a[i]))))
}

#[derive(Clone, Debug)]
enum Op {
    Place(Resources),
    PlaceOn(usize, Resources),
    Window(Vec<Resources>),
    Batch(Vec<Resources>, bool),
    Release(usize),
    SetCapacity(usize, [u64; 3], bool),
    SetFit(usize),
    Defrag(Resources, u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => req().prop_map(Op::Place),
        2 => (0usize..6, req()).prop_map(|(i, r)| Op::PlaceOn(i, r)),
        3 => prop::collection::vec(req(), 0..6).prop_map(Op::Window),
        2 => (prop::collection::vec(req(), 0..6), any::<bool>()).prop_map(|(v, b)| Op::Batch(v, b)),
        6 => (0usize..64).prop_map(Op::Release),
        2 => (0usize..6, [0u64..=24, 0u64..=24, 0u64..=24], prop::bool::weighted(0.9))
            .prop_map(|(i, a, same)| Op::SetCapacity(i, a, same)),
        1 => (0usize..Fit::ALL.len()).prop_map(Op::SetFit),
        2 => (req(), 0u8..=60, 0u8..=40).prop_map(|(r, t, c)| Op::Defrag(r, t, c)),
    ]
}

/// Books per domain and tracked dimension, as the packer reports them.
fn books(p: &P) -> Vec<[u64; 3]> {
    p.domains()
        .iter()
        .map(|d| DIMS.map(|dim| d.used_in(dim)))
        .collect()
}

/// Checks the books against the live placements; returns a message on failure.
fn check_ledger(p: &P, live: &[Placement]) -> Result<(), TestCaseError> {
    for (i, d) in p.domains().iter().enumerate() {
        let here: Vec<&Placement> = live.iter().filter(|x| x.domain() == i).collect();
        prop_assert_eq!(d.placements(), here.len(), "domain {} count", i);
        for dim in DIMS {
            let want = if d.tracked().contains(dim) {
                here.iter().map(|x| x.request().amount(dim)).sum::<u64>()
            } else {
                0
            };
            prop_assert_eq!(d.used_in(dim), want, "domain {} {}", i, dim);
        }
    }
    for x in live {
        prop_assert!(x.domain() < p.len());
    }
    Ok(())
}

/// No tracked dimension is over capacity unless it was before and did not grow.
fn check_capacity(p: &P, before: &[[u64; 3]]) -> Result<(), TestCaseError> {
    for (i, d) in p.domains().iter().enumerate() {
        for (k, dim) in DIMS.into_iter().enumerate() {
            let Some(c) = d.capacity().get(dim) else {
                continue;
            };
            let used = d.used_in(dim);
            let was = before[i][k];
            prop_assert!(
                used <= c || used <= was,
                "domain {} {} went over capacity: {} > {} (was {})",
                i,
                dim,
                used,
                c,
                was
            );
        }
    }
    Ok(())
}

fn new_packer(caps: &[Resources], fit: usize) -> P {
    let domains: Box<[Domain]> = caps.iter().map(|&c| Domain::new(c)).collect();
    Packer::new(domains, Fit::ALL[fit % Fit::ALL.len()])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn books_balance_and_capacity_holds(
        caps in prop::collection::vec(cap(), 1..=5),
        fit in 0usize..Fit::ALL.len(),
        ops in prop::collection::vec(op(), 0..60),
    ) {
        let mut p = new_packer(&caps, fit);
        let mut live: Vec<Placement> = Vec::new();
        let mut window = Lookahead::new(3, 2);
        for op in ops {
            let before = books(&p);
            let mut cut = false;
            match op {
                Op::Place(r) => {
                    let chosen = p.select(&r);
                    match p.place(&r) {
                        Ok(x) => {
                            prop_assert_eq!(chosen, Ok(x.domain()));
                            prop_assert!(p.domain(x.domain()).is_some());
                            live.push(x);
                        }
                        Err(e) => {
                            prop_assert_eq!(chosen, Err(e));
                            prop_assert_eq!(&books(&p), &before);
                        }
                    }
                }
                Op::PlaceOn(i, r) => match p.place_on(i, &r) {
                    Ok(x) => {
                        prop_assert_eq!(x.domain(), i);
                        live.push(x);
                    }
                    Err(_) => prop_assert_eq!(&books(&p), &before),
                },
                Op::Window(w) => match p.place_from(&w, &mut window) {
                    Ok(Some((i, x))) => {
                        prop_assert_eq!(x.request(), &w[i]);
                        live.push(x);
                    }
                    Ok(None) => prop_assert!(w.is_empty()),
                    Err(PlaceError::NeverFits { .. } | PlaceError::NoDomains) => window.head_left(),
                    Err(_) => prop_assert_eq!(&books(&p), &before),
                },
                Op::Batch(batch, ffd) => {
                    let fit = if ffd {
                        BatchFit::FirstFitDecreasing
                    } else {
                        BatchFit::BestFitDecreasing(respool_core::packer::Score::DotProduct)
                    };
                    let mut order = vec![0; batch.len()];
                    let mut out: Vec<Option<Placement>> = batch.iter().map(|_| None).collect();
                    let n = p.place_batch(&batch, fit, &mut order, &mut out).unwrap();
                    let mut sorted = order.clone();
                    sorted.sort_unstable();
                    prop_assert_eq!(sorted, (0..batch.len()).collect::<Vec<_>>());
                    prop_assert_eq!(n, out.iter().flatten().count());
                    for (i, x) in out.into_iter().enumerate() {
                        if let Some(x) = x {
                            prop_assert_eq!(x.request(), &batch[i]);
                            live.push(x);
                        }
                    }
                }
                Op::Release(k) => {
                    if !live.is_empty() {
                        let x = live.swap_remove(k % live.len());
                        prop_assert!(p.release(x).is_ok());
                    }
                }
                Op::SetCapacity(i, amounts, same) => {
                    let Some(d) = p.domain(i) else {
                        prop_assert!(p.set_capacity(i, Resources::NONE).is_err());
                        continue;
                    };
                    let tracked = if same {
                        d.tracked()
                    } else {
                        DimSet::from_bits_truncate(d.tracked().bits() ^ 1)
                    };
                    let new = build([0, 1, 2].map(|k| tracked.contains(DIMS[k]).then(|| amounts[k])));
                    let old = *d.capacity();
                    let res = p.set_capacity(i, new);
                    prop_assert_eq!(res.is_ok(), same);
                    prop_assert_eq!(p.domain(i).map(|d| *d.capacity()), Some(if same { new } else { old }));
                    cut = true;
                }
                Op::SetFit(f) => p.set_fit(Fit::ALL[f]),
                Op::Defrag(typical, trigger, cost) => {
                    let config = DefragConfig {
                        trigger: Ppm::from_percent(u32::from(trigger)),
                        cost_weight: Ppm::from_percent(u32::from(cost)),
                        min_net_gain: Ppm::from_percent(5),
                    };
                    let mut plan: DefragPlan<4> = DefragPlan::new();
                    p.plan_defrag(&live, &typical, &config, &mut plan);
                    prop_assert_eq!(&books(&p), &before, "planning changed the books");
                    prop_assert!(plan.fragmentation_after() <= plan.fragmentation_before());
                    for m in plan.moves() {
                        prop_assert!(m.benefit > m.cost);
                    }
                    let frag = p.fragmentation(&typical);
                    prop_assert_eq!(frag, plan.fragmentation_before());
                    let domains: Vec<usize> = live.iter().map(Placement::domain).collect();
                    match p.apply_defrag(&mut live, &plan, &config) {
                        Ok(n) => {
                            prop_assert_eq!(n, plan.moves().len());
                            prop_assert_eq!(p.fragmentation(&typical), plan.fragmentation_after());
                        }
                        Err(_) => {
                            prop_assert_eq!(&books(&p), &before);
                            let now: Vec<usize> = live.iter().map(Placement::domain).collect();
                            prop_assert_eq!(now, domains);
                        }
                    }
                }
            }
            check_ledger(&p, &live)?;
            if !cut {
                check_capacity(&p, &before)?;
            }
        }
        for x in live.drain(..) {
            prop_assert!(p.release(x).is_ok());
        }
        prop_assert!(p.is_idle());
        for d in p.domains() {
            prop_assert!(DIMS.iter().all(|&dim| d.used_in(dim) == 0));
            prop_assert!(!d.is_over_capacity());
        }
    }

    #[test]
    fn the_head_is_overtaken_at_most_max_skips_times(
        caps in prop::collection::vec(cap(), 1..=3),
        fit in 0usize..Fit::ALL.len(),
        queue in prop::collection::vec(req(), 0..40),
        width in 0usize..6,
        max_skips in 0u32..5,
        steps in prop::collection::vec(any::<(bool, u8)>(), 0..120),
    ) {
        let mut p = new_packer(&caps, fit);
        let mut queue: Vec<(usize, Resources)> = queue.into_iter().enumerate().collect();
        let mut running: Vec<Placement> = Vec::new();
        let mut la = Lookahead::new(width, max_skips);
        // (id of the head, how many times it has been overtaken)
        let mut head: Option<(usize, u32)> = None;
        for (release, pick) in steps {
            if release && !running.is_empty() {
                let x = running.swap_remove(usize::from(pick) % running.len());
                prop_assert!(p.release(x).is_ok());
                continue;
            }
            let Some(&(head_id, _)) = queue.first() else { break };
            if head.is_none_or(|(id, _)| id != head_id) {
                head = Some((head_id, 0));
            }
            let window: Vec<Resources> = queue.iter().map(|&(_, r)| r).collect();
            match p.place_from(&window, &mut la) {
                Ok(Some((i, x))) => {
                    running.push(x);
                    queue.remove(i);
                    if i > 0 {
                        let overtaken = head.map_or(0, |(_, n)| n) + 1;
                        prop_assert!(overtaken <= max_skips, "head {} overtaken {} times", head_id, overtaken);
                        prop_assert!(i < la.width());
                        head = Some((head_id, overtaken));
                    }
                }
                Ok(None) => prop_assert!(false, "non-empty window"),
                Err(PlaceError::NeverFits { .. } | PlaceError::NoDomains) => {
                    queue.remove(0);
                    la.head_left();
                }
                Err(e) => {
                    let no_room = matches!(e, PlaceError::NoRoom { .. });
                    prop_assert!(no_room, "{:?}", e);
                    // The head does not fit now, and nothing else may go.
                    prop_assert!(p.select(&window[0]).is_err());
                    if la.head_only() {
                        continue;
                    }
                    for r in window.iter().take(la.width()) {
                        prop_assert!(p.select(r).is_err(), "{} fits but nothing was placed", r);
                    }
                }
            }
        }
        // Draining: once everything running is released, the head always goes.
        for x in running.drain(..) {
            prop_assert!(p.release(x).is_ok());
        }
        if let Some((_, r)) = queue.first() {
            match p.place_from(&[*r], &mut la) {
                Ok(Some((0, x))) => prop_assert!(p.release(x).is_ok()),
                Err(PlaceError::NeverFits { .. } | PlaceError::NoDomains) => {}
                other => prop_assert!(false, "an idle packer refused the head: {:?}", other),
            }
        }
        prop_assert!(p.is_idle());
    }

    #[test]
    fn refusals_name_the_closest_domain(
        caps in prop::collection::vec(cap(), 0..=4),
        held in prop::collection::vec((0usize..4, req()), 0..8),
        r in req(),
    ) {
        let mut p = new_packer(&caps, 0);
        let mut live = Vec::new();
        for (i, h) in held {
            if let Ok(x) = p.place_on(i, &h) {
                live.push(x);
            }
        }
        let fits_now = p.domains().iter().any(|d| d.fits(&r));
        let fits_empty = p.domains().iter().any(|d| d.shortfall_when_empty(&r).is_none());
        match p.place(&r) {
            Ok(x) => {
                prop_assert!(fits_now);
                live.push(x);
            }
            Err(PlaceError::NoDomains) => prop_assert!(caps.is_empty()),
            Err(PlaceError::NoRoom { domain, shortfall }) => {
                prop_assert!(!fits_now && fits_empty);
                let d = &p.domains()[domain];
                prop_assert_eq!(d.shortfall(&r), Some(shortfall));
                prop_assert!(d.shortfall_when_empty(&r).is_none());
                prop_assert!(shortfall.by > 0);
            }
            Err(PlaceError::NeverFits { domain, shortfall }) => {
                prop_assert!(!fits_empty);
                prop_assert_eq!(p.domains()[domain].shortfall_when_empty(&r), Some(shortfall));
            }
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
        for x in live {
            prop_assert!(p.release(x).is_ok());
        }
        prop_assert!(p.is_idle());
    }
}
