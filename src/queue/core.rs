//! The untyped queue: records in the shared ring (or the spill), descriptors on the side channel,
//! waiting and waking. The typed handles (`handles`) encode and decode items around it.
//!
//! # Records
//!
//! The records of `shm::record_ring` (the pipes' too), of three kinds:
//!
//! ```text
//! INLINE  payload = the item's encoding
//! FDS     payload = ticket (u64) + the item's encoding; its descriptors wait on the side channel
//! BIG     payload = ticket (u64) + encoding length (u64); the side channel carries the item's
//!         descriptors and, last, a memory file holding the encoding
//! ```
//!
//! A record goes into the ring when it has room and the spill is empty, into the spill (see
//! `spill`) otherwise; an INLINE record longer than the ring's inline limit (a big item that found
//! the side channel full) always goes into the spill.
//!
//! # The side channel
//!
//! A `SOCK_SEQPACKET` socket pair that every handle holds both ends of: producers send on one end,
//! consumers receive on the other, each message an 8-byte ticket with descriptors attached. Both
//! sides use it under the queue's lock, so messages arrive in record order. A producer takes a
//! ticket (and burns it: the counter moves on at once), sends its message, then commits its
//! record; a consumer commits the record's removal, then receives messages until the ticket it
//! read. A message whose record was never committed (its producer killed in between) or whose
//! record was removed by a consumer killed before receiving it carries an older ticket than any
//! record still in the ring, and the next consumer to look drops it, closing its descriptors.
//!
//! The channel holds what the kernel's socket buffer holds (`net.core.wmem_default`, some 270
//! messages by default), and the kernel caps the descriptors in flight per user (`RLIMIT_NOFILE`).
//! A big item without descriptors that finds it full goes into the spill instead; an item holding
//! descriptors waits for a consumer, as on a full queue: the one limit an unbounded queue keeps.

use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::deadline::Deadline;
use crate::error::{Error, IoContext, Result};
use crate::reduction;
use crate::shm::record_ring::{self, Found, RecordRing, RingBytes};
use crate::sync::futex::Kernel;
use crate::sync::lock_state::{Acquired, LIVENESS_SLICE};
use crate::sync::spin::SpinState;
use crate::sys;

use super::big::{BigItem, Encoding, ItemWriter};
use super::shared::{Counters, SharedMemory, State};
use super::spill::{RELEASE_STEP, Spill};
use super::wakeup::Sleep;

/// Items whose encoding is longer than this travel in a memory file of their own instead of
/// through the ring (see the module documentation of `queue` for the measurements).
pub(super) const BIG_ITEM_BYTES: usize = 128 * 1024;

/// The ring's size when none is asked for: address space, used only as far as the backlog
/// reaches (the positions restart at 0 whenever the queue empties).
pub(super) const DEFAULT_CAPACITY: usize = 64 << 20;

/// An emptied queue restarts at position 0 once past this many bytes.
const RESTART_AFTER: u64 = 1 << 20;

/// The smallest ring: room for a few inline items of the largest size.
pub(super) const MIN_CAPACITY: usize = 4096;

/// The longest encoding that can be spilled as one record (its length is a `u32`); a longer big
/// item always travels in a memory file of its own.
const SPILL_ITEM_MAX: usize = u32::MAX as usize - 64;

const TICKET: usize = 8;
const INLINE: u32 = 1;
const FDS: u32 = 2;
const BIG: u32 = 3;

/// What a consumer took out of the queue, to decode outside the lock.
pub(super) enum Taken {
    /// The encoding and its descriptors.
    Inline(Vec<u8>, Vec<OwnedFd>),
    /// A big item: its descriptors and its encoding in a memory file of `len` bytes.
    Big(Vec<OwnedFd>, OwnedFd, usize),
}

