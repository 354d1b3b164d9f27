//! The client side of a cluster pool: a [`Runner`] that ships chunks to the broker and feeds the
//! outcomes back into the pool's sinks.
//!
//! Three connections and two threads:
//! * the submitting link, used by the caller (in `submit`) and by the collector (when outcomes
//!   free room in the window): at most `max_in_flight` chunks are in the broker at once, the rest
//!   wait here, so a large map does not park its whole input in the broker;
//! * the collector thread: `BLPOP` on this client's result list pipelined with an `LPOP` of up to
//!   1024 more (one round trip);
//!   it checks each result's MAC and completes the chunk's sink (callbacks run here, as they run
//!   in the scheduler thread of a local pool); with a deep backlog in the broker it paces its
//!   reads (`PACE_WAIT`), so that results come in batches rather than one wake-up each;
//! * a caller of a synchronous `apply` adds its own chunk and reads that chunk's result list, on
//!   two connections of its own (kept between calls; see [`Client::in_person`]);
//! * the heartbeat thread: every lease/3 it records this client as alive (nodes skip the chunks of
//!   clients that went silent) and keeps its result list from expiring; it checks the pool's epoch
//!   (gone: the broker restarted without its data) and that each outstanding chunk's entry still
//!   exists (an entry that vanished without a result was lost by the broker); a lost chunk is
//!   submitted again while it has retries, and fails with [`Error::BrokerLost`] otherwise.

use std::collections::{HashMap, VecDeque};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;

use super::broker::{self, GROUP, Keys, Link};
use super::direct;
use super::wire::{self, TaskMessage};
use crate::error::{Error, Result};
use crate::pool::protocol::Blob;
use crate::pool::scheduler::{Chunk, RunState, Runner, Stats};

/// How long the collector blocks for results before it looks at the pool's state again.
const COLLECT_BLOCK: Duration = Duration::from_secs(1);
/// Most results taken per `LPOP`.
const COLLECT_BATCH: usize = 1024;
/// With at least this many chunks in the broker, a drain that brought fewer than `PACE_BATCH`
/// results is followed by a pause of `PACE_WAIT` before the next: the results that come in
/// meanwhile are then taken in one round trip and delivered in one go, instead of the collector,
/// the broker and the caller waking up once per result or two. A result then reaches its caller
/// up to `PACE_WAIT` later, which is small beside the wait of a chunk that had that many ahead of
/// it; with fewer chunks out (an `apply`, a short `map`), results are taken as they come.
const PACE_BACKLOG: usize = 64;
const PACE_BATCH: usize = 16;
const PACE_WAIT: Duration = Duration::from_millis(1);
/// Most entries added per pipeline.
const SUBMIT_BATCH: usize = 256;
/// Pause before retrying an unreachable broker.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long a caller waiting in person blocks on its result list before it looks whether its
/// chunk ended otherwise (terminated, failed, submitted again).
const IN_PERSON_BLOCK: Duration = Duration::from_millis(100);
/// How long a caller waiting in person looks for its result without sleeping, when its last
/// round trip took less than that: about a round trip through a broker on the same host or the
/// same rack. Its wake-up would cost several microseconds of it (more under a hypervisor); a
/// caller whose round trips are longer (a distant broker, a longer task) sleeps at once.
const IN_PERSON_SPIN: Duration = Duration::from_micros(100);

/// Whether this thread's next chunk comes back in person (see [`Client::in_person`]), for the
/// client at that address.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InPerson {
    Off,
    Armed(usize),
    Submitted(usize, u64),
}

thread_local! {
    static IN_PERSON: std::cell::Cell<InPerson> = const { std::cell::Cell::new(InPerson::Off) };
    /// The entry of this thread's chunk that comes back in person, not added yet: the caller adds
    /// it itself, after it has started to wait for the result (see [`Client::in_person`]).
    static IN_PERSON_ENTRY: std::cell::RefCell<Option<EntryFields>> = const { std::cell::RefCell::new(None) };
}

/// One item of a result list.
type Item = Vec<u8>;
/// A task entry's fields as the client writes them.
type EntryFields = Vec<(&'static str, Vec<u8>)>;

/// What a client needs to know about its pool.
pub(crate) struct ClientConfig {
    pub(crate) url: String,
    pub(crate) keys: Keys,
    pub(crate) key: Vec<u8>,
    pub(crate) lease: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) broker_timeout: Duration,
    pub(crate) io_timeout: Duration,
}

/// The two connections of a caller waiting in person (see [`Client::in_person`]): its result
/// list is read on `wait`, its chunk is added on `add` (whose reply is read only once the wait
/// returns, so that it wakes nobody). Either is opened on demand and dropped after an error.
#[derive(Default)]
struct WaitLink {
    wait: Option<(direct::Reader, direct::Writer)>,
    add: Option<(direct::Reader, direct::Writer)>,
    /// The last wait on it took less than [`IN_PERSON_SPIN`]: the next looks before it sleeps.
    quick: bool,
}

