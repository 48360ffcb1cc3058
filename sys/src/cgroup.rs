//! Control groups: where this process's cgroups are, and the limits they set.
//!
//! # Finding the groups
//!
//! `/proc/self/cgroup` names, for each hierarchy, the group the process is in
//! (`4:memory:/kubepods/pod1/ctr` for cgroup v1, `0::/user.slice/x.scope` for
//! cgroup v2), as a path relative to the root of that hierarchy **as seen from
//! the process's cgroup namespace** (plain `/` inside a container with its own
//! namespace). `/proc/self/mountinfo` says where each hierarchy is mounted
//! (field 5, with `\040`-style octal escapes for odd characters) and which
//! part of the hierarchy the mount shows (field 4, the *mount root*: not `/`
//! when a container sees a bind-mounted subtree). The group's directory is
//! the mount point joined with the group path minus the mount root. A group
//! path that is not below the mount root (or that climbs out with `..`) has no
//! visible directory; it is reported in [`CgroupLayout::notes`] and treated as
//! unlimited.
//!
//! For each controller (`cpu`, `cpuacct`, `memory`) a cgroup v1 hierarchy
//! that has the controller attached wins; otherwise the cgroup v2 group is
//! used. This handles pure v1, pure v2 and the *hybrid* layout (v1
//! controllers plus a controller-less v2 hierarchy at
//! `/sys/fs/cgroup/unified`).
//!
//! # The tightest limit over all ancestors
//!
//! A limit set on any ancestor group applies to everything below it, so the
//! limit of a process is the **minimum over its group and every ancestor up to
//! the mount root** (the highest group visible). Reading only the leaf is the
//! bug of Go's runtime (golang/go #81180: a 2-CPU parent over an unlimited
//! leaf gave 5 threads); Rust's `std::thread::available_parallelism` takes the
//! minimum, and so does respool, for memory as well as CPU.
//!
//! | controller | cgroup v2 file (per group) | cgroup v1 file (per group) | unlimited |
//! |------------|----------------------------|----------------------------|-----------|
//! | CPU        | `cpu.max`: `"$QUOTA $PERIOD"` | `cpu.cfs_quota_us`, `cpu.cfs_period_us` | `max`; `-1` |
//! | memory     | `memory.max`               | `memory.limit_in_bytes`    | `max`; any value from 2^62 up |
//!
//! A CPU quota becomes millicores as `quota * 1000 / period`, rounded down (a
//! quota of 250000 per 100000 is 2500 millicores: fractional CPUs are exact
//! to the millicore). cgroup v1 writes "no memory limit" as `i64::MAX` rounded
//! down to the page size (9223372036854771712 with 4 KiB pages,
//! 9223372036854710272 with 64 KiB pages); every value from 2^62 (4 EiB) up is
//! treated as unlimited, which covers all page sizes.
//!
//! Missing files are not errors: the root group of cgroup v2 has no
//! `cpu.max`, a controller may not be enabled, `memory.peak` needs Linux
//! 5.19. A missing controller means "no limit found", recorded in the notes.

use std::path::{Path, PathBuf};

use crate::SysError;
use crate::SysRoot;
use crate::parse::{self, ProcFile, fields, parse_i64, parse_u64};
use crate::procfs::{self, KeyParser, Psi, PsiParser};

/// Values from this one up (2^62 = 4 EiB) mean "no memory limit".
pub(crate) const UNLIMITED_FROM: u64 = 1 << 62;

/// A cgroup hierarchy version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// cgroup v1: one hierarchy per controller (or group of controllers).
    V1,
    /// cgroup v2: the unified hierarchy.
    V2,
}

/// Which cgroup hierarchies are mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CgroupMode {
    /// No cgroup file system is visible (or `/proc` is not mounted).
    None,
    /// Only cgroup v1 hierarchies.
    V1,
    /// Only the unified cgroup v2 hierarchy.
    V2,
    /// cgroup v1 controllers plus a cgroup v2 hierarchy (systemd's "hybrid").
    Hybrid,
}

