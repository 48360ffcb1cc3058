//! `RedisStore`: learned profiles shared by many processes through Redis
//! (cargo feature `redis`); see its documentation.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{ClassRecord, ProfileSink, ProfileStore, Profiles, Sample, StoreError, StoreStatus};
use crate::sync::lock;

/// The key schema version this build writes and the newest it reads.
pub const SCHEMA: u32 = 1;

/// How a [`RedisStore`] talks to Redis.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use respool::store::RedisConfig;
/// let config = RedisConfig {
///     namespace: "thumbnails".into(),
///     expire_after: Duration::from_secs(7 * 24 * 3600),
///     ..RedisConfig::default()
/// };
/// assert_eq!(config.refresh_every, Duration::from_secs(10));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// The first part of every key (default `respool`): processes that
    /// should share profiles use the same one.
    pub namespace: String,
    /// A class not written for this long is forgotten (default 30 days).
    pub expire_after: Duration,
    /// How often the shared profiles are read again (default 10 s).
    pub refresh_every: Duration,
    /// How long learned samples are gathered before they are written
    /// together (default 1 s).
    pub write_every: Duration,
    /// Samples kept per class in Redis, the newest (default 256, as
    /// [`LearningConfig::history`](crate::learn::LearningConfig::history)).
    pub history: usize,
    /// Samples older than this are trimmed from Redis (default 30 days).
    pub max_age: Duration,
    /// Connect, read and write timeout of one attempt (default 1 s).
    pub timeout: Duration,
    /// How long [`ProfileStore::load`] (at pool build) waits for the first
    /// read before it goes on without it (default 2 s).
    pub first_read_wait: Duration,
    /// The first delay before a failed write is retried (default 100 ms);
    /// it doubles at each failure.
    pub retry_min: Duration,
    /// The longest delay between retries (default 30 s).
    pub retry_max: Duration,
    /// Samples kept while Redis cannot be reached (default 100 000); past
    /// that the oldest are dropped and counted in [`StoreStatus::dropped`].
    pub max_pending: usize,
    /// A PEM file of the certificate authority to trust for a `rediss://`
    /// server, besides the system's (default none). Needs the `redis-tls`
    /// feature.
    pub tls_root_ca: Option<std::path::PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            namespace: "respool".into(),
            expire_after: Duration::from_secs(30 * 24 * 3600),
            refresh_every: Duration::from_secs(10),
            write_every: Duration::from_secs(1),
            history: 256,
            max_age: Duration::from_secs(30 * 24 * 3600),
            timeout: Duration::from_secs(1),
            first_read_wait: Duration::from_secs(2),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            max_pending: 100_000,
            tls_root_ca: None,
        }
    }
}

