//! The fast path of record sequences whose records are one number each (a `map` over `u64`s or
//! `f64`s, the commonest chunk there is).
//!
//! The general record reader and writer track where they are in the record's shape and check
//! each primitive against it; for a record of one number that bookkeeping is most of the cost.
//! Here the kind is a constant (`K`, a [`Kind`] as `u8`): one loop per kind, whose (de)serializer
//! offers exactly that number (or a newtype around it) and refuses everything else.
//!
//! A worker's chunk of numbers mapped to numbers runs in one loop too ([`map_numbers`]): each
//! argument read, the task called and its result written as a record, with the kinds known only
//! at run time (one loop per task type, not per pair of kinds) and checked once per value, a
//! predictable branch. Records are written through a block on the stack and appended a block at
//! a time, so each output byte is written once.
//!
//! This path only accelerates; it never decides. The bytes are the general writer's, and a value
//! whose `Serialize` or `Deserialize` asks for anything else makes these functions give up
//! (`false`, the output as it was; for `map_numbers`, the value it stopped at handed back), so
//! that the general path runs and reports what it reports.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};

use super::{Form, Kind, PackError, SeqReader, SeqWriter, Shape, array, pack_error};

/// Runs `$body` with `$k` bound to the const generic of `$kind` for the numeric kinds; `$other`
/// for the rest (`bool` and `char`, whose bytes need checking, stay on the general path).
macro_rules! with_number_kind {
    ($kind:expr, $k:ident => $body:expr, _ => $other:expr) => {
        match $kind {
            Kind::I8 => {
                const $k: u8 = Kind::I8 as u8;
                $body
            }
            Kind::I16 => {
                const $k: u8 = Kind::I16 as u8;
                $body
            }
            Kind::I32 => {
                const $k: u8 = Kind::I32 as u8;
                $body
            }
            Kind::I64 => {
                const $k: u8 = Kind::I64 as u8;
                $body
            }
            Kind::I128 => {
                const $k: u8 = Kind::I128 as u8;
                $body
            }
            Kind::U8 => {
                const $k: u8 = Kind::U8 as u8;
                $body
            }
            Kind::U16 => {
                const $k: u8 = Kind::U16 as u8;
                $body
            }
            Kind::U32 => {
                const $k: u8 = Kind::U32 as u8;
                $body
            }
            Kind::U64 => {
                const $k: u8 = Kind::U64 as u8;
                $body
            }
            Kind::U128 => {
                const $k: u8 = Kind::U128 as u8;
                $body
            }
            Kind::F32 => {
                const $k: u8 = Kind::F32 as u8;
                $body
            }
            Kind::F64 => {
                const $k: u8 = Kind::F64 as u8;
                $body
            }
            Kind::Bool | Kind::Char => $other,
        }
    };
}

/// Decodes `records`, each one number of `kind`, appending them to `values`. `false` (and
/// `values` as it was) if `T` asks for anything else, or `kind` is not a number.
pub(super) fn decode<T: de::DeserializeOwned>(kind: Kind, records: &[u8], values: &mut Vec<T>) -> bool {
    with_number_kind!(kind, K => decode_all::<T, K>(records, values), _ => false)
}

fn decode_all<T: de::DeserializeOwned, const K: u8>(records: &[u8], values: &mut Vec<T>) -> bool {
    let start = values.len();
    values.reserve(records.len() / width(K));
    for record in records.chunks_exact(width(K)) {
        match T::deserialize(NumberReader::<K> { record }) {
            Ok(value) => values.push(value),
            Err(_) => {
                values.truncate(start);
                return false;
            }
        }
    }
    true
}

/// [`decode`] when `values` is a `Vec` of the primitive number of `kind` itself: each record is its
/// little-endian bytes, converted in one loop the compiler vectorizes, with no `Deserialize`
/// call per record (a `map` to `u64`s decoded its results at 0.8 ns a value on the pool's
/// scheduler thread, a third of that thread's work). `false` (and `values` as it was) for any
/// other vector or kind, whose own `Deserialize` then runs through [`decode`].
pub(super) fn decode_exact(kind: Kind, records: &[u8], values: &mut dyn std::any::Any) -> bool {
    macro_rules! exact {
        ($($kind:ident => $t:ty),* $(,)?) => {
            match kind {
                $(Kind::$kind => match values.downcast_mut::<Vec<$t>>() {
                    Some(values) => {
                        let records = records.chunks_exact(std::mem::size_of::<$t>());
                        values.extend(records.map(|record| <$t>::from_le_bytes(array(record))));
                        true
                    }
                    None => false,
                },)*
                Kind::Bool | Kind::Char => false,
            }
        };
    }
    exact!(
        I8 => i8, I16 => i16, I32 => i32, I64 => i64, I128 => i128,
        U8 => u8, U16 => u16, U32 => u32, U64 => u64, U128 => u128,
        F32 => f32, F64 => f64,
    )
}

