//! The queue group.
//!
//! `bench/python/queue.py` does the same work with CPython's `Queue`, `SimpleQueue` and
//! `JoinableQueue` (children forked). Ours: children with the default method (they start before the
//! clock). Producers wait on a `Barrier` shared with the parent; the clock starts when the parent
//! passes it and stops at the latest time a consumer saw its end sentinel (`JoinableQueue`: when
//! the producer's `join` returns). Times are `CLOCK_MONOTONIC`, the same clock in every process.

use std::time::Duration;

use multiproc::{Barrier, JoinableQueue, Process, Queue, SimpleQueue};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{median, monotonic_ns};

const ITEMS: u64 = 100_000;
const TRIALS: usize = 5;

/// Either kind of queue, as the producer and consumer see it.
trait Items: Clone + Serialize + for<'de> Deserialize<'de> + Send + 'static {
    fn put(&self, item: Option<u64>);
    fn get(&self) -> Option<u64>;
}

impl Items for Queue<Option<u64>> {
    fn put(&self, item: Option<u64>) {
        Queue::put(self, item).expect("put");
    }
    fn get(&self) -> Option<u64> {
        Queue::get(self).expect("get")
    }
}

impl Items for SimpleQueue<Option<u64>> {
    fn put(&self, item: Option<u64>) {
        SimpleQueue::put(self, item).expect("put");
    }
    fn get(&self) -> Option<u64> {
        SimpleQueue::get(self).expect("get")
    }
}

fn producer<Q: Items>(queue: Q, barrier: Barrier, n: u64) {
    barrier.wait().expect("barrier");
    for i in 0..n {
        queue.put(Some(i));
    }
    queue.put(None);
}

fn consumer<Q: Items>(queue: Q, results: Queue<u64>) {
    while queue.get().is_some() {}
    results.put(monotonic_ns()).expect("report");
}

fn throughput<Q: Items>(make: impl Fn() -> Q, producers: u64, consumers: usize) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..TRIALS {
        let queue = make();
        let results = Queue::new().expect("queue");
        let barrier = Barrier::new(producers as u32 + 1).expect("barrier");
        let mut children = Vec::new();
        for _ in 0..consumers {
            children.push(Process::new(consumer::<Q>, (queue.clone(), results.clone())));
        }
        for _ in 0..producers {
            children.push(Process::new(producer::<Q>, (queue.clone(), barrier.clone(), ITEMS / producers)));
        }
        for child in &mut children {
            child.start().expect("start");
        }
        barrier.wait().expect("barrier");
        let start = monotonic_ns();
        let end = (0..consumers).map(|_| results.get().expect("result")).max().unwrap_or(start);
        for child in &mut children {
            child.join().expect("join");
        }
        rates.push(ITEMS as f64 / ((end - start) as f64 / 1e9));
    }
    median(rates)
}

fn joinable_producer(queue: JoinableQueue<u64>, barrier: Barrier, results: Queue<u64>) {
    barrier.wait().expect("barrier");
    for i in 0..ITEMS {
        queue.put(i).expect("put");
    }
    queue.join().expect("join");
    results.put(monotonic_ns()).expect("report");
}

fn joinable_consumer(queue: JoinableQueue<u64>) {
    loop {
        queue.get().expect("get");
        queue.task_done().expect("task_done");
    }
}

fn joinable_1p1c() -> f64 {
    let mut rates = Vec::new();
    for _ in 0..TRIALS {
        let queue = JoinableQueue::new().expect("queue");
        let results = Queue::new().expect("queue");
        let barrier = Barrier::new(2).expect("barrier");
        let mut consumer = Process::new(joinable_consumer, (queue.clone(),)).with_daemon(true);
        let mut producer = Process::new(joinable_producer, (queue.clone(), barrier.clone(), results.clone()));
        consumer.start().expect("start");
        producer.start().expect("start");
        barrier.wait().expect("barrier");
        let start = monotonic_ns();
        let end = results.get().expect("result");
        producer.join().expect("join");
        consumer.kill().expect("kill");
        consumer.join().expect("join");
        rates.push(ITEMS as f64 / ((end - start) as f64 / 1e9));
    }
    median(rates)
}

const SIZE: usize = 100_000_000;

/// A byte buffer that serde treats as bytes (Python's `bytes`), not as a sequence of numbers.
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

fn big_producer(queue: Queue<Bytes>, stamps: Queue<u64>) {
    let data = Bytes(vec![0x5a; SIZE]);
    stamps.put(0).expect("ready");
    std::thread::sleep(Duration::from_millis(200)); // the parent is blocked in get() by then
    stamps.put(monotonic_ns()).expect("stamp");
    queue.put(&data).expect("put");
}

