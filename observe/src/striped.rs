//! Counters striped over cache-padded cells, one per shard of threads, so
//! that threads counting at once never write the same cache line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// Cells of a [`Striped`] counter: one per shard of threads, each on its
/// own cache lines, so that workers counting at once never write the same
/// line (a shared counter bounced between cores costs more than the rest
/// of the event; see BENCHMARKS.md, "What observing costs").
pub(crate) const SHARDS: usize = 8;

/// The shard of the calling thread: threads take shards in turn, the
/// first time they count.
pub(crate) fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// A counter striped over [`SHARDS`] padded cells: adds go to the
/// calling thread's cell, reads sum them (wrapping, so that a gauge may be
/// raised on one thread and lowered on another). The `Ordering` argument
/// mirrors `AtomicU64`'s; cells are always relaxed.
pub(crate) struct Striped([CachePadded<AtomicU64>; SHARDS]);

impl Striped {
    pub(crate) fn new() -> Striped {
        Striped(std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))))
    }

    fn cell(&self) -> &AtomicU64 {
        // `shard()` is below SHARDS; the fallback keeps this panic-free.
        self.0.get(shard()).unwrap_or(&self.0[0])
    }

    pub(crate) fn fetch_add(&self, v: u64, _: std::sync::atomic::Ordering) {
        self.cell().fetch_add(v, Relaxed);
    }

    pub(crate) fn load(&self, _: std::sync::atomic::Ordering) -> u64 {
        self.0
            .iter()
            .fold(0u64, |a, c| a.wrapping_add(c.load(Relaxed)))
    }
}

/// A gauge that goes up and down: a [`Striped`] counter read as two's
/// complement.
pub(crate) struct StripedI64(Striped);

impl StripedI64 {
    pub(crate) fn new() -> StripedI64 {
        StripedI64(Striped::new())
    }

    #[allow(clippy::cast_sign_loss)]
    pub(crate) fn fetch_add(&self, v: i64, o: std::sync::atomic::Ordering) {
        self.0.fetch_add(v as u64, o);
    }

    #[allow(clippy::cast_sign_loss)]
    pub(crate) fn fetch_sub(&self, v: i64, o: std::sync::atomic::Ordering) {
        self.0.fetch_add(v.wrapping_neg() as u64, o);
    }

    #[allow(clippy::cast_possible_wrap)]
    pub(crate) fn load(&self, o: std::sync::atomic::Ordering) -> i64 {
        self.0.load(o) as i64
    }
}
