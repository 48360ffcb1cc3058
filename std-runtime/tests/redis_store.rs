//! `RedisStore` against a real Redis (Debian's `redis-server`): concurrent
//! learners lose nothing, a Redis that stops (hangs, or dies and comes
//! back) never holds a task up and is caught up with, passwords and ACL
//! users work, and a stored value this schema did not write is reported and
//! left untouched.
//!
//! The tests start their own `redis-server` on a free loopback port (the
//! binary from `$RESPOOL_REDIS_SERVER`, else `redis-server` on `PATH`), in
//! a temporary directory, and stop it at the end; the concurrency test
//! uses the server at `$RESPOOL_TEST_REDIS_URL` instead when it is set.
//! `ci/redis.sh` installs Debian's `redis-server` and starts that one.
//! Without it they say so and pass vacuously, unless
//! `RESPOOL_REQUIRE_REDIS=1` (set by `ci/redis.sh`), which makes that a
//! failure.
#![cfg(feature = "redis")]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{MIB, SAFETY};
use respool::store::{
    ClassRecord, MemoryStore, ProfileSink, ProfileStore, Profiles, RedisConfig, RedisStore, Sample,
    StoreError, StoreStatus,
};
use respool::{Dim, Pool};

/// A `redis-server` of the test's own.
struct Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

