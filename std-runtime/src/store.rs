//! Where learned profiles live between runs.
//!
//! A [`ProfileStore`] loads and saves [`Profiles`]: for each task class, its
//! run count and a bounded history of measured samples (what the predictors
//! are rebuilt from when the profiles are imported). Two stores come with
//! respool:
//!
//! - [`MemoryStore`]: in memory, for tests and for moving profiles between
//!   pools in one process;
//! - [`FileStore`]: a JSON file, written atomically (a temporary file in the
//!   same directory, flushed to disk, then renamed over the old one, and the
//!   directory flushed), so that a crash leaves either the old or the new
//!   file, never a torn one (saves from several threads of one process
//!   take turns). A file that does not parse, or that was written by a
//!   newer format version, is reported as an error and left untouched.
//!
//! The trait is synchronous and object safe; a networked store (HTTP, Redis)
//! implements the same two calls with blocking I/O, and gets the same
//! versioned document to send and receive.
//!
//! A store shared by many processes implements three more calls, all with
//! defaults that do nothing: [`ProfileStore::record`] takes each sample as
//! it is learned (to queue it for a background writer: it runs on the
//! worker, so it must not block), [`ProfileStore::watch`] hands the store a
//! callback through which it replaces the pool's profiles with the shared
//! ones when it has read them again, and [`ProfileStore::status`] says how
//! the store is doing, for the pool's [snapshot](crate::PoolSnapshot).
//! `RedisStore` (cargo feature `redis`) is such a store.
//!
//! # File format (version 1)
//!
//! ```json
//! {
//!   "format": "respool-profiles",
//!   "version": 1,
//!   "saved_at_unix_ms": 1764180000000,
//!   "classes": [
//!     {
//!       "class": "thumbnail",
//!       "runs": 42,
//!       "samples": [
//!         { "at_unix_ms": 1764179999000, "size": 4096, "wall_ns": 1200000,
//!           "usage": { "cpu": 850, "memory": 16777216 } },
//!         { "at_unix_ms": 1764179999500, "oom_bytes": 268435456 }
//!       ]
//!     }
//!   ]
//! }
//! ```
//!
//! `usage` keys are dimension names (`cpu` in millicores, `memory` in
//! bytes, see [`Dim`]); `size` is the task's size hint, if it had one;
//! a sample with `oom_bytes` records an out-of-memory event at that usage.
//! Unknown fields are ignored (forward compatible within a version); a
//! higher `version` is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use respool_core::{Dim, Resources};
use serde::{Deserialize, Serialize};

use crate::sync::lock;
use respool_sys::Excerpt;

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::{RedisConfig, RedisStore};

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "respool-profiles";

/// One measured run (or out-of-memory event) of a class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The task's size hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Run time in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wall_ns: u64,
    /// Measured usage per dimension name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, u64>,
    /// An out-of-memory event at this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_bytes: Option<u64>,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Sample {
    pub(crate) fn new(
        at_unix_ns: u64,
        size: Option<u64>,
        wall: Duration,
        usage: &Resources,
        oom_bytes: Option<u64>,
    ) -> Sample {
        Sample {
            at_unix_ms: at_unix_ns / 1_000_000,
            size,
            wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
            usage: usage
                .iter()
                .map(|(d, v)| (d.name().to_owned(), v))
                .collect(),
            oom_bytes,
        }
    }

    pub(crate) fn at_unix_ns(&self) -> u64 {
        self.at_unix_ms.saturating_mul(1_000_000)
    }

    pub(crate) fn oom_bytes(&self) -> Option<u64> {
        self.oom_bytes
    }

    /// The usage as a resource vector (unknown dimension names are skipped).
    #[must_use]
    pub fn usage(&self) -> Resources {
        self.usage
            .iter()
            .filter_map(|(k, v)| Some((Dim::from_name(k)?, *v)))
            .fold(Resources::NONE, |r, (d, v)| r.with_saturating(d, v))
    }
}

/// The learned history of one class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRecord {
    /// The class key.
    pub class: String,
    /// Runs measured in total (the history keeps only the latest).
    pub runs: u64,
    /// The latest samples, oldest first.
    pub samples: Vec<Sample>,
}

/// Every class's history, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profiles {
    format: String,
    version: u32,
    /// When the document was produced, in milliseconds since the Unix epoch.
    pub saved_at_unix_ms: u64,
    /// The classes, sorted by key.
    pub classes: Vec<ClassRecord>,
}