/// The directory of one controller's group for this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerDir {
    /// The controller (`"cpu"`, `"cpuacct"`, `"memory"`, or `"unified"` for
    /// the cgroup v2 group itself).
    pub controller: &'static str,
    /// The hierarchy version.
    pub version: CgroupVersion,
    /// Where the hierarchy is mounted (unescaped, resolved under the
    /// [`SysRoot`]).
    pub mount_point: PathBuf,
    /// The part of the hierarchy the mount shows (field 4 of mountinfo).
    pub mount_root: String,
    /// The group path from `/proc/self/cgroup`.
    pub group_path: String,
    /// Components of the group below the mount point.
    components: Vec<String>,
}

impl ControllerDir {
    /// The group's own directory.
    #[must_use]
    pub fn leaf(&self) -> PathBuf {
        let mut p = self.mount_point.clone();
        p.extend(&self.components);
        p
    }

    /// The group's directory and every ancestor up to the mount point, leaf
    /// first.
    #[must_use]
    pub fn chain(&self) -> Vec<PathBuf> {
        (0..=self.components.len())
            .rev()
            .map(|n| {
                let mut p = self.mount_point.clone();
                p.extend(self.components.iter().take(n));
                p
            })
            .collect()
    }
}

/// Where this process's cgroups are.
///
/// # Examples
///
/// ```
/// use respool_sys::SysRoot;
/// use respool_sys::cgroup::CgroupLayout;
/// let layout = CgroupLayout::discover(&SysRoot::host());
/// if let Some(memory) = &layout.memory {
///     println!("memory group: {}", memory.leaf().display());
/// }
/// for note in &layout.notes {
///     println!("note: {note}");
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLayout {
    /// Which hierarchies are mounted.
    pub mode: CgroupMode,
    /// The group of the `cpu` controller (CPU quota).
    pub cpu: Option<ControllerDir>,
    /// The group of the `cpuacct` controller (cgroup v1 CPU usage; on v2 the
    /// same as `cpu`).
    pub cpuacct: Option<ControllerDir>,
    /// The group of the `memory` controller.
    pub memory: Option<ControllerDir>,
    /// The cgroup v2 group, also in hybrid mode (its `*.pressure` files).
    pub unified: Option<ControllerDir>,
    /// Why something was not found, for explanations (never fatal).
    pub notes: Vec<String>,
}

/// One line of `/proc/self/cgroup`.
struct Membership {
    hierarchy: String,
    controllers: Vec<String>,
    path: String,
}

/// One cgroup mount from `/proc/self/mountinfo`.
struct Mount {
    root: String,
    mount_point: String,
    version: CgroupVersion,
    options: Vec<String>,
}

/// Parses one mountinfo line; `None` when it is not a cgroup mount.
fn parse_mount(line: &str) -> Option<Result<Mount, &'static str>> {
    let f: Vec<&str> = line.split(' ').collect();
    let sep = f.iter().position(|x| *x == "-")?;
    let fstype = *f.get(sep.checked_add(1)?)?;
    let version = match fstype {
        "cgroup" => CgroupVersion::V1,
        "cgroup2" => CgroupVersion::V2,
        _ => return None,
    };
    if sep < 6 {
        return Some(Err("at least 6 fields before the ` - ` separator"));
    }
    let (Some(root), Some(mount_point)) = (f.get(3), f.get(4)) else {
        return Some(Err("a mount root and a mount point"));
    };
    let options = f
        .get(sep.saturating_add(3))
        .map(|o| o.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    Some(Ok(Mount {
        root: parse::unescape_mount_field(root),
        mount_point: parse::unescape_mount_field(mount_point),
        version,
        options,
    }))
}

/// The components of `group` below `mount_root`, or `None` when the group is
/// not visible through this mount.
fn relative_components(group: &str, mount_root: &str) -> Option<Vec<String>> {
    let rel = if mount_root == "/" {
        group
    } else if group == mount_root {
        ""
    } else {
        let rest = group.strip_prefix(mount_root)?;
        rest.strip_prefix('/')?
    };
    let parts: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect();
    if parts.iter().any(|c| c == "..") {
        return None;
    }
    Some(parts)
}

