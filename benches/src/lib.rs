//! Shared code of the respool benchmarks: the peer pools and workloads.

pub mod peers;