/// A [`ProfileStore`] shared by every process that opens the same Redis
/// and namespace. Cloning gives another handle on the same store (one
/// thread, one queue); the thread ends when the last handle is dropped,
/// after one last attempt to write what is queued.
///
/// # Examples
///
/// ```no_run
/// use respool::Pool;
/// use respool::store::{RedisConfig, RedisStore};
/// let store = RedisStore::open("redis://127.0.0.1:6379/", RedisConfig::default())?;
/// let pool = Pool::builder().memory("4GiB").profile_store(store.clone()).build()?;
/// pool.task().class("thumbnail").spawn(|_| ())?.join()?;
/// pool.shutdown(); // writes what is queued (Pool::save_profiles returns its error)
/// println!("{}", store.status());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # What is stored, and why samples
///
/// Each class is kept as the same bounded, time-limited history of
/// measured samples that [`FileStore`](super::FileStore) writes, plus its
/// run count. The learner rebuilds its predictors from those samples, in
/// time order (see [`crate::learn`]): an ensemble whose members are an
/// exponentially smoothed mean, a regression on the size hint and the
/// VPA-style decaying histogram, and which follows whichever member has
/// been most accurate *in sample order*. Histogram bucket weights and
/// moments merge by addition, but the smoothed mean and the ensemble's
/// accuracy record do not: two summaries merged would be a predictor no
/// process ever computed. Merging the samples themselves gives every
/// process, after a read, exactly the predictor of one process that saw all
/// of them in time order (samples of the same millisecond ordered by their
/// content, the same way everywhere), which is the property the tests
/// check. The
/// cost is bounded by the history cap (256 samples per class by default, as
/// locally).
///
/// A merge must lose nothing when processes write at once, and count
/// nothing twice when a write is retried after a reply was lost. Both are
/// the server's job, in one Lua script per class and batch (a script runs
/// atomically): each sample carries an id unique to its process and
/// sequence (`ZADD` of the same member is idempotent), and each process
/// numbers its batches: a batch whose number the class has already seen
/// from that process is a retry that already landed, and is skipped whole
/// (run count included).
///
/// # Key schema (version 1)
///
/// Under a namespace (default `respool`), every key carries the schema
/// version, so that a later schema lives beside this one instead of
/// overwriting it:
///
/// | key | type | content |
/// |-----|------|---------|
/// | `<ns>:v1:class:<class>` | hash | `schema` (1), `class`, `runs`, `ooms`, `updated_ms` |
/// | `<ns>:v1:samples:<class>` | sorted set | one member per sample: the [`Sample`] as JSON plus its `"id"`; score: its time in ms |
/// | `<ns>:v1:classes` | sorted set | class names, scored by their last write (ms) |
/// | `<ns>:v1:writer:<id>` | hash | per class, the last batch number this process merged |
///
/// Every key expires after [`RedisConfig::expire_after`] without a write
/// (default 30 days); the history is trimmed at each write to the newest
/// [`RedisConfig::history`] samples no older than [`RedisConfig::max_age`].
/// A class whose hash or sample set is not what this schema wrote (a
/// foreign key, a `schema` above 1, a member that is not a sample) is
/// reported in [`StoreStatus::problems`] and a warning, left untouched by
/// writes (the script checks before it changes anything), and learned
/// locally only.
///
/// Keys of one class are not in one hash slot: Redis Cluster is not
/// supported (a single primary, with replicas or Sentinel in front, is).
///
/// # No task waits on Redis
///
/// All I/O happens on the store's own thread. A finished task's sample is
/// learned locally, then queued for that thread ([`ProfileStore::record`]:
/// a channel send). The thread writes the queue in batches every
/// [`RedisConfig::write_every`], and reads every class again every
/// [`RedisConfig::refresh_every`], replacing the pool's profiles with the
/// shared ones (plus what it has not written yet). When Redis cannot be
/// reached, learning goes on locally, the queue keeps up to
/// [`RedisConfig::max_pending`] samples, writes are retried with
/// exponential backoff (from [`RedisConfig::retry_min`] to
/// [`RedisConfig::retry_max`]) and merged when Redis is back; the pool's
/// [snapshot](crate::PoolSnapshot) shows it in its `store` field, and
/// `respool-observe` exports it as metrics. Building a pool waits for the
/// first read at most [`RedisConfig::first_read_wait`], then goes on with
/// what it has.
///
/// # Passwords, ACL users, TLS
///
/// The URL carries them, as for every Redis client:
/// `redis://:password@host:6379/0` for `requirepass`,
/// `redis://user:password@host:6379/0` for an ACL user (who needs
/// `~<ns>:*` keys, `EVALSHA`, `EVAL`, `SCRIPT`, `ZRANGEBYSCORE` and `PING`;
/// `+@all ~respool:*` is the simple grant). Passwords never appear in the
/// status, errors or logs. `rediss://host:6380/` (TLS) needs the
/// `redis-tls` feature (the `redis` crate's `tls-native-tls`: OpenSSL on
/// Linux), which `redis` leaves off so as not to pull a TLS stack into
/// every build; the server's certificate is checked against the system's
/// authorities and [`RedisConfig::tls_root_ca`]. (The `redis` crate's
/// `tls-rustls` feature, enabled in your own `Cargo.toml`, also gives
/// `rediss://` with the system's authorities.)
#[derive(Clone)]
pub struct RedisStore {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    config: Arc<RedisConfig>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("store", &lock(&self.shared.state).status.store)
            .field("namespace", &self.config.namespace)
            .finish_non_exhaustive()
    }
}

enum Msg {
    /// A sample learned by the pool (or merged by hand).
    Sample(String, Sample),
    /// Runs to add to a class beyond its samples (a merged document whose
    /// history was capped).
    Runs(String, u64),
    /// Write what is queued now, and say how it went.
    Flush(Sender<Result<(), String>>),
    /// Read now, and say how it went.
    Refresh(Sender<Result<(), String>>),
}

struct State {
    status: StoreStatus,
    /// The last read, with what was not written yet.
    cache: Option<Profiles>,
    /// The first read was tried (successfully or not).
    first_read: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    sink: Mutex<Option<ProfileSink>>,
}

