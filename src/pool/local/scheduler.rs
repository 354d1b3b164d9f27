//! The local scheduler: the policy of a pool of worker processes on this machine. One thread in
//! the parent decides which chunks go to which worker and when, what a worker's death or a
//! timeout means for the chunks it held, when a chunk runs again, and delivers outcomes to the
//! sinks; how chunks travel is the transport's (`transport.rs`).
//!
//! The scheduler knows, for each worker, the chunks it holds in the order it sent them; by the
//! protocol (see `protocol.rs`) the oldest is the one running. It waits on every worker at once
//! (`transport::wait`), with the nearest chunk deadline as the timeout. So:
//! * a worker that dies fails exactly the chunk it was running, with how it ended (or puts it
//!   back in the queue when retries are left); the chunks it had not started go to other
//!   workers; a new worker takes its place;
//! * a chunk over its timeout is killed with its worker (`SIGKILL`), reported, and the worker
//!   replaced;
//! * nothing waits for a worker that cannot answer: there is no state in which the pool hangs
//!   (a batch that a busy worker's socket cannot take yet waits in its link while the scheduler
//!   goes on).
//!
//! Throughput: a worker gets a *window* of chunks at once, sized from how long its chunks take
//! (about [`WINDOW_TIME`] of work, up to [`MAX_WINDOW`] chunks), so tiny chunks travel thousands
//! to a message both ways, while long chunks are handed out two at a time (one running, one
//! waiting, so the worker never idles for a round trip) and balance across workers: each gets a
//! fair share of the queue, and once the queue is shorter than the pool only idle workers get
//! chunks. A chunk with a timeout is sent alone to an idle worker, so its clock starts when it
//! does.
//!
//! The unit of bookkeeping is a *slice* (consecutive chunks of one call), never a chunk: the
//! queue holds slices of the calls' [`Chunks`], a window is cut from the front slice, each worker
//! holds the slices it was sent (with the id of the first chunk), and a reply settles a run of
//! chunks with one delivery to its sink. See `local/mod.rs` for what this costs per task.
//!
//! Latency: a synchronous call of a short task (`apply`, a cluster node's chunk) waits for one
//! worker's reply while nothing else is running. Going to sleep for it costs a wake-up on the
//! way back (a few microseconds, more under a hypervisor), so the scheduler then polls for up
//! to [`SPIN_WAIT`] before it sleeps: only while fewer chunks run than the machine has CPUs
//! (the polling thread takes a CPU no worker needs), and only while the last chunks took less
//! than half of that (so the reply is likely to come within it).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::super::protocol::{self, FromWorker, Reply};
use super::super::scheduler::{Chunks, RunState, Sink, Stats, Watch};
use super::queue::LocalQueue;
use super::transport::{self, Link, Outgoing, Received};
use super::{WorkerConfig, describe_exit};
use crate::context::StartMethod;
use crate::error::{Error, Result};

/// About how much work a worker is given at once.
const WINDOW_TIME: Duration = Duration::from_millis(2);
/// Most chunks a worker holds at once.
const MAX_WINDOW: usize = 4096;
/// Chunks a worker holds before its speed is known.
const FIRST_WINDOW: usize = 2;
/// How long a worker that ignores `Stop` is given before it is killed.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);
/// Pause before trying again to start a worker after a failure.
const START_RETRY: Duration = Duration::from_millis(100);
/// The longest the scheduler polls for a short chunk's reply before it sleeps (see the module
/// docs, "Latency").
const SPIN_WAIT: Duration = Duration::from_micros(25);

/// Chunks `start..end` of a call's [`Chunks`] (counted from its first).
struct Slice {
    chunks: Arc<Chunks>,
    start: usize,
    end: usize,
    /// Times each may run again after its worker died.
    retries: u32,
}

impl Slice {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn sink(&self) -> &Arc<dyn Sink> {
        &self.chunks.sink
    }

    /// The job's index of chunk `i`.
    fn index(&self, i: usize) -> usize {
        self.chunks.first + i
    }

    /// Cuts off and returns the first `n` chunks.
    fn split_front(&mut self, n: usize) -> Slice {
        let front =
            Slice { chunks: Arc::clone(&self.chunks), start: self.start, end: self.start + n, retries: self.retries };
        self.start += n;
        front
    }

