//! [`Value`], [`Array`], [`RawValue`], [`RawArray`]: numbers in anonymous shared memory (CPython
//! `multiprocessing.sharedctypes`).
//!
//! Each element is an atomic cell ([`Element::Cell`]: `AtomicI32` for an `i32`, an `AtomicU64`
//! holding the bits of an `f64`), so reading and writing from several processes is never a data
//! race, even without a lock: the raw forms are what CPython's `RawValue` and `RawArray` are, minus
//! the undefined behaviour. The synchronized forms add a lock (an [`RLock`] by default, as in
//! CPython) for updates of several steps (`v += 1`, a whole slice).
//!
//! The memory is an anonymous memory file, like the synchronization primitives': give the object
//! to a child as a [`Process`](crate::Process) argument; it is gone when the last process holding
//! it ends.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
    Ordering,
};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{SharedCells, ShmSafe};
use crate::error::{Error, Result};
use crate::sync::{AcquireResult, Guard, Lock, LockGuard, RLock, RLockGuard};

mod sealed {
    pub trait Sealed {}
}

/// A number that can live in a [`Value`] or an [`Array`]: the types of CPython's typecodes (`b`
/// `i8`, `B`/`c` `u8`, `h` `i16`, `H` `u16`, `i` `i32`, `I` `u32`, `l`/`q` `i64`, `L`/`Q` `u64`, `f`
/// `f32`, `d` `f64`), and `isize`/`usize`. Sealed: each has an atomic cell of its size.
pub trait Element: sealed::Sealed + Copy + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// The atomic cell that holds one element in shared memory.
    type Cell: ShmSafe;
    /// Reads a cell (relaxed: order with a lock, a message or a join).
    fn load(cell: &Self::Cell) -> Self;
    /// Writes a cell (relaxed).
    fn store(cell: &Self::Cell, value: Self);
}

macro_rules! integer_element {
    ($($t:ty => $cell:ty),*) => { $(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            type Cell = $cell;
            #[inline]
            fn load(cell: &$cell) -> $t {
                cell.load(Ordering::Relaxed)
            }
            #[inline]
            fn store(cell: &$cell, value: $t) {
                cell.store(value, Ordering::Relaxed)
            }
        }
    )* };
}

integer_element!(
    i8 => AtomicI8, u8 => AtomicU8, i16 => AtomicI16, u16 => AtomicU16, i32 => AtomicI32, u32 => AtomicU32,
    i64 => AtomicI64, u64 => AtomicU64, isize => AtomicIsize, usize => AtomicUsize
);

macro_rules! float_element {
    ($($t:ty => $cell:ty),*) => { $(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            type Cell = $cell;
            #[inline]
            fn load(cell: &$cell) -> $t {
                <$t>::from_bits(cell.load(Ordering::Relaxed))
            }
            #[inline]
            fn store(cell: &$cell, value: $t) {
                cell.store(value.to_bits(), Ordering::Relaxed)
            }
        }
    )* };
}

float_element!(f32 => AtomicU32, f64 => AtomicU64);

/// Compile-time layout checks: each cell has its element's size and alignment, so an array of
/// cells is laid out as the plain array (what C code or a CPython `ctypes` view of the same memory
/// would expect).
const _: () = {
    use std::mem::{align_of, size_of};
    macro_rules! same_layout {
        ($($t:ty),*) => { $(
            assert!(size_of::<$t>() == size_of::<<$t as Element>::Cell>());
            assert!(align_of::<$t>() <= align_of::<<$t as Element>::Cell>());
        )* };
    }
    same_layout!(i8, u8, i16, u16, i32, u32, i64, u64, isize, usize, f32, f64);
};

/// A lock that can guard a [`Value`] or an [`Array`]: [`RLock`] (the default, as CPython's
/// `lock=True`) or [`Lock`].
pub trait SyncLock: Clone + Serialize + DeserializeOwned + fmt::Debug + Send + Sync + 'static {
    /// The guard that holds the lock.
    type Guard<'a>: Guard;
    /// A new lock.
    fn new_lock() -> Result<Self>;
    /// Waits for the lock.
    fn acquire_guard(&self) -> AcquireResult<Self::Guard<'_>>;
}

impl SyncLock for RLock {
    type Guard<'a> = RLockGuard<'a>;
    fn new_lock() -> Result<Self> {
        RLock::new()
    }
    fn acquire_guard(&self) -> AcquireResult<RLockGuard<'_>> {
        self.acquire()
    }
}

