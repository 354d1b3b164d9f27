//! The pool's scheduler: one thread in the parent that owns the workers, hands them tasks, reads
//! their outcomes, and notices at once when one dies or overruns its timeout.
//!
//! The scheduler knows, for each worker, the tasks it holds in the order it sent them; by the
//! protocol (see `protocol.rs`) the oldest is the one running. It waits in one `poll` on every
//! worker's connection, every worker's pidfd and a wake-up socket, with the nearest task deadline
//! as the timeout. So:
//! * a worker that dies fails exactly the task it was running, with how it ended (or puts it back
//!   in the queue when retries are left); the tasks it had not started go to other workers; a new
//!   worker takes its place;
//! * a task over its timeout is killed with its worker (`SIGKILL`), reported, and the worker
//!   replaced;
//! * nothing waits for a worker that cannot answer: there is no state in which the pool hangs.
//!
//! Throughput: a worker gets a *window* of tasks at once, sized from how long its tasks take (about
//! [`WINDOW_TIME`] of work, up to [`MAX_WINDOW`] tasks), so tiny tasks travel many to a message
//! both ways, while long tasks are handed out two at a time (one running, one waiting, so the
//! worker never idles for a round trip) and balance across workers: each gets a fair share of the
//! queue, and once the queue is shorter than the pool only idle workers get tasks. A task with a
//! timeout is sent alone to an idle worker, so its clock starts when it does.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::collect::Outcomes;
use super::protocol::{Blob, FromWorker, WireResult};
use super::worker::{self, InitCall, WorkerSetup};
use crate::connection::Connection;
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::process::Process;
use crate::process::target::Job;
use crate::shm::Shared as SharedMemory;
use crate::{Handle, sys};

/// About how much work a worker is given at once.
const WINDOW_TIME: Duration = Duration::from_millis(2);
/// Most tasks a worker holds at once.
const MAX_WINDOW: usize = 256;
/// Tasks a worker holds before its speed is known.
const FIRST_WINDOW: usize = 2;
/// How long a worker that ignores `Stop` is given before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Pause before trying again to start a worker after a failure.
const START_RETRY: Duration = Duration::from_millis(100);

/// A job's chunk outcomes, as encoded results: decoded into the job's value type here.
pub(crate) trait Sink: Send + Sync {
    fn complete(&self, index: usize, outcome: Result<Vec<u8>>);
    /// As `complete`, waking readers only at the next `flush` (for a burst of outcomes).
    fn complete_quietly(&self, index: usize, outcome: Result<Vec<u8>>);
    fn flush(&self);
    fn cancelled(&self) -> bool;
    fn started(&self);
    /// The chunk must stop even if it is running (a cluster node that lost the chunk's lease):
    /// checked after [`Shared::recheck_running`]. A revoked chunk fails with [`Error::Cancelled`].
    fn revoked(&self) -> bool {
        false
    }
}

/// A [`Sink`] that decodes each chunk's results as `Vec<T>` for its [`Outcomes`].
pub(crate) struct Decoding<T> {
    outcomes: Arc<dyn Outcomes<T>>,
    value: PhantomData<fn() -> T>,
}

impl<T> Decoding<T> {
    pub(crate) fn new(outcomes: Arc<dyn Outcomes<T>>) -> Self {
        Decoding { outcomes, value: PhantomData }
    }
}

impl<T: DeserializeOwned + Send + 'static> Sink for Decoding<T> {
    fn complete(&self, index: usize, outcome: Result<Vec<u8>>) {
        self.complete_quietly(index, outcome);
        self.flush();
    }

    fn flush(&self) {
        self.outcomes.flush();
    }

    fn complete_quietly(&self, index: usize, outcome: Result<Vec<u8>>) {
        // User code runs here (`Deserialize` impls): a panic in it fails this result, not the
        // scheduler thread that every other result depends on.
        let deliver = std::panic::AssertUnwindSafe(|| {
            let values = outcome.and_then(|bytes| {
                postcard::from_bytes::<Vec<T>>(&bytes)
                    .map_err(|e| Error::Codec { action: "decode", detail: format!("a task's result: {e}") })
            });
            self.outcomes.deliver_quietly(index, values);
        });
        if std::panic::catch_unwind(deliver).is_err() {
            tracing::error!("decoding a pool task's result panicked");
            self.outcomes.deliver_quietly(
                index,
                Err(Error::Codec { action: "decode", detail: "a task's result: the decoder panicked".into() }),
            );
        }
    }

    fn cancelled(&self) -> bool {
        self.outcomes.cancelled()
    }

    fn started(&self) {
        self.outcomes.started();
    }
}

