//! The local transport: how chunks reach a worker process on this machine, how their outcomes
//! come back, and how the scheduler learns that a worker ended. The scheduler (`scheduler.rs`)
//! sees none of the mechanisms below, only [`Link`]s it sends groups of chunks on and reads
//! replies from, and [`wait`].
//!
//! A worker is a child process (the pool's start method) with:
//! * one end of a socket pair ([`socket_pipe`](crate::socket_pipe): `SOCK_SEQPACKET`, so a
//!   message of up to 64 KiB is one record, one system call each way), carrying the protocol's
//!   messages (`protocol.rs`) and the descriptors that arguments hold;
//! * a shared-memory word where it writes the id of the chunk it starts (no system call), read
//!   when it dies;
//! * its pidfd (the process's sentinel), readable once it ended, however it ended.
//!
//! The scheduler's thread must never wait for one worker while others need it, so a batch is
//! sent without blocking: what the socket does not take now stays in the link and goes out when
//! [`wait`] reports room (the scheduler reads replies meanwhile, so a worker blocked sending its
//! results to a parent blocked sending it tasks cannot happen). Both directions keep their
//! buffers from message to message: nothing is allocated per batch or per reply (but the list
//! of pieces of a batch that holds large arguments). A group's arguments of 16 KiB or more are
//! not copied into the batch's message: the records gather them from the call's buffer (see
//! `InPlace`).

use std::io::{Read, Write};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::super::protocol::{Blob, Bytes, FromWorker, ToWorker};
use super::super::scheduler::Chunks;
use super::super::worker::{self, InitCall, WorkerSetup};
use crate::connection::{Connection, record};
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::process::Process;
use crate::process::target::Job;
use crate::shm::Shared as SharedMemory;
use crate::sys::{self, Interest};
use crate::{Handle, sys::dup_cloexec};

/// Makes a worker's initializer call (its entry and arguments) for each worker started.
pub(crate) type Initializer = Box<dyn Fn() -> Result<Job> + Send + Sync>;

/// Consecutive chunks of one call to send as one group: `chunks.ends[range]`, the first with id
/// `first_id`.
pub(super) struct Outgoing<'a> {
    pub(super) first_id: u64,
    pub(super) chunks: &'a Arc<Chunks>,
    pub(super) range: Range<usize>,
}

/// A group's arguments of at least this many bytes leave from the call's buffer, not copied into
/// the batch's message first (a `map` of 100 000 numbers in chunks of 12 500 copied 800 KB per
/// call on the scheduler's thread, a sixth of its work).
const IN_PLACE_FROM: usize = 16 * 1024;

/// Arguments sent from where they are: `chunks.args[range]`, inserted in the frame after byte
/// `at` of the outbox.
struct InPlace {
    at: usize,
    chunks: Arc<Chunks>,
    range: Range<usize>,
}

/// A frame not yet sent whole.
struct Sending {
    /// The frame starts at `start` in the link's outbox; `sent` bytes of it are out.
    start: usize,
    sent: usize,
    /// Copies of the descriptors to attach to its first record, if that is not out yet.
    fds: Vec<OwnedFd>,
}

/// A worker's process, killed and reaped if dropped while it runs: a worker never outlives its
/// pool's handles.
pub(super) struct WorkerProcess(Process);

/// The scheduler's end of one worker.
pub(super) struct Link {
    process: WorkerProcess,
    pid: i32,
    running: SharedMemory<AtomicU64>,
    conn: Connection,
    /// The connection still works (false after end of file or an error).
    open: bool,
    /// The frame being sent (header room and payload), kept between batches.
    outbox: Vec<u8>,
    /// The pieces of the frame's payload that are not in `outbox`, in order.
    in_place: Vec<InPlace>,
    sending: Option<Sending>,
    /// A `Stop` goes out once the frame being sent is.
    stop_queued: bool,
    /// Scratch for a batch's group headers.
    ends: Vec<u8>,
    fd_counts: Vec<u8>,
    /// The last message received, kept between messages, and its descriptors.
    inbox: Vec<u8>,
    inbox_fds: Vec<OwnedFd>,
}

