//! A bounded priority queue of tasks waiting to be placed, ordered by a
//! dynamic score: priority, waiting time, deadline slack and resource fit.
//!
//! # The score
//!
//! Each queued [`Task`] carries its item, its resource request, a priority, the
//! time it was enqueued, and optionally a deadline and an expected duration.
//! Its score at time `now` against the free resources `avail` is
//!
//! ```text
//! score = w_p * priority                              (priority)
//!       + w_a * (now - enqueued)                      (aging)
//!       + w_s * max(0, H - slack),                    (least slack first)
//!             slack = deadline - now - expected       (0 without deadline)
//!       + [fits] * (w_f * 10^6 + w_t * align)         (fit, Tetris)
//! ```
//!
//! computed exactly in `i128` (see [`score`] for each term, its
//! units and where it comes from). The task with the highest score goes first;
//! among equal scores, the one pushed first (FIFO, by a sequence number).
//!
//! Aging bounds starvation: with `w_a > 0`, and apart from the deadline and
//! fit terms, a task of priority `p` enqueued at `e` goes before every task of
//! priority at most `p + k` enqueued after `e + k * w_p / w_a` (and ties, then
//! wins by FIFO, with one enqueued exactly then). With the default weights
//! one priority level is worth one second of waiting.
//!
//! # Lazy re-scoring: two heaps of time-invariant keys, searched by bound
//!
//! Scores change with time and with the free capacity, but re-scoring every
//! task on every pop would be `O(n)`. The queue avoids it by splitting the
//! score into parts that change in known ways:
//!
//! 1. **Time folds into the key.** Priority plus aging is
//!    `w_p * priority - w_a * enqueued + w_a * now = key_all + w_a * now`: every
//!    task moves up by the same `w_a * now`, so the order by `key_all` is the
//!    order at every time. The same holds for the deadline line, which is also
//!    linear in `now`: `key_all + w_s * (now + expected + H - deadline) =
//!    key_deadline + (w_a + w_s) * now`.
//! 2. **The `max(0, ..)` of the deadline term becomes two heaps.** For a task
//!    with a deadline, priority + aging + deadline is the maximum of its two
//!    lines. The maximum over all tasks of a maximum of two lines is the
//!    maximum of the per-line maxima, so the queue keeps *every* task in a heap
//!    by `key_all` and, in addition, every task with a deadline in a second
//!    heap by `key_deadline`. Both heaps are ordered by time-invariant keys
//!    (an indexed binary heap, Williams 1964, with a position map for removal
//!    by ticket), so they never need re-ordering as time passes, and the clock
//!    needs no monotonicity.
//! 3. **Fit is bounded, so a bound prunes the search.** The fit term depends on
//!    the free capacity, which changes with every reservation; it lies in
//!    `[0, M]` with `M = `[`Weights::fit_bound`]`(avail)`. In a heap every descendant of a
//!    node has a key at most the node's, so no task below node `j` can score
//!    more than `key_j + offset + M`. [`ScoredQueue::peek`] and
//!    [`ScoredQueue::pop`] evaluate the real score (all four terms, from the
//!    task's fields) of both roots, then walk each heap depth-first and skip
//!    every subtree whose bound cannot beat the best found so far (the
//!    standard threshold query on a binary heap). Ties in the bound are broken
//!    by sequence number exactly like scores, so equal keys never force a
//!    full scan.
//!
//! # Guarantee and complexity
//!
//! - **Exact** when the search completes: the popped task has the highest
//!   score over the whole queue, and the lowest sequence number among tasks
//!   with that score. This is what `core/tests/queue_props.rs` checks against
//!   a brute-force `O(n)` reference over random queues, clocks and free
//!   vectors.
//! - The search evaluates both roots, then at most
//!   [`QueueConfig::probe_limit`] more tasks. If that budget runs out, the
//!   result is flagged `exact: false` and its score is still **within `M` of
//!   the true maximum**: the roots hold the largest priority + aging + deadline
//!   part, and fit adds between 0 and `M`.
//! - With the fit weights at zero (`M = 0`) the search evaluates the two roots
//!   and prunes their children at once: `peek` is `O(1)`, `pop` `O(log n)`.
//!   With fit weights, a search evaluates only tasks whose priority + aging +
//!   deadline part is at least `best - M` (and at most `2 + probe_limit` of
//!   them), each in `O(Dim::COUNT)`, and compares the keys of their children:
//!   its cost depends on how many tasks the fit term could reorder, not on the
//!   queue's depth. When fit dominates every other term, that is every task,
//!   which is what the probe limit is for.
//! - `push`, [`take`](ScoredQueue::take) and [`remove`](ScoredQueue::remove)
//!   by ticket: `O(log n)`. [`remove_where`](ScoredQueue::remove_where) and
//!   [`expire`](ScoredQueue::expire): `O(n)` (one pass, then Floyd's heap
//!   construction). [`top_k`](ScoredQueue::top_k): the same search with the
//!   `k`-th best as threshold, `O(k)` per candidate.
//!
//! # Storage
//!
//! A queue runs over caller-provided [`Slot`]s: a fixed array
//! ([`ArrayQueue`], no allocation) or any slice the caller owns (a boxed
//! slice sized from configuration in the std runtime). Each slot holds one
//! task, and, at the same index, one cell of each heap; free slots are kept
//! in the tail of the all-tasks heap array, so no free list is needed. A full
//! queue hands the task back; nothing panics.
//!
//! # Examples
//!
//! ```
//! use respool_core::queue::{ArrayQueue, Availability, QueueConfig, Task, Weights};
//! use respool_core::{Dim, Resources};
//!
//! // One priority level is worth 1000 ns of waiting.
//! let weights = Weights { priority: 1_000, aging: 1, ..Weights::PRIORITY_ONLY };
//! let mut q: ArrayQueue<&str, 8> = ArrayQueue::new(QueueConfig::with_weights(weights));
//! let cpu = Resources::new().with(Dim::Cpu, 500)?;
//! q.push(Task::new("low, t=0", cpu, 0)).unwrap();
//! q.push(Task::new("high, t=500", cpu, 500).with_priority(1)).unwrap();
//! q.push(Task::new("high, t=1500", cpu, 1_500).with_priority(1)).unwrap();
//! // At t=2000 the scores are 2000, 1000 + 1500 and 1000 + 500: a task that
//! // has waited 1000 ns longer is worth one priority level more.
//! let free = Availability::NONE;
//! let first = q.pop(2_000, &free).unwrap();
//! assert_eq!((first.task.item, first.score, first.exact), ("high, t=500", 2_500, true));
//! assert_eq!(q.pop(2_000, &free).unwrap().task.item, "low, t=0");
//! assert_eq!(q.pop(2_000, &free).unwrap().task.item, "high, t=1500");
//! assert_eq!((q.stats().dequeued, q.wait_times().max()), (3, 2_000));
//! # Ok::<(), respool_core::ResourceError>(())
//! ```

