//! `LearningConfig` seen from the pool: what a classified task is admitted
//! with when learning is disabled, and when predictions start to be used.
//! Usage is learned here from what tasks report (no tracking allocator), so
//! every learned amount is exact.

use std::sync::{Arc, Mutex};

use respool::learn::LearningConfig;
use respool::measure::TaskReport;
use respool::store::FileStore;
use respool::{Dim, Pool, Ppm, Resources};

const MIB: u64 = 1 << 20;
const BYTES_PER_S: u64 = 5_000_000;

fn fallback() -> Resources {
    Resources::new()
        .with(Dim::Memory, 64 * MIB)
        .unwrap()
        .with(Dim::Cpu, 500)
        .unwrap()
}

fn pool(learning: LearningConfig, store: Option<FileStore>) -> (Pool, Arc<Mutex<Vec<TaskReport>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let mut b = Pool::builder()
        .workers(2)
        .capacity(
            Resources::new()
                .with(Dim::Memory, 4 << 30)
                .unwrap()
                .with(Dim::Cpu, 64_000)
                .unwrap(),
        )
        .headroom(Resources::NONE)
        .learning(LearningConfig {
            fallback: fallback(),
            ..learning
        })
        .on_task_end(move |r: &TaskReport| sink.lock().unwrap().push(r.clone()));
    if let Some(s) = store {
        b = b.profile_store(s);
    }
    (b.build().unwrap(), got)
}

/// Runs `runs` tasks of class `net` one after the other, each reporting
/// `BYTES_PER_S` of network use; returns their reports, in order.
fn run_net(pool: &Pool, got: &Mutex<Vec<TaskReport>>, runs: usize) -> Vec<TaskReport> {
    let before = got.lock().unwrap().len();
    for _ in 0..runs {
        pool.task()
            .class("net")
            .spawn(|ctx| ctx.report_usage(Dim::Network, BYTES_PER_S))
            .unwrap()
            .join()
            .unwrap();
    }
    got.lock().unwrap()[before..].to_vec()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "respool-learning-config-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn disabled_learning_uses_declared_requirements_and_the_fallback_only() {
    let dir = temp_dir("disabled");
    // Enabled, the same runs are learned (so the checks below can fail) and
    // saved to the store.
    {
        let (on, got) = pool(LearningConfig::default(), Some(FileStore::in_dir(&dir)));
        let reports = run_net(&on, &got, 12);
        assert_eq!(
            reports.last().unwrap().expected.get(Dim::Network),
            Some(BYTES_PER_S),
            "enabled: learned"
        );
        on.shutdown();
    }
    let stored = FileStore::in_dir(&dir);
    let saved = respool::store::ProfileStore::load(&stored)
        .unwrap()
        .unwrap();
    assert_eq!(saved.classes[0].class, "net");

    // Disabled, on the same store: the stored profile is not used.
    let (off, got) = pool(
        LearningConfig {
            enabled: false,
            ..LearningConfig::default()
        },
        Some(FileStore::in_dir(&dir)),
    );
    for (i, r) in run_net(&off, &got, 12).iter().enumerate() {
        assert_eq!(r.requested, fallback(), "run {i}: the fallback");
        assert_eq!(r.expected, Resources::NONE, "run {i}: no prediction");
        assert_eq!(
            r.usage.reported.get(Dim::Network),
            Some(BYTES_PER_S),
            "still measured"
        );
    }
    // Declared requirements win; the fallback fills the rest.
    off.task()
        .class("net")
        .memory("100MiB")
        .spawn(|_| ())
        .unwrap()
        .join()
        .unwrap();
    let r = got.lock().unwrap().last().cloned().unwrap();
    assert_eq!(r.requested.get(Dim::Memory), Some(100 * MIB));
    assert_eq!(r.requested.get(Dim::Cpu), Some(500));
    assert_eq!(r.expected, Resources::NONE);
    // An out-of-memory report returns the bump but is not learned.
    assert_eq!(off.report_oom("net", 300 * MIB), 400 * MIB);
    assert_eq!(off.report_oom("fresh", 300 * MIB), 400 * MIB);
    let r = run_net(&off, &got, 1).pop().unwrap();
    assert_eq!(r.requested, fallback(), "no out-of-memory floor");
    // Nothing learned: the loaded profile is exactly what was stored, and no
    // class was added.
    let profiles = off.profiles();
    assert_eq!(
        profiles.classes, saved.classes,
        "nothing learned, nothing lost"
    );
    let snap = off.snapshot();
    assert_eq!(
        snap.classes
            .iter()
            .map(|c| c.class.as_str())
            .collect::<Vec<_>>(),
        ["net"]
    );
    assert_eq!(snap.classes[0].runs, saved.classes[0].runs);
    off.shutdown();
    // Saved back unchanged.
    let again = respool::store::ProfileStore::load(&stored)
        .unwrap()
        .unwrap();
    assert_eq!(again.classes, saved.classes);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn predictions_are_used_from_min_executions_runs() {
    let (p, got) = pool(
        LearningConfig {
            min_executions: 6,
            confidence_threshold: Ppm::ZERO,
            ..LearningConfig::default()
        },
        None,
    );
    let reports = run_net(&p, &got, 9);
    // Run `i` (from 0) was admitted after `i` runs had been learned.
    for (i, r) in reports.iter().enumerate() {
        let want = (i >= 6).then_some(BYTES_PER_S);
        assert_eq!(r.expected.get(Dim::Network), want, "after {i} runs");
        if i < 6 {
            assert_eq!(r.requested, fallback(), "after {i} runs: the fallback");
        }
    }
}

#[test]
fn a_prediction_below_the_confidence_threshold_is_not_used() {
    // A constant series gains 10% of confidence per run (see
    // `respool_core::predict`): at 70%, runs 0..=6 are admitted on the
    // fallback and run 7 (after seven runs) on the prediction.
    let (p, got) = pool(
        LearningConfig {
            min_executions: 1,
            confidence_threshold: Ppm::from_percent(70),
            ..LearningConfig::default()
        },
        None,
    );
    let reports = run_net(&p, &got, 9);
    for (i, r) in reports.iter().enumerate() {
        let want = (i >= 7).then_some(BYTES_PER_S);
        assert_eq!(r.expected.get(Dim::Network), want, "after {i} runs");
    }
}
