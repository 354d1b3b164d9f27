//! Python's `repr()` and `str()` of [`PickleValue`]s (their `Display`), and of the scalars they
//! hold: floats, strings, bytes, dates and times.

use std::fmt::{self, Write};

use super::value::{Build, Date, DateTime, Object, PickleValue, Time, TimeDelta, TimeZone};

/// Python's `repr(x)` of a float (`1.0`, `1e+16`, `1.5e-05`, `inf`, `nan`).
pub fn float_repr(x: f64) -> String {
    float_text(x, true)
}

/// A float as Python writes it; `point`: add `.0` to an integral value (`repr`), as `complex`'s
/// parts do not.
fn float_text(x: f64, point: bool) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Python's repr does.
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..16).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.abs());
    } else if exponent >= 0 {
        let point_at = exponent as usize + 1;
        if digits.len() <= point_at {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point_at - digits.len()));
            if point {
                out.push_str(".0");
            }
        } else {
            out.push_str(&digits[..point_at]);
            out.push('.');
            out.push_str(&digits[point_at..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
        out.push_str(&digits);
    }
    out
}

/// Python's `repr(complex(re, im))`: `(1+2j)`, `2j`, `(-0+1j)`.
pub(crate) fn complex_repr(re: f64, im: f64) -> String {
    let imag = float_text(im, false);
    if re == 0.0 && re.is_sign_positive() {
        return format!("{imag}j");
    }
    let sign = if im.is_sign_negative() || im.is_nan() && imag.starts_with('-') { "" } else { "+" };
    format!("({}{sign}{imag}j)", float_text(re, false))
}

/// Whether Python's `str.isprintable` holds for `c` (an approximation without Unicode's full
/// tables: controls, format characters, separators other than the space, surrogates and private
/// use are not printable).
fn printable(c: char) -> bool {
    let code = c as u32;
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || matches!(code,
            0xa0 | 0xad | 0x1680 | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x206f | 0x3000
            | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0xfeff | 0xfff9..=0xfffb
            | 0xe000..=0xf8ff | 0xe0000..=0xe0fff | 0xf0000..=0x10ffff))
}

/// Python's `repr()` of a `str`.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if printable(c) => out.push(c),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` of `bytes`.
pub fn bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') { b'"' } else { b'\'' };
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(quote as char);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b == quote => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            b => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push(quote as char);
    out
}

fn seq(f: &mut fmt::Formatter<'_>, items: &[PickleValue], open: &str, close: &str) -> fmt::Result {
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

impl fmt::Display for TimeDelta {
    /// Python's `repr()`: `datetime.timedelta(days=1, seconds=5)`, `datetime.timedelta(0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.days != 0 {
            parts.push(format!("days={}", self.days));
        }
        if self.seconds != 0 {
            parts.push(format!("seconds={}", self.seconds));
        }
        if self.microseconds != 0 {
            parts.push(format!("microseconds={}", self.microseconds));
        }
        if parts.is_empty() {
            parts.push("0".into());
        }
        write!(f, "datetime.timedelta({})", parts.join(", "))
    }
}

impl fmt::Display for TimeZone {
    /// Python's `repr()`: `datetime.timezone.utc`, `datetime.timezone(datetime.timedelta(seconds=3600), 'CET')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            None if self.offset == TimeDelta::default() => f.write_str("datetime.timezone.utc"),
            None => write!(f, "datetime.timezone({})", self.offset),
            Some(name) => write!(f, "datetime.timezone({}, {})", self.offset, str_repr(name)),
        }
    }
}

impl fmt::Display for Date {
    /// Python's `repr()`: `datetime.date(2024, 1, 31)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "datetime.date({}, {}, {})", self.year, self.month, self.day)
    }
}

/// `, tzinfo=..., fold=1` as Python's reprs of times end.
fn tz_and_fold(f: &mut fmt::Formatter<'_>, time: &Time) -> fmt::Result {
    if let Some(tz) = &time.tzinfo {
        write!(f, ", tzinfo={tz}")?;
    }
    if time.fold != 0 {
        f.write_str(", fold=1")?;
    }
    f.write_str(")")
}

