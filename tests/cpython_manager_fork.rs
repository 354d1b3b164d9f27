//! A CPython manager's proxy in forked children (`multiproc::manager::cpython`): a child opens
//! its own channel (never talking on its parent's sockets) and takes its own reference, which it
//! releases when its copy of the proxy drops; the parent's proxy goes on working. Skipped, with a
//! note, when python3 is missing.
//!
//! Forking is only safe from a single-threaded process, so this target has no libtest harness;
//! `alarm` is the watchdog.

#![cfg(feature = "pickle")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use multiproc::Process;
use multiproc::connection::Address;
use multiproc::manager::cpython::PyManager;

const KEY: &[u8] = b"cpython-manager-fork";

fn main() {
    let mut harness = common::ForkHarness::from_args();
    harness.run("cpython_proxies_in_forked_children", cpython_proxies_in_forked_children);
    harness.finish();
}

fn cpython_proxies_in_forked_children() {
    let python = Command::new("python3").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !python.is_ok_and(|s| s.success()) {
        eprintln!("note: python3 not found; skipping cpython_proxies_in_forked_children");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/manager_peer.py");
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let mut server = Command::new("python3")
        .args([script, "tcp", &hex])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).expect("read the address");
    let address: Address = line.trim_end().parse().expect("parse the address");

    let manager = PyManager::connect(&address, KEY).expect("connect");
    let dict = manager.dict("dict", ()).expect("dict");
    dict.set(&"parent", &0).expect("set");
    let mut children: Vec<Process> = (1..=3i64)
        .map(|i| {
            // Each child gets its own copy of a proxy, which it drops when it ends.
            let copy = dict.try_clone().expect("clone");
            let manager = manager.clone();
            Process::fork(move || -> multiproc::Result<()> {
                let dict = multiproc::manager::cpython::PyDict::from(copy);
                for _ in 0..20 {
                    dict.set(&format!("child {i}"), &i)?;
                    assert_eq!(dict.get::<_, i64>(&"parent")?, Some(0));
                }
                assert_eq!(manager.number_of_objects()?, 1);
                Ok(())
            })
        })
        .collect();
    for c in &mut children {
        c.start().expect("fork a child");
    }
    // The parent keeps using its own channel meanwhile.
    for _ in 0..20 {
        assert_eq!(dict.get::<_, i64>(&"parent").expect("get"), Some(0));
    }
    for c in &mut children {
        assert_eq!(c.join().expect("join"), 0, "a forked child failed");
    }
    drop(children);
    assert_eq!(dict.len().expect("len"), 4);
    let info = manager.debug_info().expect("debug_info");
    assert!(info.contains("refcount=1"), "the children's references went with them: {info}");
    drop(dict);
    assert_eq!(manager.number_of_objects().expect("count"), 0);
    let _ = server.kill();
    let _ = server.wait();
}