/// A chunk in the broker (or about to be).
struct Flight {
    chunk: Chunk,
    /// Its stream entry, once added.
    id: Option<String>,
    /// When it was handed to the broker.
    sent: Instant,
}

struct State {
    run: RunState,
    queue: VecDeque<Chunk>,
    flights: HashMap<u64, Flight>,
    next_seq: u64,
    /// Flights whose entry was missing at a check, with the collector's drain count then: lost
    /// unless a result comes in before a full drain started after the check.
    suspects: Vec<(u64, u64)>,
    /// Why the suspects are suspected.
    suspicion: String,
}

/// Counters of this client (besides the pool's [`Stats`]).
#[derive(Debug, Default)]
pub(crate) struct ClientCounters {
    pub(crate) resubmitted: AtomicU64,
    pub(crate) broker_lost: AtomicU64,
    pub(crate) forged_results: AtomicU64,
    pub(crate) stale_results: AtomicU64,
    pub(crate) epochs_lost: AtomicU64,
}

/// The client: a [`Runner`] for a pool whose chunks run on cluster nodes.
pub(crate) struct Client {
    config: ClientConfig,
    name: String,
    build: &'static str,
    stream: String,
    results: String,
    state: Mutex<State>,
    submit_link: Mutex<Link>,
    /// Connections of callers waiting in person, kept between calls.
    waiting_links: Mutex<Vec<WaitLink>>,
    stats: Arc<Stats>,
    pub(crate) counters: ClientCounters,
    /// Full collector cycles (a `BLPOP` that started and ended).
    drains: AtomicU64,
    epoch: Mutex<String>,
    stop: (Mutex<bool>, Condvar),
    /// Node agents this client started (`spawn_local`), with the pipes that keep them running.
    pub(crate) local_nodes: Mutex<Vec<Child>>,
    broker_down_since: Mutex<Option<Instant>>,
    finished: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Connects, registers the client and makes sure the pool's epoch, lease and task stream exist.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] when the broker cannot be reached.
    pub(crate) fn connect(config: ClientConfig, stats: Arc<Stats>) -> Result<Arc<Client>> {
        let build = wire::fingerprint()?;
        let name = format!("{}-{}-{}", broker::host_name(), std::process::id(), broker::random_hex());
        let stream = config.keys.tasks(build);
        let results = config.keys.results(&name);
        let mut link = Link::new(&config.url, config.io_timeout)?;
        let client = Client {
            name,
            build,
            stream,
            results,
            state: Mutex::new(State {
                run: RunState::Running,
                queue: VecDeque::new(),
                flights: HashMap::new(),
                next_seq: 0,
                suspects: Vec::new(),
                suspicion: String::new(),
            }),
            submit_link: Mutex::new(Link::new(&config.url, config.io_timeout)?),
            waiting_links: Mutex::new(Vec::new()),
            stats,
            counters: ClientCounters::default(),
            drains: AtomicU64::new(0),
            epoch: Mutex::new(String::new()),
            stop: (Mutex::new(false), Condvar::new()),
            local_nodes: Mutex::new(Vec::new()),
            broker_down_since: Mutex::new(None),
            finished: AtomicBool::new(false),
            config,
        };
        let epoch = client.init_pool(&mut link)?;
        *lock(&client.epoch) = epoch;
        client.touch(&mut link)?;
        Ok(Arc::new(client))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn lease(&self) -> Duration {
        self.config.lease
    }

    pub(crate) fn build(&self) -> &'static str {
        self.build
    }

    /// Sets the pool's epoch (if none), lease, and task stream; returns the epoch.
    fn init_pool(&self, link: &mut Link) -> Result<String> {
        let meta = self.config.keys.meta();
        let lease_ms = self.config.lease.as_millis() as u64;
        let stream = self.stream.clone();
        link.run("did not accept the pool's set-up", Duration::ZERO, |conn| {
            let _: Value = redis::cmd("HSETNX").arg(&meta).arg("epoch").arg(broker::random_hex()).query(conn)?;
            let _: Value = redis::cmd("HSET").arg(&meta).arg("lease_ms").arg(lease_ms).query(conn)?;
            broker::ensure_group(conn, &stream)?;
            redis::cmd("HGET").arg(&meta).arg("epoch").query::<String>(conn)
        })
    }

    fn touch(&self, link: &mut Link) -> Result<()> {
        let ttl = self.client_ttl().as_millis() as u64;
        let (clients, results, name) = (self.config.keys.clients(), self.results.clone(), self.name.clone());
        link.run("did not record the client's heartbeat", Duration::ZERO, |conn| {
            redis::cmd("EVALSHA")
                .arg(broker::sha(broker::TOUCH))
                .arg(2)
                .arg(&clients)
                .arg(&results)
                .arg(&name)
                .arg(ttl)
                .query::<Value>(conn)
                .map(drop)
        })
    }

    /// How long a silent client counts as alive (nodes skip the chunks of one silent longer).
    pub(crate) fn client_ttl(&self) -> Duration {
        client_ttl(self.config.lease)
    }

