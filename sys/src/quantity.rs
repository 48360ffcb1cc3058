//! Kubernetes-style quantities, as the Downward API and overrides write them.
//!
//! CPU: `"2"` (cores), `"2.5"`, `"250m"` (millicores), `"500000u"`,
//! `"250000000n"`. Memory: `"1073741824"` (bytes), `"512Mi"`, `"1Gi"`,
//! `"1G"`, `"1.5G"`, `"128k"`, and the `"512MiB"` spelling. Amounts are
//! computed in 128-bit integers and rounded down; nothing here uses floating
//! point.

/// Parses a CPU quantity into millicores, rounding down. `None` when the text
/// is not a quantity.
pub(crate) fn parse_cpu_millicores(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, nanos_per_unit): (&str, u128) = if let Some(n) = s.strip_suffix('m') {
        (n, 1_000_000)
    } else if let Some(n) = s.strip_suffix('u') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('n') {
        (n, 1)
    } else {
        (s, 1_000_000_000)
    };
    // Value in nanocores, then down to millicores.
    let nanos = scaled(num, nanos_per_unit)?;
    u64::try_from(nanos / 1_000_000).ok()
}

/// Parses a memory quantity into bytes, rounding down. `None` when the text is
/// not a quantity.
pub(crate) fn parse_memory_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix('B').unwrap_or(s);
    const TABLE: [(&str, u128); 13] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    let (num, unit) = TABLE
        .iter()
        .find_map(|&(suffix, unit)| s.strip_suffix(suffix).map(|n| (n, unit)))
        .unwrap_or((s, 1));
    u64::try_from(scaled(num, unit)?).ok()
}

/// `num * unit` for a non-negative decimal `num` with up to 9 fractional
/// digits (more are truncated), rounded down.
fn scaled(num: &str, unit: u128) -> Option<u128> {
    let num = num.trim();
    if num.is_empty() || num.starts_with('-') || num.starts_with('+') {
        return None;
    }
    let nano = crate::parse::parse_fixed(num.as_bytes(), 9)?;
    u128::from(nano)
        .checked_mul(unit)
        .map(|v| v / 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_table() {
        let table = [
            ("2", Some(2000)),
            ("2.5", Some(2500)),
            ("0.25", Some(250)),
            ("250m", Some(250)),
            ("1500m\n", Some(1500)),
            ("500000u", Some(500)),
            ("250000000n", Some(250)),
            ("0.0001", Some(0)),
            ("", None),
            ("m", None),
            ("-1", None),
            ("two", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_cpu_millicores(s), want, "{s:?}");
        }
    }

    #[test]
    fn memory_table() {
        let table = [
            ("1073741824", Some(1 << 30)),
            ("512Mi", Some(512 << 20)),
            ("512MiB", Some(512 << 20)),
            ("1Gi", Some(1 << 30)),
            ("1.5Gi", Some(3 << 29)),
            ("1G", Some(1_000_000_000)),
            ("1.5G", Some(1_500_000_000)),
            ("128k", Some(128_000)),
            ("16Ei", None), // 2^64 does not fit
            ("12Q", None),
            ("", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_memory_bytes(s), want, "{s:?}");
        }
    }
}
