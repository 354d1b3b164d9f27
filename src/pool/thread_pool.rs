//! [`ThreadPool`]: the pool API on threads of this process (CPython
//! `multiprocessing.pool.ThreadPool`, `multiprocessing.dummy.Pool`), for closures that capture.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::collect::{Collect, Imap, One, Outcomes, Stream};
use super::feed;
use super::progress::Progress;
use super::result::{self, AsyncResult};
use super::task::{TaskReturn, call_catching};
use super::{Options, PoolStats, chunking};
use crate::error::{Error, Result};

/// A queued piece of work: called with `None` to run it, with the error to fail it unrun.
type Work = Box<dyn FnOnce(Option<Error>) + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Closed,
    Terminated,
}

struct Queue {
    work: VecDeque<Work>,
    state: State,
}

struct Shared {
    queue: Mutex<Queue>,
    available: Condvar,
    done: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `work` unless the pool was terminated (or closed, once its feeds are done).
    fn push(&self, work: Vec<Work>) -> Result<()> {
        let mut queue = self.lock();
        if queue.state != State::Running {
            return Err(Error::InvalidState("Pool not running: it was closed or terminated".into()));
        }
        queue.work.extend(work);
        drop(queue);
        self.available.notify_all();
        Ok(())
    }

    fn close(&self) {
        let mut queue = self.lock();
        if queue.state == State::Running {
            queue.state = State::Closed;
        }
        drop(queue);
        self.available.notify_all();
    }
}

/// A pool of threads with [`Pool`](super::Pool)'s methods, taking any `Send` closure, captured
/// state included (CPython `ThreadPool`).
///
/// Tasks share this process: a panic fails only its task (its message comes back in
/// [`Error::TaskFailed`]), but a task cannot be killed, so there are no task timeouts here.
///
/// Results hold the pool, as with [`Pool`](super::Pool#results-hold-the-pool): once the pool's
/// handle and every result from it are gone, the queued tasks fail with [`Error::PoolTerminated`]
/// and the running ones are waited for. [`terminate`](Self::terminate) does the same at once.
///
/// # Examples
///
/// ```
/// use multiproc::pool::ThreadPool;
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = ThreadPool::new(4)?;
/// let offset = 10;
/// assert_eq!(pool.map(move |x: u32| x + offset, 0..3)?, [10, 11, 12]);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "multiprocessing.dummy.Pool")]
pub struct ThreadPool {
    core: Arc<Core>,
}

/// What the pool's handle and its results share (results hold the pool, as with
/// [`Pool`](super::Pool)): dropped when the last of them goes, which terminates the pool.
struct Core {
    shared: Arc<Shared>,
    gate: Arc<feed::Gate>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    processes: usize,
}

impl Core {
    fn keep_alive(self: &Arc<Self>) -> result::KeepAlive {
        Arc::clone(self) as result::KeepAlive
    }

    fn terminate(&self) {
        let mut queue = self.shared.lock();
        queue.state = State::Terminated;
        let queued: Vec<Work> = queue.work.drain(..).collect();
        drop(queue);
        self.shared.available.notify_all();
        for work in queued {
            work(Some(Error::PoolTerminated));
        }
    }

