//! Pools across machines: the same [`Pool`] on many hosts, through a Redis or Valkey broker.
//!
//! (Module documentation: see the end of this file's header; written in `doc.md`.)
#![doc = include_str!("doc.md")]

mod broker;
mod client;
mod direct;
mod fuzz;
mod node;
mod wire;

use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::broker::{Keys, Link};
use self::client::{Client, ClientConfig};
#[doc(hidden)]
pub use self::fuzz::fuzz_feed;
use super::scheduler::{Runner, Shared, Stats};
use super::{Pool, PoolBuilder};
use crate::context::StartMethod;
use crate::error::{Error, Result};

/// The broker scripts, for tests of their semantics on a real server.
#[doc(hidden)]
pub mod __scripts {
    /// `complete.lua` (see `broker.rs`).
    pub const COMPLETE: &str = super::broker::COMPLETE;
    /// `reclaim.lua` (see `broker.rs`).
    pub const RECLAIM: &str = super::broker::RECLAIM;
}

/// The environment variable that turns a run of the program into a node agent: the broker's URL,
/// for example `redis://broker:6379/0?pool=jobs&processes=32`. Read before `main` (by the start-up
/// hook that also starts spawned children), so the program's `main` never runs in a node.
pub const WORKER_VAR: &str = "MULTIPROC_WORKER";
/// The environment variable holding the pool's key (any string), read by nodes and clients that
/// were given none in code. Every task and result is signed with it (HMAC-SHA256).
pub const AUTHKEY_VAR: &str = "MULTIPROC_AUTHKEY";

