//! A pool following the container limits its system monitor reads: a
//! changed memory limit becomes the pool's capacity within a sample when the
//! capacity was detected, and `Builder::system_monitor` is validated with
//! the pool. (The monitor itself is tested in respool-sys,
//! `sys/tests/monitor.rs`.)

use std::time::{Duration, Instant};

use respool::sys::{
    ContainerLimitsReading, MonitorConfig, Resource, Snapshot, SysError, SystemMonitor,
};
use respool::{Dim, Pool, Resources};

/// The container memory limit of a [`LimitSource`], set by the test.
#[derive(Default)]
struct LimitScript {
    limit: std::sync::Mutex<Option<u64>>,
    reads: std::sync::atomic::AtomicU64,
}

impl LimitScript {
    fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sets the limit and returns once the pool has handled a sample that
    /// read it: the third read after the change started after it, and the
    /// pool handles a sample before the next read starts.
    fn set(&self, limit: Option<u64>) {
        *self.limit.lock().unwrap() = limit;
        let seen = self.reads();
        let start = Instant::now();
        while self.reads() < seen + 3 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for samples"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A monitor source with container limits only, from a [`LimitScript`].
struct LimitSource(std::sync::Arc<LimitScript>);

impl SystemMonitor for LimitSource {
    fn name(&self) -> &'static str {
        "limits"
    }
    fn read(&mut self, r: Resource, now: Instant, s: &mut Snapshot) -> Result<(), SysError> {
        if r != Resource::ContainerLimits {
            return Err(SysError::Unsupported {
                what: "anything but container limits",
                why: "a test source",
            });
        }
        s.container_limits = Some(ContainerLimitsReading {
            at: now,
            cpu_millicores: None,
            memory_bytes: *self.0.limit.lock().unwrap(),
        });
        self.0
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// Container limits read on every sample, every 5 ms.
fn limits_every_sample() -> MonitorConfig {
    MonitorConfig::default()
        .only(&[Resource::ContainerLimits])
        .with_interval(Duration::from_millis(5))
        .with_ttl(Resource::ContainerLimits, Duration::from_millis(1))
}

/// Guards the pool's container-limit branch (`on_sample` with
/// `follow_container_limit`, on when the memory capacity is detected): a
/// changed container memory limit becomes the pool's memory capacity within
/// a sample, an unlimited one leaves the last; with a memory capacity set by
/// the user, the pool's capacity stays what was set.
#[test]
fn the_pool_follows_a_changed_container_limit_only_when_memory_was_detected() {
    const MIB: u64 = 1 << 20;
    let memory = |p: &Pool| p.snapshot().capacity.get(Dim::Memory);

    // Memory detected: followed.
    let script = std::sync::Arc::new(LimitScript::default());
    let pool = Pool::builder()
        .workers(1)
        .headroom(Resources::NONE)
        .system_monitor(LimitSource(script.clone()))
        .monitor_config(limits_every_sample())
        .build()
        .unwrap();
    let detected = memory(&pool).expect("memory capacity detected");
    let (half, quarter) = (detected / 2, detected / 4);
    script.set(Some(half));
    assert_eq!(memory(&pool), Some(half), "detected {detected}");
    script.set(Some(quarter));
    assert_eq!(memory(&pool), Some(quarter));
    script.set(None);
    assert_eq!(memory(&pool), Some(quarter), "no limit: the last one stays");
    // Tasks are admitted against it.
    let h = pool
        .task()
        .require(Dim::Memory, quarter)
        .spawn(|_| 7)
        .unwrap();
    assert_eq!(h.join_timeout(Duration::from_secs(60)).unwrap(), Ok(7));
    assert!(
        pool.task()
            .require(Dim::Memory, quarter + 1)
            .spawn(|_| ())
            .is_err()
    );
    drop(pool);

    // Memory set: not followed.
    let script = std::sync::Arc::new(LimitScript::default());
    let pool = Pool::builder()
        .workers(1)
        .memory("1GiB")
        .system_monitor(LimitSource(script.clone()))
        .monitor_config(limits_every_sample())
        .build()
        .unwrap();
    for limit in [512 * MIB, 2048 * MIB] {
        script.set(Some(limit));
        assert_eq!(memory(&pool), Some(1024 * MIB), "limit {limit}");
    }
}

/// Guards the validation of `Builder::system_monitor`: it switches the
/// monitor on (so a bad monitor configuration is refused), and contradicts
/// `monitor(false)`.
#[test]
fn a_system_monitor_is_validated_with_the_pool() {
    let source = || LimitSource(std::sync::Arc::new(LimitScript::default()));
    let e = Pool::builder()
        .memory("1GiB")
        .monitor(false)
        .system_monitor(source())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("monitor(false)"), "{e}");
    let e = Pool::builder()
        .memory("1GiB")
        .system_monitor(source())
        .monitor_config(MonitorConfig::default().with_interval(Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("interval"), "{e}");
    // Off without a source: the monitor configuration is not used.
    assert!(
        Pool::builder()
            .memory("1GiB")
            .monitor_config(MonitorConfig::default().with_interval(Duration::ZERO))
            .build()
            .is_ok()
    );
}
