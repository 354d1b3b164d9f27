//! The queue conformance cases with child processes (conformance.md C1, C2 and the queue items of
//! A and B), written once and run for every start method: `tests/queue.rs` runs them under
//! forkserver and spawn, `tests/queue_fork.rs` under fork. See `tests/queue.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Outbox, channel, send, sigkill};
use multiproc::{Context, Error, Handle, JoinableQueue, Process, Queue, SimpleQueue};

pub const SHORT: Duration = Duration::from_millis(100);

/// Calls `$m!(name)` for every case of the suite.
#[macro_export]
macro_rules! queue_suite {
    ($m:ident) => {
        $m!(items_put_by_a_child_come_out_in_order);
        $m!(a_full_queue_is_drained_by_a_child);
        $m!(items_put_before_a_producer_exits_are_kept);
        $m!(joinable_join_returns_once_workers_are_done);
        $m!(simple_queue_across_processes);
        $m!(many_producers_and_consumers_keep_per_producer_order);
        $m!(big_items_and_descriptors_travel);
        $m!(a_child_passes_the_queue_on);
        $m!(killed_producers_and_consumers_do_not_break_the_queue);
        $m!(every_task_is_put_before_the_workers_start);
        $m!(items_spilled_by_a_producer_that_exits_are_kept);
        $m!(killed_producers_and_consumers_do_not_break_a_spilling_queue);
    };
}

pub fn started(p: Process) -> Process {
    let mut p = p.with_daemon(true);
    p.start().expect("start");
    p
}

fn put_range(queue: Queue<u32>, from: u32, to: u32) {
    for n in from..to {
        queue.put(n).unwrap();
    }
}

