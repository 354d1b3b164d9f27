//! Objects served by a CPython manager (`multiprocessing.managers.BaseManager`, `SyncManager`),
//! used from Rust (feature `pickle`).
//!
//! A Python service that exposes a queue or a dict through a manager on TCP or a Unix socket
//! with an authkey can be reached from a Rust process: [`PyManager::connect`] authenticates and
//! checks that the peer is a manager (CPython's `connect()`), [`PyManager::create`] asks for an
//! object by its registered typeid (`'get_queue'`, `'dict'`, `'Queue'`, ...) and returns a
//! [`PyProxy`], whose [`call`](PyProxy::call) runs a method in the server with serde-typed
//! arguments and result (pickled as CPython's proxies pickle them). [`PyQueue`] and [`PyDict`]
//! wrap the common built-ins.
//!
//! The wire protocol is CPython's (`managers.py`): one-shot requests (`create`, `incref`,
//! `decref`, `number_of_objects`, ...) on fresh authenticated connections, and method calls on
//! long-lived channels opened with `accept_connection`. CPython gives each thread its own
//! channel; here a manager keeps a pool of them, so that calls from several threads run at the
//! same time (a thread blocked in a queue's `get` does not hold up another's `put`).
//!
//! References: a proxy holds one reference to its object in the server (the server counts
//! them), a clone takes another, and dropping the last one releases the object
//! ([`PyManager::number_of_objects`] shows it). A proxy used in a forked child opens its own
//! channel and takes its own reference there (as CPython's proxies do when they reach a child),
//! which it releases when the child's copy drops: move a [`try_clone`](PyProxy::try_clone) into
//! the child's closure (a proxy shared through an `Arc` is never dropped in the child, so its
//! reference would stay until the server ends).
//!
//! Values travel pickled ([`crate::pickle`]): serde types map to and from Python's types, and a
//! [`PickleValue`] is any Python value as it is (a set, a big integer, a `datetime`, a
//! `Decimal`), arguments and keyword arguments included; an object of a class that has no Rust
//! counterpart (an instance of a Python class) gives [`Error::Codec`] naming its class.
//!
//! Replies: a Python exception raised by the method is [`Error::PythonException`] with its class
//! (`"KeyError"`, `"queue.Empty"`) and message; a server-side failure (a method not exposed, a
//! result that cannot be pickled) is [`Error::Remote`] with the server's traceback; a method
//! mapped to a typeid (`method_to_typeid`) returns a new proxy through [`PyProxy::call_proxy`].
//! A server that dies makes the call fail (end of file), never hang; one that stops answering is
//! bounded by [`PyManager::set_call_timeout`].
//!
//! # Example
//!
//! A Python service:
//!
//! ```python
//! import queue
//! from multiprocessing.managers import BaseManager
//! jobs = queue.Queue()
//! class JobManager(BaseManager): pass
//! JobManager.register('get_jobs', callable=lambda: jobs)
//! JobManager(address=('127.0.0.1', 50000), authkey=b'secret').get_server().serve_forever()
//! ```
//!
//! A Rust worker (this crate's own [`Server`](crate::manager::Server), which speaks CPython's
//! protocol too, stands in for the Python service here):
//!
//! ```
//! use multiproc::manager::cpython::PyManager;
//!
//! # fn main() -> multiproc::Result<()> {
//! # let server = multiproc::manager::Server::bind::<()>("127.0.0.1:0".parse()?, Some(b"secret"))?;
//! # let jobs = server.client().queue::<multiproc::pickle::PickleValue>()?;
//! # server.register("get_jobs", jobs.object())?;
//! # let address = server.address().clone();
//! # std::thread::spawn(move || server.serve_forever());
//! let manager = PyManager::connect(&address, b"secret")?;
//! let jobs = manager.queue("get_jobs", ())?;
//! jobs.put(&("resize", 640))?;
//! let (job, size): (String, i64) = jobs.get()?;
//! assert_eq!((job.as_str(), size), ("resize", 640));
//! // Any method, with any arguments:
//! let n: usize = jobs.proxy().call("qsize", ())?;
//! assert_eq!(n, 0);
//! # manager.shutdown()?;
//! # Ok(())
//! # }
//! ```

