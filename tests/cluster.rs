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
    std::fs::read_dir(dir)
        .map(|d| d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("done-"))).count())
        .unwrap_or(0)
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
        let summary: (u64, redis::Value, redis::Value, redis::Value) =
            redis::cmd("XPENDING").arg(&stream).arg("nodes").query(conn).unwrap();
        assert_eq!(summary.0, 0, "entries left pending");
        let consumers: Vec<redis::Value> =
            redis::cmd("XINFO").arg("CONSUMERS").arg(&stream).arg("nodes").query(conn).unwrap();
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
        let result = pool
            .apply_async_with(square, (9u64,), Options::new().callback(move |v: &u64| tx.send(*v).unwrap()))
            .unwrap();
        assert_eq!(result.get().unwrap(), 81);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 81);
        let ordered: Vec<u64> = pool.imap(square, 0..50u64).unwrap().map(Result::unwrap).collect();
        assert_eq!(ordered, (0..50u64).map(square).collect::<Vec<_>>());
        let mut unordered: Vec<u64> = pool
            .imap_unordered_with(square, 0..50u64, Options::new().chunksize(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        unordered.sort_unstable();
        assert_eq!(unordered, ordered);
        let outcomes: Vec<_> = pool.imap(fail_on_odd, 0..4u64).unwrap().collect();
        assert!(matches!(&outcomes[1], Err(Error::TaskFailed { message, .. }) if message.contains("1 is odd")));
        assert_eq!(outcomes[2].as_ref().unwrap(), &2);
        assert!(matches!(pool.apply(exit_now, (3,)), Err(Error::WorkerDied { how, .. }) if how.contains("on node")));
        let timed =
            pool.apply_async_with(sleep_ms, (5_000u64,), Options::new().timeout(Duration::from_millis(200))).unwrap();
        assert!(matches!(timed.get(), Err(Error::TaskTimedOut(_))));
        let stats = pool.stats();
        assert!(stats.tasks_done >= 200, "{stats:?}");
        let waited = std::thread::spawn(move || {
            let executor = multiproc::pool::Executor::with_builder(
                builder(&server, "methods-executor").spawn_local(1).processes(1),
            )
            .unwrap();
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

fn echo_len(outbox: multiproc::Handle<std::os::unix::net::UnixDatagram>, text: String) -> usize {
    outbox.send(text.as_bytes()).unwrap()
}

#[test]
fn descriptors_are_refused_at_submit_and_descriptor_free_work_goes_on() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("descriptors_are_refused_at_submit", 60, || {
        let pool = builder(&server, "fds").spawn_local(1).processes(1).build().unwrap();
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let refused = pool.apply_async(echo_len, (multiproc::Handle::new(a), "x".to_string()));
        assert!(matches!(refused, Err(Error::InvalidState(m)) if m.contains("cannot cross machines")));
        assert_eq!(pool.apply(square, (4u64,)).unwrap(), 16);
    });
}

#[test]
fn a_node_of_another_build_is_named_and_refused() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("a_node_of_another_build_is_named_and_refused", 60, || {
        let _other = TestNode::start(&server.url(), "builds", 1, KEY, &[("__MULTIPROC_CLUSTER_TEST_BUILD_SALT", "v2")]);
        let mut conn = server.conn();
        wait_until("the other build's node registers", 30, || {
            redis::cmd("HLEN").arg("{mp:builds}:nodes").query::<u64>(&mut conn).unwrap() == 1
        });
        let record: Vec<String> = redis::cmd("HVALS").arg("{mp:builds}:nodes").query(&mut conn).unwrap();
        let theirs = record[0].split(' ').next().unwrap().to_string();
        match builder(&server, "builds").build() {
            Err(Error::BuildMismatch { ours, theirs: named }) => {
                assert_ne!(ours, theirs);
                assert!(named.contains(&theirs), "{named} should name {theirs}");
                let message = Error::BuildMismatch { ours, theirs: named }.to_string();
                assert!(message.contains("deploy the same binary"), "{message}");
            }
            other => panic!("expected BuildMismatch, got {other:?}"),
        }
    });
}

#[test]
fn forged_and_foreign_entries_are_refused_and_counted() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("forged_and_foreign_entries_are_refused_and_counted", 60, || {
        let pool = builder(&server, "forged").spawn_local(1).processes(1).build().unwrap();
        let mut conn = server.conn();
        let stream = stream_key(&mut conn, "forged").unwrap();
        let build = stream.rsplit(':').next().unwrap().to_string();
        // A valid-looking entry signed with another key, and one claiming another build.
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("b")
            .arg(&build)
            .arg("m")
            .arg(b"\x01\x02".as_slice())
            .arg("s")
            .arg([0u8; 32].as_slice())
            .query(&mut conn)
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("b")
            .arg("another-build")
            .arg("m")
            .arg("x")
            .arg("s")
            .arg("y")
            .query(&mut conn)
            .unwrap();
        wait_until("the node refuses both", 30, || pool.cluster_stats().unwrap().refused == 2);
        assert_eq!(pool.apply(square, (5u64,)).unwrap(), 25);
        let len: u64 = redis::cmd("XLEN").arg(&stream).query(&mut conn).unwrap();
        assert_eq!(len, 0);
    });
}

#[test]
fn the_completion_script_publishes_only_for_the_entry_s_owner_and_only_once() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    let mut c = server.conn();
    let (stream, results, stats) = ("{mp:s}:tasks:b", "{mp:s}:res:c", "{mp:s}:stats");
    let _: () =
        redis::cmd("XGROUP").arg("CREATE").arg(stream).arg("nodes").arg("0").arg("MKSTREAM").query(&mut c).unwrap();
    let id: String = redis::cmd("XADD").arg(stream).arg("*").arg("m").arg("x").query(&mut c).unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("nodes")
        .arg("A")
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query(&mut c)
        .unwrap();
    // B reclaims the entry while A stalls; then both complete it.
    let _: redis::Value = redis::cmd("XCLAIM").arg(stream).arg("nodes").arg("B").arg(0).arg(&id).query(&mut c).unwrap();
    let complete = |c: &mut redis::Connection, node: &str| -> i64 {
        redis::cmd("EVAL")
            .arg(cluster::__scripts::COMPLETE)
            .arg(3)
            .arg(stream)
            .arg(results)
            .arg(stats)
            .arg("nodes")
            .arg(&id)
            .arg(format!("result from {node}"))
            .arg(60_000)
            .arg("")
            .arg(node)
            .query(c)
            .unwrap()
    };
    assert_eq!(complete(&mut c, "A"), 0, "the stalled node's late result is dropped");
    assert_eq!(complete(&mut c, "B"), 1, "the owner's result is published");
    assert_eq!(complete(&mut c, "B"), 0, "a second completion is dropped");
    let published: Vec<String> = redis::cmd("LRANGE").arg(results).arg(0).arg(-1).query(&mut c).unwrap();
    assert_eq!(published, vec!["result from B".to_string()]);
    let ttl: i64 = redis::cmd("PTTL").arg(results).query(&mut c).unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "the result list expires (PTTL {ttl})");
    let len: u64 = redis::cmd("XLEN").arg(stream).query(&mut c).unwrap();
    assert_eq!(len, 0);
    let dropped: u64 = redis::cmd("HGET").arg(stats).arg("dropped_late").query(&mut c).unwrap();
    assert_eq!(dropped, 2);
}

