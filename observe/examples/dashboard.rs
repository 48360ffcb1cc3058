//! A mixed workload with the live dashboard and Prometheus metrics on:
//! learned and declared classes, tasks that wait for memory, tasks refused
//! because they could never fit, now and then a slow one (the slow-task
//! detector reports it) and a panic. `/metrics` on the same server serves
//! the Prometheus exposition. (The per-task cost of all this is measured by
//! `cargo run --release -p respool-benches --bin observe_cost`.)
//!
//! ```text
//! cargo run -p respool-observe --features dashboard --example dashboard -- [options]
//!   --seconds N      submit for N seconds, then finish and exit (default 30)
//!   --forever        keep the pool busy until killed
//!   --seed N         the workload's random seed (default 1): the same tasks each run
//!   --refresh-ms N   the page's refresh (default 1000)
//!   --port N         listen on 127.0.0.1:N (default: a free port)
//!   --measure-idle N no workload: an idle pool with one feed open; prints the
//!                    process's CPU time over N refreshes, then exits
//! ```
//!
//! It prints `respool dashboard: http://127.0.0.1:PORT/?token=...` on
//! stderr; open it in a browser.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use respool::alloc::TrackingAllocator;
use respool::{Pool, Resources};
use respool_observe::Observability;
use respool_observe::dashboard::Dashboard;
use respool_observe::slow::{SlowConfig, Threshold};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

struct Args {
    seconds: u64,
    forever: bool,
    seed: u64,
    refresh: Duration,
    port: u16,
    measure_idle: Option<u32>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 30,
        forever: false,
        seed: 1,
        refresh: Duration::from_secs(1),
        port: 0,
        measure_idle: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match flag.as_str() {
            "--seconds" => a.seconds = num("--seconds")?,
            "--forever" => a.forever = true,
            "--seed" => a.seed = num("--seed")?,
            "--refresh-ms" => a.refresh = Duration::from_millis(num("--refresh-ms")?.max(10)),
            "--port" => {
                a.port = u16::try_from(num("--port")?).map_err(|_| "--port: 0 to 65535")?;
            }
            "--measure-idle" => {
                a.measure_idle =
                    Some(u32::try_from(num("--measure-idle")?).map_err(|_| "too many")?);
            }
            "-h" | "--help" => {
                return Err("see the comment at the top of observe/examples/dashboard.rs".into());
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// Busy work for about `d`, touching `bytes` of memory.
fn work(d: Duration, bytes: usize, seed: u64) -> u64 {
    let start = Instant::now();
    let mut v = vec![0u8; bytes];
    let mut x = seed | 1;
    let mut i = 0;
    while start.elapsed() < d {
        // Some computing, mostly sleeping: many tasks, few cores.
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        if !v.is_empty() {
            v[i % bytes] = x as u8;
            i += 4096;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    x ^ u64::from(v.first().copied().unwrap_or(0))
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dashboard example: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&a) {
        eprintln!("dashboard example: {e}");
        std::process::exit(1);
    }
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // Metrics, slow tasks and the live view, for one pool. Slow: a run past
    // 250% of its class's median once the class has ten runs (GNU
    // parallel's `--timeout 250%`), a waiter past 5 s.
    let mut slow = SlowConfig::default();
    slow.threshold = Threshold::percent_of_median(250);
    slow.min_runs = 10;
    slow.queue_threshold = Duration::from_secs(5);
    let obs = Observability::new().with_slow(slow)?.with_live();
    let mib = 1u64 << 20;
    let pool = Arc::new(
        Pool::builder()
            .workers(4)
            .capacity(Resources::NONE.with_saturating(respool::Dim::Memory, 256 * mib))
            .cpu("4")
            .headroom(Resources::NONE)
            .observer(obs.observer())
            .build()?,
    );
    obs.attach(&pool);
    let dashboard = obs
        .dashboard()
        .bind(([127, 0, 0, 1], a.port).into())
        .refresh(a.refresh)
        .start()?;

    if let Some(n) = a.measure_idle {
        return measure_idle(&dashboard, n, a.refresh);
    }

    // Quiet the panics this workload causes on purpose.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let quiet = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|s| s.starts_with("example panic"));
        if !quiet {
            default_hook(info);
        }
    }));

    let mut rng = fastrand::Rng::with_seed(a.seed);
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let outstanding = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut n = 0u64;
    while a.forever || Instant::now() < end {
        n += 1;
        // At most 24 tasks submitted and not finished.
        while outstanding.load(Ordering::Relaxed) >= 24 && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let pick = rng.u32(0..100);
        let mut ms = |lo, hi| Duration::from_millis(rng.u64(lo..hi));
        let (class, declared, bytes, d): (Option<&str>, Option<&str>, usize, Duration) = match pick
        {
            0..=34 => (Some("thumbnail"), None, 6 << 20, ms(80, 200)),
            35..=54 => (Some("encode"), Some("64MiB"), 48 << 20, ms(400, 900)),
            55..=74 => (Some("index"), None, 20 << 20, ms(150, 400)),
            75..=89 => (None, Some("2MiB"), 1 << 20, ms(20, 80)),
            90..=95 => (Some("encode"), Some("64MiB"), 48 << 20, ms(1800, 2600)),
            96..=97 => (Some("bulk-load"), Some("1GiB"), 0, ms(10, 20)),
            _ => (Some("flaky"), Some("4MiB"), 1 << 20, ms(20, 60)),
        };
        let panics = class == Some("flaky") && n % 2 == 0;
        let mut task = pool.task();
        if let Some(c) = class {
            task = task.class(c);
        }
        if let Some(m) = declared {
            task = task.memory(m);
        }
        outstanding.fetch_add(1, Ordering::Relaxed);
        let done = outstanding.clone();
        let submitted = task.execute(move |_| {
            struct Done(Arc<AtomicU64>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::Relaxed);
                }
            }
            let _done = Done(done);
            assert!(!panics, "example panic: a flaky task");
            std::hint::black_box(work(d, bytes, n));
        });
        if submitted.is_err() {
            // Refused (it could never fit): the dashboard lists it.
            outstanding.fetch_sub(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(rng.u64(20..90)));
    }
    stop.store(true, Ordering::Relaxed);
    pool.shutdown();
    println!("{}", pool.snapshot());
    // One more refresh so a watching page sees the end.
    std::thread::sleep(a.refresh);
    dashboard.shutdown();
    Ok(())
}

