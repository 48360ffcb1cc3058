//! Human-readable amounts: `"500m"` CPU, `"512MiB"`, `"1.5G"`, `"100Mbit/s"`.
//!
//! Every parser works in integer arithmetic (no floating point): the number
//! is split into its integer and fractional digits and scaled exactly with
//! 128-bit intermediates. A result that is not a whole number of the base
//! unit is rounded **up** for memory and bandwidth (a reservation that is one
//! byte too large is harmless, one byte too small is not) and refused for
//! CPU, where the base unit (a millicore) is already the finest meaningful one.
//!
//! | dimension | accepted | base unit |
//! |-----------|----------|-----------|
//! | CPU | `"2"`, `"1.5"`, `"250m"`, `"0.1"` (Kubernetes style) | millicores |
//! | memory, GPU memory | `"4096"`, `"64KiB"`, `"512Mi"`, `"1.5G"`, `"2GB"`, `"1TiB"` | bytes |
//! | network | `"12.5MB/s"`, `"100Mbit/s"`, `"1Gbps"`, `"800KiB/s"` | bytes per second |
//! | IOPS and counts | `"2000"`, `"10k"`, `"1.5M"` | plain count |
//!
//! Decimal prefixes (`k`/`K`, `M`, `G`, `T`, `P`) are powers of 1000; binary
//! prefixes (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`) powers of 1024. A trailing `B` means
//! bytes; `bit`, `b` or `bps` means bits (divided by 8).

use std::fmt;

use respool_core::{Dim, MAX_AMOUNT};

/// Why a human-readable amount could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// What was being parsed ("CPU", "memory", ...).
    pub what: &'static str,
    /// The text that was given (all of it; the message quotes at most
    /// [`MAX_ECHO`](crate::limits::MAX_ECHO) bytes of it).
    pub input: String,
    /// What was wrong with it.
    pub kind: ParseErrorKind,
}

/// The ways a human-readable amount can be wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Nothing but whitespace.
    Empty,
    /// The number part is not a non-negative decimal number.
    InvalidNumber,
    /// The unit after the number is not one of the accepted ones.
    UnknownUnit(String),
    /// The value is finer than the base unit allows (CPU below a millicore).
    TooPrecise,
    /// The value is larger than the largest amount (2^60 of the base unit).
    TooLarge,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} amount {}: ",
            self.what,
            respool_sys::Excerpt::quoted(&self.input)
        )?;
        match &self.kind {
            ParseErrorKind::Empty => f.write_str("it is empty"),
            ParseErrorKind::InvalidNumber => {
                f.write_str("expected a non-negative number such as 2, 0.5 or 1.25, then a unit")
            }
            ParseErrorKind::UnknownUnit(u) => write!(
                f,
                "unknown unit {u:?} (expected {})",
                match self.what {
                    "CPU" => "nothing (cores) or m (millicores)",
                    "network" =>
                        "B/s, KB/s, KiB/s, MB/s, MiB/s, GB/s, GiB/s, or bits: Kbit/s, Mbit/s, Gbit/s, Mbps, Gbps",
                    "count" => "nothing, k, M, G, Ki, Mi, Gi",
                    _ => "B, KB, KiB, MB, MiB, GB, GiB, TB, TiB (or K, Ki, M, Mi, G, Gi, T, Ti)",
                }
            ),
            ParseErrorKind::TooPrecise => {
                f.write_str("CPU is counted in millicores: use at most 3 decimals (0.001 = 1m)")
            }
            ParseErrorKind::TooLarge => {
                write!(
                    f,
                    "it is larger than the maximum of {MAX_AMOUNT} base units"
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// A number split into its integer and fractional digits: `int + frac / 10^digits`.
struct Decimal {
    int: u128,
    frac: u128,
    digits: u32,
}

/// Splits `s` into the leading decimal number and the rest (the unit).
fn split_number(s: &str) -> Option<(Decimal, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let (int_s, frac_s) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int_s.is_empty() && frac_s.is_empty()) || frac_s.contains('.') {
        return None;
    }
    // 30 digits keep every product below u128::MAX; longer inputs are refused.
    if int_s.len() > 30 || frac_s.len() > 30 {
        return None;
    }
    let int = if int_s.is_empty() {
        0
    } else {
        int_s.parse().ok()?
    };
    let frac = if frac_s.is_empty() {
        0
    } else {
        frac_s.parse().ok()?
    };
    let digits = u32::try_from(frac_s.len()).ok()?;
    Some((Decimal { int, frac, digits }, unit.trim()))
}

impl Decimal {
    /// `self * numerator / denominator`, rounded up; `None` on overflow.
    fn scale_ceil(&self, numerator: u128, denominator: u128) -> Option<(u128, bool)> {
        let ten = 10u128.checked_pow(self.digits)?;
        // (int * 10^d + frac) * numerator / (10^d * denominator)
        let whole = self.int.checked_mul(ten)?.checked_add(self.frac)?;
        let top = whole.checked_mul(numerator)?;
        let bottom = ten.checked_mul(denominator)?;
        let q = top / bottom;
        let exact = top % bottom == 0;
        Some((if exact { q } else { q + 1 }, exact))
    }
}

fn finish(what: &'static str, input: &str, value: Option<u128>) -> Result<u64, ParseError> {
    match value {
        Some(v) if v <= u128::from(MAX_AMOUNT) => Ok(v as u64),
        _ => Err(err(what, input, ParseErrorKind::TooLarge)),
    }
}

fn err(what: &'static str, input: &str, kind: ParseErrorKind) -> ParseError {
    ParseError {
        what,
        input: input.to_owned(),
        kind,
    }
}

fn number<'a>(what: &'static str, input: &'a str) -> Result<(Decimal, &'a str), ParseError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err(what, input, ParseErrorKind::Empty));
    }
    split_number(s).ok_or_else(|| err(what, input, ParseErrorKind::InvalidNumber))
}

