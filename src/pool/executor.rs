//! [`Executor`]: a process pool in the manner of `concurrent.futures.ProcessPoolExecutor`.

use serde::Serialize;

use super::{AsyncResult, Imap, Options, Pool, PoolBuilder, Task};
use crate::error::{Error, Result};

/// A process pool with `concurrent.futures`' interface: [`submit`](Self::submit) returns a future
/// ([`AsyncResult`]: `result(timeout)` is [`get_timeout`](AsyncResult::get_timeout), `done()` is
/// [`ready`](AsyncResult::ready), `cancel()` is [`cancel`](AsyncResult::cancel), and it can be
/// `.await`ed), [`map`](Self::map) yields values in order, [`shutdown`](Self::shutdown) takes
/// `wait` and `cancel_futures`.
///
/// Unlike CPython's `ProcessPoolExecutor`, a worker that dies does not break the executor: only
/// the future it was running fails ([`Error::WorkerDied`]), and the others complete.
///
/// Dropping the executor shuts it down and waits (CPython's `with ProcessPoolExecutor() as ex:`).
///
/// # Examples
///
/// ```
/// use multiproc::pool::Executor;
///
/// fn cube(x: i64) -> i64 { x * x * x }
///
/// # fn main() -> multiproc::Result<()> {
/// let executor = Executor::new(2)?;
/// let future = executor.submit(cube, (3,))?;
/// assert_eq!(future.get()?, 27);
/// let cubes: Vec<i64> = executor.map(cube, 0..4)?.collect::<multiproc::Result<_>>()?;
/// assert_eq!(cubes, [0, 1, 8, 27]);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "ProcessPoolExecutor")]
#[derive(Debug)]
pub struct Executor {
    pool: Option<Pool>,
}

impl Executor {
    /// An executor with `max_workers` worker processes.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    #[doc(alias = "max_workers")]
    pub fn new(max_workers: usize) -> Result<Executor> {
        Ok(Executor { pool: Some(Pool::new(max_workers)?) })
    }

    /// An executor with [`cpu_count`](crate::cpu_count) worker processes (CPython
    /// `ProcessPoolExecutor()`).
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    #[doc(alias = "default")]
    pub fn with_cpu_count() -> Result<Executor> {
        Executor::with_builder(Pool::builder())
    }

    /// An executor over a pool configured with [`Pool::builder`] (initializer, start method,
    /// `max_tasks_per_child`, timeouts, retries).
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn with_builder(builder: PoolBuilder) -> Result<Executor> {
        Ok(Executor { pool: Some(builder.build()?) })
    }

    fn pool(&self) -> Result<&Pool> {
        self.pool.as_ref().ok_or_else(|| Error::InvalidState("cannot schedule new futures after shutdown".into()))
    }

    /// Schedules `f(args...)` and returns its future (CPython `submit`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] after [`shutdown`](Self::shutdown).
    pub fn submit<F: Task<Args>, Args: Serialize>(&self, f: F, args: Args) -> Result<AsyncResult<F::Output>> {
        self.pool()?.apply_async(f, args)
    }

    /// The values of `f` over the items, in order (CPython `Executor.map`; `chunksize` 1). Lazy,
    /// as [`Pool::imap`]: the input is read on a feeder thread (hence `Send + 'static`), a bounded
    /// number of tasks ahead of the values taken (CPython 3.14's `buffersize`:
    /// [`Options::buffersize`]); [`shutdown`](Self::shutdown) still runs every task of a started
    /// map, as CPython's does.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] after shutdown; [`Error::Io`] if the feeder thread cannot start.
    /// Each failed call yields its error in its place.
    pub fn map<F, A, I>(&self, f: F, items: I) -> Result<Imap<F::Output>>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.pool()?.imap(f, items)
    }

    /// [`map`](Self::map) with options (chunk size, read-ahead, timeout, retries).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn map_with<F, A, I>(&self, f: F, items: I, options: Options<F::Output>) -> Result<Imap<F::Output>>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.pool()?.imap_with(f, items, options)
    }

    /// Stops taking work (CPython `shutdown(wait, cancel_futures)`): with `cancel_futures`,
    /// futures not yet started are cancelled; with `wait`, returns once every started future has
    /// finished and the workers have exited, else at once while they finish in the background.
    ///
    /// # Errors
    ///
    /// Only if the pool's scheduler thread panicked (a bug).
    pub fn shutdown(&mut self, wait: bool, cancel_futures: bool) -> Result<()> {
        let Some(pool) = self.pool.take() else { return Ok(()) };
        if cancel_futures {
            pool.cancel_queued();
        }
        if wait {
            pool.close();
            pool.join()
        } else {
            pool.close_detached();
            Ok(())
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let _ = self.shutdown(true, false);
    }
}
