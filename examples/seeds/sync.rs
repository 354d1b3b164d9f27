//! The synchronization scenarios of seeds 000, 002, 003 and 004 (Lock, Semaphore, Event), and a
//! Barrier and a Condition example, shared by the standalone examples and the tour.
//!
//! Where the seeds sleep for seconds to simulate work, these sleep for milliseconds. Children that
//! report to the parent share the sending end of one Unix datagram socket ([`Outbox`]): each
//! datagram arrives whole, so any number of processes can send on it. That channel checks what the
//! seeds only print; where a seed itself uses a `Queue` (joo_a and joo_b), so does the example.
#![allow(dead_code)]

// Each scenario module is also built alone by its standalone examples, so each includes this.
#[allow(clippy::duplicate_mod)]
#[path = "support.rs"]
mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use multiproc::sync::{AcquireError, LockGuard};
use multiproc::{Barrier, Condition, Event, Handle, Lock, Process, Queue, Semaphore};
use serde::{Deserialize, Serialize};

use support::{join_all, random_in, sleep_ms, start_all};

// ---------------------------------------------------------------------------------------------
// Helpers

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
}

/// Takes `lock`, the Rust form of `with lock:`. A holder that died inside its critical section
/// left nothing half-done in these examples, so the lock is simply taken over.
fn hold(lock: &Lock) -> LockGuard<'_> {
    match lock.acquire() {
        Ok(guard) => guard,
        Err(AcquireError::OwnerDied(died)) => {
            println!("  (a previous holder died holding the lock; taking it over)");
            died.recover()
        }
        Err(e) => panic!("acquire the lock: {e}"),
    }
}

/// The parent's end of a many-to-one report channel.
pub struct Inbox {
    socket: UnixDatagram,
}

/// The children's end of the report channel: give each child its own [`Outbox::try_clone`].
#[derive(Serialize, Deserialize)]
pub struct Outbox(Handle<UnixDatagram>);

fn reports() -> multiproc::Result<(Inbox, Outbox)> {
    let (inbox, outbox) = UnixDatagram::pair().map_err(io)?;
    // A bound, so that a child that never reports fails the example instead of hanging it.
    inbox.set_read_timeout(Some(Duration::from_secs(10))).map_err(io)?;
    Ok((Inbox { socket: inbox }, Outbox(Handle::new(outbox))))
}

impl Outbox {
    fn try_clone(&self) -> multiproc::Result<Outbox> {
        Ok(Outbox(Handle::new(self.0.try_clone().map_err(io)?)))
    }

    fn send(&self, text: &str) -> std::io::Result<()> {
        self.0.send(text.as_bytes()).map(drop)
    }
}

