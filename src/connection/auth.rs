//! The authentication handshake of CPython's `Listener` and `Client`: HMAC challenge and response.
//!
//! ```text
//! challenger → responder   "#CHALLENGE#" + M        M = "{sha256}" + 40 random bytes
//! responder  → challenger  "{sha256}" + HMAC-SHA256(key, M)
//! challenger → responder   "#WELCOME#"  or  "#FAILURE#"
//! ```
//!
//! Every step is one framed message, read with a limit of 256 bytes. The MAC covers the whole of
//! `M`, digest prefix included, so a downgrade is detected. The listener challenges first and then
//! answers; the client answers and then challenges: authentication is mutual, six messages. Our
//! client sends its challenge right behind its response ([`client_handshake`]), which saves it a
//! wait without changing a byte on the wire.
//!
//! Older peers (CPython 3.11 and before) send a bare 20-byte challenge and answer with a bare
//! 16-byte HMAC-MD5. A responder seeing a 16- or 20-byte challenge answers that way; a challenger
//! accepts a 16- or 20-byte response as HMAC-MD5. Accepted digests: md5, sha256, sha384, sha3_256,
//! sha3_384.

use std::io;

use hmac::{Hmac, Mac};

use super::Connection;
use crate::error::{Error, IoContext, Result};
use crate::sys;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a challenge (CPython 3.12+; 20 before).
const CHALLENGE_RANDOM_LEN: usize = 40;
/// The shortest challenge a responder accepts.
const MIN_CHALLENGE_LEN: usize = 20;
/// Messages of these lengths are the legacy, unprefixed form.
const LEGACY_LENGTHS: [usize; 2] = [16, 20];
/// Every handshake message is read with this limit.
const MAX_HANDSHAKE_MESSAGE: u64 = 256;
/// The longest digest name ("sha3_256").
const MAX_DIGEST_NAME: usize = 8;

/// A digest the handshake may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
    Sha3_256,
    Sha3_384,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Digest> {
        Some(match name {
            b"md5" => Digest::Md5,
            b"sha256" => Digest::Sha256,
            b"sha384" => Digest::Sha384,
            b"sha3_256" => Digest::Sha3_256,
            b"sha3_384" => Digest::Sha3_384,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha3_256 => "sha3_256",
            Digest::Sha3_384 => "sha3_384",
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            Digest::Md5 => hmac_of::<Hmac<md5::Md5>>(key, message),
            Digest::Sha256 => hmac_of::<Hmac<sha2::Sha256>>(key, message),
            Digest::Sha384 => hmac_of::<Hmac<sha2::Sha384>>(key, message),
            Digest::Sha3_256 => hmac_of::<Hmac<sha3::Sha3_256>>(key, message),
            Digest::Sha3_384 => hmac_of::<Hmac<sha3::Sha3_384>>(key, message),
        }
    }
}

#[allow(clippy::unreachable, reason = "HMAC takes keys of any length: new_from_slice cannot fail")]
fn hmac_of<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Splits a challenge or response into its digest and payload; `None` as the digest means the
/// legacy form (HMAC-MD5, no prefix).
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8])> {
    if LEGACY_LENGTHS.contains(&message.len()) {
        return Ok((None, message));
    }
    if message.first() == Some(&b'{') {
        let search = &message[1..message.len().min(MAX_DIGEST_NAME + 2)];
        if let Some(close) = search.iter().position(|&b| b == b'}')
            && let Some(digest) = Digest::from_name(&search[..close])
        {
            return Ok((Some(digest), &message[close + 2..]));
        }
    }
    Err(Error::Authentication(format!(
        "unsupported message length, missing digest prefix, or unsupported digest in a message of {} bytes",
        message.len()
    )))
}

