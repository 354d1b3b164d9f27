//! Unix-domain socket pairs and descriptor passing (`SCM_RIGHTS`).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD` is 253).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

/// The kind of a Unix socket pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketKind {
    /// A byte stream (`SOCK_STREAM`).
    Stream,
    /// Whole messages with preserved boundaries (`SOCK_SEQPACKET`).
    SeqPacket,
}

/// A connected pair of Unix sockets, both close-on-exec.
pub(crate) fn socketpair_cloexec(kind: SocketKind) -> io::Result<(OwnedFd, OwnedFd)> {
    let ty = match kind {
        SocketKind::Stream => SocketType::STREAM,
        SocketKind::SeqPacket => SocketType::SEQPACKET,
    };
    rustix::net::socketpair(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None)
}

/// Sends `iov` on `socket` with one `sendmsg(2)`, attaching `fds` as `SCM_RIGHTS`.
///
/// Returns how many bytes were sent (a stream socket may take fewer than offered; the descriptors
/// travel with the first byte). Never raises `SIGPIPE`; a closed peer gives `EPIPE`.
pub(crate) fn send_with_fds(socket: BorrowedFd<'_>, iov: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    sendmsg_with_fds(socket, iov, fds, SendFlags::NOSIGNAL)
}

/// Like [`send_with_fds`], without blocking: sends what the socket has room for now, and returns
/// 0 (sending nothing, descriptors included) when it has none.
pub(crate) fn try_send_with_fds(
    socket: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    match sendmsg_with_fds(socket, iov, fds, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
        Err(io::Errno::AGAIN) => Ok(0),
        other => other,
    }
}

