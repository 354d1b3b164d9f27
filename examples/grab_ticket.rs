//! Ten buyers, one ticket in a JSON file, a Lock.
//!
//! Ported from Python:
//!
//! - A `db` file holds `{"count": 1}`; buyers search, then buy under a lock. Ten buyers instead of
//!   three; the example creates and removes the file; asserts exactly one ticket sold.
//!
//! Run it with `cargo run --example grab_ticket`; the `tour` example runs it too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use multiproc::sync::{AcquireError, LockGuard};
use multiproc::{Event, Lock, Process, Queue};

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
}

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

/// The `count` of a JSON object such as `{"count": 1}` (a tiny hand-written parser: just enough
/// for this file).
fn parse_count(json: &str) -> Option<i64> {
    let after_key = &json[json.find("\"count\"")? + "\"count\"".len()..];
    let value = after_key.trim_start().strip_prefix(':')?.trim_start();
    let end = value.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(value.len());
    value[..end].parse().ok()
}

fn read_count(db: &Path) -> std::io::Result<i64> {
    let text = std::fs::read_to_string(db)?;
    parse_count(&text)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no count in {text:?}")))
}

/// Writes `{"count": N}`. Written aside and renamed over the file, so that a buyer reading it
/// without the lock (the original's `search`) sees the old or the new content, never half of it.
fn write_count(db: &Path, count: i64) -> std::io::Result<()> {
    let aside = db.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&aside, format!("{{\"count\": {count}}}"))?;
    std::fs::rename(&aside, db)
}

fn buy_ticket(
    db: PathBuf,
    user: String,
    lock: Lock,
    go: Event,
    report: Queue<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    go.wait(); // all buyers start together, as the original's do
    // search(): looking needs no lock; everyone may see a ticket left.
    println!("  {user} sees {} ticket(s) left", read_count(&db)?);
    // get(): the read, the check and the write happen under the lock.
    let _guard = hold(&lock);
    let count = read_count(&db)?;
    sleep_ms(2); // the original's network delay when reading, 0.1 s
    if count > 0 {
        write_count(&db, count - 1)?;
        println!("  {user}: ticket bought!");
        report.put(format!("bought {user}"))?;
    } else {
        println!("  {user}: sorry, sold out");
        report.put(format!("sold-out {user}"))?;
    }
    Ok(())
}

/// A file holds `{"count": 1}`; ten buyers read it and, under a lock, buy if a ticket is
/// left. Exactly one gets it.
pub fn grab_ticket() -> multiproc::Result<()> {
    let db = std::env::temp_dir().join(format!("multiproc-tickets-{}.json", std::process::id()));
    write_count(&db, 1).map_err(io)?;
    let lock = Lock::new()?;
    let go = Event::new()?;
    let reports = Queue::new()?;
    let mut buyers = Vec::new();
    for i in 0..10 {
        let user = format!("user{i}");
        buyers.push(Process::new(buy_ticket, (db.clone(), user, lock.clone(), go.clone(), reports.clone())));
    }
    let started = start_all(&mut buyers);
    go.set(); // even if a start failed: the buyers already started must not wait forever
    started?;
    let outcomes = recv_n(&reports, 10);
    let joined = join_all(&mut buyers);
    let left = std::fs::read_to_string(&db).map_err(io);
    let _ = std::fs::remove_file(&db);
    let (outcomes, left) = (outcomes?, left?);
    joined?;
    let winners: Vec<&str> = outcomes.iter().filter_map(|o| o.strip_prefix("bought ")).collect();
    assert_eq!(winners.len(), 1, "exactly one buyer gets the ticket: {outcomes:?}");
    println!("  {} got the only ticket, {} were too late; the file now says {left}", winners[0], outcomes.len() - 1);
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
    grab_ticket()
}
