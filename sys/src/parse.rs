//! Allocation-free reading and parsing of procfs, sysfs and cgroup files.
//!
//! A [`ProcFile`] keeps its file open and re-reads it from offset 0 into a
//! caller-provided buffer (the sampler owns one buffer for all files), handing
//! complete lines to a callback. Lines are parsed as byte slices with the
//! helpers below; nothing allocates on the success path, which the
//! `alloc` integration test checks with a counting global allocator.
//!
//! The reader works chunk by chunk, so a file may be larger than the buffer.
//! A single line longer than the buffer (the `intr` line of `/proc/stat` on a
//! large machine, for example) is skipped and reported to the callback as
//! [`Line::Truncated`]; none of the lines respool reads is anywhere near that
//! long.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::SysError;

/// Size of the read buffer a sampler allocates once (8 KiB: `/proc/stat` of a
/// 64-CPU machine without its `intr` line, or about 60 lines of diskstats).
pub(crate) const READ_BUF: usize = 8 * 1024;

/// One line handed to a [`ProcFile::read_lines`] callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A complete line, without its newline.
    Full(&'a [u8]),
    /// A line longer than the buffer; its content was skipped.
    Truncated,
}

/// A file that is re-read from the start on every sample.
///
/// The file stays open between reads (procfs and cgroup files produce fresh
/// content on every read from offset 0); after any error it is closed and
/// opened again on the next read, so a file that appears later (or is
/// replaced) is picked up.
#[derive(Debug)]
pub(crate) struct ProcFile {
    path: PathBuf,
    file: Option<File>,
}

impl ProcFile {
    /// A reader for `path`; nothing is opened yet.
    pub(crate) fn new(path: PathBuf) -> ProcFile {
        ProcFile { path, file: None }
    }

    /// The path this reader reads.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file from the start and calls `f` with the 1-based line
    /// number and each line, until the end of the file or until `f` breaks.
    ///
    /// # Errors
    ///
    /// [`SysError::Io`] when the file cannot be opened or read, and whatever
    /// error `f` breaks with.
    pub(crate) fn read_lines(
        &mut self,
        buf: &mut [u8],
        f: impl FnMut(usize, Line<'_>) -> ControlFlow<Result<(), SysError>>,
    ) -> Result<(), SysError> {
        let result = self.read_lines_inner(buf, f);
        if matches!(result, Err(SysError::Io { .. })) {
            self.file = None;
        }
        result
    }

    fn read_lines_inner(
        &mut self,
        buf: &mut [u8],
        mut f: impl FnMut(usize, Line<'_>) -> ControlFlow<Result<(), SysError>>,
    ) -> Result<(), SysError> {
        let path = &self.path;
        let file = match &mut self.file {
            Some(file) => file,
            slot => slot.insert(File::open(path).map_err(|e| SysError::io(path, &e))?),
        };
        file.seek(SeekFrom::Start(0))
            .map_err(|e| SysError::io(path, &e))?;
        let mut filled = 0usize; // bytes of `buf` holding unread data
        let mut line_no = 0usize;
        let mut skipping = false; // inside a line longer than the buffer
        loop {
            let space = buf.get_mut(filled..).unwrap_or_default();
            if space.is_empty() {
                // The buffer holds one partial line that fills it: skip it.
                filled = 0;
                if !skipping {
                    skipping = true;
                    line_no = line_no.saturating_add(1);
                    if let ControlFlow::Break(r) = f(line_no, Line::Truncated) {
                        return r;
                    }
                }
                continue;
            }
            let n = match file.read(space) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SysError::io(path, &e)),
            };
            if n == 0 {
                // End of file: a last line without a newline still counts.
                if filled > 0 && !skipping {
                    line_no = line_no.saturating_add(1);
                    let last = buf.get(..filled).unwrap_or_default();
                    if let ControlFlow::Break(r) = f(line_no, Line::Full(last)) {
                        return r;
                    }
                }
                return Ok(());
            }
            let end = filled.saturating_add(n).min(buf.len());
            let mut start = 0usize;
            let mut scan = filled;
            while let Some(rel) = buf
                .get(scan..end)
                .and_then(|s| s.iter().position(|&b| b == b'\n'))
            {
                let nl = scan.saturating_add(rel);
                if skipping {
                    skipping = false;
                } else {
                    line_no = line_no.saturating_add(1);
                    let line = buf.get(start..nl).unwrap_or_default();
                    if let ControlFlow::Break(r) = f(line_no, Line::Full(line)) {
                        return r;
                    }
                }
                start = nl.saturating_add(1);
                scan = start;
            }
            if skipping {
                filled = 0;
            } else {
                buf.copy_within(start..end, 0);
                filled = end.saturating_sub(start);
            }
        }
    }

