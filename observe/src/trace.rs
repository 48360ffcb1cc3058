//! A bounded ring of the pool's events, saved as Chrome trace-event JSON
//! that opens in <https://ui.perfetto.dev> ("Open trace file") and in
//! `chrome://tracing`.
//!
//! # Recording
//!
//! [`TraceRecorder`] is an [`Observer`]: install it with
//! [`Builder::observer`](respool::Builder::observer). Each event becomes one
//! fixed-size record (176 bytes on x86-64: the time, the task, an interned
//! class index and what the event carries, reservations as whole
//! [`Resources`] vectors) in a ring allocated once, up front, at
//! [`TraceConfig::capacity`] records. When the ring is full the oldest
//! record is overwritten and counted ([`TraceRecorder::dropped`]): the memory
//! cost is fixed whatever the pool does.
//!
//! The recording path takes one `Mutex` per event: the ring, the class
//! table and the map of live reservations are behind one lock, and the
//! critical section is a class lookup (a short hash), a map update on
//! admissions and ends, and the copy of one record; about 40 ns an event
//! on one thread, uncontended, in a release build. A lock rather than
//! per-slot atomics, because a record is larger than an atomic and a reader
//! must never see half of one. It allocates nothing after warm-up: a class
//! name is copied once, the first time it is seen, into a table of at most
//! [`TraceConfig::max_classes`] names; later classes are recorded as
//! `"_other"`.
//!
//! # Reserved resources over time
//!
//! The sum of live reservations (memory and CPU) is kept as the events
//! arrive, not derived later from the ring: a reservation is added at
//! `Admitted` and `ReservationGrown` and taken away at the task's `Retried`
//! or terminal event. What each task holds is kept in a map of at most
//! [`TraceConfig::live_tasks`] entries, allocated up front; a task admitted
//! while the map is full is not counted ([`TraceRecorder::untracked`] says
//! how many were not), so the sum is then an undercount, never a wrong
//! subtraction. Each record carries the sums after it, so the counters stay
//! exact even after the oldest records have been dropped.
//!
//! The sums follow the events, so they lag the pool by the time between a
//! release and its report: the pool gives a finished task's reservation
//! back (and may admit a waiter into it, whose `Admitted` can be recorded
//! first) just before it reports the task's end, so the sum may briefly
//! read above the capacity by what such tasks hold; and a timed-out task
//! is taken away at its `TimedOut` event, although its closure may still
//! hold its reservation for a while. `pool.snapshot()` has the exact
//! figure at any one moment.
//!
//! # What the JSON holds
//!
//! - One track (`tid`) per worker, named `"worker 0"`, `"worker 1"`, ...:
//!   each run of a task is a complete event (`ph:"X"`) named by its class
//!   (`"task"` without one), with `args` holding the task id, class,
//!   reservation (in human units), outcome and, when measured, what it used.
//!   A retried task has one complete event per attempt.
//! - A `"queue"` track of async events (`ph:"b"`/`"e"`, `cat:"wait"`,
//!   `id` = the task id): `"queued"` from submission to start (or to the end
//!   of a task that never started), `"waiting for <dim>"` from `Deferred` to
//!   `Admitted` (what it lacked in `args`) and `"retry backoff"` from
//!   `Retried` to the next start. Async events, because waits overlap and
//!   Perfetto requires the spans on one thread track to nest.
//! - One `"submit (thread N)"` track per submitting thread: a short
//!   `"submit"` slice per task, where a flow arrow (`ph:"s"`, `cat:"flow"`,
//!   `id` = the task id) starts and ends (`ph:"f"`, `bp:"e"`) at the task's
//!   first run on its worker track. Refusals are instant events there.
//! - A `"pool"` track with the pool's own events (`CapacityChanged`) as
//!   instant events, and counters (`ph:"C"`): `"memory reserved"`,
//!   `"cpu reserved"` (sums of live reservations), `"memory used by running
//!   tasks"`, `"cpu used by running tasks"` (each finished run's measured
//!   heap peak and average CPU, over its run), `"heap live"` (the tracking
//!   allocator's process-wide live bytes, with
//!   [`TraceConfig::global_heap`]) and the capacity after each change.
//!
//! # What falls out of the ring
//!
//! The export shows what the ring still holds and nothing it had to make
//! up: a run whose `Started` was dropped has no complete event (its end
//! alone does not say where it began), a wait whose start was dropped has
//! no async event, and a flow needs both its submission and its start. A
//! task still waiting or running when the trace is saved has no span for
//! that phase yet. Counter timestamps are made non-decreasing (events of
//! different threads can reach the lock a little out of clock order; such a
//! sample is drawn at the previous sample's time).
//!
//! # Examples
//!
//! ```
//! use respool::Pool;
//! use respool_observe::trace::{TraceConfig, TraceRecorder};
//!
//! let recorder = TraceRecorder::new(TraceConfig::new().capacity(4096));
//! let pool = Pool::builder().workers(2).memory("64MiB").observer(recorder.clone()).build()?;
//! for i in 0..8u64 {
//!     // Detached: shutdown waits for them.
//!     drop(pool.task().class("sum").memory("1MiB").spawn(move |_| (0..i).sum::<u64>())?);
//! }
//! pool.shutdown();
//! let mut json = Vec::new();
//! recorder.write_json(&mut json)?;
//! let trace: serde_json::Value = serde_json::from_slice(&json)?;
//! let runs = trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X" && e["name"] == "sum");
//! assert_eq!(runs.count(), 8);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use respool::observe::{Event, EventKind, Observer};
use respool::{Dim, Resources, Shortfall, SubmitError};

/// The most records a ring may hold (about 700 MiB); larger capacities are
/// clamped to it.
pub const MAX_CAPACITY: usize = 1 << 22;
/// The fewest records a ring holds; smaller capacities are raised to it.
pub const MIN_CAPACITY: usize = 16;
/// The most distinct class names kept; larger settings are clamped to it.
pub const MAX_CLASSES: usize = 4096;
/// The most live reservations followed; larger settings are clamped to it.
pub const MAX_LIVE_TASKS: usize = 1 << 20;
/// The name recorded for classes past [`TraceConfig::max_classes`].
pub const OTHER_CLASS: &str = "_other";

