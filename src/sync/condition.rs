//! [`Condition`]: waiting for a state change announced under a lock.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use super::atomic::AtomicU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::futex::{Deadline, Futex, Kernel, Waited};
use super::lock::{AcquireError, AcquireResult, HasLockState, Lock, RLock};
use super::lock_state::{Acquired, LockState};
use crate::error::Result;
use crate::shm::{Shared, ShmSafe};
use crate::sys;

#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct ConditionState {
    /// Bumped by every notification; sleepers wait for it to change.
    seq: AtomicU32,
    sleepers: AtomicU32,
}

// SAFETY: atomics only; zero is a valid state; no pointers, no drop glue.
#[allow(unsafe_code, reason = "the ShmSafe promise for a state of atomics")]
unsafe impl ShmSafe for ConditionState {}

/// The lock under a condition.
#[derive(Clone, Serialize, Deserialize)]
enum UnderLock {
    Lock(Lock),
    RLock(RLock),
}

impl UnderLock {
    fn state(&self) -> &LockState {
        match self {
            UnderLock::Lock(l) => l.lock_state(),
            UnderLock::RLock(l) => l.lock_state(),
        }
    }

    fn recursive(&self) -> bool {
        matches!(self, UnderLock::RLock(_))
    }
}

/// A condition variable shared by processes and threads (CPython `multiprocessing.Condition`):
/// waiters release the lock and sleep until notified, then hold the lock again.
///
/// As with every condition variable, a waiter may also wake without a notification; wait for a
/// predicate with [`wait_for`](Self::wait_for).
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    lock: UnderLock,
    state: Shared<ConditionState>,
}

/// Holds a [`Condition`]'s lock until dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    condition: &'a Condition,
    not_send: PhantomData<*const ()>,
}

impl Condition {
    /// A condition over a new [`RLock`] (CPython's default).
    pub fn new() -> Result<Condition> {
        Ok(Condition { lock: UnderLock::RLock(RLock::new()?), state: Shared::new()? })
    }

    /// A condition over `lock`.
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Ok(Condition { lock: UnderLock::Lock(lock), state: Shared::new()? })
    }

    /// A condition over the recursive `lock`.
    pub fn with_rlock(lock: RLock) -> Result<Condition> {
        Ok(Condition { lock: UnderLock::RLock(lock), state: Shared::new()? })
    }

    /// Acquires the underlying lock.
    pub fn acquire(&self) -> AcquireResult<ConditionGuard<'_>> {
        self.acquire_within(None)
    }

    /// Acquires the underlying lock, waiting up to `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<ConditionGuard<'_>> {
        self.acquire_within(Some(timeout))
    }

    fn acquire_within(&self, timeout: Option<Duration>) -> AcquireResult<ConditionGuard<'_>> {
        let guard = || ConditionGuard { condition: self, not_send: PhantomData };
        match self.lock.state().acquire::<Kernel>(sys::current_thread(), timeout, self.lock.recursive()) {
            // The guard reports and recovers a dead owner itself (see `ConditionGuard`).
            Acquired::Clean | Acquired::OwnerDied(_) => Ok(guard()),
            Acquired::No if timeout.is_some_and(|t| !t.is_zero()) => {
                Err(AcquireError::Timeout(timeout.unwrap_or_default()))
            }
            Acquired::No => Err(AcquireError::WouldBlock),
            Acquired::Deadlock => Err(AcquireError::WouldDeadlock),
        }
    }

    /// Releases the lock, sleeps until notified (or `timeout`), and takes the lock again. Returns
    /// false if the time ran out. The same as [`ConditionGuard::wait`]: the guard knows its
    /// condition.
    pub fn wait(&self, guard: &mut ConditionGuard<'_>, timeout: Option<Duration>) -> bool {
        guard.wait(timeout)
    }

    /// Waits until `predicate` holds ([`ConditionGuard::wait_for`]).
    pub fn wait_for(
        &self,
        guard: &mut ConditionGuard<'_>,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> bool {
        guard.wait_for(predicate, timeout)
    }

    /// Wakes up to `n` waiters ([`ConditionGuard::notify`]).
    pub fn notify(&self, guard: &ConditionGuard<'_>, n: u32) {
        guard.notify(n);
    }

    /// Wakes every waiter ([`ConditionGuard::notify_all`]).
    pub fn notify_all(&self, guard: &ConditionGuard<'_>) {
        guard.notify_all();
    }
}

impl ConditionGuard<'_> {
    /// Releases the lock, sleeps until notified (or `timeout`), and takes the lock again. Returns
    /// false if the time ran out.
    pub fn wait(&mut self, timeout: Option<Duration>) -> bool {
        let condition = self.condition;
        let lock = condition.lock.state();
        let seen = condition.state.seq.load(Ordering::SeqCst);
        condition.state.sleepers.fetch_add(1, Ordering::SeqCst);
        let depth = lock.release_all::<Kernel>();
        let waited = Kernel::wait(&condition.state.seq, seen, timeout);
        condition.state.sleepers.fetch_sub(1, Ordering::SeqCst);
        // Take the lock back whatever happens (a dead owner is reported by `owner_died`).
        let _ = lock.acquire::<Kernel>(sys::current_thread(), None, condition.lock.recursive());
        lock.restore(depth);
        waited != Waited::TimedOut || condition.state.seq.load(Ordering::SeqCst) != seen
    }

    /// Waits until `predicate` holds, re-checking after each wake-up, at most `timeout` in all.
    /// Returns the predicate's last value.
    pub fn wait_for(&mut self, mut predicate: impl FnMut() -> bool, timeout: Option<Duration>) -> bool {
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return true;
            }
            if deadline.passed() {
                return false;
            }
            self.wait(deadline.left());
        }
    }

    /// Wakes up to `n` sleeping waiters.
    pub fn notify(&self, n: u32) {
        let state = &self.condition.state;
        state.seq.fetch_add(1, Ordering::SeqCst);
        if state.sleepers.load(Ordering::SeqCst) > 0 {
            Kernel::wake(&state.seq, n);
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }

    /// Whether a previous owner of the lock died holding it, with nobody recovering since (see
    /// [`AcquireError::OwnerDied`]).
    pub fn owner_died(&self) -> bool {
        self.condition.lock.state().inconsistent()
    }

    /// Declares the protected state consistent after an owner's death.
    pub fn recover(&self) {
        self.condition.lock.state().recover();
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.condition.lock.state().release::<Kernel>();
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").field("recursive", &self.lock.recursive()).finish()
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConditionGuard")
    }
}