impl CgroupLayout {
    /// Finds the groups of this process under `root` (`/proc/self/cgroup`,
    /// `/proc/self/mountinfo`). Never fails: what cannot be found is `None`,
    /// with the reason in [`CgroupLayout::notes`].
    #[must_use]
    pub fn discover(root: &SysRoot) -> CgroupLayout {
        let proc_self = root.proc().join("self");
        let cgroup = parse::read_to_string(&proc_self.join("cgroup"));
        let mountinfo = parse::read_to_string(&proc_self.join("mountinfo"));
        match (cgroup, mountinfo) {
            (Ok(c), Ok(m)) => CgroupLayout::from_texts(root, &c, &m),
            (c, m) => {
                let mut layout = CgroupLayout::from_texts(root, "", "");
                for e in [c.err(), m.err()].into_iter().flatten() {
                    layout
                        .notes
                        .push(format!("{e}: no cgroup limits are known"));
                }
                layout
            }
        }
    }

    /// Builds the layout from the text of `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`.
    fn from_texts(root: &SysRoot, cgroup: &str, mountinfo: &str) -> CgroupLayout {
        let mut notes = Vec::new();
        let mut members = Vec::new();
        for (i, line) in cgroup.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut it = line.splitn(3, ':');
            match (it.next(), it.next(), it.next()) {
                (Some(h), Some(c), Some(p)) => members.push(Membership {
                    hierarchy: h.to_owned(),
                    controllers: c
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    path: p.to_owned(),
                }),
                _ => notes.push(format!(
                    "/proc/self/cgroup:{}: expected `hierarchy:controllers:path`, skipped",
                    i + 1
                )),
            }
        }
        let mut mounts = Vec::new();
        for (i, line) in mountinfo.lines().enumerate() {
            match parse_mount(line) {
                None => {}
                Some(Ok(m)) => mounts.push(m),
                Some(Err(what)) => notes.push(format!(
                    "/proc/self/mountinfo:{}: expected {what}, skipped",
                    i + 1
                )),
            }
        }
        let has_v1 = mounts.iter().any(|m| {
            m.version == CgroupVersion::V1 && !m.options.iter().any(|o| o.starts_with("name="))
        });
        let has_v2 = mounts.iter().any(|m| m.version == CgroupVersion::V2);
        let mode = match (has_v1, has_v2) {
            (false, false) => CgroupMode::None,
            (true, false) => CgroupMode::V1,
            (false, true) => CgroupMode::V2,
            (true, true) => CgroupMode::Hybrid,
        };

        let mut find =
            |controller: &'static str, version: CgroupVersion| -> Option<ControllerDir> {
                let member = members.iter().find(|m| match version {
                    CgroupVersion::V1 => m.controllers.iter().any(|c| c == controller),
                    CgroupVersion::V2 => m.hierarchy == "0" && m.controllers.is_empty(),
                })?;
                let candidates: Vec<&Mount> = mounts
                    .iter()
                    .filter(|m| {
                        m.version == version
                            && (version == CgroupVersion::V2
                                || m.options.iter().any(|o| o == controller))
                    })
                    .collect();
                if candidates.is_empty() {
                    return None;
                }
                for m in &candidates {
                    if let Some(components) = relative_components(&member.path, &m.root) {
                        return Some(ControllerDir {
                            controller,
                            version,
                            mount_point: root.resolve(&m.mount_point),
                            mount_root: m.root.clone(),
                            group_path: member.path.clone(),
                            components,
                        });
                    }
                }
                notes.push(format!(
                "{controller} ({version:?}): group `{}` is not below the mount root of any of its \
                 mounts ({}): treated as unlimited",
                member.path,
                candidates
                    .iter()
                    .map(|m| format!("`{}` at {}", m.root, m.mount_point))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
                None
            };
        let unified = find("unified", CgroupVersion::V2);
        let pick = |find: &mut dyn FnMut(&'static str, CgroupVersion) -> Option<ControllerDir>,
                    controller: &'static str| {
            find(controller, CgroupVersion::V1)
                .or_else(|| unified.clone().map(|u| ControllerDir { controller, ..u }))
        };
        let cpu = pick(&mut find, "cpu");
        let cpuacct = pick(&mut find, "cpuacct");
        let memory = pick(&mut find, "memory");
        for (name, dir) in [("cpu", &cpu), ("memory", &memory)] {
            if dir.is_none() && mode != CgroupMode::None {
                notes.push(format!(
                    "no {name} controller found for this process: no {name} limit"
                ));
            }
        }
        if mode == CgroupMode::None && notes.is_empty() {
            notes.push("no cgroup file system is mounted: no container limits".to_owned());
        }
        CgroupLayout {
            mode,
            cpu,
            cpuacct,
            memory,
            unified,
            notes,
        }
    }