/// Appends the records of `items`, each one number of `kind`. `false` (and `out` as it was) if
/// a value serializes as anything else, or `kind` is not a number.
pub(super) fn encode<T: Serialize>(kind: Kind, items: &[T], out: &mut Vec<u8>) -> bool {
    with_number_kind!(kind, K => encode_all::<T, K>(items, out), _ => false)
}

fn encode_all<T: Serialize, const K: u8>(items: &[T], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let Some(bytes) = items.len().checked_mul(width(K)) else { return false };
    out.reserve(bytes);
    let mut block = [0u8; BLOCK];
    for items in items.chunks(BLOCK / width(K)) {
        let block = &mut block[..items.len() * width(K)];
        for (item, record) in items.iter().zip(block.chunks_exact_mut(width(K))) {
            if item.serialize(NumberWriter::<K> { record }).is_err() {
                out.truncate(start);
                return false;
            }
        }
        out.extend_from_slice(block);
    }
    true
}

/// Bytes of records written on the stack before they are appended to the output: each output
/// byte is written once (resizing the output first, then writing the records into it, wrote
/// each twice, and the zeros to memory that was not in the cache).
const BLOCK: usize = 4096;

/// The width of kind `kind` (a constant where it is called: the functions fold).
#[inline(always)]
fn width(kind: u8) -> usize {
    Kind::from_byte(kind).map_or(1, Kind::width)
}

fn other_than_the_number() -> PackError {
    pack_error("not one number")
}

/// A deserializer over one record holding one number of kind `K`.
struct NumberReader<'r, const K: u8> {
    /// Exactly the kind's width (the records are cut with `chunks_exact`).
    record: &'r [u8],
}

macro_rules! read_number {
    ($method:ident, $visit:ident, $t:ty, $kind:ident) => {
        #[inline(always)]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PackError> {
            if K == Kind::$kind as u8 {
                visitor.$visit(<$t>::from_le_bytes(array(self.record)))
            } else {
                Err(other_than_the_number())
            }
        }
    };
}

/// The `Deserializer` methods of a reader of one number per record for the numbers (with `$read`)
/// and newtypes (looked through, a descriptor's excepted). Both number readers share them.
macro_rules! read_numbers_and_newtypes {
    ($read:ident) => {
        $read!(deserialize_i8, visit_i8, i8, I8);
        $read!(deserialize_i16, visit_i16, i16, I16);
        $read!(deserialize_i32, visit_i32, i32, I32);
        $read!(deserialize_i64, visit_i64, i64, I64);
        $read!(deserialize_i128, visit_i128, i128, I128);
        $read!(deserialize_u8, visit_u8, u8, U8);
        $read!(deserialize_u16, visit_u16, u16, U16);
        $read!(deserialize_u32, visit_u32, u32, U32);
        $read!(deserialize_u64, visit_u64, u64, U64);
        $read!(deserialize_u128, visit_u128, u128, U128);
        $read!(deserialize_f32, visit_f32, f32, F32);
        $read!(deserialize_f64, visit_f64, f64, F64);

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, PackError> {
            // A descriptor's index is left to the general path, as everything not a plain number.
            if name == crate::reduction::handle::FD_NEWTYPE_NAME {
                return Err(other_than_the_number());
            }
            visitor.visit_newtype_struct(self)
        }
    };
}

macro_rules! refuse_to_read {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, PackError> {
                Err(other_than_the_number())
            }
        )*
    };
}

