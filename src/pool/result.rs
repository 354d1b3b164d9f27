//! [`AsyncResult`]: a result that arrives later, and the promise that fulfils it.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::{Error, Result};

type Callback<T> = Box<dyn FnOnce(&T) + Send>;

thread_local! {
    /// This thread delivers results (a pool's scheduler thread): waiting here for a result that it
    /// has yet to deliver could never end.
    static DELIVERS_RESULTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as one that delivers results (see `wait_until`).
pub(crate) fn mark_delivering_thread() {
    DELIVERS_RESULTS.with(|flag| flag.set(true));
}
type ErrorCallback = Box<dyn FnOnce(&Error) + Send>;

/// What a result holds to keep its pool running: the pool's workers live until the pool's handle
/// and every result holding this are gone (see [`Pool`](super::Pool)'s "Results hold the pool").
pub(crate) type KeepAlive = Arc<dyn std::any::Any + Send + Sync>;

struct State<T> {
    outcome: Option<Result<T>>,
    /// The outcome was handed to a caller.
    taken: bool,
    waker: Option<Waker>,
    /// Threads blocked in `wait_until` (a notification costs a system call: only made for them).
    waiters: usize,
    callback: Option<Callback<T>>,
    error_callback: Option<ErrorCallback>,
}

pub(crate) struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    cancelled: AtomicBool,
    started: AtomicBool,
    /// An outcome was claimed by a `fulfil` (it may still be running the callback).
    delivered: AtomicBool,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking callback never runs under this lock, so poisoning only follows a panic in
        // this module; the state is still consistent then.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The result of a task submitted with [`Pool::apply_async`](super::Pool::apply_async) (or a
/// `map_async`, `starmap_async`, [`Executor::submit`](super::Executor::submit)): CPython's
/// `AsyncResult`, and `concurrent.futures.Future`.
///
/// It also implements [`Future`], so async code can `.await` it under any runtime (the pool wakes
/// the task; no executor is assumed).
///
/// # Examples
///
/// ```
/// use multiproc::pool::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = Pool::new(2)?;
/// let result = pool.apply_async(square, (7,))?;
/// assert_eq!(result.get()?, 49);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "ApplyResult")]
#[doc(alias = "MapResult")]
#[doc(alias = "Future")]
#[must_use = "a result does nothing unless you get or await it"]
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
    /// The pool it came from, kept running while this result lives (`None` in unit tests).
    _pool: Option<KeepAlive>,
}

/// The fulfilling side of an [`AsyncResult`].
pub(crate) struct Promise<T> {
    slot: Arc<Slot<T>>,
}

/// A result that keeps `pool` running, and its promise.
pub(crate) fn promise<T>(pool: Option<KeepAlive>) -> (AsyncResult<T>, Promise<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            outcome: None,
            taken: false,
            waker: None,
            waiters: 0,
            callback: None,
            error_callback: None,
        }),
        ready: Condvar::new(),
        cancelled: AtomicBool::new(false),
        started: AtomicBool::new(false),
        delivered: AtomicBool::new(false),
    });
    (AsyncResult { slot: Arc::clone(&slot), _pool: pool }, Promise { slot })
}

impl<T> Promise<T> {
    /// Sets callbacks that run once, in the thread that fulfils the promise (CPython runs them in
    /// the pool's result-handler thread).
    pub(crate) fn set_callbacks(&self, callback: Option<Callback<T>>, error_callback: Option<ErrorCallback>) {
        let mut state = self.slot.lock();
        state.callback = callback;
        state.error_callback = error_callback;
    }

    /// Whether the result was cancelled before its work started.
    pub(crate) fn cancelled(&self) -> bool {
        self.slot.cancelled.load(Ordering::Acquire)
    }

    /// Marks the work as started: it can no longer be cancelled.
    pub(crate) fn mark_started(&self) {
        self.slot.started.store(true, Ordering::Release);
    }

