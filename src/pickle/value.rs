//! [`PickleValue`]: a Python value of any shape, as a pickle holds it, and the value types it is
//! made of ([`BigInt`], [`Date`], [`Time`], [`DateTime`], [`TimeDelta`], [`TimeZone`],
//! [`Object`]).

use std::fmt;

/// A Python value decoded from a pickle, or to be pickled: plain data, and the standard
/// library's value types that Python programs commonly send (`datetime`, `Decimal`, `UUID`,
/// `complex`, `bytearray`).
///
/// Containers keep their order as pickled (a dict's insertion order, a set's iteration order);
/// equality (`==`) ignores the order of sets' items and dicts' entries, as Python's does, but is
/// otherwise exact: `I64(1)` and `F64(1.0)` differ (Python's `1 == 1.0` holds; the manager's
/// server follows Python there).
///
/// `Display` writes Python's `repr()`:
///
/// ```
/// use multiproc::pickle::PickleValue;
///
/// let value = PickleValue::Tuple(vec![
///     PickleValue::from("a"),
///     PickleValue::Set(vec![PickleValue::from(1)]),
///     PickleValue::from(u128::MAX),
///     PickleValue::F64(1e100),
/// ]);
/// assert_eq!(value.to_string(), "('a', {1}, 340282366920938463463374607431768211455, 1e+100)");
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum PickleValue {
    /// `None`.
    #[default]
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An `int` that fits in 64 bits.
    I64(i64),
    /// An `int` that does not fit in 64 bits (decoding always gives [`I64`](Self::I64) when
    /// it fits).
    Int(BigInt),
    /// A `float`.
    F64(f64),
    /// A `complex`.
    Complex {
        /// The real part.
        re: f64,
        /// The imaginary part.
        im: f64,
    },
    /// A `str`.
    String(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// A `bytearray`.
    ByteArray(Vec<u8>),
    /// A `list`.
    List(Vec<PickleValue>),
    /// A `tuple`.
    Tuple(Vec<PickleValue>),
    /// A `set`, in the order pickled.
    Set(Vec<PickleValue>),
    /// A `frozenset`, in the order pickled.
    FrozenSet(Vec<PickleValue>),
    /// A `dict`, in insertion order.
    Dict(Vec<(PickleValue, PickleValue)>),
    /// A `datetime.date`.
    Date(Date),
    /// A `datetime.time`.
    Time(Time),
    /// A `datetime.datetime`.
    DateTime(DateTime),
    /// A `datetime.timedelta`.
    TimeDelta(TimeDelta),
    /// A `decimal.Decimal`, as `str()` writes it (`"1.50"`, `"-0"`, `"1E+3"`, `"NaN"`,
    /// `"-Infinity"`).
    Decimal(String),
    /// A `uuid.UUID`, as its 128-bit integer (`UUID.int`).
    Uuid(u128),
    /// An instance of another class, a class or a function, as the pickle describes it. Receiving
    /// never gives one (such values are refused with an error naming the class); build one to
    /// send a Python object this type has no variant for.
    Object(Box<Object>),
}

/// A Python object of a class [`PickleValue`] has no variant for, as a pickle rebuilds it: by
/// calling its class, or its class's `__new__`, then giving it its state.
///
/// ```
/// use multiproc::pickle::{Build, Object, PickleValue};
///
/// // fractions.Fraction(1, 3), which Python rebuilds as Fraction('1/3').
/// let third = Object::call("fractions.Fraction", vec![PickleValue::from("1/3")]);
/// assert_eq!(PickleValue::from(third).to_string(), "fractions.Fraction('1/3')");
/// # let _ = Build::Reference;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The class (or function), as `module.qualname`: `"fractions.Fraction"`,
    /// `"builtins.KeyError"`.
    pub class: String,
    /// How the object is made.
    pub build: Build,
    /// The state the object is given once made (the pickle's `BUILD`: `__setstate__(state)`, or
    /// an update of its `__dict__`), if any.
    pub state: Option<PickleValue>,
}

/// How a pickled [`Object`] is made.
#[derive(Debug, Clone, PartialEq)]
pub enum Build {
    /// The class or function itself, not an instance.
    Reference,
    /// `class(*args)` (the pickle's `REDUCE`).
    Call(Vec<PickleValue>),
    /// `class.__new__(class, *args)` (the pickle's `NEWOBJ`, how instances of plain classes are
    /// pickled).
    New(Vec<PickleValue>),
}

impl Object {
    /// The object `class(*args)`.
    pub fn call(class: impl Into<String>, args: Vec<PickleValue>) -> Object {
        Object { class: class.into(), build: Build::Call(args), state: None }
    }

