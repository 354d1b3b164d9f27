//! The read side of a CPython client's channel: each request taken whole with one receive, and
//! the next one met by a short, adaptive spin instead of a sleep when that pays.
//!
//! A CPython proxy's call is a request and a reply on its channel, and the client makes its next
//! call a few tens of microseconds after the reply (its own pickling and unpickling, in
//! Python). A server thread that sleeps in `recv` between calls must be woken for each request;
//! on a virtual machine whose idle CPUs halt, that wake-up is the largest part of a call (a
//! halted vCPU takes tens of microseconds to resume). So the thread first receives without
//! blocking for a bounded budget, and sleeps only when the request is late.
//!
//! The spin is adaptive and must cost nothing when it does not pay:
//! - a request met while spinning restores the full budget ([`MAX_SPIN`]); a spin that had to
//!   sleep halves it, down to nothing; with nothing left, a sleeping wait now and then probes
//!   with the full budget (after [`REPROBE_EVERY`] sleeps, doubling up to
//!   [`REPROBE_EVERY`]` << `[`MAX_PROBE_BACKOFF`] while probes miss): a client that pauses costs
//!   its thread one budget, then no CPU while it stays idle;
//! - only while the CPUs are free: a spinning thread takes a CPU from the clients. It does not
//!   spin while other clients of the server are active (another request arrived since its last
//!   one, or arrives while it spins: the server's request count, [`Activity`]), nor while more
//!   tasks are runnable than there are CPUs (another program: [`cpus_have_room`]), nor when it
//!   was switched out involuntarily while spinning; then not for [`REPROBE_EVERY`] waits or more
//!   (doubling while it lasts). At most one thread per CPU but one spins at a time; on a single
//!   CPU none does. (Measured under load, spinning there only took the CPU from the client: a
//!   call took 1.5-4x longer.)
//!
//! Reads: the client writes a small request's header and payload at once (CPython's
//! `_send_bytes`), so one receive into a buffer that the channel keeps takes both, where reading
//! the header first costs a second system call. Bytes past the request (a client that sends
//! before its reply came) stay in the buffer for the next one.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::sync::cpu_room::{cpus, cpus_have_room};
use crate::sys;

/// The longest a channel's thread spins for the next request.
pub(crate) const MAX_SPIN: Duration = Duration::from_micros(200);

/// Budgets below this are not worth a spin.
const MIN_SPIN: Duration = Duration::from_micros(5);

/// How many sleeping waits pass before a channel with no budget (or one that found the CPUs
/// busy) spins again.
const REPROBE_EVERY: u32 = 16;

/// How many times a missed probe doubles the interval to the next one.
const MAX_PROBE_BACKOFF: u32 = 6;

/// The receive buffer's first size, and its step when it grows.
const FIRST_BUFFER: usize = 4 << 10;

/// How many threads may spin at once: one fewer than the CPUs (the rest run clients), none on a
/// single CPU.
fn max_spinners() -> usize {
    cpus() - 1
}

/// What the channels of one server share about their clients' activity.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Requests received on every connection so far.
    requests: AtomicU64,
    /// Threads spinning now.
    spinners: AtomicUsize,
}

impl Activity {
    /// Counts a request received on a connection (either front); returns the count after it.
    pub(crate) fn request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A spinner's place, if one is free.
    fn enter(&self) -> Option<SpinnerPlace<'_>> {
        let limit = max_spinners();
        self.spinners
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| SpinnerPlace(self))
    }
}

/// A place among the spinners, given back on drop.
struct SpinnerPlace<'a>(&'a Activity);

