//! Running one job: `/bin/sh -c <command>` in its own process group, its
//! output captured, its time limit enforced, its peak memory and CPU time
//! measured.
//!
//! Memory is measured by a per-job memory cgroup where this process can make
//! one (see [`Measurer::detect`]), else by `wait4`'s `ru_maxrss`, which is the
//! largest single process of the job, not the job's total.
//!
//! A job is its shell: when `sh` exits, whatever it left running in its
//! process group (and, with a cgroup, in its cgroup, even after `setsid`) is
//! SIGKILLed. Without a cgroup, a process that left the group while holding
//! the job's stdout or stderr open keeps `run_job` waiting for that pipe.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How per-job memory is measured on this machine, decided once.
///
/// With a cgroup, each job runs in its own child group of a per-process
/// parent (`respool-<pid>`), which this value removes when dropped.
#[derive(Debug)]
pub struct Measurer {
    kind: MeasurerKind,
    /// Why no cgroup is used (empty when one is, or when forced off).
    fallback_reasons: Vec<String>,
}

#[derive(Debug)]
enum MeasurerKind {
    Rusage,
    Cgroup(CgroupParent),
}

impl Measurer {
    /// cgroup v2 (a writable delegated subtree), else cgroup v1 memory
    /// controller (writable, e.g. as root), else rusage.
    ///
    /// The v2 parent is made beside this process's own group (a group with
    /// processes cannot hand controllers down), or under the root when this
    /// process is in the root; the v1 parent is made under this process's own
    /// memory group, so that the limits above it still apply.
    pub fn detect() -> Measurer {
        let mut reasons = Vec::new();
        match CgroupParent::detect(&mut reasons) {
            Some(parent) => Measurer {
                kind: MeasurerKind::Cgroup(parent),
                fallback_reasons: Vec::new(),
            },
            None => Measurer {
                kind: MeasurerKind::Rusage,
                fallback_reasons: reasons,
            },
        }
    }

    /// The forced fallback: `ru_maxrss` of the job's largest process, no
    /// cgroup (tests, `--no-cgroup`).
    pub fn rusage_only() -> Measurer {
        Measurer {
            kind: MeasurerKind::Rusage,
            fallback_reasons: Vec::new(),
        }
    }

    /// What measures memory, in words (with why no cgroup is used, when
    /// detection fell back to rusage).
    pub fn describe(&self) -> String {
        match &self.kind {
            MeasurerKind::Rusage => {
                let mut s = String::from(
                    "rusage (ru_maxrss: the largest single process of each job, not its total)",
                );
                if !self.fallback_reasons.is_empty() {
                    s.push_str("; no cgroup: ");
                    s.push_str(&self.fallback_reasons.join("; "));
                }
                s
            }
            MeasurerKind::Cgroup(p) => match p.version {
                Version::V1 => format!("cgroup v1 memory controller at {}", p.dir.display()),
                Version::V2 => format!("cgroup v2 at {}", p.dir.display()),
            },
        }
    }

    /// The per-process parent cgroup under which each job gets its own group
    /// (None under rusage).
    pub fn cgroup_dir(&self) -> Option<&Path> {
        match &self.kind {
            MeasurerKind::Rusage => None,
            MeasurerKind::Cgroup(p) => Some(&p.dir),
        }
    }

    /// The memory the running jobs use together now, as the kernel counts
    /// it for the per-process parent group (`memory.usage_in_bytes` in v1,
    /// `memory.current` in v2); `None` under rusage or where it cannot be
    /// read.
    pub fn current_usage(&self) -> Option<u64> {
        match &self.kind {
            MeasurerKind::Rusage => None,
            MeasurerKind::Cgroup(p) => read_u64(&p.dir.join(match p.version {
                Version::V1 => "memory.usage_in_bytes",
                Version::V2 => "memory.current",
            }))
            .ok(),
        }
    }
}

/// One job to run.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// A shell command line, run as `/bin/sh -c <command>` (GNU parallel's way).
    pub command: OsString,
    /// Kill the job's process group after it.
    pub timeout: Option<Duration>,
    /// A hard cgroup limit for this job, when measured by cgroup (None: no
    /// limit); ignored under rusage. Swap is not allowed beyond it.
    pub memory_limit: Option<u64>,
    /// true: stdin is /dev/null (else inherited).
    pub stdin_null: bool,
}

