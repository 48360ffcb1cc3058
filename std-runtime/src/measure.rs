//! Per-task measurement: what a task really used.
//!
//! For every measured task (a task with a class, or every task with
//! [`Builder::measure_all`](crate::builder::Builder::measure_all)) the worker records:
//!
//! | figure | how |
//! |---|---|
//! | wall time | `Instant` before and after the run |
//! | waiting time | submission to start |
//! | thread CPU time | `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` (Linux; elsewhere not measured) |
//! | I/O | `/proc/thread-self/io` (Linux): bytes read and written through syscalls, read/write syscall counts, storage bytes |
//! | heap | allocated bytes, peak live bytes, allocations, through the opt-in [`TrackingAllocator`](crate::alloc::TrackingAllocator) |
//! | other dimensions | whatever the task reports with [`TaskContext::report_usage`](crate::handle::TaskContext::report_usage) |
//!
//! [`TaskUsage::as_resources`] turns these into the resource vector that is
//! learned for the task's class: memory is the heap peak, CPU the average
//! millicores over the run, IOPS the syscall rate, the rest as reported.

use std::cell::Cell;
use std::time::Duration;

use respool_core::{Dim, Resources};

use crate::alloc::HeapUsage;

thread_local! {
    /// Usage reported by the task running on this thread.
    static REPORTED: Cell<Resources> = const { Cell::new(Resources::NONE) };
    /// What the probe of the task running on this thread reads: `None`
    /// (no probe), `Some(false)` (CPU time) or `Some(true)` (CPU time and
    /// I/O). Tells [`Inline`] what to measure.
    static PROBING: Cell<Option<bool>> = const { Cell::new(None) };
    /// CPU time and I/O of the tasks run inline on this thread, summed (see
    /// [`Inline`]): a probe subtracts what was added while it ran.
    static INLINED: Cell<Inlined> = const { Cell::new(Inlined::ZERO) };
}

/// CPU time and I/O used by tasks run inline.
#[derive(Clone, Copy)]
struct Inlined {
    cpu: Duration,
    io: IoCounters,
}

impl Inlined {
    const ZERO: Inlined = Inlined {
        cpu: Duration::ZERO,
        io: IoCounters {
            read_bytes: 0,
            write_bytes: 0,
            read_calls: 0,
            write_calls: 0,
            storage_read: 0,
            storage_write: 0,
        },
    };

    /// What was added since `before`.
    fn since(self, before: Inlined) -> Inlined {
        Inlined {
            cpu: self.cpu.saturating_sub(before.cpu),
            io: self.io.delta(before.io),
        }
    }
}

/// A task run inline on this thread, nested inside the task running there
/// (a scope waiting on a worker runs queued tasks itself). While it lives,
/// what the inline task reports and uses stays out of the surrounding
/// task's figures: the surrounding task's reported usage is set aside and
/// put back when it is dropped, and the CPU time and I/O in between are
/// added to [`INLINED`], for the surrounding task's probe to subtract (read
/// only when a probe runs).
pub(crate) struct Inline {
    reported: Resources,
    probing: Option<bool>,
    inlined: Inlined,
    cpu: Option<Duration>,
    io: Option<IoCounters>,
}

impl Inline {
    /// Sets the running task's figures aside.
    pub(crate) fn enter() -> Inline {
        let probing = PROBING.with(|p| p.replace(None));
        Inline {
            reported: REPORTED.with(|r| r.replace(Resources::NONE)),
            probing,
            inlined: INLINED.with(Cell::get),
            cpu: probing.and_then(|_| thread_cpu()),
            io: if probing == Some(true) {
                thread_io()
            } else {
                None
            },
        }
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        let mut inlined = self.inlined;
        // The whole inline run, tasks it ran inline itself included (what
        // they added to `INLINED` is replaced, not added twice).
        if let Some((a, b)) = self.cpu.zip(thread_cpu()) {
            inlined.cpu = inlined.cpu.saturating_add(b.saturating_sub(a));
        }
        if let Some((a, b)) = self.io.zip(thread_io()) {
            inlined.io = inlined.io.plus(b.delta(a));
        }
        INLINED.with(|c| c.set(inlined));
        PROBING.with(|p| p.set(self.probing));
        REPORTED.with(|r| r.set(self.reported));
    }
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

/// I/O done by one thread, from `/proc/thread-self/io`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Bytes read through read-like syscalls (`rchar`).
    pub read_bytes: u64,
    /// Bytes written through write-like syscalls (`wchar`).
    pub write_bytes: u64,
    /// Read syscalls (`syscr`).
    pub read_calls: u64,
    /// Write syscalls (`syscw`).
    pub write_calls: u64,
    /// Bytes fetched from storage (`read_bytes`).
    pub storage_read: u64,
    /// Bytes sent to storage (`write_bytes`).
    pub storage_write: u64,
}