/// The response to challenge `message` (the part after `#CHALLENGE#`).
fn response_to(key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    match digest_and_payload(message)? {
        (None, _) => Ok(Digest::Md5.mac(key, message)),
        (Some(digest), _) => {
            let mut response = format!("{{{}}}", digest.name()).into_bytes();
            response.extend(digest.mac(key, message));
            Ok(response)
        }
    }
}

/// Checks `response` to challenge `message`.
fn verify(key: &[u8], message: &[u8], response: &[u8]) -> Result<()> {
    let (digest, mac) = digest_and_payload(response)?;
    let digest = digest.unwrap_or(Digest::Md5);
    let expected = digest.mac(key, message);
    if expected.len() != mac.len() {
        return Err(Error::Authentication(format!(
            "expected a {} digest of {} bytes, got {} bytes",
            digest.name(),
            expected.len(),
            mac.len()
        )));
    }
    // Constant-time comparison: the time taken must not tell how much of the digest was right.
    let equal = expected.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !equal {
        return Err(Error::Authentication("digest received was wrong: the peer has a different authkey".into()));
    }
    Ok(())
}

/// Challenges the peer to prove it holds `authkey` (CPython `deliver_challenge`): sends a
/// challenge, checks the response, and answers `#WELCOME#` or `#FAILURE#`.
///
/// # Errors
///
/// [`Error::Authentication`] when the response is wrong or malformed (the peer was told
/// `#FAILURE#`); connection errors as they come.
pub fn deliver_challenge(conn: &mut Connection, authkey: &[u8]) -> Result<()> {
    let message = new_challenge()?;
    conn.send_bytes(&[CHALLENGE, &message].concat())?;
    judge_response(conn, authkey, &message)
}

/// A fresh challenge (what follows `#CHALLENGE#`).
fn new_challenge() -> Result<Vec<u8>> {
    let random: [u8; CHALLENGE_RANDOM_LEN] = sys::random_bytes().context("draw a random challenge")?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&random);
    Ok(message)
}

/// Reads the response to challenge `message` and tells the peer `#WELCOME#` or `#FAILURE#`.
fn judge_response(conn: &mut Connection, authkey: &[u8], message: &[u8]) -> Result<()> {
    let response = conn.recv_bytes_max(MAX_HANDSHAKE_MESSAGE)?;
    match verify(authkey, message, &response) {
        Ok(()) => conn.send_bytes(WELCOME),
        Err(e) => {
            // Tell the peer; if that fails too, the authentication error is the one that matters.
            let _ = conn.send_bytes(FAILURE);
            Err(e)
        }
    }
}

/// Answers the peer's challenge with `authkey` (CPython `answer_challenge`).
///
/// # Errors
///
/// [`Error::Authentication`] when the first message is not a challenge, or the peer rejected the
/// response (a different key); connection errors as they come.
pub fn answer_challenge(conn: &mut Connection, authkey: &[u8]) -> Result<()> {
    let challenge = conn.recv_bytes_max(MAX_HANDSHAKE_MESSAGE)?;
    conn.send_bytes(&response_to(authkey, challenge_in(&challenge)?)?)?;
    expect_welcome(conn)
}

/// The connecting side's handshake: [`answer_challenge`] then [`deliver_challenge`], the same
/// six messages, except that this side's challenge leaves together with its response instead of
/// after the peer's verdict. The listener reads them in turn (CPython's listener and ours alike:
/// each reads one framed message at a time), so the connection waits for the peer three times
/// instead of four, counting the first request's reply.
///
/// # Errors
///
/// As [`answer_challenge`] and [`deliver_challenge`]. A listener that refuses the response may
/// close the connection before this side's challenge is out, or with it unread (which resets the
/// connection): the verdict is read all the same, and a reset before it is reported as the
/// refusal it is.
pub(crate) fn client_handshake(conn: &mut Connection, authkey: &[u8]) -> Result<()> {
    let challenge = conn.recv_bytes_max(MAX_HANDSHAKE_MESSAGE)?;
    let response = response_to(authkey, challenge_in(&challenge)?)?;
    let ours = new_challenge()?;
    conn.send_bytes(&response)?;
    // A listener that refused the response may have closed already: its verdict comes first.
    let challenged = conn.send_bytes(&[CHALLENGE, &ours].concat());
    match expect_welcome(conn) {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::ConnectionReset => {
            return Err(refused());
        }
        verdict => verdict?,
    }
    challenged?;
    judge_response(conn, authkey, &ours)
}

