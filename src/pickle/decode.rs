//! The unpickler: pickle bytes (protocols 0 to 5, as CPython 2.7 to 3.13 write them) to a
//! [`PickleValue`], for bytes from any peer: whatever they are, a value or an error, never a
//! panic.
//!
//! [`ops::check_expansion`](super::ops::check_expansion) walks the opcodes first: a pickle that
//! would decode to far more than its size, hold itself or nest too deep is refused before
//! anything is built, and the walk says which memo entries are read back, so that only those are
//! kept (CPython's pickler memoizes nearly everything; few entries are read).
//!
//! Python objects are rebuilt by calling a class or function the pickle names. The classes with a
//! [`PickleValue`] variant (`set`, `frozenset`, `bytearray`, `complex`, `datetime`'s classes,
//! `decimal.Decimal`, `uuid.UUID`) and the helpers CPython's pickler uses for them
//! (`_codecs.encode`, `copyreg._reconstructor`) are known here. Any other name is refused
//! ([`Mode::Values`]), naming it, or kept as an [`Object`] ([`Mode::Objects`], for the manager's
//! own messages: exceptions, tokens, slices).

use std::collections::{HashMap, HashSet};

use super::ops::{Ops, check_expansion, little_endian};
use super::value::{BigInt, Build, Date, DateTime, Object, PickleValue, Time, TimeDelta, TimeZone};

/// What the decoder does with an object of a class it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Refuse it, naming the class (values from peers).
    Values,
    /// Keep it as an [`Object`] (the manager protocols' own messages).
    Objects,
}

/// Decodes one pickle.
pub(crate) fn decode(bytes: &[u8], mode: Mode) -> Result<PickleValue, String> {
    let scan = check_expansion(bytes)?;
    decode_scanned(bytes, &scan.gets, mode)
}

/// Decodes a pickle that passed [`check_expansion`], which found the memo entries in `gets`.
pub(crate) fn decode_scanned(bytes: &[u8], gets: &HashSet<u64>, mode: Mode) -> Result<PickleValue, String> {
    let mut machine = Machine { mode, gets, stack: Vec::new(), memo: HashMap::new(), memo_next: 0, next_uid: 0 };
    for op in Ops::new(bytes) {
        let (opcode, data) = op?;
        if opcode == b'.' {
            let value = machine.pop_value()?;
            if mode == Mode::Values
                && let Some(object) = value.find_object()
            {
                return Err(refusal(&object.class));
            }
            return Ok(value);
        }
        machine.step(opcode, data)?;
    }
    Err("the pickle ends without its STOP opcode".into())
}

/// The error for a class this crate cannot turn into a value.
pub(crate) fn refusal(class: &str) -> String {
    format!(
        "the pickle holds {class}, which has no counterpart here (the values that decode: None, bool, int, \
         float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset, datetime.date, \
         datetime.time, datetime.datetime, datetime.timedelta, decimal.Decimal, uuid.UUID); send it as one of \
         those (a dict of its fields, a string)"
    )
}

/// A class or function a pickle names.
#[derive(Debug, Clone, PartialEq)]
enum Global {
    Set,
    FrozenSet,
    ByteArray,
    Bytes,
    Complex,
    Object,
    List,
    Tuple,
    Dict,
    Date,
    Time,
    DateTime,
    TimeDelta,
    TimeZone,
    Decimal,
    Uuid,
    CodecsEncode,
    Reconstructor,
    /// Any other, by `module.qualname`.
    Other(String),
}

impl Global {
    fn of(module: &str, name: &str) -> Global {
        match (module, name) {
            ("builtins" | "__builtin__", "set") => Global::Set,
            ("builtins" | "__builtin__", "frozenset") => Global::FrozenSet,
            ("builtins" | "__builtin__", "bytearray") => Global::ByteArray,
            ("builtins" | "__builtin__", "bytes") => Global::Bytes,
            ("builtins" | "__builtin__", "complex") => Global::Complex,
            ("builtins" | "__builtin__", "object") => Global::Object,
            ("builtins" | "__builtin__", "list") => Global::List,
            ("builtins" | "__builtin__", "tuple") => Global::Tuple,
            ("builtins" | "__builtin__", "dict") => Global::Dict,
            ("datetime", "date") => Global::Date,
            ("datetime", "time") => Global::Time,
            ("datetime", "datetime") => Global::DateTime,
            ("datetime", "timedelta") => Global::TimeDelta,
            ("datetime", "timezone") => Global::TimeZone,
            ("decimal" | "_decimal" | "_pydecimal", "Decimal") => Global::Decimal,
            ("uuid", "UUID") => Global::Uuid,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("copyreg" | "copy_reg", "_reconstructor") => Global::Reconstructor,
            (module, name) => {
                // The Python 2 names CPython writes for protocols 0 to 2 (its `_compat_pickle`).
                let (module, name) = match (module, name) {
                    ("__builtin__", "xrange") => ("builtins", "range"),
                    ("__builtin__", "unicode" | "basestring") => ("builtins", "str"),
                    ("__builtin__", "long") => ("builtins", "int"),
                    ("__builtin__", "unichr") => ("builtins", "chr"),
                    ("__builtin__", "reduce") => ("functools", "reduce"),
                    ("__builtin__" | "exceptions", name) => ("builtins", name),
                    ("copy_reg", name) => ("copyreg", name),
                    ("Queue", name) => ("queue", name),
                    ("itertools", "izip") => ("builtins", "zip"),
                    ("itertools", "imap") => ("builtins", "map"),
                    ("itertools", "ifilter") => ("builtins", "filter"),
                    other => other,
                };
                Global::Other(format!("{module}.{name}"))
            }
        }
    }

