//! `respool_config`: what a pool is built from, and the dimension and
//! policy numbers.

use std::path::PathBuf;

use respool::core::packer::{Fit, Score};
use respool::learn::LearningConfig;
use respool::{Dim, Policy, Ppm, Resources};

use crate::error::respool_result;
use crate::ffi::{
    Castable, Error, OwnershipBox, free_box, guard, to_boxed_ptr, try_mut, try_out, try_path,
    try_str,
};

/// A resource dimension. Amounts are in the dimension's unit:
/// `RESPOOL_DIM_CPU` millicores (1000 = one core), `RESPOOL_DIM_MEMORY`
/// bytes, `RESPOOL_DIM_IOPS` operations per second, `RESPOOL_DIM_NETWORK`
/// bytes per second, `RESPOOL_DIM_GPU` whole devices, `RESPOOL_DIM_GPU_MEMORY`
/// bytes, `RESPOOL_DIM_USER0..3` plain counts (licences, connections).
/// Amounts are at most 2^60. Any other number is `RESPOOL_INVALID_ARGUMENT`.
#[allow(non_camel_case_types)]
pub type respool_dim = u32;
/// CPU, in millicores.
pub const RESPOOL_DIM_CPU: u32 = 0;
/// Main memory, in bytes.
pub const RESPOOL_DIM_MEMORY: u32 = 1;
/// Storage I/O, in operations per second.
pub const RESPOOL_DIM_IOPS: u32 = 2;
/// Network bandwidth, in bytes per second.
pub const RESPOOL_DIM_NETWORK: u32 = 3;
/// Whole GPU devices.
pub const RESPOOL_DIM_GPU: u32 = 4;
/// GPU memory, in bytes.
pub const RESPOOL_DIM_GPU_MEMORY: u32 = 5;
/// First user-defined dimension (a plain count).
pub const RESPOOL_DIM_USER0: u32 = 6;
/// Second user-defined dimension.
pub const RESPOOL_DIM_USER1: u32 = 7;
/// Third user-defined dimension.
pub const RESPOOL_DIM_USER2: u32 = 8;
/// Fourth user-defined dimension.
pub const RESPOOL_DIM_USER3: u32 = 9;
/// Number of dimensions: the length of the per-dimension arrays of
/// `respool_stats`, indexed by `respool_dim`.
pub const RESPOOL_DIM_COUNT: usize = 10;

/// What the pool does with a task that does not fit now.
#[allow(non_camel_case_types)]
pub type respool_policy = u32;
/// Refuse it at once with `RESPOOL_BUSY` (the caller may retry).
pub const RESPOOL_POLICY_REJECT: u32 = 0;
/// Queue it (bounded by `respool_config_set_max_waiting`) until it fits;
/// `respool_pool_submit` returns at once. The default.
pub const RESPOOL_POLICY_DEFER: u32 = 1;
/// Queue it, and make `respool_pool_submit` block until it is admitted, or
/// fail with `RESPOOL_DEADLINE_EXPIRED` after the maximum wait.
pub const RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE: u32 = 2;

