//! A live dashboard, secure by default: one HTTP server on std threads,
//! one embedded page, a server-sent-events feed and `/metrics`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use respool::Pool;
//! use respool_observe::SnapshotSource;
//! use respool_observe::dashboard::{Dashboard, Live};
//!
//! let live = Arc::new(Live::new());
//! let pool = Arc::new(Pool::builder().workers(4).observer(live.clone()).build()?);
//! let dashboard = Dashboard::builder()
//!     .snapshot(SnapshotSource::of(&pool))
//!     .live(live)
//!     .start()?;
//! // Prints `respool dashboard: http://127.0.0.1:PORT/?token=...`.
//! println!("respool dashboard: {}", dashboard.url());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it serves
//!
//! | path | what |
//! |---|---|
//! | `/` | the page (HTML, inline script and style, no external request) |
//! | `/api/state` | the state as JSON: the pool's [`PoolSnapshot`](respool::PoolSnapshot) figures, the [`Live`] observer's running tasks, waiters and refusals, and the extra panels |
//! | `/events` | the same JSON pushed every refresh as server-sent events |
//! | `/metrics` | the text of the [`metrics`](Builder::metrics) closure (404 without one) |
//!
//! # Security
//!
//! The lessons of Ray's dashboard (an unauthenticated API on all
//! interfaces, CVE-2023-48022; a browser check that trusted `User-Agent`,
//! CVE-2025-62593; a method the check skipped, CVE-2026-27482), checked on
//! every request, whatever its method or path, in this order:
//!
//! 1. **`Host`** must name an address the server is bound to
//!    (`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`, the bind address,
//!    or a name given with [`Builder::allow_host`]), else 403. This defeats
//!    DNS rebinding, where a page of the attacker's domain resolves to
//!    127.0.0.1: its requests carry the attacker's name in `Host`, and in
//!    `Origin` too, so comparing the two would not help.
//! 2. **`Origin`**, when present, must be the page's own origin
//!    (`http://` + the checked `Host`), else 403.
//! 3. **The token** (random, 128 bits from the OS, unless you give one) as
//!    `Authorization: Bearer <token>`, `?token=<token>`, or the cookie the
//!    page load sets (`respool_token_<port>`, `HttpOnly; SameSite=Strict`),
//!    compared in constant time, else 401. `EventSource` cannot set
//!    headers, so the feed takes the query or the cookie.
//! 4. **Read-only**: `GET` and `HEAD` only, else 405; no request body.
//!
//! `User-Agent` is never read. The server binds 127.0.0.1 unless told
//! otherwise; a non-loopback address needs [`Builder::allow_remote`]. At
//! most [`max_connections`](Builder::max_connections) connections at once
//! (beyond that, 503 and close); a request head of at most
//! [`max_header_bytes`](Builder::max_header_bytes) (else 431), read within
//! [`request_timeout`](Builder::request_timeout) (else 408), so a slow
//! client cannot hold a thread; malformed requests get 400, never a panic.
//! Every connection serves one request (`Connection: close`).
//!
//! # Cost
//!
//! One thread blocked in `accept`, one per open connection blocked in
//! `read` or, for a feed, asleep on a condition variable until the next
//! refresh: an idle dashboard uses no CPU between refreshes. Each refresh
//! of each feed takes one snapshot and builds one JSON document.

mod http;
mod live;
mod state;

pub use live::{Live, REFUSALS_KEPT};

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::SnapshotSource;

