//! Queue(3): put, put_nowait when full, full, get, get_nowait when empty, empty.
//!
//! Ported from Python:
//!
//! - `Queue(3)`, `put` ×3, `put_nowait(4)` when full, `full()`, `get` ×3, `get_nowait()` when
//!   empty, `empty()`. The original's `get_nowait(3)` (a bug: it takes no argument) is `get_nowait()`;
//!   `Full`/`Empty` are errors, not exceptions.
//! - The parent puts `'小鬼'`, one child puts, another child and the parent get. No `time.sleep(1)`:
//!   `get` waits.
//! - Queue methods: `qsize`, `full`, `empty`, `put`, `get`, `put_nowait`, `get_nowait`.
//!
//! Run it with `cargo run --example queue_walkthrough`; the `tour` example runs it too.

use multiproc::{Error, Process, Queue};

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
    queue_walkthrough()?;
    child_puts_parent_gets()
}
