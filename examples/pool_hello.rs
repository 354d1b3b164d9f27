//! Seed 001 scenario: see `seeds/pools.rs` (`hello_async_and_sync`). Run with `cargo run --example pool_hello`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::hello_async_and_sync()
}
