//! Seed 002: ten buyers, one ticket in a JSON file, a Lock. See `seeds/sync.rs`.
//! Run with `cargo run --example grab_ticket`.

#[path = "seeds/sync.rs"]
mod sync;

fn main() -> multiproc::Result<()> {
    sync::grab_ticket()
}
