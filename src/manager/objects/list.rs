//! `list` (CPython's `ListProxy`).

use std::sync::Mutex;

use super::args::{Args, int};
use super::dict::no_method;
use super::python::{py_cmp, py_eq, truthy};
use super::{Caller, Input, Outcome, Raise, Served, lock, ok, position};
use crate::manager::protocol::{MAX_MESSAGE, Slice};
use crate::pickle::{Build, Object, PickleValue};

/// A managed `list`.
pub(crate) struct List {
    items: Mutex<Vec<PickleValue>>,
}

/// CPython's `ListProxy._exposed_`.
const LIST_METHODS: &[&str] = &[
    "__add__",
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__len__",
    "__mul__",
    "__reversed__",
    "__rmul__",
    "__setitem__",
    "append",
    "count",
    "extend",
    "index",
    "insert",
    "pop",
    "remove",
    "reverse",
    "sort",
    "__imul__",
];

impl List {
    pub(crate) fn new(args: Args) -> Result<List, Raise> {
        let [items] = args.bind("list", ["iterable"], 0)?;
        Ok(List { items: Mutex::new(items.map(items_of).transpose()?.unwrap_or_default()) })
    }
}

/// The items of an iterable argument (a list, tuple, set, dict's keys, str's characters, bytes).
pub(crate) fn items_of(value: PickleValue) -> Result<Vec<PickleValue>, Raise> {
    Ok(match value {
        PickleValue::List(items)
        | PickleValue::Tuple(items)
        | PickleValue::Set(items)
        | PickleValue::FrozenSet(items) => items,
        PickleValue::Dict(pairs) => pairs.into_iter().map(|(k, _)| k).collect(),
        PickleValue::String(s) => s.chars().map(|c| PickleValue::String(c.to_string())).collect(),
        PickleValue::Bytes(b) | PickleValue::ByteArray(b) => b.into_iter().map(PickleValue::from).collect(),
        PickleValue::Object(object) if object.class == "builtins.range" => range_items(object.args())?,
        other => return Err(Raise::type_error(format!("'{}' object is not iterable", other.type_name()))),
    })
}

/// The most items a `range` argument may give (a short request must not make the server
/// allocate without bound).
const MAX_RANGE: i128 = 1 << 24;

/// The integers of `range(start, stop, step)` (CPython pickles a range as that call).
fn range_items(args: &[PickleValue]) -> Result<Vec<PickleValue>, Raise> {
    let ints: Vec<i64> = args.iter().map(|a| int(a, "range() arguments")).collect::<Result<_, _>>()?;
    let (start, stop, step) = match ints[..] {
        [stop] => (0, stop, 1),
        [start, stop] => (start, stop, 1),
        [start, stop, step] => (start, stop, step),
        _ => return Err(Raise::type_error("range expected 1 to 3 arguments")),
    };
    if step == 0 {
        return Err(Raise::value_error("range() arg 3 must not be zero"));
    }
    let count = if step > 0 {
        (i128::from(stop) - i128::from(start) + i128::from(step) - 1) / i128::from(step)
    } else {
        (i128::from(start) - i128::from(stop) - i128::from(step) - 1) / -i128::from(step)
    }
    .max(0);
    if count > MAX_RANGE {
        return Err(Raise::memory_error(format!("a range of {count} items is more than this server takes at once")));
    }
    Ok((0..count).map(|i| PickleValue::I64((i128::from(start) + i * i128::from(step)) as i64)).collect())
}

/// A `slice` argument (CPython pickles `slice(a, b, c)` as a call of `builtins.slice`).
pub(crate) fn slice_of(value: &PickleValue) -> Result<Option<Slice>, Raise> {
    let PickleValue::Object(object) = value else { return Ok(None) };
    if object.class != "builtins.slice" {
        return Ok(None);
    }
    let bound = |i: usize| match object.args().get(i) {
        None | Some(PickleValue::None) => Ok(None),
        Some(v) => int(v, "slice indices").map(Some),
    };
    let step = bound(2)?.unwrap_or(1);
    if step == 0 {
        return Err(Raise::value_error("slice step cannot be zero"));
    }
    Ok(Some(Slice::from_parts(bound(0)?, bound(1)?, step)))
}

