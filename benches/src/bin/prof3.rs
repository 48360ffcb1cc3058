#![allow(missing_docs)]
use respool_benches::peers::Peer;
use std::time::Duration;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let which: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let peers = Peer::all(2);
    let p = &peers[which];
    p.batch(1000, Duration::ZERO);
    p.batch(n, Duration::ZERO);
}