impl IoCounters {
    fn delta(self, before: IoCounters) -> IoCounters {
        IoCounters {
            read_bytes: self.read_bytes.saturating_sub(before.read_bytes),
            write_bytes: self.write_bytes.saturating_sub(before.write_bytes),
            read_calls: self.read_calls.saturating_sub(before.read_calls),
            write_calls: self.write_calls.saturating_sub(before.write_calls),
            storage_read: self.storage_read.saturating_sub(before.storage_read),
            storage_write: self.storage_write.saturating_sub(before.storage_write),
        }
    }

    fn plus(self, other: IoCounters) -> IoCounters {
        IoCounters {
            read_bytes: self.read_bytes.saturating_add(other.read_bytes),
            write_bytes: self.write_bytes.saturating_add(other.write_bytes),
            read_calls: self.read_calls.saturating_add(other.read_calls),
            write_calls: self.write_calls.saturating_add(other.write_calls),
            storage_read: self.storage_read.saturating_add(other.storage_read),
            storage_write: self.storage_write.saturating_add(other.storage_write),
        }
    }
}

/// What one task used, as measured by the worker that ran it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskUsage {
    /// Run time.
    pub wall: Duration,
    /// Submission to start.
    pub wait: Duration,
    /// CPU time of the worker thread while it ran the task (`None` where the
    /// platform has no per-thread CPU clock).
    pub cpu: Option<Duration>,
    /// I/O of the worker thread while it ran the task (Linux only).
    pub io: Option<IoCounters>,
    /// Heap activity, when a [`TrackingAllocator`](crate::alloc::TrackingAllocator)
    /// is installed.
    pub heap: Option<HeapUsage>,
    /// Usage the task reported for dimensions nothing measures.
    pub reported: Resources,
}

impl TaskUsage {
    /// Runs shorter than this give no CPU or IOPS figure: the clock reads
    /// and syscalls around a task cost a few microseconds, and thread CPU
    /// clocks may advance in steps, so a rate over a shorter run says more
    /// about the measurement than about the task (a 12 us task once
    /// measured 13 cores). Its heap and reported figures still count.
    pub const MIN_RATE_WALL: Duration = Duration::from_millis(1);

    /// The usage as a resource vector: memory = heap peak, CPU = average
    /// millicores over the run, at most one core (the thread CPU clock
    /// measures the one worker thread that ran the task: more than its wall
    /// time is a measurement error), IOPS = read and write syscalls per
    /// second; CPU and IOPS only for runs of at least
    /// [`MIN_RATE_WALL`](TaskUsage::MIN_RATE_WALL). Other dimensions as
    /// reported (reported values also override measured ones, so a task
    /// that starts threads of its own can report its CPU).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use respool::Dim;
    /// use respool::measure::TaskUsage;
    /// let ms = Duration::from_millis;
    /// let busy = TaskUsage { wall: ms(10), cpu: Some(ms(5)), ..TaskUsage::default() };
    /// assert_eq!(busy.as_resources().get(Dim::Cpu), Some(500));
    /// // A clock that says more than the wall time: one core, not more.
    /// let odd = TaskUsage { wall: ms(10), cpu: Some(ms(40)), ..TaskUsage::default() };
    /// assert_eq!(odd.as_resources().get(Dim::Cpu), Some(1000));
    /// // Too short to time: no CPU figure at all.
    /// let short = TaskUsage { wall: Duration::from_micros(12), cpu: Some(ms(1)), ..TaskUsage::default() };
    /// assert_eq!(short.as_resources().get(Dim::Cpu), None);
    /// ```
    #[must_use]
    pub fn as_resources(&self) -> Resources {
        let mut r = Resources::NONE;
        let wall_ns = u64::try_from(self.wall.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let timed = self.wall >= TaskUsage::MIN_RATE_WALL;
        if let Some(h) = self.heap {
            r = r.with_saturating(Dim::Memory, h.peak);
        }
        if let Some(cpu) = self.cpu.filter(|_| timed) {
            let cpu_ns = u64::try_from(cpu.as_nanos())
                .unwrap_or(u64::MAX)
                .min(wall_ns);
            let milli = u128::from(cpu_ns) * 1000 / u128::from(wall_ns);
            r = r.with_saturating(Dim::Cpu, u64::try_from(milli).unwrap_or(1000).max(1));
        }
        if let Some(io) = self.io {
            if timed {
                let calls = io.read_calls.saturating_add(io.write_calls);
                let per_s = u128::from(calls) * 1_000_000_000 / u128::from(wall_ns);
                r = r.with_saturating(Dim::Iops, u64::try_from(per_s).unwrap_or(u64::MAX));
            }
        }
        self.reported
            .iter()
            .fold(r, |acc, (d, v)| acc.with_saturating(d, v))
    }
}

/// What a measured task was given and what it used, passed to
/// [`Builder::on_task_end`](crate::builder::Builder::on_task_end).
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// use respool::{Dim, Pool};
/// use respool::measure::TaskReport;
/// let (tx, rx) = mpsc::channel();
/// let pool = Pool::builder()
///     .workers(2)
///     .memory("1GiB")
///     // Runs on the worker after each measured task: keep it short.
///     .on_task_end(move |r: &TaskReport| drop(tx.send(r.clone())))
///     .build()?;
/// let h = pool.task().class("parse").memory("32MiB").spawn(|_| "a,b,c".split(',').count())?;
/// assert_eq!(h.join()?, 3);
/// let report = rx.recv()?;
/// assert_eq!(report.class.as_deref(), Some("parse"));
/// assert_eq!(report.requested.get(Dim::Memory), Some(32 << 20));
/// assert!(!report.panicked);
/// println!("used {:?} over {:?}", report.usage.as_resources(), report.usage.wall);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TaskReport {
    /// The task's class key.
    pub class: Option<std::sync::Arc<str>>,
    /// The task's size hint.
    pub size: Option<u64>,
    /// What it was admitted with (declared, learned or fallback).
    pub requested: Resources,
    /// The expected usage of the dimensions that came from learning.
    pub expected: Resources,
    /// What it used.
    pub usage: TaskUsage,
    /// How much its reservation grew while it ran, because it used more
    /// memory than it reserved.
    pub grown: Resources,
    /// Whether it panicked.
    pub panicked: bool,
}

