//! # respool-core
//!
//! The allocation-free heart of [respool](https://github.com/respool/respool), a
//! task pool that knows what its tasks cost. This crate is `#![no_std]` without
//! `alloc`: it holds the resource model, the lock-free [`Tracker`], admission
//! control, the packer, the scored wait queue and the predictors. It is driven by whatever threads or interrupts the caller has;
//! the `respool` crate is the std runtime built on it.
//!
//! ## Guarantees
//!
//! - **No allocation**: there is no `alloc` crate in the dependency graph;
//!   capacities of every container are const generics.
//! - **No panic on any input**: the crate denies `unwrap`, `expect`, indexing,
//!   unchecked arithmetic and explicit panics through clippy, and
//!   `ci/nostd.sh` links a `#![no_std]` binary whose panic handler is an
//!   undefined symbol, so any reachable panic fails the build.
//! - **No floating point** in any scheduling decision: amounts are `u64` in
//!   documented units and ratios are [`Ppm`] fixed point.
//! - **Concurrency proven with loom**: the tracker, the admission counters
//!   and the release log are model-checked (`ci/loom.sh`).
//!
//! ## A first look
//!
//! ```
//! use respool_core::{Dim, Resources, Tracker};
//!
//! // A machine with 4 cores and 8 GiB.
//! let capacity = Resources::new().with(Dim::Cpu, 4_000)?.with(Dim::Memory, 8 << 30)?;
//! let tracker = Tracker::new(&capacity);
//!
//! let task = Resources::new().with(Dim::Cpu, 1_000)?.with(Dim::Memory, 6 << 30)?;
//! let first = tracker.try_reserve(&task).expect("fits on an idle machine");
//! // A second one would need 12 GiB in total: refused, and the error says why.
//! let err = tracker.try_reserve(&task).unwrap_err();
//! assert_eq!((err.dim, err.by), (Dim::Memory, 4 << 30));
//! drop(first); // releasing is automatic and happens exactly once
//! assert!(tracker.try_reserve(&task).is_ok());
//! # Ok::<(), respool_core::ResourceError>(())
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
#![warn(missing_docs)]
#![deny(
    clippy::alloc_instead_of_core,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::float_arithmetic,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]
// Unit tests run on the host with std; the library itself is checked without
// these relaxations (clippy builds it both ways with --all-targets).
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::std_instead_of_alloc,
        clippy::std_instead_of_core,
        clippy::cast_possible_truncation
    )
)]

#[cfg(test)]
extern crate std;

mod primitive;

pub mod admission;
pub mod packer;
pub mod predict;
pub mod queue;
pub mod resource;
pub mod tracker;

pub use admission::{Admission, AdmissionConfig, Decision, Policy, RejectReason, Urgency};
pub use resource::{
    Dim, DimSet, MAX_AMOUNT, PerDim, Ppm, ResourceError, Resources, Shortfall, Unit,
};
pub use tracker::{
    DetachedReservation, LogWriter, PackedReservation, ReleaseLog, Reservation, Tracker,
    TrackerError,
};