use core::fmt;
use core::marker::PhantomData;

use crate::resource::Resources;

pub mod metrics;
pub mod score;

pub use metrics::{HISTOGRAM_BUCKETS, LogHistogram, QueueStats};
pub use score::{
    Availability, FIT_SCALE, MAX_ALIGNMENT, Weights, aging_term, alignment, fit_term, fits,
    priority_term, slack_ns, slack_term,
};

/// A task waiting in the queue, with everything the scorers look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task<T> {
    /// The caller's item (a closure, a job id).
    pub item: T,
    /// The resources it needs.
    pub request: Resources,
    /// Its priority: higher goes first.
    pub priority: i32,
    /// When it was enqueued, in nanoseconds of the caller's monotonic clock.
    pub enqueued_ns: u64,
    /// When it must be finished, in nanoseconds of the same clock.
    pub deadline_ns: Option<u64>,
    /// How long it is expected to run, in nanoseconds (for the slack).
    pub expected_ns: Option<u64>,
}

impl<T> Task<T> {
    /// A task with priority 0, no deadline and no expected duration.
    #[must_use]
    pub const fn new(item: T, request: Resources, enqueued_ns: u64) -> Task<T> {
        Task {
            item,
            request,
            priority: 0,
            enqueued_ns,
            deadline_ns: None,
            expected_ns: None,
        }
    }

    /// With `priority`.
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Task<T> {
        self.priority = priority;
        self
    }

    /// With a deadline at `deadline_ns`.
    #[must_use]
    pub fn with_deadline(mut self, deadline_ns: u64) -> Task<T> {
        self.deadline_ns = Some(deadline_ns);
        self
    }

    /// With an expected run time of `expected_ns`.
    #[must_use]
    pub fn with_expected(mut self, expected_ns: u64) -> Task<T> {
        self.expected_ns = Some(expected_ns);
        self
    }
}

/// A stable handle to a queued task, returned by [`ScoredQueue::push`]: valid
/// until the task leaves the queue, never valid again afterwards (it names the
/// task's slot and its sequence number, which is never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    slot: u32,
    seq: u64,
}

impl Ticket {
    /// A ticket that never names a task.
    pub const NONE: Ticket = Ticket {
        slot: u32::MAX,
        seq: u64::MAX,
    };

    /// The task's sequence number: its arrival order among all pushes.
    #[must_use]
    pub const fn seq(self) -> u64 {
        self.seq
    }
}

/// A task and its score, as listed by [`ScoredQueue::top_k`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranked {
    /// The task.
    pub ticket: Ticket,
    /// Its score at the time of the query.
    pub score: i128,
}

impl Ranked {
    /// An empty entry (its ticket names no task), to initialise buffers.
    pub const EMPTY: Ranked = Ranked {
        ticket: Ticket::NONE,
        score: i128::MIN,
    };

    /// Whether `self` goes before a task with `score` and sequence `seq`.
    fn beats(score: i128, seq: u64, other: &Ranked) -> bool {
        score > other.score || (score == other.score && seq < other.ticket.seq)
    }
}

impl Default for Ranked {
    fn default() -> Self {
        Ranked::EMPTY
    }
}

/// What [`ScoredQueue::top_k`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopK {
    /// How many entries of the buffer were written, best first.
    pub len: usize,
    /// Whether the search completed (the list is the exact top `len`); see the
    /// [module documentation](self).
    pub exact: bool,
}

/// The task [`ScoredQueue::peek`] would pop.
#[derive(Debug)]
pub struct Peeked<'a, T> {
    /// Its ticket.
    pub ticket: Ticket,
    /// The task.
    pub task: &'a Task<T>,
    /// Its score.
    pub score: i128,
    /// Whether the search completed (the score is the exact maximum).
    pub exact: bool,
}

/// A task that left the queue through [`ScoredQueue::pop`].
#[derive(Debug)]
pub struct Popped<T> {
    /// The ticket it had.
    pub ticket: Ticket,
    /// The task.
    pub task: Task<T>,
    /// Its score when it was popped.
    pub score: i128,
    /// Whether the search completed (the score was the exact maximum).
    pub exact: bool,
}

