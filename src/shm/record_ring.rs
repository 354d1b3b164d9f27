//! Rings of records in shared memory: one engine for the pipes' rings (`connection::ring`) and the
//! queues' (`queue::core`). It places records, writes them, reads them back and checks what a
//! reader is given against what was published, so that garbage written into the shared memory by
//! another process is reported, never read out of bounds.
//!
//! ```text
//! record := [len: u32][kind: u32][payload: len bytes][padding to 8]   (little-endian)
//! WRAP    : a record never wraps around the ring's end; where the next one does not fit before
//!           it, the writer leaves a WRAP record and starts again at offset 0
//! ```
//!
//! Positions count bytes since the ring was created: the record at position `p` lies at offset
//! `p % capacity`. `head` is where the oldest record starts, `tail` where the next one will
//! (everything between them is published). How positions are kept and published is the user's:
//! both the pipes and the queues take turns under a lock per end and publish their end's position
//! with a release store (the queues through a journal, so that a killed holder's operation is
//! finished or undone). So is the meaning of every kind but [`WRAP`].
//!
//! Tuned once for both: a reader copies the payload into a fresh `Vec`'s uninitialized capacity
//! (no zero-filling first: a 64-byte record round trip in one process went from about 88 to 65 ns,
//! a 16 KiB one from about 1.9-3.2 to 1.2-2.6 µs, under load), and a record is checked against
//! what was published once, before any payload byte is copied.

use std::mem::MaybeUninit;

/// The bytes before a record's payload.
pub(crate) const HEADER: usize = 8;

/// The record a writer leaves where the next one does not fit before the ring's end: the reader
/// goes on at offset 0. Users' kinds are other values.
pub(crate) const WRAP: u32 = u32::MAX;

/// The bytes a record with a payload of `len` bytes takes: header and payload, rounded up to 8.
pub(crate) const fn record_size(len: usize) -> usize {
    HEADER + len.div_ceil(8) * 8
}

/// The bytes a ring lives in: a region of shared memory that several processes map.
///
/// # Safety
///
/// `capacity` is a multiple of 8 that never changes; `write` and `read` copy exactly the range
/// they are given and panic rather than leave `0..capacity`.
pub(crate) unsafe trait RingBytes {
    /// The ring's size in bytes.
    fn capacity(&self) -> usize;

    /// Copies `src` to `offset`.
    ///
    /// # Safety
    ///
    /// Nobody else reads or writes `offset..offset + src.len()` while the copy runs.
    unsafe fn write(&self, offset: usize, src: &[u8]);

    /// Copies `dst.len()` bytes at `offset` into `dst` (initializing all of it).
    ///
    /// # Safety
    ///
    /// Nobody writes `offset..offset + dst.len()` while the copy runs.
    unsafe fn read(&self, offset: usize, dst: &mut [MaybeUninit<u8>]);
}

/// Where a record goes: its offset, and the bytes it takes from the ring (a WRAP included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    start: usize,
    /// How far the record moves `tail`: check that the ring has this much room.
    pub(crate) footprint: u64,
}

/// What a reader found at `head`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing published.
    Empty,
    /// A record (WRAPs skipped): its kind, its payload, and the position after it.
    Record { kind: u32, payload: Vec<u8>, next: u64 },
    /// A record that claims more than was published, or more than the ring holds: garbage.
    Malformed { kind: u32, len: usize },
}

/// A ring of records over `bytes`.
pub(crate) struct RecordRing<'a, B: RingBytes + ?Sized> {
    bytes: &'a B,
}

impl<'a, B: RingBytes + ?Sized> RecordRing<'a, B> {
    pub(crate) fn new(bytes: &'a B) -> Self {
        RecordRing { bytes }
    }

    fn offset(&self, position: u64) -> usize {
        (position % self.bytes.capacity() as u64) as usize
    }

    /// Where a record with a payload of `len` bytes goes when `tail` is the end of the ring's
    /// records. It takes `record_size(len)` bytes, plus the rest of the ring if it does not fit
    /// before the end.
    pub(crate) fn place(&self, tail: u64, len: usize) -> Placement {
        let need = record_size(len);
        let offset = self.offset(tail);
        let to_end = self.bytes.capacity() - offset;
        match need > to_end {
            true => Placement { start: 0, footprint: (to_end + need) as u64 },
            false => Placement { start: offset, footprint: need as u64 },
        }
    }

