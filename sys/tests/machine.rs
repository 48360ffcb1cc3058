//! Detection on the real machine this test runs on, compared with
//! `std::thread::available_parallelism` and with the raw files, which this
//! test re-reads and parses on its own (plain `str` parsing, not respool's).
//!
//! Run with `--nocapture` to see the comparison.
#![cfg(target_os = "linux")]

use std::path::Path;

use respool_core::Dim;
use respool_sys::SysRoot;
use respool_sys::cgroup::CgroupVersion;
use respool_sys::container::{Headroom, MachineCapacity, Source};
use respool_sys::topology::Topology;

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The raw CPU limit of one group, parsed naively: `None` when unlimited or
/// missing.
fn naive_cpu_limit(dir: &Path, version: CgroupVersion) -> Option<u64> {
    let (quota, period) = match version {
        CgroupVersion::V2 => {
            let s = read(&dir.join("cpu.max"))?;
            let mut it = s.split_whitespace();
            let q = it.next()?;
            let p: u64 = it.next().unwrap_or("100000").parse().ok()?;
            if q == "max" {
                return None;
            }
            (q.parse::<u64>().ok()?, p)
        }
        CgroupVersion::V1 => {
            let q: i64 = read(&dir.join("cpu.cfs_quota_us"))?.parse().ok()?;
            let p: u64 = read(&dir.join("cpu.cfs_period_us"))?.parse().ok()?;
            if q < 0 {
                return None;
            }
            (q.unsigned_abs(), p)
        }
    };
    Some((quota * 1000 / period).max(1))
}

fn naive_memory_limit(dir: &Path, version: CgroupVersion) -> Option<u64> {
    let name = match version {
        CgroupVersion::V2 => "memory.max",
        CgroupVersion::V1 => "memory.limit_in_bytes",
    };
    let s = read(&dir.join(name))?;
    let v: u64 = s.parse().ok()?;
    (v < 1 << 62).then_some(v)
}

#[test]
fn compare_with_std_and_raw_files() {
    let cap = MachineCapacity::detect_host();
    let std_parallelism = std::thread::available_parallelism().map(usize::from);
    println!("===== respool =====\n{}", cap.explain());
    println!("===== std =====\nstd::thread::available_parallelism() = {std_parallelism:?}");
    println!("===== raw files =====");
    println!(
        "/proc/self/cgroup:\n{}",
        read(Path::new("/proc/self/cgroup")).unwrap_or_default()
    );
    let mountinfo = read(Path::new("/proc/self/mountinfo")).unwrap_or_default();
    println!("cgroup mounts in /proc/self/mountinfo:");
    for l in mountinfo.lines().filter(|l| l.contains(" - cgroup")) {
        println!("  {l}");
    }
    let status = read(Path::new("/proc/self/status")).unwrap_or_default();
    let allowed_line = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .unwrap_or("Cpus_allowed_list: ?");
    println!("{allowed_line}");
    let meminfo = read(Path::new("/proc/meminfo")).unwrap_or_default();
    let mem_total: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("MemTotal in /proc/meminfo");
    println!("MemTotal: {mem_total} bytes");
    let mut raw_cpu_min: Option<u64> = None;
    if let Some(dir) = &cap.cgroup.cpu {
        for d in dir.chain() {
            let names: &[&str] = match dir.version {
                CgroupVersion::V2 => &["cpu.max"],
                CgroupVersion::V1 => &["cpu.cfs_quota_us", "cpu.cfs_period_us"],
            };
            for n in names {
                println!("  {}: {:?}", d.join(n).display(), read(&d.join(n)));
            }
            if let Some(v) = naive_cpu_limit(&d, dir.version) {
                raw_cpu_min = Some(raw_cpu_min.map_or(v, |m| m.min(v)));
            }
        }
    }
    let mut raw_mem_min: Option<u64> = None;
    if let Some(dir) = &cap.cgroup.memory {
        for d in dir.chain() {
            let n = match dir.version {
                CgroupVersion::V2 => "memory.max",
                CgroupVersion::V1 => "memory.limit_in_bytes",
            };
            println!("  {}: {:?}", d.join(n).display(), read(&d.join(n)));
            if let Some(v) = naive_memory_limit(&d, dir.version) {
                raw_mem_min = Some(raw_mem_min.map_or(v, |m| m.min(v)));
            }
        }
    }
    let threads_cpus = respool_sys::topology::current_thread_cpus().unwrap();
    println!("sched_getaffinity (this thread): {threads_cpus:?}");
    let d = cap.default_capacity(&Headroom::DEFAULT);
    println!(
        "default capacity: limit {} headroom {} capacity {} workers {}",
        d.limit, d.headroom, d.capacity, d.workers
    );
    println!("topology: {:?}", Topology::detect());

    // The machine figures match the raw files.
    assert_eq!(
        cap.machine.cpus_allowed, threads_cpus,
        "affinity vs Cpus_allowed_list"
    );
    assert_eq!(cap.machine.memory_bytes, Some(mem_total));
    // The CPU figure is exactly min(allowed CPUs, every raw limit) unless an
    // override or the Downward API set it.
    if !matches!(cap.cpu.source, Source::Override | Source::DownwardApi) {
        let allowed = u64::try_from(threads_cpus.len()).unwrap() * 1000;
        let want = raw_cpu_min.map_or(allowed, |c| c.min(allowed));
        assert_eq!(cap.cpu.value, want, "respool's CPU figure vs the raw files");
        assert_eq!(
            cap.cgroup_limits.cpu_millicores.as_ref().map(|f| f.value),
            raw_cpu_min
        );
        // Both round down and take the minimum over ancestors: they agree.
        assert_eq!(
            Some(cap.worker_count()),
            std_parallelism.as_ref().ok().copied()
        );
    }
    if !matches!(
        cap.memory.as_ref().map(|m| m.source),
        Some(Source::Override | Source::DownwardApi)
    ) {
        let want = raw_mem_min.map_or(mem_total, |m| m.min(mem_total));
        assert_eq!(cap.memory.as_ref().map(|m| m.value), Some(want));
    }
    assert_eq!(d.limit.get(Dim::Cpu), Some(cap.cpu.value));
    assert!(d.workers >= 1);
}

#[test]
fn layout_matches_proc_self_cgroup() {
    let layout = respool_sys::cgroup::CgroupLayout::discover(&SysRoot::host());
    let text = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
    for dir in [&layout.cpu, &layout.memory].into_iter().flatten() {
        // The group path respool uses is one of the lines of the file, and
        // the leaf directory exists.
        assert!(
            text.lines()
                .any(|l| l.ends_with(&format!(":{}", dir.group_path))),
            "{} not in {text}",
            dir.group_path
        );
        assert!(dir.leaf().is_dir(), "{}", dir.leaf().display());
        assert!(dir.leaf().starts_with(&dir.mount_point));
    }
}