/// How a [`TraceRecorder`] records and saves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceConfig {
    capacity: usize,
    max_classes: usize,
    live_tasks: usize,
    save_on_drop: Option<PathBuf>,
    global_heap: bool,
    process_name: String,
}

impl Default for TraceConfig {
    fn default() -> TraceConfig {
        TraceConfig {
            capacity: 1 << 16,
            max_classes: 256,
            live_tasks: 4096,
            save_on_drop: None,
            global_heap: false,
            process_name: "respool pool".to_owned(),
        }
    }
}

impl TraceConfig {
    /// The defaults: 65,536 records (11 MiB, some 13,000 tasks of five
    /// events), 256 class names, 4,096 live reservations followed, not saved
    /// on drop, no process-wide heap counter.
    #[must_use]
    pub fn new() -> TraceConfig {
        TraceConfig::default()
    }

    /// How many events the ring holds (allocated once, up front), between
    /// [`MIN_CAPACITY`] and [`MAX_CAPACITY`] (clamped).
    #[must_use]
    pub fn capacity(mut self, events: usize) -> TraceConfig {
        self.capacity = events.clamp(MIN_CAPACITY, MAX_CAPACITY);
        self
    }

    /// How many distinct class names are kept (at most [`MAX_CLASSES`]);
    /// later ones are recorded as [`OTHER_CLASS`].
    #[must_use]
    pub fn max_classes(mut self, classes: usize) -> TraceConfig {
        self.max_classes = classes.min(MAX_CLASSES);
        self
    }

    /// How many tasks holding a reservation at once are followed for the
    /// reserved counters (at most [`MAX_LIVE_TASKS`]; see
    /// [`TraceRecorder::untracked`]).
    #[must_use]
    pub fn live_tasks(mut self, tasks: usize) -> TraceConfig {
        self.live_tasks = tasks.min(MAX_LIVE_TASKS);
        self
    }

    /// Saves the trace to `path` when the recorder is dropped (when the pool
    /// that holds it is dropped and no other `Arc` of it is left). An error
    /// then is logged with `tracing`, never raised.
    #[must_use]
    pub fn save_on_drop(mut self, path: impl Into<PathBuf>) -> TraceConfig {
        self.save_on_drop = Some(path.into());
        self
    }

    /// Samples the process-wide live heap of respool's
    /// [`TrackingAllocator`](respool::alloc::TrackingAllocator) at every
    /// event, as the `"heap live"` counter. Switches the process-wide count
    /// on ([`respool::alloc::track_global`]) when the recorder is made; does
    /// nothing where that allocator is not installed.
    #[must_use]
    pub fn global_heap(mut self, on: bool) -> TraceConfig {
        self.global_heap = on;
        self
    }

    /// The process name shown above the tracks (default `"respool pool"`).
    #[must_use]
    pub fn process_name(mut self, name: impl Into<String>) -> TraceConfig {
        self.process_name = name.into();
        self
    }
}

/// Why a trace could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum TraceError {
    /// Writing failed.
    Write(io::Error),
    /// Creating or writing the file failed.
    Save {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Write(e) => write!(f, "could not write the trace: {e}"),
            TraceError::Save { path, source } => {
                write!(
                    f,
                    "could not save the trace to {}: {source}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for TraceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TraceError::Write(e) | TraceError::Save { source: e, .. } => Some(e),
        }
    }
}

/// Records the pool's events in a bounded ring and saves them as Chrome
/// trace-event JSON (see the [module documentation](self)).
pub struct TraceRecorder {
    inner: Mutex<Inner>,
    save_on_drop: Option<PathBuf>,
    global_heap: bool,
    process_name: String,
}

impl fmt::Debug for TraceRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("TraceRecorder")
            .field("len", &inner.ring.len())
            .field("capacity", &inner.ring.capacity())
            .field("dropped", &inner.dropped)
            .field("save_on_drop", &self.save_on_drop)
            .finish_non_exhaustive()
    }
}

/// A class index: into the class table, or one of these two.
const NO_CLASS: u16 = u16::MAX;
const OTHER: u16 = u16::MAX - 1;

/// What one event carries, copied out of its borrowed [`EventKind`].
#[derive(Clone, Copy, Debug)]
enum Kind {
    Submitted(Resources),
    Deferred(Option<Shortfall>),
    Admitted(Resources),
    Refused(Refusal),
    Started {
        worker: u32,
    },
    Grown(Resources),
    Profile(Resources),
    Retried {
        attempt: u32,
        delay_ns: u64,
    },
    Finished(Option<Resources>),
    Failed {
        attempts: u32,
    },
    Panicked,
    Cancelled,
    TimedOut,
    DeadlineMissed,
    NotRun,
    Capacity {
        effective: Resources,
        memory: Option<u64>,
        cpu: Option<u64>,
    },
    /// An event kind this version does not know.
    Other,
}

/// Why a task was refused, in a fixed size.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    NeverFits(Shortfall),
    Busy(Shortfall),
    QueueFull,
    DeadlineExpired,
    ShutDown,
    Invalid,
}

impl Refusal {
    fn of(e: &SubmitError) -> Refusal {
        match e {
            SubmitError::NeverFits(s) => Refusal::NeverFits(*s),
            SubmitError::Busy { shortfall, .. } => Refusal::Busy(*shortfall),
            SubmitError::QueueFull { .. } => Refusal::QueueFull,
            SubmitError::DeadlineExpired => Refusal::DeadlineExpired,
            SubmitError::ShutDown => Refusal::ShutDown,
            _ => Refusal::Invalid,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Refusal::NeverFits(_) => "never_fits",
            Refusal::Busy(_) => "busy",
            Refusal::QueueFull => "queue_full",
            Refusal::DeadlineExpired => "deadline_expired",
            Refusal::ShutDown => "shut_down",
            Refusal::Invalid => "invalid_requirement",
        }
    }

    fn shortfall(self) -> Option<Shortfall> {
        match self {
            Refusal::NeverFits(s) | Refusal::Busy(s) => Some(s),
            _ => None,
        }
    }
}