/// The text of `/metrics` (Prometheus exposition, say).
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// An extra JSON panel, computed at each refresh.
pub type PanelFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Why a dashboard could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum DashboardError {
    /// The bind address is not a loopback address and
    /// [`Builder::allow_remote`] was not set.
    RemoteNotAllowed(SocketAddr),
    /// The token is too short, too long, or has characters other than
    /// `A-Z a-z 0-9 - . _ ~` (it travels unescaped in URLs and cookies).
    InvalidToken,
    /// A limit is zero or out of its range.
    InvalidLimit(&'static str),
    /// A panel name is empty, too long, repeated, or not `A-Z a-z 0-9 _ -`.
    InvalidPanel(String),
    /// An allowed host is not `name:port` in `A-Z a-z 0-9 . - : [ ]`.
    InvalidHost(String),
    /// The operating system gave no random bytes for the token.
    Random(String),
    /// Binding, or starting the server's thread, failed.
    Io(std::io::Error),
}

impl fmt::Display for DashboardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DashboardError::RemoteNotAllowed(a) => write!(
                f,
                "refusing to bind the dashboard to {a}, which is not a loopback address: \
                 anyone who can reach it could try the token; call allow_remote(true) to mean it"
            ),
            DashboardError::InvalidToken => {
                f.write_str("invalid dashboard token: 16 to 256 characters of A-Z a-z 0-9 - . _ ~")
            }
            DashboardError::InvalidLimit(what) => {
                write!(f, "invalid dashboard limit: {what} is out of range")
            }
            DashboardError::InvalidPanel(name) => write!(
                f,
                "invalid dashboard panel name {name:?}: 1 to 64 characters of A-Z a-z 0-9 _ -, \
                 not repeated, not \"pool\", \"live\" or \"refresh_ms\""
            ),
            DashboardError::InvalidHost(h) => write!(
                f,
                "invalid allowed host {h:?}: expected name:port (A-Z a-z 0-9 . - : [ ])"
            ),
            DashboardError::Random(e) => write!(f, "no random bytes for the dashboard token: {e}"),
            DashboardError::Io(e) => write!(f, "dashboard server: {e}"),
        }
    }
}

impl std::error::Error for DashboardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DashboardError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for DashboardError {
    fn from(e: std::io::Error) -> DashboardError {
        DashboardError::Io(e)
    }
}

/// Configures a [`Dashboard`]; from [`Dashboard::builder`].
#[must_use]
pub struct Builder {
    bind: SocketAddr,
    allow_remote: bool,
    allow_hosts: Vec<String>,
    token: Option<String>,
    refresh: Duration,
    snapshot: SnapshotSource,
    live: Option<Arc<Live>>,
    metrics: Option<(MetricsFn, String)>,
    panels: Vec<(String, PanelFn)>,
    max_connections: usize,
    max_header_bytes: usize,
    request_timeout: Duration,
    write_timeout: Duration,
    print_url: bool,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("bind", &self.bind)
            .field("allow_remote", &self.allow_remote)
            .field("allow_hosts", &self.allow_hosts)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("refresh", &self.refresh)
            .field("live", &self.live.is_some())
            .field("metrics", &self.metrics.is_some())
            .field(
                "panels",
                &self.panels.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("max_connections", &self.max_connections)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The default bound on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// The default bound on a request's head (request line and headers).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;

/// The most headers a request may have.
const MAX_HEADERS: usize = 64;

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            allow_remote: false,
            allow_hosts: Vec::new(),
            token: None,
            refresh: Duration::from_secs(1),
            snapshot: SnapshotSource::none(),
            live: None,
            metrics: None,
            panels: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            print_url: true,
        }
    }
}

impl Builder {
    /// Where to listen (default `127.0.0.1:0`, a free port). A non-loopback
    /// address also needs [`allow_remote`](Builder::allow_remote).
    pub fn bind(mut self, addr: SocketAddr) -> Builder {
        self.bind = addr;
        self
    }

    /// Allows a non-loopback bind address (default: refused with
    /// [`DashboardError::RemoteNotAllowed`]). The token and the `Host` check
    /// still apply; requests must name the bind address (or, bound to
    /// `0.0.0.0` or `::`, an IP address of the machine) or a host given with
    /// [`allow_host`](Builder::allow_host).
    pub fn allow_remote(mut self, allow: bool) -> Builder {
        self.allow_remote = allow;
        self
    }

