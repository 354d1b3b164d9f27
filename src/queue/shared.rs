//! The memory a queue's handles share: a state block, a byte ring and the spill, in one anonymous
//! memory file.
//!
//! ```text
//! offset 0           State    two robust locks (producers', consumers'), each side's positions,
//!                             counters, wake-up word and journal, the tasks done, the header
//!                             (magic, item type tag, sizes), sleepers, spin states
//! offset 4096        ring     `capacity` bytes of records (`shm::record_ring`), mapped by every handle
//! offset spill_base  spill    records that found the ring full (see `spill`): the file grows as
//!                             far as it reaches; read and written with `pread`/`pwrite`, never mapped
//! ```
//!
//! The file is sealed against shrinking (never against growing): a mapping of the state and the
//! ring stays valid whatever a holder does, and the spill extends the file.
//!
//! # Two sides
//!
//! Producers take turns under the put lock and move the tail; consumers under the get lock and
//! move the head. Each side writes only its own fields ([`PutSide`], [`GetSide`]), through its own
//! journal, and publishes them with release stores; the other side reads them with acquire loads.
//! Every position only grows (a ring position counts bytes since creation, a spill position bytes
//! since the spill was first used), so a value once read stays a safe bound: what lies between
//! the head and a tail once read is committed, what lies beyond the tail and before a head once
//! read plus the ring's size is free. Each side keeps such values of the other's (`*_seen`) and
//! reads the other's line again only when they say "empty" or "full": a producer and a consumer
//! on two cores pass no line back and forth for an item but the record's own, and the other
//! side's counters once per catch-up.
//!
//! A holder killed at any instruction leaves its side either as it was or, once the next holder of
//! that lock replays the journal, as it meant to: see [`Journal`].

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};
use crate::shm::record_ring::RingBytes;
use crate::sync::lock_state::LockState;
use crate::sync::spin::SpinState;
use crate::sys::{self, Mapping};

/// Where the ring starts in the memory file (a page after the state).
pub(super) const RING_OFFSET: usize = 4096;

/// "mpqueue2" in ASCII: marks a queue's memory file (the two-lock layout).
const MAGIC: u64 = u64::from_le_bytes(*b"mpqueue2");

/// What a put changes together, under the put lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Puts {
    /// Position (bytes since creation) just after the newest record in the ring.
    pub(super) tail: u64,
    /// Items ever put (the queue holds `put - taken`).
    pub(super) put: u64,
    /// Position just after the newest record in the spill.
    pub(super) spill_tail: u64,
    /// The spill position at the start of the spill's part of the file: the spill starts over
    /// there (position `spill_origin` is file offset `spill_base`) each time a put finds it empty.
    pub(super) spill_origin: u64,
}

/// What a get changes together, under the get lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Gets {
    /// Position of the oldest record in the ring (equal to `tail` when the ring is empty).
    pub(super) head: u64,
    /// Items ever taken.
    pub(super) taken: u64,
    /// Position of the oldest record in the spill (equal to `spill_tail` when it is empty).
    pub(super) spill_head: u64,
}

/// The journal of one side's operation in progress: its new values, written before they are
/// applied.
///
/// A holder writes the new values here, arms the journal, applies them to the live fields and
/// disarms it. A holder killed before arming changed nothing (its record bytes lie beyond the
/// tail, unseen; the record it read still lies after the head); killed after arming, the next
/// holder of the same lock (told by the robust lock that the owner died) applies the journal
/// again, which is harmless since it only stores values.
#[derive(Debug)]
#[repr(C, align(64))]
struct Journal<const N: usize> {
    armed: AtomicU32,
    values: [AtomicU64; N],
}

impl<const N: usize> Journal<N> {
    fn arm(&self, values: [u64; N]) {
        for (slot, value) in self.values.iter().zip(values) {
            slot.store(value, Ordering::Relaxed);
        }
        self.armed.store(1, Ordering::Release);
    }

    fn disarm(&self) {
        self.armed.store(0, Ordering::Release);
    }

