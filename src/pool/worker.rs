//! The worker process: runs the initializer, then tasks as they come, and reports their outcomes.
//!
//! Outcomes of tiny tasks are batched: a worker sends what it has finished when nothing more is
//! waiting for it, or when the oldest unsent outcome is older than [`FLUSH_AFTER`], or the batch is
//! large; a task that ran longer than [`SEND_AT_ONCE_AFTER`] is reported at once. A pool that
//! keeps a worker supplied thus gets one message back per many tiny tasks. (A slow task right
//! after tiny ones holds back their unsent outcomes, at most [`FLUSH_AFTER`] of work, until it
//! ends.) Before each task the worker writes its id into a shared-memory word (no system call), so
//! that if it dies the pool knows which task killed it even though outcomes of tasks before it
//! were not sent yet.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::protocol::{Blob, FromWorker, ToWorker, WireResult, WireTask};
use super::task;
use crate::Handle;
use crate::connection::Connection;
use crate::error::Error;
use crate::reduction::Message;
use crate::shm::Shared;

/// The longest a finished task's outcome waits for company before it is sent.
const FLUSH_AFTER: Duration = Duration::from_millis(1);
/// A task that ran this long has its outcome sent at once.
const SEND_AT_ONCE_AFTER: Duration = Duration::from_micros(50);
/// Most outcomes in one message.
const FLUSH_COUNT: usize = 1024;
/// Most result bytes in one message.
const FLUSH_BYTES: usize = 256 * 1024;

/// The initializer, as a process target's entry and arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitCall {
    pub(crate) entry: i64,
    pub(crate) args: Blob,
    pub(crate) fds: Vec<Handle<OwnedFd>>,
}

/// What a worker is started with, besides its connection.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerSetup {
    pub(crate) init: Option<InitCall>,
    /// The id of the task the worker is running, set before each task: if the worker dies, the
    /// pool reads here which task it died in (outcomes are batched, so the oldest unreported task
    /// may have finished already).
    pub(crate) running: Shared<AtomicU64>,
}

/// The outcomes finished and not yet sent.
struct Outbox {
    results: Vec<WireResult>,
    bytes: usize,
    oldest: Option<Instant>,
    busy: Duration,
}

impl Outbox {
    fn push(&mut self, result: WireResult, busy: Duration) {
        self.bytes += match &result.outcome {
            Ok(blob) => blob.0.len(),
            Err(failure) => failure.message.len(),
        };
        self.oldest.get_or_insert_with(Instant::now);
        self.busy += busy;
        self.results.push(result);
    }

    fn due(&self) -> bool {
        self.results.len() >= FLUSH_COUNT
            || self.bytes >= FLUSH_BYTES
            || self.oldest.is_some_and(|t| t.elapsed() >= FLUSH_AFTER)
    }

    fn flush(&mut self, conn: &mut Connection) -> crate::Result<()> {
        if self.results.is_empty() {
            return Ok(());
        }
        let message =
            FromWorker::Results { results: std::mem::take(&mut self.results), busy_ns: self.busy.as_nanos() as u64 };
        self.bytes = 0;
        self.oldest = None;
        self.busy = Duration::ZERO;
        conn.send(&message)
    }
}

/// The worker's body (a process target): exit code 0 after `Stop` or when the pool went away.
pub(crate) fn worker_main(mut conn: Connection, mut setup: WorkerSetup) -> i32 {
    task::keep_panic_messages();
    if let Some(init) = setup.init.take() {
        let code = run_initializer(init);
        if code != 0 {
            let _ = conn.send(&FromWorker::InitFailed { code });
            return code;
        }
    }
    let mut outbox = Outbox { results: Vec::new(), bytes: 0, oldest: None, busy: Duration::ZERO };
    loop {
        let message = match conn.recv::<ToWorker>() {
            Ok(message) => message,
            // The pool is gone (terminated, or its process ended): nothing to report to.
            Err(Error::Eof) => return 0,
            Err(e) => {
                eprintln!("multiproc pool worker {}: {e}", std::process::id());
                return 1;
            }
        };
        let (tasks, fds) = match message {
            ToWorker::Batch { tasks, fds } => (tasks, fds),
            ToWorker::Stop => return if outbox.flush(&mut conn).is_ok() { 0 } else { 1 },
        };
        let mut fds = fds.into_iter().map(Handle::into_inner);
        for wire in tasks {
            let task_fds: Vec<OwnedFd> = fds.by_ref().take(wire.fds as usize).collect();
            setup.running.store(wire.id, Ordering::Release);
            let started = Instant::now();
            let result = run_task(wire, task_fds);
            let took = started.elapsed();
            outbox.push(result, took);
            // A task that was not tiny is reported at once: one message costs little beside it,
            // and its outcome is not held back behind a next task that may be long (or die).
            if (outbox.due() || took >= SEND_AT_ONCE_AFTER) && outbox.flush(&mut conn).is_err() {
                return 1;
            }
        }
        // Nothing waiting: send what is finished before blocking for more.
        if (outbox.due() || !conn.poll(Some(Duration::ZERO)).unwrap_or(false)) && outbox.flush(&mut conn).is_err() {
            return 1;
        }
    }
}

#[allow(unsafe_code, reason = "the task's entry point comes as an offset")]
fn run_task(wire: WireTask, fds: Vec<OwnedFd>) -> WireResult {
    let _span = tracing::debug_span!("pool.chunk", id = wire.id).entered();
    // SAFETY: the offset comes from the pool that launched this worker (the only other end of this
    // connection), which runs the same executable, as the launch protocol checked.
    let entry = unsafe { task::entry_from_offset(wire.entry) };
    let mut out = Vec::new();
    let outcome = entry(Message { bytes: wire.args.0, fds }, &mut out).map(|()| Blob(out));
    WireResult { id: wire.id, outcome }
}

#[allow(unsafe_code, reason = "the initializer's entry point comes as an offset")]
fn run_initializer(init: InitCall) -> i32 {
    // SAFETY: as for task entries: the offset comes from the pool that launched this worker.
    let entry = unsafe { crate::process::target::entry_from_offset(init.entry) };
    let fds = init.fds.into_iter().map(Handle::into_inner).collect();
    task::call_catching(|| Ok(entry(Message { bytes: init.args.0, fds }))).unwrap_or_else(|failure| {
        eprintln!("multiproc pool worker {}: the initializer {}", std::process::id(), failure.message);
        1
    })
}
