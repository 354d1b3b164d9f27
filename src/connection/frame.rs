//! Length-prefixed frames over a stream socket: CPython's `Connection` framing, with descriptors
//! attached.
//!
//! ```text
//! frame   := header payload
//! header  := i32_be(n)                     when n <= 0x7fff_ffff
//!          | i32_be(-1) u64_be(n)          otherwise (CPython 3.8+)
//! ```
//!
//! Header and payload leave in one `sendmsg(2)` (with a deadline, in non-blocking steps, each
//! after a wait for room); descriptors ride on the first one as `SCM_RIGHTS`, so they arrive with
//! the first byte of the frame, which the receiver reads with `recvmsg(2)`. The rest of a frame is
//! read with plain `recv(2)`, straight into the message's buffer.
//!
//! Reads are exact: a frame is never read past its end, so several processes can read one socket
//! and each gets whole messages. A length prefix is only a claim: buffers grow as bytes arrive
//! (doubling from [`FIRST_ALLOCATION`], then by [`ALLOCATION_STEP`] at a time once
//! [`HUGE_PAGES_AFTER`] bytes are in, when they also ask for huge pages), so a lying prefix costs
//! no more memory than the bytes really sent (plus at most one huge page) and one allocation step
//! of address space.
//!
//! Every operation takes a [`Deadline`]; with one, each system call is preceded by a `poll(2)` for
//! the time left, and running out gives [`Error::Timeout`].

use std::io::IoSlice;
use std::os::fd::{BorrowedFd, OwnedFd};

pub(crate) use crate::deadline::Deadline;
use crate::error::{Error, IoContext, Result};
use crate::reduction::Message;
use crate::sync::lock_state::LIVENESS_SLICE;
use crate::sync::spin::SpinState;
use crate::sys::{self, Interest};

/// How a frame operation waits between its system calls: until a [`Deadline`], or until one
/// while checking something else every [`LIVENESS_SLICE`] ([`Watched`]).
pub(crate) trait Waiter: Copy {
    /// Waits until `fd` is ready for `interest`; [`Error::Timeout`] when the time is up.
    fn wait(self, fd: BorrowedFd<'_>, interest: Interest) -> Result<()>;
    /// The deadline.
    fn deadline(self) -> Deadline;
    /// Whether system calls must not block (the waiting happens in [`wait`](Self::wait)).
    fn nonblocking(self) -> bool;
}

impl Waiter for Deadline {
    fn wait(self, fd: BorrowedFd<'_>, interest: Interest) -> Result<()> {
        Deadline::wait(self, fd, interest)
    }

    fn deadline(self) -> Deadline {
        self
    }

    fn nonblocking(self) -> bool {
        self.is_bounded()
    }
}

/// A deadline, and a check made every [`LIVENESS_SLICE`] of waiting (for a peer that died in the
/// middle of a message, which no end of file reveals when others hold its end too). Without a
/// check, the same as the deadline alone.
#[derive(Clone, Copy)]
pub(crate) struct Watched<'a> {
    pub(crate) deadline: Deadline,
    pub(crate) check: Option<&'a dyn Fn() -> Result<()>>,
}

impl Waiter for Watched<'_> {
    fn wait(self, fd: BorrowedFd<'_>, interest: Interest) -> Result<()> {
        let Some(check) = self.check else { return Waiter::wait(self.deadline, fd, interest) };
        loop {
            let slice = self.deadline.left().map_or(LIVENESS_SLICE, |left| left.min(LIVENESS_SLICE));
            if sys::poll_one(fd, interest, Some(slice)).context("wait on a descriptor")? {
                return Ok(());
            }
            if self.deadline.passed() {
                return Err(self.deadline.timeout_error());
            }
            check()?;
        }
    }

    fn deadline(self) -> Deadline {
        self.deadline
    }

    fn nonblocking(self) -> bool {
        self.check.is_some() || self.deadline.is_bounded()
    }
}

/// Payloads up to this size use the 4-byte header.
pub(crate) const SHORT_FORM_MAX: u64 = 0x7fff_ffff;

