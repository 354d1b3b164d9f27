//! Frames over a `SOCK_SEQPACKET` socket (the sockets of [`socket_pipe`](crate::socket_pipe)):
//! CPython's frame (header, payload) cut into records.
//!
//! ```text
//! frame := record(header payload[..k] + descriptors) record(payload[k..k + R]) ...
//! ```
//!
//! The first record holds the header (as in `frame`) and as much of the payload as fits in
//! [`RECORD_MAX`] bytes, with the descriptors; the rest follows in records of [`RECORD_MAX`]
//! bytes. A frame of up to 64 KiB is a single record, sent with one `sendmsg(2)` and received with
//! one `recvmsg(2)`: on a stream socket the receiver needs two calls (the header, then exactly the
//! payload, since it must not read into the next frame), and on the 2-vCPU VM of
//! `bench/README.md` that second call was a third of a small round trip
//! (`connection.rtt.socket_pipe.floor`). The socket keeps what an outside event loop relies on:
//! it is readable exactly while a message waits, and nothing of the connection lives anywhere else.
//!
//! Reads never take more than one frame, so consecutive readers in several processes each get
//! whole messages. A record is sent whole or not at all, so a send with a deadline that runs out
//! leaves the socket aligned on frames unless some records of a multi-record frame already left.

use std::cell::RefCell;
use std::io::IoSlice;
use std::os::fd::{BorrowedFd, OwnedFd};

use super::frame::{self, Waiter};
use crate::error::{Error, IoContext, Result};
use crate::sync::spin::SpinState;
use crate::sys::{self, Interest};

/// The largest record sent, header included.
pub(crate) const RECORD_MAX: usize = 64 * 1024;

/// The longest frame header (`frame::header`).
const HEADER_MAX: usize = 12;

thread_local! {
    /// Where first records land (a thread receives one at a time): their payload is copied out
    /// into a buffer of the message's size. Zero pages, backed as records reach them: a new
    /// process's first receive used to zero-fill all 64 KiB (16 page faults, the most of any step
    /// of a starting pool worker) for a record of a few bytes.
    static FIRST_RECORD: RefCell<Option<sys::ZeroedPages>> = const { RefCell::new(None) };
}

/// Sends one frame holding `payload` as records, `fds` attached to the first. Returns how many
/// bytes left before an error (0: the socket is still aligned on frames).
pub(crate) fn send_frame(
    socket: BorrowedFd<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    deadline: impl Waiter,
) -> std::result::Result<(), (Error, usize)> {
    let (header, header_len) = frame::header(payload.len() as u64);
    let first = payload.len().min(RECORD_MAX - header_len);
    frame::widen_for(socket, payload.len());
    let mut sent = 0;
    send_record(socket, &[IoSlice::new(&header[..header_len]), IoSlice::new(&payload[..first])], fds, deadline)
        .map_err(|e| (e, 0))?;
    sent += header_len + first;
    for chunk in payload[first..].chunks(RECORD_MAX) {
        send_record(socket, &[IoSlice::new(chunk)], &[], deadline).map_err(|e| (e, sent))?;
        sent += chunk.len();
    }
    Ok(())
}

/// Sends one record: whole, or (an error) not at all.
fn send_record(
    socket: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    deadline: impl Waiter,
) -> Result<()> {
    let len: usize = iov.iter().map(|part| part.len()).sum();
    let sent = match deadline.nonblocking() {
        false => sys::send_with_fds(socket, iov, fds).context("send a message")?,
        true => loop {
            match sys::try_send_with_fds(socket, iov, fds).context("send a message")? {
                0 if len > 0 => deadline.wait(socket, Interest::Write)?,
                n => break n,
            }
        },
    };
    match sent == len {
        true => Ok(()),
        false => Err(Error::Protocol(format!("a record of {len} bytes left as {sent}: not a SOCK_SEQPACKET socket?"))),
    }
}

