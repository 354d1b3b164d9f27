//! The memory a queue's handles share: a state block, a byte ring and the spill, in one anonymous
//! memory file.
//!
//! ```text
//! offset 0           State    robust lock, positions and wake-up words, journal, header (magic,
//!                             item type tag, sizes), sleepers, spin states: a cache line each
//! offset 4096        ring     `capacity` bytes of records (`shm::record_ring`), mapped by every handle
//! offset spill_base  spill    records that found the ring full (see `spill`): the file grows as
//!                             far as it reaches; read and written with `pread`/`pwrite`, never mapped
//! ```
//!
//! The file is sealed against shrinking (never against growing): a mapping of the state and the
//! ring stays valid whatever a holder does, and the spill extends the file.
//!
//! Everything in `State` is an atomic; the fields under the lock are changed only by the lock's
//! holder, through the journal (see [`Journal`]), so that a holder killed at any instruction
//! leaves either the old state or, once the next holder replays the journal, the new one.

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

/// "mpqueue1" in ASCII: marks a queue's memory file.
const MAGIC: u64 = u64::from_le_bytes(*b"mpqueue1");

/// The counters that the lock protects and that one operation changes together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counters {
    /// Position (bytes since creation) of the oldest record.
    pub(super) head: u64,
    /// Position just after the newest record.
    pub(super) tail: u64,
    /// Items in the queue (in the ring and in the spill).
    pub(super) count: u64,
    /// Items put and not yet marked done (`JoinableQueue`).
    pub(super) unfinished: u64,
    /// Items taken and not yet marked done (`JoinableQueue`).
    pub(super) taken: u64,
    /// Position (bytes from the spill's start) of the oldest record in the spill.
    pub(super) spill_head: u64,
    /// Position just after the newest record in the spill.
    pub(super) spill_tail: u64,
}

impl Counters {
    /// Whether the ring holds a record.
    pub(super) fn ring_used(&self) -> bool {
        self.head != self.tail
    }

    /// Whether the spill holds a record.
    pub(super) fn spilling(&self) -> bool {
        self.spill_head != self.spill_tail
    }
}

/// The journal of the operation in progress: its new counters, written before they are applied.
///
/// A holder writes the new values here, arms the journal, applies them to the live counters and
/// disarms it. A holder killed before arming changed nothing (its record bytes lie beyond the
/// tail, unseen); killed after arming, the next holder (told by the robust lock that the owner
/// died) applies the journal again, which is harmless since it only stores values.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct Journal {
    armed: AtomicU32,
    head: AtomicU64,
    tail: AtomicU64,
    count: AtomicU64,
    unfinished: AtomicU64,
    taken: AtomicU64,
    spill_head: AtomicU64,
    spill_tail: AtomicU64,
}

/// The state block at the start of the memory file.
///
/// Laid out by who writes what, a cache line (64 bytes) for each group. A producer and a consumer
/// on separate cores pass every line that one of them writes back and forth (50-65 ns a
/// hand-over on the VM of `bench/README.md`, whose 2 vCPUs are reported as separate cores:
/// `bench/floors/cacheline_handover.c`), so an operation costs about one transfer per line it
/// writes, or reads after the other side wrote it:
/// - the lock alone: waiters watch it, so anything else on its line was fetched back from them;
/// - the counters and the words consumers and producers wait on, which every operation changes;
/// - their journal;
/// - what operations read and almost never write: the header, and the sleepers' line (their
///   counts and `need` words change only while someone sleeps, `done_seq` when the last task is
///   done), so these lines stay in both cores' caches;
/// - each spinning state on a line of its own.
#[derive(Debug, Default)]
#[repr(C)]
pub(super) struct State {
    /// Serializes every change of the ring and the counters.
    pub(super) lock: Line<LockState>,
    pub(super) live: Live,
    journal: Journal,
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

/// What every operation changes under the lock: the counters, and the word it bumps.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(super) struct Live {
    head: AtomicU64,
    tail: AtomicU64,
    count: AtomicU64,
    unfinished: AtomicU64,
    taken: AtomicU64,
    spill_head: AtomicU64,
    spill_tail: AtomicU64,
    /// Bumped by every put: consumers sleep on it.
    pub(super) items_seq: AtomicU32,
    /// Bumped by every get: producers waiting for room sleep on it.
    pub(super) space_seq: AtomicU32,
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
    /// The next ticket of the descriptor side channel (see `core`).
    pub(super) next_ticket: AtomicU64,
    /// How far into the spill records were ever written since it last emptied (under the lock,
    /// before the bytes are written): the memory to give back when it empties.
    pub(super) spill_written: AtomicU64,
    /// Below this position the spill's memory was given back already (under the lock).
    pub(super) spill_released: AtomicU64,
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
    /// Bumped when the last unfinished task is done: `join` sleeps on it.
    pub(super) done_seq: AtomicU32,
    /// Whether registered sleepers wait for a wake-up call (see `wakeup`): a burst of puts (gets)
    /// while the sleepers wake up makes one call, not one each.
    pub(super) items_need: AtomicU64,
    pub(super) space_need: AtomicU64,
    pub(super) done_need: AtomicU64,
}

