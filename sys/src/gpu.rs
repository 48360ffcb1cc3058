//! GPUs as placement domains, through NVML (cargo feature `nvml`).
//!
//! Device access is behind the small [`GpuBackend`] trait: `NvmlBackend`
//! (with the feature) talks to the NVIDIA driver, and tests use a mock. The
//! mapping from devices to capacity and domains ([`GpuInventory`]) is the same
//! for both.
//!
//! Without the feature, without a driver, or when NVML fails, the inventory
//! is empty, its capacity is **zero GPUs and zero GPU memory** (so a task that
//! needs a GPU is refused at submit with a clear shortfall instead of waiting
//! forever), and [`GpuInventory::reason`] says why. The pool starts normally.
//!
//! NVML is loaded at run time (`libnvidia-ml.so.1`): a binary built with the
//! feature runs on machines without NVIDIA drivers.

use std::fmt;

use respool_core::{Dim, Ppm, Resources};

use crate::topology::{DomainInfo, DomainKind};

/// One GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuDevice {
    /// The driver's device index.
    pub index: u32,
    /// The product name.
    pub name: String,
    /// The device UUID, when the driver gives one.
    pub uuid: Option<String>,
    /// Total memory, bytes.
    pub memory_total_bytes: u64,
    /// The PCI bus id, when the driver gives one.
    pub pci_bus_id: Option<String>,
    /// CPUs close to the device (OS indexes); empty when unknown.
    pub cpus: Vec<usize>,
}

/// What a GPU is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuUsage {
    /// The driver's device index.
    pub index: u32,
    /// Share of the last sample period in which a kernel ran.
    pub utilisation: Ppm,
    /// Memory in use, bytes.
    pub memory_used_bytes: u64,
    /// Total memory, bytes.
    pub memory_total_bytes: u64,
}

/// Why GPU information is not available.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GpuError {
    /// respool was built without the `nvml` feature.
    NotBuilt,
    /// The driver library could not be loaded or initialised.
    DriverUnavailable {
        /// What the driver layer said.
        reason: String,
    },
    /// One device could not be queried.
    Device {
        /// The device index.
        index: u32,
        /// What the driver said.
        reason: String,
    },
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NotBuilt => f.write_str(
                "respool was built without the `nvml` feature: no GPU support (enable it to use NVIDIA GPUs)",
            ),
            GpuError::DriverUnavailable { reason } => {
                write!(f, "NVIDIA driver not available (NVML): {reason}")
            }
            GpuError::Device { index, reason } => write!(f, "GPU {index}: {reason}"),
        }
    }
}

impl std::error::Error for GpuError {}

/// Access to GPUs (NVML, or a mock in tests).
pub trait GpuBackend {
    /// A short name (`"nvml"`).
    fn name(&self) -> &'static str;
    /// Number of devices.
    ///
    /// # Errors
    ///
    /// [`GpuError`] when the driver cannot be asked.
    fn device_count(&self) -> Result<u32, GpuError>;
    /// The static description of device `index`.
    ///
    /// # Errors
    ///
    /// [`GpuError::Device`] when the device cannot be queried.
    fn device(&self, index: u32) -> Result<GpuDevice, GpuError>;
    /// Live utilisation and memory in use of device `index`.
    ///
    /// # Errors
    ///
    /// [`GpuError::Device`] when the device cannot be queried.
    fn usage(&self, index: u32) -> Result<GpuUsage, GpuError>;
}

/// The GPUs found, mapped to capacity and placement domains.
///
/// # Examples
///
/// ```
/// use respool_core::Dim;
/// use respool_sys::gpu::GpuInventory;
/// let gpus = GpuInventory::detect();
/// if gpus.devices.is_empty() {
///     // Zero GPU capacity, and the reason.
///     assert_eq!(gpus.capacity().get(Dim::Gpu), Some(0));
///     println!("no GPUs: {}", gpus.reason.as_deref().unwrap_or("none found"));
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInventory {
    /// The devices that could be queried.
    pub devices: Vec<GpuDevice>,
    /// The backend used (`"nvml"`, `"none"`).
    pub backend: &'static str,
    /// Why there are no devices (driver missing, feature off, ...).
    pub reason: Option<String>,
    /// Devices that were skipped, and why.
    pub notes: Vec<String>,
}

impl GpuInventory {
    /// No GPUs, because of `error`.
    #[must_use]
    pub fn none(error: &GpuError) -> GpuInventory {
        GpuInventory {
            devices: Vec::new(),
            backend: "none",
            reason: Some(error.to_string()),
            notes: Vec::new(),
        }
    }