mod builtins;
pub(crate) mod reply;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builtins::{PyDict, PyQueue};
use reply::{Reply, decode_reply};

use crate::connection::{Address, Connection, PickleValue, connect_timeout};
use crate::error::{Error, Result};

/// How long connecting and authenticating may take, and how long a one-shot request (`create`,
/// `incref`, `decref`, ...) may wait for its reply, unless [`PyManager::connect_timeout`] says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a dropped proxy waits to release its object.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a CPython manager's server (CPython `BaseManager` after `connect()`).
///
/// Cloning is cheap: clones share the server's address, key and pool of channels.
#[doc(alias = "BaseManager")]
#[doc(alias = "SyncManager")]
#[derive(Clone)]
pub struct PyManager {
    shared: Arc<Shared>,
}

struct Shared {
    address: Address,
    authkey: Vec<u8>,
    timeout: Duration,
    channels: Mutex<Channels>,
}

/// Idle `accept_connection` channels of one process.
struct Channels {
    pid: u32,
    idle: Vec<Connection>,
    /// How long a method call may take ([`PyManager::set_call_timeout`]).
    call_timeout: Option<Duration>,
}

impl fmt::Debug for PyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyManager").field("address", &self.shared.address).finish_non_exhaustive()
    }
}

impl PyManager {
    /// Connects to the CPython manager at `address` with its `authkey`, and checks that it is one
    /// (CPython `BaseManager(address, authkey).connect()`, which sends `dummy`). Connecting and
    /// each one-shot request are bounded by 30 seconds; see [`connect_timeout`](Self::connect_timeout).
    ///
    /// # Errors
    ///
    /// [`Error::Authentication`] for a wrong key, [`Error::Io`] when nobody listens at `address`,
    /// [`Error::Protocol`] when the peer is not a manager.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<PyManager> {
        Self::connect_timeout(address, authkey, DEFAULT_TIMEOUT)
    }

    /// Like [`connect`](Self::connect), bounding connecting, authenticating and every one-shot
    /// request by `timeout` (method calls on proxies wait as long as the method takes).
    pub fn connect_timeout(address: &Address, authkey: &[u8], timeout: Duration) -> Result<PyManager> {
        let shared = Shared {
            address: address.clone(),
            authkey: authkey.to_vec(),
            timeout,
            channels: Mutex::new(Channels { pid: std::process::id(), idle: Vec::new(), call_timeout: None }),
        };
        // Connecting and the handshake report their own errors; what comes after tells whether
        // the peer is a manager.
        let mut conn = shared.open(timeout)?;
        match Shared::exchange(&mut conn, "dummy", Vec::new()) {
            Ok(_) => Ok(PyManager { shared: Arc::new(shared) }),
            Err(Error::Eof | Error::Timeout(_)) => {
                Err(not_a_manager(address, "it closed the connection or did not answer"))
            }
            Err(e) => Err(not_a_manager(address, &e.to_string())),
        }
    }

    /// Bounds every later method call of this manager's proxies (and of its clones): a call whose
    /// reply takes longer fails with [`Error::Timeout`] (its channel is closed, so a late reply
    /// cannot be mistaken for the next call's). The method itself runs on in the server: a queue's
    /// `get` that timed out here still takes the next item there, which is then lost; bound such
    /// waits in the server instead ([`PyQueue::get_timeout`]). `None`, the default, waits as long
    /// as the method takes, as CPython does.
    pub fn set_call_timeout(&self, timeout: Option<Duration>) {
        self.shared.channels().call_timeout = timeout;
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Creates an object of the registered `typeid` in the server (or, for a typeid registered
    /// with a `callable` that returns a shared object, such as `get_queue`, gets that object) and
    /// returns a proxy for it. `args` are the constructor's arguments: a tuple (`()`, `(x,)`,
    /// `(x, y)`), or a `Vec` of them.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] for an unknown typeid (with the server's traceback);
    /// [`Error::PythonException`] never (the server reports a failing constructor as a traceback).
    #[doc(alias = "_create")]
    pub fn create<A: Serialize>(&self, typeid: &str, args: A) -> Result<PyProxy> {
        let mut request = vec![PickleValue::String(typeid.to_string())];
        request.extend(arguments(&args)?);
        let value = self.shared.one_shot("create", request)?;
        let bad =
            || Error::Protocol(format!("the manager's reply to create({typeid:?}) is not (id, exposed): {value}"));
        let (PickleValue::Tuple(parts) | PickleValue::List(parts)) = &value else { return Err(bad()) };
        let [PickleValue::String(ident), exposed] = parts.as_slice() else { return Err(bad()) };
        let exposed = match exposed {
            PickleValue::Tuple(names) | PickleValue::List(names) => names
                .iter()
                .filter_map(|n| if let PickleValue::String(n) = n { Some(n.clone()) } else { None })
                .collect(),
            _ => Vec::new(),
        };
        Ok(PyProxy::adopt(self.shared.clone(), typeid.to_string(), ident.clone(), exposed))
    }

    /// A [`PyQueue`] for the registered `typeid` (`'Queue'` of a `SyncManager`, or a typeid such
    /// as `'get_queue'` whose callable returns a `queue.Queue`).
    pub fn queue<A: Serialize>(&self, typeid: &str, args: A) -> Result<PyQueue> {
        self.create(typeid, args).map(PyQueue::from)
    }

    /// A [`PyDict`] for the registered `typeid` (`'dict'` of a `SyncManager`, or a typeid whose
    /// callable returns a dict and whose proxy type exposes its methods, such as `DictProxy`).
    pub fn dict<A: Serialize>(&self, typeid: &str, args: A) -> Result<PyDict> {
        self.create(typeid, args).map(PyDict::from)
    }

    /// How many objects the server holds references for (CPython `_number_of_objects()`).
    #[doc(alias = "_number_of_objects")]
    pub fn number_of_objects(&self) -> Result<usize> {
        match self.shared.one_shot("number_of_objects", Vec::new())? {
            PickleValue::I64(n) => {
                usize::try_from(n).map_err(|_| Error::Protocol(format!("a negative number of objects: {n}")))
            }
            other => Err(Error::Protocol(format!("number_of_objects returned {other}"))),
        }
    }

    /// The server's description of its objects and their reference counts (CPython
    /// `_debug_info()`).
    #[doc(alias = "_debug_info")]
    pub fn debug_info(&self) -> Result<String> {
        match self.shared.one_shot("debug_info", Vec::new())? {
            PickleValue::String(text) => Ok(text),
            other => Ok(other.to_string()),
        }
    }

    /// Asks the server to stop (CPython's `shutdown` request, which `BaseManager.shutdown()`
    /// sends). Proxies fail afterwards.
    pub fn shutdown(&self) -> Result<()> {
        self.shared.one_shot("shutdown", Vec::new()).map(drop)
    }
}

fn not_a_manager(address: &Address, detail: &str) -> Error {
    Error::Protocol(format!(
        "the peer at {address} accepted the authkey but is not a multiprocessing manager ({detail}); \
         check the address"
    ))
}

/// A method's arguments as a Python tuple's items: a Rust tuple, `()` for none, or a `Vec`.
fn arguments<A: Serialize>(args: &A) -> Result<Vec<PickleValue>> {
    let value = crate::pickle::to_value(args)?;
    Ok(match value {
        PickleValue::Tuple(items) | PickleValue::List(items) => items,
        PickleValue::None => Vec::new(),
        single => vec![single],
    })
}

fn keywords<K: Serialize>(kwargs: &K) -> Result<PickleValue> {
    match crate::pickle::to_value(kwargs)? {
        dict @ PickleValue::Dict(_) => Ok(dict),
        PickleValue::None => Ok(PickleValue::Dict(Default::default())),
        other => {
            Err(Error::Codec { action: "encode", detail: format!("keyword arguments must be a map, not {other}") })
        }
    }
}

fn encode_request(ident: Option<&str>, method: &str, args: Vec<PickleValue>, kwargs: PickleValue) -> Result<Vec<u8>> {
    let ident = ident.map_or(PickleValue::None, |i| PickleValue::String(i.to_string()));
    let request =
        PickleValue::Tuple(vec![ident, PickleValue::String(method.to_string()), PickleValue::Tuple(args), kwargs]);
    crate::pickle::value_to_vec(&request)
}

impl Shared {
    fn open(&self, timeout: Duration) -> Result<Connection> {
        let mut conn = connect_timeout(&self.address, Some(&self.authkey), timeout).map_err(|e| match e {
            Error::Authentication(detail) => Error::Authentication(format!(
                "{detail} (the manager at {} did not accept this authkey: pass the key its BaseManager was given)",
                self.address
            )),
            other => other,
        })?;
        conn.set_timeout(Some(timeout));
        Ok(conn)
    }

    /// A request to the server itself on a fresh connection (CPython `dispatch(conn, None, ...)`).
    fn one_shot(&self, method: &str, args: Vec<PickleValue>) -> Result<PickleValue> {
        self.one_shot_within(method, args, self.timeout)
    }

    fn one_shot_within(&self, method: &str, args: Vec<PickleValue>, timeout: Duration) -> Result<PickleValue> {
        let mut conn = self.open(timeout)?;
        Self::exchange(&mut conn, method, args)
    }

    /// Sends a request to the server itself on `conn` and returns the reply's value.
    fn exchange(conn: &mut Connection, method: &str, args: Vec<PickleValue>) -> Result<PickleValue> {
        conn.send_bytes(&encode_request(None, method, args, PickleValue::Dict(Default::default()))?)?;
        match decode_reply(&conn.recv_bytes()?)? {
            Reply::Return(value) => Ok(value),
            Reply::Proxy { typeid, .. } => {
                Err(Error::Protocol(format!("the manager answered {method} with a proxy of {typeid}")))
            }
        }
    }

    fn channels(&self) -> MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle channel of this process, or a new one (`accept_connection`).
    fn take_channel(&self) -> Result<Connection> {
        {
            let mut channels = self.channels();
            let me = std::process::id();
            if channels.pid != me {
                // Inherited through fork: the parent's channels are its own (dropping them here
                // closes this process's copies only).
                channels.idle.clear();
                channels.pid = me;
            }
            if let Some(mut conn) = channels.idle.pop() {
                conn.set_timeout(channels.call_timeout);
                return Ok(conn);
            }
        }
        let mut conn = self.open(self.timeout)?;
        let thread = std::thread::current();
        let name = match thread.name() {
            Some(thread) => format!("rust-{}|{thread}", std::process::id()),
            None => format!("rust-{}|{:?}", std::process::id(), thread.id()),
        };
        conn.send_bytes(&encode_request(
            None,
            "accept_connection",
            vec![PickleValue::String(name)],
            PickleValue::Dict(Default::default()),
        )?)?;
        decode_reply(&conn.recv_bytes()?)?;
        conn.set_timeout(self.channels().call_timeout);
        Ok(conn)
    }

    /// Sends one call on a channel and returns the reply's bytes; the channel goes back to the
    /// pool only when the exchange completed.
    fn call(&self, request: &[u8]) -> Result<Vec<u8>> {
        let mut conn = self.take_channel()?;
        conn.send_bytes(request)?;
        let reply = conn.recv_bytes()?;
        let mut channels = self.channels();
        if channels.pid == std::process::id() {
            channels.idle.push(conn);
        }
        Ok(reply)
    }
}

/// A reference to an object in a CPython manager's server (CPython `BaseProxy`, `AutoProxy`).
///
/// [`call`](Self::call) runs one of the object's methods with serde-typed arguments and result;
/// [`call_value`](Self::call_value) returns the result as a [`PickleValue`] whatever its shape.
#[doc(alias = "BaseProxy")]
#[doc(alias = "AutoProxy")]
pub struct PyProxy {
    manager: Arc<Shared>,
    typeid: String,
    ident: String,
    exposed: Vec<String>,
    /// The process that holds this proxy's reference in the server (a forked child takes its own
    /// on first use).
    holder: Mutex<u32>,
}

impl fmt::Debug for PyProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyProxy")
            .field("typeid", &self.typeid)
            .field("id", &self.ident)
            .field("address", &self.manager.address)
            .finish()
    }
}

