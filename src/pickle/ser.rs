//! Serde values to [`PickleValue`]s ([`to_value`](super::to_value)): the serde data model mapped
//! onto Python's types, and [`PickleValue`]'s own `Serialize`.
//!
//! | serde | Python |
//! |---|---|
//! | `bool`, integers of any width, floats | `bool`, `int`, `float` |
//! | `char`, `str` | `str` |
//! | bytes (`serde_bytes`) | `bytes` |
//! | `None`, `()`, unit structs | `None` |
//! | sequences (`Vec`, slices); `HashSet`, `BTreeSet` | `list`; `set` |
//! | tuples, tuple structs | `tuple` |
//! | maps, structs | `dict` (field names as `str` keys) |
//! | enum variants | `'Variant'`, or `{'Variant': value}` (serde-pickle's form) |
//! | `std::time::Duration`, `SystemTime` | `datetime.timedelta`, an aware `datetime.datetime` (UTC) |

use serde::Serialize;
use serde::ser;

use super::value::{BigInt, Build, Date, DateTime, Object, PickleValue, Time, TimeDelta, TimeZone};
use super::{Error, MAGIC_PREFIX};

/// Names of the newtype structs through which [`PickleValue`]'s `Serialize` hands its special
/// variants to [`ValueSerializer`] (other serializers see only the payload).
pub(crate) mod magic {
    pub(crate) const SET: &str = "\0multiproc::pickle::set";
    pub(crate) const FROZENSET: &str = "\0multiproc::pickle::frozenset";
    pub(crate) const BYTEARRAY: &str = "\0multiproc::pickle::bytearray";
    pub(crate) const BIGINT: &str = "\0multiproc::pickle::int";
    pub(crate) const COMPLEX: &str = "\0multiproc::pickle::complex";
    pub(crate) const DATE: &str = "\0multiproc::pickle::date";
    pub(crate) const TIME: &str = "\0multiproc::pickle::time";
    pub(crate) const DATETIME: &str = "\0multiproc::pickle::datetime";
    pub(crate) const TIMEDELTA: &str = "\0multiproc::pickle::timedelta";
    pub(crate) const DECIMAL: &str = "\0multiproc::pickle::decimal";
    pub(crate) const UUID: &str = "\0multiproc::pickle::uuid";
    pub(crate) const OBJECT: &str = "\0multiproc::pickle::object";
}

/// The serde serializer whose output is a [`PickleValue`].
pub(crate) struct ValueSerializer;

type Result<T> = std::result::Result<T, Error>;

impl ser::Serializer for ValueSerializer {
    type Ok = PickleValue;
    type Error = Error;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = VariantBuilder<SeqBuilder>;
    type SerializeMap = MapBuilder;
    type SerializeStruct = StructBuilder;
    type SerializeStructVariant = VariantBuilder<StructBuilder>;

