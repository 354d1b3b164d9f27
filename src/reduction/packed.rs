//! Packed sequences: how a pool moves a chunk of values (a chunk's arguments to a worker, its
//! results back), as fixed-width records when the values allow it and as postcard otherwise.
//!
//! ```text
//! sequence := POSTCARD count:varint value*            postcard's own encoding of a slice
//!           | RECORDS  n:u8 kind[n] count:varint record*   every value the same n primitives,
//!                                                          each little-endian at its full width
//! ```
//!
//! Postcard writes an integer as a varint, one byte at a time: 7 ns per `u64` to encode and
//! 2.5 ns to decode on the 2-core machine of `bench/README.md`, where a copy costs 0.7 ns. A chunk of
//! a `map` over numbers is thousands of them, so a value whose encoding is nothing but a fixed
//! sequence of primitives (a number, a `bool`, a `char`; a tuple, tuple struct, struct or newtype
//! of them) travels as a *record*: the primitives at their full width, with the sequence's
//! *shape* (the primitive kinds of one value, at most [`MAX_SHAPE`]) written once up front.
//!
//! Which form a sequence takes is decided by the values, not by their type: the first value's
//! serialization is watched (serde offers no way to ask a type), and every later value must make
//! the very same primitive calls. Anything else (a string, an `Option`, a sequence, an enum, a
//! descriptor) makes the sequence postcard, as a whole. The form is in the sequence's first byte,
//! so the reader never guesses.
//!
//! Sequences whose records are one number each (the commonest chunk: a `map` over numbers) are
//! encoded and decoded in a loop made for that kind ([`numbers`]): the same bytes, without the
//! per-primitive bookkeeping of a general record; anything that loop does not expect hands the
//! sequence back to the general path. A worker maps such a chunk to such results in one loop as
//! well ([`map_numbers`]).
//!
//! Values are still checked on arrival. A record sequence's length must be exactly `count`
//! records; each value is deserialized by its own type's `Deserialize`, which must ask for exactly
//! the shape's kinds in order (a type that asks for something else is an error, not a
//! reinterpretation); a `bool` must be 0 or 1 and a `char` a Unicode scalar value. A lying count
//! cannot make the reader allocate: it reserves no more than the bytes can hold.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{self, Serialize, Serializer};

/// The `Serializer` methods that a record's writers refuse alike, for what no record holds
/// (strings, bytes, options, units, variants, sequences, maps): each returns `Err($refuse)`.
macro_rules! refuse_what_no_record_holds {
    ($refuse:expr) => {
        fn serialize_str(self, _: &str) -> Result<(), PackError> {
            Err($refuse)
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<(), PackError> {
            Err($refuse)
        }
        fn serialize_none(self) -> Result<(), PackError> {
            Err($refuse)
        }
        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), PackError> {
            Err($refuse)
        }
        fn serialize_unit(self) -> Result<(), PackError> {
            Err($refuse)
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), PackError> {
            Err($refuse)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), PackError> {
            Err($refuse)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, PackError> {
            Err($refuse)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, PackError> {
            Err($refuse)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, PackError> {
            Err($refuse)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, PackError> {
            Err($refuse)
        }
        fn collect_str<T: ::std::fmt::Display + ?Sized>(self, _: &T) -> Result<(), PackError> {
            Err($refuse)
        }
    };
}

mod numbers;

pub(crate) use numbers::map_numbers;

/// The first byte of a postcard sequence.
const POSTCARD: u8 = 0;
/// The first byte of a record sequence.
const RECORDS: u8 = 1;
/// Most bytes a writer reserves ahead of the records it was told will come.
const RESERVE_LIMIT: usize = 64 << 20;
/// Most primitives in one record.
pub(crate) const MAX_SHAPE: usize = 16;

/// Why a sequence does not encode or decode (kept as text: callers wrap it in their own error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackError(pub(crate) String);

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PackError {}

impl ser::Error for PackError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        PackError(msg.to_string())
    }
}

impl de::Error for PackError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        PackError(msg.to_string())
    }
}

impl From<postcard::Error> for PackError {
    fn from(e: postcard::Error) -> Self {
        PackError(super::postcard_detail(e))
    }
}

fn pack_error(message: impl Into<String>) -> PackError {
    PackError(message.into())
}

/// The primitive kinds a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Bool = 1,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        const KINDS: [Kind; 14] = [
            Kind::Bool,
            Kind::I8,
            Kind::I16,
            Kind::I32,
            Kind::I64,
            Kind::I128,
            Kind::U8,
            Kind::U16,
            Kind::U32,
            Kind::U64,
            Kind::U128,
            Kind::F32,
            Kind::F64,
            Kind::Char,
        ];
        KINDS.get(usize::from(byte).checked_sub(1)?).copied()
    }

    #[inline]
    fn width(self) -> usize {
        match self {
            Kind::Bool | Kind::I8 | Kind::U8 => 1,
            Kind::I16 | Kind::U16 => 2,
            Kind::I32 | Kind::U32 | Kind::F32 | Kind::Char => 4,
            Kind::I64 | Kind::U64 | Kind::F64 => 8,
            Kind::I128 | Kind::U128 => 16,
        }
    }
}

