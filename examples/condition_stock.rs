//! Condition: a producer process and three consumer processes.
//!
//! Run it with `cargo run --example condition_stock`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Condition, Process, Queue, Semaphore};

/// The next `n` reports that children put on `reports`, in the order they were put: at most 10
/// s each, so that a child that never reports fails the example instead of hanging it.
fn recv_n(reports: &Queue<String>, n: usize) -> multiproc::Result<Vec<String>> {
    (0..n).map(|_| reports.get_timeout(Duration::from_secs(10))).collect()
}

fn consumer(c: u32, cond: Condition, stock: Semaphore, wants: u32, log: Queue<String>) -> multiproc::Result<()> {
    for _ in 0..wants {
        let mut guard = cond.acquire().expect("acquire the condition's lock");
        let in_stock = cond.wait_for(&mut guard, || stock.value() > 0, Some(Duration::from_secs(10)));
        assert!(in_stock, "consumer {c}: nothing in stock within 10 s");
        // Whoever takes an item holds the condition's lock, so the unit seen is still there.
        assert!(stock.acquire_unguarded(Some(Duration::ZERO)));
        println!("  consumer {c} took an item ({} left)", stock.value());
        log.put(c.to_string())?;
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
    let reports = Queue::new()?;
    let mut children = Vec::new();
    for c in 0..3 {
        children.push(Process::new(consumer, (c, cond.clone(), stock.clone(), 2, reports.clone())));
    }
    children.push(Process::new(producer, (cond, stock.clone(), 6)));
    start_all(&mut children)?;
    let takers = recv_n(&reports, 6)?.concat();
    join_all(&mut children)?;
    assert_eq!(stock.value(), 0);
    println!("  the six items went to consumers {takers}; the stock is empty");
    Ok(())
}

/// Stands in for the seconds the Python original sleeps to simulate work.
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
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
    condition_stock()
}
