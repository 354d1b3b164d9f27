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
//! Between processes of this crate, [`pipe`] and [`simplex_pipe`] add a ring of shared memory per
//! direction beside the socket: small messages are copied through it without system calls, large
//! ones and those with descriptors take the socket, all in one order (the design, its wake-ups and
//! what a killed process leaves behind are described in the sources, `connection/ring.rs`).
//! [`socket_pipe`] is the bare socket pair, for outside event loops.
//!
//! [`wait`]: crate::wait

mod auth;
pub(crate) mod frame;
#[doc(hidden)]
pub mod fuzz_hooks;
mod listener;
mod payload;
#[cfg(feature = "pickle")]
mod pickle;
pub(crate) mod record;
#[allow(unsafe_code, reason = "shared-memory internals: the rings of a pipe")]
mod ring;

#[cfg(feature = "pickle")]
pub use pickle::PickleValue;

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use auth::{answer_challenge, deliver_challenge};
use frame::Deadline;
pub(crate) use listener::ListenerStopper;
pub use listener::{
    Address, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_PENDING_HANDSHAKES, Listener, connect, connect_timeout,
};

use crate::error::{Error, IoContext, Result};
use crate::reduction::{self, Message};
use crate::shm::Shared;
use crate::sys::{self, Interest, Shutdown, SocketKind};
use payload::Payload;
use ring::{Popped, Rings};

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
    /// The shared-memory rings of a pipe made by this crate (see `ring`); `None` for connections
    /// that may have a foreign peer (listeners, clients, wrapped sockets).
    ring: Option<RingLink>,
    /// A `SOCK_SEQPACKET` socket: frames travel as records (see `record`).
    records: bool,
    direction: PhantomData<fn() -> D>,
}

/// A pipe end's view of the pipe's rings: which side it is (it sends on direction `side`), and
/// the doorbell of each direction.
#[derive(Clone)]
struct RingLink {
    rings: Shared<Rings>,
    side: usize,
    bells: Arc<[OwnedFd; 2]>,
}

impl RingLink {
    /// New rings for a new pipe.
    fn new_pair() -> Result<(RingLink, RingLink)> {
        let rings: Shared<Rings> = Shared::new()?;
        rings.init_handles();
        let bells = Arc::new([
            sys::doorbell().context("create a pipe's doorbell")?,
            sys::doorbell().context("create a pipe's doorbell")?,
        ]);
        Ok((RingLink { rings: rings.clone(), side: 0, bells: Arc::clone(&bells) }, RingLink { rings, side: 1, bells }))
    }

    fn outgoing_bell(&self) -> BorrowedFd<'_> {
        self.bells[self.side].as_fd()
    }

    fn incoming_bell(&self) -> BorrowedFd<'_> {
        self.bells[1 - self.side].as_fd()
    }

    /// Sleeps until the incoming ring may hold a message, the socket has something (a message or
    /// end of file), or `deadline` passes. `None`: the time ran out; `Some(eof)`: look again
    /// (`eof`: the socket is at end of file).
    fn sleep(&self, socket: BorrowedFd<'_>, deadline: Deadline) -> Result<Option<bool>> {
        let direction = self.incoming();
        if !direction.begin_sleep() {
            return Ok(Some(false));
        }
        let bell = self.incoming_bell();
        let polled = sys::poll_readable(&[socket, bell], deadline.left()).context("wait for a message");
        direction.end_sleep();
        let readiness = polled?;
        let ready = |i: usize| readiness.get(i).is_some_and(|r| r.ready);
        let (on_socket, rung) = (ready(0), ready(1));
        if !on_socket && !rung {
            return Ok(None);
        }
        self.woke(socket, on_socket, rung).map(Some)
    }

    /// After a sleep: silences the doorbell if it rang; whether the socket is at end of file.
    fn woke(&self, socket: BorrowedFd<'_>, on_socket: bool, rung: bool) -> Result<bool> {
        if rung {
            self.incoming().silence(self.incoming_bell());
        }
        Ok(on_socket && ring::socket_at_eof(socket)?)
    }

    fn outgoing(&self) -> &ring::Direction {
        self.rings.outgoing(self.side)
    }

    fn incoming(&self) -> &ring::Direction {
        self.rings.incoming(self.side)
    }
}

