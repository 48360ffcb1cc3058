//! Placement domains: NUMA nodes (or the whole machine) and GPUs.
//!
//! A pool has one or more **CPU domains** (each with its own workers and run
//! queue; by default one per NUMA node found by hwloc, or one for the whole
//! machine) and zero or more **GPU domains** (one per GPU). A task's request
//! is split: its GPU and GPU-memory amounts are placed on a GPU domain, the
//! rest (CPU, memory, IOPS, network, user dimensions) on a CPU domain. Each
//! split is placed by a [`Packer`] with the pool's placement algorithm
//! ([`Fit`], default best fit by dot-product alignment, as in Tetris). The
//! global [`Tracker`](respool_core::Tracker) still admits the whole request
//! against the machine or container first: domains refine *where*, the
//! tracker decides *whether*.
//!
//! With a single CPU domain and no GPU domain (the common case) placement
//! is trivial and the pool never touches the packer.

use respool_core::packer::{Domain, Fit, Packer, PlaceError, Placement};
use respool_core::{Dim, DimSet, Ppm, Resources, Shortfall};
use respool_sys::topology::DomainKind;

/// A placement domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    /// A NUMA node or the machine (CPU domains, with workers), or a GPU
    /// ([`crate::sys::DomainKind`], the kind the pool's detection reports).
    pub kind: DomainKind,
    /// A name for logs and snapshots (`"numa0"`, `"gpu1"`).
    pub name: String,
    /// What can be placed on it. For a CPU domain: CPU (millicores), memory
    /// and any other non-GPU dimension; for a GPU domain: `gpu` and
    /// `gpu_memory`.
    pub capacity: Resources,
    /// CPU numbers (as the OS counts them) of a CPU domain; its workers are
    /// pinned to them when pinning is on. Empty: not pinned.
    pub cpus: Vec<usize>,
    /// The device index (as NVML and `CUDA_VISIBLE_DEVICES` count them) of a
    /// GPU domain.
    pub device: Option<u32>,
}

impl DomainSpec {
    /// A CPU domain (NUMA node) with `cpus` and `memory` bytes.
    #[must_use]
    pub fn numa(name: impl Into<String>, cpus: Vec<usize>, memory: u64) -> DomainSpec {
        DomainSpec::cpu_domain(DomainKind::Numa, name.into(), cpus, memory)
    }

    /// The whole machine as one CPU domain (named `"machine"`), with `cpus`
    /// and `memory` bytes: what the pool uses without NUMA information.
    #[must_use]
    pub fn machine(cpus: Vec<usize>, memory: u64) -> DomainSpec {
        DomainSpec::cpu_domain(DomainKind::Machine, "machine".to_owned(), cpus, memory)
    }

    fn cpu_domain(kind: DomainKind, name: String, cpus: Vec<usize>, memory: u64) -> DomainSpec {
        let millicores = u64::try_from(cpus.len())
            .unwrap_or(u64::MAX)
            .saturating_mul(1000);
        DomainSpec {
            kind,
            name,
            capacity: Resources::NONE
                .with_saturating(Dim::Cpu, millicores)
                .with_saturating(Dim::Memory, memory),
            cpus,
            device: None,
        }
    }

    /// A GPU domain: one device with `memory` bytes of GPU memory.
    #[must_use]
    pub fn gpu(name: impl Into<String>, device: u32, memory: u64) -> DomainSpec {
        DomainSpec {
            kind: DomainKind::Gpu,
            name: name.into(),
            capacity: Resources::NONE
                .with_saturating(Dim::Gpu, 1)
                .with_saturating(Dim::GpuMemory, memory),
            cpus: Vec::new(),
            device: Some(device),
        }
    }
}

const GPU_DIMS: DimSet = DimSet::EMPTY.with(Dim::Gpu).with(Dim::GpuMemory);

fn part(request: &Resources, dims: DimSet) -> Resources {
    request
        .iter()
        .filter(|(d, _)| dims.contains(*d))
        .fold(Resources::NONE, |r, (d, v)| r.with_saturating(d, v))
}

fn cpu_part(request: &Resources) -> Resources {
    part(
        request,
        DimSet::ALL.intersection(DimSet::from_bits_truncate(!GPU_DIMS.bits())),
    )
}

fn gpu_part(request: &Resources) -> Resources {
    part(request, GPU_DIMS)
}

