//! Integration tests of `respool_cli::job`: running jobs, their outcomes,
//! captured output, timeouts, `kill_running`, and memory measured by cgroup
//! and by rusage.
//!
//! Tests that need a memory cgroup (root, or a delegated v2 subtree) skip
//! themselves, saying why, when `Measurer::detect` falls back to rusage.

use respool_cli::job::{
    Captured, JobOutcome, JobSpec, Measurer, MemorySource, kill_running, run_job,
};
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

/// `kill_running` kills every job of this process: its test takes this lock
/// for writing, every other test for reading.
static KILL_LOCK: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    KILL_LOCK.read().unwrap_or_else(|p| p.into_inner())
}

const MIB: u64 = 1 << 20;

fn spec(command: &str) -> JobSpec {
    JobSpec {
        command: command.into(),
        timeout: None,
        memory_limit: None,
        stdin_null: true,
    }
}

fn run(command: &str, measurer: &Measurer) -> JobOutcome {
    run_job(&spec(command), measurer).expect("run_job")
}

fn bytes(c: &Captured) -> Vec<u8> {
    let mut v = Vec::new();
    c.write_to(&mut v).expect("write_to a Vec");
    assert_eq!(v.len() as u64, c.len());
    v
}

/// A cgroup measurer, or None (with the reason printed) where none can be made.
fn cgroup_measurer(test: &str) -> Option<Measurer> {
    let m = Measurer::detect();
    if m.cgroup_dir().is_none() {
        eprintln!("SKIP {test}: no memory cgroup here: {}", m.describe());
        return None;
    }
    Some(m)
}

/// The subdirectories (job groups) of a measurer's parent cgroup.
fn job_groups(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read the parent cgroup")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The processes of group `pgid` that have not exited (zombies waiting for
/// init to reap them do not count), from `/proc/<pid>/stat`.
fn live_members(pgid: i32) -> Vec<i32> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // exited meanwhile
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" && fields[0] != "X"
        {
            live.push(pid);
        }
    }
    live
}

