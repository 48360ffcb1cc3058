//! `respool profiles list|show|export|import|forget` on the profiles file
//! (`export --format k8s|slurm|hq|ray`: see [`respool::export`]).
//! A corrupt or newer file is reported and left untouched (the store's
//! loader refuses it before anything could be written back).

use std::io::{self, Read, Write};
use std::path::Path;

use respool::Dim;
use respool::export::{ExportConfig, Format, render, requests};
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
