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
//! answers; the client answers and then challenges: authentication is mutual, six messages.
//!
//! Older peers (CPython 3.11 and before) send a bare 20-byte challenge and answer with a bare
//! 16-byte HMAC-MD5. A responder seeing a 16- or 20-byte challenge answers that way; a challenger
//! accepts a 16- or 20-byte response as HMAC-MD5. Accepted digests: md5, sha256, sha384, sha3_256,
//! sha3_384.

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
    let random: [u8; CHALLENGE_RANDOM_LEN] = sys::random_bytes().context("draw a random challenge")?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&random);
    conn.send_bytes(&[CHALLENGE, &message].concat())?;
    let response = conn.recv_bytes_max(MAX_HANDSHAKE_MESSAGE)?;
    match verify(authkey, &message, &response) {
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
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(Error::Authentication(format!(
            "protocol error: expected a challenge, got {:?}",
            String::from_utf8_lossy(&challenge[..challenge.len().min(32)])
        )));
    };
    if message.len() < MIN_CHALLENGE_LEN {
        return Err(Error::Authentication(format!("challenge too short: {} bytes", message.len())));
    }
    conn.send_bytes(&response_to(authkey, message)?)?;
    let verdict = conn.recv_bytes_max(MAX_HANDSHAKE_MESSAGE)?;
    if verdict != WELCOME {
        return Err(Error::Authentication("digest sent was rejected: the peer has a different authkey".into()));
    }
    Ok(())
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

    #[test]
    fn garbage_is_refused() {
        assert!(digest_and_payload(b"{sha1}abcdefghijklmnopqrstuvwxyz").is_err());
        assert!(digest_and_payload(b"no prefix at all, and not 16 or 20 long").is_err());
        assert!(digest_and_payload(b"{sha256").is_err());
        assert!(digest_and_payload(b"").is_err());
        assert!(verify(KEY, b"{sha256}0123456789012345678901234567890123456789", b"{sha256}short").is_err());
    }
}