impl SyncLock for Lock {
    type Guard<'a> = LockGuard<'a>;
    fn new_lock() -> Result<Self> {
        Lock::new()
    }
    fn acquire_guard(&self) -> AcquireResult<LockGuard<'_>> {
        self.acquire()
    }
}

/// An array of numbers in shared memory without a lock (CPython `RawArray(typecode, size)`).
///
/// Every element is an atomic cell: [`get`](Self::get) and [`set`](Self::set) are single atomic
/// accesses, [`cells`](Self::cells) gives the atomics themselves (`fetch_add` on an integer
/// counter, compare-and-swap). Operations over several elements are not atomic as a whole: use an
/// [`Array`] for those.
///
/// # Examples
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let numbers = multiproc::RawArray::from_slice(&[1i32, 2, 3, 4, 5])?;
/// numbers.set(2, 9999)?;
/// assert_eq!(numbers.to_vec(), [1, 2, 9999, 4, 5]);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "sharedctypes.RawArray")]
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct RawArray<T: Element> {
    cells: SharedCells<T::Cell>,
}

impl<T: Element> RawArray<T> {
    /// `len` zeros (CPython `RawArray(typecode, len)`).
    pub fn new(len: usize) -> Result<RawArray<T>> {
        Ok(RawArray { cells: SharedCells::new(len)? })
    }

    /// A copy of `values` (CPython `RawArray(typecode, sequence)`).
    pub fn from_slice(values: &[T]) -> Result<RawArray<T>> {
        let array = Self::new(values.len())?;
        array.write_unchecked(0, values);
        Ok(array)
    }

    /// The number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.cells.cells().len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The atomic cells, for operations beyond load and store.
    #[inline]
    pub fn cells(&self) -> &[T::Cell] {
        self.cells.cells()
    }

    /// Element `index` (CPython `arr[index]`).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`].
    #[inline]
    pub fn get(&self, index: usize) -> Result<T> {
        self.cells().get(index).map(T::load).ok_or(Error::IndexOutOfRange { index: index as i64, len: self.len() })
    }

    /// Sets element `index` (CPython `arr[index] = value`).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`].
    #[inline]
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        let cell = self.cells().get(index).ok_or(Error::IndexOutOfRange { index: index as i64, len: self.len() })?;
        T::store(cell, value);
        Ok(())
    }

    /// A copy of `range` (CPython `arr[start:end]`).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if the range does not fit.
    pub fn read(&self, range: std::ops::Range<usize>) -> Result<Vec<T>> {
        let len = self.len();
        let cells = self.cells().get(range.clone()).ok_or(Error::IndexOutOfRange { index: range.end as i64, len })?;
        Ok(cells.iter().map(T::load).collect())
    }

    /// Writes `values` from element `start` on (CPython `arr[start:start + len(values)] = values`).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if they do not fit; nothing is written then.
    #[inline]
    pub fn write(&self, start: usize, values: &[T]) -> Result<()> {
        let end = start.checked_add(values.len()).filter(|&end| end <= self.len());
        if end.is_none() {
            return Err(Error::IndexOutOfRange { index: start.saturating_add(values.len()) as i64, len: self.len() });
        }
        self.write_unchecked(start, values);
        Ok(())
    }

    #[inline]
    fn write_unchecked(&self, start: usize, values: &[T]) {
        for (cell, &value) in self.cells()[start..].iter().zip(values) {
            T::store(cell, value);
        }
    }

    /// A copy of every element (CPython `arr[:]`).
    pub fn to_vec(&self) -> Vec<T> {
        self.cells().iter().map(T::load).collect()
    }

    /// An independent copy in new shared memory (CPython `sharedctypes.copy(obj)`).
    #[doc(alias = "sharedctypes.copy")]
    pub fn copy(&self) -> Result<RawArray<T>> {
        RawArray::from_slice(&self.to_vec())
    }
}