/// Configuration of a [`ScoredQueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The scorer weights.
    pub weights: Weights,
    /// How many tasks a search may evaluate beyond the two heap roots before it
    /// settles for the best found (see the [module documentation](self)).
    /// `usize::MAX` makes every search exact.
    pub probe_limit: usize,
}

impl QueueConfig {
    /// Default probe limit: 256 evaluations beyond the roots.
    pub const DEFAULT_PROBE_LIMIT: usize = 256;

    /// `weights` with the default probe limit.
    #[must_use]
    pub const fn with_weights(weights: Weights) -> QueueConfig {
        QueueConfig {
            weights,
            probe_limit: QueueConfig::DEFAULT_PROBE_LIMIT,
        }
    }
}

impl Default for QueueConfig {
    /// [`Weights::default`] and [`QueueConfig::DEFAULT_PROBE_LIMIT`].
    fn default() -> Self {
        QueueConfig::with_weights(Weights::default())
    }
}

/// One heap element: a time-invariant key, the tie-breaking sequence number
/// and the slot of the task.
#[derive(Clone, Copy, Debug)]
struct Cell {
    key: i128,
    seq: u64,
    slot: usize,
}

impl Cell {
    /// Whether `self` belongs above `other` (higher key, then earlier arrival).
    fn above(&self, other: &Cell) -> bool {
        self.key > other.key || (self.key == other.key && self.seq < other.seq)
    }
}

/// Which of the two heaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heap {
    /// Every task, by `key_all`.
    All,
    /// Tasks with a deadline, by `key_deadline`.
    Deadline,
}

/// A task stored in a slot.
#[derive(Debug)]
struct Entry<T> {
    task: Task<T>,
    seq: u64,
}

/// One unit of queue storage: a task's place, and one position of each heap.
/// Create them with [`Slot::new`] (or `Default`) and hand them to
/// [`ScoredQueue::with_storage`].
pub struct Slot<T> {
    entry: Option<Entry<T>>,
    /// The cell at this position of the all-tasks heap (or a free slot's
    /// index, past the end).
    all: Cell,
    /// The cell at this position of the deadline heap.
    deadline: Cell,
    /// Where this slot's task sits in the all-tasks heap.
    pos_all: usize,
    /// Where this slot's task sits in the deadline heap (if it has a deadline).
    pos_deadline: usize,
}

impl<T> Slot<T> {
    /// An empty slot.
    #[must_use]
    pub const fn new() -> Slot<T> {
        const BLANK: Cell = Cell {
            key: 0,
            seq: 0,
            slot: 0,
        };
        Slot {
            entry: None,
            all: BLANK,
            deadline: BLANK,
            pos_all: 0,
            pos_deadline: 0,
        }
    }

    /// The free slot at position `i` of both heaps' arrays (what the
    /// queue's free list expects of a slot past the end).
    const fn free_at(i: usize) -> Slot<T> {
        let cell = Cell {
            key: 0,
            seq: 0,
            slot: i,
        };
        Slot {
            entry: None,
            all: cell,
            deadline: cell,
            pos_all: i,
            pos_deadline: i,
        }
    }

    fn cell(&self, h: Heap) -> Cell {
        match h {
            Heap::All => self.all,
            Heap::Deadline => self.deadline,
        }
    }

    fn cell_mut(&mut self, h: Heap) -> &mut Cell {
        match h {
            Heap::All => &mut self.all,
            Heap::Deadline => &mut self.deadline,
        }
    }

    fn pos(&self, h: Heap) -> usize {
        match h {
            Heap::All => self.pos_all,
            Heap::Deadline => self.pos_deadline,
        }
    }

    fn pos_mut(&mut self, h: Heap) -> &mut usize {
        match h {
            Heap::All => &mut self.pos_all,
            Heap::Deadline => &mut self.pos_deadline,
        }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot::new()
    }
}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("occupied", &self.entry.is_some())
            .finish()
    }
}

/// A bounded priority queue ordered by a dynamic score. See the
/// [module documentation](self) for the score, the search and its guarantee.
///
/// # Examples
///
/// Caller-provided storage, sized at run time:
///
/// ```
/// use respool_core::queue::{Availability, QueueConfig, ScoredQueue, Slot, Task};
/// use respool_core::Resources;
///
/// let storage: Box<[Slot<u32>]> = (0..2).map(|_| Slot::new()).collect();
/// let mut q = ScoredQueue::with_storage(storage, QueueConfig::default());
/// let a = q.push(Task::new(1, Resources::NONE, 0)).unwrap();
/// q.push(Task::new(2, Resources::NONE, 0)).unwrap();
/// // Full: the task comes back.
/// assert_eq!(q.push(Task::new(3, Resources::NONE, 0)).unwrap_err().item, 3);
/// // Cancel the first by its ticket; the ticket is dead afterwards.
/// assert_eq!(q.remove(a).map(|t| t.item), Some(1));
/// assert!(q.get(a).is_none());
/// assert_eq!(q.pop(10, &Availability::NONE).map(|p| p.task.item), Some(2));
/// assert!(q.is_empty());
/// ```
pub struct ScoredQueue<T, S> {
    slots: S,
    /// Tasks queued (= the length of the all-tasks heap).
    len: usize,
    /// Length of the deadline heap.
    len_deadline: usize,
    next_seq: u64,
    config: QueueConfig,
    /// A lower bound of the earliest deadline in the queue (exact after an
    /// `expire` or `remove_where` pass).
    earliest_deadline: Option<u64>,
    stats: QueueStats,
    waits: LogHistogram,
    _item: PhantomData<T>,
}

