//! [`PickleValue`]s to serde values ([`from_value`](super::from_value)), and [`PickleValue`]'s own
//! `Deserialize`.
//!
//! Integers of any size go into any Rust integer type that holds them (`2**64 - 1` into `u64`,
//! `-(2**100)` nowhere but a [`PickleValue`]: the error gives the value and the type); sets,
//! frozensets, lists and tuples into sequences and sets; `bytes` and `bytearray` into
//! `serde_bytes` or `Vec<u8>`; a `timedelta` into `std::time::Duration` (when not negative), an
//! aware `datetime` into `SystemTime`; dates, times, decimals and UUIDs into `String` (ISO 8601,
//! the decimal's text, the hyphenated UUID: the forms that `chrono`, `rust_decimal` and `uuid`
//! parse), a UUID into `u128` too.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

use super::Error;
use super::repr::{iso_text, uuid_text};
use super::value::{DateTime, PickleValue, TimeDelta};

/// The name of the newtype struct through which [`PickleValue`]'s `Deserialize` asks
/// [`ValueDeserializer`] for the value as it is.
pub(crate) const VALUE: &str = "\0multiproc::pickle::value";

thread_local! {
    /// A value on its way from [`ValueDeserializer`] to [`PickleValue`]'s visitor.
    static HANDOFF: Cell<Option<PickleValue>> = const { Cell::new(None) };
}

type Result<T> = std::result::Result<T, Error>;

/// The serde deserializer over one [`PickleValue`].
pub(crate) struct ValueDeserializer(pub(crate) PickleValue);

impl ValueDeserializer {
    fn unexpected(&self) -> Unexpected<'_> {
        unexpected(&self.0)
    }

    fn invalid<V>(self, visitor: &dyn de::Expected) -> Result<V> {
        Err(de::Error::invalid_type(self.unexpected(), visitor))
    }
}

fn unexpected(value: &PickleValue) -> Unexpected<'_> {
    match value {
        PickleValue::None => Unexpected::Option,
        PickleValue::Bool(b) => Unexpected::Bool(*b),
        PickleValue::I64(i) => Unexpected::Signed(*i),
        PickleValue::F64(x) => Unexpected::Float(*x),
        PickleValue::String(s) => Unexpected::Str(s),
        PickleValue::Bytes(b) => Unexpected::Bytes(b),
        PickleValue::List(_) | PickleValue::Tuple(_) => Unexpected::Seq,
        PickleValue::Dict(_) => Unexpected::Map,
        other => Unexpected::Other(other.type_name()),
    }
}

fn out_of_range(value: &PickleValue, target: &str) -> Error {
    Error::new(format!("the integer {value} is out of the range of {target}"))
}

/// The text a date, time, decimal or UUID reads as.
fn text_of(value: &PickleValue) -> Option<String> {
    match value {
        PickleValue::Decimal(text) => Some(text.clone()),
        PickleValue::Uuid(uuid) => Some(uuid_text(*uuid)),
        other => iso_text(other),
    }
}

