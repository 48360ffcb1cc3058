//! Shared helpers for the respool benchmarks.

pub mod sim;