/// A [`ScoredQueue`] stored in an array of `N` slots.
pub type ArrayQueue<T, const N: usize> = ScoredQueue<T, [Slot<T>; N]>;

impl<T, const N: usize> ScoredQueue<T, [Slot<T>; N]> {
    /// An empty queue of capacity `N` (`N` must be positive: checked at compile
    /// time).
    #[must_use]
    pub fn new(config: QueueConfig) -> Self {
        const { assert!(N > 0, "a queue needs at least one slot") };
        ScoredQueue::with_storage(core::array::from_fn(|_| Slot::new()), config)
    }
}

impl<T, const N: usize> Default for ScoredQueue<T, [Slot<T>; N]> {
    fn default() -> Self {
        Self::new(QueueConfig::default())
    }
}

impl<T, S> fmt::Debug for ScoredQueue<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScoredQueue")
            .field("len", &self.len)
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<T, S> ScoredQueue<T, S>
where
    S: AsRef<[Slot<T>]> + AsMut<[Slot<T>]>,
{
    /// A queue over `slots`; its capacity is `slots.len()` (at most
    /// `u32::MAX`; slots beyond are not used). Tasks left in the slots are
    /// dropped.
    pub fn with_storage(mut slots: S, config: QueueConfig) -> Self {
        for (i, s) in slots.as_mut().iter_mut().enumerate() {
            *s = Slot::free_at(i);
        }
        ScoredQueue {
            slots,
            len: 0,
            len_deadline: 0,
            next_seq: 0,
            config,
            earliest_deadline: None,
            stats: QueueStats::default(),
            waits: LogHistogram::new(),
            _item: PhantomData,
        }
    }

    /// Moves the queue onto `storage`, which must hold at least as many
    /// slots as the current storage, and returns the old storage (its slots
    /// emptied). Every queued task keeps its slot, its ticket and its place
    /// in both heaps; the new slots are free. `O(capacity)`: a runtime that
    /// grows its storage geometrically (doubling it when full) pays `O(1)`
    /// per push on average, and allocates only as the queue fills.
    ///
    /// # Errors
    ///
    /// Hands `storage` back, with the queue unchanged, when it is smaller
    /// than the current storage.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::queue::{Availability, QueueConfig, ScoredQueue, Slot, Task};
    /// use respool_core::Resources;
    ///
    /// let slots = |n| (0..n).map(|_| Slot::new()).collect::<Box<[Slot<u32>]>>();
    /// let mut q = ScoredQueue::with_storage(slots(1), QueueConfig::default());
    /// let first = q.push(Task::new(1, Resources::NONE, 0)).unwrap();
    /// assert!(q.push(Task::new(2, Resources::NONE, 0)).is_err(), "full");
    /// // Twice as many slots: the queued task keeps its ticket.
    /// let old = q.grow(slots(2)).unwrap();
    /// assert_eq!((old.len(), q.capacity()), (1, 2));
    /// assert_eq!(q.get(first).map(|t| t.item), Some(1));
    /// q.push(Task::new(2, Resources::NONE, 0)).unwrap();
    /// assert_eq!(q.pop(0, &Availability::NONE).map(|p| p.task.item), Some(1));
    /// // Smaller storage is handed back.
    /// assert_eq!(q.grow(slots(1)).unwrap_err().len(), 1);
    /// ```
    pub fn grow(&mut self, mut storage: S) -> Result<S, S> {
        let old = self.slots.as_ref().len();
        let new = storage.as_ref().len();
        if new < old {
            return Err(storage);
        }
        // Same indices: slot `i`'s task, its heap cells (the cells at
        // position `i` of both heap arrays) and its position maps move
        // together, so every ticket and both heaps stay as they were.
        for (to, from) in storage.as_mut().iter_mut().zip(self.slots.as_mut()) {
            *to = core::mem::take(from);
        }
        // The new positions of the all-tasks array lie past `len`: they hold
        // the new (free) slots, each at its own index.
        for (i, s) in storage.as_mut().iter_mut().enumerate().skip(old) {
            *s = Slot::free_at(i);
        }
        Ok(core::mem::replace(&mut self.slots, storage))
    }

    /// Number of queued tasks.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no task is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most tasks the queue can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.slots.as_ref().len().min(u32::MAX as usize)
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// The counters, with the current depth.
    #[must_use]
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.len,
            ..self.stats
        }
    }

    /// The waiting times (enqueue to `pop` or `take`) of dequeued tasks.
    #[must_use]
    pub fn wait_times(&self) -> &LogHistogram {
        &self.waits
    }

    /// Changes the weights and probe limit. The heap keys depend on the
    /// weights, so both heaps are rebuilt: `O(n)`.
    pub fn set_config(&mut self, config: QueueConfig) {
        self.config = config;
        let weights = config.weights;
        for h in [Heap::All, Heap::Deadline] {
            for pos in 0..self.heap_len(h) {
                let Some(cell) = self.cell_at(h, pos) else {
                    continue;
                };
                let key = self.entry(cell.slot).map(|e| match h {
                    Heap::All => weights.key_all(&e.task),
                    Heap::Deadline => {
                        weights.key_deadline(&e.task, e.task.deadline_ns.unwrap_or(0))
                    }
                });
                if let Some(key) = key {
                    self.put(h, pos, Cell { key, ..cell });
                }
            }
            self.heapify(h);
        }
    }

    /// Adds a task and returns its ticket.
    ///
    /// # Errors
    ///
    /// Hands `task` back when the queue is full.
    // The task is large (a `Resources` plus the item), but without `alloc` it
    // cannot be boxed, and handing it back whole is the crate's convention.
    #[allow(clippy::result_large_err)]
    pub fn push(&mut self, task: Task<T>) -> Result<Ticket, Task<T>> {
        let pos = self.len;
        let free = match self.cell_at(Heap::All, pos) {
            Some(c) if pos < self.capacity() => c,
            _ => {
                self.stats.rejected_full = self.stats.rejected_full.saturating_add(1);
                return Err(task);
            }
        };
        let slot = free.slot;
        let seq = self.next_seq;
        let weights = self.config.weights;
        let key_all = weights.key_all(&task);
        let deadline = task
            .deadline_ns
            .map(|d| (d, weights.key_deadline(&task, d)));
        let Some(s) = self.slots.as_mut().get_mut(slot) else {
            return Err(task);
        };
        s.entry = Some(Entry { task, seq });
        self.next_seq = seq.wrapping_add(1);
        self.put(
            Heap::All,
            pos,
            Cell {
                key: key_all,
                seq,
                slot,
            },
        );
        self.len = pos.saturating_add(1);
        self.sift_up(Heap::All, pos);
        if let Some((d, key)) = deadline {
            let pd = self.len_deadline;
            self.put(Heap::Deadline, pd, Cell { key, seq, slot });
            self.len_deadline = pd.saturating_add(1);
            self.sift_up(Heap::Deadline, pd);
            self.earliest_deadline = Some(self.earliest_deadline.map_or(d, |e| e.min(d)));
        }
        self.stats.enqueued = self.stats.enqueued.saturating_add(1);
        self.stats.max_depth = self.stats.max_depth.max(self.len);
        Ok(Ticket {
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            seq,
        })
    }

    /// The queued task named by `ticket`, if it is still queued.
    #[must_use]
    pub fn get(&self, ticket: Ticket) -> Option<&Task<T>> {
        let slot = self.find(ticket)?;
        self.entry(slot).map(|e| &e.task)
    }

    /// Iterates over the queued tasks, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Ticket, &Task<T>)> + '_ {
        (0..self.len).filter_map(move |pos| {
            let slot = self.cell_at(Heap::All, pos)?.slot;
            let e = self.entry(slot)?;
            Some((Self::ticket(slot, e.seq), &e.task))
        })
    }

    /// The task that [`pop`](Self::pop) would return at `now_ns` against
    /// `avail`, with its score. `O(1)` without fit weights, see the
    /// [module documentation](self) with them.
    #[must_use]
    pub fn peek(&self, now_ns: u64, avail: &Availability) -> Option<Peeked<'_, T>> {
        let mut best = [Ranked::EMPTY];
        let found = self.top_k(now_ns, avail, &mut best);
        let [best] = best;
        if found.len == 0 {
            return None;
        }
        let task = self.get(best.ticket)?;
        Some(Peeked {
            ticket: best.ticket,
            task,
            score: best.score,
            exact: found.exact,
        })
    }

    /// Removes and returns the task with the highest score at `now_ns` against
    /// `avail` (see [`peek`](Self::peek)), recording its waiting time.
    pub fn pop(&mut self, now_ns: u64, avail: &Availability) -> Option<Popped<T>> {
        let mut best = [Ranked::EMPTY];
        let found = self.top_k(now_ns, avail, &mut best);
        let [best] = best;
        if found.len == 0 {
            return None;
        }
        let task = self.take(best.ticket, now_ns)?;
        Some(Popped {
            ticket: best.ticket,
            task,
            score: best.score,
            exact: found.exact,
        })
    }

    /// Removes the task named by `ticket` to run it (typically one chosen from
    /// [`top_k`](Self::top_k) by a packer), recording its waiting time at
    /// `now_ns` and counting it as dequeued. `O(log n)`. `None` when the ticket
    /// is no longer valid.
    pub fn take(&mut self, ticket: Ticket, now_ns: u64) -> Option<Task<T>> {
        let task = self.unlink(self.find(ticket)?)?;
        self.stats.dequeued = self.stats.dequeued.saturating_add(1);
        self.waits.record(now_ns.saturating_sub(task.enqueued_ns));
        Some(task)
    }

    /// Cancels the task named by `ticket`: removes it and counts it as
    /// removed. `O(log n)`. `None` when the ticket is no longer valid.
    pub fn remove(&mut self, ticket: Ticket) -> Option<Task<T>> {
        let task = self.unlink(self.find(ticket)?)?;
        self.stats.removed = self.stats.removed.saturating_add(1);
        Some(task)
    }

    /// Cancels every task for which `predicate` is true, handing each to
    /// `removed` with its ticket; returns how many. `O(n)`.
    pub fn remove_where(
        &mut self,
        predicate: impl FnMut(&Task<T>) -> bool,
        removed: impl FnMut(Ticket, Task<T>),
    ) -> usize {
        let n = self.sweep(predicate, removed);
        self.stats.removed = self
            .stats
            .removed
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        n
    }

    /// Removes every task whose deadline is at or before `now_ns`, handing
    /// each to `expired`; returns how many. `O(1)` while no deadline can have
    /// passed, `O(n)` otherwise.
    pub fn expire(&mut self, now_ns: u64, expired: impl FnMut(Ticket, Task<T>)) -> usize {
        if self.earliest_deadline.is_none_or(|d| d > now_ns) {
            return 0;
        }
        let n = self.sweep(|t| t.deadline_ns.is_some_and(|d| d <= now_ns), expired);
        self.stats.expired = self
            .stats
            .expired
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        n
    }

    /// Writes the best `out.len()` tasks at `now_ns` against `avail` into
    /// `out`, best first (highest score, then earliest arrival), for a
    /// packer's lookahead window. Removes nothing; follow with
    /// [`take`](Self::take) for the one placed. Entries past the returned
    /// `len` are left as they were.
    ///
    /// When the search completes (`exact`), the list is exactly the top
    /// `len` of the queue; otherwise its first entry is within
    /// [`Weights::fit_bound`]`(avail)` of the true maximum and the rest are the
    /// best of the tasks examined.
    ///
    /// # Examples
    ///
    /// ```
    /// use respool_core::queue::{ArrayQueue, Availability, QueueConfig, Ranked, Task, Weights};
    /// use respool_core::{Dim, Resources};
    ///
    /// let weights = Weights { priority: 1, fits: 1, ..Weights::PRIORITY_ONLY };
    /// let mut q: ArrayQueue<&str, 4> = ArrayQueue::new(QueueConfig::with_weights(weights));
    /// let mem = |n| Resources::new().with(Dim::Memory, n);
    /// q.push(Task::new("big", mem(800)?, 0).with_priority(5)).unwrap();
    /// q.push(Task::new("small", mem(100)?, 0)).unwrap();
    /// q.push(Task::new("mid", mem(300)?, 0).with_priority(1)).unwrap();
    /// // 400 bytes free: the big one does not fit and loses its fit bonus.
    /// let free = Availability::new(mem(400)?, mem(1000)?);
    /// let mut window = [Ranked::EMPTY; 2];
    /// let top = q.top_k(0, &free, &mut window);
    /// assert_eq!((top.len, top.exact), (2, true));
    /// let names: Vec<_> = window.iter().map(|r| q.get(r.ticket).unwrap().item).collect();
    /// assert_eq!(names, ["mid", "small"]);
    /// assert_eq!(window[0].score, 1 + 1_000_000);
    /// # Ok::<(), respool_core::ResourceError>(())
    /// ```
    pub fn top_k(&self, now_ns: u64, avail: &Availability, out: &mut [Ranked]) -> TopK {
        let mut search = Search {
            now_ns,
            avail,
            weights: &self.config.weights,
            fit_bound: self.config.weights.fit_bound(avail),
            out,
            filled: 0,
            budget: self.config.probe_limit,
        };
        if search.out.is_empty() {
            return TopK {
                len: 0,
                exact: true,
            };
        }
        // Seed with both roots (not charged to the budget): this is what
        // bounds the error of an incomplete search.
        for h in [Heap::All, Heap::Deadline] {
            if let Some(root) = self.cell_at(h, 0).filter(|_| self.heap_len(h) > 0) {
                self.consider(&mut search, root.slot);
            }
        }
        let exact = self.scan(&mut search, Heap::All) && self.scan(&mut search, Heap::Deadline);
        TopK {
            len: search.filled,
            exact,
        }
    }

    /// Depth-first walk of heap `h`, skipping subtrees whose bound cannot enter
    /// the list. Returns false when the budget ran out.
    fn scan(&self, search: &mut Search<'_, '_>, h: Heap) -> bool {
        let len = self.heap_len(h);
        let offset = match h {
            Heap::All => search.weights.offset_all(search.now_ns),
            Heap::Deadline => search.weights.offset_deadline(search.now_ns),
        };
        let mut i = 0usize;
        while i < len {
            let Some(cell) = self.cell_at(h, i) else {
                return true;
            };
            let bound = cell
                .key
                .saturating_add(offset)
                .saturating_add(search.fit_bound);
            if search.admits(bound, cell.seq) {
                // The roots were evaluated when seeding.
                if i != 0 {
                    if search.budget == 0 {
                        return false;
                    }
                    search.budget = search.budget.saturating_sub(1);
                    self.consider(search, cell.slot);
                }
                let left = i.saturating_mul(2).saturating_add(1);
                if left < len {
                    i = left;
                    continue;
                }
            }
            // Subtree of `i` done: go to the next right sibling up the path.
            loop {
                if i == 0 {
                    return true;
                }
                let right = i.saturating_add(1);
                if i % 2 == 1 && right < len {
                    i = right;
                    break;
                }
                i = i.saturating_sub(1) / 2;
            }
        }
        true
    }

    /// Scores the task in `slot` and offers it to the list.
    fn consider(&self, search: &mut Search<'_, '_>, slot: usize) {
        if let Some(e) = self.entry(slot) {
            let score = search.weights.score(&e.task, search.now_ns, search.avail);
            search.offer(Ranked {
                ticket: Self::ticket(slot, e.seq),
                score,
            });
        }
    }

    fn ticket(slot: usize, seq: u64) -> Ticket {
        Ticket {
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            seq,
        }
    }

    fn entry(&self, slot: usize) -> Option<&Entry<T>> {
        self.slots.as_ref().get(slot)?.entry.as_ref()
    }

    /// The slot of a valid ticket.
    fn find(&self, ticket: Ticket) -> Option<usize> {
        let slot = usize::try_from(ticket.slot).ok()?;
        let e = self.entry(slot)?;
        (e.seq == ticket.seq).then_some(slot)
    }

    fn heap_len(&self, h: Heap) -> usize {
        match h {
            Heap::All => self.len,
            Heap::Deadline => self.len_deadline,
        }
    }

    fn set_heap_len(&mut self, h: Heap, len: usize) {
        match h {
            Heap::All => self.len = len,
            Heap::Deadline => self.len_deadline = len,
        }
    }

    fn cell_at(&self, h: Heap, pos: usize) -> Option<Cell> {
        self.slots.as_ref().get(pos).map(|s| s.cell(h))
    }

    /// Writes `cell` at position `pos` of heap `h` and records the position in
    /// the cell's slot.
    fn put(&mut self, h: Heap, pos: usize, cell: Cell) {
        let slots = self.slots.as_mut();
        if let Some(s) = slots.get_mut(pos) {
            *s.cell_mut(h) = cell;
        }
        if let Some(s) = slots.get_mut(cell.slot) {
            *s.pos_mut(h) = pos;
        }
    }

    fn sift_up(&mut self, h: Heap, mut pos: usize) {
        let Some(cell) = self.cell_at(h, pos) else {
            return;
        };
        while pos > 0 {
            let parent = pos.saturating_sub(1) / 2;
            let Some(p) = self.cell_at(h, parent) else {
                break;
            };
            if !cell.above(&p) {
                break;
            }
            self.put(h, pos, p);
            pos = parent;
        }
        self.put(h, pos, cell);
    }

    fn sift_down(&mut self, h: Heap, mut pos: usize) {
        let len = self.heap_len(h);
        let Some(cell) = self.cell_at(h, pos) else {
            return;
        };
        loop {
            let left = pos.saturating_mul(2).saturating_add(1);
            if left >= len {
                break;
            }
            let Some(mut child) = self.cell_at(h, left) else {
                break;
            };
            let mut at = left;
            let right = left.saturating_add(1);
            if right < len {
                if let Some(r) = self.cell_at(h, right) {
                    if r.above(&child) {
                        child = r;
                        at = right;
                    }
                }
            }
            if !child.above(&cell) {
                break;
            }
            self.put(h, pos, child);
            pos = at;
        }
        self.put(h, pos, cell);
    }

    /// Floyd's bottom-up heap construction over the first `heap_len(h)` cells.
    fn heapify(&mut self, h: Heap) {
        for pos in (0..self.heap_len(h) / 2).rev() {
            self.sift_down(h, pos);
        }
    }

    /// Removes position `pos` from heap `h`. The removed cell moves to the
    /// old last position (for the all-tasks heap: the first free slot).
    fn heap_remove(&mut self, h: Heap, pos: usize) {
        let len = self.heap_len(h);
        if pos >= len {
            return;
        }
        let last = len.saturating_sub(1);
        let (Some(gone), Some(tail)) = (self.cell_at(h, pos), self.cell_at(h, last)) else {
            return;
        };
        self.set_heap_len(h, last);
        self.put(h, last, gone);
        if pos < last {
            self.put(h, pos, tail);
            let parent = pos.saturating_sub(1) / 2;
            let up = pos > 0 && self.cell_at(h, parent).is_some_and(|p| tail.above(&p));
            if up {
                self.sift_up(h, pos);
            } else {
                self.sift_down(h, pos);
            }
        }
    }

    /// Takes the task out of `slot` and out of both heaps.
    fn unlink(&mut self, slot: usize) -> Option<Task<T>> {
        let s = self.slots.as_mut().get_mut(slot)?;
        let entry = s.entry.take()?;
        let (pos_all, pos_deadline) = (s.pos(Heap::All), s.pos(Heap::Deadline));
        self.heap_remove(Heap::All, pos_all);
        if entry.task.deadline_ns.is_some() {
            self.heap_remove(Heap::Deadline, pos_deadline);
        }
        Some(entry.task)
    }

    /// Removes every task matching `predicate` (calling it once per task),
    /// then compacts and rebuilds both heaps and the earliest deadline.
    fn sweep(
        &mut self,
        mut predicate: impl FnMut(&Task<T>) -> bool,
        mut removed: impl FnMut(Ticket, Task<T>),
    ) -> usize {
        let mut n = 0usize;
        for pos in 0..self.len {
            let Some(slot) = self.cell_at(Heap::All, pos).map(|c| c.slot) else {
                continue;
            };
            let Some(s) = self.slots.as_mut().get_mut(slot) else {
                continue;
            };
            if !s.entry.as_ref().is_some_and(|e| predicate(&e.task)) {
                continue;
            }
            if let Some(e) = s.entry.take() {
                n = n.saturating_add(1);
                removed(Self::ticket(slot, e.seq), e.task);
            }
        }
        if n > 0 {
            self.compact(Heap::All);
            self.compact(Heap::Deadline);
            self.earliest_deadline = None;
            for pos in 0..self.len {
                let d = self
                    .cell_at(Heap::All, pos)
                    .and_then(|c| self.entry(c.slot))
                    .and_then(|e| e.task.deadline_ns);
                if let Some(d) = d {
                    self.earliest_deadline = Some(self.earliest_deadline.map_or(d, |e| e.min(d)));
                }
            }
        }
        n
    }

    /// Moves the cells of live tasks of heap `h` to the front (the others,
    /// for the all-tasks heap, join the free slots behind), then re-heapifies.
    fn compact(&mut self, h: Heap) {
        let len = self.heap_len(h);
        let mut keep = 0usize;
        for pos in 0..len {
            let Some(cell) = self.cell_at(h, pos) else {
                continue;
            };
            let live = self.entry(cell.slot).is_some_and(|e| e.seq == cell.seq);
            if !live {
                continue;
            }
            if keep != pos {
                if let Some(other) = self.cell_at(h, keep) {
                    self.put(h, keep, cell);
                    self.put(h, pos, other);
                }
            }
            keep = keep.saturating_add(1);
        }
        self.set_heap_len(h, keep);
        self.heapify(h);
    }
}