/// The challenge in a `#CHALLENGE#` message.
fn challenge_in(challenge: &[u8]) -> Result<&[u8]> {
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(Error::Authentication(format!(
            "protocol error: expected a challenge, got {:?}",
            String::from_utf8_lossy(&challenge[..challenge.len().min(32)])
        )));
    };
    if message.len() < MIN_CHALLENGE_LEN {
        return Err(Error::Authentication(format!("challenge too short: {} bytes", message.len())));
    }
    Ok(message)
}

/// Reads the peer's verdict on this side's response.
fn expect_welcome(conn: &mut Connection) -> Result<()> {
    let verdict = conn.recv_bytes_max(MAX_HANDSHAKE_MESSAGE)?;
    if verdict != WELCOME {
        return Err(refused());
    }
    Ok(())
}

fn refused() -> Error {
    Error::Authentication("digest sent was rejected: the peer has a different authkey".into())
}

/// The listener's side of the handshake ([`deliver_challenge`] then [`answer_challenge`], the same
/// messages), as a state machine that never blocks: a listener drives many at once, so that a
/// client that stops halfway holds up nobody but itself.
#[derive(Debug)]
pub(crate) struct ServerHandshake {
    stage: Stage,
    /// The challenge this side sent (what the client's response must sign).
    challenge: Vec<u8>,
    /// A frame being written, and how much of it is out.
    out: Vec<u8>,
    sent: usize,
    /// A frame being read: its 4-byte length, then its payload.
    incoming: Vec<u8>,
    /// The error to report once the `#FAILURE#` verdict is out.
    failed: Option<Error>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    SendChallenge,
    ReadResponse,
    SendVerdict,
    ReadChallenge,
    SendAnswer,
    ReadWelcome,
    Done,
}

/// What a [`ServerHandshake`] waits for after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeStep {
    /// The connection must become ready for this before the next step.
    Wants(sys::Interest),
    /// Both sides are authenticated.
    Done,
}

/// A message as CPython frames it on a socket (4-byte big-endian length: handshake messages are
/// short).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

impl ServerHandshake {
    /// A handshake whose first message, the challenge, is ready to go.
    ///
    /// # Errors
    ///
    /// No randomness for the challenge.
    pub(crate) fn new() -> Result<ServerHandshake> {
        let challenge = new_challenge()?;
        let out = frame(&[CHALLENGE, &challenge].concat());
        Ok(ServerHandshake { stage: Stage::SendChallenge, challenge, out, sent: 0, incoming: Vec::new(), failed: None })
    }

    /// Goes as far as `io` (a non-blocking socket) allows without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Authentication`] for a wrong key or a protocol error (the client is told
    /// `#FAILURE#` first where it sent a wrong response), [`Error::MessageTooLarge`] for a message
    /// over 256 bytes, [`Error::Eof`] when the client leaves, other I/O errors.
    pub(crate) fn advance(&mut self, key: &[u8], io: &mut (impl io::Read + io::Write)) -> Result<HandshakeStep> {
        loop {
            match self.stage {
                Stage::SendChallenge | Stage::SendVerdict | Stage::SendAnswer => {
                    if !self.write_some(io)? {
                        return Ok(HandshakeStep::Wants(sys::Interest::Write));
                    }
                    self.stage = match self.stage {
                        Stage::SendChallenge => Stage::ReadResponse,
                        Stage::SendVerdict => match self.failed.take() {
                            Some(e) => return Err(e),
                            None => Stage::ReadChallenge,
                        },
                        _ => Stage::ReadWelcome,
                    };
                }
                Stage::ReadResponse | Stage::ReadChallenge | Stage::ReadWelcome => {
                    let Some(message) = self.read_frame(io)? else {
                        return Ok(HandshakeStep::Wants(sys::Interest::Read));
                    };
                    self.received(key, &message)?;
                }
                Stage::Done => return Ok(HandshakeStep::Done),
            }
        }
    }