/// An encoded item on its way into the queue.
struct Outgoing<'a> {
    /// The record it takes (BIG may still become INLINE: see `spill_whole`).
    kind: u32,
    /// The length of its encoding.
    len: usize,
    /// Its encoding, unless it is only in its memory file (see `big::ItemWriter`).
    bytes: Option<&'a [u8]>,
    /// Its descriptors, and last, for a BIG record, the memory file holding its encoding.
    fds: &'a [OwnedFd],
    /// Whether the item may go to the spill whole should the side channel be full (it holds no
    /// descriptor of its own, and its length fits a record's).
    spill_whole: bool,
}

/// Why a push or pop did not happen.
enum NotNow {
    /// Full (push) or empty (pop): wait on this value of the wake-up word.
    Wait(u32),
}

/// A queue's shared memory and side channel, mapped and open in this process.
#[derive(Debug)]
pub(super) struct Core {
    memory: SharedMemory,
    /// Producers send descriptors here.
    side_tx: OwnedFd,
    /// Consumers receive them here.
    side_rx: OwnedFd,
}

/// The queue's lock, held by thread `.1` (never recursively: see [`Core::lock`]); released on
/// drop.
struct Locked<'a>(&'a State, u32);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.lock.release_once::<Kernel>(self.1);
    }
}

impl Core {
    /// A new, empty queue.
    pub(super) fn create(tag: u64, maxsize: u64, capacity: usize) -> Result<Self> {
        let capacity = capacity.max(MIN_CAPACITY).div_ceil(8) * 8;
        let memory = SharedMemory::create(tag, maxsize, capacity)?;
        let (side_tx, side_rx) =
            sys::socketpair_cloexec(sys::SocketKind::SeqPacket).context("create a queue's descriptor channel")?;
        Ok(Core { memory, side_tx, side_rx })
    }

    /// A queue received from another process.
    pub(super) fn attach(memory: OwnedFd, side_tx: OwnedFd, side_rx: OwnedFd, tag: u64) -> Result<Self> {
        let memory = SharedMemory::attach(memory, tag)?;
        Ok(Core { memory, side_tx, side_rx })
    }

    /// The descriptors that make up the queue, for sending it to another process.
    pub(super) fn parts(&self) -> (&OwnedFd, &OwnedFd, &OwnedFd) {
        (self.memory.fd(), &self.side_tx, &self.side_rx)
    }

    fn state(&self) -> &State {
        self.memory.state()
    }

    pub(super) fn maxsize(&self) -> u64 {
        self.state().maxsize()
    }

    /// Items in the queue now.
    pub(super) fn len(&self) -> u64 {
        self.state().count_now()
    }

    /// Whether a put would find the item limit reached now (not counting the ring's bytes).
    pub(super) fn is_full(&self) -> bool {
        let maxsize = self.maxsize();
        maxsize > 0 && self.len() >= maxsize
    }

    /// Items put and not yet marked done.
    pub(super) fn unfinished(&self) -> u64 {
        self.state().unfinished_now()
    }

    /// The largest encoding that goes through the ring.
    fn inline_limit(&self) -> usize {
        BIG_ITEM_BYTES.min(self.memory.capacity() / 4)
    }