/// How the pool places a task on one of its placement domains (NUMA nodes,
/// GPUs; see `respool_config_set_placement`). With one domain (the default
/// without hwloc) every algorithm picks it. Among the domains with room,
/// each "best fit" picks the one its score likes most and each "worst fit"
/// the one it likes least (ties: the lowest-numbered domain); the scores
/// compare the task's demand with each domain's capacity and free capacity,
/// as shares per dimension.
///
/// Numbers are part of the ABI: they never change and new algorithms get
/// new numbers. `respool_config_set_placement` takes the number as a
/// `uint32_t` and refuses any other with `RESPOOL_INVALID_ARGUMENT`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum respool_placement {
    /// First fit: the lowest-numbered domain with room.
    RESPOOL_PLACEMENT_FIRST_FIT = 0,
    /// Next fit: the first domain with room, searching cyclically from the
    /// domain that took the previous task.
    RESPOOL_PLACEMENT_NEXT_FIT = 1,
    /// Best fit by the alignment (dot product) of the task's demand with
    /// the domain's free capacity, as Tetris does. The default.
    RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT = 2,
    /// Best fit by the smallest L2 norm of the free capacity left
    /// (Panigrahy et al.): the tightest domain.
    RESPOOL_PLACEMENT_BEST_FIT_L2_RESIDUAL = 3,
    /// Best fit by the Kubernetes MostAllocated score: the fullest domain
    /// after placing (classic best fit; packs).
    RESPOOL_PLACEMENT_BEST_FIT_MOST_ALLOCATED = 4,
    /// Best fit by the Kubernetes LeastAllocated score: the emptiest domain
    /// after placing (spreads).
    RESPOOL_PLACEMENT_BEST_FIT_LEAST_ALLOCATED = 5,
    /// Best fit by the Kubernetes BalancedAllocation score: the domain whose
    /// dimensions end up most evenly used.
    RESPOOL_PLACEMENT_BEST_FIT_BALANCED_ALLOCATION = 6,
    /// Worst fit by the dot product: the least aligned domain.
    RESPOOL_PLACEMENT_WORST_FIT_DOT_PRODUCT = 7,
    /// Worst fit by the L2 residual: the domain with the most free capacity
    /// left.
    RESPOOL_PLACEMENT_WORST_FIT_L2_RESIDUAL = 8,
    /// Worst fit by MostAllocated: the emptiest domain after placing
    /// (classic worst fit).
    RESPOOL_PLACEMENT_WORST_FIT_MOST_ALLOCATED = 9,
    /// Worst fit by LeastAllocated: the fullest domain after placing.
    RESPOOL_PLACEMENT_WORST_FIT_LEAST_ALLOCATED = 10,
    /// Worst fit by BalancedAllocation: the domain whose dimensions end up
    /// least evenly used.
    RESPOOL_PLACEMENT_WORST_FIT_BALANCED_ALLOCATION = 11,
}

impl respool_placement {
    /// Every algorithm, in numeric order (the numbers are contiguous).
    pub(crate) const ALL: [respool_placement; 12] = [
        respool_placement::RESPOOL_PLACEMENT_FIRST_FIT,
        respool_placement::RESPOOL_PLACEMENT_NEXT_FIT,
        respool_placement::RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT,
        respool_placement::RESPOOL_PLACEMENT_BEST_FIT_L2_RESIDUAL,
        respool_placement::RESPOOL_PLACEMENT_BEST_FIT_MOST_ALLOCATED,
        respool_placement::RESPOOL_PLACEMENT_BEST_FIT_LEAST_ALLOCATED,
        respool_placement::RESPOOL_PLACEMENT_BEST_FIT_BALANCED_ALLOCATION,
        respool_placement::RESPOOL_PLACEMENT_WORST_FIT_DOT_PRODUCT,
        respool_placement::RESPOOL_PLACEMENT_WORST_FIT_L2_RESIDUAL,
        respool_placement::RESPOOL_PLACEMENT_WORST_FIT_MOST_ALLOCATED,
        respool_placement::RESPOOL_PLACEMENT_WORST_FIT_LEAST_ALLOCATED,
        respool_placement::RESPOOL_PLACEMENT_WORST_FIT_BALANCED_ALLOCATION,
    ];

    /// The algorithm with number `n`, if there is one. (A C value is read
    /// as a `u32` and converted here: an enum parameter holding a number
    /// that is not a variant would be undefined behaviour in Rust.)
    pub(crate) fn from_u32(n: u32) -> Option<respool_placement> {
        usize::try_from(n)
            .ok()
            .and_then(|i| Self::ALL.get(i))
            .copied()
    }

