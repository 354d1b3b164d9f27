//! [`ObjectProxy`]: a reference to one object in a manager's server, the untyped core of every
//! typed proxy.
//!
//! A proxy owns one connection to the server. It travels to other processes as the server's
//! address, the authkey and the object's number, plus a ticket: serializing (or cloning) a proxy
//! asks the server to keep a reference for the copy, which the copy takes over as soon as it is
//! decoded (a clone: on first use). So the object stays alive while a proxy is on its way, and is freed when
//! the last proxy's connection closes, including when a process holding one is killed.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::protocol::{self, Failure, MAX_MESSAGE, ObjectId, Reply, Request};
use super::server::Shared;
use crate::Connection;
use crate::connection::{Address, connect};
use crate::error::{Error, Result};

/// Where a manager's server listens, and the key it wants.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Endpoint {
    pub(crate) address: Address,
    pub(crate) authkey: Option<Vec<u8>>,
    /// The server itself when it runs in this process ([`Server::client`](super::Server::client)),
    /// with this process's id (a forked child connects to the address instead). Never sent.
    #[serde(skip)]
    local: Option<(Arc<Shared>, u32)>,
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Endpoint) -> bool {
        self.address == other.address && self.authkey == other.authkey
    }
}

impl Eq for Endpoint {}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Endpoint").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Endpoint {
    pub(crate) fn new(address: Address, authkey: Option<Vec<u8>>) -> Endpoint {
        Endpoint { address, authkey, local: None }
    }

    /// The endpoint of a server in this process.
    pub(crate) fn local(address: Address, authkey: Option<Vec<u8>>, shared: Arc<Shared>) -> Endpoint {
        Endpoint { address, authkey, local: Some((shared, std::process::id())) }
    }

    /// The server, if it runs in this process.
    fn in_process(&self) -> Option<&Arc<Shared>> {
        self.local.as_ref().filter(|(_, pid)| *pid == std::process::id()).map(|(shared, _)| shared)
    }

    /// A new authenticated connection to the server (in this process: a pipe to a server thread
    /// of its own).
    pub(crate) fn connect(&self) -> Result<Connection> {
        let mut conn = match self.in_process() {
            Some(shared) => {
                let (ours, theirs) = crate::pipe()?;
                super::server::spawn_client(shared, theirs, false);
                ours
            }
            None => connect(&self.address, self.authkey.as_deref())?,
        };
        conn.set_max_message_size(MAX_MESSAGE);
        Ok(conn)
    }

    /// A new authenticated connection for a proxy's calls: on this machine, moved to a pipe with
    /// shared-memory rings (a few hundred microseconds once, then calls without system calls while
    /// both sides keep up).
    pub(crate) fn connect_for_calls(&self) -> Result<Connection> {
        let mut conn = self.connect()?;
        if self.in_process().is_some() {
            return Ok(conn);
        }
        match self.address {
            // A server on this machine: move to a pipe with shared-memory rings, where a call
            // makes no system call while both sides keep up.
            Address::Unix(_) | Address::Abstract(_) => {
                round_trip::<()>(&mut conn, &Request::Upgrade)?;
                let mut pipe_end: Connection = conn.recv()?;
                pipe_end.set_max_message_size(MAX_MESSAGE);
                Ok(pipe_end)
            }
            Address::Tcp(_) => Ok(conn),
        }
    }
}

/// Sends one request on `conn` and decodes the reply's value (postcard) as `R`.
pub(crate) fn round_trip<R: DeserializeOwned>(conn: &mut Connection, request: &Request) -> Result<R> {
    match exchange(conn, request)? {
        Ok(bytes) => protocol::decode(&bytes),
        Err(failure) => Err(failure.into()),
    }
}

/// Sends one request on `conn` and returns the reply: its bytes, or the server's failure.
fn exchange(conn: &mut Connection, request: &Request) -> Result<std::result::Result<Vec<u8>, Failure>> {
    conn.send_bytes(&protocol::encode(request)?)?;
    match protocol::decode::<Reply>(&conn.recv_bytes()?)? {
        Reply::Ok(bytes) => Ok(Ok(bytes)),
        Reply::Err(failure) => Ok(Err(failure)),
    }
}

/// The ticket that no proxy holds: adopting it takes a new reference to a live object (a proxy
/// inherited through `fork`, whose connection belongs to the parent).
const NO_TICKET: u64 = 0;

/// The state of a proxy's connection.
enum Link {
    /// Not connected yet: the proxy arrived from elsewhere and holds a ticket for its reference.
    Ticket(u64),
    /// Connected, by the process with this id (a forked child must not use its parent's socket).
    Open(Connection, u32),
    /// Cloning failed; the reason, for every later call.
    Failed(String),
}

/// A reference to one object in a manager's server (CPython `BaseProxy`). Typed proxies wrap one;
/// a registered type's proxy calls [`call_method`](Self::call_method).
pub struct ObjectProxy {
    endpoint: Endpoint,
    id: ObjectId,
    link: Mutex<Link>,
}

impl fmt::Debug for ObjectProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectProxy").field("address", &self.endpoint.address).field("id", &self.id).finish()
    }
}

impl ObjectProxy {
    /// Creates an object of `typeid` from `args` (a tuple) in the server; the new proxy's
    /// connection owns it.
    pub(crate) fn create<A: Serialize + ?Sized>(
        endpoint: &Endpoint,
        typeid: &str,
        args: &A,
        name: Option<String>,
    ) -> Result<ObjectProxy> {
        let args = crate::pickle::to_vec(args)?;
        let mut conn = endpoint.connect_for_calls()?;
        let id: ObjectId = round_trip(&mut conn, &Request::Create { typeid: typeid.to_string(), args, name })?;
        Ok(ObjectProxy { endpoint: endpoint.clone(), id, link: Mutex::new(Link::Open(conn, std::process::id())) })
    }