/// The CPU time of the calling thread.
#[cfg(target_os = "linux")]
pub(crate) fn thread_cpu() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

/// The CPU time of the calling thread (not measured on this platform).
#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_cpu() -> Option<Duration> {
    None
}

/// The I/O counters of the calling thread, read without allocating after
/// the first call on a thread (the file stays open).
#[cfg(target_os = "linux")]
pub(crate) fn thread_io() -> Option<IoCounters> {
    use std::os::unix::fs::FileExt;
    thread_local! {
        static FILE: std::cell::RefCell<Option<std::fs::File>> = const { std::cell::RefCell::new(None) };
    }
    FILE.with(|f| {
        let mut f = f.try_borrow_mut().ok()?;
        if f.is_none() {
            *f = std::fs::File::open("/proc/thread-self/io").ok();
        }
        let file = f.as_ref()?;
        let mut buf = [0u8; 512];
        let n = file.read_at(&mut buf, 0).ok()?;
        parse_io(buf.get(..n)?)
    })
}

/// The I/O counters of the calling thread (not measured on this platform).
#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_io() -> Option<IoCounters> {
    None
}

/// Parses the `key: value` lines of `/proc/<pid>/io`.
pub(crate) fn parse_io(text: &[u8]) -> Option<IoCounters> {
    let mut io = IoCounters::default();
    let mut seen = 0;
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, rest) = line.split_at(colon);
        let value = rest
            .iter()
            .skip(1)
            .skip_while(|b| b.is_ascii_whitespace())
            .take_while(|b| b.is_ascii_digit())
            .try_fold(0u64, |acc, &b| {
                acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })?;
        let slot = match key {
            b"rchar" => &mut io.read_bytes,
            b"wchar" => &mut io.write_bytes,
            b"syscr" => &mut io.read_calls,
            b"syscw" => &mut io.write_calls,
            b"read_bytes" => &mut io.storage_read,
            b"write_bytes" => &mut io.storage_write,
            _ => continue,
        };
        *slot = value;
        seen += 1;
    }
    (seen > 0).then_some(io)
}

/// Measurement in progress on the current thread.
pub(crate) struct Probe {
    cpu: Option<Duration>,
    io: Option<IoCounters>,
    /// `INLINED` at the start.
    inlined: Inlined,
    /// `PROBING` before this probe, put back by `finish`.
    outer: Option<bool>,
}

impl Probe {
    /// Reads the starting counters (CPU always, I/O when `io`).
    pub(crate) fn start(io: bool) -> Probe {
        take_reported();
        Probe {
            cpu: thread_cpu(),
            io: if io { thread_io() } else { None },
            inlined: INLINED.with(Cell::get),
            outer: PROBING.with(|p| p.replace(Some(io))),
        }
    }