/// Creates a connected pair of duplex connections (CPython `Pipe()` / `Pipe(duplex=True)`).
///
/// The pair is a Unix stream socket pair plus a ring of shared memory per direction (see the
/// module `ring` in the sources): a message of at most 16 KiB without descriptors is copied
/// through the ring, without a system call while the receiver keeps up (tens of times CPython's
/// rate for small messages, see `bench/README.md`); a larger one streams through the ring in
/// pieces while the receiver keeps up, and its rest goes through the socket when the receiver
/// falls behind; messages carrying descriptors go through the socket. All stay in order. Either
/// end works in any process it is given to, shared by several processes and threads if need be.
///
/// Each end holds four descriptors (the socket, the rings' memory file, a doorbell per direction)
/// where [`socket_pipe`] holds one: mind the descriptor limit when making thousands of pipes.
///
/// Differences from a bare socket pair, none of which CPython code notices: the socket does not
/// show ring messages to an outside event loop (use [`socket_pipe`] for that, or [`wait`]); a
/// process killed in the middle of a message larger than 16 KiB leaves that direction unusable
/// ([`Error::Protocol`]), as a half-sent frame would; one killed in the middle of a smaller one
/// loses at most that message.
///
/// [`wait`]: crate::wait
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
    let (ring_a, ring_b) = RingLink::new_pair()?;
    Ok((Connection::from_socket(a, true).with_ring(ring_a), Connection::from_socket(b, true).with_ring(ring_b)))
}

/// Creates a pair of duplex connections over a bare Unix socket pair, without the shared-memory
/// rings of [`pipe`]: every message is on the socket, so an outside event loop (epoll,
/// `tokio::io::unix::AsyncFd`, ...) can watch [`Connection::fd`], which is readable exactly while
/// a message waits, and [`into_fd`](Connection::into_fd) gives the whole connection away. Slower
/// for small messages.
///
/// The socket is a `SOCK_SEQPACKET` pair: a message of up to 64 KiB is one record (its CPython
/// frame: a 4-byte big-endian length, then the bytes), received with one system call; longer
/// messages continue in records of 64 KiB. [`Connection::from_fd`] recognizes such a socket. For a
/// byte stream framed as CPython frames it, for a Python peer, use a `UnixStream` pair
/// (`Connection::from`).
pub fn socket_pipe() -> Result<(Connection, Connection)> {
    let (a, b) = sys::socketpair_cloexec(SocketKind::SeqPacket).context("create a pipe")?;
    Ok((Connection::from_socket(a, true).with_records(), Connection::from_socket(b, true).with_records()))
}

