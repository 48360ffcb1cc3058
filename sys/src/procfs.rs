//! Parsers for the Linux procfs files the monitor samples.
//!
//! | file                        | what is read                                        |
//! |-----------------------------|-----------------------------------------------------|
//! | `/proc/stat`                | the aggregate `cpu` line (ticks per state) and the number of `cpuN` lines |
//! | `/proc/meminfo`             | `MemTotal`, `MemAvailable` (`MemFree` on kernels before 3.14) |
//! | `/proc/pressure/{cpu,memory,io}` | `some` and `full`: `avg10`, `avg60`, `avg300`, `total` |
//! | `/proc/diskstats`           | reads, writes, sectors read and written, summed over whole disks |
//! | `/proc/net/dev`             | bytes and packets received and sent, summed over interfaces other than `lo` |
//!
//! Each parser consumes lines one at a time and stops as soon
//! as it has what it needs (the `/proc/stat` parser stops after the `cpu`
//! lines, before the long `intr` line). No parser allocates.
//!
//! Disk totals count whole disks only: partitions (a name that is the
//! previous disk's name followed by digits, or by `p` and digits, as in
//! `sda1` and `nvme0n1p1`) and stacked or virtual devices (`loop*`, `ram*`,
//! `zram*`, `dm-*`, `md*`, `sr*`, `fd*`) would count the same I/O twice or
//! count I/O that never reaches a device. Sectors in `/proc/diskstats` are
//! always 512 bytes, whatever the device's sector size.

use std::ops::ControlFlow;

use respool_core::Ppm;

use crate::SysError;
use crate::parse::{self, Line, ProcFile, fields, key_value, parse_fixed, parse_u64};

/// Consumes the lines of one file and produces a value.
pub(crate) trait LineParser {
    /// What the parser produces.
    type Output;
    /// Consumes one line. `Ok(true)`: more lines wanted; `Ok(false)`: done.
    ///
    /// # Errors
    ///
    /// What was expected, when the line is malformed.
    fn line(&mut self, line: &[u8]) -> Result<bool, &'static str>;
    /// The result, once the lines are consumed.
    ///
    /// # Errors
    ///
    /// What was missing.
    fn finish(self) -> Result<Self::Output, &'static str>;
}

/// Runs `parser` over `file`, read into `buf`.
///
/// # Errors
///
/// [`SysError::Io`] when the file cannot be read, [`SysError::Parse`] with
/// the line number when a line is malformed (line 0 when something is missing
/// at the end).
pub(crate) fn run<P: LineParser>(
    file: &mut ProcFile,
    buf: &mut [u8],
    mut parser: P,
) -> Result<P::Output, SysError> {
    let mut bad: Option<(usize, &'static str)> = None;
    file.read_lines(buf, |n, line| match line {
        Line::Truncated => ControlFlow::Continue(()),
        Line::Full(l) => match parser.line(l) {
            Ok(true) => ControlFlow::Continue(()),
            Ok(false) => ControlFlow::Break(Ok(())),
            Err(what) => {
                bad = Some((n, what));
                ControlFlow::Break(Ok(()))
            }
        },
    })?;
    if let Some((n, what)) = bad {
        return Err(SysError::parse(file.path(), n, what));
    }
    parser
        .finish()
        .map_err(|what| SysError::parse(file.path(), 0, what))
}

/// Runs `parser` over an in-memory text (tests and one-shot detection).
///
/// # Errors
///
/// The 1-based line number (0 for the end) and what was expected.
#[cfg(test)]
pub(crate) fn run_bytes<P: LineParser>(
    text: &[u8],
    mut parser: P,
) -> Result<P::Output, (usize, &'static str)> {
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        match parser.line(line) {
            Ok(true) => {}
            Ok(false) => break,
            Err(what) => return Err((i + 1, what)),
        }
    }
    parser.finish().map_err(|what| (0, what))
}