impl RedisStore {
    /// Opens a store on the Redis at `url` (`redis://[user][:password@]host[:port][/db]`,
    /// or `rediss://` with a TLS feature of the `redis` crate, see the
    /// [`RedisStore`] documentation) and starts its thread. Redis is not
    /// contacted here: it may be down, and come up later.
    ///
    /// # Errors
    ///
    /// [`StoreError::Remote`] for a URL that does not parse, a namespace
    /// that is empty or holds a space, a `history` or `max_pending` of
    /// zero, a zero `timeout`, or a thread that could not be started.
    pub fn open(url: &str, config: RedisConfig) -> Result<RedisStore, StoreError> {
        let shown = redact(url);
        let bad = |message: String| StoreError::Remote {
            store: shown.clone(),
            message,
        };
        if config.namespace.is_empty() || config.namespace.contains(char::is_whitespace) {
            return Err(bad(format!(
                "the namespace {:?} must be non-empty and hold no white space",
                config.namespace
            )));
        }
        if config.history == 0 || config.max_pending == 0 {
            return Err(bad("history and max_pending must be at least 1".into()));
        }
        if config.timeout.is_zero() {
            return Err(bad("the timeout must be more than zero".into()));
        }
        let client = match &config.tls_root_ca {
            None => redis::Client::open(url).map_err(|e| bad(redacted_error(&e)))?,
            #[cfg(feature = "redis-tls")]
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    bad(format!(
                        "cannot read the TLS root certificate {}: {e}",
                        path.display()
                    ))
                })?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
                .map_err(|e| bad(redacted_error(&e)))?
            }
            #[cfg(not(feature = "redis-tls"))]
            Some(_) => {
                return Err(bad("tls_root_ca needs respool's redis-tls feature".into()));
            }
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                status: StoreStatus {
                    store: format!("redis {shown} namespace {}", config.namespace),
                    ..StoreStatus::default()
                },
                cache: None,
                first_read: false,
            }),
            changed: Condvar::new(),
            sink: Mutex::new(None),
        });
        let config = Arc::new(config);
        let mut writer = Writer::new(client, config.clone(), shared.clone());
        std::thread::Builder::new()
            .name("respool-redis".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| bad(format!("cannot start the store's thread: {e}")))?;
        Ok(RedisStore { tx, shared, config })
    }

    /// How the store is doing now.
    #[must_use]
    pub fn status(&self) -> StoreStatus {
        lock(&self.shared.state).status.clone()
    }

    /// The configuration it was opened with.
    #[must_use]
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Writes what is queued now (not waiting for the next batch or retry)
    /// and returns when it is merged, or when the attempt failed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Remote`]: Redis could not be reached; the samples stay
    /// queued and are retried.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.ask(Msg::Flush)
    }

    /// Reads the shared profiles now (and hands them to the pool), and
    /// returns when done.
    ///
    /// # Errors
    ///
    /// [`StoreError::Remote`]: Redis could not be reached.
    pub fn refresh(&self) -> Result<(), StoreError> {
        self.ask(Msg::Refresh)
    }

    /// Queues every sample of `profiles` as new observations (to seed Redis
    /// from a [`FileStore`](super::FileStore), say); each call adds them
    /// again. Written at the next batch, or by [`RedisStore::flush`].
    pub fn merge(&self, profiles: &Profiles) {
        for c in &profiles.classes {
            let runs = c.samples.iter().filter(|s| s.oom_bytes.is_none()).count() as u64;
            for s in &c.samples {
                let _ = self.tx.send(Msg::Sample(c.class.clone(), s.clone()));
            }
            if c.runs > runs {
                let _ = self.tx.send(Msg::Runs(c.class.clone(), c.runs - runs));
            }
        }
    }

    fn ask(&self, msg: fn(Sender<Result<(), String>>) -> Msg) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        let remote = |message: String| StoreError::Remote {
            store: lock(&self.shared.state).status.store.clone(),
            message,
        };
        self.tx
            .send(msg(tx))
            .map_err(|_| remote("the store's thread has ended".into()))?;
        // The thread answers after one attempt, which its timeouts bound.
        rx.recv()
            .map_err(|_| remote("the store's thread has ended".into()))?
            .map_err(remote)
    }
}

impl ProfileStore for RedisStore {
    /// The shared profiles as last read; at the first call, waits up to
    /// [`RedisConfig::first_read_wait`] for the first read. `Ok(None)` when
    /// Redis holds nothing yet or could not be reached (learning then
    /// starts locally; [`StoreStatus`] says so).
    fn load(&self) -> Result<Option<Profiles>, StoreError> {
        let deadline = Instant::now() + self.config.first_read_wait;
        let mut state = lock(&self.shared.state);
        while !state.first_read {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Ok(state.cache.clone())
    }

    /// Writes what the pool learned and this store has not written yet
    /// (the pool streams every sample through [`ProfileStore::record`], so
    /// `profiles` itself is not sent again: use [`RedisStore::merge`] to
    /// add a document's samples).
    ///
    /// # Errors
    ///
    /// [`StoreError::Remote`] when Redis could not be reached: the samples
    /// stay queued and are retried while a handle on the store lives.
    fn save(&self, _profiles: &Profiles) -> Result<(), StoreError> {
        self.flush()
    }

    fn record(&self, class: &str, sample: &Sample) {
        let _ = self.tx.send(Msg::Sample(class.to_owned(), sample.clone()));
    }

    fn watch(&self, apply: ProfileSink) {
        *lock(&self.shared.sink) = Some(apply);
    }

    fn status(&self) -> Option<StoreStatus> {
        Some(RedisStore::status(self))
    }
}

/// `url` with its password replaced by `***`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..host_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let masked = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        // `redis://password@host` is read as a password by some clients.
        "***".to_owned()
    };
    format!("{}{masked}{}", &url[..scheme_end + 3], &rest[at..])
}

