//! [`ShareableList`]: CPython's `multiprocessing.shared_memory.ShareableList`, in its exact
//! memory layout, so that Rust and Python processes share one list.
//!
//! The layout (what CPython 3.11 writes, checked byte for byte against the machine's python3 by
//! `tests/shm_interop.rs`, and 3.13's per the reference; native byte order, little-endian on x86-64
//! and arm64):
//!
//! ```text
//! offset 0             i64  N                       number of items
//! offset 8             i64  offsets[N + 1]          offsets[0] = 0; slot k is
//!                                                   data[offsets[k]..offsets[k + 1]]
//! data = 8 * (N + 2)   slots                        8 bytes for int, float, bool, None;
//!                                                   8 * (len / 8 + 1) for str and bytes
//! data + offsets[N]    char[8] format[N]            struct format of each item, NUL-padded:
//!                                                   "q", "d", "xxxxxxx?", "xxxxxx?x", "<n>s"
//! + 8 * N              i8 code[N]                   0 plain, 1 str, 2 bytes, 3 None
//! ```
//!
//! Differences from CPython, deliberate: a `str` slot is sized from its UTF-8 length (CPython
//! counts code points, so a non-ASCII string gets a slot too small for it and is cut, gh-145261);
//! trailing NUL bytes of a `str` or `bytes` item are lost on reading, as in CPython (the layout
//! cannot tell them from padding, gh-106939). Older CPython releases (3.8) stored each slot's size
//! where later ones store offsets; a list made by such a release is refused or misread.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::atomic_bytes as bytes;
use super::named::{CreateOptions, SharedMemory};
use crate::error::{Error, Result};

const SLOT: usize = 8;
const FORMAT_INT: &str = "q";
const FORMAT_FLOAT: &str = "d";
const FORMAT_BOOL: &str = "xxxxxxx?";
const FORMAT_NONE: &str = "xxxxxx?x";
const CODE_PLAIN: u8 = 0;
const CODE_STR: u8 = 1;
const CODE_BYTES: u8 = 2;
const CODE_NONE: u8 = 3;

/// One item of a [`ShareableList`]: the six types CPython's list stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Python `int` (64 bits; `struct` format `q`).
    Int(i64),
    /// Python `float` (`d`).
    Float(f64),
    /// Python `bool`.
    Bool(bool),
    /// Python `None`.
    None,
    /// Python `str` (UTF-8).
    Str(String),
    /// Python `bytes`.
    Bytes(Vec<u8>),
}

impl Item {
    /// Python's `==`: `True == 1 == 1.0`; `str` never equals `bytes`.
    fn py_eq(&self, other: &Item) -> bool {
        match (self.number(), other.number()) {
            (Some(a), Some(b)) => a == b,
            _ => self == other,
        }
    }

    fn number(&self) -> Option<f64> {
        match *self {
            Item::Int(v) => Some(v as f64),
            Item::Float(v) => Some(v),
            Item::Bool(v) => Some(f64::from(u8::from(v))),
            _ => None,
        }
    }

    /// The format and code CPython stores for this item, for a string slot of `slot` bytes.
    fn format_and_code(&self, slot: usize) -> (String, u8) {
        match self {
            Item::Int(_) => (FORMAT_INT.into(), CODE_PLAIN),
            Item::Float(_) => (FORMAT_FLOAT.into(), CODE_PLAIN),
            Item::Bool(_) => (FORMAT_BOOL.into(), CODE_PLAIN),
            Item::None => (FORMAT_NONE.into(), CODE_NONE),
            Item::Str(_) => (format!("{slot}s"), CODE_STR),
            Item::Bytes(_) => (format!("{slot}s"), CODE_BYTES),
        }
    }

    /// The bytes written into the slot (before NUL padding).
    fn encoded(&self) -> Vec<u8> {
        match self {
            Item::Int(v) => v.to_ne_bytes().to_vec(),
            Item::Float(v) => v.to_ne_bytes().to_vec(),
            Item::Bool(v) => [0, 0, 0, 0, 0, 0, 0, u8::from(*v)].to_vec(),
            Item::None => vec![0; SLOT],
            Item::Str(s) => s.as_bytes().to_vec(),
            Item::Bytes(b) => b.clone(),
        }
    }

    /// The slot size CPython allocates: 8, or `8 * (len / 8 + 1)` for strings and bytes.
    fn slot_size(&self) -> usize {
        match self {
            Item::Str(s) => SLOT * (s.len() / SLOT + 1),
            Item::Bytes(b) => SLOT * (b.len() / SLOT + 1),
            _ => SLOT,
        }
    }
}