    /// Waits for the threads, except the calling one (the last result can be dropped by a task).
    fn join_threads(&self) {
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let me = std::thread::current().id();
        for thread in threads {
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }
}

impl ThreadPool {
    /// A pool of `threads` threads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] for zero threads; [`Error::Io`] if a thread cannot be started.
    pub fn new(threads: usize) -> Result<ThreadPool> {
        if threads == 0 {
            return Err(Error::InvalidState("Number of processes must be at least 1".into()));
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { work: VecDeque::new(), state: State::Running }),
            available: Condvar::new(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let pool = ThreadPool {
            core: Arc::new(Core { shared, gate: Arc::default(), threads: Mutex::new(Vec::new()), processes: threads }),
        };
        for n in 0..threads {
            let shared = Arc::clone(&pool.core.shared);
            let thread = std::thread::Builder::new()
                .name(format!("multiproc-thread-pool-{n}"))
                .spawn(move || run_thread(&shared))
                .map_err(|e| Error::io("start a pool thread", e))?;
            pool.core.threads.lock().unwrap_or_else(|p| p.into_inner()).push(thread);
        }
        Ok(pool)
    }

    /// A pool of [`cpu_count`](crate::cpu_count) threads (CPython `ThreadPool()`).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    #[doc(alias = "default")]
    pub fn with_cpu_count() -> Result<ThreadPool> {
        ThreadPool::new(crate::cpu_count())
    }

    /// The number of threads.
    pub fn processes(&self) -> usize {
        self.core.processes
    }

    /// Counters of tasks done and failed.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            tasks_done: self.core.shared.done.load(Ordering::Relaxed),
            tasks_failed: self.core.shared.failed.load(Ordering::Relaxed),
            ..PoolStats::default()
        }
    }

    fn push(&self, work: Vec<Work>) -> Result<()> {
        self.core.gate.check_open()?;
        self.core.shared.push(work)
    }

    /// Runs `f` on a pool thread and waits for its value (CPython `apply`).
    ///
    /// # Errors
    ///
    /// [`Error::TaskFailed`] if it panicked or returned `Err`; [`Error::InvalidState`] if closed.
    pub fn apply<F, R>(&self, f: F) -> Result<R::Value>
    where
        F: FnOnce() -> R + Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
    {
        self.apply_async(f)?.get()
    }

    /// Runs `f` on a pool thread; the value comes later (CPython `apply_async`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the pool is closed or terminated.
    pub fn apply_async<F, R>(&self, f: F) -> Result<AsyncResult<R::Value>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
    {
        self.apply_async_with(f, Options::new())
    }

