//! Seed 003 scenario: see `seeds/managers.rs` (`shared_memory_manager_two_halves`). Run with
//! `cargo run --example shared_memory_manager`.

#[path = "seeds/managers.rs"]
mod managers;

fn main() -> multiproc::Result<()> {
    managers::shared_memory_manager_two_halves()
}