    /// Reads the first line of the file (a one-value file such as
    /// `memory.max`), hands it to `f` trimmed, and returns what `f` returns.
    ///
    /// # Errors
    ///
    /// [`SysError::Io`] when the file cannot be read, [`SysError::Parse`]
    /// (line 0) when it is empty or its first line is too long, and any error
    /// of `f`.
    pub(crate) fn read_first_line<T>(
        &mut self,
        buf: &mut [u8],
        f: impl FnOnce(&[u8]) -> Result<T, &'static str>,
    ) -> Result<T, SysError> {
        let mut f = Some(f);
        let mut out: Option<Result<T, &'static str>> = None;
        self.read_lines(buf, |_, line| {
            if let (Line::Full(l), Some(f)) = (line, f.take()) {
                out = Some(f(trim(l)));
            }
            ControlFlow::Break(Ok(()))
        })?;
        match out {
            Some(Ok(v)) => Ok(v),
            Some(Err(what)) => Err(SysError::parse(&self.path, 1, what)),
            None => Err(SysError::parse(&self.path, 0, "a value on the first line")),
        }
    }
}

/// Reads a whole (small) file into a `String`; for detection code that runs
/// once, not for sampling.
///
/// # Errors
///
/// [`SysError::Io`] when the file cannot be read.
pub(crate) fn read_to_string(path: &Path) -> Result<String, SysError> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| SysError::io(path, &e))
}

/// `s` without leading and trailing ASCII whitespace.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// The whitespace-separated fields of `line`.
pub(crate) fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty())
}

/// A decimal `u64` made of ASCII digits only; `None` on anything else or on
/// overflow.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// A decimal `i64` with an optional leading `-`.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', rest)) => {
            let v = parse_u64(rest)?;
            if v == i64::MIN.unsigned_abs() {
                Some(i64::MIN)
            } else {
                i64::try_from(v).ok().map(|v| -v)
            }
        }
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

/// A non-negative decimal with an optional fraction, scaled by
/// `10^frac_digits` and truncated: `parse_fixed(b"13.41", 2) == Some(1341)`,
/// `parse_fixed(b"2.5", 3) == Some(2500)`, `parse_fixed(b"7", 2) == Some(700)`.
pub(crate) fn parse_fixed(s: &[u8], frac_digits: u32) -> Option<u64> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (s.get(..dot)?, s.get(dot.checked_add(1)?..)?),
        None => (s, &[][..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = if int.is_empty() { 0 } else { parse_u64(int)? };
    v = v.checked_mul(10u64.checked_pow(frac_digits)?)?;
    let mut scale = 10u64.checked_pow(frac_digits)?;
    for &b in frac {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        scale /= 10;
        v = v.checked_add(u64::from(d).checked_mul(scale)?)?;
    }
    Some(v)
}

/// The value of `key=value` in a field, when the field starts with `key=`.
pub(crate) fn key_value<'a>(field: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    field.strip_prefix(key)?.strip_prefix(b"=")
}

