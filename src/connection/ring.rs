//! The shared-memory rings under a [`pipe`](super::pipe): small messages between processes
//! without a system call.
//!
//! A pipe made by this crate is a Unix socket pair **and** a memory file holding one ring per
//! direction. A message of at most [`RING_MESSAGE_MAX`] bytes without descriptors is copied into
//! the sender's ring and published with one release store; the receiver copies it out. Neither
//! side makes a system call while the other keeps up, which is what lets a stream of small
//! messages run at memory speed instead of at the speed of `sendmsg`/`recvmsg` (see
//! `connection.oneway.msg64` in `bench/README.md`).
//!
//! Each direction also has a *doorbell* (an `eventfd`), and the socket stays the connection's
//! identity:
//! - **Waking.** A receiver that finds its ring empty spins briefly (`sync::spin`), then counts
//!   itself in `sleepers` and sleeps in `poll(2)` on the socket and the doorbell. A sender that
//!   publishes while someone sleeps rings the doorbell. A receiver woken by it silences it, and
//!   rings it again if messages remain and others sleep: a doorbell, unlike a byte in a socket,
//!   can be rung by receivers too, so no sleeper is forgotten when another receiver silenced the
//!   bell meant for it. [`wait`](crate::wait) and [`poll`](super::Connection::poll) register as
//!   sleepers the same way, so they see ring messages.
//! - **End of file.** When every descriptor of the peer's end is closed (however its processes
//!   ended), the socket reports it; a receiver reports [`Error::Eof`] once the ring is empty too.
//! - **Large messages and descriptors** go through the socket, in order with the rest: the sender
//!   publishes a *socket record* in the ring, then writes [`SOCKET_MESSAGE`] and the frame (with
//!   its descriptors) to the socket. A receiver that reaches the record reads the frame there.
//! - **A full ring** (a receiver that does not keep up, or that runs later in the sender's own
//!   thread): the sender waits up to [`OVERFLOW_AFTER`] for room, then sends through the socket as
//!   above; message records leave room for [`SOCKET_RESERVE`] bytes of socket records, so a pipe
//!   holds at least what its socket alone would.
//!
//! Several processes and threads may share either end: the ring's writers take turns under a
//! robust lock, and so do its readers. Each process's copy of a message happens before the
//! published position moves, so a process killed in the middle of a ring copy loses nothing and
//! corrupts nothing: the message it was sending was not published yet, the message it was taking
//! is still there for the next reader. A sender killed after it published a socket record but
//! before its frame left loses that message (its receiver then gets end of file, if nobody else
//! holds the sending end). A process killed while it moved a message through the socket leaves
//! that direction unusable ([`Error::Protocol`] for everybody who uses it next, noticed within
//! 100 ms by whoever waits for the rest), as a half-sent frame would on a plain socket. Records
//! are checked against what was published: garbage written into the ring breaks the direction,
//! it is never read out of bounds.
//!
//! The records are those of `shm::record_ring` (the queues' too), of two kinds: DATA (the message
//! is the payload) and SOCKET (no payload: the next frame on the socket).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use super::frame::Waiter;
use crate::deadline::Deadline;
use crate::error::{Error, IoContext, Result};
use crate::shm::record_ring::{self, Found, RecordRing};
use crate::shm::{SharedBytes, ShmSafe};
use crate::sync::doorbell::{Bell, Sleepers};
use crate::sync::futex::Kernel;
use crate::sync::lock_state::{Acquired, LIVENESS_SLICE, LockState};
use crate::sync::spin::SpinState;
use crate::sys::{self, Interest};

/// The bytes of one direction's ring.
pub(crate) const RING_BYTES: usize = 64 << 10;

/// The largest message that travels through a ring; larger ones go through the socket.
pub(crate) const RING_MESSAGE_MAX: usize = 16 << 10;

/// The byte that starts a message sent through the socket.
pub(crate) const SOCKET_MESSAGE: u8 = b'M';

/// How long a sender of a small message waits for room in a full ring before it sends the message
/// through the socket instead.
const OVERFLOW_AFTER: Duration = Duration::from_millis(2);

/// Room that message records leave for socket records: 512 of them, more than a socket's buffer
/// holds of the smallest messages (each takes a few hundred bytes of it), so that a pipe holds at
/// least what its socket alone would.
const SOCKET_RESERVE: usize = 512 * record_ring::record_size(0);
const KIND_DATA: u32 = 1;
const KIND_SOCKET: u32 = 2;