/// One recorded event: fixed size, no pointers.
#[derive(Clone, Copy, Debug)]
struct Record {
    /// Nanoseconds on the pool's clock.
    at: u64,
    /// The task id (0: an event of the pool).
    task: u64,
    /// Reserved memory (bytes) and CPU (millicores) of all live tasks, after
    /// this event.
    reserved: [u64; 2],
    /// The process-wide live heap, when sampled.
    heap: Option<i64>,
    /// The recording thread's number (see [`thread_no`]).
    thread: u32,
    class: u16,
    kind: Kind,
}

/// A fast hasher for the small maps on the recording path (FxHash's mix):
/// SipHash's flood resistance is not needed for task ids and class names
/// the program itself chose.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// Everything behind the lock.
struct Inner {
    /// The ring: grows to its capacity (never past it, so never
    /// reallocated), then `head` is the oldest record and is overwritten.
    ring: Vec<Record>,
    head: usize,
    dropped: u64,
    recorded: u64,
    /// Interned class names, and their indexes by name.
    classes: Vec<Arc<str>>,
    class_index: FxMap<Arc<str>, u16>,
    max_classes: usize,
    /// What each live task holds: (memory, CPU).
    live: FxMap<u64, [u64; 2]>,
    live_max: usize,
    untracked: u64,
    reserved: [u64; 2],
}

impl Inner {
    fn push(&mut self, r: Record) {
        self.recorded += 1;
        if self.ring.len() < self.ring.capacity() {
            self.ring.push(r);
        } else {
            self.ring[self.head] = r;
            self.head = (self.head + 1) % self.ring.len();
            self.dropped += 1;
        }
    }

    fn class(&mut self, name: Option<&str>) -> u16 {
        let Some(name) = name else { return NO_CLASS };
        if let Some(&i) = self.class_index.get(name) {
            return i;
        }
        if self.classes.len() >= self.max_classes {
            return OTHER;
        }
        let i = u16::try_from(self.classes.len()).unwrap_or(OTHER);
        let name: Arc<str> = Arc::from(name);
        self.classes.push(name.clone());
        self.class_index.insert(name, i);
        i
    }

    /// Adds to what `task` holds (an admission, or a growth): to its entry,
    /// made if there is room, and to the live sums. A task without room is
    /// counted as untracked and left out, then and at its end.
    fn reserve(&mut self, task: u64, add: &Resources) {
        let delta = [add.amount(Dim::Memory), add.amount(Dim::Cpu)];
        if delta == [0, 0] {
            return;
        }
        if !self.live.contains_key(&task) && self.live.len() >= self.live_max {
            self.untracked += 1;
            return;
        }
        let entry = self.live.entry(task).or_insert([0, 0]);
        for ((held, sum), d) in entry.iter_mut().zip(&mut self.reserved).zip(delta) {
            *held = held.saturating_add(d);
            *sum = sum.saturating_add(d);
        }
    }

    /// Takes away all `task` holds.
    fn release(&mut self, task: u64) {
        if let Some(held) = self.live.remove(&task) {
            for (sum, h) in self.reserved.iter_mut().zip(held) {
                *sum = sum.saturating_sub(h);
            }
        }
    }

    /// The records, oldest first.
    fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.ring.len());
        out.extend_from_slice(&self.ring[self.head..]);
        out.extend_from_slice(&self.ring[..self.head]);
        out
    }
}

