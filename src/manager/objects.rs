//! The built-in objects as the server holds them, and how each answers its calls.
//!
//! Every object guards its state with its own mutex; calls that wait (a queue's `get`, a lock's
//! `acquire`, an event's `wait`) wait on the object's condition variable in the thread that serves
//! the caller's connection, in slices, so that a caller that disconnects in the middle of a wait
//! is noticed and its thread ends.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::protocol::{
    BarrierCall, Bytes, Call, ConditionCall, DictCall, EventCall, Failure, Kind, ListCall, LockCall, QueueCall,
    QueueOrder, SetCall, Slice, ValueCall, encode,
};
use super::registry::DynManaged;

/// How often a waiting call checks that its caller is still connected.
const CALLER_CHECK: Duration = Duration::from_millis(100);

/// The connection a call came in on: its number, and a way to see whether it hung up.
pub(crate) struct Caller<'a> {
    pub(crate) id: u64,
    pub(crate) gone: &'a dyn Fn() -> bool,
}

type Answer = std::result::Result<Bytes, Failure>;

fn ok<T: serde::Serialize>(value: T) -> Answer {
    encode(&value).map_err(|e| Failure::Remote(e.to_string()))
}

fn remote(message: impl Into<String>) -> Failure {
    Failure::Remote(message.into())
}

/// Locks a mutex; a panic in another call (a user method) does not make the object unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` until `ready` holds, the timeout passes (`Failure::Timeout`; `Some(ZERO)` gives
/// `WouldBlock` instead) or the caller disconnects.
fn wait_until<'m, T>(
    mut guard: MutexGuard<'m, T>,
    cv: &Condvar,
    timeout: Option<Duration>,
    caller: &Caller<'_>,
    mut ready: impl FnMut(&mut T) -> bool,
) -> std::result::Result<MutexGuard<'m, T>, Failure> {
    // A timeout too far away for the clock (a client may send `Duration::MAX`) is no limit.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        if ready(&mut guard) {
            return Ok(guard);
        }
        let slice = match deadline {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(match timeout {
                        Some(t) if t.is_zero() => Failure::WouldBlock,
                        _ => Failure::Timeout(timeout.unwrap_or_default()),
                    });
                }
                left.min(CALLER_CHECK)
            }
            None => CALLER_CHECK,
        };
        if (caller.gone)() {
            return Err(remote("the caller disconnected"));
        }
        guard = cv.wait_timeout(guard, slice).unwrap_or_else(|p| p.into_inner()).0;
    }
}

/// Python's index rules: negative counts from the end; `None` when out of range.
fn position(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let at = if index < 0 { index + len } else { index };
    (0..len).contains(&at).then_some(at as usize)
}

fn out_of_range(what: &str, index: i64) -> Failure {
    remote(format!("IndexError: {what} index {index} out of range"))
}

/// A map that keeps insertion order, as Python's dict does.
#[derive(Default)]
pub(crate) struct OrderedMap {
    entries: Vec<(Bytes, Bytes)>,
    index: HashMap<Bytes, usize>,
}

