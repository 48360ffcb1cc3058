//! What this process may use: machine, container and manual limits, with the
//! source of every figure, and the pool's default capacity from them.
//!
//! # The figures
//!
//! | source          | CPU                                              | memory                        |
//! |-----------------|--------------------------------------------------|-------------------------------|
//! | machine         | CPUs this process may run on (`Cpus_allowed_list` in `/proc/self/status`: affinity and cpuset), else CPUs online | `MemTotal` of `/proc/meminfo` |
//! | cgroup v1 / v2  | tightest quota over the group and its ancestors ([`CgroupLayout`]) | tightest `memory.max` / `memory.limit_in_bytes` |
//! | Downward API    | `<dir>/limits.cpu` or `<dir>/cpu_limit`; env `CPU_LIMIT` (Kubernetes only) | `<dir>/limits.memory`, `<dir>/mem_limit` or `<dir>/memory_limit`; env `MEMORY_LIMIT` (Kubernetes only) |
//! | override        | [`Overrides::cpu_millicores`], else env `RESPOOL_CPU_LIMIT` | [`Overrides::memory_bytes`], else env `RESPOOL_MEMORY_LIMIT` |
//!
//! The figure used is the **override when there is one** (a person who sets
//! it knows better than any detection, including when it is above what was
//! detected), and otherwise the **minimum** of the others. Each
//! [`Figure`] records its [`Source`] and the file or variable it came from,
//! so [`MachineCapacity::explain`] can say why the pool got the size it got.
//!
//! Downward API values are Kubernetes quantities (`"2"`, `"250m"`, `"512Mi"`).
//! A bare integer is multiplied by the configured divisor, which must match
//! the `divisor` of the pod's `resourceFieldRef` (Kubernetes' default: 1 core
//! for CPU, which it rounds *up* to whole cores, and 1 byte for memory; the
//! cgroup limit is exact and is normally the tighter one). Environment
//! variables are only read when Kubernetes is detected, so an unrelated
//! `CPU_LIMIT` on a workstation is ignored.
//!
//! # Worker count
//!
//! [`MachineCapacity::worker_count`] is the CPU figure rounded **down** to
//! whole CPUs, at least 1, and at most the CPUs the process may run on (unless
//! overridden): 2500 millicores give 2 workers. This is what Rust's
//! `available_parallelism` does. Rounding up (`num_cpus`, Go) runs 3
//! CPU-bound workers on 2.5 CPUs of quota, and CFS then throttles the whole
//! group in every period, which hurts the tail latency of every task. The
//! fraction is not lost: the CPU *budget* stays exact (2500 millicores), so
//! tasks that declare less than a core still use it.
//!
//! # Examples
//!
//! ```
//! use respool_sys::container::{Headroom, MachineCapacity};
//! let detected = MachineCapacity::detect_host();
//! println!("{}", detected.explain());
//! let defaults = detected.default_capacity(&Headroom::DEFAULT);
//! assert!(defaults.workers >= 1);
//! assert!(defaults.capacity.fits_within(&defaults.limit));
//! ```

use std::fmt;
use std::path::PathBuf;

use respool_core::{Dim, Ppm, Resources};

use crate::Excerpt;

use crate::cgroup::{CgroupFinding, CgroupLayout, CgroupLimits, CgroupVersion};
use crate::parse::{self, parse_u64};
use crate::procfs::{self, MemInfoParser, StatParser};
use crate::quantity::{parse_cpu_millicores, parse_memory_bytes};
use crate::{SysError, SysRoot};

/// Where a figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The machine (CPUs, RAM).
    Machine,
    /// A cgroup v1 limit.
    CgroupV1,
    /// A cgroup v2 limit.
    CgroupV2,
    /// The Kubernetes Downward API.
    DownwardApi,
    /// A manual override.
    Override,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Machine => "machine",
            Source::CgroupV1 => "cgroup v1",
            Source::CgroupV2 => "cgroup v2",
            Source::DownwardApi => "downward API",
            Source::Override => "override",
        })
    }
}

