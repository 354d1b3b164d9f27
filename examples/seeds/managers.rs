//! The manager scenarios of seeds 001 and 003 (Manager dict and list, a custom manager with
//! MathsClass, a remote manager serving a job queue, a SharedMemoryManager's ShareableList summed
//! by two workers, the steps of using a Manager and a SharedMemoryManager), shared by the
//! standalone examples and the tour.
#![allow(dead_code)]

use multiproc::connection::Address;
use multiproc::manager::{
    ArrayProxy, DictProxy, EventProxy, ListProxy, LockProxy, ManagerClient, QueueProxy, Server, SharedMemoryManager,
    Value, ValueProxy,
};
use multiproc::shm::Item;
use multiproc::{BaseManager, Manager, Process, ShareableList, SharedMemory};
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

/// One worker's half: sums `sl[start..end]` into `sl[start]` and zeroes the rest of its half, so
/// that the sum of the whole list is the total (the partial results stay in `sl`).
fn sum_half(sl: ShareableList, start: usize, end: usize) -> multiproc::Result<()> {
    let mut sum = 0;
    for i in start..end {
        if let Item::Int(x) = sl.get(i as isize)? {
            sum += x;
        }
        sl.set(i as isize, 0)?;
    }
    sl.set(start as isize, sum)
}

/// Seed 003: `with SharedMemoryManager() as smm: sl = smm.ShareableList(range(2000))`, two worker
/// processes doing one half each, then `sum(sl)`; the manager unlinks the list's block when it
/// goes.
pub fn shared_memory_manager_two_halves() -> multiproc::Result<()> {
    let smm = SharedMemoryManager::start()?;
    let sl = smm.shareable_list(0..2000)?;
    let mut p1 = Process::new(sum_half, (sl.clone(), 0, 1000));
    let mut p2 = Process::new(sum_half, (sl.clone(), 1000, 2000));
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    let total: i64 = sl.to_vec()?.iter().map(|item| if let Item::Int(x) = item { *x } else { 0 }).sum();
    println!("  partial sums: sl[0] = {}, sl[1000] = {}; sum(sl) = {total}", sl.get(0)?, sl.get(1000)?);
    assert_eq!(total, (0..2000).sum::<i64>());
    let name = sl.name().to_owned();
    drop(smm);
    println!("  after the manager: {name} attachable? {}", ShareableList::attach(&name).is_ok());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 003: the steps of using a manager

/// The manager's objects, as each child gets them (a clone of a proxy is a second proxy).
#[derive(Clone, Serialize, Deserialize)]
struct Shared {
    l: ListProxy<u32>,
    d: DictProxy<u32, String>,
    q: QueueProxy<String>,
    lock: LockProxy,
    ready: EventProxy,
    v: ValueProxy<i64>,
    a: ArrayProxy<i64>,
}

fn use_manager_objects(i: u32, s: Shared) -> multiproc::Result<()> {
    s.ready.wait()?; // every child starts at the parent's signal
    s.l.append(&i)?;
    s.d.insert(&i, &format!("child {i}"))?;
    s.q.put(&format!("hello from child {i} (pid {})", std::process::id()))?;
    s.a.set(i64::from(i), &(10 * i64::from(i)))?;
    let _guard = s.lock.acquire()?; // a managed Value has no lock of its own: read-modify-write under one
    s.v.set(&(s.v.get()? + 1))
}

fn write_blocks(sx: SharedMemory, sl: ShareableList) -> multiproc::Result<()> {
    sx.write_at(0, b"howdy")?;
    sl.set(2, -78.5)
}

/// Seed 003's steps: `Manager()` makes a list, a dict, a `Queue`, a `Lock`, an `Event`, a `Value`
/// and an `Array` that children use through proxies; `SharedMemoryManager()` makes a
/// `SharedMemory(size)` and a `ShareableList([...])`, both unlinked when the manager goes.
pub fn manager_steps() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let shared = Shared {
        l: manager.list(&[])?,
        d: manager.dict()?,
        q: manager.queue()?,
        lock: manager.lock()?,
        ready: manager.event()?,
        v: manager.value(&0)?,
        a: manager.array(&[0; 3])?,
    };
    let mut children = Vec::new();
    for i in 0..3 {
        let mut child = Process::new(use_manager_objects, (i, shared.clone()));
        child.start()?;
        children.push(child);
    }
    shared.ready.set()?;
    for child in &mut children {
        assert_eq!(child.join()?, 0, "{child}");
    }
    let mut l = shared.l.to_vec()?;
    l.sort_unstable();
    let mut d = shared.d.items()?;
    d.sort();
    println!("  list (sorted): {l:?}");
    println!("  dict (sorted): {d:?}");
    for _ in 0..3 {
        println!("  queue: {}", shared.q.get()?);
    }
    println!("  value: {}, array: {:?}", shared.v.get()?, shared.a.to_vec()?);
    assert_eq!(shared.v.get()?, 3);

    let smm = SharedMemoryManager::start()?;
    let sx = smm.shared_memory(16)?;
    let sl = smm.shareable_list([
        Item::from("howdy"),
        Item::from(b"HoWdY"),
        Item::from(-273.154),
        Item::from(100),
        Item::from(true),
    ])?;
    let mut child = Process::new(write_blocks, (SharedMemory::attach(sx.name())?, sl.clone()));
    child.start()?;
    assert_eq!(child.join()?, 0);
    println!("  smm.SharedMemory(16) starts with {:?}", String::from_utf8_lossy(&sx.to_vec()[..5]));
    println!("  smm.ShareableList: {sl:?}");
    let names = [sx.name().to_owned(), sl.name().to_owned()];
    drop(smm);
    for name in names {
        println!("  after the manager: {name} attachable? {}", SharedMemory::attach(&name).is_ok());
    }
    Ok(())
}
