//! Type-erased `FnOnce` storage without a heap allocation for small closures.
//!
//! A [`Job`] holds a closure inline when it fits in [`INLINE_WORDS`] machine
//! words with at most word alignment (a closure capturing a few references,
//! an `Arc` or two, a counter), and boxes it otherwise. Small closures are
//! the common case for a task pool, and keeping them out of the allocator is
//! what lets `Pool::execute` run with no heap allocation per task (see
//! BENCHMARKS.md for the allocation count).
//!
//! The layout is the classic "small buffer optimisation" for callables, as in
//! `std::function` implementations and the `smallbox` crate: a buffer plus a
//! static table of two functions (call, drop) specialised for the closure type.

use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit, align_of, size_of};
use std::ptr;

/// Words of inline storage for a closure.
pub(crate) const INLINE_WORDS: usize = 4;

type Buffer = [usize; INLINE_WORDS];

/// The two operations a stored closure supports.
struct VTable {
    /// Moves the closure out of the buffer and calls it.
    call: unsafe fn(*mut u8),
    /// Drops the closure in the buffer without calling it.
    drop: unsafe fn(*mut u8),
}

/// A type-erased `FnOnce() + Send`.
pub(crate) struct Job {
    data: MaybeUninit<Buffer>,
    vtable: &'static VTable,
    /// A `Job` is `Send` (its closure is) but not `Sync`.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: every constructor requires the closure to be `Send`, and the buffer
// is only ever accessed by the thread that owns the `Job`.
unsafe impl Send for Job {}

/// Whether `F` can live in the inline buffer.
const fn fits_inline<F>() -> bool {
    size_of::<F>() <= size_of::<Buffer>() && align_of::<F>() <= align_of::<Buffer>()
}

struct Inline<F>(PhantomData<F>);
impl<F: FnOnce()> Inline<F> {
    const VTABLE: VTable = VTable {
        call: Self::call,
        drop: Self::drop,
    };

    /// # Safety
    ///
    /// `p` points to a live, properly aligned `F` written by `Job::new_unchecked`;
    /// it is not used again after this call.
    unsafe fn call(p: *mut u8) {
        // SAFETY: per the contract, `p` holds a valid `F` that is moved out
        // exactly once here; the buffer is then treated as uninitialised.
        let f = unsafe { ptr::read(p.cast::<F>()) };
        f();
    }

    /// # Safety
    ///
    /// As for `call`.
    unsafe fn drop(p: *mut u8) {
        // SAFETY: per the contract, `p` holds a valid `F` dropped exactly once.
        unsafe { ptr::drop_in_place(p.cast::<F>()) };
    }
}

struct Boxed<F>(PhantomData<F>);
impl<F: FnOnce()> Boxed<F> {
    const VTABLE: VTable = VTable {
        call: Self::call,
        drop: Self::drop,
    };

    /// # Safety
    ///
    /// `p` points to a `*mut F` obtained from `Box::into_raw`, used once.
    unsafe fn call(p: *mut u8) {
        // SAFETY: per the contract the buffer holds a pointer from
        // `Box::into_raw`, which is turned back into the box exactly once.
        let f = unsafe { Box::from_raw(ptr::read(p.cast::<*mut F>())) };
        f();
    }

    /// # Safety
    ///
    /// As for `call`.
    unsafe fn drop(p: *mut u8) {
        // SAFETY: as in `call`, the box is reconstructed exactly once.
        drop(unsafe { Box::from_raw(ptr::read(p.cast::<*mut F>())) });
    }
}

impl Job {
    /// Stores `f`.
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F) -> Job {
        // SAFETY: `F: 'static`, so nothing it borrows can expire.
        unsafe { Job::new_unchecked(f) }
    }

