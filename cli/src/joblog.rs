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
//!
//! `--resume` and `--resume-failed` read an existing joblog ([`read`]):
//! which jobs (by Seq) it records, and which of them succeeded (Exitval 0
//! and Signal 0, GNU parallel's test); the run then appends to it
//! ([`JobLog::append`]) without a second header, as GNU parallel does.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
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

/// What an existing joblog records, for `--resume` and `--resume-failed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The Seq of every job line.
    pub seen: HashSet<u64>,
    /// The Seq of every line with Exitval 0 and Signal 0 (a job recorded
    /// failed and later succeeded is here).
    pub succeeded: HashSet<u64>,
    /// The file has its header (false: it is empty).
    pub has_header: bool,
    /// Its last line has no newline (one is written before appending).
    pub missing_newline: bool,
}

/// Why an existing joblog cannot be resumed from.
#[derive(Debug)]
pub enum ReadError {
    /// It could not be read.
    Io(io::Error),
    /// A line is not a joblog line (`line` counts from 1; the header is 1).
    Malformed {
        /// The line's number.
        line: usize,
        /// The line (invalid UTF-8 replaced, cut at 100 characters).
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Malformed { line, text, why } => write!(
                f,
                "line {line} {why} (is it GNU parallel's joblog?): {text:?}"
            ),
        }
    }
}

impl std::error::Error for ReadError {}

/// Checks one job line (without its newline): Seq, Host, Starttime,
/// JobRuntime, Send, Receive, Exitval, Signal, Command, tab-separated (the
/// command may hold tabs); returns (Seq, succeeded).
fn parse_line(line: &[u8]) -> Result<(u64, bool), &'static str> {
    let fields: Vec<&[u8]> = line.splitn(9, |&b| b == b'\t').collect();
    if fields.len() < 9 {
        return Err("does not have the 9 tab-separated columns");
    }
    fn text(field: &[u8]) -> &str {
        std::str::from_utf8(field).map(str::trim).unwrap_or("")
    }
    let seq: u64 = match text(fields[0]).parse() {
        Ok(n) if fields[0].iter().all(u8::is_ascii_digit) => n,
        _ => return Err("has no job number (Seq) in its first column"),
    };
    if fields[1].is_empty() {
        return Err("has no Host");
    }
    for &f in &fields[2..4] {
        if !text(f).parse::<f64>().is_ok_and(f64::is_finite) {
            return Err("has no number of seconds in Starttime or JobRuntime");
        }
    }
    let mut numbers = [0i64; 4];
    for (n, &f) in numbers.iter_mut().zip(&fields[4..8]) {
        *n = text(f)
            .parse()
            .map_err(|_| "has no whole number in Send, Receive, Exitval or Signal")?;
    }
    Ok((seq, numbers[2] == 0 && numbers[3] == 0))
}

