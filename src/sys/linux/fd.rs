//! File-descriptor housekeeping: close-on-exec, duplication, closing everything above a number,
//! and arming a descriptor so that its hang-up kills the process.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::io;

/// Duplicates `fd` into a new descriptor with `FD_CLOEXEC` set.
pub(crate) fn dup_cloexec(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0)
}

/// A pipe whose two ends are close-on-exec: `(read end, write end)`.
pub(crate) fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
}

/// Arms `fd` (the read end of a pipe) so that the kernel sends `SIGKILL` to this process as soon as
/// the pipe's last writer goes away.
///
/// This is how a daemon child dies with its parent, even when the parent was killed with `SIGKILL`:
/// only the parent holds the write end, and its death closes it. It needs no thread in the child and
/// does not depend on which of the parent's threads started the child (unlike `PR_SET_PDEATHSIG`).
/// It uses `O_ASYNC` with `F_SETOWN` (this process) and `F_SETSIG` (`SIGKILL`).
pub(crate) fn arm_kill_on_hangup(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: plain fcntl calls on a descriptor that `fd` keeps open for the duration of the call.
    let rc = unsafe {
        if libc::fcntl(raw, libc::F_SETOWN, pid) < 0 || libc::fcntl(raw, F_SETSIG, libc::SIGKILL) < 0 {
            -1
        } else {
            let flags = libc::fcntl(raw, libc::F_GETFL);
            if flags < 0 { -1 } else { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_ASYNC) }
        }
    };
    if rc < 0 { Err(last_errno()) } else { Ok(()) }
}

/// Opens `/dev/null` on each of descriptors 0, 1 and 2 that is closed.
///
/// A process started with a closed standard stream would otherwise get the next descriptor it
/// opens (a launch socket, a liveness pipe, a received argument) at that number, and a `println!`
/// would write into it. Called first thing in every child this crate launches.
pub(crate) fn open_missing_standard_streams() {
    for stdio in 0..3 {
        // SAFETY: F_GETFD only reads the flags of descriptor number `stdio`, or fails with EBADF;
        // no ownership of the descriptor is assumed.
        let closed = unsafe { libc::fcntl(stdio, libc::F_GETFD) } == -1;
        if closed {
            // The lowest free number is `stdio` (the lower ones are open by now). Not close-on-exec:
            // it is a standard stream, inherited like the others.
            if let Ok(null) = rustix::fs::open("/dev/null", rustix::fs::OFlags::RDWR, rustix::fs::Mode::empty()) {
                let _standard_stream = std::os::fd::IntoRawFd::into_raw_fd(null);
            }
        }
    }
}

/// Fills a buffer with random bytes from the kernel (`getrandom(2)`).
pub(crate) fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        filled += rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(buf)
}

/// `F_SETSIG` from `<fcntl.h>` (Linux), which the libc crate does not export.
const F_SETSIG: libc::c_int = 10;

pub(super) fn last_errno() -> io::Errno {
    io::Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}