    fn serialize_bool(self, v: bool) -> Result<PickleValue> {
        Ok(PickleValue::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<PickleValue> {
        Ok(PickleValue::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<PickleValue> {
        Ok(PickleValue::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<PickleValue> {
        Ok(PickleValue::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<PickleValue> {
        Ok(PickleValue::I64(v))
    }
    fn serialize_i128(self, v: i128) -> Result<PickleValue> {
        Ok(PickleValue::from(v))
    }
    fn serialize_u8(self, v: u8) -> Result<PickleValue> {
        Ok(PickleValue::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<PickleValue> {
        Ok(PickleValue::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<PickleValue> {
        Ok(PickleValue::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<PickleValue> {
        Ok(PickleValue::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<PickleValue> {
        Ok(PickleValue::from(v))
    }
    fn serialize_f32(self, v: f32) -> Result<PickleValue> {
        Ok(PickleValue::F64(f64::from(v)))
    }
    fn serialize_f64(self, v: f64) -> Result<PickleValue> {
        Ok(PickleValue::F64(v))
    }
    fn serialize_char(self, v: char) -> Result<PickleValue> {
        Ok(PickleValue::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<PickleValue> {
        Ok(PickleValue::String(v.to_string()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<PickleValue> {
        Ok(PickleValue::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<PickleValue> {
        Ok(PickleValue::None)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<PickleValue> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<PickleValue> {
        Ok(PickleValue::None)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<PickleValue> {
        Ok(PickleValue::None)
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<PickleValue> {
        Ok(PickleValue::String(variant.to_string()))
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, name: &'static str, value: &T) -> Result<PickleValue> {
        let inner = value.serialize(ValueSerializer)?;
        if name.starts_with(MAGIC_PREFIX) { from_magic(name, inner) } else { Ok(inner) }
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<PickleValue> {
        Ok(PickleValue::Dict(vec![(PickleValue::String(variant.to_string()), value.serialize(ValueSerializer)?)]))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder> {
        Ok(SeqBuilder { items: Vec::with_capacity(len.unwrap_or(0).min(4096)), kind: Kind::List })
    }

    /// A `HashSet` or `BTreeSet` (which serialize through `collect_seq`) becomes a Python set.
    fn collect_seq<I>(self, iter: I) -> Result<PickleValue>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let is_set = is_set_type(std::any::type_name::<I>());
        let items = iter.into_iter().map(|item| item.serialize(ValueSerializer)).collect::<Result<Vec<_>>>()?;
        Ok(if is_set { PickleValue::Set(items) } else { PickleValue::List(items) })
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder> {
        Ok(SeqBuilder { items: Vec::with_capacity(len.min(4096)), kind: Kind::Tuple })
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqBuilder> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantBuilder<SeqBuilder>> {
        Ok(VariantBuilder { variant, inner: SeqBuilder { items: Vec::with_capacity(len.min(4096)), kind: Kind::List } })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder> {
        Ok(MapBuilder { pairs: Vec::with_capacity(len.unwrap_or(0).min(4096)), key: None })
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<StructBuilder> {
        Ok(StructBuilder { name, pairs: Vec::with_capacity(len.min(4096)) })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantBuilder<StructBuilder>> {
        Ok(VariantBuilder { variant, inner: StructBuilder { name: "", pairs: Vec::with_capacity(len.min(4096)) } })
    }
}

/// Whether a type (as `type_name` writes it) is one of the standard sets.
fn is_set_type(name: &str) -> bool {
    let base = name.trim_start_matches('&');
    let base = base.split('<').next().unwrap_or(base);
    base.ends_with("::HashSet") || base.ends_with("::BTreeSet") || base.ends_with("::IndexSet")
}

enum Kind {
    List,
    Tuple,
}

pub(crate) struct SeqBuilder {
    items: Vec<PickleValue>,
    kind: Kind,
}

impl SeqBuilder {
    fn push<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.items.push(value.serialize(ValueSerializer)?);
        Ok(())
    }

    fn finish(self) -> PickleValue {
        match self.kind {
            Kind::List => PickleValue::List(self.items),
            Kind::Tuple => PickleValue::Tuple(self.items),
        }
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = PickleValue;
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.push(value)
    }
    fn end(self) -> Result<PickleValue> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = PickleValue;
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.push(value)
    }
    fn end(self) -> Result<PickleValue> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = PickleValue;
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.push(value)
    }
    fn end(self) -> Result<PickleValue> {
        Ok(self.finish())
    }
}

pub(crate) struct MapBuilder {
    pairs: Vec<(PickleValue, PickleValue)>,
    key: Option<PickleValue>,
}

impl ser::SerializeMap for MapBuilder {
    type Ok = PickleValue;
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<()> {
        self.key = Some(key.serialize(ValueSerializer)?);
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        let key = self.key.take().ok_or_else(|| Error::new("a map value without its key"))?;
        self.pairs.push((key, value.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<PickleValue> {
        Ok(PickleValue::Dict(self.pairs))
    }
}

pub(crate) struct StructBuilder {
    name: &'static str,
    pairs: Vec<(PickleValue, PickleValue)>,
}

impl ser::SerializeStruct for StructBuilder {
    type Ok = PickleValue;
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.pairs.push((PickleValue::String(key.to_string()), value.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<PickleValue> {
        let fields = |a: &str, b: &str| match &self.pairs[..] {
            [(PickleValue::String(k1), v1), (PickleValue::String(k2), v2)] if k1 == a && k2 == b => Some((v1, v2)),
            _ => None,
        };
        if self.name == "Duration"
            && let Some((secs, nanos)) = fields("secs", "nanos")
        {
            return duration_to_timedelta(secs, nanos);
        }
        if self.name == "SystemTime"
            && let Some((secs, nanos)) = fields("secs_since_epoch", "nanos_since_epoch")
        {
            return system_time_to_datetime(secs, nanos);
        }
        Ok(PickleValue::Dict(self.pairs))
    }
}

fn whole_micros(nanos: &PickleValue, what: &str) -> Result<i128> {
    let PickleValue::I64(nanos) = nanos else { return Err(Error::new(format!("a {what} with odd nanoseconds"))) };
    if nanos % 1000 != 0 {
        return Err(Error::new(format!(
            "a {what} of {nanos} ns past the second cannot be a Python {} exactly (microseconds); round it to \
             whole microseconds first",
            if what == "Duration" { "timedelta" } else { "datetime" }
        )));
    }
    Ok(i128::from(*nanos / 1000))
}

fn seconds(value: &PickleValue) -> Option<i128> {
    match value {
        PickleValue::I64(i) => Some(i128::from(*i)),
        PickleValue::Int(big) => big.to_i128(),
        _ => None,
    }
}

/// A `Duration` (serde: `{secs, nanos}`) as the `timedelta` of the same length.
fn duration_to_timedelta(secs: &PickleValue, nanos: &PickleValue) -> Result<PickleValue> {
    let secs = seconds(secs).ok_or_else(|| Error::new("a Duration with odd seconds"))?;
    let micros = secs * 1_000_000 + whole_micros(nanos, "Duration")?;
    TimeDelta::from_microseconds(micros)
        .map(PickleValue::TimeDelta)
        .ok_or_else(|| Error::new("a Duration longer than Python's timedelta can hold (999999999 days)"))
}

/// A `SystemTime` (serde: seconds and nanoseconds since the Unix epoch) as an aware datetime in
/// UTC.
fn system_time_to_datetime(secs: &PickleValue, nanos: &PickleValue) -> Result<PickleValue> {
    let secs = seconds(secs).ok_or_else(|| Error::new("a SystemTime with odd seconds"))?;
    let micros = whole_micros(nanos, "SystemTime")?;
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let date = i64::try_from(days)
        .ok()
        .and_then(Date::from_days_from_epoch)
        .ok_or_else(|| Error::new("a SystemTime outside Python's years 1 to 9999"))?;
    let time = Time {
        hour: (rest / 3600) as u8,
        minute: (rest / 60 % 60) as u8,
        second: (rest % 60) as u8,
        microsecond: micros as u32,
        fold: 0,
        tzinfo: Some(TimeZone::UTC),
    };
    Ok(PickleValue::DateTime(DateTime { date, time }))
}

pub(crate) struct VariantBuilder<B> {
    variant: &'static str,
    inner: B,
}

impl ser::SerializeTupleVariant for VariantBuilder<SeqBuilder> {
    type Ok = PickleValue;
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.inner.push(value)
    }
    fn end(self) -> Result<PickleValue> {
        Ok(PickleValue::Dict(vec![(PickleValue::String(self.variant.to_string()), self.inner.finish())]))
    }
}

impl ser::SerializeStructVariant for VariantBuilder<StructBuilder> {
    type Ok = PickleValue;
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<()> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }
    fn end(self) -> Result<PickleValue> {
        Ok(PickleValue::Dict(vec![(
            PickleValue::String(self.variant.to_string()),
            PickleValue::Dict(self.inner.pairs),
        )]))
    }
}

// ---------------------------------------------------------------------------------------------
// PickleValue's own Serialize: natural for other formats, exact for ValueSerializer.

fn items(value: PickleValue) -> Result<Vec<PickleValue>> {
    match value {
        PickleValue::List(items) | PickleValue::Tuple(items) => Ok(items),
        other => Err(Error::new(format!("a special value's payload is a {}", other.type_name()))),
    }
}

fn int(value: &PickleValue) -> Result<i64> {
    match value {
        PickleValue::I64(i) => Ok(*i),
        other => Err(Error::new(format!("a special value's field is a {}", other.type_name()))),
    }
}

fn narrow<T: TryFrom<i64>>(value: &PickleValue) -> Result<T> {
    T::try_from(int(value)?).map_err(|_| Error::new("a special value's field is out of range"))
}

/// Rebuilds the variant that [`PickleValue`]'s `Serialize` sent as the newtype struct `name`.
fn from_magic(name: &str, inner: PickleValue) -> Result<PickleValue> {
    Ok(match name {
        magic::SET => PickleValue::Set(items(inner)?),
        magic::FROZENSET => PickleValue::FrozenSet(items(inner)?),
        magic::BYTEARRAY => match inner {
            PickleValue::Bytes(b) => PickleValue::ByteArray(b),
            _ => return Err(Error::new("a bytearray's payload is not bytes")),
        },
        magic::BIGINT => match inner {
            PickleValue::Bytes(b) => PickleValue::from(BigInt::from_le_bytes(&b)),
            _ => return Err(Error::new("an integer's payload is not bytes")),
        },
        magic::COMPLEX => match &items(inner)?[..] {
            [PickleValue::F64(re), PickleValue::F64(im)] => PickleValue::Complex { re: *re, im: *im },
            _ => return Err(Error::new("a complex's payload is not two floats")),
        },
        magic::DATE => PickleValue::Date(date(&inner)?),
        magic::TIME => PickleValue::Time(time(&inner)?),
        magic::DATETIME => match &items(inner)?[..] {
            [d, t] => PickleValue::DateTime(DateTime { date: date(d)?, time: time(t)? }),
            _ => return Err(Error::new("a datetime's payload is not (date, time)")),
        },
        magic::TIMEDELTA => PickleValue::TimeDelta(timedelta(&inner)?),
        magic::DECIMAL => match inner {
            PickleValue::String(text) => PickleValue::Decimal(text),
            _ => return Err(Error::new("a decimal's payload is not a str")),
        },
        magic::UUID => match inner {
            PickleValue::I64(i) => PickleValue::Uuid(u128::try_from(i).map_err(|_| Error::new("a negative UUID"))?),
            PickleValue::Int(big) => PickleValue::Uuid(u128::try_from(&big).map_err(|e| Error::new(e.to_string()))?),
            _ => return Err(Error::new("a UUID's payload is not an integer")),
        },
        magic::OBJECT => object(inner)?,
        _ => inner,
    })
}

fn date(value: &PickleValue) -> Result<Date> {
    match value {
        PickleValue::Tuple(f) if f.len() == 3 => {
            Ok(Date { year: narrow(&f[0])?, month: narrow(&f[1])?, day: narrow(&f[2])? })
        }
        _ => Err(Error::new("a date's payload is not (year, month, day)")),
    }
}

fn timedelta(value: &PickleValue) -> Result<TimeDelta> {
    match value {
        PickleValue::Tuple(f) if f.len() == 3 => {
            Ok(TimeDelta { days: narrow(&f[0])?, seconds: narrow(&f[1])?, microseconds: narrow(&f[2])? })
        }
        _ => Err(Error::new("a timedelta's payload is not (days, seconds, microseconds)")),
    }
}

fn time(value: &PickleValue) -> Result<Time> {
    let PickleValue::Tuple(f) = value else { return Err(Error::new("a time's payload is not a tuple")) };
    let [hour, minute, second, microsecond, fold, tz] = &f[..] else {
        return Err(Error::new("a time's payload has the wrong length"));
    };
    let tzinfo = match tz {
        PickleValue::None => None,
        PickleValue::Tuple(parts) => match &parts[..] {
            [offset, PickleValue::None] => Some(TimeZone { offset: timedelta(offset)?, name: None }),
            [offset, PickleValue::String(name)] => {
                Some(TimeZone { offset: timedelta(offset)?, name: Some(name.clone()) })
            }
            _ => return Err(Error::new("a time zone's payload is not (offset, name)")),
        },
        _ => return Err(Error::new("a time zone's payload is not a tuple")),
    };
    Ok(Time {
        hour: narrow(hour)?,
        minute: narrow(minute)?,
        second: narrow(second)?,
        microsecond: narrow(microsecond)?,
        fold: narrow(fold)?,
        tzinfo,
    })
}

fn object(value: PickleValue) -> Result<PickleValue> {
    let bad = || Error::new("an object's payload is not (class, how, args, state)");
    let PickleValue::Tuple(parts) = value else { return Err(bad()) };
    let [class, how, args, state] = <[PickleValue; 4]>::try_from(parts).map_err(|_| bad())?;
    let (PickleValue::String(class), PickleValue::String(how)) = (class, how) else { return Err(bad()) };
    let build = match how.as_str() {
        "reference" => Build::Reference,
        "call" => Build::Call(items(args)?),
        "new" => Build::New(items(args)?),
        _ => return Err(bad()),
    };
    let state = match state {
        PickleValue::Tuple(mut s) if s.len() == 1 => s.pop(),
        _ => None,
    };
    Ok(PickleValue::Object(Box::new(Object { class, build, state })))
}

/// Bytes for serde (a `&[u8]` would go as a sequence).
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A time zone's payload: the offset's (days, seconds, microseconds) and the name.
type ZonePayload<'a> = ((i32, i32, i32), Option<&'a str>);

fn time_payload(t: &Time) -> (u8, u8, u8, u32, u8, Option<ZonePayload<'_>>) {
    let tz =
        t.tzinfo.as_ref().map(|tz| ((tz.offset.days, tz.offset.seconds, tz.offset.microseconds), tz.name.as_deref()));
    (t.hour, t.minute, t.second, t.microsecond, t.fold, tz)
}

impl Serialize for PickleValue {
    /// For this crate's pickling (`send_pickle`, a CPython manager call's arguments), the value
    /// exactly; for other serde formats, its nearest serde shape (sets as sequences, big integers
    /// as bytes, dates as tuples, a `Decimal` as its text).
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use ser::{SerializeMap, SerializeSeq, SerializeTuple};
        match self {
            PickleValue::None => serializer.serialize_none(),
            PickleValue::Bool(b) => serializer.serialize_bool(*b),
            PickleValue::I64(i) => serializer.serialize_i64(*i),
            PickleValue::Int(big) => match (big.to_i128(), big.to_u128()) {
                (Some(i), _) => serializer.serialize_i128(i),
                (_, Some(u)) => serializer.serialize_u128(u),
                _ => serializer.serialize_newtype_struct(magic::BIGINT, &Raw(big.to_le_bytes())),
            },
            PickleValue::F64(x) => serializer.serialize_f64(*x),
            PickleValue::Complex { re, im } => serializer.serialize_newtype_struct(magic::COMPLEX, &(re, im)),
            PickleValue::String(s) => serializer.serialize_str(s),
            PickleValue::Bytes(b) => serializer.serialize_bytes(b),
            PickleValue::ByteArray(b) => serializer.serialize_newtype_struct(magic::BYTEARRAY, &Raw(b)),
            PickleValue::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            PickleValue::Tuple(items) => {
                let mut tuple = serializer.serialize_tuple(items.len())?;
                for item in items {
                    tuple.serialize_element(item)?;
                }
                tuple.end()
            }
            PickleValue::Set(items) => serializer.serialize_newtype_struct(magic::SET, items),
            PickleValue::FrozenSet(items) => serializer.serialize_newtype_struct(magic::FROZENSET, items),
            PickleValue::Dict(pairs) => {
                let mut map = serializer.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            PickleValue::Date(d) => serializer.serialize_newtype_struct(magic::DATE, &(d.year, d.month, d.day)),
            PickleValue::Time(t) => serializer.serialize_newtype_struct(magic::TIME, &time_payload(t)),
            PickleValue::DateTime(dt) => {
                let d = &dt.date;
                serializer
                    .serialize_newtype_struct(magic::DATETIME, &((d.year, d.month, d.day), time_payload(&dt.time)))
            }
            PickleValue::TimeDelta(td) => {
                serializer.serialize_newtype_struct(magic::TIMEDELTA, &(td.days, td.seconds, td.microseconds))
            }
            PickleValue::Decimal(text) => serializer.serialize_newtype_struct(magic::DECIMAL, text),
            PickleValue::Uuid(uuid) => serializer.serialize_newtype_struct(magic::UUID, uuid),
            PickleValue::Object(object) => {
                let (how, args) = match &object.build {
                    Build::Reference => ("reference", &[][..]),
                    Build::Call(args) => ("call", &args[..]),
                    Build::New(args) => ("new", &args[..]),
                };
                let state: Vec<&PickleValue> = object.state.iter().collect();
                serializer.serialize_newtype_struct(magic::OBJECT, &(&object.class, how, args, TupleOf(&state)))
            }
        }
    }
}

/// A slice serialized as a tuple (so that the payload of an object keeps its shape).
struct TupleOf<'a>(&'a [&'a PickleValue]);

impl Serialize for TupleOf<'_> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for item in self.0 {
            tuple.serialize_element(item)?;
        }
        tuple.end()
    }
}
