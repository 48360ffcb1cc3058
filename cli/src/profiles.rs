//! `respool profiles list|show|export|import|forget` on the profiles file
//! (`export --format k8s|slurm|hq|ray`: see [`respool::export`]).
//! A corrupt or newer file is reported and left untouched (the store's
//! loader refuses it before anything could be written back).

use std::io::{self, Read, Write};
use std::path::Path;

use respool::Dim;
use respool::cost::{PriceRow, PriceTable, Usage, format_usd};
use respool::export::{ClassRequest, ExportConfig, Format, render, requests};
use respool::store::{ClassRecord, FileStore, ProfileStore, Profiles, StoreError};

use crate::args::{ExportFormat, ProfilesAction, ProfilesArgs};
use crate::schedule::{USAGE, default_store, fmt_bytes};

/// Runs `respool profiles`; returns the exit status (0, 1 for a store or
/// I/O error, 255 for a usage error).
pub fn run(args: ProfilesArgs) -> i32 {
    let path = match args.store {
        Some(p) => p,
        None => match default_store() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("respool: {e}");
                return USAGE;
            }
        },
    };
    match act(&path, args.action) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("respool: {message}");
            1
        }
    }
}

fn load(store: &FileStore) -> Result<Profiles, String> {
    Ok(store
        .load()
        .map_err(|e: StoreError| e.to_string())?
        .unwrap_or_else(|| Profiles::new(Vec::new())))
}

fn median(mut values: Vec<u64>) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[(values.len() - 1) / 2])
}

/// One line of `profiles list`.
fn summary(c: &ClassRecord) -> String {
    let memory: Vec<u64> = c
        .samples
        .iter()
        .filter_map(|s| s.usage().get(Dim::Memory))
        .collect();
    let peak = memory.iter().copied().max();
    let med_mem = median(memory);
    let wall = median(c.samples.iter().map(|s| s.wall_ns).collect());
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        c.class,
        c.runs,
        c.samples.len(),
        med_mem.map_or_else(|| "-".to_owned(), fmt_bytes),
        peak.map_or_else(|| "-".to_owned(), fmt_bytes),
        wall.map_or_else(|| "-".to_owned(), |ns| format!("{:.3}s", ns as f64 / 1e9)),
    )
}

fn write_out(text: &str) -> Result<(), String> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to standard output: {e}"))
}