/// One chunk of a job: the unit a worker runs and reports.
pub(crate) struct Chunk {
    pub(crate) sink: Arc<dyn Sink>,
    /// Its index in the job.
    pub(crate) index: usize,
    /// How many calls it holds (for the counters).
    pub(crate) tasks: usize,
    /// The chunk entry's offset.
    pub(crate) entry: i64,
    /// The encoded argument tuples.
    pub(crate) args: Vec<u8>,
    /// Descriptors the arguments hold.
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) timeout: Option<Duration>,
    /// Times it may run again after its worker died.
    pub(crate) retries: u32,
}

impl Chunk {
    fn fail(self, error: Error, stats: &Stats) {
        stats.failed.fetch_add(self.tasks as u64, Ordering::Relaxed);
        self.sink.complete(self.index, Err(error));
    }
}

/// Counters readable from the pool.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) restarted: AtomicU64,
    pub(crate) started: AtomicU64,
}

/// What the pool's owner decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    /// No new work; finish the queue, then stop the workers.
    Closed,
    /// Kill the workers; fail everything.
    Terminated,
    /// A worker's initializer failed: every task fails with this reason.
    Broken(String),
}

/// The seam between the pool's front and what runs its chunks.
///
/// The front (`Pool`'s methods) cuts a job into [`Chunk`]s, each carrying the [`Sink`] its outcome
/// goes to; a runner takes them, decides where and when each runs, and completes every chunk's sink
/// exactly once (or drops a chunk whose sink reports [`Sink::cancelled`] before it started). Two
/// runners exist: the local scheduler below (worker processes on this machine, over socket pairs)
/// and, with the `cluster` feature, a broker client that ships chunks to node agents on other
/// machines (`pool::cluster`), whose nodes run each chunk in a local scheduler again.
pub(crate) trait Runner: Send + Sync {
    /// Takes `chunks` (in order).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the pool no longer takes work, or the chunks cannot be run by
    /// this runner (for example descriptors, which cannot cross machines).
    fn submit(&self, chunks: Vec<Chunk>) -> Result<()>;
    /// Moves to `state` unless already terminated (closing a terminated pool changes nothing).
    fn set_state(&self, state: RunState);
    fn state(&self) -> RunState;
    /// Cancels every chunk not yet started.
    fn cancel_queued(&self);
    /// Asks the runner to look for running chunks whose sink is [`Sink::revoked`].
    fn recheck_running(&self) {}
}

/// What the pool's handles hold: the runner its chunks go to, and the counters.
pub(crate) struct Shared {
    runner: Arc<dyn Runner>,
    pub(crate) stats: Arc<Stats>,
}

impl Shared {
    pub(crate) fn new(runner: Arc<dyn Runner>, stats: Arc<Stats>) -> Self {
        Shared { runner, stats }
    }

    /// Queues `chunks` (in order).
    pub(crate) fn submit(&self, chunks: impl IntoIterator<Item = Chunk>) -> Result<()> {
        self.runner.submit(chunks.into_iter().collect())
    }

    /// Moves to `state` unless already terminated (closing a terminated pool changes nothing).
    pub(crate) fn set_state(&self, state: RunState) {
        self.runner.set_state(state);
    }

    pub(crate) fn state(&self) -> RunState {
        self.runner.state()
    }

    /// Cancels every task not yet handed to a worker.
    pub(crate) fn cancel_queued(&self) {
        self.runner.cancel_queued();
    }

