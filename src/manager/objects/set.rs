//! `set` (CPython 3.14's `SetProxy`; a `set()` registered with a manager before that).

use std::collections::HashSet;
use std::sync::Mutex;

use super::args::Args;
use super::dict::{OrderedMap, key_for, no_method};
use super::list::items_of;
use super::python::Key;
use super::{Caller, Input, Outcome, Raise, Served, lock, ok};
use crate::pickle::PickleValue;

/// A managed `set`, in insertion order.
pub(crate) struct Set {
    items: Mutex<OrderedMap>,
}

const SET_METHODS: &[&str] = &[
    "__and__",
    "__contains__",
    "__iand__",
    "__ior__",
    "__isub__",
    "__ixor__",
    "__len__",
    "__or__",
    "__rand__",
    "__ror__",
    "__rsub__",
    "__rxor__",
    "__sub__",
    "__xor__",
    "add",
    "clear",
    "copy",
    "difference",
    "difference_update",
    "discard",
    "intersection",
    "intersection_update",
    "isdisjoint",
    "issubset",
    "issuperset",
    "pop",
    "remove",
    "symmetric_difference",
    "symmetric_difference_update",
    "union",
    "update",
];

fn keyed(items: Vec<PickleValue>, caller: &Caller<'_>) -> Result<Vec<(Key, PickleValue)>, Raise> {
    items.into_iter().map(|item| Ok((key_for(&item, caller)?, item))).collect()
}

impl Set {
    pub(crate) fn new(args: Args) -> Result<Set, Raise> {
        let [items] = args.bind("set", ["iterable"], 0)?;
        let lenient = Caller { id: 0, gone: &|| false, python: false };
        let mut map = OrderedMap::default();
        for (key, item) in keyed(items.map(items_of).transpose()?.unwrap_or_default(), &lenient)? {
            map.insert(key, item, PickleValue::None);
        }
        Ok(Set { items: Mutex::new(map) })
    }
}

fn set_value(items: impl IntoIterator<Item = PickleValue>) -> PickleValue {
    PickleValue::Set(items.into_iter().collect())
}

impl Served for Set {
    fn typeid(&self) -> &str {
        "set"
    }

    fn exposed(&self) -> &'static [&'static str] {
        SET_METHODS
    }

    fn call(&self, method: &str, input: Input, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        let mut set = lock(&self.items);
        let mine = |set: &OrderedMap| -> Vec<PickleValue> { set.iter().map(|(k, _)| k.clone()).collect() };
        match method {
            "__len__" => {
                args.none(method)?;
                ok(set.len() as i64)
            }
            "__contains__" => {
                let item = args.one(method, "item")?;
                ok(set.get(&key_for(&item, caller)?).is_some())
            }
            "add" => {
                let item = args.one(method, "item")?;
                let key = key_for(&item, caller)?;
                set.insert(key, item, PickleValue::None);
                Outcome::none()
            }
            "discard" | "#discard" => {
                let item = args.one(method, "item")?;
                let removed = set.remove(&key_for(&item, caller)?).is_some();
                if method == "#discard" { ok(removed) } else { Outcome::none() }
            }
            "remove" => {
                let item = args.one(method, "item")?;
                match set.remove(&key_for(&item, caller)?) {
                    Some(_) => Outcome::none(),
                    None => Err(Raise::key_error(item)),
                }
            }
            "pop" => {
                args.none(method)?;
                match set.pop_last() {
                    Some((item, _)) => ok(item),
                    None => Err(Raise::key_error(PickleValue::from("pop from an empty set"))),
                }
            }
            "clear" => {
                args.none(method)?;
                set.clear();
                Outcome::none()
            }
            "copy" => {
                args.none(method)?;
                ok(set_value(mine(&set)))
            }
            _ => {
                let others: Vec<Vec<(Key, PickleValue)>> = args
                    .positional
                    .into_iter()
                    .map(|other| keyed(items_of(other)?, caller))
                    .collect::<Result<_, _>>()?;
                operation(&mut set, method, others)
            }
        }
    }

    fn repr(&self) -> String {
        set_value(lock(&self.items).iter().map(|(k, _)| k.clone())).to_string()
    }

    fn value(&self) -> Result<PickleValue, Raise> {
        Ok(set_value(lock(&self.items).iter().map(|(k, _)| k.clone())))
    }
}

