"""The Python half of tests/pickle_interop.rs: values pickled by this interpreter, decoded and
re-encoded by Rust, checked here (standard library only; Python 3.6 and later).

Protocol, one line each way:
  peer -> rust   "value NAME PROTO HEX REPR"   a pickle of CATALOG[NAME] (REPR: repr() of it)
  peer -> rust   "refuse NAME PROTO HEX CLASS" a pickle Rust must refuse, naming CLASS
  peer -> rust   "typed NAME HEX"              a pickle of TYPED[NAME], for Rust's typed decoding
  peer -> rust   "end"
  rust -> peer   "echo NAME/PROTO HEX"         Rust's re-encoding of CATALOG[NAME] as decoded
  rust -> peer   "expect EXPR HEX"             a Rust value, which must equal eval(EXPR)
  rust -> peer   "done"
  peer -> rust   "ok" or "FAIL ..." for each echo and expect, then "bye"
"""

import collections
import datetime
import decimal
import enum
import fractions
import pickle
import signal
import sys
import uuid

signal.alarm(60)

D = decimal.Decimal
UTC = datetime.timezone.utc


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


class Color(enum.Enum):
    RED = 1


def function():
    pass


shared = [1, 2]
shared_text = "shared string " * 3

CATALOG = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "small": 255,
    "medium": 65535,
    "int32": -(2**31),
    "int32_max": 2**31 - 1,
    "beyond_int32": 2**31,
    "i64_max": 2**63 - 1,
    "i64_min": -(2**63),
    "u64_max": 2**64 - 1,
    "beyond_u64": 2**64,
    "big_negative": -(2**100),
    "huge": 2**1000,
    "float": 1.5,
    "negative_zero": -0.0,
    "tiny": 1e-300,
    "large": 1e300,
    "tenth": 0.1,
    "infinity": float("inf"),
    "minus_infinity": float("-inf"),
    "complex": complex(1, 2),
    "imaginary": complex(0, -1.5),
    "empty_str": "",
    "str": "héllo wörld ✓ 日本 🎉",
    "quotes": "it's \"quoted\"",
    "escapes": "tab\tnew\nline\\",
    "long_str": "x" * 300,
    "empty_bytes": b"",
    "bytes": b"\x00\xffbytes",
    "all_bytes": bytes(range(256)),
    "long_bytes": b"y" * 70000,
    "empty_bytearray": bytearray(),
    "bytearray": bytearray(b"abc\x00\xff"),
    "empty_list": [],
    "list": [1, "a", None, 2.5],
    "empty_tuple": (),
    "tuple1": (1,),
    "tuple2": (1, "two"),
    "tuple3": (1, 2, 3),
    "tuple4": (1, 2, 3, 4),
    "dict": {"a": 1, 2: "b", (1, 2): [3], None: {}},
    "empty_set": set(),
    "set": {1, 2, 3},
    "empty_frozenset": frozenset(),
    "frozenset": frozenset({"a"}),
    "set_in_tuple": ({1, 2}, frozenset({3})),
    "sets_in_list": [{1}, frozenset({2}), {"k": {3}}],
    "frozenset_key": {frozenset({1}): "v"},
    "date": datetime.date(2024, 2, 29),
    "first_date": datetime.date(1, 1, 1),
    "last_date": datetime.date(9999, 12, 31),
    "time": datetime.time(12, 30),
    "time_us": datetime.time(23, 59, 59, 999999),
    "time_utc": datetime.time(1, 2, 3, tzinfo=UTC),
    "time_fold": datetime.time(1, 2, fold=1),
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    "datetime_utc": datetime.datetime(2024, 1, 2, 3, 4, tzinfo=UTC),
    "datetime_named": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=-5), "EST")),
    "datetime_offset": datetime.datetime(2024, 1, 2, 3, 4, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
    "datetime_fold": datetime.datetime(2024, 11, 3, 1, 30, fold=1),
    "timedelta_zero": datetime.timedelta(0),
    "timedelta": datetime.timedelta(days=-1, seconds=5, microseconds=7),
    "timedelta_max": datetime.timedelta.max,
    "decimal": D("1.50"),
    "decimal_negative_zero": D("-0"),
    "decimal_exponent": D("1E+3"),
    "decimal_nan": D("NaN"),
    "decimal_infinity": D("-Infinity"),
    "decimal_long": D("3.14159265358979323846264338327950288"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "uuid_one": uuid.UUID(int=1),
    "uuid_max": uuid.UUID(int=2**128 - 1),
    "record": {
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        "amount": D("19.99"),
        "id": uuid.UUID(int=42),
        "tags": {"a"},
        "pause": datetime.timedelta(seconds=1.5),
    },
    "shared_list": [shared, shared, (shared,)],
    "shared_str": [shared_text, shared_text, {shared_text: shared_text}],
}

REFUSED = {
    "fraction": (fractions.Fraction(1, 3), "fractions.Fraction"),
    "range": (range(3), "builtins.range"),
    "ordered_dict": (collections.OrderedDict(a=1), "collections.OrderedDict"),
    "instance": (Point(1, 2), "__main__.Point"),
    "function": (function, "__main__.function"),
    "builtin": (len, "builtins.len"),
    "enum": (Color.RED, "__main__.Color"),
    "slice": (slice(1, 2), "builtins.slice"),
    "nested": ([1, {"k": fractions.Fraction(1, 2)}], "fractions.Fraction"),
}

# Values whose pickles Rust decodes into typed values (see the Rust side for the types).
TYPED = {
    "u64_max": 2**64 - 1,
    "i128_min": -(2**127),
    "u128_max": 2**128 - 1,
    "beyond_u64": 2**64,
    "beyond_u128": 2**200,
    "minus_one": -1,
    "set_in_tuple": ({1, 2}, frozenset({3})),
    "timedelta": datetime.timedelta(seconds=1, microseconds=500000),
    "negative_timedelta": datetime.timedelta(seconds=-1),
    "aware": datetime.datetime(1970, 1, 2, 0, 0, 0, 500000, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
    "naive": datetime.datetime(1970, 1, 2),
    "date": datetime.date(2024, 2, 29),
    "decimal": D("19.99"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bytearray": bytearray(b"\x01\x02"),
    "complex": complex(1, -2),
}


def same(a, b):
    """Equal and of the same types all the way down (1 == 1.0 == True is not enough here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (a != a and b != b) or (a == b and str(a) == str(b))
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(k, l) for k, l in zip(a, b)) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (datetime.datetime, datetime.time)):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold and repr(a.tzinfo) == repr(b.tzinfo)
    return a == b


def main():
    highest = pickle.HIGHEST_PROTOCOL
    for name, value in CATALOG.items():
        for proto in range(highest + 1):
            data = pickle.dumps(value, proto)
            # As Python itself reads it back (protocols before 4 drop datetime's fold).
            print("value", name, proto, data.hex(), repr(pickle.loads(data)))
    for name, (value, cls) in REFUSED.items():
        for proto in range(highest + 1):
            try:
                data = pickle.dumps(value, proto)
            except Exception:
                continue
            print("refuse", name, proto, data.hex(), cls)
    for name, value in TYPED.items():
        print("typed", name, pickle.dumps(value).hex())
    print("end", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "done":
            break
        try:
            if words[0] == "echo":
                name, proto = words[1].split("/")
                want = pickle.loads(pickle.dumps(CATALOG[name], int(proto)))
                got = pickle.loads(bytes.fromhex(words[2]))
            else:
                got, want = pickle.loads(bytes.fromhex(words[2])), eval(words[1].replace("~", " "))
            verdict = "ok" if same(got, want) else "FAIL %s: got %r, want %r" % (words[1], got, want)
        except Exception as e:
            verdict = "FAIL %s: %s: %s" % (words[1], type(e).__name__, e)
        print(verdict, flush=True)
    print("bye", flush=True)


if __name__ == "__main__":
    main()