/// Creates a one-way pipe (CPython `Pipe(duplex=False)`): returns `(reader, writer)`. Like [`pipe`],
/// with a ring for its one direction.
///
/// It is a Unix socket pair shut down in one direction, so descriptors can travel through it too.
#[doc(alias = "Pipe")]
pub fn simplex_pipe() -> Result<(Connection<ReadOnly>, Connection<WriteOnly>)> {
    let (r, w) = sys::socketpair_cloexec(SocketKind::Stream).context("create a pipe")?;
    sys::shutdown(r.as_fd(), Shutdown::Write).context("shut down the reading end's sending side")?;
    sys::shutdown(w.as_fd(), Shutdown::Read).context("shut down the writing end's receiving side")?;
    // The writer sends on direction 0 (side 0), the reader receives on it (side 1).
    let (ring_w, ring_r) = RingLink::new_pair()?;
    Ok((Connection::from_socket(r, true).with_ring(ring_r), Connection::from_socket(w, true).with_ring(ring_w)))
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
            ring: None,
            records: false,
            direction: PhantomData,
        }
    }

    fn with_records(mut self) -> Self {
        self.records = true;
        self
    }

    fn with_ring(mut self, ring: RingLink) -> Self {
        self.ring = Some(ring);
        self
    }

    /// Lets go of the rings (this handle no longer counts as one of its side's).
    fn release_ring(&mut self) {
        if let Some(link) = self.ring.take() {
            link.rings.drop_handle(link.side);
        }
    }

    /// Wraps a connected stream socket (Unix-domain or TCP), or a `SOCK_SEQPACKET` socket of a
    /// [`socket_pipe`]. Only Unix-domain sockets can carry descriptors.
    pub fn from_fd(fd: OwnedFd) -> Self {
        let passes_fds = sys::is_unix_socket(fd.as_fd());
        let records = passes_fds && sys::is_seqpacket(fd.as_fd());
        let conn = Self::from_socket(fd, passes_fds);
        if records { conn.with_records() } else { conn }
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
        self.release_ring();
        self.fd = None;
    }

    /// Whether [`close`](Self::close) was called (CPython `closed`).
    pub fn closed(&self) -> bool {
        self.fd.is_none()
    }

    /// The socket (CPython `fileno()`).
    ///
    /// For an end of a [`pipe`] made by this crate, small messages travel through shared memory
    /// beside the socket (see [`pipe`]): the socket becomes readable for them only while a receiver
    /// waits in [`poll`](Self::poll), [`wait`](crate::wait) or a receive. To watch a pipe from an
    /// outside event loop, make it with [`socket_pipe`].
    #[doc(alias = "fileno")]
    pub fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd()).ok_or(Error::Closed("connection"))
    }

    /// Gives up the socket without closing it. For an end of a [`pipe`], messages that travel
    /// through shared memory are not on the socket: use this on connections from [`socket_pipe`],
    /// [`Listener`] or [`connect`].
    pub fn into_fd(mut self) -> Option<OwnedFd> {
        self.release_ring();
        self.fd.take()
    }

    /// A second handle on the same connection (a duplicated descriptor), for example to receive on
    /// one thread while another sends.
    pub fn try_clone(&self) -> Result<Self> {
        let fd = sys::dup_cloexec(self.fd()?).context("duplicate a connection")?;
        let mut clone = Self::from_socket(fd, self.passes_fds);
        clone.records = self.records;
        clone.max_message = self.max_message;
        clone.timeout = self.timeout;
        if let Some(link) = &self.ring {
            link.rings.add_handle(link.side);
            clone.ring = Some(link.clone());
        }
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
        let deadline = Deadline::after(self.timeout);
        let sent = match &self.ring {
            Some(link) => send_on_ring(link, fd, payload, fds, deadline),
            None if self.records => record::send_frame(fd, payload, fds, deadline),
            None => frame::send_frame(fd, None, payload, fds, deadline),
        };
        match sent {
            Ok(()) => Ok(()),
            Err((e, 0)) => Err(e),
            Err((e, sent)) => {
                self.write_broken = Some(format!("a send failed after {sent} bytes of a message ({e})"));
                Err(e)
            }
        }
    }
}

