//! Seed 004 scenario: see `seeds/pools.rs` (`thread_pool`). Run with `cargo run --example thread_pool`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::thread_pool()
}