/// Aggregate CPU time from the first line of `/proc/stat`, in clock ticks
/// (`USER_HZ`, normally 1/100 s), plus the number of CPUs listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time in user mode (includes guest time).
    pub user: u64,
    /// Time in user mode at low priority.
    pub nice: u64,
    /// Time in kernel mode.
    pub system: u64,
    /// Idle time.
    pub idle: u64,
    /// Idle time waiting for I/O.
    pub iowait: u64,
    /// Time servicing interrupts.
    pub irq: u64,
    /// Time servicing soft interrupts.
    pub softirq: u64,
    /// Time stolen by the hypervisor.
    pub steal: u64,
    /// Number of `cpuN` lines: the CPUs online.
    pub cpus: u32,
}

impl CpuTimes {
    /// Ticks spent doing work: everything except idle and iowait.
    #[must_use]
    pub fn busy(&self) -> u64 {
        self.user
            .saturating_add(self.nice)
            .saturating_add(self.system)
            .saturating_add(self.irq)
            .saturating_add(self.softirq)
            .saturating_add(self.steal)
    }

    /// All ticks: busy plus idle and iowait.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.busy()
            .saturating_add(self.idle)
            .saturating_add(self.iowait)
    }

    /// CPU busy between `earlier` and `self`, in millicores (1000 = one CPU
    /// busy for the whole interval), computed from tick ratios so it does not
    /// depend on `USER_HZ` or on the exact interval. `None` when no tick
    /// passed or the counters went backwards.
    #[must_use]
    pub fn busy_millicores_since(&self, earlier: &CpuTimes) -> Option<u64> {
        let busy = self.busy().checked_sub(earlier.busy())?;
        let total = self.total().checked_sub(earlier.total())?;
        if total == 0 {
            return None;
        }
        let capacity = u128::from(self.cpus).saturating_mul(1000);
        let v = capacity.saturating_mul(u128::from(busy)) / u128::from(total);
        u64::try_from(v).ok()
    }
}

/// Parser for `/proc/stat`.
#[derive(Default)]
pub(crate) struct StatParser {
    times: Option<CpuTimes>,
}

impl LineParser for StatParser {
    type Output = CpuTimes;

    fn line(&mut self, line: &[u8]) -> Result<bool, &'static str> {
        let mut f = fields(line);
        let Some(name) = f.next() else {
            return Ok(self.times.is_none());
        };
        match &mut self.times {
            None => {
                if name != b"cpu" {
                    return Err("the aggregate `cpu` line first");
                }
                let mut v = [0u64; 8];
                let mut n = 0usize;
                for (slot, field) in v.iter_mut().zip(&mut f) {
                    *slot = parse_u64(field).ok_or("a number of clock ticks")?;
                    n += 1;
                }
                if n < 4 {
                    return Err("at least 4 counters on the `cpu` line");
                }
                let [user, nice, system, idle, iowait, irq, softirq, steal] = v;
                self.times = Some(CpuTimes {
                    user,
                    nice,
                    system,
                    idle,
                    iowait,
                    irq,
                    softirq,
                    steal,
                    cpus: 0,
                });
                Ok(true)
            }
            Some(times) => {
                let is_cpu_n = name
                    .strip_prefix(b"cpu")
                    .is_some_and(|n| parse_u64(n).is_some());
                if is_cpu_n {
                    times.cpus = times.cpus.saturating_add(1);
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
        }
    }

    fn finish(self) -> Result<CpuTimes, &'static str> {
        let times = self.times.ok_or("the aggregate `cpu` line")?;
        if times.cpus == 0 {
            return Err("at least one `cpuN` line");
        }
        Ok(times)
    }
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemInfo {
    /// `MemTotal`: usable RAM.
    pub(crate) total: u64,
    /// `MemAvailable`: memory available for new work without swapping
    /// (`MemFree` on kernels older than 3.14, which lack `MemAvailable`).
    pub(crate) available: u64,
    /// `MemFree`.
    pub(crate) free: u64,
}

/// Parser for `/proc/meminfo`.
#[derive(Default)]
pub(crate) struct MemInfoParser {
    total: Option<u64>,
    available: Option<u64>,
    free: Option<u64>,
}

impl LineParser for MemInfoParser {
    type Output = MemInfo;

