//! Placement domains: NUMA nodes (through hwloc, cargo feature `hwloc`), the
//! whole machine as one domain otherwise, and GPUs (see [`crate::gpu`]).
//!
//! [`Topology`] is plain data, available with or without the feature, so the
//! pool can consume it unconditionally. With the feature, [`Topology::detect`]
//! asks hwloc for the NUMA nodes of the CPUs and memory this process may use
//! (hwloc leaves out CPUs outside the process's affinity and cpuset); each
//! node becomes a [`DomainKind::Numa`] domain with its PUs (by OS index, as
//! `sched_setaffinity` numbers them) and its local memory. Without the
//! feature, or when hwloc fails, there is one [`DomainKind::Machine`] domain
//! with every allowed CPU and `MemTotal`, and [`Topology::reason`] says why.
//!
//! [`pin_current_thread`] binds the calling thread to a domain's CPUs with
//! `sched_setaffinity` (Linux; [`SysError::Unsupported`] elsewhere).

use respool_core::{Dim, Resources};

use crate::container::MachineInfo;
use crate::gpu::GpuInventory;
use crate::{SysError, SysRoot};

/// What a placement domain is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainKind {
    /// A NUMA node: CPUs and the memory close to them.
    Numa,
    /// The whole machine (no topology information).
    Machine,
    /// One GPU.
    Gpu,
}

impl DomainKind {
    /// Whether the domain has CPUs of its own (a NUMA node or the machine):
    /// the pool gives such a domain workers; a GPU domain's tasks run on a
    /// CPU worker.
    #[must_use]
    pub fn has_cpus(self) -> bool {
        matches!(self, DomainKind::Numa | DomainKind::Machine)
    }
}

/// One placement domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// Position in [`Topology::domains`].
    pub id: usize,
    /// What it is.
    pub kind: DomainKind,
    /// The OS index (NUMA node number, GPU index), when there is one.
    pub os_index: Option<usize>,
    /// CPUs (OS indexes) of the domain; for a GPU, the CPUs close to it when
    /// the driver says so (may be empty).
    pub cpus: Vec<usize>,
    /// Memory of the domain in bytes (node-local RAM, or GPU memory). For
    /// NUMA nodes this is what the node reports, which on some virtual
    /// machines is less than `MemTotal`; size the pool's memory from
    /// [`MachineCapacity`](crate::container::MachineCapacity), not from the sum of the nodes.
    pub memory_bytes: Option<u64>,
    /// Whole GPUs in the domain (1 for a GPU domain, 0 otherwise).
    pub gpus: u64,
    /// A short description (`"NUMA node 0"`, the GPU's name).
    pub name: String,
}

impl DomainInfo {
    /// The domain's capacity: for CPU domains, 1000 millicores per CPU and
    /// the memory; for a GPU domain, one GPU and its memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::Dim;
    /// use respool_sys::topology::Topology;
    /// let topology = Topology::detect();
    /// let total: u64 = topology.domains.iter().map(|d| d.capacity().amount(Dim::Cpu)).sum();
    /// assert!(total >= 1000);
    /// ```
    #[must_use]
    pub fn capacity(&self) -> Resources {
        let mut r = Resources::NONE;
        match self.kind {
            DomainKind::Gpu => {
                r = r.with_saturating(Dim::Gpu, self.gpus);
                if let Some(m) = self.memory_bytes {
                    r = r.with_saturating(Dim::GpuMemory, m);
                }
            }
            DomainKind::Numa | DomainKind::Machine => {
                let cpus = u64::try_from(self.cpus.len()).unwrap_or(u64::MAX);
                r = r.with_saturating(Dim::Cpu, cpus.saturating_mul(1000));
                if let Some(m) = self.memory_bytes {
                    r = r.with_saturating(Dim::Memory, m);
                }
            }
        }
        r
    }
}

/// Where the topology came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopologySource {
    /// hwloc.
    Hwloc,
    /// The one-domain fallback.
    Fallback,
}

/// The placement domains of this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The domains; ids are positions in this list.
    pub domains: Vec<DomainInfo>,
    /// Where they came from.
    pub source: TopologySource,
    /// Why the fallback was used (or why GPU domains are missing, after
    /// [`Topology::with_gpus`]).
    pub reason: Option<String>,
}

impl Topology {
    /// hwloc's NUMA nodes when the `hwloc` feature is on and hwloc works;
    /// otherwise one machine domain and the reason.
    #[must_use]
    pub fn detect() -> Topology {
        #[cfg(feature = "hwloc")]
        {
            match Topology::from_hwloc() {
                Ok(t) => t,
                Err(reason) => Topology::fallback(&SysRoot::host(), reason),
            }
        }
        #[cfg(not(feature = "hwloc"))]
        {
            Topology::fallback(
                &SysRoot::host(),
                "respool was built without the `hwloc` feature: one domain for the machine",
            )
        }
    }

