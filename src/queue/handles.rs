//! The typed handles: [`Queue`], [`SimpleQueue`], [`JoinableQueue`].

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::core::{Core, DEFAULT_CAPACITY, Taken, open_big};
use crate::deadline::Deadline;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::reduction;

/// The kinds of queue, told apart in the shared header so that one is not received as another.
#[derive(Clone, Copy)]
enum Kind {
    Queue,
    Simple,
    Joinable,
}

/// Identifies the queue kind and the item type (its name), in the shared header.
fn tag<T>(kind: Kind) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let name = std::any::type_name::<T>().bytes().chain([kind as u8]);
    for byte in name {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The shared part of every handle: the queue itself and its item type.
struct Inner<T> {
    core: Arc<Core>,
    item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Inner<T> {
    fn clone(&self) -> Self {
        Inner { core: Arc::clone(&self.core), item: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned> Inner<T> {
    fn create(kind: Kind, maxsize: usize, capacity: usize) -> Result<Self> {
        Ok(Inner { core: Arc::new(Core::create(tag::<T>(kind), maxsize as u64, capacity)?), item: PhantomData })
    }

    fn put(&self, item: &T, deadline: Deadline) -> Result<()> {
        let (encoding, fds) = self.core.encode(item)?;
        self.core.put(encoding, fds, deadline)
    }

    fn get(&self, deadline: Deadline) -> Result<T> {
        match self.core.get(deadline)? {
            Taken::Inline(bytes, fds) => reduction::decode_from(&bytes, fds),
            Taken::Big(fds, memory, len) => {
                let item = open_big(&memory, len)?;
                reduction::decode_from(item.bytes(), fds)
            }
        }
    }
}

/// The wire form of a handle: the shared memory and both ends of the descriptor channel.
#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(serialize_with = "crate::handle::serialize")]
    memory: &'a OwnedFd,
    #[serde(serialize_with = "crate::handle::serialize")]
    side_tx: &'a OwnedFd,
    #[serde(serialize_with = "crate::handle::serialize")]
    side_rx: &'a OwnedFd,
}

#[derive(Deserialize)]
struct WireIn {
    #[serde(deserialize_with = "crate::handle::deserialize")]
    memory: OwnedFd,
    #[serde(deserialize_with = "crate::handle::deserialize")]
    side_tx: OwnedFd,
    #[serde(deserialize_with = "crate::handle::deserialize")]
    side_rx: OwnedFd,
}

impl<T> Inner<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let (memory, side_tx, side_rx) = self.core.parts();
        WireOut { memory, side_tx, side_rx }.serialize(serializer)
    }

    fn deserialize<'de, D: Deserializer<'de>>(deserializer: D, kind: Kind) -> std::result::Result<Self, D::Error> {
        let wire = WireIn::deserialize(deserializer)?;
        let core =
            Core::attach(wire.memory, wire.side_tx, wire.side_rx, tag::<T>(kind)).map_err(reduction::decode_failure)?;
        Ok(Inner { core: Arc::new(core), item: PhantomData })
    }
}

/// A first-in, first-out queue of `T` between processes and threads, optionally bounded
/// (Python's `multiprocessing.Queue`).
///
/// Items are serde values (any number of producers and consumers, in any processes that hold a
/// handle; give a handle to a child as a process argument, or clone it for a thread). Each
/// producer's items come out in the order it put them. A `put` returns once the item is in the
/// queue's shared memory: nothing is buffered in the producer, so an item put before a producer
/// exits (or is killed) is never lost. An unbounded queue ([`new`](Self::new)) takes every item
/// without waiting for a consumer, as CPython's does (one exception: items holding descriptors,
/// see [`put`](Self::put)). See [the module documentation](crate::queue) for the design, the
/// limits and what a killed process can lose.
///
/// There is no `Default`: creating a queue makes a memory file and a socket pair, which can fail.
///
/// # Examples
///
/// Python's "put every task, then start the workers" ports as it stands: the queue holds the
/// tasks until the workers come.
///
/// ```
/// use multiproc::{Process, Queue};
///
/// fn worker(tasks: Queue<Option<u64>>, results: Queue<u64>) {
///     while let Some(n) = tasks.get().unwrap() {
///         results.put(n * n).unwrap();
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let tasks = Queue::new()?;
/// let results = Queue::new()?;
/// for n in 0..100 {
///     tasks.put(Some(n))?;
/// }
/// let mut workers = Vec::new();
/// for _ in 0..2 {
///     let mut worker = Process::new(worker, (tasks.clone(), results.clone()));
///     worker.start()?;
///     tasks.put(None)?; // one stop sign per worker
///     workers.push(worker);
/// }
/// let total: u64 = (0..100).map(|_| results.get()).sum::<multiproc::Result<u64>>()?;
/// assert_eq!(total, (0..100).map(|n| n * n).sum());
/// for mut worker in workers {
///     worker.join()?;
/// }
/// # Ok(())
/// # }
/// ```
///
/// A bounded queue makes a producer wait for its consumer:
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Error, Queue};
///
/// # fn main() -> multiproc::Result<()> {
/// let queue: Queue<u32> = Queue::with_maxsize(2)?;
/// queue.put(1)?;
/// queue.put(2)?;
/// assert!(queue.full());
/// assert!(matches!(queue.put_timeout(3, Duration::from_millis(10)), Err(Error::Full)));
/// assert_eq!(queue.get()?, 1);
/// queue.put_nowait(3)?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "multiprocessing.Queue")]
pub struct Queue<T> {
    inner: Inner<T>,
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue (Python: `Queue()`): [`put`](Self::put) never waits for a consumer.
    ///
    /// Items wait in a shared ring (64 MiB of address space, used only as far as the backlog
    /// reaches) and, beyond it, in the queue's memory file, which grows as far as the backlog
    /// does: the machine's memory is the limit, as CPython's producer memory is there.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the queue's memory file or socket pair (out of memory
    /// or descriptors).
    #[doc(alias = "Queue")]
    pub fn new() -> Result<Self> {
        Self::with_capacity(0, DEFAULT_CAPACITY)
    }

    /// A queue holding at most `maxsize` items, 0 for no limit (Python: `Queue(maxsize)`): a put
    /// on a queue holding `maxsize` items waits for a get.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A queue of at most `maxsize` items (0: no limit) whose shared ring has `ring_bytes` bytes
    /// (rounded up to 8, at least 4 KiB; [`new`](Self::new) takes 64 MiB). Each item takes its
    /// encoding plus 8 to 23 bytes of the ring; items encoded in more than 128 KiB (or a quarter
    /// of the ring) take 24 bytes and travel in a memory file of their own. Items that find the
    /// ring full go to the queue's memory file beyond it (slower: a system call on each side),
    /// and so do the items put after them until the queue has been drained: the ring is the fast
    /// path, not a limit.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_capacity(maxsize: usize, ring_bytes: usize) -> Result<Self> {
        Ok(Queue { inner: Inner::create(Kind::Queue, maxsize, ring_bytes)? })
    }

    fn with_kind(kind: Kind, maxsize: usize) -> Result<Self> {
        Ok(Queue { inner: Inner::create(kind, maxsize, DEFAULT_CAPACITY)? })
    }

    /// Puts `item`, waiting as long as the queue holds `maxsize` items (Python: `put(item)`).
    ///
    /// An unbounded queue never waits, with one exception: an item holding descriptors (a
    /// [`Handle`](crate::Handle), a connection, another queue) passes them on the queue's side
    /// channel, a socket that holds some 270 such items waiting (`net.core.wmem_default`; big
    /// items without descriptors do not count), and the kernel limits the descriptors in flight
    /// of a user (`RLIMIT_NOFILE`, not for root); a put beyond waits for a consumer to take some.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the item cannot be encoded (nothing is put); [`Error::InvalidState`]
    /// for an item holding more than 252 descriptors; [`Error::Io`] if the memory for the item
    /// ran out.
    pub fn put(&self, item: impl Borrow<T>) -> Result<()> {
        self.inner.put(item.borrow(), Deadline::NONE)
    }

    /// Puts `item`, waiting at most `timeout` for room (Python: `put(item, True, timeout)`).
    ///
    /// # Errors
    ///
    /// [`Error::Full`] if the queue still held `maxsize` items (or, for an item holding
    /// descriptors, the side channel was still full, see [`put`](Self::put)) when `timeout`
    /// passed; otherwise as [`put`](Self::put).
    pub fn put_timeout(&self, item: impl Borrow<T>, timeout: Duration) -> Result<()> {
        self.inner.put(item.borrow(), Deadline::after(Some(timeout)))
    }

    /// Puts `item` if there is room now (Python: `put_nowait`, `put(item, False)`).
    ///
    /// # Errors
    ///
    /// [`Error::Full`] if the queue holds `maxsize` items (or, for an item holding descriptors,
    /// the side channel is full, see [`put`](Self::put)); otherwise as [`put`](Self::put).
    pub fn put_nowait(&self, item: impl Borrow<T>) -> Result<()> {
        self.inner.put(item.borrow(), Deadline::after(Some(Duration::ZERO)))
    }

    /// Takes the oldest item, waiting as long as the queue is empty (Python: `get()`).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the item does not decode as a `T`; [`Error::Protocol`] if the queue's
    /// shared memory was corrupted; [`Error::Io`] if its descriptors or memory could not be read.
    pub fn get(&self) -> Result<T> {
        self.inner.get(Deadline::NONE)
    }

    /// Takes the oldest item, waiting at most `timeout` (Python: `get(True, timeout)`).
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if no item came within `timeout`; otherwise as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.inner.get(Deadline::after(Some(timeout)))
    }

    /// Takes the oldest item if there is one now (Python: `get_nowait`, `get(False)`).
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if the queue is empty; otherwise as [`get`](Self::get).
    pub fn get_nowait(&self) -> Result<T> {
        self.inner.get(Deadline::after(Some(Duration::ZERO)))
    }
}

