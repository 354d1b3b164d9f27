//! The payload of a large message, read after its header: from the socket, or streamed in pieces
//! through a pipe's ring (and from the socket after all, where the sender's ring stayed full).

use std::os::fd::BorrowedFd;

use super::RingLink;
use super::frame::{self, Deadline, Watched};
use super::ring::{self, Piece};
use crate::error::{Error, Result};
use crate::sync::lock_state::LIVENESS_SLICE;
use crate::sync::spin::SpinState;

/// A reader of one message's payload. The caller holds the readers' turn of a streamed message
/// (`SocketRead`) while it reads.
pub(super) struct Payload<'a> {
    fd: BorrowedFd<'a>,
    watched: Watched<'a>,
    /// The ring the payload streams through; `None` once it is (or always was) on the socket.
    ring: Option<&'a RingLink>,
    /// Bytes of the payload not taken yet from the ring or the socket.
    left: u64,
    /// A piece taken whole that the caller's buffer could not hold whole, and how much of it
    /// was handed out.
    carry: Vec<u8>,
    carried: usize,
    spin: SpinState,
}

impl<'a> Payload<'a> {
    /// The payload of `len` bytes: streamed through `ring` if given, else on the socket `fd`.
    pub(super) fn new(fd: BorrowedFd<'a>, watched: Watched<'a>, ring: Option<&'a RingLink>, len: u64) -> Self {
        Payload { fd, watched, ring, left: len, carry: Vec::new(), carried: 0, spin: SpinState::default() }
    }

    /// Reads the next `buf.len()` bytes of the payload.
    ///
    /// # Errors
    ///
    /// Those of a receive in the middle of a message: end of file, the deadline, a sender that
    /// died in the middle ([`Error::Protocol`]), garbage in the ring.
    pub(super) fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            if self.carried < self.carry.len() {
                let n = (buf.len() - got).min(self.carry.len() - self.carried);
                buf[got..got + n].copy_from_slice(&self.carry[self.carried..self.carried + n]);
                (got, self.carried) = (got + n, self.carried + n);
                continue;
            }
            let Some(link) = self.ring else {
                frame::recv_exact(self.fd, &mut buf[got..], self.watched)?;
                self.left -= (buf.len() - got) as u64;
                return Ok(());
            };
            let direction = link.incoming();
            match direction.next_piece(self.left_in_memory()?)? {
                Piece::Ready(n) if n <= buf.len() - got => {
                    direction.take_piece(&mut buf[got..got + n])?;
                    got += n;
                    self.left -= n as u64;
                }
                Piece::Ready(n) => {
                    self.carry.clear();
                    self.carried = 0;
                    direction.take_piece_into(&mut self.carry, n)?;
                    self.left -= n as u64;
                }
                Piece::Wait => self.wait_for_piece(link)?,
                Piece::RestOnSocket => self.rest_on_socket()?,
            }
        }
        Ok(())
    }

    /// Reads the whole payload (none of it read yet) into a new buffer, grown as bytes arrive (as
    /// [`frame::recv_payload`] does: a length that lies costs no more than the bytes sent).
    ///
    /// # Errors
    ///
    /// As [`read_exact`](Self::read_exact)'s.
    pub(super) fn read_all(mut self) -> Result<Vec<u8>> {
        let len = self.left_in_memory()?;
        if self.ring.is_none() {
            return frame::recv_payload(self.fd, self.left, self.watched);
        }
        let mut buf: Vec<u8> = Vec::with_capacity(len.min(frame::FIRST_ALLOCATION));
        while buf.len() < len {
            let Some(link) = self.ring else {
                frame::recv_payload_into(self.fd, &mut buf, len, self.watched)?;
                break;
            };
            let direction = link.incoming();
            match direction.next_piece(len - buf.len())? {
                Piece::Ready(n) => {
                    frame::make_room(&mut buf, len, n);
                    direction.take_piece_into(&mut buf, n)?;
                    self.left -= n as u64;
                }
                Piece::Wait => self.wait_for_piece(link)?,
                Piece::RestOnSocket => self.rest_on_socket()?,
            }
        }
        Ok(buf)
    }

    /// What is left, as a length in memory.
    fn left_in_memory(&self) -> Result<usize> {
        usize::try_from(self.left).map_err(|_| Error::Protocol(format!("a message of {} bytes", self.left)))
    }

    /// Waits for the sender's next piece: spinning a little, then asleep on the doorbell in
    /// slices, checking between them that the sender is still alive.
    fn wait_for_piece(&self, link: &RingLink) -> Result<()> {
        let direction = link.incoming();
        let deadline = self.watched.deadline;
        let ready = || direction.has_data() || direction.is_broken();
        loop {
            if ready() || self.spin.spin(deadline, ready) {
                return Ok(());
            }
            let slice = Deadline::after(Some(deadline.left().map_or(LIVENESS_SLICE, |left| left.min(LIVENESS_SLICE))));
            match link.sleep(self.fd, slice)? {
                None if deadline.passed() => return Err(deadline.timeout_error()),
                None => direction.check_sender()?,
                Some(true) if !direction.has_data() => return Err(frame::eof_during_message()),
                Some(_) => {}
            }
        }
    }

    /// The sender's ring stayed full: the rest of the payload comes on the socket, as a frame of
    /// its own.
    fn rest_on_socket(&mut self) -> Result<()> {
        let mut fds = Vec::new();
        match ring::read_socket_header(self.fd, &mut fds, self.watched)? {
            Some(len) if len == self.left && fds.is_empty() => {
                self.ring = None;
                Ok(())
            }
            Some(len) => Err(Error::Protocol(format!(
                "the rest of a large message on a pipe's socket claims {len} bytes where {} were left",
                self.left
            ))),
            None => Err(frame::eof_during_message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;

    #[test]
    fn a_streamed_message_over_the_limit_is_skipped_across_piece_boundaries_and_the_pipe_goes_on() {
        // The skip reads in 64 KiB steps, which end inside pieces: the rest of such a piece is
        // carried to the next step.
        let (mut a, mut b) = crate::pipe().unwrap();
        b.set_max_message_size(1000);
        let sender = std::thread::spawn(move || {
            a.send_bytes(&vec![3u8; 300_001]).unwrap();
            a.send_bytes(b"after").unwrap();
            a
        });
        assert!(matches!(b.recv_bytes_or_skip(), Err(Error::MessageTooLarge { len: 300_001, limit: 1000 })));
        assert_eq!(b.recv_bytes_or_skip().unwrap(), b"after");
        drop(sender.join().unwrap());
    }
}
