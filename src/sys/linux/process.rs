//! Processes: fork, pidfds, waiting, signals, exit, and the identity of the running executable.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io;
use rustix::process::{Pid, PidfdFlags, Signal, WaitIdOptions};

use super::fd::last_errno;

/// What `fork` returned, seen from one side.
#[derive(Debug)]
pub(crate) enum ForkResult {
    /// In the parent: the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork(2)`.
///
/// # Safety
///
/// In the child only the calling thread exists. The caller must make sure that no other thread of
/// the parent holds a lock the child will need (the allocator, stdio, the crate's own mutexes);
/// in practice: the parent has a single thread, or the child only makes async-signal-safe calls
/// before it execs or exits.
pub(crate) unsafe fn fork() -> io::Result<ForkResult> {
    // SAFETY: the caller upholds the contract above.
    match unsafe { libc::fork() } {
        -1 => Err(last_errno()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent(pid)),
    }
}

/// Opens a pidfd for `pid` (`pidfd_open(2)`). Race-free for a child that has not been reaped yet.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or(io::Errno::INVAL)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty())
}

/// Sends signal number `signo` through a pidfd, which cannot hit a recycled pid.
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, signo: i32) -> io::Result<()> {
    if !(1..=64).contains(&signo) {
        return Err(io::Errno::INVAL);
    }
    // SAFETY: `Signal::from_raw_unchecked` only requires a valid signal number; `signo` is in the
    // range the kernel accepts for ordinary and real-time signals (checked just above).
    let sig = unsafe { Signal::from_raw_unchecked(signo) };
    rustix::process::pidfd_send_signal(pidfd, sig)
}

/// How a waited-for child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// Still running (only from a non-blocking wait).
    Running,
    /// Ended; the CPython-style exit code: the exit status, or minus the signal number.
    Exited(i32),
}

/// Waits for the child behind `pidfd` to end and reaps it (`waitid(P_PIDFD)`).
///
/// With `block == false` it returns [`WaitOutcome::Running`] at once if the child still runs.
pub(crate) fn wait_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<WaitOutcome> {
    let mut options = WaitIdOptions::EXITED;
    if !block {
        options |= WaitIdOptions::NOHANG;
    }
    loop {
        match rustix::process::waitid(rustix::process::WaitId::PidFd(pidfd.as_fd()), options) {
            Ok(None) => return Ok(WaitOutcome::Running),
            Ok(Some(status)) => {
                let code =
                    if let Some(sig) = status.terminating_signal() { -sig } else { status.exit_status().unwrap_or(0) };
                return Ok(WaitOutcome::Exited(code));
            }
            Err(io::Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Ends the process at once with `code`, running no destructors and no `atexit` handlers
/// (`_exit(2)`).
pub(crate) fn raw_exit(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Makes writes to a closed pipe or socket fail with `EPIPE` instead of killing the process, as
/// Rust's own runtime does before `main`. Children start before that runtime set-up, so they call it.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN for SIGPIPE is async-signal-safe and has no memory-safety impact.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Registers `f` to run when the process exits normally (`atexit(3)`): after `main` returns or on
/// `std::process::exit`.
pub(crate) fn register_at_exit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `f` is a plain function with the C ABI that atexit expects; it lives for the whole
    // program.
    if unsafe { libc::atexit(f) } == 0 { Ok(()) } else { Err(io::Errno::NOMEM) }
}

/// How many threads this process has, read from `/proc/self/stat` (field 20).
pub(crate) fn main_thread_count() -> std::io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past its end.
    let after_name = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or("");
    after_name
        .split_whitespace()
        .nth(17)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("unexpected /proc/self/stat format"))
}

/// The identity of the running executable file: device, inode, size and modification time of
/// `/proc/self/exe`. Two processes with equal identities run the same binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExeIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl std::fmt::Display for ExeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dev {} inode {} size {} mtime {}", self.dev, self.ino, self.size, self.mtime_ns)
    }
}

/// Reads [`ExeIdentity`] of this process's executable.
pub(crate) fn exe_identity() -> io::Result<ExeIdentity> {
    let st = rustix::fs::stat("/proc/self/exe")?;
    Ok(ExeIdentity {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
    })
}

/// Signal numbers the crate sends.
pub(crate) mod signals {
    /// `SIGTERM`: ask to terminate.
    pub(crate) const SIGTERM: i32 = libc::SIGTERM;
    /// `SIGKILL`: kill at once.
    pub(crate) const SIGKILL: i32 = libc::SIGKILL;
    /// `SIGINT`: interrupt, as Ctrl-C does.
    pub(crate) const SIGINT: i32 = libc::SIGINT;
}

/// The descriptor number at which a spawned child finds the socket its parent gave it.
pub(crate) const INHERITED_FD: i32 = 3;

/// Starts a fresh execution of this program's own executable (`/proc/self/exe`, so the very same
/// file even if its path was replaced), with `role` in the environment variable `role_var` and
/// `socket` as descriptor [`INHERITED_FD`]. Every other descriptor above 2 is closed at exec, and
/// stdin is `/dev/null`. Returns the child's pid.
pub(crate) fn spawn_current_exe(role_var: &str, role: &str, socket: BorrowedFd<'_>) -> std::io::Result<i32> {
    spawn_current_exe_with(role_var, role, socket, false)
}

