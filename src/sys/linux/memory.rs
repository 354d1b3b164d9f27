//! Shared memory: anonymous memory files (`memfd_create(2)`) mapped `MAP_SHARED`, and futexes on
//! words inside them.
//!
//! An anonymous memory file has no name: it exists while some process holds its descriptor or a
//! mapping of it, and disappears with the last one, whatever way the processes end (`SIGKILL`
//! included). Processes share it by passing the descriptor. Its size is sealed once set, so no
//! holder can shrink it under another's mapping (which would turn accesses into `SIGBUS`).

#![cfg_attr(loom, allow(dead_code))]

use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
use rustix::io;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;

/// Creates an anonymous memory file of `len` bytes (zero-filled), its size sealed.
pub(crate) fn memfd_sealed(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// Creates an empty anonymous memory file that writes (`pwrite(2)`) extend, to be sealed with
/// [`seal_size`] once written.
pub(crate) fn memfd_unsealed(name: &str) -> io::Result<OwnedFd> {
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
}

/// Seals the size of a memory file made by [`memfd_unsealed`]: it can no longer grow or shrink,
/// and no further seal can be added (what [`sealed_size`] checks on the receiving side).
pub(crate) fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
}

/// Whether `fd` is a memory file whose size can no longer change, and its size.
pub(crate) fn sealed_size(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    let seals = rustix::fs::fcntl_get_seals(fd)?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
        return Ok(None);
    }
    let size = rustix::fs::fstat(fd)?.st_size;
    Ok(usize::try_from(size).ok())
}

/// Creates an anonymous memory file of `len` bytes (zero-filled) that may grow but never shrink:
/// mappings of its first `len` bytes stay valid whatever its holders do, and writes beyond them
/// (`pwrite(2)`) extend it.
pub(crate) fn memfd_growable(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::SEAL)?;
    Ok(fd)
}

/// Whether `fd` is a memory file that can no longer shrink (so a mapping of its current size stays
/// valid), and its size now.
pub(crate) fn unshrinkable_size(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    let seals = rustix::fs::fcntl_get_seals(fd)?;
    if !seals.contains(SealFlags::SHRINK) {
        return Ok(None);
    }
    let size = rustix::fs::fstat(fd)?.st_size;
    Ok(usize::try_from(size).ok())
}

/// Writes all of `parts`, one after the other, into the file `fd` from `offset` on (`pwritev(2)`,
/// repeated until done).
pub(crate) fn write_all_vectored_at(fd: BorrowedFd<'_>, parts: &[&[u8]], mut offset: u64) -> io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> = parts.iter().map(|part| std::io::IoSlice::new(part)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match rustix::io::pwritev(fd, slices, offset) {
            Ok(0) => return Err(io::Errno::NOSPC),
            Ok(n) => {
                std::io::IoSlice::advance_slices(&mut slices, n);
                offset += n as u64;
            }
            Err(io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads from the file `fd` at `offset` into `buf` until it is full or the file ends
/// (`pread(2)`, repeated): the bytes read.
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], mut offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], offset) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                offset += n as u64;
            }
            Err(io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Gives the memory behind `len` bytes of the memory file `fd` from `offset` back to the system
/// (the range reads as zeros afterwards; its size does not change). Pages partly in the range are
/// zeroed, not freed.
pub(crate) fn release_range(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    rustix::fs::fallocate(fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)
}

/// Writes all of `bytes` into the file `fd` from `offset` on (`pwrite(2)`, repeated until done).
pub(crate) fn write_all_at(fd: BorrowedFd<'_>, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::pwrite(fd, bytes, offset) {
            Ok(0) => return Err(io::Errno::NOSPC),
            Ok(n) => {
                bytes = &bytes[n..];
                offset += n as u64;
            }
            Err(io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A `MAP_SHARED`, read-write mapping of a whole memory file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is plain memory; what may be done with its bytes from several threads is
// decided by the types that live in it (see `shm::ShmSafe`), not by the mapping itself.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out the base pointer.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, which must be a memory file at least that large whose
    /// size cannot shrink (see [`memfd_sealed`] and [`sealed_size`]).
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Errno::INVAL);
        }
        // SAFETY: a null hint lets the kernel choose a fresh range, so no existing memory is
        // replaced; the result is checked below.
        let ptr = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0)?
        };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(io::Errno::NOMEM)?;
        Ok(Mapping { ptr, len })
    }

    /// The start of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the range `mmap` returned, mapped once; nothing
        // borrowed from it outlives the mapping (its users hold the mapping through an `Arc`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Private, anonymous, read-write pages that read as zeros until written: the kernel backs each
