//! Shared code of the respool benchmarks: the peer pools and workloads
//! (`peers`), and the discrete-event placement simulator (`sim`).

pub mod peers;
pub mod sim;
