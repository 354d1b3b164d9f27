//! A daemon process dies with its parent.
//!
//! Ported from Python:
//!
//! - `p.daemon = True`; it ends when the main process's code ends. The "main process" is a child of
//!   the example so the example can watch the daemon go; also shows the daemon dying when its
//!   parent is killed with `SIGKILL` (CPython's does not). Prints the original's `123`/`456`.
//!
//! Run it with `cargo run --example daemon`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Handle, Process};

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
}

fn daemon_body(report: Handle<std::os::unix::net::UnixDatagram>, mut started: multiproc::Connection) {
    println!("  daemon: 123 (pid {})", std::process::id());
    let _ = report.send(std::process::id().to_string().as_bytes());
    let _ = started.send(&());
    loop {
        std::thread::park(); // would run forever
    }
}

fn worker_body() {
    println!("  worker: 456");
    println!("  worker: end456");
}

/// Starts a daemon (and waits until it runs, so that the demonstration does not depend on timing)
/// and a worker; then its code ends.
fn start_daemon(report: Handle<std::os::unix::net::UnixDatagram>) -> multiproc::Result<Process> {
    let (mut started, started_child) = multiproc::pipe()?;
    let mut daemon = Process::new(daemon_body, (report, started_child)).with_daemon(true);
    daemon.start()?;
    started.set_timeout(Some(Duration::from_secs(10)));
    started.recv::<()>()?;
    Ok(daemon)
}

fn main_program(report: Handle<std::os::unix::net::UnixDatagram>) -> multiproc::Result<()> {
    let _daemon = start_daemon(report)?;
    let mut worker = Process::new(worker_body, ());
    worker.start()?;
    println!("  main-------  (its code ends here: the daemon is terminated, the worker joined)");
    Ok(())
}

fn wait_gone(pid: i32) -> bool {
    let Ok(pidfd) =
        rustix::process::pidfd_open(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::PidfdFlags::empty())
    else {
        return true;
    };
    let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
    let limit = rustix::event::Timespec { tv_sec: 5, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&limit)), Ok(n) if n > 0)
}

/// A daemon process ends with its parent: when the parent's code ends, and when the parent is
/// killed. The "parent" here is a child of the example, so the example can watch.
pub fn daemon_dies_with_parent() -> multiproc::Result<()> {
    let (inbox, report) = std::os::unix::net::UnixDatagram::pair().map_err(io)?;
    inbox.set_read_timeout(Some(Duration::from_secs(5))).map_err(io)?;
    let mut program = Process::new(main_program, (Handle::new(report),));
    program.start()?;
    let mut buf = [0u8; 32];
    let n = inbox.recv(&mut buf).map_err(io)?;
    let daemon_pid: i32 = String::from_utf8_lossy(&buf[..n]).parse().unwrap_or(0);
    program.join()?;
    println!("  daemon {daemon_pid} gone after its parent ended: {}", wait_gone(daemon_pid));

    // The same when the parent is killed with SIGKILL: no exit code runs, the kernel kills the daemon.
    let (inbox, report) = std::os::unix::net::UnixDatagram::pair().map_err(io)?;
    inbox.set_read_timeout(Some(Duration::from_secs(5))).map_err(io)?;
    let mut program = Process::new(daemon_then_hang, (Handle::new(report),));
    program.start()?;
    let n = inbox.recv(&mut buf).map_err(io)?;
    let daemon_pid: i32 = String::from_utf8_lossy(&buf[..n]).parse().unwrap_or(0);
    program.kill()?;
    println!("  parent killed (exit code {}); daemon {daemon_pid} gone: {}", program.join()?, wait_gone(daemon_pid));
    Ok(())
}

fn daemon_then_hang(report: Handle<std::os::unix::net::UnixDatagram>) -> multiproc::Result<()> {
    let _daemon = start_daemon(report)?;
    loop {
        std::thread::park();
    }
}

fn main() -> multiproc::Result<()> {
    daemon_dies_with_parent()
}