/// Where a task was placed.
#[derive(Debug, Default)]
pub(crate) struct Placed {
    pub(crate) cpu: Option<Placement>,
    pub(crate) gpu: Option<Placement>,
}

impl Placed {
    /// Boxed for a task's description, or `None` when nothing was placed
    /// (one CPU domain, no GPU): then there is nothing to box, and nothing
    /// for the release to give back under the scheduler's lock, so the
    /// release can join the worker's log.
    pub(crate) fn boxed(self) -> Option<Box<Placed>> {
        (self.cpu.is_some() || self.gpu.is_some()).then(|| Box::new(self))
    }

    /// The CPU domain whose workers run the task (none: any worker).
    pub(crate) fn cpu_domain(&self) -> Option<usize> {
        self.cpu.as_ref().map(Placement::domain)
    }
}

type Storage = Box<[Domain]>;

/// The pool's packers over its CPU and GPU domains.
pub(crate) struct Placer {
    cpu: Packer<Storage>,
    gpu: Packer<Storage>,
    /// One CPU domain and no GPU domain: nothing to decide.
    trivial: bool,
    /// Device index of each GPU domain.
    devices: Vec<Option<u32>>,
}

impl Placer {
    pub(crate) fn new(domains: &[DomainSpec], fit: Fit) -> Placer {
        let cpu: Storage = domains
            .iter()
            .filter(|d| d.kind.has_cpus())
            .map(|d| Domain::new(cpu_part(&d.capacity)))
            .collect();
        let gpus: Vec<&DomainSpec> = domains
            .iter()
            .filter(|d| d.kind == DomainKind::Gpu)
            .collect();
        let gpu: Storage = gpus
            .iter()
            .map(|d| Domain::new(gpu_part(&d.capacity)))
            .collect();
        let trivial = cpu.len() <= 1 && gpu.is_empty();
        Placer {
            cpu: Packer::new(cpu, fit),
            gpu: Packer::new(gpu, fit),
            trivial,
            devices: gpus.iter().map(|d| d.device).collect(),
        }
    }

    /// Whether placement never needs deciding (one CPU domain, no GPU).
    pub(crate) fn is_trivial(&self) -> bool {
        self.trivial
    }

    /// The device index of GPU domain `i`.
    pub(crate) fn device(&self, i: usize) -> Option<u32> {
        self.devices.get(i).copied().flatten()
    }

    fn needs_cpu(&self, cpu: &Resources) -> bool {
        self.cpu.len() > 1 && !cpu.is_empty()
    }

    fn needs_gpu(&self, gpu: &Resources) -> bool {
        !self.gpu.is_empty() && !gpu.is_zero()
    }

    /// The shortfall if `request` fits no domain even when all are empty.
    pub(crate) fn never_fits(&self, request: &Resources) -> Option<Shortfall> {
        if self.trivial {
            // One CPU domain, no GPU: nothing is decided here (and splitting
            // the request would cost more than the rest of a waiter's round).
            return None;
        }
        let check = |p: &Packer<Storage>, part: Resources| -> Option<Shortfall> {
            let mut first = None;
            for d in p.domains() {
                match d.shortfall_when_empty(&part) {
                    None => return None,
                    Some(s) => {
                        first.get_or_insert(s);
                    }
                }
            }
            first
        };
        let (cpu, gpu) = (cpu_part(request), gpu_part(request));
        if self.needs_cpu(&cpu) {
            if let Some(s) = check(&self.cpu, cpu) {
                return Some(s);
            }
        }
        if self.needs_gpu(&gpu) {
            return check(&self.gpu, gpu);
        }
        None
    }

    /// Whether `request` can be placed now (without placing it).
    pub(crate) fn fits(&self, request: &Resources) -> bool {
        self.shortfall(request).is_none()
    }

    /// `None` when `request` can be placed now; otherwise where it does not
    /// fit (the first domain's shortfall, as the packer explains it).
    pub(crate) fn shortfall(&self, request: &Resources) -> Option<Shortfall> {
        if self.trivial {
            return None;
        }
        let (cpu, gpu) = (cpu_part(request), gpu_part(request));
        let why = |e: PlaceError| {
            e.shortfall().or_else(|| {
                request.iter().next().map(|(dim, amount)| Shortfall {
                    dim,
                    requested: amount,
                    available: 0,
                    by: amount,
                })
            })
        };
        if self.needs_cpu(&cpu) {
            if let Err(e) = self.cpu.select(&cpu) {
                return why(e);
            }
        }
        if self.needs_gpu(&gpu) {
            if let Err(e) = self.gpu.select(&gpu) {
                return why(e);
            }
        }
        None
    }