/// An amount with its source and a human-readable origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure {
    /// Millicores for CPU, bytes for memory.
    pub value: u64,
    /// Where it comes from.
    pub source: Source,
    /// The file or variable and what it said.
    pub detail: String,
}

impl Figure {
    fn from_cgroup(f: &CgroupFinding) -> Figure {
        Figure {
            value: f.value,
            source: match f.version {
                CgroupVersion::V1 => Source::CgroupV1,
                CgroupVersion::V2 => Source::CgroupV2,
            },
            detail: format!("{} = {:?}", f.file.display(), f.raw),
        }
    }
}

/// The machine, before any limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineInfo {
    /// CPUs online (`cpuN` lines of `/proc/stat`).
    pub cpus_online: usize,
    /// CPU ids this process may run on (affinity and cpuset).
    pub cpus_allowed: Vec<usize>,
    /// Usable RAM (`MemTotal`), when known.
    pub memory_bytes: Option<u64>,
}

/// What kind of container the process seems to run in, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// Docker (or another OCI runtime such as Podman) was detected.
    pub container: bool,
    /// Docker specifically (`/.dockerenv`, `docker` in a cgroup path or in
    /// the mounts).
    pub docker: bool,
    /// Kubernetes (`KUBERNETES_SERVICE_HOST`, the service account secrets
    /// directory, `kubepods` in a cgroup path).
    pub kubernetes: bool,
    /// What was seen.
    pub evidence: Vec<String>,
}

/// Where environment variables come from (tests inject a fixed set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EnvSource {
    /// The process environment.
    #[default]
    Process,
    /// A fixed list of `(name, value)` pairs.
    Fixed(Vec<(String, String)>),
}

impl EnvSource {
    /// The value of `name`, when set and valid Unicode.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            EnvSource::Process => std::env::var(name).ok(),
            EnvSource::Fixed(list) => list.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        }
    }
}

/// Where and how the Kubernetes Downward API is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownwardApiConfig {
    /// Directory of a `downwardAPI` volume (absolute; resolved under the
    /// [`SysRoot`]). Default `/etc/podinfo`.
    pub dir: PathBuf,
    /// Environment variable with the CPU limit (default `CPU_LIMIT`).
    pub cpu_env: String,
    /// Environment variable with the memory limit (default `MEMORY_LIMIT`).
    pub memory_env: String,
    /// Millicores per unit of a bare integer CPU value: the `divisor` of the
    /// `resourceFieldRef` (default 1000: divisor `1`; use 1 for `1m`).
    pub cpu_divisor_millicores: u64,
    /// Bytes per unit of a bare integer memory value (default 1; use
    /// 1048576 for `1Mi`).
    pub memory_divisor_bytes: u64,
}

impl Default for DownwardApiConfig {
    fn default() -> Self {
        DownwardApiConfig {
            dir: PathBuf::from("/etc/podinfo"),
            cpu_env: "CPU_LIMIT".to_owned(),
            memory_env: "MEMORY_LIMIT".to_owned(),
            cpu_divisor_millicores: 1000,
            memory_divisor_bytes: 1,
        }
    }
}

/// Manual figures that win over anything detected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// CPU in millicores.
    pub cpu_millicores: Option<u64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
}

/// Settings of [`MachineCapacity::detect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectOptions {
    /// Where `/proc`, the cgroup mounts and the marker files are.
    pub root: SysRoot,
    /// Where environment variables come from.
    pub env: EnvSource,
    /// The Downward API.
    pub downward: DownwardApiConfig,
    /// Manual overrides (these win over `RESPOOL_CPU_LIMIT` and
    /// `RESPOOL_MEMORY_LIMIT`).
    pub overrides: Overrides,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions::at(SysRoot::host())
    }
}