    /// As [`place`](Self::place), except that a record that would reach past the first `window`
    /// bytes of the ring starts again at offset 0 (a WRAP where it would have gone). Its footprint
    /// then covers the rest of the ring: a caller that finds room for it (the readers have moved
    /// past offset 0's bytes) keeps a ring far larger than its backlog within about `window` bytes
    /// of touched memory; one that does not takes [`place`](Self::place)'s placement.
    pub(crate) fn place_within(&self, tail: u64, len: usize, window: usize) -> Placement {
        let need = record_size(len);
        let offset = self.offset(tail);
        match offset > 0 && offset + need > window && window < self.bytes.capacity() {
            true => Placement { start: 0, footprint: (self.bytes.capacity() - offset + need) as u64 },
            false => self.place(tail, len),
        }
    }

    /// Writes a record of `kind` whose payload is `parts`, one after the other, where `placement`
    /// (from [`place`](Self::place) or [`place_within`](Self::place_within) with the same `tail`
    /// and the parts' total length) says; the
    /// caller then publishes `tail + placement.footprint`.
    ///
    /// # Safety
    ///
    /// The caller has positions `tail..tail + placement.footprint` to itself: room checked (the
    /// footprint fits between the readers' `head` and `head + capacity`), and nobody else writes
    /// beyond `tail` meanwhile.
    pub(crate) unsafe fn write(&self, tail: u64, placement: Placement, kind: u32, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        debug_assert!(kind != WRAP && len <= u32::MAX as usize);
        let offset = self.offset(tail);
        let wrapped_early =
            Placement { start: 0, footprint: (self.bytes.capacity() - offset + record_size(len)) as u64 };
        debug_assert!(placement == self.place(tail, len) || placement == wrapped_early);
        if placement.start != offset {
            let skipped = self.bytes.capacity() - offset - HEADER;
            // SAFETY: the WRAP header lies at `tail`, within the caller's positions.
            unsafe { self.bytes.write(offset, &header(skipped as u32, WRAP)) };
        }
        let mut at = placement.start;
        // SAFETY: the record lies at the end of the caller's positions (`place` put it there).
        unsafe { self.bytes.write(at, &header(len as u32, kind)) };
        at += HEADER;
        for part in parts {
            // SAFETY: as above: `record_size(len)` bytes from `start` are the caller's.
            unsafe { self.bytes.write(at, part) };
            at += part.len();
        }
    }

    /// Reads the record at `head`, `tail` being the end of what was published to the caller,
    /// skipping WRAPs; the caller then moves `head` to the record's `next`.
    ///
    /// # Safety
    ///
    /// Positions `head..tail` were published to the caller (its acquire of `tail`, or a lock), and
    /// nobody writes them until the caller has moved `head` past them.
    pub(crate) unsafe fn read(&self, head: u64, tail: u64) -> Found {
        // SAFETY: the caller's guarantee, passed on.
        match unsafe { self.locate(head, tail) } {
            Located::Empty => Found::Empty,
            Located::Malformed { kind, len } => Found::Malformed { kind, len },
            Located::Record(record) => {
                let mut payload = Vec::with_capacity(record.len);
                // SAFETY: the record was located in what was published (the caller's guarantee);
                // the destination is `len` bytes of spare capacity.
                unsafe { self.copy_payload(record, &mut payload.spare_capacity_mut()[..record.len]) };
                // SAFETY: `copy_payload` initialized the first `len` bytes of the spare capacity.
                unsafe { payload.set_len(record.len) };
                Found::Record { kind: record.kind, payload, next: record.next }
            }
        }
    }

