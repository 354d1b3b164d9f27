//! Managers (issue 8; conformance.md F1–F3: CONT-, SMT-, MGR- items that apply): the built-in
//! types used from child processes, user types through `#[multiproc::managed]`, remote servers
//! with authkeys, and the failure paths: errors in the server, malformed requests, clients killed
//! in the middle of a call, owners killed with `SIGKILL`, references freed with the last proxy.
//!
//! Every blocking test runs under the watchdog. Object counts come from the server itself
//! (`object_count`); a server's threads from `/proc/<pid>/task`.

mod common;

use std::time::{Duration, Instant};

use common::{Outbox, channel, send, sigkill, sigstop, wait_for_exit_of, watchdog};
use multiproc::connection::{Address, connect};
use multiproc::manager::{
    BarrierProxy, DictProxy, EventProxy, LockProxy, ManagerClient, NamespaceProxy, QueueProxy, SemaphoreProxy, Server,
    Value,
};
use multiproc::{BaseManager, Error, Manager, Process, current_process};
use serde::{Deserialize, Serialize};

fn run_child<A: Serialize + serde::de::DeserializeOwned>(target: impl multiproc::Target<A>, args: A) {
    let mut p = Process::new(target, args);
    p.start().expect("start a child");
    assert_eq!(p.join().expect("join a child"), 0, "the child failed");
}

/// Polls `condition` (a state that another process changes) until it holds; the watchdog bounds it.
fn eventually(mut condition: impl FnMut() -> bool) {
    while !condition() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn thread_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Containers (seed 001/003, CONT-06, SMT-09..13)
// ---------------------------------------------------------------------------------------------

fn fill_mixed(d: DictProxy<Value, Value>, l: multiproc::manager::ListProxy<i64>) -> multiproc::Result<()> {
    d.insert(&1.into(), &"1".into())?;
    d.insert(&"2".into(), &2.into())?;
    d.insert(&0.25.into(), &Value::None)?;
    l.reverse()
}

#[test]
fn dict_and_list_changed_by_a_child() {
    watchdog("dict_and_list_changed_by_a_child", 30, || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<Value, Value>().unwrap();
        let l = manager.list(&(0..10).collect::<Vec<i64>>()).unwrap();
        run_child(fill_mixed, (d.clone(), l.clone()));
        let shown: Vec<String> = d.items().unwrap().iter().map(|(k, v)| format!("{k}: {v}")).collect();
        assert_eq!(shown, ["1: '1'", "'2': 2", "0.25: None"]);
        assert_eq!(l.to_vec().unwrap(), (0..10).rev().collect::<Vec<_>>());
        assert_eq!(d.get(&Value::from(1)).unwrap(), Some(Value::from("1")));
        assert_eq!(d.get(&Value::from("missing")).unwrap(), None);
    });
}

#[test]
fn dict_methods() {
    watchdog("dict_methods", 30, || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<String, i32>().unwrap();
        assert!(d.is_empty().unwrap());
        d.update([(&"a".to_string(), &1), (&"b".to_string(), &2)]).unwrap();
        assert_eq!(d.set_default(&"a".into(), &9).unwrap(), 1);
        assert_eq!(d.set_default(&"c".into(), &3).unwrap(), 3);
        assert_eq!(d.keys().unwrap(), ["a", "b", "c"]);
        assert_eq!(d.values().unwrap(), [1, 2, 3]);
        assert!(d.contains_key(&"b".into()).unwrap());
        assert_eq!(d.remove(&"b".into()).unwrap(), Some(2));
        assert_eq!(d.remove(&"b".into()).unwrap(), None);
        d.insert(&"a".into(), &10).unwrap();
        assert_eq!(d.items().unwrap(), [("a".to_string(), 10), ("c".to_string(), 3)]);
        d.clear().unwrap();
        assert_eq!(d.len().unwrap(), 0);
    });
}

fn use_list(l: multiproc::manager::ListProxy<i32>) -> multiproc::Result<()> {
    assert_eq!(l.get(0)?, 5);
    assert_eq!(l.get(-1)?, 7);
    assert_eq!(l.count(&5)?, 2);
    assert_eq!(l.index(&6)?, 1);
    l.extend(&[8, 9])?;
    l.insert(0, &1)?;
    l.reverse()?;
    assert_eq!(l.pop_at(0)?, 9);
    assert_eq!(l.pop()?, 1);
    l.remove(&5)?;
    assert_eq!(l.len()?, 4);
    Ok(())
}

#[test]
fn list_methods_in_a_child() {
    watchdog("list_methods_in_a_child", 30, || {
        let manager = Manager::start().unwrap();
        let l = manager.list(&[5, 6, 5, 7]).unwrap();
        run_child(use_list, (l.clone(),));
        assert_eq!(l.to_vec().unwrap(), [8, 7, 6, 5]);
        l.set(-1, &60).unwrap();
        assert_eq!(l.get(3).unwrap(), 60);
        let e = l.get(10).unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("IndexError")), "{e}");
        let e = l.remove(&99).unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("ValueError")), "{e}");
        l.clear().unwrap();
        assert!(l.pop().is_err());
    });
}

#[test]
fn set_value_array() {
    watchdog("set_value_array", 30, || {
        let manager = Manager::start().unwrap();
        let s = manager.set::<String>().unwrap();
        s.add(&"x".into()).unwrap();
        s.add(&"y".into()).unwrap();
        s.add(&"x".into()).unwrap();
        assert_eq!(s.to_vec().unwrap(), ["x", "y"]);
        assert!(s.contains(&"y".into()).unwrap());
        assert!(s.discard(&"y".into()).unwrap());
        assert!(!s.discard(&"y".into()).unwrap());
        assert_eq!(s.len().unwrap(), 1);

        let v = manager.value(&1.5f64).unwrap();
        assert_eq!(v.get().unwrap(), 1.5);
        v.set(&2.0).unwrap();
        assert_eq!(v.get().unwrap(), 2.0);

        let a = manager.array(&[1u8, 2, 3]).unwrap();
        assert_eq!(a.len().unwrap(), 3);
        a.set(-1, &30).unwrap();
        assert_eq!(a.to_vec().unwrap(), [1, 2, 30]);
        assert!(a.set(3, &0).is_err(), "an array does not grow");
    });
}

fn read_namespace(ns: NamespaceProxy, out: Outbox) -> multiproc::Result<()> {
    let name: String = ns.get("name")?;
    ns.set("seen_by_child", &true)?;
    send(&out, &name);
    Ok(())
}

#[test]
fn namespace_from_parent_to_child() {
    // SMT-13, CONT-11
    watchdog("namespace_from_parent_to_child", 30, || {
        let manager = Manager::start().unwrap();
        let ns = manager.namespace().unwrap();
        ns.set("name", &"Bob").unwrap();
        ns.set("job", &"builder").unwrap();
        let (inbox, outbox) = channel();
        run_child(read_namespace, (ns.clone(), outbox));
        assert_eq!(inbox.recv(10), "Bob");
        assert!(ns.get::<bool>("seen_by_child").unwrap());
        assert!(ns.remove("job").unwrap());
        assert_eq!(ns.names().unwrap(), ["name", "seen_by_child"]);
        let e = ns.get::<String>("job").unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("AttributeError")), "{e}");
    });
}