    /// Takes the lock, finishing the operation of a holder that died. `None` if `deadline` passed.
    fn lock(&self, deadline: Deadline) -> Result<Option<Locked<'_>>> {
        let state = self.state();
        let me = sys::current_thread();
        match state.lock.acquire::<Kernel>(me, deadline.left(), false) {
            Acquired::Clean => {
                state.claim_lines();
                Ok(Some(Locked(state, me.0)))
            }
            Acquired::OwnerDied(_) => {
                state.replay_journal();
                state.lock.recover();
                tracing::debug!("a queue's lock holder died; its operation was completed or undone");
                Ok(Some(Locked(state, me.0)))
            }
            Acquired::No => Ok(None),
            Acquired::Deadlock => Err(Error::InvalidState(
                "this thread already holds the queue's lock (an item's serde impl used the same queue?)".into(),
            )),
        }
    }

    /// Encodes `item` for [`put`](Self::put): in memory up to the ring's inline limit (or, while
    /// the side channel is full, up to a spilled record's), beyond it straight into a memory file
    /// of its own (see `big::ItemWriter`).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the item cannot be encoded; [`Error::Io`] if its memory file cannot be
    /// written (memory is short).
    pub(super) fn encode<T: Serialize + ?Sized>(&self, item: &T) -> Result<(Encoding, Vec<OwnedFd>)> {
        // While the side channel is full, a big item without descriptors goes to the spill whole
        // (see `put`): encoded in memory, not into a file that would only be read back.
        let limit = if self.state().header.side_channel_full.load(Ordering::Relaxed) != 0 {
            SPILL_ITEM_MAX
        } else {
            self.inline_limit()
        };
        let mut failure = None;
        let encoded = reduction::encode_with(item, ItemWriter::new(limit, &mut failure));
        match failure {
            Some(errno) => Err(errno).context("write a big item into its memory file (is memory short?)"),
            None => encoded,
        }
    }

    /// Puts an encoded item holding the descriptors `fds`, waiting for room until `deadline`
    /// (then [`Error::Full`]).
    pub(super) fn put(&self, encoding: Encoding, mut fds: Vec<OwnedFd>, deadline: Deadline) -> Result<()> {
        let state = self.state();
        if fds.len() >= sys::MAX_FDS_PER_MESSAGE {
            return Err(Error::InvalidState(format!(
                "an item holding {} descriptors cannot be put in a queue: at most {} per item",
                fds.len(),
                sys::MAX_FDS_PER_MESSAGE - 1
            )));
        }
        let own_fds = fds.len();
        let len = encoding.len();
        // A big item goes in a memory file of its own, unless it holds no descriptor and the side
        // channel (which would carry that file) is full: then it goes to the spill.
        let spill_whole = len <= SPILL_ITEM_MAX && own_fds == 0;
        let bytes = match encoding {
            Encoding::InMemory(bytes) => Some(bytes),
            Encoding::Stored { file, .. } => {
                fds.push(file);
                None
            }
        };
        let kind = match (len > self.inline_limit(), own_fds > 0) {
            // Already in its memory file.
            _ if bytes.is_none() => BIG,
            (true, _) if spill_whole && state.header.side_channel_full.load(Ordering::Relaxed) != 0 => INLINE,
            (true, _) => BIG,
            (false, true) => FDS,
            (false, false) => INLINE,
        };
        if let (BIG, Some(bytes)) = (kind, &bytes) {
            fds.push(BigItem::store(bytes)?);
        }
        let item = Outgoing { kind, len, bytes: bytes.as_deref(), fds: &fds, spill_whole };
        loop {
            let Some(locked) = self.lock(lock_deadline(deadline))? else { return Err(Error::Full) };
            match self.push_locked(&locked, &item)? {
                Ok(()) => {
                    drop(locked);
                    state.items_sleep().wake::<Kernel>();
                    return Ok(());
                }
                Err(NotNow::Wait(seq)) => {
                    drop(locked);
                    let sleep = state.space_sleep();
                    if !self.wait(sleep, seq, &state.put_spin, deadline) {
                        return Err(Error::Full);
                    }
                }
            }
        }
    }

    /// Writes one record into the ring or the spill and commits it, or says what to wait for: the
    /// item limit, or room on the side channel for an item holding descriptors.
    fn push_locked(&self, _locked: &Locked<'_>, item: &Outgoing<'_>) -> Result<std::result::Result<(), NotNow>> {
        let state = self.state();
        let counters = state.counters();
        let maxsize = state.maxsize();
        if maxsize > 0 && counters.count >= maxsize {
            return Ok(Err(NotNow::Wait(state.live.space_seq.load(Ordering::SeqCst))));
        }
        let mut kind = item.kind;
        let mut ticket = [0u8; TICKET];
        if kind != INLINE {
            match self.send_descriptors(item.fds)? {
                Some(number) => ticket = number.to_le_bytes(),
                // A big item without descriptors goes to the spill whole.
                None if kind == BIG && item.spill_whole => kind = INLINE,
                None => return Ok(Err(NotNow::Wait(state.live.space_seq.load(Ordering::SeqCst)))),
            }
        }
        let length = (item.len as u64).to_le_bytes();
        let read_back;
        let bytes = match (item.bytes, item.fds.last()) {
            (Some(bytes), _) => bytes,
            // A big item whose file found no room on the side channel goes to the spill whole.
            (None, Some(file)) if kind == INLINE => {
                read_back = BigItem::read_back(file, item.len)?;
                &read_back
            }
            (None, _) => &[],
        };
        let parts: [&[u8]; 2] = match kind {
            INLINE => [&[], bytes],
            FDS => [&ticket, bytes],
            _ => [&ticket, &length],
        };
        let payload_len = parts[0].len() + parts[1].len();
        let fits_ring = kind != INLINE || item.len <= self.inline_limit();
        let new = match fits_ring && !counters.spilling() {
            true => self.write_ring(&counters, kind, parts),
            false => None,
        };
        let new = match new {
            Some(new) => new,
            None => self.write_spill(&counters, &record_ring::header(payload_len as u32, kind), parts)?,
        };
        state.commit(Counters { count: counters.count + 1, unfinished: counters.unfinished + 1, ..new });
        state.live.items_seq.fetch_add(1, Ordering::SeqCst);
        Ok(Ok(()))
    }

    /// Sends an item's descriptors on the side channel under a new ticket (burnt at once);
    /// `None` if the channel has no room (or the kernel's limit on descriptors in flight is
    /// reached), noted in the state for the next big items.
    fn send_descriptors(&self, fds: &[OwnedFd]) -> Result<Option<u64>> {
        let state = self.state();
        // Burnt before the send: a producer killed after its message left must not leave its
        // ticket to the next one (whose consumer would take the orphan's descriptors).
        let number = state.header.next_ticket.load(Ordering::Relaxed);
        state.header.next_ticket.store(number + 1, Ordering::Relaxed);
        let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
        let sent = match sys::try_send_with_fds(self.side_tx.as_fd(), &[IoSlice::new(&number.to_le_bytes())], &borrowed)
        {
            Err(rustix::io::Errno::TOOMANYREFS) => 0,
            other => other.context("pass an item's descriptors to the queue")?,
        };
        if sent == 0 {
            state.header.side_channel_full.store(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some(number))
    }

    /// Writes a record beyond the ring's tail if it has room: the counters that publish it.
    fn write_ring(&self, counters: &Counters, kind: u32, parts: [&[u8]; 2]) -> Option<Counters> {
        let ring = RecordRing::new(&self.memory);
        let placement = ring.place(counters.tail, parts[0].len() + parts[1].len());
        if counters.tail - counters.head + placement.footprint > self.memory.capacity() as u64 {
            return None;
        }
        // SAFETY: under the queue's lock (the caller's `Locked`), the bytes beyond the tail, up to
        // the head plus the ring's size, are this holder's: room checked just above.
        unsafe { ring.write(counters.tail, placement, kind, &parts) };
        Some(Counters { tail: counters.tail + placement.footprint, ..*counters })
    }

    /// Writes a record beyond the spill's tail: the counters that publish it.
    fn write_spill(&self, counters: &Counters, header: &[u8], parts: [&[u8]; 2]) -> Result<Counters> {
        let state = self.state();
        let at = counters.spill_tail;
        let end = at + record_ring::record_size(parts[0].len() + parts[1].len()) as u64;
        // Noted before the bytes are written: the memory to give back covers them, whatever happens.
        if state.header.spill_written.load(Ordering::Relaxed) < end {
            state.header.spill_written.store(end, Ordering::Relaxed);
        }
        self.spill().write(at, header, &parts)?;
        Ok(Counters { spill_tail: end, ..*counters })
    }

    fn spill(&self) -> Spill<'_> {
        Spill { fd: self.memory.fd().as_fd(), base: self.memory.spill_base() }
    }

    /// Takes the oldest item, waiting until `deadline` (then [`Error::Empty`]).
    pub(super) fn get(&self, deadline: Deadline) -> Result<Taken> {
        let state = self.state();
        loop {
            let Some(locked) = self.lock(lock_deadline(deadline))? else { return Err(Error::Empty) };
            match self.pop_locked(&locked)? {
                Ok(Some(taken)) => {
                    drop(locked);
                    state.space_sleep().wake::<Kernel>();
                    return Ok(taken);
                }
                // An item whose descriptors were lost with a killed process: take the next.
                Ok(None) => continue,
                Err(NotNow::Wait(seq)) => {
                    drop(locked);
                    let sleep = state.items_sleep();
                    if !self.wait(sleep, seq, &state.get_spin, deadline) {
                        return Err(Error::Empty);
                    }
                }
            }
        }
    }

    /// Removes the oldest record (from the ring while it holds one, then from the spill) and
    /// commits; `Ok(None)` when the record's item was lost.
    fn pop_locked(&self, _locked: &Locked<'_>) -> Result<std::result::Result<Option<Taken>, NotNow>> {
        let state = self.state();
        let counters = state.counters();
        if counters.count == 0 {
            return Ok(Err(NotNow::Wait(state.live.items_seq.load(Ordering::SeqCst))));
        }
        let from_ring = counters.ring_used();
        let (kind, mut payload, mut new) = match from_ring {
            true => self.read_ring(&counters)?,
            false => self.read_spill(&counters)?,
        };
        new.count = counters.count - 1;
        new.taken = counters.taken + 1;
        // Emptied past the first MiB: start again at the beginning, so that the backlog decides
        // how much of the ring's memory is ever touched (at least a MiB, where streams run).
        if new.count == 0 && new.head >= RESTART_AFTER {
            (new.head, new.tail) = (0, 0);
        }
        // The spill drained (the ring is empty then: it is read first): it starts over at 0.
        let spill_drained = !from_ring && !new.spilling();
        if spill_drained {
            (new.spill_head, new.spill_tail) = (0, 0);
        }
        state.commit(new);
        state.live.space_seq.fetch_add(1, Ordering::SeqCst);
        if !from_ring {
            self.release_spill(new.spill_head, spill_drained);
        }
        if kind == INLINE {
            return Ok(Ok(Some(Taken::Inline(payload, Vec::new()))));
        }
        let ticket = u64::from_le_bytes(payload[..TICKET].try_into().unwrap_or_default());
        let Some(mut fds) = self.receive_ticket(ticket)? else { return Ok(Ok(None)) };
        if kind == FDS {
            payload.drain(..TICKET);
            return Ok(Ok(Some(Taken::Inline(payload, fds))));
        }
        let encoded_len = u64::from_le_bytes(payload[TICKET..].try_into().unwrap_or_default());
        let Some(memory) = fds.pop() else {
            return Err(Error::Protocol("a big queue item arrived without its memory file".into()));
        };
        Ok(Ok(Some(Taken::Big(fds, memory, encoded_len as usize))))
    }

    /// Reads the record at the ring's head: its kind, its payload and the counters without it.
    fn read_ring(&self, counters: &Counters) -> Result<(u32, Vec<u8>, Counters)> {
        // SAFETY: under the queue's lock (the caller's `Locked`), the committed records between
        // head and tail are read by this holder alone and written by nobody.
        match unsafe { RecordRing::new(&self.memory).read(counters.head, counters.tail) } {
            Found::Record { kind, payload, next } if valid(kind, payload.len()) => {
                Ok((kind, payload, Counters { head: next, ..*counters }))
            }
            Found::Record { kind, payload, .. } => Err(malformed(kind, payload.len())),
            Found::Malformed { kind, len } => Err(malformed(kind, len)),
            Found::Empty => Err(malformed(0, 0)),
        }
    }

    /// Reads the record at the spill's head: its kind, its payload and the counters without it.
    fn read_spill(&self, counters: &Counters) -> Result<(u32, Vec<u8>, Counters)> {
        let available = counters.spill_tail.saturating_sub(counters.spill_head);
        let Some((kind, payload)) = self.spill().read(counters.spill_head, available)? else {
            return Err(malformed(0, available as usize));
        };
        if !valid(kind, payload.len()) {
            return Err(malformed(kind, payload.len()));
        }
        let spill_head = counters.spill_head + record_ring::record_size(payload.len()) as u64;
        Ok((kind, payload, Counters { spill_head, ..*counters }))
    }

    /// After a record was taken from the spill: gives back the memory behind its head, each
    /// [`RELEASE_STEP`], or all of it once it `drained`.
    fn release_spill(&self, head: u64, drained: bool) {
        let state = self.state();
        let released = state.header.spill_released.load(Ordering::Relaxed);
        if drained {
            self.spill().release(0, state.header.spill_written.load(Ordering::Relaxed).next_multiple_of(4096));
            state.header.spill_written.store(0, Ordering::Relaxed);
            state.header.spill_released.store(0, Ordering::Relaxed);
        } else if head >= released + RELEASE_STEP {
            let upto = head - head % 4096;
            self.spill().release(released, upto);
            state.header.spill_released.store(upto, Ordering::Relaxed);
        }
    }

    /// Receives the side channel's message for `ticket`, dropping older ones (left by killed
    /// processes). `None` if it is not there: the item was lost with a killed process.
    fn receive_ticket(&self, ticket: u64) -> Result<Option<Vec<OwnedFd>>> {
        loop {
            let mut number = [0u8; TICKET];
            let mut fds = Vec::new();
            let got = sys::try_recv_with_fds(self.side_rx.as_fd(), &mut number, &mut fds)
                .context("receive an item's descriptors from the queue")?;
            if got.is_some() && self.state().header.side_channel_full.load(Ordering::Relaxed) != 0 {
                self.state().header.side_channel_full.store(0, Ordering::Relaxed);
            }
            match got {
                Some(TICKET) => match u64::from_le_bytes(number).cmp(&ticket) {
                    std::cmp::Ordering::Less => continue, // orphaned: its descriptors close here
                    std::cmp::Ordering::Equal => return Ok(Some(fds)),
                    std::cmp::Ordering::Greater => return Ok(None),
                },
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Waits until the sleep's word moves on from `seq` (a put, a get, a last task done); false
    /// once `deadline` passed.
    fn wait(&self, sleep: Sleep<'_>, seq: u32, spin: &SpinState, deadline: Deadline) -> bool {
        if spin.spin(deadline, || sleep.moved(seq)) {
            return true;
        }
        if deadline.passed() {
            return false;
        }
        // In slices: a process killed between its change and its wake-up costs a slice, not a hang.
        sleep.sleep::<Kernel>(seq, Some(deadline.left().map_or(LIVENESS_SLICE, |left| left.min(LIVENESS_SLICE))));
        !deadline.passed() || sleep.moved(seq)
    }

    /// Marks one taken item done (`JoinableQueue::task_done`).
    pub(super) fn task_done(&self) -> Result<()> {
        let state = self.state();
        let Some(locked) = self.lock(Deadline::NONE)? else {
            return Err(Error::InvalidState("the queue's lock could not be taken".into()));
        };
        let counters = state.counters();
        if counters.taken == 0 {
            return Err(Error::InvalidState(
                "task_done() called more times than items were taken from the queue; call it once per get".into(),
            ));
        }
        let unfinished = counters.unfinished.saturating_sub(1);
        state.commit(Counters { unfinished, taken: counters.taken - 1, ..counters });
        if unfinished == 0 {
            state.sleepers.done_seq.fetch_add(1, Ordering::SeqCst);
        }
        drop(locked);
        if unfinished == 0 {
            state.done_sleep().wake::<Kernel>();
        }
        Ok(())
    }

    /// Waits until every item put has been marked done; false if `deadline` passed first.
    pub(super) fn join(&self, deadline: Deadline) -> bool {
        let state = self.state();
        loop {
            let seq = state.sleepers.done_seq.load(Ordering::SeqCst);
            if self.unfinished() == 0 {
                return true;
            }
            let sleep = state.done_sleep();
            if !self.wait(sleep, seq, &state.get_spin, deadline) {
                return false;
            }
        }
    }
}

impl State {
    /// Consumers waiting for an item.
    fn items_sleep(&self) -> Sleep<'_> {
        Sleep { word: &self.live.items_seq, waiters: &self.sleepers.get_waiters, need: &self.sleepers.items_need }
    }

    /// Producers waiting for room.
    fn space_sleep(&self) -> Sleep<'_> {
        Sleep { word: &self.live.space_seq, waiters: &self.sleepers.put_waiters, need: &self.sleepers.space_need }
    }

    /// Joiners waiting for the last task done.
    fn done_sleep(&self) -> Sleep<'_> {
        Sleep { word: &self.sleepers.done_seq, waiters: &self.sleepers.join_waiters, need: &self.sleepers.done_need }
    }
}

