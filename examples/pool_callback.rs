//! Seeds 000 and 002 scenario: see `seeds/pools.rs` (`callback_runs_in_the_parent`). Run with `cargo run --example pool_callback`.

#[path = "seeds/pools.rs"]
mod pools;

fn main() -> multiproc::Result<()> {
    pools::callback_runs_in_the_parent()
}
