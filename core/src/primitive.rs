//! The one place in `respool-core` that names atomics.
//!
//! Every other module imports `crate::primitive::sync::atomic::*`, never
//! `core::sync::atomic` directly. Under `--cfg respool_loom` the same names
//! resolve to [loom](https://docs.rs/loom)'s model-checked atomics, so the
//! loom models in `core/tests/loom_*.rs` explore every interleaving of the
//! real tracker and admission code rather than of a copy.
//!
//! The pattern follows crossbeam (`crossbeam-utils/src/lib.rs`, the `primitive`
//! module) and tokio (`tokio/src/loom/`).

/// Synchronisation primitives.
pub(crate) mod sync {
    /// Atomic integer types and memory orderings.
    pub(crate) mod atomic {
        #[cfg(not(respool_loom))]
        pub(crate) use core::sync::atomic::{
            AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering,
        };
        #[cfg(respool_loom)]
        pub(crate) use loom::sync::atomic::{
            AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering,
        };
    }
}

/// Processor hints.
pub(crate) mod hint {
    /// Tells the processor (or loom's scheduler) that this thread is spinning.
    #[inline]
    pub(crate) fn spin_loop() {
        #[cfg(not(respool_loom))]
        core::hint::spin_loop();
        #[cfg(respool_loom)]
        loom::hint::spin_loop();
    }
}
