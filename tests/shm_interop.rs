//! Shared memory with real CPython (the machine's python3): a Rust process and a Python process
//! share one `SharedMemory` block and one `ShareableList`, each side creating in turn, and a list
//! made by either side has the very same bytes. The Python halves are in
//! `tests/interop/shm_peer.py`; every test is skipped, with a note, when `python3` is missing.

mod common;

use common::{hex, python3_available};

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use multiproc::shm::Item;
use multiproc::{ShareableList, SharedMemory};

const WATCHDOG_SECS: u64 = 30;

macro_rules! require_python {
    () => {
        if !python3_available() {
            eprintln!("skipped: python3 is not installed");
            return;
        }
    };
}

/// A running `python3 tests/interop/shm_peer.py MODE ARGS`.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(mode: &str, args: &[&str]) -> Peer {
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/shm_peer.py"))
            .arg(mode)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer { child, stdin, stdout }
    }

    /// The next line the peer printed, as JSON.
    fn line(&mut self) -> serde_json_lite::Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from the peer");
        assert!(!line.is_empty(), "the peer ended early");
        serde_json_lite::parse(&line)
    }

    /// Lets the peer go on past its stdin wait.
    fn proceed(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the peer failed: {status}");
    }
}

/// Just enough JSON for the peer's flat objects (strings, numbers, null, booleans, arrays, and
/// objects): no dependency for it.
mod serde_json_lite {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Number(String),
        Str(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> &Value {
            match self {
                Value::Object(fields) => &fields.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key}")).1,
                other => panic!("not an object: {other:?}"),
            }
        }
        pub fn str(&self) -> &str {
            match self {
                Value::Str(s) => s,
                other => panic!("not a string: {other:?}"),
            }
        }
        pub fn int(&self) -> i64 {
            match self {
                Value::Number(n) => n.parse().unwrap(),
                other => panic!("not a number: {other:?}"),
            }
        }
    }

    pub fn parse(text: &str) -> Value {
        value(&mut text.trim().chars().peekable())
    }

    type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

    fn skip(chars: &mut Chars<'_>) {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',' || *c == ':') {
            chars.next();
        }
    }

    fn value(chars: &mut Chars<'_>) -> Value {
        skip(chars);
        match chars.peek().copied() {
            Some('{') => {
                chars.next();
                let mut fields = Vec::new();
                loop {
                    skip(chars);
                    if chars.peek() == Some(&'}') {
                        chars.next();
                        return Value::Object(fields);
                    }
                    let Value::Str(key) = value(chars) else { panic!("bad key") };
                    fields.push((key, value(chars)));
                }
            }
            Some('[') => {
                chars.next();
                let mut items = Vec::new();
                loop {
                    skip(chars);
                    if chars.peek() == Some(&']') {
                        chars.next();
                        return Value::Array(items);
                    }
                    items.push(value(chars));
                }
            }
            Some('"') => {
                chars.next();
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('u') => {
                                let hex: String = chars.by_ref().take(4).collect();
                                s.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                            }
                            Some('n') => s.push('\n'),
                            Some(other) => s.push(other),
                            None => break,
                        },
                        c => s.push(c),
                    }
                }
                Value::Str(s)
            }
            _ => {
                let mut word = String::new();
                while chars.peek().is_some_and(|c| !matches!(c, ',' | '}' | ']') && !c.is_whitespace()) {
                    word.push(chars.next().unwrap());
                }
                match word.as_str() {
                    "null" => Value::Null,
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::Number(word),
                }
            }
        }
    }
}

use serde_json_lite::Value;

