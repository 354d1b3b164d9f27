//! `queue.Queue` (CPython's `Queue` and `JoinableQueue`, served through an `AutoProxy`), and
//! `queue.LifoQueue` and `queue.PriorityQueue`.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use super::args::{Args, flag, int, timeout};
use super::dict::no_method;
use super::python::py_cmp;
use super::{Caller, Input, Outcome, Raise, Served, Waited, lock, ok, wait_until};
use crate::pickle::PickleValue;

/// The order a managed queue hands its items out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Fifo,
    Lifo,
    /// By the item's priority (a tuple's first element, or the item), then by arrival.
    Priority,
}

struct State {
    items: VecDeque<PickleValue>,
    unfinished: u64,
}

/// A managed queue.
pub(crate) struct Queue {
    typeid: &'static str,
    order: Order,
    maxsize: usize,
    state: Mutex<State>,
    changed: Condvar,
}

/// What `public_methods(queue.Queue())` gives CPython's server, which an `AutoProxy` offers.
const QUEUE_METHODS: &[&str] =
    &["empty", "full", "get", "get_nowait", "join", "put", "put_nowait", "qsize", "task_done"];

impl Queue {
    pub(crate) fn new(typeid: &'static str, order: Order, args: Args) -> Result<Queue, Raise> {
        let [maxsize] = args.bind(typeid, ["maxsize"], 0)?;
        let maxsize = maxsize.map(|m| int(&m, "maxsize")).transpose()?.unwrap_or(0);
        Ok(Queue {
            typeid,
            order,
            // As in CPython, zero or less is no limit.
            maxsize: usize::try_from(maxsize).unwrap_or(0),
            state: Mutex::new(State { items: VecDeque::new(), unfinished: 0 }),
            changed: Condvar::new(),
        })
    }

    fn full(&self, state: &State) -> bool {
        self.maxsize > 0 && state.items.len() >= self.maxsize
    }

    fn put(
        &self,
        item: PickleValue,
        block: bool,
        wait: Option<std::time::Duration>,
        caller: &Caller<'_>,
    ) -> Result<Outcome, Raise> {
        let state = lock(&self.state);
        let wait = if block { wait } else { Some(std::time::Duration::ZERO) };
        let maxsize = self.maxsize;
        let mut state =
            match wait_until(state, &self.changed, wait, caller, |s| maxsize == 0 || s.items.len() < maxsize)? {
                Waited::Ready(state) => state,
                Waited::TimedOut(_) => return Err(Raise::new("queue.Full", Vec::new())),
            };
        state.unfinished += 1;
        if self.order == Order::Priority {
            // After every item of the same priority: arrival order among equals.
            let at = state.items.partition_point(|other| priority_cmp(other, &item) != Ordering::Greater);
            state.items.insert(at, item);
        } else {
            state.items.push_back(item);
        }
        self.changed.notify_all();
        Outcome::none()
    }

    fn get(&self, block: bool, wait: Option<std::time::Duration>, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let state = lock(&self.state);
        let wait = if block { wait } else { Some(std::time::Duration::ZERO) };
        let mut state = match wait_until(state, &self.changed, wait, caller, |s| !s.items.is_empty())? {
            Waited::Ready(state) => state,
            Waited::TimedOut(_) => return Err(Raise::new("queue.Empty", Vec::new())),
        };
        let item = match self.order {
            Order::Lifo => state.items.pop_back(),
            Order::Fifo | Order::Priority => state.items.pop_front(),
        };
        self.changed.notify_all();
        ok(item.unwrap_or_default())
    }
}

/// The order of two items of a priority queue: by priority (a tuple's first element, as in
/// `(priority, data)`, or the whole item), Python's ordering; items that do not compare rank
/// equal (then by arrival).
fn priority_cmp(a: &PickleValue, b: &PickleValue) -> Ordering {
    let priority = |v: &PickleValue| match v {
        PickleValue::Tuple(items) | PickleValue::List(items) if !items.is_empty() => items[0].clone(),
        other => other.clone(),
    };
    py_cmp(&priority(a), &priority(b)).unwrap_or(Ordering::Equal)
}

impl Served for Queue {
    fn typeid(&self) -> &str {
        self.typeid
    }

    fn exposed(&self) -> &'static [&'static str] {
        QUEUE_METHODS
    }

    fn call(&self, method: &str, input: Input, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        match method {
            "put" => {
                let [item, block, wait] = args.bind(method, ["item", "block", "timeout"], 1)?;
                let wait = timeout(wait.as_ref(), false)?;
                self.put(item.unwrap_or_default(), flag(block.as_ref(), true), wait, caller)
            }
            "put_nowait" => {
                let item = args.one(method, "item")?;
                self.put(item, false, None, caller)
            }
            "get" => {
                let [block, wait] = args.bind(method, ["block", "timeout"], 0)?;
                let wait = timeout(wait.as_ref(), false)?;
                self.get(flag(block.as_ref(), true), wait, caller)
            }
            "get_nowait" => {
                args.none(method)?;
                self.get(false, None, caller)
            }
            "task_done" => {
                args.none(method)?;
                let mut state = lock(&self.state);
                if state.unfinished == 0 {
                    return Err(Raise::value_error("task_done() called too many times"));
                }
                state.unfinished -= 1;
                self.changed.notify_all();
                Outcome::none()
            }
            // `join(timeout)` is this crate's: whether every item was done in time.
            "join" | "#join" => {
                let [wait] = args.bind(method, ["timeout"], 0)?;
                let wait = timeout(wait.as_ref(), true)?;
                let state = lock(&self.state);
                match wait_until(state, &self.changed, wait, caller, |s| s.unfinished == 0)? {
                    Waited::Ready(_) if method == "join" => Outcome::none(),
                    Waited::Ready(_) => ok(true),
                    Waited::TimedOut(_) => ok(false),
                }
            }
            "qsize" => {
                args.none(method)?;
                ok(lock(&self.state).items.len() as i64)
            }
            "empty" => {
                args.none(method)?;
                ok(lock(&self.state).items.is_empty())
            }
            "full" => {
                args.none(method)?;
                ok(self.full(&lock(&self.state)))
            }
            other => Err(no_method(self.typeid, other)),
        }
    }

    fn repr(&self) -> String {
        format!(
            "<queue.{} object with {} items>",
            self.typeid.trim_start_matches("Joinable"),
            lock(&self.state).items.len()
        )
    }
}