/// page at its first touch, so a large scratch buffer of which most uses write a few bytes costs
/// the pages those bytes land in (a `Vec` zero-filled to the same size faults in every page at
/// once). Unmapped on drop.
#[derive(Debug)]
pub(crate) struct ZeroedPages {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the pages are owned by this value alone (a private mapping nobody else knows); moving
// it to another thread moves that ownership.
unsafe impl Send for ZeroedPages {}

impl ZeroedPages {
    /// Maps `len` bytes (more than 0) of zero pages.
    ///
    /// # Errors
    /// `EINVAL` for a length of 0; the kernel's error when it has no room (`ENOMEM`).
    pub(crate) fn new(len: usize) -> io::Result<ZeroedPages> {
        if len == 0 {
            return Err(io::Errno::INVAL);
        }
        // SAFETY: a null hint lets the kernel choose a fresh range, so no existing memory is
        // replaced; the result is checked below.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(io::Errno::NOMEM)?;
        Ok(ZeroedPages { ptr, len })
    }

    /// The bytes, writable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is the start of a readable, writable mapping of `len` bytes (len > 0), all
        // initialized (an anonymous mapping reads as zeros where nothing was written), owned by
        // `self` and borrowed mutably for the slice's life.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for ZeroedPages {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the range `mmap` returned, mapped once; no slice
        // of it outlives `self` (they borrow it).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// How a futex wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken, or the word no longer held the expected value, or a signal: look again.
    Retry,
    /// The timeout passed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, at most `timeout` (`None`: no limit). Shared futex: the
/// word may live in memory shared with other processes.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWait {
    let ts = timeout.map(|t| futex::Timespec { tv_sec: t.as_secs() as i64, tv_nsec: i64::from(t.subsec_nanos()) });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Err(io::Errno::TIMEDOUT) => FutexWait::TimedOut,
        _ => FutexWait::Retry,
    }
}

/// Wakes up to `count` waiters on `word` (in any process); returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) -> usize {
    // The kernel reads the count as a signed int: cap it, or "all" (u32::MAX) would read as -1.
    futex::wake(word, futex::Flags::empty(), count.min(i32::MAX as u32)).unwrap_or(0)
}

/// Asks for the cache line at `ptr` in the state that allows writing it (`prefetchw`), ahead of
/// the stores that will need it: a hint, which loads nothing and never faults.
#[inline(always)]
pub(crate) fn prefetch_for_write(ptr: *const u8) {
    // Not `_mm_prefetch` with `_MM_HINT_ET0`: without the `prfchw` target feature (not in the
    // x86_64 baseline) it compiles to `prefetcht0`, a prefetch for reading.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetchw` is a hint: it reads and writes no memory architecturally, faults on no
    // address (any pointer, even a dangling or null one, is fine), changes no register or flag,
    // and runs as a no-op on processors without it (its opcode, 0F 0D, is in the hint space).
    unsafe {
        std::arch::asm!("prefetchw [{0}]", in(reg) ptr, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn zeroed_pages_read_as_zeros_keep_what_is_written_and_refuse_no_length() {
        assert_eq!(ZeroedPages::new(0).unwrap_err(), io::Errno::INVAL);
        let mut pages = ZeroedPages::new(64 * 1024 + 1).unwrap();
        let bytes = pages.as_mut_slice();
        assert_eq!(bytes.len(), 64 * 1024 + 1);
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[0] = 1;
        bytes[64 * 1024] = 2;
        assert_eq!((pages.as_mut_slice()[0], pages.as_mut_slice()[64 * 1024]), (1, 2));
    }
}
