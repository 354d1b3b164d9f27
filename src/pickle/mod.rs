//! CPython's pickle format, for values shared with Python programs: a decoder for the pickles
//! CPython writes (protocols 0 to 5), an encoder whose pickles CPython 3.4 and later read, and the
//! mapping between them and serde types.
//!
//! [`Connection::send_pickle`](crate::Connection::send_pickle) and
//! [`recv_pickle`](crate::Connection::recv_pickle) use it for Python peers of a connection, the
//! manager's server for Python clients, and [`manager::cpython`](crate::manager::cpython) for
//! CPython's managers. [`to_vec`] and [`from_slice`] serve other transports (a Redis list, a
//! file).
//!
//! # Python's types and Rust's
//!
//! | Python | [`PickleValue`] | serde types (receiving; sending maps back the same way) |
//! |---|---|---|
//! | `None` | [`None`](PickleValue::None) | `Option::None`, `()` |
//! | `bool` | [`Bool`](PickleValue::Bool) | `bool` |
//! | `int` | [`I64`](PickleValue::I64), [`Int`](PickleValue::Int) beyond 64 bits | any integer type that holds the value (`u64`, `i128`, `u128` too); out of range is an error naming the value and the type |
//! | `float` | [`F64`](PickleValue::F64) | `f64`, `f32` (an `int` too, where exact) |
//! | `complex` | [`Complex`](PickleValue::Complex) | `(f64, f64)` |
//! | `str` | [`String`](PickleValue::String) | `String`, `char` |
//! | `bytes`, `bytearray` | [`Bytes`](PickleValue::Bytes), [`ByteArray`](PickleValue::ByteArray) | `serde_bytes::ByteBuf`, `Vec<u8>` |
//! | `list`, `tuple` | [`List`](PickleValue::List), [`Tuple`](PickleValue::Tuple) | `Vec<T>`; tuples, tuple structs |
//! | `set`, `frozenset` | [`Set`](PickleValue::Set), [`FrozenSet`](PickleValue::FrozenSet) | `HashSet<T>`, `BTreeSet<T>` (which send as `set`), `Vec<T>` |
//! | `dict` | [`Dict`](PickleValue::Dict) | `HashMap`, `BTreeMap`, structs (field names as keys), enums (`'Variant'` or `{'Variant': value}`) |
//! | `datetime.timedelta` | [`TimeDelta`](PickleValue::TimeDelta) | `std::time::Duration` (not negative; whole microseconds) |
//! | `datetime.datetime` with `tzinfo` | [`DateTime`](PickleValue::DateTime) | `std::time::SystemTime` (whole microseconds), or an ISO 8601 `String` (which `chrono` parses) |
//! | `datetime.date`, `datetime.time`, naive `datetime` | [`Date`](PickleValue::Date), [`Time`](PickleValue::Time), [`DateTime`](PickleValue::DateTime) | an ISO 8601 `String` |
//! | `decimal.Decimal` | [`Decimal`](PickleValue::Decimal) | its text, `String` (which `rust_decimal` parses) |
//! | `uuid.UUID` | [`Uuid`](PickleValue::Uuid) | `u128`, the hyphenated `String` (which `uuid` parses) |
//! | anything else: instances of other classes, functions, `range`, `Fraction`, enums | refused: [`Error::Codec`](crate::Error::Codec) naming the class (`fractions.Fraction`); build an [`Object`] to send one | |
//!
//! # Examples
//!
//! ```
//! use std::collections::BTreeSet;
//! use multiproc::pickle::{self, PickleValue};
//!
//! # fn main() -> multiproc::Result<()> {
//! // A Rust set pickles as a Python set; integers of any width.
//! let bytes = pickle::to_vec(&(BTreeSet::from([1u64, 2]), u64::MAX))?;
//! let value: PickleValue = pickle::from_slice(&bytes)?;
//! assert_eq!(value.to_string(), "({1, 2}, 18446744073709551615)");
//! let (set, big): (BTreeSet<u64>, u64) = pickle::from_slice(&bytes)?;
//! assert_eq!((set.len(), big), (2, u64::MAX));
//!
//! // CPython 3.11: pickle.dumps(datetime.timedelta(seconds=1.5))
//! let python = b"\x80\x04\x95\x27\x00\x00\x00\x00\x00\x00\x00\x8c\x08datetime\x94\x8c\ttimedelta\x94\x93\x94K\x00K\x01J \xa1\x07\x00\x87\x94R\x94.";
//! let pause: std::time::Duration = pickle::from_slice(python)?;
//! assert_eq!(pause.as_millis(), 1500);
//! # Ok(())
//! # }
//! ```

