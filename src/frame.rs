//! Length-prefixed frames with attached descriptors, over a Unix stream socket.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes (CPython's `Connection`
//! framing for messages under 2 GiB). Descriptors ride as `SCM_RIGHTS` on the first chunk of the
//! frame. Used by the launch protocol; connections build on the same format.

use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{Error, IoContext, Result};
use crate::reduction::Message;
use crate::sys;

/// The largest frame this module reads; larger length prefixes are refused as corrupt.
pub(crate) const MAX_FRAME: usize = i32::MAX as usize;

/// Sends `message` as one frame on `socket`.
pub(crate) fn send(socket: BorrowedFd<'_>, message: &Message) -> Result<()> {
    let len = u32::try_from(message.bytes.len()).ok().filter(|&n| n as usize <= MAX_FRAME).ok_or_else(|| {
        Error::InvalidState(format!("a message of {} bytes is too large to frame", message.bytes.len()))
    })?;
    let header = len.to_be_bytes();
    let fds = message.borrowed_fds();
    let total = header.len() + message.bytes.len();
    let mut sent = sys::send_with_fds(socket, &[IoSlice::new(&header), IoSlice::new(&message.bytes)], &fds)
        .context("send a frame")?;
    while sent < total {
        let rest = if sent < header.len() {
            vec![IoSlice::new(&header[sent..]), IoSlice::new(&message.bytes)]
        } else {
            vec![IoSlice::new(&message.bytes[sent - header.len()..])]
        };
        sent += sys::send_with_fds(socket, &rest, &[]).context("send a frame")?;
    }
    Ok(())
}

/// Receives one frame from `socket`. `Ok(None)` means the peer closed before a frame began.
pub(crate) fn recv(socket: BorrowedFd<'_>, max_len: usize) -> Result<Option<Message>> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut header = [0u8; 4];
    if !fill(socket, &mut header, &mut fds, true)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max_len {
        return Err(Error::Codec {
            action: "decode",
            detail: format!("frame of {len} bytes exceeds the limit of {max_len}"),
        });
    }
    let mut bytes = vec![0u8; len];
    fill(socket, &mut bytes, &mut fds, false)?;
    Ok(Some(Message { bytes, fds }))
}

/// Reads exactly `buf.len()` bytes. Returns `false` if the peer closed before the first byte and
/// `eof_ok` is set; a close in the middle is an error.
fn fill(socket: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>, eof_ok: bool) -> Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let n = sys::recv_with_fds(socket.as_fd(), &mut buf[got..], fds).context("receive a frame")?;
        if n == 0 {
            if got == 0 && eof_ok {
                return Ok(false);
            }
            return Err(Error::io(
                "receive a frame",
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the peer closed in the middle of a message"),
            ));
        }
        got += n;
    }
    Ok(true)
}
