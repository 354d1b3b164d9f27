//! Queues between processes: [`Queue`], [`SimpleQueue`], [`JoinableQueue`].
//!
//! A queue is an anonymous memory file shared by every handle (a state block, a ring of records
//! and a spill beyond it, see below) plus a socket pair that carries descriptors. Handles travel
//! to children as process arguments (or inside any value sent to another process) and work from
//! any number of processes and threads at once.
//!
//! # Design
//!
//! CPython's `Queue` is a pipe, two locks, a semaphore for `maxsize` and a feeder thread in each
//! producer: `put` appends to an in-process buffer, and the feeder pickles and writes it to the
//! pipe later. Each item costs a pickle, two system calls on the write side (lock, write), two or
//! three on the read side, and thread hand-overs; an item still in the buffer when its producer
//! dies is lost, and a producer exits only once its feeder has flushed (the documented "joining
//! processes that use queues" deadlock).
//!
//! Here a queue is a **ring of records in shared memory** with two robust locks
//! (`sync::lock_state`, the lock word of [`Lock`](crate::Lock)), one that producers take turns
//! under and one for consumers, and futex wake-ups:
//!
//! - `put` encodes the item (postcard, as every value in this crate), takes the put lock, copies
//!   the record beyond the tail, commits the new tail, releases, and wakes a sleeping consumer only
//!   if there is one. `get` is the mirror image under the get lock. Each side writes only its own
//!   positions and reads the other side's only when the values it last read say "empty" (a
//!   consumer) or "full" (a producer), so a producer and a consumer running at once on two cores
//!   pass no cache line back and forth but the records' own (see `shared`). An uncontended
//!   operation makes no system call at all; a waiter first spins briefly (the adaptive spin of
//!   [`sync`](crate::sync), looking at the other side every 32 pauses) and only then sleeps on a
//!   futex word bumped by every put (consumers) or get (producers).
//! - There is no feeder thread: a put is complete when it returns. Items put before a producer
//!   exits are never lost, and a producer never waits at exit.
//! - **Big items** (an encoding over 128 KiB, or a quarter of the ring) do not go through the ring:
//!   the producer encodes the item straight into a memory file of its own (the first 128 KiB are
//!   buffered; past them, long pieces such as the bytes of a string or a byte buffer go from the
//!   item into the file, never through a buffer) and passes that descriptor on the queue's side
//!   channel (a `SOCK_SEQPACKET` pair every handle holds); the ring holds a 24-byte record. The
//!   consumer maps the file and decodes in place. Items holding descriptors
//!   ([`Handle`](crate::Handle), a connection, another queue) pass those on the same channel.
//! - **An unbounded queue never makes `put` wait** (CPython's `Queue()` buffers every item in its
//!   producer until readers come; programs such as CPython's `mp_workers.py` put every task
//!   before they start the workers). The ring (64 MiB of address space unless
//!   [`Queue::with_capacity`] says otherwise, used only as far as the backlog reaches: past its
//!   first MiB, records go back to the ring's start as soon as the consumers have moved on from
//!   there, so a queue whose consumers keep up touches about a MiB) is the fast path, not a
//!   limit: a record that finds
//!   it full goes to the **spill**, the queue's memory file beyond the ring, which grows as far
//!   as the backlog does. So do the records put after it until the consumers have drained the
//!   queue (the ring's records are older than the spill's, which keeps the order); the spill then
//!   gives its memory back and the queue runs through the ring again. A big item that finds the
//!   side channel full (its socket buffer holds some 270 messages, `net.core.wmem_default`) goes
//!   to the spill whole, without a memory file of its own. The spill is written with `pwrite`
//!   and read with `pread` under the lock: a system call on each side, about 300 000 small items
//!   a second each way in one process under load (the ring: 1.2 to 3 million), still several
//!   times CPython's rate, and only while the backlog exceeds the ring.
//! - `maxsize` counts items, wherever they wait: a bounded queue blocks exactly at `maxsize`.
//! - **What still waits**: an item holding descriptors needs the side channel, which holds some
//!   270 such items (and the kernel limits a user's descriptors in flight, `RLIMIT_NOFILE`,
//!   except for root); a put beyond waits for a consumer as on a full queue, and a timed one
//!   fails with [`Error::Full`](crate::Error::Full), whose message names this limit. Otherwise
//!   the limit is the machine's memory, as for CPython (a failed `pwrite` is an
//!   [`Error::Io`](crate::Error::Io) naming the spill).
//!
//! # What a killed process can lose
//!
//! A producer or consumer killed with `SIGKILL` at any instruction never blocks or corrupts the
//! queue for the others:
//!
//! - The locks are robust: the next operation finds the owner dead (within 100 ms) and takes over.
//!   So does a waiter on the other side whose slice passes with nothing new (a consumer waiting
//!   for the item of a producer killed inside `put`, a producer waiting for the room a killed
//!   consumer made).
//! - Every operation under a lock writes its side's new values (a put: the tail, the count of
//!   items put, the spill's tail; a get: the head, the count taken, the spill's head) into its
//!   side's journal, arms it, applies it, disarms it. A record is written beyond the tail (of the
//!   ring or the spill) before the commit, and read before the head moves. So a holder killed
//!   before arming changed nothing visible, and one killed after is completed by the next holder,
//!   which replays the journal. `task_done` is one compare-and-swap on the count done. Sleepers
//!   wait in slices of 100 ms, so a wake-up lost with a killed process costs at most a slice.
//! - **A producer** killed inside `put` either put its item (the commit happened) or did not;
//!   every item whose `put` returned stays in the queue, in the ring or in the spill: both live in
//!   the queue's memory file, which outlives every producer (it goes with the last handle).
//! - **A consumer** killed inside `get` either left the item in the queue (killed before the
//!   commit) or took it with it (after): at most that one item is lost. A big item or an item
//!   with descriptors is lost the same way if its consumer dies between the commit and receiving
//!   the descriptors; the descriptors then close with the side channel's next reader.
//! - A [`JoinableQueue`] consumer killed between `get` and `task_done` never marks its item done:
//!   `join` would wait for it (use [`join_timeout`](JoinableQueue::join_timeout)).
//!
//! # Figures
//!
//! Measured with `BENCH_ROUNDS=3 bench/compare queue` (2026-11-23, 2 vCPUs, AMD EPYC, Firecracker VM,
//! CPython 3.11.7, other builds and tests running: load average 8 to 10); 100 000 small ints
//! through the queue between processes started before the clock (see `bench/README.md`):
//!
//! | metric | this crate | CPython | speedup |
//! |---|---:|---:|---:|
//! | `Queue`, 1 producer → 1 consumer | 2 500 000 items/s | 70 000 | 36 |
//! | `Queue`, 2 producers → 2 consumers | 1 720 000 items/s | 52 000 | 33 |
//! | `SimpleQueue`, 1 → 1 | 2 610 000 items/s | 44 000 | 59 |
//! | `JoinableQueue`, 1 → 1, `task_done` per item, until `join` returns | 3 340 000 items/s | 44 000 | 75 |
//!
//! At a lighter load (3), ours reached 3.4 – 3.9 million items/s on one producer and one consumer.
//!
//! That run also had a row for one 100 MB item (0.076 s, 11x), which measured a pipe, not a
//! queue: the benchmark's queue metric ran the `connection` group's transfer until 2026-12-07.
//! Measured on the queue (2026-12-07, quiet VM): 0.14-0.19 s against CPython's 0.41-0.55 s, about
//! 3x (0.21-0.26 s before big items were encoded straight into their memory file).
//!
//! On a VM whose 2 vCPUs are separate cores (a cache line takes 50-65 ns from one to the other)
//! and whose system calls are cheap (2026-12-07, `bench/README.md`), the queue under one lock
//! gave 1.9-2.1 million items/s against CPython's 0.28-0.33 million (6-7x): each operation took
//! the lock's cache line, the counters', the journal's and the record's from the other side. With
//! a lock and a line of positions per side (each side reading the other's only to catch up) and
//! a waiter looking at the other side every 32 pauses rather than every pause, the same rows give
//! 5.5-7.4 million items/s, 20-25x CPython's (`bench/README.md`, section of 2026-12-07,
//! afternoon); one producer and one consumer at 60-95% of a bare locked ring in C on that VM
//! (`bench/floors/locked_ring.c`).
//!
//! How the design was chosen:
//!
//! - **Ring in shared memory, not a socket.** A queue over one `SOCK_SEQPACKET` socket shared by
//!   all (one `sendmsg` per put, one `recvmsg` per get, the kernel doing the locking) is bounded
//!   by those system calls: packet sockets carried 614 000 messages/s one way on this machine
//!   (`connection` measurements in `bench/README.md`), five times less than the ring, whose
//!   operations make no system call unless someone sleeps.
//! - **A lock per side, not one.** Under one lock, a producer and a consumer running at once
//!   passed the lock's line, the counters', the journal's and the wake-up word's between their
//!   cores for every item (1.9-2.1M items/s on the VM above, against a floor of 3.4-5M for that
//!   design in C). With a lock per side and the other side's positions read only to catch up:
//!   3.7-4.1M. What was left was the consumer itself: keeping up, it waited between every two
//!   items and looked at the producers' line at every pause, so that each put found that line
//!   (and the record's) in the other core; looking every 32 pauses (some 0.4 µs) gave 7.6M, at
//!   the price of 0.45 µs more on a round trip through two queues (1.0 → 1.45 µs,
//!   `mpbench queue_rtt`).
//! - **One wake-up call per burst.** Waking sleepers on every put while they were still waking up
//!   cost a system call per item: 1p1c under load went from 1 150 000 to 1 600 000 – 1 900 000
//!   items/s once a waker records that its call reached every registered sleeper, so that the
//!   next puts make none until a sleeper registers again (the protocol is in `wakeup` and
//!   model-checked with loom, which found a lost wake-up in its first version).
//! - **Big items in memory files from 128 KiB.** One producer process to one consumer process,
//!   items of one size through a 4 MiB ring or as memory files (MB/s; `mpbench bytes_1p1c SIZE`):
//!
//!   | item | ring | memory file |
//!   |---|---:|---:|
//!   | 4 KiB | 806 | 90 |
//!   | 16 KiB | 686 | 199 |
//!   | 64 KiB | 712 | 393 |
//!   | 128 KiB | 532 | 559 |
//!   | 256 KiB | 608 | 903 |
//!
//!   A memory file costs its creation, a descriptor passed and a mapping (some 20 µs); it pays
//!   from about 128 KiB, where copying through the ring (twice) costs more.
//! - **The spill in the queue's memory file, not in the producer.** CPython's feeder thread keeps
//!   the backlog in the producer's memory: its items are lost if the producer is killed, and a
//!   producer that exits first waits for readers (the "joining processes that use queues"
//!   deadlock). Items spilled into the queue's own memory file stay there whatever becomes of the
//!   producer, and need no thread. The spill is one file with the ring, not a file per spilled
//!   item: a new file would have to reach the consumers through the side channel, whose room is
//!   the very thing that ran out. It is read and written with system calls rather than mapped,
//!   so that a backlog of any size costs no address space, no process maps bytes that another
//!   could be writing, and growing needs no remapping in every process. Spilling from the first
//!   full ring onwards, until the queue drains, keeps the order with one rule (ring before
//!   spill); a queue that alternated would need a list of runs in the journal.
//! - **100 MB** go with two copies (encoding into the memory file, decoding from the mapping) and
//!   no pipe: CPython pickles (a copy), writes through a pipe in 64 KiB pieces and unpickles (a
//!   copy) in its feeder and reader. What is left is the floor of fresh memory on this VM, not
//!   copying: the memory file's pages (`pwrite` into a new memory file: 44-60 ms for 100 MB) and
//!   the consumer's new buffer (the decoded bytes land in 24 000 fresh 4 KiB pages: 60-80 ms).
//!   Encoding into a buffer first, as before 2026-12-07, cost another 60-80 ms and a second
//!   100 MB in the producer for a moment.
//!
//! # Coming from Python
//!
//! | Python | Rust |
//! |---|---|
//! | `Queue()`, `JoinableQueue()`, `SimpleQueue()` | [`Queue::new`], [`JoinableQueue::new`], [`SimpleQueue::new`] (no `Default`: creating a queue can fail) |
//! | `Queue(maxsize)`, `JoinableQueue(maxsize)` | [`Queue::with_maxsize`], [`JoinableQueue::with_maxsize`] |
//! | an unbounded queue's `put` never blocks (the feeder thread buffers the items) | the same (items beyond the ring spill into the queue's memory file), except for items holding descriptors beyond some 270 waiting: see [`Queue::put`] |
//! | `put(obj)`, `put(obj, timeout=t)`, `put_nowait(obj)` / `put(obj, False)` | [`put`](Queue::put), [`put_timeout`](Queue::put_timeout), [`put_nowait`](Queue::put_nowait) |
//! | `get()`, `get(timeout=t)`, `get_nowait()` / `get(False)` | [`get`](Queue::get), [`get_timeout`](Queue::get_timeout), [`get_nowait`](Queue::get_nowait) |
//! | `queue.Full`, `queue.Empty` | [`Error::Full`](crate::Error::Full), [`Error::Empty`](crate::Error::Empty) |
//! | `qsize()`, `empty()`, `full()` | [`qsize`](Queue::qsize), [`empty`](Queue::empty), [`full`](Queue::full) |
//! | `close()`; using a closed queue raises `ValueError` / `OSError` | [`close`](Queue::close) takes the handle: using it afterwards does not compile |
//! | `join_thread()`, `cancel_join_thread()` | no-ops: there is no feeder thread, nothing is buffered |
//! | `task_done()`, `join()` | [`task_done`](JoinableQueue::task_done), [`join`](JoinableQueue::join), [`join_timeout`](JoinableQueue::join_timeout) |
//! | passing a queue to `Process(args=(q,))` | the same: [`Process::new(f, (q.clone(),))`](crate::Process::new) |

#[cfg(not(loom))]
#[allow(unsafe_code, reason = "shared-memory internals: a big item's mapped memory file")]
mod big;
#[cfg(not(loom))]
#[allow(unsafe_code, reason = "shared-memory internals: records in the queue's ring")]
mod core;
#[cfg(not(loom))]
mod handles;
#[cfg(all(test, loom))]
mod loom_models;
#[cfg(not(loom))]
#[allow(unsafe_code, reason = "shared-memory internals: the queue's state and ring")]
mod shared;
#[cfg(not(loom))]
mod spill;
mod wakeup;

#[cfg(not(loom))]
pub use handles::{JoinableQueue, Queue, SimpleQueue};