    /// Acts on a complete message from the client.
    fn received(&mut self, key: &[u8], message: &[u8]) -> Result<()> {
        match self.stage {
            Stage::ReadResponse => {
                let verdict = match verify(key, &self.challenge, message) {
                    Ok(()) => WELCOME,
                    Err(e) => {
                        self.failed = Some(e);
                        FAILURE
                    }
                };
                self.queue(verdict, Stage::SendVerdict);
            }
            Stage::ReadChallenge => {
                let Some(challenge) = message.strip_prefix(CHALLENGE) else {
                    return Err(Error::Authentication(format!(
                        "protocol error: expected a challenge, got {:?}",
                        String::from_utf8_lossy(&message[..message.len().min(32)])
                    )));
                };
                if challenge.len() < MIN_CHALLENGE_LEN {
                    return Err(Error::Authentication(format!("challenge too short: {} bytes", challenge.len())));
                }
                let answer = response_to(key, challenge)?;
                self.queue(&answer, Stage::SendAnswer);
            }
            _ => {
                if message != WELCOME {
                    return Err(Error::Authentication(
                        "digest sent was rejected: the peer has a different authkey".into(),
                    ));
                }
                self.stage = Stage::Done;
            }
        }
        Ok(())
    }

    fn queue(&mut self, payload: &[u8], stage: Stage) {
        self.out = frame(payload);
        self.sent = 0;
        self.stage = stage;
    }

