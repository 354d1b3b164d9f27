//! JoinableQueue: daemon consumers, producers waiting on join.
//!
//! Ported from Python:
//!
//! - Producers `q.join()`, daemon consumers `task_done()`. Three items per producer instead of ten.
//!   The main process ends by terminating the daemons (what its exit does to them).
//! - `JoinableQueue`, two producers, two daemon consumers, the main process `q.join()`. Three items
//!   per producer instead of ten.
//!
//! Run it with `cargo run --example joinable_queue`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{JoinableQueue, Process};

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

/// Two producers and two daemon consumers; the main process joins the producers, then
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
    joinable_queue_with_daemon_consumers()?;
    joinable_queue_main_joins()
}
