//! [`Value`]: a value whose type is known only at run time, for managed containers of mixed
//! contents.
//!
//! A `DictProxy<Value, Value>` works like a Python dict with keys and values of any of these
//! kinds, and Python clients of the manager see them as the Python values they are (`1`, `'1'`,
//! `(1, 2)`). [`crate::pickle::PickleValue`] holds every Python value (sets, big integers, dates)
//! but travels only pickled; this enum also travels as postcard (a process's arguments, a
//! `Connection::send`), in a tagged form.

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pickle::PickleValue;
use crate::pickle::ops::MAX_DEPTH;

/// A dynamically typed value, printed in Python's notation.
///
/// ```
/// use multiproc::manager::Value;
///
/// let items = [Value::from(1), Value::from("1"), Value::from(0.25), Value::None];
/// let text: Vec<String> = items.iter().map(ToString::to_string).collect();
/// assert_eq!(text, ["1", "'1'", "0.25", "None"]);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Python `None`.
    #[default]
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, items: &[Value], open: &str, close: &str) -> fmt::Result {
            f.write_str(open)?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            if open == "(" && items.len() == 1 {
                f.write_str(",")?;
            }
            f.write_str(close)
        }
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 => write!(f, "{x:.1}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            Value::Bytes(b) => write!(f, "b'{}'", b.escape_ascii()),
            Value::List(items) => seq(f, items, "[", "]"),
            Value::Tuple(items) => seq(f, items, "(", ")"),
            Value::Dict(pairs) => {
                f.write_str("{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v.into())
            }
        })*
    };
}

value_from!(bool => Bool, i64 => Int, i32 => Int, u32 => Int, f64 => Float, f32 => Float, String => Str, &str => Str, Vec<u8> => Bytes);

impl From<()> for Value {
    fn from((): ()) -> Value {
        Value::None
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::None, Into::into)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::List(items.into_iter().map(Into::into).collect())
    }
}

