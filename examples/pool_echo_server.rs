//! Seed 002 scenario: see `seeds/pools.rs` (`echo_server_with_a_pool`). Run with `cargo run --example pool_echo_server`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::echo_server_with_a_pool()
}
