//! A Rust process using objects served by a CPython manager (`multiproc::manager::cpython`),
//! against the machine's python3 (`tests/interop/manager_peer.py`): queues and dicts both ways,
//! Python exceptions, a wrong key, references released, a server killed mid-call. Tests that need
//! python3 are skipped, with a note, when it is missing.

#![cfg(feature = "pickle")]

mod common;

use common::{hex, python3_available};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use multiproc::Error;
use multiproc::connection::{Address, Listener, PickleValue};
use multiproc::manager::cpython::{PyDict, PyManager};

/// The watchdog of every test.
const WATCHDOG_SECS: u64 = 30;
const KEY: &[u8] = b"cpython-manager-\x00\xff";

/// A running `python3 tests/interop/manager_peer.py`; killed when dropped.
struct PyServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    address: Address,
}

impl PyServer {
    /// Starts the server, or returns `None` (after a note) when there is no `python3`.
    fn start(test: &str, family: &str) -> Option<PyServer> {
        if !python3_available() {
            eprintln!("note: python3 not found; skipping {test}");
            return None;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/manager_peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([family, &hex(KEY)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the server's address");
        assert!(line.ends_with('\n'), "the python manager exited without printing its address");
        let address = line.trim_end().parse().expect("parse the server's address");
        Some(PyServer { child, stdin, stdout, address })
    }

    fn connect(&self) -> PyManager {
        PyManager::connect(&self.address, KEY).expect("connect to the python manager")
    }

    /// Sends a command and returns the server's one-line answer.
    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write to the python manager");
        self.line()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the python manager's stdout");
        assert!(line.ends_with('\n'), "the python manager exited");
        line.trim_end().to_string()
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rust_and_python_share_a_queue() {
    common::watchdog("rust_and_python_share_a_queue", WATCHDOG_SECS, || {
        let Some(mut server) = PyServer::start("rust_and_python_share_a_queue", "tcp") else { return };
        let manager = server.connect();
        let queue = manager.queue("get_queue", ()).unwrap();
        assert_eq!(queue.typeid(), "get_queue");
        assert!(queue.exposed().iter().any(|m| m == "put"), "{:?}", queue.exposed());
        queue.put(&(1, "one")).unwrap();
        queue.put(&vec![1.5, 2.5]).unwrap();
        assert_eq!(server.ask("queue"), "(1, 'one')");
        assert_eq!(server.ask("queue"), "[1.5, 2.5]");
        assert_eq!(server.ask("put 'from python'"), "ok");
        assert_eq!(server.ask("put (7, b'\\x00\\xff')"), "ok");
        assert_eq!(queue.get::<String>().unwrap(), "from python");
        assert_eq!(
            queue.call_value("get", ()).unwrap(),
            PickleValue::Tuple(vec![PickleValue::I64(7), PickleValue::Bytes(b"\x00\xff".to_vec())])
        );
        assert!(queue.is_empty().unwrap());
        assert!(matches!(queue.get_nowait::<i64>(), Err(Error::Empty)));
        assert!(matches!(queue.get_timeout::<i64>(Duration::from_millis(50)), Err(Error::Empty)));
    });
}

#[test]
fn rust_and_python_share_a_dict() {
    common::watchdog("rust_and_python_share_a_dict", WATCHDOG_SECS, || {
        let Some(mut server) = PyServer::start("rust_and_python_share_a_dict", "tcp") else { return };
        let manager = server.connect();
        let dict = manager.dict("get_dict", ()).unwrap();
        dict.set(&"a", &1).unwrap();
        dict.set(&"b", &vec!["x", "y"]).unwrap();
        dict.set(&"c", &()).unwrap();
        assert_eq!(server.ask("dict"), "[('a', 1), ('b', ['x', 'y']), ('c', None)]");
        assert_eq!(dict.get::<_, i64>(&"a").unwrap(), Some(1));
        assert_eq!(dict.get::<_, i64>(&"zz").unwrap(), None);
        assert_eq!(dict.get_item::<_, Vec<String>>(&"b").unwrap(), ["x", "y"]);
        assert!(dict.contains_key(&"c").unwrap());
        assert_eq!(dict.len().unwrap(), 3);
        let mut keys: Vec<String> = dict.keys().unwrap();
        keys.sort();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(dict.remove::<_, i64>(&"a").unwrap(), Some(1));
        assert_eq!(dict.remove::<_, i64>(&"a").unwrap(), None);
        // The dynamic form keeps Python's shapes.
        let items = dict.call_value("items", ()).unwrap();
        assert!(matches!(&items, PickleValue::List(pairs) if pairs.len() == 2), "{items}");
        // Keyword arguments.
        let mut kwargs = BTreeMap::new();
        kwargs.insert("d", 4);
        dict.call_with_kwargs::<_, _, ()>("update", (), &kwargs).unwrap();
        assert_eq!(dict.get::<_, i64>(&"d").unwrap(), Some(4));
        let copy: BTreeMap<String, PickleValue> = dict.get_value().unwrap();
        assert_eq!(copy.keys().collect::<Vec<_>>(), ["b", "c", "d"]);
        assert!(dict.repr().unwrap().starts_with('{'));
    });
}

#[test]
fn python_exceptions_arrive_with_their_class_and_message() {
    common::watchdog("python_exceptions_arrive_with_their_class_and_message", WATCHDOG_SECS, || {
        let Some(server) = PyServer::start("python_exceptions_arrive_with_their_class_and_message", "tcp") else {
            return;
        };
        let manager = server.connect();
        let store = manager.create("Store", ()).unwrap();
        store.call::<_, ()>("set", ("k", 5)).unwrap();
        assert_eq!(store.call::<_, i64>("get", ("k",)).unwrap(), 5);
        match store.call::<_, i64>("get", ("missing",)) {
            Err(Error::PythonException { exception, message }) => {
                assert_eq!(exception, "KeyError");
                assert_eq!(message, "missing");
            }
            other => panic!("expected a KeyError, got {other:?}"),
        }
        // A wrong argument count is a TypeError raised by the call.
        let err = store.call::<_, i64>("get", ()).unwrap_err();
        assert!(matches!(&err, Error::PythonException { exception, .. } if exception == "TypeError"), "{err}");
        // Not exposed: the server's traceback.
        let err = store.call::<_, ()>("_private", ()).unwrap_err();
        assert!(matches!(&err, Error::Remote(text) if text.contains("not in exposed")), "{err}");
        // A result pickle cannot carry.
        let err = store.call::<_, ()>("func", ()).unwrap_err();
        assert!(matches!(&err, Error::Remote(text) if text.contains("could not be pickled")), "{err}");
        // An instance of a plain Python class is refused, naming its class (it arrived as a dict
        // of its attributes before, silently).
        let err = store.call::<_, PickleValue>("me", ()).unwrap_err();
        assert!(matches!(&err, Error::Codec { detail, .. } if detail.contains("__main__.Store")), "{err}");
        // A decimal.Decimal is a value of its own (it was refused before).
        let price: PickleValue = store.call("price", ()).unwrap();
        assert!(matches!(&price, PickleValue::Decimal(_)), "{price:?}");
        // An unknown typeid.
        let err = manager.create("NoSuchType", ()).unwrap_err();
        assert!(matches!(&err, Error::Remote(text) if text.contains("NoSuchType")), "{err}");
        // The channel still works after all those errors.
        assert_eq!(store.call::<_, i64>("get", ("k",)).unwrap(), 5);
        let dict = PyDict::from(manager.create("dict", ()).unwrap());
        let err = dict.get_item::<_, i64>(&"nothing").unwrap_err();
        assert!(err.to_string().contains("KeyError"), "{err}");
    });
}

#[test]
fn a_wrong_authkey_fails_clearly() {
    common::watchdog("a_wrong_authkey_fails_clearly", WATCHDOG_SECS, || {
        let Some(server) = PyServer::start("a_wrong_authkey_fails_clearly", "tcp") else { return };
        let err = PyManager::connect(&server.address, b"not the key").unwrap_err();
        assert!(matches!(err, Error::Authentication(_)), "{err:?}");
        assert!(err.to_string().contains("authkey"), "{err}");
    });
}

#[test]
fn a_refused_address_fails_clearly() {
    common::watchdog("a_refused_address_fails_clearly", WATCHDOG_SECS, || {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let err = PyManager::connect(&Address::Tcp(port), KEY).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
    });
}

#[test]
fn a_peer_that_is_not_a_manager_is_reported() {
    common::watchdog("a_peer_that_is_not_a_manager_is_reported", WATCHDOG_SECS, || {
        let mut listener = Listener::bind("127.0.0.1:0".parse().unwrap(), Some(KEY)).unwrap();
        let address = listener.address().clone();
        let peer = std::thread::spawn(move || {
            let mut conn = listener.accept().unwrap();
            let _request = conn.recv_bytes().unwrap();
            conn.send_bytes(b"certainly not a pickle").unwrap();
        });
        let err = PyManager::connect(&address, KEY).unwrap_err();
        assert!(matches!(&err, Error::Protocol(text) if text.contains("not a multiprocessing manager")), "{err:?}");
        peer.join().unwrap();
    });
}

#[test]
fn the_object_is_freed_when_the_last_proxy_drops() {
    common::watchdog("the_object_is_freed_when_the_last_proxy_drops", WATCHDOG_SECS, || {
        let Some(server) = PyServer::start("the_object_is_freed_when_the_last_proxy_drops", "tcp") else { return };
        let manager = server.connect();
        assert_eq!(manager.number_of_objects().unwrap(), 0);
        let dict = manager.create("dict", ()).unwrap();
        dict.call::<_, ()>("__setitem__", ("k", 1)).unwrap();
        assert_eq!(manager.number_of_objects().unwrap(), 1);
        let clone = dict.try_clone().unwrap();
        assert!(manager.debug_info().unwrap().contains("refcount=2"), "{}", manager.debug_info().unwrap());
        drop(dict);
        assert_eq!(manager.number_of_objects().unwrap(), 1);
        assert_eq!(clone.call::<_, i64>("__getitem__", ("k",)).unwrap(), 1);
        drop(clone);
        assert_eq!(manager.number_of_objects().unwrap(), 0);
        // A result handed out as a proxy ('#PROXY') is owned, and freed, the same way.
        let maker = manager.create("Maker", ()).unwrap();
        let child = PyDict::from(maker.call_proxy("child", ()).unwrap());
        assert_eq!(child.typeid(), "dict");
        assert_eq!(child.get::<_, i64>(&"made").unwrap(), Some(1));
        assert_eq!(manager.number_of_objects().unwrap(), 2);
        let err = maker.call::<_, PickleValue>("child", ()).unwrap_err();
        assert!(matches!(&err, Error::InvalidState(text) if text.contains("call_proxy")), "{err}");
        drop(child);
        drop(maker);
        assert_eq!(manager.number_of_objects().unwrap(), 0);
    });
}

#[test]
fn threads_block_and_unblock_each_other_through_one_proxy() {
    common::watchdog("threads_block_and_unblock_each_other_through_one_proxy", WATCHDOG_SECS, || {
        let Some(server) = PyServer::start("threads_block_and_unblock_each_other_through_one_proxy", "unix") else {
            return;
        };
        assert!(matches!(server.address, Address::Unix(_)), "{:?}", server.address);
        let manager = server.connect();
        let queue = manager.queue("Queue", ()).unwrap();
        std::thread::scope(|s| {
            let consumer = s.spawn(|| queue.get::<String>().unwrap());
            queue.put(&"wake up").unwrap();
            assert_eq!(consumer.join().unwrap(), "wake up");
        });
    });
}

#[test]
fn a_server_killed_mid_call_gives_an_error() {
    common::watchdog("a_server_killed_mid_call_gives_an_error", WATCHDOG_SECS, || {
        let Some(mut server) = PyServer::start("a_server_killed_mid_call_gives_an_error", "tcp") else { return };
        let manager = server.connect();
        let gate = manager.create("Gate", ()).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| gate.call::<_, ()>("wait", ()));
            assert_eq!(server.line(), "blocked");
            common::sigkill(server.child.id() as i32);
            let err = waiter.join().unwrap().unwrap_err();
            assert!(matches!(err, Error::Eof | Error::Io { .. }), "{err:?}");
        });
        // Later calls fail too, and dropping the proxy does not hang.
        assert!(gate.call::<_, ()>("wait", ()).is_err());
        assert!(manager.number_of_objects().is_err());
    });
}

#[test]
fn a_sync_managers_own_types_work() {
    common::watchdog("a_sync_managers_own_types_work", WATCHDOG_SECS, || {
        let Some(server) = PyServer::start("a_sync_managers_own_types_work", "tcp") else { return };
        let manager = server.connect();
        let list = manager.create("list", (vec![3, 1, 2],)).unwrap();
        list.call::<_, ()>("append", (0,)).unwrap();
        list.call::<_, ()>("sort", ()).unwrap();
        assert_eq!(list.get_value::<Vec<i64>>().unwrap(), [0, 1, 2, 3]);
        assert_eq!(list.call::<_, i64>("__getitem__", (-1,)).unwrap(), 3);
        let err = list.call::<_, i64>("__getitem__", (10,)).unwrap_err();
        assert!(matches!(&err, Error::PythonException { exception, .. } if exception == "IndexError"), "{err}");
        let event = manager.create("Event", ()).unwrap();
        assert!(!event.call::<_, bool>("is_set", ()).unwrap());
        event.call::<_, ()>("set", ()).unwrap();
        assert!(event.call::<_, bool>("wait", (1.0,)).unwrap());
        let lock = manager.create("Lock", ()).unwrap();
        assert!(lock.call::<_, bool>("acquire", ()).unwrap());
        assert!(!lock.call::<_, bool>("acquire", (false,)).unwrap());
        lock.call::<_, ()>("release", ()).unwrap();
        assert_eq!(manager.number_of_objects().unwrap(), 3);
    });
}

#[test]
fn a_call_timeout_bounds_a_call_that_never_returns() {
    common::watchdog("a_call_timeout_bounds_a_call_that_never_returns", WATCHDOG_SECS, || {
        let Some(mut server) = PyServer::start("a_call_timeout_bounds_a_call_that_never_returns", "tcp") else {
            return;
        };
        let manager = server.connect();
        let gate = manager.create("Gate", ()).unwrap();
        let queue = manager.queue("Queue", ()).unwrap();
        manager.set_call_timeout(Some(Duration::from_millis(200)));
        let err = gate.call::<_, ()>("wait", ()).unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        assert_eq!(server.line(), "blocked");
        // The proxies go on working on fresh channels (with a roomy bound: a loaded machine may be
        // slow).
        manager.set_call_timeout(Some(Duration::from_secs(20)));
        queue.put(&5).unwrap();
        assert_eq!(queue.get::<i64>().unwrap(), 5);
        manager.set_call_timeout(None);
        queue.put(&6).unwrap();
        assert_eq!(queue.get::<i64>().unwrap(), 6);
    });
}
