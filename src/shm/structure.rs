//! [`SharedStruct`], [`RawStruct`]: one `#[repr(C)]` struct of numbers in anonymous shared memory
//! (CPython `Value(Structure)` and `RawValue(Structure)`), declared with
//! [`structure!`](crate::structure!).
//!
//! The struct is stored in its C layout, but never as a plain `T` that processes read and write at
//! once: each field is an atomic cell at the field's offset (as in [`RawArray`](super::RawArray)),
//! so a racing reader sees a mix of old and new fields, never undefined behaviour; padding bytes
//! are never touched. [`structure!`](crate::structure!) writes the field-by-field accessors and
//! checks at compile time that every field is an [`Element`] aligned for its atomic cell.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::sync::atomic::AtomicU8;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sharedctypes::{Element, SyncLock};
use super::{SharedCells, ShmSafe};
use crate::error::Result;
use crate::sync::RLock;

/// A `#[repr(C)]` struct of numbers that can live in a [`SharedStruct`] or a [`RawStruct`] (CPython
/// `ctypes.Structure`). Implement it with [`structure!`](crate::structure!), which declares the
/// struct and writes these methods (a field at a time, at the field's offset).
#[doc(alias = "ctypes.Structure")]
pub trait Structure: Copy + Send + Sync + 'static {
    /// Writes every field into `fields`.
    #[doc(hidden)]
    fn store_fields(&self, fields: &StructFields<'_>);
    /// Reads every field from `fields`.
    #[doc(hidden)]
    fn load_fields(fields: &StructFields<'_>) -> Self;
}

/// Declares a `#[repr(C)]` struct of numbers ([`Element`] fields: `i32`, `f64`, ...) that can live
/// in shared memory as a [`SharedStruct`] or a [`RawStruct`] (CPython
/// `class Point(Structure): _fields_ = [...]`). The macro adds `#[repr(C)]` and
/// `#[derive(Clone, Copy)]`; put other attributes (derives, docs) before `struct`.
///
/// ```
/// multiproc::structure! {
///     #[derive(Debug, PartialEq)]
///     pub struct Point { pub x: i32, pub y: f64, pub z: i64 }
/// }
/// # fn main() -> multiproc::Result<()> {
/// let point = multiproc::SharedStruct::new(Point { x: 1, y: 2.5, z: 3 })?;
/// point.update(|p| Point { x: p.x * 2, ..p })?;
/// assert_eq!(point.get()?, Point { x: 2, y: 2.5, z: 3 });
/// # Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! structure {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy)]
        $vis struct $name { $($fvis $field: $ty),* }

        const _: () = { $(
            assert!(
                ::std::mem::offset_of!($name, $field)
                    % ::std::mem::align_of::<<$ty as $crate::shm::Element>::Cell>() == 0,
                "a field is not aligned for its atomic cell"
            );
        )* };

        impl $crate::shm::Structure for $name {
            fn store_fields(&self, fields: &$crate::shm::StructFields<'_>) {
                $(fields.store::<$ty>(::std::mem::offset_of!($name, $field), self.$field);)*
            }
            fn load_fields(fields: &$crate::shm::StructFields<'_>) -> Self {
                $name { $($field: fields.load::<$ty>(::std::mem::offset_of!($name, $field))),* }
            }
        }
    };
}

/// The bytes of one struct in shared memory, read and written a field at a time (used by the
/// code [`structure!`](crate::structure!) writes).
#[doc(hidden)]
#[derive(Debug)]
pub struct StructFields<'a> {
    bytes: &'a [AtomicU8],
}

impl StructFields<'_> {
    /// The atomic cell of an `F` at `offset`. The bounds and alignment checks cannot fail for the
    /// code [`structure!`](crate::structure!) writes (offsets from `offset_of!`, alignment checked
    /// at compile time, the struct at a 64-byte boundary).
    fn cell<F: Element>(&self, offset: usize) -> &F::Cell {
        let bytes = &self.bytes[offset..offset + size_of::<F::Cell>()];
        let cell = bytes.as_ptr().cast::<F::Cell>();
        assert!(cell.is_aligned(), "a structure field is not aligned for its atomic cell");
        // SAFETY: in bounds and aligned (checked above), alive as long as `self.bytes`; the cells
        // are integer atomics, valid for every bit pattern; every access to these bytes is atomic,
        // so seeing them as a wider atomic adds no non-atomic access.
        unsafe { &*cell }
    }

    /// Reads the `F` at `offset`.
    pub fn load<F: Element>(&self, offset: usize) -> F {
        F::load(self.cell::<F>(offset))
    }

    /// Writes the `F` at `offset`.
    pub fn store<F: Element>(&self, offset: usize, value: F) {
        F::store(self.cell::<F>(offset), value)
    }
}

/// One byte of a `T` in shared memory: the cell type of a [`RawStruct`]'s memory file, named after
/// `T` so that a file holding another struct is refused.
#[repr(transparent)]
pub(crate) struct StructByte<T>(AtomicU8, PhantomData<fn() -> T>);

// SAFETY: an atomic byte: no pointers, zero is valid, no drop glue, mutated only atomically.
unsafe impl<T: 'static> ShmSafe for StructByte<T> {}

/// A [`Structure`] in shared memory without a lock (CPython `RawValue(StructureType, ...)`).
///
/// [`get`](Self::get) and [`set`](Self::set) read and write a field at a time: a reader racing a
/// writer may see some fields old and some new. Use a [`SharedStruct`] to read and write it whole.
#[doc(alias = "sharedctypes.RawValue")]
pub struct RawStruct<T: Structure> {
    cells: SharedCells<StructByte<T>>,
}

