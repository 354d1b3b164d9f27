//! Process name, pid, is_alive, join(timeout), terminate, exitcode.
//!
//! Ported from Python:
//!
//! - `target`, `args`, `kwargs`, `name`; `start`, `run`, `terminate`, `is_alive`,
//!   `join([timeout])`; `daemon`, `name`, `pid`, `exitcode`, `authkey`. No keyword arguments in
//!   Rust: `kwargs` become positional arguments or one serde struct. `authkey` is used by
//!   `Listener`/`Client` (the `listener_client` example).
//! - A daemon starting a child: `AssertionError: daemonic processes are not allowed to have
//!   children`, here `Error::DaemonCannotHaveChildren`.
//!
//! Run it with `cargo run --example process_attributes`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::Process;

fn worker_body() {
    println!("  worker: 456");
    println!("  worker: end456");
}

fn chat(person: String, minutes: u32) {
    let me = multiproc::current_process();
    println!("  {} (pid {}): chatting with {person} for {minutes} minutes", me.name(), std::process::id());
}

fn wait_forever(started: multiproc::Connection) {
    drop(started); // the parent sees end of file: this child runs
    loop {
        std::thread::park();
    }
}

/// The original's table of `Process` parameters (`target`, `args`, `kwargs`, `name`), methods
/// (`start`, `join([timeout])`, `is_alive`, `terminate`) and attributes (`daemon`, `name`, `pid`,
/// `exitcode`). Rust has no keyword arguments: `kwargs={'name': 'egon', 'age': 18}` become
/// positional arguments (or one serde struct).
pub fn process_attributes() -> multiproc::Result<()> {
    let mut p = Process::new(chat, ("egon".to_string(), 18u32)).with_name("chatter");
    println!("  before start: {p}, daemon {}, pid {:?}, exitcode {:?}", p.daemon(), p.pid(), p.exitcode());
    p.start()?;
    println!("  started: pid {:?}, is_alive {}", p.pid(), p.is_alive());
    println!("  join() -> {}; now {p}, is_alive {}", p.join()?, p.is_alive());

    let (mut started, child_end) = multiproc::pipe()?;
    // A daemon, so that it cannot outlive the example even if a step below fails.
    let mut sleeper = Process::new(wait_forever, (child_end,)).with_daemon(true);
    sleeper.start()?;
    started.set_timeout(Some(Duration::from_secs(10)));
    let _ = started.recv::<()>(); // end of file once the child dropped its end
    println!(
        "  join(timeout=20 ms) on a child that never ends -> {:?}",
        sleeper.join_timeout(Duration::from_millis(20))?
    );
    sleeper.terminate()?;
    println!(
        "  after terminate(): join() -> {}, exitcode {:?}: ended by signal 15",
        sleeper.join()?,
        sleeper.exitcode()
    );
    Ok(())
}

fn daemon_tries_a_child() -> i32 {
    let mut grandchild = Process::new(worker_body, ());
    match grandchild.start() {
        Err(e @ multiproc::Error::DaemonCannotHaveChildren) => {
            println!("  the daemon's start(): {e}");
            0
        }
        other => {
            println!("  the daemon's start(): unexpected {other:?}");
            1
        }
    }
}

/// "daemonic processes are not allowed to have children": a daemon child's `start()`
/// fails with `Error::DaemonCannotHaveChildren` (CPython raises an `AssertionError`).
pub fn daemon_cannot_have_children() -> multiproc::Result<()> {
    let mut daemon = Process::new(daemon_tries_a_child, ()).with_daemon(true);
    daemon.start()?;
    let code = daemon.join()?;
    println!("  the daemon exited with {code}");
    assert_eq!(code, 0);
    Ok(())
}

fn main() -> multiproc::Result<()> {
    process_attributes()?;
    daemon_cannot_have_children()
}
