//! The bounds on every size a pool is configured with, in one place.
//!
//! A pool allocates some of its state up front, sized by its configuration:
//! a thread (and its stack) per worker, a slot per run-queue entry, a slot
//! per waiting task, an entry per lookahead position. Each such size is
//! bounded here, so that no setting, however absurd, makes the pool ask for
//! more memory than a machine has (which aborts the process instead of
//! returning an error). A value outside its bounds is refused by
//! [`Builder::build`](crate::builder::Builder::build) (and by the batch API's
//! [`BatchConfig::validate`](crate::batch::BatchConfig::validate)) with
//! [`BuildError::TooLarge`] or [`BuildError::TooSmall`], which name the
//! setting, the value and the limit.
//!
//! The limits are far above what a real configuration uses; each says why
//! it is where it is.
//!
//! | setting | bounds | default |
//! |---|---|---|
//! | [`workers`](crate::builder::Builder::workers), batch [`workers`](crate::batch::BatchConfig::workers) | 1 to [`MAX_WORKERS`] (4096) | the CPUs available |
//! | [`queue_capacity`](crate::builder::Builder::queue_capacity) | 1 to [`MAX_QUEUE_CAPACITY`] (2^20) | 4096 |
//! | [`max_waiting`](crate::builder::Builder::max_waiting) | 0 to [`MAX_WAITING`] (2^32 - 1) | not set: backpressure at 4096 waiting tasks, never refused |
//! | [`stack_size`](crate::builder::Builder::stack_size) | [`MIN_STACK_SIZE`] (64 KiB) to [`MAX_STACK_SIZE`] (1 GiB) | the Rust default, 2 MiB |
//! | [`lookahead`](crate::builder::Builder::lookahead) width | 1 (0 counts as 1) to [`MAX_LOOKAHEAD`] (1024) | 8 |
//!
//! Text that respool echoes in an error message (an amount that did not
//! parse, a path) is cut to [`MAX_ECHO`] bytes ([`Excerpt`]).

use crate::error::BuildError;

// How every respool error message quotes text: defined in respool-sys, whose
// errors quote what they read, and used by the crates above it.
pub use respool_sys::{Excerpt, MAX_ECHO};

/// The most worker threads a pool (or lanes a batch run) may have: 4096.
///
/// Twice the hardware threads of the largest single-system-image servers
/// (about 2,000): a resource-aware pool gains nothing from more workers than
/// CPUs, since tasks that wait for I/O are better declared than hidden
/// behind extra threads. At 4096 workers the per-worker state stays bounded:
/// 8 GiB of address space reserved for stacks at the default 2 MiB (most
/// of it never touched), a release log and counters each.
pub const MAX_WORKERS: usize = 4096;

/// The most slots of a run queue: 2^20 (1,048,576).
///
/// The slots are allocated when the pool is built, about 100 bytes each, for
/// the pool's queue and one queue per CPU placement domain: about 100 MiB
/// per queue at the limit. Admitted tasks beyond the slots go to an
/// overflow list, so a larger ring only costs memory.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;

/// The most tasks that may wait for resources: 2^32 - 1, the most the
/// core's scored wait queue indexes (its slots are numbered with `u32`).
///
/// The wait queue is allocated as it fills (64 slots, doubling up to the
/// bound; about 384 bytes a slot on x86_64), so a large bound costs nothing
/// until tasks wait: what it takes is what waits.
pub const MAX_WAITING: usize = u32::MAX as usize;

/// The smallest stack of a worker thread: 64 KiB.
///
/// Above the platform's minimum (`PTHREAD_STACK_MIN`, 16 KiB on Linux
/// x86_64), and enough for respool's own frames around a task (measuring,
/// catching and reporting a panic); a task that needs more needs a larger
/// stack anyway.
pub const MIN_STACK_SIZE: usize = 64 << 10;

/// The largest stack of a worker thread: 1 GiB, the largest stack a Go
/// program's goroutine may grow to on 64-bit systems. The whole stack is
/// reserved as address space when the worker starts.
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// The widest lookahead window: 1024 waiting tasks.
///
/// The window is allocated when the pool is built and scanned on every
/// admission round, so its width is paid on each release of resources; past
/// a few dozen, a wider window finds nothing a narrower one would not.
pub const MAX_LOOKAHEAD: usize = 1024;

/// Checks that `value` of `setting` lies in `min..=max`.
pub(crate) fn check(
    setting: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), BuildError> {
    if value > max {
        Err(BuildError::TooLarge {
            setting,
            value,
            max,
        })
    } else if value < min {
        Err(BuildError::TooSmall {
            setting,
            value,
            min,
        })
    } else {
        Ok(())
    }
}

/// Checks a worker (or lane) count against [`MAX_WORKERS`] (zero is
/// reported by its own error, [`BuildError::ZeroWorkers`]).
///
/// # Errors
///
/// [`BuildError::TooLarge`] above [`MAX_WORKERS`].
pub fn check_workers(workers: usize) -> Result<(), BuildError> {
    check("workers", workers, 0, MAX_WORKERS)
}

/// Checks a maximum number of waiting tasks against [`MAX_WAITING`].
///
/// # Errors
///
/// [`BuildError::TooLarge`] above [`MAX_WAITING`].
pub fn check_max_waiting(max_waiting: usize) -> Result<(), BuildError> {
    check("max_waiting", max_waiting, 0, MAX_WAITING)
}

/// Checks a worker stack size against [`MIN_STACK_SIZE`] and
/// [`MAX_STACK_SIZE`].
///
/// # Errors
///
/// [`BuildError::TooSmall`] below [`MIN_STACK_SIZE`] (0 included),
/// [`BuildError::TooLarge`] above [`MAX_STACK_SIZE`].
pub fn check_stack_size(bytes: usize) -> Result<(), BuildError> {
    check("stack_size", bytes, MIN_STACK_SIZE, MAX_STACK_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_bound_that_is_crossed() {
        assert!(check("x", 5, 1, 10).is_ok());
        assert!(check("x", 1, 1, 10).is_ok());
        assert!(check("x", 10, 1, 10).is_ok());
        assert!(matches!(
            check("x", 11, 1, 10),
            Err(BuildError::TooLarge {
                setting: "x",
                value: 11,
                max: 10
            })
        ));
        assert!(matches!(
            check("x", 0, 1, 10),
            Err(BuildError::TooSmall {
                setting: "x",
                value: 0,
                min: 1
            })
        ));
    }

    #[test]
    fn every_limit_is_accepted_and_one_more_is_not() {
        assert!(check_workers(MAX_WORKERS).is_ok());
        assert!(check_workers(MAX_WORKERS + 1).is_err());
        assert!(check_max_waiting(MAX_WAITING).is_ok());
        #[cfg(target_pointer_width = "64")]
        assert!(check_max_waiting(MAX_WAITING + 1).is_err());
        assert!(check_stack_size(MIN_STACK_SIZE).is_ok());
        assert!(check_stack_size(MAX_STACK_SIZE).is_ok());
        assert!(check_stack_size(MIN_STACK_SIZE - 1).is_err());
        assert!(check_stack_size(MAX_STACK_SIZE + 1).is_err());
        assert!(check_stack_size(0).is_err());
    }
}
