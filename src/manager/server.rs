//! The manager's server: a listener, a thread per client connection, and the table of objects
//! with their reference counts. One address serves both protocols: after the authkey handshake,
//! the first request tells them apart (a CPython client's is a pickle, which starts with `0x80`;
//! this crate's proxies send postcard, whose first byte is a small request number), and the
//! connection is served by the front that speaks it (`python_front` for CPython's).
//!
//! References belong to connections for this crate's proxies: the objects a proxy created or
//! adopted are released when its connection closes, however it closes (the proxy dropped, its
//! process killed). A proxy in transit (serialized for another process, or cloned) holds a
//! *ticket*: a reference the server keeps until the new proxy adopts it on its connection.
//! CPython's clients count their references with `incref` and `decref` requests instead, as
//! CPython's server does. An object is freed when its last reference goes; named objects live as
//! long as the server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::channel::Activity;
use super::client::ManagerClient;
use super::objects::{Args, Caller, Input, Outcome, Raise, Served};
use super::protocol::{self, Failure, MAX_MESSAGE, ObjectId, Reply, Request, encode};
use super::proxy::{Endpoint, ObjectProxy};
use super::registry::{Registry, TypeTable};
use super::shared_memory_manager::Segments;
use crate::Connection;
use crate::connection::{Address, Listener, ListenerStopper, answer_challenge, deliver_challenge};
use crate::error::{Error, Result};

/// How long a client may take over the authentication handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The stack of a thread serving one connection.
const CLIENT_STACK: usize = 512 << 10;

pub(crate) struct Entry {
    pub(crate) object: Arc<dyn Served>,
    pub(crate) refs: u64,
}

#[derive(Default)]
pub(crate) struct Table {
    pub(crate) objects: HashMap<ObjectId, Entry>,
    pub(crate) named: HashMap<String, ObjectId>,
    tickets: HashMap<u64, ObjectId>,
    next_id: ObjectId,
    next_ticket: u64,
}

impl Table {
    pub(crate) fn add(&mut self, object: Arc<dyn Served>) -> ObjectId {
        self.next_id += 1;
        self.objects.insert(self.next_id, Entry { object, refs: 1 });
        self.next_id
    }

    pub(crate) fn incref(&mut self, id: ObjectId) -> std::result::Result<(), Raise> {
        let entry = self.objects.get_mut(&id).ok_or_else(|| no_such_object(id))?;
        entry.refs += 1;
        Ok(())
    }

    /// Drops one reference; returns the object when that was the last (to be dropped outside the
    /// table's lock: a user type's `Drop` may take time).
    pub(crate) fn decref(&mut self, id: ObjectId) -> Option<Entry> {
        let entry = self.objects.get_mut(&id)?;
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 { self.objects.remove(&id) } else { None }
    }

    pub(crate) fn get(&self, id: ObjectId) -> std::result::Result<Arc<dyn Served>, Raise> {
        self.objects.get(&id).map(|e| Arc::clone(&e.object)).ok_or_else(|| no_such_object(id))
    }
}

/// An object found or made, with its id.
pub(crate) type Found = (ObjectId, Arc<dyn Served>);

pub(crate) fn no_such_object(id: ObjectId) -> Raise {
    Raise::Remote(format!("the manager holds no object {id:x}: it was freed, or belongs to another manager"))
}

/// The state every connection thread shares.
pub(crate) struct Shared {
    table: Mutex<Table>,
    types: TypeTable,
    stopping: AtomicBool,
    /// Wakes the accept loop when a client asks the server to stop; taken when the [`Server`]
    /// goes, so that its address is free again at once.
    stopper: Mutex<Option<ListenerStopper>>,
    next_caller: AtomicU64,
    /// Requests on every connection, and the threads spinning for their next one.
    pub(crate) activity: Activity,
    pub(crate) address: Address,
    authkey: Option<Vec<u8>>,
    /// The blocks of a [`SharedMemoryManager`](super::SharedMemoryManager)'s server; `None` in
    /// other servers.
    segments: Option<Segments>,
}