    fn name(&self) -> String {
        match self {
            Global::Set => "builtins.set".into(),
            Global::FrozenSet => "builtins.frozenset".into(),
            Global::ByteArray => "builtins.bytearray".into(),
            Global::Bytes => "builtins.bytes".into(),
            Global::Complex => "builtins.complex".into(),
            Global::Object => "builtins.object".into(),
            Global::List => "builtins.list".into(),
            Global::Tuple => "builtins.tuple".into(),
            Global::Dict => "builtins.dict".into(),
            Global::Date => "datetime.date".into(),
            Global::Time => "datetime.time".into(),
            Global::DateTime => "datetime.datetime".into(),
            Global::TimeDelta => "datetime.timedelta".into(),
            Global::TimeZone => "datetime.timezone".into(),
            Global::Decimal => "decimal.Decimal".into(),
            Global::Uuid => "uuid.UUID".into(),
            Global::CodecsEncode => "_codecs.encode".into(),
            Global::Reconstructor => "copyreg._reconstructor".into(),
            Global::Other(name) => name.clone(),
        }
    }

    fn from_name(name: &str) -> Global {
        match name.rsplit_once('.') {
            Some((module, name)) => Global::of(module, name),
            None => Global::Other(name.to_string()),
        }
    }
}

/// A value on the stack or in the memo: a value, or a class or function not called (yet).
#[derive(Debug, Clone)]
enum Node {
    Value(PickleValue),
    Global(Global),
}

impl Node {
    fn into_value(self) -> PickleValue {
        match self {
            Node::Value(value) => value,
            Node::Global(global) => {
                PickleValue::Object(Box::new(Object { class: global.name(), build: Build::Reference, state: None }))
            }
        }
    }

    /// Whether opcodes may change the value after it was made (so a memo entry must wait until
    /// it is complete).
    fn is_mutable(&self) -> bool {
        matches!(
            self,
            Node::Value(PickleValue::List(_) | PickleValue::Dict(_) | PickleValue::Set(_) | PickleValue::Object(_))
        )
    }
}

struct Entry {
    node: Node,
    uid: u64,
    /// Memo indices that are to hold this value once it is complete.
    memo_ids: Vec<u64>,
    /// A copy of it was taken (or it is one): changing it now would make the copies differ.
    frozen: bool,
}

enum Slot {
    Mark,
    Entry(Entry),
}

enum Memo {
    Ready(Node),
    /// The value is still on the stack (being built), as the entry with this uid.
    OnStack(u64),
}

struct Machine<'a> {
    mode: Mode,
    gets: &'a HashSet<u64>,
    stack: Vec<Slot>,
    memo: HashMap<u64, Memo>,
    memo_next: u64,
    next_uid: u64,
}

fn underflow() -> String {
    "the pickle takes more from its stack than it put there".into()
}

fn shared_change() -> String {
    "the pickle changes an object after sharing it (not something CPython's pickler writes); refused".into()
}

fn text(data: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(data)
        .map(|s| s.trim_end_matches(['\n', '\r']))
        .map_err(|_| "a text opcode that is not text".into())
}

