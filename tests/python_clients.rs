//! CPython clients of this crate's manager server (issue 16, 2; issue 15, 7): CPython's
//! `SyncManager` and its proxies, unchanged, use dicts, lists, namespaces, values, arrays, queues,
//! locks, semaphores, events, conditions and barriers of a server written in Rust, with the
//! results and exceptions CPython's own server gives; a Rust process and the Python clients share
//! objects, including ones the server's owner filled before serving (CPython's
//! `register('get_queue', callable=lambda: queue)`). The Python half is
//! `tests/interop/manager_client.py`, run by `python3` and pyenv's 3.8 to 3.13 where installed;
//! skipped, with a note, without `python3` (never under CI).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{hex, pythons, watchdog};
use multiproc::connection::Address;
use multiproc::manager::{ManagerClient, Server, Value};
use multiproc::pickle::PickleValue;
use serde::{Deserialize, Serialize};

const KEY: &[u8] = b"python-clients-\x00\xff";

#[derive(Default, Serialize, Deserialize)]
struct MathsClass {
    calls: u32,
}

#[multiproc::managed]
impl MathsClass {
    pub fn add(&mut self, x: i64, y: i64) -> i64 {
        self.calls += 1;
        x + y
    }

    pub fn calls(&self) -> u32 {
        self.calls
    }
}

/// A server on a free loopback port with the objects the script expects, serving in a thread.
fn start_server() -> (Address, ManagerClient, std::thread::JoinHandle<multiproc::Result<()>>) {
    let server = Server::bind::<(MathsClass,)>("127.0.0.1:0".parse().unwrap(), Some(KEY)).unwrap();
    let owner = server.client();
    // Filled before the server serves anyone: CPython's remote-manager example.
    let jobs = owner.queue::<PickleValue>().unwrap();
    jobs.put(&"hello from Rust".into()).unwrap();
    let record = PickleValue::Dict(vec![
        ("n".into(), 1.into()),
        ("tags".into(), PickleValue::Set(vec!["a".into(), "b".into()])),
    ]);
    jobs.put(&record).unwrap();
    server.register("get_queue", jobs.object()).unwrap();
    owner.named("get_results").queue::<PickleValue>().unwrap();
    owner.named("get_shared").dict::<String, Vec<i64>>().unwrap().insert(&"from_rust".into(), &vec![1, 2, 3]).unwrap();
    owner.named("get_items").list::<i64>(&[]).unwrap();
    let mixed = owner.named("get_mixed").dict::<Value, Value>().unwrap();
    mixed.insert(&1.into(), &"1".into()).unwrap();
    mixed.insert(&"2".into(), &2.into()).unwrap();
    mixed.insert(&0.25.into(), &Value::None).unwrap();
    mixed.insert(&"t".into(), &Value::Tuple(vec![1.into(), 2.into()])).unwrap();
    let address = server.address().clone();
    let serving = std::thread::spawn(move || server.serve_forever());
    (address, owner, serving)
}

fn run_script(python: &Path, address: &Address, scenarios: &[&str]) -> (bool, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/manager_client.py");
    let output = Command::new(python)
        .arg(script)
        .arg(address.to_string())
        .arg(hex(KEY))
        .args(scenarios)
        .stdin(Stdio::null())
        .output()
        .expect("run the python client");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn cpython_clients_use_every_builtin_type_as_cpythons_server_gives_them() {
    let pythons = pythons();
    if pythons.is_empty() {
        eprintln!(
            "note: python3 not found; skipping cpython_clients_use_every_builtin_type_as_cpythons_server_gives_them"
        );
        return;
    }
    watchdog("cpython_clients_use_every_builtin_type", 600, || {
        for python in &pythons {
            let (address, owner, serving) = start_server();
            let (ok, stdout, stderr) = run_script(python, &address, &[]);
            assert!(ok, "{python:?} against our server:\n{stdout}\n{stderr}");
            assert!(stdout.contains("ok shared_with_rust"), "{stdout}");
            // What the Python client left for Rust.
            let results = owner.named("get_results").queue::<(String, (u32, u32))>().unwrap();
            let (who, (major, minor)) = results.get().unwrap();
            assert_eq!((who.as_str(), major), ("python", 3), "minor version {minor}");
            let shared = owner.named("get_shared").dict::<String, PickleValue>().unwrap();
            let from_python = shared.get(&"from_python".into()).unwrap().unwrap();
            assert_eq!(from_python, PickleValue::Dict(vec![("ok".into(), true.into())]));
            assert_eq!(owner.named("get_items").list::<i64>(&[]).unwrap().to_vec().unwrap(), [42]);
            owner.shutdown().unwrap();
            serving.join().unwrap().unwrap();
        }
    });
}

#[test]
fn rust_and_python_clients_share_the_same_objects_at_once() {
    let pythons = pythons();
    let Some(python) = pythons.first() else {
        eprintln!("note: python3 not found; skipping rust_and_python_clients_share_the_same_objects_at_once");
        return;
    };
    watchdog("rust_and_python_clients_share_the_same_objects_at_once", 120, || {
        let (address, owner, serving) = start_server();
        // A Rust client in another connection, as another process would use it.
        let rust = ManagerClient::connect(address.clone(), Some(KEY)).unwrap();
        let items = rust.named("get_items").list::<i64>(&[]).unwrap();
        items.extend(&[1, 2]).unwrap();
        let (ok, stdout, stderr) = run_script(python, &address, &["shared_with_rust"]);
        assert!(ok, "{stdout}\n{stderr}");
        assert_eq!(items.to_vec().unwrap(), [1, 2, 42]);
        // Sets from Python stay sets for Rust.
        let shared = rust.named("get_shared").dict::<String, PickleValue>().unwrap();
        shared.insert(&"set".into(), &PickleValue::Set(vec![1.into(), 2.into()])).unwrap();
        let back = owner.named("get_shared").dict::<String, BTreeSet<i64>>().unwrap();
        assert_eq!(back.get(&"set".into()).unwrap().unwrap(), BTreeSet::from([1, 2]));
        owner.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

#[test]
fn the_script_passes_against_cpythons_own_server_too() {
    // The script's expectations are CPython's: it passes against CPython's own server.
    let pythons = pythons();
    let Some(python) = pythons.first() else {
        eprintln!("note: python3 not found; skipping the_script_passes_against_cpythons_own_server_too");
        return;
    };
    watchdog("the_script_passes_against_cpythons_own_server_too", 120, || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/manager_client.py");
        let output = Command::new(python).arg(script).arg("--cpython").stdin(Stdio::null()).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{stdout}\n{stderr}");
    });
}