impl Shared {
    pub(crate) fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn new_caller(&self) -> u64 {
        self.next_caller.fetch_add(1, Ordering::Relaxed)
    }

    /// Creates an object of `typeid` from `args`, or (with a `name`) finds the one registered
    /// under that name; its first reference is the caller's. A CPython client asks for a named
    /// object by using its name as the typeid (`register('get_queue')`).
    pub(crate) fn create(&self, typeid: &str, args: Args, name: Option<String>) -> std::result::Result<Found, Raise> {
        let name = match (name, self.types.family(typeid)) {
            (Some(name), _) => Some(name),
            (None, None) => {
                // A CPython client's `register('get_queue')`: the object named so.
                let mut table = self.table();
                return match table.named.get(typeid).copied() {
                    Some(id) => {
                        table.incref(id)?;
                        Ok((id, table.get(id)?))
                    }
                    None => Err(Raise::Remote(format!(
                        "KeyError: the type {typeid} is not registered with this manager (list it in the manager's \
                         registry), and no object is named so (Server::register, ManagerClient::named)"
                    ))),
                };
            }
            (None, Some(_)) => None,
        };
        if let Some(name) = &name
            && let Some(found) = self.share_named(name, typeid)?
        {
            return Ok(found);
        }
        let make = self.types.constructor(typeid).ok_or_else(|| {
            Raise::Remote(format!(
                "the type {typeid} is not registered with this manager; list it in the manager's registry"
            ))
        })?;
        let object = make(args)?;
        let mut table = self.table();
        if let Some(name) = name {
            // Another client may have created it meanwhile: the first one wins.
            if let Some(&id) = table.named.get(&name) {
                drop(table);
                return self.share_named(&name, typeid)?.ok_or_else(|| no_such_object(id));
            }
            let id = table.add(Arc::clone(&object));
            // The name's own reference keeps it alive for the server's life.
            table.incref(id)?;
            table.named.insert(name, id);
            return Ok((id, object));
        }
        Ok((table.add(Arc::clone(&object)), object))
    }

    /// A new reference to the object named `name`, if there is one, when it is of the family of
    /// `typeid`.
    fn share_named(&self, name: &str, typeid: &str) -> std::result::Result<Option<Found>, Raise> {
        let mut table = self.table();
        let Some(&id) = table.named.get(name) else { return Ok(None) };
        let object = table.get(id)?;
        let wanted = self.types.family(typeid);
        if wanted.is_some() && wanted != self.types.family(object.typeid()) {
            return Err(Raise::type_error(format!(
                "the object named {name:?} is a {}, not a {typeid}",
                object.typeid()
            )));
        }
        table.incref(id)?;
        Ok(Some((id, object)))
    }

    /// Gives the object `id` the name `name` (which keeps it for the server's life).
    fn register(&self, name: &str, id: ObjectId) -> Result<()> {
        let mut table = self.table();
        if table.named.contains_key(name) {
            return Err(Error::InvalidState(format!("an object is already registered as {name:?}")));
        }
        table.incref(id).map_err(|e| Error::InvalidState(e.to_string()))?;
        table.named.insert(name.to_string(), id);
        Ok(())
    }
}

