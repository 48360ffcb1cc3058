//! The server: an accept loop, one thread per connection (bounded), one
//! request per connection, every check on every request.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Live, MAX_HEADERS, MetricsFn, PanelFn};
use crate::SnapshotSource;

/// The page, with `__NONCE__` where each response's CSP nonce goes.
const PAGE: &str = include_str!("page.html");

/// What the server threads share.
pub(super) struct Shared {
    pub(super) token: String,
    pub(super) port: u16,
    /// Accepted `Host` values, lower case.
    pub(super) hosts: Vec<String>,
    /// Bound to `0.0.0.0` or `::`: any IP-literal `Host` with our port (an
    /// IP literal cannot be rebound, only a name can).
    pub(super) any_ip_host: bool,
    pub(super) refresh: Duration,
    pub(super) snapshot: SnapshotSource,
    pub(super) live: Option<Arc<Live>>,
    pub(super) metrics: Option<(MetricsFn, String)>,
    pub(super) panels: Vec<(String, PanelFn)>,
    pub(super) max_connections: usize,
    pub(super) max_header_bytes: usize,
    pub(super) request_timeout: Duration,
    pub(super) write_timeout: Duration,
    pub(super) stop: Mutex<bool>,
    /// Wakes feeds at shutdown.
    pub(super) wake: Condvar,
    pub(super) conns: Mutex<Conns>,
}

/// Open connections: a clone of each stream (to close it at shutdown) and
/// each thread's handle (to join it).
#[derive(Default)]
pub(super) struct Conns {
    next: u64,
    open: HashMap<u64, TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(super) fn open_connections(&self) -> usize {
        lock(&self.conns).open.len()
    }

    fn stopping(&self) -> bool {
        *lock(&self.stop)
    }

    pub(super) fn begin_stop(&self) {
        *lock(&self.stop) = true;
        self.wake.notify_all();
    }

    /// Closes every open connection and hands back the threads to join.
    pub(super) fn close_all(&self) -> Vec<JoinHandle<()>> {
        let mut conns = lock(&self.conns);
        for s in conns.open.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        std::mem::take(&mut conns.threads)
    }

    /// The state document (see the module documentation).
    pub(super) fn state(&self) -> serde_json::Value {
        let pool = self
            .snapshot
            .take()
            .map(|s| super::state::snapshot_json(&s));
        let live = self.live.as_ref().map(|l| l.json());
        let mut panels = serde_json::Map::new();
        for (name, f) in &self.panels {
            // A panel of the user's that panics shows as null.
            let v = catch_unwind(AssertUnwindSafe(|| f())).unwrap_or(serde_json::Value::Null);
            panels.insert(name.clone(), v);
        }
        serde_json::json!({
            "refresh_ms": u64::try_from(self.refresh.as_millis()).unwrap_or(u64::MAX),
            "pool": pool,
            "live": live,
            "panels": panels,
        })
    }
}

pub(super) fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(stream) = stream else {
            // EMFILE and the like: pause rather than spin, then go on.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = stream.set_write_timeout(Some(shared.write_timeout));
        let mut conns = lock(&shared.conns);
        conns.threads.retain(|h| !h.is_finished());
        if conns.open.len() >= shared.max_connections {
            drop(conns);
            let mut s = stream;
            let _ = respond(
                &mut s,
                &Response::status(503, "Service Unavailable", "too many connections\n"),
                false,
            );
            let _ = s.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let id = conns.next;
        conns.next += 1;
        conns.open.insert(id, clone);
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("respool-dashboard-conn".into())
                .spawn(move || {
                    let _guard = Forget {
                        shared: &shared,
                        id,
                    };
                    serve(&shared, stream);
                })
        };
        match worker {
            Ok(h) => conns.threads.push(h),
            Err(_) => drop(conns.open.remove(&id)),
        }
    }
}

/// Removes a connection from the table when its thread ends, panic or not.
struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.shared.conns).open.remove(&self.id) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A response to write.
struct Response {
    code: u16,
    reason: &'static str,
    content_type: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// A feed: no `Content-Length`, the body runs until the close.
    streaming: bool,
}

