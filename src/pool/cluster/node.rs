//! The node agent: takes chunks from the broker and runs them in an ordinary local pool.
//!
//! ```text
//!  feed connection (direct.rs)              local Pool (unchanged but for one seam)
//!  replies read on the local scheduler's  ─►  workers, pidfds, timeouts, retries,
//!  thread (Runner::watch): XREADGROUP         maxtasksperchild; a chunk's sink writes its
//!  entries → checked → its own queue          publication + the next XREADGROUP on the feed
//!                                                      │ (result too large, a read outstanding,
//!  feeder thread: scans/reclaims (side link),          ▼  the feed down)
//!  reads nobody else sent, the feed's watchdog   completer thread: complete.lua, pipelined
//!  heartbeat thread: renew.lua every lease/3; a chunk whose lease is gone is revoked (its worker
//!  killed: its result would be dropped anyway); no renewal for a lease → everything revoked.
//! ```
//!
//! Per chunk, one thread is woken in the node besides the worker: the local pool's scheduler
//! thread, which reads the broker's reply (`FeedWatch`), hands the chunk to a worker, and, when
//! the outcome is in, writes its publication (`complete.lua`) and the node's next read in one
//! write (`Slots::deliver`). Only one read is outstanding on the feed at a time, and a
//! publication is written there only when none is (a blocked read would hold it back in the
//! broker); the others go to the completer. The feeder thread sleeps between scans: it scans for
//! chunks of lost nodes every quarter lease, reclaims when the scan said the next lease runs out
//! (reads sent meanwhile block no longer than that, and not at all closer than the broker's timer
//! grain, so the reclaim is on time), sends the reads nobody else sent, and drops a feed whose
//! replies are overdue (its publications go to the completer, the entries of a lost read are
//! adopted as orphans).
//!
//! A node takes no more chunks than it has free worker slots (no prefetch: a prefetched chunk is
//! owned, so it would wait or run twice), and checks each before it runs it: the build (only tasks
//! of this very binary), the MAC (only holders of the pool's key), the client (alive), and the
//! delivery count (a chunk that comes back after a node loss runs again only while it has retries;
//! otherwise it fails with `NodeLost`, so with no retries a chunk never starts twice).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;

use super::broker::{self, GROUP, Keys, Link};
use super::direct;
use super::wire::{self, ResultMessage, TaskMessage, WireOutcome};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::pool::scheduler::{Chunk, Sink};

/// How long a feeder read blocks on the broker.
const READ_BLOCK: Duration = Duration::from_millis(200);
/// The grain of the broker's timer: a blocking read asked to wait less may wait this long (Redis
/// checks blocked clients' timeouts on its `hz` timer, 10 per second by default).
const BROKER_TIMER: Duration = Duration::from_millis(100);
/// How often the feeder reads without blocking while a reclaim is due sooner than `BROKER_TIMER`.
const RECLAIM_POLL: Duration = Duration::from_millis(10);
/// Added to the time until a lease runs out before reclaiming (the broker counts idle time in
/// whole milliseconds).
const RECLAIM_SLACK: Duration = Duration::from_millis(2);
/// Lease used until the pool's is known (a client writes it).
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// Pause before retrying an unreachable broker.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Most completions published per pipeline.
const COMPLETE_BATCH: usize = 256;

/// How a node is set up.
pub(crate) struct NodeConfig {
    pub(crate) url: String,
    pub(crate) pool: String,
    pub(crate) processes: usize,
    pub(crate) key: Vec<u8>,
    pub(crate) name: String,
    pub(crate) io_timeout: Duration,
    /// Stop when standard input ends (a node started by `spawn_local`: its client holds the pipe).
    pub(crate) watch_stdin: bool,
    pub(crate) builder: crate::pool::PoolBuilder,
}

/// A chunk this node runs.
struct NodeSink {
    id: String,
    client: String,
    seq: u64,
    /// The list its result goes to.
    results: String,
    /// The stats counter the publication bumps (`redelivered` for a reclaimed chunk).
    counter: &'static str,
    revoked: AtomicBool,
    /// The node's worker slots: this chunk holds one until its outcome is in (or it is revoked).
    slots: Arc<Slots>,
    /// It still holds its slot.
    holds_slot: AtomicBool,
}

impl NodeSink {
    fn release_slot(&self) {
        if self.holds_slot.swap(false, Ordering::AcqRel) {
            self.slots.release();
        }
    }
}

/// The node's worker slots in use (the feeder takes no more chunks than are free), the outcomes
/// waiting for the completer, and the writing half of the feed connection.
///
/// The feeder sleeps in a read of the feed connection, not on a lock: when an outcome comes in
/// (on the local pool's scheduler thread) and no read is outstanding, the sink writes the
/// outcome's publication and the node's next read there itself, and the feeder wakes up to the
/// replies. One thread is woken per chunk instead of two, and the result goes out without
/// waiting for a thread to be scheduled. An outcome that cannot go that way (a read is
/// outstanding and may be blocked in the broker, the result is large, the connection is down)
/// goes to the completer thread.
struct Slots {
    state: Mutex<SlotState>,
    /// The completer waits here for outcomes.
    ready: Condvar,
    /// What a sink needs to write commands.
    publisher: Publisher,
    /// The feeder sleeps here between its rounds (scans, reclaims, reads nobody else sent).
    kick: Mutex<bool>,
    kicked: Condvar,
}

#[derive(Default)]
struct SlotState {
    busy: usize,
    outbox: VecDeque<Completion>,
    /// The feed connection's writing half (none while it is down).
    feed: Option<direct::Writer>,
    /// The replies the feeder will read, in order.
    expect: VecDeque<Expect>,
    /// A read is among them.
    reading: bool,
    /// When the feeder's next scan for lost nodes' chunks is due, and a reclaim (a read sent
    /// by a sink returns by then).
    next_scan: Option<Instant>,
    next_due: Option<Instant>,
    /// Since when the oldest reply expected has been awaited (the feeder's watchdog).
    expect_since: Option<Instant>,
    /// After a read that did not block and found nothing: no new read before this.
    quiet_until: Option<Instant>,
}