impl<T> Queue<T> {
    /// How many items the queue holds now (exact at the moment it is read; others may change it
    /// at once).
    pub fn qsize(&self) -> usize {
        self.inner.core.len() as usize
    }

    /// Whether the queue holds no item now.
    pub fn empty(&self) -> bool {
        self.inner.core.len() == 0
    }

    /// Whether the queue holds `maxsize` items now (never for an unbounded queue).
    pub fn full(&self) -> bool {
        self.inner.core.is_full()
    }

    /// The item limit given at creation (0: none).
    pub fn maxsize(&self) -> usize {
        self.inner.core.maxsize() as usize
    }

    /// Closes this handle: it can no longer be used (Python: `close()`; using a closed queue
    /// raises `ValueError` there, here it does not compile). Other handles, in this process or
    /// others, keep working; items already put stay in the queue.
    ///
    /// ```compile_fail
    /// let queue: multiproc::Queue<u32> = multiproc::Queue::new().unwrap();
    /// queue.close();
    /// queue.put(1u32).unwrap(); // a closed queue: does not compile
    /// ```
    pub fn close(self) {}

    /// Python's `join_thread()`: waits for the feeder thread to flush the buffer. There is no
    /// feeder thread here (a put completes before it returns), so there is nothing to wait for.
    pub fn join_thread(&self) {}