// items put by a child come back in order through every form of get; then Empty.
pub fn items_put_by_a_child_come_out_in_order(ctx: Context) {
    let queue = Queue::new().unwrap();
    let mut child = started(ctx.process(put_range, (queue.clone(), 0, 20)));
    let mut got = Vec::new();
    got.push(queue.get().unwrap());
    got.push(queue.get_timeout(Duration::from_secs(10)).unwrap());
    while got.len() < 20 {
        got.push(queue.get().unwrap());
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_eq!(child.join().unwrap(), 0);
    assert!(matches!(queue.get_nowait(), Err(Error::Empty)));
    assert!(queue.empty());
}

fn take_all(queue: Queue<u32>, n: u32, out: Outbox) {
    let got: Vec<u32> = (0..n).map(|_| queue.get().unwrap()).collect();
    send(&out, &format!("{got:?}"));
}

// put forms until full, Full from the non-blocking ones and after a timeout,
// then a child takes everything: empty and not full again.
pub fn a_full_queue_is_drained_by_a_child(ctx: Context) {
    let queue = Queue::with_maxsize(6).unwrap();
    assert!(queue.empty() && !queue.full());
    queue.put(1).unwrap();
    queue.put(2).unwrap();
    queue.put_timeout(3, Duration::from_secs(1)).unwrap();
    queue.put_nowait(4).unwrap();
    queue.put_nowait(5).unwrap();
    queue.put(6).unwrap();
    assert!(!queue.empty() && queue.full());
    assert_eq!(queue.qsize(), 6);
    assert!(matches!(queue.put_nowait(7), Err(Error::Full)));
    let start = Instant::now();
    assert!(matches!(queue.put_timeout(7, SHORT), Err(Error::Full)));
    assert!(start.elapsed() >= SHORT);
    let (inbox, out) = channel();
    let mut child = started(ctx.process(take_all, (queue.clone(), 6, out)));
    assert_eq!(inbox.recv(10), "[1, 2, 3, 4, 5, 6]");
    assert_eq!(child.join().unwrap(), 0);
    assert!(queue.empty() && !queue.full());
}

// The "joining processes that use queues" pitfall of CPython: a producer that put items and
// exited is joined before anyone takes them, and nothing is lost.
pub fn items_put_before_a_producer_exits_are_kept(ctx: Context) {
    let queue = Queue::new().unwrap();
    let mut child = started(ctx.process(put_range, (queue.clone(), 0, 5000)));
    assert_eq!(child.join().unwrap(), 0);
    assert_eq!(queue.qsize(), 5000);
    for n in 0..5000 {
        assert_eq!(queue.get_nowait().unwrap(), n);
    }
}

/// A task of `every_task_is_put_before_the_workers_start`: a number and 200 KiB of data.
type Task = Option<(u32, Vec<u8>)>;

fn task_worker(tasks: Queue<Task>, results: Queue<(u32, u64)>) {
    while let Some((n, data)) = tasks.get().unwrap() {
        assert!(data.iter().all(|&b| b == n as u8));
        results.put((n, data.iter().map(|&b| u64::from(b)).sum::<u64>())).unwrap();
    }
}

// CPython's `mp_workers.py`: every task is put before the workers start (CPython's unbounded
// queue holds them in the producer until readers come). With 200 KiB tasks, more than the side
// channel holds of memory files: the queue spills them, and put never waits.
pub fn every_task_is_put_before_the_workers_start(ctx: Context) {
    const TASKS: u32 = 300;
    let tasks = Queue::new().unwrap();
    let results = Queue::new().unwrap();
    for n in 0..TASKS {
        tasks.put(Some((n, vec![n as u8; 200 << 10]))).unwrap();
    }
    let mut workers: Vec<_> =
        (0..4).map(|_| started(ctx.process(task_worker, (tasks.clone(), results.clone())))).collect();
    let mut done: Vec<(u32, u64)> = (0..TASKS).map(|_| results.get_timeout(Duration::from_secs(30)).unwrap()).collect();
    done.sort_unstable();
    assert_eq!(done, (0..TASKS).map(|n| (n, u64::from(n as u8) * (200 << 10))).collect::<Vec<_>>());
    for _ in &workers {
        tasks.put(None).unwrap();
    }
    for w in &mut workers {
        assert_eq!(w.join().unwrap(), 0);
    }
    assert!(tasks.empty() && results.empty());
}

/// What `spill_and_exit` puts: small items beyond a 4 KiB ring, and every tenth a big one (over a
/// quarter of the ring).
fn spilled_item(i: u32) -> (u32, Vec<u8>) {
    match i % 10 {
        0 => (i, vec![i as u8; 20_000]),
        _ => (i, vec![i as u8; (i % 50) as usize]),
    }
}

fn spill_and_exit(queue: Queue<(u32, Vec<u8>)>, n: u32) {
    for i in 0..n {
        queue.put_nowait(spilled_item(i)).unwrap();
    }
}

// "Nothing lost at exit", beyond the ring: a child puts more than its ring and its side channel
// hold, nobody reading, and exits; every item is there, in order, after it was joined.
pub fn items_spilled_by_a_producer_that_exits_are_kept(ctx: Context) {
    const ITEMS: u32 = 5000;
    let queue = Queue::with_capacity(0, 4096).unwrap();
    let mut child = started(ctx.process(spill_and_exit, (queue.clone(), ITEMS)));
    assert_eq!(child.join().unwrap(), 0);
    assert_eq!(queue.qsize(), ITEMS as usize);
    for i in 0..ITEMS {
        assert_eq!(queue.get_nowait().unwrap(), spilled_item(i));
    }
    assert!(queue.empty());
}

fn joinable_worker(queue: JoinableQueue<Option<u32>>, results: Queue<u32>) {
    while let Some(n) = queue.get().unwrap() {
        results.put(n * n).unwrap();
        queue.task_done().unwrap();
    }
    queue.task_done().unwrap();
}

// join returns once 4 workers have marked all 10 items done.
pub fn joinable_join_returns_once_workers_are_done(ctx: Context) {
    let queue = JoinableQueue::new().unwrap();
    let results = Queue::new().unwrap();
    let mut workers: Vec<_> =
        (0..4).map(|_| started(ctx.process(joinable_worker, (queue.clone(), results.clone())))).collect();
    for n in 0..10 {
        queue.put(Some(n)).unwrap();
    }
    queue.join_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(results.qsize(), 10);
    let mut squares: Vec<u32> = (0..10).map(|_| results.get_nowait().unwrap()).collect();
    squares.sort_unstable();
    assert_eq!(squares, (0..10).map(|n| n * n).collect::<Vec<_>>());
    for _ in &workers {
        queue.put(None).unwrap();
    }
    queue.join_timeout(Duration::from_secs(20)).unwrap();
    for w in &mut workers {
        assert_eq!(w.join().unwrap(), 0);
    }
}

fn simple_put_two(queue: SimpleQueue<String>) {
    queue.put("first".to_string()).unwrap();
    queue.put("second".to_string()).unwrap();
}

// SQ-01: empty at first, not after a child put two items, which come back in order; empty again.
pub fn simple_queue_across_processes(ctx: Context) {
    let queue = SimpleQueue::new().unwrap();
    assert!(queue.empty());
    let mut child = started(ctx.process(simple_put_two, (queue.clone(),)));
    assert_eq!(child.join().unwrap(), 0);
    assert!(!queue.empty());
    assert_eq!(queue.get().unwrap(), "first");
    assert_eq!(queue.get().unwrap(), "second");
    assert!(queue.empty());
    queue.close();
}

fn tagged_producer(queue: Queue<Option<(u32, u32)>>, id: u32, n: u32) {
    for i in 0..n {
        queue.put(Some((id, i))).unwrap();
    }
}

fn collecting_consumer(queue: Queue<Option<(u32, u32)>>, results: Queue<Vec<(u32, u32)>>) {
    let mut got = Vec::new();
    while let Some(item) = queue.get().unwrap() {
        got.push(item);
    }
    results.put(got).unwrap();
}

// Three producers and two consumers on a small bounded queue, ending on sentinels: every item
// arrives exactly once, and each consumer sees each producer's items in order.
pub fn many_producers_and_consumers_keep_per_producer_order(ctx: Context) {
    const PER_PRODUCER: u32 = 2000;
    let queue = Queue::with_maxsize(3).unwrap();
    let results = Queue::new().unwrap();
    let mut consumers: Vec<_> =
        (0..2).map(|_| started(ctx.process(collecting_consumer, (queue.clone(), results.clone())))).collect();
    let mut producers: Vec<_> =
        (0..3).map(|id| started(ctx.process(tagged_producer, (queue.clone(), id, PER_PRODUCER)))).collect();
    for p in &mut producers {
        assert_eq!(p.join().unwrap(), 0);
    }
    for _ in &consumers {
        queue.put(None).unwrap();
    }
    let mut all = Vec::new();
    for _ in &consumers {
        let got = results.get_timeout(Duration::from_secs(20)).unwrap();
        let mut last: BTreeMap<u32, u32> = BTreeMap::new();
        for &(id, i) in &got {
            if let Some(&before) = last.get(&id) {
                assert!(i > before, "producer {id}: {i} after {before}");
            }
            last.insert(id, i);
        }
        all.extend(got);
    }
    for c in &mut consumers {
        assert_eq!(c.join().unwrap(), 0);
    }
    all.sort_unstable();
    let expected: Vec<_> = (0..3).flat_map(|id| (0..PER_PRODUCER).map(move |i| (id, i))).collect();
    assert_eq!(all, expected);
}

#[derive(serde::Serialize, serde::Deserialize)]
pub enum Cargo {
    Bytes(Vec<u8>),
    File(Handle<std::fs::File>),
}

fn send_cargo(queue: Queue<Cargo>, path: String) {
    let big: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
    queue.put(Cargo::Bytes(big)).unwrap();
    queue.put(Cargo::Bytes(vec![7; 100])).unwrap();
    queue.put(Cargo::File(Handle::new(std::fs::File::open(path).unwrap()))).unwrap();
    queue.put(Cargo::Bytes(vec![8; 200_000])).unwrap();
}

// A 10 MB item (through a memory file), a small one, one holding a descriptor, a 200 kB one:
// all arrive whole, in order.
pub fn big_items_and_descriptors_travel(ctx: Context) {
    use std::io::Read;
    let queue = Queue::with_maxsize(2).unwrap();
    let path = std::env::temp_dir().join(format!("multiproc-queue-{}.txt", std::process::id()));
    std::fs::write(&path, "sent through a queue").unwrap();
    let mut child = started(ctx.process(send_cargo, (queue.clone(), path.to_string_lossy().into_owned())));
    match queue.get().unwrap() {
        Cargo::Bytes(big) => {
            assert_eq!(big.len(), 10_000_000);
            assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        }
        Cargo::File(_) => panic!("expected bytes"),
    }
    assert!(matches!(queue.get().unwrap(), Cargo::Bytes(small) if small == vec![7; 100]));
    match queue.get().unwrap() {
        Cargo::File(mut file) => {
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            assert_eq!(text, "sent through a queue");
        }
        Cargo::Bytes(_) => panic!("expected a file"),
    }
    assert!(matches!(queue.get().unwrap(), Cargo::Bytes(b) if b == vec![8; 200_000]));
    assert_eq!(child.join().unwrap(), 0);
    let _ = std::fs::remove_file(path);
}

fn pass_on(queue: Queue<u32>) {
    let mut grandchild = Process::new(put_range, (queue.clone(), 100, 103));
    grandchild.start().unwrap();
    queue.put(1).unwrap();
    assert_eq!(grandchild.join().unwrap(), 0);
}

// MISC-03, CTX-07: a child uses the queue and passes it on to its own child.
pub fn a_child_passes_the_queue_on(ctx: Context) {
    let queue = Queue::new().unwrap();
    // Not a daemon: daemons may not have children.
    let mut child = ctx.process(pass_on, (queue.clone(),));
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), 0);
    let mut got: Vec<u32> = (0..4).map(|_| queue.get_nowait().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, vec![1, 100, 101, 102]);
}