// ---------------------------------------------------------------------------------------------
// Queues (SMT-08)
// ---------------------------------------------------------------------------------------------

fn drain_two(q: QueueProxy<i32>) -> multiproc::Result<()> {
    assert_eq!(q.len()?, 2);
    assert!(q.is_full()?);
    assert!(!q.is_empty()?);
    assert_eq!(q.get()?, 5);
    assert_eq!(q.get()?, 6);
    assert!(q.is_empty()?);
    Ok(())
}

#[test]
fn bounded_queue_in_a_child() {
    watchdog("bounded_queue_in_a_child", 30, || {
        let manager = Manager::start().unwrap();
        let q = manager.bounded_queue::<i32>(2).unwrap();
        q.put(&5).unwrap();
        q.put(&6).unwrap();
        assert!(matches!(q.put_nowait(&7), Err(Error::WouldBlock)));
        assert!(matches!(q.put_timeout(&7, Duration::from_millis(20)), Err(Error::Timeout(_))));
        run_child(drain_two, (q.clone(),));
        assert!(q.is_empty().unwrap());
        assert!(!q.is_full().unwrap());
        assert!(matches!(q.get_nowait(), Err(Error::WouldBlock)));
        assert!(matches!(q.get_timeout(Duration::from_millis(20)), Err(Error::Timeout(_))));
    });
}

fn produce(q: QueueProxy<u32>, n: u32) -> multiproc::Result<()> {
    for i in 0..n {
        q.put(&i)?;
    }
    Ok(())
}

#[test]
fn queue_orders() {
    watchdog("queue_orders", 30, || {
        let manager = Manager::start().unwrap();
        let fifo = manager.queue::<u32>().unwrap();
        let mut p = Process::new(produce, (fifo.clone(), 100));
        p.start().unwrap();
        let got: Vec<u32> = (0..100).map(|_| fifo.get().unwrap()).collect();
        p.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());

        let lifo = manager.lifo_queue::<u32>().unwrap();
        for i in 0..3 {
            lifo.put(&i).unwrap();
        }
        assert_eq!([lifo.get().unwrap(), lifo.get().unwrap(), lifo.get().unwrap()], [2, 1, 0]);

        let pq = manager.priority_queue::<String>().unwrap();
        pq.put(3, &"c".into()).unwrap();
        pq.put(1, &"a".into()).unwrap();
        pq.put(2, &"b".into()).unwrap();
        pq.put(1, &"a2".into()).unwrap();
        let order: Vec<String> = (0..4).map(|_| pq.get().unwrap().1).collect();
        assert_eq!(order, ["a", "a2", "b", "c"]);
    });
}

fn consume_all(q: QueueProxy<u32>) -> multiproc::Result<()> {
    for _ in 0..5 {
        q.get()?;
        q.task_done()?;
    }
    Ok(())
}

#[test]
fn joinable_queue_join_waits_for_task_done() {
    watchdog("joinable_queue_join_waits_for_task_done", 30, || {
        let manager = Manager::start().unwrap();
        let q = manager.joinable_queue::<u32>().unwrap();
        for i in 0..5 {
            q.put(&i).unwrap();
        }
        assert!(matches!(q.join_timeout(Duration::from_millis(20)), Err(Error::Timeout(_))));
        let mut p = Process::new(consume_all, (q.clone(),));
        p.start().unwrap();
        q.join().unwrap();
        p.join().unwrap();
        let e = q.task_done().unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("too many times")), "{e}");
        let plain = manager.queue::<u32>().unwrap();
        assert!(matches!(plain.task_done(), Err(Error::Remote(_))));
    });
}

// ---------------------------------------------------------------------------------------------
// Synchronization (SMT-01..06)
// ---------------------------------------------------------------------------------------------

fn try_lock(lock: LockProxy, out: Outbox) {
    let answer = match lock.try_acquire() {
        Ok(_guard) => "took it",
        Err(Error::WouldBlock) => "held",
        Err(_) => "error",
    };
    send(&out, answer);
}

#[test]
fn lock_excludes_other_processes() {
    // SMT-02
    watchdog("lock_excludes_other_processes", 30, || {
        let manager = Manager::start().unwrap();
        let lock = manager.lock().unwrap();
        let (inbox, outbox) = channel();
        let (inbox2, outbox2) = channel();
        {
            let _guard = lock.acquire().unwrap();
            assert!(lock.locked().unwrap());
            run_child(try_lock, (lock.clone(), outbox2));
            assert_eq!(inbox2.recv(10), "held");
        }
        assert!(!lock.locked().unwrap());
        run_child(try_lock, (lock.clone(), outbox));
        assert_eq!(inbox.recv(10), "took it");
        let e = lock.release().unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("release unlocked lock")), "{e}");
        assert!(matches!(lock.acquire_timeout(Duration::ZERO).map(drop), Ok(())));
    });
}

fn hold_lock_forever(lock: LockProxy, out: Outbox) -> multiproc::Result<()> {
    let _guard = lock.acquire()?;
    send(&out, "holding");
    loop {
        std::thread::park();
    }
}

#[test]
fn lock_of_a_killed_holder_is_released() {
    watchdog("lock_of_a_killed_holder_is_released", 30, || {
        let manager = Manager::start().unwrap();
        let lock = manager.lock().unwrap();
        let (inbox, outbox) = channel();
        let mut p = Process::new(hold_lock_forever, (lock.clone(), outbox));
        p.start().unwrap();
        assert_eq!(inbox.recv(10), "holding");
        assert!(matches!(lock.try_acquire().map(drop), Err(Error::WouldBlock)));
        p.kill().unwrap();
        p.join().unwrap();
        // The holder's connection closed with it: the lock is free again (CPython: locked forever).
        drop(lock.acquire_timeout(Duration::from_secs(10)).unwrap());
    });
}

#[test]
fn rlock_is_reentrant_and_owned() {
    // SMT-03
    watchdog("rlock_is_reentrant_and_owned", 30, || {
        let manager = Manager::start().unwrap();
        let rlock = manager.rlock().unwrap();
        let other = rlock.clone();
        let outer = rlock.acquire().unwrap();
        let inner = rlock.acquire().unwrap();
        assert!(matches!(other.try_acquire().map(drop), Err(Error::WouldBlock)));
        let e = other.release().unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("un-acquired")), "{e}");
        drop(inner);
        assert!(matches!(other.try_acquire().map(drop), Err(Error::WouldBlock)));
        drop(outer);
        drop(other.try_acquire().unwrap());
    });
}

fn take_permit(s: SemaphoreProxy) -> multiproc::Result<()> {
    s.acquire()
}

#[test]
fn semaphores_across_processes() {
    // SMT-04
    watchdog("semaphores_across_processes", 30, || {
        let manager = Manager::start().unwrap();
        let s = manager.semaphore(2).unwrap();
        run_child(take_permit, (s.clone(),));
        assert_eq!(s.value().unwrap(), 1);
        s.release().unwrap();
        s.release().unwrap();
        assert_eq!(s.value().unwrap(), 3, "a plain semaphore may go above its start");

        let b = manager.bounded_semaphore(1).unwrap();
        run_child(take_permit, (b.clone(),));
        assert!(matches!(b.try_acquire(), Err(Error::WouldBlock)));
        b.release().unwrap();
        let e = b.release().unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("released too many times")), "{e}");
    });
}