/// Where a job's peak memory figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// `memory.peak` of the job's own cgroup v2 group: the whole job.
    CgroupV2Peak,
    /// `memory.max_usage_in_bytes` of the job's own cgroup v1 memory group: the whole job.
    CgroupV1MaxUsage,
    /// `ru_maxrss` from `wait4`: the largest single process of the job.
    RusageMaxrssLargestProcess,
}

/// What happened when a job ran.
#[derive(Debug)]
pub struct JobOutcome {
    /// When it was started.
    pub started: SystemTime,
    /// How long it ran (until its shell exited).
    pub runtime: Duration,
    /// Its exit code; None when killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// It was killed because it ran past its timeout.
    pub timed_out: bool,
    /// The cgroup's oom_kill count rose (never guessed; false under rusage).
    pub oom_killed: bool,
    /// Peak memory in bytes.
    pub peak_memory: Option<u64>,
    /// Where `peak_memory` comes from.
    pub memory_source: MemorySource,
    /// User + system CPU time of the job's processes (children rusage).
    pub cpu: Duration,
    /// Its standard output.
    pub stdout: Captured,
    /// Its standard error.
    pub stderr: Captured,
}

/// Bytes kept in memory before a capture spills to a temporary file.
const IN_MEMORY_LIMIT: usize = 1 << 20;

/// A job's output: in memory up to 1 MiB, then spilled to a temporary file
/// (removed on drop); bounded memory whatever the job prints.
#[derive(Debug, Default)]
pub struct Captured {
    memory: Vec<u8>,
    /// An unlinked temporary file holding everything, once spilled.
    file: Option<std::fs::File>,
    len: u64,
}

impl Captured {
    /// Bytes captured.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The capture begins with `prefix` (looked for in memory only).
    fn starts_with(&self, prefix: &[u8]) -> bool {
        self.file.is_none() && self.memory.starts_with(prefix)
    }

    /// Nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the captured bytes to `out`, exactly as the job wrote them.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        match &self.file {
            None => out.write_all(&self.memory),
            Some(file) => {
                let mut buf = vec![0u8; 64 * 1024];
                let mut offset = 0u64;
                while offset < self.len {
                    let n = file.read_at(&mut buf, offset)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the spilled output file is shorter than what was captured",
                        ));
                    }
                    out.write_all(&buf[..n])?;
                    offset += n as u64;
                }
                Ok(())
            }
        }
    }

    fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.write_all(bytes)?;
        } else if self.memory.len() + bytes.len() <= IN_MEMORY_LIMIT {
            self.memory.extend_from_slice(bytes);
        } else {
            let mut file = tempfile::tempfile()?;
            file.write_all(&self.memory)?;
            file.write_all(bytes)?;
            self.memory = Vec::new();
            self.file = Some(file);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// Why a job could not be run or measured.
#[derive(Debug)]
pub enum JobError {
    /// `/bin/sh` could not be started.
    Spawn(io::Error),
    /// The job's cgroup could not be made, joined or read.
    Cgroup {
        /// The file or directory concerned.
        path: std::path::PathBuf,
        /// What went wrong.
        error: io::Error,
    },
    /// Waiting for the job failed.
    Wait(io::Error),
    /// Reading the job's output, or spilling it to a temporary file, failed.
    Output(io::Error),
    /// Not started: [`stop_all`] was called (Ctrl-C, `--halt now`).
    Stopped,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Spawn(e) => write!(f, "cannot start /bin/sh: {e}"),
            JobError::Cgroup { path, error } => {
                write!(f, "job cgroup {}: {error}", path.display())
            }
            JobError::Wait(e) => write!(f, "waiting for the job failed: {e}"),
            JobError::Output(e) => write!(f, "capturing the job's output failed: {e}"),
            JobError::Stopped => f.write_str("not started: the run was stopped"),
        }
    }
}

impl std::error::Error for JobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JobError::Spawn(e) | JobError::Wait(e) | JobError::Output(e) => Some(e),
            JobError::Cgroup { error, .. } => Some(error),
            JobError::Stopped => None,
        }
    }
}

/// Process groups of the running jobs. An entry is removed while its leader is
/// still an unreaped zombie, so a pgid here is never a reused one.
static RUNNING: Mutex<Option<HashSet<libc::pid_t>>> = Mutex::new(None);

fn running() -> MutexGuard<'static, Option<HashSet<libc::pid_t>>> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Set by [`stop_all`] (under the `RUNNING` lock): no job starts any more.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Kills every running job's process group with SIGKILL; jobs then
/// return from [`run_job`] with their signal.
pub fn kill_running() {
    let guard = running();
    if let Some(set) = guard.as_ref() {
        for &pgid in set {
            kill_group(pgid);
        }
    }
}