    /// The packer's fit for this algorithm.
    pub(crate) fn fit(self) -> Fit {
        use respool_placement as P;
        match self {
            P::RESPOOL_PLACEMENT_FIRST_FIT => Fit::First,
            P::RESPOOL_PLACEMENT_NEXT_FIT => Fit::Next,
            P::RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT => Fit::Best(Score::DotProduct),
            P::RESPOOL_PLACEMENT_BEST_FIT_L2_RESIDUAL => Fit::Best(Score::L2Residual),
            P::RESPOOL_PLACEMENT_BEST_FIT_MOST_ALLOCATED => Fit::Best(Score::MostAllocated),
            P::RESPOOL_PLACEMENT_BEST_FIT_LEAST_ALLOCATED => Fit::Best(Score::LeastAllocated),
            P::RESPOOL_PLACEMENT_BEST_FIT_BALANCED_ALLOCATION => {
                Fit::Best(Score::BalancedAllocation)
            }
            P::RESPOOL_PLACEMENT_WORST_FIT_DOT_PRODUCT => Fit::Worst(Score::DotProduct),
            P::RESPOOL_PLACEMENT_WORST_FIT_L2_RESIDUAL => Fit::Worst(Score::L2Residual),
            P::RESPOOL_PLACEMENT_WORST_FIT_MOST_ALLOCATED => Fit::Worst(Score::MostAllocated),
            P::RESPOOL_PLACEMENT_WORST_FIT_LEAST_ALLOCATED => Fit::Worst(Score::LeastAllocated),
            P::RESPOOL_PLACEMENT_WORST_FIT_BALANCED_ALLOCATION => {
                Fit::Worst(Score::BalancedAllocation)
            }
        }
    }
}

// The numbers are contiguous and in `ALL`'s order, so `from_u32` is exact.
const _: () = {
    let mut i = 0;
    while i < respool_placement::ALL.len() {
        assert!(respool_placement::ALL[i] as usize == i);
        i += 1;
    }
};

// The numbers are the core's indices: the C enum and `Dim` cannot drift.
const _: () = {
    assert!(Dim::COUNT == RESPOOL_DIM_COUNT);
    assert!(Dim::Cpu.index() == RESPOOL_DIM_CPU as usize);
    assert!(Dim::Memory.index() == RESPOOL_DIM_MEMORY as usize);
    assert!(Dim::Iops.index() == RESPOOL_DIM_IOPS as usize);
    assert!(Dim::Network.index() == RESPOOL_DIM_NETWORK as usize);
    assert!(Dim::Gpu.index() == RESPOOL_DIM_GPU as usize);
    assert!(Dim::GpuMemory.index() == RESPOOL_DIM_GPU_MEMORY as usize);
    assert!(Dim::User0.index() == RESPOOL_DIM_USER0 as usize);
    assert!(Dim::User1.index() == RESPOOL_DIM_USER1 as usize);
    assert!(Dim::User2.index() == RESPOOL_DIM_USER2 as usize);
    assert!(Dim::User3.index() == RESPOOL_DIM_USER3 as usize);
};

/// A dimension number from C.
pub(crate) fn dim(d: respool_dim) -> Result<Dim, Error> {
    usize::try_from(d)
        .ok()
        .and_then(Dim::from_index)
        .ok_or_else(|| {
            Error::invalid(format!(
                "{d} is not a respool_dim (0 to {})",
                RESPOOL_DIM_COUNT - 1
            ))
        })
}

/// `resources` with `dim` set to `amount`, checked.
pub(crate) fn with_amount(
    resources: &Resources,
    dim: Dim,
    amount: u64,
) -> Result<Resources, Error> {
    resources
        .with(dim, amount)
        .map_err(|e| Error::invalid(e.to_string()))
}

/// Parses an amount given as text for `dim`.
pub(crate) fn parse(dim: Dim, text: &str) -> Result<u64, Error> {
    respool::units::parse_amount(dim, text)
        .map_err(|e| Error::new(respool_result::RESPOOL_PARSE_ERROR, e.to_string()))
}