    /// The values of an armed journal.
    fn armed(&self) -> Option<[u64; N]> {
        if self.armed.load(Ordering::Acquire) == 0 {
            return None;
        }
        Some(std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed)))
    }
}

/// The producers' line: written under the put lock, read by consumers.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(super) struct PutSide {
    tail: AtomicU64,
    put: AtomicU64,
    spill_tail: AtomicU64,
    spill_origin: AtomicU64,
    /// Bumped by every put: consumers sleep on it.
    pub(super) items_seq: AtomicU32,
    /// The consumers' head, taken count and spill head as a producer last read them (never ahead
    /// of the real ones): read again only when they say the ring is full, the queue at its
    /// `maxsize` or the spill in use.
    pub(super) head_seen: AtomicU64,
    pub(super) taken_seen: AtomicU64,
    pub(super) spill_head_seen: AtomicU64,
}

/// The consumers' line: written under the get lock, read by producers.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(super) struct GetSide {
    head: AtomicU64,
    taken: AtomicU64,
    spill_head: AtomicU64,
    /// Bumped by every get: producers waiting for room sleep on it.
    pub(super) space_seq: AtomicU32,
    /// The producers' tail as a consumer last read it (never ahead of the real one): read again
    /// only when the ring looks empty.
    pub(super) tail_seen: AtomicU64,
    /// Below this spill position the spill's memory was given back already.
    pub(super) spill_released: AtomicU64,
}

/// The tasks marked done (`JoinableQueue`): changed by one compare-and-swap each, under no lock.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(super) struct Done {
    /// Items ever marked done (never more than taken).
    pub(super) done: AtomicU64,
    /// Items put, as a `task_done` last read it: while `done` is below it, work is unfinished and
    /// the producers' line need not be read.
    pub(super) put_seen: AtomicU64,
    /// Bumped when the last unfinished task is done: `join` sleeps on it.
    pub(super) done_seq: AtomicU32,
}

/// The state block at the start of the memory file.
///
/// Laid out by who writes what, a cache line (64 bytes) for each group. A producer and a consumer
/// on separate cores pass every line that one of them writes back and forth (50-65 ns a
/// hand-over on the VM of `bench/README.md`, whose 2 vCPUs are reported as separate cores:
/// `bench/floors/cacheline_handover.c`), so an operation costs about one transfer per line it
/// writes, or reads after the other side wrote it:
/// - each lock alone: its waiters watch it;
/// - each side's fields and wake-up word, and each side's journal: a producer and a consumer
///   write only their own, and read the other's only to catch up;
/// - the tasks done, written by `task_done`;
/// - what operations read and almost never write: the header, and the sleepers' line (their
///   counts and `need` words change only while someone sleeps), so these lines stay in both
///   cores' caches;
/// - each spinning state on a line of its own.
#[derive(Debug)]
#[repr(C)]
pub(super) struct State {
    /// Serializes puts.
    pub(super) put_lock: Line<LockState>,
    /// Serializes gets.
    pub(super) get_lock: Line<LockState>,
    pub(super) puts: PutSide,
    put_journal: Journal<4>,
    pub(super) gets: GetSide,
    get_journal: Journal<3>,
    pub(super) done: Done,
    pub(super) header: Header,
    pub(super) sleepers: Sleepers,
    /// How long a consumer watches an empty queue (a producer a full one) before it sleeps.
    pub(super) get_spin: Line<SpinState>,
    pub(super) put_spin: Line<SpinState>,
}

/// A value alone on its cache line.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(super) struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What identifies the queue (written once, at creation), and what only big items and items
/// holding descriptors change.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(super) struct Header {
    magic: AtomicU64,
    /// Identifies the item type and queue kind, so that a handle is not received as another.
    tag: AtomicU64,
    /// Bytes in the ring (a multiple of 8).
    capacity: AtomicU64,
    /// Most items the queue holds (0: no limit but the ring's bytes).
    maxsize: AtomicU64,
    /// The next ticket of the descriptor side channel (see `core`; under the put lock).
    pub(super) next_ticket: AtomicU64,
    /// Set by a producer that found the side channel full, cleared by a consumer that received
    /// from it: a hint that a big item should go to the spill rather than into a memory file of its
    /// own (which it would find no room to pass).
    pub(super) side_channel_full: AtomicU32,
}

