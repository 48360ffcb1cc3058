//! `--results FILE.jsonl`: one JSON object per job, with what the joblog
//! cannot carry (memory measured, predicted and reserved, and where each
//! figure comes from).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use crate::job::MemorySource;

/// One job's record (one line of the results file).
#[derive(Clone, Debug, Serialize)]
pub struct JobRecord {
    /// Job number, from 1.
    pub seq: u64,
    /// The command line as run (invalid UTF-8 replaced by U+FFFD).
    pub command: String,
    /// The class it was learned under.
    pub class: String,
    /// Exit status; `null` when a signal killed it or it could not start.
    pub exit: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// Start, seconds since the epoch.
    pub start: f64,
    /// Run time, seconds.
    pub runtime_s: f64,
    /// Peak memory measured, bytes (`null`: not measured).
    pub peak_memory_bytes: Option<u64>,
    /// Where `peak_memory_bytes` comes from.
    pub memory_source: Option<MemorySource>,
    /// The memory respool expected it to use, from its class's profile
    /// (`null`: the class was not learned yet, or the last attempt was an
    /// OOM retry, whose raised reservation is declared, not predicted).
    pub predicted_memory_bytes: Option<u64>,
    /// The memory respool reserved for it (its prediction's reserve, or the
    /// fallback for a class not learned yet).
    pub reserved_memory_bytes: Option<u64>,
    /// The memory limit of the job's cgroup in its last attempt (`null`:
    /// none: `--no-limit`, or measured by rusage).
    pub memory_limit_bytes: Option<u64>,
    /// The kernel's OOM killer killed a process of the job's last attempt
    /// (seen in its cgroup).
    pub oom_killed: bool,
    /// Attempts made (1, plus one per OOM retry).
    pub attempts: u32,
    /// Attempts the OOM killer killed.
    pub oom_kills: u32,
    /// Killed at the whole budget: the job cannot fit even alone, and was
    /// not retried.
    pub oom_gave_up: bool,
    /// CPU time (user + system) of its processes, seconds.
    pub cpu_s: f64,
    /// It was killed for running past `--timeout`.
    pub timed_out: bool,
    /// Why it could not be run, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An open results file.
#[derive(Debug)]
pub struct ResultsFile {
    out: BufWriter<File>,
}

impl ResultsFile {
    /// Creates (or truncates) the file.
    ///
    /// # Errors
    ///
    /// The I/O error, for the caller to report before any job runs.
    pub fn create(path: &Path) -> io::Result<ResultsFile> {
        Ok(ResultsFile {
            out: BufWriter::new(File::create(path)?),
        })
    }

    /// Opens the file to add to what it holds (`--resume`), creating it if
    /// it is missing.
    ///
    /// # Errors
    ///
    /// The I/O error, for the caller to report before any job runs.
    pub fn append(path: &Path) -> io::Result<ResultsFile> {
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        Ok(ResultsFile {
            out: BufWriter::new(file),
        })
    }

    /// Appends one record as a line and flushes it.
    ///
    /// # Errors
    ///
    /// The I/O error.
    pub fn write(&mut self, record: &JobRecord) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}
