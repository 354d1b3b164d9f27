//! Process pools (CPython `multiprocessing.Pool`), thread pools (`multiprocessing.pool.ThreadPool`)
//! and an executor in the manner of `concurrent.futures`.
//!
//! ```
//! use multiproc::pool::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> multiproc::Result<()> {
//! let pool = Pool::new(4)?;
//! let squares = pool.map(square, 0..100)?;
//! assert_eq!(squares[9], 81);
//! # Ok(())
//! # }
//! ```
//!
//! A task is a plain `fn` item or a closure that captures nothing, with serde arguments, exactly
//! like a [`Process`](crate::Process) target ([`Task`]). It returns a value, or a `Result`: an `Err`
//! (like a panic) fails the task, and [`AsyncResult::get`] returns [`Error::TaskFailed`] with its
//! message; a task returning `Result<T, Typed<E>>` gives the caller its `E` back
//! ([`Error::task_error`], CPython's `except ZeroDivisionError:`; see [`Typed`]). [`ThreadPool`]
//! has the same methods and takes capturing closures.
//!
//! # A pool that never hangs
//!
//! CPython's `Pool` waits forever for a task whose worker died (gh-66587), and its
//! `ProcessPoolExecutor` breaks as a whole. Here the parent always knows which task each worker
//! runs (see the `scheduler` and `protocol` modules), and watches every worker's pidfd:
//!
//! * a worker that dies in a task (killed, aborted, crashed, `exit`) fails exactly that task with
//!   [`Error::WorkerDied`], which says how it ended; a new worker takes its place and every other
//!   task completes. With [`Options::retries`] the task runs again instead. (Workers send the
//!   outcomes of tiny tasks in batches, within about a millisecond: tiny tasks a dying worker had
//!   finished but not yet reported run again on another worker; a task never runs again after a
//!   run that its worker's death cut short, unless retries allow it);
//! * a task over its timeout ([`PoolBuilder::task_timeout`], [`Options::timeout`]) is killed with
//!   its worker and fails with [`Error::TaskTimedOut`];
//! * a callback that panics is reported and ignored (CPython gh-83371 hangs);
//! * [`terminate`](Pool::terminate) kills the workers and fails every unfinished result with
//!   [`Error::PoolTerminated`] instead of leaving it waiting;
//! * results hold their pool: a result outliving the `Pool` handle still gets its value (see
//!   [`Pool`](Pool#results-hold-the-pool)).
//!
//! # Observability
//!
//! [`Pool::stats`] counts tasks done and failed and workers started and restarted. The scheduler
//! logs worker starts, ends and failures with `tracing` (debug level); each worker runs each chunk
//! of tasks in a `pool.chunk` span with its id (set up a subscriber in the workers with
//! [`PoolBuilder::initializer`] to collect them). With the `progress` feature,
//! `Options::progress` draws a bar with done/total, rate and time left for a map or imap.
//!
//! # Layout
//!
//! * `task`: what a task function is and how a worker is told which one to call;
//! * `protocol`: the messages between a pool and its workers, apart from their transport;
//! * `worker`: the worker process's loop;
//! * `scheduler`: the seam between the pool's front and what runs its chunks (`Runner`);
//! * `local`: the runner of worker processes on this machine: its scheduling policy
//!   (`local::scheduler`, the parent's thread that owns the workers) apart from its transport
//!   (`local::transport`);
//! * `cluster` (feature `cluster`): the runner of pools across machines;
//! * `result`, `collect`: [`AsyncResult`] and where a job's outcomes go ([`Imap`]);
//! * `feed`: the lazy input of `imap` (a feeder thread with a bounded read-ahead), for every pool;
//! * `chunking`: CPython's default chunk size;
//! * `thread_pool`, `executor`, `progress`.

// Every public function that returns a `Result` says when it fails (issue 15.9).
#![deny(clippy::missing_errors_doc)]

