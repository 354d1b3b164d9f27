//! The seam between the pool's front and what runs its chunks: the [`Runner`] trait and what
//! crosses it ([`Chunks`] and [`Chunk`] going in, outcomes coming out through each chunk's
//! [`Sink`]).
//!
//! The front (`Pool`'s methods, `feed.rs`, `collect.rs`) cuts a call into chunks (CPython's
//! `chunksize`), encodes their arguments, and hands them to a runner with the sink their outcomes
//! go to; it never sees a worker. Two runners implement the seam:
//! * the local runner (`pool::local`): worker processes on this machine, its scheduling policy
//!   (`local::scheduler`) apart from the transport that reaches the workers (`local::transport`);
//! * with the `cluster` feature, a broker client (`pool::cluster`) that ships chunks to node
//!   agents on other machines, whose nodes run each chunk in a local runner again.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::collect::Outcomes;
use crate::error::{Error, Result};
use crate::reduction::packed;

/// A job's chunk outcomes, as encoded results (each chunk's a packed sequence, see
/// `reduction::packed`): decoded into the job's value type here.
pub(crate) trait Sink: Send + Sync {
    fn complete(&self, index: usize, outcome: Result<Vec<u8>>);
    /// As `complete`, waking readers only at the next `flush` (for a burst of outcomes).
    fn complete_quietly(&self, index: usize, outcome: Result<Vec<u8>>);
    /// Chunks `first..` succeeded, with these encoded results, in order; readers are woken at the
    /// next `flush`. The local runner delivers a worker's reply this way, the bytes borrowed from
    /// the buffer it was received in (one call and no copy per chunk); a sink that keeps bytes
    /// copies them (the default, through `complete_quietly`).
    fn complete_run(&self, first: usize, results: &mut dyn Iterator<Item = &[u8]>) {
        for (index, bytes) in (first..).zip(results) {
            self.complete_quietly(index, Ok(bytes.to_vec()));
        }
    }
    fn flush(&self);
    fn cancelled(&self) -> bool;
    fn started(&self);
    /// The chunk must stop even if it is running (a cluster node that lost the chunk's lease):
    /// checked after [`Shared::recheck_running`]. A revoked chunk fails with [`Error::Cancelled`].
    fn revoked(&self) -> bool {
        false
    }
}

