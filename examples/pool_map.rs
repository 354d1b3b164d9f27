//! Pool(4).map over range(100) against 100 processes, timed.
//!
//! Ported from Python:
//!
//! - `Pool(4).map(f, range(100))` against 100 processes, timed. The pool's start is inside its
//!   timing, as in the original.
//!
//! Run it with `cargo run --example pool_map`; the `tour` example runs it too.

use std::time::Instant;

use multiproc::Process;
use multiproc::pool::Pool;

/// The original's `f`: a little arithmetic.
fn add_up(mut n: u64) -> u64 {
    for i in 0..5 {
        n += i;
    }
    n
}

fn add_up_in_process(n: u64) {
    add_up(n);
}

/// `Pool(4).map(f, range(100))` against 100 separate processes, timed.
pub fn pool_against_processes() -> multiproc::Result<()> {
    let t = Instant::now();
    let pool = Pool::new(4)?;
    let sums = pool.map(add_up, 0..100)?;
    let pool_time = t.elapsed();
    let t = Instant::now();
    let mut children: Vec<Process> = (0..100).map(|i| Process::new(add_up_in_process, (i,))).collect();
    for child in &mut children {
        child.start()?;
    }
    for child in &mut children {
        child.join()?;
    }
    let process_time = t.elapsed();
    println!("  pool of 4 (started inside the timing): {pool_time:.2?} for {} tasks", sums.len());
    println!("  100 processes: {process_time:.2?}");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    pool_against_processes()
}