/// The kinds of one record, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// Valid kinds (see [`Kind::from_byte`]) up to `len`, zero after.
    kinds: [u8; MAX_SHAPE],
    len: usize,
    /// Bytes of one record (kept: the readers and writers ask once per value).
    width: usize,
}

impl Shape {
    const EMPTY: Shape = Shape { kinds: [0; MAX_SHAPE], len: 0, width: 0 };

    /// Appends a kind; `false` when the shape is full.
    fn push(&mut self, kind: Kind) -> bool {
        if self.len == MAX_SHAPE {
            return false;
        }
        self.kinds[self.len] = kind as u8;
        self.len += 1;
        self.width += kind.width();
        true
    }

    fn width(&self) -> usize {
        self.width
    }

    fn kind(&self, at: usize) -> Option<Kind> {
        self.kinds[..self.len].get(at).copied().and_then(Kind::from_byte)
    }

    /// Whether primitive `at` is of `kind` (the hot check of every primitive read or written:
    /// a byte compare; kinds past `len` are zero, which no kind is).
    #[inline(always)]
    fn is(&self, at: usize, kind: Kind) -> bool {
        self.kinds.get(at) == Some(&(kind as u8))
    }
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Result<u64, PackError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or_else(|| pack_error("a sequence ends inside its count"))?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(pack_error("a sequence's count is not a varint"))
}

/// Appends the encoding of `items` to `out` (records when they allow it, see the module doc). On
/// error `out` is as it was.
///
/// # Errors
///
/// A value's `Serialize` failed (as postcard reports it).
#[cfg(test)]
pub(crate) fn encode_slice<T: Serialize>(items: &[T], out: &mut Vec<u8>) -> Result<(), PackError> {
    encode_slice_then(items, out, || {})
}