    fn line(&mut self, line: &[u8]) -> Result<bool, &'static str> {
        let mut f = fields(line);
        let slot = match f.next() {
            Some(b"MemTotal:") => &mut self.total,
            Some(b"MemAvailable:") => &mut self.available,
            Some(b"MemFree:") => &mut self.free,
            _ => return Ok(true),
        };
        let value = f.next().and_then(parse_u64).ok_or("a number of kB")?;
        let bytes = match f.next() {
            Some(b"kB") => value.checked_mul(1024).ok_or("a size below 16 EiB")?,
            None => value,
            Some(_) => return Err("the unit `kB`"),
        };
        *slot = Some(bytes);
        Ok(!(self.total.is_some() && self.available.is_some() && self.free.is_some()))
    }

    fn finish(self) -> Result<MemInfo, &'static str> {
        let total = self.total.ok_or("a `MemTotal:` line")?;
        let free = self.free.ok_or("a `MemFree:` line")?;
        Ok(MemInfo {
            total,
            available: self.available.unwrap_or(free),
            free,
        })
    }
}

/// One line of a pressure stall information (PSI) file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PsiLine {
    /// Share of the last 10 s in which tasks stalled.
    pub avg10: Ppm,
    /// Share of the last 60 s in which tasks stalled.
    pub avg60: Ppm,
    /// Share of the last 300 s in which tasks stalled.
    pub avg300: Ppm,
    /// Total stall time since boot, in microseconds.
    pub total_us: u64,
}

/// A pressure stall information file (`/proc/pressure/*`, cgroup v2
/// `*.pressure`): `some` (at least one task stalled) and `full` (all
/// non-idle tasks stalled; absent for CPU before Linux 5.13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Psi {
    /// The `some` line.
    pub some: PsiLine,
    /// The `full` line, when the kernel writes one.
    pub full: Option<PsiLine>,
}

/// Parser for PSI files.
#[derive(Default)]
pub(crate) struct PsiParser {
    some: Option<PsiLine>,
    full: Option<PsiLine>,
}

/// A PSI percentage with two decimals (`13.41`) as [`Ppm`].
fn psi_percent(v: &[u8]) -> Result<Ppm, &'static str> {
    // Hundredths of a percent are 100 ppm each.
    let hundredths = parse_fixed(v, 2).ok_or("a percentage like 13.41")?;
    let ppm = hundredths.saturating_mul(100).min(u64::from(u32::MAX));
    Ok(Ppm::from_ppm(u32::try_from(ppm).unwrap_or(u32::MAX)))
}

impl LineParser for PsiParser {
    type Output = Psi;

    fn line(&mut self, line: &[u8]) -> Result<bool, &'static str> {
        let mut f = fields(line);
        let slot = match f.next() {
            Some(b"some") => &mut self.some,
            Some(b"full") => &mut self.full,
            None => return Ok(true),
            Some(_) => return Err("a line starting with `some` or `full`"),
        };
        let mut out = PsiLine::default();
        let mut seen = 0u8;
        for field in f {
            if let Some(v) = key_value(field, b"avg10") {
                out.avg10 = psi_percent(v)?;
                seen |= 1;
            } else if let Some(v) = key_value(field, b"avg60") {
                out.avg60 = psi_percent(v)?;
                seen |= 2;
            } else if let Some(v) = key_value(field, b"avg300") {
                out.avg300 = psi_percent(v)?;
                seen |= 4;
            } else if let Some(v) = key_value(field, b"total") {
                out.total_us = parse_u64(v).ok_or("a total in microseconds")?;
                seen |= 8;
            }
        }
        if seen != 15 {
            return Err("avg10=, avg60=, avg300= and total= fields");
        }
        *slot = Some(out);
        Ok(true)
    }

    fn finish(self) -> Result<Psi, &'static str> {
        Ok(Psi {
            some: self.some.ok_or("a `some` line")?,
            full: self.full,
        })
    }
}