/// The multiplier of a size prefix (`""`, `k`, `Ki`, `M`, ...), if known.
fn prefix(p: &str) -> Option<u128> {
    Some(match p {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" | "KI" => 1 << 10,
        "Mi" | "MI" => 1 << 20,
        "Gi" | "GI" => 1 << 30,
        "Ti" | "TI" => 1 << 40,
        "Pi" | "PI" => 1 << 50,
        _ => return None,
    })
}

/// Parses a CPU amount into millicores: `"2"` (cores), `"1.5"`, `"250m"`.
///
/// # Errors
///
/// A [`ParseError`] saying what is wrong: empty, not a number, an unknown
/// unit, more precise than a millicore, or too large.
///
/// # Examples
///
/// ```
/// use respool::units::parse_cpu;
/// assert_eq!(parse_cpu("500m"), Ok(500));
/// assert_eq!(parse_cpu("1.5"), Ok(1500));
/// assert!(parse_cpu("0.0001").is_err());
/// ```
pub fn parse_cpu(input: &str) -> Result<u64, ParseError> {
    const WHAT: &str = "CPU";
    let (n, unit) = number(WHAT, input)?;
    let per_unit = match unit {
        "" | "cores" | "core" | "cpu" | "cpus" => 1000,
        "m" => 1,
        other => {
            return Err(err(
                WHAT,
                input,
                ParseErrorKind::UnknownUnit(other.to_owned()),
            ));
        }
    };
    match n.scale_ceil(per_unit, 1) {
        Some((_, false)) => Err(err(WHAT, input, ParseErrorKind::TooPrecise)),
        other => finish(WHAT, input, other.map(|(v, _)| v)),
    }
}

/// Parses a size in bytes: `"4096"`, `"64KiB"`, `"512Mi"`, `"1.5G"`, `"2GB"`.
/// Fractions of a byte round up.
///
/// # Errors
///
/// A [`ParseError`] saying what is wrong.
///
/// # Examples
///
/// ```
/// use respool::units::parse_bytes;
/// assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
/// assert_eq!(parse_bytes("1.5G"), Ok(1_500_000_000));
/// assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
/// ```
pub fn parse_bytes(input: &str) -> Result<u64, ParseError> {
    parse_sized("memory", input, false)
}

