//! The built-in managed types of CPython's `SyncManager`, as typed proxies.
//!
//! Each proxy is generic over the serde types it holds; [`Value`](super::Value) holds values of
//! mixed types (seed 003's `d[1] = '1'; d['2'] = 2; d[0.25] = None`). Every call is one round trip
//! to the server; calls that wait (a queue's `get`, a lock's `acquire`) wait in the server.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::objects::python::key_of;
use super::objects::slice_value;
use super::protocol::Slice;
use super::proxy::ObjectProxy;
use crate::error::{Error, Result};
use crate::pickle::PickleValue;

/// Declares a typed proxy: a wrapper of [`ObjectProxy`] with serde, `Clone`, `Debug` and the
/// conversion the generic code needs.
macro_rules! typed_proxy {
    ($(#[$meta:meta])* $name:ident $(<$($t:ident),+>)?) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name $(<$($t),+>)? {
            proxy: ObjectProxy,
            #[serde(skip)]
            types: PhantomData<fn() -> ($($($t,)+)?)>,
        }

        impl $(<$($t),+>)? From<ObjectProxy> for $name $(<$($t),+>)? {
            fn from(proxy: ObjectProxy) -> Self {
                Self { proxy, types: PhantomData }
            }
        }

        impl $(<$($t),+>)? Clone for $name $(<$($t),+>)? {
            /// A second proxy for the same object, with its own connection.
            fn clone(&self) -> Self {
                Self { proxy: self.proxy.clone(), types: PhantomData }
            }
        }

        impl $(<$($t),+>)? fmt::Debug for $name $(<$($t),+>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.proxy).finish()
            }
        }

        impl $(<$($t),+>)? $name $(<$($t),+>)? {
            /// The untyped proxy underneath.
            pub fn object(&self) -> &ObjectProxy {
                &self.proxy
            }
        }
    };
}

/// Calls `method`; the Python exception `class` becomes `error`, other failures
/// [`Error::Remote`].
fn call_or<A: Serialize + ?Sized, R: DeserializeOwned>(
    proxy: &ObjectProxy,
    method: &str,
    args: &A,
    class: &str,
    error: impl FnOnce() -> Error,
) -> Result<R> {
    match proxy.invoke(method, args)? {
        Ok(bytes) => crate::pickle::from_slice(&bytes),
        Err(failure) if failure.is(class) => Err(error()),
        Err(failure) => Err(failure.into()),
    }
}

/// Calls `method`: `Ok(None)` when it raised the Python exception `class`.
fn call_unless<A: Serialize + ?Sized, R: DeserializeOwned>(
    proxy: &ObjectProxy,
    method: &str,
    args: &A,
    class: &str,
) -> Result<Option<R>> {
    match proxy.invoke(method, args)? {
        Ok(bytes) => crate::pickle::from_slice(&bytes).map(Some),
        Err(failure) if failure.is(class) => Ok(None),
        Err(failure) => Err(Error::from(failure)),
    }
}

