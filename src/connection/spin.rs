//! Adaptive spinning before a receive blocks.
//!
//! A process that blocks in `recvmsg(2)` sleeps, and the peer's reply must wake it: on the machines
//! this crate targets that wake-up is most of a round trip (on the 2-vCPU VM of `bench/README.md`,
//! a blocking socket ping-pong takes 12–14 µs, one that keeps trying without blocking 5–7 µs). So a
//! receive that finds nothing waiting first retries without blocking for a short budget, and only
//! then sleeps.
//!
//! The budget adapts per connection, so that spinning only costs CPU where it pays:
//! - a message that arrives while spinning restores the full budget ([`MAX_BUDGET`]);
//! - a receive that had to block halves it, down to nothing after a few misses (a peer that answers
//!   slowly, or a single CPU shared with the peer, where spinning only delays it);
//! - with no budget left, every [`REPROBE_EVERY`]th blocking receive tries a short spin again, to
//!   notice when replies become quick.
//!
//! At worst a receive spends [`MAX_BUDGET`] of CPU before it sleeps.

use std::time::{Duration, Instant};

/// The longest a receive spins.
pub(crate) const MAX_BUDGET: Duration = Duration::from_micros(20);

/// The budget of a re-probe.
const PROBE_BUDGET: Duration = Duration::from_micros(5);

/// Budgets below this are not worth a spin.
const MIN_BUDGET: Duration = Duration::from_micros(2);

/// How often a connection with no budget tries again.
const REPROBE_EVERY: u32 = 16;

/// The spinning state of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Spin {
    budget: Duration,
    blocked_since_probe: u32,
}

impl Default for Spin {
    fn default() -> Self {
        Spin { budget: MAX_BUDGET, blocked_since_probe: 0 }
    }
}

impl Spin {
    /// Runs `attempt` (a receive that does not block, `Ok(None)` when nothing is waiting) until it
    /// yields or the budget is spent. `Ok(None)`: nothing came; block now.
    pub(crate) fn run<T, E>(&mut self, mut attempt: impl FnMut() -> Result<Option<T>, E>) -> Result<Option<T>, E> {
        let budget = self.budget_now();
        if budget.is_zero() {
            self.blocked();
            return Ok(None);
        }
        let start = Instant::now();
        let mut misses = 0u32;
        loop {
            if let Some(value) = attempt()? {
                if misses > 0 {
                    self.arrived();
                }
                return Ok(Some(value));
            }
            misses += 1;
            if start.elapsed() >= budget {
                self.blocked();
                return Ok(None);
            }
            std::hint::spin_loop();
        }
    }

    /// The budget for this receive (a re-probe when it has run out).
    fn budget_now(&mut self) -> Duration {
        if self.budget.is_zero() && self.blocked_since_probe >= REPROBE_EVERY {
            self.blocked_since_probe = 0;
            return PROBE_BUDGET;
        }
        self.budget
    }

    /// A message came while spinning: spinning pays here.
    fn arrived(&mut self) {
        self.budget = MAX_BUDGET;
        self.blocked_since_probe = 0;
    }

    fn blocked(&mut self) {
        self.budget /= 2;
        if self.budget < MIN_BUDGET {
            self.budget = Duration::ZERO;
        }
        self.blocked_since_probe += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> Result<Option<()>, ()> {
        Ok(None)
    }

    #[test]
    fn misses_halve_the_budget_to_nothing() {
        let mut spin = Spin::default();
        let mut budgets = vec![spin.budget];
        for _ in 0..5 {
            assert_eq!(spin.run(never), Ok(None));
            budgets.push(spin.budget);
        }
        assert_eq!(budgets[1], MAX_BUDGET / 2);
        assert_eq!(*budgets.last().unwrap(), Duration::ZERO);
    }

    #[test]
    fn an_arrival_while_spinning_restores_the_budget() {
        let mut spin = Spin::default();
        spin.run(never).unwrap();
        assert!(spin.budget < MAX_BUDGET);
        let mut tries = 0;
        let got = spin.run(|| {
            tries += 1;
            Ok::<_, ()>((tries == 3).then_some(7))
        });
        assert_eq!(got, Ok(Some(7)));
        assert_eq!(spin.budget, MAX_BUDGET);
    }

    #[test]
    fn without_budget_it_reprobes_now_and_then() {
        let mut spin = Spin { budget: Duration::ZERO, blocked_since_probe: 0 };
        let mut spun = 0;
        for _ in 0..(3 * REPROBE_EVERY) {
            let mut calls = 0;
            spin.run(|| {
                calls += 1;
                Ok::<Option<()>, ()>(None)
            })
            .unwrap();
            if calls > 0 {
                spun += 1;
            }
        }
        assert!((2..=3).contains(&spun), "{spun} re-probes");
    }

    #[test]
    fn errors_end_the_spin() {
        let mut spin = Spin::default();
        assert_eq!(spin.run(|| Err::<Option<()>, _>("broken")), Err("broken"));
    }
}