    /// Accepts `Host: <host>` too (`name:port`, as a browser sends it), for
    /// a dashboard reached by a name of yours (behind an SSH tunnel or a
    /// proxy that keeps `Host`).
    pub fn allow_host(mut self, host: impl Into<String>) -> Builder {
        self.allow_hosts.push(host.into());
        self
    }

    /// The token (default: 128 random bits from the operating system, as 32
    /// hex digits). 16 to 256 characters of `A-Z a-z 0-9 - . _ ~`.
    pub fn token(mut self, token: impl Into<String>) -> Builder {
        self.token = Some(token.into());
        self
    }

    /// How often the feed pushes the state (default 1 s; at least 10 ms).
    pub fn refresh(mut self, every: Duration) -> Builder {
        self.refresh = every.max(Duration::from_millis(10));
        self
    }

    /// Where the pool's figures come from (default: none, `"pool": null`).
    pub fn snapshot(mut self, source: SnapshotSource) -> Builder {
        self.snapshot = source;
        self
    }

    /// The [`Live`] observer installed on the pool: running tasks, waiters,
    /// refusals.
    pub fn live(mut self, live: Arc<Live>) -> Builder {
        self.live = Some(live);
        self
    }

    /// The text of `/metrics`, served as `text/plain; version=0.0.4`.
    pub fn metrics(self, text: MetricsFn) -> Builder {
        self.metrics_with_type(text, "text/plain; version=0.0.4; charset=utf-8")
    }

    /// The text of `/metrics`, with its `Content-Type` (OpenMetrics, say).
    pub fn metrics_with_type(mut self, text: MetricsFn, content_type: &str) -> Builder {
        // A header value: no control characters.
        let ct: String = content_type.chars().filter(|c| !c.is_control()).collect();
        self.metrics = Some((text, ct));
        self
    }

    /// An extra JSON panel under `"panels": {name: ...}` of the state. The
    /// page renders `slow` (from the slow-task detector:
    /// `{"slow": [{"task", "class", "kind", "elapsed_s", "threshold_s",
    /// "worker", "cancelled"}]}`) as its "Slow tasks" section, and any other
    /// panel as JSON text.
    pub fn panel(mut self, name: impl Into<String>, panel: PanelFn) -> Builder {
        self.panels.push((name.into(), panel));
        self
    }

    /// The most connections open at once (default 16); beyond it a
    /// connection gets 503 and is closed.
    pub fn max_connections(mut self, n: usize) -> Builder {
        self.max_connections = n;
        self
    }

    /// The largest request head, request line and headers (default 8 KiB,
    /// at most 1 MiB: each connection holds a buffer this size); a larger
    /// one gets 431.
    pub fn max_header_bytes(mut self, n: usize) -> Builder {
        self.max_header_bytes = n;
        self
    }

    /// How long a client may take to send its request head (default 10 s);
    /// then 408 and close.
    pub fn request_timeout(mut self, t: Duration) -> Builder {
        self.request_timeout = t;
        self
    }

    /// Whether [`start`](Builder::start) prints the URL to stderr (default
    /// true, as Jupyter does).
    pub fn print_url(mut self, on: bool) -> Builder {
        self.print_url = on;
        self
    }