/// Room at the front of a buffer for a frame's header, which [`frame_in_place_for`] writes there.
pub(crate) const HEADER_ROOM: usize = HEADER_MAX;

/// Writes the header of a frame whose payload is `payload_len` bytes long right before
/// `buf[HEADER_ROOM..]`, where the payload (or its first part: see [`try_send_frame_parts`])
/// starts; returns where the frame starts in `buf`. `buf` holds at least [`HEADER_ROOM`] bytes.
pub(crate) fn frame_in_place_for(buf: &mut [u8], payload_len: usize) -> usize {
    let (header, header_len) = frame::header(payload_len as u64);
    let start = HEADER_ROOM - header_len;
    buf[start..HEADER_ROOM].copy_from_slice(&header[..header_len]);
    start
}

/// Sends the records of the frame that is `parts` back to back (the first starting with the
/// header, as [`frame_in_place_for`] writes it) from byte `sent` on, without blocking: as many
/// whole records as the socket takes now, `fds` attached to the first. Returns how much of the
/// frame is sent (all of it: the parts' total length); the caller calls again from there when the
/// socket has room. Records are cut as [`send_frame`] cuts them, so the receiver cannot tell the
/// difference; a record gathers the parts it spans, so large pieces of a payload leave from where
/// they are, with no copy into one buffer first.
///
/// # Errors
///
/// The socket failed (the peer closed: `EPIPE`); some records may have left.
pub(crate) fn try_send_frame_parts(
    socket: BorrowedFd<'_>,
    parts: &[&[u8]],
    mut sent: usize,
    fds: &[BorrowedFd<'_>],
) -> Result<usize> {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    if sent == 0 {
        frame::widen_for(socket, total);
    }
    // A frame in one part (most) gathers nothing: no list of slices is made for it.
    let mut iov: Vec<IoSlice<'_>> = Vec::new();
    while sent < total {
        let end = total.min(sent + RECORD_MAX);
        let one;
        let record: &[IoSlice<'_>] = match parts {
            [whole] => {
                one = [IoSlice::new(&whole[sent..end])];
                &one
            }
            _ => {
                iov.clear();
                let mut from = 0;
                for part in parts {
                    let to = from + part.len();
                    if from < end && to > sent {
                        iov.push(IoSlice::new(&part[sent.max(from) - from..end.min(to) - from]));
                    }
                    from = to;
                }
                &iov
            }
        };
        let attached = if sent == 0 { fds } else { &[] };
        let n = sys::try_send_with_fds(socket, record, attached).context("send a message")?;
        if n == 0 {
            return Ok(sent);
        }
        if n != end - sent {
            return Err(Error::Protocol(format!(
                "a record of {} bytes left as {n}: not a SOCK_SEQPACKET socket?",
                end - sent
            )));
        }
        sent += n;
    }
    Ok(sent)
}

/// The first record of a frame: the payload's length and the part of it the record held.
pub(crate) struct FirstRecord {
    pub(crate) len: u64,
    pub(crate) payload: Vec<u8>,
}

/// Receives the first record of the next frame, appending its descriptors to `fds`. `Ok(None)`:
/// the peer closed between frames. [`Error::Timeout`] means that nothing of the frame was read.
///
/// With `spin`, a record that is not there yet is first waited for by retrying without blocking
/// (see `sync::spin`), as `frame::recv_header` does.
pub(crate) fn recv_first(
    socket: BorrowedFd<'_>,
    fds: &mut Vec<OwnedFd>,
    deadline: impl Waiter,
    spin: Option<&SpinState>,
) -> Result<Option<FirstRecord>> {
    recv_first_with(socket, fds, deadline, spin, parse_first)
}

/// As [`recv_first`], but the first part of the payload is appended to `buf` (whose capacity a
/// caller keeps from message to message); returns the payload's whole length.
pub(crate) fn recv_first_into(
    socket: BorrowedFd<'_>,
    fds: &mut Vec<OwnedFd>,
    deadline: impl Waiter,
    spin: Option<&SpinState>,
    buf: &mut Vec<u8>,
) -> Result<Option<u64>> {
    recv_first_with(socket, fds, deadline, spin, |record| {
        let (len, header_len) = parse_header(record)?;
        buf.extend_from_slice(&record[header_len..]);
        Ok(len)
    })
}

/// Receives the first record of the next frame into this thread's scratch buffer and hands it to
/// `parse`.
fn recv_first_with<R>(
    socket: BorrowedFd<'_>,
    fds: &mut Vec<OwnedFd>,
    deadline: impl Waiter,
    spin: Option<&SpinState>,
    parse: impl FnOnce(&[u8]) -> Result<R>,
) -> Result<Option<R>> {
    FIRST_RECORD.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let scratch = match &mut *scratch {
            Some(pages) => pages,
            empty => empty.insert(sys::ZeroedPages::new(RECORD_MAX).context("map a receive buffer")?),
        }
        .as_mut_slice();
        let mut got = None;
        if let Some(spin) = spin {
            // Each look is a receive that does not block; an error ends the spin too (and is
            // reported below).
            spin.spin(deadline.deadline(), || match sys::recv_record_with_fds(socket, scratch, fds, false) {
                Ok(None) => false,
                received => {
                    got = Some(received);
                    true
                }
            });
        }
        let n = match got {
            Some(received) => checked(received)?.unwrap_or(0),
            None => read_step(socket, deadline, |wait| sys::recv_record_with_fds(socket, scratch, fds, wait))?,
        };
        if n == 0 {
            return Ok(None);
        }
        parse(&scratch[..n]).map(Some)
    })
}