impl PyProxy {
    /// A proxy owning one reference the server already counted.
    fn adopt(manager: Arc<Shared>, typeid: String, ident: String, exposed: Vec<String>) -> PyProxy {
        PyProxy { manager, typeid, ident, exposed, holder: Mutex::new(std::process::id()) }
    }

    /// The typeid the object was registered under (CPython `_token.typeid`).
    pub fn typeid(&self) -> &str {
        &self.typeid
    }

    /// The object's identity in the server (CPython `_token.id`, `'%x' % id(obj)`).
    pub fn id(&self) -> &str {
        &self.ident
    }

    /// The methods the server lets this proxy call (CPython `_exposed_`).
    pub fn exposed(&self) -> &[String] {
        &self.exposed
    }

    /// Takes a reference in this process if the proxy came from another (through fork).
    fn hold(&self) -> Result<()> {
        let mut holder = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        let me = std::process::id();
        if *holder != me {
            self.manager.one_shot("incref", vec![PickleValue::String(self.ident.clone())])?;
            *holder = me;
        }
        Ok(())
    }

    fn invoke(&self, method: &str, args: Vec<PickleValue>, kwargs: PickleValue) -> Result<Reply> {
        self.hold()?;
        let request = encode_request(Some(&self.ident), method, args, kwargs)?;
        decode_reply(&self.manager.call(&request)?)
    }