/// The first allocation of a receive buffer (or the whole message, if smaller). Capacity that no
/// byte has reached costs address space, not memory (only the pages bytes land in are backed), so
/// a lying prefix still costs only the bytes sent; starting at 1 MiB spares a message of that
/// size four reallocations (and their copies) of doubling from 64 KiB. Not more: a region of 2 MiB
/// or more may be backed by a huge page at its first byte where transparent huge pages are on for
/// every mapping.
pub(crate) const FIRST_ALLOCATION: usize = 1 << 20;

/// The most a receive buffer grows by at once (see [`make_room`]).
pub(crate) const ALLOCATION_STEP: usize = 64 << 20;

/// A receive buffer asks for huge pages once it holds this many bytes that really arrived: one
/// huge page. A huge page is allocated whole at the first touch of any of its bytes, so from here
/// on the memory a buffer takes beyond the bytes in it (its last huge page, partly filled) is at
/// most what already arrived. Asking later cost a 100 MB message its first 32 MB in small pages:
/// 8 000 page faults, a third of the transfer (`connection.transfer.100mb`, `bench/README.md`).
pub(crate) const HUGE_PAGES_AFTER: usize = 2 << 20;

/// A message of this many bytes or more widens its Unix socket's send buffer before it goes
/// ([`widen_for`]).
const WIDEN_SEND_BUFFER_FROM: usize = 4 << 20;

/// Before a message of `len` bytes goes on `socket` (a pipe's Unix socket): a large one widens
/// the socket's send buffer (`sys::widen_send_buffer`), so that it crosses in 2 MiB steps instead
/// of 208 KiB ones where the kernel allows: a 100 MB message 0.028-0.031 s against 0.040-0.047
/// (`connection.transfer.100mb`, `bench/README.md`).
pub(crate) fn widen_for(socket: BorrowedFd<'_>, len: usize) {
    if len >= WIDEN_SEND_BUFFER_FROM {
        sys::widen_send_buffer(socket);
    }
}

/// The header for a payload of `len` bytes, and how many of the 12 bytes it uses.
pub(crate) fn header(len: u64) -> ([u8; 12], usize) {
    let mut bytes = [0u8; 12];
    if len <= SHORT_FORM_MAX {
        bytes[..4].copy_from_slice(&(len as u32).to_be_bytes());
        (bytes, 4)
    } else {
        bytes[..4].copy_from_slice(&(-1i32).to_be_bytes());
        bytes[4..].copy_from_slice(&len.to_be_bytes());
        (bytes, 12)
    }
}

/// Sends one frame holding `payload`, with `fds` attached, after the byte `marker` if there is one
/// (pipes mark the frames they send through their socket, see `ring`). Returns how many bytes
/// left before an error (0: the stream is still aligned on frames).
pub(crate) fn send_frame(
    socket: BorrowedFd<'_>,
    marker: Option<u8>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    deadline: impl Waiter,
) -> std::result::Result<(), (Error, usize)> {
    let (frame_header, frame_header_len) = header(payload.len() as u64);
    let mut prefix = [0u8; 13];
    let marker_len = usize::from(marker.is_some());
    prefix[0] = marker.unwrap_or_default();
    prefix[marker_len..marker_len + frame_header_len].copy_from_slice(&frame_header[..frame_header_len]);
    let header_len = marker_len + frame_header_len;
    let header = &prefix[..header_len];
    let total = header_len + payload.len();
    // A blocking send on a stream socket returns only once all of it left; with a deadline each
    // step sends, without blocking, what the socket has room for, or waits for room.
    let bounded = deadline.nonblocking();
    let mut sent = 0;
    while sent < total {
        let iov_storage;
        let iov: &[IoSlice<'_>] = if sent < header_len {
            iov_storage = [IoSlice::new(&header[sent..]), IoSlice::new(payload)];
            &iov_storage
        } else {
            iov_storage = [IoSlice::new(&payload[sent - header_len..]), IoSlice::new(&[])];
            &iov_storage[..1]
        };
        let attach = if sent == 0 { fds } else { &[] };
        // Without blocking: send what fits, and wait for room only when nothing did (a socket
        // reports room only once three quarters of its buffer are free).
        let step = match bounded {
            true => sys::try_send_with_fds(socket, iov, attach).context("send a message").and_then(|n| match n {
                0 => deadline.wait(socket, Interest::Write).map(|()| 0),
                n => Ok(n),
            }),
            false => sys::send_with_fds(socket, iov, attach).context("send a message"),
        };
        match step {
            Ok(n) => sent += n,
            Err(e) => return Err((e, sent)),
        }
    }
    Ok(())
}