impl SlotState {
    fn expect(&mut self, expect: Expect) {
        if self.expect.is_empty() {
            self.expect_since = Some(Instant::now());
        }
        self.expect.push_back(expect);
    }
}

/// A reply the feeder waits for on the feed connection.
enum Expect {
    /// A publication (`complete.lua`).
    Complete(Completion),
    /// `XREADGROUP`; `blocking` unless it was sent without `BLOCK`.
    Read { blocking: bool },
}

/// Identity and keys a node writes commands with (from any thread).
struct Publisher {
    key: Vec<u8>,
    keys: Keys,
    stream: String,
    name: String,
    slots: usize,
    lease_ms: AtomicU64,
}

impl Publisher {
    fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.load(Ordering::Relaxed))
    }

    /// The command that publishes one outcome (`complete.lua`).
    fn complete_cmd(&self, c: &Completion) -> redis::Cmd {
        let ttl = super::client::client_ttl(self.lease()).as_millis() as u64;
        let body =
            postcard::to_stdvec(&ResultMessage { seq: c.seq, node: self.name.clone(), outcome: c.outcome.clone() })
                .unwrap_or_default();
        let signed = wire::sign_result(&self.key, &self.keys.pool, &c.client, &body);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(broker::sha(broker::COMPLETE))
            .arg(3)
            .arg(&self.stream)
            .arg(&c.results)
            .arg(self.keys.stats())
            .arg(GROUP)
            .arg(&c.id)
            .arg(signed)
            .arg(ttl)
            .arg(c.counter)
            .arg(&self.name);
        cmd
    }

    /// `XREADGROUP` of up to `count` new entries, blocking up to `block` (not at all without).
    fn read_cmd(&self, count: usize, block: Option<Duration>) -> redis::Cmd {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP").arg(GROUP).arg(&self.name).arg("COUNT").arg(count);
        if let Some(block) = block {
            read.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        read.arg("STREAMS").arg(&self.stream).arg(">");
        read
    }
}

/// How long a read sent at `now` may block on the broker, given the next scan and reclaim: it
/// returns before them. The broker times out a blocking read only on its own timer (100 ms at
/// its default `hz`): closer to a reclaim than that grain, a read does not block (`None`).
fn read_block(now: Instant, next_scan: Instant, next_due: Option<Instant>) -> Option<Duration> {
    let until_scan = next_scan.saturating_duration_since(now);
    let block = match next_due.map(|due| due.saturating_duration_since(now)) {
        Some(until) if until < BROKER_TIMER => None,
        Some(until) => Some((until - BROKER_TIMER).min(until_scan)),
        None => Some(until_scan),
    };
    block.map(|block| block.clamp(Duration::from_millis(1), READ_BLOCK))
}

/// Largest publication a sink writes on the feed connection itself, and most replies
/// outstanding there when it does: together far below any socket buffer, so that the write never
/// waits (it runs on the local pool's scheduler thread).
const DIRECT_MAX_BYTES: usize = 4096;
const DIRECT_MAX_EXPECTED: usize = 2;

impl Slots {
    fn new(publisher: Publisher) -> Slots {
        Slots {
            state: Mutex::new(SlotState::default()),
            ready: Condvar::new(),
            publisher,
            kick: Mutex::new(false),
            kicked: Condvar::new(),
        }
    }

    fn take(&self) {
        lock(&self.state).busy += 1;
    }

    /// A slot freed without an outcome (a revoked chunk).
    fn release(&self) {
        let mut state = lock(&self.state);
        state.busy = state.busy.saturating_sub(1);
        let mut bytes = Vec::new();
        self.next_read(&mut state, &mut bytes);
        self.send(&mut state, &bytes);
    }

    /// Queues an outcome for publication, freeing its chunk's slot if it holds one: on the feed
    /// connection with the node's next read when no read is outstanding there, otherwise by the
    /// completer.
    fn deliver(&self, completion: Completion, frees_slot: bool) {
        let mut state = lock(&self.state);
        if frees_slot {
            state.busy = state.busy.saturating_sub(1);
        }
        let mut bytes = Vec::new();
        if state.feed.is_some() && !state.reading && state.expect.len() < DIRECT_MAX_EXPECTED && completion.publish {
            self.publisher.complete_cmd(&completion).write_packed_command(&mut bytes);
        }
        if bytes.is_empty() || bytes.len() > DIRECT_MAX_BYTES {
            bytes.clear();
            state.outbox.push_back(completion);
            self.ready.notify_one();
        } else {
            state.expect(Expect::Complete(completion));
        }
        if frees_slot {
            self.next_read(&mut state, &mut bytes);
        }
        self.send(&mut state, &bytes);
    }

    /// Adds the node's next read to `bytes` when slots are free, no read is outstanding, and no
    /// scan, reclaim or quiet spell is due; when one is, wakes the feeder (it decides).
    fn next_read(&self, state: &mut SlotState, bytes: &mut Vec<u8>) {
        let free = self.publisher.slots.saturating_sub(state.busy);
        if state.feed.is_none() || state.reading || free == 0 {
            return;
        }
        let now = Instant::now();
        let block = match state.next_scan {
            Some(scan)
                if now < scan
                    && state.next_due.is_none_or(|due| now < due)
                    && state.quiet_until.is_none_or(|quiet| now >= quiet) =>
            {
                read_block(now, scan, state.next_due)
            }
            _ => return self.kick_feeder(),
        };
        state.quiet_until = None;
        self.publisher.read_cmd(free, block).write_packed_command(bytes);
        state.expect(Expect::Read { blocking: block.is_some() });
        state.reading = true;
    }

    /// Sends the node's next read if one is due (after a reply was handled).
    fn read_if_idle(&self) {
        let mut state = lock(&self.state);
        let mut bytes = Vec::new();
        self.next_read(&mut state, &mut bytes);
        self.send(&mut state, &bytes);
    }

    fn kick_feeder(&self) {
        *lock(&self.kick) = true;
        self.kicked.notify_one();
    }

