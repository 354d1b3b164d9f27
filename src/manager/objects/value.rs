//! `Value` (CPython's `managers.Value` behind a `ValueProxy`) and `Array` (an `array.array`
//! behind an `ArrayProxy`).

use std::sync::Mutex;

use super::args::{Args, int};
use super::dict::no_method;
use super::list::{items_of, slice_of};
use super::{Caller, Input, Outcome, Raise, Served, lock, ok, position};
use crate::pickle::{Build, Object, PickleValue};

/// A managed `Value(typecode, value)`: one value of any type (CPython's does not check the
/// typecode either).
pub(crate) struct ValueCell {
    typecode: PickleValue,
    value: Mutex<PickleValue>,
}

impl ValueCell {
    pub(crate) fn new(args: Args) -> Result<ValueCell, Raise> {
        let [typecode, value, _lock] = args.bind("Value", ["typecode", "value", "lock"], 2)?;
        Ok(ValueCell { typecode: typecode.unwrap_or_default(), value: Mutex::new(value.unwrap_or_default()) })
    }
}

impl Served for ValueCell {
    fn typeid(&self) -> &str {
        "Value"
    }

    fn exposed(&self) -> &'static [&'static str] {
        &["get", "set"]
    }

    fn call(&self, method: &str, input: Input, _caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        match method {
            "get" => {
                args.none(method)?;
                ok(lock(&self.value).clone())
            }
            "set" => {
                *lock(&self.value) = args.one(method, "value")?;
                Outcome::none()
            }
            other => Err(no_method("Value", other)),
        }
    }

    fn repr(&self) -> String {
        format!("Value({}, {})", self.typecode, lock(&self.value))
    }

    /// As CPython pickles its `Value` object.
    fn value(&self) -> Result<PickleValue, Raise> {
        let state = PickleValue::Dict(vec![
            (PickleValue::from("_typecode"), self.typecode.clone()),
            (PickleValue::from("_value"), lock(&self.value).clone()),
        ]);
        Ok(PickleValue::from(Object {
            class: "multiprocessing.managers.Value".into(),
            build: Build::New(Vec::new()),
            state: Some(state),
        }))
    }
}

/// An `array.array` typecode: the range of its integers, or floats.
#[derive(Clone, Copy)]
enum Typecode {
    /// Any value (arrays made by this crate's proxies, without a typecode).
    Any,
    Int {
        code: char,
        min: i128,
        max: i128,
        size: usize,
    },
    Float {
        code: char,
        single: bool,
    },
    Char {
        code: char,
    },
}

impl Typecode {
    fn of(value: &PickleValue) -> Result<Typecode, Raise> {
        let code = match value {
            PickleValue::None => return Ok(Typecode::Any),
            PickleValue::String(s) if s.chars().count() == 1 => s.chars().next().unwrap_or('?'),
            _ => return Err(Raise::type_error("array() argument 1 must be a unicode character")),
        };
        let int = |min: i128, max: i128, size| Typecode::Int { code, min, max, size };
        Ok(match code {
            'b' => int(-128, 127, 1),
            'B' => int(0, 255, 1),
            'h' => int(-32768, 32767, 2),
            'H' => int(0, 65535, 2),
            'i' => int(i32::MIN.into(), i32::MAX.into(), 4),
            'I' => int(0, u32::MAX.into(), 4),
            'l' | 'q' => int(i64::MIN.into(), i64::MAX.into(), 8),
            'L' | 'Q' => int(0, u64::MAX.into(), 8),
            'f' => Typecode::Float { code, single: true },
            'd' => Typecode::Float { code, single: false },
            'u' | 'w' => Typecode::Char { code },
            _ => {
                return Err(Raise::value_error("bad typecode (must be b, B, u, w, h, H, i, I, l, L, q, Q, f or d)"));
            }
        })
    }

    /// The value as the array stores it (a float array turns ints into floats), or the
    /// `TypeError`/`OverflowError` of `array.array`.
    fn convert(self, value: PickleValue) -> Result<PickleValue, Raise> {
        match (self, value) {
            (Typecode::Any, value) => Ok(value),
            (Typecode::Int { min, max, .. }, PickleValue::I64(i)) => {
                if (min..=max).contains(&i128::from(i)) {
                    Ok(PickleValue::I64(i))
                } else {
                    Err(Raise::new(
                        "builtins.OverflowError",
                        vec![PickleValue::from(format!(
                            "{i} is out of the range of the array's type ({min} to {max})"
                        ))],
                    ))
                }
            }
            (Typecode::Int { min, max, .. }, PickleValue::Int(big)) => {
                match big.to_i128().filter(|i| (min..=max).contains(i)) {
                    Some(_) => Ok(PickleValue::Int(big)),
                    None => Err(Raise::new(
                        "builtins.OverflowError",
                        vec![PickleValue::from(format!("{big} is out of the range of the array's type"))],
                    )),
                }
            }
            (Typecode::Int { .. }, other) => {
                Err(Raise::type_error(format!("'{}' object cannot be interpreted as an integer", other.type_name())))
            }
            (Typecode::Float { single, .. }, value) => {
                let x = match value {
                    PickleValue::F64(x) => x,
                    PickleValue::I64(i) => i as f64,
                    PickleValue::Bool(b) => f64::from(u8::from(b)),
                    other => return Err(Raise::type_error(format!("must be real number, not {}", other.type_name()))),
                };
                Ok(PickleValue::F64(if single { f64::from(x as f32) } else { x }))
            }
            (Typecode::Char { .. }, PickleValue::String(s)) if s.chars().count() == 1 => Ok(PickleValue::String(s)),
            (Typecode::Char { .. }, other) => {
                Err(Raise::type_error(format!("array item must be a unicode character, not {}", other.type_name())))
            }
        }
    }

