//! [`ProcfsMonitor`]: the Linux [`SystemMonitor`], reading procfs and the
//! process's cgroup files under an injectable [`SysRoot`].

use std::time::Instant;

use respool_core::Ppm;

use crate::cgroup::{CgroupFiles, CgroupLayout};
use crate::monitor::{
    ContainerLimitsReading, ContainerReading, CpuReading, DiskReading, MemoryReading,
    NetworkReading, PressureReading, Resource, Snapshot, SystemMonitor,
};
use crate::parse::{ProcFile, READ_BUF};
use crate::procfs::{
    self, CpuTimes, DiskStatsParser, DiskTotals, MemInfoParser, NetDevParser, NetTotals, Psi,
    PsiParser, StatParser,
};
use crate::{SysError, SysRoot};

/// Reads `/proc/stat`, `/proc/meminfo`, `/proc/pressure/*`,
/// `/proc/diskstats`, `/proc/net/dev` and the process's cgroup files.
///
/// Files stay open between samples and are read into one buffer allocated at
/// construction, so a sample does not allocate. Rates (CPU busy, disk and
/// network per second) are computed between consecutive readings of the
/// same resource.
///
/// A file that is removed or replaced while open keeps being read through
/// the open descriptor until a read fails (procfs files are never replaced;
/// the files of a removed cgroup fail with `ENODEV`); after a failure the
/// file is opened again on the next attempt.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use respool_sys::SysRoot;
/// use respool_sys::monitor::{ProcfsMonitor, Resource, Snapshot, SystemMonitor};
///
/// let mut source = ProcfsMonitor::new(&SysRoot::host());
/// let mut snapshot = Snapshot::default();
/// if source.read(Resource::Memory, Instant::now(), &mut snapshot).is_ok() {
///     let memory = snapshot.memory.unwrap();
///     assert!(memory.available <= memory.total);
/// }
/// ```
#[derive(Debug)]
pub struct ProcfsMonitor {
    buf: Box<[u8]>,
    stat: ProcFile,
    meminfo: ProcFile,
    psi: [ProcFile; 3],
    diskstats: ProcFile,
    netdev: ProcFile,
    cgroup: Option<CgroupFiles>,
    prev_cpu: Option<CpuTimes>,
    prev_disk: Option<(DiskTotals, Instant)>,
    prev_net: Option<(NetTotals, Instant)>,
    prev_cgroup_cpu: Option<(u64, Instant)>,
}

/// `delta` per second over `from..to`; `None` when no time passed.
fn per_second(delta: u64, from: Instant, to: Instant) -> Option<u64> {
    let ns = to.checked_duration_since(from)?.as_nanos();
    if ns == 0 {
        return None;
    }
    u64::try_from(u128::from(delta).saturating_mul(1_000_000_000) / ns).ok()
}

/// Rate of a counter between two readings; `None` on the first reading or
/// when the counter went backwards (a device was removed, a counter reset).
fn rate(now: u64, prev: Option<u64>, from: Option<Instant>, to: Instant) -> Option<u64> {
    per_second(now.checked_sub(prev?)?, from?, to)
}

impl ProcfsMonitor {
    /// A monitor of the machine under `root`, and of this process's cgroup
    /// (found through `root`'s `/proc/self/cgroup` and mountinfo).
    #[must_use]
    pub fn new(root: &SysRoot) -> ProcfsMonitor {
        ProcfsMonitor::with_layout(root, &CgroupLayout::discover(root))
    }

    /// A monitor of the machine under `root` and of the cgroup `layout`.
    #[must_use]
    pub fn with_layout(root: &SysRoot, layout: &CgroupLayout) -> ProcfsMonitor {
        let proc = root.proc();
        ProcfsMonitor {
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            stat: ProcFile::new(proc.join("stat")),
            meminfo: ProcFile::new(proc.join("meminfo")),
            psi: ["cpu", "memory", "io"].map(|f| ProcFile::new(proc.join("pressure").join(f))),
            diskstats: ProcFile::new(proc.join("diskstats")),
            netdev: ProcFile::new(proc.join("net").join("dev")),
            cgroup: CgroupFiles::new(layout),
            prev_cpu: None,
            prev_disk: None,
            prev_net: None,
            prev_cgroup_cpu: None,
        }
    }

    fn read_pressure(&mut self) -> Result<[Option<Psi>; 3], SysError> {
        let mut out = [None; 3];
        let mut missing = 0;
        for (slot, file) in out.iter_mut().zip(&mut self.psi) {
            match procfs::run(file, &mut self.buf, PsiParser::default()) {
                Ok(p) => *slot = Some(p),
                Err(e) if e.is_not_found() || is_unsupported_io(&e) => missing += 1,
                Err(e) => return Err(e),
            }
        }
        if missing == out.len() {
            return Err(SysError::Unsupported {
                what: "pressure stall information (/proc/pressure)",
                why: "the kernel was built without CONFIG_PSI or booted with psi=0",
            });
        }
        Ok(out)
    }
}

/// Whether an I/O error says "operation not supported" (PSI files of a
/// kernel booted with `psi=0`).
fn is_unsupported_io(e: &SysError) -> bool {
    matches!(
        e,
        SysError::Io {
            kind: std::io::ErrorKind::Unsupported,
            ..
        }
    ) || matches!(
        e,
        SysError::Io {
            os_code: Some(95),
            ..
        }
    ) // EOPNOTSUPP
}

