//! The dashboard server over a plain `TcpStream`: the token on every
//! request and method (header, query, cookie), `Host` and `Origin` checks,
//! read-only methods, the loopback default, the connection cap, bounded
//! request heads, a table of malformed requests, the feed, and the state
//! against `pool.snapshot()`.

#![cfg(feature = "dashboard")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use respool::{Dim, DomainSpec, Pool, Resources, SubmitError};
use respool_observe::SnapshotSource;
use respool_observe::dashboard::{Dashboard, DashboardError, Live};
use serde_json::Value;

/// Only a guard against a hung test, never a way to wait for something.
const SAFETY: Duration = Duration::from_secs(60);
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn quiet() -> respool_observe::dashboard::Builder {
    Dashboard::builder().print_url(false).token(TOKEN)
}

fn start() -> Dashboard {
    quiet()
        .metrics(Arc::new(|| "respool_up 1\n".to_owned()))
        .start()
        .unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(SAFETY)).unwrap();
    s
}

/// Sends `bytes`, reads the whole answer (the server closes after one).
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = connect(addr);
    // The server may answer and close before reading everything (a 431):
    // a failed write is fine, what it answered is what counts.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// `method path` with `Host: 127.0.0.1:PORT` and `extra` header lines.
fn request(d: &Dashboard, method: &str, path: &str, extra: &[&str]) -> String {
    let addr = d.local_addr();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n",
        addr.port()
    );
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes())
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