/// The sleepers (see `wakeup`): read after every operation, written only by a sleeper that
/// registers and by the waker that calls it.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(super) struct Sleepers {
    /// How many consumers, producers, joiners may sleep (a killed sleeper leaves one too many,
    /// which only costs a wake-up system call).
    pub(super) get_waiters: AtomicU32,
    pub(super) put_waiters: AtomicU32,
    pub(super) join_waiters: AtomicU32,
    /// Whether registered sleepers wait for a wake-up call (see `wakeup`): a burst of puts (gets)
    /// while the sleepers wake up makes one call, not one each.
    pub(super) items_need: AtomicU64,
    pub(super) space_need: AtomicU64,
    pub(super) done_need: AtomicU64,
}

const _: () = assert!(size_of::<State>() <= RING_OFFSET);

impl State {
    /// The producers' fields (call under the put lock; outside it they may be mid-update).
    pub(super) fn puts(&self) -> Puts {
        let p = &self.puts;
        Puts {
            tail: p.tail.load(Ordering::Relaxed),
            put: p.put.load(Ordering::Relaxed),
            spill_tail: p.spill_tail.load(Ordering::Relaxed),
            spill_origin: p.spill_origin.load(Ordering::Relaxed),
        }
    }

    /// The consumers' fields (call under the get lock).
    pub(super) fn gets(&self) -> Gets {
        let g = &self.gets;
        Gets {
            head: g.head.load(Ordering::Relaxed),
            taken: g.taken.load(Ordering::Relaxed),
            spill_head: g.spill_head.load(Ordering::Relaxed),
        }
    }

    /// The producers' tail as published (what lies before it is committed).
    pub(super) fn published_tail(&self) -> u64 {
        self.puts.tail.load(Ordering::Acquire)
    }

    /// The producers' spill tail and origin as published (call under the get lock).
    pub(super) fn published_spill(&self) -> (u64, u64) {
        let tail = self.puts.spill_tail.load(Ordering::Acquire);
        (tail, self.puts.spill_origin.load(Ordering::Relaxed))
    }

    /// The consumers' head as published (what lies before it was read and may be overwritten).
    pub(super) fn published_head(&self) -> u64 {
        self.gets.head.load(Ordering::Acquire)
    }

    /// The producers' count of items ever put.
    pub(super) fn published_put(&self) -> u64 {
        self.puts.put.load(Ordering::SeqCst)
    }

    pub(super) fn published_taken(&self) -> u64 {
        self.gets.taken.load(Ordering::Acquire)
    }

    pub(super) fn published_spill_head(&self) -> u64 {
        self.gets.spill_head.load(Ordering::Acquire)
    }

    /// Asks for the lines a put writes (its side's, its journal's) for writing, right after it
    /// took the lock: they come from another producer's cache together, instead of one for
    /// reading, then again for writing, then the next.
    pub(super) fn claim_put_lines(&self) {
        sys::prefetch_for_write(std::ptr::from_ref(&self.puts).cast());
        sys::prefetch_for_write(std::ptr::from_ref(&self.put_journal).cast());
    }

    /// As [`claim_put_lines`](Self::claim_put_lines), for a get.
    pub(super) fn claim_get_lines(&self) {
        sys::prefetch_for_write(std::ptr::from_ref(&self.gets).cast());
        sys::prefetch_for_write(std::ptr::from_ref(&self.get_journal).cast());
    }

    /// Makes `new` the producers' fields, through their journal (call under the put lock).
    pub(super) fn commit_puts(&self, new: Puts) {
        self.arm_puts(new);
        self.apply_puts(new);
        self.put_journal.disarm();
    }

    /// Makes `new` the consumers' fields, through their journal (call under the get lock).
    pub(super) fn commit_gets(&self, new: Gets) {
        self.arm_gets(new);
        self.apply_gets(new);
        self.get_journal.disarm();
    }