/// Items as a tuple's one argument (a list for Python).
fn items_arg<'a, T: Serialize + 'a>(items: impl IntoIterator<Item = &'a T>) -> Vec<&'a T> {
    items.into_iter().collect()
}

/// A timeout as Python's seconds.
fn seconds(timeout: Duration) -> f64 {
    timeout.as_secs_f64()
}

typed_proxy!(
    /// A dict in the manager (CPython `manager.dict()`), keeping insertion order.
    ///
    /// Keys are compared by their encoded bytes: equal values of one type are equal keys.
    #[doc(alias = "dict")]
    DictProxy<K, V>
);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// The value for `key` (CPython `d.get(key)`; `d[key]` is `get(..)?.ok_or(..)`).
    #[doc(alias = "__getitem__")]
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        call_unless(&self.proxy, "__getitem__", &(key,), "KeyError")
    }

    /// Sets `key` to `value` (CPython `d[key] = value`).
    #[doc(alias = "__setitem__")]
    pub fn insert(&self, key: &K, value: &V) -> Result<()> {
        self.proxy.call("__setitem__", &(key, value))
    }

    /// The value for `key`, inserting `default` first if there is none (CPython `setdefault`).
    #[doc(alias = "setdefault")]
    pub fn set_default(&self, key: &K, default: &V) -> Result<V> {
        self.proxy.call("setdefault", &(key, default))
    }

    /// Removes `key`, returning its value (CPython `d.pop(key, None)`; `del d[key]`).
    #[doc(alias = "pop")]
    #[doc(alias = "__delitem__")]
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        call_unless(&self.proxy, "pop", &(key,), "KeyError")
    }

    /// Whether `key` is present (CPython `key in d`).
    #[doc(alias = "__contains__")]
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.proxy.call("__contains__", &(key,))
    }

    /// The number of entries (CPython `len(d)`).
    pub fn len(&self) -> Result<usize> {
        self.proxy.call("__len__", &())
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }

    /// The entries in insertion order (CPython `d.items()`; `dict(d)` is `items()?.into_iter().collect()`).
    #[doc(alias = "copy")]
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.proxy.call("items", &())
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.proxy.call("keys", &())
    }

    /// The values in insertion order.
    pub fn values(&self) -> Result<Vec<V>> {
        self.proxy.call("values", &())
    }

    /// Inserts every pair, in one round trip (CPython `d.update(pairs)`, `d |= pairs`).
    #[doc(alias = "__ior__")]
    pub fn update<'a>(&self, pairs: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<()>
    where
        K: 'a,
        V: 'a,
    {
        let pairs: Vec<(&K, &V)> = pairs.into_iter().collect();
        self.proxy.call("update", &(pairs,))
    }

    /// Removes and returns the pair inserted last; `None` when the dict is empty (CPython
    /// `d.popitem()`, which raises `KeyError` then).
    #[doc(alias = "popitem")]
    pub fn pop_item(&self) -> Result<Option<(K, V)>> {
        call_unless(&self.proxy, "popitem", &(), "KeyError")
    }

    /// The entries with `pairs` merged over them, in insertion order, as a plain `Vec`; the dict
    /// is unchanged (CPython `d | other`; `other | d` is `other` merged with `items()`).
    #[doc(alias = "__or__")]
    #[doc(alias = "__ror__")]
    pub fn union<'a>(&self, pairs: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<Vec<(K, V)>>
    where
        K: 'a,
        V: 'a,
    {
        let mut merged: Vec<(PickleValue, PickleValue)> = self.proxy.call("items", &())?;
        let mut at: std::collections::HashMap<_, usize> =
            merged.iter().enumerate().map(|(i, (k, _))| (key_of(k), i)).collect();
        for (key, value) in pairs {
            let (key, value) = (crate::pickle::to_value(key)?, crate::pickle::to_value(value)?);
            match at.get(&key_of(&key)) {
                Some(&i) => merged[i].1 = value,
                None => {
                    at.insert(key_of(&key), merged.len());
                    merged.push((key, value));
                }
            }
        }
        merged.into_iter().map(|(k, v)| Ok((crate::pickle::from_value(k)?, crate::pickle::from_value(v)?))).collect()
    }
}

