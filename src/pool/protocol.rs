//! The worker protocol: the messages a pool and its workers exchange, independent of how they
//! travel.
//!
//! ```text
//! pool                                                  worker
//!   Batch [Group { first_id, entry, ends, fds, args }] ─►   runs each chunk of each group in order
//!   ◄─ Replies { [Done { first_id, ends, results }          one message for as many finished
//!                 | Failed { id, failure }], busy_ns }      chunks as are ready (see worker.rs)
//!   Stop ─►                                                  exits after what it holds
//!   ◄─ InitFailed { code }                                   the initializer failed; it exits
//! ```
//!
//! A *group* is a run of consecutive chunks of one call, with consecutive ids: the chunks'
//! packed arguments (`reduction::packed`) back to back in `args`, and where each ends (`ends`,
//! little-endian `u32`s, one per chunk; the descriptors each holds in `fds`, empty when none
//! does). A `Done` reply is the same for results: consecutive chunks that succeeded, their packed
//! results back to back. So a window of hundreds of tiny tasks is one message each way with one
//! header per group, not per task, and the bytes of arguments and results are copied, never
//! parsed, by whoever only forwards them. Both messages borrow their bytes from the buffer they
//! were received in.
//!
//! The rules both sides keep, whatever the transport:
//! * a worker runs chunks in the order it received them and reports them in that order, so the
//!   pool always knows which chunk a worker is running: the oldest one not yet reported;
//! * a worker reports each chunk exactly once, and a `Done` reply never spans two groups of a
//!   batch;
//! * a worker that ends (or whose transport breaks) with chunks unreported has failed the one whose
//!   id it wrote last into its running word (see `local::transport`) and never started those after
//!   it; the ones before it finished but were not reported yet, and run again elsewhere.
//!
//! The local transport (`local::transport`) carries them over one socket pair per worker; the
//! cluster (`cluster`) ships whole chunks to nodes, which run them in a local pool again.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::task::TaskFailure;

/// Bytes borrowed from a message: encoded as one byte string, decoded without a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = &'de [u8];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a borrowed byte string")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, bytes: &'de [u8]) -> Result<&'de [u8], E> {
                Ok(bytes)
            }
        }
        deserializer.deserialize_bytes(BytesVisitor).map(Bytes)
    }
}

/// Owned bytes encoded as one byte string (serde's `Vec<u8>` is a sequence of numbers, one call
/// each): the initializer's arguments, and a chunk's bytes in the cluster's messages.
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

/// Consecutive chunks of one call, as they travel to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Group<'a> {
    /// The pool's id of the first chunk; the others follow one by one.
    pub(crate) first_id: u64,
    /// Which function: a chunk entry's offset (see `task::entry_offset`).
    pub(crate) entry: i64,
    /// Where each chunk's arguments end in `args` (little-endian `u32`s).
    #[serde(borrow)]
    pub(crate) ends: Bytes<'a>,
    /// How many of the message's descriptors each chunk's arguments hold, taken in order
    /// (little-endian `u32`s), or empty when none holds any.
    #[serde(borrow)]
    pub(crate) fds: Bytes<'a>,
    /// The chunks' packed arguments, back to back.
    #[serde(borrow)]
    pub(crate) args: Bytes<'a>,
}

/// Pool to worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker<'a> {
    /// Chunks to run, in order; the descriptors their arguments hold travel beside the message.
    Batch(#[serde(borrow)] Vec<Group<'a>>),
    /// Finish what you hold, then exit.
    Stop,
}

/// What became of one or more chunks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply<'a> {
    /// Chunks `first_id..` of one group succeeded: where each one's packed results end in
    /// `results` (little-endian `u32`s).
    Done {
        first_id: u64,
        #[serde(borrow)]
        ends: Bytes<'a>,
        #[serde(borrow)]
        results: Bytes<'a>,
    },
    /// Chunk `id` failed.
    Failed { id: u64, failure: TaskFailure },
}

/// Worker to pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker<'a> {
    /// What became of the oldest chunks not yet reported, in order, and the time the worker spent
    /// running them.
    Replies {
        #[serde(borrow)]
        replies: Vec<Reply<'a>>,
        busy_ns: u64,
    },
    /// The initializer failed (exit code `code`, as a process target's); the worker exits.
    InitFailed { code: i32 },
}

