//! Shared memory (CPython `multiprocessing.shared_memory` and `multiprocessing.sharedctypes`).
//!
//! - [`SharedMemory`] (`named`): a named block in `/dev/shm`, the very object CPython's
//!   `SharedMemory` creates and attaches, with a resource tracker (`tracker`) that unlinks what
//!   crashed creators left behind.
//! - [`ShareableList`] (`shareable_list`): CPython's fixed-length list of mixed items, in its exact
//!   layout, so Rust and Python processes share one list.
//! - [`Value`], [`Array`], [`RawValue`], [`RawArray`] (`sharedctypes`): typed numbers in anonymous
//!   shared memory, with or without a lock, given to children as arguments.
//! - [`SharedStruct`], [`RawStruct`] (`structure`): a `#[repr(C)]` struct of numbers declared with
//!   [`structure!`](crate::structure!) (CPython `Value(Structure)`), a field per atomic cell.
//!
//! Underneath all of them: [`ShmSafe`], what may live in shared memory, and `Shared<T>`, one `T` in
//! an anonymous memory file, which the synchronization primitives use too. And for the crate's
//! other modules: `record_ring`, the ring of records that the pipes (`connection::ring`) and the
//! queues (`queue`) copy their messages through.
//!
//! ## Anonymous shared objects
//!
//! `Shared<T>` puts one `T` in a memory file of its own (`memfd_create`, size sealed) and maps it.
//! The object travels to other processes as its descriptor (inside a value, like any
//! [`Handle`](crate::Handle)); each receiver maps the same memory. The memory goes away when the
//! last process holding the descriptor or a mapping ends, however it ends: nothing is left in
//! `/dev/shm`.
//!
//! ```text
//! offset 0   Header { magic, type_tag, len }  checked by every process that maps the file
//! offset 64  T                                 zero-filled at creation
//! ```
//!
//! `SharedCells<C>` is the same for a run of `len` cells (the storage of [`Value`] and [`Array`]).
//!
//! ## What is never handed out
//!
//! Memory that other processes write is never seen through a plain `&T`, `&[u8]` or `&mut` in
//! safe code: [`ShmSafe`] types mutate through atomics, named blocks are `[AtomicU8]` with copies
//! in relaxed atomic words, the sharedctypes are atomic cells. A reader racing a writer may see a
//! mix of old and new values (as in CPython), never undefined behaviour.
//!
//! Only [`ShmSafe`] types may live there.

#[allow(unsafe_code, reason = "shared-memory internals: a byte region handed over by protocol")]
mod bytes;
#[allow(unsafe_code, reason = "shared-memory internals: records in a ring of shared bytes")]
pub(crate) mod record_ring;

pub(crate) use bytes::SharedBytes;

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, needs_drop, size_of};
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, IoContext, Result};
use crate::sys::{self, Mapping};

#[allow(unsafe_code, reason = "shared-memory internals: atomic words over shared bytes")]
mod atomic_bytes;
#[allow(unsafe_code, reason = "shared-memory internals: the mapping of a named block")]
mod named;
mod shareable_list;
mod sharedctypes;
#[allow(unsafe_code, reason = "shared-memory internals: atomic cells of a struct's fields")]
mod structure;
#[allow(unsafe_code, reason = "shared-memory internals: the tracker's table in shared memory")]
pub(crate) mod tracker;

pub use named::{CreateOptions, SharedMemory};
pub use shareable_list::{Item, ShareableList};
pub use sharedctypes::{Array, ArrayGuard, Element, RawArray, RawValue, SyncLock, Value, ValueGuard};
pub use structure::{RawStruct, SharedStruct, StructFields, Structure};

/// Types that may live in memory shared between processes.
///
/// # Safety
///
/// Implementing this trait promises, for the type and everything it contains:
/// - **no pointers or references** (an address means nothing in another process), and no
///   descriptors or other per-process handles;
/// - **all-zero bytes are a valid value** (shared objects start zero-filled), and a value written
///   by one process of the same binary is valid in another;
/// - **no drop glue** (shared memory is unmapped, never dropped);
/// - **shared mutation only through atomics** (or under a lock the type's users take): every
///   process holds a `&T` at the same time.
///
/// Layout is checked when a shared object is created: `T` must need no drop and be aligned to
/// at most 64 bytes.
#[allow(unsafe_code, reason = "the marker of what may live in shared memory is an unsafe promise")]
pub unsafe trait ShmSafe: Send + Sync + 'static {}

