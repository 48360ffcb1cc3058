//! Asymmetric memory barriers: a free fence on a hot path, paired with an
//! expensive one on a rare path.
//!
//! A worker puts a finished task's reservation into its release log with a
//! plain store and then looks whether anyone waits for capacity; a
//! submitter about to wait says so and then gives every log back (see
//! `respool_core::ReleaseLog`). That is Dekker's pattern, which needs a
//! full fence on both sides, and the worker's side runs once per task.
//! [`light`] is that fence on the worker; [`heavy`] is the submitter's.
//!
//! On Linux, [`heavy`] is `membarrier(2)` (private expedited): every thread
//! of the process that is running executes a full barrier, and one that is
//! not running went through a context switch, which is one. So [`light`]
//! only has to stop the compiler from moving the load before the store.
//! Where that call is missing (other systems, kernels before 4.14, a
//! sandbox that forbids it) both are `SeqCst` fences, the textbook pairing.
//! The same technique is folly's `asymmetricThreadFenceLight/Heavy` and
//! liburcu's `urcu-memb` flavour. (The `membarrier` crate offers it too, but
//! aborts the process when the call fails; a library must not.)
//!
//! Once someone has waited, workers give reservations back at once instead
//! (`Scheduler::direct`) until a stretch of releases finds nobody waiting,
//! and a first waiter meanwhile needs neither half (`Shared::first_waiter`
//! says why): a queue that empties and refills does not pay a
//! `membarrier(2)` per refill.
//!
//! [`init`] registers the process (once, before the first pool's workers
//! start); until it has, and if it fails, both sides use fences.

use std::sync::atomic::{AtomicU8, Ordering, compiler_fence, fence};

/// Not registered (yet): fences on both sides.
const FENCES: u8 = 0;
/// Registered for private expedited `membarrier`.
const MEMBARRIER: u8 = 1;

static MODE: AtomicU8 = AtomicU8::new(FENCES);

/// Registers the process for the fast pairing if the system offers it.
/// Idempotent; cheap after the first call.
pub(crate) fn init() {
    if MODE.load(Ordering::Acquire) == MEMBARRIER {
        return;
    }
    if sys::register() {
        MODE.store(MEMBARRIER, Ordering::Release);
    }
}

/// Whether [`heavy`] is a process-wide barrier.
#[cfg(test)]
fn is_asymmetric() -> bool {
    MODE.load(Ordering::Acquire) == MEMBARRIER
}

/// The hot path's half: between a store and a load that must not pass it.
#[inline]
pub(crate) fn light() {
    if MODE.load(Ordering::Relaxed) == MEMBARRIER {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The rare path's half: orders this thread's earlier stores before its
/// later loads as seen by every thread that ran [`light`].
pub(crate) fn heavy() {
    // A full fence in any case: it orders this thread's own accesses, and
    // pairs with the fences of a `light` that ran before `init`.
    fence(Ordering::SeqCst);
    if MODE.load(Ordering::Acquire) == MEMBARRIER && !sys::barrier() {
        // It worked at registration and fails now (it should not). Fall
        // back to fences from here on; a light barrier that ran before this
        // is only a compiler fence, so a worker's last addition may be seen
        // late: it gives it back itself at its next task or before it
        // idles. Capacity is late, never over-committed.
        MODE.store(FENCES, Ordering::Release);
        tracing::warn!(
            target: "respool::sys",
            "membarrier failed after registering; using fences from now on"
        );
    }
}

#[cfg(target_os = "linux")]
mod sys {
    // `include/uapi/linux/membarrier.h` (the libc crate does not name them).
    const CMD_QUERY: libc::c_int = 0;
    const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    fn membarrier(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: membarrier(2) takes three integers (command, flags, CPU
        // id) and touches no memory of ours; an unknown command or a
        // missing system call is reported as -1 with errno, not undefined.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_uint,
                0 as libc::c_int,
            )
        }
    }

    /// Whether the kernel offers the private expedited commands.
    pub(super) fn supported() -> bool {
        let offered = membarrier(CMD_QUERY);
        let needed = libc::c_long::from(CMD_PRIVATE_EXPEDITED | CMD_REGISTER_PRIVATE_EXPEDITED);
        offered >= 0 && offered & needed == needed
    }

    pub(super) fn register() -> bool {
        supported() && membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0
    }

    pub(super) fn barrier() -> bool {
        membarrier(CMD_PRIVATE_EXPEDITED) == 0
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub(super) fn supported() -> bool {
        false
    }

    pub(super) fn register() -> bool {
        false
    }

    pub(super) fn barrier() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_exactly_when_the_system_offers_membarrier() {
        // Both halves work before registering (fences)...
        light();
        heavy();
        init();
        init();
        // ...the process is registered when (and only when) the kernel
        // offers the commands, and a heavy barrier then succeeds (a failure
        // would have switched back to fences).
        assert_eq!(is_asymmetric(), sys::supported());
        light();
        heavy();
        assert_eq!(is_asymmetric(), sys::supported());
        println!("membarrier: {}", is_asymmetric());
    }
}
