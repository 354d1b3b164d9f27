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
//! - a state that becomes ready while spinning restores the full budget, sized to cover how long
//!   that spin took with half again as margin: [`MAX_BUDGET_NS`] while the partner answers within
//!   it, up to [`PROBE_NS`] for a partner that answers late (its *reach*);
//! - a wait that had to sleep halves it, down to nothing after a few misses (a primitive that is
//!   held or awaited for long, or a CPU shared with the other side, where spinning only delays it);
//! - with no budget left, a sleeping wait now and then *probes*: it spins [`PROBE_NS`] once, to
//!   notice when hand-overs have become quick again (load has passed). The first probe comes after
//!   [`REPROBE_EVERY`] sleeping waits; each probe that misses doubles the interval, up to
//!   [`REPROBE_EVERY`]` << `[`MAX_PROBE_BACKOFF`] waits, so a partner that stays slow costs its
//!   waiter one probe per 256 waits: a waiting side costs no CPU to speak of while its
//!   partner is slow.
//!
//! Probes and budgets reach past a sleeping partner's wake-up because recovery needs it: when both
//! sides of a ping-pong sleep, a reply comes only after the partner's wake-up (on a virtual machine
//! an idle virtual CPU takes from several to 40 µs to resume), so a probe shorter than that never
//! sees it and both sides stay asleep for good (the bimodal round trip of issue 17,
//! `connection.rtt.worst_of_20` in `bench/README.md`). A probe that catches the late reply gives
//! its side a budget that covers the partner's wake-up, so that side now spins through each of the
//! partner's wake-ups and is awake when the partner answers; the partner's next probe then finds a
//! side that answers at once, the partner's budget comes back, and both spin again, each budget
//! back at [`MAX_BUDGET_NS`] after its first quick answer.
//!
//! A spin longer than [`MAX_BUDGET_NS`] (a probe, or a budget widened for a late partner) happens
//! only while the CPUs have room for it (`sync::cpu_room`: no more runnable tasks than CPUs);
//! otherwise it is cut to [`MAX_BUDGET_NS`], and a spin whose thread was switched out for most of
//! it counts as a miss: on busy CPUs a long spin takes the CPU from another program, or from the
//! partner it waits for.
//!
//! On a machine (or an affinity mask) with a single CPU, spinning can only delay the partner: no
//! wait spins there.
//!
//! The counters are updated without read-modify-write cycles: racing waiters may lose an update,
//! which only makes the budget adapt a step later. At worst a wait spends [`PROBE_NS`] of CPU
//! (never more than its own timeout) before it sleeps.

// The loom models run the lock states without the spin (a spin is a timing matter, which loom
// does not model), so under loom most of this module is unused.
#![cfg_attr(loom, allow(dead_code))]

use std::sync::atomic::Ordering;

use super::atomic::AtomicU32;
use std::time::{Duration, Instant};

use super::futex::Deadline;

/// The budget a primitive starts with and returns to while spins pay at once, in nanoseconds.
pub(crate) const MAX_BUDGET_NS: u32 = 20_000;

/// How many times a budget may double beyond [`MAX_BUDGET_NS`] to cover a partner that answers
/// late (its reach; see [`SpinState`]): the longest spin is `MAX_BUDGET_NS << MAX_REACH`.
const MAX_REACH: u32 = 3;

/// How long a probe spins: the longest budget, longer than an idle virtual CPU takes to resume
/// (35-40 µs on the VM of `bench/README.md` at its slow hours), so that a probe sees the answer of
/// a partner that had to be woken.
const PROBE_NS: u32 = MAX_BUDGET_NS << MAX_REACH;

/// Budgets below this are not worth a spin.
const MIN_BUDGET_NS: u32 = 2_000;

/// How many sleeping waits a primitive with no budget lets pass before its first probe.
const REPROBE_EVERY: u32 = 16;

/// How many times a missed probe doubles the interval to the next one: at most 256 sleeping waits
/// between probes, which bounds how long a ping-pong whose sides both sleep takes to recover (the
/// slower side's next probe: 256 round trips of 60-120 µs on the VM at its slowest, well inside
/// the 100 ms runs of `connection.rtt.worst_of_20`; at 1024, as before, it was longer than a run),
/// and costs a waiter on a slow partner one probe ([`PROBE_NS`]) per 256 waits.
const MAX_PROBE_BACKOFF: u32 = 4;

/// How many pauses between two looks at the clock (a pause takes some 10 to 40 ns).
const PAUSES_PER_CLOCK: u32 = 4;