/// Stops this process's jobs for good (Ctrl-C, `--halt now`): kills the
/// running ones as [`kill_running`] does, and every later [`run_job`]
/// returns [`JobError::Stopped`] without starting anything. Both happen
/// under the lock a job is started and registered under, so that no job
/// can start between the kill and the stop.
pub fn stop_all() {
    let guard = running();
    STOPPED.store(true, Ordering::SeqCst);
    if let Some(set) = guard.as_ref() {
        for &pgid in set {
            kill_group(pgid);
        }
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory
    // is involved. The group's leader is not yet reaped (see RUNNING), so the
    // id is that job's.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Waits (without reaping) until `pid` has exited.
fn wait_exited_no_reap(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`, which lives for the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `pid` has exited (not reaping it).
fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: as in wait_exited_no_reap.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes only into `info`.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
        )
    };
    // SAFETY: with WNOHANG, si_pid is 0 when the child has not exited.
    r == 0 && unsafe { info.si_pid() } != 0
}

/// Stops a job that cannot be followed any more: forgets it, kills its
/// group and reaps its shell.
fn abandon(pid: libc::pid_t) {
    {
        let mut guard = running();
        if let Some(set) = guard.as_mut() {
            set.remove(&pid);
        }
        kill_group(pid);
    }
    let _ = reap(pid);
}

/// A readable pipe end that `poll(2)` can watch.
trait ReadFd: Read + AsRawFd + Send {}

impl<T: Read + AsRawFd + Send> ReadFd for T {}

/// One of a job's output pipes, drained into a [`Captured`].
struct Stream {
    /// None once it reached its end (or failed).
    pipe: Option<Box<dyn ReadFd>>,
    captured: Captured,
    /// The first error (reading, or spilling to a file); the pipe is still
    /// drained after a spill error, so that the job never blocks on it.
    error: Option<io::Error>,
}

impl Stream {
    fn new(pipe: Option<Box<dyn ReadFd>>) -> Stream {
        Stream {
            pipe,
            captured: Captured::default(),
            error: None,
        }
    }

    fn is_closed(&self) -> bool {
        self.pipe.is_none()
    }

    fn pollfd(&self) -> libc::pollfd {
        libc::pollfd {
            fd: self.pipe.as_ref().map_or(-1, |p| p.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        }
    }

    /// One read, after `poll` said the pipe is readable (or closed).
    fn read_some(&mut self, buf: &mut [u8]) {
        let Some(pipe) = &mut self.pipe else { return };
        match pipe.read(buf) {
            Ok(0) => self.pipe = None,
            Ok(n) => {
                if self.error.is_none() {
                    if let Err(e) = self.captured.push(&buf[..n]) {
                        self.error = Some(e);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => {
                self.error.get_or_insert(e);
                self.pipe = None;
            }
        }
    }

    fn finish(self) -> io::Result<Captured> {
        match self.error {
            None => Ok(self.captured),
            Some(e) => Err(e),
        }
    }
}

/// Becomes readable when a job's shell has exited (not reaped): a pidfd
/// (Linux 5.3), else a pipe whose writing end a thread blocked in
/// `waitid(WNOWAIT)` closes.
enum ExitSignal {
    Pidfd(OwnedFd),
    Thread {
        read: OwnedFd,
        waiter: thread::JoinHandle<io::Result<()>>,
    },
}

impl ExitSignal {
    fn new(pid: libc::pid_t) -> io::Result<ExitSignal> {
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd
        // or -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if let Ok(fd) = libc::c_int::try_from(fd) {
            if fd >= 0 {
                // SAFETY: pidfd_open returned a new fd that nothing else owns.
                return Ok(ExitSignal::Pidfd(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        ExitSignal::waiter_thread(pid)
    }

    /// The fallback where the kernel has no pidfd.
    fn waiter_thread(pid: libc::pid_t) -> io::Result<ExitSignal> {
        let mut ends = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two fds into `ends`, which lives for the call.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 returned two new fds that nothing else owns.
        let (read, write) =
            unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        let waiter = thread::Builder::new()
            .name("respool-wait".to_owned())
            .spawn(move || {
                let r = wait_exited_no_reap(pid);
                drop(write);
                r
            })?;
        Ok(ExitSignal::Thread { read, waiter })
    }

    fn fd(&self) -> RawFd {
        match self {
            ExitSignal::Pidfd(fd) | ExitSignal::Thread { read: fd, .. } => fd.as_raw_fd(),
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            ExitSignal::Pidfd(_) => Ok(()),
            ExitSignal::Thread { waiter, .. } => waiter
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the waiter thread panicked"))),
        }
    }
}

/// Reaps `pid`: its wait status and resource usage.
fn reap(pid: libc::pid_t) -> io::Result<(libc::c_int, libc::rusage)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; zeroed is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 writes only into `status` and `usage`.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

/// Runs one job to its end and measures it. A command that does not exist is
/// an outcome (`sh` exits 127), not an error.
pub fn run_job(spec: &JobSpec, measurer: &Measurer) -> Result<JobOutcome, JobError> {
    let cgroup = match &measurer.kind {
        MeasurerKind::Rusage => None,
        MeasurerKind::Cgroup(parent) => Some(parent.new_job(spec.memory_limit)?),
    };
    let result = run_in(spec, cgroup.as_ref());
    if let Some(group) = &cgroup {
        // Left behind only if it will not empty; the Measurer's drop retries.
        group.remove();
    }
    result
}

fn run_in(spec: &JobSpec, cgroup: Option<&JobCgroup>) -> Result<JobOutcome, JobError> {
    let mut command = Command::new("/bin/sh");
    match cgroup {
        None => {
            command.arg("-c").arg(&spec.command);
        }
        Some(group) => {
            // The shell joins the job's group itself, before it reads a word
            // of the command: from then on everything it and its descendants
            // (which inherit the group at fork) allocate is charged to the
            // job. Moving it from here after spawn would race with it (by
            // then it may have forked children that stay behind), and joining
            // from a `pre_exec` hook forces `fork` of this whole process
            // instead of `posix_spawn`: copying its page tables cost about
            // 0.5 ms a job (BENCHMARKS.md, `respool run` overhead). Only the
            // shell's own start-up, before the join, is charged to
            // respool's group (about 0.1 MiB of `dash`).
            //
            // `eval "shift; $1"` runs the command in that shell with no
            // positional parameters, as `sh -c COMMAND` would.
            command
                .arg("-c")
                .arg(JOIN_THEN_EVAL)
                .arg("sh")
                .arg(group.procs())
                .arg(&spec.command);
        }
    }
    command
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if spec.stdin_null {
            Stdio::null()
        } else {
            Stdio::inherit()
        });

    let started = SystemTime::now();
    let clock = Instant::now();
    // Spawned and registered under the lock, so that kill_running never misses it.
    let mut child = {
        let mut guard = running();
        if STOPPED.load(Ordering::SeqCst) {
            return Err(JobError::Stopped);
        }
        let child = command.spawn().map_err(JobError::Spawn)?;
        guard
            .get_or_insert_with(HashSet::new)
            .insert(child.id() as libc::pid_t);
        child
    };
    let pid = child.id() as libc::pid_t;

    let mut streams = [
        Stream::new(child.stdout.take().map(|p| Box::new(p) as Box<dyn ReadFd>)),
        Stream::new(child.stderr.take().map(|p| Box::new(p) as Box<dyn ReadFd>)),
    ];
    let exit = match ExitSignal::new(pid) {
        Ok(exit) => exit,
        Err(e) => {
            abandon(pid);
            return Err(JobError::Wait(e));
        }
    };
    let mut buf = vec![0u8; 64 * 1024];

    // One loop on this thread: the job's two pipes drained as they fill (it
    // never blocks on a full pipe) and its shell's exit, without reaping it,
    // at most until the timeout.
    let deadline = spec.timeout.map(|t| clock + t);
    let mut timed_out = false;
    let mut runtime = None;
    loop {
        let exited = runtime.is_some();
        if exited && streams.iter().all(Stream::is_closed) {
            break;
        }
        let wait_ms = match (exited || timed_out, deadline) {
            (false, Some(d)) => {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up: never wake before the deadline.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
            _ => -1,
        };
        let mut fds = [
            streams[0].pollfd(),
            streams[1].pollfd(),
            libc::pollfd {
                fd: if exited { -1 } else { exit.fd() },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of 3 pollfd for the call; negative
        // fds are ignored by poll(2).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, wait_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // Nothing sensible is left to wait on: stop the job.
            abandon(pid);
            return Err(JobError::Wait(e));
        }
        for (stream, fd) in streams.iter_mut().zip(&fds) {
            if fd.revents != 0 {
                stream.read_some(&mut buf);
            }
        }
        if !exited && fds[2].revents != 0 {
            runtime = Some(clock.elapsed());
            // The leader is a zombie now: forget it, kill what is left of
            // its group (the job is its shell: background processes it left
            // are stopped with it), and of its cgroup (also those that left
            // the process group with setsid); then its pipes close.
            {
                let mut guard = running();
                if let Some(set) = guard.as_mut() {
                    set.remove(&pid);
                }
                kill_group(pid);
            }
            if let Some(group) = cgroup {
                group.kill_all();
            }
        } else if !exited && !timed_out && deadline.is_some_and(|d| Instant::now() >= d) {
            // Checked whatever woke the poll: a job that keeps printing
            // still times out.
            if !has_exited(pid) {
                timed_out = true;
                kill_group(pid);
            }
        }
    }
    let runtime = runtime.unwrap_or_else(|| clock.elapsed());
    let reaped = reap(pid);
    exit.finish().map_err(JobError::Wait)?;
    let (status, usage) = reaped.map_err(JobError::Wait)?;
    let [out, err] = streams;
    let stdout = out.finish().map_err(JobError::Output)?;
    let stderr = err.finish().map_err(JobError::Output)?;

    let (exit_code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    if let Some(group) = cgroup {
        if exit_code == Some(JOIN_FAILED) && stderr.starts_with(JOIN_FAILED_MESSAGE) {
            return Err(JobError::Cgroup {
                path: group.procs(),
                error: io::Error::other("the job's shell could not join it; the job did not run"),
            });
        }
    }

    // ru_maxrss is in KiB on Linux.
    let maxrss = Some((usage.ru_maxrss.max(0) as u64) * 1024);
    let (peak_memory, memory_source, oom_killed) = match cgroup {
        None => (maxrss, MemorySource::RusageMaxrssLargestProcess, false),
        Some(group) => {
            let reading = group.read()?;
            let oom = reading.oom_kills > 0;
            match (reading.peak, group.version) {
                (Some(p), Version::V1) => (Some(p), MemorySource::CgroupV1MaxUsage, oom),
                (Some(p), Version::V2) => (Some(p), MemorySource::CgroupV2Peak, oom),
                (None, _) => (maxrss, MemorySource::RusageMaxrssLargestProcess, oom),
            }
        }
    };

    Ok(JobOutcome {
        started,
        runtime,
        exit_code,
        signal,
        timed_out,
        oom_killed,
        peak_memory,
        memory_source,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        stdout,
        stderr,
    })
}

// ---------------------------------------------------------------------------
// cgroups

/// Which cgroup hierarchy measures memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The per-process parent group (`respool-<pid>`); removed on drop.
#[derive(Debug)]
struct CgroupParent {
    version: Version,
    dir: PathBuf,
    next_job: AtomicU64,
}

/// One mount from `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 5 || fields.len() < sep + 4 {
            continue;
        }
        mounts.push(Mount {
            root: unescape_mountinfo(fields[3]),
            mount_point: PathBuf::from(unescape_mountinfo(fields[4])),
            fstype: fields[sep + 1].to_string(),
            super_options: fields[sep + 3].to_string(),
        });
    }
    mounts
}

/// This process's groups from `/proc/self/cgroup`: (the v2 path, the v1
/// memory controller's path).
fn parse_proc_cgroup(text: &str) -> (Option<String>, Option<String>) {
    let mut v2 = None;
    let mut v1_memory = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1_memory = Some(path.to_string());
        }
    }
    (v2, v1_memory)
}