/// Parses a bandwidth in bytes per second: `"12.5MB/s"`, `"100Mbit/s"`,
/// `"1Gbps"`. The `/s` suffix is optional.
///
/// # Errors
///
/// A [`ParseError`] saying what is wrong.
///
/// # Examples
///
/// ```
/// use respool::units::parse_bandwidth;
/// assert_eq!(parse_bandwidth("100Mbit/s"), Ok(12_500_000));
/// assert_eq!(parse_bandwidth("2MiB/s"), Ok(2 << 20));
/// ```
pub fn parse_bandwidth(input: &str) -> Result<u64, ParseError> {
    parse_sized("network", input, true)
}

fn parse_sized(what: &'static str, input: &str, rate: bool) -> Result<u64, ParseError> {
    let (n, unit) = number(what, input)?;
    let unknown = || err(what, input, ParseErrorKind::UnknownUnit(unit.to_owned()));
    let mut u = unit;
    if rate {
        if let Some(stripped) = u.strip_suffix("ps") {
            // "Mbps": bits per second.
            u = stripped;
            let p = prefix(u.strip_suffix('b').ok_or_else(unknown)?).ok_or_else(unknown)?;
            return finish(what, input, n.scale_ceil(p, 8).map(|(v, _)| v));
        }
        u = u.strip_suffix("/s").unwrap_or(u);
    }
    let (p, bits) = if let Some(p) = u.strip_suffix("bit") {
        (p, true)
    } else if let Some(p) = u.strip_suffix('B') {
        (p, false)
    } else if rate && u.ends_with('b') {
        (u.strip_suffix('b').unwrap_or(u), true)
    } else {
        (u, false)
    };
    let mult = prefix(p).ok_or_else(unknown)?;
    let value = if bits {
        n.scale_ceil(mult, 8)
    } else {
        n.scale_ceil(mult, 1)
    };
    finish(what, input, value.map(|(v, _)| v))
}

/// Parses a plain count (IOPS, licences): `"2000"`, `"10k"`, `"1.5M"`.
/// Fractions round up.
///
/// # Errors
///
/// A [`ParseError`] saying what is wrong.
pub fn parse_count(input: &str) -> Result<u64, ParseError> {
    const WHAT: &str = "count";
    let (n, unit) = number(WHAT, input)?;
    let mult = prefix(unit)
        .ok_or_else(|| err(WHAT, input, ParseErrorKind::UnknownUnit(unit.to_owned())))?;
    finish(WHAT, input, n.scale_ceil(mult, 1).map(|(v, _)| v))
}

/// Parses an amount of `dim` with the parser of its unit.
///
/// # Errors
///
/// A [`ParseError`] from the parser of that unit.
///
/// # Examples
///
/// ```
/// use respool::{Dim, units::parse_amount};
/// assert_eq!(parse_amount(Dim::Memory, "1KiB"), Ok(1024));
/// assert_eq!(parse_amount(Dim::Cpu, "250m"), Ok(250));
/// assert_eq!(parse_amount(Dim::Iops, "3k"), Ok(3000));
/// ```
pub fn parse_amount(dim: Dim, input: &str) -> Result<u64, ParseError> {
    match dim {
        Dim::Cpu => parse_cpu(input),
        Dim::Memory | Dim::GpuMemory => parse_bytes(input),
        Dim::Network => parse_bandwidth(input),
        Dim::Iops | Dim::Gpu | Dim::User0 | Dim::User1 | Dim::User2 | Dim::User3 => {
            parse_count(input)
        }
    }
}

/// The longest amount text the parse cache keeps.
const CACHED_LEN: usize = 22;