    /// The object's number in its server (CPython `_id`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The address of the server that holds the object.
    pub fn address(&self) -> &Address {
        &self.endpoint.address
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the connection if needed (adopting the ticket) and sends one request.
    fn request<R: DeserializeOwned>(&self, request: &Request) -> Result<R> {
        match self.send_request(request)? {
            Ok(bytes) => protocol::decode(&bytes),
            Err(failure) => Err(failure.into()),
        }
    }

    /// Opens the connection if needed (adopting the ticket), sends one request and returns the
    /// reply.
    fn send_request(&self, request: &Request) -> Result<std::result::Result<Vec<u8>, Failure>> {
        let mut link = self.link();
        let me = std::process::id();
        if let Link::Open(conn, owner) = &mut *link
            && *owner == me
        {
            return exchange(conn, request);
        }
        let ticket = match &*link {
            Link::Ticket(ticket) => *ticket,
            Link::Open(..) => NO_TICKET,
            Link::Failed(reason) => return Err(Error::InvalidState(reason.clone())),
        };
        let mut conn = adopt(&self.endpoint, ticket, self.id, true)?;
        // An inherited connection is closed here only: the parent's stays open.
        let result = exchange(&mut conn, request);
        *link = Link::Open(conn, me);
        result
    }

    /// Calls `method` with `args` (a tuple): the pickled result, or the server's failure (a
    /// Python exception the typed proxies turn into this crate's errors).
    pub(crate) fn invoke<A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<std::result::Result<Vec<u8>, Failure>> {
        let args = crate::pickle::to_vec(args)?;
        self.send_request(&Request::Call { id: self.id, method: method.to_string(), args })
    }

    /// Calls `method` with `args` (a tuple) and decodes the result as `R`.
    pub(crate) fn call<A: Serialize + ?Sized, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        match self.invoke(method, args)? {
            Ok(bytes) => crate::pickle::from_slice(&bytes),
            Err(failure) => Err(failure.into()),
        }
    }

    /// Calls `method` of the object with `args` (a tuple of its arguments: `()`, `(x,)`,
    /// `(x, y)`) in the server and decodes its result; the proxies generated by
    /// `#[multiproc::managed]` do this, and any method of a built-in object can be called so
    /// (with Python's arguments: `call_method::<_, i64>("__len__", &())`).
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] with the server's message (`"KeyError: 'x'"`) when the method fails or
    /// does not exist; [`Error::Codec`] when the result is not an `R`; the connection's errors
    /// when the server is gone.
    #[doc(alias = "callmethod")]
    #[doc(alias = "_callmethod")]
    pub fn call_method<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        self.call(method, args)
    }

    /// A reference for a copy of this proxy: the ticket it will adopt.
    fn lend(&self) -> Result<u64> {
        self.request(&Request::Lend { id: self.id })
    }

    /// A second proxy for the same object, with its own connection (so that two threads can wait
    /// in the server at the same time).
    pub fn try_clone(&self) -> Result<ObjectProxy> {
        let ticket = self.lend()?;
        Ok(ObjectProxy { endpoint: self.endpoint.clone(), id: self.id, link: Mutex::new(Link::Ticket(ticket)) })
    }
}

impl Clone for ObjectProxy {
    /// Like [`try_clone`](ObjectProxy::try_clone); if the server cannot be reached, the clone's
    /// calls fail with the reason.
    fn clone(&self) -> ObjectProxy {
        self.try_clone().unwrap_or_else(|e| ObjectProxy {
            endpoint: self.endpoint.clone(),
            id: self.id,
            link: Mutex::new(Link::Failed(format!("this proxy could not be cloned: {e}"))),
        })
    }
}

impl Drop for ObjectProxy {
    fn drop(&mut self) {
        // A ticket never adopted is a reference the server keeps: adopt it, and closing the
        // connection releases it.
        if let Link::Ticket(ticket) = *self.link() {
            let _ = adopt(&self.endpoint, ticket, self.id, false);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Travelling {
    endpoint: Endpoint,
    id: ObjectId,
    ticket: u64,
}

/// A new connection that owns a reference to `id`: the ticket's, or a new one. `for_calls`: the
/// proxy will call through it (see [`Endpoint::connect_for_calls`]).
fn adopt(endpoint: &Endpoint, ticket: u64, id: ObjectId, for_calls: bool) -> Result<Connection> {
    let mut conn = if for_calls { endpoint.connect_for_calls()? } else { endpoint.connect()? };
    round_trip::<ObjectId>(&mut conn, &Request::Adopt { ticket, id })?;
    Ok(conn)
}

impl Serialize for ObjectProxy {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let ticket = self.lend().map_err(crate::reduction::encode_failure)?;
        Travelling { endpoint: self.endpoint.clone(), id: self.id, ticket }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ObjectProxy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let Travelling { endpoint, id, ticket } = Travelling::deserialize(deserializer)?;
        // Adopt at once, so that a process killed right after it received the proxy leaves no
        // reference behind; if the server cannot be reached now, the first call tries again.
        let link = match adopt(&endpoint, ticket, id, true) {
            Ok(conn) => Link::Open(conn, std::process::id()),
            Err(e @ Error::Remote(_)) => Link::Failed(format!("this proxy's object is gone: {e}")),
            Err(_) => Link::Ticket(ticket),
        };
        Ok(ObjectProxy { endpoint, id, link: Mutex::new(link) })
    }
}
