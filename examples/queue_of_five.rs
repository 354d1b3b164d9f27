//! Queue(5): full, put when full, get, empty, get when empty.
//!
//! Ported from Python:
//!
//! - Queue methods: `qsize`, `full`, `empty`, `put`, `get`, `put_nowait`, `get_nowait`.
//! - `Queue(5)`, `full()` after two and five items, `put(6)` blocks, `get`, `empty()`,
//!   `get_nowait()` raises, `get()` blocks. The two blocking calls are shown with 10 ms timeouts
//!   (`put_timeout`, `get_timeout`) instead of hanging.
//! - A producer child puts `'hello baby'`, a consumer child prints it.
//!
//! Run it with `cargo run --example queue_of_five`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Error, Process, Queue};

/// `Queue(5)`: `full()` after two items and after five; the sixth `put` would wait (here
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

fn put_hello(q: Queue<String>) {
    q.put("hello baby".to_string()).unwrap();
}

fn print_one(q: Queue<String>) {
    println!("  {}", q.get().unwrap());
}

/// A producer child puts `'hello baby'`, a consumer child gets and prints it.
pub fn child_to_child() -> multiproc::Result<()> {
    let q = Queue::new()?;
    let mut children = [Process::new(put_hello, (q.clone(),)), Process::new(print_one, (q.clone(),))];
    start_all(&mut children)?;
    join_all(&mut children)
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
    queue_of_five_walkthrough()?;
    child_to_child()
}
