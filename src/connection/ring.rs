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
//! - **Descriptors** go through the socket, in order with the rest: the sender publishes a
//!   *socket record* in the ring, then writes [`SOCKET_MESSAGE`] and the frame (with its
//!   descriptors) to the socket. A receiver that reaches the record reads the frame there.
//! - **Large messages** stream through the ring: a STREAM record with the length, then PIECE
//!   records of at most [`STREAM_PIECE_MAX`] bytes, each published as soon as it is written, so
//!   that the receiver copies one piece out while the sender copies the next in. Both hold their
//!   turn for the whole message, marked as for a socket message (a death in the middle breaks
//!   the direction). The sender never sleeps for room in the middle: when the receiver falls
//!   behind a spin, the sender publishes a socket record and sends the rest of the message as a
//!   frame on the socket, whose buffer lets both sides run in larger steps; with no room for a
//!   start, the whole message goes through the socket.
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
//! The records are those of `shm::record_ring` (the queues' too), of four kinds: DATA (the message
//! is the payload), SOCKET (no payload: the next frame on the socket), STREAM (the length of a
//! message whose bytes follow) and PIECE (some of those bytes).

use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use super::frame::Waiter;
use crate::deadline::Deadline;
use crate::error::{Error, IoContext, Result};
use crate::shm::record_ring::{self, Found, Located, RecordRing};
use crate::shm::{SharedBytes, ShmSafe};
use crate::sync::doorbell::{Bell, Sleepers};
use crate::sync::futex::Kernel;
use crate::sync::lock_state::{Acquired, LIVENESS_SLICE, LockState};
use crate::sync::spin::SpinState;
use crate::sys::{self, Interest};

/// The bytes of one direction's ring.
pub(crate) const RING_BYTES: usize = 64 << 10;

/// The largest message that travels through a ring in one record; larger ones stream in pieces.
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
/// The start of a message streamed through the ring: its length (`u64`, little-endian); its bytes
/// follow in [`KIND_PIECE`] records (and, if the ring stays full, a [`KIND_SOCKET`] record and the
/// rest on the socket).
const KIND_STREAM: u32 = 3;
/// A piece of a streamed message.
const KIND_PIECE: u32 = 4;

/// The largest piece of a streamed message: a quarter of the ring, record header included, so
/// that the sender fills one piece while the receiver empties another.
pub(crate) const STREAM_PIECE_MAX: usize = RING_BYTES / 4 - record_ring::HEADER;

/// One end of a direction: the writers' or the readers' position, and their turn.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct End {
    /// Bytes published (writers) or consumed (readers) since the start, ever growing.
    pos: AtomicU64,
    /// Set while the turn's holder is in the middle of a message that moves in several steps
    /// (through the socket, or streamed in pieces through the ring).
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
    /// A message of `len` bytes streamed in pieces ([`Direction::take_piece`]); the caller holds
    /// the readers' turn to read them.
    Streamed { len: u64 },
}

/// What a receiver of a streamed message found at the head of its ring.
pub(crate) enum Piece {
    /// A piece of this many bytes, to take with [`Direction::take_piece`] or
    /// [`Direction::take_piece_into`].
    Ready(usize),
    /// Nothing yet: the sender is still writing.
    Wait,
    /// The rest of the message waits on the socket (the ring stayed full, see
    /// [`Direction::stream_message`]).
    RestOnSocket,
}

/// How far [`Direction::stream_message`] got.
pub(crate) enum Streamed {
    /// The whole message is in the ring.
    Whole,
    /// The ring had no room for a start: nothing was published, send the message another way.
    NotStarted,
    /// The bytes before this offset are in the ring, and a socket record says the rest follows on
    /// the socket: the sender must send it there now.
    RestOnSocket(usize),
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

    /// Whether the holder is in the middle of a message ([`enter_socket`](Self::enter_socket)).
    pub(crate) fn in_message(&self) -> bool {
        self.end.in_socket.load(Ordering::Relaxed) != 0
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
        if !self.wait_patiently(placement.footprint as usize + SOCKET_RESERVE, socket, deadline)? {
            return Ok(false);
        }
        self.publish(KIND_DATA, payload);
        Ok(true)
    }

