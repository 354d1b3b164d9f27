//! [`Lock`] and [`RLock`]: mutual exclusion across processes and threads, robust to owners that
//! die (see `lock_state` for the state machine).

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::futex::Kernel;
use super::lock_state::{Acquired, LockState};
use crate::error::Result;
use crate::shm::Shared;
use crate::sys;

/// Why an acquisition did not simply succeed.
#[derive(Debug)]
pub enum AcquireError<G> {
    /// The lock was acquired, but a previous owner died holding it (a process killed in its
    /// critical section): the state it protects may be half-updated. The guard is inside; call
    /// [`OwnerDied::recover`] once the state is consistent again. Until someone does, every
    /// acquirer gets this.
    OwnerDied(OwnerDied<G>),
    /// [`try_acquire`](Lock::try_acquire): someone else holds the lock.
    WouldBlock,
    /// The timeout passed before the lock could be acquired.
    Timeout(Duration),
    /// The calling thread already holds this (non-recursive) lock: waiting would never end. Use an
    /// [`RLock`] to acquire again while holding.
    WouldDeadlock,
}

impl<G> fmt::Display for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(died) => write!(
                f,
                "the lock's previous owner (thread {}) died holding it; the state it protects may be inconsistent",
                died.thread
            ),
            AcquireError::WouldBlock => f.write_str("the lock is held by someone else"),
            AcquireError::Timeout(t) => write!(f, "could not acquire the lock within {t:?}"),
            AcquireError::WouldDeadlock => {
                f.write_str("this thread already holds the lock, which is not recursive (use an RLock)")
            }
        }
    }
}

impl<G: fmt::Debug> std::error::Error for AcquireError<G> {}

/// For `?` in functions returning [`crate::Result`]: the guard (if any) is dropped, which releases
/// the lock.
impl<G> From<AcquireError<G>> for crate::Error {
    fn from(e: AcquireError<G>) -> crate::Error {
        match e {
            AcquireError::OwnerDied(died) => crate::Error::OwnerDied { thread: died.thread },
            AcquireError::WouldBlock => crate::Error::WouldBlock,
            AcquireError::Timeout(t) => crate::Error::Timeout(t),
            AcquireError::WouldDeadlock => crate::Error::InvalidState(AcquireError::<()>::WouldDeadlock.to_string()),
        }
    }
}

impl<G> AcquireError<G> {
    /// The same error around another guard (for types that wrap a lock's guard in their own).
    pub(crate) fn map_guard<H>(self, f: impl FnOnce(G) -> H) -> AcquireError<H> {
        match self {
            AcquireError::OwnerDied(died) => {
                AcquireError::OwnerDied(OwnerDied { guard: f(died.guard), thread: died.thread })
            }
            AcquireError::WouldBlock => AcquireError::WouldBlock,
            AcquireError::Timeout(t) => AcquireError::Timeout(t),
            AcquireError::WouldDeadlock => AcquireError::WouldDeadlock,
        }
    }
}

/// The outcome of acquiring a lock: the guard, or why not.
pub type AcquireResult<G> = std::result::Result<G, AcquireError<G>>;

/// A lock acquired after its previous owner died holding it. See [`AcquireError::OwnerDied`].
pub struct OwnerDied<G> {
    guard: G,
    thread: u32,
}

/// A guard of a lock's state (the guards of [`Lock`] and [`RLock`]).
pub trait Guard: sealed::Sealed {
    #[doc(hidden)]
    fn mark_recovered(&self);
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

impl<G: Guard> OwnerDied<G> {
    /// The kernel thread id of the owner that died (0 if unknown).
    pub fn dead_thread(&self) -> u32 {
        self.thread
    }

    /// Declares the protected state consistent again and returns the guard; later acquirers are
    /// no longer told.
    pub fn recover(self) -> G {
        self.guard.mark_recovered();
        self.guard
    }