/// Sends one message on a pipe with rings: through the ring when it is small and carries no
/// descriptors, else as a socket record followed by the frame on the socket. Errors as
/// [`frame::send_frame`]'s (bytes sent before the error: 0 when nothing of the message left).
fn send_on_ring(
    link: &RingLink,
    socket: BorrowedFd<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    deadline: Deadline,
) -> std::result::Result<(), (Error, usize)> {
    if link.rings.peer_may_be_gone(link.side) && sys::peer_hung_up(socket) {
        return Err((ring::peer_gone(), 0));
    }
    let direction = link.outgoing();
    let turn = direction.writers_turn(deadline).map_err(|e| (e, 0))?;
    if fds.is_empty()
        && payload.len() <= ring::RING_MESSAGE_MAX
        && direction.try_publish_message(payload, socket, deadline).map_err(|e| (e, 0))?
    {
        drop(turn);
        direction.wake_receivers(link.outgoing_bell());
        return Ok(());
    }
    // Large and without descriptors: streamed through the ring while the receiver keeps up.
    let mut rest = payload;
    if fds.is_empty() && payload.len() > ring::RING_MESSAGE_MAX {
        let streamed = direction.stream_message(&turn, payload, socket, link.outgoing_bell(), deadline);
        match streamed.map_err(|e| (e, usize::from(turn.in_message())))? {
            ring::Streamed::Whole => return Ok(()),
            ring::Streamed::NotStarted => {}
            ring::Streamed::RestOnSocket(at) => rest = &payload[at..],
        }
    }
    // With descriptors, or the ring stays full (a receiver that does not keep up, or that runs
    // later in this very thread): through the socket. Wait for room on the socket first, so that
    // a timeout leaves nothing half-sent (the first send then takes at least the marker).
    if !turn.in_message() {
        frame::Waiter::wait(deadline, socket, Interest::Write).map_err(|e| (e, 0))?;
        // While the turn is marked, a failure (or the death of this process) leaves the direction
        // broken: the turn's drop, or the next taker, marks it.
        turn.enter_socket();
        if let Err(e) = direction.publish_socket_record(socket, deadline) {
            turn.leave_socket();
            return Err((e, 0));
        }
    }
    frame::widen_for(socket, rest.len());
    let check = || direction.check_receiver();
    let sent = match deadline.is_bounded() {
        // Without a deadline, sends block in the kernel (in slices, for the receiver's liveness).
        false => frame::send_frame_in_slices(socket, Some(ring::SOCKET_MESSAGE), rest, fds, &check),
        true => {
            let watched = frame::Watched { deadline, check: Some(&check) };
            frame::send_frame(socket, Some(ring::SOCKET_MESSAGE), rest, fds, watched)
        }
    };
    sent.map_err(|(e, sent)| (e, sent.max(1)))?;
    turn.leave_socket();
    Ok(())
}