/// `'c'` arrays: a `u8` array holds a C string, as CPython's `Array('c', ...)` does.
impl RawArray<u8> {
    /// The bytes up to the first NUL, or all of them if there is none (CPython `.value` of a
    /// `'c'` array).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let name = multiproc::RawArray::<u8>::new(10)?;
    /// name.set_value(b"hello")?;
    /// assert_eq!(name.value(), b"hello");
    /// assert!(name.set_value(b"far too long").is_err()); // the old value stays
    /// assert_eq!(name.value(), b"hello");
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "c_char")]
    pub fn value(&self) -> Vec<u8> {
        self.cells().iter().map(u8::load).take_while(|&byte| byte != 0).collect()
    }

    /// Stores `value` as a C string (CPython `.value = value`): followed by a NUL when it is
    /// shorter than the array; exactly as long as the array, it fills it without one.
    ///
    /// # Errors
    ///
    /// [`Error::StringTooLong`] if `value` is longer than the array; nothing is written then.
    pub fn set_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.len() {
            return Err(Error::StringTooLong { needed: value.len(), available: self.len() });
        }
        self.write_unchecked(0, value);
        if value.len() < self.len() {
            self.write_unchecked(value.len(), &[0]);
        }
        Ok(())
    }
}

impl<T: Element> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}

/// One number in shared memory without a lock (CPython `RawValue(typecode, value)`): an atomic
/// cell; [`cell`](Self::cell) gives the atomic itself.
///
/// # Examples
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// use std::sync::atomic::Ordering;
///
/// let hits = multiproc::RawValue::new(0u64)?;
/// hits.cell().fetch_add(1, Ordering::Relaxed);
/// assert_eq!(hits.get(), 1);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "sharedctypes.RawValue")]
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct RawValue<T: Element> {
    array: RawArray<T>,
}

impl<T: Element> RawValue<T> {
    /// A new value in shared memory.
    pub fn new(value: T) -> Result<RawValue<T>> {
        Ok(RawValue { array: RawArray::from_slice(&[value])? })
    }

    /// The value (CPython `.value`).
    #[inline]
    pub fn get(&self) -> T {
        T::load(self.cell())
    }

    /// Sets the value (CPython `.value = value`).
    #[inline]
    pub fn set(&self, value: T) {
        T::store(self.cell(), value)
    }

    /// The atomic cell.
    #[inline]
    pub fn cell(&self) -> &T::Cell {
        &self.array.cells()[0]
    }

    /// An independent copy in new shared memory (CPython `sharedctypes.copy(obj)`).
    #[doc(alias = "sharedctypes.copy")]
    pub fn copy(&self) -> Result<RawValue<T>> {
        RawValue::new(self.get())
    }
}

impl<T: Element> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

/// An array of numbers in shared memory with a lock (CPython `Array(typecode, size_or_values)`,
/// `lock=True`): each convenience method takes the lock for its duration, as CPython's `arr[i]`
/// and `arr[a:b]` do; [`acquire`](Self::acquire) holds it over several steps.
///
/// The lock is an [`RLock`] unless another is given ([`with_lock`](Self::with_lock); a
/// [`Lock`] is a little faster). A holder killed inside its critical section gives the next
/// acquirer [`AcquireError::OwnerDied`](crate::sync::AcquireError::OwnerDied) (an
/// [`Error::OwnerDied`] from the convenience methods).
///
/// # Examples
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let num = multiproc::Array::from_slice(&[1i32, 2, 3, 4, 5])?;
/// num.set(2, 9999)?;
/// {
///     let arr = num.acquire()?; // one lock for several steps
///     let doubled: Vec<i32> = arr.to_vec().iter().map(|x| x * 2).collect();
///     arr.write(0, &doubled)?;
/// }
/// assert_eq!(num.to_vec()?, [2, 4, 19998, 8, 10]);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "sharedctypes.Array")]
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Array<T: Element, L: SyncLock = RLock> {
    raw: RawArray<T>,
    lock: L,
}

/// An [`Array`] or a [`Value`] held locked: its raw object's methods run under the lock. Drop it
/// to release.
pub struct ArrayGuard<'a, T: Element, L: SyncLock> {
    raw: &'a RawArray<T>,
    _guard: L::Guard<'a>,
}

impl<T: Element, L: SyncLock> Deref for ArrayGuard<'_, T, L> {
    type Target = RawArray<T>;
    fn deref(&self) -> &RawArray<T> {
        self.raw
    }
}

impl<T: Element, L: SyncLock> fmt::Debug for ArrayGuard<'_, T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(self.raw).finish()
    }
}