    /// Finds the record at `head` (WRAPs skipped) and checks it against what was published,
    /// without copying its payload: [`copy_payload`](Self::copy_payload) does that.
    ///
    /// # Safety
    ///
    /// As for [`read`](Self::read).
    pub(crate) unsafe fn locate(&self, mut head: u64, tail: u64) -> Located {
        let capacity = self.bytes.capacity();
        loop {
            let published = tail.wrapping_sub(head);
            if published == 0 {
                return Located::Empty;
            }
            let offset = self.offset(head);
            // Records start at multiples of 8 (so do WRAPs' ends): a header never crosses the end.
            if published < HEADER as u64 || !offset.is_multiple_of(8) {
                return Located::Malformed { kind: 0, len: 0 };
            }
            let mut raw = [MaybeUninit::uninit(); HEADER];
            // SAFETY: published bytes (checked just above), in the ring (the offset and the
            // capacity are multiples of 8).
            unsafe { self.bytes.read(offset, &mut raw) };
            // SAFETY: `read` initialized every byte of `raw`.
            let (len, kind) =
                parse_header(unsafe { std::mem::transmute::<[MaybeUninit<u8>; HEADER], [u8; HEADER]>(raw) });
            let advance = match kind {
                WRAP => capacity - offset,
                _ => record_size(len),
            };
            if advance as u64 > published || offset + advance > capacity {
                return Located::Malformed { kind, len };
            }
            if kind == WRAP {
                head += advance as u64;
                continue;
            }
            return Located::Record(RecordAt { kind, len, at: offset + HEADER, next: head + advance as u64 });
        }
    }

    /// Copies the payload of `record` (or its first `dst.len()` bytes) into `dst`.
    ///
    /// # Safety
    ///
    /// `record` came from [`locate`](Self::locate) on this ring, and its positions are still the
    /// caller's (published to it, not yet given back by moving `head` past them).
    pub(crate) unsafe fn copy_payload(&self, record: RecordAt, dst: &mut [MaybeUninit<u8>]) {
        let len = dst.len().min(record.len);
        // SAFETY: the payload lies in published bytes within the ring (`locate` checked it), and
        // `len` is at most its length.
        unsafe { self.bytes.read(record.at, &mut dst[..len]) };
    }
}

/// A record found by [`RecordRing::locate`]: its kind, the length and offset of its payload, and
/// the position after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordAt {
    pub(crate) kind: u32,
    pub(crate) len: usize,
    at: usize,
    pub(crate) next: u64,
}

/// What [`RecordRing::locate`] found at `head`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Located {
    /// Nothing published.
    Empty,
    /// A record (WRAPs skipped), checked against what was published.
    Record(RecordAt),
    /// A record that claims more than was published, or more than the ring holds: garbage.
    Malformed { kind: u32, len: usize },
}

/// A record's header (for records kept elsewhere in the same format, such as a queue's spill).
pub(crate) fn header(len: u32, kind: u32) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&kind.to_le_bytes());
    header
}

/// The payload length and kind in a record's header.
pub(crate) fn parse_header(header: [u8; HEADER]) -> (usize, u32) {
    let [a, b, c, d, e, f, g, h] = header;
    (u32::from_le_bytes([a, b, c, d]) as usize, u32::from_le_bytes([e, f, g, h]))
}

#[cfg(test)]
mod tests {
    use std::cell::UnsafeCell;

    use super::*;

    /// A ring of `N` bytes in this process's memory.
    struct Local<const N: usize>(UnsafeCell<[u8; N]>);

    // SAFETY: copies stay within the array (slice indexing panics otherwise); the tests use one
    // thread.
    unsafe impl<const N: usize> RingBytes for Local<N> {
        fn capacity(&self) -> usize {
            N
        }

        unsafe fn write(&self, offset: usize, src: &[u8]) {
            // SAFETY: one thread, no other reference into the array lives across this call.
            unsafe { (&mut *self.0.get())[offset..offset + src.len()].copy_from_slice(src) };
        }

        unsafe fn read(&self, offset: usize, dst: &mut [MaybeUninit<u8>]) {
            // SAFETY: as above.
            let src = unsafe { &(&*self.0.get())[offset..offset + dst.len()] };
            for (d, s) in dst.iter_mut().zip(src) {
                d.write(*s);
            }
        }
    }

    fn local<const N: usize>() -> Local<N> {
        Local(UnsafeCell::new([0; N]))
    }

