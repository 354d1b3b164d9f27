//! Guests with Semaphore(2), KTV rooms with Semaphore(4).
//!
//! Ported from Python:
//!
//! - Semaphore(2): five guests, two inside at a time. Counts how many are inside at most (asserts ≤
//!   2).
//! - Thirteen users, four KTV rooms, `Semaphore(4)`. Asserts ≤ 4 inside.
//!
//! Run it with `cargo run --example semaphore_rooms`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Process, Queue, Semaphore};

/// The next `n` reports that children put on `reports`, in the order they were put: at most 10
/// s each, so that a child that never reports fails the example instead of hanging it.
fn recv_n(reports: &Queue<String>, n: usize) -> multiproc::Result<Vec<String>> {
    (0..n).map(|_| reports.get_timeout(Duration::from_secs(10))).collect()
}

fn visit(
    who: String,
    rooms: Semaphore,
    stay_ms: (u64, u64),
    log: Queue<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let _room = rooms.acquire(); // given back when `_room` is dropped, after the last report
    println!("  {who} went in");
    log.put(format!("+{who}"))?;
    sleep_ms(random_in(stay_ms.0, stay_ms.1));
    println!("  {who} came out");
    log.put(format!("-{who}"))?;
    Ok(())
}

/// Runs one visitor process per name through a `Semaphore(limit)`; returns how many were inside
/// at most. Visitors report going in after acquiring and coming out before releasing, so the
/// reports never show more inside than there were.
fn visitors(names: Vec<String>, limit: u32, stay_ms: (u64, u64)) -> multiproc::Result<u32> {
    let rooms = Semaphore::new(limit)?;
    let reports = Queue::new()?;
    let mut children = Vec::new();
    for who in &names {
        children.push(Process::new(visit, (who.clone(), rooms.clone(), stay_ms, reports.clone())));
    }
    start_all(&mut children)?;
    let (mut inside, mut most) = (0u32, 0u32);
    for report in recv_n(&reports, 2 * names.len())? {
        if report.starts_with('+') {
            inside += 1;
            most = most.max(inside);
        } else {
            inside -= 1;
        }
        assert!(inside <= limit, "{inside} inside a Semaphore({limit})");
    }
    join_all(&mut children)?;
    assert_eq!(rooms.value(), limit, "every unit given back");
    Ok(most)
}

/// Five guests, two at a time (`Semaphore(2)`); then thirteen users and four KTV
/// rooms (`Semaphore(4)`).
pub fn semaphore_rooms() -> multiproc::Result<()> {
    let guests = (0..5).map(|i| format!("guest {i}")).collect();
    let most = visitors(guests, 2, (5, 15))?; // 1-3 s in the original
    println!("  at most {most} guests inside at once (Semaphore(2))\n");
    let users = (0..13).map(|i| format!("user{i} (a KTV room)")).collect();
    let most = visitors(users, 4, (0, 15))?; // 0-3 s in the original
    println!("  at most {most} KTV rooms taken at once (Semaphore(4))");
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
    semaphore_rooms()
}
