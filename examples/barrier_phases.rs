//! Worker processes compute in phases separated by a Barrier. See `seeds/sync.rs`.
//! Run with `cargo run --example barrier_phases`.

#[path = "seeds/sync.rs"]
mod sync;

fn main() -> multiproc::Result<()> {
    sync::barrier_phases()
}
