//! Lazy input for `imap` and `imap_unordered`: a feeder thread reads the input as the results are
//! consumed, with a bounded read-ahead, and hands each chunk to the pool as soon as it is read.
//!
//! CPython's `imap` returns at once and its task handler thread reads the input in the
//! background, so an endless or slow iterator (a generator, lines of a socket,
//! `itertools.count()`) yields its first result as soon as that is computed. The feeder does the
//! same, with one difference that keeps memory bounded: it stays at most a *read-ahead* of chunks
//! ahead of the reader ([`ReadAhead`]: a number of chunks, and a byte budget of encoded
//! arguments), where CPython's handler reads an endless input until memory runs out.
//!
//! Why a thread, and not the caller's thread on `next`: the input is user code that may block (a
//! socket whose next line comes only after the client got the previous answer). Read on `next`,
//! it would hold back results already computed, and a request/response protocol would deadlock;
//! on its own thread it never delays a result. Hence the input iterator must be `Send + 'static`.
//!
//! The feeder is transport-neutral: it reads chunks and calls a `submit` function, so any pool
//! front (processes, threads, or a pool across machines) gets the same laziness.
//!
//! Lifetimes of a feed:
//! * the reader ([`Imap`](super::Imap)) is dropped: the feeder stops reading (tasks already handed
//!   out still run; their values are dropped), as dropping a lazy Rust iterator stops its work;
//! * the pool is closed ([`Gate::close`]): as in CPython, every imap already started still reads
//!   its input to the end and runs every task, and the pool's `join` waits for that; from then on
//!   the feeder no longer waits for the reader, so an unread imap cannot block `join`;
//! * the pool is terminated, or refuses the chunk: the feeder yields the error in the chunk's
//!   place and stops;
//! * the input panics: the panic's message is yielded in its place (as CPython's `imap` raises
//!   the iterable's exception from `next`), and the feed ends.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::collect::{Outcomes, Stream};
use crate::error::{Error, Result};

/// Chunks a feed keeps in flight at most by default, per worker.
const CHUNKS_PER_WORKER: usize = 512;
/// Chunks a feed keeps in flight at most by default, whatever the pool's size.
const MIN_CHUNKS: usize = 1024;
/// Encoded argument bytes a feed keeps in flight at most (about; measured on average).
const MAX_BYTES: usize = 64 << 20;
/// Most chunks read before they are handed to the pool together.
const BATCH_CHUNKS: usize = 256;
/// Longest chunks read wait to be handed to the pool together.
const BATCH_TIME: Duration = Duration::from_millis(1);

/// How far a feed may read ahead of its reader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadAhead {
    /// Chunks read and not yet taken by the reader.
    pub(crate) chunks: usize,
    /// Encoded bytes of those chunks (checked on their average size).
    pub(crate) bytes: usize,
}

impl ReadAhead {
    /// The default for a pool of `workers`, or `chunks` if the caller chose (CPython 3.14's
    /// `Executor.map(buffersize=)`).
    pub(crate) fn new(workers: usize, chunks: Option<usize>) -> ReadAhead {
        match chunks {
            Some(chunks) => ReadAhead { chunks: chunks.max(1), bytes: usize::MAX },
            None => ReadAhead { chunks: (CHUNKS_PER_WORKER * workers).max(MIN_CHUNKS), bytes: MAX_BYTES },
        }
    }

    /// The most chunks in flight, given the average encoded size of a chunk so far.
    fn limit(&self, average_bytes: usize) -> usize {
        self.bytes.checked_div(average_bytes).map_or(self.chunks, |chunks| chunks.clamp(1, self.chunks))
    }
}

/// Whether the pool takes new work, and the feeds still reading: closing a pool waits for its
/// feeds before the pool itself is closed (CPython runs every task of an imap started before
/// `close`).
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    closing: bool,
    /// The open feeds, each with what wakes it.
    feeds: Vec<(u64, Arc<dyn Fn() + Send + Sync>)>,
    next_id: u64,
    /// Closes the pool itself, once closing and no feed is left.
    close_pool: Option<Box<dyn FnOnce() + Send>>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether [`close`](Self::close) was called: the pool takes no new calls.
    pub(crate) fn closing(&self) -> bool {
        self.lock().closing
    }

    /// Fails if the pool was closed: new calls are refused from then on.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] once [`close`](Self::close) was called.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closing() {
            return Err(Error::InvalidState("Pool not running: it was closed or terminated".into()));
        }
        Ok(())
    }

    /// No new calls; `close_pool` runs now if no feed is reading, else when the last one ends.
    /// Open feeds stop waiting for their readers.
    pub(crate) fn close(&self, close_pool: impl FnOnce() + Send + 'static) {
        let mut state = self.lock();
        if state.closing {
            return;
        }
        state.closing = true;
        if state.feeds.is_empty() {
            drop(state);
            close_pool();
            return;
        }
        state.close_pool = Some(Box::new(close_pool));
        let wakers: Vec<_> = state.feeds.iter().map(|(_, wake)| Arc::clone(wake)).collect();
        drop(state);
        for wake in wakers {
            wake();
        }
    }

    /// Registers a feed woken by `wake` when the pool closes.
    fn open(self: &Arc<Self>, wake: Arc<dyn Fn() + Send + Sync>) -> Result<Ticket> {
        let mut state = self.lock();
        if state.closing {
            return Err(Error::InvalidState("Pool not running: it was closed or terminated".into()));
        }
        state.next_id += 1;
        let id = state.next_id;
        state.feeds.push((id, wake));
        Ok(Ticket { gate: Arc::clone(self), id })
    }
}