/// Default lease: how long a node may go without renewing before its chunks go to other nodes.
pub const DEFAULT_LEASE: Duration = node::DEFAULT_LEASE;
/// Default bound on one client's chunks in the broker (queued and running).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default time a client waits for an unreachable broker before failing its outstanding chunks
/// with [`Error::BrokerLost`].
pub const DEFAULT_BROKER_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of every read and write on a broker connection (besides the time a blocking command
/// is asked to wait).
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `build` waits for the nodes of `spawn_local` to report.
const LOCAL_NODES_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster half of a [`PoolBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct ClusterSettings {
    url: Option<String>,
    pool_name: Option<String>,
    authkey: Option<Vec<u8>>,
    lease: Duration,
    max_in_flight: usize,
    broker_timeout: Duration,
    spawn_local: usize,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            url: None,
            pool_name: None,
            authkey: None,
            lease: DEFAULT_LEASE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            broker_timeout: DEFAULT_BROKER_TIMEOUT,
            spawn_local: 0,
        }
    }
}

/// The broker URL without this crate's query parameters, and those parameters.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), Vec::new()) };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if matches!(k, "pool" | "processes" | "name") {
            ours.push((k.to_string(), v.to_string()));
        } else {
            theirs.push(pair);
        }
    }
    let base = if theirs.is_empty() { base.to_string() } else { format!("{base}?{}", theirs.join("&")) };
    (base, ours)
}

/// The default pool name: the program's file name.
fn default_pool_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "multiproc".into())
}

fn valid_pool_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || name.chars().any(|c| c.is_whitespace() || "{}:".contains(c)) {
        return Err(Error::InvalidState(format!(
            "cluster pool name {name:?} is not valid: use 1 to 200 characters without spaces, braces or colons"
        )));
    }
    Ok(())
}

impl PoolBuilder {
    fn cluster_settings(&mut self) -> &mut ClusterSettings {
        self.cluster.get_or_insert_with(ClusterSettings::default)
    }

    /// Runs the pool's tasks on cluster nodes through the broker at `url` (`redis://HOST:PORT/DB`;
    /// Redis 6.2 or later, or Valkey) instead of local worker processes. Nodes run this same
    /// binary ([`WORKER_VAR`], [`Node`]) or are started by [`spawn_local`](Self::spawn_local).
    /// See the [module docs](crate::cluster).
    pub fn cluster(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        let (base, params) = split_url(&url);
        let settings = self.cluster_settings();
        settings.url = Some(base);
        for (k, v) in params {
            if k == "pool" {
                settings.pool_name = Some(v);
            }
        }
        self
    }

    /// The pool's name in the broker (default: the program's file name). Clients and nodes of one
    /// name share the work; keys are `{mp:NAME}:*`.
    pub fn pool_name(mut self, name: impl Into<String>) -> Self {
        self.cluster_settings().pool_name = Some(name.into());
        self
    }

    /// The key every task and result is signed with (default: the [`AUTHKEY_VAR`] variable; with
    /// [`spawn_local`](Self::spawn_local) and no key, a random one). Nodes need the same key.
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.cluster_settings().authkey = Some(key.as_ref().to_vec());
        self
    }

    /// How long a node may go without renewing its leases before its chunks go to other nodes
    /// (default [`DEFAULT_LEASE`]). Renewal runs in its own thread every third of the lease, so a
    /// task longer than the lease is never taken from a healthy node.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.cluster_settings().lease = lease.max(Duration::from_millis(100));
        self
    }

    /// The most chunks this client keeps in the broker at once (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]); the rest wait in the client.
    pub fn max_in_flight(mut self, chunks: usize) -> Self {
        self.cluster_settings().max_in_flight = chunks.max(1);
        self
    }

    /// How long the client waits for an unreachable broker before failing outstanding chunks with
    /// [`Error::BrokerLost`] (default [`DEFAULT_BROKER_TIMEOUT`]).
    pub fn broker_timeout(mut self, timeout: Duration) -> Self {
        self.cluster_settings().broker_timeout = timeout;
        self
    }

    /// Starts `nodes` node agents on this machine, as children of this program (each with
    /// [`processes`](Self::processes) workers, default `cpu_count / nodes`), for laptops and tests.
    /// They stop when the pool does, or when this program ends.
    pub fn spawn_local(mut self, nodes: usize) -> Self {
        self.cluster_settings().spawn_local = nodes;
        self
    }

    /// Builds a cluster pool.
    pub(crate) fn build_cluster(self, settings: ClusterSettings) -> Result<Pool> {
        let Some(url) = settings.url.clone() else {
            return Err(Error::InvalidState(
                "a cluster setting (lease, pool_name, spawn_local, ...) was given without a broker: add .cluster(\"redis://HOST:PORT/DB\")"
                    .into(),
            ));
        };
        if self.initializer.is_some() || self.max_tasks.is_some() || self.method.is_some() {
            return Err(Error::InvalidState(
                "a cluster pool's workers belong to its nodes: give the initializer, max_tasks_per_child and start \
                 method to multiproc::cluster::Node::builder on the nodes"
                    .into(),
            ));
        }
        let pool_name = settings.pool_name.clone().unwrap_or_else(default_pool_name);
        valid_pool_name(&pool_name)?;
        let key = match (settings.authkey.clone(), std::env::var_os(AUTHKEY_VAR)) {
            (Some(key), _) => key,
            (None, Some(key)) => key.into_encoded_bytes(),
            (None, None) if settings.spawn_local > 0 => broker::random_hex().into_bytes(),
            (None, None) => {
                return Err(Error::InvalidState(format!(
                    "a cluster pool needs a key to sign its tasks: set {AUTHKEY_VAR} (the same on the nodes) or call .authkey(...)"
                )));
            }
        };
        let config = ClientConfig {
            url: url.clone(),
            keys: Keys::new(&pool_name),
            key: key.clone(),
            lease: settings.lease,
            max_in_flight: settings.max_in_flight,
            broker_timeout: settings.broker_timeout,
            io_timeout: IO_TIMEOUT,
        };
        let stats = Arc::new(Stats::default());
        let client = Client::connect(config, Arc::clone(&stats))?;
        let per_node = self.processes.unwrap_or_else(|| (crate::cpu_count() / settings.spawn_local.max(1)).max(1));
        if settings.spawn_local > 0 {
            let children = spawn_nodes(&url, &pool_name, &key, settings.spawn_local, per_node)?;
            lock(&client.local_nodes).extend(children);
        }
        let mut link = Link::new(&url, IO_TIMEOUT)?;
        let slots = match wait_for_nodes(&mut link, &client, &pool_name, settings.spawn_local, settings.lease) {
            Ok(slots) => slots,
            Err(e) => {
                stop_local_nodes(&mut lock(&client.local_nodes));
                return Err(e);
            }
        };
        let thread = client.start_threads()?;
        let shared = Arc::new(Shared::new(Arc::clone(&client) as Arc<dyn Runner>, stats));
        let core = super::Core {
            shared,
            gate: Arc::default(),
            scheduler: Mutex::new(Some(thread)),
            processes: slots.max(1),
            timeout: self.timeout,
            retries: self.retries,
            cluster: Some(ClusterHandle { client, url, pool_name }),
        };
        Ok(Pool { core: Arc::new(core) })
    }
}

