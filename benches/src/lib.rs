//! Shared code of the respool benchmarks: a counting allocator (`counting`), the peer pools and workloads
//! (`peers`), and the discrete-event placement simulator (`sim`).

pub mod counting;
pub mod peers;
pub mod sim;