/// Parses a CPU list in the kernel's list format (`0-3,8,10-11`), as found in
/// `Cpus_allowed_list` and `cpuset.cpus.effective`. Returns `None` on any
/// malformed part, and refuses ranges that would list more than 2^20 CPUs.
pub(crate) fn parse_cpu_list(s: &[u8]) -> Option<Vec<usize>> {
    let s = trim(s);
    let mut out = Vec::new();
    if s.is_empty() {
        return Some(out);
    }
    for part in s.split(|&b| b == b',') {
        let part = trim(part);
        let (lo, hi) = match part.iter().position(|&b| b == b'-') {
            Some(dash) => (
                parse_u64(part.get(..dash)?)?,
                parse_u64(part.get(dash.checked_add(1)?..)?)?,
            ),
            None => {
                let v = parse_u64(part)?;
                (v, v)
            }
        };
        if hi < lo || hi >= 1 << 20 {
            return None;
        }
        for cpu in lo..=hi {
            out.push(usize::try_from(cpu).ok()?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// Decodes the octal escapes the kernel writes in `/proc/self/mountinfo`
/// (`\040` space, `\011` tab, `\012` newline, `\134` backslash). Anything that
/// is not a valid three-digit octal escape is kept as it is.
pub(crate) fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            if let Some(digits) = b.get(i.saturating_add(1)..i.saturating_add(4)) {
                if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    let v = digits
                        .iter()
                        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                    if let Ok(byte) = u8::try_from(v) {
                        out.push(byte);
                        i = i.saturating_add(4);
                        continue;
                    }
                }
            }
        }
        out.push(c);
        i = i.saturating_add(1);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn numbers() {
        let table: [(&[u8], Option<u64>); 7] = [
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"-1", None),
            (b"12a", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_u64(s), want, "{:?}", String::from_utf8_lossy(s));
        }
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-"), None);
    }

    #[test]
    fn fixed_point() {
        let table: [(&[u8], u32, Option<u64>); 8] = [
            (b"13.41", 2, Some(1341)),
            (b"0.00", 2, Some(0)),
            (b"100.00", 2, Some(10000)),
            (b"2.5", 3, Some(2500)),
            (b"7", 2, Some(700)),
            (b".5", 1, Some(5)),
            (b"1.23456", 2, Some(123)),
            (b"1.x", 2, None),
        ];
        for (s, digits, want) in table {
            assert_eq!(
                parse_fixed(s, digits),
                want,
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
        assert_eq!(parse_fixed(b".", 2), None);
        assert_eq!(parse_fixed(b"99999999999999999999", 3), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list(b"0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list(b"1"), Some(vec![1]));
        assert_eq!(parse_cpu_list(b""), Some(vec![]));
        assert_eq!(parse_cpu_list(b"3-1"), None);
        assert_eq!(parse_cpu_list(b"0-"), None);
        assert_eq!(parse_cpu_list(b"0-99999999"), None);
    }

    #[test]
    fn mount_escapes() {
        assert_eq!(
            unescape_mount_field(r"/sys/fs/cgroup\040v2"),
            "/sys/fs/cgroup v2"
        );
        assert_eq!(unescape_mount_field(r"/a\134b\011c"), "/a\\b\tc");
        assert_eq!(unescape_mount_field(r"/plain"), "/plain");
        assert_eq!(unescape_mount_field(r"/bad\09"), r"/bad\09");
        assert_eq!(unescape_mount_field(r"/end\"), r"/end\");
    }

    fn temp_file(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("respool-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut f = File::create(&path).unwrap();
        f.write_all(content).unwrap();
        path
    }

    fn collect(file: &mut ProcFile, buf_len: usize) -> Vec<(usize, Option<String>)> {
        let mut buf = vec![0u8; buf_len];
        let mut out = Vec::new();
        file.read_lines(&mut buf, |n, l| {
            out.push((
                n,
                match l {
                    Line::Full(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    Line::Truncated => None,
                },
            ));
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    #[test]
    fn line_reader_handles_small_buffers_and_long_lines() {
        let path = temp_file(
            "lines",
            b"cpu 1 2 3\nintr 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nctxt 5\nlast",
        );
        let mut file = ProcFile::new(path.clone());
        let want_all = vec![
            (1, Some("cpu 1 2 3".to_string())),
            (
                2,
                Some("intr 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0".to_string()),
            ),
            (3, Some("ctxt 5".to_string())),
            (4, Some("last".to_string())),
        ];
        assert_eq!(collect(&mut file, 4096), want_all);
        // Read again through the same open file: same content.
        assert_eq!(collect(&mut file, 4096), want_all);
        // A 12-byte buffer: the `intr` line does not fit and is skipped.
        assert_eq!(
            collect(&mut file, 12),
            vec![
                (1, Some("cpu 1 2 3".to_string())),
                (2, None),
                (3, Some("ctxt 5".to_string())),
                (4, Some("last".to_string())),
            ]
        );
        // Rewritten in place: the open file sees the new content.
        std::fs::write(&path, b"one\n\ntwo\n").unwrap();
        assert_eq!(
            collect(&mut file, 5),
            vec![
                (1, Some("one".to_string())),
                (2, Some(String::new())),
                (3, Some("two".to_string()))
            ]
        );
        let mut buf = [0u8; 64];
        let v = file
            .read_first_line(&mut buf, |l| parse_u64(l).ok_or("a number"))
            .unwrap_err();
        assert_eq!(v, SysError::parse(&path, 1, "a number"));
        std::fs::write(&path, b"").unwrap();
        let v = file
            .read_first_line(&mut buf, |l| parse_u64(l).ok_or("a number"))
            .unwrap_err();
        assert_eq!(v, SysError::parse(&path, 0, "a value on the first line"));
        std::fs::write(&path, b" 42 \n").unwrap();
        assert_eq!(
            file.read_first_line(&mut buf, |l| parse_u64(l).ok_or("a number")),
            Ok(42)
        );
        std::fs::remove_file(&path).unwrap();
        // The open file still reads (unlinked), a fresh reader does not.
        let mut fresh = ProcFile::new(path.clone());
        let err = fresh.read_lines(&mut buf, |_, _| ControlFlow::Continue(()));
        assert!(err.unwrap_err().is_not_found());
    }
}