typed_proxy!(
    /// A list in the manager (CPython `manager.list()`). Indices may be negative, as in Python.
    #[doc(alias = "list")]
    ListProxy<T>
);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// The item at `index` (CPython `l[index]`); [`Error::Remote`] with an `IndexError` when out of range.
    #[doc(alias = "__getitem__")]
    pub fn get(&self, index: i64) -> Result<T> {
        self.proxy.call("__getitem__", &(index,))
    }

    /// Replaces the item at `index` (CPython `l[index] = item`).
    #[doc(alias = "__setitem__")]
    pub fn set(&self, index: i64, item: &T) -> Result<()> {
        self.proxy.call("__setitem__", &(index, item))
    }

    /// Appends an item.
    #[doc(alias = "push")]
    pub fn append(&self, item: &T) -> Result<()> {
        self.proxy.call("append", &(item,))
    }

    /// Appends every item, in one round trip (CPython `l.extend(items)`, `l += items`).
    #[doc(alias = "__iadd__")]
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        self.proxy.call("extend", &(items_arg(items),))
    }

    /// Inserts before `index` (clamped to the list, as in Python).
    pub fn insert(&self, index: i64, item: &T) -> Result<()> {
        self.proxy.call("insert", &(index, item))
    }

    /// Removes and returns the last item (CPython `l.pop()`).
    pub fn pop(&self) -> Result<T> {
        self.proxy.call("pop", &())
    }

    /// Removes and returns the item at `index` (CPython `l.pop(index)`).
    pub fn pop_at(&self, index: i64) -> Result<T> {
        self.proxy.call("pop", &(index,))
    }

    /// Removes the first item equal to `item`; [`Error::Remote`] with a `ValueError` if none is.
    pub fn remove(&self, item: &T) -> Result<()> {
        self.proxy.call("remove", &(item,))
    }

    /// The position of the first item equal to `item`.
    pub fn index(&self, item: &T) -> Result<usize> {
        self.proxy.call("index", &(item,))
    }

    /// How many items equal `item`.
    pub fn count(&self, item: &T) -> Result<usize> {
        self.proxy.call("count", &(item,))
    }

    /// Reverses the list in place.
    pub fn reverse(&self) -> Result<()> {
        self.proxy.call("reverse", &())
    }

    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        self.proxy.call("__len__", &())
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("__delitem__", &(slice_value(&Slice::from(..)),))
    }

    /// A copy of the items (CPython `l[:]`, `list(l)`, `l.copy()`). CPython's `l + other` and
    /// `l * n` are plain lists too: `to_vec()` then `concat` or `repeat`.
    #[doc(alias = "copy")]
    #[doc(alias = "__add__")]
    #[doc(alias = "__mul__")]
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.proxy.call("#GETVALUE", &())
    }

    /// The items a slice selects (CPython `l[2:7]`, `l[-3:]`, `l[::2]`):
    /// `l.get_slice(2..7)`, `l.get_slice(-3..)`, `l.get_slice(Slice::from(..).step(2))`.
    /// Bounds past either end are clamped, as in Python; a step of 0 is an [`Error::Remote`].
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// use multiproc::manager::Slice;
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list(&[0, 1, 2, 3, 4, 5])?;
    /// assert_eq!(l.get_slice(1..3)?, [1, 2]);
    /// assert_eq!(l.get_slice(Slice::from(..).step(-2))?, [5, 3, 1]);
    /// l.set_slice(..2, &[9])?;
    /// l.delete_slice(-2..)?;
    /// assert_eq!(l.to_vec()?, [9, 2, 3]);
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "__getitem__")]
    pub fn get_slice(&self, slice: impl Into<Slice>) -> Result<Vec<T>> {
        self.proxy.call("__getitem__", &(slice_value(&slice.into()),))
    }

    /// Replaces the items a slice selects (CPython `l[a:b] = items`): with step 1 the list grows
    /// or shrinks to fit `items`; an extended slice needs exactly as many items as it selects
    /// ([`Error::Remote`] with a `ValueError` otherwise).
    #[doc(alias = "__setitem__")]
    pub fn set_slice<'a>(&self, slice: impl Into<Slice>, items: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        self.proxy.call("__setitem__", &(slice_value(&slice.into()), items_arg(items)))
    }

    /// Removes the items a slice selects (CPython `del l[a:b]`).
    #[doc(alias = "__delitem__")]
    pub fn delete_slice(&self, slice: impl Into<Slice>) -> Result<()> {
        self.proxy.call("__delitem__", &(slice_value(&slice.into()),))
    }

    /// Repeats the items in place, `times` times over (CPython `l *= times`; 0 empties it).
    #[doc(alias = "__imul__")]
    pub fn repeat(&self, times: usize) -> Result<()> {
        self.proxy.call::<_, PickleValue>("__imul__", &(times,)).map(drop)
    }

    /// Sorts the list in place by `T`'s order (CPython `l.sort()`); stable.
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }

    /// Sorts the list in place with `compare` (CPython `l.sort(key=..., reverse=...)`); stable.
    ///
    /// The items are compared in this process; the new order is applied only if the list was
    /// not changed meanwhile (otherwise the sort starts over with the new contents, at most
    /// 16 times).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if other processes changed the list during every attempt: sort it
    /// while they hold off (for example under a manager `Lock` they also take).
    #[doc(alias = "sort")]
    pub fn sort_by(&self, mut compare: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Result<()> {
        for _ in 0..SORT_ATTEMPTS {
            let snapshot: PickleValue = self.proxy.call("#GETVALUE", &())?;
            let items: Vec<T> = crate::pickle::from_value(snapshot.clone())?;
            let mut order: Vec<u64> = (0..items.len() as u64).collect();
            order.sort_by(|&a, &b| compare(&items[a as usize], &items[b as usize]));
            if self.proxy.call("#reorder", &(snapshot, order))? {
                return Ok(());
            }
        }
        Err(Error::InvalidState(format!(
            "the managed list changed during each of {SORT_ATTEMPTS} attempts to sort it; \
             sort it while other processes hold off (for example under a manager Lock they also take)"
        )))
    }

    /// Iterates by position, one round trip per item, as CPython's proxy does: items appended
    /// meanwhile are seen, and the iteration ends at the first position past the end.
    #[doc(alias = "__iter__")]
    pub fn iter(&self) -> ListIter<'_, T> {
        ListIter { list: self, next: 0 }
    }
}

