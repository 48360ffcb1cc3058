//! Running one job: `/bin/sh -c <command>` in its own process group, its
//! output captured, its time limit enforced, its peak memory and CPU time
//! measured.
//!
//! Memory is measured by a per-job memory cgroup where this process can make
//! one (see [`Measurer::detect`]), else by `wait4`'s `ru_maxrss`, which is the
//! largest single process of the job, not the job's total.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How per-job memory is measured on this machine, decided once.
#[derive(Debug)]
pub struct Measurer {
    kind: MeasurerKind,
}

#[derive(Debug)]
enum MeasurerKind {
    Rusage,
}

impl Measurer {
    /// cgroup v2 (a writable delegated subtree), else cgroup v1 memory
    /// controller (writable, e.g. as root), else rusage.
    pub fn detect() -> Measurer {
        Measurer::rusage_only()
    }

    /// The forced fallback: `ru_maxrss` of the job's largest process, no
    /// cgroup (tests, `--no-cgroup`).
    pub fn rusage_only() -> Measurer {
        Measurer {
            kind: MeasurerKind::Rusage,
        }
    }

    /// What measures memory, in words.
    pub fn describe(&self) -> String {
        match &self.kind {
            MeasurerKind::Rusage => {
                "rusage (ru_maxrss: the largest single process of each job, not its total)"
                    .to_string()
            }
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
    /// A hard cgroup limit for this job, when measured by cgroup (None: no limit).
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

    /// Reads `from` to its end. A write error (the spill file) is kept and the
    /// pipe is still drained, so that the job never blocks on a full pipe.
    fn drain(mut from: impl Read) -> Result<Captured, io::Error> {
        let mut captured = Captured::default();
        let mut first_error = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if first_error.is_none() {
                        if let Err(e) = captured.push(&buf[..n]) {
                            first_error = Some(e);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                    break;
                }
            }
        }
        match first_error {
            None => Ok(captured),
            Some(e) => Err(e),
        }
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
        }
    }
}

impl std::error::Error for JobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JobError::Spawn(e) | JobError::Wait(e) | JobError::Output(e) => Some(e),
            JobError::Cgroup { error, .. } => Some(error),
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

/// Kills every running job's process group with SIGKILL (Ctrl-C); jobs then
/// return from [`run_job`] with their signal.
pub fn kill_running() {
    let guard = running();
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
    let _ = measurer;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.command)
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
        let child = command.spawn().map_err(JobError::Spawn)?;
        guard
            .get_or_insert_with(HashSet::new)
            .insert(child.id() as libc::pid_t);
        child
    };
    let pid = child.id() as libc::pid_t;

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = stdout.map(|p| thread::spawn(move || Captured::drain(p)));
    let err_reader = stderr.map(|p| thread::spawn(move || Captured::drain(p)));

    // A waiter thread reports the shell's exit (without reaping it); this
    // thread waits for that report, at most until the timeout.
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let r = wait_exited_no_reap(pid);
        let _ = tx.send(());
        r
    });
    let mut timed_out = false;
    match spec.timeout {
        Some(limit) => {
            if rx.recv_timeout(limit).is_err() && !has_exited(pid) {
                timed_out = true;
                kill_group(pid);
            }
        }
        None => {
            let _ = rx.recv();
        }
    }
    let waited = waiter
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the waiter thread panicked")));
    let runtime = clock.elapsed();

    // The leader is a zombie now (or waitid failed): forget it, kill what is
    // left of its group, then reap it.
    {
        let mut guard = running();
        if let Some(set) = guard.as_mut() {
            set.remove(&pid);
        }
        kill_group(pid);
    }
    let reaped = reap(pid);
    waited.map_err(JobError::Wait)?;
    let (status, usage) = reaped.map_err(JobError::Wait)?;

    let join = |h: Option<thread::JoinHandle<io::Result<Captured>>>| -> Result<Captured, JobError> {
        match h {
            None => Ok(Captured::default()),
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the output reader thread panicked")))
                .map_err(JobError::Output),
        }
    };
    let stdout = join(out_reader)?;
    let stderr = join(err_reader)?;

    let (exit_code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };

    Ok(JobOutcome {
        started,
        runtime,
        exit_code,
        signal,
        timed_out,
        oom_killed: false,
        // ru_maxrss is in KiB on Linux.
        peak_memory: Some((usage.ru_maxrss.max(0) as u64) * 1024),
        memory_source: MemorySource::RusageMaxrssLargestProcess,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        stdout,
        stderr,
    })
}