/// (producer id, sequence number, payload): every fifth payload is big (a memory file, or the
/// spill when the side channel is full).
type Tagged = (u32, u32, Vec<u8>);

/// The payload of item `i` where big items have `big` bytes.
fn payload(i: u32, big: usize) -> Vec<u8> {
    match i % 5 {
        0 => vec![i as u8; big],
        _ => vec![i as u8; (i % 7) as usize],
    }
}

fn endless_producer(queue: Queue<Tagged>, id: u32, big: usize) {
    for i in 0.. {
        queue.put((id, i, payload(i, big))).unwrap();
    }
}

fn endless_consumer(queue: Queue<Tagged>, big: usize) {
    loop {
        let (_, i, bytes) = queue.get().unwrap();
        assert_eq!(bytes, payload(i, big));
    }
}

/// A small random number generator (xorshift), seeded from the clock.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        println!("kill schedule seed {seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// Producers and consumers killed with SIGKILL at random points, round after round, while the
// parent also takes items: nobody hangs, every item that comes out is whole, each producer's
// items come out in order without duplicates, and afterwards the queue works as new.
pub fn killed_producers_and_consumers_do_not_break_the_queue(ctx: Context) {
    kill_producers_and_consumers(ctx, Queue::with_maxsize(16).unwrap(), 150_000);
}

