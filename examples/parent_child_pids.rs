//! Parent process and child process pids; two targets; three children.
//!
//! Ported from Python:
//!
//! - `Parent process %s.` and `run_proc('test')` printing the child's pid;
//!   `f1`/`f2` printing `Hell name`/`Hell age`; three children `f('alvin')` printing
//!   `time.ctime()`; `test1`/`test2`. The snippets are cut off in the original; the example runs what
//!   they show. The time is printed as seconds since the epoch (no `ctime` in std). `test1`/`test2`
//!   (two targets with loops, cut off) are the two-target part.
//!
//! Run it with `cargo run --example parent_child_pids`; the `tour` example runs it too.

use multiproc::Process;

fn run_proc(name: String) {
    println!("  Run child process {name} ({})...", std::process::id());
}

fn hell(name: String) {
    println!("  Hell {name}");
}

fn hello_at(name: String) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    println!("  hello {name} at {}.{:03} s since the epoch", now.as_secs(), now.subsec_millis());
}

/// The original's related-article snippets: `print('Parent process %s.' % os.getpid())` and a child
/// `run_proc('test')` printing its own pid; two children with different targets (`f1`, `f2`);
/// three children `f('alvin')` printing the time. `os.getpid()` is `std::process::id()`; there is
/// no `if __name__ == '__main__'` guard: a child never runs `main`.
pub fn parent_and_child_pids() -> multiproc::Result<()> {
    println!("  Parent process {}.", std::process::id());
    let mut p = Process::new(run_proc, ("test".to_string(),));
    println!("  Child process will start.");
    p.start()?;
    p.join()?;
    println!("  Child process end.");
    let mut two = [Process::new(hell, ("name".to_string(),)), Process::new(hell, ("age".to_string(),))];
    let mut three: Vec<Process> = (0..3).map(|_| Process::new(hello_at, ("alvin".to_string(),))).collect();
    for p in two.iter_mut().chain(three.iter_mut()) {
        p.start()?;
    }
    for p in two.iter_mut().chain(three.iter_mut()) {
        assert_eq!(p.join()?, 0, "{p}");
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    parent_and_child_pids()
}