/// The header and first payload bytes of a first record.
fn parse_first(record: &[u8]) -> Result<FirstRecord> {
    let (len, header_len) = parse_header(record)?;
    let part = &record[header_len..];
    // Room for the whole message up front, as `frame::recv_payload` makes it (capacity that no
    // byte reaches costs no memory): the rest is then read in place, never copied to grow.
    let room = usize::try_from(len).map_or(frame::ALLOCATION_STEP, |len| len.min(frame::ALLOCATION_STEP));
    let mut payload = Vec::with_capacity(room.max(part.len()));
    payload.extend_from_slice(part);
    Ok(FirstRecord { len, payload })
}

/// A first record's payload length and header length, checked against the record.
fn parse_header(record: &[u8]) -> Result<(u64, usize)> {
    let short = record.get(..4).ok_or_else(|| short_record(record.len()))?;
    let short = i32::from_be_bytes(short.try_into().map_err(|_| short_record(record.len()))?);
    let (len, header_len) = match short {
        -1 => {
            let long = record.get(4..HEADER_MAX).ok_or_else(|| short_record(record.len()))?;
            (u64::from_be_bytes(long.try_into().map_err(|_| short_record(record.len()))?), HEADER_MAX)
        }
        n if n >= 0 => (n as u64, 4),
        n => return Err(Error::Protocol(format!("negative message length {n} in a frame header"))),
    };
    let part = &record[header_len..];
    if part.len() as u64 > len {
        return Err(Error::Protocol(format!(
            "a record holds {} bytes of a message of {len}: not a frame of this crate",
            part.len()
        )));
    }
    Ok((len, header_len))
}

fn short_record(len: usize) -> Error {
    Error::Protocol(format!("a record of {len} bytes is too short for a frame header"))
}