/// One end of a direction: the writers' or the readers' position, and their turn.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct End {
    /// Bytes published (writers) or consumed (readers) since the start, ever growing.
    pos: AtomicU64,
    /// Set while the turn's holder moves a message through the socket.
    in_socket: AtomicU32,
    /// Whose turn it is; robust, so a holder that died is noticed.
    turn: LockState,
}

/// How the two ends find each other when one of them waits.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct Signals {
    /// Receivers asleep on the doorbell and the socket (or about to be).
    sleepers: Sleepers,
    /// Senders asleep on `room` (or about to be), waiting for the ring to drain.
    room_waiters: AtomicU32,
    /// Bumped when room appears while senders wait; the futex they sleep on.
    room: AtomicU32,
    /// Non-zero once a message was left half-moved through the socket: the direction is unusable.
    broken: AtomicU32,
    /// How long a sender watches a full ring before it sleeps.
    spin: SpinState,
}

/// One direction of a pipe: a ring of records, its ends and their signals.
#[repr(C)]
pub(crate) struct Direction {
    writers: End,
    readers: End,
    signals: Signals,
    data: SharedBytes<RING_BYTES>,
}

/// Both directions of a pipe, and how many handles each side has (a hint, see
/// [`Rings::peer_may_be_gone`]).
#[repr(C)]
pub(crate) struct Rings {
    directions: [Direction; 2],
    handles: [AtomicI32; 2],
}

// SAFETY: atomics, robust lock states, spin counters and a `SharedBytes` region: no pointers, all
// zeros is the valid initial state (empty rings, free turns), no drop glue; the byte region is
// only touched under the ring protocol (see `Direction`).
unsafe impl ShmSafe for Direction {}
// SAFETY: as for `Direction`, plus two atomic counters.
unsafe impl ShmSafe for Rings {}
// SAFETY: atomics only, zero valid, no drop glue.
unsafe impl ShmSafe for SpinState {}

impl Rings {
    /// The direction `side` sends on.
    pub(crate) fn outgoing(&self, side: usize) -> &Direction {
        &self.directions[side]
    }

    /// The direction `side` receives on.
    pub(crate) fn incoming(&self, side: usize) -> &Direction {
        &self.directions[1 - side]
    }

    /// Counts a new handle of `side` (a clone, a copy in flight to another process).
    pub(crate) fn add_handle(&self, side: usize) {
        self.handles[side].fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets a handle of `side` that was closed.
    pub(crate) fn drop_handle(&self, side: usize) {
        self.handles[side].fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether the peer of `side` may have closed its end. The handle counts are a hint: a process
    /// killed before it closed its handles leaves its count high (the kernel's view of the socket
    /// is then what tells, when a sender finds the ring full), and a handle inherited through
    /// `fork` is not counted (then this says "maybe" and the caller asks the kernel).
    pub(crate) fn peer_may_be_gone(&self, side: usize) -> bool {
        self.handles[1 - side].load(Ordering::Relaxed) <= 0
    }

    /// Sets the counts of a new pipe: one handle each.
    pub(crate) fn init_handles(&self) {
        self.handles[0].store(1, Ordering::Relaxed);
        self.handles[1].store(1, Ordering::Relaxed);
    }
}

/// What a receiver found at the head of its ring.
pub(crate) enum Popped {
    /// A whole message.
    Message(Vec<u8>),
    /// The next message waits on the socket; the caller holds the readers' turn to read it.
    OnSocket,
}

/// A turn of the writers or the readers: released on drop. Dropped while moving a message through
/// the socket ([`Turn::enter_socket`] without [`Turn::leave_socket`]), it marks the direction
/// broken.
pub(crate) struct Turn<'a> {
    end: &'a End,
    direction: &'a Direction,
}

impl Turn<'_> {
    /// The holder starts moving a message through the socket.
    pub(crate) fn enter_socket(&self) {
        self.end.in_socket.store(1, Ordering::Relaxed);
    }

    /// The message went through the socket whole.
    pub(crate) fn leave_socket(&self) {
        self.end.in_socket.store(0, Ordering::Relaxed);
    }