    /// One [`DomainKind::Machine`] domain with every CPU the process may use
    /// and `MemTotal`, read under `root`.
    #[must_use]
    pub fn fallback(root: &SysRoot, reason: impl Into<String>) -> Topology {
        let mut notes = Vec::new();
        let m: MachineInfo = crate::container::machine_info(root, &mut notes);
        let mut reason = reason.into();
        for n in notes {
            reason.push_str("; ");
            reason.push_str(&n);
        }
        Topology {
            domains: vec![DomainInfo {
                id: 0,
                kind: DomainKind::Machine,
                os_index: None,
                cpus: m.cpus_allowed,
                memory_bytes: m.memory_bytes,
                gpus: 0,
                name: "machine".to_owned(),
            }],
            source: TopologySource::Fallback,
            reason: Some(reason),
        }
    }

    /// The NUMA nodes as hwloc sees them.
    ///
    /// # Errors
    ///
    /// Why hwloc could not be used.
    #[cfg(feature = "hwloc")]
    pub fn from_hwloc() -> Result<Topology, String> {
        use hwlocality::object::attributes::ObjectAttributes;
        use hwlocality::object::types::ObjectType;

        let topo = hwlocality::Topology::new().map_err(|e| format!("hwloc failed: {e}"))?;
        let mut domains = Vec::new();
        for node in topo.objects_with_type(ObjectType::NUMANode) {
            let cpus: Vec<usize> = node
                .cpuset()
                .map(|set| set.iter_set().map(usize::from).collect())
                .unwrap_or_default();
            let memory_bytes = match node.attributes() {
                Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map(u64::from),
                _ => None,
            };
            let os_index = node.os_index();
            domains.push(DomainInfo {
                id: domains.len(),
                kind: DomainKind::Numa,
                os_index,
                cpus,
                memory_bytes,
                gpus: 0,
                name: os_index.map_or_else(|| "NUMA node".to_owned(), |i| format!("NUMA node {i}")),
            });
        }
        if domains.iter().all(|d| d.cpus.is_empty()) {
            return Err("hwloc reported no NUMA node with CPUs".to_owned());
        }
        Ok(Topology {
            domains,
            source: TopologySource::Hwloc,
            reason: None,
        })
    }

    /// Appends one [`DomainKind::Gpu`] domain per GPU of `gpus`; when there
    /// are none, records why in [`Topology::reason`].
    #[must_use]
    pub fn with_gpus(mut self, gpus: &GpuInventory) -> Topology {
        let first = self.domains.len();
        self.domains.extend(gpus.domains(first));
        if gpus.devices.is_empty() {
            if let Some(why) = &gpus.reason {
                let r = self.reason.take().map_or_else(
                    || format!("no GPU domains: {why}"),
                    |r| format!("{r}; no GPU domains: {why}"),
                );
                self.reason = Some(r);
            }
        }
        self
    }

    /// The domains of a kind.
    pub fn domains_of(&self, kind: DomainKind) -> impl Iterator<Item = &DomainInfo> {
        self.domains.iter().filter(move |d| d.kind == kind)
    }

    /// The sum of every domain's [`DomainInfo::capacity`].
    #[must_use]
    pub fn total_capacity(&self) -> Resources {
        self.domains
            .iter()
            .fold(Resources::NONE, |acc, d| acc.saturating_add(&d.capacity()))
    }
}

