//! The untyped queue: records in the shared ring, descriptors on the side channel, waiting and
//! waking. The typed handles (`handles`) encode and decode items around it.
//!
//! # Records
//!
//! ```text
//! [len: u32][kind: u32][payload: len bytes][padding to 8]
//! INLINE  payload = the item's encoding
//! FDS     payload = ticket (u64) + the item's encoding; its descriptors wait on the side channel
//! BIG     payload = ticket (u64) + encoding length (u64); the side channel carries the item's
//!         descriptors and, last, a memory file holding the encoding
//! PAD     the rest of the ring up to its end is unused; the next record starts at offset 0
//! ```
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

use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;

use crate::deadline::Deadline;
use crate::error::{Error, IoContext, Result};
use crate::reduction::Message;
use crate::sync::futex::Kernel;
use crate::sync::lock_state::{Acquired, LIVENESS_SLICE};
use crate::sync::spin::SpinState;
use crate::sys;

use super::shared::{BigItem, Counters, SharedMemory, State};
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

const HEADER: usize = 8;
const TICKET: usize = 8;
const INLINE: u32 = 1;
const FDS: u32 = 2;
const BIG: u32 = 3;
const PAD: u32 = 4;

/// A record's size in the ring: header and payload, rounded up to 8 bytes.
fn record_size(payload: usize) -> usize {
    HEADER + payload.div_ceil(8) * 8
}