impl DetectOptions {
    /// Options reading the tree under `root`, the process environment, and no
    /// override.
    #[must_use]
    pub fn at(root: SysRoot) -> DetectOptions {
        DetectOptions {
            root,
            env: EnvSource::Process,
            downward: DownwardApiConfig::default(),
            overrides: Overrides::default(),
        }
    }

    /// Replaces the environment.
    #[must_use]
    pub fn with_env(mut self, env: EnvSource) -> DetectOptions {
        self.env = env;
        self
    }

    /// Sets the overrides.
    #[must_use]
    pub fn with_overrides(mut self, overrides: Overrides) -> DetectOptions {
        self.overrides = overrides;
        self
    }
}

/// Everything detected about what this process may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineCapacity {
    /// The machine.
    pub machine: MachineInfo,
    /// Container detection.
    pub environment: Environment,
    /// Where the cgroups are.
    pub cgroup: CgroupLayout,
    /// What the cgroups say.
    pub cgroup_limits: CgroupLimits,
    /// CPU from the Downward API.
    pub downward_cpu: Option<Figure>,
    /// Memory from the Downward API.
    pub downward_memory: Option<Figure>,
    /// The CPU figure used, in millicores.
    pub cpu: Figure,
    /// The memory figure used, in bytes (`None` only when neither the machine
    /// size nor any limit is known).
    pub memory: Option<Figure>,
    /// Problems met on the way (never fatal).
    pub notes: Vec<String>,
}

/// What is held back from the detected limit.
///
/// Memory headroom is `max(limit * memory_fraction, memory_min_bytes)`; CPU
/// headroom is `cpu_millicores`. No headroom takes more than half of its
/// dimension, so a small container keeps a usable pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headroom {
    /// CPU held back, millicores.
    pub cpu_millicores: u64,
    /// Share of the memory limit held back.
    pub memory_fraction: Ppm,
    /// Memory held back at least, bytes.
    pub memory_min_bytes: u64,
}

impl Headroom {
    /// No CPU held back (the worker count already bounds CPU, and too much
    /// CPU only slows tasks down), and 10% of memory but at least 64 MiB (for
    /// the runtime, the allocator's slack and the page cache: running out of
    /// memory kills, so it is the dimension that needs a margin).
    pub const DEFAULT: Headroom = Headroom {
        cpu_millicores: 0,
        memory_fraction: Ppm::from_ppm(100_000),
        memory_min_bytes: 64 << 20,
    };

    /// Nothing held back.
    pub const NONE: Headroom = Headroom {
        cpu_millicores: 0,
        memory_fraction: Ppm::ZERO,
        memory_min_bytes: 0,
    };
}

impl Default for Headroom {
    fn default() -> Self {
        Headroom::DEFAULT
    }
}

/// The pool's default capacity.
///
/// Either build the tracker with `capacity`, or with `limit` and set
/// `headroom` as its headroom (`Tracker::set_headroom`), which keeps the two
/// apart in reports. Run `workers` worker threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultCapacity {
    /// `min(machine, container, override)`: CPU in millicores, memory in
    /// bytes (unset when unknown).
    pub limit: Resources,
    /// What is held back from `limit`.
    pub headroom: Resources,
    /// `limit - headroom`.
    pub capacity: Resources,
    /// Number of worker threads (see [`MachineCapacity::worker_count`]).
    pub workers: usize,
}

/// Detects on this machine with default options and headroom: what the pool
/// uses when it is not told its size.
#[must_use]
pub fn default_capacity() -> DefaultCapacity {
    MachineCapacity::detect_host().default_capacity(&Headroom::DEFAULT)
}

/// Reads a Kubernetes quantity from a Downward API value.
fn downward_value(raw: &str, divisor: u64, is_cpu: bool) -> Option<u64> {
    let raw = raw.trim();
    if let Some(n) = parse_u64(raw.as_bytes()) {
        return n.checked_mul(divisor);
    }
    if is_cpu {
        parse_cpu_millicores(raw)
    } else {
        parse_memory_bytes(raw)
    }
}