fn sendmsg_with_fds(
    socket: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    flags: SendFlags,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Errno::TOOMANYREFS);
    }
    // Room for the descriptors only when there are some: most messages carry none, and their
    // send should not allocate.
    let mut space = match fds.is_empty() {
        true => Vec::new(),
        false => vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))],
    };
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Errno::NOBUFS);
    }
    loop {
        match rustix::net::sendmsg(socket, iov, &mut control, flags) {
            Err(io::Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Bounds how long a blocking send on `socket` waits for room (`SO_SNDTIMEO`): a send that times
/// out returns what it sent, or `EAGAIN` when nothing. The setting belongs to the socket, shared
/// by every descriptor of it. A zero bound is raised to a microsecond (zero would mean none).
pub(crate) fn set_send_timeout(socket: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<()> {
    let timeout = timeout.max(std::time::Duration::from_micros(1));
    rustix::net::sockopt::set_socket_timeout(socket, rustix::net::sockopt::Timeout::Send, Some(timeout))
}

/// Receives into `buf` with one `recvmsg(2)`, appending any passed descriptors (close-on-exec) to
/// `fds`. Returns the number of bytes read; 0 means the peer closed the connection.
///
/// Descriptors that did not fit (`MSG_CTRUNC`) are reported as `EMSGSIZE` after the ones that did
/// fit were taken (and are closed when `fds` is dropped by the caller).
pub(crate) fn recv_with_fds(socket: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    recvmsg_with_fds(socket, buf, fds, RecvFlags::CMSG_CLOEXEC)
}

/// Like [`recv_with_fds`] without blocking: `Ok(None)` when nothing is waiting.
pub(crate) fn try_recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Option<usize>> {
    match recvmsg_with_fds(socket, buf, fds, RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT) {
        Err(io::Errno::AGAIN) => Ok(None),
        other => other.map(Some),
    }
}

/// One `recvmsg(2)` into `buf` (retried on `EINTR`), appending passed descriptors to `fds`; a
/// stream's receive, where only descriptors can be cut short.
fn recvmsg_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: RecvFlags,
) -> io::Result<usize> {
    recvmsg_with_fds_checking(socket, buf, fds, flags, ReturnFlags::CTRUNC)
}

/// As [`recvmsg_with_fds`], with `EMSGSIZE` when the kernel reports any of `cut_short`.
fn recvmsg_with_fds_checking(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: RecvFlags,
    cut_short: ReturnFlags,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match rustix::net::recvmsg(socket, &mut iov, &mut control, flags) {
            Err(io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.intersects(cut_short) {
        return Err(io::Errno::MSGSIZE);
    }
    Ok(msg.bytes)
}

/// Receives one record of a `SOCK_SEQPACKET` socket into `buf` with one `recvmsg(2)`, appending
/// any passed descriptors (close-on-exec) to `fds`. `wait`: block until a record arrives; else
/// `Ok(None)` when none is waiting. `Ok(Some(0))` at end of file (or for an empty record). A
/// record longer than `buf` is an error (`EMSGSIZE`); its rest is lost.
pub(crate) fn recv_record_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    wait: bool,
) -> io::Result<Option<usize>> {
    let flags = match wait {
        true => RecvFlags::CMSG_CLOEXEC,
        false => RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    };
    // A record cut short (TRUNC) is an error as descriptors cut short are.
    match recvmsg_with_fds_checking(socket, buf, fds, flags, ReturnFlags::CTRUNC | ReturnFlags::TRUNC) {
        Err(io::Errno::AGAIN) if !wait => Ok(None),
        other => other.map(Some),
    }
}

/// Receives one record of a `SOCK_SEQPACKET` socket into `buf` with plain `recv(2)` (descriptors
/// attached to it would be discarded: use it for records that carry none). As
/// [`recv_record_with_fds`] otherwise.
pub(crate) fn recv_record(socket: BorrowedFd<'_>, buf: &mut [u8], wait: bool) -> io::Result<Option<usize>> {
    let flags = match wait {
        true => RecvFlags::TRUNC,
        false => RecvFlags::TRUNC | RecvFlags::DONTWAIT,
    };
    let offered = buf.len();
    loop {
        match rustix::net::recv(socket, &mut *buf, flags) {
            Err(io::Errno::INTR) => continue,
            Err(io::Errno::AGAIN) if !wait => return Ok(None),
            // With MSG_TRUNC the call returns the record's real length.
            Ok((_, len)) if len > offered => return Err(io::Errno::MSGSIZE),
            other => return other.map(|(_, len)| Some(len)),
        }
    }
}

/// [`recv_record`] into the spare capacity of `buf` (at most `max` bytes, as far as the capacity
/// reaches), extending its length by the record's: no byte of the buffer is written twice (a
/// zeroed slice would be), and its pages are first touched by the kernel's copy.
pub(crate) fn recv_record_into_spare(
    socket: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    wait: bool,
) -> io::Result<Option<usize>> {
    let flags = match wait {
        true => RecvFlags::TRUNC,
        false => RecvFlags::TRUNC | RecvFlags::DONTWAIT,
    };
    let start = buf.len();
    let offered = max.min(buf.capacity() - start);
    let spare = &mut buf.spare_capacity_mut()[..offered];
    let got = loop {
        match rustix::net::recv(socket, &mut *spare, flags) {
            Err(io::Errno::INTR) => continue,
            Err(io::Errno::AGAIN) if !wait => return Ok(None),
            Err(e) => return Err(e),
            // With MSG_TRUNC the call returns the record's real length; a cut record's bytes stay
            // beyond the buffer's length.
            Ok((_, len)) if len > offered => return Err(io::Errno::MSGSIZE),
            Ok(((init, _), _)) => break init.len(),
        }
    };
    // SAFETY: `recv` initialized the first `got` bytes of the spare capacity, which start at
    // `start` (0 bytes at end of file: the length stays).
    unsafe { buf.set_len(start + got) };
    Ok(Some(got))
}

/// The type of a socket is `SOCK_SEQPACKET`.
pub(crate) fn is_seqpacket(socket: BorrowedFd<'_>) -> bool {
    matches!(rustix::net::sockopt::socket_type(socket), Ok(ty) if ty == SocketType::SEQPACKET)
}

/// The size of the next message waiting on a `SOCK_SEQPACKET` socket, without taking it (blocks
/// until one arrives); 0 at end of file.
pub(crate) fn next_packet_len(socket: BorrowedFd<'_>) -> io::Result<usize> {
    let mut probe = [0u8; 1];
    loop {
        match rustix::net::recv(socket, &mut probe, RecvFlags::PEEK | RecvFlags::TRUNC) {
            Err(io::Errno::INTR) => continue,
            Err(e) => return Err(e),
            Ok((_, len)) => return Ok(len),
        }
    }
}

/// The send buffer a Unix socket asks for before a large message (see [`widen_send_buffer`]).
pub(crate) const WIDE_SEND_BUFFER: usize = 1 << 20;

/// Asks the kernel for a send buffer of [`WIDE_SEND_BUFFER`] bytes on a Unix socket, so that a
/// large message crosses in steps of about a megabyte instead of about 200 KiB (each step is a
/// sleep and a wake-up of both sides). The kernel grants at most `net.core.wmem_max`, doubled for
/// its bookkeeping (a stock kernel's 208 KiB gives 416 KiB; the development VM's 4 MiB gives the
/// whole 2 MiB); a buffer already that wide is left alone, so the call never narrows one (where
/// `wmem_max` is below the default, or unreadable, it does nothing). Memory is taken only by bytes
/// in flight. Not for TCP sockets, whose buffers the kernel sizes itself unless told a size. Best
/// effort: errors are ignored.
pub(crate) fn widen_send_buffer(socket: BorrowedFd<'_>) {
    static GRANTED: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let granted = *GRANTED.get_or_init(|| {
        let max = std::fs::read_to_string("/proc/sys/net/core/wmem_max").ok().and_then(|s| s.trim().parse().ok());
        max.map_or(0, |max: usize| 2 * WIDE_SEND_BUFFER.min(max))
    });
    if rustix::net::sockopt::socket_send_buffer_size(socket).is_ok_and(|now| now < granted) {
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(socket, WIDE_SEND_BUFFER);
    }
}

/// Receives up to `max` bytes into the spare capacity of `buf` (which must have room for them),
/// extending its length by the number read. Returns that number; 0 means the peer closed.
///
/// Plain `recv(2)`: use it only where no descriptors can arrive (after the first byte of a frame,
/// which carries them), since descriptors attached to the data would be discarded.
pub(crate) fn recv_into_spare(socket: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    recv_into_spare_with(socket, buf, max, RecvFlags::empty())
}

/// Like [`recv_into_spare`] without blocking: `Ok(None)` when nothing is waiting.
pub(crate) fn try_recv_into_spare(socket: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
    match recv_into_spare_with(socket, buf, max, RecvFlags::DONTWAIT) {
        Err(io::Errno::AGAIN) => Ok(None),
        other => other.map(Some),
    }
}

fn recv_into_spare_with(socket: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize, flags: RecvFlags) -> io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let want = max.min(room);
    let start = buf.len();
    let spare = &mut buf.spare_capacity_mut()[..want];
    let n = loop {
        match rustix::net::recv(socket, &mut *spare, flags) {
            Err(io::Errno::INTR) => continue,
            other => break other?.0.0.len(),
        }
    };
    // SAFETY: `recv` initialized the first `n` bytes of the spare capacity, which start at `start`.
    unsafe { buf.set_len(start + n) };
    Ok(n)
}

/// Receive buffers with at least this much room ask for transparent huge pages. The allocator
/// maps allocations this large on their own (glibc: above 32 MiB always) and unmaps them when they
/// are freed, so the advice never outlives the buffer.
const HUGE_PAGE_MIN_ROOM: usize = 32 << 20;

/// Asks the kernel to back a large receive buffer with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`), when it has at least [`HUGE_PAGE_MIN_ROOM`] bytes of room. Callers
/// ask only once the bytes already received are worth it: a huge page is allocated whole at the
/// first touch of any of its bytes.
///
/// A buffer of 100 MB otherwise takes 24 000 page faults as the payload is copied in; with huge
/// pages it takes 50. The advised range is the whole buffer (the bytes already in it too) rounded
/// out to whole pages, so that it covers the allocation's whole mapping: advising part of a mapping
/// splits it, and a later `realloc` could then no longer grow it in place (it would copy). Best
/// effort: errors (no THP support) are ignored.
pub(crate) fn prefer_huge_pages(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < HUGE_PAGE_MIN_ROOM {
        return;
    }
    let page = rustix::param::page_size();
    let start = buf.as_mut_ptr() as usize;
    let end = start + buf.capacity();
    let first = start & !(page - 1);
    let last = end.next_multiple_of(page);
    // SAFETY: `first..last` is the allocation of `buf` (its bytes and its spare capacity), rounded
    // out to the pages it touches, which are mapped since the buffer lies in them. MADV_HUGEPAGE
    // only changes how the kernel backs pages (on their first touch, or when it collapses them
    // later); it changes neither the mapping nor any byte in it, so the bytes of the buffer and any
    // memory outside it in the edge pages are unaffected.
    let _ = unsafe { rustix::mm::madvise(first as *mut _, last - first, rustix::mm::Advice::LinuxHugepage) };
}

/// Receives into `buf` with plain `recv(2)` (see [`recv_into_spare`] for when that is allowed).
/// Returns the number of bytes read; 0 means the peer closed.
pub(crate) fn recv_plain(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(socket, &mut *buf, RecvFlags::empty()) {
            Err(io::Errno::INTR) => continue,
            other => return other.map(|(read, _)| read),
        }
    }
}

/// Like [`recv_plain`] without blocking: `Ok(None)` when nothing is waiting.
pub(crate) fn try_recv_plain(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::net::recv(socket, &mut *buf, RecvFlags::DONTWAIT) {
            Err(io::Errno::INTR) => continue,
            Err(io::Errno::AGAIN) => return Ok(None),
            other => return other.map(|(read, _)| Some(read)),
        }
    }
}

/// Copies up to `buf.len()` waiting bytes into `buf` without taking them and without blocking:
/// `Ok(None)` when nothing is waiting, `Ok(Some(0))` at end of file.
pub(crate) fn try_peek(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::net::recv(socket, &mut *buf, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Err(io::Errno::INTR) => continue,
            Err(io::Errno::AGAIN) => return Ok(None),
            other => return other.map(|(read, _)| Some(read)),
        }
    }
}

