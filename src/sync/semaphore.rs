//! [`Semaphore`] and [`BoundedSemaphore`]: counters that block at zero, across processes.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use super::atomic::{AtomicU32, handshake_fence};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::futex::{Deadline, Futex, Kernel};
use super::spin::SpinState;
use crate::error::{Error, Result};
use crate::shm::{Shared, ShmSafe};

/// The shared state: the count, how many sleep on it, the bound (`u32::MAX` for a plain
/// semaphore: 0 is a real bound, that of `BoundedSemaphore::new(0)`), and how long a waiter
/// spins before it sleeps.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct SemaphoreState {
    count: AtomicU32,
    sleepers: AtomicU32,
    max: AtomicU32,
    spin: SpinState,
}

// SAFETY: atomics only; zero is a valid (empty) state; no pointers, no drop glue.
#[allow(unsafe_code, reason = "the ShmSafe promise for a state of atomics")]
unsafe impl ShmSafe for SemaphoreState {}

impl SemaphoreState {
    /// A state holding `count` units, at most `max`.
    #[cfg(all(test, loom))]
    pub(crate) fn with_units(count: u32, max: u32) -> SemaphoreState {
        let state = SemaphoreState::default();
        state.count.store(count, Ordering::SeqCst);
        state.max.store(max, Ordering::SeqCst);
        state
    }

    /// Takes one unit, waiting up to `timeout`; false if the time ran out.
    pub(crate) fn acquire<F: Futex>(&self, timeout: Option<Duration>) -> bool {
        let deadline = Deadline::after(timeout);
        let mut spun = false;
        loop {
            let count = self.count.load(Ordering::SeqCst);
            if count > 0 {
                if self.count.compare_exchange(count, count - 1, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                    return true;
                }
                continue;
            }
            if deadline.passed() {
                return false;
            }
            // Once per acquisition, watch for a unit before sleeping (a release then wakes nobody).
            if !spun {
                spun = true;
                if self.spin.spin(deadline, || self.count.load(Ordering::Relaxed) > 0) {
                    continue;
                }
            }
            // Registered before sleeping: a release that comes after sees us and wakes; one that
            // came before changed the count, so the futex does not sleep.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            handshake_fence();
            F::wait(&self.count, 0, deadline.left());
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Gives one unit back; false (and nothing changed) if that would exceed the bound.
    pub(crate) fn release<F: Futex>(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        let mut count = self.count.load(Ordering::SeqCst);
        loop {
            if count >= max {
                return false;
            }
            match self.count.compare_exchange(count, count + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => count = now,
            }
        }
        handshake_fence();
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            F::wake(&self.count, 1);
        }
        true
    }

    pub(crate) fn value(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }
}

macro_rules! semaphore_type {
    ($(#[$doc:meta])* $name:ident, $guard:ident, bounded: $bounded:expr) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name {
            state: Shared<SemaphoreState>,
        }

        impl $name {
            /// A semaphore holding `value` units.
            pub fn new(value: u32) -> Result<$name> {
                let state: Shared<SemaphoreState> = Shared::new()?;
                state.count.store(value, Ordering::SeqCst);
                state.max.store(if $bounded { value } else { u32::MAX }, Ordering::SeqCst);
                Ok($name { state })
            }

            /// Waits for a unit and takes it; the guard gives it back when dropped.
            pub fn acquire(&self) -> $guard<'_> {
                self.state.acquire::<Kernel>(None);
                $guard { semaphore: self, not_send: PhantomData }
            }

            /// Takes a unit if one is free, without waiting.
            pub fn try_acquire(&self) -> Option<$guard<'_>> {
                self.acquire_timeout(Duration::ZERO)
            }

            /// Waits up to `timeout` for a unit (`None` when the time ran out).
            pub fn acquire_timeout(&self, timeout: Duration) -> Option<$guard<'_>> {
                self.state
                    .acquire::<Kernel>(Some(timeout))
                    .then(|| $guard { semaphore: self, not_send: PhantomData })
            }