/// The set operations with other iterables.
fn operation(set: &mut OrderedMap, method: &str, others: Vec<Vec<(Key, PickleValue)>>) -> Result<Outcome, Raise> {
    let lookup: Vec<HashSet<Key>> = others.iter().map(|o| o.iter().map(|(k, _)| k.clone()).collect()).collect();
    let contains_all = |_: &[Vec<(Key, PickleValue)>], key: &Key| lookup.iter().all(|o| o.contains(key));
    let in_any = |_: &[Vec<(Key, PickleValue)>], key: &Key| lookup.iter().any(|o| o.contains(key));
    let current: Vec<(Key, PickleValue)> =
        set.iter().map(|(item, _)| (super::python::key_of(item), item.clone())).collect();
    let mine: HashSet<&Key> = current.iter().map(|(k, _)| k).collect();
    let union = |current: &[(Key, PickleValue)], others: Vec<Vec<(Key, PickleValue)>>| {
        let mut out = OrderedMap::default();
        for (key, item) in current.iter().cloned().chain(others.into_iter().flatten()) {
            out.insert(key, item, PickleValue::None);
        }
        out
    };
    let symmetric = |current: &[(Key, PickleValue)], others: Vec<Vec<(Key, PickleValue)>>| {
        let mut out = OrderedMap::default();
        for (key, item) in current.iter().cloned() {
            out.insert(key, item, PickleValue::None);
        }
        // The other iterable is a set first: its duplicates count once.
        let mut toggled = OrderedMap::default();
        for (key, item) in others.into_iter().flatten() {
            toggled.insert(key, item, PickleValue::None);
        }
        for (item, _) in toggled.iter() {
            let key = super::python::key_of(item);
            if out.remove(&key).is_none() {
                out.insert(key, item.clone(), PickleValue::None);
            }
        }
        out
    };
    let items = |map: &OrderedMap| set_value(map.iter().map(|(k, _)| k.clone()));
    let result = match method {
        "union" | "__or__" | "__ror__" => items(&union(&current, others)),
        "update" | "__ior__" => {
            *set = union(&current, others);
            return if method == "update" { Outcome::none() } else { ok(items(set)) };
        }
        "intersection" | "__and__" | "__rand__" => {
            set_value(current.into_iter().filter(|(k, _)| contains_all(&others, k)).map(|(_, v)| v))
        }
        "intersection_update" | "__iand__" => {
            for (key, _) in &current {
                if !contains_all(&others, key) {
                    set.remove(key);
                }
            }
            return if method == "intersection_update" { Outcome::none() } else { ok(items(set)) };
        }
        "difference" | "__sub__" => set_value(current.into_iter().filter(|(k, _)| !in_any(&others, k)).map(|(_, v)| v)),
        "__rsub__" => {
            let other = others.into_iter().next().unwrap_or_default();
            set_value(other.into_iter().filter(|(k, _)| !mine.contains(k)).map(|(_, v)| v))
        }
        "difference_update" | "__isub__" => {
            for (key, _) in others.iter().flatten() {
                set.remove(key);
            }
            return if method == "difference_update" { Outcome::none() } else { ok(items(set)) };
        }
        "symmetric_difference" | "__xor__" | "__rxor__" => items(&symmetric(&current, others)),
        "symmetric_difference_update" | "__ixor__" => {
            *set = symmetric(&current, others);
            return if method == "symmetric_difference_update" { Outcome::none() } else { ok(items(set)) };
        }
        "isdisjoint" => PickleValue::Bool(!current.iter().any(|(k, _)| in_any(&others, k))),
        "issubset" => PickleValue::Bool(current.iter().all(|(k, _)| contains_all(&others, k))),
        "issuperset" => PickleValue::Bool(others.iter().flatten().all(|(k, _)| mine.contains(k))),
        other => return Err(no_method("set", other)),
    };
    ok(result)
}
