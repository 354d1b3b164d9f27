//! A manager server written in Rust for Python clients: CPython's "Using a remote manager"
//! example with the server side in Rust, unchanged on the Python side. The server holds a queue
//! it filled before serving (CPython's `register('get_queue', callable=lambda: queue)`) and a
//! dict; CPython's `BaseManager` clients connect, take the queue's items, put their own, and use
//! every built-in type of `SyncManager` (`m.dict()`, `m.Lock()`, ...).
//!
//! `cargo run --example manager_for_python` runs a Python client against it (needs `python3`;
//! skipped without it). `cargo run --example manager_for_python -- --serve 127.0.0.1:50000
//! abracadabra` only serves, for clients of your own, until one of them asks for shutdown.

use std::process::Command;

use multiproc::manager::Server;
use multiproc::pickle::PickleValue;

/// CPython's remote-manager client, as CPython's documentation writes it (plus a dict).
const PYTHON_CLIENT: &str = r#"
import sys
from multiprocessing.managers import BaseManager, DictProxy
class QueueManager(BaseManager): pass
QueueManager.register('get_queue')
QueueManager.register('get_dict', proxytype=DictProxy)
host, port = sys.argv[1].rsplit(':', 1)
m = QueueManager(address=(host, int(port)), authkey=b'abracadabra')
m.connect()
queue = m.get_queue()
print('python got', queue.get(), 'and', queue.get())
queue.put('hello from Python')
d = m.get_dict()
d['python'] = sys.version_info[:2]
try:
    d['missing']
except KeyError as e:
    print('python caught KeyError', e)
"#;

fn main() -> multiproc::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve_only = args.first().is_some_and(|a| a == "--serve");
    let address = args.get(1).map_or("127.0.0.1:0", String::as_str).parse()?;
    let key = args.get(2).map_or("abracadabra", String::as_str);

    let server = Server::bind::<()>(address, Some(key.as_bytes()))?;
    let owner = server.client();
    // Filled before anyone connects.
    let queue = owner.queue::<String>()?;
    queue.put(&"hello".to_string())?;
    queue.put(&"world".to_string())?;
    server.register("get_queue", queue.object())?;
    let dict = owner.dict::<String, PickleValue>()?;
    server.register("get_dict", dict.object())?;
    let address = server.address().clone();
    if serve_only {
        println!("{address}");
        return server.serve_forever();
    }
    std::thread::spawn(move || server.serve_forever());
    println!("the Rust server listens at {address}");

    match Command::new("python3").args(["-c", PYTHON_CLIENT, &address.to_string()]).status() {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(multiproc::Error::InvalidState(format!("the Python client failed: {status}"))),
        Err(_) => {
            println!("python3 is not installed here; skipped");
            return Ok(());
        }
    }
    println!("rust got {:?} from Python", queue.get()?);
    println!(
        "rust sees the dict {}",
        PickleValue::Dict(dict.items()?.into_iter().map(|(k, v)| (k.into(), v)).collect())
    );
    owner.shutdown()
}
