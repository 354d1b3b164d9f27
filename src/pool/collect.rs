//! Where the outcomes of a job's chunks go: one value ([`One`]), a whole `map` ([`Collect`]), or a
//! stream read by [`Imap`] in order or as they finish. Shared by the process and thread pools.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::progress::Progress;
use super::result::{KeepAlive, Promise};
use crate::deadline::Deadline;
use crate::error::{Error, Result};

/// Receives the outcome of each chunk of a job, by chunk index.
pub(crate) trait Outcomes<T>: Send + Sync {
    /// Chunk `index` finished with these values, or failed.
    fn deliver(&self, index: usize, outcome: Result<Vec<T>>);
    /// Whether nobody wants the outcomes any more (a cancelled result): skip the work.
    fn cancelled(&self) -> bool {
        false
    }
    /// Chunk work started; a result can no longer be cancelled.
    fn started(&self) {}
    /// As [`deliver`](Self::deliver), but a waiting reader may be woken only at the next
    /// [`flush`](Self::flush): the scheduler delivers a worker's outcomes in bursts.
    fn deliver_quietly(&self, index: usize, outcome: Result<Vec<T>>) {
        self.deliver(index, outcome);
    }
    /// Chunks `first..first + counts.len()` finished with `values`, `counts[i]` of them for chunk
    /// `first + i`, in order; as [`deliver_quietly`](Self::deliver_quietly), readers may be woken
    /// only at the next [`flush`](Self::flush). The scheduler delivers a worker's reply this way:
    /// one vector for many chunks (the default splits it).
    fn deliver_run(&self, first: usize, counts: &[usize], values: Vec<T>) {
        let mut values = values.into_iter();
        for (index, &count) in (first..).zip(counts) {
            self.deliver_quietly(index, Ok(values.by_ref().take(count).collect()));
        }
    }
    /// Wakes readers for what [`deliver_quietly`](Self::deliver_quietly) delivered.
    fn flush(&self) {}
    /// A vector for the values of the run of chunks starting at `first` to be appended to, before
    /// that run is delivered with it ([`deliver_run`](Self::deliver_run)): where the outcomes are
    /// kept in one vector in chunk order and `first` is the next chunk due, that vector itself
    /// (holding the chunks before `first`), so that the run's values are decoded into place
    /// rather than into a vector of their own and copied; `None` otherwise.
    fn vector_for(&self, _first: usize) -> Option<Vec<T>> {
        None
    }
}

fn lock<S>(mutex: &Mutex<S>) -> MutexGuard<'_, S> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A single task's value (`apply_async`, `submit`).
pub(crate) struct One<T> {
    pub(crate) promise: Promise<T>,
}

impl<T: Send> Outcomes<T> for One<T> {
    fn deliver(&self, _index: usize, outcome: Result<Vec<T>>) {
        let value = outcome.and_then(|values| {
            values.into_iter().next().ok_or_else(|| Error::Protocol("a worker returned no value for a task".into()))
        });
        self.promise.fulfil(value);
    }