    /// Delivers the outcome (only the first delivery counts), runs the callback for it, then
    /// wakes every waiter: as in CPython, `get` returns after the callback ran. A callback that
    /// panics is reported and ignored: the result is still delivered and the pool goes on (CPython
    /// gh-83371 hangs the pool here).
    pub(crate) fn fulfil(&self, outcome: Result<T>) {
        if self.slot.delivered.swap(true, Ordering::AcqRel) {
            return;
        }
        let (callback, error_callback) = {
            let mut state = self.slot.lock();
            (state.callback.take(), state.error_callback.take())
        };
        let panicked = match &outcome {
            Ok(value) => callback.map(|cb| catch_unwind(AssertUnwindSafe(|| cb(value))).is_err()),
            Err(error) => error_callback.map(|cb| catch_unwind(AssertUnwindSafe(|| cb(error))).is_err()),
        };
        if panicked == Some(true) {
            tracing::error!("a pool result callback panicked; the result is delivered and the pool goes on");
        }
        let (waker, waiters) = {
            let mut state = self.slot.lock();
            state.outcome = Some(outcome);
            (state.waker.take(), state.waiters)
        };
        if waiters > 0 {
            self.slot.ready.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> AsyncResult<T> {
    /// Waits for the outcome and returns it (CPython `get()`): the task's value, or why it failed
    /// ([`Error::TaskFailed`], [`Error::WorkerDied`], [`Error::TaskTimedOut`], ...).
    ///
    /// # Errors
    ///
    /// The task's failure; [`Error::InvalidState`] if the value was already taken by
    /// [`get_timeout`](Self::get_timeout) or an `.await`.
    pub fn get(self) -> Result<T> {
        self.take(Deadline::NONE)
    }

    /// Waits up to `timeout` for the outcome (CPython `get(timeout)`).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if it is not ready in time (the result stays usable); otherwise as
    /// [`get`](Self::get), and after a success the value is taken.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.take(Deadline::after(Some(timeout)))
    }

    fn take(&self, deadline: Deadline) -> Result<T> {
        let mut state = self.wait_until(deadline)?;
        match state.outcome.take() {
            Some(outcome) => {
                state.taken = true;
                outcome
            }
            None => Err(Error::InvalidState("the result was already taken".into())),
        }
    }

    fn wait_until(&self, deadline: Deadline) -> Result<MutexGuard<'_, State<T>>> {
        let mut state = self.slot.lock();
        if state.outcome.is_none() && !state.taken && DELIVERS_RESULTS.with(|flag| flag.get()) {
            // A callback waiting for another result of its pool: the scheduler it blocks is the
            // thread that would deliver it (CPython hangs here).
            return Err(Error::InvalidState(
                "a pool callback waited for a result the pool has not delivered yet; the callback runs in the \
                 pool's scheduler thread, which would deliver it: hand the work to another thread instead"
                    .into(),
            ));
        }
        while state.outcome.is_none() && !state.taken {
            let left = deadline.left();
            if left == Some(Duration::ZERO) {
                return Err(deadline.timeout_error());
            }
            state.waiters += 1;
            state = match left {
                None => self.slot.ready.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(left) => self.slot.ready.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0,
            };
            state.waiters -= 1;
        }
        Ok(state)
    }

    /// Waits until the outcome is there (CPython `wait()`). In a pool callback, where waiting could
    /// never end (the callback holds up the thread that delivers results), it returns at once.
    pub fn wait(&self) {
        drop(self.wait_until(Deadline::NONE));
    }

    /// Waits up to `timeout`; whether the outcome is there (CPython `wait(timeout)` + `ready()`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Deadline::after(Some(timeout))).is_ok()
    }

    /// Whether the outcome is there (CPython `ready()`, `Future.done()`).
    #[doc(alias = "done")]
    pub fn ready(&self) -> bool {
        let state = self.slot.lock();
        state.outcome.is_some() || state.taken
    }

    /// Whether the task succeeded (CPython `successful()`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] while it is not ready (CPython raises `ValueError`) or once the
    /// outcome was taken.
    pub fn successful(&self) -> Result<bool> {
        match &self.slot.lock().outcome {
            Some(outcome) => Ok(outcome.is_ok()),
            None => Err(Error::InvalidState("the result is not ready (or was already taken)".into())),
        }
    }

    /// Cancels the task if it has not started (CPython `Future.cancel()`): its outcome becomes
    /// [`Error::Cancelled`] and true is returned. A running or finished task is not cancelled.
    pub fn cancel(&self) -> bool {
        if self.slot.started.load(Ordering::Acquire) || self.slot.delivered.load(Ordering::Acquire) {
            return false;
        }
        self.slot.cancelled.store(true, Ordering::Release);
        Promise { slot: Arc::clone(&self.slot) }.fulfil(Err(Error::Cancelled));
        true
    }

    /// Whether the task was handed to a worker and has not finished (CPython `Future.running()`).
    pub fn running(&self) -> bool {
        self.slot.started.load(Ordering::Acquire) && !self.slot.delivered.load(Ordering::Acquire)
    }

    /// Whether the task was cancelled (CPython `Future.cancelled()`).
    pub fn cancelled(&self) -> bool {
        self.slot.cancelled.load(Ordering::Acquire)
    }
}

impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut state = self.slot.lock();
        if let Some(outcome) = state.outcome.take() {
            state.taken = true;
            return Poll::Ready(outcome);
        }
        if state.taken {
            return Poll::Ready(Err(Error::InvalidState("the result was already taken".into())));
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("ready", &self.ready()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_after_fulfil_and_timeout_before() {
        let (result, promise) = promise::<u32>(None);
        assert!(matches!(result.get_timeout(Duration::from_millis(10)), Err(Error::Timeout(_))));
        assert!(!result.ready());
        assert!(result.successful().is_err());
        promise.fulfil(Ok(5));
        promise.fulfil(Ok(6));
        assert!(result.ready());
        assert!(result.successful().unwrap());
        assert_eq!(result.get().unwrap(), 5);
    }

    #[test]
    fn a_panicking_callback_is_contained() {
        let (result, promise) = promise::<u32>(None);
        promise.set_callbacks(Some(Box::new(|_| panic!("callback panics"))), None);
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        promise.fulfil(Ok(1));
        std::panic::set_hook(hook);
        assert_eq!(result.get().unwrap(), 1);
    }

    #[test]
    fn cancel_before_start_only() {
        let (result, promise) = promise::<u32>(None);
        assert!(result.cancel());
        assert!(promise.cancelled());
        assert!(matches!(result.get(), Err(Error::Cancelled)));
        let (result, started) = super::promise::<u32>(None);
        started.mark_started();
        assert!(!result.cancel());
    }
}