macro_rules! shm_safe {
    ($($t:ty),*) => { $(
        #[allow(unsafe_code, reason = "the ShmSafe promise for numbers and atomics")]
        // SAFETY: a plain integer, float or atomic: no pointers, zero is valid, no drop glue,
        // atomics mutate through `&self`, plain numbers are only read through `&T`.
        unsafe impl ShmSafe for $t {}
    )* };
}

shm_safe!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, usize, isize);
shm_safe!(AtomicU8, AtomicU32, AtomicU64, AtomicI32, AtomicI64, AtomicUsize);
shm_safe!(AtomicI8, AtomicU16, AtomicI16, AtomicIsize);

#[allow(unsafe_code, reason = "the ShmSafe promise for arrays")]
// SAFETY: an array of `ShmSafe` elements keeps every property of its elements.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

/// Where `T` starts in its memory file (after the header, aligned for anything `ShmSafe`).
const OBJECT_OFFSET: usize = 64;

/// "multipro" in ASCII: marks a memory file made by this crate.
const MAGIC: u64 = u64::from_le_bytes(*b"multipro");

#[repr(C)]
struct Header {
    magic: AtomicU64,
    type_tag: AtomicU64,
    /// The number of elements, for a [`SharedCells`] (unused by [`Shared`]).
    len: AtomicU64,
}

/// Compile-time layout checks for `T` (evaluated when `Shared<T>` is used).
struct Layout<T>(PhantomData<T>);

impl<T> Layout<T> {
    const CHECKED: () = {
        assert!(!needs_drop::<T>(), "a type in shared memory must not need drop");
        assert!(align_of::<T>() <= OBJECT_OFFSET, "a type in shared memory must be aligned to at most 64 bytes");
    };
}

/// Identifies `T` (its name, size and alignment) in the header, so that a descriptor of another
/// kind of object is refused instead of misread.
fn type_tag<T>() -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let name = std::any::type_name::<T>().bytes();
    let shape = (size_of::<T>() as u64).to_le_bytes().into_iter().chain((align_of::<T>() as u64).to_le_bytes());
    for byte in name.chain(shape) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// One `T` in shared memory, mapped in this process. Cloning shares the same mapping.
pub(crate) struct Shared<T: ShmSafe> {
    mapping: Arc<Mapping>,
    fd: Arc<OwnedFd>,
    object: PhantomData<T>,
}

impl<T: ShmSafe> Shared<T> {
    /// A new zero-filled `T` in a memory file of its own.
    pub(crate) fn new() -> Result<Self> {
        let () = Layout::<T>::CHECKED;
        let len = OBJECT_OFFSET + size_of::<T>();
        let fd = sys::memfd_sealed("multiproc", len).context("create shared memory")?;
        let mapping = Mapping::new(fd.as_fd(), len).context("map shared memory")?;
        let shared: Self = Shared { mapping: Arc::new(mapping), fd: Arc::new(fd), object: PhantomData };
        let header = shared.header();
        header.type_tag.store(type_tag::<T>(), std::sync::atomic::Ordering::Relaxed);
        header.magic.store(MAGIC, std::sync::atomic::Ordering::Release);
        Ok(shared)
    }

    /// Maps a memory file received from another process, checking that it holds a `T`.
    fn attach(fd: OwnedFd) -> Result<Self> {
        let () = Layout::<T>::CHECKED;
        let len = OBJECT_OFFSET + size_of::<T>();
        let size = sys::sealed_size(fd.as_fd()).context("inspect shared memory")?;
        match size {
            Some(size) if size >= len => {}
            _ => return Err(not_a::<T>("a memory file of another size, or not sealed")),
        }
        let mapping = Mapping::new(fd.as_fd(), len).context("map shared memory")?;
        let shared: Self = Shared { mapping: Arc::new(mapping), fd: Arc::new(fd), object: PhantomData };
        let header = shared.header();
        if header.magic.load(std::sync::atomic::Ordering::Acquire) != MAGIC {
            return Err(not_a::<T>("no multiproc header"));
        }
        if header.type_tag.load(std::sync::atomic::Ordering::Relaxed) != type_tag::<T>() {
            return Err(not_a::<T>("an object of another type"));
        }
        Ok(shared)
    }