    /// The machine bytes of `items` (what CPython's managers pickle an `array.array` as).
    fn bytes(self, items: &[PickleValue]) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            match (self, item) {
                (Typecode::Int { size, .. }, PickleValue::I64(i)) => out.extend_from_slice(&i.to_le_bytes()[..size]),
                (Typecode::Int { size, .. }, PickleValue::Int(big)) => {
                    let mut bytes = big.to_le_bytes().to_vec();
                    bytes.resize(size, 0);
                    out.extend_from_slice(&bytes[..size]);
                }
                (Typecode::Float { single: true, .. }, PickleValue::F64(x)) => {
                    out.extend_from_slice(&(*x as f32).to_le_bytes())
                }
                (Typecode::Float { single: false, .. }, PickleValue::F64(x)) => out.extend_from_slice(&x.to_le_bytes()),
                (Typecode::Char { .. }, PickleValue::String(s)) => {
                    out.extend_from_slice(&u32::from(s.chars().next().unwrap_or('\0')).to_le_bytes())
                }
                _ => {}
            }
        }
        out
    }

    fn code(self) -> Option<char> {
        match self {
            Typecode::Any => None,
            Typecode::Int { code, .. } | Typecode::Float { code, .. } | Typecode::Char { code } => Some(code),
        }
    }
}

/// The longest array a `create` request may make from a length alone.
const MAX_LENGTH: i64 = 1 << 24;

/// A managed `Array(typecode, sequence)`: fixed length, items checked against the typecode.
pub(crate) struct Array {
    typecode: Typecode,
    items: Mutex<Vec<PickleValue>>,
}

impl Array {
    pub(crate) fn new(args: Args) -> Result<Array, Raise> {
        let [typecode, sequence, _lock] = args.bind("Array", ["typecode", "sequence", "lock"], 2)?;
        let typecode = Typecode::of(&typecode.unwrap_or_default())?;
        let items = match sequence.unwrap_or_default() {
            // Array('i', 10): ten zeros, as sharedctypes does (within what a request may make).
            PickleValue::I64(n) if n > MAX_LENGTH => {
                return Err(Raise::memory_error(format!(
                    "an array of {n} items is more than this server makes at once"
                )));
            }
            PickleValue::I64(n) => {
                vec![typecode.convert(PickleValue::I64(0)).unwrap_or(PickleValue::I64(0)); n.max(0) as usize]
            }
            other => items_of(other)?.into_iter().map(|v| typecode.convert(v)).collect::<Result<_, _>>()?,
        };
        Ok(Array { typecode, items: Mutex::new(items) })
    }

    /// A slice of the array as Python gets it: an `array.array` (CPython's managers pickle one
    /// as `array.array(typecode, bytes)`), or a list for an array without typecode.
    fn sliced(&self, items: Vec<PickleValue>) -> PickleValue {
        match self.typecode.code() {
            None => PickleValue::List(items),
            Some(code) => PickleValue::from(Object::call(
                "array.array",
                vec![PickleValue::String(code.to_string()), PickleValue::Bytes(self.typecode.bytes(&items))],
            )),
        }
    }
}

impl Served for Array {
    fn typeid(&self) -> &str {
        "Array"
    }

    fn exposed(&self) -> &'static [&'static str] {
        &["__len__", "__getitem__", "__setitem__"]
    }

    fn call(&self, method: &str, input: Input, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        let mut items = lock(&self.items);
        let at = |i: &PickleValue, len: usize| -> Result<usize, Raise> {
            position(int(i, "array indices")?, len).ok_or_else(|| Raise::index_error("array index out of range"))
        };
        match method {
            "__len__" => {
                args.none(method)?;
                ok(items.len() as i64)
            }
            "__getitem__" => {
                let index = args.one(method, "index")?;
                match slice_of(&index)? {
                    Some(slice) => {
                        let picked: Vec<PickleValue> = slice
                            .positions(items.len())
                            .unwrap_or_default()
                            .iter()
                            .map(|&i| items[i].clone())
                            .collect();
                        ok(if caller.python { self.sliced(picked) } else { PickleValue::List(picked) })
                    }
                    None => ok(items[at(&index, items.len())?].clone()),
                }
            }
            "__setitem__" => {
                let [index, value] = args.bind(method, ["index", "value"], 2)?;
                let (index, value) = (index.unwrap_or_default(), value.unwrap_or_default());
                match slice_of(&index)? {
                    Some(slice) => {
                        let values = items_of(value)?;
                        let positions = slice.positions(items.len()).unwrap_or_default();
                        if positions.len() != values.len() {
                            return Err(Raise::value_error(
                                "can only assign a sequence of the same length to an array slice",
                            ));
                        }
                        let values: Vec<PickleValue> =
                            values.into_iter().map(|v| self.typecode.convert(v)).collect::<Result<_, _>>()?;
                        for (i, v) in positions.into_iter().zip(values) {
                            items[i] = v;
                        }
                    }
                    None => {
                        let i = at(&index, items.len())?;
                        items[i] = self.typecode.convert(value)?;
                    }
                }
                Outcome::none()
            }
            "#items" => {
                args.none(method)?;
                ok(PickleValue::List(items.clone()))
            }
            other => Err(no_method("array.array", other)),
        }
    }

    fn repr(&self) -> String {
        let items = PickleValue::List(lock(&self.items).clone());
        match self.typecode.code() {
            Some(code) => format!("array('{code}', {items})"),
            None => format!("array({items})"),
        }
    }

    fn value(&self) -> Result<PickleValue, Raise> {
        Ok(self.sliced(lock(&self.items).clone()))
    }
}
