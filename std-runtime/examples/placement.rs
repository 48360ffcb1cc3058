//! Placement domains: NUMA nodes and GPUs given by hand with `DomainSpec`
//! (with the `hwloc` and `nvml` features the pool finds them itself). A
//! task is admitted against the whole pool, then placed on one node and, if
//! it asks for one, one GPU; a request that fits the pool but no single
//! node is refused at once.
//!
//! ```text
//! cargo run -p respool --example placement
//! ```
//!
//! Nothing is detected, so it runs on any machine. Exits with an error if a
//! placement differs from what it prints.

use std::sync::mpsc;

use respool::{Dim, DomainSpec, Pool, Resources, SubmitError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Two nodes of 512 MiB, and two GPUs of 16 GiB each (devices 0 and 1).
    let pool = Pool::builder()
        .workers(2)
        .memory("1GiB")
        .capacity(
            Resources::new()
                .with(Dim::Gpu, 2)?
                .with(Dim::GpuMemory, 32 << 30)?,
        )
        .domains(vec![
            DomainSpec::numa("node0", vec![], 512 << 20),
            DomainSpec::numa("node1", vec![], 512 << 20),
            DomainSpec::gpu("gpu0", 0, 16 << 30),
            DomainSpec::gpu("gpu1", 1, 16 << 30),
        ])
        .build()?;

    // Two GPU tasks held at once: each gets a device of its own, which its
    // context names (to pass on as CUDA_VISIBLE_DEVICES, say).
    let (tx, devices) = mpsc::channel();
    let mut gpu_tasks = Vec::new();
    let mut release = Vec::new();
    for _ in 0..2 {
        let tx = tx.clone();
        let (done, hold) = mpsc::channel::<()>();
        release.push(done);
        gpu_tasks.push(pool.task().gpus(1).gpu_memory("12GiB").spawn(move |ctx| {
            tx.send(ctx.gpu()).unwrap();
            let _ = hold.recv();
        })?);
    }
    let mut got = vec![devices.recv()?, devices.recv()?];
    got.sort();
    println!("two GPU tasks at once, on devices {got:?}");
    assert_eq!(got, [Some(0), Some(1)]);
    // While they hold 12 of 16 GiB on each GPU, the snapshot shows it per domain.
    let s = pool.snapshot();
    for (i, (used, capacity)) in s.domains.iter().enumerate() {
        println!("domain {i}: used {used}, capacity {capacity}");
    }
    let gpus_in_use = s
        .domains
        .iter()
        .filter(|(used, _)| used.get(Dim::Gpu) == Some(1));
    assert_eq!(gpus_in_use.count(), 2);
    drop(release);
    for h in gpu_tasks {
        h.join()?;
    }

    // 768 MiB fits the pool's 1 GiB, but neither 512 MiB node.
    match pool.task().memory("768MiB").spawn(|_| ()) {
        Err(SubmitError::NeverFits(s)) => {
            assert_eq!((s.dim, s.by), (Dim::Memory, 256 << 20));
            println!("768MiB: refused, no node has it ({s})");
        }
        other => return Err(format!("expected NeverFits, got {other:?}").into()),
    }
    pool.shutdown();
    Ok(())
}