/// What [`Link::recv`] got.
pub(super) enum Received<'a> {
    Message(FromWorker<'a>),
    /// End of file or a broken connection: the worker is ending (its pidfd says how).
    Closed,
    /// Not a message of the protocol.
    Malformed(String),
}

impl Link {
    /// Starts a worker process.
    ///
    /// # Errors
    ///
    /// The initializer's arguments did not encode, or the process did not start.
    pub(super) fn start(method: StartMethod, initializer: Option<&Initializer>) -> Result<Link> {
        let (ours, theirs) = crate::connection::socket_pipe()?;
        let init = match initializer {
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
        let running = SharedMemory::<AtomicU64>::new()?;
        let setup = WorkerSetup { init, running: running.clone() };
        let mut process = Process::new(worker::worker_main, (theirs, setup))
            .with_daemon(true)
            .with_start_method(method)
            .with_name_prefix(super::super::worker_name_prefix(method));
        process.start()?;
        let pid = process.pid().unwrap_or(0);
        Ok(Link {
            process: WorkerProcess(process),
            pid,
            running,
            conn: ours,
            open: true,
            outbox: Vec::new(),
            in_place: Vec::new(),
            sending: None,
            stop_queued: false,
            ends: Vec::new(),
            fd_counts: Vec::new(),
            inbox: Vec::new(),
            inbox_fds: Vec::new(),
        })
    }

    pub(super) fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the connection works (replies may still wait in it after the worker ended, whatever
    /// was left to send).
    pub(super) fn is_open(&self) -> bool {
        self.open
    }

    /// Whether the connection works and nothing is waiting to go out: a batch can be sent.
    pub(super) fn ready_to_send(&self) -> bool {
        self.open && self.sending.is_none()
    }

    /// The id of the chunk the worker started last (0 before the first).
    pub(super) fn running(&self) -> u64 {
        self.running.load(Ordering::Acquire)
    }

    /// Sends `groups` as one batch, without blocking (see the module doc). Only when
    /// [`ready_to_send`](Self::ready_to_send).
    ///
    /// # Errors
    ///
    /// The connection broke, or a group's arguments are 4 GiB or more; the link is then closed
    /// (its pidfd will report the worker's end, or the scheduler kills it).
    pub(super) fn send_batch(&mut self, groups: &[Outgoing<'_>]) -> Result<()> {
        let sent = self.encode_batch(groups).and_then(|fds| self.start_sending(fds));
        if sent.is_err() {
            self.open = false;
        }
        sent
    }

    /// Asks the worker to exit after what it holds (after the frame being sent, if any).
    ///
    /// # Errors
    ///
    /// The connection broke; the link is then closed.
    pub(super) fn send_stop(&mut self) -> Result<()> {
        if self.sending.is_some() {
            self.stop_queued = true;
            return Ok(());
        }
        let sent = self.encode(&ToWorker::Stop).and_then(|()| self.start_sending(Vec::new()));
        if sent.is_err() {
            self.open = false;
        }
        sent
    }

    /// Encodes the batch into the outbox; returns the descriptors to attach.
    fn encode_batch<'c>(&mut self, groups: &[Outgoing<'c>]) -> Result<Vec<BorrowedFd<'c>>> {
        let too_large = || Error::InvalidState("a batch of chunks holds 4 GiB of arguments or more".into());
        self.ends.clear();
        self.fd_counts.clear();
        let mut cuts = Vec::with_capacity(groups.len());
        let mut fds = Vec::new();
        for group in groups {
            let (chunks, range) = (group.chunks, group.range.clone());
            let base = chunks.args_range(range.start).start;
            let ends_from = self.ends.len();
            for i in range.clone() {
                let end = u32::try_from(chunks.ends[i] - base).map_err(|_| too_large())?;
                self.ends.extend_from_slice(&end.to_le_bytes());
            }
            let counts_from = self.fd_counts.len();
            if !chunks.fd_ends.is_empty() {
                for i in range.clone() {
                    self.fd_counts.extend_from_slice(&(chunks.fds_range(i).len() as u32).to_le_bytes());
                }
                let held = chunks.fds_range(range.start).start..chunks.fds_range(range.end - 1).end;
                fds.extend(chunks.fds[held].iter().map(AsFd::as_fd));
            }
            cuts.push((
                ends_from..self.ends.len(),
                counts_from..self.fd_counts.len(),
                base..chunks.ends[range.end - 1],
            ));
        }
        let heads: Vec<GroupHead<'_>> = groups
            .iter()
            .zip(&cuts)
            .map(|(group, (ends, counts, args))| GroupHead {
                first_id: group.first_id,
                entry: group.chunks.entry,
                ends: &self.ends[ends.clone()],
                fds: &self.fd_counts[counts.clone()],
                args: &group.chunks.args[args.clone()],
            })
            .collect();
        let mut outbox = std::mem::take(&mut self.outbox);
        outbox.clear();
        outbox.resize(record::HEADER_ROOM, 0);
        self.in_place.clear();
        let mut left_out = Vec::new();
        self.outbox = encode_groups(outbox, &heads, &mut left_out)
            .map_err(|e| Error::Codec { action: "encode", detail: format!("a batch of chunks: {e}") })?;
        drop(heads);
        for (i, at) in left_out {
            let (group, (_, _, args)) = (&groups[i], &cuts[i]);
            self.in_place.push(InPlace { at, chunks: Arc::clone(group.chunks), range: args.clone() });
        }
        Ok(fds)
    }