/// The most worker threads a pool may have (`respool_config_set_workers`):
/// 4096, twice the hardware threads of the largest single-system-image
/// servers. Each worker reserves its stack as address space.
pub const RESPOOL_MAX_WORKERS: usize = 4096;
/// The most tasks that may wait for resources
/// (`respool_config_set_max_waiting`): 2^32 - 1.
pub const RESPOOL_MAX_WAITING: usize = 4294967295;
/// The smallest worker stack (`respool_config_set_stack_size`): 64 KiB.
pub const RESPOOL_MIN_STACK_SIZE: usize = 65536;
/// The largest worker stack (`respool_config_set_stack_size`): 1 GiB.
pub const RESPOOL_MAX_STACK_SIZE: usize = 1073741824;

// cbindgen copies only literals into the header: the literals above are
// checked against the limits the Rust crate enforces.
const _: () = {
    assert!(RESPOOL_MAX_WORKERS == respool::limits::MAX_WORKERS);
    assert!(RESPOOL_MAX_WAITING == respool::limits::MAX_WAITING);
    assert!(RESPOOL_MIN_STACK_SIZE == respool::limits::MIN_STACK_SIZE);
    assert!(RESPOOL_MAX_STACK_SIZE == respool::limits::MAX_STACK_SIZE);
};

/// A size outside its limits: `RESPOOL_INVALID_ARGUMENT`, with the limit and
/// the header's name for it in the message.
fn limit_error(e: &respool::BuildError, constant: &str) -> Error {
    Error::invalid(format!("{e} (the limit is {constant} in respool.h)"))
}

/// A pool configuration (see `respool_pool_new`).
///
/// Thread safety: not thread-safe for writing: the `respool_config_set_*`
/// functions and `respool_config_free` must not overlap any other call on
/// the configuration; concurrent `respool_pool_new` calls that only read it
/// are fine.
pub struct respool_config {
    _private: [u8; 0],
}

/// The settings collected by the setters.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) workers: Option<usize>,
    pub(crate) capacity: Resources,
    pub(crate) headroom: Option<Resources>,
    pub(crate) policy: Policy,
    pub(crate) max_waiting: Option<usize>,
    pub(crate) critical_reserve: Resources,
    pub(crate) learning: LearningConfig,
    pub(crate) profile_path: Option<PathBuf>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) placement: Option<Fit>,
}

impl Castable for respool_config {
    type Ownership = OwnershipBox;
    type RustType = Config;
}

impl Config {
    /// The Rust builder for these settings.
    pub(crate) fn builder(&self) -> respool::Builder {
        let mut b = respool::Pool::builder()
            .capacity(self.capacity)
            .admission(self.policy)
            .critical_reserve(self.critical_reserve)
            .learning(self.learning);
        if let Some(w) = self.workers {
            b = b.workers(w);
        }
        if let Some(h) = self.headroom {
            b = b.headroom(h);
        }
        if let Some(m) = self.max_waiting {
            b = b.max_waiting(m);
        }
        if let Some(p) = &self.profile_path {
            b = b.profile_store(respool::store::FileStore::new(p.clone()));
        }
        if let Some(s) = self.stack_size {
            b = b.stack_size(s);
        }
        if let Some(f) = self.placement {
            b = b.placement(f);
        }
        b
    }
}

/// Creates a configuration with every default: one worker per CPU
/// available to the process (container aware), CPU and memory capacity
/// detected from the machine or container (minus a 10% memory headroom),
/// policy `RESPOOL_POLICY_DEFER` with at most 4096 waiting tasks, placement
/// `RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT`, learning on, no profile file.
///
/// Thread safety: may be called from any thread.
///
/// # Safety
///
/// `config_out` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_new(
    config_out: *mut *mut respool_config,
) -> respool_result {
    guard("respool_config_new", || {
        // SAFETY: per this function's contract.
        let out = unsafe { try_out(config_out, "config_out") }?;
        out.write(to_boxed_ptr::<respool_config>(Config {
            workers: None,
            capacity: Resources::NONE,
            headroom: None,
            policy: Policy::Defer,
            max_waiting: None,
            critical_reserve: Resources::NONE,
            learning: LearningConfig::default(),
            profile_path: None,
            stack_size: None,
            placement: None,
        }));
        Ok(())
    })
}

