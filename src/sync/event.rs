//! [`Event`]: a flag that processes can wait for.

use std::fmt;
use std::sync::atomic::Ordering;

use super::atomic::{AtomicU32, handshake_fence};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::futex::{Deadline, Futex, Kernel};
use super::spin::SpinState;
use crate::error::Result;
use crate::shm::{Shared, ShmSafe};

#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct EventState {
    flag: AtomicU32,
    sleepers: AtomicU32,
    /// How long a waiter watches the flag before it sleeps.
    spin: SpinState,
}

// SAFETY: atomics only; zero is the cleared state; no pointers, no drop glue.
#[allow(unsafe_code, reason = "the ShmSafe promise for a state of atomics")]
unsafe impl ShmSafe for EventState {}

impl EventState {
    pub(crate) fn set<F: Futex>(&self) {
        self.flag.store(1, Ordering::SeqCst);
        handshake_fence();
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            F::wake(&self.flag, u32::MAX);
        }
    }

    pub(crate) fn wait<F: Futex>(&self, timeout: Option<Duration>) -> bool {
        let deadline = Deadline::after(timeout);
        let mut spun = false;
        loop {
            if self.flag.load(Ordering::SeqCst) != 0 {
                return true;
            }
            if deadline.passed() {
                return false;
            }
            // Once per wait, watch the flag before sleeping (a `set` then wakes nobody).
            if !spun {
                spun = true;
                if self.spin.spin(deadline, || self.flag.load(Ordering::Relaxed) != 0) {
                    continue;
                }
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            handshake_fence();
            F::wait(&self.flag, 0, deadline.left());
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A flag shared by processes and threads (CPython `multiprocessing.Event`): [`wait`](Self::wait)
/// blocks until some process calls [`set`](Self::set).
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let ready = multiproc::Event::new()?;
/// assert!(!ready.wait_timeout(std::time::Duration::ZERO));
/// ready.set();
/// assert!(ready.wait_timeout(std::time::Duration::ZERO));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Event {
    state: Shared<EventState>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event> {
        Ok(Event { state: Shared::new()? })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.state.set::<Kernel>();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state.flag.store(0, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state.flag.load(Ordering::SeqCst) != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.state.wait::<Kernel>(None);
    }

    /// Waits up to `timeout`; returns the flag (CPython `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.state.wait::<Kernel>(Some(timeout))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}