impl OrderedMap {
    fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    fn insert(&mut self, key: Bytes, value: Bytes) {
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Bytes> {
        let i = self.index.remove(key)?;
        let (_, value) = self.entries.remove(i);
        for (k, _) in &self.entries[i..] {
            if let Some(slot) = self.index.get_mut(k) {
                *slot -= 1;
            }
        }
        Some(value)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    /// Removes and returns the entry inserted last.
    fn pop_last(&mut self) -> Option<(Bytes, Bytes)> {
        let (key, value) = self.entries.pop()?;
        self.index.remove(&key);
        Some((key, value))
    }

    /// Keeps the entries whose key passes `keep`, in their order.
    fn retain_keys(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        self.entries.retain(|(key, _)| keep(key));
        self.index = self.entries.iter().enumerate().map(|(i, (key, _))| (key.clone(), i)).collect();
    }
}

/// A queue's items and counters.
struct QueueState {
    /// For a priority queue, kept sorted by (priority, arrival).
    items: VecDeque<(i64, u64, Bytes)>,
    arrivals: u64,
    unfinished: u64,
}

pub(crate) struct ManagedQueue {
    order: QueueOrder,
    maxsize: usize,
    joinable: bool,
    state: Mutex<QueueState>,
    changed: Condvar,
}

/// The flavour of a lock-like object.
#[derive(Clone, Copy)]
enum LockFlavour {
    Lock,
    RLock,
    Semaphore { bound: Option<u64> },
}

#[derive(Default)]
struct LockState {
    /// Free permits (locks: 1 when free).
    value: u64,
    owner: Option<u64>,
    depth: u64,
}

pub(crate) struct ManagedLock {
    flavour: LockFlavour,
    state: Mutex<LockState>,
    changed: Condvar,
}

struct ConditionState {
    lock: LockState,
    waiters: VecDeque<u64>,
    notified: HashSet<u64>,
    tickets: u64,
}

pub(crate) struct ManagedCondition {
    state: Mutex<ConditionState>,
    changed: Condvar,
}

struct BarrierState {
    count: u64,
    generation: u64,
    broken: bool,
    /// The generation a reset released (its waiters see a broken barrier).
    reset_generation: Option<u64>,
}

pub(crate) struct ManagedBarrier {
    parties: u64,
    timeout: Option<Duration>,
    state: Mutex<BarrierState>,
    changed: Condvar,
}

pub(crate) struct ManagedEvent {
    set: Mutex<bool>,
    changed: Condvar,
}

/// An object in the server.
pub(crate) enum Object {
    Dict(Mutex<OrderedMap>),
    List(Mutex<Vec<Bytes>>),
    Set(Mutex<OrderedMap>),
    Queue(ManagedQueue),
    Lock(ManagedLock),
    Condition(ManagedCondition),
    Event(ManagedEvent),
    Barrier(ManagedBarrier),
    /// `Value` (one slot) and `Array` (fixed length).
    Cells(Mutex<Vec<Bytes>>),
    /// A registered type: its name and the value.
    Custom(String, Mutex<Box<dyn DynManaged>>),
}

impl Object {
    /// A new built-in object of `kind` (`Kind::Custom` is made by the registry).
    pub(crate) fn new(kind: Kind) -> std::result::Result<Object, Failure> {
        Ok(match kind {
            Kind::Dict | Kind::Namespace => Object::Dict(Mutex::default()),
            Kind::List(items) => Object::List(Mutex::new(items)),
            Kind::Set(items) => {
                let mut set = OrderedMap::default();
                for item in items {
                    set.insert(item, Vec::new());
                }
                Object::Set(Mutex::new(set))
            }
            Kind::Queue { order, maxsize, joinable } => Object::Queue(ManagedQueue {
                order,
                maxsize,
                joinable,
                state: Mutex::new(QueueState { items: VecDeque::new(), arrivals: 0, unfinished: 0 }),
                changed: Condvar::new(),
            }),
            Kind::Lock => Object::Lock(ManagedLock::new(LockFlavour::Lock, 1)),
            Kind::RLock => Object::Lock(ManagedLock::new(LockFlavour::RLock, 1)),
            Kind::Semaphore { value, bounded } => {
                Object::Lock(ManagedLock::new(LockFlavour::Semaphore { bound: bounded.then_some(value) }, value))
            }
            Kind::Condition => Object::Condition(ManagedCondition {
                state: Mutex::new(ConditionState {
                    lock: LockState { value: 1, owner: None, depth: 0 },
                    waiters: VecDeque::new(),
                    notified: HashSet::new(),
                    tickets: 0,
                }),
                changed: Condvar::new(),
            }),
            Kind::Event => Object::Event(ManagedEvent { set: Mutex::new(false), changed: Condvar::new() }),
            Kind::Barrier { parties, timeout } => {
                if parties == 0 {
                    return Err(remote("ValueError: a barrier needs at least one party"));
                }
                Object::Barrier(ManagedBarrier {
                    parties,
                    timeout,
                    state: Mutex::new(BarrierState { count: 0, generation: 0, broken: false, reset_generation: None }),
                    changed: Condvar::new(),
                })
            }
            Kind::Value(value) => Object::Cells(Mutex::new(vec![value])),
            Kind::Array(items) => Object::Cells(Mutex::new(items)),
            Kind::Custom { type_name, .. } => return Err(remote(format!("{type_name} is made by the registry"))),
        })
    }

    /// Whether this object is of the kind `kind` creates (a named object asked for again).
    pub(crate) fn is_kind(&self, kind: &Kind) -> bool {
        if let (Object::Custom(name, _), Kind::Custom { type_name, .. }) = (self, kind) {
            return name == type_name;
        }
        matches!(
            (self, kind),
            (Object::Dict(_), Kind::Dict | Kind::Namespace)
                | (Object::List(_), Kind::List(_))
                | (Object::Set(_), Kind::Set(_))
                | (Object::Queue(_), Kind::Queue { .. })
                | (Object::Lock(_), Kind::Lock | Kind::RLock | Kind::Semaphore { .. })
                | (Object::Condition(_), Kind::Condition)
                | (Object::Event(_), Kind::Event)
                | (Object::Barrier(_), Kind::Barrier { .. })
                | (Object::Cells(_), Kind::Value(_) | Kind::Array(_))
                | (Object::Custom(..), Kind::Custom { .. })
        )
    }

    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Object::Dict(_) => "a dict",
            Object::List(_) => "a list",
            Object::Set(_) => "a set",
            Object::Queue(_) => "a queue",
            Object::Lock(_) => "a lock or semaphore",
            Object::Condition(_) => "a condition",
            Object::Event(_) => "an event",
            Object::Barrier(_) => "a barrier",
            Object::Cells(_) => "a value or array",
            Object::Custom(..) => "a registered type",
        }
    }