impl Machine<'_> {
    fn push(&mut self, node: Node) {
        self.next_uid += 1;
        self.stack.push(Slot::Entry(Entry { node, uid: self.next_uid, memo_ids: Vec::new(), frozen: false }));
    }

    fn push_value(&mut self, value: PickleValue) {
        self.push(Node::Value(value));
    }

    /// Takes an entry off the stack for good: memo indices waiting for it get their copy.
    fn finish(&mut self, entry: Entry) -> Node {
        for id in &entry.memo_ids {
            self.memo.insert(*id, Memo::Ready(entry.node.clone()));
        }
        entry.node
    }

    fn pop_entry(&mut self) -> Result<Entry, String> {
        match self.stack.pop() {
            Some(Slot::Entry(entry)) => Ok(entry),
            _ => Err(underflow()),
        }
    }

    fn pop_node(&mut self) -> Result<Node, String> {
        let entry = self.pop_entry()?;
        Ok(self.finish(entry))
    }

    fn pop_value(&mut self) -> Result<PickleValue, String> {
        self.pop_node().map(Node::into_value)
    }

    /// Everything above the topmost mark, and the mark, off the stack.
    fn pop_to_mark(&mut self) -> Result<Vec<PickleValue>, String> {
        let mark = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or_else(underflow)?;
        let slots = self.stack.split_off(mark + 1);
        self.stack.pop();
        let mut values = Vec::with_capacity(slots.len());
        for slot in slots {
            if let Slot::Entry(entry) = slot {
                values.push(self.finish(entry).into_value());
            }
        }
        Ok(values)
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<PickleValue>, String> {
        let mut values = (0..n).map(|_| self.pop_value()).collect::<Result<Vec<_>, _>>()?;
        values.reverse();
        Ok(values)
    }

    /// The value on top of the stack, to be changed (APPEND, SETITEM, BUILD...).
    fn top_mut(&mut self) -> Result<&mut PickleValue, String> {
        match self.stack.last_mut() {
            Some(Slot::Entry(Entry { frozen: true, .. })) => Err(shared_change()),
            Some(Slot::Entry(Entry { node: Node::Value(value), .. })) => Ok(value),
            Some(Slot::Entry(Entry { node: Node::Global(global), .. })) => {
                Err(format!("the pickle changes {} as if it were a container", global.name()))
            }
            _ => Err(underflow()),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), String> {
        let global = Global::of(module, name);
        if let (Mode::Values, Global::Other(name)) = (self.mode, &global) {
            return Err(refusal(name));
        }
        self.push(Node::Global(global));
        Ok(())
    }

    fn memo_key(opcode: u8, data: &[u8]) -> Result<u64, String> {
        match opcode {
            b'p' | b'g' => text(data)?.trim().parse().map_err(|_| "a memo index that is not a number".into()),
            _ => Ok(little_endian(data)),
        }
    }

    fn put(&mut self, key: u64) -> Result<(), String> {
        if !self.gets.contains(&key) {
            return Ok(());
        }
        let Some(Slot::Entry(entry)) = self.stack.last_mut() else { return Err(underflow()) };
        if entry.node.is_mutable() {
            entry.memo_ids.push(key);
            let uid = entry.uid;
            self.memo.insert(key, Memo::OnStack(uid));
        } else {
            let node = entry.node.clone();
            self.memo.insert(key, Memo::Ready(node));
        }
        Ok(())
    }

    fn get(&mut self, key: u64) -> Result<(), String> {
        let node = match self.memo.get(&key) {
            Some(Memo::Ready(node)) => node.clone(),
            Some(Memo::OnStack(uid)) => {
                let uid = *uid;
                let entry = self
                    .stack
                    .iter_mut()
                    .rev()
                    .find_map(|s| match s {
                        Slot::Entry(e) if e.uid == uid => Some(e),
                        _ => None,
                    })
                    .ok_or_else(|| format!("memo index {key} refers to an object no longer there"))?;
                entry.frozen = true;
                entry.node.clone()
            }
            None => return Err(format!("memo index {key} used before it was set")),
        };
        self.push(node);
        if let Some(Slot::Entry(entry)) = self.stack.last_mut() {
            entry.frozen = true;
        }
        Ok(())
    }

    fn step(&mut self, opcode: u8, data: &[u8]) -> Result<(), String> {
        match opcode {
            0x80 => {
                if data[0] > 5 {
                    return Err(format!("pickle protocol {} is newer than this decoder (0 to 5)", data[0]));
                }
            }
            0x95 => {}
            b'(' => self.stack.push(Slot::Mark),
            b'0' => {
                self.stack.pop().ok_or_else(underflow)?;
            }
            b'1' => {
                self.pop_to_mark()?;
            }
            b'2' => {
                let Some(Slot::Entry(entry)) = self.stack.last_mut() else { return Err(underflow()) };
                entry.frozen = true;
                let node = entry.node.clone();
                self.push(node);
                if let Some(Slot::Entry(entry)) = self.stack.last_mut() {
                    entry.frozen = true;
                }
            }
            // Scalars.
            b'N' => self.push_value(PickleValue::None),
            0x88 => self.push_value(PickleValue::Bool(true)),
            0x89 => self.push_value(PickleValue::Bool(false)),
            b'I' => {
                let value = match text(data)?.trim() {
                    "00" => PickleValue::Bool(false),
                    "01" => PickleValue::Bool(true),
                    digits => parse_int(digits)?,
                };
                self.push_value(value);
            }
            b'L' => {
                let digits = text(data)?.trim();
                self.push_value(parse_int(digits.strip_suffix('L').unwrap_or(digits))?);
            }
            b'J' => {
                self.push_value(PickleValue::I64(i64::from(i32::from_le_bytes([data[0], data[1], data[2], data[3]]))))
            }
            b'K' => self.push_value(PickleValue::I64(i64::from(data[0]))),
            b'M' => self.push_value(PickleValue::I64(i64::from(u16::from_le_bytes([data[0], data[1]])))),
            0x8a | 0x8b => self.push_value(PickleValue::from(BigInt::from_le_bytes(data))),
            b'F' => {
                let text = text(data)?.trim();
                let x = text.parse::<f64>().map_err(|_| format!("a float that does not parse: {text:?}"))?;
                self.push_value(PickleValue::F64(x));
            }
            b'G' => {
                let bits = data.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
                self.push_value(PickleValue::F64(f64::from_bits(bits)));
            }
            // Strings and bytes.
            b'X' | 0x8c | 0x8d => {
                let s = std::str::from_utf8(data).map_err(|_| {
                    "a str that is not valid UTF-8 (Python strings with lone surrogates have no Rust counterpart)"
                        .to_string()
                })?;
                self.push_value(PickleValue::String(s.to_string()));
            }
            b'V' => self.push_value(PickleValue::String(raw_unicode_escape(data)?)),
            b'S' => self.push_value(PickleValue::String(ascii(&unquote(text(data)?)?)?)),
            b'T' | b'U' => self.push_value(PickleValue::String(ascii(data)?)),
            b'B' | b'C' | 0x8e => self.push_value(PickleValue::Bytes(data.to_vec())),
            0x96 => self.push_value(PickleValue::ByteArray(data.to_vec())),
            // Containers.
            b']' => self.push_value(PickleValue::List(Vec::new())),
            b'}' => self.push_value(PickleValue::Dict(Vec::new())),
            b')' => self.push_value(PickleValue::Tuple(Vec::new())),
            0x8f => self.push_value(PickleValue::Set(Vec::new())),
            b'l' => {
                let items = self.pop_to_mark()?;
                self.push_value(PickleValue::List(items));
            }
            b't' => {
                let items = self.pop_to_mark()?;
                self.push_value(PickleValue::Tuple(items));
            }
            0x91 => {
                let items = self.pop_to_mark()?;
                self.push_value(PickleValue::FrozenSet(items));
            }
            b'd' => {
                let items = self.pop_to_mark()?;
                let dict = pairs(items)?;
                self.push_value(PickleValue::Dict(dict));
            }
            0x85..=0x87 => {
                let items = self.pop_n(usize::from(opcode - 0x84))?;
                self.push_value(PickleValue::Tuple(items));
            }
            b'a' => {
                let item = self.pop_value()?;
                self.extend(vec![item])?;
            }
            b'e' => {
                let items = self.pop_to_mark()?;
                self.extend(items)?;
            }
            0x90 => {
                let items = self.pop_to_mark()?;
                match self.top_mut()? {
                    PickleValue::Set(set) => set.extend(items),
                    other => return Err(format!("ADDITEMS on a {}", other.type_name())),
                }
            }
            b's' => {
                let items = self.pop_n(2)?;
                self.set_items(items)?;
            }
            b'u' => {
                let items = self.pop_to_mark()?;
                self.set_items(items)?;
            }
            // The memo.
            b'p' | b'q' | b'r' => {
                let key = Self::memo_key(opcode, data)?;
                self.put(key)?;
            }
            0x94 => {
                let key = self.memo_next;
                self.memo_next += 1;
                self.put(key)?;
            }
            b'g' | b'h' | b'j' => {
                let key = Self::memo_key(opcode, data)?;
                self.get(key)?;
            }
            // Objects.
            b'c' => {
                let text = std::str::from_utf8(data).map_err(|_| "a GLOBAL that is not text".to_string())?;
                let mut lines = text.lines();
                let (module, name) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
                self.global(module, name)?;
            }
            0x93 => {
                let name = self.pop_value()?;
                let module = self.pop_value()?;
                match (module, name) {
                    (PickleValue::String(module), PickleValue::String(name)) => self.global(&module, &name)?,
                    _ => return Err("STACK_GLOBAL of names that are not strings".into()),
                }
            }
            b'R' | 0x81 => {
                let args = self.pop_value()?;
                let callable = self.pop_node()?;
                let args = tuple_items(args, "the arguments of a call")?;
                let value = self.apply(callable, args, opcode == 0x81)?;
                self.push_value(value);
            }
            0x92 => {
                let kwargs = self.pop_value()?;
                let args = self.pop_value()?;
                let class = self.pop_node()?;
                if !matches!(&kwargs, PickleValue::Dict(d) if d.is_empty()) {
                    return Err("NEWOBJ_EX with keyword arguments is not supported".into());
                }
                let value = self.apply(class, tuple_items(args, "the arguments of NEWOBJ_EX")?, true)?;
                self.push_value(value);
            }
            b'i' => {
                let text = std::str::from_utf8(data).map_err(|_| "an INST that is not text".to_string())?;
                let mut lines = text.lines();
                let (module, name) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
                let global = Global::of(module, name);
                if let (Mode::Values, Global::Other(name)) = (self.mode, &global) {
                    return Err(refusal(name));
                }
                let args = self.pop_to_mark()?;
                let value = self.apply(Node::Global(global), args, false)?;
                self.push_value(value);
            }
            b'o' => {
                let mut items = self.pop_to_mark()?;
                if items.is_empty() {
                    return Err(underflow());
                }
                let class = items.remove(0);
                let value = self.apply(Node::Value(class), items, false)?;
                self.push_value(value);
            }
            b'b' => {
                let state = self.pop_value()?;
                let top = self.top_mut()?;
                let taken = std::mem::take(top);
                *top = build(taken, state)?;
            }
            b'P' | b'Q' => {
                return Err("persistent ids (Pickler.persistent_id) are not supported".into());
            }
            0x82..=0x84 => {
                return Err("extension codes (copyreg.add_extension) are not supported".into());
            }
            0x97 | 0x98 => {
                return Err("out-of-band buffers (protocol 5's buffer_callback) are not supported".into());
            }
            _ => return Err(format!("unknown pickle opcode 0x{opcode:02x}")),
        }
        Ok(())
    }

    fn extend(&mut self, items: Vec<PickleValue>) -> Result<(), String> {
        match self.top_mut()? {
            PickleValue::List(list) => {
                list.extend(items);
                Ok(())
            }
            other => Err(format!("APPEND on a {}", other.type_name())),
        }
    }

    fn set_items(&mut self, items: Vec<PickleValue>) -> Result<(), String> {
        let new = pairs(items)?;
        match self.top_mut()? {
            PickleValue::Dict(dict) => {
                dict.extend(new);
                Ok(())
            }
            other => Err(format!("SETITEM on a {}", other.type_name())),
        }
    }

    /// `callable(*args)` (`new`: `callable.__new__(callable, *args)`).
    fn apply(&self, callable: Node, args: Vec<PickleValue>, new: bool) -> Result<PickleValue, String> {
        let global = match callable {
            Node::Global(global) => global,
            Node::Value(PickleValue::Object(object)) if object.build == Build::Reference => {
                Global::from_name(&object.class)
            }
            Node::Value(other) => {
                return Err(format!("the pickle calls a {}, which is not callable", other.type_name()));
            }
        };
        if let Some(value) = construct(&global, &args)? {
            return Ok(value);
        }
        if let Global::Reconstructor = global
            && let [PickleValue::Object(class), PickleValue::Object(base), state] = &args[..]
            && class.build == Build::Reference
            && base.build == Build::Reference
        {
            // copyreg._reconstructor(class, base, state): `base.__new__(class, state)`.
            let class_global = Global::from_name(&class.class);
            if base.class == "builtins.object" {
                return self.apply(Node::Global(class_global), Vec::new(), true);
            }
            if base.class == class.class {
                return self.apply(Node::Global(class_global), vec![state.clone()], false);
            }
        }
        if let (Mode::Values, Global::Other(name)) = (self.mode, &global) {
            return Err(refusal(name));
        }
        let build = if new { Build::New(args) } else { Build::Call(args) };
        Ok(PickleValue::Object(Box::new(Object { class: global.name(), build, state: None })))
    }
}

fn tuple_items(value: PickleValue, what: &str) -> Result<Vec<PickleValue>, String> {
    match value {
        PickleValue::Tuple(items) => Ok(items),
        other => Err(format!("{what} are a {}, not a tuple", other.type_name())),
    }
}

fn pairs(items: Vec<PickleValue>) -> Result<Vec<(PickleValue, PickleValue)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("a dict with a key and no value".into());
    }
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        pairs.push((k, v));
    }
    Ok(pairs)
}