mod chunking;
#[cfg(feature = "cluster")]
pub mod cluster;
mod collect;
mod executor;
mod feed;
mod local;
mod progress;
mod protocol;
mod result;
mod scheduler;
pub(crate) mod task;
mod thread_pool;
pub(crate) mod worker;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::collect::Imap;
use self::collect::{Collect, One, Outcomes, Stream};
pub use self::executor::Executor;
use self::local::WorkerConfig;
use self::progress::Progress;
#[doc(hidden)]
pub use self::protocol::fuzz_messages as fuzz_pool_messages;
pub use self::result::AsyncResult;
use self::scheduler::{Chunks, Decoding, RunState, Shared};
pub use self::task::{Task, TaskReturn, TaskValue, Typed};
pub use self::thread_pool::ThreadPool;
use crate::context::{Context, StartMethod};
use crate::error::{Error, Result};
use crate::process::Target;
use crate::process::target::Job;
use crate::reduction;

/// A pool of worker processes (CPython `multiprocessing.Pool`). See the [module](self) docs.
///
/// # Examples
///
/// ```
/// use multiproc::pool::{Options, Pool};
///
/// fn square(x: u64) -> u64 { x * x }
/// fn add(a: u64, b: u64) -> u64 { a + b }
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = Pool::new(4)?; // or Pool::with_cpu_count(), CPython's Pool()
/// assert_eq!(pool.apply(add, (2, 3))?, 5);
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, [3, 7]);
/// let pending = pool.map_async_with(square, 0..1000, Options::new().chunksize(50))?;
/// for value in pool.imap(square, 0..3)? {
///     println!("{}", value?); // as each finishes, in order
/// }
/// assert_eq!(pending.get()?.len(), 1000);
/// println!("{pool}"); // <multiprocessing.pool.Pool state=RUN pool_size=4>
/// pool.close();
/// pool.join()?;
/// # Ok(())
/// # }
/// ```
///
/// # Results hold the pool
///
/// Every result ([`AsyncResult`], [`Imap`], a map's result) keeps its pool running: the workers
/// live until the `Pool` handle *and* every result that came from it are gone, then the pool is
/// terminated. So a function can return an iterator or a future and drop the pool, as in Python,
/// where the iterator keeps the pool alive:
///
/// ```
/// use multiproc::pool::{Imap, Pool};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// fn squares() -> multiproc::Result<Imap<u64>> {
///     let pool = Pool::new(2)?;
///     pool.imap(square, 0..20) // the pool handle is dropped here; the iterator keeps it running
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let values: Vec<u64> = squares()?.collect::<multiproc::Result<_>>()?;
/// assert_eq!(values.len(), 20);
/// # Ok(())
/// # }
/// ```
///
/// This is the choice a Rust user expects of an owned value: a result is `'static` (a future can
/// be spawned on any runtime, an iterator returned from a function), and it never fails only
/// because a handle went out of scope first. A lifetime tying results to the pool would make that
/// a compile error instead of a working program. [`terminate`](Self::terminate) still ends the
/// pool at once and fails every unfinished result with [`Error::PoolTerminated`]; dropping the last
/// handle or result terminates it too (CPython's `with Pool() as p:`), and [`close`](Self::close)
/// and [`join`](Self::join) let queued work finish first.
#[doc(alias = "multiprocessing.Pool")]
pub struct Pool {
    core: Arc<Core>,
}

/// What a pool's handle and its results share: dropped when the last of them goes, which
/// terminates the pool.
struct Core {
    shared: Arc<Shared>,
    /// Refuses new calls once closed, and closes the scheduler when the imaps' feeds are done.
    gate: Arc<feed::Gate>,
    scheduler: Mutex<Option<JoinHandle<()>>>,
    processes: usize,
    timeout: Option<Duration>,
    retries: u32,
    /// The broker client of a cluster pool (`None` for a local pool).
    #[cfg(feature = "cluster")]
    cluster: Option<cluster::ClusterHandle>,
}

impl Core {
    /// What a result holds to keep this pool running.
    fn keep_alive(self: &Arc<Self>) -> result::KeepAlive {
        Arc::clone(self) as result::KeepAlive
    }
}