    /// Reads the limits and the memory usage of the groups (one-shot, for
    /// detection; the monitor re-reads them without allocating through its
    /// own readers). Never fails: unreadable or malformed files are skipped
    /// and described in [`CgroupLimits::notes`].
    #[must_use]
    pub fn read_limits(&self) -> CgroupLimits {
        let mut out = CgroupLimits::default();
        if let Some(dir) = &self.cpu {
            out.cpu_millicores = tightest(dir, &mut out.notes, |d, notes| match dir.version {
                CgroupVersion::V2 => {
                    let file = d.join("cpu.max");
                    let raw = read_optional(&file, notes)?;
                    Some(match parse_cpu_max(raw.as_bytes()) {
                        Ok(v) => Some((v, file, raw)),
                        Err(what) => {
                            notes.push(SysError::parse(&file, 1, what).to_string());
                            None
                        }
                    })
                }
                CgroupVersion::V1 => {
                    let qf = d.join("cpu.cfs_quota_us");
                    let pf = d.join("cpu.cfs_period_us");
                    let quota = read_optional(&qf, notes)?;
                    let period = read_optional(&pf, notes).unwrap_or_default();
                    Some(match parse_v1_quota(quota.as_bytes(), period.as_bytes()) {
                        Ok(v) => Some((
                            v,
                            qf,
                            format!("cpu.cfs_quota_us={quota} cpu.cfs_period_us={period}"),
                        )),
                        Err(what) => {
                            notes.push(SysError::parse(&qf, 1, what).to_string());
                            None
                        }
                    })
                }
            });
        }
        if let Some(dir) = &self.memory {
            let name = match dir.version {
                CgroupVersion::V2 => "memory.max",
                CgroupVersion::V1 => "memory.limit_in_bytes",
            };
            out.memory_bytes = tightest(dir, &mut out.notes, |d, notes| {
                let file = d.join(name);
                let raw = read_optional(&file, notes)?;
                Some(match parse_memory_limit(raw.as_bytes()) {
                    Ok(v) => Some((v, file, raw)),
                    Err(what) => {
                        notes.push(SysError::parse(&file, 1, what).to_string());
                        None
                    }
                })
            });
            let (current, peak) = match dir.version {
                CgroupVersion::V2 => ("memory.current", "memory.peak"),
                CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.max_usage_in_bytes"),
            };
            let leaf = dir.leaf();
            let mut quiet = Vec::new();
            out.memory_usage = read_optional(&leaf.join(current), &mut quiet)
                .and_then(|s| parse_u64(s.as_bytes()));
            out.memory_peak =
                read_optional(&leaf.join(peak), &mut quiet).and_then(|s| parse_u64(s.as_bytes()));
        }
        out
    }
}

/// A limit found in a cgroup file, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupFinding {
    /// The limit: millicores for CPU, bytes for memory.
    pub value: u64,
    /// The hierarchy version it was read from.
    pub version: CgroupVersion,
    /// The file that holds the tightest limit.
    pub file: PathBuf,
    /// What the file says, trimmed.
    pub raw: String,
}