/// CPU time of the whole process so far, in nanoseconds: the sum over its
/// live threads of `/proc/self/task/*/schedstat` (time on CPU, ns).
fn cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let path = t.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// An idle pool, the dashboard, one feed open (read by a thread here, so
/// its cost is counted too): the process's CPU time over `n` refreshes.
fn measure_idle(
    d: &Dashboard,
    n: u32,
    refresh: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    // First the same time with nothing open: the pool's and the server's
    // own idle cost (threads blocked in accept and on the pool's queue).
    let cpu0 = cpu_ns().ok_or("no /proc/self/task/*/schedstat here")?;
    let t0 = Instant::now();
    std::thread::sleep(refresh * n);
    let quiet = cpu_ns().ok_or("no schedstat")?.saturating_sub(cpu0);
    println!(
        "idle pool, nothing open: {:.1} s, process CPU {:.3} ms",
        t0.elapsed().as_secs_f64(),
        quiet as f64 / 1e6
    );
    let addr = d.local_addr();
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET /events?token={} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        d.token(),
        addr.port()
    )?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(s);
        let mut line = String::new();
        while lines.read_line(&mut line).is_ok_and(|k| k > 0) {
            if line.starts_with("data: ") && tx.send(line.len()).is_err() {
                return;
            }
            line.clear();
        }
    });
    rx.recv()?; // the first document: the feed is open
    let cpu0 = cpu_ns().ok_or("no /proc/self/task/*/schedstat here")?;
    let t0 = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += rx.recv()?;
    }
    let cpu = cpu_ns().ok_or("no schedstat")?.saturating_sub(cpu0);
    let wall = t0.elapsed();
    println!(
        "idle pool, one feed open: {n} refreshes in {:.1} s, {bytes} bytes pushed; \
         process CPU {:.3} ms ({:.1} us per refresh, {:.4}% of one core)",
        wall.as_secs_f64(),
        cpu as f64 / 1e6,
        cpu as f64 / 1e3 / f64::from(n),
        cpu as f64 / wall.as_nanos() as f64 * 100.0
    );
    Ok(())
}