fn parse_int(digits: &str) -> Result<PickleValue, String> {
    if let Ok(small) = digits.parse::<i64>() {
        return Ok(PickleValue::I64(small));
    }
    BigInt::parse_decimal(digits)
        .map(PickleValue::from)
        .ok_or_else(|| format!("an integer that does not parse: {digits:?}"))
}

/// The bytes of a Python 2 `str` as Python 3 reads them by default (ASCII).
fn ascii(bytes: &[u8]) -> Result<String, String> {
    if bytes.is_ascii() {
        Ok(String::from_utf8_lossy(bytes).into_owned())
    } else {
        Err("an 8-bit string that is not ASCII (a Python 2 str); Python 3 refuses it too".into())
    }
}

/// The bytes of a protocol-0 `STRING` argument: a quoted literal with Python 2's escapes.
fn unquote(literal: &str) -> Result<Vec<u8>, String> {
    let inner = literal
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| literal.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
        .ok_or_else(|| "a STRING that is not quoted".to_string())?;
    let bytes = inner.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let escape = *bytes.get(i + 1).ok_or_else(|| "a STRING that ends in a backslash".to_string())?;
        i += 2;
        match escape {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'0'..=b'7' => {
                let mut n = u32::from(escape - b'0');
                for _ in 0..2 {
                    match bytes.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            n = n * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(n as u8);
            }
            b'x' => {
                let hex = inner.get(i..i + 2).ok_or_else(|| "a bad \\x escape".to_string())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "a bad \\x escape".to_string())?);
                i += 2;
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// A protocol-0 `UNICODE` argument: Latin-1 text with `\uXXXX` and `\UXXXXXXXX` escapes.
fn raw_unicode_escape(line: &[u8]) -> Result<String, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let chars: Vec<char> = line.iter().map(|&b| char::from(b)).collect();
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let width = match chars.get(i + 1) {
            Some('u') if c == '\\' => 4,
            Some('U') if c == '\\' => 8,
            _ => 0,
        };
        if width == 0 {
            out.push(c);
            i += 1;
            continue;
        }
        let hex: String =
            chars.get(i + 2..i + 2 + width).ok_or_else(|| "a bad \\u escape".to_string())?.iter().collect();
        let code = u32::from_str_radix(&hex, 16).map_err(|_| "a bad \\u escape".to_string())?;
        out.push(char::from_u32(code).ok_or_else(|| "a str with lone surrogates (no Rust counterpart)".to_string())?);
        i += 2 + width;
    }
    Ok(out)
}