    /// Starts the collector and heartbeat threads; the handle is the collector's, which ends when
    /// the pool is closed and drained, or terminated.
    ///
    /// # Errors
    ///
    /// A thread could not be started.
    pub(crate) fn start_threads(self: &Arc<Self>) -> Result<JoinHandle<()>> {
        let heartbeat = {
            let client = Arc::clone(self);
            std::thread::Builder::new()
                .name("multiproc-cluster-heartbeat".into())
                .spawn(move || client.heartbeat_loop())
                .map_err(|e| Error::io("start the cluster pool's heartbeat thread", e))?
        };
        let client = Arc::clone(self);
        std::thread::Builder::new()
            .name("multiproc-cluster-collector".into())
            .spawn(move || {
                client.collect_loop();
                client.shut_down(heartbeat);
            })
            .map_err(|e| Error::io("start the cluster pool's collector thread", e))
    }

    // ---- submitting ----

    /// Adds chunks to the broker while the window has room.
    fn pump(&self) {
        loop {
            let mut batch: Vec<(u64, EntryFields)> = Vec::new();
            {
                let mut state = lock(&self.state);
                if state.run == RunState::Terminated {
                    return;
                }
                // Refilled in batches: while all but a refill's worth of the window is in the
                // broker, every node has work queued there, and topping it up as each chunk
                // comes back would cost a broker round trip per chunk.
                let room = self.config.max_in_flight.saturating_sub(state.flights.len());
                if room < refill_step(self.config.max_in_flight) {
                    return;
                }
                while state.flights.len() < self.config.max_in_flight && batch.len() < SUBMIT_BATCH {
                    let Some(chunk) = state.queue.pop_front() else { break };
                    if chunk.sink.cancelled() {
                        continue;
                    }
                    batch.push(self.launch(&mut state, chunk, false));
                }
            }
            if batch.is_empty() {
                return;
            }
            if !self.add_and_record(&batch) {
                return;
            }
        }
    }