/// An open feed; closes the pool on drop if it was the last one a closing pool waited for.
struct Ticket {
    gate: Arc<Gate>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.feeds.retain(|(id, _)| *id != self.id);
        let close_pool = if state.feeds.is_empty() { state.close_pool.take() } else { None };
        drop(state);
        if let Some(close_pool) = close_pool {
            close_pool();
        }
    }
}

/// Hands chunks `first..` (their items) to the pool; returns their encoded size in bytes (0 if
/// unknown). A chunk whose items cannot travel is failed by the function itself; `Err` means the
/// pool refused them all (terminated): the feed ends.
pub(crate) type Submit<A> = Box<dyn FnMut(usize, Vec<Vec<A>>) -> Result<usize> + Send>;

/// Starts a feeder thread reading `items` in chunks of `chunksize` into `stream`.
///
/// # Errors
///
/// [`Error::InvalidState`] if the pool is closing; [`Error::Io`] if the thread cannot start.
pub(crate) fn start<A, T, I>(
    gate: &Arc<Gate>,
    items: I,
    chunksize: usize,
    read_ahead: ReadAhead,
    stream: Arc<Stream<T>>,
    submit: Submit<A>,
) -> Result<()>
where
    I: Iterator<Item = A> + Send + 'static,
    A: 'static,
    T: Send + 'static,
{
    let waker = Arc::clone(&stream);
    let ticket = gate.open(Arc::new(move || waker.wake_feeder()))?;
    let gate = Arc::clone(gate);
    let feeder = Feeder { items, chunksize: chunksize.max(1), read_ahead, stream, submit, gate };
    std::thread::Builder::new()
        .name("multiproc-imap-feeder".into())
        .spawn(move || {
            feeder.run();
            drop(ticket);
        })
        .map_err(|e| Error::io("start the imap feeder thread", e))?;
    Ok(())
}

struct Feeder<A, T, I> {
    items: I,
    chunksize: usize,
    read_ahead: ReadAhead,
    stream: Arc<Stream<T>>,
    submit: Submit<A>,
    gate: Arc<Gate>,
}

/// How the input stood after a chunk was read.
enum End {
    /// More may come.
    Open,
    /// The input ended.
    Ended,
    /// The input panicked, with this message.
    Panicked(String),
}

impl<A, T: Send, I: Iterator<Item = A>> Feeder<A, T, I> {
    fn run(mut self) {
        // Chunks handed to the pool, and those read but not yet handed over (see `must_flush`).
        let mut index = 0;
        let mut batch: Vec<Vec<A>> = Vec::new();
        let mut batch_since = Instant::now();
        let mut bytes_sent = 0usize;
        loop {
            let average = bytes_sent.checked_div(index).unwrap_or(0);
            let limit = self.read_ahead.limit(average);
            let room = self.stream.wait_for_room(index + batch.len(), limit, batch.is_empty(), || self.gate.closing());
            match room {
                None => return self.stream.end(index), // the reader is gone
                Some(false) => {}                      // no room: the batch is handed over below
                Some(true) => {
                    let (chunk, end) = self.read_chunk();
                    if !chunk.is_empty() {
                        if batch.is_empty() {
                            batch_since = Instant::now();
                        }
                        self.stream.reading(chunk.len());
                        batch.push(chunk);
                    }
                    if !matches!(end, End::Open) {
                        if let Err(e) = self.flush(&mut index, &mut batch, &mut bytes_sent) {
                            self.stream.deliver(index, Err(e));
                            return self.stream.end(index + 1);
                        }
                        if let End::Panicked(panic) = end {
                            let message = format!("the input iterator of imap panicked: {panic}");
                            self.stream.deliver(index, Err(Error::task_failed(message)));
                            index += 1;
                        }
                        return self.stream.end(index);
                    }
                    if !self.must_flush(&batch, batch_since) {
                        continue;
                    }
                }
            }
            if let Err(e) = self.flush(&mut index, &mut batch, &mut bytes_sent) {
                self.stream.deliver(index, Err(e));
                return self.stream.end(index + 1);
            }
        }
    }

    /// Whether the chunks read so far go to the pool now. They are held back only while the input
    /// promises more items at once (its `size_hint`, as a range or a vector does): a read that
    /// may block (a channel, a socket, a generator) never waits with chunks in hand. A batch is
    /// handed over after [`BATCH_CHUNKS`] chunks or [`BATCH_TIME`] (a slow `map` over a range).
    fn must_flush(&self, batch: &[Vec<A>], since: Instant) -> bool {
        batch.len() >= BATCH_CHUNKS || self.items.size_hint().0 < self.chunksize || since.elapsed() >= BATCH_TIME
    }

    /// Hands the batch to the pool. `Err` if the pool refused it: the feed ends.
    fn flush(&mut self, index: &mut usize, batch: &mut Vec<Vec<A>>, bytes_sent: &mut usize) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let chunks = batch.len();
        let bytes = (self.submit)(*index, std::mem::take(batch))?;
        *index += chunks;
        *bytes_sent = bytes_sent.saturating_add(bytes);
        Ok(())
    }

    /// Reads up to a chunk of items; a panic in the input ends it.
    fn read_chunk(&mut self) -> (Vec<A>, End) {
        let mut chunk = Vec::with_capacity(self.chunksize.min(1024));
        while chunk.len() < self.chunksize {
            match catch_unwind(AssertUnwindSafe(|| self.items.next())) {
                Ok(Some(item)) => chunk.push(item),
                Ok(None) => return (chunk, End::Ended),
                Err(payload) => return (chunk, End::Panicked(super::task::payload_text(payload.as_ref()))),
            }
        }
        (chunk, End::Open)
    }
}
