//! The pickler: a [`PickleValue`] to pickle bytes (protocol 4, which CPython 3.4 and later read),
//! built as CPython's own pickler builds these values, so that Python rebuilds the same types.

use super::ops::MAX_DEPTH;
use super::value::{Build, Date, DateTime, Object, PickleValue, Time, TimeDelta, TimeZone};

/// Pickles `value`; an error says which part Python could not take (an unhashable dict key, a
/// date out of range, a decimal that does not parse, nesting deeper than 1000).
pub(crate) fn encode(value: &PickleValue) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0x80, 4]);
    write_value(&mut out, value, 0)?;
    out.push(b'.');
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &PickleValue, depth: u32) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("the value nests containers more than {MAX_DEPTH} deep"));
    }
    let depth = depth + 1;
    match value {
        PickleValue::None => out.push(b'N'),
        PickleValue::Bool(true) => out.push(0x88),
        PickleValue::Bool(false) => out.push(0x89),
        PickleValue::I64(i) => write_int(out, *i),
        PickleValue::Int(big) => write_long(out, big.to_le_bytes()),
        PickleValue::F64(x) => {
            out.push(b'G');
            out.extend_from_slice(&x.to_bits().to_be_bytes());
        }
        PickleValue::Complex { re, im } => {
            write_global(out, "builtins", "complex");
            write_value(out, &PickleValue::F64(*re), depth)?;
            write_value(out, &PickleValue::F64(*im), depth)?;
            out.extend_from_slice(&[0x86, b'R']);
        }
        PickleValue::String(s) => write_str(out, s),
        PickleValue::Bytes(b) => write_bytes(out, b),
        PickleValue::ByteArray(b) => {
            write_global(out, "builtins", "bytearray");
            write_bytes(out, b);
            out.extend_from_slice(&[0x85, b'R']);
        }
        PickleValue::List(items) => {
            out.push(b']');
            write_batches(out, items, b'e', depth)?;
        }
        PickleValue::Tuple(items) => write_tuple(out, items, depth)?,
        PickleValue::Set(items) => {
            check_hashable(items.iter(), "a set item")?;
            out.push(0x8f);
            write_batches(out, items, 0x90, depth)?;
        }
        PickleValue::FrozenSet(items) => {
            check_hashable(items.iter(), "a frozenset item")?;
            out.push(b'(');
            for item in items {
                write_value(out, item, depth)?;
            }
            out.push(0x91);
        }
        PickleValue::Dict(pairs) => {
            check_hashable(pairs.iter().map(|(k, _)| k), "a dict key")?;
            out.push(b'}');
            for chunk in pairs.chunks(1000) {
                out.push(b'(');
                for (k, v) in chunk {
                    write_value(out, k, depth)?;
                    write_value(out, v, depth)?;
                }
                out.push(b'u');
            }
        }
        PickleValue::Date(date) => {
            check(date.is_valid(), || format!("{date:?} is not a date Python accepts (years 1 to 9999)"))?;
            write_global(out, "datetime", "date");
            write_bytes(out, &date_state(date));
            out.extend_from_slice(&[0x85, b'R']);
        }
        PickleValue::Time(time) => {
            check(time.is_valid(), || format!("{time:?} is not a time Python accepts"))?;
            write_global(out, "datetime", "time");
            write_bytes(out, &time_state(time));
            write_tz_args(out, time)?;
        }
        PickleValue::DateTime(DateTime { date, time }) => {
            check(date.is_valid() && time.is_valid(), || format!("{value:?} is not a datetime Python accepts"))?;
            write_global(out, "datetime", "datetime");
            let mut state = date_state(date).to_vec();
            state.extend_from_slice(&time_state(time));
            // The fold goes in the month's high bit of a datetime (the hour's in a time).
            state[4] &= 0x7f;
            state[2] |= time.fold << 7;
            write_bytes(out, &state);
            write_tz_args(out, time)?;
        }
        PickleValue::TimeDelta(delta) => write_timedelta(out, delta)?,
        PickleValue::Decimal(text) => {
            check(decimal_syntax(text), || format!("{text:?} is not a decimal.Decimal literal"))?;
            write_global(out, "decimal", "Decimal");
            write_str(out, text);
            out.extend_from_slice(&[0x85, b'R']);
        }
        PickleValue::Uuid(uuid) => {
            // As CPython pickles a UUID: UUID.__new__(UUID), then its state {'int': n}.
            write_global(out, "uuid", "UUID");
            out.extend_from_slice(&[b')', 0x81, b'}']);
            write_str(out, "int");
            write_value(out, &PickleValue::from(*uuid), depth)?;
            out.extend_from_slice(b"sb");
        }
        PickleValue::Object(object) => write_object(out, object, depth)?,
    }
    Ok(())
}

fn check(ok: bool, error: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(error()) }
}

fn write_object(out: &mut Vec<u8>, object: &Object, depth: u32) -> Result<(), String> {
    let (module, name) = object
        .class
        .rsplit_once('.')
        .ok_or_else(|| format!("the class {:?} has no module (write it as module.qualname)", object.class))?;
    write_global(out, module, name);
    match &object.build {
        Build::Reference => {}
        Build::Call(args) => {
            write_tuple(out, args, depth)?;
            out.push(b'R');
        }
        Build::New(args) => {
            write_tuple(out, args, depth)?;
            out.push(0x81);
        }
    }
    if let Some(state) = &object.state {
        write_value(out, state, depth)?;
        out.push(b'b');
    }
    Ok(())
}