    /// The feeder's sleep: up to `wait`, or until kicked.
    fn feeder_sleep(&self, wait: Duration) {
        let mut kicked = lock(&self.kick);
        if !*kicked && !wait.is_zero() {
            kicked = self.kicked.wait_timeout(kicked, wait).map(|(k, _)| k).unwrap_or_else(|p| p.into_inner().0);
        }
        *kicked = false;
    }

    /// No new read before `until` (a read that did not block found nothing).
    fn quiet(&self, until: Instant) {
        lock(&self.state).quiet_until = Some(until);
        self.kick_feeder();
    }

    /// Whether a reply has been awaited for longer than `limit`.
    fn overdue(&self, limit: Duration) -> bool {
        lock(&self.state).expect_since.is_some_and(|since| since.elapsed() > limit)
    }

    /// The end of the current quiet spell, if any.
    fn quiet_until(&self) -> Option<Instant> {
        lock(&self.state).quiet_until
    }

    /// Writes `bytes` on the feed connection (a failed write shuts it down: the feeder notices,
    /// and hands what it expected to the completer).
    fn send(&self, state: &mut SlotState, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(feed) = &mut state.feed
            && feed.send(bytes).is_err()
        {
            state.feed = None;
        }
    }

    /// Installs a fresh feed connection's writing half.
    fn attach(&self, feed: direct::Writer) {
        let mut state = lock(&self.state);
        state.feed = Some(feed);
        state.expect.clear();
        state.expect_since = None;
        state.reading = false;
    }

    /// Takes the feed connection down: the publications it carried go to the completer (a
    /// publication that did reach the broker is dropped there as a duplicate), the entries of a
    /// read whose reply is lost are this node's orphans (see `adopt_orphans`).
    fn detach(&self) {
        let mut state = lock(&self.state);
        if let Some(feed) = state.feed.take() {
            feed.close();
        }
        state.reading = false;
        state.expect_since = None;
        let mut moved = false;
        while let Some(expect) = state.expect.pop_front() {
            if let Expect::Complete(completion) = expect {
                state.outbox.push_back(completion);
                moved = true;
            }
        }
        if moved {
            self.ready.notify_one();
        }
    }

    /// The reply the feeder just read was to this.
    fn answered(&self) -> Option<Expect> {
        let mut state = lock(&self.state);
        let expect = state.expect.pop_front();
        if matches!(expect, Some(Expect::Read { .. })) {
            state.reading = false;
        }
        state.expect_since = (!state.expect.is_empty()).then(Instant::now);
        expect
    }

    /// Free slots, whether a read is outstanding, and whether any reply is.
    fn feed_state(&self) -> (usize, bool, bool) {
        let state = lock(&self.state);
        (self.publisher.slots.saturating_sub(state.busy), state.reading, !state.expect.is_empty())
    }

    /// Records when the feeder scans and reclaims next (reads sent by sinks return before).
    fn plan(&self, next_scan: Instant, next_due: Option<Instant>) {
        let mut state = lock(&self.state);
        state.next_scan = Some(next_scan);
        state.next_due = next_due;
    }

    /// Sends the node's read from the feeder (when no sink did).
    fn send_read(&self, count: usize, block: Option<Duration>) {
        let mut state = lock(&self.state);
        if state.feed.is_none() || state.reading {
            return;
        }
        let mut bytes = Vec::new();
        self.publisher.read_cmd(count, block).write_packed_command(&mut bytes);
        state.expect(Expect::Read { blocking: block.is_some() });
        state.reading = true;
        state.quiet_until = None;
        self.send(&mut state, &bytes);
    }

    /// Up to [`COMPLETE_BATCH`] queued outcomes, waiting up to `wait` for one when none is.
    fn outcomes(&self, wait: Duration) -> Vec<Completion> {
        let mut state = lock(&self.state);
        if state.outbox.is_empty() && !wait.is_zero() {
            state = self.ready.wait_timeout(state, wait).map(|(s, _)| s).unwrap_or_else(|p| p.into_inner().0);
        }
        let n = state.outbox.len().min(COMPLETE_BATCH);
        state.outbox.drain(..n).collect()
    }

    /// Hands an outcome to the completer.
    fn to_completer(&self, completion: Completion) {
        lock(&self.state).outbox.push_back(completion);
        self.ready.notify_one();
    }

    fn wake_all(&self) {
        let _state = lock(&self.state);
        self.ready.notify_all();
    }
}

impl Sink for NodeSink {
    fn complete(&self, _index: usize, outcome: Result<Vec<u8>>) {
        let completion = Completion {
            id: self.id.clone(),
            client: self.client.clone(),
            seq: self.seq,
            results: self.results.clone(),
            outcome: WireOutcome::from_local(outcome),
            counter: self.counter,
            publish: !self.revoked.load(Ordering::Acquire),
        };
        let frees_slot = self.holds_slot.swap(false, Ordering::AcqRel);
        self.slots.deliver(completion, frees_slot);
    }

    fn complete_quietly(&self, index: usize, outcome: Result<Vec<u8>>) {
        self.complete(index, outcome);
    }

    fn flush(&self) {}

    fn cancelled(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    fn started(&self) {}

    fn revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }
}

/// The feed connection as the local pool's scheduler thread watches it: a reply that arrives is
/// read and handled there (a chunk read goes straight to the local queue, whose scheduler is the
/// thread already running), so that no feeder thread is woken per chunk.
struct FeedWatch {
    fd: std::os::fd::OwnedFd,
    /// False once this feed is closed (the descriptor is then no longer watched).
    active: Arc<AtomicBool>,
    node: std::sync::Weak<Node>,
}

impl crate::pool::scheduler::Watch for FeedWatch {
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.active.load(Ordering::Acquire).then(|| self.fd.as_fd())
    }

    fn readable(&self) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        match self.node.upgrade() {
            Some(node) => node.read_feed(),
            None => self.active.store(false, Ordering::Release),
        }
    }
}