    /// The name Python shows for the class: its qualified name without the module for
    /// built-ins (`KeyError`), `module.qualname` otherwise.
    pub fn short_class(&self) -> &str {
        self.class.strip_prefix("builtins.").unwrap_or(&self.class)
    }

    /// The arguments the object is made with (none for a reference).
    pub fn args(&self) -> &[PickleValue] {
        match &self.build {
            Build::Reference => &[],
            Build::Call(args) | Build::New(args) => args,
        }
    }
}

impl From<Object> for PickleValue {
    fn from(object: Object) -> PickleValue {
        PickleValue::Object(Box::new(object))
    }
}

/// An integer of any size (Python `int`), in two's complement, little-endian, in as few bytes as
/// hold it (the form of pickle's `LONG1`). Converts to and from Rust's integer types; `Display`
/// writes it in decimal.
///
/// ```
/// use multiproc::pickle::BigInt;
///
/// let big = BigInt::from(u128::MAX);
/// assert_eq!(big.to_string(), "340282366920938463463374607431768211455");
/// assert_eq!(u128::try_from(&big), Ok(u128::MAX));
/// assert!(i64::try_from(&big).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct BigInt {
    /// Two's complement, little-endian, minimal (empty for zero).
    bytes: Vec<u8>,
}

impl BigInt {
    /// The integer whose two's complement, little-endian bytes are `bytes` (pickle's `LONG1`
    /// and `LONG4` payload; empty is zero).
    pub fn from_le_bytes(bytes: &[u8]) -> BigInt {
        let mut bytes = bytes.to_vec();
        // Drop sign-extension bytes that do not change the value.
        while let [.., second, last] = bytes[..] {
            if (last == 0 && second & 0x80 == 0) || (last == 0xff && second & 0x80 != 0) {
                bytes.pop();
            } else {
                break;
            }
        }
        if bytes == [0] {
            bytes.clear();
        }
        BigInt { bytes }
    }

    /// The two's complement, little-endian bytes, as few as hold the value (empty for zero).
    pub fn to_le_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the integer is below zero.
    pub fn is_negative(&self) -> bool {
        self.bytes.last().is_some_and(|b| b & 0x80 != 0)
    }

    /// The integer as `i128`, if it fits.
    pub fn to_i128(&self) -> Option<i128> {
        if self.bytes.len() > 16 {
            return None;
        }
        let fill = if self.is_negative() { 0xff } else { 0 };
        let mut buf = [fill; 16];
        buf[..self.bytes.len()].copy_from_slice(&self.bytes);
        Some(i128::from_le_bytes(buf))
    }

    /// The integer as `u128`, if it fits.
    pub fn to_u128(&self) -> Option<u128> {
        if self.is_negative() {
            return None;
        }
        let bytes = match self.bytes.split_last() {
            Some((0, rest)) => rest,
            _ => &self.bytes[..],
        };
        if bytes.len() > 16 {
            return None;
        }
        let mut buf = [0u8; 16];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(u128::from_le_bytes(buf))
    }

    /// The absolute value as little-endian 32-bit limbs.
    fn magnitude(&self) -> Vec<u32> {
        let mut bytes = self.bytes.clone();
        if self.is_negative() {
            // Negate: invert and add one.
            let mut carry = true;
            for b in &mut bytes {
                *b = !*b;
                if carry {
                    let (sum, overflow) = b.overflowing_add(1);
                    *b = sum;
                    carry = overflow;
                }
            }
            bytes.push(0);
        }
        bytes.chunks(4).map(|c| c.iter().rev().fold(0u32, |n, &b| (n << 8) | u32::from(b))).collect()
    }

    fn from_magnitude(negative: bool, limbs: &[u32]) -> BigInt {
        let mut bytes: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
        bytes.push(0);
        if negative {
            let mut carry = true;
            for b in &mut bytes {
                *b = !*b;
                if carry {
                    let (sum, overflow) = b.overflowing_add(1);
                    *b = sum;
                    carry = overflow;
                }
            }
        }
        BigInt::from_le_bytes(&bytes)
    }

