//! `threading.Event` (CPython's `EventProxy`) and `threading.Barrier` (`BarrierProxy`).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::args::{Args, int, timeout};
use super::dict::no_method;
use super::{Caller, Input, Outcome, Raise, Served, Waited, lock, ok, wait_until};
use crate::pickle::PickleValue;

/// A managed event.
pub(crate) struct Event {
    set: Mutex<bool>,
    changed: Condvar,
}

impl Event {
    pub(crate) fn new(args: Args) -> Result<Event, Raise> {
        args.none("Event")?;
        Ok(Event { set: Mutex::new(false), changed: Condvar::new() })
    }
}

impl Served for Event {
    fn typeid(&self) -> &str {
        "Event"
    }

    fn exposed(&self) -> &'static [&'static str] {
        &["is_set", "set", "clear", "wait"]
    }

    fn call(&self, method: &str, input: Input, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        match method {
            "set" => {
                args.none(method)?;
                *lock(&self.set) = true;
                self.changed.notify_all();
                Outcome::none()
            }
            "clear" => {
                args.none(method)?;
                *lock(&self.set) = false;
                Outcome::none()
            }
            "is_set" | "isSet" => {
                args.none(method)?;
                ok(*lock(&self.set))
            }
            "wait" => {
                let [wait] = args.bind(method, ["timeout"], 0)?;
                let wait = timeout(wait.as_ref(), true)?;
                match wait_until(lock(&self.set), &self.changed, wait, caller, |s| *s)? {
                    Waited::Ready(_) => ok(true),
                    Waited::TimedOut(_) => ok(false),
                }
            }
            other => Err(no_method("Event", other)),
        }
    }

    fn repr(&self) -> String {
        format!("<threading.Event: {}>", if *lock(&self.set) { "set" } else { "unset" })
    }
}

struct BarrierState {
    count: u64,
    generation: u64,
    broken: bool,
    /// The generation a reset released (its waiters see a broken barrier).
    reset_generation: Option<u64>,
}

/// A managed barrier.
pub(crate) struct Barrier {
    parties: u64,
    timeout: Option<Duration>,
    state: Mutex<BarrierState>,
    changed: Condvar,
}

fn broken() -> Raise {
    Raise::new("threading.BrokenBarrierError", Vec::new())
}

impl Barrier {
    pub(crate) fn new(args: Args) -> Result<Barrier, Raise> {
        let [parties, action, wait] = args.bind("Barrier", ["parties", "action", "timeout"], 1)?;
        let parties = int(&parties.unwrap_or_default(), "parties")?;
        if parties < 1 {
            return Err(Raise::value_error("parties must be >= 1"));
        }
        if action.is_some_and(|a| !matches!(a, PickleValue::None)) {
            return Err(Raise::type_error(
                "this manager's Barrier takes no action (a function cannot run in its server, which is written in \
                 Rust): run it in the party that wait() returns 0 to",
            ));
        }
        Ok(Barrier {
            parties: parties as u64,
            timeout: timeout(wait.as_ref(), true)?,
            state: Mutex::new(BarrierState { count: 0, generation: 0, broken: false, reset_generation: None }),
            changed: Condvar::new(),
        })
    }

    fn wait(&self, wait: Option<Duration>, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let mut state = lock(&self.state);
        if state.broken {
            return Err(broken());
        }
        let index = state.count;
        let generation = state.generation;
        state.count += 1;
        if state.count == self.parties {
            state.count = 0;
            state.generation += 1;
            self.changed.notify_all();
            return ok(index as i64);
        }
        match wait_until(state, &self.changed, wait.or(self.timeout), caller, |s| {
            s.broken || s.generation != generation
        }) {
            Ok(Waited::Ready(state)) if !state.broken && state.reset_generation != Some(generation) => ok(index as i64),
            Ok(Waited::Ready(_)) => Err(broken()),
            Ok(Waited::TimedOut(mut state)) => {
                self.break_after_timeout(&mut state, generation);
                Err(broken())
            }
            Err(_) => {
                self.break_after_timeout(&mut lock(&self.state), generation);
                Err(broken())
            }
        }
    }
}

impl Barrier {
    /// A wait of `generation` gave up: the barrier breaks for everyone (unless it was passed
    /// meanwhile).
    fn break_after_timeout(&self, state: &mut BarrierState, generation: u64) {
        if state.generation == generation {
            state.broken = true;
            state.count = state.count.saturating_sub(1);
            self.changed.notify_all();
        }
    }
}

impl Served for Barrier {
    fn typeid(&self) -> &str {
        "Barrier"
    }

    fn exposed(&self) -> &'static [&'static str] {
        &["__getattribute__", "wait", "abort", "reset"]
    }

    fn call(&self, method: &str, input: Input, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        match method {
            "wait" => {
                let [wait] = args.bind(method, ["timeout"], 0)?;
                self.wait(timeout(wait.as_ref(), true)?, caller)
            }
            "abort" => {
                args.none(method)?;
                lock(&self.state).broken = true;
                self.changed.notify_all();
                Outcome::none()
            }
            "reset" => {
                args.none(method)?;
                let mut state = lock(&self.state);
                if state.count > 0 && !state.broken {
                    state.reset_generation = Some(state.generation);
                    state.generation += 1;
                }
                state.count = 0;
                state.broken = false;
                self.changed.notify_all();
                Outcome::none()
            }
            "__getattribute__" => {
                let name = args.one(method, "name")?;
                let state = lock(&self.state);
                match &name {
                    PickleValue::String(n) if n == "parties" => ok(self.parties as i64),
                    PickleValue::String(n) if n == "n_waiting" => ok(state.count as i64),
                    PickleValue::String(n) if n == "broken" => ok(state.broken),
                    _ => Err(Raise::attribute_error(format!("'Barrier' object has no attribute {}", name))),
                }
            }
            other => Err(no_method("Barrier", other)),
        }
    }

    fn repr(&self) -> String {
        let state = lock(&self.state);
        if state.broken {
            return "<threading.Barrier: broken>".into();
        }
        format!("<threading.Barrier: waiters={}/{}>", state.count, self.parties)
    }
}