impl Profiles {
    /// A document of the current version.
    #[must_use]
    pub fn new(classes: Vec<ClassRecord>) -> Profiles {
        Profiles {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            saved_at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            classes,
        }
    }

    /// The format version of the document.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Serialises to pretty JSON.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] can only happen for numbers JSON cannot hold (never).
    pub fn to_json(&self) -> Result<String, StoreError> {
        serde_json::to_string_pretty(self).map_err(|e| StoreError::Corrupt {
            source: "<memory>".into(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// Parses and validates a document.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] with the position of the problem, or
    /// [`StoreError::UnsupportedVersion`] for a document from a newer respool.
    pub fn from_json(text: &str, source: &str) -> Result<Profiles, StoreError> {
        // Check the header first, so a newer version is reported as such
        // even when its body would not parse with this version's schema.
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
        }
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            source: source.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        };
        let header: Header = serde_json::from_str(text).map_err(corrupt)?;
        if header.format != FORMAT_NAME {
            return Err(StoreError::Corrupt {
                source: source.to_owned(),
                line: 1,
                column: 1,
                message: format!(
                    "not a respool profile file: \"format\" is {}, expected {FORMAT_NAME:?}",
                    Excerpt::quoted(&header.format)
                ),
            });
        }
        if header.version > FORMAT_VERSION {
            return Err(StoreError::UnsupportedVersion {
                source: source.to_owned(),
                found: header.version,
                supported: FORMAT_VERSION,
            });
        }
        serde_json::from_str(text).map_err(corrupt)
    }
}

/// Why profiles could not be loaded or saved.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing failed.
    Io {
        /// What was being accessed.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// The stored document does not parse (it was left untouched).
    Corrupt {
        /// Where it came from (a path, or a store's description).
        source: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The document was written by a newer respool (it was left untouched).
    UnsupportedVersion {
        /// Where it came from.
        source: String,
        /// Its format version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A networked store could not be configured or reached.
    Remote {
        /// The store (its address, without any password).
        store: String,
        /// What went wrong.
        message: String,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, error } => write!(
                f,
                "profile store {}: {error}",
                Excerpt::plain(&path.to_string_lossy())
            ),
            StoreError::Corrupt {
                source,
                line,
                column,
                message,
            } => write!(
                f,
                "profile store {} is corrupt at line {line}, column {column}: {} \
                 (the file was left as it is; move it away to start fresh)",
                Excerpt::plain(source),
                Excerpt::plain(message)
            ),
            StoreError::UnsupportedVersion {
                source,
                found,
                supported,
            } => write!(
                f,
                "profile store {} has format version {found}, newer than the {supported} \
                 this respool reads (the file was left as it is; upgrade respool or use another path)",
                Excerpt::plain(source)
            ),
            StoreError::Remote { store, message } => write!(
                f,
                "profile store {}: {}",
                Excerpt::plain(store),
                Excerpt::plain(message)
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Somewhere profiles are kept between runs.
///
/// # Examples
///
/// A store of your own (a networked store would send and fetch the same
/// JSON document), used to move profiles from one pool to another:
///
/// ```
/// use std::sync::Mutex;
/// use respool::Pool;
/// use respool::store::{ProfileStore, Profiles, StoreError};
///
/// #[derive(Debug, Default)]
/// struct Text(Mutex<Option<String>>);
///
/// impl ProfileStore for Text {
///     fn load(&self) -> Result<Option<Profiles>, StoreError> {
///         let text = self.0.lock().expect("not poisoned").clone();
///         text.map(|t| Profiles::from_json(&t, "text store")).transpose()
///     }
///     fn save(&self, profiles: &Profiles) -> Result<(), StoreError> {
///         *self.0.lock().expect("not poisoned") = Some(profiles.to_json()?);
///         Ok(())
///     }
/// }
///
/// let (store, pool) = (Text::default(), Pool::builder().workers(1).memory("1GiB").build()?);
/// pool.task().class("encode").spawn(|_| ())?.join()?;
/// pool.shutdown(); // every run is recorded after shutdown
/// pool.export_profiles(&store)?;
/// let other = Pool::builder().workers(1).memory("1GiB").build()?;
/// assert_eq!(other.import_profiles(&store)?, 1); // one class loaded
/// assert_eq!(other.profiles().classes[0].class, "encode");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ProfileStore: Send + Sync + fmt::Debug {
    /// Loads the stored profiles; `Ok(None)` when nothing was stored yet.
    ///
    /// # Errors
    ///
    /// A [`StoreError`]; a corrupt or too new document is reported, never
    /// silently replaced.
    fn load(&self) -> Result<Option<Profiles>, StoreError>;

    /// Replaces the stored profiles with `profiles`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] if they could not be written; the previous content
    /// is then still intact.
    fn save(&self, profiles: &Profiles) -> Result<(), StoreError>;

    /// Takes one sample of `class` as the pool learns it (a pool built
    /// with this store calls it for every measured run and every reported
    /// out-of-memory event). It runs on the worker that ran the task, after
    /// the task: a store must only queue the sample here (no I/O, no
    /// waiting). The default ignores it (a file store saves whole documents).
    fn record(&self, class: &str, sample: &Sample) {
        let _ = (class, sample);
    }

    /// Gives the store a callback that replaces the pool's profiles of the
    /// classes it is given with those (what other processes learned too).
    /// A pool built with this store calls it once, after loading. A store
    /// that reads a shared copy again calls it from its own thread, never
    /// from a task's. The default drops it.
    fn watch(&self, apply: ProfileSink) {
        drop(apply);
    }

    /// How the store is doing (reachable, samples waiting to be written,
    /// classes it left untouched); `None` for a store with nothing to say
    /// (the default). Shown in the pool's [snapshot](crate::PoolSnapshot).
    fn status(&self) -> Option<StoreStatus> {
        None
    }
}

/// The callback given to [`ProfileStore::watch`].
pub type ProfileSink = Box<dyn Fn(&Profiles) + Send + Sync>;

/// How a store shared by many processes is doing (see
/// [`ProfileStore::status`]); each figure is counted since the store was
/// opened, by this process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStatus {
    /// What the store is, for people (an address without its password,
    /// and a namespace).
    pub store: String,
    /// Whether the last attempt to reach it succeeded.
    pub reachable: bool,
    /// Samples learned here and not yet merged into the store (they are
    /// retried with backoff).
    pub pending: u64,
    /// Samples merged into the store.
    pub written: u64,
    /// Samples dropped because too many were pending (the store was
    /// unreachable for long).
    pub dropped: u64,
    /// Samples not written because the class's stored value is corrupt or
    /// of a newer schema (left untouched).
    pub rejected: u64,
    /// Attempts to reach the store that failed.
    pub failures: u64,
    /// Successful reads of the shared profiles.
    pub refreshes: u64,
    /// When the store was last reached, in milliseconds since the Unix epoch.
    pub last_ok_unix_ms: Option<u64>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Classes whose stored value is corrupt or of a newer schema, with
    /// what is wrong: reported, left untouched, learned locally only.
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for StoreStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} pending, {} written, {} dropped, {} refused, {} failures, {} reads",
            self.store,
            if self.reachable {
                "reachable"
            } else {
                "UNREACHABLE"
            },
            self.pending,
            self.written,
            self.dropped,
            self.rejected,
            self.failures,
            self.refreshes
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " (last error: {e})")?;
        }
        for (class, problem) in &self.problems {
            write!(f, "; class {}: {problem}", Excerpt::quoted(class))?;
        }
        Ok(())
    }
}

