//! Copies between private buffers and bytes that other processes may write at the same time
//! (the named blocks and lists; `bytes` holds the region the connection rings hand over by
//! protocol instead).
//!
//! Shared bytes are seen as `[AtomicU8]`: every access is atomic, so a race with another process
//! (or thread) is not undefined behaviour, only a question of which bytes arrive. The copies below
//! move aligned 8-byte words with relaxed atomic loads and stores (the edges byte by byte): as
//! fast as a plain copy on x86-64, and a copy that races with a writer may see some words old and
//! some new ("torn"), never anything worse. Order them with a lock or a message when it matters.
//!
//! One caveat, stated so nobody relies on more: Rust's memory model (like C++'s) does not define a
//! race between an atomic *write* and an overlapping atomic access of another size, and a copy's
//! word may overlap the byte of another copy's edge. Between processes the model says nothing at
//! all (the other process is not a thread of this program); within one process, two threads that
//! copy overlapping ranges at once were already racing in the documented, "torn" sense. Every
//! access here is a single relaxed load or store instruction on the targets we build for, so the
//! outcome is the torn copy described above. Edges and empty ranges never form a word pointer:
//! a range too short to reach an 8-byte boundary is copied byte by byte.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

const WORD: usize = std::mem::size_of::<u64>();

/// Splits `len` bytes starting at `ptr` into an unaligned head, a run of whole aligned words, and a
/// tail, as lengths. The head is at most `len`, so a range too short to reach an 8-byte boundary is
/// all head (and no words).
fn split(ptr: *const AtomicU8, len: usize) -> (usize, usize, usize) {
    let head = ptr.addr().wrapping_neg() % WORD;
    let head = head.min(len);
    let words = (len - head) / WORD;
    (head, words, len - head - words * WORD)
}

/// The aligned words of `cells[start..start + 8 * count]` (empty when `count` is 0, whatever the
/// alignment of `start`).
fn words(cells: &[AtomicU8], start: usize, count: usize) -> &[AtomicU64] {
    let bytes = &cells[start..start + count * WORD];
    if count == 0 {
        // `from_raw_parts` wants an aligned pointer even for an empty slice, and `start` is
        // aligned only when words follow it.
        return &[];
    }
    let first = bytes.as_ptr().cast::<AtomicU64>();
    assert!(first.is_aligned(), "atomic_bytes: a word run that is not 8-byte aligned");
    // SAFETY: `first` is aligned for `AtomicU64` (asserted above) and non-null (it comes from a
    // slice); the `count * 8` bytes it covers are in bounds (checked by the slicing above, which
    // also bounds the size by `isize::MAX`) and live as long as `cells`; `AtomicU64` is valid for
    // every bit pattern; every access to these bytes goes through atomics, so seeing them as wider
    // atomics adds no non-atomic access (racing copies may tear, see the module docs).
    unsafe { std::slice::from_raw_parts(first, count) }
}

/// Copies `src` into `dst` (same length).
pub(crate) fn copy_in(dst: &[AtomicU8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_in: lengths differ");
    let (head, count, _) = split(dst.as_ptr(), dst.len());
    for (cell, &byte) in dst[..head].iter().zip(&src[..head]) {
        cell.store(byte, Ordering::Relaxed);
    }
    let body = head + count * WORD;
    for (word, chunk) in words(dst, head, count).iter().zip(src[head..body].chunks_exact(WORD)) {
        let mut value = [0u8; WORD];
        value.copy_from_slice(chunk);
        word.store(u64::from_ne_bytes(value), Ordering::Relaxed);
    }
    for (cell, &byte) in dst[body..].iter().zip(&src[body..]) {
        cell.store(byte, Ordering::Relaxed);
    }
}

/// Copies `src` into `dst` (same length).
pub(crate) fn copy_out(src: &[AtomicU8], dst: &mut [u8]) {
    assert_eq!(dst.len(), src.len(), "copy_out: lengths differ");
    let (head, count, _) = split(src.as_ptr(), src.len());
    for (byte, cell) in dst[..head].iter_mut().zip(&src[..head]) {
        *byte = cell.load(Ordering::Relaxed);
    }
    let body = head + count * WORD;
    for (chunk, word) in dst[head..body].chunks_exact_mut(WORD).zip(words(src, head, count)) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
    for (byte, cell) in dst[body..].iter_mut().zip(&src[body..]) {
        *byte = cell.load(Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every start modulo 8 (16 starts, whatever the buffer's own alignment) and every length up to
    /// five words, the empty range included, at the start, middle and end of the buffer. Run it in
    /// a debug build too: there the standard library checks the preconditions of `from_raw_parts`.
    #[test]
    fn copies_round_trip_at_every_alignment_and_length() {
        const SIZE: usize = 64;
        let cells: Vec<AtomicU8> = (0..SIZE).map(|_| AtomicU8::new(0xEE)).collect();
        for start in 0..=SIZE {
            for len in 0..=(SIZE - start).min(5 * WORD) {
                let src: Vec<u8> = (0..len).map(|i| (i * 7 + start) as u8).collect();
                copy_in(&cells[start..start + len], &src);
                let mut back = vec![0u8; len];
                copy_out(&cells[start..start + len], &mut back);
                assert_eq!(back, src, "start {start} len {len}");
                let outside = cells[..start].iter().chain(&cells[start + len..]);
                assert!(
                    outside.clone().all(|c| c.load(Ordering::Relaxed) == 0xEE),
                    "start {start} len {len}: wrote outside"
                );
                for cell in &cells[start..start + len] {
                    cell.store(0xEE, Ordering::Relaxed);
                }
            }
        }
    }

    #[test]
    fn split_never_exceeds_the_range() {
        let cells: Vec<AtomicU8> = (0..32).map(|_| AtomicU8::new(0)).collect();
        for start in 0..16 {
            for len in 0..16 {
                let (head, words, tail) = split(cells[start..].as_ptr(), len);
                assert_eq!(head + words * WORD + tail, len);
                assert!(head < WORD && tail < WORD);
                if words > 0 {
                    assert!(cells[start + head..].as_ptr().cast::<AtomicU64>().is_aligned());
                }
            }
        }
    }
}