/// The `i`th of a list of little-endian `u32`s.
pub(crate) fn u32_at(list: &[u8], i: usize) -> Option<u32> {
    let bytes = list.get(i.checked_mul(4)?..i.checked_mul(4)?.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The pieces of `bytes` that a list of ends (little-endian `u32`s, one per piece, the first
/// piece starting at 0) cuts it into; `None` when the ends do not cut exactly `bytes` (not a
/// multiple of 4, decreasing, or not ending at its length).
pub(crate) fn pieces<'a>(ends: &'a [u8], bytes: &'a [u8]) -> Option<impl Iterator<Item = &'a [u8]> + 'a> {
    if !ends.len().is_multiple_of(4) {
        return None;
    }
    let mut start = 0usize;
    for end in ends.chunks_exact(4) {
        let end = u32::from_le_bytes([end[0], end[1], end[2], end[3]]) as usize;
        if end < start || end > bytes.len() {
            return None;
        }
        start = end;
    }
    if start != bytes.len() {
        return None;
    }
    let mut start = 0usize;
    Some(ends.chunks_exact(4).map(move |end| {
        let end = u32::from_le_bytes([end[0], end[1], end[2], end[3]]) as usize;
        let piece = &bytes[start..end];
        start = end;
        piece
    }))
}

/// Entry point of the fuzz target `pool_messages` (through `multiproc::__private`): decodes
/// `input` as each message of the protocol, cuts every group and reply by its ends, and decodes
/// the pieces as packed sequences of a few value types, as a pool or a worker would. Must never
/// panic, nor allocate beyond what the input can hold.
#[doc(hidden)]
pub fn fuzz_messages(input: &[u8]) {
    use crate::reduction::packed;
    fn values(piece: &[u8]) {
        let _ = packed::decode_into::<u64>(piece, &mut Vec::new());
        let _ = packed::decode_into::<f32>(piece, &mut Vec::new());
        let _ = packed::decode_into::<(u32, bool, char)>(piece, &mut Vec::new());
        let _ = packed::decode_into::<(String, Option<f64>)>(piece, &mut Vec::new());
    }
    if let Ok(ToWorker::Batch(groups)) = postcard::from_bytes::<ToWorker<'_>>(input) {
        for group in &groups {
            if let Some(pieces) = pieces(group.ends.0, group.args.0) {
                pieces.for_each(values);
            }
        }
    }
    if let Ok(FromWorker::Replies { replies, .. }) = postcard::from_bytes::<FromWorker<'_>>(input) {
        for reply in &replies {
            if let Reply::Done { ends, results, .. } = reply
                && let Some(pieces) = pieces(ends.0, results.0)
            {
                pieces.for_each(values);
            }
        }
    }
    values(input);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(list: &[u32]) -> Vec<u8> {
        list.iter().flat_map(|e| e.to_le_bytes()).collect()
    }

    #[test]
    fn messages_round_trip_borrowing_their_bytes() {
        let (cut, args) = (ends(&[1, 3]), [1u8, 2, 3]);
        let batch = ToWorker::Batch(vec![Group {
            first_id: 7,
            entry: -42,
            ends: Bytes(&cut),
            fds: Bytes(&[]),
            args: Bytes(&args),
        }]);
        let bytes = postcard::to_stdvec(&batch).unwrap();
        match postcard::from_bytes::<ToWorker<'_>>(&bytes).unwrap() {
            ToWorker::Batch(groups) => {
                let group = &groups[0];
                assert_eq!((group.first_id, group.entry, group.args.0), (7, -42, &[1u8, 2, 3][..]));
                let pieces: Vec<&[u8]> = pieces(group.ends.0, group.args.0).unwrap().collect();
                assert_eq!(pieces, [&[1u8][..], &[2, 3][..]]);
                let inside = bytes.as_ptr_range();
                assert!(inside.contains(&group.args.0.as_ptr()), "borrowed, not copied");
            }
            ToWorker::Stop => panic!("decoded the wrong message"),
        }
        let one = ends(&[1]);
        let results = FromWorker::Replies {
            replies: vec![
                Reply::Done { first_id: 1, ends: Bytes(&one), results: Bytes(&[9]) },
                Reply::Failed { id: 2, failure: TaskFailure::message("boom") },
            ],
            busy_ns: 5,
        };
        let bytes = postcard::to_stdvec(&results).unwrap();
        match postcard::from_bytes::<FromWorker<'_>>(&bytes).unwrap() {
            FromWorker::Replies { replies, busy_ns: 5 } => {
                assert!(matches!(&replies[0], Reply::Done { first_id: 1, results, .. } if results.0 == [9]));
                assert!(matches!(&replies[1], Reply::Failed { id: 2, failure } if failure.message == "boom"));
            }
            other => panic!("decoded the wrong message: {other:?}"),
        }
        let stop = postcard::to_stdvec(&ToWorker::Stop).unwrap();
        assert!(matches!(postcard::from_bytes::<ToWorker<'_>>(&stop).unwrap(), ToWorker::Stop));
    }

    #[test]
    fn ends_must_cut_the_bytes_exactly() {
        let bytes = [0u8; 5];
        assert!(pieces(&ends(&[2, 5]), &bytes).is_some());
        assert_eq!(pieces(&ends(&[]), &[]).map(Iterator::count), Some(0));
        assert!(pieces(&ends(&[3, 2, 5]), &bytes).is_none(), "decreasing");
        assert!(pieces(&ends(&[2, 6]), &bytes).is_none(), "past the end");
        assert!(pieces(&ends(&[2, 4]), &bytes).is_none(), "short of the end");
        assert!(pieces(&[1, 0, 0], &bytes).is_none(), "not u32s");
        assert_eq!(u32_at(&ends(&[4, 9]), 1), Some(9));
        assert_eq!(u32_at(&ends(&[4, 9]), 2), None);
    }

    #[test]
    fn random_bytes_never_panic_the_decoders() {
        let mut next = crate::test_support::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = postcard::from_bytes::<ToWorker<'_>>(&bytes);
            let _ = postcard::from_bytes::<FromWorker<'_>>(&bytes);
            let _ = pieces(&bytes[..len / 2], &bytes[len / 2..]).map(Iterator::count);
            // The fuzz target's short, always-run form.
            fuzz_messages(&bytes);
        }
    }
}
