//! Event: the parent waits for a child's result.
//!
//! Ported from Python:
//!
//! - Event methods in one process: `is_set`, `set`, `wait` (`clear` commented out). Also shows
//!   `clear` and `wait_timeout`.
//! - A child computes 100, sets the event the parent waits on.
//! - `is_set()`, `'look here!'`, `e.wait()` on an unset event, `'give me!!'`. The original's `wait()`
//!   on an event nobody sets blocks forever; here the event is set first and the unset case uses
//!   `wait_timeout`.
//!
//! Run it with `cargo run --example event_result`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Event, Process};

fn compute_then_set(done: Event) {
    sleep_ms(20); // 2 s in the original
    let n = 100;
    println!("  child: the result is {n}");
    done.set();
}

/// The Event methods in one process, then a child that computes and sets an event the
/// parent waits on.
pub fn event_result() -> multiproc::Result<()> {
    let e = Event::new()?;
    println!("  a new event is set: {}", e.is_set());
    e.set();
    println!("  after set(): {}", e.is_set());
    e.wait(); // returns at once: the flag is set
    println!("  wait() passed");
    e.clear();
    println!("  after clear(), wait_timeout(5 ms) returns {}", e.wait_timeout(Duration::from_millis(5)));

    let done = Event::new()?;
    let mut child = Process::new(compute_then_set, (done.clone(),));
    child.start()?;
    println!("  main process waiting...");
    done.wait();
    println!("  the result is out; the main process can use it");
    join_all(std::slice::from_mut(&mut child))
}

/// Stands in for the seconds the Python original sleeps to simulate work.
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
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
    event_result()
}
