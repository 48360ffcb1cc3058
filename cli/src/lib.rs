//! The `respool` command's library: its modules, public so that the
//! integration tests under `tests/` can reach them.

pub mod job;