    /// Every device `backend` can describe; devices that fail are skipped and
    /// noted. Never fails.
    #[must_use]
    pub fn from_backend(backend: &dyn GpuBackend) -> GpuInventory {
        let count = match backend.device_count() {
            Ok(c) => c,
            Err(e) => {
                let mut inv = GpuInventory::none(&e);
                inv.backend = backend.name();
                return inv;
            }
        };
        let mut devices = Vec::new();
        let mut notes = Vec::new();
        for i in 0..count {
            match backend.device(i) {
                Ok(d) => devices.push(d),
                Err(e) => notes.push(format!("skipped: {e}")),
            }
        }
        let reason = if count == 0 {
            Some(format!("{} reports no GPU", backend.name()))
        } else if devices.is_empty() {
            Some(format!("no GPU could be queried ({} failed)", notes.len()))
        } else {
            None
        };
        GpuInventory {
            devices,
            backend: backend.name(),
            reason,
            notes,
        }
    }

    /// The GPUs of this machine through NVML (feature `nvml`); without the
    /// feature or the driver, an empty inventory with the reason.
    #[must_use]
    pub fn detect() -> GpuInventory {
        #[cfg(feature = "nvml")]
        {
            match NvmlBackend::new() {
                Ok(b) => GpuInventory::from_backend(&b),
                Err(e) => {
                    let mut inv = GpuInventory::none(&e);
                    inv.backend = "nvml";
                    inv
                }
            }
        }
        #[cfg(not(feature = "nvml"))]
        {
            GpuInventory::none(&GpuError::NotBuilt)
        }
    }

    /// GPU capacity: [`Dim::Gpu`] = number of devices, [`Dim::GpuMemory`] =
    /// their memory summed. Both are set, to zero when there is no GPU.
    #[must_use]
    pub fn capacity(&self) -> Resources {
        let count = u64::try_from(self.devices.len()).unwrap_or(u64::MAX);
        let memory = self
            .devices
            .iter()
            .fold(0u64, |acc, d| acc.saturating_add(d.memory_total_bytes));
        Resources::NONE
            .with_saturating(Dim::Gpu, count)
            .with_saturating(Dim::GpuMemory, memory)
    }

    /// One [`DomainKind::Gpu`] domain per device, with ids from `first_id`.
    #[must_use]
    pub fn domains(&self, first_id: usize) -> Vec<DomainInfo> {
        self.devices
            .iter()
            .enumerate()
            .map(|(i, d)| DomainInfo {
                id: first_id.saturating_add(i),
                kind: DomainKind::Gpu,
                os_index: usize::try_from(d.index).ok(),
                cpus: d.cpus.clone(),
                memory_bytes: Some(d.memory_total_bytes),
                gpus: 1,
                name: d.name.clone(),
            })
            .collect()
    }

    /// Live usage of every device in the inventory, read through `backend`.
    #[must_use]
    pub fn usage(&self, backend: &dyn GpuBackend) -> Vec<Result<GpuUsage, GpuError>> {
        self.devices
            .iter()
            .map(|d| backend.usage(d.index))
            .collect()
    }
}

/// NVIDIA GPUs through NVML.
#[cfg(feature = "nvml")]
pub struct NvmlBackend {
    nvml: nvml_wrapper::Nvml,
}

#[cfg(feature = "nvml")]
impl fmt::Debug for NvmlBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NvmlBackend")
    }
}

#[cfg(feature = "nvml")]
impl NvmlBackend {
    /// Loads and initialises NVML.
    ///
    /// # Errors
    ///
    /// [`GpuError::DriverUnavailable`] when the library is missing (no
    /// NVIDIA driver) or does not initialise.
    pub fn new() -> Result<NvmlBackend, GpuError> {
        nvml_wrapper::Nvml::init()
            .map(|nvml| NvmlBackend { nvml })
            .map_err(|e| GpuError::DriverUnavailable {
                reason: e.to_string(),
            })
    }

    /// The driver version, for explanations.
    ///
    /// # Errors
    ///
    /// [`GpuError::DriverUnavailable`] when NVML cannot say.
    pub fn driver_version(&self) -> Result<String, GpuError> {
        self.nvml
            .sys_driver_version()
            .map_err(|e| GpuError::DriverUnavailable {
                reason: e.to_string(),
            })
    }

    fn dev(&self, index: u32) -> Result<nvml_wrapper::Device<'_>, GpuError> {
        self.nvml
            .device_by_index(index)
            .map_err(|e| device_error(index, &e))
    }
}

#[cfg(feature = "nvml")]
fn device_error(index: u32, e: &nvml_wrapper::error::NvmlError) -> GpuError {
    GpuError::Device {
        index,
        reason: e.to_string(),
    }
}

#[cfg(feature = "nvml")]
impl GpuBackend for NvmlBackend {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn device_count(&self) -> Result<u32, GpuError> {
        self.nvml
            .device_count()
            .map_err(|e| GpuError::DriverUnavailable {
                reason: e.to_string(),
            })
    }