// The same on a queue that spills: a 4 KiB ring, room for 2000 items, big items of 2000 bytes
// (over a quarter of the ring: memory files, then the spill once the side channel is full).
pub fn killed_producers_and_consumers_do_not_break_a_spilling_queue(ctx: Context) {
    kill_producers_and_consumers(ctx, Queue::with_capacity(2000, 4096).unwrap(), 2000);
}

fn kill_producers_and_consumers(ctx: Context, queue: Queue<Tagged>, big: usize) {
    const ROUNDS: u32 = 12;
    let mut rng = Rng::new();
    let mut last_seen: BTreeMap<u32, u32> = BTreeMap::new();
    let mut check = |(id, i, bytes): Tagged| {
        assert_eq!(bytes, payload(i, big), "item ({id}, {i}) damaged");
        if let Some(before) = last_seen.insert(id, i) {
            assert!(i > before, "producer {id}: item {i} after {before}");
        }
    };
    for round in 0..ROUNDS {
        let mut producer = started(ctx.process(endless_producer, (queue.clone(), round, big)));
        let mut consumer = started(ctx.process(endless_consumer, (queue.clone(), big)));
        // Let time pass so that the kills land at random points of the children's work.
        for _ in 0..rng.below(20) {
            if let Ok(item) = queue.get_timeout(Duration::from_millis(1)) {
                check(item);
            }
        }
        let (first, second) = match rng.below(2) {
            0 => (&mut producer, &mut consumer),
            _ => (&mut consumer, &mut producer),
        };
        sigkill(first.pid().unwrap());
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        sigkill(second.pid().unwrap());
        assert_eq!(producer.join().unwrap(), -9);
        assert_eq!(consumer.join().unwrap(), -9);
        while let Ok(item) = queue.get_nowait() {
            check(item);
        }
    }
    // The queue works as new: a whole producer's items arrive in order, none lost.
    let mut producer = started(ctx.process(endless_producer, (queue.clone(), ROUNDS, big)));
    let mut next = 0;
    while next < 200 {
        let (id, i, bytes) = queue.get_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(bytes, payload(i, big));
        if id == ROUNDS {
            assert_eq!(i, next);
            next += 1;
        }
    }
    sigkill(producer.pid().unwrap());
    assert_eq!(producer.join().unwrap(), -9);
}
