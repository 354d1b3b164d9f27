//! The objects a manager's server holds, as one mechanism for every type: each is a [`Served`]
//! object, made by a constructor of the server's [`TypeTable`](super::TypeTable) (the built-in
//! types of CPython's `SyncManager` and the user types of `#[managed]` alike), and called by
//! method name with Python's arguments. Both fronts of the server (this crate's proxies, and
//! CPython's `BaseManager` clients) call the same methods, so a Rust client and a Python client
//! share the same objects with the same results; what fails raises the exception CPython's server
//! would raise ([`Raise`]).
//!
//! Every object guards its state with its own mutex; calls that wait (a queue's `get`, a lock's
//! `acquire`, an event's `wait`) wait on the object's condition variable in the thread that serves
//! the caller's connection, in slices, so that a caller that disconnects in the middle of a wait
//! is noticed and its thread ends.

pub(crate) mod args;
mod custom;
mod dict;
mod list;
mod locks;
pub(crate) mod python;
mod queue;
mod set;
mod signals;
mod value;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use args::{Args, Input};
pub(crate) use custom::Custom;
pub(crate) use dict::{Dict, Namespace};
pub(crate) use list::{List, slice_value};
pub(crate) use locks::{Condition, Flavour, Lock};
pub(crate) use queue::{Order, Queue};
pub(crate) use set::Set;
pub(crate) use signals::{Barrier, Event};
pub(crate) use value::{Array, ValueCell};

use crate::pickle::{Build, Object, PickleValue};

/// How often a waiting call checks that its caller is still connected.
const CALLER_CHECK: Duration = Duration::from_millis(100);

/// The connection a call came in on: its number, and a way to see whether it hung up.
pub(crate) struct Caller<'a> {
    pub(crate) id: u64,
    pub(crate) gone: &'a dyn Fn() -> bool,
    /// A CPython client (Python's rules apply where this crate's proxies are more lenient: dict
    /// keys must be hashable).
    pub(crate) python: bool,
}

/// An object in a manager's server.
pub(crate) trait Served: Send + Sync {
    /// The type's registered name (CPython's typeid): `"dict"`, `"Queue"`, a user type's name.
    fn typeid(&self) -> &str;

    /// The methods clients may call (CPython's `exposed`).
    fn exposed(&self) -> &'static [&'static str];

    /// Calls `method`.
    fn call(&self, method: &str, input: Input, caller: &Caller<'_>) -> Result<Outcome, Raise>;

    /// Python's `repr()` of the object (CPython's `__repr__`/`__str__` fallbacks).
    fn repr(&self) -> String;

    /// A copy of the object's value (CPython's `#GETVALUE`, `proxy._getvalue()`).
    fn value(&self) -> Result<PickleValue, Raise> {
        Err(Raise::Remote(format!("a {} cannot be copied out of the manager", self.typeid())))
    }

    /// The caller's connection closed: what it held (a lock) is released.
    fn forget_caller(&self, _caller: u64) {}
}

/// What a call gives back.
pub(crate) enum Outcome {
    /// A value.
    Value(PickleValue),
    /// A value already pickled (a user type's result).
    Pickled(Vec<u8>),
    /// A new object, which the caller gets a proxy of (CPython's `method_to_typeid`: a dict's
    /// `__iter__` gives an `Iterator`).
    Object(Arc<dyn Served>),
}

impl Outcome {
    pub(crate) fn none() -> Result<Outcome, Raise> {
        Ok(Outcome::Value(PickleValue::None))
    }
}

impl From<PickleValue> for Outcome {
    fn from(value: PickleValue) -> Outcome {
        Outcome::Value(value)
    }
}

/// Shorthand for a call's value.
pub(crate) fn ok(value: impl Into<PickleValue>) -> Result<Outcome, Raise> {
    Ok(Outcome::Value(value.into()))
}

/// What a failed call raises: a Python exception, as CPython's server raises it, or a failure of
/// the server itself (CPython's `'#TRACEBACK'`, a `RemoteError` in Python).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raise {
    /// A Python exception: its class (`builtins.KeyError`, `queue.Empty`) and arguments.
    Exception { class: String, args: Vec<PickleValue> },
    /// A failure with a message only.
    Remote(String),
}

