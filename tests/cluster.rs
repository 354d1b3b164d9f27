//! Pools across machines (feature `cluster`): every test starts its own `redis-server` on a free
//! loopback port and its own node agents (this test binary as a node), and runs under a watchdog.
//! Without `redis-server` the tests skip with one line (`MULTIPROC_REQUIRE_REDIS` makes that a
//! failure, as in CI).
#![cfg(feature = "cluster")]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::broker::{RedisServer, Relay, RelayMode, TestNode};
use common::watchdog;
use multiproc::pool::{Options, Pool};
use multiproc::{Error, cluster};

const KEY: &str = "cluster-test-key";

/// The tests share two cores with their nodes: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn fail_on_odd(x: u64) -> Result<u64, String> {
    if x % 2 == 1 { Err(format!("{x} is odd")) } else { Ok(x) }
}

fn exit_now(code: i32) -> u64 {
    std::process::exit(code)
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Sleeps, then leaves a file `dir/done-<pid>` behind (what ran to the end, and where).
fn sleep_then_mark(ms: u64, dir: String) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::write(format!("{dir}/done-{}", std::process::id()), b"").unwrap();
    ms
}

fn marks(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("done-"))).count()).unwrap_or(0)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("multiproc-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn builder(server: &RedisServer, pool: &str) -> multiproc::pool::PoolBuilder {
    Pool::builder().cluster(server.url()).pool_name(pool).authkey(KEY)
}

/// Waits (polling the broker) until `check` holds, or fails after `secs`.
fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stream_key(conn: &mut redis::Connection, pool: &str) -> Option<String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{{mp:{pool}}}:tasks:*")).query(conn).unwrap();
    keys.into_iter().next()
}

/// The owner of the first pending entry of the pool's stream.
fn pending_owner(conn: &mut redis::Connection, pool: &str) -> Option<String> {
    let stream = stream_key(conn, pool)?;
    let pending: Vec<(String, String, u64, u64)> =
        redis::cmd("XPENDING").arg(&stream).arg("nodes").arg("-").arg("+").arg(10).query(conn).ok()?;
    pending.into_iter().next().map(|p| p.1)
}

/// The pid in a node's name (`host-pid-random`).
fn pid_of(node: &str) -> i32 {
    let parts: Vec<&str> = node.rsplitn(3, '-').collect();
    parts[1].parse().unwrap()
}

fn signal(pid: i32, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), signal).unwrap();
}

/// Nothing of the pool is left in the broker: no task entries, nothing pending, no result lists,
/// no consumers but `live` ones.
fn assert_clean(conn: &mut redis::Connection, pool: &str, live: usize) {
    if let Some(stream) = stream_key(conn, pool) {
        let len: u64 = redis::cmd("XLEN").arg(&stream).query(conn).unwrap();
        assert_eq!(len, 0, "task entries left in the stream");
        let summary: (u64, Option<String>, Option<String>, Option<Vec<(String, String)>>) =
            redis::cmd("XPENDING").arg(&stream).arg("nodes").query(conn).unwrap();
        assert_eq!(summary.0, 0, "entries left pending");
        let consumers: Vec<redis::Value> = redis::cmd("XINFO").arg("CONSUMERS").arg(&stream).arg("nodes").query(conn).unwrap();
        assert!(consumers.len() <= live, "{} consumers left, {live} nodes alive", consumers.len());
    }
    let results: Vec<String> = redis::cmd("KEYS").arg(format!("{{mp:{pool}}}:res:*")).query(conn).unwrap();
    assert!(results.is_empty(), "result lists left: {results:?}");
}

#[test]
fn every_pool_method_works_over_two_local_nodes() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("every_pool_method_works_over_two_local_nodes", 120, || {
        let pool = builder(&server, "methods").spawn_local(2).processes(1).build().unwrap();
        assert_eq!(pool.processes(), 2);
        assert_eq!(pool.nodes().unwrap().len(), 2);
        assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(square).collect::<Vec<_>>());
        assert_eq!(pool.apply(add, (2u64, 3u64)).unwrap(), 5);
        assert_eq!(pool.starmap(add, vec![(1u64, 1u64), (2, 2)]).unwrap(), vec![2, 4]);
        let (tx, rx) = std::sync::mpsc::channel();
        let result = pool.apply_async_with(square, (9u64,), Options::new().callback(move |v: &u64| tx.send(*v).unwrap())).unwrap();
        assert_eq!(result.get().unwrap(), 81);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 81);
        let ordered: Vec<u64> = pool.imap(square, 0..50u64).unwrap().map(Result::unwrap).collect();
        assert_eq!(ordered, (0..50u64).map(square).collect::<Vec<_>>());
        let mut unordered: Vec<u64> =
            pool.imap_unordered_with(square, 0..50u64, Options::new().chunksize(3)).unwrap().map(Result::unwrap).collect();
        unordered.sort_unstable();
        assert_eq!(unordered, ordered);
        let outcomes: Vec<_> = pool.imap(fail_on_odd, 0..4u64).unwrap().collect();
        assert!(matches!(&outcomes[1], Err(Error::TaskFailed { message }) if message.contains("1 is odd")));
        assert_eq!(outcomes[2].as_ref().unwrap(), &2);
        assert!(matches!(pool.apply(exit_now, (3,)), Err(Error::WorkerDied { how, .. }) if how.contains("on node")));
        let timed = pool.apply_async_with(sleep_ms, (5_000u64,), Options::new().timeout(Duration::from_millis(200))).unwrap();
        assert!(matches!(timed.get(), Err(Error::TaskTimedOut(_))));
        let stats = pool.stats();
        assert!(stats.tasks_done >= 200, "{stats:?}");
        let waited = std::thread::spawn(move || {
            let executor = multiproc::pool::Executor::with_builder(builder(&server, "methods-executor").spawn_local(1).processes(1)).unwrap();
            let future = executor.submit(square, (12u64,)).unwrap();
            assert_eq!(future.get().unwrap(), 144);
            drop(executor);
            server
        });
        pool.close();
        pool.join().unwrap();
        let server = waited.join().unwrap();
        let mut conn = server.conn();
        assert_clean(&mut conn, "methods", 0);
    });
}
