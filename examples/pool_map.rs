//! Seed 000 scenario: see `seeds/pools.rs` (`pool_against_processes`). Run with `cargo run --example pool_map`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::pool_against_processes()
}
