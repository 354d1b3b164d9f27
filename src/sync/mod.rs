//! Synchronization across processes and threads (CPython `multiprocessing.synchronize`): [`Lock`],
//! [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Event`], [`Barrier`].
//!
//! Each primitive keeps its state in anonymous shared memory (see `shm`): give it to a child as a
//! [`Process`](crate::Process) argument, or clone it for a thread; every copy works on the same
//! state. The memory disappears when the last process holding it ends, `SIGKILL` included.
//!
//! Waiting is a futex on a word of that state; the state machines (`lock_state`, and the state
//! types of each primitive) are written against the `futex::Futex` trait, so that tests drive
//! them without the kernel. Before it sleeps, a waiter watches the word for a few microseconds
//! (adaptively, per primitive; see `spin`): a hand-over between processes on two CPUs then costs no
//! system call on either side.
//!
//! **Robustness.** Locks record their owner's thread. If a process dies holding a [`Lock`] or an
//! [`RLock`] (or the lock of a [`Condition`]), the next acquirer gets the lock with
//! [`AcquireError::OwnerDied`] instead of waiting forever, and decides whether the protected state
//! is usable ([`OwnerDied::recover`]). A party that dies inside [`Barrier::wait`] had arrived and
//! does not hold the others up. A process that dies holding a semaphore unit does not give it back
//! (nothing records who took it; as in CPython).
//!
//! A guard stays on the thread that acquired (the lock records that thread as its owner), so it is
//! not `Send`:
//!
//! ```compile_fail
//! fn needs_send<T: Send>(_: T) {}
//! let lock = multiproc::Lock::new().unwrap();
//! needs_send(lock.acquire().unwrap());
//! ```

pub(crate) mod atomic;
mod barrier;
mod condition;
pub(crate) mod cpu_room;
pub(crate) mod doorbell;
mod event;
pub(crate) mod futex;
mod lock;
pub(crate) mod lock_state;
#[cfg(all(test, loom))]
pub(crate) mod loom_models;
mod semaphore;
pub(crate) mod spin;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub(crate) use lock::sealed as guard_sealed;
pub use lock::{
    AcquireError, AcquireResult, Guard, Lock, LockGuard, OWNER_CHECK_INTERVAL, OwnerDied, RLock, RLockGuard,
};
pub use semaphore::{BoundedSemaphore, BoundedSemaphoreGuard, Semaphore, SemaphoreGuard};

/// Compile-time promises: the primitives can be shared with threads and sent to processes; their
/// guards stay on the thread that acquired (the lock records that thread as its owner); the shared
/// states have the layout every process of the binary expects.
const _: () = {
    const fn shared_and_sent<T: Send + Sync + Clone + serde::Serialize + serde::de::DeserializeOwned>() {}
    shared_and_sent::<Lock>();
    shared_and_sent::<RLock>();
    shared_and_sent::<Semaphore>();
    shared_and_sent::<BoundedSemaphore>();
    shared_and_sent::<Event>();
    shared_and_sent::<Condition>();
    shared_and_sent::<Barrier>();
    #[cfg(not(loom))]
    assert!(std::mem::size_of::<lock_state::LockState>() == 32);
    #[cfg(not(loom))]
    assert!(std::mem::align_of::<lock_state::LockState>() == 8);
};