    /// Keeps the turn beyond this guard: [`Direction::finish_socket_read`] or
    /// [`Direction::abandon_socket_read`] ends it (readers' turns only).
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.end.in_socket.load(Ordering::Relaxed) != 0 {
            self.direction.break_off();
            self.end.in_socket.store(0, Ordering::Relaxed);
        }
        self.end.turn.release::<Kernel>();
    }
}

impl Direction {
    /// Whether a record waits to be taken.
    pub(crate) fn has_data(&self) -> bool {
        self.writers.pos.load(Ordering::SeqCst) != self.readers.pos.load(Ordering::SeqCst)
    }

    /// Whether a process left a message half-moved through the socket.
    pub(crate) fn is_broken(&self) -> bool {
        self.signals.broken.load(Ordering::Acquire) != 0
    }

    fn break_off(&self) {
        self.signals.broken.store(1, Ordering::Release);
    }

    /// Fails if the direction is broken.
    pub(crate) fn check(&self) -> Result<()> {
        match self.is_broken() {
            false => Ok(()),
            true => Err(Error::Protocol(
                "a process using this pipe stopped in the middle of a large message (killed, or timed out while \
                 sending or receiving it); this direction of the pipe can no longer be used"
                    .into(),
            )),
        }
    }

    /// For a receiver waiting for the rest of a socket message: fails if its sender died in the
    /// middle of it (and marks the direction broken).
    pub(crate) fn check_sender(&self) -> Result<()> {
        self.check_end(&self.writers)
    }

    /// For a sender waiting for room on the socket: fails if the receiver reading its message died
    /// in the middle of it (and marks the direction broken).
    pub(crate) fn check_receiver(&self) -> Result<()> {
        self.check_end(&self.readers)
    }

    fn check_end(&self, end: &End) -> Result<()> {
        if end.in_socket.load(Ordering::Relaxed) != 0 && end.turn.holder_died() {
            self.break_off();
        }
        self.check()
    }