/// As `encode_slice`, calling `falling_back` before the values are encoded again as postcard
/// (what their `Serialize` impls did during the attempt at records, such as descriptors they
/// registered, is to be undone there).
pub(crate) fn encode_slice_then<T: Serialize>(
    items: &[T],
    out: &mut Vec<u8>,
    falling_back: impl FnOnce(),
) -> Result<(), PackError> {
    let start = out.len();
    if let Some(first) = items.first() {
        let mut writer = SeqWriter::new(out, items.len());
        match writer.try_records(first) {
            Ok(true) if writer.encode_rest_as_numbers(&items[1..]) => return Ok(()),
            Ok(true) => {
                let mut ok = true;
                for item in &items[1..] {
                    if writer.write_record(item).is_err() {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    return Ok(());
                }
            }
            Ok(false) => {}
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
        out.truncate(start);
        falling_back();
    }
    out.push(POSTCARD);
    let tail = std::mem::take(out);
    match postcard::to_extend(items, tail) {
        Ok(extended) => {
            *out = extended;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
    .inspect_err(|_| out.truncate(start))
}

/// Writes a sequence of a known number of values, one at a time (a worker encoding each result as
/// its task returns it): records as long as the values allow, postcard from the first that does
/// not (the records written so far are rewritten as postcard, which encodes the same primitives
/// in the same order).
pub(crate) struct SeqWriter<'o> {
    out: &'o mut Vec<u8>,
    /// Where the sequence starts in `out`.
    start: usize,
    count: usize,
    written: usize,
    form: Form,
}

#[derive(Debug, Clone, Copy)]
enum Form {
    /// No value yet.
    Open,
    Postcard,
    Records(Shape),
}

impl<'o> SeqWriter<'o> {
    /// A sequence of `count` values appended to `out`.
    pub(crate) fn new(out: &'o mut Vec<u8>, count: usize) -> Self {
        let start = out.len();
        SeqWriter { out, start, count, written: 0, form: Form::Open }
    }

    /// Appends `value`.
    ///
    /// # Errors
    ///
    /// Its `Serialize` failed, or more values than announced.
    #[inline(always)]
    pub(crate) fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PackError> {
        // The hot case, inlined into the caller's loop: one more record of the shape.
        if self.written < self.count && matches!(self.form, Form::Records(_)) {
            return match self.write_record(value) {
                Ok(()) => Ok(()),
                Err(_) => self.push_after_another_shape(value),
            };
        }
        self.push_first_or_postcard(value)
    }

    /// `value` is not a record of the sequence's shape: the sequence becomes postcard.
    #[inline(never)]
    fn push_after_another_shape<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PackError> {
        self.rewrite_as_postcard()?;
        self.write_postcard(value)
    }

    /// Every push but one more record: the first value, one too many, or a postcard sequence.
    #[inline(never)]
    fn push_first_or_postcard<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PackError> {
        if self.written == self.count {
            return Err(pack_error(format!("a sequence of {} values got one more", self.count)));
        }
        match self.form {
            Form::Open => {
                if !self.try_records(value)? {
                    self.begin_postcard();
                    self.write_postcard(value)?;
                }
                Ok(())
            }
            Form::Records(_) => self.push_after_another_shape(value),
            Form::Postcard => self.write_postcard(value),
        }
    }

    /// Ends the sequence.
    ///
    /// # Errors
    ///
    /// Fewer values than announced.
    pub(crate) fn finish(mut self) -> Result<(), PackError> {
        if self.written != self.count {
            return Err(pack_error(format!("a sequence of {} values got {}", self.count, self.written)));
        }
        if matches!(self.form, Form::Open) {
            self.begin_postcard();
        }
        Ok(())
    }

    /// Starts the sequence as records if `first` is one: `Ok(false)` if it is not (nothing
    /// written).
    fn try_records<T: Serialize + ?Sized>(&mut self, first: &T) -> Result<bool, PackError> {
        let mut shape = Shape::EMPTY;
        let at = self.out.len();
        let learned = first.serialize(&mut RecordWriter { out: self.out, shape: &mut shape, at: 0, learn: true });
        if learned.is_err() || shape.len == 0 {
            self.out.truncate(at);
            return Ok(false);
        }
        // The header goes before the value just written.
        let value_len = self.out.len() - at;
        self.out.push(RECORDS);
        self.out.push(shape.len as u8);
        self.out.extend_from_slice(&shape.kinds[..shape.len]);
        push_varint(self.out, self.count as u64);
        self.out[at..].rotate_left(value_len);
        // Room for every record at once: no growth (copy, fresh pages) while the values come. At
        // most RESERVE_LIMIT: `count` can come from a peer (a worker writes as many results as
        // the arguments' sequence announces), and past that the vector grows as it is filled.
        let records = self.count.saturating_sub(1).min(RESERVE_LIMIT / shape.width().max(1));
        self.out.reserve(records * shape.width());
        self.form = Form::Records(shape);
        self.written = 1;
        Ok(true)
    }

    /// Appends `rest` (all values after the first) on the fast path of one-number records (see
    /// [`numbers`]): `false`, nothing written, where that path does not apply.
    fn encode_rest_as_numbers<T: Serialize>(&mut self, rest: &[T]) -> bool {
        let Form::Records(shape) = &self.form else { return false };
        let single = (shape.len == 1).then(|| shape.kind(0)).flatten();
        match single {
            Some(kind) if self.written + rest.len() == self.count && numbers::encode(kind, rest, self.out) => {
                self.written = self.count;
                true
            }
            _ => false,
        }
    }

    /// Appends one more record: `Err` (nothing written) if `value` is not one of this shape.
    #[inline(always)]
    fn write_record<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PackError> {
        // The shape is borrowed, not copied: this runs once per value.
        let Form::Records(shape) = &mut self.form else {
            return Err(pack_error("not a record sequence"));
        };
        let at = self.out.len();
        let mut writer = RecordWriter { out: &mut *self.out, shape, at: 0, learn: false };
        let written = value.serialize(&mut writer);
        let complete = writer.at == writer.shape.len;
        if written.is_err() || !complete {
            self.out.truncate(at);
            return Err(pack_error("a value of another shape"));
        }
        self.written += 1;
        Ok(())
    }

    fn begin_postcard(&mut self) {
        self.out.push(POSTCARD);
        push_varint(self.out, self.count as u64);
        self.form = Form::Postcard;
    }

    fn write_postcard<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PackError> {
        let at = self.out.len();
        let tail = std::mem::take(self.out);
        match postcard::to_extend(value, tail) {
            Ok(extended) => *self.out = extended,
            Err(e) => {
                // `to_extend` consumed the buffer: only an allocation failure loses it, and then
                // the sequence fails as a whole.
                self.out.truncate(at);
                return Err(e.into());
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Rewrites the records written so far as postcard.
    fn rewrite_as_postcard(&mut self) -> Result<(), PackError> {
        let Form::Records(shape) = self.form else {
            return Err(pack_error("not a record sequence"));
        };
        // The header announces every value; only `written` records follow it so far.
        let mut header = Vec::with_capacity(2 + MAX_SHAPE + 10);
        header.extend_from_slice(&[RECORDS, shape.len as u8]);
        header.extend_from_slice(&shape.kinds[..shape.len]);
        push_varint(&mut header, self.count as u64);
        let records: Vec<u8> = self.out[self.start + header.len()..].to_vec();
        if records.len() != self.written * shape.width() {
            return Err(pack_error("a record sequence cut short"));
        }
        self.out.truncate(self.start);
        self.begin_postcard();
        for record in records.chunks_exact(shape.width()) {
            transcode_record(record, &shape, self.out)?;
        }
        Ok(())
    }
}

/// Appends the postcard encoding of a record's primitives.
fn transcode_record(mut record: &[u8], shape: &Shape, out: &mut Vec<u8>) -> Result<(), PackError> {
    for at in 0..shape.len {
        let kind = shape.kind(at).ok_or_else(|| pack_error("a record of an unknown kind"))?;
        let (bytes, rest) = record.split_at(kind.width());
        record = rest;
        let tail = std::mem::take(out);
        *out = match kind {
            Kind::Bool => postcard::to_extend(&(bytes[0] != 0), tail),
            Kind::I8 => postcard::to_extend(&(bytes[0] as i8), tail),
            Kind::U8 => postcard::to_extend(&bytes[0], tail),
            Kind::I16 => postcard::to_extend(&i16::from_le_bytes(array(bytes)), tail),
            Kind::U16 => postcard::to_extend(&u16::from_le_bytes(array(bytes)), tail),
            Kind::I32 => postcard::to_extend(&i32::from_le_bytes(array(bytes)), tail),
            Kind::U32 => postcard::to_extend(&u32::from_le_bytes(array(bytes)), tail),
            Kind::F32 => postcard::to_extend(&f32::from_le_bytes(array(bytes)), tail),
            Kind::Char => {
                let c = char::from_u32(u32::from_le_bytes(array(bytes))).unwrap_or(char::REPLACEMENT_CHARACTER);
                postcard::to_extend(&c, tail)
            }
            Kind::I64 => postcard::to_extend(&i64::from_le_bytes(array(bytes)), tail),
            Kind::U64 => postcard::to_extend(&u64::from_le_bytes(array(bytes)), tail),
            Kind::F64 => postcard::to_extend(&f64::from_le_bytes(array(bytes)), tail),
            Kind::I128 => postcard::to_extend(&i128::from_le_bytes(array(bytes)), tail),
            Kind::U128 => postcard::to_extend(&u128::from_le_bytes(array(bytes)), tail),
        }?;
    }
    Ok(())
}

/// The first `N` bytes of `bytes` (which the callers size by the kind's width).
#[inline]
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0u8; N];
    let n = bytes.len().min(N);
    array[..n].copy_from_slice(&bytes[..n]);
    array
}

/// Reads a sequence value by value.
#[derive(Debug)]
pub(crate) struct SeqReader<'a> {
    rest: &'a [u8],
    left: usize,
    form: Form,
}

impl<'a> SeqReader<'a> {
    /// Reads the header of the sequence in `bytes`.
    ///
    /// # Errors
    ///
    /// Not a sequence of this module, or a record sequence whose length is not its count's.
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Self, PackError> {
        let (&form, mut rest) = bytes.split_first().ok_or_else(|| pack_error("an empty sequence"))?;
        let form = match form {
            POSTCARD => Form::Postcard,
            RECORDS => {
                let (&len, tail) = rest.split_first().ok_or_else(|| pack_error("a record sequence without a shape"))?;
                let len = usize::from(len);
                if len == 0 || len > MAX_SHAPE || tail.len() < len {
                    return Err(pack_error(format!("a record shape of {len} kinds")));
                }
                let mut shape = Shape::EMPTY;
                for &byte in &tail[..len] {
                    let kind =
                        Kind::from_byte(byte).ok_or_else(|| pack_error("a record shape with an unknown kind"))?;
                    shape.push(kind);
                }
                rest = &tail[len..];
                Form::Records(shape)
            }
            other => return Err(pack_error(format!("a sequence of unknown form {other}"))),
        };
        let count = take_varint(&mut rest)?;
        let left = usize::try_from(count).map_err(|_| pack_error(format!("a sequence of {count} values")))?;
        if let Form::Records(shape) = &form {
            let expected = left.checked_mul(shape.width());
            if expected != Some(rest.len()) {
                return Err(pack_error(format!(
                    "a record sequence of {left} values of {} bytes holds {} bytes",
                    shape.width(),
                    rest.len()
                )));
            }
        }
        Ok(SeqReader { rest, left, form })
    }

    /// Values not yet read.
    pub(crate) fn len(&self) -> usize {
        self.left
    }

    /// The next value, `None` after the last.
    ///
    /// # Errors
    ///
    /// The value does not decode as `T`.
    #[inline(always)]
    pub(crate) fn next<T: de::Deserialize<'a>>(&mut self) -> Option<Result<T, PackError>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The shape is borrowed, not copied: this runs once per value, inlined into the caller's
        // loop.
        Some(match &self.form {
            Form::Records(shape) => {
                let (record, rest) = self.rest.split_at(shape.width());
                self.rest = rest;
                let mut reader = RecordReader { record, shape, at: 0 };
                T::deserialize(&mut reader).and_then(|value| match reader.at == shape.len {
                    true => Ok(value),
                    false => Err(pack_error("a value that reads only part of its record")),
                })
            }
            _ => self.next_postcard(),
        })
    }

    #[inline(never)]
    fn next_postcard<T: de::Deserialize<'a>>(&mut self) -> Result<T, PackError> {
        match postcard::take_from_bytes::<T>(self.rest) {
            Ok((value, rest)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(e) => {
                self.left = 0;
                Err(e.into())
            }
        }
    }

    /// Checks that the sequence was read to its end (no trailing bytes).
    ///
    /// # Errors
    ///
    /// Values or bytes left.
    pub(crate) fn finish(&self) -> Result<(), PackError> {
        match self.left == 0 && self.rest.is_empty() {
            true => Ok(()),
            false => Err(pack_error(format!("{} values and {} bytes left in a sequence", self.left, self.rest.len()))),
        }
    }
}

/// Decodes a whole sequence, appending its values to `values`; returns how many.
///
/// # Errors
///
/// As [`SeqReader`]; `values` then holds what decoded before the error.
pub(crate) fn decode_into<T: de::DeserializeOwned>(bytes: &[u8], values: &mut Vec<T>) -> Result<usize, PackError> {
    decode_with(bytes, values, numbers::decode)
}

/// [`decode_into`] for a `T` known by type (`'static`): a sequence of plain numbers decoded into
/// a vector of that very number type is converted whole (see [`numbers::decode_exact`]).
///
/// # Errors
///
/// As [`decode_into`].
pub(crate) fn decode_into_known<T: de::DeserializeOwned + 'static>(
    bytes: &[u8],
    values: &mut Vec<T>,
) -> Result<usize, PackError> {
    decode_with(bytes, values, |kind, records, values| {
        numbers::decode_exact(kind, records, values) || numbers::decode(kind, records, values)
    })
}

/// [`decode_into`], with `numbers` for a sequence whose records are one number each (`false`:
/// not taken, and `values` as it was; the general reader then runs).
fn decode_with<T: de::DeserializeOwned>(
    bytes: &[u8],
    values: &mut Vec<T>,
    numbers: impl FnOnce(Kind, &[u8], &mut Vec<T>) -> bool,
) -> Result<usize, PackError> {
    let mut reader = SeqReader::new(bytes)?;
    let count = reader.len();
    if let Form::Records(shape) = &reader.form
        && let (1, Some(kind)) = (shape.len, shape.kind(0))
        && numbers(kind, reader.rest, values)
    {
        return Ok(count);
    }
    // Never more than the bytes could hold (one byte per value, but zero-sized values).
    values.reserve(count.min(bytes.len()));
    while let Some(value) = reader.next::<T>() {
        values.push(value?);
    }
    reader.finish()?;
    Ok(count)
}

/// A serializer that writes one record (and, with `learn`, records its shape).
struct RecordWriter<'a> {
    out: &'a mut Vec<u8>,
    shape: &'a mut Shape,
    /// Primitives written so far.
    at: usize,
    learn: bool,
}

