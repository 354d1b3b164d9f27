//! CPython's pickle format on connections, for Python peers (feature `pickle`, on by default).
//!
//! CPython's `Connection.send(obj)` pickles `obj`; [`Connection::send_pickle`] and
//! [`Connection::recv_pickle`] speak that format for serde values, mapped to and from Python's
//! types as [`crate::pickle`] describes (a Rust tuple is a Python tuple, a `HashSet` a `set`,
//! `Option::None` is `None`, integers of any width, `Duration` a `timedelta`...).
//! [`Connection::recv_pickle_value`] and [`Connection::send_pickle_value`] carry a
//! [`PickleValue`]: any Python value, exactly as pickled (tuples, sets, big integers, dates,
//! decimals, UUIDs). An object of another class (an instance of a Python class, a function, a
//! `Fraction`) gives [`Error::Codec`](crate::Error::Codec) naming its class, and nothing is
//! turned silently into something else.
//!
//! Messages are framed as CPython frames them, and the receiving end's limit applies (1 GiB by
//! default, [`Connection::set_max_message_size`]).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CanRecv, CanSend, Connection};
use crate::error::Result;
pub use crate::pickle::PickleValue;

impl<D: CanSend> Connection<D> {
    /// Sends `value` pickled, as CPython's `send` does, for a Python peer's `recv()`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`](crate::Error::Codec) for a value Python cannot take (see
    /// [`pickle::to_vec`](crate::pickle::to_vec)); the connection's errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashSet;
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let (mut rust, mut python) = multiproc::socket_pipe()?;
    /// rust.send_pickle(&(HashSet::from([1u8]), u64::MAX))?;
    /// // What Python's `recv()` would see:
    /// let value = python.recv_pickle_value()?;
    /// assert_eq!(value.to_string(), "({1}, 18446744073709551615)");
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_pickle<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.send_bytes(&crate::pickle::to_vec(value)?)
    }

    /// Sends a [`PickleValue`] pickled (bytes, sets, big integers, dates and all), for a Python
    /// peer's `recv()`.
    ///
    /// # Errors
    ///
    /// As [`send_pickle`](Self::send_pickle).
    pub fn send_pickle_value(&mut self, value: &PickleValue) -> Result<()> {
        self.send_bytes(&crate::pickle::value_to_vec(value)?)
    }
}

impl<D: CanRecv> Connection<D> {
    /// Receives a message a Python peer sent with `send(obj)` and decodes it as `T`. The
    /// connection stays usable after a message that does not decode.
    ///
    /// A message longer than this end's limit (1 GiB unless
    /// [`set_max_message_size`](Connection::set_max_message_size) says otherwise) is refused with
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge) and breaks the connection.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`](crate::Error::Codec) when the message is not a pickle, holds an object of
    /// a class without a Rust counterpart (named in the message), or does not fit `T` (an integer
    /// out of `T`'s range names both); the connection's errors.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let (mut python, mut rust) = multiproc::socket_pipe()?;
    /// // CPython 3.11: conn.send((2**64 - 1, {1, 2})), as its bytes.
    /// python.send_bytes(b"\x80\x04\x95\x16\x00\x00\x00\x00\x00\x00\x00\x8a\t\xff\xff\xff\xff\xff\xff\xff\xff\x00\x8f\x94(K\x01K\x02\x90\x86\x94.")?;
    /// let (big, set): (u64, std::collections::BTreeSet<i32>) = rust.recv_pickle()?;
    /// assert_eq!((big, set.len()), (u64::MAX, 2));
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv_pickle<T: DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.recv_bytes()?;
        crate::pickle::from_slice(&bytes)
    }

    /// Receives a message a Python peer sent with `send(obj)` as a [`PickleValue`], exactly as
    /// pickled: tuples stay tuples, sets stay sets, integers of any size. The connection stays
    /// usable after a message that does not decode.
    ///
    /// # Errors
    ///
    /// As [`recv_pickle`](Self::recv_pickle).
    pub fn recv_pickle_value(&mut self) -> Result<PickleValue> {
        let bytes = self.recv_bytes()?;
        crate::pickle::value_from_slice(&bytes)
    }
}
