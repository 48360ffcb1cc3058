//! What a pool's user configures of the platform readings: the monitor the
//! pool samples, a file-system root for tests, the placement domains and the
//! capacity the pool detects.
//!
//! These items are defined in [`respool_sys`], the crate that reads the
//! machine and the container (procfs, cgroups, the Kubernetes Downward API,
//! hwloc, NVML); this module re-exports the ones a [`Builder`](crate::Builder)
//! takes or documents, so that `respool` alone is enough to configure a pool.
//! How each figure is found is documented there:
//! [`respool_sys::container`] (capacity, overrides, worker count),
//! [`respool_sys::cgroup`] (cgroup v1/v2 limits), [`respool_sys::monitor`]
//! (sampling, time-to-live, backoff), [`respool_sys::topology`] and
//! [`respool_sys::gpu`]. The parsers, the cgroup layout and the GPU backends
//! are only in `respool_sys`.
//!
//! | what | items | used by |
//! |------|-------|---------|
//! | the monitor's source | [`SystemMonitor`], [`Resource`], [`Snapshot`] and its readings, [`SysError`], [`ProcfsMonitor`] | [`Builder::system_monitor`](crate::Builder::system_monitor) |
//! | sampling | [`MonitorConfig`] | [`Builder::monitor_config`](crate::Builder::monitor_config) |
//! | fixture trees in tests | [`SysRoot`] | [`ProcfsMonitor::new`] |
//! | placement domains | [`Topology`], [`DomainInfo`], [`DomainKind`], [`GpuInventory`] | [`Builder::domains`](crate::Builder::domains) (what the pool detects by default), [`DomainSpec::kind`](crate::DomainSpec::kind) |
//! | capacity | [`MachineCapacity`], [`default_capacity`], [`Headroom`] | [`Builder::capacity`](crate::Builder::capacity), [`Builder::headroom`](crate::Builder::headroom) (what the pool detects by default) |
//!
//! [`DomainKind`] is the one kind of a domain: of a detected one
//! ([`DomainInfo`]) and of one the pool is built with
//! ([`DomainSpec`](crate::DomainSpec)).
//!
//! # Examples
//!
//! A source of readings of one's own: the pool takes the container's memory
//! limit from it.
//!
//! ```
//! use std::time::Instant;
//! use respool::Pool;
//! use respool::sys::{ContainerLimitsReading, Resource, Snapshot, SysError, SystemMonitor};
//!
//! struct FixedLimit(u64);
//! impl SystemMonitor for FixedLimit {
//!     fn name(&self) -> &'static str {
//!         "fixed"
//!     }
//!     fn read(&mut self, r: Resource, at: Instant, s: &mut Snapshot) -> Result<(), SysError> {
//!         if r != Resource::ContainerLimits {
//!             return Err(SysError::Unsupported { what: "this reading", why: "an example" });
//!         }
//!         let memory_bytes = Some(self.0);
//!         s.container_limits = Some(ContainerLimitsReading { at, cpu_millicores: None, memory_bytes });
//!         Ok(())
//!     }
//! }
//!
//! let pool = Pool::builder().workers(1).system_monitor(FixedLimit(1 << 30)).build()?;
//! # drop(pool);
//! # Ok::<(), respool::BuildError>(())
//! ```

// The monitor the pool samples, and what implementing one takes: the
// readings and the raw counters they carry.
#[cfg(not(target_os = "linux"))]
pub use respool_sys::monitor::SysinfoMonitor;
pub use respool_sys::monitor::{
    ContainerLimitsReading, ContainerReading, CpuReading, CpuTimes, DiskReading, DiskTotals,
    MemoryReading, MonitorConfig, NetTotals, NetworkReading, PressureReading, ProcfsMonitor, Psi,
    PsiLine, Resource, ResourceStatus, Snapshot, SystemMonitor,
};
pub use respool_sys::{SysError, SysRoot};
// Placement domains as detected.
pub use respool_sys::gpu::{GpuDevice, GpuInventory};
pub use respool_sys::topology::{DomainInfo, DomainKind, Topology, TopologySource};
// Capacity as detected.
pub use respool_sys::container::{DefaultCapacity, Headroom, MachineCapacity, default_capacity};

// What the pool itself calls, not part of respool's API.
pub(crate) use respool_sys::monitor::Monitor;
pub(crate) use respool_sys::topology::{current_thread_cpus, pin_current_thread};
