//! Value fidelity against real CPython (`python3` and pyenv's 3.8 to 3.13 where installed):
//! every value of a catalog, pickled by Python with every protocol, decodes here to the value
//! whose `Display` is Python's `repr()`, and re-encoded comes back to Python as an equal value of
//! the same types; objects of other classes are refused naming the class; big integers, sets,
//! dates, decimals and UUIDs reach typed Rust values and back. The Python half is
//! `tests/interop/pickle_peer.py`; skipped, with a note, without `python3` (never under CI).

#![cfg(feature = "pickle")]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{hex, pythons, unhex};
use multiproc::pickle::{self, Date, DateTime, PickleValue, Time, TimeDelta, TimeZone};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    name: String,
    values: Vec<i32>,
    flag: Option<bool>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Dot,
    Circle(f64),
    Rect { w: u32, h: u32 },
}

/// Rust values Python must see as `eval(expr)` (spaces in `expr` written as `~`).
fn expectations() -> Vec<(&'static str, Vec<u8>)> {
    let epoch_day = SystemTime::UNIX_EPOCH + Duration::from_millis(86_400_500);
    let mut out: Vec<(&'static str, Vec<u8>)> = vec![
        ("2**64-1", pickle::to_vec(&u64::MAX).unwrap()),
        ("-2**127", pickle::to_vec(&i128::MIN).unwrap()),
        ("2**128-1", pickle::to_vec(&u128::MAX).unwrap()),
        ("(255,-32768,4294967295,-1)", pickle::to_vec(&(u8::MAX, i16::MIN, u32::MAX, -1i8)).unwrap()),
        ("{1,2}", pickle::to_vec(&HashSet::from([1i32, 2])).unwrap()),
        ("{'a','b'}", pickle::to_vec(&BTreeSet::from(["a", "b"])).unwrap()),
        ("[{1},set()]", pickle::to_vec(&vec![BTreeSet::from([1u8]), BTreeSet::new()]).unwrap()),
        ("({1},[2])", pickle::to_vec(&(HashSet::from([1u8]), vec![2u8])).unwrap()),
        ("datetime.timedelta(seconds=1.5)", pickle::to_vec(&Duration::from_millis(1500)).unwrap()),
        ("datetime.datetime(1970,1,2,0,0,0,500000,tzinfo=datetime.timezone.utc)", pickle::to_vec(&epoch_day).unwrap()),
        ("{'name':'r~✓','values':[-1,0],'flag':None}", {
            pickle::to_vec(&Record { name: "r ✓".into(), values: vec![-1, 0], flag: None }).unwrap()
        }),
        ("['Dot',{'Circle':1.5},{'Rect':{'w':1,'h':2}}]", {
            pickle::to_vec(&vec![Shape::Dot, Shape::Circle(1.5), Shape::Rect { w: 1, h: 2 }]).unwrap()
        }),
        ("{(1,2):['']}", pickle::to_vec(&BTreeMap::from([((1i64, 2i64), vec![String::new()])])).unwrap()),
        ("(None,None,'c')", pickle::to_vec(&(None::<u8>, (), 'c')).unwrap()),
    ];
    let values = [
        ("decimal.Decimal('-1.50')", PickleValue::Decimal("-1.50".into())),
        ("uuid.UUID(int=2**128-1)", PickleValue::Uuid(u128::MAX)),
        ("bytearray(b'\\x00\\xff')", PickleValue::ByteArray(vec![0, 0xff])),
        ("complex(-1,0.5)", PickleValue::Complex { re: -1.0, im: 0.5 }),
        ("frozenset({1,'a'})", PickleValue::FrozenSet(vec![1.into(), "a".into()])),
        ("datetime.date(2024,2,29)", PickleValue::Date(Date { year: 2024, month: 2, day: 29 })),
        (
            "datetime.time(1,2,3,4,tzinfo=datetime.timezone(datetime.timedelta(hours=-3),'X'),fold=1)",
            PickleValue::Time(Time {
                hour: 1,
                minute: 2,
                second: 3,
                microsecond: 4,
                fold: 1,
                tzinfo: Some(TimeZone {
                    offset: TimeDelta { days: -1, seconds: 75_600, microseconds: 0 },
                    name: Some("X".into()),
                }),
            }),
        ),
        (
            "datetime.datetime(2024,11,3,1,30,fold=1)",
            PickleValue::DateTime(DateTime {
                date: Date { year: 2024, month: 11, day: 3 },
                time: Time { hour: 1, minute: 30, fold: 1, ..Time::default() },
            }),
        ),
        ("datetime.timedelta(days=-1)", PickleValue::TimeDelta(TimeDelta { days: -1, seconds: 0, microseconds: 0 })),
        ("(-(2**100),)", PickleValue::Tuple(vec![pickle::from_slice::<PickleValue>(&unhex(BIG)).unwrap()])),
    ];
    for (expr, value) in values {
        // Through serde (`to_vec` of a `PickleValue` keeps it exact), and directly.
        assert_eq!(pickle::to_vec(&value).unwrap(), pickle::value_to_vec(&value).unwrap(), "{expr}");
        out.push((expr, pickle::value_to_vec(&value).unwrap()));
    }
    out
}