impl RecordWriter<'_> {
    #[inline(always)]
    fn primitive<const N: usize>(&mut self, kind: Kind, bytes: [u8; N]) -> Result<(), PackError> {
        if self.learn {
            if !self.shape.push(kind) {
                return Err(not_a_record());
            }
        } else if !self.shape.is(self.at, kind) {
            return Err(not_a_record());
        }
        self.at += 1;
        // A constant length: a store, not a call to `memcpy`.
        self.out.extend_from_slice(&bytes);
        Ok(())
    }
}

fn not_a_record() -> PackError {
    pack_error("not a record")
}

impl Serializer for &mut RecordWriter<'_> {
    type Ok = ();
    type Error = PackError;
    type SerializeSeq = ser::Impossible<(), PackError>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = ser::Impossible<(), PackError>;
    type SerializeMap = ser::Impossible<(), PackError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), PackError>;

    fn is_human_readable(&self) -> bool {
        false
    }
    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), PackError> {
        self.primitive(Kind::Bool, [u8::from(v)])
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), PackError> {
        self.primitive(Kind::I8, v.to_le_bytes())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), PackError> {
        self.primitive(Kind::I16, v.to_le_bytes())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), PackError> {
        self.primitive(Kind::I32, v.to_le_bytes())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), PackError> {
        self.primitive(Kind::I64, v.to_le_bytes())
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<(), PackError> {
        self.primitive(Kind::I128, v.to_le_bytes())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), PackError> {
        self.primitive(Kind::U8, [v])
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), PackError> {
        self.primitive(Kind::U16, v.to_le_bytes())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), PackError> {
        self.primitive(Kind::U32, v.to_le_bytes())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), PackError> {
        self.primitive(Kind::U64, v.to_le_bytes())
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<(), PackError> {
        self.primitive(Kind::U128, v.to_le_bytes())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), PackError> {
        self.primitive(Kind::F32, v.to_le_bytes())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), PackError> {
        self.primitive(Kind::F64, v.to_le_bytes())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), PackError> {
        self.primitive(Kind::Char, u32::from(v).to_le_bytes())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), PackError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<(), PackError> {
        // A descriptor is an index into the message's table: it travels with postcard.
        if name == super::handle::FD_NEWTYPE_NAME {
            return Err(not_a_record());
        }
        value.serialize(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, PackError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, PackError> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, PackError> {
        Ok(self)
    }
    refuse_what_no_record_holds!(not_a_record());
}

impl ser::SerializeTuple for &mut RecordWriter<'_> {
    type Ok = ();
    type Error = PackError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PackError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), PackError> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut RecordWriter<'_> {
    type Ok = ();
    type Error = PackError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PackError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), PackError> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut RecordWriter<'_> {
    type Ok = ();
    type Error = PackError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<(), PackError> {
        value.serialize(&mut **self)
    }
    fn skip_field(&mut self, _: &'static str) -> Result<(), PackError> {
        // A skipped field changes the shape from value to value: not a record.
        Err(not_a_record())
    }
    fn end(self) -> Result<(), PackError> {
        Ok(())
    }
}

