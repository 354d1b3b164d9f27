//! The crate's error type.
//!
//! One enum, [`Error`], with a variant per kind of failure. Every message says what went wrong and,
//! where the caller can do something about it, what to do.

use std::io;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `multiproc`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What the crate was doing.
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A value could not be encoded or decoded for the trip to another process.
    #[error("could not {action} a value for another process: {detail}")]
    Codec {
        /// `"encode"` or `"decode"`.
        action: &'static str,
        /// What the codec reported.
        detail: String,
    },

    /// The operation does not fit the object's current state (CPython raises `ValueError` or
    /// `AssertionError` here), for example starting a process twice or joining one never started.
    #[error("{0}")]
    InvalidState(String),

    /// A daemon process tried to start a child (CPython: "daemonic processes are not allowed to have
    /// children").
    #[error(
        "daemonic processes are not allowed to have children; start this process with daemon(false) if it must start others"
    )]
    DaemonCannotHaveChildren,

    /// The fork start method was asked for while the process runs several threads.
    #[error(
        "the fork start method is unsafe here: this process has {threads} threads, and a forked child \
         could deadlock on a lock another thread held; use the forkserver or spawn method, or \
         `Process::start_unchecked` if you know no other thread holds a lock the child needs"
    )]
    ForkWithThreads {
        /// How many threads the process had.
        threads: usize,
    },

    /// A child runs a different executable than its parent, so the target cannot be located in it.
    #[error(
        "the child process runs a different executable than its parent ({child} against {parent}); \
         parent and child must run the same binary: do not replace the executable while it runs"
    )]
    BinaryMismatch {
        /// The parent's executable, as device, inode, size and modification time.
        parent: String,
        /// The child's executable.
        child: String,
    },

    /// The start-up hook that lets a spawned child take over before `main` did not run.
    #[error(
        "multiproc's start-up hook did not run in this program, so a spawned child would run `main` \
         again; call `multiproc::bootstrap()` as the first line of `main`"
    )]
    StartupHookMissing,

    /// An unknown or unavailable start method was named.
    #[error("cannot find context for {0:?}: the start methods are \"forkserver\", \"fork\" and \"spawn\"")]
    UnknownStartMethod(String),

    /// `set_start_method` was called after the start method was fixed.
    #[error("context has already been set; pass force = true to change the start method")]
    ContextAlreadySet,

    /// A child could not be started because the fork server failed.
    #[error("the fork server failed: {0}")]
    ForkServer(String),

    /// A wait ran out of time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),

    /// The peer closed the connection and no message is left (CPython `EOFError`).
    #[error("end of file: the other end of the connection was closed")]
    Eof,

    /// The connection (or listener) was closed on this side (CPython `OSError('handle is closed')`).
    #[error("the {0} is closed")]
    Closed(&'static str),

    /// A message is larger than the limit that applies to it (CPython: `OSError('bad message length')`
    /// for `recv_bytes(maxlength)`).
    #[error(
        "bad message length: a message of {len} bytes exceeds the limit of {limit} bytes; raise it with \
         `Connection::set_max_message_size` if such messages are expected"
    )]
    MessageTooLarge {
        /// The message's size.
        len: u64,
        /// The limit.
        limit: u64,
    },

    /// The message did not fit the caller's buffer; it is handed over whole here (CPython
    /// `BufferTooShort`, whose `args[0]` is the message).
    #[error("the buffer of {capacity} bytes is too short for a message of {} bytes; the message is in this error", .message.len())]
    BufferTooShort {
        /// The room the buffer had.
        capacity: usize,
        /// The whole message.
        message: Vec<u8>,
    },

    /// The peer broke the connection protocol: a frame cut short, a malformed handshake message, a
    /// connection left unusable by an earlier error.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// A lock's previous owner died holding it (see
    /// [`AcquireError::OwnerDied`](crate::sync::AcquireError::OwnerDied), which this comes from
    /// through `?`; the lock was released again, and its next acquirer is told too).
    #[error("a lock's previous owner (thread {thread}) died holding it; the state it protects may be inconsistent")]
    OwnerDied {
        /// The kernel thread id of the owner that died (0 if unknown).
        thread: u32,
    },

    /// A lock or semaphore was held by someone else and the caller would not wait.
    #[error("would block: held by someone else")]
    WouldBlock,

    /// A barrier was broken (a timeout, `abort` or `reset`) while or before this party waited
    /// (CPython `BrokenBarrierError`).
    #[error("the barrier is broken (a party timed out, or it was aborted or reset); reset it to use it again")]
    BrokenBarrier,

    /// A queue was full: the caller would not wait, or its timeout passed (CPython `queue.Full`).
    /// Full means a bounded queue holding `maxsize` items, or an item holding descriptors that
    /// found the queue's side channel full (see [`Queue::put`](crate::Queue::put)).
    #[error(
        "the queue is full: it holds its maxsize items (or, for an item holding descriptors, the ~270 such items its \
         socket buffer holds); wait for a consumer (put without a timeout, or a longer one) or give the queue a \
         larger maxsize"
    )]
    Full,

    /// A queue was empty: the caller would not wait, or its timeout passed (CPython `queue.Empty`).
    #[error("the queue is empty; wait for a producer (get with a timeout, or without one)")]
    Empty,

    /// The authentication handshake failed: a wrong key on either side, or a peer that does not
    /// speak it (CPython `AuthenticationError`).
    #[error("authentication failed: {0}")]
    Authentication(String),

    /// A method called through a manager proxy failed in the manager's server; the server's message
    /// is here (CPython re-raises the server's exception as `RemoteError`-wrapped text).
    #[error("the manager's server reported an error: {0}")]
    Remote(String),

    /// A method called through a proxy of a CPython manager raised a Python exception (the server's
    /// `'#ERROR'` reply; CPython re-raises the exception itself): `exception` is its class
    /// (`"KeyError"`, `"queue.Empty"`, `"mymodule.MyError"`), `message` its arguments as Python's
    /// `str()` shows them.
    #[error("the Python manager's method raised {exception}: {message}")]
    PythonException {
        /// The exception's class: the bare name for built-ins, `module.Name` otherwise.
        exception: String,
        /// The exception's message (its single argument, or its argument tuple).
        message: String,
    },

    /// A manager server was asked to listen on an address other hosts can reach without an authkey,
    /// which would let anyone on the network call into it.
    #[error(
        "refusing to serve a manager on {0} without an authkey: anyone who can reach it could call into \
         the server; pass an authkey, or bind to a loopback address"
    )]
    UnprotectedAddress(String),

    /// A named shared memory segment could not be created, opened, mapped or removed (CPython
    /// `FileExistsError`, `FileNotFoundError`, `OSError`); `source.kind()` tells which
    /// (`AlreadyExists`, `NotFound`, ...).
    #[error("could not {action} shared memory {name:?}: {source}")]
    SharedMemory {
        /// What the crate was doing: `"create"`, `"attach to"`, `"map"`, `"unlink"`.
        action: &'static str,
        /// The segment's name (without the leading `/`).
        name: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// An index or byte range outside a shared object (CPython `IndexError('index out of range')`).
    #[error("index out of range: {index} in an object of length {len}")]
    IndexOutOfRange {
        /// The index asked for (negative indices count from the end, as in Python).
        index: i64,
        /// The object's length (items, or bytes for a segment).
        len: usize,
    },

    /// A `str` or `bytes` item does not fit the slot of a `ShareableList` (CPython
    /// `ValueError('bytes/str item exceeds available storage')`); the slot keeps its old value.
    #[error(
        "bytes/str item exceeds available storage: {needed} bytes into a slot of {available}; a ShareableList's slots keep the size they were created with"
    )]
    ItemTooLarge {
        /// The encoded item's size.
        needed: usize,
        /// The slot's size.
        available: usize,
    },

    /// `index` of a value that is not in the list (CPython `ValueError: x not in list`).
    #[error("{0} is not in the list")]
    NotInList(String),

    /// A pool task panicked or returned `Err`; the message is the panic's (with its location) or
    /// the error's `Display` (CPython re-raises the task's exception from `get()`). For an `Err`,
    /// `returned` names the error's type and, for a task returning
    /// [`Typed<E>`](crate::pool::Typed), carries the value: get it back with
    /// [`task_error`](Self::task_error) (CPython's `except ZeroDivisionError:`).
    #[error("a pool task failed: {message}")]
    TaskFailed {
        /// What the task reported.
        message: String,
        /// The error the task returned (`None` for a panic, or a failure of the pool's own).
        returned: Option<ReturnedError>,
    },

    /// The pool worker running a task died before it finished: killed by a signal, aborted,
    /// crashed, or it called `exit`. The worker was replaced and the pool's other tasks went on
    /// (CPython's `Pool` hangs forever here). Retry the task with `Options::retries` if it is
    /// idempotent, or find out what killed the worker.
    #[error("the pool worker (pid {pid}) running this task died: {how}; it was replaced")]
    WorkerDied {
        /// The worker's pid.
        pid: i32,
        /// How it ended, for example "killed by signal 9 (SIGKILL)" or "exited with code 3".
        how: String,
    },

    /// A pool task ran longer than its timeout; its worker was killed and replaced. Raise the
    /// timeout (`Options::timeout`, `PoolBuilder::task_timeout`) if the task is just slow.
    #[error("a pool task ran longer than its timeout of {0:?}; its worker was killed and replaced")]
    TaskTimedOut(std::time::Duration),

    /// The pool was terminated (explicitly or by being dropped) before this task finished; CPython
    /// leaves such results waiting forever.
    #[error("the pool was terminated before this task finished")]
    PoolTerminated,

    /// The task was cancelled before it started (`AsyncResult::cancel`, or an executor's
    /// `shutdown` with `cancel_futures`).
    #[error("the task was cancelled before it started")]
    Cancelled,

    /// The cluster node running a task was lost (killed, cut off from the broker or stalled past
    /// its lease) and the task had no retries left, so it was not run again: with no retries a
    /// task never starts twice. Give the call `Options::retries` if the task is idempotent.
    #[error(
        "the cluster node {node} running this task was lost (it held no lease for {lease:?}) and the task has no \
         retries left; it may have run in part. Give it retries (Options::retries) if it is idempotent"
    )]
    NodeLost {
        /// The lost node's name (host, pid and a random part).
        node: String,
        /// The pool's lease: how long a node may go without renewing before its tasks are lost.
        lease: std::time::Duration,
    },

    /// The broker of a cluster pool lost this task: it restarted without its data, it was
    /// unreachable for longer than the pool's broker timeout, or the task's entry vanished. A task
    /// with retries left is submitted again instead; this one had none.
    #[error("the broker lost this task ({reason}); it had no retries left, so it was not submitted again")]
    BrokerLost {
        /// What happened.
        reason: String,
    },

    /// No node serving the cluster pool runs this program's build: a node runs only tasks of
    /// the very same binary (they are named by code offsets).
    #[error(
        "no node of this build serves the pool: this program is build {ours}, the live nodes run {theirs}; \
         deploy the same binary to the nodes"
    )]
    BuildMismatch {
        /// This program's build fingerprint.
        ours: String,
        /// The builds the live nodes run.
        theirs: String,
    },

    /// A cluster pool's broker could not be reached or answered with an error.
    #[error("the cluster broker {action}: {detail}")]
    Broker {
        /// What the crate was doing, for example "could not be reached at redis://10.0.0.5:6379".
        action: String,
        /// What the client library reported.
        detail: String,
    },

    /// A byte string longer than the char array it is stored in (CPython
    /// `ValueError('byte string too long')`); the array keeps its old value.
    #[error("byte string too long: {needed} bytes into a char array of {available}; make the array larger")]
    StringTooLong {
        /// The string's length.
        needed: usize,
        /// The array's length.
        available: usize,
    },
}

