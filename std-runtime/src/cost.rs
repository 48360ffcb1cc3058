//! What tasks cost, from what they were measured to use.
//!
//! A pool with [`Builder::pricing`](crate::Builder::pricing) sums, per
//! class, what its measured runs **used** (CPU-seconds, memory
//! GiB-seconds, GPU-seconds) and what they **held** (their reservation
//! times their run time), and prices both at a [`Pricing`]: the class's
//! cost, and the cost of its *slack*, reserved but unused. The snapshot
//! shows them per class ([`ClassAccuracy::cost`](crate::learn::ClassAccuracy::cost)),
//! respool-observe exports them, `respool run` prints them in its summary.
//!
//! # Usage
//!
//! For one run of wall time *t*: CPU-seconds are the measured CPU rate
//! (millicores) times *t* (the thread's, or the child processes', CPU time);
//! memory GiB-seconds are the measured peak times *t* (an upper bound: the
//! task did not hold its peak all along); GPU-seconds are the devices it
//! used times *t*. Held amounts are the reservation times *t*.
//!
//! # Prices
//!
//! Clouds price instances, not vCPUs and GiB. A [`PriceTable`] row (an
//! instance: vCPUs, memory, GPUs and its on-demand price per hour) is split
//! into [`Rates`] by one documented rule:
//!
//! - a GiB-hour of memory costs [`MEMORY_TO_CPU_PRICE_RATIO`] of a
//!   vCPU-hour: the ratio of Google Cloud's published N2 custom machine
//!   prices ($0.004237 per GiB-hour to $0.031611 per vCPU-hour in
//!   us-central1), the one provider that prices the two apart. So a row
//!   without GPUs gives `vcpu = price / (vcpus + ratio * memory_gib)` and
//!   `gib = ratio * vcpu`;
//! - a row with GPUs first takes off its vCPUs and memory at the average
//!   rates of the same provider's rows without GPUs; the rest, per GPU, is
//!   the GPU-hour rate (zero if nothing is left, and then the row is split
//!   as one without GPUs).
//!
//! The built-in table ([`PriceTable::builtin`], `std-runtime/data/pricing.csv`)
//! holds common AWS, Google Cloud and Azure instance types, each row with
//! its source page and the date its price is given for (written offline
//! from the providers' list prices, not checked against the pages: see
//! the file's header). Prices change: bring
//! your own file in the same format ([`PriceTable::from_file`],
//! `respool run --pricing FILE`), or give rates directly ([`Rates`]).
//!
//! # Examples
//!
//! ```
//! use respool::cost::{PriceTable, Usage};
//! let table = PriceTable::builtin();
//! let pricing = table.pricing("m7i.large")?;
//! // One vCPU busy for an hour, holding 4 GiB: half the instance's $0.1008.
//! let usage = Usage { cpu_seconds: 3600.0, memory_gib_seconds: 4.0 * 3600.0, gpu_seconds: 0.0 };
//! assert!((pricing.rates.cost(&usage) - 0.0504).abs() < 1e-9);
//! assert_eq!(pricing.label, "m7i.large (aws us-east-1, as of 2025-01-01)");
//! # Ok::<(), respool::cost::PricingError>(())
//! ```

use std::fmt;
use std::path::Path;

use respool_sys::Excerpt;

/// The price of a GiB-hour of memory as a share of a vCPU-hour's (see the
/// [module documentation](self)): Google Cloud N2 custom machine types,
/// $0.004237 / $0.031611.
pub const MEMORY_TO_CPU_PRICE_RATIO: f64 = 0.004_237 / 0.031_611;

/// Prices per hour of one vCPU, one GiB of memory and one GPU, in USD.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    /// USD per vCPU-hour.
    pub usd_per_vcpu_hour: f64,
    /// USD per GiB-hour of memory.
    pub usd_per_gib_hour: f64,
    /// USD per GPU-hour.
    pub usd_per_gpu_hour: f64,
}

/// Amounts of resources used (or held) over time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// vCPU-seconds.
    pub cpu_seconds: f64,
    /// GiB-seconds of memory.
    pub memory_gib_seconds: f64,
    /// GPU-seconds.
    pub gpu_seconds: f64,
}

