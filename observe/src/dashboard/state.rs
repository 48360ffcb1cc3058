//! The pool's snapshot as the dashboard's JSON.

use respool::units::{format_bytes, format_cpu};
use respool::{Dim, LatencySummary, PoolSnapshot, Ppm, Resources};
use serde_json::{Map, Value, json};

fn unit(dim: Dim) -> &'static str {
    match dim {
        Dim::Cpu => "millicores",
        Dim::Memory | Dim::GpuMemory => "bytes",
        Dim::Iops => "ops/s",
        Dim::Network => "bytes/s",
        Dim::Gpu => "devices",
        _ => "count",
    }
}

/// An amount as text in its dimension's unit ("1.5 GiB", "500m CPU").
fn amount_text(dim: Dim, v: u64) -> String {
    match dim {
        Dim::Cpu => format!("{} CPU", format_cpu(v)),
        Dim::Memory | Dim::GpuMemory => format_bytes(v),
        Dim::Network => format!("{}/s", format_bytes(v)),
        Dim::Iops => format!("{v} ops/s"),
        _ => v.to_string(),
    }
}

/// One placement domain: its index and, per dimension its capacity tracks,
/// used and capacity as numbers and as text.
fn domain(index: usize, used: &Resources, capacity: &Resources) -> Value {
    let dims: Vec<Value> = capacity
        .iter()
        .map(|(dim, cap)| {
            let u = used.amount(dim);
            json!({
                "dim": dim.name(),
                "unit": unit(dim),
                "used": u,
                "capacity": cap,
                "used_text": amount_text(dim, u),
                "capacity_text": amount_text(dim, cap),
            })
        })
        .collect();
    json!({ "index": index, "dims": dims })
}

/// A share as a fraction (0.25 for 25%).
pub(super) fn fraction(p: Ppm) -> f64 {
    f64::from(p.as_ppm()) / 1e6
}

/// `{"cpu": 500, "memory": 1048576}` for the dimensions set.
pub(super) fn resources(r: &Resources) -> Value {
    let mut m = Map::new();
    for (dim, amount) in r.iter() {
        m.insert(dim.name().to_owned(), json!(amount));
    }
    Value::Object(m)
}

fn latency(l: &LatencySummary) -> Value {
    json!({
        "count": l.count,
        "mean_s": l.mean.as_secs_f64(),
        "p50_s": l.p50.as_secs_f64(),
        "p90_s": l.p90.as_secs_f64(),
        "p99_s": l.p99.as_secs_f64(),
        "max_s": l.max.as_secs_f64(),
    })
}

/// The snapshot's figures (see [`super`]).
pub(super) fn snapshot_json(s: &PoolSnapshot) -> Value {
    let dims: Vec<Value> = s
        .capacity
        .iter()
        .map(|(dim, cap)| {
            json!({
                "dim": dim.name(),
                "unit": unit(dim),
                "capacity": cap,
                "effective": s.effective_capacity.get(dim),
                "reserved": s.reserved.amount(dim),
                "utilisation": s.utilisation.get(dim.index()).copied().flatten().map(fraction),
            })
        })
        .collect();
    let classes: Vec<Value> = s
        .classes
        .iter()
        .map(|c| {
            json!({
                "class": c.class,
                "runs": c.runs,
                "predictions": c.predictions,
                "within_10pct": c.within_10pct,
                "accuracy": (c.predictions > 0).then(|| fraction(Ppm::ratio(c.within_10pct, c.predictions))),
                "recent": (c.predictions > 0).then(|| fraction(c.recent)),
                "expected": resources(&c.expected),
                "clamped": c.clamped,
            })
        })
        .collect();
    let domains: Vec<Value> = s
        .domains
        .iter()
        .enumerate()
        .map(|(i, (used, cap))| domain(i, used, cap))
        .collect();
    let l = &s.learning;
    json!({
        "workers": s.workers,
        "submitted": s.submitted,
        "completed": s.completed,
        "panicked": s.panicked,
        "timed_out": s.timed_out,
        "rejected": s.rejected,
        "queued": s.queued,
        "waiting": s.waiting,
        "peak_waiting": s.peak_waiting,
        "held_for_room": s.held_for_room,
        "admission": {
            "accepted": s.admission.accepted,
            "deferred": s.admission.deferred,
            "rejected": s.admission.rejected,
            "admitted_after_wait": s.admission.admitted_after_wait,
            "rejected_after_wait": s.admission.rejected_after_wait,
        },
        "dims": dims,
        "fragmentation": fraction(s.fragmentation),
        "domains": domains,
        "wait": latency(&s.wait),
        "latency": latency(&s.latency),
        "learning": {
            "predictions": l.predictions,
            "within_10pct": l.within_10pct,
            "accuracy": (l.predictions > 0).then(|| fraction(Ppm::ratio(l.within_10pct, l.predictions))),
        },
        "classes": classes,
    })
}