/// Profiles kept in memory.
///
/// # Examples
///
/// Moving what one pool learned to another pool of the same process:
///
/// ```
/// use respool::Pool;
/// use respool::store::{MemoryStore, ProfileStore};
/// let store = MemoryStore::new();
/// assert!(store.load()?.is_none()); // nothing saved yet
/// let pool = Pool::builder().workers(1).memory("1GiB").build()?;
/// pool.task().class("resize").spawn(|_| ())?.join()?;
/// pool.shutdown(); // every run is recorded after shutdown
/// pool.export_profiles(&store)?;
/// let saved = store.load()?.expect("saved above");
/// assert_eq!((saved.classes[0].class.as_str(), saved.classes[0].runs), ("resize", 1));
/// let next = Pool::builder().workers(1).memory("1GiB").build()?;
/// assert_eq!(next.import_profiles(&store)?, 1); // one class loaded
/// assert_eq!(next.profiles().classes[0].runs, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    profiles: Mutex<Option<Profiles>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl ProfileStore for MemoryStore {
    fn load(&self) -> Result<Option<Profiles>, StoreError> {
        Ok(lock(&self.profiles).clone())
    }

    fn save(&self, profiles: &Profiles) -> Result<(), StoreError> {
        *lock(&self.profiles) = Some(profiles.clone());
        Ok(())
    }
}

