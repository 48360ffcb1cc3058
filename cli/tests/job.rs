//! Integration tests of `respool_cli::job`: running jobs, their outcomes,
//! captured output, timeouts and memory measurement.

use respool_cli::job::{JobSpec, Measurer, MemorySource, run_job};
use std::time::Duration;

fn spec(command: &str) -> JobSpec {
    JobSpec {
        command: command.into(),
        timeout: None,
        memory_limit: None,
        stdin_null: true,
    }
}

fn output(c: &respool_cli::job::Captured) -> Vec<u8> {
    let mut v = Vec::new();
    c.write_to(&mut v).expect("write_to a Vec");
    v
}

#[test]
fn exit_code_and_output() {
    let o = run_job(
        &spec("echo hi; echo err >&2; exit 3"),
        &Measurer::rusage_only(),
    )
    .expect("run");
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.signal, None);
    assert_eq!(output(&o.stdout), b"hi\n");
    assert_eq!(output(&o.stderr), b"err\n");
    assert_eq!(o.memory_source, MemorySource::RusageMaxrssLargestProcess);
}

#[test]
fn timeout_kills() {
    let mut s = spec("sleep 1000");
    s.timeout = Some(Duration::from_millis(100));
    let o = run_job(&s, &Measurer::rusage_only()).expect("run");
    assert!(o.timed_out);
    assert_eq!(o.signal, Some(9));
}