    /// Writes `new` into the producers' journal and arms it: from here on, a holder that dies has
    /// its put finished by the next one (tests call this alone to play a holder killed right after
    /// arming).
    pub(super) fn arm_puts(&self, new: Puts) {
        self.put_journal.arm([new.tail, new.put, new.spill_tail, new.spill_origin]);
    }

    /// As [`arm_puts`](Self::arm_puts), for a get.
    pub(super) fn arm_gets(&self, new: Gets) {
        self.get_journal.arm([new.head, new.taken, new.spill_head]);
    }

    // Release stores: the other side reads these fields under no common lock (acquire loads), and
    // must see the record bytes written (or read) before them. On x86 they are plain stores.
    fn apply_puts(&self, new: Puts) {
        let p = &self.puts;
        p.spill_origin.store(new.spill_origin, Ordering::Release);
        p.spill_tail.store(new.spill_tail, Ordering::Release);
        p.put.store(new.put, Ordering::Release);
        p.tail.store(new.tail, Ordering::Release);
    }

    fn apply_gets(&self, new: Gets) {
        let g = &self.gets;
        g.spill_head.store(new.spill_head, Ordering::Release);
        g.taken.store(new.taken, Ordering::Release);
        g.head.store(new.head, Ordering::Release);
    }

    /// After the put lock's previous holder died: finishes its put if it had journaled one.
    pub(super) fn replay_put_journal(&self) {
        if let Some([tail, put, spill_tail, spill_origin]) = self.put_journal.armed() {
            self.apply_puts(Puts { tail, put, spill_tail, spill_origin });
            self.put_journal.disarm();
        }
    }

    /// After the get lock's previous holder died: finishes its get if it had journaled one.
    pub(super) fn replay_get_journal(&self) {
        if let Some([head, taken, spill_head]) = self.get_journal.armed() {
            self.apply_gets(Gets { head, taken, spill_head });
            self.get_journal.disarm();
        }
    }

    /// Items in the queue (a snapshot: may change at once). The taken count is read first, so the
    /// difference is never negative.
    pub(super) fn count_now(&self) -> u64 {
        let taken = self.gets.taken.load(Ordering::SeqCst);
        self.puts.put.load(Ordering::SeqCst).saturating_sub(taken)
    }

    /// Items put and not yet done (a snapshot; the done count first, as in `count_now`).
    pub(super) fn unfinished_now(&self) -> u64 {
        let done = self.done.done.load(Ordering::SeqCst);
        self.puts.put.load(Ordering::SeqCst).saturating_sub(done)
    }

    pub(super) fn maxsize(&self) -> u64 {
        self.header.maxsize.load(Ordering::Relaxed)
    }

    pub(super) fn capacity(&self) -> u64 {
        self.header.capacity.load(Ordering::Relaxed)
    }
}

/// One queue's memory file, mapped in this process.
#[derive(Debug)]
pub(super) struct SharedMemory {
    mapping: Mapping,
    fd: OwnedFd,
    capacity: usize,
}

impl SharedMemory {
    /// A new memory file with a ring of `capacity` bytes (a multiple of 8).
    pub(super) fn create(tag: u64, maxsize: u64, capacity: usize) -> Result<Self> {
        debug_assert!(capacity.is_multiple_of(8) && capacity > 0);
        let len = RING_OFFSET + capacity;
        let fd = sys::memfd_growable("multiproc-queue", len).context("create a queue's shared memory")?;
        let mapping = Mapping::new(fd.as_fd(), len).context("map a queue's shared memory")?;
        let memory = SharedMemory { mapping, fd, capacity };
        let state = memory.state();
        state.header.tag.store(tag, Ordering::Relaxed);
        state.header.capacity.store(capacity as u64, Ordering::Relaxed);
        state.header.maxsize.store(maxsize, Ordering::Relaxed);
        state.header.magic.store(MAGIC, Ordering::Release);
        Ok(memory)
    }