    /// Stops the running chunks whose sink is revoked (their workers are killed and replaced).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn recheck_running(&self) {
        self.runner.recheck_running();
    }
}

struct Inner {
    queue: VecDeque<Chunk>,
    state: RunState,
    cancel_queued: bool,
    /// Look for revoked chunks among the running ones.
    recheck: bool,
    /// The scheduler is (about to be) blocked in `poll`: a submitter must wake it.
    sleeping: bool,
}

/// The local runner's front: the queue the pool's handles fill and its scheduler thread drains.
struct LocalQueue {
    inner: Mutex<Inner>,
    wake: UnixStream,
}

impl Runner for LocalQueue {
    fn submit(&self, chunks: Vec<Chunk>) -> Result<()> {
        LocalQueue::submit(self, chunks)
    }

    fn set_state(&self, state: RunState) {
        LocalQueue::set_state(self, state);
    }

    fn state(&self) -> RunState {
        LocalQueue::state(self)
    }

    fn cancel_queued(&self) {
        LocalQueue::cancel_queued(self);
    }

    fn recheck_running(&self) {
        let mut inner = self.lock();
        inner.recheck = true;
        self.wake(&mut inner);
    }
}

impl LocalQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake(&self, inner: &mut Inner) {
        if inner.sleeping {
            inner.sleeping = false;
            // The socket is non-blocking: if it is full, the scheduler has wake-ups pending anyway.
            let _ = (&self.wake).write(&[1]);
        }
    }

    fn submit(&self, chunks: Vec<Chunk>) -> Result<()> {
        let mut inner = self.lock();
        match &inner.state {
            RunState::Running => {}
            RunState::Broken(reason) => {
                return Err(Error::InvalidState(format!("Pool not running: it is broken ({reason})")));
            }
            _ => return Err(Error::InvalidState("Pool not running: it was closed or terminated".into())),
        }
        inner.queue.extend(chunks);
        self.wake(&mut inner);
        Ok(())
    }

    fn set_state(&self, state: RunState) {
        let mut inner = self.lock();
        if inner.state == RunState::Running || state == RunState::Terminated {
            inner.state = state;
        }
        self.wake(&mut inner);
    }

    fn state(&self) -> RunState {
        self.lock().state.clone()
    }

    fn cancel_queued(&self) {
        let mut inner = self.lock();
        inner.cancel_queued = true;
        self.wake(&mut inner);
    }
}

/// How a pool starts its workers.
pub(crate) struct WorkerConfig {
    pub(crate) processes: usize,
    pub(crate) method: StartMethod,
    pub(crate) max_tasks: Option<u64>,
    #[allow(clippy::type_complexity)]
    pub(crate) initializer: Option<Box<dyn Fn() -> Result<Job> + Send + Sync>>,
}

struct InFlight {
    id: u64,
    chunk: Chunk,
    /// Open from dispatch to outcome: the task's life as the parent sees it (`pool.task`, debug
    /// level; a disabled span costs nothing).
    span: tracing::Span,
}

/// A worker as the scheduler sees it.
struct Worker {
    process: Process,
    /// The id of the task it is running (see `worker.rs`).
    running: SharedMemory<AtomicU64>,
    pid: i32,
    conn: Connection,
    /// The connection still works (false after end of file or an error).
    conn_open: bool,
    in_flight: VecDeque<InFlight>,
    sent: u64,
    stop_sent: bool,
    deadline: Option<(Instant, Duration)>,
    window: usize,
    /// The function whose timing sized `window`; other functions get [`FIRST_WINDOW`].
    window_entry: i64,
}

/// Why a worker is being removed.
enum Ending {
    /// It ended by itself (died, or exited after `Stop`).
    Ended,
    /// Its task overran this timeout; it was killed.
    TimedOut(Duration),
    /// It broke the protocol; it was killed.
    Misbehaved(String),
    /// It held a revoked chunk; it was killed.
    Revoked,
}