/// `pickle.dumps(-(2**100))` (CPython 3.11).
const BIG: &str = "80049510000000000000008a0d000000000000000000000000f02e";

/// Python's typed values into Rust types, and the range errors.
fn check_typed(name: &str, bytes: &[u8]) {
    match name {
        "u64_max" => assert_eq!(pickle::from_slice::<u64>(bytes).unwrap(), u64::MAX),
        "i128_min" => assert_eq!(pickle::from_slice::<i128>(bytes).unwrap(), i128::MIN),
        "u128_max" => assert_eq!(pickle::from_slice::<u128>(bytes).unwrap(), u128::MAX),
        "beyond_u64" => {
            let error = pickle::from_slice::<u64>(bytes).unwrap_err().to_string();
            assert!(error.contains("18446744073709551616") && error.contains("u64"), "{error}");
            assert_eq!(pickle::from_slice::<u128>(bytes).unwrap(), 1 << 64);
        }
        "beyond_u128" => {
            let error = pickle::from_slice::<u128>(bytes).unwrap_err().to_string();
            assert!(error.contains("1606938044258990275541962092341162602522202993782792835301376"), "{error}");
            assert!(error.contains("u128"), "{error}");
        }
        "minus_one" => {
            let error = pickle::from_slice::<u32>(bytes).unwrap_err().to_string();
            assert!(error.contains("-1") && error.contains("u32"), "{error}");
        }
        "set_in_tuple" => {
            let (a, b): (HashSet<u8>, BTreeSet<u8>) = pickle::from_slice(bytes).unwrap();
            assert_eq!((a, b), (HashSet::from([1, 2]), BTreeSet::from([3])));
            let value: PickleValue = pickle::from_slice(bytes).unwrap();
            assert!(matches!(&value, PickleValue::Tuple(t) if matches!(t[0], PickleValue::Set(_))), "{value:?}");
        }
        "timedelta" => assert_eq!(pickle::from_slice::<Duration>(bytes).unwrap(), Duration::from_millis(1500)),
        "negative_timedelta" => {
            let error = pickle::from_slice::<Duration>(bytes).unwrap_err().to_string();
            assert!(error.contains("negative"), "{error}");
        }
        "aware" => assert_eq!(
            pickle::from_slice::<SystemTime>(bytes).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(82_800_500)
        ),
        "naive" => {
            let error = pickle::from_slice::<SystemTime>(bytes).unwrap_err().to_string();
            assert!(error.contains("naive"), "{error}");
            assert_eq!(pickle::from_slice::<String>(bytes).unwrap(), "1970-01-02T00:00:00");
        }
        "date" => assert_eq!(pickle::from_slice::<String>(bytes).unwrap(), "2024-02-29"),
        "decimal" => assert_eq!(pickle::from_slice::<String>(bytes).unwrap(), "19.99"),
        "uuid" => {
            assert_eq!(pickle::from_slice::<String>(bytes).unwrap(), "12345678-1234-5678-1234-567812345678");
            assert_eq!(pickle::from_slice::<u128>(bytes).unwrap(), 0x1234_5678_1234_5678_1234_5678_1234_5678);
        }
        "bytearray" => {
            assert_eq!(pickle::from_slice::<Vec<u8>>(bytes).unwrap(), [1, 2]);
            assert_eq!(pickle::from_slice::<PickleValue>(bytes).unwrap(), PickleValue::ByteArray(vec![1, 2]));
        }
        "complex" => assert_eq!(pickle::from_slice::<(f64, f64)>(bytes).unwrap(), (1.0, -2.0)),
        other => panic!("no check for the typed value {other}"),
    }
}

