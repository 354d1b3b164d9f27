//! Listeners and clients (CPython `Listener` and `Client`): connections between processes that
//! were not started together, over Unix-domain sockets (a filesystem path or, on Linux, the
//! abstract namespace) or TCP, optionally authenticated with a shared key (see `auth`).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Connection, answer_challenge, deliver_challenge};
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
    last_accepted: Option<Address>,
    /// The socket file this listener created, removed when it closes.
    owned_path: Option<PathBuf>,
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
            handshake_timeout: None,
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

    /// Bounds the authentication handshake of each [`accept`](Self::accept) (default: none, as in
    /// CPython; a client that connects and never answers then holds `accept` up).
    pub fn set_handshake_timeout(&mut self, timeout: Option<Duration>) {
        self.handshake_timeout = timeout;
    }

    /// Waits for a client and returns its connection, authenticated if the listener has a key.
    pub fn accept(&mut self) -> Result<Connection> {
        self.accept_until(Deadline::NONE)
    }

    /// Like [`accept`](Self::accept), giving up with [`Error::Timeout`] when no client connected
    /// and authenticated within `timeout`.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Deadline::after(Some(timeout)))
    }

    fn accept_until(&mut self, deadline: Deadline) -> Result<Connection> {
        let socket = self.socket.as_ref().ok_or(Error::Closed("listener"))?;
        deadline.wait(socket_fd(socket), Interest::Read)?;
        let (mut conn, peer) = match socket {
            Socket::Unix(listener) => {
                let (stream, addr) = listener.accept().context("accept a connection")?;
                (Connection::from(stream), unix_address_of(&addr))
            }
            Socket::Tcp(listener) => {
                let (stream, addr) = listener.accept().context("accept a connection")?;
                let _ = stream.set_nodelay(true);
                (Connection::from(stream), Some(Address::Tcp(addr)))
            }
        };
        self.last_accepted = peer;
        if let Some(key) = &self.authkey {
            let handshake_timeout = if deadline.is_bounded() { deadline.left() } else { self.handshake_timeout };
            conn.set_timeout(handshake_timeout);
            deliver_challenge(&mut conn, key)?;
            answer_challenge(&mut conn, key)?;
            conn.set_timeout(None);
        }
        Ok(conn)
    }

    /// Stops listening and removes the socket file it created (CPython `close()`); later
    /// [`accept`](Self::accept)s fail with [`Error::Closed`]. Dropping the listener does the same.
    pub fn close(&mut self) {
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
        answer_challenge(&mut conn, key)?;
        deliver_challenge(&mut conn, key)?;
        conn.set_timeout(None);
    }
    Ok(conn)
}
