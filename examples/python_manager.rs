//! A Rust worker using a queue and a dict served by a CPython `BaseManager` (a mixed
//! Python/Rust system): Python hands out jobs and collects results, Rust does the work. Needs
//! `python3` (skipped without it). Run with `cargo run --example python_manager`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use multiproc::connection::Address;
use multiproc::manager::cpython::PyManager;

/// The Python service: a job queue and a results dict on a TCP port with an authkey. It prints
/// its address, then the results once its stdin closes (an alarm ends it whatever happens).
const PYTHON_SERVICE: &str = r#"
import queue, signal, sys, threading
from multiprocessing.managers import BaseManager, DictProxy
signal.alarm(20)
jobs, results = queue.Queue(), {}
for n in range(1, 6):
    jobs.put(("square", n))
class Service(BaseManager): pass
Service.register("get_jobs", callable=lambda: jobs)
Service.register("get_results", callable=lambda: results, proxytype=DictProxy)
server = Service(address=("127.0.0.1", 0), authkey=b"job key").get_server()
threading.Thread(target=server.serve_forever, daemon=True).start()
print("%s:%d" % server.address, flush=True)
sys.stdin.read()
print("python sees", sorted(results.items()), flush=True)
"#;

fn main() -> multiproc::Result<()> {
    let spawned =
        Command::new("python3").args(["-c", PYTHON_SERVICE]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
    let Ok(mut python) = spawned else {
        println!("python3 is not installed here; skipped");
        return Ok(());
    };
    let io = |e| multiproc::Error::Io { context: "talk to python3", source: e };
    let mut stdout =
        BufReader::new(python.stdout.take().ok_or_else(|| multiproc::Error::InvalidState("no stdout".into()))?);
    let work = |stdout: &mut BufReader<_>| -> multiproc::Result<()> {
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(io)?;
        let address: Address = line.trim().parse()?;
        println!("the Python service listens at {address}");
        let manager = PyManager::connect(&address, b"job key")?;
        let jobs = manager.queue("get_jobs", ())?;
        let results = manager.dict("get_results", ())?;
        loop {
            let (kind, n): (String, i64) = match jobs.get_nowait() {
                Ok(job) => job,
                Err(multiproc::Error::Empty) => break,
                Err(e) => return Err(e),
            };
            println!("rust got job {kind}({n})");
            results.set(&n, &(n * n))?;
        }
        // A missing key is Python's KeyError, with its message.
        if let Err(e) = results.get_item::<_, i64>(&99) {
            println!("results[99]: {e}");
        }
        Ok(())
    };
    let outcome = work(&mut stdout);
    // Closing stdin tells the service to show what it got and exit.
    drop(python.stdin.take());
    if outcome.is_err() {
        let _ = python.kill();
    }
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    print!("{line}");
    python.wait().map_err(io)?;
    outcome
}