/// How many times [`ListProxy::sort_by`] starts over when the list changed while it sorted.
const SORT_ATTEMPTS: usize = 16;

/// An iterator over a [`ListProxy`] by position (see [`ListProxy::iter`]); yields each item or
/// the error of its call, and ends after an error.
pub struct ListIter<'a, T> {
    list: &'a ListProxy<T>,
    next: i64,
}

impl<T: Serialize + DeserializeOwned> Iterator for ListIter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.next < 0 {
            return None;
        }
        match self.list.get_slice(self.next..self.next + 1) {
            Ok(mut items) => {
                self.next += 1;
                items.pop().map(Ok)
            }
            Err(e) => {
                self.next = -1;
                Some(Err(e))
            }
        }
    }
}

impl<T> fmt::Debug for ListIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListIter").field("list", &self.list.proxy).field("next", &self.next).finish()
    }
}

typed_proxy!(
    /// A set in the manager, keeping insertion order.
    #[doc(alias = "set")]
    SetProxy<T>
);

impl<T: Serialize + DeserializeOwned> SetProxy<T> {
    /// Adds an item.
    pub fn add(&self, item: &T) -> Result<()> {
        self.proxy.call("add", &(item,))
    }

    /// Removes an item; whether it was there.
    #[doc(alias = "remove")]
    pub fn discard(&self, item: &T) -> Result<bool> {
        self.proxy.call("#discard", &(item,))
    }