fn event_in_child(e: EventProxy) -> multiproc::Result<()> {
    assert!(e.is_set()?);
    e.wait()?;
    e.clear()?;
    assert!(!e.wait_timeout(Duration::from_millis(1))?);
    Ok(())
}

fn set_event_later(e: EventProxy) -> multiproc::Result<()> {
    e.set()
}

#[test]
fn event_across_processes() {
    // SMT-01
    watchdog("event_across_processes", 30, || {
        let manager = Manager::start().unwrap();
        let e = manager.event().unwrap();
        e.set().unwrap();
        run_child(event_in_child, (e.clone(),));
        assert!(!e.is_set().unwrap());
        let mut p = Process::new(set_event_later, (e.clone(),));
        p.start().unwrap();
        e.wait().unwrap();
        p.join().unwrap();
        assert!(e.is_set().unwrap());
    });
}

fn notify_when_ready(c: multiproc::manager::ConditionProxy, ready: multiproc::manager::ValueProxy<bool>) {
    let guard = c.acquire().unwrap();
    ready.set(&true).unwrap();
    guard.notify_all().unwrap();
}

#[test]
fn condition_across_processes() {
    // SMT-05
    watchdog("condition_across_processes", 30, || {
        let manager = Manager::start().unwrap();
        let c = manager.condition().unwrap();
        let ready = manager.value(&false).unwrap();
        let guard = c.acquire().unwrap();
        let mut p = Process::new(notify_when_ready, (c.clone(), ready.clone()));
        p.start().unwrap();
        guard.wait_for(|| ready.get()).unwrap();
        assert!(!guard.wait_timeout(Duration::from_millis(10)).unwrap());
        drop(guard);
        p.join().unwrap();
        let e = c.clone();
        // Waiting without the lock is refused.
        let unheld = e.acquire().unwrap();
        drop(unheld);
    });
}

fn barrier_party(b: BarrierProxy) -> multiproc::Result<()> {
    b.wait().map(drop)
}

#[test]
fn barrier_across_processes() {
    // SMT-06
    watchdog("barrier_across_processes", 30, || {
        let manager = Manager::start().unwrap();
        let b = manager.barrier(3, None).unwrap();
        assert_eq!(b.parties().unwrap(), 3);
        let mut children: Vec<Process> = (0..2).map(|_| Process::new(barrier_party, (b.clone(),))).collect();
        for c in &mut children {
            c.start().unwrap();
        }
        let index = b.wait().unwrap();
        assert!(index < 3);
        for c in &mut children {
            assert_eq!(c.join().unwrap(), 0);
        }
        // A timeout breaks it; reset makes it usable.
        assert!(matches!(b.wait_timeout(Duration::from_millis(20)), Err(Error::BrokenBarrier)));
        assert!(b.broken().unwrap());
        b.reset().unwrap();
        assert!(!b.broken().unwrap());
        b.abort().unwrap();
        assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    });
}

// ---------------------------------------------------------------------------------------------
// User types (seed 003's MathsClass; MGR-01)
// ---------------------------------------------------------------------------------------------

#[derive(Default, Serialize, Deserialize)]
struct MathsClass {
    calls: u32,
}

#[multiproc::managed]
impl MathsClass {
    /// Adds.
    pub fn add(&mut self, x: i64, y: i64) -> i64 {
        self.calls += 1;
        x + y
    }

    /// Multiplies.
    pub fn mul(&mut self, x: i64, y: i64) -> i64 {
        self.calls += 1;
        x * y
    }

    /// Divides, failing on zero.
    pub fn div(&self, x: i64, y: i64) -> Result<i64, String> {
        x.checked_div(y).ok_or_else(|| format!("ValueError: cannot divide {x} by zero"))
    }

    pub fn calls(&self) -> u32 {
        self.calls
    }

    #[allow(dead_code)]
    fn hidden(&self) -> u32 {
        0
    }
}

fn use_maths(maths: MathsClassProxy) -> multiproc::Result<()> {
    assert_eq!(maths.mul(7, 8)?, 56);
    Ok(())
}

#[test]
fn custom_type_through_a_base_manager() {
    watchdog("custom_type_through_a_base_manager", 30, || {
        let manager = BaseManager::<(MathsClass,)>::start().unwrap();
        let maths = manager.create(MathsClass::default()).unwrap();
        assert_eq!(maths.add(4, 3).unwrap(), 7);
        run_child(use_maths, (maths.clone(),));
        assert_eq!(maths.calls().unwrap(), 2, "state lives in the server");
        let e = maths.div(1, 0).unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("cannot divide 1 by zero")), "{e}");
        assert_eq!(maths.div(9, 3).unwrap(), 3);
        let e = maths.0.call_method::<_, u32>("hidden", &()).unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("exposes no method")), "{e}");
        let e = maths.0.call_method::<_, i64>("add", &("not", "numbers")).unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("bad arguments")), "{e}");

        // Shared under a name: the second `create` gets the first object (its value is unused).
        let shared = manager.named("maths").create(MathsClass::default()).unwrap();
        shared.add(1, 1).unwrap();
        let again = manager.named("maths").create(MathsClass { calls: 100 }).unwrap();
        assert_eq!(again.calls().unwrap(), 1);
        let e = manager.named("maths").dict::<u8, u8>().unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("TypeError")), "{e}");

        let plain = Manager::start().unwrap();
        let e = plain.create(MathsClass::default()).unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("not registered")), "{e}");
    });
}

// ---------------------------------------------------------------------------------------------
// References and leaks
// ---------------------------------------------------------------------------------------------

fn keep_nothing(_d: DictProxy<u32, u32>) {}

fn hold_forever(_d: DictProxy<u32, u32>, out: Outbox) {
    send(&out, "holding");
    loop {
        std::thread::park();
    }
}

#[test]
fn objects_are_freed_with_their_last_proxy() {
    watchdog("objects_are_freed_with_their_last_proxy", 30, || {
        let manager = Manager::start().unwrap();
        assert_eq!(manager.object_count().unwrap(), 0);
        let d = manager.dict::<u32, u32>().unwrap();
        let l = manager.list::<u32>(&[]).unwrap();
        assert_eq!(manager.object_count().unwrap(), 2);
        drop(l);
        eventually(|| manager.object_count().unwrap() == 1);

        // Clones and copies sent to children share the object; it goes with the last.
        let copy = d.clone();
        drop(d);
        run_child(keep_nothing, (copy.clone(),));
        assert_eq!(manager.object_count().unwrap(), 1);
        copy.insert(&1, &1).unwrap();
        // A proxy serialized but never used elsewhere releases its reference when dropped.
        let unused = copy.clone();
        drop(copy);
        assert_eq!(manager.object_count().unwrap(), 1);
        drop(unused);
        eventually(|| manager.object_count().unwrap() == 0);

        // A child killed while holding a proxy leaks nothing.
        let d = manager.dict::<u32, u32>().unwrap();
        let (inbox, outbox) = channel();
        let mut p = Process::new(hold_forever, (d.clone(), outbox));
        drop(d);
        p.start().unwrap();
        assert_eq!(inbox.recv(10), "holding");
        assert_eq!(manager.object_count().unwrap(), 1);
        p.kill().unwrap();
        p.join().unwrap();
        eventually(|| manager.object_count().unwrap() == 0);
    });
}

