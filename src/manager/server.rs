//! The manager's server: a listener, a thread per client connection, and the table of objects
//! with their reference counts.
//!
//! References belong to connections. A proxy owns one connection; the objects it created or
//! adopted are released when that connection closes, however it closes (the proxy dropped, its
//! process killed). A proxy in transit (serialized for another process, or cloned) holds a
//! *ticket*: a reference the server keeps until the new proxy adopts it on its connection. An
//! object is freed when its last reference goes; named objects live as long as the server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::objects::{Caller, Object};
use super::protocol::{self, Failure, Kind, MAX_MESSAGE, ObjectId, Reply, Request, encode};
use super::registry::{Registry, TypeTable};
use crate::Connection;
use crate::connection::{Address, Listener, answer_challenge, connect_timeout, deliver_challenge};
use crate::error::{Error, Result};

/// How long a client may take over the authentication handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

struct Entry {
    object: Arc<Object>,
    refs: u64,
}

#[derive(Default)]
struct Table {
    objects: HashMap<ObjectId, Entry>,
    named: HashMap<String, ObjectId>,
    tickets: HashMap<u64, ObjectId>,
    next_id: ObjectId,
    next_ticket: u64,
}

impl Table {
    fn add(&mut self, object: Object) -> ObjectId {
        self.next_id += 1;
        self.objects.insert(self.next_id, Entry { object: Arc::new(object), refs: 1 });
        self.next_id
    }

    fn incref(&mut self, id: ObjectId) -> std::result::Result<(), Failure> {
        let entry = self.objects.get_mut(&id).ok_or_else(|| no_such_object(id))?;
        entry.refs += 1;
        Ok(())
    }

    /// Drops one reference; returns the object when that was the last (to be dropped outside the
    /// table's lock: a user type's `Drop` may take time).
    fn decref(&mut self, id: ObjectId) -> Option<Entry> {
        let entry = self.objects.get_mut(&id)?;
        entry.refs -= 1;
        if entry.refs == 0 { self.objects.remove(&id) } else { None }
    }
}

fn no_such_object(id: ObjectId) -> Failure {
    Failure::Remote(format!("the manager holds no object {id}: it was freed, or belongs to another manager"))
}

/// The state every connection thread shares.
pub(crate) struct Shared {
    table: Mutex<Table>,
    types: TypeTable,
    stopping: AtomicBool,
    next_caller: AtomicU64,
    address: Address,
    authkey: Option<Vec<u8>>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A manager server (CPython `BaseManager.get_server()`): listens for proxies and serves them
/// until [`shutdown`](crate::manager::ManagerClient::shutdown) is requested.
pub struct Server {
    listener: Listener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("address", &self.shared.address).finish()
    }
}

impl Server {
    /// Listens at `address` for clients holding `authkey` (a TCP port 0 picks a free port), with
    /// the user types of registry `R` (`()` for none).
    ///
    /// # Errors
    ///
    /// [`Error::UnprotectedAddress`] for a TCP address other than loopback without an authkey;
    /// the listener's errors (address in use...).
    #[doc(alias = "get_server")]
    pub fn bind<R: Registry>(address: Address, authkey: Option<&[u8]>) -> Result<Server> {
        if let Address::Tcp(addr) = &address
            && authkey.is_none()
            && !addr.ip().is_loopback()
        {
            return Err(Error::UnprotectedAddress(address.to_string()));
        }
        // The handshake runs in each client's thread, so a slow client cannot hold up the others.
        let listener = Listener::bind(address, None)?;
        let shared = Arc::new(Shared {
            table: Mutex::default(),
            types: R::table(),
            stopping: AtomicBool::new(false),
            next_caller: AtomicU64::new(1),
            address: listener.address().clone(),
            authkey: authkey.map(<[u8]>::to_vec),
        });
        Ok(Server { listener, shared })
    }