    /// Makes a chunk a flight: its number, its entry's fields.
    fn launch(&self, state: &mut State, chunk: Chunk, waiting: bool) -> (u64, EntryFields) {
        chunk.sink.started();
        state.next_seq += 1;
        let seq = state.next_seq;
        let message = TaskMessage {
            client: self.name.clone(),
            seq,
            tasks: chunk.tasks as u32,
            entry: chunk.entry,
            args: Blob(chunk.args.clone()),
            timeout_ms: chunk.timeout.map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64),
            retries: chunk.retries,
            waiting,
        };
        let fields = self.entry_fields(&message);
        state.flights.insert(seq, Flight { chunk, id: None, sent: Instant::now() });
        (seq, fields)
    }

    /// Adds entries to the broker and records their ids; false when that failed.
    fn add_and_record(&self, batch: &[(u64, EntryFields)]) -> bool {
        match self.add_entries(batch) {
            Ok(ids) => {
                self.record_ids(batch.iter().map(|(seq, _)| *seq).zip(ids));
                true
            }
            Err(e) => {
                // Whether they were added is unknown: the heartbeat's check decides (a chunk
                // without an entry counts as lost by the broker).
                tracing::warn!(error = %e, "could not add chunks to the cluster broker");
                false
            }
        }
    }

    /// Records the entry ids the broker gave flights (`seq`, id). An id whose flight is gone
    /// while the pool is terminated is withdrawn: the pool terminated while its entry was being
    /// added, and its withdrawal did not know the entry (a node holding it stops it).
    fn record_ids(&self, added: impl IntoIterator<Item = (u64, String)>) {
        let mut state = lock(&self.state);
        let mut orphans = Vec::new();
        for (seq, id) in added {
            match state.flights.get_mut(&seq) {
                Some(flight) => flight.id = Some(id),
                None => orphans.push(id),
            }
        }
        if state.run == RunState::Terminated && !orphans.is_empty() {
            drop(state);
            self.withdraw(&orphans, "all");
        }
    }

    /// Runs `submit` (a synchronous `apply`'s submission, on this thread) so that its chunk's
    /// result comes to this thread in person: the chunk names a result list of its own, which
    /// this thread reads until the result is in (or the chunk ended otherwise: failed, withdrawn,
    /// submitted again under another number). The outcome is then in the call's result before
    /// the caller waits for it, with no other thread to wake on the way.
    ///
    /// The caller adds its chunk itself and wakes up once: it writes the chunk's `XADD` on a
    /// connection of its own and its `BLPOP` on another, sleeps until the result comes on the
    /// second, and only then reads the `XADD`'s reply (the entry's id), which has waited in the
    /// first connection's buffer. A caller that read the `XADD`'s reply before it sent its
    /// `BLPOP` was woken twice per call, and its second round trip ran while the node's
    /// scheduler and worker needed the CPUs.
    ///
    /// A chunk that has to queue (the window of chunks in the broker is full) goes the ordinary
    /// way.
    ///
    /// # Errors
    ///
    /// Those of `submit`.
    pub(crate) fn in_person<R>(&self, submit: impl FnOnce() -> Result<R>) -> Result<R> {
        /// Disarms the thread's mark however `submit` ends.
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                IN_PERSON.set(InPerson::Off);
                IN_PERSON_ENTRY.with(|entry| entry.borrow_mut().take());
            }
        }
        let _disarm = Disarm;
        IN_PERSON.set(InPerson::Armed(self.identity()));
        let submitted = submit();
        let entry = IN_PERSON_ENTRY.with(|entry| entry.borrow_mut().take());
        // Launched: added and awaited here whatever `submit` returned (its result list is this
        // thread's to read, so it gets its one outcome even if the call failed after all).
        if let (InPerson::Submitted(_, seq), Some(fields)) = (IN_PERSON.replace(InPerson::Off), entry) {
            self.collect_in_person(seq, fields);
        }
        submitted
    }

    fn identity(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Adds flight `seq`'s entry (`fields`) and reads its result list until its result is in,
    /// or the flight ended otherwise (see [`in_person`](Self::in_person)).
    fn collect_in_person(&self, seq: u64, fields: EntryFields) {
        let key = self.config.keys.waiting(&self.name, seq);
        let mut link = lock(&self.waiting_links).pop().unwrap_or_default();
        let mut entry = Some(fields);
        // Connections kept from an earlier call may have died with a broker restart since: a
        // first failure that finds them closed (no command reached a live server) is followed by
        // one more try on fresh ones, as on the submitting link.
        let mut fresh_try = link.wait.is_some() || link.add.is_some();
        loop {
            // Gone: done, failed, terminated (then never added, or withdrawn once its id came).
            if !lock(&self.state).flights.contains_key(&seq) {
                break;
            }
            match self.wait_in_person(&mut link, &key, seq, &mut entry) {
                Ok(Some(item)) => {
                    self.broker_up();
                    self.deliver(vec![item]);
                    break;
                }
                Ok(None) => {}
                Err(dropped) => {
                    link = WaitLink::default();
                    if dropped && std::mem::take(&mut fresh_try) {
                        continue;
                    }
                    if let Some(fields) = entry.take() {
                        // Not added on the caller's connections: the ordinary way, which reports a
                        // broker that is down.
                        self.add_and_record(&[(seq, fields)]);
                    }
                    // The heartbeat and the collector judge the broker; this thread only waits.
                    self.pause(RETRY_PAUSE);
                }
            }
        }
        lock(&self.waiting_links).push(link);
    }

    /// One wait for the result list `key`, and with it the addition of `entry` if it is not added
    /// yet: its `XADD` is written first (on its own connection), then the `BLPOP`, and the
    /// `XADD`'s reply is read once the `BLPOP` returned (`entry` is then taken, or left when it
    /// is sure that it was not added). `Err(dropped)` when a connection failed, `dropped` if it
    /// was found closed.
    fn wait_in_person(
        &self,
        link: &mut WaitLink,
        key: &str,
        seq: u64,
        entry: &mut Option<EntryFields>,
    ) -> std::result::Result<Option<Item>, bool> {
        let (url, io_timeout) = (&self.config.url, self.config.io_timeout);
        let open = |conn: &mut Option<(direct::Reader, direct::Writer)>| -> std::result::Result<(), bool> {
            if conn.is_none() {
                *conn = Some(direct::connect(url, io_timeout, &[]).map_err(|_| false)?);
            }
            Ok(())
        };
        open(&mut link.wait)?;
        if entry.is_some() {
            open(&mut link.add)?;
        }
        // Until the entry's id is known the heartbeat cannot check it: known well within a lease.
        let block = match entry {
            Some(_) => IN_PERSON_BLOCK.min(self.config.lease / 4),
            None => IN_PERSON_BLOCK,
        };
        let mut command = Vec::new();
        let adding = match (entry.as_ref(), link.add.as_mut()) {
            (Some(fields), Some((_, add_writer))) => {
                self.add_command(fields).write_packed_command(&mut command);
                if add_writer.send(&command).is_err() {
                    // Not added: a command cut short is never run.
                    link.add = None;
                    return Err(true);
                }
                true
            }
            _ => false,
        };
        command.clear();
        redis::cmd("BLPOP").arg(key).arg(block.as_secs_f64()).write_packed_command(&mut command);
        let (sent, spin) = (Instant::now(), if link.quick { IN_PERSON_SPIN } else { Duration::ZERO });
        let popped = match link.wait.as_mut() {
            Some((reader, writer)) => match writer.send(&command) {
                Ok(()) => {
                    reader.spin_until_readable(spin);
                    Some(reader.reply(block + io_timeout, io_timeout))
                }
                Err(_) => None,
            },
            None => None,
        };
        link.quick = sent.elapsed() < IN_PERSON_SPIN;
        if adding && self.record_in_person_entry(link, seq) {
            *entry = None;
        }
        let failed = |link: &mut WaitLink, dropped: bool| {
            link.wait = None;
            Err(dropped)
        };
        match popped {
            Some(Ok(Some(Value::Array(parts)))) => match parts.into_iter().nth(1) {
                Some(Value::BulkString(item)) => Ok(Some(item)),
                _ => failed(link, false),
            },
            Some(Ok(Some(Value::Nil))) => Ok(None),
            Some(Ok(_)) => failed(link, false),
            Some(Err(e)) => failed(link, closed(&e)),
            None => failed(link, true),
        }
    }

    /// Reads the reply to an in-person chunk's `XADD` and records the entry's id (as
    /// [`add_and_record`](Self::add_and_record) does). False only when the entry was certainly
    /// not added (its connection was found closed); when that is unknown, the heartbeat's check
    /// decides, as for the ordinary way.
    fn record_in_person_entry(&self, link: &mut WaitLink, seq: u64) -> bool {
        let Some((add_reader, _)) = link.add.as_mut() else { return true };
        let reply = add_reader.reply(self.config.io_timeout, self.config.io_timeout);
        if let Ok(Some(Value::BulkString(id))) = reply {
            self.record_ids([(seq, String::from_utf8_lossy(&id).into_owned())]);
            return true;
        }
        link.add = None;
        if matches!(&reply, Err(e) if closed(e)) {
            return false;
        }
        tracing::warn!(reply = ?reply, "could not add a chunk to the cluster broker");
        true
    }

    /// The `XADD` of one entry.
    fn add_command(&self, fields: &EntryFields) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream).arg("*");
        for (name, value) in fields {
            cmd.arg(*name).arg(value.as_slice());
        }
        cmd
    }

    fn entry_fields(&self, message: &TaskMessage) -> EntryFields {
        let body = postcard::to_stdvec(message).unwrap_or_default();
        let tag = wire::sign_task(&self.config.key, &self.config.keys.pool, self.build, &body);
        vec![("b", self.build.as_bytes().to_vec()), ("m", body), ("s", tag.to_vec())]
    }

    fn add_entries(&self, batch: &[(u64, EntryFields)]) -> Result<Vec<String>> {
        let mut link = lock(&self.submit_link);
        let add = |link: &mut Link| {
            link.run("did not take the pool's tasks", Duration::ZERO, |conn| {
                let mut pipe = redis::pipe();
                for (_, fields) in batch {
                    pipe.add_command(self.add_command(fields));
                }
                pipe.query::<Vec<String>>(conn)
            })
        };
        match add(&mut link) {
            // A connection that was already broken (the broker restarted since it was last
            // used) reached no live server: once more on a fresh one.
            Err(_) if link.was_dropped() => add(&mut link),
            other => other,
        }
    }

    /// Withdraws entries (`mode`: see `withdraw.lua`), best effort.
    fn withdraw(&self, ids: &[String], mode: &str) {
        let mut link = lock(&self.submit_link);
        for part in ids.chunks(256) {
            let _ = link.run("did not withdraw the pool's tasks", Duration::ZERO, |conn| {
                redis::cmd("EVALSHA")
                    .arg(broker::sha(broker::WITHDRAW))
                    .arg(1)
                    .arg(&self.stream)
                    .arg(GROUP)
                    .arg(mode)
                    .arg(part)
                    .query::<Value>(conn)
                    .map(drop)
            });
        }
    }

    /// Wakes the collector (an empty item on its own result list, which expires like any).
    fn wake_collector(&self) {
        let results = self.results.clone();
        let ttl = self.client_ttl().as_millis() as u64;
        let _ = lock(&self.submit_link).run("did not wake the collector", Duration::ZERO, |conn| {
            redis::pipe()
                .cmd("RPUSH")
                .arg(&results)
                .arg("")
                .cmd("PEXPIRE")
                .arg(&results)
                .arg(ttl)
                .query::<Value>(conn)
                .map(drop)
        });
    }

    // ---- collecting ----

    fn collect_loop(&self) {
        crate::pool::result::mark_delivering_thread();
        let mut link = match Link::new(&self.config.url, self.config.io_timeout) {
            Ok(link) => link,
            Err(e) => return self.fail_everything(&e.to_string()),
        };
        loop {
            {
                let state = lock(&self.state);
                match state.run {
                    RunState::Terminated => return,
                    RunState::Closed if state.queue.is_empty() && state.flights.is_empty() => return,
                    _ => {}
                }
            }
            let results = self.results.clone();
            let block = COLLECT_BLOCK;
            // One write, one wake-up: the server runs the LPOP as soon as the BLPOP returns
            // (a blocked client's later commands wait in its input buffer), so the rest of a
            // burst comes back with the first result instead of one more round trip later.
            let popped = link.run("did not deliver results", block, |conn| {
                let (first, more): (Option<(String, Item)>, Option<Vec<Item>>) = redis::pipe()
                    .cmd("BLPOP")
                    .arg(&results)
                    .arg(block.as_secs_f64())
                    .cmd("LPOP")
                    .arg(&results)
                    .arg(COLLECT_BATCH.max(self.config.max_in_flight + 1))
                    .query(conn)?;
                Ok(first.map(|(_, item)| item).into_iter().chain(more.unwrap_or_default()).collect::<Vec<_>>())
            });
            match popped {
                Ok(items) => {
                    let few = items.len() < PACE_BATCH;
                    self.broker_up();
                    self.deliver(items);
                    self.drains.fetch_add(1, Ordering::AcqRel);
                    self.pump();
                    if few && lock(&self.state).flights.len() >= PACE_BACKLOG {
                        self.pause(PACE_WAIT);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cluster collector: broker unreachable");
                    if self.broker_down_for() > self.config.broker_timeout {
                        self.fail_everything(&format!(
                            "the broker was unreachable for longer than the pool's broker timeout of {:?}: {e}",
                            self.config.broker_timeout
                        ));
                    }
                    self.pause(RETRY_PAUSE);
                }
            }
        }
    }

    fn deliver(&self, items: Vec<Vec<u8>>) {
        for item in items {
            if item.is_empty() {
                continue; // a wake-up
            }
            let Some(result) = wire::read_result(&self.config.key, &self.config.keys.pool, &self.name, &item) else {
                self.counters.forged_results.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "a cluster result was refused: its MAC is wrong (another key, or forged) or it does not decode"
                );
                continue;
            };
            let flight = lock(&self.state).flights.remove(&result.seq);
            let Some(flight) = flight else {
                self.counters.stale_results.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let outcome = result.outcome.into_result(&result.node);
            self.finish(flight.chunk, outcome);
        }
    }

    fn finish(&self, chunk: Chunk, outcome: Result<Vec<u8>>) {
        let counter = if outcome.is_ok() { &self.stats.done } else { &self.stats.failed };
        counter.fetch_add(chunk.tasks as u64, Ordering::Relaxed);
        chunk.sink.complete(chunk.index, outcome);
    }

    /// Fails every chunk queued or in the broker with [`Error::BrokerLost`].
    fn fail_everything(&self, reason: &str) {
        let (queue, flights) = {
            let mut state = lock(&self.state);
            (std::mem::take(&mut state.queue), std::mem::take(&mut state.flights))
        };
        let count = queue.len() + flights.len();
        if count > 0 {
            tracing::error!(chunks = count, %reason, "cluster pool: failing outstanding chunks");
        }
        self.counters.broker_lost.fetch_add(count as u64, Ordering::Relaxed);
        for chunk in queue.into_iter().chain(flights.into_values().map(|f| f.chunk)) {
            self.finish(chunk, Err(Error::BrokerLost { reason: reason.to_string() }));
        }
        *lock(&self.broker_down_since) = None;
    }

    fn broker_up(&self) {
        *lock(&self.broker_down_since) = None;
    }

    fn broker_down_for(&self) -> Duration {
        lock(&self.broker_down_since).get_or_insert_with(Instant::now).elapsed()
    }

    /// Waits `pause`, or less when the client stops.
    fn pause(&self, pause: Duration) {
        let stopped = lock(&self.stop.0);
        if !*stopped {
            let _ = self.stop.1.wait_timeout(stopped, pause);
        }
    }

    // ---- heartbeat and watchdog ----

    fn heartbeat_loop(&self) {
        let mut link = match Link::new(&self.config.url, self.config.io_timeout) {
            Ok(link) => link,
            Err(_) => return,
        };
        let beat = (self.config.lease / 3).max(Duration::from_millis(20));
        let mut next_check = Instant::now() + self.config.lease;
        loop {
            if *lock(&self.stop.0) {
                return;
            }
            match self.beat(&mut link, &mut next_check) {
                Ok(()) => self.broker_up(),
                Err(e) => {
                    tracing::debug!(error = %e, "cluster heartbeat: broker unreachable");
                    if self.broker_down_for() > self.config.broker_timeout {
                        self.fail_everything(&format!(
                            "the broker was unreachable for longer than the pool's broker timeout of {:?}: {e}",
                            self.config.broker_timeout
                        ));
                    }
                }
            }
            self.pause(beat);
        }
    }

    fn beat(&self, link: &mut Link, next_check: &mut Instant) -> Result<()> {
        self.touch(link)?;
        let meta = self.config.keys.meta();
        let epoch: Option<String> = link.run("did not answer the epoch check", Duration::ZERO, |conn| {
            redis::cmd("HGET").arg(&meta).arg("epoch").query(conn)
        })?;
        let ours = lock(&self.epoch).clone();
        if epoch.as_deref() != Some(ours.as_str()) {
            self.counters.epochs_lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("the cluster broker lost this pool's state (it restarted without persistence?)");
            let epoch = self.init_pool(link)?;
            *lock(&self.epoch) = epoch;
            lock(&self.submit_link).reset();
            self.touch(link)?;
            self.suspect_all("the broker restarted without its data");
            *next_check = Instant::now();
        }
        self.settle_suspects();
        if Instant::now() >= *next_check {
            *next_check = Instant::now() + self.config.lease;
            self.check_entries(link)?;
        }
        Ok(())
    }

    fn suspect_all(&self, why: &str) {
        let drains = self.drains.load(Ordering::Acquire);
        let mut state = lock(&self.state);
        let seqs: Vec<u64> = state.flights.keys().copied().collect();
        state.suspects = seqs.into_iter().map(|seq| (seq, drains)).collect();
        state.suspicion = why.to_string();
    }

    /// Marks the flights whose entry is gone (or was never added) as suspects.
    fn check_entries(&self, link: &mut Link) -> Result<()> {
        let drains = self.drains.load(Ordering::Acquire);
        let lease = self.config.lease;
        let candidates: Vec<(u64, Option<String>)> = {
            let state = lock(&self.state);
            state
                .flights
                .iter()
                .filter(|(_, f)| f.id.is_some() || f.sent.elapsed() > lease)
                .map(|(seq, f)| (*seq, f.id.clone()))
                .collect()
        };
        let with_ids: Vec<&(u64, Option<String>)> = candidates.iter().filter(|(_, id)| id.is_some()).collect();
        let stream = self.stream.clone();
        let exists: Vec<bool> = if with_ids.is_empty() {
            Vec::new()
        } else {
            link.run("did not answer the entry check", Duration::ZERO, |conn| {
                let mut pipe = redis::pipe();
                for (_, id) in &with_ids {
                    let id = id.as_deref().unwrap_or("0-0");
                    pipe.cmd("XRANGE").arg(&stream).arg(id).arg(id);
                }
                pipe.query::<Vec<Value>>(conn)
                    .map(|replies| replies.iter().map(|r| matches!(r, Value::Array(a) if !a.is_empty())).collect())
            })?
        };
        let mut missing: Vec<u64> =
            with_ids.iter().zip(exists).filter(|(_, exists)| !exists).map(|((seq, _), _)| *seq).collect();
        // A flight still without an id a lease after it was sent: its add failed (the broker may
        // or may not have taken it).
        let mut state = lock(&self.state);
        missing.extend(candidates.iter().filter(|(_, id)| id.is_none()).map(|(seq, _)| *seq));
        missing.retain(|seq| !state.suspects.iter().any(|(s, _)| s == seq));
        if !missing.is_empty() {
            state.suspects.extend(missing.into_iter().map(|seq| (seq, drains)));
            if state.suspicion.is_empty() {
                state.suspicion =
                    "its entry vanished from the broker without a result (the broker lost writes, or nodes skipped \
                     this client's tasks while it was silent)"
                        .to_string();
            }
        }
        Ok(())
    }

    /// Suspects still outstanding once the collector has completed a full drain begun after they
    /// were suspected: lost. Resubmitted with a retry, or failed.
    fn settle_suspects(&self) {
        let drains = self.drains.load(Ordering::Acquire);
        let mut resubmit = Vec::new();
        let mut lost = Vec::new();
        {
            let mut state = lock(&self.state);
            if state.suspects.is_empty() {
                return;
            }
            let (due, waiting): (Vec<_>, Vec<_>) =
                std::mem::take(&mut state.suspects).into_iter().partition(|(_, at)| drains >= at + 2);
            state.suspects = waiting;
            let reason = state.suspicion.clone();
            if state.suspects.is_empty() {
                state.suspicion.clear();
            }
            for (seq, _) in due {
                let Some(flight) = state.flights.remove(&seq) else { continue };
                let mut chunk = flight.chunk;
                if chunk.retries > 0 {
                    chunk.retries -= 1;
                    resubmit.push(chunk);
                } else {
                    lost.push((chunk, reason.clone()));
                }
            }
            for chunk in resubmit.drain(..).rev() {
                self.counters.resubmitted.fetch_add(1, Ordering::Relaxed);
                state.queue.push_front(chunk);
            }
        }
        for (chunk, reason) in lost {
            self.counters.broker_lost.fetch_add(1, Ordering::Relaxed);
            self.finish(chunk, Err(Error::BrokerLost { reason }));
        }
        self.pump();
    }

    // ---- the end ----

    /// After the collector ended: withdraws what is left, removes the client's keys, stops the
    /// heartbeat and the local nodes.
    fn shut_down(&self, heartbeat: JoinHandle<()>) {
        let terminated = lock(&self.state).run == RunState::Terminated;
        let (queue, flights) = {
            let mut state = lock(&self.state);
            (std::mem::take(&mut state.queue), std::mem::take(&mut state.flights))
        };
        let ids: Vec<String> = flights.values().filter_map(|f| f.id.clone()).collect();
        let error = if terminated { Error::PoolTerminated } else { Error::Cancelled };
        for chunk in queue.into_iter().chain(flights.into_values().map(|f| f.chunk)) {
            self.finish(chunk, Err(clone_error(&error)));
        }
        self.withdraw(&ids, "all");
        let mut link = lock(&self.submit_link);
        let (clients, results, name) = (self.config.keys.clients(), self.results.clone(), self.name.clone());
        let _ = link.run("did not remove the client", Duration::ZERO, |conn| {
            redis::pipe().cmd("ZREM").arg(&clients).arg(&name).cmd("DEL").arg(&results).query::<Value>(conn).map(drop)
        });
        drop(link);
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        let _ = heartbeat.join();
        super::stop_local_nodes(&mut lock(&self.local_nodes));
        self.finished.store(true, Ordering::Release);
    }
}

