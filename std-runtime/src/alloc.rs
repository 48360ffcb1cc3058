//! An opt-in global allocator that charges heap usage to the running task.
//!
//! Install it in a binary to let respool measure what each task allocates:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: respool::alloc::TrackingAllocator = respool::alloc::TrackingAllocator::system();
//! # fn main() {}
//! ```
//!
//! # How it works
//!
//! Every allocation gets an 8-byte header (more when the alignment asks for
//! it) just before the pointer returned to the caller. The header names the
//! *account* of the task that was running on the allocating thread: a slot
//! in a fixed table of [`ACCOUNTS`] counters, plus the slot's generation. On
//! `dealloc`, the header says which account to credit, whatever thread frees
//! the block, so memory that a task allocates and another thread frees is
//! still accounted to the task that allocated it. When a task ends its slot
//! is recycled with a new generation, and later frees of its blocks (a result
//! dropped by the caller) no longer count.
//!
//! Per account it counts bytes allocated, bytes freed, the peak of live
//! bytes (allocated minus freed) while the task ran, and the number of
//! allocations. Only the task's own thread charges its account, and it
//! also credits what it frees itself: those counters have one writer and
//! are plain relaxed loads and stores, with no read-modify-write on the
//! task's own allocations and frees. A block freed by another thread is
//! credited to a counter of its own with an atomic add. Each account has
//! its own cache lines (two tasks on two cores that allocate at the same
//! time do not contend for one). An allocation outside any task costs the
//! header and one thread-local read.
//! Nothing here allocates, locks or panics: the allocator must not re-enter
//! itself.
//!
//! The pool uses the live count to make *accounting follow reality*: when a
//! running task's live bytes pass the memory it reserved, its reservation is
//! grown on the spot (from inside the allocation, without allocating), so
//! new admissions pause instead of the machine running out.
//!
//! # Cost
//!
//! The header (8 bytes per allocation, more for over-aligned types) and a
//! few relaxed atomic operations per allocation; `BENCHMARKS.md` has the
//! measured cost per allocation against the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Number of accounts: the most tasks measured at the same time.
pub const ACCOUNTS: usize = 1024;

/// One task's counters. All but `freed_remote` have one writer, the thread
/// the account is current on (`charge`, and `credit` of its own frees), so
/// they are updated by a relaxed load and store, not a read-modify-write
/// (a locked instruction each, on the path of every allocation); blocks
/// freed on other threads go to `freed_remote`, an atomic add. Aligned to
/// 128 bytes (two cache lines, as the adjacent-line prefetcher pairs them)
/// so that accounts in use on different cores never share a line: sharing
/// one, with read-modify-writes on every allocation, made an
/// allocation-heavy task run twice as slowly beside another.
#[repr(align(128))]
struct Account {
    generation: AtomicU32,
    allocated: AtomicU64,
    allocations: AtomicU64,
    /// Freed on the account's own thread.
    freed_own: AtomicU64,
    /// Freed on any other thread.
    freed_remote: AtomicU64,
    peak: AtomicI64,
}

impl Account {
    /// Allocated minus freed.
    #[inline]
    fn live(&self, allocated: u64) -> i64 {
        let freed = self
            .freed_own
            .load(Ordering::Relaxed)
            .wrapping_add(self.freed_remote.load(Ordering::Relaxed));
        allocated.wrapping_sub(freed) as i64
    }
}

impl Account {
    const fn new() -> Account {
        Account {
            generation: AtomicU32::new(0),
            allocated: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
            freed_own: AtomicU64::new(0),
            freed_remote: AtomicU64::new(0),
            peak: AtomicI64::new(0),
        }
    }
}

static TABLE: [Account; ACCOUNTS] = [const { Account::new() }; ACCOUNTS];
/// Bit `i` set: slot `i` is in use. Slot 0 is never handed out ("no task").
static IN_USE: [AtomicU64; ACCOUNTS / 64] = [const { AtomicU64::new(0) }; ACCOUNTS / 64];

static INSTALLED: AtomicBool = AtomicBool::new(false);
static GLOBAL_ON: AtomicBool = AtomicBool::new(false);
static GLOBAL_LIVE: AtomicI64 = AtomicI64::new(0);
static GLOBAL_PEAK: AtomicI64 = AtomicI64::new(0);

