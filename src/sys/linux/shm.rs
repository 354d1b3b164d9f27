//! Named POSIX shared memory (`shm_open(3)`, `shm_unlink(3)`): files in `/dev/shm` that any
//! process of the user can open by name, CPython's `SharedMemory` included.
//!
//! Names are passed as CPython passes them, with one leading `/` (`/psm_1a2b3c4d`); the file is
//! `/dev/shm/psm_1a2b3c4d`, mode 0600. Unlike a memory file from `memfd_create`, a named segment
//! outlives every process until someone unlinks it: see `shm::tracker` for who does.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::Mode;
use rustix::io;
use rustix::shm::OFlags;

/// Creates the segment `name` (with its leading `/`) of `size` bytes, zero-filled; fails with
/// `EEXIST` if the name is taken.
pub(crate) fn shm_create(name: &str, size: usize) -> io::Result<OwnedFd> {
    let fd = rustix::shm::open(name, OFlags::CREATE | OFlags::EXCL | OFlags::RDWR, Mode::RUSR | Mode::WUSR)?;
    if let Err(e) = rustix::fs::ftruncate(&fd, size as u64) {
        let _ = rustix::shm::unlink(name);
        return Err(e);
    }
    Ok(fd)
}

/// Opens the existing segment `name` (with its leading `/`) for reading and writing, and returns
/// it with its current size; fails with `ENOENT` if there is none.
pub(crate) fn shm_attach(name: &str) -> io::Result<(OwnedFd, usize)> {
    let fd = rustix::shm::open(name, OFlags::RDWR, Mode::RUSR | Mode::WUSR)?;
    let size = segment_size(fd.as_fd())?;
    Ok((fd, size))
}

/// The current size of a segment.
pub(crate) fn segment_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let size = rustix::fs::fstat(fd)?.st_size;
    usize::try_from(size).map_err(|_| io::Errno::INVAL)
}

/// Removes the name `name` (with its leading `/`); the memory stays while mappings and descriptors
/// of it remain.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    rustix::shm::unlink(name)
}

/// Makes the interactive termination signals (`SIGINT`, `SIGTERM`, `SIGHUP`) leave this process
/// alone, as CPython's resource tracker does: it must outlive the program it cleans up after.
pub(crate) fn ignore_termination_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing SIG_IGN is async-signal-safe and has no memory-safety impact.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}