impl Inbox {
    fn recv(&self) -> multiproc::Result<String> {
        let mut buf = [0u8; 256];
        let n = self.socket.recv(&mut buf).map_err(io)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The next `n` reports, in the order they were sent.
    fn recv_n(&self, n: usize) -> multiproc::Result<Vec<String>> {
        (0..n).map(|_| self.recv()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Seed 002: five processes doing work under a lock

fn work_under_lock(n: u32, lock: Lock, log: Outbox) -> std::io::Result<()> {
    // Everything between acquiring and dropping the guard runs in one process at a time.
    let _guard = hold(&lock);
    println!("  {n}: {} is running", std::process::id());
    log.send(&format!("{n} running"))?;
    sleep_ms(10); // 1 s in the seed
    println!("  {n}: {} is done", std::process::id());
    log.send(&format!("{n} done"))
}

/// Seed 002: five processes each print "running", sleep and print "done" while holding one lock:
/// the five run one after another.
pub fn five_workers_under_lock() -> multiproc::Result<()> {
    let lock = Lock::new()?;
    let (inbox, outbox) = reports()?;
    let mut children = Vec::new();
    for n in 0..5 {
        children.push(Process::new(work_under_lock, (n, lock.clone(), outbox.try_clone()?)));
    }
    start_all(&mut children)?;
    let log = inbox.recv_n(10)?;
    join_all(&mut children)?;
    // One at a time: each "running" is followed by the same worker's "done".
    let mut order = Vec::new();
    for pair in log.chunks(2) {
        let n = pair[0].trim_end_matches(" running");
        assert_eq!(pair[1], format!("{n} done"), "interleaved: {log:?}");
        order.push(n);
    }
    println!("  never two inside at once; they ran in the order {}", order.join(", "));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 002: ticket grabbing

/// The `count` of a JSON object such as `{"count": 1}` (a tiny hand-written parser: just enough
/// for this file).
fn parse_count(json: &str) -> Option<i64> {
    let after_key = &json[json.find("\"count\"")? + "\"count\"".len()..];
    let value = after_key.trim_start().strip_prefix(':')?.trim_start();
    let end = value.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(value.len());
    value[..end].parse().ok()
}

fn read_count(db: &Path) -> std::io::Result<i64> {
    let text = std::fs::read_to_string(db)?;
    parse_count(&text)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no count in {text:?}")))
}

/// Writes `{"count": N}`. Written aside and renamed over the file, so that a buyer reading it
/// without the lock (the seed's `search`) sees the old or the new content, never half of it.
fn write_count(db: &Path, count: i64) -> std::io::Result<()> {
    let aside = db.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&aside, format!("{{\"count\": {count}}}"))?;
    std::fs::rename(&aside, db)
}

fn buy_ticket(db: PathBuf, user: String, lock: Lock, go: Event, report: Outbox) -> std::io::Result<()> {
    go.wait(); // all buyers start together, as the seed's do
    // search(): looking needs no lock; everyone may see a ticket left.
    println!("  {user} sees {} ticket(s) left", read_count(&db)?);
    // get(): the read, the check and the write happen under the lock.
    let _guard = hold(&lock);
    let count = read_count(&db)?;
    sleep_ms(2); // the seed's network delay when reading, 0.1 s
    if count > 0 {
        write_count(&db, count - 1)?;
        println!("  {user}: ticket bought!");
        report.send(&format!("bought {user}"))
    } else {
        println!("  {user}: sorry, sold out");
        report.send(&format!("sold-out {user}"))
    }
}

/// Seed 002: a file holds `{"count": 1}`; ten buyers read it and, under a lock, buy if a ticket is
/// left. Exactly one gets it.
pub fn grab_ticket() -> multiproc::Result<()> {
    let db = std::env::temp_dir().join(format!("multiproc-tickets-{}.json", std::process::id()));
    write_count(&db, 1).map_err(io)?;
    let lock = Lock::new()?;
    let go = Event::new()?;
    let (inbox, outbox) = reports()?;
    let mut buyers = Vec::new();
    for i in 0..10 {
        let user = format!("user{i}");
        buyers.push(Process::new(buy_ticket, (db.clone(), user, lock.clone(), go.clone(), outbox.try_clone()?)));
    }
    let started = start_all(&mut buyers);
    go.set(); // even if a start failed: the buyers already started must not wait forever
    started?;
    let outcomes = inbox.recv_n(10);
    let joined = join_all(&mut buyers);
    let left = std::fs::read_to_string(&db).map_err(io);
    let _ = std::fs::remove_file(&db);
    let (outcomes, left) = (outcomes?, left?);
    joined?;
    let winners: Vec<&str> = outcomes.iter().filter_map(|o| o.strip_prefix("bought ")).collect();
    assert_eq!(winners.len(), 1, "exactly one buyer gets the ticket: {outcomes:?}");
    println!("  {} got the only ticket, {} were too late; the file now says {left}", winners[0], outcomes.len() - 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 003: "hello world" under a lock

fn hello_under_lock(lock: Lock, i: u32) {
    let _guard = hold(&lock);
    println!("  hello world {i}");
}

/// Seed 003: ten processes print "hello world" under one lock, so that no two lines mix.
pub fn hello_world_under_lock() -> multiproc::Result<()> {
    let lock = Lock::new()?;
    let mut children: Vec<Process> = (0..10).map(|i| Process::new(hello_under_lock, (lock.clone(), i))).collect();
    start_all(&mut children)?;
    join_all(&mut children)
}

// ---------------------------------------------------------------------------------------------
// Seeds 000 and 002: a semaphore lets N in at a time

fn visit(who: String, rooms: Semaphore, stay_ms: (u64, u64), log: Outbox) -> std::io::Result<()> {
    let _room = rooms.acquire(); // given back when `_room` is dropped, after the last report
    println!("  {who} went in");
    log.send(&format!("+{who}"))?;
    sleep_ms(random_in(stay_ms.0, stay_ms.1));
    println!("  {who} came out");
    log.send(&format!("-{who}"))
}

/// Runs one visitor process per name through a `Semaphore(limit)`; returns how many were inside
/// at most. Visitors report going in after acquiring and coming out before releasing, so the
/// reports never show more inside than there were.
fn visitors(names: Vec<String>, limit: u32, stay_ms: (u64, u64)) -> multiproc::Result<u32> {
    let rooms = Semaphore::new(limit)?;
    let (inbox, outbox) = reports()?;
    let mut children = Vec::new();
    for who in &names {
        children.push(Process::new(visit, (who.clone(), rooms.clone(), stay_ms, outbox.try_clone()?)));
    }
    start_all(&mut children)?;
    let (mut inside, mut most) = (0u32, 0u32);
    for report in inbox.recv_n(2 * names.len())? {
        if report.starts_with('+') {
            inside += 1;
            most = most.max(inside);
        } else {
            inside -= 1;
        }
        assert!(inside <= limit, "{inside} inside a Semaphore({limit})");
    }
    join_all(&mut children)?;
    assert_eq!(rooms.value(), limit, "every unit given back");
    Ok(most)
}

/// Seed 000: five guests, two at a time (`Semaphore(2)`); seed 002: thirteen users and four KTV
/// rooms (`Semaphore(4)`).
pub fn semaphore_rooms() -> multiproc::Result<()> {
    let guests = (0..5).map(|i| format!("guest {i}")).collect();
    let most = visitors(guests, 2, (5, 15))?; // 1-3 s in the seed
    println!("  at most {most} guests inside at once (Semaphore(2))\n");
    let users = (0..13).map(|i| format!("user{i} (a KTV room)")).collect();
    let most = visitors(users, 4, (0, 15))?; // 0-3 s in the seed
    println!("  at most {most} KTV rooms taken at once (Semaphore(4))");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 000: an event the parent waits on

fn compute_then_set(done: Event) {
    sleep_ms(20); // 2 s in the seed
    let n = 100;
    println!("  child: the result is {n}");
    done.set();
}

/// Seed 000: the Event methods in one process, then a child that computes and sets an event the
/// parent waits on.
pub fn event_result() -> multiproc::Result<()> {
    let e = Event::new()?;
    println!("  a new event is set: {}", e.is_set());
    e.set();
    println!("  after set(): {}", e.is_set());
    e.wait(); // returns at once: the flag is set
    println!("  wait() passed");
    e.clear();
    println!("  after clear(), wait_timeout(5 ms) returns {}", e.wait_timeout(Duration::from_millis(5)));

    let done = Event::new()?;
    let mut child = Process::new(compute_then_set, (done.clone(),));
    child.start()?;
    println!("  main process waiting...");
    done.wait();
    println!("  the result is out; the main process can use it");
    join_all(std::slice::from_mut(&mut child))
}

// ---------------------------------------------------------------------------------------------
// Seed 002: traffic lights

fn traffic_light(green: Event, toggles: u32, interval_ms: u64) {
    for _ in 0..toggles {
        sleep_ms(interval_ms); // 5 s in the seed
        if green.is_set() {
            green.clear();
            println!("  ###### the light turns red");
        } else {
            green.set();
            println!("  ****** the light turns green");
        }
    }
    // The seed's light changes forever; this one stops, on green, so that every car gets through.
    if !green.is_set() {
        green.set();
        println!("  ****** the light turns green and stays green");
    }
}

fn car(green: Event, n: u32) {
    loop {
        // (The seed's car spins without pausing if it arrives on green; here it just goes.)
        if !green.is_set() {
            println!("  red light: car {n} waits");
            green.wait();
            println!("  car {n} sees the green light");
        }
        sleep_ms(random_in(1, 4)); // pulling away, 2-4 s in the seed
        if !green.is_set() {
            println!("  car {n}: red again before it was across, back in line");
            continue;
        }
        println!("  car {n} drove off");
        return;
    }
}

/// Seed 002: a light process toggles an event (set: green, clear: red); ten car processes,
/// arriving one by one, wait for green and drive off.
pub fn traffic_lights() -> multiproc::Result<()> {
    let green = Event::new()?; // starts red
    let mut light = Process::new(traffic_light, (green.clone(), 7, 10));
    light.start()?;
    let mut cars = Vec::new();
    for n in 0..10 {
        sleep_ms(random_in(0, 8)); // cars do not all come at once (1-3 s in the seed)
        let mut c = Process::new(car, (green.clone(), n));
        c.start()?;
        cars.push(c);
    }
    join_all(&mut cars)?;
    join_all(std::slice::from_mut(&mut light))?;
    println!("  all ten cars drove off");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 003: joo_a and joo_b

fn joo_a(q: Queue<u64>, ev: Event) -> multiproc::Result<()> {
    println!("  subprocess joo_a start");
    if !ev.is_set() {
        ev.wait();
    }
    q.put(random_in(1, 100))?;
    println!("  subprocess joo_a ended");
    Ok(())
}

fn joo_b(q: Queue<u64>, ev: Event) -> multiproc::Result<()> {
    println!("  subprocess joo_b start");
    ev.clear(); // take the right to run first
    sleep_ms(20); // 2 s in the seed
    q.put(random_in(200, 300))?;
    ev.set(); // now joo_a may go on
    println!("  subprocess joo_b ended");
    Ok(())
}

/// Seed 003: joo_a waits on an event that joo_b sets once it has put its number in the queue, so
/// joo_b's number (200-300) always comes out before joo_a's (1-100).
pub fn joo_a_and_joo_b() -> multiproc::Result<()> {
    let qu = Queue::new()?;
    let ev = Event::new()?;
    let mut sub_a = Process::new(joo_a, (qu.clone(), ev.clone()));
    let mut sub_b = Process::new(joo_b, (qu.clone(), ev));
    sub_a.start()?;
    sub_b.start()?;
    join_all(std::slice::from_mut(&mut sub_a))?;
    join_all(std::slice::from_mut(&mut sub_b))?;
    let mut values = Vec::new();
    while !qu.empty() {
        let v = qu.get()?;
        println!("  {v}");
        values.push(v);
    }
    assert!(
        matches!(values[..], [b, a] if (200..=300).contains(&b) && (1..=100).contains(&a)),
        "joo_b's number first, then joo_a's: {values:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 004: a hundred threads and one lock

/// A deliberately non-atomic decrement: read, pause, write back.
fn decrement(n: &AtomicI64) {
    let value = n.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_micros(100)); // 0.1 s in the seed
    n.store(value - 1, Ordering::Relaxed);
}

/// Seed 004: a hundred threads of this process each decrement a shared counter under the same
/// [`Lock`] type that processes share (clones of one lock): 100 becomes exactly 0. Without the
/// lock, updates get lost.
pub fn hundred_threads() -> multiproc::Result<()> {
    let run = |mutex: Option<Lock>| {
        let n = Arc::new(AtomicI64::new(100));
        let threads: Vec<_> = (0..100)
            .map(|_| {
                let (n, mutex) = (Arc::clone(&n), mutex.clone());
                std::thread::spawn(move || match &mutex {
                    Some(mutex) => {
                        let _guard = hold(mutex);
                        decrement(&n);
                    }
                    None => decrement(&n),
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a thread panicked");
        }
        n.load(Ordering::Relaxed)
    };
    let with_lock = run(Some(Lock::new()?));
    println!("  with the lock: 100 - 100 decrements = {with_lock}");
    assert_eq!(with_lock, 0);
    let without = run(None);
    println!("  without it: {without} ({without} decrements lost to overlapping read-and-write)");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A barrier between phases

const WORKERS: u32 = 4;
const PHASES: u32 = 3;

fn phased_worker(i: u32, barrier: Barrier, log: Outbox) -> multiproc::Result<()> {
    let mut value = u64::from(i) + 1;
    for phase in 0..PHASES {
        sleep_ms(random_in(0, 6)); // uneven work
        value = value * value + 1;
        println!("  worker {i} finished phase {phase} (value {value})");
        log.send(&phase.to_string()).map_err(io)?;
        let arrival = barrier.wait()?;
        if arrival == WORKERS - 1 {
            println!("  worker {i} arrived last at barrier {phase}: all four move on");
        }
    }
    Ok(())
}

/// Four worker processes compute in three phases and wait for each other at a [`Barrier`] between
/// phases: no worker starts phase k + 1 before all have finished phase k. Then a lone party's
/// `wait_timeout` breaks a barrier.
pub fn barrier_phases() -> multiproc::Result<()> {
    let barrier = Barrier::new(WORKERS)?;
    let (inbox, outbox) = reports()?;
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        workers.push(Process::new(phased_worker, (i, barrier.clone(), outbox.try_clone()?)));
    }
    start_all(&mut workers)?;
    let phases = inbox.recv_n((WORKERS * PHASES) as usize)?.concat();
    join_all(&mut workers)?;
    // A phase's reports are sent before its barrier, the next phase's after it.
    let mut sorted: Vec<char> = phases.chars().collect();
    sorted.sort_unstable();
    assert_eq!(phases, sorted.into_iter().collect::<String>(), "a worker ran ahead of the barrier");
    println!("  phase of each report, in arrival order: {phases}");

    let lonely = Barrier::new(2)?;
    match lonely.wait_timeout(Duration::from_millis(10)) {
        Err(multiproc::Error::BrokenBarrier) => {
            println!("  one party of two waited 10 ms alone: the barrier broke (broken: {})", lonely.broken())
        }
        other => panic!("expected a broken barrier, got {other:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A condition: a producer and consumers

fn consumer(c: u32, cond: Condition, stock: Semaphore, wants: u32, log: Outbox) -> multiproc::Result<()> {
    for _ in 0..wants {
        let mut guard = cond.acquire().expect("acquire the condition's lock");
        let in_stock = cond.wait_for(&mut guard, || stock.value() > 0, Some(Duration::from_secs(10)));
        assert!(in_stock, "consumer {c}: nothing in stock within 10 s");
        // Whoever takes an item holds the condition's lock, so the unit seen is still there.
        assert!(stock.acquire_unguarded(Some(Duration::ZERO)));
        println!("  consumer {c} took an item ({} left)", stock.value());
        log.send(&c.to_string()).map_err(io)?;
    }
    Ok(())
}

fn producer(cond: Condition, stock: Semaphore, items: u32) {
    for item in 0..items {
        sleep_ms(2); // making it
        let guard = cond.acquire().expect("acquire the condition's lock");
        stock.release();
        println!("  producer: item {item} is ready");
        cond.notify(&guard, 1);
    }
}

/// A producer process makes six items one by one; three consumer processes, two items each, wait
/// on a [`Condition`] until the stock (a semaphore's value, shared by all) is not empty.
pub fn condition_stock() -> multiproc::Result<()> {
    let cond = Condition::new()?;
    let stock = Semaphore::new(0)?;
    let (inbox, outbox) = reports()?;
    let mut children = Vec::new();
    for c in 0..3 {
        children.push(Process::new(consumer, (c, cond.clone(), stock.clone(), 2, outbox.try_clone()?)));
    }
    children.push(Process::new(producer, (cond, stock.clone(), 6)));
    start_all(&mut children)?;
    let takers = inbox.recv_n(6)?.concat();
    join_all(&mut children)?;
    assert_eq!(stock.value(), 0);
    println!("  the six items went to consumers {takers}; the stock is empty");
    Ok(())
}
