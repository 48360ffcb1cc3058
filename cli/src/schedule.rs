//! `respool run`: each job a task of a respool [`Pool`], admitted by the
//! memory its class is predicted to need; outputs, joblog, results, halting
//! and the exit status handled on the calling thread.
//!
//! Memory limits and OOM recovery: the pool decides each task's reservation
//! when it is submitted (declared, else the class's prediction, else the
//! fallback, clamped to the budget); `Reservations` reads it from the
//! `Submitted` event and hands it to the job, whose cgroup is limited to it
//! (to the whole budget while the class is on the fallback). An attempt the
//! OOM killer killed submits the next one itself, from its worker, with the
//! raised reservation declared, and tells the class (`Pool::report_oom`);
//! only the last attempt reaches the main thread, the joblog and the
//! results, and is learned from.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::time::Duration;

use respool::learn::LearningConfig;
use respool::measure::TaskReport;
use respool::observe::{Event, EventKind, Observer};
use respool::store::FileStore;
use respool::{Dim, Pool, Resources, TaskContext};

use crate::args::{Halt, HaltCount, HaltWhen, HaltWhy, RunArgs, Timeout};
use crate::input::{self, Product};
use crate::job::{self, JobError, JobOutcome, JobSpec, Measurer};
use crate::joblog::{self, JobLog};
use crate::progress::{Progress, Status, say};
use crate::replace::Template;
use crate::results::{JobRecord, ResultsFile};

/// Exit status for usage errors (GNU parallel's).
pub const USAGE: i32 = 255;

/// Exit status when Ctrl-C (SIGINT) stops the run (GNU parallel's).
pub const INTERRUPTED: i32 = 255;

/// Largest exit status counting failed jobs (GNU parallel's: 101 means more than 100).
pub const MAX_FAILED_STATUS: u64 = 101;

/// Run-time samples kept per class for `--timeout P%` (GNU parallel's first
/// remedian level holds 999).
const MEDIAN_WINDOW: usize = 999;

/// Jobs running now (for the progress bar).
static RUNNING_JOBS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The job the pool's task on this worker thread runs, for `on_task_end`.
    static CURRENT_SEQ: Cell<u64> = const { Cell::new(0) };
    /// Where the job being submitted on this thread learns the memory respool
    /// reserves for it (filled by [`Reservations`] during the submission).
    static SUBMITTING: RefCell<Option<Arc<OnceLock<Option<u64>>>>> = const { RefCell::new(None) };
}

/// Hands each job the memory respool reserves for it, before it can start.
///
/// The reservation (declared, learned, or the fallback, clamped to the
/// budget) is decided when the task is submitted, and the pool's observer
/// sees it in the `Submitted` event, on the submitting thread, before the
/// task is queued: [`submit`] puts the job's cell in `SUBMITTING` around
/// the submission, and this observer fills it.
struct Reservations;

impl Observer for Reservations {
    fn on_event(&self, event: &Event<'_>) {
        if let EventKind::Submitted { requirements } = event.kind {
            if let Some(cell) = SUBMITTING.with(|s| s.borrow_mut().take()) {
                let _ = cell.set(requirements.get(Dim::Memory));
            }
        }
    }
}

/// The per-job memory limits and the OOM retries.
struct Limits {
    /// Each job's cgroup is limited (a cgroup measures, no `--no-limit`).
    enabled: bool,
    /// The memory budget.
    budget: Option<u64>,
    /// What a class not learned yet reserves (the fallback, clamped to the
    /// budget as the pool clamps it).
    fallback: Option<u64>,
    /// `--oom-retries`.
    oom_retries: u32,
}

impl Limits {
    /// The cgroup limit of a job that reserved `reserved` (`raised`: an OOM
    /// retry's raised reservation): the reservation, except that a job on
    /// its class's fallback (a guess, not a measurement) is limited only by
    /// the whole budget.
    fn limit(&self, reserved: Option<u64>, raised: bool) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        match reserved {
            Some(r) if raised || Some(r) != self.fallback => Some(r),
            _ => self.budget,
        }
    }

    /// Words for the summary.
    fn describe(&self, measurer: &Measurer, no_limit: bool) -> &'static str {
        if self.enabled {
            "each job limited to its reservation"
        } else if no_limit {
            "no per-job limit (--no-limit)"
        } else if measurer.cgroup_dir().is_none() {
            "no per-job limit (rusage: none can be set)"
        } else {
            "no per-job limit"
        }
    }
}

/// A message from a worker (or the submitter) to the main thread.
enum Msg {
    /// A job ran (or could not be started).
    Done(Box<Finished>),
    /// A job was not started because `--halt` stopped the run.
    Skipped(u64),
    /// A job was not started because the joblog records it as done
    /// (`--resume`, `--resume-failed`).
    AlreadyDone(u64),
    /// What respool reserved and predicted for a job (from `on_task_end`).
    Report {
        seq: u64,
        reserved: Option<u64>,
        predicted: Option<u64>,
    },
    /// Every job was submitted; `n` is how many.
    Submitted(u64),
}