impl Rates {
    /// What `usage` costs at these rates, in USD.
    #[must_use]
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.cpu_seconds * self.usd_per_vcpu_hour
            + usage.memory_gib_seconds * self.usd_per_gib_hour
            + usage.gpu_seconds * self.usd_per_gpu_hour)
            / 3600.0
    }
}

/// Rates with a name to show beside the costs ("at m7i.large prices").
#[derive(Clone, Debug, PartialEq)]
pub struct Pricing {
    /// What the rates are (an instance type, its provider and region, and
    /// the date of its price).
    pub label: String,
    /// The rates.
    pub rates: Rates,
}

/// One instance type's on-demand price.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceRow {
    /// `aws`, `gcp`, `azure`, or another name.
    pub provider: String,
    /// The region the price is for.
    pub region: String,
    /// The instance type.
    pub instance: String,
    /// vCPUs.
    pub vcpus: f64,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// GPUs.
    pub gpus: u32,
    /// On-demand price per hour, in USD.
    pub usd_per_hour: f64,
    /// The date the price is given for (`YYYY-MM-DD`).
    pub as_of: String,
    /// The page that publishes it (an `https://` URL).
    pub source: String,
}

/// A file of instance prices could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricingError {
    /// The file (or `built-in`).
    pub source: String,
    /// 1-based line of the problem (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PricingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.source.is_empty() {
            write!(f, "price table: {}", self.message)
        } else if self.line == 0 {
            write!(
                f,
                "price table {}: {}",
                Excerpt::plain(&self.source),
                self.message
            )
        } else {
            write!(
                f,
                "price table {} line {}: {}",
                Excerpt::plain(&self.source),
                self.line,
                self.message
            )
        }
    }
}

impl std::error::Error for PricingError {}

/// Instance prices (see the [module documentation](self) for the format
/// and how a row becomes [`Rates`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PriceTable {
    rows: Vec<PriceRow>,
}

const BUILTIN: &str = include_str!("../data/pricing.csv");
const HEADER: &str = "provider,region,instance,vcpus,memory_gib,gpus,usd_per_hour,as_of,source";

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (1..=12).contains(&s[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&s[8..10].parse::<u32>().unwrap_or(0))
}

impl PriceTable {
    /// The table shipped with respool (`std-runtime/data/pricing.csv`).
    ///
    /// # Panics
    ///
    /// Never: the built-in file is validated by a test.
    #[must_use]
    pub fn builtin() -> PriceTable {
        PriceTable::parse(BUILTIN, "built-in").unwrap_or(PriceTable { rows: Vec::new() })
    }

    /// Reads a table from a file in the built-in table's format.
    ///
    /// # Errors
    ///
    /// A [`PricingError`]: the file cannot be read, or a row is invalid.
    pub fn from_file(path: &Path) -> Result<PriceTable, PricingError> {
        let text = std::fs::read_to_string(path).map_err(|e| PricingError {
            source: path.display().to_string(),
            line: 0,
            message: e.to_string(),
        })?;
        PriceTable::parse(&text, &path.display().to_string())
    }