/// How long an operation waits for the lock itself: its own deadline, except that a
/// non-blocking operation still waits for the short critical section of another (the lock is
/// never held across a wait).
fn lock_deadline(deadline: Deadline) -> Deadline {
    match deadline.left() {
        Some(left) if left.is_zero() => Deadline::NONE,
        _ => deadline,
    }
}

/// Whether a record of `kind` may have a payload of `len` bytes.
fn valid(kind: u32, len: usize) -> bool {
    match kind {
        INLINE => true,
        FDS => len >= TICKET,
        BIG => len == TICKET + 8,
        _ => false,
    }
}

fn malformed(kind: u32, len: usize) -> Error {
    Error::Protocol(format!(
        "a queue's shared memory holds a malformed record (kind {kind}, {len} bytes); the queue is corrupted"
    ))
}

/// Reads a big item's memory file: the item's bytes, mapped.
pub(super) fn open_big(memory: &OwnedFd, len: usize) -> Result<BigItem> {
    BigItem::open(memory, len)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::reduction::Message;

    /// No thread has this id (above any `pid_max`): a lock holder that died.
    const GHOST: u32 = 0x3fff_fff0;

    fn put(core: &Core, message: Message) -> Result<()> {
        core.put(Encoding::InMemory(message.bytes), message.fds, Deadline::NONE)
    }

    fn message(n: u8) -> Message {
        Message { bytes: vec![n], fds: Vec::new() }
    }

    fn byte(taken: Taken) -> u8 {
        match taken {
            Taken::Inline(bytes, _) => bytes[0],
            Taken::Big(..) => panic!("a one-byte item came back big"),
        }
    }

    /// A producer that took the lock and wrote the record of item `n` beyond the tail, then was
    /// killed, with its journal armed or not: the counters it was about to commit.
    fn die_while_putting(core: &Core, n: u8, armed: bool) {
        let state = core.state();
        let locked = core.lock(Deadline::NONE).unwrap().unwrap();
        let c = state.counters();
        let at = (c.tail % core.memory.capacity() as u64) as usize;
        // SAFETY: this thread holds the lock (forgotten below, as a killed holder would).
        unsafe { RingBytes::write(&core.memory, at, &record_ring::header(1, INLINE)) };
        // SAFETY: as above.
        unsafe { RingBytes::write(&core.memory, at + record_ring::HEADER, &[n]) };
        if armed {
            state.arm(Counters { tail: c.tail + record_ring::record_size(1) as u64, count: c.count + 1, ..c });
        }
        std::mem::forget(locked);
        state.lock.abandon_to(GHOST, 99);
    }

    #[test]
    fn a_producer_killed_after_arming_its_journal_is_completed() {
        let core = Core::create(1, 0, 4096).unwrap();
        put(&core, message(1)).unwrap();
        die_while_putting(&core, 2, true);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 1);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 2);
        assert!(matches!(core.get(Deadline::after(Some(Duration::ZERO))), Err(Error::Empty)));
        put(&core, message(3)).unwrap();
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 3);
    }

    #[test]
    fn a_producer_killed_before_arming_its_journal_changed_nothing() {
        let core = Core::create(1, 0, 4096).unwrap();
        put(&core, message(1)).unwrap();
        die_while_putting(&core, 2, false);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 1);
        assert!(matches!(core.get(Deadline::after(Some(Duration::ZERO))), Err(Error::Empty)));
        put(&core, message(3)).unwrap();
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 3);
    }

    #[test]
    fn a_consumer_killed_after_arming_took_its_item() {
        let core = Core::create(1, 0, 4096).unwrap();
        for n in 1..=2 {
            put(&core, message(n)).unwrap();
        }
        let state = core.state();
        let locked = core.lock(Deadline::NONE).unwrap().unwrap();
        let c = state.counters();
        state.arm(Counters {
            head: c.head + record_ring::record_size(1) as u64,
            count: c.count - 1,
            taken: c.taken + 1,
            ..c
        });
        std::mem::forget(locked);
        state.lock.abandon_to(GHOST, 99);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 2);
        assert_eq!(core.len(), 0);
    }

    /// The memory the queue's file holds now, in bytes.
    fn memory_held(core: &Core) -> u64 {
        rustix::fs::fstat(core.memory.fd()).unwrap().st_blocks as u64 * 512
    }

    #[test]
    fn the_spill_gives_its_memory_back_as_it_drains() {
        let core = Core::create(1, 0, 4096).unwrap();
        let before = memory_held(&core);
        let item = |n: u8| Message { bytes: vec![n; 1000], fds: Vec::new() };
        for n in 0..10_000u32 {
            put(&core, item(n as u8)).unwrap();
        }
        let full = memory_held(&core);
        assert!(full > before + (9 << 20), "10 MB spilled, {} bytes held", full - before);
        // Halfway: the memory behind the spill's head is given back.
        for n in 0..5000u32 {
            assert!(matches!(core.get(Deadline::NONE).unwrap(), Taken::Inline(b, _) if b == vec![n as u8; 1000]));
        }
        let half = memory_held(&core);
        assert!(half < full - (3 << 20), "{half} bytes held of {full}");
        for n in 5000..10_000u32 {
            assert!(matches!(core.get(Deadline::NONE).unwrap(), Taken::Inline(b, _) if b == vec![n as u8; 1000]));
        }
        // All given back: what stays is the state and the ring's 4 KiB.
        assert!(memory_held(&core) <= before + 4096, "{} bytes held", memory_held(&core));
        // And the queue starts over in the ring.
        put(&core, item(7)).unwrap();
        assert_eq!(state_counters(&core).spill_tail, 0);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 7);
    }

    fn state_counters(core: &Core) -> Counters {
        core.state().counters()
    }

    #[test]
    fn a_malformed_spill_record_is_an_error_not_a_crash() {
        let core = Core::create(1, 0, 4096).unwrap();
        for n in 0..100 {
            put(&core, Message { bytes: vec![n; 100], fds: Vec::new() }).unwrap();
        }
        let c = state_counters(&core);
        assert!(c.spilling());
        // A record claiming more bytes than the spill holds.
        let at = core.memory.spill_base() + c.spill_head;
        sys::write_all_at(core.memory.fd().as_fd(), &record_ring::header(u32::MAX, INLINE), at).unwrap();
        while core.state().counters().ring_used() {
            core.get(Deadline::NONE).unwrap();
        }
        assert!(matches!(core.get(Deadline::NONE), Err(Error::Protocol(_))));
    }

    #[test]
    fn orphaned_descriptor_messages_are_dropped() {
        let core = Core::create(1, 0, 4096).unwrap();
        // A producer that burned ticket 0 and sent its descriptors, then died before committing.
        let state = core.state();
        state.header.next_ticket.store(1, Ordering::Relaxed);
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        sys::try_send_with_fds(core.side_tx.as_fd(), &[IoSlice::new(&0u64.to_le_bytes())], &[file.as_fd()]).unwrap();
        let with_fd = Message { bytes: vec![5], fds: vec![OwnedFd::from(file)] };
        put(&core, with_fd).unwrap();
        match core.get(Deadline::NONE).unwrap() {
            Taken::Inline(bytes, fds) => assert_eq!((bytes, fds.len()), (vec![5], 1)),
            Taken::Big(..) => panic!("a small item came back big"),
        }
    }
}