    /// Whether `item` is in the set.
    pub fn contains(&self, item: &T) -> Result<bool> {
        self.proxy.call("__contains__", &(item,))
    }

    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        self.proxy.call("__len__", &())
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }

    /// The items, in the order they were added (CPython `set(s)`, `s.copy()`).
    #[doc(alias = "copy")]
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.proxy.call("copy", &())
    }

    /// Adds every item, in one round trip (CPython `s.update(items)`, `s |= items`).
    #[doc(alias = "__ior__")]
    pub fn update<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        self.proxy.call("update", &(items_arg(items),))
    }

    /// Removes and returns an item (the one added last); `None` when the set is empty (CPython
    /// `s.pop()`, which raises `KeyError` then).
    pub fn pop(&self) -> Result<Option<T>> {
        call_unless(&self.proxy, "pop", &(), "KeyError")
    }

    /// Keeps only the items that are also in `items` (CPython `s.intersection_update(items)`,
    /// `s &= items`).
    #[doc(alias = "__iand__")]
    pub fn intersection_update<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        self.proxy.call("intersection_update", &(items_arg(items),))
    }

    /// Removes every item of `items` (CPython `s.difference_update(items)`, `s -= items`).
    #[doc(alias = "__isub__")]
    pub fn difference_update<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        self.proxy.call("difference_update", &(items_arg(items),))
    }

    /// Removes the items of `items` that are present and adds the others (CPython
    /// `s.symmetric_difference_update(items)`, `s ^= items`).
    #[doc(alias = "__ixor__")]
    pub fn symmetric_difference_update<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        self.proxy.call("symmetric_difference_update", &(items_arg(items),))
    }

    /// The items of the set, then those of `items` not in it, as a plain `Vec` (CPython
    /// `s | items`, `s.union(items)`); the set is unchanged.
    #[doc(alias = "__or__")]
    #[doc(alias = "__ror__")]
    pub fn union<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<Vec<T>>
    where
        T: 'a,
    {
        self.proxy.call("union", &(items_arg(items),))
    }

    /// The items of the set that are also in `items` (CPython `s & items`, `s.intersection(items)`).
    #[doc(alias = "__and__")]
    #[doc(alias = "__rand__")]
    pub fn intersection<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<Vec<T>>
    where
        T: 'a,
    {
        self.proxy.call("intersection", &(items_arg(items),))
    }

    /// The items of the set that are not in `items` (CPython `s - items`, `s.difference(items)`;
    /// `items - s` is `difference` the other way round, done on plain collections).
    #[doc(alias = "__sub__")]
    pub fn difference<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<Vec<T>>
    where
        T: 'a,
    {
        self.proxy.call("difference", &(items_arg(items),))
    }

    /// The items in exactly one of the set and `items` (CPython `s ^ items`,
    /// `s.symmetric_difference(items)`).
    #[doc(alias = "__xor__")]
    #[doc(alias = "__rxor__")]
    pub fn symmetric_difference<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<Vec<T>>
    where
        T: 'a,
    {
        self.proxy.call("symmetric_difference", &(items_arg(items),))
    }

    /// Whether the set and `items` have no item in common (CPython `s.isdisjoint(items)`).
    #[doc(alias = "isdisjoint")]
    pub fn is_disjoint<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<bool>
    where
        T: 'a,
    {
        self.proxy.call("isdisjoint", &(items_arg(items),))
    }

    /// Whether every item of the set is in `items` (CPython `s.issubset(items)`, `s <= items`;
    /// for `s < items`, also check that `items` holds more distinct items than the set).
    #[doc(alias = "issubset")]
    #[doc(alias = "__le__")]
    pub fn is_subset<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<bool>
    where
        T: 'a,
    {
        self.proxy.call("issubset", &(items_arg(items),))
    }

    /// Whether every item of `items` is in the set (CPython `s.issuperset(items)`, `s >= items`).
    #[doc(alias = "issuperset")]
    #[doc(alias = "__ge__")]
    pub fn is_superset<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<bool>
    where
        T: 'a,
    {
        self.proxy.call("issuperset", &(items_arg(items),))
    }
}

typed_proxy!(
    /// Named attributes in the manager (CPython `manager.Namespace()`): `ns.x = 1` is
    /// `ns.set("x", &1)`, `ns.x` is `ns.get::<i32>("x")`.
    #[doc(alias = "Namespace")]
    NamespaceProxy
);

impl NamespaceProxy {
    /// Sets attribute `name`.
    #[doc(alias = "__setattr__")]
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.proxy.call("__setattr__", &(name, value))
    }

    /// Attribute `name`; [`Error::Remote`] with an `AttributeError` if it was never set.
    #[doc(alias = "__getattr__")]
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.proxy.call("__getattribute__", &(name,))
    }

    /// Removes attribute `name`; whether it was set.
    #[doc(alias = "__delattr__")]
    pub fn remove(&self, name: &str) -> Result<bool> {
        call_unless::<_, ()>(&self.proxy, "__delattr__", &(name,), "AttributeError").map(|done| done.is_some())
    }

    /// The names of the attributes set, in the order they were first set.
    pub fn names(&self) -> Result<Vec<String>> {
        self.proxy.call("#names", &())
    }
}

typed_proxy!(
    /// A queue in the manager: FIFO (CPython `manager.Queue()`), LIFO (`LifoQueue`) or joinable
    /// (`JoinableQueue`, with [`task_done`](Self::task_done) and [`join`](Self::join)).
    #[doc(alias = "Queue")]
    #[doc(alias = "LifoQueue")]
    #[doc(alias = "JoinableQueue")]
    QueueProxy<T>
);