    /// The address clients connect to (with a TCP port 0, the port chosen).
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Serves clients until a client asks for shutdown (CPython `serve_forever`). Calls in
    /// progress in other threads end with the process, or go on until they finish.
    pub fn serve_forever(mut self) -> Result<()> {
        while !self.shared.stopping.load(Ordering::Acquire) {
            let conn = match self.listener.accept() {
                Ok(conn) => conn,
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
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("manager-client".into())
                .stack_size(256 << 10)
                .spawn(move || serve_client(&shared, conn));
            if let Err(e) = spawned {
                tracing::warn!("manager: could not start a thread for a client: {e}");
            }
        }
        Ok(())
    }
}

/// Serves one connection until it closes, then releases what it held.
fn serve_client(shared: &Shared, mut conn: Connection) {
    if let Some(key) = &shared.authkey {
        conn.set_timeout(Some(HANDSHAKE_TIMEOUT));
        let authenticated = deliver_challenge(&mut conn, key).and_then(|()| answer_challenge(&mut conn, key));
        if authenticated.is_err() {
            return;
        }
        conn.set_timeout(None);
    }
    conn.set_max_message_size(MAX_MESSAGE);
    let caller_id = shared.next_caller.fetch_add(1, Ordering::Relaxed);
    let mut owned: HashMap<ObjectId, u64> = HashMap::new();
    while let Ok(bytes) = conn.recv_bytes() {
        let reply = match protocol::decode_request(&bytes) {
            Ok(request) => {
                let gone = || conn.poll(Some(Duration::ZERO)).unwrap_or(true);
                let caller = Caller { id: caller_id, gone: &gone };
                if request == Request::Upgrade {
                    match upgrade(&mut conn) {
                        Ok(pipe_end) => conn = pipe_end,
                        Err(_) => break,
                    }
                    continue;
                }
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
        };
        if send_reply(&mut conn, reply).is_err() {
            break;
        }
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

/// Stops the accept loop: sets the flag, then wakes `accept` with a connection of our own.
fn stop_serving(shared: &Shared) {
    shared.stopping.store(true, Ordering::Release);
    let _ = connect_timeout(&shared.address, None, Duration::from_secs(1));
}

fn release_all(shared: &Shared, caller_id: u64, owned: HashMap<ObjectId, u64>) {
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

fn handle(shared: &Shared, request: Request, caller: &Caller<'_>, owned: &mut HashMap<ObjectId, u64>) -> Reply {
    let answer = match request {
        Request::Create { kind, name } => create(shared, kind, name, owned).and_then(|id| to_bytes(&id)),
        Request::Call { id, call } => {
            let object = shared.table().objects.get(&id).map(|entry| Arc::clone(&entry.object));
            match object {
                Some(object) => object.call(call, caller),
                None => Err(no_such_object(id)),
            }
        }
        Request::Lend { id } => {
            let mut table = shared.table();
            table.incref(id).and_then(|()| {
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
            adopted.and_then(|()| {
                *owned.entry(id).or_default() += 1;
                to_bytes(&id)
            })
        }
        Request::ObjectCount => to_bytes(&(shared.table().objects.len() as u64)),
        Request::Shutdown => to_bytes(&()),
        // Answered by the connection's loop, which owns the connection.
        Request::Upgrade => Err(Failure::Remote("a connection can only be upgraded once, by its loop".into())),
    };
    match answer {
        Ok(bytes) => Reply::Ok(bytes),
        Err(failure) => Reply::Err(failure),
    }
}

fn to_bytes<T: serde::Serialize>(value: &T) -> std::result::Result<Vec<u8>, Failure> {
    encode(value).map_err(|e| Failure::Remote(e.to_string()))
}

fn create(
    shared: &Shared,
    kind: Kind,
    name: Option<String>,
    owned: &mut HashMap<ObjectId, u64>,
) -> std::result::Result<ObjectId, Failure> {
    if let Some(name) = &name {
        let mut table = shared.table();
        if let Some(&id) = table.named.get(name) {
            return share_named(&mut table, id, name, &kind, owned);
        }
    }
    let kind_for_check = kind.clone();
    let object = match kind {
        Kind::Custom { type_name, state } => {
            let construct = shared.types.constructor(&type_name).ok_or_else(|| {
                Failure::Remote(format!(
                    "the type {type_name} is not registered with this manager; list it in the manager's registry"
                ))
            })?;
            Object::Custom(type_name, Mutex::new(construct(&state).map_err(Failure::Remote)?))
        }
        kind => Object::new(kind)?,
    };
    let mut table = shared.table();
    if let Some(name) = name {
        // Another client may have created it meanwhile: the first one wins.
        if let Some(&id) = table.named.get(&name) {
            return share_named(&mut table, id, &name, &kind_for_check, owned);
        }
        let id = table.add(object);
        // The name's own reference keeps it alive for the server's life.
        table.incref(id)?;
        table.named.insert(name, id);
        *owned.entry(id).or_default() += 1;
        return Ok(id);
    }
    let id = table.add(object);
    *owned.entry(id).or_default() += 1;
    Ok(id)
}

/// A new reference to the named object `id`, if it is of the kind asked for.
fn share_named(
    table: &mut Table,
    id: ObjectId,
    name: &str,
    kind: &Kind,
    owned: &mut HashMap<ObjectId, u64>,
) -> std::result::Result<ObjectId, Failure> {
    let existing = &table.objects.get(&id).ok_or_else(|| no_such_object(id))?.object;
    if !existing.is_kind(kind) {
        return Err(Failure::Remote(format!(
            "TypeError: the object named {name:?} is {}, not what this proxy is for",
            existing.kind_name()
        )));
    }
    table.incref(id)?;
    *owned.entry(id).or_default() += 1;
    Ok(id)
}

/// The manager's server process: binds, reports readiness on `ready`, ends when the owner ends.
pub(crate) fn run_server_process<R: Registry>(address: Address, authkey: Vec<u8>, ready: Connection) -> i32 {
    serve_in_process::<R>(address, authkey, ready, || 0)
}

/// Like [`run_server_process`], running the initializer `F(args)` first (CPython
/// `manager.start(initializer, initargs)`).
pub(crate) fn run_server_process_with<R, F, A>(address: Address, authkey: Vec<u8>, ready: Connection, args: A) -> i32
where
    R: Registry,
    F: crate::Target<A>,
    A: serde::Serialize + serde::de::DeserializeOwned,
{
    serve_in_process::<R>(address, authkey, ready, move || {
        crate::process::target::sealed::TargetFn::call(crate::sys::conjure_zst::<F>(), args)
    })
}

fn serve_in_process<R: Registry>(
    address: Address,
    authkey: Vec<u8>,
    mut ready: Connection,
    initializer: impl FnOnce() -> i32,
) -> i32 {
    let code = initializer();
    if code != 0 {
        let _ = ready.send(&Err::<Address, String>(format!("the initializer failed with exit code {code}")));
        return code;
    }
    let server = match Server::bind::<R>(address, Some(&authkey)) {
        Ok(server) => server,
        Err(e) => {
            let _ = ready.send(&Err::<Address, String>(e.to_string()));
            return 1;
        }
    };
    if ready.send(&Ok::<Address, String>(server.address().clone())).is_err() {
        return 1;
    }
    drop(ready);
    // The server must not outlive its owner, however the owner ends.
    if let Some(owner) = crate::parent_process() {
        let _ = std::thread::Builder::new().name("manager-owner-watch".into()).stack_size(64 << 10).spawn(move || {
            owner.join();
            std::process::exit(0);
        });
    }
    match server.serve_forever() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc: the manager's server failed: {e}");
            1
        }
    }
}

/// Feeds one request to the server's decoder and handler, as a client would send it (the fuzz
/// target's entry, reached through `multiproc::__private`). Must never panic or wait.
pub fn fuzz_request(bytes: &[u8]) {
    let shared = Shared {
        table: Mutex::default(),
        types: TypeTable::default(),
        stopping: AtomicBool::new(false),
        next_caller: AtomicU64::new(1),
        address: Address::Abstract(b"multiproc-fuzz-nowhere".to_vec()),
        authkey: None,
    };
    // A few requests in a row, so that calls reach the objects created before them.
    let mut rest = bytes;
    let mut owned = HashMap::new();
    // Calls never wait here: a waiting call sees its caller gone at once.
    let gone = || true;
    let caller = Caller { id: 1, gone: &gone };
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