/// Runs `reclaim.lua` as node `node`: the entries it took (id, deliveries, previous owner), and
/// the milliseconds it says to wait before the next lease runs out.
fn reclaim(
    c: &mut redis::Connection,
    stream: &str,
    node: &str,
    lease: u64,
    max: u64,
) -> (Vec<(String, i64, String)>, i64) {
    let (taken, wait): (Vec<(String, redis::Value, i64, String)>, i64) = redis::cmd("EVAL")
        .arg(cluster::__scripts::RECLAIM)
        .arg(1)
        .arg(stream)
        .arg("nodes")
        .arg(node)
        .arg(lease)
        .arg(max)
        .arg(lease / 4)
        .query(c)
        .unwrap();
    (taken.into_iter().map(|(id, _, deliveries, from)| (id, deliveries, from)).collect(), wait)
}

#[test]
fn the_reclaim_script_takes_only_expired_leases_and_says_when_the_next_runs_out() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    let mut c = server.conn();
    let stream = "{mp:r}:tasks:b";
    let _: () =
        redis::cmd("XGROUP").arg("CREATE").arg(stream).arg("nodes").arg("0").arg("MKSTREAM").query(&mut c).unwrap();
    let ids: Vec<String> =
        (0..3).map(|_| redis::cmd("XADD").arg(stream).arg("*").arg("m").arg("x").query(&mut c).unwrap()).collect();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("nodes")
        .arg("A")
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query(&mut c)
        .unwrap();
    // Idle times set by the broker itself (XCLAIM ... IDLE): no waiting in the test.
    let set_idle = |c: &mut redis::Connection, owner: &str, id: &str, idle: u64| {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(stream)
            .arg("nodes")
            .arg(owner)
            .arg(0)
            .arg(id)
            .arg("IDLE")
            .arg(idle)
            .arg("JUSTID")
            .query(c)
            .unwrap();
    };
    set_idle(&mut c, "A", &ids[0], 5_000); // A's lease on it ran out long ago
    set_idle(&mut c, "A", &ids[1], 500); // A renewed it half a lease ago
    set_idle(&mut c, "B", &ids[2], 9_000); // B's own entry is never "reclaimed" by B
    let (taken, wait) = reclaim(&mut c, stream, "B", 1_000, 10);
    assert_eq!(taken, vec![(ids[0].clone(), 2, "A".to_string())]);
    assert_eq!(wait, -1, "no other lease runs out within the horizon (a quarter lease)");
    set_idle(&mut c, "A", &ids[1], 900);
    let (taken, wait) = reclaim(&mut c, stream, "B", 1_000, 10);
    assert!(taken.is_empty(), "a lease not yet run out is never taken: {taken:?}");
    assert!((1..=100).contains(&wait), "A's lease runs out in at most 100 ms: {wait}");
    // More expired than it may take: it takes its share and says to look again at once.
    set_idle(&mut c, "A", &ids[1], 2_000);
    set_idle(&mut c, "A", &ids[2], 2_000);
    let (taken, wait) = reclaim(&mut c, stream, "B", 1_000, 1);
    assert_eq!(taken, vec![(ids[1].clone(), 2, "A".to_string())]);
    assert_eq!(wait, 0);
}

