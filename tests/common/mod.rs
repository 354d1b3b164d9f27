//! Shared test helpers: a watchdog, a message channel children can report on, pid watching.
#![allow(dead_code, unreachable_pub)]

pub mod queue_suite;
pub mod suite;
pub mod sync_suite;

use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::Duration;

use multiproc::Handle;

/// Runs `body` on this thread; if it has not finished after `secs`, prints which test hung and
/// aborts the whole test process, so that a hang fails in seconds instead of stalling CI.
pub fn watchdog<R>(name: &str, secs: u64, body: impl FnOnce() -> R) -> R {
    let (done, finished) = mpsc::channel::<()>();
    let name = name.to_string();
    let guard = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("watchdog: test {name} still running after {secs} s; aborting");
            std::process::abort();
        }
    });
    let result = body();
    let _ = done.send(());
    let _ = guard.join();
    result
}

/// A datagram channel: the test keeps `Inbox`, children get `Outbox`es (as process arguments).
pub struct Inbox(pub UnixDatagram);
pub type Outbox = Handle<UnixDatagram>;

pub fn channel() -> (Inbox, Outbox) {
    let (a, b) = UnixDatagram::pair().expect("socketpair");
    (Inbox(a), Handle::new(b))
}

impl Inbox {
    /// The next message, or a panic after `secs` seconds.
    pub fn recv(&self, secs: u64) -> String {
        self.0.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = self.0.recv(&mut buf).unwrap_or_else(|e| panic!("no message from a child within {secs} s: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

pub fn send(outbox: &Outbox, message: &str) {
    outbox.send(message.as_bytes()).expect("send to the test");
}

/// Waits until process `pid` (not necessarily our child) has ended; false after `secs`.
pub fn wait_for_exit_of(pid: i32, secs: u64) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return true };
    let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return true; // already gone
    };
    let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
    let timeout = rustix::event::Timespec { tv_sec: secs as i64, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

/// Sends `SIGKILL` to `pid`.
pub fn sigkill(pid: i32) {
    let pid = rustix::process::Pid::from_raw(pid).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill");
}