/// The spinning state of one primitive, in its shared memory: one word (so that it costs a lock
/// or a queue 4 bytes). All zeros (fresh memory) is the full budget at its first reach.
///
/// - bits 0-15: sleeping waits since the last probe (while the budget is nothing; at most
///   `REPROBE_EVERY << MAX_PROBE_BACKOFF`);
/// - bits 16-23: how many times the budget was halved since a spin last paid; past the halvings
///   that leave nothing, how many probes missed since;
/// - bits 24-25: the reach: the full budget is `MAX_BUDGET_NS << reach`. A spin that pays sets it
///   to cover how long that spin took (with half again as margin), so the budget follows how late
///   the partner answers, from [`MAX_BUDGET_NS`] up to [`PROBE_NS`].
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct SpinState {
    word: AtomicU32,
}

/// The bits of [`SpinState`]'s word that count sleeping waits.
const BLOCKED_MASK: u32 = 0xffff;
const HALVINGS_SHIFT: u32 = 16;
const HALVINGS_MASK: u32 = 0xff;
const REACH_SHIFT: u32 = 24;
const REACH_MASK: u32 = 0b11;
const _: () = assert!(REPROBE_EVERY << MAX_PROBE_BACKOFF <= BLOCKED_MASK);
const _: () = assert!(MAX_REACH <= REACH_MASK && NO_BUDGET_HALVINGS + MAX_PROBE_BACKOFF <= HALVINGS_MASK);

/// The halvings after which no budget is left, from the longest budget (the first `h` with
/// `PROBE_NS >> h < MIN_BUDGET_NS`).
const NO_BUDGET_HALVINGS: u32 = {
    let mut h = 0;
    while PROBE_NS >> h >= MIN_BUDGET_NS {
        h += 1;
    }
    h
};

/// The unpacked word of a [`SpinState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word {
    blocked: u32,
    halvings: u32,
    reach: u32,
}

impl Word {
    fn unpack(word: u32) -> Self {
        Word {
            blocked: word & BLOCKED_MASK,
            halvings: (word >> HALVINGS_SHIFT) & HALVINGS_MASK,
            // Masked: the word is in memory other processes write; no garbage shifts too far.
            reach: (word >> REACH_SHIFT) & REACH_MASK,
        }
    }

    fn pack(self) -> u32 {
        self.reach << REACH_SHIFT | self.halvings << HALVINGS_SHIFT | self.blocked
    }

    /// The budget after the halvings, in nanoseconds, or `None` when none is left.
    fn budget(self) -> Option<u32> {
        let budget = (MAX_BUDGET_NS << self.reach).checked_shr(self.halvings).unwrap_or(0);
        (budget >= MIN_BUDGET_NS).then_some(budget)
    }

    /// The probes that missed since the budget ran out (0 before it has).
    fn missed_probes(self) -> u32 {
        self.halvings.saturating_sub(self.halvings_to_nothing())
    }

    /// How many halvings take this reach's budget below [`MIN_BUDGET_NS`].
    fn halvings_to_nothing(self) -> u32 {
        NO_BUDGET_HALVINGS - (MAX_REACH - self.reach)
    }
}

/// The reach whose budget covers a spin that paid after `waited`, with half again as margin.
fn reach_for(waited: Duration) -> u32 {
    let wanted = waited.as_nanos() + waited.as_nanos() / 2;
    (0..MAX_REACH).find(|&reach| u128::from(MAX_BUDGET_NS << reach) >= wanted).unwrap_or(MAX_REACH)
}

/// Whether spinning can pay at all: more than one CPU to run on ([`cpu_room::cpus`]).
///
/// [`cpu_room::cpus`]: crate::sync::cpu_room::cpus
pub(crate) fn several_cpus() -> bool {
    cfg!(loom) || crate::sync::cpu_room::cpus() > 1
}

impl SpinState {
    /// Calls `ready` (a cheap look at the state, or an attempt that does not block) until it says
    /// yes or the budget passes, never beyond `deadline`. True: ready, go on without sleeping;
    /// false: the caller should sleep now.
    pub(crate) fn spin(&self, deadline: Deadline, ready: impl FnMut() -> bool) -> bool {
        // Loom explores every interleaving: a spin loop would explode them and adds nothing to what
        // the models check (a spin only delays the sleep).
        #[cfg(not(loom))]
        if several_cpus() {
            return self.spin_adaptively(deadline, crate::sync::cpu_room::cpus_have_room, ready);
        }
        let _ = (deadline, ready);
        false
    }