/// The pool's scheduler thread and the state it owns.
pub(crate) struct Scheduler {
    shared: Arc<LocalQueue>,
    stats: Arc<Stats>,
    wake: UnixStream,
    config: WorkerConfig,
    workers: Vec<Worker>,
    queue: VecDeque<Chunk>,
    state: RunState,
    next_id: u64,
    next_worker: u64,
    start_failed_at: Option<Instant>,
}

/// Creates the shared state and a scheduler with `config.processes` started workers.
///
/// # Errors
///
/// A worker that could not start (the ones started before it are killed and reaped).
pub(crate) fn start(config: WorkerConfig) -> Result<(Arc<Shared>, Scheduler)> {
    let (wake_tx, wake_rx) = UnixStream::pair().map_err(|e| Error::io("create the pool's wake-up socket", e))?;
    wake_tx.set_nonblocking(true).map_err(|e| Error::io("set up the pool's wake-up socket", e))?;
    wake_rx.set_nonblocking(true).map_err(|e| Error::io("set up the pool's wake-up socket", e))?;
    let queue = Arc::new(LocalQueue {
        inner: Mutex::new(Inner {
            queue: VecDeque::new(),
            state: RunState::Running,
            cancel_queued: false,
            recheck: false,
            sleeping: false,
        }),
        wake: wake_tx,
    });
    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared::new(Arc::clone(&queue) as Arc<dyn Runner>, Arc::clone(&stats)));
    let mut scheduler = Scheduler {
        shared: queue,
        stats,
        wake: wake_rx,
        config,
        workers: Vec::new(),
        queue: VecDeque::new(),
        state: RunState::Running,
        next_id: 0,
        next_worker: 0,
        start_failed_at: None,
    };
    for _ in 0..scheduler.config.processes {
        // On failure `scheduler` is dropped, which kills and reaps the workers started so far.
        let worker = scheduler.start_worker()?;
        scheduler.workers.push(worker);
    }
    Ok((shared, scheduler))
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.process.kill();
            let _ = worker.process.join();
        }
    }
}

/// Describes an exit code the way a person reads it.
pub(crate) fn describe_exit(code: i32) -> String {
    if code < 0 {
        let name = match -code {
            1 => "SIGHUP",
            2 => "SIGINT",
            3 => "SIGQUIT",
            4 => "SIGILL",
            6 => "SIGABRT",
            7 => "SIGBUS",
            8 => "SIGFPE",
            9 => "SIGKILL",
            11 => "SIGSEGV",
            13 => "SIGPIPE",
            15 => "SIGTERM",
            _ => "a signal",
        };
        format!("killed by signal {} ({name})", -code)
    } else {
        format!("exited with code {code}")
    }
}

impl Scheduler {
    fn start_worker(&mut self) -> Result<Worker> {
        let (ours, theirs) = crate::connection::socket_pipe()?;
        let init = match &self.config.initializer {
            Some(make) => {
                let job = make()?;
                Some(InitCall {
                    entry: crate::process::target::entry_offset(job.entry),
                    args: Blob(job.payload.bytes),
                    fds: job.payload.fds.into_iter().map(Handle::new).collect(),
                })
            }
            None => None,
        };
        self.next_worker += 1;
        let running = SharedMemory::<AtomicU64>::new()?;
        let setup = WorkerSetup { init, running: running.clone() };
        let mut process = Process::new(worker::worker_main, (theirs, setup))
            .with_daemon(true)
            .with_start_method(self.config.method)
            .with_name_prefix(super::worker_name_prefix(self.config.method));
        process.start()?;
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        let pid = process.pid().unwrap_or(0);
        tracing::debug!(pid, worker = self.next_worker, "started a pool worker");
        Ok(Worker {
            process,
            running,
            pid,
            conn: ours,
            conn_open: true,
            in_flight: VecDeque::new(),
            sent: 0,
            stop_sent: false,
            deadline: None,
            window: FIRST_WINDOW,
            window_entry: 0,
        })
    }