/// The peer's JSON form of an item (see `encode` in the peer).
fn from_json(value: &Value) -> Item {
    match value {
        Value::Null => Item::None,
        Value::Bool(b) => Item::Bool(*b),
        Value::Number(n) if n.contains('.') => Item::Float(n.parse().unwrap()),
        Value::Number(n) => Item::Int(n.parse().unwrap()),
        Value::Str(s) => Item::Str(s.clone()),
        Value::Object(_) => match value {
            Value::Object(fields) if fields[0].0 == "b" => {
                let h = fields[0].1.str();
                Item::Bytes((0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect())
            }
            Value::Object(fields) => Item::Float(fields[0].1.str().parse().unwrap()),
            _ => unreachable!(),
        },
        Value::Array(_) => panic!("nested list"),
    }
}

fn items(value: &Value) -> Vec<Item> {
    match value {
        Value::Array(items) => items.iter().map(from_json).collect(),
        other => panic!("not a list: {other:?}"),
    }
}

#[test]
fn rust_attaches_to_a_block_python_created() {
    require_python!();
    common::watchdog("rust_attaches_to_a_block_python_created", WATCHDOG_SECS, || {
        let mut peer = Peer::start("create_shm", &["64"]);
        let hello = peer.line();
        let name = hello.get("name").str().to_owned();
        let shm = SharedMemory::attach(&name).unwrap();
        assert_eq!(shm.size() as i64, hello.get("size").int());
        assert_eq!(&shm.to_vec()[..5], b"howdy");
        shm.write_at(5, b"there").unwrap();
        peer.proceed();
        assert_eq!(peer.line().get("head").str(), hex(b"howdythere"));
        peer.finish();
        assert!(SharedMemory::attach(&name).is_err(), "python unlinked it");
    });
}

#[test]
fn python_attaches_to_a_block_rust_created() {
    require_python!();
    common::watchdog("python_attaches_to_a_block_rust_created", WATCHDOG_SECS, || {
        let shm = SharedMemory::create(32).unwrap();
        shm.write_at(0, b"howdy").unwrap();
        let mut peer = Peer::start("attach_shm", &[shm.name()]);
        let seen = peer.line();
        assert_eq!(seen.get("size").int(), 32);
        assert_eq!(seen.get("head").str(), hex(b"howdy"));
        peer.finish();
        assert_eq!(&shm.to_vec()[..10], b"howdyHOWDY");
        shm.unlink().unwrap();
    });
}

#[test]
fn rust_reads_and_writes_a_list_python_created() {
    require_python!();
    common::watchdog("rust_reads_and_writes_a_list_python_created", WATCHDOG_SECS, || {
        let mut peer = Peer::start("create_list", &[]);
        let hello = peer.line();
        let list = ShareableList::attach(hello.get("name").str()).unwrap();
        assert_eq!(list.to_vec().unwrap(), common::seed_003_items());
        assert_eq!(list.format(), hello.get("format").str());
        assert_eq!(list.format(), "8s8sdqxxxxxx?xxxxxxxx?q");
        list.set(-1, -999).unwrap();
        list.set(4, "some").unwrap();
        list.set(5, 2.5).unwrap();
        assert!(list.set(1, b"far too long".as_slice()).is_err());
        peer.proceed();
        let mut expected = common::seed_003_items();
        expected[6] = Item::Int(-999);
        expected[4] = Item::from("some");
        expected[5] = Item::Float(2.5);
        assert_eq!(items(peer.line().get("items")), expected);
        peer.finish();
    });
}

#[test]
fn python_reads_and_writes_a_list_rust_created() {
    require_python!();
    common::watchdog("python_reads_and_writes_a_list_rust_created", WATCHDOG_SECS, || {
        let list = ShareableList::new(common::seed_003_items()).unwrap();
        let mut peer = Peer::start("attach_list", &[list.name()]);
        let seen = peer.line();
        assert_eq!(items(seen.get("items")), common::seed_003_items());
        assert_eq!(seen.get("format").str(), "8s8sdqxxxxxx?xxxxxxxx?q");
        assert_eq!(seen.get("len").int(), 7);
        peer.finish();
        assert_eq!(list.get(-1).unwrap(), Item::Int(-999));
        assert_eq!(list.get(0).unwrap(), Item::from("hi"));
        assert_eq!(list.get(4).unwrap(), Item::from(b"bytes!"));
        assert_eq!(list.format(), "8s8sdq8sxxxxxxx?q");
        list.shm().unlink().unwrap();
    });
}

#[test]
fn a_list_has_the_same_bytes_as_cpythons() {
    require_python!();
    common::watchdog("a_list_has_the_same_bytes_as_cpythons", WATCHDOG_SECS, || {
        let mut peer = Peer::start("create_list", &[]);
        let theirs = peer.line();
        peer.proceed();
        peer.line();
        peer.finish();
        let ours = ShareableList::new(common::seed_003_items()).unwrap();
        assert_eq!(ours.shm().size(), 191);
        assert_eq!(hex(&ours.shm().to_vec()), theirs.get("raw").str());
        ours.shm().unlink().unwrap();

        let json = r#"[], ["a", "", "eight ch", "sixteen chars ok!", true, false, null, -1, 0.5]"#;
        for (k, case) in json.split("], [").enumerate() {
            let case = if k == 0 { "[]".to_owned() } else { format!("[{case}") };
            let mut peer = Peer::start("layout", &[&case]);
            let theirs = peer.line();
            peer.finish();
            let list = ShareableList::new(items(&serde_json_lite::parse(&case))).unwrap();
            assert_eq!(list.format(), theirs.get("format").str(), "{case}");
            assert_eq!(hex(&list.shm().to_vec()), theirs.get("raw").str(), "{case}");
            list.shm().unlink().unwrap();
        }
    });
}