thread_local! {
    /// The chunk counts of the run being delivered (`Decoding::complete_run`).
    static RUN_COUNTS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most counts kept in [`RUN_COUNTS`] between runs.
const KEEP_COUNTS: usize = 1 << 16;

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
                let mut values = Vec::new();
                packed::decode_into_known::<T>(&bytes, &mut values).map(|_| values).map_err(result_error)
            });
            self.outcomes.deliver_quietly(index, values);
        });
        if std::panic::catch_unwind(deliver).is_err() {
            tracing::error!("decoding a pool task's result panicked");
            self.outcomes.deliver_quietly(index, Err(decoder_panicked()));
        }
    }

    fn complete_run(&self, first: usize, results: &mut dyn Iterator<Item = &[u8]>) {
        // The chunks' values go into one vector (the outcomes' own when they take the run in
        // place); a chunk that does not decode is delivered alone, with its error, between the
        // runs before and after it.
        let (mut values, mut lent) = match self.outcomes.vector_for(first) {
            Some(values) => (values, true),
            None => (Vec::new(), false),
        };
        // (A lent vector goes back to the outcomes even with no chunk of the run in it.)
        // Kept on the thread from run to run: a run of one chunk (an `apply_async`) allocates
        // only its values.
        let mut counts = RUN_COUNTS.with(|kept| std::mem::take(&mut *kept.borrow_mut()));
        counts.clear();
        let mut run_start = first;
        for (index, bytes) in (first..).zip(results) {
            let before = values.len();
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                packed::decode_into_known::<T>(bytes, &mut values).map_err(result_error)
            }));
            let failure = match decoded {
                Ok(Ok(count)) => {
                    counts.push(count);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    tracing::error!("decoding a pool task's result panicked");
                    decoder_panicked()
                }
            };
            values.truncate(before);
            if !counts.is_empty() || std::mem::take(&mut lent) {
                self.outcomes.deliver_run(run_start, &counts, std::mem::take(&mut values));
                counts.clear();
            }
            self.outcomes.deliver_quietly(index, Err(failure));
            run_start = index + 1;
        }
        if !counts.is_empty() || lent {
            self.outcomes.deliver_run(run_start, &counts, values);
        }
        if counts.capacity() <= KEEP_COUNTS {
            RUN_COUNTS.with(|kept| *kept.borrow_mut() = counts);
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

/// Consecutive chunks of one call, their arguments encoded back to back: what the pool's front
/// hands a runner (a whole `map` is one; an `imap`'s feeder hands one per batch it reads), so that
/// a runner can move many chunks at once without an object, an allocation or a copy per chunk.
pub(crate) struct Chunks {
    pub(crate) sink: Arc<dyn Sink>,
    /// The index in the job of the first chunk; the others follow.
    pub(crate) first: usize,
    /// Calls each chunk holds, but the last.
    pub(crate) tasks: usize,
    /// Calls the last chunk holds.
    pub(crate) last_tasks: usize,
    /// The chunk entry's offset.
    pub(crate) entry: i64,
    /// The chunks' packed argument tuples, back to back.
    pub(crate) args: ArgsBuffer,
    /// Where each chunk's arguments end in `args`: one per chunk.
    pub(crate) ends: Vec<usize>,
    /// Descriptors the arguments hold, in order.
    pub(crate) fds: Vec<OwnedFd>,
    /// Where each chunk's descriptors end in `fds`, one per chunk; empty when none holds any.
    pub(crate) fd_ends: Vec<usize>,
    pub(crate) timeout: Option<Duration>,
    /// Times each chunk may run again after its worker died.
    pub(crate) retries: u32,
}

impl Chunks {
    /// How many chunks.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Calls chunk `i` (counted from the first of these) holds.
    pub(crate) fn tasks_of(&self, i: usize) -> usize {
        if i + 1 == self.len() { self.last_tasks } else { self.tasks }
    }

    /// Calls chunks `range` hold.
    pub(crate) fn tasks_in(&self, range: std::ops::Range<usize>) -> usize {
        match range.is_empty() {
            true => 0,
            false => (range.len() - 1) * self.tasks + self.tasks_of(range.end - 1),
        }
    }

    /// Where chunk `i`'s arguments start and end in `args`.
    pub(crate) fn args_range(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    /// Where chunk `i`'s descriptors start and end in `fds`.
    pub(crate) fn fds_range(&self, i: usize) -> std::ops::Range<usize> {
        match self.fd_ends.is_empty() {
            true => 0..0,
            false => (if i == 0 { 0 } else { self.fd_ends[i - 1] })..self.fd_ends[i],
        }
    }

    /// One [`Chunk`] per chunk, each with a copy of its arguments (for runners that ship chunks
    /// one by one).
    pub(crate) fn split(self) -> Vec<Chunk> {
        let mut fds = self.fds.into_iter();
        let mut taken = 0;
        (0..self.ends.len())
            .map(|i| {
                let start = if i == 0 { 0 } else { self.ends[i - 1] };
                let fd_end = self.fd_ends.get(i).copied().unwrap_or(0);
                let chunk_fds = fds.by_ref().take(fd_end.saturating_sub(taken)).collect();
                taken = taken.max(fd_end);
                Chunk {
                    sink: Arc::clone(&self.sink),
                    index: self.first + i,
                    tasks: if i + 1 == self.ends.len() { self.last_tasks } else { self.tasks },
                    entry: self.entry,
                    args: self.args[start..self.ends[i]].to_vec(),
                    fds: chunk_fds,
                    timeout: self.timeout,
                    retries: self.retries,
                }
            })
            .collect()
    }

    /// `chunk` alone.
    pub(crate) fn single(chunk: Chunk) -> Chunks {
        let fd_ends = if chunk.fds.is_empty() { Vec::new() } else { vec![chunk.fds.len()] };
        Chunks {
            sink: chunk.sink,
            first: chunk.index,
            tasks: chunk.tasks,
            last_tasks: chunk.tasks,
            entry: chunk.entry,
            ends: vec![chunk.args.len()],
            args: chunk.args.into(),
            fds: chunk.fds,
            fd_ends,
            timeout: chunk.timeout,
            retries: chunk.retries,
        }
    }
}

/// The buffer of a call's encoded arguments ([`Chunks::args`]): given back to the pool's
/// [`SpareArgs`] when the runner is done with the chunks, if it came from there.
pub(crate) struct ArgsBuffer {
    bytes: Vec<u8>,
    spare: Option<Arc<SpareArgs>>,
}

impl From<Vec<u8>> for ArgsBuffer {
    fn from(bytes: Vec<u8>) -> Self {
        ArgsBuffer { bytes, spare: None }
    }
}

impl std::ops::Deref for ArgsBuffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl std::ops::DerefMut for ArgsBuffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Drop for ArgsBuffer {
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            spare.give_back(std::mem::take(&mut self.bytes));
        }
    }
}