    /// Parses CSV text: a header line
    /// `provider,region,instance,vcpus,memory_gib,gpus,usd_per_hour,as_of,source`,
    /// then one instance per line; blank lines and lines starting with `#`
    /// are skipped.
    ///
    /// # Errors
    ///
    /// A [`PricingError`] naming the line: a missing header, a field
    /// missing or extra, a price or size that is not a positive finite
    /// number (a price of zero is refused too), a date that is not
    /// `YYYY-MM-DD`, a source that is not an `https://` URL, an instance
    /// listed twice for the same provider and region, or no rows at all.
    pub fn parse(text: &str, source: &str) -> Result<PriceTable, PricingError> {
        let err = |line: usize, message: String| PricingError {
            source: source.to_owned(),
            line,
            message,
        };
        let mut rows: Vec<PriceRow> = Vec::new();
        let mut header = false;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !header {
                if line != HEADER {
                    return Err(err(n, format!("the header must be {HEADER:?}")));
                }
                header = true;
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 9 {
                return Err(err(n, format!("{} fields, expected 9", f.len())));
            }
            if let Some(k) = f.iter().position(|v| v.is_empty()) {
                let name = HEADER.split(',').nth(k).unwrap_or("?");
                return Err(err(n, format!("{name} is missing")));
            }
            let positive = |k: usize| -> Result<f64, PricingError> {
                let name = HEADER.split(',').nth(k).unwrap_or("?");
                match f[k].parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                    _ => Err(err(
                        n,
                        format!("{name} {} is not a positive number", Excerpt::quoted(f[k])),
                    )),
                }
            };
            let row = PriceRow {
                provider: f[0].to_owned(),
                region: f[1].to_owned(),
                instance: f[2].to_owned(),
                vcpus: positive(3)?,
                memory_gib: positive(4)?,
                gpus: f[5].parse().map_err(|_| {
                    err(
                        n,
                        format!("gpus {} is not a whole number", Excerpt::quoted(f[5])),
                    )
                })?,
                usd_per_hour: positive(6)?,
                as_of: f[7].to_owned(),
                source: f[8].to_owned(),
            };
            if !is_date(&row.as_of) {
                return Err(err(
                    n,
                    format!(
                        "as_of {} is not a date (YYYY-MM-DD)",
                        Excerpt::quoted(&row.as_of)
                    ),
                ));
            }
            if !row.source.starts_with("https://") || row.source.len() <= "https://".len() {
                return Err(err(
                    n,
                    format!(
                        "source {} is not an https:// URL",
                        Excerpt::quoted(&row.source)
                    ),
                ));
            }
            if rows.iter().any(|r| {
                r.instance == row.instance && r.provider == row.provider && r.region == row.region
            }) {
                return Err(err(
                    n,
                    format!("{} is listed twice", Excerpt::quoted(&row.instance)),
                ));
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(err(0, "no prices in it".into()));
        }
        Ok(PriceTable { rows })
    }

    /// The rows, in file order.
    #[must_use]
    pub fn rows(&self) -> &[PriceRow] {
        &self.rows
    }

    /// The row of `instance` (the first listed, if several providers or
    /// regions have it).
    #[must_use]
    pub fn find(&self, instance: &str) -> Option<&PriceRow> {
        self.rows.iter().find(|r| r.instance == instance)
    }

    /// The average (vCPU, GiB) rates of `provider`'s rows without GPUs (all
    /// providers' when it has none).
    fn cpu_memory_rates(&self, provider: &str) -> (f64, f64) {
        let split = |r: &PriceRow| {
            let vcpu = r.usd_per_hour / (r.vcpus + MEMORY_TO_CPU_PRICE_RATIO * r.memory_gib);
            (vcpu, vcpu * MEMORY_TO_CPU_PRICE_RATIO)
        };
        let mut of: Vec<(f64, f64)> = self
            .rows
            .iter()
            .filter(|r| r.gpus == 0 && r.provider == provider)
            .map(split)
            .collect();
        if of.is_empty() {
            of = self
                .rows
                .iter()
                .filter(|r| r.gpus == 0)
                .map(split)
                .collect();
        }
        if of.is_empty() {
            return (0.0, 0.0);
        }
        #[allow(clippy::cast_precision_loss)]
        let n = of.len() as f64;
        let (c, m) = of
            .iter()
            .fold((0.0, 0.0), |(c, m), (rc, rm)| (c + rc, m + rm));
        (c / n, m / n)
    }

    /// `row` split into rates (see the [module documentation](self)).
    #[must_use]
    pub fn rates(&self, row: &PriceRow) -> Rates {
        let alone = || {
            let vcpu = row.usd_per_hour / (row.vcpus + MEMORY_TO_CPU_PRICE_RATIO * row.memory_gib);
            Rates {
                usd_per_vcpu_hour: vcpu,
                usd_per_gib_hour: vcpu * MEMORY_TO_CPU_PRICE_RATIO,
                usd_per_gpu_hour: 0.0,
            }
        };
        if row.gpus == 0 {
            return alone();
        }
        let (c, m) = self.cpu_memory_rates(&row.provider);
        let rest = row.usd_per_hour - row.vcpus * c - row.memory_gib * m;
        if rest <= 0.0 {
            return alone();
        }
        Rates {
            usd_per_vcpu_hour: c,
            usd_per_gib_hour: m,
            usd_per_gpu_hour: rest / f64::from(row.gpus),
        }
    }