impl<T: Element, L: SyncLock> crate::sync::guard_sealed::Sealed for ArrayGuard<'_, T, L> {}

impl<T: Element, L: SyncLock> Guard for ArrayGuard<'_, T, L> {
    fn mark_recovered(&self) {
        self._guard.mark_recovered();
    }
}

/// Acquires `lock` for `raw`.
#[inline]
fn locked<'a, T: Element, L: SyncLock>(raw: &'a RawArray<T>, lock: &'a L) -> AcquireResult<ArrayGuard<'a, T, L>> {
    let wrap = |guard| ArrayGuard { raw, _guard: guard };
    lock.acquire_guard().map(wrap).map_err(|e| e.map_guard(wrap))
}

impl<T: Element> Array<T> {
    /// `len` zeros, with a new [`RLock`] (CPython `Array(typecode, len)`).
    pub fn new(len: usize) -> Result<Array<T>> {
        Self::with_lock(RawArray::new(len)?, RLock::new()?)
    }

    /// A copy of `values`, with a new [`RLock`] (CPython `Array(typecode, values)`).
    pub fn from_slice(values: &[T]) -> Result<Array<T>> {
        Self::with_lock(RawArray::from_slice(values)?, RLock::new()?)
    }
}

impl<T: Element, L: SyncLock> Array<T, L> {
    /// `raw` guarded by `lock` (CPython `Array(..., lock=lock)`, `synchronized(raw, lock)`).
    pub fn with_lock(raw: RawArray<T>, lock: L) -> Result<Array<T, L>> {
        Ok(Array { raw, lock })
    }

    /// The lock (CPython `get_lock()`).
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// The array without its lock (CPython `get_obj()`).
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }

    /// Takes the lock and holds it until the guard is dropped (CPython `with arr.get_lock():`).
    #[inline]
    pub fn acquire(&self) -> AcquireResult<ArrayGuard<'_, T, L>> {
        locked(&self.raw, &self.lock)
    }

    /// The number of elements (no lock needed: it never changes).
    #[inline]
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Element `index`, under the lock.
    #[inline]
    pub fn get(&self, index: usize) -> Result<T> {
        self.acquire()?.get(index)
    }

    /// Sets element `index`, under the lock.
    #[inline]
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.acquire()?.set(index, value)
    }

    /// A copy of `range`, under the lock.
    pub fn read(&self, range: std::ops::Range<usize>) -> Result<Vec<T>> {
        self.acquire()?.read(range)
    }

    /// Writes `values` from `start` on, under the lock.
    #[inline]
    pub fn write(&self, start: usize, values: &[T]) -> Result<()> {
        self.acquire()?.write(start, values)
    }

    /// A copy of every element, under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.acquire()?.to_vec())
    }

    /// An independent copy in new shared memory, with a new lock (CPython
    /// `synchronized(sharedctypes.copy(arr.get_obj()))`).
    #[doc(alias = "sharedctypes.copy")]
    pub fn copy(&self) -> Result<Array<T, L>> {
        Array::with_lock(RawArray::from_slice(&self.to_vec()?)?, L::new_lock()?)
    }
}

/// `'c'` arrays under the lock (see [`RawArray::value`]).
impl<L: SyncLock> Array<u8, L> {
    /// The bytes up to the first NUL, under the lock (CPython `.value` of `Array('c', ...)`).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let greeting = multiproc::Array::<u8>::new(16)?;
    /// greeting.set_value(b"hello")?;
    /// assert_eq!(greeting.value()?, b"hello");
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "SynchronizedString")]
    pub fn value(&self) -> Result<Vec<u8>> {
        Ok(self.acquire()?.value())
    }

    /// Stores `value` as a C string, under the lock (see [`RawArray::set_value`]).
    ///
    /// # Errors
    ///
    /// [`Error::StringTooLong`] if `value` is longer than the array (the old value stays), or
    /// [`Error::OwnerDied`].
    pub fn set_value(&self, value: &[u8]) -> Result<()> {
        self.acquire()?.set_value(value)
    }
}

impl<T: Element, L: SyncLock> fmt::Debug for Array<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("values", &self.raw.to_vec()).field("lock", &self.lock).finish()
    }
}