/// An outcome to publish.
struct Completion {
    id: String,
    client: String,
    seq: u64,
    /// The list the result goes to.
    results: String,
    outcome: WireOutcome,
    counter: &'static str,
    /// False for a revoked chunk: only taken off the node's books.
    publish: bool,
}

/// Counters of one node (for its log and tests).
#[derive(Debug, Default)]
struct NodeCounters {
    leases_lost: AtomicU64,
    refused: AtomicU64,
}

struct Node {
    config: NodeConfig,
    keys: Keys,
    build: &'static str,
    stream: String,
    /// Chunks taken and not yet published (renewed by the heartbeat).
    held: Mutex<HashMap<String, Arc<NodeSink>>>,
    /// Worker slots in use: a slot is free again as soon as a chunk's outcome is in, while the
    /// completer publishes it.
    busy: Arc<Slots>,
    /// Clients recently seen alive, and when.
    alive_cache: Mutex<HashMap<String, Instant>>,
    /// Entries owned and not held at the last heartbeat.
    orphans: Mutex<HashSet<String>>,
    /// Signalled (with `held` locked) when the node is told to stop: ends every `pause`.
    stopping: Condvar,
    /// The feeder's link for everything but reads and publications: set-up, reclaims,
    /// liveness checks, drops (shared with the local pool's thread that reads the feed).
    side: Mutex<Link>,
    /// The feed connection's reading half (none while it is down).
    reader: Mutex<Option<direct::Reader>>,
    /// Whether the current feed's watch is live (false once the feed is closed).
    feed_active: Mutex<Arc<AtomicBool>>,
    /// This node (for the watch the local pool holds).
    me: std::sync::Weak<Node>,
    stop: AtomicBool,
    pool: Pool,
    counters: NodeCounters,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a node until it is told to stop (standard input closed, for `spawn_local` nodes) or its
/// local pool breaks.
///
/// # Errors
///
/// The local pool could not start; the broker URL is invalid.
pub(crate) fn run(mut config: NodeConfig) -> Result<()> {
    let build = wire::fingerprint()?;
    let keys = Keys::new(&config.pool);
    let stream = keys.tasks(build);
    let builder = std::mem::replace(&mut config.builder, Pool::builder());
    let pool = builder.processes(config.processes).build()?;
    let publisher = Publisher {
        key: config.key.clone(),
        keys: keys.clone(),
        stream: stream.clone(),
        name: config.name.clone(),
        slots: config.processes,
        lease_ms: AtomicU64::new(DEFAULT_LEASE.as_millis() as u64),
    };
    let side = Link::new(&config.url, config.io_timeout)?;
    let node = Arc::new_cyclic(|me| Node {
        side: Mutex::new(side),
        reader: Mutex::new(None),
        feed_active: Mutex::new(Arc::new(AtomicBool::new(false))),
        me: me.clone(),
        keys,
        build,
        stream,
        held: Mutex::new(HashMap::new()),
        busy: Arc::new(Slots::new(publisher)),
        alive_cache: Mutex::new(HashMap::new()),
        orphans: Mutex::new(HashSet::new()),
        stopping: Condvar::new(),
        stop: AtomicBool::new(false),
        pool,
        counters: NodeCounters::default(),
        config,
    });
    tracing::info!(node = %node.config.name, pool = %node.keys.pool, build, slots = node.config.processes, "cluster node starting");
    let mut threads = Vec::new();
    let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(body)
            .map_err(|e| Error::io("start a cluster node thread", e))
    };
    let n = Arc::clone(&node);
    threads.push(spawn("multiproc-node-completer", Box::new(move || n.complete_loop()))?);
    let n = Arc::clone(&node);
    threads.push(spawn("multiproc-node-heartbeat", Box::new(move || n.heartbeat_loop()))?);
    if node.config.watch_stdin {
        let n = Arc::clone(&node);
        // Not joined: it blocks in a read until the pipe closes.
        spawn("multiproc-node-stdin", Box::new(move || n.watch_stdin()))?;
    }
    node.feed_loop();
    node.pool.terminate();
    let _ = node.pool.join();
    for thread in threads {
        let _ = thread.join();
    }
    node.leave();
    Ok(())
}

impl Node {
    fn lease(&self) -> Duration {
        self.busy.publisher.lease()
    }

    fn slots(&self) -> usize {
        self.config.processes
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        // Under the lock `pause` checks `stop` with: a pause about to wait cannot miss this.
        drop(lock(&self.held));
        self.stopping.notify_all();
        self.busy.wake_all();
        self.busy.kick_feeder();
    }

    fn watch_stdin(&self) {
        use std::io::Read;
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        tracing::info!(node = %self.config.name, "standard input closed: the cluster node stops");
        self.request_stop();
    }