    fn value_of(&self, method: &str, reply: Reply) -> Result<PickleValue> {
        match reply {
            Reply::Return(value) => Ok(value),
            Reply::Proxy { typeid, ident, exposed } => {
                // Release the new object rather than leak it.
                drop(PyProxy::adopt(self.manager.clone(), typeid.clone(), ident, exposed));
                Err(Error::InvalidState(format!(
                    "{}.{method} returned a proxy of a {typeid:?} object (the method is in the type's \
                     method_to_typeid); use `call_proxy` to keep it",
                    self.typeid
                )))
            }
        }
    }

    /// Calls `method` with `args` (a tuple: `()`, `(x,)`, `(x, y)`, or a `Vec`) in the server and
    /// decodes its result as `R` (CPython `_callmethod`).
    ///
    /// # Errors
    ///
    /// [`Error::PythonException`] when the method raises; [`Error::Remote`] when the server
    /// fails otherwise (the method is not exposed, the result cannot be pickled);
    /// [`Error::Codec`] when the result does not decode as `R`; [`Error::Eof`] or [`Error::Io`]
    /// when the server is gone.
    #[doc(alias = "_callmethod")]
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: A) -> Result<R> {
        let value = self.call_value(method, args)?;
        crate::pickle::from_value(value).map_err(|e| Error::Codec {
            action: "decode",
            detail: format!("the result of {}.{method}: {e}", self.typeid),
        })
    }

    /// Like [`call`](Self::call), with keyword arguments too (`kwargs` is a map from names to
    /// values, such as a `BTreeMap<&str, PickleValue>`).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call); [`Error::Codec`] when `kwargs` is not a map.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use multiproc::manager::cpython::PyManager;
    /// use multiproc::pickle::PickleValue;
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// # let server = multiproc::manager::Server::bind::<()>("127.0.0.1:0".parse()?, Some(b"key"))?;
    /// # let address = server.address().clone();
    /// # std::thread::spawn(move || server.serve_forever());
    /// let manager = PyManager::connect(&address, b"key")?;
    /// let queue = manager.queue("Queue", ())?;
    /// // queue.put({1, 2}, block=False), a set and a keyword argument:
    /// let kwargs = BTreeMap::from([("block", PickleValue::Bool(false))]);
    /// queue.call_with_kwargs::<_, _, ()>("put", (PickleValue::Set(vec![1.into(), 2.into()]),), &kwargs)?;
    /// assert_eq!(queue.get::<PickleValue>()?.to_string(), "{1, 2}");
    /// # manager.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_with_kwargs<A: Serialize, K: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
        kwargs: &K,
    ) -> Result<R> {
        let reply = self.invoke(method, arguments(&args)?, keywords(kwargs)?)?;
        let value = self.value_of(method, reply)?;
        crate::pickle::from_value(value).map_err(|e| Error::Codec {
            action: "decode",
            detail: format!("the result of {}.{method}: {e}", self.typeid),
        })
    }

    /// Like [`call`](Self::call), returning the result exactly as pickled: tuples stay tuples,
    /// sets stay sets, integers of any size.
    pub fn call_value<A: Serialize>(&self, method: &str, args: A) -> Result<PickleValue> {
        let reply = self.invoke(method, arguments(&args)?, PickleValue::Dict(Default::default()))?;
        self.value_of(method, reply)
    }

    /// Calls a method whose result the server keeps and hands out as a new proxy (a method listed
    /// in the type's `method_to_typeid`, CPython's `'#PROXY'` reply).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the method returned a plain value instead.
    pub fn call_proxy<A: Serialize>(&self, method: &str, args: A) -> Result<PyProxy> {
        match self.invoke(method, arguments(&args)?, PickleValue::Dict(Default::default()))? {
            Reply::Proxy { typeid, ident, exposed } => Ok(PyProxy::adopt(self.manager.clone(), typeid, ident, exposed)),
            Reply::Return(value) => Err(Error::InvalidState(format!(
                "{}.{method} returned a plain value ({value}), not a proxy; use `call`",
                self.typeid
            ))),
        }
    }

    /// A copy of the object (CPython `_getvalue()`).
    #[doc(alias = "_getvalue")]
    pub fn get_value<R: DeserializeOwned>(&self) -> Result<R> {
        self.call("#GETVALUE", ())
    }

    /// The object's `repr()` in the server.
    pub fn repr(&self) -> Result<String> {
        self.call("__repr__", ())
    }

    /// A second proxy for the same object, with its own reference.
    pub fn try_clone(&self) -> Result<PyProxy> {
        self.hold()?;
        self.manager.one_shot("incref", vec![PickleValue::String(self.ident.clone())])?;
        Ok(PyProxy::adopt(self.manager.clone(), self.typeid.clone(), self.ident.clone(), self.exposed.clone()))
    }
}

impl Drop for PyProxy {
    /// Releases this proxy's reference (CPython's `decref` finalizer); the server frees the object
    /// when the last one goes. A server that is gone or slow is given up on after a few seconds.
    fn drop(&mut self) {
        let holder = *self.holder.lock().unwrap_or_else(|p| p.into_inner());
        if holder != std::process::id() {
            return;
        }
        let timeout = self.manager.timeout.min(RELEASE_TIMEOUT);
        if let Err(e) = self.manager.one_shot_within("decref", vec![PickleValue::String(self.ident.clone())], timeout) {
            tracing::debug!(typeid = %self.typeid, id = %self.ident, error = %e, "could not release a CPython manager's object");
        }
    }
}