/// Limits and usage read from the cgroups of this process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// The tightest CPU limit over the group and its ancestors, in
    /// millicores; `None` when no group sets one.
    pub cpu_millicores: Option<CgroupFinding>,
    /// The tightest memory limit over the group and its ancestors, in bytes;
    /// `None` when no group sets one.
    pub memory_bytes: Option<CgroupFinding>,
    /// Memory charged to the group now (`memory.current`,
    /// `memory.usage_in_bytes`).
    pub memory_usage: Option<u64>,
    /// The most memory ever charged to the group (`memory.peak`, Linux 5.19+;
    /// `memory.max_usage_in_bytes`).
    pub memory_peak: Option<u64>,
    /// What was missing or malformed.
    pub notes: Vec<String>,
}

/// Reads a file that may legitimately be missing: `None` when it is missing
/// (silently) or unreadable (with a note).
fn read_optional(path: &Path, notes: &mut Vec<String>) -> Option<String> {
    match parse::read_to_string(path) {
        Ok(s) => Some(s.trim().to_owned()),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    }
}

/// What reading one limit file gave: the limit (`None`: unlimited), the
/// file, and its content.
type Found = (Option<u64>, PathBuf, String);

/// The minimum over the chain of `dir` of what `read` finds. `read` returns
/// `None` when the file is missing, `Some(None)` when it is there but
/// unusable (already noted), and `Some(Some(found))` otherwise.
fn tightest(
    dir: &ControllerDir,
    notes: &mut Vec<String>,
    mut read: impl FnMut(&Path, &mut Vec<String>) -> Option<Option<Found>>,
) -> Option<CgroupFinding> {
    let mut best: Option<CgroupFinding> = None;
    let mut any_file = false;
    for d in dir.chain() {
        let Some(found) = read(&d, notes) else {
            continue;
        };
        any_file = true;
        let Some((Some(value), file, raw)) = found else {
            continue;
        };
        if best.as_ref().is_none_or(|b| value < b.value) {
            best = Some(CgroupFinding {
                value,
                version: dir.version,
                file,
                raw,
            });
        }
    }
    if !any_file {
        notes.push(format!(
            "no {} limit file in {} or its ancestors: the controller is not enabled there",
            dir.controller,
            dir.leaf().display()
        ));
    }
    best
}

/// CPU quota in microseconds per period to millicores, rounded down but at
/// least 1 for a positive quota. `None` for a zero period.
#[must_use]
pub(crate) fn quota_to_millicores(quota_us: u64, period_us: u64) -> Option<u64> {
    if period_us == 0 {
        return None;
    }
    let m = u128::from(quota_us).saturating_mul(1000) / u128::from(period_us);
    let m = u64::try_from(m).unwrap_or(u64::MAX);
    Some(if quota_us > 0 { m.max(1) } else { 0 })
}

/// Parses cgroup v2 `cpu.max` (`"max 100000"`, `"250000 100000"`, or a
/// quota alone, with the default period of 100000 µs) into millicores;
/// `Ok(None)` for unlimited.
///
/// # Errors
///
/// What was expected, when the content is malformed or the quota is zero.
pub(crate) fn parse_cpu_max(v: &[u8]) -> Result<Option<u64>, &'static str> {
    let mut f = fields(v);
    let quota = f.next().ok_or("`max` or a quota in microseconds")?;
    let period = match f.next() {
        Some(p) => parse_u64(p).ok_or("a period in microseconds")?,
        None => 100_000,
    };
    if quota == b"max" {
        return Ok(None);
    }
    let quota = parse_u64(quota).ok_or("`max` or a quota in microseconds")?;
    if quota == 0 || period == 0 {
        return Err("a positive quota and period");
    }
    Ok(quota_to_millicores(quota, period))
}

/// Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` into
/// millicores; `Ok(None)` for unlimited (`-1`, or any negative quota).
///
/// # Errors
///
/// What was expected, when a value is malformed or zero.
pub(crate) fn parse_v1_quota(quota: &[u8], period: &[u8]) -> Result<Option<u64>, &'static str> {
    let quota = parse_i64(parse::trim(quota)).ok_or("a quota in microseconds or -1")?;
    if quota < 0 {
        return Ok(None);
    }
    let period = parse_u64(parse::trim(period)).ok_or("a period in microseconds")?;
    if quota == 0 || period == 0 {
        return Err("a positive quota and period");
    }
    Ok(quota_to_millicores(quota.unsigned_abs(), period))
}

/// Parses a memory limit (`memory.max`, `memory.limit_in_bytes`) into bytes;
/// `Ok(None)` for unlimited: `max`, a negative value, or any value from
/// [`UNLIMITED_FROM`] up.
///
/// # Errors
///
/// What was expected, when the content is not a number.
pub(crate) fn parse_memory_limit(v: &[u8]) -> Result<Option<u64>, &'static str> {
    let v = parse::trim(v);
    if v == b"max" {
        return Ok(None);
    }
    let n = parse_i64(v)
        .map(|n| if n < 0 { u64::MAX } else { n.unsigned_abs() })
        .or_else(|| parse_u64(v))
        .ok_or("`max` or a number of bytes")?;
    Ok((n < UNLIMITED_FROM).then_some(n))
}

/// Container usage figures, read by the monitor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupUsageRaw {
    pub(crate) memory_current: Option<u64>,
    pub(crate) memory_peak: Option<u64>,
    pub(crate) memory_inactive_file: Option<u64>,
    pub(crate) cpu_usage_ns: Option<u64>,
    pub(crate) memory_pressure: Option<Psi>,
}

/// Open readers for the cgroup files the monitor samples, resolved once from
/// a [`CgroupLayout`].
#[derive(Debug)]
pub(crate) struct CgroupFiles {
    memory_version: Option<CgroupVersion>,
    memory_current: Option<ProcFile>,
    memory_peak: Option<ProcFile>,
    memory_stat: Option<ProcFile>,
    memory_limits: Vec<ProcFile>,
    cpu_version: Option<CgroupVersion>,
    /// Per group: `cpu.max`, or `cpu.cfs_quota_us` and `cpu.cfs_period_us`.
    cpu_limits: Vec<(ProcFile, Option<ProcFile>)>,
    /// `cpu.stat` (v2, microseconds) or `cpuacct.usage` (v1, nanoseconds).
    cpu_usage: Option<(ProcFile, CgroupVersion)>,
    memory_pressure: Option<ProcFile>,
    peak_missing: bool,
    pressure_missing: bool,
}