    /// Waits `pause` (less when the node stops). Only a stop ends it early: a heartbeat woken by
    /// every published outcome would renew (several broker round trips) once per chunk.
    fn pause(&self, pause: Duration) {
        let deadline = Instant::now() + pause;
        let mut held = lock(&self.held);
        while !self.stopped() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            held = self.stopping.wait_timeout(held, left).map(|(h, _)| h).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    // ---- feeder ----

    fn feed_loop(&self) {
        // When to look for chunks of lost nodes: every quarter lease (a scan, which may start a
        // little late), and when the last scan said the next lease runs out (on time).
        let mut next_scan = Instant::now();
        let mut next_due: Option<Instant> = None;
        while !self.stopped() {
            if lock(&self.reader).is_none() {
                match self.open_feed() {
                    Ok(()) => {
                        next_scan = Instant::now();
                        next_due = None;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cluster node: broker not ready");
                        self.pause(RETRY_PAUSE);
                    }
                }
                continue;
            }
            let (free, reading, _) = self.busy.feed_state();
            let now = Instant::now();
            if !reading && free > 0 && (now >= next_scan || next_due.is_some_and(|due| now >= due)) {
                next_scan = now + self.scan_interval();
                let reclaimed = self.reclaim(&mut lock(&self.side), free);
                match reclaimed {
                    Ok((_, wait)) => next_due = wait.map(|w| now + w + RECLAIM_SLACK),
                    Err(e) => {
                        tracing::debug!(error = %e, "cluster node: reclaim failed");
                        self.close_feed(&mut lock(&self.reader));
                        self.pause(RETRY_PAUSE);
                    }
                }
                continue;
            }
            self.busy.plan(next_scan, next_due);
            let quiet = self.busy.quiet_until();
            if !reading && free > 0 && quiet.is_none_or(|t| now >= t) {
                self.busy.send_read(free, read_block(now, next_scan, next_due));
            }
            if self.busy.overdue(self.config.io_timeout + READ_BLOCK) {
                tracing::debug!("cluster node: the broker did not answer in time");
                self.close_feed(&mut lock(&self.reader));
                continue;
            }
            // Replies are read on the local pool's thread (see `FeedWatch`); this thread wakes
            // for the next scan or reclaim, the end of a quiet spell, or when kicked.
            let mut until = next_scan.min(now + READ_BLOCK);
            if let Some(due) = next_due {
                until = until.min(due);
            }
            if let Some(quiet) = quiet.filter(|q| *q > now) {
                until = until.min(quiet);
            }
            self.busy.feeder_sleep(until.saturating_duration_since(Instant::now()));
        }
        self.close_feed(&mut lock(&self.reader));
    }

    /// Prepares the stream (see `prepare`), opens the feed connection, and has the local pool's
    /// thread watch it.
    fn open_feed(&self) -> Result<()> {
        self.prepare(&mut lock(&self.side))?;
        let (reader, writer) = direct::connect(&self.config.url, self.config.io_timeout, &[broker::COMPLETE])?;
        let fd = reader.watch_fd().map_err(|e| Error::io("watch the cluster node's broker connection", e))?;
        let active = Arc::new(AtomicBool::new(true));
        let watch = FeedWatch { fd, active: Arc::clone(&active), node: self.me.clone() };
        *lock(&self.reader) = Some(reader);
        *lock(&self.feed_active) = active;
        self.busy.attach(writer);
        if !self.pool.core.shared.watch(Arc::new(watch)) {
            return Err(Error::InvalidState("a cluster node's local pool cannot watch its broker connection".into()));
        }
        Ok(())
    }

    /// Takes the feed connection down (what it carried goes to the completer); the feeder opens
    /// another.
    fn close_feed(&self, reader: &mut Option<direct::Reader>) {
        lock(&self.feed_active).store(false, Ordering::Release);
        *reader = None;
        self.busy.detach();
        self.busy.kick_feeder();
    }

    /// Reads and handles the feed connection's replies that have arrived (on the local pool's
    /// scheduler thread, see `FeedWatch`), then sends the node's next read if one is due.
    fn read_feed(&self) {
        let mut guard = lock(&self.reader);
        let Some(reader) = guard.as_mut() else { return };
        // One read of what has arrived: the local pool's poll calls again while more is there.
        if let Err(e) = reader.receive() {
            tracing::debug!(error = %e, "cluster node: the feed connection failed");
            return self.close_feed(&mut guard);
        }
        loop {
            let failed = match reader.buffered_reply() {
                Ok(Some(reply)) => match self.answer(&mut lock(&self.side), reply) {
                    Ok(Some(0)) => {
                        // A read that did not block found nothing: a reclaim is due within the
                        // broker's timer grain; look again shortly rather than at once.
                        let state = lock(&self.busy.state);
                        let until_due = state.next_due.map(|due| due.saturating_duration_since(Instant::now()));
                        drop(state);
                        self.busy.quiet(Instant::now() + until_due.unwrap_or_default().min(RECLAIM_POLL));
                        continue;
                    }
                    Ok(_) => continue,
                    Err(e) => e.to_string(),
                },
                Ok(None) => break,
                Err(e) => e.to_string(),
            };
            tracing::debug!(error = %failed, "cluster node: the feed connection failed");
            return self.close_feed(&mut guard);
        }
        drop(guard);
        self.busy.read_if_idle();
    }

    /// Handles one reply of the feed connection; for a read that did not block, how many entries
    /// it brought.
    fn answer(&self, link: &mut Link, reply: Value) -> Result<Option<usize>> {
        let unexpected = || Error::Broker { action: "sent a reply to no command".into(), detail: String::new() };
        match self.busy.answered() {
            None => Err(unexpected()),
            Some(Expect::Complete(completion)) => {
                if let Value::ServerError(e) = &reply {
                    // A broker that lost its scripts (restarted), say: the completer retries
                    // on a link that loads them.
                    tracing::debug!(error = ?e, "cluster node: a publication failed; the completer retries it");
                    self.busy.to_completer(completion);
                } else {
                    self.published(&completion, &reply);
                }
                Ok(None)
            }
            Some(Expect::Read { blocking }) => {
                let reply = reply.extract_error().map_err(|e| broker::broker_error("did not hand out tasks", &e))?;
                let entries = match &reply {
                    Value::Array(streams) => match streams.first() {
                        Some(Value::Array(parts)) => parts.get(1).map(broker::entries).unwrap_or_default(),
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                let read = entries.len();
                let batch = entries.into_iter().map(|(id, fields)| (id, fields, 1, None)).collect();
                self.take(link, batch)?;
                Ok((!blocking).then_some(read))
            }
        }
    }

    /// How often a node scans for chunks of lost nodes (a quarter lease).
    fn scan_interval(&self) -> Duration {
        self.lease() / 4
    }

    /// How far ahead a scan looks for leases about to run out: past the next scan, even one that
    /// starts a broker timer grain late.
    fn reclaim_horizon(&self) -> Duration {
        self.scan_interval() + BROKER_TIMER
    }

    /// Creates the task stream (if missing) and learns the pool's lease, before the first read.
    fn prepare(&self, link: &mut Link) -> Result<()> {
        let (stream, meta) = (self.stream.clone(), self.keys.meta());
        let lease: Option<u64> = link.run("did not create the task stream", Duration::ZERO, |c| {
            broker::ensure_group(c, &stream)?;
            redis::cmd("HGET").arg(&meta).arg("lease_ms").query(c)
        })?;
        self.learn_lease(lease);
        Ok(())
    }

    fn learn_lease(&self, lease_ms: Option<u64>) {
        if let Some(ms) = lease_ms.filter(|ms| *ms > 0) {
            self.busy.publisher.lease_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// Claims chunks whose node lost its lease; returns how many, and how long until the next
    /// one known runs out of lease (`None`: none within the horizon).
    fn reclaim(&self, link: &mut Link, free: usize) -> Result<(usize, Option<Duration>)> {
        let (stream, name) = (self.stream.clone(), self.config.name.clone());
        let (lease, horizon) = (self.lease().as_millis() as u64, self.reclaim_horizon().as_millis() as u64);
        let reply: Value = link.run("did not reclaim expired tasks", Duration::ZERO, |conn| {
            redis::cmd("EVALSHA")
                .arg(broker::sha(broker::RECLAIM))
                .arg(1)
                .arg(&stream)
                .arg(GROUP)
                .arg(&name)
                .arg(lease)
                .arg(free)
                .arg(horizon)
                .query(conn)
        })?;
        let Value::Array(reply) = reply else { return Ok((0, None)) };
        let wait = reply.get(1).map(broker::int).and_then(|ms| u64::try_from(ms).ok()).map(Duration::from_millis);
        let Some(Value::Array(items)) = reply.first() else { return Ok((0, wait)) };
        let mut batch = Vec::new();
        for item in items {
            let Value::Array(parts) = item else { continue };
            let (Some(id), Some(fields), Some(count)) = (parts.first(), parts.get(1), parts.get(2)) else { continue };
            let Some(id) = broker::text(id) else { continue };
            let fields = broker::entries(&Value::Array(vec![Value::Array(vec![
                Value::BulkString(id.clone().into_bytes()),
                fields.clone(),
            ])]))
            .pop()
            .map(|(_, f)| f)
            .unwrap_or_default();
            let from = parts.get(3).and_then(broker::text);
            batch.push((id, fields, broker::int(count).max(1) as u64, from));
        }
        let taken = batch.len();
        if taken > 0 {
            tracing::info!(node = %self.config.name, chunks = taken, "reclaimed chunks of a lost node");
        }
        self.take(link, batch)?;
        Ok((taken, wait))
    }

    /// Checks and starts a batch of entries: (id, fields, deliveries, previous owner).
    #[allow(clippy::type_complexity)]
    fn take(&self, link: &mut Link, batch: Vec<(String, broker::Fields, u64, Option<String>)>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut valid = Vec::new();
        let mut drop_ids: Vec<(String, &'static str)> = Vec::new();
        for (id, fields, deliveries, from) in batch {
            match self.open(&fields) {
                Ok(message) => valid.push((id, message, deliveries, from)),
                Err(why) => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %self.config.name, entry = %id, %why, "refused a cluster task entry");
                    drop_ids.push((id, "refused"));
                }
            }
        }
        let clients: Vec<String> =
            valid.iter().map(|(_, m, _, _)| m.client.clone()).collect::<HashSet<_>>().into_iter().collect();
        // The entries are this node's now (in its pending list): whatever fails from here on,
        // they must not be forgotten. A failed liveness check counts the clients as alive.
        let alive = self.alive_clients(link, &clients).unwrap_or_else(|e| {
            tracing::debug!(error = %e, "cluster node: client liveness unknown; running their chunks");
            clients.iter().cloned().collect()
        });
        let lease = self.lease();
        for (id, message, deliveries, from) in valid {
            if !alive.contains(&message.client) {
                tracing::debug!(entry = %id, client = %message.client, "skipped a chunk of a client that is gone");
                drop_ids.push((id, "skipped"));
                continue;
            }
            let reruns = deliveries.saturating_sub(1);
            let redelivered = reruns > 0;
            let results = match message.waiting {
                true => self.keys.waiting(&message.client, message.seq),
                false => self.keys.results(&message.client),
            };
            let sink = Arc::new(NodeSink {
                id: id.clone(),
                client: message.client.clone(),
                seq: message.seq,
                results: results.clone(),
                counter: if redelivered { "redelivered" } else { "" },
                revoked: AtomicBool::new(false),
                slots: Arc::clone(&self.busy),
                holds_slot: AtomicBool::new(false),
            });
            lock(&self.held).insert(id.clone(), Arc::clone(&sink));
            if reruns > u64::from(message.retries) {
                let lost = from.unwrap_or_else(|| "(unknown)".into());
                tracing::info!(entry = %id, node = %lost, "a lost node's chunk has no retries left: NodeLost");
                let completion = Completion {
                    id,
                    client: message.client,
                    seq: message.seq,
                    results,
                    outcome: WireOutcome::NodeLost { node: lost, lease_ms: lease.as_millis() as u64 },
                    counter: "node_lost",
                    publish: true,
                };
                self.busy.deliver(completion, false);
                continue;
            }
            self.busy.take();
            sink.holds_slot.store(true, Ordering::Release);
            let chunk = Chunk {
                sink,
                index: 0,
                tasks: message.tasks as usize,
                entry: message.entry,
                args: message.args.0,
                fds: Vec::new(),
                timeout: message.timeout_ms.map(Duration::from_millis),
                retries: message.retries - reruns as u32,
            };
            if let Err(e) = self.pool.core.shared.submit([chunk]) {
                lock(&self.held).remove(&id);
                tracing::error!(error = %e, "the node's local pool refused a chunk");
                self.request_stop();
            }
        }
        if !drop_ids.is_empty() {
            // Left pending if this fails: the heartbeat adopts them again (see `adopt_orphans`).
            let (stream, stats) = (self.stream.clone(), self.keys.stats());
            link.run("did not drop refused tasks", Duration::ZERO, |conn| {
                let mut pipe = redis::pipe();
                for (id, counter) in &drop_ids {
                    pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(id).ignore();
                    pipe.cmd("XDEL").arg(&stream).arg(id).ignore();
                    pipe.cmd("HINCRBY").arg(&stats).arg(*counter).arg(1).ignore();
                }
                pipe.query::<()>(conn)
            })?;
        }
        Ok(())
    }

    /// Checks an entry's build and MAC, then decodes it (see [`wire::open_task`]).
    fn open(&self, fields: &[(String, Vec<u8>)]) -> std::result::Result<TaskMessage, String> {
        wire::open_task(&self.config.key, &self.keys.pool, self.build, fields)
    }

    /// Which of `clients` are alive; a client seen alive less than a third of a lease ago is
    /// not asked about again (the cache is short against the clients' time to live of three leases).
    fn alive_clients(&self, link: &mut Link, clients: &[String]) -> Result<HashSet<String>> {
        let fresh = self.lease() / 3;
        let mut known = HashSet::new();
        let mut ask = Vec::new();
        {
            let mut cache = lock(&self.alive_cache);
            cache.retain(|_, seen| seen.elapsed() < fresh);
            for client in clients {
                if cache.contains_key(client) {
                    known.insert(client.clone());
                } else {
                    ask.push(client.clone());
                }
            }
        }
        let mut alive = self.ask_alive(link, &ask)?;
        let mut cache = lock(&self.alive_cache);
        for client in &alive {
            cache.insert(client.clone(), Instant::now());
        }
        alive.extend(known);
        Ok(alive)
    }

    fn ask_alive(&self, link: &mut Link, clients: &[String]) -> Result<HashSet<String>> {
        if clients.is_empty() {
            return Ok(HashSet::new());
        }
        let ttl = super::client::client_ttl(self.lease()).as_millis() as u64;
        let key = self.keys.clients();
        let flags: Vec<i64> = link.run("did not tell which clients are alive", Duration::ZERO, |conn| {
            redis::cmd("EVALSHA").arg(broker::sha(broker::ALIVE)).arg(1).arg(&key).arg(ttl).arg(clients).query(conn)
        })?;
        Ok(clients.iter().zip(flags).filter(|(_, f)| *f == 1).map(|(c, _)| c.clone()).collect())
    }

    // ---- completer ----

    fn complete_loop(&self) {
        let mut link = match Link::new(&self.config.url, self.config.io_timeout) {
            Ok(link) => link,
            Err(_) => return,
        };
        loop {
            let batch = self.publishable(self.busy.outcomes(READ_BLOCK));
            if batch.is_empty() {
                if self.stopped() {
                    return;
                }
                continue;
            }
            loop {
                match self.publish(&mut link, &batch) {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "cluster node: publishing outcomes failed; retrying");
                        if self.stopped() {
                            return;
                        }
                        let stream = self.stream.clone();
                        let _ = link.run("did not create the task stream", Duration::ZERO, |c| {
                            broker::ensure_group(c, &stream)
                        });
                        self.pause(RETRY_PAUSE);
                    }
                }
            }
        }
    }

    /// The outcomes to publish; those of revoked chunks are only taken off the books.
    fn publishable(&self, mut batch: Vec<Completion>) -> Vec<Completion> {
        batch.retain(|c| {
            if !c.publish {
                self.forget(&c.id);
            }
            c.publish
        });
        batch
    }

    fn forget(&self, id: &str) {
        lock(&self.held).remove(id);
    }

    /// The command that publishes one outcome (`complete.lua`).
    fn complete_cmd(&self, c: &Completion) -> redis::Cmd {
        self.busy.publisher.complete_cmd(c)
    }

    /// Takes a published outcome off the books, given the completion script's reply.
    fn published(&self, c: &Completion, reply: &Value) {
        if broker::int(reply) == 0 {
            tracing::info!(node = %self.config.name, entry = %c.id, "a late result was dropped: the chunk's lease was lost");
        }
        self.forget(&c.id);
    }

    /// Publishes a batch of outcomes in one pipeline.
    fn publish(&self, link: &mut Link, batch: &[Completion]) -> Result<()> {
        let replies: Vec<Value> = link.run("did not take the node's results", Duration::ZERO, |conn| {
            let mut pipe = redis::pipe();
            for c in batch {
                pipe.add_command(self.complete_cmd(c));
            }
            pipe.query(conn)
        })?;
        for (c, reply) in batch.iter().zip(&replies) {
            self.published(c, reply);
        }
        Ok(())
    }

    // ---- heartbeat ----

    fn heartbeat_loop(&self) {
        let mut link = match Link::new(&self.config.url, self.config.io_timeout) {
            Ok(link) => link,
            Err(_) => return,
        };
        let mut last_renewed = Instant::now();
        while !self.stopped() {
            match self.beat(&mut link) {
                Ok(()) => last_renewed = Instant::now(),
                Err(e) => {
                    tracing::debug!(error = %e, "cluster node: renewal failed");
                    if last_renewed.elapsed() > self.lease() {
                        // Cut off for a whole lease: other nodes may run these chunks by now.
                        let ids: Vec<String> = lock(&self.held).keys().cloned().collect();
                        if !ids.is_empty() {
                            tracing::warn!(node = %self.config.name, chunks = ids.len(), "no lease renewal for a lease: stopping the chunks held");
                            self.revoke(&ids);
                        }
                    }
                }
            }
            self.pause((self.lease() / 3).max(Duration::from_millis(20)));
        }
    }

    fn beat(&self, link: &mut Link) -> Result<()> {
        let meta = self.keys.meta();
        let lease: Option<u64> = link.run("did not tell the lease", Duration::ZERO, |c| {
            redis::cmd("HGET").arg(&meta).arg("lease_ms").query(c)
        })?;
        self.learn_lease(lease);
        let snapshot: Vec<String> = lock(&self.held).keys().cloned().collect();
        let (stream, alive, name) = (self.stream.clone(), self.keys.alive(), self.config.name.clone());
        // Every entry it holds: running, and finished but not yet published.
        let max = snapshot.len().clamp(16, 1000);
        let owned: Vec<String> = link.run("did not renew the node's leases", Duration::ZERO, |conn| {
            let record = format!("{} {} {} {}", self.build, self.slots(), std::process::id(), broker::host_name());
            redis::cmd("HSET").arg(self.keys.nodes()).arg(&name).arg(record).query::<Value>(conn)?;
            match redis::cmd("EVALSHA")
                .arg(broker::sha(broker::RENEW))
                .arg(2)
                .arg(&stream)
                .arg(&alive)
                .arg(GROUP)
                .arg(&name)
                .arg(max)
                .query::<Vec<String>>(conn)
            {
                Err(e) if e.code() == Some("NOGROUP") => Ok(Vec::new()),
                other => other,
            }
        })?;
        let owned: HashSet<String> = owned.into_iter().collect();
        let lost: Vec<String> = {
            let held = lock(&self.held);
            snapshot.into_iter().filter(|id| !owned.contains(id) && held.contains_key(id)).collect()
        };
        if !lost.is_empty() {
            tracing::warn!(node = %self.config.name, chunks = lost.len(), "leases lost: stopping those chunks");
            self.revoke(&lost);
        }
        self.adopt_orphans(link, &owned)?;
        self.reap(link)
    }

    /// Takes up entries this node owns but does not hold: delivered to it while a read timed out
    /// (the broker answered too late) or while handling them failed. An entry owned and not held at
    /// two heartbeats in a row is an orphan (one beat alone could be a read whose entries are
    /// being taken right now); it never started here, so it is run as it is, its delivery count
    /// unchanged.
    fn adopt_orphans(&self, link: &mut Link, owned: &HashSet<String>) -> Result<()> {
        let now: HashSet<String> = {
            let held = lock(&self.held);
            owned.iter().filter(|id| !held.contains_key(*id)).cloned().collect()
        };
        let orphans: Vec<String> = {
            let mut previous = lock(&self.orphans);
            let orphans = now.iter().filter(|id| previous.contains(*id)).cloned().collect();
            *previous = now;
            orphans
        };
        if orphans.is_empty() {
            return Ok(());
        }
        let stream = self.stream.clone();
        let (ranges, pending): (Vec<Value>, Vec<Value>) =
            link.run("did not return orphaned entries", Duration::ZERO, |conn| {
                let mut pipe = redis::pipe();
                for id in &orphans {
                    pipe.cmd("XRANGE").arg(&stream).arg(id).arg(id);
                }
                let ranges: Vec<Value> = pipe.query(conn)?;
                let mut pipe = redis::pipe();
                for id in &orphans {
                    pipe.cmd("XPENDING").arg(&stream).arg(GROUP).arg(id).arg(id).arg(1);
                }
                Ok((ranges, pipe.query(conn)?))
            })?;
        let mut batch = Vec::new();
        for ((id, range), pending) in orphans.iter().zip(&ranges).zip(&pending) {
            let deliveries = match pending {
                Value::Array(rows) => match rows.first() {
                    Some(Value::Array(row)) => row.get(3).map(broker::int).unwrap_or(1).max(1) as u64,
                    _ => continue, // no longer pending: published or withdrawn meanwhile
                },
                _ => continue,
            };
            let fields = broker::entries(range).pop().map(|(_, f)| f).unwrap_or_default();
            batch.push((id.clone(), fields, deliveries, None));
        }
        if !batch.is_empty() {
            tracing::info!(node = %self.config.name, chunks = batch.len(), "took up entries delivered to this node but not handled");
            lock(&self.orphans).clear();
            self.take(link, batch)?;
        }
        Ok(())
    }

    /// Stops chunks this node no longer owns: their workers are killed, their results never sent.
    fn revoke(&self, ids: &[String]) {
        {
            let mut held = lock(&self.held);
            for id in ids {
                if let Some(sink) = held.remove(id) {
                    sink.revoked.store(true, Ordering::Release);
                    // A revoked chunk still queued in the local pool is dropped without an outcome.
                    sink.release_slot();
                    self.counters.leases_lost.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.pool.core.shared.recheck_running();
    }

    /// Removes nodes silent for three leases that hold nothing.
    fn reap(&self, link: &mut Link) -> Result<()> {
        let ttl = (self.lease() * 3).as_millis() as u64;
        let (alive, nodes, stream) = (self.keys.alive(), self.keys.nodes(), self.stream.clone());
        let reaped: Vec<String> = link.run("did not reap silent nodes", Duration::ZERO, |conn| {
            redis::cmd("EVALSHA")
                .arg(broker::sha(broker::REAP))
                .arg(3)
                .arg(&alive)
                .arg(&nodes)
                .arg(&stream)
                .arg(ttl)
                .arg(GROUP)
                .query(conn)
        })?;
        for node in reaped {
            tracing::info!(node = %node, "removed a cluster node that went silent");
        }
        Ok(())
    }

    /// On a clean stop: removes this node's records (and its consumer, if it holds nothing).
    fn leave(&self) {
        let Ok(mut link) = Link::new(&self.config.url, self.config.io_timeout) else { return };
        let (stream, name) = (self.stream.clone(), self.config.name.clone());
        let _ = link.run("did not remove the node", Duration::ZERO, |conn| {
            let mine: Value =
                redis::cmd("XPENDING").arg(&stream).arg(GROUP).arg("-").arg("+").arg(1).arg(&name).query(conn)?;
            if matches!(&mine, Value::Array(a) if !a.is_empty()) {
                return Ok(()); // others reclaim what it holds, and reap it later
            }
            let _: redis::RedisResult<Value> =
                redis::cmd("XGROUP").arg("DELCONSUMER").arg(&stream).arg(GROUP).arg(&name).query(conn);
            redis::pipe()
                .cmd("ZREM")
                .arg(self.keys.alive())
                .arg(&name)
                .cmd("HDEL")
                .arg(self.keys.nodes())
                .arg(&name)
                .query::<Value>(conn)
                .map(drop)
        });
        tracing::info!(
            node = %self.config.name,
            leases_lost = self.counters.leases_lost.load(Ordering::Relaxed),
            refused = self.counters.refused.load(Ordering::Relaxed),
            "cluster node stopped"
        );
    }
}
