//! Property tests of the resource arithmetic and the tracker, each against a
//! plain model.
//!
//! - `Resources`: every operation (checked and saturating add and subtract,
//!   max, min, `or`, scale, fits / first shortfall / excess, utilisation and
//!   dominant share) equals the same operation on an array of
//!   `Option<u64>` (unset = `None`, worked out with `u128`), and the results
//!   never exceed [`MAX_AMOUNT`].
//! - `Tracker`: a random sequence of reservations, releases, grows and
//!   capacity, headroom and external-usage changes on one thread. A
//!   reservation succeeds exactly when the model says it fits; after every
//!   successful one the reserved total stays within capacity minus headroom
//!   minus external usage in every dimension; `reserved()` always equals the
//!   sum of what the live reservations hold; after everything is released
//!   nothing is reserved.
#![allow(missing_docs)]

use proptest::prelude::*;
use respool_core::{Dim, MAX_AMOUNT, Ppm, Resources, Tracker};

type Model = [Option<u64>; Dim::COUNT];

/// An amount: unset, small, anything, or close to the maximum (to reach the
/// overflow and saturation paths).
fn amount() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        3 => Just(None),
        4 => (0u64..=1_000).prop_map(Some),
        2 => (0u64..=MAX_AMOUNT).prop_map(Some),
        1 => (MAX_AMOUNT - 1_000..=MAX_AMOUNT).prop_map(Some),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    proptest::array::uniform10(amount())
}

fn build(m: &Model) -> Resources {
    Dim::ALL
        .iter()
        .zip(m)
        .fold(Resources::NONE, |r, (&d, a)| match a {
            Some(a) => r.with(d, *a).expect("model amounts are valid"),
            None => r,
        })
}

fn read(r: &Resources) -> Model {
    Dim::ALL.map(|d| r.get(d))
}

/// Lane-wise over the union of set dimensions (unset counts as zero);
/// `None` when `f` fails or a result exceeds `MAX_AMOUNT` in some lane.
fn zip(a: &Model, b: &Model, f: impl Fn(u128, u128) -> Option<u128>) -> Option<Model> {
    let mut out = [None; Dim::COUNT];
    for i in 0..Dim::COUNT {
        if a[i].is_none() && b[i].is_none() {
            continue;
        }
        let v = f(u128::from(a[i].unwrap_or(0)), u128::from(b[i].unwrap_or(0)))?;
        if v > u128::from(MAX_AMOUNT) {
            return None;
        }
        out[i] = Some(u64::try_from(v).expect("at most MAX_AMOUNT"));
    }
    Some(out)
}

