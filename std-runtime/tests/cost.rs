//! Per-class cost in the snapshot, against figures computed by hand from
//! what each task was measured to use and held (its `TaskReport`).

use std::sync::{Arc, Mutex};

use respool::cost::{Pricing, Rates};
use respool::measure::TaskReport;
use respool::{Dim, Pool};

const GIB: u64 = 1 << 30;

#[test]
fn a_class_costs_what_its_runs_used_and_its_slack_what_they_held_unused() {
    // Round rates: $1 per vCPU-second, $0.5 per GiB-second, $2 per GPU-second.
    let rates = Rates {
        usd_per_vcpu_hour: 3600.0,
        usd_per_gib_hour: 1800.0,
        usd_per_gpu_hour: 7200.0,
    };
    let reports = Arc::new(Mutex::new(Vec::new()));
    let pool = Pool::builder()
        .workers(2)
        .memory("8GiB")
        .tasks_report_memory(true)
        .pricing(Pricing {
            label: "test rates".into(),
            rates,
        })
        .on_task_end({
            let reports = reports.clone();
            move |r: &TaskReport| reports.lock().unwrap().push(r.clone())
        })
        .build()
        .unwrap();
    for (class, held, used) in [("a", 2, 1), ("a", 2, 2), ("b", 1, 1)] {
        pool.task()
            .class(class)
            .memory(format!("{held}GiB").as_str())
            .cpu("500m")
            .spawn(move |ctx| {
                ctx.report_usage(Dim::Memory, used * GIB);
                ctx.report_usage(Dim::Cpu, 250);
            })
            .unwrap()
            .join()
            .unwrap();
    }
    pool.shutdown();
    let snap = pool.snapshot();
    assert_eq!(snap.pricing.as_deref(), Some("test rates"));
    let reports = reports.lock().unwrap();
    for class in ["a", "b"] {
        // By hand: per run, wall seconds x (vCPUs x $1 + GiB x $0.5).
        let (mut used, mut slack) = (0.0, 0.0);
        for r in reports.iter().filter(|r| r.class.as_deref() == Some(class)) {
            let wall = r.usage.wall.as_secs_f64();
            let u = r.usage.as_resources();
            let (cpu, mem) = (
                u.amount(Dim::Cpu) as f64 / 1000.0,
                u.amount(Dim::Memory) as f64 / GIB as f64,
            );
            let (hcpu, hmem) = (
                r.requested.amount(Dim::Cpu) as f64 / 1000.0,
                r.requested.amount(Dim::Memory) as f64 / GIB as f64,
            );
            assert_eq!((cpu, hcpu), (0.25, 0.5), "{r:?}");
            used += wall * (cpu + 0.5 * mem);
            slack += wall * ((hcpu - cpu) + 0.5 * (hmem - mem));
        }
        let c = snap.classes.iter().find(|c| c.class == class).unwrap();
        let cost = c.cost.expect("priced");
        assert!(
            (cost.usd() - used).abs() < 1e-6,
            "{class}: {} vs {used}",
            cost.usd()
        );
        assert!(
            (cost.slack_usd() - slack).abs() < 1e-6,
            "{class}: {} vs {slack}",
            cost.slack_usd()
        );
        assert!(cost.slack_usd() > 0.0);
    }
    let total = snap.learning.cost.expect("the total is priced");
    let sum: u64 = snap.classes.iter().map(|c| c.cost.unwrap().nano_usd).sum();
    assert!(
        total.nano_usd.abs_diff(sum) <= 2,
        "{} vs {sum}",
        total.nano_usd
    );
    assert!(snap.to_string().contains("at test rates prices"), "{snap}");
}

#[test]
fn without_pricing_nothing_is_priced() {
    let pool = Pool::builder().workers(1).memory("1GiB").build().unwrap();
    pool.task()
        .class("a")
        .spawn(|_| ())
        .unwrap()
        .join()
        .unwrap();
    pool.shutdown();
    let snap = pool.snapshot();
    assert_eq!(snap.pricing, None);
    assert!(snap.classes.iter().all(|c| c.cost.is_none()));
    assert!(
        snap.classes[0].held.memory_byte_ns > 0,
        "totals are kept all the same"
    );
}
