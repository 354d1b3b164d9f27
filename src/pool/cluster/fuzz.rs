//! The entry point of the fuzz target `cluster_feed` (through `multiproc::__private`): what a
//! broker (or anyone who can write to it) sends a node or a client, through the code that reads
//! it. See `fuzz/README.md`.

use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use redis::Value;

use super::{broker, direct, wire};

const KEY: &[u8] = b"the fuzz target's key";
const POOL: &str = "fuzz";
const CLIENT: &str = "fuzz-client";
const BUILD: &str = "00112233445566778899aabbccddeeff";
/// How long the reader waits for bytes: never reached, since the sending end is shut after the
/// input (end of file at once).
const WAIT: Duration = Duration::from_millis(200);

/// `input` as the bytes of a broker connection: read by the connection's real reader (over a Unix
/// socket pair whose sending end is shut after the input), and every reply then taken apart as a
/// node and a client take them: stream entries and their fields, task entries checked and
/// decoded, results checked and decoded. A task or result whose MAC the fuzzer cannot forge is
/// also signed here, so that its message reaches the decoders behind the MAC. The connection's
/// fast decoder must agree with the `redis` client's parser on every frame it decodes.
///
/// Must never panic, wait, or allocate beyond what the input holds. Inputs longer than the
/// socket's buffer (hundreds of KiB) are cut there.
#[doc(hidden)]
pub fn fuzz_feed(input: &[u8]) {
    agrees_with_the_clients_parser(input);
    let Ok((ours, broker)) = UnixStream::pair() else { return };
    if broker.set_nonblocking(true).is_err() {
        return;
    }
    // Non-blocking: what does not fit in the socket's buffer is left out.
    let _ = (&broker).write_all(input);
    if broker.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let mut reader = direct::Reader::over_unix(ours);
    while let Ok(Some(reply)) = reader.reply(WAIT, WAIT) {
        take_apart(&reply);
    }
}

/// Each whole frame at the front of `input`, in turn: what the fast decoder makes of it is what
/// the `redis` client's parser makes of it (or the decoder leaves the frame to that parser).
fn agrees_with_the_clients_parser(input: &[u8]) {
    let mut at = 0;
    while let Ok(Some(len)) = direct::frame_end(&input[at..]) {
        let frame = &input[at..at + len];
        if let Some(ours) = direct::decode(frame) {
            assert_eq!(Some(ours), redis::parse_redis_value(frame).ok(), "the fast decoder disagrees on {frame:?}");
        }
        at += len;
    }
}

/// A reply as the node and the client read theirs: an `XREADGROUP` or reclaim reply's entries,
/// a result list's items, and integers and texts (counts, ids, the reclaim's wait).
fn take_apart(value: &Value) {
    let _ = broker::int(value);
    let _ = broker::text(value);
    match value {
        Value::Array(items) => {
            for (_id, fields) in broker::entries(value) {
                as_a_node(&fields);
            }
            items.iter().for_each(take_apart);
        }
        Value::BulkString(bytes) => as_a_client(bytes),
        _ => {}
    }
}

/// A task entry's fields, as a node checks and decodes them: as sent, then with the message
/// signed by this build (so that it reaches the decoder).
fn as_a_node(fields: &[(String, Vec<u8>)]) {
    let _ = wire::open_task(KEY, POOL, BUILD, fields);
    if let Some(message) = broker::field(fields, "m") {
        let tag = wire::sign_task(KEY, POOL, BUILD, message);
        let signed = [
            ("b".to_string(), BUILD.as_bytes().to_vec()),
            ("m".to_string(), message.to_vec()),
            ("s".to_string(), tag.to_vec()),
        ];
        let _ = wire::open_task(KEY, POOL, BUILD, &signed);
    }
}

/// A result list's item, as a client checks and decodes it: as sent, then signed (so that it
/// reaches the decoder), and its outcome as the caller would see it.
fn as_a_client(item: &[u8]) {
    let _ = wire::read_result(KEY, POOL, CLIENT, item);
    if let Some(result) = wire::read_result(KEY, POOL, CLIENT, &wire::sign_result(KEY, POOL, CLIENT, item)) {
        let _ = result.outcome.into_result(&result.node);
    }
}

#[cfg(test)]
mod tests {
    /// The hook on a real node's feed traffic and on garbage: it returns (the fuzz target runs
    /// it on millions of inputs).
    #[test]
    fn the_hook_takes_replies_and_garbage() {
        let body = postcard::to_stdvec(&super::wire::ResultMessage {
            seq: 1,
            node: "n".into(),
            outcome: super::wire::WireOutcome::NodeLost { node: "m".into(), lease_ms: 5 },
        })
        .unwrap();
        let mut feed = b"*1\r\n*2\r\n$10\r\n{mp:p}:t:b\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\nm\r\n$4\r\na\r\nb\r\n$1\r\ns\r\n$0\r\n\r\n".to_vec();
        feed.extend_from_slice(format!("*2\r\n$4\r\nlist\r\n${}\r\n", body.len()).as_bytes());
        feed.extend_from_slice(&body);
        feed.extend_from_slice(b"\r\n:1\r\n-ERR x\r\n");
        super::fuzz_feed(&feed);
        super::fuzz_feed(b"");
        super::fuzz_feed(b"*3\r\n:1\r\n");
        super::fuzz_feed(&b"*1\r\n".repeat(100_000));
        super::fuzz_feed(&[0xff; 64]);
    }
}