    /// Encodes a message into the outbox.
    fn encode(&mut self, message: &ToWorker<'_>) -> Result<()> {
        self.in_place.clear();
        let mut outbox = std::mem::take(&mut self.outbox);
        outbox.clear();
        outbox.resize(record::HEADER_ROOM, 0);
        self.outbox = postcard::to_extend(message, outbox)
            .map_err(|e| Error::Codec { action: "encode", detail: format!("a message to a worker: {e}") })?;
        Ok(())
    }

    /// Frames the outbox (and the arguments sent in place) and sends what the socket takes now.
    fn start_sending(&mut self, fds: Vec<BorrowedFd<'_>>) -> Result<()> {
        // The encoders leave the header's room at the front: the payload starts there.
        let payload_len = self.frame_len(record::HEADER_ROOM);
        let start = record::frame_in_place_for(&mut self.outbox, payload_len);
        let socket = self.conn.fd()?;
        let sent = match self.in_place.is_empty() {
            true => record::try_send_frame_parts(socket, &[&self.outbox[start..]], 0, &fds)?,
            false => record::try_send_frame_parts(socket, &self.frame_parts(start), 0, &fds)?,
        };
        if sent == self.frame_len(start) {
            self.sent_whole();
            return Ok(());
        }
        // The descriptors must outlive the chunks they came from, which a death may fail first.
        let fds = match sent {
            0 => fds.iter().map(|fd| dup_cloexec(*fd).map_err(|e| Error::io("keep a descriptor to send", e))).collect(),
            _ => Ok(Vec::new()),
        }?;
        self.sending = Some(Sending { start, sent, fds });
        Ok(())
    }

    /// The frame being sent, from byte `start` of the outbox: the outbox's pieces and the
    /// arguments sent in place, in order.
    fn frame_parts(&self, start: usize) -> Vec<&[u8]> {
        let mut parts = Vec::with_capacity(2 * self.in_place.len() + 1);
        let mut from = start;
        for piece in &self.in_place {
            parts.push(&self.outbox[from..piece.at]);
            parts.push(&piece.chunks.args[piece.range.clone()]);
            from = piece.at;
        }
        parts.push(&self.outbox[from..]);
        parts
    }