#[test]
fn a_killed_node_s_chunk_runs_again_elsewhere_or_fails_with_node_lost() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("a_killed_node_s_chunk_runs_again_elsewhere", 120, || {
        let url = server.url();
        let lease = Duration::from_secs(1);
        let mut conn = server.conn();
        let mut first = TestNode::start(&url, "kill", 1, KEY, &[]);
        let pool = builder(&server, "kill").lease(lease).build().unwrap();
        // With a retry: runs again on the other node.
        let retried = pool.apply_async_with(sleep_ms, (1_500u64,), Options::new().retries(1)).unwrap();
        wait_until("the first node takes the chunk", 30, || pending_owner(&mut conn, "kill").is_some());
        assert_eq!(pid_of(&pending_owner(&mut conn, "kill").unwrap()), first.pid());
        let second = TestNode::start(&url, "kill", 1, KEY, &[]);
        wait_until("the second node reports", 30, || pool.nodes().unwrap().len() == 2);
        let killed_at = Instant::now();
        first.child.kill().unwrap();
        first.child.wait().unwrap();
        assert_eq!(retried.get().unwrap(), 1_500);
        let took = killed_at.elapsed();
        assert!(took < Duration::from_secs(30), "recovery took {took:?}");
        assert_eq!(pool.cluster_stats().unwrap().redelivered, 1);
        // Without retries: NodeLost, never a second start.
        let lost = pool.apply_async(sleep_ms, (1_500u64,)).unwrap();
        wait_until("the second node takes the chunk", 30, || pending_owner(&mut conn, "kill").is_some());
        let owner = pending_owner(&mut conn, "kill").unwrap();
        assert_eq!(pid_of(&owner), second.pid());
        let _third = TestNode::start(&url, "kill", 1, KEY, &[]);
        wait_until("the third node reports", 30, || pool.nodes().unwrap().len() >= 2);
        let mut second = second;
        second.child.kill().unwrap();
        second.child.wait().unwrap();
        match lost.get() {
            Err(Error::NodeLost { node, lease: l }) => {
                assert_eq!(node, owner);
                assert_eq!(l, lease);
            }
            other => panic!("expected NodeLost, got {other:?}"),
        }
        assert_eq!(pool.cluster_stats().unwrap().nodes_lost, 1);
        pool.close();
        pool.join().unwrap();
        // The killed nodes' consumers are reaped by the live one (three leases of silence).
        let stream = stream_key(&mut conn, "kill").unwrap();
        wait_until("dead nodes are reaped", 30, || {
            redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg("nodes")
                .query::<Vec<redis::Value>>(&mut conn)
                .unwrap()
                .len()
                <= 1
        });
        assert_clean(&mut conn, "kill", 1);
    });
}

