//! Readings on platforms other than Linux, through the `sysinfo` crate.
//!
//! CPU utilisation, memory and network totals exist everywhere `sysinfo`
//! runs (macOS, Windows, the BSDs). Pressure stall information, disk I/O
//! counters and cgroups are Linux concepts here: asking for them returns
//! [`SysError::Unsupported`], and the monitor stops asking.
//!
//! This module is also compiled into the Linux unit tests (with `sysinfo` as
//! a dev-dependency), so the code is type-checked and run on Linux; its
//! behaviour on macOS and Windows is `sysinfo`'s.

use std::time::Instant;

use respool_core::Ppm;

use crate::SysError;
use crate::monitor::{
    CpuReading, MemoryReading, NetworkReading, Resource, Snapshot, SystemMonitor,
};
use crate::procfs::{CpuTimes, NetTotals};

/// A [`SystemMonitor`] backed by `sysinfo`.
pub struct SysinfoMonitor {
    system: sysinfo::System,
    networks: sysinfo::Networks,
    cpu_primed: bool,
    prev_net: Option<(NetTotals, Instant)>,
}

impl std::fmt::Debug for SysinfoMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SysinfoMonitor")
    }
}

impl Default for SysinfoMonitor {
    fn default() -> Self {
        SysinfoMonitor::new()
    }
}

impl SysinfoMonitor {
    /// A new monitor (allocates `sysinfo`'s tables).
    #[must_use]
    pub fn new() -> SysinfoMonitor {
        SysinfoMonitor {
            system: sysinfo::System::new(),
            networks: sysinfo::Networks::new_with_refreshed_list(),
            cpu_primed: false,
            prev_net: None,
        }
    }
}

/// Names of loopback interfaces on the platforms `sysinfo` supports.
fn is_loopback(name: &str) -> bool {
    name == "lo" || name == "lo0" || name.starts_with("Loopback")
}

fn per_second(delta: u64, from: Instant, to: Instant) -> Option<u64> {
    let ns = to.checked_duration_since(from)?.as_nanos();
    if ns == 0 {
        return None;
    }
    u64::try_from(u128::from(delta).saturating_mul(1_000_000_000) / ns).ok()
}

impl SystemMonitor for SysinfoMonitor {
    fn name(&self) -> &'static str {
        "sysinfo"
    }

    fn read(
        &mut self,
        resource: Resource,
        now: Instant,
        snapshot: &mut Snapshot,
    ) -> Result<(), SysError> {
        match resource {
            Resource::Cpu => {
                self.system.refresh_cpu_usage();
                let cpus = u32::try_from(self.system.cpus().len()).unwrap_or(u32::MAX);
                // sysinfo needs two refreshes for a utilisation figure.
                let busy = if self.cpu_primed {
                    let percent = self.system.global_cpu_usage().clamp(0.0, 100.0);
                    // Percent of all CPUs to millicores: percent * cpus * 10.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let m = (f64::from(percent) * f64::from(cpus) * 10.0) as u64;
                    Some(m)
                } else {
                    None
                };
                self.cpu_primed = true;
                let capacity = u64::from(cpus).saturating_mul(1000);
                snapshot.cpu = Some(CpuReading {
                    at: now,
                    cpus,
                    busy_millicores: busy,
                    utilisation: busy.map(|b| Ppm::ratio(b, capacity)),
                    times: CpuTimes {
                        cpus,
                        ..CpuTimes::default()
                    },
                });
                Ok(())
            }
            Resource::Memory => {
                self.system.refresh_memory();
                let total = self.system.total_memory();
                let available = self.system.available_memory().min(total);
                snapshot.memory = Some(MemoryReading {
                    at: now,
                    total,
                    available,
                    used: total - available,
                });
                Ok(())
            }
            Resource::Network => {
                self.networks.refresh(true);
                let mut t = NetTotals::default();
                for (name, data) in self.networks.list() {
                    if is_loopback(name) {
                        continue;
                    }
                    t.rx_bytes = t.rx_bytes.saturating_add(data.total_received());
                    t.tx_bytes = t.tx_bytes.saturating_add(data.total_transmitted());
                    t.rx_packets = t.rx_packets.saturating_add(data.total_packets_received());
                    t.tx_packets = t
                        .tx_packets
                        .saturating_add(data.total_packets_transmitted());
                    t.interfaces = t.interfaces.saturating_add(1);
                }
                let rate = |now_v: u64, prev: Option<(u64, Instant)>| {
                    let (p, at) = prev?;
                    per_second(now_v.checked_sub(p)?, at, now)
                };
                let prev = self.prev_net;
                snapshot.network = Some(NetworkReading {
                    at: now,
                    totals: t,
                    rx_bytes_per_sec: rate(t.rx_bytes, prev.map(|(p, a)| (p.rx_bytes, a))),
                    tx_bytes_per_sec: rate(t.tx_bytes, prev.map(|(p, a)| (p.tx_bytes, a))),
                    rx_packets_per_sec: rate(t.rx_packets, prev.map(|(p, a)| (p.rx_packets, a))),
                    tx_packets_per_sec: rate(t.tx_packets, prev.map(|(p, a)| (p.tx_packets, a))),
                });
                self.prev_net = Some((t, now));
                Ok(())
            }
            Resource::Pressure => Err(SysError::Unsupported {
                what: "pressure stall information",
                why: "it is a Linux feature (/proc/pressure)",
            }),
            Resource::Disk => Err(SysError::Unsupported {
                what: "disk I/O counters",
                why: "only read from /proc/diskstats on Linux",
            }),
            Resource::Container | Resource::ContainerLimits => Err(SysError::Unsupported {
                what: "container (cgroup) readings",
                why: "cgroups exist only on Linux",
            }),
        }
    }
}

/// CPUs and memory of the machine from `sysinfo`, for detection where procfs
/// is not available.
pub(crate) fn machine() -> (usize, Option<u64>) {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let memory = Some(system.total_memory()).filter(|m| *m > 0);
    (cpus, memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_memory_network_and_refuses_the_rest() {
        let mut m = SysinfoMonitor::new();
        let mut s = Snapshot::default();
        let t0 = Instant::now();
        m.read(Resource::Cpu, t0, &mut s).unwrap();
        assert_eq!(s.cpu.unwrap().busy_millicores, None, "first reading primes");
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        m.read(Resource::Cpu, Instant::now(), &mut s).unwrap();
        let cpu = s.cpu.unwrap();
        assert!(cpu.cpus >= 1);
        assert!(cpu.busy_millicores.unwrap() <= u64::from(cpu.cpus) * 1000);
        m.read(Resource::Memory, t0, &mut s).unwrap();
        let mem = s.memory.unwrap();
        assert!(mem.total > 0 && mem.available <= mem.total);
        m.read(Resource::Network, t0, &mut s).unwrap();
        assert!(s.network.is_some());
        for r in [
            Resource::Pressure,
            Resource::Disk,
            Resource::Container,
            Resource::ContainerLimits,
        ] {
            assert!(m.read(r, t0, &mut s).unwrap_err().is_unsupported(), "{r:?}");
        }
        let (cpus, memory) = machine();
        assert!(cpus >= 1);
        assert_eq!(memory, Some(mem.total));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn agrees_with_procfs_on_memory_total() {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kb: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        let mut m = SysinfoMonitor::new();
        let mut s = Snapshot::default();
        m.read(Resource::Memory, Instant::now(), &mut s).unwrap();
        assert_eq!(s.memory.unwrap().total, kb * 1024);
    }
}
