//! Placement domains on the machine the tests run on, with and without the
//! `hwloc` feature, and pinning a thread to each domain.

use respool_core::Dim;
use respool_sys::SysRoot;
#[cfg(target_os = "linux")]
use respool_sys::topology::pin_current_thread;
use respool_sys::topology::{DomainKind, Topology, TopologySource, current_thread_cpus};

#[test]
fn domains_cover_the_allowed_cpus_once() {
    let t = Topology::detect();
    println!("{t:#?}");
    let mut cpus: Vec<usize> = t
        .domains
        .iter()
        .flat_map(|d| d.cpus.iter().copied())
        .collect();
    let n = cpus.len();
    cpus.sort_unstable();
    cpus.dedup();
    assert_eq!(cpus.len(), n, "no CPU is in two domains");
    if cfg!(target_os = "linux") {
        assert_eq!(
            cpus,
            current_thread_cpus().unwrap(),
            "the domains are the allowed CPUs"
        );
    }
    for (i, d) in t.domains.iter().enumerate() {
        assert_eq!(d.id, i);
    }
    match t.source {
        TopologySource::Hwloc => {
            let built_with_hwloc = cfg!(feature = "hwloc");
            assert!(built_with_hwloc, "hwloc domains without the feature");
            assert!(t.domains.iter().all(|d| d.kind == DomainKind::Numa));
            assert!(t.reason.is_none());
        }
        TopologySource::Fallback => {
            assert_eq!(t.domains.len(), 1);
            assert_eq!(t.domains[0].kind, DomainKind::Machine);
            assert!(t.reason.is_some());
        }
    }
    let total = t.total_capacity();
    assert_eq!(total.get(Dim::Cpu), Some(n as u64 * 1000));
}

#[cfg(feature = "hwloc")]
#[test]
fn hwloc_numa_nodes_have_memory() {
    let t = Topology::from_hwloc().expect("hwloc works on this machine");
    assert!(!t.domains.is_empty());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024;
    let sum: u64 = t.domains.iter().filter_map(|d| d.memory_bytes).sum();
    println!("NUMA memory {sum} bytes, MemTotal {total} bytes");
    // hwloc reads the nodes' own meminfo: positive and not above MemTotal
    // by more than rounding.
    assert!(sum > 0 && sum <= total + (1 << 20), "{sum} vs {total}");
}

#[cfg(not(feature = "hwloc"))]
#[test]
fn without_hwloc_the_reason_names_the_feature() {
    let t = Topology::detect();
    assert_eq!(t.source, TopologySource::Fallback);
    assert!(t.reason.unwrap().contains("`hwloc` feature"));
}

#[test]
fn fallback_reads_the_fixture_machine() {
    let dir = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "cgroup",
        "v2_max",
    ]
    .iter()
    .collect::<std::path::PathBuf>();
    let t = Topology::fallback(&SysRoot::at(dir), "test");
    assert_eq!(t.domains[0].cpus, (0..8).collect::<Vec<_>>());
    assert_eq!(t.domains[0].memory_bytes, Some(16 << 30));
    assert_eq!(t.reason.as_deref(), Some("test"));
}

#[cfg(target_os = "linux")]
#[test]
fn pin_to_each_domain() {
    let t = Topology::detect();
    for d in t.domains.iter().filter(|d| !d.cpus.is_empty()) {
        let cpus = d.cpus.clone();
        std::thread::spawn(move || {
            pin_current_thread(&cpus).unwrap();
            assert_eq!(current_thread_cpus().unwrap(), cpus);
        })
        .join()
        .unwrap();
    }
}