macro_rules! deserialize_int {
    ($($method:ident: $t:ty => $visit:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            match &self.0 {
                PickleValue::I64(i) => visitor.visit_i64(*i),
                PickleValue::Int(big) => {
                    let v = <$t>::try_from(big).map_err(|_| out_of_range(&self.0, stringify!($t)))?;
                    visitor.$visit(v.into())
                }
                PickleValue::Uuid(uuid) if stringify!($t) == "u128" => visitor.visit_u128(*uuid),
                _ => self.invalid(&visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for ValueDeserializer {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PickleValue::None => visitor.visit_unit(),
            PickleValue::Bool(b) => visitor.visit_bool(b),
            PickleValue::I64(i) => visitor.visit_i64(i),
            PickleValue::Int(big) => match (big.to_i128(), big.to_u128()) {
                (_, Some(u)) => visitor.visit_u128(u),
                (Some(i), _) => visitor.visit_i128(i),
                _ => Err(Error::new(format!("the integer {big} does not fit in any Rust integer type (128 bits)"))),
            },
            PickleValue::F64(x) => visitor.visit_f64(x),
            PickleValue::Complex { re, im } => visit_seq(vec![PickleValue::F64(re), PickleValue::F64(im)], visitor),
            PickleValue::String(s) => visitor.visit_string(s),
            PickleValue::Bytes(b) | PickleValue::ByteArray(b) => visitor.visit_byte_buf(b),
            PickleValue::List(items)
            | PickleValue::Tuple(items)
            | PickleValue::Set(items)
            | PickleValue::FrozenSet(items) => visit_seq(items, visitor),
            PickleValue::Dict(pairs) => visit_map(pairs, visitor),
            PickleValue::Object(object) => Err(Error::new(super::decode::refusal(&object.class))),
            other => match text_of(&other) {
                Some(text) => visitor.visit_string(text),
                None => ValueDeserializer(other).invalid(&visitor),
            },
        }
    }

    deserialize_int! {
        deserialize_i8: i8 => visit_i64,
        deserialize_i16: i16 => visit_i64,
        deserialize_i32: i32 => visit_i64,
        deserialize_i64: i64 => visit_i64,
        deserialize_i128: i128 => visit_i128,
        deserialize_u8: u8 => visit_u64,
        deserialize_u16: u16 => visit_u64,
        deserialize_u32: u32 => visit_u64,
        deserialize_u64: u64 => visit_u64,
        deserialize_u128: u128 => visit_u128,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PickleValue::F64(x) => visitor.visit_f64(x),
            // A Python int where a float is expected, when the float holds it exactly.
            PickleValue::I64(i) if i.unsigned_abs() <= 1 << 53 => visitor.visit_f64(i as f64),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PickleValue::Bool(b) => visitor.visit_bool(b),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PickleValue::String(s) => visitor.visit_string(s),
            other => match text_of(&other) {
                Some(text) => visitor.visit_string(text),
                None => ValueDeserializer(other).invalid(&visitor),
            },
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PickleValue::Bytes(b) | PickleValue::ByteArray(b) => visitor.visit_byte_buf(b),
            PickleValue::String(s) => visitor.visit_string(s),
            PickleValue::List(items) | PickleValue::Tuple(items) => visit_seq(items, visitor),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PickleValue::None => visitor.visit_none(),
            other => visitor.visit_some(ValueDeserializer(other)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match &self.0 {
            PickleValue::None => visitor.visit_unit(),
            PickleValue::Tuple(items) if items.is_empty() => visitor.visit_unit(),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value> {
        if name == VALUE {
            HANDOFF.set(Some(self.0));
            let result = visitor.visit_unit();
            HANDOFF.set(None);
            return result;
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PickleValue::List(items)
            | PickleValue::Tuple(items)
            | PickleValue::Set(items)
            | PickleValue::FrozenSet(items) => visit_seq(items, visitor),
            PickleValue::Bytes(b) | PickleValue::ByteArray(b) => {
                visit_seq(b.into_iter().map(PickleValue::from).collect(), visitor)
            }
            PickleValue::Complex { re, im } => visit_seq(vec![PickleValue::F64(re), PickleValue::F64(im)], visitor),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PickleValue::Dict(pairs) => visit_map(pairs, visitor),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match (name, fields, self.0) {
            ("Duration", ["secs", "nanos"], PickleValue::TimeDelta(delta)) => duration_fields(delta, visitor),
            ("SystemTime", ["secs_since_epoch", "nanos_since_epoch"], PickleValue::DateTime(dt)) => {
                system_time_fields(&dt, visitor)
            }
            (_, _, PickleValue::Dict(pairs)) => visit_map(pairs, visitor),
            (_, _, PickleValue::List(items) | PickleValue::Tuple(items)) => visit_seq(items, visitor),
            (_, _, other) => ValueDeserializer(other).invalid(&visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let (variant, value) = match self.0 {
            PickleValue::String(variant) => (variant, None),
            PickleValue::Dict(pairs) if pairs.len() == 1 => match pairs.into_iter().next() {
                Some((PickleValue::String(variant), value)) => (variant, Some(value)),
                _ => return Err(Error::new("an enum's dict must have the variant's name as its key")),
            },
            PickleValue::Tuple(items) | PickleValue::List(items) if (1..=2).contains(&items.len()) => {
                let mut items = items.into_iter();
                match (items.next(), items.next()) {
                    (Some(PickleValue::String(variant)), value) => (variant, value),
                    _ => return Err(Error::new("an enum's tuple must start with the variant's name")),
                }
            }
            other => {
                return Err(Error::new(format!(
                    "a {} where an enum was expected (the variant's name, or {{name: value}})",
                    other.type_name()
                )));
            }
        };
        visitor.visit_enum(EnumAccess { variant, value })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PickleValue::String(s) => visitor.visit_string(s),
            PickleValue::I64(i) if i >= 0 => visitor.visit_u64(i as u64),
            PickleValue::Bytes(b) => visitor.visit_byte_buf(b),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

/// A non-negative `timedelta` as a `Duration`'s fields.
fn duration_fields<'de, V: Visitor<'de>>(delta: TimeDelta, visitor: V) -> Result<V::Value> {
    let micros = delta.total_microseconds();
    if micros < 0 {
        return Err(Error::new(format!("{delta} is negative, and a Duration cannot be")));
    }
    let secs = (micros / 1_000_000) as u64;
    let nanos = (micros % 1_000_000) as u32 * 1000;
    visit_map(
        vec![
            (PickleValue::from("secs"), PickleValue::from(secs)),
            (PickleValue::from("nanos"), PickleValue::from(nanos)),
        ],
        visitor,
    )
}

/// An aware `datetime` as a `SystemTime`'s fields (seconds and nanoseconds since the epoch).
fn system_time_fields<'de, V: Visitor<'de>>(dt: &DateTime, visitor: V) -> Result<V::Value> {
    let Some(tz) = &dt.time.tzinfo else {
        return Err(Error::new(format!(
            "{} is naive (no tzinfo), so it is no instant a SystemTime can hold; send an aware datetime",
            PickleValue::DateTime(dt.clone())
        )));
    };
    let t = &dt.time;
    let local = i128::from(dt.date.days_from_epoch()) * 86_400
        + i128::from(t.hour) * 3600
        + i128::from(t.minute) * 60
        + i128::from(t.second);
    let micros = local * 1_000_000 + i128::from(t.microsecond) - tz.offset.total_microseconds();
    if micros < 0 {
        return Err(Error::new("a datetime before 1970 cannot be a SystemTime"));
    }
    let secs = (micros / 1_000_000) as u64;
    let nanos = (micros % 1_000_000) as u32 * 1000;
    visit_map(
        vec![
            (PickleValue::from("secs_since_epoch"), PickleValue::from(secs)),
            (PickleValue::from("nanos_since_epoch"), PickleValue::from(nanos)),
        ],
        visitor,
    )
}

fn visit_seq<'de, V: Visitor<'de>>(items: Vec<PickleValue>, visitor: V) -> Result<V::Value> {
    let len = items.len();
    let mut access = SeqAccess { items: items.into_iter() };
    let value = visitor.visit_seq(&mut access)?;
    if access.items.len() > 0 {
        return Err(de::Error::invalid_length(len, &"fewer elements"));
    }
    Ok(value)
}

fn visit_map<'de, V: Visitor<'de>>(pairs: Vec<(PickleValue, PickleValue)>, visitor: V) -> Result<V::Value> {
    let mut access = MapAccess { pairs: pairs.into_iter(), value: None };
    visitor.visit_map(&mut access)
}

struct SeqAccess {
    items: std::vec::IntoIter<PickleValue>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        self.items.next().map(|item| seed.deserialize(ValueDeserializer(item))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess {
    pairs: std::vec::IntoIter<(PickleValue, PickleValue)>,
    value: Option<PickleValue>,
}

impl<'de> de::MapAccess<'de> for MapAccess {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.pairs.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(ValueDeserializer(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let value = self.value.take().ok_or_else(|| Error::new("a map's value asked for before its key"))?;
        seed.deserialize(ValueDeserializer(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

struct EnumAccess {
    variant: String,
    value: Option<PickleValue>,
}

impl<'de> de::EnumAccess<'de> for EnumAccess {
    type Error = Error;
    type Variant = VariantAccess;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, VariantAccess)> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, VariantAccess { value: self.value }))
    }
}

struct VariantAccess {
    value: Option<PickleValue>,
}

impl<'de> de::VariantAccess<'de> for VariantAccess {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        match self.value {
            None | Some(PickleValue::None) => Ok(()),
            Some(other) => Err(Error::new(format!("a unit variant with a value ({other})"))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(ValueDeserializer(self.value.unwrap_or_default()))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        ValueDeserializer(self.value.unwrap_or_default()).deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        ValueDeserializer(self.value.unwrap_or_default()).deserialize_struct("", fields, visitor)
    }
}

// ---------------------------------------------------------------------------------------------
// PickleValue's own Deserialize.

impl<'de> Deserialize<'de> for PickleValue {
    /// From this crate's pickle decoding (`recv_pickle`, a CPython manager's results), the value
    /// exactly; from other serde formats, their nearest Python value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<PickleValue, D::Error> {
        deserializer.deserialize_newtype_struct(VALUE, ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = PickleValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_unit<E>(self) -> std::result::Result<PickleValue, E> {
        Ok(HANDOFF.take().unwrap_or(PickleValue::None))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> std::result::Result<PickleValue, D::Error> {
        d.deserialize_any(ValueVisitor)
    }

    fn visit_none<E>(self) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<PickleValue, D::Error> {
        PickleValue::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::I64(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::from(v))
    }

    fn visit_i128<E>(self, v: i128) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::from(v))
    }

    fn visit_u128<E>(self, v: u128) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::F64(v))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> std::result::Result<PickleValue, E> {
        Ok(PickleValue::Bytes(v))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<PickleValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element::<PickleValue>()? {
            items.push(item);
        }
        Ok(PickleValue::List(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<PickleValue, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(pair) = map.next_entry::<PickleValue, PickleValue>()? {
            pairs.push(pair);
        }
        Ok(PickleValue::Dict(pairs))
    }
}