/// What a consumer took out of the queue, to decode outside the lock.
pub(super) enum Taken {
    /// The encoding and its descriptors.
    Inline(Vec<u8>, Vec<OwnedFd>),
    /// A big item: its descriptors and its encoding in a memory file of `len` bytes.
    Big(Vec<OwnedFd>, OwnedFd, usize),
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

/// The queue's lock, held; released on drop.
struct Locked<'a>(&'a State);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.lock.release::<Kernel>();
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
        match state.lock.acquire::<Kernel>(sys::current_thread(), deadline.left(), false) {
            Acquired::Clean => Ok(Some(Locked(state))),
            Acquired::OwnerDied(_) => {
                state.replay_journal();
                state.lock.recover();
                tracing::debug!("a queue's lock holder died; its operation was completed or undone");
                Ok(Some(Locked(state)))
            }
            Acquired::No => Ok(None),
            Acquired::Deadlock => Err(Error::InvalidState(
                "this thread already holds the queue's lock (an item's serde impl used the same queue?)".into(),
            )),
        }
    }

    /// Puts an encoded item, waiting for room until `deadline` (then [`Error::Full`]).
    pub(super) fn put(&self, message: Message, deadline: Deadline) -> Result<()> {
        let Message { bytes, mut fds } = message;
        let big = bytes.len() > self.inline_limit();
        let kind = match (big, fds.is_empty()) {
            (true, _) => BIG,
            (false, false) => FDS,
            (false, true) => INLINE,
        };
        if big {
            fds.push(BigItem::store(&bytes)?);
        }
        let payload_len = match kind {
            INLINE => bytes.len(),
            FDS => TICKET + bytes.len(),
            _ => TICKET + 8,
        };
        let body: &[u8] = if big { &(bytes.len() as u64).to_le_bytes() } else { &bytes };
        let state = self.state();
        loop {
            let Some(locked) = self.lock(lock_deadline(deadline))? else { return Err(Error::Full) };
            match self.push_locked(&locked, kind, payload_len, body, &fds)? {
                Ok(()) => {
                    drop(locked);
                    Sleep { word: &state.items_seq, waiters: &state.get_waiters, need: &state.items_need }
                        .wake::<Kernel>();
                    return Ok(());
                }
                Err(NotNow::Wait(seq)) => {
                    drop(locked);
                    let sleep = Sleep { word: &state.space_seq, waiters: &state.put_waiters, need: &state.space_need };
                    if !self.wait(sleep, seq, &state.put_spin, deadline) {
                        return Err(Error::Full);
                    }
                }
            }
        }
    }

    /// Writes one record and commits it, or says what to wait for.
    fn push_locked(
        &self,
        _locked: &Locked<'_>,
        kind: u32,
        payload_len: usize,
        body: &[u8],
        fds: &[OwnedFd],
    ) -> Result<std::result::Result<(), NotNow>> {
        let state = self.state();
        let counters = state.counters();
        let capacity = self.memory.capacity() as u64;
        let need = record_size(payload_len) as u64;
        let index = counters.tail % capacity;
        let pad = if need > capacity - index { capacity - index } else { 0 };
        let maxsize = state.maxsize();
        let over_limit = maxsize > 0 && counters.count >= maxsize;
        let used = counters.tail - counters.head;
        if over_limit || used + pad + need > capacity {
            return Ok(Err(NotNow::Wait(state.space_seq.load(Ordering::SeqCst))));
        }
        let mut ticket = None;
        if kind != INLINE {
            let number = state.next_ticket.load(Ordering::Relaxed);
            state.next_ticket.store(number + 1, Ordering::Relaxed);
            let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
            let sent = sys::try_send_with_fds(self.side_tx.as_fd(), &[IoSlice::new(&number.to_le_bytes())], &borrowed)
                .context("pass an item's descriptors to the queue")?;
            if sent == 0 {
                // The side channel is full (consumers lag behind): wait for a get like for room.
                return Ok(Err(NotNow::Wait(state.space_seq.load(Ordering::SeqCst))));
            }
            ticket = Some(number);
        }
        let mut at = index as usize;
        if pad > 0 {
            self.memory.write(at, &header(0, PAD));
            at = 0;
        }
        self.memory.write(at, &header(payload_len as u32, kind));
        at += HEADER;
        if let Some(ticket) = ticket {
            self.memory.write(at, &ticket.to_le_bytes());
            at += TICKET;
        }
        self.memory.write(at, body);
        state.commit(Counters {
            tail: counters.tail + pad + need,
            count: counters.count + 1,
            unfinished: counters.unfinished + 1,
            ..counters
        });
        state.items_seq.fetch_add(1, Ordering::SeqCst);
        Ok(Ok(()))
    }

    /// Takes the oldest item, waiting until `deadline` (then [`Error::Empty`]).
    pub(super) fn get(&self, deadline: Deadline) -> Result<Taken> {
        let state = self.state();
        loop {
            let Some(locked) = self.lock(lock_deadline(deadline))? else { return Err(Error::Empty) };
            match self.pop_locked(&locked)? {
                Ok(Some(taken)) => {
                    drop(locked);
                    Sleep { word: &state.space_seq, waiters: &state.put_waiters, need: &state.space_need }
                        .wake::<Kernel>();
                    return Ok(taken);
                }
                // An item whose descriptors were lost with a killed process: take the next.
                Ok(None) => continue,
                Err(NotNow::Wait(seq)) => {
                    drop(locked);
                    let sleep = Sleep { word: &state.items_seq, waiters: &state.get_waiters, need: &state.items_need };
                    if !self.wait(sleep, seq, &state.get_spin, deadline) {
                        return Err(Error::Empty);
                    }
                }
            }
        }
    }

    /// Removes the oldest record and commits; `Ok(None)` when the record's item was lost.
    fn pop_locked(&self, _locked: &Locked<'_>) -> Result<std::result::Result<Option<Taken>, NotNow>> {
        let state = self.state();
        let counters = state.counters();
        if counters.count == 0 {
            return Ok(Err(NotNow::Wait(state.items_seq.load(Ordering::SeqCst))));
        }
        let capacity = self.memory.capacity() as u64;
        let mut position = counters.head;
        let (mut len, mut kind) = self.read_header(position);
        if kind == PAD {
            position += capacity - position % capacity;
            (len, kind) = self.read_header(position);
        }
        let index = (position % capacity) as usize;
        let room = self.memory.capacity() - index - HEADER;
        let len = len as usize;
        let valid = match kind {
            INLINE => len <= room,
            FDS => (TICKET..=room).contains(&len),
            BIG => len == TICKET + 8 && len <= room,
            _ => false,
        };
        if !valid {
            return Err(Error::Protocol(format!(
                "a queue's shared memory holds a malformed record (kind {kind}, {len} bytes); the queue is corrupted"
            )));
        }
        let mut payload = vec![0u8; len];
        self.memory.read(index + HEADER, &mut payload);
        let head = position + record_size(len) as u64;
        let count = counters.count - 1;
        // Emptied past the first MiB: start again at the beginning, so that the backlog decides
        // how much of the ring's memory is ever touched (at least a MiB, where streams run).
        let (head, tail) = match count == 0 && head >= RESTART_AFTER {
            true => (0, 0),
            false => (head, counters.tail),
        };
        state.commit(Counters { head, tail, count, taken: counters.taken + 1, ..counters });
        state.space_seq.fetch_add(1, Ordering::SeqCst);
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

    fn read_header(&self, position: u64) -> (u32, u32) {
        let mut header = [0u8; HEADER];
        self.memory.read((position % self.memory.capacity() as u64) as usize, &mut header);
        let (len, kind) = header.split_at(4);
        (
            u32::from_le_bytes(len.try_into().unwrap_or_default()),
            u32::from_le_bytes(kind.try_into().unwrap_or_default()),
        )
    }

    /// Receives the side channel's message for `ticket`, dropping older ones (left by killed
    /// processes). `None` if it is not there: the item was lost with a killed process.
    fn receive_ticket(&self, ticket: u64) -> Result<Option<Vec<OwnedFd>>> {
        loop {
            let mut number = [0u8; TICKET];
            let mut fds = Vec::new();
            let got = sys::try_recv_with_fds(self.side_rx.as_fd(), &mut number, &mut fds)
                .context("receive an item's descriptors from the queue")?;
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
            state.done_seq.fetch_add(1, Ordering::SeqCst);
        }
        drop(locked);
        if unfinished == 0 {
            Sleep { word: &state.done_seq, waiters: &state.join_waiters, need: &state.done_need }.wake::<Kernel>();
        }
        Ok(())
    }

    /// Waits until every item put has been marked done; false if `deadline` passed first.
    pub(super) fn join(&self, deadline: Deadline) -> bool {
        let state = self.state();
        loop {
            let seq = state.done_seq.load(Ordering::SeqCst);
            if self.unfinished() == 0 {
                return true;
            }
            let sleep = Sleep { word: &state.done_seq, waiters: &state.join_waiters, need: &state.done_need };
            if !self.wait(sleep, seq, &state.get_spin, deadline) {
                return false;
            }
        }
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

fn header(len: u32, kind: u32) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&kind.to_le_bytes());
    header
}