impl SystemMonitor for ProcfsMonitor {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn read(
        &mut self,
        resource: Resource,
        now: Instant,
        snapshot: &mut Snapshot,
    ) -> Result<(), SysError> {
        match resource {
            Resource::Cpu => {
                let times = procfs::run(&mut self.stat, &mut self.buf, StatParser::default())?;
                let busy = self
                    .prev_cpu
                    .and_then(|prev| times.busy_millicores_since(&prev));
                let capacity = u64::from(times.cpus).saturating_mul(1000);
                snapshot.cpu = Some(CpuReading {
                    at: now,
                    cpus: times.cpus,
                    busy_millicores: busy,
                    utilisation: busy.map(|b| Ppm::ratio(b, capacity)),
                    times,
                });
                self.prev_cpu = Some(times);
            }
            Resource::Memory => {
                let m = procfs::run(&mut self.meminfo, &mut self.buf, MemInfoParser::default())?;
                snapshot.memory = Some(MemoryReading {
                    at: now,
                    total: m.total,
                    available: m.available,
                    used: m.total.saturating_sub(m.available),
                });
            }
            Resource::Pressure => {
                let [cpu, memory, io] = self.read_pressure()?;
                snapshot.pressure = Some(PressureReading {
                    at: now,
                    cpu,
                    memory,
                    io,
                });
            }
            Resource::Disk => {
                let d = procfs::run(
                    &mut self.diskstats,
                    &mut self.buf,
                    DiskStatsParser::default(),
                )?;
                let (pd, from) = match self.prev_disk {
                    Some((pd, at)) => (Some(pd), Some(at)),
                    None => (None, None),
                };
                snapshot.disk = Some(DiskReading {
                    at: now,
                    totals: d,
                    ops_per_sec: rate(
                        d.reads.saturating_add(d.writes),
                        pd.map(|p| p.reads.saturating_add(p.writes)),
                        from,
                        now,
                    ),
                    read_bytes_per_sec: rate(d.read_bytes, pd.map(|p| p.read_bytes), from, now),
                    write_bytes_per_sec: rate(d.write_bytes, pd.map(|p| p.write_bytes), from, now),
                });
                self.prev_disk = Some((d, now));
            }
            Resource::Network => {
                let n = procfs::run(&mut self.netdev, &mut self.buf, NetDevParser::default())?;
                let (pn, from) = match self.prev_net {
                    Some((pn, at)) => (Some(pn), Some(at)),
                    None => (None, None),
                };
                snapshot.network = Some(NetworkReading {
                    at: now,
                    totals: n,
                    rx_bytes_per_sec: rate(n.rx_bytes, pn.map(|p| p.rx_bytes), from, now),
                    tx_bytes_per_sec: rate(n.tx_bytes, pn.map(|p| p.tx_bytes), from, now),
                    rx_packets_per_sec: rate(n.rx_packets, pn.map(|p| p.rx_packets), from, now),
                    tx_packets_per_sec: rate(n.tx_packets, pn.map(|p| p.tx_packets), from, now),
                });
                self.prev_net = Some((n, now));
            }
            Resource::Container => {
                let Some(files) = &mut self.cgroup else {
                    return Err(no_cgroup());
                };
                let u = files.read_usage(&mut self.buf)?;
                let busy = match (u.cpu_usage_ns, self.prev_cgroup_cpu) {
                    (Some(ns), Some((prev, at))) => ns
                        .checked_sub(prev)
                        .and_then(|d| per_second(d, at, now))
                        .map(|ns_per_s| ns_per_s / 1_000_000),
                    _ => None,
                };
                snapshot.container = Some(ContainerReading {
                    at: now,
                    memory_current: u.memory_current,
                    memory_working_set: u
                        .memory_current
                        .map(|c| c.saturating_sub(u.memory_inactive_file.unwrap_or(0))),
                    memory_peak: u.memory_peak,
                    cpu_usage_ns: u.cpu_usage_ns,
                    cpu_busy_millicores: busy,
                    memory_pressure: u.memory_pressure,
                });
                self.prev_cgroup_cpu = u.cpu_usage_ns.map(|ns| (ns, now));
            }
            Resource::ContainerLimits => {
                let Some(files) = &mut self.cgroup else {
                    return Err(no_cgroup());
                };
                let (cpu, memory) = files.read_limits(&mut self.buf)?;
                snapshot.container_limits = Some(ContainerLimitsReading {
                    at: now,
                    cpu_millicores: cpu,
                    memory_bytes: memory,
                });
            }
        }
        Ok(())
    }
}

fn no_cgroup() -> SysError {
    SysError::Unsupported {
        what: "cgroup readings",
        why: "no cpu or memory cgroup controller was found for this process",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(rate(150, Some(100), Some(t0), t1), Some(100));
        assert_eq!(rate(150, None, Some(t0), t1), None);
        assert_eq!(rate(50, Some(100), Some(t0), t1), None, "counter went back");
        assert_eq!(rate(150, Some(100), Some(t0), t0), None, "no time passed");
        assert_eq!(
            per_second(u64::MAX, t0, t1),
            None,
            "overflow is None, not a panic"
        );
    }
}
