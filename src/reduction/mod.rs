//! How values and OS resources cross process boundaries (the counterpart of CPython's `reduction`).
//!
//! # Values
//!
//! Arguments, return values and messages are serde types, encoded with [postcard]: a compact,
//! non-self-describing format with varint integers. It was chosen over bitcode by measurement
//! (`cargo run --release -p multiproc-bench -- codec`, 2-core machine, encode + decode, 2026-11-22):
//!
//! | value | postcard | bitcode (serde) |
//! |---|---:|---:|
//! | `u64` | 43 ns | 242 ns |
//! | small struct (u64, String, `Vec<i32>`, bool) | 346 ns | 1027 ns |
//! | `Vec<u8>` of 1 MiB | 3.5 ms | 3.7 ms |
//!
//! Small messages dominate process start-up, pools and queues. Byte buffers go through serde as
//! sequences in both; bulk bytes will get their own path (raw frames, `serde_bytes`).
//! `bincode` is not used: it is unmaintained.
//!
//! # Resources
//!
//! A value may hold open file descriptors: a [`Handle<File>`](Handle), a `Connection`, a lock, a
//! queue, a shared-memory segment. They cannot travel as bytes. When such a value is encoded, each
//! descriptor is duplicated into the message's descriptor table and the bytes hold only its index;
//! the transport sends the table with the bytes as `SCM_RIGHTS` ancillary data, and decoding on the
//! other side takes each descriptor out of the table by its index. A descriptor that arrives but is
//! not claimed by the decoded value is closed.
//!
//! The table is reachable from `Serialize`/`Deserialize` impls through a scope that exists only for
//! the duration of one `encode` or `decode` call on this thread (serde offers no other way to
//! pass context into user types' impls). Outside such a call, a descriptor refuses to be encoded
//! with a clear error instead of turning into a meaningless number: a `Handle` given to
//! `serde_json` fails rather than lying.

pub(crate) mod handle;
pub(crate) mod packed;

use std::cell::RefCell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub use handle::Handle;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

/// An encoded value: its bytes and the descriptors it refers to by index.
#[derive(Debug, Default)]
pub(crate) struct Message {
    /// The postcard encoding.
    pub(crate) bytes: Vec<u8>,
    /// Descriptors, in the order of the indices in `bytes`.
    pub(crate) fds: Vec<OwnedFd>,
}

impl Message {
    /// The descriptors as borrowed handles, for sending.
    pub(crate) fn borrowed_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.fds.iter().map(|fd| fd.as_fd()).collect()
    }
}

/// The descriptors of the message being decoded, and why claiming one failed (postcard keeps no
/// message for custom errors, so the reason is kept here and reported by [`decode`]).
#[derive(Default)]
struct DecodeScope {
    table: Vec<Option<OwnedFd>>,
    failure: Option<String>,
}

/// The descriptors of the message being encoded, and why encoding it failed when one of this
/// crate's `Serialize` impls refused (postcard keeps no message for custom errors either way).
#[derive(Default)]
struct EncodeScope {
    fds: Vec<OwnedFd>,
    failure: Option<String>,
}

thread_local! {
    static ENCODING: RefCell<Option<EncodeScope>> = const { RefCell::new(None) };
    static DECODING: RefCell<Option<DecodeScope>> = const { RefCell::new(None) };
}

/// Encodes `value`, collecting the descriptors it holds.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Message> {
    let (bytes, fds) = encode_with(value, postcard::ser_flavors::AllocVec::new())?;
    Ok(Message { bytes, fds })
}

/// [`encode`] into another destination than a new buffer (a postcard flavor), returning what the
/// flavor makes of the bytes and the descriptors `value` holds.
///
/// # Errors
///
/// [`Error::Codec`] when `value` cannot be encoded, or when the flavor refuses its bytes (a flavor
/// that can fail for another reason keeps that reason for its caller to report).
pub(crate) fn encode_with<T: Serialize + ?Sized, F: postcard::ser_flavors::Flavor>(
    value: &T,
    flavor: F,
) -> Result<(F::Output, Vec<OwnedFd>)> {
    let outer = ENCODING.with(|slot| slot.replace(Some(EncodeScope::default())));
    let result = postcard::serialize_with_flavor(value, flavor);
    let scope = ENCODING.with(|slot| slot.replace(outer)).unwrap_or_default();
    let output = result.map_err(|e| match scope.failure {
        Some(detail) => Error::Codec { action: "encode", detail },
        None => codec_error("encode", e),
    })?;
    Ok((output, scope.fds))
}

/// The error a `Serialize` impl of this crate returns: `message` is kept for [`encode`] to report
/// (postcard would drop it).
pub(crate) fn encode_failure<E: serde::ser::Error>(message: impl std::fmt::Display) -> E {
    let message = message.to_string();
    ENCODING.with(|slot| {
        if let Some(scope) = slot.borrow_mut().as_mut() {
            scope.failure.get_or_insert_with(|| message.clone());
        }
    });
    E::custom(message)
}