    /// The length of the frame being sent (see [`frame_parts`](Self::frame_parts)).
    fn frame_len(&self, start: usize) -> usize {
        self.outbox.len() - start + self.in_place.iter().map(|piece| piece.range.len()).sum::<usize>()
    }

    /// The frame is out: its buffers are let go (the call's, the outbox's beyond what it keeps).
    fn sent_whole(&mut self) {
        self.in_place.clear();
        worker::trim(&mut self.outbox);
    }

    /// Sends more of the frame being sent (the socket has room).
    ///
    /// # Errors
    ///
    /// The connection broke; the link is then closed.
    pub(super) fn resume_sending(&mut self) -> Result<()> {
        let Some(sending) = self.sending.as_ref() else { return Ok(()) };
        let (start, sent) = (sending.start, sending.sent);
        let fds: Vec<BorrowedFd<'_>> = sending.fds.iter().map(AsFd::as_fd).collect();
        let socket = match self.conn.fd() {
            Ok(socket) => socket,
            Err(e) => {
                self.open = false;
                return Err(e);
            }
        };
        let sent = match record::try_send_frame_parts(socket, &self.frame_parts(start), sent, &fds) {
            Ok(sent) => sent,
            Err(e) => {
                self.open = false;
                return Err(e);
            }
        };
        drop(fds);
        if sent < self.frame_len(start) {
            if let Some(sending) = self.sending.as_mut() {
                sending.sent = sent;
            }
            return Ok(());
        }
        self.sending = None;
        self.sent_whole();
        match std::mem::take(&mut self.stop_queued) {
            true => self.send_stop(),
            false => Ok(()),
        }
    }

    /// Reads the next message (one is waiting, [`has_more`](Self::has_more)).
    pub(super) fn recv(&mut self) -> Received<'_> {
        self.inbox_fds.clear();
        match self.conn.recv_frame_into(&mut self.inbox, &mut self.inbox_fds) {
            Ok(()) => {}
            Err(Error::Protocol(detail)) | Err(Error::Codec { detail, .. }) => {
                self.open = false;
                return Received::Malformed(detail);
            }
            Err(_) => {
                self.open = false;
                return Received::Closed;
            }
        }
        // Workers send no descriptors: any that came are closed here.
        self.inbox_fds.clear();
        match postcard::from_bytes::<FromWorker<'_>>(&self.inbox) {
            Ok(message) => Received::Message(message),
            Err(e) => Received::Malformed(e.to_string()),
        }
    }

    /// Whether another message (or end of file) is waiting.
    pub(super) fn has_more(&mut self) -> bool {
        worker::trim(&mut self.inbox);
        self.open && matches!(self.conn.poll(Some(Duration::ZERO)), Ok(true))
    }

    /// Kills the worker (`SIGKILL`).
    pub(super) fn kill(&mut self) {
        self.process.kill();
    }

    /// Waits for the worker to end; its exit code (negative: the signal that killed it).
    pub(super) fn join(&mut self) -> i32 {
        self.process.join()
    }

    /// Hands the worker, told to stop ([`send_stop`](Self::send_stop)), to [`reap`]: kills it
    /// first if its `Stop` is still queued behind a frame (nobody will send it now).
    pub(super) fn into_exiting(self) -> Exiting {
        if self.stop_queued || self.sending.is_some() {
            self.process.kill();
        }
        Exiting(self)
    }
}

/// A worker told to stop, on its way out, for [`reap`]; what it holds (its connection, its shared
/// word) is released when this is dropped.
pub(super) struct Exiting(Link);

impl WorkerProcess {
    fn kill(&self) {
        let _ = self.0.kill();
    }

    fn join(&mut self) -> i32 {
        self.0.join().unwrap_or(crate::process::children::EXITCODE_UNKNOWN)
    }

    /// Reaps it if it has ended; whether it had.
    fn reap_if_ended(&mut self) -> bool {
        matches!(self.0.join_timeout(Duration::ZERO), Ok(Some(_)))
    }
}

