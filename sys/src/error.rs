//! The error type of this crate: what went wrong, and where.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a system reading or a detection step failed.
///
/// Every variant names what was being read (a path, and a line where it
/// applies), so that a message in a log is enough to find the cause. Errors
/// are `Clone` and comparable so that a monitor can keep the last error of
/// each resource and tests can match on them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SysError {
    /// A file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The kind of I/O error.
        kind: io::ErrorKind,
        /// The OS error code, when there was one.
        os_code: Option<i32>,
    },
    /// A file was read but its content was not in the expected format.
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line number, or 0 when the problem concerns the whole
        /// file (for example a line that was expected but never came).
        line: usize,
        /// What was expected.
        what: &'static str,
    },
    /// The reading does not exist on this platform or on this system.
    Unsupported {
        /// What was asked for (for example `"pressure stall information"`).
        what: &'static str,
        /// Why it is not available (for example `"not available on macOS"`).
        why: &'static str,
    },
    /// A configuration value was refused.
    InvalidConfig {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it and what to change.
        why: &'static str,
    },
    /// A system call failed.
    Os {
        /// The operation (for example `"sched_setaffinity"`).
        op: &'static str,
        /// The OS error code.
        code: i32,
    },
    /// The monitor's sampling thread could not be started.
    Spawn {
        /// The kind of I/O error the thread builder returned.
        kind: io::ErrorKind,
    },
}

impl SysError {
    /// An [`SysError::Io`] for `path` from an I/O error.
    pub(crate) fn io(path: &Path, err: &io::Error) -> SysError {
        SysError::Io {
            path: path.to_path_buf(),
            kind: err.kind(),
            os_code: err.raw_os_error(),
        }
    }

    /// A [`SysError::Parse`] for `path`.
    pub(crate) fn parse(path: &Path, line: usize, what: &'static str) -> SysError {
        SysError::Parse {
            path: path.to_path_buf(),
            line,
            what,
        }
    }

    /// Whether the error says that a file or directory does not exist.
    ///
    /// Missing files are normal for optional readings (`memory.peak` before
    /// Linux 5.19, PSI on kernels built without it, a cgroup controller that is
    /// not enabled): callers treat them as "not available", not as failures.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, SysError::Io { kind, .. } if *kind == io::ErrorKind::NotFound)
    }

    /// Whether the error is [`SysError::Unsupported`].
    #[must_use]
    pub fn is_unsupported(&self) -> bool {
        matches!(self, SysError::Unsupported { .. })
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysError::Io {
                path,
                kind,
                os_code,
            } => match os_code {
                Some(code) => write!(
                    f,
                    "cannot read {}: {}",
                    path.display(),
                    io::Error::from_raw_os_error(*code)
                ),
                None => write!(f, "cannot read {}: {kind}", path.display()),
            },
            SysError::Parse { path, line, what } => {
                if *line == 0 {
                    write!(f, "unexpected content in {}: {what}", path.display())
                } else {
                    write!(f, "{}:{line}: unexpected content: {what}", path.display())
                }
            }
            SysError::Unsupported { what, why } => write!(f, "{what} is unsupported: {why}"),
            SysError::InvalidConfig { setting, why } => {
                write!(f, "invalid setting `{setting}`: {why}")
            }
            SysError::Os { op, code } => {
                write!(f, "{op} failed: {}", io::Error::from_raw_os_error(*code))
            }
            SysError::Spawn { kind } => {
                write!(f, "cannot start the monitor's sampling thread: {kind}")
            }
        }
    }
}

impl std::error::Error for SysError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_path_and_line() {
        let e = SysError::parse(Path::new("/proc/stat"), 3, "a number of jiffies");
        assert_eq!(
            e.to_string(),
            "/proc/stat:3: unexpected content: a number of jiffies"
        );
        let e = SysError::parse(Path::new("/proc/stat"), 0, "a `cpu` line");
        assert_eq!(
            e.to_string(),
            "unexpected content in /proc/stat: a `cpu` line"
        );
        let io = io::Error::from_raw_os_error(2);
        let e = SysError::io(Path::new("/x/memory.max"), &io);
        assert!(e.is_not_found());
        assert!(e.to_string().starts_with("cannot read /x/memory.max: "));
        let e = SysError::Unsupported {
            what: "pressure stall information",
            why: "not available on macOS",
        };
        assert!(e.is_unsupported());
        assert_eq!(
            e.to_string(),
            "pressure stall information is unsupported: not available on macOS"
        );
    }
}
