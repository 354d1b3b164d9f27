//! Event: joo_a waits for joo_b.
//!
//! Ported from Python:
//!
//! - `joo_a` waits for `joo_b`, both put a number in a `Queue`. Asserts `joo_b`'s number comes out
//!   first.
//!
//! Run it with `cargo run --example joo_event`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Event, Process, Queue};

fn joo_a(q: Queue<u64>, ev: Event) -> multiproc::Result<()> {
    println!("  subprocess joo_a start");
    if !ev.is_set() {
        ev.wait();
    }
    q.put(random_in(1, 100))?;
    println!("  subprocess joo_a ended");
    Ok(())
}

fn joo_b(q: Queue<u64>, ev: Event) -> multiproc::Result<()> {
    println!("  subprocess joo_b start");
    ev.clear(); // take the right to run first
    sleep_ms(20); // 2 s in the original
    q.put(random_in(200, 300))?;
    ev.set(); // now joo_a may go on
    println!("  subprocess joo_b ended");
    Ok(())
}

/// Joo_a waits on an event that joo_b sets once it has put its number in the queue, so
/// joo_b's number (200-300) always comes out before joo_a's (1-100).
pub fn joo_a_and_joo_b() -> multiproc::Result<()> {
    let qu = Queue::new()?;
    let ev = Event::new()?;
    let mut sub_a = Process::new(joo_a, (qu.clone(), ev.clone()));
    let mut sub_b = Process::new(joo_b, (qu.clone(), ev));
    sub_a.start()?;
    sub_b.start()?;
    join_all(std::slice::from_mut(&mut sub_a))?;
    join_all(std::slice::from_mut(&mut sub_b))?;
    let mut values = Vec::new();
    while !qu.empty() {
        let v = qu.get()?;
        println!("  {v}");
        values.push(v);
    }
    assert!(
        matches!(values[..], [b, a] if (200..=300).contains(&b) && (1..=100).contains(&a)),
        "joo_b's number first, then joo_a's: {values:?}"
    );
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
    joo_a_and_joo_b()
}