/// Frees a configuration. NULL is a no-op. Pools built from it are not
/// affected.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_free(config: *mut respool_config) {
    crate::ffi::guard_value("respool_config_free", (), || {
        // SAFETY: per this function's contract.
        unsafe { free_box(config) }
    });
}

/// Runs `f` on the configuration behind `config`.
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
unsafe fn with_config(
    function: &'static str,
    config: *mut respool_config,
    f: impl FnOnce(&mut Config) -> Result<(), Error>,
) -> respool_result {
    guard(function, || {
        // SAFETY: per this function's contract.
        let c = unsafe { try_mut(config, "config") }?;
        f(c)
    })
}

/// Sets the number of worker threads: 1 to `RESPOOL_MAX_WORKERS` (4096).
/// Anything else is `RESPOOL_INVALID_ARGUMENT`, with a last-error message
/// that states the limit, and leaves the configuration unchanged.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_workers(
    config: *mut respool_config,
    workers: usize,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_workers", config, |c| {
            if workers == 0 {
                return Err(Error::invalid("workers must be at least 1"));
            }
            respool::limits::check_workers(workers)
                .map_err(|e| limit_error(&e, "RESPOOL_MAX_WORKERS"))?;
            c.workers = Some(workers);
            Ok(())
        })
    }
}

/// Sets the capacity of one dimension, in its unit (see `respool_dim`).
/// Dimensions never given a capacity are not tracked, except CPU and
/// memory, which are detected.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_capacity(
    config: *mut respool_config,
    dim: respool_dim,
    amount: u64,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_capacity", config, |c| {
            c.capacity = with_amount(&c.capacity, self::dim(dim)?, amount)?;
            Ok(())
        })
    }
}

/// Sets the capacity of one dimension from text: `"8GiB"`, `"512MiB"`
/// (memory), `"4"`, `"2500m"` (CPU), `"20k"` (IOPS), `"1Gbit/s"` (network).
/// `RESPOOL_PARSE_ERROR` if it does not parse.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread;
/// `amount` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_capacity_str(
    config: *mut respool_config,
    dim: respool_dim,
    amount: *const std::ffi::c_char,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_capacity_str", config, |c| {
            let d = self::dim(dim)?;
            // SAFETY: per this function's contract.
            let text = try_str(amount, "amount")?;
            c.capacity = with_amount(&c.capacity, d, parse(d, text)?)?;
            Ok(())
        })
    }
}

/// Sets the capacity held back from every task in one dimension (a safety
/// margin). The first call replaces the default headroom (10% of detected
/// memory, at least 64 MiB) for every dimension. A headroom of 0 holds
/// nothing back and needs no capacity: setting a dimension back to 0 undoes
/// an earlier call for it (the default headroom stays replaced).
/// `respool_pool_new` fails with `RESPOOL_INVALID_ARGUMENT` if a headroom
/// exceeds its capacity or a non-zero one names an untracked dimension.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_headroom(
    config: *mut respool_config,
    dim: respool_dim,
    amount: u64,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_headroom", config, |c| {
            let h = c.headroom.unwrap_or(Resources::NONE);
            c.headroom = Some(with_amount(&h, self::dim(dim)?, amount)?);
            Ok(())
        })
    }
}