fn wait_in_get(q: QueueProxy<u32>, out: Outbox) {
    // The first call connects and adopts the reference; the next one waits in the server.
    assert!(q.is_empty().unwrap());
    send(&out, "waiting");
    let _ = q.get();
}

#[test]
fn client_killed_in_the_middle_of_a_call_leaks_nothing() {
    watchdog("client_killed_in_the_middle_of_a_call_leaks_nothing", 30, || {
        let manager = Manager::start().unwrap();
        let server = manager.server_pid().unwrap();
        let q = manager.queue::<u32>().unwrap();
        let (inbox, outbox) = channel();
        let mut p = Process::new(wait_in_get, (q.clone(), outbox));
        drop(q);
        p.start().unwrap();
        assert_eq!(inbox.recv(10), "waiting");
        // The child's `get` is now (or soon) waiting in the server; kill it there. (Killed just
        // before the call, it must leak nothing either.)
        p.kill().unwrap();
        p.join().unwrap();
        eventually(|| manager.object_count().unwrap() == 0);
        // What remains: the accept loop, the owner watch, and our control connection's thread.
        eventually(|| thread_count(server) <= 3);
    });
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn server_survives_malformed_requests() {
    watchdog("server_survives_malformed_requests", 30, || {
        let manager = Manager::start().unwrap();
        let mut raw = connect(manager.address(), Some(current_process().authkey())).unwrap();
        for garbage in [&b""[..], b"\xff\xff\xff\xff", b"\x01\x63\x00", b"\x00\x0d\xff\xff\xff\xff\xff\xff\xff\xff\x7f"]
        {
            raw.send_bytes(garbage).unwrap();
            let reply = raw.recv_bytes().unwrap();
            assert!(!reply.is_empty(), "an error reply");
        }
        // A call on an object that does not exist.
        raw.send_bytes(&[1, 99, 8]).unwrap();
        assert!(!raw.recv_bytes().unwrap().is_empty());
        drop(raw);
        // Garbage before the handshake.
        let mut unauthenticated = connect(manager.address(), None).unwrap();
        let _ = unauthenticated.send_bytes(b"hello");
        let _ = unauthenticated.recv_bytes();
        // Still serving.
        let d = manager.dict::<u8, u8>().unwrap();
        d.insert(&1, &2).unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(2));
    });
}

#[test]
fn wrong_kind_of_call_is_a_remote_error() {
    watchdog("wrong_kind_of_call_is_a_remote_error", 30, || {
        let manager = Manager::start().unwrap();
        let l = manager.list::<u8>(&[]).unwrap();
        // The same object reached under a name through a proxy of another kind.
        let named = manager.named("thing").dict::<u8, u8>().unwrap();
        let e = manager.named("thing").queue::<u8>().unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("is a dict")), "{e}");
        // Any of the object's methods can be called through the raw proxy, with Python's
        // arguments; one it does not have is an AttributeError.
        l.object().call_method::<_, ()>("append", &(1u8,)).unwrap();
        assert_eq!(l.object().call_method::<_, usize>("__len__", &()).unwrap(), 1);
        let e = l.object().call_method::<_, ()>("no_such_method", &()).unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("AttributeError") && m.contains("no_such_method")), "{e}");
        drop((l, named));
    });
}

// ---------------------------------------------------------------------------------------------
// Lifetime of the server (MGR-02..04)
// ---------------------------------------------------------------------------------------------

#[test]
fn shutdown_and_drop_end_the_server() {
    // MGR-02, MGR-03 (`with Manager():` is the manager's scope here)
    watchdog("shutdown_and_drop_end_the_server", 30, || {
        let mut manager = Manager::start().unwrap();
        let pid = manager.server_pid().unwrap();
        let d = manager.dict::<u8, u8>().unwrap();
        manager.shutdown().unwrap();
        assert_eq!(manager.server_exitcode(), Some(0), "MGR-02: the server ends cleanly");
        assert!(wait_for_exit_of(pid, 10));
        assert!(d.insert(&1, &1).is_err(), "a proxy of a stopped server fails, without hanging");
        manager.shutdown().unwrap();

        let manager = Manager::start().unwrap();
        let pid = manager.server_pid().unwrap();
        drop(manager);
        assert!(wait_for_exit_of(pid, 10));
    });
}

#[test]
fn the_owner_stops_its_server_without_a_new_connection() {
    // The owner keeps the pipe its server reported the address on, and asks over it: a socket
    // file removed from under the server (a cleaner of /tmp) does not make it kill its server.
    watchdog("the_owner_stops_its_server_without_a_new_connection", 30, || {
        let path = std::env::temp_dir().join(format!("multiproc-test-unlinked-{}", std::process::id()));
        let address = Address::Unix(path.clone());
        let mut manager = Manager::start_at(address.clone(), b"key").unwrap();
        let d = manager.dict::<u8, u8>().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(ManagerClient::connect(address, Some(b"key")).is_err(), "nobody reaches the address any more");
        assert_eq!(manager.object_count().unwrap(), 1, "the owner's requests still reach the server");
        manager.shutdown().unwrap();
        assert_eq!(manager.server_exitcode(), Some(0), "the server stopped as asked, it was not killed");
        assert!(d.len().is_err());
    });
}