/// Disk I/O counters from `/proc/diskstats`, summed over whole disks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskTotals {
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
    /// Bytes read (sectors of 512 bytes).
    pub read_bytes: u64,
    /// Bytes written (sectors of 512 bytes).
    pub write_bytes: u64,
    /// Number of devices counted.
    pub devices: u32,
}

/// Parser for `/proc/diskstats`.
#[derive(Default)]
pub(crate) struct DiskStatsParser {
    totals: DiskTotals,
    /// Name of the last whole disk (to recognise its partitions).
    last_disk: [u8; 32],
    last_disk_len: usize,
}

/// Name prefixes of devices that are not counted: loop and RAM devices, and
/// stacked devices whose I/O is already counted on the disks below them.
const SKIPPED_DEVICES: [&[u8]; 7] = [b"loop", b"ram", b"zram", b"dm-", b"md", b"sr", b"fd"];

impl DiskStatsParser {
    fn is_partition(&self, name: &[u8]) -> bool {
        let Some(disk) = self.last_disk.get(..self.last_disk_len) else {
            return false;
        };
        if disk.is_empty() {
            return false;
        }
        let Some(rest) = name.strip_prefix(disk) else {
            return false;
        };
        let digits = match rest.strip_prefix(b"p") {
            Some(d) if disk.last().is_some_and(u8::is_ascii_digit) => d,
            _ => rest,
        };
        !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
    }
}

impl LineParser for DiskStatsParser {
    type Output = DiskTotals;

    fn line(&mut self, line: &[u8]) -> Result<bool, &'static str> {
        let mut f = fields(line);
        let (Some(_major), Some(_minor), Some(name)) = (f.next(), f.next(), f.next()) else {
            return if line.trim_ascii().is_empty() {
                Ok(true)
            } else {
                Err("major, minor and device name")
            };
        };
        let mut v = [0u64; 7];
        for slot in &mut v {
            *slot = f
                .next()
                .and_then(parse_u64)
                .ok_or("at least 7 numeric counters after the device name")?;
        }
        if SKIPPED_DEVICES.iter().any(|p| name.starts_with(p)) || self.is_partition(name) {
            return Ok(true);
        }
        if let Some(slot) = self.last_disk.get_mut(..name.len()) {
            slot.copy_from_slice(name);
            self.last_disk_len = name.len();
        } else {
            self.last_disk_len = 0;
        }
        let [reads, _, sectors_read, _, writes, _, sectors_written] = v;
        let t = &mut self.totals;
        t.reads = t.reads.saturating_add(reads);
        t.writes = t.writes.saturating_add(writes);
        t.read_bytes = t
            .read_bytes
            .saturating_add(sectors_read.saturating_mul(512));
        t.write_bytes = t
            .write_bytes
            .saturating_add(sectors_written.saturating_mul(512));
        t.devices = t.devices.saturating_add(1);
        Ok(true)
    }

    fn finish(self) -> Result<DiskTotals, &'static str> {
        Ok(self.totals)
    }
}

/// Network counters from `/proc/net/dev`, summed over every interface except
/// the loopback `lo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetTotals {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Number of interfaces counted.
    pub interfaces: u32,
}

/// Parser for `/proc/net/dev`.
#[derive(Default)]
pub(crate) struct NetDevParser {
    totals: NetTotals,
}

impl LineParser for NetDevParser {
    type Output = NetTotals;

    fn line(&mut self, line: &[u8]) -> Result<bool, &'static str> {
        // Header lines have a `|` and no `:`.
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Ok(true);
        };
        let name = parse::trim(line.get(..colon).unwrap_or_default());
        let rest = line.get(colon.saturating_add(1)..).unwrap_or_default();
        let mut v = [0u64; 10];
        let mut f = fields(rest);
        for slot in &mut v {
            *slot = f
                .next()
                .and_then(parse_u64)
                .ok_or("16 numeric counters after the interface name")?;
        }
        if name == b"lo" {
            return Ok(true);
        }
        let t = &mut self.totals;
        t.rx_bytes = t.rx_bytes.saturating_add(v[0]);
        t.rx_packets = t.rx_packets.saturating_add(v[1]);
        t.tx_bytes = t.tx_bytes.saturating_add(v[8]);
        t.tx_packets = t.tx_packets.saturating_add(v[9]);
        t.interfaces = t.interfaces.saturating_add(1);
        Ok(true)
    }

    fn finish(self) -> Result<NetTotals, &'static str> {
        Ok(self.totals)
    }
}