    fn device(&self, index: u32) -> Result<GpuDevice, GpuError> {
        let d = self.dev(index)?;
        let name = d.name().map_err(|e| device_error(index, &e))?;
        let memory = d.memory_info().map_err(|e| device_error(index, &e))?;
        // CPUs close to the device: NVML returns a bit mask in words of
        // `c_ulong`; ask for enough words for CPU_SETSIZE (1024) CPUs.
        let bits = std::mem::size_of::<std::os::raw::c_ulong>() * 8;
        let words = 1024usize.div_ceil(bits);
        let cpus = d
            .cpu_affinity(words)
            .map(|mask| {
                mask.iter()
                    .enumerate()
                    .flat_map(|(w, &word)| {
                        (0..bits)
                            .filter(move |b| (u128::from(word) >> b) & 1 == 1)
                            .map(move |b| w * bits + b)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(GpuDevice {
            index,
            name,
            uuid: d.uuid().ok(),
            memory_total_bytes: memory.total,
            pci_bus_id: d.pci_info().ok().map(|p| p.bus_id),
            cpus,
        })
    }

    fn usage(&self, index: u32) -> Result<GpuUsage, GpuError> {
        let d = self.dev(index)?;
        let u = d.utilization_rates().map_err(|e| device_error(index, &e))?;
        let m = d.memory_info().map_err(|e| device_error(index, &e))?;
        Ok(GpuUsage {
            index,
            utilisation: Ppm::from_percent(u.gpu),
            memory_used_bytes: m.used,
            memory_total_bytes: m.total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mock backend: a list of devices, some of which fail.
    struct Mock {
        count: Result<u32, GpuError>,
        failing: Vec<u32>,
    }

    impl GpuBackend for Mock {
        fn name(&self) -> &'static str {
            "mock"
        }
        fn device_count(&self) -> Result<u32, GpuError> {
            self.count.clone()
        }
        fn device(&self, index: u32) -> Result<GpuDevice, GpuError> {
            if self.failing.contains(&index) {
                return Err(GpuError::Device {
                    index,
                    reason: "GPU is lost".into(),
                });
            }
            Ok(GpuDevice {
                index,
                name: format!("Mock GPU {index}"),
                uuid: Some(format!("GPU-{index}")),
                memory_total_bytes: u64::from(index + 1) << 30,
                pci_bus_id: None,
                cpus: vec![usize::try_from(index).unwrap()],
            })
        }
        fn usage(&self, index: u32) -> Result<GpuUsage, GpuError> {
            self.device(index).map(|d| GpuUsage {
                index,
                utilisation: Ppm::from_percent(50),
                memory_used_bytes: d.memory_total_bytes / 4,
                memory_total_bytes: d.memory_total_bytes,
            })
        }
    }

    #[test]
    fn devices_map_to_domains_and_capacity() {
        let mock = Mock {
            count: Ok(3),
            failing: vec![1],
        };
        let inv = GpuInventory::from_backend(&mock);
        assert_eq!(inv.devices.len(), 2);
        assert_eq!(inv.notes, vec!["skipped: GPU 1: GPU is lost".to_owned()]);
        assert_eq!(inv.reason, None);
        let cap = inv.capacity();
        assert_eq!(cap.get(Dim::Gpu), Some(2));
        assert_eq!(cap.get(Dim::GpuMemory), Some((1 << 30) + (3 << 30)));
        let domains = inv.domains(5);
        assert_eq!(domains.len(), 2);
        assert_eq!((domains[0].id, domains[1].id), (5, 6));
        assert_eq!(domains[1].os_index, Some(2));
        assert!(
            domains
                .iter()
                .all(|d| d.kind == DomainKind::Gpu && d.gpus == 1)
        );
        assert_eq!(domains[1].capacity().get(Dim::GpuMemory), Some(3 << 30));
        let usage = inv.usage(&mock);
        assert_eq!(usage.len(), 2);
        assert_eq!(usage[1].as_ref().unwrap().memory_used_bytes, (3 << 30) / 4);
    }

    #[test]
    fn no_driver_means_zero_capacity_and_a_reason() {
        let mock = Mock {
            count: Err(GpuError::DriverUnavailable {
                reason: "libnvidia-ml.so.1: cannot open shared object file".into(),
            }),
            failing: vec![],
        };
        let inv = GpuInventory::from_backend(&mock);
        assert!(inv.devices.is_empty());
        assert_eq!(inv.capacity().get(Dim::Gpu), Some(0));
        assert_eq!(inv.capacity().get(Dim::GpuMemory), Some(0));
        assert!(inv.reason.as_deref().unwrap().contains("libnvidia-ml.so.1"));
        assert!(inv.domains(0).is_empty());
        let zero = GpuInventory::from_backend(&Mock {
            count: Ok(0),
            failing: vec![],
        });
        assert_eq!(zero.reason.as_deref(), Some("mock reports no GPU"));
        let all_fail = GpuInventory::from_backend(&Mock {
            count: Ok(1),
            failing: vec![0],
        });
        assert_eq!(
            all_fail.reason.as_deref(),
            Some("no GPU could be queried (1 failed)")
        );
    }

    #[cfg(not(feature = "nvml"))]
    #[test]
    fn without_the_feature_detect_says_so() {
        let inv = GpuInventory::detect();
        assert!(inv.devices.is_empty());
        assert!(inv.reason.unwrap().contains("without the `nvml` feature"));
    }
}