    /// Answers one call.
    pub(crate) fn call(&self, call: Call, caller: &Caller<'_>) -> Answer {
        match (self, call) {
            (Object::Dict(map), Call::Dict(call)) => dict_call(&mut lock(map), call),
            (Object::List(list), Call::List(call)) => list_call(&mut lock(list), call),
            (Object::Set(set), Call::Set(call)) => set_call(&mut lock(set), call),
            (Object::Queue(queue), Call::Queue(call)) => queue.call(call, caller),
            (Object::Lock(l), Call::Lock(call)) => l.call(call, caller),
            (Object::Condition(c), Call::Condition(call)) => c.call(call, caller),
            (Object::Event(e), Call::Event(call)) => e.call(call, caller),
            (Object::Barrier(b), Call::Barrier(call)) => b.call(call, caller),
            (Object::Cells(cells), Call::Value(call)) => cells_call(&mut lock(cells), call),
            (Object::Custom(_, object), Call::Custom { method, args }) => {
                lock(object).call_method(&method, &args).map_err(Failure::Remote)
            }
            (object, call) => Err(remote(format!("the object is {}; it has no method {call:?}", object.kind_name()))),
        }
    }

    /// The caller's connection closed: locks it held are released (their holder is gone).
    pub(crate) fn forget_caller(&self, caller: u64) {
        match self {
            Object::Lock(l) => l.forget(caller),
            Object::Condition(c) => {
                let mut state = lock(&c.state);
                if state.lock.owner == Some(caller) {
                    state.lock = LockState { value: 1, owner: None, depth: 0 };
                    c.changed.notify_all();
                }
            }
            _ => {}
        }
    }
}

fn dict_call(map: &mut OrderedMap, call: DictCall) -> Answer {
    match call {
        DictCall::Get(key) => ok(map.get(&key)),
        DictCall::Set(key, value) => {
            map.insert(key, value);
            ok(())
        }
        DictCall::SetDefault(key, value) => {
            if map.get(&key).is_none() {
                map.insert(key.clone(), value);
            }
            ok(map.get(&key))
        }
        DictCall::Remove(key) => ok(map.remove(&key)),
        DictCall::Contains(key) => ok(map.get(&key).is_some()),
        DictCall::Len => ok(map.entries.len() as u64),
        DictCall::Clear => {
            map.clear();
            ok(())
        }
        DictCall::Items => ok(&map.entries),
        DictCall::Update(pairs) => {
            for (key, value) in pairs {
                map.insert(key, value);
            }
            ok(())
        }
        DictCall::PopItem => ok(map.pop_last()),
    }
}