impl MachineCapacity {
    /// Detects on this machine with default options.
    #[must_use]
    pub fn detect_host() -> MachineCapacity {
        MachineCapacity::detect(&DetectOptions::default())
    }

    /// Detects machine, container and override figures. Never fails: what
    /// cannot be read is left out and explained in [`MachineCapacity::notes`]
    /// (a missing controller is "unlimited", never an error that stops the
    /// pool).
    #[must_use]
    pub fn detect(options: &DetectOptions) -> MachineCapacity {
        let root = &options.root;
        let mut notes = Vec::new();
        let machine = machine_info(root, &mut notes);
        let cgroup = CgroupLayout::discover(root);
        let cgroup_limits = cgroup.read_limits();
        let environment = detect_environment(options, &cgroup);
        let (downward_cpu, downward_memory) =
            read_downward(options, environment.kubernetes, &mut notes);

        // Overrides: options first, then environment.
        let mut override_cpu = options.overrides.cpu_millicores.map(|v| Figure {
            value: v,
            source: Source::Override,
            detail: "DetectOptions::overrides.cpu_millicores".to_owned(),
        });
        let mut override_memory = options.overrides.memory_bytes.map(|v| Figure {
            value: v,
            source: Source::Override,
            detail: "DetectOptions::overrides.memory_bytes".to_owned(),
        });
        for (var, slot, is_cpu) in [
            ("RESPOOL_CPU_LIMIT", &mut override_cpu, true),
            ("RESPOOL_MEMORY_LIMIT", &mut override_memory, false),
        ] {
            if slot.is_some() {
                continue;
            }
            if let Some(raw) = options.env.get(var) {
                let v = if is_cpu {
                    parse_cpu_millicores(&raw)
                } else {
                    parse_memory_bytes(&raw)
                };
                match v {
                    Some(v) => {
                        *slot = Some(Figure {
                            value: v,
                            source: Source::Override,
                            detail: format!("env {var}={}", Excerpt::quoted(&raw)),
                        });
                    }
                    None => notes.push(format!(
                        "env {var}={} is not a quantity (examples: {}): ignored",
                        Excerpt::quoted(&raw),
                        if is_cpu {
                            "\"2\", \"2.5\", \"250m\""
                        } else {
                            "\"4Gi\", \"512Mi\", \"1G\""
                        }
                    )),
                }
            }
        }

        let allowed = machine.cpus_allowed.len().max(1);
        let machine_cpu = Figure {
            value: u64::try_from(allowed)
                .unwrap_or(u64::MAX)
                .saturating_mul(1000),
            source: Source::Machine,
            detail: format!("{allowed} CPUs allowed ({} online)", machine.cpus_online),
        };
        let cgroup_cpu = cgroup_limits
            .cpu_millicores
            .as_ref()
            .map(Figure::from_cgroup);
        let cpu = override_cpu.unwrap_or_else(|| {
            tightest([cgroup_cpu, downward_cpu.clone(), Some(machine_cpu.clone())])
                .unwrap_or(machine_cpu)
        });
        let machine_memory = machine.memory_bytes.map(|v| Figure {
            value: v,
            source: Source::Machine,
            detail: "MemTotal".to_owned(),
        });
        let cgroup_memory = cgroup_limits.memory_bytes.as_ref().map(Figure::from_cgroup);
        let memory = override_memory
            .or_else(|| tightest([cgroup_memory, downward_memory.clone(), machine_memory]));

        notes.extend(cgroup.notes.iter().cloned());
        notes.extend(cgroup_limits.notes.iter().cloned());
        MachineCapacity {
            machine,
            environment,
            cgroup,
            cgroup_limits,
            downward_cpu,
            downward_memory,
            cpu,
            memory,
            notes,
        }
    }

    /// Number of worker threads: the CPU figure rounded down to whole CPUs,
    /// at least 1, and at most the CPUs this process may run on unless the
    /// CPU figure is an override. See the [module documentation](self) for
    /// why it rounds down.
    #[must_use]
    pub fn worker_count(&self) -> usize {
        self.workers_for(self.cpu.value)
    }

