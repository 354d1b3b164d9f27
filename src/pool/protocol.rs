//! The worker protocol: the messages a pool and its workers exchange, independent of how they
//! travel.
//!
//! ```text
//! pool                                            worker
//!   Batch { tasks: [Task { id, entry, args }], fds } ─►   runs each task in order
//!   ◄─ Results { results: [(id, outcome)], busy_ns }      one message for as many finished tasks
//!                                                         as are ready (see worker.rs)
//!   Stop ─►                                               exits after what it holds
//!   ◄─ InitFailed { code }                                the initializer failed; it exits
//! ```
//!
//! The rules both sides keep, whatever the transport:
//! * a worker runs tasks in the order it received them and reports them in that order, so the pool
//!   always knows which task a worker is running: the oldest one not yet reported;
//! * a worker reports each task exactly once;
//! * a worker that ends (or whose transport breaks) with tasks unreported has failed the oldest one
//!   (it was running it) and never started the others, which the pool gives to other workers.
//!
//! Today the transport is one duplex [`Connection`](crate::Connection) per worker, a bare Unix
//! socket pair ([`socket_pipe`](crate::socket_pipe): the scheduler polls its socket together with
//! the workers' pidfds, and the worker protocol already batches messages); its descriptors can carry open files and sockets in task arguments. A network transport
//! would carry the same messages, with entries signed (see `task.rs`). What the scheduler needs of
//! a transport: messages delivered whole and in order, a descriptor to poll for incoming ones, and
//! a signal that the worker is gone (here the worker's pidfd; over a network, the connection
//! dropping or a heartbeat stopping), plus a word telling which task was running (here shared
//! memory; over a network the worker would report "started" before long tasks).

use std::os::fd::{BorrowedFd, OwnedFd};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::task::TaskFailure;
use crate::Handle;

/// One task (a chunk of calls of one function) as it travels to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireTask {
    /// The pool's id for it, echoed in the result.
    pub(crate) id: u64,
    /// Which function: a chunk entry's offset (see `task::entry_offset`).
    pub(crate) entry: i64,
    /// The encoded `Vec` of argument tuples.
    pub(crate) args: Blob,
    /// How many of the batch's descriptors belong to this task's arguments (taken in order).
    pub(crate) fds: u32,
}

/// Pool to worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Tasks to run, in order, and the descriptors their arguments hold.
    Batch { tasks: Vec<WireTask>, fds: Vec<Handle<OwnedFd>> },
    /// Finish what you hold, then exit.
    Stop,
}

/// One task's outcome: the encoded `Vec` of results, or why it failed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireResult {
    pub(crate) id: u64,
    pub(crate) outcome: Result<Blob, TaskFailure>,
}

/// Worker to pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// Finished tasks, oldest first, and the time the worker spent running them.
    Results { results: Vec<WireResult>, busy_ns: u64 },
    /// The initializer failed (exit code `code`, as a process target's); the worker exits.
    InitFailed { code: i32 },
}

/// [`WireTask`] as the pool sends it, borrowing the chunk it keeps (for a retry).
#[derive(Debug, Serialize)]
pub(crate) struct WireTaskRef<'a> {
    pub(crate) id: u64,
    pub(crate) entry: i64,
    pub(crate) args: BlobRef<'a>,
    pub(crate) fds: u32,
}

/// [`ToWorker`] as the pool sends it: the same encoding, borrowing instead of owning.
#[derive(Debug, Serialize)]
pub(crate) enum ToWorkerRef<'a> {
    Batch { tasks: Vec<WireTaskRef<'a>>, fds: Vec<Handle<BorrowedFd<'a>>> },
    Stop,
}

/// A borrowed [`Blob`].
#[derive(Debug)]
pub(crate) struct BlobRef<'a>(pub(crate) &'a [u8]);

impl Serialize for BlobRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Bytes encoded as one byte string (serde's `Vec<u8>` is a sequence of numbers, one call each).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Blob(pub(crate) Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BlobVisitor;
        impl<'de> serde::de::Visitor<'de> for BlobVisitor {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Blob, E> {
                Ok(Blob(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(bytes))
            }
        }
        deserializer.deserialize_byte_buf(BlobVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let batch = ToWorker::Batch {
            tasks: vec![WireTask { id: 7, entry: -42, args: Blob(vec![1, 2, 3]), fds: 0 }],
            fds: Vec::new(),
        };
        let bytes = postcard::to_stdvec(&batch).unwrap();
        match postcard::from_bytes::<ToWorker>(&bytes).unwrap() {
            ToWorker::Batch { tasks, fds } => {
                assert_eq!((tasks[0].id, tasks[0].entry, &tasks[0].args.0[..]), (7, -42, &[1u8, 2, 3][..]));
                assert!(fds.is_empty());
            }
            ToWorker::Stop => panic!("decoded the wrong message"),
        }
        let results = FromWorker::Results {
            results: vec![
                WireResult { id: 1, outcome: Ok(Blob(vec![9])) },
                WireResult { id: 2, outcome: Err(TaskFailure::message("boom")) },
            ],
            busy_ns: 5,
        };
        let bytes = postcard::to_stdvec(&results).unwrap();
        assert!(matches!(postcard::from_bytes::<FromWorker>(&bytes).unwrap(), FromWorker::Results { busy_ns: 5, .. }));
    }

    #[test]
    fn the_borrowed_form_encodes_as_the_owned_form() {
        let args = [4u8, 5];
        let sent = ToWorkerRef::Batch {
            tasks: vec![WireTaskRef { id: 3, entry: 99, args: BlobRef(&args), fds: 0 }],
            fds: Vec::new(),
        };
        let bytes = postcard::to_stdvec(&sent).unwrap();
        match postcard::from_bytes::<ToWorker>(&bytes).unwrap() {
            ToWorker::Batch { tasks, .. } => {
                assert_eq!((tasks[0].id, tasks[0].entry, tasks[0].args.0.clone()), (3, 99, vec![4, 5]))
            }
            ToWorker::Stop => panic!("decoded the wrong message"),
        }
        let stop = postcard::to_stdvec(&ToWorkerRef::Stop).unwrap();
        assert!(matches!(postcard::from_bytes::<ToWorker>(&stop).unwrap(), ToWorker::Stop));
    }

    #[test]
    fn random_bytes_never_panic_the_decoders() {
        let mut next = crate::test_support::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = postcard::from_bytes::<ToWorker>(&bytes);
            let _ = postcard::from_bytes::<FromWorker>(&bytes);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&[][..], &[0xff; 3][..], &[0, 5, 1][..], &[1, 1, 1, 1][..]] {
            let _ = postcard::from_bytes::<ToWorker>(bytes);
            let _ = postcard::from_bytes::<FromWorker>(bytes);
        }
    }
}
