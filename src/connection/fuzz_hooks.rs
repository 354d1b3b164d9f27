//! Entry points for the fuzz targets in `fuzz/` (reached through `multiproc::__private::fuzz`):
//! each feeds arbitrary bytes to one decoder through a real socket, as a peer would send them.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::auth::client_handshake;
use super::{Connection, answer_challenge, deliver_challenge};

/// How long a fuzz case may wait for bytes that never come (the input ran out).
const PATIENCE: Duration = Duration::from_millis(200);

/// A connection whose peer has sent `input` and then shut down its sending side (it still takes
/// what we send; it is returned to be kept alive).
fn fed_with(input: &[u8]) -> Option<(Connection, UnixStream)> {
    let (mut peer, ours) = UnixStream::pair().ok()?;
    // Unix stream sockets buffer far more than a fuzz input, so this does not block.
    peer.write_all(input).ok()?;
    peer.shutdown(std::net::Shutdown::Write).ok()?;
    let mut conn = Connection::from(ours);
    conn.set_timeout(Some(PATIENCE));
    conn.set_max_message_size(1 << 20);
    Some((conn, peer))
}

/// Reads frames (as bytes, into a short buffer, and as values) until the input is exhausted or
/// refused. Must never panic or allocate beyond the limit.
pub fn frames(input: &[u8]) {
    let Some((mut conn, _peer)) = fed_with(input) else { return };
    let mut small = [0u8; 16];
    // A bounded number of messages (an input holds at most a few thousand).
    for round in 0..10_000 {
        let outcome = match round % 3 {
            0 => conn.recv_bytes().map(drop),
            1 => conn.recv_bytes_into(&mut small).map(drop),
            _ => conn.recv::<(u32, String, Vec<u8>)>().map(drop),
        };
        if matches!(outcome, Err(crate::Error::Eof | crate::Error::Protocol(_) | crate::Error::MessageTooLarge { .. }))
        {
            return;
        }
    }
}

/// Runs the listener's side of the handshake against a peer that sent `input`.
pub fn handshake_as_listener(input: &[u8]) {
    let Some((mut conn, _peer)) = fed_with(input) else { return };
    if deliver_challenge(&mut conn, b"fuzz-key").is_ok() {
        let _ = answer_challenge(&mut conn, b"fuzz-key");
    }
}

/// Runs the client's side of the handshake against a peer that sent `input`: CPython's two steps
/// one after the other, then (on a second connection fed the same bytes) this crate's
/// `client_handshake`, which sends its challenge before it reads the verdict (what `connect` runs).
pub fn handshake_as_client(input: &[u8]) {
    let Some((mut conn, _peer)) = fed_with(input) else { return };
    if answer_challenge(&mut conn, b"fuzz-key").is_ok() {
        let _ = deliver_challenge(&mut conn, b"fuzz-key");
    }
    let Some((mut conn, _peer)) = fed_with(input) else { return };
    let _ = client_handshake(&mut conn, b"fuzz-key");
}

/// Decodes `input` as the records of a pipe's ring (what a peer process could have written into
/// the shared memory): every record taken must lie within what was published, and decoding must
/// end. Must never panic or read out of bounds.
pub fn ring_records(input: &[u8]) {
    let Ok(rings) = crate::shm::Shared::<super::ring::Rings>::new() else { return };
    let direction = rings.outgoing(0);
    direction.publish_raw_for_fuzzing(input);
    let mut taken = 0;
    while let Some(popped) = direction.pop() {
        taken += 1;
        assert!(taken <= input.len() / 8, "more records than the input holds");
        match popped {
            super::ring::Popped::Message(message) => {
                assert!(message.len() <= input.len(), "a message longer than the input");
            }
            // The pieces of a streamed message, taken as a receiver takes them (into a buffer of
            // at most a piece's size: the claimed length is not trusted).
            super::ring::Popped::Streamed { len } => {
                let mut left = usize::try_from(len).unwrap_or(usize::MAX);
                let mut buf = Vec::new();
                while let Ok(super::ring::Piece::Ready(n)) = direction.next_piece(left) {
                    taken += 1;
                    assert!(taken <= input.len() / 8, "more records than the input holds");
                    assert!(n <= left && n <= input.len(), "a piece beyond the message or the input");
                    if direction.take_piece_into(&mut buf, n).is_err() {
                        break;
                    }
                    left -= n;
                }
            }
            super::ring::Popped::OnSocket => {}
        }
    }
}
