//! The state machine of [`Lock`](super::Lock) and [`RLock`](super::RLock) (and of the locks inside
//! `Condition`, `Barrier`, the queues and the pipe rings): one 64-bit word that names the owner and
//! counts acquisitions, and the way back when an owner dies holding it.
//!
//! ```text
//! state  = generation (33 bits) | WAITERS (1 bit) | owner thread id (30 bits, 0 = free)
//! wake   = a counter that sleepers sleep on (futex); a release that sees WAITERS bumps it
//! record = (generation, low 24 bits | start time, 40 bits) of the latest recorded acquisition,
//!          written by its owner in one store
//! depth  = how many times the owner holds it (owner-only)
//! ```
//!
//! The whole state is 32 bytes, one cache line wherever it lies at a multiple of 32 (a queue's
//! lock shares no line with the queue's counters); the contended paths move that one line.
//!
//! **Acquiring** is one compare-and-swap from a free state `(g, 0)` to `(g + 1, me)`: every
//! acquisition, takeovers included, has a generation of its own. Someone who finds the lock held
//! first watches the state for a few microseconds (adaptive, see `spin`) and takes it if it comes
//! free; otherwise it reads the `wake` ticket, sets `WAITERS` (or sees it set) and sleeps on `wake`
//! while the ticket is unchanged. Whoever acquires after sleeping sets `WAITERS` in its own state
//! (others may still sleep), so that its release wakes the next. **Releasing** is one atomic
//! subtraction of the owner's id (the owner bits are the owner's own while it holds the lock; only
//! `WAITERS` may change meanwhile): it keeps the generation, and `WAITERS` too, which a free state
//! may carry; the next acquisition decides `WAITERS` for its own state, as above (nobody looks at
//! `WAITERS` while the lock is free). If `WAITERS` was set, the release bumps `wake` and wakes one
//! sleeper.
//! The sleeper reads its ticket before it looks at the state, and the releaser changes the state
//! before it bumps the ticket (SeqCst): a release after the sleeper's look is a bump the sleeper's
//! futex sees, so no wake-up is lost. A sleeper that gives up (its timeout) after being woken sets
//! `WAITERS` again if the lock is held without it, so that the others are still woken.
//!
//! **An owner that dies** (a process killed holding the lock) never releases it. Sleepers wait in
//! slices of [`LIVENESS_SLICE`]; after each, one that finds the lock held by another thread reads
//! the state `s = (g, tid)`, asks `/proc` about thread `tid`, and reads the record of generation
//! `g`. It takes the lock over, with one compare-and-swap from exactly `s` to `(g + 1, me)`, only if
//!
//! - no thread `tid` exists (or it is a zombie), or
//! - thread `tid` exists but started at another time than the record of generation `g` says.
//!
//! Why this never takes the lock from a live owner: the only thread that can hold generation `g` is
//! the one whose compare-and-swap created it, which had id `tid` then and wrote the record of `g`
//! (its start time) before doing anything else. Thread ids are unique among live threads, and a
//! thread id with a start time is unique for the life of the system. So in the first case, the
//! owner of `g` is gone; in the second, thread `tid` is a later thread that reuses the id, and the
//! owner of `g` is gone too. A missing or unreadable record, an unknown start time, or a `/proc`
//! that cannot be read all count as "alive": the check errs towards waiting, never towards a
//! takeover. The compare-and-swap then succeeds only if the state is still exactly `(g, tid)`,
//! that is, if generation `g` was never released; a dead owner never releases, and a new
//! acquisition would carry a new generation. (Generations wrap after 2^33 acquisitions: a taker
//! would have to stall between two instructions while some 8.6 billion acquisitions, about a minute
//! of nothing else at the fastest, end exactly on the generation it read.)
//!
//! The earlier design compared the owner id read before a sleep with the start time of whoever
//! held the lock at the check: when the same owner held the lock again with the same word, its
//! compare-and-swap succeeded against a live owner (issue 18). The generation in the same word as
//! the owner id is what rules that out; the kernel's robust futex list (which would mark the word
//! at the owner's death) was the alternative, but it is a per-thread list that the C library
//! already owns, and sharing it means writing into glibc's private list layout.
//!
//! Every compare-and-swap that acquires is acquire-release: whoever sees an acquisition in the
//! state also sees what the acquiring thread did before it (that it exists, in the loom models,
//! where thread lives are atomics; the kernel's `/proc` needs no help). The record is one word,
//! stored by the owner right after its compare-and-swap (release) and read whole (acquire), so it
//! is never seen half written. It keeps only the low 24 bits of the generation: a reader that finds
//! them equal to those of `g` holds the record of `g` itself. While the state is `(g, tid)`, no other
//! acquisition can happen, so the record is that of `g`, or (before the owner of `g` has written
//! it) of the latest acquisition before `g` whose owner lived to write one; to look like the record
//! of `g`, that one would have to lie 2^24 generations back, which takes some 16 million owners in
//! a row dying between their compare-and-swap and their record. A record read after the state has
//! moved on may be that of a later generation `g + k·2^24`, but then the takeover's
//! compare-and-swap from `(g, tid)` fails. A start time that needs more than 40 bits (348 years of
//! clock ticks) is recorded as 0, unknown. A takeover marks the lock `died` (with the dead thread's id): every
//! acquirer is told, until one of them declares the protected state consistent again (`recover`).
//! A lock with no sleepers at the owner's death is taken over by the next acquirer in the same way,
//! within one slice. A thread that finds its own id as the owner but another start time in the
//! record is a later thread with a recycled id: it takes over at once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::atomic::{AtomicU32, AtomicU64, handshake_fence};
use super::futex::{Deadline, Futex, Kernel, ThreadLife, Threads, Waited};
use super::spin::SpinState;
use crate::shm::ShmSafe;