impl CgroupFiles {
    /// Readers for `layout`; `None` when no controller was found.
    pub(crate) fn new(layout: &CgroupLayout) -> Option<CgroupFiles> {
        if layout.cpu.is_none() && layout.memory.is_none() {
            return None;
        }
        let mem = layout.memory.as_ref();
        let v1 = |d: &ControllerDir| d.version == CgroupVersion::V1;
        let memory_current = mem.map(|d| {
            ProcFile::new(d.leaf().join(if v1(d) {
                "memory.usage_in_bytes"
            } else {
                "memory.current"
            }))
        });
        let memory_peak = mem.map(|d| {
            ProcFile::new(d.leaf().join(if v1(d) {
                "memory.max_usage_in_bytes"
            } else {
                "memory.peak"
            }))
        });
        let memory_stat = mem.map(|d| ProcFile::new(d.leaf().join("memory.stat")));
        let memory_limits = mem
            .map(|d| {
                let name = if v1(d) {
                    "memory.limit_in_bytes"
                } else {
                    "memory.max"
                };
                d.chain()
                    .into_iter()
                    .map(|p| ProcFile::new(p.join(name)))
                    .collect()
            })
            .unwrap_or_default();
        let cpu_limits = layout
            .cpu
            .as_ref()
            .map(|d| {
                d.chain()
                    .into_iter()
                    .map(|p| {
                        if v1(d) {
                            (
                                ProcFile::new(p.join("cpu.cfs_quota_us")),
                                Some(ProcFile::new(p.join("cpu.cfs_period_us"))),
                            )
                        } else {
                            (ProcFile::new(p.join("cpu.max")), None)
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cpu_usage = layout.cpuacct.as_ref().map(|d| {
            if v1(d) {
                (
                    ProcFile::new(d.leaf().join("cpuacct.usage")),
                    CgroupVersion::V1,
                )
            } else {
                (ProcFile::new(d.leaf().join("cpu.stat")), CgroupVersion::V2)
            }
        });
        let memory_pressure = layout
            .unified
            .as_ref()
            .map(|d| ProcFile::new(d.leaf().join("memory.pressure")));
        Some(CgroupFiles {
            memory_version: mem.map(|d| d.version),
            memory_current,
            memory_peak,
            memory_stat,
            memory_limits,
            cpu_version: layout.cpu.as_ref().map(|d| d.version),
            cpu_limits,
            cpu_usage,
            memory_pressure,
            peak_missing: false,
            pressure_missing: false,
        })
    }

    /// Reads usage figures. Optional files (`memory.peak`, `memory.pressure`)
    /// that are missing are remembered as missing and not opened again.
    pub(crate) fn read_usage(&mut self, buf: &mut [u8]) -> Result<CgroupUsageRaw, SysError> {
        let mut out = CgroupUsageRaw::default();
        if let Some(f) = &mut self.memory_current {
            out.memory_current =
                Some(f.read_first_line(buf, |l| parse_u64(l).ok_or("a number of bytes"))?);
        }
        if !self.peak_missing {
            if let Some(f) = &mut self.memory_peak {
                match f.read_first_line(buf, |l| parse_u64(l).ok_or("a number of bytes")) {
                    Ok(v) => out.memory_peak = Some(v),
                    Err(e) if e.is_not_found() => self.peak_missing = true,
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(f) = &mut self.memory_stat {
            let key: &'static [u8] = match self.memory_version {
                Some(CgroupVersion::V1) => b"total_inactive_file",
                _ => b"inactive_file",
            };
            match procfs::run(f, buf, KeyParser::new(key)) {
                Ok(v) => out.memory_inactive_file = Some(v),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        if let Some((f, version)) = &mut self.cpu_usage {
            out.cpu_usage_ns = match version {
                CgroupVersion::V1 => {
                    Some(f.read_first_line(buf, |l| parse_u64(l).ok_or("nanoseconds"))?)
                }
                CgroupVersion::V2 => match procfs::run(f, buf, KeyParser::new(b"usage_usec")) {
                    Ok(us) => Some(us.saturating_mul(1000)),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e),
                },
            };
        }
        if !self.pressure_missing {
            if let Some(f) = &mut self.memory_pressure {
                match procfs::run(f, buf, PsiParser::default()) {
                    Ok(p) => out.memory_pressure = Some(p),
                    Err(e) if e.is_not_found() => self.pressure_missing = true,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Re-reads the tightest CPU (millicores) and memory (bytes) limits over
    /// the chain of groups. Missing files count as unlimited.
    pub(crate) fn read_limits(
        &mut self,
        buf: &mut [u8],
    ) -> Result<(Option<u64>, Option<u64>), SysError> {
        let mut cpu: Option<u64> = None;
        for (quota, period) in &mut self.cpu_limits {
            let v = match (self.cpu_version, period) {
                (Some(CgroupVersion::V1), Some(period)) => {
                    let q = match quota.read_first_line(buf, |l| {
                        parse_i64(l).ok_or("a quota in microseconds or -1")
                    }) {
                        Ok(q) => q,
                        Err(e) if e.is_not_found() => continue,
                        Err(e) => return Err(e),
                    };
                    if q < 0 {
                        None
                    } else {
                        let p = period.read_first_line(buf, |l| parse_u64(l).ok_or("a period"))?;
                        quota_to_millicores(q.unsigned_abs(), p)
                    }
                }
                _ => match quota.read_first_line(buf, parse_cpu_max) {
                    Ok(v) => v,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                },
            };
            if let Some(v) = v {
                cpu = Some(cpu.map_or(v, |c| c.min(v)));
            }
        }
        let mut memory: Option<u64> = None;
        for f in &mut self.memory_limits {
            match f.read_first_line(buf, parse_memory_limit) {
                Ok(Some(v)) => memory = Some(memory.map_or(v, |m| m.min(v))),
                Ok(None) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok((cpu, memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (&'static [u8], Result<Option<u64>, &'static str>);

    #[test]
    fn cpu_max_table() {
        let table: [Case; 9] = [
            (b"max 100000", Ok(None)),
            (b"max", Ok(None)),
            (b"200000 100000\n", Ok(Some(2000))),
            (b"250000 100000", Ok(Some(2500))),
            (b"50000 100000", Ok(Some(500))),
            (b"1 1000000", Ok(Some(1))), // 0.001 millicores, at least 1
            (b"150000", Ok(Some(1500))), // default period
            (b"0 100000", Err("a positive quota and period")),
            (b"lots 100000", Err("`max` or a quota in microseconds")),
        ];
        for (v, want) in table {
            assert_eq!(parse_cpu_max(v), want, "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn v1_quota_table() {
        assert_eq!(parse_v1_quota(b"-1", b"100000"), Ok(None));
        assert_eq!(parse_v1_quota(b"-1\n", b"junk"), Ok(None), "period unused");
        assert_eq!(parse_v1_quota(b"150000\n", b"100000\n"), Ok(Some(1500)));
        assert_eq!(parse_v1_quota(b"50000", b"25000"), Ok(Some(2000)));
        assert_eq!(
            parse_v1_quota(b"0", b"100000"),
            Err("a positive quota and period")
        );
        assert_eq!(
            parse_v1_quota(b"x", b"100000"),
            Err("a quota in microseconds or -1")
        );
    }

    #[test]
    fn memory_limit_table() {
        let table: [Case; 8] = [
            (b"max\n", Ok(None)),
            (b"9223372036854771712", Ok(None)), // v1, 4 KiB pages
            (b"9223372036854710272", Ok(None)), // v1, 64 KiB pages
            (b"-1", Ok(None)),
            (b"4611686018427387904", Ok(None)), // 2^62
            (b"4611686018427387903", Ok(Some((1 << 62) - 1))),
            (b"1073741824", Ok(Some(1 << 30))),
            (b"1G", Err("`max` or a number of bytes")),
        ];
        for (v, want) in table {
            assert_eq!(
                parse_memory_limit(v),
                want,
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        assert_eq!(
            parse_memory_limit(b"18446744073709551615"),
            Ok(None),
            "u64::MAX"
        );
    }

    #[test]
    fn relative_paths() {
        let c = |g, r| relative_components(g, r);
        assert_eq!(c("/a/b", "/"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(c("/", "/"), Some(vec![]));
        assert_eq!(c("/docker/x", "/docker/x"), Some(vec![]));
        assert_eq!(c("/docker/x/w", "/docker/x"), Some(vec!["w".into()]));
        assert_eq!(
            c("/docker/xy", "/docker/x"),
            None,
            "prefix of a name is not a parent"
        );
        assert_eq!(c("/other", "/docker/x"), None);
        assert_eq!(c("/../escaped", "/"), None);
    }

    #[test]
    fn mountinfo_lines() {
        let m = parse_mount(
            r"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw",
        )
        .unwrap()
        .unwrap();
        assert_eq!((m.version, m.root.as_str()), (CgroupVersion::V2, "/"));
        let m = parse_mount(
            r"32 31 0:29 /docker/abc /sys/fs/cgroup/cpu\040x rw - cgroup cgroup rw,cpu,cpuacct",
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.mount_point, "/sys/fs/cgroup/cpu x");
        assert_eq!(m.root, "/docker/abc");
        assert!(m.options.iter().any(|o| o == "cpuacct"));
        assert!(parse_mount("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw").is_none());
        assert_eq!(
            parse_mount("1 - cgroup2 cgroup2 rw").map(|r| r.err()),
            Some(Some("at least 6 fields before the ` - ` separator"))
        );
    }
}