    /// Runs the scheduler until the pool is stopped or terminated.
    pub(crate) fn run(mut self) {
        super::result::mark_delivering_thread();
        loop {
            self.take_submissions();
            match self.state.clone() {
                RunState::Terminated => return self.terminate_all(Error::PoolTerminated),
                RunState::Broken(reason) => {
                    return self.terminate_all(Error::task_failed(format!("the pool is broken: {reason}")));
                }
                RunState::Closed if self.queue.is_empty() && self.workers.iter().all(|w| w.in_flight.is_empty()) => {
                    return self.stop_all();
                }
                _ => {}
            }
            self.replace_workers();
            self.dispatch();
            self.wait_for_events();
        }
    }

    fn take_submissions(&mut self) {
        let mut inner = self.shared.lock();
        self.queue.append(&mut inner.queue);
        self.state = inner.state.clone();
        let cancel = std::mem::take(&mut inner.cancel_queued);
        let recheck = std::mem::take(&mut inner.recheck);
        drop(inner);
        if cancel {
            for chunk in self.queue.drain(..) {
                chunk.sink.complete(chunk.index, Err(Error::Cancelled));
            }
        }
        if recheck {
            self.stop_revoked();
        }
    }

    /// Kills the workers holding a revoked chunk: those chunks fail with [`Error::Cancelled`],
    /// the others they held run elsewhere.
    fn stop_revoked(&mut self) {
        self.queue.retain(|chunk| !chunk.sink.revoked());
        for i in (0..self.workers.len()).rev() {
            if self.workers[i].in_flight.iter().any(|f| f.chunk.sink.revoked()) {
                self.remove_worker(i, Ending::Revoked);
            }
        }
    }

    fn replace_workers(&mut self) {
        let wanted = match self.state {
            RunState::Running => self.config.processes,
            _ if !self.queue.is_empty() => self.config.processes,
            _ => 0,
        };
        if self.start_failed_at.is_some_and(|t| t.elapsed() < START_RETRY) {
            return;
        }
        while self.workers.len() < wanted {
            match self.start_worker() {
                Ok(worker) => {
                    self.start_failed_at = None;
                    self.workers.push(worker);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not start a pool worker");
                    self.start_failed_at = Some(Instant::now());
                    if self.workers.is_empty() {
                        // Nothing can run the queue: fail it rather than wait forever.
                        let message = format!("could not start a pool worker: {e}");
                        for chunk in self.queue.drain(..) {
                            chunk.fail(Error::InvalidState(message.clone()), &self.stats);
                        }
                    }
                    return;
                }
            }
        }
    }

    fn dispatch(&mut self) {
        let workers = self.workers.len().max(1);
        for w in 0..self.workers.len() {
            if self.queue.is_empty() {
                return;
            }
            // A fair share of the queue, so that a burst of slow tasks spreads over the workers;
            // and no task queued behind a busy worker when idle ones could take it (the tail).
            let share = self.queue.len().div_ceil(workers);
            let prefetch = self.queue.len() > workers;
            if let Err(e) = self.fill(w, share, prefetch) {
                tracing::debug!(error = %e, pid = self.workers[w].pid, "could not send tasks to a pool worker");
                // Its pidfd will report the end; stop using the connection.
                self.workers[w].conn_open = false;
            }
        }
    }