fn server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RESPOOL_REDIS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// The server, or `None` (the test then passes vacuously, with a note)
/// when no `redis-server` is installed and `RESPOOL_REQUIRE_REDIS` is unset.
fn server(name: &str, args: &[&str]) -> Option<Server> {
    if server_binary().is_none() {
        assert!(
            std::env::var_os("RESPOOL_REQUIRE_REDIS").is_none(),
            "RESPOOL_REQUIRE_REDIS is set but no redis-server was found"
        );
        eprintln!("skipped: no redis-server (install Debian's redis-server, or run ci/redis.sh)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("respool-redis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = Server {
        child: None,
        port: 0,
        dir,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    };
    // A port just seen free can be taken before the server binds it: try
    // a few.
    for _ in 0..5 {
        s.port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if s.start() {
            return Some(s);
        }
    }
    panic!("redis-server did not start on 5 ports (see its log above)");
}

impl Server {
    /// Starts it on its port and waits until it says it accepts connections
    /// (`{port}` in its arguments is the port).
    fn start(&mut self) -> bool {
        let port = self.port.to_string();
        let mut child = Command::new(server_binary().unwrap())
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--logfile", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(self.args.iter().map(|a| a.replace("{port}", &port)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = false;
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if !ready && line.contains("Ready to accept connections") {
                    ready = true;
                    let _ = tx.send(true);
                }
                if line.contains("# ") && !ready {
                    eprintln!("redis-server: {line}");
                }
            }
            let _ = tx.send(false);
        });
        let ready = rx.recv_timeout(SAFETY).unwrap_or(false);
        if ready {
            self.child = Some(child);
        } else {
            let _ = child.kill();
            let _ = child.wait();
        }
        ready
    }

    fn url(&self, userinfo: &str) -> String {
        format!("redis://{userinfo}127.0.0.1:{}/", self.port)
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `redis-cli` on this server; its output, trimmed.
    fn cli(&self, auth: Option<&str>, args: &[&str]) -> String {
        let mut cmd = Command::new(self.cli_binary());
        cmd.args(["-p", &self.port.to_string(), "--no-auth-warning"]);
        if let Some(a) = auth {
            cmd.args(["-a", a]);
        }
        let out = cmd.args(args).output().expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn cli_binary(&self) -> PathBuf {
        server_binary()
            .and_then(|p| p.parent().map(|d| d.join("redis-cli")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("redis-cli"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(namespace: &str) -> RedisConfig {
    RedisConfig {
        namespace: namespace.into(),
        write_every: Duration::from_millis(2),
        refresh_every: Duration::from_secs(3600),
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(200),
        first_read_wait: Duration::from_secs(10),
        ..RedisConfig::default()
    }
}

/// A store that keeps a copy of every sample the pool hands it (to know
/// what one learner saw, apart from what it read from the others).
#[derive(Debug)]
struct Tee {
    inner: RedisStore,
    seen: Arc<Mutex<Vec<Sample>>>,
}

impl ProfileStore for Tee {
    fn load(&self) -> Result<Option<Profiles>, StoreError> {
        self.inner.load()
    }
    fn save(&self, p: &Profiles) -> Result<(), StoreError> {
        self.inner.save(p)
    }
    fn record(&self, class: &str, sample: &Sample) {
        self.seen.lock().unwrap().push(sample.clone());
        self.inner.record(class, sample);
    }
    fn watch(&self, apply: ProfileSink) {
        self.inner.watch(apply);
    }
    fn status(&self) -> Option<StoreStatus> {
        self.inner.status().into()
    }
}

const CLASS: &str = "shared-class";
const PER_CHILD: u64 = 60;
const CHILDREN: u64 = 4;

fn memory_of(child: u64, i: u64) -> u64 {
    // Close enough to each other for a confident prediction.
    (64 + (child * 37 + i * 11) % 8) * MIB
}

/// One learner process (run by `four_processes_learn_one_class_without_losing_a_sample`).
#[test]
#[ignore = "a child process of another test"]
fn child_learner() {
    let (Ok(url), Ok(ns), Ok(k), Ok(out)) = (
        std::env::var("RESPOOL_CHILD_URL"),
        std::env::var("RESPOOL_CHILD_NS"),
        std::env::var("RESPOOL_CHILD_INDEX"),
        std::env::var("RESPOOL_CHILD_OUT"),
    ) else {
        return;
    };
    let k: u64 = k.parse().unwrap();
    let store = RedisStore::open(&url, config(&ns)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pool = Pool::builder()
        .workers(2)
        .memory("4GiB")
        .tasks_report_memory(true)
        .profile_store(Tee {
            inner: store.clone(),
            seen: seen.clone(),
        })
        .build()
        .unwrap();
    let handles: Vec<_> = (0..PER_CHILD)
        .map(|i| {
            pool.task()
                .class(CLASS)
                .spawn(move |ctx| ctx.report_usage(Dim::Memory, memory_of(k, i)))
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    pool.shutdown();
    assert!(pool.save_profiles().unwrap(), "everything written");
    let st = store.status();
    assert_eq!(
        (st.pending, st.written, st.dropped),
        (0, PER_CHILD, 0),
        "{st}"
    );
    let mine = Profiles::new(vec![ClassRecord {
        class: CLASS.into(),
        runs: PER_CHILD,
        samples: seen.lock().unwrap().clone(),
    }]);
    std::fs::write(out, mine.to_json().unwrap()).unwrap();
}

/// Samples in time order, then by content (the order a `RedisStore` hands
/// them to the pool in).
fn sorted(mut samples: Vec<Sample>) -> Vec<Sample> {
    samples.sort_by_key(|s| (s.at_unix_ms, serde_json::to_string(s).unwrap()));
    samples
}

fn class_of<'a>(p: &'a Profiles, class: &str) -> &'a ClassRecord {
    p.classes
        .iter()
        .find(|c| c.class == class)
        .expect("class stored")
}

fn expected_memory(store: impl ProfileStore + 'static) -> u64 {
    let pool = Pool::builder()
        .workers(1)
        .memory("4GiB")
        .profile_store(store)
        .build()
        .unwrap();
    let snap = pool.snapshot();
    let class = snap.classes.iter().find(|c| c.class == CLASS).unwrap();
    class.expected.get(Dim::Memory).expect("memory learned")
}

#[test]
fn four_processes_learn_one_class_without_losing_a_sample() {
    // The server ci/redis.sh started, else one of the test's own.
    let own;
    let url = match std::env::var("RESPOOL_TEST_REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let Some(s) = server("concurrent", &[]) else {
                return;
            };
            own = s;
            own.url("")
        }
    };
    let ns = format!("concurrent-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("respool-redis-children-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<(Child, PathBuf)> = (0..CHILDREN)
        .map(|k| {
            let out = dir.join(format!("child-{k}.json"));
            let child = Command::new(&exe)
                .args(["--exact", "child_learner", "--ignored", "--nocapture"])
                .env("RESPOOL_CHILD_URL", &url)
                .env("RESPOOL_CHILD_NS", &ns)
                .env("RESPOOL_CHILD_INDEX", k.to_string())
                .env("RESPOOL_CHILD_OUT", &out)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let mut all = Vec::new();
    for (mut child, out) in children {
        assert!(child.wait().unwrap().success(), "a learner failed");
        let mine = Profiles::from_json(&std::fs::read_to_string(&out).unwrap(), "child").unwrap();
        assert_eq!(class_of(&mine, CLASS).samples.len() as u64, PER_CHILD);
        all.extend(class_of(&mine, CLASS).samples.iter().cloned());
    }
    // What Redis holds: every sample of every learner, each once, and
    // every run counted.
    std::fs::remove_dir_all(&dir).unwrap();
    let reader = RedisStore::open(&url, config(&ns)).unwrap();
    let shared = reader.load().unwrap().expect("profiles stored");
    let stored = class_of(&shared, CLASS);
    assert_eq!(stored.runs, CHILDREN * PER_CHILD, "runs counted");
    assert_eq!(
        stored.samples.len() as u64,
        CHILDREN * PER_CHILD,
        "samples kept"
    );
    assert_eq!(
        sorted(stored.samples.clone()),
        sorted(all.clone()),
        "no sample lost or changed"
    );
    // What a pool learns from them is what one process that saw them all,
    // in time order, learns (the same prediction, exactly: the predictors
    // are integer arithmetic over the same samples in the same order).
    let one = MemoryStore::new();
    one.save(&Profiles::new(vec![ClassRecord {
        class: CLASS.into(),
        runs: CHILDREN * PER_CHILD,
        samples: sorted(all),
    }]))
    .unwrap();
    let (from_redis, from_one) = (expected_memory(reader), expected_memory(one));
    assert_eq!(from_redis, from_one, "shared vs one process");
}

fn run_tasks(pool: &Pool, n: u64, mem: u64) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        pool.task()
            .class("steady")
            .spawn(move |ctx| ctx.report_usage(Dim::Memory, mem))
            .unwrap()
            .join()
            .expect("no task fails");
        slowest = slowest.max(t.elapsed());
    }
    slowest
}

/// One worker and 1 GiB, learning through `store`.
fn small_pool(store: &RedisStore) -> Pool {
    Pool::builder()
        .workers(1)
        .memory("1GiB")
        .tasks_report_memory(true)
        .profile_store(store.clone())
        .build()
        .unwrap()
}

/// A pool on `store` runs three tasks of `class` that each report `mem`,
/// shuts down and saves: what saving said, and what the pool learned.
fn learn_three(store: &RedisStore, class: &str, mem: u64) -> (Result<bool, StoreError>, Profiles) {
    let pool = small_pool(store);
    for _ in 0..3 {
        pool.task()
            .class(class)
            .spawn(move |ctx| ctx.report_usage(Dim::Memory, mem))
            .unwrap()
            .join()
            .unwrap();
    }
    pool.shutdown();
    (pool.save_profiles(), pool.profiles())
}

fn runs_in(p: &Profiles, class: &str) -> u64 {
    p.classes
        .iter()
        .find(|c| c.class == class)
        .map_or(0, |c| c.runs)
}

#[test]
fn a_redis_that_hangs_or_restarts_never_holds_a_task_up_and_is_caught_up() {
    // Append-only, synced at every write: a killed server comes back with
    // what it acknowledged.
    let Some(mut server) = server(
        "restart",
        &["--appendonly", "yes", "--appendfsync", "always"],
    ) else {
        return;
    };
    let io_timeout = Duration::from_secs(3);
    let store = RedisStore::open(
        &server.url(""),
        RedisConfig {
            timeout: io_timeout,
            refresh_every: Duration::from_millis(20),
            ..config("restart")
        },
    )
    .unwrap();
    let pool = Pool::builder()
        .workers(2)
        .memory("4GiB")
        .tasks_report_memory(true)
        .profile_store(store.clone())
        .build()
        .unwrap();
    run_tasks(&pool, 20, 10 * MIB);
    store.flush().unwrap();
    assert!(pool.snapshot().store.unwrap().reachable);

    // Hung: the server takes connections but never answers. The store's
    // thread waits out its 3 s timeout; tasks do not.
    server.signal("-STOP");
    let slowest = run_tasks(&pool, 20, 10 * MIB);
    assert!(
        slowest < io_timeout / 2,
        "a task took {slowest:?} while Redis hung (the store's timeout is {io_timeout:?})"
    );
    // Meanwhile the store's thread was stuck: its own attempt times out.
    let e = store.flush().unwrap_err().to_string();
    assert!(
        e.contains("timed out") || e.contains("Resource temporarily"),
        "{e}"
    );
    assert_eq!(runs_in(&pool.profiles(), "steady"), 40, "learned locally");
    server.signal("-CONT");

    // Dead: learning goes on locally, writes are queued.
    server.kill();
    let slowest = run_tasks(&pool, 20, 12 * MIB);
    assert!(
        slowest < io_timeout / 2,
        "a task took {slowest:?} while Redis was down"
    );
    assert!(store.flush().is_err(), "Redis is down");
    assert_eq!(runs_in(&pool.profiles(), "steady"), 60, "learned locally");
    let snap = pool.snapshot();
    let st = snap.store.as_ref().unwrap();
    assert!(
        !st.reachable && st.pending >= 20 && st.failures >= 1,
        "{st}"
    );
    assert!(snap.to_string().contains("UNREACHABLE"), "{snap}");

    // Back (same port, same data): the queue is merged, and the shared
    // profile holds every run.
    assert!(server.start(), "redis-server restarts");
    store.flush().unwrap();
    store.refresh().unwrap();
    let st = store.status();
    assert!(st.reachable && st.pending == 0 && st.dropped == 0, "{st}");
    let reader = RedisStore::open(&server.url(""), config("restart")).unwrap();
    let shared = reader.load().unwrap().unwrap();
    assert_eq!(runs_in(&shared, "steady"), 60, "every run merged once");
    assert_eq!(class_of(&shared, "steady").samples.len(), 60);
    assert_eq!(runs_in(&pool.profiles(), "steady"), 60);
    pool.shutdown();
    let snap = pool.snapshot();
    assert_eq!((snap.completed, snap.panicked), (60, 0), "no task failed");
}

#[test]
fn passwords_and_acl_users() {
    let Some(server) = server("auth", &["--requirepass", "s3cret-pw"]) else {
        return;
    };
    let learn = |store: &RedisStore, class: &str| learn_three(store, class, 5 * MIB);
    // The right password.
    let good = RedisStore::open(&server.url(":s3cret-pw@"), config("auth")).unwrap();
    assert!(learn(&good, "c").0.is_ok());
    good.refresh().unwrap(); // reads are cached
    assert_eq!(runs_in(&good.load().unwrap().unwrap(), "c"), 3);
    assert!(good.status().store.contains(":***@"), "{}", good.status());

    // A wrong one, and none: refused, said without the password, and
    // learning goes on locally.
    for userinfo in [":wrong-pw@", ""] {
        let bad = RedisStore::open(&server.url(userinfo), config("auth")).unwrap();
        let (saved, local) = learn(&bad, "c");
        let e = saved.unwrap_err().to_string();
        assert!(!e.contains("wrong-pw"), "{e}");
        assert!(e.contains("AUTH") || e.contains("auth"), "{e}");
        assert_eq!(runs_in(&local, "c"), 3, "learned locally");
        assert!(!bad.status().reachable);
    }

    // An ACL user limited to its namespace's keys.
    let admin = Some("s3cret-pw");
    server.cli(
        admin,
        &[
            "ACL",
            "SETUSER",
            "fleet",
            "on",
            ">fleet-pw",
            "~fleet:*",
            "+@all",
        ],
    );
    let fleet = RedisStore::open(&server.url("fleet:fleet-pw@"), config("fleet")).unwrap();
    assert!(learn(&fleet, "c").0.is_ok());
    fleet.refresh().unwrap();
    assert_eq!(runs_in(&fleet.load().unwrap().unwrap(), "c"), 3);
    let outside = RedisStore::open(&server.url("fleet:fleet-pw@"), config("other")).unwrap();
    let e = learn(&outside, "c").0.unwrap_err().to_string();
    assert!(e.contains("NOPERM") || e.contains("permission"), "{e}");
}

#[test]
fn corrupt_and_newer_values_are_reported_and_left_untouched() {
    let Some(server) = server("corrupt", &[]) else {
        return;
    };
    let cli = |args: &[&str]| server.cli(None, args);
    let far = "99999999999999";
    // A string where a class hash belongs; a class of a newer schema; a
    // sample that is not JSON.
    cli(&["SET", "bad:v1:class:string", "garbage"]);
    cli(&["HSET", "bad:v1:class:future", "schema", "2", "runs", "7"]);
    cli(&["HSET", "bad:v1:class:member", "schema", "1", "runs", "1"]);
    cli(&["ZADD", "bad:v1:samples:member", "1", "not json"]);
    for c in ["string", "future", "member"] {
        cli(&["ZADD", "bad:v1:classes", far, c]);
    }
    let store = RedisStore::open(&server.url(""), config("bad")).unwrap();
    assert_eq!(store.load().unwrap(), None, "nothing usable");
    let problems: BTreeMap<String, String> = store.status().problems.into_iter().collect();
    assert!(problems["string"].contains("corrupt"), "{problems:?}");
    assert!(problems["future"].contains("newer"), "{problems:?}");
    assert!(
        problems["member"].contains("does not parse"),
        "{problems:?}"
    );

    // Learning those classes goes on locally; the writes are refused.
    let pool = small_pool(&store);
    for class in ["string", "future", "member", "fine"] {
        pool.task()
            .class(class)
            .spawn(|ctx| ctx.report_usage(Dim::Memory, MIB))
            .unwrap()
            .join()
            .unwrap();
    }
    store.flush().unwrap();
    let st = store.status();
    assert_eq!((st.rejected, st.written), (3, 1), "{st}");
    assert_eq!(cli(&["GET", "bad:v1:class:string"]), "garbage");
    assert_eq!(cli(&["HGET", "bad:v1:class:future", "runs"]), "7");
    assert_eq!(cli(&["ZCARD", "bad:v1:samples:future"]), "0");
    assert_eq!(
        cli(&["ZRANGE", "bad:v1:samples:member", "0", "-1"]),
        "not json"
    );
    assert!(
        pool.snapshot().to_string().contains("\"future\""),
        "problems shown"
    );
    // Keys carry the expiry.
    let ttl: i64 = cli(&["PTTL", "bad:v1:class:fine"]).parse().unwrap();
    assert!(ttl > 0, "expires: {ttl}");
}

/// `openssl` with `args` in `dir`.
#[cfg(feature = "redis-tls")]
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

#[test]
#[cfg(feature = "redis-tls")]
fn tls_with_a_certificate_authority_of_ones_own() {
    // A CA, and a certificate for 127.0.0.1 signed by it.
    let certs = std::env::temp_dir().join(format!("respool-redis-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&certs);
    std::fs::create_dir_all(&certs).unwrap();
    let days = ["-days", "2"];
    openssl(
        &certs,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=respool test CA",
            days[0],
            days[1],
        ],
    );
    openssl(
        &certs,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(certs.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &certs,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-extfile",
            "ext",
            days[0],
            days[1],
        ],
    );
    let path = |f: &str| certs.join(f).to_str().unwrap().to_owned();
    let (crt, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    // TLS only: the plain port is off.
    let Some(server) = server(
        "tls",
        &[
            "--port",
            "0",
            "--tls-port",
            "{port}",
            "--tls-cert-file",
            &crt,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    ) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}/", server.port);
    let learn = |store: &RedisStore| learn_three(store, "tls", 3 * MIB);
    let trusted = RedisStore::open(
        &url,
        RedisConfig {
            tls_root_ca: Some(certs.join("ca.crt")),
            ..config("tls")
        },
    )
    .unwrap();
    assert!(learn(&trusted).0.is_ok(), "{}", trusted.status());
    trusted.refresh().unwrap();
    assert_eq!(runs_in(&trusted.load().unwrap().unwrap(), "tls"), 3);
    // Without the CA, the server's certificate is refused: learning goes
    // on locally, and the store says why.
    let untrusted = RedisStore::open(&url, config("tls")).unwrap();
    let (saved, local) = learn(&untrusted);
    assert!(saved.is_err(), "an unknown authority was trusted");
    assert_eq!(runs_in(&local, "tls"), 3);
    assert!(!untrusted.status().reachable);
    // A plain connection to the TLS port gets nowhere either.
    let plain = RedisStore::open(
        &format!("redis://127.0.0.1:{}/", server.port),
        config("tls"),
    )
    .unwrap();
    assert!(learn(&plain).0.is_err());
    std::fs::remove_dir_all(&certs).unwrap();
}

#[test]
fn classes_not_written_for_expire_after_are_forgotten() {
    let Some(server) = server("expiry", &[]) else {
        return;
    };
    let cfg = RedisConfig {
        expire_after: Duration::from_millis(300),
        ..config("expiry")
    };
    let store = RedisStore::open(&server.url(""), cfg.clone()).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let doc = format!(
        r#"{{"format":"respool-profiles","version":1,"saved_at_unix_ms":0,"classes":[
            {{"class":"brief","runs":1,"samples":[{{"at_unix_ms":{now_ms},"usage":{{"memory":1}}}}]}}]}}"#
    );
    store.merge(&Profiles::from_json(&doc, "test").unwrap());
    store.flush().unwrap();
    let both = ["EXISTS", "expiry:v1:class:brief", "expiry:v1:samples:brief"];
    assert_eq!(server.cli(None, &both), "2", "written");
    // Redis expires the keys itself; wait for it (the deadline only fails).
    let start = Instant::now();
    while server.cli(None, &both) != "0" {
        assert!(start.elapsed() < SAFETY, "the class never expired");
        std::thread::yield_now();
    }
    let fresh = RedisStore::open(&server.url(""), cfg).unwrap();
    assert_eq!(fresh.load().unwrap(), None, "forgotten");
}