/// A redis error as text, without anything that could be a password (the
/// crate's messages do not echo URLs' userinfo, but an invalid URL's
/// message may quote it).
fn redacted_error(e: &redis::RedisError) -> String {
    let text = e.to_string();
    if text.contains('@') {
        format!(
            "{:?} error (details withheld: they quote the URL)",
            e.kind()
        )
    } else {
        text
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A sample as stored: with the id that makes it unique.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: String,
    #[serde(flatten)]
    sample: Sample,
}

/// One queued sample.
struct Queued {
    class: String,
    id: String,
    sample: Sample,
}

/// The batch being written (retried whole, under the same number, until
/// every class of it is merged or refused).
struct Batch {
    seq: u64,
    classes: BTreeMap<String, ClassBatch>,
}

#[derive(Default)]
struct ClassBatch {
    samples: Vec<Queued>,
    extra_runs: u64,
}

/// The merge, atomic on the server. KEYS: class hash, sample set, class
/// index, writer hash. ARGV: schema, now (ms), ttl (ms), history cap,
/// max age (ms), runs to add, OOM events to add, class name, batch number,
/// then score and member of each sample. Checks everything before it
/// changes anything, so a refused write leaves the keys untouched.
const MERGE: &str = r"
local th = redis.call('TYPE', KEYS[1]).ok
local tz = redis.call('TYPE', KEYS[2]).ok
if th ~= 'none' and th ~= 'hash' then return {'corrupt', 'the class key is a ' .. th .. ', not a hash'} end
if tz ~= 'none' and tz ~= 'zset' then return {'corrupt', 'the samples key is a ' .. tz .. ', not a sorted set'} end
local schema = redis.call('HGET', KEYS[1], 'schema')
if th == 'hash' then
  if not schema then return {'corrupt', 'the class hash has no schema field'} end
  local v = tonumber(schema)
  if not v then return {'corrupt', 'the schema field is not a number'} end
  if v > tonumber(ARGV[1]) then return {'newer', schema} end
  local runs = redis.call('HGET', KEYS[1], 'runs')
  if runs and not tonumber(runs) then return {'corrupt', 'the runs field is not a number'} end
end
local tw = redis.call('TYPE', KEYS[4]).ok
if tw ~= 'none' and tw ~= 'hash' then return {'corrupt', 'the writer key is a ' .. tw} end
local seq = tonumber(ARGV[9])
local last = tonumber(redis.call('HGET', KEYS[4], ARGV[8]) or '0') or 0
if seq <= last then return {'duplicate', '0'} end
local now = tonumber(ARGV[2])
local ttl = ARGV[3]
local added = 0
for i = 10, #ARGV, 2 do
  added = added + redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'schema', ARGV[1], 'class', ARGV[8], 'updated_ms', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'runs', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'ooms', ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. tostring(now - tonumber(ARGV[5])))
local n = redis.call('ZCARD', KEYS[2])
local cap = tonumber(ARGV[4])
if n > cap then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - cap - 1) end
redis.call('HSET', KEYS[4], ARGV[8], ARGV[9])
redis.call('ZADD', KEYS[3], now, ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. tostring(now - tonumber(ttl)))
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
return {'ok', tostring(added)}
";

