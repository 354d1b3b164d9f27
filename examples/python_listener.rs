//! A Rust client and a CPython Listener, pickled values.
//!
//! Run it with `cargo run --example python_listener`; the `tour` example runs it too.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc::connection::{Address, connect_timeout};

/// A CPython Listener that answers pickled values: it echoes `[value, "from python"]` until it
/// receives None.
const PYTHON_LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
with Listener(('127.0.0.1', 0), authkey=b'shared key') as listener:
    print('%s:%d' % listener.address, flush=True)
    with listener.accept() as conn:
        while (value := conn.recv()) is not None:
            conn.send([value, 'from python %d.%d' % sys.version_info[:2]])
"#;

/// A Rust client talking to a CPython `multiprocessing.connection.Listener` (needs `python3`;
/// skipped without it).
pub fn rust_client_python_listener() -> multiproc::Result<()> {
    let spawned = Command::new("python3").args(["-c", PYTHON_LISTENER]).stdout(Stdio::piped()).spawn();
    let Ok(mut python) = spawned else {
        println!("  python3 is not installed here; skipped");
        return Ok(());
    };
    let stdout = python.stdout.take();
    let exchange = || -> multiproc::Result<()> {
        let mut line = String::new();
        let stdout = stdout.ok_or_else(|| multiproc::Error::InvalidState("no stdout".into()))?;
        BufReader::new(stdout).read_line(&mut line).map_err(|e| multiproc::Error::Io { context: "read", source: e })?;
        let address: Address = line.trim().parse()?;
        println!("  CPython listens at {address}");
        let mut conn = connect_timeout(&address, Some(b"shared key"), Duration::from_secs(10))?;
        conn.set_timeout(Some(Duration::from_secs(10)));
        conn.send_pickle(&(42, "text", vec![1.5, 2.5]))?;
        println!("  python answered {:?}", conn.recv_pickle_value()?);
        conn.send_pickle(&std::collections::BTreeMap::from([("key", -7i64)]))?;
        println!("  python answered {:?}", conn.recv_pickle_value()?);
        conn.send_pickle(&())?;
        Ok(())
    };
    let outcome = exchange();
    if outcome.is_err() {
        // Whatever went wrong, the Python listener must not outlive the example.
        let _ = python.kill();
    }
    let status = python.wait().map_err(|e| multiproc::Error::Io { context: "wait for python3", source: e })?;
    outcome?;
    println!("  python3 exited: {status}");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    rust_client_python_listener()
}