/// What a cluster pool keeps besides its runner (for [`Pool::nodes`] and [`Pool::cluster_stats`]).
pub(crate) struct ClusterHandle {
    client: Arc<Client>,
    url: String,
    pool_name: String,
}

impl ClusterHandle {
    /// Runs a synchronous call's submission so that its result comes back to the calling
    /// thread in person (see `Client::in_person`).
    ///
    /// # Errors
    ///
    /// Those of `submit`.
    pub(crate) fn in_person<R>(&self, submit: impl FnOnce() -> Result<R>) -> Result<R> {
        self.client.in_person(submit)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts `count` node agents: this same program with [`WORKER_VAR`] set; each stops when its
/// standard input (a pipe held by this process) closes.
fn spawn_nodes(url: &str, pool: &str, key: &[u8], count: usize, processes: usize) -> Result<Vec<Child>> {
    let exe = std::env::current_exe().map_err(|e| Error::io("find this program to start cluster nodes", e))?;
    let mut children = Vec::new();
    for _ in 0..count {
        let spawned = Command::new(&exe)
            .env(WORKER_VAR, format!("{url}?pool={pool}&processes={processes}"))
            .env(AUTHKEY_VAR, std::ffi::OsStr::from_bytes(key))
            .env(WATCH_STDIN_VAR, "1")
            .stdin(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => children.push(child),
            Err(e) => {
                stop_local_nodes(&mut children);
                return Err(Error::io("start a local cluster node", e));
            }
        }
    }
    Ok(children)
}

/// Set on nodes started by `spawn_local`: stop when standard input closes.
const WATCH_STDIN_VAR: &str = "__MULTIPROC_NODE_WATCH_STDIN";

/// Closes the local nodes' pipes (they stop cleanly), waits a little, then kills what is left.
pub(crate) fn stop_local_nodes(children: &mut Vec<Child>) {
    for child in children.iter_mut() {
        drop(child.stdin.take());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for mut child in children.drain(..) {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// The live nodes of this pool (heartbeat within three leases).
fn live_nodes(link: &mut Link, keys: &Keys, lease: Duration) -> Result<Vec<NodeInfo>> {
    let (nodes_key, alive_key) = (keys.nodes(), keys.alive());
    type Listing = (Vec<(String, String)>, Vec<(String, f64)>, (u64, u64));
    let (records, times, now): Listing = link.run("did not list the nodes", Duration::ZERO, |conn| {
        redis::pipe()
            .cmd("HGETALL")
            .arg(&nodes_key)
            .cmd("ZRANGE")
            .arg(&alive_key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .cmd("TIME")
            .query(conn)
    })?;
    let now_ms = now.0 * 1000 + now.1 / 1000;
    let this_build = wire::fingerprint()?;
    let mut out = Vec::new();
    for (name, record) in records {
        let Some((_, seen)) = times.iter().find(|(n, _)| *n == name) else { continue };
        let silent = Duration::from_millis(now_ms.saturating_sub(*seen as u64));
        if silent > lease * 3 {
            continue;
        }
        let mut parts = record.splitn(4, ' ');
        let build = parts.next().unwrap_or_default().to_string();
        let slots = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let pid = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let host = parts.next().unwrap_or_default().to_string();
        out.push(NodeInfo { same_build: build == this_build, name, host, pid, slots, build, silent_for: silent });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Waits for `expected` nodes of this build (the ones `spawn_local` started); then returns the
/// slots of the live nodes of this build, or [`Error::BuildMismatch`] when only other builds are
/// live.
fn wait_for_nodes(link: &mut Link, client: &Client, pool: &str, expected: usize, lease: Duration) -> Result<usize> {
    let keys = Keys::new(pool);
    let deadline = Instant::now() + LOCAL_NODES_TIMEOUT;
    loop {
        let nodes = live_nodes(link, &keys, lease)?;
        let ours: Vec<&NodeInfo> = nodes.iter().filter(|n| n.same_build).collect();
        if ours.len() >= expected {
            if ours.is_empty() && !nodes.is_empty() {
                let mut theirs: Vec<String> = nodes.iter().map(|n| format!("{} on {}", n.build, n.host)).collect();
                theirs.dedup();
                return Err(Error::BuildMismatch { ours: client.build().to_string(), theirs: theirs.join(", ") });
            }
            return Ok(ours.iter().map(|n| n.slots).sum());
        }
        for child in lock(&client.local_nodes).iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::InvalidState(format!(
                    "a local cluster node exited at start ({status}); its standard error says why"
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::InvalidState(format!(
                "the local cluster nodes did not report to the broker within {LOCAL_NODES_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A node serving a cluster pool, as [`Pool::nodes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Its name (host, pid and a random part, unless named by [`NodeBuilder::name`]).
    pub name: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// Its worker processes.
    pub slots: usize,
    /// The build fingerprint of its binary.
    pub build: String,
    /// Whether it runs this program's build (only those run this program's tasks).
    pub same_build: bool,
    /// Time since its last heartbeat.
    pub silent_for: Duration,
}

/// Counters of a cluster pool (see [`Pool::cluster_stats`]): the broker's, shared by every client
/// and node of the pool, and this client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Chunk outcomes published to clients (all clients of the pool).
    pub published: u64,
    /// Late results dropped: a node finished a chunk whose lease it had lost.
    pub late_results_dropped: u64,
    /// Chunks run again on another node after their node was lost.
    pub redelivered: u64,
    /// Chunks failed with [`Error::NodeLost`].
    pub nodes_lost: u64,
    /// Task entries refused by nodes: another build, a wrong MAC, undecodable.
    pub refused: u64,
    /// Chunks of vanished clients that nodes skipped.
    pub skipped: u64,
    /// Chunks this client submitted again after the broker lost them.
    pub resubmitted: u64,
    /// Chunks this client failed with [`Error::BrokerLost`].
    pub broker_lost: u64,
    /// Results this client refused (bad MAC or undecodable).
    pub forged_results: u64,
    /// Times this client found the broker had lost the pool's state.
    pub epochs_lost: u64,
}

impl Pool {
    fn cluster(&self) -> Result<&ClusterHandle> {
        self.core.cluster.as_ref().ok_or_else(|| Error::InvalidState("this is a local pool, not a cluster pool".into()))
    }

    /// The live nodes of a cluster pool (heartbeat within three leases), of every build.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] for a local pool; [`Error::Broker`] when the broker cannot be reached.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let cluster = self.cluster()?;
        let mut link = Link::new(&cluster.url, IO_TIMEOUT)?;
        live_nodes(&mut link, &Keys::new(&cluster.pool_name), cluster.client_lease())
    }

    /// The counters of a cluster pool.
    ///
    /// # Errors
    ///
    /// As [`nodes`](Self::nodes).
    pub fn cluster_stats(&self) -> Result<ClusterStats> {
        let cluster = self.cluster()?;
        let mut link = Link::new(&cluster.url, IO_TIMEOUT)?;
        let key = Keys::new(&cluster.pool_name).stats();
        let counts: std::collections::HashMap<String, u64> =
            link.run("did not tell the pool's counters", Duration::ZERO, |c| redis::cmd("HGETALL").arg(&key).query(c))?;
        let get = |name: &str| counts.get(name).copied().unwrap_or(0);
        let mine = &cluster.client.counters;
        Ok(ClusterStats {
            published: get("published"),
            late_results_dropped: get("dropped_late"),
            redelivered: get("redelivered"),
            nodes_lost: get("node_lost"),
            refused: get("refused"),
            skipped: get("skipped"),
            resubmitted: mine.resubmitted.load(Ordering::Relaxed),
            broker_lost: mine.broker_lost.load(Ordering::Relaxed),
            forged_results: mine.forged_results.load(Ordering::Relaxed),
            epochs_lost: mine.epochs_lost.load(Ordering::Relaxed),
        })
    }

    /// The broker client's name of this pool (its result list is `{mp:POOL}:res:NAME`).
    #[doc(hidden)]
    pub fn cluster_client_name(&self) -> Option<String> {
        self.core.cluster.as_ref().map(|c| c.client.name().to_string())
    }
}

impl ClusterHandle {
    fn client_lease(&self) -> Duration {
        self.client.lease()
    }
}

/// A node agent run from code: for programs that start nodes with a subcommand of their own
/// rather than the [`WORKER_VAR`] variable.
///
/// ```no_run
/// # fn main() -> multiproc::Result<()> {
/// // in `myapp node`:
/// multiproc::cluster::Node::builder("redis://broker:6379/0").pool_name("jobs").processes(8).run()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Node;

impl Node {
    /// A node of the pool whose broker is at `url` (`redis://HOST:PORT/DB`, optionally with
    /// `?pool=NAME&processes=N&name=NODE`).
    pub fn builder(url: impl Into<String>) -> NodeBuilder {
        let url = url.into();
        let (base, params) = split_url(&url);
        let mut builder = NodeBuilder {
            url: base,
            pool_name: None,
            processes: None,
            authkey: None,
            name: None,
            watch_stdin: false,
            pool: Pool::builder(),
        };
        for (k, v) in params {
            match k.as_str() {
                "pool" => builder.pool_name = Some(v),
                "processes" => builder.processes = v.parse().ok(),
                "name" => builder.name = Some(v),
                _ => {}
            }
        }
        builder
    }
}

/// Configures a [`Node`].
#[must_use = "a builder does nothing until run"]
#[derive(Debug)]
pub struct NodeBuilder {
    url: String,
    pool_name: Option<String>,
    processes: Option<usize>,
    authkey: Option<Vec<u8>>,
    name: Option<String>,
    watch_stdin: bool,
    pool: PoolBuilder,
}

impl NodeBuilder {
    /// The pool to serve (default: the program's file name, as for clients).
    pub fn pool_name(mut self, name: impl Into<String>) -> Self {
        self.pool_name = Some(name.into());
        self
    }

    /// Worker processes on this node (default: [`cpu_count`](crate::cpu_count), which follows
    /// the cgroup's CPU limit and so a Slurm allocation or a Kubernetes limit).
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = Some(processes);
        self
    }

    /// The pool's key (default: the [`AUTHKEY_VAR`] variable).
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(key.as_ref().to_vec());
        self
    }

    /// The node's name (default: host, pid and a random part). Names must be unique.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs `initializer(args...)` in each of the node's workers (CPython `initializer`).
    pub fn initializer<F, Args>(mut self, initializer: F, args: Args) -> Self
    where
        F: crate::process::Target<Args> + Sync,
        Args: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.pool = self.pool.initializer(initializer, args);
        self
    }

    /// Replaces each worker after `tasks` chunks (CPython `maxtasksperchild`).
    pub fn max_tasks_per_child(mut self, tasks: u64) -> Self {
        self.pool = self.pool.max_tasks_per_child(tasks);
        self
    }

    /// The start method of the node's workers.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.pool = self.pool.start_method(method);
        self
    }

    /// Serves the pool until the node is stopped (it runs until killed, unless started by
    /// `spawn_local`, whose nodes stop when their client does).
    ///
    /// # Errors
    ///
    /// No key ([`AUTHKEY_VAR`]); an invalid pool name or URL; the local pool could not start.
    pub fn run(self) -> Result<()> {
        let key = match (self.authkey, std::env::var_os(AUTHKEY_VAR)) {
            (Some(key), _) => key,
            (None, Some(key)) => key.into_encoded_bytes(),
            (None, None) => {
                return Err(Error::InvalidState(format!(
                    "a cluster node needs the pool's key: set {AUTHKEY_VAR} (the same as the clients') or call .authkey(...)"
                )));
            }
        };
        let pool = self.pool_name.unwrap_or_else(default_pool_name);
        valid_pool_name(&pool)?;
        Link::new(&self.url, IO_TIMEOUT)?;
        node::run(node::NodeConfig {
            url: self.url,
            pool,
            processes: self.processes.unwrap_or_else(crate::cpu_count).max(1),
            key,
            name: self.name.unwrap_or_else(|| {
                format!("{}-{}-{}", broker::host_name(), std::process::id(), &broker::random_hex()[..6])
            }),
            io_timeout: IO_TIMEOUT,
            watch_stdin: self.watch_stdin,
            builder: self.pool,
        })
    }
}

/// Called before `main` when [`WORKER_VAR`] is set: runs the node agent, then exits.
pub(crate) fn node_main_from_env(url: std::ffi::OsString) -> ! {
    let watch = std::env::var_os(WATCH_STDIN_VAR).is_some();
    crate::sys::remove_env_before_main(WATCH_STDIN_VAR);
    let url = url.to_string_lossy().into_owned();
    let mut builder = Node::builder(url);
    builder.watch_stdin = watch;
    match builder.run() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("multiproc cluster node: {e}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_only_our_parameters() {
        assert_eq!(split_url("redis://h:1/0"), ("redis://h:1/0".to_string(), vec![]));
        let (base, ours) = split_url("redis://h:1/0?pool=jobs&protocol=resp3&processes=4");
        assert_eq!(base, "redis://h:1/0?protocol=resp3");
        assert_eq!(ours, vec![("pool".into(), "jobs".into()), ("processes".into(), "4".into())]);
    }

    #[test]
    fn pool_names_are_checked() {
        assert!(valid_pool_name("jobs-1").is_ok());
        for bad in ["", "a b", "a:b", "a{b}"] {
            assert!(valid_pool_name(bad).is_err(), "{bad:?}");
        }
    }
}