/// A `slice(start, stop, step)` to send as an argument.
pub(crate) fn slice_value(slice: &Slice) -> PickleValue {
    let (start, stop, step) = slice.parts();
    let bound = |b: Option<i64>| b.map_or(PickleValue::None, PickleValue::I64);
    PickleValue::from(Object::call("builtins.slice", vec![bound(start), bound(stop), PickleValue::I64(step)]))
}

/// About how much memory a value takes (for the limit on `*`).
pub(crate) fn footprint(value: &PickleValue) -> usize {
    let own = std::mem::size_of::<PickleValue>();
    own + match value {
        PickleValue::String(s) => s.len(),
        PickleValue::Bytes(b) | PickleValue::ByteArray(b) => b.len(),
        PickleValue::List(items)
        | PickleValue::Tuple(items)
        | PickleValue::Set(items)
        | PickleValue::FrozenSet(items) => items.iter().map(footprint).sum(),
        PickleValue::Dict(pairs) => pairs.iter().map(|(k, v)| footprint(k) + footprint(v)).sum(),
        _ => 0,
    }
}

/// The most memory a list may take after `*` (a short request must not make the server
/// allocate without bound).
const MAX_REPEATED: usize = MAX_MESSAGE as usize;

fn repeated(items: &[PickleValue], times: &PickleValue) -> Result<Vec<PickleValue>, Raise> {
    let times = match times {
        // Beyond 64 bits: as many as can be (an empty list stays empty; others are too large).
        PickleValue::Int(big) => {
            if big.is_negative() {
                0
            } else {
                u64::MAX
            }
        }
        other => int(other, "can't multiply sequence by non-int: the count").map(|n| n.max(0) as u64)?,
    };
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let size: usize = items.iter().map(footprint).sum();
    let fits = usize::try_from(times).ok().and_then(|n| size.checked_mul(n)).is_some_and(|m| m <= MAX_REPEATED);
    if !fits {
        return Err(Raise::memory_error(format!("the list repeated {times} times would exceed {MAX_REPEATED} bytes")));
    }
    let mut out = Vec::with_capacity(items.len() * times as usize);
    for _ in 0..times {
        out.extend_from_slice(items);
    }
    Ok(out)
}

fn index_of(value: &PickleValue, len: usize, what: &str) -> Result<usize, Raise> {
    let i = int(value, "list indices")?;
    position(i, len).ok_or_else(|| Raise::index_error(format!("{what} index out of range")))
}

fn set_slice(list: &mut Vec<PickleValue>, slice: Slice, items: Vec<PickleValue>) -> Result<(), Raise> {
    if slice.is_contiguous() {
        let (start, stop) = slice.span(list.len());
        list.splice(start..stop, items);
        return Ok(());
    }
    let positions = slice.positions(list.len()).unwrap_or_default();
    if positions.len() != items.len() {
        return Err(Raise::value_error(format!(
            "attempt to assign sequence of size {} to extended slice of size {}",
            items.len(),
            positions.len()
        )));
    }
    for (at, item) in positions.into_iter().zip(items) {
        list[at] = item;
    }
    Ok(())
}

/// Sorts as Python's `list.sort` does (stable; `reverse` keeps equal items in order).
fn sort(list: &mut [PickleValue], reverse: bool) -> Result<(), Raise> {
    let mut failure = None;
    if reverse {
        list.reverse();
    }
    // As CPython does it: reverse, sort stably, reverse back.
    list.sort_by(|a, b| match py_cmp(a, b) {
        Ok(ordering) => ordering,
        Err(e) => {
            failure.get_or_insert(e);
            std::cmp::Ordering::Equal
        }
    });
    if reverse {
        list.reverse();
    }
    failure.map_or(Ok(()), Err)
}