    fn deliver_run(&self, first: usize, counts: &[usize], values: Vec<T>) {
        // One chunk of one task: its value, without a vector of its own.
        match counts {
            [_] => self.deliver_value(values),
            _ => {
                let mut values = values.into_iter();
                for (index, &count) in (first..).zip(counts) {
                    self.deliver(index, Ok(values.by_ref().take(count).collect()));
                }
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.promise.cancelled()
    }

    fn started(&self) {
        self.promise.mark_started();
    }
}

impl<T: Send> One<T> {
    fn deliver_value(&self, values: Vec<T>) {
        let value = values.into_iter().next();
        self.promise.fulfil(value.ok_or_else(|| Error::Protocol("a worker returned no value for a task".into())));
    }
}

struct CollectState<T> {
    /// The values of chunks `0..in_order`, in order: runs that come in order are appended here
    /// (or decoded into place, see [`Outcomes::vector_for`]).
    values: Vec<T>,
    in_order: usize,
    /// `values` is lent out for the next run to be decoded onto.
    lent: bool,
    /// Runs of consecutive chunks' values that came out of order, by their first chunk's index:
    /// their number of chunks and their values.
    blocks: BTreeMap<usize, (usize, Vec<T>)>,
    remaining: usize,
    error: Option<Error>,
}

/// Every value of a `map`, in input order; fulfilled when the last chunk is in. A failed chunk
/// makes the whole map fail, after every chunk has finished (CPython bpo-23992: no fail-fast).
pub(crate) struct Collect<T> {
    promise: Promise<Vec<T>>,
    len: usize,
    chunks: usize,
    state: Mutex<CollectState<T>>,
    progress: Progress,
}

impl<T> Collect<T> {
    /// The blocks' values in chunk order, checked complete: every chunk once, every value there.
    fn concatenate(&self, mut blocks: Vec<(usize, usize, Vec<T>)>) -> Result<Vec<T>> {
        let short = || Error::Protocol("a worker returned fewer values than its chunk had tasks".into());
        blocks.sort_unstable_by_key(|&(first, _, _)| first);
        let mut next = 0;
        for &(first, chunks, _) in &blocks {
            if first != next {
                return Err(short());
            }
            next += chunks;
        }
        if next != self.chunks || blocks.iter().map(|(_, _, values)| values.len()).sum::<usize>() != self.len {
            return Err(short());
        }
        let mut blocks = blocks.into_iter().map(|(_, _, values)| values);
        let mut values = blocks.next().unwrap_or_default();
        values.reserve(self.len - values.len());
        for block in blocks {
            values.extend(block);
        }
        Ok(values)
    }

    pub(crate) fn new(promise: Promise<Vec<T>>, len: usize, chunksize: usize, progress: Progress) -> Self {
        let chunks = len.div_ceil(chunksize.max(1));
        let state = CollectState {
            values: Vec::new(),
            in_order: 0,
            lent: false,
            blocks: BTreeMap::new(),
            remaining: chunks,
            error: None,
        };
        let collect = Collect { promise, len, chunks, state: Mutex::new(state), progress };
        if chunks == 0 {
            collect.promise.fulfil(Ok(Vec::new()));
        }
        collect
    }

    /// Keeps what chunks `first..first + chunks` delivered; fulfils the promise after the last.
    fn keep(&self, first: usize, chunks: usize, outcome: Result<Vec<T>>) {
        let mut state = lock(&self.state);
        match outcome {
            // The vector lent for this run, back with the run's values after the chunks before.
            Ok(values) if state.lent && first == state.in_order => {
                self.progress.advance(values.len().saturating_sub(state.values.len()));
                state.lent = false;
                state.values = values;
                state.in_order += chunks;
                Self::take_blocks_in_order(&mut state);
            }
            Ok(values) if chunks == 0 && values.is_empty() => {}
            Ok(values) => {
                self.progress.advance(values.len());
                if !state.lent && first == state.in_order {
                    state.values.extend(values);
                    state.in_order += chunks;
                    Self::take_blocks_in_order(&mut state);
                } else {
                    match state.blocks.entry(first) {
                        Entry::Vacant(slot) => {
                            slot.insert((chunks, values));
                        }
                        // The same chunk twice: the protocol's broken promise, reported below.
                        Entry::Occupied(_) => {
                            state
                                .error
                                .get_or_insert(Error::Protocol(format!("chunk {first} of a map was delivered twice")));
                        }
                    }
                }
            }
            Err(e) => {
                state.error.get_or_insert(e);
            }
        }
        state.remaining = state.remaining.saturating_sub(chunks);
        if state.remaining > 0 {
            return;
        }
        self.progress.finish();
        let blocks = std::mem::take(&mut state.blocks);
        let (values, in_order) = (std::mem::take(&mut state.values), state.in_order);
        let error = state.error.take();
        drop(state);
        let outcome = match error {
            Some(e) => Err(e),
            None if blocks.is_empty() && in_order == self.chunks && values.len() == self.len => Ok(values),
            None => {
                let before = (in_order > 0).then_some((0, in_order, values));
                self.concatenate(
                    before.into_iter().chain(blocks.into_iter().map(|(first, (n, v))| (first, n, v))).collect(),
                )
            }
        };
        self.promise.fulfil(outcome);
    }

    /// Appends the blocks that now follow the values in order.
    fn take_blocks_in_order(state: &mut CollectState<T>) {
        while let Some((chunks, values)) = state.blocks.remove(&state.in_order) {
            state.values.extend(values);
            state.in_order += chunks;
        }
    }
}

impl<T: Send> Outcomes<T> for Collect<T> {
    fn deliver(&self, index: usize, outcome: Result<Vec<T>>) {
        self.keep(index, 1, outcome);
    }

    fn deliver_run(&self, first: usize, counts: &[usize], values: Vec<T>) {
        self.keep(first, counts.len(), Ok(values));
    }

    fn vector_for(&self, first: usize) -> Option<Vec<T>> {
        let mut state = lock(&self.state);
        if state.lent || first != state.in_order || state.error.is_some() {
            return None;
        }
        state.lent = true;
        let mut values = std::mem::take(&mut state.values);
        values.reserve_exact(self.len - values.len().min(self.len));
        Some(values)
    }

    fn cancelled(&self) -> bool {
        self.promise.cancelled()
    }

    fn started(&self) {
        self.promise.mark_started();
    }
}

/// The values of one or more consecutive chunks (how many, and their outcome).
type Delivered<T> = (usize, Result<Vec<T>>);

struct StreamState<T> {
    /// Finished runs of chunks not yet read: by their first chunk's index (ordered) or in finishing
    /// order.
    by_index: BTreeMap<usize, Delivered<T>>,
    in_order: VecDeque<Delivered<T>>,
    /// Chunks taken by the reader (for an ordered stream, the index of the next one).
    next: usize,
    /// Chunks delivered.
    delivered: usize,
    /// How many chunks there are, once the input has been read to its end.
    total: Option<usize>,
    /// Readers blocked waiting (a notification costs a system call: only made for them).
    waiters: usize,
    /// The reader is gone: the feeder stops.
    abandoned: bool,
    /// The feeder waits for the reader to take chunks.
    feeder_waiting: bool,
}

/// The chunks of an `imap`, readable as they finish; the input's feeder (see `feed.rs`) keeps a
/// bounded number of them ahead of the reader.
pub(crate) struct Stream<T> {
    ordered: bool,
    state: Mutex<StreamState<T>>,
    ready: Condvar,
    /// The feeder waits here for room.
    room: Condvar,
    progress: Progress,
    /// The number of items was not known: the progress bar grows as they are read.
    grow_progress: bool,
}

impl<T> Stream<T> {
    /// A stream of chunks, `ordered` or in finishing order, over `items` items if known.
    pub(crate) fn new(ordered: bool, items: Option<usize>, progress: bool) -> Self {
        let state = StreamState {
            by_index: BTreeMap::new(),
            in_order: VecDeque::new(),
            next: 0,
            delivered: 0,
            total: None,
            waiters: 0,
            abandoned: false,
            feeder_waiting: false,
        };
        Stream {
            ordered,
            state: Mutex::new(state),
            ready: Condvar::new(),
            room: Condvar::new(),
            progress: Progress::new(items.unwrap_or(0), progress),
            grow_progress: items.is_none(),
        }
    }

    /// For the feeder: whether fewer than `limit` of the `submitted` chunks are untaken (or
    /// `closing()`, when the feeder no longer waits for the reader); if not and `wait`, waits
    /// until they are. `None` if the reader is gone.
    pub(crate) fn wait_for_room(
        &self,
        submitted: usize,
        limit: usize,
        wait: bool,
        closing: impl Fn() -> bool,
    ) -> Option<bool> {
        let mut state = lock(&self.state);
        loop {
            if state.abandoned {
                return None;
            }
            if submitted.saturating_sub(state.next) < limit || closing() {
                return Some(true);
            }
            if !wait {
                return Some(false);
            }
            state.feeder_waiting = true;
            state = self.room.wait(state).unwrap_or_else(|p| p.into_inner());
            state.feeder_waiting = false;
        }
    }

    /// Wakes the feeder if it waits for room (the pool closed, or chunks were taken).
    pub(crate) fn wake_feeder(&self) {
        if lock(&self.state).feeder_waiting {
            self.room.notify_all();
        }
    }

    /// For the feeder: a chunk of `items` items was read.
    pub(crate) fn reading(&self, items: usize) {
        if self.grow_progress {
            self.progress.grow(items);
        }
    }

    /// For the feeder: the input ended after `chunks` chunks.
    pub(crate) fn end(&self, chunks: usize) {
        let mut state = lock(&self.state);
        state.total = Some(chunks);
        let finished = state.delivered >= chunks;
        let waiters = state.waiters;
        drop(state);
        if finished {
            self.progress.finish();
        }
        if waiters > 0 {
            self.ready.notify_all();
        }
    }

    /// The reader is gone: the feeder stops reading.
    fn abandon(&self) {
        let mut state = lock(&self.state);
        state.abandoned = true;
        let waiting = state.feeder_waiting;
        drop(state);
        if waiting {
            self.room.notify_all();
        }
    }
}

impl<T: Send> Outcomes<T> for Stream<T> {
    fn deliver(&self, index: usize, outcome: Result<Vec<T>>) {
        self.deliver_quietly(index, outcome);
        self.flush();
    }

    fn flush(&self) {
        if lock(&self.state).waiters > 0 {
            self.ready.notify_all();
        }
    }

    fn deliver_quietly(&self, index: usize, outcome: Result<Vec<T>>) {
        self.keep(index, 1, outcome);
    }

    fn deliver_run(&self, first: usize, counts: &[usize], values: Vec<T>) {
        self.keep(first, counts.len(), Ok(values));
    }
}

impl<T> Stream<T> {
    /// Keeps what chunks `first..first + chunks` delivered, for the reader.
    fn keep(&self, first: usize, chunks: usize, outcome: Result<Vec<T>>) {
        if let Ok(values) = &outcome {
            self.progress.advance(values.len());
        }
        let mut state = lock(&self.state);
        if self.ordered {
            state.by_index.insert(first, (chunks, outcome));
        } else {
            state.in_order.push_back((chunks, outcome));
        }
        state.delivered += chunks;
        if state.total == Some(state.delivered) {
            self.progress.finish();
        }
    }
}

/// The results of [`Pool::imap`](super::Pool::imap) and
/// [`imap_unordered`](super::Pool::imap_unordered): an iterator that yields each task's value as
/// soon as it (and, for `imap`, every task before it) has finished (CPython `IMapIterator`).
///
/// The input is read lazily, by a feeder thread, a bounded number of chunks ahead of this
/// iterator (see [`Pool::imap`](super::Pool::imap)). A failed task yields its error in its place
/// and the iteration goes on. The iterator holds its pool: the workers run while it lives.
/// Dropping it stops reading the input (tasks already handed out still run).
///
/// # Examples
///
/// ```
/// use multiproc::pool::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = Pool::new(2)?;
/// // An endless input: only what is consumed (plus a bounded read-ahead) is computed.
/// let mut squares = pool.imap(square, 0..)?;
/// assert_eq!(squares.next().transpose()?, Some(0));
/// let next_three: Vec<u64> = squares.by_ref().take(3).collect::<multiproc::Result<_>>()?;
/// assert_eq!(next_three, [1, 4, 9]);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "IMapIterator")]
#[doc(alias = "IMapUnorderedIterator")]
pub struct Imap<T> {
    stream: Arc<Stream<T>>,
    current: std::vec::IntoIter<T>,
    /// Runs of chunks taken from the stream in one go, not yet yielded.
    taken: VecDeque<Delivered<T>>,
    /// Chunks whose outcome was yielded so far (the error of a failed chunk is yielded once).
    chunks_read: usize,
    /// The pool, kept running while this iterator lives.
    _pool: Option<KeepAlive>,
}

impl<T> Imap<T> {
    pub(crate) fn new(stream: Arc<Stream<T>>, pool: Option<KeepAlive>) -> Self {
        Imap { stream, current: Vec::new().into_iter(), taken: VecDeque::new(), chunks_read: 0, _pool: pool }
    }

    /// The next value, waiting up to `timeout` for it (CPython `next(timeout)`): `None` at the
    /// end.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if it did not come in time (the iterator stays usable); a failed task's
    /// error.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<T>> {
        self.next_until(Deadline::after(Some(timeout)))
    }

    fn next_until(&mut self, deadline: Deadline) -> Option<Result<T>> {
        loop {
            if let Some(value) = self.current.next() {
                return Some(Ok(value));
            }
            match self.wait_chunk(deadline)? {
                (chunks, Ok(values)) => {
                    self.chunks_read += chunks;
                    self.current = values.into_iter();
                }
                (_, Err(e @ Error::Timeout(_))) => return Some(Err(e)),
                (chunks, Err(e)) => {
                    self.chunks_read += chunks;
                    return Some(Err(e));
                }
            }
        }
    }

    /// The next run of chunks and its outcome, `None` at the end (a timeout is an outcome of no
    /// chunk); takes every run that is ready in one lock (the scheduler delivers them in bursts),
    /// which makes room for the feeder.
    fn wait_chunk(&mut self, deadline: Deadline) -> Option<Delivered<T>> {
        if let Some(outcome) = self.taken.pop_front() {
            return Some(outcome);
        }
        let stream = &self.stream;
        let mut state = lock(&stream.state);
        loop {
            let before = state.next;
            if stream.ordered {
                loop {
                    let next = state.next;
                    let Some(run) = state.by_index.remove(&next) else { break };
                    state.next += run.0;
                    self.taken.push_back(run);
                }
            } else {
                let ready: usize = state.in_order.iter().map(|(chunks, _)| chunks).sum();
                state.next += ready;
                self.taken.append(&mut state.in_order);
            }
            if let Some(outcome) = self.taken.pop_front() {
                if state.next > before && state.feeder_waiting {
                    stream.room.notify_all();
                }
                return Some(outcome);
            }
            if state.total == Some(state.next) {
                return None;
            }
            let left = deadline.left();
            if left == Some(Duration::ZERO) {
                return Some((0, Err(deadline.timeout_error())));
            }
            state.waiters += 1;
            state = match left {
                None => stream.ready.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(left) => stream.ready.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0,
            };
            state.waiters -= 1;
        }
    }
}

impl<T> Iterator for Imap<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        self.next_until(Deadline::NONE)
    }
}

