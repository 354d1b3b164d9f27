//! The state machine of [`Lock`](super::Lock) and [`RLock`](super::RLock): a futex word that
//! holds its owner's thread id, and the way back when an owner dies holding it.
//!
//! ```text
//! word = 0                      free
//! word = tid                    held by thread `tid`, nobody sleeps
//! word = tid | WAITERS          held, and someone may sleep on the word
//! ```
//!
//! Acquiring is one compare-and-swap from 0 to the caller's thread id. Someone who finds the lock
//! held first watches the word for a few microseconds (adaptive, see `spin`) and takes it without
//! `WAITERS` if it comes free; otherwise it sets `WAITERS` and sleeps on the word. Whoever acquires
//! after sleeping keeps `WAITERS` set (others may still sleep), so that its release wakes the next;
//! a sleeper woken for a lock that a spinner took sets `WAITERS` again before it sleeps again.
//! Releasing swaps back to 0 and, if `WAITERS` was set, wakes one sleeper.
//!
//! **An owner that dies** (a process killed while holding the lock) never releases it. Sleepers
//! wait in slices of [`LIVENESS_SLICE`]; after each, one that still finds the lock held checks that
//! the owner's thread exists and is the one that acquired it (its start time is recorded next to
//! the word, which tells a recycled thread id). If not, it takes the lock over with a
//! compare-and-swap and the flag `owner_died` is set: every acquirer is told, until one of them
//! declares the protected state consistent again (`recover`). A lock with no sleepers at the
//! owner's death is taken over by the next acquirer in the same way, within one slice.

use std::sync::atomic::Ordering;

use super::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use super::futex::{Deadline, Futex, Waited};
use super::spin::SpinState;
use crate::shm::ShmSafe;
use crate::sys;

/// The bit of the word that says sleepers may be waiting.
pub(crate) const WAITERS: u32 = 1 << 31;
const TID_MASK: u32 = !WAITERS;

/// How long a sleeper waits before it checks that the owner still lives.
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(100);

/// How an acquisition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lock is ours and consistent.
    Clean,
    /// The lock is ours, but a previous owner died holding it (thread id, 0 if unknown) and nobody
    /// has recovered it since.
    OwnerDied(u32),
    /// Not acquired: held by someone else (try) or the time ran out.
    No,
    /// Not acquired: the calling thread holds it already (a `Lock` is not recursive).
    Deadlock,
}

/// The shared state of a lock.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct LockState {
    word: AtomicU32,
    /// How many times the owner holds it (recursive locks); owner-only.
    depth: AtomicU32,
    /// The owner's thread start time (0 while unknown), to tell a recycled thread id.
    owner_start: AtomicU64,
    /// Set when an owner died holding the lock, until an acquirer recovers.
    owner_died: AtomicU32,
    /// The thread id of the owner that died, for the report.
    dead_owner: AtomicU32,
    /// How long an acquirer watches a held lock before it sleeps.
    spin: SpinState,
}

// SAFETY: atomics only; zero is the free state; no pointers, no drop glue.
unsafe impl ShmSafe for LockState {}

