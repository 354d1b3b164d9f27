//! The spill: where a queue's records go when the ring has no room for them, so that `put` on a
//! queue below its `maxsize` never waits for a consumer.
//!
//! The spill is the part of the queue's memory file beyond the ring (see `shared`): a log of
//! records in the ring's format (`shm::record_ring`), from `spill_head` to `spill_tail`. Spill
//! positions only grow; the producers' `spill_origin` is the position at the start of the spill's
//! part of the file, set when a put finds the spill empty, so each spill starts over at the start
//! of the file's part. The file grows as far as the log reaches; records are written with
//! `pwrite(2)` under the put lock and read with `pread(2)` under the get lock, never mapped, so a
//! spill of any size costs no address space and no mapping can outlive its bytes.
//!
//! Order: the ring's records are older than the spill's. A put goes to the spill when the ring has
//! no room, or when the spill holds records already; a get takes from the ring while it holds a
//! record, then from the spill (looking at the ring once more after reading the spill's tail, for
//! a record committed just before the spill's first). So once a put spills, the following ones
//! spill too until the consumers have drained the spill; the next spill then starts over at the
//! file's start.
//!
//! Memory: a consumer gives back the memory behind the spill's head each [`RELEASE_STEP`], and
//! all of it when it takes the last record, which it knows under the put lock too (a put may be
//! adding one). Both happen before the consumer commits its new head: until then no put can see
//! the spill empty and start over on the memory given back.
//!
//! A killed process loses no more than with the ring: a producer writes its record beyond the tail
//! before it commits, a consumer reads the record before it commits its removal (each side's
//! journal in `shared` covers its spill position too).

use std::os::fd::BorrowedFd;

use crate::error::{IoContext, Result};
use crate::shm::record_ring::{self, HEADER};
use crate::sys;

/// The spill gives back the memory behind its head in steps of this many bytes.
pub(super) const RELEASE_STEP: u64 = 1 << 20;

/// How much a consumer reads at once: the header and, for most records, the whole payload.
const FIRST_READ: usize = 512;

/// The spill of one queue: its memory file and where the spill starts in it.
pub(super) struct Spill<'a> {
    pub(super) fd: BorrowedFd<'a>,
    pub(super) base: u64,
}

impl Spill<'_> {
    /// Writes `header` then `parts` at file position `at` (beyond the tail; under the put lock).
    pub(super) fn write(&self, at: u64, header: &[u8], parts: &[&[u8]]) -> Result<()> {
        let mut all = Vec::with_capacity(parts.len() + 1);
        all.push(header);
        all.extend_from_slice(parts);
        sys::write_all_vectored_at(self.fd, &all, self.base + at).context(
            "spill an item into the queue's memory file (the queue holds more than its ring: the memory for it ran out?)",
        )
    }

    /// Reads the record at file position `at`, of which `available` bytes are committed (under
    /// the get lock): its kind and payload, or `None` if the record claims more bytes than that.
    pub(super) fn read(&self, at: u64, available: u64) -> Result<Option<(u32, Vec<u8>)>> {
        let mut first = [0u8; FIRST_READ];
        let want = FIRST_READ.min(usize::try_from(available).unwrap_or(usize::MAX));
        let got = self.read_at(&mut first[..want], at)?;
        let Some(header) = first.get(..got).and_then(|bytes| bytes.first_chunk::<HEADER>()) else { return Ok(None) };
        let (len, kind) = record_ring::parse_header(*header);
        if record_ring::record_size(len) as u64 > available {
            return Ok(None);
        }
        let mut payload = vec![0u8; len];
        let have = len.min(got - HEADER);
        payload[..have].copy_from_slice(&first[HEADER..HEADER + have]);
        let rest = at + (HEADER + have) as u64;
        if have < len && self.read_at(&mut payload[have..], rest)? < len - have {
            return Ok(None);
        }
        Ok(Some((kind, payload)))
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> Result<usize> {
        sys::read_at(self.fd, buf, self.base + at).context("read an item from the queue's memory file")
    }

    /// Gives the memory of positions `from..to` back to the system (they read as zeros after).
    pub(super) fn release(&self, from: u64, to: u64) {
        if to > from
            && let Err(e) = sys::release_range(self.fd, self.base + from, to - from)
        {
            // Only memory stays in use until the queue is dropped: nothing to fail for.
            tracing::debug!("a queue could not give back its spill's memory: {e}");
        }
    }
}