/// [`spawn_current_exe`] for a child that must ignore `SIGINT`, `SIGTERM` and `SIGHUP` from its
/// very first instruction (set before exec, which keeps ignored signals ignored): a signal sent
/// to the process group right after the spawn cannot kill it before it gets to say so itself.
pub(crate) fn spawn_current_exe_ignoring_termination(
    role_var: &str,
    role: &str,
    socket: BorrowedFd<'_>,
) -> std::io::Result<i32> {
    spawn_current_exe_with(role_var, role, socket, true)
}

fn spawn_current_exe_with(
    role_var: &str,
    role: &str,
    socket: BorrowedFd<'_>,
    ignore_termination: bool,
) -> std::io::Result<i32> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    // posix_spawn where the C library allows it: no copy of this process (see `spawn.rs`). It
    // cannot start a child with signals ignored; that child takes the fork road below.
    if !ignore_termination && let Some(spawned) = super::spawn::spawn_current_exe(role_var, role, socket) {
        return spawned;
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "multiproc-child".into());
    let mut command = std::process::Command::new("/proc/self/exe");
    command.arg0(argv0).args(args).env(role_var, role).stdin(std::process::Stdio::null());
    let raw = socket.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (dup2, close_range, sigaction through signal); it allocates nothing and
    // touches no lock.
    unsafe {
        command.pre_exec(move || {
            if ignore_termination {
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    if libc::signal(signal, libc::SIG_IGN) == libc::SIG_ERR {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            if libc::dup2(raw, INHERITED_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Mark everything above the inherited socket close-on-exec (CLOSE_RANGE_CLOEXEC), so
            // nothing the parent had open leaks into the child while std's own exec-error pipe
            // keeps working until exec.
            let first = (INHERITED_FD + 1) as u32;
            if libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    // The Child handle is dropped without waiting: the caller reaps through a pidfd.
    Ok(child.id() as i32)
}

/// Takes ownership of descriptor [`INHERITED_FD`], which a spawned child's parent put there.
///
/// # Safety
///
/// Only valid in a process started by [`spawn_current_exe`] (or after `dup2` to that number), and
/// only once: the caller becomes the descriptor's sole owner.
pub(crate) unsafe fn take_inherited_fd() -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller guarantees the descriptor is open and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(INHERITED_FD) }
}

/// Removes an environment variable while the process is still single-threaded (before `main`).
pub(crate) fn remove_env_before_main(name: &str) {
    // SAFETY: called only from the start-up hook, before `main`, when no other thread exists that
    // could read the environment concurrently.
    unsafe { std::env::remove_var(name) };
}

/// Closes descriptor [`INHERITED_FD`] by number, in a child forked by the fork server: the server's
/// control socket lives there, owned by a server loop that never returns in the child.
pub(crate) fn close_inherited_fd() {
    // SAFETY: the descriptor's owner (the fork server's loop) never runs again in this process and
    // never drops it, so closing the number cannot cause a double close or a use after close.
    unsafe {
        libc::close(INHERITED_FD);
    }
}

impl ExeIdentity {
    /// A different identity, for tests that provoke a mismatch.
    pub(crate) fn altered(mut self) -> Self {
        self.ino ^= 0x5a5a_5a5a;
        self
    }
}

/// `PIDFD_GET_INFO` (Linux 6.13+): `_IOWR(0xFF, 11, struct pidfd_info)` with the 64-byte first
/// version of the structure.
const PIDFD_GET_INFO: libc::c_ulong = 0xC040_FF0B;
/// `PIDFD_INFO_EXIT` (Linux 6.15+): ask for (and, in the answer, have) the exit status.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// `struct pidfd_info`, version 0 (64 bytes), from `<linux/pidfd.h>`.
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    ids: [u32; 11],
    exit_code: i32,
}

const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);

/// The exit code of the process behind `pidfd` if it has ended and been reaped (by anyone), read
/// from the kernel with `PIDFD_GET_INFO`; `None` if the kernel does not know it (yet, or at all:
/// before Linux 6.15).
pub(crate) fn pidfd_exit_code(pidfd: BorrowedFd<'_>) -> Option<i32> {
    pidfd_info_exit(pidfd).ok().flatten()
}

/// `PIDFD_GET_INFO` asking for the exit status: `Ok(Some(code))` once the kernel knows it (Linux
/// 6.15+, after the process was reaped), `Ok(None)` while the process exists (running, or ended
/// and not reaped yet).
///
/// # Errors
///
/// The kernel has no `PIDFD_GET_INFO` (before 6.13), or the process was reaped and the kernel kept
/// no exit status for pidfd holders (6.13, 6.14): `ESRCH`.
pub(crate) fn pidfd_info_exit(pidfd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    use std::os::fd::AsRawFd;
    let mut info = PidfdInfo { mask: PIDFD_INFO_EXIT, ..PidfdInfo::default() };
    // SAFETY: the ioctl writes at most size_of::<PidfdInfo>() bytes (the size is encoded in the
    // request number) into `info`, which lives for the duration of the call.
    let rc = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info as *mut PidfdInfo) };
    if rc != 0 {
        return Err(last_errno());
    }
    if info.mask & PIDFD_INFO_EXIT == 0 {
        return Ok(None);
    }
    let status = info.exit_code;
    Ok(Some(if libc::WIFSIGNALED(status) { -libc::WTERMSIG(status) } else { libc::WEXITSTATUS(status) }))
}

/// Makes the kernel reap this process's children as they exit (`SIGCHLD` ignored), or restores
/// the default.
pub(crate) fn reap_children_automatically(on: bool) {
    let action = if on { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: setting a standard disposition for SIGCHLD has no memory-safety impact.
    unsafe {
        libc::signal(libc::SIGCHLD, action);
    }
}
