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
//! consumers receive on the other, each message an 8-byte ticket with descriptors attached.
//! Producers send under the put lock, consumers receive under the get lock, so messages arrive in
//! record order. A producer takes a
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
use crate::shm::record_ring::{self, Found, Placement, RecordRing, RingBytes};
use crate::sync::futex::Kernel;
use crate::sync::lock_state::{Acquired, LIVENESS_SLICE, LockState};
use crate::sync::spin::SpinState;
use crate::sys;

use super::big::{BigItem, Encoding, ItemWriter};
use super::shared::{Gets, Puts, SharedMemory, State};
use super::spill::{RELEASE_STEP, Spill};
use super::wakeup::Sleep;

/// Items whose encoding is longer than this travel in a memory file of their own instead of
/// through the ring (see the module documentation of `queue` for the measurements).
pub(super) const BIG_ITEM_BYTES: usize = 128 * 1024;

/// The ring's size when none is asked for: address space, used only as far as the backlog
/// reaches (the positions restart at 0 whenever the queue empties).
pub(super) const DEFAULT_CAPACITY: usize = 64 << 20;

/// Records go back to the ring's start once past this many bytes of it, where the consumers have
/// moved on (see `Core::write_ring`).
const RESTART_AFTER: u64 = 1 << 20;

/// A waiter looks at the other side's word once at once, then once per this many pauses of its
/// spin (a pause takes some 12 ns on the VM of `bench/README.md`: a look every 0.4-0.5 µs).
///
/// Each look takes the line that the other side writes with every operation (the word shares it
/// with that side's positions) into this core's cache, and the other side's next operation waits
/// for it to come back. A consumer that keeps up with its producer waits between every two items,
/// so looking at every pause cost the producer a cache-line transfer per item; looking every 32
/// pauses lets items gather between looks. Measured (`mpbench`, one producer and one consumer
/// process, 2026-12-07): 3.7-4.0M items/s at every pause, 7.6M at 32, 8.0M at 64; a round trip
/// through two queues (`queue_rtt`) 0.95 µs, 1.45 µs, 2.1 µs.
const PAUSES_PER_LOOK: u32 = 32;

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

/// Where a get finds the oldest record.
enum Oldest {
    /// Nowhere: wait on this value of the consumers' wake-up word.
    Nothing(u32),
    /// At the ring's head, `tail` being a tail the producers published.
    InRing { tail: u64 },
    /// At the spill's head, the spill's records up to `tail` published, its file part starting at
    /// position `origin`.
    InSpill { tail: u64, origin: u64 },
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

/// One of the queue's two locks (see `shared`), held by thread `.1` (never recursively: see
/// [`Core::lock_side`]); released on drop.
struct Locked<'a>(&'a LockState, u32);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.release_once::<Kernel>(self.1);
    }
}

/// The put lock, held (by a put, a get that drains the spill, a `task_done` that may be the last).
struct PutsLocked<'a> {
    _held: Locked<'a>,
}