/// [`send_frame`] without a deadline, on a socket only this crate sends on (a pipe's): each send
/// blocks in the kernel for at most a [`LIVENESS_SLICE`] (`SO_SNDTIMEO`, set once per frame), and
/// `check` runs between slices that sent nothing.
///
/// Blocking in the kernel lets a large frame go on as soon as any room frees; a non-blocking send
/// followed by a `poll(2)` for room (as `send_frame` does under a watch) wakes only once three
/// quarters of a Unix socket's buffer are free, so the sender idles while the receiver drains:
/// 1 MiB messages went at 0.7x ipc-channel's throughput that way on the VM of `bench/README.md`
/// (`peers.oneway.mib1`).
pub(crate) fn send_frame_in_slices(
    socket: BorrowedFd<'_>,
    marker: Option<u8>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    check: &dyn Fn() -> Result<()>,
) -> std::result::Result<(), (Error, usize)> {
    sys::set_send_timeout(socket, LIVENESS_SLICE).context("bound a send").map_err(|e| (e, 0))?;
    let (frame_header, frame_header_len) = header(payload.len() as u64);
    let mut prefix = [0u8; 13];
    let marker_len = usize::from(marker.is_some());
    prefix[0] = marker.unwrap_or_default();
    prefix[marker_len..marker_len + frame_header_len].copy_from_slice(&frame_header[..frame_header_len]);
    let header = &prefix[..marker_len + frame_header_len];
    let total = header.len() + payload.len();
    let mut sent = 0;
    while sent < total {
        let iov_storage;
        let iov: &[IoSlice<'_>] = if sent < header.len() {
            iov_storage = [IoSlice::new(&header[sent..]), IoSlice::new(payload)];
            &iov_storage
        } else {
            iov_storage = [IoSlice::new(&payload[sent - header.len()..]), IoSlice::new(&[])];
            &iov_storage[..1]
        };
        let attach = if sent == 0 { fds } else { &[] };
        match sys::send_with_fds(socket, iov, attach) {
            Ok(n) => sent += n,
            // A slice passed without room: is the receiver still there?
            Err(rustix::io::Errno::AGAIN) => check().map_err(|e| (e, sent))?,
            Err(e) => return Err((Error::io("send a message", e), sent)),
        }
    }
    Ok(())
}

/// Sends `message` as one frame (no deadline).
pub(crate) fn send(socket: BorrowedFd<'_>, message: &Message) -> Result<()> {
    send_frame(socket, None, &message.bytes, &message.borrowed_fds(), Deadline::NONE).map_err(|(e, _)| e)
}

/// Reads a frame header. `Ok(None)`: the peer closed before a frame began. Descriptors attached to
/// the frame are appended to `fds`.
///
/// [`Error::Timeout`] means that nothing of the frame was read.
///
/// With `spin`, a header that is not there yet is first waited for by retrying without blocking
/// (see `sync::spin`: a blocking receive's sleep and wake-up are most of a round trip); the
/// deadline still bounds the whole.
pub(crate) fn recv_header(
    socket: BorrowedFd<'_>,
    fds: &mut Vec<OwnedFd>,
    deadline: impl Waiter,
    spin: Option<&SpinState>,
) -> Result<Option<u64>> {
    let mut short = [0u8; 4];
    let mut got = 0;
    if let Some(spin) = spin {
        // Each look is a receive that does not block; it ends the spin when it got bytes (or end
        // of file, or an error, which the blocking path below then reports).
        let mut spun = None;
        spin.spin(deadline.deadline(), || match sys::try_recv_with_fds(socket, &mut short, fds) {
            Ok(Some(n)) => {
                spun = Some(n);
                true
            }
            Ok(None) => false,
            Err(_) => true,
        });
        match spun {
            Some(0) => return Ok(None),
            Some(n) => got = n,
            None => {}
        }
    }
    while got < 4 {
        deadline.wait(socket, Interest::Read).map_err(|e| within_header(e, got))?;
        let n = if got == 0 {
            sys::recv_with_fds(socket, &mut short, fds).context("receive a message")?
        } else {
            sys::recv_plain(socket, &mut short[got..]).context("receive a message")?
        };
        if n == 0 {
            return match got {
                0 => Ok(None),
                _ => Err(eof_during_message()),
            };
        }
        got += n;
    }
    let len = i32::from_be_bytes(short);
    if len >= 0 {
        return Ok(Some(len as u64));
    }
    if len != -1 {
        return Err(Error::Protocol(format!("negative message length {len} in a frame header")));
    }
    let mut long = [0u8; 8];
    recv_exact(socket, &mut long, deadline).map_err(|e| within_header(e, 4))?;
    Ok(Some(u64::from_be_bytes(long)))
}