/// Configures a [`Pool`] (CPython `Pool(processes, initializer, initargs, maxtasksperchild,
/// context)`); every setting is optional, as in CPython.
#[must_use = "a builder does nothing until built"]
#[derive(Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    method: Option<StartMethod>,
    max_tasks: Option<u64>,
    initializer: Option<local::Initializer>,
    timeout: Option<Duration>,
    retries: u32,
    #[cfg(feature = "cluster")]
    cluster: Option<cluster::ClusterSettings>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("method", &self.method)
            .field("max_tasks_per_child", &self.max_tasks)
            .field("initializer", &self.initializer.is_some())
            .field("task_timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of workers (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = Some(processes);
        self
    }

    /// Runs `initializer(args...)` in each worker when it starts (CPython `initializer`,
    /// `initargs`). An initializer that fails (panics, returns `Err` or a non-zero code) breaks the
    /// pool: its tasks fail with a message saying so, instead of workers being restarted forever.
    #[doc(alias = "initargs")]
    pub fn initializer<F, Args>(mut self, initializer: F, args: Args) -> Self
    where
        F: Target<Args> + Sync,
        Args: Serialize + Send + Sync + 'static,
    {
        self.initializer = Some(Box::new(move || Job::from_fn(initializer, &args)));
        self
    }

    /// Replaces each worker after it has run `tasks` tasks (chunks), to release resources a task
    /// leaks (CPython `maxtasksperchild`; default: never).
    #[doc(alias = "maxtasksperchild")]
    pub fn max_tasks_per_child(mut self, tasks: u64) -> Self {
        self.max_tasks = Some(tasks);
        self
    }

    /// The start method of the workers (default: the default context's). The fork method is
    /// refused: the pool starts replacement workers from its scheduler thread.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// The start method of `context` (CPython `Pool(context=...)`, `ctx.Pool()`).
    pub fn context(self, context: &Context) -> Self {
        self.start_method(context.start_method())
    }

    /// The default time limit of each task (per call: [`Options::timeout`]); a task over it is
    /// killed with its worker and fails with [`Error::TaskTimedOut`]. Default: none.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The default number of times a task whose worker died is run again before it fails with
    /// [`Error::WorkerDied`] (per call: [`Options::retries`]). Default 0: only idempotent tasks
    /// should be retried.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] for zero processes, `max_tasks_per_child(0)` or the fork method
    /// (CPython raises `ValueError`); any error starting a worker, after the workers already
    /// started are killed and reaped.
    #[cfg_attr(not(feature = "cluster"), allow(unused_mut))]
    pub fn build(mut self) -> Result<Pool> {
        #[cfg(feature = "cluster")]
        if let Some(settings) = self.cluster.take() {
            return self.build_cluster(settings);
        }
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(Error::InvalidState("Number of processes must be at least 1".into()));
        }
        if self.max_tasks == Some(0) {
            return Err(Error::InvalidState("maxtasksperchild must be a positive number of tasks".into()));
        }
        let method = self.method.unwrap_or_else(crate::get_start_method);
        if method == StartMethod::Fork {
            return Err(Error::InvalidState(
                "a pool cannot use the fork start method: it starts replacement workers from a helper thread; \
                 use forkserver (the default) or spawn"
                    .into(),
            ));
        }
        let config = WorkerConfig { processes, method, max_tasks: self.max_tasks, initializer: self.initializer };
        let (shared, scheduler) = local::start(config)?;
        let thread = std::thread::Builder::new()
            .name("multiproc-pool".into())
            .spawn(move || scheduler.run())
            .map_err(|e| Error::io("start the pool's scheduler thread", e))?;
        let core = Core {
            shared,
            gate: Arc::default(),
            scheduler: Mutex::new(Some(thread)),
            processes,
            timeout: self.timeout,
            retries: self.retries,
            #[cfg(feature = "cluster")]
            cluster: None,
        };
        Ok(Pool { core: Arc::new(core) })
    }
}

/// The prefix of a pool worker's name, as CPython's: `ForkServerPoolWorker-3` (the number is the
/// process's identity, counted with every other child of this process).
pub(crate) fn worker_name_prefix(method: StartMethod) -> &'static str {
    match method {
        StartMethod::ForkServer => "ForkServerPoolWorker",
        StartMethod::Spawn => "SpawnPoolWorker",
        StartMethod::Fork => "ForkPoolWorker",
    }
}

type Callback<T> = Box<dyn FnOnce(&T) + Send>;
type ErrorCallback = Box<dyn FnOnce(&Error) + Send>;

