//! Interoperability with real CPython: our `connect`/`Listener` against CPython's
//! `multiprocessing.connection` `Listener`/`Client` (the machine's python3; 3.11 speaks the legacy
//! HMAC-MD5 handshake), against a hand-written peer speaking the 3.12+ handshake (`{sha256}`,
//! `{sha3_256}`, ...), and CPython's long framing form. The Python halves are in
//! `tests/interop/peer.py`; every test is skipped, with a note, when `python3` is missing.

#![cfg(feature = "pickle")]

mod common;

use common::{hex, python3_available};

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use multiproc::Error;
use multiproc::connection::{Address, Connection, Listener, PickleValue, connect_timeout};
use serde::{Deserialize, Serialize};

/// Every connection operation of a test is bounded by this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a Python peer may take to exit once the Rust side is done (the peer's own alarm
/// fires after 10 s).
const EXIT_WAIT_SECS: u64 = 15;
/// The watchdog of every test.
const WATCHDOG_SECS: u64 = 30;

const KEY: &[u8] = b"interop-secret-\x00\xff";
const OTHER_KEY: &[u8] = b"not-the-same-key";

/// A unique name for a socket of this test process.
fn unique(tag: &str) -> String {
    format!("multiproc-interop-{}-{tag}", std::process::id())
}

fn temp_path(tag: &str) -> Address {
    Address::Unix(std::env::temp_dir().join(format!("{}.sock", unique(tag))))
}

fn abstract_address(tag: &str) -> Address {
    Address::Abstract(unique(tag).into_bytes())
}

fn tcp_any_port() -> Address {
    "127.0.0.1:0".parse().unwrap()
}

/// A running `python3 tests/interop/peer.py ...`; killed (and its stderr shown) if the test fails
/// before [`finish`](Peer::finish).
struct Peer {
    child: Option<Child>,
    stdout: BufReader<ChildStdout>,
    args: Vec<String>,
}

/// How a peer ended.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {:?}\n--- stdout:\n{}--- stderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

impl Peer {
    /// Starts the peer, or returns `None` (after a note) when there is no `python3`.
    fn start(test: &str, args: &[&str]) -> Option<Peer> {
        if !python3_available() {
            eprintln!("note: python3 not found; skipping {test}");
            return None;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Some(Peer { child: Some(child), stdout, args: args.iter().map(|s| s.to_string()).collect() })
    }

    /// The next line the peer prints (a listening peer prints its address first). The peer's alarm
    /// bounds the wait: it exits, closing stdout, if nothing happens.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the peer's stdout");
        assert!(line.ends_with('\n'), "the peer {:?} exited without printing a line", self.args);
        line.trim_end().to_string()
    }

    /// The address a listening peer printed.
    fn address(&mut self) -> Address {
        self.line().parse().expect("parse the peer's address")
    }

    /// Waits (bounded) for the peer to exit and collects what it printed.
    fn finish(mut self) -> Outcome {
        let mut child = self.child.take().unwrap();
        if !common::wait_for_exit_of(child.id() as i32, EXIT_WAIT_SECS) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the python peer {:?} did not exit within {EXIT_WAIT_SECS} s", self.args);
        }
        let status = child.wait().expect("reap the python peer");
        let mut stdout = String::new();
        let _ = self.stdout.read_to_string(&mut stdout);
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        Outcome { code: status.code(), stdout, stderr }
    }

    /// Waits for the peer and checks that it succeeded.
    fn expect_ok(self) {
        let args = self.args.clone();
        let outcome = self.finish();
        assert!(
            outcome.code == Some(0) && outcome.stdout.contains("python-ok"),
            "python peer {args:?} failed: {outcome}"
        );
    }

    /// Waits for the peer and checks that it failed to authenticate, with `message` in its report.
    fn expect_auth_error(self, message: &str) {
        let args = self.args.clone();
        let outcome = self.finish();
        assert!(
            outcome.code == Some(3) && outcome.stdout.contains(message),
            "python peer {args:?} should have reported an authentication error containing {message:?}: {outcome}"
        );
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            eprintln!("python peer {:?} killed; its stderr:\n{stderr}", self.args);
        }
    }
}