    /// Sends worker `w` up to `share` queued chunks, as far as its window allows; a busy worker only
    /// gets more when `prefetch` (the queue is longer than there are workers).
    fn fill(&mut self, w: usize, share: usize, prefetch: bool) -> Result<()> {
        let worker = &mut self.workers[w];
        if !worker.conn_open || worker.stop_sent || worker.deadline.is_some() {
            return Ok(());
        }
        if !prefetch && !worker.in_flight.is_empty() {
            return Ok(());
        }
        let window = match self.queue.front() {
            Some(chunk) if chunk.entry == worker.window_entry => worker.window,
            _ => FIRST_WINDOW,
        };
        let mut room = window.saturating_sub(worker.in_flight.len()).min(share);
        if let Some(max) = self.config.max_tasks {
            room = room.min(max.saturating_sub(worker.sent) as usize);
        }
        let first_new = worker.in_flight.len();
        while room > 0 {
            let Some(chunk) = self.queue.front() else { break };
            if chunk.sink.cancelled() {
                self.queue.pop_front();
                continue;
            }
            if let Some(timeout) = chunk.timeout {
                // A timed task runs alone, so that its clock starts when it does.
                if !worker.in_flight.is_empty() {
                    break;
                }
                // A timeout too far away for the clock (`Duration::MAX`) is no limit.
                worker.deadline = Instant::now().checked_add(timeout).map(|at| (at, timeout));
                room = 1;
            }
            let Some(chunk) = self.queue.pop_front() else { break };
            chunk.sink.started();
            self.next_id += 1;
            let span = tracing::debug_span!("pool.task", id = self.next_id, worker = worker.pid, calls = chunk.tasks);
            worker.in_flight.push_back(InFlight { id: self.next_id, chunk, span });
            worker.sent += 1;
            room -= 1;
        }
        if worker.in_flight.len() == first_new {
            return Ok(());
        }
        let batch: Vec<&InFlight> = worker.in_flight.iter().skip(first_new).collect();
        let fds: Vec<Handle<BorrowedFd<'_>>> =
            batch.iter().flat_map(|f| f.chunk.fds.iter().map(|fd| Handle::new(fd.as_fd()))).collect();
        let tasks = batch
            .iter()
            .map(|f| super::protocol::WireTaskRef {
                id: f.id,
                entry: f.chunk.entry,
                args: super::protocol::BlobRef(&f.chunk.args),
                fds: f.chunk.fds.len() as u32,
            })
            .collect();
        worker.conn.send(&super::protocol::ToWorkerRef::Batch { tasks, fds })?;
        if self.config.max_tasks.is_some_and(|max| worker.sent >= max) {
            // Retire it after these; a fresh worker takes its place (CPython maxtasksperchild).
            worker.stop_sent = true;
            worker.conn.send(&super::protocol::ToWorkerRef::Stop)?;
        }
        Ok(())
    }

