//! Python's semantics over [`PickleValue`]s, as the server's objects need them: equality across
//! numeric types (`1 == 1.0 == True`), hashing of dict keys and set items (and `TypeError` for
//! unhashable ones), and ordering for `sort` and priority queues.

use std::cmp::Ordering;

use super::Raise;
use crate::pickle::{BigInt, DateTime, PickleValue, Time};

/// A value reduced to what Python's `==` looks at: equal values have equal keys, whatever their
/// types (`1`, `1.0`, `True`, `Decimal('1')`; a `set` and a `frozenset` of the same items).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    None,
    Int(i128),
    BigInt(Vec<u8>),
    /// A float that is no integer (bits; one NaN for all).
    Float(u64),
    Complex(u64, u64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Key>),
    List(Vec<Key>),
    /// Items sorted, duplicates dropped.
    Set(Vec<Key>),
    /// Pairs sorted.
    Dict(Vec<(Key, Key)>),
    Date(i64),
    /// Microseconds into the day, naive.
    NaiveTime(i64),
    /// Microseconds into the day in UTC.
    AwareTime(i64),
    NaiveDateTime(i128),
    AwareDateTime(i128),
    TimeDelta(i128),
    Decimal(String),
    Uuid(u128),
    Object(String),
}

fn float_key(x: f64) -> Key {
    if x.is_nan() {
        return Key::Float(f64::NAN.to_bits());
    }
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1.7e38 {
        return Key::Int(x as i128);
    }
    Key::Float(x.to_bits())
}

fn int_key(big: &BigInt) -> Key {
    match big.to_i128() {
        Some(i) => Key::Int(i),
        None => Key::BigInt(big.to_le_bytes().to_vec()),
    }
}

/// A decimal's key: an integer when it is one, else its digits without trailing zeros.
fn decimal_key(text: &str) -> Key {
    let lower = text.trim().to_ascii_lowercase();
    let (negative, body) = match lower.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, lower.trim_start_matches('+')),
    };
    let (mantissa, exponent) = match body.split_once('e') {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit() || c == '_') {
        return Key::Decimal(lower);
    }
    let mut digits: String = format!("{int}{frac}").chars().filter(|c| *c != '_').collect();
    let mut exponent = exponent - frac.len() as i64;
    while digits.ends_with('0') && digits.len() > 1 {
        digits.pop();
        exponent += 1;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Key::Int(0);
    }
    if (0..30).contains(&exponent)
        && let Ok(n) = format!("{digits}{}", "0".repeat(exponent as usize)).parse::<i128>()
    {
        return Key::Int(if negative { -n } else { n });
    }
    Key::Decimal(format!("{}{digits}e{exponent}", if negative { "-" } else { "" }))
}

fn micros_of_day(t: &Time) -> i64 {
    ((i64::from(t.hour) * 60 + i64::from(t.minute)) * 60 + i64::from(t.second)) * 1_000_000 + i64::from(t.microsecond)
}

fn datetime_key(dt: &DateTime) -> Key {
    let local = i128::from(dt.date.days_from_epoch()) * 86_400_000_000 + i128::from(micros_of_day(&dt.time));
    match &dt.time.tzinfo {
        Some(tz) => Key::AwareDateTime(local - tz.offset.total_microseconds()),
        None => Key::NaiveDateTime(local),
    }
}