    /// Reads the counters again and returns the differences, less what
    /// tasks run inline meanwhile used (see [`Inline`]).
    pub(crate) fn finish(
        self,
        wall: Duration,
        wait: Duration,
        heap: Option<HeapUsage>,
    ) -> TaskUsage {
        let inline = INLINED.with(Cell::get).since(self.inlined);
        PROBING.with(|p| p.set(self.outer));
        let cpu = self
            .cpu
            .zip(thread_cpu())
            .map(|(a, b)| b.saturating_sub(a).saturating_sub(inline.cpu));
        let io = self
            .io
            .zip(thread_io())
            .map(|(a, b)| b.delta(a).delta(inline.io));
        TaskUsage {
            wall,
            wait,
            cpu,
            io,
            heap,
            reported: take_reported(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_io() {
        let text = b"rchar: 4096\nwchar: 12\nsyscr: 7\nsyscw: 3\nread_bytes: 0\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        let io = parse_io(text).unwrap();
        assert_eq!(
            io,
            IoCounters {
                read_bytes: 4096,
                write_bytes: 12,
                read_calls: 7,
                write_calls: 3,
                storage_read: 0,
                storage_write: 8192
            }
        );
        assert_eq!(parse_io(b"garbage"), None);
        assert_eq!(
            parse_io(b"rchar: 99999999999999999999999\n"),
            None,
            "overflow is not a value"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn thread_cpu_and_io_move_forward() {
        let p = Probe::start(true);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let _ = std::fs::read("/proc/self/stat").unwrap();
        report_usage(Dim::Network, 10);
        report_usage(Dim::Network, 7);
        let u = p.finish(Duration::from_millis(5), Duration::ZERO, None);
        assert!(u.cpu.unwrap() > Duration::ZERO);
        let io = u.io.unwrap();
        assert!(io.read_calls >= 1 && io.read_bytes > 0, "{io:?}");
        assert_eq!(
            u.reported.get(Dim::Network),
            Some(10),
            "the largest report wins"
        );
        let r = u.as_resources();
        assert!(r.get(Dim::Cpu).unwrap() >= 1);
        assert!(r.get(Dim::Iops).is_some());
        assert_eq!(
            r.get(Dim::Memory),
            None,
            "no tracking allocator in this test binary"
        );
    }

    /// Thread CPU time of `rounds` rounds of arithmetic.
    #[cfg(target_os = "linux")]
    fn spin(rounds: u64) {
        let mut x = 0u64;
        for i in 0..rounds {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn tasks_run_inline_are_kept_out_of_the_surrounding_probes() {
        const ROUNDS: u64 = 5_000_000;
        let finish = |p: Probe| p.finish(Duration::from_millis(5), Duration::ZERO, None);
        let outer = Probe::start(false);
        report_usage(Dim::Network, 7);
        // The outer task's own work, measured on its own as a yardstick.
        let own = finish({
            let p = Probe::start(false);
            spin(ROUNDS);
            p
        })
        .cpu
        .unwrap();
        report_usage(Dim::Network, 7);
        let inner = {
            let _inline = Inline::enter();
            let inner = Probe::start(false);
            report_usage(Dim::Gpu, 1);
            {
                // A task the inner one runs inline in turn: twice the work.
                let _deeper = Inline::enter();
                spin(2 * ROUNDS);
            }
            finish(inner)
        };
        let outer = finish(outer);
        let (outer_cpu, inner_cpu) = (outer.cpu.unwrap(), inner.cpu.unwrap());
        assert!(
            inner_cpu < own / 2,
            "the deeper task is not the inner's: {inner_cpu:?}, own work {own:?}"
        );
        assert!(
            outer_cpu < own * 2,
            "neither task is the outer's: {outer_cpu:?}, own work {own:?}"
        );
        assert!(
            outer_cpu > own / 2,
            "the deeper task is subtracted once: {outer_cpu:?}, own work {own:?}"
        );
        assert_eq!(inner.reported, Resources::new().with(Dim::Gpu, 1).unwrap());
        assert_eq!(
            outer.reported,
            Resources::new().with(Dim::Network, 7).unwrap(),
            "the outer's report survives the inline task"
        );
    }

    #[test]
    fn usage_as_resources() {
        let u = TaskUsage {
            wall: Duration::from_millis(100),
            cpu: Some(Duration::from_millis(50)),
            heap: Some(HeapUsage {
                peak: 1 << 20,
                ..HeapUsage::default()
            }),
            io: Some(IoCounters {
                read_calls: 30,
                write_calls: 20,
                ..IoCounters::default()
            }),
            reported: Resources::new().with(Dim::Gpu, 1).unwrap(),
            ..TaskUsage::default()
        };
        let r = u.as_resources();
        assert_eq!(r.get(Dim::Cpu), Some(500));
        assert_eq!(r.get(Dim::Memory), Some(1 << 20));
        assert_eq!(r.get(Dim::Iops), Some(500));
        assert_eq!(r.get(Dim::Gpu), Some(1));
    }
}