/// Per-call options: chunk size, timeout, retries, callbacks, progress bar. `T` is what the call
/// delivers (`Vec<T>` for a map).
///
/// ```
/// use std::time::Duration;
/// use multiproc::pool::{Options, Pool};
///
/// fn slow(x: u64) -> u64 { std::thread::sleep(Duration::from_millis(x)); x }
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = Pool::new(2)?;
/// let options = Options::new()
///     .timeout(Duration::from_secs(1))
///     .callback(|v: &u64| println!("done: {v}"))
///     .error_callback(|e| eprintln!("failed: {e}"));
/// let result = pool.apply_async_with(slow, (10,), options)?;
/// assert_eq!(result.get()?, 10);
/// # Ok(())
/// # }
/// ```
#[must_use = "options do nothing until passed to a call"]
pub struct Options<T> {
    chunksize: Option<usize>,
    timeout: Option<Duration>,
    retries: Option<u32>,
    callback: Option<Callback<T>>,
    error_callback: Option<ErrorCallback>,
    progress: bool,
    buffersize: Option<usize>,
}

impl<T> Default for Options<T> {
    fn default() -> Self {
        Options {
            chunksize: None,
            timeout: None,
            retries: None,
            callback: None,
            error_callback: None,
            progress: false,
            buffersize: None,
        }
    }
}

impl<T> std::fmt::Debug for Options<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("chunksize", &self.chunksize)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("callback", &self.callback.is_some())
            .field("error_callback", &self.error_callback.is_some())
            .field("progress", &self.progress)
            .field("buffersize", &self.buffersize)
            .finish()
    }
}

impl<T> Options<T> {
    /// No options: the pool's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many inputs travel to a worker as one task (CPython `chunksize`; default for `map`:
    /// CPython's `len / (4 * processes)` rounded up, for `imap`: 1).
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize.max(1));
        self
    }

    /// How many chunks an `imap` reads ahead of its reader at most (CPython 3.14's
    /// `Executor.map(buffersize=)`). Default: 512 per worker (at least 1024), and about 64 MiB of
    /// encoded arguments: enough to keep every worker busy with tiny tasks, while an endless
    /// input stays bounded in memory. The `map` family reads its whole input first, as CPython's.
    pub fn buffersize(mut self, chunks: usize) -> Self {
        self.buffersize = Some(chunks.max(1));
        self
    }

    /// The time limit of each task (chunk) of this call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many times a task of this call is run again when its worker dies.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Called with the value when the call succeeds, in the pool's scheduler thread (CPython
    /// `callback`); it should be quick. A panic in it is reported and ignored.
    pub fn callback(mut self, callback: impl FnOnce(&T) + Send + 'static) -> Self {
        self.callback = Some(Box::new(callback));
        self
    }

    /// Called with the error when the call fails (CPython `error_callback`).
    pub fn error_callback(mut self, callback: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.error_callback = Some(Box::new(callback));
        self
    }

    /// Draws a progress bar (done/total, rate, time left) on standard error for a `map` or
    /// `imap` (the `progress` feature).
    #[cfg(feature = "progress")]
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }
}

/// Counters of a pool's work (see [`Pool::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks (single calls) that succeeded.
    pub tasks_done: u64,
    /// Tasks that failed: returned `Err`, panicked, timed out, died with their worker, or were
    /// terminated.
    pub tasks_failed: u64,
    /// Workers replaced because they died or were killed (not counting `maxtasksperchild`).
    pub workers_restarted: u64,
    /// Workers started in all.
    pub workers_started: u64,
}

impl Pool {
    /// A pool of `processes` workers with the default start method.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A pool of [`cpu_count`](crate::cpu_count) workers (CPython `Pool()`).
    ///
    /// ```
    /// let pool = multiproc::Pool::with_cpu_count()?;
    /// assert_eq!(pool.processes(), multiproc::cpu_count());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    #[doc(alias = "default")]
    pub fn with_cpu_count() -> Result<Pool> {
        Pool::builder().build()
    }