mod de;
pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod ops;
mod repr;
mod ser;
mod value;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use repr::{bytes_repr, float_repr, str_repr};
pub use value::{BigInt, Build, Date, DateTime, Object, OutOfRange, PickleValue, Time, TimeDelta, TimeZone};

/// The prefix of the names of the newtype structs that carry [`PickleValue`]'s special variants
/// through serde.
const MAGIC_PREFIX: &str = "\0multiproc::pickle::";

/// The serde error of this module's serializer and deserializer (its message becomes an
/// [`Error::Codec`](crate::Error::Codec)).
#[derive(Debug, Clone)]
pub(crate) struct Error(String);

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl serde::ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Error {
        Error(msg.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Error {
        Error(msg.to_string())
    }
}

fn codec(action: &'static str, detail: impl std::fmt::Display) -> crate::Error {
    crate::Error::Codec { action, detail: format!("pickle: {detail}") }
}

/// The [`PickleValue`] of a serde value (see the table in the module's documentation).
///
/// # Errors
///
/// [`Error::Codec`](crate::Error::Codec) when the value's `Serialize` fails, or a
/// `Duration`/`SystemTime` has nanoseconds Python cannot hold.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> crate::Result<PickleValue> {
    value.serialize(ser::ValueSerializer).map_err(|e| codec("encode", e))
}

/// The serde value a [`PickleValue`] stands for (see the table in the module's documentation).
///
/// # Errors
///
/// [`Error::Codec`](crate::Error::Codec) when the value does not fit `T`: another shape, an
/// integer out of `T`'s range, an [`Object`].
pub fn from_value<T: DeserializeOwned>(value: PickleValue) -> crate::Result<T> {
    T::deserialize(de::ValueDeserializer(value)).map_err(|e| codec("decode", e))
}

/// Pickles a serde value, as CPython's `pickle.dumps` would pickle the Python value it maps to.
///
/// # Errors
///
/// As [`to_value`], and for values Python cannot take (an unhashable dict key, an invalid date).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> crate::Result<Vec<u8>> {
    encode::encode(&to_value(value)?).map_err(|e| codec("encode", e))
}

/// Decodes a pickle into a serde value.
///
/// # Errors
///
/// [`Error::Codec`](crate::Error::Codec) when the bytes are no pickle, hold an object of another
/// class (named in the message), or do not fit `T`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> crate::Result<T> {
    from_value(value_from_slice(bytes)?)
}

/// Decodes a pickle into a [`PickleValue`], exactly as pickled.
///
/// # Errors
///
/// [`Error::Codec`](crate::Error::Codec) when the bytes are no pickle, or hold an object of a
/// class without a [`PickleValue`] variant (named in the message).
pub fn value_from_slice(bytes: &[u8]) -> crate::Result<PickleValue> {
    decode::decode(bytes, decode::Mode::Values).map_err(|e| codec("decode", e))
}

/// Pickles a [`PickleValue`].
///
/// # Errors
///
/// [`Error::Codec`](crate::Error::Codec) for a value Python cannot take (an unhashable dict key,
/// an invalid date, a decimal that does not parse, nesting deeper than 1000).
pub fn value_to_vec(value: &PickleValue) -> crate::Result<Vec<u8>> {
    encode::encode(value).map_err(|e| codec("encode", e))
}

/// The fuzz target `pickle_values`: any bytes decode (keeping objects, and refusing them) to a
/// value or an error, never a panic; a decoded value encodes, decodes again to the same value,
/// and converts to serde types or fails cleanly.
#[doc(hidden)]
pub fn fuzz_pickle(bytes: &[u8]) {
    let _ = decode::decode(bytes, decode::Mode::Objects);
    let Ok(value) = decode::decode(bytes, decode::Mode::Values) else { return };
    let _ = value.to_string();
    let _ = value.to_python_str();
    if let Ok(encoded) = encode::encode(&value) {
        let again = decode::decode(&encoded, decode::Mode::Values);
        assert!(
            again.as_ref().is_ok_and(|v| same_or_nan(v, &value)),
            "{value:?} encoded as {encoded:?} decodes to {again:?}"
        );
    }
    let _ = from_value::<(i64, String)>(value.clone());
    let _ = from_value::<std::collections::HashMap<String, Vec<u64>>>(value.clone());
    let _ = from_value::<std::time::SystemTime>(value.clone());
    let _ = from_value::<PickleValue>(value);
}

/// Equality where NaN equals NaN (a decoded NaN encodes to a NaN).
fn same_or_nan(a: &PickleValue, b: &PickleValue) -> bool {
    a == b || a.to_string() == b.to_string()
}