/// One number in shared memory with a lock (CPython `Value(typecode, value)`, `lock=True`).
///
/// [`get`](Self::get) and [`set`](Self::set) take the lock; [`update`](Self::update) is the Rust
/// form of `with v.get_lock(): v.value += 1`.
///
/// # Examples
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let num = multiproc::Value::new(10.0f64)?;
/// num.set(10.78)?;
/// num.update(|x| x * 2.0)?;
/// assert_eq!(num.get()?, 21.56);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "sharedctypes.Value")]
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Value<T: Element, L: SyncLock = RLock> {
    array: Array<T, L>,
}

/// A [`Value`] held locked; [`get`](Self::get) and [`set`](Self::set) run under the lock.
pub struct ValueGuard<'a, T: Element, L: SyncLock> {
    inner: ArrayGuard<'a, T, L>,
}

impl<T: Element, L: SyncLock> ValueGuard<'_, T, L> {
    /// The value.
    #[inline]
    pub fn get(&self) -> T {
        T::load(&self.inner.cells()[0])
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, value: T) {
        T::store(&self.inner.cells()[0], value)
    }
}

impl<T: Element, L: SyncLock> crate::sync::guard_sealed::Sealed for ValueGuard<'_, T, L> {}

impl<T: Element, L: SyncLock> Guard for ValueGuard<'_, T, L> {
    fn mark_recovered(&self) {
        self.inner.mark_recovered();
    }
}

impl<T: Element, L: SyncLock> fmt::Debug for ValueGuard<'_, T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.get()).finish()
    }
}

impl<T: Element> Value<T> {
    /// A new value with a new [`RLock`] (CPython `Value(typecode, value)`).
    pub fn new(value: T) -> Result<Value<T>> {
        Self::with_lock(RawValue::new(value)?, RLock::new()?)
    }
}

impl<T: Element, L: SyncLock> Value<T, L> {
    /// `raw` guarded by `lock` (CPython `Value(..., lock=lock)`).
    pub fn with_lock(raw: RawValue<T>, lock: L) -> Result<Value<T, L>> {
        Ok(Value { array: Array::with_lock(raw.array, lock)? })
    }

    /// The lock (CPython `get_lock()`).
    pub fn get_lock(&self) -> &L {
        self.array.get_lock()
    }

    /// The value without its lock (CPython `get_obj()`).
    pub fn get_obj(&self) -> RawValue<T> {
        RawValue { array: self.array.raw.clone() }
    }

    /// Takes the lock and holds it until the guard is dropped.
    #[inline]
    pub fn acquire(&self) -> AcquireResult<ValueGuard<'_, T, L>> {
        self.array.acquire().map(|inner| ValueGuard { inner }).map_err(|e| e.map_guard(|inner| ValueGuard { inner }))
    }

    /// The value, under the lock (CPython `.value`).
    pub fn get(&self) -> Result<T> {
        Ok(self.acquire()?.get())
    }

    /// Sets the value, under the lock (CPython `.value = value`).
    #[inline]
    pub fn set(&self, value: T) -> Result<()> {
        self.acquire()?.set(value);
        Ok(())
    }

    /// Replaces the value by `f(value)` under one acquisition of the lock and returns the new value
    /// (CPython `with v.get_lock(): v.value = f(v.value)`).
    pub fn update(&self, f: impl FnOnce(T) -> T) -> Result<T> {
        let guard = self.acquire()?;
        let new = f(guard.get());
        guard.set(new);
        Ok(new)
    }

    /// An independent copy in new shared memory, with a new lock (CPython
    /// `synchronized(sharedctypes.copy(v.get_obj()))`).
    #[doc(alias = "sharedctypes.copy")]
    pub fn copy(&self) -> Result<Value<T, L>> {
        Value::with_lock(RawValue::new(self.get()?)?, L::new_lock()?)
    }
}

impl<T: Element, L: SyncLock> fmt::Debug for Value<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("value", &T::load(&self.array.raw.cells()[0]))
            .field("lock", &self.array.lock)
            .finish()
    }
}

impl<T: Element> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray { cells: self.cells.clone() }
    }
}

impl<T: Element> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue { array: self.array.clone() }
    }
}

impl<T: Element, L: SyncLock> Clone for Array<T, L> {
    fn clone(&self) -> Self {
        Array { raw: self.raw.clone(), lock: self.lock.clone() }
    }
}

impl<T: Element, L: SyncLock> Clone for Value<T, L> {
    fn clone(&self) -> Self {
        Value { array: self.array.clone() }
    }
}