    /// Python's `cancel_join_thread()`: lets a process exit without flushing its buffer (losing
    /// the items in it). There is no buffer here: nothing to cancel, and nothing is lost.
    pub fn cancel_join_thread(&self) {}
}

impl<T> Clone for Queue<T> {
    /// Another handle to the same queue (for another thread; a process gets one as an argument).
    fn clone(&self) -> Self {
        Queue { inner: self.inner.clone() }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("item", &std::any::type_name::<T>())
            .field("maxsize", &self.maxsize())
            .field("qsize", &self.qsize())
            .finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(Queue { inner: Inner::deserialize(deserializer, Kind::Queue)? })
    }
}

/// A [`Queue`] whose consumers report each item done ([`task_done`](Self::task_done)), so that
/// producers can wait until every item put has been handled ([`join`](Self::join)).
///
/// Everything of [`Queue`] is available on it (through `Deref`).
///
/// # Examples
///
/// ```
/// use multiproc::{JoinableQueue, Process};
///
/// fn consume(queue: JoinableQueue<u32>) {
///     while let Ok(n) = queue.get() {
///         assert!(n < 10);
///         queue.task_done().unwrap();
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let queue = JoinableQueue::new()?;
/// let mut consumer = Process::new(consume, (queue.clone(),)).with_daemon(true);
/// consumer.start()?;
/// for n in 0..10 {
///     queue.put(n)?;
/// }
/// queue.join()?; // every item was taken and marked done
/// # Ok(())
/// # }
/// ```
#[doc(alias = "multiprocessing.JoinableQueue")]
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded queue (Python: `JoinableQueue()`), see [`Queue::new`].
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    #[doc(alias = "JoinableQueue")]
    pub fn new() -> Result<Self> {
        Self::with_maxsize(0)
    }

    /// A queue of at most `maxsize` items, 0 for no limit (Python: `JoinableQueue(maxsize)`), see
    /// [`Queue::with_maxsize`].
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        Ok(JoinableQueue { queue: Queue::with_kind(Kind::Joinable, maxsize)? })
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken from the queue as handled (Python: `task_done()`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if called more times than items were taken (Python:
    /// `ValueError`).
    pub fn task_done(&self) -> Result<()> {
        self.queue.inner.core.task_done()
    }

    /// Waits until every item put has been taken and marked done with
    /// [`task_done`](Self::task_done).
    ///
    /// A consumer killed between its `get` and its `task_done` never marks its item done: use
    /// [`join_timeout`](Self::join_timeout) where that can happen.
    ///
    /// # Errors
    ///
    /// None today (the `Result` leaves room for a queue that can tell its consumers are gone).
    pub fn join(&self) -> Result<()> {
        self.queue.inner.core.join(Deadline::NONE);
        Ok(())
    }

    /// [`join`](Self::join), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if items were still unfinished when `timeout` passed.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        let deadline = Deadline::after(Some(timeout));
        match self.queue.inner.core.join(deadline) {
            true => Ok(()),
            false => Err(deadline.timeout_error()),
        }
    }

    /// Closes this handle (see [`Queue::close`]).
    pub fn close(self) {}
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { queue: self.queue.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("item", &std::any::type_name::<T>())
            .field("maxsize", &self.maxsize())
            .field("qsize", &self.qsize())
            .field("unfinished", &self.queue.inner.core.unfinished())
            .finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(JoinableQueue { queue: Queue { inner: Inner::deserialize(deserializer, Kind::Joinable)? } })
    }
}

