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
//!   under a name (CPython's `register('get_queue', callable=...)` pattern). A key is required
//!   to listen on a non-loopback TCP address.
//! * [`SharedMemoryManager`] (CPython `SharedMemoryManager`) creates named shared memory blocks
//!   ([`SharedMemory`](crate::SharedMemory), [`ShareableList`](crate::ShareableList)) in the
//!   calling process and has its server unlink them all when it stops.
//!
//! # Design
//!
//! Requests and replies are typed serde enums (`protocol`), sent as postcard in the frames of our
//! [`Connection`](crate::Connection), after CPython's authkey handshake. The server (`server`)
//! runs a thread per connection; calls that wait (a queue's `get`, a lock's `acquire`) wait in
//! the server, and notice a caller that disconnects. Values in containers travel and are stored as
//! their encoded bytes, so the server needs no type information for them.
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
//! with the server's message; a malformed request gets an error reply and the connection goes on;
//! a lock held through a connection that closes is released.
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