/// Runs `body` under the watchdog.
fn run(name: &str, body: impl FnOnce()) {
    common::watchdog(name, WATCHDOG_SECS, body);
}

// ---------------------------------------------------------------------------------------------
// The conversation; its Python half is `exchange` in peer.py.

fn mib() -> Vec<u8> {
    (0..4096).flat_map(|_| 0u8..=255).collect()
}

fn s(text: &str) -> PickleValue {
    PickleValue::String(text.into())
}

fn pv_s(text: &str) -> PickleValue {
    PickleValue::String(text.into())
}

fn recv<T: serde::de::DeserializeOwned>(conn: &mut Connection) -> T {
    conn.recv_pickle().unwrap_or_else(|e| panic!("recv_pickle::<{}>: {e}", std::any::type_name::<T>()))
}

/// Sends `value` pickled; Python compares it with what it expects and answers "ok".
fn send_checked<T: Serialize + std::fmt::Debug>(conn: &mut Connection, value: &T) {
    conn.send_pickle(value).unwrap();
    let answer: String = recv(conn);
    assert_eq!(answer, "ok", "Python's verdict on {value:?}");
}

/// Sends a [`PickleValue`] (not `Serialize`: bytes, sets, big integers); Python answers "ok".
fn send_checked_value(conn: &mut Connection, value: &PickleValue) {
    conn.send_pickle_value(value).unwrap();
    let answer: String = recv(conn);
    assert_eq!(answer, "ok", "Python's verdict on {value:?}");
}

/// Sends a [`PickleValue`], which Python echoes; the echo must be the same value.
fn round_trip_value(conn: &mut Connection, value: PickleValue) {
    conn.send_pickle_value(&value).unwrap();
    assert_eq!(conn.recv_pickle_value().unwrap(), value, "echo through Python");
}

/// Sends `value`, which Python echoes; the echo must decode as the same `T`.
fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    conn: &mut Connection,
    value: T,
) {
    conn.send_pickle(&value).unwrap();
    assert_eq!(recv::<T>(conn), value, "echo through Python");
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    name: String,
    values: Vec<i32>,
    flag: Option<bool>,
    ratio: f64,
}

