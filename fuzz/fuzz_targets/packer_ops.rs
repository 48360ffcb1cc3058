//! Fuzzes `respool_core::packer` with arbitrary domains (any tracked
//! dimensions, amounts up to the largest allowed) and arbitrary sequences of
//! place, place-on, lookahead-window and batch placements, releases, capacity
//! changes (cuts included), fit changes, scores and defragmentation.
//!
//! A ledger of the live placements is kept here. After every step:
//! - every domain's books equal the sum of the live placements on it in each
//!   tracked dimension (zero elsewhere), and its count equals theirs;
//! - no step other than a capacity change leaves a tracked dimension above
//!   its capacity unless it already was and did not grow;
//! - refused operations (placement errors, a foreign release, a defragmentation
//!   that is not applied or rolls back) change nothing;
//! - the lookahead never passes over the same head more than `max_skips`
//!   times;
//! - the Kubernetes scores stay within 0..=100%.
//!
//! At the end every placement is released and every domain must be empty.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use respool_core::packer::{
    BatchFit, DefragConfig, DefragPlan, Domain, Fit, Lookahead, Packer, PlaceError, Placement,
    Score, balanced_allocation, least_allocated, most_allocated,
};
use respool_core::{Dim, DimSet, Ppm, Resources};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Amount {
    Small(u8),
    Any(u64),
}

impl Amount {
    fn get(self) -> u64 {
        match self {
            Amount::Small(n) => u64::from(n % 32),
            Amount::Any(n) => n,
        }
    }
}

/// A resource vector: the dimensions in `mask`, amounts capped at MAX_AMOUNT.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct RawRes {
    mask: u16,
    amounts: [Amount; Dim::COUNT],
}

impl RawRes {
    fn get(self) -> Resources {
        self.with_dims(DimSet::from_bits_truncate(self.mask))
    }