impl Response {
    fn status(code: u16, reason: &'static str, body: &str) -> Response {
        Response {
            code,
            reason,
            content_type: "text/plain; charset=utf-8".into(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            streaming: false,
        }
    }

    fn with(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

fn respond(stream: &mut TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\nConnection: close\r\n",
        r.code, r.reason, r.content_type,
    );
    if !r.streaming {
        out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    for (name, value) in &r.headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&r.body);
    }
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Reads one request head (bounded, within the deadline) and answers it.
fn serve(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.request_timeout;
    let mut buf = vec![0u8; shared.max_header_bytes];
    let mut len = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            let _ = respond(
                &mut stream,
                &Response::status(408, "Request Timeout", "request timeout\n"),
                false,
            );
            return;
        }
        let _ = stream.set_read_timeout(Some(deadline - now));
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) => return, // closed before a whole request
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue; // the deadline check answers 408
            }
            Err(_) => return,
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let (r, head_only, feed) = answer(shared, &req);
                if respond(&mut stream, &r, head_only).is_ok() && feed && !head_only {
                    run_feed(shared, &mut stream);
                }
                return;
            }
            Ok(httparse::Status::Partial) => {
                if len == buf.len() {
                    let r = Response::status(
                        431,
                        "Request Header Fields Too Large",
                        "request head too large\n",
                    );
                    let _ = respond(&mut stream, &r, false);
                    return;
                }
            }
            Err(httparse::Error::TooManyHeaders) => {
                let r =
                    Response::status(431, "Request Header Fields Too Large", "too many headers\n");
                let _ = respond(&mut stream, &r, false);
                return;
            }
            Err(_) => {
                let r = Response::status(400, "Bad Request", "malformed request\n");
                let _ = respond(&mut stream, &r, false);
                return;
            }
        }
    }
}

/// The one header named `name`: `Ok(None)` if absent, `Err` if repeated or
/// not UTF-8.
fn single<'h>(req: &httparse::Request<'_, 'h>, name: &str) -> Result<Option<&'h str>, ()> {
    let mut found = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case(name) {
            if found.is_some() {
                return Err(());
            }
            found = Some(std::str::from_utf8(h.value).map_err(|_| ())?.trim());
        }
    }
    Ok(found)
}

/// Compares in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

impl Shared {
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        if self.any_ip_host {
            // `ip:port` or `[ipv6]:port`, our port, an IP literal.
            if let Some((ip, port)) = host.rsplit_once(':') {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                return port == self.port.to_string() && ip.parse::<IpAddr>().is_ok();
            }
        }
        false
    }

    fn token_ok(&self, req: &httparse::Request<'_, '_>, query: &str) -> bool {
        let want = self.token.as_bytes();
        let mut ok = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("authorization") {
                let v = h.value;
                for scheme in [&b"Bearer "[..], &b"token "[..]] {
                    if v.len() > scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme) {
                        ok |= same(v[scheme.len()..].trim_ascii(), want);
                    }
                }
            } else if h.name.eq_ignore_ascii_case("cookie") {
                let cookie = format!("respool_token_{}", self.port);
                for part in h.value.split(|&b| b == b';') {
                    let part = part.trim_ascii();
                    if let Some(eq) = part.iter().position(|&b| b == b'=') {
                        if &part[..eq] == cookie.as_bytes() {
                            ok |= same(&part[eq + 1..], want);
                        }
                    }
                }
            }
        }
        for pair in query.split('&') {
            if let Some(v) = pair.strip_prefix("token=") {
                ok |= same(v.as_bytes(), want);
            }
        }
        ok
    }
}

