//! hello1..hello9 on Pool(3) with apply_async, then with apply.
//!
//! Ported from Python:
//!
//! - `hello1`..`hello9` with `apply_async` on `Pool(processes=3)`, `close`, `join`, `main end`.
//! - The same with `apply`.
//!
//! Run it with `cargo run --example pool_hello`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::pool::Pool;

fn hello_worker(message: String) {
    println!("  #######start {message}########");
    std::thread::sleep(Duration::from_millis(10));
    println!("  #######end   {message}########");
}

/// `hello1`..`hello9` on `Pool(3)`, first with `apply_async` (three at a time,
/// interleaved), then with `apply` (one after the other).
pub fn hello_async_and_sync() -> multiproc::Result<()> {
    let pool = Pool::new(3)?;
    println!("  apply_async:");
    let results: Vec<_> = (1..10).map(|i| pool.apply_async(hello_worker, (format!("hello{i}"),))).collect();
    pool.close();
    pool.join()?;
    for result in results {
        result?.get()?;
    }
    println!("  main end");
    let pool = Pool::new(3)?;
    println!("  apply:");
    for i in 1..10 {
        pool.apply(hello_worker, (format!("hello{i}"),))?;
    }
    pool.close();
    pool.join()?;
    println!("  main end");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    hello_async_and_sync()
}
