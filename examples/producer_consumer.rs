//! Queue(3): ten producer and ten consumer processes.
//!
//! Ported from Python:
//!
//! - Ten `inputQ` and ten `outputQ` processes on `Queue(3)`. `time.asctime()` is printed as seconds
//!   since the epoch.
//! - Three producers, two consumers, one `None` per consumer. The original starts only `c1` but sends
//!   two `None`s; here both consumers run. `None` is `Option::None`.
//! - Producer – consumer: `Queue(maxsize=5)`, the producer puts even numbers until `full()`, then
//!   the consumer drains it, `qsize()`. The random numbers are chosen so that the queue does fill.
//!   (The original forgets `import random`.)
//!
//! Run it with `cargo run --example producer_consumer`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Process, Queue};

fn input_q(q: Queue<String>) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    q.put(format!("{}(put):{}.{:03}", std::process::id(), now.as_secs(), now.subsec_millis())).unwrap();
}

fn output_q(q: Queue<String>) {
    let info = q.get().unwrap();
    println!("  {}(get):\x1b[32m{info}\x1b[0m", std::process::id());
}

/// Ten processes put one line each into a Queue(3), ten others take one each.
pub fn ten_producers_ten_consumers() -> multiproc::Result<()> {
    let q = Queue::with_maxsize(3)?;
    let mut producers: Vec<_> = (0..10).map(|_| Process::new(input_q, (q.clone(),))).collect();
    let mut consumers: Vec<_> = (0..10).map(|_| Process::new(output_q, (q.clone(),))).collect();
    start_all(&mut producers)?;
    start_all(&mut consumers)?;
    join_all(&mut producers)?;
    join_all(&mut consumers)
}

fn eat(q: Queue<Option<String>>) {
    while let Some(food) = q.get().unwrap() {
        sleep_ms(random_in(1, 3));
        println!("  \x1b[45m{} 吃 {food}\x1b[0m", std::process::id());
    }
}

fn cook(name: String, q: Queue<Option<String>>) {
    for i in 0..2 {
        sleep_ms(random_in(1, 3));
        let food = format!("{name}{i}");
        q.put(Some(food.clone())).unwrap();
        println!("  \x1b[44m{} 生产了 {food}\x1b[0m", std::process::id());
    }
}

/// Three producers, two consumers; once the producers are done, one `None` per consumer.
pub fn sentinels_end_the_consumers() -> multiproc::Result<()> {
    let q = Queue::new()?;
    let mut producers: Vec<_> =
        ["包子", "骨头", "泔水"].map(|name| Process::new(cook, (name.to_string(), q.clone()))).into();
    let mut consumers = [Process::new(eat, (q.clone(),)), Process::new(eat, (q.clone(),))];
    start_all(&mut producers)?;
    start_all(&mut consumers)?;
    join_all(&mut producers)?;
    for _ in &consumers {
        q.put(None)?; // one end signal per consumer
    }
    join_all(&mut consumers)?;
    println!("  主");
    Ok(())
}

fn fill_until_full(numbers: Vec<u64>, q: Queue<u64>) {
    for x in numbers.into_iter().filter(|x| x % 2 == 0) {
        if q.full() {
            println!("  queue is full");
            break;
        }
        q.put(x).unwrap();
        println!("  put {x} in queue by producer");
    }
}

fn drain(q: Queue<u64>) {
    while !q.empty() {
        println!("  take data {} from queue by consumer", q.get().unwrap());
    }
}

/// The producer runs to its end first, then the consumer takes what it left.
pub fn producer_fills_consumer_drains() -> multiproc::Result<()> {
    let q = Queue::with_maxsize(5)?;
    // Even numbers guaranteed past the limit, so that the producer sees the queue full.
    let numbers: Vec<u64> =
        (0..14).map(|i| if i % 2 == 0 { 2 * random_in(1, 50) } else { random_in(1, 100) }).collect();
    let mut producer = Process::new(fill_until_full, (numbers, q.clone())).with_name("producer-1");
    producer.start()?;
    producer.join()?;
    let mut consumer = Process::new(drain, (q.clone(),)).with_name("consumer-1");
    consumer.start()?;
    consumer.join()?;
    println!("  qsize() = {}", q.qsize()); // print(qu.qsize())
    Ok(())
}

/// Stands in for the seconds the Python original sleeps to simulate work.
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A random number in `low..=high` (the originals' `random.randint`).
fn random_in(low: u64, high: u64) -> u64 {
    let mut bytes = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    low + u64::from_ne_bytes(bytes) % (high - low + 1)
}

/// Starts one process per target, in order.
fn start_all(children: &mut [Process]) -> multiproc::Result<()> {
    children.iter_mut().try_for_each(Process::start)
}

/// Joins every child and checks that each exited with 0.
fn join_all(children: &mut [Process]) -> multiproc::Result<()> {
    for child in children {
        let code = child.join()?;
        assert_eq!(code, 0, "{child} failed");
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    ten_producers_ten_consumers()?;
    sentinels_end_the_consumers()?;
    producer_fills_consumer_drains()
}