/// Calls of fewer tasks than this encode into a buffer of their own (the spare's lock would cost
/// more than the few bytes).
pub(crate) const SPARE_ARGS_FROM: usize = 4096;

/// The arguments buffer of a pool's last large call, kept for its next one (one per pool). A `map`
/// of a hundred thousand numbers encodes about a megabyte of arguments: in a buffer freshly
/// allocated, each of its pages faults on first touch, which cost as much as the encoding, and
/// when (the allocator's trimming depends on the order of frees) the process gives the pages back
/// after each call, every call pays that again. A buffer kept is mapped already.
#[derive(Debug, Default)]
pub(crate) struct SpareArgs(std::sync::Mutex<Vec<u8>>);

impl SpareArgs {
    /// The spare buffer, emptied (an empty one when another call holds it), to be given back here
    /// when dropped.
    pub(crate) fn take(self: &Arc<Self>) -> ArgsBuffer {
        let mut bytes = std::mem::take(&mut *self.lock());
        bytes.clear();
        ArgsBuffer { bytes, spare: Some(Arc::clone(self)) }
    }

    /// Keeps `bytes` if larger than the buffer kept, and not past [`KEEP_BUFFER`](super::worker::KEEP_BUFFER).
    fn give_back(&self, bytes: Vec<u8>) {
        if bytes.capacity() > super::worker::KEEP_BUFFER {
            return;
        }
        let mut kept = self.lock();
        if bytes.capacity() > kept.capacity() {
            *kept = bytes;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The error of a result that does not decode.
fn result_error(e: packed::PackError) -> Error {
    Error::Codec { action: "decode", detail: format!("a task's result: {e}") }
}

fn decoder_panicked() -> Error {
    Error::Codec { action: "decode", detail: "a task's result: the decoder panicked".into() }
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
/// runners exist: the local runner (`pool::local`: worker processes on this machine) and, with the
/// `cluster` feature, a broker client that ships chunks to node agents on other machines
/// (`pool::cluster`), whose nodes run each chunk in a local runner again.
pub(crate) trait Runner: Send + Sync {
    /// Takes `chunks` (in order).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the pool no longer takes work, or the chunks cannot be run by
    /// this runner (for example descriptors, which cannot cross machines).
    fn submit(&self, chunks: Vec<Chunk>) -> Result<()>;
    /// Takes consecutive chunks of one call (by default one by one, through [`submit`](Self::submit)).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    fn submit_chunks(&self, chunks: Chunks) -> Result<()> {
        self.submit(chunks.split())
    }
    /// Moves to `state` unless already terminated (closing a terminated pool changes nothing).
    fn set_state(&self, state: RunState);
    fn state(&self) -> RunState;
    /// Cancels every chunk not yet started.
    fn cancel_queued(&self);
    /// Asks the runner to look for running chunks whose sink is [`Sink::revoked`].
    fn recheck_running(&self) {}
    /// Nobody will join the pool (its handle was detached): the runner's thread reaps what it
    /// started itself as it ends, instead of handing it to [`reap_stopped`](Self::reap_stopped).
    fn detach(&self) {}
    /// After the runner's thread ended: waits for the workers it told to stop and handed over,
    /// and reaps them (for `join`, and for the last handle's drop).
    fn reap_stopped(&self) {}
    /// Has the runner's own thread watch a descriptor and call `watch` when it is readable
    /// (replacing any watch set before); false when this runner cannot. See [`Watch`].
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    fn watch(&self, _watch: Arc<dyn Watch>) -> bool {
        false
    }
}

/// A descriptor a runner's thread watches for someone else (the seam a cluster node uses to
/// read its broker connection on the local scheduler's thread: a chunk read from the broker then
/// goes to a worker with no other thread to wake on the way).
///
/// [`readable`](Self::readable) runs on the runner's thread, which runs no chunk while it does:
/// it should read what is there without blocking, submit what it read, and return.
pub(crate) trait Watch: Send + Sync {
    /// The descriptor to watch now (none: nothing to watch until the next wake-up).
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>>;
    /// Called when the descriptor is readable (or broken).
    fn readable(&self);
}

/// What the pool's handles hold: the runner its chunks go to, and the counters.
pub(crate) struct Shared {
    runner: Arc<dyn Runner>,
    pub(crate) stats: Arc<Stats>,
    /// Where calls encode their arguments.
    pub(crate) spare_args: Arc<SpareArgs>,
}

impl Shared {
    pub(crate) fn new(runner: Arc<dyn Runner>, stats: Arc<Stats>) -> Self {
        Shared { runner, stats, spare_args: Arc::default() }
    }

    /// Queues `chunks` (in order).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn submit(&self, chunks: impl IntoIterator<Item = Chunk>) -> Result<()> {
        self.runner.submit(chunks.into_iter().collect())
    }

    /// Queues consecutive chunks of one call.
    pub(crate) fn submit_chunks(&self, chunks: Chunks) -> Result<()> {
        self.runner.submit_chunks(chunks)
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

    /// Nobody will join the pool: see [`Runner::detach`].
    pub(crate) fn detach(&self) {
        self.runner.detach();
    }

    /// Reaps the workers the runner's ended thread handed over: see [`Runner::reap_stopped`].
    pub(crate) fn reap_stopped(&self) {
        self.runner.reap_stopped();
    }

    /// Stops the running chunks whose sink is revoked (their workers are killed and replaced).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn recheck_running(&self) {
        self.runner.recheck_running();
    }

    /// Has the runner's thread watch a descriptor (see [`Watch`]); false when it cannot.
    #[cfg(feature = "cluster")]
    pub(crate) fn watch(&self, watch: Arc<dyn Watch>) -> bool {
        self.runner.watch(watch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calls_arguments_buffer_goes_back_to_the_spare() {
        let spare = Arc::new(SpareArgs::default());
        let mut first = spare.take();
        first.extend_from_slice(&[1; 1000]);
        let at = first.as_ptr();
        // Another call while the first holds the spare: a buffer of its own, kept if larger.
        let mut second = spare.take();
        second.push(2);
        drop(first);
        drop(second);
        let again = spare.take();
        assert!(again.is_empty() && again.capacity() >= 1000);
        assert_eq!(again.as_ptr(), at, "the larger buffer was kept, not the later one");
        drop(again);
        // A buffer past KEEP_BUFFER is freed, not kept; a buffer from elsewhere goes nowhere.
        let mut huge = spare.take();
        huge.reserve(super::super::worker::KEEP_BUFFER + 1);
        drop(huge);
        assert!(spare.take().capacity() < super::super::worker::KEEP_BUFFER);
        drop(ArgsBuffer::from(vec![0u8; 1 << 20]));
        assert!(spare.take().capacity() < 1 << 20);
    }
}
