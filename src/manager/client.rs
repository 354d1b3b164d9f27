//! [`ManagerClient`]: a connection to a manager's server, local or remote, that creates objects
//! there and hands out their proxies.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::Request;
use super::proxy::{Endpoint, ObjectProxy, round_trip};
use super::registry::Managed;
use super::sync_manager::{
    ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy,
    PriorityQueueProxy, QueueProxy, SemaphoreProxy, SetProxy, ValueProxy,
};
use crate::Connection;
use crate::connection::Address;
use crate::error::Result;

/// A client of a manager's server (CPython: a `BaseManager` after `connect()`): creates objects
/// in the server and returns their proxies. [`BaseManager`](super::BaseManager) dereferences to
/// one; [`ManagerClient::connect`] makes one for a server another process started.
///
/// # Examples
///
/// ```
/// use multiproc::manager::ManagerClient;
///
/// # fn main() -> multiproc::Result<()> {
/// # let server = multiproc::manager::Server::bind::<()>("127.0.0.1:0".parse()?, Some(b"abracadabra"))?;
/// # let address = server.address().clone();
/// # std::thread::spawn(move || server.serve_forever());
/// // A server at `address`, started by another process (`Server::bind` and `serve_forever`,
/// // or `BaseManager::start_at`); a CPython manager's server is reached with
/// // `manager::cpython::PyManager` instead.
/// let manager = ManagerClient::connect(address, Some(b"abracadabra"))?;
/// let jobs = manager.named("jobs").queue::<u32>()?;
/// jobs.put(&7)?;
/// assert_eq!(jobs.get()?, 7);
/// # manager.shutdown()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ManagerClient {
    pub(crate) endpoint: Endpoint,
    /// A connection for requests that concern no object (object count, shutdown).
    /// With the id of the process that opened it (a forked child opens its own).
    control: Mutex<Option<(Connection, u32)>>,
}

/// Creators named as CPython's `SyncManager` methods; expanded in [`ManagerClient`] (new
/// objects) and [`Named`] (objects shared under a name).
macro_rules! creators {
    () => {
        /// A new dict (CPython `manager.dict()`).
        pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
            &self,
        ) -> Result<DictProxy<K, V>> {
            self.make("dict", &())
        }

        /// A new list holding `items` (CPython `manager.list(items)`).
        pub fn list<T: Serialize + DeserializeOwned>(&self, items: &[T]) -> Result<ListProxy<T>> {
            self.make("list", &(items,))
        }

        /// A new empty set (CPython 3.14 `manager.set()`).
        pub fn set<T: Serialize + DeserializeOwned>(&self) -> Result<SetProxy<T>> {
            self.make("set", &())
        }

        /// A new set holding `items`, duplicates dropped (CPython `manager.set(iterable)`).
        pub fn set_from<T: Serialize + DeserializeOwned>(&self, items: &[T]) -> Result<SetProxy<T>> {
            self.make("set", &(items,))
        }

        /// A new namespace (CPython `manager.Namespace()`).
        #[doc(alias = "Namespace")]
        pub fn namespace(&self) -> Result<NamespaceProxy> {
            self.make("Namespace", &())
        }

        /// A new unbounded FIFO queue (CPython `manager.Queue()`; for CPython's
        /// `manager.Queue(maxsize)`, see [`bounded_queue`](Self::bounded_queue)).
        #[doc(alias = "Queue")]
        pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
            self.make("Queue", &())
        }

        /// A new FIFO queue holding at most `maxsize` items (CPython `manager.Queue(maxsize)`;
        /// 0 is no limit, as in CPython).
        pub fn bounded_queue<T: Serialize + DeserializeOwned>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
            self.make("Queue", &(maxsize,))
        }

        /// A new joinable queue (CPython `manager.JoinableQueue()`).
        #[doc(alias = "JoinableQueue")]
        pub fn joinable_queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
            self.make("JoinableQueue", &())
        }

        /// A new last-in first-out queue (CPython `queue.LifoQueue` through a manager).
        #[doc(alias = "LifoQueue")]
        pub fn lifo_queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
            self.make("LifoQueue", &())
        }

        /// A new priority queue (CPython `queue.PriorityQueue` through a manager).
        #[doc(alias = "PriorityQueue")]
        pub fn priority_queue<T: Serialize + DeserializeOwned>(&self) -> Result<PriorityQueueProxy<T>> {
            self.make("PriorityQueue", &())
        }

        /// A new lock (CPython `manager.Lock()`).
        #[doc(alias = "Lock")]
        pub fn lock(&self) -> Result<LockProxy> {
            self.make("Lock", &())
        }

        /// A new re-entrant lock (CPython `manager.RLock()`).
        #[doc(alias = "RLock")]
        pub fn rlock(&self) -> Result<LockProxy> {
            self.make("RLock", &())
        }

        /// A new semaphore with `value` permits (CPython `manager.Semaphore(value)`).
        #[doc(alias = "Semaphore")]
        pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
            self.make("Semaphore", &(value,))
        }

        /// A new bounded semaphore (CPython `manager.BoundedSemaphore(value)`).
        #[doc(alias = "BoundedSemaphore")]
        pub fn bounded_semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
            self.make("BoundedSemaphore", &(value,))
        }

        /// A new condition with its own re-entrant lock (CPython `manager.Condition()`).
        #[doc(alias = "Condition")]
        pub fn condition(&self) -> Result<ConditionProxy> {
            self.make("Condition", &())
        }

        /// A new event (CPython `manager.Event()`).
        #[doc(alias = "Event")]
        pub fn event(&self) -> Result<EventProxy> {
            self.make("Event", &())
        }

        /// A new barrier for `parties` (CPython `manager.Barrier(parties, timeout=...)`).
        #[doc(alias = "Barrier")]
        pub fn barrier(&self, parties: u64, timeout: Option<Duration>) -> Result<BarrierProxy> {
            self.make("Barrier", &(parties, (), timeout.map(|t| t.as_secs_f64())))
        }

        /// A new value (CPython `manager.Value(typecode, value)`; the typecode is Python's
        /// `None` here: the value is any serde value).
        #[doc(alias = "Value")]
        pub fn value<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<ValueProxy<T>> {
            self.make("Value", &((), value))
        }

        /// A new fixed-length array (CPython `manager.Array(typecode, sequence)`; without a
        /// typecode here: the items are any serde values).
        #[doc(alias = "Array")]
        pub fn array<T: Serialize + DeserializeOwned>(&self, items: &[T]) -> Result<ArrayProxy<T>> {
            self.make("Array", &((), items))
        }

        /// A new object of a registered type, starting from `value` (CPython: the method a
        /// `register(typeid, callable)` adds). [`Error::Remote`](crate::Error::Remote) if the
        /// manager's registry does not list `T`.
        #[doc(alias = "register")]
        pub fn create<T: Managed>(&self, value: T) -> Result<T::Proxy> {
            self.make(T::TYPE_NAME, &(value,))
        }
    };
}