/// A deserializer over one record.
struct RecordReader<'r> {
    record: &'r [u8],
    shape: &'r Shape,
    /// Primitives read so far.
    at: usize,
}

impl RecordReader<'_> {
    /// The next primitive, if it is of `kind`, as an array of its width.
    #[inline(always)]
    fn take_array<const N: usize>(&mut self, kind: Kind) -> Result<[u8; N], PackError> {
        if !self.shape.is(self.at, kind) {
            return Err(self.wrong_kind(kind));
        }
        // The sequence's reader cut the record to the shape's width, so the bytes are there.
        let Some((bytes, rest)) = self.record.split_first_chunk::<N>() else {
            return Err(pack_error("a record shorter than its shape"));
        };
        self.at += 1;
        self.record = rest;
        Ok(*bytes)
    }

    #[cold]
    fn wrong_kind(&self, kind: Kind) -> PackError {
        let found = self.shape.kind(self.at);
        pack_error(format!("a record holds {found:?} where the value reads {kind:?}"))
    }

    fn next_kind(&self) -> Result<Kind, PackError> {
        self.shape.kind(self.at).ok_or_else(|| pack_error("a value reads past its record"))
    }
}

macro_rules! read_primitive {
    ($method:ident, $visit:ident, $t:ty, $kind:expr) => {
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PackError> {
            visitor.$visit(<$t>::from_le_bytes(self.take_array($kind)?))
        }
    };
}