impl<'de, const K: u8> Deserializer<'de> for NumberReader<'_, K> {
    type Error = PackError;

    fn is_human_readable(&self) -> bool {
        false
    }

    // As the general reader: `any` reads the number that is there.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PackError> {
        match Kind::from_byte(K) {
            Some(Kind::I8) => self.deserialize_i8(visitor),
            Some(Kind::I16) => self.deserialize_i16(visitor),
            Some(Kind::I32) => self.deserialize_i32(visitor),
            Some(Kind::I64) => self.deserialize_i64(visitor),
            Some(Kind::I128) => self.deserialize_i128(visitor),
            Some(Kind::U8) => self.deserialize_u8(visitor),
            Some(Kind::U16) => self.deserialize_u16(visitor),
            Some(Kind::U32) => self.deserialize_u32(visitor),
            Some(Kind::U64) => self.deserialize_u64(visitor),
            Some(Kind::U128) => self.deserialize_u128(visitor),
            Some(Kind::F32) => self.deserialize_f32(visitor),
            Some(Kind::F64) => self.deserialize_f64(visitor),
            Some(Kind::Bool | Kind::Char) | None => Err(other_than_the_number()),
        }
    }

    read_numbers_and_newtypes!(read_number);

    refuse_to_read! {
        deserialize_bool deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value, PackError> {
        Err(other_than_the_number())
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, PackError> {
        Err(other_than_the_number())
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, _: usize, _: V) -> Result<V::Value, PackError> {
        Err(other_than_the_number())
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, PackError> {
        Err(other_than_the_number())
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, PackError> {
        Err(other_than_the_number())
    }
}

/// A serializer that writes one number of kind `K` into `record`.
struct NumberWriter<'r, const K: u8> {
    /// Exactly the kind's width.
    record: &'r mut [u8],
}

/// The body of a `Serializer` that writes one number per record, with `$write` for the numbers: a
/// newtype is looked through (a descriptor's excepted), anything else is refused, to go back to
/// the general path. Both number writers (`NumberWriter`, `AnyNumberWriter`) are this body.
macro_rules! one_number_serializer {
    ($write:ident) => {
        type Ok = ();
        type Error = PackError;
        type SerializeSeq = Refused;
        type SerializeTuple = Refused;
        type SerializeTupleStruct = Refused;
        type SerializeTupleVariant = Refused;
        type SerializeMap = Refused;
        type SerializeStruct = Refused;
        type SerializeStructVariant = Refused;

        fn is_human_readable(&self) -> bool {
            false
        }

        $write!(serialize_i8, i8, I8);
        $write!(serialize_i16, i16, I16);
        $write!(serialize_i32, i32, I32);
        $write!(serialize_i64, i64, I64);
        $write!(serialize_i128, i128, I128);
        $write!(serialize_u8, u8, U8);
        $write!(serialize_u16, u16, U16);
        $write!(serialize_u32, u32, U32);
        $write!(serialize_u64, u64, U64);
        $write!(serialize_u128, u128, U128);
        $write!(serialize_f32, f32, F32);
        $write!(serialize_f64, f64, F64);

        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            name: &'static str,
            value: &T,
        ) -> Result<(), PackError> {
            // A descriptor travels with postcard (see the general writer).
            if name == crate::reduction::handle::FD_NEWTYPE_NAME {
                return Err(other_than_the_number());
            }
            value.serialize(self)
        }

        fn serialize_bool(self, _: bool) -> Result<(), PackError> {
            Err(other_than_the_number())
        }
        fn serialize_char(self, _: char) -> Result<(), PackError> {
            Err(other_than_the_number())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), PackError> {
            Err(other_than_the_number())
        }
        fn serialize_tuple(self, _: usize) -> Result<Refused, PackError> {
            Err(other_than_the_number())
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Refused, PackError> {
            Err(other_than_the_number())
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Refused, PackError> {
            Err(other_than_the_number())
        }

        refuse_what_no_record_holds!(other_than_the_number());
    };
}

macro_rules! write_number {
    ($method:ident, $t:ty, $kind:ident) => {
        #[inline(always)]
        fn $method(self, v: $t) -> Result<(), PackError> {
            if K == Kind::$kind as u8 {
                self.record.copy_from_slice(&v.to_le_bytes());
                Ok(())
            } else {
                Err(other_than_the_number())
            }
        }
    };
}

type Refused = ser::Impossible<(), PackError>;

impl<const K: u8> Serializer for NumberWriter<'_, K> {
    one_number_serializer!(write_number);
}

/// The kind of a shape of one number (not `bool` or `char`, whose bytes need checking).
fn single_number(shape: &Shape) -> Option<Kind> {
    match (shape.len, shape.kind(0)) {
        (1, Some(Kind::Bool | Kind::Char)) => None,
        (1, kind) => kind,
        _ => None,
    }
}

/// The loop of a chunk of one-number values mapped to one-number values (a worker running a
/// `map` over numbers): reads each value of `items` as `A`, maps it with `f` and writes the result
/// as the next record of `results`, while both sequences are one-number records (`results` has
/// learned its shape from its first value) and every value takes that path. Where it stops, both
/// are as the general path would have left them after the values it handled; the value it stopped
/// at is the general path's to handle: `Ok(None)` when its argument is not read yet (or all were
/// read), `Ok(Some(result))` when `f` ran and its result is not a record of this fast path (to be
/// pushed by the caller), `Err` when `f` failed on it (its argument read, nothing written).
///
/// Like the rest of this module it only accelerates: a value that asks for anything but the one
/// number is left to the general path, which decides.
pub(crate) fn map_numbers<'a, A, R, E>(
    items: &mut SeqReader<'a>,
    results: &mut SeqWriter<'_>,
    mut f: impl FnMut(A) -> Result<R, E>,
) -> Result<Option<R>, E>
where
    A: de::Deserialize<'a>,
    R: Serialize,
{
    let (Form::Records(args), Form::Records(values)) = (&items.form, &results.form) else { return Ok(None) };
    let (Some(in_kind), Some(out_kind)) = (single_number(args), single_number(values)) else { return Ok(None) };
    let n = items.left;
    if results.count.checked_sub(results.written) != Some(n) {
        return Ok(None);
    }
    let (in_width, out_width) = (in_kind.width(), out_kind.width());
    let records: &'a [u8] = items.rest;
    let (mut read, mut written) = (0, 0);
    let mut stop = None;
    let mut block = [0u8; BLOCK];
    let per_block = BLOCK / out_width;
    for group in records.chunks(per_block * in_width) {
        let mut filled = 0;
        for (record, slot) in group.chunks_exact(in_width).zip(block.chunks_exact_mut(out_width)) {
            let Ok(item) = A::deserialize(AnyNumberReader { kind: in_kind, record }) else {
                stop = Some(Ok(None));
                break;
            };
            read += 1;
            match f(item) {
                Ok(value) if value.serialize(AnyNumberWriter { kind: out_kind, record: slot }).is_ok() => {
                    filled += out_width;
                }
                Ok(value) => {
                    stop = Some(Ok(Some(value)));
                    break;
                }
                Err(e) => {
                    stop = Some(Err(e));
                    break;
                }
            }
        }
        results.out.extend_from_slice(&block[..filled]);
        written += filled / out_width;
        if stop.is_some() {
            break;
        }
    }
    results.written += written;
    items.rest = &records[read * in_width..];
    items.left -= read;
    stop.unwrap_or(Ok(None))
}

/// A deserializer over one record holding one number of kind `kind` (known at run time: one
/// loop serves every kind), or a tuple, tuple struct or struct of that one number.
struct AnyNumberReader<'r> {
    kind: Kind,
    /// Exactly the kind's width.
    record: &'r [u8],
}

