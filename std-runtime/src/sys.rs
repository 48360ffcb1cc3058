//! What the machine and the container offer, and what is in use: the
//! platform readings of the [`respool_sys`] crate.
//!
//! Everything of `respool_sys`, re-exported while the crate is split out;
//! the next commit curates it.

pub use respool_sys::*;