#[cfg(any(test, fuzzing))]
impl<T, S> ScoredQueue<T, S>
where
    S: AsRef<[Slot<T>]> + AsMut<[Slot<T>]>,
{
    /// Checks every structural invariant (for tests and the fuzzer): the
    /// all-tasks array is a permutation of the slots with the live tasks in
    /// front, both heaps are ordered, the position maps agree, the keys match
    /// the weights, the deadline heap holds exactly the tasks with deadlines,
    /// the counters add up and the earliest deadline is a lower bound.
    ///
    /// # Errors
    ///
    /// A description of the first invariant found broken.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let slots = self.slots.as_ref();
        let cap = self.capacity();
        let weights = self.config.weights;
        if self.len > cap || self.len_deadline > self.len {
            return Err("lengths out of range");
        }
        // Each slot index appears once in the all-tasks array: since there are
        // `cap` cells whose slots are all below `cap`, it is enough that each
        // cell's slot points back at the cell.
        for pos in 0..cap {
            let c = slots.get(pos).ok_or("short storage")?.all;
            let s = slots.get(c.slot).ok_or("cell names no slot")?;
            if s.pos_all != pos {
                return Err("all-tasks position map");
            }
            match (&s.entry, pos < self.len) {
                (Some(e), true) => {
                    if (c.seq, c.key) != (e.seq, weights.key_all(&e.task)) {
                        return Err("all-tasks key");
                    }
                }
                (None, false) => {}
                _ => return Err("live tasks are not exactly the front of the array"),
            }
            if pos > 0 && pos < self.len {
                let parent = slots.get(pos.saturating_sub(1) / 2).ok_or("parent")?.all;
                if c.above(&parent) {
                    return Err("all-tasks heap order");
                }
            }
        }
        let mut with_deadline = 0usize;
        let mut earliest: Option<u64> = None;
        for s in slots.iter().take(cap) {
            if let Some(d) = s.entry.as_ref().and_then(|e| e.task.deadline_ns) {
                with_deadline = with_deadline.saturating_add(1);
                earliest = Some(earliest.map_or(d, |x| x.min(d)));
            }
        }
        if with_deadline != self.len_deadline {
            return Err("deadline heap length");
        }
        if earliest.is_some_and(|d| self.earliest_deadline.is_none_or(|b| b > d)) {
            return Err("earliest deadline is not a lower bound");
        }
        for pos in 0..self.len_deadline {
            let c = slots.get(pos).ok_or("short storage")?.deadline;
            let s = slots.get(c.slot).ok_or("cell names no slot")?;
            let e = s.entry.as_ref().ok_or("deadline cell of an empty slot")?;
            let d = e
                .task
                .deadline_ns
                .ok_or("deadline cell of a task without")?;
            if s.pos_deadline != pos || (c.seq, c.key) != (e.seq, weights.key_deadline(&e.task, d))
            {
                return Err("deadline position map or key");
            }
            if pos > 0 {
                let parent = slots
                    .get(pos.saturating_sub(1) / 2)
                    .ok_or("parent")?
                    .deadline;
                if c.above(&parent) {
                    return Err("deadline heap order");
                }
            }
        }
        let st = self.stats;
        let out = st
            .dequeued
            .saturating_add(st.removed)
            .saturating_add(st.expired)
            .saturating_add(u64::try_from(self.len).unwrap_or(u64::MAX));
        if st.enqueued != out || st.max_depth < self.len || st.dequeued != self.waits.count() {
            return Err("counters");
        }
        Ok(())
    }
}