/// A manager server (CPython `BaseManager.get_server()`): listens for clients, this crate's
/// proxies and CPython's `BaseManager`/`SyncManager` clients alike, and serves them until
/// [`shutdown`](crate::manager::ManagerClient::shutdown) is requested.
///
/// The process that runs the server may hold objects of its own and name them for clients
/// (CPython's `register('get_queue', callable=lambda: queue)`):
///
/// ```
/// use multiproc::manager::{ManagerClient, Server};
///
/// # fn main() -> multiproc::Result<()> {
/// let server = Server::bind::<()>("127.0.0.1:0".parse()?, Some(b"abracadabra"))?;
/// let queue = server.client().queue::<String>()?;
/// queue.put(&"filled before serving".to_string())?;
/// server.register("get_queue", queue.object())?;
/// let address = server.address().clone();
/// std::thread::spawn(move || server.serve_forever());
///
/// // Another process (Python's `QueueManager.register('get_queue')` too):
/// let remote = ManagerClient::connect(address, Some(b"abracadabra"))?;
/// let jobs = remote.named("get_queue").queue::<String>()?;
/// assert_eq!(jobs.get()?, "filled before serving");
/// remote.shutdown()?;
/// # Ok(())
/// # }
/// ```
///
/// Python clients need the server to have an authkey (theirs always authenticate). Messages
/// larger than 64 MiB are refused (the sender is told, and the connection goes on).
///
/// Each client connection has a thread. Between a CPython client's calls, its thread first
/// waits for the next request without sleeping, for at most 200 µs and only while that pays and
/// the CPUs have room (not while other clients are active or other programs want the CPUs), so
/// that a chatty client's next call does not wait for the thread's wake-up; an idle client costs
/// no CPU.
pub struct Server {
    listener: Listener,
    shared: Arc<Shared>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Client threads may keep the shared state: they must not keep the listening socket (an
        // abstract address stays taken while any descriptor of its socket is open).
        self.shared.stopper.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("address", &self.shared.address).finish()
    }
}

impl Server {
    /// Listens at `address` for clients holding `authkey` (a TCP port 0 picks a free port), with
    /// the built-in types and the user types of registry `R` (`()` for none).
    ///
    /// # Errors
    ///
    /// [`Error::UnprotectedAddress`] for a TCP address other than loopback without an authkey;
    /// the listener's errors (address in use...).
    #[doc(alias = "get_server")]
    pub fn bind<R: Registry>(address: Address, authkey: Option<&[u8]>) -> Result<Server> {
        Self::bind_with::<R>(address, authkey, None)
    }

    /// [`bind`](Self::bind), holding shared memory blocks for clients if `segments` is given.
    fn bind_with<R: Registry>(address: Address, authkey: Option<&[u8]>, segments: Option<Segments>) -> Result<Server> {
        if let Address::Tcp(addr) = &address
            && authkey.is_none()
            && !addr.ip().is_loopback()
        {
            return Err(Error::UnprotectedAddress(address.to_string()));
        }
        // The handshake runs in each client's thread, so a slow client cannot hold up the others.
        let listener = Listener::bind(address, None)?;
        let stopper = listener.stopper()?;
        let shared = Arc::new(Shared {
            table: Mutex::default(),
            types: R::table(),
            stopping: AtomicBool::new(false),
            stopper: Mutex::new(Some(stopper)),
            next_caller: AtomicU64::new(1),
            activity: Activity::default(),
            address: listener.address().clone(),
            authkey: authkey.map(<[u8]>::to_vec),
            segments,
        });
        Ok(Server { listener, shared })
    }

    /// The address clients connect to (with a TCP port 0, the port chosen).
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// A client of this server in this process, which works before
    /// [`serve_forever`](Self::serve_forever) starts and while it runs (its proxies talk to the
    /// server's threads through pipes of their own; sent to another process, they connect to
    /// [`address`](Self::address)).
    pub fn client(&self) -> ManagerClient {
        ManagerClient::new(Endpoint::local(
            self.shared.address.clone(),
            self.shared.authkey.clone(),
            Arc::clone(&self.shared),
        ))
    }

    /// Names `object` (a proxy of this server's) for clients: a CPython client's
    /// `register(name)` method and [`ManagerClient::named`] give it (CPython's
    /// `register(name, callable=lambda: obj)`). The name keeps the object for the server's life.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the name is taken, or the proxy is not of this server.
    pub fn register(&self, name: &str, object: &ObjectProxy) -> Result<()> {
        if object.address() != &self.shared.address {
            return Err(Error::InvalidState(format!(
                "the proxy belongs to the manager at {}, not this one at {}",
                object.address(),
                self.shared.address
            )));
        }
        self.shared.register(name, object.id())
    }