impl<T: Structure> RawStruct<T> {
    const CHECKED: () =
        assert!(align_of::<T>() <= 64, "a structure in shared memory must be aligned to at most 64 bytes");

    /// `value` in new shared memory.
    pub fn new(value: T) -> Result<RawStruct<T>> {
        let () = Self::CHECKED;
        let raw = RawStruct { cells: SharedCells::new(size_of::<T>())? };
        raw.set(value);
        Ok(raw)
    }

    fn fields(&self) -> StructFields<'_> {
        let cells = self.cells.cells();
        // SAFETY: `StructByte<T>` is a transparent `AtomicU8`; same length, same lifetime.
        let bytes = unsafe { std::slice::from_raw_parts(cells.as_ptr().cast::<AtomicU8>(), cells.len()) };
        StructFields { bytes }
    }

    /// The value (CPython `.x`, `.y`, ... read one by one).
    pub fn get(&self) -> T {
        T::load_fields(&self.fields())
    }

    /// Sets the value (field by field).
    pub fn set(&self, value: T) {
        value.store_fields(&self.fields())
    }

    /// An independent copy in new shared memory (CPython `sharedctypes.copy(obj)`).
    #[doc(alias = "sharedctypes.copy")]
    pub fn copy(&self) -> Result<RawStruct<T>> {
        RawStruct::new(self.get())
    }
}

impl<T: Structure> Clone for RawStruct<T> {
    fn clone(&self) -> Self {
        RawStruct { cells: self.cells.clone() }
    }
}

impl<T: Structure + fmt::Debug> fmt::Debug for RawStruct<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawStruct").field(&self.get()).finish()
    }
}

impl<T: Structure> Serialize for RawStruct<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.cells.serialize(serializer)
    }
}

impl<'de, T: Structure> Deserialize<'de> for RawStruct<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let () = Self::CHECKED;
        let cells = SharedCells::<StructByte<T>>::deserialize(deserializer)?;
        if cells.cells().len() != size_of::<T>() {
            return Err(serde::de::Error::custom(format!(
                "the shared {} received has another size; were sender and receiver built from the same program?",
                std::any::type_name::<T>()
            )));
        }
        Ok(RawStruct { cells })
    }
}

/// A [`Structure`] in shared memory with a lock (CPython `Value(StructureType, ...)`, `lock=True`):
/// [`get`](Self::get), [`set`](Self::set) and [`update`](Self::update) read and write it whole
/// under the lock. The lock is an [`RLock`] unless another is given
/// ([`with_lock`](Self::with_lock)).
///
/// No reference into the shared struct is handed out: `get` returns a copy.
///
/// ```
/// multiproc::structure! {
///     struct Range { start: u32, end: u32 }
/// }
/// # fn main() -> multiproc::Result<()> {
/// let range = multiproc::SharedStruct::new(Range { start: 0, end: 10 })?;
/// range.update(|r| Range { start: r.start + 1, ..r })?;
/// assert_eq!(range.get()?.start, 1);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "sharedctypes.Value")]
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SharedStruct<T: Structure, L: SyncLock = RLock> {
    raw: RawStruct<T>,
    lock: L,
}

impl<T: Structure> SharedStruct<T> {
    /// `value` in new shared memory, with a new [`RLock`].
    pub fn new(value: T) -> Result<SharedStruct<T>> {
        Self::with_lock(RawStruct::new(value)?, RLock::new()?)
    }
}

impl<T: Structure, L: SyncLock> SharedStruct<T, L> {
    /// `raw` guarded by `lock` (CPython `Value(..., lock=lock)`, `synchronized(raw, lock)`).
    pub fn with_lock(raw: RawStruct<T>, lock: L) -> Result<SharedStruct<T, L>> {
        Ok(SharedStruct { raw, lock })
    }

    /// The lock (CPython `get_lock()`).
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// The struct without its lock (CPython `get_obj()`).
    pub fn get_obj(&self) -> RawStruct<T> {
        self.raw.clone()
    }

    /// The value, read whole under the lock.
    pub fn get(&self) -> Result<T> {
        let _guard = self.lock.acquire_guard()?;
        Ok(self.raw.get())
    }

    /// Sets the value, written whole under the lock.
    pub fn set(&self, value: T) -> Result<()> {
        let _guard = self.lock.acquire_guard()?;
        self.raw.set(value);
        Ok(())
    }

    /// Replaces the value by `f(value)` under one acquisition of the lock and returns the new
    /// value.
    pub fn update(&self, f: impl FnOnce(T) -> T) -> Result<T> {
        let _guard = self.lock.acquire_guard()?;
        let new = f(self.raw.get());
        self.raw.set(new);
        Ok(new)
    }

    /// An independent copy in new shared memory, with a new lock (CPython
    /// `synchronized(sharedctypes.copy(obj.get_obj()))`).
    #[doc(alias = "sharedctypes.copy")]
    pub fn copy(&self) -> Result<SharedStruct<T, L>> {
        SharedStruct::with_lock(RawStruct::new(self.get()?)?, L::new_lock()?)
    }
}

impl<T: Structure, L: SyncLock> Clone for SharedStruct<T, L> {
    fn clone(&self) -> Self {
        SharedStruct { raw: self.raw.clone(), lock: self.lock.clone() }
    }
}

impl<T: Structure + fmt::Debug, L: SyncLock> fmt::Debug for SharedStruct<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStruct").field("value", &self.raw.get()).field("lock", &self.lock).finish()
    }
}