/// Reads exactly `buf.len()` bytes of a frame already begun.
pub(crate) fn recv_exact(socket: BorrowedFd<'_>, buf: &mut [u8], deadline: impl Waiter) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n = read_step(socket, deadline, |blocking| match blocking {
            true => sys::recv_plain(socket, &mut buf[got..]).map(Some),
            false => sys::try_recv_plain(socket, &mut buf[got..]),
        })?;
        if n == 0 {
            return Err(eof_during_message());
        }
        got += n;
    }
    Ok(())
}

/// Reads a payload of `len` bytes into a new buffer, growing it as bytes arrive.
///
/// The length is only the peer's claim: the buffer grows as bytes arrive (see [`make_room`]), so a
/// claim of 1 GiB followed by a trickle costs the bytes of the trickle, not 1 GiB.
pub(crate) fn recv_payload(socket: BorrowedFd<'_>, len: u64, deadline: impl Waiter) -> Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| Error::Protocol(format!("a message of {len} bytes")))?;
    let mut buf: Vec<u8> = Vec::with_capacity(len.min(FIRST_ALLOCATION));
    recv_payload_into(socket, &mut buf, len, deadline)?;
    Ok(buf)
}

/// [`recv_payload`] appended to `buf` until it holds `len` bytes (those already there count: the
/// start of a payload that came another way), growing it as [`recv_payload`] does.
pub(crate) fn recv_payload_into(
    socket: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    len: usize,
    deadline: impl Waiter,
) -> Result<()> {
    while buf.len() < len {
        make_room(buf, len, 1);
        let want = len - buf.len();
        let n = read_step(socket, deadline, |blocking| match blocking {
            true => sys::recv_into_spare(socket, buf, want).map(Some),
            false => sys::try_recv_into_spare(socket, buf, want),
        })?;
        if n == 0 {
            return Err(eof_during_message());
        }
    }
    Ok(())
}

/// Makes room for at least `need` more bytes in `buf`, a receive buffer on its way to `len` bytes,
/// never past `len`. While it holds less than [`HUGE_PAGES_AFTER`] bytes it doubles (from
/// [`FIRST_ALLOCATION`]), so its address space stays within twice the bytes that really arrived.
/// From there on it grows by [`ALLOCATION_STEP`] at once and asks for huge pages: the room is then
/// large enough for the advice to take (see `sys::prefer_huge_pages`), and capacity that no byte
/// reaches costs address space, not memory.
pub(crate) fn make_room(buf: &mut Vec<u8>, len: usize, need: usize) {
    if buf.capacity() - buf.len() >= need {
        return;
    }
    let step = match buf.len() >= HUGE_PAGES_AFTER {
        true => ALLOCATION_STEP,
        false => buf.capacity().clamp(FIRST_ALLOCATION, ALLOCATION_STEP),
    };
    let grow = step.min(len - buf.len());
    buf.reserve_exact(grow.max(need));
    // Large messages: huge pages, for far fewer page faults, now that the bytes are here.
    if buf.len() >= HUGE_PAGES_AFTER {
        sys::prefer_huge_pages(buf);
    }
}