/// A small number for the current thread, the same for its whole life: the
/// recorder's submit tracks are per thread.
fn thread_no() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    thread_local! {
        static NO: Cell<u32> = const { Cell::new(0) };
    }
    NO.with(|no| {
        if no.get() == 0 {
            no.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        no.get()
    })
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl TraceRecorder {
    /// A recorder with its ring allocated (`config.capacity` records).
    #[must_use]
    pub fn new(config: TraceConfig) -> Arc<TraceRecorder> {
        let capacity = config.capacity.clamp(MIN_CAPACITY, MAX_CAPACITY);
        let max_classes = config.max_classes.min(MAX_CLASSES);
        let live_max = config.live_tasks.min(MAX_LIVE_TASKS);
        let global_heap = config.global_heap && respool::alloc::is_installed();
        if global_heap {
            respool::alloc::track_global(true);
        }
        // The maps get twice the room they may hold: a hash map that never
        // holds more than half of its room rehashes in place when deletions
        // used it up, and never allocates again.
        let inner = Inner {
            ring: Vec::with_capacity(capacity),
            head: 0,
            dropped: 0,
            recorded: 0,
            classes: Vec::with_capacity(max_classes),
            class_index: FxMap::with_capacity_and_hasher(max_classes * 2, Default::default()),
            max_classes,
            live: FxMap::with_capacity_and_hasher(live_max * 2, Default::default()),
            live_max,
            untracked: 0,
            reserved: [0, 0],
        };
        Arc::new(TraceRecorder {
            inner: Mutex::new(inner),
            save_on_drop: config.save_on_drop,
            global_heap,
            process_name: config.process_name,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; if something did, the ring is
        // still a valid ring.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Events held now (at most [`capacity`](TraceRecorder::capacity)).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().ring.len()
    }

    /// Whether no event is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most events the ring holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.lock().ring.capacity()
    }

    /// Events overwritten because the ring was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Events recorded in all: [`len`](TraceRecorder::len) +
    /// [`dropped`](TraceRecorder::dropped).
    #[must_use]
    pub fn recorded(&self) -> u64 {
        self.lock().recorded
    }

    /// Reservations left out of the reserved counters because
    /// [`TraceConfig::live_tasks`] tasks already held one.
    #[must_use]
    pub fn untracked(&self) -> u64 {
        self.lock().untracked
    }

    /// Writes the trace as Chrome trace-event JSON.
    ///
    /// The ring is copied under the lock (a few milliseconds for a large
    /// ring) and rendered after, so the pool is held up only by the copy.
    ///
    /// # Errors
    ///
    /// [`TraceError::Write`] when `out` fails.
    pub fn write_json(&self, out: impl Write) -> Result<(), TraceError> {
        let (records, classes) = {
            let inner = self.lock();
            (inner.snapshot(), inner.classes.clone())
        };
        let mut w = io::BufWriter::new(out);
        Export::new(&mut w, &classes, &self.process_name)
            .run(&records)
            .and_then(|()| w.flush())
            .map_err(TraceError::Write)
    }

    /// Saves the trace to `path` (created or truncated).
    ///
    /// # Errors
    ///
    /// [`TraceError::Save`] when the file cannot be created or written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), TraceError> {
        let path = path.as_ref();
        let save = |e: io::Error| TraceError::Save {
            path: path.to_owned(),
            source: e,
        };
        let file = std::fs::File::create(path).map_err(save)?;
        match self.write_json(&file) {
            Ok(()) => file.sync_all().map_err(save),
            Err(TraceError::Write(e) | TraceError::Save { source: e, .. }) => Err(save(e)),
        }
    }
}

impl Drop for TraceRecorder {
    fn drop(&mut self) {
        if let Some(path) = &self.save_on_drop {
            match self.save(path) {
                Ok(()) => tracing::debug!(path = %path.display(), "trace saved"),
                Err(e) => tracing::error!(error = %e, "trace not saved"),
            }
        }
    }
}

impl Observer for TraceRecorder {
    fn on_event(&self, e: &Event<'_>) {
        let kind = match e.kind {
            EventKind::Submitted { requirements } => Kind::Submitted(*requirements),
            EventKind::Deferred { shortfall } => Kind::Deferred(shortfall),
            EventKind::Admitted { reservation } => Kind::Admitted(*reservation),
            EventKind::Refused { error } => Kind::Refused(Refusal::of(error)),
            EventKind::Started { worker, .. } => Kind::Started {
                worker: u32::try_from(worker).unwrap_or(u32::MAX),
            },
            EventKind::ReservationGrown { by } => Kind::Grown(*by),
            EventKind::ProfileUpdated { measured, .. } => Kind::Profile(*measured),
            EventKind::Retried { attempt, delay } => Kind::Retried {
                attempt,
                delay_ns: nanos(delay),
            },
            EventKind::Finished { usage } => Kind::Finished(usage.map(|u| u.as_resources())),
            EventKind::Failed { attempts } => Kind::Failed { attempts },
            EventKind::Panicked => Kind::Panicked,
            EventKind::Cancelled => Kind::Cancelled,
            EventKind::TimedOut => Kind::TimedOut,
            EventKind::DeadlineMissed => Kind::DeadlineMissed,
            EventKind::NotRun => Kind::NotRun,
            EventKind::CapacityChanged {
                capacity,
                effective,
            } => Kind::Capacity {
                effective: *effective,
                memory: capacity.get(Dim::Memory),
                cpu: capacity.get(Dim::Cpu),
            },
            _ => Kind::Other,
        };
        let task = e.task.map_or(0, |t| t.get());
        self.record(nanos(e.at), task, e.class, kind, e.kind.is_terminal());
    }
}

impl TraceRecorder {
    /// The recording path, after the event was copied into `kind`.
    fn record(&self, at: u64, task: u64, class: Option<&str>, kind: Kind, terminal: bool) {
        let heap = self.global_heap.then(|| respool::alloc::global().live);
        let thread = thread_no();
        let mut inner = self.lock();
        match kind {
            Kind::Admitted(r) | Kind::Grown(r) => inner.reserve(task, &r),
            Kind::Retried { .. } => inner.release(task),
            _ if terminal => inner.release(task),
            _ => {}
        }
        let class = inner.class(class);
        let reserved = inner.reserved;
        inner.push(Record {
            at,
            task,
            reserved,
            heap,
            thread,
            class,
            kind,
        });
    }
}

// ---------------------------------------------------------------- export --

/// Track ids.
const TID_POOL: u64 = 1;
const TID_QUEUE: u64 = 2;
const TID_WORKER0: u64 = 1000;
const TID_SUBMIT0: u64 = 1 << 30;

fn worker_tid(worker: u32) -> u64 {
    TID_WORKER0 + u64::from(worker)
}

fn submit_tid(thread: u32) -> u64 {
    TID_SUBMIT0 + u64::from(thread)
}

/// Microseconds with nanosecond decimals, as the format wants them.
struct Us(u64);

impl fmt::Display for Us {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// A JSON string literal.
struct Js<'a>(&'a str);

impl fmt::Display for Js<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// An amount in the dimension's human unit.
fn human(dim: Dim, amount: u64) -> String {
    use respool::core::resource::Unit;
    match dim.unit() {
        Unit::Bytes => respool::units::format_bytes(amount),
        Unit::BytesPerSecond => format!("{}/s", respool::units::format_bytes(amount)),
        Unit::Millicores => respool::units::format_cpu(amount),
        Unit::Count => amount.to_string(),
        u => format!("{amount} {}", u.symbol()),
    }
}

/// A resource vector as a JSON object of human amounts.
fn human_resources(r: &Resources) -> String {
    let mut s = String::from("{");
    for (i, (dim, amount)) in r.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}:{}", Js(dim.name()), Js(&human(dim, amount)));
    }
    s.push('}');
    s
}

fn shortfall_text(s: &Shortfall) -> String {
    format!(
        "{} short by {} (needs {}, {} free)",
        s.dim.name(),
        human(s.dim, s.by),
        human(s.dim, s.requested),
        human(s.dim, s.available)
    )
}

/// What the export knows of one task while it walks the ring.
#[derive(Default)]
struct TaskState {
    /// Its class, from any of its events that carried one.
    class: Option<u16>,
    /// Submission time and thread, if its `Submitted` is in the ring.
    submitted: Option<(u64, u32)>,
    /// The submit slice is written at the task's next event.
    submit_open: bool,
    requirements: Option<Resources>,
    /// Open async spans: queued, waiting (with what it lacked), backoff.
    queued: Option<u64>,
    waiting: Option<(u64, Option<Shortfall>)>,
    backoff: Option<(u64, u32)>,
    /// The run now open: start time and worker.
    run: Option<(u64, u32)>,
    started_once: bool,
    /// A flow arrow to write with the open run (its first).
    flow: bool,
    reservation: Option<Resources>,
    measured: Option<Resources>,
    attempt: u32,
}

/// One finished run's measured use, for the "used by running tasks"
/// counters: (start, end, memory, CPU).
type Use = (u64, u64, u64, u64);