/// Whether a connection's error means it was found closed (reset, or ended by the broker).
fn closed(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

fn clone_error(error: &Error) -> Error {
    match error {
        Error::PoolTerminated => Error::PoolTerminated,
        _ => Error::Cancelled,
    }
}

/// The fewest free places in a window of `max_in_flight` chunks worth a refill (an eighth of
/// it, at most 64: the broker then still holds 7/8 of the window for the nodes).
fn refill_step(max_in_flight: usize) -> usize {
    (max_in_flight / 8).clamp(1, 64)
}

/// How long a silent client counts as alive: three leases (its heartbeat beats every third).
pub(crate) fn client_ttl(lease: Duration) -> Duration {
    lease * 3
}

impl Runner for Client {
    fn submit(&self, mut chunks: Vec<Chunk>) -> Result<()> {
        if chunks.iter().any(|c| !c.fds.is_empty()) {
            return Err(Error::InvalidState(
                "a file descriptor cannot cross machines: a cluster pool's task arguments cannot hold open files, \
                 sockets or other Handle<...> values; send a path or an address instead, or use a local pool"
                    .into(),
            ));
        }
        {
            let mut state = lock(&self.state);
            match &state.run {
                RunState::Running => {}
                RunState::Broken(reason) => {
                    return Err(Error::InvalidState(format!("Pool not running: it is broken ({reason})")));
                }
                _ => return Err(Error::InvalidState("Pool not running: it was closed or terminated".into())),
            }
            let in_person = IN_PERSON.get() == InPerson::Armed(self.identity())
                && chunks.len() == 1
                && state.queue.is_empty()
                && state.flights.len() < self.config.max_in_flight;
            if in_person && let Some(chunk) = chunks.pop() {
                // Added by the caller once it waits for the result (see `Client::in_person`).
                let (seq, fields) = self.launch(&mut state, chunk, true);
                IN_PERSON.set(InPerson::Submitted(self.identity(), seq));
                IN_PERSON_ENTRY.with(|entry| *entry.borrow_mut() = Some(fields));
                return Ok(());
            }
            state.queue.extend(chunks);
        }
        self.pump();
        Ok(())
    }

    fn set_state(&self, new: RunState) {
        let terminate = new == RunState::Terminated;
        {
            let mut state = lock(&self.state);
            if state.run == RunState::Running || terminate {
                state.run = new;
            }
        }
        if terminate {
            // Unfinished results fail now; the collector withdraws the entries as it ends.
            let (queue, flights) = {
                let mut state = lock(&self.state);
                (std::mem::take(&mut state.queue), std::mem::take(&mut state.flights))
            };
            let ids: Vec<String> = flights.values().filter_map(|f| f.id.clone()).collect();
            for chunk in queue.into_iter().chain(flights.into_values().map(|f| f.chunk)) {
                self.finish(chunk, Err(Error::PoolTerminated));
            }
            self.withdraw(&ids, "all");
        }
        if !self.finished.load(Ordering::Acquire) {
            self.wake_collector();
        }
    }

    fn state(&self) -> RunState {
        lock(&self.state).run.clone()
    }

    fn cancel_queued(&self) {
        let (queue, ids) = {
            let mut state = lock(&self.state);
            let queue = std::mem::take(&mut state.queue);
            let ids: Vec<String> = state.flights.values().filter_map(|f| f.id.clone()).collect();
            (queue, ids)
        };
        for chunk in queue {
            chunk.sink.complete(chunk.index, Err(Error::Cancelled));
        }
        let mut withdrawn: Vec<String> = Vec::new();
        {
            let mut link = lock(&self.submit_link);
            for part in ids.chunks(256) {
                if let Ok(Value::Array(done)) = link.run("did not withdraw queued tasks", Duration::ZERO, |conn| {
                    redis::cmd("EVALSHA")
                        .arg(broker::sha(broker::WITHDRAW))
                        .arg(1)
                        .arg(&self.stream)
                        .arg(GROUP)
                        .arg("queued")
                        .arg(part)
                        .query::<Value>(conn)
                }) {
                    withdrawn.extend(done.iter().filter_map(broker::text));
                }
            }
        }
        let cancelled: Vec<Flight> = {
            let mut state = lock(&self.state);
            let seqs: Vec<u64> = state
                .flights
                .iter()
                .filter(|(_, f)| f.id.as_ref().is_some_and(|id| withdrawn.contains(id)))
                .map(|(seq, _)| *seq)
                .collect();
            seqs.iter().filter_map(|seq| state.flights.remove(seq)).collect()
        };
        for flight in cancelled {
            flight.chunk.sink.complete(flight.chunk.index, Err(Error::Cancelled));
        }
    }
}
