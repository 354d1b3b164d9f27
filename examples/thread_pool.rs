//! ThreadPool: capturing closures on threads.
//!
//! Run it with `cargo run --example thread_pool`; the `tour` example runs it too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc::pool::ThreadPool;

/// A `ThreadPool` runs closures that capture, on named threads.
pub fn thread_pool() -> multiproc::Result<()> {
    let pool = ThreadPool::new(3)?;
    let greeting = String::from("hello from");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let lines = pool.map(
        move |task: u32| {
            std::thread::sleep(Duration::from_millis(5));
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            record.lock().unwrap().push(thread.clone());
            format!("{greeting} {thread}: task {task}")
        },
        1..=6,
    )?;
    for line in lines {
        println!("  {line}");
    }
    println!("  {} tasks ran on threads of this process {}", seen.lock().unwrap().len(), std::process::id());
    Ok(())
}

fn main() -> multiproc::Result<()> {
    thread_pool()
}