    /// [`apply_async`](Self::apply_async) with callbacks (timeouts and retries do not apply to
    /// threads).
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async).
    pub fn apply_async_with<F, R>(&self, f: F, options: Options<R::Value>) -> Result<AsyncResult<R::Value>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
    {
        let (result, promise) = result::promise(Some(self.core.keep_alive()));
        promise.set_callbacks(options.callback, options.error_callback);
        let one = One { promise };
        let shared = Arc::clone(&self.core.shared);
        self.push(vec![Box::new(move |failure: Option<Error>| {
            if let Some(error) = failure {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return one.deliver(0, Err(error));
            }
            if one.cancelled() {
                return;
            }
            one.started();
            let outcome = call_catching(|| f().into_task_result());
            count(&shared, outcome.is_ok(), 1);
            one.deliver(0, outcome.map(|v| vec![v]).map_err(super::task::TaskFailure::into_error));
        })])?;
        Ok(result)
    }

    /// Applies `f` to every item on the pool's threads; the values in order (CPython `map`).
    ///
    /// # Errors
    ///
    /// The first failed task's error, after all have run; [`Error::InvalidState`] if closed.
    pub fn map<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R::Value>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
    {
        self.map_async(f, items)?.get()
    }

    /// [`map`](Self::map) without waiting (CPython `map_async`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if closed.
    pub fn map_async<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<AsyncResult<Vec<R::Value>>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
    {
        self.map_async_with(f, items, Options::new())
    }

    /// [`map_async`](Self::map_async) with a chunk size, callbacks or a progress bar.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async).
    pub fn map_async_with<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        options: Options<Vec<R::Value>>,
    ) -> Result<AsyncResult<Vec<R::Value>>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize =
            options.chunksize.unwrap_or_else(|| chunking::default_chunksize(items.len(), self.core.processes));
        let (result, promise) = result::promise(Some(self.core.keep_alive()));
        promise.set_callbacks(options.callback, options.error_callback);
        let progress = Progress::new(items.len(), options.progress);
        let outcomes: Arc<dyn Outcomes<R::Value>> = Arc::new(Collect::new(promise, items.len(), chunksize, progress));
        self.push(self.chunks_work(f, items, chunksize, outcomes))?;
        Ok(result)
    }

    /// CPython `starmap`: each item is a tuple of arguments, which the closure takes as one tuple
    /// (`|(a, b)| a + b`); otherwise [`map`](Self::map).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap<F, Args, R>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<R::Value>>
    where
        F: Fn(Args) -> R + Send + Sync + 'static,
        Args: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
    {
        self.map(f, items)
    }

    /// CPython `starmap_async`: [`starmap`](Self::starmap) without waiting.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async).
    pub fn starmap_async<F, Args, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<AsyncResult<Vec<R::Value>>>
    where
        F: Fn(Args) -> R + Send + Sync + 'static,
        Args: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
    {
        self.map_async(f, items)
    }

    /// Values of `f` over the items, in order, as they finish (CPython `imap`). Lazy, with a
    /// bounded read-ahead, as [`Pool::imap`](super::Pool::imap): a feeder thread reads the input
    /// (hence `Send + 'static`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if closed; [`Error::Io`] if the feeder thread cannot start.
    pub fn imap<F, A, R, I>(&self, f: F, items: I) -> Result<Imap<R::Value>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(f, items.into_iter(), Options::new(), true)
    }

    /// [`imap`](Self::imap) with a chunk size, a read-ahead or a progress bar.
    ///
    /// # Errors
    ///
    /// As [`imap`](Self::imap).
    pub fn imap_with<F, A, R, I>(&self, f: F, items: I, options: Options<R::Value>) -> Result<Imap<R::Value>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(f, items.into_iter(), options, true)
    }

    /// Values of `f` over the items as they finish (CPython `imap_unordered`).
    ///
    /// # Errors
    ///
    /// As [`imap`](Self::imap).
    pub fn imap_unordered<F, A, R, I>(&self, f: F, items: I) -> Result<Imap<R::Value>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(f, items.into_iter(), Options::new(), false)
    }

    /// [`imap_unordered`](Self::imap_unordered) with options.
    ///
    /// # Errors
    ///
    /// As [`imap`](Self::imap).
    pub fn imap_unordered_with<F, A, R, I>(&self, f: F, items: I, options: Options<R::Value>) -> Result<Imap<R::Value>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(f, items.into_iter(), options, false)
    }

    fn stream<F, A, R, I>(&self, f: F, items: I, options: Options<R::Value>, ordered: bool) -> Result<Imap<R::Value>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
        I: Iterator<Item = A> + Send + 'static,
    {
        let chunksize = options.chunksize.unwrap_or(1);
        let known_len = match items.size_hint() {
            (lower, Some(upper)) if lower == upper => Some(lower),
            _ => None,
        };
        let stream = Arc::new(Stream::new(ordered, known_len, options.progress));
        let outcomes: Arc<dyn Outcomes<R::Value>> = stream.clone();
        let (f, shared) = (Arc::new(f), Arc::clone(&self.core.shared));
        let submit: feed::Submit<A> = Box::new(move |first, batch: Vec<Vec<A>>| {
            let work = (first..).zip(batch).map(|(index, chunk)| chunk_work(&f, chunk, index, &outcomes, &shared));
            shared.push(work.collect()).map_err(|e| {
                // Read after the pool was terminated: fails as the chunks read before it.
                if shared.lock().state == State::Terminated { Error::PoolTerminated } else { e }
            })?;
            Ok(0)
        });
        let read_ahead = feed::ReadAhead::new(self.core.processes, options.buffersize);
        feed::start(&self.core.gate, items, chunksize, read_ahead, Arc::clone(&stream), submit)?;
        Ok(Imap::new(stream, Some(self.core.keep_alive())))
    }

    /// The work of every chunk of `items`.
    fn chunks_work<F, A, R>(
        &self,
        f: F,
        items: Vec<A>,
        chunksize: usize,
        outcomes: Arc<dyn Outcomes<R::Value>>,
    ) -> Vec<Work>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: TaskReturn,
        R::Value: Send + 'static,
    {
        let f = Arc::new(f);
        let mut items = items.into_iter();
        let mut work: Vec<Work> = Vec::new();
        loop {
            let chunk: Vec<A> = items.by_ref().take(chunksize.max(1)).collect();
            if chunk.is_empty() {
                return work;
            }
            work.push(chunk_work(&f, chunk, work.len(), &outcomes, &self.core.shared));
        }
    }

    /// No more tasks; the threads exit once the queue is empty (CPython `close`).
    pub fn close(&self) {
        let shared = Arc::clone(&self.core.shared);
        self.core.gate.close(move || shared.close());
    }

    /// Fails every queued task with [`Error::PoolTerminated`]; running tasks finish (a thread
    /// cannot be killed). CPython `terminate`.
    pub fn terminate(&self) {
        self.core.terminate();
    }

    /// Waits for the threads to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) (CPython `join`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] while the pool runs.
    pub fn join(&self) -> Result<()> {
        if self.core.shared.lock().state == State::Running && !self.core.gate.closing() {
            return Err(Error::InvalidState("Pool is still running: call close() or terminate() before join()".into()));
        }
        self.core.join_threads();
        Ok(())
    }
}

