//! Connections between processes (CPython `multiprocessing.connection`): [`pipe`],
//! [`simplex_pipe`], [`Connection`], [`Listener`] and [`connect`], authentication, and [`wait`].
//!
//! A connection carries whole messages over a stream socket, framed exactly as CPython frames them
//! (see `frame`): a Rust process and a Python process can exchange raw bytes (`send_bytes` /
//! `recv_bytes`) and, with the `pickle` feature, plain values in pickle format. Between Rust
//! processes, [`Connection::send`] and [`Connection::recv`] carry any serde value, encoded with
//! postcard; descriptors inside the value (a [`Handle`](crate::Handle), another connection) travel
//! with it over Unix-domain connections.
//!
//! [`wait`]: crate::wait

mod auth;
pub(crate) mod frame;
#[doc(hidden)]
pub mod fuzz_hooks;
mod listener;
#[cfg(feature = "pickle")]
mod pickle;

#[cfg(feature = "pickle")]
pub use pickle::PickleValue;

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use auth::{answer_challenge, deliver_challenge};
use frame::Deadline;
pub use listener::{Address, Listener, connect, connect_timeout};

use crate::error::{Error, IoContext, Result};
use crate::reduction::{self, Message};
use crate::sys::{self, Interest, Shutdown, SocketKind};

/// The largest message a connection accepts unless told otherwise: 1 GiB. A larger length prefix
/// is refused with [`Error::MessageTooLarge`] before anything is allocated; see
/// [`Connection::set_max_message_size`].
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 30;

mod sealed {
    pub trait Sealed {}
}

/// The direction of a [`Connection`], fixed in its type: [`Duplex`], [`ReadOnly`] or [`WriteOnly`].
pub trait Direction: sealed::Sealed + Send + Sync + 'static {
    /// Whether the connection can receive.
    const READABLE: bool;
    /// Whether the connection can send.
    const WRITABLE: bool;
    /// A name for messages.
    const NAME: &'static str;
}

/// A direction that can receive: [`Duplex`] and [`ReadOnly`].
pub trait CanRecv: Direction {}
/// A direction that can send: [`Duplex`] and [`WriteOnly`].
pub trait CanSend: Direction {}

/// Both ways (the ends of [`pipe`], accepted and client connections).
#[derive(Debug)]
pub enum Duplex {}
/// The receiving end of a [`simplex_pipe`].
#[derive(Debug)]
pub enum ReadOnly {}
/// The sending end of a [`simplex_pipe`].
#[derive(Debug)]
pub enum WriteOnly {}

impl sealed::Sealed for Duplex {}
impl sealed::Sealed for ReadOnly {}
impl sealed::Sealed for WriteOnly {}
impl Direction for Duplex {
    const READABLE: bool = true;
    const WRITABLE: bool = true;
    const NAME: &'static str = "duplex";
}
impl Direction for ReadOnly {
    const READABLE: bool = true;
    const WRITABLE: bool = false;
    const NAME: &'static str = "read-only";
}
impl Direction for WriteOnly {
    const READABLE: bool = false;
    const WRITABLE: bool = true;
    const NAME: &'static str = "write-only";
}
impl CanRecv for Duplex {}
impl CanRecv for ReadOnly {}
impl CanSend for Duplex {}
impl CanSend for WriteOnly {}

/// One end of a connection: sends and receives whole messages (CPython `Connection`).
///
/// Messages are serde values ([`send`](Self::send)/[`recv`](Self::recv)) or raw bytes
/// ([`send_bytes`](Self::send_bytes)/[`recv_bytes`](Self::recv_bytes)); both use CPython's framing,
/// so bytes can be exchanged with Python peers as they are. The direction is part of the type: the
/// ends of a [`simplex_pipe`] cannot even call the wrong method.
///
/// A connection can be given to a child as a [`Process`](crate::Process) argument, or sent through
/// another connection; the receiver gets its own descriptor for the same socket.
///
/// Operations block; [`set_timeout`](Self::set_timeout) bounds each of them. An operation that
/// fails in the middle of a message (a timeout, a message over the size limit, the peer closing
/// half-way) leaves that direction of the connection unusable, and says so on later calls.
///
/// # Examples
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let (mut a, mut b) = multiproc::pipe()?;
/// a.send(&vec![1.5, 2.25])?;
/// assert_eq!(b.recv::<Vec<f64>>()?, [1.5, 2.25]);
/// b.send_bytes(b"raw")?;
/// assert_eq!(a.recv_bytes()?, b"raw");
/// # Ok(())
/// # }
/// ```
pub struct Connection<D: Direction = Duplex> {
    fd: Option<OwnedFd>,
    /// A Unix-domain socket, which can carry descriptors.
    passes_fds: bool,
    max_message: u64,
    timeout: Option<Duration>,
    read_broken: Option<String>,
    write_broken: Option<String>,
    /// How long a receive retries before it sleeps (see `sync::spin`).
    spin: crate::sync::spin::SpinState,
    direction: PhantomData<fn() -> D>,
}

