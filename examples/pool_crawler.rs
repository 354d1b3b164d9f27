//! Seed 002 scenario: see `seeds/pools.rs` (`crawler`). Run with `cargo run --example pool_crawler`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::crawler()
}