    /// [`spin`](Self::spin) on any machine; a spin longer than [`MAX_BUDGET_NS`] only when
    /// `cpus_have_room` says yes.
    fn spin_adaptively(&self, deadline: Deadline, cpus_have_room: fn() -> bool, ready: impl FnMut() -> bool) -> bool {
        if deadline.passed() {
            return false; // a try, or the time is up: nothing to wait for
        }
        let word = self.load();
        let Some(mut budget_ns) = self.budget_now(word) else { return false };
        if budget_ns > MAX_BUDGET_NS && !cpus_have_room() {
            // Another program wants the CPUs: a spin past the partner's wake-up would take the
            // CPU from it (or from the partner itself).
            budget_ns = MAX_BUDGET_NS;
        }
        let mut budget = Duration::from_nanos(u64::from(budget_ns));
        if let Some(left) = deadline.left() {
            budget = budget.min(left);
        }
        match spin_for(budget, ready) {
            Spun::Paid(waited) => {
                self.arrived(word, waited);
                return true;
            }
            // Ready, but this side was not running for most of the spin: the CPUs are wanted
            // elsewhere, and the spin says nothing of how late the partner answers. Go on, and
            // learn as from a miss.
            Spun::Preempted => {
                self.missed(word);
                return true;
            }
            Spun::Missed => self.missed(word),
        }
        false
    }

    /// A spin that did not pay: half the budget, or (with none left) one more missed probe.
    fn missed(&self, word: Word) {
        if word.missed_probes() < MAX_PROBE_BACKOFF {
            self.store(Word { halvings: word.halvings + 1, ..self.load() });
        }
    }

    /// The budget for this wait in nanoseconds; with no budget left, [`PROBE_NS`] when a probe is
    /// due, else `None` (and one more sleeping wait counted).
    fn budget_now(&self, word: Word) -> Option<u32> {
        if let Some(budget) = word.budget() {
            return Some(budget);
        }
        let interval = REPROBE_EVERY << word.missed_probes().min(MAX_PROBE_BACKOFF);
        if word.blocked + 1 < interval {
            self.store(Word { blocked: word.blocked + 1, ..word });
            return None;
        }
        self.store(Word { blocked: 0, ..word });
        Some(PROBE_NS)
    }

    /// The state became ready after `waited` of spinning: spinning pays here, with a budget that
    /// covers that long.
    fn arrived(&self, word: Word, waited: Duration) {
        let paid = Word { blocked: 0, halvings: 0, reach: reach_for(waited) };
        if word != paid {
            self.store(paid);
        }
    }

    fn load(&self) -> Word {
        Word::unpack(self.word.load(Ordering::Relaxed))
    }

    fn store(&self, word: Word) {
        self.word.store(word.pack(), Ordering::Relaxed);
    }

    /// The current budget in nanoseconds (0: none).
    #[cfg(all(test, not(loom)))]
    fn budget(&self) -> u32 {
        self.load().budget().unwrap_or(0)
    }
}

/// How a [`spin_for`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spun {
    /// Ready after spinning this long.
    Paid(Duration),
    /// Ready, but the spinning thread was off its CPU for most of the spin (preempted, or its
    /// virtual CPU was): the time says nothing of the partner.
    Preempted,
    /// The budget passed.
    Missed,
}

/// Calls `ready` until it says yes or `budget` has passed.
///
/// A gap between two looks at the clock (normally well under a few microseconds apart, even when
/// `ready` makes a system call) longer than half the spin means the thread did not run meanwhile.
/// A spin that pays before [`LONG_SPIN`] of looks reads the clock no more (a clock read is a good
/// part of a quick hand-over): it counts as paid at the last look, which widens nothing.
fn spin_for(budget: Duration, mut ready: impl FnMut() -> bool) -> Spun {
    let start = Instant::now();
    let (mut last_look, mut longest_gap) = (Duration::ZERO, Duration::ZERO);
    loop {
        for _ in 0..PAUSES_PER_CLOCK {
            std::hint::spin_loop();
            if ready() {
                if last_look < LONG_SPIN {
                    return Spun::Paid(last_look);
                }
                let waited = start.elapsed();
                longest_gap = longest_gap.max(waited - last_look);
                return if longest_gap > waited / 2 { Spun::Preempted } else { Spun::Paid(waited) };
            }
        }
        let now = start.elapsed();
        if now >= budget {
            return Spun::Missed;
        }
        longest_gap = longest_gap.max(now - last_look);
        last_look = now;
    }
}