    /// Maps a queue's memory file received from another process, checking what it holds.
    pub(super) fn attach(fd: OwnedFd, tag: u64) -> Result<Self> {
        let size = sys::unshrinkable_size(fd.as_fd()).context("inspect a queue's shared memory")?;
        let Some(size) = size.filter(|&size| size > RING_OFFSET) else {
            return Err(not_a_queue("a memory file too small, or not sealed against shrinking"));
        };
        // The ring's size, from the state block, to map the state and the ring (not the spill).
        let mut capacity = [0u8; 8];
        let read = sys::read_at(fd.as_fd(), &mut capacity, std::mem::offset_of!(State, header.capacity) as u64)
            .context("inspect a queue's shared memory")?;
        let capacity = usize::try_from(u64::from_ne_bytes(capacity)).unwrap_or(usize::MAX);
        let fits = read == 8 && capacity > 0 && capacity.is_multiple_of(8) && capacity <= size - RING_OFFSET;
        if !fits {
            return Err(not_a_queue("a ring of another size than its file"));
        }
        let mapping = Mapping::new(fd.as_fd(), RING_OFFSET + capacity).context("map a queue's shared memory")?;
        let memory = SharedMemory { mapping, fd, capacity };
        let state = memory.state();
        if state.header.magic.load(Ordering::Acquire) != MAGIC {
            return Err(not_a_queue("no queue header"));
        }
        if state.header.tag.load(Ordering::Relaxed) != tag {
            return Err(not_a_queue("a queue of another kind or item type"));
        }
        if state.capacity() != memory.capacity as u64 {
            return Err(not_a_queue("a ring of another size than its file"));
        }
        Ok(memory)
    }

    /// Where the spill starts in the file: the first page after the ring.
    pub(super) fn spill_base(&self) -> u64 {
        (RING_OFFSET + self.capacity).next_multiple_of(4096) as u64
    }

    pub(super) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub(super) fn state(&self) -> &State {
        // SAFETY: the mapping starts with `RING_OFFSET` (≥ size_of::<State>()) bytes for the
        // state, page-aligned (so aligned for `State`), zero-filled at creation (all zeros is a
        // valid `State`: atomics only) and only changed through atomics since; it stays mapped as
        // long as `self`.
        unsafe { self.mapping.as_ptr().cast::<State>().as_ref() }
    }
}

// SAFETY: the ring's size is fixed at creation (a multiple of 8: `Core::create` rounds it, and
// `attach` refuses any other); `write` and `read` copy exactly the range given and assert that it
// lies in the ring.
unsafe impl RingBytes for SharedMemory {
    fn capacity(&self) -> usize {
        self.capacity
    }

    unsafe fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(offset.checked_add(bytes.len()).is_some_and(|end| end <= self.capacity));
        // SAFETY: the range lies inside the ring (checked above), which is mapped read-write as
        // long as `self`; nobody else reads or writes it meanwhile (the caller's promise: the
        // bytes lie beyond the tail it holds the put lock for, short of the published head plus
        // the ring's size); `bytes` is local memory, so the ranges do not overlap.
        unsafe {
            let dst = self.mapping.as_ptr().as_ptr().add(RING_OFFSET + offset);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
        }
    }

    unsafe fn read(&self, offset: usize, out: &mut [MaybeUninit<u8>]) {
        assert!(offset.checked_add(out.len()).is_some_and(|end| end <= self.capacity));
        // SAFETY: as in `write`: inside the mapped ring, nobody writes it meanwhile (the caller's
        // promise: the bytes lie between the head it holds the get lock for and a published
        // tail), into local memory; any byte may be copied into `MaybeUninit<u8>`.
        unsafe {
            let src = self.mapping.as_ptr().as_ptr().add(RING_OFFSET + offset);
            std::ptr::copy_nonoverlapping(src, out.as_mut_ptr().cast::<u8>(), out.len());
        }
    }
}

fn not_a_queue(what: &str) -> Error {
    Error::InvalidState(format!(
        "the queue received is not the expected kind of queue: {what}; were sender and receiver built from the same program, with the same item type?"
    ))
}