#[test]
fn the_token_is_required_and_accepted_three_ways() {
    let d = start();
    let port = d.local_addr().port();
    // None, wrong, wrong length, a prefix: 401.
    for extra in [
        vec![],
        vec!["Authorization: Bearer ffffffffffffffffffffffffffffffff".to_owned()],
        vec!["Authorization: Bearer 0123".to_owned()],
        vec![format!("Cookie: respool_token_{port}=nope")],
        // Another port's dashboard cookie is not ours.
        vec![format!(
            "Cookie: respool_token_{}={TOKEN}",
            port.wrapping_add(1)
        )],
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        for path in ["/", "/api/state", "/events", "/metrics", "/nothing"] {
            let r = request(&d, "GET", path, &extra);
            assert_eq!(status_of(&r), 401, "{path} {extra:?}: {r}");
            assert!(!r.contains("respool_up"), "{r}");
        }
    }
    let r = request(&d, "GET", "/api/state?token=wrongwrongwrongwrong", &[]);
    assert_eq!(status_of(&r), 401);
    // Header (Bearer, and Jupyter's "token"), query, cookie: 200.
    for (path, extra) in [
        ("/api/state", bearer()),
        ("/api/state", format!("Authorization: token {TOKEN}")),
        ("/api/state", format!("authorization: bearer {TOKEN}")),
        (&*format!("/api/state?token={TOKEN}"), String::new()),
        (&*format!("/api/state?x=1&token={TOKEN}"), String::new()),
        (
            "/api/state",
            format!("Cookie: a=b; respool_token_{port}={TOKEN}; c=d"),
        ),
    ] {
        let extra: Vec<&str> = [extra.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let r = request(&d, "GET", path, &extra);
        assert_eq!(status_of(&r), 200, "{path} {extra:?}: {r}");
        let v: Value = serde_json::from_str(body(&r)).unwrap();
        assert_eq!(v["refresh_ms"], 1000);
    }
    let r = request(&d, "GET", "/metrics", &[&bearer()]);
    assert_eq!(status_of(&r), 200);
    assert_eq!(
        header(&r, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(body(&r), "respool_up 1\n");
}

#[test]
fn the_page_sets_the_cookie_and_the_security_headers() {
    let d = start();
    let port = d.local_addr().port();
    let r = request(&d, "GET", &format!("/?token={TOKEN}"), &[]);
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(
        header(&r, "set-cookie"),
        Some(&*format!(
            "respool_token_{port}={TOKEN}; HttpOnly; SameSite=Strict; Path=/"
        ))
    );
    assert_eq!(header(&r, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&r, "referrer-policy"), Some("no-referrer"));
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    assert_eq!(header(&r, "x-frame-options"), Some("DENY"));
    let csp = header(&r, "content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    // The inline script and style run by the response's nonce, and the page
    // asks for nothing outside itself.
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap();
    assert_eq!(nonce.len(), 32);
    let page = body(&r);
    assert!(page.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(page.contains(&format!("<style nonce=\"{nonce}\">")));
    assert!(!page.contains("__NONCE__"));
    assert!(!page.contains("http://") && !page.contains("https://"));
    // A fresh nonce each time.
    let again = request(&d, "GET", &format!("/?token={TOKEN}"), &[]);
    assert!(!body(&again).contains(nonce));
    // HEAD: the same head, no body.
    let head = request(&d, "HEAD", "/", &[&bearer()]);
    assert_eq!(status_of(&head), 200);
    assert!(header(&head, "content-security-policy").is_some());
    assert_eq!(body(&head), "");
}

#[test]
fn a_rebinding_host_or_a_foreign_origin_is_forbidden() {
    let d = start();
    let port = d.local_addr().port();
    let addr = d.local_addr();
    let with_host = |host: &str, extra: &str| {
        raw(
            addr,
            format!(
                "GET /api/state HTTP/1.1\r\nHost: {host}\r\n{}{extra}\r\n",
                bearer() + "\r\n"
            )
            .as_bytes(),
        )
    };
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1.evil.example:{port}"),
        format!("10.0.0.1:{port}"),
    ] {
        let r = with_host(&host, "");
        assert_eq!(status_of(&r), 403, "{host}: {r}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(status_of(&with_host(&host, "")), 200, "{host}");
    }
    // Origin, when present, must be the page's own.
    let host = format!("127.0.0.1:{port}");
    for origin in [
        format!("http://evil.example:{port}"),
        "null".to_owned(),
        format!("https://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}.evil.example"),
    ] {
        let r = with_host(&host, &format!("Origin: {origin}\r\n"));
        assert_eq!(status_of(&r), 403, "{origin}: {r}");
    }
    let r = with_host(&host, &format!("Origin: http://{host}\r\n"));
    assert_eq!(status_of(&r), 200);
    // User-Agent changes nothing.
    let r = with_host(
        &format!("evil.example:{port}"),
        "User-Agent: Mozilla/5.0\r\n",
    );
    assert_eq!(status_of(&r), 403);
}

#[test]
fn every_method_is_checked_and_only_get_and_head_pass() {
    let d = start();
    let port = d.local_addr().port();
    let addr = d.local_addr();
    for method in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
    ] {
        for path in ["/", "/api/state", "/events", "/metrics"] {
            let send = |host: &str, extra: &str| {
                let r = raw(
                    addr,
                    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").as_bytes(),
                );
                status_of(&r)
            };
            let ok_host = format!("127.0.0.1:{port}");
            let bad_host = format!("evil.example:{port}");
            let auth = bearer() + "\r\n";
            // Rebinding host, with or without the token: 403.
            assert_eq!(send(&bad_host, &auth), 403, "{method} {path}");
            assert_eq!(send(&bad_host, ""), 403, "{method} {path}");
            // Foreign origin: 403.
            let foreign = format!("{auth}Origin: http://evil.example\r\n");
            assert_eq!(send(&ok_host, &foreign), 403, "{method} {path}");
            // No token: 401.
            assert_eq!(send(&ok_host, ""), 401, "{method} {path}");
            // Authorised: read-only.
            let expect = if method == "GET" || method == "HEAD" {
                200
            } else {
                405
            };
            if path == "/events" && expect == 200 {
                continue; // a feed: tested below
            }
            assert_eq!(send(&ok_host, &auth), expect, "{method} {path}");
        }
    }
    // A GET with a body is refused.
    let r = request(&d, "GET", "/api/state", &[&bearer(), "Content-Length: 4"]);
    assert_eq!(status_of(&r), 400);
    let r = request(
        &d,
        "GET",
        "/api/state",
        &[&bearer(), "Transfer-Encoding: chunked"],
    );
    assert_eq!(status_of(&r), 400);
}

#[test]
fn the_feed_needs_the_token_and_pushes_the_state() {
    let live = Arc::new(Live::new());
    let d = quiet()
        .refresh(Duration::from_millis(20))
        .live(live)
        .start()
        .unwrap();
    let r = request(&d, "GET", "/events", &[]);
    assert_eq!(status_of(&r), 401);
    assert!(!r.contains("data:"));
    let r = request(&d, "GET", "/events?token=wrongwrongwrongwrongwrong", &[]);
    assert_eq!(status_of(&r), 401);

    let mut s = connect(d.local_addr());
    write!(
        s,
        "GET /events?token={TOKEN} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
        d.local_addr().port()
    )
    .unwrap();
    let mut lines = BufReader::new(s);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut head = Vec::new();
    loop {
        line.clear();
        lines.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push(line.trim().to_ascii_lowercase());
    }
    assert!(head.contains(&"content-type: text/event-stream".to_owned()));
    assert!(!head.iter().any(|h| h.starts_with("content-length")));
    // Three documents, one per refresh.
    let mut docs = 0;
    while docs < 3 {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "the feed ended");
        if let Some(json) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["refresh_ms"], 20);
            assert!(v["live"]["running"].is_array());
            docs += 1;
        }
    }
    // Shutdown ends the feed (and returns although it is open).
    d.shutdown();
    let mut rest = String::new();
    let _ = lines.read_to_string(&mut rest);
}

#[test]
fn a_non_loopback_bind_needs_allow_remote() {
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let err = quiet().bind(any).start().unwrap_err();
    assert!(matches!(err, DashboardError::RemoteNotAllowed(_)), "{err}");
    assert!(err.to_string().contains("allow_remote"), "{err}");
    let d = quiet().bind(any).allow_remote(true).start().unwrap();
    let port = d.local_addr().port();
    assert!(
        d.url()
            .starts_with(&format!("http://127.0.0.1:{port}/?token="))
    );
    // Still the token, and still no foreign names in Host.
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let get = |host: &str, auth: bool| {
        let extra = if auth {
            bearer() + "\r\n"
        } else {
            String::new()
        };
        status_of(&raw(
            to,
            format!("GET /api/state HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").as_bytes(),
        ))
    };
    assert_eq!(get(&format!("127.0.0.1:{port}"), false), 401);
    assert_eq!(get(&format!("127.0.0.1:{port}"), true), 200);
    assert_eq!(get(&format!("192.168.1.20:{port}"), true), 200);
    assert_eq!(get(&format!("evil.example:{port}"), true), 403);
    // An explicitly allowed name.
    let d2 = quiet()
        .bind(any)
        .allow_remote(true)
        .allow_host("dash.internal:9999")
        .start()
        .unwrap();
    let to2 = SocketAddr::from(([127, 0, 0, 1], d2.local_addr().port()));
    let r = raw(
        to2,
        format!(
            "GET /api/state HTTP/1.1\r\nHost: dash.internal:9999\r\n{}\r\n\r\n",
            bearer()
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&r), 200, "{r}");
}

#[test]
fn bad_settings_are_typed_errors() {
    for bad in [
        "short",
        &"x".repeat(257),
        "has space in it....",
        "semi;colon;is;bad;",
    ] {
        let err = Dashboard::builder()
            .print_url(false)
            .token(bad)
            .start()
            .unwrap_err();
        assert!(matches!(err, DashboardError::InvalidToken), "{bad}: {err}");
    }
    let err = quiet().max_connections(0).start().unwrap_err();
    assert!(matches!(err, DashboardError::InvalidLimit(_)));
    let err = quiet().max_header_bytes(1 << 30).start().unwrap_err();
    assert!(matches!(err, DashboardError::InvalidLimit(_)));
    let err = quiet()
        .panel("slow", Arc::new(|| Value::Null))
        .panel("slow", Arc::new(|| Value::Null))
        .start()
        .unwrap_err();
    assert!(matches!(err, DashboardError::InvalidPanel(_)));
    let err = quiet()
        .panel("a b", Arc::new(|| Value::Null))
        .start()
        .unwrap_err();
    assert!(matches!(err, DashboardError::InvalidPanel(_)));
    let err = quiet().allow_host("bad host\r\n").start().unwrap_err();
    assert!(matches!(err, DashboardError::InvalidHost(_)));
    // The default token: 128 random bits, 32 hex digits, new each time.
    let a = Dashboard::builder().print_url(false).start().unwrap();
    let b = Dashboard::builder().print_url(false).start().unwrap();
    assert_eq!(a.token().len(), 32);
    assert!(a.token().bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.token(), b.token());
    assert!(a.local_addr().ip().is_loopback());
    assert_eq!(
        a.url(),
        format!(
            "http://127.0.0.1:{}/?token={}",
            a.local_addr().port(),
            a.token()
        )
    );
}

#[test]
fn connections_beyond_the_cap_get_503_and_the_slot_comes_back() {
    let d = quiet()
        .max_connections(2)
        .request_timeout(SAFETY)
        .start()
        .unwrap();
    let addr = d.local_addr();
    // Two idle connections hold both slots (they send nothing; the server
    // accepts in order, so both are taken before the third is seen).
    let idle: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    let r = request(&d, "GET", "/api/state", &[&bearer()]);
    assert_eq!(status_of(&r), 503, "{r}");
    assert_eq!(d.connections(), 2);
    // When they go, a request gets through again (poll for the server to
    // notice the close).
    drop(idle);
    let mut tries = 0;
    loop {
        let r = request(&d, "GET", "/api/state", &[&bearer()]);
        if status_of(&r) == 200 {
            break;
        }
        assert_eq!(status_of(&r), 503);
        tries += 1;
        assert!(tries < 100_000, "the slots never came back");
        std::thread::yield_now();
    }
}

#[test]
fn oversized_request_heads_are_refused() {
    let d = start();
    let port = d.local_addr().port();
    // One huge header.
    let big = format!(
        "GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{}\r\nX-Big: {}\r\n\r\n",
        bearer(),
        "a".repeat(10_000)
    );
    let r = raw(d.local_addr(), big.as_bytes());
    assert_eq!(status_of(&r), 431, "{r}");
    // Too many headers.
    let mut many = format!(
        "GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{}\r\n",
        bearer()
    );
    for i in 0..100 {
        many.push_str(&format!("X-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    let r = raw(d.local_addr(), many.as_bytes());
    assert_eq!(status_of(&r), 431, "{r}");
    // A request head that never ends (no blank line) but keeps coming:
    // refused at the bound, not buffered without end.
    let mut s = connect(d.local_addr());
    let mut sent = 0usize;
    let chunk = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    let _ = s.write_all(chunk.as_bytes());
    let filler = [b'x'; 1024];
    let _ = s.write_all(b"X-Long: ");
    while sent < 64 * 1024 {
        if s.write_all(&filler).is_err() {
            break;
        }
        sent += filler.len();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"));
}

#[test]
fn malformed_requests_never_crash_the_server() {
    let d = start();
    let port = d.local_addr().port();
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let auth = bearer() + "\r\n";
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        (
            "garbage".into(),
            b"\x00\x01\x02\xff\xfe garbage \r\n\r\n".to_vec(),
        ),
        ("empty line".into(), b"\r\n\r\n".to_vec()),
        ("truncated request line".into(), b"GET /api/sta".to_vec()),
        ("no version".into(), b"GET /\r\n\r\n".to_vec()),
        (
            "bad version".into(),
            format!("GET / HTTP/9.9\r\n{host}\r\n").into_bytes(),
        ),
        (
            "missing Host".into(),
            format!("GET /api/state HTTP/1.1\r\n{auth}\r\n").into_bytes(),
        ),
        (
            "two Hosts".into(),
            format!("GET /api/state HTTP/1.1\r\n{host}Host: evil.example\r\n{auth}\r\n")
                .into_bytes(),
        ),
        (
            "empty Host".into(),
            format!("GET / HTTP/1.1\r\nHost: \r\n{auth}\r\n").into_bytes(),
        ),
        (
            "invalid UTF-8 in Host".into(),
            [
                b"GET / HTTP/1.1\r\nHost: \xff\xfe:1\r\n".as_slice(),
                auth.as_bytes(),
                b"\r\n",
            ]
            .concat(),
        ),
        (
            "invalid UTF-8 in the path".into(),
            [
                b"GET /\xc3\x28 HTTP/1.1\r\n".as_slice(),
                host.as_bytes(),
                auth.as_bytes(),
                b"\r\n",
            ]
            .concat(),
        ),
        (
            "invalid UTF-8 in Authorization".into(),
            [
                b"GET / HTTP/1.1\r\n".as_slice(),
                host.as_bytes(),
                b"Authorization: Bearer \xff\r\n\r\n",
            ]
            .concat(),
        ),
        (
            "NUL in a header".into(),
            format!("GET / HTTP/1.1\r\n{host}X-A: a\0b\r\n{auth}\r\n").into_bytes(),
        ),
        (
            "header without colon".into(),
            format!("GET / HTTP/1.1\r\n{host}Nonsense\r\n\r\n").into_bytes(),
        ),
        (
            "space before colon".into(),
            format!("GET / HTTP/1.1\r\n{host}X-A : 1\r\n\r\n").into_bytes(),
        ),
        (
            "bare LF".into(),
            format!("GET / HTTP/1.1\n{host}\n").into_bytes(),
        ),
        (
            "absurd method".into(),
            format!("G\u{e9}T / HTTP/1.1\r\n{host}\r\n").into_bytes(),
        ),
        ("huge header count".into(), {
            let mut v = format!("GET / HTTP/1.1\r\n{host}").into_bytes();
            for _ in 0..1000 {
                v.extend_from_slice(b"A: b\r\n");
            }
            v.extend_from_slice(b"\r\n");
            v
        }),
        (
            "huge path".into(),
            format!("GET /{} HTTP/1.1\r\n{host}\r\n", "a".repeat(20_000)).into_bytes(),
        ),
        (
            "absolute URI".into(),
            format!("GET http://evil.example/ HTTP/1.1\r\n{host}{auth}\r\n").into_bytes(),
        ),
        (
            "token with percent".into(),
            format!("GET /?token=%00%ff HTTP/1.1\r\n{host}\r\n").into_bytes(),
        ),
        (
            "Cookie without =".into(),
            format!("GET / HTTP/1.1\r\n{host}Cookie: ;;;=;a\r\n\r\n").into_bytes(),
        ),
        (
            "Authorization scheme only".into(),
            format!("GET / HTTP/1.1\r\n{host}Authorization: Bearer\r\n\r\n").into_bytes(),
        ),
    ];
    // Random bytes too (a fixed seed: the same table each run).
    let mut rng = fastrand::Rng::with_seed(17);
    for i in 0..50 {
        let n = rng.usize(1..2000);
        let mut v: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
        if i % 2 == 0 {
            // A plausible start, then noise.
            v.splice(0..0, b"GET / HTTP/1.1\r\n".iter().copied());
            v.extend_from_slice(b"\r\n\r\n");
        }
        cases.push((format!("random {i}"), v));
    }
    for (name, bytes) in &cases {
        let mut s = connect(d.local_addr());
        let _ = s.write_all(bytes);
        // Half-close: a truncated request ends here.
        let _ = s.shutdown(Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        // Answered with an error, or closed without one; never 200 without
        // a valid token and host.
        let code = status_of(&text);
        assert!(
            out.is_empty() || [400, 401, 403, 404, 405, 408, 431].contains(&code),
            "{name}: {text}"
        );
        // And the server still answers.
        let r = request(&d, "GET", "/api/state", &[&bearer()]);
        assert_eq!(status_of(&r), 200, "after {name}");
    }
    let missing = raw(
        d.local_addr(),
        format!("GET /api/state HTTP/1.1\r\n{auth}\r\n").as_bytes(),
    );
    assert_eq!(status_of(&missing), 400);
}

fn mem(n: u64) -> Resources {
    Resources::NONE.with_saturating(Dim::Memory, n)
}

fn state(d: &Dashboard) -> Value {
    let r = request(d, "GET", "/api/state", &[&bearer()]);
    assert_eq!(status_of(&r), 200, "{r}");
    serde_json::from_str(body(&r)).unwrap()
}

#[test]
fn live_shows_running_tasks_waiters_and_refusals() {
    let live = Arc::new(Live::new());
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .capacity(mem(1000))
            .headroom(Resources::NONE)
            .observer(live.clone())
            .build()
            .unwrap(),
    );
    let d = quiet()
        .snapshot(SnapshotSource::of(&pool))
        .live(live.clone())
        .panel(
            "slow",
            Arc::new(|| {
                serde_json::json!({"slow": [{"task": 1, "class": null, "kind": "run",
                "elapsed_s": 2.0, "threshold_s": 1.0, "worker": 0, "cancelled": false}]})
            }),
        )
        .start()
        .unwrap();
    // One task holds 800 of 1000 bytes until released.
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = pool
        .task()
        .class("holder")
        .requirements(mem(800))
        .spawn(move |_| {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(SAFETY).unwrap();
        })
        .unwrap();
    started_rx.recv_timeout(SAFETY).unwrap();
    // One waits: it lacks 300 bytes.
    let waiter = pool
        .task()
        .class("waiter")
        .requirements(mem(500))
        .spawn(|_| ())
        .unwrap();
    // One is refused: it could never fit.
    let err = pool
        .task()
        .requirements(mem(5000))
        .spawn(|_| ())
        .unwrap_err();
    assert!(matches!(err, SubmitError::NeverFits(_)));

    let v = state(&d);
    let running = v["live"]["running"].as_array().unwrap();
    assert_eq!(running.len(), 1, "{v}");
    assert_eq!(running[0]["class"], "holder");
    assert_eq!(running[0]["reservation"]["memory"], 800);
    let waiting = v["live"]["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{v}");
    assert_eq!(waiting[0]["class"], "waiter");
    assert_eq!(waiting[0]["lacks"]["dim"], "memory");
    assert_eq!(waiting[0]["lacks"]["requested"], 500);
    assert_eq!(waiting[0]["lacks"]["available"], 200);
    assert_eq!(waiting[0]["lacks"]["by"], 300);
    let refusals = v["live"]["refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["reason"], err.to_string());
    assert_eq!(v["pool"]["waiting"], 1);
    assert_eq!(v["panels"]["slow"]["slow"][0]["kind"], "run");

    release_tx.send(()).unwrap();
    holder.join().unwrap();
    waiter.join().unwrap();
    pool.shutdown();
    let v = state(&d);
    assert_eq!(v["live"]["running"].as_array().unwrap().len(), 0);
    assert_eq!(v["live"]["waiting"].as_array().unwrap().len(), 0);
    assert_eq!(v["live"]["outcomes"]["finished"], 2);
    assert_eq!(v["live"]["outcomes"]["refused"], 1);
    assert_eq!(v["live"]["outcomes"]["submitted"], 3);
}

#[test]
fn the_state_equals_the_snapshot_after_the_workload() {
    let live = Arc::new(Live::new());
    let pool = Arc::new(
        Pool::builder()
            .workers(3)
            .capacity(mem(1 << 20))
            .headroom(Resources::NONE)
            .observer(live.clone())
            .build()
            .unwrap(),
    );
    let d = quiet()
        .snapshot(SnapshotSource::of(&pool))
        .live(live)
        .start()
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..200u64 {
        let class = ["small", "large", "tiny"][(i % 3) as usize];
        let need = [1u64 << 10, 300 << 10, 16][(i % 3) as usize];
        handles.push(
            pool.task()
                .class(class)
                .requirements(mem(need))
                .spawn(move |_| i * 2)
                .unwrap(),
        );
        if i % 50 == 0 {
            let _ = pool
                .task()
                .requirements(mem(4 << 20))
                .spawn(|_| 0)
                .unwrap_err();
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    pool.shutdown();
    let s = pool.snapshot();
    let v = state(&d);
    let p = &v["pool"];
    assert_eq!(p["workers"], s.workers);
    assert_eq!(p["submitted"], s.submitted);
    assert_eq!(p["completed"], s.completed);
    assert_eq!(p["panicked"], s.panicked);
    assert_eq!(p["rejected"], s.rejected);
    assert_eq!(p["waiting"], s.waiting);
    assert_eq!(p["queued"], s.queued);
    assert_eq!(p["admission"]["deferred"], s.admission.deferred);
    assert_eq!(p["completed"], 200);
    let dims = p["dims"].as_array().unwrap();
    assert_eq!(dims.len(), s.capacity.iter().count());
    for d in dims {
        let dim = Dim::from_name(d["dim"].as_str().unwrap()).unwrap();
        assert_eq!(d["capacity"], s.capacity.amount(dim));
        assert_eq!(d["reserved"], s.reserved.amount(dim));
    }
    // The bin-packing view: one entry per placement domain, in order, with
    // the snapshot's used and capacity for each dimension the domain tracks.
    let domains = p["domains"].as_array().unwrap();
    assert!(!domains.is_empty(), "{p}");
    assert_eq!(domains.len(), s.domains.len());
    for (i, (d, (used, cap))) in domains.iter().zip(&s.domains).enumerate() {
        assert_eq!(d["index"], i);
        let dims = d["dims"].as_array().unwrap();
        assert_eq!(dims.len(), cap.iter().count(), "{d}");
        for x in dims {
            let dim = Dim::from_name(x["dim"].as_str().unwrap()).unwrap();
            assert_eq!(x["capacity"], cap.amount(dim), "{d}");
            assert_eq!(x["used"], used.amount(dim), "{d}");
            assert!(!x["used_text"].as_str().unwrap().is_empty(), "{d}");
            assert!(!x["capacity_text"].as_str().unwrap().is_empty(), "{d}");
        }
    }
    let classes: Vec<&str> = p["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = s.classes.iter().map(|c| c.class.as_str()).collect();
    assert_eq!(classes, want);
    assert_eq!(v["live"]["outcomes"]["finished"], 200);
    assert_eq!(v["live"]["outcomes"]["refused"], s.rejected);
    // The pool is gone: the state says so rather than failing.
    drop(pool);
    assert_eq!(state(&d)["pool"], Value::Null);
}

/// `domains` as `(dim, used, capacity)` per domain, from the state.
fn state_domains(v: &Value) -> Vec<Vec<(String, u64, u64)>> {
    v["pool"]["domains"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["index"], i, "{d}");
            d["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    let n = |k: &str| x[k].as_u64().unwrap();
                    (
                        x["dim"].as_str().unwrap().to_owned(),
                        n("used"),
                        n("capacity"),
                    )
                })
                .collect()
        })
        .collect()
}

/// The same from the snapshot.
fn snapshot_domains(s: &respool::PoolSnapshot) -> Vec<Vec<(String, u64, u64)>> {
    s.domains
        .iter()
        .map(|(used, cap)| {
            cap.iter()
                .map(|(dim, c)| (dim.name().to_owned(), used.amount(dim), c))
                .collect()
        })
        .collect()
}

#[test]
fn the_bin_packing_view_shows_each_domain_as_the_snapshot_does() {
    let mib = 1u64 << 20;
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .memory("1GiB")
            .capacity(
                Resources::new()
                    .with(Dim::Gpu, 1)
                    .unwrap()
                    .with(Dim::GpuMemory, 16 << 30)
                    .unwrap(),
            )
            .headroom(Resources::NONE)
            .domains(vec![
                DomainSpec::numa("node0", vec![], 512 * mib),
                DomainSpec::numa("node1", vec![], 512 * mib),
                DomainSpec::gpu("gpu0", 0, 16 << 30),
            ])
            .build()
            .unwrap(),
    );
    let d = quiet().snapshot(SnapshotSource::of(&pool)).start().unwrap();
    // One task holds 300 MiB of a node and 4 GiB of the GPU until released:
    // nothing moves while the state and the snapshot are read.
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = pool
        .task()
        .memory("300MiB")
        .gpus(1)
        .gpu_memory("4GiB")
        .spawn(move |_| {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(SAFETY).unwrap();
        })
        .unwrap();
    started_rx.recv_timeout(SAFETY).unwrap();
    let v = state(&d);
    let s = pool.snapshot();
    let got = state_domains(&v);
    assert_eq!(got, snapshot_domains(&s), "{v}");
    // CPU domains, then the GPU domain; the holder shows in one node and the GPU.
    assert_eq!(got.len(), 3, "{v}");
    let used = |dim: &str| -> u64 {
        got.iter()
            .flatten()
            .filter(|(d, _, _)| d == dim)
            .map(|(_, u, _)| u)
            .sum()
    };
    assert_eq!(used("memory"), 300 * mib, "{v}");
    assert_eq!(used("gpu_memory"), 4 << 30, "{v}");
    let texts: Vec<(&str, &str)> = v["pool"]["domains"][2]["dims"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["dim"] == "gpu_memory")
        .map(|x| {
            (
                x["used_text"].as_str().unwrap(),
                x["capacity_text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(texts, [("4 GiB", "16 GiB")], "{v}");
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    pool.shutdown();
}

#[test]
fn a_panicking_panel_or_metrics_closure_does_not_take_the_server_down() {
    let d = quiet()
        .panel("boom", Arc::new(|| panic!("panel panics on purpose")))
        .metrics(Arc::new(|| panic!("metrics panic on purpose")))
        .start()
        .unwrap();
    let v = state(&d);
    assert_eq!(v["panels"]["boom"], Value::Null);
    let r = request(&d, "GET", "/metrics", &[&bearer()]);
    assert_eq!(status_of(&r), 500);
    assert_eq!(
        status_of(&request(&d, "GET", "/api/state", &[&bearer()])),
        200
    );
}
