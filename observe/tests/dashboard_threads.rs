//! Shutdown leaves no thread behind, even with a feed and an idle
//! connection open. In a test binary of its own, so that no other test's
//! threads come and go while it counts.

#![cfg(all(feature = "dashboard", target_os = "linux"))]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use respool_observe::dashboard::Dashboard;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn shutdown_joins_every_thread() {
    let before = threads();
    let d = Dashboard::builder()
        .print_url(false)
        .refresh(Duration::from_secs(3600))
        .request_timeout(Duration::from_secs(3600))
        .start()
        .unwrap();
    let addr = d.local_addr();
    // A feed, read up to its first document: its thread now sleeps until
    // the next refresh, an hour away.
    let mut feed = TcpStream::connect(addr).unwrap();
    write!(
        feed,
        "GET /events?token={} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        d.token(),
        addr.port()
    )
    .unwrap();
    let mut reader = BufReader::new(feed.try_clone().unwrap());
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0);
    }
    // An idle connection: its thread waits in read, for an hour.
    let idle = TcpStream::connect(addr).unwrap();
    while d.connections() < 2 {
        std::thread::yield_now();
    }
    // The accept thread and two connection threads.
    assert_eq!(threads(), before + 3);
    d.shutdown();
    assert_eq!(threads(), before);
    drop((feed, idle));
}
