//! What respool learned, handed to the schedulers of a cluster.
//!
//! respool does not schedule across machines; the schedulers people run
//! already do, on numbers people guess. [`requests`] turns learned
//! [`Profiles`] into per-class requests (a chosen percentile of the
//! measured samples plus a margin, as the Kubernetes VPA recommender sizes
//! a container), and [`render`] writes them in each scheduler's own syntax:
//!
//! | [`Format`] | what | units |
//! |------------|------|-------|
//! | `k8s` | JSON: class → a container's `resources` (`requests` cpu and memory, `limits` memory) | cpu in millicores (`1500m`), memory in MiB (`512Mi`) |
//! | `slurm` | per class, `#SBATCH --cpus-per-task=N` and `#SBATCH --mem=NM` lines | whole CPUs (rounded up); MiB (Slurm's `M`) |
//! | `hq` | a HyperQueue job file (TOML): one `[[task]]` per class with its `[[task.request]]` | `cpus` to 4 decimals; `mem` in megabytes (10^6 bytes, HyperQueue's unit) |
//! | `ray` | JSON: class → options for `.options(**opts)` / `@ray.remote(...)` | `num_cpus` (float), `memory` in bytes, `num_gpus` |
//!
//! Every amount is rounded up, never down. Memory is incompressible: its
//! Kubernetes limit equals its request (a container past it is killed; the
//! percentile and margin are what make it rare). CPU is compressible: it
//! gets a request and no limit (a limit only throttles). A class's memory
//! is at least the bump after its largest recorded out-of-memory event
//! ([`PredictConfig::oom_bump`](respool_core::predict::PredictConfig::oom_bump)).
//! The percentile is taken over the samples the profile keeps (the same
//! bounded history the predictors are rebuilt from), without decay.
//!
//! These are *requests for a scheduler*; HyperQueue and Ray treat them as
//! numbers for placement only ("just numbers used for scheduling"), Slurm
//! enforces `--mem` with a cgroup, Kubernetes enforces the memory limit.
//!
//! # Examples
//!
//! ```
//! use respool::export::{requests, render, ExportConfig, Format};
//! use respool::Pool;
//! let pool = Pool::builder().workers(1).memory("1GiB").tasks_report_memory(true).build()?;
//! for mib in [100, 110, 120] {
//!     pool.task()
//!         .class("resize")
//!         .spawn(move |ctx| ctx.report_usage(respool::Dim::Memory, mib << 20))?
//!         .join()?;
//! }
//! pool.shutdown(); // every run is recorded after shutdown
//! let wanted = requests(&pool.profiles(), &ExportConfig::default());
//! // p95 of {100, 110, 120} MiB is 120 MiB; +15% is 138 MiB.
//! assert_eq!(wanted[0].memory_bytes, Some(138 << 20));
//! let k8s = render(&wanted, Format::Kubernetes);
//! assert!(k8s.contains("\"memory\": \"138Mi\""), "{k8s}");
//! assert!(render(&wanted, Format::Slurm).contains("#SBATCH --mem=138M"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::fmt::Write as _;
use std::str::FromStr;

use respool_core::predict::PredictConfig;
use respool_core::{Dim, Ppm};

use crate::store::Profiles;

/// How requests are computed from samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportConfig {
    /// The percentile of the measured samples (default 95%, respool's own
    /// reserve percentile; at most 100%).
    pub percentile: Ppm,
    /// Added on top of it (default 15%, the VPA recommender's safety
    /// margin).
    pub margin: Ppm,
    /// Samples of a dimension below which it is not exported (default 1).
    pub min_samples: usize,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            percentile: Ppm::from_percent(95),
            margin: Ppm::from_percent(15),
            min_samples: 1,
        }
    }
}

/// What one class should request, from what it was measured to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassRequest {
    /// The class key.
    pub class: String,
    /// Runs measured in total.
    pub runs: u64,
    /// Samples the request was computed from (the profile's history).
    pub samples: usize,
    /// CPU in millicores (from runs long enough to time); `None`: not measured.
    pub cpu_millis: Option<u64>,
    /// Memory in bytes; `None`: not measured.
    pub memory_bytes: Option<u64>,
    /// GPU devices; `None`: none used.
    pub gpus: Option<u64>,
}