struct Export<'a, W: Write> {
    w: &'a mut W,
    classes: &'a [Arc<str>],
    process_name: &'a str,
    first: bool,
    workers: std::collections::BTreeSet<u32>,
    submitters: std::collections::BTreeSet<u32>,
    queue_used: bool,
    pool_used: bool,
    /// The last timestamp of each counter name written.
    counter_ts: FxMap<&'static str, u64>,
    uses: Vec<Use>,
}

impl<'a, W: Write> Export<'a, W> {
    fn new(w: &'a mut W, classes: &'a [Arc<str>], process_name: &'a str) -> Self {
        Export {
            w,
            classes,
            process_name,
            first: true,
            workers: Default::default(),
            submitters: Default::default(),
            queue_used: false,
            pool_used: false,
            counter_ts: Default::default(),
            uses: Vec::new(),
        }
    }

    fn class_name(&self, class: u16) -> Option<&str> {
        match class {
            NO_CLASS => None,
            OTHER => Some(OTHER_CLASS),
            i => self.classes.get(usize::from(i)).map(|s| &**s),
        }
    }

    /// Writes one event: `fields` is the text after `"ph"` up to the end of
    /// the object (without the closing brace).
    fn event(&mut self, ph: char, fields: fmt::Arguments<'_>) -> io::Result<()> {
        let sep = if self.first { "" } else { ",\n" };
        self.first = false;
        write!(self.w, "{sep}{{\"ph\":\"{ph}\",\"pid\":1,{fields}}}")?;
        Ok(())
    }

    fn counter(&mut self, name: &'static str, unit: &str, ts: u64, value: u64) -> io::Result<()> {
        let last = self.counter_ts.entry(name).or_insert(0);
        let ts = ts.max(*last);
        *last = ts;
        self.pool_used = true;
        self.event(
            'C',
            format_args!(
                "\"tid\":{TID_POOL},\"name\":{},\"ts\":{},\"args\":{{{}:{value}}}",
                Js(name),
                Us(ts),
                Js(unit)
            ),
        )
    }

    fn async_span(
        &mut self,
        task: u64,
        name: &str,
        (from, to): (u64, u64),
        args_b: &str,
        args_e: &str,
    ) -> io::Result<()> {
        self.queue_used = true;
        let to = to.max(from);
        for (ph, ts, args) in [('b', from, args_b), ('e', to, args_e)] {
            self.event(
                ph,
                format_args!(
                    "\"tid\":{TID_QUEUE},\"cat\":\"wait\",\"id\":{task},\"name\":{},\"ts\":{},\"args\":{args}",
                    Js(name),
                    Us(ts)
                ),
            )?;
        }
        Ok(())
    }

    fn run(mut self, records: &[Record]) -> io::Result<()> {
        self.w.write_all(b"{\"traceEvents\":[\n")?;
        let mut tasks: FxMap<u64, TaskState> = FxMap::default();
        let mut reserved = [u64::MAX; 2];
        let mut heap: Option<i64> = None;
        for r in records {
            if r.reserved != reserved {
                if r.reserved[0] != reserved[0] {
                    self.counter("memory reserved", "bytes", r.at, r.reserved[0])?;
                }
                if r.reserved[1] != reserved[1] {
                    self.counter("cpu reserved", "millicores", r.at, r.reserved[1])?;
                }
                reserved = r.reserved;
            }
            if r.heap.is_some() && r.heap != heap {
                heap = r.heap;
                let live = u64::try_from(r.heap.unwrap_or(0)).unwrap_or(0);
                self.counter("heap live", "bytes", r.at, live)?;
            }
            if r.task == 0 {
                self.pool_event(r)?;
            } else {
                let mut st = tasks.remove(&r.task).unwrap_or_default();
                let done = self.task_event(r, &mut st)?;
                if !done {
                    tasks.insert(r.task, st);
                }
            }
        }
        // Tasks still live at the end: only their submit slices, if open.
        let mut live: Vec<(u64, TaskState)> = tasks.into_iter().collect();
        live.sort_unstable_by_key(|(id, _)| *id);
        for (id, mut st) in live {
            self.close_submit(id, &mut st, None)?;
        }
        self.used_counters()?;
        self.metadata()?;
        self.w.write_all(b"],\"displayTimeUnit\":\"ms\"}\n")
    }

    fn pool_event(&mut self, r: &Record) -> io::Result<()> {
        if let Kind::Capacity {
            effective,
            memory,
            cpu,
        } = r.kind
        {
            self.pool_used = true;
            let mut args = String::from("{");
            let _ = write!(args, "\"effective\":{}", human_resources(&effective));
            if let Some(m) = memory {
                let _ = write!(args, ",\"memory\":{}", Js(&human(Dim::Memory, m)));
            }
            if let Some(c) = cpu {
                let _ = write!(args, ",\"cpu\":{}", Js(&human(Dim::Cpu, c)));
            }
            args.push('}');
            self.event(
                'i',
                format_args!(
                    "\"tid\":{TID_POOL},\"s\":\"t\",\"cat\":\"pool\",\"name\":\"capacity changed\",\"ts\":{},\"args\":{args}",
                    Us(r.at)
                ),
            )?;
            if let Some(m) = effective.get(Dim::Memory) {
                self.counter("memory effective capacity", "bytes", r.at, m)?;
            }
            if let Some(c) = effective.get(Dim::Cpu) {
                self.counter("cpu effective capacity", "millicores", r.at, c)?;
            }
        }
        Ok(())
    }

    /// The "submit" slice of a task, ended by the task's next event when that
    /// came from the same thread (the submission itself), else a point.
    fn close_submit(
        &mut self,
        task: u64,
        st: &mut TaskState,
        next: Option<&Record>,
    ) -> io::Result<()> {
        if !st.submit_open {
            return Ok(());
        }
        st.submit_open = false;
        let Some((at, thread)) = st.submitted else {
            return Ok(());
        };
        let end = next
            .filter(|n| n.thread == thread)
            .map_or(at, |n| n.at.max(at));
        self.submitters.insert(thread);
        let req = st
            .requirements
            .as_ref()
            .map_or_else(|| "{}".to_owned(), human_resources);
        self.event(
            'X',
            format_args!(
                "\"tid\":{},\"cat\":\"submit\",\"name\":\"submit\",\"ts\":{},\"dur\":{},\"args\":{{\"task\":{task},\"requirements\":{req}}}",
                submit_tid(thread),
                Us(at),
                Us(end - at)
            ),
        )
    }