fn act(path: &Path, action: ProfilesAction) -> Result<(), String> {
    let store = FileStore::new(path);
    match action {
        ProfilesAction::List => {
            let profiles = load(&store)?;
            let mut text =
                String::from("CLASS\tRUNS\tSAMPLES\tMEDIAN_MEMORY\tPEAK_MEMORY\tMEDIAN_TIME\n");
            for c in &profiles.classes {
                text.push_str(&summary(c));
                text.push('\n');
            }
            write_out(&text)
        }
        ProfilesAction::Show { class } => {
            let profiles = load(&store)?;
            let record = profiles
                .classes
                .iter()
                .find(|c| c.class == class)
                .ok_or_else(|| format!("no class {class:?} in {}", path.display()))?;
            let json = serde_json::to_string_pretty(record).map_err(|e| e.to_string())?;
            write_out(&format!("{json}\n"))
        }
        ProfilesAction::Export {
            format,
            percentile,
            margin,
        } => {
            let profiles = load(&store)?;
            let format = match format {
                ExportFormat::Json => {
                    let json = profiles.to_json().map_err(|e| e.to_string())?;
                    return write_out(&format!("{json}\n"));
                }
                ExportFormat::K8s => Format::Kubernetes,
                ExportFormat::Slurm => Format::Slurm,
                ExportFormat::Hq => Format::HyperQueue,
                ExportFormat::Ray => Format::Ray,
            };
            let config = ExportConfig {
                percentile,
                margin,
                ..ExportConfig::default()
            };
            write_out(&render(&requests(&profiles, &config), format))
        }
        ProfilesAction::Cost {
            instance,
            pricing,
            percentile,
            margin,
        } => {
            let profiles = load(&store)?;
            let table = match &pricing {
                Some(p) => PriceTable::from_file(p).map_err(|e| e.to_string())?,
                None => PriceTable::builtin(),
            };
            // An unknown instance: the table's message lists some it has.
            table.pricing(&instance).map_err(|e| e.to_string())?;
            let row = table
                .find(&instance)
                .cloned()
                .ok_or_else(|| format!("no instance {instance:?} in the price table"))?;
            let config = ExportConfig {
                percentile,
                margin,
                ..ExportConfig::default()
            };
            write_out(&cost_report(
                &profiles,
                &requests(&profiles, &config),
                &table,
                &row,
            ))
        }
        ProfilesAction::Import { file } => {
            let mut text = String::new();
            let read = if file.as_os_str() == "-" {
                io::stdin().lock().read_to_string(&mut text).map(drop)
            } else {
                std::fs::read_to_string(&file).map(|t| text = t)
            };
            read.map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let incoming = Profiles::from_json(&text, &file.display().to_string())
                .map_err(|e| e.to_string())?;
            let mut profiles = load(&store)?;
            let n = incoming.classes.len();
            for class in incoming.classes {
                profiles.classes.retain(|c| c.class != class.class);
                profiles.classes.push(class);
            }
            store
                .save(&Profiles::new(profiles.classes))
                .map_err(|e| e.to_string())?;
            eprintln!("respool: imported {n} class(es) into {}", path.display());
            Ok(())
        }
        ProfilesAction::Forget { class } => {
            let mut profiles = load(&store)?;
            let before = profiles.classes.len();
            profiles.classes.retain(|c| c.class != class);
            if profiles.classes.len() == before {
                return Err(format!("no class {class:?} in {}", path.display()));
            }
            store
                .save(&Profiles::new(profiles.classes))
                .map_err(|e| e.to_string())
        }
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// What one run of a class costs on average at `row`'s rates: its measured
/// CPU-seconds, memory GiB-seconds and GPU-seconds per sample.
fn used_per_run(c: &ClassRecord, table: &PriceTable, row: &PriceRow) -> Option<f64> {
    let rates = table.rates(row);
    let costs: Vec<f64> = c
        .samples
        .iter()
        .filter(|s| s.oom_bytes.is_none() && s.wall_ns > 0)
        .map(|s| {
            let u = s.usage();
            let wall = s.wall_ns as f64 / 1e9;
            rates.cost(&Usage {
                cpu_seconds: u.get(Dim::Cpu).unwrap_or(0) as f64 / 1000.0 * wall,
                memory_gib_seconds: u.get(Dim::Memory).unwrap_or(0) as f64 / GIB * wall,
                gpu_seconds: u.get(Dim::Gpu).unwrap_or(0) as f64 * wall,
            })
        })
        .collect();
    (!costs.is_empty()).then(|| costs.iter().sum::<f64>() / costs.len() as f64)
}

/// How many runs of `request` fit on one instance of `row` at once (0: none).
fn fit(request: &ClassRequest, row: &PriceRow) -> u64 {
    let by = |have: f64, need: Option<u64>, unit: f64| -> f64 {
        match need {
            Some(n) if n > 0 => (have * unit / n as f64).floor(),
            _ => f64::INFINITY,
        }
    };
    let gpus = request.gpus.unwrap_or(0);
    if gpus > u64::from(row.gpus) {
        return 0;
    }
    let n = by(row.vcpus, request.cpu_millis, 1000.0)
        .min(by(row.memory_gib, request.memory_bytes, GIB))
        .min(if gpus > 0 {
            f64::from(row.gpus) / gpus as f64
        } else {
            f64::INFINITY
        });
    if n.is_finite() { n as u64 } else { 0 }
}

/// The cost of 1,000 runs of `mean_s` each on instances of `row`, when
/// `fit` run on one at once.
fn per_thousand(row: &PriceRow, fit: u64, mean_s: f64) -> f64 {
    row.usd_per_hour / fit as f64 * mean_s / 3600.0 * 1000.0
}

/// `respool profiles cost`: per class, what a run costs (measured, averaged
/// over its samples), what its learned request costs for a run of the mean
/// time (the prediction for its next run), the slack
/// between them, and 1,000 runs on `row` and on the cheapest instance type
/// of `table` that fits the request (roadmap #26's prediction and report).
fn cost_report(
    profiles: &Profiles,
    reqs: &[ClassRequest],
    table: &PriceTable,
    row: &PriceRow,
) -> String {
    let rates = table.rates(row);
    let mut text = format!(
        "# at {} ({} {}, as of {}); request: the learned percentile plus margin\n\
         CLASS\tRUNS\tMEAN_TIME\tUSED_PER_RUN\tREQUESTED_PER_RUN\tSLACK_PER_RUN\t\
         1000_RUNS_ON_{}\tCHEAPEST\t1000_RUNS_ON_CHEAPEST\n",
        row.instance, row.provider, row.region, row.as_of, row.instance
    );
    for c in &profiles.classes {
        let walls: Vec<u64> = c
            .samples
            .iter()
            .filter(|s| s.oom_bytes.is_none())
            .map(|s| s.wall_ns)
            .collect();
        let mean = (!walls.is_empty())
            .then(|| walls.iter().map(|&w| w as f64).sum::<f64>() / walls.len() as f64);
        let request = reqs.iter().find(|r| r.class == c.class);
        let (Some(mean_ns), Some(request)) = (mean, request) else {
            text.push_str(&format!("{}\t{}\t-\t-\t-\t-\t-\t-\t-\n", c.class, c.runs));
            continue;
        };
        let mean_s = mean_ns / 1e9;
        let used = used_per_run(c, table, row);
        let requested = rates.cost(&Usage {
            cpu_seconds: request.cpu_millis.unwrap_or(0) as f64 / 1000.0 * mean_s,
            memory_gib_seconds: request.memory_bytes.unwrap_or(0) as f64 / GIB * mean_s,
            gpu_seconds: request.gpus.unwrap_or(0) as f64 * mean_s,
        });
        let here = match fit(request, row) {
            0 => "does not fit".to_owned(),
            n => format_usd(per_thousand(row, n, mean_s)),
        };
        let cheapest = table
            .rows()
            .iter()
            .filter_map(|r| match fit(request, r) {
                0 => None,
                n => Some((per_thousand(r, n, mean_s), r)),
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let (cheap_name, cheap_cost) = cheapest.map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |(usd, r)| (format!("{} ({})", r.instance, r.provider), format_usd(usd)),
        );
        text.push_str(&format!(
            "{}\t{}\t{:.3}s\t{}\t{}\t{}\t{here}\t{cheap_name}\t{cheap_cost}\n",
            c.class,
            c.runs,
            mean_s,
            used.map_or_else(|| "-".to_owned(), format_usd),
            format_usd(requested),
            used.map_or_else(|| "-".to_owned(), |u| format_usd((requested - u).max(0.0))),
        ));
    }
    text
}
