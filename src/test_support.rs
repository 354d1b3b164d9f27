//! Helpers for this crate's unit tests.

/// A fixed-seed xorshift64 generator: the same "random" bytes on every run, for tests that feed
/// garbage to decoders.
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