impl LockState {
    /// Acquires for thread `me` (started at `start`), waiting up to `timeout` (`Some(ZERO)`: try
    /// once). With `recursive`, the owner acquires again and the depth counts it.
    #[inline]
    pub(crate) fn acquire<F: Futex>(
        &self,
        (me, start): (u32, u64),
        timeout: Option<Duration>,
        recursive: bool,
    ) -> Acquired {
        match self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => self.became_owner(start, None),
            Err(current) => self.acquire_held::<F>((me, start), current, timeout, recursive),
        }
    }

    /// [`acquire`](Self::acquire) of a lock found held (word `current`).
    #[inline(never)]
    fn acquire_held<F: Futex>(
        &self,
        (me, start): (u32, u64),
        mut current: u32,
        timeout: Option<Duration>,
        recursive: bool,
    ) -> Acquired {
        let deadline = Deadline::after(timeout);
        // Whether this acquirer has watched the lock spinning, and whether it has slept on it.
        let (mut spun, mut slept) = (false, false);
        loop {
            if current == 0 {
                // Taken after sleeping: keep WAITERS, others may sleep. Taken after spinning only:
                // a sleeper that the last release woke sets WAITERS again if it has to sleep again.
                let mine = if slept { me | WAITERS } else { me };
                match self.word.compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return self.became_owner(start, None),
                    Err(now) => current = now,
                }
                continue;
            }
            let owner = current & TID_MASK;
            if owner == me {
                if !recursive {
                    return Acquired::Deadlock;
                }
                self.depth.store(self.depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                return Acquired::Clean;
            }
            if deadline.passed() {
                return Acquired::No;
            }
            // Once per acquisition, watch the word before sleeping: a lock held briefly is taken
            // without a sleep, and its release then wakes nobody.
            if !spun {
                spun = true;
                self.spin.spin(deadline, || self.word.load(Ordering::Relaxed) == 0);
                current = self.word.load(Ordering::Relaxed);
                continue;
            }
            if current & WAITERS == 0 {
                if let Err(now) =
                    self.word.compare_exchange(current, current | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                {
                    current = now;
                    continue;
                }
                current |= WAITERS;
            }
            let slice = deadline.left().map_or(LIVENESS_SLICE, |left| left.min(LIVENESS_SLICE));
            slept = true;
            if F::wait(&self.word, current, Some(slice)) == Waited::TimedOut && !deadline.passed() {
                // A whole slice without a release: is the owner still there? Before taking over,
                // forget the dead owner's start time: until the taker records its own, others
                // must not judge it by the dead one's (0 means "do not judge").
                if !self.owner_alive(owner) {
                    self.owner_start.store(0, Ordering::Relaxed);
                    if self.word.compare_exchange(current, me | WAITERS, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                        return self.became_owner(start, Some(owner));
                    }
                }
            }
            current = self.word.load(Ordering::Relaxed);
        }
    }

    /// Records the new owner; reports a dead predecessor (now or not yet recovered from).
    #[inline]
    fn became_owner(&self, start: u64, died: Option<u32>) -> Acquired {
        self.owner_start.store(start, Ordering::Relaxed);
        self.depth.store(1, Ordering::Relaxed);
        if let Some(dead) = died {
            self.dead_owner.store(dead, Ordering::Relaxed);
            self.owner_died.store(1, Ordering::Release);
        }
        match self.owner_died.load(Ordering::Acquire) {
            0 => Acquired::Clean,
            _ => Acquired::OwnerDied(self.dead_owner.load(Ordering::Relaxed)),
        }
    }

    /// Whether thread `owner` lives and is the thread that acquired (not a recycled id).
    fn owner_alive(&self, owner: u32) -> bool {
        let recorded = self.owner_start.load(Ordering::Relaxed);
        match sys::thread_start_time(owner) {
            None => false,
            // Zero: the owner has not recorded its start time yet; give it the benefit of the doubt.
            Some(started) => recorded == 0 || started == recorded,
        }
    }

    /// The owner declares the protected state consistent after a predecessor's death.
    pub(crate) fn recover(&self) {
        self.owner_died.store(0, Ordering::Release);
    }

    /// Releases once (recursive locks: the last release frees it). Only the owner may call this.
    #[inline]
    pub(crate) fn release<F: Futex>(&self) {
        // Only the owner touches the depth: no read-modify-write needed.
        let depth = self.depth.load(Ordering::Relaxed);
        if depth > 1 {
            self.depth.store(depth - 1, Ordering::Relaxed);
            return;
        }
        self.owner_start.store(0, Ordering::Relaxed);
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            F::wake(&self.word, 1);
        }
    }

    /// Fully releases a recursive lock held by the caller, returning its depth (for a condition
    /// wait), and [`restore`](Self::restore) takes it back.
    pub(crate) fn release_all<F: Futex>(&self) -> u32 {
        let depth = self.depth.load(Ordering::Relaxed);
        self.depth.store(1, Ordering::Relaxed);
        self.release::<F>();
        depth
    }

    /// After a re-acquisition: sets the depth saved by [`release_all`](Self::release_all).
    pub(crate) fn restore(&self, depth: u32) {
        self.depth.store(depth, Ordering::Relaxed);
    }

    /// Whether an owner died holding the lock and nobody recovered since.
    pub(crate) fn inconsistent(&self) -> bool {
        self.owner_died.load(Ordering::Acquire) != 0
    }

    /// Whether the lock is held by a thread that no longer exists (it died holding the lock).
    pub(crate) fn holder_died(&self) -> bool {
        let word = self.word.load(Ordering::Relaxed);
        word != 0 && !self.owner_alive(word & TID_MASK)
    }

    /// Whether anyone holds the lock.
    pub(crate) fn locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// The thread id of the holder, `None` while the lock is free (for `Debug`).
    pub(crate) fn owner(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) & TID_MASK {
            0 => None,
            tid => Some(tid),
        }
    }

    /// How many times the holder holds the lock, 0 while it is free (for `Debug`: read by any
    /// thread, it is a snapshot).
    pub(crate) fn depth(&self) -> u32 {
        if self.locked() { self.depth.load(Ordering::Relaxed).max(1) } else { 0 }
    }

    /// Whether thread `me` holds the lock.
    pub(crate) fn held_by(&self, me: u32) -> bool {
        self.word.load(Ordering::Relaxed) & TID_MASK == me
    }

    /// Stands in for an owner that died: sets the word to a thread id that does not exist.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn abandon_to(&self, ghost: u32, start: u64) {
        self.word.store(ghost, Ordering::SeqCst);
        self.owner_start.store(start, Ordering::SeqCst);
        self.depth.store(1, Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sync::futex::testing::Yielding;

    const ME: (u32, u64) = (1001, 7);

    #[test]
    fn acquire_release_and_recursion() {
        let lock = LockState::default();
        assert_eq!(lock.acquire::<Yielding>(ME, None, false), Acquired::Clean);
        assert!(lock.locked() && lock.held_by(ME.0));
        assert_eq!(lock.acquire::<Yielding>(ME, Some(Duration::ZERO), false), Acquired::Deadlock);
        assert_eq!(lock.acquire::<Yielding>((1002, 1), Some(Duration::ZERO), false), Acquired::No);
        lock.release::<Yielding>();
        assert!(!lock.locked());

        assert_eq!(lock.acquire::<Yielding>(ME, None, true), Acquired::Clean);
        assert_eq!(lock.acquire::<Yielding>(ME, None, true), Acquired::Clean);
        lock.release::<Yielding>();
        assert!(lock.locked());
        lock.release::<Yielding>();
        assert!(!lock.locked());
    }

    #[test]
    fn release_all_and_restore_keep_the_depth() {
        let lock = LockState::default();
        for _ in 0..3 {
            lock.acquire::<Yielding>(ME, None, true);
        }
        let depth = lock.release_all::<Yielding>();
        assert_eq!(depth, 3);
        assert!(!lock.locked());
        lock.acquire::<Yielding>(ME, None, true);
        lock.restore(depth);
        for _ in 0..3 {
            lock.release::<Yielding>();
        }
        assert!(!lock.locked());
    }

    #[test]
    fn threads_exclude_each_other() {
        let lock = Arc::new(LockState::default());
        let inside = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4u32)
            .map(|i| {
                let (lock, inside) = (Arc::clone(&lock), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        assert_eq!(lock.acquire::<Yielding>((2000 + i, 1), None, false), Acquired::Clean);
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        lock.release::<Yielding>();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(!lock.locked());
    }

    #[test]
    fn a_dead_owner_is_taken_over_and_reported_until_recovered() {
        let lock = LockState::default();
        // No thread has id 0x3fff_fff0 (above any pid_max).
        lock.abandon_to(0x3fff_fff0, 99);
        let (me, start) = sys::current_thread();
        let got = lock.acquire::<crate::sync::futex::Kernel>((me, start), Some(Duration::from_secs(5)), false);
        assert_eq!(got, Acquired::OwnerDied(0x3fff_fff0));
        lock.release::<crate::sync::futex::Kernel>();
        // Not recovered: the next acquirer is told too.
        assert_eq!(lock.acquire::<Yielding>((me, start), None, false), Acquired::OwnerDied(0x3fff_fff0));
        lock.recover();
        lock.release::<Yielding>();
        assert_eq!(lock.acquire::<Yielding>((me, start), None, false), Acquired::Clean);
    }

    #[test]
    fn a_recycled_thread_id_is_not_the_owner() {
        let lock = LockState::default();
        // Our own thread id, but with another start time: a previous thread of that id died.
        let (me, start) = sys::current_thread();
        let other = std::thread::spawn(move || {
            lock.abandon_to(me, start + 12345);
            let got =
                lock.acquire::<crate::sync::futex::Kernel>(sys::current_thread(), Some(Duration::from_secs(5)), false);
            (got, lock)
        });
        let (got, _lock) = other.join().unwrap();
        assert_eq!(got, Acquired::OwnerDied(me));
    }
}