fn list_call(list: &mut Vec<Bytes>, call: ListCall) -> Answer {
    match call {
        ListCall::Get(i) => ok(&list[position(i, list.len()).ok_or_else(|| out_of_range("list", i))?]),
        ListCall::Set(i, item) => {
            let at = position(i, list.len()).ok_or_else(|| out_of_range("list assignment", i))?;
            list[at] = item;
            ok(())
        }
        ListCall::Append(item) => {
            list.push(item);
            ok(())
        }
        ListCall::Extend(items) => {
            list.extend(items);
            ok(())
        }
        ListCall::Insert(i, item) => {
            let len = list.len() as i64;
            let at = if i < 0 { (i + len).max(0) } else { i.min(len) };
            list.insert(at as usize, item);
            ok(())
        }
        ListCall::Pop(i) => {
            if list.is_empty() {
                return Err(remote("IndexError: pop from empty list"));
            }
            let at = position(i.unwrap_or(-1), list.len()).ok_or_else(|| out_of_range("pop", i.unwrap_or(-1)))?;
            ok(list.remove(at))
        }
        ListCall::Remove(item) => match list.iter().position(|x| *x == item) {
            Some(at) => {
                list.remove(at);
                ok(())
            }
            None => Err(remote("ValueError: list.remove(x): x not in list")),
        },
        ListCall::Index(item) => match list.iter().position(|x| *x == item) {
            Some(at) => ok(at as u64),
            None => Err(remote("ValueError: the item is not in the list")),
        },
        ListCall::Count(item) => ok(list.iter().filter(|x| **x == item).count() as u64),
        ListCall::Reverse => {
            list.reverse();
            ok(())
        }
        ListCall::Len => ok(list.len() as u64),
        ListCall::Clear => {
            list.clear();
            ok(())
        }
        ListCall::Items => ok(&*list),
        ListCall::GetSlice(slice) => {
            let positions = slice.positions(list.len()).ok_or_else(zero_step)?;
            ok(positions.iter().map(|&at| &list[at]).collect::<Vec<_>>())
        }
        ListCall::SetSlice(slice, items) => set_slice(list, slice, items),
        ListCall::DeleteSlice(slice) => {
            let positions = slice.positions(list.len()).ok_or_else(zero_step)?;
            let mut doomed = vec![false; list.len()];
            for at in positions {
                doomed[at] = true;
            }
            let mut at = 0;
            list.retain(|_| {
                at += 1;
                !doomed[at - 1]
            });
            ok(())
        }
        ListCall::Repeat(times) => repeat(list, times),
        ListCall::Reorder { snapshot, order } => reorder(list, &snapshot, &order),
    }
}

fn zero_step() -> Failure {
    remote("ValueError: slice step cannot be zero")
}

fn set_slice(list: &mut Vec<Bytes>, slice: Slice, items: Vec<Bytes>) -> Answer {
    if slice.is_contiguous() {
        let (start, stop) = slice.span(list.len());
        list.splice(start..stop, items);
        return ok(());
    }
    let positions = slice.positions(list.len()).ok_or_else(zero_step)?;
    if positions.len() != items.len() {
        return Err(remote(format!(
            "ValueError: attempt to assign sequence of size {} to extended slice of size {}",
            items.len(),
            positions.len()
        )));
    }
    for (at, item) in positions.into_iter().zip(items) {
        list[at] = item;
    }
    ok(())
}

/// The most memory a list may take after `*=` (a short request must not make the server
/// allocate without bound).
const MAX_REPEATED: usize = super::protocol::MAX_MESSAGE as usize;

fn repeat(list: &mut Vec<Bytes>, times: u64) -> Answer {
    let footprint: usize = list.iter().map(|item| item.len() + std::mem::size_of::<Bytes>()).sum();
    let fits = usize::try_from(times).ok().and_then(|n| footprint.checked_mul(n)).is_some_and(|m| m <= MAX_REPEATED);
    if !fits {
        return Err(remote(format!("MemoryError: the list repeated {times} times would exceed {MAX_REPEATED} bytes")));
    }
    if times == 0 {
        list.clear();
    }
    let once = list.len();
    if once > 0 {
        // `times` is bounded here: the footprint check failed for anything above MAX_REPEATED.
        for _ in 1..times {
            list.extend_from_within(..once);
        }
    }
    ok(())
}