impl fmt::Display for Time {
    /// Python's `repr()`: `datetime.time(12, 30)`, `datetime.time(12, 30, 5, 250)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "datetime.time({}, {}", self.hour, self.minute)?;
        if self.microsecond != 0 {
            write!(f, ", {}, {}", self.second, self.microsecond)?;
        } else if self.second != 0 {
            write!(f, ", {}", self.second)?;
        }
        tz_and_fold(f, self)
    }
}

impl fmt::Display for DateTime {
    /// Python's `repr()`: `datetime.datetime(2024, 1, 31, 12, 30)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, t) = (&self.date, &self.time);
        write!(f, "datetime.datetime({}, {}, {}, {}, {}", d.year, d.month, d.day, t.hour, t.minute)?;
        if t.microsecond != 0 {
            write!(f, ", {}, {}", t.second, t.microsecond)?;
        } else if t.second != 0 {
            write!(f, ", {}", t.second)?;
        }
        tz_and_fold(f, t)
    }
}

impl fmt::Display for Object {
    /// `class(args...)`, as Python's repr of an exception reads (`KeyError('x')`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_class())?;
        if let Build::Call(args) | Build::New(args) = &self.build {
            f.write_str("(")?;
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{arg}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// The hyphenated form of a UUID (`12345678-1234-5678-1234-567812345678`).
pub(crate) fn uuid_text(uuid: u128) -> String {
    let hex = format!("{uuid:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

impl fmt::Display for PickleValue {
    /// Python's `repr()` of the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PickleValue::None => f.write_str("None"),
            PickleValue::Bool(true) => f.write_str("True"),
            PickleValue::Bool(false) => f.write_str("False"),
            PickleValue::I64(i) => write!(f, "{i}"),
            PickleValue::Int(i) => write!(f, "{i}"),
            PickleValue::F64(x) => f.write_str(&float_repr(*x)),
            PickleValue::Complex { re, im } => f.write_str(&complex_repr(*re, *im)),
            PickleValue::String(s) => f.write_str(&str_repr(s)),
            PickleValue::Bytes(b) => f.write_str(&bytes_repr(b)),
            PickleValue::ByteArray(b) => write!(f, "bytearray({})", bytes_repr(b)),
            PickleValue::List(items) => seq(f, items, "[", "]"),
            PickleValue::Tuple(items) => seq(f, items, "(", ")"),
            PickleValue::Set(items) if items.is_empty() => f.write_str("set()"),
            PickleValue::Set(items) => seq(f, items, "{", "}"),
            PickleValue::FrozenSet(items) if items.is_empty() => f.write_str("frozenset()"),
            PickleValue::FrozenSet(items) => seq(f, items, "frozenset({", "})"),
            PickleValue::Dict(pairs) => {
                f.write_str("{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            PickleValue::Date(d) => write!(f, "{d}"),
            PickleValue::Time(t) => write!(f, "{t}"),
            PickleValue::DateTime(dt) => write!(f, "{dt}"),
            PickleValue::TimeDelta(td) => write!(f, "{td}"),
            PickleValue::Decimal(text) => write!(f, "Decimal({})", str_repr(text)),
            PickleValue::Uuid(uuid) => write!(f, "UUID('{}')", uuid_text(*uuid)),
            PickleValue::Object(object) => write!(f, "{object}"),
        }
    }
}

impl PickleValue {
    /// Python's `str()` of the value: a string as itself, everything else as `repr()` (except
    /// dates and times, in ISO format, decimals and UUIDs, as their text).
    pub fn to_python_str(&self) -> String {
        match self {
            PickleValue::String(s) => s.clone(),
            PickleValue::Decimal(text) => text.clone(),
            PickleValue::Uuid(uuid) => uuid_text(*uuid),
            PickleValue::Date(_) | PickleValue::Time(_) | PickleValue::DateTime(_) | PickleValue::TimeDelta(_) => {
                iso_text(self).unwrap_or_else(|| self.to_string())
            }
            PickleValue::Object(object) => match object.args() {
                [] => String::new(),
                [PickleValue::String(message)] => message.clone(),
                [single] => single.to_python_str(),
                args => PickleValue::Tuple(args.to_vec()).to_string(),
            },
            other => other.to_string(),
        }
    }
}

fn offset_text(offset: &TimeDelta) -> String {
    let micros = offset.total_microseconds();
    let sign = if micros < 0 { '-' } else { '+' };
    let micros = micros.unsigned_abs();
    let (secs, us) = (micros / 1_000_000, micros % 1_000_000);
    let mut text = format!("{sign}{:02}:{:02}", secs / 3600, secs / 60 % 60);
    if secs % 60 != 0 || us != 0 {
        let _ = write!(text, ":{:02}", secs % 60);
    }
    if us != 0 {
        let _ = write!(text, ".{us:06}");
    }
    text
}

fn time_text(t: &Time) -> String {
    let mut text = format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second);
    if t.microsecond != 0 {
        let _ = write!(text, ".{:06}", t.microsecond);
    }
    if let Some(tz) = &t.tzinfo {
        text.push_str(&offset_text(&tz.offset));
    }
    text
}

/// The ISO 8601 text of a date, time or datetime (Python's `isoformat()`), and Python's `str()`
/// of a timedelta (`1 day, 0:00:05`); `None` for other values.
pub(crate) fn iso_text(value: &PickleValue) -> Option<String> {
    Some(match value {
        PickleValue::Date(d) => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        PickleValue::Time(t) => time_text(t),
        PickleValue::DateTime(DateTime { date: d, time: t }) => {
            format!("{:04}-{:02}-{:02}T{}", d.year, d.month, d.day, time_text(t))
        }
        PickleValue::TimeDelta(td) => {
            let mut text = String::new();
            if td.days != 0 {
                let plural = if td.days.abs() != 1 { "s" } else { "" };
                let _ = write!(text, "{} day{plural}, ", td.days);
            }
            let s = td.seconds;
            let _ = write!(text, "{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
            if td.microseconds != 0 {
                let _ = write!(text, ".{:06}", td.microseconds);
            }
            text
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_python_writes_them() {
        for (x, text) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789.125, "123456789.125"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e300, "1e+300"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
            (2.5, "2.5"),
        ] {
            assert_eq!(float_repr(x), text, "{x:?}");
        }
    }

    #[test]
    fn complex_numbers_read_as_python_writes_them() {
        assert_eq!(complex_repr(1.0, 2.0), "(1+2j)");
        assert_eq!(complex_repr(0.0, 2.0), "2j");
        assert_eq!(complex_repr(1.5, -0.5), "(1.5-0.5j)");
        assert_eq!(complex_repr(-0.0, 1.0), "(-0+1j)");
    }

    #[test]
    fn strings_and_bytes_are_quoted_as_python_quotes_them() {
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'b\""), "'a\\'b\"'");
        assert_eq!(str_repr("tab\there\n\u{7}é🎉"), "'tab\\there\\n\\x07é🎉'");
        assert_eq!(bytes_repr(b"\x00\xffa'"), "b\"\\x00\\xffa'\"");
    }

    #[test]
    fn dates_and_times_read_as_python_writes_them() {
        let date = Date { year: 2024, month: 2, day: 29 };
        let time = Time { hour: 12, minute: 30, second: 5, microsecond: 0, fold: 0, tzinfo: Some(TimeZone::UTC) };
        let value = PickleValue::DateTime(DateTime { date, time: time.clone() });
        assert_eq!(value.to_string(), "datetime.datetime(2024, 2, 29, 12, 30, 5, tzinfo=datetime.timezone.utc)");
        assert_eq!(value.to_python_str(), "2024-02-29T12:30:05+00:00");
        assert_eq!(PickleValue::Time(Time { second: 0, tzinfo: None, ..time }).to_string(), "datetime.time(12, 30)");
        let td = TimeDelta { days: -1, seconds: 86399, microseconds: 0 };
        assert_eq!(td.to_string(), "datetime.timedelta(days=-1, seconds=86399)");
        assert_eq!(PickleValue::TimeDelta(td).to_python_str(), "-1 day, 23:59:59");
    }
}
