//! Seed 004: a hundred threads decrement a counter under one Lock. See `seeds/sync.rs`.
//! Run with `cargo run --example lock_threads`.

#[path = "seeds/sync.rs"]
mod sync;

fn main() -> multiproc::Result<()> {
    sync::hundred_threads()
}