/// Puts the items in `order` if the list still holds exactly `snapshot`; whether it did. A
/// proxy sorts with its own type's order this way.
fn reorder(list: &mut Vec<PickleValue>, snapshot: &[PickleValue], order: &[PickleValue]) -> Result<bool, Raise> {
    if list.as_slice() != snapshot {
        return Ok(false);
    }
    let mut seen = vec![false; list.len()];
    let order: Vec<usize> = order
        .iter()
        .map(|i| match i {
            PickleValue::I64(i) => usize::try_from(*i).ok(),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| Raise::value_error("the order is not a permutation of the list's positions"))?;
    let is_permutation = order.len() == list.len()
        && order.iter().all(|&i| seen.get_mut(i).is_some_and(|s| !std::mem::replace(s, true)));
    if !is_permutation {
        return Err(Raise::value_error("the order is not a permutation of the list's positions"));
    }
    let mut old: Vec<Option<PickleValue>> = std::mem::take(list).into_iter().map(Some).collect();
    list.extend(order.iter().filter_map(|&i| old[i].take()));
    Ok(true)
}

impl Served for List {
    fn typeid(&self) -> &str {
        "list"
    }

    fn exposed(&self) -> &'static [&'static str] {
        LIST_METHODS
    }

    fn call(&self, method: &str, input: Input, _caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        let mut list = lock(&self.items);
        match method {
            "__getitem__" => {
                let at = args.one(method, "index")?;
                match slice_of(&at)? {
                    Some(slice) => {
                        let positions = slice.positions(list.len()).unwrap_or_default();
                        ok(PickleValue::List(positions.iter().map(|&i| list[i].clone()).collect()))
                    }
                    None => ok(list[index_of(&at, list.len(), "list")?].clone()),
                }
            }
            "__setitem__" => {
                let [at, value] = args.bind(method, ["index", "value"], 2)?;
                let (at, value) = (at.unwrap_or_default(), value.unwrap_or_default());
                match slice_of(&at)? {
                    Some(slice) => set_slice(&mut list, slice, items_of(value)?)?,
                    None => {
                        let i = index_of(&at, list.len(), "list assignment")?;
                        list[i] = value;
                    }
                }
                Outcome::none()
            }
            "__delitem__" => {
                let at = args.one(method, "index")?;
                match slice_of(&at)? {
                    Some(slice) => {
                        let mut doomed = vec![false; list.len()];
                        for i in slice.positions(list.len()).unwrap_or_default() {
                            doomed[i] = true;
                        }
                        let mut i = 0;
                        list.retain(|_| {
                            i += 1;
                            !doomed[i - 1]
                        });
                    }
                    None => {
                        let i = index_of(&at, list.len(), "list assignment")?;
                        list.remove(i);
                    }
                }
                Outcome::none()
            }
            "__len__" => {
                args.none(method)?;
                ok(list.len() as i64)
            }
            "__contains__" => {
                let item = args.one(method, "item")?;
                ok(list.iter().any(|x| py_eq(x, &item)))
            }
            "__add__" => match args.one(method, "other")? {
                PickleValue::List(other) => ok(PickleValue::List(list.iter().cloned().chain(other).collect())),
                other => {
                    Err(Raise::type_error(format!("can only concatenate list (not \"{}\") to list", other.type_name())))
                }
            },
            "__mul__" | "__rmul__" => {
                let times = args.one(method, "count")?;
                ok(PickleValue::List(repeated(&list, &times)?))
            }
            "__imul__" => {
                let times = args.one(method, "count")?;
                *list = repeated(&list, &times)?;
                ok(PickleValue::List(list.clone()))
            }
            "__reversed__" => {
                args.none(method)?;
                let items = PickleValue::List(list.clone());
                ok(PickleValue::from(Object {
                    class: "builtins.reversed".into(),
                    build: Build::Call(vec![items]),
                    state: None,
                }))
            }
            "append" => {
                list.push(args.one(method, "object")?);
                Outcome::none()
            }
            "extend" => {
                let items = items_of(args.one(method, "iterable")?)?;
                list.extend(items);
                Outcome::none()
            }
            "insert" => {
                let [at, item] = args.bind(method, ["index", "object"], 2)?;
                let i = int(&at.unwrap_or_default(), "list indices")?;
                let len = list.len() as i64;
                let at = if i < 0 { (i + len).max(0) } else { i.min(len) };
                list.insert(at as usize, item.unwrap_or_default());
                Outcome::none()
            }
            "pop" => {
                let [at] = args.bind(method, ["index"], 0)?;
                if list.is_empty() {
                    return Err(Raise::index_error("pop from empty list"));
                }
                let i = index_of(&at.unwrap_or(PickleValue::I64(-1)), list.len(), "pop")?;
                ok(list.remove(i))
            }
            "remove" => {
                let item = args.one(method, "value")?;
                match list.iter().position(|x| py_eq(x, &item)) {
                    Some(i) => {
                        list.remove(i);
                        Outcome::none()
                    }
                    None => Err(Raise::value_error("list.remove(x): x not in list")),
                }
            }
            "index" => {
                let [item, start, stop] = args.bind(method, ["value", "start", "stop"], 1)?;
                let item = item.unwrap_or_default();
                let len = list.len() as i64;
                let clamp = |v: Option<PickleValue>, absent: i64| -> Result<usize, Raise> {
                    let i = match v {
                        None => absent,
                        Some(v) => int(&v, "slice indices")?,
                    };
                    Ok((if i < 0 { (i + len).max(0) } else { i.min(len) }) as usize)
                };
                let (start, stop) = (clamp(start, 0)?, clamp(stop, len)?);
                match (start..stop.max(start)).find(|&i| py_eq(&list[i], &item)) {
                    Some(i) => ok(i as i64),
                    None => Err(Raise::value_error(format!("{item} is not in list"))),
                }
            }
            "count" => {
                let item = args.one(method, "value")?;
                ok(list.iter().filter(|x| py_eq(x, &item)).count() as i64)
            }
            "reverse" => {
                args.none(method)?;
                list.reverse();
                Outcome::none()
            }
            "clear" | "#clear" => {
                args.none(method)?;
                list.clear();
                Outcome::none()
            }
            "sort" => {
                let keywords = args.keywords.clone();
                if !args.positional.is_empty() {
                    return Err(Raise::type_error("sort() takes no positional arguments"));
                }
                let [key, reverse] = Args { positional: Vec::new(), keywords }.bind(method, ["key", "reverse"], 0)?;
                if key.as_ref().is_some_and(|k| !matches!(k, PickleValue::None)) {
                    return Err(Raise::type_error(
                        "sort(key=...) cannot run in this manager's server, which is written in Rust: sort a copy \
                         (sorted(proxy[:], key=...)) or sort without a key",
                    ));
                }
                sort(&mut list, reverse.as_ref().is_some_and(truthy))?;
                Outcome::none()
            }
            "#reorder" => {
                let [snapshot, order] = args.bind(method, ["snapshot", "order"], 2)?;
                let (Some(PickleValue::List(snapshot)), Some(PickleValue::List(order))) = (snapshot, order) else {
                    return Err(Raise::type_error("#reorder takes two lists"));
                };
                ok(reorder(&mut list, &snapshot, &order)?)
            }
            other => Err(no_method("list", other)),
        }
    }

    fn repr(&self) -> String {
        PickleValue::List(lock(&self.items).clone()).to_string()
    }

    fn value(&self) -> Result<PickleValue, Raise> {
        Ok(PickleValue::List(lock(&self.items).clone()))
    }
}