impl Item {
    /// Python's `repr()` of the item (`'howdy'`, `b'HoWdY'`, `-273.154`), as a list shows its
    /// items.
    pub fn repr(&self) -> String {
        match self {
            Item::Str(s) => crate::pickle::str_repr(s),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Item {
    /// Python's `str()`: `print(sl[0])` shows `howdy`, not `'howdy'` (see [`Item::repr`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Int(v) => write!(f, "{v}"),
            Item::Float(v) => f.write_str(&crate::pickle::float_repr(*v)),
            Item::Bool(true) => f.write_str("True"),
            Item::Bool(false) => f.write_str("False"),
            Item::None => f.write_str("None"),
            Item::Str(s) => f.write_str(s),
            Item::Bytes(b) => f.write_str(&crate::pickle::bytes_repr(b)),
        }
    }
}

macro_rules! item_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => { $(
        impl From<$t> for Item {
            fn from($v: $t) -> Item {
                $e
            }
        }
    )* };
}

item_from!(
    i64 => |v| Item::Int(v),
    i32 => |v| Item::Int(i64::from(v)),
    u32 => |v| Item::Int(i64::from(v)),
    f64 => |v| Item::Float(v),
    bool => |v| Item::Bool(v),
    () => |_v| Item::None,
    &str => |v| Item::Str(v.to_owned()),
    String => |v| Item::Str(v),
    &[u8] => |v| Item::Bytes(v.to_vec()),
    Vec<u8> => |v| Item::Bytes(v),
);

impl<const N: usize> From<&[u8; N]> for Item {
    fn from(v: &[u8; N]) -> Item {
        Item::Bytes(v.to_vec())
    }
}

impl<T: Into<Item>> From<Option<T>> for Item {
    fn from(v: Option<T>) -> Item {
        v.map_or(Item::None, Into::into)
    }
}

/// A fixed-length list of mixed items (`i64`, `f64`, `bool`, `None`, `str`, `bytes`) in one
/// [`SharedMemory`] block, in CPython's layout (Python's
/// `multiprocessing.shared_memory.ShareableList`): a Python process attaches to it by name with
/// `ShareableList(name=...)`, and a Rust process attaches to one that Python made.
///
/// Items can be replaced (by any type; a `str` or `bytes` must fit the slot it was created with),
/// not added or removed. Like CPython's, the list has no lock: a reader racing a writer of the
/// same slot may see a mix of old and new (never undefined behaviour: the bytes are atomics).
/// Guard multi-step updates with a [`Lock`](crate::Lock). Cloning shares this process's mapping;
/// give a clone to a child as an argument and it arrives attached.
///
/// # Examples
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// use multiproc::ShareableList;
/// use multiproc::shm::Item;
///
/// let list = ShareableList::new([Item::from("howdy"), Item::from(100), Item::None])?;
/// let other = ShareableList::attach(list.name())?;
/// other.set(-2, 42)?;
/// assert_eq!(list.get(1)?, Item::Int(42));
/// assert!(list.set(0, "far too many characters").is_err());
/// assert_eq!(list.get(0)?, Item::from("howdy"));
/// list.shm().unlink()?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "shared_memory.ShareableList")]
#[derive(Clone)]
pub struct ShareableList {
    shm: SharedMemory,
    len: usize,
    /// Slot offsets from the start of the data area (`len + 1` of them).
    offsets: Vec<usize>,
}

impl ShareableList {
    /// A new list holding `items`, in a new block with a random name, tracked (CPython
    /// `ShareableList(sequence)`).
    pub fn new<I: Into<Item>>(items: impl IntoIterator<Item = I>) -> Result<ShareableList> {
        Self::with_options(items, SharedMemory::options())
    }

    /// A new list in a block named `name` (CPython `ShareableList(sequence, name=name)`).
    pub fn create_named<I: Into<Item>>(name: &str, items: impl IntoIterator<Item = I>) -> Result<ShareableList> {
        Self::with_options(items, SharedMemory::options().name(name))
    }

    /// A new list in a block created with `options` (a name, tracking off).
    pub fn with_options<I: Into<Item>>(
        items: impl IntoIterator<Item = I>,
        options: CreateOptions,
    ) -> Result<ShareableList> {
        let items: Vec<Item> = items.into_iter().map(Into::into).collect();
        let mut offsets = vec![0usize];
        for item in &items {
            offsets.push(offsets[offsets.len() - 1] + item.slot_size());
        }
        let n = items.len();
        let data = SLOT * (n + 2);
        let size = data + offsets[n] + SLOT * n + n;
        let shm = options.create(size)?;
        let list = ShareableList { shm, len: n, offsets };
        list.write_i64(0, n as i64);
        for (k, offset) in list.offsets.iter().enumerate() {
            list.write_i64(SLOT * (k + 1), *offset as i64);
        }
        for (k, item) in items.iter().enumerate() {
            list.store(k, item);
        }
        Ok(list)
    }

