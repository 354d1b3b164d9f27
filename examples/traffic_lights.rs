//! Seed 002: a traffic light process and ten cars sharing an Event. See `seeds/sync.rs`.
//! Run with `cargo run --example traffic_lights`.

#[path = "seeds/sync.rs"]
mod sync;

fn main() -> multiproc::Result<()> {
    sync::traffic_lights()
}