/// The bits of the state that hold the owner's thread id (the kernel's `FUTEX_TID_MASK`: every
/// Linux thread id fits).
const TID_BITS: u32 = 30;
const TID_MASK: u64 = (1 << TID_BITS) - 1;
/// The bit of the state that says sleepers may be waiting.
const WAITERS: u64 = 1 << TID_BITS;
/// The generation takes the bits above.
const GENERATION_SHIFT: u32 = TID_BITS + 1;
/// The record keeps the low bits of the generation above the owner's start time.
const RECORD_START_BITS: u32 = 40;
const RECORD_START_MASK: u64 = (1 << RECORD_START_BITS) - 1;
/// The flag of `died`; the bits below hold the dead thread's id.
const DIED: u32 = 1 << 31;

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

/// The owner's thread id in `state`, 0 while free.
fn owner_of(state: u64) -> u32 {
    (state & TID_MASK) as u32
}

/// The generation in `state`.
fn generation(state: u64) -> u64 {
    state >> GENERATION_SHIFT
}

/// The state after `state` when thread `me` acquires: the next generation (wrapping), `me`, and
/// `WAITERS` if asked.
fn successor(state: u64, me: u32, waiters: bool) -> u64 {
    // Bits shifted past the top are dropped: the generation wraps.
    let next = generation(state).wrapping_add(1) << GENERATION_SHIFT;
    next | if waiters { WAITERS } else { 0 } | (u64::from(me) & TID_MASK)
}

/// The record of the acquisition `state` by a thread started at `start`: the low 24 bits of the
/// generation, and the start time (0, unknown, if it needs more than 40 bits: 348 years of clock
/// ticks).
fn record(state: u64, start: u64) -> u64 {
    let start = if start > RECORD_START_MASK { 0 } else { start };
    (generation(state) << RECORD_START_BITS) | start
}

/// Whether `record` is the record of generation `generation` (its low 24 bits; see the module docs
/// for why they suffice).
fn records(record: u64, generation: u64) -> bool {
    record >> RECORD_START_BITS == generation & (u64::MAX >> RECORD_START_BITS)
}

