//! `Observability` as a user wires it: metrics, slow tasks and the live
//! view for one pool, the dashboard serving `/metrics`, scraped over HTTP
//! while tasks run and checked against the pool's own counts.
#![cfg(feature = "dashboard")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use respool::{Dim, Policy, Pool, Resources};
use respool_observe::Observability;
use respool_observe::dashboard::Dashboard;
use respool_observe::slow::SlowConfig;

/// `GET path` with the token; the status, the `Content-Type` and the body.
fn get(d: &Dashboard, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(d.local_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        d.local_addr().port(),
        d.token()
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// The value of the sample `name` (with its labels, as written) in a
/// Prometheus text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn metrics_scraped_over_http_while_tasks_run_match_the_pool() {
    let obs = Observability::new()
        .with_slow(SlowConfig::default())
        .expect("slow-task detector")
        .with_live();
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .capacity(Resources::NONE.with_saturating(Dim::Memory, 1000))
            .headroom(Resources::NONE)
            .admission(Policy::Defer)
            .observer(obs.observer())
            .build()
            .expect("pool"),
    );
    assert!(obs.attach(&pool));
    let dashboard = obs.dashboard().print_url(false).start().expect("dashboard");

    // A holder keeps 600 of the 1000 bytes until released: tasks needing
    // 500 wait behind it, the others run.
    let (release, gate) = mpsc::channel::<()>();
    let holder = pool
        .task()
        .memory("600B")
        .spawn(move |_| {
            let _ = gate.recv();
        })
        .expect("holder");
    let mut handles = Vec::new();
    for i in 0..60u64 {
        let t = pool.task().class(if i % 2 == 0 { "even" } else { "odd" });
        let t = if i % 3 == 0 { t.memory("500B") } else { t };
        handles.push(t.spawn(move |_| i).expect("accepted"));
    }
    assert!(
        pool.task().memory("2000B").spawn(|_| ()).is_err(),
        "never fits"
    );

    // Scraped while tasks wait: counters only grow.
    let (status, content_type, first) = get(&dashboard, "/metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let submitted = sample(&first, "respool_tasks_submitted_total").expect("submitted");
    assert!(submitted >= 62.0, "{submitted}");
    assert!(first.contains("# TYPE respool_slow_tasks_total counter"));

    drop(release);
    holder.join().expect("holder");
    for h in handles {
        h.join().expect("task");
    }
    pool.shutdown();
    let snap = pool.snapshot();
    let (_, _, last) = get(&dashboard, "/metrics");
    let value = |name: &str| sample(&last, name).unwrap_or(-1.0);
    #[allow(clippy::cast_precision_loss)]
    let counts = [
        ("respool_tasks_submitted_total", snap.submitted),
        ("respool_tasks_total{outcome=\"finished\"}", snap.completed),
        ("respool_tasks_total{outcome=\"refused\"}", snap.rejected),
        ("respool_class_runs_total{class=\"even\"}", 30),
        ("respool_class_runs_total{class=\"odd\"}", 30),
    ];
    for (name, want) in counts {
        #[allow(clippy::cast_precision_loss)]
        let want = want as f64;
        assert_eq!(value(name), want, "{name}");
    }
    assert!(value("respool_tasks_submitted_total") >= submitted);
    assert_eq!(value("respool_tasks_running"), 0.0);
    assert_eq!(
        snap.submitted, 62,
        "the holder, 60 tasks and the refused one"
    );
    // The JSON state agrees with the same snapshot.
    let (status, _, state) = get(&dashboard, "/api/state");
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&state).expect("JSON");
    assert_eq!(state["pool"]["completed"], snap.completed, "{state}");
}
