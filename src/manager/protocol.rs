//! The manager's wire protocol: one [`Request`] from a proxy, one [`Reply`] from the server, each a
//! postcard message in one frame of a [`Connection`](crate::Connection).
//!
//! Values inside managed containers travel as their postcard bytes ([`Bytes`]): the server never
//! needs their type, only equality of the bytes (dict keys, set members, `index`, `remove`). Typed
//! proxies encode and decode at the edge.

use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A value encoded with postcard, as the server stores it.
pub(crate) type Bytes = Vec<u8>;

/// The largest request or reply the server and its proxies accept (a bad length cannot make
/// either side allocate more).
pub(crate) const MAX_MESSAGE: u64 = 64 << 20;

/// An object's number in its server.
pub(crate) type ObjectId = u64;

/// What kind of object to create in the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List(Vec<Bytes>),
    /// A set holding these items (duplicates are dropped).
    Set(Vec<Bytes>),
    Namespace,
    Queue {
        order: QueueOrder,
        maxsize: usize,
        joinable: bool,
    },
    Lock,
    RLock,
    Semaphore {
        value: u64,
        bounded: bool,
    },
    Condition,
    Event,
    Barrier {
        parties: u64,
        timeout: Option<Duration>,
    },
    Value(Bytes),
    Array(Vec<Bytes>),
    /// A registered user type: its registered name and its initial value.
    Custom {
        type_name: String,
        state: Bytes,
    },
}

/// The order a managed queue hands its items out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum QueueOrder {
    Fifo,
    Lifo,
    Priority,
}

/// One request from a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Creates an object, owned by this connection; with a name, returns the object already
    /// registered under it if there is one (named objects live as long as the server).
    Create { kind: Kind, name: Option<String> },
    /// Calls a method on an object.
    Call { id: ObjectId, call: Call },
    /// Takes a reference to `id` for a proxy in transit (serialized or cloned); returns a ticket.
    Lend { id: ObjectId },
    /// The proxy of a ticket takes its reference over: it is owned by this connection from now.
    /// A ticket already adopted (a proxy decoded twice, as from a managed container) takes a new
    /// reference to `id` instead, if the object is still alive.
    Adopt { ticket: u64, id: ObjectId },
    /// Moves this connection to a new [`pipe`](crate::pipe) (shared-memory rings: calls without
    /// system calls while both sides keep up). The server answers `Ok`, then sends the client's
    /// end of the pipe as a value on the old connection, and serves the pipe from then on. Only
    /// over Unix-domain sockets (the pipe end travels as descriptors).
    Upgrade,
    /// How many objects the server holds.
    ObjectCount,
    /// Stops the server.
    Shutdown,
    /// A [`SharedMemoryManager`](super::SharedMemoryManager)'s server takes the named block over
    /// (CPython `track_segment`): it unlinks it at shutdown.
    TrackSegment(String),
    /// The server unlinks the block now and forgets it (CPython `release_segment`).
    ReleaseSegment(String),
    /// The names of the blocks the server holds, oldest first (CPython `list_segments`).
    ListSegments,
}