    /// Chunks `range` (within this slice) as a slice of their own.
    fn part(&self, range: std::ops::Range<usize>) -> Slice {
        Slice { chunks: Arc::clone(&self.chunks), start: range.start, end: range.end, retries: self.retries }
    }

    /// Fails every chunk with `error()`.
    fn fail(self, error: impl Fn() -> Error, stats: &Stats) {
        stats.failed.fetch_add(self.chunks.tasks_in(self.start..self.end) as u64, Ordering::Relaxed);
        for i in self.start..self.end {
            self.chunks.sink.complete(self.index(i), Err(error()));
        }
    }

    /// Fails its first chunk with `error` (a slice of one).
    fn fail_first(self, error: Error, stats: &Stats) {
        stats.failed.fetch_add(self.chunks.tasks_of(self.start) as u64, Ordering::Relaxed);
        self.chunks.sink.complete(self.index(self.start), Err(error));
    }
}

/// A slice sent to a worker, its first chunk with id `first_id`, the others following.
struct Sent {
    first_id: u64,
    slice: Slice,
    /// Open from dispatch to outcome: the chunks' life as the parent sees it (`pool.task`, debug
    /// level; a disabled span costs nothing, and an enabled one makes every chunk a slice of its
    /// own, so that each has its span).
    span: tracing::Span,
}

/// A worker as the scheduler sees it.
struct Worker {
    link: Link,
    in_flight: VecDeque<Sent>,
    /// Chunks in flight.
    held: usize,
    /// Chunks sent over its life (`maxtasksperchild`).
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
    /// Its chunk overran this timeout; it was killed.
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
    config: WorkerConfig,
    workers: Vec<Worker>,
    queue: VecDeque<Slice>,
    /// Chunks in `queue`.
    queued: usize,
    state: RunState,
    next_id: u64,
    start_failed_at: Option<Instant>,
    /// Scratch of `settle`: the sinks a reply delivered to (kept, empty, between replies).
    touched: Vec<Arc<dyn Sink>>,
    /// A descriptor watched for someone else ([`Runner::watch`](super::super::scheduler::Runner::watch)).
    watch: Option<Arc<dyn Watch>>,
    /// Whether the last reply's chunks were short enough to poll for the next (see [`SPIN_WAIT`]).
    short_chunks: bool,
    /// CPUs this process may use.
    cpus: usize,
}

impl Scheduler {
    /// A scheduler with `config.processes` started workers.
    ///
    /// # Errors
    ///
    /// A worker that could not start (the ones started before it are killed and reaped).
    pub(super) fn new(shared: Arc<LocalQueue>, stats: Arc<Stats>, config: WorkerConfig) -> Result<Scheduler> {
        let mut scheduler = Scheduler {
            shared,
            stats,
            config,
            workers: Vec::new(),
            queue: VecDeque::new(),
            queued: 0,
            state: RunState::Running,
            next_id: 0,
            start_failed_at: None,
            touched: Vec::new(),
            watch: None,
            short_chunks: false,
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
        };
        if scheduler.config.method == StartMethod::ForkServer {
            // Forked while the workers' connections and memory are made, not one after another.
            crate::process::start::forkserver::prepare_spares(scheduler.config.processes);
        }
        for _ in 0..scheduler.config.processes {
            // On failure `scheduler` is dropped, which kills and reaps the workers started so far.
            let worker = scheduler.start_worker()?;
            scheduler.workers.push(worker);
        }
        Ok(scheduler)
    }