/// The shared state of a lock.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct LockState {
    /// Generation, `WAITERS` and owner (see the module docs).
    state: AtomicU64,
    /// The sleepers' futex: bumped by a release that saw `WAITERS`.
    wake: AtomicU32,
    /// 0 while consistent; `DIED | thread` once an owner died holding the lock, until recovered.
    died: AtomicU32,
    /// The record of the latest recorded acquisition: its generation (low bits) and its owner's
    /// start time (see [`record`]).
    record: AtomicU64,
    /// How many times the owner holds it (recursive locks); owner-only.
    depth: AtomicU32,
    /// How long an acquirer watches a held lock before it sleeps.
    spin: SpinState,
}

// SAFETY: atomics only; zero is the free state (generation 0, whose record says start time 0:
// unknown); no pointers, no drop glue.
#[allow(unsafe_code, reason = "the ShmSafe promise for a state of atomics")]
unsafe impl ShmSafe for LockState {}

impl LockState {
    /// Acquires for thread `me` (started at `start`), waiting up to `timeout` (`Some(ZERO)`: try
    /// once). With `recursive`, the owner acquires again and the depth counts it.
    #[inline]
    pub(crate) fn acquire<F: Futex + Threads>(
        &self,
        (me, start): (u32, u64),
        timeout: Option<Duration>,
        recursive: bool,
    ) -> Acquired {
        let seen = self.state.load(Ordering::Relaxed);
        if owner_of(seen) == 0 {
            let mine = successor(seen, me, false);
            if self.state.compare_exchange(seen, mine, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return self.became_owner(mine, start, None);
            }
        }
        self.acquire_held::<F>((me, start), timeout, recursive)
    }