    /// Handles one event of a task; true when it ended the task.
    fn task_event(&mut self, r: &Record, st: &mut TaskState) -> io::Result<bool> {
        let task = r.task;
        if !matches!(r.kind, Kind::Submitted(_)) {
            self.close_submit(task, st, Some(r))?;
        }
        if r.class != NO_CLASS {
            st.class = Some(r.class);
        }
        let class = st.class.and_then(|c| self.class_name(c)).map(str::to_owned);
        match r.kind {
            Kind::Submitted(req) => {
                st.submitted = Some((r.at, r.thread));
                st.submit_open = true;
                st.requirements = Some(req);
                st.queued = Some(r.at);
            }
            Kind::Deferred(shortfall) => st.waiting = Some((r.at, shortfall)),
            Kind::Admitted(res) => {
                self.close_waiting(task, st, r.at, "admitted")?;
                st.reservation = Some(res);
            }
            Kind::Started { worker } => {
                let outcome = "started";
                if let Some(from) = st.queued.take() {
                    self.async_span(
                        task,
                        "queued",
                        (from, r.at),
                        &args_class(&class),
                        &outcome_args(outcome),
                    )?;
                }
                self.close_backoff(task, st, r.at, outcome)?;
                self.workers.insert(worker);
                st.run = Some((r.at, worker));
                // The flow is written after the run's complete event, so
                // that a reader taking events in file order (at equal
                // timestamps) finds the slice it binds to.
                st.flow = !st.started_once && st.submitted.is_some();
                st.started_once = true;
            }
            Kind::Grown(by) => {
                let mut res = st.reservation.unwrap_or_default();
                for (d, v) in by.iter() {
                    res = res.with_saturating(d, res.amount(d).saturating_add(v));
                }
                st.reservation = Some(res);
            }
            Kind::Profile(measured) => st.measured = Some(measured),
            Kind::Retried { attempt, delay_ns } => {
                let outcome = format!(
                    "retried (attempt {attempt} follows after {} us)",
                    delay_ns / 1000
                );
                self.close_run(task, st, r, &class, &outcome, None)?;
                st.backoff = Some((r.at, attempt));
                st.attempt = attempt;
                st.reservation = None;
            }
            Kind::Refused(why) => {
                let reason = why.shortfall().map_or_else(
                    || why.name().to_owned(),
                    |s| format!("{}: {}", why.name(), shortfall_text(&s)),
                );
                self.end_waits(task, st, r.at, "refused")?;
                let tid = st.submitted.map_or(r.thread, |(_, t)| t);
                self.submitters.insert(tid);
                self.event(
                    'i',
                    format_args!(
                        "\"tid\":{},\"s\":\"t\",\"cat\":\"submit\",\"name\":\"refused\",\"ts\":{},\"args\":{{\"task\":{task},\"class\":{},\"reason\":{}}}",
                        submit_tid(tid),
                        Us(r.at),
                        Js(class.as_deref().unwrap_or("")),
                        Js(&reason)
                    ),
                )?;
                return Ok(true);
            }
            Kind::Finished(usage) => {
                self.end_waits(task, st, r.at, "finished")?;
                self.close_run(task, st, r, &class, "finished", usage)?;
                return Ok(true);
            }
            Kind::Failed { attempts } => {
                let outcome = format!("failed after {attempts} attempts");
                self.end_waits(task, st, r.at, &outcome)?;
                self.close_run(task, st, r, &class, &outcome, None)?;
                return Ok(true);
            }
            Kind::Panicked
            | Kind::Cancelled
            | Kind::TimedOut
            | Kind::DeadlineMissed
            | Kind::NotRun => {
                let outcome = match r.kind {
                    Kind::Panicked => "panicked",
                    Kind::Cancelled => "cancelled",
                    Kind::TimedOut => "timed_out",
                    Kind::DeadlineMissed => "deadline_missed",
                    _ => "not_run",
                };
                self.end_waits(task, st, r.at, outcome)?;
                self.close_run(task, st, r, &class, outcome, None)?;
                return Ok(true);
            }
            Kind::Capacity { .. } | Kind::Other => {}
        }
        Ok(false)
    }

    fn close_waiting(
        &mut self,
        task: u64,
        st: &mut TaskState,
        at: u64,
        outcome: &str,
    ) -> io::Result<()> {
        if let Some((from, shortfall)) = st.waiting.take() {
            let name = shortfall.map_or_else(
                || "waiting behind earlier waiters".to_owned(),
                |s| format!("waiting for {}", s.dim.name()),
            );
            let args_b = shortfall.map_or_else(
                || "{}".to_owned(),
                |s| format!("{{\"lacked\":{}}}", Js(&shortfall_text(&s))),
            );
            self.async_span(task, &name, (from, at), &args_b, &outcome_args(outcome))?;
        }
        Ok(())
    }

    fn close_backoff(
        &mut self,
        task: u64,
        st: &mut TaskState,
        at: u64,
        outcome: &str,
    ) -> io::Result<()> {
        if let Some((from, attempt)) = st.backoff.take() {
            let args_b = format!("{{\"attempt\":{attempt}}}");
            self.async_span(
                task,
                "retry backoff",
                (from, at),
                &args_b,
                &outcome_args(outcome),
            )?;
        }
        Ok(())
    }

    /// Ends every open wait of a task that ends.
    fn end_waits(
        &mut self,
        task: u64,
        st: &mut TaskState,
        at: u64,
        outcome: &str,
    ) -> io::Result<()> {
        self.close_waiting(task, st, at, outcome)?;
        self.close_backoff(task, st, at, outcome)?;
        if let Some(from) = st.queued.take() {
            let class = st.class.and_then(|c| self.class_name(c)).map(str::to_owned);
            self.async_span(
                task,
                "queued",
                (from, at),
                &args_class(&class),
                &outcome_args(outcome),
            )?;
        }
        Ok(())
    }