impl<D: CanRecv> Connection<D> {
    /// Receives one message and decodes it as `T` (CPython `recv()`). [`Error::Eof`] when the peer
    /// closed and nothing is left. A message that does not decode as `T` is an error; the
    /// connection stays usable.
    ///
    /// Decoding is `T`'s own `Deserialize` over postcard, which has no nesting limit of its own:
    /// this crate's nesting types ([`manager::Value`](crate::manager::Value)) refuse values nested
    /// more than 1000 deep, but a recursive type of yours (a tree whose nodes hold nodes), decoded
    /// from a peer you do not trust, recurses once per level and can overflow the receiving
    /// thread's stack. Bound its depth in its `Deserialize`, or take the bytes with
    /// [`recv_bytes`](Self::recv_bytes) and decode them with a format that has a limit.
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
        let (len, _fds, deadline, turn, streamed) = match self.next_message()? {
            Next::Whole(message) if message.len() <= buf.len() => {
                buf[..message.len()].copy_from_slice(&message);
                return Ok(message.len());
            }
            Next::Whole(message) => return Err(Error::BufferTooShort { capacity: buf.len(), message }),
            Next::OnSocket { len, fds, deadline, turn, streamed } => (len, fds, deadline, turn, streamed),
            Next::Record { first, deadline, .. } => return self.record_into(buf, first, deadline),
        };
        if len > buf.len() as u64 && len > self.max_message {
            return Err(self.broke_reading(Error::MessageTooLarge { len, limit: self.max_message }));
        }
        let fd = self.read_fd()?;
        let check = || turn.as_ref().map_or(Ok(()), SocketRead::check_sender);
        let watched = frame::Watched { deadline, check: turn.is_some().then_some(&check) };
        let mut payload = Payload::new(fd, watched, streamed_through(&turn, streamed), len);
        if len <= buf.len() as u64 {
            let len = len as usize;
            payload.read_exact(&mut buf[..len]).map_err(|e| self.broke_reading(e))?;
            finish_socket_read(turn);
            return Ok(len);
        }
        let message = payload.read_all().map_err(|e| self.broke_reading(e))?;
        finish_socket_read(turn);
        Err(Error::BufferTooShort { capacity: buf.len(), message })
    }

    /// Whether a message (or end of file) is waiting, after waiting up to `timeout` for one (`None`:
    /// as long as it takes). CPython `poll(timeout)`; its default `poll()` is
    /// `poll(Some(Duration::ZERO))`.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let fd = self.read_fd()?;
        let Some(link) = &self.ring else {
            return sys::poll_one(fd, Interest::Read, timeout).context("poll a connection");
        };
        let direction = link.incoming();
        let deadline = Deadline::after(timeout);
        loop {
            if direction.is_broken() || direction.has_data() {
                return Ok(true);
            }
            match link.sleep(fd, deadline)? {
                None => return Ok(direction.has_data()),
                Some(true) => return Ok(true), // end of file: a receive returns at once
                Some(false) => {}
            }
        }
    }

    /// Waits for the next message and takes it from the ring, or reads its header from the socket
    /// (a timeout before any of it was read leaves the connection intact). [`Error::Eof`] when the
    /// peer closed between messages.
    fn next_message(&mut self) -> Result<Next> {
        let fd = usable_fd(&self.fd, &self.read_broken, "read")?;
        let deadline = Deadline::after(self.timeout);
        let Some(link) = &self.ring else {
            let mut fds = Vec::new();
            if self.records {
                return match record::recv_first(fd, &mut fds, deadline, Some(&self.spin)) {
                    Ok(Some(first)) => Ok(Next::Record { first, fds, deadline }),
                    Ok(None) => Err(Error::Eof),
                    Err(e @ Error::Timeout(_)) => Err(e),
                    Err(e) => Err(self.broke_reading(e)),
                };
            }
            return match frame::recv_header(fd, &mut fds, deadline, Some(&self.spin)) {
                Ok(Some(len)) => Ok(Next::OnSocket { len, fds, deadline, turn: None, streamed: false }),
                Ok(None) => Err(Error::Eof),
                // Nothing of a message was read: the connection is intact.
                Err(e @ Error::Timeout(_)) => Err(e),
                Err(e) => Err(self.broke_reading(e)),
            };
        };
        let direction = link.incoming();
        loop {
            let turn = direction.readers_turn(deadline)?;
            match direction.pop() {
                Some(Popped::Message(message)) => return Ok(Next::Whole(message)),
                Some(Popped::OnSocket) => {
                    // The turn stays taken until the payload is read (see `SocketRead`).
                    turn.enter_socket();
                    turn.keep();
                    let link = link.clone();
                    return self.socket_message_header(link, deadline);
                }
                Some(Popped::Streamed { len }) => {
                    // As for a socket message: the turn stays taken until the payload is read.
                    turn.enter_socket();
                    turn.keep();
                    let turn = Some(SocketRead { link: link.clone(), done: false });
                    return Ok(Next::OnSocket { len, fds: Vec::new(), deadline, turn, streamed: true });
                }
                None => drop(turn),
            }
            if self.spin.spin(deadline, || direction.has_data() || direction.is_broken()) {
                continue;
            }
            match link.sleep(fd, deadline)? {
                None => return Err(deadline.timeout_error()),
                Some(true) if !direction.has_data() => return Err(Error::Eof),
                Some(_) => {}
            }
        }
    }

    /// The header of a message sent through a pipe's socket, read under the readers' turn (which
    /// [`Next::OnSocket`] keeps until the payload is read).
    fn socket_message_header(&mut self, link: RingLink, deadline: Deadline) -> Result<Next> {
        let fd = self.read_fd()?;
        let mut fds = Vec::new();
        let check = || link.incoming().check_sender();
        match ring::read_socket_header(fd, &mut fds, frame::Watched { deadline, check: Some(&check) }) {
            Ok(Some(len)) => {
                Ok(Next::OnSocket { len, fds, deadline, turn: Some(SocketRead { link, done: false }), streamed: false })
            }
            Ok(None) => {
                link.incoming().finish_socket_read();
                Err(Error::Eof)
            }
            Err(e) => {
                link.incoming().abandon_socket_read();
                Err(self.broke_reading(e))
            }
        }
    }

    pub(crate) fn recv_frame(&mut self, limit: u64) -> Result<Message> {
        let (len, fds, deadline, turn, streamed) = match self.next_message()? {
            Next::Record { first, fds, deadline } => return self.record_message(first, fds, deadline, limit),
            Next::Whole(bytes) if bytes.len() as u64 > limit => {
                return Err(self.broke_reading(Error::MessageTooLarge { len: bytes.len() as u64, limit }));
            }
            Next::Whole(bytes) => return Ok(Message { bytes, fds: Vec::new() }),
            Next::OnSocket { len, fds, deadline, turn, streamed } => (len, fds, deadline, turn, streamed),
        };
        if len > limit {
            return Err(self.broke_reading(Error::MessageTooLarge { len, limit }));
        }
        let fd = self.read_fd()?;
        let check = || turn.as_ref().map_or(Ok(()), SocketRead::check_sender);
        let watched = frame::Watched { deadline, check: turn.is_some().then_some(&check) };
        match Payload::new(fd, watched, streamed_through(&turn, streamed), len).read_all() {
            Ok(bytes) => {
                finish_socket_read(turn);
                Ok(Message { bytes, fds })
            }
            Err(e) => Err(self.broke_reading(e)),
        }
    }

    /// Receives one message into `buf` (cleared first: a caller keeps its capacity from message to
    /// message, as the pool's scheduler and workers do) and its descriptors into `fds`. Errors as
    /// [`recv_frame`](Self::recv_frame)'s.
    pub(crate) fn recv_frame_into(&mut self, buf: &mut Vec<u8>, fds: &mut Vec<OwnedFd>) -> Result<()> {
        buf.clear();
        if !self.records || self.ring.is_some() {
            let message = self.recv_frame(self.max_message)?;
            buf.extend_from_slice(&message.bytes);
            fds.extend(message.fds);
            return Ok(());
        }
        let fd = usable_fd(&self.fd, &self.read_broken, "read")?;
        let deadline = Deadline::after(self.timeout);
        let len = match record::recv_first_into(fd, fds, deadline, Some(&self.spin), buf) {
            Ok(Some(len)) => len,
            Ok(None) => return Err(Error::Eof),
            Err(e @ Error::Timeout(_)) => return Err(e),
            Err(e) => return Err(self.broke_reading(e)),
        };
        if len > self.max_message {
            buf.clear();
            return Err(self.broke_reading(Error::MessageTooLarge { len, limit: self.max_message }));
        }
        let fd = self.read_fd()?;
        record::recv_rest(fd, buf, len, deadline).map_err(|e| self.broke_reading(e))
    }

    /// Like [`recv_bytes`](Self::recv_bytes), but a message over this end's limit is read and
    /// dropped in pieces (never held whole) instead of breaking the connection: it fails with
    /// [`Error::MessageTooLarge`] and the connection stays usable, so that a protocol with
    /// replies (the manager's) can tell the sender.
    pub(crate) fn recv_bytes_or_skip(&mut self) -> Result<Vec<u8>> {
        let limit = self.max_message;
        let (len, _fds, deadline, turn, streamed) = match self.next_message()? {
            // A message in records (a socket pipe): over the limit, it breaks the connection.
            Next::Record { first, fds, deadline } => {
                return self.record_message(first, fds, deadline, limit).map(|m| m.bytes);
            }
            Next::Whole(bytes) if bytes.len() as u64 > limit => {
                return Err(Error::MessageTooLarge { len: bytes.len() as u64, limit });
            }
            Next::Whole(bytes) => return Ok(bytes),
            Next::OnSocket { len, fds, deadline, turn, streamed } => (len, fds, deadline, turn, streamed),
        };
        let fd = self.read_fd()?;
        let check = || turn.as_ref().map_or(Ok(()), SocketRead::check_sender);
        let watched = frame::Watched { deadline, check: turn.is_some().then_some(&check) };
        let mut payload = Payload::new(fd, watched, streamed_through(&turn, streamed), len);
        if len <= limit {
            return match payload.read_all() {
                Ok(bytes) => {
                    finish_socket_read(turn);
                    Ok(bytes)
                }
                Err(e) => Err(self.broke_reading(e)),
            };
        }
        let mut piece = vec![0u8; 64 << 10];
        let mut left = len;
        let mut skipped = Ok(());
        while left > 0 && skipped.is_ok() {
            let n = left.min(piece.len() as u64) as usize;
            skipped = payload.read_exact(&mut piece[..n]);
            left -= n as u64;
        }
        match skipped {
            Ok(()) => {
                finish_socket_read(turn);
                Err(Error::MessageTooLarge { len, limit })
            }
            Err(e) => Err(self.broke_reading(e)),
        }
    }

    /// The rest of a message whose first record was read (`record_message` for [`recv_frame`],
    /// `record_into` for [`recv_bytes_into`]).
    fn record_message(
        &mut self,
        first: record::FirstRecord,
        fds: Vec<OwnedFd>,
        deadline: Deadline,
        limit: u64,
    ) -> Result<Message> {
        if first.len > limit {
            return Err(self.broke_reading(Error::MessageTooLarge { len: first.len, limit }));
        }
        let mut bytes = first.payload;
        record::recv_rest(self.read_fd()?, &mut bytes, first.len, deadline).map_err(|e| self.broke_reading(e))?;
        Ok(Message { bytes, fds })
    }

    fn record_into(&mut self, buf: &mut [u8], first: record::FirstRecord, deadline: Deadline) -> Result<usize> {
        let fd = self.read_fd()?;
        if first.len <= buf.len() as u64 {
            let (len, got) = (first.len as usize, first.payload.len());
            buf[..got].copy_from_slice(&first.payload);
            record::recv_rest_into(fd, &mut buf[..len], got, deadline).map_err(|e| self.broke_reading(e))?;
            return Ok(len);
        }
        if first.len > self.max_message {
            return Err(self.broke_reading(Error::MessageTooLarge { len: first.len, limit: self.max_message }));
        }
        let mut message = first.payload;
        record::recv_rest(fd, &mut message, first.len, deadline).map_err(|e| self.broke_reading(e))?;
        Err(Error::BufferTooShort { capacity: buf.len(), message })
    }

    /// Marks the receiving side unusable (a message was left half-read) and returns `e`.
    fn broke_reading(&mut self, e: Error) -> Error {
        self.read_broken = Some(format!("an earlier receive stopped in the middle of a message ({e})"));
        e
    }
}

