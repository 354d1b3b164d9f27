//! Seeds 002 and 003: processes doing work, and printing, under a Lock. See `seeds/sync.rs`.
//! Run with `cargo run --example lock_print`.

#[path = "seeds/sync.rs"]
mod sync;

fn main() -> multiproc::Result<()> {
    sync::five_workers_under_lock()?;
    sync::hello_world_under_lock()
}