/// Waits until every process of group `pgid` has exited (a SIGKILLed
/// process needs to be scheduled to die); false if some is still alive after
/// a minute, which only a process that survived SIGKILL would be.
fn group_dies(pgid: i32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if live_members(pgid).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A program that touches `n` bytes of fresh memory (perl's vec grows the
/// string to `n` bytes, zero-filled, in one allocation).
fn allocate(n: u64) -> String {
    format!("perl -e 'vec($x, {} - 1, 8) = 1'", n)
}

#[test]
fn exit_code_and_output() {
    let _g = shared();
    let o = run("echo hi; echo err >&2; exit 3", &Measurer::rusage_only());
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.signal, None);
    assert!(!o.timed_out);
    assert!(!o.oom_killed);
    assert_eq!(bytes(&o.stdout), b"hi\n");
    assert_eq!(bytes(&o.stderr), b"err\n");
    assert_eq!(o.memory_source, MemorySource::RusageMaxrssLargestProcess);
}

#[test]
fn killed_by_a_signal() {
    let _g = shared();
    let o = run("kill -TERM $$", &Measurer::rusage_only());
    assert_eq!(o.exit_code, None);
    assert_eq!(o.signal, Some(libc::SIGTERM));
    assert!(!o.timed_out);
}

#[test]
fn missing_command_is_exit_127_not_an_error() {
    let _g = shared();
    let o = run("respool-no-such-command-xyz", &Measurer::rusage_only());
    assert_eq!(o.exit_code, Some(127));
    assert!(!o.stderr.is_empty(), "sh says the command was not found");
    assert!(o.stdout.is_empty());
}

#[test]
fn non_utf8_output_is_captured_exactly() {
    let _g = shared();
    let o = run(r"printf '\377\376\000a\n\200'", &Measurer::rusage_only());
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(bytes(&o.stdout), b"\xff\xfe\x00a\n\x80");
}

#[test]
fn output_beyond_one_mib_spills_and_is_exact() {
    let _g = shared();
    // 3 MiB of bytes 0, 1, ..., 255, 0, ... on stdout, and 2 MiB + 1 of 'e'
    // on stderr, interleaved (neither pipe may block the other).
    let command = "perl -e 'for my $i (0 .. 3*1024*1024 - 1) { print chr($i % 256); print STDERR \"ee\" if $i % 3 == 0 && $i < 3*1024*1024 - 2 } print STDERR \"e\"'";
    let o = run(command, &Measurer::rusage_only());
    assert_eq!(o.exit_code, Some(0), "stderr len {}", o.stderr.len());
    let expected: Vec<u8> = (0..3 * MIB).map(|i| (i % 256) as u8).collect();
    assert_eq!(o.stdout.len(), 3 * MIB);
    assert!(bytes(&o.stdout) == expected, "stdout differs");
    let err = bytes(&o.stderr);
    assert_eq!(err.len() as u64, 2 * MIB + 1);
    assert!(err.iter().all(|&b| b == b'e'));
    // write_to twice gives the same bytes (the spill file is read by offset).
    assert!(bytes(&o.stdout) == expected);
}

#[test]
fn stdin_is_null_when_asked() {
    let _g = shared();
    let o = run("wc -c", &Measurer::rusage_only());
    assert_eq!(bytes(&o.stdout).trim_ascii(), b"0");
}

/// A job and a background process of it, past its timeout: both killed, the
/// process group gone.
fn check_timeout(measurer: &Measurer) {
    let mut s = spec("sleep 1000 & echo $$; wait");
    s.timeout = Some(Duration::from_millis(200));
    let o = run_job(&s, measurer).expect("run_job");
    assert!(o.timed_out);
    assert_eq!(o.exit_code, None);
    assert_eq!(o.signal, Some(libc::SIGKILL));
    let out = String::from_utf8(bytes(&o.stdout)).expect("a pid");
    let pgid: i32 = out.trim().parse().expect("a pid");
    assert!(
        group_dies(pgid),
        "process group {pgid} is still alive: {:?}",
        live_members(pgid)
    );
}

#[test]
fn timeout_kills_the_process_group() {
    let _g = shared();
    check_timeout(&Measurer::rusage_only());
}

#[test]
fn timeout_kills_the_process_group_in_a_cgroup() {
    let _g = shared();
    let Some(m) = cgroup_measurer("timeout_kills_the_process_group_in_a_cgroup") else {
        return;
    };
    check_timeout(&m);
    let dir = m.cgroup_dir().expect("a cgroup").to_path_buf();
    assert_eq!(job_groups(&dir), Vec::<String>::new());
}

#[test]
fn a_job_that_finishes_in_time_is_not_timed_out() {
    let _g = shared();
    let mut s = spec("exit 0");
    s.timeout = Some(Duration::from_secs(3600));
    let o = run_job(&s, &Measurer::rusage_only()).expect("run_job");
    assert!(!o.timed_out);
    assert_eq!(o.exit_code, Some(0));
}

#[test]
fn memory_by_rusage_is_the_largest_process() {
    let _g = shared();
    let o = run(&allocate(64 * MIB), &Measurer::rusage_only());
    assert_eq!(
        o.exit_code,
        Some(0),
        "{:?}",
        String::from_utf8_lossy(&bytes(&o.stderr))
    );
    assert_eq!(o.memory_source, MemorySource::RusageMaxrssLargestProcess);
    let peak = o.peak_memory.expect("ru_maxrss");
    assert!(
        (64 * MIB..112 * MIB).contains(&peak),
        "peak {} MiB",
        peak / MIB
    );
    assert!(!o.oom_killed);
}

#[test]
fn memory_by_cgroup_is_the_whole_job_and_its_group_is_removed() {
    let _g = shared();
    let Some(m) = cgroup_measurer("memory_by_cgroup_is_the_whole_job_and_its_group_is_removed")
    else {
        return;
    };
    let dir = m.cgroup_dir().expect("a cgroup").to_path_buf();
    assert!(dir.is_dir());
    eprintln!("measuring with {}", m.describe());
    let o = run(&allocate(64 * MIB), &m);
    assert_eq!(
        o.exit_code,
        Some(0),
        "{:?}",
        String::from_utf8_lossy(&bytes(&o.stderr))
    );
    assert!(matches!(
        o.memory_source,
        MemorySource::CgroupV1MaxUsage | MemorySource::CgroupV2Peak
    ));
    let peak = o.peak_memory.expect("a peak");
    // The group also counts page cache and kernel memory of the job.
    assert!(
        (64 * MIB..128 * MIB).contains(&peak),
        "peak {} MiB",
        peak / MIB
    );
    assert!(!o.oom_killed);
    assert_eq!(job_groups(&dir), Vec::<String>::new(), "job groups left");
    drop(m);
    assert!(!dir.exists(), "{} left after drop", dir.display());
}

#[test]
fn oom_kill_in_a_cgroup_with_a_limit() {
    let _g = shared();
    let Some(m) = cgroup_measurer("oom_kill_in_a_cgroup_with_a_limit") else {
        return;
    };
    let dir = m.cgroup_dir().expect("a cgroup").to_path_buf();
    // `exec`: the allocating process is the job's shell itself, so the job
    // dies of the OOM killer's SIGKILL.
    let mut s = spec(&format!("exec {}", allocate(256 * MIB)));
    s.memory_limit = Some(32 * MIB);
    let o = run_job(&s, &m).expect("run_job");
    assert!(o.oom_killed, "{o:?}");
    assert_eq!(o.signal, Some(libc::SIGKILL));
    assert_eq!(o.exit_code, None);
    assert!(!o.timed_out);
    // Without exec, sh survives its child and reports 128 + 9.
    let mut s = spec(&format!("{}; exit $?", allocate(256 * MIB)));
    s.memory_limit = Some(32 * MIB);
    let o = run_job(&s, &m).expect("run_job");
    assert!(o.oom_killed, "{o:?}");
    assert_eq!(o.exit_code, Some(128 + libc::SIGKILL));
    // A job within its limit is not OOM-killed.
    let mut s = spec(&allocate(8 * MIB));
    s.memory_limit = Some(64 * MIB);
    let o = run_job(&s, &m).expect("run_job");
    assert!(!o.oom_killed, "{o:?}");
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(job_groups(&dir), Vec::<String>::new(), "job groups left");
}

#[test]
fn jobs_in_parallel_share_one_measurer() {
    let _g = shared();
    let Some(m) = cgroup_measurer("jobs_in_parallel_share_one_measurer") else {
        return;
    };
    let dir = m.cgroup_dir().expect("a cgroup").to_path_buf();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let m = &m;
                s.spawn(move || run(&format!("echo {i}"), m))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let o = h.join().expect("a job thread");
            assert_eq!(bytes(&o.stdout), format!("{i}\n").as_bytes());
        }
    });
    assert_eq!(job_groups(&dir), Vec::<String>::new(), "job groups left");
}