/// Decodes a value, handing it the message's descriptors; unclaimed descriptors are closed.
pub(crate) fn decode<T: DeserializeOwned>(message: Message) -> Result<T> {
    decode_from(&message.bytes, message.fds)
}

/// [`decode`] from borrowed bytes (a value read in place, for example from a mapped memory file).
pub(crate) fn decode_from<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    let scope = DecodeScope { table: fds.into_iter().map(Some).collect(), failure: None };
    let outer = DECODING.with(|slot| slot.replace(Some(scope)));
    let result = postcard::from_bytes(bytes);
    // Descriptors nobody claimed are closed here, when the scope is dropped.
    let scope = DECODING.with(|slot| slot.replace(outer)).unwrap_or_default();
    result.map_err(|e| match scope.failure {
        Some(reason) => Error::Codec { action: "decode", detail: reason },
        None => codec_error("decode", e),
    })
}

fn codec_error(action: &'static str, e: postcard::Error) -> Error {
    Error::Codec { action, detail: postcard_detail(e) }
}

/// What a postcard error says to a user.
pub(crate) fn postcard_detail(e: postcard::Error) -> String {
    match e {
        postcard::Error::SerdeSerCustom => "a Serialize implementation returned an error; the wire format (postcard) \
             does not keep its message: serialize the value alone with another serde format to see it"
            .to_owned(),
        other => other.to_string(),
    }
}

/// Appends the packed encoding of `items` (see [`packed`]: a pool chunk's arguments) to `out`,
/// collecting the descriptors they hold. On error `out` is as it was.
pub(crate) fn encode_packed<T: Serialize>(items: &[T], out: &mut Vec<u8>) -> Result<Vec<OwnedFd>> {
    let outer = ENCODING.with(|slot| slot.replace(Some(EncodeScope::default())));
    // Descriptors registered while trying records are registered again by the postcard pass.
    let forget_fds = || ENCODING.with(|slot| slot.borrow_mut().as_mut().map(|scope| scope.fds.clear()));
    let result = packed::encode_slice_then(items, out, || {
        forget_fds();
    });
    let scope = ENCODING.with(|slot| slot.replace(outer)).unwrap_or_default();
    match result {
        Ok(()) => Ok(scope.fds),
        Err(e) => Err(Error::Codec { action: "encode", detail: scope.failure.unwrap_or(e.0) }),
    }
}

/// Decodes a whole packed sequence whose values hold the descriptors `fds` (unclaimed ones are
/// closed).
pub(crate) fn decode_packed<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<Vec<T>> {
    let scope = DecodeScope { table: fds.into_iter().map(Some).collect(), failure: None };
    let outer = DECODING.with(|slot| slot.replace(Some(scope)));
    let mut values = Vec::new();
    let result = packed::decode_into(bytes, &mut values);
    let scope = DECODING.with(|slot| slot.replace(outer)).unwrap_or_default();
    match result {
        Ok(_) => Ok(values),
        Err(e) => Err(Error::Codec { action: "decode", detail: scope.failure.unwrap_or(e.0) }),
    }
}

/// Called by a descriptor's `Serialize` impl: duplicates `fd` into the current message and returns
/// its index, or `None` outside an [`encode`] call.
pub(crate) fn push_fd(fd: BorrowedFd<'_>) -> Option<std::io::Result<u32>> {
    ENCODING.with(|slot| {
        let mut slot = slot.borrow_mut();
        let table = &mut slot.as_mut()?.fds;
        Some(crate::sys::dup_cloexec(fd).map_err(Into::into).map(|dup| {
            table.push(dup);
            (table.len() - 1) as u32
        }))
    })
}

/// Called by a descriptor's `Deserialize` impl: takes descriptor `index` out of the current
/// message. `Err` says why it is not there.
pub(crate) fn take_fd(index: u32) -> std::result::Result<OwnedFd, &'static str> {
    DECODING.with(|slot| {
        let mut slot = slot.borrow_mut();
        let scope = slot.as_mut().ok_or("a file descriptor can only be decoded from a multiproc message")?;
        let taken = match scope.table.get_mut(index as usize) {
            None => Err("the message refers to a file descriptor it does not carry"),
            Some(entry) => entry.take().ok_or("the message refers to the same file descriptor twice"),
        };
        if let Err(reason) = taken {
            scope.failure = Some(reason.to_string());
        }
        taken
    })
}

/// A decoding error of a type of this crate (a connection of the wrong direction, shared memory of
/// the wrong type), with its reason kept for [`decode`]'s error (postcard would drop it).
pub(crate) fn decode_failure<E: serde::de::Error>(reason: impl std::fmt::Display) -> E {
    let reason = reason.to_string();
    DECODING.with(|slot| {
        if let Some(scope) = slot.borrow_mut().as_mut() {
            scope.failure = Some(reason.clone());
        }
    });
    E::custom(reason)
}

#[cfg(test)]
mod tests;