fn write_tz_args(out: &mut Vec<u8>, time: &Time) -> Result<(), String> {
    match &time.tzinfo {
        None => out.extend_from_slice(&[0x85, b'R']),
        Some(tz) => {
            write_timezone(out, tz)?;
            out.extend_from_slice(&[0x86, b'R']);
        }
    }
    Ok(())
}

fn write_timezone(out: &mut Vec<u8>, tz: &TimeZone) -> Result<(), String> {
    check(tz.is_valid(), || format!("{tz:?} is not an offset Python accepts (strictly within a day)"))?;
    write_global(out, "datetime", "timezone");
    write_timedelta(out, &tz.offset)?;
    match &tz.name {
        None => out.push(0x85),
        Some(name) => {
            write_str(out, name);
            out.push(0x86);
        }
    }
    out.push(b'R');
    Ok(())
}

fn write_timedelta(out: &mut Vec<u8>, delta: &TimeDelta) -> Result<(), String> {
    check(delta.is_valid(), || format!("{delta:?} is not a normalized timedelta in Python's range"))?;
    write_global(out, "datetime", "timedelta");
    write_int(out, i64::from(delta.days));
    write_int(out, i64::from(delta.seconds));
    write_int(out, i64::from(delta.microseconds));
    out.extend_from_slice(&[0x87, b'R']);
    Ok(())
}

fn date_state(date: &Date) -> [u8; 4] {
    let [hi, lo] = date.year.to_be_bytes();
    [hi, lo, date.month, date.day]
}

fn time_state(time: &Time) -> [u8; 6] {
    let [_, a, b, c] = time.microsecond.to_be_bytes();
    [time.hour | (time.fold << 7), time.minute, time.second, a, b, c]
}

/// Whether `text` is a literal `decimal.Decimal` accepts.
fn decimal_syntax(text: &str) -> bool {
    let body = text.trim().trim_start_matches(['+', '-']);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity") {
        return true;
    }
    if let Some(payload) = lower.strip_prefix("nan").or_else(|| lower.strip_prefix("snan")) {
        return payload.chars().all(|c| c.is_ascii_digit());
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '_');
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() || digits(int)) && (frac.is_empty() || digits(frac)) && !(int.is_empty() && frac.is_empty())
        }
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(|e| digits(e.trim_start_matches(['+', '-'])))
}

/// Whether Python can hash the value (a dict key, a set item).
pub(crate) fn is_hashable(value: &PickleValue) -> bool {
    match value {
        PickleValue::List(_) | PickleValue::Dict(_) | PickleValue::Set(_) | PickleValue::ByteArray(_) => false,
        PickleValue::Tuple(items) => items.iter().all(is_hashable),
        _ => true,
    }
}

fn check_hashable<'a>(mut items: impl Iterator<Item = &'a PickleValue>, what: &str) -> Result<(), String> {
    match items.find(|v| !is_hashable(v)) {
        Some(bad) => Err(format!("{what} must be hashable in Python, and a {} is not", bad.type_name())),
        None => Ok(()),
    }
}

fn write_batches(out: &mut Vec<u8>, items: &[PickleValue], opcode: u8, depth: u32) -> Result<(), String> {
    for chunk in items.chunks(1000) {
        out.push(b'(');
        for item in chunk {
            write_value(out, item, depth)?;
        }
        out.push(opcode);
    }
    Ok(())
}

fn write_tuple(out: &mut Vec<u8>, items: &[PickleValue], depth: u32) -> Result<(), String> {
    match items.len() {
        0 => out.push(b')'),
        n @ 1..=3 => {
            for item in items {
                write_value(out, item, depth)?;
            }
            out.push(0x84 + n as u8);
        }
        _ => {
            out.push(b'(');
            for item in items {
                write_value(out, item, depth)?;
            }
            out.push(b't');
        }
    }
    Ok(())
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    if let Ok(small) = u8::try_from(i) {
        out.extend_from_slice(&[b'K', small]);
    } else if let Ok(medium) = u16::try_from(i) {
        out.push(b'M');
        out.extend_from_slice(&medium.to_le_bytes());
    } else if let Ok(word) = i32::try_from(i) {
        out.push(b'J');
        out.extend_from_slice(&word.to_le_bytes());
    } else {
        write_long(out, super::value::BigInt::from(i).to_le_bytes());
    }
}

fn write_long(out: &mut Vec<u8>, bytes: &[u8]) {
    match u8::try_from(bytes.len()) {
        Ok(len) => out.extend_from_slice(&[0x8a, len]),
        Err(_) => {
            out.push(0x8b);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        }
    }
    out.extend_from_slice(bytes);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if let Ok(short) = u8::try_from(len) {
        out.extend_from_slice(&[0x8c, short]);
    } else if let Ok(medium) = u32::try_from(len) {
        out.push(b'X');
        out.extend_from_slice(&medium.to_le_bytes());
    } else {
        out.push(0x8d);
        out.extend_from_slice(&(len as u64).to_le_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = b.len();
    if let Ok(short) = u8::try_from(len) {
        out.extend_from_slice(&[b'C', short]);
    } else if let Ok(medium) = u32::try_from(len) {
        out.push(b'B');
        out.extend_from_slice(&medium.to_le_bytes());
    } else {
        out.push(0x8e);
        out.extend_from_slice(&(len as u64).to_le_bytes());
    }
    out.extend_from_slice(b);
}

/// `GLOBAL module name` (the text form, which every protocol reads).
fn write_global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(b'c');
    out.extend_from_slice(module.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
}