/// The directory of group `path` in a hierarchy mounted as `mount`.
fn group_dir(mount: &Mount, path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str())?
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(rel)
    })
}

/// The whitespace-separated words of a file (`cgroup.controllers`).
fn words_of(path: &Path) -> io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// The value of `key` in a flat keyed file (`memory.events`,
/// `memory.oom_control`).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

fn read_u64(path: &Path) -> io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a number: {:?}", text.trim()),
        )
    })
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
}

impl CgroupParent {
    /// Makes the per-process parent group, v2 first, then v1; `reasons`
    /// collects why each could not be used.
    fn detect(reasons: &mut Vec<String>) -> Option<CgroupParent> {
        let mountinfo = match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(t) => parse_mountinfo(&t),
            Err(e) => {
                reasons.push(format!("cannot read /proc/self/mountinfo: {e}"));
                return None;
            }
        };
        let (v2_path, v1_path) = match std::fs::read_to_string("/proc/self/cgroup") {
            Ok(t) => parse_proc_cgroup(&t),
            Err(e) => {
                reasons.push(format!("cannot read /proc/self/cgroup: {e}"));
                return None;
            }
        };
        // One parent per Measurer: `respool-<pid>`, then `respool-<pid>-<n>`
        // for any further one in the same process (tests make several).
        static MADE: AtomicU64 = AtomicU64::new(0);
        let name = match MADE.fetch_add(1, Ordering::Relaxed) {
            0 => format!("respool-{}", std::process::id()),
            n => format!("respool-{}-{n}", std::process::id()),
        };
        match Self::detect_v2(&mountinfo, v2_path.as_deref(), &name) {
            Ok(p) => return Some(p),
            Err(r) => reasons.push(r),
        }
        match Self::detect_v1(&mountinfo, v1_path.as_deref(), &name) {
            Ok(p) => return Some(p),
            Err(r) => reasons.push(r),
        }
        None
    }

    fn detect_v2(mounts: &[Mount], path: Option<&str>, name: &str) -> Result<CgroupParent, String> {
        let path = path.ok_or("cgroup v2: this process is in no v2 group")?;
        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup2" && group_dir(m, path).is_some())
            .ok_or("cgroup v2: not mounted")?;
        let mnt = &mount.mount_point;
        let has_memory = |p: &Path| words_of(p).is_ok_and(|w| w.iter().any(|c| c == "memory"));
        if !has_memory(&mnt.join("cgroup.controllers")) {
            return Err(format!(
                "cgroup v2 at {}: no memory controller",
                mnt.display()
            ));
        }
        let own = group_dir(mount, path).ok_or("cgroup v2: own group outside the mount")?;
        let base = if own == *mnt {
            // The root (of this namespace): it hands memory down if told to.
            let control = own.join("cgroup.subtree_control");
            if !has_memory(&control) {
                write_file(&control, "+memory").map_err(|e| {
                    format!(
                        "cgroup v2: cannot enable memory in {}: {e}",
                        control.display()
                    )
                })?;
            }
            own
        } else {
            // A sibling of this process's own group: the own group has
            // processes, so it cannot hand controllers down; its parent
            // already hands memory down when the own group has it.
            if !has_memory(&own.join("cgroup.controllers")) {
                return Err(format!(
                    "cgroup v2: {} has no memory controller",
                    own.display()
                ));
            }
            own.parent()
                .map(Path::to_path_buf)
                .ok_or("cgroup v2: own group has no parent")?
        };
        let dir = base.join(name);
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cgroup v2: cannot create {}: {e}", dir.display()))?;
        let control = dir.join("cgroup.subtree_control");
        if let Err(e) = write_file(&control, "+memory") {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "cgroup v2: cannot enable memory in {}: {e}",
                control.display()
            ));
        }
        Ok(CgroupParent {
            version: Version::V2,
            dir,
            next_job: AtomicU64::new(0),
        })
    }

    fn detect_v1(mounts: &[Mount], path: Option<&str>, name: &str) -> Result<CgroupParent, String> {
        let path = path.ok_or("cgroup v1: this process is in no memory group")?;
        let mount = mounts
            .iter()
            .find(|m| {
                m.fstype == "cgroup"
                    && m.super_options.split(',').any(|o| o == "memory")
                    && group_dir(m, path).is_some()
            })
            .ok_or("cgroup v1: the memory controller is not mounted")?;
        let own = group_dir(mount, path).ok_or("cgroup v1: own group outside the mount")?;
        let dir = own.join(name);
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cgroup v1: cannot create {}: {e}", dir.display()))?;
        if !dir.join("memory.max_usage_in_bytes").exists() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "cgroup v1: {} has no memory.max_usage_in_bytes",
                dir.display()
            ));
        }
        Ok(CgroupParent {
            version: Version::V1,
            dir,
            next_job: AtomicU64::new(0),
        })
    }

    /// Makes a fresh group for one job, with `limit` as its hard limit (and
    /// no swap beyond it).
    fn new_job(&self, limit: Option<u64>) -> Result<JobCgroup, JobError> {
        let n = self.next_job.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("job-{n}"));
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |error| JobError::Cgroup { path, error }
        };
        std::fs::create_dir(&dir).map_err(err(&dir))?;
        let group = JobCgroup {
            version: self.version,
            dir,
        };
        if let Some(limit) = limit {
            let set = || -> Result<(), JobError> {
                let limit = limit.to_string();
                match group.version {
                    Version::V1 => {
                        let f = group.dir.join("memory.limit_in_bytes");
                        write_file(&f, &limit).map_err(err(&f))?;
                        let f = group.dir.join("memory.memsw.limit_in_bytes");
                        if f.exists() {
                            write_file(&f, &limit).map_err(err(&f))?;
                        }
                        // Best effort: swapping instead of OOM would hide the limit.
                        let _ = write_file(&group.dir.join("memory.swappiness"), "0");
                    }
                    Version::V2 => {
                        let f = group.dir.join("memory.max");
                        write_file(&f, &limit).map_err(err(&f))?;
                        let f = group.dir.join("memory.swap.max");
                        if f.exists() {
                            write_file(&f, "0").map_err(err(&f))?;
                        }
                    }
                }
                Ok(())
            };
            if let Err(e) = set() {
                group.remove();
                return Err(e);
            }
        }
        Ok(group)
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        // Job groups left behind (one that would not empty in time).
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    JobCgroup {
                        version: self.version,
                        dir: entry.path(),
                    }
                    .remove();
                }
            }
        }
        let _ = remove_dir_retrying(&self.dir, || {});
    }
}

