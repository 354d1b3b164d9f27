//! Pool(3) with an initializer: ten apply calls on its workers.
//!
//! Ported from Python:
//!
//! - `Pool([numprocess [,initializer [, initargs]]])`, `apply`, `apply_async`, `close`, `join`,
//!   `get`, `ready`, `successful`, `wait`. A list of parameters and methods, not a program; each is
//!   used by a scenario.
//! - `Pool(3)`, ten `apply(work, i)`, each printing its pid, `res_l` of `n**2`. Adds an
//!   `initializer` (the parameter list above) and counts the distinct pids: `apply` waits for each
//!   task, so often one worker runs all ten.
//! - `msg: hello i`, `=====>` before any result, `close`, `join`, the list of result objects, `get`
//!   each; then the same with `apply`. The list of `ApplyResult` objects prints as `AsyncResult {
//!   ready: true }`.
//! - `Pool()`, ten `apply_async`, `close`, `join`, all results handled together. `Pool()` has
//!   `cpu_count()` workers here too.
//!
//! Run it with `cargo run --example pool_apply_results`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::pool::Pool;

fn greet_worker(pool_name: String) {
    println!("  initializer: worker {} joins {pool_name}", std::process::id());
}

/// The original's `work`: prints the worker's pid, sleeps (10 ms here, 1 s in the original), returns `n**2`.
fn square_slowly(n: u64) -> (u32, u64) {
    println!("  {} run", std::process::id());
    std::thread::sleep(Duration::from_millis(10));
    (std::process::id(), n * n)
}

/// `Pool(3)` created from nothing (here with an `initializer`, the `Pool(numprocess,
/// initializer, initargs)` of its parameter list), then ten synchronous `apply` calls: the pool's
/// processes (no new ones) run every task, and `res_l` holds the results in order.
pub fn apply_on_three_workers() -> multiproc::Result<()> {
    let pool = Pool::builder().processes(3).initializer(greet_worker, ("Pool(3)".to_string(),)).build()?;
    let mut res_l = Vec::new();
    let mut pids = Vec::new();
    for i in 0..10 {
        let (pid, square) = pool.apply(square_slowly, (i,))?; // waits here until the task is done
        pids.push(pid);
        res_l.push(square);
    }
    println!("  {res_l:?}");
    pids.sort_unstable();
    pids.dedup();
    // apply waits for each task, so one idle worker is enough: often the same one runs them all.
    println!("  ten tasks ran on {} of the 3 worker processes, none on a new one", pids.len());
    assert!(pids.len() <= 3);
    Ok(())
}

fn func(msg: String) -> String {
    println!("  msg: {msg}");
    std::thread::sleep(Duration::from_millis(10)); // 1 s (async) and 0.1 s (sync) in the original
    msg
}

/// "apply_async and apply in detail": ten `apply_async("hello i")` on `Pool(3)`, the
/// `=====>` line printed before any result, `close`, `join`, the list of result objects (all
/// ready), then `get` on each; then the same with `apply`, whose list holds the values themselves.
pub fn msg_hello_async_then_sync() -> multiproc::Result<()> {
    let pool = Pool::new(3)?;
    let res_l: Vec<_> = (0..10).map(|i| pool.apply_async(func, (format!("hello {i}"),))).collect::<Result<_, _>>()?;
    println!("  ==============================>");
    pool.close();
    pool.join()?;
    println!("  {res_l:?}");
    for res in res_l {
        println!("  {}", res.get()?);
    }

    let pool = Pool::new(3)?;
    let res_l: Vec<String> = (0..10).map(|i| pool.apply(func, (format!("hello {i}"),))).collect::<Result<_, _>>()?;
    println!("  ==============================>");
    pool.close();
    pool.join()?;
    println!("  {res_l:?}");
    Ok(())
}

/// "no callback needed": `Pool()` (one worker per CPU), ten `apply_async(work, i)`,
/// `close`, `join`, then the parent collects every result and handles them together.
pub fn collect_without_callback() -> multiproc::Result<()> {
    let pool = Pool::builder().build()?;
    println!("  Pool() has {} workers (cpu_count)", pool.processes());
    let res_l: Vec<_> = (0..10).map(|i| pool.apply_async(square_reporting_quietly, (i,))).collect::<Result<_, _>>()?;
    pool.close();
    pool.join()?;
    let nums: Vec<u64> = res_l.into_iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    println!("  {nums:?}");
    Ok(())
}

fn square_reporting_quietly(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(10)); // 1 s in the original
    n * n
}

fn main() -> multiproc::Result<()> {
    apply_on_three_workers()?;
    msg_hello_async_then_sync()?;
    collect_without_callback()
}
