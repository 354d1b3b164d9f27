//! Seed 003 scenario: see `seeds/managers.rs` (`maths_class`). Run with `cargo run --example manager_maths`.

#[path = "seeds/managers.rs"]
mod managers;

fn main() -> multiproc::Result<()> {
    managers::maths_class()
}
