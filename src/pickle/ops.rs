//! A walk over a pickle's opcodes, without building any value: how each opcode's argument is laid
//! out, and how large the value would be once decoded.
//!
//! A pickle can refer to one object many times (`DUP`, memo `GET`s), and a decoder that builds
//! plain values (serde-pickle) copies it each time: 80 `DUP`s and tuples make 2^80 copies from a
//! few hundred bytes. [`check_expansion`] follows the object graph the pickle describes and refuses
//! one whose decoded size would pass a budget, before the decoder runs.

/// How an opcode's argument is laid out.
pub(crate) enum Arg {
    /// No argument.
    None,
    /// This many bytes.
    Fixed(usize),
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
    /// This many newline-terminated lines.
    Lines(usize),
}

/// The argument layout of `opcode`, `None` for a byte that is no opcode (protocols 0 to 5).
pub(crate) fn arg_of(opcode: u8) -> Option<Arg> {
    Some(match opcode {
        b'('
        | b'.'
        | b'0'
        | b'1'
        | b'2'
        | b'N'
        | b'R'
        | b'a'
        | b'b'
        | b'd'
        | b'}'
        | b'e'
        | b'l'
        | b']'
        | b'o'
        | b's'
        | b't'
        | b')'
        | b'u'
        | b'Q'
        | 0x81
        | 0x85..=0x89
        | 0x8f..=0x94
        | 0x97
        | 0x98 => Arg::None,
        b'F' | b'I' | b'L' | b'S' | b'V' | b'P' | b'g' | b'p' => Arg::Lines(1),
        b'c' | b'i' => Arg::Lines(2),
        b'K' | b'h' | b'q' | 0x80 | 0x82 => Arg::Fixed(1),
        b'M' | 0x83 => Arg::Fixed(2),
        b'J' | b'j' | b'r' | 0x84 => Arg::Fixed(4),
        b'G' | 0x95 => Arg::Fixed(8),
        b'U' | b'C' | 0x8c | 0x8a => Arg::Counted(1),
        b'T' | b'X' | b'B' | 0x8b => Arg::Counted(4),
        0x8d | 0x8e | 0x96 => Arg::Counted(8),
        _ => return None,
    })
}

/// The unsigned little-endian number in `bytes` (at most 8 of them).
pub(crate) fn little_endian(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |n, &b| (n << 8) | u64::from(b))
}

/// The opcodes of a pickle with their arguments, up to and including `STOP`; an error (what is
/// wrong) for an unknown opcode or an argument that runs past the end.
pub(crate) struct Ops<'a> {
    bytes: &'a [u8],
    at: usize,
    done: bool,
}

impl<'a> Ops<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Ops { bytes, at: 0, done: false }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(cut)?;
        let data = &self.bytes[self.at..end];
        self.at = end;
        Ok(data)
    }

    fn argument(&mut self, arg: Arg) -> Result<&'a [u8], String> {
        match arg {
            Arg::None => Ok(&[]),
            Arg::Fixed(n) => self.take(n),
            Arg::Counted(n) => {
                let len = usize::try_from(little_endian(self.take(n)?)).map_err(|_| cut())?;
                self.take(len)
            }
            Arg::Lines(n) => {
                let start = self.at;
                for _ in 0..n {
                    let rest = &self.bytes[self.at..];
                    let newline = rest.iter().position(|&b| b == b'\n').ok_or_else(cut)?;
                    self.at += newline + 1;
                }
                Ok(&self.bytes[start..self.at])
            }
        }
    }
}

fn cut() -> String {
    "the pickle ends in the middle of an opcode".into()
}

impl<'a> Iterator for Ops<'a> {
    type Item = Result<(u8, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let &opcode = self.bytes.get(self.at)?;
        self.at += 1;
        let step = match arg_of(opcode) {
            Some(arg) => self.argument(arg).map(|data| (opcode, data)),
            None => Err(format!("unknown pickle opcode 0x{opcode:02x}")),
        };
        self.done = step.is_err() || opcode == b'.';
        Some(step)
    }
}

/// The most a pickle may decode to: this many units (one per value, and one per 32 bytes of
/// strings), plus four per byte of the pickle itself.
const BASE_BUDGET: u64 = 1 << 22;