    /// The guard, leaving the lock marked inconsistent for the next acquirer.
    pub fn into_guard(self) -> G {
        self.guard
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").field("dead_thread", &self.thread).finish_non_exhaustive()
    }
}

/// How soon a waiter notices that a lock's owner died: it checks after each interval of waiting.
pub const OWNER_CHECK_INTERVAL: Duration = super::lock_state::LIVENESS_SLICE;

/// Turns a state-machine outcome into the public result.
fn outcome<G>(acquired: Acquired, timeout: Option<Duration>, guard: impl FnOnce() -> G) -> AcquireResult<G> {
    match acquired {
        Acquired::Clean => Ok(guard()),
        Acquired::OwnerDied(thread) => Err(AcquireError::OwnerDied(OwnerDied { guard: guard(), thread })),
        Acquired::No => match timeout {
            Some(t) if !t.is_zero() => Err(AcquireError::Timeout(t)),
            _ => Err(AcquireError::WouldBlock),
        },
        Acquired::Deadlock => Err(AcquireError::WouldDeadlock),
    }
}

/// A lock type and its guard; `recursive` decides whether the owner may acquire again.
macro_rules! lock_type {
    ($(#[$doc:meta])* $name:ident, $(#[$guard_doc:meta])* $guard:ident, recursive: $recursive:expr) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name {
            state: Shared<LockState>,
        }

        $(#[$guard_doc])*
        #[must_use = "the lock is released as soon as the guard is dropped"]
        pub struct $guard<'a> {
            state: &'a LockState,
            /// The thread that acquired (the lock records it as owner).
            owner: u32,
            /// A guard belongs to the thread that acquired.
            not_send: PhantomData<*const ()>,
        }

        impl $name {
            /// A new, unlocked lock.
            pub fn new() -> Result<$name> {
                Ok($name { state: Shared::new()? })
            }

            /// Waits for the lock and takes it.
            pub fn acquire(&self) -> AcquireResult<$guard<'_>> {
                self.acquire_within(None)
            }

            /// Takes the lock if it is free, without waiting (CPython `acquire(block=False)`).
            pub fn try_acquire(&self) -> AcquireResult<$guard<'_>> {
                self.acquire_within(Some(Duration::ZERO))
            }

            /// Waits up to `timeout` for the lock (CPython `acquire(timeout=...)`).
            pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<$guard<'_>> {
                self.acquire_within(Some(timeout))
            }

            fn acquire_within(&self, timeout: Option<Duration>) -> AcquireResult<$guard<'_>> {
                let me = sys::current_thread();
                let acquired = self.state.acquire::<Kernel>(me, timeout, $recursive);
                outcome(acquired, timeout, || $guard { state: &self.state, owner: me.0, not_send: PhantomData })
            }

            /// Whether someone holds the lock (CPython 3.14 `locked()`).
            pub fn locked(&self) -> bool {
                self.state.locked()
            }
        }

        impl HasLockState for $name {
            fn lock_state(&self) -> &LockState {
                &self.state
            }
        }

        impl sealed::Sealed for $guard<'_> {}

        impl Guard for $guard<'_> {
            fn mark_recovered(&self) {
                self.state.recover();
            }
        }

        impl Drop for $guard<'_> {
            fn drop(&mut self) {
                if $recursive {
                    self.state.release::<Kernel>();
                } else {
                    // Taken once: one read-modify-write, no loads before it (see `release_once`).
                    self.state.release_once::<Kernel>(self.owner);
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // CPython's repr names the owner (`<Lock(owner=...)>`, `<RLock(owner, count)>`):
                // here the holder's thread id (the pid for a process's main thread).
                let mut s = f.debug_struct(stringify!($name));
                s.field("locked", &self.locked()).field("owner", &self.state.owner());
                if $recursive {
                    s.field("count", &self.state.depth());
                }
                s.finish()
            }
        }

        impl fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($guard))
            }
        }
    };
}

lock_type!(
    /// A lock shared by processes and threads (CPython `multiprocessing.Lock`): one holder at a time.
    ///
    /// Its state lives in anonymous shared memory; give the lock to a child as a
    /// [`Process`](crate::Process) argument (or clone it for a thread). Acquiring gives a
    /// [`LockGuard`] that releases when dropped, the Rust form of `with lock:`.
    ///
    /// Unlike CPython's, the lock has an owner: the thread that acquired it releases it (through its
    /// guard). That is what makes it **robust**: if a process dies holding the lock, the next acquirer
    /// gets it with [`AcquireError::OwnerDied`] within [`OWNER_CHECK_INTERVAL`] instead of waiting
    /// forever.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let lock = multiproc::Lock::new()?;
    /// {
    ///     let _guard = lock.acquire().expect("no previous owner died");
    ///     assert!(lock.locked());
    /// }
    /// assert!(!lock.locked());
    /// # Ok(())
    /// # }
    /// ```
    Lock,
    /// Holds a [`Lock`] until dropped.
    LockGuard,
    recursive: false
);

lock_type!(
    /// A recursive lock (CPython `multiprocessing.RLock`): its owner may acquire it again, and must
    /// release as many times (each guard releases one level). Robust like [`Lock`].
    RLock,
    /// Holds an [`RLock`] (one level of it) until dropped.
    RLockGuard,
    recursive: true
);

impl RLock {
    /// Whether the calling thread holds the lock (CPython's private `_is_owned()`).
    pub fn is_owned(&self) -> bool {
        self.state.held_by(sys::current_thread())
    }
}

/// Either lock, for [`Condition`](super::Condition).
pub(crate) trait HasLockState {
    fn lock_state(&self) -> &LockState;
}
