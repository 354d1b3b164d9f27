//! Typed wrappers for the proxies of CPython's common built-ins: a `queue.Queue` ([`PyQueue`])
//! and a `dict` ([`PyDict`]). Each derefs to its [`PyProxy`] for any other method.

use std::ops::Deref;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::PyProxy;
use crate::error::{Error, Result};

/// A proxy for a `queue.Queue` in a CPython manager (a `SyncManager`'s `Queue()`, or a typeid
/// registered with a callable that returns a queue).
#[derive(Debug)]
pub struct PyQueue {
    proxy: PyProxy,
}

impl From<PyProxy> for PyQueue {
    fn from(proxy: PyProxy) -> PyQueue {
        PyQueue { proxy }
    }
}

impl Deref for PyQueue {
    type Target = PyProxy;

    fn deref(&self) -> &PyProxy {
        &self.proxy
    }
}

/// `queue.Full` and `queue.Empty` become [`Error::Full`] and [`Error::Empty`].
fn queue_error(error: Error) -> Error {
    match &error {
        Error::PythonException { exception, .. } if exception == "queue.Full" => Error::Full,
        Error::PythonException { exception, .. } if exception == "queue.Empty" => Error::Empty,
        _ => error,
    }
}

impl PyQueue {
    /// The proxy underneath, for other methods (`task_done`, `join`, ...).
    pub fn proxy(&self) -> &PyProxy {
        &self.proxy
    }

    /// Puts `item`, waiting for room if the queue is bounded and full.
    pub fn put<T: Serialize>(&self, item: &T) -> Result<()> {
        self.proxy.call::<_, ()>("put", (item,)).map_err(queue_error)
    }

    /// Puts `item`, waiting at most `timeout` for room ([`Error::Full`] then).
    pub fn put_timeout<T: Serialize>(&self, item: &T, timeout: Duration) -> Result<()> {
        self.proxy.call::<_, ()>("put", (item, true, timeout.as_secs_f64())).map_err(queue_error)
    }

    /// Puts `item` if there is room now ([`Error::Full`] otherwise).
    pub fn put_nowait<T: Serialize>(&self, item: &T) -> Result<()> {
        self.proxy.call::<_, ()>("put_nowait", (item,)).map_err(queue_error)
    }

    /// Takes the next item, waiting for one.
    pub fn get<T: DeserializeOwned>(&self) -> Result<T> {
        self.proxy.call("get", ()).map_err(queue_error)
    }

    /// Takes the next item, waiting at most `timeout` ([`Error::Empty`] then).
    pub fn get_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        self.proxy.call("get", (true, timeout.as_secs_f64())).map_err(queue_error)
    }

    /// Takes the next item if there is one ([`Error::Empty`] otherwise).
    pub fn get_nowait<T: DeserializeOwned>(&self) -> Result<T> {
        self.proxy.call("get_nowait", ()).map_err(queue_error)
    }

    /// The approximate number of items (`qsize()`).
    pub fn qsize(&self) -> Result<usize> {
        self.proxy.call("qsize", ())
    }

    /// Whether the queue is empty now.
    pub fn is_empty(&self) -> Result<bool> {
        self.proxy.call("empty", ())
    }
}

/// A proxy for a `dict` in a CPython manager (a `SyncManager`'s `dict()`, or a typeid
/// registered with `proxytype=DictProxy`). Keys and values are any serde types Python's side
/// can hold (strings, numbers, tuples, ...).
#[derive(Debug)]
pub struct PyDict {
    proxy: PyProxy,
}

impl From<PyProxy> for PyDict {
    fn from(proxy: PyProxy) -> PyDict {
        PyDict { proxy }
    }
}

impl Deref for PyDict {
    type Target = PyProxy;

    fn deref(&self) -> &PyProxy {
        &self.proxy
    }
}

impl PyDict {
    /// The proxy underneath, for other methods (`update`, `setdefault`, ...).
    pub fn proxy(&self) -> &PyProxy {
        &self.proxy
    }

    /// `d[key] = value`.
    #[doc(alias = "__setitem__")]
    pub fn set<K: Serialize, V: Serialize>(&self, key: &K, value: &V) -> Result<()> {
        self.proxy.call("__setitem__", (key, value))
    }

    /// `d.get(key)`: the value, or `None` when the key is missing (a value that is Python's
    /// `None` reads as `None` too; use [`get_item`](Self::get_item) to tell them apart).
    pub fn get<K: Serialize, V: DeserializeOwned>(&self, key: &K) -> Result<Option<V>> {
        self.proxy.call("get", (key,))
    }

    /// `d[key]`: a missing key is [`Error::PythonException`] with `exception == "KeyError"`.
    #[doc(alias = "__getitem__")]
    pub fn get_item<K: Serialize, V: DeserializeOwned>(&self, key: &K) -> Result<V> {
        self.proxy.call("__getitem__", (key,))
    }

    /// `d.pop(key, None)`: removes the key, returning its value if it was there.
    pub fn remove<K: Serialize, V: DeserializeOwned>(&self, key: &K) -> Result<Option<V>> {
        self.proxy.call("pop", (key, ()))
    }

    /// `key in d`.
    #[doc(alias = "__contains__")]
    pub fn contains_key<K: Serialize>(&self, key: &K) -> Result<bool> {
        self.proxy.call("__contains__", (key,))
    }

    /// `list(d.keys())`.
    pub fn keys<K: DeserializeOwned>(&self) -> Result<Vec<K>> {
        self.proxy.call("keys", ())
    }

    /// `list(d.items())`.
    pub fn items<K: DeserializeOwned, V: DeserializeOwned>(&self) -> Result<Vec<(K, V)>> {
        self.proxy.call("items", ())
    }

    /// `len(d)`.
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize> {
        self.proxy.call("__len__", ())
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }
}