/// One entry of the parse cache: an amount text of at most
/// [`CACHED_LEN`] bytes and what it parsed to.
#[derive(Clone, Copy)]
struct Parsed {
    /// Bytes of `text` used; 0 for an empty entry (an empty text is never
    /// cached: it does not parse).
    len: u8,
    text: [u8; CACHED_LEN],
    value: u64,
}

impl Parsed {
    const EMPTY: Parsed = Parsed {
        len: 0,
        text: [0; CACHED_LEN],
        value: 0,
    };
}

thread_local! {
    /// Per thread and dimension, the last amount text parsed and its value.
    static PARSED: [std::cell::Cell<Parsed>; Dim::COUNT] =
        const { [const { std::cell::Cell::new(Parsed::EMPTY) }; Dim::COUNT] };
}

/// [`parse_amount`] through a per-thread cache of the last text parsed for
/// each dimension: a program that submits many tasks with the same
/// `.cpu("250m")` parses it once per thread, and compares at most 22 bytes
/// for each task after that (issue 21). Errors are not cached.
#[inline]
pub(crate) fn parse_amount_cached(dim: Dim, input: &str) -> Result<u64, ParseError> {
    let bytes = input.as_bytes();
    let hit = PARSED.try_with(|cache| {
        let entry = cache.get(dim.index())?.get();
        // Byte by byte: the texts are a few bytes long, shorter than a call
        // to `memcmp` would take.
        (entry.len != 0
            && usize::from(entry.len) == bytes.len()
            && entry.text.iter().zip(bytes).all(|(a, b)| a == b))
        .then_some(entry.value)
    });
    match hit {
        Ok(Some(v)) => Ok(v),
        _ => parse_and_cache(dim, input),
    }
}

/// The cache's miss: parses `input` and keeps it as `dim`'s last text.
#[cold]
#[inline(never)]
fn parse_and_cache(dim: Dim, input: &str) -> Result<u64, ParseError> {
    let bytes = input.as_bytes();
    let value = parse_amount(dim, input)?;
    if !bytes.is_empty() && bytes.len() <= CACHED_LEN {
        let mut entry = Parsed {
            len: u8::try_from(bytes.len()).unwrap_or(0),
            text: [0; CACHED_LEN],
            value,
        };
        if let Some(t) = entry.text.get_mut(..bytes.len()) {
            t.copy_from_slice(bytes);
        }
        // During the thread's teardown the cache is gone: nothing to keep.
        let _ = PARSED.try_with(|cache| {
            if let Some(slot) = cache.get(dim.index()) {
                slot.set(entry);
            }
        });
    }
    Ok(value)
}

/// Formats bytes with a binary prefix and up to one decimal: `"1.5 GiB"`.
#[must_use]
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut whole = bytes;
    let mut tenths = 0;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        tenths = (whole % 1024) * 10 / 1024;
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 || tenths == 0 {
        format!("{whole} {}", UNITS[unit])
    } else {
        format!("{whole}.{tenths} {}", UNITS[unit])
    }
}