/// The next message, as [`Connection::next_message`] found it.
enum Next {
    /// A whole message from a pipe's ring.
    Whole(Vec<u8>),
    /// A message whose payload waits on the socket: its length, the descriptors sent with it,
    /// the deadline for the rest, and (on a pipe) the readers' turn, held until the payload is in.
    /// `streamed`: the payload comes in pieces through the ring instead (see `ring`).
    OnSocket { len: u64, fds: Vec<OwnedFd>, deadline: Deadline, turn: Option<SocketRead>, streamed: bool },
    /// The first record of a message on a `SOCK_SEQPACKET` socket (all of it, for most), the
    /// descriptors sent with it and the deadline for the rest.
    Record { first: record::FirstRecord, fds: Vec<OwnedFd>, deadline: Deadline },
}

/// A reader of a pipe in the middle of a message on the socket. The readers' turn is held (in
/// shared memory) until [`finish_socket_read`]; dropped before that, the direction is marked
/// broken (the socket is no longer aligned on messages) and the turn released.
struct SocketRead {
    link: RingLink,
    done: bool,
}

impl SocketRead {
    /// Fails if the sender of the message being read died in the middle of it.
    fn check_sender(&self) -> Result<()> {
        self.link.incoming().check_sender()
    }
}

impl Drop for SocketRead {
    fn drop(&mut self) {
        if !self.done {
            self.link.incoming().abandon_socket_read();
        }
    }
}

