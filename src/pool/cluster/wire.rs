//! What crosses the broker: task and result messages, the build fingerprint that names which
//! binary may run a task, and the HMAC that proves a message came from a holder of the pool's key.
//!
//! A task names its function by a code offset (see `pool/task.rs`), which only means something in
//! the very same build; and a code offset is a code pointer, so a node must not take one from
//! anyone who can write to the broker. Hence every task entry carries the client's build
//! fingerprint and a MAC over the fingerprint and the message, and a node checks both before it
//! turns an offset into a function. Results are signed too, so a broker writer cannot forge them.

use std::sync::OnceLock;
use std::time::Duration;

use hmac::Mac;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pool::protocol::Blob;
use crate::pool::task::TaskFailure;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The length of a MAC.
pub(crate) const MAC_LEN: usize = 32;

/// This program's build fingerprint: 16 bytes of SHA-256 over the crate version and the
/// executable's GNU build-id (or, without one, the SHA-256 of the executable), as 32 hex digits.
pub(crate) fn fingerprint() -> Result<&'static str> {
    static FP: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    FP.get_or_init(|| {
        let (kind, id) = crate::sys::build_identity().map_err(|e| e.to_string())?;
        Ok(fingerprint_of(kind, &id, std::env::var(SALT_VAR).ok().as_deref()))
    })
    .as_deref()
    .map_err(|e| Error::Broker {
        action: "cannot name this build".into(),
        detail: format!("reading /proc/self/exe: {e}"),
    })
}

/// A test-only variable: a node started with it claims a build that no real binary has (the salt
/// is hashed in), to check how other builds are refused. It cannot make a node accept another
/// build's tasks: it only changes its own fingerprint to one nobody else has.
pub(crate) const SALT_VAR: &str = "__MULTIPROC_CLUSTER_TEST_BUILD_SALT";

fn fingerprint_of(kind: &str, id: &[u8], salt: Option<&str>) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"multiproc cluster build\0");
    hash.update(env!("CARGO_PKG_VERSION").as_bytes());
    hash.update([0]);
    hash.update(kind.as_bytes());
    hash.update([0]);
    hash.update(id);
    if let Some(salt) = salt {
        hash.update(b"\0test salt\0");
        hash.update(salt.as_bytes());
    }
    hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// One chunk as a task entry carries it (postcard in the entry's `m` field).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskMessage {
    /// The submitting client's id: its result list and liveness record are named by it.
    pub(crate) client: String,
    /// The client's number for this submission of the chunk, echoed in the result.
    pub(crate) seq: u64,
    /// Calls in the chunk (for counters).
    pub(crate) tasks: u32,
    /// The chunk entry's code offset.
    pub(crate) entry: i64,
    /// The encoded argument tuples.
    pub(crate) args: Blob,
    /// The per-chunk time limit, enforced by the node's local pool.
    pub(crate) timeout_ms: Option<u64>,
    /// Runs left after this one: shared by worker deaths in the node and node losses.
    pub(crate) retries: u32,
    /// The result goes to a list of its own (`Keys::waiting`), which the calling thread itself
    /// reads (a synchronous `apply`), instead of the client's result list.
    pub(crate) waiting: bool,
}

/// A chunk's outcome as a node reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireOutcome {
    /// The encoded `Vec` of results.
    Done(Blob),
    /// The task returned `Err` (with the error's type and, for `Typed`, its value) or panicked.
    Failed(TaskFailure),
    /// The worker process running it died in the node.
    WorkerDied { pid: i32, how: String },
    /// It ran past its time limit.
    TimedOut { ms: u64 },
    /// A node lost it and its retries were spent.
    NodeLost { node: String, lease_ms: u64 },
    /// The node refused it (an argument it could not decode, a protocol error).
    Refused(String),
}

impl WireOutcome {
    /// The outcome of a local pool's chunk, as a node reports it.
    pub(crate) fn from_local(outcome: Result<Vec<u8>>) -> WireOutcome {
        match outcome {
            Ok(bytes) => WireOutcome::Done(Blob(bytes)),
            Err(Error::TaskFailed { message, returned }) => WireOutcome::Failed(TaskFailure { message, returned }),
            Err(Error::WorkerDied { pid, how }) => WireOutcome::WorkerDied { pid, how },
            Err(Error::TaskTimedOut(limit)) => WireOutcome::TimedOut { ms: limit.as_millis() as u64 },
            Err(other) => WireOutcome::Refused(other.to_string()),
        }
    }

