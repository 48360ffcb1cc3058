//! GPUs on the machine the tests run on. On a machine without an NVIDIA
//! driver (with or without the `nvml` feature) the inventory is empty, the
//! GPU capacity is zero, and the reason says why; on a GPU machine every
//! device the driver counts is listed with its memory.

use respool_core::Dim;
use respool_sys::gpu::GpuInventory;
use respool_sys::topology::Topology;

#[test]
fn inventory_is_consistent_and_explains_an_empty_one() {
    let inv = GpuInventory::detect();
    println!("{inv:#?}");
    let cap = inv.capacity();
    assert_eq!(cap.get(Dim::Gpu), Some(inv.devices.len() as u64));
    let memory: u64 = inv.devices.iter().map(|d| d.memory_total_bytes).sum();
    assert_eq!(cap.get(Dim::GpuMemory), Some(memory));
    if inv.devices.is_empty() {
        let reason = inv.reason.as_deref().expect("an empty inventory says why");
        if cfg!(feature = "nvml") {
            assert_eq!(inv.backend, "nvml");
            assert!(!reason.contains("without the `nvml` feature"), "{reason}");
        } else {
            assert!(reason.contains("without the `nvml` feature"), "{reason}");
        }
    } else {
        assert!(inv.devices.iter().all(|d| d.memory_total_bytes > 0));
    }
    // GPU domains follow the CPU domains.
    let t = Topology::detect().with_gpus(&inv);
    let gpu_domains: Vec<_> = t
        .domains_of(respool_sys::topology::DomainKind::Gpu)
        .collect();
    assert_eq!(gpu_domains.len(), inv.devices.len());
    if inv.devices.is_empty() {
        assert!(t.reason.as_deref().unwrap_or("").contains("no GPU domains"));
    }
}

/// The no-driver path of NVML itself (run with `--features nvml` on a
/// machine without an NVIDIA driver; on a GPU machine it checks the driver
/// answers instead).
#[cfg(feature = "nvml")]
#[test]
fn nvml_without_a_driver_fails_cleanly() {
    use respool_sys::gpu::{GpuBackend, GpuError, NvmlBackend};
    match NvmlBackend::new() {
        Err(e) => {
            println!("NvmlBackend::new(): {e}");
            assert!(matches!(e, GpuError::DriverUnavailable { .. }));
            assert!(
                e.to_string()
                    .starts_with("NVIDIA driver not available (NVML): ")
            );
            let inv = GpuInventory::detect();
            assert!(inv.devices.is_empty());
            assert_eq!(inv.capacity().get(Dim::Gpu), Some(0));
            assert_eq!(inv.reason, Some(e.to_string()));
        }
        Ok(b) => {
            let n = b.device_count().unwrap();
            println!("NVML driver {:?}: {n} devices", b.driver_version());
            let inv = GpuInventory::from_backend(&b);
            assert_eq!(inv.devices.len() as u32, n, "skipped: {:?}", inv.notes);
            for d in &inv.devices {
                println!(
                    "GPU {}: {} ({:?}), {} MiB, bus {:?}, near CPUs {:?}",
                    d.index,
                    d.name,
                    d.uuid,
                    d.memory_total_bytes >> 20,
                    d.pci_bus_id,
                    d.cpus
                );
            }
            for u in inv.usage(&b) {
                let u = u.unwrap();
                println!(
                    "GPU {}: utilisation {}, memory used {} of {} MiB",
                    u.index,
                    u.utilisation,
                    u.memory_used_bytes >> 20,
                    u.memory_total_bytes >> 20
                );
                assert!(u.utilisation <= respool_core::Ppm::ONE);
                assert!(u.memory_used_bytes <= u.memory_total_bytes);
            }
            println!("capacity: {}", inv.capacity());
            for d in Topology::detect().with_gpus(&inv).domains {
                println!(
                    "domain {}: {:?} {} capacity {}",
                    d.id,
                    d.kind,
                    d.name,
                    d.capacity()
                );
            }
        }
    }
}