/// The deepest nesting of containers a pickle may decode to (CPython's own pickler stops near
/// 1000, at its recursion limit).
pub(crate) const MAX_DEPTH: u32 = 1000;

/// What the walk learned about a pickle that passed it.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The memo indices that some `GET` reads (the decoder keeps only these).
    pub(crate) gets: std::collections::HashSet<u64>,
}

/// Whether a pickle cannot expand nor nest deeply, seen in one pass without building anything:
/// no object is used twice (no memo `GET`, no `DUP`: each value is built once, so the value is no
/// larger than the pickle) and there are too few containers to nest past [`MAX_DEPTH`]. Most
/// messages are so (a manager's requests); the others take the full walk. Malformed ones are
/// left to the decoder, which reports them.
fn plainly_small(bytes: &[u8]) -> bool {
    let mut containers = 0u32;
    for op in Ops::new(bytes) {
        let Ok((opcode, _)) = op else { return false };
        match opcode {
            b'g' | b'h' | b'j' | b'2' => return false,
            b']' | b'}' | b')' | b'(' | 0x8f | 0x85..=0x87 | b'R' | 0x81 | 0x92 | b'i' | b'o' | 0x91 => {
                containers += 1;
                if containers > MAX_DEPTH {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Refuses a pickle whose decoded value would be much larger than the pickle (shared objects
/// copied by the decoder), contain itself or nest deeper than [`MAX_DEPTH`], and one whose
/// opcodes do not fit together. Costs time and memory in proportion to the pickle's length.
pub(crate) fn check_expansion(bytes: &[u8]) -> Result<Scan, String> {
    if plainly_small(bytes) {
        return Ok(Scan::default());
    }
    let budget = BASE_BUDGET.saturating_add(4u64.saturating_mul(bytes.len() as u64));
    let graph = Graph::of(bytes)?;
    match graph.root {
        Some(root) => graph.size(root, budget).map(|_| Scan { gets: graph.gets }),
        None => Err("the pickle has no value (no STOP after a value)".into()),
    }
}

/// The objects a pickle builds and which contain which: each object's own weight and the objects
/// it holds, as references (an object held twice is listed twice).
struct Graph {
    objects: Vec<Object>,
    root: Option<usize>,
    gets: std::collections::HashSet<u64>,
}

struct Object {
    own: u64,
    children: Vec<usize>,
}

#[derive(Clone, Copy)]
enum Entry {
    Mark,
    Object(usize),
}

/// The pickle machine's state while [`Graph::of`] walks the opcodes.
struct Machine {
    objects: Vec<Object>,
    stack: Vec<Entry>,
    memo: std::collections::HashMap<u64, usize>,
    memo_next: u64,
    gets: std::collections::HashSet<u64>,
}

fn underflow() -> String {
    "the pickle takes more from its stack than it put there".into()
}

impl Machine {
    fn new_object(&mut self, own: u64, children: Vec<usize>) -> usize {
        self.objects.push(Object { own, children });
        self.objects.len() - 1
    }

    fn push_new(&mut self, own: u64, children: Vec<usize>) {
        let id = self.new_object(own, children);
        self.stack.push(Entry::Object(id));
    }

    fn pop(&mut self) -> Result<usize, String> {
        match self.stack.pop() {
            Some(Entry::Object(id)) => Ok(id),
            _ => Err(underflow()),
        }
    }

    fn top(&self) -> Result<usize, String> {
        match self.stack.last() {
            Some(Entry::Object(id)) => Ok(*id),
            _ => Err(underflow()),
        }
    }

    /// Pops everything above the topmost mark, and the mark.
    fn pop_to_mark(&mut self) -> Result<Vec<usize>, String> {
        let mark = self.stack.iter().rposition(|e| matches!(e, Entry::Mark)).ok_or_else(underflow)?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items.into_iter().filter_map(|e| if let Entry::Object(id) = e { Some(id) } else { None }).collect())
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<usize>, String> {
        let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
        items.reverse();
        Ok(items)
    }

    /// Adds `items` to the object on top of the stack (APPEND, SETITEM, BUILD and their kin).
    fn extend_top(&mut self, items: Vec<usize>) -> Result<(), String> {
        let top = self.top()?;
        self.objects[top].children.extend(items);
        Ok(())
    }

    fn memo_key(opcode: u8, data: &[u8]) -> Result<u64, String> {
        match opcode {
            b'p' | b'g' => std::str::from_utf8(data)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| "a memo index that is not a number".to_string()),
            _ => Ok(little_endian(data)),
        }
    }

    fn step(&mut self, opcode: u8, data: &[u8]) -> Result<(), String> {
        match opcode {
            b'(' => self.stack.push(Entry::Mark),
            b'0' => {
                self.stack.pop().ok_or_else(underflow)?;
            }
            b'1' => {
                self.pop_to_mark()?;
            }
            b'2' => {
                let top = self.top()?;
                self.stack.push(Entry::Object(top));
            }
            b'p' | b'q' | b'r' => {
                let key = Self::memo_key(opcode, data)?;
                let top = self.top()?;
                self.memo.insert(key, top);
            }
            0x94 => {
                let top = self.top()?;
                self.memo.insert(self.memo_next, top);
                self.memo_next += 1;
            }
            b'g' | b'h' | b'j' => {
                let key = Self::memo_key(opcode, data)?;
                let id = *self.memo.get(&key).ok_or_else(|| format!("memo index {key} used before it was set"))?;
                self.gets.insert(key);
                self.stack.push(Entry::Object(id));
            }
            b'a' | b'b' => {
                let item = self.pop()?;
                self.extend_top(vec![item])?;
            }
            b's' => {
                let pair = self.pop_n(2)?;
                self.extend_top(pair)?;
            }
            b'e' | b'u' | 0x90 => {
                let items = self.pop_to_mark()?;
                self.extend_top(items)?;
            }
            b'd' | b'l' | b't' | b'o' | b'i' | 0x91 => {
                let items = self.pop_to_mark()?;
                self.push_new(1, items);
            }
            0x85..=0x87 => {
                let items = self.pop_n(usize::from(opcode - 0x84))?;
                self.push_new(1, items);
            }
            b'R' | 0x81 => {
                let items = self.pop_n(2)?;
                self.push_new(1, items);
            }
            0x92 => {
                let items = self.pop_n(3)?;
                self.push_new(1, items);
            }
            0x93 => {
                self.pop_n(2)?;
                self.push_new(1, Vec::new());
            }
            b'Q' => {
                let id = self.pop()?;
                self.push_new(1, vec![id]);
            }
            // Protocol, frame and read-only-buffer markers leave the stack alone.
            0x80 | 0x95 | 0x98 | b'.' => {}
            // Everything else pushes one new value: scalars, strings, bytes, empty containers,
            // globals, extension codes, persistent ids, out-of-band buffers.
            _ => self.push_new(1 + data.len() as u64 / 32, Vec::new()),
        }
        Ok(())
    }
}

impl Graph {
    fn of(bytes: &[u8]) -> Result<Graph, String> {
        let mut machine = Machine {
            objects: Vec::new(),
            stack: Vec::new(),
            memo: std::collections::HashMap::new(),
            memo_next: 0,
            gets: std::collections::HashSet::new(),
        };
        let mut root = None;
        for op in Ops::new(bytes) {
            let (opcode, data) = op?;
            machine.step(opcode, data)?;
            if opcode == b'.' {
                root = Some(machine.top()?);
            }
        }
        Ok(Graph { objects: machine.objects, root, gets: machine.gets })
    }

    /// The decoded size of `root` (its weight and, recursively, its children's, each as often as
    /// it is held), or an error once it passes `budget` or an object holds itself.
    fn size(&self, root: usize, budget: u64) -> Result<u64, String> {
        const UNKNOWN: u64 = u64::MAX;
        const VISITING: u64 = u64::MAX - 1;
        let mut sizes = vec![UNKNOWN; self.objects.len()];
        let mut depths = vec![0u32; self.objects.len()];
        // Depth-first, without recursion: (object, whether its children are done).
        let mut work = vec![(root, false)];
        while let Some((id, children_done)) = work.pop() {
            if children_done {
                let mut total = self.objects[id].own;
                let mut depth = 0;
                for &child in &self.objects[id].children {
                    total = total.saturating_add(sizes[child]);
                    depth = depth.max(depths[child]);
                }
                if !self.objects[id].children.is_empty() {
                    depth += 1;
                }
                if depth > MAX_DEPTH {
                    return Err(format!("the pickle nests containers more than {MAX_DEPTH} deep"));
                }
                depths[id] = depth;
                if total > budget {
                    return Err(format!(
                        "the pickle would decode to more than {budget} values (it repeats shared objects); \
                         refused before decoding"
                    ));
                }
                sizes[id] = total;
                continue;
            }
            match sizes[id] {
                VISITING => return Err("the pickle holds an object inside itself (a recursive structure)".into()),
                UNKNOWN => {
                    sizes[id] = VISITING;
                    work.push((id, true));
                    for &child in &self.objects[id].children {
                        match sizes[child] {
                            UNKNOWN => work.push((child, false)),
                            VISITING => {
                                return Err("the pickle holds an object inside itself (a recursive structure)".into());
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(sizes[root])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_pickles_pass() {
        // CPython 3.11: pickle.dumps(('#RETURN', [1, 2.5, 'x', b'y', None, {'k': (1,)}]), 4)
        let bytes = b"\x80\x04\x950\x00\x00\x00\x00\x00\x00\x00\x8c\x07#RETURN\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00\x8c\x01x\x94C\x01y\x94N}\x94\x8c\x01k\x94K\x01\x85\x94se\x86\x94.";
        assert!(check_expansion(bytes).is_ok());
    }

    #[test]
    fn repeated_duplication_is_refused() {
        // (x, x) of (x, x) of ... 64 times: 2^64 values from 130 bytes.
        let mut bytes = b"\x80\x04N".to_vec();
        for _ in 0..64 {
            bytes.extend(b"2\x86");
        }
        bytes.push(b'.');
        let error = check_expansion(&bytes).unwrap_err();
        assert!(error.contains("would decode to more than"), "{error}");
    }

    #[test]
    fn growing_a_shared_list_after_sharing_it_is_counted() {
        // L = []; T = (L, L) twenty times nested; then 1000 items appended to L; T is the value.
        let mut bytes = b"\x80\x04]\x94".to_vec();
        for _ in 0..20 {
            bytes.extend(b"2\x86");
        }
        bytes.extend(b"h\x00(");
        for _ in 0..1000 {
            bytes.extend(b"N");
        }
        bytes.extend(b"e0.");
        let error = check_expansion(&bytes).unwrap_err();
        assert!(error.contains("would decode to more than"), "{error}");
    }

    #[test]
    fn a_list_holding_itself_is_refused() {
        let bytes = b"\x80\x04]\x94h\x00a.";
        let error = check_expansion(bytes).unwrap_err();
        assert!(error.contains("recursive"), "{error}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = b"\x80\x04N".to_vec();
        bytes.extend(std::iter::repeat_n(0x85, 1200));
        bytes.push(b'.');
        let error = check_expansion(&bytes).unwrap_err();
        assert!(error.contains("deep"), "{error}");
    }

    #[test]
    fn gets_are_reported() {
        // [x, x] with x = 'a' memoized as 0.
        let scan = check_expansion(b"\x80\x04]\x94(\x8c\x01a\x94h\x01e.").unwrap();
        assert_eq!(scan.gets, std::collections::HashSet::from([1]));
    }

    #[test]
    fn malformed_pickles_are_errors() {
        for bytes in [&b""[..], b".", b"a.", b"\xff", b"\x8c\x05ab", b"h\x07.", b"(t"] {
            let decoded = crate::pickle::decode::decode(bytes, crate::pickle::decode::Mode::Objects);
            assert!(decoded.is_err(), "{bytes:?}: {decoded:?}");
        }
        // Those the walk sees as malformed it refuses itself.
        for bytes in [&b"\xff"[..], b"\x8c\x05ab", b"h\x07."] {
            assert!(check_expansion(bytes).is_err(), "{bytes:?}");
        }
    }
}
