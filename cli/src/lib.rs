//! The `respool` command's library: its modules, public so that the
//! integration tests under `tests/` can reach them.

pub mod job;

pub mod args;
pub mod demo;
pub mod input;
pub mod joblog;
pub mod profiles;
pub mod progress;
pub mod replace;
pub mod results;
pub mod schedule;
