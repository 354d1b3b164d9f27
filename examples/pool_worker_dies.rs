//! Never hangs scenario: see `seeds/pools.rs` (`a_worker_dies`). Run with `cargo run --example pool_worker_dies`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::a_worker_dies()
}