impl Drop for WorkerProcess {
    /// Killed and reaped unless it ended already (a no-op for one already joined).
    fn drop(&mut self) {
        if self.0.exitcode().is_none() {
            self.kill();
            self.join();
        }
    }
}

/// Waits up to `grace` for `workers` (told to stop) to end, all at once; kills those still running
/// then; reaps them all. They are given back, ended: the caller keeps them, so that releasing what
/// they held (a `close` or `munmap` each, a TLB shootdown in a process with threads) is not on the
/// way out of `Pool::join`.
pub(super) fn reap(mut workers: Vec<Exiting>, grace: Duration) -> Vec<Exiting> {
    let deadline = std::time::Instant::now() + grace;
    let mut ended = Vec::with_capacity(workers.len());
    loop {
        let mut running = Vec::with_capacity(workers.len());
        for mut worker in workers {
            match worker.0.process.reap_if_ended() {
                true => ended.push(worker),
                false => running.push(worker),
            }
        }
        workers = running;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if workers.is_empty() || left.is_zero() {
            break;
        }
        let sentinels: Vec<BorrowedFd<'_>> = workers.iter().filter_map(|w| w.0.process.0.sentinel().ok()).collect();
        if sentinels.len() < workers.len() || sys::poll_readable(&sentinels, Some(left)).is_err() {
            break;
        }
    }
    for mut worker in workers {
        worker.0.kill();
        worker.0.join();
        ended.push(worker);
    }
    ended
}

/// The wake-up socket pair: submitters ring, the scheduler's [`wait`] returns.
pub(super) struct Wake {
    ring: UnixStream,
    listen: UnixStream,
}

impl Wake {
    /// # Errors
    ///
    /// The socket pair could not be made.
    pub(super) fn new() -> Result<Wake> {
        let (ring, listen) = UnixStream::pair().map_err(|e| Error::io("create the pool's wake-up socket", e))?;
        ring.set_nonblocking(true).map_err(|e| Error::io("set up the pool's wake-up socket", e))?;
        listen.set_nonblocking(true).map_err(|e| Error::io("set up the pool's wake-up socket", e))?;
        Ok(Wake { ring, listen })
    }

    /// Makes the scheduler's [`wait`] return.
    pub(super) fn ring(&self) {
        // The socket is non-blocking: if it is full, the scheduler has wake-ups pending anyway.
        let _ = (&self.ring).write(&[1]);
    }

    fn drain(&self) {
        let mut sink = [0u8; 64];
        while matches!((&self.listen).read(&mut sink), Ok(n) if n > 0) {}
    }
}

/// One group of a batch, as [`encode_groups`] writes it (the fields of [`Group`](super::super::protocol::Group)).
struct GroupHead<'a> {
    first_id: u64,
    entry: i64,
    ends: &'a [u8],
    fds: &'a [u8],
    args: &'a [u8],
}