    /// Places `request`.
    ///
    /// # Errors
    ///
    /// The packer's error when a part does not fit now (nothing is held then).
    pub(crate) fn place(&mut self, request: &Resources) -> Result<Placed, PlaceError> {
        if self.trivial {
            return Ok(Placed::default());
        }
        let (cpu, gpu) = (cpu_part(request), gpu_part(request));
        let cpu_placed = if self.needs_cpu(&cpu) {
            Some(self.cpu.place(&cpu)?)
        } else {
            None
        };
        let gpu_placed = if self.needs_gpu(&gpu) {
            match self.gpu.place(&gpu) {
                Ok(p) => Some(p),
                Err(e) => {
                    if let Some(p) = cpu_placed {
                        let _ = self.cpu.release(p);
                    }
                    return Err(e);
                }
            }
        } else {
            None
        };
        Ok(Placed {
            cpu: cpu_placed,
            gpu: gpu_placed,
        })
    }

    /// Gives a placement back (exactly once: the tokens are consumed).
    pub(crate) fn release(&mut self, placed: Placed) {
        if let Some(p) = placed.cpu {
            let _ = self.cpu.release(p);
        }
        if let Some(p) = placed.gpu {
            let _ = self.gpu.release(p);
        }
    }

    /// How much free capacity of the CPU domains the typical request cannot
    /// use (zero with one domain).
    pub(crate) fn fragmentation(&self, typical: &Resources) -> Ppm {
        if self.cpu.len() <= 1 {
            return Ppm::ZERO;
        }
        self.cpu.fragmentation(&cpu_part(typical))
    }

    /// Used amount per CPU domain, then per GPU domain.
    pub(crate) fn usage(&self) -> Vec<(Resources, Resources)> {
        self.cpu
            .domains()
            .iter()
            .chain(self.gpu.domains())
            .map(|d| (d.used(), *d.capacity()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use respool_core::packer::Score;

    fn mem(n: u64) -> Resources {
        Resources::NONE.with_saturating(Dim::Memory, n)
    }

    #[test]
    fn requests_split_between_cpu_and_gpu_domains() {
        let domains = [
            DomainSpec::numa("numa0", vec![0, 1], 1000),
            DomainSpec::numa("numa1", vec![2, 3], 1000),
            DomainSpec::gpu("gpu0", 0, 100),
            DomainSpec::gpu("gpu1", 1, 200),
        ];
        let mut p = Placer::new(&domains, Fit::Best(Score::DotProduct));
        assert!(!p.is_trivial());
        let req = mem(600)
            .with_saturating(Dim::Gpu, 1)
            .with_saturating(Dim::GpuMemory, 150);
        let a = p.place(&req).unwrap();
        assert_eq!(
            a.gpu.as_ref().map(Placement::domain),
            Some(1),
            "only gpu1 has 150"
        );
        assert_eq!(p.device(1), Some(1));
        let b = p.place(&mem(600)).unwrap();
        assert_ne!(
            a.cpu_domain(),
            b.cpu_domain(),
            "600 + 600 > 1000: the other node"
        );
        assert!(!p.fits(&mem(600)), "both nodes hold 600 of 1000");
        assert!(p.place(&mem(600)).is_err());
        assert_eq!(p.never_fits(&mem(1001)).map(|s| s.by), Some(1));
        assert!(
            p.never_fits(&Resources::NONE.with_saturating(Dim::GpuMemory, 201))
                .is_some()
        );
        assert!(p.never_fits(&mem(1000)).is_none());
        p.release(a);
        p.release(b);
        assert!(p.usage().iter().all(|(used, _)| used.is_zero()));
    }

    #[test]
    fn one_cpu_domain_without_gpus_is_trivial() {
        let p = Placer::new(&[DomainSpec::machine(vec![0], 10)], Fit::First);
        assert!(p.is_trivial());
        assert!(
            p.fits(&mem(1 << 40)),
            "the tracker decides: the domain adds nothing"
        );
        assert_eq!(p.fragmentation(&mem(5)), Ppm::ZERO);
    }
}
