//! Seed 003: joo_a waits on an Event that joo_b sets. See `seeds/sync.rs`.
//! Run with `cargo run --example joo_event`.

#[path = "seeds/sync.rs"]
mod sync;

fn main() -> multiproc::Result<()> {
    sync::joo_a_and_joo_b()
}