struct Finished {
    seq: u64,
    command: Vec<u8>,
    class: Arc<str>,
    result: Result<JobOutcome, String>,
    /// Attempts made (OOM retries included).
    attempts: u32,
    /// Attempts the OOM killer killed.
    oom_kills: u32,
    /// Killed at the whole budget: not retried.
    gave_up: bool,
    /// The cgroup limit of the last attempt.
    limit: Option<u64>,
}

/// The default profiles file: `$XDG_STATE_HOME/respool/profiles.json`, else
/// `~/.local/state/respool/profiles.json`.
///
/// # Errors
///
/// A message when neither variable gives an absolute directory.
pub fn default_store() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        if dir.is_absolute() {
            return Ok(dir.join("respool").join("profiles.json"));
        }
    }
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(home) if home.is_absolute() => Ok(home
            .join(".local")
            .join("state")
            .join("respool")
            .join("profiles.json")),
        _ => Err(
            "neither XDG_STATE_HOME nor HOME names a directory for the profiles: give --store PATH"
                .to_owned(),
        ),
    }
}

/// Human-readable bytes (binary units).
#[must_use]
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The class of a command line: the basename of its first word.
fn class_of(command: &[u8]) -> String {
    let first = command
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty())
        .unwrap_or(b"sh");
    let base = first.rsplit(|&b| b == b'/').next().unwrap_or(first);
    let name: String = String::from_utf8_lossy(base)
        .chars()
        .filter(|c| !matches!(c, '\'' | '"'))
        .collect();
    if name.is_empty() {
        "sh".to_owned()
    } else {
        name
    }
}

/// The class of job `seq`: `--class`'s template expanded for its arguments
/// (unquoted), else (no `--class`, or an empty expansion) its program's name.
fn class_for(template: Option<&Template>, args: &[&[u8]], seq: u64, command: &[u8]) -> String {
    match template.map(|t| t.expand_unquoted(args, seq)) {
        Some(name) if !name.is_empty() => String::from_utf8_lossy(&name).into_owned(),
        _ => class_of(command),
    }
}

/// The summed size of the arguments that name readable regular files.
fn size_hint(args: &[Vec<u8>]) -> Option<u64> {
    let mut total = None;
    for arg in args {
        let path = PathBuf::from(OsString::from_vec(arg.clone()));
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.is_file() && std::fs::File::open(&path).is_ok() {
                total = Some(total.unwrap_or(0u64).saturating_add(meta.len()));
            }
        }
    }
    total
}

/// Run times of successful jobs per class, for `--timeout P%`.
#[derive(Default)]
struct Medians(HashMap<String, VecDeque<f64>>);

impl Medians {
    fn add(&mut self, class: &str, seconds: f64) {
        let v = self.0.entry(class.to_owned()).or_default();
        if v.len() == MEDIAN_WINDOW {
            v.pop_front();
        }
        v.push_back(seconds);
    }

    fn median(&self, class: &str) -> Option<f64> {
        let v = self.0.get(class).filter(|v| !v.is_empty())?;
        let mut sorted: Vec<f64> = v.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        // GNU parallel's: the element at index $#/2.
        Some(sorted[(sorted.len() - 1) / 2])
    }
}

/// The halting state (GNU parallel's `should_we_halt`).
struct Halting {
    halt: Option<Halt>,
    total: u64,
    failed: u64,
    succeeded: u64,
    done: u64,
    /// Exit status fixed when the halt condition was met.
    status: Option<i32>,
}

impl Halting {
    /// Counts a finished job; returns whether the run must halt now (`Some(true)`:
    /// kill the running jobs) or soon (`Some(false)`).
    fn finished(&mut self, exit: Option<i32>, signal: Option<i32>, command: &[u8]) -> Option<bool> {
        let failed = exit != Some(0) || signal.is_some();
        self.done += 1;
        if failed {
            self.failed += 1;
        } else {
            self.succeeded += 1;
        }
        let halt = self.halt?;
        if self.status.is_some() {
            return None;
        }
        let limit = match halt.why {
            HaltWhy::Fail if failed => self.failed,
            HaltWhy::Success if !failed => self.succeeded,
            HaltWhy::Done => self.done,
            _ => return None,
        };
        let what = match (halt.why, failed) {
            (HaltWhy::Done, _) => "finished",
            (_, true) => "failed",
            (_, false) => "succeeded",
        };
        say(format!(
            "respool: This job {what}:\n{}",
            String::from_utf8_lossy(command)
        ));
        let threshold = match halt.count {
            HaltCount::Jobs(n) => n as f64,
            HaltCount::Percent(p) => self.total as f64 * p / 100.0,
        };
        if (limit as f64) < threshold {
            return None;
        }
        let status = match (halt.why, halt.count) {
            (HaltWhy::Success, _) => 0,
            (_, HaltCount::Percent(_)) => {
                (self.failed as f64 / self.total.max(1) as f64 * 100.0).ceil() as i32
            }
            (_, HaltCount::Jobs(1)) => match (exit, signal) {
                (_, Some(sig)) => sig + 128,
                (Some(code), None) => code,
                (None, None) => 0,
            },
            (_, HaltCount::Jobs(_)) => self.failed.min(MAX_FAILED_STATUS) as i32,
        };
        self.status = Some(status);
        Some(halt.when == HaltWhen::Now)
    }
}

