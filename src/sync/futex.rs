//! What the state machines of this module need from the platform: sleeping on a 32-bit word until
//! it changes, waking sleepers, and (for the robust lock) whether a thread still lives. The kernel
//! serves processes; tests substitute their own implementations to drive the state machines on
//! their own.

use super::atomic::AtomicU32;
use std::time::Duration;

use crate::sys;

pub(crate) use crate::sys::ThreadLife;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Woken, or the word had already changed, or a signal: look at the state again.
    Retry,
    /// The timeout passed.
    TimedOut,
}

/// Sleeping on words and waking their sleepers.
pub(crate) trait Futex {
    /// Sleeps while `word` holds `expected`, at most `timeout`.
    fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Waited;
    /// Wakes up to `count` sleepers on `word`.
    fn wake(word: &AtomicU32, count: u32);
}

/// Whether threads live: the robust lock's dead-owner check asks it about its owner.
pub(crate) trait Threads {
    /// What is known of thread `tid` now.
    fn life(tid: u32) -> ThreadLife;
}

/// The kernel's shared futex: works across processes on memory they share.
#[derive(Debug)]
pub(crate) enum Kernel {}

#[cfg(not(loom))]
impl Futex for Kernel {
    fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Waited {
        match sys::futex_wait(word, expected, timeout) {
            sys::FutexWait::Retry => Waited::Retry,
            sys::FutexWait::TimedOut => Waited::TimedOut,
        }
    }

    fn wake(word: &AtomicU32, count: u32) {
        sys::futex_wake(word, count);
    }
}

/// The threads of this system, as `/proc` shows them.
impl Threads for Kernel {
    fn life(tid: u32) -> ThreadLife {
        sys::thread_life(tid)
    }
}

/// Under loom the words are loom's atomics, which the kernel cannot sleep on; the models use their
/// own futex (`loom_models`), and this one only yields.
#[cfg(loom)]
impl Futex for Kernel {
    fn wait(_word: &AtomicU32, _expected: u32, _timeout: Option<Duration>) -> Waited {
        loom::thread::yield_now();
        Waited::Retry
    }

    fn wake(_word: &AtomicU32, _count: u32) {}
}

pub(crate) use crate::deadline::Deadline;

#[cfg(all(test, not(loom)))]
pub(crate) mod testing {
    //! A futex for tests of the state machines: waits are short sleeps that count themselves.

    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{Futex, ThreadLife, Threads, Waited};

    pub(crate) static WAITS: AtomicUsize = AtomicUsize::new(0);

    /// Yields instead of sleeping; reports a timeout when asked for a zero one.
    #[derive(Debug)]
    pub(crate) enum Yielding {}

    impl Futex for Yielding {
        fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Waited {
            WAITS.fetch_add(1, Ordering::Relaxed);
            if word.load(Ordering::SeqCst) != expected {
                return Waited::Retry;
            }
            std::thread::yield_now();
            match timeout {
                Some(t) if t.is_zero() => Waited::TimedOut,
                _ => Waited::Retry,
            }
        }

        fn wake(_word: &AtomicU32, _count: u32) {}
    }

    /// The real threads of this system.
    impl Threads for Yielding {
        fn life(tid: u32) -> ThreadLife {
            crate::sys::thread_life(tid)
        }
    }
}