    /// [`acquire`](Self::acquire) of a lock found held (or lost to another acquirer).
    #[inline(never)]
    fn acquire_held<F: Futex + Threads>(
        &self,
        (me, start): (u32, u64),
        timeout: Option<Duration>,
        recursive: bool,
    ) -> Acquired {
        let deadline = Deadline::after(timeout);
        // Whether this acquirer has watched the lock spinning, and whether it has slept on it.
        let (mut spun, mut slept) = (false, false);
        loop {
            // The ticket first, then the state: a release after this look at the state bumps the
            // ticket after it, and the futex below then does not sleep (or is woken).
            let ticket = self.wake.load(Ordering::SeqCst);
            handshake_fence();
            let current = self.state.load(Ordering::SeqCst);
            let owner = owner_of(current);
            if owner == 0 {
                // Taken after sleeping: keep WAITERS, others may sleep. Taken after spinning only:
                // a sleeper that the last release woke sets WAITERS again if it has to sleep again.
                let mine = successor(current, me, slept);
                if self.state.compare_exchange(current, mine, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    return self.became_owner(mine, start, None);
                }
                continue;
            }
            if owner == me {
                if self.recorded_start(generation(current)) == Some(start) {
                    if !recursive {
                        return Acquired::Deadlock;
                    }
                    self.depth.store(self.depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    return Acquired::Clean;
                }
                // Our id, but not us: an earlier thread with this id died holding the lock (the
                // owner records its start time before anything else, and this thread is not in
                // the middle of acquiring).
                let mine = successor(current, me, slept || current & WAITERS != 0);
                if self.state.compare_exchange(current, mine, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    return self.became_owner(mine, start, Some(me));
                }
                continue;
            }
            if deadline.passed() {
                if slept {
                    self.keep_sleepers_visible(current);
                }
                return Acquired::No;
            }
            // Once per acquisition, watch the state before sleeping: a lock held briefly is taken
            // without a sleep, and its release then wakes nobody.
            if !spun {
                spun = true;
                self.spin.spin(deadline, || owner_of(self.state.load(Ordering::Relaxed)) == 0);
                continue;
            }
            if current & WAITERS == 0
                && self.state.compare_exchange(current, current | WAITERS, Ordering::SeqCst, Ordering::Relaxed).is_err()
            {
                continue;
            }
            let slice = deadline.left().map_or(LIVENESS_SLICE, |left| left.min(LIVENESS_SLICE));
            slept = true;
            if F::wait(&self.wake, ticket, Some(slice)) == Waited::TimedOut
                && !deadline.passed()
                && let Some(acquired) = self.take_over_if_dead::<F>(me, start)
            {
                return acquired;
            }
        }
    }

    /// Takes the lock over for thread `me` (started at `start`) if it is held by a thread that
    /// died; `None` if it is free or its owner may live. For a waiter that depends on the state
    /// this lock protects without taking it (a queue's consumer on its producers' lock), after a
    /// slice without news.
    pub(crate) fn take_over_abandoned<T: Threads>(&self, (me, start): (u32, u64)) -> Option<Acquired> {
        self.take_over_if_dead::<T>(me, start)
    }

    /// After a whole slice without a wake-up: takes the lock over if its owner is dead (see the
    /// module docs for why a live owner is never judged dead).
    fn take_over_if_dead<T: Threads>(&self, me: u32, start: u64) -> Option<Acquired> {
        let current = self.state.load(Ordering::Acquire);
        let owner = owner_of(current);
        if owner == 0 || owner == me || self.holder_alive::<T>(current) {
            return None;
        }
        let mine = successor(current, me, true);
        self.state.compare_exchange(current, mine, Ordering::AcqRel, Ordering::Relaxed).ok()?;
        Some(self.became_owner(mine, start, Some(owner)))
    }

    /// A waiter that gives up after sleeping may have been the one a release woke: if the lock is
    /// now held without `WAITERS` (a spinner took it), set it, so that the release wakes the
    /// sleepers still there. At worst a release then wakes nobody in vain.
    fn keep_sleepers_visible(&self, current: u64) {
        if owner_of(current) != 0 && current & WAITERS == 0 {
            let _ = self.state.compare_exchange(current, current | WAITERS, Ordering::SeqCst, Ordering::Relaxed);
        }
    }

    /// Records the new owner of the generation in `state`; reports a dead predecessor (now, or
    /// one not yet recovered from).
    #[inline]
    fn became_owner(&self, state: u64, start: u64, died: Option<u32>) -> Acquired {
        self.record.store(record(state, start), Ordering::Release);
        self.depth.store(1, Ordering::Relaxed);
        if let Some(dead) = died {
            self.died.store(DIED | dead, Ordering::Release);
        }
        match self.died.load(Ordering::Acquire) {
            0 => Acquired::Clean,
            died => Acquired::OwnerDied(died & !DIED),
        }
    }

    /// The start time recorded by the owner of `generation`, if that record is complete and still
    /// there.
    fn recorded_start(&self, generation: u64) -> Option<u64> {
        let record = self.record.load(Ordering::Acquire);
        records(record, generation).then_some(record & RECORD_START_MASK)
    }

    /// Whether the owner of the acquisition `state` may still live. Only "certainly dead" is
    /// false: a thread that is gone, or a later thread with the owner's id.
    fn holder_alive<T: Threads>(&self, state: u64) -> bool {
        match T::life(owner_of(state)) {
            ThreadLife::Gone => false,
            ThreadLife::Unknown => true,
            ThreadLife::Alive(started) => match self.recorded_start(generation(state)) {
                Some(recorded) if recorded != 0 && started != 0 => recorded == started,
                _ => true,
            },
        }
    }

    /// The owner declares the protected state consistent after a predecessor's death.
    pub(crate) fn recover(&self) {
        self.died.store(0, Ordering::Release);
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
        // Free: the owner bits are ours and stay so while we hold the lock (only WAITERS can
        // change meanwhile), so one subtraction clears them and keeps the generation (and WAITERS:
        // the next acquisition decides its own, see the module docs). Reading the owner bits
        // first costs a transfer only when an acquirer wrote the line meanwhile: a lock taken
        // once uses `release_once`, which does not read them.
        let owner = self.state.load(Ordering::Relaxed) & TID_MASK;
        let before = self.state.fetch_sub(owner, Ordering::SeqCst);
        self.wake_after_release::<F>(before);
    }

    /// [`release`](Self::release) of a lock that thread `me` took once (never recursively): one
    /// read-modify-write of the state, with no look at the depth or the owner before it.
    ///
    /// An acquirer on another core (two producers on a queue's put lock, two processes on a
    /// `Lock`) that writes the state's line while the lock is held (a compare-and-swap that
    /// loses, the waiters' bit, its spinning state, all on that line) takes it from the holder:
    /// each look then fetched the line back, and the read-modify-write had to take it over once
    /// more, two transfers (50-65 ns each between the two cores of the VM in `bench/README.md`)
    /// where one will do.
    #[inline]
    pub(crate) fn release_once<F: Futex>(&self, me: u32) {
        let owner = u64::from(me) & TID_MASK;
        debug_assert_eq!(self.state.load(Ordering::Relaxed) & TID_MASK, owner, "released by its owner");
        debug_assert!(self.depth.load(Ordering::Relaxed) <= 1, "a lock taken recursively is released with `release`");
        let before = self.state.fetch_sub(owner, Ordering::SeqCst);
        self.wake_after_release::<F>(before);
    }

    /// After a release that found `before`: wakes a sleeper if any may wait.
    #[inline]
    fn wake_after_release<F: Futex>(&self, before: u64) {
        if before & WAITERS != 0 {
            handshake_fence();
            self.wake.fetch_add(1, Ordering::SeqCst);
            F::wake(&self.wake, 1);
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
        self.died.load(Ordering::Acquire) != 0
    }

    /// Whether the lock is held by a thread that certainly died holding it.
    pub(crate) fn holder_died(&self) -> bool {
        let state = self.state.load(Ordering::Acquire);
        owner_of(state) != 0 && !self.holder_alive::<Kernel>(state)
    }

    /// Whether anyone holds the lock.
    pub(crate) fn locked(&self) -> bool {
        owner_of(self.state.load(Ordering::Relaxed)) != 0
    }

    /// The thread id of the holder, `None` while the lock is free (for `Debug`).
    pub(crate) fn owner(&self) -> Option<u32> {
        match owner_of(self.state.load(Ordering::Relaxed)) {
            0 => None,
            tid => Some(tid),
        }
    }

    /// How many times the holder holds the lock, 0 while it is free (for `Debug`: read by any
    /// thread, it is a snapshot).
    pub(crate) fn depth(&self) -> u32 {
        if self.locked() { self.depth.load(Ordering::Relaxed).max(1) } else { 0 }
    }

    /// Whether thread `me` (started at `start`) holds the lock: its id, and its start time in the
    /// record (not an earlier thread with the same id).
    pub(crate) fn held_by(&self, (me, start): (u32, u64)) -> bool {
        let state = self.state.load(Ordering::Relaxed);
        owner_of(state) == me && self.recorded_start(generation(state)) == Some(start)
    }

    /// Stands in for an owner that died: the next generation, owned by thread `ghost` started at
    /// `start`, recorded as an owner records it.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn abandon_to(&self, ghost: u32, start: u64) {
        let state = successor(self.state.load(Ordering::SeqCst), ghost, false);
        self.state.store(state, Ordering::SeqCst);
        self.record.store(record(state, start), Ordering::SeqCst);
        self.depth.store(1, Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sync::futex::testing::Yielding;
    use crate::sys;

    const ME: (u32, u64) = (1001, 7);

    #[test]
    fn acquire_release_and_recursion() {
        let lock = LockState::default();
        assert_eq!(lock.acquire::<Yielding>(ME, None, false), Acquired::Clean);
        assert!(lock.locked() && lock.held_by(ME));
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

    #[test]
    fn our_own_id_held_by_an_earlier_thread_is_taken_over() {
        let lock = LockState::default();
        // Our thread id, another start time: an earlier thread with our id died holding it.
        let (me, start) = sys::current_thread();
        lock.abandon_to(me, start + 1);
        assert!(!lock.held_by((me, start)));
        assert_eq!(lock.acquire::<Yielding>((me, start), Some(Duration::ZERO), false), Acquired::OwnerDied(me));
        assert!(lock.held_by((me, start)));
        lock.recover();
        assert_eq!(lock.acquire::<Yielding>((me, start), Some(Duration::ZERO), false), Acquired::Deadlock);
        lock.release::<Yielding>();
        assert!(!lock.locked());
    }

    #[test]
    fn every_acquisition_has_a_generation_of_its_own() {
        let lock = LockState::default();
        let mut seen = Vec::new();
        for _ in 0..3 {
            lock.acquire::<Yielding>(ME, None, false);
            seen.push(lock.state.load(Ordering::Relaxed));
            lock.release::<Yielding>();
        }
        assert!(seen.iter().all(|&s| owner_of(s) == ME.0));
        assert!(seen.windows(2).all(|w| generation(w[1]) == generation(w[0]) + 1), "{seen:x?}");
        // The generation wraps without touching the owner bits.
        let last = (1u64 << (64 - GENERATION_SHIFT)) - 1;
        assert_eq!(successor(last << GENERATION_SHIFT, 7, true), WAITERS | 7);
    }

    #[test]
    fn the_record_names_its_generation_by_its_low_bits() {
        let g = (1u64 << 24) + 5;
        let state = g << GENERATION_SHIFT | 7;
        let r = record(state, 1234);
        assert!(records(r, g) && records(r, 5), "the low 24 bits");
        assert!(!records(r, g + 1));
        assert_eq!(r & RECORD_START_MASK, 1234);
        assert_eq!(record(state, 1 << 41) & RECORD_START_MASK, 0, "a start time too big is unknown");
    }

    /// A release subtracts the owner's id: the free state keeps `WAITERS` (and the generation); the
    /// next acquirer, which did not sleep, takes the lock without it.
    #[test]
    fn a_release_leaves_waiters_to_the_next_acquisition() {
        let lock = LockState::default();
        assert_eq!(lock.acquire::<Yielding>(ME, None, false), Acquired::Clean);
        let held = lock.state.fetch_or(WAITERS, Ordering::SeqCst) | WAITERS;
        lock.release::<Yielding>();
        let free = lock.state.load(Ordering::SeqCst);
        assert_eq!(free, held & !TID_MASK, "{held:x} -> {free:x}");
        assert!(!lock.locked());
        assert_eq!(lock.wake.load(Ordering::SeqCst), 1, "the release saw WAITERS and bumped the ticket");
        assert_eq!(lock.acquire::<Yielding>(ME, None, false), Acquired::Clean);
        let now = lock.state.load(Ordering::SeqCst);
        assert_eq!(now, successor(free, ME.0, false));
        assert_eq!(now & WAITERS, 0);
        lock.release::<Yielding>();
    }

    /// The ABA of issue 18, step by step: a waiter reads the state `(g, X)` held by a live owner;
    /// then the owner releases, another thread takes the lock, and the owner takes it again. The
    /// waiter's owner check now sees X alive but a record of another generation: it must not take
    /// the lock over (the old design compared X's start time with the record of whoever held the
    /// lock at the check, and took the lock from X).
    #[test]
    fn a_live_owner_that_took_the_lock_again_is_not_taken_over() {
        let lock = LockState::default();
        let x = sys::current_thread();
        let other = std::thread::spawn(sys::current_thread).join().unwrap();
        assert_eq!(lock.acquire::<Yielding>(x, None, false), Acquired::Clean);
        let seen_by_waiter = lock.state.load(Ordering::SeqCst);
        lock.release::<Yielding>();
        assert_eq!(lock.acquire::<Yielding>((other.0, other.1), None, false), Acquired::Clean);
        // The waiter's check runs now: X is alive and not the owner of this generation.
        assert!(lock.holder_alive::<Yielding>(seen_by_waiter), "X lives: its acquisition is not judged dead");
        lock.release::<Yielding>();
        assert_eq!(lock.acquire::<Yielding>(x, None, false), Acquired::Clean);
        // X holds the lock again, with the same owner bits, but another generation: the waiter's
        // compare-and-swap from what it read fails.
        let now = lock.state.load(Ordering::SeqCst);
        assert_eq!(owner_of(now), owner_of(seen_by_waiter));
        assert_ne!(now, seen_by_waiter);
        assert!(lock.holder_alive::<Yielding>(now), "the live owner of the current generation");
        lock.release::<Yielding>();
    }
}