/// Counts a finished job towards `--halt`, on the thread that ran it, so that
/// no further job starts once the run must stop: sets `halted`, and kills
/// the running jobs when it must stop now.
fn account(
    halting: &Mutex<Halting>,
    halted: &AtomicBool,
    exit: Option<i32>,
    signal: Option<i32>,
    command: &[u8],
) {
    let Ok(mut h) = halting.lock() else { return };
    if let Some(now) = h.finished(exit, signal, command) {
        halted.store(true, Ordering::SeqCst);
        if now {
            job::stop_all();
        } else {
            say("respool: Starting no more jobs. Waiting for the running ones to finish.");
        }
    }
}

/// How a class's jobs had their memory reserved, for the summary.
#[derive(Default)]
struct Sizing {
    /// From a confident prediction.
    learned: u64,
    /// From the class's measured runs, not confident yet (the core's
    /// "covered" estimate: the class's own data, its misses' percentile).
    measured: u64,
    /// The fallback (nothing learned), or a raised OOM retry.
    fallback: u64,
}

/// A job whose results line waits for its other half.
#[derive(Default)]
struct Pending {
    record: Option<JobRecord>,
    report: Option<(Option<u64>, Option<u64>)>,
}

/// Runs `respool run`; returns the exit status.
pub fn run(args: RunArgs) -> i32 {
    match run_inner(args) {
        Ok(status) => status,
        Err((status, message)) => {
            say(format!("respool: {message}"));
            status
        }
    }
}

fn usage(message: impl std::fmt::Display) -> (i32, String) {
    (USAGE, message.to_string())
}

