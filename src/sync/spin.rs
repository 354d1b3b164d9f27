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
//!   held or awaited for long, or a CPU shared with the other side, where spinning only delays it);
//! - with no budget left, a sleeping wait now and then *probes*: it spins the full budget once, to
//!   notice when hand-overs have become quick again (load has passed). The first probe comes after
//!   [`REPROBE_EVERY`] sleeping waits; each probe that misses doubles the interval, up to
//!   [`REPROBE_EVERY`]` << `[`MAX_PROBE_BACKOFF`] waits, so a partner that stays slow costs its
//!   waiter one full budget per thousand waits or so: a waiting side costs no CPU to speak of
//!   while its partner is slow.
//!
//! The probe spins the *full* budget because recovery needs it: when both sides of a ping-pong
//! sleep, a reply takes the partner's wake-up (several microseconds on a virtual machine) before
//! it is even written, and a shorter probe never sees it, so both sides stay asleep for good (the
//! bimodal round trip of issue 17, `connection.rtt.worst_of_20` in `bench/README.md`). A probe
//! that catches the reply restores that side's budget; the other side's next probe then finds a
//! partner that answers at once, and both spin again.
//!
//! On a machine (or an affinity mask) with a single CPU, spinning can only delay the partner: no
//! wait spins there.
//!
//! The counters are updated without read-modify-write cycles: racing waiters may lose an update,
//! which only makes the budget adapt a step later. At worst a wait spends [`MAX_BUDGET_NS`] of CPU
//! (never more than its own timeout) before it sleeps.

use std::sync::atomic::Ordering;

use super::atomic::AtomicU32;
use std::time::{Duration, Instant};

use super::futex::Deadline;

/// The longest a waiter spins, in nanoseconds (a probe spins this long too).
pub(crate) const MAX_BUDGET_NS: u32 = 20_000;

/// Budgets below this are not worth a spin.
const MIN_BUDGET_NS: u32 = 2_000;

/// The halvings after which no budget is left (the first `h` with `MAX >> h < MIN`).
const NO_BUDGET_HALVINGS: u32 = {
    let mut h = 0;
    while MAX_BUDGET_NS >> h >= MIN_BUDGET_NS {
        h += 1;
    }
    h
};

/// How many sleeping waits a primitive with no budget lets pass before its first probe.
const REPROBE_EVERY: u32 = 16;

/// How many times a missed probe doubles the interval to the next one.
const MAX_PROBE_BACKOFF: u32 = 6;

/// How many pauses between two looks at the clock (a pause takes some 10 to 40 ns).
const PAUSES_PER_CLOCK: u32 = 4;

/// The spinning state of one primitive, in its shared memory: one word (so that it costs a lock
/// or a queue 4 bytes), the halvings in the high half, the sleeping waits in the low one. All zeros
/// (fresh memory) is the full budget.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct SpinState {
    /// High half: how many times the budget was halved since a spin last paid; past
    /// [`NO_BUDGET_HALVINGS`], how many probes missed since. Low half: sleeping waits since the
    /// last probe (while the budget is nothing; at most `REPROBE_EVERY << MAX_PROBE_BACKOFF`).
    word: AtomicU32,
}

/// The bits of [`SpinState`]'s word that count sleeping waits.
const BLOCKED_MASK: u32 = 0xffff;
const _: () = assert!(REPROBE_EVERY << MAX_PROBE_BACKOFF <= BLOCKED_MASK);

/// Whether spinning can pay at all: more than one CPU to run on (in the affinity mask: one system
/// call, once per process; `available_parallelism` read the cgroup's CPU quota, a dozen system
/// calls and some heap, in every worker on the way to its first task).
pub(crate) fn several_cpus() -> bool {
    #[cfg(not(loom))]
    {
        static SEVERAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SEVERAL.get_or_init(|| crate::sys::cpus_to_run_on() > 1)
    }
    #[cfg(loom)]
    true
}

impl SpinState {
    /// Calls `ready` (a cheap look at the state, or an attempt that does not block) until it says
    /// yes or the budget passes, never beyond `deadline`. True: ready, go on without sleeping;
    /// false: the caller should sleep now.
    pub(crate) fn spin(&self, deadline: Deadline, ready: impl FnMut() -> bool) -> bool {
        // Loom explores every interleaving: a spin loop would explode them and adds nothing to what
        // the models check (a spin only delays the sleep).
        if cfg!(loom) || !several_cpus() {
            return false;
        }
        self.spin_adaptively(deadline, ready)
    }

    /// [`spin`](Self::spin) on any machine.
    fn spin_adaptively(&self, deadline: Deadline, ready: impl FnMut() -> bool) -> bool {
        if deadline.passed() {
            return false; // a try, or the time is up: nothing to wait for
        }
        let halvings = self.halvings();
        let Some(budget_ns) = self.budget_now(halvings) else { return false };
        let mut budget = Duration::from_nanos(u64::from(budget_ns));
        if let Some(left) = deadline.left() {
            budget = budget.min(left);
        }
        if spin_for(budget, ready) {
            self.arrived();
            return true;
        }
        // A miss: half the budget, or (with none left) one more missed probe.
        if halvings < NO_BUDGET_HALVINGS + MAX_PROBE_BACKOFF {
            self.set_halvings(halvings + 1);
        }
        false
    }