fn exchange(conn: &mut Connection) {
    conn.set_timeout(Some(IO_TIMEOUT));
    let mib = mib();

    // Raw bytes, echoed by Python: empty, short, 1 MiB, binary.
    for message in [&b""[..], b"hello", &mib, &[0, 0xff, 0x80, 0]] {
        conn.send_bytes(message).unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), message, "echo of a {}-byte message", message.len());
    }
    conn.send_bytes(&mib).unwrap(); // checked by Python
    assert_eq!(conn.recv_bytes().unwrap(), b"");
    assert_eq!(conn.recv_bytes().unwrap(), mib);

    // Python's known values (KNOWN in peer.py), received as typed values where natural.
    assert_eq!(recv::<i64>(conn), 0);
    assert_eq!(recv::<i64>(conn), -1);
    assert_eq!(recv::<u64>(conn), i64::MAX as u64);
    assert_eq!(recv::<i64>(conn), i64::MIN);
    // 2**64 - 1 is a u64 (the decoder before this crate's own refused it: "integer too large").
    assert_eq!(recv::<u64>(conn), u64::MAX);
    let big = conn.recv_pickle_value().unwrap();
    assert!(matches!(big, PickleValue::Int(_)), "-(2**100) as {big:?}");
    assert_eq!(big.to_string(), "-1267650600228229401496703205376");
    assert_eq!(recv::<f64>(conn), 3.5);
    assert_eq!(recv::<f64>(conn), f64::NEG_INFINITY);
    assert_eq!(recv::<String>(conn), "héllo wörld ✓ 日本 🎉");
    assert_eq!(conn.recv_pickle_value().unwrap(), PickleValue::Bytes(b"\x00\xffbytes".to_vec()));
    assert_eq!(recv::<Option<i64>>(conn), None);
    assert!(recv::<bool>(conn));
    assert!(!recv::<bool>(conn));
    assert_eq!(recv::<Vec<i64>>(conn), [1, 2, 3]);
    assert_eq!(recv::<(i64, String, Option<i64>)>(conn), (1, "a".to_string(), None));
    assert_eq!(recv::<HashMap<String, i64>>(conn), HashMap::from([("a".into(), 1), ("b".into(), 2)]));
    assert_eq!(recv::<BTreeMap<i64, String>>(conn), BTreeMap::from([(1, "x".into()), (2, "y".into())]));
    let nested = conn.recv_pickle_value().unwrap();
    let expected_nested = PickleValue::Dict(Vec::from([
        (
            s("list"),
            PickleValue::List(vec![
                PickleValue::I64(1),
                PickleValue::Tuple(vec![PickleValue::I64(2), PickleValue::I64(3)]),
                PickleValue::Dict(vec![(s("x"), PickleValue::Bytes(b"y".to_vec()))]),
            ]),
        ),
        (s("t"), PickleValue::Tuple(vec![PickleValue::Bool(true), PickleValue::None, PickleValue::F64(1.25)])),
        (s("s"), PickleValue::Set(vec![PickleValue::I64(1), PickleValue::I64(2)])),
    ]));
    assert_eq!(nested, expected_nested);
    assert_eq!(recv::<Vec<i64>>(conn), Vec::<i64>::new());
    assert_eq!(conn.recv_pickle_value().unwrap(), PickleValue::Tuple(vec![]));
    assert_eq!(recv::<HashMap<String, i64>>(conn), HashMap::new());

    // Our values, checked by Python (EXPECTED in peer.py).
    send_checked(conn, &42i64);
    send_checked(conn, &i64::MIN);
    send_checked(conn, &u64::MAX);
    send_checked_value(conn, &big); // -(2**100), as Python sent it
    send_checked(conn, &2.5f64);
    send_checked(conn, &-1e300f64);
    send_checked(conn, &f64::INFINITY);
    send_checked(conn, &"grüße, 世界 🦀");
    send_checked_value(conn, &PickleValue::Bytes(vec![0, 1, 2, 0xff]));
    send_checked(conn, &None::<i64>);
    send_checked(conn, &true);
    send_checked(conn, &false);
    send_checked(conn, &vec![1i64, 2, 3]);
    send_checked(conn, &(1i64, "two", 3.0f64));
    send_checked(conn, &HashMap::from([("a", 1i64), ("b", 2)]));
    send_checked(conn, &BTreeMap::from([(1i64, "x"), (2, "y")]));
    send_checked(
        conn,
        &vec![("first", BTreeMap::from([("k", vec![Some(1.5f64), None])])), ("second", BTreeMap::new())],
    );
    send_checked_value(
        conn,
        &PickleValue::Dict(Vec::from([
            (
                PickleValue::Tuple(vec![PickleValue::I64(1), s("k")]),
                PickleValue::List(vec![
                    PickleValue::Bytes(b"v".to_vec()),
                    PickleValue::None,
                    PickleValue::Tuple(vec![PickleValue::Bool(true)]),
                ]),
            ),
            (s("set"), PickleValue::Set(vec![PickleValue::I64(1), PickleValue::I64(2), PickleValue::I64(3)])),
            (s(""), PickleValue::I64(-7)),
        ])),
    );
    send_checked(conn, &Vec::<i64>::new());
    send_checked(conn, &"");

    // Round trips through Python's unpickle and pickle.
    round_trip_value(conn, expected_nested);
    round_trip_value(conn, big);
    round_trip_value(conn, PickleValue::List(vec![pv_s("ü"), PickleValue::F64(-0.5), PickleValue::I64(i64::MIN)]));
    round_trip(conn, (u8::MAX, i16::MIN, u32::MAX, -1i8));
    round_trip(conn, Some("some".to_string()));
    round_trip(conn, Record { name: "record ✓".into(), values: vec![-1, 0, i32::MAX], flag: None, ratio: 0.125 });
    round_trip(conn, BTreeMap::from([((1i64, 2i64), vec![String::new()])]));

    conn.send_pickle(&"bye").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"done");
    // Python now waits for end of file: the caller drops the connection.
}

