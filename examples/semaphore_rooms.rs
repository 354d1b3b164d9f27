//! Seeds 000 and 002: guests and KTV rooms behind a Semaphore. See `seeds/sync.rs`.
//! Run with `cargo run --example semaphore_rooms`.

#[path = "seeds/sync.rs"]
mod sync;

fn main() -> multiproc::Result<()> {
    sync::semaphore_rooms()
}
