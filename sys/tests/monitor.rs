//! The procfs monitor: exact rates against a fixture tree written by the
//! test (counters moved by known amounts, time given to the sampler), limit
//! changes seen through the sampling thread, and the real machine. (A pool
//! following a changed limit is tested in respool's
//! `tests/monitor_limits.rs`.)

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use respool_core::Dim;
use respool_sys::monitor::{
    Monitor, MonitorConfig, ProcfsMonitor, Resource, ResourceStatus, Sampler,
};
use respool_sys::{SysError, SysRoot};

/// A fixture tree in a fresh temporary directory, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("respool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tree(dir)
    }

    /// Writes `content` to `rel` in place (same inode, as procfs would
    /// change), creating directories.
    fn write(&self, rel: &str, content: &str) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.0.join(rel)).unwrap();
    }

    fn root(&self) -> SysRoot {
        SysRoot::at(&self.0)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `/proc/stat` of a 4-CPU machine with the given busy and idle ticks.
fn stat(busy: u64, idle: u64) -> String {
    let mut s = format!("cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\n");
    for i in 0..4 {
        s.push_str(&format!("cpu{i} 0 0 0 0 0 0 0 0 0 0\n"));
    }
    s.push_str("intr 1 2 3\nctxt 4\n");
    s
}

fn diskstats(reads: u64, sectors_read: u64, writes: u64, sectors_written: u64) -> String {
    format!(
        "   7       0 loop0 99 0 99 0 99 0 99 0 0 0 0 0 0 0 0 0 0\n \
         259       0 nvme0n1 {reads} 0 {sectors_read} 0 {writes} 0 {sectors_written} 0 0 0 0 0 0 0 0 0 0\n \
         259       1 nvme0n1p1 {reads} 0 {sectors_read} 0 {writes} 0 {sectors_written} 0 0 0 0\n"
    )
}

fn netdev(rx: u64, tx: u64) -> String {
    format!(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
         lo: 555 5 0 0 0 0 0 0 555 5 0 0 0 0 0 0\n  \
         eth0: {rx} {} 0 0 0 0 0 0 {tx} {} 0 0 0 0 0 0\n",
        rx / 1000,
        tx / 1000
    )
}

fn psi(some_total: u64) -> String {
    format!(
        "some avg10=2.50 avg60=1.00 avg300=0.50 total={some_total}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
}

/// A machine with a cgroup v2 group `/app`.
fn machine_tree(name: &str) -> Tree {
    let t = Tree::new(name);
    t.write("proc/stat", &stat(1000, 3000));
    t.write(
        "proc/meminfo",
        "MemTotal:       8388608 kB\nMemFree:        1048576 kB\nMemAvailable:   6291456 kB\n",
    );
    t.write("proc/pressure/cpu", &psi(100));
    t.write("proc/pressure/memory", &psi(200));
    t.write("proc/pressure/io", &psi(300));
    t.write("proc/diskstats", &diskstats(100, 1000, 50, 2000));
    t.write("proc/net/dev", &netdev(1_000_000, 500_000));
    t.write("proc/self/cgroup", "0::/app\n");
    t.write(
        "proc/self/mountinfo",
        "31 23 0:27 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n",
    );
    t.write("sys/fs/cgroup/app/cpu.max", "200000 100000\n");
    t.write("sys/fs/cgroup/app/memory.max", "1073741824\n");
    t.write("sys/fs/cgroup/app/memory.current", "104857600\n");
    t.write("sys/fs/cgroup/app/memory.peak", "209715200\n");
    t.write(
        "sys/fs/cgroup/app/memory.stat",
        "anon 1\ninactive_file 4194304\n",
    );
    t.write(
        "sys/fs/cgroup/app/cpu.stat",
        "usage_usec 1000000\nuser_usec 1\n",
    );
    t.write("sys/fs/cgroup/app/memory.pressure", &psi(7));
    t
}

#[test]
fn rates_between_samples_are_exact() {
    let t = machine_tree("rates");
    let mut s = Sampler::new(ProcfsMonitor::new(&t.root()), MonitorConfig::default()).unwrap();
    let t0 = Instant::now();
    let tick = s.tick(t0);
    for r in Resource::ALL {
        assert!(tick.refreshed(r), "{r:?}: {:?}", s.last_error(r));
    }
    let snap = *s.snapshot();
    let cpu = snap.cpu.unwrap();
    assert_eq!(
        (cpu.cpus, cpu.busy_millicores),
        (4, None),
        "no rate from one reading"
    );
    let mem = snap.memory.unwrap();
    assert_eq!(
        (mem.total, mem.available, mem.used),
        (8 << 30, 6 << 30, 2 << 30)
    );
    let p = snap.pressure.unwrap();
    assert_eq!(p.memory.unwrap().some.total_us, 200);
    assert_eq!(
        p.cpu.unwrap().some.avg10,
        respool_core::Ppm::from_ppm(25_000)
    );
    let disk = snap.disk.unwrap();
    assert_eq!(
        disk.totals.devices, 1,
        "loop devices and partitions are not counted"
    );
    assert_eq!(disk.totals.read_bytes, 1000 * 512);
    let c = snap.container.unwrap();
    assert_eq!(c.memory_current, Some(100 << 20));
    assert_eq!(c.memory_working_set, Some((100 << 20) - (4 << 20)));
    assert_eq!(c.memory_peak, Some(200 << 20));
    assert_eq!(c.cpu_usage_ns, Some(1_000_000_000));
    assert_eq!(c.memory_pressure.unwrap().some.total_us, 7);
    let l = snap.container_limits.unwrap();
    assert_eq!(
        (l.cpu_millicores, l.memory_bytes),
        (Some(2000), Some(1 << 30))
    );

    // Two seconds later: 1 CPU of 4 was busy (800 of 3200 ticks... here 200
    // busy of 800 total), 400 ops, 1 MB/s down.
    t.write("proc/stat", &stat(1000 + 200, 3000 + 600));
    t.write(
        "proc/diskstats",
        &diskstats(100 + 300, 1000 + 4000, 50 + 100, 2000 + 8000),
    );
    t.write(
        "proc/net/dev",
        &netdev(1_000_000 + 2_000_000, 500_000 + 1_000_000),
    );
    t.write("sys/fs/cgroup/app/cpu.stat", "usage_usec 4000000\n");
    t.write("sys/fs/cgroup/app/memory.max", "536870912\n");
    let t2 = t0 + Duration::from_secs(2);
    let tick = s.tick(t2);
    assert!(
        !tick.refreshed(Resource::ContainerLimits),
        "limits have a 10 s time-to-live"
    );
    let snap = *s.snapshot();
    let cpu = snap.cpu.unwrap();
    assert_eq!(cpu.busy_millicores, Some(1000), "200/800 ticks of 4 CPUs");
    assert_eq!(cpu.utilisation, Some(respool_core::Ppm::from_percent(25)));
    let disk = snap.disk.unwrap();
    assert_eq!(disk.ops_per_sec, Some((300 + 100) / 2));
    assert_eq!(disk.read_bytes_per_sec, Some(4000 * 512 / 2));
    assert_eq!(disk.write_bytes_per_sec, Some(8000 * 512 / 2));
    let net = snap.network.unwrap();
    assert_eq!(net.totals.interfaces, 1, "lo is not counted");
    assert_eq!(net.rx_bytes_per_sec, Some(1_000_000));
    assert_eq!(net.tx_bytes_per_sec, Some(500_000));
    assert_eq!(net.rx_packets_per_sec, Some(1000));
    let c = snap.container.unwrap();
    assert_eq!(c.cpu_busy_millicores, Some(1500), "3 s of CPU in 2 s");
    assert_eq!(
        snap.container_limits.unwrap().memory_bytes,
        Some(1 << 30),
        "cached"
    );
    let usage = snap.measured_usage();
    assert_eq!(
        usage.get(Dim::Cpu),
        Some(1500),
        "the cgroup's CPU, not the machine's"
    );
    assert_eq!(usage.get(Dim::Memory), Some((100 << 20) - (4 << 20)));
    assert_eq!(usage.get(Dim::Iops), Some(200));
    assert_eq!(usage.get(Dim::Network), Some(1_500_000));

    // Ten seconds after the first reading the limits are read again.
    let tick = s.tick(t0 + Duration::from_secs(10));
    assert!(tick.refreshed(Resource::ContainerLimits));
    assert_eq!(
        s.snapshot().container_limits.unwrap().memory_bytes,
        Some(512 << 20)
    );
}

#[test]
fn failures_back_off_and_recover_unsupported_stays() {
    let t = machine_tree("failures");
    // No PSI at all: unsupported, asked once.
    for f in ["cpu", "memory", "io"] {
        t.remove(&format!("proc/pressure/{f}"));
    }
    t.write("proc/diskstats", " 8 0 sda 1 2\n");
    let mut s = Sampler::new(ProcfsMonitor::new(&t.root()), MonitorConfig::default()).unwrap();
    let t0 = Instant::now();
    let sec = Duration::from_secs(1);
    s.tick(t0);
    assert_eq!(
        s.snapshot().status(Resource::Pressure),
        ResourceStatus::Unsupported
    );
    assert!(s.last_error(Resource::Pressure).unwrap().is_unsupported());
    assert_eq!(
        s.snapshot().status(Resource::Disk),
        ResourceStatus::Failing { consecutive: 1 }
    );
    let err = s.last_error(Resource::Disk).unwrap().clone();
    match &err {
        SysError::Parse { path, line, .. } => {
            assert!(path.ends_with("proc/diskstats"));
            assert_eq!(*line, 1);
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(
        err.to_string().contains("diskstats:1: unexpected content"),
        "{err}"
    );
    // Fixed, but the next attempt is only due 2 s after the failure.
    t.write("proc/diskstats", &diskstats(1, 2, 3, 4));
    assert!(!s.tick(t0 + sec).refreshed(Resource::Disk));
    assert!(s.tick(t0 + sec * 2).refreshed(Resource::Disk));
    assert_eq!(s.snapshot().status(Resource::Disk), ResourceStatus::Ok);
    assert!(s.last_error(Resource::Disk).is_none());
    // A file that goes bad fails with its path and line, then recovers.
    t.write("proc/meminfo", "MemTotal: lots kB\n");
    assert!(s.tick(t0 + sec * 3).failed(Resource::Memory));
    assert!(matches!(
        s.last_error(Resource::Memory),
        Some(SysError::Parse { line: 1, .. })
    ));
    t.write("proc/meminfo", "MemTotal: 1 kB\nMemFree: 1 kB\n");
    assert!(s.tick(t0 + sec * 5).refreshed(Resource::Memory));
    assert_eq!(s.snapshot().memory.unwrap().total, 1024);
    assert_eq!(
        s.snapshot().status(Resource::Pressure),
        ResourceStatus::Unsupported
    );
}

#[test]
fn no_cgroup_means_container_readings_are_unsupported() {
    let t = machine_tree("nocgroup");
    t.write(
        "proc/self/mountinfo",
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n",
    );
    let mut s = Sampler::new(ProcfsMonitor::new(&t.root()), MonitorConfig::default()).unwrap();
    let tick = s.tick(Instant::now());
    assert!(tick.refreshed(Resource::Cpu));
    assert!(tick.failed(Resource::Container));
    assert_eq!(
        s.snapshot().status(Resource::Container),
        ResourceStatus::Unsupported
    );
    assert_eq!(
        s.snapshot().status(Resource::ContainerLimits),
        ResourceStatus::Unsupported
    );
}

#[test]
fn a_lowered_limit_reaches_subscribers_within_one_interval() {
    let t = machine_tree("subscribe");
    let config = MonitorConfig::default()
        .with_interval(Duration::from_millis(10))
        .with_ttl(Resource::ContainerLimits, Duration::from_millis(10));
    let monitor = Monitor::with_source(ProcfsMonitor::new(&t.root()), config).unwrap();
    let (tx, rx) = mpsc::channel();
    monitor.subscribe(move |s| {
        let limit = s.container_limits.and_then(|l| l.memory_bytes);
        let _ = tx.send((s.seq, limit));
    });
    let first = monitor.wait_for_sample(0, Duration::from_secs(30)).unwrap();
    assert_eq!(first.container_limits.unwrap().memory_bytes, Some(1 << 30));
    // Lower the limit; every sample that *starts* after this write sees it.
    t.write("sys/fs/cgroup/app/memory.max", "268435456\n");
    let seq_at_write = monitor.latest().seq;
    loop {
        let (seq, limit) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        if seq <= seq_at_write + 1 {
            continue; // taken before or during the write
        }
        assert_eq!(
            limit,
            Some(256 << 20),
            "sample {seq} (write after {seq_at_write})"
        );
        break;
    }
    let stats = monitor.stats();
    assert!(stats.samples >= 2);
    assert!(stats.sampler_cpu.is_some() == cfg!(target_os = "linux"));
    monitor.stop();
}

#[cfg(target_os = "linux")]
#[test]
fn real_machine_readings() {
    let proc_stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpus = proc_stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    let monitor =
        Monitor::start(MonitorConfig::default().with_interval(Duration::from_millis(50))).unwrap();
    assert_eq!(monitor.source_name(), "procfs");
    let s = monitor.wait_for_sample(1, Duration::from_secs(30)).unwrap();
    println!("{s:#?}");
    println!("errors: {:?}", monitor.errors());
    println!("measured usage: {}", s.measured_usage());
    let cpu = s.cpu.unwrap();
    assert_eq!(cpu.cpus as usize, cpus);
    let busy = cpu.busy_millicores.expect("a rate from the second sample");
    assert!(busy <= cpu.cpus as u64 * 1000);
    let mem = s.memory.unwrap();
    assert!(mem.available <= mem.total && mem.total > 0);
    assert_eq!(s.status(Resource::Network), ResourceStatus::Ok);
    assert_eq!(s.status(Resource::Disk), ResourceStatus::Ok);
    let has_psi = std::path::Path::new("/proc/pressure/cpu").exists();
    assert_eq!(s.pressure.is_some(), has_psi);
    assert_eq!(
        s.status(Resource::Pressure) == ResourceStatus::Unsupported,
        !has_psi
    );
    let usage = s.measured_usage();
    assert!(usage.get(Dim::Cpu).is_some());
    assert!(usage.get(Dim::Memory).is_some());
    let stats = monitor.stats();
    assert!(stats.sampler_tid.is_some() && stats.sampler_cpu.is_some());
    drop(monitor);
}

/// A deferred monitor (a pool's, issue 21) returns before it reads
/// anything, and one stopped before its first sample never reads: its stop
/// does not wait out the delay.
#[test]
fn a_deferred_monitor_stopped_early_never_samples() {
    let samples = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let monitor = Monitor::start_deferred(
        MonitorConfig::default(),
        "deferred".to_owned(),
        None,
        Duration::from_secs(3600),
    )
    .unwrap();
    let seen = samples.clone();
    monitor.subscribe(move |_| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    assert_eq!(monitor.stats().samples, 0);
    assert_eq!(monitor.latest().seq, 0);
    monitor.stop();
    assert_eq!(samples.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A deferred monitor over the cgroup layout detection found samples like
/// any other once its delay is over.
#[cfg(target_os = "linux")]
#[test]
fn a_deferred_monitor_over_a_detected_layout_samples() {
    let layout = respool_sys::container::MachineCapacity::detect_host().cgroup;
    let monitor = Monitor::start_deferred(
        MonitorConfig::default().with_interval(Duration::from_millis(50)),
        "deferred".to_owned(),
        Some(layout),
        Duration::ZERO,
    )
    .unwrap();
    assert_eq!(monitor.source_name(), "procfs");
    let s = monitor.wait_for_sample(0, Duration::from_secs(30)).unwrap();
    assert!(s.memory.is_some());
    monitor.stop();
}