    fn wait_for_events(&mut self) {
        let mut timeout = self
            .workers
            .iter()
            .filter_map(|w| w.deadline.map(|(at, _)| at))
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()));
        if self.start_failed_at.is_some() {
            timeout = Some(timeout.map_or(START_RETRY, |t| t.min(START_RETRY)));
        }
        {
            let mut inner = self.shared.lock();
            if !inner.queue.is_empty() || inner.state != self.state || inner.cancel_queued || inner.recheck {
                return;
            }
            inner.sleeping = true;
        }
        // Index 0: the wake-up socket; then each worker's connection (if open) and pidfd.
        let mut owners: Vec<(usize, bool)> = Vec::with_capacity(1 + 2 * self.workers.len());
        let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(owners.capacity());
        fds.push(self.wake.as_fd());
        owners.push((usize::MAX, false));
        for (i, worker) in self.workers.iter().enumerate() {
            if worker.conn_open
                && let Ok(fd) = worker.conn.fd()
            {
                fds.push(fd);
                owners.push((i, false));
            }
            if let Ok(fd) = worker.process.sentinel() {
                fds.push(fd);
                owners.push((i, true));
            }
        }
        let readiness = sys::poll_readable(&fds, timeout);
        drop(fds);
        self.shared.lock().sleeping = false;
        let readiness = match readiness {
            Ok(readiness) => readiness,
            Err(e) => {
                tracing::error!(error = %e, "the pool scheduler could not poll its workers");
                std::thread::sleep(Duration::from_millis(10));
                return;
            }
        };
        let mut ended: Vec<(usize, Ending)> = Vec::new();
        for (ready, &(owner, is_pidfd)) in readiness.iter().zip(&owners) {
            if !ready.ready {
                continue;
            }
            if owner == usize::MAX {
                let mut sink = [0u8; 64];
                while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
            } else if is_pidfd {
                ended.push((owner, Ending::Ended));
            } else if let Err(reason) = self.read_outcomes(owner) {
                ended.push((owner, Ending::Misbehaved(reason)));
            }
        }
        let now = Instant::now();
        for (i, worker) in self.workers.iter().enumerate() {
            if let Some((at, timeout)) = worker.deadline
                && at <= now
                && !ended.iter().any(|(e, _)| *e == i)
            {
                ended.push((i, Ending::TimedOut(timeout)));
            }
        }
        // Highest index first, so that removing one does not move the others.
        ended.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        ended.dedup_by_key(|(i, _)| *i);
        for (i, ending) in ended {
            self.remove_worker(i, ending);
        }
    }

    /// Reads every message waiting from worker `w`. `Err` when the worker broke the protocol.
    fn read_outcomes(&mut self, w: usize) -> std::result::Result<(), String> {
        loop {
            let worker = &mut self.workers[w];
            let message = match worker.conn.recv::<FromWorker>() {
                Ok(message) => message,
                Err(Error::Codec { detail, .. }) => return Err(format!("it sent a malformed message ({detail})")),
                Err(_) => {
                    // End of file or a broken connection: the worker is ending; its pidfd says how.
                    worker.conn_open = false;
                    return Ok(());
                }
            };
            match message {
                FromWorker::Results { results, busy_ns } => self.complete(w, results, busy_ns)?,
                FromWorker::InitFailed { code } => {
                    let reason = format!("a worker's initializer failed ({})", describe_exit(code));
                    tracing::error!(%reason, "pool initializer failed");
                    self.shared.set_state(RunState::Broken(reason.clone()));
                    self.state = RunState::Broken(reason);
                    return Ok(());
                }
            }
            if !matches!(self.workers[w].conn.poll(Some(Duration::ZERO)), Ok(true)) {
                return Ok(());
            }
        }
    }

    fn complete(&mut self, w: usize, results: Vec<WireResult>, busy_ns: u64) -> std::result::Result<(), String> {
        let worker = &mut self.workers[w];
        let count = results.len();
        let mut last_entry = worker.window_entry;
        // The sinks of this burst, each woken once at the end (consecutive chunks share one).
        let mut touched: Vec<Arc<dyn Sink>> = Vec::new();
        let mut broken = None;
        for result in results {
            let Some(flight) = worker.in_flight.pop_front() else {
                broken = Some("it reported a task it did not hold".to_string());
                break;
            };
            if flight.id != result.id {
                worker.in_flight.push_front(flight);
                broken = Some(format!("it reported task {} out of order", result.id));
                break;
            }
            worker.deadline = None;
            let chunk = flight.chunk;
            let _task = flight.span.entered();
            last_entry = chunk.entry;
            match result.outcome {
                Ok(Blob(bytes)) => {
                    self.stats.done.fetch_add(chunk.tasks as u64, Ordering::Relaxed);
                    chunk.sink.complete_quietly(chunk.index, Ok(bytes));
                    if !touched.last().is_some_and(|last| Arc::ptr_eq(last, &chunk.sink)) {
                        touched.push(Arc::clone(&chunk.sink));
                    }
                }
                Err(failure) => chunk.fail(failure.into_error(), &self.stats),
            }
        }
        // Every path wakes the readers of what was delivered.
        for sink in touched {
            sink.flush();
        }
        if let Some(reason) = broken {
            return Err(reason);
        }
        if count > 0 {
            // Size the window to about WINDOW_TIME of this worker's work.
            let per_task = (busy_ns / count as u64).max(1);
            // At least two: the next task waits in the worker while it runs one, so a worker
            // never idles for a round trip between tasks.
            let window = (WINDOW_TIME.as_nanos() as u64 / per_task).clamp(2, MAX_WINDOW as u64) as usize;
            worker.window = window;
            worker.window_entry = last_entry;
        }
        Ok(())
    }

    /// Takes worker `i` out: reads its last outcomes, reaps it (killing it first unless it ended),
    /// fails or requeues what it held, and counts a restart unless it retired normally.
    fn remove_worker(&mut self, i: usize, ending: Ending) {
        if matches!(ending, Ending::Ended) && self.workers[i].conn_open {
            // Outcomes it sent before it ended count.
            let _ = self.read_outcomes(i);
        }
        let mut worker = self.workers.swap_remove(i);
        if !matches!(ending, Ending::Ended) {
            let _ = worker.process.kill();
        }
        let code = worker.process.join().unwrap_or(crate::process::children::EXITCODE_UNKNOWN);
        let how = describe_exit(code);
        let retired = worker.stop_sent && code == 0 && worker.in_flight.is_empty();
        if !retired {
            self.stats.restarted.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(pid = worker.pid, %how, retired, "a pool worker ended");
        // The task it died in: the one whose id it wrote last. Tasks before it finished but their
        // outcomes were not sent yet; they run again, with the tasks it had not started.
        let running = worker.running.load(Ordering::Acquire);
        let mut requeue: Vec<Chunk> = Vec::new();
        let mut blamed = false;
        for flight in worker.in_flight.drain(..) {
            let culprit = match ending {
                Ending::Ended => flight.id == running,
                Ending::Revoked => flight.chunk.sink.revoked(),
                // A timed task runs alone; a misbehaving worker is blamed on its oldest task.
                Ending::TimedOut(_) | Ending::Misbehaved(_) => !blamed,
            };
            blamed |= culprit;
            if !culprit {
                requeue.push(flight.chunk);
                continue;
            }
            let mut chunk = flight.chunk;
            let error = match &ending {
                Ending::TimedOut(timeout) => Some(Error::TaskTimedOut(*timeout)),
                Ending::Revoked => Some(Error::Cancelled),
                Ending::Misbehaved(reason) => {
                    Some(Error::Protocol(format!("pool worker {} broke the protocol: {reason}", worker.pid)))
                }
                Ending::Ended if chunk.retries > 0 && self.state != RunState::Terminated => {
                    chunk.retries -= 1;
                    None
                }
                Ending::Ended => Some(Error::WorkerDied { pid: worker.pid, how: how.clone() }),
            };
            let _task = flight.span.entered();
            match error {
                Some(error) => {
                    tracing::debug!(%error, "pool task failed with its worker");
                    chunk.fail(error, &self.stats);
                }
                None => {
                    tracing::debug!(retries_left = chunk.retries, "pool task's worker died; retrying it");
                    requeue.push(chunk);
                }
            }
        }
        for chunk in requeue.into_iter().rev() {
            self.queue.push_front(chunk);
        }
    }

    /// Closed and drained: tells every worker to stop, and reaps them.
    fn stop_all(mut self) {
        for worker in &mut self.workers {
            if !worker.stop_sent && worker.conn_open {
                let _ = worker.conn.send(&super::protocol::ToWorkerRef::Stop);
            }
        }
        for mut worker in std::mem::take(&mut self.workers) {
            if !matches!(worker.process.join_timeout(STOP_GRACE), Ok(Some(_))) {
                let _ = worker.process.kill();
                let _ = worker.process.join();
            }
        }
    }

    /// Kills every worker and fails everything it held or that was queued.
    fn terminate_all(mut self, error: Error) {
        let message = error.to_string();
        let again = |error: &Error| match error {
            Error::PoolTerminated => Error::PoolTerminated,
            _ => Error::task_failed(message.clone()),
        };
        for worker in &mut self.workers {
            let _ = worker.process.kill();
        }
        for mut worker in std::mem::take(&mut self.workers) {
            let _ = worker.process.join();
            for flight in worker.in_flight.drain(..) {
                flight.chunk.fail(again(&error), &self.stats);
            }
        }
        let mut inner = self.shared.lock();
        self.queue.append(&mut inner.queue);
        drop(inner);
        for chunk in self.queue.drain(..) {
            chunk.fail(again(&error), &self.stats);
        }
    }
}