#[allow(clippy::too_many_lines)]
fn run_inner(args: RunArgs) -> Result<i32, (i32, String)> {
    let line = input::split(&args.command).map_err(usage)?;
    // --resume / --resume-failed: the joblog is read (and found sound)
    // before anything is written, so that it is never lost.
    let resume = args.resume || args.resume_failed;
    let (recorded, done) = match (&args.joblog, resume) {
        (Some(path), true) => {
            let recorded = joblog::read(path).map_err(|e| {
                usage(format!(
                    "cannot resume from the joblog {}: {e}; it is left as it is",
                    path.display()
                ))
            })?;
            let done = match &recorded {
                None => HashSet::new(),
                Some(r) if args.resume_failed => r.succeeded.clone(),
                Some(r) => r.seen.clone(),
            };
            (recorded, done)
        }
        (None, true) => return Err(usage("--resume and --resume-failed need --joblog FILE")),
        (_, false) => (None, HashSet::new()),
    };
    let template = Template::parse(&line.command.join(&b' '));
    let sources = input::read_sources(&line.sources).map_err(usage)?;
    let linked: Vec<bool> = line.sources.iter().map(|s| s.linked).collect();
    let product = Product::new(sources, &linked);
    let total = product.total();

    if args.dry_run {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        for (i, tuple) in product.enumerate() {
            if done.contains(&(i as u64 + 1)) {
                continue;
            }
            let refs: Vec<&[u8]> = tuple.iter().map(Vec::as_slice).collect();
            let mut cmd = template.expand(&refs, i as u64 + 1);
            cmd.push(b'\n');
            if out.write_all(&cmd).is_err() {
                return Ok(0);
            }
        }
        return Ok(if out.flush().is_ok() { 0 } else { 1 });
    }

    let mut joblog = match &args.joblog {
        Some(p) => Some(
            if resume {
                JobLog::append(p, recorded.as_ref())
            } else {
                JobLog::create(p)
            }
            .map_err(|e| usage(format!("cannot write the joblog {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut results = match &args.results {
        Some(p) => Some(
            if resume {
                ResultsFile::append(p)
            } else {
                ResultsFile::create(p)
            }
            .map_err(|e| {
                usage(format!(
                    "cannot write the results file {}: {e}",
                    p.display()
                ))
            })?,
        ),
        None => None,
    };
    let store_path = match &args.store {
        Some(p) => p.clone(),
        None => default_store().map_err(usage)?,
    };

    let table = match &args.pricing {
        Some(p) => respool::cost::PriceTable::from_file(p).map_err(|e| usage(e.to_string()))?,
        None => respool::cost::PriceTable::builtin(),
    };
    let pricing = table
        .pricing(&args.instance)
        .map_err(|e| usage(format!("--instance: {e}")))?;

    let detected = respool::sys::default_capacity();
    let workers = args.jobs.unwrap_or(detected.workers.max(1));
    let budget = args.memory.or_else(|| detected.capacity.get(Dim::Memory));
    let measurer = Arc::new(if args.no_cgroup {
        Measurer::rusage_only()
    } else {
        Measurer::detect()
    });

    // -j bounds concurrency: every job declares one CPU of `workers`, so
    // the CPUs the machine has do not lower it; memory is what is learned.
    let cpu_capacity = (workers as u64).saturating_mul(1000);
    let mut capacity = Resources::NONE.with_saturating(Dim::Cpu, cpu_capacity);
    if let Some(b) = budget {
        capacity = capacity.with_saturating(Dim::Memory, b);
    }
    let learning = LearningConfig::default();
    let limits = Arc::new(Limits {
        enabled: !args.no_limit && measurer.cgroup_dir().is_some(),
        budget,
        fallback: learning
            .fallback
            .get(Dim::Memory)
            .map(|f| budget.map_or(f, |b| f.min(b))),
        oom_retries: args.oom_retries,
    });
    let (tx, rx) = mpsc::channel::<Msg>();
    let report_tx = Mutex::new(tx.clone());
    let pool = Pool::builder()
        .workers(workers)
        .capacity(capacity)
        .headroom(Resources::NONE)
        .learning(learning)
        .observer(Reservations)
        .tasks_report_memory(true)
        .pricing(pricing)
        .profile_store(FileStore::new(&store_path))
        .thread_name("respool-job")
        .on_task_end(move |r: &TaskReport| {
            let seq = CURRENT_SEQ.with(Cell::get);
            if seq == 0 {
                return;
            }
            let msg = Msg::Report {
                seq,
                reserved: r.requested.get(Dim::Memory),
                predicted: r.expected.get(Dim::Memory),
            };
            if let Ok(tx) = report_tx.lock() {
                let _ = tx.send(msg);
            }
        })
        .build()
        .map_err(|e| match e {
            respool::BuildError::Store(e) => (1, e.to_string()),
            e => usage(e),
        })?;

    // Seed the medians with the stored run times.
    let medians = Arc::new(Mutex::new(Medians::default()));
    if matches!(args.timeout, Some(Timeout::OfMedian(_))) {
        if let Ok(mut m) = medians.lock() {
            for record in pool.profiles().classes {
                for sample in &record.samples {
                    m.add(&record.class, sample.wall_ns as f64 / 1e9);
                }
            }
        }
    }

    let halted = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let halting = Arc::new(Mutex::new(Halting {
        halt: args.halt.and_then(|h| h.0),
        total,
        failed: 0,
        succeeded: 0,
        done: 0,
        status: None,
    }));
    let pool = Arc::new(pool);
    {
        // Ctrl-C: start nothing more and stop the running jobs; the jobs
        // it stopped are left out of the joblog (GNU parallel's way:
        // `--resume` runs them again), the results are completed, and the
        // exit status is GNU parallel's for Ctrl-C (255).
        let halted = Arc::clone(&halted);
        let interrupted = Arc::clone(&interrupted);
        if let Err(e) = ctrlc::set_handler(move || {
            if !interrupted.swap(true, Ordering::SeqCst) {
                say(
                    "respool: interrupted (Ctrl-C, SIGTERM or SIGHUP): starting no more jobs, stopping the running ones.",
                );
            }
            halted.store(true, Ordering::SeqCst);
            job::stop_all();
        }) {
            say(format!(
                "respool: Ctrl-C will not stop the jobs cleanly: {e}"
            ));
        }
    }
    let submitter = {
        let pool = Arc::clone(&pool);
        let tx = tx.clone();
        let halted = Arc::clone(&halted);
        let halting = Arc::clone(&halting);
        let medians = Arc::clone(&medians);
        let measurer = Arc::clone(&measurer);
        let limits = Arc::clone(&limits);
        let class_template = args.class.as_deref().map(|c| Template::parse(c.as_bytes()));
        let timeout = args.timeout;
        std::thread::Builder::new()
            .name("respool-submit".to_owned())
            .spawn(move || {
                let mut n = 0u64;
                for (i, tuple) in product.enumerate() {
                    let seq = i as u64 + 1;
                    if done.contains(&seq) {
                        let _ = tx.send(Msg::AlreadyDone(seq));
                        n = seq;
                        continue;
                    }
                    if halted.load(Ordering::SeqCst) {
                        let _ = tx.send(Msg::Skipped(seq));
                        n = seq;
                        continue;
                    }
                    let refs: Vec<&[u8]> = tuple.iter().map(Vec::as_slice).collect();
                    let command = template.expand(&refs, seq);
                    let class: Arc<str> =
                        class_for(class_template.as_ref(), &refs, seq, &command).into();
                    let job = JobTask {
                        seq,
                        command,
                        class,
                        size: size_hint(&tuple),
                        attempt: 1,
                        oom_kills: 0,
                        reserved: Arc::new(OnceLock::new()),
                        pool: Arc::downgrade(&pool),
                        limits: Arc::clone(&limits),
                        tx: tx.clone(),
                        halted: Arc::clone(&halted),
                        halting: Arc::clone(&halting),
                        medians: Arc::clone(&medians),
                        measurer: Arc::clone(&measurer),
                        timeout,
                    };
                    let fail_tx = tx.clone();
                    let (fail_cmd, fail_class) = (job.command.clone(), Arc::clone(&job.class));
                    if let Err(e) = submit(&pool, job, None) {
                        account(&halting, &halted, None, None, &fail_cmd);
                        let _ = fail_tx.send(Msg::Done(Box::new(Finished {
                            seq,
                            command: fail_cmd,
                            class: fail_class,
                            result: Err(format!("not scheduled: {e}")),
                            attempts: 1,
                            oom_kills: 0,
                            gave_up: false,
                            limit: None,
                        })));
                    }
                    n = seq;
                }
                let _ = tx.send(Msg::Submitted(n));
            })
            .map_err(|e| (1, format!("cannot start a thread: {e}")))?
    };
    drop(tx);

    let mut out = Output::new(args.keep_order);
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut submitted: Option<u64> = None;
    let mut accounted = 0u64;
    let mut skipped = 0u64;
    let mut already_done = 0u64;
    let mut peak_measured: Option<(u64, u64)> = None; // (bytes, seq)
    let mut oom_kills = 0u64;
    let mut oom_recovered = 0u64;
    let mut oom_gave_up = 0u64;
    let mut ran_classes = std::collections::BTreeSet::new();
    let mut io_error: Option<String> = None;
    let mut sizing: BTreeMap<String, Sizing> = BTreeMap::new();
    let fallback = limits.fallback;

    let progress = Progress::new(!args.no_progress, total, budget);
    let status = || {
        let snapshot = pool.snapshot();
        Status {
            running: RUNNING_JOBS.load(Ordering::Relaxed),
            waiting: snapshot.waiting,
            reserved: snapshot.reserved.get(Dim::Memory),
            measured: measurer.current_usage(),
        }
    };
    while submitted.is_none_or(|n| accounted < n) {
        let msg = if progress.shown() {
            match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(msg) => msg,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    progress.update(accounted, status());
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            let Ok(msg) = rx.recv() else { break };
            msg
        };
        match msg {
            Msg::Submitted(n) => submitted = Some(n),
            Msg::Skipped(seq) => {
                accounted += 1;
                skipped += 1;
                out.skip(seq);
            }
            Msg::AlreadyDone(seq) => {
                accounted += 1;
                already_done += 1;
                out.skip(seq);
            }
            Msg::Report {
                seq,
                reserved,
                predicted,
            } => {
                let p = pending.entry(seq).or_default();
                p.report = Some((reserved, predicted));
                if writing(&mut results, p, &mut io_error, &mut sizing, fallback) {
                    pending.remove(&seq);
                }
            }
            Msg::Done(f) => {
                accounted += 1;
                let f = *f;
                if let Err(e) = &f.result {
                    say(format!(
                        "respool: job {} ({}) {e}",
                        f.seq,
                        String::from_utf8_lossy(&f.command)
                    ));
                }
                let record = record_of(&f);
                ran_classes.insert(f.class.to_string());
                oom_kills += u64::from(f.oom_kills);
                oom_gave_up += u64::from(f.gave_up);
                if let Ok(o) = &f.result {
                    if f.oom_kills > 0 && o.exit_code == Some(0) && o.signal.is_none() {
                        oom_recovered += 1;
                    }
                    if let Some(peak) = o.peak_memory {
                        if peak_measured.is_none_or(|(p, _)| peak > p) {
                            peak_measured = Some((peak, f.seq));
                        }
                    }
                    if o.timed_out {
                        say(format!(
                            "respool: Warning: This job was killed because it timed out:\n{}",
                            String::from_utf8_lossy(&f.command)
                        ));
                    }
                    if o.exit_code == Some(0) && !o.timed_out {
                        if let Ok(mut m) = medians.lock() {
                            m.add(&f.class, o.runtime.as_secs_f64());
                        }
                    }
                }
                // A job Ctrl-C killed did not finish: as GNU parallel, it is
                // left out of the joblog, so that `--resume` runs it again
                // (`--results` still has it).
                let cut_short = interrupted.load(Ordering::SeqCst)
                    && f.result
                        .as_ref()
                        .is_ok_and(|o| o.signal == Some(libc::SIGKILL));
                if let Some(log) = joblog.as_mut().filter(|_| !cut_short) {
                    if let Err(e) = log.write(&joblog_entry(&f)) {
                        io_error.get_or_insert(format!(
                            "cannot write the joblog {}: {e}",
                            log.path().display()
                        ));
                    }
                }
                out.done(f);
                let seq = record.seq;
                let p = pending.entry(seq).or_default();
                p.record = Some(record);
                if writing(&mut results, p, &mut io_error, &mut sizing, fallback) {
                    pending.remove(&seq);
                }
            }
        }
    }
    if let Err(e) = submitter.join().map_err(|_| ()) {
        let () = e;
        io_error.get_or_insert("the submitting thread panicked".to_owned());
    }
    progress.finish();
    pool.shutdown();
    // Reports that came after the last job's message.
    for msg in rx.try_iter() {
        if let Msg::Report {
            seq,
            reserved,
            predicted,
        } = msg
        {
            if let Some(p) = pending.get_mut(&seq) {
                p.report = Some((reserved, predicted));
            }
        }
    }
    for (_, mut p) in std::mem::take(&mut pending) {
        if p.record.is_some() {
            p.report.get_or_insert((None, None));
            writing(&mut results, &mut p, &mut io_error, &mut sizing, fallback);
        }
    }
    let save_error = pool.save_profiles().err();

    // The summary.
    let halting = match halting.lock() {
        Ok(h) => h,
        Err(poisoned) => poisoned.into_inner(),
    };
    let snapshot = pool.snapshot();
    let mut summary = format!(
        "respool: {} job{}, {} failed",
        halting.done,
        if halting.done == 1 { "" } else { "s" },
        halting.failed
    );
    if already_done > 0 {
        summary.push_str(&format!(
            ", {already_done} skipped as done in the joblog ({})",
            if args.resume_failed {
                "--resume-failed"
            } else {
                "--resume"
            }
        ));
    }
    if skipped > 0 {
        summary.push_str(&format!(", {skipped} not started (--halt or Ctrl-C)"));
    }
    if oom_kills > 0 {
        summary.push_str(&format!(
            ", {oom_kills} OOM kill{} ({oom_recovered} job{} recovered with a raised reservation, \
             {oom_gave_up} could not fit in the budget)",
            if oom_kills == 1 { "" } else { "s" },
            if oom_recovered == 1 { "" } else { "s" },
        ));
    }
    summary.push_str(&format!(
        "; peak memory of one job {} of budget {} ({}; {})",
        peak_measured.map_or_else(
            || "not measured".to_owned(),
            |(p, s)| format!("{} (job {s})", fmt_bytes(p))
        ),
        budget.map_or_else(|| "unknown".to_owned(), fmt_bytes),
        measurer.describe(),
        limits.describe(&measurer, args.no_limit),
    ));
    let classes: Vec<String> = snapshot
        .classes
        .iter()
        .filter(|c| ran_classes.contains(&c.class))
        .map(|c| match c.by_dim.iter().find(|d| d.dim == Dim::Memory) {
            Some(d) if d.predictions > 0 => format!(
                "{} {} runs, memory predicted within 10% {}/{}",
                c.class, c.runs, d.within_10pct, d.predictions
            ),
            _ => match sizing.get(&c.class) {
                Some(s) if s.measured > 0 => format!(
                    "{} {} runs, memory of {} job{} reserved from its measured runs \
                     (not confident enough to predict yet), {} on the fallback",
                    c.class,
                    c.runs,
                    s.measured,
                    if s.measured == 1 { "" } else { "s" },
                    s.fallback
                ),
                _ => format!(
                    "{} {} runs, memory not learned yet (the fallback reserved)",
                    c.class, c.runs
                ),
            },
        })
        .collect();
    if !classes.is_empty() {
        summary.push_str(&format!("; {}", classes.join("; ")));
    }
    let (cost, slack) = snapshot
        .classes
        .iter()
        .filter(|c| ran_classes.contains(&c.class))
        .filter_map(|c| c.cost)
        .fold((0u64, 0u64), |(u, s), c| {
            (
                u.saturating_add(c.nano_usd),
                s.saturating_add(c.slack_nano_usd),
            )
        });
    if let Some(label) = &snapshot.pricing {
        #[allow(clippy::cast_precision_loss)]
        let usd = |n: u64| respool::cost::format_usd(n as f64 / 1e9);
        summary.push_str(&format!(
            "; this run: {} at {label} prices, {} more reserved but unused (slack)",
            usd(cost),
            usd(slack)
        ));
    }
    say(&summary);
    if let Some(e) = save_error {
        say(format!("respool: the learned profiles were not saved: {e}"));
    }
    if let Some(e) = io_error {
        say(format!("respool: {e}"));
    }
    if interrupted.load(Ordering::SeqCst) {
        return Ok(INTERRUPTED);
    }
    Ok(halting
        .status
        .unwrap_or_else(|| halting.failed.min(MAX_FAILED_STATUS) as i32))
}

/// Writes a job's results line once both its outcome and its reservation
/// are known; returns whether it was complete.
fn writing(
    results: &mut Option<ResultsFile>,
    p: &mut Pending,
    io_error: &mut Option<String>,
    sizing: &mut BTreeMap<String, Sizing>,
    fallback: Option<u64>,
) -> bool {
    if let (Some(record), Some((reserved, predicted))) = (&mut p.record, p.report) {
        record.reserved_memory_bytes = reserved;
        record.predicted_memory_bytes = predicted;
        let s = sizing.entry(record.class.clone()).or_default();
        match (reserved, predicted) {
            (_, Some(_)) => s.learned += 1,
            (Some(r), None) if Some(r) != fallback && record.attempts == 1 => s.measured += 1,
            _ => s.fallback += 1,
        }
        if let Some(r) = results {
            if let Err(e) = r.write(record) {
                io_error.get_or_insert(format!("cannot write the results file: {e}"));
            }
        }
        true
    } else {
        false
    }
}

fn joblog_entry(f: &Finished) -> joblog::Entry<'_> {
    match &f.result {
        Ok(o) => joblog::Entry {
            seq: f.seq,
            start: o.started,
            runtime: o.runtime,
            received: o.stdout.len(),
            exitval: if o.timed_out {
                -1
            } else {
                i64::from(o.exit_code.unwrap_or(0))
            },
            signal: o.signal.unwrap_or(0),
            command: &f.command,
        },
        Err(_) => joblog::Entry {
            seq: f.seq,
            start: std::time::SystemTime::now(),
            runtime: Duration::ZERO,
            received: 0,
            exitval: -1,
            signal: 0,
            command: &f.command,
        },
    }
}

fn record_of(f: &Finished) -> JobRecord {
    let command = String::from_utf8_lossy(&f.command).into_owned();
    match &f.result {
        Ok(o) => JobRecord {
            seq: f.seq,
            command,
            class: f.class.to_string(),
            exit: o.exit_code,
            signal: o.signal,
            start: joblog::epoch_seconds(o.started),
            runtime_s: o.runtime.as_secs_f64(),
            peak_memory_bytes: o.peak_memory,
            memory_source: Some(o.memory_source),
            predicted_memory_bytes: None,
            reserved_memory_bytes: None,
            memory_limit_bytes: f.limit,
            oom_killed: o.oom_killed,
            attempts: f.attempts,
            oom_kills: f.oom_kills,
            oom_gave_up: f.gave_up,
            cpu_s: o.cpu.as_secs_f64(),
            timed_out: o.timed_out,
            error: None,
        },
        Err(e) => JobRecord {
            seq: f.seq,
            command,
            class: f.class.to_string(),
            exit: None,
            signal: None,
            start: joblog::epoch_seconds(std::time::SystemTime::now()),
            runtime_s: 0.0,
            peak_memory_bytes: None,
            memory_source: None,
            predicted_memory_bytes: None,
            reserved_memory_bytes: None,
            memory_limit_bytes: f.limit,
            oom_killed: false,
            attempts: f.attempts,
            oom_kills: f.oom_kills,
            oom_gave_up: f.gave_up,
            cpu_s: 0.0,
            timed_out: false,
            error: Some(e.clone()),
        },
    }
}

/// Submits one attempt of a job, with `memory` declared (an OOM retry's
/// raised reservation) or learned by its class; the job learns what was
/// reserved for it through [`Reservations`] before it can start.
fn submit(pool: &Pool, job: JobTask, memory: Option<u64>) -> Result<(), String> {
    let mut task = pool
        .task()
        .class(Arc::clone(&job.class))
        .require(Dim::Cpu, 1000);
    if let Some(m) = memory {
        task = task.require(Dim::Memory, m);
    }
    if let Some(size) = job.size {
        task = task.size_hint(size);
    }
    let cell = Arc::clone(&job.reserved);
    SUBMITTING.with(|s| *s.borrow_mut() = Some(cell));
    let result = task.execute(move |ctx| job.run(ctx));
    SUBMITTING.with(|s| s.borrow_mut().take());
    result.map_err(|e| e.to_string())
}

/// One attempt of a job, as the pool's task runs it.
struct JobTask {
    seq: u64,
    command: Vec<u8>,
    class: Arc<str>,
    size: Option<u64>,
    /// 1 for the first attempt, then one more per OOM retry.
    attempt: u32,
    /// Earlier attempts the OOM killer killed.
    oom_kills: u32,
    /// What respool reserved for this attempt (see [`Reservations`]).
    reserved: Arc<OnceLock<Option<u64>>>,
    /// To submit an OOM retry (weak: a queued task does not keep the pool).
    pool: Weak<Pool>,
    limits: Arc<Limits>,
    tx: mpsc::Sender<Msg>,
    halted: Arc<AtomicBool>,
    halting: Arc<Mutex<Halting>>,
    medians: Arc<Mutex<Medians>>,
    measurer: Arc<Measurer>,
    timeout: Option<Timeout>,
}

impl JobTask {
    #[allow(clippy::too_many_lines)]
    fn run(self, ctx: &TaskContext) {
        CURRENT_SEQ.with(|c| c.set(self.seq));
        if self.halted.load(Ordering::SeqCst) && self.attempt == 1 {
            CURRENT_SEQ.with(|c| c.set(0));
            let _ = self.tx.send(Msg::Skipped(self.seq));
            return;
        }
        let timeout = match self.timeout {
            Some(Timeout::Absolute(d)) => Some(d),
            Some(Timeout::OfMedian(share)) => self
                .medians
                .lock()
                .ok()
                .and_then(|m| m.median(&self.class))
                .and_then(|median| Duration::try_from_secs_f64(median * share).ok()),
            None => None,
        };
        let reserved = self.reserved.get().copied().flatten();
        let limit = self.limits.limit(reserved, self.attempt > 1);
        let spec = JobSpec {
            command: OsString::from_vec(self.command.clone()),
            timeout,
            memory_limit: limit,
            stdin_null: true,
        };
        let measurer = &self.measurer;
        let stopped = || {
            // An OOM retry after --halt or Ctrl-C: nothing more starts.
            Err("was OOM-killed and not retried: the run was stopped".to_owned())
        };
        let result = if self.halted.load(Ordering::SeqCst) {
            stopped()
        } else {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                RUNNING_JOBS.fetch_add(1, Ordering::Relaxed);
                let r = job::run_job(&spec, measurer);
                RUNNING_JOBS.fetch_sub(1, Ordering::Relaxed);
                r
            })) {
                // Ctrl-C or --halt now came after the check above: this
                // job is not started, as if the check had seen it.
                Ok(Err(JobError::Stopped)) if self.attempt == 1 => {
                    CURRENT_SEQ.with(|c| c.set(0));
                    let _ = self.tx.send(Msg::Skipped(self.seq));
                    return;
                }
                Ok(Err(JobError::Stopped)) => stopped(),
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("could not be run: the job runner panicked".to_owned()),
            }
        };
        let mut oom_kills = self.oom_kills;
        let mut gave_up = false;
        if let Ok(o) = &result {
            let failed = o.exit_code != Some(0) || o.signal.is_some();
            if o.oom_killed && failed {
                oom_kills += 1;
                // What it was killed at: its limit, else what it reserved.
                let killed_at = limit.or(reserved);
                let peak = o.peak_memory.or(killed_at).unwrap_or(0);
                let command = String::from_utf8_lossy(&self.command).into_owned();
                let at_budget = match (killed_at, self.limits.budget) {
                    (Some(k), Some(b)) => k >= b,
                    _ => false,
                };
                // Later jobs of the class reserve at least this much.
                let bumped = self
                    .pool
                    .upgrade()
                    .map_or(0, |p| p.report_oom(&self.class, peak));
                let previous = killed_at.unwrap_or(0);
                let raised = bumped
                    .max(previous.saturating_add(previous / 5))
                    .max(peak.saturating_add(peak / 5));
                let raised = self.limits.budget.map_or(raised, |b| raised.min(b));
                if at_budget {
                    gave_up = true;
                    say(format!(
                        "respool: job {} was OOM-killed at the whole budget ({}): class {} \
                         cannot fit even alone; not retried:\n{command}",
                        self.seq,
                        fmt_bytes(previous),
                        self.class,
                    ));
                } else if oom_kills > self.limits.oom_retries {
                    say(format!(
                        "respool: job {} was OOM-killed {oom_kills} times (at {}); \
                         --oom-retries {} spent:\n{command}",
                        self.seq,
                        fmt_bytes(peak),
                        self.limits.oom_retries,
                    ));
                } else if self.halted.load(Ordering::SeqCst) {
                    // --halt or Ctrl-C: this attempt is the last.
                } else if let Some(pool) = self.pool.upgrade() {
                    say(format!(
                        "respool: job {} was OOM-killed at {}; retrying with {} reserved:\n{command}",
                        self.seq,
                        fmt_bytes(peak),
                        fmt_bytes(raised),
                    ));
                    let retry = JobTask {
                        seq: self.seq,
                        command: self.command.clone(),
                        class: Arc::clone(&self.class),
                        size: self.size,
                        attempt: self.attempt + 1,
                        oom_kills,
                        reserved: Arc::new(OnceLock::new()),
                        pool: Weak::clone(&self.pool),
                        limits: Arc::clone(&self.limits),
                        tx: self.tx.clone(),
                        halted: Arc::clone(&self.halted),
                        halting: Arc::clone(&self.halting),
                        medians: Arc::clone(&self.medians),
                        measurer: Arc::clone(&self.measurer),
                        timeout: self.timeout,
                    };
                    match submit(&pool, retry, Some(raised)) {
                        Ok(()) => {
                            // Only the last attempt is reported and learned from.
                            CURRENT_SEQ.with(|c| c.set(0));
                            return;
                        }
                        Err(e) => say(format!(
                            "respool: job {}: the retry was refused: {e}",
                            self.seq
                        )),
                    }
                }
            }
        }
        let (exit, signal) = match &result {
            Ok(o) => (o.exit_code, o.signal),
            Err(_) => (None, None),
        };
        account(&self.halting, &self.halted, exit, signal, &self.command);
        if let Ok(o) = &result {
            // An OOM-killed attempt's peak is where it was stopped, not what
            // it needs: `report_oom` told the class instead.
            if let (Some(peak), false) = (o.peak_memory, o.oom_killed) {
                ctx.report_usage(Dim::Memory, peak);
            }
            let wall = o.runtime.as_nanos().max(1);
            let milli = o.cpu.as_nanos().saturating_mul(1000) / wall;
            ctx.report_usage(Dim::Cpu, u64::try_from(milli).unwrap_or(u64::MAX).max(1));
        }
        let _ = self.tx.send(Msg::Done(Box::new(Finished {
            seq: self.seq,
            command: self.command,
            class: self.class,
            result,
            attempts: self.attempt,
            oom_kills,
            gave_up,
            limit,
        })));
    }
}