    /// Serves clients until a client asks for shutdown (CPython `serve_forever`). Calls in
    /// progress in other threads end with the process, or go on until they finish.
    ///
    /// # Errors
    ///
    /// The listener's errors other than transient ones (out of descriptors, which it waits out).
    pub fn serve_forever(mut self) -> Result<()> {
        while !self.shared.stopping.load(Ordering::Acquire) {
            let conn = match self.listener.accept() {
                Ok(conn) => conn,
                // Stopped: the listening socket was shut down under `accept`.
                Err(_) if self.shared.stopping.load(Ordering::Acquire) => break,
                Err(e @ Error::Io { .. }) if !self.listener.closed() => {
                    // Out of descriptors or memory: let clients finish before trying again.
                    tracing::warn!("manager: accepting a client failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if self.shared.stopping.load(Ordering::Acquire) {
                break;
            }
            spawn_client(&self.shared, conn, true);
        }
        Ok(())
    }
}

/// Serves `conn` in a thread of its own (`authenticate`: a connection from the listener, which
/// must pass the handshake first).
pub(crate) fn spawn_client(shared: &Arc<Shared>, conn: Connection, authenticate: bool) {
    let shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("manager-client".into())
        .stack_size(CLIENT_STACK)
        .spawn(move || serve_client(&shared, conn, authenticate));
    if let Err(e) = spawned {
        tracing::warn!("manager: could not start a thread for a client: {e}");
    }
}

/// The sender's reply to a message over the limit.
pub(crate) fn too_large(len: u64, limit: u64) -> String {
    format!(
        "the request of {len} bytes exceeds the manager's limit of {limit} bytes ({} MiB) and was dropped; send \
         large data another way (shared memory, a file)",
        limit >> 20
    )
}

/// Serves one connection until it closes, then releases what it held.
fn serve_client(shared: &Shared, mut conn: Connection, authenticate: bool) {
    if authenticate && let Some(key) = &shared.authkey {
        conn.set_timeout(Some(HANDSHAKE_TIMEOUT));
        let authenticated = deliver_challenge(&mut conn, key).and_then(|()| answer_challenge(&mut conn, key));
        if authenticated.is_err() {
            return;
        }
        conn.set_timeout(None);
        // The client's first request follows its last handshake message at once: acknowledge
        // that message now, or Nagle's algorithm holds the request back until the delayed ACK.
        if let Ok(fd) = conn.fd() {
            crate::sys::ack_now(fd);
        }
    }
    conn.set_max_message_size(MAX_MESSAGE);
    let first = match conn.recv_bytes_or_skip() {
        Ok(bytes) => bytes,
        Err(Error::MessageTooLarge { len, limit }) => {
            // Which protocol the sender speaks is unknown: both can read a pickled traceback.
            let _ = super::python_front::send_traceback(&mut conn, &too_large(len, limit));
            return;
        }
        Err(_) => return,
    };
    if first.first() == Some(&0x80) {
        super::python_front::serve(shared, conn, first);
        return;
    }
    let caller_id = shared.new_caller();
    let mut owned: HashMap<ObjectId, u64> = HashMap::new();
    let mut next = Ok(first);
    loop {
        let reply = match next {
            Ok(bytes) => match protocol::decode_request(&bytes) {
                Ok(Request::Upgrade) => {
                    match upgrade(&mut conn) {
                        Ok(pipe_end) => conn = pipe_end,
                        Err(_) => break,
                    }
                    next = conn.recv_bytes_or_skip();
                    continue;
                }
                Ok(request) => {
                    shared.activity.request();
                    let gone = || conn.poll(Some(Duration::ZERO)).unwrap_or(true);
                    let caller = Caller { id: caller_id, gone: &gone, python: false };
                    let stop = request == Request::Shutdown;
                    let reply = handle(shared, request, &caller, &mut owned);
                    if stop {
                        let _ = send_reply(&mut conn, reply);
                        stop_serving(shared);
                        break;
                    }
                    reply
                }
                Err(e) => Reply::Err(Failure::Remote(format!("malformed request: {e}"))),
            },
            Err(Error::MessageTooLarge { len, limit }) => Reply::Err(Failure::Remote(too_large(len, limit))),
            Err(_) => break,
        };
        if send_reply(&mut conn, reply).is_err() {
            break;
        }
        next = conn.recv_bytes_or_skip();
    }
    release_all(shared, caller_id, owned);
}

/// Answers [`Request::Upgrade`]: a new pipe, whose other end goes to the client; the server's end
/// replaces the connection.
fn upgrade(conn: &mut Connection) -> Result<Connection> {
    let (ours, theirs) = crate::pipe()?;
    send_reply(conn, Reply::Ok(encode(&())?))?;
    conn.send(&theirs)?;
    let mut ours = ours;
    ours.set_max_message_size(MAX_MESSAGE);
    Ok(ours)
}

fn send_reply(conn: &mut Connection, reply: Reply) -> Result<()> {
    let bytes = encode(&reply).or_else(|e| encode(&Reply::Err(Failure::Remote(e.to_string()))))?;
    conn.send_bytes(&bytes)
}

/// Stops the accept loop: sets the flag, then shuts the listening socket so that `accept` returns
/// (with no connection of our own, which an unreachable address would refuse).
pub(crate) fn stop_serving(shared: &Shared) {
    shared.stopping.store(true, Ordering::Release);
    if let Some(stopper) = &*shared.stopper.lock().unwrap_or_else(|p| p.into_inner()) {
        stopper.stop();
    }
}

/// The references a connection held go; locks it held are released.
pub(crate) fn release_all(shared: &Shared, caller_id: u64, owned: HashMap<ObjectId, u64>) {
    let mut freed = Vec::new();
    {
        let mut table = shared.table();
        for (id, count) in owned {
            if let Some(entry) = table.objects.get(&id) {
                entry.object.forget_caller(caller_id);
            }
            for _ in 0..count {
                freed.extend(table.decref(id));
            }
        }
    }
    drop(freed);
}

/// Calls `method` of `object`, with the methods every object has: CPython's `#GETVALUE` and the
/// `__repr__`/`__str__` fallbacks.
pub(crate) fn call_object(
    object: &Arc<dyn Served>,
    method: &str,
    input: Input,
    caller: &Caller<'_>,
) -> std::result::Result<Outcome, Raise> {
    match method {
        "#GETVALUE" if !object.exposed().contains(&"#GETVALUE") => object.value().map(Outcome::Value),
        "__repr__" | "__str__" if !object.exposed().contains(&method) => {
            Ok(Outcome::Value(crate::pickle::PickleValue::String(object.repr())))
        }
        _ => object.call(method, input, caller),
    }
}

fn to_bytes<T: serde::Serialize>(value: &T) -> std::result::Result<Vec<u8>, Failure> {
    encode(value).map_err(|e| Failure::Remote(e.to_string()))
}

fn handle(shared: &Shared, request: Request, caller: &Caller<'_>, owned: &mut HashMap<ObjectId, u64>) -> Reply {
    let answer = match request {
        Request::Create { typeid, args, name } => Input::Pickled(args)
            .args()
            .and_then(|args| shared.create(&typeid, args, name))
            .map_err(Failure::from)
            .and_then(|(id, _)| {
                *owned.entry(id).or_default() += 1;
                to_bytes(&id)
            }),
        Request::Call { id, method, args } => {
            let object = shared.table().get(id);
            object
                .and_then(|object| call_object(&object, &method, Input::Pickled(args), caller))
                .map_err(Failure::from)
                .and_then(|outcome| match outcome {
                    Outcome::Value(value) => {
                        crate::pickle::encode::encode(&value).map_err(|e| Failure::Remote(format!("the result: {e}")))
                    }
                    Outcome::Pickled(bytes) => Ok(bytes),
                    Outcome::Object(object) => Err(Failure::Remote(format!(
                        "{method} gives a new {} object, which this crate's proxies do not take",
                        object.typeid()
                    ))),
                })
        }
        Request::Lend { id } => {
            let mut table = shared.table();
            table.incref(id).map_err(Failure::from).and_then(|()| {
                table.next_ticket += 1;
                let ticket = table.next_ticket;
                table.tickets.insert(ticket, id);
                to_bytes(&ticket)
            })
        }
        Request::Adopt { ticket, id } => {
            let mut table = shared.table();
            let adopted = match table.tickets.get(&ticket) {
                Some(&lent) if lent == id => {
                    table.tickets.remove(&ticket);
                    Ok(())
                }
                _ => table.incref(id),
            };
            adopted.map_err(Failure::from).and_then(|()| {
                *owned.entry(id).or_default() += 1;
                to_bytes(&id)
            })
        }
        Request::ObjectCount => to_bytes(&(shared.table().objects.len() as u64)),
        Request::Shutdown => to_bytes(&()),
        Request::TrackSegment(name) => segments(shared).and_then(|s| s.track(name)).and_then(|()| to_bytes(&())),
        Request::ReleaseSegment(name) => segments(shared).and_then(|s| s.release(&name)).and_then(|()| to_bytes(&())),
        Request::ListSegments => segments(shared).and_then(|s| to_bytes(&s.names())),
        // Answered by the connection's loop, which owns the connection.
        Request::Upgrade => Err(Failure::Remote("a connection can only be upgraded once, by its loop".into())),
    };
    match answer {
        Ok(bytes) => Reply::Ok(bytes),
        Err(failure) => Reply::Err(failure),
    }
}

/// The server's blocks, or the error for a server that holds none.
fn segments(shared: &Shared) -> std::result::Result<&Segments, Failure> {
    shared.segments.as_ref().ok_or_else(|| {
        Failure::Remote(
            "this manager holds no shared memory blocks: start a SharedMemoryManager to create them through a manager"
                .into(),
        )
    })
}

/// The manager's server process: binds, reports readiness on `ready`, ends when the owner ends.
pub(crate) fn run_server_process<R: Registry>(address: Address, authkey: Vec<u8>, ready: Connection) -> i32 {
    serve_in_process::<R>(address, authkey, ready, None, || 0)
}

/// The server process of a [`SharedMemoryManager`](super::SharedMemoryManager): a manager's
/// server that also holds shared memory blocks, registered with the resource tracker reached
/// through `tracker` (its owner's), and unlinks them all when it ends.
pub(crate) fn run_shared_memory_server(
    address: Address,
    authkey: Vec<u8>,
    ready: Connection,
    tracker: crate::Handle<std::os::fd::OwnedFd>,
) -> i32 {
    crate::shm::tracker::adopt(tracker.into_inner());
    serve_in_process::<()>(address, authkey, ready, Some(Segments::default()), || 0)
}

/// Like [`run_server_process`], running the initializer `F(args)` first (CPython
/// `manager.start(initializer, initargs)`).
pub(crate) fn run_server_process_with<R, F, A>(address: Address, authkey: Vec<u8>, ready: Connection, args: A) -> i32
where
    R: Registry,
    F: crate::Target<A>,
    A: serde::Serialize + serde::de::DeserializeOwned,
{
    serve_in_process::<R>(address, authkey, ready, None, move || {
        crate::process::target::sealed::TargetFn::call(crate::sys::conjure_zst::<F>(), args)
    })
}

fn serve_in_process<R: Registry>(
    address: Address,
    authkey: Vec<u8>,
    mut ready: Connection,
    segments: Option<Segments>,
    initializer: impl FnOnce() -> i32,
) -> i32 {
    // Ctrl-C reaches the whole process group; the owner decides when its manager stops.
    crate::sys::ignore_interrupt();
    let code = initializer();
    if code != 0 {
        let _ = ready.send(&Err::<Address, String>(format!("the initializer failed with exit code {code}")));
        return code;
    }
    let server = match Server::bind_with::<R>(address, Some(&authkey), segments) {
        Ok(server) => server,
        Err(e) => {
            let _ = ready.send(&Err::<Address, String>(e.to_string()));
            return 1;
        }
    };
    if ready.send(&Ok::<Address, String>(server.address().clone())).is_err() {
        return 1;
    }
    let shared = Arc::clone(&server.shared);
    // The owner keeps its end as its control connection (object count, shutdown): serve it as an
    // authenticated client, since only the owner holds it.
    spawn_client(&shared, ready, false);
    // The server must not outlive its owner, however the owner ends.
    if let Some(owner) = crate::parent_process() {
        let shared = Arc::clone(&shared);
        let _ = std::thread::Builder::new().name("manager-owner-watch".into()).stack_size(64 << 10).spawn(move || {
            owner.join();
            release_segments(&shared);
            std::process::exit(0);
        });
    }
    let code = match server.serve_forever() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc: the manager's server failed: {e}");
            1
        }
    };
    release_segments(&shared);
    code
}

