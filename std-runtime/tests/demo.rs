//! README's main job, the demo, run as a user runs it: several invocations
//! in a row with one profile directory (each starting warm from what the
//! last one saved), and on profile files it did not write.
//!
//! Issue 15: the second invocation panicked about one time in ten with
//! `NeverFits(cpu 3331 > 2000)`, and every later one too, once a 12 us task
//! had recorded 13 cores in the profile. Each invocation here is the demo's
//! own `run` (its `main` is only the command line around it), so the test
//! builds the pools, loads and saves the profile file, and checks the
//! budget exactly as the command does.

#[allow(dead_code)]
#[path = "../examples/demo.rs"]
mod demo;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use respool::store::{ClassRecord, Profiles, Sample};
use respool::store::{FileStore, ProfileStore};

/// The demo measures the process's peak heap: one invocation at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("respool-demo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn options(dir: &std::path::Path) -> demo::Options {
    demo::Options {
        runs: 1,
        workers: 4,
        dir: dir.to_path_buf(),
        ..demo::Options::default()
    }
}

#[test]
fn the_demo_runs_warm_invocation_after_invocation() {
    let _serial = serial();
    let d = dir("warm");
    let o = options(&d);
    for invocation in 1..=3 {
        assert_eq!(
            demo::run(&o),
            Ok(0),
            "invocation {invocation}: respool stayed under the budget"
        );
        assert!(
            FileStore::in_dir(&d).path().exists(),
            "invocation {invocation} saved its profiles"
        );
    }
    let saved = FileStore::in_dir(&d)
        .load()
        .expect("readable")
        .expect("saved");
    let mut classes: Vec<_> = saved.classes.iter().map(|c| c.class.as_str()).collect();
    classes.sort_unstable();
    assert_eq!(classes, ["compress", "decode", "small"]);
    let _ = std::fs::remove_dir_all(&d);
}

/// A profile with values no pool of this machine can grant (10 TB of
/// memory, 13 cores for a task of 12 us): the estimates are clamped (or
/// not learned at all), every task runs, the budget holds.
#[test]
fn the_demo_runs_on_a_profile_with_absurd_values() {
    let _serial = serial();
    let d = dir("absurd");
    std::fs::create_dir_all(&d).expect("temp dir");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    let sample = |i: u64, wall_ns: u64, usage: &[(&str, u64)]| Sample {
        at_unix_ms: now_ms - 1000 + i,
        size: None,
        wall_ns,
        usage: usage.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        oom_bytes: None,
    };
    let class = |name: &str, samples: Vec<Sample>| ClassRecord {
        class: name.to_owned(),
        runs: samples.len() as u64,
        samples,
    };
    let profiles = Profiles::new(vec![
        class(
            "small",
            (0..20)
                .map(|i| sample(i, 12_000, &[("cpu", 13_409), ("memory", 65_536)]))
                .collect(),
        ),
        class(
            "decode",
            (0..20)
                .map(|i| sample(i, 20_000_000, &[("cpu", 900), ("memory", 10 << 40)]))
                .collect(),
        ),
    ]);
    FileStore::in_dir(&d).save(&profiles).expect("written");
    assert_eq!(demo::run(&options(&d)), Ok(0));
    // And the next invocation starts from what that one saved.
    assert_eq!(demo::run(&options(&d)), Ok(0));
    let _ = std::fs::remove_dir_all(&d);
}

/// A file that is not a profile: a clear error that says what to do, not a
/// panic; `--fresh` starts over.
#[test]
fn a_corrupt_profile_file_is_an_error_with_the_way_out() {
    let _serial = serial();
    let d = dir("corrupt");
    std::fs::create_dir_all(&d).expect("temp dir");
    std::fs::write(FileStore::in_dir(&d).path(), b"{ not json").expect("written");
    let err = demo::run(&options(&d)).expect_err("a corrupt file is reported");
    assert!(err.contains("--fresh"), "{err}");
    assert!(
        err.contains(&FileStore::in_dir(&d).path().display().to_string()),
        "{err}"
    );
    let fresh = demo::Options {
        fresh: true,
        ..options(&d)
    };
    assert_eq!(demo::run(&fresh), Ok(0));
    let _ = std::fs::remove_dir_all(&d);
}