/// Prints each job's output whole: as it finishes, or in input order.
struct Output {
    keep_order: bool,
    next: u64,
    waiting: BTreeMap<u64, Option<Finished>>,
}

impl Output {
    fn new(keep_order: bool) -> Output {
        Output {
            keep_order,
            next: 1,
            waiting: BTreeMap::new(),
        }
    }

    fn print(f: &Finished) {
        crate::progress::suspend(|| Output::print_now(f));
    }

    fn print_now(f: &Finished) {
        if let Ok(o) = &f.result {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            // A closed standard output (`| head`) is not the jobs' failure.
            let _ = o.stdout.write_to(&mut out).and_then(|()| out.flush());
            let stderr = io::stderr();
            let mut err = stderr.lock();
            let _ = o.stderr.write_to(&mut err).and_then(|()| err.flush());
        }
    }

    fn done(&mut self, f: Finished) {
        if self.keep_order {
            self.waiting.insert(f.seq, Some(f));
            self.flush();
        } else {
            Output::print(&f);
        }
    }

    fn skip(&mut self, seq: u64) {
        if self.keep_order {
            self.waiting.insert(seq, None);
            self.flush();
        }
    }

    fn flush(&mut self) {
        while let Some(entry) = self.waiting.remove(&self.next) {
            if let Some(f) = entry {
                Output::print(&f);
            }
            self.next += 1;
        }
    }
}