/// Which direction of a socket to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shutdown {
    /// No more reads.
    Read,
    /// No more writes (the peer reads end of file).
    Write,
}

/// `shutdown(2)`.
pub(crate) fn shutdown(socket: BorrowedFd<'_>, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => rustix::net::Shutdown::Read,
        Shutdown::Write => rustix::net::Shutdown::Write,
    };
    rustix::net::shutdown(socket, how)
}

/// Whether `socket` is a Unix-domain socket (only those can carry descriptors).
pub(crate) fn is_unix_socket(socket: BorrowedFd<'_>) -> bool {
    matches!(rustix::net::getsockname(socket), Ok(addr) if addr.address_family() == AddressFamily::UNIX)
}

/// Acknowledges what `socket` (TCP) received at once, instead of after the usual delay (Linux's
/// `TCP_QUICKACK`, which the kernel turns off again by itself). A peer whose next message waits
/// for that acknowledgement (Nagle's algorithm: CPython's `Client` sends its first request right
/// after its last handshake message) is spared up to 40 ms. Not TCP: nothing to do.
pub(crate) fn ack_now(socket: BorrowedFd<'_>) {
    let _ = rustix::net::sockopt::set_tcp_quickack(socket, true);
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_record_lands_in_the_spare_capacity_and_a_longer_one_is_refused_leaving_the_length() {
        let (a, b) = socketpair_cloexec(SocketKind::SeqPacket).unwrap();
        let mut buf = Vec::with_capacity(1000);
        buf.extend_from_slice(b"head:");
        assert_eq!(recv_record_into_spare(b.as_fd(), &mut buf, 100, false).unwrap(), None, "nothing waits");
        rustix::net::send(a.as_fd(), &[7u8; 100], rustix::net::SendFlags::empty()).unwrap();
        assert_eq!(recv_record_into_spare(b.as_fd(), &mut buf, 100, true).unwrap(), Some(100));
        assert_eq!((&buf[..5], &buf[5..], buf.len()), (&b"head:"[..], &[7u8; 100][..], 105));
        rustix::net::send(a.as_fd(), &[8u8; 200], rustix::net::SendFlags::empty()).unwrap();
        assert_eq!(recv_record_into_spare(b.as_fd(), &mut buf, 100, true), Err(io::Errno::MSGSIZE));
        assert_eq!(buf.len(), 105, "a refused record adds nothing");
        // The offer stops at the capacity.
        let mut full = Vec::with_capacity(10);
        rustix::net::send(a.as_fd(), &[9u8; 20], rustix::net::SendFlags::empty()).unwrap();
        assert_eq!(recv_record_into_spare(b.as_fd(), &mut full, 100, true), Err(io::Errno::MSGSIZE));
        drop(a);
        assert_eq!(recv_record_into_spare(b.as_fd(), &mut buf, 100, true).unwrap(), Some(0), "end of file");
    }

    #[test]
    fn a_widened_send_buffer_is_what_the_kernel_grants_and_is_left_alone_once_wide() {
        let (a, _b) = socketpair_cloexec(SocketKind::Stream).unwrap();
        let before = rustix::net::sockopt::socket_send_buffer_size(a.as_fd()).unwrap();
        widen_send_buffer(a.as_fd());
        let after = rustix::net::sockopt::socket_send_buffer_size(a.as_fd()).unwrap();
        // The kernel doubles what is asked, capped at `net.core.wmem_max`.
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max").unwrap().trim().parse().unwrap();
        assert_eq!(after, before.max(2 * WIDE_SEND_BUFFER.min(max)), "before {before}, wmem_max {max}");
        widen_send_buffer(a.as_fd());
        assert_eq!(rustix::net::sockopt::socket_send_buffer_size(a.as_fd()).unwrap(), after);
    }
}