    /// The outcome as the client's callers see it.
    pub(crate) fn into_result(self, node: &str) -> Result<Vec<u8>> {
        match self {
            WireOutcome::Done(Blob(bytes)) => Ok(bytes),
            WireOutcome::Failed(failure) => Err(failure.into_error()),
            WireOutcome::WorkerDied { pid, how } => {
                Err(Error::WorkerDied { pid, how: format!("{how}, on node {node}") })
            }
            WireOutcome::TimedOut { ms } => Err(Error::TaskTimedOut(Duration::from_millis(ms))),
            WireOutcome::NodeLost { node, lease_ms } => {
                Err(Error::NodeLost { node, lease: Duration::from_millis(lease_ms) })
            }
            WireOutcome::Refused(reason) => {
                Err(Error::Protocol(format!("cluster node {node} could not run this task: {reason}")))
            }
        }
    }
}

/// A result as a client's result list carries it (postcard, after its MAC).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ResultMessage {
    pub(crate) seq: u64,
    /// The node that reports it.
    pub(crate) node: String,
    pub(crate) outcome: WireOutcome,
}

fn mac(key: &[u8], domain: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    #[allow(clippy::unreachable, reason = "HMAC takes keys of any length: new_from_slice cannot fail")]
    let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(domain);
    for part in parts {
        // Length-prefixed, so that moving bytes from one part to the next changes the MAC.
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    mac
}

/// The MAC of a task entry: over the pool, the build and the message.
pub(crate) fn sign_task(key: &[u8], pool: &str, fp: &str, message: &[u8]) -> [u8; MAC_LEN] {
    mac(key, b"multiproc cluster task\0", &[pool.as_bytes(), fp.as_bytes(), message]).finalize().into_bytes().into()
}

/// Whether `tag` is the MAC of a task entry (compared in constant time).
pub(crate) fn verify_task(key: &[u8], pool: &str, fp: &str, message: &[u8], tag: &[u8]) -> bool {
    mac(key, b"multiproc cluster task\0", &[pool.as_bytes(), fp.as_bytes(), message]).verify_slice(tag).is_ok()
}

/// A signed result: its MAC (over the pool, the client and the body) followed by the body.
pub(crate) fn sign_result(key: &[u8], pool: &str, client: &str, body: &[u8]) -> Vec<u8> {
    let tag = mac(key, b"multiproc cluster result\0", &[pool.as_bytes(), client.as_bytes(), body]).finalize();
    let mut signed = Vec::with_capacity(MAC_LEN + body.len());
    signed.extend_from_slice(&tag.into_bytes());
    signed.extend_from_slice(body);
    signed
}

/// The body of a signed result, if its MAC is right.
pub(crate) fn open_result<'a>(key: &[u8], pool: &str, client: &str, signed: &'a [u8]) -> Option<&'a [u8]> {
    let (tag, body) = signed.split_at_checked(MAC_LEN)?;
    mac(key, b"multiproc cluster result\0", &[pool.as_bytes(), client.as_bytes(), body]).verify_slice(tag).ok()?;
    Some(body)
}

/// Checks a task entry's build and MAC, then decodes its message; `Err` says why it is refused.
///
/// Only a message that passes both may name a function: its code offset then comes from a holder
/// of the pool's key running this very build (see the module's header), which is what makes the
/// local pool's `entry_from_offset` sound for it.
pub(crate) fn open_task(
    key: &[u8],
    pool: &str,
    build: &str,
    fields: &[(String, Vec<u8>)],
) -> std::result::Result<TaskMessage, String> {
    let field = |name| super::broker::field(fields, name);
    let entry_build = field("b").ok_or("no build field")?;
    if entry_build != build.as_bytes() {
        return Err(format!(
            "it was made by build {}, this node runs build {build}",
            String::from_utf8_lossy(entry_build)
        ));
    }
    let (Some(body), Some(tag)) = (field("m"), field("s")) else {
        return Err("a field is missing".into());
    };
    if !verify_task(key, pool, build, body, tag) {
        return Err("its MAC is wrong: forged, or signed with another key (check MULTIPROC_AUTHKEY)".into());
    }
    postcard::from_bytes(body).map_err(|e| format!("it does not decode: {e}"))
}

