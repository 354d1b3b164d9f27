//! Sleeping until a queue's state changes, and waking the sleepers: one wake-up call per burst.
//!
//! Each kind of wait (consumers for an item, producers for room, joiners for the last task done)
//! has a word that every change bumps, a count of registered sleepers and a `need` word. A
//! sleeper reads the word (before it last looks at the state it found wanting: its `seq`),
//! registers (count, then `need` = NEED | the newest `seq` of the sleepers registered), and sleeps
//! on the futex unless the word moved on. A waker, after its bump, reads the word (`now`) and
//! makes the wake-up call only if someone is registered and `need` is set; it clears `need` when
//! `now` is past the newest `seq` registered, since its call then reaches every registered sleeper
//! (each one either sleeps on an older value and is woken, or finds the word moved on). Further
//! changes while the woken sleepers get going make no system call; a sleeper that finds nothing
//! registers again, which sets `need` for the next change.
//!
//! A waker that is late (its `now` is the very value a sleeper registered with, so its call may
//! come before that sleeper sleeps) still calls, for older sleepers, but leaves `need` set for the
//! next change: clearing it there lost a wake-up (found by `queue::loom_models`; on the kernel's
//! futex the sleeper would have waited for its 100 ms slice).
//!
//! Why no wake-up is lost: the sleeper's stores (count, need) come before its last read of the
//! word, the waker's bump before its reads of count and need (sequentially consistent, see
//! `sync::atomic::handshake_fence`). Either the sleeper sees the bump and does not sleep, or the
//! waker sees it registered. `queue::loom_models` checks the protocol on every interleaving.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sync::atomic::{AtomicU32, AtomicU64, handshake_fence};
use crate::sync::futex::Futex;

/// In `need`: a registered sleeper waits for a wake-up call (the low 32 bits: the newest `seq`).
const NEED: u64 = 1 << 32;

/// Whether word value `a` comes after `b` (the words wrap around).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// One kind of wait: the word, the count of registered sleepers, the need of a wake-up call.
#[derive(Clone, Copy)]
pub(super) struct Sleep<'a> {
    pub(super) word: &'a AtomicU32,
    pub(super) waiters: &'a AtomicU32,
    pub(super) need: &'a AtomicU64,
}

impl Sleep<'_> {
    /// Whether the word moved on from `seq`.
    pub(super) fn moved(&self, seq: u32) -> bool {
        self.word.load(Ordering::SeqCst) != seq
    }

    /// Registers and sleeps until the word moves on from `seq` (or `slice` passes, or a spurious
    /// wake-up); the caller then looks at the state again.
    pub(super) fn sleep<F: Futex>(&self, seq: u32, slice: Option<Duration>) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut current = self.need.load(Ordering::SeqCst);
        loop {
            let newest = match current & NEED != 0 && !after(seq, current as u32) {
                true => current, // a sleeper with this seq or a newer one is registered already
                false => NEED | u64::from(seq),
            };
            match self.need.compare_exchange(current, newest, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        handshake_fence();
        if !self.moved(seq) {
            F::wait(self.word, seq, slice);
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// After a change that bumped the word: wakes the sleepers, unless none is registered or a
    /// wake-up call reached every one registered since.
    pub(super) fn wake<F: Futex>(&self) {
        handshake_fence();
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let now = self.word.load(Ordering::SeqCst);
        let mut current = self.need.load(Ordering::SeqCst);
        loop {
            if current & NEED == 0 {
                return;
            }
            if !after(now, current as u32) {
                break; // late: call for older sleepers, leave the need to the next change
            }
            match self.need.compare_exchange(current, u64::from(now), Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(again) => current = again,
            }
        }
        F::wake(self.word, u32::MAX);
    }
}