impl Raise {
    pub(crate) fn new(class: &str, args: Vec<PickleValue>) -> Raise {
        Raise::Exception { class: class.to_string(), args }
    }

    fn message(class: &str, message: impl Into<String>) -> Raise {
        Raise::new(class, vec![PickleValue::String(message.into())])
    }

    pub(crate) fn key_error(key: PickleValue) -> Raise {
        Raise::new("builtins.KeyError", vec![key])
    }

    pub(crate) fn index_error(message: impl Into<String>) -> Raise {
        Raise::message("builtins.IndexError", message)
    }

    pub(crate) fn value_error(message: impl Into<String>) -> Raise {
        Raise::message("builtins.ValueError", message)
    }

    pub(crate) fn type_error(message: impl Into<String>) -> Raise {
        Raise::message("builtins.TypeError", message)
    }

    pub(crate) fn runtime_error(message: impl Into<String>) -> Raise {
        Raise::message("builtins.RuntimeError", message)
    }

    pub(crate) fn attribute_error(message: impl Into<String>) -> Raise {
        Raise::message("builtins.AttributeError", message)
    }

    pub(crate) fn memory_error(message: impl Into<String>) -> Raise {
        Raise::message("builtins.MemoryError", message)
    }

    /// The class as Python names it in a traceback: `KeyError`, `queue.Empty`.
    pub(crate) fn class_name(&self) -> &str {
        match self {
            Raise::Exception { class, .. } => class.strip_prefix("builtins.").unwrap_or(class),
            Raise::Remote(_) => "RemoteError",
        }
    }

    /// `str()` of the exception.
    pub(crate) fn text(&self) -> String {
        match self {
            // KeyError's str() is the repr of its key.
            Raise::Exception { class, args } if class == "builtins.KeyError" && args.len() == 1 => args[0].to_string(),
            Raise::Exception { .. } => self.to_object().to_python_str(),
            Raise::Remote(message) => message.clone(),
        }
    }

    /// The exception as an object to pickle for Python.
    pub(crate) fn to_object(&self) -> PickleValue {
        match self {
            Raise::Exception { class, args } => {
                PickleValue::from(Object { class: class.clone(), build: Build::Call(args.clone()), state: None })
            }
            Raise::Remote(message) => PickleValue::String(message.clone()),
        }
    }
}

impl std::fmt::Display for Raise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Raise::Remote(message) => f.write_str(message),
            _ => {
                let text = self.text();
                if text.is_empty() {
                    f.write_str(self.class_name())
                } else {
                    write!(f, "{}: {text}", self.class_name())
                }
            }
        }
    }
}

/// Locks a mutex; a panic in another call (a user method) does not make the object unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a wait ended.
pub(crate) enum Waited<'m, T> {
    Ready(MutexGuard<'m, T>),
    TimedOut(MutexGuard<'m, T>),
}

/// Waits on `cv` until `ready` holds, the timeout passes, or the caller disconnects (an error:
/// the call has nobody to answer).
pub(crate) fn wait_until<'m, T>(
    mut guard: MutexGuard<'m, T>,
    cv: &Condvar,
    timeout: Option<Duration>,
    caller: &Caller<'_>,
    mut ready: impl FnMut(&mut T) -> bool,
) -> Result<Waited<'m, T>, Raise> {
    // A timeout too far away for the clock (a client may send `Duration::MAX`) is no limit.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        if ready(&mut guard) {
            return Ok(Waited::Ready(guard));
        }
        let slice = match deadline {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Waited::TimedOut(guard));
                }
                left.min(CALLER_CHECK)
            }
            None => CALLER_CHECK,
        };
        if (caller.gone)() {
            return Err(Raise::Remote("the caller disconnected".into()));
        }
        guard = cv.wait_timeout(guard, slice).unwrap_or_else(|p| p.into_inner()).0;
    }
}

/// Python's index rules: negative counts from the end; `None` when out of range.
pub(crate) fn position(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let at = if index < 0 { index + len } else { index };
    (0..len).contains(&at).then_some(at as usize)
}
