//! `threading.Lock`, `RLock`, `Semaphore` and `BoundedSemaphore` (CPython's `AcquirerProxy`),
//! and `threading.Condition` (`ConditionProxy`).
//!
//! A lock is held by a connection (each thread of a Python client has its own, as each clone of
//! a proxy here): an `RLock` is re-entered by it and released only by it, and whatever a
//! connection holds is released when it closes (CPython's server keeps such a lock for ever).

use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::args::{Args, flag, int, timeout};
use super::dict::no_method;
use super::{Caller, Input, Outcome, Raise, Served, Waited, lock, ok, wait_until};
use crate::pickle::PickleValue;

/// The flavour of a lock-like object.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Lock,
    RLock,
    Semaphore { bound: Option<u64> },
}

#[derive(Default)]
struct State {
    /// Free permits (locks: 1 when free).
    value: u64,
    owner: Option<u64>,
    depth: u64,
}

/// A managed lock or semaphore.
pub(crate) struct Lock {
    typeid: &'static str,
    flavour: Flavour,
    state: Mutex<State>,
    changed: Condvar,
}

impl Lock {
    pub(crate) fn new(typeid: &'static str, flavour: Flavour, args: Args) -> Result<Lock, Raise> {
        let value = match flavour {
            Flavour::Lock | Flavour::RLock => {
                args.none(typeid)?;
                1
            }
            Flavour::Semaphore { .. } => {
                let [value] = args.bind(typeid, ["value"], 0)?;
                let value = value.map(|v| int(&v, "value")).transpose()?.unwrap_or(1);
                u64::try_from(value).map_err(|_| Raise::value_error("semaphore initial value must be >= 0"))?
            }
        };
        let flavour = match flavour {
            Flavour::Semaphore { bound: Some(_) } => Flavour::Semaphore { bound: Some(value) },
            other => other,
        };
        Ok(Lock { typeid, flavour, state: Mutex::new(State { value, owner: None, depth: 0 }), changed: Condvar::new() })
    }
}

/// The wait of `acquire(blocking, timeout)`, as `threading`'s locks and semaphores read it.
fn acquire_wait(args: Args, semaphore: bool) -> Result<Option<Duration>, Raise> {
    let [blocking, wait] = args.bind("acquire", ["blocking", "timeout"], 0)?;
    let blocking = flag(blocking.as_ref(), true);
    let given = wait.as_ref().filter(|t| !matches!(t, PickleValue::None));
    // A lock's "no timeout" is -1; a semaphore's is None.
    let forever = match given {
        None => true,
        Some(PickleValue::I64(-1)) => !semaphore,
        Some(PickleValue::F64(x)) if *x == -1.0 => !semaphore,
        _ => false,
    };
    if !blocking {
        if !forever {
            return Err(Raise::value_error(if semaphore {
                "can't specify timeout for non-blocking acquire"
            } else {
                "can't specify a timeout for a non-blocking call"
            }));
        }
        return Ok(Some(Duration::ZERO));
    }
    if forever {
        return Ok(None);
    }
    timeout(given, semaphore).map_err(|_| Raise::value_error("timeout value must be a non-negative number"))
}

impl Served for Lock {
    fn typeid(&self) -> &str {
        self.typeid
    }