    /// Attaches to the list in block `name` (CPython `ShareableList(name=name)`); not tracked.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::attach`]; [`Error::InvalidState`] if the block does not hold a list.
    pub fn attach(name: &str) -> Result<ShareableList> {
        Self::from_shm(SharedMemory::attach(name)?)
    }

    /// Reads the list's shape from a block.
    fn from_shm(shm: SharedMemory) -> Result<ShareableList> {
        let bad =
            |what: &str| Error::InvalidState(format!("block {:?} does not hold a ShareableList: {what}", shm.name()));
        let mut word = [0u8; SLOT];
        shm.read_at(0, &mut word).map_err(|_| bad("too small"))?;
        let n = usize::try_from(i64::from_ne_bytes(word)).map_err(|_| bad("negative length"))?;
        let data = n
            .checked_add(2)
            .and_then(|k| k.checked_mul(SLOT))
            .filter(|&d| d <= shm.size())
            .ok_or_else(|| bad("length too large"))?;
        let mut offsets = Vec::with_capacity(n + 1);
        for k in 0..=n {
            shm.read_at(SLOT * (k + 1), &mut word).map_err(|_| bad("offsets cut short"))?;
            let offset = usize::try_from(i64::from_ne_bytes(word)).map_err(|_| bad("negative offset"))?;
            if offsets.last().is_some_and(|&last| offset < last) || (k == 0 && offset != 0) {
                return Err(bad("offsets out of order"));
            }
            offsets.push(offset);
        }
        let end = data.checked_add(offsets[n]).and_then(|e| e.checked_add((SLOT + 1) * n));
        if end.is_none_or(|e| e > shm.size()) {
            return Err(bad("items past the end of the block"));
        }
        Ok(ShareableList { shm, len: n, offsets })
    }

    /// The block that holds the list (CPython `.shm`): unlink it when done.
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// The block, to stop tracking it (a [`SharedMemoryManager`](crate::manager::SharedMemoryManager)
    /// takes it over).
    pub(crate) fn shm_mut(&mut self) -> &mut SharedMemory {
        &mut self.shm
    }