#[test]
fn a_stalled_node_loses_its_chunk_and_kills_its_task() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("a_stalled_node_loses_its_chunk_and_kills_its_task", 120, || {
        let url = server.url();
        let dir = temp_dir("stall");
        let mut conn = server.conn();
        let stalled = TestNode::start(&url, "stall", 1, KEY, &[]);
        let pool = builder(&server, "stall").lease(Duration::from_secs(1)).build().unwrap();
        let result = pool
            .apply_async_with(sleep_then_mark, (8_000u64, dir.display().to_string()), Options::new().retries(1))
            .unwrap();
        wait_until("the node takes the chunk", 30, || pending_owner(&mut conn, "stall").is_some());
        let _healthy = TestNode::start(&url, "stall", 1, KEY, &[]);
        wait_until("the second node reports", 30, || pool.nodes().unwrap().len() == 2);
        signal(stalled.pid(), rustix::process::Signal::STOP);
        wait_until("the healthy node reclaims the chunk", 30, || {
            pending_owner(&mut conn, "stall").is_some_and(|owner| pid_of(&owner) != stalled.pid())
        });
        signal(stalled.pid(), rustix::process::Signal::CONT);
        assert_eq!(result.get().unwrap(), 8_000);
        // The stalled node's task started first and would have ended first: it was killed.
        assert_eq!(marks(&dir), 1, "the task ran to the end on both nodes");
        let stats = pool.cluster_stats().unwrap();
        assert_eq!((stats.redelivered, stats.published), (1, 1), "{stats:?}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_task_ten_times_longer_than_the_lease_is_never_stolen() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("a_task_ten_times_longer_than_the_lease_is_never_stolen", 60, || {
        let dir = temp_dir("long");
        let pool =
            builder(&server, "long").lease(Duration::from_millis(300)).spawn_local(2).processes(1).build().unwrap();
        let result = pool
            .apply_async_with(sleep_then_mark, (3_000u64, dir.display().to_string()), Options::new().retries(3))
            .unwrap();
        assert_eq!(result.get().unwrap(), 3_000);
        let stats = pool.cluster_stats().unwrap();
        assert_eq!((stats.redelivered, stats.late_results_dropped), (0, 0), "{stats:?}");
        assert_eq!(marks(&dir), 1);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_broker_restarted_without_its_data_is_detected() {
    let _serial = serial();
    let Some(mut server) = RedisServer::start() else { return };
    watchdog("a_broker_restarted_without_its_data_is_detected", 120, || {
        let pool = builder(&server, "restart")
            .lease(Duration::from_secs(1))
            .broker_timeout(Duration::from_secs(30))
            .spawn_local(2)
            .processes(1)
            .build()
            .unwrap();
        let mut conn = server.conn();
        // A synchronous apply keeps its connections for the next one (see below).
        assert_eq!(pool.apply(add, (1u64, 2u64)).unwrap(), 3);
        let retried = pool.apply_async_with(sleep_ms, (1_000u64,), Options::new().retries(1)).unwrap();
        let lost = pool.apply_async(sleep_ms, (1_000u64,)).unwrap();
        wait_until("both chunks are taken", 30, || {
            let stream = stream_key(&mut conn, "restart").unwrap();
            redis::cmd("XPENDING")
                .arg(&stream)
                .arg("nodes")
                .query::<(u64, redis::Value, redis::Value, redis::Value)>(&mut conn)
                .unwrap()
                .0
                == 2
        });
        server.restart_empty();
        assert_eq!(retried.get().unwrap(), 1_000);
        assert!(matches!(lost.get(), Err(Error::BrokerLost { reason }) if reason.contains("restarted")));
        // A synchronous apply on connections kept from before the restart: they are found closed
        // and it runs on fresh ones (not failed, nor counted lost).
        assert_eq!(pool.apply(add, (20u64, 22u64)).unwrap(), 42);
        // The nodes came back: new work runs.
        assert_eq!(pool.map(square, 0..20u64).unwrap()[19], 361);
        let stats = pool.cluster_stats().unwrap();
        assert!(stats.epochs_lost >= 1 && stats.resubmitted == 1 && stats.broker_lost == 1, "{stats:?}");
    });
}

fn client_that_dies(url: String, pool: String, outbox: common::Outbox) {
    let pool = Pool::builder().cluster(url).pool_name(pool).authkey(KEY).lease(Duration::from_secs(1)).build().unwrap();
    let pending = pool.map_async_with(sleep_ms, vec![300u64; 20], Options::new().chunksize(1)).unwrap();
    common::send(&outbox, &pool.cluster_client_name().unwrap());
    let _ = pending.get();
}

#[test]
fn a_killed_client_s_chunks_are_skipped_and_its_results_expire() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("a_killed_client_s_chunks_are_skipped", 120, || {
        let _node = TestNode::start(&server.url(), "orphans", 1, KEY, &[]);
        let (inbox, outbox) = common::channel();
        let mut client = multiproc::Process::new(client_that_dies, (server.url(), "orphans".to_string(), outbox));
        client.start().unwrap();
        let name = inbox.recv(60);
        let mut conn = server.conn();
        wait_until("the node takes a chunk", 30, || pending_owner(&mut conn, "orphans").is_some());
        client.kill().unwrap();
        client.join().unwrap();
        let stream = stream_key(&mut conn, "orphans").unwrap();
        wait_until("the node skips the dead client's chunks", 60, || {
            redis::cmd("XLEN").arg(&stream).query::<u64>(&mut conn).unwrap() == 0
        });
        let results = format!("{{mp:orphans}}:res:{name}");
        wait_until("the dead client's results expire", 60, || {
            redis::cmd("EXISTS").arg(&results).query::<u64>(&mut conn).unwrap() == 0
        });
        let skipped: u64 = redis::cmd("HGET").arg("{mp:orphans}:stats").arg("skipped").query(&mut conn).unwrap();
        assert!(skipped > 0, "skipped {skipped}");
        assert_clean(&mut conn, "orphans", 1);
    });
}

#[test]
fn a_partitioned_node_never_hangs_and_its_chunk_runs_once_elsewhere() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("a_partitioned_node_never_hangs", 120, || {
        let dir = temp_dir("partition");
        let relay = Relay::start(server.port);
        let mut conn = server.conn();
        let cut_off = TestNode::start(&relay.url(), "partition", 1, KEY, &[]);
        let pool = builder(&server, "partition").lease(Duration::from_secs(1)).build().unwrap();
        let result = pool
            .apply_async_with(sleep_then_mark, (8_000u64, dir.display().to_string()), Options::new().retries(1))
            .unwrap();
        wait_until("the relayed node takes the chunk", 30, || pending_owner(&mut conn, "partition").is_some());
        assert_eq!(pid_of(&pending_owner(&mut conn, "partition").unwrap()), cut_off.pid());
        let _direct = TestNode::start(&server.url(), "partition", 1, KEY, &[]);
        wait_until("the direct node reports", 30, || pool.nodes().unwrap().len() == 2);
        relay.set(RelayMode::Stall);
        assert_eq!(result.get().unwrap(), 8_000);
        assert_eq!(marks(&dir), 1, "the cut-off node's task should have been stopped");
        // The link heals (every connection reset): the node reconnects and serves again, and
        // resets in the middle of a map change nothing but timing.
        relay.set(RelayMode::Forward);
        relay.reset_all();
        let squares = pool.map_async_with(sleep_ms, vec![20u64; 60], Options::new().chunksize(1)).unwrap();
        for _ in 0..3 {
            relay.reset_all();
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(squares.get().unwrap(), vec![20u64; 60]);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

fn slow_echo(i: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(15));
    i
}

#[test]
fn churn_soak_every_outcome_once_and_nothing_left_in_the_broker() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("churn_soak", 240, || {
        let url = server.url();
        let mut conn = server.conn();
        let mut nodes: Vec<TestNode> = (0..3).map(|_| TestNode::start(&url, "churn", 1, KEY, &[])).collect();
        let pool = builder(&server, "churn").lease(Duration::from_secs(1)).build().unwrap();
        wait_until("three nodes report", 30, || pool.nodes().unwrap().len() == 3);
        let tasks = 200u64;
        let outcomes = pool.imap_with(slow_echo, 0..tasks, Options::new().retries(6)).unwrap();
        let mut next = common::xorshift(0x5eed);
        let churn = std::thread::scope(|scope| {
            let reader = scope.spawn(move || outcomes.collect::<Vec<_>>());
            for _ in 0..6 {
                std::thread::sleep(Duration::from_millis(250));
                let victim = (next() % nodes.len() as u64) as usize;
                let mut node = nodes.swap_remove(victim);
                node.child.kill().unwrap();
                node.child.wait().unwrap();
                nodes.push(TestNode::start(&url, "churn", 1, KEY, &[]));
            }
            reader.join().unwrap()
        });
        assert_eq!(churn.len() as u64, tasks, "one outcome per task");
        for (i, outcome) in churn.iter().enumerate() {
            match outcome {
                Ok(v) => assert_eq!(*v, i as u64),
                Err(Error::NodeLost { .. }) => {}
                Err(e) => panic!("task {i}: {e}"),
            }
        }
        pool.close();
        pool.join().unwrap();
        let stream = stream_key(&mut conn, "churn").unwrap();
        wait_until("the killed nodes are reaped", 60, || {
            let consumers = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg("nodes")
                .query::<Vec<redis::Value>>(&mut conn)
                .unwrap();
            let records: usize = redis::cmd("ZCARD").arg("{mp:churn}:alive").query(&mut conn).unwrap();
            consumers.len() <= nodes.len() && records == nodes.len()
        });
        drop(nodes);
        assert_clean(&mut conn, "churn", 0);
        let alive: u64 = redis::cmd("ZCARD").arg("{mp:churn}:alive").query(&mut conn).unwrap();
        assert_eq!(alive, 0, "node records left");
    });
}

/// A synchronous `apply` reads its result in person (a result list of its own): a node lost
/// under it still fails it with `NodeLost`, a terminate from another thread still ends it, and
/// nothing of it is left in the broker.
#[test]
fn a_synchronous_apply_waiting_in_person_sees_node_loss_and_terminate() {
    let _serial = serial();
    let Some(server) = RedisServer::start() else { return };
    watchdog("a_synchronous_apply_waiting_in_person", 120, || {
        let url = server.url();
        let lease = Duration::from_secs(1);
        let mut conn = server.conn();
        // Both nodes first: whichever takes the chunk is killed (a task far longer than any
        // start-up, so it cannot end before the kill).
        let mut nodes =
            vec![TestNode::start(&url, "person", 1, KEY, &[]), TestNode::start(&url, "person", 1, KEY, &[])];
        let pool = builder(&server, "person").lease(lease).build().unwrap();
        wait_until("both nodes report", 30, || pool.nodes().unwrap().len() == 2);
        assert_eq!(pool.apply(add, (20u64, 22u64)).unwrap(), 42);
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| pool.apply(sleep_ms, (60_000u64,)));
            wait_until("a node takes the chunk", 30, || pending_owner(&mut conn, "person").is_some());
            let owner = pending_owner(&mut conn, "person").unwrap();
            let at = nodes.iter().position(|n| n.pid() == pid_of(&owner)).unwrap();
            let mut killed = nodes.remove(at);
            killed.child.kill().unwrap();
            killed.child.wait().unwrap();
            match waiting.join().unwrap() {
                Err(Error::NodeLost { node, .. }) => assert_eq!(node, owner),
                other => panic!("expected NodeLost, got {other:?}"),
            }
            let waiting = scope.spawn(|| pool.apply(sleep_ms, (20_000u64,)));
            wait_until("a node takes the chunk", 30, || pending_owner(&mut conn, "person").is_some());
            let terminated_at = Instant::now();
            pool.terminate();
            assert!(matches!(waiting.join().unwrap(), Err(Error::PoolTerminated)));
            assert!(terminated_at.elapsed() < Duration::from_secs(10), "terminate took {:?}", terminated_at.elapsed());
        });
        pool.join().unwrap();
        wait_until("the terminated chunk's node lets it go", 30, || pending_owner(&mut conn, "person").is_none());
        let results: Vec<String> = redis::cmd("KEYS").arg("{mp:person}:res:*").query(&mut conn).unwrap();
        assert!(results.is_empty(), "result lists left: {results:?}");
    });
}
