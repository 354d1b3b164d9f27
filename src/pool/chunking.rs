//! How `map` and friends cut their input into tasks.

use std::ops::Range;

/// CPython's default chunk size for `map`: `len / (4 * processes)`, rounded up (at least 1), so
/// each worker gets about four chunks.
pub(crate) fn default_chunksize(len: usize, processes: usize) -> usize {
    let per = 4 * processes.max(1);
    len.div_ceil(per).max(1)
}

/// The index ranges of the chunks of `len` items, `chunksize` each (the last may be shorter).
pub(crate) fn chunk_ranges(len: usize, chunksize: usize) -> impl ExactSizeIterator<Item = Range<usize>> {
    let chunksize = chunksize.max(1);
    (0..len.div_ceil(chunksize)).map(move |i| i * chunksize..((i + 1) * chunksize).min(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpython_default_chunksize() {
        // divmod(len, 4 * processes), plus one when there is a remainder.
        assert_eq!(default_chunksize(100, 4), 7);
        assert_eq!(default_chunksize(96, 4), 6);
        assert_eq!(default_chunksize(100_000, 2), 12_500);
        assert_eq!(default_chunksize(1, 8), 1);
        assert_eq!(default_chunksize(0, 8), 1);
    }

    #[test]
    fn chunks_cover_the_input_in_order() {
        let chunks: Vec<_> = chunk_ranges(10, 4).collect();
        assert_eq!(chunks, [0..4, 4..8, 8..10]);
        assert_eq!(chunk_ranges(0, 3).count(), 0);
        assert_eq!(chunk_ranges(3, 0).collect::<Vec<_>>(), [0..1, 1..2, 2..3]);
    }
}