/// Creates a connected pair of duplex connections (CPython `Pipe()` / `Pipe(duplex=True)`): a Unix
/// stream socket pair.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Connection, Process};
///
/// fn child(mut conn: Connection) {
///     conn.send(&"hello from the child").unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let (mut parent_end, child_end) = multiproc::pipe()?;
/// let mut p = Process::new(child, (child_end,));
/// p.start()?;
/// assert_eq!(parent_end.recv::<String>()?, "hello from the child");
/// p.join()?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "Pipe")]
pub fn pipe() -> Result<(Connection, Connection)> {
    let (a, b) = sys::socketpair_cloexec(SocketKind::Stream).context("create a pipe")?;
    Ok((Connection::from_socket(a, true), Connection::from_socket(b, true)))
}

/// Creates a one-way pipe (CPython `Pipe(duplex=False)`): returns `(reader, writer)`.
///
/// It is a Unix socket pair shut down in one direction, so descriptors can travel through it too.
#[doc(alias = "Pipe")]
pub fn simplex_pipe() -> Result<(Connection<ReadOnly>, Connection<WriteOnly>)> {
    let (r, w) = sys::socketpair_cloexec(SocketKind::Stream).context("create a pipe")?;
    sys::shutdown(r.as_fd(), Shutdown::Write).context("shut down the reading end's sending side")?;
    sys::shutdown(w.as_fd(), Shutdown::Read).context("shut down the writing end's receiving side")?;
    Ok((Connection::from_socket(r, true), Connection::from_socket(w, true)))
}

impl<D: Direction> Connection<D> {
    fn from_socket(fd: OwnedFd, passes_fds: bool) -> Self {
        Connection {
            fd: Some(fd),
            passes_fds,
            max_message: DEFAULT_MAX_MESSAGE_SIZE,
            timeout: None,
            read_broken: None,
            write_broken: None,
            spin: crate::sync::spin::SpinState::default(),
            direction: PhantomData,
        }
    }

    /// Wraps a connected stream socket (Unix-domain or TCP). Only Unix-domain sockets can carry
    /// descriptors.
    pub fn from_fd(fd: OwnedFd) -> Self {
        let passes_fds = sys::is_unix_socket(fd.as_fd());
        Self::from_socket(fd, passes_fds)
    }

    /// Whether this end can receive (CPython `readable`).
    pub fn readable(&self) -> bool {
        D::READABLE
    }

    /// Whether this end can send (CPython `writable`).
    pub fn writable(&self) -> bool {
        D::WRITABLE
    }

    /// Closes this end (CPython `close()`); later operations fail with [`Error::Closed`]. Dropping
    /// the connection closes it too.
    pub fn close(&mut self) {
        self.fd = None;
    }

    /// Whether [`close`](Self::close) was called (CPython `closed`).
    pub fn closed(&self) -> bool {
        self.fd.is_none()
    }

