//! Named POSIX shared memory (`shm_open(3)`, `shm_unlink(3)`): files in `/dev/shm` that any
//! process of the user can open by name, CPython's `SharedMemory` included.
//!
//! Names are passed as CPython passes them, with one leading `/` (`/psm_1a2b3c4d`); the file is
//! `/dev/shm/psm_1a2b3c4d`, mode 0600. Unlike a memory file from `memfd_create`, a named segment
//! outlives every process until someone unlinks it: see `shm::tracker` for who does.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use rustix::fs::Mode;
use rustix::fs::OFlags;
use rustix::io;

/// `/dev/shm`, opened once: segments are opened relative to it (`openat`), which spares the kernel
/// the walk of the directory's path at every open and unlink (what `shm_open(3)` does, minus that).
fn shm_dir() -> io::Result<BorrowedFd<'static>> {
    static DIR: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.as_fd());
    }
    let dir = rustix::fs::open("/dev/shm", OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::PATH, Mode::empty())?;
    Ok(DIR.get_or_init(|| dir).as_fd())
}

/// The file name inside `/dev/shm` of the segment `name` (one leading `/`, as `shm_open` takes it).
fn file_name(name: &str) -> io::Result<&str> {
    let file = name.trim_start_matches('/');
    if file.is_empty() || file == "." || file == ".." || file.contains('/') || file.len() > 255 {
        return Err(io::Errno::INVAL);
    }
    Ok(file)
}

/// Creates the segment `name` (with its leading `/`) of `size` bytes, zero-filled, mode 0600; fails
/// with `EEXIST` if the name is taken.
pub(crate) fn shm_create(name: &str, size: usize) -> io::Result<OwnedFd> {
    let file = file_name(name)?;
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = rustix::fs::openat(shm_dir()?, file, flags, Mode::RUSR | Mode::WUSR)?;
    if let Err(e) = rustix::fs::ftruncate(&fd, size as u64) {
        let _ = shm_unlink(name);
        return Err(e);
    }
    Ok(fd)
}

/// Opens the existing segment `name` (with its leading `/`) for reading and writing, and returns
/// it with its current size; fails with `ENOENT` if there is none.
pub(crate) fn shm_attach(name: &str) -> io::Result<(OwnedFd, usize)> {
    let file = file_name(name)?;
    let flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = rustix::fs::openat(shm_dir()?, file, flags, Mode::empty())?;
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
    rustix::fs::unlinkat(shm_dir()?, file_name(name)?, rustix::fs::AtFlags::empty())
}

/// Runs `handler` in the child after every `fork(3)` of this process (`pthread_atfork`).
pub(crate) fn on_fork_child(handler: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `handler` is a plain C-ABI function that lives for the whole program; registering
    // it has no other precondition.
    match unsafe { libc::pthread_atfork(None, None, Some(handler)) } {
        0 => Ok(()),
        e => Err(io::Errno::from_raw_os_error(e)),
    }
}

/// Asks the kernel to fault in, in one call, the pages that lie wholly inside `region` (part of a
/// shared mapping), for a large copy about to touch them all (`MADV_POPULATE_WRITE` before writing,
/// which allocates missing pages; `MADV_POPULATE_READ` before reading): far cheaper than one page
/// fault per page. Contents do not change. Errors (an older kernel) are ignored: the copy then
/// faults as usual.
pub(crate) fn prefault(region: &[std::sync::atomic::AtomicU8], write: bool) {
    let page = rustix::param::page_size();
    let start = region.as_ptr() as usize;
    let first = start.next_multiple_of(page);
    let end = (start + region.len()) / page * page;
    if end <= first {
        return;
    }
    let advice = if write { rustix::mm::Advice::LinuxPopulateWrite } else { rustix::mm::Advice::LinuxPopulateRead };
    // SAFETY: `first..end` lies inside `region`, memory this process has mapped and borrows for the
    // call; populating changes no byte of it and no mapping, only which pages are resident.
    let _ = unsafe { rustix::mm::madvise(first as *mut std::ffi::c_void, end - first, advice) };
}
