//! Five processes work one at a time under a Lock.
//!
//! Ported from Python:
//!
//! - Five `work(n, lock)` processes, running and done under one `Lock`. Asserts no two inside at
//!   once.
//! - Ten processes print `hello world i` under a lock.
//!
//! Run it with `cargo run --example lock_print`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::sync::{AcquireError, LockGuard};
use multiproc::{Lock, Process, Queue};

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

/// The next `n` reports that children put on `reports`, in the order they were put: at most 10
/// s each, so that a child that never reports fails the example instead of hanging it.
fn recv_n(reports: &Queue<String>, n: usize) -> multiproc::Result<Vec<String>> {
    (0..n).map(|_| reports.get_timeout(Duration::from_secs(10))).collect()
}

fn work_under_lock(n: u32, lock: Lock, log: Queue<String>) -> Result<(), Box<dyn std::error::Error>> {
    // Everything between acquiring and dropping the guard runs in one process at a time.
    let _guard = hold(&lock);
    println!("  {n}: {} is running", std::process::id());
    log.put(format!("{n} running"))?;
    sleep_ms(10); // 1 s in the original
    println!("  {n}: {} is done", std::process::id());
    log.put(format!("{n} done"))?;
    Ok(())
}

/// Five processes each print "running", sleep and print "done" while holding one lock:
/// the five run one after another.
pub fn five_workers_under_lock() -> multiproc::Result<()> {
    let lock = Lock::new()?;
    let reports = Queue::new()?;
    let mut children = Vec::new();
    for n in 0..5 {
        children.push(Process::new(work_under_lock, (n, lock.clone(), reports.clone())));
    }
    start_all(&mut children)?;
    let log = recv_n(&reports, 10)?;
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

fn hello_under_lock(lock: Lock, i: u32) {
    let _guard = hold(&lock);
    println!("  hello world {i}");
}

/// Ten processes print "hello world" under one lock, so that no two lines mix.
pub fn hello_world_under_lock() -> multiproc::Result<()> {
    let lock = Lock::new()?;
    let mut children: Vec<Process> = (0..10).map(|i| Process::new(hello_under_lock, (lock.clone(), i))).collect();
    start_all(&mut children)?;
    join_all(&mut children)
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
    five_workers_under_lock()?;
    hello_world_under_lock()
}
