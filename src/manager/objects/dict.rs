//! `dict` (CPython's `DictProxy`), `Namespace` (`NamespaceProxy`) and the `Iterator` a dict's
//! `__iter__` gives (`IteratorProxy`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::args::Args;
use super::python::{Key, hash_key, key_of};
use super::{Caller, Input, Outcome, Raise, Served, lock, ok};
use crate::pickle::{Build, Object, PickleValue};

/// A map that keeps insertion order, as Python's dict does, keyed by Python's equality.
#[derive(Default)]
pub(crate) struct OrderedMap {
    entries: Vec<Option<(PickleValue, PickleValue)>>,
    index: HashMap<Key, usize>,
    /// How many times the number of entries changed (iterators notice it).
    resized: u64,
}

impl OrderedMap {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&PickleValue> {
        self.index.get(key).and_then(|&i| self.entries[i].as_ref()).map(|(_, v)| v)
    }

    /// Sets the value; a key already there keeps its first form (`d[1] = a; d[1.0] = b` keeps
    /// the key `1`), as in Python.
    pub(crate) fn insert(&mut self, key: Key, k: PickleValue, v: PickleValue) {
        match self.index.get(&key) {
            Some(&i) => {
                if let Some(entry) = &mut self.entries[i] {
                    entry.1 = v;
                }
            }
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push(Some((k, v)));
                self.resized += 1;
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &Key) -> Option<(PickleValue, PickleValue)> {
        let i = self.index.remove(key)?;
        let entry = self.entries[i].take();
        self.resized += 1;
        if self.entries.len() > 32 && self.index.len() < self.entries.len() / 2 {
            self.compact();
        }
        entry
    }

    fn compact(&mut self) {
        self.entries.retain(Option::is_some);
        self.index.clear();
        for (i, (k, _)) in self.entries.iter().flatten().enumerate() {
            self.index.insert(key_of(k), i);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
        self.resized += 1;
    }

    /// Removes and returns the entry inserted last.
    pub(crate) fn pop_last(&mut self) -> Option<(PickleValue, PickleValue)> {
        let (k, _) = self.entries.iter().rev().flatten().next()?;
        let key = key_of(k);
        self.remove(&key)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(PickleValue, PickleValue)> {
        self.entries.iter().flatten()
    }

    pub(crate) fn to_value(&self) -> PickleValue {
        PickleValue::Dict(self.iter().cloned().collect())
    }
}

/// The key of a dict key: Python's hash rules for Python clients (`TypeError` for a list); any
/// value for this crate's proxies (a Rust struct key is a dict to Python).
pub(crate) fn key_for(value: &PickleValue, caller: &Caller<'_>) -> Result<Key, Raise> {
    if caller.python { hash_key(value) } else { Ok(key_of(value)) }
}

/// A managed `dict`.
#[derive(Default)]
pub(crate) struct Dict {
    map: Arc<Mutex<OrderedMap>>,
}

impl Dict {
    pub(crate) fn new(args: Args) -> Result<Dict, Raise> {
        let dict = Dict::default();
        if !args.positional.is_empty() || !args.keywords.is_empty() {
            let python = Caller { id: 0, gone: &|| false, python: true };
            update(&mut lock(&dict.map), args, &python)?;
        }
        Ok(dict)
    }
}

/// CPython's `DictProxy._exposed_`.
const DICT_METHODS: &[&str] = &[
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__iter__",
    "__len__",
    "__setitem__",
    "clear",
    "copy",
    "get",
    "items",
    "keys",
    "pop",
    "popitem",
    "setdefault",
    "update",
    "values",
];

/// `dict.update(other=(), **kwargs)`: a dict, or pairs.
fn update(map: &mut OrderedMap, args: Args, caller: &Caller<'_>) -> Result<(), Raise> {
    let keywords = args.keywords;
    let [other] = Args::of(args.positional).bind("update", ["other"], 0)?;
    let pairs: Vec<(PickleValue, PickleValue)> = match other {
        None => Vec::new(),
        Some(PickleValue::Dict(pairs)) => pairs,
        Some(PickleValue::List(items) | PickleValue::Tuple(items) | PickleValue::Set(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                PickleValue::Tuple(pair) | PickleValue::List(pair) if pair.len() == 2 => {
                    let mut pair = pair.into_iter();
                    Ok((pair.next().unwrap_or_default(), pair.next().unwrap_or_default()))
                }
                other => Err(Raise::value_error(format!(
                    "dictionary update sequence element #{i} has length {}; 2 is required",
                    match &other {
                        PickleValue::Tuple(p) | PickleValue::List(p) => p.len(),
                        _ => 1,
                    }
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(Raise::type_error(format!("'{}' object is not iterable", other.type_name()))),
    };
    for (k, v) in pairs.into_iter().chain(keywords.into_iter().map(|(k, v)| (PickleValue::String(k), v))) {
        let key = key_for(&k, caller)?;
        map.insert(key, k, v);
    }
    Ok(())
}

fn dict_repr(map: &OrderedMap) -> String {
    map.to_value().to_string()
}

impl Served for Dict {
    fn typeid(&self) -> &str {
        "dict"
    }

    fn exposed(&self) -> &'static [&'static str] {
        DICT_METHODS
    }

    fn call(&self, method: &str, input: Input, caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        let mut map = lock(&self.map);
        match method {
            "__getitem__" => {
                let k = args.one(method, "key")?;
                match map.get(&key_for(&k, caller)?) {
                    Some(v) => ok(v.clone()),
                    None => Err(Raise::key_error(k)),
                }
            }
            "__setitem__" => {
                let [k, v] = args.bind(method, ["key", "value"], 2)?;
                let (k, v) = (k.unwrap_or_default(), v.unwrap_or_default());
                let key = key_for(&k, caller)?;
                map.insert(key, k, v);
                Outcome::none()
            }
            "__delitem__" => {
                let k = args.one(method, "key")?;
                match map.remove(&key_for(&k, caller)?) {
                    Some(_) => Outcome::none(),
                    None => Err(Raise::key_error(k)),
                }
            }
            "__contains__" => {
                let k = args.one(method, "key")?;
                ok(map.get(&key_for(&k, caller)?).is_some())
            }
            "__len__" => {
                args.none(method)?;
                ok(map.len() as i64)
            }
            "__iter__" => {
                args.none(method)?;
                let keys: Vec<PickleValue> = map.iter().map(|(k, _)| k.clone()).collect();
                let resized = map.resized;
                Ok(Outcome::Object(Arc::new(DictIterator::new(keys, Some((Arc::clone(&self.map), resized))))))
            }
            "clear" => {
                args.none(method)?;
                map.clear();
                Outcome::none()
            }
            "copy" => {
                args.none(method)?;
                ok(map.to_value())
            }
            "get" => {
                let [k, default] = args.bind(method, ["key", "default"], 1)?;
                let k = k.unwrap_or_default();
                ok(map.get(&key_for(&k, caller)?).cloned().or(default).unwrap_or_default())
            }
            "items" => {
                args.none(method)?;
                ok(PickleValue::List(map.iter().map(|(k, v)| PickleValue::Tuple(vec![k.clone(), v.clone()])).collect()))
            }
            "keys" => {
                args.none(method)?;
                ok(PickleValue::List(map.iter().map(|(k, _)| k.clone()).collect()))
            }
            "values" => {
                args.none(method)?;
                ok(PickleValue::List(map.iter().map(|(_, v)| v.clone()).collect()))
            }
            "pop" => {
                let [k, default] = args.bind(method, ["key", "default"], 1)?;
                let k = k.unwrap_or_default();
                match (map.remove(&key_for(&k, caller)?), default) {
                    (Some((_, v)), _) => ok(v),
                    (None, Some(default)) => ok(default),
                    (None, None) => Err(Raise::key_error(k)),
                }
            }
            "popitem" => {
                args.none(method)?;
                match map.pop_last() {
                    Some((k, v)) => ok(PickleValue::Tuple(vec![k, v])),
                    None => Err(Raise::key_error(PickleValue::from("popitem(): dictionary is empty"))),
                }
            }
            "setdefault" => {
                let [k, default] = args.bind(method, ["key", "default"], 1)?;
                let k = k.unwrap_or_default();
                let key = key_for(&k, caller)?;
                if map.get(&key).is_none() {
                    map.insert(key.clone(), k, default.unwrap_or_default());
                }
                ok(map.get(&key).cloned().unwrap_or_default())
            }
            "update" => {
                update(&mut map, args, caller)?;
                Outcome::none()
            }
            other => Err(no_method("dict", other)),
        }
    }

    fn repr(&self) -> String {
        dict_repr(&lock(&self.map))
    }

    fn value(&self) -> Result<PickleValue, Raise> {
        Ok(lock(&self.map).to_value())
    }
}

/// The error for a method an object does not have.
pub(crate) fn no_method(type_name: &str, method: &str) -> Raise {
    Raise::attribute_error(format!("'{type_name}' object has no attribute '{method}'"))
}

/// A managed `Namespace`: attributes set and read by name.
#[derive(Default)]
pub(crate) struct Namespace {
    attributes: Mutex<OrderedMap>,
}

impl Namespace {
    pub(crate) fn new(args: Args) -> Result<Namespace, Raise> {
        if !args.positional.is_empty() {
            return Err(Raise::type_error("Namespace() takes no positional arguments"));
        }
        let namespace = Namespace::default();
        {
            let mut attributes = lock(&namespace.attributes);
            for (name, value) in args.keywords {
                attributes.insert(Key::Str(name.clone()), PickleValue::String(name), value);
            }
        }
        Ok(namespace)
    }
}

fn attribute_name(value: PickleValue) -> Result<String, Raise> {
    match value {
        PickleValue::String(name) => Ok(name),
        other => Err(Raise::type_error(format!("attribute name must be string, not '{}'", other.type_name()))),
    }
}

fn no_attribute(name: &str) -> Raise {
    Raise::attribute_error(format!("'Namespace' object has no attribute '{name}'"))
}

impl Served for Namespace {
    fn typeid(&self) -> &str {
        "Namespace"
    }

    fn exposed(&self) -> &'static [&'static str] {
        &["__getattribute__", "__setattr__", "__delattr__"]
    }

    fn call(&self, method: &str, input: Input, _caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        let mut attributes = lock(&self.attributes);
        match method {
            "__getattribute__" => {
                let name = attribute_name(args.one(method, "name")?)?;
                attributes.get(&Key::Str(name.clone())).cloned().map(Outcome::Value).ok_or_else(|| no_attribute(&name))
            }
            "__setattr__" => {
                let [name, value] = args.bind(method, ["name", "value"], 2)?;
                let name = attribute_name(name.unwrap_or_default())?;
                attributes.insert(Key::Str(name.clone()), PickleValue::String(name), value.unwrap_or_default());
                Outcome::none()
            }
            "__delattr__" => {
                let name = attribute_name(args.one(method, "name")?)?;
                match attributes.remove(&Key::Str(name.clone())) {
                    Some(_) => Outcome::none(),
                    None => Err(no_attribute(&name)),
                }
            }
            "#names" => {
                args.none(method)?;
                ok(PickleValue::List(attributes.iter().map(|(k, _)| k.clone()).collect()))
            }
            other => Err(no_method("Namespace", other)),
        }
    }

    /// `Namespace(a=1, b='x')`, as CPython's `Namespace.__repr__` writes it (sorted, without
    /// names starting with `_`).
    fn repr(&self) -> String {
        let attributes = lock(&self.attributes);
        let mut items: Vec<String> = attributes
            .iter()
            .filter_map(|(k, v)| match k {
                PickleValue::String(name) if !name.starts_with('_') => Some(format!("{name}={v}")),
                _ => None,
            })
            .collect();
        items.sort();
        format!("Namespace({})", items.join(", "))
    }

    /// The namespace as CPython pickles its `Namespace`: `__new__`, then its attributes.
    fn value(&self) -> Result<PickleValue, Raise> {
        Ok(PickleValue::from(Object {
            class: "multiprocessing.managers.Namespace".into(),
            build: Build::New(Vec::new()),
            state: Some(lock(&self.attributes).to_value()),
        }))
    }
}

/// The iterator a dict's `__iter__` gives (CPython registers it as `'Iterator'`).
pub(crate) struct DictIterator {
    state: Mutex<IteratorState>,
}

struct IteratorState {
    items: std::vec::IntoIter<PickleValue>,
    /// The dict iterated and its resize count when the iterator was made.
    source: Option<(Arc<Mutex<OrderedMap>>, u64)>,
}

impl DictIterator {
    pub(crate) fn new(items: Vec<PickleValue>, source: Option<(Arc<Mutex<OrderedMap>>, u64)>) -> DictIterator {
        DictIterator { state: Mutex::new(IteratorState { items: items.into_iter(), source }) }
    }
}

impl Served for DictIterator {
    fn typeid(&self) -> &str {
        "Iterator"
    }

    fn exposed(&self) -> &'static [&'static str] {
        &["__next__", "send", "throw", "close"]
    }

    fn call(&self, method: &str, input: Input, _caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.args()?;
        let mut state = lock(&self.state);
        match method {
            "__next__" | "send" => {
                if let Some((map, resized)) = &state.source
                    && lock(map).resized != *resized
                {
                    state.items = Vec::new().into_iter();
                    return Err(Raise::runtime_error("dictionary changed size during iteration"));
                }
                drop(args);
                state.items.next().map(Outcome::Value).ok_or_else(|| Raise::new("builtins.StopIteration", Vec::new()))
            }
            "close" => {
                state.items = Vec::new().into_iter();
                Outcome::none()
            }
            "throw" => Err(Raise::type_error("this iterator cannot throw")),
            other => Err(no_method("Iterator", other)),
        }
    }

    fn repr(&self) -> String {
        format!("<iterator of {} more items>", lock(&self.state).items.len())
    }
}