            /// Takes a unit without a guard, to be given back with [`release`](Self::release)
            /// (by this or any other process), as CPython's `acquire()` does.
            pub fn acquire_unguarded(&self, timeout: Option<Duration>) -> bool {
                self.state.acquire::<Kernel>(timeout)
            }

            /// The number of free units (CPython `get_value()`).
            #[doc(alias = "get_value")]
            pub fn value(&self) -> u32 {
                self.state.value()
            }
        }

        /// Holds a unit of a semaphore until dropped.
        #[must_use = "the unit is given back as soon as the guard is dropped"]
        pub struct $guard<'a> {
            semaphore: &'a $name,
            not_send: PhantomData<*const ()>,
        }

        impl Drop for $guard<'_> {
            fn drop(&mut self) {
                // A guard's unit was taken, so giving it back never exceeds a bound.
                self.semaphore.state.release::<Kernel>();
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("value", &self.value()).finish()
            }
        }

        impl fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($guard))
            }
        }
    };
}

semaphore_type!(
    /// A semaphore shared by processes and threads (CPython `multiprocessing.Semaphore`): `value`
    /// units; acquiring takes one, waiting while there is none.
    ///
    /// A process that dies holding a unit does not give it back (as in CPython).
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let seats = multiproc::Semaphore::new(2)?;
    /// let a = seats.acquire();
    /// let b = seats.acquire();
    /// assert!(seats.try_acquire().is_none());
    /// drop(a);
    /// assert_eq!(seats.value(), 1);
    /// # drop(b);
    /// # Ok(())
    /// # }
    /// ```
    Semaphore,
    SemaphoreGuard,
    bounded: false
);

semaphore_type!(
    /// A semaphore that refuses to hold more units than it started with (CPython
    /// `multiprocessing.BoundedSemaphore`): [`release`](Self::release) beyond the initial value is
    /// an error.
    BoundedSemaphore,
    BoundedSemaphoreGuard,
    bounded: true
);

impl Semaphore {
    /// Gives a unit back (CPython `release()`), from any process or thread. (A semaphore already
    /// holding `u32::MAX` units stays there instead of overflowing.)
    pub fn release(&self) {
        self.state.release::<Kernel>();
    }
}

impl BoundedSemaphore {
    /// Gives a unit back; an error if the semaphore already holds its initial value (CPython:
    /// `ValueError: semaphore or lock released too many times`).
    pub fn release(&self) -> Result<()> {
        match self.state.release::<Kernel>() {
            true => Ok(()),
            false => Err(Error::InvalidState("semaphore released too many times (above its initial value)".into())),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sync::futex::testing::Yielding;

    #[test]
    fn units_are_counted_and_bounded() {
        let state = SemaphoreState::default();
        state.count.store(2, Ordering::SeqCst);
        state.max.store(2, Ordering::SeqCst);
        assert!(state.acquire::<Yielding>(Some(Duration::ZERO)));
        assert!(state.acquire::<Yielding>(Some(Duration::ZERO)));
        assert!(!state.acquire::<Yielding>(Some(Duration::ZERO)));
        assert!(state.release::<Yielding>());
        assert!(state.release::<Yielding>());
        assert!(!state.release::<Yielding>(), "bounded at 2");
        assert_eq!(state.value(), 2);
    }

    #[test]
    fn no_more_than_the_units_are_inside() {
        let state = Arc::new(SemaphoreState::default());
        state.count.store(3, Ordering::SeqCst);
        state.max.store(u32::MAX, Ordering::SeqCst);
        let inside = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (state, inside) = (Arc::clone(&state), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        assert!(state.acquire::<Yielding>(None));
                        assert!(inside.fetch_add(1, Ordering::SeqCst) < 3);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        state.release::<Yielding>();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(state.value(), 3);
    }
}