/// The rings a message's payload streams through, for [`Payload`] (`None`: on the socket).
fn streamed_through(turn: &Option<SocketRead>, streamed: bool) -> Option<&RingLink> {
    turn.as_ref().filter(|_| streamed).map(|read| &read.link)
}

/// The payload of a socket message was read whole: the readers' turn passes on.
fn finish_socket_read(turn: Option<SocketRead>) {
    if let Some(mut read) = turn {
        read.link.incoming().finish_socket_read();
        read.done = true;
    }
}

impl<D: Direction> Drop for Connection<D> {
    fn drop(&mut self) {
        self.release_ring();
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

    fn extra_wait_fd(&self) -> Option<BorrowedFd<'_>> {
        self.waited_ring().map(RingLink::incoming_bell)
    }

    fn before_poll(&self) -> Result<bool> {
        match self.waited_ring() {
            Some(link) => Ok(link.incoming().is_broken() || !link.incoming().begin_sleep()),
            None => Ok(false),
        }
    }

    fn after_poll(&self, fd_ready: bool, extra_ready: bool) -> Result<bool> {
        let Some(link) = self.waited_ring() else { return Ok(fd_ready) };
        link.incoming().end_sleep();
        if link.woke(self.fd()?, fd_ready, extra_ready)? {
            return Ok(true); // end of file: a receive returns at once
        }
        Ok(link.incoming().has_data())
    }
}