impl<'de> Deserializer<'de> for &mut RecordReader<'_> {
    type Error = PackError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PackError> {
        match self.next_kind()? {
            Kind::Bool => self.deserialize_bool(visitor),
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
            Kind::Char => self.deserialize_char(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PackError> {
        match self.take_array::<1>(Kind::Bool)? {
            [0] => visitor.visit_bool(false),
            [1] => visitor.visit_bool(true),
            other => Err(pack_error(format!("a bool of {other:?}"))),
        }
    }

    read_primitive!(deserialize_i8, visit_i8, i8, Kind::I8);
    read_primitive!(deserialize_i16, visit_i16, i16, Kind::I16);
    read_primitive!(deserialize_i32, visit_i32, i32, Kind::I32);
    read_primitive!(deserialize_i64, visit_i64, i64, Kind::I64);
    read_primitive!(deserialize_i128, visit_i128, i128, Kind::I128);
    read_primitive!(deserialize_u8, visit_u8, u8, Kind::U8);
    read_primitive!(deserialize_u16, visit_u16, u16, Kind::U16);
    read_primitive!(deserialize_u32, visit_u32, u32, Kind::U32);
    read_primitive!(deserialize_u64, visit_u64, u64, Kind::U64);
    read_primitive!(deserialize_u128, visit_u128, u128, Kind::U128);
    read_primitive!(deserialize_f32, visit_f32, f32, Kind::F32);
    read_primitive!(deserialize_f64, visit_f64, f64, Kind::F64);

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PackError> {
        let code = u32::from_le_bytes(self.take_array(Kind::Char)?);
        match char::from_u32(code) {
            Some(c) => visitor.visit_char(c),
            None => Err(pack_error(format!("a char of {code:#x}, not a Unicode scalar value"))),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, PackError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, PackError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, PackError> {
        visitor.visit_seq(Fields { reader: self, left: len })
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

    serde::forward_to_deserialize_any! {
        str string bytes byte_buf option unit seq map enum identifier ignored_any
    }
}

/// The fields of a tuple or struct inside a record.
struct Fields<'a, 'r> {
    reader: &'a mut RecordReader<'r>,
    left: usize,
}

impl<'de> SeqAccess<'de> for Fields<'_, '_> {
    type Error = PackError;

    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, PackError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    fn round_trip<T: Serialize + de::DeserializeOwned + PartialEq + fmt::Debug + 'static>(items: &[T]) -> u8 {
        let mut out = vec![0xaa];
        encode_slice(items, &mut out).unwrap();
        assert_eq!(out[0], 0xaa, "appends");
        let mut back = Vec::new();
        assert_eq!(decode_into::<T>(&out[1..], &mut back).unwrap(), items.len());
        assert_eq!(back, items);
        // The decoding that knows the type (whole conversions for plain numbers) agrees.
        let mut known = Vec::new();
        assert_eq!(decode_into_known::<T>(&out[1..], &mut known).unwrap(), items.len());
        assert_eq!(known, items);
        // The streaming writer makes the same bytes.
        let mut streamed = vec![0xaa];
        let mut writer = SeqWriter::new(&mut streamed, items.len());
        for item in items {
            writer.push(item).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(streamed, out);
        out[1]
    }

    #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
    struct Point {
        x: f64,
        y: f64,
        tag: char,
        on: bool,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
    struct Meters(u32);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Either {
        Number(u64),
        Text(String),
    }

    #[test]
    fn numbers_and_plain_records_travel_as_records() {
        assert_eq!(round_trip(&[1u64, 2, u64::MAX]), RECORDS);
        assert_eq!(round_trip(&[-1i8, 2, i8::MIN]), RECORDS);
        assert_eq!(round_trip(&[1.5f64, f64::INFINITY]), RECORDS);
        assert_eq!(round_trip(&[u128::MAX, 0]), RECORDS);
        assert_eq!(round_trip(&[(1u64,), (2,)]), RECORDS);
        assert_eq!(round_trip(&[(1u16, -2i64, 'x'), (3, 4, '\u{10ffff}')]), RECORDS);
        assert_eq!(round_trip(&[Point { x: 1.0, y: -2.0, tag: 'p', on: true }]), RECORDS);
        assert_eq!(round_trip(&[Meters(3), Meters(4)]), RECORDS);
        assert_eq!(round_trip(&[true, false]), RECORDS);
    }

    #[test]
    fn other_values_travel_as_postcard() {
        assert_eq!(round_trip::<u64>(&[]), POSTCARD);
        assert_eq!(round_trip(&[String::from("a"), String::new()]), POSTCARD);
        assert_eq!(round_trip(&[Some(1u8), None]), POSTCARD);
        assert_eq!(round_trip(&[vec![1u8], vec![]]), POSTCARD);
        assert_eq!(round_trip(&[(), ()]), POSTCARD);
        assert_eq!(round_trip(&[Either::Number(1), Either::Text("t".into())]), POSTCARD);
        assert_eq!(round_trip(&[[0u8; 17]]), POSTCARD, "more primitives than a shape holds");
    }

    /// A type whose encoding changes from value to value: the writer switches to postcard mid-way.
    #[derive(Debug, Clone, PartialEq)]
    struct Shifty(u32);

    impl Serialize for Shifty {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                0..100 => serializer.serialize_u32(self.0),
                _ => serializer.serialize_str(&self.0.to_string()),
            }
        }
    }

    impl<'de> Deserialize<'de> for Shifty {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Shifty;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a number")
                }
                fn visit_u32<E: de::Error>(self, v: u32) -> Result<Shifty, E> {
                    Ok(Shifty(v))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Shifty, E> {
                    v.parse().map(Shifty).map_err(E::custom)
                }
            }
            deserializer.deserialize_any(V)
        }
    }

    #[test]
    fn a_value_of_another_shape_turns_the_sequence_into_postcard() {
        let items = [Shifty(1), Shifty(2), Shifty(300), Shifty(4)];
        let mut out = Vec::new();
        encode_slice(&items, &mut out).unwrap();
        assert_eq!(out[0], POSTCARD);
        let mut streamed = Vec::new();
        let mut writer = SeqWriter::new(&mut streamed, items.len());
        for item in &items {
            writer.push(item).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(streamed, out, "records rewritten as postcard are postcard's bytes");
        assert_eq!(postcard::to_stdvec(&items.iter().map(|s| s.0).collect::<Vec<_>>()).unwrap()[..2], out[1..3]);
    }

    #[test]
    fn the_count_is_kept() {
        let mut out = Vec::new();
        let mut writer = SeqWriter::new(&mut out, 2);
        writer.push(&1u8).unwrap();
        assert!(writer.finish().is_err(), "fewer values than announced");
        let mut writer = SeqWriter::new(&mut out, 0);
        assert!(writer.push(&1u8).is_err(), "more values than announced");
    }

    #[test]
    fn one_number_records_take_the_fast_path_with_the_general_bytes() {
        // Every numeric kind, a newtype around one, and bit patterns that must survive.
        assert_eq!(round_trip(&[0u8, 7, u8::MAX]), RECORDS);
        assert_eq!(round_trip(&[i16::MIN, -1, 3]), RECORDS);
        assert_eq!(round_trip(&[u32::MAX, 0]), RECORDS);
        assert_eq!(round_trip(&[i64::MIN, i64::MAX]), RECORDS);
        assert_eq!(round_trip(&[u128::MAX, 1]), RECORDS);
        assert_eq!(round_trip(&[f32::MIN_POSITIVE, -0.0]), RECORDS);
        assert_eq!(round_trip(&[Meters(3), Meters(4)]), RECORDS);
        let nan = f64::from_bits(0x7ff8_dead_beef_0001);
        let mut out = Vec::new();
        encode_slice(&[1.5f64, nan], &mut out).unwrap();
        let mut back = Vec::<f64>::new();
        decode_into(&out, &mut back).unwrap();
        assert_eq!(back[1].to_bits(), nan.to_bits());
        // A type that reads the number some other way gets the general reader's answer.
        let mut out = Vec::new();
        encode_slice(&[5u64, 6], &mut out).unwrap();
        let mut tuples = vec![(1u64,)];
        assert_eq!(decode_into::<(u64,)>(&out, &mut tuples).unwrap(), 2);
        assert_eq!(tuples, [(1,), (5,), (6,)], "appends after what was there");
        assert!(decode_into::<u32>(&out, &mut Vec::new()).is_err(), "another width is an error");
    }

    /// Knowing the type changes no answer: numbers of the vector's own type are converted
    /// whole (appended after what was there, NaN bits kept), and every other pairing of record
    /// and type gets the general reader's value or error.
    #[test]
    fn decoding_a_known_type_agrees_with_the_general_reader() {
        fn both<T: de::DeserializeOwned + PartialEq + fmt::Debug + Clone + 'static>(bytes: &[u8], before: &[T]) {
            let (mut general, mut known) = (before.to_vec(), before.to_vec());
            let a = decode_into::<T>(bytes, &mut general).map_err(|e| e.to_string());
            let b = decode_into_known::<T>(bytes, &mut known).map_err(|e| e.to_string());
            assert_eq!(a, b, "{}", std::any::type_name::<T>());
            if a.is_ok() {
                assert_eq!(general, known, "{}", std::any::type_name::<T>());
            }
        }
        let encoded = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            out
        };
        let u64s = encoded(&|out| encode_slice(&[5u64, u64::MAX, 0], out).unwrap());
        let u32s = encoded(&|out| encode_slice(&[7u32, u32::MAX], out).unwrap());
        let f64s = encoded(&|out| encode_slice(&[1.5f64, f64::from_bits(0x7ff8_dead_beef_0001)], out).unwrap());
        let i8s = encoded(&|out| encode_slice(&[-1i8, i8::MIN], out).unwrap());
        for bytes in [&u64s, &u32s, &f64s, &i8s] {
            both::<u64>(bytes, &[9]);
            both::<u32>(bytes, &[]);
            both::<i64>(bytes, &[]);
            both::<i8>(bytes, &[1]);
            both::<(u64,)>(bytes, &[]);
            both::<Meters>(bytes, &[]);
        }
        let mut back = vec![0.25f64];
        decode_into_known(&f64s, &mut back).unwrap();
        assert_eq!(back[0], 0.25);
        assert_eq!(back[2].to_bits(), 0x7ff8_dead_beef_0001);
    }

    #[test]
    fn a_value_that_stops_being_a_number_falls_back_to_postcard() {
        let items = [Either::Number(1), Either::Number(2), Either::Text("three".into())];
        assert_eq!(round_trip(&items), POSTCARD);
        // Numbers after the first that serialize as another kind.
        #[derive(Debug)]
        enum Mixed {
            Small(u8),
            Big(u64),
        }
        impl Serialize for Mixed {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    Mixed::Small(v) => s.serialize_u8(*v),
                    Mixed::Big(v) => s.serialize_u64(*v),
                }
            }
        }
        let mut out = Vec::new();
        encode_slice(&[Mixed::Small(1), Mixed::Big(300)], &mut out).unwrap();
        assert_eq!(out, [POSTCARD, 2, 1, 0xac, 0x02], "postcard's varints of 1 and 300");
    }

    #[test]
    fn a_huge_announced_count_reserves_no_more_than_the_limit() {
        // A worker writes as many results as the arguments' sequence announces; a postcard
        // sequence of unit values holds no bytes per value, so nothing bounds its count.
        let mut bytes = vec![POSTCARD];
        push_varint(&mut bytes, u64::MAX >> 1);
        let reader = SeqReader::new(&bytes).unwrap();
        let mut out = Vec::new();
        let mut writer = SeqWriter::new(&mut out, reader.len());
        writer.push(&7u64).unwrap();
        writer.push(&8u64).unwrap();
        assert!(out.capacity() <= RESERVE_LIMIT + 64, "reserved {} bytes", out.capacity());
    }

    #[test]
    fn a_value_of_another_type_is_an_error_not_a_reinterpretation() {
        let mut out = Vec::new();
        encode_slice(&[7u64], &mut out).unwrap();
        assert!(decode_into::<i64>(&out, &mut Vec::new()).is_err());
        assert!(decode_into::<(u32, u32)>(&out, &mut Vec::new()).is_err());
        assert!(decode_into::<f64>(&out, &mut Vec::new()).is_err());
        assert_eq!(decode_into::<(u64,)>(&out, &mut Vec::new()).unwrap(), 1, "a 1-tuple is its element");
        let mut out = Vec::new();
        encode_slice(&[(1u32, 2u32)], &mut out).unwrap();
        assert!(decode_into::<u32>(&out, &mut Vec::new()).is_err(), "reads only part of the record");
    }

    #[test]
    fn bad_bools_chars_and_lengths_are_refused() {
        let header = |kind: Kind, count: u8| vec![RECORDS, 1, kind as u8, count];
        let mut bytes = header(Kind::Bool, 1);
        bytes.push(2);
        assert!(decode_into::<bool>(&bytes, &mut Vec::new()).is_err());
        let mut bytes = header(Kind::Char, 1);
        bytes.extend_from_slice(&0xd800u32.to_le_bytes());
        assert!(decode_into::<char>(&bytes, &mut Vec::new()).is_err());
        let mut bytes = header(Kind::U64, 2);
        bytes.extend_from_slice(&[0; 15]);
        assert!(SeqReader::new(&bytes).is_err(), "a length that is not count records");
        let bytes = [RECORDS, 1, Kind::U64 as u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(SeqReader::new(&bytes).is_err(), "a huge count is checked before anything is reserved");
    }

    #[test]
    fn garbage_never_panics() {
        let mut next = crate::test_support::xorshift(0x005e_ed0f_5eed);
        for _ in 0..50_000 {
            let len = (next() % 40) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = bytes.first_mut() {
                *first %= 3;
            }
            let _ = decode_into::<u64>(&bytes, &mut Vec::new());
            let _ = decode_into::<(u8, char, bool)>(&bytes, &mut Vec::new());
            let _ = decode_into::<Point>(&bytes, &mut Vec::new());
            let _ = decode_into::<String>(&bytes, &mut Vec::new());
        }
    }
}
