//! Pool(2).apply: one call at a time.
//!
//! Ported from Python:
//!
//! - `Pool(2).apply` five times, `xxxxx` between.
//! - `Pool(2).apply_async` five times, then `get` each.
//! - `Pool([numprocess [,initializer [, initargs]]])`, `apply`, `apply_async`, `close`, `join`,
//!   `get`, `ready`, `successful`, `wait`. A list of parameters and methods, not a program; each is
//!   used by a scenario.
//! - Ten `apply_async(work, i)` with random sleeps, `close`, `join`, `get` each. Five tasks instead
//!   of ten.
//!
//! Run it with `cargo run --example pool_apply`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::pool::Pool;

/// The original's `f1`: sleeps (20 ms here, 2 s in the original), returns `n * 2`.
fn double_slowly(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    n * 2
}

/// Synchronous `apply` on `Pool(2)`: each call waits for its result.
pub fn apply_in_turn() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    for i in 0..5 {
        println!("  xxxxx");
        println!("  {}", pool.apply(double_slowly, (i,))?);
    }
    Ok(())
}

/// `apply_async` on `Pool(2)`: all are submitted at once, then collected in order.
pub fn apply_async_then_get() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let mut results = Vec::new();
    for i in 0..5 {
        println!("  xxxxx");
        results.push(pool.apply_async(double_slowly, (i,))?);
    }
    for result in results {
        println!("  {}", result.get()?);
    }
    Ok(())
}

fn square_reporting(n: u64) -> u64 {
    println!("  func1 in worker pid {}", std::process::id());
    n * n
}

/// `apply_async` on `Pool(3)`, `close`, `join`, then `get` each result (all ready).
pub fn close_join_then_get() -> multiproc::Result<()> {
    let pool = Pool::new(3)?;
    let results: Vec<_> = (0..5).map(|i| pool.apply_async(square_reporting, (i,))).collect::<Result<_, _>>()?;
    pool.close();
    pool.join()?;
    let ready = results.iter().filter(|r| r.ready()).count();
    let values: Vec<u64> = results.into_iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    println!("  after join: {ready} of 5 ready: {values:?}");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    apply_in_turn()?;
    apply_async_then_get()?;
    close_join_then_get()
}