    fn flow(&mut self, task: u64, at: u64, thread: u32, start: u64, worker: u32) -> io::Result<()> {
        self.submitters.insert(thread);
        self.event(
            's',
            format_args!(
                "\"tid\":{},\"cat\":\"flow\",\"name\":\"submit\",\"id\":{task},\"ts\":{}",
                submit_tid(thread),
                Us(at)
            ),
        )?;
        self.event(
            'f',
            format_args!(
                "\"tid\":{},\"cat\":\"flow\",\"name\":\"submit\",\"id\":{task},\"bp\":\"e\",\"ts\":{}",
                worker_tid(worker),
                Us(start.max(at))
            ),
        )
    }

    fn close_run(
        &mut self,
        task: u64,
        st: &mut TaskState,
        r: &Record,
        class: &Option<String>,
        outcome: &str,
        usage: Option<Resources>,
    ) -> io::Result<()> {
        let Some((start, worker)) = st.run.take() else {
            return Ok(());
        };
        let end = r.at.max(start);
        let mut args = String::new();
        let _ = write!(args, "{{\"task\":{task}");
        if let Some(c) = class {
            let _ = write!(args, ",\"class\":{}", Js(c));
        }
        let reservation = st
            .reservation
            .as_ref()
            .map_or_else(|| "{}".to_owned(), human_resources);
        let _ = write!(
            args,
            ",\"reservation\":{reservation},\"outcome\":{}",
            Js(outcome)
        );
        if st.attempt > 0 {
            let _ = write!(args, ",\"attempt\":{}", st.attempt);
        }
        if let Some(u) = usage {
            let _ = write!(args, ",\"used\":{}", human_resources(&u));
            let mem = u.amount(Dim::Memory);
            let cpu = u.amount(Dim::Cpu);
            if mem > 0 || cpu > 0 {
                self.uses.push((start, end, mem, cpu));
            }
        }
        // What it used: from its end event, else from its profile update
        // (a task that panicked is measured too).
        let measured = st.measured.take();
        if let (None, Some(m)) = (usage, measured) {
            let _ = write!(args, ",\"used\":{}", human_resources(&m));
        }
        args.push('}');
        let name = class.as_deref().unwrap_or("task");
        self.event(
            'X',
            format_args!(
                "\"tid\":{},\"cat\":\"task\",\"name\":{},\"ts\":{},\"dur\":{},\"args\":{args}",
                worker_tid(worker),
                Js(name),
                Us(start),
                Us(end - start)
            ),
        )?;
        if std::mem::take(&mut st.flow) {
            if let Some((at, thread)) = st.submitted {
                self.flow(task, at, thread, start, worker)?;
            }
        }
        Ok(())
    }

    /// The "used by running tasks" counters: each finished run's measured
    /// memory and CPU added over its run.
    fn used_counters(&mut self) -> io::Result<()> {
        let uses = std::mem::take(&mut self.uses);
        for (dim, name, unit) in [
            (0, "memory used by running tasks", "bytes"),
            (1, "cpu used by running tasks", "millicores"),
        ] {
            // (time, rise before fall at one instant, amount)
            let mut steps: Vec<(u64, u8, u64)> = Vec::new();
            for &(s, e, mem, cpu) in &uses {
                let v = if dim == 0 { mem } else { cpu };
                if v > 0 {
                    steps.push((s, 0, v));
                    steps.push((e, 1, v));
                }
            }
            if steps.is_empty() {
                continue;
            }
            steps.sort_unstable();
            let mut value: u64 = 0;
            let mut i = 0;
            while i < steps.len() {
                let ts = steps[i].0;
                while i < steps.len() && steps[i].0 == ts {
                    let (_, fall, v) = steps[i];
                    value = if fall == 1 {
                        value.saturating_sub(v)
                    } else {
                        value.saturating_add(v)
                    };
                    i += 1;
                }
                self.counter(name, unit, ts, value)?;
            }
        }
        Ok(())
    }

    fn metadata(&mut self) -> io::Result<()> {
        let name = self.process_name;
        self.event(
            'M',
            format_args!(
                "\"tid\":0,\"name\":\"process_name\",\"args\":{{\"name\":{}}}",
                Js(name)
            ),
        )?;
        let mut tracks: Vec<(u64, String)> = Vec::new();
        if self.pool_used {
            tracks.push((TID_POOL, "pool".to_owned()));
        }
        if self.queue_used {
            tracks.push((TID_QUEUE, "queue".to_owned()));
        }
        for &w in &self.workers {
            tracks.push((worker_tid(w), format!("worker {w}")));
        }
        for &t in &self.submitters {
            tracks.push((submit_tid(t), format!("submit (thread {t})")));
        }
        for (i, (tid, name)) in tracks.into_iter().enumerate() {
            self.event(
                'M',
                format_args!(
                    "\"tid\":{tid},\"name\":\"thread_name\",\"args\":{{\"name\":{}}}",
                    Js(&name)
                ),
            )?;
            self.event(
                'M',
                format_args!(
                    "\"tid\":{tid},\"name\":\"thread_sort_index\",\"args\":{{\"sort_index\":{i}}}"
                ),
            )?;
        }
        Ok(())
    }
}

fn args_class(class: &Option<String>) -> String {
    class
        .as_deref()
        .map_or_else(|| "{}".to_owned(), |c| format!("{{\"class\":{}}}", Js(c)))
}