/// The formats [`render`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Kubernetes container `resources`, per class (`k8s`).
    Kubernetes,
    /// Slurm `#SBATCH` options, per class (`slurm`).
    Slurm,
    /// A HyperQueue job file (`hq`).
    HyperQueue,
    /// Ray task options, per class (`ray`).
    Ray,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [Format; 4] = [
        Format::Kubernetes,
        Format::Slurm,
        Format::HyperQueue,
        Format::Ray,
    ];

    /// The name the CLI takes (`k8s`, `slurm`, `hq`, `ray`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Format::Kubernetes => "k8s",
            Format::Slurm => "slurm",
            Format::HyperQueue => "hq",
            Format::Ray => "ray",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown export format {}: expected one of k8s, slurm, hq, ray",
            respool_sys::Excerpt::quoted(&self.0)
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        match s {
            "k8s" | "kubernetes" => Ok(Format::Kubernetes),
            "slurm" => Ok(Format::Slurm),
            "hq" | "hyperqueue" => Ok(Format::HyperQueue),
            "ray" => Ok(Format::Ray),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

/// The nearest-rank percentile of `values` (sorted here), or `None` when
/// there are fewer than `min` of them.
fn percentile(mut values: Vec<u64>, p: Ppm, min: usize) -> Option<u64> {
    if values.is_empty() || values.len() < min {
        return None;
    }
    values.sort_unstable();
    let n = values.len() as u128;
    let p = u128::from(p.as_ppm().min(1_000_000));
    // rank = ceil(p * n), at least 1.
    let rank = (p * n).div_ceil(1_000_000).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(usize::MAX);
    values.get(index.min(values.len() - 1)).copied()
}

/// `v * (1 + margin)`, rounded up.
fn with_margin(v: u64, margin: Ppm) -> u64 {
    let scaled = u128::from(v) * (1_000_000 + u128::from(margin.as_ppm()));
    u64::try_from(scaled.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Rounds `v` up to a multiple of `unit`.
fn round_up(v: u64, unit: u64) -> u64 {
    v.div_ceil(unit).saturating_mul(unit)
}

const MIB: u64 = 1 << 20;

/// The request of every class of `profiles` with at least one measured
/// dimension, in class order. Memory is rounded up to whole MiB and CPU to
/// whole millicores, so that every format states the same amounts.
#[must_use]
pub fn requests(profiles: &Profiles, config: &ExportConfig) -> Vec<ClassRequest> {
    let oom = PredictConfig::DEFAULT;
    let mut out: Vec<ClassRequest> = profiles
        .classes
        .iter()
        .filter_map(|c| {
            let of = |dim: Dim| -> Vec<u64> {
                c.samples
                    .iter()
                    .filter(|s| s.oom_bytes.is_none())
                    .filter_map(|s| s.usage().get(dim))
                    .collect()
            };
            let pick = |dim: Dim| {
                percentile(of(dim), config.percentile, config.min_samples.max(1))
                    .map(|v| with_margin(v, config.margin))
            };
            let worst_oom = c
                .samples
                .iter()
                .filter_map(|s| s.oom_bytes)
                .max()
                .map(|b| oom.oom_bump(b));
            let memory = match (pick(Dim::Memory), worst_oom) {
                (Some(m), Some(o)) => Some(m.max(o)),
                (m, o) => m.or(o),
            }
            .map(|m| round_up(m.max(1), MIB));
            let cpu = pick(Dim::Cpu).map(|m| m.max(1));
            let gpus = pick(Dim::Gpu).filter(|g| *g > 0);
            (memory.is_some() || cpu.is_some() || gpus.is_some()).then(|| ClassRequest {
                class: c.class.clone(),
                runs: c.runs,
                samples: c.samples.len(),
                cpu_millis: cpu,
                memory_bytes: memory,
                gpus,
            })
        })
        .collect();
    out.sort_by(|a, b| a.class.cmp(&b.class));
    out
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// CPU in cores with up to 4 decimals (HyperQueue's precision), rounded up.
fn cores(millis: u64) -> String {
    // Millicores have 3 decimals: exact.
    let whole = millis / 1000;
    let frac = millis % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        let s = format!("{whole}.{frac:03}");
        s.trim_end_matches('0').to_owned()
    }
}

/// Writes `requests` in `format` (see the [module documentation](self)).
#[must_use]
pub fn render(requests: &[ClassRequest], format: Format) -> String {
    match format {
        Format::Kubernetes => {
            let mut map = serde_json::Map::new();
            for r in requests {
                let mut req = serde_json::Map::new();
                let mut lim = serde_json::Map::new();
                if let Some(c) = r.cpu_millis {
                    req.insert("cpu".into(), format!("{c}m").into());
                }
                if let Some(m) = r.memory_bytes {
                    let q = format!("{}Mi", m.div_ceil(MIB));
                    req.insert("memory".into(), q.clone().into());
                    lim.insert("memory".into(), q.into());
                }
                if let Some(g) = r.gpus {
                    // Extended resources: request equals limit.
                    req.insert("nvidia.com/gpu".into(), g.to_string().into());
                    lim.insert("nvidia.com/gpu".into(), g.to_string().into());
                }
                let mut res = serde_json::Map::new();
                res.insert("requests".into(), req.into());
                if !lim.is_empty() {
                    res.insert("limits".into(), lim.into());
                }
                map.insert(r.class.clone(), res.into());
            }
            pretty(&serde_json::Value::Object(map))
        }
        Format::Ray => {
            let mut map = serde_json::Map::new();
            for r in requests {
                let mut o = serde_json::Map::new();
                if let Some(c) = r.cpu_millis {
                    // Exact in binary floating point to 3 decimals' intent.
                    #[allow(clippy::cast_precision_loss)]
                    let v = c as f64 / 1000.0;
                    o.insert("num_cpus".into(), v.into());
                }
                if let Some(m) = r.memory_bytes {
                    o.insert("memory".into(), m.into());
                }
                if let Some(g) = r.gpus {
                    o.insert("num_gpus".into(), g.into());
                }
                map.insert(r.class.clone(), o.into());
            }
            pretty(&serde_json::Value::Object(map))
        }
        Format::Slurm => {
            let mut s = String::from(
                "# Slurm options per respool class (sbatch/srun); --mem in MiB, CPUs rounded up.\n",
            );
            for r in requests {
                let _ = writeln!(
                    s,
                    "\n# respool class {} ({} runs, {} samples)",
                    json_str(&r.class),
                    r.runs,
                    r.samples
                );
                if let Some(c) = r.cpu_millis {
                    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", c.div_ceil(1000).max(1));
                }
                if let Some(m) = r.memory_bytes {
                    let _ = writeln!(s, "#SBATCH --mem={}M", m.div_ceil(MIB));
                }
                if let Some(g) = r.gpus {
                    let _ = writeln!(s, "#SBATCH --gpus-per-task={g}");
                }
            }
            s
        }
        Format::HyperQueue => {
            let mut s = String::from(
                "# HyperQueue job file: one task per respool class, with the requests respool\n\
                 # learned. Replace each command with the class's own; RESPOOL_CLASS names it.\n\
                 # cpus in cores (4 decimals), mem in megabytes (10^6 bytes), both rounded up.\n",
            );
            for (i, r) in requests.iter().enumerate() {
                let mut res = Vec::new();
                if let Some(c) = r.cpu_millis {
                    res.push(format!("\"cpus\" = \"{}\"", cores(c)));
                }
                if let Some(m) = r.memory_bytes {
                    res.push(format!("\"mem\" = \"{}\"", m.div_ceil(1_000_000)));
                }
                if let Some(g) = r.gpus {
                    res.push(format!("\"gpus/nvidia\" = \"{g}\""));
                }
                let class = json_str(&r.class);
                let _ = write!(
                    s,
                    "\n[[task]]\nid = {i}\ncommand = [\"/bin/sh\", \"-c\", \"echo replace with the command of class $RESPOOL_CLASS; exit 1\"]\nenv = {{ \"RESPOOL_CLASS\" = {class} }}\n[[task.request]]\nresources = {{ {} }}\n",
                    res.join(", ")
                );
            }
            s
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{ClassRecord, Sample};
    use respool_core::Resources;

    fn sample(cpu: Option<u64>, mem: u64) -> Sample {
        let mut r = Resources::NONE.with_saturating(Dim::Memory, mem);
        if let Some(c) = cpu {
            r = r.with_saturating(Dim::Cpu, c);
        }
        Sample::new(1, None, Duration::from_secs(1), &r, None)
    }

    fn profiles(samples: Vec<Sample>) -> Profiles {
        Profiles::new(vec![ClassRecord {
            class: "enc\"ode".into(),
            runs: samples.len() as u64,
            samples,
        }])
    }

    #[test]
    fn percentiles_by_hand() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(v.clone(), Ppm::from_percent(95), 1), Some(19));
        assert_eq!(percentile(v.clone(), Ppm::from_percent(100), 1), Some(20));
        assert_eq!(percentile(v.clone(), Ppm::from_percent(50), 1), Some(10));
        assert_eq!(percentile(v.clone(), Ppm::ZERO, 1), Some(1));
        assert_eq!(percentile(v, Ppm::from_percent(95), 21), None);
        assert_eq!(percentile(vec![7], Ppm::from_percent(95), 1), Some(7));
        assert_eq!(with_margin(100, Ppm::from_percent(15)), 115);
        assert_eq!(with_margin(3, Ppm::from_percent(15)), 4, "rounded up");
        assert_eq!(with_margin(u64::MAX, Ppm::from_percent(15)), u64::MAX);
        assert_eq!(cores(1500), "1.5");
        assert_eq!(cores(2000), "2");
        assert_eq!(cores(1), "0.001");
    }

    /// The Kubernetes quantity `q` in bytes or millicores (the forms
    /// [`render`] writes).
    fn quantity(q: &str) -> u64 {
        if let Some(m) = q.strip_suffix("Mi") {
            m.parse::<u64>().unwrap() * MIB
        } else if let Some(m) = q.strip_suffix('m') {
            m.parse().unwrap()
        } else {
            q.parse::<u64>().unwrap() * 1000
        }
    }

    #[test]
    fn a_profile_round_trips_through_every_format() {
        // 20 runs: 1..=20 x 100 MiB, 250..=5000 millicores.
        let samples = (1..=20)
            .map(|i| sample(Some(i * 250), i * 100 * MIB))
            .collect();
        let p = profiles(samples);
        let r = requests(&p, &ExportConfig::default());
        assert_eq!(r.len(), 1);
        // p95 = the 19th value: 1900 MiB and 4750m; +15%: 2185 MiB, 5462.5m -> 5463m.
        assert_eq!(r[0].memory_bytes, Some(2185 * MIB));
        assert_eq!(r[0].cpu_millis, Some(5463));
        assert_eq!(r[0].class, "enc\"ode");

        let k8s: serde_json::Value = serde_json::from_str(&render(&r, Format::Kubernetes)).unwrap();
        let res = &k8s["enc\"ode"];
        assert_eq!(
            quantity(res["requests"]["memory"].as_str().unwrap()),
            2185 * MIB
        );
        assert_eq!(
            quantity(res["limits"]["memory"].as_str().unwrap()),
            2185 * MIB
        );
        assert_eq!(quantity(res["requests"]["cpu"].as_str().unwrap()), 5463);
        assert!(res["limits"].get("cpu").is_none(), "no CPU limit");

        let ray: serde_json::Value = serde_json::from_str(&render(&r, Format::Ray)).unwrap();
        assert_eq!(ray["enc\"ode"]["memory"].as_u64(), Some(2185 * MIB));
        assert_eq!(ray["enc\"ode"]["num_cpus"].as_f64(), Some(5.463));

        let slurm = render(&r, Format::Slurm);
        assert!(slurm.contains("#SBATCH --mem=2185M\n"), "{slurm}");
        assert!(slurm.contains("#SBATCH --cpus-per-task=6\n"), "{slurm}");
        assert!(slurm.contains("# respool class \"enc\\\"ode\""), "{slurm}");

        let hq = render(&r, Format::HyperQueue);
        // 2185 MiB = 2291.138560 MB, rounded up.
        assert!(
            hq.contains("resources = { \"cpus\" = \"5.463\", \"mem\" = \"2292\" }"),
            "{hq}"
        );
        assert!(
            hq.contains("env = { \"RESPOOL_CLASS\" = \"enc\\\"ode\" }"),
            "{hq}"
        );
    }

    #[test]
    fn an_oom_event_raises_the_memory_and_unmeasured_dims_are_left_out() {
        let mut samples: Vec<Sample> = (0..5).map(|_| sample(None, 100 * MIB)).collect();
        samples.push(Sample::new(
            2,
            None,
            Duration::ZERO,
            &Resources::NONE,
            Some(300 * MIB),
        ));
        let r = requests(&profiles(samples), &ExportConfig::default());
        // 300 MiB killed it: +100 MiB beats x1.2.
        assert_eq!(r[0].memory_bytes, Some(400 * MIB));
        assert_eq!(r[0].cpu_millis, None);
        let k8s: serde_json::Value = serde_json::from_str(&render(&r, Format::Kubernetes)).unwrap();
        assert!(k8s["enc\"ode"]["requests"].get("cpu").is_none());
        assert!(!render(&r, Format::Slurm).contains("cpus-per-task"));
        // A class with nothing measured is not exported.
        let none = profiles(vec![Sample::new(
            1,
            None,
            Duration::ZERO,
            &Resources::NONE,
            None,
        )]);
        assert!(requests(&none, &ExportConfig::default()).is_empty());
    }

    #[test]
    fn format_names() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        let e = "yaml".parse::<Format>().unwrap_err();
        assert!(e.to_string().contains("k8s, slurm, hq, ray"), "{e}");
    }
}