/// A method call on a built-in object or a registered type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Call {
    Dict(DictCall),
    List(ListCall),
    Set(SetCall),
    Queue(QueueCall),
    Lock(LockCall),
    Condition(ConditionCall),
    Event(EventCall),
    Barrier(BarrierCall),
    Value(ValueCall),
    Custom { method: String, args: Bytes },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum DictCall {
    Get(Bytes),
    Set(Bytes, Bytes),
    SetDefault(Bytes, Bytes),
    Remove(Bytes),
    Contains(Bytes),
    Len,
    Clear,
    Items,
    Update(Vec<(Bytes, Bytes)>),
    /// Removes and returns the pair inserted last (CPython `popitem`).
    PopItem,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ListCall {
    Get(i64),
    Set(i64, Bytes),
    Append(Bytes),
    Extend(Vec<Bytes>),
    Insert(i64, Bytes),
    Pop(Option<i64>),
    Remove(Bytes),
    Index(Bytes),
    Count(Bytes),
    Reverse,
    Len,
    Clear,
    Items,
    /// The items a slice selects (CPython `l[start:stop:step]`).
    GetSlice(Slice),
    /// Replaces the items a slice selects (CPython `l[start:stop:step] = items`); with step 1
    /// the list grows or shrinks, otherwise the counts must match.
    SetSlice(Slice, Vec<Bytes>),
    /// Removes the items a slice selects (CPython `del l[start:stop:step]`).
    DeleteSlice(Slice),
    /// Repeats the items in place (CPython `l *= n`; 0 empties the list).
    Repeat(u64),
    /// Puts the items in `order` (a permutation of their positions), if the list still holds
    /// exactly `snapshot`; whether it did. A proxy sorts with its own type's order this way.
    Reorder {
        snapshot: Vec<Bytes>,
        order: Vec<u64>,
    },
}

/// A Python slice, `start:stop:step`: bounds may be negative (counted from the end) or absent.
///
/// Made from Rust ranges (`2..7`, `-3..`, `..`, `..=-1`) and [`step`](Self::step) for an
/// extended slice: `Slice::from(..).step(-1)` is Python's `[::-1]`;
/// [`from_parts`](Self::from_parts) says the rest (`[8:2:-2]`).
#[doc(alias = "slice")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    start: Option<i64>,
    stop: Option<i64>,
    step: i64,
}