/// The read, one consistent view of the classes given: KEYS are pairs of
/// class hash and sample set. Returns JSON: per class, `kind` (`ok`,
/// `missing`, `corrupt`), the hash's fields, and the members joined by
/// newlines (a member is compact JSON, which holds no raw newline).
const READ: &str = r"
local out = {}
for i = 1, #KEYS, 2 do
  local th = redis.call('TYPE', KEYS[i]).ok
  local tz = redis.call('TYPE', KEYS[i + 1]).ok
  if th == 'none' and tz == 'none' then
    out[#out + 1] = {kind = 'missing'}
  elseif (th ~= 'hash' and th ~= 'none') or (tz ~= 'zset' and tz ~= 'none') then
    out[#out + 1] = {kind = 'corrupt', message = 'wrong key types: ' .. th .. ' and ' .. tz}
  else
    local flat = redis.call('HGETALL', KEYS[i])
    local fields = {}
    for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
    local members = redis.call('ZRANGE', KEYS[i + 1], 0, -1)
    out[#out + 1] = {kind = 'ok', fields = fields, members = table.concat(members, '\n')}
  end
end
return cjson.encode(out)
";

#[derive(Deserialize)]
struct ReadClass {
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    fields: serde_json::Value,
    #[serde(default)]
    members: String,
}

/// Classes read per script call (bounds how long one call holds Redis).
const READ_CHUNK: usize = 64;

struct Writer {
    client: redis::Client,
    conn: Option<redis::Connection>,
    config: Arc<RedisConfig>,
    shared: Arc<Shared>,
    merge: redis::Script,
    read: redis::Script,
    /// This process's id in sample ids and the writer key.
    id: String,
    /// Sample ids issued.
    next_sample: u64,
    /// Batch numbers issued.
    next_batch: u64,
    queue: Vec<Queued>,
    extra_runs: BTreeMap<String, u64>,
    batch: Option<Batch>,
    /// When the queue should be written (first sample + `write_every`, or
    /// the retry time after a failure).
    write_at: Option<Instant>,
    backoff: Duration,
    refresh_at: Instant,
    /// What was last handed to the pool.
    last_applied: Option<Vec<ClassRecord>>,
}

enum Outcome {
    Merged,
    Duplicate,
    Refused(String),
}

impl Writer {
    fn new(client: redis::Client, config: Arc<RedisConfig>, shared: Arc<Shared>) -> Writer {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one((
            std::process::id(),
            unix_ms(),
            std::thread::current().id(),
        ));
        Writer {
            client,
            conn: None,
            backoff: config.retry_min,
            config,
            shared,
            merge: redis::Script::new(MERGE),
            read: redis::Script::new(READ),
            id: format!("{seed:016x}"),
            next_sample: 0,
            next_batch: 0,
            queue: Vec::new(),
            extra_runs: BTreeMap::new(),
            batch: None,
            write_at: None,
            refresh_at: Instant::now(),
            last_applied: None,
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:v{SCHEMA}:{kind}:{name}", self.config.namespace)
    }

    fn pending(&self) -> u64 {
        let in_batch: usize = self.batch.as_ref().map_or(0, |b| {
            b.classes.values().map(|c| c.samples.len()).sum::<usize>()
        });
        (self.queue.len() + in_batch) as u64
    }

    fn run(&mut self, rx: &Receiver<Msg>) {
        loop {
            let mut flushes = Vec::new();
            let mut refreshes = Vec::new();
            let deadline = match self.write_at {
                Some(w) => w.min(self.refresh_at),
                None => self.refresh_at,
            };
            let first = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            let mut closing = matches!(first, Err(RecvTimeoutError::Disconnected));
            if let Ok(m) = first {
                self.take(m, &mut flushes, &mut refreshes);
                loop {
                    match rx.try_recv() {
                        Ok(m) => self.take(m, &mut flushes, &mut refreshes),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            closing = true;
                            break;
                        }
                    }
                }
            }
            let now = Instant::now();
            let has_work = self.pending() > 0 || !self.extra_runs.is_empty();
            if has_work
                && (closing || !flushes.is_empty() || self.write_at.is_some_and(|w| w <= now))
            {
                // The batch being retried first, then what queued behind it.
                let mut r = self.write();
                while r.is_ok() && (!self.queue.is_empty() || !self.extra_runs.is_empty()) {
                    r = self.write();
                }
                for f in flushes.drain(..) {
                    let _ = f.send(r.clone());
                }
            }
            for f in flushes {
                let _ = f.send(Ok(()));
            }
            if closing {
                return;
            }
            if !refreshes.is_empty() || self.refresh_at <= Instant::now() {
                let r = self.refresh();
                self.refresh_at = Instant::now() + self.config.refresh_every;
                for f in refreshes {
                    let _ = f.send(r.clone());
                }
            }
            self.publish_pending();
        }
    }

    fn take(
        &mut self,
        m: Msg,
        flushes: &mut Vec<Sender<Result<(), String>>>,
        refreshes: &mut Vec<Sender<Result<(), String>>>,
    ) {
        match m {
            Msg::Sample(class, sample) => {
                self.next_sample += 1;
                let id = format!("{}-{}", self.id, self.next_sample);
                self.queue.push(Queued { class, id, sample });
                let over = usize::try_from(self.pending())
                    .unwrap_or(usize::MAX)
                    .saturating_sub(self.config.max_pending);
                if over > 0 {
                    // The oldest go first; a batch being retried is kept whole.
                    let drop_n = over.min(self.queue.len());
                    self.queue.drain(..drop_n);
                    lock(&self.shared.state).status.dropped += drop_n as u64;
                }
                if self.write_at.is_none() {
                    self.write_at = Some(Instant::now() + self.config.write_every);
                }
            }
            Msg::Runs(class, n) => {
                *self.extra_runs.entry(class).or_default() += n;
                if self.write_at.is_none() {
                    self.write_at = Some(Instant::now() + self.config.write_every);
                }
            }
            Msg::Flush(ack) => flushes.push(ack),
            Msg::Refresh(ack) => refreshes.push(ack),
        }
    }

    fn publish_pending(&self) {
        let pending = self.pending();
        lock(&self.shared.state).status.pending = pending;
    }

    fn connection(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.conn.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(self.config.timeout)?;
            c.set_read_timeout(Some(self.config.timeout))?;
            c.set_write_timeout(Some(self.config.timeout))?;
            self.conn = Some(c);
        }
        // Just set above when it was missing.
        self.conn
            .as_mut()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "not connected")))
    }

    fn failed(&mut self, e: &redis::RedisError) -> String {
        self.conn = None;
        let message = redacted_error(e);
        let mut st = lock(&self.shared.state);
        if st.status.reachable || st.status.last_error.is_none() {
            tracing::warn!(target: "respool::store", store = %st.status.store, error = %message,
                "Redis profile store unreachable: learning goes on locally, writes are retried");
        }
        st.status.reachable = false;
        st.status.failures += 1;
        st.status.last_error = Some(message.clone());
        drop(st);
        self.shared.changed.notify_all();
        message
    }

    fn succeeded(&self) {
        let mut st = lock(&self.shared.state);
        if !st.status.reachable && st.status.last_error.is_some() {
            tracing::info!(target: "respool::store", store = %st.status.store, "Redis profile store reachable again");
        }
        st.status.reachable = true;
        st.status.last_error = None;
        st.status.last_ok_unix_ms = Some(unix_ms());
    }

    /// Writes the current batch (or a new one from the queue): one attempt.
    fn write(&mut self) -> Result<(), String> {
        if self.batch.is_none() {
            let mut classes: BTreeMap<String, ClassBatch> = BTreeMap::new();
            for q in self.queue.drain(..) {
                classes.entry(q.class.clone()).or_default().samples.push(q);
            }
            for (class, n) in std::mem::take(&mut self.extra_runs) {
                classes.entry(class).or_default().extra_runs += n;
            }
            self.next_batch += 1;
            self.batch = Some(Batch {
                seq: self.next_batch,
                classes,
            });
        }
        let result = self.write_batch();
        match &result {
            Ok(()) => {
                self.batch = None;
                self.backoff = self.config.retry_min;
                self.write_at = (!self.queue.is_empty() || !self.extra_runs.is_empty())
                    .then(|| Instant::now() + self.config.write_every);
            }
            Err(_) => {
                self.write_at = Some(Instant::now() + self.backoff);
                self.backoff =
                    (self.backoff * 2).min(self.config.retry_max.max(self.config.retry_min));
            }
        }
        self.publish_pending();
        result
    }

    fn write_batch(&mut self) -> Result<(), String> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        let seq = batch.seq;
        let mut left = batch.classes;
        let classes: Vec<String> = left.keys().cloned().collect();
        for class in classes {
            let Some(cb) = left.get(&class) else { continue };
            // A class the last read found corrupt or newer is not written
            // (the script checks the key types and the schema itself, but
            // not every sample).
            let known = lock(&self.shared.state)
                .status
                .problems
                .iter()
                .find(|(c, _)| *c == class)
                .map(|(_, why)| why.clone());
            let outcome = match known {
                Some(why) => Ok(Outcome::Refused(why)),
                None => self.merge_class(&class, cb, seq),
            };
            match outcome {
                Ok(outcome) => {
                    let n = cb.samples.len() as u64;
                    let mut st = lock(&self.shared.state);
                    match outcome {
                        Outcome::Merged | Outcome::Duplicate => st.status.written += n,
                        Outcome::Refused(why) => {
                            st.status.rejected += n;
                            if !st.status.problems.iter().any(|(c, _)| *c == class) {
                                tracing::warn!(target: "respool::store", class = %class, problem = %why,
                                    "the class's stored profile is left untouched; it is learned locally only");
                                st.status.problems.push((class.clone(), why));
                            }
                        }
                    }
                    drop(st);
                    left.remove(&class);
                }
                Err(e) => {
                    self.batch = Some(Batch { seq, classes: left });
                    return Err(self.failed(&e));
                }
            }
        }
        self.succeeded();
        self.shared.changed.notify_all();
        Ok(())
    }

    fn merge_class(
        &mut self,
        class: &str,
        cb: &ClassBatch,
        seq: u64,
    ) -> redis::RedisResult<Outcome> {
        let runs = cb
            .samples
            .iter()
            .filter(|q| q.sample.oom_bytes.is_none())
            .count() as u64
            + cb.extra_runs;
        let ooms = cb.samples.len() as u64 - (runs - cb.extra_runs);
        let script = self.merge.clone();
        let mut inv = script.prepare_invoke();
        inv.key(self.key("class", class))
            .key(self.key("samples", class))
            .key(format!("{}:v{SCHEMA}:classes", self.config.namespace))
            .key(self.key("writer", &self.id))
            .arg(SCHEMA)
            .arg(unix_ms())
            .arg(millis(self.config.expire_after))
            .arg(self.config.history)
            .arg(millis(self.config.max_age))
            .arg(runs)
            .arg(ooms)
            .arg(class)
            .arg(seq);
        for q in &cb.samples {
            let member = serde_json::to_string(&Wire {
                id: q.id.clone(),
                sample: q.sample.clone(),
            })
            .map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::Client, "sample", e.to_string()))
            })?;
            inv.arg(q.sample.at_unix_ms).arg(member);
        }
        let conn = self.connection()?;
        let reply: Vec<String> = inv.invoke(conn)?;
        let kind = reply.first().map_or("", String::as_str);
        let detail = reply.get(1).cloned().unwrap_or_default();
        Ok(match kind {
            "ok" => Outcome::Merged,
            "duplicate" => Outcome::Duplicate,
            "newer" => Outcome::Refused(format!(
                "stored with key schema {detail}, newer than the {SCHEMA} this respool writes"
            )),
            "corrupt" => Outcome::Refused(format!("corrupt: {detail}")),
            other => Outcome::Refused(format!("unexpected reply {other:?} from the merge script")),
        })
    }

    /// Reads every live class: one attempt.
    fn refresh(&mut self) -> Result<(), String> {
        let result = self.read_all();
        let out = match result {
            Ok((records, problems)) => {
                self.succeeded();
                let composed = self.compose(records);
                let mut st = lock(&self.shared.state);
                st.status.refreshes += 1;
                // A read replaces the list with what it found (a class
                // repaired by hand is written to again).
                let all = problems;
                for (class, why) in &all {
                    if !st.status.problems.iter().any(|(c, _)| c == class) {
                        tracing::warn!(target: "respool::store", class = %class, problem = %why,
                            "the class's stored profile is left untouched; it is learned locally only");
                    }
                }
                st.status.problems = all;
                st.cache = (!composed.is_empty()).then(|| Profiles::new(composed.clone()));
                drop(st);
                if self.last_applied.as_ref() != Some(&composed) && !composed.is_empty() {
                    if let Some(apply) = lock(&self.shared.sink).as_ref() {
                        apply(&Profiles::new(composed.clone()));
                    }
                    self.last_applied = Some(composed);
                }
                Ok(())
            }
            Err(e) => Err(self.failed(&e)),
        };
        let mut st = lock(&self.shared.state);
        st.first_read = true;
        drop(st);
        self.shared.changed.notify_all();
        out
    }

    /// The stored classes (with their sample ids) and the classes left
    /// untouched, with why.
    #[allow(clippy::type_complexity)]
    fn read_all(
        &mut self,
    ) -> redis::RedisResult<(Vec<(ClassRecord, HashSet<String>)>, Vec<(String, String)>)> {
        let now = unix_ms();
        let index = format!("{}:v{SCHEMA}:classes", self.config.namespace);
        let since = now.saturating_sub(millis(self.config.expire_after));
        let conn = self.connection()?;
        let names: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&index)
            .arg(since)
            .arg("+inf")
            .query(conn)?;
        let mut records = Vec::new();
        let mut problems = Vec::new();
        for chunk in names.chunks(READ_CHUNK) {
            let script = self.read.clone();
            let mut inv = script.prepare_invoke();
            for class in chunk {
                inv.key(self.key("class", class))
                    .key(self.key("samples", class));
            }
            let conn = self.connection()?;
            let json: String = inv.invoke(conn)?;
            let parsed: Vec<ReadClass> = match serde_json::from_str(&json) {
                Ok(v) => v,
                // cjson encodes an empty list as `{}`.
                Err(_) if json == "{}" => Vec::new(),
                Err(e) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "read script",
                        e.to_string(),
                    )));
                }
            };
            for (class, rc) in chunk.iter().zip(parsed) {
                match parse_class(class, &rc) {
                    Ok(Some(r)) => records.push(r),
                    Ok(None) => {}
                    Err(why) => problems.push((class.clone(), why)),
                }
            }
        }
        Ok((records, problems))
    }

    /// The stored classes plus what this process has not written yet
    /// (samples whose id is stored already are not counted twice).
    fn compose(&self, stored: Vec<(ClassRecord, HashSet<String>)>) -> Vec<ClassRecord> {
        let pending: Vec<&Queued> = self
            .batch
            .iter()
            .flat_map(|b| b.classes.values().flat_map(|c| c.samples.iter()))
            .chain(self.queue.iter())
            .collect();
        stored
            .into_iter()
            .map(|(mut record, ids)| {
                for q in pending.iter().filter(|q| q.class == record.class) {
                    if !ids.contains(&q.id) {
                        if q.sample.oom_bytes.is_none() {
                            record.runs += 1;
                        }
                        record.samples.push(q.sample.clone());
                    }
                }
                // Time order; samples of the same millisecond (from several
                // processes) by their content, so that every reader (and
                // one process that saw them all, sorted the same way)
                // replays them in the same order.
                record.samples.sort_by_cached_key(|s| {
                    (s.at_unix_ms, serde_json::to_string(s).unwrap_or_default())
                });
                record
            })
            .collect()
    }
}

