//! Seed 003: the `shm_a` / `shm_b` walk-through of `SharedMemory`. See `seeds/shared_memory.rs`.
//! Run with `cargo run --example shared_memory_blocks`.

#[path = "seeds/shared_memory.rs"]
mod shared_memory;

fn main() -> multiproc::Result<()> {
    shared_memory::shm_a_and_shm_b()
}