const _: () = assert!(size_of::<State>() <= RING_OFFSET);

impl State {
    /// The counters (call under the lock; outside it they may be mid-update).
    pub(super) fn counters(&self) -> Counters {
        Counters {
            head: self.live.head.load(Ordering::Relaxed),
            tail: self.live.tail.load(Ordering::Relaxed),
            count: self.live.count.load(Ordering::Relaxed),
            unfinished: self.live.unfinished.load(Ordering::Relaxed),
            taken: self.live.taken.load(Ordering::Relaxed),
            spill_head: self.live.spill_head.load(Ordering::Relaxed),
            spill_tail: self.live.spill_tail.load(Ordering::Relaxed),
        }
    }

    /// Asks for the lines an operation writes under the lock (the counters, the journal) for
    /// writing, right after it took the lock: they come from the other side's cache together,
    /// instead of the counters first shared for their read and then taken for their write, and
    /// the journal's after that.
    pub(super) fn claim_lines(&self) {
        sys::prefetch_for_write(std::ptr::from_ref(&self.live).cast());
        sys::prefetch_for_write(std::ptr::from_ref(&self.journal).cast());
    }

    /// Makes `new` the counters, through the journal (call under the lock).
    pub(super) fn commit(&self, new: Counters) {
        self.arm(new);
        self.apply(new);
        self.journal.armed.store(0, Ordering::Release);
    }

    fn apply(&self, new: Counters) {
        self.live.head.store(new.head, Ordering::Relaxed);
        self.live.tail.store(new.tail, Ordering::Relaxed);
        // Release, not SeqCst (on x86 a SeqCst store is a locked exchange: two of them took a
        // tenth of an uncontended put). Under the lock the lock orders them; outside it, whoever
        // must see them with a word's change (a consumer woken by `items_seq`, a joiner by
        // `done_seq`) reads that word first, and the word's SeqCst bump after this store, by the
        // same holder, publishes them. `len` and `unfinished` outside the lock are snapshots.
        self.live.count.store(new.count, Ordering::Release);
        self.live.unfinished.store(new.unfinished, Ordering::Release);
        self.live.taken.store(new.taken, Ordering::Relaxed);
        self.live.spill_head.store(new.spill_head, Ordering::Relaxed);
        self.live.spill_tail.store(new.spill_tail, Ordering::Relaxed);
    }

    /// Writes `new` into the journal and arms it: from here on, a holder that dies has its
    /// operation finished by the next one (tests call this alone to play a holder killed right
    /// after arming).
    pub(super) fn arm(&self, new: Counters) {
        let journal = &self.journal;
        journal.head.store(new.head, Ordering::Relaxed);
        journal.tail.store(new.tail, Ordering::Relaxed);
        journal.count.store(new.count, Ordering::Relaxed);
        journal.unfinished.store(new.unfinished, Ordering::Relaxed);
        journal.taken.store(new.taken, Ordering::Relaxed);
        journal.spill_head.store(new.spill_head, Ordering::Relaxed);
        journal.spill_tail.store(new.spill_tail, Ordering::Relaxed);
        journal.armed.store(1, Ordering::Release);
    }

    /// After the lock's previous holder died: finishes its operation if it had journaled one.
    pub(super) fn replay_journal(&self) {
        let journal = &self.journal;
        if journal.armed.load(Ordering::Acquire) == 0 {
            return;
        }
        self.apply(Counters {
            head: journal.head.load(Ordering::Relaxed),
            tail: journal.tail.load(Ordering::Relaxed),
            count: journal.count.load(Ordering::Relaxed),
            unfinished: journal.unfinished.load(Ordering::Relaxed),
            taken: journal.taken.load(Ordering::Relaxed),
            spill_head: journal.spill_head.load(Ordering::Relaxed),
            spill_tail: journal.spill_tail.load(Ordering::Relaxed),
        });
        journal.armed.store(0, Ordering::Release);
    }

    /// Items in the ring (a snapshot: may change at once).
    pub(super) fn count_now(&self) -> u64 {
        self.live.count.load(Ordering::SeqCst)
    }

    /// Items put and not yet done (a snapshot).
    pub(super) fn unfinished_now(&self) -> u64 {
        self.live.unfinished.load(Ordering::SeqCst)
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
        // long as `self`; nobody else reads or writes it meanwhile (the caller's promise: it holds
        // the queue's lock); `bytes` is local memory, so the ranges do not overlap.
        unsafe {
            let dst = self.mapping.as_ptr().as_ptr().add(RING_OFFSET + offset);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
        }
    }

    unsafe fn read(&self, offset: usize, out: &mut [MaybeUninit<u8>]) {
        assert!(offset.checked_add(out.len()).is_some_and(|end| end <= self.capacity));
        // SAFETY: as in `write`: inside the mapped ring, nobody writes it meanwhile (the caller
        // holds the queue's lock), into local memory; any byte may be copied into
        // `MaybeUninit<u8>`.
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