    #[allow(unsafe_code, reason = "the header at the start of the mapping")]
    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with `OBJECT_OFFSET` (≥ size_of::<Header>()) bytes reserved
        // for the header, page-aligned, zero-filled at creation (a valid `Header`: two atomics),
        // and mapped as long as `self` holds the `Arc<Mapping>`.
        unsafe { self.mapping.as_ptr().cast::<Header>().as_ref() }
    }
}

fn not_a<T: ?Sized>(what: &str) -> Error {
    Error::InvalidState(format!(
        "the shared object received is not a {}: {what}; were sender and receiver built from the same program?",
        std::any::type_name::<T>()
    ))
}

impl<T: ShmSafe> Deref for Shared<T> {
    type Target = T;

    #[allow(unsafe_code, reason = "the object after the header")]
    fn deref(&self) -> &T {
        // SAFETY: the mapping holds `OBJECT_OFFSET + size_of::<T>()` bytes (checked at creation and
        // attachment); the offset is a multiple of 64 from a page-aligned start, so aligned for `T`
        // (checked by `Layout`); the bytes hold a valid `T` (zero-filled at creation, then only
        // changed through `&T`, which `ShmSafe` makes sound); the mapping lives as long as `self`.
        unsafe { self.mapping.as_ptr().add(OBJECT_OFFSET).cast::<T>().as_ref() }
    }
}

impl<T: ShmSafe> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared { mapping: Arc::clone(&self.mapping), fd: Arc::clone(&self.fd), object: PhantomData }
    }
}

impl<T: ShmSafe> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("type", &std::any::type_name::<T>()).field("fd", &self.fd).finish()
    }
}

impl<T: ShmSafe> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        crate::handle::serialize(&*self.fd, serializer)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let fd: OwnedFd = crate::handle::deserialize(deserializer)?;
        Shared::attach(fd).map_err(crate::reduction::decode_failure)
    }
}

/// A run of `len` cells of `C` in a memory file of its own (the storage of the sharedctypes):
/// the same header as [`Shared`], with the length, then the cells. Cloning shares the mapping.
pub(crate) struct SharedCells<C: ShmSafe> {
    mapping: Arc<Mapping>,
    fd: Arc<OwnedFd>,
    len: usize,
    cells: PhantomData<C>,
}

impl<C: ShmSafe> SharedCells<C> {
    /// `len` zero-filled cells.
    pub(crate) fn new(len: usize) -> Result<Self> {
        let () = Layout::<C>::CHECKED;
        let bytes = size_of::<C>().checked_mul(len).and_then(|b| b.checked_add(OBJECT_OFFSET));
        let bytes = bytes.ok_or_else(|| Error::InvalidState(format!("{len} elements do not fit in memory")))?;
        let fd = sys::memfd_sealed("multiproc-array", bytes).context("create shared memory")?;
        let mapping = Mapping::new(fd.as_fd(), bytes).context("map shared memory")?;
        let cells: Self = SharedCells { mapping: Arc::new(mapping), fd: Arc::new(fd), len, cells: PhantomData };
        let header = cells.header();
        header.type_tag.store(type_tag::<[C; 0]>(), std::sync::atomic::Ordering::Relaxed);
        header.len.store(len as u64, std::sync::atomic::Ordering::Relaxed);
        header.magic.store(MAGIC, std::sync::atomic::Ordering::Release);
        Ok(cells)
    }

