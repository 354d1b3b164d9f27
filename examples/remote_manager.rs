//! A remote manager on TCP with an authkey: job and result queues.
//!
//! Ported from Python:
//!
//! - A manager reached by other processes, even over the network (described, not shown, in the
//!   original).
//!
//! Run it with `cargo run --example remote_manager`; the `tour` example runs it too.

use multiproc::Process;
use multiproc::connection::Address;
use multiproc::manager::{ManagerClient, Server};

fn remote_worker(address: Address, authkey: Vec<u8>) -> multiproc::Result<()> {
    let manager = ManagerClient::connect(address, Some(&authkey))?;
    let jobs = manager.named("jobs").queue::<u64>()?;
    let results = manager.named("results").queue::<(u32, u64, u64)>()?;
    let me = std::process::id();
    while let Some(n) = jobs.get().map(|n| (n > 0).then_some(n))? {
        results.put(&(me, n, n * n))?;
    }
    Ok(())
}

/// A manager served on TCP with an authkey: a job queue and a result queue, and worker
/// processes that connect to it by address (CPython's `QueueManager` example).
pub fn remote_job_queue() -> multiproc::Result<()> {
    let authkey = b"abracadabra".to_vec();
    let server = Server::bind::<()>("127.0.0.1:0".parse()?, Some(&authkey))?;
    let address = server.address().clone();
    println!("  serving on {address}");
    let serving = std::thread::spawn(move || server.serve_forever());

    let manager = ManagerClient::connect(address.clone(), Some(&authkey))?;
    let jobs = manager.named("jobs").queue::<u64>()?;
    let results = manager.named("results").queue::<(u32, u64, u64)>()?;
    let mut workers: Vec<Process> =
        (0..3).map(|_| Process::new(remote_worker, (address.clone(), authkey.clone()))).collect();
    for w in &mut workers {
        w.start()?;
    }
    for n in 1..=9 {
        jobs.put(&n)?;
    }
    let mut squares: Vec<(u64, u64)> = Vec::new();
    for _ in 1..=9 {
        let (_worker, n, square) = results.get()?;
        squares.push((n, square));
    }
    squares.sort();
    for _ in &workers {
        jobs.put(&0)?;
    }
    for w in &mut workers {
        w.join()?;
    }
    println!("  squares from 3 workers: {squares:?}");
    manager.shutdown()?;
    serving.join().expect("the server thread panicked")?;
    Ok(())
}

fn main() -> multiproc::Result<()> {
    remote_job_queue()
}
