//! Queue: a consumer with `while True: q.get()` never ends.
//!
//! Ported from Python:
//!
//! - One producer, one consumer with `while True: q.get()`. CPython's program never exits (the
//!   consumer blocks in `get` forever and is not a daemon). Here the main process counts what was
//!   eaten (a semaphore the original does not have), shows the consumer still alive in `get`, and
//!   terminates it (exit code -15).
//!
//! Run it with `cargo run --example endless_consumer`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Process, Queue};

fn eat_forever(q: Queue<String>, eaten: multiproc::Semaphore) {
    loop {
        let food = q.get().unwrap();
        sleep_ms(random_in(1, 3));
        println!("  \x1b[45m{} 吃 {food}\x1b[0m", std::process::id());
        eaten.release(); // for the example's bookkeeping; the original has no such thing
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

/// the first producer-consumer model: the consumer's `while True: q.get()` has no way
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

/// Joins every child and checks that each exited with 0.
fn join_all(children: &mut [Process]) -> multiproc::Result<()> {
    for child in children {
        let code = child.join()?;
        assert_eq!(code, 0, "{child} failed");
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    consumer_never_ends()
}
