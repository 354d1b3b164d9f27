//! Queue, SimpleQueue, LifoQueue, PriorityQueue: put 3, 1, 2.
//!
//! Ported from Python:
//!
//! - `queue.Queue` (FIFO), `LifoQueue`, `PriorityQueue`, `SimpleQueue`, `JoinableQueue`. CPython's
//!   `LifoQueue` and `PriorityQueue` are thread-only (`queue` module); across processes they are a
//!   manager's (`manager.lifo_queue()`, `manager.priority_queue()`), which is what the example
//!   uses. `JoinableQueue`: see the `joinable_queue` example.
//!
//! Run it with `cargo run --example queue_kinds`; the `tour` example runs it too.

use multiproc::Queue;

/// Python lists `Queue` (first in, first out), `LifoQueue` (a stack), `PriorityQueue` (lowest
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

fn main() -> multiproc::Result<()> {
    queue_kinds()
}