fn reorder(list: &mut Vec<Bytes>, snapshot: &[Bytes], order: &[u64]) -> Answer {
    if list.as_slice() != snapshot {
        return ok(false);
    }
    let mut seen = vec![false; list.len()];
    let is_permutation = order.len() == list.len()
        && order.iter().all(|&i| {
            usize::try_from(i).ok().and_then(|i| seen.get_mut(i)).is_some_and(|s| !std::mem::replace(s, true))
        });
    if !is_permutation {
        return Err(remote("ValueError: the order is not a permutation of the list's positions"));
    }
    let mut old: Vec<Option<Bytes>> = std::mem::take(list).into_iter().map(Some).collect();
    list.extend(order.iter().filter_map(|&i| old[i as usize].take()));
    ok(true)
}

fn set_call(set: &mut OrderedMap, call: SetCall) -> Answer {
    match call {
        SetCall::Add(item) => {
            set.insert(item, Vec::new());
            ok(())
        }
        SetCall::Discard(item) => ok(set.remove(&item).is_some()),
        SetCall::Contains(item) => ok(set.get(&item).is_some()),
        SetCall::Len => ok(set.entries.len() as u64),
        SetCall::Clear => {
            set.clear();
            ok(())
        }
        SetCall::Items => ok(set.entries.iter().map(|(k, _)| k).collect::<Vec<_>>()),
        SetCall::Update(items) => {
            for item in items {
                set.insert(item, Vec::new());
            }
            ok(())
        }
        SetCall::Pop => ok(set.pop_last().map(|(item, _)| item)),
        SetCall::Retain(items) => {
            let others: HashSet<Bytes> = items.into_iter().collect();
            set.retain_keys(|item| others.contains(item));
            ok(())
        }
        SetCall::RemoveAll(items) => {
            let others: HashSet<Bytes> = items.into_iter().collect();
            set.retain_keys(|item| !others.contains(item));
            ok(())
        }
        SetCall::Toggle(items) => {
            let mut others = OrderedMap::default();
            for item in items {
                others.insert(item, Vec::new());
            }
            let (present, absent): (HashSet<Bytes>, Vec<Bytes>) = {
                let (present, absent): (Vec<Bytes>, Vec<Bytes>) =
                    others.entries.into_iter().map(|(item, _)| item).partition(|item| set.get(item).is_some());
                (present.into_iter().collect(), absent)
            };
            set.retain_keys(|item| !present.contains(item));
            for item in absent {
                set.insert(item, Vec::new());
            }
            ok(())
        }
    }
}

fn cells_call(cells: &mut [Bytes], call: ValueCall) -> Answer {
    let at = |i: i64, len: usize| position(i, len).ok_or_else(|| out_of_range("array", i));
    match call {
        ValueCall::Get => ok(&cells[at(0, cells.len())?]),
        ValueCall::Set(value) => {
            cells[at(0, cells.len())?] = value;
            ok(())
        }
        ValueCall::GetAt(i) => ok(&cells[at(i, cells.len())?]),
        ValueCall::SetAt(i, value) => {
            cells[at(i, cells.len())?] = value;
            ok(())
        }
        ValueCall::Len => ok(cells.len() as u64),
        ValueCall::Items => ok(&*cells),
    }
}

impl ManagedQueue {
    fn call(&self, call: QueueCall, caller: &Caller<'_>) -> Answer {
        let state = lock(&self.state);
        match call {
            QueueCall::Put { item, priority, timeout } => {
                let maxsize = self.maxsize;
                let mut state =
                    wait_until(state, &self.changed, timeout, caller, |s| maxsize == 0 || s.items.len() < maxsize)?;
                let arrival = state.arrivals;
                state.arrivals += 1;
                state.unfinished += 1;
                let entry = (priority, arrival, item);
                if self.order == QueueOrder::Priority {
                    let at = state.items.partition_point(|(p, a, _)| (*p, *a) < (priority, arrival));
                    state.items.insert(at, entry);
                } else {
                    state.items.push_back(entry);
                }
                self.changed.notify_all();
                ok(())
            }
            QueueCall::Get { timeout } => {
                let mut state = wait_until(state, &self.changed, timeout, caller, |s| !s.items.is_empty())?;
                let item = match self.order {
                    QueueOrder::Lifo => state.items.pop_back(),
                    QueueOrder::Fifo | QueueOrder::Priority => state.items.pop_front(),
                };
                self.changed.notify_all();
                ok(item.map(|(_, _, bytes)| bytes).unwrap_or_default())
            }
            QueueCall::TaskDone => {
                let mut state = state;
                if !self.joinable {
                    return Err(remote("task_done is for joinable queues"));
                }
                if state.unfinished == 0 {
                    return Err(remote("ValueError: task_done() called too many times"));
                }
                state.unfinished -= 1;
                self.changed.notify_all();
                ok(())
            }
            QueueCall::Join { timeout } => {
                if !self.joinable {
                    return Err(remote("join is for joinable queues"));
                }
                drop(wait_until(state, &self.changed, timeout, caller, |s| s.unfinished == 0)?);
                ok(())
            }
            QueueCall::Len => ok(state.items.len() as u64),
            QueueCall::Empty => ok(state.items.is_empty()),
            QueueCall::Full => ok(self.maxsize > 0 && state.items.len() >= self.maxsize),
        }
    }
}

