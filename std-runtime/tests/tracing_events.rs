//! The pool emits `tracing` events for each task's lifecycle (queued,
//! scheduled, started, completed, failed). A minimal subscriber, installed as
//! the global default (worker threads use it), records the messages.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use respool::{Dim, Pool, Resources};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Recorder {
    next: AtomicU64,
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("respool")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        EVENTS.lock().unwrap().push(m.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn each_lifecycle_step_is_an_event() {
    tracing::subscriber::set_global_default(Recorder {
        next: AtomicU64::new(0),
    })
    .unwrap();
    let pool = Pool::builder()
        .workers(1)
        .capacity(Resources::new().with(Dim::Memory, 100).unwrap())
        .headroom(Resources::NONE)
        .build()
        .unwrap();
    pool.execute(|| ()).unwrap();
    pool.task()
        .require(Dim::Memory, 10)
        .spawn(|_| ())
        .unwrap()
        .join()
        .unwrap();
    let p = pool
        .task()
        .require(Dim::Memory, 10)
        .spawn(|_| -> () { panic!("expected in this test") })
        .unwrap();
    assert!(p.join().is_err());
    assert!(
        pool.task()
            .require(Dim::Memory, 1000)
            .spawn(|_| ())
            .is_err()
    );
    pool.shutdown();
    let events = EVENTS.lock().unwrap().clone();
    for step in [
        "queued",
        "scheduled",
        "started",
        "completed",
        "failed (panicked)",
        "rejected",
    ] {
        assert!(
            events.iter().any(|e| e == step),
            "no {step:?} event in {events:?}"
        );
    }
}