/// Sets the admission policy. `max_wait_ms` is how long a task may wait
/// for resources under `RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE` (at least 1);
/// it must be 0 for the other policies.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_admission(
    config: *mut respool_config,
    policy: respool_policy,
    max_wait_ms: u64,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_admission", config, |c| {
            c.policy = match (policy, max_wait_ms) {
                (RESPOOL_POLICY_REJECT, 0) => Policy::Reject,
                (RESPOOL_POLICY_DEFER, 0) => Policy::Defer,
                (RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE, ms) if ms > 0 => Policy::BlockUntilDeadline {
                    max_wait_ns: ms.saturating_mul(1_000_000),
                },
                (RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE, _) => {
                    return Err(Error::invalid(
                        "RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE needs a max_wait_ms of at least 1",
                    ));
                }
                (RESPOOL_POLICY_REJECT | RESPOOL_POLICY_DEFER, _) => {
                    return Err(Error::invalid(
                        "max_wait_ms is only for RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE: pass 0",
                    ));
                }
                (p, _) => {
                    return Err(Error::invalid(format!(
                        "{p} is not a respool_policy (0 to 2)"
                    )));
                }
            };
            Ok(())
        })
    }
}

/// Bounds the wait queue: at most `max_waiting` tasks wait for resources,
/// and one that would have to wait beyond it fails with
/// `RESPOOL_QUEUE_FULL` (0: every task that does not fit now). Not set
/// (the default), a full queue fails nothing: once 4096 tasks wait, a
/// submitter from outside the pool waits for room (backpressure), and the
/// pool's own tasks queue beyond that. At most `RESPOOL_MAX_WAITING`
/// (2^32 - 1); more is `RESPOOL_INVALID_ARGUMENT`, with a last-error
/// message that states the limit. The queue is allocated as it fills, not
/// by `respool_pool_new`.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_max_waiting(
    config: *mut respool_config,
    max_waiting: usize,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_max_waiting", config, |c| {
            respool::limits::check_max_waiting(max_waiting)
                .map_err(|e| limit_error(&e, "RESPOOL_MAX_WAITING"))?;
            c.max_waiting = Some(max_waiting);
            Ok(())
        })
    }
}

/// Sets the capacity of one dimension that only critical tasks may use
/// (see `respool_task_desc_set_critical`). 0 reserves nothing (and undoes an
/// earlier call for the dimension).
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_critical_reserve(
    config: *mut respool_config,
    dim: respool_dim,
    amount: u64,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_critical_reserve", config, |c| {
            c.critical_reserve = with_amount(&c.critical_reserve, self::dim(dim)?, amount)?;
            Ok(())
        })
    }
}

/// Sets how a task is placed on a placement domain: one of
/// `respool_placement` (default `RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT`).
/// Any other number is `RESPOOL_INVALID_ARGUMENT`, with a last-error
/// message that names it.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_placement(
    config: *mut respool_config,
    placement: u32,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_placement", config, |c| {
            let p = respool_placement::from_u32(placement).ok_or_else(|| {
                Error::invalid(format!(
                    "{placement} is not a respool_placement (0 to {})",
                    respool_placement::ALL.len() - 1
                ))
            })?;
            c.placement = Some(p.fit());
            Ok(())
        })
    }
}

/// Turns learning of task classes on (the default) or off. Off, classified
/// tasks run on their declared requirements plus the fallback.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_learning(
    config: *mut respool_config,
    enabled: bool,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_learning", config, |c| {
            c.learning.enabled = enabled;
            Ok(())
        })
    }
}

/// Sets how many runs of a class are measured before its predictions are
/// used (default 3).
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_learning_min_executions(
    config: *mut respool_config,
    runs: u32,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_learning_min_executions", config, |c| {
            c.learning.min_executions = runs;
            Ok(())
        })
    }
}

/// Sets the confidence a prediction needs to be used, in parts per
/// million (default 500000 = 50%; at most 1000000).
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_learning_confidence(
    config: *mut respool_config,
    ppm: u32,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_learning_confidence", config, |c| {
            if ppm > 1_000_000 {
                return Err(Error::invalid(format!(
                    "confidence {ppm} ppm is above 1000000 (100%)"
                )));
            }
            c.learning.confidence_threshold = Ppm::from_ppm(ppm);
            Ok(())
        })
    }
}