/// Receives the rest of a frame of `len` bytes into `buf` (which holds its first part), record by
/// record, growing it as bytes arrive (`frame::make_room`: a lying length costs the bytes really
/// sent) and asking for huge pages once one huge page of bytes is in.
pub(crate) fn recv_rest(socket: BorrowedFd<'_>, buf: &mut Vec<u8>, len: u64, deadline: impl Waiter) -> Result<()> {
    let len = usize::try_from(len).map_err(|_| Error::Protocol(format!("a message of {len} bytes")))?;
    let mut advised = false;
    while buf.len() < len {
        let want = (len - buf.len()).min(RECORD_MAX);
        frame::make_room(buf, len, want);
        if !advised && buf.len() >= frame::HUGE_PAGES_AFTER {
            // The room reserved up front (`parse_first`) may spare `make_room` a growth step,
            // where it would have asked.
            sys::prefer_huge_pages(buf);
            advised = true;
        }
        let n = read_step(socket, deadline, |wait| sys::recv_record_into_spare(socket, buf, want, wait))?;
        if n == 0 {
            return Err(frame::eof_during_message());
        }
    }
    Ok(())
}

/// Receives the rest of a frame into `buf`, whose first `got` bytes hold its first part and
/// whose length is the frame's.
pub(crate) fn recv_rest_into(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    mut got: usize,
    deadline: impl Waiter,
) -> Result<()> {
    while got < buf.len() {
        let end = buf.len().min(got + RECORD_MAX);
        let n = read_step(socket, deadline, |wait| sys::recv_record(socket, &mut buf[got..end], wait))?;
        if n == 0 {
            return Err(frame::eof_during_message());
        }
        got += n;
    }
    Ok(())
}

/// One read of a record: blocking without a deadline; with one, tried first and waited for only
/// when nothing was there.
fn read_step(
    socket: BorrowedFd<'_>,
    deadline: impl Waiter,
    mut read: impl FnMut(bool) -> rustix::io::Result<Option<usize>>,
) -> Result<usize> {
    if !deadline.nonblocking() {
        return Ok(checked(read(true))?.unwrap_or(0));
    }
    loop {
        if let Some(n) = checked(read(false))? {
            return Ok(n);
        }
        deadline.wait(socket, Interest::Read)?;
    }
}