/// One class as read; `Ok(None)` when it expired between the index and
/// the read; `Err` says why it is left untouched.
fn parse_class(
    class: &str,
    rc: &ReadClass,
) -> Result<Option<(ClassRecord, HashSet<String>)>, String> {
    match rc.kind.as_str() {
        "missing" => return Ok(None),
        "corrupt" => return Err(format!("corrupt: {}", rc.message)),
        "ok" => {}
        other => return Err(format!("corrupt: unexpected read result {other:?}")),
    }
    let field = |name: &str| rc.fields.get(name).and_then(serde_json::Value::as_str);
    let schema =
        field("schema").ok_or_else(|| "corrupt: the class hash has no schema field".to_owned())?;
    let schema: u32 = schema
        .parse()
        .map_err(|_| format!("corrupt: the schema field {schema:?} is not a number"))?;
    if schema > SCHEMA {
        return Err(format!(
            "stored with key schema {schema}, newer than the {SCHEMA} this respool reads"
        ));
    }
    let runs: u64 = match field("runs") {
        None => 0,
        Some(r) => r
            .parse()
            .map_err(|_| format!("corrupt: the runs field {r:?} is not a number"))?,
    };
    let mut ids = HashSet::new();
    let mut samples = Vec::new();
    for member in rc.members.split('\n').filter(|m| !m.is_empty()) {
        let wire: Wire = serde_json::from_str(member).map_err(|e| {
            format!(
                "corrupt: a sample does not parse ({e}): {}",
                respool_sys::Excerpt::quoted(member)
            )
        })?;
        ids.insert(wire.id);
        samples.push(wire.sample);
    }
    Ok(Some((
        ClassRecord {
            class: class.to_owned(),
            runs,
            samples,
        },
        ids,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(
            redact("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("rediss://app:p@ss@redis.example:6380"),
            "rediss://app:***@redis.example:6380"
        );
        assert_eq!(redact("redis://s3cret@h/"), "redis://***@h/");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        let e = RedisStore::open(
            "redis://127.0.0.1:1/",
            RedisConfig {
                namespace: "a b".into(),
                ..RedisConfig::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("namespace"), "{e}");
        let e = RedisStore::open("http://:pw@127.0.0.1/", RedisConfig::default()).unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
        let e = RedisStore::open(
            "redis://127.0.0.1:1/",
            RedisConfig {
                history: 0,
                ..RedisConfig::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("history"), "{e}");
        let ca = RedisConfig {
            tls_root_ca: Some("/nonexistent/ca.pem".into()),
            ..RedisConfig::default()
        };
        let e = RedisStore::open("rediss://127.0.0.1:1/", ca).unwrap_err();
        if cfg!(feature = "redis-tls") {
            assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        } else {
            assert!(e.to_string().contains("redis-tls feature"), "{e}");
        }
    }

    #[test]
    fn stored_values_that_are_not_samples_are_reported() {
        let rc = |fields: serde_json::Value, members: &str| ReadClass {
            kind: "ok".into(),
            message: String::new(),
            fields,
            members: members.into(),
        };
        let ok = rc(
            serde_json::json!({"schema": "1", "runs": "2"}),
            "{\"id\":\"a-1\",\"at_unix_ms\":5,\"usage\":{\"memory\":7}}",
        );
        let (r, ids) = parse_class("c", &ok).unwrap().unwrap();
        assert_eq!((r.runs, r.samples.len(), ids.len()), (2, 1, 1));
        let newer = rc(serde_json::json!({"schema": "2", "runs": "2"}), "");
        assert!(parse_class("c", &newer).unwrap_err().contains("newer"));
        let garbage = rc(serde_json::json!({"schema": "1"}), "not json");
        assert!(parse_class("c", &garbage).unwrap_err().contains("corrupt"));
        let no_schema = rc(serde_json::json!({"runs": "1"}), "");
        assert!(parse_class("c", &no_schema).unwrap_err().contains("schema"));
        let bad_runs = rc(serde_json::json!({"schema": "1", "runs": "x"}), "");
        assert!(parse_class("c", &bad_runs).unwrap_err().contains("runs"));
    }

    #[test]
    fn an_unreachable_redis_leaves_load_empty_and_says_so() {
        // Port 1 on loopback: nothing listens there.
        let store = RedisStore::open(
            "redis://127.0.0.1:1/",
            RedisConfig {
                first_read_wait: Duration::from_secs(10),
                ..RedisConfig::default()
            },
        )
        .unwrap();
        assert_eq!(store.load().unwrap(), None);
        let st = store.status();
        assert!(!st.reachable && st.failures >= 1, "{st}");
        assert!(st.last_error.is_some(), "{st}");
        store.record(
            "c",
            &Sample::new(
                1,
                None,
                Duration::ZERO,
                &respool_core::Resources::NONE,
                None,
            ),
        );
        assert!(store.flush().is_err());
        assert_eq!(store.status().pending, 1, "kept for a retry");
    }
}