/// Checks a parsed request and builds its response; also says whether it
/// is a `HEAD` and whether a feed follows.
fn answer(shared: &Shared, req: &httparse::Request<'_, '_>) -> (Response, bool, bool) {
    let bad = |why: &str| Response::status(400, "Bad Request", why);
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return (bad("malformed request\n"), false, false);
    };
    let head_only = method == "HEAD";
    // 1. Host: present once, one we are bound to.
    let host = match single(req, "host") {
        Ok(Some(h)) if !h.is_empty() => h,
        Ok(_) => return (bad("missing Host\n"), head_only, false),
        Err(()) => return (bad("bad Host\n"), head_only, false),
    };
    if !shared.host_allowed(host) {
        let r = Response::status(403, "Forbidden", "Host is not an address of this server\n");
        return (r, head_only, false);
    }
    // 2. Origin, when present: our own.
    match single(req, "origin") {
        Ok(None) => {}
        Ok(Some(origin)) => {
            let ours = origin.len() == "http://".len() + host.len()
                && origin
                    .get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
                && origin
                    .get(7..)
                    .is_some_and(|s| s.eq_ignore_ascii_case(host));
            if !ours {
                let r = Response::status(403, "Forbidden", "cross-origin request\n");
                return (r, head_only, false);
            }
        }
        Err(()) => return (bad("bad Origin\n"), head_only, false),
    }
    // 3. The token.
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !shared.token_ok(req, query) {
        let r = Response::status(401, "Unauthorized", "401 Unauthorized: token required\n")
            .with("WWW-Authenticate", "Bearer realm=\"respool\"".into());
        return (r, head_only, false);
    }
    // 4. Read-only.
    if method != "GET" && method != "HEAD" {
        let r = Response::status(405, "Method Not Allowed", "read-only: GET and HEAD\n")
            .with("Allow", "GET, HEAD".into());
        return (r, false, false);
    }
    let has_body = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
    });
    if has_body {
        return (bad("no request body accepted\n"), head_only, false);
    }
    match path {
        "/" | "/index.html" => (page(shared), head_only, false),
        "/api/state" => {
            let body = shared.state().to_string();
            let mut r = Response::status(200, "OK", "");
            r.content_type = "application/json".into();
            r.body = body.into_bytes();
            (r, head_only, false)
        }
        "/events" => {
            let mut r = Response::status(200, "OK", "");
            r.content_type = "text/event-stream".into();
            // No length: the stream runs until either side closes.
            r.streaming = true;
            (r, head_only, true)
        }
        "/metrics" => match &shared.metrics {
            Some((f, ct)) => match catch_unwind(AssertUnwindSafe(|| f())) {
                Ok(text) => {
                    let mut r = Response::status(200, "OK", "");
                    r.content_type.clone_from(ct);
                    r.body = text.into_bytes();
                    (r, head_only, false)
                }
                Err(_) => (
                    Response::status(500, "Internal Server Error", "metrics failed\n"),
                    head_only,
                    false,
                ),
            },
            None => (
                Response::status(404, "Not Found", "no metrics configured\n"),
                head_only,
                false,
            ),
        },
        _ => (
            Response::status(404, "Not Found", "not found\n"),
            head_only,
            false,
        ),
    }
}

fn page(shared: &Shared) -> Response {
    let nonce = super::random_hex(16).unwrap_or_else(|_| "0".repeat(32));
    let body = PAGE.replace("__NONCE__", &nonce);
    let mut r = Response::status(200, "OK", "");
    r.content_type = "text/html; charset=utf-8".into();
    r.body = body.into_bytes();
    r.with(
        "Content-Security-Policy",
        format!(
            "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        ),
    )
    .with("X-Frame-Options", "DENY".into())
    .with(
        "Set-Cookie",
        format!(
            "respool_token_{}={}; HttpOnly; SameSite=Strict; Path=/",
            shared.port, shared.token
        ),
    )
}

/// Pushes the state every refresh until the client goes, or shutdown.
fn run_feed(shared: &Shared, stream: &mut TcpStream) {
    let refresh_ms = shared.refresh.as_millis();
    if stream
        .write_all(format!("retry: {refresh_ms}\n\n").as_bytes())
        .is_err()
    {
        return;
    }
    let mut stop = lock(&shared.stop);
    loop {
        if *stop {
            return;
        }
        drop(stop);
        let doc = shared.state().to_string();
        let mut msg = String::with_capacity(doc.len() + 10);
        msg.push_str("data: ");
        msg.push_str(&doc);
        msg.push_str("\n\n");
        if stream.write_all(msg.as_bytes()).is_err() || stream.flush().is_err() {
            return;
        }
        stop = lock(&shared.stop);
        // Asleep until the next refresh (or shutdown): no CPU in between.
        let deadline = Instant::now() + shared.refresh;
        loop {
            let now = Instant::now();
            if *stop || now >= deadline {
                break;
            }
            stop = shared
                .wake
                .wait_timeout(stop, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}
