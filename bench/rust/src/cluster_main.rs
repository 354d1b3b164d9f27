//! `mpbench-cluster`: the Rust side of `bench/compare cluster` (feature `cluster` of this crate).
//! Every run starts its own `redis-server` (a free loopback port, no persistence), its node
//! agents (this same binary, as `MULTIPROC_WORKER` children), measures, and stops them all.
//!
//! * `rtt`: one tiny task's round trip through a pool of 2 nodes, against a hand-written XADD →
//!   XREADGROUP → RPUSH → BLPOP round trip on the same server (interleaved; prints "ours floor",
//!   µs, medians);
//! * `map_default`, `imap_chunk1`: 20 000 tiny tasks over 2 nodes of 1 worker each (tasks/s);
//! * `recovery`: seconds from a node's SIGKILL to its chunk's result from another node, and the
//!   lease (prints "ours lease");
//! * `rtt_ours [N]`: our round trip alone, N times (20 000 by default): a run long enough to
//!   profile (`perf record -a`), not a `bench/compare` metric.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::pool::{Options, Pool};

const TASKS: u64 = 20_000;
const KEY: &str = "mpbench-cluster";

fn square(x: u64) -> u64 {
    x * x
}

/// The first run of a chunk sleeps (and leaves a marker); a run after it returns at once.
fn first_run_hangs(marker: String) -> u64 {
    if std::fs::metadata(&marker).is_ok() {
        return 1;
    }
    std::fs::write(&marker, b"").expect("marker");
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// The child dies with this process (a run that bench/compare times out leaves nothing behind).
fn die_with_us(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start() -> Server {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
            let mut child =
                Command::new(std::env::var("MULTIPROC_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()))
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server on PATH (apt-get install redis-server)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Server { child, url: format!("redis://127.0.0.1:{port}/0") };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    fn conn(&self) -> redis::Connection {
        let conn = redis::Client::open(self.url.as_str()).expect("url").get_connection().expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        conn
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn two_node_pool(server: &Server, pool: &str) -> Pool {
    Pool::builder().cluster(&server.url).pool_name(pool).authkey(KEY).spawn_local(2).processes(1).build().expect("pool")
}

/// Median round trips (µs) of a pool task and of the bare Redis floor, interleaved.
fn rtt() -> String {
    let server = Server::start();
    let pool = two_node_pool(&server, "rtt");
    // The floor: a thread as the worker (XREADGROUP → RPUSH), this thread as the client.
    let mut worker = server.conn();
    let mut client = server.conn();
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("floor")
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut client)
        .expect("group");
    let echo = std::thread::spawn(move || {
        loop {
            let reply: redis::Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("w")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(1000)
                .arg("STREAMS")
                .arg("floor")
                .arg(">")
                .query(&mut worker)
                .expect("xreadgroup");
            let redis::Value::Array(streams) = reply else { continue };
            let Some(redis::Value::Array(parts)) = streams.first() else { continue };
            let Some(redis::Value::Array(entries)) = parts.get(1) else { continue };
            for entry in entries {
                let redis::Value::Array(e) = entry else { continue };
                let Some(redis::Value::BulkString(id)) = e.first() else { continue };
                if e.get(1).is_some_and(|f| matches!(f, redis::Value::Array(fs) if fs.len() == 2 && fs[1] == redis::Value::BulkString(b"stop".to_vec()))) {
                return;
            }
                let _: redis::Value = redis::pipe()
                    .cmd("XACK")
                    .arg("floor")
                    .arg("g")
                    .arg(id.as_slice())
                    .cmd("XDEL")
                    .arg("floor")
                    .arg(id.as_slice())
                    .cmd("RPUSH")
                    .arg("floor-res")
                    .arg(id.as_slice())
                    .query(&mut worker)
                    .expect("reply");
            }
        }
    });
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        assert_eq!(pool.apply(square, (3u64,)).expect("apply"), 9);
    }
    for _ in 0..1000 {
        let t = Instant::now();
        assert_eq!(pool.apply(square, (3u64,)).expect("apply"), 9);
        ours.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        let _: String = redis::cmd("XADD").arg("floor").arg("*").arg("x").arg("1").query(&mut client).expect("xadd");
        let _: (String, String) = redis::cmd("BLPOP").arg("floor-res").arg(5).query(&mut client).expect("blpop");
        floor.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let _: String = redis::cmd("XADD").arg("floor").arg("*").arg("x").arg("stop").query(&mut client).expect("xadd");
    let _ = echo.join();
    pool.close();
    pool.join().expect("join");
    format!("{} {}", median(ours), median(floor))
}

/// Our round trip alone, `n` times (median, µs): a longer run to profile (`perf record`).
fn rtt_ours(n: usize) -> String {
    let server = Server::start();
    let pool = two_node_pool(&server, "rtt");
    let mut ours = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(pool.apply(square, (3u64,)).expect("apply"), 9);
        ours.push(t.elapsed().as_secs_f64() * 1e6);
    }
    pool.close();
    pool.join().expect("join");
    format!("{}", median(ours))
}

fn throughput(chunk1: bool) -> String {
    let server = Server::start();
    let pool = two_node_pool(&server, "throughput");
    let run = |tasks: u64| {
        let t = Instant::now();
        if chunk1 {
            let n = pool.imap(square, 0..tasks).expect("imap").map(|v| v.expect("value")).count();
            assert_eq!(n as u64, tasks);
        } else {
            assert_eq!(pool.map(square, 0..tasks).expect("map").len() as u64, tasks);
        }
        t.elapsed().as_secs_f64()
    };
    run(TASKS / 10); // warm-up: nodes connected, workers started
    let samples: Vec<f64> = (0..3).map(|_| run(TASKS)).collect();
    pool.close();
    pool.join().expect("join");
    format!("{}", TASKS as f64 / median(samples))
}

/// A node agent of this binary, serving `pool` with one worker.
fn node(url: &str, pool: &str) -> Child {
    die_with_us(&mut Command::new(std::env::current_exe().expect("exe")))
        .env("MULTIPROC_WORKER", format!("{url}?pool={pool}&processes=1"))
        .env("MULTIPROC_AUTHKEY", KEY)
        .spawn()
        .expect("node")
}

fn recovery() -> String {
    let server = Server::start();
    let lease = Duration::from_secs(1);
    let mut conn = server.conn();
    let mut first = node(&server.url, "recovery");
    let pool =
        Pool::builder().cluster(&server.url).pool_name("recovery").authkey(KEY).lease(lease).build().expect("pool");
    let marker = std::env::temp_dir().join(format!("mpbench-recovery-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let result = pool
        .apply_async_with(first_run_hangs, (marker.display().to_string(),), Options::new().retries(1))
        .expect("submit");
    let wait = |what: &str, check: &mut dyn FnMut() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait("the first node runs the chunk", &mut || std::fs::metadata(&marker).is_ok());
    let mut second = node(&server.url, "recovery");
    wait("the second node reports", &mut || pool.nodes().map(|n| n.len() == 2).unwrap_or(false));
    let _ = &mut conn;
    let killed = Instant::now();
    first.kill().expect("kill");
    first.wait().expect("reap");
    assert_eq!(result.get().expect("result"), 1);
    let took = killed.elapsed().as_secs_f64();
    pool.close();
    pool.join().expect("join");
    let _ = second.kill();
    let _ = second.wait();
    let _ = std::fs::remove_file(&marker);
    format!("{took} {}", lease.as_secs_f64())
}

fn main() {
    let metric = std::env::args().nth(1).unwrap_or_default();
    let line = match metric.as_str() {
        "rtt" => rtt(),
        "map_default" => throughput(false),
        "imap_chunk1" => throughput(true),
        "recovery" => recovery(),
        "rtt_ours" => rtt_ours(std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(20_000)),
        _ => {
            eprintln!("usage: mpbench-cluster rtt|map_default|imap_chunk1|recovery|rtt_ours [N]");
            std::process::exit(2);
        }
    };
    println!("{line}");
}