/// What runs when the current task's live bytes pass its limit.
#[derive(Clone, Copy)]
pub(crate) struct Hook {
    /// Called with the task's live bytes; returns the new limit.
    pub(crate) grow: fn(*const (), i64) -> i64,
    pub(crate) data: *const (),
}

thread_local! {
    /// `(slot << 32) | generation` of the account charged on this thread.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    /// Live bytes above which `HOOK` runs.
    static LIMIT: Cell<i64> = const { Cell::new(i64::MAX) };
    static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
    /// Set while the hook runs, so that it cannot re-enter itself.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// A global allocator that charges every allocation to the task running on
/// the allocating thread. See the [module documentation](self).
#[derive(Debug, Default)]
pub struct TrackingAllocator<A = System> {
    inner: A,
}

impl TrackingAllocator<System> {
    /// Tracking on top of the system allocator.
    #[must_use]
    pub const fn system() -> TrackingAllocator<System> {
        TrackingAllocator { inner: System }
    }
}

impl<A> TrackingAllocator<A> {
    /// Tracking on top of `inner` (jemalloc, mimalloc, ...).
    pub const fn new(inner: A) -> TrackingAllocator<A> {
        TrackingAllocator { inner }
    }
}

/// Bytes before the returned pointer: at least 8 (the header), a multiple of
/// the alignment.
#[inline]
fn header_size(align: usize) -> usize {
    align.max(8)
}

#[inline]
fn inner_layout(layout: Layout) -> Option<Layout> {
    let h = header_size(layout.align());
    Layout::from_size_align(layout.size().checked_add(h)?, layout.align().max(8)).ok()
}

#[inline]
fn split(tag: u64) -> (usize, u32) {
    ((tag >> 32) as usize, tag as u32)
}

#[inline]
fn charge(tag: u64, size: usize) {
    let size = size as i64;
    if GLOBAL_ON.load(Ordering::Relaxed) {
        let live = GLOBAL_LIVE.fetch_add(size, Ordering::Relaxed) + size;
        GLOBAL_PEAK.fetch_max(live, Ordering::Relaxed);
    }
    let (slot, _) = split(tag);
    if slot == 0 {
        return;
    }
    let Some(a) = TABLE.get(slot) else { return };
    // This thread is the account's only writer (see `Account`): loads and
    // stores, no read-modify-write.
    let allocated = a
        .allocated
        .load(Ordering::Relaxed)
        .wrapping_add(size as u64);
    a.allocated.store(allocated, Ordering::Relaxed);
    let allocations = a.allocations.load(Ordering::Relaxed);
    a.allocations
        .store(allocations.wrapping_add(1), Ordering::Relaxed);
    let live = a.live(allocated);
    if live > a.peak.load(Ordering::Relaxed) {
        a.peak.store(live, Ordering::Relaxed);
    }
    if live > LIMIT.with(Cell::get) {
        run_hook(live);
    }
}

#[cold]
fn run_hook(live: i64) {
    if IN_HOOK.with(|h| h.replace(true)) {
        return;
    }
    if let Some(hook) = HOOK.with(Cell::get) {
        let limit = (hook.grow)(hook.data, live);
        LIMIT.with(|l| l.set(limit));
    }
    IN_HOOK.with(|h| h.set(false));
}

#[inline]
fn credit(tag: u64, size: usize) {
    let size = size as i64;
    if GLOBAL_ON.load(Ordering::Relaxed) {
        GLOBAL_LIVE.fetch_sub(size, Ordering::Relaxed);
    }
    let (slot, generation) = split(tag);
    if slot == 0 {
        return;
    }
    let Some(a) = TABLE.get(slot) else { return };
    if a.generation.load(Ordering::Relaxed) != generation {
        return; // The task has ended: its account was recycled.
    }
    let size = size as u64;
    if current_tag() == tag {
        // The account's own thread, its only writer of `freed_own`.
        let freed = a.freed_own.load(Ordering::Relaxed);
        a.freed_own
            .store(freed.wrapping_add(size), Ordering::Relaxed);
    } else {
        a.freed_remote.fetch_add(size, Ordering::Relaxed);
    }
}

#[inline]
fn current_tag() -> u64 {
    // `try_with`: during thread teardown the slot may be gone; charge nothing.
    CURRENT.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: every method forwards to `inner` with a layout that is `layout`
// grown by `header_size` bytes and aligned at least as strictly, and returns
// a pointer `header_size` bytes into the inner block, so the caller's block
// is in bounds, aligned to `layout.align()` (the header size is a multiple
// of it) and not aliased. `dealloc`/`realloc` recover the inner pointer and
// layout by the same arithmetic, since the caller passes the same layout.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl comment).
        unsafe { self.alloc_with(layout, false) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl comment).
        unsafe { self.alloc_with(layout, true) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let h = header_size(layout.align());
        let Some(inner) = inner_layout(layout) else {
            return;
        };
        // SAFETY: `ptr` came from `alloc_with` with this layout, so the block
        // starts `h` bytes before it and the header sits in its last 8 bytes.
        unsafe {
            let tag = ptr.sub(8).cast::<u64>().read();
            credit(tag, layout.size());
            self.inner.dealloc(ptr.sub(h), inner);
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let h = header_size(layout.align());
        let (Some(inner), Some(new_inner_size)) = (inner_layout(layout), new_size.checked_add(h))
        else {
            return std::ptr::null_mut();
        };
        // SAFETY: as in `dealloc`; the inner block is reallocated with the
        // same alignment and `h` more bytes than the caller asked for.
        unsafe {
            let old_tag = ptr.sub(8).cast::<u64>().read();
            let base = self.inner.realloc(ptr.sub(h), inner, new_inner_size);
            if base.is_null() {
                return base;
            }
            let new = base.add(h);
            credit(old_tag, layout.size());
            let tag = current_tag();
            new.sub(8).cast::<u64>().write(tag);
            charge(tag, new_size);
            new
        }
    }
}

impl<A: GlobalAlloc> TrackingAllocator<A> {
    /// # Safety
    ///
    /// The `GlobalAlloc::alloc` contract.
    #[inline]
    unsafe fn alloc_with(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
        let h = header_size(layout.align());
        let Some(inner) = inner_layout(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `inner` has a non-zero size (at least the header).
        let base = unsafe {
            if zeroed {
                self.inner.alloc_zeroed(inner)
            } else {
                self.inner.alloc(inner)
            }
        };
        if base.is_null() {
            return base;
        }
        let tag = current_tag();
        // SAFETY: the block is `h + size` bytes; `h >= 8` and is a multiple
        // of 8, so `base + h - 8` is an aligned, in-bounds `u64` slot.
        unsafe {
            let ptr = base.add(h);
            ptr.sub(8).cast::<u64>().write(tag);
            charge(tag, layout.size());
            ptr
        }
    }
}

/// Whether a [`TrackingAllocator`] is the global allocator of this process
/// (it has served at least one allocation).
#[must_use]
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// What a task (or a closure run under [`measure`]) did with the heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapUsage {
    /// Bytes allocated (including reallocations' new sizes).
    pub allocated: u64,
    /// Bytes of its own allocations freed while it ran (by any thread).
    pub freed: u64,
    /// Largest live amount while it ran: allocated minus freed, at its peak.
    pub peak: u64,
    /// Allocated minus freed at the end (what it left behind, e.g. its result).
    pub live: i64,
    /// Number of allocations (and reallocations).
    pub allocations: u64,
}

/// An account in use on this thread; ends when dropped.
pub(crate) struct Session {
    tag: u64,
    previous: u64,
    previous_limit: i64,
    previous_hook: Option<Hook>,
}

/// Starts charging this thread's allocations to a fresh account. `None`
/// when no [`TrackingAllocator`] is installed (nothing would be counted: a
/// session would report a heap of zero bytes, and a class would learn that
/// it needs no memory) or every account is in use (the caller then runs
/// unmeasured).
pub(crate) fn begin() -> Option<Session> {
    if !is_installed() {
        return None;
    }
    let slot = acquire_slot()?;
    let a = TABLE.get(slot)?;
    a.allocated.store(0, Ordering::Relaxed);
    a.allocations.store(0, Ordering::Relaxed);
    a.freed_own.store(0, Ordering::Relaxed);
    a.freed_remote.store(0, Ordering::Relaxed);
    a.peak.store(0, Ordering::Relaxed);
    let generation = a.generation.load(Ordering::Relaxed);
    let tag = ((slot as u64) << 32) | u64::from(generation);
    let previous = CURRENT.with(|c| c.replace(tag));
    Some(Session {
        tag,
        previous,
        previous_limit: LIMIT.with(|l| l.replace(i64::MAX)),
        previous_hook: HOOK.with(|h| h.replace(None)),
    })
}

impl Session {
    /// Runs `hook` whenever live bytes pass `limit` (it returns the next limit).
    pub(crate) fn set_hook(&self, limit: i64, hook: Hook) {
        HOOK.with(|h| h.set(Some(hook)));
        LIMIT.with(|l| l.set(limit));
    }

    /// Usage so far.
    pub(crate) fn usage(&self) -> HeapUsage {
        let (slot, _) = split(self.tag);
        TABLE.get(slot).map_or(HeapUsage::default(), |a| {
            let allocated = a.allocated.load(Ordering::Relaxed);
            let live = a.live(allocated);
            HeapUsage {
                allocated,
                freed: allocated.wrapping_sub(live as u64),
                peak: a.peak.load(Ordering::Relaxed).max(0) as u64,
                live,
                allocations: a.allocations.load(Ordering::Relaxed),
            }
        })
    }

    /// Ends the session: restores the previous account and returns usage.
    pub(crate) fn end(self) -> HeapUsage {
        self.usage()
        // `Drop` restores the thread state and recycles the slot.
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
        LIMIT.with(|l| l.set(self.previous_limit));
        HOOK.with(|h| h.set(self.previous_hook));
        let (slot, _) = split(self.tag);
        if let Some(a) = TABLE.get(slot) {
            // New generation first: frees of this task's blocks stop counting.
            a.generation.fetch_add(1, Ordering::Relaxed);
        }
        release_slot(slot);
    }
}

/// This thread's allocations charged to no account, with no growth hook,
/// while it lives; dropped, it puts back the account (and the hook and
/// limit) that was in use, unchanged. For work nested inside a task that
/// is not the task's: another task run inline, the pool's bookkeeping.
pub(crate) struct Suspended {
    tag: u64,
    limit: i64,
    hook: Option<Hook>,
}

/// Suspends this thread's account; see [`Suspended`].
pub(crate) fn suspend() -> Suspended {
    Suspended {
        tag: CURRENT.with(|c| c.replace(0)),
        limit: LIMIT.with(|l| l.replace(i64::MAX)),
        hook: HOOK.with(|h| h.replace(None)),
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.tag));
        LIMIT.with(|l| l.set(self.limit));
        HOOK.with(|h| h.set(self.hook));
    }
}