/// The work of chunk `index`: calls `f` on each item and delivers the values (or fails).
fn chunk_work<F, A, R>(
    f: &Arc<F>,
    chunk: Vec<A>,
    index: usize,
    outcomes: &Arc<dyn Outcomes<R::Value>>,
    shared: &Arc<Shared>,
) -> Work
where
    F: Fn(A) -> R + Send + Sync + 'static,
    A: Send + 'static,
    R: TaskReturn,
    R::Value: Send + 'static,
{
    let (f, outcomes, shared) = (Arc::clone(f), Arc::clone(outcomes), Arc::clone(shared));
    Box::new(move |failure: Option<Error>| {
        let tasks = chunk.len() as u64;
        if let Some(error) = failure {
            shared.failed.fetch_add(tasks, Ordering::Relaxed);
            return outcomes.deliver(index, Err(error));
        }
        outcomes.started();
        let mut values = Vec::with_capacity(chunk.len());
        for item in chunk {
            match call_catching(|| f(item).into_task_result()) {
                Ok(value) => values.push(value),
                Err(failure) => {
                    count(&shared, false, tasks);
                    return outcomes.deliver(index, Err(failure.into_error()));
                }
            }
        }
        count(&shared, true, tasks);
        outcomes.deliver(index, Ok(values));
    })
}

fn count(shared: &Shared, ok: bool, tasks: u64) {
    let counter = if ok { &shared.done } else { &shared.failed };
    counter.fetch_add(tasks, Ordering::Relaxed);
}

fn run_thread(shared: &Shared) {
    loop {
        let mut queue = shared.lock();
        let work = loop {
            if queue.state == State::Terminated {
                return;
            }
            if let Some(work) = queue.work.pop_front() {
                break work;
            }
            if queue.state == State::Closed {
                return;
            }
            queue = shared.available.wait(queue).unwrap_or_else(|p| p.into_inner());
        };
        drop(queue);
        work(None);
    }
}

impl Drop for Core {
    /// Once the pool's handle and every result holding it are gone: fails the queued tasks and
    /// waits for the running ones.
    fn drop(&mut self) {
        self.terminate();
        self.join_threads();
    }
}

/// CPython's `repr`: `<multiprocessing.pool.ThreadPool state=RUN pool_size=4>`.
impl std::fmt::Display for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.core.shared.lock().state {
            State::Running if self.core.gate.closing() => "CLOSE",
            State::Running => "RUN",
            State::Closed => "CLOSE",
            State::Terminated => "TERMINATE",
        };
        write!(f, "<multiprocessing.pool.ThreadPool state={state} pool_size={}>", self.core.processes)
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool").field("threads", &self.core.processes).field("stats", &self.stats()).finish()
    }
}