    fn workers_for(&self, millicores: u64) -> usize {
        let whole = usize::try_from(millicores / 1000)
            .unwrap_or(usize::MAX)
            .max(1);
        if self.cpu.source == Source::Override {
            whole
        } else {
            whole.min(self.machine.cpus_allowed.len().max(1))
        }
    }

    /// Memory charged to the process's cgroup now, bytes.
    #[must_use]
    pub fn memory_usage(&self) -> Option<u64> {
        self.cgroup_limits.memory_usage
    }

    /// The most memory ever charged to the process's cgroup, bytes.
    #[must_use]
    pub fn memory_peak(&self) -> Option<u64> {
        self.cgroup_limits.memory_peak
    }

    /// The pool's default capacity: the figures as a resource vector (CPU in
    /// millicores, memory in bytes), the headroom held back from them, and the
    /// worker count for the capacity left.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::Dim;
    /// use respool_sys::container::{Headroom, MachineCapacity};
    /// let d = MachineCapacity::detect_host().default_capacity(&Headroom::DEFAULT);
    /// assert_eq!(d.headroom.get(Dim::Cpu), Some(0));
    /// assert!(d.capacity.get(Dim::Cpu).unwrap() >= 1000 || d.workers == 1);
    /// ```
    #[must_use]
    pub fn default_capacity(&self, headroom: &Headroom) -> DefaultCapacity {
        let mut limit = Resources::NONE.with_saturating(Dim::Cpu, self.cpu.value);
        if let Some(m) = &self.memory {
            limit = limit.with_saturating(Dim::Memory, m.value);
        }
        let cpu = limit.amount(Dim::Cpu);
        let mut held =
            Resources::NONE.with_saturating(Dim::Cpu, headroom.cpu_millicores.min(cpu / 2));
        if let Some(mem) = limit.get(Dim::Memory) {
            let h = headroom
                .memory_fraction
                .apply(mem)
                .max(headroom.memory_min_bytes)
                .min(mem / 2);
            held = held.with_saturating(Dim::Memory, h);
        }
        let capacity = limit.saturating_sub(&held);
        DefaultCapacity {
            limit,
            headroom: held,
            capacity,
            workers: self.workers_for(capacity.amount(Dim::Cpu)),
        }
    }