    /// A builder for the other settings (the same as [`PoolBuilder::default`]).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.core.processes
    }

    /// The counters: tasks done and failed, workers restarted and started.
    pub fn stats(&self) -> PoolStats {
        let stats = &self.core.shared.stats;
        PoolStats {
            tasks_done: stats.done.load(Ordering::Relaxed),
            tasks_failed: stats.failed.load(Ordering::Relaxed),
            workers_restarted: stats.restarted.load(Ordering::Relaxed),
            workers_started: stats.started.load(Ordering::Relaxed),
        }
    }

    /// Calls `f(args...)` in a worker and waits for its value (CPython `apply`).
    ///
    /// # Errors
    ///
    /// The task's failure ([`Error::TaskFailed`], [`Error::WorkerDied`], [`Error::TaskTimedOut`]);
    /// [`Error::InvalidState`] if the pool is closed; [`Error::Codec`] if the arguments do not
    /// encode.
    pub fn apply<F: Task<Args>, Args: Serialize>(&self, f: F, args: Args) -> Result<F::Output> {
        // A cluster pool brings a synchronous call's result to this thread in person (no
        // collector thread to wake on the way back).
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.core.cluster {
            return cluster.in_person(|| self.apply_async(f, args))?.get();
        }
        self.apply_async(f, args)?.get()
    }

    /// Calls `f(args...)` in a worker; the value comes later (CPython `apply_async`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the pool is closed or terminated.
    pub fn apply_async<F: Task<Args>, Args: Serialize>(&self, f: F, args: Args) -> Result<AsyncResult<F::Output>> {
        self.apply_async_with(f, args, Options::new())
    }

    /// [`apply_async`](Self::apply_async) with callbacks, a timeout or retries.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async).
    pub fn apply_async_with<F: Task<Args>, Args: Serialize>(
        &self,
        _f: F,
        args: Args,
        options: Options<F::Output>,
    ) -> Result<AsyncResult<F::Output>> {
        let (result, promise) = result::promise(Some(self.core.keep_alive()));
        promise.set_callbacks(options.callback, options.error_callback);
        let outcomes: Arc<dyn Outcomes<F::Output>> = Arc::new(One { promise });
        let call = CallSettings::new(self, options.timeout, options.retries, 1);
        self.submit::<F::Output, Args>(task::entry_of::<F, Args>(), std::slice::from_ref(&args), call, outcomes)?;
        Ok(result)
    }

    /// Applies `f` to every item, in the workers, and returns the values in order (CPython `map`).
    ///
    /// # Errors
    ///
    /// The first failed task's error, once every task has finished (CPython bpo-23992); as
    /// [`apply`](Self::apply).
    pub fn map<F: Task<(A,)>, A: Serialize>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<F::Output>> {
        self.map_async(f, items)?.get()
    }

    /// [`map`](Self::map) without waiting (CPython `map_async`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the pool is closed or terminated.
    pub fn map_async<F: Task<(A,)>, A: Serialize>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<F::Output>>> {
        self.map_async_with(f, items, Options::new())
    }

    /// [`map_async`](Self::map_async) with a chunk size, callbacks, a timeout, retries or a
    /// progress bar.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async).
    pub fn map_async_with<F: Task<(A,)>, A: Serialize>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = A>,
        options: Options<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>> {
        let items: Vec<A> = items.into_iter().collect();
        self.collect_job(task::entry_of::<F, (A,)>(), &items, options)
    }

    /// Like [`map`](Self::map) for a function of several arguments: each item is a tuple of them
    /// (CPython `starmap`).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap<F: Task<Args>, Args: Serialize>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<Vec<F::Output>> {
        self.starmap_async(f, items)?.get()
    }

    /// [`starmap`](Self::starmap) without waiting (CPython `starmap_async`).
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async).
    pub fn starmap_async<F: Task<Args>, Args: Serialize>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<AsyncResult<Vec<F::Output>>> {
        self.starmap_async_with(f, items, Options::new())
    }

    /// [`starmap_async`](Self::starmap_async) with options.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async).
    pub fn starmap_async_with<F: Task<Args>, Args: Serialize>(
        &self,
        _f: F,
        items: impl IntoIterator<Item = Args>,
        options: Options<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>> {
        let items: Vec<Args> = items.into_iter().collect();
        self.collect_job(task::entry_of::<F, Args>(), &items, options)
    }

    /// Applies `f` to every item; the values come back in order as they finish (CPython `imap`,
    /// chunk size 1 by default).
    ///
    /// Lazy, as CPython's: it returns at once, and a feeder thread reads the input in the
    /// background and hands each chunk to the workers as soon as it is read, so an endless or
    /// slow iterator (`0..`, lines of a socket) yields its first value as soon as that is
    /// computed. Unlike CPython's, the feeder stays a bounded number of chunks ahead of the
    /// values you have taken ([`Options::buffersize`]), so an endless input takes bounded memory.
    /// The input runs on that thread, hence `Send + 'static` (iterate owned items: `vec`, not
    /// `&vec`; [`map`](Self::map) takes borrowed input). Dropping the [`Imap`] stops reading;
    /// [`close`](Self::close) lets every started imap read its input to the end and run it all
    /// (as CPython does), and [`join`](Self::join) waits for that.
    ///
    /// ```
    /// # use multiproc::pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// # fn main() -> multiproc::Result<()> {
    /// let pool = Pool::new(2)?;
    /// let first = pool.imap(square, 1..)?.next().transpose()?; // an endless input
    /// assert_eq!(first, Some(1));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the pool is closed or terminated; [`Error::Io`] if the feeder
    /// thread cannot start. A task's failure is yielded in its place; a panic of the input
    /// iterator is yielded as [`Error::TaskFailed`] and ends the iteration.
    pub fn imap<F, A, I>(&self, f: F, items: I) -> Result<Imap<F::Output>>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.imap_with(f, items, Options::new())
    }

    /// [`imap`](Self::imap) with a chunk size, a timeout, retries or a progress bar (callbacks
    /// are not used).
    ///
    /// # Errors
    ///
    /// As [`imap`](Self::imap).
    pub fn imap_with<F, A, I>(&self, _f: F, items: I, options: Options<F::Output>) -> Result<Imap<F::Output>>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream_job(task::entry_of::<F, (A,)>(), items.into_iter(), options, true)
    }

    /// Like [`imap`](Self::imap), but the values come in the order they finish (CPython
    /// `imap_unordered`).
    ///
    /// # Errors
    ///
    /// As [`imap`](Self::imap).
    pub fn imap_unordered<F, A, I>(&self, f: F, items: I) -> Result<Imap<F::Output>>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.imap_unordered_with(f, items, Options::new())
    }

    /// [`imap_unordered`](Self::imap_unordered) with options.
    ///
    /// # Errors
    ///
    /// As [`imap`](Self::imap).
    pub fn imap_unordered_with<F, A, I>(&self, _f: F, items: I, options: Options<F::Output>) -> Result<Imap<F::Output>>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream_job(task::entry_of::<F, (A,)>(), items.into_iter(), options, false)
    }

    /// No more tasks; the workers exit once the queued ones are done (CPython `close`). An
    /// [`imap`](Self::imap) already started still reads its input to the end and runs it all.
    pub fn close(&self) {
        let shared = Arc::clone(&self.core.shared);
        self.core.gate.close(move || shared.set_state(RunState::Closed));
    }

    /// Kills the workers now; every unfinished result fails with [`Error::PoolTerminated`]
    /// (CPython `terminate`), even those that hold the pool. Returns at once, where CPython's
    /// waits: [`join`](Self::join) waits until the workers are gone and reaped.
    pub fn terminate(&self) {
        self.core.shared.set_state(RunState::Terminated);
    }

    /// Waits for the workers to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) (CPython `join`).
    ///
    /// After a close it returns once every result and callback was delivered and every worker
    /// exited and was reaped. The scheduler's thread tells all workers to stop at once and ends;
    /// this thread then waits for the workers' ends itself (no hand-over through the scheduler on
    /// the way back). What the workers held in this process (their connections) is released when
    /// the pool is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] while the pool still runs (CPython raises `ValueError`).
    pub fn join(&self) -> Result<()> {
        if self.core.shared.state() == RunState::Running && !self.core.gate.closing() {
            return Err(Error::InvalidState("Pool is still running: call close() or terminate() before join()".into()));
        }
        let thread = self.core.scheduler.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = &thread
            && thread.thread().id() == std::thread::current().id()
        {
            return Err(Error::InvalidState("a pool callback cannot join its own pool".into()));
        }
        let panicked = thread.is_some_and(|thread| thread.join().is_err());
        // The scheduler ends as soon as it told the workers to stop; they are waited for here.
        self.core.shared.reap_stopped();
        if panicked {
            return Err(Error::InvalidState("the pool's scheduler thread panicked".into()));
        }
        Ok(())
    }

    /// Cancels every task not yet handed to a worker (their results fail with
    /// [`Error::Cancelled`]).
    pub fn cancel_queued(&self) {
        self.core.shared.cancel_queued();
    }

    /// Closes the pool and lets its scheduler finish the queue in the background, without waiting.
    pub(crate) fn close_detached(self) {
        // Before the close: the scheduler must know, when it ends, that nobody will reap for it.
        self.core.shared.detach();
        self.close();
        // Without its thread handle, dropping the core neither terminates nor waits.
        let thread = self.core.scheduler.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(thread);
    }

    fn collect_job<T, I>(
        &self,
        entry: task::ChunkEntry,
        items: &[I],
        options: Options<Vec<T>>,
    ) -> Result<AsyncResult<Vec<T>>>
    where
        T: DeserializeOwned + Send + 'static,
        I: Serialize,
    {
        let chunksize =
            options.chunksize.unwrap_or_else(|| chunking::default_chunksize(items.len(), self.core.processes));
        let (result, promise) = result::promise(Some(self.core.keep_alive()));
        promise.set_callbacks(options.callback, options.error_callback);
        let progress = Progress::new(items.len(), options.progress);
        let outcomes: Arc<dyn Outcomes<T>> = Arc::new(Collect::new(promise, items.len(), chunksize, progress));
        let call = CallSettings::new(self, options.timeout, options.retries, chunksize);
        self.submit::<T, I>(entry, items, call, outcomes)?;
        Ok(result)
    }

    fn stream_job<T, I, It>(
        &self,
        entry: task::ChunkEntry,
        items: It,
        options: Options<T>,
        ordered: bool,
    ) -> Result<Imap<T>>
    where
        T: DeserializeOwned + Send + 'static,
        I: Serialize + 'static,
        It: Iterator<Item = I> + Send + 'static,
    {
        let chunksize = options.chunksize.unwrap_or(1);
        let known_len = match items.size_hint() {
            (lower, Some(upper)) if lower == upper => Some(lower),
            _ => None,
        };
        let stream = Arc::new(Stream::new(ordered, known_len, options.progress));
        let outcomes: Arc<dyn Outcomes<T>> = stream.clone();
        let call = CallSettings::new(self, options.timeout, options.retries, chunksize);
        let sink: Arc<dyn scheduler::Sink> = Arc::new(Decoding::new(outcomes));
        let shared = Arc::clone(&self.core.shared);
        let entry = task::entry_offset(entry);
        let submit: feed::Submit<I> = Box::new(move |first, batch: Vec<Vec<I>>| {
            let (runs, unencodable) =
                call.chunks(&shared.spare_args, &sink, first, batch.iter().map(Vec::as_slice), entry);
            let bytes = runs.iter().map(|run| run.args.len()).sum();
            for run in runs {
                shared.submit_chunks(run).map_err(|e| match shared.state() {
                    // Read after the pool was terminated: fails as the chunks read before it.
                    RunState::Terminated => Error::PoolTerminated,
                    _ => e,
                })?;
            }
            for (index, e) in unencodable {
                sink.complete(index, Err(e));
            }
            Ok(bytes)
        });
        let read_ahead = feed::ReadAhead::new(self.core.processes, options.buffersize);
        feed::start(&self.core.gate, items, chunksize, read_ahead, Arc::clone(&stream), submit)?;
        Ok(Imap::new(stream, Some(self.core.keep_alive())))
    }

    /// Cuts `items` into chunks and queues them; a chunk whose arguments do not encode fails at
    /// once with the encoding error.
    fn submit<T, I>(
        &self,
        entry: task::ChunkEntry,
        items: &[I],
        call: CallSettings,
        outcomes: Arc<dyn Outcomes<T>>,
    ) -> Result<()>
    where
        T: DeserializeOwned + Send + 'static,
        I: Serialize,
    {
        self.core.gate.check_open()?;
        let sink: Arc<dyn scheduler::Sink> = Arc::new(Decoding::new(outcomes));
        let entry = task::entry_offset(entry);
        let ranges = chunking::chunk_ranges(items.len(), call.chunksize);
        let (runs, unencodable) =
            call.chunks(&self.core.shared.spare_args, &sink, 0, ranges.map(|range| &items[range]), entry);
        for run in runs {
            self.core.shared.submit_chunks(run)?;
        }
        for (index, e) in unencodable {
            sink.complete(index, Err(e));
        }
        Ok(())
    }
}