    /// Parses a decimal integer (an optional sign, then digits; `_` between digits is allowed, as
    /// in Python).
    pub fn parse_decimal(text: &str) -> Option<BigInt> {
        let text = text.trim();
        let (negative, digits) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
            return None;
        }
        let mut limbs: Vec<u32> = Vec::new();
        for c in digits.chars().filter(|&c| c != '_') {
            let digit = c.to_digit(10)?;
            let mut carry = u64::from(digit);
            for limb in &mut limbs {
                let next = u64::from(*limb) * 10 + carry;
                *limb = next as u32;
                carry = next >> 32;
            }
            if carry > 0 {
                limbs.push(carry as u32);
            }
        }
        Some(BigInt::from_magnitude(negative, &limbs))
    }

    /// The value as the nearest `f64` (infinite beyond its range).
    pub fn to_f64(&self) -> f64 {
        let magnitude = self.magnitude().iter().rev().fold(0f64, |x, &limb| x * 4_294_967_296.0 + f64::from(limb));
        if self.is_negative() { -magnitude } else { magnitude }
    }
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(small) = self.to_i128() {
            return write!(f, "{small}");
        }
        let mut limbs = self.magnitude();
        let mut chunks = Vec::new();
        while limbs.iter().any(|&l| l != 0) {
            let mut remainder = 0u64;
            for limb in limbs.iter_mut().rev() {
                let value = (remainder << 32) | u64::from(*limb);
                *limb = (value / 1_000_000_000) as u32;
                remainder = value % 1_000_000_000;
            }
            chunks.push(remainder as u32);
            while limbs.last() == Some(&0) {
                limbs.pop();
            }
        }
        if self.is_negative() {
            f.write_str("-")?;
        }
        let mut chunks = chunks.iter().rev();
        write!(f, "{}", chunks.next().copied().unwrap_or(0))?;
        for chunk in chunks {
            write!(f, "{chunk:09}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BigInt({self})")
    }
}

impl From<i128> for BigInt {
    fn from(value: i128) -> BigInt {
        BigInt::from_le_bytes(&value.to_le_bytes())
    }
}

impl From<u128> for BigInt {
    fn from(value: u128) -> BigInt {
        let mut bytes = value.to_le_bytes().to_vec();
        bytes.push(0);
        BigInt::from_le_bytes(&bytes)
    }
}

impl From<i64> for BigInt {
    fn from(value: i64) -> BigInt {
        BigInt::from(i128::from(value))
    }
}

impl From<u64> for BigInt {
    fn from(value: u64) -> BigInt {
        BigInt::from(u128::from(value))
    }
}

/// The error of a conversion from [`BigInt`] to a Rust integer type that cannot hold the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    /// The value, in decimal.
    pub value: String,
    /// The Rust type.
    pub target: &'static str,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the integer {} is out of the range of {}", self.value, self.target)
    }
}

impl std::error::Error for OutOfRange {}

macro_rules! bigint_into {
    ($($t:ty),*) => {$(
        impl TryFrom<&BigInt> for $t {
            type Error = OutOfRange;
            fn try_from(value: &BigInt) -> Result<$t, OutOfRange> {
                let out = || OutOfRange { value: value.to_string(), target: stringify!($t) };
                if value.is_negative() {
                    value.to_i128().and_then(|v| <$t>::try_from(v).ok()).ok_or_else(out)
                } else {
                    value.to_u128().and_then(|v| <$t>::try_from(v).ok()).ok_or_else(out)
                }
            }
        }
    )*};
}

bigint_into!(i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, isize, usize);

/// A `datetime.date`: a day of the proleptic Gregorian calendar, years 1 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    /// 1 to 9999.
    pub year: u16,
    /// 1 to 12.
    pub month: u8,
    /// 1 to the month's length.
    pub day: u8,
}

