//! Managers (CPython `multiprocessing.managers`): objects that live in a server process and are
//! used from any process through proxies.
//!
//! * [`Manager`] (CPython `SyncManager`, `multiprocessing.Manager()`) starts the server and
//!   creates dicts, lists, sets, namespaces, queues, locks, semaphores, conditions, events,
//!   barriers, values and arrays in it ([`ManagerClient`] has the methods). Each proxy is typed
//!   ([`DictProxy<K, V>`] holds serde `K` and `V`; [`Value`] holds values of mixed types).
//! * [`BaseManager<R>`] serves user types too: `R` lists them, each implementing [`Managed`]
//!   (written for you by `#[multiproc::managed]` from the `multiproc-derive` crate, which also
//!   generates the typed proxy).
//! * Remote managers: [`Server::bind`] + [`Server::serve_forever`] serve on TCP or a Unix socket
//!   with an authkey ([`BaseManager::start_at`] does the same in a child process), and
//!   [`ManagerClient::connect`] reaches it from anywhere; [`ManagerClient::named`] shares objects
//!   under a name, and [`Server::register`] names an object the server's owner made and filled
//!   through [`Server::client`] (CPython's `register('get_queue', callable=lambda: queue)`). A
//!   key is required to listen on a non-loopback TCP address.
//! * CPython clients: a `BaseManager`/`SyncManager` of CPython, unchanged, connects to the same
//!   server (`m.connect()`, `m.dict()`, `m.Queue()`, `register('get_queue')`) and shares its
//!   objects with Rust clients; see "Mixing Python and Rust" in the crate's documentation.
//! * [`SharedMemoryManager`] (CPython `SharedMemoryManager`) creates named shared memory blocks
//!   ([`SharedMemory`](crate::SharedMemory), [`ShareableList`](crate::ShareableList)) in the
//!   calling process and has its server unlink them all when it stops.
//!
//! # Design
//!
//! Every object in the server, built-in or user type, is an entry of one table of types
//! ([`TypeTable`]) and answers method calls by name, with Python's arguments, results and
//! exceptions (`objects`). Values travel pickled ([`crate::pickle`]) and live in the server as
//! Python values, so both fronts of the server share them: this crate's proxies (requests in
//! postcard, in the frames of our [`Connection`](crate::Connection)) and CPython's clients
//! (CPython's protocol, `python_front`). One address serves both: after CPython's authkey
//! handshake, the first request tells the protocols apart. The server runs a thread per
//! connection; calls that wait (a queue's `get`, a lock's `acquire`) wait in the server, and
//! notice a caller that disconnects.
//!
//! A [`BaseManager`] keeps the pipe its server reported its address on, and the server serves it
//! as one more client: the owner's requests that concern no object (`object_count`, `shutdown`)
//! go over it. So `shutdown` opens no connection (CPython's opens one and authenticates), and
//! still reaches a server whose address can no longer be reached (a socket file removed). A stop
//! request shuts the listening socket down, which wakes the accept loop; the address is free again
//! when [`Server::serve_forever`] returns, even while clients are still connected.
//!
//! References belong to connections: every proxy owns one connection, and
//! whatever it created or adopted is released when that connection closes: a dropped proxy, a
//! killed process. A proxy sent to another process carries a ticket for a reference the server
//! keeps until the copy adopts it (as soon as it is decoded). An object goes when its last reference does; tests watch
//! [`ManagerClient::object_count`].
//!
//! Under the fork start method, a proxy captured by a child's closure notices that it is in
//! another process and opens its own connection (with its own reference) instead of sharing its
//! parent's; a forked copy of the manager leaves the server alone when dropped.
//!
//! A proxy makes one call at a time (its connection carries one request, then its reply): threads
//! that wait on the same object at once, say in a condition's `wait` while another notifies, each
//! use a clone of the proxy. A proxy stored in a managed container keeps its object alive until
//! the first copy read back from the container adopts that reference; keep a proxy of your own for
//! objects you nest.
//!
//! Failures: a method that fails in the server comes back as [`Error::Remote`](crate::Error::Remote)
//! with the exception CPython's server would raise and its message (`"KeyError: 'x'"`), or as the
//! typed error a proxy method documents ([`Error::Timeout`](crate::Error::Timeout) for a queue's
//! `get_timeout`); a malformed request, or one over the 64 MiB limit, gets an error reply and the
//! connection goes on; a lock held through a connection that closes is released.
//!
//! # Examples
//!
//! ```no_run
//! use multiproc::Manager;
//! use multiproc::manager::Value;
//!
//! # fn main() -> multiproc::Result<()> {
//! let manager = Manager::start()?;
//! let d = manager.dict::<Value, Value>()?;
//! d.insert(&1.into(), &"1".into())?;
//! d.insert(&"2".into(), &2.into())?;
//! d.insert(&0.25.into(), &Value::None)?;
//! assert_eq!(d.len()?, 3);
//! # Ok(())
//! # }
//! ```

mod channel;
mod client;
#[cfg(feature = "pickle")]
pub mod cpython;
mod objects;
mod owner;
pub(crate) mod protocol;
mod proxy;
mod python_front;
mod registry;
pub(crate) mod server;
mod shared_memory_manager;
mod sync_manager;
mod value;

pub use client::{ManagerClient, Named};
pub use owner::{BaseManager, Manager};
pub use protocol::Slice;
pub use proxy::ObjectProxy;
pub use registry::{Managed, Registry, TypeTable};
pub use server::Server;
pub use shared_memory_manager::{SharedMemoryClient, SharedMemoryManager};
pub use sync_manager::ListIter;
pub use sync_manager::{
    ArrayProxy, BarrierProxy, ConditionProxy, ConditionProxyGuard, DictProxy, EventProxy, ListProxy, LockProxy,
    LockProxyGuard, NamespaceProxy, PriorityQueueProxy, QueueProxy, SemaphoreProxy, SetProxy, ValueProxy,
};
pub use value::Value;

/// Support for the code `#[multiproc::managed]` generates; not part of the API.
#[doc(hidden)]
pub mod __macro_support {
    pub use serde;

    /// Decodes a method's arguments (a pickled tuple) for the generated dispatcher.
    pub fn decode_args<T: serde::de::DeserializeOwned>(method: &str, args: &[u8]) -> Result<T, String> {
        crate::pickle::from_slice(args).map_err(|e| format!("bad arguments for {method}: {e}"))
    }

    /// Encodes a method's result (pickled) for the generated dispatcher.
    pub fn encode_result<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
        crate::pickle::to_vec(value).map_err(|e| e.to_string())
    }
}