    #[test]
    fn records_of_every_size_wrap_around_in_order() {
        let bytes = local::<256>();
        let ring = RecordRing::new(&bytes);
        let (mut head, mut tail) = (0u64, 0u64);
        for n in 0..2000usize {
            let payload = vec![n as u8; n % 61];
            let placement = ring.place(tail, payload.len());
            assert!(tail - head + placement.footprint <= 256);
            // SAFETY: the test is the only writer and reader; room checked above.
            unsafe { ring.write(tail, placement, 7, &[&payload[..payload.len() / 2], &payload[payload.len() / 2..]]) };
            tail += placement.footprint;
            // SAFETY: as above.
            match unsafe { ring.read(head, tail) } {
                Found::Record { kind, payload: got, next } => {
                    assert_eq!((kind, got), (7, payload));
                    head = next;
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(head, tail);
        }
        // SAFETY: as above.
        assert_eq!(unsafe { ring.read(head, tail) }, Found::Empty);
    }

    #[test]
    fn records_placed_within_a_window_go_back_to_the_start_past_it() {
        let bytes = local::<1024>();
        let ring = RecordRing::new(&bytes);
        let (mut head, mut tail) = (0u64, 0u64);
        for n in 0..300usize {
            let payload = vec![n as u8; 1 + n % 40];
            let placement = ring.place_within(tail, payload.len(), 256);
            assert!(tail - head + placement.footprint <= 1024);
            // SAFETY: the test is the only writer and reader; room checked above.
            unsafe { ring.write(tail, placement, 3, &[&payload]) };
            tail += placement.footprint;
            // Every record lies in the window's first 256 bytes (plus one record past its end).
            assert!(((tail - 1) % 1024) < 256 + record_size(40) as u64, "{tail}");
            // SAFETY: as above.
            match unsafe { ring.read(head, tail) } {
                Found::Record { kind: 3, payload: got, next } => {
                    assert_eq!(got, payload);
                    head = next;
                }
                other => panic!("{other:?}"),
            }
        }
        // A window as large as the ring is the ring.
        assert_eq!(ring.place_within(1000, 40, 1024), ring.place(1000, 40));
    }

    #[test]
    fn a_record_claiming_more_than_was_published_is_malformed() {
        let bytes = local::<64>();
        let ring = RecordRing::new(&bytes);
        // SAFETY: one thread.
        unsafe { bytes.write(0, &header(100, 1)) };
        // SAFETY: one thread.
        assert_eq!(unsafe { ring.read(0, 16) }, Found::Malformed { kind: 1, len: 100 });
        // SAFETY: one thread.
        unsafe { bytes.write(0, &header(8, 1)) };
        // SAFETY: one thread.
        assert_eq!(unsafe { ring.read(0, 8) }, Found::Malformed { kind: 1, len: 8 });
        // SAFETY: one thread.
        assert!(matches!(unsafe { ring.read(0, 16) }, Found::Record { kind: 1, next: 16, .. }));
        // A WRAP must reach the ring's end within what was published.
        // SAFETY: one thread.
        unsafe { bytes.write(16, &header(0, WRAP)) };
        // SAFETY: one thread.
        assert_eq!(unsafe { ring.read(16, 24) }, Found::Malformed { kind: WRAP, len: 0 });
        // SAFETY: one thread.
        assert_eq!(unsafe { ring.read(16, 64) }, Found::Empty);
    }

    #[test]
    fn garbage_never_reads_out_of_bounds() {
        let bytes = local::<512>();
        let ring = RecordRing::new(&bytes);
        let mut next = crate::test_support::xorshift(0x5eed);
        for _ in 0..2000 {
            let garbage: Vec<u8> = (0..512).map(|_| next() as u8).collect();
            // SAFETY: one thread.
            unsafe { bytes.write(0, &garbage) };
            let (mut head, tail) = (next() % 1024, next() % 2048);
            for _ in 0..64 {
                // SAFETY: one thread.
                match unsafe { ring.read(head, tail) } {
                    Found::Record { next, .. } => head = next,
                    Found::Empty | Found::Malformed { .. } => break,
                }
            }
        }
    }
}