/// One read of a frame's bytes: `read(true)` blocks, `read(false)` does not (`None`: nothing
/// there). Without a deadline the read blocks; with one (or a watch), it is tried first and the
/// waiter waits only when nothing was there, so a stream of data costs one system call per read.
fn read_step(
    socket: BorrowedFd<'_>,
    deadline: impl Waiter,
    mut read: impl FnMut(bool) -> rustix::io::Result<Option<usize>>,
) -> Result<usize> {
    if !deadline.nonblocking() {
        return Ok(read(true).context("receive a message")?.unwrap_or(0));
    }
    loop {
        if let Some(n) = read(false).context("receive a message")? {
            return Ok(n);
        }
        deadline.wait(socket, Interest::Read)?;
    }
}

/// Receives one frame (no deadline) of at most `max_len` bytes. `Ok(None)` means the peer closed
/// before a frame began.
pub(crate) fn recv(socket: BorrowedFd<'_>, max_len: usize) -> Result<Option<Message>> {
    let mut fds = Vec::new();
    let Some(len) = recv_header(socket, &mut fds, Deadline::NONE, None)? else { return Ok(None) };
    if len > max_len as u64 {
        return Err(Error::MessageTooLarge { len, limit: max_len as u64 });
    }
    let bytes = recv_payload(socket, len, Deadline::NONE)?;
    Ok(Some(Message { bytes, fds }))
}

/// A timeout after `got` bytes of a header were read is no clean timeout: the stream is no longer
/// aligned on frames.
fn within_header(e: Error, got: usize) -> Error {
    match e {
        Error::Timeout(after) if got > 0 => {
            Error::Protocol(format!("timed out after {after:?} in the middle of a message header"))
        }
        e => e,
    }
}

pub(crate) fn eof_during_message() -> Error {
    Error::Protocol("got end of file during message: the peer closed the connection in the middle of it".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_receive_buffer_doubles_until_a_huge_page_is_in_then_grows_by_whole_steps_never_past_the_message() {
        let len = 200 << 20;
        let mut buf: Vec<u8> = Vec::with_capacity(FIRST_ALLOCATION);
        let mut capacities = Vec::new();
        while buf.len() < len {
            make_room(&mut buf, len, 1);
            if capacities.last() != Some(&buf.capacity()) {
                capacities.push(buf.capacity());
            }
            // The bytes arrive: fill the room (zeros cost no memory beyond the pages touched).
            let room = buf.capacity() - buf.len();
            buf.resize(buf.len() + room, 0);
        }
        let mib = |n: usize| n << 20;
        assert_eq!(capacities, [mib(1), mib(2), mib(66), mib(130), mib(194), mib(200)]);
        // A small message: exactly its length, at once.
        let mut small = Vec::new();
        make_room(&mut small, 1000, 1);
        assert_eq!(small.capacity(), 1000);
    }

    #[test]
    fn a_send_in_slices_checks_between_slices_and_stops_on_a_failed_check() {
        // Nobody reads: the socket fills, the send waits a slice, and the check ends it.
        let (a, _b) = sys::socketpair_cloexec(sys::SocketKind::Stream).unwrap();
        let checks = std::cell::Cell::new(0);
        let check = || {
            checks.set(checks.get() + 1);
            Err(Error::Protocol("the receiver died".into()))
        };
        let started = std::time::Instant::now();
        let outcome = send_frame_in_slices(a.as_fd(), Some(b'M'), &vec![0u8; 16 << 20], &[], &check);
        assert!(matches!(outcome, Err((Error::Protocol(_), sent)) if sent > 0));
        assert_eq!(checks.get(), 1);
        assert!(started.elapsed() >= LIVENESS_SLICE / 2, "the send waited a slice in the kernel first");
    }

    #[test]
    fn headers_follow_cpython() {
        assert_eq!(header(0), ([0; 12], 4));
        assert_eq!(&header(5).0[..4], &[0, 0, 0, 5]);
        assert_eq!(header(0x7fff_ffff).1, 4);
        let (bytes, n) = header(0x8000_0000);
        assert_eq!(n, 12);
        assert_eq!(bytes, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]);
    }
}
