//! Per-task measurement: what a task really used.
//!
//! (Wall time, waiting time and self-reported usage for now; CPU time, I/O
//! and heap bytes arrive with the measured-execution work.)

use std::cell::Cell;

use respool_core::{Dim, Resources};

thread_local! {
    /// Usage reported by the task running on this thread.
    static REPORTED: Cell<Resources> = const { Cell::new(Resources::NONE) };
}

/// Records usage of `dim` reported by the running task (keeps the largest).
pub(crate) fn report_usage(dim: Dim, amount: u64) {
    REPORTED.with(|r| {
        let mut v = r.get();
        let current = v.get(dim).unwrap_or(0);
        v = v.with_saturating(dim, current.max(amount));
        r.set(v);
    });
}

/// Takes (and clears) what the running task reported.
pub(crate) fn take_reported() -> Resources {
    REPORTED.with(|r| r.replace(Resources::NONE))
}