    /// The socket (CPython `fileno()`).
    #[doc(alias = "fileno")]
    pub fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd()).ok_or(Error::Closed("connection"))
    }

    /// Gives up the socket without closing it.
    pub fn into_fd(mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// A second handle on the same connection (a duplicated descriptor), for example to receive on
    /// one thread while another sends.
    pub fn try_clone(&self) -> Result<Self> {
        let fd = sys::dup_cloexec(self.fd()?).context("duplicate a connection")?;
        let mut clone = Self::from_socket(fd, self.passes_fds);
        clone.max_message = self.max_message;
        clone.timeout = self.timeout;
        Ok(clone)
    }

    /// Bounds every later send, receive and poll-free wait on this end (`None`: block as long as it
    /// takes, the default). A timeout gives [`Error::Timeout`]; if it struck in the middle of a
    /// message, that direction of the connection is unusable afterwards.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The timeout set with [`set_timeout`](Self::set_timeout).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sets the largest message this end accepts (default [`DEFAULT_MAX_MESSAGE_SIZE`]). A larger
    /// incoming message fails with [`Error::MessageTooLarge`] before its payload is read.
    pub fn set_max_message_size(&mut self, bytes: u64) {
        self.max_message = bytes;
    }

    /// The largest message this end accepts.
    pub fn max_message_size(&self) -> u64 {
        self.max_message
    }

    fn read_fd(&self) -> Result<BorrowedFd<'_>> {
        usable_fd(&self.fd, &self.read_broken, "read")
    }

    fn write_fd(&self) -> Result<BorrowedFd<'_>> {
        usable_fd(&self.fd, &self.write_broken, "written")
    }
}

/// The socket, unless the connection is closed or broken for the use at hand.
fn usable_fd<'a>(fd: &'a Option<OwnedFd>, broken: &Option<String>, use_: &str) -> Result<BorrowedFd<'a>> {
    let fd = fd.as_ref().map(|fd| fd.as_fd()).ok_or(Error::Closed("connection"))?;
    match broken {
        Some(reason) => Err(Error::Protocol(format!("the connection can no longer be {use_}: {reason}"))),
        None => Ok(fd),
    }
}

impl<D: CanSend> Connection<D> {
    /// Sends a serde value as one message (CPython `send(obj)`, which pickles; this encodes with
    /// postcard, see [`send_pickle`](Self::send_pickle) for Python peers). Descriptors inside the
    /// value travel with it on Unix-domain connections.
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let message = reduction::encode(value)?;
        self.send_frame(&message.bytes, &message.borrowed_fds())
    }

    /// Sends `bytes` as one message (CPython `send_bytes`; for its `offset` and `size`, pass
    /// `&buf[offset..offset + size]`). Empty messages are messages.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.send_frame(bytes, &[])
    }

    pub(crate) fn send_frame(&mut self, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        let fd = self.write_fd()?;
        if !fds.is_empty() && !self.passes_fds {
            return Err(Error::InvalidState(
                "file descriptors can only be sent over Unix-domain connections, not over TCP".into(),
            ));
        }
        match frame::send_frame(fd, payload, fds, Deadline::after(self.timeout)) {
            Ok(()) => Ok(()),
            Err((e, 0)) => Err(e),
            Err((e, sent)) => {
                self.write_broken = Some(format!("a send failed after {sent} bytes of a message ({e})"));
                Err(e)
            }
        }
    }
}