fn transfer_100mb() -> f64 {
    let mut secs = Vec::new();
    for _ in 0..TRIALS {
        let queue = Queue::new().expect("queue");
        let stamps = Queue::new().expect("queue");
        let mut child = Process::new(big_producer, (queue.clone(), stamps.clone()));
        child.start().expect("start");
        assert_eq!(stamps.get().expect("ready"), 0);
        let data: Bytes = queue.get().expect("get");
        let end = monotonic_ns();
        let start = stamps.get().expect("stamp");
        assert_eq!(data.0.len(), SIZE);
        child.join().expect("join");
        secs.push((end - start) as f64 / 1e9);
    }
    median(secs)
}

fn bytes_producer(queue: Queue<Option<Bytes>>, barrier: Barrier, size: usize, n: u64) {
    barrier.wait().expect("barrier");
    let item = Some(Bytes(vec![7; size]));
    for _ in 0..n {
        queue.put(&item).expect("put");
    }
    queue.put(None).expect("put");
}

fn bytes_consumer(queue: Queue<Option<Bytes>>, results: Queue<u64>) {
    while queue.get().expect("get").is_some() {}
    results.put(monotonic_ns()).expect("report");
}

/// MB/s of items of `size` bytes from one process to another (what sets the big-item threshold).
fn bytes_1p1c(size: usize) -> f64 {
    let n = (200_000_000 / size as u64).clamp(20, 100_000);
    let mut rates = Vec::new();
    for _ in 0..TRIALS {
        let queue = Queue::with_capacity(0, 4 << 20).expect("queue");
        let results = Queue::new().expect("queue");
        let barrier = Barrier::new(2).expect("barrier");
        let mut children = [
            Process::new(bytes_consumer, (queue.clone(), results.clone())),
            Process::new(bytes_producer, (queue.clone(), barrier.clone(), size, n)),
        ];
        for child in &mut children {
            child.start().expect("start");
        }
        barrier.wait().expect("barrier");
        let start = monotonic_ns();
        let end = results.get().expect("result");
        for child in &mut children {
            child.join().expect("join");
        }
        rates.push((n * size as u64) as f64 / 1e6 / ((end - start) as f64 / 1e9));
    }
    median(rates)
}

/// One process alone: `put` then `get` of the same item, `n` times; ns per pair (for a profile of
/// the queue's own instructions, with no cache line crossing between cores).
fn put_get_alone(n: u64) -> f64 {
    let queue: Queue<Option<u64>> = Queue::new().expect("queue");
    let start = monotonic_ns();
    for i in 0..n {
        queue.put(Some(i)).expect("put");
        assert_eq!(queue.get().expect("get"), Some(i));
    }
    (monotonic_ns() - start) as f64 / n as f64
}

fn echo(requests: Queue<u64>, replies: Queue<u64>) {
    while let Ok(n) = requests.get() {
        if n == u64::MAX || replies.put(n).is_err() {
            return;
        }
    }
}

/// A round trip through two queues between two processes (a request, its echo), `n` times:
/// median µs per round trip of five runs (what a waiting consumer's spin costs in latency).
fn round_trip(n: u64) -> f64 {
    let mut times = Vec::new();
    for _ in 0..TRIALS {
        let (requests, replies) = (Queue::new().expect("queue"), Queue::new().expect("queue"));
        let mut child = Process::new(echo, (requests.clone(), replies.clone()));
        child.start().expect("start");
        for warm in 0..100 {
            requests.put(warm).expect("put");
            replies.get().expect("get");
        }
        let start = monotonic_ns();
        for i in 0..n {
            requests.put(i).expect("put");
            assert_eq!(replies.get().expect("get"), i);
        }
        times.push((monotonic_ns() - start) as f64 / n as f64 / 1e3);
        requests.put(u64::MAX).expect("put");
        child.join().expect("join");
    }
    median(times)
}

/// Measures the queue metric `args` names.
pub(crate) fn run(args: &[&str]) -> Option<String> {
    let value = match args {
        ["queue_1p1c"] => throughput(|| Queue::new().expect("queue"), 1, 1),
        ["queue_2p2c"] => throughput(|| Queue::new().expect("queue"), 2, 2),
        ["simple_1p1c"] => throughput(|| SimpleQueue::new().expect("queue"), 1, 1),
        ["joinable_1p1c"] => joinable_1p1c(),
        ["queue_transfer_100mb"] => transfer_100mb(),
        ["bytes_1p1c", size] => bytes_1p1c(size.parse().expect("a size in bytes")),
        ["queue_put_get_alone", n] => put_get_alone(n.parse().expect("a count")),
        ["queue_rtt", n] => round_trip(n.parse().expect("a count")),
        _ => return None,
    };
    Some(value.to_string())
}
