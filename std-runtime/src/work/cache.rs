//! A process-wide cache of task descriptions (`Description` boxes), so that
//! resource-aware tasks allocate nothing in steady state.
//!
//! A box is taken by the submitting thread and given back by the worker that
//! ran the task: a cross-thread flow. Each thread keeps a small local stack
//! (no synchronisation); a thread whose stack grows past `LOCAL_MAX` moves a
//! magazine of `BATCH` boxes to a shared depot, and a thread whose stack is
//! empty swaps it for a full magazine from the depot: one lock per `BATCH`
//! tasks, in the style of the magazines of Bonwick's slab allocator (USENIX
//! 2001). The depot keeps the empty magazines too, so that the vectors that
//! carry the boxes are recycled as well and steady state allocates nothing.

use std::cell::RefCell;
use std::sync::Mutex;

use super::Description;
use crate::sync::lock;

const BATCH: usize = 32;
const LOCAL_MAX: usize = 2 * BATCH;
/// Every magazine vector is made with this capacity, so a thread's local
/// stack (at most `LOCAL_MAX + 1` boxes) never has to grow.
const MAGAZINE: usize = LOCAL_MAX + 1;
/// Full magazines kept in the depot (more are freed), and as many empty ones.
const DEPOT_MAX: usize = 64;

// The boxes themselves are what is recycled (a task carries a `Box<Description>`):
// storing them unboxed would copy every description in and out.
#[allow(clippy::vec_box)]
type Magazine = Vec<Box<Description>>;

struct Depot {
    full: Vec<Magazine>,
    empty: Vec<Magazine>,
}

static DEPOT: Mutex<Depot> = Mutex::new(Depot {
    full: Vec::new(),
    empty: Vec::new(),
});

thread_local! {
    static LOCAL: RefCell<Magazine> = const { RefCell::new(Vec::new()) };
}

/// A cleared `Description` box, recycled when one is available.
pub(crate) fn take() -> Box<Description> {
    LOCAL
        .try_with(|local| {
            let mut local = local.try_borrow_mut().ok()?;
            if local.is_empty() {
                let mut depot = lock(&DEPOT);
                if let Some(mut full) = depot.full.pop() {
                    std::mem::swap(&mut *local, &mut full);
                    // `full` is now the thread's old, empty stack.
                    if full.capacity() >= MAGAZINE && depot.empty.len() < DEPOT_MAX {
                        depot.empty.push(full);
                    }
                }
            }
            local.pop()
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Box::new(Description::empty()))
}

/// Gives a box back for reuse (its references must already be cleared).
/// Clears a description and keeps it for reuse.
pub(crate) fn recycle(mut desc: Box<Description>) {
    desc.reset();
    give(desc);
}

/// Keeps a cleared description for reuse.
fn give(desc: Box<Description>) {
    let _ = LOCAL.try_with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return;
        };
        if local.capacity() < MAGAZINE {
            let len = local.len();
            local.reserve_exact(MAGAZINE - len);
        }
        local.push(desc);
        if local.len() > LOCAL_MAX {
            let at = local.len() - BATCH;
            let mut depot = lock(&DEPOT);
            if depot.full.len() < DEPOT_MAX {
                let mut magazine = depot
                    .empty
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(MAGAZINE));
                magazine.extend(local.drain(at..));
                depot.full.push(magazine);
            } else {
                local.truncate(at);
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
        let boxes: Vec<Box<Description>> = (0..3 * BATCH)
            .map(|_| Box::new(Description::empty()))
            .collect();
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
            !lock(&DEPOT).full.is_empty() || LOCAL.with(|l| l.borrow().len()) > 0
        })
        .join()
        .unwrap();
        assert!(from_depot);
    }
}