/// Reads a big item's memory file: the item's bytes, mapped.
pub(super) fn open_big(memory: &OwnedFd, len: usize) -> Result<BigItem> {
    BigItem::open(memory, len)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use super::*;

    /// No thread has this id (above any `pid_max`): a lock holder that died.
    const GHOST: u32 = 0x3fff_fff0;

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
        core.memory.write(at, &header(1, INLINE));
        core.memory.write(at + HEADER, &[n]);
        if armed {
            state.arm(Counters { tail: c.tail + record_size(1) as u64, count: c.count + 1, ..c });
        }
        std::mem::forget(locked);
        state.lock.abandon_to(GHOST, 99);
    }

    #[test]
    fn a_producer_killed_after_arming_its_journal_is_completed() {
        let core = Core::create(1, 0, 4096).unwrap();
        core.put(message(1), Deadline::NONE).unwrap();
        die_while_putting(&core, 2, true);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 1);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 2);
        assert!(matches!(core.get(Deadline::after(Some(Duration::ZERO))), Err(Error::Empty)));
        core.put(message(3), Deadline::NONE).unwrap();
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 3);
    }

    #[test]
    fn a_producer_killed_before_arming_its_journal_changed_nothing() {
        let core = Core::create(1, 0, 4096).unwrap();
        core.put(message(1), Deadline::NONE).unwrap();
        die_while_putting(&core, 2, false);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 1);
        assert!(matches!(core.get(Deadline::after(Some(Duration::ZERO))), Err(Error::Empty)));
        core.put(message(3), Deadline::NONE).unwrap();
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 3);
    }

    #[test]
    fn a_consumer_killed_after_arming_took_its_item() {
        let core = Core::create(1, 0, 4096).unwrap();
        for n in 1..=2 {
            core.put(message(n), Deadline::NONE).unwrap();
        }
        let state = core.state();
        let locked = core.lock(Deadline::NONE).unwrap().unwrap();
        let c = state.counters();
        state.arm(Counters { head: c.head + record_size(1) as u64, count: c.count - 1, taken: c.taken + 1, ..c });
        std::mem::forget(locked);
        state.lock.abandon_to(GHOST, 99);
        assert_eq!(byte(core.get(Deadline::NONE).unwrap()), 2);
        assert_eq!(core.len(), 0);
    }

    #[test]
    fn orphaned_descriptor_messages_are_dropped() {
        let core = Core::create(1, 0, 4096).unwrap();
        // A producer that burned ticket 0 and sent its descriptors, then died before committing.
        let state = core.state();
        state.next_ticket.store(1, Ordering::Relaxed);
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        sys::try_send_with_fds(core.side_tx.as_fd(), &[IoSlice::new(&0u64.to_le_bytes())], &[file.as_fd()]).unwrap();
        let with_fd = Message { bytes: vec![5], fds: vec![OwnedFd::from(file)] };
        core.put(with_fd, Deadline::NONE).unwrap();
        match core.get(Deadline::NONE).unwrap() {
            Taken::Inline(bytes, fds) => assert_eq!((bytes, fds.len()), (vec![5], 1)),
            Taken::Big(..) => panic!("a small item came back big"),
        }
    }
}
