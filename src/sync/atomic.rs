//! The atomics the state machines use: the standard ones, or loom's when the crate is built with
//! `--cfg loom` for model checking (`.ci/run` runs the models in `sync/loom_models.rs`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};

/// Marks the middle of a store-then-load handshake between two words (a waiter registers, then the
/// futex reads the state; a releaser changes the state, then reads whether anyone registered).
/// SeqCst accesses make it correct under the Rust memory model, so this is nothing in a normal
/// build; loom models SeqCst accesses as acquire/release only (loom#180) and would report the
/// handshake as a lost wake-up, so under loom it is a SeqCst fence.
#[inline(always)]
pub(crate) fn handshake_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}
