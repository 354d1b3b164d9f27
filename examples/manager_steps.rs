//! Manager list, dict, Queue, Lock, Event, Value, Array; SharedMemoryManager blocks.
//!
//! Ported from Python:
//!
//! - `Manager()`, `list()`, `dict()`, `Queue()` (and `Lock`, `Event`, `Value`, `Array`);
//!   `SharedMemoryManager()`, `SharedMemory(size)`, `ShareableList(sequence)`. Three children use
//!   every proxy; the blocks are gone once the manager is.
//!
//! Run it with `cargo run --example manager_steps`; the `tour` example runs it too.

use multiproc::manager::{
    ArrayProxy, DictProxy, EventProxy, ListProxy, LockProxy, QueueProxy, SharedMemoryManager, ValueProxy,
};
use multiproc::shm::Item;
use multiproc::{Manager, Process, ShareableList, SharedMemory};
use serde::{Deserialize, Serialize};

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

/// The original's steps: `Manager()` makes a list, a dict, a `Queue`, a `Lock`, an `Event`, a `Value`
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

fn main() -> multiproc::Result<()> {
    manager_steps()
}