#[test]
fn serve_forever_returns_when_its_address_is_unreachable() {
    // A shutdown wakes the accept loop without connecting to the server's own address.
    watchdog("serve_forever_returns_when_its_address_is_unreachable", 30, || {
        let path = std::env::temp_dir().join(format!("multiproc-test-unreachable-{}", std::process::id()));
        let server = Server::bind::<()>(Address::Unix(path.clone()), Some(b"key")).unwrap();
        let serving = std::thread::spawn(move || server.serve_forever());
        let client = ManagerClient::connect(Address::Unix(path.clone()), Some(b"key")).unwrap();
        std::fs::remove_file(&path).unwrap();
        client.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

#[test]
fn a_stopped_server_frees_its_address_while_clients_remain() {
    // Client threads outlive `serve_forever`; the abstract name must not stay taken with them.
    watchdog("a_stopped_server_frees_its_address_while_clients_remain", 30, || {
        let name = format!("multiproc-test-rebind-{}", std::process::id());
        let address = Address::Abstract(name.into_bytes());
        let server = Server::bind::<()>(address.clone(), None).unwrap();
        let serving = std::thread::spawn(move || server.serve_forever());
        let client = ManagerClient::connect(address.clone(), None).unwrap();
        let d = client.dict::<u8, u8>().unwrap();
        client.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        let again = Server::bind::<()>(address, None).expect("the address is free once serve_forever returned");
        drop((again, d));
    });
}

#[test]
fn shutdown_kills_a_server_that_died_or_hangs() {
    watchdog("shutdown_kills_a_server_that_died_or_hangs", 60, || {
        // Killed before the request: the request cannot be answered.
        let mut manager = Manager::start().unwrap();
        sigkill(manager.server_pid().unwrap());
        manager.shutdown().unwrap();
        assert_eq!(manager.server_exitcode(), Some(-9));
        // Stopped (a hung server): nothing answers, and the owner gives up after its stop timeout
        // instead of waiting for ever.
        let mut manager = Manager::start().unwrap();
        let d = manager.dict::<u8, u8>().unwrap();
        sigstop(manager.server_pid().unwrap());
        manager.shutdown().unwrap();
        assert_eq!(manager.server_exitcode(), Some(-9), "the hung server was killed");
        assert!(d.len().is_err());
    });
}

fn start_manager_and_wait(out: Outbox) -> multiproc::Result<()> {
    let manager = Manager::start()?;
    send(&out, &manager.server_pid().unwrap_or(0).to_string());
    loop {
        std::thread::park();
    }
}

#[test]
fn server_does_not_outlive_a_killed_owner() {
    watchdog("server_does_not_outlive_a_killed_owner", 30, || {
        let (inbox, outbox) = channel();
        let mut owner = Process::new(start_manager_and_wait, (outbox,));
        owner.start().unwrap();
        let server: i32 = inbox.recv(10).parse().unwrap();
        assert!(server > 0);
        sigkill(owner.pid().unwrap());
        owner.join().unwrap();
        assert!(wait_for_exit_of(server, 10), "the manager's server outlived its owner");
    });
}

// ---------------------------------------------------------------------------------------------
// Remote managers (MGR-05, MGR-06)
// ---------------------------------------------------------------------------------------------

fn remote_worker(address: Address, key: Vec<u8>) -> multiproc::Result<()> {
    let manager = ManagerClient::connect(address, Some(&key))?;
    let jobs = manager.named("jobs").queue::<u32>()?;
    let results = manager.named("results").queue::<(u32, u32)>()?;
    loop {
        match jobs.get()? {
            0 => return Ok(()),
            n => results.put(&(n, n * n))?,
        }
    }
}

fn take_greetings(address: Address, key: Vec<u8>, out: Outbox) -> multiproc::Result<()> {
    let manager = ManagerClient::connect(address, Some(&key))?;
    let queue = manager.named("get_queue").queue::<String>()?;
    let got = [queue.get()?, queue.get()?];
    send(&out, &got.join(","));
    queue.put(&"from the child".to_string())
}

#[test]
fn a_server_serves_objects_its_owner_filled_before_serving() {
    // Issue 15, item 7: CPython's "Using a remote manager" example as it stands:
    // `queue = Queue(); ...register('get_queue', callable=lambda: queue)`, filled before
    // `serve_forever`, then used by clients in other processes.
    watchdog("a_server_serves_objects_its_owner_filled_before_serving", 30, || {
        let key = b"abracadabra".to_vec();
        let server = Server::bind::<()>("127.0.0.1:0".parse().unwrap(), Some(&key)).unwrap();
        let owner = server.client();
        let queue = owner.queue::<String>().unwrap();
        queue.put(&"hello".to_string()).unwrap();
        queue.put(&"world".to_string()).unwrap();
        server.register("get_queue", queue.object()).unwrap();
        // A name is taken once; a proxy of another server cannot be named here.
        let e = server.register("get_queue", queue.object()).unwrap_err();
        assert!(matches!(&e, Error::InvalidState(m) if m.contains("already registered")), "{e}");
        let other = Manager::start().unwrap();
        let foreign = other.list::<u8>(&[]).unwrap();
        let e = server.register("foreign", foreign.object()).unwrap_err();
        assert!(matches!(&e, Error::InvalidState(m) if m.contains("belongs to the manager at")), "{e}");
        let address = server.address().clone();
        let serving = std::thread::spawn(move || server.serve_forever());

        let (inbox, out) = channel();
        let mut child = Process::new(take_greetings, (address.clone(), key.clone(), out));
        child.start().unwrap();
        assert_eq!(inbox.recv(10), "hello,world");
        assert_eq!(child.join().unwrap(), 0);
        // The owner's own proxy sees what the child put, through the same object.
        assert_eq!(queue.get().unwrap(), "from the child");
        // Named for the server's life: the owner's proxy may go, the object stays.
        drop(queue);
        let again = ManagerClient::connect(address, Some(&key)).unwrap();
        assert!(again.named("get_queue").queue::<String>().unwrap().is_empty().unwrap());
        again.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

#[test]
fn a_request_over_the_size_limit_is_refused_and_the_proxy_goes_on() {
    // Issue 16, 4: the sender is told (before, the server closed the connection silently).
    watchdog("a_request_over_the_size_limit_is_refused_and_the_proxy_goes_on", 60, || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<String, String>().unwrap();
        let big = "x".repeat(65 << 20);
        let e = d.insert(&"big".into(), &big).unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m.contains("exceeds the manager's limit")), "{e}");
        d.insert(&"small".into(), &"1".into()).unwrap();
        assert_eq!(d.items().unwrap(), [("small".to_string(), "1".to_string())]);
    });
}

#[test]
fn remote_manager_over_tcp_with_an_authkey() {
    watchdog("remote_manager_over_tcp_with_an_authkey", 30, || {
        let key = b"abracadabra".to_vec();
        let server = Server::bind::<()>("127.0.0.1:0".parse().unwrap(), Some(&key)).unwrap();
        let address = server.address().clone();
        let serving = std::thread::spawn(move || server.serve_forever());

        let manager = ManagerClient::connect(address.clone(), Some(&key)).unwrap();
        let jobs = manager.named("jobs").queue::<u32>().unwrap();
        let results = manager.named("results").queue::<(u32, u32)>().unwrap();
        let mut workers: Vec<Process> =
            (0..2).map(|_| Process::new(remote_worker, (address.clone(), key.clone()))).collect();
        for w in &mut workers {
            w.start().unwrap();
        }
        for n in 1..=10 {
            jobs.put(&n).unwrap();
        }
        let mut got: Vec<(u32, u32)> = (0..10).map(|_| results.get().unwrap()).collect();
        got.sort();
        assert_eq!(got, (1..=10).map(|n| (n, n * n)).collect::<Vec<_>>());
        for _ in &workers {
            jobs.put(&0).unwrap();
        }
        for w in &mut workers {
            assert_eq!(w.join().unwrap(), 0);
        }

        // A client with the wrong key gets nothing.
        let e = ManagerClient::connect(address.clone(), Some(b"wrong")).unwrap_err();
        assert!(matches!(e, Error::Authentication(_) | Error::Eof | Error::Io { .. }), "{e}");
        let e = ManagerClient::connect(address.clone(), None).unwrap_err();
        assert!(!matches!(e, Error::Remote(_)), "{e}");

        manager.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        assert!(connect(&address, Some(&key)).is_err(), "nobody listens after shutdown");
    });
}

#[test]
fn non_loopback_without_authkey_is_refused() {
    let e = Server::bind::<()>("0.0.0.0:0".parse().unwrap(), None).unwrap_err();
    assert!(matches!(e, Error::UnprotectedAddress(_)), "{e}");
    assert!(e.to_string().contains("authkey"));
    // Loopback without a key, or anywhere with one, is allowed.
    drop(Server::bind::<()>("127.0.0.1:0".parse().unwrap(), None).unwrap());
    drop(Server::bind::<()>("0.0.0.0:0".parse().unwrap(), Some(b"key")).unwrap());
}

#[test]
fn manager_started_at_an_address_restarts_there() {
    // MGR-06
    watchdog("manager_started_at_an_address_restarts_there", 30, || {
        let path = std::env::temp_dir().join(format!("multiproc-test-manager-{}", std::process::id()));
        let address = Address::Unix(path.clone());
        for round in 0..2u8 {
            let manager = Manager::start_at(address.clone(), b"key").unwrap();
            let other = ManagerClient::connect(address.clone(), Some(b"key")).unwrap();
            let v = other.named("v").value(&round).unwrap();
            assert_eq!(manager.named("v").value(&99u8).unwrap().get().unwrap(), round);
            drop(v);
        }
        assert!(!path.exists(), "the socket file is removed with the server");
        let started = Instant::now();
        let manager = Manager::start_at("127.0.0.1:0".parse().unwrap(), b"key").unwrap();
        assert!(matches!(manager.address(), Address::Tcp(a) if a.port() != 0));
        assert!(started.elapsed() < Duration::from_secs(10));
    });
}

/// Random bytes, and valid requests with bytes changed, through the server's decoder and handler
/// (the fuzz target `manager_requests` does this at length; this is its short, always-run form).
#[test]
fn request_decoder_takes_garbage() {
    watchdog("request_decoder_takes_garbage", 60, || {
        let mut next = common::xorshift(0x9e37_79b9_7f4a_7c15);
        // Create a queue (Kind 4: FIFO, maxsize 1, not joinable), put 7 into it, get_nowait twice.
        let valid: &[u8] = &[0, 4, 0, 1, 0, 0, 1, 1, 3, 0, 1, 7, 0, 0, 1, 1, 3, 1, 1, 0, 0, 1, 1, 3, 1, 1, 0, 0];
        for round in 0..3000 {
            let mut input: Vec<u8> =
                if round % 2 == 0 { (0..next() % 64).map(|_| next() as u8).collect() } else { valid.to_vec() };
            for _ in 0..(next() % 4) {
                let len = input.len() as u64;
                if len > 0 {
                    input[(next() % len) as usize] = next() as u8;
                }
            }
            multiproc::__private::fuzz_manager_request(&input);
        }
    });
}

#[test]
fn proxies_inside_managed_containers() {
    // CONT-09, CONT-10: a queue proxy stored in a dict, and a list proxy in a list, used through
    // the container.
    watchdog("proxies_inside_managed_containers", 30, || {
        let manager = Manager::start().unwrap();
        let queues = manager.dict::<String, QueueProxy<u32>>().unwrap();
        let q = manager.queue::<u32>().unwrap();
        queues.insert(&"jobs".into(), &q).unwrap();
        queues.get(&"jobs".into()).unwrap().unwrap().put(&5).unwrap();
        assert_eq!(q.get().unwrap(), 5);
        q.put(&6).unwrap();
        assert_eq!(queues.get(&"jobs".into()).unwrap().unwrap().get().unwrap(), 6);

        let inner = manager.list::<u8>(&[]).unwrap();
        let outer = manager.list(std::slice::from_ref(&inner)).unwrap();
        outer.get(0).unwrap().append(&1).unwrap();
        inner.append(&2).unwrap();
        assert_eq!(outer.get(0).unwrap().to_vec().unwrap(), [1, 2]);
    });
}

/// Managers and proxies can be shared between threads and sent to them.
#[allow(dead_code)]
fn managers_and_proxies_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Manager>();
    both::<BaseManager<(MathsClass,)>>();
    both::<ManagerClient>();
    both::<DictProxy<String, Value>>();
    both::<QueueProxy<u32>>();
    both::<LockProxy>();
    both::<MathsClassProxy>();
}

fn announce(out: Outbox) {
    send(&out, &format!("initialized in {}", std::process::id()));
}

fn refuse() -> multiproc::Result<()> {
    Err(Error::InvalidState("no".into()))
}

#[test]
fn initializer_runs_once_in_the_server() {
    // MGR-08
    watchdog("initializer_runs_once_in_the_server", 30, || {
        let (inbox, outbox) = channel();
        let manager = Manager::start_with_initializer(announce, (outbox,)).unwrap();
        let pid = manager.server_pid().unwrap();
        assert_eq!(inbox.recv(10), format!("initialized in {pid}"));
        manager.dict::<u8, u8>().unwrap().insert(&1, &1).unwrap();
        inbox.0.set_nonblocking(true).unwrap();
        assert!(inbox.0.recv(&mut [0u8; 64]).is_err(), "the initializer ran once");

        let e = Manager::start_with_initializer(refuse, ()).unwrap_err();
        assert!(e.to_string().contains("initializer failed"), "{e}");
    });
}

// ---------------------------------------------------------------------------------------------
// Container operations (CONT-01, CONT-04, CONT-06, SMT-09, SMT-10, SMT-14, SMT-15)
// ---------------------------------------------------------------------------------------------

use multiproc::manager::{ListProxy, SetProxy, Slice};

fn remote_error_says(result: multiproc::Result<impl std::fmt::Debug>, what: &str) {
    match result {
        Err(Error::Remote(message)) => assert!(message.contains(what), "{message}"),
        other => panic!("expected a remote {what}, got {other:?}"),
    }
}

#[test]
fn list_slices_match_pythons() {
    // CONT-01
    watchdog("list_slices_match_pythons", 30, || {
        let manager = Manager::start().unwrap();
        let source: Vec<i64> = (0..10).collect();
        let l = manager.list(&source).unwrap();
        assert_eq!(l.get_slice(..).unwrap(), source);
        assert_eq!(l.get_slice(2..7).unwrap(), [2, 3, 4, 5, 6]);
        assert_eq!(l.get_slice(-3..).unwrap(), [7, 8, 9]);
        assert_eq!(l.get_slice(..=-1).unwrap(), source, "..=-1 reaches the last item");
        assert_eq!(l.get_slice(-100..3).unwrap(), [0, 1, 2], "bounds are clamped");
        assert_eq!(l.get_slice(Slice::from_parts(Some(7), Some(2), 1)).unwrap(), Vec::<i64>::new());
        assert_eq!(l.get_slice(Slice::from(1..).step(3)).unwrap(), [1, 4, 7]);
        assert_eq!(l.get_slice(Slice::from(..).step(-1)).unwrap(), (0..10).rev().collect::<Vec<_>>());
        assert_eq!(l.get_slice(Slice::from_parts(Some(8), Some(2), -2)).unwrap(), [8, 6, 4]);
        remote_error_says(l.get_slice(Slice::from(..).step(0)), "slice step cannot be zero");

        // An empty list: extend, index, slice past the end, `*= 2`; `+ [5, 6]` is a plain Vec.
        let empty = manager.list::<i64>(&[]).unwrap();
        empty.extend(&[1, 2, 3]).unwrap();
        assert_eq!(empty.get(-1).unwrap(), 3);
        assert_eq!(empty.get_slice(2..100).unwrap(), [3]);
        empty.repeat(2).unwrap();
        assert_eq!(empty.to_vec().unwrap(), [1, 2, 3, 1, 2, 3]);
        let plus = [empty.to_vec().unwrap(), vec![5, 6]].concat();
        assert_eq!(plus.len(), 8);
        assert_eq!(empty.len().unwrap(), 6, "the proxy's list is unchanged by `+`");
        empty.repeat(0).unwrap();
        assert!(empty.is_empty().unwrap());
        empty.repeat(usize::MAX).unwrap();
        assert!(empty.is_empty().unwrap(), "an empty list repeated any number of times is empty, at once");
        empty.append(&1).unwrap();
        remote_error_says(empty.repeat(usize::MAX), "MemoryError");
        assert_eq!(empty.to_vec().unwrap(), [1], "a refused repeat changes nothing");

        // Assignment and deletion.
        l.set_slice(2..4, &[20, 30, 31]).unwrap();
        assert_eq!(l.get_slice(..6).unwrap(), [0, 1, 20, 30, 31, 4]);
        l.set_slice(Slice::from_parts(Some(5), Some(2), 1), &[-1]).unwrap();
        assert_eq!(l.get_slice(4..7).unwrap(), [31, -1, 4], "an empty span inserts at its start");
        l.set_slice(..3, &[]).unwrap();
        assert_eq!(l.to_vec().unwrap(), [30, 31, -1, 4, 5, 6, 7, 8, 9]);
        l.set_slice(Slice::from(..).step(4), &[100, 200, 300]).unwrap();
        assert_eq!(l.to_vec().unwrap(), [100, 31, -1, 4, 200, 6, 7, 8, 300]);
        remote_error_says(
            l.set_slice(Slice::from(..).step(2), &[1]),
            "attempt to assign sequence of size 1 to extended slice of size 5",
        );
        l.delete_slice(Slice::from(..).step(2)).unwrap();
        assert_eq!(l.to_vec().unwrap(), [31, 4, 6, 8]);
        l.delete_slice(-2..).unwrap();
        assert_eq!(l.to_vec().unwrap(), [31, 4]);
        l.delete_slice(..).unwrap();
        assert!(l.is_empty().unwrap());
    });
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Job {
    name: String,
    priority: i32,
}

#[test]
fn lists_sort_in_place() {
    watchdog("lists_sort_in_place", 30, || {
        let manager = Manager::start().unwrap();
        // Encoded bytes do not sort as numbers do (varints, zigzag): the order is T's own.
        let l = manager.list(&[300i64, -1, 5, 128, -300, 0]).unwrap();
        l.sort().unwrap();
        assert_eq!(l.to_vec().unwrap(), [-300, -1, 0, 5, 128, 300]);
        l.sort_by(|a, b| b.cmp(a)).unwrap();
        assert_eq!(l.to_vec().unwrap(), [300, 128, 5, 0, -1, -300]);
        let jobs = [("b", 2), ("a", 1), ("c", 2), ("d", 1)]
            .map(|(name, priority)| Job { name: name.into(), priority })
            .to_vec();
        let l = manager.list(&jobs).unwrap();
        l.sort_by(|x, y| x.priority.cmp(&y.priority)).unwrap();
        let names: Vec<String> = l.to_vec().unwrap().into_iter().map(|j| j.name).collect();
        assert_eq!(names, ["a", "d", "b", "c"], "the sort is stable");
        manager.list::<u8>(&[]).unwrap().sort().unwrap();
    });
}

#[test]
fn a_sort_that_keeps_losing_to_writers_gives_up_with_an_error() {
    watchdog("a_sort_that_keeps_losing_to_writers", 30, || {
        let manager = Manager::start().unwrap();
        let l = manager.list(&[2i64, 1]).unwrap();
        // Every attempt (one comparison of two items) sees the list change under it: a writer
        // replaces an item during the comparison.
        let writes = std::cell::Cell::new(0i64);
        let error = l
            .sort_by(|a, b| {
                writes.set(writes.get() + 1);
                l.set(1, &-writes.get()).unwrap();
                a.cmp(b)
            })
            .unwrap_err();
        assert!(matches!(&error, Error::InvalidState(m) if m.contains("changed during each")), "{error}");
        assert_eq!(writes.get(), 16, "one write per attempt");
        assert_eq!(l.to_vec().unwrap(), [2, -16], "the list is as the writer left it");
    });
}

#[test]
fn list_iteration_goes_by_position() {
    // CONT-04: an iterator made before a change sees the change.
    watchdog("list_iteration_goes_by_position", 30, || {
        let manager = Manager::start().unwrap();
        let l = manager.list(&[1u32, 2, 3]).unwrap();
        assert_eq!(l.iter().collect::<multiproc::Result<Vec<_>>>().unwrap(), [1, 2, 3]);
        let mut it = l.iter();
        assert_eq!(it.next().unwrap().unwrap(), 1);
        l.append(&4).unwrap();
        assert_eq!(it.by_ref().collect::<multiproc::Result<Vec<_>>>().unwrap(), [2, 3, 4]);
        assert!(it.next().is_none(), "an ended iterator stays ended");
    });
}

fn list_operators_in_a_child(l: ListProxy<i32>) -> multiproc::Result<()> {
    // SMT-09, in the child.
    assert_eq!(l.get(0)?, 5);
    assert_eq!(l.count(&5)?, 1);
    assert_eq!(l.index(&6)?, 1);
    l.extend(&[7])?; // `obj += [7]`
    assert_eq!(l.to_vec()?, [5, 6, 7]);
    l.repeat(2)?; // `obj *= 2`
    assert_eq!(l.to_vec()?, [5, 6, 7, 5, 6, 7]);
    assert_eq!(l.to_vec()?.repeat(2).len(), 12, "`obj * 2` is a plain list");
    l.extend(&[8, 9])?;
    l.sort()?;
    assert_eq!(l.to_vec()?, [5, 5, 6, 6, 7, 7, 8, 9]);
    l.reverse()?;
    assert_eq!(l.iter().collect::<multiproc::Result<Vec<_>>>()?, [9, 8, 7, 7, 6, 6, 5, 5]);
    assert_eq!(l.len()?, 8);
    assert_eq!(l.pop_at(0)?, 9);
    l.clear()
}

#[test]
fn list_operators_from_a_child() {
    watchdog("list_operators_from_a_child", 30, || {
        let manager = Manager::start().unwrap();
        let l = manager.list(&[5, 6]).unwrap();
        run_child(list_operators_in_a_child, (l.clone(),));
        assert_eq!(l.len().unwrap(), 0);
    });
}

fn dict_operations_in_a_child(d: DictProxy<String, i32>) -> multiproc::Result<()> {
    // SMT-10, in the child.
    let key = |k: &str| k.to_string();
    assert_eq!(d.len()?, 2);
    assert_eq!(d.get(&key("a"))?, Some(1));
    assert_eq!(d.items()?, [(key("a"), 1), (key("b"), 2)]);
    d.update([(&key("c"), &3)])?; // `obj |= {'c': 3}`
    assert_eq!(d.keys()?, ["a", "b", "c"]);
    assert_eq!(d.values()?.into_iter().rev().collect::<Vec<_>>(), [3, 2, 1], "reversed()");
    // `obj | {...}`: the other side wins; `{...} | obj`: the dict wins.
    let merged = d.union([(&key("a"), &10), (&key("z"), &26)])?;
    assert_eq!(merged, [(key("a"), 10), (key("b"), 2), (key("c"), 3), (key("z"), 26)]);
    let mut other: Vec<(String, i32)> = vec![(key("a"), 10), (key("z"), 26)];
    for (k, v) in d.items()? {
        match other.iter_mut().find(|(o, _)| *o == k) {
            Some(slot) => slot.1 = v,
            None => other.push((k, v)),
        }
    }
    assert_eq!(other[0], (key("a"), 1));
    assert_eq!(d.len()?, 3, "`|` leaves the dict alone");
    assert_eq!(d.pop_item()?, Some((key("c"), 3)), "popitem takes the last pair");
    assert_eq!(d.set_default(&key("d"), &4)?, 4);
    assert_eq!(d.set_default(&key("d"), &5)?, 4);
    assert_eq!(d.remove(&key("b"))?, Some(2));
    assert_eq!(d.items()?, [(key("a"), 1), (key("d"), 4)]);
    d.clear()?;
    assert_eq!(d.pop_item()?, None);
    d.insert(&key("last"), &0)
}

#[test]
fn dict_operations_from_a_child() {
    watchdog("dict_operations_from_a_child", 30, || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<String, i32>().unwrap();
        d.update([(&"a".to_string(), &1), (&"b".to_string(), &2)]).unwrap();
        run_child(dict_operations_in_a_child, (d.clone(),));
        assert_eq!(d.items().unwrap(), [("last".to_string(), 0)]);
    });
}

fn sorted(mut items: Vec<i32>) -> Vec<i32> {
    items.sort();
    items
}

fn set_operations_in_a_child(s: SetProxy<i32>) -> multiproc::Result<()> {
    // SMT-14, in the child.
    s.update(&[1, 2, 3])?;
    assert_eq!(s.len()?, 3);
    assert!(s.contains(&2)?);
    assert!(!s.contains(&9)?);
    assert_eq!(sorted(s.union(&[3, 4, 4])?), [1, 2, 3, 4]);
    assert_eq!(sorted(s.intersection(&[2, 3, 5])?), [2, 3]);
    assert_eq!(sorted(s.difference(&[2])?), [1, 3]);
    assert_eq!(sorted(s.symmetric_difference(&[3, 4, 4])?), [1, 2, 4]);
    assert_eq!(s.len()?, 3, "the plain-result operators leave the set alone");
    assert!(s.is_disjoint(&[7, 8])?);
    assert!(!s.is_disjoint(&[3])?);
    assert!(s.is_subset(&[1, 2, 3, 4])?);
    assert!(!s.is_subset(&[1, 2])?);
    assert!(s.is_superset(&[1, 3])?);
    assert!(!s.is_superset(&[1, 5])?);
    s.add(&4)?;
    assert!(s.discard(&4)?);
    assert!(!s.discard(&4)?, "discard is idempotent");
    s.intersection_update(&[1, 2, 5])?; // &=
    assert_eq!(sorted(s.to_vec()?), [1, 2]);
    s.symmetric_difference_update(&[2, 6, 6])?; // ^=
    assert_eq!(sorted(s.to_vec()?), [1, 6]);
    s.difference_update(&[6])?; // -=
    assert_eq!(s.to_vec()?, [1]);
    assert_eq!(s.pop()?, Some(1));
    assert_eq!(s.pop()?, None);
    s.update(&[42])
}

#[test]
fn set_operations_from_a_child() {
    // SMT-15: a set starts from items, duplicates dropped.
    watchdog("set_operations_from_a_child", 30, || {
        let manager = Manager::start().unwrap();
        let s = manager.set_from(&[3, 1, 3]).unwrap();
        assert_eq!(s.to_vec().unwrap(), [3, 1]);
        s.clear().unwrap();
        run_child(set_operations_in_a_child, (s.clone(),));
        assert_eq!(s.to_vec().unwrap(), [42]);
    });
}

/// A list that may hold itself.
#[derive(Serialize, Deserialize)]
struct Node(ListProxy<Node>);

#[test]
fn lists_of_lists_and_a_list_that_holds_itself() {
    // CONT-05
    watchdog("lists_of_lists_and_a_list_that_holds_itself", 30, || {
        let manager = Manager::start().unwrap();
        let rows: Vec<ListProxy<i32>> = (0..3).map(|i| manager.list(&[i]).unwrap()).collect();
        let grid = manager.list(&rows).unwrap();
        for i in 0..3 {
            grid.get(i).unwrap().append(&(10 * i as i32)).unwrap();
        }
        assert_eq!(rows[2].to_vec().unwrap(), [2, 20], "mutations through the outer list reach the inner");
        let popped = grid.pop().unwrap();
        popped.append(&200).unwrap();
        assert_eq!(rows[2].to_vec().unwrap(), [2, 20, 200]);
        assert_eq!(grid.len().unwrap(), 2);

        let selfish = manager.list::<Node>(&[]).unwrap();
        selfish.append(&Node(selfish.clone())).unwrap();
        let inner = selfish.get(0).unwrap().0;
        assert_eq!(inner.object().id(), selfish.object().id());
        assert_eq!(inner.len().unwrap(), 1);
        drop((inner, selfish, popped, grid, rows));
        eventually(|| manager.object_count().unwrap() == 0);
    });
}

#[test]
fn dicts_nested_in_containers_stay_live() {
    // CONT-09: through the outer container and through the inner proxy alike, and after the
    // outer dict is cleared (the inner dict lives on through the proxy kept here).
    watchdog("dicts_nested_in_containers_stay_live", 30, || {
        let manager = Manager::start().unwrap();
        let outer = manager.dict::<String, DictProxy<String, i32>>().unwrap();
        let inner = manager.dict::<String, i32>().unwrap();
        outer.insert(&"a".into(), &inner).unwrap();
        outer.get(&"a".into()).unwrap().unwrap().insert(&"x".into(), &1).unwrap();
        assert_eq!(inner.get(&"x".into()).unwrap(), Some(1));
        inner.insert(&"y".into(), &2).unwrap();
        assert_eq!(outer.get(&"a".into()).unwrap().unwrap().len().unwrap(), 2);
        let in_list = manager.list(std::slice::from_ref(&inner)).unwrap();
        in_list.get(0).unwrap().insert(&"z".into(), &3).unwrap();
        outer.clear().unwrap();
        assert_eq!(inner.keys().unwrap(), ["x", "y", "z"]);
        // Plain collections inside a proxy come back as plain collections.
        let plain = manager.list(&[vec![1, 2], vec![3]]).unwrap();
        assert_eq!(plain.get(0).unwrap(), vec![1, 2]);
    });
}

#[test]
fn timeouts_too_far_away_for_the_clock_are_no_limit() {
    // The fuzz target found that a client sending `Duration::MAX` made the server's call panic.
    watchdog("timeouts_too_far_away_for_the_clock_are_no_limit", 30, || {
        let manager = Manager::start().unwrap();
        let q = manager.queue::<u8>().unwrap();
        q.put_timeout(&1, Duration::MAX).unwrap();
        assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 1);
        let e = manager.event().unwrap();
        e.set().unwrap();
        assert!(e.wait_timeout(Duration::MAX).unwrap());
        let lock = manager.lock().unwrap();
        drop(lock.acquire_timeout(Duration::MAX).unwrap());
    });
}