    /// The [`Pricing`] of `instance`.
    ///
    /// # Errors
    ///
    /// A [`PricingError`] when the table has no such instance (the message
    /// lists a few it has).
    pub fn pricing(&self, instance: &str) -> Result<Pricing, PricingError> {
        let row = self.find(instance).ok_or_else(|| PricingError {
            source: String::new(),
            line: 0,
            message: format!(
                "no instance {} (it has {}...)",
                Excerpt::quoted(instance),
                self.rows
                    .iter()
                    .take(4)
                    .map(|r| r.instance.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        Ok(Pricing {
            label: format!(
                "{} ({} {}, as of {})",
                row.instance, row.provider, row.region, row.as_of
            ),
            rates: self.rates(row),
        })
    }
}

/// What a class's measured runs used and held, summed (see the [module
/// documentation](self)); kept in integers, so that sums are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    /// CPU time in nanoseconds (millicores x wall time / 1000).
    pub cpu_ns: u128,
    /// Memory in byte-nanoseconds.
    pub memory_byte_ns: u128,
    /// GPU time in device-nanoseconds.
    pub gpu_ns: u128,
}

#[allow(clippy::cast_precision_loss)]
impl UsageTotals {
    /// As [`Usage`]: vCPU-seconds, GiB-seconds, GPU-seconds.
    #[must_use]
    pub fn usage(&self) -> Usage {
        Usage {
            cpu_seconds: self.cpu_ns as f64 / 1e9,
            memory_gib_seconds: self.memory_byte_ns as f64 / 1e9 / f64::from(1u32 << 30),
            gpu_seconds: self.gpu_ns as f64 / 1e9,
        }
    }

    /// Adds one run: `cpu_millis` millicores, `memory` bytes and `gpus`
    /// devices for `wall_ns` nanoseconds.
    pub(crate) fn add(&mut self, cpu_millis: u64, memory: u64, gpus: u64, wall_ns: u64) {
        let w = u128::from(wall_ns);
        self.cpu_ns = self
            .cpu_ns
            .saturating_add(u128::from(cpu_millis) * w / 1000);
        self.memory_byte_ns = self.memory_byte_ns.saturating_add(u128::from(memory) * w);
        self.gpu_ns = self.gpu_ns.saturating_add(u128::from(gpus) * w);
    }

    /// The sum of both, per dimension.
    #[must_use]
    pub fn plus(&self, other: &UsageTotals) -> UsageTotals {
        UsageTotals {
            cpu_ns: self.cpu_ns.saturating_add(other.cpu_ns),
            memory_byte_ns: self.memory_byte_ns.saturating_add(other.memory_byte_ns),
            gpu_ns: self.gpu_ns.saturating_add(other.gpu_ns),
        }
    }

    /// Per dimension, what `self` holds beyond `used` (zero where it
    /// holds less).
    #[must_use]
    pub fn beyond(&self, used: &UsageTotals) -> UsageTotals {
        UsageTotals {
            cpu_ns: self.cpu_ns.saturating_sub(used.cpu_ns),
            memory_byte_ns: self.memory_byte_ns.saturating_sub(used.memory_byte_ns),
            gpu_ns: self.gpu_ns.saturating_sub(used.gpu_ns),
        }
    }
}

/// `usd` as dollars with enough decimals to show its first two significant
/// digits (at least 4, at most 9): `$0.0123`, `$0.0000042`, `$0`.
///
/// ```
/// use respool::cost::format_usd;
/// assert_eq!(format_usd(0.012_345), "$0.0123");
/// assert_eq!(format_usd(0.000_004_2), "$0.0000042");
/// assert_eq!(format_usd(12.5), "$12.5000");
/// assert_eq!(format_usd(0.0), "$0");
/// ```
#[must_use]
pub fn format_usd(usd: f64) -> String {
    if !usd.is_finite() || usd <= 0.0 {
        return "$0".into();
    }
    // Truncation of a small, finite logarithm.
    #[allow(clippy::cast_possible_truncation)]
    let magnitude = usd.log10().floor() as i32;
    let decimals = usize::try_from((1 - magnitude).clamp(4, 9)).unwrap_or(4);
    format!("${usd:.decimals$}")
}

/// A class's cost, in nano-USD (integers, so that the snapshot compares
/// exactly); see [`ClassCost::usd`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCost {
    /// What its runs used, priced: nano-USD.
    pub nano_usd: u64,
    /// What they held and did not use, priced: nano-USD.
    pub slack_nano_usd: u64,
}

#[allow(clippy::cast_precision_loss)]
impl ClassCost {
    /// Prices `used` and the slack of `held` over it at `rates`.
    #[must_use]
    pub fn of(used: &UsageTotals, held: &UsageTotals, rates: &Rates) -> ClassCost {
        let nano = |u: &UsageTotals| {
            let usd = rates.cost(&u.usage());
            // Saturating float-to-int cast: negative and NaN give 0.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = (usd * 1e9).round() as u64;
            n
        };
        ClassCost {
            nano_usd: nano(used),
            slack_nano_usd: nano(&held.beyond(used)),
        }
    }

    /// What the runs used, in USD.
    #[must_use]
    pub fn usd(&self) -> f64 {
        self.nano_usd as f64 / 1e9
    }

    /// What they held unused, in USD.
    #[must_use]
    pub fn slack_usd(&self) -> f64 {
        self.slack_nano_usd as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn the_builtin_table_is_valid() {
        // Every row has a source and a date, no price is negative or
        // missing: `parse` refuses such a row, so the file must parse whole.
        let table = PriceTable::parse(BUILTIN, "built-in").expect("the built-in table parses");
        let data_lines = BUILTIN
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(table.rows().len(), data_lines - 1, "every row kept");
        for p in ["aws", "gcp", "azure"] {
            assert!(table.rows().iter().any(|r| r.provider == p), "{p}");
        }
        for r in table.rows() {
            assert!(
                r.source.starts_with("https://") && is_date(&r.as_of),
                "{r:?}"
            );
            let rates = table.rates(r);
            assert!(
                rates.usd_per_vcpu_hour > 0.0 && rates.usd_per_gib_hour > 0.0,
                "{r:?}"
            );
            // The split gives the price back for the whole instance.
            let whole = Usage {
                cpu_seconds: r.vcpus * 3600.0,
                memory_gib_seconds: r.memory_gib * 3600.0,
                gpu_seconds: f64::from(r.gpus) * 3600.0,
            };
            assert!(
                close(rates.cost(&whole), r.usd_per_hour),
                "{r:?}: {rates:?}"
            );
            assert_eq!(rates.usd_per_gpu_hour > 0.0, r.gpus > 0, "{r:?}");
        }
    }

    #[test]
    fn cost_arithmetic_by_hand() {
        // m7i.large: $0.1008 for 2 vCPUs and 8 GiB. ratio r = 0.004237/0.031611.
        // vcpu = 0.1008 / (2 + 8r); gib = r * vcpu.
        let table = PriceTable::builtin();
        let rates = table.rates(table.find("m7i.large").unwrap());
        let r = 0.004_237 / 0.031_611;
        let vcpu = 0.1008 / (2.0 + 8.0 * r);
        assert!(close(rates.usd_per_vcpu_hour, vcpu));
        assert!(close(rates.usd_per_gib_hour, vcpu * r));
        assert!((vcpu - 0.032_809_46).abs() < 1e-8, "{vcpu}");
        // 90 s at 1.5 vCPUs and 2 GiB: 135 vCPU-s and 180 GiB-s.
        let u = Usage {
            cpu_seconds: 135.0,
            memory_gib_seconds: 180.0,
            gpu_seconds: 0.0,
        };
        let by_hand = (135.0 * vcpu + 180.0 * vcpu * r) / 3600.0;
        assert!(close(rates.cost(&u), by_hand));
        assert!((by_hand - 0.001_450_24).abs() < 1e-8, "{by_hand}");

        // The same run as totals, and a reservation of 2 vCPUs and 4 GiB:
        // slack 0.5 vCPU and 2 GiB for 90 s.
        let mut used = UsageTotals::default();
        used.add(1500, 2 << 30, 0, 90_000_000_000);
        let mut held = UsageTotals::default();
        held.add(2000, 4 << 30, 0, 90_000_000_000);
        assert_eq!(used.cpu_ns, 135_000_000_000);
        assert!(close(used.usage().memory_gib_seconds, 180.0));
        let c = ClassCost::of(&used, &held, &rates);
        assert_eq!(c.nano_usd, (by_hand * 1e9).round() as u64);
        let slack = (45.0 * vcpu + 180.0 * vcpu * r) / 3600.0;
        assert_eq!(c.slack_nano_usd, (slack * 1e9).round() as u64);
        // Holding less than used in a dimension is no negative slack.
        let c = ClassCost::of(&held, &used, &rates);
        assert_eq!(c.slack_nano_usd, 0);
    }

    #[test]
    fn a_gpu_row_is_split_after_the_providers_cpu_and_memory() {
        let table = PriceTable::parse(
            "provider,region,instance,vcpus,memory_gib,gpus,usd_per_hour,as_of,source\n\
             x,r,small,2,8,0,0.1,2025-01-01,https://example.com/p\n\
             x,r,gpu,4,16,2,1.2,2025-01-01,https://example.com/p\n",
            "test",
        )
        .unwrap();
        let small = table.rates(table.find("small").unwrap());
        let gpu = table.rates(table.find("gpu").unwrap());
        assert!(close(gpu.usd_per_vcpu_hour, small.usd_per_vcpu_hour));
        // 1.2 - (the small row's price, twice: 4 vCPUs and 16 GiB) = 1.0, per GPU 0.5.
        assert!(close(gpu.usd_per_gpu_hour, 0.5), "{gpu:?}");
    }

    #[test]
    fn bad_tables_are_refused_with_the_line() {
        let h = "provider,region,instance,vcpus,memory_gib,gpus,usd_per_hour,as_of,source\n";
        let ok = "aws,r,a,2,8,0,0.1,2025-01-01,https://x.example/";
        for (body, want) in [
            (
                "aws,r,a,2,8,0,-0.1,2025-01-01,https://x.example/",
                "usd_per_hour",
            ),
            (
                "aws,r,a,2,8,0,,2025-01-01,https://x.example/",
                "usd_per_hour is missing",
            ),
            ("aws,r,a,2,8,0,0.1,,https://x.example/", "as_of is missing"),
            ("aws,r,a,2,8,0,0.1,2025-01-01,", "source is missing"),
            (
                "aws,r,a,2,8,0,0.1,Jan 2025,https://x.example/",
                "not a date",
            ),
            (
                "aws,r,a,2,8,0,0.1,2025-13-01,https://x.example/",
                "not a date",
            ),
            ("aws,r,a,2,8,0,0.1,2025-01-01,ftp://x", "https://"),
            (
                "aws,r,a,2,8,0,NaN,2025-01-01,https://x.example/",
                "positive",
            ),
            ("aws,r,a,2,8,0,0,2025-01-01,https://x.example/", "positive"),
            (
                "aws,r,a,2,8,x,0.1,2025-01-01,https://x.example/",
                "whole number",
            ),
            ("aws,r,a,2,8,0,0.1", "fields"),
        ] {
            let e = PriceTable::parse(&format!("{h}{ok}\n{body}\n"), "t").unwrap_err();
            assert_eq!(e.line, 3, "{body}: {e}");
            assert!(e.to_string().contains(want), "{body}: {e}");
        }
        let e = PriceTable::parse(&format!("{h}{ok}\n{ok}\n"), "t").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = PriceTable::parse("instance,price\n", "t").unwrap_err();
        assert!(e.to_string().contains("header"), "{e}");
        let e = PriceTable::parse(h, "t").unwrap_err();
        assert!(e.to_string().contains("no prices"), "{e}");
        let e = PriceTable::builtin().pricing("m9.huge").unwrap_err();
        assert!(e.to_string().contains("m7i.large"), "{e}");
        let e = PriceTable::from_file(Path::new("/nonexistent/prices.csv")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/prices.csv"), "{e}");
    }
}