    /// A multi-line explanation of every figure and where it came from.
    #[must_use]
    pub fn explain(&self) -> String {
        use fmt::Write as _;
        let mut s = String::new();
        let fig = |f: &Option<Figure>| {
            f.as_ref().map_or_else(
                || "none".to_owned(),
                |f| format!("{} ({}: {})", f.value, f.source, f.detail),
            )
        };
        let _ = writeln!(
            s,
            "cpu: {} millicores from {} ({}); workers: {}",
            self.cpu.value,
            self.cpu.source,
            self.cpu.detail,
            self.worker_count()
        );
        let _ = writeln!(s, "memory: {}", fig(&self.memory));
        let _ = writeln!(
            s,
            "machine: {} CPUs online, allowed {:?}, memory {:?}",
            self.machine.cpus_online, self.machine.cpus_allowed, self.machine.memory_bytes
        );
        let _ = writeln!(s, "cgroup mode: {:?}", self.cgroup.mode);
        for (name, dir) in [("cpu", &self.cgroup.cpu), ("memory", &self.cgroup.memory)] {
            if let Some(d) = dir {
                let _ = writeln!(
                    s,
                    "cgroup {name}: {:?} group {:?} at {} (mount root {:?})",
                    d.version,
                    d.group_path,
                    d.leaf().display(),
                    d.mount_root
                );
            }
        }
        let cg = |f: &Option<CgroupFinding>| f.as_ref().map(Figure::from_cgroup);
        let _ = writeln!(
            s,
            "cgroup cpu limit: {}",
            fig(&cg(&self.cgroup_limits.cpu_millicores))
        );
        let _ = writeln!(
            s,
            "cgroup memory limit: {}",
            fig(&cg(&self.cgroup_limits.memory_bytes))
        );
        let _ = writeln!(
            s,
            "cgroup memory usage: {:?}, peak: {:?}",
            self.cgroup_limits.memory_usage, self.cgroup_limits.memory_peak
        );
        let _ = writeln!(s, "downward API cpu: {}", fig(&self.downward_cpu));
        let _ = writeln!(s, "downward API memory: {}", fig(&self.downward_memory));
        let e = &self.environment;
        let _ = writeln!(
            s,
            "container: {} (docker: {}, kubernetes: {}) {:?}",
            e.container, e.docker, e.kubernetes, e.evidence
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

/// The smallest figure; on ties the earliest (limits are listed before the
/// machine, so a limit equal to the machine size is reported as the limit).
fn tightest<const N: usize>(figures: [Option<Figure>; N]) -> Option<Figure> {
    let mut best: Option<Figure> = None;
    for f in figures.into_iter().flatten() {
        if best.as_ref().is_none_or(|b| f.value < b.value) {
            best = Some(f);
        }
    }
    best
}

pub(crate) fn machine_info(root: &SysRoot, notes: &mut Vec<String>) -> MachineInfo {
    let mut buf = vec![0u8; parse::READ_BUF];
    let proc = root.proc();
    let online = match procfs::run(
        &mut parse::ProcFile::new(proc.join("stat")),
        &mut buf,
        StatParser::default(),
    ) {
        Ok(t) => Some(usize::try_from(t.cpus).unwrap_or(usize::MAX)),
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    let allowed = match parse::read_to_string(&proc.join("self").join("status")) {
        Ok(s) => procfs::cpus_allowed(&s),
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    let memory = match procfs::run(
        &mut parse::ProcFile::new(proc.join("meminfo")),
        &mut buf,
        MemInfoParser::default(),
    ) {
        Ok(m) => Some(m.total),
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    let (fallback_cpus, fallback_memory) = if online.is_none() || memory.is_none() {
        let (c, m, note) = crate::fallback_machine();
        notes.push(note);
        (c, m)
    } else {
        (1, None)
    };
    let online = online.unwrap_or(fallback_cpus);
    let allowed = allowed
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| (0..online).collect());
    MachineInfo {
        cpus_online: online,
        cpus_allowed: allowed,
        memory_bytes: memory.or(fallback_memory),
    }
}

fn detect_environment(options: &DetectOptions, cgroup: &CgroupLayout) -> Environment {
    let root = &options.root;
    let mut e = Environment::default();
    if root.resolve("/.dockerenv").exists() {
        e.docker = true;
        e.evidence.push("/.dockerenv exists".to_owned());
    }
    if root.resolve("/run/.containerenv").exists() {
        e.container = true;
        e.evidence
            .push("/run/.containerenv exists (Podman)".to_owned());
    }
    let groups = [&cgroup.cpu, &cgroup.memory, &cgroup.unified];
    for g in groups.into_iter().flatten() {
        let p = &g.group_path;
        if !e.docker && (p.contains("/docker/") || p.contains("docker-")) {
            e.docker = true;
            e.evidence.push(format!("cgroup path {p:?}"));
        }
        if !e.kubernetes && p.contains("kubepods") {
            e.kubernetes = true;
            e.evidence.push(format!("cgroup path {p:?}"));
        }
    }
    if !e.docker {
        let mountinfo = root.proc().join("self").join("mountinfo");
        if parse::read_to_string(&mountinfo).is_ok_and(|m| m.contains("/docker/containers/")) {
            e.docker = true;
            e.evidence
                .push("/proc/self/mountinfo mounts files from /docker/containers/".to_owned());
        }
    }
    if let Some(host) = options.env.get("KUBERNETES_SERVICE_HOST") {
        e.kubernetes = true;
        e.evidence
            .push(format!("env KUBERNETES_SERVICE_HOST={host}"));
    }
    for dir in [
        "/var/run/secrets/kubernetes.io",
        "/run/secrets/kubernetes.io",
    ] {
        if root.resolve(dir).exists() {
            e.kubernetes = true;
            e.evidence.push(format!("{dir} exists"));
            break;
        }
    }
    e.container |= e.docker || e.kubernetes;
    e
}

fn read_downward(
    options: &DetectOptions,
    kubernetes: bool,
    notes: &mut Vec<String>,
) -> (Option<Figure>, Option<Figure>) {
    let d = &options.downward;
    let dir = options.root.resolve(&d.dir.to_string_lossy());
    let mut read = |files: &[&str], env: &str, divisor: u64, is_cpu: bool| -> Option<Figure> {
        let mut found: Vec<Figure> = Vec::new();
        for name in files {
            let path = dir.join(name);
            match parse::read_to_string(&path) {
                Ok(raw) => match downward_value(&raw, divisor, is_cpu) {
                    Some(v) => found.push(Figure {
                        value: v,
                        source: Source::DownwardApi,
                        detail: format!("{} = {:?}", path.display(), raw.trim()),
                    }),
                    None => {
                        notes.push(SysError::parse(&path, 1, "a Kubernetes quantity").to_string())
                    }
                },
                Err(e) if e.is_not_found() => {}
                Err(e) => notes.push(e.to_string()),
            }
        }
        if kubernetes {
            if let Some(raw) = options.env.get(env) {
                match downward_value(&raw, divisor, is_cpu) {
                    Some(v) => found.push(Figure {
                        value: v,
                        source: Source::DownwardApi,
                        detail: format!("env {env}={}", Excerpt::quoted(&raw)),
                    }),
                    None => notes.push(format!(
                        "env {env}={} is not a Kubernetes quantity: ignored",
                        Excerpt::quoted(&raw)
                    )),
                }
            }
        }
        found.into_iter().min_by_key(|f| f.value)
    };
    let cpu = read(
        &["limits.cpu", "cpu_limit"],
        &d.cpu_env,
        d.cpu_divisor_millicores,
        true,
    );
    let memory = read(
        &["limits.memory", "mem_limit", "memory_limit"],
        &d.memory_env,
        d.memory_divisor_bytes,
        false,
    );
    // A zero limit is what the Downward API reports for "no value" with some
    // divisors; it cannot be meant.
    let nonzero = |f: Option<Figure>| f.filter(|f| f.value > 0);
    (nonzero(cpu), nonzero(memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downward_values() {
        assert_eq!(downward_value("2\n", 1000, true), Some(2000));
        assert_eq!(downward_value("250", 1, true), Some(250), "divisor 1m");
        assert_eq!(downward_value("500m", 1000, true), Some(500));
        assert_eq!(downward_value("1.5", 1000, true), Some(1500));
        assert_eq!(
            downward_value("512", 1 << 20, false),
            Some(512 << 20),
            "divisor 1Mi"
        );
        assert_eq!(downward_value("1Gi", 1, false), Some(1 << 30));
        assert_eq!(downward_value("lots", 1, false), None);
        assert_eq!(downward_value("18446744073709551615", 2, false), None);
    }

    #[test]
    fn tightest_prefers_limits_on_ties() {
        let f = |v, source| {
            Some(Figure {
                value: v,
                source,
                detail: String::new(),
            })
        };
        let t = tightest([f(2000, Source::CgroupV2), None, f(2000, Source::Machine)]).unwrap();
        assert_eq!(t.source, Source::CgroupV2);
        let t = tightest([
            f(3000, Source::CgroupV2),
            f(1000, Source::DownwardApi),
            f(2000, Source::Machine),
        ])
        .unwrap();
        assert_eq!((t.value, t.source), (1000, Source::DownwardApi));
        assert_eq!(tightest::<2>([None, None]), None);
    }

    #[test]
    fn env_source() {
        let env = EnvSource::Fixed(vec![("A".into(), "1".into())]);
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("B"), None);
    }
}
