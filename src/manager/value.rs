//! [`Value`]: a value whose type is known only at run time, for managed containers of mixed
//! contents.
//!
//! Why not [`PickleValue`](crate::connection::PickleValue): it exists only with the `pickle`
//! feature, is not `Serialize` (it cannot travel as postcard), and has no `Display` in Python's
//! notation. This enum is plain serde data, so a `DictProxy<Value, Value>` works like a Python dict
//! with keys and values of any of these kinds.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A dynamically typed value, printed in Python's notation.
///
/// ```
/// use multiproc::manager::Value;
///
/// let items = [Value::from(1), Value::from("1"), Value::from(0.25), Value::None];
/// let text: Vec<String> = items.iter().map(ToString::to_string).collect();
/// assert_eq!(text, ["1", "'1'", "0.25", "None"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
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