    fn exposed(&self) -> &'static [&'static str] {
        &["acquire", "release"]
    }

    fn call(&self, method: &str, input: Input, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        let semaphore = matches!(self.flavour, Flavour::Semaphore { .. });
        match method {
            "acquire" => {
                let wait = acquire_wait(args, semaphore)?;
                let me = caller.id;
                let state = lock(&self.state);
                let waited = match self.flavour {
                    Flavour::RLock => {
                        wait_until(state, &self.changed, wait, caller, |s| s.owner.is_none() || s.owner == Some(me))?
                    }
                    _ => wait_until(state, &self.changed, wait, caller, |s| s.value > 0)?,
                };
                let Waited::Ready(mut state) = waited else { return ok(false) };
                match self.flavour {
                    Flavour::RLock => state.depth += 1,
                    _ => state.value -= 1,
                }
                state.owner = Some(me);
                ok(true)
            }
            "release" => {
                let mut state = lock(&self.state);
                match self.flavour {
                    Flavour::RLock => {
                        args.none(method)?;
                        if state.owner != Some(caller.id) {
                            return Err(Raise::runtime_error("cannot release un-acquired lock"));
                        }
                        state.depth -= 1;
                        if state.depth == 0 {
                            state.owner = None;
                            self.changed.notify_one();
                        }
                    }
                    Flavour::Lock => {
                        args.none(method)?;
                        if state.value > 0 {
                            return Err(Raise::runtime_error("release unlocked lock"));
                        }
                        state.value = 1;
                        state.owner = None;
                        self.changed.notify_one();
                    }
                    Flavour::Semaphore { bound } => {
                        let [n] = args.bind(method, ["n"], 0)?;
                        let n = n.map(|n| int(&n, "n")).transpose()?.unwrap_or(1);
                        let n = u64::try_from(n)
                            .ok()
                            .filter(|n| *n >= 1)
                            .ok_or_else(|| Raise::value_error("n must be one or more"))?;
                        let value = state
                            .value
                            .checked_add(n)
                            .ok_or_else(|| Raise::new("builtins.OverflowError", Vec::new()))?;
                        if bound.is_some_and(|b| value > b) {
                            return Err(Raise::value_error("Semaphore released too many times"));
                        }
                        state.value = value;
                        self.changed.notify_all();
                    }
                }
                Outcome::none()
            }
            // This crate's: a semaphore's value, whether a lock is held, an RLock's depth.
            "#value" => {
                args.none(method)?;
                let state = lock(&self.state);
                ok(match self.flavour {
                    Flavour::Semaphore { .. } => state.value as i64,
                    Flavour::Lock => i64::from(state.value == 0),
                    Flavour::RLock => state.depth as i64,
                })
            }
            other => Err(no_method(self.typeid, other)),
        }
    }

    fn repr(&self) -> String {
        let state = lock(&self.state);
        match self.flavour {
            Flavour::Lock => format!("<{} _thread.lock object>", if state.value == 0 { "locked" } else { "unlocked" }),
            Flavour::RLock => format!(
                "<{} _thread.RLock object owner={} count={}>",
                if state.depth == 0 { "unlocked" } else { "locked" },
                state.owner.unwrap_or(0),
                state.depth
            ),
            Flavour::Semaphore { .. } => format!("<threading.{} object: value={}>", self.typeid, state.value),
        }
    }

    fn forget_caller(&self, caller: u64) {
        let mut state = lock(&self.state);
        if state.owner != Some(caller) {
            return;
        }
        match self.flavour {
            Flavour::Lock => state.value = 1,
            Flavour::RLock => state.depth = 0,
            Flavour::Semaphore { .. } => return,
        }
        state.owner = None;
        self.changed.notify_all();
    }
}

struct ConditionState {
    /// The condition's own re-entrant lock.
    lock: State,
    waiters: VecDeque<u64>,
    notified: HashSet<u64>,
    tickets: u64,
}

/// A managed `threading.Condition` with its own re-entrant lock.
pub(crate) struct Condition {
    state: Mutex<ConditionState>,
    changed: Condvar,
}

impl Condition {
    pub(crate) fn new(args: Args) -> Result<Condition, Raise> {
        let [given] = args.bind("Condition", ["lock"], 0)?;
        if given.is_some_and(|l| !matches!(l, PickleValue::None)) {
            return Err(Raise::type_error(
                "this manager's Condition keeps its own lock: create it without one (manager.Condition())",
            ));
        }
        Ok(Condition {
            state: Mutex::new(ConditionState {
                lock: State { value: 1, owner: None, depth: 0 },
                waiters: VecDeque::new(),
                notified: HashSet::new(),
                tickets: 0,
            }),
            changed: Condvar::new(),
        })
    }