impl Slice {
    /// The slice of the positions `range` covers, with step 1.
    pub fn new(range: impl RangeBounds<i64>) -> Slice {
        let start = match range.start_bound() {
            Bound::Included(&i) => Some(i),
            Bound::Excluded(&i) => Some(i.saturating_add(1)),
            Bound::Unbounded => None,
        };
        let stop = match range.end_bound() {
            // `..=-1` reaches the last item: Python has no inclusive bound, and `-1 + 1` is 0.
            Bound::Included(&-1) => None,
            Bound::Included(&i) => Some(i.saturating_add(1)),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        Slice { start, stop, step: 1 }
    }

    /// Python's `slice(start, stop, step)` spelled out, for bounds a Rust range cannot say
    /// (a start after the stop, with a negative step).
    pub fn from_parts(start: Option<i64>, stop: Option<i64>, step: i64) -> Slice {
        Slice { start, stop, step }
    }

    /// The same bounds taking every `step`-th item; a negative step walks backwards from
    /// `start` (Python's `[start:stop:step]`). A step of 0 is refused when the slice is used.
    pub fn step(self, step: i64) -> Slice {
        Slice { step, ..self }
    }

    /// The positions the slice selects in a sequence of `len` items, in order (Python's
    /// `range(*slice.indices(len))`); `None` for a step of 0.
    pub(crate) fn positions(&self, len: usize) -> Option<Vec<usize>> {
        if self.step == 0 {
            return None;
        }
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        let (lower, upper) = if self.step < 0 { (-1, len - 1) } else { (0, len) };
        let clamp = |bound: Option<i64>, absent: i64| match bound {
            None => absent,
            Some(i) if i < 0 => (i.saturating_add(len)).max(lower),
            Some(i) => i.min(upper),
        };
        let start = clamp(self.start, if self.step < 0 { upper } else { lower });
        let stop = clamp(self.stop, if self.step < 0 { lower } else { upper });
        let mut positions = Vec::new();
        let mut at = start;
        while (self.step > 0 && at < stop) || (self.step < 0 && at > stop) {
            positions.push(at as usize);
            at = match at.checked_add(self.step) {
                Some(next) => next,
                None => break,
            };
        }
        Some(positions)
    }

    /// Whether the slice takes every item between its bounds (step 1).
    pub(crate) fn is_contiguous(&self) -> bool {
        self.step == 1
    }

    /// Where a step-1 slice starts and ends in a sequence of `len` items (its end never before
    /// its start), for an assignment that may change the length.
    pub(crate) fn span(&self, len: usize) -> (usize, usize) {
        let clamp = |bound: Option<i64>, absent: usize| match bound {
            None => absent,
            Some(i) if i < 0 => usize::try_from(i.saturating_add(len as i64)).unwrap_or(0),
            Some(i) => usize::try_from(i).unwrap_or(usize::MAX).min(len),
        };
        let start = clamp(self.start, 0);
        (start, clamp(self.stop, len).max(start))
    }
}

macro_rules! slice_from_range {
    ($($range:ty),*) => {$(
        impl From<$range> for Slice {
            fn from(range: $range) -> Slice {
                Slice::new(range)
            }
        }
    )*};
}

slice_from_range!(
    std::ops::Range<i64>,
    std::ops::RangeFrom<i64>,
    std::ops::RangeTo<i64>,
    std::ops::RangeFull,
    std::ops::RangeInclusive<i64>,
    std::ops::RangeToInclusive<i64>
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum SetCall {
    Add(Bytes),
    Discard(Bytes),
    Contains(Bytes),
    Len,
    Clear,
    Items,
    /// Adds every item (CPython `s.update(items)`, `s |= items`).
    Update(Vec<Bytes>),
    /// Removes and returns an item, the one added last (CPython `s.pop()`).
    Pop,
    /// Keeps only the items also in these (CPython `intersection_update`, `&=`).
    Retain(Vec<Bytes>),
    /// Removes these items (CPython `difference_update`, `-=`).
    RemoveAll(Vec<Bytes>),
    /// Removes these items where present and adds the others (CPython
    /// `symmetric_difference_update`, `^=`).
    Toggle(Vec<Bytes>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum QueueCall {
    /// Puts an item (with its priority for a priority queue); waits for room up to the timeout
    /// (`Some(ZERO)`: not at all).
    Put {
        item: Bytes,
        priority: i64,
        timeout: Option<Duration>,
    },
    /// Takes an item, waiting up to the timeout.
    Get {
        timeout: Option<Duration>,
    },
    TaskDone,
    Join {
        timeout: Option<Duration>,
    },
    Len,
    Empty,
    Full,
}

/// Calls on `Lock`, `RLock`, `Semaphore` and `BoundedSemaphore` (and a condition's lock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum LockCall {
    /// Waits up to the timeout; `Some(ZERO)` tries once.
    Acquire {
        timeout: Option<Duration>,
    },
    Release,
    /// Whether it is held (locks) or its value (semaphores).
    Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ConditionCall {
    Lock(LockCall),
    Wait { timeout: Option<Duration> },
    Notify(u64),
    NotifyAll,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum EventCall {
    Set,
    Clear,
    IsSet,
    Wait { timeout: Option<Duration> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum BarrierCall {
    Wait { timeout: Option<Duration> },
    Abort,
    Reset,
    Broken,
    Waiting,
    Parties,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ValueCall {
    Get,
    Set(Bytes),
    GetAt(i64),
    SetAt(i64, Bytes),
    Len,
    Items,
}

/// The server's answer: the postcard bytes of the method's result, or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Reply {
    Ok(Bytes),
    Err(Failure),
}

/// Why a request failed in the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Failure {
    /// The method ran and failed, or the request made no sense; the server's message.
    Remote(String),
    /// A wait ran out of time.
    Timeout(Duration),
    /// A lock or semaphore was held, or a queue was empty or full, and the caller would not wait.
    WouldBlock,
    /// A barrier was broken.
    BrokenBarrier,
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Error {
        match failure {
            Failure::Remote(message) => Error::Remote(message),
            Failure::Timeout(after) => Error::Timeout(after),
            Failure::WouldBlock => Error::WouldBlock,
            Failure::BrokenBarrier => Error::BrokenBarrier,
        }
    }
}

/// Encodes a value as postcard bytes.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    postcard::to_allocvec(value).map_err(|e| Error::Codec { action: "encode", detail: e.to_string() })
}

/// Decodes postcard bytes; the whole input must be used.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Error::Codec { action: "decode", detail: format!("{} bytes left over", rest.len()) }),
        Err(e) => Err(Error::Codec { action: "decode", detail: e.to_string() }),
    }
}

/// Decodes one request as the server receives it (the input of the fuzz target).
pub(crate) fn decode_request(bytes: &[u8]) -> Result<Request> {
    decode(bytes)
}
