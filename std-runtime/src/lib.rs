//! # respool
//!
//! A task pool that knows what its tasks cost. Tasks declare what they need
//! (CPU, memory, IOPS, network, GPU, user-defined counts), or respool learns
//! it from earlier runs of the same class of task; a task starts only when
//! the machine (or its container) can afford it; what it really used is
//! measured and fed back.
//!
//! ```
//! use respool::Pool;
//!
//! // Capacity defaults to the machine's (or container's) CPU and memory.
//! let pool = Pool::builder().workers(4).memory("2GiB").build()?;
//!
//! // Tasks without requirements take the fast path: plain pool speed.
//! let sum = pool.submit(|| (1..=100u64).sum::<u64>())?;
//!
//! // Tasks with requirements start only when they fit.
//! let big = pool.task().memory("768MiB").cpu("1").spawn(|_ctx| {
//!     let buf = vec![1u8; 768 << 20];
//!     buf.iter().map(|&b| u64::from(b)).sum::<u64>()
//! })?;
//!
//! assert_eq!(sum.join()?, 5050);
//! assert_eq!(big.join()?, 768 << 20);
//!
//! // A task that can never fit is refused at once, with the reason.
//! let err = pool.task().memory("3GiB").spawn(|_| ()).unwrap_err();
//! assert!(err.to_string().contains("memory needs"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See [`Pool`] for the path of a task and the lifecycle, [`TaskBuilder`] for
//! what a task can declare, and [`units`] for the accepted amount syntax.
#![warn(missing_docs)]

mod admit;
pub mod alloc;
mod barrier;
mod builder;
mod config;
pub mod cost;
mod engine;
mod error;
pub mod export;
mod handle;
mod job;
pub mod learn;
pub mod limits;
pub mod measure;
mod metrics;
pub mod observe;
mod place;
mod pool;
mod runq;
mod scheduler;
mod scope;
mod snapshot;
pub mod store;
mod sync;
mod task;
mod timer;
mod waitq;
mod work;
mod worker;

pub mod batch;
pub mod sys;
pub mod units;

pub use builder::Builder;
pub use error::{BuildError, SubmitError, TaskError};
pub use handle::{Canceller, JoinHandle, TaskContext, is_cancelled};
pub use metrics::LatencySummary;
pub use place::DomainSpec;
pub use pool::Pool;
pub use respool_core as core;
pub use respool_core::admission::{Policy, Urgency};
pub use respool_core::{Dim, Ppm, Resources, Shortfall};
pub use scope::Scope;
pub use snapshot::PoolSnapshot;
pub use task::{Backoff, TaskBuilder};
pub use work::Unstarted;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The user guide's Rust examples (`docs/guide/`), compiled and run as
/// doctests (the observability chapter's are respool-observe's).
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../../docs/guide/src/introduction.md")]
    struct Introduction;
    #[doc = include_str!("../../docs/guide/src/getting-started.md")]
    struct GettingStarted;
    #[doc = include_str!("../../docs/guide/src/resources.md")]
    struct Resources;
    #[doc = include_str!("../../docs/guide/src/admission.md")]
    struct Admission;
    #[doc = include_str!("../../docs/guide/src/learning.md")]
    struct Learning;
    #[doc = include_str!("../../docs/guide/src/monitors.md")]
    struct Monitors;
    #[doc = include_str!("../../docs/guide/src/placement.md")]
    struct Placement;
    #[doc = include_str!("../../docs/guide/src/fleet.md")]
    struct Fleet;
    #[doc = include_str!("../../docs/guide/src/c-api.md")]
    struct CApi;
    #[doc = include_str!("../../docs/guide/src/troubleshooting.md")]
    struct Troubleshooting;
    #[doc = include_str!("../../docs/guide/src/features.md")]
    struct Features;
    #[doc = include_str!("../../docs/guide/src/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../../docs/guide/src/migrating/README.md")]
    struct Migrating;
    #[doc = include_str!("../../docs/guide/src/migrating/go-workerpool.md")]
    struct FromGo;
    #[doc = include_str!("../../docs/guide/src/migrating/rayon.md")]
    struct FromRayon;
    #[doc = include_str!("../../docs/guide/src/migrating/threadpool.md")]
    struct FromThreadpool;
    #[doc = include_str!("../../docs/guide/src/migrating/tokio.md")]
    struct FromTokio;
    #[doc = include_str!("../../docs/guide/src/migrating/parallel.md")]
    struct FromParallel;
}