impl<D: Direction> Connection<D> {
    /// The rings a wait on this end watches: those of a receiving pipe end.
    fn waited_ring(&self) -> Option<&RingLink> {
        self.ring.as_ref().filter(|_| D::READABLE)
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
    /// A pipe's rings, the side of this end and the doorbells.
    #[allow(clippy::type_complexity)]
    ring: Option<(&'a Shared<Rings>, u8, [Bell<'a>; 2])>,
    records: bool,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(deserialize_with = "crate::handle::deserialize")]
    fd: OwnedFd,
    direction: String,
    passes_fds: bool,
    max_message: u64,
    ring: Option<(Shared<Rings>, u8, [OwnedBell; 2])>,
    records: bool,
}

/// A doorbell on its way to another process.
#[derive(Serialize)]
struct Bell<'a>(#[serde(serialize_with = "crate::handle::serialize")] &'a OwnedFd);

#[derive(Deserialize)]
struct OwnedBell(#[serde(deserialize_with = "crate::handle::deserialize")] OwnedFd);

impl<D: Direction> Serialize for Connection<D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let fd =
            self.fd.as_ref().ok_or_else(|| crate::reduction::encode_failure("a closed connection cannot be sent"))?;
        let ring =
            self.ring.as_ref().map(|link| (&link.rings, link.side as u8, [Bell(&link.bells[0]), Bell(&link.bells[1])]));
        let done = WireRef {
            fd,
            direction: D::NAME,
            passes_fds: self.passes_fds,
            max_message: self.max_message,
            ring,
            records: self.records,
        }
        .serialize(serializer)?;
        // The copy on its way counts as a handle of this side until its receiver adopts it (a copy
        // that is never received leaves the count high: peer checks then rely on the socket).
        if let Some(link) = &self.ring {
            link.rings.add_handle(link.side);
        }
        Ok(done)
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
        conn.records = wire.records;
        if let Some((rings, side, [OwnedBell(bell0), OwnedBell(bell1)])) = wire.ring {
            conn.ring = Some(RingLink { rings, side: usize::from(side.min(1)), bells: Arc::new([bell0, bell1]) });
        }
        Ok(conn)
    }
}
