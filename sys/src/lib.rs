//! # respool-sys
//!
//! What the machine and the container offer, and what is in use: the
//! platform readings of [respool](https://github.com/respool/respool), a
//! task pool that knows what its tasks cost. It depends on `respool-core`
//! (the resource model) and nothing else of respool; the `respool` crate
//! builds its pool on it and re-exports what a pool's user configures as
//! `respool::sys`.
//!
//! This crate measures the machine and the container respool runs in, so the
//! pool can size itself and follow reality (DESIGN, "Measurement"):
//!
//! - **Capacity** ([`container`]: [`MachineCapacity`](container::MachineCapacity),
//!   [`default_capacity`](container::default_capacity)): CPUs and memory of
//!   the machine, cgroup v1/v2 limits taken as the tightest over every
//!   ancestor group ([`cgroup`]), the Kubernetes Downward API, and manual
//!   overrides; each figure says where it came from. The pool's default
//!   capacity is `min(machine, container, override) - headroom`, with a
//!   container-aware worker count.
//! - **Live readings** ([`monitor`]): one background thread samples CPU,
//!   memory, pressure (PSI), disk, network and the cgroup's usage and limits
//!   at a fixed interval (1 s by default), caches them per resource, backs off
//!   after failures, and calls subscribers after every sample. Parsing does
//!   not allocate.
//! - **Placement domains** ([`topology`]): NUMA nodes through hwloc (feature
//!   `hwloc`), else the machine as one domain; GPUs through NVML (feature
//!   `nvml`, [`gpu`]), else zero GPU capacity with a reason.
//!
//! Each item has one path: the areas are modules, and only what they share
//! ([`SysRoot`], [`SysError`], [`thread_cpu_time`], [`Excerpt`]) is at the
//! root. The parsers of procfs and cgroup files are private.
//!
//! # What the pool calls
//!
//! ```
//! use std::time::Duration;
//! use respool_sys::container::default_capacity;
//! use respool_sys::gpu::GpuInventory;
//! use respool_sys::monitor::{Monitor, MonitorConfig};
//! use respool_sys::topology::Topology;
//!
//! // Capacity and worker count.
//! let defaults = default_capacity();
//! let gpus = GpuInventory::detect();
//! let capacity = defaults.capacity.or(&gpus.capacity());
//! // Placement domains (NUMA nodes or the machine, then GPUs).
//! let topology = Topology::detect().with_gpus(&gpus);
//! // Live usage, within one interval.
//! let monitor = Monitor::start(MonitorConfig::default())?;
//! monitor.subscribe(move |snapshot| {
//!     let _in_use = snapshot.measured_usage(); // -> tracker's external usage
//! });
//! # let _ = (capacity, topology, defaults.workers);
//! # Ok::<(), respool_sys::SysError>(())
//! ```
//!
//! # Platforms
//!
//! Linux reads procfs and cgroup files directly. Other platforms use the
//! `sysinfo` crate for CPU, memory and network, and return
//! [`SysError::Unsupported`] for pressure, disk counters and cgroups. Every
//! path under `/` can be redirected with a [`SysRoot`], which is how the
//! tests run against fixture trees.

pub mod cgroup;
pub mod container;
pub mod gpu;
pub mod monitor;
pub mod topology;

mod echo;
mod error;
mod parse;
mod procfs;
mod procfs_monitor;
mod quantity;

#[cfg(any(not(target_os = "linux"), test))]
mod portable;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use echo::{Excerpt, MAX_ECHO};
pub use error::SysError;

/// Where the files respool reads are: a file-system root and a `/proc`.
///
/// [`SysRoot::host`] is the real system. [`SysRoot::at`] points at a
/// directory that mirrors it (`<dir>/proc/self/cgroup`,
/// `<dir>/sys/fs/cgroup/...`, `<dir>/.dockerenv`); mount points read from
/// `<proc>/self/mountinfo` are resolved under the root.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use respool_sys::SysRoot;
/// let root = SysRoot::at("tests/fixtures/cgroup/v2_leaf_limit");
/// assert_eq!(root.proc(), Path::new("tests/fixtures/cgroup/v2_leaf_limit/proc"));
/// assert_eq!(
///     root.resolve("/sys/fs/cgroup"),
///     Path::new("tests/fixtures/cgroup/v2_leaf_limit/sys/fs/cgroup")
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SysRoot {
    root: PathBuf,
    proc: PathBuf,
}

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot::host()
    }
}

impl SysRoot {
    /// The real system: `/` and `/proc`.
    #[must_use]
    pub fn host() -> SysRoot {
        SysRoot {
            root: PathBuf::from("/"),
            proc: PathBuf::from("/proc"),
        }
    }

    /// A tree under `dir`, with its `proc` at `<dir>/proc`.
    #[must_use]
    pub fn at(dir: impl Into<PathBuf>) -> SysRoot {
        let root = dir.into();
        let proc = root.join("proc");
        SysRoot { root, proc }
    }

    /// Replaces where `/proc` is.
    #[must_use]
    pub fn with_proc(mut self, proc: impl Into<PathBuf>) -> SysRoot {
        self.proc = proc.into();
        self
    }

    /// The file-system root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `/proc` is.
    #[must_use]
    pub fn proc(&self) -> &Path {
        &self.proc
    }

    /// An absolute path of the system, under this root.
    #[must_use]
    pub fn resolve(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }
}

/// Machine CPUs and memory when procfs cannot be read: `sysinfo` on other
/// platforms, `available_parallelism` alone on Linux. Returns the figures and
/// a note saying what was used.
pub(crate) fn fallback_machine() -> (usize, Option<u64>, String) {
    #[cfg(not(target_os = "linux"))]
    {
        let (cpus, memory) = portable::machine();
        (cpus, memory, "machine figures from sysinfo".to_owned())
    }
    #[cfg(target_os = "linux")]
    {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        (
            cpus,
            None,
            "procfs unreadable: CPUs from std::thread::available_parallelism, memory unknown"
                .to_owned(),
        )
    }
}

/// CPU time used by the calling thread (Linux `CLOCK_THREAD_CPUTIME_ID`);
/// `None` elsewhere or on failure.
///
/// # Examples
///
/// ```
/// let t = respool_sys::thread_cpu_time();
/// assert!(t.is_some() || !cfg!(target_os = "linux"));
/// ```
#[must_use]
pub fn thread_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc != 0 {
            return None;
        }
        let secs = u64::try_from(ts.tv_sec).ok()?;
        let nanos = u32::try_from(ts.tv_nsec).ok()?;
        Some(Duration::new(secs, nanos))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The kernel thread id of the calling thread (Linux); `None` elsewhere.
#[must_use]
pub(crate) fn current_tid() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions and cannot fail.
        Some(unsafe { libc::gettid() })
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
