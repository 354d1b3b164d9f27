//! An executor: submit, map, shutdown (concurrent.futures).
//!
//! Ported from Python:
//!
//! - `concurrent.futures`' process and thread pools (named, not shown, in the original).
//!
//! Run it with `cargo run --example executor`; the `tour` example runs it too.

use multiproc::pool::Executor;

fn cube(x: i64) -> i64 {
    x * x * x
}

/// `concurrent.futures` style: submit returns a future, map yields in order, shutdown.
pub fn executor() -> multiproc::Result<()> {
    let mut executor = Executor::new(2)?;
    let future = executor.submit(cube, (3,))?;
    println!("  submit(cube, 3) -> {}", future.get()?);
    let cubes: Vec<i64> = executor.map(cube, 0..6)?.collect::<Result<_, _>>()?;
    println!("  map(cube, 0..6) -> {cubes:?}");
    executor.shutdown(true, false)?;
    Ok(())
}

fn main() -> multiproc::Result<()> {
    executor()
}