impl ManagerClient {
    /// A client of the server at `address` (CPython `BaseManager(address, authkey).connect()`);
    /// checks now that the server answers and accepts the key.
    ///
    /// # Errors
    ///
    /// Nobody listening; [`Error::Authentication`](crate::Error::Authentication) for a wrong key.
    pub fn connect(address: Address, authkey: Option<&[u8]>) -> Result<ManagerClient> {
        let client = ManagerClient::new(Endpoint::new(address, authkey.map(<[u8]>::to_vec)));
        client.object_count()?;
        Ok(client)
    }

    pub(crate) fn new(endpoint: Endpoint) -> ManagerClient {
        ManagerClient { endpoint, control: Mutex::new(None) }
    }

    /// A client whose control requests go over `control`, a connection the server already serves
    /// (the pipe a starting server reported its address on), so that they need no new connection.
    pub(crate) fn with_control(endpoint: Endpoint, control: Connection) -> ManagerClient {
        ManagerClient { endpoint, control: Mutex::new(Some((control, std::process::id()))) }
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.endpoint.address
    }

    pub(super) fn control<R: DeserializeOwned>(&self, request: &Request) -> Result<R> {
        self.control_within(request, None)
    }

    /// [`control`](Self::control) with each step of the round trip bounded by `timeout` (`None`:
    /// unbounded).
    fn control_within<R: DeserializeOwned>(&self, request: &Request, timeout: Option<Duration>) -> Result<R> {
        let mut control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let me = std::process::id();
        let conn = match &mut *control {
            Some((conn, owner)) if *owner == me => conn,
            stale => &mut stale.insert((self.endpoint.connect()?, me)).0,
        };
        conn.set_timeout(timeout);
        let result = round_trip(conn, request);
        conn.set_timeout(None);
        if result.is_err() {
            *control = None;
        }
        result
    }

    /// How many objects the server holds (for tests and leak hunting).
    pub fn object_count(&self) -> Result<u64> {
        self.control(&Request::ObjectCount)
    }

    /// Asks the server to stop (CPython `shutdown()` on a connected manager). Proxies fail from
    /// then on.
    pub fn shutdown(&self) -> Result<()> {
        self.control(&Request::Shutdown)
    }

    /// Asks the server to stop, giving up with [`Error::Timeout`](crate::Error::Timeout) when it
    /// does not answer within `timeout` (a stopped or hung server): for the server's owner, which
    /// kills it then.
    pub(super) fn ask_to_stop(&self, timeout: Duration) -> Result<()> {
        self.control_within(&Request::Shutdown, Some(timeout))
    }

    /// Objects shared under `name`: the first client to ask creates the object, later ones
    /// (in any process) get a proxy for the same one. Named objects live as long as the server
    /// (CPython: `register('get_queue', callable=lambda: queue)` on a served manager).
    pub fn named<'a>(&'a self, name: &str) -> Named<'a> {
        Named { client: self, name: name.to_string() }
    }

    fn make<P: From<ObjectProxy>, A: Serialize + ?Sized>(&self, typeid: &str, args: &A) -> Result<P> {
        ObjectProxy::create(&self.endpoint, typeid, args, None).map(P::from)
    }

    creators!();
}

/// Objects shared under one name in a manager's server (see [`ManagerClient::named`]).
#[derive(Debug)]
pub struct Named<'a> {
    client: &'a ManagerClient,
    name: String,
}

impl Named<'_> {
    fn make<P: From<ObjectProxy>, A: Serialize + ?Sized>(&self, typeid: &str, args: &A) -> Result<P> {
        ObjectProxy::create(&self.client.endpoint, typeid, args, Some(self.name.clone())).map(P::from)
    }

    creators!();
}