/// A receive's outcome as this crate reports it.
fn checked(received: rustix::io::Result<Option<usize>>) -> Result<Option<usize>> {
    match received {
        Err(rustix::io::Errno::MSGSIZE) => Err(Error::Protocol(
            "a record longer than its frame's rest (not a frame of this crate), or more descriptors than one message \
             carries"
                .into(),
        )),
        received => received.context("receive a message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::SocketKind;
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        sys::socketpair_cloexec(SocketKind::SeqPacket).unwrap()
    }

    fn receive(socket: BorrowedFd<'_>) -> Option<Vec<u8>> {
        let mut fds = Vec::new();
        let first = recv_first(socket, &mut fds, frame::Deadline::NONE, None).unwrap()?;
        let mut payload = first.payload;
        recv_rest(socket, &mut payload, first.len, frame::Deadline::NONE).unwrap();
        Some(payload)
    }

    #[test]
    fn frames_of_every_size_round_trip() {
        for len in [0, 1, RECORD_MAX - 4, RECORD_MAX - 3, RECORD_MAX, 3 * RECORD_MAX + 17] {
            let (a, b) = pair();
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sender = std::thread::spawn(move || {
                send_frame(a.as_fd(), &payload, &[], frame::Deadline::NONE).unwrap();
                payload
            });
            let got = receive(b.as_fd()).unwrap();
            assert_eq!(got, sender.join().unwrap(), "a frame of {len} bytes");
        }
    }

    /// A frame sent as parts (an empty one among them), across record boundaries and through a
    /// socket that fills up (the sender resumes where it stopped), arrives as their concatenation.
    #[test]
    fn a_frame_in_parts_arrives_whole() {
        let (a, b) = pair();
        let bytes = |len: usize, seed: usize| -> Vec<u8> { (0..len).map(|i| ((i + seed) % 251) as u8).collect() };
        let pieces = [bytes(40_000, 1), bytes(7, 2), Vec::new(), bytes(3 * RECORD_MAX + 5, 3), bytes(1, 4)];
        let payload_len: usize = pieces.iter().map(Vec::len).sum();
        let mut head = vec![0u8; HEADER_ROOM];
        head.extend(bytes(100, 5));
        let start = frame_in_place_for(&mut head, payload_len + 100);
        let expected: Vec<u8> = head[HEADER_ROOM..].iter().chain(pieces.iter().flatten()).copied().collect();
        let receiver = std::thread::spawn(move || receive(b.as_fd()));
        let mut parts: Vec<&[u8]> = vec![&head[start..]];
        parts.extend(pieces.iter().map(Vec::as_slice));
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut sent = 0;
        while sent < total {
            sent = try_send_frame_parts(a.as_fd(), &parts, sent, &[]).unwrap();
            if sent < total {
                assert!(sys::poll_one(a.as_fd(), Interest::Write, Some(std::time::Duration::from_secs(5))).unwrap());
            }
        }
        assert_eq!(receiver.join().unwrap().unwrap(), expected);
    }

    #[test]
    fn a_small_frame_is_one_record() {
        let (a, b) = pair();
        send_frame(a.as_fd(), b"01234567", &[], frame::Deadline::NONE).unwrap();
        assert_eq!(sys::next_packet_len(b.as_fd()).unwrap(), 12);
    }

    #[test]
    fn end_of_file_between_and_inside_frames() {
        let (a, b) = pair();
        drop(a);
        assert!(receive(b.as_fd()).is_none());
        let (a, b) = pair();
        // A first record that announces more than follows.
        let mut record = 100u32.to_be_bytes().to_vec();
        record.extend_from_slice(&[7; 10]);
        sys::send_with_fds(a.as_fd(), &[IoSlice::new(&record)], &[]).unwrap();
        drop(a);
        let mut fds = Vec::new();
        let first = recv_first(b.as_fd(), &mut fds, frame::Deadline::NONE, None).unwrap().unwrap();
        assert_eq!((first.len, first.payload.len()), (100, 10));
        let mut payload = first.payload;
        assert!(matches!(recv_rest(b.as_fd(), &mut payload, 100, frame::Deadline::NONE), Err(Error::Protocol(_))));
    }

    #[test]
    fn foreign_records_are_errors_not_panics() {
        for record in
            [&[1u8][..], &[0, 0, 0, 1, 5, 6][..], &[0xff, 0xff, 0xff, 0xfe][..], &[0xff, 0xff, 0xff, 0xff, 0][..]]
        {
            let (a, b) = pair();
            sys::send_with_fds(a.as_fd(), &[IoSlice::new(record)], &[]).unwrap();
            let mut fds = Vec::new();
            assert!(
                matches!(recv_first(b.as_fd(), &mut fds, frame::Deadline::NONE, None), Err(Error::Protocol(_))),
                "{record:?}"
            );
        }
        // A continuation record longer than the frame's rest.
        let (a, b) = pair();
        let mut first = 5u32.to_be_bytes().to_vec();
        first.push(1);
        sys::send_with_fds(a.as_fd(), &[IoSlice::new(&first)], &[]).unwrap();
        sys::send_with_fds(a.as_fd(), &[IoSlice::new(&[2; 9])], &[]).unwrap();
        let mut fds = Vec::new();
        let got = recv_first(b.as_fd(), &mut fds, frame::Deadline::NONE, None).unwrap().unwrap();
        let mut payload = got.payload;
        assert!(matches!(recv_rest(b.as_fd(), &mut payload, 5, frame::Deadline::NONE), Err(Error::Protocol(_))));
    }

    #[test]
    fn a_timeout_before_a_record_reads_nothing() {
        let (_a, b) = pair();
        let mut fds = Vec::new();
        let deadline = frame::Deadline::after(Some(std::time::Duration::from_millis(1)));
        assert!(matches!(recv_first(b.as_fd(), &mut fds, deadline, None), Err(Error::Timeout(_))));
    }
}