    /// Streams `payload` through the ring in pieces, for a large message: a [`KIND_STREAM`] record
    /// with its length, then [`KIND_PIECE`] records as the receiver makes room, each published
    /// (and the receivers woken through `bell`) as soon as it is written. Two copies in user space
    /// and no system call while the receiver keeps up, where the socket costs two copies in the
    /// kernel, a buffer allocated per 32 KiB and a system call on each side for each.
    ///
    /// The caller holds the writers' turn and has marked it ([`Turn::enter_socket`]) unless this
    /// returns [`Streamed::NotStarted`]: a sender that dies or fails in the middle leaves the
    /// direction broken, as in the middle of a socket message. The sender waits for room only
    /// as long as a spin: with no room for a start, nothing is published
    /// ([`Streamed::NotStarted`]); later, a socket record tells the receiver that the rest
    /// follows on the socket ([`Streamed::RestOnSocket`]). So a pipe still holds at least what
    /// its socket alone would, for a receiver that runs later in the sender's own thread.
    ///
    /// # Errors
    ///
    /// The deadline passed, the receiver's end closed ([`peer_gone`]), or the direction broke.
    pub(crate) fn stream_message(
        &self,
        turn: &Turn<'_>,
        payload: &[u8],
        socket: BorrowedFd<'_>,
        bell: BorrowedFd<'_>,
        deadline: Deadline,
    ) -> Result<Streamed> {
        let start = self.ring().place(self.writers.pos.load(Ordering::Relaxed), 8).footprint as usize;
        let first = record_ring::record_size(payload.len().min(STREAM_PIECE_MAX));
        if !self.room_soon(start + first + SOCKET_RESERVE, deadline) {
            return Ok(Streamed::NotStarted);
        }
        turn.enter_socket();
        self.publish(KIND_STREAM, &(payload.len() as u64).to_le_bytes());
        self.wake_receivers(bell);
        let mut at = 0;
        while at < payload.len() {
            let piece = &payload[at..payload.len().min(at + STREAM_PIECE_MAX)];
            let need = self.ring().place(self.writers.pos.load(Ordering::Relaxed), piece.len()).footprint as usize;
            if !self.room_soon(need + SOCKET_RESERVE, deadline) {
                // The reserve keeps room for this record whatever the receiver does.
                self.publish_socket_record(socket, deadline)?;
                self.wake_receivers(bell);
                return Ok(Streamed::RestOnSocket(at));
            }
            self.publish(KIND_PIECE, piece);
            self.wake_receivers(bell);
            at += piece.len();
        }
        turn.leave_socket();
        Ok(Streamed::Whole)
    }

    /// Whether `need` bytes of room are there, or appear within a spin. A streaming sender never
    /// sleeps for room: a receiver that does not keep up without it gets the rest on the socket,
    /// whose buffer lets both sides run in larger steps (sleeping for each piece of a 64 KiB ring
    /// made a sender and a receiver that share the CPUs with other work ping-pong, at a third of
    /// the socket's rate).
    fn room_soon(&self, need: usize, deadline: Deadline) -> bool {
        self.room() >= need || self.signals.spin.spin(deadline, || self.room() >= need)
    }

