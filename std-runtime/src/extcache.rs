//! A process-wide cache of task descriptions (`Ext` boxes), so that
//! resource-aware tasks allocate nothing in steady state.
//!
//! A box is taken by the submitting thread and given back by the worker that
//! ran the task: a cross-thread flow. Each thread keeps a small local stack
//! (no synchronisation); a thread whose stack grows past `LOCAL_MAX` moves a
//! batch of `BATCH` boxes to a shared depot, and a thread whose stack is empty
//! takes a whole batch from it: one lock per `BATCH` tasks, in the style of
//! the magazines of Bonwick's slab allocator (USENIX 2001).

use std::cell::RefCell;
use std::sync::Mutex;

use crate::runq::lock;
use crate::task::Ext;

const BATCH: usize = 32;
const LOCAL_MAX: usize = 2 * BATCH;
/// Batches kept in the depot; more are freed.
const DEPOT_MAX: usize = 64;

// The boxes themselves are what is recycled (a task carries a `Box<Ext>`):
// storing them unboxed would copy every description in and out.
#[allow(clippy::vec_box)]
static DEPOT: Mutex<Vec<Vec<Box<Ext>>>> = Mutex::new(Vec::new());

thread_local! {
    #[allow(clippy::vec_box)]
    static LOCAL: RefCell<Vec<Box<Ext>>> = const { RefCell::new(Vec::new()) };
}

/// A cleared `Ext` box, recycled when one is available.
pub(crate) fn take() -> Box<Ext> {
    LOCAL
        .try_with(|local| {
            let mut local = local.try_borrow_mut().ok()?;
            if local.is_empty() {
                if let Some(batch) = lock(&DEPOT).pop() {
                    *local = batch;
                }
            }
            local.pop()
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Box::new(Ext::empty()))
}

/// Gives a box back for reuse (its references must already be cleared).
pub(crate) fn give(ext: Box<Ext>) {
    let _ = LOCAL.try_with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return;
        };
        local.push(ext);
        if local.len() > LOCAL_MAX {
            let at = local.len() - BATCH;
            let batch = local.split_off(at);
            let mut depot = lock(&DEPOT);
            if depot.len() < DEPOT_MAX {
                depot.push(batch);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_reused_across_threads() {
        let first = take();
        let addr = std::ptr::from_ref(&*first).addr();
        give(first);
        let again = take();
        assert_eq!(
            std::ptr::from_ref(&*again).addr(),
            addr,
            "same thread: reused"
        );
        give(again);
        // A worker gives back more than it keeps: batches reach the depot and
        // another thread takes them.
        let boxes: Vec<Box<Ext>> = (0..3 * BATCH).map(|_| Box::new(Ext::empty())).collect();
        std::thread::spawn(move || {
            for b in boxes {
                give(b);
            }
        })
        .join()
        .unwrap();
        let from_depot = std::thread::spawn(|| {
            let b = take();
            give(b);
            !lock(&DEPOT).is_empty() || LOCAL.with(|l| l.borrow().len()) > 0
        })
        .join()
        .unwrap();
        assert!(from_depot);
    }
}