    /// The budget for this wait in nanoseconds; with no budget left, the full one when a probe is
    /// due, else `None` (and one more sleeping wait counted).
    fn budget_now(&self, halvings: u32) -> Option<u32> {
        if halvings < NO_BUDGET_HALVINGS {
            return Some(MAX_BUDGET_NS >> halvings);
        }
        let missed_probes = halvings - NO_BUDGET_HALVINGS;
        let word = self.word.load(Ordering::Relaxed);
        let blocked = word & BLOCKED_MASK;
        if blocked + 1 < REPROBE_EVERY << missed_probes.min(MAX_PROBE_BACKOFF) {
            self.word.store(word + 1, Ordering::Relaxed);
            return None;
        }
        self.word.store(word & !BLOCKED_MASK, Ordering::Relaxed);
        Some(MAX_BUDGET_NS)
    }

    /// The state became ready while spinning: spinning pays here.
    fn arrived(&self) {
        if self.word.load(Ordering::Relaxed) != 0 {
            self.word.store(0, Ordering::Relaxed);
        }
    }

    /// The halvings (or missed probes) in the word.
    fn halvings(&self) -> u32 {
        self.word.load(Ordering::Relaxed) >> 16
    }

    /// Sets the halvings, keeping the count of sleeping waits.
    fn set_halvings(&self, halvings: u32) {
        let word = self.word.load(Ordering::Relaxed);
        self.word.store(halvings << 16 | (word & BLOCKED_MASK), Ordering::Relaxed);
    }

    /// The current budget in nanoseconds (0: none).
    #[cfg(all(test, not(loom)))]
    fn budget(&self) -> u32 {
        let halvings = self.halvings();
        if halvings < NO_BUDGET_HALVINGS { MAX_BUDGET_NS >> halvings } else { 0 }
    }
}

/// Calls `ready` until it says yes (true) or `budget` has passed (false).
fn spin_for(budget: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..PAUSES_PER_CLOCK {
            std::hint::spin_loop();
            if ready() {
                return true;
            }
        }
        if start.elapsed() >= budget {
            return false;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    fn wait(spin: &SpinState, ready: impl FnMut() -> bool) -> bool {
        spin.spin_adaptively(Deadline::after(None), ready)
    }

    /// Misses until the budget is gone.
    fn exhausted() -> SpinState {
        let spin = SpinState::default();
        while spin.budget() != 0 {
            wait(&spin, never);
        }
        spin
    }

    #[test]
    fn misses_halve_the_budget_to_nothing() {
        let spin = SpinState::default();
        let mut budgets = vec![spin.budget()];
        for _ in 0..5 {
            assert!(!wait(&spin, never));
            budgets.push(spin.budget());
        }
        assert_eq!(budgets[0], MAX_BUDGET_NS);
        assert_eq!(budgets[1], MAX_BUDGET_NS / 2);
        assert_eq!(*budgets.last().unwrap(), 0);
    }

    #[test]
    fn a_change_while_spinning_restores_the_budget() {
        let spin = SpinState::default();
        assert!(!wait(&spin, never));
        assert!(spin.budget() < MAX_BUDGET_NS);
        let mut looks = 0;
        assert!(wait(&spin, || {
            looks += 1;
            looks == 3
        }));
        assert_eq!(spin.budget(), MAX_BUDGET_NS);
    }

    #[test]
    fn probes_come_rarer_while_they_miss() {
        let spin = exhausted();
        let mut probes = Vec::new();
        for i in 0..4000 {
            let mut looked = false;
            wait(&spin, || {
                looked = true;
                false
            });
            if looked {
                probes.push(i);
            }
        }
        let gaps: Vec<u32> = probes.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(probes[0] + 1, REPROBE_EVERY, "the first probe: {probes:?}");
        assert_eq!(&gaps[..7], &[32, 64, 128, 256, 512, 1024, 1024], "probes at {probes:?}");
        assert_eq!(spin.budget(), 0);
    }

    /// Both sides of a ping-pong asleep: the partner's answer comes only after its wake-up, 8 µs
    /// here. A probe must spin long enough to see it, or the pair never spins again (on a probe
    /// of 5 µs, as before issue 17, it never did).
    #[test]
    fn a_probe_sees_a_partner_that_wakes_slowly() {
        const WAKE_UP: Duration = Duration::from_micros(8);
        let spin = exhausted();
        let recovered_after = (0..1000).find(|_| {
            let start = Instant::now();
            wait(&spin, || start.elapsed() >= WAKE_UP);
            spin.budget() == MAX_BUDGET_NS
        });
        // The first probe is the 16th wait; one preempted probe doubles the interval.
        assert!(recovered_after.is_some_and(|n| n < 1000), "no recovery in 1000 waits");
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
        assert!(!spin.spin_adaptively(Deadline::after(Some(Duration::from_micros(1))), never));
        assert!(start.elapsed() < Duration::from_millis(5));
    }
}