fn outcome_args(outcome: &str) -> String {
    format!("{{\"outcome\":{}}}", Js(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use respool::alloc::TrackingAllocator;

    #[global_allocator]
    static ALLOC: TrackingAllocator = TrackingAllocator::system();

    const CLASSES: [&str; 4] = ["parse", "sort", "io", "render"];

    /// One task's events, as the pool would send them.
    fn one_task(rec: &TraceRecorder, id: u64, at: &mut u64) {
        let class = Some(CLASSES[(id % 4) as usize]);
        let res = Resources::NONE
            .with_saturating(Dim::Memory, 1 << 20)
            .with_saturating(Dim::Cpu, 500);
        let mut ev = |kind: Kind, terminal: bool| {
            *at += 1000;
            rec.record(*at, id, class, kind, terminal);
        };
        ev(Kind::Submitted(res), false);
        ev(Kind::Admitted(res), false);
        ev(
            Kind::Started {
                worker: (id % 3) as u32,
            },
            false,
        );
        ev(Kind::Finished(Some(res)), true);
    }

    #[test]
    fn recording_allocates_nothing_after_warm_up() {
        let rec = TraceRecorder::new(TraceConfig::new().capacity(64).max_classes(2));
        let mut at = 0;
        // Warm-up: the first two classes are interned (the others become
        // "_other" without allocating), the ring fills up.
        for id in 1..=64 {
            one_task(&rec, id, &mut at);
        }
        let ((), heap) = respool::alloc::measure(|| {
            for id in 65..=10_064 {
                one_task(&rec, id, &mut at);
            }
        });
        assert_eq!(heap.allocations, 0, "{heap:?}");
        assert_eq!(rec.len(), 64);
        assert_eq!(rec.recorded(), 10_064 * 4);
        assert_eq!(rec.dropped(), 10_064 * 4 - 64);
        let inner = rec.lock();
        assert_eq!(inner.classes.len(), 2);
        assert!(inner.live.is_empty());
        assert_eq!(inner.reserved, [0, 0]);
    }

    #[test]
    fn reserved_sums_follow_admissions_growth_and_ends() {
        let rec = TraceRecorder::new(TraceConfig::new().live_tasks(1));
        let mem = |n| Resources::NONE.with_saturating(Dim::Memory, n);
        rec.record(1, 1, None, Kind::Admitted(mem(100)), false);
        rec.record(2, 1, None, Kind::Grown(mem(20)), false);
        // The map holds one task: the second is not followed.
        rec.record(3, 2, None, Kind::Admitted(mem(1000)), false);
        rec.record(4, 2, None, Kind::Grown(mem(5)), false);
        assert_eq!(rec.lock().reserved, [120, 0]);
        assert_eq!(rec.untracked(), 2);
        rec.record(5, 2, None, Kind::Finished(None), true);
        assert_eq!(rec.lock().reserved, [120, 0]);
        rec.record(
            6,
            1,
            None,
            Kind::Retried {
                attempt: 1,
                delay_ns: 0,
            },
            false,
        );
        assert_eq!(rec.lock().reserved, [0, 0]);
        rec.record(7, 1, None, Kind::Admitted(mem(100)), false);
        rec.record(8, 1, None, Kind::Panicked, true);
        assert_eq!(rec.lock().reserved, [0, 0]);
    }

    fn exported(rec: &TraceRecorder) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        rec.write_json(&mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["traceEvents"].as_array().unwrap().clone()
    }

    #[test]
    fn counters_never_go_back_in_time() {
        // Two threads' admissions reach the lock out of clock order.
        let rec = TraceRecorder::new(TraceConfig::new());
        let mem = |n| Resources::NONE.with_saturating(Dim::Memory, n);
        rec.record(10_000, 1, None, Kind::Admitted(mem(100)), false);
        rec.record(5_000, 2, None, Kind::Admitted(mem(50)), false);
        rec.record(20_000, 1, None, Kind::Finished(None), true);
        let samples: Vec<(f64, f64)> = exported(&rec)
            .iter()
            .filter(|e| e["name"] == "memory reserved")
            .map(|e| {
                (
                    e["ts"].as_f64().unwrap(),
                    e["args"]["bytes"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(samples, [(10.0, 100.0), (10.0, 150.0), (20.0, 50.0)]);
    }

    #[test]
    fn a_retried_task_has_one_run_per_attempt_and_a_backoff() {
        let rec = TraceRecorder::new(TraceConfig::new());
        let none = Resources::NONE;
        let c = Some("flaky");
        rec.record(1_000, 7, c, Kind::Submitted(none), false);
        rec.record(2_000, 7, c, Kind::Admitted(none), false);
        rec.record(3_000, 7, c, Kind::Started { worker: 0 }, false);
        let retried = Kind::Retried {
            attempt: 1,
            delay_ns: 1_000,
        };
        rec.record(4_000, 7, c, retried, false);
        rec.record(5_000, 7, c, Kind::Admitted(none), false);
        rec.record(6_000, 7, c, Kind::Started { worker: 1 }, false);
        rec.record(7_000, 7, c, Kind::Finished(None), true);
        let events = exported(&rec);
        let runs: Vec<_> = events
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == "task")
            .map(|e| {
                (
                    e["tid"].as_u64().unwrap(),
                    e["args"]["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(runs.len(), 2, "{events:?}");
        assert_eq!(runs[0].0, worker_tid(0));
        assert!(runs[0].1.starts_with("retried"), "{runs:?}");
        assert_eq!(runs[1], (worker_tid(1), "finished"));
        let backoff = events
            .iter()
            .filter(|e| e["name"] == "retry backoff")
            .count();
        assert_eq!(backoff, 2, "b and e: {events:?}");
        // One flow, to the first run.
        assert_eq!(events.iter().filter(|e| e["ph"] == "f").count(), 1);
    }

    #[test]
    fn class_names_are_bounded_and_escaped() {
        let rec = TraceRecorder::new(TraceConfig::new().max_classes(1));
        rec.record(
            1_000,
            1,
            Some("a \"quoted\"\nname"),
            Kind::Started { worker: 0 },
            false,
        );
        rec.record(2_000, 1, None, Kind::Finished(None), true);
        rec.record(3_000, 2, Some("second"), Kind::Started { worker: 0 }, false);
        rec.record(4_000, 2, None, Kind::Finished(None), true);
        let names: Vec<_> = exported(&rec)
            .iter()
            .filter(|e| e["ph"] == "X")
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a \"quoted\"\nname", OTHER_CLASS]);
    }

    /// The recording path's cost, one thread, no contention:
    /// `cargo test --release -p respool-observe --lib -- --ignored --nocapture per_event`.
    #[test]
    #[ignore = "a timing to read, not a check; run in release"]
    fn per_event_cost() {
        let rec = TraceRecorder::new(TraceConfig::new().capacity(1 << 16));
        let mut at = 0;
        for id in 1..=100_000 {
            one_task(&rec, id, &mut at);
        }
        let n = 1_000_000u64;
        let t = std::time::Instant::now();
        for id in 100_001..=100_000 + n {
            one_task(&rec, id, &mut at);
        }
        let per = t.elapsed().as_nanos() as f64 / (n * 4) as f64;
        println!(
            "per event: {per:.1} ns ({} events, {} bytes a record)",
            n * 4,
            std::mem::size_of::<Record>()
        );
    }
}