/// Profiles kept in a JSON file (see the [module documentation](self) for
/// the format and the atomic write).
///
/// # Examples
///
/// ```
/// use respool::Pool;
/// use respool::store::{FileStore, ProfileStore};
/// let dir = std::env::temp_dir().join(format!("respool-filestore-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let store = FileStore::in_dir(&dir);
/// assert!(store.load()?.is_none()); // no file yet
/// let pool = Pool::builder().workers(1).memory("1GiB").profile_store(store.clone()).build()?;
/// pool.task().class("thumbnail").spawn(|_| ())?.join()?;
/// pool.shutdown(); // saves the learned profiles to the file
/// let saved = store.load()?.expect("saved at shutdown");
/// assert_eq!((saved.classes[0].class.as_str(), saved.classes[0].runs), ("thumbnail", 1));
/// // The next pool built on the store starts from what was learned.
/// let next = Pool::builder().workers(1).memory("1GiB").profile_store(store.clone()).build()?;
/// assert_eq!(next.profiles().classes[0].runs, 1);
/// drop(next);
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path` (the file, and its directory if missing, are
    /// created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore { path: path.into() }
    }

    /// A store named `profiles.json` in `dir`.
    pub fn in_dir(dir: impl AsRef<Path>) -> FileStore {
        FileStore::new(dir.as_ref().join("profiles.json"))
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, error: io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            error,
        }
    }
}

impl ProfileStore for FileStore {
    fn load(&self) -> Result<Option<Profiles>, StoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        Profiles::from_json(&text, &self.path.display().to_string()).map(Some)
    }

    fn save(&self, profiles: &Profiles) -> Result<(), StoreError> {
        let json = profiles.to_json()?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self.path.file_name().map_or_else(
            || "profiles.json".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        // The temporary path is per process: saves from several threads of
        // this process (two pools on one file, a save racing the one at
        // shutdown) take turns, or they would write the same temporary file
        // and could rename a mix of two documents into place.
        static SAVING: Mutex<()> = Mutex::new(());
        let _turn = lock(&SAVING);
        let write = || -> io::Result<()> {
            // A store in a directory that does not exist yet (a fresh
            // `$XDG_STATE_HOME/app/`) creates it, as the file is.
            fs::create_dir_all(&dir)?;
            let mut f = File::create(&tmp)?;
            f.write_all(json.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.path)?;
            // Make the rename itself durable.
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_profiles() -> Profiles {
        let usage = Resources::new()
            .with(Dim::Cpu, 850)
            .unwrap()
            .with(Dim::Memory, 16 << 20)
            .unwrap();
        Profiles::new(vec![ClassRecord {
            class: "thumbnail".into(),
            runs: 2,
            samples: vec![
                Sample::new(
                    1_700_000_000_000_000_000,
                    Some(4096),
                    Duration::from_millis(3),
                    &usage,
                    None,
                ),
                Sample::new(
                    1_700_000_000_500_000_000,
                    None,
                    Duration::ZERO,
                    &Resources::NONE,
                    Some(1 << 28),
                ),
            ],
        }])
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let p = sample_profiles();
        let text = p.to_json().unwrap();
        assert!(text.contains("\"format\": \"respool-profiles\""));
        assert!(text.contains("\"memory\": 16777216"));
        let back = Profiles::from_json(&text, "test").unwrap();
        assert_eq!(back, p);
        assert_eq!(back.classes[0].samples[0].usage().get(Dim::Cpu), Some(850));
    }

    #[test]
    fn corrupt_and_newer_documents_are_reported() {
        let e = Profiles::from_json(
            "{\"format\": \"respool-profiles\", \"version\": 1, \"classes\": [",
            "f",
        )
        .unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { line: 1, .. }), "{e}");
        let e = Profiles::from_json(
            "{\"format\": \"respool-profiles\", \"version\": 9, \"x\": []}",
            "f",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::UnsupportedVersion {
                    found: 9,
                    supported: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("newer"));
        let e = Profiles::from_json("{\"format\": \"other\", \"version\": 1}", "f").unwrap_err();
        assert!(e.to_string().contains("not a respool profile file"), "{e}");
    }

    #[test]
    fn file_store_round_trip_and_atomic_replace() {
        let dir = std::env::temp_dir().join(format!("respool-store-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let store = FileStore::in_dir(&dir);
        assert!(
            store.load().unwrap().is_none(),
            "missing file: nothing stored yet"
        );
        let p = sample_profiles();
        store.save(&p).unwrap();
        assert_eq!(store.load().unwrap(), Some(p.clone()));
        // A second save replaces the file; no temporary file is left.
        store.save(&Profiles::new(vec![])).unwrap();
        assert_eq!(store.load().unwrap().unwrap().classes.len(), 0);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("profiles.json")]);
        // A corrupt file is reported and left untouched.
        fs::write(store.path(), "{ not json").unwrap();
        let e = store.load().unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        assert_eq!(fs::read_to_string(store.path()).unwrap(), "{ not json");
        fs::remove_dir_all(&dir).unwrap();
    }

    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("respool-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_save_creates_a_missing_directory() {
        let dir = test_dir("missing-dir").join("not").join("yet");
        assert!(!dir.exists());
        let store = FileStore::in_dir(&dir);
        let p = sample_profiles();
        store.save(&p).unwrap();
        assert_eq!(store.load().unwrap(), Some(p));
    }

    #[test]
    fn a_failed_save_leaves_the_old_file_intact() {
        let dir = test_dir("failed-save");
        let store = FileStore::in_dir(&dir);
        let old = sample_profiles();
        store.save(&old).unwrap();
        let old_bytes = fs::read(store.path()).unwrap();
        // The temporary file the next save writes cannot be created: a
        // directory sits at its path (permission bits would not stop root).
        let tmp = dir.join(format!(".profiles.json.tmp-{}", std::process::id()));
        fs::create_dir(&tmp).unwrap();
        let e = store.save(&Profiles::new(vec![])).unwrap_err();
        match &e {
            StoreError::Io { path, error } => {
                assert_eq!(path, store.path(), "{e}");
                assert_eq!(error.kind(), io::ErrorKind::IsADirectory, "{e}");
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert!(
            e.to_string().contains(&store.path().display().to_string()),
            "the message names the file: {e}"
        );
        assert_eq!(
            fs::read(store.path()).unwrap(),
            old_bytes,
            "old bytes unchanged"
        );
        assert_eq!(store.load().unwrap(), Some(old.clone()), "still readable");
        // Once the obstacle is gone, saving works again.
        fs::remove_dir(&tmp).unwrap();
        store.save(&Profiles::new(vec![])).unwrap();
        assert_eq!(store.load().unwrap().unwrap().classes, vec![]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_saves_never_tear_the_file() {
        // Saves from several threads (two pools on one file, or a save
        // racing the save at shutdown) share the temporary path: each must
        // succeed and leave one whole document, never a mix of two.
        let dir = test_dir("concurrent");
        let store = FileStore::in_dir(&dir);
        let docs: Vec<Profiles> = (0..4u64)
            .map(|t| {
                Profiles::new(vec![ClassRecord {
                    class: format!("writer-{t}"),
                    runs: t,
                    samples: (0..(t + 1) * 200)
                        .map(|i| Sample::new(i, Some(t), Duration::ZERO, &Resources::NONE, None))
                        .collect(),
                }])
            })
            .collect();
        let docs = &docs;
        std::thread::scope(|s| {
            for doc in docs {
                let store = store.clone();
                s.spawn(move || {
                    for _ in 0..25 {
                        store.save(doc).unwrap();
                        let got = store.load().unwrap().unwrap();
                        assert!(docs.contains(&got), "a torn or mixed document was read");
                    }
                });
            }
        });
        let last = store.load().unwrap().unwrap();
        assert!(docs.contains(&last));
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [std::ffi::OsString::from("profiles.json")],
            "no temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memory_store_round_trip() {
        let s = MemoryStore::new();
        assert!(s.load().unwrap().is_none());
        s.save(&sample_profiles()).unwrap();
        assert_eq!(s.load().unwrap().unwrap().classes[0].runs, 2);
    }
}