/// Binds the calling thread to `cpus` (OS indexes, as in
/// [`DomainInfo::cpus`]).
///
/// # Errors
///
/// [`SysError::InvalidConfig`] for an empty list or a CPU id of 1024 or more
/// (beyond `CPU_SETSIZE`), [`SysError::Os`] when the kernel refuses (for
/// example CPUs outside the cpuset), [`SysError::Unsupported`] on other
/// platforms than Linux.
///
/// # Examples
///
/// ```
/// use respool_sys::topology::{Topology, pin_current_thread};
/// let topology = Topology::detect();
/// let domain = &topology.domains[0];
/// std::thread::spawn({
///     let cpus = domain.cpus.clone();
///     move || {
///         if cfg!(target_os = "linux") {
///             pin_current_thread(&cpus).expect("pinned");
///         }
///     }
/// })
/// .join()
/// .unwrap();
/// ```
pub fn pin_current_thread(cpus: &[usize]) -> Result<(), SysError> {
    #[cfg(target_os = "linux")]
    {
        if cpus.is_empty() {
            return Err(SysError::InvalidConfig {
                setting: "cpus",
                why: "the list of CPUs to pin to is empty",
            });
        }
        // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is a valid,
        // empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(1024);
        for &cpu in cpus {
            if cpu >= max {
                return Err(SysError::InvalidConfig {
                    setting: "cpus",
                    why: "a CPU id is 1024 or more (beyond CPU_SETSIZE)",
                });
            }
            // SAFETY: `cpu < CPU_SETSIZE`, so the bit is inside `set`.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t and
        // the size passed is its size.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc != 0 {
            return Err(SysError::Os {
                op: "sched_setaffinity",
                code: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            });
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpus;
        Err(SysError::Unsupported {
            what: "pinning a thread to CPUs",
            why: "only implemented on Linux",
        })
    }
}

/// The CPUs the calling thread may run on (Linux `sched_getaffinity`).
///
/// # Errors
///
/// [`SysError::Os`] when the call fails, [`SysError::Unsupported`] on other
/// platforms than Linux.
pub fn current_thread_cpus() -> Result<Vec<usize>, SysError> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: all zeroes is a valid, empty cpu_set_t.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid 0 is the calling thread; `set` is writable and its size
        // is passed.
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if rc != 0 {
            return Err(SysError::Os {
                op: "sched_getaffinity",
                code: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            });
        }
        let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(1024);
        // SAFETY: every `cpu < CPU_SETSIZE` is inside `set`.
        Ok((0..max)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(SysError::Unsupported {
            what: "reading a thread's CPU affinity",
            why: "only implemented on Linux",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_of_domains() {
        let numa = DomainInfo {
            id: 0,
            kind: DomainKind::Numa,
            os_index: Some(0),
            cpus: vec![0, 1, 2],
            memory_bytes: Some(8 << 30),
            gpus: 0,
            name: "NUMA node 0".into(),
        };
        assert_eq!(
            numa.capacity(),
            Resources::from_pairs(&[(Dim::Cpu, 3000), (Dim::Memory, 8 << 30)]).unwrap()
        );
        let gpu = DomainInfo {
            kind: DomainKind::Gpu,
            cpus: vec![],
            memory_bytes: Some(16 << 30),
            gpus: 1,
            ..numa.clone()
        };
        assert_eq!(
            gpu.capacity(),
            Resources::from_pairs(&[(Dim::Gpu, 1), (Dim::GpuMemory, 16 << 30)]).unwrap()
        );
        let t = Topology {
            domains: vec![numa, gpu],
            source: TopologySource::Fallback,
            reason: None,
        };
        assert_eq!(t.total_capacity().get(Dim::Cpu), Some(3000));
        assert_eq!(t.total_capacity().get(Dim::Gpu), Some(1));
        assert_eq!(t.domains_of(DomainKind::Gpu).count(), 1);
    }

    #[test]
    fn detect_always_gives_a_cpu_domain() {
        let t = Topology::detect();
        assert!(!t.domains.is_empty());
        let cpus: usize = t.domains.iter().map(|d| d.cpus.len()).sum();
        assert!(cpus >= 1, "{t:?}");
        match t.source {
            TopologySource::Hwloc => assert!(cfg!(feature = "hwloc") && t.reason.is_none()),
            TopologySource::Fallback => {
                assert_eq!(t.domains.len(), 1);
                assert!(t.reason.is_some());
                if !cfg!(feature = "hwloc") {
                    assert!(
                        t.reason
                            .as_deref()
                            .unwrap()
                            .contains("without the `hwloc` feature")
                    );
                }
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pinning_round_trips() {
        std::thread::spawn(|| {
            let allowed = current_thread_cpus().unwrap();
            assert!(!allowed.is_empty());
            let first = allowed[0];
            pin_current_thread(&[first]).unwrap();
            assert_eq!(current_thread_cpus().unwrap(), vec![first]);
            pin_current_thread(&allowed).unwrap();
            assert_eq!(current_thread_cpus().unwrap(), allowed);
            assert!(matches!(
                pin_current_thread(&[]),
                Err(SysError::InvalidConfig { .. })
            ));
            assert!(matches!(
                pin_current_thread(&[4096]),
                Err(SysError::InvalidConfig { .. })
            ));
            // CPU 1023 does not exist on this machine (or is not allowed).
            if !allowed.contains(&1023) {
                assert!(matches!(
                    pin_current_thread(&[1023]),
                    Err(SysError::Os {
                        op: "sched_setaffinity",
                        ..
                    })
                ));
            }
        })
        .join()
        .unwrap();
    }
}