impl<D: CanRecv> Connection<D> {
    /// Receives one message and decodes it as `T` (CPython `recv()`). [`Error::Eof`] when the peer
    /// closed and nothing is left. A message that does not decode as `T` is an error; the
    /// connection stays usable.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let message = self.recv_frame(self.max_message)?;
        reduction::decode(message)
    }

    /// Receives one message as bytes (CPython `recv_bytes()`). Descriptors sent with it are closed.
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        Ok(self.recv_frame(self.max_message)?.bytes)
    }

    /// Receives one message of at most `max_len` bytes (CPython `recv_bytes(maxlength)`). A longer
    /// message fails with [`Error::MessageTooLarge`] and, as in CPython, leaves the connection
    /// unreadable (its payload is not read).
    pub fn recv_bytes_max(&mut self, max_len: u64) -> Result<Vec<u8>> {
        Ok(self.recv_frame(max_len.min(self.max_message))?.bytes)
    }

    /// Receives one message into `buf` and returns its length (CPython `recv_bytes_into`; for its
    /// `offset`, pass `&mut buf[offset..]`). If the message does not fit, it is read whole and
    /// returned in [`Error::BufferTooShort`]; the connection stays usable.
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        let (len, _fds, deadline) = self.next_header()?;
        let fd = self.read_fd()?;
        if len <= buf.len() as u64 {
            let len = len as usize;
            frame::recv_exact(fd, &mut buf[..len], deadline).map_err(|e| self.broke_reading(e))?;
            return Ok(len);
        }
        if len > self.max_message {
            return Err(self.broke_reading(Error::MessageTooLarge { len, limit: self.max_message }));
        }
        let message = frame::recv_payload(fd, len, deadline).map_err(|e| self.broke_reading(e))?;
        Err(Error::BufferTooShort { capacity: buf.len(), message })
    }

    /// Whether a message (or end of file) is waiting, after waiting up to `timeout` for one (`None`:
    /// as long as it takes). CPython `poll(timeout)`; its default `poll()` is
    /// `poll(Some(Duration::ZERO))`.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let fd = self.read_fd()?;
        sys::poll_one(fd, Interest::Read, timeout).context("poll a connection")
    }

    /// Reads the next frame's header (a timeout before its first byte leaves the connection
    /// intact): the payload's length, the descriptors sent with it, and
    /// the deadline for the rest. [`Error::Eof`] when the peer closed between messages.
    fn next_header(&mut self) -> Result<(u64, Vec<OwnedFd>, Deadline)> {
        let fd = usable_fd(&self.fd, &self.read_broken, "read")?;
        let deadline = Deadline::after(self.timeout);
        let mut fds = Vec::new();
        let header = frame::recv_header(fd, &mut fds, deadline, Some(&self.spin));
        match header {
            Ok(Some(len)) => Ok((len, fds, deadline)),
            Ok(None) => Err(Error::Eof),
            // Nothing of a message was read: the connection is intact.
            Err(e @ Error::Timeout(_)) => Err(e),
            Err(e) => Err(self.broke_reading(e)),
        }
    }

    pub(crate) fn recv_frame(&mut self, limit: u64) -> Result<Message> {
        let (len, fds, deadline) = self.next_header()?;
        if len > limit {
            return Err(self.broke_reading(Error::MessageTooLarge { len, limit }));
        }
        let fd = self.read_fd()?;
        match frame::recv_payload(fd, len, deadline) {
            Ok(bytes) => Ok(Message { bytes, fds }),
            Err(e) => Err(self.broke_reading(e)),
        }
    }

    /// Marks the receiving side unusable (a message was left half-read) and returns `e`.
    fn broke_reading(&mut self, e: Error) -> Error {
        self.read_broken = Some(format!("an earlier receive stopped in the middle of a message ({e})"));
        e
    }
}

impl<D: Direction> fmt::Debug for Connection<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Connection");
        s.field("direction", &D::NAME);
        match &self.fd {
            Some(fd) => s.field("fd", fd),
            None => s.field("fd", &"closed"),
        };
        s.finish()
    }
}

impl<D: Direction> From<std::os::unix::net::UnixStream> for Connection<D> {
    fn from(stream: std::os::unix::net::UnixStream) -> Self {
        Self::from_socket(stream.into(), true)
    }
}

impl<D: Direction> From<std::net::TcpStream> for Connection<D> {
    fn from(stream: std::net::TcpStream) -> Self {
        Self::from_socket(stream.into(), false)
    }
}

impl<D: Direction> crate::wait::Waitable for Connection<D> {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd()
    }
}

/// How a connection travels inside a message.
#[derive(Serialize)]
struct WireRef<'a> {
    #[serde(serialize_with = "crate::handle::serialize")]
    fd: &'a OwnedFd,
    direction: &'a str,
    passes_fds: bool,
    max_message: u64,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(deserialize_with = "crate::handle::deserialize")]
    fd: OwnedFd,
    direction: String,
    passes_fds: bool,
    max_message: u64,
}

impl<D: Direction> Serialize for Connection<D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let fd = self.fd.as_ref().ok_or_else(|| S::Error::custom("a closed connection cannot be sent"))?;
        WireRef { fd, direction: D::NAME, passes_fds: self.passes_fds, max_message: self.max_message }
            .serialize(serializer)
    }
}

impl<'de, D: Direction> Deserialize<'de> for Connection<D> {
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> std::result::Result<Self, De::Error> {
        let wire = Wire::deserialize(deserializer)?;
        if wire.direction != D::NAME {
            return Err(reduction::decode_failure(format_args!(
                "received a {} connection where a {} one was expected",
                wire.direction,
                D::NAME
            )));
        }
        let mut conn = Self::from_socket(wire.fd, wire.passes_fds);
        conn.max_message = wire.max_message;
        Ok(conn)
    }
}