/// The settings one call's chunks carry.
#[derive(Clone, Copy)]
struct CallSettings {
    timeout: Option<Duration>,
    retries: u32,
    chunksize: usize,
}

impl CallSettings {
    fn new(pool: &Pool, timeout: Option<Duration>, retries: Option<u32>, chunksize: usize) -> Self {
        CallSettings {
            timeout: timeout.or(pool.core.timeout),
            retries: retries.unwrap_or(pool.core.retries),
            chunksize: chunksize.max(1),
        }
    }

    /// Chunks `first..` of a call for the function at `entry`, each the items of one slice of
    /// `chunks`, encoded back to back into runs of consecutive chunks. A chunk whose items do not
    /// encode is left out, with its index and error (the chunks around it make separate runs).
    fn chunks<'a, I: Serialize + 'a>(
        &self,
        spare: &Arc<scheduler::SpareArgs>,
        sink: &Arc<dyn scheduler::Sink>,
        first: usize,
        chunks: impl ExactSizeIterator<Item = &'a [I]>,
        entry: i64,
    ) -> (Vec<Chunks>, Vec<(usize, Error)>) {
        let total = chunks.len();
        let new_run = |first: usize| Chunks {
            sink: Arc::clone(sink),
            first,
            tasks: self.chunksize,
            last_tasks: self.chunksize,
            entry,
            // A large call takes the pool's spare buffer (mapped already) when no other call
            // holds it; a small one room for its first chunk (an `apply`'s arguments) without
            // growing step by step. The first chunk's size then reserves room for the others.
            args: match total.saturating_mul(self.chunksize) >= scheduler::SPARE_ARGS_FROM {
                true => spare.take(),
                false => Vec::with_capacity(64).into(),
            },
            ends: Vec::with_capacity(total),
            fds: Vec::new(),
            fd_ends: Vec::new(),
            timeout: self.timeout,
            retries: self.retries,
        };
        let (mut runs, mut unencodable) = (Vec::new(), Vec::new());
        let mut run = new_run(first);
        for (index, items) in (first..).zip(chunks) {
            match reduction::encode_packed(items, &mut run.args) {
                Ok(fds) => {
                    if run.ends.is_empty() {
                        // The first chunk's size sizes the buffer for all of them.
                        let room = run.args.len() * (total - (index - first));
                        run.args.reserve(room);
                        run.tasks = items.len();
                    }
                    run.last_tasks = items.len();
                    // `fd_ends` has one entry per chunk once any chunk holds a descriptor.
                    let holds = !fds.is_empty() || !run.fds.is_empty();
                    if holds {
                        // The chunks before the first that holds one hold none.
                        run.fd_ends.resize(run.ends.len(), 0);
                    }
                    run.ends.push(run.args.len());
                    run.fds.extend(fds);
                    if holds {
                        run.fd_ends.push(run.fds.len());
                    }
                }
                Err(e) => {
                    unencodable.push((index, e));
                    let done = std::mem::replace(&mut run, new_run(index + 1));
                    if !done.ends.is_empty() {
                        runs.push(done);
                    }
                }
            }
        }
        if !run.ends.is_empty() {
            runs.push(run);
        }
        (runs, unencodable)
    }
}

impl Drop for Core {
    /// Once the pool's handle and every result holding the pool are gone: terminates the pool and
    /// waits for its workers, unless it was joined already (or detached by an executor's
    /// `shutdown(wait = false)`, which lets the queue finish in the background).
    fn drop(&mut self) {
        let thread = self.scheduler.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            self.shared.set_state(RunState::Terminated);
            // The last handle can be dropped by the scheduler itself (a callback holding it):
            // it cannot wait for itself, and it ends on its own after the termination.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
                self.shared.reap_stopped();
            }
        }
    }
}

/// CPython's `repr`: `<multiprocessing.pool.Pool state=RUN pool_size=4>` (`RUN`, `CLOSE` or
/// `TERMINATE`).
impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.core.shared.state() {
            RunState::Running if self.core.gate.closing() => "CLOSE",
            RunState::Running => "RUN",
            RunState::Closed => "CLOSE",
            RunState::Terminated | RunState::Broken(_) => "TERMINATE",
        };
        write!(f, "<multiprocessing.pool.Pool state={state} pool_size={}>", self.core.processes)
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.core.processes)
            .field("state", &self.core.shared.state())
            .field("stats", &self.stats())
            .finish()
    }
}