/// The state of one search: the list being filled, its threshold, the budget.
struct Search<'a, 'b> {
    now_ns: u64,
    avail: &'a Availability,
    weights: &'a Weights,
    fit_bound: i128,
    out: &'b mut [Ranked],
    filled: usize,
    budget: usize,
}

impl Search<'_, '_> {
    /// Whether a task with (at most) `score` and sequence `seq` could still
    /// enter the list.
    fn admits(&self, score: i128, seq: u64) -> bool {
        if self.filled < self.out.len() {
            return true;
        }
        self.out
            .get(self.filled.saturating_sub(1))
            .is_none_or(|last| Ranked::beats(score, seq, last))
    }

    /// Inserts `cand` in order (insertion sort, dropping the last entry when
    /// full); a task already listed (found through both heaps) is skipped.
    fn offer(&mut self, cand: Ranked) {
        let listed = self.out.get(..self.filled).unwrap_or(&[]);
        if listed.iter().any(|r| r.ticket == cand.ticket) {
            return;
        }
        if !self.admits(cand.score, cand.ticket.seq) {
            return;
        }
        let mut i = if self.filled < self.out.len() {
            self.filled = self.filled.saturating_add(1);
            self.filled.saturating_sub(1)
        } else {
            self.filled.saturating_sub(1)
        };
        while i > 0 {
            let Some(prev) = self.out.get(i.saturating_sub(1)).copied() else {
                break;
            };
            if !Ranked::beats(cand.score, cand.ticket.seq, &prev) {
                break;
            }
            if let Some(slot) = self.out.get_mut(i) {
                *slot = prev;
            }
            i = i.saturating_sub(1);
        }
        if let Some(slot) = self.out.get_mut(i) {
            *slot = cand;
        }
    }
}

#[cfg(test)]
mod tests;