    /// The writers' turn, waiting until `deadline` for it.
    pub(crate) fn writers_turn(&self, deadline: Deadline) -> Result<Turn<'_>> {
        self.take_turn(&self.writers, deadline)
    }

    /// The readers' turn, waiting until `deadline` for it.
    pub(crate) fn readers_turn(&self, deadline: Deadline) -> Result<Turn<'_>> {
        self.take_turn(&self.readers, deadline)
    }

    fn take_turn<'a>(&'a self, end: &'a End, deadline: Deadline) -> Result<Turn<'a>> {
        match end.turn.acquire::<Kernel>(sys::current_thread(), deadline.left(), false) {
            Acquired::Clean => {}
            // The holder died. In the middle of a ring copy it changed nothing that counts (the
            // positions move after the copies); in the middle of a socket message, the socket
            // is no longer aligned on messages.
            Acquired::OwnerDied(_) => {
                if end.in_socket.swap(0, Ordering::Relaxed) != 0 {
                    self.break_off();
                }
                end.turn.recover();
            }
            Acquired::No => return Err(deadline.timeout_error()),
            Acquired::Deadlock => {
                return Err(Error::InvalidState(
                    "a thread used a pipe end while it was already sending or receiving on it".into(),
                ));
            }
        }
        let turn = Turn { end, direction: self };
        self.check()?;
        Ok(turn)
    }

    /// Publishes `payload` as a message record if the ring has room for it within
    /// [`OVERFLOW_AFTER`] (or the deadline, if sooner): false if it stayed too full, and the
    /// message should go through the socket. The caller holds the writers' turn. Message records
    /// leave [`SOCKET_RESERVE`] bytes free, so that a sender can always fall back on the socket (a
    /// pipe then holds at least as much as its socket).
    ///
    /// Waiting a little for a receiver that does not keep up pays: when it runs, it drains the
    /// whole ring, hundreds of messages, without a system call on either side; a message through
    /// the socket costs two. A receiver that never comes (it runs later in this very thread) costs
    /// [`OVERFLOW_AFTER`] per message beyond the ring.
    pub(crate) fn try_publish_message(
        &self,
        payload: &[u8],
        socket: BorrowedFd<'_>,
        deadline: Deadline,
    ) -> Result<bool> {
        let placement = self.ring().place(self.writers.pos.load(Ordering::Relaxed), payload.len());
        let need = placement.footprint as usize + SOCKET_RESERVE;
        if self.room() < need {
            let patience =
                Deadline::after(Some(deadline.left().map_or(OVERFLOW_AFTER, |left| left.min(OVERFLOW_AFTER))));
            match self.wait_for_room(need, socket, patience) {
                Ok(()) => {}
                Err(Error::Timeout(_)) if deadline.passed() => return Err(deadline.timeout_error()),
                Err(Error::Timeout(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.publish(KIND_DATA, payload);
        Ok(true)
    }

    /// Publishes a socket record, waiting for room until `deadline`. The caller holds the writers'
    /// turn. `socket` is this side's socket (to see a peer that left while the ring stays full).
    pub(crate) fn publish_socket_record(&self, socket: BorrowedFd<'_>, deadline: Deadline) -> Result<()> {
        let placement = self.ring().place(self.writers.pos.load(Ordering::Relaxed), 0);
        self.wait_for_room(placement.footprint as usize, socket, deadline)?;
        self.publish(KIND_SOCKET, &[]);
        Ok(())
    }

    fn ring(&self) -> RecordRing<'_, SharedBytes<RING_BYTES>> {
        RecordRing::new(&self.data)
    }

    /// Writes a record (room checked by the caller, who holds the writers' turn) and publishes it.
    fn publish(&self, kind: u32, payload: &[u8]) {
        let ring = self.ring();
        let tail = self.writers.pos.load(Ordering::Relaxed);
        let placement = ring.place(tail, payload.len());
        // SAFETY: the bytes past the published end, up to the readers' position plus the ring's
        // size, belong to the writer holding the turn (its caller checked that the footprint is
        // free).
        unsafe { ring.write(tail, placement, kind, &[payload]) };
        self.writers.pos.store(tail + placement.footprint, Ordering::Release);
    }

    /// Wakes sleeping receivers after a publication: rings `bell` (this direction's doorbell) if
    /// anyone sleeps.
    pub(crate) fn wake_receivers(&self, bell: BorrowedFd<'_>) {
        self.signals.sleepers.published(&Doorbell(bell));
    }

    /// After a receiver woke: silences `bell`, then rings it again if messages wait and other
    /// receivers sleep (the ring may have held a message for each of them).
    pub(crate) fn silence(&self, bell: BorrowedFd<'_>) {
        self.signals.sleepers.woken_by_bell(&Doorbell(bell), || self.has_data());
    }

    fn room(&self) -> usize {
        let used = self.writers.pos.load(Ordering::Relaxed) - self.readers.pos.load(Ordering::SeqCst);
        RING_BYTES - used as usize
    }

    /// Waits until `need` bytes are free: spinning a little, then asleep on the `room` futex in
    /// slices, checking between slices that the peer still has its end open.
    fn wait_for_room(&self, need: usize, socket: BorrowedFd<'_>, deadline: Deadline) -> Result<()> {
        let signals = &self.signals;
        loop {
            if self.room() >= need {
                return Ok(());
            }
            if signals.spin.spin(deadline, || self.room() >= need) {
                continue;
            }
            signals.room_waiters.fetch_add(1, Ordering::SeqCst);
            let seen = signals.room.load(Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.room() >= need {
                signals.room_waiters.fetch_sub(1, Ordering::Relaxed);
                return Ok(());
            }
            let slice = deadline.left().map_or(LIVENESS_SLICE, |left| left.min(LIVENESS_SLICE));
            let waited = sys::futex_wait(&signals.room, seen, Some(slice));
            signals.room_waiters.fetch_sub(1, Ordering::Relaxed);
            if waited == sys::FutexWait::TimedOut {
                if deadline.passed() {
                    return Err(deadline.timeout_error());
                }
                if sys::peer_hung_up(socket) {
                    return Err(peer_gone());
                }
                self.check()?;
            }
        }
    }

    /// Takes the record at the head, if any. The caller holds the readers' turn. A message longer
    /// than `limit` is taken too (and reported by the caller).
    pub(crate) fn pop(&self) -> Option<Popped> {
        let head = self.readers.pos.load(Ordering::Relaxed);
        let tail = self.writers.pos.load(Ordering::Acquire);
        if tail == head || self.is_broken() {
            return None;
        }
        // SAFETY: published bytes (below the writers' position, acquired above) that no writer
        // touches until the readers' position passes them; the turn keeps other readers away.
        // What the records claim is checked against what was published: a peer that wrote garbage
        // into the shared memory gets the direction broken, never a read out of bounds or an
        // endless stream of messages.
        let (popped, next) = match unsafe { self.ring().read(head, tail) } {
            Found::Record { kind: KIND_SOCKET, payload, next } if payload.is_empty() => (Some(Popped::OnSocket), next),
            Found::Record { kind: KIND_DATA, payload, next } => (Some(Popped::Message(payload)), next),
            // Only WRAP records up to the published end.
            Found::Empty => (None, tail),
            Found::Record { .. } | Found::Malformed { .. } => {
                self.break_off();
                return None;
            }
        };
        self.readers.pos.store(next, Ordering::Release);
        self.room_appeared();
        popped
    }

    /// Puts `bytes` in a fresh ring as if a sender had published them (for the fuzz target of
    /// the record decoder). Only for a ring no other thread or process uses.
    pub(crate) fn publish_raw_for_fuzzing(&self, bytes: &[u8]) {
        let len = bytes.len().min(RING_BYTES);
        // SAFETY: a fresh ring of the caller's own, used by no other thread or process; in bounds.
        unsafe { self.data.write(0, &bytes[..len]) };
        self.writers.pos.store(len as u64, Ordering::Release);
    }

    /// Wakes senders waiting for room.
    fn room_appeared(&self) {
        fence(Ordering::SeqCst);
        if self.signals.room_waiters.load(Ordering::Relaxed) > 0 {
            self.signals.room.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(&self.signals.room, u32::MAX);
        }
    }

    /// Ends a readers' turn kept for a socket message, read whole.
    pub(crate) fn finish_socket_read(&self) {
        self.readers.in_socket.store(0, Ordering::Relaxed);
        self.readers.turn.release::<Kernel>();
    }

    /// Ends a readers' turn kept for a socket message that was not read whole: the socket is no
    /// longer aligned on messages, the direction is broken.
    pub(crate) fn abandon_socket_read(&self) {
        if self.readers.in_socket.swap(0, Ordering::Relaxed) != 0 {
            self.break_off();
        }
        self.readers.turn.release::<Kernel>();
    }

    /// Counts the caller among the sleeping receivers, unless a record waits already (then
    /// false, and nothing to undo).
    pub(crate) fn begin_sleep(&self) -> bool {
        self.signals.sleepers.begin(|| self.has_data())
    }

    /// Undoes [`begin_sleep`](Self::begin_sleep).
    pub(crate) fn end_sleep(&self) {
        self.signals.sleepers.end();
    }
}

/// A direction's doorbell: an `eventfd`, readable while rung.
struct Doorbell<'a>(BorrowedFd<'a>);

impl Bell for Doorbell<'_> {
    fn ring(&self) {
        sys::ring_doorbell(self.0);
    }

    fn silence(&self) {
        sys::reset_doorbell(self.0);
    }
}

/// Whether the socket is at end of file: the peer closed its end and nothing is left on it (a
/// message on the socket, begun or not, is not end of file).
pub(crate) fn socket_at_eof(socket: BorrowedFd<'_>) -> Result<bool> {
    let mut byte = [0u8; 1];
    Ok(sys::try_peek(socket, &mut byte).context("look at a pipe's socket")? == Some(0))
}

/// Reads, under the readers' turn, the start of a message sent through the socket: its marker
/// and its frame header. Returns the payload's length (descriptors
/// sent with it are appended to `fds`), or `None` at end of file before the message began: its
/// sender ended between publishing its record and sending it (a small frame leaves in one
/// `sendmsg`, so it is all there or not at all), and the message is lost with it.
pub(crate) fn read_socket_header(
    socket: BorrowedFd<'_>,
    fds: &mut Vec<OwnedFd>,
    deadline: impl Waiter,
) -> Result<Option<u64>> {
    let mut byte = [0u8; 1];
    deadline.wait(socket, Interest::Read)?;
    match (sys::recv_with_fds(socket, &mut byte, fds).context("receive a message")?, byte[0]) {
        (0, _) => return Ok(None),
        (_, SOCKET_MESSAGE) => {}
        (_, other) => return Err(Error::Protocol(format!("byte {other:#04x} where a pipe message should start"))),
    }
    match super::frame::recv_header(socket, fds, deadline, None)? {
        Some(len) => Ok(Some(len)),
        None => Err(super::frame::eof_during_message()),
    }
}

/// The error for a send whose receiving end was closed (`EPIPE`, as a socket reports it).
pub(crate) fn peer_gone() -> Error {
    Error::io("send a message", rustix::io::Errno::PIPE)
}
