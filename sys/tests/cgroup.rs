//! Container limit detection against fixture trees
//! (`tests/fixtures/cgroup/<case>/`: a fake `/proc` and `/sys/fs/cgroup`).
//!
//! Every fixture machine has 8 CPUs (`Cpus_allowed_list: 0-7`) and 16 GiB of
//! `MemTotal`, so a figure below that can only come from a limit.

use std::path::PathBuf;

use respool_core::Dim;
use respool_sys::SysRoot;
use respool_sys::cgroup::{CgroupMode, CgroupVersion};
use respool_sys::container::{
    DetectOptions, DownwardApiConfig, EnvSource, Headroom, MachineCapacity, Overrides, Source,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const MACHINE_MEMORY: u64 = 16 * GIB;

fn root(case: &str) -> SysRoot {
    let dir: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "cgroup",
        case,
    ]
    .iter()
    .collect();
    assert!(dir.is_dir(), "missing fixture {}", dir.display());
    SysRoot::at(dir)
}

fn env(pairs: &[(&str, &str)]) -> EnvSource {
    EnvSource::Fixed(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn detect_with(case: &str, env_pairs: &[(&str, &str)], overrides: Overrides) -> MachineCapacity {
    let options = DetectOptions::at(root(case))
        .with_env(env(env_pairs))
        .with_overrides(overrides);
    let cap = MachineCapacity::detect(&options);
    println!("--- {case}\n{}", cap.explain());
    cap
}

fn detect(case: &str) -> MachineCapacity {
    detect_with(case, &[], Overrides::default())
}

fn memory(cap: &MachineCapacity) -> (u64, Source) {
    let m = cap.memory.as_ref().expect("a memory figure");
    (m.value, m.source)
}

#[test]
fn v2_leaf_limit() {
    let cap = detect("v2_leaf_limit");
    assert_eq!(cap.cgroup.mode, CgroupMode::V2);
    assert_eq!((cap.cpu.value, cap.cpu.source), (1500, Source::CgroupV2));
    assert!(
        cap.cpu.detail.contains("kubepods/pod1/ctr/cpu.max"),
        "{}",
        cap.cpu.detail
    );
    assert_eq!(cap.worker_count(), 1, "1.5 CPUs round down to 1 worker");
    assert_eq!(memory(&cap), (512 * MIB, Source::CgroupV2));
    assert_eq!(cap.memory_usage(), Some(100 * MIB));
    assert_eq!(cap.memory_peak(), Some(200 * MIB));
    assert!(cap.environment.kubernetes, "kubepods in the cgroup path");
    assert_eq!(cap.machine.cpus_allowed, (0..8).collect::<Vec<_>>());
    assert_eq!(cap.machine.memory_bytes, Some(MACHINE_MEMORY));
}

#[test]
fn v2_parent_tighter_than_leaf_golang_81180() {
    // A 2-CPU parent over an unlimited leaf: 2, not the machine's 8.
    let cap = detect("v2_parent_tighter");
    let cpu = cap.cgroup_limits.cpu_millicores.as_ref().unwrap();
    assert_eq!(cpu.value, 2000);
    assert!(
        cpu.file.ends_with("system.slice/app.service/cpu.max"),
        "{}",
        cpu.file.display()
    );
    assert_eq!(cpu.raw, "200000 100000");
    assert_eq!((cap.cpu.value, cap.cpu.source), (2000, Source::CgroupV2));
    assert_eq!(cap.worker_count(), 2);
    // Memory: 1 GiB on the parent beats 2 GiB on the leaf.
    let mem = cap.cgroup_limits.memory_bytes.as_ref().unwrap();
    assert_eq!(mem.value, GIB);
    assert!(mem.file.ends_with("system.slice/app.service/memory.max"));
    assert_eq!(memory(&cap), (GIB, Source::CgroupV2));
}

#[test]
fn v1_quota_and_period() {
    let cap = detect("v1_quota_period");
    assert_eq!(cap.cgroup.mode, CgroupMode::V1);
    let cpu_dir = cap.cgroup.cpu.as_ref().unwrap();
    assert_eq!(cpu_dir.version, CgroupVersion::V1);
    assert!(cpu_dir.leaf().ends_with("cpu,cpuacct/docker/abc"));
    assert_eq!((cap.cpu.value, cap.cpu.source), (1500, Source::CgroupV1));
    assert!(
        cap.cpu
            .detail
            .contains("cpu.cfs_quota_us=150000 cpu.cfs_period_us=100000")
    );
    assert_eq!(cap.worker_count(), 1);
    assert_eq!(memory(&cap), (256 * MIB, Source::CgroupV1));
    assert_eq!(cap.memory_usage(), Some(64 * MIB));
    assert_eq!(cap.memory_peak(), Some(128 * MIB));
    assert!(cap.environment.docker, "/docker/ in the cgroup path");
}

#[test]
fn v1_memory_unlimited_sentinels() {
    // 9223372036854771712 (4 KiB pages) and 9223372036854710272 (64 KiB
    // pages) both mean "no limit": the machine's memory is used.
    let cap = detect("v1_memory_unlimited");
    assert_eq!(cap.cgroup_limits.memory_bytes, None);
    assert_eq!(memory(&cap), (MACHINE_MEMORY, Source::Machine));
    assert_eq!(
        cap.cgroup_limits.cpu_millicores, None,
        "quota -1 everywhere"
    );
    assert_eq!((cap.cpu.value, cap.cpu.source), (8000, Source::Machine));
    assert_eq!(cap.worker_count(), 8);
    assert_eq!(cap.memory_usage(), Some(4096));
}

#[test]
fn v2_max_everywhere() {
    let cap = detect("v2_max");
    assert_eq!(cap.cgroup_limits.cpu_millicores, None);
    assert_eq!(cap.cgroup_limits.memory_bytes, None);
    assert_eq!((cap.cpu.value, cap.cpu.source), (8000, Source::Machine));
    assert_eq!(memory(&cap), (MACHINE_MEMORY, Source::Machine));
    // No `limit file missing` note: the files exist and say `max`.
    assert!(
        !cap.notes.iter().any(|n| n.contains("limit file")),
        "{:?}",
        cap.notes
    );
}

#[test]
fn fractional_cpus() {
    let cap = detect("v2_fractional");
    assert_eq!((cap.cpu.value, cap.cpu.source), (2500, Source::CgroupV2));
    assert_eq!(cap.worker_count(), 2, "2.5 CPUs: floor, as std does");
    let d = cap.default_capacity(&Headroom::NONE);
    assert_eq!(
        d.capacity.get(Dim::Cpu),
        Some(2500),
        "the budget keeps the fraction"
    );
    assert_eq!(d.workers, 2);
    assert!(cap.environment.docker && cap.environment.container);
    assert!(
        cap.environment
            .evidence
            .iter()
            .any(|e| e == "/.dockerenv exists")
    );
}

#[test]
fn missing_files_are_unlimited_not_errors() {
    let cap = detect("missing_files");
    assert_eq!(cap.cgroup.mode, CgroupMode::V2);
    assert!(cap.cgroup.cpu.is_some(), "the group is known");
    assert_eq!(cap.cgroup_limits.cpu_millicores, None);
    assert_eq!(cap.cgroup_limits.memory_bytes, None);
    assert_eq!(cap.memory_usage(), None);
    assert_eq!((cap.cpu.value, cap.cpu.source), (8000, Source::Machine));
    assert_eq!(memory(&cap), (MACHINE_MEMORY, Source::Machine));
    assert!(
        cap.notes.iter().any(|n| n.contains("no cpu limit file")),
        "the reason is recorded: {:?}",
        cap.notes
    );
}

#[test]
fn no_cgroup_file_system() {
    let cap = detect("no_cgroupfs");
    assert_eq!(cap.cgroup.mode, CgroupMode::None);
    assert!(cap.cgroup.cpu.is_none() && cap.cgroup.memory.is_none());
    assert_eq!((cap.cpu.value, cap.cpu.source), (8000, Source::Machine));
    assert!(
        cap.notes
            .iter()
            .any(|n| n.contains("no cgroup file system"))
    );
    // An empty directory: nothing at all, still no panic and sane figures.
    let empty = std::env::temp_dir().join(format!("respool-empty-root-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let cap = MachineCapacity::detect(&DetectOptions::at(SysRoot::at(&empty)).with_env(env(&[])));
    assert_eq!(cap.cpu.source, Source::Machine);
    assert!(cap.cpu.value >= 1000);
    assert!(cap.worker_count() >= 1);
    assert!(
        cap.notes.iter().any(|n| n.contains("cannot read")),
        "{:?}",
        cap.notes
    );
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn hybrid_v1_memory_and_v2_cpu() {
    let cap = detect("hybrid");
    assert_eq!(cap.cgroup.mode, CgroupMode::Hybrid);
    let mem = cap.cgroup.memory.as_ref().unwrap();
    assert_eq!(mem.version, CgroupVersion::V1);
    assert!(mem.leaf().ends_with("memory/process_api/xyz"));
    let cpu = cap.cgroup.cpu.as_ref().unwrap();
    assert_eq!(
        cpu.version,
        CgroupVersion::V2,
        "no v1 cpu hierarchy: the unified one"
    );
    assert!(cpu.leaf().ends_with("unified/process_api/xyz"));
    assert_eq!((cap.cpu.value, cap.cpu.source), (1000, Source::CgroupV2));
    assert_eq!(memory(&cap), (GIB, Source::CgroupV1));
    assert_eq!(cap.memory_usage(), Some(32 * MIB));
    // The name=systemd hierarchy is neither a controller nor a v1 mode.
    assert!(cap.cgroup.unified.is_some());
}

#[test]
fn cgroup_namespace_root() {
    // Inside a cgroup namespace the group is "/": the limits are on the
    // mount point itself.
    let cap = detect("cgroupns_root");
    let dir = cap.cgroup.cpu.as_ref().unwrap();
    assert_eq!(dir.group_path, "/");
    assert_eq!(dir.leaf(), dir.mount_point);
    assert_eq!((cap.cpu.value, cap.cpu.source), (3000, Source::CgroupV2));
    assert_eq!(memory(&cap), (2 * GIB, Source::CgroupV2));
    assert!(
        cap.environment.docker,
        "files bind-mounted from /var/lib/docker/containers"
    );
}

#[test]
fn mount_root_that_is_not_slash() {
    // Docker without a cgroup namespace on v1: the container sees
    // /docker/abc mounted at /sys/fs/cgroup/<controller>.
    let cap = detect("nonroot_mount_root");
    let mem = cap.cgroup.memory.as_ref().unwrap();
    assert_eq!(mem.mount_root, "/docker/abc");
    assert!(mem.leaf().ends_with("sys/fs/cgroup/memory/worker"));
    assert_eq!(mem.chain().len(), 2, "worker, then the mount point");
    // The limit on the mount point (the container) beats the unlimited leaf.
    assert_eq!(memory(&cap), (512 * MIB, Source::CgroupV1));
    assert_eq!(cap.memory_usage(), Some(1234));
    assert_eq!((cap.cpu.value, cap.cpu.source), (500, Source::CgroupV1));
    assert_eq!(cap.worker_count(), 1, "half a CPU still gets one worker");
}

#[test]
fn group_outside_the_mount_root_is_unlimited_with_a_note() {
    let cap = detect("outside_mount_root");
    assert!(cap.cgroup.cpu.is_none());
    assert_eq!((cap.cpu.value, cap.cpu.source), (8000, Source::Machine));
    assert!(
        cap.notes
            .iter()
            .any(|n| n.contains("not below the mount root")),
        "{:?}",
        cap.notes
    );
}

#[test]
fn escaped_mount_point() {
    let cap = detect("escaped_mount");
    let dir = cap.cgroup.cpu.as_ref().unwrap();
    assert!(
        dir.mount_point.ends_with("sys/fs/cgroup v2"),
        "{}",
        dir.mount_point.display()
    );
    assert_eq!((cap.cpu.value, cap.cpu.source), (1000, Source::CgroupV2));
    assert_eq!(memory(&cap), (768 * MIB, Source::CgroupV2));
}

#[test]
fn downward_api_files_and_env() {
    // Files alone: 2 CPUs, 1 GiB.
    let cap = detect("downward_api");
    assert!(
        cap.environment.kubernetes,
        "the service account directory exists"
    );
    assert_eq!((cap.cpu.value, cap.cpu.source), (2000, Source::DownwardApi));
    assert!(cap.cpu.detail.contains("limits.cpu"));
    assert_eq!(memory(&cap), (GIB, Source::DownwardApi));
    // With a tighter environment variable (Kubernetes detected): it wins.
    let cap = detect_with(
        "downward_api",
        &[
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("CPU_LIMIT", "1500m"),
        ],
        Overrides::default(),
    );
    assert_eq!((cap.cpu.value, cap.cpu.source), (1500, Source::DownwardApi));
    assert!(cap.cpu.detail.contains("CPU_LIMIT"));
    assert!(
        cap.environment
            .evidence
            .iter()
            .any(|e| e.contains("KUBERNETES_SERVICE_HOST"))
    );
}

#[test]
fn downward_env_is_ignored_outside_kubernetes() {
    let cap = detect_with(
        "v2_max",
        &[("CPU_LIMIT", "1"), ("MEMORY_LIMIT", "1Gi")],
        Overrides::default(),
    );
    assert!(!cap.environment.kubernetes);
    assert_eq!(cap.downward_cpu, None);
    assert_eq!(cap.downward_memory, None);
    assert_eq!(cap.cpu.source, Source::Machine);
}

#[test]
fn downward_api_divisors() {
    let mut options = DetectOptions::at(root("downward_api_divisors")).with_env(env(&[]));
    options.downward = DownwardApiConfig {
        cpu_divisor_millicores: 1, // divisor: 1m
        memory_divisor_bytes: MIB, // divisor: 1Mi
        ..DownwardApiConfig::default()
    };
    let cap = MachineCapacity::detect(&options);
    assert_eq!((cap.cpu.value, cap.cpu.source), (250, Source::DownwardApi));
    assert_eq!(memory(&cap), (512 * MIB, Source::DownwardApi));
    assert_eq!(cap.worker_count(), 1);
}

#[test]
fn override_wins_over_everything_detected() {
    // The cgroup says 1.5 CPUs and 512 MiB; the overrides say more, and win.
    let cap = detect_with(
        "v2_leaf_limit",
        &[],
        Overrides {
            cpu_millicores: Some(12_000),
            memory_bytes: Some(8 * GIB),
        },
    );
    assert_eq!((cap.cpu.value, cap.cpu.source), (12_000, Source::Override));
    assert_eq!(memory(&cap), (8 * GIB, Source::Override));
    assert_eq!(
        cap.worker_count(),
        12,
        "an override is not clamped to the allowed CPUs"
    );
    // The cgroup figures are still reported.
    assert_eq!(
        cap.cgroup_limits.cpu_millicores.as_ref().unwrap().value,
        1500
    );
    // Environment overrides, used when the options have none.
    let cap = detect_with(
        "v2_leaf_limit",
        &[
            ("RESPOOL_CPU_LIMIT", "0.5"),
            ("RESPOOL_MEMORY_LIMIT", "256Mi"),
        ],
        Overrides::default(),
    );
    assert_eq!((cap.cpu.value, cap.cpu.source), (500, Source::Override));
    assert_eq!(memory(&cap), (256 * MIB, Source::Override));
    // Options beat the environment.
    let cap = detect_with(
        "v2_leaf_limit",
        &[("RESPOOL_CPU_LIMIT", "0.5")],
        Overrides {
            cpu_millicores: Some(3000),
            memory_bytes: None,
        },
    );
    assert_eq!(cap.cpu.value, 3000);
    assert_eq!(memory(&cap), (512 * MIB, Source::CgroupV2));
    // A malformed environment override is ignored with a note.
    let cap = detect_with(
        "v2_leaf_limit",
        &[("RESPOOL_MEMORY_LIMIT", "lots")],
        Overrides::default(),
    );
    assert_eq!(memory(&cap).1, Source::CgroupV2);
    assert!(cap.notes.iter().any(|n| n.contains("RESPOOL_MEMORY_LIMIT")));
}

#[test]
fn malformed_files_never_panic() {
    let cap = detect("malformed");
    assert_eq!(cap.cgroup_limits.cpu_millicores, None);
    assert_eq!(cap.cgroup_limits.memory_bytes, None);
    assert_eq!(cap.cpu.source, Source::Machine);
    let joined = cap.notes.join("\n");
    assert!(
        joined.contains("app/cpu.max:1: unexpected content"),
        "{joined}"
    );
    assert!(
        joined.contains("app/memory.max:1: unexpected content"),
        "{joined}"
    );
    assert!(joined.contains("/proc/self/cgroup:2"), "{joined}");
    assert!(joined.contains("/proc/self/mountinfo:6"), "{joined}");
}

#[test]
fn default_capacity_applies_headroom() {
    let cap = detect("v2_parent_tighter"); // 2 CPUs, 1 GiB
    let d = cap.default_capacity(&Headroom::DEFAULT);
    assert_eq!(d.limit.get(Dim::Cpu), Some(2000));
    assert_eq!(d.limit.get(Dim::Memory), Some(GIB));
    assert_eq!(d.headroom.get(Dim::Cpu), Some(0));
    // 10% of 1 GiB is more than the 64 MiB minimum.
    assert_eq!(d.headroom.get(Dim::Memory), Some(GIB / 10));
    assert_eq!(d.capacity.get(Dim::Memory), Some(GIB - GIB / 10));
    assert_eq!(d.workers, 2);
    // A CPU headroom lowers the workers with the budget; no headroom takes
    // more than half a dimension.
    let h = Headroom {
        cpu_millicores: 1000,
        memory_fraction: respool_core::Ppm::from_percent(90),
        memory_min_bytes: 0,
    };
    let d = cap.default_capacity(&h);
    assert_eq!(d.capacity.get(Dim::Cpu), Some(1000));
    assert_eq!(d.workers, 1);
    assert_eq!(d.headroom.get(Dim::Memory), Some(GIB / 2));
    // Small container: the 64 MiB minimum applies.
    let cap = detect("v1_quota_period"); // 256 MiB
    let d = cap.default_capacity(&Headroom::DEFAULT);
    assert_eq!(d.headroom.get(Dim::Memory), Some(64 * MIB));
}