impl Date {
    /// Whether the fields make a date Python accepts.
    pub fn is_valid(&self) -> bool {
        (1..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
    }

    /// Days since 1970-01-01 (negative before).
    pub(crate) fn days_from_epoch(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let (y, m, d) = (i64::from(self.year), i64::from(self.month), i64::from(self.day));
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01.
    pub(crate) fn from_days_from_epoch(days: i64) -> Option<Date> {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let date = Date { year: u16::try_from(year).ok()?, month: month as u8, day: day as u8 };
        date.is_valid().then_some(date)
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A `datetime.time`: a time of day, with an optional fixed UTC offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Time {
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
    /// 0 to 59.
    pub second: u8,
    /// 0 to 999999.
    pub microsecond: u32,
    /// Python's `fold` (which of two equal wall times during a repeated hour), 0 or 1.
    pub fold: u8,
    /// The `tzinfo`: `None` for a naive time, or a `datetime.timezone`.
    pub tzinfo: Option<TimeZone>,
}

impl Time {
    /// Whether the fields make a time Python accepts.
    pub fn is_valid(&self) -> bool {
        self.hour < 24
            && self.minute < 60
            && self.second < 60
            && self.microsecond < 1_000_000
            && self.fold < 2
            && self.tzinfo.as_ref().is_none_or(TimeZone::is_valid)
    }
}

/// A `datetime.datetime`: a date and a time of day, naive or with a fixed UTC offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// The day.
    pub date: Date,
    /// The time of day (with the `tzinfo` and `fold`).
    pub time: Time,
}

/// A `datetime.timedelta`, normalized as Python keeps it: `seconds` in `0..86400` and
/// `microseconds` in `0..1_000_000`, `days` carrying the sign (-999999999 to 999999999).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct TimeDelta {
    /// Whole days (negative for a negative duration).
    pub days: i32,
    /// 0 to 86399.
    pub seconds: i32,
    /// 0 to 999999.
    pub microseconds: i32,
}

impl TimeDelta {
    /// The duration of `micros` microseconds, normalized; `None` beyond Python's range.
    pub fn from_microseconds(micros: i128) -> Option<TimeDelta> {
        let days = micros.div_euclid(86_400_000_000);
        let rest = micros.rem_euclid(86_400_000_000);
        let days = i32::try_from(days).ok().filter(|d| d.abs() <= 999_999_999)?;
        Some(TimeDelta { days, seconds: (rest / 1_000_000) as i32, microseconds: (rest % 1_000_000) as i32 })
    }

    /// The whole duration in microseconds.
    pub fn total_microseconds(&self) -> i128 {
        (i128::from(self.days) * 86_400 + i128::from(self.seconds)) * 1_000_000 + i128::from(self.microseconds)
    }

    /// Whether the fields are normalized and in Python's range.
    pub fn is_valid(&self) -> bool {
        self.days.abs() <= 999_999_999
            && (0..86_400).contains(&self.seconds)
            && (0..1_000_000).contains(&self.microseconds)
    }
}

/// A `datetime.timezone`: a fixed offset from UTC, with an optional name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TimeZone {
    /// The offset from UTC (strictly between -24 and 24 hours).
    pub offset: TimeDelta,
    /// The name given to `timezone(offset, name)`, if any.
    pub name: Option<String>,
}

impl TimeZone {
    /// UTC (`datetime.timezone.utc`).
    pub const UTC: TimeZone = TimeZone { offset: TimeDelta { days: 0, seconds: 0, microseconds: 0 }, name: None };

    /// Whether Python accepts the offset.
    pub fn is_valid(&self) -> bool {
        self.offset.is_valid() && self.offset.total_microseconds().abs() < 86_400_000_000
    }
}

// ---------------------------------------------------------------------------------------------
// Conversions.

macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for PickleValue {
            fn from(v: $t) -> PickleValue {
                PickleValue::I64(i64::from(v))
            }
        }
    )*};
}

value_from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for PickleValue {
    fn from(v: u64) -> PickleValue {
        PickleValue::from(i128::from(v))
    }
}

impl From<i128> for PickleValue {
    fn from(v: i128) -> PickleValue {
        match i64::try_from(v) {
            Ok(small) => PickleValue::I64(small),
            Err(_) => PickleValue::Int(BigInt::from(v)),
        }
    }
}

impl From<u128> for PickleValue {
    fn from(v: u128) -> PickleValue {
        match i64::try_from(v) {
            Ok(small) => PickleValue::I64(small),
            Err(_) => PickleValue::Int(BigInt::from(v)),
        }
    }
}

impl From<BigInt> for PickleValue {
    /// The integer, as [`PickleValue::I64`] when it fits.
    fn from(v: BigInt) -> PickleValue {
        match v.to_i128().and_then(|v| i64::try_from(v).ok()) {
            Some(small) => PickleValue::I64(small),
            None => PickleValue::Int(v),
        }
    }
}

impl From<bool> for PickleValue {
    fn from(v: bool) -> PickleValue {
        PickleValue::Bool(v)
    }
}

impl From<f64> for PickleValue {
    fn from(v: f64) -> PickleValue {
        PickleValue::F64(v)
    }
}

impl From<f32> for PickleValue {
    fn from(v: f32) -> PickleValue {
        PickleValue::F64(f64::from(v))
    }
}

impl From<&str> for PickleValue {
    fn from(v: &str) -> PickleValue {
        PickleValue::String(v.to_string())
    }
}

impl From<String> for PickleValue {
    fn from(v: String) -> PickleValue {
        PickleValue::String(v)
    }
}