/// One job's own group.
#[derive(Debug)]
struct JobCgroup {
    version: Version,
    dir: PathBuf,
}

/// What a job's group measured.
struct CgroupReading {
    /// None: the kernel keeps no peak (v2 before Linux 5.19).
    peak: Option<u64>,
    oom_kills: u64,
}

impl JobCgroup {
    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// SIGKILLs every process in the group: `cgroup.kill` where the kernel
    /// has it (v2, Linux 5.14), else each pid of `cgroup.procs` (a pid could
    /// in principle be reused between the read and the kill).
    fn kill_all(&self) {
        if self.version == Version::V2 && write_file(&self.dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        if let Ok(text) = std::fs::read_to_string(self.procs()) {
            for pid in text
                .lines()
                .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
            {
                if pid > 0 {
                    // SAFETY: kill(2) takes plain integers.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }

    fn read(&self) -> Result<CgroupReading, JobError> {
        let err = |path: PathBuf| move |error| JobError::Cgroup { path, error };
        match self.version {
            Version::V1 => {
                let f = self.dir.join("memory.max_usage_in_bytes");
                let peak = read_u64(&f).map_err(err(f))?;
                let f = self.dir.join("memory.oom_control");
                let text = std::fs::read_to_string(&f).map_err(err(f))?;
                Ok(CgroupReading {
                    peak: Some(peak),
                    // No oom_kill line before Linux 4.13: no kill is claimed.
                    oom_kills: keyed_value(&text, "oom_kill").unwrap_or(0),
                })
            }
            Version::V2 => {
                let f = self.dir.join("memory.peak");
                let peak = match read_u64(&f) {
                    Ok(v) => Some(v),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(err(f)(e)),
                };
                let f = self.dir.join("memory.events");
                let text = std::fs::read_to_string(&f).map_err(err(f))?;
                Ok(CgroupReading {
                    peak,
                    oom_kills: keyed_value(&text, "oom_kill").unwrap_or(0),
                })
            }
        }
    }

    /// Kills what is left in the group and removes it, retrying while the
    /// killed processes finish exiting. Returns false if it is still there
    /// (the parent's drop tries again).
    fn remove(&self) -> bool {
        remove_dir_retrying(&self.dir, || self.kill_all()).is_ok()
    }
}

/// rmdir `dir`, calling `before` ahead of each try; a group stays busy for a
/// moment after its processes are killed, so EBUSY is retried, with a short
/// growing pause, for about two seconds at most.
fn remove_dir_retrying(dir: &Path, before: impl Fn()) -> io::Result<()> {
    let mut pause = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    loop {
        before();
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_secs(2) => {
                thread::sleep(pause);
                waited += pause;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The shell script that joins the job's cgroup (`$1`: its `cgroup.procs`;
/// writing `0` moves the writer) and then runs the command (`$2`), or
/// says why it could not join and exits [`JOIN_FAILED`].
const JOIN_THEN_EVAL: &str = "echo 0 2>/dev/null >\"$1\" || { echo \"respool: cannot join the job's cgroup: $1\" >&2; exit 125; }; shift; eval \"shift; $1\"";

/// The exit status of a shell that could not join its job's cgroup.
const JOIN_FAILED: i32 = 125;

/// What that shell wrote to its standard error.
const JOIN_FAILED_MESSAGE: &[u8] = b"respool: cannot join the job's cgroup: ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 /a\\040b /sys/fs/cgroup/uni\\040fied rw,relatime shared:9 - cgroup2 cgroup2 rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fstype, "cgroup");
        assert_eq!(m[0].super_options, "rw,memory");
        assert_eq!(m[1].root, "/a b");
        assert_eq!(m[1].mount_point, PathBuf::from("/sys/fs/cgroup/uni fied"));
        assert_eq!(m[1].fstype, "cgroup2");
    }

    #[test]
    fn proc_cgroup_lines() {
        let text =
            "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/user.slice/s\n";
        let (v2, v1) = parse_proc_cgroup(text);
        assert_eq!(v2.as_deref(), Some("/user.slice/s"));
        assert_eq!(v1.as_deref(), Some("/process_api/abc"));
    }

    #[test]
    fn group_dirs_relative_to_the_mount_root() {
        let mount = |root: &str| Mount {
            root: root.to_string(),
            mount_point: PathBuf::from("/sys/fs/cgroup"),
            fstype: "cgroup2".to_string(),
            super_options: "rw".to_string(),
        };
        assert_eq!(
            group_dir(&mount("/"), "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/a/b"))
        );
        assert_eq!(
            group_dir(&mount("/"), "/"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            group_dir(&mount("/kubepods/pod1"), "/kubepods/pod1/c"),
            Some(PathBuf::from("/sys/fs/cgroup/c"))
        );
        assert_eq!(group_dir(&mount("/other"), "/a"), None);
        assert_eq!(group_dir(&mount("/"), "/a/../b"), None);
    }

    #[test]
    fn keyed_values() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed_value(events, "oom_kill"), Some(2));
        assert_eq!(keyed_value(events, "oom"), Some(3));
        assert_eq!(
            keyed_value("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"),
            None
        );
    }

    #[test]
    fn captured_spills_past_one_mib() {
        let mut c = Captured::default();
        let chunk = vec![7u8; 300 * 1024];
        for _ in 0..4 {
            c.push(&chunk).expect("push");
        }
        assert!(c.file.is_some());
        assert!(c.memory.is_empty());
        assert_eq!(c.len(), 4 * 300 * 1024);
        let mut out = Vec::new();
        c.write_to(&mut out).expect("write_to");
        assert_eq!(out.len() as u64, c.len());
        assert!(out.iter().all(|&b| b == 7));
    }

    fn sh(args: &[&str]) -> std::process::Output {
        Command::new("/bin/sh")
            .args(args)
            .output()
            .expect("run /bin/sh")
    }

    #[test]
    fn the_join_script_joins_then_runs_the_command_as_sh_c_would() {
        let dir = tempfile::tempdir().expect("tempdir");
        let procs = dir.path().join("cgroup.procs");
        std::fs::write(&procs, "").expect("create");
        let p = procs.to_str().expect("utf-8 path");
        let out = sh(&["-c", JOIN_THEN_EVAL, "sh", p, "echo \"$0:$#:$1\"; exit 3"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "sh:0:\n");
        assert_eq!(out.status.code(), Some(3));
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // It wrote "0" (itself) to the group's cgroup.procs first.
        assert_eq!(std::fs::read_to_string(&procs).expect("read"), "0\n");
    }

    #[test]
    fn a_shell_that_cannot_join_says_so_and_runs_nothing() {
        let out = sh(&[
            "-c",
            JOIN_THEN_EVAL,
            "sh",
            "/nonexistent/respool/cgroup.procs",
            "echo ran",
        ]);
        assert_eq!(out.status.code(), Some(JOIN_FAILED));
        assert!(out.stdout.is_empty());
        assert!(out.stderr.starts_with(JOIN_FAILED_MESSAGE));
    }

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call; -1 waits until it is ready.
        unsafe { libc::poll(&mut p, 1, -1) == 1 }
    }

    #[test]
    // Reaped by `reap(pid)`, as run_in reaps its jobs, not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    fn both_exit_signals_fire_on_exit_without_reaping() {
        for use_thread in [false, true] {
            let child = Command::new("/bin/sh")
                .args(["-c", "exit 4"])
                .spawn()
                .expect("spawn");
            let pid = child.id() as libc::pid_t;
            let exit = if use_thread {
                ExitSignal::waiter_thread(pid).expect("waiter thread")
            } else {
                ExitSignal::new(pid).expect("exit signal")
            };
            assert_eq!(matches!(exit, ExitSignal::Thread { .. }), use_thread);
            assert!(readable(exit.fd()));
            // Exited, and still there to be reaped with its status.
            assert!(has_exited(pid));
            exit.finish().expect("finish");
            let (status, _) = reap(pid).expect("reap");
            assert!(libc::WIFEXITED(status));
            assert_eq!(libc::WEXITSTATUS(status), 4);
        }
    }
}
