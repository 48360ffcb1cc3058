//! Small synchronisation helpers shared by every module (the bottom layer:
//! it imports nothing of the crate).

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: the data guarded in this crate stays
/// consistent even if a holder panicked (no invariants span a panic point).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
