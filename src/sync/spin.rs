//! Adaptive spinning before a futex wait (or a blocking receive).
//!
//! A waiter that sleeps on a futex must be woken by a `FUTEX_WAKE` from the process that changes
//! the state: on the machines this crate targets that costs a system call on each side and a
//! cross-CPU wake-up, nearly all of a hand-over (on the 2-vCPU VM of `bench/README.md`, a round
//! trip through two semaphores between two processes takes 12–14 µs when both sides sleep,
//! 0.15 µs when they spin). So a waiter that finds the state not ready first watches it for a short
//! budget, and only then registers as a sleeper; a state that changes while it watches needs no
//! wake-up, and the side that changes it sees no sleeper and makes no system call.
//!
//! Connections use the same state before a receive blocks on their socket (`connection::frame`).
//!
//! The budget adapts per primitive (or connection), in its state, so that spinning only costs CPU
//! where it pays:
//! - a state that becomes ready while spinning restores the full budget ([`MAX_BUDGET_NS`]);
//! - a wait that had to sleep halves it, down to nothing after a few misses (a primitive that is
//!   held or awaited for long, or a single CPU shared with the other side, where spinning only
//!   delays it);
//! - with no budget left, every [`REPROBE_EVERY`]th sleeping wait tries a short spin again, to
//!   notice when hand-overs become quick.
//!
//! The counters are updated without read-modify-write cycles: racing waiters may lose an update,
//! which only makes the budget adapt a step later. At worst a wait spends [`MAX_BUDGET_NS`] of CPU
//! (never more than its own timeout) before it sleeps.

use std::sync::atomic::Ordering;

use super::atomic::AtomicU32;
use std::time::{Duration, Instant};

use super::futex::Deadline;

/// The longest a waiter spins, in nanoseconds.
pub(crate) const MAX_BUDGET_NS: u32 = 20_000;

/// The budget of a re-probe.
const PROBE_BUDGET_NS: u32 = 5_000;

/// Budgets below this are not worth a spin.
const MIN_BUDGET_NS: u32 = 2_000;

/// How often a primitive with no budget tries again.
const REPROBE_EVERY: u32 = 16;

/// How many pauses between two looks at the clock (a pause takes some 10 to 40 ns).
const PAUSES_PER_CLOCK: u32 = 4;

/// The spinning state of one primitive, in its shared memory. All zeros (fresh memory) is the full
/// budget.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct SpinState {
    /// How many times the budget was halved since a spin last paid.
    halvings: AtomicU32,
    /// Sleeping waits since the last re-probe (while the budget is nothing).
    blocked_since_probe: AtomicU32,
}

impl SpinState {
    /// Calls `ready` (a cheap look at the state, or an attempt that does not block) until it says
    /// yes or the budget passes, never beyond `deadline`. True: ready, go on without sleeping;
    /// false: the caller should sleep now.
    pub(crate) fn spin(&self, deadline: Deadline, mut ready: impl FnMut() -> bool) -> bool {
        // Loom explores every interleaving: a spin loop would explode them and adds nothing to what
        // the models check (a spin only delays the sleep).
        if cfg!(loom) || deadline.passed() {
            return false; // a try, or the time is up: nothing to wait for
        }
        let mut budget = Duration::from_nanos(u64::from(self.budget_now()));
        if budget.is_zero() {
            self.blocked();
            return false;
        }
        if let Some(left) = deadline.left() {
            budget = budget.min(left);
        }
        let start = Instant::now();
        loop {
            for _ in 0..PAUSES_PER_CLOCK {
                std::hint::spin_loop();
                if ready() {
                    self.arrived();
                    return true;
                }
            }
            if start.elapsed() >= budget {
                self.blocked();
                return false;
            }
        }
    }

    /// The budget for this wait in nanoseconds (a re-probe when it has run out).
    fn budget_now(&self) -> u32 {
        let budget = MAX_BUDGET_NS.checked_shr(self.halvings.load(Ordering::Relaxed)).unwrap_or(0);
        if budget >= MIN_BUDGET_NS {
            return budget;
        }
        if self.blocked_since_probe.load(Ordering::Relaxed) >= REPROBE_EVERY {
            self.blocked_since_probe.store(0, Ordering::Relaxed);
            return PROBE_BUDGET_NS;
        }
        0
    }

    /// The state became ready while spinning: spinning pays here.
    fn arrived(&self) {
        if self.halvings.load(Ordering::Relaxed) != 0 {
            self.halvings.store(0, Ordering::Relaxed);
        }
        if self.blocked_since_probe.load(Ordering::Relaxed) != 0 {
            self.blocked_since_probe.store(0, Ordering::Relaxed);
        }
    }

    /// The waiter goes to sleep.
    fn blocked(&self) {
        let halvings = self.halvings.load(Ordering::Relaxed);
        if MAX_BUDGET_NS.checked_shr(halvings).unwrap_or(0) >= MIN_BUDGET_NS {
            self.halvings.store(halvings + 1, Ordering::Relaxed);
        } else {
            let blocked = self.blocked_since_probe.load(Ordering::Relaxed);
            self.blocked_since_probe.store(blocked.saturating_add(1), Ordering::Relaxed);
        }
    }

    /// The current budget in nanoseconds (0: none).
    #[cfg(all(test, not(loom)))]
    fn budget(&self) -> u32 {
        let budget = MAX_BUDGET_NS.checked_shr(self.halvings.load(Ordering::Relaxed)).unwrap_or(0);
        if budget >= MIN_BUDGET_NS { budget } else { 0 }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    #[test]
    fn misses_halve_the_budget_to_nothing() {
        let spin = SpinState::default();
        let mut budgets = vec![spin.budget()];
        for _ in 0..5 {
            assert!(!spin.spin(Deadline::after(None), never));
            budgets.push(spin.budget());
        }
        assert_eq!(budgets[0], MAX_BUDGET_NS);
        assert_eq!(budgets[1], MAX_BUDGET_NS / 2);
        assert_eq!(*budgets.last().unwrap(), 0);
    }

    #[test]
    fn a_change_while_spinning_restores_the_budget() {
        let spin = SpinState::default();
        assert!(!spin.spin(Deadline::after(None), never));
        assert!(spin.budget() < MAX_BUDGET_NS);
        let mut looks = 0;
        assert!(spin.spin(Deadline::after(None), || {
            looks += 1;
            looks == 3
        }));
        assert_eq!(spin.budget(), MAX_BUDGET_NS);
    }

    #[test]
    fn without_budget_it_reprobes_now_and_then() {
        let spin = SpinState::default();
        while spin.budget() != 0 {
            spin.spin(Deadline::after(None), never);
        }
        let mut spun = 0;
        for _ in 0..(3 * REPROBE_EVERY) {
            let mut looks = 0;
            spin.spin(Deadline::after(None), || {
                looks += 1;
                false
            });
            if looks > 0 {
                spun += 1;
            }
        }
        assert!((2..=3).contains(&spun), "{spun} re-probes");
    }

    #[test]
    fn a_deadline_bounds_the_spin() {
        let spin = SpinState::default();
        let mut looks = 0;
        assert!(!spin.spin(Deadline::after(Some(Duration::ZERO)), || {
            looks += 1;
            false
        }));
        assert_eq!(looks, 0, "a try does not spin");
        let start = Instant::now();
        assert!(!spin.spin(Deadline::after(Some(Duration::from_micros(1))), never));
        assert!(start.elapsed() < Duration::from_millis(5));
    }
}