/// A spin shorter than this pays at [`MAX_BUDGET_NS`] whatever its length, and is too short to
/// tell a preemption from a slow `ready`.
const LONG_SPIN: Duration = Duration::from_micros(10);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    fn wait(spin: &SpinState, ready: impl FnMut() -> bool) -> bool {
        spin.spin_adaptively(Deadline::after(None), || true, ready)
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
        assert_eq!(&gaps[..7], &[32, 64, 128, 256, 256, 256, 256], "probes at {probes:?}");
        assert_eq!(spin.budget(), 0);
    }

    /// Both sides of a ping-pong asleep: the partner's answer comes only after its wake-up, 40 µs
    /// on the VM at its slow hours. A probe must spin long enough to see it, or the pair never
    /// spins again (on a probe of 20 µs, as before, it never did on that VM), and the budget it
    /// restores must cover that wake-up, or the next wait misses it again.
    #[test]
    fn a_probe_sees_a_partner_that_wakes_slowly() {
        const WAKE_UP: Duration = Duration::from_micros(40);
        let late_partner = |spin: &SpinState| {
            let start = Instant::now();
            wait(spin, || start.elapsed() >= WAKE_UP)
        };
        // On a loaded machine a preempted spin counts as a miss: some tries may fail, not all.
        let chain_held = (0..20).any(|_| {
            let spin = exhausted();
            let recovered_after = (0..1000).find(|_| {
                late_partner(&spin);
                spin.budget() > 0
            });
            // The first probe is the 16th wait; one preempted probe doubles the interval.
            assert!(recovered_after.is_some_and(|n| n < 1000), "no recovery in 1000 waits");
            let budget = Duration::from_nanos(spin.budget().into());
            assert!(budget >= WAKE_UP + WAKE_UP / 2, "a budget of {budget:?} misses a wake-up of {WAKE_UP:?}");
            // The next late answers are caught while spinning, the budget kept.
            (0..5).all(|_| late_partner(&spin))
        });
        assert!(chain_held, "a recovered budget never caught five late answers in a row");
    }

    #[test]
    fn a_quick_answer_brings_the_budget_back_to_its_first_reach() {
        let spin = SpinState::default();
        spin.store(Word { blocked: 0, halvings: 0, reach: MAX_REACH });
        let start = Instant::now();
        assert!(wait(&spin, || start.elapsed() >= Duration::from_micros(30)));
        assert!(spin.budget() > MAX_BUDGET_NS, "a late answer widens the budget");
        assert!(wait(&spin, || true));
        assert_eq!(spin.budget(), MAX_BUDGET_NS);
    }

    #[test]
    fn a_spin_that_did_not_run_counts_as_a_miss() {
        let spin = SpinState::default();
        spin.store(Word { blocked: 0, halvings: 0, reach: MAX_REACH });
        let start = Instant::now();
        let mut slept = false;
        // The spinning thread looks for 30 µs, is off its CPU for 100 µs, then finds the state ready.
        assert!(wait(&spin, || {
            if start.elapsed() < Duration::from_micros(30) {
                return false;
            }
            if !slept {
                slept = true;
                std::thread::sleep(Duration::from_micros(100));
            }
            true
        }));
        assert_eq!(spin.budget(), PROBE_NS / 2, "a preempted spin counts as a miss");
    }

    /// With the CPUs busy, a probe spins no longer than a first budget: a late partner is not
    /// waited for, and the budget is not widened.
    #[test]
    fn busy_cpus_keep_spins_short() {
        const WAKE_UP: Duration = Duration::from_micros(40);
        let spin = exhausted();
        let caught = (0..1000)
            .filter(|_| {
                let start = Instant::now();
                spin.spin_adaptively(Deadline::after(None), || false, || start.elapsed() >= WAKE_UP)
            })
            .count();
        // Only a probe preempted for 20 µs or more sees the late answer (and learns nothing).
        assert!(caught <= 2, "{caught} probes on busy CPUs waited past {MAX_BUDGET_NS} ns");
        assert_eq!(spin.budget(), 0);
    }

    #[test]
    fn a_reach_for_every_wait() {
        assert_eq!(reach_for(Duration::ZERO), 0);
        assert_eq!(reach_for(Duration::from_micros(13)), 0);
        assert_eq!(reach_for(Duration::from_micros(14)), 1);
        assert_eq!(reach_for(Duration::from_micros(41)), 2);
        assert_eq!(reach_for(Duration::from_secs(1)), MAX_REACH);
        // Any word, even one a broken peer wrote, gives a budget without overflow.
        for garbage in [u32::MAX, 0xfc00_0000, 0x00ff_ffff] {
            assert!(Word::unpack(garbage).budget().is_none_or(|b| b <= PROBE_NS));
            assert!(Word::unpack(garbage).missed_probes() <= HALVINGS_MASK);
        }
        for reach in 0..=MAX_REACH {
            let word = Word { blocked: 5, halvings: 3, reach };
            assert_eq!(Word::unpack(word.pack()), word);
            let budget = Word { halvings: word.halvings_to_nothing(), ..word }.budget();
            assert_eq!(budget, None, "reach {reach}: no budget after its halvings");
            let before = Word { halvings: word.halvings_to_nothing() - 1, ..word }.budget();
            assert!(before.is_some_and(|b| b >= MIN_BUDGET_NS), "reach {reach}: a budget one halving before");
        }
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
        assert!(!spin.spin_adaptively(Deadline::after(Some(Duration::from_micros(1))), || true, never));
        assert!(start.elapsed() < Duration::from_millis(5));
    }
}