/// The key of any value (unhashable ones too: for equality).
pub(crate) fn key_of(value: &PickleValue) -> Key {
    match value {
        PickleValue::None => Key::None,
        PickleValue::Bool(b) => Key::Int(i128::from(*b)),
        PickleValue::I64(i) => Key::Int(i128::from(*i)),
        PickleValue::Int(big) => int_key(big),
        PickleValue::F64(x) => float_key(*x),
        PickleValue::Complex { re, im } if *im == 0.0 => float_key(*re),
        PickleValue::Complex { re, im } => Key::Complex((re + 0.0).to_bits(), (im + 0.0).to_bits()),
        PickleValue::String(s) => Key::Str(s.clone()),
        PickleValue::Bytes(b) | PickleValue::ByteArray(b) => Key::Bytes(b.clone()),
        PickleValue::Tuple(items) => Key::Tuple(items.iter().map(key_of).collect()),
        PickleValue::List(items) => Key::List(items.iter().map(key_of).collect()),
        PickleValue::Set(items) | PickleValue::FrozenSet(items) => {
            let mut keys: Vec<Key> = items.iter().map(key_of).collect();
            keys.sort();
            keys.dedup();
            Key::Set(keys)
        }
        PickleValue::Dict(pairs) => {
            let mut keys: Vec<(Key, Key)> = pairs.iter().map(|(k, v)| (key_of(k), key_of(v))).collect();
            keys.sort();
            Key::Dict(keys)
        }
        PickleValue::Date(d) => Key::Date(d.days_from_epoch()),
        PickleValue::Time(t) => match &t.tzinfo {
            Some(tz) => Key::AwareTime(micros_of_day(t) - tz.offset.total_microseconds() as i64),
            None => Key::NaiveTime(micros_of_day(t)),
        },
        PickleValue::DateTime(dt) => datetime_key(dt),
        PickleValue::TimeDelta(td) => Key::TimeDelta(td.total_microseconds()),
        PickleValue::Decimal(text) => decimal_key(text),
        PickleValue::Uuid(u) => Key::Uuid(*u),
        PickleValue::Object(object) => Key::Object(object.to_string()),
    }
}

/// Whether Python's `hash()` accepts the value.
fn hashable(value: &PickleValue) -> bool {
    match value {
        PickleValue::List(_) | PickleValue::Dict(_) | PickleValue::Set(_) | PickleValue::ByteArray(_) => false,
        PickleValue::Tuple(items) => items.iter().all(hashable),
        _ => true,
    }
}

/// The key of a dict key or set item; `TypeError: unhashable type` as Python raises it.
pub(crate) fn hash_key(value: &PickleValue) -> Result<Key, Raise> {
    if !hashable(value) {
        let culprit = match value {
            PickleValue::Tuple(items) => items.iter().find(|i| !hashable(i)).unwrap_or(value),
            _ => value,
        };
        return Err(Raise::type_error(format!("unhashable type: '{}'", culprit.type_name())));
    }
    Ok(key_of(value))
}

/// Python's `a == b`.
pub(crate) fn py_eq(a: &PickleValue, b: &PickleValue) -> bool {
    key_of(a) == key_of(b)
}

/// A number as Python compares numbers: exactly as an integer, else as a float.
enum Number {
    Int(i128),
    Float(f64),
}

fn number(value: &PickleValue) -> Option<Number> {
    Some(match value {
        PickleValue::Bool(b) => Number::Int(i128::from(*b)),
        PickleValue::I64(i) => Number::Int(i128::from(*i)),
        PickleValue::Int(big) => match big.to_i128() {
            Some(i) => Number::Int(i),
            None => Number::Float(big.to_f64()),
        },
        PickleValue::F64(x) => Number::Float(*x),
        PickleValue::Decimal(text) => Number::Float(text.parse().ok()?),
        _ => return None,
    })
}

fn compare_numbers(a: Number, b: Number) -> Option<Ordering> {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => Some(x.cmp(&y)),
        (Number::Int(x), Number::Float(y)) => (x as f64).partial_cmp(&y),
        (Number::Float(x), Number::Int(y)) => x.partial_cmp(&(y as f64)),
        (Number::Float(x), Number::Float(y)) => x.partial_cmp(&y),
    }
}

fn compare_items(a: &[PickleValue], b: &[PickleValue]) -> Result<Option<Ordering>, Raise> {
    for (x, y) in a.iter().zip(b) {
        if !py_eq(x, y) {
            return py_cmp(x, y).map(Some);
        }
    }
    Ok(Some(a.len().cmp(&b.len())))
}