/// `get(block, timeout)`: `queue.Empty` is [`Error::WouldBlock`] without blocking,
/// [`Error::Timeout`] after a timeout.
fn queue_get<R: DeserializeOwned>(proxy: &ObjectProxy, timeout: Option<Duration>) -> Result<R> {
    match timeout {
        None => proxy.call("get", &()),
        Some(t) if t.is_zero() => call_or(proxy, "get", &(false,), "queue.Empty", || Error::WouldBlock),
        Some(t) => call_or(proxy, "get", &(true, seconds(t)), "queue.Empty", || Error::Timeout(t)),
    }
}

/// `put(item, block, timeout)`: `queue.Full` is [`Error::WouldBlock`] without blocking,
/// [`Error::Timeout`] after a timeout.
fn queue_put<T: Serialize>(proxy: &ObjectProxy, item: &T, timeout: Option<Duration>) -> Result<()> {
    match timeout {
        None => proxy.call("put", &(item,)),
        Some(t) if t.is_zero() => call_or(proxy, "put", &(item, false), "queue.Full", || Error::WouldBlock),
        Some(t) => call_or(proxy, "put", &(item, true, seconds(t)), "queue.Full", || Error::Timeout(t)),
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// Puts an item, waiting for room in a bounded queue.
    pub fn put(&self, item: &T) -> Result<()> {
        queue_put(&self.proxy, item, None)
    }

    /// Puts an item, waiting up to `timeout` for room ([`Error::Timeout`]: CPython `Full`).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        queue_put(&self.proxy, item, Some(timeout))
    }

    /// Puts an item if there is room now ([`Error::WouldBlock`]: CPython `Full`).
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        queue_put(&self.proxy, item, Some(Duration::ZERO))
    }

    /// Takes an item, waiting for one.
    pub fn get(&self) -> Result<T> {
        queue_get(&self.proxy, None)
    }

    /// Takes an item, waiting up to `timeout` ([`Error::Timeout`]: CPython `Empty`).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        queue_get(&self.proxy, Some(timeout))
    }

    /// Takes an item if there is one now ([`Error::WouldBlock`]: CPython `Empty`).
    pub fn get_nowait(&self) -> Result<T> {
        queue_get(&self.proxy, Some(Duration::ZERO))
    }

    /// Marks one item taken earlier as processed ([`Error::Remote`] with a `ValueError` when
    /// more are marked than were put, as CPython's `queue.Queue` raises).
    pub fn task_done(&self) -> Result<()> {
        self.proxy.call("task_done", &())
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.proxy.call("join", &())
    }

    /// Like [`join`](Self::join), giving up with [`Error::Timeout`] after `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        match self.proxy.call("#join", &(seconds(timeout),))? {
            true => Ok(()),
            false => Err(Error::Timeout(timeout)),
        }
    }

    /// The number of items (CPython `qsize`).
    #[doc(alias = "qsize")]
    pub fn len(&self) -> Result<usize> {
        self.proxy.call("qsize", &())
    }

    /// Whether the queue is empty (CPython `empty`).
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> Result<bool> {
        self.proxy.call("empty", &())
    }

    /// Whether a bounded queue is full (CPython `full`).
    #[doc(alias = "full")]
    pub fn is_full(&self) -> Result<bool> {
        self.proxy.call("full", &())
    }
}

typed_proxy!(
    /// A priority queue in the manager (CPython `queue.PriorityQueue` through a manager): items
    /// come out lowest priority first, and in arrival order among equal priorities. Items are
    /// `(priority, item)` tuples in the server, as Python's are; only the priorities are compared,
    /// so items need no ordering.
    #[doc(alias = "PriorityQueue")]
    PriorityQueueProxy<T>
);

impl<T: Serialize + DeserializeOwned> PriorityQueueProxy<T> {
    /// Puts `item` with `priority`.
    pub fn put(&self, priority: i64, item: &T) -> Result<()> {
        queue_put(&self.proxy, &(priority, item), None)
    }

    /// Takes the item of lowest priority, waiting for one; returns it with its priority.
    pub fn get(&self) -> Result<(i64, T)> {
        queue_get(&self.proxy, None)
    }

    /// Like [`get`](Self::get), giving up with [`Error::Timeout`] after `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<(i64, T)> {
        queue_get(&self.proxy, Some(timeout))
    }

    /// The number of items.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> Result<usize> {
        self.proxy.call("qsize", &())
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> Result<bool> {
        self.proxy.call("empty", &())
    }
}