    /// Stores `f`, whose borrows may be shorter than `'static`.
    ///
    /// # Safety
    ///
    /// The caller guarantees the returned job is run or dropped before any
    /// borrow captured by `f` ends (`Pool::scope` waits for all its jobs).
    pub(crate) unsafe fn new_unchecked<'a, F: FnOnce() + Send + 'a>(f: F) -> Job {
        let mut data = MaybeUninit::<Buffer>::uninit();
        if fits_inline::<F>() {
            // SAFETY: the buffer is large and aligned enough for `F`
            // (`fits_inline`), and is uninitialised, so writing does not
            // overwrite a live value.
            unsafe { data.as_mut_ptr().cast::<F>().write(f) };
            Job {
                data,
                vtable: &Inline::<F>::VTABLE,
                _not_sync: PhantomData,
            }
        } else {
            let raw = Box::into_raw(Box::new(f));
            // SAFETY: a pointer fits in the (pointer-aligned) buffer.
            unsafe { data.as_mut_ptr().cast::<*mut F>().write(raw) };
            Job {
                data,
                vtable: &Boxed::<F>::VTABLE,
                _not_sync: PhantomData,
            }
        }
    }

    /// Calls the closure, consuming the job. A panic in the closure
    /// propagates; the closure has been moved out by then, so nothing is
    /// dropped twice.
    pub(crate) fn run(self) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the buffer holds the value written by the constructor that
        // picked this vtable; `ManuallyDrop` keeps `Drop` from touching it again.
        unsafe { (this.vtable.call)(this.data.as_mut_ptr().cast()) }
    }

    /// Whether a closure of type `F` would be stored without allocating.
    #[cfg(test)]
    pub(crate) const fn is_inline<F>() -> bool {
        fits_inline::<F>()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: a `Job` that is dropped was never run (`run` wraps it in
        // `ManuallyDrop`), so the buffer still holds the closure.
        unsafe { (self.vtable.drop)(self.data.as_mut_ptr().cast()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn small_closures_are_inline_large_ones_boxed() {
        let a = Arc::new(AtomicUsize::new(0));
        let small = {
            let a = a.clone();
            move || {
                a.fetch_add(1, Ordering::SeqCst);
            }
        };
        fn inline_of<F>(_: &F) -> bool {
            Job::is_inline::<F>()
        }
        assert!(inline_of(&small));
        let big_payload = [7u64; 16];
        let big = {
            let a = a.clone();
            move || {
                a.fetch_add(big_payload.iter().sum::<u64>() as usize, Ordering::SeqCst);
            }
        };
        assert!(!inline_of(&big));
        Job::new(small).run();
        Job::new(big).run();
        assert_eq!(a.load(Ordering::SeqCst), 1 + 7 * 16);
    }

    #[test]
    fn captured_values_are_dropped_exactly_once() {
        for boxed in [false, true] {
            let drops = Arc::new(AtomicUsize::new(0));
            let make = |d: &Arc<AtomicUsize>| -> Job {
                let guard = CountDrop(d.clone());
                if boxed {
                    let pad = [1u8; 64];
                    let f = move || {
                        let _g = &guard;
                        std::hint::black_box(pad);
                    };
                    assert!(!Job::is_inline::<&dyn Fn()>() || std::mem::size_of_val(&f) > 32);
                    Job::new(f)
                } else {
                    let f = move || {
                        let _g = &guard;
                    };
                    assert!(std::mem::size_of_val(&f) <= 32);
                    Job::new(f)
                }
            };
            // Run: dropped once by the call.
            make(&drops).run();
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            // Not run: dropped once by Drop.
            drop(make(&drops));
            assert_eq!(drops.load(Ordering::SeqCst), 2);
            // Panics: dropped once during unwinding.
            let d2 = drops.clone();
            let job = Job::new(move || {
                let _g = CountDrop(d2);
                panic!("task failed");
            });
            assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run())).is_err());
            assert_eq!(drops.load(Ordering::SeqCst), 3);
        }
    }

    #[test]
    fn over_aligned_closures_are_boxed() {
        #[repr(align(64))]
        struct Aligned(u8);
        let x = Aligned(3);
        let f = move || {
            let whole = x; // capture the whole (64-byte aligned) value
            assert_eq!(whole.0, 3);
        };
        fn inline_of<F>(_: &F) -> bool {
            Job::is_inline::<F>()
        }
        assert!(!inline_of(&f));
        Job::new(f).run();
    }
}
