//! Listeners and clients (CPython `Listener` and `Client`): connections between processes that
//! were not started together, over Unix-domain sockets (a filesystem path or, on Linux, the
//! abstract namespace) or TCP, optionally authenticated with a shared key (see `auth`).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Connection;
use super::auth::client_handshake;
use super::auth::{HandshakeStep, ServerHandshake};
use crate::deadline::Deadline;
use crate::error::{Error, IoContext, Result};
use crate::sys::{self, Interest};

/// Where a [`Listener`] listens and a client connects; the kind of socket follows from it (CPython
/// infers the family from the address the same way).
///
/// Parsed from a string: `"host:port"` or `"[v6]:port"` is TCP, `"@name"` or `"\0name"` is an
/// abstract Unix socket, anything else a filesystem path, except a Windows named-pipe address
/// (`r"\\.\pipe\name"`), which is refused (CPython on Linux: `ValueError`).
///
/// ```
/// use multiproc::connection::Address;
///
/// let tcp: Address = "127.0.0.1:6000".parse().unwrap();
/// assert!(matches!(tcp, Address::Tcp(_)));
/// let path: Address = "/tmp/my.sock".parse().unwrap();
/// assert!(matches!(path, Address::Unix(_)));
/// let hidden: Address = "@my-service".parse().unwrap();
/// assert_eq!(hidden, Address::Abstract(b"my-service".to_vec()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A Unix-domain socket at a filesystem path (CPython `'AF_UNIX'` with a path).
    Unix(PathBuf),
    /// A Unix-domain socket in Linux's abstract namespace, named without the leading NUL byte
    /// (CPython: a path starting with `'\0'`). Nothing on the filesystem; gone with its listener.
    Abstract(Vec<u8>),
    /// A TCP socket (CPython `'AF_INET'`, a `(host, port)` tuple).
    Tcp(SocketAddr),
}