typed_proxy!(
    /// A lock in the manager: `Lock` (any proxy may release it) or `RLock` (re-entrant, owned by
    /// the proxy that took it). A lock whose holder's connection closes (its proxy dropped, its
    /// process killed) is released; CPython keeps it locked forever.
    #[doc(alias = "Lock")]
    #[doc(alias = "RLock")]
    #[doc(alias = "AcquirerProxy")]
    LockProxy
);

/// Holds a managed lock; dropping it releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockProxyGuard<'a> {
    lock: &'a LockProxy,
}

impl Drop for LockProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

/// `acquire(blocking, timeout)`: `False` is [`Error::WouldBlock`] without blocking,
/// [`Error::Timeout`] after a timeout.
fn acquire(proxy: &ObjectProxy, timeout: Option<Duration>) -> Result<()> {
    let taken: bool = match timeout {
        None => proxy.call("acquire", &())?,
        Some(t) if t.is_zero() => proxy.call("acquire", &(false,))?,
        Some(t) => proxy.call("acquire", &(true, seconds(t)))?,
    };
    match (taken, timeout) {
        (true, _) => Ok(()),
        (false, Some(t)) if !t.is_zero() => Err(Error::Timeout(t)),
        (false, _) => Err(Error::WouldBlock),
    }
}

impl LockProxy {
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<LockProxyGuard<'_>> {
        acquire(&self.proxy, timeout)?;
        Ok(LockProxyGuard { lock: self })
    }

    /// Waits for the lock (CPython `with lock:`).
    pub fn acquire(&self) -> Result<LockProxyGuard<'_>> {
        self.acquire_within(None)
    }

    /// Takes the lock if it is free ([`Error::WouldBlock`] otherwise).
    pub fn try_acquire(&self) -> Result<LockProxyGuard<'_>> {
        self.acquire_within(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` for the lock ([`Error::Timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockProxyGuard<'_>> {
        self.acquire_within(Some(timeout))
    }

    /// Releases the lock without a guard (CPython `release()`; for a lock taken by
    /// [`LockProxyGuard`] that was forgotten, or taken through another proxy).
    pub fn release(&self) -> Result<()> {
        self.proxy.call("release", &())
    }

    /// Whether a `Lock` is held; an `RLock`'s depth.
    pub fn locked(&self) -> Result<bool> {
        self.proxy.call::<_, u64>("#value", &()).map(|v| v > 0)
    }
}

typed_proxy!(
    /// A semaphore in the manager (CPython `manager.Semaphore(n)`, `BoundedSemaphore(n)`):
    /// acquired and released explicitly, by any proxy.
    #[doc(alias = "Semaphore")]
    #[doc(alias = "BoundedSemaphore")]
    SemaphoreProxy
);

impl SemaphoreProxy {
    /// Takes a permit, waiting for one.
    pub fn acquire(&self) -> Result<()> {
        acquire(&self.proxy, None)
    }

    /// Takes a permit if one is free ([`Error::WouldBlock`] otherwise).
    pub fn try_acquire(&self) -> Result<()> {
        acquire(&self.proxy, Some(Duration::ZERO))
    }

    /// Waits up to `timeout` for a permit ([`Error::Timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        acquire(&self.proxy, Some(timeout))
    }

    /// Gives a permit back; a bounded semaphore refuses to go above its initial value
    /// ([`Error::Remote`] with a `ValueError`).
    pub fn release(&self) -> Result<()> {
        self.proxy.call("release", &())
    }

    /// The number of free permits (CPython `get_value()`).
    #[doc(alias = "get_value")]
    pub fn value(&self) -> Result<u64> {
        self.proxy.call("#value", &())
    }
}

typed_proxy!(
    /// A condition variable in the manager, with its own re-entrant lock (CPython
    /// `manager.Condition()`).
    #[doc(alias = "Condition")]
    ConditionProxy
);

/// Holds a managed condition's lock; wait and notify through it. Dropping it releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct ConditionProxyGuard<'a> {
    condition: &'a ConditionProxy,
}

impl ConditionProxy {
    /// Takes the condition's lock.
    pub fn acquire(&self) -> Result<ConditionProxyGuard<'_>> {
        acquire(&self.proxy, None)?;
        Ok(ConditionProxyGuard { condition: self })
    }
}

