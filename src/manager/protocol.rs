//! The wire protocol of this crate's proxies: one [`Request`] from a proxy, one [`Reply`] from the
//! server, each a postcard message in one frame of a [`Connection`](crate::Connection). (CPython's
//! clients speak CPython's protocol to the same server: `python_front`.)
//!
//! Objects are made and called by name, as CPython's clients make and call them: a typeid
//! (`"dict"`, `"Queue"`, a user type's name) with the constructor's arguments, a method name with
//! its arguments. Arguments (a tuple) and results travel pickled ([`crate::pickle`]), so that the
//! server holds Python values that its Python clients read as they are.

use std::ops::{Bound, RangeBounds};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bytes of a message: a pickle for arguments and results, postcard for the rest.
pub(crate) type Bytes = Vec<u8>;

/// The largest request or reply the server and its proxies accept (a bad length cannot make
/// either side allocate more).
pub(crate) const MAX_MESSAGE: u64 = 64 << 20;

/// An object's number in its server.
pub(crate) type ObjectId = u64;

/// One request from a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Creates an object of the registered `typeid` from `args` (a pickled tuple), owned by this
    /// connection; with a name, returns the object already registered under it if there is one
    /// (named objects live as long as the server). Answers the object's id (postcard).
    Create { typeid: String, args: Bytes, name: Option<String> },
    /// Calls `method` of an object with `args` (a pickled tuple); answers the pickled result.
    Call { id: ObjectId, method: String, args: Bytes },
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

    /// The slice's `(start, stop, step)`.
    pub(crate) fn parts(&self) -> (Option<i64>, Option<i64>, i64) {
        (self.start, self.stop, self.step)
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

/// The server's answer: the result's bytes (a pickle for a call), or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Reply {
    Ok(Bytes),
    Err(Failure),
}

/// Why a request failed in the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Failure {
    /// The method raised a Python exception: its class as Python names it (`KeyError`,
    /// `queue.Empty`) and its `str()`.
    Exception { class: String, message: String },
    /// The request failed otherwise (no such object or method, bad arguments); the server's
    /// message.
    Remote(String),
}

impl Failure {
    /// Whether this is the Python exception `class`.
    pub(crate) fn is(&self, class: &str) -> bool {
        matches!(self, Failure::Exception { class: c, .. } if c == class)
    }
}

impl From<Failure> for Error {
    /// [`Error::Remote`] with the server's message (`"KeyError: 'x'"`).
    fn from(failure: Failure) -> Error {
        match failure {
            Failure::Exception { class, message } if message.is_empty() => Error::Remote(class),
            Failure::Exception { class, message } => Error::Remote(format!("{class}: {message}")),
            Failure::Remote(message) => Error::Remote(message),
        }
    }
}

impl From<super::objects::Raise> for Failure {
    fn from(raise: super::objects::Raise) -> Failure {
        match &raise {
            super::objects::Raise::Remote(message) => Failure::Remote(message.clone()),
            _ => Failure::Exception { class: raise.class_name().to_string(), message: raise.text() },
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
