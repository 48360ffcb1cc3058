//! `--joblog FILE`, byte-compatible with GNU parallel's (checked against GNU
//! parallel 20221122): a header, then one tab-separated line per finished
//! job, written as it finishes.
//!
//! ```text
//! Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand
//! 1\t:\t1796547468.038\t     0.000\t0\t2\t0\t0\techo a
//! ```
//!
//! Host is `:` (this machine), Starttime `%.3f` seconds since the epoch,
//! JobRuntime `%10.3f` seconds, Send 0, Receive the bytes the job wrote to
//! its standard output, Exitval its exit status (0 when a signal killed it,
//! -1 when it was killed for its timeout, as GNU parallel writes), Signal the
//! signal that killed it, and the command with each newline written as a NUL
//! byte. Memory never goes in here (it would break `--retry-failed`): it goes
//! to `--results`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// GNU parallel's joblog header line (with its newline).
pub const HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

/// One finished job, as the joblog records it.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    /// Job number, from 1.
    pub seq: u64,
    /// When it started.
    pub start: SystemTime,
    /// How long it ran.
    pub runtime: Duration,
    /// Bytes written to standard output.
    pub received: u64,
    /// Exit status (-1 for a timeout, 0 when killed by a signal).
    pub exitval: i64,
    /// Signal that killed it (0: none).
    pub signal: i32,
    /// The command line, as run.
    pub command: &'a [u8],
}

/// Seconds since the epoch (negative before it), as a float.
#[must_use]
pub fn epoch_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The joblog line of `entry` (with its newline).
#[must_use]
pub fn format_line(entry: &Entry<'_>) -> Vec<u8> {
    let mut line = format!(
        "{}\t:\t{:.3}\t{:10.3}\t0\t{}\t{}\t{}\t",
        entry.seq,
        epoch_seconds(entry.start),
        entry.runtime.as_secs_f64(),
        entry.received,
        entry.exitval,
        entry.signal
    )
    .into_bytes();
    line.extend(
        entry
            .command
            .iter()
            .map(|&b| if b == b'\n' { 0 } else { b }),
    );
    line.push(b'\n');
    line
}

/// An open joblog.
#[derive(Debug)]
pub struct JobLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JobLog {
    /// Creates (or truncates) the joblog at `path` and writes its header.
    ///
    /// # Errors
    ///
    /// The I/O error, for the caller to report before any job runs.
    pub fn create(path: &Path) -> io::Result<JobLog> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(HEADER.as_bytes())?;
        out.flush()?;
        Ok(JobLog {
            path: path.to_path_buf(),
            out,
        })
    }

    /// Where it is written.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a job's line and flushes it (a joblog is read while jobs run,
    /// and must be complete if respool is stopped).
    ///
    /// # Errors
    ///
    /// The I/O error.
    pub fn write(&mut self, entry: &Entry<'_>) -> io::Result<()> {
        self.out.write_all(&format_line(entry))?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_gnu_parallel_formats() {
        let line = format_line(&Entry {
            seq: 3,
            start: UNIX_EPOCH + Duration::from_millis(1_796_547_468_041),
            runtime: Duration::from_micros(1_310_400),
            received: 4,
            exitval: -1,
            signal: 15,
            command: b"echo 'c\nd'",
        });
        assert_eq!(
            line,
            b"3\t:\t1796547468.041\t     1.310\t0\t4\t-1\t15\techo 'c\0d'\n".to_vec()
        );
    }
}