/// The error a pool task returned: its type's name, and its value if the task returned
/// [`Typed<E>`](crate::pool::Typed) (see [`Error::task_error`]).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReturnedError {
    type_name: String,
    /// The value, encoded (postcard), for a `Typed` error.
    value: Option<Vec<u8>>,
}

impl ReturnedError {
    /// An error of type `E` known only by its message.
    pub(crate) fn untyped<E: ?Sized>() -> Self {
        ReturnedError { type_name: std::any::type_name::<E>().to_string(), value: None }
    }

    /// An error of type `E` with its value, if it encodes.
    pub(crate) fn typed<E: serde::Serialize>(error: &E) -> Self {
        ReturnedError { type_name: std::any::type_name::<E>().to_string(), value: postcard::to_stdvec(error).ok() }
    }

    /// The error's type, as [`std::any::type_name`] writes it (`my_crate::MathError`).
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// Whether the value travelled (the task returned [`Typed<E>`](crate::pool::Typed)).
    pub fn has_value(&self) -> bool {
        self.value.is_some()
    }

    /// The value, if it travelled and is an `E` (checked by the type's name: the task ran in a
    /// process of the same binary).
    pub fn value<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        if self.type_name != std::any::type_name::<E>() {
            return None;
        }
        postcard::from_bytes(self.value.as_deref()?).ok()
    }
}