#[test]
fn kill_running_stops_a_running_job() {
    let _g = KILL_LOCK.write().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let fifo = tmp.path().join("ready");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let command = format!("echo ready > '{}'; exec sleep 1000", fifo.display());
    std::thread::scope(|s| {
        let job = s.spawn(|| run(&command, &Measurer::rusage_only()));
        // Opening the FIFO for reading waits for the job to open it for writing.
        let mut line = String::new();
        std::io::Read::read_to_string(
            &mut std::fs::File::open(&fifo).expect("open the FIFO"),
            &mut line,
        )
        .expect("read the FIFO");
        assert_eq!(line, "ready\n");
        kill_running();
        let o = job.join().expect("the job thread");
        assert_eq!(o.signal, Some(libc::SIGKILL));
        assert!(!o.timed_out);
    });
}

#[test]
fn cgroup_counts_the_whole_job_rusage_only_its_largest_process() {
    let _g = shared();
    let Some(m) = cgroup_measurer("cgroup_counts_the_whole_job_rusage_only_its_largest_process")
    else {
        return;
    };
    // The parent holds 48 MiB while its child (having freed its copy of the
    // parent's string) touches 48 MiB of its own: 96 MiB at once in the
    // job, no process above about 48 MiB.
    let command = "perl -e 'vec($x, 48*1024*1024 - 1, 8) = 1; if (my $pid = fork) { waitpid($pid, 0) } else { undef $x; vec($y, 48*1024*1024 - 1, 8) = 1; exit 0 }'";
    let by_cgroup = run(command, &m);
    let by_rusage = run(command, &Measurer::rusage_only());
    assert_eq!(by_cgroup.exit_code, Some(0));
    assert_eq!(by_rusage.exit_code, Some(0));
    let whole = by_cgroup.peak_memory.expect("a cgroup peak");
    let largest = by_rusage.peak_memory.expect("ru_maxrss");
    assert!(whole >= 96 * MIB, "cgroup peak {} MiB", whole / MIB);
    assert!(
        (48 * MIB..96 * MIB).contains(&largest),
        "ru_maxrss {} MiB",
        largest / MIB
    );
}