fn ppm(num: u64, den: u64) -> u32 {
    // Ppm::ratio's contract: num/den in millionths, rounded down, capped at
    // Ppm::MAX; zero over zero is zero, anything else over zero is the cap.
    let cap = Ppm::MAX.as_ppm();
    if den == 0 {
        return if num == 0 { 0 } else { cap };
    }
    let v = u128::from(num) * 1_000_000 / u128::from(den);
    u32::try_from(v.min(u128::from(cap))).expect("capped")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn construction_round_trips(a in model()) {
        let r = build(&a);
        prop_assert_eq!(read(&r), a);
        prop_assert_eq!(r.dims().len(), a.iter().filter(|x| x.is_some()).count());
        prop_assert_eq!(r.is_empty(), a.iter().all(Option::is_none));
        prop_assert!(r.with(Dim::Cpu, MAX_AMOUNT + 1).is_err());
    }

    #[test]
    fn add_and_subtract_match_the_model(a in model(), b in model()) {
        let (ra, rb) = (build(&a), build(&b));
        let max = u128::from(MAX_AMOUNT);

        let sum = ra.checked_add(&rb);
        prop_assert_eq!(sum.map(|r| read(&r)), zip(&a, &b, |x, y| Some(x + y)));
        prop_assert_eq!(sum, rb.checked_add(&ra), "addition commutes");

        let sat = ra.saturating_add(&rb);
        prop_assert_eq!(Some(read(&sat)), zip(&a, &b, |x, y| Some((x + y).min(max))));

        let diff = ra.checked_sub(&rb);
        prop_assert_eq!(diff.map(|r| read(&r)), zip(&a, &b, |x, y| x.checked_sub(y)));
        if let Some(d) = diff {
            // (a - b) + b == a on the union.
            prop_assert_eq!(d.checked_add(&rb).map(|r| read(&r)), zip(&a, &b, |x, _| Some(x)));
        }
        let sat_sub = ra.saturating_sub(&rb);
        prop_assert_eq!(Some(read(&sat_sub)), zip(&a, &b, |x, y| Some(x.saturating_sub(y))));

        prop_assert_eq!(Some(read(&ra.max(&rb))), zip(&a, &b, |x, y| Some(x.max(y))));
        prop_assert_eq!(Some(read(&ra.min(&rb))), zip(&a, &b, |x, y| Some(x.min(y))));
    }

    #[test]
    fn or_fills_only_unset_dimensions(a in model(), b in model()) {
        let got = read(&build(&a).or(&build(&b)));
        let want: Model = core::array::from_fn(|i| a[i].or(b[i]));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn clamped_to_caps_only_dimensions_set_in_both(a in model(), b in model()) {
        let got = read(&build(&a).clamped_to(&build(&b)));
        let want: Model = core::array::from_fn(|i| match (a[i], b[i]) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, _) => x,
        });
        prop_assert_eq!(got, want);
    }

    /// A request clamped to what admission can ever grant never fits
    /// "never": whatever the capacity, headroom, critical reserve and urgency.
    #[test]
    fn a_request_clamped_to_the_grantable_can_ever_fit(
        request in model(),
        capacity in model(),
        headroom in model(),
        reserve in model(),
        critical in any::<bool>(),
    ) {
        use respool_core::admission::{Admission, AdmissionConfig, Urgency};
        let tracker = Tracker::new(&build(&capacity));
        // Headroom only in tracked dimensions (others are refused).
        let tracked: Model = core::array::from_fn(|i| capacity[i].and(headroom[i]));
        tracker.set_headroom(&build(&tracked)).expect("tracked dimensions only");
        let admission = Admission::new(AdmissionConfig {
            critical_reserve: build(&reserve),
            ..AdmissionConfig::default()
        });
        let urgency = if critical { Urgency::Critical } else { Urgency::Normal };
        let clamped = build(&request).clamped_to(&admission.grantable(&tracker, urgency));
        prop_assert!(admission.check_ever_fits(&tracker, &clamped, urgency).is_ok());
        // Dimensions the request sets stay set, others stay unset.
        prop_assert_eq!(clamped.dims(), build(&request).dims());
    }

    #[test]
    fn scale_rounds_up_and_saturates(a in model(), ratio in 0u32..=3_000_000) {
        let got = read(&build(&a).scale(Ppm::from_ppm(ratio)));
        let want: Model = core::array::from_fn(|i| {
            a[i].map(|x| {
                let v = (u128::from(x) * u128::from(ratio)).div_ceil(1_000_000);
                u64::try_from(v.min(u128::from(MAX_AMOUNT))).expect("capped")
            })
        });
        prop_assert_eq!(got, want);
    }

    #[test]
    fn fit_checks_match_the_model(a in model(), cap in model()) {
        let (req, capacity) = (build(&a), build(&cap));
        // The first dimension, in index order, set in both and over.
        let first = (0..Dim::COUNT).find_map(|i| match (a[i], cap[i]) {
            (Some(x), Some(c)) if x > c => Some((Dim::ALL[i], x, c)),
            _ => None,
        });
        let got = req.first_shortfall(&capacity);
        prop_assert_eq!(got.is_none(), first.is_none());
        prop_assert_eq!(req.fits_within(&capacity), first.is_none());
        if let (Some(s), Some((dim, x, c))) = (got, first) {
            prop_assert_eq!((s.dim, s.requested, s.available, s.by), (dim, x, c, x - c));
        }
        let excess = read(&req.excess_over(&capacity));
        let want: Model = core::array::from_fn(|i| match (a[i], cap[i]) {
            (Some(x), Some(c)) => Some(x.saturating_sub(c)),
            _ => None,
        });
        prop_assert_eq!(excess, want);
    }

    #[test]
    fn shares_match_the_model(a in model(), cap in model()) {
        let (req, capacity) = (build(&a), build(&cap));
        let util = req.utilisation(&capacity);
        for i in 0..Dim::COUNT {
            let want = cap[i].map(|c| ppm(a[i].unwrap_or(0), c));
            prop_assert_eq!(util[i].map(Ppm::as_ppm), want, "utilisation of {:?}", Dim::ALL[i]);
        }
        // Dominant share: the largest share over dimensions set in both,
        // ties to the lower index.
        let mut want: Option<(Dim, u32)> = None;
        for i in 0..Dim::COUNT {
            if let (Some(x), Some(c)) = (a[i], cap[i]) {
                let s = ppm(x, c);
                if want.is_none_or(|(_, b)| s > b) {
                    want = Some((Dim::ALL[i], s));
                }
            }
        }
        prop_assert_eq!(req.dominant_share(&capacity).map(|(d, p)| (d, p.as_ppm())), want);
    }
}