fn conversation(python: &Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pickle_peer.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the python peer");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("the peer ended early").expect("read the peer");
    let (mut values, mut refusals, mut typed) = (0, 0, 0);
    let mut echoes = Vec::new();
    loop {
        let line = next();
        let mut words = line.splitn(5, ' ');
        let kind = words.next().unwrap();
        if kind == "end" {
            break;
        }
        let name = words.next().unwrap().to_string();
        match kind {
            "value" => {
                let proto = words.next().unwrap();
                let bytes = unhex(words.next().unwrap());
                let repr = words.next().unwrap_or("");
                let value = pickle::value_from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{python:?}: {name} (protocol {proto}) does not decode: {e}"));
                assert_eq!(value.to_string(), repr, "{python:?}: repr of {name} (protocol {proto})");
                echoes.push(format!("echo {name}/{proto} {}", hex(&pickle::value_to_vec(&value).unwrap())));
                values += 1;
            }
            "refuse" => {
                let proto = words.next().unwrap();
                let bytes = unhex(words.next().unwrap());
                let class = words.next().unwrap();
                let error = match pickle::value_from_slice(&bytes) {
                    Ok(value) => panic!("{python:?}: {name} (protocol {proto}) decoded to {value:?}"),
                    Err(e) => e.to_string(),
                };
                assert!(error.contains(class), "{python:?}: {name} (protocol {proto}): {error}");
                refusals += 1;
            }
            "typed" => {
                check_typed(&name, &unhex(words.next().unwrap()));
                typed += 1;
            }
            other => panic!("unexpected line from the peer: {other}"),
        }
    }
    let expectations = expectations();
    for line in echoes
        .iter()
        .cloned()
        .chain(expectations.iter().map(|(expr, bytes)| format!("expect {} {}", expr.replace(' ', "~"), hex(bytes))))
    {
        writeln!(stdin, "{line}").unwrap();
    }
    writeln!(stdin, "done").unwrap();
    stdin.flush().unwrap();
    let sent: Vec<String> = echoes.into_iter().chain(expectations.iter().map(|(expr, _)| expr.to_string())).collect();
    for what in &sent {
        let verdict = next();
        assert_eq!(verdict, "ok", "{python:?}: {what}");
    }
    assert_eq!(next(), "bye");
    assert!(child.wait().unwrap().success());
    assert!(values > 400 && refusals > 40 && typed == 16, "{values} values, {refusals} refusals, {typed} typed");
}

#[test]
fn every_value_round_trips_through_every_python() {
    let pythons = pythons();
    if pythons.is_empty() {
        eprintln!("note: python3 not found; skipping every_value_round_trips_through_every_python");
        return;
    }
    common::watchdog("every_value_round_trips_through_every_python", 300, || {
        for python in &pythons {
            conversation(python);
        }
    });
}