/// Formats millicores as cores when whole, else millicores: `"2"`, `"1500m"`.
#[must_use]
pub fn format_cpu(millicores: u64) -> String {
    if millicores % 1000 == 0 {
        format!("{}", millicores / 1000)
    } else {
        format!("{millicores}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache answers what the parser answers: for a repeated text, a
    /// text that replaces it, one of another dimension, one too long to
    /// cache, and errors (never cached).
    #[test]
    fn parse_cache_agrees_with_the_parser() {
        let long = "1073741824                B";
        assert!(long.len() > CACHED_LEN);
        let cases = [
            (Dim::Memory, "1MiB"),
            (Dim::Memory, "1MiB"),
            (Dim::Cpu, "1MiB"),
            (Dim::Memory, "2MiB"),
            (Dim::Memory, "1MiB"),
            (Dim::Cpu, "250m"),
            (Dim::Cpu, "250m"),
            (Dim::Cpu, "25"),
            (Dim::Cpu, "250"),
            (Dim::Memory, long),
            (Dim::Memory, long),
            (Dim::Iops, "1k"),
            (Dim::Iops, "1kk"),
            (Dim::Iops, "1k"),
            (Dim::Memory, ""),
            (Dim::Network, "100Mbit/s"),
            (Dim::Network, "100Mbit/s"),
        ];
        for (dim, text) in cases {
            assert_eq!(
                parse_amount_cached(dim, text),
                parse_amount(dim, text),
                "{dim:?} {text:?}"
            );
        }
    }

    #[test]
    fn cpu_table() {
        let ok = [
            ("2", 2000),
            ("1.5", 1500),
            ("0.1", 100),
            (".5", 500),
            ("250m", 250),
            ("1m", 1),
            ("0", 0),
            (" 3 ", 3000),
            ("2 cores", 2000),
            ("0.001", 1),
        ];
        for (s, want) in ok {
            assert_eq!(parse_cpu(s), Ok(want), "{s}");
        }
        let bad = [
            ("", ParseErrorKind::Empty),
            ("abc", ParseErrorKind::InvalidNumber),
            ("1.2.3", ParseErrorKind::InvalidNumber),
            ("-1", ParseErrorKind::InvalidNumber),
            ("0.0005", ParseErrorKind::TooPrecise),
            ("1.5m", ParseErrorKind::TooPrecise),
            ("2x", ParseErrorKind::UnknownUnit("x".into())),
            ("99999999999999999999", ParseErrorKind::TooLarge),
        ];
        for (s, kind) in bad {
            assert_eq!(parse_cpu(s).map_err(|e| e.kind), Err(kind), "{s}");
        }
    }

    #[test]
    fn bytes_table() {
        let ok = [
            ("4096", 4096),
            ("4096B", 4096),
            ("1k", 1000),
            ("1KB", 1000),
            ("1KiB", 1024),
            ("1Ki", 1024),
            ("512MiB", 512 << 20),
            ("512Mi", 512 << 20),
            ("1.5G", 1_500_000_000),
            ("1.5GB", 1_500_000_000),
            ("1.5Gi", 3 << 29),
            ("2 GiB", 2 << 30),
            ("1TiB", 1 << 40),
            ("0.1Ki", 103), // 102.4 rounds up
            ("1PiB", 1 << 50),
            ("1024PiB", 1 << 60),
        ];
        for (s, want) in ok {
            assert_eq!(parse_bytes(s), Ok(want), "{s}");
        }
        let bad = [
            ("", ParseErrorKind::Empty),
            ("MiB", ParseErrorKind::InvalidNumber),
            ("12XB", ParseErrorKind::UnknownUnit("XB".into())),
            ("1.5 gigs", ParseErrorKind::UnknownUnit("gigs".into())),
            ("1025PiB", ParseErrorKind::TooLarge),
        ];
        for (s, kind) in bad {
            assert_eq!(parse_bytes(s).map_err(|e| e.kind), Err(kind), "{s}");
        }
    }

    #[test]
    fn bandwidth_and_counts() {
        let ok = [
            ("100Mbit/s", 12_500_000),
            ("1Gbps", 125_000_000),
            ("1Gbit", 125_000_000),
            ("100Mb/s", 12_500_000),
            ("12.5MB/s", 12_500_000),
            ("2MiB/s", 2 << 20),
            ("800", 800),
        ];
        for (s, want) in ok {
            assert_eq!(parse_bandwidth(s), Ok(want), "{s}");
        }
        assert!(parse_bandwidth("3 furlongs").is_err());
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("7"), Ok(7));
        assert!(parse_count("7 apples").is_err());
    }

    #[test]
    fn errors_say_what_to_write() {
        let e = parse_bytes("12XB").unwrap_err().to_string();
        assert!(e.contains("invalid memory amount \"12XB\""), "{e}");
        assert!(e.contains("MiB"), "{e}");
        let e = parse_cpu("0.0001").unwrap_err().to_string();
        assert!(e.contains("millicores"), "{e}");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_bytes(2 << 30), "2 GiB");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(250), "250m");
    }
}
