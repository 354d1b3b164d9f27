//! The queue scenarios of seeds 002, 003 and 004 (Queue, JoinableQueue), shared by the standalone
//! examples and the tour. Where the seeds sleep for seconds to simulate work, these sleep for
//! milliseconds.
#![allow(dead_code)]

// Each scenario module is also built alone by its standalone examples, so each includes this.
#[allow(clippy::duplicate_mod)]
#[path = "support.rs"]
mod support;

use std::time::Duration;

use multiproc::{Error, JoinableQueue, Process, Queue};

use support::{join_all, random_in, sleep_ms, start_all};

// ---------------------------------------------------------------------------------------------
// Seeds 002 and 004: Queue(3) step by step

/// put until full, put_nowait on the full queue, full, get, get_nowait on the empty queue, empty.
pub fn queue_walkthrough() -> multiproc::Result<()> {
    let q = Queue::with_maxsize(3)?;
    q.put(3)?;
    q.put(2)?;
    q.put(1)?;
    // q.put(4) would wait here until someone takes an item.
    match q.put_nowait(4) {
        Err(Error::Full) => println!("  the queue is full: put_nowait(4) refused"),
        other => panic!("expected Full, got {other:?}"),
    }
    println!("  full() = {}", q.full());
    for _ in 0..3 {
        println!("  get() = {}", q.get()?);
    }
    match q.get_nowait() {
        Err(Error::Empty) => println!("  the queue is empty: get_nowait() refused"),
        other => panic!("expected Empty, got {other:?}"),
    }
    println!("  empty() = {}", q.empty());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 002: a child puts, another child and the parent get

fn put_greeting(q: Queue<String>) {
    q.put("姑娘,多少钱~".to_string()).unwrap();
}

fn get_one(q: Queue<String>) {
    println!("  child {} got {}", std::process::id(), q.get().unwrap());
}

/// The parent puts "小鬼", a child puts a greeting, another child takes one item, the parent the
/// other.
pub fn child_puts_parent_gets() -> multiproc::Result<()> {
    let q = Queue::new()?;
    q.put("小鬼".to_string())?;
    let mut children = [Process::new(put_greeting, (q.clone(),)), Process::new(get_one, (q.clone(),))];
    start_all(&mut children)?;
    println!("  parent got {}", q.get()?);
    join_all(&mut children)
}

// ---------------------------------------------------------------------------------------------
// Seed 002: ten producer processes and ten consumer processes on Queue(3)

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

// ---------------------------------------------------------------------------------------------
// Seed 002: producers and consumers ending on None sentinels

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

// ---------------------------------------------------------------------------------------------
// Seeds 002 and 004: JoinableQueue, daemon consumers, producers waiting on join

fn eat_and_report(q: JoinableQueue<String>) {
    loop {
        let food = q.get().unwrap();
        sleep_ms(random_in(0, 2));
        println!("  \x1b[45m{} 吃 {food}\x1b[0m", std::process::id());
        q.task_done().unwrap();
    }
}

fn cook_and_wait(name: String, q: JoinableQueue<String>) {
    for i in 0..3 {
        sleep_ms(random_in(0, 2));
        q.put(format!("{name}{i}")).unwrap();
    }
    println!("  {name} 生产结束");
    q.join().unwrap(); // until every item put has been handled
    println!("  {name} 生产结束~~~~~~");
}

/// Three producers wait in `join` until two daemon consumers have handled everything; the main
/// process joins the producers and ends, taking the daemons with it.
pub fn joinable_queue_with_daemon_consumers() -> multiproc::Result<()> {
    let q = JoinableQueue::new()?;
    let mut producers: Vec<_> =
        ["包子", "骨头", "泔水"].map(|name| Process::new(cook_and_wait, (name.to_string(), q.clone()))).into();
    let mut consumers: Vec<_> = (0..2).map(|_| Process::new(eat_and_report, (q.clone(),)).with_daemon(true)).collect();
    start_all(&mut producers)?;
    start_all(&mut consumers)?;
    join_all(&mut producers)?;
    println!("  主");
    for consumer in &mut consumers {
        consumer.terminate()?; // what the end of the main process does to daemons
        consumer.join()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 003: a producer fills a Queue(maxsize=5) until full, then a consumer drains it

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

// ---------------------------------------------------------------------------------------------
// Seed 004: Queue(5) step by step

/// Seed 004: `Queue(5)`: `full()` after two items and after five; the sixth `put` would wait (here
/// a 10 ms `put_timeout` shows it); `get`, `empty()`, `get` until empty, `get_nowait` refused, and
/// a last `get` that would wait forever (here a 10 ms `get_timeout`).
pub fn queue_of_five_walkthrough() -> multiproc::Result<()> {
    let q = Queue::with_maxsize(5)?;
    q.put(1)?;
    q.put(2)?;
    println!("  full() = {}", q.full());
    for x in 3..=5 {
        q.put(x)?;
    }
    println!("  full() = {}", q.full());
    match q.put_timeout(6, Duration::from_millis(10)) {
        Err(Error::Full) => println!("  put(6) on the full queue waits: still full after 10 ms"),
        other => panic!("expected Full, got {other:?}"),
    }
    println!("  get() = {}", q.get()?);
    println!("  get() = {}", q.get()?);
    println!("  empty() = {}", q.empty());
    for _ in 0..3 {
        println!("  get() = {}", q.get()?);
    }
    println!("  empty() = {}", q.empty());
    match q.get_nowait() {
        Err(Error::Empty) => println!("  get_nowait() on the empty queue: Empty"),
        other => panic!("expected Empty, got {other:?}"),
    }
    match q.get_timeout(Duration::from_millis(10)) {
        Err(Error::Empty) => println!("  get() on the empty queue waits: still empty after 10 ms"),
        other => panic!("expected Empty, got {other:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 004: IPC between two children

fn put_hello(q: Queue<String>) {
    q.put("hello baby".to_string()).unwrap();
}

fn print_one(q: Queue<String>) {
    println!("  {}", q.get().unwrap());
}

/// Seed 004: a producer child puts `'hello baby'`, a consumer child gets and prints it.
pub fn child_to_child() -> multiproc::Result<()> {
    let q = Queue::new()?;
    let mut children = [Process::new(put_hello, (q.clone(),)), Process::new(print_one, (q.clone(),))];
    start_all(&mut children)?;
    join_all(&mut children)
}

// ---------------------------------------------------------------------------------------------
// Seed 002: a consumer that never ends

fn eat_forever(q: Queue<String>, eaten: multiproc::Semaphore) {
    loop {
        let food = q.get().unwrap();
        sleep_ms(random_in(1, 3));
        println!("  \x1b[45m{} 吃 {food}\x1b[0m", std::process::id());
        eaten.release(); // for the example's bookkeeping; the seed has no such thing
    }
}

fn cook_ten(q: Queue<String>) {
    for i in 0..10 {
        sleep_ms(random_in(1, 3));
        let food = format!("包子{i}");
        q.put(&food).unwrap();
        println!("  \x1b[44m{} 生产了 {food}\x1b[0m", std::process::id());
    }
}

/// Seed 002, the first producer-consumer model: the consumer's `while True: q.get()` has no way
/// to end, so CPython's program never exits (the main process waits for its non-daemon child).
/// Here the main process counts what was eaten, shows the consumer still blocked in `get`, and
/// terminates it; the next scenario ends consumers with `None`, the one after with daemons.
pub fn consumer_never_ends() -> multiproc::Result<()> {
    let q = Queue::new()?;
    let eaten = multiproc::Semaphore::new(0)?;
    let mut p1 = Process::new(cook_ten, (q.clone(),));
    let mut c1 = Process::new(eat_forever, (q.clone(), eaten.clone()));
    c1.start()?;
    // Whatever happens next, the consumer is terminated: a program that returned with it alive
    // would wait for it at exit forever, as CPython's does.
    let outcome = (|| -> multiproc::Result<bool> {
        p1.start()?;
        println!("  主");
        join_all(std::slice::from_mut(&mut p1))?;
        Ok((0..10).all(|_| eaten.acquire_unguarded(Some(Duration::from_secs(10)))))
    })();
    let waiting = c1.is_alive();
    c1.terminate()?;
    let code = c1.join()?;
    assert!(outcome?, "the consumer stopped eating");
    println!("  all ten eaten; the consumer is still alive, waiting in get(): {waiting}");
    println!("  terminated it: exit code {code}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 003: the kinds of queue

/// Seed 003 lists `Queue` (first in, first out), `LifoQueue` (a stack), `PriorityQueue` (lowest
/// first) and `SimpleQueue`. The first and the last are multiprocessing queues here; CPython's
/// `LifoQueue` and `PriorityQueue` live in the thread-only `queue` module, and across processes
/// they are a manager's (`manager.lifo_queue()`, `manager.priority_queue()`).
pub fn queue_kinds() -> multiproc::Result<()> {
    let fifo = Queue::new()?;
    let simple = multiproc::SimpleQueue::new()?;
    let manager = multiproc::Manager::start()?;
    let lifo = manager.lifo_queue::<i64>()?;
    let priority = manager.priority_queue::<String>()?;
    for (x, name) in [(3, "three"), (1, "one"), (2, "two")] {
        fifo.put(x)?;
        simple.put(x)?;
        lifo.put(&x)?;
        priority.put(x, &name.to_string())?;
    }
    let fifo_order: Vec<i64> = (0..3).map(|_| fifo.get()).collect::<Result<_, _>>()?;
    let simple_order: Vec<i64> = (0..3).map(|_| simple.get()).collect::<Result<_, _>>()?;
    let lifo_order: Vec<i64> = (0..3).map(|_| lifo.get()).collect::<Result<_, _>>()?;
    let priority_order: Vec<(i64, String)> = (0..3).map(|_| priority.get()).collect::<Result<_, _>>()?;
    println!("  put 3, 1, 2:");
    println!("  Queue         gets {fifo_order:?}");
    println!("  SimpleQueue   gets {simple_order:?}");
    println!("  LifoQueue     gets {lifo_order:?}");
    println!("  PriorityQueue gets {priority_order:?}");
    assert_eq!((fifo_order, lifo_order), (vec![3, 1, 2], vec![2, 1, 3]));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 004: JoinableQueue, the main process waits on join

fn produce(name: String, food: String, q: JoinableQueue<String>) {
    for i in 0..3 {
        let data = format!("{name}生产的{food}{i}");
        sleep_ms(random_in(0, 2));
        println!("  {data}");
        q.put(data).unwrap();
    }
}

fn consume(name: String, q: JoinableQueue<String>) {
    loop {
        let data = q.get().unwrap();
        println!("  \x1b[31m{name}吃了{data}\x1b[0m");
        sleep_ms(random_in(0, 2));
        q.task_done().unwrap(); // this item is taken and handled
    }
}

/// Seed 004: two producers and two daemon consumers; the main process joins the producers, then
/// `q.join()` waits until every item is handled, and the daemons end with the main process.
pub fn joinable_queue_main_joins() -> multiproc::Result<()> {
    let q = JoinableQueue::new()?;
    let mut producers = [
        Process::new(produce, ("zmm".to_string(), "包子".to_string(), q.clone())),
        Process::new(produce, ("yzy".to_string(), "馒头".to_string(), q.clone())),
    ];
    let mut consumers = [
        Process::new(consume, ("czh".to_string(), q.clone())).with_daemon(true),
        Process::new(consume, ("lc".to_string(), q.clone())).with_daemon(true),
    ];
    start_all(&mut producers)?;
    start_all(&mut consumers)?;
    join_all(&mut producers)?;
    q.join()?; // until every item put has been handled
    println!("  every item handled; the daemon consumers end with the main process");
    for consumer in &mut consumers {
        consumer.terminate()?; // what the end of the main process does to daemons
        consumer.join()?;
    }
    Ok(())
}