/// An unbounded first-in, first-out queue with the smallest API: [`put`](Self::put),
/// [`get`](Self::get), [`empty`](Self::empty), [`close`](Self::close) (Python's `SimpleQueue`).
/// Same machinery as [`Queue`] (and no `Default`, for the same reason).
///
/// # Examples
///
/// ```
/// use multiproc::{Process, SimpleQueue};
///
/// fn greet(queue: SimpleQueue<String>, name: String) {
///     queue.put(format!("hello, {name}")).unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let queue = SimpleQueue::new()?;
/// let mut child = Process::new(greet, (queue.clone(), "parent".to_string()));
/// child.start()?;
/// assert_eq!(queue.get()?, "hello, parent");
/// child.join()?;
/// assert!(queue.empty());
/// # Ok(())
/// # }
/// ```
#[doc(alias = "multiprocessing.SimpleQueue")]
pub struct SimpleQueue<T> {
    inner: Inner<T>,
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue (Python: `SimpleQueue()`).
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    #[doc(alias = "SimpleQueue")]
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue { inner: Inner::create(Kind::Simple, 0, DEFAULT_CAPACITY)? })
    }

    /// Puts `item`, without waiting (except for an item holding descriptors, see [`Queue::put`]).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, item: impl Borrow<T>) -> Result<()> {
        self.inner.put(item.borrow(), Deadline::NONE)
    }

    /// Takes the oldest item, waiting as long as the queue is empty.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.inner.get(Deadline::NONE)
    }
}

impl<T> SimpleQueue<T> {
    /// Whether the queue holds no item now.
    pub fn empty(&self) -> bool {
        self.inner.core.len() == 0
    }

    /// Closes this handle (see [`Queue::close`]).
    pub fn close(self) {}
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue { inner: self.inner.clone() }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue").field("item", &std::any::type_name::<T>()).field("empty", &self.empty()).finish()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(SimpleQueue { inner: Inner::deserialize(deserializer, Kind::Simple)? })
    }
}