/// Python's ordering of `a` and `b` (what `sort` uses); `TypeError` where Python has none.
/// Unordered floats (a NaN) compare as equal, which keeps a sort stable as Python's does.
pub(crate) fn py_cmp(a: &PickleValue, b: &PickleValue) -> Result<Ordering, Raise> {
    use PickleValue as V;
    let ordering = match (a, b) {
        (V::String(x), V::String(y)) => Some(x.cmp(y)),
        (V::Bytes(x) | V::ByteArray(x), V::Bytes(y) | V::ByteArray(y)) => Some(x.cmp(y)),
        (V::Tuple(x), V::Tuple(y)) | (V::List(x), V::List(y)) => compare_items(x, y)?,
        (V::Date(x), V::Date(y)) => Some(x.cmp(y)),
        (V::TimeDelta(x), V::TimeDelta(y)) => Some(x.cmp(y)),
        (V::Uuid(x), V::Uuid(y)) => Some(x.cmp(y)),
        (V::DateTime(x), V::DateTime(y)) if x.time.tzinfo.is_some() == y.time.tzinfo.is_some() => {
            Some(datetime_key(x).cmp(&datetime_key(y)))
        }
        (V::Time(x), V::Time(y)) if x.tzinfo.is_some() == y.tzinfo.is_some() => {
            Some(key_of(a).cmp(&key_of(b))).filter(|_| x.tzinfo.is_none() || y.tzinfo.is_some())
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => Some(compare_numbers(x, y).unwrap_or(Ordering::Equal)),
            _ => None,
        },
    };
    ordering.ok_or_else(|| {
        Raise::type_error(format!("'<' not supported between instances of '{}' and '{}'", a.type_name(), b.type_name()))
    })
}

/// Python's truth value.
pub(crate) fn truthy(value: &PickleValue) -> bool {
    match value {
        PickleValue::None => false,
        PickleValue::Bool(b) => *b,
        PickleValue::I64(i) => *i != 0,
        PickleValue::F64(x) => *x != 0.0,
        PickleValue::String(s) => !s.is_empty(),
        PickleValue::Bytes(b) | PickleValue::ByteArray(b) => !b.is_empty(),
        PickleValue::List(i) | PickleValue::Tuple(i) | PickleValue::Set(i) | PickleValue::FrozenSet(i) => !i.is_empty(),
        PickleValue::Dict(p) => !p.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_equal_across_types() {
        let one = [
            PickleValue::I64(1),
            PickleValue::F64(1.0),
            PickleValue::Bool(true),
            PickleValue::Decimal("1.00".into()),
            PickleValue::Complex { re: 1.0, im: 0.0 },
        ];
        for a in &one {
            for b in &one {
                assert!(py_eq(a, b), "{a} == {b}");
            }
        }
        assert!(!py_eq(&PickleValue::I64(1), &PickleValue::from("1")));
        assert!(py_eq(&PickleValue::Set(vec![1.into(), 2.into()]), &PickleValue::FrozenSet(vec![2.into(), 1.into()])));
        assert!(!py_eq(&PickleValue::List(vec![]), &PickleValue::Tuple(vec![])));
    }

    #[test]
    fn unhashable_values_are_named() {
        let error = hash_key(&PickleValue::Tuple(vec![1.into(), PickleValue::List(vec![])])).unwrap_err();
        assert_eq!(error.to_string(), "TypeError: unhashable type: 'list'");
    }

    #[test]
    fn ordering_follows_python() {
        assert_eq!(py_cmp(&1.into(), &PickleValue::F64(1.5)).unwrap(), Ordering::Less);
        assert_eq!(
            py_cmp(&PickleValue::Tuple(vec![1.into(), "b".into()]), &PickleValue::Tuple(vec![1.into(), "a".into()]))
                .unwrap(),
            Ordering::Greater
        );
        let error = py_cmp(&1.into(), &"a".into()).unwrap_err();
        assert_eq!(error.to_string(), "TypeError: '<' not supported between instances of 'int' and 'str'");
    }
}