impl ManagedLock {
    fn new(flavour: LockFlavour, value: u64) -> ManagedLock {
        ManagedLock { flavour, state: Mutex::new(LockState { value, owner: None, depth: 0 }), changed: Condvar::new() }
    }

    fn call(&self, call: LockCall, caller: &Caller<'_>) -> Answer {
        let state = lock(&self.state);
        match (call, self.flavour) {
            (LockCall::Acquire { timeout }, LockFlavour::RLock) => {
                let me = caller.id;
                let mut state =
                    wait_until(state, &self.changed, timeout, caller, |s| s.owner.is_none() || s.owner == Some(me))?;
                state.owner = Some(me);
                state.depth += 1;
                ok(())
            }
            (LockCall::Acquire { timeout }, _) => {
                let mut state = wait_until(state, &self.changed, timeout, caller, |s| s.value > 0)?;
                state.value -= 1;
                state.owner = Some(caller.id);
                ok(())
            }
            (LockCall::Release, LockFlavour::RLock) => {
                let mut state = state;
                if state.owner != Some(caller.id) {
                    return Err(remote("RuntimeError: cannot release un-acquired lock"));
                }
                state.depth -= 1;
                if state.depth == 0 {
                    state.owner = None;
                    self.changed.notify_one();
                }
                ok(())
            }
            (LockCall::Release, LockFlavour::Lock) => {
                let mut state = state;
                if state.value > 0 {
                    return Err(remote("RuntimeError: release unlocked lock"));
                }
                state.value = 1;
                state.owner = None;
                self.changed.notify_one();
                ok(())
            }
            (LockCall::Release, LockFlavour::Semaphore { bound }) => {
                let mut state = state;
                if bound.is_some_and(|b| state.value >= b) {
                    return Err(remote("ValueError: Semaphore released too many times"));
                }
                state.value =
                    state.value.checked_add(1).ok_or_else(|| remote("OverflowError: the semaphore's value"))?;
                self.changed.notify_one();
                ok(())
            }
            (LockCall::Value, LockFlavour::Semaphore { .. }) => ok(state.value),
            (LockCall::Value, LockFlavour::Lock) => ok(u64::from(state.value == 0)),
            (LockCall::Value, LockFlavour::RLock) => ok(state.depth),
        }
    }

    fn forget(&self, caller: u64) {
        let mut state = lock(&self.state);
        if state.owner != Some(caller) {
            return;
        }
        match self.flavour {
            LockFlavour::Lock => state.value = 1,
            LockFlavour::RLock => state.depth = 0,
            LockFlavour::Semaphore { .. } => return,
        }
        state.owner = None;
        self.changed.notify_all();
    }
}