    /// Maps a memory file received from another process, checking that it holds cells of `C`.
    fn attach(fd: OwnedFd) -> Result<Self> {
        let () = Layout::<C>::CHECKED;
        let size = match sys::sealed_size(fd.as_fd()).context("inspect shared memory")? {
            Some(size) if size >= OBJECT_OFFSET => size,
            _ => return Err(not_a::<[C]>("a memory file of another size, or not sealed")),
        };
        let mapping = Mapping::new(fd.as_fd(), size).context("map shared memory")?;
        let mut cells: Self = SharedCells { mapping: Arc::new(mapping), fd: Arc::new(fd), len: 0, cells: PhantomData };
        let header = cells.header();
        if header.magic.load(std::sync::atomic::Ordering::Acquire) != MAGIC {
            return Err(not_a::<[C]>("no multiproc header"));
        }
        if header.type_tag.load(std::sync::atomic::Ordering::Relaxed) != type_tag::<[C; 0]>() {
            return Err(not_a::<[C]>("an object of another type"));
        }
        let len = usize::try_from(header.len.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(usize::MAX);
        if len.checked_mul(size_of::<C>()).and_then(|b| b.checked_add(OBJECT_OFFSET)).is_none_or(|b| b > size) {
            return Err(not_a::<[C]>("a length past the end of the memory file"));
        }
        cells.len = len;
        Ok(cells)
    }

    #[allow(unsafe_code, reason = "the header at the start of the mapping")]
    fn header(&self) -> &Header {
        // SAFETY: as in `Shared::header`: the first `OBJECT_OFFSET` bytes are the header, valid
        // when zero, mapped while `self` holds the `Arc<Mapping>`.
        unsafe { self.mapping.as_ptr().cast::<Header>().as_ref() }
    }

    /// The cells.
    #[inline]
    #[allow(unsafe_code, reason = "the cells after the header")]
    pub(crate) fn cells(&self) -> &[C] {
        // SAFETY: the mapping holds `OBJECT_OFFSET + len * size_of::<C>()` bytes (checked at
        // creation and attachment), aligned for `C` (page-aligned start, 64-byte offset, checked
        // by `Layout`), valid `C`s (zero-filled, then only changed through `&C`, which `ShmSafe`
        // makes sound), mapped as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.mapping.as_ptr().add(OBJECT_OFFSET).cast::<C>().as_ptr(), self.len) }
    }
}

impl<C: ShmSafe> Clone for SharedCells<C> {
    fn clone(&self) -> Self {
        SharedCells { mapping: Arc::clone(&self.mapping), fd: Arc::clone(&self.fd), len: self.len, cells: PhantomData }
    }
}

impl<C: ShmSafe> fmt::Debug for SharedCells<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCells").field("type", &std::any::type_name::<C>()).field("len", &self.len).finish()
    }
}

impl<C: ShmSafe> Serialize for SharedCells<C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        crate::handle::serialize(&*self.fd, serializer)
    }
}

impl<'de, C: ShmSafe> Deserialize<'de> for SharedCells<C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let fd: OwnedFd = crate::handle::deserialize(deserializer)?;
        SharedCells::attach(fd).map_err(crate::reduction::decode_failure)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::reduction;

    /// Sends a value through the crate's codec, as a process argument would travel.
    fn travel<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> Result<T> {
        reduction::decode(reduction::encode(value)?)
    }

    #[test]
    fn a_second_mapping_sees_the_same_memory() {
        let counter: Shared<AtomicU64> = Shared::new().unwrap();
        assert_eq!(counter.load(Ordering::SeqCst), 0);
        let other = travel(&counter).unwrap();
        other.fetch_add(5, Ordering::SeqCst);
        assert_eq!(counter.load(Ordering::SeqCst), 5);
        assert_ne!(counter.mapping.as_ptr(), other.mapping.as_ptr());
    }

    #[test]
    fn another_type_is_refused() {
        let counter: Shared<[AtomicU32; 4]> = Shared::new().unwrap();
        let wrong: Result<Shared<[AtomicU64; 2]>> = reduction::decode(reduction::encode(&counter).unwrap());
        let message = wrong.unwrap_err().to_string();
        assert!(message.contains("not a"), "{message}");
    }

    #[test]
    fn foreign_descriptors_are_refused() {
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let encoded = reduction::encode(&crate::Handle::new(file)).unwrap();
        let refused: Result<Shared<AtomicU32>> = reduction::decode(encoded);
        assert!(refused.is_err());
    }
}