impl Drop for SpinnerPlace<'_> {
    fn drop(&mut self) {
        self.0.spinners.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a spin ended.
enum Spun {
    /// The attempt succeeded (or failed for good): its result.
    Ready(rustix::io::Result<usize>),
    /// The budget passed: a miss.
    Late,
    /// Other clients are active, or others want the CPUs: not the channel's fault.
    Crowded,
    /// No spin this time.
    Skipped,
}

/// One channel's spinning state.
#[derive(Debug, Default)]
pub(crate) struct ChannelSpin {
    /// Halvings of [`MAX_SPIN`] since a spin last paid.
    halvings: u32,
    /// Probes that missed since (with no budget left), or times the CPUs were found busy.
    backoff: u32,
    /// Sleeping waits to let pass before the next spin.
    pause: u32,
    /// The server's request count after this channel's last request.
    seen: u64,
}

impl ChannelSpin {
    /// Notes this channel's request in the server's count.
    pub(crate) fn received(&mut self, activity: &Activity) {
        self.seen = activity.request();
    }

    /// The budget of this wait, or `None` (then counted as a sleeping wait).
    fn budget(&mut self) -> Option<Duration> {
        if self.pause > 0 {
            self.pause -= 1;
            return None;
        }
        let budget = MAX_SPIN / (1 << self.halvings.min(31));
        if budget >= MIN_SPIN {
            return Some(budget);
        }
        // A probe: the full budget, once.
        Some(MAX_SPIN)
    }

    fn pause_for(&mut self, backoff: u32) {
        self.pause = REPROBE_EVERY << backoff.min(MAX_PROBE_BACKOFF);
    }

    /// Calls `attempt` (a receive that does not block: `None` when nothing came) until it gives
    /// something or the spin ends, and learns from how it ended.
    fn spin(&mut self, activity: &Activity, attempt: impl FnMut() -> Option<rustix::io::Result<usize>>) -> Spun {
        let Some(budget) = self.budget() else { return Spun::Skipped };
        if activity.requests() != self.seen || !cpus_have_room() {
            // Another client made a request meanwhile, or another program runs.
            self.learn(&Spun::Crowded);
            return Spun::Crowded;
        }
        let Some(_place) = activity.enter() else { return Spun::Skipped };
        let switches = sys::involuntary_switches();
        let spun = self.spin_for(budget, activity, attempt);
        // The scheduler wanted this CPU for another task meanwhile: others want the CPUs.
        let preempted = sys::involuntary_switches() != switches;
        self.learn(if preempted { &Spun::Crowded } else { &spun });
        spun
    }

    /// The spin itself: `attempt` until it gives something, another client's request comes, or
    /// `budget` passes.
    fn spin_for(
        &self,
        budget: Duration,
        activity: &Activity,
        mut attempt: impl FnMut() -> Option<rustix::io::Result<usize>>,
    ) -> Spun {
        let start = Instant::now();
        loop {
            if let Some(result) = attempt() {
                return Spun::Ready(result);
            }
            if activity.requests() != self.seen {
                return Spun::Crowded;
            }
            if start.elapsed() >= budget {
                return Spun::Late;
            }
            std::hint::spin_loop();
        }
    }

    /// Updates the budget after a spin.
    fn learn(&mut self, spun: &Spun) {
        let probing = MAX_SPIN / (1 << self.halvings.min(31)) < MIN_SPIN;
        match spun {
            Spun::Ready(_) => {
                self.halvings = 0;
                self.backoff = 0;
            }
            Spun::Late if probing => {
                self.backoff = (self.backoff + 1).min(MAX_PROBE_BACKOFF);
                self.pause_for(self.backoff);
            }
            Spun::Late => {
                self.halvings += 1;
                if MAX_SPIN / (1 << self.halvings.min(31)) < MIN_SPIN {
                    self.pause_for(0);
                }
            }
            Spun::Crowded => {
                self.pause_for(self.backoff);
                self.backoff = (self.backoff + 1).min(MAX_PROBE_BACKOFF);
            }
            Spun::Skipped => {}
        }
    }
}

/// What [`RequestReader::next`] found.
#[derive(Debug)]
pub(crate) enum Next<'a> {
    /// A request's bytes (the frame's payload).
    Request(&'a [u8]),
    /// A request over the limit, read and dropped: the connection goes on.
    TooLarge { len: u64, limit: u64 },
    /// The client closed the channel between requests.
    Closed,
}

/// Frames (CPython's: a 4-byte big-endian length, or -1 and an 8-byte one, then the payload)
/// read from a stream socket through a buffer of the channel's.
#[derive(Debug)]
pub(crate) struct RequestReader {
    /// Bytes received; those before `start` are consumed.
    buf: Vec<u8>,
    start: usize,
    limit: u64,
    spin: ChannelSpin,
}

impl RequestReader {
    /// A reader of requests up to `limit` bytes.
    pub(crate) fn new(limit: u64) -> RequestReader {
        RequestReader { buf: Vec::new(), start: 0, limit, spin: ChannelSpin::default() }
    }

    /// The next request from `socket`, waiting as long as it takes (spinning first when that
    /// pays, see the module's docs).
    ///
    /// # Errors
    ///
    /// The socket's errors; [`Error::Eof`] (or a protocol error for a bad header) when the client
    /// closed in the middle of a request.
    pub(crate) fn next(&mut self, socket: BorrowedFd<'_>, activity: &Activity) -> Result<Next<'_>> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let mut first = true;
        let (header, len) = loop {
            if let Some(parsed) = frame_header(&self.buf[self.start..])? {
                break parsed;
            }
            let waiting = self.start == self.buf.len();
            if !self.fill(socket, 12, first && waiting, activity)? {
                return if waiting { Ok(Next::Closed) } else { Err(Error::Eof) };
            }
            first = false;
        };
        self.spin.received(activity);
        if len > self.limit {
            self.skip(socket, header, len)?;
            return Ok(Next::TooLarge { len, limit: self.limit });
        }
        // At most the limit, which fits in memory.
        let total = header + len as usize;
        while self.buf.len() - self.start < total {
            if !self.fill(socket, total, false, activity)? {
                return Err(Error::Eof);
            }
        }
        let request = self.start + header..self.start + total;
        self.start += total;
        Ok(Next::Request(&self.buf[request]))
    }

    /// Receives more bytes of a frame of `want` bytes from `start` (the spare room grows towards
    /// that, doubling, so that a length claimed but never sent costs little). False at end of
    /// file.
    fn fill(&mut self, socket: BorrowedFd<'_>, want: usize, spin: bool, activity: &Activity) -> Result<bool> {
        if self.start > 0 && self.buf.capacity() - self.start < want {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() == self.buf.len() {
            let have = self.buf.len() - self.start;
            self.buf.reserve(want.saturating_sub(have).min(have).max(FIRST_BUFFER));
        }
        let room = self.buf.capacity() - self.buf.len();
        let received = if spin {
            let buf = &mut self.buf;
            match self.spin.spin(activity, || sys::try_recv_into_spare(socket, buf, room).transpose()) {
                Spun::Ready(result) => result,
                Spun::Late | Spun::Crowded | Spun::Skipped => sys::recv_into_spare(socket, &mut self.buf, room),
            }
        } else {
            sys::recv_into_spare(socket, &mut self.buf, room)
        };
        Ok(received.context("receive a request")? > 0)
    }

    /// Reads and drops the rest of a frame over the limit (`header` bytes, then `len`), in pieces.
    fn skip(&mut self, socket: BorrowedFd<'_>, header: usize, len: u64) -> Result<()> {
        let buffered = (self.buf.len() - self.start - header) as u64;
        let mut left = len - buffered.min(len);
        // What was buffered past the frame belongs to the next request.
        let past = self.start + header + (len.min(buffered) as usize);
        self.buf.drain(..past);
        self.start = 0;
        if left == 0 {
            return Ok(());
        }
        let mut piece = Vec::with_capacity(64 << 10);
        while left > 0 {
            piece.clear();
            let want = left.min(piece.capacity() as u64) as usize;
            let n = sys::recv_into_spare(socket, &mut piece, want).context("receive a request")?;
            if n == 0 {
                return Err(Error::Eof);
            }
            left -= n as u64;
        }
        Ok(())
    }
}

/// A frame's header at the start of `bytes`: its length and the payload's, or `None` while
/// incomplete.
fn frame_header(bytes: &[u8]) -> Result<Option<(usize, u64)>> {
    let Some(short) = bytes.first_chunk::<4>() else { return Ok(None) };
    match i32::from_be_bytes(*short) {
        len if len >= 0 => Ok(Some((4, len as u64))),
        -1 => Ok(bytes.get(4..12).map(|long| (12, u64::from_be_bytes(long.try_into().unwrap_or_default())))),
        len => Err(Error::Protocol(format!("negative message length {len} in a frame header"))),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    fn long_frame(payload: &[u8]) -> Vec<u8> {
        let mut bytes = (-1i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn request(reader: &mut RequestReader, socket: &UnixStream, activity: &Activity) -> Vec<u8> {
        use std::os::fd::AsFd;
        match reader.next(socket.as_fd(), activity).unwrap() {
            Next::Request(bytes) => bytes.to_vec(),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Requests in one write, split across writes, in the long form, empty, over the limit (then
    /// the next one), and the end: each read as sent.
    #[test]
    fn frames_are_read_whole_however_they_arrive() {
        use std::os::fd::AsFd;
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let activity = Activity::default();
        let mut reader = RequestReader::new(1000);
        let big = vec![7u8; 10_000];
        let writer = std::thread::spawn(move || {
            let mut both = frame(b"one");
            both.extend(frame(b"two"));
            theirs.write_all(&both).unwrap();
            let split = frame(b"three");
            theirs.write_all(&split[..2]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            theirs.write_all(&split[2..]).unwrap();
            theirs.write_all(&long_frame(b"four")).unwrap();
            theirs.write_all(&frame(b"")).unwrap();
            let mut over = frame(&big);
            over.extend(frame(b"after"));
            theirs.write_all(&over).unwrap();
            theirs.write_all(&frame(&[1u8; 999])).unwrap();
        });
        for expected in [&b"one"[..], b"two", b"three", b"four", b""] {
            assert_eq!(request(&mut reader, &ours, &activity), expected);
        }
        match reader.next(ours.as_fd(), &activity).unwrap() {
            Next::TooLarge { len: 10_000, limit: 1000 } => {}
            other => panic!("expected a request over the limit, got {other:?}"),
        }
        assert_eq!(request(&mut reader, &ours, &activity), b"after");
        assert_eq!(request(&mut reader, &ours, &activity), vec![1u8; 999]);
        writer.join().unwrap();
        assert!(matches!(reader.next(ours.as_fd(), &activity).unwrap(), Next::Closed));
    }

    /// A client that leaves in the middle of a request, or sends a bad header: an error, not a
    /// wait.
    #[test]
    fn a_request_cut_short_or_a_bad_header_is_an_error() {
        use std::os::fd::AsFd;
        let activity = Activity::default();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(&frame(b"cut short")[..6]).unwrap();
        drop(theirs);
        assert!(matches!(RequestReader::new(100).next(ours.as_fd(), &activity), Err(Error::Eof)));
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(&(-2i32).to_be_bytes()).unwrap();
        assert!(matches!(RequestReader::new(100).next(ours.as_fd(), &activity), Err(Error::Protocol(_))));
    }

    /// A spin that meets the request keeps the full budget; misses halve it to nothing, after
    /// which only probes spin, ever more rarely while they miss.
    #[test]
    fn misses_halve_the_budget_then_probes_back_off() {
        let mut spin = ChannelSpin::default();
        assert_eq!(spin.budget(), Some(MAX_SPIN));
        spin.learn(&Spun::Late);
        assert_eq!(spin.budget(), Some(MAX_SPIN / 2));
        spin.learn(&Spun::Ready(Ok(1)));
        assert_eq!(spin.budget(), Some(MAX_SPIN));
        let mut misses = 0;
        while spin.pause == 0 {
            spin.learn(&Spun::Late);
            misses += 1;
        }
        assert!(misses < 8, "{misses} misses before the budget was gone");
        let sleeps = |spin: &mut ChannelSpin| {
            let mut n = 0;
            while spin.budget().is_none() {
                n += 1;
            }
            n
        };
        assert_eq!(sleeps(&mut spin), REPROBE_EVERY);
        // The probe spins the full budget; a miss doubles the wait for the next.
        spin.learn(&Spun::Late);
        assert_eq!(sleeps(&mut spin), REPROBE_EVERY << 1);
        spin.learn(&Spun::Ready(Ok(1)));
        assert_eq!(spin.budget(), Some(MAX_SPIN));
    }

    /// Another client's request since this channel's last one: no spin (the attempt is never
    /// made), and none for a while.
    #[test]
    fn other_clients_requests_stop_the_spin() {
        let activity = Activity::default();
        let mut spin = ChannelSpin::default();
        spin.received(&activity);
        activity.request();
        let mut attempts = 0;
        let spun = spin.spin(&activity, || {
            attempts += 1;
            None
        });
        assert!(matches!(spun, Spun::Crowded));
        assert_eq!(attempts, 0);
        assert!(spin.pause >= REPROBE_EVERY);
    }

    /// A spin ends when the client closes its end (the receive gives end of file), however long
    /// its budget.
    #[test]
    fn a_spin_ends_when_the_client_closes() {
        use std::os::fd::AsFd;
        let (ours, theirs) = UnixStream::pair().unwrap();
        let closer = std::thread::spawn(move || drop(theirs));
        let activity = Activity::default();
        let spin = ChannelSpin::default();
        let mut buf = Vec::with_capacity(16);
        let spun = spin.spin_for(Duration::from_secs(600), &activity, || {
            sys::try_recv_into_spare(ours.as_fd(), &mut buf, 16).transpose()
        });
        assert!(matches!(spun, Spun::Ready(Ok(0))), "the spin did not end with end of file");
        closer.join().unwrap();
    }

    /// Another client's request while a channel spins ends the spin.
    #[test]
    fn another_clients_request_ends_a_spin() {
        let activity = std::sync::Arc::new(Activity::default());
        let mut spin = ChannelSpin::default();
        spin.received(&activity);
        let other = std::sync::Arc::clone(&activity);
        let client = std::thread::spawn(move || other.request());
        let spun = spin.spin_for(Duration::from_secs(600), &activity, || None);
        assert!(matches!(spun, Spun::Crowded));
        client.join().unwrap();
    }

    /// Spinners hold places, at most one fewer than the CPUs.
    #[test]
    fn spinners_are_bounded_by_the_cpus() {
        let activity = Activity::default();
        let places: Vec<_> = std::iter::from_fn(|| activity.enter()).take(1000).collect();
        assert_eq!(places.len(), cpus() - 1);
        drop(places);
        assert_eq!(activity.spinners.load(Ordering::Relaxed), 0);
    }
}