fn int_of(value: &PickleValue) -> Option<i64> {
    match value {
        PickleValue::I64(i) => Some(*i),
        PickleValue::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn float_of(value: &PickleValue) -> Option<f64> {
    match value {
        PickleValue::F64(x) => Some(*x),
        PickleValue::I64(i) => Some(*i as f64),
        PickleValue::Int(i) => Some(i.to_f64()),
        PickleValue::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn bad_args(class: &str, args: &[PickleValue]) -> String {
    format!("{class} with arguments {} is not a value this decoder builds", PickleValue::Tuple(args.to_vec()))
}

/// The value `global(*args)` for the classes this crate knows; `None` for others.
fn construct(global: &Global, args: &[PickleValue]) -> Result<Option<PickleValue>, String> {
    use PickleValue as V;
    let bad = || bad_args(&global.name(), args);
    Ok(Some(match (global, args) {
        (Global::Set, []) => V::Set(Vec::new()),
        (Global::Set, [V::List(items) | V::Tuple(items) | V::Set(items) | V::FrozenSet(items)]) => {
            V::Set(items.clone())
        }
        (Global::FrozenSet, []) => V::FrozenSet(Vec::new()),
        (Global::FrozenSet, [V::List(items) | V::Tuple(items) | V::Set(items) | V::FrozenSet(items)]) => {
            V::FrozenSet(items.clone())
        }
        (Global::ByteArray, []) => V::ByteArray(Vec::new()),
        (Global::ByteArray, [V::Bytes(b) | V::ByteArray(b)]) => V::ByteArray(b.clone()),
        (Global::ByteArray, [V::String(s), V::String(encoding)]) => V::ByteArray(latin1(s, encoding)?),
        // A manager's server sends dict views as `list(view)`.
        (Global::List, []) => V::List(Vec::new()),
        (Global::List, [V::List(items) | V::Tuple(items) | V::Set(items) | V::FrozenSet(items)]) => {
            V::List(items.clone())
        }
        (Global::Tuple, []) => V::Tuple(Vec::new()),
        (Global::Tuple, [V::List(items) | V::Tuple(items)]) => V::Tuple(items.clone()),
        (Global::Dict, []) => V::Dict(Vec::new()),
        (Global::Dict, [V::Dict(pairs)]) => V::Dict(pairs.clone()),
        (Global::Bytes, []) => V::Bytes(Vec::new()),
        (Global::Bytes, [V::Bytes(b)]) => V::Bytes(b.clone()),
        (Global::CodecsEncode, [V::String(s), V::String(encoding)]) => V::Bytes(latin1(s, encoding)?),
        (Global::Complex, []) => V::Complex { re: 0.0, im: 0.0 },
        (Global::Complex, [re]) => V::Complex { re: float_of(re).ok_or_else(bad)?, im: 0.0 },
        (Global::Complex, [re, im]) => {
            V::Complex { re: float_of(re).ok_or_else(bad)?, im: float_of(im).ok_or_else(bad)? }
        }
        (Global::Decimal, [V::String(text)]) => V::Decimal(text.clone()),
        (Global::Decimal, [V::I64(i)]) => V::Decimal(i.to_string()),
        (Global::Decimal, []) => V::Decimal("0".into()),
        (Global::TimeDelta, [days, rest @ ..]) if rest.len() <= 2 => {
            let part = |i: usize| rest.get(i).map_or(Some(0), int_of);
            let (days, seconds, micros) =
                (int_of(days).ok_or_else(bad)?, part(0).ok_or_else(bad)?, part(1).ok_or_else(bad)?);
            let total = (i128::from(days) * 86_400 + i128::from(seconds)) * 1_000_000 + i128::from(micros);
            V::TimeDelta(TimeDelta::from_microseconds(total).ok_or_else(bad)?)
        }
        (Global::TimeDelta, []) => V::TimeDelta(TimeDelta::default()),
        (Global::TimeZone, [V::TimeDelta(offset)]) => timezone_object(TimeZone { offset: *offset, name: None }),
        (Global::TimeZone, [V::TimeDelta(offset), V::String(name)]) => {
            timezone_object(TimeZone { offset: *offset, name: Some(name.clone()) })
        }
        (Global::Date, [V::Bytes(state)]) if state.len() == 4 => {
            let date = Date { year: u16::from_be_bytes([state[0], state[1]]), month: state[2], day: state[3] };
            V::Date(checked(date.is_valid(), date, bad)?)
        }
        (Global::Date, [y, m, d]) => {
            let date = date_of(y, m, d).ok_or_else(bad)?;
            V::Date(date)
        }
        (Global::Time, [V::Bytes(state), tz @ ..]) if state.len() == 6 && tz.len() <= 1 => {
            let time = time_of(state, tz.first()).ok_or_else(bad)?;
            V::Time(checked(time.is_valid(), time, bad)?)
        }
        (Global::DateTime, [V::Bytes(state), tz @ ..]) if state.len() == 10 && tz.len() <= 1 => {
            let fold = state[2] >> 7;
            let date = Date { year: u16::from_be_bytes([state[0], state[1]]), month: state[2] & 0x7f, day: state[3] };
            let mut time = time_of(&state[4..10], tz.first()).ok_or_else(bad)?;
            time.fold = fold;
            let datetime = DateTime { date, time };
            V::DateTime(checked(date.is_valid() && datetime.time.is_valid(), datetime, bad)?)
        }
        (Global::Uuid, []) => {
            V::Object(Box::new(Object { class: global.name(), build: Build::New(Vec::new()), state: None }))
        }
        _ => return Ok(None),
    }))
}

fn checked<T>(valid: bool, value: T, bad: impl Fn() -> String) -> Result<T, String> {
    if valid { Ok(value) } else { Err(bad()) }
}

fn date_of(y: &PickleValue, m: &PickleValue, d: &PickleValue) -> Option<Date> {
    let date = Date {
        year: u16::try_from(int_of(y)?).ok()?,
        month: u8::try_from(int_of(m)?).ok()?,
        day: u8::try_from(int_of(d)?).ok()?,
    };
    date.is_valid().then_some(date)
}

/// A time from its 6-byte pickled state and optional tzinfo.
fn time_of(state: &[u8], tz: Option<&PickleValue>) -> Option<Time> {
    let tzinfo = match tz {
        None | Some(PickleValue::None) => None,
        Some(PickleValue::Object(object)) if object.class == "datetime.timezone" => Some(timezone_of(object)?),
        Some(_) => return None,
    };
    Some(Time {
        hour: state[0] & 0x7f,
        minute: state[1],
        second: state[2],
        microsecond: u32::from_be_bytes([0, state[3], state[4], state[5]]),
        fold: state[0] >> 7,
        tzinfo,
    })
}

/// A `datetime.timezone` is no value of its own: it stands as an object until a time takes it.
fn timezone_object(tz: TimeZone) -> PickleValue {
    let mut args = vec![PickleValue::TimeDelta(tz.offset)];
    if let Some(name) = tz.name {
        args.push(PickleValue::String(name));
    }
    PickleValue::Object(Box::new(Object { class: "datetime.timezone".into(), build: Build::Call(args), state: None }))
}

fn timezone_of(object: &Object) -> Option<TimeZone> {
    match object.args() {
        [PickleValue::TimeDelta(offset)] => Some(TimeZone { offset: *offset, name: None }),
        [PickleValue::TimeDelta(offset), PickleValue::String(name)] => {
            Some(TimeZone { offset: *offset, name: Some(name.clone()) })
        }
        _ => None,
    }
}

/// Python 3 encodes `bytes` for protocols 0 to 2 as `_codecs.encode(text, 'latin1')`.
fn latin1(text: &str, encoding: &str) -> Result<Vec<u8>, String> {
    if !matches!(encoding, "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1") {
        return Err(format!("bytes encoded as {encoding:?}, which this decoder does not read"));
    }
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| "latin-1 text with a character above U+00FF".to_string()))
        .collect()
}

/// The pickle's BUILD: `value` gets its `state`.
fn build(value: PickleValue, state: PickleValue) -> Result<PickleValue, String> {
    let PickleValue::Object(mut object) = value else {
        return Err(format!("BUILD on a {}", value.type_name()));
    };
    if object.class == "uuid.UUID"
        && let PickleValue::Dict(pairs) = &state
    {
        let int = pairs.iter().find(|(k, _)| matches!(k, PickleValue::String(k) if k == "int")).map(|(_, v)| v);
        return match int {
            Some(PickleValue::I64(i)) => {
                u128::try_from(*i).map(PickleValue::Uuid).map_err(|_| "a negative UUID".into())
            }
            Some(PickleValue::Int(big)) => {
                u128::try_from(big).map(PickleValue::Uuid).map_err(|_| "a UUID beyond 128 bits".into())
            }
            _ => Err("a uuid.UUID without its integer".into()),
        };
    }
    object.state = Some(state);
    Ok(PickleValue::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One list of every kind of value, as CPython 3.11 pickles it with protocols 0, 2, 4 and 5.
    const SAMPLES: [&str; 4] = [
        "286c70300a635f5f6275696c74696e5f5f0a7365740a70310a28286c70320a49310a6149320a617470330a5270340a61635f5f6275696c74696e5f5f0a66726f7a656e7365740a70350a28286c70360a49330a617470370a5270380a61635f5f6275696c74696e5f5f0a6279746561727261790a70390a28635f636f646563730a656e636f64650a7031300a285661620a7031310a566c6174696e310a7031320a747031330a527031340a747031350a527031360a61635f5f6275696c74696e5f5f0a636f6d706c65780a7031370a2846312e300a46322e300a747031380a527031390a61636461746574696d650a6461746574696d650a7032300a286731300a285607e801020304055c75303030305c7530303030060a7032310a6731320a747032320a527032330a636461746574696d650a74696d657a6f6e650a7032340a28636461746574696d650a74696d6564656c74610a7032350a2849300a49333630300a49300a747032360a527032370a56580a7032380a747032390a527033300a747033310a527033320a61636461746574696d650a646174650a7033330a286731300a285607e801020a7033340a6731320a747033350a527033360a747033370a527033380a61636461746574696d650a74696d650a7033390a286731300a285601025c75303030305c75303030305c75303030305c75303030300a7034300a6731320a747034310a527034320a747034330a527034340a616732350a28492d310a49330a49300a747034350a527034360a6163646563696d616c0a446563696d616c0a7034370a2856312e350a7034380a747034390a527035300a6163636f70795f7265670a5f7265636f6e7374727563746f720a7035310a2863757569640a555549440a7035320a635f5f6275696c74696e5f5f0a6f626a6563740a7035330a4e747035340a527035350a28647035360a56696e740a7035370a49370a7362614c313138303539313632303731373431313330333432344c0a61462d312e350a6156e90a7035380a616731300a28565c75303030300a7035390a6731320a747036300a527036310a61286c7036320a286c7036330a49310a6161286c7036340a49310a6161612e",
        "80025d710028635f5f6275696c74696e5f5f0a7365740a71015d7102284b014b0265857103527104635f5f6275696c74696e5f5f0a66726f7a656e7365740a71055d71064b0361857107527108635f5f6275696c74696e5f5f0a6279746561727261790a7109635f636f646563730a656e636f64650a710a58020000006162710b58060000006c6174696e31710c86710d52710e85710f527110635f5f6275696c74696e5f5f0a636f6d706c65780a7111473ff0000000000000474000000000000000867112527113636461746574696d650a6461746574696d650a7114680a580b00000007c3a801020304050000067115680c867116527117636461746574696d650a74696d657a6f6e650a7118636461746574696d650a74696d6564656c74610a71194b004d100e4b0087711a52711b580100000058711c86711d52711e86711f527120636461746574696d650a646174650a7121680a580500000007c3a801027122680c867123527124857125527126636461746574696d650a74696d650a7127680a58060000000102000000007128680c86712952712a85712b52712c68194affffffff4b034b0087712d52712e63646563696d616c0a446563696d616c0a712f5803000000312e35713085713152713263757569640a555549440a7133298171347d71355803000000696e7471364b0773628a0900000000000000004047bff80000000000005802000000c3a97137680a5801000000007138680c86713952713a5d713b285d713c4b01615d713d4b016165652e",
        "8004955a010000000000005d94288f94284b014b0290284b0391948c086275696c74696e73948c0962797465617272617994939443026162948594529468038c07636f6d706c6578949394473ff0000000000000474000000000000000869452948c086461746574696d65948c086461746574696d65949394430a07e8010203040500000694680d8c0874696d657a6f6e65949394680d8c0974696d6564656c74619493944b004d100e4b00879452948c0158948694529486945294680d8c0464617465949394430407e801029485945294680d8c0474696d659493944306810200000000948594529468144affffffff4b034b00879452948c07646563696d616c948c07446563696d616c9493948c03312e3594859452948c0475756964948c04555549449493942981947d948c03696e74944b0773628a0900000000000000004047bff80000000000008c02c3a994430100945d94285d944b01615d944b016165652e",
        "8005954d010000000000005d94288f94284b014b0290284b0391949602000000000000006162948c086275696c74696e73948c07636f6d706c6578949394473ff0000000000000474000000000000000869452948c086461746574696d65948c086461746574696d65949394430a07e801020304050000069468098c0874696d657a6f6e6594939468098c0974696d6564656c74619493944b004d100e4b00879452948c015894869452948694529468098c0464617465949394430407e80102948594529468098c0474696d659493944306810200000000948594529468104affffffff4b034b00879452948c07646563696d616c948c07446563696d616c9493948c03312e3594859452948c0475756964948c04555549449493942981947d948c03696e74944b0773628a0900000000000000004047bff80000000000008c02c3a994430100945d94285d944b01615d944b016165652e",
    ];

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn every_protocol_gives_the_same_value() {
        let values: Vec<PickleValue> = SAMPLES.iter().map(|s| decode(&unhex(s), Mode::Values).unwrap()).collect();
        // Protocols before 4 drop datetime.time's fold.
        let text = "[{1, 2}, frozenset({3}), bytearray(b'ab'), (1+2j), datetime.datetime(2024, 1, 2, 3, 4, 5, 6, \
                    tzinfo=datetime.timezone(datetime.timedelta(seconds=3600), 'X')), datetime.date(2024, 1, 2), \
                    datetime.time(1, 2, fold=1), datetime.timedelta(days=-1, seconds=3), Decimal('1.5'), \
                    UUID('00000000-0000-0000-0000-000000000007'), 1180591620717411303424, -1.5, 'é', b'\\x00', \
                    [[1], [1]]]";
        assert_eq!(values[2].to_string(), text);
        assert_eq!(values[3], values[2]);
        assert_eq!(values[0].to_string(), text.replace(", fold=1", ""));
        assert_eq!(values[1], values[0]);
    }

    /// Truncations, bit flips and random bytes give values or errors, never a panic.
    #[test]
    fn garbage_never_panics() {
        let mut next = crate::test_support::xorshift(0x9e37_79b9_7f4a_7c15);
        for sample in SAMPLES {
            let real = unhex(sample);
            for len in 0..real.len() {
                let _ = decode(&real[..len], Mode::Values);
                let _ = decode(&real[..len], Mode::Objects);
            }
            for i in 0..real.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut copy = real.clone();
                    copy[i] ^= flip;
                    let _ = decode(&copy, Mode::Objects);
                }
            }
        }
        for _ in 0..5000 {
            let len = (next() % 48) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            crate::pickle::fuzz_pickle(&bytes);
        }
        for sample in SAMPLES {
            let real = unhex(sample);
            crate::pickle::fuzz_pickle(&real);
            for i in 0..real.len() {
                let mut copy = real.clone();
                copy[i] ^= 0x01;
                crate::pickle::fuzz_pickle(&copy);
            }
        }
    }

    #[test]
    fn changing_a_shared_list_after_sharing_it_is_refused() {
        // L = []; (L, None) made and dropped; then an APPEND to L through the memo.
        let error = decode(b"\x80\x04]\x94h\x00N\x86\x940h\x00Na0h\x01.", Mode::Values).unwrap_err();
        assert!(error.contains("after sharing"), "{error}");
    }

    #[test]
    fn unknown_classes_are_named() {
        let error = decode(b"\x80\x04\x8c\tfractions\x94\x8c\x08Fraction\x94\x93\x94.", Mode::Values).unwrap_err();
        assert!(error.contains("fractions.Fraction"), "{error}");
        let kept = decode(b"\x80\x04\x8c\tfractions\x94\x8c\x08Fraction\x94\x93\x94.", Mode::Objects).unwrap();
        assert_eq!(kept.to_string(), "fractions.Fraction");
    }
}