    fn with_dims(self, dims: DimSet) -> Resources {
        dims.iter().fold(Resources::NONE, |r, d| {
            r.with_saturating(d, self.amounts[d.index()].get())
        })
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Place(RawRes),
    PlaceOn(u8, RawRes),
    Window(Vec<RawRes>),
    Batch(Vec<RawRes>, bool, u8),
    Release(u16),
    /// Same tracked dimensions when the flag is set (else the mask's).
    SetCapacity(u8, RawRes, bool),
    SetFit(u8),
    Scores(RawRes),
    Defrag(RawRes, u32, u32, u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    domains: Vec<RawRes>,
    fit: u8,
    width: u8,
    max_skips: u8,
    ops: Vec<Op>,
}

type P = Packer<Vec<Domain>>;

fn books(p: &P) -> Vec<[u64; Dim::COUNT]> {
    p.domains()
        .iter()
        .map(|d| Dim::ALL.map(|dim| d.used_in(dim)))
        .collect()
}

fn check_ledger(p: &P, live: &[Placement]) {
    for (i, d) in p.domains().iter().enumerate() {
        let here: Vec<&Placement> = live.iter().filter(|x| x.domain() == i).collect();
        assert_eq!(d.placements(), here.len(), "domain {i}: placement count");
        for dim in Dim::ALL {
            let want = if d.tracked().contains(dim) {
                here.iter()
                    .map(|x| u128::from(x.request().amount(dim)))
                    .sum::<u128>()
            } else {
                0
            };
            assert_eq!(u128::from(d.used_in(dim)), want, "domain {i} {dim}: books");
        }
    }
}

fn check_capacity(p: &P, before: &[[u64; Dim::COUNT]]) {
    for (i, d) in p.domains().iter().enumerate() {
        for (dim, cap) in d.capacity().iter() {
            let used = d.used_in(dim);
            let was = before[i][dim.index()];
            assert!(
                used <= cap || used <= was,
                "domain {i} {dim} over capacity: {used} > {cap} (was {was})"
            );
        }
    }
}

fuzz_target!(|input: Input| {
    let domains: Vec<Domain> = input
        .domains
        .iter()
        .take(8)
        .map(|c| Domain::new(c.get()))
        .collect();
    let mut p: P = Packer::new(domains, Fit::ALL[usize::from(input.fit) % Fit::ALL.len()]);
    let max_skips = u32::from(input.max_skips % 8);
    let mut window = Lookahead::new(usize::from(input.width % 8), max_skips);
    // The head of the last window call, and how often it was passed over.
    let mut head: Option<(Resources, u32)> = None;
    let mut live: Vec<Placement> = Vec::new();
    for op in input.ops.into_iter().take(200) {
        let before = books(&p);
        let mut capacity_changed = false;
        match op {
            Op::Place(r) => {
                let r = r.get();
                let chosen = p.select(&r);
                match p.place(&r) {
                    Ok(x) => {
                        assert_eq!(chosen, Ok(x.domain()));
                        live.push(x);
                    }
                    Err(e) => {
                        assert_eq!(chosen, Err(e));
                        assert_eq!(books(&p), before);
                    }
                }
            }
            Op::PlaceOn(i, r) => match p.place_on(usize::from(i), &r.get()) {
                Ok(x) => {
                    assert_eq!(x.domain(), usize::from(i));
                    live.push(x);
                }
                Err(_) => assert_eq!(books(&p), before),
            },
            Op::Window(w) => {
                let w: Vec<Resources> = w.into_iter().take(12).map(RawRes::get).collect();
                let same_head = matches!((head, w.first()), (Some((h, _)), Some(f)) if h == *f);
                if !same_head {
                    window.head_left();
                    head = w.first().map(|&h| (h, 0));
                }
                match p.place_from(&w, &mut window) {
                    Ok(Some((i, x))) => {
                        assert_eq!(x.request(), &w[i]);
                        assert!(i < window.width());
                        if i == 0 {
                            head = None;
                        } else if let Some((_, n)) = head.as_mut() {
                            *n += 1;
                            assert!(*n <= max_skips, "head passed over {n} times");
                        }
                        live.push(x);
                    }
                    Ok(None) => assert!(w.is_empty()),
                    Err(e) => {
                        assert_eq!(books(&p), before);
                        if !matches!(e, PlaceError::NoRoom { .. }) {
                            head = None;
                        }
                    }
                }
            }
            Op::Batch(batch, ffd, score) => {
                let batch: Vec<Resources> = batch.into_iter().take(12).map(RawRes::get).collect();
                let fit = if ffd {
                    BatchFit::FirstFitDecreasing
                } else {
                    BatchFit::BestFitDecreasing(Score::ALL[usize::from(score) % Score::ALL.len()])
                };
                let mut order = vec![0; batch.len()];
                let mut out: Vec<Option<Placement>> = batch.iter().map(|_| None).collect();
                let placed = p
                    .place_batch(&batch, fit, &mut order, &mut out)
                    .expect("scratch sized to the batch");
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..batch.len()).collect::<Vec<_>>());
                assert_eq!(placed, out.iter().flatten().count());
                for (i, x) in out.into_iter().enumerate() {
                    if let Some(x) = x {
                        assert_eq!(x.request(), &batch[i]);
                        live.push(x);
                    }
                }
            }
            Op::Release(k) => {
                if !live.is_empty() {
                    let x = live.swap_remove(usize::from(k) % live.len());
                    assert!(p.release(x).is_ok(), "a live placement was refused");
                }
            }
            Op::SetCapacity(i, r, same) => {
                let i = usize::from(i);
                let old = p.domain(i).map(|d| *d.capacity());
                let new = match (old, same) {
                    (Some(old), true) => r.with_dims(old.dims()),
                    _ => r.get(),
                };
                let res = p.set_capacity(i, new);
                let ok = old.is_some_and(|o| o.dims() == new.dims());
                assert_eq!(res.is_ok(), ok, "{res:?}");
                let now = p.domain(i).map(|d| *d.capacity());
                assert_eq!(now, if ok { Some(new) } else { old });
                capacity_changed = true;
            }
            Op::SetFit(f) => p.set_fit(Fit::ALL[usize::from(f) % Fit::ALL.len()]),
            Op::Scores(r) => {
                let r = r.get();
                for d in p.domains() {
                    for s in Score::ALL {
                        let _ = s.key(d, &r);
                    }
                    assert!(most_allocated(d, &r) <= Ppm::ONE);
                    assert!(least_allocated(d, &r) <= Ppm::ONE);
                    assert!(balanced_allocation(d, &r) <= Ppm::ONE);
                }
                let _ = p.size(&r);
                assert!(p.fragmentation(&r) <= Ppm::ONE);
            }
            Op::Defrag(typical, trigger, cost, gain) => {
                let typical = typical.get();
                let config = DefragConfig {
                    trigger: Ppm::from_ppm(trigger % 1_100_000),
                    cost_weight: Ppm::from_ppm(cost),
                    min_net_gain: Ppm::from_ppm(gain % 1_100_000),
                };
                let mut plan: DefragPlan<4> = DefragPlan::new();
                p.plan_defrag(&live, &typical, &config, &mut plan);
                assert_eq!(books(&p), before, "planning changed the books");
                assert_eq!(plan.fragmentation_before(), p.fragmentation(&typical));
                assert!(plan.fragmentation_after() <= plan.fragmentation_before());
                for m in plan.moves() {
                    assert!(m.benefit > m.cost && m.from != m.to);
                }
                let domains: Vec<usize> = live.iter().map(Placement::domain).collect();
                match p.apply_defrag(&mut live, &plan, &config) {
                    Ok(n) => {
                        assert_eq!(n, plan.moves().len());
                        assert_eq!(p.fragmentation(&typical), plan.fragmentation_after());
                    }
                    Err(_) => {
                        assert_eq!(books(&p), before, "a refused plan changed the books");
                        let now: Vec<usize> = live.iter().map(Placement::domain).collect();
                        assert_eq!(now, domains, "a refused plan moved placements");
                    }
                }
            }
        }
        check_ledger(&p, &live);
        if !capacity_changed {
            check_capacity(&p, &before);
        }
    }
    for x in live {
        assert!(p.release(x).is_ok());
    }
    assert!(p.is_idle());
    for d in p.domains() {
        assert!(Dim::ALL.iter().all(|&dim| d.used_in(dim) == 0));
    }
});
