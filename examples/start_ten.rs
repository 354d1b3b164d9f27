//! Ten processes started, then all joined.
//!
//! Ported from Python:
//!
//! - Ten `Process(target=func, args=('姑娘%s' % i, '来玩啊!'))`, all started, then all joined. Each
//!   prints its number and pid. The original's comments on `join` inside the loop (which serializes the
//!   children) are not run.
//!
//! Run it with `cargo run --example start_ten`; the `tour` example runs it too.

use multiproc::Process;

fn work(i: u32) {
    println!("  process {i} (pid {}) is running", std::process::id());
}

/// Ten processes started, then all joined.
pub fn ten_processes() -> multiproc::Result<()> {
    let mut children: Vec<Process> = (0..10).map(|i| Process::new(work, (i,))).collect();
    for child in &mut children {
        child.start()?;
    }
    for child in &mut children {
        child.join()?;
    }
    println!("  all ten joined; the main process goes on");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    ten_processes()
}