    /// Waits up to [`OVERFLOW_AFTER`] (or the deadline, if sooner) for `need` bytes of room: false
    /// if the ring stayed too full.
    fn wait_patiently(&self, need: usize, socket: BorrowedFd<'_>, deadline: Deadline) -> Result<bool> {
        if self.room() >= need {
            return Ok(true);
        }
        let patience = Deadline::after(Some(deadline.left().map_or(OVERFLOW_AFTER, |left| left.min(OVERFLOW_AFTER))));
        match self.wait_for_room(need, socket, patience) {
            Ok(()) => Ok(true),
            Err(Error::Timeout(_)) if deadline.passed() => Err(deadline.timeout_error()),
            Err(Error::Timeout(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Looks at the head for the next piece of a streamed message ([`Popped::Streamed`]), of
    /// which `left` bytes are left. A socket record there is taken at once
    /// ([`Piece::RestOnSocket`]). The caller holds the readers' turn (kept since the message's
    /// start).
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the direction is broken, or when the head is neither a piece of
    /// 1 to `left` bytes nor a socket record (garbage in the ring: the direction is broken then).
    pub(crate) fn next_piece(&self, left: usize) -> Result<Piece> {
        let record = match self.head_piece(left)? {
            None => return Ok(Piece::Wait),
            Some(record) => record,
        };
        if record.kind == KIND_SOCKET {
            self.consumed(record.next);
            return Ok(Piece::RestOnSocket);
        }
        Ok(Piece::Ready(record.len))
    }

    /// Takes the piece [`next_piece`](Self::next_piece) found into `dst`, which is exactly as
    /// long.
    ///
    /// # Errors
    ///
    /// As [`next_piece`](Self::next_piece)'s, and [`Error::Protocol`] when the head is not a piece
    /// of `dst.len()` bytes.
    pub(crate) fn take_piece(&self, dst: &mut [u8]) -> Result<()> {
        // SAFETY: the piece's copy writes initialized bytes only (`RingBytes::read` initializes
        // what it is given), so `dst` holds initialized bytes throughout.
        let dst = unsafe { &mut *(std::ptr::from_mut::<[u8]>(dst) as *mut [MaybeUninit<u8>]) };
        self.take_piece_raw(dst)
    }

    /// Takes the piece [`next_piece`](Self::next_piece) found (of `len` bytes) and appends it to
    /// `buf`, growing it if need be.
    ///
    /// # Errors
    ///
    /// As [`take_piece`](Self::take_piece)'s.
    pub(crate) fn take_piece_into(&self, buf: &mut Vec<u8>, len: usize) -> Result<()> {
        buf.reserve(len);
        self.take_piece_raw(&mut buf.spare_capacity_mut()[..len])?;
        // SAFETY: `take_piece_raw` initialized the first `len` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + len) };
        Ok(())
    }

    /// Copies the piece at the head, of exactly `dst.len()` bytes, into `dst`, and moves on.
    fn take_piece_raw(&self, dst: &mut [MaybeUninit<u8>]) -> Result<()> {
        let record = match self.head_piece(dst.len())? {
            Some(record) if record.kind == KIND_PIECE && record.len == dst.len() => record,
            _ => return Err(self.malformed_piece()),
        };
        // SAFETY: located by `head_piece` in what was published to this reader (who holds the
        // readers' turn), head not moved yet; `dst` is exactly the record's length.
        unsafe { self.ring().copy_payload(record, dst) };
        self.consumed(record.next);
        Ok(())
    }

    /// The record at the head, if any, when it is a piece of 1 to `left` bytes or a socket
    /// record; anything else breaks the direction.
    fn head_piece(&self, left: usize) -> Result<Option<record_ring::RecordAt>> {
        self.check()?;
        let head = self.readers.pos.load(Ordering::Relaxed);
        let tail = self.writers.pos.load(Ordering::Acquire);
        // SAFETY: as in `pop`: published bytes, which no writer touches until the readers'
        // position passes them, and the turn keeps other readers away.
        match unsafe { self.ring().locate(head, tail) } {
            Located::Empty => Ok(None),
            Located::Record(record) if record.kind == KIND_SOCKET && record.len == 0 => Ok(Some(record)),
            Located::Record(record) if record.kind == KIND_PIECE && record.len > 0 && record.len <= left => {
                Ok(Some(record))
            }
            Located::Record(_) | Located::Malformed { .. } => Err(self.malformed_piece()),
        }
    }

    fn malformed_piece(&self) -> Error {
        self.break_off();
        Error::Protocol("a piece of a large message in a pipe's ring was malformed".into())
    }

    /// The readers moved past a record: the room is the writers' again.
    fn consumed(&self, next: u64) {
        self.readers.pos.store(next, Ordering::Release);
        self.room_appeared();
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
            Found::Record { kind: KIND_STREAM, payload, next } if payload.len() == 8 => {
                let len = u64::from_le_bytes(payload.try_into().unwrap_or_default());
                (Some(Popped::Streamed { len }), next)
            }
            // Only WRAP records up to the published end.
            Found::Empty => (None, tail),
            Found::Record { .. } | Found::Malformed { .. } => {
                self.break_off();
                return None;
            }
        };
        self.consumed(next);
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