/// Unlinks every block a shared memory manager's server holds (its last act).
fn release_segments(shared: &Shared) {
    if let Some(segments) = &shared.segments {
        segments.release_all();
    }
}

/// A server state for the fuzz target: no listener, nothing named.
fn fuzz_shared() -> Shared {
    Shared {
        table: Mutex::default(),
        types: TypeTable::default(),
        stopping: AtomicBool::new(false),
        stopper: Mutex::new(None),
        next_caller: AtomicU64::new(1),
        activity: Activity::default(),
        address: Address::Abstract(b"multiproc-fuzz-nowhere".to_vec()),
        authkey: None,
        segments: None,
    }
}

#[cfg(test)]
pub(crate) fn fuzz_shared_for_tests() -> Shared {
    fuzz_shared()
}

/// Feeds one request to the server's decoder and handler, as a client would send it (the fuzz
/// target's entry, reached through `multiproc::__private`). Must never panic or wait.
pub fn fuzz_request(bytes: &[u8]) {
    let shared = fuzz_shared();
    // A few requests in a row, so that calls reach the objects created before them.
    let mut rest = bytes;
    let mut owned = HashMap::new();
    // Calls never wait here: a waiting call sees its caller gone at once.
    let gone = || true;
    let caller = Caller { id: 1, gone: &gone, python: false };
    while let Ok((request, tail)) = postcard::take_from_bytes::<Request>(rest) {
        if request != Request::Shutdown {
            let _ = handle(&shared, request, &caller, &mut owned);
        }
        if tail.len() == rest.len() {
            break;
        }
        rest = tail;
    }
    let _ = protocol::decode_request(bytes);
    release_all(&shared, 1, owned);
}

