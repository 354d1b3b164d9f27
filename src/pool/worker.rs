//! The worker process: runs the initializer, then chunks as they come, and reports their outcomes.
//!
//! Outcomes of tiny chunks are batched: a worker sends what it has finished when nothing more is
//! waiting for it, or when the oldest unsent outcome is older than [`FLUSH_AFTER`], or the batch is
//! large; a chunk that ran longer than [`SEND_AT_ONCE_AFTER`] is reported at once. A pool that
//! keeps a worker supplied thus gets one message back per many tiny chunks. (A slow chunk right
//! after tiny ones holds back their unsent outcomes, at most [`FLUSH_AFTER`] of work, until it
//! ends.) Before each chunk the worker writes its id into a shared-memory word (no system call), so
//! that if it dies the pool knows which chunk killed it even though outcomes of chunks before it
//! were not sent yet.
//!
//! Nothing is allocated per chunk: a batch is received into a buffer kept from message to message,
//! each chunk's arguments are decoded from it one call at a time (`task::run_chunk`; a chunk of
//! numbers to numbers in one loop under one `catch_unwind`, `packed::map_numbers`), and the
//! results are encoded straight into the outbox, whose buffers are kept too. (A pool that
//! allocated them afresh paid for page faults on every large message: the allocator gives the
//! freed pages back and the next message faults them in again.)

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::protocol::{self, Blob, Bytes, FromWorker, Reply, ToWorker};
use super::task::{self, ChunkEntry, TaskFailure};
use crate::Handle;
use crate::connection::Connection;
use crate::error::Error;
use crate::reduction::Message;
use crate::shm::Shared;

/// The longest a finished chunk's outcome waits for company before it is sent.
const FLUSH_AFTER: Duration = Duration::from_millis(1);
/// A chunk that ran this long has its outcome sent at once.
const SEND_AT_ONCE_AFTER: Duration = Duration::from_micros(50);
/// Most outcomes in one message.
const FLUSH_COUNT: usize = 2048;
/// Most result bytes in one message.
const FLUSH_BYTES: usize = 256 * 1024;
/// A buffer kept between messages is given back when it grew past this (one huge message does
/// not pin its memory for the worker's life).
pub(crate) const KEEP_BUFFER: usize = 16 << 20;

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
    /// The id of the chunk the worker is running, set before each chunk: if the worker dies, the
    /// pool reads here which chunk it died in (outcomes are batched, so the oldest unreported
    /// chunk may have finished already).
    pub(crate) running: Shared<AtomicU64>,
}

/// Gives `buf`'s memory back if it grew past [`KEEP_BUFFER`]; keeps it otherwise.
pub(crate) fn trim(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_BUFFER {
        *buf = Vec::new();
    }
}

/// What became of a chunk, not yet sent.
enum Entry {
    /// Chunks `first_id..first_id + count` of group `group` succeeded; their ends are at
    /// `ends_from..` in [`Outbox::ends`], relative to `results_from` in [`Outbox::results`].
    Done {
        first_id: u64,
        group: u64,
        count: u64,
        ends_from: usize,
        results_from: usize,
    },
    Failed {
        id: u64,
        failure: TaskFailure,
    },
}

/// The outcomes finished and not yet sent, and the buffers they are encoded in.
#[derive(Default)]
struct Outbox {
    entries: Vec<Entry>,
    /// Packed results of the `Done` entries, back to back.
    results: Vec<u8>,
    /// Little-endian `u32` ends of each done chunk's results.
    ends: Vec<u8>,
    chunks: usize,
    oldest: Option<Instant>,
    busy: Duration,
    /// The encoded message.
    message: Vec<u8>,
}

impl Outbox {
    /// Runs chunk `id` (of group number `group`) and keeps its outcome.
    fn run(&mut self, id: u64, group: u64, entry: ChunkEntry, args: &[u8], fds: Vec<OwnedFd>) {
        let _span = tracing::debug_span!("pool.chunk", id).entered();
        let from = self.results.len();
        let outcome = entry(args, fds, &mut self.results).and_then(|()| {
            let end = match self.entries.last() {
                Some(&Entry::Done { first_id, group: g, count, results_from, .. })
                    if g == group && first_id + count == id =>
                {
                    self.results.len() - results_from
                }
                _ => self.results.len() - from,
            };
            u32::try_from(end).map_err(|_| {
                self.results.truncate(from);
                TaskFailure::message("the chunk's results are 4 GiB or more: use a smaller chunksize")
            })
        });
        match outcome {
            Ok(end) => {
                match self.entries.last_mut() {
                    Some(Entry::Done { first_id, group: g, count, .. }) if *g == group && *first_id + *count == id => {
                        *count += 1;
                    }
                    _ => self.entries.push(Entry::Done {
                        first_id: id,
                        group,
                        count: 1,
                        ends_from: self.ends.len(),
                        results_from: from,
                    }),
                }
                self.ends.extend_from_slice(&end.to_le_bytes());
            }
            Err(failure) => self.entries.push(Entry::Failed { id, failure }),
        }
        self.chunks += 1;
    }

