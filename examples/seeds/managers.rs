//! The manager scenarios of seeds 001 and 003 (Manager dict and list, a custom manager with
//! MathsClass, a remote manager serving a job queue), shared by the standalone examples and the tour.
#![allow(dead_code)]

use multiproc::connection::Address;
use multiproc::manager::{DictProxy, ListProxy, ManagerClient, Server, Value};
use multiproc::{BaseManager, Manager, Process};
use serde::{Deserialize, Serialize};

fn fill(d: DictProxy<String, String>, l: ListProxy<i64>) -> multiproc::Result<()> {
    l.extend(&[11, 12, 13, 14, 15])?;
    for i in 1..6 {
        d.insert(&format!("key{i}"), &format!("val{i}"))?;
    }
    Ok(())
}

/// Seed 001: a worker process fills a manager's dict and list; the parent prints them.
pub fn worker_fills_dict_and_list() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let d = manager.dict::<String, String>()?;
    let l = manager.list::<i64>(&[])?;
    let mut p = Process::new(fill, (d.clone(), l.clone()));
    p.start()?;
    p.join()?;
    let shown: Vec<String> = d.items()?.iter().map(|(k, v)| format!("'{k}': '{v}'")).collect();
    println!("  {{{}}}", shown.join(", "));
    println!("  {:?}", l.to_vec()?);
    Ok(())
}

fn mixed(d: DictProxy<Value, Value>, l: ListProxy<i64>) -> multiproc::Result<()> {
    d.insert(&1.into(), &"1".into())?;
    d.insert(&"2".into(), &2.into())?;
    d.insert(&0.25.into(), &Value::None)?;
    l.reverse()
}

/// Seed 003: keys and values of mixed types (`d[1] = '1'; d['2'] = 2; d[0.25] = None`) and
/// `l.reverse()` in a child.
pub fn mixed_dict_and_list() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let d = manager.dict::<Value, Value>()?;
    let l = manager.list(&(0..10).collect::<Vec<i64>>())?;
    let mut p = Process::new(mixed, (d.clone(), l.clone()));
    p.start()?;
    p.join()?;
    println!("  {}", Value::Dict(d.items()?));
    println!("  {:?}", l.to_vec()?);
    Ok(())
}

/// Seed 003's MathsClass, registered with a custom manager.
#[derive(Default, Serialize, Deserialize)]
pub struct MathsClass;

#[multiproc::managed]
impl MathsClass {
    /// `x + y`, computed in the manager's server.
    pub fn add(&self, x: i64, y: i64) -> i64 {
        x + y
    }

    /// `x * y`, computed in the manager's server.
    pub fn mul(&self, x: i64, y: i64) -> i64 {
        x * y
    }
}

/// Seed 003: `MyManager.register('Maths', MathsClass)`, then `maths.add(4, 3)` and `maths.mul(7, 8)`.
pub fn maths_class() -> multiproc::Result<()> {
    let manager = BaseManager::<(MathsClass,)>::start()?;
    let maths = manager.create(MathsClass)?;
    println!("  {}", maths.add(4, 3)?);
    println!("  {}", maths.mul(7, 8)?);
    Ok(())
}

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