impl<T> Drop for Imap<T> {
    fn drop(&mut self) {
        self.stream.abandon();
    }
}

impl<T> std::fmt::Debug for Imap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap").field("chunks_read", &self.chunks_read).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::result;

    fn map_of(len: usize, chunksize: usize) -> (result::AsyncResult<Vec<u32>>, Collect<u32>) {
        let (result, promise) = result::promise(None);
        (result, Collect::new(promise, len, chunksize, Progress::new(len, false)))
    }

    #[test]
    fn a_map_has_its_values_in_order_however_its_runs_come() {
        // Six chunks of two values, the last of one.
        let (result, collect) = map_of(11, 2);
        collect.deliver_run(2, &[2, 2], vec![4, 5, 6, 7]);
        assert!(collect.vector_for(2).is_none(), "chunk 2 is not the next due");
        // The next run due is decoded into the map's own vector, lent once at a time.
        let mut lent = collect.vector_for(0).unwrap();
        assert!(lent.capacity() >= 11);
        assert!(collect.vector_for(0).is_none());
        lent.extend([0, 1]);
        collect.deliver_run(0, &[2], lent);
        // Lent and given back without a chunk (its first chunk did not decode).
        let lent = collect.vector_for(1).unwrap();
        assert_eq!(lent, [0, 1]);
        collect.deliver_run(1, &[], lent);
        let mut lent = collect.vector_for(1).unwrap();
        lent.extend([2, 3]);
        collect.deliver_run(1, &[2], lent);
        collect.deliver(5, Ok(vec![10]));
        collect.deliver(4, Ok(vec![8, 9]));
        assert_eq!(result.get().unwrap(), (0..11).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_chunk_fails_the_map_after_the_last() {
        let (result, collect) = map_of(4, 1);
        let mut lent = collect.vector_for(0).unwrap();
        lent.push(0);
        collect.deliver_run(0, &[1], lent);
        collect.deliver(1, Err(Error::Protocol("chunk 1".into())));
        assert!(collect.vector_for(2).is_none(), "no vector lent once failed");
        collect.deliver_run(2, &[1, 1], vec![2, 3]);
        assert!(matches!(result.get(), Err(Error::Protocol(m)) if m == "chunk 1"));
        // Short runs are caught, in order or not.
        let (result, collect) = map_of(4, 2);
        collect.deliver_run(0, &[2], vec![0, 1, 2]);
        collect.deliver(1, Ok(vec![3, 4]));
        assert!(matches!(result.get(), Err(Error::Protocol(_))));
    }
}