impl ManagedCondition {
    fn call(&self, call: ConditionCall, caller: &Caller<'_>) -> Answer {
        let me = caller.id;
        let state = lock(&self.state);
        match call {
            ConditionCall::Lock(LockCall::Acquire { timeout }) => {
                let mut state = wait_until(state, &self.changed, timeout, caller, |s| {
                    s.lock.owner.is_none() || s.lock.owner == Some(me)
                })?;
                state.lock.owner = Some(me);
                state.lock.depth += 1;
                ok(())
            }
            ConditionCall::Lock(LockCall::Release) => {
                let mut state = state;
                if state.lock.owner != Some(me) {
                    return Err(remote("RuntimeError: cannot release un-acquired lock"));
                }
                state.lock.depth -= 1;
                if state.lock.depth == 0 {
                    state.lock.owner = None;
                    self.changed.notify_all();
                }
                ok(())
            }
            ConditionCall::Lock(LockCall::Value) => ok(state.lock.depth),
            ConditionCall::Wait { timeout } => {
                let mut state = state;
                if state.lock.owner != Some(me) {
                    return Err(remote("RuntimeError: cannot wait on un-acquired lock"));
                }
                let depth = std::mem::take(&mut state.lock.depth);
                state.lock.owner = None;
                let ticket = state.tickets;
                state.tickets += 1;
                state.waiters.push_back(ticket);
                self.changed.notify_all();
                let (mut state, notified) =
                    match wait_until(state, &self.changed, timeout, caller, |s| s.notified.contains(&ticket)) {
                        Ok(state) => (state, true),
                        Err(Failure::Timeout(_) | Failure::WouldBlock) => (lock(&self.state), false),
                        Err(failure) => {
                            let mut state = lock(&self.state);
                            state.waiters.retain(|t| *t != ticket);
                            return Err(failure);
                        }
                    };
                state.waiters.retain(|t| *t != ticket);
                state.notified.remove(&ticket);
                // Take the lock back, as long as that takes.
                let mut state = wait_until(state, &self.changed, None, caller, |s| s.lock.owner.is_none())?;
                state.lock.owner = Some(me);
                state.lock.depth = depth;
                ok(notified)
            }
            ConditionCall::Notify(n) => self.notify(state, me, n as usize),
            ConditionCall::NotifyAll => self.notify(state, me, usize::MAX),
        }
    }

    fn notify(&self, mut state: MutexGuard<'_, ConditionState>, me: u64, n: usize) -> Answer {
        if state.lock.owner != Some(me) {
            return Err(remote("RuntimeError: cannot notify on un-acquired lock"));
        }
        let chosen: Vec<u64> = state.waiters.iter().filter(|t| !state.notified.contains(t)).take(n).copied().collect();
        state.notified.extend(chosen);
        self.changed.notify_all();
        ok(())
    }
}

impl ManagedEvent {
    fn call(&self, call: EventCall, caller: &Caller<'_>) -> Answer {
        let mut set = lock(&self.set);
        match call {
            EventCall::Set => {
                *set = true;
                self.changed.notify_all();
                ok(())
            }
            EventCall::Clear => {
                *set = false;
                ok(())
            }
            EventCall::IsSet => ok(*set),
            EventCall::Wait { timeout } => match wait_until(set, &self.changed, timeout, caller, |s| *s) {
                Ok(_) => ok(true),
                Err(Failure::Timeout(_) | Failure::WouldBlock) => ok(false),
                Err(failure) => Err(failure),
            },
        }
    }
}

impl ManagedBarrier {
    fn call(&self, call: BarrierCall, caller: &Caller<'_>) -> Answer {
        let mut state = lock(&self.state);
        match call {
            BarrierCall::Wait { timeout } => {
                if state.broken {
                    return Err(Failure::BrokenBarrier);
                }
                let index = state.count;
                let generation = state.generation;
                state.count += 1;
                if state.count == self.parties {
                    state.count = 0;
                    state.generation += 1;
                    self.changed.notify_all();
                    return ok(index);
                }
                let timeout = timeout.or(self.timeout);
                match wait_until(state, &self.changed, timeout, caller, |s| s.broken || s.generation != generation) {
                    Ok(state) if !state.broken && state.reset_generation != Some(generation) => ok(index),
                    Ok(_) => Err(Failure::BrokenBarrier),
                    Err(_) => {
                        let mut state = lock(&self.state);
                        if state.generation == generation {
                            state.broken = true;
                            state.count = state.count.saturating_sub(1);
                            self.changed.notify_all();
                        }
                        Err(Failure::BrokenBarrier)
                    }
                }
            }
            BarrierCall::Abort => {
                state.broken = true;
                self.changed.notify_all();
                ok(())
            }
            BarrierCall::Reset => {
                if state.count > 0 && !state.broken {
                    state.reset_generation = Some(state.generation);
                    state.generation += 1;
                }
                state.count = 0;
                state.broken = false;
                self.changed.notify_all();
                ok(())
            }
            BarrierCall::Broken => ok(state.broken),
            BarrierCall::Waiting => ok(state.count),
            BarrierCall::Parties => ok(self.parties),
        }
    }
}