fn acquire_slot() -> Option<usize> {
    for (w, word) in IN_USE.iter().enumerate() {
        let mut cur = word.load(Ordering::Relaxed);
        loop {
            // Slot 0 means "no task": never hand it out.
            let taken = if w == 0 { cur | 1 } else { cur };
            if taken == u64::MAX {
                break;
            }
            let bit = (!taken).trailing_zeros() as usize;
            match word.compare_exchange_weak(
                cur,
                cur | (1 << bit),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(w * 64 + bit),
                Err(actual) => cur = actual,
            }
        }
    }
    None
}

fn release_slot(slot: usize) {
    if let Some(word) = IN_USE.get(slot / 64) {
        word.fetch_and(!(1 << (slot % 64)), Ordering::Release);
    }
}

/// Runs `f` on this thread and returns what it did with the heap (all zeros
/// when no [`TrackingAllocator`] is installed). Nested calls each see only
/// their own allocations.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, HeapUsage) {
    match begin() {
        Some(session) => {
            let r = f();
            (r, session.end())
        }
        None => (f(), HeapUsage::default()),
    }
}

/// Process-wide live and peak heap bytes, counted while [`track_global`] is
/// on (it costs two atomic operations per allocation on a shared counter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalHeap {
    /// Bytes live now (allocated since tracking was switched on, minus freed).
    pub live: i64,
    /// The largest `live` since [`reset_global_peak`].
    pub peak: i64,
}

/// Switches process-wide live/peak counting on or off.
pub fn track_global(on: bool) {
    GLOBAL_ON.store(on, Ordering::Relaxed);
}

/// The process-wide counters.
#[must_use]
pub fn global() -> GlobalHeap {
    GlobalHeap {
        live: GLOBAL_LIVE.load(Ordering::Relaxed),
        peak: GLOBAL_PEAK.load(Ordering::Relaxed),
    }
}

/// Resets the process-wide peak to the current live amount.
pub fn reset_global_peak() {
    GLOBAL_PEAK.store(GLOBAL_LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}
