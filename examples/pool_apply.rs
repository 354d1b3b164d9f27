//! Seed 000 scenario: see `seeds/pools.rs` (`apply_async_then_get`). Run with `cargo run --example pool_apply`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::apply_async_then_get()
}
