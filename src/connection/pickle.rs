//! CPython's pickle format on connections, for Python peers (feature `pickle`, on by default).
//!
//! CPython's `Connection.send(obj)` pickles `obj`; [`Connection::send_pickle`] and
//! [`Connection::recv_pickle`] speak that format for plain data: integers, floats, strings, bytes,
//! `None`, booleans, lists, tuples, dicts and sets, mapped to and from serde types as serde-pickle
//! maps them (a Rust tuple is a Python tuple, `Option::None` is `None`, a `HashMap` or `BTreeMap` is a
//! dict; bytes need `serde_bytes` or [`PickleValue::Bytes`]). Values whose type is only known at run
//! time are received with [`Connection::recv_pickle_value`] and sent with
//! [`Connection::send_pickle_value`], which keep tuples, sets and integers beyond `i64` as they are
//! (`recv_pickle::<PickleValue>()` goes through serde: tuples and sets become lists, and integers
//! beyond `i64` fail; a `PickleValue` is not `Serialize`). Python objects of other classes
//! (instances, functions) cannot be decoded and give [`Error::Codec`](crate::Error::Codec).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CanRecv, CanSend, Connection};
use crate::error::{Error, Result};

/// A pickled Python value of any shape (serde-pickle's `Value`).
pub use serde_pickle::Value as PickleValue;

/// Runs one of serde-pickle's decoders on `bytes` from a peer: the value, or what is wrong with
/// the bytes, whatever they are.
///
/// A pickle that would decode to far more than its size (an object shared many times, which
/// serde-pickle copies each time) or to a structure holding itself is refused first
/// ([`check_expansion`](super::pickle_ops::check_expansion)). serde-pickle also panics on some
/// malformed input (a set mixing NaN, floats and integers: its ordering of values is not total,
/// and the standard library's sort detects that); the panic becomes an error here. A program
/// built with `panic = "abort"` cannot catch it: it aborts on such input.
pub(crate) fn decode_untrusted<T>(
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> serde_pickle::Result<T>,
) -> std::result::Result<T, String> {
    super::pickle_ops::check_expansion(bytes)?;
    decode_checked(bytes, decode)
}

/// [`decode_untrusted`] for bytes that already passed
/// [`check_expansion`](super::pickle_ops::check_expansion) (several decodings of one message).
pub(crate) fn decode_checked<T>(
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> serde_pickle::Result<T>,
) -> std::result::Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(bytes))) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the decoder (serde-pickle) failed on this malformed message".into()),
    }
}

fn decode_error(detail: String) -> Error {
    Error::Codec { action: "decode", detail: format!("pickle: {detail}") }
}

impl<D: CanSend> Connection<D> {
    /// Sends `value` pickled, as CPython's `send` does, for a Python peer's `recv()`.
    pub fn send_pickle<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let bytes = serde_pickle::to_vec(value, serde_pickle::SerOptions::new())
            .map_err(|e| Error::Codec { action: "encode", detail: format!("pickle: {e}") })?;
        self.send_bytes(&bytes)
    }

    /// Sends a [`PickleValue`] pickled (bytes, sets, big integers and all), for a Python peer's
    /// `recv()`.
    pub fn send_pickle_value(&mut self, value: &PickleValue) -> Result<()> {
        let bytes = serde_pickle::value_to_vec(value, serde_pickle::SerOptions::new())
            .map_err(|e| Error::Codec { action: "encode", detail: format!("pickle: {e}") })?;
        self.send_bytes(&bytes)
    }
}

impl<D: CanRecv> Connection<D> {
    /// Receives a message a Python peer sent with `send(obj)` and decodes it as `T`. A message that
    /// is not a pickle of plain data is an error; the connection stays usable.
    pub fn recv_pickle<T: DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.recv_bytes()?;
        decode_untrusted(&bytes, |b| serde_pickle::from_slice(b, serde_pickle::DeOptions::new())).map_err(decode_error)
    }

    /// Receives a message a Python peer sent with `send(obj)` as a [`PickleValue`], exactly as
    /// pickled: tuples stay tuples, sets stay sets, integers of any size. A message that is not a
    /// pickle of plain data is an error; the connection stays usable.
    pub fn recv_pickle_value(&mut self) -> Result<PickleValue> {
        let bytes = self.recv_bytes()?;
        decode_untrusted(&bytes, |b| serde_pickle::value_from_slice(b, serde_pickle::DeOptions::new()))
            .map_err(decode_error)
    }
}