macro_rules! read_any_number {
    ($method:ident, $visit:ident, $t:ty, $kind:ident) => {
        #[inline(always)]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PackError> {
            match (self.kind, self.record.first_chunk()) {
                (Kind::$kind, Some(bytes)) => visitor.$visit(<$t>::from_le_bytes(*bytes)),
                _ => Err(other_than_the_number()),
            }
        }
    };
}

impl<'de> Deserializer<'de> for AnyNumberReader<'_> {
    type Error = PackError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PackError> {
        match self.kind {
            Kind::I8 => self.deserialize_i8(visitor),
            Kind::I16 => self.deserialize_i16(visitor),
            Kind::I32 => self.deserialize_i32(visitor),
            Kind::I64 => self.deserialize_i64(visitor),
            Kind::I128 => self.deserialize_i128(visitor),
            Kind::U8 => self.deserialize_u8(visitor),
            Kind::U16 => self.deserialize_u16(visitor),
            Kind::U32 => self.deserialize_u32(visitor),
            Kind::U64 => self.deserialize_u64(visitor),
            Kind::U128 => self.deserialize_u128(visitor),
            Kind::F32 => self.deserialize_f32(visitor),
            Kind::F64 => self.deserialize_f64(visitor),
            Kind::Bool | Kind::Char => Err(other_than_the_number()),
        }
    }

    read_numbers_and_newtypes!(read_any_number);

    // A task's arguments are a tuple: `(x,)` for a `map`.
    #[inline(always)]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, PackError> {
        match len {
            1 => visitor.visit_seq(TheNumber(Some(self))),
            _ => Err(other_than_the_number()),
        }
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, PackError> {
        self.deserialize_tuple(len, visitor)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PackError> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    refuse_to_read! {
        deserialize_bool deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value, PackError> {
        Err(other_than_the_number())
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, PackError> {
        Err(other_than_the_number())
    }
}

/// The one element of a tuple (or struct) around the number: given once, then no more.
struct TheNumber<'r>(Option<AnyNumberReader<'r>>);

impl<'de> de::SeqAccess<'de> for TheNumber<'_> {
    type Error = PackError;

    #[inline(always)]
    fn next_element_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, PackError> {
        match self.0.take() {
            Some(reader) => seed.deserialize(reader).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(usize::from(self.0.is_some()))
    }
}

/// A serializer that writes one number of kind `kind` (known at run time) into `record`.
struct AnyNumberWriter<'r> {
    kind: Kind,
    /// Exactly the kind's width.
    record: &'r mut [u8],
}

macro_rules! write_any_number {
    ($method:ident, $t:ty, $kind:ident) => {
        #[inline(always)]
        fn $method(self, v: $t) -> Result<(), PackError> {
            match (self.kind, self.record.first_chunk_mut()) {
                (Kind::$kind, Some(bytes)) => {
                    *bytes = v.to_le_bytes();
                    Ok(())
                }
                _ => Err(other_than_the_number()),
            }
        }
    };
}

impl Serializer for AnyNumberWriter<'_> {
    one_number_serializer!(write_any_number);
}