impl std::fmt::Debug for ReturnedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReturnedError")
            .field("type_name", &self.type_name)
            .field("value_bytes", &self.value.as_ref().map(Vec::len))
            .finish()
    }
}

impl Error {
    /// A task failure with this message (a panic, or the pool's own reason).
    pub(crate) fn task_failed(message: impl Into<String>) -> Self {
        Error::TaskFailed { message: message.into(), returned: None }
    }

    /// The error value a pool task returned, if it failed with [`Typed<E>`](crate::pool::Typed)
    /// of this `E` (CPython's `except ZeroDivisionError:` around `get()`). `None` for any other
    /// error: a panic, a worker that died, an error of another type, or one returned without
    /// `Typed` (then only its message and [`type_name`](ReturnedError::type_name) travel).
    ///
    /// ```
    /// use multiproc::pool::{Pool, Typed};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// enum MathError { DivisionByZero }
    ///
    /// impl std::fmt::Display for MathError {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("division by zero")
    ///     }
    /// }
    ///
    /// fn divide(a: i64, b: i64) -> Result<i64, Typed<MathError>> {
    ///     if b == 0 {
    ///         return Err(MathError::DivisionByZero.into());
    ///     }
    ///     Ok(a / b)
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let pool = Pool::new(1)?;
    /// let error = pool.apply(divide, (1, 0)).unwrap_err();
    /// assert_eq!(error.task_error::<MathError>(), Some(MathError::DivisionByZero));
    /// assert_eq!(error.to_string(), "a pool task failed: division by zero");
    /// # Ok(())
    /// # }
    /// ```
    pub fn task_error<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        match self {
            Error::TaskFailed { returned: Some(returned), .. } => returned.value(),
            _ => None,
        }
    }

    /// Wraps an I/O error with what the crate was doing.
    pub(crate) fn io(context: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Io { context, source: source.into() }
    }
}

/// Lets `?` wrap a system-call error with a short context: `.context("create a pipe")?`.
pub(crate) trait IoContext<T> {
    fn context(self, context: &'static str) -> Result<T>;
}

impl<T, E: Into<io::Error>> IoContext<T> for std::result::Result<T, E> {
    fn context(self, context: &'static str) -> Result<T> {
        self.map_err(|e| Error::io(context, e))
    }
}
