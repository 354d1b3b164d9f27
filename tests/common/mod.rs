//! Shared test helpers: a watchdog, a message channel children can report on, pid watching.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "cluster")]
pub mod broker;
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

/// Sends `SIGSTOP` to `pid`: a process that hangs (it holds its resources, answers nothing).
pub fn sigstop(pid: i32) {
    let pid = rustix::process::Pid::from_raw(pid).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("stop");
}

/// The harness of the test binaries that fork (no libtest: forking is only safe from a
/// single-threaded process, and libtest runs tests on threads). Cases run one after the other on
/// the main thread; `alarm(2)` is the watchdog: a hung case gets `SIGALRM`, which ends the process
/// with a failure.
pub struct ForkHarness {
    filter: Option<String>,
    passed: usize,
}

impl ForkHarness {
    /// A harness filtering cases by the command line's first non-flag argument, as libtest does.
    pub fn from_args() -> ForkHarness {
        ForkHarness { filter: std::env::args().nth(1).filter(|a| !a.starts_with('-')), passed: 0 }
    }

    /// Runs `case` under a 60 s alarm unless the filter leaves `name` out, and reports it.
    pub fn run(&mut self, name: &str, case: impl FnOnce()) {
        if self.filter.as_deref().is_some_and(|f| !name.contains(f)) {
            return;
        }
        // SAFETY: alarm only schedules SIGALRM, whose default action ends the process.
        unsafe { libc::alarm(60) };
        case();
        // SAFETY: as above; 0 cancels the alarm.
        unsafe { libc::alarm(0) };
        println!("test fork::{name} ... ok");
        self.passed += 1;
    }

    /// Prints the summary line.
    pub fn finish(self) {
        println!("\n{} passed, 0 failed", self.passed);
    }
}

/// The items of seed 003's `ShareableList` walk-through, in order.
pub fn seed_003_items() -> Vec<multiproc::shm::Item> {
    use multiproc::shm::Item;
    vec![
        Item::from("howdy"),
        Item::from(b"HoWdY"),
        Item::Float(-273.154),
        Item::Int(100),
        Item::None,
        Item::Bool(true),
        Item::Int(42),
    ]
}

/// Lower-case hexadecimal of `bytes` (authkeys and names handed to Python peers).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `python3` runs on this machine (interop tests skip cleanly without it). Under CI (the
/// variable `CI` set, as `.ci/run` sets it) a missing `python3` fails the test instead: CI must
/// run every interop test.
pub fn python3_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let available = *AVAILABLE.get_or_init(|| runs(std::path::Path::new("python3")));
    assert!(available || std::env::var_os("CI").is_none(), "python3 is missing, and CI must run the interop tests");
    available
}

fn runs(python: &std::path::Path) -> bool {
    std::process::Command::new(python)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Python interpreters to test against: `python3`, and CPython 3.8 to 3.13 from pyenv
/// (`$PYENV_ROOT`, else `~/.pyenv`) where installed. Empty (after a note) without `python3`.
pub fn pythons() -> Vec<std::path::PathBuf> {
    if !python3_available() {
        return Vec::new();
    }
    let mut found = vec![std::path::PathBuf::from("python3")];
    let root = std::env::var_os("PYENV_ROOT")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".pyenv")));
    let Some(versions) = root.map(|r| r.join("versions")) else { return found };
    let Ok(entries) = std::fs::read_dir(&versions) else { return found };
    let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for name in names {
        let minor = name.strip_prefix("3.").and_then(|rest| rest.split('.').next()).and_then(|m| m.parse::<u32>().ok());
        let python = versions.join(&name).join("bin/python3");
        if minor.is_some_and(|m| (8..=13).contains(&m)) && runs(&python) {
            found.push(python);
        }
    }
    found
}

/// The bytes of a hexadecimal string.
pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

/// A fixed-seed xorshift64 generator: the same "random" bytes on every run, for tests that feed
/// garbage to decoders.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