    /// Writes what it can of the frame going out; true once all of it is.
    fn write_some(&mut self, io: &mut impl io::Write) -> Result<bool> {
        while self.sent < self.out.len() {
            match io.write(&self.out[self.sent..]) {
                Ok(0) => return Err(Error::Eof),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("send a handshake message", e)),
            }
        }
        Ok(true)
    }

    /// Reads what it can of the frame coming in; the payload once all of it is there. A length over
    /// the handshake limit is refused before anything more is read.
    fn read_frame(&mut self, io: &mut impl io::Read) -> Result<Option<Vec<u8>>> {
        loop {
            let need = match self.incoming.get(..4) {
                None => 4,
                Some(header) => {
                    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                    // -1 announces an 8-byte length: never a handshake message either.
                    if u64::from(len) > MAX_HANDSHAKE_MESSAGE {
                        return Err(Error::MessageTooLarge { len: u64::from(len), limit: MAX_HANDSHAKE_MESSAGE });
                    }
                    4 + len as usize
                }
            };
            if self.incoming.len() >= 4 && self.incoming.len() == need {
                let message = self.incoming.split_off(4);
                self.incoming.clear();
                return Ok(Some(message));
            }
            let mut chunk = [0u8; MAX_HANDSHAKE_MESSAGE as usize + 4];
            let want = need - self.incoming.len();
            match io.read(&mut chunk[..want]) {
                Ok(0) => return Err(Error::Eof),
                Ok(n) => self.incoming.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("receive a handshake message", e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"secret-key";

    #[test]
    fn responses_verify_for_every_form() {
        // AUTH-03: legacy 20-byte, {md5}- and {sha256}-prefixed challenges.
        let legacy = [7u8; 20].to_vec();
        let md5 = [b"{md5}".as_slice(), &[1u8; 40]].concat();
        let sha = [b"{sha256}".as_slice(), &[2u8; 40]].concat();
        let sha3 = [b"{sha3_384}".as_slice(), &[3u8; 40]].concat();
        for message in [&legacy, &md5, &sha, &sha3] {
            let response = response_to(KEY, message).unwrap();
            verify(KEY, message, &response).unwrap();
            assert!(verify(b"other", message, &response).is_err());
        }
        assert_eq!(response_to(KEY, &legacy).unwrap().len(), 16);
        assert!(response_to(KEY, &md5).unwrap().starts_with(b"{md5}"));
        assert!(response_to(KEY, &sha).unwrap().starts_with(b"{sha256}"));
    }

    #[test]
    fn known_vector_matches_cpython() {
        // hmac.new(b"secret-key", b"{sha256}" + bytes(range(40)), "sha256").hexdigest()
        let message = [b"{sha256}".as_slice(), &(0u8..40).collect::<Vec<_>>()].concat();
        let response = response_to(KEY, &message).unwrap();
        let hex: String = response[8..].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, KNOWN_SHA256);
    }

    const KNOWN_SHA256: &str = "39c4ff3268da80f68b36eb46879c33a2dedb3ac28faebb6a0279ac6a912624d9";

    /// How long a test's side waits for the other: a guard against a hang, long enough for a
    /// loaded valgrind run (where 5 s once ran out), no claim about speed.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

    /// A listener that does CPython's two steps one message at a time, except that it reads the
    /// client's challenge before it sends its verdict: a client that waited for the verdict first
    /// would stall here until its timeout.
    fn strict_listener(stream: std::os::unix::net::UnixStream, key: &'static [u8]) -> Result<Vec<u8>> {
        let mut conn: Connection = Connection::from(stream);
        conn.set_timeout(Some(PATIENCE));
        let ours = new_challenge()?;
        conn.send_bytes(&[CHALLENGE, &ours].concat())?;
        let response = conn.recv_bytes_max(MAX_HANDSHAKE_MESSAGE)?;
        let theirs = conn.recv_bytes_max(MAX_HANDSHAKE_MESSAGE)?;
        if verify(key, &ours, &response).is_err() {
            conn.send_bytes(FAILURE)?;
            return Ok(FAILURE.to_vec());
        }
        conn.send_bytes(WELCOME)?;
        conn.send_bytes(&response_to(key, challenge_in(&theirs)?)?)?;
        conn.recv_bytes_max(MAX_HANDSHAKE_MESSAGE)
    }

    #[test]
    fn the_client_sends_its_challenge_with_its_response() {
        let (client, listener) = std::os::unix::net::UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || strict_listener(listener, KEY));
        let mut conn: Connection = Connection::from(client);
        conn.set_timeout(Some(PATIENCE));
        client_handshake(&mut conn, KEY).unwrap();
        assert_eq!(server.join().unwrap().unwrap(), WELCOME);
    }

    #[test]
    fn a_refused_client_hears_so() {
        for _ in 0..20 {
            let (client, listener) = std::os::unix::net::UnixStream::pair().unwrap();
            // This listener reads the client's challenge before its verdict, then closes; a
            // challenge left unread (a reset) is the wrong-key tests' case in tests/connection.rs.
            let server = std::thread::spawn(move || strict_listener(listener, b"another key"));
            let mut conn: Connection = Connection::from(client);
            conn.set_timeout(Some(PATIENCE));
            let refused = client_handshake(&mut conn, KEY);
            assert!(matches!(refused, Err(Error::Authentication(_))), "{refused:?}");
            assert_eq!(server.join().unwrap().unwrap(), FAILURE);
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(digest_and_payload(b"{sha1}abcdefghijklmnopqrstuvwxyz").is_err());
        assert!(digest_and_payload(b"no prefix at all, and not 16 or 20 long").is_err());
        assert!(digest_and_payload(b"{sha256").is_err());
        assert!(digest_and_payload(b"").is_err());
        assert!(verify(KEY, b"{sha256}0123456789012345678901234567890123456789", b"{sha256}short").is_err());
    }
}
