//! A pool across machines, on one machine: a `redis-server` of its own, two node agents started
//! as children (`spawn_local`), and the same `Pool` methods as a local pool.
//!
//! ```text
//! cargo run --release --features cluster --example cluster_pool
//! ```
//!
//! It needs `redis-server` (or `valkey-server`) on `PATH`: `apt-get install redis-server`. On real
//! machines, start the nodes yourself (`MULTIPROC_WORKER=redis://broker:6379/0 ./this-binary` on
//! each host; see the `multiproc::cluster` docs) and leave `spawn_local` out.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::pool::{Options, Pool};

fn square(x: u64) -> u64 {
    x * x
}

fn hostname_and_pid(_: u64) -> String {
    format!("node process {}", std::process::id())
}

fn main() -> multiproc::Result<()> {
    // A broker for this example only: a free loopback port, no persistence.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
    let mut server = match Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(server) => server,
        Err(e) => {
            eprintln!("this example needs redis-server on PATH ({e}): install it with `apt-get install redis-server`");
            std::process::exit(2);
        }
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let outcome = run(&url);
    // Stop the server we started, by its PID.
    let _ = server.kill();
    let _ = server.wait();
    outcome
}

fn run(url: &str) -> multiproc::Result<()> {
    let pool = Pool::builder()
        .cluster(url)
        .pool_name("example")
        .spawn_local(2) // two node agents: this same program, as children
        .processes(1) // one worker each
        .build()?;
    for node in pool.nodes()? {
        println!("node {} on {} (pid {}): {} slot(s)", node.name, node.host, node.pid, node.slots);
    }
    let squares = pool.map(square, 0..10_000)?;
    println!("sum of squares below 10 000: {}", squares.iter().sum::<u64>());
    let first: Vec<String> =
        pool.imap_with(hostname_and_pid, 0..4, Options::new().chunksize(1))?.collect::<Result<_, _>>()?;
    println!("the first four tasks ran in: {first:?}");
    println!("broker counters: {:?}", pool.cluster_stats()?);
    pool.close();
    pool.join()
}