impl ConditionProxyGuard<'_> {
    /// Releases the lock, waits for a notification, takes the lock back.
    pub fn wait(&self) -> Result<()> {
        self.condition.proxy.call::<_, bool>("wait", &()).map(drop)
    }

    /// Like [`wait`](Self::wait) for at most `timeout`; whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.condition.proxy.call("wait", &(seconds(timeout),))
    }

    /// Waits until `predicate` holds (checked with the lock held, after each notification).
    pub fn wait_for(&self, mut predicate: impl FnMut() -> Result<bool>) -> Result<()> {
        while !predicate()? {
            self.wait()?;
        }
        Ok(())
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: u64) -> Result<()> {
        self.condition.proxy.call("notify", &(n,))
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.condition.proxy.call("notify_all", &())
    }
}

impl Drop for ConditionProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = self.condition.proxy.call::<_, ()>("release", &());
    }
}

typed_proxy!(
    /// An event in the manager (CPython `manager.Event()`).
    #[doc(alias = "Event")]
    EventProxy
);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.proxy.call("set", &())
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.proxy.call("is_set", &())
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.proxy.call::<_, bool>("wait", &()).map(drop)
    }

    /// Waits up to `timeout`; whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.proxy.call("wait", &(seconds(timeout),))
    }
}

typed_proxy!(
    /// A barrier in the manager (CPython `manager.Barrier(parties)`).
    #[doc(alias = "Barrier")]
    BarrierProxy
);

impl BarrierProxy {
    fn wait_within<A: Serialize>(&self, args: &A) -> Result<u64> {
        call_or(&self.proxy, "wait", args, "threading.BrokenBarrierError", || Error::BrokenBarrier)
    }

    /// Waits for every party; returns this party's arrival index (`0..parties`).
    /// [`Error::BrokenBarrier`] when the barrier breaks.
    pub fn wait(&self) -> Result<u64> {
        self.wait_within(&())
    }

    /// Like [`wait`](Self::wait); if the others do not come within `timeout`, the barrier breaks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        self.wait_within(&(seconds(timeout),))
    }

    /// Breaks the barrier: waiters now and later get [`Error::BrokenBarrier`].
    pub fn abort(&self) -> Result<()> {
        self.proxy.call("abort", &())
    }

    /// Makes the barrier usable again; parties waiting now get [`Error::BrokenBarrier`].
    pub fn reset(&self) -> Result<()> {
        self.proxy.call("reset", &())
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        self.proxy.call("__getattribute__", &("broken",))
    }

    /// How many parties wait now.
    pub fn n_waiting(&self) -> Result<u64> {
        self.proxy.call("__getattribute__", &("n_waiting",))
    }

    /// How many parties the barrier needs.
    pub fn parties(&self) -> Result<u64> {
        self.proxy.call("__getattribute__", &("parties",))
    }
}

typed_proxy!(
    /// One value in the manager (CPython `manager.Value(typecode, value)`): `v.value` is
    /// [`get`](Self::get), `v.value = x` is [`set`](Self::set). Like CPython's, it has no lock:
    /// use a managed lock around read-modify-write.
    #[doc(alias = "Value")]
    ValueProxy<T>
);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value.
    pub fn get(&self) -> Result<T> {
        self.proxy.call("get", &())
    }

    /// Replaces the value.
    pub fn set(&self, value: &T) -> Result<()> {
        self.proxy.call("set", &(value,))
    }
}

typed_proxy!(
    /// A fixed-length array in the manager (CPython `manager.Array(typecode, sequence)`).
    #[doc(alias = "Array")]
    ArrayProxy<T>
);

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// The item at `index` (negative counts from the end).
    pub fn get(&self, index: i64) -> Result<T> {
        self.proxy.call("__getitem__", &(index,))
    }

    /// Replaces the item at `index`.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.proxy.call("__setitem__", &(index, value))
    }

    /// The length.
    pub fn len(&self) -> Result<usize> {
        self.proxy.call("__len__", &())
    }

    /// Whether the array has no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the items.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.proxy.call("#items", &())
    }
}
