//! [`SharedBytes`]: a fixed-size region of plain bytes inside a shared object, for protocols that
//! hand parts of it from one process to another (the message rings of `connection::ring`).

use std::cell::UnsafeCell;

use super::ShmSafe;

/// `N` bytes in shared memory that several processes map at once. Reading or writing a range is
/// `unsafe`: the protocol that uses the region must give the caller that range to itself (for
/// example, a ring's writer owns the bytes past the published end until it publishes them).
#[repr(C)]
pub(crate) struct SharedBytes<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: plain bytes: no pointers, zero is valid, no drop glue. Every access goes through
// `read`/`write`, whose callers promise that nobody else touches the range meanwhile, so the
// region is shared between threads and processes without data races.
unsafe impl<const N: usize> ShmSafe for SharedBytes<N> {}
// SAFETY: as above: concurrent access is only through the `unsafe` methods and their contract.
unsafe impl<const N: usize> Sync for SharedBytes<N> {}

impl<const N: usize> SharedBytes<N> {
    /// Copies `src` into the region at `offset`.
    ///
    /// # Safety
    ///
    /// While the copy runs, no other thread or process may read or write
    /// `offset..offset + src.len()`. Publishing the bytes to readers is the caller's business (with
    /// a release store after this call).
    pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
        assert!(offset <= N && src.len() <= N - offset, "a shared byte range out of bounds");
        // SAFETY: in bounds (checked above); the caller has the range to itself; `src` cannot
        // overlap the shared region's range, which no reference of this process covers.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.0.get().cast::<u8>().add(offset), src.len()) };
    }
}

// SAFETY: `N` never changes and is a multiple of 8 (checked at compile time in `capacity`);
// `write` and `read` copy exactly the range given and assert that it is in bounds.
unsafe impl<const N: usize> super::record_ring::RingBytes for SharedBytes<N> {
    fn capacity(&self) -> usize {
        const { assert!(N.is_multiple_of(8), "a ring's size is a multiple of 8") };
        N
    }

    unsafe fn write(&self, offset: usize, src: &[u8]) {
        // SAFETY: the trait's contract is `SharedBytes::write`'s.
        unsafe { SharedBytes::write(self, offset, src) }
    }

    unsafe fn read(&self, offset: usize, dst: &mut [std::mem::MaybeUninit<u8>]) {
        assert!(offset <= N && dst.len() <= N - offset, "a shared byte range out of bounds");
        // SAFETY: in bounds (checked above); nobody writes the range meanwhile (the caller's
        // promise); `dst` is this process's own memory, distinct from the region, and any byte
        // may be copied into `MaybeUninit<u8>`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.0.get().cast::<u8>().add(offset),
                dst.as_mut_ptr().cast::<u8>(),
                dst.len(),
            )
        };
    }
}