/// Feeds one request of a CPython client to the server's Python front (the fuzz target
/// `python_requests`). Must never panic or wait.
pub fn fuzz_python_request(bytes: &[u8]) {
    let shared = fuzz_shared();
    super::python_front::fuzz(&shared, bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz targets' seeds decode and run (requests made by CPython's pickler inside this
    /// crate's postcard requests, and CPython's own requests).
    #[test]
    fn the_fuzz_seeds_run() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (target, run) in
            [("manager_requests", fuzz_request as fn(&[u8])), ("manager_python_requests", fuzz_python_request)]
        {
            let mut seen = 0;
            for entry in std::fs::read_dir(corpus.join(target)).unwrap().flatten() {
                if entry.file_name().to_string_lossy().starts_with("seed-") {
                    run(&std::fs::read(entry.path()).unwrap());
                    seen += 1;
                }
            }
            assert!(seen >= 3, "{target}: {seen} seeds");
        }
        // A seed's requests reach their objects: the dict seed sets and reads a key.
        let shared = fuzz_shared();
        let gone = || true;
        let caller = Caller { id: 1, gone: &gone, python: false };
        let mut owned = HashMap::new();
        let bytes = std::fs::read(corpus.join("manager_requests/seed-dict")).unwrap();
        let mut rest = &bytes[..];
        let mut replies = Vec::new();
        while let Ok((request, tail)) = postcard::take_from_bytes::<Request>(rest) {
            replies.push(handle(&shared, request, &caller, &mut owned));
            rest = tail;
        }
        assert_eq!(replies.len(), 5);
        assert!(replies.iter().all(|r| matches!(r, Reply::Ok(_))), "{replies:?}");
    }
}
