//! A worker dies in a task: that task fails, the others complete.
//!
//! Run it with `cargo run --example pool_worker_dies`; the `tour` example runs it too.

use multiproc::pool::Pool;

fn crash_on(n: u64) -> u64 {
    if n == 3 {
        std::process::abort();
    }
    n * 10
}

/// CPython's pool hangs forever when a worker dies (gh-66587); here the task fails with how its
/// worker ended, the worker is replaced, and every other task completes.
pub fn a_worker_dies() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let results: Vec<_> = (0..6).map(|n| pool.apply_async(crash_on, (n,))).collect::<Result<_, _>>()?;
    for (n, result) in results.into_iter().enumerate() {
        match result.get() {
            Ok(value) => println!("  task {n}: {value}"),
            Err(e) => println!("  task {n}: {e}"),
        }
    }
    println!("  {:?}", pool.stats());
    Ok(())
}

fn main() -> multiproc::Result<()> {
    a_worker_dies()
}