/// A result as a client takes it from its list: `None` when its MAC is wrong (forged, or signed
/// with another key) or it does not decode.
pub(crate) fn read_result(key: &[u8], pool: &str, client: &str, signed: &[u8]) -> Option<ResultMessage> {
    postcard::from_bytes(open_result(key, pool, client, signed)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_by_build_and_salt() {
        let a = fingerprint_of("gnu-build-id", &[1, 2, 3], None);
        assert_eq!(a.len(), 32);
        assert_ne!(a, fingerprint_of("gnu-build-id", &[1, 2, 4], None));
        assert_ne!(a, fingerprint_of("gnu-build-id", &[1, 2, 3], Some("x")));
        assert_eq!(a, fingerprint_of("gnu-build-id", &[1, 2, 3], None));
        assert!(fingerprint().is_ok());
    }

    #[test]
    fn macs_bind_every_part() {
        let tag = sign_task(b"key", "jobs", "fp", b"message");
        assert!(verify_task(b"key", "jobs", "fp", b"message", &tag));
        assert!(!verify_task(b"other", "jobs", "fp", b"message", &tag));
        assert!(!verify_task(b"key", "job", "fp", b"message", &tag));
        assert!(!verify_task(b"key", "jobs", "fp2", b"message", &tag));
        assert!(!verify_task(b"key", "jobs", "fp", b"messag3", &tag));
        assert!(!verify_task(b"key", "jobs", "fp", b"message", &tag[..31]));
        let signed = sign_result(b"key", "jobs", "c1", b"body");
        assert_eq!(open_result(b"key", "jobs", "c1", &signed), Some(&b"body"[..]));
        assert_eq!(open_result(b"key", "jobs", "c2", &signed), None);
        assert_eq!(open_result(b"key", "jobs", "c1", &signed[..20]), None);
        let mut forged = signed.clone();
        forged[MAC_LEN + 1] ^= 1;
        assert_eq!(open_result(b"key", "jobs", "c1", &forged), None);
    }

    fn task_fields(build: &str, message: &[u8], tag: &[u8]) -> Vec<(String, Vec<u8>)> {
        vec![("b".into(), build.into()), ("m".into(), message.to_vec()), ("s".into(), tag.to_vec())]
    }

    /// A task entry opens only with this build's name and the pool key's MAC, and then only when
    /// its message decodes; each refusal says why.
    #[test]
    fn task_entries_open_only_when_build_mac_and_message_are_right() {
        let task = TaskMessage {
            client: "c1".into(),
            seq: 4,
            tasks: 1,
            entry: -42,
            args: Blob(vec![1, 2]),
            timeout_ms: Some(5),
            retries: 1,
            waiting: false,
        };
        let body = postcard::to_stdvec(&task).unwrap();
        let tag = sign_task(b"key", "jobs", "fp1", &body);
        let opened = open_task(b"key", "jobs", "fp1", &task_fields("fp1", &body, &tag)).unwrap();
        assert_eq!((opened.client.as_str(), opened.seq, opened.entry), ("c1", 4, -42));

        let refusal = |fields: &[(String, Vec<u8>)]| open_task(b"key", "jobs", "fp1", fields).unwrap_err();
        assert_eq!(refusal(&task_fields("fp1", &body, &tag)[1..]), "no build field");
        let other = refusal(&task_fields("fp2", &body, &sign_task(b"key", "jobs", "fp2", &body)));
        assert!(other.contains("build fp2") && other.contains("runs build fp1"), "{other}");
        assert_eq!(refusal(&task_fields("fp1", &body, &tag)[..2]), "a field is missing");
        let forged = refusal(&task_fields("fp1", &body, &sign_task(b"other key", "jobs", "fp1", &body)));
        assert!(forged.contains("MAC is wrong") && forged.contains("MULTIPROC_AUTHKEY"), "{forged}");
        let garbage = [0xff; 3];
        let undecodable = refusal(&task_fields("fp1", &garbage, &sign_task(b"key", "jobs", "fp1", &garbage)));
        assert!(undecodable.starts_with("it does not decode"), "{undecodable}");
    }

    #[test]
    fn results_read_only_when_mac_and_message_are_right() {
        let body = postcard::to_stdvec(&ResultMessage {
            seq: 9,
            node: "n1".into(),
            outcome: WireOutcome::Done(Blob(vec![7])),
        })
        .unwrap();
        let result = read_result(b"key", "jobs", "c1", &sign_result(b"key", "jobs", "c1", &body)).unwrap();
        assert_eq!((result.seq, result.node.as_str()), (9, "n1"));
        assert!(matches!(result.outcome.into_result("n1"), Ok(bytes) if bytes == [7]));
        assert!(read_result(b"key", "jobs", "c2", &sign_result(b"key", "jobs", "c1", &body)).is_none());
        assert!(read_result(b"key", "jobs", "c1", &sign_result(b"key", "jobs", "c1", &[0xff; 3])).is_none());
        assert!(read_result(b"key", "jobs", "c1", &[]).is_none());
    }

    #[test]
    fn outcomes_round_trip_into_errors() {
        let lost = WireOutcome::NodeLost { node: "h-1".into(), lease_ms: 1000 };
        let bytes = postcard::to_stdvec(&ResultMessage { seq: 3, node: "h-2".into(), outcome: lost }).unwrap();
        let back: ResultMessage = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.seq, 3);
        assert!(
            matches!(back.outcome.into_result("h-2"), Err(Error::NodeLost { lease, .. }) if lease == Duration::from_secs(1))
        );
        let died = WireOutcome::from_local(Err(Error::WorkerDied { pid: 7, how: "killed".into() }));
        assert!(matches!(died.into_result("n"), Err(Error::WorkerDied { pid: 7, how }) if how.contains("on node n")));
    }
}
