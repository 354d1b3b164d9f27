//! Seed 000: Event methods; the parent waits for a child's event. See `seeds/sync.rs`.
//! Run with `cargo run --example event_result`.

#[path = "seeds/sync.rs"]
mod sync;

fn main() -> multiproc::Result<()> {
    sync::event_result()
}