/// Appends `ToWorker::Batch(groups)` to `out` as postcard writes it, but for the arguments of
/// [`IN_PLACE_FROM`] bytes or more: their length is written and their bytes left out, and
/// `left_out` gets (the group's index, where in `out` they belong). Sent with them in place, the
/// frame is byte for byte postcard's encoding of the batch (a test checks it): the variant's tag
/// (that of an empty batch, less its length, a zero), the number of groups, then each group's
/// fields in order, a byte string being its length and its bytes.
fn encode_groups(
    out: Vec<u8>,
    groups: &[GroupHead<'_>],
    left_out: &mut Vec<(usize, usize)>,
) -> postcard::Result<Vec<u8>> {
    let mut out = postcard::to_extend(&ToWorker::Batch(Vec::new()), out)?;
    debug_assert_eq!(out.last(), Some(&0), "an empty batch ends with its length, 0");
    out.pop();
    push_varint(&mut out, groups.len() as u64);
    for (i, group) in groups.iter().enumerate() {
        out = postcard::to_extend(&(group.first_id, group.entry, Bytes(group.ends), Bytes(group.fds)), out)?;
        push_varint(&mut out, group.args.len() as u64);
        match group.args.len() >= IN_PLACE_FROM {
            true => left_out.push((i, out.len())),
            false => out.extend_from_slice(group.args),
        }
    }
    Ok(out)
}

/// Appends `n` as postcard writes an integer's length (LEB128: seven bits a byte, low first).
fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// What [`wait`] saw.
#[derive(Debug, Default)]
pub(super) struct Events {
    /// Links with a message (or end of file) waiting.
    pub(super) readable: Vec<usize>,
    /// Links with room to send more of their frame.
    pub(super) writable: Vec<usize>,
    /// Links whose worker ended.
    pub(super) ended: Vec<usize>,
    /// The watched descriptor is readable (see [`Runner::watch`](super::super::scheduler::Runner::watch)).
    pub(super) watched: bool,
    /// The wake-up socket rang (and was drained).
    pub(super) woken: bool,
}

impl Events {
    #[cfg(test)]
    fn any(&self) -> bool {
        self.woken || self.watched || !self.readable.is_empty() || !self.writable.is_empty() || !self.ended.is_empty()
    }
}

/// Waits until a link has a message or room for its frame, a worker ends, the wake-up socket
/// rings, or `timeout` passes. Link `i` of the result is the `i`th of `links`.
///
/// For up to `spin` (zero: not at all) it first looks without sleeping, again and again, yielding
/// the CPU between looks: for a reply expected within microseconds, whose wake-up would cost more
/// than the looks (see the scheduler's module docs, "Latency"). The descriptors are gathered once
/// for all the looks and the sleep.
///
/// # Errors
///
/// `poll` failed.
pub(super) fn wait<'a>(
    wake: &Wake,
    watched: Option<BorrowedFd<'_>>,
    links: impl Iterator<Item = &'a Link>,
    spin: Duration,
    timeout: Option<Duration>,
) -> Result<Events> {
    // What each polled descriptor is: the wake-up socket, or a link's connection or pidfd.
    #[derive(Clone, Copy)]
    enum Polled {
        Wake,
        Watched,
        Readable(usize),
        Writable(usize),
        Ended(usize),
    }
    let mut polled = vec![Polled::Wake];
    let mut fds: Vec<(BorrowedFd<'_>, Interest)> = vec![(wake.listen.as_fd(), Interest::Read)];
    if let Some(fd) = watched {
        fds.push((fd, Interest::Read));
        polled.push(Polled::Watched);
    }
    for (i, link) in links.enumerate() {
        if link.open
            && let Ok(fd) = link.conn.fd()
        {
            fds.push((fd, Interest::Read));
            polled.push(Polled::Readable(i));
            if link.sending.is_some() {
                fds.push((fd, Interest::Write));
                polled.push(Polled::Writable(i));
            }
        }
        if let Ok(fd) = link.process.0.sentinel() {
            fds.push((fd, Interest::Read));
            polled.push(Polled::Ended(i));
        }
    }
    let start = Instant::now();
    let spin = timeout.map_or(spin, |t| t.min(spin));
    let ready = loop {
        let looking = start.elapsed() < spin;
        let limit = match looking {
            true => Some(Duration::ZERO),
            false => timeout.map(|t| t.saturating_sub(start.elapsed())),
        };
        let ready = sys::poll_ready(&fds, limit).map_err(|e| Error::io("wait for the pool's workers", e))?;
        if !looking || ready.contains(&true) {
            break ready;
        }
        std::thread::yield_now();
    };
    let mut events = Events::default();
    for (ready, what) in ready.into_iter().zip(polled) {
        match (ready, what) {
            (false, _) => {}
            (true, Polled::Wake) => {
                wake.drain();
                events.woken = true;
            }
            (true, Polled::Watched) => events.watched = true,
            (true, Polled::Readable(i)) => events.readable.push(i),
            (true, Polled::Writable(i)) => events.writable.push(i),
            (true, Polled::Ended(i)) => events.ended.push(i),
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::super::super::protocol::Group;
    use super::*;

    /// The batch with its large arguments left out and put back where `encode_groups` says is
    /// postcard's encoding of the whole batch, byte for byte, for groups of every size around
    /// the threshold.
    #[test]
    fn a_batch_with_arguments_left_out_is_postcards_batch() {
        let sizes = [0, 1, 127, 128, IN_PLACE_FROM - 1, IN_PLACE_FROM, 300_000];
        let args: Vec<Vec<u8>> = sizes.iter().map(|&n| (0..n).map(|i| (i * 7 % 256) as u8).collect()).collect();
        let ends: Vec<u8> = [3u32, 9].iter().flat_map(|e| e.to_le_bytes()).collect();
        let heads: Vec<GroupHead<'_>> = args
            .iter()
            .enumerate()
            .map(|(i, args)| GroupHead {
                first_id: 1 << (7 * i),
                entry: -(i as i64) * 1000,
                ends: &ends,
                fds: if i % 2 == 0 { &[] } else { &ends[..4] },
                args,
            })
            .collect();
        let mut left_out = Vec::new();
        let pieces = encode_groups(vec![0xaa], &heads, &mut left_out).unwrap();
        assert_eq!(left_out.iter().map(|(i, _)| sizes[*i]).collect::<Vec<_>>(), [IN_PLACE_FROM, 300_000]);
        let mut whole = Vec::new();
        let mut from = 1;
        for (i, at) in &left_out {
            whole.extend_from_slice(&pieces[from..*at]);
            whole.extend_from_slice(&args[*i]);
            from = *at;
        }
        whole.extend_from_slice(&pieces[from..]);
        let batch = ToWorker::Batch(
            heads
                .iter()
                .map(|h| Group {
                    first_id: h.first_id,
                    entry: h.entry,
                    ends: Bytes(h.ends),
                    fds: Bytes(h.fds),
                    args: Bytes(h.args),
                })
                .collect(),
        );
        assert_eq!(whole, postcard::to_stdvec(&batch).unwrap());
    }

    fn no_links() -> std::iter::Empty<&'static Link> {
        std::iter::empty()
    }

    /// A wake-up that rang before the wait ends the spin with it, drained.
    #[test]
    fn a_brief_wait_ends_on_a_wake_up() {
        let wake = Wake::new().expect("wake");
        wake.ring();
        let events = wait(&wake, None, no_links(), Duration::from_secs(5), Some(Duration::from_secs(5))).expect("wait");
        assert!(events.woken);
        assert!(events.readable.is_empty() && events.ended.is_empty() && !events.watched);
        // Drained: the next wait sees nothing.
        let events = wait(&wake, None, no_links(), Duration::ZERO, Some(Duration::ZERO)).expect("wait");
        assert!(!events.any());
    }

    /// A readable watched descriptor ends the spin.
    #[test]
    fn a_brief_wait_ends_on_the_watched_descriptor() {
        let wake = Wake::new().expect("wake");
        let (a, b) = UnixStream::pair().expect("pair");
        (&a).write_all(b"x").expect("write");
        let events = wait(&wake, Some(b.as_fd()), no_links(), Duration::from_secs(5), Some(Duration::from_secs(5)))
            .expect("wait");
        assert!(events.watched && !events.woken);
    }

    /// With nothing to see, it returns empty once its timeout has passed, whether that is shorter
    /// than the spin or longer.
    #[test]
    fn a_brief_wait_with_nothing_to_see_keeps_its_timeout() {
        let wake = Wake::new().expect("wake");
        for timeout in [Duration::ZERO, Duration::from_millis(2)] {
            let started = Instant::now();
            let events = wait(&wake, None, no_links(), Duration::from_micros(100), Some(timeout)).expect("wait");
            assert!(!events.any());
            assert!(started.elapsed() >= timeout);
        }
    }
}