    fn notify(&self, mut state: MutexGuard<'_, ConditionState>, me: u64, n: usize) -> Result<Outcome, Raise> {
        if state.lock.owner != Some(me) {
            return Err(Raise::runtime_error("cannot notify on un-acquired lock"));
        }
        let chosen: Vec<u64> = state.waiters.iter().filter(|t| !state.notified.contains(t)).take(n).copied().collect();
        state.notified.extend(chosen);
        self.changed.notify_all();
        Outcome::none()
    }

    fn wait(&self, wait: Option<Duration>, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let me = caller.id;
        let mut state = lock(&self.state);
        if state.lock.owner != Some(me) {
            return Err(Raise::runtime_error("cannot wait on un-acquired lock"));
        }
        let depth = std::mem::take(&mut state.lock.depth);
        state.lock.owner = None;
        let ticket = state.tickets;
        state.tickets += 1;
        state.waiters.push_back(ticket);
        self.changed.notify_all();
        let (mut state, notified) =
            match wait_until(state, &self.changed, wait, caller, |s| s.notified.contains(&ticket)) {
                Ok(Waited::Ready(state)) => (state, true),
                Ok(Waited::TimedOut(state)) => (state, false),
                Err(failure) => {
                    lock(&self.state).waiters.retain(|t| *t != ticket);
                    return Err(failure);
                }
            };
        state.waiters.retain(|t| *t != ticket);
        state.notified.remove(&ticket);
        // Take the lock back, as long as that takes.
        let Waited::Ready(mut state) = wait_until(state, &self.changed, None, caller, |s| s.lock.owner.is_none())?
        else {
            return Err(Raise::Remote("the condition's lock could not be taken back".into()));
        };
        state.lock.owner = Some(me);
        state.lock.depth = depth;
        ok(notified)
    }
}

impl Served for Condition {
    fn typeid(&self) -> &str {
        "Condition"
    }

    fn exposed(&self) -> &'static [&'static str] {
        &["acquire", "release", "wait", "notify", "notify_all"]
    }

    fn call(&self, method: &str, input: Input, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        let me = caller.id;
        match method {
            "acquire" => {
                let wait = acquire_wait(args, false)?;
                let state = lock(&self.state);
                let waited = wait_until(state, &self.changed, wait, caller, |s| {
                    s.lock.owner.is_none() || s.lock.owner == Some(me)
                })?;
                let Waited::Ready(mut state) = waited else { return ok(false) };
                state.lock.owner = Some(me);
                state.lock.depth += 1;
                ok(true)
            }
            "release" => {
                args.none(method)?;
                let mut state = lock(&self.state);
                if state.lock.owner != Some(me) {
                    return Err(Raise::runtime_error("cannot release un-acquired lock"));
                }
                state.lock.depth -= 1;
                if state.lock.depth == 0 {
                    state.lock.owner = None;
                    self.changed.notify_all();
                }
                Outcome::none()
            }
            "wait" => {
                let [wait] = args.bind(method, ["timeout"], 0)?;
                self.wait(timeout(wait.as_ref(), true)?, caller)
            }
            "notify" => {
                let [n] = args.bind(method, ["n"], 0)?;
                let n = n.map(|n| int(&n, "n")).transpose()?.unwrap_or(1);
                self.notify(lock(&self.state), me, usize::try_from(n).unwrap_or(0))
            }
            "notify_all" | "notifyAll" => {
                args.none(method)?;
                self.notify(lock(&self.state), me, usize::MAX)
            }
            "#value" => {
                args.none(method)?;
                ok(lock(&self.state).lock.depth as i64)
            }
            other => Err(no_method("Condition", other)),
        }
    }

    fn repr(&self) -> String {
        let state = lock(&self.state);
        format!("<Condition(<_thread.RLock object count={}>, {})>", state.lock.depth, state.waiters.len())
    }

    fn forget_caller(&self, caller: u64) {
        let mut state = lock(&self.state);
        if state.lock.owner == Some(caller) {
            state.lock = State { value: 1, owner: None, depth: 0 };
            self.changed.notify_all();
        }
    }
}