/// Reads the joblog at `path` for `--resume` / `--resume-failed`. `Ok(None)`:
/// there is none yet (as GNU parallel, every job then runs).
///
/// # Errors
///
/// [`ReadError::Io`] when it exists and cannot be read;
/// [`ReadError::Malformed`] when its first line is not GNU parallel's
/// header or a later line is not a job line.
pub fn read(path: &Path) -> Result<Option<Recorded>, ReadError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let mut recorded = Recorded {
        missing_newline: !bytes.is_empty() && bytes.last() != Some(&b'\n'),
        ..Recorded::default()
    };
    if bytes.is_empty() {
        return Ok(Some(recorded));
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let malformed = |line: usize, text: &[u8], why| {
        let text: String = String::from_utf8_lossy(text).chars().take(100).collect();
        ReadError::Malformed { line, text, why }
    };
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if i == 0 {
            if line != HEADER.trim_end_matches('\n').as_bytes() {
                return Err(malformed(1, line, "is not GNU parallel's joblog header"));
            }
            recorded.has_header = true;
            continue;
        }
        let (seq, ok) = parse_line(line).map_err(|why| malformed(i + 1, line, why))?;
        recorded.seen.insert(seq);
        if ok {
            recorded.succeeded.insert(seq);
        }
    }
    Ok(Some(recorded))
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

    /// Opens the joblog at `path` to append to it (`--resume`), as [`read`]
    /// found it: never truncated; the header written only when it had none
    /// (a new or empty file), a newline first when its last line lacked one.
    ///
    /// # Errors
    ///
    /// The I/O error, for the caller to report before any job runs.
    pub fn append(path: &Path, recorded: Option<&Recorded>) -> io::Result<JobLog> {
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        let mut out = BufWriter::new(file);
        match recorded {
            Some(r) if r.has_header => {
                if r.missing_newline {
                    out.write_all(b"\n")?;
                }
            }
            _ => out.write_all(HEADER.as_bytes())?,
        }
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
    fn reads_what_resume_needs() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("log");
        assert_eq!(read(&path).expect("missing is fine"), None);
        std::fs::write(&path, "").expect("written");
        let empty = read(&path).expect("empty is fine").expect("exists");
        assert!(!empty.has_header && empty.seen.is_empty());
        let text = format!(
            "{HEADER}1\t:\t1.5\t     0.010\t0\t2\t0\t0\techo a\tb\n\
             2\t:\t1.5\t     0.010\t0\t0\t1\t0\texit 1\n\
             3\tuser@host\t1.5\t0\t0\t0\t0\t9\tkill\n\
             2\t:\t1.5\t0\t0\t0\t0\t0\texit 1\0retried\n\
             7\t:\t1.5\t0\t0\t0\t-1\t0\tsleep 9"
        );
        std::fs::write(&path, text).expect("written");
        let r = read(&path).expect("valid").expect("exists");
        assert!(r.has_header && r.missing_newline);
        assert_eq!(r.seen, HashSet::from([1, 2, 3, 7]));
        assert_eq!(r.succeeded, HashSet::from([1, 2]));
    }

    #[test]
    fn rejects_what_is_not_a_joblog() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("log");
        for (text, line) in [
            ("Seq\tHost\n".to_owned(), 1),
            ("1\t:\t1.5\t0\t0\t0\t0\t0\tx\n".to_owned(), 1),
            (format!("{HEADER}1\t:\t1.5\t0\t0\t0\t0\t0\n"), 2),
            (format!("{HEADER}x\t:\t1.5\t0\t0\t0\t0\t0\tx\n"), 2),
            (format!("{HEADER}1\t:\t1.5\t0\t0\t0\tz\t0\tx\n"), 2),
            (format!("{HEADER}1\t:\tnan\t0\t0\t0\t0\t0\tx\n"), 2),
            (format!("{HEADER}1\t:\t1.5\t0\t0\t0\t0\t0\tx\n\n"), 3),
            (format!("{HEADER}1\t:\t1.5\t0\t0\t0\t0\t0\tx\n3\t:\t17"), 3),
        ] {
            std::fs::write(&path, &text).expect("written");
            match read(&path) {
                Err(ReadError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(read(dir.path()), Err(ReadError::Io(_))));
    }

    #[test]
    fn appends_without_a_second_header() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("log");
        let entry = Entry {
            seq: 2,
            start: UNIX_EPOCH,
            runtime: Duration::ZERO,
            received: 0,
            exitval: 0,
            signal: 0,
            command: b"true",
        };
        // None yet: created with its header.
        JobLog::append(&path, None)
            .and_then(|mut l| l.write(&entry))
            .expect("written");
        let first = std::fs::read_to_string(&path).expect("read");
        assert!(first.starts_with(HEADER) && first.matches("Seq").count() == 1);
        // A last line without newline gets one.
        std::fs::write(&path, first.trim_end_matches('\n')).expect("written");
        let r = read(&path).expect("valid");
        JobLog::append(&path, r.as_ref())
            .and_then(|mut l| l.write(&entry))
            .expect("written");
        let second = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            second,
            format!("{first}{}", String::from_utf8_lossy(&format_line(&entry)))
        );
    }

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