    /// The block's name, for [`attach`](Self::attach) or Python's `ShareableList(name=...)`.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The number of items (fixed at creation).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn data_start(&self) -> usize {
        SLOT * (self.len + 2)
    }

    fn formats_start(&self) -> usize {
        self.data_start() + self.offsets[self.len]
    }

    fn codes_start(&self) -> usize {
        self.formats_start() + SLOT * self.len
    }

    fn cells(&self, start: usize, len: usize) -> &[AtomicU8] {
        // Every range comes from the shape checked in `from_shm` or computed at creation.
        &self.shm.bytes()[start..start + len]
    }

    fn write_i64(&self, at: usize, value: i64) {
        bytes::copy_in(self.cells(at, SLOT), &value.to_ne_bytes());
    }

    /// The position Python's `list[index]` means (negative from the end).
    fn position(&self, index: isize) -> Result<usize> {
        let len = self.len as isize;
        let position = if index < 0 { index + len } else { index };
        if (0..len).contains(&position) {
            Ok(position as usize)
        } else {
            Err(Error::IndexOutOfRange { index: index as i64, len: self.len })
        }
    }

    /// Item `index` (negative counts from the end; CPython `sl[index]`).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`]; [`Error::InvalidState`] if the slot holds a format this crate
    /// does not know (written by something else than a `ShareableList`).
    pub fn get(&self, index: isize) -> Result<Item> {
        let k = self.position(index)?;
        let mut format = [0u8; SLOT];
        bytes::copy_out(self.cells(self.formats_start() + SLOT * k, SLOT), &mut format);
        let code = self.cells(self.codes_start() + k, 1)[0].load(Ordering::Relaxed);
        let slot_len = self.offsets[k + 1] - self.offsets[k];
        let mut value = vec![0u8; slot_len];
        bytes::copy_out(self.cells(self.data_start() + self.offsets[k], slot_len), &mut value);
        let format = format.split(|&b| b == 0).next().unwrap_or_default();
        match decode(format, code, &value) {
            Some(Ok(item)) => Ok(item),
            // CPython decodes strictly too (UnicodeDecodeError).
            Some(Err(e)) => Err(Error::Codec {
                action: "decode",
                detail: format!(
                    "item {k} of ShareableList {:?} is a str whose bytes are not valid UTF-8 ({e}; CPython raises \
                     UnicodeDecodeError here: a str cut in the middle of a character by a writer that did not \
                     check its length in bytes)",
                    self.name()
                ),
            }),
            None => Err(Error::InvalidState(format!(
                "item {k} of ShareableList {:?} has the unknown format {:?} (code {code})",
                self.name(),
                String::from_utf8_lossy(format)
            ))),
        }
    }

    /// Replaces item `index` (CPython `sl[index] = value`); any type may replace any other.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`]; [`Error::ItemTooLarge`] for a `str` or `bytes` longer than the
    /// slot (the old value stays).
    pub fn set(&self, index: isize, value: impl Into<Item>) -> Result<()> {
        let k = self.position(index)?;
        let value = value.into();
        let slot_len = self.offsets[k + 1] - self.offsets[k];
        if let Item::Str(_) | Item::Bytes(_) = value {
            let needed = value.encoded().len();
            if needed > slot_len {
                return Err(Error::ItemTooLarge { needed, available: slot_len });
            }
        }
        self.store(k, &value);
        Ok(())
    }

    /// Writes format, code and value of slot `k` (the value fits: checked by the caller).
    fn store(&self, k: usize, value: &Item) {
        let slot_len = self.offsets[k + 1] - self.offsets[k];
        let (format, code) = value.format_and_code(slot_len);
        let mut format_bytes = [0u8; SLOT];
        format_bytes[..format.len()].copy_from_slice(format.as_bytes());
        bytes::copy_in(self.cells(self.formats_start() + SLOT * k, SLOT), &format_bytes);
        self.cells(self.codes_start() + k, 1)[0].store(code, Ordering::Relaxed);
        let mut encoded = value.encoded();
        // Strings fill their whole slot (NUL-padded); the other items their first 8 bytes.
        encoded.resize(if matches!(code, CODE_STR | CODE_BYTES) { slot_len } else { SLOT }, 0);
        bytes::copy_in(self.cells(self.data_start() + self.offsets[k], encoded.len()), &encoded);
    }

    /// All items, in order (CPython `list(sl)`).
    pub fn to_vec(&self) -> Result<Vec<Item>> {
        (0..self.len as isize).map(|k| self.get(k)).collect()
    }

    /// How many items equal `value`, with Python's `==` (`True == 1 == 1.0`).
    pub fn count(&self, value: impl Into<Item>) -> Result<usize> {
        let value = value.into();
        Ok(self.to_vec()?.iter().filter(|item| item.py_eq(&value)).count())
    }

    /// The position of the first item equal to `value` (Python's `==`).
    ///
    /// # Errors
    ///
    /// [`Error::NotInList`] if there is none (CPython `ValueError`).
    pub fn index(&self, value: impl Into<Item>) -> Result<usize> {
        let value = value.into();
        self.to_vec()?.iter().position(|item| item.py_eq(&value)).ok_or_else(|| Error::NotInList(value.to_string()))
    }

    /// The `struct` formats of the items, concatenated (CPython `.format`), for example
    /// `"8s8sdqxxxxxx?xxxxxxxx?q"`.
    pub fn format(&self) -> String {
        let mut out = String::new();
        for k in 0..self.len {
            let mut format = [0u8; SLOT];
            bytes::copy_out(self.cells(self.formats_start() + SLOT * k, SLOT), &mut format);
            let format = format.split(|&b| b == 0).next().unwrap_or_default();
            out.push_str(&String::from_utf8_lossy(format));
        }
        out
    }
}

/// Decodes a slot: `None` for a format this crate does not know.
/// Decodes a slot: `None` for a format this crate does not know, an error for a `str` whose bytes
/// are not UTF-8.
fn decode(format: &[u8], code: u8, value: &[u8]) -> Option<std::result::Result<Item, std::str::Utf8Error>> {
    if code == CODE_NONE {
        return Some(Ok(Item::None));
    }
    let word = || -> Option<[u8; SLOT]> { value.get(..SLOT)?.try_into().ok() };
    Some(Ok(match format {
        b"q" => Item::Int(i64::from_ne_bytes(word()?)),
        b"d" => Item::Float(f64::from_ne_bytes(word()?)),
        b"xxxxxxx?" => Item::Bool(*value.get(7)? != 0),
        b"xxxxxx?x" => Item::None,
        _ => {
            let digits = format.strip_suffix(b"s")?;
            let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
            let raw = value.get(..len)?;
            let trimmed = &raw[..raw.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)];
            match code {
                CODE_STR => match std::str::from_utf8(trimmed) {
                    Ok(text) => Item::Str(text.to_string()),
                    Err(e) => return Some(Err(e)),
                },
                _ => Item::Bytes(trimmed.to_vec()),
            }
        }
    }))
}

impl fmt::Debug for ShareableList {
    /// CPython's repr: `ShareableList([...], name='psm_...')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items = match self.to_vec() {
            Ok(items) => items.iter().map(Item::repr).collect::<Vec<_>>().join(", "),
            Err(e) => format!("<{e}>"),
        };
        write!(f, "ShareableList([{items}], name='{}')", self.name())
    }
}

/// A list travels as its block (see [`SharedMemory`]'s serde): the receiver maps the same list.
impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(deserializer)?;
        ShareableList::from_shm(shm).map_err(serde::de::Error::custom)
    }
}