/// Parser for a `key value` line file (cgroup v2 `cpu.stat`, `memory.stat`):
/// the value of one key.
pub(crate) struct KeyParser {
    key: &'static [u8],
    value: Option<u64>,
}

impl KeyParser {
    pub(crate) fn new(key: &'static [u8]) -> KeyParser {
        KeyParser { key, value: None }
    }
}

impl LineParser for KeyParser {
    type Output = u64;

    fn line(&mut self, line: &[u8]) -> Result<bool, &'static str> {
        let mut f = fields(line);
        if f.next() == Some(self.key) {
            self.value = Some(
                f.next()
                    .and_then(parse_u64)
                    .ok_or("a number after the key")?,
            );
            return Ok(false);
        }
        Ok(true)
    }

    fn finish(self) -> Result<u64, &'static str> {
        self.value.ok_or("the key (for example `usage_usec`)")
    }
}

/// The `Cpus_allowed_list:` line of `/proc/self/status`, parsed.
pub(crate) fn cpus_allowed(status: &str) -> Option<Vec<usize>> {
    status.lines().find_map(|l| {
        l.strip_prefix("Cpus_allowed_list:")
            .and_then(|v| parse::parse_cpu_list(v.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"cpu  34466 0 7215 97012 477 0 146 328 0 0
cpu0 16567 0 3398 49613 46 0 16 156 0 0
cpu1 17899 0 3816 47398 431 0 129 172 0 0
intr 4159863 0 0 0 0
ctxt 8402932
";

    #[test]
    fn stat() {
        let t = run_bytes(STAT, StatParser::default()).unwrap();
        assert_eq!(t.cpus, 2);
        assert_eq!(
            (t.user, t.system, t.idle, t.iowait, t.steal),
            (34466, 7215, 97012, 477, 328)
        );
        assert_eq!(t.busy(), 34466 + 7215 + 146 + 328);
        assert_eq!(t.total(), t.busy() + 97012 + 477);
        // 2 CPUs, 100 busy ticks of 400: half a CPU.
        let later = CpuTimes {
            user: t.user + 100,
            idle: t.idle + 300,
            ..t
        };
        assert_eq!(later.busy_millicores_since(&t), Some(500));
        assert_eq!(t.busy_millicores_since(&t), None);
        assert_eq!(t.busy_millicores_since(&later), None);
        // Old kernels: 4 counters only.
        let old = run_bytes(b"cpu 1 2 3 4\ncpu0 1 2 3 4\n", StatParser::default()).unwrap();
        assert_eq!((old.user, old.idle, old.iowait, old.cpus), (1, 4, 0, 1));
        let table: [(&[u8], (usize, &str)); 4] = [
            (b"cpu 1 2 x 4\n", (1, "a number of clock ticks")),
            (b"cpu 1 2\n", (1, "at least 4 counters on the `cpu` line")),
            (b"intr 1\n", (1, "the aggregate `cpu` line first")),
            (b"cpu 1 2 3 4\nintr 5\n", (0, "at least one `cpuN` line")),
        ];
        for (text, want) in table {
            assert_eq!(run_bytes(text, StatParser::default()).unwrap_err(), want);
        }
    }

    #[test]
    fn meminfo() {
        let text = b"MemTotal:       24684092 kB\nMemFree:        21594768 kB\nMemAvailable:   23712480 kB\nBuffers: 1 kB\n";
        let m = run_bytes(text, MemInfoParser::default()).unwrap();
        assert_eq!(m.total, 24684092 * 1024);
        assert_eq!(m.available, 23712480 * 1024);
        let old = run_bytes(
            b"MemTotal: 100 kB\nMemFree: 40 kB\n",
            MemInfoParser::default(),
        )
        .unwrap();
        assert_eq!(old.available, 40 * 1024, "falls back to MemFree");
        assert_eq!(
            run_bytes(b"MemTotal: lots kB\n", MemInfoParser::default()).unwrap_err(),
            (1, "a number of kB")
        );
        assert_eq!(
            run_bytes(b"MemFree: 1 kB\n", MemInfoParser::default()).unwrap_err(),
            (0, "a `MemTotal:` line")
        );
    }

    #[test]
    fn psi() {
        let text = b"some avg10=13.41 avg60=31.80 avg300=20.90 total=90613483\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        let p = run_bytes(text, PsiParser::default()).unwrap();
        assert_eq!(p.some.avg10, Ppm::from_ppm(134_100));
        assert_eq!(p.some.avg60, Ppm::from_ppm(318_000));
        assert_eq!(p.some.total_us, 90_613_483);
        assert_eq!(p.full.unwrap().avg10, Ppm::ZERO);
        let cpu_old = run_bytes(
            b"some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n",
            PsiParser::default(),
        )
        .unwrap();
        assert_eq!(cpu_old.full, None);
        assert_eq!(
            run_bytes(b"some avg10=1.00 total=5\n", PsiParser::default()).unwrap_err(),
            (1, "avg10=, avg60=, avg300= and total= fields")
        );
        assert_eq!(
            run_bytes(
                b"some avg10=x avg60=0 avg300=0 total=5\n",
                PsiParser::default()
            )
            .unwrap_err(),
            (1, "a percentage like 13.41")
        );
    }

    #[test]
    fn diskstats_counts_whole_disks_once() {
        let text = b"   7       0 loop0 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 100 7700 4000 30334 50 30337 2000 17840 0 12664 49103 5820 46 253880 872 822 56
 254       1 vda1 90 0 3900 0 45 0 1900 0 0 0 0
 259       0 nvme0n1 10 0 80 0 20 0 160 0 0 0 0
 259       1 nvme0n1p1 10 0 80 0 20 0 160 0 0 0 0
 253       0 dm-0 100 0 4000 0 50 0 2000 0 0 0 0
   8      16 sdb 1 0 8 0 2 0 16 0 0 0 0
";
        let d = run_bytes(text, DiskStatsParser::default()).unwrap();
        assert_eq!(d.devices, 3, "vda, nvme0n1, sdb");
        assert_eq!(d.reads, 100 + 10 + 1);
        assert_eq!(d.writes, 50 + 20 + 2);
        assert_eq!(d.read_bytes, (4000 + 80 + 8) * 512);
        assert_eq!(d.write_bytes, (2000 + 160 + 16) * 512);
        assert_eq!(
            run_bytes(b" 8 0 sda 1 2\n", DiskStatsParser::default()).unwrap_err(),
            (1, "at least 7 numeric counters after the device name")
        );
    }

    #[test]
    fn netdev() {
        let text = b"Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
  eth0:122206864    6055    0    0    0     0          0         0   467013    3669    0    0    0     0       0          0
  eth1: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0
";
        let n = run_bytes(text, NetDevParser::default()).unwrap();
        assert_eq!(n.interfaces, 2);
        assert_eq!(n.rx_bytes, 122206864 + 10);
        assert_eq!(n.tx_packets, 3669 + 2);
        assert_eq!(
            run_bytes(b"eth0: 1 2 3\n", NetDevParser::default()).unwrap_err(),
            (1, "16 numeric counters after the interface name")
        );
    }

    #[test]
    fn key_files_and_cpu_lists() {
        let text = b"usage_usec 123456\nuser_usec 1\n";
        assert_eq!(run_bytes(text, KeyParser::new(b"usage_usec")), Ok(123456));
        assert_eq!(
            run_bytes(b"user_usec 1\n", KeyParser::new(b"usage_usec")),
            Err((0, "the key (for example `usage_usec`)"))
        );
        let status = "Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n";
        assert_eq!(cpus_allowed(status), Some(vec![0, 1]));
        assert_eq!(cpus_allowed("Name: x\n"), None);
    }
}
