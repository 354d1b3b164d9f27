//! Copies between private buffers and bytes that other processes may write at the same time
//! (the named blocks and lists; `bytes` holds the region the connection rings hand over by
//! protocol instead).
//!
//! Shared bytes are seen as `[AtomicU8]`: every access is atomic, so a race with another process
//! (or thread) is not undefined behaviour, only a question of which bytes arrive. The copies below
//! move aligned 8-byte words with relaxed atomic loads and stores (the edges byte by byte): as
//! fast as a plain copy on x86-64, and a copy that races with a writer may see some words old and
//! some new ("torn"), never anything worse. Order them with a lock or a message when it matters.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

const WORD: usize = std::mem::size_of::<u64>();

/// Splits `len` bytes starting at `ptr` into an unaligned head, a run of whole aligned words, and a
/// tail, as lengths.
fn split(ptr: *const AtomicU8, len: usize) -> (usize, usize, usize) {
    let head = ptr.align_offset(WORD).min(len);
    let words = (len - head) / WORD;
    (head, words, len - head - words * WORD)
}

/// The aligned words of `cells[start..start + 8 * count]`.
fn words(cells: &[AtomicU8], start: usize, count: usize) -> &[AtomicU64] {
    let bytes = &cells[start..start + count * WORD];
    debug_assert!(bytes.as_ptr().cast::<AtomicU64>().is_aligned());
    // SAFETY: `split` chose `start` so that the pointer is aligned for `AtomicU64`; the range is
    // in bounds (checked by the slicing above) and lives as long as `cells`; every bit pattern is a
    // valid `u64`; all accesses to these bytes are atomic, so viewing them as wider atomics adds no
    // non-atomic access.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<AtomicU64>(), count) }
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

    #[test]
    fn copies_round_trip_at_every_alignment() {
        let cells: Vec<AtomicU8> = (0..64).map(|_| AtomicU8::new(0)).collect();
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 23, 40] {
                let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(7).wrapping_add(start as u8)).collect();
                copy_in(&cells[start..start + len], &src);
                let mut back = vec![0u8; len];
                copy_out(&cells[start..start + len], &mut back);
                assert_eq!(back, src, "start {start} len {len}");
            }
        }
    }
}