/// One step of the tracker property.
#[derive(Clone, Debug)]
enum Op {
    Reserve(Model),
    /// Releases the live reservation at this index (modulo their number).
    Release(usize),
    /// Grows the live reservation at this index by this much.
    Grow(usize, Model),
    Capacity(Model),
    Headroom(Model),
    External(Model),
}

/// Small amounts in the three tracked dimensions (Cpu, Memory, Gpu) and
/// sometimes in an untracked one (Iops), so that requests collide often.
fn small() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![2 => Just(None), 5 => (0u64..=40).prop_map(Some)]
}

fn request() -> impl Strategy<Value = Model> {
    (small(), small(), small(), small()).prop_map(|(c, m, g, i)| {
        let mut r = [None; Dim::COUNT];
        r[Dim::Cpu.index()] = c;
        r[Dim::Memory.index()] = m;
        r[Dim::Gpu.index()] = g;
        r[Dim::Iops.index()] = i;
        r
    })
}

/// A setting: amounts only in tracked dimensions (the tracker refuses others).
fn setting(hi: u64) -> impl Strategy<Value = Model> {
    let a = || prop_oneof![1 => Just(None), 2 => (0u64..=hi).prop_map(Some)];
    (a(), a(), a()).prop_map(|(c, m, g)| {
        let mut r = [None; Dim::COUNT];
        r[Dim::Cpu.index()] = c;
        r[Dim::Memory.index()] = m;
        r[Dim::Gpu.index()] = g;
        r
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => request().prop_map(Op::Reserve),
        4 => any::<usize>().prop_map(Op::Release),
        1 => (any::<usize>(), request()).prop_map(|(i, m)| Op::Grow(i, m)),
        1 => setting(120).prop_map(Op::Capacity),
        1 => setting(30).prop_map(Op::Headroom),
        1 => setting(30).prop_map(Op::External),
    ]
}

const TRACKED: [Dim; 3] = [Dim::Cpu, Dim::Memory, Dim::Gpu];

/// The model of one tracker: settings and the live reservations' amounts.
struct TrackerModel {
    capacity: [i128; Dim::COUNT],
    headroom: [i128; Dim::COUNT],
    external: [i128; Dim::COUNT],
}

impl TrackerModel {
    fn free(&self, i: usize, reserved: &[i128; Dim::COUNT]) -> i128 {
        self.capacity[i] - self.headroom[i] - self.external[i] - reserved[i]
    }
}

fn reserved_of(live: &[(respool_core::Reservation<&Tracker>, Model)]) -> [i128; Dim::COUNT] {
    let mut sum = [0i128; Dim::COUNT];
    for (_, m) in live {
        for d in TRACKED {
            sum[d.index()] += i128::from(m[d.index()].unwrap_or(0));
        }
    }
    sum
}

fn apply(settings: &mut [i128; Dim::COUNT], m: &Model) {
    for d in TRACKED {
        if let Some(v) = m[d.index()] {
            settings[d.index()] = i128::from(v);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn tracker_matches_its_model(
        initial in setting(120),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        // Track all three dimensions, whatever the initial setting leaves unset.
        let mut start = initial;
        for d in TRACKED {
            start[d.index()].get_or_insert(0);
        }
        let tracker = Tracker::new(&build(&start));
        let mut model = TrackerModel {
            capacity: [0; Dim::COUNT],
            headroom: [0; Dim::COUNT],
            external: [0; Dim::COUNT],
        };
        apply(&mut model.capacity, &start);
        // Each live reservation with what it holds (tracked dimensions).
        let mut live: Vec<(respool_core::Reservation<&Tracker>, Model)> = Vec::new();

        for op in ops {
            match op {
                Op::Reserve(req) => {
                    let reserved = reserved_of(&live);
                    let fits = TRACKED.iter().all(|d| {
                        let need = i128::from(req[d.index()].unwrap_or(0));
                        need == 0 || need <= model.free(d.index(), &reserved)
                    });
                    match tracker.try_reserve(&build(&req)) {
                        Ok(r) => {
                            prop_assert!(fits, "reserved {:?} that the model says does not fit", req);
                            let mut held = [None; Dim::COUNT];
                            for d in TRACKED {
                                held[d.index()] = req[d.index()].filter(|&v| v > 0);
                            }
                            prop_assert_eq!(read(r.held()), held, "holds the tracked, non-zero part");
                            live.push((r, held));
                            // Never over-committed by a reservation.
                            let after = reserved_of(&live);
                            for d in TRACKED {
                                prop_assert!(model.free(d.index(), &after) >= 0
                                    || req[d.index()].unwrap_or(0) == 0,
                                    "{:?} over-committed by a reservation", d);
                            }
                        }
                        Err(s) => {
                            prop_assert!(!fits, "refused {:?} that the model says fits: {:?}", req, s);
                            let i = s.dim.index();
                            prop_assert_eq!(s.requested, req[i].unwrap_or(0));
                            prop_assert!(i128::from(s.requested) > model.free(i, &reserved));
                        }
                    }
                }
                Op::Release(i) => {
                    if !live.is_empty() {
                        let (r, _) = live.swap_remove(i % live.len());
                        r.release();
                    }
                }
                Op::Grow(i, extra) => {
                    if live.is_empty() {
                        continue;
                    }
                    let reserved = reserved_of(&live);
                    let fits = TRACKED.iter().all(|d| {
                        let need = i128::from(extra[d.index()].unwrap_or(0));
                        need == 0 || need <= model.free(d.index(), &reserved)
                    });
                    let k = i % live.len();
                    let (r, held) = &mut live[k];
                    let before = *held;
                    match r.try_grow(&build(&extra)) {
                        Ok(()) => {
                            prop_assert!(fits, "grew by {:?} beyond the model", extra);
                            for d in TRACKED {
                                let add = extra[d.index()].unwrap_or(0);
                                let sum = before[d.index()].unwrap_or(0) + add;
                                held[d.index()] = (sum > 0).then_some(sum);
                            }
                        }
                        Err(_) => prop_assert!(!fits, "refused a grow by {:?} that fits", extra),
                    }
                    prop_assert_eq!(read(r.held()), *held);
                }
                Op::Capacity(m) => {
                    tracker.set_capacity(&build(&m)).expect("tracked dimensions");
                    apply(&mut model.capacity, &m);
                }
                Op::Headroom(m) => {
                    tracker.set_headroom(&build(&m)).expect("tracked dimensions");
                    apply(&mut model.headroom, &m);
                }
                Op::External(m) => {
                    tracker.set_external(&build(&m)).expect("tracked dimensions");
                    apply(&mut model.external, &m);
                }
            }
            // The books: reserved() is the sum of what the live ones hold
            // (reported floored at zero, and it is never negative here).
            let reserved = reserved_of(&live);
            for d in TRACKED {
                prop_assert_eq!(
                    i128::from(tracker.reserved().amount(d)),
                    reserved[d.index()],
                    "reserved {:?}", d
                );
                prop_assert_eq!(
                    i128::from(tracker.available_signed(d).expect("tracked")),
                    model.free(d.index(), &reserved),
                    "available {:?}", d
                );
            }
        }
        drop(live);
        prop_assert!(tracker.is_idle(), "everything released: {:?}", tracker.reserved());
    }
}

const FIVE: [Dim; 5] = [Dim::Cpu, Dim::Memory, Dim::Iops, Dim::Network, Dim::Gpu];

/// Up to five set dimensions among the five tracked ones.
fn five() -> impl Strategy<Value = Model> {
    proptest::array::uniform5(small()).prop_map(|a| {
        let mut r = [None; Dim::COUNT];
        for (d, v) in FIVE.iter().zip(a) {
            r[d.index()] = v;
        }
        r
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The packed fast path decides exactly as `try_reserve_above` on an
    /// identical tracker when the request holds at most three dimensions,
    /// declines (leaving the tracker as it was) when it holds more, and its
    /// token unpacks, merges and releases to the same amounts.
    #[test]
    fn packed_reservations_match_plain_ones(
        cap in proptest::array::uniform5(0u64..=60),
        floor in five(),
        reqs in proptest::collection::vec(five(), 1..12),
    ) {
        let capacity = FIVE
            .iter()
            .zip(cap)
            .fold(Resources::NONE, |r, (&d, c)| r.with_saturating(d, c));
        let (plain, packed) = (Tracker::new(&capacity), Tracker::new(&capacity));
        let floor = build(&floor);
        let mut held_plain = Vec::new();
        let mut batch: Option<respool_core::DetachedReservation> = None;
        for req in &reqs {
            let req = build(req);
            let a = plain.try_reserve_above(&req, &floor);
            let b = packed.try_reserve_packed(&req, &floor);
            match (a, b) {
                (Ok(a), Some(b)) => {
                    prop_assert_eq!(b.dims(), a.held().dims());
                    let b = b.unpack();
                    prop_assert_eq!(b.held(), a.held());
                    let b = b.pack().expect("packs again");
                    match batch.as_mut() {
                        Some(t) => prop_assert!(t.merge_packed(b).is_ok()),
                        None => batch = Some(b.unpack()),
                    }
                    held_plain.push(a.detach().1);
                }
                (Ok(a), None) => {
                    prop_assert!(a.held().dims().iter().count() > respool_core::tracker::PACKED_DIMS,
                        "declined {:?}, which fits and packs", a.held());
                    a.release();
                }
                (Err(_), None) => {}
                (Err(s), Some(b)) => {
                    prop_assert!(false, "packed {:?} where the plain path is short: {:?}", b, s);
                }
            }
            prop_assert_eq!(plain.available(), packed.available());
        }
        // The merged batch holds what the plain reservations hold, in sum.
        let mut sum: Option<respool_core::DetachedReservation> = None;
        for h in held_plain {
            match sum.as_mut() {
                Some(s) => prop_assert!(s.merge(h).is_ok()),
                None => sum = Some(h),
            }
        }
        prop_assert_eq!(sum.as_ref().map(|s| *s.held()), batch.as_ref().map(|b| *b.held()));
        if let Some(s) = sum {
            prop_assert!(s.release(&plain).is_ok());
        }
        if let Some(b) = batch {
            prop_assert!(b.release(&packed).is_ok());
        }
        prop_assert!(plain.is_idle() && packed.is_idle());
    }
}