impl Address {
    /// A fresh filesystem address in the temporary directory (CPython's default Listener address).
    pub fn temporary() -> Result<Address> {
        let random: [u8; 6] = sys::random_bytes().context("draw a random socket name")?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Address::Unix(std::env::temp_dir().join(format!("multiproc-listener-{}-{name}", std::process::id()))))
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        if let Some(name) = s.strip_prefix('@').or_else(|| s.strip_prefix('\0')) {
            return Ok(Address::Abstract(name.as_bytes().to_vec()));
        }
        if s.starts_with(r"\\") {
            return Err(Error::InvalidState(format!(
                "{s:?} is a Windows named-pipe address, which Linux does not have; use a filesystem path, \"@name\" or \"host:port\""
            )));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Address::Tcp(addr));
        }
        let looks_like_host_port = s
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok());
        if looks_like_host_port {
            let resolved = s.to_socket_addrs().map_err(|e| Error::io("resolve a listener address", e))?;
            return resolved
                .into_iter()
                .next()
                .map(Address::Tcp)
                .ok_or_else(|| Error::InvalidState(format!("the host in {s:?} has no address")));
        }
        if s.is_empty() {
            return Err(Error::InvalidState("an empty string is not an address".into()));
        }
        Ok(Address::Unix(PathBuf::from(s)))
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Address {
        Address::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Address {
        Address::Unix(path.to_path_buf())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Address::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

fn unix_address_of(addr: &std::os::unix::net::SocketAddr) -> Option<Address> {
    if let Some(path) = addr.as_pathname() {
        return Some(Address::Unix(path.to_path_buf()));
    }
    addr.as_abstract_name().map(|name| Address::Abstract(name.to_vec()))
}

#[derive(Debug)]
enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Accepts connections at an [`Address`] (CPython `multiprocessing.connection.Listener`).
///
/// With an authkey, every accepted connection goes through CPython's mutual HMAC handshake before
/// [`accept`](Self::accept) returns it; a client with another key gets
/// [`Error::Authentication`] and its connection is closed before any message is read. Accepted
/// connections take messages up to 1 GiB unless raised (see [`bind`](Self::bind)).
///
/// # Examples
///
/// ```
/// use multiproc::connection::{connect, Listener};
///
/// # fn main() -> multiproc::Result<()> {
/// let mut listener = Listener::bind("127.0.0.1:0".parse()?, Some(b"secret"))?;
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || -> multiproc::Result<()> {
///     let mut conn = connect(&address, Some(b"secret"))?;
///     conn.send(&"hello")?;
///     Ok(())
/// });
/// let mut conn = listener.accept()?;
/// assert_eq!(conn.recv::<String>()?, "hello");
/// client.join().unwrap()?;
/// # Ok(())
/// # }
/// ```
pub struct Listener {
    socket: Option<Socket>,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Option<Duration>,
    max_pending: usize,
    /// Clients accepted whose handshake is under way, oldest first.
    pending: VecDeque<Pending>,
    last_accepted: Option<Address>,
    /// The socket file this listener created, removed when it closes.
    owned_path: Option<PathBuf>,
}

/// How long a client may take over the authentication handshake, unless
/// [`Listener::set_handshake_timeout`] says otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many clients may be in the middle of the handshake at once, unless
/// [`Listener::set_max_pending_handshakes`] says otherwise.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 256;

/// An accepted stream, of either family.
#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(on),
            Stream::Tcp(s) => s.set_nonblocking(on),
        }
    }

    fn into_connection(self) -> Connection {
        match self {
            Stream::Unix(s) => Connection::from(s),
            Stream::Tcp(s) => Connection::from(s),
        }
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A client in the middle of the handshake.
#[derive(Debug)]
struct Pending {
    stream: Stream,
    peer: Option<Address>,
    handshake: ServerHandshake,
    /// What the handshake waits for.
    wants: Interest,
    /// When it gives up (`None`: never).
    expires: Option<Instant>,
}

impl Listener {
    /// Listens at `address`; with `authkey`, clients must prove they hold the same key (an empty
    /// key is a key, as in CPython 3.13+).
    ///
    /// TCP listeners set `SO_REUSEADDR`; port 0 picks a free port ([`address`](Self::address)
    /// tells which). A filesystem socket is removed when the listener closes.
    ///
    /// Accepted connections take messages up to
    /// [`DEFAULT_MAX_MESSAGE_SIZE`](super::DEFAULT_MAX_MESSAGE_SIZE) (1 GiB); raise it per
    /// connection with [`Connection::set_max_message_size`]. A larger message fails with
    /// [`Error::MessageTooLarge`] and breaks that connection (the sender, Python or Rust, sees it
    /// close: the protocol cannot carry the reason back).
    ///
    /// # Errors
    ///
    /// An address already in use, a missing directory, and other system errors.
    pub fn bind(address: Address, authkey: Option<&[u8]>) -> Result<Listener> {
        let (socket, address, owned_path) = match address {
            Address::Unix(path) => {
                let listener = UnixListener::bind(&path).map_err(|e| bind_error(&path.display().to_string(), e))?;
                (Socket::Unix(listener), Address::Unix(path.clone()), Some(path))
            }
            Address::Abstract(name) => {
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name)
                    .map_err(|e| Error::io("name an abstract socket", e))?;
                let listener = UnixListener::bind_addr(&addr)
                    .map_err(|e| bind_error(&format!("@{}", String::from_utf8_lossy(&name)), e))?;
                (Socket::Unix(listener), Address::Abstract(name), None)
            }
            Address::Tcp(addr) => {
                let listener = TcpListener::bind(addr).map_err(|e| bind_error(&addr.to_string(), e))?;
                let bound = listener.local_addr().context("read a listener's address")?;
                (Socket::Tcp(listener), Address::Tcp(bound), None)
            }
        };
        Ok(Listener {
            socket: Some(socket),
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            max_pending: DEFAULT_MAX_PENDING_HANDSHAKES,
            pending: VecDeque::new(),
            last_accepted: None,
            owned_path,
        })
    }

    /// Listens at a fresh filesystem address in the temporary directory (CPython `Listener()`).
    pub fn bind_temporary(authkey: Option<&[u8]>) -> Result<Listener> {
        Listener::bind(Address::temporary()?, authkey)
    }

    /// The address clients connect to (for TCP port 0, the port chosen).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The address of the last accepted client, where the socket family has one (CPython
    /// `last_accepted`; unnamed Unix clients have none).
    pub fn last_accepted(&self) -> Option<&Address> {
        self.last_accepted.as_ref()
    }

    /// Bounds each client's authentication handshake (default [`DEFAULT_HANDSHAKE_TIMEOUT`];
    /// `None`: no bound, as in CPython, where a client that connects and never answers holds its
    /// place forever). Applies to clients accepted from now on.
    pub fn set_handshake_timeout(&mut self, timeout: Option<Duration>) {
        self.handshake_timeout = timeout;
    }

    /// Bounds how many clients may be in the middle of the handshake at once (default
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES`], at least 1). When a new client arrives at the bound, the
    /// oldest unfinished handshake is dropped (its client sees the connection close): a crowd of
    /// stalled clients costs a bounded number of descriptors and cannot keep a newcomer out.
    pub fn set_max_pending_handshakes(&mut self, max: usize) {
        self.max_pending = max.max(1);
    }

    /// Waits for a client and returns its connection, authenticated if the listener has a key.
    ///
    /// With a key, handshakes run side by side: a client that stops halfway (or never answers)
    /// holds up nobody but itself, and gives up after the handshake timeout. Accepting goes on
    /// between calls only while a call is in progress; a handshake under way at the end of one call
    /// continues in the next.
    ///
    /// # Errors
    ///
    /// [`Error::Authentication`] when a client fails the handshake (a wrong key: CPython's
    /// `AuthenticationError`), [`Error::Timeout`] when a client's handshake outlasts the handshake
    /// timeout, [`Error::Closed`] after [`close`](Self::close), and system errors. Each error is
    /// about one client: call `accept` again for the next.
    pub fn accept(&mut self) -> Result<Connection> {
        self.accept_until(Deadline::NONE)
    }

    /// Like [`accept`](Self::accept), giving up with [`Error::Timeout`] when no client connected
    /// and authenticated within `timeout` (handshakes under way continue in the next call).
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept), and [`Error::Timeout`] when `timeout` passes.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Deadline::after(Some(timeout)))
    }

    fn accept_until(&mut self, deadline: Deadline) -> Result<Connection> {
        let Some(key) = self.authkey.clone() else {
            let socket = self.socket.as_ref().ok_or(Error::Closed("listener"))?;
            deadline.wait(socket_fd(socket), Interest::Read)?;
            let (stream, peer) = accept_one(socket)?;
            self.last_accepted = peer;
            return Ok(stream.into_connection());
        };
        loop {
            let socket = self.socket.as_ref().ok_or(Error::Closed("listener"))?;
            let now = Instant::now();
            if let Some(i) = self.pending.iter().position(|p| p.expires.is_some_and(|at| at <= now)) {
                self.pending.remove(i);
                return Err(Error::Timeout(self.handshake_timeout.unwrap_or_default()));
            }
            if deadline.passed() {
                return Err(deadline.timeout_error());
            }
            let first_expiry = self.pending.iter().filter_map(|p| p.expires).min();
            let wait = match (deadline.left(), first_expiry.map(|at| at.saturating_duration_since(now))) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut fds = vec![(socket_fd(socket), Interest::Read)];
            fds.extend(self.pending.iter().map(|p| (p.stream.fd(), p.wants)));
            let ready = sys::poll_ready(&fds, wait).context("wait for clients")?;
            drop(fds);
            if ready.first() == Some(&true)
                && let Some(finished) = self.admit(&key)
            {
                return finished;
            }
            // Drive every handshake that can go on (indices shifted by the listening socket).
            for i in (0..self.pending.len()).rev() {
                if !ready.get(i + 1).copied().unwrap_or(false) {
                    continue;
                }
                if let Some(finished) = self.drive(i, &key) {
                    return finished;
                }
            }
        }
    }

    /// Accepts one client from the kernel's queue and starts its handshake; at the bound, the
    /// oldest handshake under way makes room. `Some` when that already ended something: an error
    /// of the listener, or of this client.
    fn admit(&mut self, key: &[u8]) -> Option<Result<Connection>> {
        let socket = self.socket.as_ref()?;
        let (stream, peer) = match accept_one(socket) {
            Ok(accepted) => accepted,
            // The client left before we took it, or nothing was there after all: nothing to do.
            Err(Error::Io { source, .. })
                if matches!(source.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionAborted) =>
            {
                return None;
            }
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = stream.set_nonblocking(true) {
            return Some(Err(Error::io("make a client's socket non-blocking", e)));
        }
        if self.pending.len() >= self.max_pending {
            self.pending.pop_front();
        }
        let expires = self.handshake_timeout.and_then(|t| Instant::now().checked_add(t));
        let handshake = match ServerHandshake::new() {
            Ok(handshake) => handshake,
            Err(e) => return Some(Err(e)),
        };
        self.pending.push_back(Pending { stream, peer, handshake, wants: Interest::Write, expires });
        self.drive(self.pending.len() - 1, key)
    }

    /// Advances handshake `i`; `Some` when it ended (the connection, or the client's error).
    fn drive(&mut self, i: usize, key: &[u8]) -> Option<Result<Connection>> {
        let pending = self.pending.get_mut(i)?;
        match pending.handshake.advance(key, &mut pending.stream) {
            Ok(HandshakeStep::Wants(interest)) => {
                pending.wants = interest;
                None
            }
            Ok(HandshakeStep::Done) => {
                let pending = self.pending.remove(i)?;
                if let Err(e) = pending.stream.set_nonblocking(false) {
                    return Some(Err(Error::io("make a client's socket blocking", e)));
                }
                self.last_accepted = pending.peer;
                Some(Ok(pending.stream.into_connection()))
            }
            Err(e) => {
                self.pending.remove(i);
                Some(Err(e))
            }
        }
    }

    /// Stops listening and removes the socket file it created (CPython `close()`); later
    /// [`accept`](Self::accept)s fail with [`Error::Closed`]. Dropping the listener does the same.
    pub fn close(&mut self) {
        self.pending.clear();
        if self.socket.take().is_some()
            && let Some(path) = self.owned_path.take()
        {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn closed(&self) -> bool {
        self.socket.is_none()
    }

    /// A handle that makes this listener stop taking clients from another thread, waking an
    /// [`accept`](Self::accept) under way there, whatever the address (a socket file removed, a
    /// TCP address nobody can reach).
    ///
    /// # Errors
    ///
    /// The listener is closed; out of descriptors.
    pub(crate) fn stopper(&self) -> Result<ListenerStopper> {
        let socket = self.socket.as_ref().ok_or(Error::Closed("listener"))?;
        let fd = sys::dup_cloexec(socket_fd(socket)).context("keep a listener's descriptor to stop it")?;
        Ok(ListenerStopper { fd })
    }
}

/// Stops a [`Listener`] from another thread ([`Listener::stopper`]).
#[derive(Debug)]
pub(crate) struct ListenerStopper {
    /// The listening socket (a duplicate: the listener keeps its own).
    fd: std::os::fd::OwnedFd,
}

impl ListenerStopper {
    /// Shuts the listening socket down for reading. On Linux, an `accept` blocked in any thread
    /// (or a `poll` on the socket) returns at once and fails (`EINVAL`), as does every later one; a
    /// TCP listener gives its port back. Clients connected already are not touched.
    pub(crate) fn stop(&self) {
        let _ = sys::shutdown(self.fd.as_fd(), sys::Shutdown::Read);
    }
}

/// Takes one client from the kernel's queue (the caller has seen the socket readable).
fn accept_one(socket: &Socket) -> Result<(Stream, Option<Address>)> {
    match socket {
        Socket::Unix(listener) => {
            let (stream, addr) = listener.accept().context("accept a connection")?;
            Ok((Stream::Unix(stream), unix_address_of(&addr)))
        }
        Socket::Tcp(listener) => {
            let (stream, addr) = listener.accept().context("accept a connection")?;
            let _ = stream.set_nodelay(true);
            Ok((Stream::Tcp(stream), Some(Address::Tcp(addr))))
        }
    }
}

fn socket_fd(socket: &Socket) -> BorrowedFd<'_> {
    match socket {
        Socket::Unix(l) => l.as_fd(),
        Socket::Tcp(l) => l.as_fd(),
    }
}

fn bind_error(address: &str, e: io::Error) -> Error {
    let context = match e.kind() {
        io::ErrorKind::AddrInUse => "listen: the address is already in use (another listener, or a stale socket file)",
        _ => "listen at an address",
    };
    Error::io(context, io::Error::new(e.kind(), format!("{address}: {e}")))
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .field("pending_handshakes", &self.pending.len())
            .field("closed", &self.closed())
            .finish()
    }
}

/// Connects to a [`Listener`] (CPython `multiprocessing.connection.Client`); with `authkey`, the
/// handshake runs both ways before this returns. Works with CPython listeners.
///
/// The connection accepts messages up to [`DEFAULT_MAX_MESSAGE_SIZE`](super::DEFAULT_MAX_MESSAGE_SIZE)
/// (1 GiB); raise it with [`Connection::set_max_message_size`]. A larger message fails with
/// [`Error::MessageTooLarge`] and breaks the connection: the protocol has no way to tell the
/// sender, who sees the connection close (a Python peer: `BrokenPipeError` or `EOFError`).
///
/// # Errors
///
/// Nobody listening, [`Error::Authentication`] for a key mismatch, and other system errors.
#[doc(alias = "Client")]
pub fn connect(address: &Address, authkey: Option<&[u8]>) -> Result<Connection> {
    connect_until(address, authkey, None)
}

/// Like [`connect`], giving up with [`Error::Timeout`] if connecting and authenticating take
/// longer than `timeout`.
#[doc(alias = "Client")]
pub fn connect_timeout(address: &Address, authkey: Option<&[u8]>, timeout: Duration) -> Result<Connection> {
    connect_until(address, authkey, Some(timeout))
}

fn connect_until(address: &Address, authkey: Option<&[u8]>, timeout: Option<Duration>) -> Result<Connection> {
    let deadline = Deadline::after(timeout);
    let mut conn: Connection = match address {
        Address::Unix(path) => UnixStream::connect(path).map(Connection::from),
        Address::Abstract(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| UnixStream::connect_addr(&addr))
            .map(Connection::from),
        Address::Tcp(addr) => match timeout {
            Some(t) => TcpStream::connect_timeout(addr, t),
            None => TcpStream::connect(addr),
        }
        .map(|stream| {
            let _ = stream.set_nodelay(true);
            Connection::from(stream)
        }),
    }
    .map_err(|e| Error::io("connect to a listener", io::Error::new(e.kind(), format!("{address}: {e}"))))?;
    if let Some(key) = authkey {
        conn.set_timeout(deadline.left());
        client_handshake(&mut conn, key)?;
        conn.set_timeout(None);
    }
    Ok(conn)
}