impl From<Vec<PickleValue>> for PickleValue {
    /// A list.
    fn from(v: Vec<PickleValue>) -> PickleValue {
        PickleValue::List(v)
    }
}

impl From<Date> for PickleValue {
    fn from(v: Date) -> PickleValue {
        PickleValue::Date(v)
    }
}

impl From<Time> for PickleValue {
    fn from(v: Time) -> PickleValue {
        PickleValue::Time(v)
    }
}

impl From<DateTime> for PickleValue {
    fn from(v: DateTime) -> PickleValue {
        PickleValue::DateTime(v)
    }
}

impl From<TimeDelta> for PickleValue {
    fn from(v: TimeDelta) -> PickleValue {
        PickleValue::TimeDelta(v)
    }
}

impl<T: Into<PickleValue>> From<Option<T>> for PickleValue {
    fn from(v: Option<T>) -> PickleValue {
        v.map_or(PickleValue::None, Into::into)
    }
}

impl PickleValue {
    /// The Python type's name (`int`, `str`, `datetime.datetime`, or the object's class), for
    /// messages.
    pub fn type_name(&self) -> &str {
        match self {
            PickleValue::None => "NoneType",
            PickleValue::Bool(_) => "bool",
            PickleValue::I64(_) | PickleValue::Int(_) => "int",
            PickleValue::F64(_) => "float",
            PickleValue::Complex { .. } => "complex",
            PickleValue::String(_) => "str",
            PickleValue::Bytes(_) => "bytes",
            PickleValue::ByteArray(_) => "bytearray",
            PickleValue::List(_) => "list",
            PickleValue::Tuple(_) => "tuple",
            PickleValue::Set(_) => "set",
            PickleValue::FrozenSet(_) => "frozenset",
            PickleValue::Dict(_) => "dict",
            PickleValue::Date(_) => "datetime.date",
            PickleValue::Time(_) => "datetime.time",
            PickleValue::DateTime(_) => "datetime.datetime",
            PickleValue::TimeDelta(_) => "datetime.timedelta",
            PickleValue::Decimal(_) => "decimal.Decimal",
            PickleValue::Uuid(_) => "uuid.UUID",
            PickleValue::Object(object) => object.short_class(),
        }
    }

    /// The first [`Object`] inside the value (or the value itself), depth first.
    pub fn find_object(&self) -> Option<&Object> {
        match self {
            PickleValue::Object(object) => Some(object),
            PickleValue::List(items)
            | PickleValue::Tuple(items)
            | PickleValue::Set(items)
            | PickleValue::FrozenSet(items) => items.iter().find_map(PickleValue::find_object),
            PickleValue::Dict(pairs) => pairs.iter().find_map(|(k, v)| k.find_object().or_else(|| v.find_object())),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Equality: exact, but sets and dicts regardless of order.

impl PartialEq for PickleValue {
    fn eq(&self, other: &PickleValue) -> bool {
        use PickleValue as V;
        match (self, other) {
            (V::None, V::None) => true,
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::I64(a), V::I64(b)) => a == b,
            (V::Int(a), V::Int(b)) => a == b,
            (V::F64(a), V::F64(b)) => a == b,
            (V::Complex { re: a, im: b }, V::Complex { re: c, im: d }) => a == c && b == d,
            (V::String(a), V::String(b)) => a == b,
            (V::Bytes(a), V::Bytes(b)) | (V::ByteArray(a), V::ByteArray(b)) => a == b,
            (V::List(a), V::List(b)) | (V::Tuple(a), V::Tuple(b)) => a == b,
            (V::Set(a), V::Set(b)) | (V::FrozenSet(a), V::FrozenSet(b)) => same_items(a, b),
            (V::Dict(a), V::Dict(b)) => {
                a.len() == b.len() && (a == b || a.iter().all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2)))
            }
            (V::Date(a), V::Date(b)) => a == b,
            (V::Time(a), V::Time(b)) => a == b,
            (V::DateTime(a), V::DateTime(b)) => a == b,
            (V::TimeDelta(a), V::TimeDelta(b)) => a == b,
            (V::Decimal(a), V::Decimal(b)) => a == b,
            (V::Uuid(a), V::Uuid(b)) => a == b,
            (V::Object(a), V::Object(b)) => a == b,
            _ => false,
        }
    }
}

/// Whether `a` and `b` hold the same items, in any order (as multisets).
fn same_items(a: &[PickleValue], b: &[PickleValue]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a == b {
        return true;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| match (0..b.len()).find(|&i| !used[i] && b[i] == *x) {
        Some(i) => {
            used[i] = true;
            true
        }
        None => false,
    })
}
