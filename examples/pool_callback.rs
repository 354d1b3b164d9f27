//! A callback runs in the parent.
//!
//! Ported from Python:
//!
//! - `f1` in a worker, callback `f2` in the parent, pids printed. Uses the numbers of one
//!   version (10 → 100) rather than the other's (5 → 10); the same pids are shown.
//! - `func1` in a worker, `func2` callback in the parent, 10 → 100.
//!
//! Run it with `cargo run --example pool_callback`; the `tour` example runs it too.

use multiproc::pool::{Options, Pool};

fn square_reporting(n: u64) -> u64 {
    println!("  func1 in worker pid {}", std::process::id());
    n * n
}

/// The callback runs in the parent (its pid is the main process's).
pub fn callback_runs_in_the_parent() -> multiproc::Result<()> {
    println!("  main process pid {}", std::process::id());
    let pool = Pool::new(4)?;
    let options = Options::new().callback(|value: &u64| {
        println!("  callback in pid {}: {value}", std::process::id());
    });
    let result = pool.apply_async_with(square_reporting, (10,), options)?;
    pool.close();
    pool.join()?;
    assert!(result.ready());
    Ok(())
}

fn main() -> multiproc::Result<()> {
    callback_runs_in_the_parent()
}