/// A short exchange of raw bytes with a peer that echoes one message.
fn ping(conn: &mut Connection) {
    conn.set_timeout(Some(IO_TIMEOUT));
    conn.send_bytes(b"ping \x00\xff").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"ping \x00\xff");
}

fn expect_authentication_error<T: std::fmt::Debug>(result: multiproc::Result<T>, message: &str) {
    match result {
        Err(Error::Authentication(detail)) => {
            assert!(detail.contains(message), "authentication error {detail:?} should mention {message:?}")
        }
        other => panic!("expected Error::Authentication, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Our client, CPython's Listener (legacy handshake both ways: CPython 3.11 challenges with 20
//    bytes, and answers our {sha256} challenge with a bare HMAC-MD5).

fn rust_client_cpython_listener(test: &str, address: &str) {
    let Some(mut peer) = Peer::start(test, &["listen", address, &hex(KEY), "exchange"]) else { return };
    let address = peer.address();
    let mut conn = connect_timeout(&address, Some(KEY), IO_TIMEOUT).unwrap();
    exchange(&mut conn);
    drop(conn);
    peer.expect_ok();
}

#[test]
fn rust_client_cpython_listener_tcp() {
    run("rust_client_cpython_listener_tcp", || {
        rust_client_cpython_listener("rust_client_cpython_listener_tcp", "127.0.0.1:0")
    });
}

#[test]
fn rust_client_cpython_listener_abstract() {
    run("rust_client_cpython_listener_abstract", || {
        let address = abstract_address("cpython-listener").to_string();
        rust_client_cpython_listener("rust_client_cpython_listener_abstract", &address)
    });
}

#[test]
fn rust_client_cpython_listener_unix_path_without_key() {
    let test = "rust_client_cpython_listener_unix_path_without_key";
    run(test, || {
        let path = temp_path("cpython-listener-nokey").to_string();
        let Some(mut peer) = Peer::start(test, &["listen", &path, "-", "ping"]) else { return };
        let address = peer.address();
        assert_eq!(address.to_string(), path);
        let mut conn = connect_timeout(&address, None, IO_TIMEOUT).unwrap();
        ping(&mut conn);
        drop(conn);
        peer.expect_ok();
    });
}

// ---------------------------------------------------------------------------------------------
// 2. CPython's Client, our Listener.

fn cpython_client_rust_listener(test: &str, address: Address) {
    let mut listener = Listener::bind(address, Some(KEY)).unwrap();
    let address = listener.address().to_string();
    let Some(peer) = Peer::start(test, &["client", &address, &hex(KEY), "exchange"]) else { return };
    let mut conn = listener.accept_timeout(IO_TIMEOUT).unwrap();
    exchange(&mut conn);
    drop(conn);
    peer.expect_ok();
}

#[test]
fn cpython_client_rust_listener_tcp() {
    let test = "cpython_client_rust_listener_tcp";
    run(test, || cpython_client_rust_listener(test, tcp_any_port()));
}

#[test]
fn cpython_client_rust_listener_unix_path() {
    let test = "cpython_client_rust_listener_unix_path";
    run(test, || cpython_client_rust_listener(test, temp_path("rust-listener")));
}

// ---------------------------------------------------------------------------------------------
// 3. Wrong keys: both sides notice.

#[test]
fn rust_client_with_wrong_key_against_cpython_listener() {
    let test = "rust_client_with_wrong_key_against_cpython_listener";
    run(test, || {
        let Some(mut peer) = Peer::start(test, &["listen", "127.0.0.1:0", &hex(KEY), "ping"]) else { return };
        let address = peer.address();
        // CPython challenges first and rejects our digest.
        expect_authentication_error(connect_timeout(&address, Some(OTHER_KEY), IO_TIMEOUT), "rejected");
        peer.expect_auth_error("AuthenticationError: digest received was wrong");
    });
}

#[test]
fn cpython_client_with_wrong_key_against_rust_listener() {
    let test = "cpython_client_with_wrong_key_against_rust_listener";
    run(test, || {
        let mut listener = Listener::bind(abstract_address("wrong-key"), Some(KEY)).unwrap();
        let address = listener.address().to_string();
        let Some(peer) = Peer::start(test, &["client", &address, &hex(OTHER_KEY), "ping"]) else { return };
        expect_authentication_error(listener.accept_timeout(IO_TIMEOUT), "different authkey");
        peer.expect_auth_error("AuthenticationError: digest sent was rejected");
    });
}

// ---------------------------------------------------------------------------------------------
// 4. The 3.12+ handshake, by a hand-written Python peer over raw framing.

/// A hand-written server: challenges us (KEY1, `challenge_digest`), then answers our challenge
/// (KEY2, `response_digest`), then echoes one message.
fn modern_server_args(address: &str, key1: &[u8], key2: &[u8], challenge: &str, response: &str) -> Vec<String> {
    ["modern-server", address, &hex(key1), &hex(key2), challenge, response].map(String::from).to_vec()
}

fn modern_client_args(address: &str, key1: &[u8], key2: &[u8], challenge: &str, response: &str) -> Vec<String> {
    ["modern-client", address, &hex(key1), &hex(key2), challenge, response].map(String::from).to_vec()
}

fn start(test: &str, args: &[String]) -> Option<Peer> {
    Peer::start(test, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Our client against a hand-written 3.12+ server.
fn rust_client_modern_server(test: &str, address: &str, challenge: &str, response: &str) {
    let Some(mut peer) = start(test, &modern_server_args(address, KEY, KEY, challenge, response)) else { return };
    let address = peer.address();
    let mut conn = connect_timeout(&address, Some(KEY), IO_TIMEOUT).unwrap();
    ping(&mut conn);
    drop(conn);
    peer.expect_ok();
}

/// A hand-written 3.12+ client against our listener.
fn modern_client_rust_listener(test: &str, address: Address, challenge: &str, response: &str) {
    let mut listener = Listener::bind(address, Some(KEY)).unwrap();
    let address = listener.address().to_string();
    let Some(peer) = start(test, &modern_client_args(&address, KEY, KEY, challenge, response)) else { return };
    let mut conn = listener.accept_timeout(IO_TIMEOUT).unwrap();
    ping(&mut conn);
    drop(conn);
    peer.expect_ok();
}

#[test]
fn modern_sha256_server_rust_client_tcp() {
    let test = "modern_sha256_server_rust_client_tcp";
    run(test, || rust_client_modern_server(test, "127.0.0.1:0", "sha256", "same"));
}

#[test]
fn modern_sha256_server_rust_client_unix_path() {
    let test = "modern_sha256_server_rust_client_unix_path";
    run(test, || rust_client_modern_server(test, &temp_path("modern-server").to_string(), "sha256", "same"));
}

#[test]
fn modern_sha256_client_rust_listener_unix_path() {
    let test = "modern_sha256_client_rust_listener_unix_path";
    run(test, || modern_client_rust_listener(test, temp_path("modern-client"), "sha256", "same"));
}

#[test]
fn modern_sha3_256_client_rust_listener_abstract() {
    // The peer answers our {sha256} challenge with {sha3_256} (a challenger accepts any allowed
    // digest in the response) and challenges us with {sha3_256}.
    let test = "modern_sha3_256_client_rust_listener_abstract";
    run(test, || modern_client_rust_listener(test, abstract_address("sha3"), "sha3_256", "sha3_256"));
}

#[test]
fn modern_sha3_256_server_rust_client_abstract() {
    let test = "modern_sha3_256_server_rust_client_abstract";
    run(test, || rust_client_modern_server(test, &abstract_address("sha3-server").to_string(), "sha3_256", "sha3_256"));
}

#[test]
fn modern_other_digests_rust_client_tcp() {
    // Challenges in every other digest CPython allows; we answer in the challenge's digest.
    let test = "modern_other_digests_rust_client_tcp";
    run(test, || {
        for digest in ["md5", "sha384", "sha3_384"] {
            rust_client_modern_server(test, "127.0.0.1:0", digest, "same");
        }
    });
}

#[test]
fn modern_wrong_key_python_challenges_first() {
    // Python challenges with another key: it rejects our response, we hear #FAILURE#.
    let test = "modern_wrong_key_python_challenges_first";
    run(test, || {
        let args = modern_server_args("127.0.0.1:0", OTHER_KEY, KEY, "sha256", "same");
        let Some(mut peer) = start(test, &args) else { return };
        let address = peer.address();
        expect_authentication_error(connect_timeout(&address, Some(KEY), IO_TIMEOUT), "rejected");
        peer.expect_auth_error("digest received was wrong");
    });
}

#[test]
fn modern_wrong_key_python_answers_first() {
    // Python answers our challenge with another key: we reject it, Python hears #FAILURE#.
    let test = "modern_wrong_key_python_answers_first";
    run(test, || {
        let mut listener = Listener::bind(tcp_any_port(), Some(KEY)).unwrap();
        let args = modern_client_args(&listener.address().to_string(), OTHER_KEY, KEY, "sha256", "same");
        let Some(peer) = start(test, &args) else { return };
        expect_authentication_error(listener.accept_timeout(IO_TIMEOUT), "different authkey");
        peer.expect_auth_error("digest sent was rejected");
    });
}

#[test]
fn modern_wrong_key_on_the_second_leg() {
    // The first leg passes; the key differs on the second (the other side's challenge).
    let test = "modern_wrong_key_on_the_second_leg";
    run(test, || {
        // We challenge a server second; it answers with another key.
        let Some(mut peer) = start(test, &modern_server_args("127.0.0.1:0", KEY, OTHER_KEY, "sha256", "same")) else {
            return;
        };
        let address = peer.address();
        expect_authentication_error(connect_timeout(&address, Some(KEY), IO_TIMEOUT), "different authkey");
        peer.expect_auth_error("digest sent was rejected");

        // A client challenges our listener second, with another key.
        let mut listener = Listener::bind(abstract_address("second-leg"), Some(KEY)).unwrap();
        let args = modern_client_args(&listener.address().to_string(), KEY, OTHER_KEY, "sha256", "same");
        let peer = start(test, &args).unwrap();
        expect_authentication_error(listener.accept_timeout(IO_TIMEOUT), "rejected");
        peer.expect_auth_error("digest received was wrong");
    });
}

// ---------------------------------------------------------------------------------------------
// 5. The long framing form (ff ff ff ff + u64 length), written by hand for small payloads.

#[test]
fn long_form_frames_from_python_are_read() {
    let test = "long_form_frames_from_python_are_read";
    run(test, || {
        let mut listener = Listener::bind(temp_path("long-frame"), None).unwrap();
        let address = listener.address().to_string();
        let Some(peer) = Peer::start(test, &["long-frame", &address]) else { return };
        let mut conn = listener.accept_timeout(IO_TIMEOUT).unwrap();
        conn.set_timeout(Some(IO_TIMEOUT));
        assert_eq!(conn.recv_bytes().unwrap(), b"long form, small payload");
        let mut buf = [0u8; 8];
        assert_eq!(conn.recv_bytes_into(&mut buf).unwrap(), 0);
        assert_eq!(recv::<BTreeMap<String, Vec<i64>>>(&mut conn), BTreeMap::from([("long".into(), vec![1, 2, 3])]));
        conn.send_bytes(b"ok").unwrap();
        drop(conn);
        peer.expect_ok();
    });
}