    /// Binds and starts the server.
    ///
    /// # Errors
    ///
    /// [`DashboardError::RemoteNotAllowed`] for a non-loopback address
    /// without [`allow_remote`](Builder::allow_remote); `InvalidToken`,
    /// `InvalidLimit`, `InvalidPanel`, `InvalidHost` for bad settings;
    /// `Random` when the OS gives no random bytes; `Io` when binding fails.
    pub fn start(self) -> Result<Dashboard, DashboardError> {
        if !self.bind.ip().is_loopback() && !self.allow_remote {
            return Err(DashboardError::RemoteNotAllowed(self.bind));
        }
        if self.max_connections == 0 {
            return Err(DashboardError::InvalidLimit("max_connections"));
        }
        if !(64..=1 << 20).contains(&self.max_header_bytes) {
            return Err(DashboardError::InvalidLimit(
                "max_header_bytes (64 bytes to 1 MiB)",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(DashboardError::InvalidLimit("request_timeout"));
        }
        let token = match self.token {
            Some(t) => {
                if !valid_token(&t) {
                    return Err(DashboardError::InvalidToken);
                }
                t
            }
            None => random_hex(16)?,
        };
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &self.panels {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && !names.contains(&name.as_str())
                && !["pool", "live", "refresh_ms"].contains(&name.as_str());
            if !ok {
                return Err(DashboardError::InvalidPanel(name.clone()));
            }
            names.push(name);
        }
        for h in &self.allow_hosts {
            let ok = !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                });
            if !ok {
                return Err(DashboardError::InvalidHost(h.clone()));
            }
        }

        let listener = TcpListener::bind(self.bind)?;
        let local = listener.local_addr()?;
        let port = local.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            host_of(local),
        ];
        hosts.extend(self.allow_hosts.iter().map(|h| h.to_ascii_lowercase()));
        if port == 80 {
            let bare: Vec<String> = hosts
                .iter()
                .filter_map(|h| h.strip_suffix(":80").map(str::to_owned))
                .collect();
            hosts.extend(bare);
        }
        hosts.sort();
        hosts.dedup();

        let shared = Arc::new(http::Shared {
            token,
            port,
            hosts,
            any_ip_host: local.ip().is_unspecified(),
            refresh: self.refresh,
            snapshot: self.snapshot,
            live: self.live,
            metrics: self.metrics,
            panels: self.panels,
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            request_timeout: self.request_timeout,
            write_timeout: self.write_timeout,
            stop: std::sync::Mutex::new(false),
            wake: std::sync::Condvar::new(),
            conns: std::sync::Mutex::new(http::Conns::default()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("respool-dashboard".into())
                .spawn(move || http::accept_loop(&shared, &listener))?
        };
        let dashboard = Dashboard {
            shared,
            local,
            accept: Some(accept),
        };
        if self.print_url {
            eprintln!("respool dashboard: {}", dashboard.url());
        }
        Ok(dashboard)
    }
}

/// `ip:port` as a browser writes it in `Host` (IPv6 in brackets).
fn host_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

fn valid_token(t: &str) -> bool {
    (16..=256).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `n` random bytes from the operating system, as hex.
pub(crate) fn random_hex(n: usize) -> Result<String, DashboardError> {
    let mut bytes = [0u8; 32];
    let bytes = &mut bytes[..n.min(32)];
    getrandom::fill(bytes).map_err(|e| DashboardError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A running dashboard server. Stops on [`shutdown`](Dashboard::shutdown)
/// or drop: its threads are joined, none is left behind.
pub struct Dashboard {
    shared: Arc<http::Shared>,
    local: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("local_addr", &self.local)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A builder with the secure defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The address it listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The token every request must carry.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The page's URL with the token (`http://127.0.0.1:PORT/?token=...`);
    /// bound to `0.0.0.0` or `::`, it names the loopback address.
    #[must_use]
    pub fn url(&self) -> String {
        let host = host_of(self.wake_addr());
        format!("http://{host}/?token={}", self.shared.token)
    }

    /// Connections open now.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// The state JSON that `/api/state` serves.
    #[must_use]
    pub fn state(&self) -> serde_json::Value {
        self.shared.state()
    }

    /// Stops the server: no new connection; open ones are closed; every
    /// thread is joined.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn wake_addr(&self) -> SocketAddr {
        match self.local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.local.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), self.local.port())
            }
            _ => self.local,
        }
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.begin_stop();
        // Wake the accept loop with a connection of our own; it sees the
        // flag and returns.
        let _ = TcpStream::connect_timeout(&self.wake_addr(), Duration::from_secs(5));
        let _ = accept.join();
        for handle in self.shared.close_all() {
            let _ = handle.join();
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.stop();
    }
}
