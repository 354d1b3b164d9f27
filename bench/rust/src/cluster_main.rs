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
//! * `rtt_ours [N]`, `rtt_floor [N]`: our round trip alone, or the floor's, N times (20 000 by
//!   default): runs long enough to profile (`perf record -a`), not `bench/compare` metrics.

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

/// The bare Redis floor of a round trip: a thread as the worker (`XREADGROUP` → `RPUSH`), the
/// caller's thread as the client (`XADD`, then `BLPOP`).
struct Floor {
    client: redis::Connection,
    echo: Option<std::thread::JoinHandle<()>>,
}

impl Floor {
    fn start(server: &Server) -> Floor {
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
        let echo = std::thread::spawn(move || Floor::echo(&mut worker));
        Floor { client, echo: Some(echo) }
    }

    /// The worker's side: answers every entry until one says "stop".
    fn echo(worker: &mut redis::Connection) {
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
                .query(worker)
                .expect("xreadgroup");
            let redis::Value::Array(streams) = reply else { continue };
            let Some(redis::Value::Array(parts)) = streams.first() else { continue };
            let Some(redis::Value::Array(entries)) = parts.get(1) else { continue };
            for entry in entries {
                let redis::Value::Array(e) = entry else { continue };
                let Some(redis::Value::BulkString(id)) = e.first() else { continue };
                let stop = redis::Value::BulkString(b"stop".to_vec());
                if e.get(1).is_some_and(|f| matches!(f, redis::Value::Array(fs) if fs.len() == 2 && fs[1] == stop)) {
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
                    .query(worker)
                    .expect("reply");
            }
        }
    }

    /// One round trip, in µs.
    fn round_trip(&mut self) -> f64 {
        let t = Instant::now();
        let _: String =
            redis::cmd("XADD").arg("floor").arg("*").arg("x").arg("1").query(&mut self.client).expect("xadd");
        let _: (String, String) = redis::cmd("BLPOP").arg("floor-res").arg(5).query(&mut self.client).expect("blpop");
        t.elapsed().as_secs_f64() * 1e6
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _: redis::RedisResult<String> =
            redis::cmd("XADD").arg("floor").arg("*").arg("x").arg("stop").query(&mut self.client);
        if let Some(echo) = self.echo.take() {
            let _ = echo.join();
        }
    }
}

/// One tiny task's round trip through the pool, in µs.
fn pool_round_trip(pool: &Pool) -> f64 {
    let t = Instant::now();
    assert_eq!(pool.apply(square, (3u64,)).expect("apply"), 9);
    t.elapsed().as_secs_f64() * 1e6
}

/// Median round trips (µs) of a pool task and of the bare Redis floor, interleaved.
fn rtt() -> String {
    let server = Server::start();
    let pool = two_node_pool(&server, "rtt");
    let mut floor = Floor::start(&server);
    for _ in 0..50 {
        pool_round_trip(&pool);
    }
    let (mut ours, mut floors) = (Vec::new(), Vec::new());
    for _ in 0..1000 {
        ours.push(pool_round_trip(&pool));
        floors.push(floor.round_trip());
    }
    drop(floor);
    pool.close();
    pool.join().expect("join");
    format!("{} {}", median(ours), median(floors))
}

/// Our round trip alone, `n` times (median, µs): a longer run to profile (`perf record`).
fn rtt_ours(n: usize) -> String {
    let server = Server::start();
    let pool = two_node_pool(&server, "rtt");
    let ours: Vec<f64> = (0..n).map(|_| pool_round_trip(&pool)).collect();
    pool.close();
    pool.join().expect("join");
    format!("{}", median(ours))
}

/// The floor's round trip alone, `n` times (median, µs), to compare profiles with `rtt_ours`.
fn rtt_floor(n: usize) -> String {
    let server = Server::start();
    let mut floor = Floor::start(&server);
    let floors: Vec<f64> = (0..n).map(|_| floor.round_trip()).collect();
    drop(floor);
    format!("{}", median(floors))
}

fn throughput(chunk1: bool) -> String {
    let server = Server::start();
    let pool = two_node_pool(&server, "throughput");
    let run = |tasks: u64| {
        let t = Instant::now();
        if chunk1 {
            let n = pool.imap(square, 0..tasks).expect("imap").filter(Result::is_ok).count();
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

/// The run length of `rtt_ours` and `rtt_floor` (20 000 round trips by default).
fn count_arg() -> usize {
    std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(20_000)
}

fn main() {
    let metric = std::env::args().nth(1).unwrap_or_default();
    let line = match metric.as_str() {
        "rtt" => rtt(),
        "map_default" => throughput(false),
        "imap_chunk1" => throughput(true),
        "recovery" => recovery(),
        "rtt_ours" => rtt_ours(count_arg()),
        "rtt_floor" => rtt_floor(count_arg()),
        _ => {
            eprintln!("usage: mpbench-cluster rtt|map_default|imap_chunk1|recovery|rtt_ours [N]|rtt_floor [N]");
            std::process::exit(2);
        }
    };
    println!("{line}");
}
