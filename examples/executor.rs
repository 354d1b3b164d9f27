//! concurrent.futures scenario: see `seeds/pools.rs` (`executor`). Run with `cargo run --example executor`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::executor()
}