    fn start_worker(&mut self) -> Result<Worker> {
        let link = Link::start(self.config.method, self.config.initializer.as_ref())?;
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pid = link.pid(), "started a pool worker");
        Ok(Worker {
            link,
            in_flight: VecDeque::new(),
            held: 0,
            sent: 0,
            stop_sent: false,
            deadline: None,
            window: FIRST_WINDOW,
            window_entry: 0,
        })
    }

    /// Runs the scheduler until the pool is stopped or terminated.
    pub(crate) fn run(mut self) {
        super::super::result::mark_delivering_thread();
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
        let submitted = std::mem::take(&mut inner.queue);
        self.state = inner.state.clone();
        let cancel = std::mem::take(&mut inner.cancel_queued);
        let recheck = std::mem::take(&mut inner.recheck);
        if let Some(watch) = inner.watch.take() {
            self.watch = Some(watch);
        }
        drop(inner);
        for chunks in submitted {
            let (len, retries) = (chunks.len(), chunks.retries);
            if len > 0 {
                self.queued += len;
                self.queue.push_back(Slice { chunks: Arc::new(chunks), start: 0, end: len, retries });
            }
        }
        if cancel {
            self.queued = 0;
            for slice in self.queue.drain(..) {
                for i in slice.start..slice.end {
                    slice.sink().complete(slice.index(i), Err(Error::Cancelled));
                }
            }
        }
        if recheck {
            self.stop_revoked();
        }
    }

    /// Kills the workers holding a revoked chunk: those chunks fail with [`Error::Cancelled`],
    /// the others they held run elsewhere.
    fn stop_revoked(&mut self) {
        self.queue.retain(|slice| !slice.sink().revoked());
        self.queued = self.queue.iter().map(Slice::len).sum();
        for i in (0..self.workers.len()).rev() {
            if self.workers[i].in_flight.iter().any(|sent| sent.slice.sink().revoked()) {
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
                        self.queued = 0;
                        for slice in self.queue.drain(..) {
                            slice.fail(|| Error::InvalidState(message.clone()), &self.stats);
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
            // A fair share of the queue, so that a burst of slow chunks spreads over the workers;
            // and no chunk queued behind a busy worker when idle ones could take it (the tail).
            let share = self.queued.div_ceil(workers);
            let prefetch = self.queued > workers;
            if let Err(e) = self.fill(w, share, prefetch) {
                // Its pidfd will report the end (the link is closed); the chunks it holds are
                // settled then.
                tracing::debug!(error = %e, pid = self.workers[w].link.pid(), "could not send chunks to a pool worker");
            }
        }
    }

    /// Sends worker `w` up to `share` queued chunks, as far as its window allows; a busy worker only
    /// gets more when `prefetch` (the queue is longer than there are workers).
    fn fill(&mut self, w: usize, share: usize, prefetch: bool) -> Result<()> {
        let Scheduler { workers, queue, queued, next_id, config, .. } = self;
        let worker = &mut workers[w];
        if !worker.link.ready_to_send() || worker.stop_sent || worker.deadline.is_some() {
            return Ok(());
        }
        if !prefetch && worker.held > 0 {
            return Ok(());
        }
        let window = match queue.front() {
            Some(slice) if slice.chunks.entry == worker.window_entry => worker.window,
            _ => FIRST_WINDOW,
        };
        let mut room = window.saturating_sub(worker.held).min(share);
        if let Some(max) = config.max_tasks {
            room = room.min(max.saturating_sub(worker.sent) as usize);
        }
        let first_new = worker.in_flight.len();
        while room > 0 {
            let Some(front) = queue.front_mut() else { break };
            if front.sink().cancelled() {
                *queued -= front.len();
                queue.pop_front();
                continue;
            }
            let mut take = room.min(front.len());
            if let Some(timeout) = front.chunks.timeout {
                // A timed chunk runs alone, so that its clock starts when it does.
                if worker.held > 0 {
                    break;
                }
                // A timeout too far away for the clock (`Duration::MAX`) is no limit.
                worker.deadline = Instant::now().checked_add(timeout).map(|at| (at, timeout));
                take = 1;
            }
            let span = tracing::debug_span!(
                "pool.task",
                id = *next_id + 1,
                worker = worker.link.pid(),
                calls = tracing::field::Empty
            );
            if !span.is_disabled() {
                take = 1;
            }
            let slice = match take == front.len() {
                true => queue.pop_front(),
                false => Some(front.split_front(take)),
            };
            let Some(slice) = slice else { break };
            *queued -= take;
            slice.sink().started();
            span.record("calls", slice.chunks.tasks_in(slice.start..slice.end));
            worker.in_flight.push_back(Sent { first_id: *next_id + 1, slice, span });
            *next_id += take as u64;
            worker.held += take;
            worker.sent += take as u64;
            room -= take;
            if worker.deadline.is_some() {
                break;
            }
        }
        if worker.in_flight.len() == first_new {
            return Ok(());
        }
        let groups: Vec<Outgoing<'_>> = worker
            .in_flight
            .range(first_new..)
            .map(|sent| Outgoing {
                first_id: sent.first_id,
                chunks: &sent.slice.chunks,
                range: sent.slice.start..sent.slice.end,
            })
            .collect();
        worker.link.send_batch(&groups)?;
        if config.max_tasks.is_some_and(|max| worker.sent >= max) {
            // Retire it after these; a fresh worker takes its place (CPython maxtasksperchild).
            worker.stop_sent = true;
            worker.link.send_stop()?;
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
        let watch = self.watch.clone();
        let watched = watch.as_ref().and_then(|w| w.fd());
        let spin = if self.spin_for_reply() { SPIN_WAIT } else { Duration::ZERO };
        let events = transport::wait(self.shared.wake(), watched, self.workers.iter().map(|w| &w.link), spin, timeout);
        self.shared.lock().sleeping = false;
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(error = %e, "the pool scheduler could not wait for its workers");
                std::thread::sleep(Duration::from_millis(10));
                return;
            }
        };
        let mut ended: Vec<(usize, Ending)> = Vec::new();
        for &w in &events.writable {
            // An error closes the link; its pidfd or the next round settles the worker.
            let _ = self.workers[w].link.resume_sending();
        }
        for &w in &events.readable {
            if let Err(reason) = self.read_replies(w) {
                ended.push((w, Ending::Misbehaved(reason)));
            }
        }
        ended.extend(events.ended.iter().map(|&w| (w, Ending::Ended)));
        let now = Instant::now();
        for (w, worker) in self.workers.iter().enumerate() {
            if let Some((at, timeout)) = worker.deadline
                && at <= now
                && !ended.iter().any(|(e, _)| *e == w)
            {
                ended.push((w, Ending::TimedOut(timeout)));
            }
        }
        // A worker that misbehaved is reported as such even if it also ended; highest index
        // first, so that removing one does not move the others.
        ended.sort_by_key(|(w, ending)| (std::cmp::Reverse(*w), !matches!(ending, Ending::Misbehaved(_))));
        ended.dedup_by_key(|(w, _)| *w);
        for (w, ending) in ended {
            self.remove_worker(w, ending);
        }
        if events.watched
            && let Some(watch) = watch
        {
            watch.readable();
        }
    }

    /// Whether to poll for a reply before sleeping (see [`SPIN_WAIT`]): the last chunks were
    /// short, and some run, but fewer than the machine has CPUs.
    fn spin_for_reply(&self) -> bool {
        let held: usize = self.workers.iter().map(|w| w.held).sum();
        spins(self.short_chunks, held, self.cpus)
    }

    /// Reads every message waiting from worker `w`. `Err` when the worker broke the protocol.
    fn read_replies(&mut self, w: usize) -> std::result::Result<(), String> {
        loop {
            let Scheduler { workers, stats, shared, state, touched, short_chunks, .. } = self;
            let worker = &mut workers[w];
            let Worker { link, in_flight, held, deadline, window, window_entry, .. } = worker;
            match link.recv() {
                Received::Message(FromWorker::Replies { replies, busy_ns }) => {
                    let settled = settle(in_flight, held, deadline, stats, replies, touched)?;
                    if settled.chunks > 0 {
                        // Size the window to about WINDOW_TIME of this worker's work. At least
                        // two: the next chunk waits in the worker while it runs one, so a worker
                        // never idles for a round trip between chunks.
                        let per_chunk = (busy_ns / settled.chunks as u64).max(1);
                        *short_chunks = per_chunk < SPIN_WAIT.as_nanos() as u64 / 2;
                        *window = (WINDOW_TIME.as_nanos() as u64 / per_chunk).clamp(2, MAX_WINDOW as u64) as usize;
                        *window_entry = settled.entry;
                    }
                }
                Received::Message(FromWorker::InitFailed { code }) => {
                    let reason = format!("a worker's initializer failed ({})", describe_exit(code));
                    tracing::error!(%reason, "pool initializer failed");
                    shared.set_state(RunState::Broken(reason.clone()));
                    *state = RunState::Broken(reason);
                    return Ok(());
                }
                Received::Closed => return Ok(()),
                Received::Malformed(detail) => return Err(format!("it sent a malformed message ({detail})")),
            }
            if !self.workers[w].link.has_more() {
                return Ok(());
            }
        }
    }

    /// Takes worker `w` out: reads its last outcomes, reaps it (killing it first unless it ended),
    /// fails or requeues what it held, and counts a restart unless it retired normally.
    fn remove_worker(&mut self, w: usize, ending: Ending) {
        if matches!(ending, Ending::Ended) && self.workers[w].link.is_open() {
            // Outcomes it sent before it ended count, also when a batch to it was half sent
            // (they would otherwise run again); one that breaks the protocol now is already
            // dying.
            let _ = self.read_replies(w);
        }
        let mut worker = self.workers.swap_remove(w);
        if !matches!(ending, Ending::Ended) {
            worker.link.kill();
        }
        let code = worker.link.join();
        let pid = worker.link.pid();
        let how = describe_exit(code);
        let retired = worker.stop_sent && code == 0 && worker.in_flight.is_empty();
        if !retired {
            self.stats.restarted.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(pid, %how, retired, "a pool worker ended");
        // The chunk it died in: the one whose id it wrote last. Chunks before it finished but
        // their outcomes were not sent yet; they run again, with the chunks it had not started.
        let running = worker.link.running();
        let mut requeue: Vec<Slice> = Vec::new();
        let mut blamed = false;
        for sent in worker.in_flight.drain(..) {
            let Sent { first_id, slice, span } = sent;
            let culprit = match ending {
                Ending::Ended => running.checked_sub(first_id).map(|at| at as usize).filter(|&at| at < slice.len()),
                Ending::Revoked if slice.sink().revoked() => Some(0),
                Ending::Revoked => None,
                // A timed chunk runs alone; a misbehaving worker is blamed on its oldest chunk.
                Ending::TimedOut(_) | Ending::Misbehaved(_) if !blamed => Some(0),
                Ending::TimedOut(_) | Ending::Misbehaved(_) => None,
            };
            let Some(at) = culprit else {
                requeue.push(slice);
                continue;
            };
            blamed = true;
            let _task = span.entered();
            if matches!(ending, Ending::Revoked) {
                // Every chunk of a revoked call stops.
                tracing::debug!("pool chunks revoked");
                slice.fail(|| Error::Cancelled, &self.stats);
                continue;
            }
            let culprit = slice.start + at;
            if culprit > slice.start {
                requeue.push(slice.part(slice.start..culprit));
            }
            let mut chunk = slice.part(culprit..culprit + 1);
            let error = match &ending {
                Ending::TimedOut(timeout) => Some(Error::TaskTimedOut(*timeout)),
                Ending::Revoked => Some(Error::Cancelled),
                Ending::Misbehaved(reason) => {
                    Some(Error::Protocol(format!("pool worker {pid} broke the protocol: {reason}")))
                }
                Ending::Ended if chunk.retries > 0 && self.state != RunState::Terminated => {
                    chunk.retries -= 1;
                    None
                }
                Ending::Ended => Some(Error::WorkerDied { pid, how: how.clone() }),
            };
            match error {
                Some(error) => {
                    tracing::debug!(%error, "pool task failed with its worker");
                    chunk.fail_first(error, &self.stats);
                }
                None => {
                    tracing::debug!(retries_left = chunk.retries, "pool task's worker died; retrying it");
                    requeue.push(chunk);
                }
            }
            if culprit + 1 < slice.end {
                requeue.push(slice.part(culprit + 1..slice.end));
            }
        }
        for slice in requeue.into_iter().rev() {
            self.queued += slice.len();
            self.queue.push_front(slice);
        }
    }

    /// Closed and drained: tells every worker to stop, all at once, then hands them to whoever
    /// joins the pool ([`LocalQueue::hand_over`]), or reaps them itself when nobody will.
    ///
    /// The thread ends while the workers exit: a `join` then waits for the workers' ends itself,
    /// instead of for this thread to be woken by each end and to wake the joiner in turn.
    fn stop_all(mut self) {
        for worker in &mut self.workers {
            if !worker.stop_sent {
                let _ = worker.link.send_stop();
            }
        }
        let exiting = self.workers.drain(..).map(|worker| worker.link.into_exiting()).collect();
        if let Some(exiting) = self.shared.hand_over(exiting) {
            transport::reap(exiting, STOP_GRACE);
        }
    }

    /// Kills every worker and fails everything it held or that was queued.
    fn terminate_all(mut self, error: Error) {
        let message = error.to_string();
        let again = || match &error {
            Error::PoolTerminated => Error::PoolTerminated,
            _ => Error::task_failed(message.clone()),
        };
        for worker in &mut self.workers {
            worker.link.kill();
        }
        for mut worker in std::mem::take(&mut self.workers) {
            let _ = worker.link.join();
            for sent in worker.in_flight.drain(..) {
                sent.slice.fail(again, &self.stats);
            }
        }
        let submitted = std::mem::take(&mut self.shared.lock().queue);
        for chunks in submitted {
            let len = chunks.len();
            Slice { retries: chunks.retries, chunks: Arc::new(chunks), start: 0, end: len }.fail(again, &self.stats);
        }
        for slice in self.queue.drain(..) {
            slice.fail(again, &self.stats);
        }
    }
}

/// The policy of [`Scheduler::spin_for_reply`]: poll for a reply when the last chunks were
/// short and `held` chunks are out, at least one and fewer than the `cpus` the process may use
/// (with one CPU, or every CPU running a chunk, the polling would take a worker's CPU).
fn spins(short_chunks: bool, held: usize, cpus: usize) -> bool {
    short_chunks && held > 0 && held < cpus
}

/// What a reply settled: how many chunks, the function of the last.
struct Settled {
    chunks: usize,
    entry: i64,
}

/// Settles the chunks a worker reported (`replies`, oldest first) against the slices it holds:
/// each run of successes goes to its sink in one delivery, each failure alone. `Err` when the
/// worker reported a chunk it does not hold, or out of order, or malformed results.
fn settle(
    in_flight: &mut VecDeque<Sent>,
    held: &mut usize,
    deadline: &mut Option<(Instant, Duration)>,
    stats: &Stats,
    replies: Vec<Reply<'_>>,
    touched: &mut Vec<Arc<dyn Sink>>,
) -> std::result::Result<Settled, String> {
    let mut settled = Settled { chunks: 0, entry: 0 };
    // The sinks of this burst, each woken once at the end (consecutive runs share one).
    touched.clear();
    let mut broken = None;
    for reply in replies {
        let (first_id, count) = match &reply {
            Reply::Done { first_id, ends, .. } => (*first_id, ends.0.len() / 4),
            Reply::Failed { id, .. } => (*id, 1),
        };
        let Some(front) = in_flight.front_mut() else {
            broken = Some("it reported a chunk it did not hold".to_string());
            break;
        };
        if front.first_id != first_id {
            broken = Some(format!("it reported chunk {first_id} out of order"));
            break;
        }
        if count == 0 || count > front.slice.len() {
            broken =
                Some(format!("it reported {count} chunks from {first_id}, of {} it holds there", front.slice.len()));
            break;
        }
        *deadline = None;
        let slice = &front.slice;
        let chunks = Arc::clone(&slice.chunks);
        let (first, range) = (slice.index(slice.start), slice.start..slice.start + count);
        settled.chunks += count;
        settled.entry = chunks.entry;
        let task = front.span.enter();
        match reply {
            Reply::Done { ends, results, .. } => {
                let Some(mut pieces) = protocol::pieces(ends.0, results.0) else {
                    broken = Some("it sent results that its ends do not cut".to_string());
                    break;
                };
                stats.done.fetch_add(chunks.tasks_in(range) as u64, Ordering::Relaxed);
                chunks.sink.complete_run(first, &mut pieces);
                if !touched.last().is_some_and(|last| Arc::ptr_eq(last, &chunks.sink)) {
                    touched.push(Arc::clone(&chunks.sink));
                }
            }
            Reply::Failed { failure, .. } => {
                stats.failed.fetch_add(chunks.tasks_in(range) as u64, Ordering::Relaxed);
                chunks.sink.complete(first, Err(failure.into_error()));
            }
        }
        drop(task);
        *held -= count;
        front.first_id += count as u64;
        front.slice.start += count;
        if front.slice.len() == 0 {
            in_flight.pop_front();
        }
    }
    // Every path wakes the readers of what was delivered.
    for sink in touched.drain(..) {
        sink.flush();
    }
    match broken {
        Some(reason) => Err(reason),
        None => Ok(settled),
    }
}

#[cfg(test)]
mod tests {
    use super::spins;

    /// The scheduler polls only for short chunks, with one out at least and a CPU to spare.
    #[test]
    fn the_scheduler_polls_only_with_a_short_chunk_out_and_a_cpu_to_spare() {
        assert!(spins(true, 1, 2));
        assert!(spins(true, 15, 16));
        assert!(!spins(false, 1, 2), "the last chunks were long");
        assert!(!spins(true, 0, 2), "nothing is out");
        assert!(!spins(true, 2, 2), "every CPU runs a chunk");
        assert!(!spins(true, 1, 1), "one CPU");
    }
}