    fn due(&self, now: Instant) -> bool {
        self.chunks >= FLUSH_COUNT
            || self.results.len() >= FLUSH_BYTES
            || self.oldest.is_some_and(|t| now.duration_since(t) >= FLUSH_AFTER)
    }

    fn flush(&mut self, conn: &mut Connection) -> crate::Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let replies = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, entry)| match entry {
                Entry::Done { first_id, count, ends_from, results_from, .. } => {
                    // Up to where the next done entry's results begin.
                    let results_to = self.entries[i + 1..]
                        .iter()
                        .find_map(|e| match e {
                            Entry::Done { results_from, .. } => Some(*results_from),
                            Entry::Failed { .. } => None,
                        })
                        .unwrap_or(self.results.len());
                    let ends_to = ends_from + 4 * *count as usize;
                    Reply::Done {
                        first_id: *first_id,
                        ends: Bytes(&self.ends[*ends_from..ends_to]),
                        results: Bytes(&self.results[*results_from..results_to]),
                    }
                }
                Entry::Failed { id, failure } => Reply::Failed { id: *id, failure: failure.clone() },
            })
            .collect();
        let message = FromWorker::Replies { replies, busy_ns: self.busy.as_nanos() as u64 };
        self.message.clear();
        self.message = postcard::to_extend(&message, std::mem::take(&mut self.message))
            .map_err(|e| Error::Codec { action: "encode", detail: e.to_string() })?;
        drop(message);
        self.entries.clear();
        self.results.clear();
        self.ends.clear();
        self.chunks = 0;
        self.oldest = None;
        self.busy = Duration::ZERO;
        let sent = conn.send_bytes(&self.message);
        trim(&mut self.message);
        trim(&mut self.results);
        sent
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
    let mut outbox = Outbox::default();
    let (mut inbox, mut fds) = (Vec::new(), Vec::new());
    let mut groups_seen = 0u64;
    loop {
        match conn.recv_frame_into(&mut inbox, &mut fds) {
            Ok(()) => {}
            // The pool is gone (terminated, or its process ended): nothing to report to.
            Err(Error::Eof) => return leaving(0, (conn, setup, outbox, inbox, fds)),
            Err(e) => {
                eprintln!("multiproc pool worker {}: {e}", std::process::id());
                return 1;
            }
        }
        let groups = match postcard::from_bytes::<ToWorker<'_>>(&inbox) {
            Ok(ToWorker::Batch(groups)) => groups,
            Ok(ToWorker::Stop) => {
                let code = if outbox.flush(&mut conn).is_ok() { 0 } else { 1 };
                return leaving(code, (conn, setup, outbox, inbox, fds));
            }
            Err(e) => {
                eprintln!("multiproc pool worker {}: a malformed message from the pool ({e})", std::process::id());
                return 1;
            }
        };
        let mut fds = fds.drain(..);
        for group in &groups {
            groups_seen += 1;
            let Some(pieces) = protocol::pieces(group.ends.0, group.args.0) else {
                eprintln!("multiproc pool worker {}: a malformed batch from the pool", std::process::id());
                return 1;
            };
            let entry = chunk_entry(group.entry);
            let mut last = Instant::now();
            for (i, args) in pieces.enumerate() {
                let id = group.first_id + i as u64;
                let holds = protocol::u32_at(group.fds.0, i).unwrap_or(0) as usize;
                let chunk_fds: Vec<OwnedFd> = fds.by_ref().take(holds).collect();
                setup.running.store(id, Ordering::Release);
                outbox.run(id, groups_seen, entry, args, chunk_fds);
                let now = Instant::now();
                let took = now.duration_since(last);
                last = now;
                outbox.busy += took;
                outbox.oldest.get_or_insert(now);
                // A chunk that was not tiny is reported at once: one message costs little beside
                // it, and its outcome is not held back behind a next chunk that may be long (or die).
                if (took >= SEND_AT_ONCE_AFTER || outbox.due(now)) && outbox.flush(&mut conn).is_err() {
                    return 1;
                }
            }
        }
        drop(groups);
        trim(&mut inbox);
        // Nothing waiting: send what is finished before blocking for more.
        if (outbox.due(Instant::now()) || !conn.poll(Some(Duration::ZERO)).unwrap_or(false))
            && outbox.flush(&mut conn).is_err()
        {
            return 1;
        }
    }
}

/// The worker's way out after `Stop` (or when the pool went away): returns `code` without dropping
/// `state` (its connection, shared word and buffers). The process ends right after, and its exit
/// closes and unmaps all of it anyway: dropping them first added a `munmap`, two `close`s and the
/// buffers' `free`s to every worker's way out, which `Pool::join` waits for.
fn leaving(code: i32, state: impl Sized) -> i32 {
    std::mem::forget(state);
    code
}

/// The chunk entry at `offset`.
#[allow(unsafe_code, reason = "the task's entry point comes as an offset")]
fn chunk_entry(offset: i64) -> ChunkEntry {
    // SAFETY: the offset comes from the pool that launched this worker (the only other end of this
    // connection), which runs the same executable, as the launch protocol checked.
    unsafe { task::entry_from_offset(offset) }
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