/// [`Value`] as compact formats (postcard) carry it: tagged by variant.
#[derive(Serialize)]
enum TaggedRef<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    List(&'a [Value]),
    Tuple(&'a [Value]),
    Dict(&'a [(Value, Value)]),
}

/// [`TaggedRef`], owned, for decoding.
#[derive(Deserialize)]
enum Tagged {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

impl Serialize for Value {
    /// The Python value itself for formats that describe themselves (pickle, for the manager and
    /// its Python clients; JSON); tagged by variant for compact ones (postcard).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq, SerializeTuple};
        if !serializer.is_human_readable() {
            let tagged = match self {
                Value::None => TaggedRef::None,
                Value::Bool(b) => TaggedRef::Bool(*b),
                Value::Int(i) => TaggedRef::Int(*i),
                Value::Float(x) => TaggedRef::Float(*x),
                Value::Str(s) => TaggedRef::Str(s),
                Value::Bytes(b) => TaggedRef::Bytes(b),
                Value::List(items) => TaggedRef::List(items),
                Value::Tuple(items) => TaggedRef::Tuple(items),
                Value::Dict(pairs) => TaggedRef::Dict(pairs),
            };
            return tagged.serialize(serializer);
        }
        match self {
            Value::None => serializer.serialize_none(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(x) => serializer.serialize_f64(*x),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Bytes(b) => serializer.serialize_bytes(b),
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Tuple(items) => {
                let mut tuple = serializer.serialize_tuple(items.len())?;
                for item in items {
                    tuple.serialize_element(item)?;
                }
                tuple.end()
            }
            Value::Dict(pairs) => {
                let mut map = serializer.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

thread_local! {
    /// How many `Value`s this thread is decoding inside one another (compact formats).
    static DECODING_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One level of a `Value` being decoded from a compact format (postcard: a peer's message, a
/// process's arguments), which has no nesting limit of its own. Each level is a recursion, so a
/// peer's value nested a million deep would overflow the stack of the thread decoding it: it is
/// refused past the depth a pickle may nest to instead.
struct Nesting;

impl Nesting {
    fn enter() -> Result<Nesting, String> {
        DECODING_DEPTH.with(|depth| {
            if depth.get() > MAX_DEPTH {
                return Err(format!("the value nests containers more than {MAX_DEPTH} deep"));
            }
            depth.set(depth.get() + 1);
            Ok(Nesting)
        })
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        DECODING_DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

impl<'de> Deserialize<'de> for Value {
    /// # Errors
    ///
    /// Besides the format's own: a value of a compact format (postcard) nesting containers more
    /// than 1000 deep (as a pickle may).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        if !deserializer.is_human_readable() {
            let _level = Nesting::enter().map_err(serde::de::Error::custom)?;
            return Ok(match Tagged::deserialize(deserializer)? {
                Tagged::None => Value::None,
                Tagged::Bool(b) => Value::Bool(b),
                Tagged::Int(i) => Value::Int(i),
                Tagged::Float(x) => Value::Float(x),
                Tagged::Str(s) => Value::Str(s),
                Tagged::Bytes(b) => Value::Bytes(b),
                Tagged::List(items) => Value::List(items),
                Tagged::Tuple(items) => Value::Tuple(items),
                Tagged::Dict(pairs) => Value::Dict(pairs),
            });
        }
        Value::try_from(PickleValue::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<PickleValue> for Value {
    type Error = String;

    /// The value, if it is one of the kinds [`Value`] holds (a set becomes a list); an error
    /// naming the Python type otherwise.
    fn try_from(value: PickleValue) -> Result<Value, String> {
        let all = |items: Vec<PickleValue>| items.into_iter().map(Value::try_from).collect::<Result<Vec<_>, _>>();
        Ok(match value {
            PickleValue::None => Value::None,
            PickleValue::Bool(b) => Value::Bool(b),
            PickleValue::I64(i) => Value::Int(i),
            PickleValue::F64(x) => Value::Float(x),
            PickleValue::String(s) => Value::Str(s),
            PickleValue::Bytes(b) | PickleValue::ByteArray(b) => Value::Bytes(b),
            PickleValue::List(items) | PickleValue::Set(items) | PickleValue::FrozenSet(items) => {
                Value::List(all(items)?)
            }
            PickleValue::Tuple(items) => Value::Tuple(all(items)?),
            PickleValue::Dict(pairs) => Value::Dict(
                pairs
                    .into_iter()
                    .map(|(k, v)| Ok((Value::try_from(k)?, Value::try_from(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => {
                return Err(format!(
                    "a Python {} has no manager::Value counterpart; receive it as a pickle::PickleValue",
                    other.type_name()
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Value;

    /// `count` lists nested in one another around a `None`, as postcard writes a `Value`
    /// (variant 6, one item), written out flat: encoding a value that deep would recurse too.
    fn nested_lists(count: usize) -> Vec<u8> {
        let mut bytes = [6u8, 1].repeat(count);
        bytes.push(0);
        bytes
    }

    /// A peer's value nested a million deep is refused with an error, not followed down: on a
    /// thread with the standard library's default stack (2 MiB), which a recursion that deep
    /// overflows (a manager server or a receiver of `Connection::recv` aborted).
    #[test]
    fn values_nested_too_deep_are_refused() {
        let decoded = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| postcard::from_bytes::<Value>(&nested_lists(1_000_000)).map_err(|e| e.to_string()))
            .unwrap()
            .join()
            .unwrap();
        assert!(decoded.is_err(), "{decoded:?}");
        // As deep as a pickle may nest: decoded.
        let mut value = postcard::from_bytes::<Value>(&nested_lists(1000)).unwrap();
        for _ in 0..1000 {
            let Value::List(mut items) = value else { panic!("not a list") };
            value = items.pop().unwrap();
        }
        assert_eq!(value, Value::None);
        assert!(postcard::from_bytes::<Value>(&nested_lists(1001)).is_err());
    }
}
