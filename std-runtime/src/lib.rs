//! # respool
//!
//! The std runtime of respool. This first release re-exports the
//! allocation-free core ([`respool_core`]); the pool itself is built on it.
#![warn(missing_docs)]

pub use respool_core as core;
pub use respool_core::{Dim, Ppm, Resources, Shortfall};

pub mod sys;