/// The get lock, held.
struct GetsLocked<'a> {
    _held: Locked<'a>,
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

    /// Takes the put lock, finishing the put of a holder that died. `None` if `deadline` passed.
    fn lock_puts(&self, deadline: Deadline) -> Result<Option<PutsLocked<'_>>> {
        let state = self.state();
        let locked =
            Self::lock_side(&state.put_lock, deadline, || state.claim_put_lines(), || state.replay_put_journal());
        Ok(locked?.map(|held| PutsLocked { _held: held }))
    }

    /// Takes the get lock, finishing the get of a holder that died. `None` if `deadline` passed.
    fn lock_gets(&self, deadline: Deadline) -> Result<Option<GetsLocked<'_>>> {
        let state = self.state();
        let locked =
            Self::lock_side(&state.get_lock, deadline, || state.claim_get_lines(), || state.replay_get_journal());
        Ok(locked?.map(|held| GetsLocked { _held: held }))
    }

    /// After a wait's slice passed with nothing new: if the other side's `lock` is held by a
    /// thread that died, takes it over, finishes that thread's operation (`replay`: it may be the
    /// very item or room waited for) and releases it. A live holder is left alone.
    fn repair_abandoned(&self, lock: &LockState, replay: impl FnOnce()) {
        if !lock.locked() {
            return;
        }
        let me = sys::current_thread();
        if let Some(acquired) = lock.take_over_abandoned::<Kernel>(me) {
            if matches!(acquired, Acquired::OwnerDied(_)) {
                Self::finish_for_the_dead(lock, replay);
            }
            drop(Locked(lock, me.0));
        }
    }

    /// Holding `lock` after its previous holder died: finishes that holder's operation
    /// (`replay`) and declares the state consistent again.
    fn finish_for_the_dead(lock: &LockState, replay: impl FnOnce()) {
        replay();
        lock.recover();
        tracing::debug!("a queue's lock holder died; its operation was completed or undone");
    }

    /// Takes `lock`, then asks for its side's lines (`claim`), or, if its holder died, finishes
    /// that holder's operation (`replay`).
    fn lock_side<'a>(
        lock: &'a LockState,
        deadline: Deadline,
        claim: impl FnOnce(),
        replay: impl FnOnce(),
    ) -> Result<Option<Locked<'a>>> {
        let me = sys::current_thread();
        match lock.acquire::<Kernel>(me, deadline.left(), false) {
            Acquired::Clean => {
                claim();
                Ok(Some(Locked(lock, me.0)))
            }
            Acquired::OwnerDied(_) => {
                Self::finish_for_the_dead(lock, replay);
                Ok(Some(Locked(lock, me.0)))
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
            let Some(locked) = self.lock_puts(lock_deadline(deadline))? else { return Err(Error::Full) };
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
                    if !sleep.moved(seq) {
                        self.repair_abandoned(&state.get_lock, || state.replay_get_journal());
                    }
                }
            }
        }
    }

    /// Writes one record into the ring or the spill and commits it, or says what to wait for: the
    /// item limit, or room on the side channel for an item holding descriptors.
    fn push_locked(&self, _locked: &PutsLocked<'_>, item: &Outgoing<'_>) -> Result<std::result::Result<(), NotNow>> {
        let state = self.state();
        let puts = state.puts();
        if let Some(seq) = self.at_maxsize(&puts) {
            return Ok(Err(NotNow::Wait(seq)));
        }
        let mut kind = item.kind;
        let mut ticket = [0u8; TICKET];
        if kind != INLINE {
            // Read before the attempt: a get that makes room after it moves the word on.
            let seq = state.gets.space_seq.load(Ordering::SeqCst);
            match self.send_descriptors(item.fds)? {
                Some(number) => ticket = number.to_le_bytes(),
                // A big item without descriptors goes to the spill whole.
                None if kind == BIG && item.spill_whole => kind = INLINE,
                None => return Ok(Err(NotNow::Wait(seq))),
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
        let spilling = self.spill_in_use(&puts);
        let new = match fits_ring && !spilling {
            true => self.write_ring(&puts, kind, parts),
            false => None,
        };
        let new = match new {
            Some(new) => new,
            None => self.write_spill(&puts, spilling, &record_ring::header(payload_len as u32, kind), parts)?,
        };
        state.commit_puts(Puts { put: puts.put + 1, ..new });
        state.puts.items_seq.fetch_add(1, Ordering::SeqCst);
        Ok(Ok(()))
    }

    /// Whether the queue holds `maxsize` items (a bounded queue): the value of the word to wait
    /// on for room. Reads the consumers' count only when the one last read says full.
    fn at_maxsize(&self, puts: &Puts) -> Option<u32> {
        let state = self.state();
        let maxsize = state.maxsize();
        if maxsize == 0 || puts.put - state.puts.taken_seen.load(Ordering::Relaxed) < maxsize {
            return None;
        }
        // The word first: a get committed after this read moves it on.
        let seq = state.gets.space_seq.load(Ordering::SeqCst);
        let taken = state.published_taken();
        state.puts.taken_seen.store(taken, Ordering::Relaxed);
        (puts.put - taken >= maxsize).then_some(seq)
    }

    /// Whether the spill holds records (then a put goes there too, to keep the order). Reads the
    /// consumers' spill head only when the one last read says it does.
    fn spill_in_use(&self, puts: &Puts) -> bool {
        let state = self.state();
        if puts.spill_tail == state.puts.spill_head_seen.load(Ordering::Relaxed) {
            return false;
        }
        let spill_head = state.published_spill_head();
        state.puts.spill_head_seen.store(spill_head, Ordering::Relaxed);
        puts.spill_tail != spill_head
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

    /// Writes a record beyond the ring's tail if it has room: the producers' fields that publish
    /// it. Past the ring's first [`RESTART_AFTER`] bytes, the record goes back to offset 0 where
    /// the consumers have moved on, so that the backlog decides how much of the ring's memory is
    /// ever touched.
    fn write_ring(&self, puts: &Puts, kind: u32, parts: [&[u8]; 2]) -> Option<Puts> {
        let ring = RecordRing::new(&self.memory);
        let len = parts[0].len() + parts[1].len();
        let capacity = self.memory.capacity() as u64;
        let mut head = self.state().puts.head_seen.load(Ordering::Relaxed);
        let fits = |placement: &Placement, head: u64| puts.tail - head + placement.footprint <= capacity;
        let normal = ring.place(puts.tail, len);
        let early = ring.place_within(puts.tail, len, RESTART_AFTER as usize);
        let mut placement = normal;
        if early != normal {
            // The consumers' head read again at most once per page of records.
            let offset = puts.tail % capacity;
            if !fits(&early, head) && offset / 4096 != (offset + normal.footprint) / 4096 {
                head = self.catch_up_head();
            }
            if fits(&early, head) {
                placement = early;
            }
        }
        if !fits(&placement, head) {
            head = self.catch_up_head();
            if !fits(&placement, head) {
                return None;
            }
        }
        // SAFETY: under the put lock (the caller's `PutsLocked`), the bytes beyond the tail, up to
        // a head the consumers published plus the ring's size, are this holder's: room checked
        // just above, against a head never ahead of the real one.
        unsafe { ring.write(puts.tail, placement, kind, &parts) };
        Some(Puts { tail: puts.tail + placement.footprint, ..*puts })
    }

    /// The consumers' head, read again (and kept as the one last seen).
    fn catch_up_head(&self) -> u64 {
        let state = self.state();
        let head = state.published_head();
        state.puts.head_seen.store(head, Ordering::Relaxed);
        head
    }

    /// Writes a record beyond the spill's tail: the producers' fields that publish it. A spill not
    /// `in_use` starts over at the start of its part of the file.
    fn write_spill(&self, puts: &Puts, in_use: bool, header: &[u8], parts: [&[u8]; 2]) -> Result<Puts> {
        let origin = if in_use { puts.spill_origin } else { puts.spill_tail };
        let at = puts.spill_tail - origin;
        let size = record_ring::record_size(parts[0].len() + parts[1].len()) as u64;
        self.spill().write(at, header, &parts)?;
        Ok(Puts { spill_tail: puts.spill_tail + size, spill_origin: origin, ..*puts })
    }

    fn spill(&self) -> Spill<'_> {
        Spill { fd: self.memory.fd().as_fd(), base: self.memory.spill_base() }
    }

    /// Takes the oldest item, waiting until `deadline` (then [`Error::Empty`]).
    pub(super) fn get(&self, deadline: Deadline) -> Result<Taken> {
        let state = self.state();
        loop {
            let Some(locked) = self.lock_gets(lock_deadline(deadline))? else { return Err(Error::Empty) };
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
                    if !sleep.moved(seq) {
                        self.repair_abandoned(&state.put_lock, || state.replay_put_journal());
                    }
                }
            }
        }
    }

    /// Removes the oldest record (from the ring while it holds one, then from the spill) and
    /// commits; `Ok(None)` when the record's item was lost.
    fn pop_locked(&self, locked: &GetsLocked<'_>) -> Result<std::result::Result<Option<Taken>, NotNow>> {
        let state = self.state();
        let gets = state.gets();
        let (kind, mut payload, new) = match self.oldest(&gets) {
            Oldest::Nothing(seq) => return Ok(Err(NotNow::Wait(seq))),
            Oldest::InRing { tail } => self.read_ring(&gets, tail)?,
            Oldest::InSpill { tail, origin } => self.take_from_spill(locked, &gets, tail, origin)?,
        };
        state.commit_gets(Gets { taken: gets.taken + 1, ..new });
        state.gets.space_seq.fetch_add(1, Ordering::SeqCst);
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

    /// Where the oldest record is (call under the get lock). The ring's records are older than
    /// the spill's (see `spill`): the spill is read only when the ring is empty, and the ring is
    /// looked at again after the spill's tail was read, since a record committed to the ring
    /// before the spill's first one is visible from there on.
    fn oldest(&self, gets: &Gets) -> Oldest {
        let state = self.state();
        let tail = state.gets.tail_seen.load(Ordering::Relaxed);
        if gets.head != tail {
            return Oldest::InRing { tail };
        }
        // The word first: a put committed after this read moves it on.
        let seq = state.puts.items_seq.load(Ordering::SeqCst);
        let tail = self.catch_up_tail();
        if gets.head != tail {
            return Oldest::InRing { tail };
        }
        let (spill_tail, origin) = state.published_spill();
        if spill_tail == gets.spill_head {
            return Oldest::Nothing(seq);
        }
        match self.catch_up_tail() {
            tail if tail != gets.head => Oldest::InRing { tail },
            _ => Oldest::InSpill { tail: spill_tail, origin },
        }
    }

    /// The producers' tail, read again (and kept as the one last seen).
    fn catch_up_tail(&self) -> u64 {
        let state = self.state();
        let tail = state.published_tail();
        state.gets.tail_seen.store(tail, Ordering::Relaxed);
        tail
    }

    /// Reads the record at the ring's head: its kind, its payload and the consumers' fields
    /// without it.
    fn read_ring(&self, gets: &Gets, tail: u64) -> Result<(u32, Vec<u8>, Gets)> {
        // SAFETY: under the get lock (the caller's), the records between the head and a tail the
        // producers published are read by this holder alone and written by nobody until the head
        // moves past them.
        match unsafe { RecordRing::new(&self.memory).read(gets.head, tail) } {
            Found::Record { kind, payload, next } if valid(kind, payload.len()) => {
                Ok((kind, payload, Gets { head: next, ..*gets }))
            }
            Found::Record { kind, payload, .. } => Err(malformed(kind, payload.len())),
            Found::Malformed { kind, len } => Err(malformed(kind, len)),
            Found::Empty => Err(malformed(0, 0)),
        }
    }

    /// Reads the record at the spill's head (the spill's records up to `tail` were published,
    /// from file position `origin`) and gives back the memory behind it: its kind, its payload
    /// and the consumers' fields without it.
    fn take_from_spill(
        &self,
        _locked: &GetsLocked<'_>,
        gets: &Gets,
        tail: u64,
        origin: u64,
    ) -> Result<(u32, Vec<u8>, Gets)> {
        let at = gets.spill_head.checked_sub(origin).filter(|_| tail >= gets.spill_head);
        let Some(at) = at else { return Err(malformed(0, 0)) };
        let Some((kind, payload)) = self.spill().read(at, tail - gets.spill_head)? else {
            return Err(malformed(0, (tail - gets.spill_head) as usize));
        };
        if !valid(kind, payload.len()) {
            return Err(malformed(kind, payload.len()));
        }
        let spill_head = gets.spill_head + record_ring::record_size(payload.len()) as u64;
        // Before the commit: until it, no put starts the spill over on the memory given back.
        self.release_spill(spill_head, tail, origin)?;
        Ok((kind, payload, Gets { spill_head, ..*gets }))
    }

    /// After a record was read from the spill, `head` being the position after it: gives back
    /// the memory behind it each [`RELEASE_STEP`], or all of it if that was the last record (the
    /// put lock is taken to know it: a put may be adding one).
    fn release_spill(&self, head: u64, tail: u64, origin: u64) -> Result<()> {
        let state = self.state();
        let released = state.gets.spill_released.load(Ordering::Relaxed).max(origin);
        if head == tail {
            let Some(_puts) = self.lock_puts(Deadline::NONE)? else { return Ok(()) };
            let puts = state.puts();
            if head == puts.spill_tail {
                // Drained: the next put starts over at the file's spill start.
                self.spill().release(0, (puts.spill_tail - puts.spill_origin).next_multiple_of(4096));
                state.gets.spill_released.store(head, Ordering::Relaxed);
                return Ok(());
            }
        }
        if head >= released + RELEASE_STEP {
            let upto = (head - origin) / 4096 * 4096;
            self.spill().release((released - origin) / 4096 * 4096, upto);
            state.gets.spill_released.store(origin + upto, Ordering::Relaxed);
        }
        Ok(())
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
        let mut pauses = 0u32;
        let look = || {
            pauses += 1;
            (pauses == 1 || pauses.is_multiple_of(PAUSES_PER_LOOK)) && sleep.moved(seq)
        };
        if spin.spin(deadline, look) {
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
    ///
    /// One compare-and-swap on the count done, under no lock; then, unless the items put as last
    /// read are more than that (work is unfinished), the count put is read: equal, this was the
    /// last unfinished task (the put count cannot have been lower at the swap, never being below
    /// the done count), and the joiners are woken. A put that comes between the swap and the
    /// read hides that moment: the joiners then wait for that item too, as a joiner rechecking
    /// the count would.
    pub(super) fn task_done(&self) -> Result<()> {
        let state = self.state();
        let mut done = state.done.done.load(Ordering::SeqCst);
        loop {
            if done >= state.published_taken() {
                return Err(Error::InvalidState(
                    "task_done() called more times than items were taken from the queue; call it once per get".into(),
                ));
            }
            match state.done.done.compare_exchange(done, done + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => done = now,
            }
        }
        let done = done + 1;
        if done < state.done.put_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let put = state.published_put();
        state.done.put_seen.fetch_max(put, Ordering::Relaxed);
        if done == put {
            state.done.done_seq.fetch_add(1, Ordering::SeqCst);
            state.done_sleep().wake::<Kernel>();
        }
        Ok(())
    }

    /// Waits until every item put has been marked done; false if `deadline` passed first.
    pub(super) fn join(&self, deadline: Deadline) -> bool {
        let state = self.state();
        loop {
            let seq = state.done.done_seq.load(Ordering::SeqCst);
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
        Sleep { word: &self.puts.items_seq, waiters: &self.sleepers.get_waiters, need: &self.sleepers.items_need }
    }

    /// Producers waiting for room.
    fn space_sleep(&self) -> Sleep<'_> {
        Sleep { word: &self.gets.space_seq, waiters: &self.sleepers.put_waiters, need: &self.sleepers.space_need }
    }

    /// Joiners waiting for the last task done.
    fn done_sleep(&self) -> Sleep<'_> {
        Sleep { word: &self.done.done_seq, waiters: &self.sleepers.join_waiters, need: &self.sleepers.done_need }
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
        let locked = core.lock_puts(Deadline::NONE).unwrap().unwrap();
        let p = state.puts();
        let at = (p.tail % core.memory.capacity() as u64) as usize;
        // SAFETY: this thread holds the lock (forgotten below, as a killed holder would).
        unsafe { RingBytes::write(&core.memory, at, &record_ring::header(1, INLINE)) };
        // SAFETY: as above.
        unsafe { RingBytes::write(&core.memory, at + record_ring::HEADER, &[n]) };
        if armed {
            state.arm_puts(Puts { tail: p.tail + record_ring::record_size(1) as u64, put: p.put + 1, ..p });
        }
        std::mem::forget(locked);
        state.put_lock.abandon_to(GHOST, 99);
    }

    /// A consumer that took the lock and armed its journal to take the oldest item (a one-byte
    /// one), then was killed.
    fn die_after_taking_a_one_byte_item(core: &Core) {
        let state = core.state();
        let locked = core.lock_gets(Deadline::NONE).unwrap().unwrap();
        let g = state.gets();
        state.arm_gets(Gets { head: g.head + record_ring::record_size(1) as u64, taken: g.taken + 1, ..g });
        std::mem::forget(locked);
        state.get_lock.abandon_to(GHOST, 99);
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
        die_after_taking_a_one_byte_item(&core);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 2);
        assert_eq!(core.len(), 0);
    }

    #[test]
    fn a_consumer_waiting_for_a_killed_producers_item_finishes_its_put() {
        let core = Core::create(1, 0, 4096).unwrap();
        die_while_putting(&core, 9, true);
        // Nothing else takes the put lock: the waiting consumer repairs it after a slice.
        assert_eq!(byte(core.get(Deadline::after(Some(Duration::from_secs(5)))).unwrap()), 9);
        assert!(!core.state().put_lock.locked());
    }

    #[test]
    fn a_producer_waiting_for_room_finishes_a_killed_consumers_get() {
        let core = Core::create(1, 1, 4096).unwrap();
        put(&core, message(1)).unwrap();
        assert!(matches!(
            core.put(Encoding::InMemory(vec![2]), Vec::new(), Deadline::after(Some(Duration::ZERO))),
            Err(Error::Full)
        ));
        die_after_taking_a_one_byte_item(&core);
        // The killed consumer took item 1: the producer finds room once it finished that get.
        put(&core, message(2)).unwrap();
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 2);
    }

    #[test]
    fn a_queue_whose_consumer_keeps_up_touches_about_a_mib_of_its_ring() {
        let core = Core::create(1, 0, DEFAULT_CAPACITY).unwrap();
        let before = memory_held(&core);
        let item = |n: u32| Message { bytes: vec![n as u8; 1000], fds: Vec::new() };
        // 20 MB through the 64 MiB ring, ten items behind.
        for n in 0..20_000u32 {
            put(&core, item(n)).unwrap();
            if n >= 10 {
                assert!(
                    matches!(core.get(Deadline::NONE).unwrap(), Taken::Inline(b, _) if b == vec![(n - 10) as u8; 1000])
                );
            }
        }
        let touched = memory_held(&core) - before;
        assert!(touched <= RESTART_AFTER + (64 << 10), "{touched} bytes of the ring touched");
        for n in 19_990..20_000u32 {
            assert!(matches!(core.get(Deadline::NONE).unwrap(), Taken::Inline(b, _) if b == vec![n as u8; 1000]));
        }
    }

    #[test]
    fn a_backlog_longer_than_the_restart_point_keeps_its_order() {
        let core = Core::create(1, 0, 4 << 20).unwrap();
        let item = |n: u32| Message { bytes: n.to_le_bytes().repeat(250), fds: Vec::new() };
        let (mut next_put, mut next_get) = (0u32, 0u32);
        // Backlogs of 0.5 to 3 MB, around the 1 MiB where records go back to the ring's start.
        for backlog in [500u32, 3000, 1200, 2500, 10] {
            while next_put - next_get < backlog {
                put(&core, item(next_put)).unwrap();
                next_put += 1;
            }
            while next_put - next_get > backlog / 2 {
                match core.get(Deadline::NONE).unwrap() {
                    Taken::Inline(bytes, _) => assert_eq!(bytes, item(next_get).bytes),
                    Taken::Big(..) => panic!("a small item came back big"),
                }
                next_get += 1;
            }
        }
    }

    #[test]
    fn the_last_task_done_wakes_the_joiner_and_no_other_does() {
        let core = Core::create(1, 0, 4096).unwrap();
        for n in 0..3 {
            put(&core, message(n)).unwrap();
        }
        let short = Deadline::after(Some(Duration::from_millis(20)));
        assert!(!core.join(short));
        for _ in 0..3 {
            core.get(Deadline::NONE).unwrap();
        }
        core.task_done().unwrap();
        core.task_done().unwrap();
        assert_eq!(core.unfinished(), 1);
        let seq = core.state().done.done_seq.load(Ordering::SeqCst);
        core.task_done().unwrap();
        assert_eq!(core.state().done.done_seq.load(Ordering::SeqCst), seq.wrapping_add(1));
        assert!(core.join(Deadline::after(Some(Duration::ZERO))));
        assert!(matches!(core.task_done(), Err(Error::InvalidState(_))));
        // More work: unfinished again, and done again with its last task.
        put(&core, message(4)).unwrap();
        assert!(!core.join(Deadline::after(Some(Duration::ZERO))));
        core.get(Deadline::NONE).unwrap();
        core.task_done().unwrap();
        assert!(core.join(Deadline::after(Some(Duration::ZERO))));
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
        let spill_tail = core.state().puts().spill_tail;
        put(&core, item(7)).unwrap();
        assert_eq!(core.state().puts().spill_tail, spill_tail);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 7);
        // A second spill starts over at the start of the spill's part of the file.
        for n in 0..10u8 {
            put(&core, item(n)).unwrap();
        }
        let puts = core.state().puts();
        assert!(puts.spill_tail > spill_tail && puts.spill_origin == spill_tail, "{puts:?}");
        for n in 0..10u8 {
            assert!(matches!(core.get(Deadline::NONE).unwrap(), Taken::Inline(b, _) if b == vec![n; 1000]));
        }
        assert!(memory_held(&core) <= before + 4096, "{} bytes held", memory_held(&core));
    }

    #[test]
    fn a_malformed_spill_record_is_an_error_not_a_crash() {
        let core = Core::create(1, 0, 4096).unwrap();
        for n in 0..100 {
            put(&core, Message { bytes: vec![n; 100], fds: Vec::new() }).unwrap();
        }
        let (puts, gets) = (core.state().puts(), core.state().gets());
        assert!(puts.spill_tail > gets.spill_head);
        // A record claiming more bytes than the spill holds.
        let at = core.memory.spill_base() + gets.spill_head - puts.spill_origin;
        sys::write_all_at(core.memory.fd().as_fd(), &record_ring::header(u32::MAX, INLINE), at).unwrap();
        while core.state().gets().head != core.state().puts().tail {
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
