//! Shared helpers for the respool benchmarks.
