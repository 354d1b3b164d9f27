//! Seed 002: Pool(5).map over [(1, 2), 'alex']. See `seeds/pools.rs`. Run with `cargo run --example
//! pool_map_mixed`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::map_over_mixed_items()
}