/// Sets what a classified task reserves in one dimension it did not
/// declare, while its class has no confident prediction (default: 1000
/// millicores of CPU and 256 MiB of memory).
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_learning_fallback(
    config: *mut respool_config,
    dim: respool_dim,
    amount: u64,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_learning_fallback", config, |c| {
            c.learning.fallback = with_amount(&c.learning.fallback, self::dim(dim)?, amount)?;
            Ok(())
        })
    }
}

/// Sets a JSON file the pool loads learned profiles from when it is built
/// (a missing file is fine; a corrupt or newer one fails
/// `respool_pool_new` with `RESPOOL_STORE_CORRUPT` / `RESPOOL_STORE_VERSION`
/// and is left untouched) and saves them to at shutdown (atomically). The
/// path is copied; on Unix it may be any bytes, elsewhere UTF-8; empty is
/// `RESPOOL_INVALID_ARGUMENT`.
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread;
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_profile_path(
    config: *mut respool_config,
    path: *const std::ffi::c_char,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_profile_path", config, |c| {
            // SAFETY: per this function's contract.
            c.profile_path = Some(try_path(path, "path")?.to_path_buf());
            Ok(())
        })
    }
}

/// Sets the stack size of worker threads, in bytes (default: the Rust
/// default, 2 MiB): `RESPOOL_MIN_STACK_SIZE` (64 KiB) to
/// `RESPOOL_MAX_STACK_SIZE` (1 GiB). Anything else, 0 included, is
/// `RESPOOL_INVALID_ARGUMENT` with a last-error message that states the
/// limit. `respool_pool_new` fails with `RESPOOL_SPAWN_FAILED` if the system
/// cannot provide the stacks (an address-space limit, `ulimit -v`).
///
/// Thread safety: any thread, but no other call on `config` may be in
/// progress (see `respool_config`).
///
/// # Safety
///
/// `config` is NULL or a live configuration used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn respool_config_set_stack_size(
    config: *mut respool_config,
    bytes: usize,
) -> respool_result {
    // SAFETY: forwarded contract.
    unsafe {
        with_config("respool_config_set_stack_size", config, |c| {
            respool::limits::check_stack_size(bytes).map_err(|e| {
                let bound = if bytes < respool::limits::MIN_STACK_SIZE {
                    "RESPOOL_MIN_STACK_SIZE"
                } else {
                    "RESPOOL_MAX_STACK_SIZE"
                };
                limit_error(&e, bound)
            })?;
            c.stack_size = Some(bytes);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_numbers_cover_every_fit_in_order() {
        // Every fit of the packer has exactly one C number, in `Fit::ALL`'s
        // order: a new `Fit` or `Score` variant fails here until it is
        // given a number.
        let fits: Vec<Fit> = respool_placement::ALL.iter().map(|p| p.fit()).collect();
        assert_eq!(fits, Fit::ALL);
        for (i, p) in respool_placement::ALL.iter().enumerate() {
            assert_eq!(*p as u32 as usize, i, "{p:?}");
            assert_eq!(respool_placement::from_u32(*p as u32), Some(*p));
        }
        assert_eq!(respool_placement::from_u32(12), None);
        assert_eq!(respool_placement::from_u32(u32::MAX), None);
        // Pinned numbers: changing one breaks every compiled C program.
        assert_eq!(respool_placement::RESPOOL_PLACEMENT_FIRST_FIT as u32, 0);
        assert_eq!(
            respool_placement::RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT as u32,
            2
        );
        assert_eq!(
            respool_placement::RESPOOL_PLACEMENT_WORST_FIT_BALANCED_ALLOCATION as u32,
            11
        );
    }
}
